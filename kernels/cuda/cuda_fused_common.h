/* What the two fused greedy kernels share (cuda_fused_step.cu: a cooperative grid with
 * grid-wide barriers; cuda_fused_cluster.cu: one thread-block cluster): the fp32 dot of 8
 * bf16 weights, 16-byte asynchronous copies, the argmax rule, and the shape checks. */
#ifndef AUGUR_CUDA_FUSED_COMMON_H
#define AUGUR_CUDA_FUSED_COMMON_H

#include "kernels/cuda/cuda_device.h"

/* acc += 8 bf16 weights (raw) times (a, b), in order. */
__device__ __forceinline__ float dot8v(uint4 raw, float4 a, float4 b, float acc)
{
    const __nv_bfloat162 *w = reinterpret_cast<const __nv_bfloat162 *>(&raw);
    float2 f;
    f = __bfloat1622float2(w[0]);
    acc = fmaf(f.x, a.x, acc);
    acc = fmaf(f.y, a.y, acc);
    f = __bfloat1622float2(w[1]);
    acc = fmaf(f.x, a.z, acc);
    acc = fmaf(f.y, a.w, acc);
    f = __bfloat1622float2(w[2]);
    acc = fmaf(f.x, b.x, acc);
    acc = fmaf(f.y, b.y, acc);
    f = __bfloat1622float2(w[3]);
    acc = fmaf(f.x, b.z, acc);
    acc = fmaf(f.y, b.w, acc);
    return acc;
}

/* acc += 8 bf16 weights (raw) times xin[0..8), in order. */
__device__ __forceinline__ float dot8(uint4 raw, const float *xin, float acc)
{
    return dot8v(raw, *reinterpret_cast<const float4 *>(xin), *reinterpret_cast<const float4 *>(xin + 4), acc);
}

/* 16 bytes global -> shared without registers (through L2: the cache rows may have been
 * written by another block earlier in this launch); waited for by fused_copies_wait. */
__device__ __forceinline__ void fused_copy16(void *smem, const void *gmem)
{
    const unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(gmem) : "memory");
}

__device__ __forceinline__ void fused_copies_wait()
{
    asm volatile("cp.async.commit_group;\n\tcp.async.wait_group 0;" ::: "memory");
}

/* (bv, bi) = the better of itself and (v, i): larger value, then lower index; NaN never
 * wins. A total order on (value, index), so any order of reduction picks the same. */
__device__ __forceinline__ void fused_better(float &bv, int &bi, float v, int i)
{
    if (v > bv || (v == bv && i < bi)) {
        bv = v;
        bi = i;
    }
}

/* Rows of a product a warp keeps in flight in the LM head: its rows outnumber the warps. */
#define FUSED_LM_ROWS 8

/* A warp's first group of rows of a product: their first 8 columns for this lane, loaded
 * before the barrier the product waits behind (weights never change in a launch). */
template <int R>
__device__ __forceinline__ void prefetch_rows(const __nv_bfloat16 *const *row, int cols, uint4 (&pre)[FUSED_LM_ROWS])
{
    const int c = (threadIdx.x & 31) * 8;
#pragma unroll
    for (int j = 0; j < R; j++)
        pre[j] = row[j] && c < cols ? __ldg(reinterpret_cast<const uint4 *>(row[j] + c)) : make_uint4(0, 0, 0, 0);
}

/* out[j] = row[j] . xin (cols bf16, cols % 8 == 0; row[j] NULL: 0) for R rows, by the
 * whole warp; every lane gets every sum. use_pre: pre holds the first columns, as
 * prefetch_rows loaded them (a register array: never addressed, so a prefetch is not
 * waited for where it is made). The rows' loads are issued together. */
template <int R>
__device__ __forceinline__ void warp_dots(const __nv_bfloat16 *const *row, const float *xin, int cols, float *out,
                                          const uint4 (&pre)[FUSED_LM_ROWS], bool use_pre)
{
    const int lane = threadIdx.x & 31;
    float acc[R];
#pragma unroll
    for (int j = 0; j < R; j++)
        acc[j] = 0.0f;
    for (int c = lane * 8; c < cols; c += 32 * 8) {
        uint4 raw[R];
#pragma unroll
        for (int j = 0; j < R; j++)
            raw[j] = use_pre && c == lane * 8 ? pre[j]
                     : row[j]                 ? __ldg(reinterpret_cast<const uint4 *>(row[j] + c))
                                              : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int j = 0; j < R; j++)
            acc[j] = dot8(raw[j], xin + c, acc[j]);
    }
#pragma unroll
    for (int j = 0; j < R; j++)
        out[j] = cuk_warp_sum(acc[j]);
}

/* An attention task: query head h over positions [lo, hi) of layer l, where the row at
 * position p is new (hi == p + 1 when this chunk holds it). */
struct AttTask {
    int h, c, lo, len, old_len;
    bool has_new;
};

__device__ __forceinline__ AttTask att_task(int t, int chunks, int p)
{
    AttTask k;
    k.h = t / chunks;
    k.c = t % chunks;
    k.lo = k.c * CUK_FUSED_CHUNK;
    const int hi = min(k.lo + CUK_FUSED_CHUNK, p + 1);
    k.len = hi - k.lo;
    k.has_new = hi == p + 1;
    k.old_len = k.has_new ? k.len - 1 : k.len;
    return k;
}

/* The task's cached K and V rows (all but the new one) into sK, sV, asynchronously
 * (fused_copies_wait completes them). Those rows were stored by earlier rows of this
 * launch or before it, so the copies may start before the barrier that ends q|k|v. */
__device__ __forceinline__ void stage_kv(const augur_fused_model &m, const augur_fused_cache &kv, int l,
                                         const AttTask &k, float *sK, float *sV)
{
    const int hd = m.head_dim, hd4 = hd / 4, kvd = m.n_kv_heads * hd, g = k.h / (m.n_heads / m.n_kv_heads);
    const float *kc = kv.k + (int64_t)l * kv.layer_rows * kvd + g * hd;
    const float *vc = kv.v + (int64_t)l * kv.layer_rows * kvd + g * hd;
    /* a warp takes one row (or two, where a row is at most 16 vectors) a turn: lane e4's
     * 16 bytes of K and of V, no division on the way */
    const int lane = threadIdx.x & 31, per = hd4 <= 16 ? 2 : 1, e4 = per == 2 ? lane & 15 : lane;
    const int step = (int)(blockDim.x >> 5) * per;
    if (e4 < hd4)
        for (int j = (int)(threadIdx.x >> 5) * per + (per == 2 ? lane >> 4 : 0); j < k.old_len; j += step) {
            fused_copy16(reinterpret_cast<float4 *>(sK) + j * hd4 + e4,
                         reinterpret_cast<const float4 *>(kc + (int64_t)(k.lo + j) * kvd) + e4);
            fused_copy16(reinterpret_cast<float4 *>(sV) + j * hd4 + e4,
                         reinterpret_cast<const float4 *>(vc + (int64_t)(k.lo + j) * kvd) + e4);
        }
}

/* The chain's arguments both kernels' parameter structs carry, filled alike (n <=
 * AUGUR_FUSED_MAX_FEED, checked by the caller); the rest of A is left to the caller. */
template <typename A>
static inline void fused_chain_args(A &a, const augur_fused_model *m, const augur_fused_cache *kv, const int32_t *ids,
                                    int n, int start, int steps, int32_t *out, float *logits, long long *trace,
                                    int trace_cap)
{
    a.m = *m;
    a.kv = *kv;
    for (int i = 0; i < n; i++)
        a.ids[i] = ids[i];
    a.n = n;
    a.start = start;
    a.steps = steps;
    a.out = out;
    a.logits = logits;
    a.trace = trace;
    a.trace_cap = trace_cap;
    a.max_chunks = (kv->layer_rows + CUK_FUSED_CHUNK - 1) / CUK_FUSED_CHUNK;
}

/* Why neither fused kernel takes m's shapes or weights (NULL: they do); the kernels add
 * their own shared-memory checks. */
static inline const char *fused_shape_unfit(const augur_fused_model *m, int layer_rows)
{
    if (m->n_layers < 1 || m->n_layers > AUGUR_FUSED_MAX_LAYERS)
        return "its layer count is outside 1..16";
    if (m->dim % 8 || m->hidden % 8 || m->dim <= 0 || m->hidden <= 0)
        return "its hidden or intermediate size is not a multiple of 8";
    if (m->head_dim % 16 || m->head_dim <= 0 || m->head_dim > 128)
        return "its head_dim is not a multiple of 16 up to 128";
    if (m->n_kv_heads <= 0 || m->n_heads % m->n_kv_heads)
        return "its query heads are not a multiple of its KV heads";
    if (m->vocab <= 0 || layer_rows <= 0)
        return "it has no vocabulary or no cache rows";
    const void *ptrs[] = {m->embedding, m->lm_head};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++)
        if ((uintptr_t)ptrs[i] % 16)
            return "a weight matrix is not 16-byte aligned";
    for (int l = 0; l < m->n_layers; l++) {
        const augur_fused_layer *L = &m->layers[l];
        const void *w[] = {L->wq, L->wk, L->wv, L->wo, L->w_gate, L->w_up, L->w_down};
        for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
            if (!w[i] || (uintptr_t)w[i] % 16)
                return "a weight matrix is missing or not 16-byte aligned";
        if (!L->attn_norm || !L->ffn_norm)
            return "a norm weight is missing";
    }
    return NULL;
}

#endif
