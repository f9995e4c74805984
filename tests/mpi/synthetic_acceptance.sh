#!/usr/bin/env bash
# --synthetic-acceptance A (dummy weights only): the leader keeps each proposed token
# with probability A from a seeded coin instead of the target's verdict, so large dummy
# models run the real forwards, messages and KV trims at a chosen acceptance. A = 0 keeps
# nothing, A = 1 everything, A = 0.5 something in between and the same on every run;
# without --load-format dummy, or when sampling, it refuses with a message.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
make_tmp
"$MAKE_TINY" --out "$tmp/m" --dim 64 --layers 3 --heads 4 --kv-heads 2 --vocab 256 --seed 5 >/dev/null
run=(mpirun_n 2 "$AUGUR_BIN" generate --target "$tmp/m" --draft-layers 1 --prompt-ids "1 2 3" --max-tokens 48
     --gamma 4 --ids-only --threads 1)
acceptance() { sed -n 's/.*(synthetic acceptance [0-9.]*): .*acceptance \([0-9.]*\) (\([0-9]*\) of \([0-9]*\) proposed).*/\1 \2 \3/p' "$1"; }
for a in 0 1 0.5; do
  run_to "$tmp/a$a" "${run[@]}" --load-format dummy --synthetic-acceptance "$a"
  grep -q "the text is not the target's output" "$tmp/a$a.err" || fail "A=$a: the output is not labelled synthetic"
  read -r acc kept proposed < <(acceptance "$tmp/a$a.err")
  [ -n "${proposed:-}" ] && [ "$proposed" -gt 0 ] || fail "A=$a: no acceptance line: $(grep augur "$tmp/a$a.err")"
  echo "A=$a: acceptance $acc ($kept of $proposed)"
  case "$a" in
    0) [ "$kept" -eq 0 ] || fail "A=0 kept $kept tokens" ;;
    1) [ "$kept" -eq "$proposed" ] || fail "A=1 kept $kept of $proposed" ;;
    *) [ "$kept" -gt 0 ] && [ "$kept" -lt "$proposed" ] || fail "A=0.5 kept $kept of $proposed" ;;
  esac
done
run_to "$tmp/again" "${run[@]}" --load-format dummy --synthetic-acceptance 0.5
cmp -s "$tmp/a0.5" "$tmp/again" || fail "A=0.5: two runs with one seed differ"
expect_fail 2 "runs only with --load-format dummy" -- "${run[@]}" --synthetic-acceptance 0.5
expect_fail 2 "needs speculative greedy decoding" -- "${run[@]}" --load-format dummy --synthetic-acceptance 0.5 \
  --temperature 0.8
echo "PASS"
