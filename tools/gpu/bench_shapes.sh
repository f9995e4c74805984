#!/usr/bin/env bash
# augur bench over the shapes the GPU speed work tracks (dummy bf16 weights): the
# Llama-3-8B and 3.2-1B shapes whole, the 70B shape's shard 0 of 2 and of 8, at 1, 6 and 9
# positions; prints one table (ms per forward, floor, ratios) and keeps each run's
# output and CSV in OUTDIR.
#   usage: bash tools/gpu/bench_shapes.sh AUGUR_BIN OUTDIR [SHAPE...]
#   SHAPE: 8b | 1b | 70b-tp2 | 70b-tp8 (default: all four)
set -euo pipefail
bin=${1:?augur binary}
out=${2:?output directory}
shift 2
shapes=("$@")
((${#shapes[@]})) || shapes=(8b 1b 70b-tp2 70b-tp8)
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
printf '%-9s %10s %10s %8s %10s %7s %10s %7s\n' shape "1 pos ms" "floor ms" "/floor" "6 pos ms" "6/1" "9 pos ms" "9/1"
for s in "${shapes[@]}"; do
  case "$s" in
    8b) cfg=8b tp=(--tp-size 1) iters=20 ;;
    1b) cfg=1b tp=(--tp-size 1) iters=20 ;;
    70b-tp2) cfg=70b tp=(--tp-size 2 --tp-rank 0) iters=10 ;;
    70b-tp8) cfg=70b tp=(--tp-size 8 --tp-rank 0) iters=20 ;;
    *) echo "bench_shapes.sh: unknown shape '$s'" >&2; exit 2 ;;
  esac
  [ -f "$out/$cfg/config.json" ] || bash "$here/dummy_config.sh" "$cfg" "$out/$cfg" >/dev/null
  echo "bench_shapes: $s ..." >&2
  "$bin" bench --device cuda --load-format dummy --model "$out/$cfg" "${tp[@]}" --positions 1,6,9 \
    --iters "$iters" --csv "$out/$s.csv" >"$out/$s.txt" 2>&1 || { tail -n 20 "$out/$s.txt" >&2; exit 1; }
  # CSV columns: see augur bench --csv (positions, median_ms, min_ms, floor_ms, ...)
  python3 - "$out/$s.csv" "$s" <<'PY'
import csv, sys
rows = {int(r["positions"]): r for r in csv.DictReader(open(sys.argv[1]))}
one = float(rows[1]["median_ms"]); floor = float(rows[1]["floor_ms"])
six = float(rows[6]["median_ms"]); nine = float(rows[9]["median_ms"])
print(f"{sys.argv[2]:<9} {one:10.3f} {floor:10.3f} {one/floor:7.2f}x {six:10.3f} {six/one:6.2f}x {nine:10.3f} {nine/one:6.2f}x")
PY
done
