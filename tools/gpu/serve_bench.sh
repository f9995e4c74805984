#!/usr/bin/env bash
# augur serve on the GPU machine under tools/bench/serve_load.py: the shipped pair, one
# GPU shared by the target and draft ranks, streamed greedy requests at 1, 4 and 16
# concurrent streams with and without speculation. Logs in OUTDIR; the table to stdout.
#   usage: bash tools/gpu/serve_bench.sh AUGUR_BIN OUTDIR [serve_load.py flags...]
set -euo pipefail
bin=${1:?augur binary} out=${2:?output directory}
shift 2
cd "$(dirname "$0")/../.."
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun --oversubscribe --bind-to none -np 2 "$bin" serve --device cuda --target models/target --draft models/draft \
  --port 0 --max-running 16 >"$out/serve.out" 2>"$out/serve.err" &
mpirun_pid=$!
for _ in $(seq 1 600); do
  grep -q "listening on" "$out/serve.out" && break
  kill -0 "$mpirun_pid" 2>/dev/null || { tail -n 20 "$out/serve.err" >&2; exit 1; }
  sleep 0.2
done
port=$(sed -n 's/.*http:\/\/127.0.0.1:\([0-9]*\) .*/\1/p' "$out/serve.out")
pid=$(sed -n 's/.*rank 0 pid \([0-9]*\).*/\1/p' "$out/serve.out")
rc=0
python3 tools/bench/serve_load.py --port "$port" --prompts models/heldout_prompts.txt "$@" || rc=$?
kill -TERM "$pid"
wait "$mpirun_pid" || rc=$?
exit "$rc"
