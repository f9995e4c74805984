/* CUDA-only knobs of the "cuda" backend (kernels/backend.h): which code path a kernel
 * takes. AUTO is what production uses; tests force each path to cover it. Plain C, no
 * CUDA headers needed. */
#ifndef AUGUR_CUDA_BACKEND_H
#define AUGUR_CUDA_BACKEND_H

#include "kernels/backend.h"

typedef enum {
    CUDA_MATMUL_AUTO = 0,     /* GEMV for n <= 16 (and fp16 weights), cuBLAS above */
    CUDA_MATMUL_GEMV = 1,     /* the warp-per-feature kernel at any n */
    CUDA_MATMUL_CUBLAS = 2,   /* cublasGemmEx at any n (bf16 and fp32 weights; fp16 stays on GEMV) */
} cuda_matmul_path;

typedef enum {
    CUDA_ATTN_AUTO = 0,       /* split over the sequence when the grid would be thin or long */
    CUDA_ATTN_SINGLE = 1,     /* one block per (row, head); falls back to split past shared memory */
    CUDA_ATTN_SPLIT = 2,      /* flash-decoding split + combine */
} cuda_attn_path;

typedef struct {
    cuda_matmul_path matmul;
    cuda_attn_path attention;
    int split_chunk;          /* positions per split (split path); 0 = chosen per call */
} cuda_backend_paths;

/* Sets the paths of a backend made by backend_cuda_create; AUGUR_E_INTERNAL for any other. */
augur_status backend_cuda_set_paths(augur_backend *be, const cuda_backend_paths *paths, augur_error *err);

/* Number of CUDA devices visible (0 when none, or the driver is missing). */
int backend_cuda_device_count(void);

#endif
