#!/usr/bin/env bash
# Kernel times of one timed forward of N positions (ncu, --clock-control none, selected
# by augur bench's NVTX range "bench n=N"), summed by kernel name: where a forward's time
# goes, with DRAM throughput and active warps (time-weighted).
#   usage: bash tools/gpu/ncu_forward.sh AUGUR_BIN SHAPE LAYERS N OUTDIR [bench flags...]
#   e.g.   bash tools/gpu/ncu_forward.sh build-gpu/launcher/augur 8b 4 6 /tmp/ncu
set -euo pipefail
bin=${1:?augur binary} shape=${2:?shape} layers=${3:?layers} n=${4:?positions} out=${5:?outdir}
shift 5
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
bash "$here/dummy_config.sh" "$shape" "$out/$shape" >/dev/null
ncu --clock-control none --csv --print-units base --nvtx --nvtx-include "bench n=$n/" \
  --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active \
  "$bin" bench --device cuda --load-format dummy --model "$out/$shape" --layers "$layers" --positions "$n" \
  --iters 1 --warmup 1 "$@" >"$out/ncu-$shape-$n.csv" 2>"$out/ncu-$shape-$n.err"
echo "== $shape, $layers layers, $n positions"
python3 - "$out/ncu-$shape-$n.csv" <<'PY'
import csv, sys, collections
lines = open(sys.argv[1]).read().splitlines()
start = next(i for i, l in enumerate(lines) if l.startswith('"ID"'))
rows = list(csv.DictReader(lines[start:]))
by = collections.OrderedDict()
for r in rows:
    k = (r["ID"], r["Kernel Name"].split("(")[0][:60])
    by.setdefault(k, {})[r["Metric Name"]] = float(r["Metric Value"].replace(",", ""))
agg = collections.OrderedDict()
for (i, name), m in by.items():
    a = agg.setdefault(name, [0, 0.0, 0.0, 0.0])
    a[0] += 1; a[1] += m.get("gpu__time_duration.sum", 0) / 1e3
    a[2] += m.get("dram__throughput.avg.pct_of_peak_sustained_elapsed", 0) * m.get("gpu__time_duration.sum", 0)
    a[3] += m.get("sm__warps_active.avg.pct_of_peak_sustained_active", 0) * m.get("gpu__time_duration.sum", 0)
print(f"{'kernel':<60} {'calls':>6} {'total us':>10} {'dram %':>7} {'warps %':>7}")
for name, (n, us, d, w) in agg.items():
    t = us * 1e3
    print(f"{name:<60} {n:>6} {us:>10.1f} {d / t if t else 0:>7.1f} {w / t if t else 0:>7.1f}")
PY
