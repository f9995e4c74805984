#!/usr/bin/env bash
# Greedy generation on stories260K reproduces the checked goldens exactly, through the
# llama2.c loader and through the Hugging Face loader on a converted copy.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
need_stories
fixtures="$AUGUR_SOURCE_DIR/tests/fixtures/stories260K"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$AUGUR_BIN" convert --llama2c "$STORIES_BIN" --out "$tmp/hf" 2>/dev/null
[ -f "$tmp/hf/config.json" ] && [ -f "$tmp/hf/model.safetensors" ] || fail "convert wrote no HF directory"

n=0
while IFS=$'\t' read -r prompt ids want; do
  got_ids=$("$AUGUR_BIN" tokenize --tokenizer "$STORIES_TOK" "$prompt")
  [ "$got_ids" = "$ids" ] || fail "tokenize '$prompt': $got_ids, expected $ids"
  for model in "$STORIES_BIN" "$tmp/hf"; do
    for threads in 1 2; do
      got=$("$AUGUR_BIN" generate --model "$model" --tokenizer "$STORIES_TOK" --prompt "$prompt" --max-tokens 64 \
            --threads "$threads" --ids-only 2>/dev/null)
      [ "$got" = "$want" ] || fail "'$prompt' ($model, $threads threads):
  got:      $got
  expected: $want"
    done
  done
  n=$((n + 1))
done <"$fixtures/greedy.tsv"
echo "ok: $n prompts x 2 loaders x 2 thread counts"

# The streamed text, prompt first.
"$AUGUR_BIN" generate --model "$STORIES_BIN" --tokenizer "$STORIES_TOK" --prompt "Once upon a time" \
  --max-tokens 64 --threads 1 >"$tmp/out.txt" 2>"$tmp/err.txt"
cmp -s "$tmp/out.txt" "$fixtures/once_upon_a_time.txt" || fail "text differs: $(cat "$tmp/out.txt")"
grep -Eq "prompt 5 tokens, generated 64 tokens, prefill [0-9.]+ ms, decode [0-9.]+ tok/s" "$tmp/err.txt" \
  || fail "stats line missing: $(cat "$tmp/err.txt")"
echo "ok: streamed text and stats line"
echo "PASS"
