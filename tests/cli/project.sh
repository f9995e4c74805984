#!/usr/bin/env bash
# augur project: the cost model's figures on a profile small enough to check by hand, the
# extrapolation to a T the profile lacks, and profile errors naming the file and key.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
make_tmp
profile() { # extra jq filter applied to a base profile
  jq -n "{name: \"hand\", layers: 1, hidden: 1, allreduce_element_bytes: 4, gpus_per_node: 1,
          draft: {ms: 1}, target: [{tp: 1, positions: 1, ms: 10}, {tp: 1, positions: 2, ms: 12}],
          links: {intra: {latency_us: 0, bandwidth_GBps: 0}, inter: {latency_us: 0, bandwidth_GBps: 0}}} | $1"
}
profile . >"$tmp/p.json"
run_to "$tmp/out" "$AUGUR_BIN" project --profile "$tmp/p.json" --tp 1 --nodes 1,3 --gamma 4 --alpha 0.5 --csv "$tmp/p.csv"
# E(0.5, 4) = (1 - 0.5^5) / 0.5 = 1.9375; round = 4 x 1 + t(5) = 4 + 10 + 2 x 4 = 22 ms;
# 22 / 1.9375 = 11.3548 ms a token, 88.068 tok/s a replica; target-only 10 ms: 100 tok/s.
row=$(awk -F, '$2 == 3' "$tmp/p.csv")
IFS=, read -r tp nodes gpus replicas gamma alpha round tpr mspt tps base speedup extra <<<"$row"
[ "$replicas" = 3 ] || fail "3 nodes of 1 GPU at T=1: $replicas replicas ($row)"
awk -v r="$round" -v e="$tpr" -v m="$mspt" -v t="$tps" -v b="$base" 'BEGIN {
  exit !(r == 22 && e == 1.9375 && m > 11.354 && m < 11.355 && t > 264.20 && t < 264.21 && b == 300) }' ||
  fail "model figures: $row (want round 22, E 1.9375, 11.3548 ms/token, 264.205 tok/s, target-only 300)"
[ "$extra" = 0 ] || fail "T=1 is in the profile, not extrapolated: $row"
grep -q "| 3 | 3 | 3 | 300.0 | 11.35 | 264.2 | 0.88x |" "$tmp/out" || fail "table row for 3 nodes: $(cat "$tmp/out")"
echo "ok: hand-checked round, tokens/round, latency and tok/s"
# T = 4 from T = 1 and 2 as a + b/T: t1 10 and 6 -> a = 2, b = 8 -> T=4: 4 ms at one position.
profile '.gpus_per_node = 4 | .target += [{tp: 2, positions: 1, ms: 6}, {tp: 2, positions: 2, ms: 7}]' >"$tmp/p2.json"
run_to "$tmp/out2" "$AUGUR_BIN" project --profile "$tmp/p2.json" --tp 4 --nodes 1 --alpha 0.5 --csv "$tmp/p2.csv"
grep -q "target-only 4.00 ms a token" "$tmp/out2" || fail "extrapolated T=4: $(cat "$tmp/out2")"
grep -q "extrapolated" "$tmp/out2" || fail "the extrapolation is not labelled: $(cat "$tmp/out2")"
echo "ok: T=4 extrapolated from T=1 and T=2, and labelled"
profile 'del(.layers)' >"$tmp/bad1.json"
expect_fail 2 "bad1.json: \"layers\" must be an integer" -- "$AUGUR_BIN" project --profile "$tmp/bad1.json"
profile '.target = [{tp: 1, positions: 1, ms: 10}]' >"$tmp/bad2.json"
expect_fail 2 "one positions value for tp 1" -- "$AUGUR_BIN" project --profile "$tmp/bad2.json"
profile '.links.inter.latency_us = "x"' >"$tmp/bad3.json"
expect_fail 2 "links.inter: \"latency_us\" must be a number" -- "$AUGUR_BIN" project --profile "$tmp/bad3.json"
expect_fail 2 "profile" -- "$AUGUR_BIN" project
# The shipped H200 profile loads and projects T = 8 and 16 over 1..64 nodes.
run_to "$tmp/h200" "$AUGUR_BIN" project --profile "$AUGUR_SOURCE_DIR/cluster/profiles/h200-llama70b.json"
grep -q "^| 64 | 512 | 32 |" "$tmp/h200" || fail "H200 projection lacks 64 nodes at T=16: $(cat "$tmp/h200")"
echo "PASS"
