#!/usr/bin/env bash
# Builds augur twice (optimised, and with AddressSanitizer + UBSan) and runs the whole
# ctest suite on both. GPU tests skip themselves with a message where no GPU exists.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
jobs=$(nproc)
echo "== release build" >&2
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DAUGUR_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"
echo "== sanitizer build (ASan + UBSan)" >&2
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DAUGUR_SANITIZE=ON -DAUGUR_WERROR=ON >/dev/null
cmake --build build-asan -j "$jobs"
ctest --test-dir build-asan --output-on-failure -j "$jobs" -LE slow
