#!/usr/bin/env bash
# augur serve on the GPU machine under tools/bench/serve_load.py: streamed greedy requests
# at 1, 4 and 16 concurrent streams with and without speculation, one GPU shared by the
# target and draft ranks. Models: the shipped pair (default), or with --dummy A the 8B
# shape with a 1B-shape draft on dummy weights (tools/gpu/dummy_config.sh), a made-up
# Llama-3-sized vocabulary (tools/bench/make_wide_tokenizer.py) and --synthetic-acceptance A.
# Logs in OUTDIR; the table to stdout.
#   usage: bash tools/gpu/serve_bench.sh AUGUR_BIN OUTDIR [--dummy A] [serve_load.py flags...]
set -euo pipefail
bin=${1:?augur binary} out=${2:?output directory}
shift 2
cd "$(dirname "$0")/../.."
mkdir -p "$out"
models=(--target models/target --draft models/draft)
if [ "${1:-}" = --dummy ]; then
  alpha=${2:?--dummy needs the synthetic acceptance A}
  shift 2
  bash tools/gpu/dummy_config.sh 8b "$out/8b" >/dev/null
  bash tools/gpu/dummy_config.sh 1b "$out/1b" >/dev/null
  python3 tools/bench/make_wide_tokenizer.py "$out/tokenizer.json" >/dev/null
  models=(--target "$out/8b" --draft "$out/1b" --load-format dummy --tokenizer "$out/tokenizer.json"
          --synthetic-acceptance "$alpha" --max-context 2048)
  echo "8B shape + 1B-shape draft, dummy weights, --synthetic-acceptance $alpha"
fi
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun --oversubscribe --bind-to none -np 2 "$bin" serve --device cuda "${models[@]}" \
  --port 0 --max-running 16 >"$out/serve.out" 2>"$out/serve.err" &
mpirun_pid=$!
for _ in $(seq 1 1500); do
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
