#!/usr/bin/env bash
# tools/bench/sweep.sh end to end on the shipped pair's shapes (dummy weights, CPU): a
# record per run, sweep.json with one cell per (rule, A, gamma) whose figures agree with its
# record, and the markdown table. No timing is asserted.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
need_fixture "$MODELS/target/config.json" "$MODELS/draft/config.json"
command -v jq >/dev/null || fail "jq is not installed (tools/install-deps.sh installs it)"
make_tmp
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" # mpirun's plugins, as in mpirun_n
timeout 600 bash "$AUGUR_SOURCE_DIR/tools/bench/sweep.sh" --augur "$AUGUR_BIN" --device cpu --rules fixed,heuristic \
  --alphas 0.5,0.9 --gammas 1,3 --max-tokens 12 --prompt-len 8 "$tmp/out" >"$tmp/log" 2>&1 ||
  fail "sweep.sh failed: $(tail -n 30 "$tmp/log")"
[ "$(jq '.cells | length' "$tmp/out/sweep.json")" -eq 8 ] || fail "sweep.json: $(jq -c '.cells | length' "$tmp/out/sweep.json") cells, not 8"
jq -e '.target_only_tokens_per_s > 0 and all(.cells[]; .tokens_per_s > 0 and .tokens_per_round >= 1
        and (.alpha == 0.5 or .alpha == 0.9) and (.gamma == 1 or .gamma == 3)
        and (.rule == "fixed" or .rule == "heuristic"))' "$tmp/out/sweep.json" >/dev/null ||
  fail "sweep.json cells inconsistent: $(jq -c '.cells[0]' "$tmp/out/sweep.json")"
for r in fixed heuristic; do
  for a in 0.5 0.9; do
    for g in 1 3; do
      rec="$tmp/out/cells/$r-a$a-g$g.json"
      [ -s "$rec" ] || fail "no record $rec"
      want=$(jq '.runs[0].tokens_per_s' "$rec")
      jq -e --arg r "$r" --argjson a "$a" --argjson g "$g" --argjson w "$want" \
        'any(.cells[]; .rule == $r and .alpha == $a and .gamma == $g and .tokens_per_s == $w)' \
        "$tmp/out/sweep.json" >/dev/null || fail "sweep.json lacks $r A=$a gamma=$g with its record's tok/s $want"
    done
  done
done
[ "$(grep -c '^| \(fixed\|heuristic\) |' "$tmp/out/sweep.md")" -eq 8 ] || fail "sweep.md rows: $(cat "$tmp/out/sweep.md")"
echo "ok: 8 runs, sweep.json and sweep.md agree with the records"
