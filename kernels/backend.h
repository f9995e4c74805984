/* One compute-backend interface over the kernels of a forward pass (DESIGN §12: one
 * interface, CPU and CUDA implementations behind it).
 *
 * Buffers. A backend owns its memory: backend_alloc returns an address in it (host
 * memory for "cpu", device memory for "cuda"). Every float / int32 pointer an operation
 * takes is such an address, or an address inside one (pointer arithmetic is fine: a row
 * of the KV cache, the logits rows from logits_from on); host code moves data in and out
 * with backend_upload / backend_download only. Weights are tensor_views whose data points
 * into the backend's memory (backend_weight_upload makes them); the view struct itself
 * stays on the host.
 *
 * Ordering. Operations on one backend run in the order they are issued. They may run
 * asynchronously (the CUDA backend queues them on one stream); backend_download and
 * backend_synchronize wait for everything issued before them. backend_upload may be
 * reused as soon as it returns. A backend is used from one thread at a time; the CUDA
 * backend expects that thread's current device to be its own (backend_create makes
 * it so).
 *
 * Errors. Every operation returns an augur_status and fills err with a message naming
 * the operation (for CUDA, the kernel or library call and the CUDA error). A CUDA error
 * raised inside a kernel may surface at a later call, typically the next download; set
 * AUGUR_CUDA_SYNC=1 to synchronise after every kernel and attribute it exactly.
 *
 * Capabilities. Callers tell backends apart by what they can do (augur_backend_caps),
 * never by name: the name is for messages. Some queries may be NULL (see the
 * interface); their backend_* wrappers check.
 *
 * Numerics. "cpu" is the batch-invariant fp32 reference of kernels/cpu_kernels.h.
 * "cuda" computes in fp32 activations over fp32/fp16/bf16 weights and is batch-invariant
 * up to 80 rows (kernels/cuda/cuda_backend.h): bf16 products there run on the tensor
 * cores with each activation carried as three bf16 terms (agreeing with "cpu" to about
 * fp32 rounding, not bit for bit); products of more rows (prefill chunks) go through
 * cuBLAS with the activations rounded to bf16 (bf16 tolerance). */
#ifndef AUGUR_BACKEND_H
#define AUGUR_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/model_config.h"
#include "base/sampling_params.h"
#include "base/tensor.h"
#include "kernels/fused_model.h"

typedef struct augur_backend augur_backend;

/* The implementations there are (backend_create). */
typedef enum { AUGUR_BACKEND_CPU = 0, AUGUR_BACKEND_CUDA } augur_backend_kind;

/* What a backend can do, for callers that choose their path by it. */
typedef struct {
    /* Buffers are plain host memory: the host may read and write them in place, without
     * backend_upload / backend_download. */
    bool host_memory;
    /* weight_upload aliases the host view instead of copying it: the host weights (the
     * mapped checkpoint) are the backend's and must stay. */
    bool weights_alias_host;
    /* Work is queued asynchronously on a stream (backend_stream) that other libraries'
     * work (NCCL collectives) can be ordered after. */
    bool stream;
    /* backend_memory_info reports the free and total memory of the backend's device. */
    bool memory_info;
    /* A step's work can be captured once and replayed (backend_graph_*), its position read
     * from device memory when it runs (backend_bind_position). */
    bool graphs;
    /* Other processes' kernels run on the device at the same time as this one's (CUDA MPS),
     * instead of taking turns with it. */
    bool shares_device_concurrently;
} augur_backend_caps;

/* One product of backend_matmul_parts: out [n][w->rows] = x W^T (+ bias). */
typedef struct {
    float *out;
    const tensor_view *w;
    const float *bias; /* may be NULL */
} matmul_part;

/* The operations; see the backend_* wrappers below for what each computes. */
typedef struct {
    void (*destroy)(augur_backend *be);

    /* memory */
    augur_status (*alloc)(augur_backend *be, void **buf, size_t bytes, augur_error *err);
    void (*free)(augur_backend *be, void *buf);
    augur_status (*upload)(augur_backend *be, void *dst, const void *src, size_t bytes, augur_error *err);
    augur_status (*download)(augur_backend *be, void *dst, const void *src, size_t bytes, augur_error *err);
    augur_status (*copy)(augur_backend *be, void *dst, const void *src, size_t bytes, augur_error *err);
    augur_status (*synchronize)(augur_backend *be, augur_error *err);
    augur_status (*weight_upload)(augur_backend *be, tensor_view *dev, const tensor_view *host, augur_error *err);
    void (*weight_free)(augur_backend *be, tensor_view *dev);
    augur_status (*fill_random)(augur_backend *be, void *buf, augur_dtype dtype, int64_t count, uint64_t seed,
                                float scale, float offset, augur_error *err);

    /* kernels */
    augur_status (*matmul)(augur_backend *be, float *out, const float *x, int n, const tensor_view *w,
                           const float *bias, augur_error *err);
    /* may be NULL: backend_matmul_parts then runs the products one by one */
    augur_status (*matmul_parts)(augur_backend *be, const float *x, int n, const matmul_part *parts, int count,
                                 augur_error *err);
    augur_status (*rmsnorm)(augur_backend *be, float *out, const float *x, const float *weight, int n, int dim,
                            float eps, augur_error *err);
    /* may be NULL: backend_add_rmsnorm then runs add and rmsnorm */
    augur_status (*add_rmsnorm)(augur_backend *be, float *out, float *x, const float *partial, const float *weight,
                                int n, int dim, float eps, augur_error *err);
    augur_status (*rope)(augur_backend *be, float *x, int n, int n_heads, int head_dim, int start_pos,
                         const float *inv_freq, rope_pairing pairs, augur_error *err);
    /* may be NULL: backend_rope_store then runs rope (q), rope (k), store_rows (k), store_rows (v) */
    augur_status (*rope_store)(augur_backend *be, float *q, float *k, const float *v, int n, int n_heads,
                               int n_kv_heads, int head_dim, int start_pos, const float *inv_freq, rope_pairing pairs,
                               float *k_cache, float *v_cache, const int32_t *block_table, int block_size,
                               augur_error *err);
    augur_status (*attention)(augur_backend *be, float *out, const float *q, int n, int start_pos, int n_heads,
                              int n_kv_heads, int head_dim, const float *k_cache, const float *v_cache,
                              const int32_t *block_table, int block_size, augur_error *err);
    augur_status (*swiglu)(augur_backend *be, float *out, const float *gate, const float *up, int n, int cols,
                           augur_error *err);
    augur_status (*embedding)(augur_backend *be, float *out, const tensor_view *table, const int32_t *ids, int n,
                              augur_error *err);
    augur_status (*add)(augur_backend *be, float *out, const float *a, const float *b, int64_t count,
                        augur_error *err);

    /* logits reductions, one row of cols values at a time */
    augur_status (*softmax)(augur_backend *be, float *x, int rows, int cols, augur_error *err);
    augur_status (*argmax)(augur_backend *be, int32_t *out, float *max_out, const float *x, int rows, int cols,
                           augur_error *err);
    augur_status (*sample_probs)(augur_backend *be, float *probs, const float *logits, int rows, int cols,
                                 const sampling_params *sp, augur_error *err);
    /* may be NULL (no greedy chains): argmax of one row, fed to the next step on the device */
    augur_status (*argmax_feed)(augur_backend *be, int32_t *out, int32_t *ids, int32_t *pos, int advance,
                                const float *x, int cols, augur_error *err);
    /* may be NULL (no fused chains): a small model's greedy chain in one launch */
    augur_status (*greedy_fused)(augur_backend *be, const augur_fused_model *m, const augur_fused_cache *kv,
                                 const int32_t *ids, int n, int start, int steps, bool beside, int32_t *out,
                                 float *logits, augur_error *err);

    /* step capture: NULL where caps.graphs is false; store_rows may be NULL (the wrapper
     * copies at the host's row; a block table then needs host memory) */
    augur_status (*bind_position)(augur_backend *be, const int32_t *dev_pos, int max_positions, augur_error *err);
    augur_status (*store_rows)(augur_backend *be, float *base, const float *src, int64_t row_floats, int n,
                               int start_row, const int32_t *block_table, int block_size, augur_error *err);
    augur_status (*graph_begin)(augur_backend *be, augur_error *err);
    augur_status (*graph_end)(augur_backend *be, void **graph, augur_error *err);
    augur_status (*graph_launch)(augur_backend *be, void *graph, bool *stale, augur_error *err);
    void (*graph_free)(augur_backend *be, void *graph);

    /* queries: memory_info and stream are NULL where their capability is false,
     * device_name where the backend runs on the host */
    augur_status (*memory_info)(augur_backend *be, size_t *free_bytes, size_t *total_bytes, augur_error *err);
    void *(*stream)(augur_backend *be);
    void (*device_name)(augur_backend *be, char *name, size_t len);
} augur_backend_iface;

struct augur_backend {
    const char *name;         /* "cpu" or "cuda", for messages only: compare caps, not names */
    augur_backend_caps caps;
    int device;               /* the accelerator it runs on (its device_name); -1 on the host */
    augur_backend_iface iface;
    void *ctx;                /* the implementation's state */
};

/* Which backend to create: threads for the CPU one (>= 1, as cpu_matmul), device for an
 * accelerator (0 .. backend_device_count(kind) - 1). */
typedef struct {
    int threads;
    int device;
} augur_backend_opts;

/* A backend of the given kind (backend_cpu_create / backend_cuda_create). Fails with
 * AUGUR_E_UNSUPPORTED when augur was built without that kind or the device is absent. */
augur_status backend_create(augur_backend **out, augur_backend_kind kind, const augur_backend_opts *opts,
                            augur_error *err);

/* Devices of that kind visible now: 1 for the CPU; 0 when none, the driver is missing, or
 * augur was built without the kind. */
int backend_device_count(augur_backend_kind kind);

/* The CPU kernels behind the interface; threads >= 1 (as cpu_matmul). Buffers are
 * plain host memory, and weight_upload aliases the host view (no copy: weights stay in
 * the memory-mapped checkpoint). */
augur_status backend_cpu_create(augur_backend **out, int threads, augur_error *err);

/* Frees the backend and its internal scratch (not the buffers it handed out). NULL is fine. */
static inline void backend_destroy(augur_backend *be)
{
    if (be)
        be->iface.destroy(be);
}

/* ------------------------------------------------------------------ memory */

static inline augur_status backend_alloc(augur_backend *be, void **buf, size_t bytes, augur_error *err)
{
    return be->iface.alloc(be, buf, bytes, err);
}

/* NULL is fine. */
static inline void backend_free(augur_backend *be, void *buf)
{
    be->iface.free(be, buf);
}

/* Host src -> backend dst. */
static inline augur_status backend_upload(augur_backend *be, void *dst, const void *src, size_t bytes,
                                          augur_error *err)
{
    return be->iface.upload(be, dst, src, bytes, err);
}

/* Backend src -> host dst, after every operation issued before it has finished. */
static inline augur_status backend_download(augur_backend *be, void *dst, const void *src, size_t bytes,
                                            augur_error *err)
{
    return be->iface.download(be, dst, src, bytes, err);
}

/* Backend src -> backend dst (non-overlapping), e.g. new K/V rows into the cache. */
static inline augur_status backend_copy(augur_backend *be, void *dst, const void *src, size_t bytes,
                                        augur_error *err)
{
    return be->iface.copy(be, dst, src, bytes, err);
}

static inline augur_status backend_synchronize(augur_backend *be, augur_error *err)
{
    return be->iface.synchronize(be, err);
}

/* *dev = host's matrix in the backend's memory, same dtype, rows and cols (row_stride
 * may differ: the CUDA backend packs a strided host view and pads rows to 16 bytes).
 * The CUDA backend has read host's memory when the call returns, so it may be released
 * then; the CPU backend aliases it, so there it must outlive *dev. Release *dev with
 * backend_weight_free. */
static inline augur_status backend_weight_upload(augur_backend *be, tensor_view *dev, const tensor_view *host,
                                                 augur_error *err)
{
    return be->iface.weight_upload(be, dev, host, err);
}

static inline void backend_weight_free(augur_backend *be, tensor_view *dev)
{
    be->iface.weight_free(be, dev);
}

/* buf[i] = offset + scale * u_i for i < count, stored as dtype (f32, f16 or bf16,
 * rounded to nearest even); u_i is uniform in [-1, 1) and depends on (seed, i) alone
 * (kernels/fill_random.h: augur_fill_value), so every backend writes the same bits.
 * Dummy weights for benchmarks and memory plans without a checkpoint. */
static inline augur_status backend_fill_random(augur_backend *be, void *buf, augur_dtype dtype, int64_t count,
                                               uint64_t seed, float scale, float offset, augur_error *err)
{
    return be->iface.fill_random(be, buf, dtype, count, seed, scale, offset, err);
}

/* ----------------------------------------------------------------- queries */

/* Free and total memory of the backend's device; AUGUR_E_UNSUPPORTED without caps.memory_info. */
augur_status backend_memory_info(augur_backend *be, size_t *free_bytes, size_t *total_bytes, augur_error *err);

/* The stream the backend queues its work on (a cudaStream_t for "cuda"), so that other
 * work can follow the kernels producing its input; NULL without caps.stream. */
void *backend_stream(augur_backend *be);

/* The name of the backend's device, e.g. "NVIDIA H100 80GB HBM3" ("host" on the CPU, "?"
 * when unknown), for messages. */
void backend_device_name(augur_backend *be, char *name, size_t len);

/* ----------------------------------------------------------------- kernels */

/* out[i][o] = sum_c x[i][c] * W[o][c] (+ bias[o]) for i < n, o < w->rows; x is [n][w->cols],
 * out is [n][w->rows]; bias ([w->rows]) may be NULL. As cpu_matmul. */
static inline augur_status backend_matmul(augur_backend *be, float *out, const float *x, int n,
                                          const tensor_view *w, const float *bias, augur_error *err)
{
    return be->iface.matmul(be, out, x, n, w, bias, err);
}

/* Several products of the same x (q|k|v, gate|up), count >= 1: each part's out exactly as
 * backend_matmul(be, part.out, x, n, part.w, part.bias) computes it; a backend may run
 * them as one launch. No out may overlap x or another out. */
static inline augur_status backend_matmul_parts(augur_backend *be, const float *x, int n, const matmul_part *parts,
                                                int count, augur_error *err)
{
    if (be->iface.matmul_parts && count > 1)
        return be->iface.matmul_parts(be, x, n, parts, count, err);
    for (int p = 0; p < count; p++) {
        augur_status st = be->iface.matmul(be, parts[p].out, x, n, parts[p].w, parts[p].bias, err);
        if (st)
            return st;
    }
    return AUGUR_OK;
}

/* out[i] = x[i] / sqrt(mean(x[i]^2) + eps) * weight over n rows of dim; out may alias x. */
static inline augur_status backend_rmsnorm(augur_backend *be, float *out, const float *x, const float *weight,
                                           int n, int dim, float eps, augur_error *err)
{
    return be->iface.rmsnorm(be, out, x, weight, n, dim, eps, err);
}

/* The residual add and the next norm: x += partial, then out = rmsnorm(x) as
 * backend_rmsnorm computes it, bit for bit. out must alias neither x nor partial. */
static inline augur_status backend_add_rmsnorm(augur_backend *be, float *out, float *x, const float *partial,
                                               const float *weight, int n, int dim, float eps, augur_error *err)
{
    if (be->iface.add_rmsnorm)
        return be->iface.add_rmsnorm(be, out, x, partial, weight, n, dim, eps, err);
    augur_status st = be->iface.add(be, x, x, partial, (int64_t)n * dim, err);
    return st ? st : be->iface.rmsnorm(be, out, x, weight, n, dim, eps, err);
}

/* Rotates x = [n][n_heads][head_dim] in place; row i is at position start_pos + i.
 * inv_freq: [head_dim/2] in backend memory, from rope_inv_freq() on the host. */
static inline augur_status backend_rope(augur_backend *be, float *x, int n, int n_heads, int head_dim,
                                        int start_pos, const float *inv_freq, rope_pairing pairs,
                                        augur_error *err)
{
    return be->iface.rope(be, x, n, n_heads, head_dim, start_pos, inv_freq, pairs, err);
}

/* Causal grouped-query attention of n new query rows against one layer's KV cache, as
 * cpu_attention: q, out [n][n_heads][head_dim]; k_cache, v_cache [row][n_kv_heads][head_dim]
 * holding positions 0 .. start_pos+n-1; row i attends to 0 .. start_pos+i. Position p is
 * row p, or with a block table (backend memory, NULL: none) row
 * block_table[p / block_size] * block_size + p % block_size (a paged cache): the
 * arithmetic of every row is the same either way, bit for bit. Scratch is the backend's
 * own. */
static inline augur_status backend_attention(augur_backend *be, float *out, const float *q, int n,
                                             int start_pos, int n_heads, int n_kv_heads, int head_dim,
                                             const float *k_cache, const float *v_cache,
                                             const int32_t *block_table, int block_size, augur_error *err)
{
    if (block_table && block_size <= 0)
        return augur_fail(err, AUGUR_E_INTERNAL, "backend %s: attention with a block table of block size %d",
                          be->name, block_size);
    return be->iface.attention(be, out, q, n, start_pos, n_heads, n_kv_heads, head_dim, k_cache, v_cache,
                               block_table, block_size, err);
}

/* Rows 0..n-1 of src (row_floats floats each) to the rows of positions start_row.. of
 * base (a KV cache append), through block_table as backend_attention when it is not
 * NULL. With a bound position (backend_bind_position) the device reads the first
 * position from it when the copy runs; start_row must then equal it. */
static inline augur_status backend_store_rows(augur_backend *be, float *base, const float *src, int64_t row_floats,
                                              int n, int start_row, const int32_t *block_table, int block_size,
                                              augur_error *err)
{
    if (block_table && block_size <= 0)
        return augur_fail(err, AUGUR_E_INTERNAL, "backend %s: store_rows with a block table of block size %d",
                          be->name, block_size);
    if (be->iface.store_rows)
        return be->iface.store_rows(be, base, src, row_floats, n, start_row, block_table, block_size, err);
    if (block_table && !be->caps.host_memory)
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "backend %s cannot store rows through a block table", be->name);
    for (int i = 0; i < n;) {
        /* runs of rows that stay inside one block */
        int p = start_row + i, run = n - i;
        int64_t row = p;
        if (block_table) {
            int left = block_size - p % block_size;
            run = run < left ? run : left;
            row = (int64_t)block_table[p / block_size] * block_size + p % block_size;
        }
        augur_status st = be->iface.copy(be, base + row * row_floats, src + (int64_t)i * row_floats,
                                         (size_t)run * (size_t)row_floats * sizeof(float), err);
        if (st)
            return st;
        i += run;
    }
    return AUGUR_OK;
}

/* backend_rope_store as its four operations, one by one: where a backend has no
 * rope_store, or runs them apart itself (the CUDA backend under AUGUR_CUDA_FUSED_NORM=0). */
static inline augur_status backend_rope_store_apart(augur_backend *be, float *q, float *k, const float *v, int n,
                                                    int n_heads, int n_kv_heads, int head_dim, int start_pos,
                                                    const float *inv_freq, rope_pairing pairs, float *k_cache,
                                                    float *v_cache, const int32_t *block_table, int block_size,
                                                    augur_error *err)
{
    const int64_t row = (int64_t)n_kv_heads * head_dim;
    augur_status st;
    if ((st = backend_rope(be, q, n, n_heads, head_dim, start_pos, inv_freq, pairs, err)) ||
        (st = backend_rope(be, k, n, n_kv_heads, head_dim, start_pos, inv_freq, pairs, err)) ||
        (st = backend_store_rows(be, k_cache, k, row, n, start_pos, block_table, block_size, err)))
        return st;
    return backend_store_rows(be, v_cache, v, row, n, start_pos, block_table, block_size, err);
}

/* The new rows of one attention step: q ([n][n_heads][head_dim]) and k ([n][n_kv_heads]
 * [head_dim]) rotated in place as backend_rope does, then k and v ([n][n_kv_heads]
 * [head_dim]) stored at positions start_pos.. of k_cache and v_cache as backend_store_rows
 * does (block_table, a bound position), bit for bit the four operations in that order; a
 * backend may run them as one launch. No buffer may overlap another. */
static inline augur_status backend_rope_store(augur_backend *be, float *q, float *k, const float *v, int n, int n_heads,
                                              int n_kv_heads, int head_dim, int start_pos, const float *inv_freq,
                                              rope_pairing pairs, float *k_cache, float *v_cache,
                                              const int32_t *block_table, int block_size, augur_error *err)
{
    if (!be->iface.rope_store)
        return backend_rope_store_apart(be, q, k, v, n, n_heads, n_kv_heads, head_dim, start_pos, inv_freq, pairs,
                                        k_cache, v_cache, block_table, block_size, err);
    if (block_table && block_size <= 0)
        return augur_fail(err, AUGUR_E_INTERNAL, "backend %s: rope_store with a block table of block size %d", be->name,
                          block_size);
    return be->iface.rope_store(be, q, k, v, n, n_heads, n_kv_heads, head_dim, start_pos, inv_freq, pairs, k_cache,
                                v_cache, block_table, block_size, err);
}

/* Step capture (caps.graphs). While a position is bound (dev_pos, a device int32 the
 * caller uploads before each step; NULL unbinds), rope, rope_store, attention and
 * store_rows read their start position from it when they run instead of baking in the
 * value passed (which must equal it), and attention sizes its grid for max_positions: one
 * captured step then replays at any position. Between graph_begin and graph_end the
 * backend's operations are recorded, not run (no upload, download or synchronisation may
 * come between); graph_end with graph NULL discards the capture. graph_launch replays a
 * step; *stale says the backend has since moved a buffer the step uses (capture it
 * again). */
static inline augur_status backend_bind_position(augur_backend *be, const int32_t *dev_pos, int max_positions,
                                                 augur_error *err)
{
    if (!be->iface.bind_position)
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "backend %s cannot capture steps", be->name);
    return be->iface.bind_position(be, dev_pos, max_positions, err);
}

static inline augur_status backend_graph_begin(augur_backend *be, augur_error *err)
{
    if (!be->iface.graph_begin)
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "backend %s cannot capture steps", be->name);
    return be->iface.graph_begin(be, err);
}

static inline augur_status backend_graph_end(augur_backend *be, void **graph, augur_error *err)
{
    return be->iface.graph_end(be, graph, err);
}

static inline augur_status backend_graph_launch(augur_backend *be, void *graph, bool *stale, augur_error *err)
{
    return be->iface.graph_launch(be, graph, stale, err);
}

static inline void backend_graph_free(augur_backend *be, void *graph)
{
    if (graph && be->iface.graph_free)
        be->iface.graph_free(be, graph);
}

/* out[i] = silu(gate[i]) * up[i] over n rows of cols; out may alias gate. By rows and
 * columns rather than a count: a backend may also lay out the result for the product
 * that reads it next (the MLP's down projection), as the CUDA backend's norm does. */
static inline augur_status backend_swiglu(augur_backend *be, float *out, const float *gate, const float *up, int n,
                                          int cols, augur_error *err)
{
    return be->iface.swiglu(be, out, gate, up, n, cols, err);
}

/* out[i] = row ids[i] of table as fp32 ([n][table->cols]); ids: n int32 in backend
 * memory, each in 0 .. table->rows-1 (the caller checks). */
static inline augur_status backend_embedding(augur_backend *be, float *out, const tensor_view *table,
                                             const int32_t *ids, int n, augur_error *err)
{
    return be->iface.embedding(be, out, table, ids, n, err);
}

/* out[i] = a[i] + b[i]; out may alias a or b. */
static inline augur_status backend_add(augur_backend *be, float *out, const float *a, const float *b,
                                       int64_t count, augur_error *err)
{
    return be->iface.add(be, out, a, b, count, err);
}

/* In-place softmax of each of rows rows of cols values (as cpu_softmax). */
static inline augur_status backend_softmax(augur_backend *be, float *x, int rows, int cols, augur_error *err)
{
    return be->iface.softmax(be, x, rows, cols, err);
}

/* out[r] = index of the largest of row r's cols values; the lowest index wins ties, NaN is
 * never chosen, a row with nothing above -inf gives 0 (as argmax_f32). out: rows int32.
 * max_out (may be NULL): rows floats, max_out[r] = row r's value at out[r]. */
static inline augur_status backend_argmax(augur_backend *be, int32_t *out, float *max_out, const float *x, int rows,
                                          int cols, augur_error *err)
{
    return be->iface.argmax(be, out, max_out, x, rows, cols, err);
}

/* A greedy chain's link (runtime/forward.c forward_greedy_chain), all on the device:
 * *out = argmax of the one row x (backend_argmax's rule), and ids[0] = *out, *pos +=
 * advance, where the chain's next step (a captured step at a bound position) reads its
 * token and position. ids and pos may be NULL (the last link: only *out). */
static inline augur_status backend_argmax_feed(augur_backend *be, int32_t *out, int32_t *ids, int32_t *pos, int advance,
                                               const float *x, int cols, augur_error *err)
{
    if (!be->iface.argmax_feed)
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "backend %s cannot chain greedy steps", be->name);
    return be->iface.argmax_feed(be, out, ids, pos, advance, x, cols, err);
}

/* A small model's greedy chain as one launch (a draft's proposal; runtime/forward.c
 * forward_greedy_chain): feeds ids[0..n) (host memory, n <= AUGUR_FUSED_MAX_FEED) at positions start.. of the
 * contiguous cache kv, then each token it chooses, and writes the argmax (argmax_f32's
 * rule) of the logits of rows n-1 .. n+steps-2 to out[0..steps) (host memory: the chain
 * has ended when it returns, so no download stands between it and the tokens); the cache
 * gains the K and V of positions start .. start+n+steps-2. logits (backend memory,
 * may be NULL): also those rows' logits, [steps][vocab]. Its arithmetic is its own (not
 * the separate kernels', bit for bit): a draft's proposals, never a target's logits.
 * beside: the chain runs beside other work on the device (a draft drafting ahead while a
 * target rank verifies on the same GPU), so it takes a few multiprocessors, not all; the
 * tokens do not depend on it. steps == 0 only asks whether the backend can run m over kv
 * (AUGUR_E_UNSUPPORTED and why, when not). */
static inline augur_status backend_greedy_fused(augur_backend *be, const augur_fused_model *m,
                                                const augur_fused_cache *kv, const int32_t *ids, int n, int start,
                                                int steps, bool beside, int32_t *out, float *logits, augur_error *err)
{
    if (!be->iface.greedy_fused)
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "backend %s has no fused greedy steps", be->name);
    return be->iface.greedy_fused(be, m, kv, ids, n, start, steps, beside, out, logits, err);
}

/* probs row r = sampling_probs(sp, logits row r): softmax at temperature, top-k, top-p,
 * renormalised, exact zeros elsewhere, ties broken by lower id; one-hot on the argmax for
 * greedy params. probs and logits are [rows][cols] in backend memory; sp is host memory. */
static inline augur_status backend_sample_probs(augur_backend *be, float *probs, const float *logits, int rows,
                                                int cols, const sampling_params *sp, augur_error *err)
{
    return be->iface.sample_probs(be, probs, logits, rows, cols, sp, err);
}

#endif
