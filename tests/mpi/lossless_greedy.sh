#!/usr/bin/env bash
# Greedy speculative output must equal target-only output token for token, for every
# tensor-parallel size, draft length, draft rule and overlap setting (DESIGN §8).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
need_stories

prompt="Once upon a time, there was a little girl named Lily."
run() { # T, extra flags...
  local T=$1; shift
  mpirun_n $((T + 1)) "$AUGUR_BIN" generate --target "$STORIES_BIN" --tokenizer "$STORIES_TOK" \
    --prompt "$prompt" --max-tokens 40 --ids-only --threads 1 "$@"
}

for T in 1 2 4; do
  base=$(run "$T" --no-speculation)
  [ -n "$base" ] || fail "T=$T: empty baseline"
  echo "T=$T baseline: $base"
  for cfg in "--draft-rule fixed --gamma 1" "--draft-rule fixed --gamma 4" "--draft-rule fixed --gamma 8" \
             "--draft-rule heuristic --gamma 2" "--draft-rule static --tau 1.0 --gamma 8" \
             "--draft-rule moving-average --lambda 0.5 --window 3 --gamma 8" \
             "--draft-rule cumulative --tau 2.0 --window 2 --gamma 8"; do
    for overlap in "" "--no-overlap"; do
      # shellcheck disable=SC2086
      got=$(run "$T" --draft-layers 2 $cfg $overlap)
      [ "$got" = "$base" ] || fail "T=$T $cfg $overlap: speculative output differs
  target-only: $base
  speculative: $got"
    done
  done
  echo "T=$T: 14 configurations equal the baseline"
done

# T larger than the KV heads (1 KV head replicated on both target ranks), separate draft model.
make_tmp
"$MAKE_TINY" --out "$tmp/target" --dim 32 --layers 2 --heads 4 --kv-heads 1 --vocab 64 --seed 1 --scale 1.5
"$MAKE_TINY" --out "$tmp/draft" --dim 16 --layers 1 --heads 2 --kv-heads 1 --vocab 64 --seed 2 --scale 1.5
for T in 2 4; do
  base=$(mpirun_n $((T + 1)) "$AUGUR_BIN" generate --target "$tmp/target" --prompt-ids "1 2 3" --max-tokens 30 \
         --ids-only --no-speculation --threads 1)
  for g in 1 4 8; do
    got=$(mpirun_n $((T + 1)) "$AUGUR_BIN" generate --target "$tmp/target" --draft "$tmp/draft" \
          --prompt-ids "1 2 3" --max-tokens 30 --ids-only --gamma "$g" --threads 1)
    [ "$got" = "$base" ] || fail "tiny MQA model T=$T gamma=$g: speculative output differs ($got vs $base)"
  done
  echo "tiny MQA model (1 KV head) T=$T: gamma 1, 4, 8 equal the baseline"
done
echo "PASS"
