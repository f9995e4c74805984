#!/usr/bin/env bash
# The draft sharing one GPU with the target (issue #11, item 8): the 8B shape with a
# 1B-shape draft (dummy weights, --synthetic-acceptance 0.9, gamma 4 fixed, 128 tokens)
# and the shipped pair (20 held-out prompts x 64 tokens, gamma 4), each speculative (by
# default, and with --overlap) and target-only, first as two plain processes time-slicing
# the GPU, then under CUDA MPS (a control daemon of this script's own, pipe and logs in
# OUTDIR/mps, stopped at the end; the GPU's compute mode is left as it is). Prints each run's tokens/s and the
# leader's time split (verify = the target's verification time, the figure the draft
# must not slow by more than 10%).
#   usage: bash tools/gpu/shared_gpu.sh AUGUR_BIN OUTDIR
set -uo pipefail
bin=${1:?augur binary} out=${2:?output directory}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bash "$here/dummy_config.sh" 8b "$out/8b" >/dev/null
bash "$here/dummy_config.sh" 1b "$out/1b" >/dev/null
head -n 20 "$here/../../models/heldout_prompts.txt" >"$out/prompts.txt"
ids=$(seq -s, 1 64)
mpi=(mpirun --oversubscribe --bind-to none -np 2)
show() { grep -E "tok/s|time:|speedup|acceptance" "$1" | sed 's/^augur: /  /'; }
runs() { # tag
  local tag=$1
  echo "== $tag: 8B shape + 1B-shape draft, A 0.9, gamma 4"
  "${mpi[@]}" "$bin" generate --device cuda --load-format dummy --target "$out/8b" --draft "$out/1b" \
    --prompt-ids "$ids" --max-tokens 128 --gamma 4 --draft-rule fixed --synthetic-acceptance 0.9 --ids-only \
    >/dev/null 2>"$out/$tag-8b-spec.log" && show "$out/$tag-8b-spec.log" || tail -n 5 "$out/$tag-8b-spec.log"
  "${mpi[@]}" "$bin" generate --device cuda --load-format dummy --target "$out/8b" --draft "$out/1b" \
    --prompt-ids "$ids" --max-tokens 128 --gamma 4 --draft-rule fixed --synthetic-acceptance 0.9 --ids-only \
    --overlap >/dev/null 2>"$out/$tag-8b-spec-overlap.log" && { echo "  -- --overlap:"; show "$out/$tag-8b-spec-overlap.log"; } ||
    tail -n 5 "$out/$tag-8b-spec-overlap.log"
  "${mpi[@]}" "$bin" generate --device cuda --load-format dummy --target "$out/8b" --no-speculation \
    --prompt-ids "$ids" --max-tokens 128 --ids-only >/dev/null 2>"$out/$tag-8b-base.log" &&
    show "$out/$tag-8b-base.log" || tail -n 5 "$out/$tag-8b-base.log"
  echo "== $tag: shipped pair, gamma 4, 20 prompts x 64 tokens"
  "${mpi[@]}" "$bin" generate --device cuda --target models/target --draft models/draft \
    --prompts-file "$out/prompts.txt" --max-tokens 64 --gamma 4 --draft-rule fixed --compare-baseline --ids-only \
    >/dev/null 2>"$out/$tag-pair.log" && show "$out/$tag-pair.log" || tail -n 5 "$out/$tag-pair.log"
  "${mpi[@]}" "$bin" generate --device cuda --target models/target --draft models/draft \
    --prompts-file "$out/prompts.txt" --max-tokens 64 --gamma 4 --draft-rule fixed --overlap --ids-only \
    >/dev/null 2>"$out/$tag-pair-overlap.log" && { echo "  -- --overlap:"; show "$out/$tag-pair-overlap.log"; } ||
    tail -n 5 "$out/$tag-pair-overlap.log"
}
cd "$here/../.."
runs plain
mkdir -p "$out/mps/pipe" "$out/mps/log"
export CUDA_MPS_PIPE_DIRECTORY="$out/mps/pipe" CUDA_MPS_LOG_DIRECTORY="$out/mps/log"
if nvidia-cuda-mps-control -d; then
  sleep 1
  mpi+=(-x CUDA_MPS_PIPE_DIRECTORY -x CUDA_MPS_LOG_DIRECTORY)
  runs mps
  echo quit | nvidia-cuda-mps-control
  sleep 1
  tail -n 5 "$out/mps/log/control.log" 2>/dev/null | sed 's/^/  mps log: /'
else
  echo "== mps: nvidia-cuda-mps-control -d failed (rc $?): no MPS on this machine"
fi
