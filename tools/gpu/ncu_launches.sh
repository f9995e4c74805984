#!/usr/bin/env bash
# Every kernel launch of one timed forward of N positions (ncu, --clock-control none,
# selected by augur bench's NVTX range "bench n=N"), one line each in launch order: time,
# DRAM throughput, grid, registers, achieved occupancy. Where ncu_forward.sh sums by kernel
# name, this tells the q, k, v, o, gate, up and down products apart.
# ncu flushes the caches before each kernel by default, which inflates the small kernels
# (their inputs, in L2 inside a captured step, come from DRAM); NCU_CACHE_CONTROL=none
# keeps them (docs/perf-notes.md, change 16).
#   usage: [NCU_CACHE_CONTROL=all|none] bash tools/gpu/ncu_launches.sh AUGUR_BIN SHAPE LAYERS N OUTDIR [bench flags...]
set -euo pipefail
bin=${1:?augur binary} shape=${2:?shape} layers=${3:?layers} n=${4:?positions} out=${5:?outdir}
shift 5
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
[ -f "$out/$shape/config.json" ] || bash "$here/dummy_config.sh" "$shape" "$out/$shape" >/dev/null
ncu --clock-control none --cache-control "${NCU_CACHE_CONTROL:-all}" --csv --print-units base --nvtx --nvtx-include "bench n=$n/" \
  --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum,launch__grid_size,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active \
  "$bin" bench --device cuda --load-format dummy --model "$out/$shape" --layers "$layers" --positions "$n" \
  --iters 1 --warmup 1 "$@" >"$out/launches-$shape-$n.csv" 2>"$out/launches-$shape-$n.err"
echo "== $shape, $layers layers, $n positions: every launch"
python3 - "$out/launches-$shape-$n.csv" <<'PY'
import csv, sys, collections
lines = open(sys.argv[1]).read().splitlines()
start = next(i for i, l in enumerate(lines) if l.startswith('"ID"'))
by = collections.OrderedDict()
for r in csv.DictReader(lines[start:]):
    k = (int(r["ID"]), r["Kernel Name"].split("(")[0][:34])
    by.setdefault(k, {})[r["Metric Name"]] = float(r["Metric Value"].replace(",", ""))
print(f"{'kernel':<34} {'us':>8} {'MB read':>8} {'GB/s':>7} {'dram%':>6} {'grid':>7} {'regs':>5} {'warps%':>6}")
tot = 0.0
for (i, name), m in by.items():
    us = m.get("gpu__time_duration.sum", 0) / 1e3; tot += us
    mb = m.get("dram__bytes_read.sum", 0) / 1e6
    print(f"{name:<34} {us:8.1f} {mb:8.2f} {mb / us * 1e3 if us else 0:7.0f} {m.get('dram__throughput.avg.pct_of_peak_sustained_elapsed', 0):6.1f} "
          f"{int(m.get('launch__grid_size', 0)):7d} {int(m.get('launch__registers_per_thread', 0)):5d} {m.get('sm__warps_active.avg.pct_of_peak_sustained_active', 0):6.1f}")
print(f"total {tot:.1f} us")
PY
