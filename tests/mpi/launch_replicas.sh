#!/usr/bin/env bash
# augur launch runs the shipped CPU config as it stands (the issue's "done when"), and
# replicas: 2 replicas (4 ranks on however few cores) give every prompt of a prompts
# file exactly the greedy text one replica gives, printed in prompt order, with
# per-replica and total stats.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
make_tmp
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" # as mpirun_n: Open MPI's plugins leak at exit
A="$AUGUR_BIN"
cd "$AUGUR_SOURCE_DIR" # the config names models/ relative to the checkout
N=24 P=4
[ "${AUGUR_SANITIZED:-0}" = 1 ] && N=8 P=2

run_to "$tmp/tiny" timeout 120 "$A" launch configs/tiny-cpu.json -- --max-tokens "$N"
head -c 40 "$tmp/tiny" | grep -q "^The scheduler picks the next task to run" || fail "no text on stdout: $(cat "$tmp/tiny")"
grep -q "^augur launch: mpirun .* -np 2 " "$tmp/tiny.err" || fail "mpirun command not printed: $(cat "$tmp/tiny.err")"
grep -q "augur: speculative: 1 request, $N tokens" "$tmp/tiny.err" || fail "no stats: $(cat "$tmp/tiny.err")"
echo "ok: augur launch configs/tiny-cpu.json"

head -n "$P" "$MODELS/heldout_prompts.txt" >"$tmp/prompts.txt"
for R in 1 2; do
  cat >"$tmp/rep$R.json" <<JSON
{"target": "models/target", "draft": "models/draft", "tp": 1, "replicas": $R, "gamma": 4,
 "max-tokens": $N, "threads": 1, "prompts-file": "$tmp/prompts.txt"}
JSON
  run_to "$tmp/out$R" timeout 120 "$A" launch "$tmp/rep$R.json"
done
[ "$(wc -l <"$tmp/out1")" -ge "$P" ] || fail "one replica: fewer than $P lines: $(cat "$tmp/out1")"
cmp -s "$tmp/out1" "$tmp/out2" || fail "2 replicas' text differs from one replica's:
$(diff "$tmp/out1" "$tmp/out2" | head -20)"
for r in 0 1; do
  grep -Eq "augur: replica $r speculative: $((P / 2)) requests?, $((P / 2 * N)) tokens" "$tmp/out2.err" ||
    fail "no stats for replica $r: $(cat "$tmp/out2.err")"
done
grep -Eq "augur: total speculative: 2 replicas, $P requests, $((P * N)) tokens in [0-9.]+ ms .*, [0-9.]+ tok/s" \
  "$tmp/out2.err" || fail "no total line: $(cat "$tmp/out2.err")"
grep -q -- "-np 4 " "$tmp/out2.err" || fail "2 replicas did not start 4 ranks: $(cat "$tmp/out2.err")"
echo "ok: 2 replicas print what 1 replica prints ($P prompts, $N tokens each)"

# the same through plain mpirun, ids out: replicas without augur launch
run=(mpirun_n 4 "$A" generate --target "$MODELS/target" --draft "$MODELS/draft" --prompts-file "$tmp/prompts.txt"
     --max-tokens "$N" --threads 1 --ids-only --replicas 2)
run_to "$tmp/ids2" "${run[@]}"
run_to "$tmp/ids1" mpirun_n 2 "$A" generate --target "$MODELS/target" --draft "$MODELS/draft" \
  --prompts-file "$tmp/prompts.txt" --max-tokens "$N" --threads 1 --ids-only
cmp -s "$tmp/ids1" "$tmp/ids2" || fail "ids of 2 replicas differ from 1 replica's"
[ "$(wc -l <"$tmp/ids2")" -eq "$P" ] || fail "expected $P id lines: $(cat "$tmp/ids2")"
expect_fail 2 "layout needs 6 ranks (2 replicas x (2 target + 1 draft)), mpirun started 4" -- \
  "${run[@]}" --tp 2
echo "PASS"
