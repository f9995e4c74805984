#!/usr/bin/env bash
# Builds augur and runs its main job: speculative decoding on the project's own
# draft/target pair (models/), target on rank 0 and draft on rank 1, on the CPU,
# followed by a target-only run on the same ranks for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target augur
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun --oversubscribe --mca mpi_yield_when_idle 1 -np 2 \
  ./build/launcher/augur generate --config configs/tiny-cpu.json \
  --prompt "The scheduler picks the next task to run" --compare-baseline "$@"
