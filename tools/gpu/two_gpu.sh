#!/usr/bin/env bash
# Target-only decode on two GPUs of one host (nvidia-h200-x2): the 8B shape at T = 1 and
# T = 2 (NCCL), the 70B shape at T = 2; dummy bf16 weights, a 64-token prompt, 128 new
# tokens. Prints each run's tokens/s and time split; the generated ids (OUTDIR/NAME.ids)
# and logs in OUTDIR. The environment passes through (AUGUR_CUDA_GRAPHS_NCCL=1: the T = 2
# runs' all-reduces inside captured steps).
#   usage: bash tools/gpu/two_gpu.sh AUGUR_BIN OUTDIR
set -euo pipefail
bin=${1:?augur binary} out=${2:?output directory}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ids=$(seq -s, 1 64)
run() { # name shape T
  local name=$1 shape=$2 t=$3
  [ -f "$out/$shape/config.json" ] || bash "$here/dummy_config.sh" "$shape" "$out/$shape" >/dev/null
  mpirun --oversubscribe --bind-to none -np $((t + 1)) "$bin" generate --device cuda --load-format dummy \
    --target "$out/$shape" --no-speculation --prompt-ids "$ids" --max-tokens 128 --ids-only \
    >"$out/$name.ids" 2>"$out/$name.log" || { tail -n 20 "$out/$name.log" >&2; return 1; }
  echo "== $name"
  grep -E "tok/s|time:|all-reduce" "$out/$name.log" | sed 's/^augur: //'
}
nvidia-smi --query-gpu=index,name --format=csv,noheader
run 8b-t1 8b 1
run 8b-t2 8b 2
run 70b-t2 70b 2
