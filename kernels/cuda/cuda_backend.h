/* The "cuda" backend's own entry points (kernels/backend.h): its constructor, which code
 * path a kernel takes (AUTO is what production uses; tests force each path to cover it),
 * and device queries. Plain C, no CUDA headers needed; every function also exists in
 * builds without CUDA (kernels/backend_stubs.c), where there are no devices. Code outside
 * kernels/ reaches the backend through kernels/backend.h (backend_create and the
 * capability queries) and needs none of this but the test knobs. */
#ifndef AUGUR_CUDA_BACKEND_H
#define AUGUR_CUDA_BACKEND_H

#include "kernels/backend.h"

/* Forwards of up to this many rows take row-invariant schedules only: the GEMV or, for
 * bf16 weights, its tensor-core twin (in passes of 16 rows) and split attention over
 * fixed chunks of CUK_ATT_INVARIANT_CHUNK absolute positions, so that a row's result never depends on
 * how many rows share the call (decode, and every verification width: gamma + 1 <= 65).
 * Longer calls are prompt prefill chunks, cut alike in every run of a prompt, which may
 * take cuBLAS and a chunk sized to the grid. */
#define CUK_INVARIANT_ROWS 80
#define CUK_ATT_INVARIANT_CHUNK 64

typedef enum {
    CUDA_MATMUL_AUTO = 0,     /* n <= CUK_INVARIANT_ROWS: tensor-core GEMV for bf16 weights, else the GEMV
                                 (and fp16 weights at any n); cuBLAS above */
    CUDA_MATMUL_GEMV = 1,     /* the warp-per-feature kernel at any n */
    CUDA_MATMUL_CUBLAS = 2,   /* cublasGemmEx at any n (bf16 and fp32 weights; fp16 stays on GEMV) */
    CUDA_MATMUL_MMA = 3,      /* the tensor-core GEMV at any n (bf16 weights; others take the GEMV) */
} cuda_matmul_path;

typedef enum {
    CUDA_ATTN_AUTO = 0,       /* grouped up to CUK_INVARIANT_ROWS rows; above, split when the grid would be thin or long */
    CUDA_ATTN_SINGLE = 1,     /* one block per (row, head); falls back to split past shared memory */
    CUDA_ATTN_SPLIT = 2,      /* flash-decoding split + combine */
    CUDA_ATTN_GROUPED = 3,    /* split at fixed positions, one block per (chunk, KV head) for all its query
                                 heads and rows (what AUTO takes up to CUK_INVARIANT_ROWS rows) */
} cuda_attn_path;

typedef struct {
    cuda_matmul_path matmul;
    cuda_attn_path attention;
    int split_chunk;          /* positions per split (split path); 0 = chosen per call */
} cuda_backend_paths;

/* The CUDA backend on device `device`, with its own stream and cuBLAS handle. Fails
 * with AUGUR_E_UNSUPPORTED when augur was built without CUDA or no such device is
 * visible. */
augur_status backend_cuda_create(augur_backend **out, int device, augur_error *err);

/* Sets the paths of a backend made by backend_cuda_create; AUGUR_E_INTERNAL for any other. */
augur_status backend_cuda_set_paths(augur_backend *be, const cuda_backend_paths *paths, augur_error *err);

/* Number of CUDA devices visible (0 when none, the driver is missing, or augur was
 * built without CUDA). */
int backend_cuda_device_count(void);

/* Free and total memory of a visible device (cudaMemGetInfo on it). */
augur_status backend_cuda_mem_info(int device, size_t *free_bytes, size_t *total_bytes, augur_error *err);

/* Name of a visible device, e.g. "NVIDIA H100 80GB HBM3" ("?" when unknown). */
void backend_cuda_device_name(int device, char *name, size_t len);

/* The cudaStream_t a "cuda" backend queues its work on (NULL for any other backend), so
 * that NCCL collectives can follow the kernels that produce their input. */
void *backend_cuda_stream(augur_backend *be);

/* The device a "cuda" backend runs on (-1 for any other backend). */
int backend_cuda_device(const augur_backend *be);

/* Whether the device refused a fused chain's cooperative cluster launch, so that its
 * chains launch plainly (1), took it or was not asked yet (0); -1 for any other backend. */
int backend_cuda_cooperative_refused(const augur_backend *be);

#endif
