#!/usr/bin/env bash
# augur bench on the CPU backend: the table has a row per --positions value and the verify
# ratio line, --csv writes the same rows, a dummy-weight shard (rank 1 of 2, from a bare
# config.json) runs too, and bad input is one line on stderr with exit code 2. Timings
# are printed, never asserted.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
A="$AUGUR_BIN"
m="$tmp/tiny"
"$MAKE_TINY" --out "$m" --dim 64 --layers 2 --heads 4 --kv-heads 2 --vocab 256 --seed 3 --scale 1.5

# check_table FILE N...: the header lines, the table header, exactly one row per N.
check_table() {
  local out=$1; shift
  grep -Eq '^augur bench: cpu, 1 thread \| llama: [12] layers?, hidden 64, 4 heads, 2 kv heads, vocab 256, ' "$out" ||
    fail "header line missing: $(cat "$out")"
  grep -q '^compute only: no tensor-parallel collectives' "$out" || fail "no 'compute only' line: $(cat "$out")"
  grep -Eq '^bandwidth [0-9.]+ GB/s' "$out" || fail "no bandwidth line: $(cat "$out")"
  grep -q '^positions | median ms | *min ms | *floor ms | median/floor | ms per position$' "$out" ||
    fail "table header missing: $(cat "$out")"
  local n
  for n in "$@"; do
    grep -Eq "^ *$n \| +[0-9.]+ \| +[0-9.]+ \| +[0-9.]+ \| +[0-9.]+x \| +[0-9.]+$" "$out" ||
      fail "no row for $n positions: $(cat "$out")"
  done
  [ "$(grep -Ec '^ *[0-9]+ \|' "$out")" -eq $# ] || fail "expected $# rows: $(cat "$out")"
}

"$A" bench --model "$m" --device cpu --threads 1 --positions 1,6 --iters 3 --warmup 1 --context 64 \
  --csv "$tmp/rows.csv" >"$tmp/out" 2>"$tmp/err" || fail "bench: $(cat "$tmp/err")"
cat "$tmp/out"
check_table "$tmp/out" 1 6
grep -Eq '^verify n=6 costs [0-9]+\.[0-9]{2}x a one-position forward$' "$tmp/out" ||
  fail "verify ratio line missing: $(cat "$tmp/out")"
grep -q 'shard 0 of 1' "$tmp/out" || fail "shard not named"
for step in "loading" "measuring bandwidth" "filling the KV cache with 32 positions"; do
  grep -q "augur: bench: $step" "$tmp/err" || fail "no '$step' progress on stderr: $(cat "$tmp/err")"
done
[ "$(head -n 1 "$tmp/rows.csv")" = "positions,median_ms,min_ms,floor_ms,median_over_floor,ms_per_position" ] ||
  fail "csv header: $(head -n 1 "$tmp/rows.csv")"
[ "$(wc -l <"$tmp/rows.csv")" -eq 3 ] || fail "csv: expected a header and 2 rows: $(cat "$tmp/rows.csv")"
grep -Eq '^1,[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+$' "$tmp/rows.csv" || fail "csv: no row for 1"
grep -Eq '^6,' "$tmp/rows.csv" || fail "csv: no row for 6"
echo "ok: table, verify line, csv"

# the rank-1 shard of T=2 from config.json alone (dummy weights)
"$A" bench --model "$m/config.json" --load-format dummy --device cpu --threads 1 --tp-size 2 --tp-rank 1 \
  --iters 3 --warmup 1 --context 64 >"$tmp/out" 2>"$tmp/err" || fail "dummy T=2 rank 1: $(cat "$tmp/err")"
cat "$tmp/out"
check_table "$tmp/out" 1 6
grep -q 'shard 1 of 2 (2 heads, 1 kv head, 96 intermediate, 128 vocab rows)' "$tmp/out" ||
  fail "dummy shard line: $(cat "$tmp/out")"
grep -q 'a real job adds the all-reduces' "$tmp/out" || fail "T=2 without the all-reduce note"
grep -Eq '^verify n=6 costs' "$tmp/out" || fail "dummy: verify line missing"
echo "ok: dummy shard 1 of 2"

# one positions value and no 1 (so no verify line), the first layer only
"$A" bench --model "$m" --device cpu --threads 1 --layers 1 --positions 3 --iters 2 --warmup 0 --context 16 \
  >"$tmp/out" 2>"$tmp/err" || fail "--layers 1 --positions 3: $(cat "$tmp/err")"
check_table "$tmp/out" 3
grep -q 'llama: 1 layer,' "$tmp/out" || fail "--layers 1: $(cat "$tmp/out")"
grep -q 'filling the KV cache with 8 positions' "$tmp/err" || fail "--context 16: $(cat "$tmp/err")"
! grep -q '^verify' "$tmp/out" || fail "verify line without a one-position row"
echo "ok: --layers 1 --positions 3"

help=$("$A" bench --help)
for flag in --model --load-format --device --gpu --threads --tp-size --tp-rank --positions --context --iters \
  --warmup --layers --csv --help; do
  grep -q -- "$flag" <<<"$help" || fail "--help does not document $flag"
done
grep -q 'collectives' <<<"$help" || fail "--help does not say no collectives run"
"$A" --help | grep -q '^  bench ' || fail "augur --help does not list bench"

B=(--device cpu --threads 1 --iters 1 --warmup 0)
expect_fail 2 "--model PATH is required" -- "$A" bench "${B[@]}"
expect_fail 2 "--tp-rank 2 is not below --tp-size 2" -- "$A" bench --model "$m" "${B[@]}" --tp-size 2 --tp-rank 2
expect_fail 2 "3 target ranks do not divide num_attention_heads 4" -- "$A" bench --model "$m" "${B[@]}" --tp-size 3
expect_fail 2 "do not divide num_attention_heads" -- \
  "$A" bench --model "$m" "${B[@]}" --load-format dummy --tp-size 3
expect_fail 2 "--positions: 17 is outside 1..16" -- "$A" bench --model "$m" "${B[@]}" --positions 1,17
expect_fail 2 "--positions: 0 is outside 1..16" -- "$A" bench --model "$m" "${B[@]}" --positions 0
expect_fail 2 "is not a comma-separated list" -- "$A" bench --model "$m" "${B[@]}" --positions 1,,6
expect_fail 2 "--positions: 'x' is not an integer" -- "$A" bench --model "$m" "${B[@]}" --positions x
expect_fail 2 "--iters: 0 is outside" -- "$A" bench --model "$m" --device cpu --iters 0
expect_fail 2 "--context 4096 exceeds" -- "$A" bench --model "$m" "${B[@]}" --context 4096
expect_fail 2 "--context 8 leaves 4 positions" -- "$A" bench --model "$m" "${B[@]}" --context 8 --positions 6
expect_fail 2 "draft layers requested" -- "$A" bench --model "$m" "${B[@]}" --layers 3
expect_fail 2 "is not auto or dummy" -- "$A" bench --model "$m" "${B[@]}" --load-format bogus
expect_fail 2 "is not a device" -- "$A" bench --model "$m" "${B[@]}" --device tpu
expect_fail 2 "unknown option '--bogus'" -- "$A" bench --model "$m" "${B[@]}" --bogus
expect_fail 2 "unexpected argument 'extra'" -- "$A" bench --model "$m" "${B[@]}" extra
expect_fail 2 "cannot open for writing" -- "$A" bench --model "$m" "${B[@]}" --csv "$tmp/no/such/dir/x.csv"
mkdir "$tmp/empty"
expect_fail 2 "no config.json" -- "$A" bench --model "$tmp/empty" "${B[@]}"
echo "PASS"
