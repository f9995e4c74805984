#!/usr/bin/env bash
# Distributed failures end every rank promptly with a clear message (DESIGN §8):
# never a hang (mpirun_n gives up after 120 s, and each case must fail well before).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

make_tmp
"$MAKE_TINY" --out "$tmp/target" --dim 32 --layers 2 --heads 4 --kv-heads 2 --vocab 64 --seed 1
"$MAKE_TINY" --out "$tmp/draft32" --dim 16 --layers 1 --heads 2 --kv-heads 1 --vocab 32 --seed 2
"$MAKE_TINY" --out "$tmp/draft" --dim 16 --layers 1 --heads 2 --kv-heads 1 --vocab 64 --seed 3
gen=("$AUGUR_BIN" generate --prompt-ids "1 2 3" --max-tokens 20 --ids-only --threads 1)

timed() { # the case must end within 30 s
  local start=$SECONDS
  "$@"
  (( SECONDS - start < 30 )) || fail "took $((SECONDS - start)) s: $*"
}

echo "-- wrong number of ranks for the layout"
timed expect_fail 2 "layout needs 3 ranks" -- mpirun_n 2 "${gen[@]}" --target "$tmp/target" --draft "$tmp/draft" --tp 2
echo "-- draft and target vocabularies differ"
timed expect_fail 2 "vocabularies differ" -- mpirun_n 3 "${gen[@]}" --target "$tmp/target" --draft "$tmp/draft32"
echo "-- T does not divide the heads"
timed expect_fail 2 "do not divide num_attention_heads" -- mpirun_n 4 "${gen[@]}" --target "$tmp/target" --draft "$tmp/draft"
echo "-- missing draft path"
timed expect_fail 2 "no such file" -- mpirun_n 3 "${gen[@]}" --target "$tmp/target" --draft "$tmp/nope"
echo "-- no draft given"
timed expect_fail 2 "needs --draft" -- mpirun_n 3 "${gen[@]}" --target "$tmp/target"
echo "-- a draft rank that dies mid-run"
start=$SECONDS
rc=0
out=$(mpirun_n 3 "${gen[@]}" --target "$tmp/target" --draft "$tmp/draft" --debug-draft-exit-after 2 2>&1) || rc=$?
[ "$rc" -ne 0 ] || fail "a dead draft rank went unnoticed: $out"
[ "$rc" -ne 124 ] || fail "a dead draft rank hung the job"
(( SECONDS - start < 60 )) || fail "a dead draft rank took $((SECONDS - start)) s to end the job"
grep -qi "draft rank 2" <<<"$out" || fail "no message names the draft rank: $out"
echo "ok: exit $rc within $((SECONDS - start)) s"
echo "PASS"
