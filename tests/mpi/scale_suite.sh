#!/usr/bin/env bash
# The CPU scaling suite end to end on the shipped pair (cluster/scale.sh, a small matrix):
# every cell announces itself, leaves a JSON record whose figures agree with each other and
# with the table's row, a synthetic-acceptance cell runs dummy weights, and augur project
# puts the model beside every measured run. No timing is asserted: only that the figures
# are there and consistent.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
need_fixture "$MODELS/target/config.json" "$MODELS/draft/config.json"
command -v jq >/dev/null || fail "jq is not installed (tools/install-deps.sh installs it)"
make_tmp
N=12
[ "${AUGUR_SANITIZED:-0}" = 1 ] && N=6
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" # mpirun's plugins, as in mpirun_n
suite=(bash "$AUGUR_SOURCE_DIR/cluster/scale.sh" --augur "$AUGUR_BIN" --tp 1,2 --gamma 2,4 --acceptance real,0.5
       --prompts 1 --max-tokens "$N" --cell-timeout 120 --no-plots --project)
"${suite[@]}" "$tmp/out" 2>"$tmp/log" || { tail -n 40 "$tmp/log" >&2; fail "scale.sh failed"; }
out="$tmp/out"
for f in results.json table.md projection.md profile.json; do
  [ -s "$out/$f" ] || fail "scale.sh did not write $f"
done
# 2 T x 2 gamma x 2 acceptances = 8 cells, each announced with its number.
for i in 1 2 3 4 5 6 7 8; do
  grep -q "\[cell $i/8\]" "$tmp/log" || fail "no progress line for cell $i/8: $(grep cell "$tmp/log")"
done
[ "$(jq length "$out/results.json")" -eq 8 ] || fail "results.json holds $(jq length "$out/results.json") cells, not 8"
# Each record: the settings asked for, and figures that agree with each other.
jq -e '.[] | select(
    .tp != .cell.tp or .gamma != .cell.gamma or .ranks != .cell.tp + 1
    or (.runs[0] | .generated != '"$N"' or .rounds < 1 or .proposed < .accepted
        or (.tokens_per_round - .generated / .rounds | fabs) > 1e-6
        or (.ms_per_token * .generated - .decode_ms | fabs) > 1e-3)
    or (.cell.acceptance != "real" and (.load_format != "dummy" or .synthetic_acceptance != 0.5))
    or (.cell.acceptance == "real" and .synthetic_acceptance != null)
    or (.tp == 2 and .runs[0].allreduce.calls < 1) or (.tp == 1 and .runs[0].allreduce.calls != 0))' \
  "$out/results.json" >"$tmp/bad" && fail "inconsistent records: $(cat "$tmp/bad")"
# The table has one row per cell, and the row shows its record's tokens/s.
[ "$(grep -c '^| t[12]-' "$out/table.md")" -eq 8 ] || fail "table.md rows: $(cat "$out/table.md")"
while read -r name tps; do
  grep -q "^| $name | .* | $tps | " "$out/table.md" || fail "table.md: the row of $name does not show tok/s $tps"
done < <(jq -r '.[] | "\(.cell.name) \(.runs[0].tokens_per_s * 10 | round / 10)"' "$out/results.json")
# Greedy on real weights: the text does not depend on T (the suite keeps rank 0's stdout).
for g in 2 4; do
  cmp -s "$out/cells/t1-r1-fixed-g$g-areal-n1-shm-d0-none.out" \
         "$out/cells/t2-r1-fixed-g$g-areal-n1-shm-d0-none.out" 2>/dev/null ||
    fail "gamma $g: T=1 and T=2 generated different text"
done
# The model beside every run, with an error figure; the bench of each shard it used.
[ "$(grep -c '^| t[12]-.*%' "$out/projection.md")" -eq 8 ] || fail "projection.md: $(cat "$out/projection.md")"
grep -q "Mean absolute error of tokens/s over 8 runs" "$out/projection.md" || fail "projection.md has no error summary"
for b in target-tp1 target-tp2 draft; do [ -s "$out/bench/$b.csv" ] || fail "no bench/$b.csv"; done
echo "ok: 8 cells, records consistent, table and projection complete"
head -n 4 "$out/table.md"

# Replicas: two target groups in one job give the text of one, and the record carries the
# whole job's figures beside replica 0's own.
bash "$AUGUR_SOURCE_DIR/cluster/scale.sh" --augur "$AUGUR_BIN" --tp 1 --replicas 1,2 --prompts 2 --max-tokens "$N" \
  --cell-timeout 120 --no-plots "$tmp/rep" 2>"$tmp/rep.log" || { tail -n 40 "$tmp/rep.log" >&2; fail "scale.sh --replicas failed"; }
cmp -s "$tmp/rep/cells/t1-r1-fixed-g4-areal-n1-shm-d0-none.out" "$tmp/rep/cells/t1-r2-fixed-g4-areal-n1-shm-d0-none.out" ||
  fail "2 replicas generated other text than 1: $(diff "$tmp/rep/cells/t1-r1-fixed-g4-areal-n1-shm-d0-none.out" \
       "$tmp/rep/cells/t1-r2-fixed-g4-areal-n1-shm-d0-none.out" | head -n 6)"
jq -e '.[1] | .replicas == 2 and .ranks == 2 and .job.ranks == 4 and .job.replicas == 2 and .job.generated == 2 * '"$N"'
       and .job.tokens_per_s > 0 and .runs[0].generated == '"$N"'' "$tmp/rep/results.json" >/dev/null ||
  fail "the 2-replica record lacks the job's totals: $(jq -c '.[1] | {replicas, ranks, job}' "$tmp/rep/results.json")"
jtps=$(jq -r '.[1].job.tokens_per_s * 10 | round / 10' "$tmp/rep/results.json")
grep -q "^| t1-r2-.* | $jtps | " "$tmp/rep/table.md" || fail "table.md does not show the job's tok/s $jtps for 2 replicas"
echo "ok: 2 replicas: the text of one replica, the job's tok/s ($jtps) in the record and the table"
echo "PASS"
