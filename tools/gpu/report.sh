#!/usr/bin/env bash
# The GPU speed report in one device call: build, forward benchmarks of the tracked shapes,
# the shipped pair (speculative against target-only, greedy, gamma 4, the draft sharing the
# GPU), transformers on the same GPU, a gamma x acceptance sweep of the 8B shape with a
# 1B-shape draft for each draft rule (tools/bench/sweep.sh; its sweep.json comes back in
# OUTDIR: draw it with `tools/bench/sweep.sh --plot-only` where gnuplot is), then ctest -L
# gpu. Logs in OUTDIR (logs.tgz); the summary goes to stdout.
#   usage: bash tools/gpu/report.sh OUTDIR [sections...]   sections: bench pair hf sweep ctest (default: all)
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:?output directory}
shift
sections=("$@")
((${#sections[@]})) || sections=(bench pair hf sweep ctest)
want() { [[ " ${sections[*]} " == *" $1 "* ]]; }
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$out"
work=$(mktemp -d)
bash tools/gpu/build.sh build-gpu >"$work/build.log" 2>&1 || { grep -m5 error "$work/build.log"; tail -5 "$work/build.log"; exit 1; }
bin=build-gpu/launcher/augur
mpi=(mpirun --oversubscribe --bind-to none -np 2)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | sed 's/^/gpu: /'

if want bench; then
  echo "== forward benchmarks (augur bench, dummy bf16 weights)"
  bash tools/gpu/bench_shapes.sh "$bin" "$work/bench" 2>/dev/null
fi
if want pair; then
  echo "== shipped pair on one GPU, greedy, gamma 4 (fixed), 20 held-out prompts x 64 tokens"
  head -n 20 models/heldout_prompts.txt >"$work/prompts.txt"
  "${mpi[@]}" "$bin" generate --device cuda --target models/target --draft models/draft --prompts-file "$work/prompts.txt" \
    --max-tokens 64 --gamma 4 --draft-rule fixed --compare-baseline --ids-only >/dev/null 2>"$work/pair.err"
  grep -E "tok/s|acceptance|speedup|time:" "$work/pair.err" | sed 's/^augur: //'
fi
if want hf; then
  echo "== transformers $(python3 -c 'import transformers; print(transformers.__version__)') on the same GPU"
  bash tools/gpu/dummy_config.sh 8b "$work/8b" >/dev/null
  timeout 300 python3 tools/gpu/hf_peer.py --config "$work/8b/config.json" --models models 2>"$work/hf.err" ||
    tail -5 "$work/hf.err"
fi
if want sweep; then
  echo "== 8B shape + 1B-shape draft on one GPU, --synthetic-acceptance A, 128 tokens (tools/bench/sweep.sh)"
  bash tools/gpu/dummy_config.sh 8b "$work/8b" >/dev/null
  bash tools/gpu/dummy_config.sh 1b "$work/1b" >/dev/null
  # jq comes from the carried packages (tools/gpu/build.sh unpacked them into /opt/pb)
  PATH=/opt/pb/usr/bin:$PATH LD_LIBRARY_PATH=/opt/pb/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
    bash tools/bench/sweep.sh --augur "$bin" --device cuda --target "$work/8b" --draft "$work/1b" \
    --rules fixed,heuristic --alphas 0.5,0.7,0.9 --gammas 1,2,4,8 "$work/sweep" 2>"$work/sweep.err" ||
    tail -5 "$work/sweep.err"
  cp "$work/sweep/sweep.json" "$out/" 2>/dev/null || true
fi
if want ctest; then
  echo "== ctest -L gpu"
  (cd build-gpu && ctest -L gpu -V >"$work/ctest.log" 2>&1)
  grep -E "Test +#|tests passed|cases, [0-9]+ failed|^[0-9]+: FAIL" "$work/ctest.log" | cut -c1-200
fi
tar -czf "$out/logs.tgz" -C "$work" --exclude='*/config.json' . 2>/dev/null
