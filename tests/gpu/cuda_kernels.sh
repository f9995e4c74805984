#!/usr/bin/env bash
# CUDA kernels against the CPU backend, kernel by kernel (tests/gpu/test_cuda_kernels.c,
# built as kernels/augur_cuda_kernel_test where a CUDA toolkit exists). Prints a table of
# kernel / shape / relative error. Exits 77 (skipped) without the program or a GPU.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cuda_test_program augur_cuda_kernel_test
exec "$bin"
