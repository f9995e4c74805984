/* The CPU backend: kernels/cpu_kernels.h and kernels/probs.h behind the backend
 * interface. Buffers are host memory, so every operation is a direct call; the only
 * state is the thread count and scratch that grows to the largest call seen. */
#include "kernels/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu_kernels.h"
#include "kernels/fill_random.h"
#include "kernels/probs.h"

typedef struct {
    int threads;
    float *att_scratch;       /* [threads][context] for cpu_attention */
    size_t att_len;
    int *ints;                /* positions for cpu_rope, ids for sampling_probs */
    size_t ints_len;
} cpu_ctx;

static cpu_ctx *ctx_of(augur_backend *be)
{
    return be->ctx;
}

/* Grows *buf to hold at least count elements of size esize. */
static augur_status grow(void **buf, size_t *len, size_t count, size_t esize, const char *what, augur_error *err)
{
    if (count <= *len)
        return AUGUR_OK;
    void *p = realloc(*buf, count * esize);
    if (!p)
        return augur_fail(err, AUGUR_E_NOMEM, "cpu backend: cannot allocate %zu bytes of %s scratch", count * esize,
                          what);
    *buf = p;
    *len = count;
    return AUGUR_OK;
}

/* The status of an operation that cannot fail, whatever of be and err it leaves unused. */
static augur_status infallible(const augur_backend *be, const augur_error *err)
{
    (void)be;
    (void)err;
    return AUGUR_OK;
}

static void cpu_destroy(augur_backend *be)
{
    cpu_ctx *c = ctx_of(be);
    free(c->att_scratch);
    free(c->ints);
    free(c);
    free(be);
}

static augur_status cpu_alloc(augur_backend *be, void **buf, size_t bytes, augur_error *err)
{
    (void)be;
    /* 64-byte aligned like a cache line; aligned_alloc wants a multiple of the alignment. */
    size_t rounded = (bytes + 63) / 64 * 64;
    *buf = aligned_alloc(64, rounded ? rounded : 64);
    if (!*buf)
        return augur_fail(err, AUGUR_E_NOMEM, "cpu backend: cannot allocate %zu bytes", bytes);
    return AUGUR_OK;
}

static void cpu_free(augur_backend *be, void *buf)
{
    (void)be;
    free(buf);
}

static augur_status cpu_memcpy(augur_backend *be, void *dst, const void *src, size_t bytes, augur_error *err)
{
    if (bytes)
        memcpy(dst, src, bytes);
    return infallible(be, err);
}

static augur_status cpu_synchronize(augur_backend *be, augur_error *err)
{
    return infallible(be, err);
}

static augur_status cpu_weight_upload(augur_backend *be, tensor_view *dev, const tensor_view *host,
                                      augur_error *err)
{
    *dev = *host; /* host memory is this backend's memory: alias, don't copy */
    return infallible(be, err);
}

static void cpu_weight_free(augur_backend *be, tensor_view *dev)
{
    (void)be;
    memset(dev, 0, sizeof *dev);
}

/* Below this many elements a fill is not worth waking the thread team. */
#define FILL_PARALLEL_MIN (1 << 16)

static augur_status cpu_fill_random(augur_backend *be, void *buf, augur_dtype dtype, int64_t count, uint64_t seed,
                                    float scale, float offset, augur_error *err)
{
    const int threads = ctx_of(be)->threads;
    const bool par = threads > 1 && count >= FILL_PARALLEL_MIN;
    switch (dtype) {
    case AUGUR_F32: {
        float *p = buf;
#pragma omp parallel for schedule(static) num_threads(threads) if (par)
        for (int64_t i = 0; i < count; i++)
            p[i] = augur_fill_value(seed, (uint64_t)i, scale, offset);
        return AUGUR_OK;
    }
    case AUGUR_BF16: {
        uint16_t *p = buf;
#pragma omp parallel for schedule(static) num_threads(threads) if (par)
        for (int64_t i = 0; i < count; i++)
            p[i] = augur_f32_to_bf16(augur_fill_value(seed, (uint64_t)i, scale, offset));
        return AUGUR_OK;
    }
    case AUGUR_F16: {
        uint16_t *p = buf;
#pragma omp parallel for schedule(static) num_threads(threads) if (par)
        for (int64_t i = 0; i < count; i++)
            p[i] = augur_f32_to_f16(augur_fill_value(seed, (uint64_t)i, scale, offset));
        return AUGUR_OK;
    }
    }
    return augur_fail(err, AUGUR_E_INTERNAL, "cpu backend: fill_random of %lld elements of unknown dtype %d",
                      (long long)count, (int)dtype);
}

static augur_status cpu_matmul_op(augur_backend *be, float *out, const float *x, int n, const tensor_view *w,
                                  const float *bias, augur_error *err)
{
    cpu_matmul(out, x, n, w, bias, ctx_of(be)->threads);
    return infallible(be, err);
}

static augur_status cpu_rmsnorm_op(augur_backend *be, float *out, const float *x, const float *weight, int n,
                                   int dim, float eps, augur_error *err)
{
    cpu_rmsnorm(out, x, weight, n, dim, eps);
    return infallible(be, err);
}

static augur_status cpu_rope_op(augur_backend *be, float *x, int n, int n_heads, int head_dim, int start_pos,
                                const float *inv_freq, rope_pairing pairs, augur_error *err)
{
    cpu_ctx *c = ctx_of(be);
    augur_status st = grow((void **)&c->ints, &c->ints_len, (size_t)n, sizeof(int), "position", err);
    if (st)
        return st;
    for (int i = 0; i < n; i++)
        c->ints[i] = start_pos + i;
    cpu_rope(x, n, n_heads, head_dim, c->ints, inv_freq, pairs);
    return AUGUR_OK;
}

static augur_status cpu_attention_op(augur_backend *be, float *out, const float *q, int n, int start_pos,
                                     int n_heads, int n_kv_heads, int head_dim, const float *k_cache,
                                     const float *v_cache, const int32_t *block_table, int block_size,
                                     augur_error *err)
{
    cpu_ctx *c = ctx_of(be);
    size_t need = (size_t)c->threads * ((size_t)start_pos + (size_t)n);
    augur_status st = grow((void **)&c->att_scratch, &c->att_len, need, sizeof(float), "attention", err);
    if (st)
        return st;
    cpu_attention(out, q, n, start_pos, n_heads, n_kv_heads, head_dim, k_cache, v_cache, block_table, block_size,
                  c->att_scratch, c->threads);
    return AUGUR_OK;
}

static augur_status cpu_swiglu_op(augur_backend *be, float *out, const float *gate, const float *up, int n, int cols,
                                  augur_error *err)
{
    if (n > 0 && cols > 0)
        cpu_swiglu(out, gate, up, (int64_t)n * cols);
    return infallible(be, err);
}

static augur_status cpu_embedding_op(augur_backend *be, float *out, const tensor_view *table, const int32_t *ids,
                                     int n, augur_error *err)
{
    cpu_embedding(out, table, ids, n);
    return infallible(be, err);
}

static augur_status cpu_add_op(augur_backend *be, float *out, const float *a, const float *b, int64_t count,
                               augur_error *err)
{
    cpu_add(out, a, b, count);
    return infallible(be, err);
}

static augur_status cpu_softmax_op(augur_backend *be, float *x, int rows, int cols, augur_error *err)
{
    for (int r = 0; r < rows; r++)
        cpu_softmax(x + (size_t)r * cols, cols);
    return infallible(be, err);
}

static augur_status cpu_argmax_op(augur_backend *be, int32_t *out, float *max_out, const float *x, int rows,
                                  int cols, augur_error *err)
{
    for (int r = 0; r < rows; r++) {
        out[r] = argmax_f32(x + (size_t)r * cols, cols);
        if (max_out)
            max_out[r] = cols > 0 ? x[(size_t)r * cols + out[r]] : -INFINITY;
    }
    return infallible(be, err);
}

static augur_status cpu_sample_probs_op(augur_backend *be, float *probs, const float *logits, int rows, int cols,
                                        const sampling_params *sp, augur_error *err)
{
    cpu_ctx *c = ctx_of(be);
    augur_status st = grow((void **)&c->ints, &c->ints_len, (size_t)cols, sizeof(int), "sampling", err);
    if (st)
        return st;
    for (int r = 0; r < rows; r++)
        sampling_probs(sp, logits + (size_t)r * cols, cols, probs + (size_t)r * cols, c->ints);
    return AUGUR_OK;
}

static const augur_backend_iface cpu_iface = {
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .copy = cpu_memcpy,
    .synchronize = cpu_synchronize,
    .weight_upload = cpu_weight_upload,
    .weight_free = cpu_weight_free,
    .fill_random = cpu_fill_random,
    .matmul = cpu_matmul_op,
    .rmsnorm = cpu_rmsnorm_op,
    .rope = cpu_rope_op,
    .attention = cpu_attention_op,
    .swiglu = cpu_swiglu_op,
    .embedding = cpu_embedding_op,
    .add = cpu_add_op,
    .softmax = cpu_softmax_op,
    .argmax = cpu_argmax_op,
    .sample_probs = cpu_sample_probs_op,
};

augur_status backend_cpu_create(augur_backend **out, int threads, augur_error *err)
{
    *out = NULL;
    augur_backend *be = calloc(1, sizeof *be);
    cpu_ctx *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return augur_fail(err, AUGUR_E_NOMEM, "cpu backend: cannot allocate its state");
    }
    c->threads = threads < 1 ? 1 : threads;
    be->name = "cpu";
    be->caps = (augur_backend_caps){.host_memory = true, .weights_alias_host = true};
    be->device = -1;
    be->iface = cpu_iface;
    be->ctx = c;
    *out = be;
    return AUGUR_OK;
}
