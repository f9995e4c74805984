/* The CUDA backend: device buffers, one stream, one cuBLAS handle, and the kernels of
 * the .cu files beside it behind the backend interface (kernels/backend.h).
 *
 * This file checks shapes, picks code paths, grows scratch, and turns every CUDA and
 * cuBLAS return code into an augur_status whose message names the operation. */
#include "kernels/cuda/cuda_backend.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <omp.h>

#include "kernels/cuda/cuda_kernels.h"

/* Shared memory a block gets without opting in. */
#define DEFAULT_SMEM (48 * 1024)

/* Pinned host memory weight_upload packs rows into: from pageable memory the driver
 * copies through its own bounce buffer with one thread (about 9 GB/s on an H100 host,
 * against about 54 GB/s of DMA from pinned memory). Two halves, so that packing one
 * chunk overlaps the DMA of the other. */
#define STAGING_BYTES ((size_t)32 << 20)

/* One core packs rows at about 6-8 GB/s (memcpy), so the packing, not the DMA, sets the
 * pace: several threads share each chunk, in pieces of at least PACK_MIN_PIECE bytes
 * (8 threads: about 31 GB/s end to end on that host). */
#define PACK_THREADS_MAX 8
#define PACK_MIN_PIECE ((size_t)1 << 20)

typedef struct {
    int device;
    int sm_count;
    size_t smem_optin;        /* largest dynamic shared memory a block may opt into */
    cudaStream_t stream;
    cublasHandle_t blas;
    bool sync_each;           /* AUGUR_CUDA_SYNC: synchronise after every kernel */
    cuda_backend_paths paths;
    void *act16;              /* x rounded to 16 bits for cuBLAS */
    size_t act16_bytes;
    void *mma_x;              /* x split into bf16 terms for the tensor-core GEMV */
    size_t mma_x_bytes;
    /* mma_x holds the split of (split_x, split_n, split_cols) while the operations since it
     * was made are matmuls reading that x: q, k and v (gate and up) share one split. Every
     * operation counts itself in op_seq; split_seq is the op_seq of the last matmul that
     * made or reused the split. NCCL writes only matmul outputs between operations, and a
     * matmul whose output overlaps its x does not keep the split. */
    uint64_t op_seq, split_seq;
    bool ungrouped;           /* AUGUR_CUDA_GROUPED=0: matmul_parts as single products (A/B runs) */
    bool unfused;             /* AUGUR_CUDA_FUSED_NORM=0: norm_op's add, norm and split, swiglu's split and
                                 rope_store's four operations apart (A/B runs) */
    bool early;               /* kernels as programmatic dependents (cuk_stream; AUGUR_CUDA_PDL=0: off) */
    /* step capture: the bound position (NULL: none) and the most positions the cache
     * holds; capturing while a stream capture is open; scratch_gen moves whenever a
     * scratch buffer is reallocated, so that a captured step using the old one is known
     * stale */
    const int32_t *pos_dev;
    int pos_max;
    bool capturing;
    uint64_t scratch_gen;
    const float *split_x;
    int split_n;
    int64_t split_cols;
    void *att_scratch;        /* split-attention partials */
    size_t att_scratch_bytes;
    void *fused_scratch; /* cuk_fused_greedy's stages' outputs */
    size_t fused_scratch_bytes;
    int fused_blocks_want;    /* AUGUR_CUDA_FUSED_BLOCKS (A/B runs); 0: one a multiprocessor */
    int fused_cluster;        /* blocks of the fused chain's cluster; 0: the cooperative grid only */
    bool fused_cluster_forced; /* AUGUR_CUDA_FUSED_CLUSTER named the size: no fallback to the grid */
    int fused_clusters_want;   /* AUGUR_CUDA_FUSED_CLUSTERS (A/B runs); 0: as many as fit */
    const augur_fused_model *cluster_checked_model; /* the model and layer_rows cluster_groups */
    int cluster_checked_rows;                       /* was asked for (NULL, 0: none yet) */
    int cluster_groups;        /* cuk_fused_cluster_groups for them; 0: no cluster fits */
    int cluster_groups_beside; /* the same for a chain beside other work (fused_beside_sms) */
    int fused_beside_sms;      /* multiprocessors a chain beside other work takes (AUGUR_CUDA_FUSED_BESIDE) */
    cuk_cluster_launch_state cluster_launch;
    void *cluster_scratch; /* cuk_fused_cluster_greedy's LM head exchange (its own: cluster_launch tracks it) */
    size_t cluster_scratch_bytes;
    int32_t *fused_tokens;     /* a fused chain's tokens: pinned, mapped host memory the kernel writes */
    int32_t *fused_tokens_dev; /* the kernel's address of it */
    int fused_tokens_cap;
    unsigned char *staging;   /* STAGING_BYTES pinned, allocated by the first weight_upload */
    cudaEvent_t staged[2];    /* recorded after the copy out of each half of staging */
    int pack_threads;
} cuda_ctx;

static cuda_ctx *ctx_of(augur_backend *be)
{
    return be->ctx;
}

static cuk_stream kstream(const cuda_ctx *c)
{
    return (cuk_stream){c->stream, c->early};
}

/* Attention and its combine start only when the kernel before them has ended: launched
 * early they made a verification forward slower (8B shape, 9 positions 7.50 -> 8.10 ms,
 * one position unchanged; perf-notes change 13), for a cause not measured. */
static cuk_stream kstream_attention(const cuda_ctx *c)
{
    return (cuk_stream){c->stream, false};
}

static augur_status cuda_fail(augur_error *err, const cuda_ctx *c, cudaError_t rc, const char *what)
{
    return augur_fail(err, rc == cudaErrorMemoryAllocation ? AUGUR_E_NOMEM : AUGUR_E_INTERNAL,
                      "cuda backend (device %d): %s: %s (%s)", c->device, what, cudaGetErrorString(rc),
                      cudaGetErrorName(rc));
}

static augur_status check(cuda_ctx *c, cudaError_t rc, const char *what, augur_error *err)
{
    return rc == cudaSuccess ? AUGUR_OK : cuda_fail(err, c, rc, what);
}

/* After a kernel launch: the launch's status and, under AUGUR_CUDA_SYNC, the kernel's own. */
static augur_status launched(cuda_ctx *c, cudaError_t rc, const char *kernel, augur_error *err)
{
    if (rc == cudaSuccess && c->sync_each && !c->capturing)
        rc = cudaStreamSynchronize(c->stream);
    return check(c, rc, kernel, err);
}

static augur_status blas_check(cuda_ctx *c, cublasStatus_t st, const char *what, augur_error *err)
{
    if (st == CUBLAS_STATUS_SUCCESS)
        return c->sync_each && !c->capturing ? check(c, cudaStreamSynchronize(c->stream), what, err) : AUGUR_OK;
    return augur_fail(err, st == CUBLAS_STATUS_ALLOC_FAILED ? AUGUR_E_NOMEM : AUGUR_E_INTERNAL,
                      "cuda backend (device %d): %s: %s (%s)", c->device, what, cublasGetStatusString(st),
                      cublasGetStatusName(st));
}

/* Grows a scratch buffer to need bytes. Kernels already queued may still read the old
 * one, so the stream drains before it is freed. */
static augur_status grow_scratch(cuda_ctx *c, void **buf, size_t *have, size_t need, const char *what,
                                 augur_error *err)
{
    if (need <= *have)
        return AUGUR_OK;
    if (c->capturing) /* the caller runs each step once uncaptured first, so this is a bug */
        return augur_fail(err, AUGUR_E_INTERNAL, "cuda backend: %s: scratch grew during a step capture", what);
    c->scratch_gen++;
    augur_status st = check(c, cudaStreamSynchronize(c->stream), what, err);
    if (st)
        return st;
    cudaFree(*buf);
    *buf = NULL;
    *have = 0;
    if ((st = check(c, cudaMalloc(buf, need), what, err)))
        return st;
    *have = need;
    return AUGUR_OK;
}

static bool dtype_ok(augur_dtype dt)
{
    return dt == AUGUR_F32 || dt == AUGUR_F16 || dt == AUGUR_BF16;
}

/* ------------------------------------------------------------------ memory */

static void cuda_destroy(augur_backend *be)
{
    cuda_ctx *c = ctx_of(be);
    cudaStreamSynchronize(c->stream);
    cudaFree(c->act16);
    cudaFree(c->mma_x);
    cudaFree(c->att_scratch);
    cudaFree(c->fused_scratch);
    cudaFree(c->cluster_scratch);
    cudaFreeHost(c->fused_tokens);
    if (c->staging) {
        cudaFreeHost(c->staging);
        cudaEventDestroy(c->staged[0]);
        cudaEventDestroy(c->staged[1]);
    }
    cublasDestroy(c->blas);
    cudaStreamDestroy(c->stream);
    free(c);
    free(be);
}

static augur_status cuda_alloc(augur_backend *be, void **buf, size_t bytes, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++; /* a new buffer may take a freed x's address */
    *buf = NULL;
    cudaError_t rc = cudaMalloc(buf, bytes ? bytes : 16);
    if (rc != cudaSuccess) {
        *buf = NULL;
        return augur_fail(err, rc == cudaErrorMemoryAllocation ? AUGUR_E_NOMEM : AUGUR_E_INTERNAL,
                          "cuda backend (device %d): cudaMalloc of %zu bytes: %s (%s)", c->device, bytes,
                          cudaGetErrorString(rc), cudaGetErrorName(rc));
    }
    return AUGUR_OK;
}

static void cuda_free(augur_backend *be, void *buf)
{
    ctx_of(be)->op_seq++;
    if (!buf)
        return;
    /* Work queued on the stream may still use buf. */
    cudaStreamSynchronize(ctx_of(be)->stream);
    cudaFree(buf);
}

/* bytes from src to dst queued on the stream; what names the operation in errors. */
static augur_status copy_async(cuda_ctx *c, void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                               const char *what, augur_error *err)
{
    if (!bytes)
        return AUGUR_OK;
    return check(c, cudaMemcpyAsync(dst, src, bytes, kind, c->stream), what, err);
}

static augur_status cuda_upload(augur_backend *be, void *dst, const void *src, size_t bytes, augur_error *err)
{
    ctx_of(be)->op_seq++;
    /* From pageable memory the call returns once src is staged: the caller may reuse it. */
    return copy_async(ctx_of(be), dst, src, bytes, cudaMemcpyHostToDevice, "upload (cudaMemcpyAsync)", err);
}

static augur_status cuda_download(augur_backend *be, void *dst, const void *src, size_t bytes, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    augur_status st = copy_async(c, dst, src, bytes, cudaMemcpyDeviceToHost, "download (cudaMemcpyAsync)", err);
    if (st)
        return st;
    return check(c, cudaStreamSynchronize(c->stream), "download (cudaStreamSynchronize: an earlier kernel failed)",
                 err);
}

static augur_status cuda_copy(augur_backend *be, void *dst, const void *src, size_t bytes, augur_error *err)
{
    ctx_of(be)->op_seq++;
    return copy_async(ctx_of(be), dst, src, bytes, cudaMemcpyDeviceToDevice, "copy (cudaMemcpyAsync)", err);
}

static augur_status cuda_synchronize(augur_backend *be, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    return check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize", err);
}

static augur_status ensure_staging(cuda_ctx *c, augur_error *err)
{
    if (c->staging)
        return AUGUR_OK;
    char what[128];
    void *p = NULL;
    cudaError_t rc = cudaMallocHost(&p, STAGING_BYTES);
    if (rc != cudaSuccess) {
        snprintf(what, sizeof what, "cudaMallocHost of %zu bytes of pinned staging", STAGING_BYTES);
        return cuda_fail(err, c, rc, what);
    }
    int made = 0;
    while (made < 2 && (rc = cudaEventCreateWithFlags(&c->staged[made], cudaEventDisableTiming)) == cudaSuccess)
        made++;
    if (rc != cudaSuccess) {
        while (made > 0)
            cudaEventDestroy(c->staged[--made]);
        cudaFreeHost(p);
        return cuda_fail(err, c, rc, "cudaEventCreate for the pinned staging");
    }
    c->staging = p;
    return AUGUR_OK;
}

/* Bytes [pos, pos + n) of the packed device image of a matrix (rows of dst_row bytes:
 * the host row's src_row bytes, then zeros) into out; host row r starts at
 * src + r * src_pitch. Any byte range, so a chunk may end inside a row. */
static void pack_rows(unsigned char *out, const unsigned char *src, size_t src_pitch, size_t src_row, size_t dst_row,
                      size_t pos, size_t n)
{
    while (n) {
        const size_t r = pos / dst_row, b = pos % dst_row;
        const size_t seg = dst_row - b < n ? dst_row - b : n;
        const size_t data = b < src_row ? (src_row - b < seg ? src_row - b : seg) : 0;
        if (data)
            memcpy(out, src + r * src_pitch + b, data);
        if (seg > data)
            memset(out + data, 0, seg - data);
        out += seg;
        pos += seg;
        n -= seg;
    }
}

/* pack_rows over [pos, pos + n), split between up to `threads` threads. */
static void pack_chunk(int threads, unsigned char *out, const unsigned char *src, size_t src_pitch, size_t src_row,
                       size_t dst_row, size_t pos, size_t n)
{
    int pieces = (int)(n / PACK_MIN_PIECE);
    pieces = pieces < 1 ? 1 : pieces > threads ? threads : pieces;
#pragma omp parallel for schedule(static) num_threads(pieces) if (pieces > 1)
    for (int k = 0; k < pieces; k++) {
        const size_t a = n * (size_t)k / (size_t)pieces, b = n * (size_t)(k + 1) / (size_t)pieces;
        pack_rows(out + a, src, src_pitch, src_row, dst_row, pos + a, b - a);
    }
}

/* Packs the host view's rows, each padded to a multiple of 16 bytes so that the GEMV
 * kernel's 16-byte loads stay aligned, chunk by chunk through the pinned staging
 * buffer. It returns once the last chunk is staged, without waiting for its copy: the
 * host view is no longer needed, and the events keep the next call from overwriting a
 * half still being copied. */
static augur_status cuda_weight_upload(augur_backend *be, tensor_view *dev, const tensor_view *host,
                                       augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    memset(dev, 0, sizeof *dev);
    if (!dtype_ok(host->dtype) || host->rows < 0 || host->cols < 0 || host->row_stride < host->cols)
        return augur_fail(err, AUGUR_E_INTERNAL, "cuda backend: weight_upload of a malformed view (%s, %lld x %lld, "
                          "stride %lld)", augur_dtype_name(host->dtype), (long long)host->rows,
                          (long long)host->cols, (long long)host->row_stride);
    const size_t esize = augur_dtype_size(host->dtype);
    const int64_t per16 = 16 / (int64_t)esize;
    const int64_t stride = (host->cols + per16 - 1) / per16 * per16;
    *dev = (tensor_view){.data = NULL, .dtype = host->dtype, .rows = host->rows, .cols = host->cols,
                         .row_stride = stride};
    if (host->rows == 0 || host->cols == 0)
        return AUGUR_OK;
    const size_t src_row = (size_t)host->cols * esize, dst_row = (size_t)stride * esize;
    const size_t src_pitch = (size_t)host->row_stride * esize, total = (size_t)host->rows * dst_row;
    void *buf = NULL;
    augur_status st = cuda_alloc(be, &buf, total, err);
    if (!st)
        st = ensure_staging(c, err);
    if (st) {
        cuda_free(be, buf);
        memset(dev, 0, sizeof *dev);
        return augur_wrap(err, "weight_upload of %s %lld x %lld (%zu bytes)", augur_dtype_name(host->dtype),
                          (long long)host->rows, (long long)host->cols, total);
    }
    const size_t half = STAGING_BYTES / 2;
    int k = 0;
    for (size_t pos = 0; pos < total; pos += half, k ^= 1) {
        const size_t n = total - pos < half ? total - pos : half;
        unsigned char *stage = c->staging + (size_t)k * half;
        /* The copy that last read this half must be done before it is overwritten. */
        cudaError_t rc = cudaEventSynchronize(c->staged[k]);
        const char *op = "cudaEventSynchronize on the staging buffer (an earlier operation failed)";
        if (rc == cudaSuccess) {
            pack_chunk(c->pack_threads, stage, host->data, src_pitch, src_row, dst_row, pos, n);
            rc = cudaMemcpyAsync((unsigned char *)buf + pos, stage, n, cudaMemcpyHostToDevice, c->stream);
            op = "cudaMemcpyAsync";
        }
        if (rc == cudaSuccess) {
            rc = cudaEventRecord(c->staged[k], c->stream);
            op = "cudaEventRecord";
        }
        if (rc != cudaSuccess) {
            char what[256];
            snprintf(what, sizeof what, "weight_upload of %s %lld x %lld (%zu bytes): %s (bytes %zu..%zu)",
                     augur_dtype_name(host->dtype), (long long)host->rows, (long long)host->cols, total, op, pos,
                     pos + n);
            st = cuda_fail(err, c, rc, what);
            cuda_free(be, buf);
            memset(dev, 0, sizeof *dev);
            return st;
        }
    }
    dev->data = buf;
    return AUGUR_OK;
}

static void cuda_weight_free(augur_backend *be, tensor_view *dev)
{
    cuda_free(be, (void *)dev->data);
    memset(dev, 0, sizeof *dev);
}

static augur_status cuda_fill_random(augur_backend *be, void *buf, augur_dtype dtype, int64_t count, uint64_t seed,
                                     float scale, float offset, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    if (count <= 0)
        return AUGUR_OK;
    char what[128];
    snprintf(what, sizeof what, "fill_random kernel (%lld elements of %s, %lld bytes)", (long long)count,
             augur_dtype_name(dtype), (long long)count * (long long)augur_dtype_size(dtype));
    if (!dtype_ok(dtype))
        return augur_fail(err, AUGUR_E_INTERNAL, "cuda backend: %s: unknown dtype %d", what, (int)dtype);
    return launched(c, cuk_fill_random(kstream(c), buf, (int)dtype, count, seed, scale, offset), what, err);
}

/* ----------------------------------------------------------------- kernels */

/* Whether a product of n rows goes to the tensor-core GEMV by the matmul path (the
 * weights must be eligible too): cuda_matmul, cuda_matmul_parts and norm_op agree on it. */
static bool takes_mma(const cuda_ctx *c, int n)
{
    return c->paths.matmul == CUDA_MATMUL_MMA || (c->paths.matmul == CUDA_MATMUL_AUTO && n <= CUK_INVARIANT_ROWS);
}

/* mma_x as the split of x (n rows of cols) for operation seq: kept from the operation
 * before when that one made or used the same split, else made here. */
static augur_status split_ready(cuda_ctx *c, uint64_t seq, const float *x, int n, int64_t cols, augur_error *err)
{
    if (c->split_seq + 1 == seq && c->split_x == x && c->split_n == n && c->split_cols == cols)
        return AUGUR_OK;
    augur_status st =
        grow_scratch(c, &c->mma_x, &c->mma_x_bytes, cuk_gemv_mma_scratch(n, cols), "matmul (split activations)", err);
    if (!st)
        st = launched(c, cuk_gemv_split_x(kstream(c), c->mma_x, x, n, cols), "matmul (split_x kernel)", err);
    return st;
}

/* Records mma_x as the split of x that operation seq made or used, good for the next
 * operation unless this one wrote over x. */
static void keep_split(cuda_ctx *c, uint64_t seq, bool x_overwritten, const float *x, int n, int64_t cols)
{
    c->split_seq = x_overwritten ? 0 : seq;
    c->split_x = x;
    c->split_n = n;
    c->split_cols = cols;
}

/* Whether a product's output out (n rows of rows) overlaps its x (n rows of cols). */
static bool out_overlaps_x(const float *out, int64_t rows, const float *x, int64_t cols, int n)
{
    return (const char *)out < (const char *)(x + (int64_t)n * cols) &&
           (const char *)x < (const char *)(out + (int64_t)n * rows);
}

static augur_status cuda_matmul(augur_backend *be, float *out, const float *x, int n, const tensor_view *w,
                                const float *bias, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    if (n <= 0 || w->rows == 0)
        return AUGUR_OK;
    if (!dtype_ok(w->dtype) || w->rows < 0 || w->cols < 0 || w->row_stride < w->cols || w->rows > INT_MAX ||
        w->row_stride > INT_MAX)
        return augur_fail(err, AUGUR_E_INTERNAL, "cuda backend: matmul over a malformed weight view (%s, %lld x %lld, "
                          "stride %lld)", augur_dtype_name(w->dtype), (long long)w->rows, (long long)w->cols,
                          (long long)w->row_stride);
    const uint64_t seq = ++c->op_seq;
    if (takes_mma(c, n) && cuk_gemv_mma_eligible(w->data, (int)w->dtype, w->cols, w->row_stride, x)) {
        augur_status st = split_ready(c, seq, x, n, w->cols, err);
        if (st)
            return st;
        keep_split(c, seq, out_overlaps_x(out, w->rows, x, w->cols, n), x, n, w->cols);
        return launched(c, cuk_gemv_mma(kstream(c), out, c->mma_x, n, w->data, w->rows, w->cols, w->row_stride, bias),
                        "matmul (tensor-core gemv kernel)", err);
    }
    bool blas = c->paths.matmul == CUDA_MATMUL_CUBLAS ||
                (c->paths.matmul == CUDA_MATMUL_AUTO && n > CUK_INVARIANT_ROWS);
    /* cuBLAS wants both operands in one type, and fp16 activations could overflow. */
    if (w->dtype == AUGUR_F16 || w->cols == 0)
        blas = false;
    if (!blas)
        return launched(c,
                        cuk_gemv(kstream(c), out, x, n, w->data, (int)w->dtype, w->rows, w->cols, w->row_stride, bias),
                        "matmul (gemv kernel)", err);

    const void *b = x;
    cudaDataType_t ab_type = CUDA_R_32F;
    augur_status st;
    if (w->dtype == AUGUR_BF16) {
        const int64_t count = (int64_t)n * w->cols;
        if ((st = grow_scratch(c, &c->act16, &c->act16_bytes, (size_t)count * 2, "matmul (bf16 activation scratch)",
                               err)))
            return st;
        if ((st = launched(c, cuk_round_activations(kstream(c), c->act16, x, count, AUGUR_BF16),
                           "matmul (round activations to bf16)", err)))
            return st;
        b = c->act16;
        ab_type = CUDA_R_16BF;
    }
    /* Row-major W [rows][stride] is column-major W^T (cols x rows, ld stride); row-major x
     * [n][cols] is column-major cols x n; out [n][rows] is column-major rows x n. */
    const float alpha = 1.0f, beta = 0.0f;
    st = blas_check(c,
                    cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)w->rows, n, (int)w->cols, &alpha, w->data,
                                 ab_type, (int)w->row_stride, b, ab_type, (int)w->cols, &beta, out, CUDA_R_32F,
                                 (int)w->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                    "matmul (cublasGemmEx)", err);
    if (st || !bias)
        return st;
    return launched(c, cuk_add_bias(kstream(c), out, bias, n, w->rows), "matmul (add_bias kernel)", err);
}

/* q|k|v or gate|up: one split of x and one grid when every part takes the tensor-core
 * GEMV over the same columns; otherwise the parts one by one. Either way each output is
 * what cuda_matmul computes for it alone. */
static augur_status cuda_matmul_parts(augur_backend *be, const float *x, int n, const matmul_part *parts, int count,
                                      augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    bool grouped = !c->ungrouped && n > 0 && count <= CUK_MMA_MAX_PARTS && takes_mma(c, n);
    for (int p = 0; grouped && p < count; p++) {
        const tensor_view *w = parts[p].w;
        grouped = w->rows > 0 && w->rows <= INT_MAX && w->cols == parts[0].w->cols && w->row_stride >= w->cols &&
                  w->row_stride <= INT_MAX && cuk_gemv_mma_eligible(w->data, (int)w->dtype, w->cols, w->row_stride, x);
    }
    if (!grouped) {
        for (int p = 0; p < count; p++) {
            augur_status st = cuda_matmul(be, parts[p].out, x, n, parts[p].w, parts[p].bias, err);
            if (st)
                return st;
        }
        return AUGUR_OK;
    }
    const int64_t cols = parts[0].w->cols;
    const uint64_t seq = ++c->op_seq;
    augur_status st = split_ready(c, seq, x, n, cols, err);
    if (st)
        return st;
    cuk_mma_part kp[CUK_MMA_MAX_PARTS];
    bool overwritten = false;
    for (int p = 0; p < count; p++) {
        const tensor_view *w = parts[p].w;
        kp[p] = (cuk_mma_part){parts[p].out, w->data, w->rows, w->row_stride, parts[p].bias};
        overwritten |= out_overlaps_x(parts[p].out, w->rows, x, cols, n);
    }
    keep_split(c, seq, overwritten, x, n, cols);
    return launched(c, cuk_gemv_mma_parts(kstream(c), c->mma_x, n, cols, kp, count),
                    "matmul (tensor-core gemv kernel, grouped products)", err);
}

/* A norm (after the residual add when partial is given) whose output the next operation,
 * a tensor-core product, reads: the norm kernel also writes the split activations, as
 * the product's own split kernel would, and marks them as the split of out (one kernel
 * a norm fewer, and the add's). AUGUR_CUDA_FUSED_NORM=0 runs add, norm and split apart. */
static augur_status norm_op(cuda_ctx *c, float *out, float *x, const float *partial, const float *weight, int n,
                            int dim, float eps, augur_error *err)
{
    const uint64_t seq = ++c->op_seq;
    if (n <= 0 || dim <= 0)
        return AUGUR_OK;
    const bool fused = !c->unfused && cuk_rmsnorm_fused_ok(out, x, partial, weight, dim);
    const bool split = fused && dim % 32 == 0 && takes_mma(c, n);
    augur_status st;
    if (!fused) {
        if (partial &&
            (st = launched(c, cuk_add(kstream(c), x, x, partial, (int64_t)n * dim), "add kernel (residual)", err)))
            return st;
        return launched(c, cuk_rmsnorm(kstream(c), out, x, weight, n, dim, eps), "rmsnorm kernel", err);
    }
    if (split && (st = grow_scratch(c, &c->mma_x, &c->mma_x_bytes, cuk_gemv_mma_scratch(n, dim),
                                    "rmsnorm (split activations)", err)))
        return st;
    st = launched(c, cuk_rmsnorm_fused(kstream(c), out, x, partial, weight, n, dim, eps, split ? c->mma_x : NULL),
                  partial ? "rmsnorm kernel (with the residual add)" : "rmsnorm kernel", err);
    if (!st && split)
        keep_split(c, seq, false, out, n, dim);
    return st;
}

static augur_status cuda_rmsnorm(augur_backend *be, float *out, const float *x, const float *weight, int n, int dim,
                                 float eps, augur_error *err)
{
    return norm_op(ctx_of(be), out, (float *)x, NULL, weight, n, dim, eps, err);
}

static augur_status cuda_add_rmsnorm(augur_backend *be, float *out, float *x, const float *partial,
                                     const float *weight, int n, int dim, float eps, augur_error *err)
{
    return norm_op(ctx_of(be), out, x, partial, weight, n, dim, eps, err);
}

static augur_status cuda_rope(augur_backend *be, float *x, int n, int n_heads, int head_dim, int start_pos,
                              const float *inv_freq, rope_pairing pairs, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    if (n <= 0 || n_heads <= 0)
        return AUGUR_OK;
    if (head_dim <= 0 || head_dim % 2 || start_pos < 0)
        return augur_fail(err, AUGUR_E_INTERNAL, "cuda backend: rope with head_dim %d, start_pos %d", head_dim,
                          start_pos);
    return launched(c, cuk_rope(kstream(c), x, n, n_heads, head_dim, start_pos, c->pos_dev, inv_freq, (int)pairs),
                    "rope kernel", err);
}

/* Positions per split: about two blocks per multiprocessor over all (row, head) pairs,
 * at least 64 positions, at most what shared memory holds. */
static int split_chunk(const cuda_ctx *c, int n, int n_heads, int head_dim, int max_len)
{
    int chunk = c->paths.split_chunk;
    if (chunk <= 0 && c->paths.attention == CUDA_ATTN_AUTO && n <= CUK_INVARIANT_ROWS)
        chunk = CUK_ATT_INVARIANT_CHUNK; /* anchored to absolute positions, whatever n */
    if (chunk <= 0) {
        const int64_t items = (int64_t)n * n_heads;
        int64_t want = (2 * (int64_t)c->sm_count + items - 1) / items;
        if (want < 1)
            want = 1;
        chunk = (int)((max_len + want - 1) / want);
        chunk = chunk < 64 ? 64 : (chunk + 31) / 32 * 32;
    }
    const size_t fixed = cuk_attention_single_smem(0, head_dim); /* q, reductions, partials */
    const int limit = fixed < DEFAULT_SMEM ? (int)((DEFAULT_SMEM - fixed) / sizeof(float)) / 32 * 32 : 0;
    return chunk < limit ? chunk : limit;
}

static augur_status cuda_attention(augur_backend *be, float *out, const float *q, int n, int start_pos, int n_heads,
                                   int n_kv_heads, int head_dim, const float *k_cache, const float *v_cache,
                                   const int32_t *block_table, int block_size, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    const uint64_t seq = ++c->op_seq;
    if (n <= 0)
        return AUGUR_OK;
    if (n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads || head_dim <= 0 || start_pos < 0 || n > 65535 ||
        n_heads > 65535 || start_pos > INT_MAX - n)
        return augur_fail(err, AUGUR_E_INTERNAL,
                          "cuda backend: attention with n %d, start_pos %d, %d heads, %d KV heads, head_dim %d", n,
                          start_pos, n_heads, n_kv_heads, head_dim);
    const int max_len = start_pos + n;
    const bool grouped_fits = cuk_attention_grouped_smem(head_dim) <= c->smem_optin;
    if (c->pos_dev && (!grouped_fits || n > CUK_INVARIANT_ROWS || max_len > c->pos_max))
        return augur_fail(err, AUGUR_E_INTERNAL,
                          "cuda backend: a captured step's attention needs the grouped kernel (head_dim %d, %d rows, "
                          "positions up to %d of %d)",
                          head_dim, n, max_len, c->pos_max);
    if (grouped_fits && (c->pos_dev || c->paths.attention == CUDA_ATTN_GROUPED ||
                         (c->paths.attention == CUDA_ATTN_AUTO && n <= CUK_INVARIANT_ROWS))) {
        _Static_assert(CUK_ATT_GROUP_CHUNK == CUK_ATT_INVARIANT_CHUNK, "one invariant chunk");
        const int splits = ((c->pos_dev ? c->pos_max : max_len) + CUK_ATT_GROUP_CHUNK - 1) / CUK_ATT_GROUP_CHUNK;
        const size_t need = cuk_attention_split_scratch(n, n_heads, head_dim, splits) * sizeof(float);
        augur_status st =
            grow_scratch(c, &c->att_scratch, &c->att_scratch_bytes, need, "attention (grouped scratch)", err);
        /* The output projection reads out next: the combine writes its split too, as
         * norm_op does for the products after a norm (AUGUR_CUDA_FUSED_NORM=0: not). */
        const int64_t cols = (int64_t)n_heads * head_dim;
        const bool split = !c->unfused && head_dim % 32 == 0 && takes_mma(c, n);
        if (!st && split)
            st = grow_scratch(c, &c->mma_x, &c->mma_x_bytes, cuk_gemv_mma_scratch(n, cols),
                              "attention (split activations)", err);
        if (!st)
            st = launched(c,
                          cuk_attention_grouped(kstream_attention(c), out, q, n, start_pos, c->pos_dev, c->pos_max,
                                                n_heads, n_kv_heads, head_dim, k_cache, v_cache, block_table,
                                                block_size, c->att_scratch, split ? c->mma_x : NULL),
                          "attention (grouped + combine kernels)", err);
        if (!st && split)
            keep_split(c, seq, false, out, n, cols);
        return st;
    }
    const bool fits = cuk_attention_single_smem(max_len, head_dim) <= c->smem_optin;
    bool split;
    switch (c->paths.attention) {
    case CUDA_ATTN_SPLIT: split = true; break;
    case CUDA_ATTN_SINGLE: split = !fits; break;
    default: /* row-invariant below CUK_INVARIANT_ROWS: always split, at fixed positions */
        split = n <= CUK_INVARIANT_ROWS || !fits || ((int64_t)n * n_heads < 2 * (int64_t)c->sm_count && max_len >= 512);
        break;
    }
    if (!split)
        return launched(c,
                        cuk_attention_single(kstream_attention(c), out, q, n, start_pos, n_heads, n_kv_heads, head_dim,
                                             k_cache, v_cache, block_table, block_size),
                        "attention (single-block kernel)", err);

    const int chunk = split_chunk(c, n, n_heads, head_dim, max_len);
    if (chunk < 32)
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "cuda backend: attention head_dim %d leaves no shared memory",
                          head_dim);
    const int max_splits = (max_len + chunk - 1) / chunk;
    const size_t need = cuk_attention_split_scratch(n, n_heads, head_dim, max_splits) * sizeof(float);
    augur_status st = grow_scratch(c, &c->att_scratch, &c->att_scratch_bytes, need, "attention (split scratch)", err);
    if (st)
        return st;
    return launched(c,
                    cuk_attention_split(kstream_attention(c), out, q, n, start_pos, n_heads, n_kv_heads, head_dim,
                                        k_cache, v_cache, block_table, block_size, chunk, max_splits, c->att_scratch),
                    "attention (split + combine kernels)", err);
}

/* out[i] = kernel(a[i], b[i]) for i < count. */
typedef cudaError_t binary_kernel(cuk_stream stream, float *out, const float *a, const float *b, int64_t count);

static augur_status elementwise(augur_backend *be, binary_kernel *kernel, float *out, const float *a, const float *b,
                                int64_t count, const char *what, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    if (count <= 0)
        return AUGUR_OK;
    return launched(c, kernel(kstream(c), out, a, b, count), what, err);
}

/* SwiGLU whose output the next operation, the down projection, reads: when that takes
 * the tensor cores the kernel also writes the split activations and marks them as the
 * split of out, as norm_op does (one kernel fewer a layer). AUGUR_CUDA_FUSED_NORM=0
 * leaves the split to the product. */
static augur_status cuda_swiglu(augur_backend *be, float *out, const float *gate, const float *up, int n, int cols,
                                augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    const uint64_t seq = ++c->op_seq;
    if (n <= 0 || cols <= 0)
        return AUGUR_OK;
    const int64_t count = (int64_t)n * cols;
    if (c->unfused || !takes_mma(c, n) || !cuk_swiglu_split_ok(out, gate, up, cols))
        return launched(c, cuk_swiglu(kstream(c), out, gate, up, count), "swiglu kernel", err);
    augur_status st =
        grow_scratch(c, &c->mma_x, &c->mma_x_bytes, cuk_gemv_mma_scratch(n, cols), "swiglu (split activations)", err);
    if (st)
        return st;
    st = launched(c, cuk_swiglu_split(kstream(c), out, gate, up, n, cols, c->mma_x),
                  "swiglu kernel (with the split activations)", err);
    if (!st)
        keep_split(c, seq, false, out, n, cols);
    return st;
}

static augur_status cuda_embedding(augur_backend *be, float *out, const tensor_view *table, const int32_t *ids, int n,
                                   augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    if (n <= 0 || table->cols <= 0)
        return AUGUR_OK;
    if (!dtype_ok(table->dtype) || table->row_stride < table->cols)
        return augur_fail(err, AUGUR_E_INTERNAL, "cuda backend: embedding over a malformed table view");
    return launched(c,
                    cuk_embedding(kstream(c), out, table->data, (int)table->dtype, table->rows, table->cols,
                                  table->row_stride, ids, n),
                    "embedding kernel", err);
}

static augur_status cuda_add(augur_backend *be, float *out, const float *a, const float *b, int64_t count,
                             augur_error *err)
{
    return elementwise(be, cuk_add, out, a, b, count, "add kernel", err);
}

static augur_status cuda_softmax(augur_backend *be, float *x, int rows, int cols, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    if (rows <= 0 || cols <= 0)
        return AUGUR_OK;
    return launched(c, cuk_softmax(kstream(c), x, rows, cols), "softmax kernel", err);
}

static augur_status cuda_argmax(augur_backend *be, int32_t *out, float *max_out, const float *x, int rows, int cols,
                                augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    if (rows <= 0)
        return AUGUR_OK;
    return launched(c, cuk_argmax(kstream(c), out, max_out, x, rows, cols < 0 ? 0 : cols), "argmax kernel", err);
}

static augur_status cuda_argmax_feed(augur_backend *be, int32_t *out, int32_t *ids, int32_t *pos, int advance,
                                     const float *x, int cols, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    if (!ids != !pos)
        return augur_fail(err, AUGUR_E_INTERNAL, "cuda backend: argmax_feed with ids but no position, or the reverse");
    return launched(c, cuk_argmax_feed(kstream(c), out, ids, pos, advance, x, cols < 0 ? 0 : cols),
                    "argmax_feed kernel (a greedy chain's link)", err);
}

/* Room for a fused chain's `steps` tokens in pinned host memory that the kernel writes
 * through its mapping: the tokens need no copy of their own after the chain, only the wait
 * for it (a copy to the caller's pageable memory would add a transfer and its wait). */
static augur_status fused_tokens_room(cuda_ctx *c, int steps, augur_error *err)
{
    if (steps <= c->fused_tokens_cap)
        return AUGUR_OK;
    augur_status st = check(c, cudaStreamSynchronize(c->stream), "fused chain tokens (an earlier kernel failed)", err);
    if (st)
        return st;
    cudaFreeHost(c->fused_tokens);
    c->fused_tokens = NULL;
    c->fused_tokens_cap = 0;
    const int cap = steps < 64 ? 64 : steps;
    void *p = NULL;
    if ((st = check(c, cudaHostAlloc(&p, (size_t)cap * sizeof(int32_t), cudaHostAllocMapped),
                    "cudaHostAlloc (mapped) of a fused chain's tokens", err)))
        return st;
    c->fused_tokens = p;
    void *dev = NULL;
    if ((st = check(c, cudaHostGetDevicePointer(&dev, p, 0), "cudaHostGetDevicePointer of a fused chain's tokens",
                    err)))
        return st;
    c->fused_tokens_dev = dev;
    c->fused_tokens_cap = cap;
    return AUGUR_OK;
}

/* The chain launched (rc): waits for it and copies its tokens to the caller's out. */
static augur_status fused_tokens_out(cuda_ctx *c, cudaError_t rc, int steps, int32_t *out, const char *kernel,
                                     augur_error *err)
{
    augur_status st = check(c, rc, kernel, err);
    if (!st)
        st = check(c, cudaStreamSynchronize(c->stream), kernel, err);
    if (st)
        return st;
    memcpy(out, c->fused_tokens, (size_t)steps * sizeof(int32_t));
    return AUGUR_OK;
}

static augur_status cuda_greedy_fused(augur_backend *be, const augur_fused_model *m, const augur_fused_cache *kv,
                                      const int32_t *ids, int n, int start, int steps, bool beside, int32_t *out,
                                      float *logits, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    if (c->capturing)
        return augur_fail(err, AUGUR_E_INTERNAL, "cuda backend: a fused greedy chain inside a step capture");
    if (steps < 0 ||
        (steps > 0 && (n < 1 || n > AUGUR_FUSED_MAX_FEED || start < 0 || start + n + steps - 1 > kv->layer_rows)))
        return augur_fail(err, AUGUR_E_INTERNAL,
                          "cuda backend: fused greedy chain of %d steps from %d tokens at position %d in a cache of %d",
                          steps, n, start, kv->layer_rows);
    /* the cluster when its blocks hold the layers' weights and the device places it, else the grid */
    const char *why_cluster =
        c->fused_cluster ? cuk_fused_cluster_unfit(m, kv->layer_rows, c->smem_optin, c->fused_cluster) : "off";
    if (!why_cluster && (c->cluster_checked_model != m || c->cluster_checked_rows != kv->layer_rows)) {
        c->cluster_groups = cuk_fused_cluster_groups(m, kv->layer_rows, c->fused_cluster, c->fused_clusters_want);
        /* beside other work: the first cluster, and helpers while the share allows (at least one cluster) */
        const int share = c->fused_beside_sms / c->fused_cluster;
        c->cluster_groups_beside = cuk_fused_cluster_groups(m, kv->layer_rows, c->fused_cluster, share > 1 ? share : 1);
        c->cluster_checked_model = m;
        c->cluster_checked_rows = kv->layer_rows;
    }
    if (!why_cluster && c->cluster_groups < 1)
        why_cluster = "the device cannot place a cluster of that many blocks with that much shared memory";
    augur_status st;
    if (!why_cluster) {
        if (steps == 0)
            return AUGUR_OK;
        const int groups = beside && c->cluster_groups_beside >= 1 && c->cluster_groups_beside < c->cluster_groups
                               ? c->cluster_groups_beside
                               : c->cluster_groups;
        if ((st = grow_scratch(c, &c->cluster_scratch, &c->cluster_scratch_bytes,
                               cuk_fused_cluster_scratch_bytes(m, c->fused_cluster * c->cluster_groups),
                               "fused greedy exchange", err)) ||
            (st = fused_tokens_room(c, steps, err)))
            return st;
        return fused_tokens_out(c,
                                cuk_fused_cluster_greedy(c->stream, m, kv, ids, n, start, steps, c->fused_tokens_dev,
                                                         logits, c->fused_cluster, groups, c->cluster_scratch,
                                                         c->cluster_scratch_bytes, &c->cluster_launch, NULL, 0),
                                steps, out, "fused greedy kernel (a small model's chain on thread-block clusters)",
                                err);
    }
    if (c->fused_cluster_forced)
        return augur_fail(err, AUGUR_E_UNSUPPORTED,
                          "cuda backend: AUGUR_CUDA_FUSED_CLUSTER=%d: no fused cluster for this model: %s",
                          c->fused_cluster, why_cluster);
    const char *why = cuk_fused_unfit(m, kv->layer_rows, c->smem_optin);
    if (why)
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "cuda backend: no fused greedy steps for this model: %s", why);
    const int want = beside && (c->fused_blocks_want <= 0 || c->fused_blocks_want > c->fused_beside_sms)
                         ? c->fused_beside_sms
                         : c->fused_blocks_want;
    const int blocks = cuk_fused_blocks(m, kv->layer_rows, c->sm_count, want);
    if (blocks < 1)
        return augur_fail(err, AUGUR_E_UNSUPPORTED,
                          "cuda backend (device %d): the fused greedy kernel fits no block on a multiprocessor",
                          c->device);
    if (steps == 0)
        return AUGUR_OK;
    if ((st = grow_scratch(c, &c->fused_scratch, &c->fused_scratch_bytes,
                           cuk_fused_scratch_bytes(m, kv->layer_rows, blocks), "fused greedy scratch", err)) ||
        (st = fused_tokens_room(c, steps, err)))
        return st;
    return fused_tokens_out(c,
                            cuk_fused_greedy(c->stream, m, kv, ids, n, start, steps, c->fused_tokens_dev, logits,
                                             c->fused_scratch, blocks, NULL, 0),
                            steps, out, "fused greedy kernel (a small model's chain in one cooperative launch)", err);
}

static augur_status cuda_sample_probs(augur_backend *be, float *probs, const float *logits, int rows, int cols,
                                      const sampling_params *sp, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    if (rows <= 0 || cols <= 0)
        return AUGUR_OK;
    return launched(c, cuk_sample_probs(kstream(c), probs, logits, rows, cols, sp->temperature, sp->top_k, sp->top_p),
                    "sample_probs kernel", err);
}

static augur_status cuda_memory_info(augur_backend *be, size_t *free_bytes, size_t *total_bytes, augur_error *err)
{
    return backend_cuda_mem_info(ctx_of(be)->device, free_bytes, total_bytes, err);
}

static void *cuda_stream(augur_backend *be)
{
    return (void *)ctx_of(be)->stream;
}

static void cuda_device_name(augur_backend *be, char *name, size_t len)
{
    backend_cuda_device_name(ctx_of(be)->device, name, len);
}

static augur_status cuda_store_rows(augur_backend *be, float *base, const float *src, int64_t row_floats, int n,
                                    int start_row, const int32_t *block_table, int block_size, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    if (n <= 0 || row_floats <= 0)
        return AUGUR_OK;
    if (block_table && !c->pos_dev) /* the table is device memory: a kernel scatters the rows */
        return launched(c,
                        cuk_store_rows(kstream(c), base, src, row_floats, n, start_row, NULL, block_table, block_size),
                        "store_rows kernel (paged)", err);
    if (!c->pos_dev)
        return copy_async(c, base + (int64_t)start_row * row_floats, src, (size_t)n * (size_t)row_floats * sizeof(float),
                          cudaMemcpyDeviceToDevice, "store_rows (cudaMemcpyAsync)", err);
    if (start_row + n > c->pos_max)
        return augur_fail(err, AUGUR_E_INTERNAL, "cuda backend: store_rows past the bound %d positions", c->pos_max);
    return launched(
        c, cuk_store_rows(kstream(c), base, src, row_floats, n, start_row, c->pos_dev, block_table, block_size),
        "store_rows kernel", err);
}

/* RoPE of q and k and the KV append in one kernel (cuk_rope_store), checked as cuda_rope
 * and cuda_store_rows check theirs. */
static augur_status cuda_rope_store(augur_backend *be, float *q, float *k, const float *v, int n, int n_heads,
                                    int n_kv_heads, int head_dim, int start_pos, const float *inv_freq,
                                    rope_pairing pairs, float *k_cache, float *v_cache, const int32_t *block_table,
                                    int block_size, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    if (c->unfused || n_heads <= 0 || n_kv_heads <= 0)
        return backend_rope_store_apart(be, q, k, v, n, n_heads, n_kv_heads, head_dim, start_pos, inv_freq, pairs,
                                        k_cache, v_cache, block_table, block_size, err);
    c->op_seq++;
    if (n <= 0)
        return AUGUR_OK;
    if (head_dim <= 0 || head_dim % 2 || start_pos < 0 || n_heads > 65535 || n_kv_heads > 65535 ||
        (block_table && block_size <= 0))
        return augur_fail(err, AUGUR_E_INTERNAL,
                          "cuda backend: rope_store with %d heads, %d KV heads, head_dim %d, start_pos %d, "
                          "block size %d",
                          n_heads, n_kv_heads, head_dim, start_pos, block_table ? block_size : 0);
    if (c->pos_dev && start_pos + n > c->pos_max)
        return augur_fail(err, AUGUR_E_INTERNAL, "cuda backend: rope_store past the bound %d positions", c->pos_max);
    return launched(c,
                    cuk_rope_store(kstream(c), q, k, v, n, n_heads, n_kv_heads, head_dim, start_pos, c->pos_dev,
                                   inv_freq, (int)pairs, k_cache, v_cache, block_table, block_size),
                    "rope_store kernel (rope of q and k, the K and V rows stored)", err);
}

static augur_status cuda_bind_position(augur_backend *be, const int32_t *dev_pos, int max_positions, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    if (dev_pos && max_positions <= 0)
        return augur_fail(err, AUGUR_E_INTERNAL, "cuda backend: bind_position with %d positions", max_positions);
    c->pos_dev = dev_pos;
    c->pos_max = dev_pos ? max_positions : 0;
    return AUGUR_OK;
}

/* A captured step and the scratch generation it was captured against. */
typedef struct {
    cudaGraphExec_t exec;
    uint64_t scratch_gen;
} cuda_graph;

static augur_status cuda_graph_begin(augur_backend *be, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    augur_status st = check(c, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal),
                            "graph_begin (cudaStreamBeginCapture)", err);
    c->capturing = !st;
    return st;
}

static augur_status cuda_graph_end(augur_backend *be, void **graph, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    c->capturing = false;
    cudaGraph_t g = NULL;
    cudaError_t rc = cudaStreamEndCapture(c->stream, &g);
    if (!graph || rc != cudaSuccess) {
        if (g)
            cudaGraphDestroy(g);
        cudaGetLastError(); /* a discarded capture's error is the caller's, already reported */
        return graph ? cuda_fail(err, c, rc, "graph_end (cudaStreamEndCapture)") : AUGUR_OK;
    }
    *graph = NULL;
    cuda_graph *cg = calloc(1, sizeof *cg);
    if (!cg) {
        cudaGraphDestroy(g);
        return augur_fail(err, AUGUR_E_NOMEM, "cuda backend: graph_end: out of memory");
    }
    rc = cudaGraphInstantiate(&cg->exec, g, 0);
    cudaGraphDestroy(g);
    if (rc != cudaSuccess) {
        free(cg);
        return cuda_fail(err, c, rc, "graph_end (cudaGraphInstantiate)");
    }
    cg->scratch_gen = c->scratch_gen;
    *graph = cg;
    return AUGUR_OK;
}

static augur_status cuda_graph_launch(augur_backend *be, void *graph, bool *stale, augur_error *err)
{
    cuda_ctx *c = ctx_of(be);
    c->op_seq++;
    cuda_graph *cg = graph;
    *stale = cg->scratch_gen != c->scratch_gen;
    if (*stale)
        return AUGUR_OK;
    return launched(c, cudaGraphLaunch(cg->exec, c->stream), "graph_launch (cudaGraphLaunch)", err);
}

static void cuda_graph_free(augur_backend *be, void *graph)
{
    (void)be;
    cuda_graph *cg = graph;
    cudaGraphExecDestroy(cg->exec);
    free(cg);
}

static const augur_backend_iface cuda_iface = {
    .destroy = cuda_destroy,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .synchronize = cuda_synchronize,
    .weight_upload = cuda_weight_upload,
    .weight_free = cuda_weight_free,
    .fill_random = cuda_fill_random,
    .matmul = cuda_matmul,
    .matmul_parts = cuda_matmul_parts,
    .rmsnorm = cuda_rmsnorm,
    .add_rmsnorm = cuda_add_rmsnorm,
    .rope = cuda_rope,
    .rope_store = cuda_rope_store,
    .attention = cuda_attention,
    .swiglu = cuda_swiglu,
    .embedding = cuda_embedding,
    .add = cuda_add,
    .softmax = cuda_softmax,
    .argmax = cuda_argmax,
    .sample_probs = cuda_sample_probs,
    .argmax_feed = cuda_argmax_feed,
    .greedy_fused = cuda_greedy_fused,
    .bind_position = cuda_bind_position,
    .store_rows = cuda_store_rows,
    .graph_begin = cuda_graph_begin,
    .graph_end = cuda_graph_end,
    .graph_launch = cuda_graph_launch,
    .graph_free = cuda_graph_free,
    .memory_info = cuda_memory_info,
    .stream = cuda_stream,
    .device_name = cuda_device_name,
};

int backend_cuda_device_count(void)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError(); /* not sticky, but leave nothing behind */
        return 0;
    }
    return count;
}

augur_status backend_cuda_create(augur_backend **out, int device, augur_error *err)
{
    *out = NULL;
    int count = 0;
    cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess) {
        cudaGetLastError();
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "cuda backend: no CUDA device usable: %s (%s)",
                          cudaGetErrorString(rc), cudaGetErrorName(rc));
    }
    if (device < 0 || device >= count)
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "cuda backend: device %d requested, %d visible", device, count);

    augur_backend *be = calloc(1, sizeof *be);
    cuda_ctx *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return augur_fail(err, AUGUR_E_NOMEM, "cuda backend: cannot allocate its state");
    }
    c->device = device;
    int sm = 0, optin = 0;
    augur_status st = check(c, cudaSetDevice(device), "cudaSetDevice", err);
    if (!st)
        st = check(c, cudaDeviceGetAttribute(&sm, cudaDevAttrMultiProcessorCount, device),
                   "cudaDeviceGetAttribute (multiprocessors)", err);
    if (!st)
        st = check(c, cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
                   "cudaDeviceGetAttribute (shared memory)", err);
    if (!st)
        st = check(c, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "cudaStreamCreate", err);
    if (st) {
        free(c);
        free(be);
        return st;
    }
    cublasStatus_t bs = cublasCreate(&c->blas);
    if (bs == CUBLAS_STATUS_SUCCESS)
        bs = cublasSetStream(c->blas, c->stream);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        st = blas_check(c, bs, "cublasCreate", err);
        if (c->blas)
            cublasDestroy(c->blas);
        cudaStreamDestroy(c->stream);
        free(c);
        free(be);
        return st;
    }
    c->sm_count = sm > 0 ? sm : 1;
    const int procs = omp_get_num_procs() / 2; /* leave the other half to the ranks beside it */
    c->pack_threads = procs < 1 ? 1 : procs > PACK_THREADS_MAX ? PACK_THREADS_MAX : procs;
    c->smem_optin = optin > DEFAULT_SMEM ? (size_t)optin : DEFAULT_SMEM;
    const char *sync = getenv("AUGUR_CUDA_SYNC");
    c->sync_each = sync && *sync && strcmp(sync, "0") != 0;
    /* A/B measurements of the matmul kernels (docs/perf-notes.md): unknown values are
     * ignored, like AUGUR_CUDA_SYNC's. */
    const char *grouped = getenv("AUGUR_CUDA_GROUPED"); /* 0: q|k|v and gate|up one launch each */
    c->ungrouped = grouped && !strcmp(grouped, "0");
    const char *fused = getenv("AUGUR_CUDA_FUSED_NORM"); /* 0: add, norm, split, rope and KV stores apart */
    c->unfused = fused && !strcmp(fused, "0");
    const char *pdl = getenv("AUGUR_CUDA_PDL"); /* 0: every kernel waits for the one before to end */
    c->early = !(pdl && !strcmp(pdl, "0"));
    const char *fb = getenv("AUGUR_CUDA_FUSED_BLOCKS"); /* the fused chain's grid (A/B runs) */
    c->fused_blocks_want = fb ? atoi(fb) : 0;
    /* the fused chain's cluster: N blocks (2..16, and nothing else), 0 the grid only; unset:
     * 16, unless AUGUR_CUDA_FUSED_BLOCKS asks for the grid */
    const char *fc = getenv("AUGUR_CUDA_FUSED_CLUSTER");
    c->fused_cluster = fc ? atoi(fc) : fb ? 0 : CUK_FUSED_CLUSTER_MAX;
    c->fused_cluster_forced = fc && c->fused_cluster != 0;
    const char *fg = getenv("AUGUR_CUDA_FUSED_CLUSTERS"); /* clusters of a launch (A/B runs): 1 no helpers */
    c->fused_clusters_want = fg ? atoi(fg) : 0;
    /* a chain beside other work on the GPU (a draft drafting ahead while the target
     * verifies): this many multiprocessors, half by default, so that the verification
     * keeps the rest (docs/perf-notes.md, change 19: 64-80 of 132 drafted fastest) */
    const char *fs = getenv("AUGUR_CUDA_FUSED_BESIDE");
    c->fused_beside_sms = fs && atoi(fs) > 0 ? atoi(fs) : c->sm_count / 2;
    const char *mm = getenv("AUGUR_CUDA_MATMUL");
    if (mm && !strcmp(mm, "gemv"))
        c->paths.matmul = CUDA_MATMUL_GEMV;
    else if (mm && !strcmp(mm, "mma"))
        c->paths.matmul = CUDA_MATMUL_MMA;
    else if (mm && !strcmp(mm, "cublas"))
        c->paths.matmul = CUDA_MATMUL_CUBLAS;
    be->name = "cuda";
    int mps = 0;
    if (cudaDeviceGetAttribute(&mps, cudaDevAttrMpsEnabled, device) != cudaSuccess) {
        cudaGetLastError();
        mps = 0;
    }
    be->caps = (augur_backend_caps){
        .stream = true, .memory_info = true, .graphs = true, .shares_device_concurrently = mps != 0};
    be->device = device;
    be->iface = cuda_iface;
    be->ctx = c;
    *out = be;
    return AUGUR_OK;
}

/* A backend is this one when its operations are (names are for messages only). */
static bool is_cuda(const augur_backend *be)
{
    return be && be->iface.destroy == cuda_destroy;
}

augur_status backend_cuda_set_paths(augur_backend *be, const cuda_backend_paths *paths, augur_error *err)
{
    if (!is_cuda(be))
        return augur_fail(err, AUGUR_E_INTERNAL, "backend_cuda_set_paths: not a cuda backend");
    ctx_of(be)->paths = *paths;
    return AUGUR_OK;
}

void *backend_cuda_stream(augur_backend *be)
{
    return is_cuda(be) ? cuda_stream(be) : NULL;
}

int backend_cuda_device(const augur_backend *be)
{
    return is_cuda(be) ? be->device : -1;
}

int backend_cuda_cooperative_refused(const augur_backend *be)
{
    return is_cuda(be) ? ((const cuda_ctx *)be->ctx)->cluster_launch.cooperative_refused : -1;
}
