#!/usr/bin/env bash
# augur trace and augur simulate end to end: record a trace with fixed γ = 8, check the
# CSV and summary against it, and check that replaying fixed γ = 8 reproduces the run's
# own rounds, acceptance and tokens/round; then the error paths (exit 2, one line).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
need_stories
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
A="$AUGUR_BIN"
MAX_TOKENS=64

mpirun_n 3 "$A" generate --target "$STORIES_BIN" --tokenizer "$STORIES_TOK" --draft-layers 4 --gamma 8 \
  --prompt "Once upon a time" --max-tokens $MAX_TOKENS --threads 1 --trace "$tmp/t.bin" \
  >"$tmp/gen.out" 2>"$tmp/gen.err" || { cat "$tmp/gen.err" >&2; fail "generate --trace failed"; }
# "augur: speculative: 1 request, 64 tokens in ..." and
# "augur: speculative: 27 rounds, 2.37 tokens/round, acceptance 0.182 (37 of 203 proposed)"
gen_tokens=$(sed -n 's/^augur: speculative: 1 request, \([0-9]*\) tokens in.*/\1/p' "$tmp/gen.err")
read -r gen_rounds gen_tpr gen_acc gen_a gen_p < <(sed -n \
  's/^augur: speculative: \([0-9]*\) rounds, \([0-9.]*\) tokens\/round, acceptance \([0-9.]*\) (\([0-9]*\) of \([0-9]*\) proposed)$/\1 \2 \3 \4 \5/p' \
  "$tmp/gen.err")
[ -n "$gen_tokens" ] && [ -n "${gen_p:-}" ] || { cat "$tmp/gen.err" >&2; fail "no speculative stats from generate"; }
echo "generate: $gen_tokens tokens, $gen_rounds rounds, $gen_tpr tokens/round, $gen_a of $gen_p accepted"

# ---- augur trace: summary and CSV ----
"$A" trace "$tmp/t.bin" >"$tmp/summary" || fail "augur trace failed"
cat "$tmp/summary"
records=$(sed -n 's/^records: *\([0-9]*\) .*/\1/p' "$tmp/summary")
[ -n "$records" ] && [ "$records" -gt 0 ] || fail "summary has no record count"
grep -q "^rounds: *$gen_rounds\$" "$tmp/summary" || fail "summary rounds differ from generate's $gen_rounds"
grep -q "^acceptance: *$gen_acc ($gen_a of $gen_p proposed)\$" "$tmp/summary" ||
  fail "summary acceptance differs from generate's $gen_acc ($gen_a of $gen_p)"
grep -q "^draft entropy: *accepted [0-9.]*, rejected [0-9.]*" "$tmp/summary" || fail "no draft entropy line"

"$A" trace "$tmp/t.bin" --csv >"$tmp/t.csv" || fail "augur trace --csv failed"
header="request_id,round,position,index_in_round,draft_len_in_round,draft_entropy,target_entropy,accepted,draft_ms,target_ms"
[ "$(head -n 1 "$tmp/t.csv")" = "$header" ] || fail "bad CSV header: $(head -n 1 "$tmp/t.csv")"
rows=$(($(wc -l <"$tmp/t.csv") - 1))
[ "$rows" -eq "$records" ] || fail "CSV has $rows rows, the summary says $records records"
# Every proposal before the first rejection is recorded: accepted rows are generate's A.
acc_rows=$(awk -F, 'NR > 1 && $8 == 1' "$tmp/t.csv" | wc -l)
[ "$acc_rows" -eq "$gen_a" ] || fail "CSV has $acc_rows accepted rows, generate accepted $gen_a"
"$A" trace --csv -o "$tmp/o.csv" "$tmp/t.bin" || fail "augur trace --csv -o failed"
cmp -s "$tmp/t.csv" "$tmp/o.csv" || fail "-o output differs from stdout's"
echo "ok: trace summary and CSV ($records records)"

# ---- augur simulate ----
"$A" simulate "$tmp/t.bin" --rule all --tt 5 >"$tmp/sim" || fail "augur simulate --rule all failed"
head -n 4 "$tmp/sim"
grep -q "^setting  *rounds  *tokens  *tok/round  *accepted/proposed  *acceptance  *ms/token  *speedup  *gaps$" "$tmp/sim" ||
  fail "no table header"
settings=$(grep -cE '^(fixed|heuristic|static|moving-average|cumulative)\(' "$tmp/sim")
# defaults: fixed 8, heuristic 8, static 8, moving average 9 λ × 5 n, cumulative 15 τ × 7 n
[ "$settings" -eq 174 ] || fail "expected 174 settings, got $settings"
for rule in fixed heuristic static moving-average cumulative; do
  grep -q "^best: $rule(" "$tmp/sim" || fail "no best line for $rule"
done
grep -q "^best overall: .*x over the best heuristic setting$" "$tmp/sim" || fail "no best overall line"
# sorted by cost per token, cheapest first
awk '/^(fixed|heuristic|static|moving-average|cumulative)\(/ { print $(NF - 2) }' "$tmp/sim" | sort -c -g ||
  fail "table is not sorted by ms/token"

# Replaying the recorded rule reproduces the run. fixed(gamma=8) columns: rounds tokens
# tok/round accepted/proposed acceptance ms/token speedup gaps.
read -r s_rounds s_tokens _ s_ap _ _ _ s_gaps < <(awk '$1 == "fixed(gamma=8)" { $1 = ""; print }' "$tmp/sim")
[ "$s_rounds" = "$gen_rounds" ] || fail "simulated fixed γ=8: $s_rounds rounds, generate had $gen_rounds"
[ "$s_ap" = "$gen_a/$gen_p" ] || fail "simulated fixed γ=8: $s_ap accepted/proposed, generate had $gen_a/$gen_p"
[ "$s_gaps" = 0 ] || fail "simulated fixed γ=8 met $s_gaps gaps in its own recording"
# Tokens: the replay ends each request where its last proposal ended, which is the
# --max-tokens limit when that cut the last proposal short. The one thing the trace
# cannot show is the bonus token of a last round whose full γ = 8 tokens were accepted
# with room to spare; the leader emitted it, the replay does not count it.
last=$(tail -n 1 "$tmp/t.csv")
bonus=$(awk -F, '{ print ($8 == 1 && $4 + 1 == $5 && $5 == 8) ? 1 : 0 }' <<<"$last")
if [ "$gen_tokens" -eq "$MAX_TOKENS" ]; then
  [ $((s_tokens + bonus)) -eq "$gen_tokens" ] ||
    fail "simulated fixed γ=8: $s_tokens tokens (+$bonus unseen bonus), generate made $gen_tokens"
else # a stop token ended the run inside its last round; the trace cannot show where
  [ "$s_tokens" -ge "$gen_tokens" ] || fail "simulated $s_tokens tokens, fewer than generate's $gen_tokens"
fi
s_tpr=$(awk -v t=$((s_tokens + bonus)) -v r="$s_rounds" 'BEGIN { printf "%.2f", t / r }')
[ "$gen_tokens" -lt "$MAX_TOKENS" ] || [ "$s_tpr" = "$gen_tpr" ] ||
  fail "simulated fixed γ=8: $s_tpr tokens/round, generate printed $gen_tpr"
echo "ok: fixed γ=8 replay = generate ($s_rounds rounds, $s_ap accepted, $s_tokens tokens)"

# The cost model with given times: k·t_d + t_t(k+1) a round, t_t(n) = t_t(1) + s·(n−1),
# speedup t_t(1) / cost per token. s = 0 first, then s = 1 (Σ k over rounds = proposed).
"$A" simulate "$tmp/t.bin" --rule fixed --gamma 8,4 --td 1 --tt 10 --tt-slope 0 >"$tmp/sim2" ||
  fail "simulate --td --tt --tt-slope failed"
grep -q "t_d = 1.0000 ms per drafted token (--td), t_t(n) = 10.0000 + 0.0000\*(n-1) ms per verify forward (--tt, --tt-slope" "$tmp/sim2" ||
  fail "cost model line does not show --td/--tt/--tt-slope: $(grep 'cost model' "$tmp/sim2")"
[ "$(grep -c '^fixed(' "$tmp/sim2")" -eq 2 ] || fail "--gamma 8,4 should give 2 settings"
for slope in 0 1; do
  "$A" simulate "$tmp/t.bin" --rule fixed --gamma 8 --td 1 --tt 10 --tt-slope $slope >"$tmp/sim2" ||
    fail "simulate --tt-slope $slope failed"
  want=$(awk -v r="$gen_rounds" -v p="$gen_p" -v t="$s_tokens" -v s=$slope \
    'BEGIN { c = (p * 1 + r * 10 + s * p) / t; printf "%.4f %.3fx", c, 10 / c }')
  got=$(awk '$1 == "fixed(gamma=8)" { print $(NF - 2), $(NF - 1) }' "$tmp/sim2")
  [ "$got" = "$want" ] || fail "fixed γ=8, slope $slope: cost/speedup got '$got', want '$want'"
done
"$A" simulate "$tmp/t.bin" --rule cumulative --tau 10,12 --window 1,3 --gamma 6 --top 2 --tt 5 >"$tmp/sim3" ||
  fail "simulate cumulative grid failed"
[ "$(grep -c '^cumulative(' "$tmp/sim3")" -eq 2 ] || fail "--top 2 should print 2 settings"
grep -q "^(2 more settings not shown; --top 2)$" "$tmp/sim3" || fail "--top note missing"
grep -q "^best: cumulative(tau=1[02], n=[13], num_k=6)" "$tmp/sim3" || fail "cumulative best line missing"
echo "ok: cost model and grids"

# ---- help and errors ----
"$A" trace --help | grep -q -- "--csv" || fail "trace --help does not document --csv"
for flag in --rule --td --tt --tt-slope --gamma --tau --lambda --window --top; do
  "$A" simulate --help | grep -q -- "$flag" || fail "simulate --help does not document $flag"
done
"$A" --help | grep -q "simulate" || fail "augur --help does not list simulate"

expect_fail 2 "$tmp/missing.bin: cannot open" -- "$A" trace "$tmp/missing.bin"
expect_fail 2 "$tmp/missing.bin: cannot open" -- "$A" trace "$tmp/missing.bin" --csv
expect_fail 2 "$tmp/missing.bin: cannot open" -- "$A" simulate "$tmp/missing.bin"
printf 'not a trace %.0s' {1..300} >"$tmp/garbage.bin"
expect_fail 2 "garbage.bin" -- "$A" trace "$tmp/garbage.bin"
expect_fail 2 "garbage.bin" -- "$A" trace "$tmp/garbage.bin" --csv -o "$tmp/g.csv"
[ ! -e "$tmp/g.csv" ] || fail "a failed --csv -o left $tmp/g.csv behind"
expect_fail 2 "garbage.bin" -- "$A" simulate "$tmp/garbage.bin" --rule all
: >"$tmp/empty.bin"
expect_fail 2 "empty file" -- "$A" simulate "$tmp/empty.bin"
size=$(stat -c %s "$tmp/t.bin")
head -c $((size / 2)) "$tmp/t.bin" >"$tmp/cut.bin"
expect_fail 2 "cut.bin: truncated" -- "$A" trace "$tmp/cut.bin"
expect_fail 2 "cut.bin: truncated" -- "$A" simulate "$tmp/cut.bin"
expect_fail 2 "no trace FILE" -- "$A" trace
expect_fail 2 "no trace FILE" -- "$A" simulate --rule fixed
expect_fail 2 "takes one FILE" -- "$A" trace "$tmp/t.bin" "$tmp/t.bin"
expect_fail 2 "unknown option '--bogus'" -- "$A" simulate "$tmp/t.bin" --bogus
expect_fail 2 "--rule: 'fastest' is not a rule" -- "$A" simulate "$tmp/t.bin" --rule fastest
expect_fail 2 "--gamma: 0 is outside 1..64" -- "$A" simulate "$tmp/t.bin" --rule fixed --gamma 4,0
expect_fail 2 "--gamma: '4,,8' is not a comma-separated list" -- "$A" simulate "$tmp/t.bin" --gamma 4,,8
expect_fail 2 "--tau: 'x' is not a number" -- "$A" simulate "$tmp/t.bin" --rule static --tau 1,x
expect_fail 2 "--tau: 0 is not > 0" -- "$A" simulate "$tmp/t.bin" --rule static --tau 0
expect_fail 2 "--lambda: only the moving-average rule" -- "$A" simulate "$tmp/t.bin" --rule fixed --lambda 0.5
expect_fail 2 "--tt: 0 is not > 0" -- "$A" simulate "$tmp/t.bin" --tt 0
expect_fail 2 "is the trace being read" -- "$A" trace "$tmp/t.bin" --csv -o "$tmp/t.bin"
echo "PASS"
