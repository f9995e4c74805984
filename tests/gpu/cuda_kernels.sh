#!/usr/bin/env bash
# CUDA kernels against the CPU backend, kernel by kernel (tests/gpu/test_cuda_kernels.c,
# built as kernels/augur_cuda_kernel_test where a CUDA toolkit exists). Prints a table of
# kernel / shape / relative error. Exits 77 (skipped) without the program or a GPU.
set -euo pipefail
: "${AUGUR_BIN:?AUGUR_BIN is not set (run through ctest)}"
bin="$(dirname "$AUGUR_BIN")/../kernels/augur_cuda_kernel_test"
if [ ! -x "$bin" ]; then
  echo "SKIP: $bin not built (no CUDA toolkit at configure time)"
  exit 77
fi
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "SKIP: no GPU visible (nvidia-smi -L)"
  exit 77
fi
# Under AddressSanitizer the CUDA driver needs the shadow gap unprotected, and its
# allocations at exit are not leaks of ours.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:protect_shadow_gap=0:detect_leaks=0"
exec "$bin"
