#!/usr/bin/env bash
# Speculative decoding with the shipped pair (models/): greedy output equals target-only
# output at T=1 and T=2 on held-out prompts, and the draft is accepted often (a
# deterministic figure for greedy decoding, not a timing).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
models="$AUGUR_SOURCE_DIR/models"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -n 6 "$models/heldout_prompts.txt" >"$tmp/prompts.txt"
for T in 1 2; do
  run=(mpirun_n $((T + 1)) "$AUGUR_BIN" generate --target "$models/target" --prompts-file "$tmp/prompts.txt"
       --max-tokens 32 --ids-only --threads 1)
  "${run[@]}" --no-speculation >"$tmp/base" 2>/dev/null
  "${run[@]}" --draft "$models/draft" --gamma 4 >"$tmp/spec" 2>"$tmp/err"
  [ "$(wc -l <"$tmp/base")" -eq 6 ] || fail "T=$T: expected 6 outputs"
  cmp -s "$tmp/base" "$tmp/spec" || fail "T=$T: speculative output differs from target-only"
  acc=$(sed -n 's/.*acceptance \([0-9.]*\) .*/\1/p' "$tmp/err")
  echo "T=$T: outputs equal; acceptance $acc"
  awk -v a="$acc" 'BEGIN { exit !(a > 0.3) }' || fail "T=$T: acceptance $acc is implausibly low for the shipped pair"
done
echo "PASS"
