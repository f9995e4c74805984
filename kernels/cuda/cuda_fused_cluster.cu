/* A small model's greedy steps on thread-block clusters (a draft's proposal).
 *
 * Why: the cooperative grid of cuda_fused_step.cu spends a step's ~51 us on 13 stages,
 * each a grid barrier through L2 (~0.9 us) and its blocks' own chain of L2 round trips
 * (1.7-4.3 us: the stage's input written by other blocks, weights streamed from L2; perf
 * notes, change 17). A Hopper cluster of 16 blocks has a hardware barrier and distributed
 * shared memory: here each block of the first cluster keeps its share of every layer's
 * weights in its own shared memory for the whole launch, every product's output is written
 * straight into every block's shared memory (lane j of the producing warp stores to block
 * j), and a stage ends at a cluster barrier. After a barrier a stage's input is local; only
 * the KV cache is read from L2, issued before the barrier the stage waits behind. A layer
 * is five stages:
 *
 *   A  xn = rmsnorm(x); the block's rows of q|k|v
 *   B  attention, one task per (query head, chunk of 64 positions): RoPE, the new K/V row
 *      (stored in the cache by the group's first head), scores, softmax over the chunk
 *      and its V sum (each warp over its own positions, then the warps combined), sent
 *      with the chunk's (max, sum) to every block
 *   C  flash-decoding's combine of the chunks (every block alike), the block's rows of
 *      W_o, added to x in every block by the block that computes them
 *   D  xn = rmsnorm(x); the block's features of gate|up and SwiGLU
 *   E  the block's rows of down, added to x as in C
 *
 * A row that yields a token ends with the LM head, too large for 16 blocks to keep and
 * slow for them to stream (one multiprocessor reads ~25 GB/s from L2 this way: 8 us a step
 * for the shipped draft's 3 MB). So the launch has up to 8 clusters: the others (helpers)
 * each keep their share of the LM head in shared memory; the first cluster's blocks post
 * the residual stream after the last layer in global memory (each block its rows of down,
 * as it adds them, before the stage's barrier), every helper block applies the final norm,
 * takes its rows' dot products and posts its best (value, index), and every block of the
 * first cluster waits for all the posts and reduces them alike (fused_better's total
 * order). Each posted value
 * is a 64-bit word that carries its step's tag, so a reader waits on the data itself: one
 * trip through L2 each way, with no fence or counter between. Alone (no helper fits), the
 * first cluster's blocks share the LM head themselves.
 *
 * Exactness: every block holds the same residual stream x and applies the same adds and
 * norms in the same order; a product's row is one warp's fp32 FMA in a fixed order, the
 * attention task and the combine are fixed by positions, never by the cluster's size or
 * count, so the bits do not depend on how many blocks share the work
 * (tests/gpu/test_fused_draft.c checks one cluster of 8 against 7 clusters of 16). Like
 * the grid kernel it is not the target's arithmetic: it only ever proposes. */
#include <cooperative_groups.h>
#include <limits.h>

#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_fused_common.h"
#include "kernels/cuda/cuda_kernels.h"

namespace cg = cooperative_groups;

#define CL_THREADS 512
#define CL_WARPS (CL_THREADS / 32)

#define CL_POS_A_WARP (CUK_FUSED_CHUNK / CL_WARPS) /* positions of an attention task a warp takes */
static_assert(CUK_FUSED_CHUNK % CL_WARPS == 0, "an attention task's positions split evenly over the warps");
static_assert(CUK_FUSED_CLUSTER_MAX <= 32, "a warp's lane j writes block j's copy");
#define CL_REDUCE_WARPS 4 /* warps that wait for the posted bests, 32 blocks each (cl_reduce_bests) */
static_assert(CUK_FUSED_CLUSTER_MAX * CUK_FUSED_CLUSTER_GROUPS_MAX <= 32 * CL_REDUCE_WARPS,
              "every posting block has a lane of cl_reduce_bests");

__host__ __device__ static inline int cl_share(int count, int ranks)
{
    return (count + ranks - 1) / ranks;
}

__host__ __device__ static inline int cl_round4(int floats)
{
    return (floats + 3) / 4 * 4;
}

/* Floats of one attention task's output in part: its head_dim sums, max and sum, as float4s. */
__host__ __device__ static inline int cl_part_floats(int hd)
{
    return cl_round4(hd + 2);
}

/* A block's shared memory: float regions (offsets in floats, each 16-byte aligned), then
 * its share of every layer's weights (bf16). */
struct ClLayout {
    int x, xn, qkv, part, h, q, knew, vnew, ho, wstat, wv, coef, sK, sV, norms, w;
    int rows_qkv, rows_o, feats, rows_down; /* a block's share of each product */
    int w_o, w_gu, w_down, w_layer;         /* bf16 offsets in a layer's share, and its size */
    size_t bytes;
};

__host__ __device__ static inline ClLayout cl_layout(const augur_fused_model &m, int max_chunks, int ranks)
{
    ClLayout L;
    const int hd = m.head_dim, qd = m.n_heads * hd, nqkv = qd + 2 * m.n_kv_heads * hd;
    int in = m.dim > m.hidden ? m.dim : m.hidden;
    in = in > qd ? in : qd;
    int at = 0;
    L.x = at, at += cl_round4(m.dim);
    L.xn = at, at += cl_round4(in);
    L.qkv = at, at += cl_round4(nqkv);
    L.part = at, at += m.n_heads * max_chunks * cl_part_floats(hd);
    L.h = at, at += cl_round4(m.hidden);
    L.q = at, at += hd;
    L.knew = at, at += hd;
    L.vnew = at, at += hd;
    L.ho = at, at += cl_part_floats(hd);
    L.wstat = at, at += 2 * CL_WARPS;
    L.wv = at, at += cl_round4(CL_WARPS * hd);
    L.coef = at, at += cl_round4(m.n_heads * max_chunks);
    L.sK = at, at += CUK_FUSED_CHUNK * hd;
    L.sV = at, at += CUK_FUSED_CHUNK * hd;
    L.norms = at, at += cl_round4((2 * m.n_layers + 1) * m.dim);
    L.w = at;
    L.rows_qkv = cl_share(nqkv, ranks);
    L.rows_o = cl_share(m.dim, ranks);
    L.feats = cl_share(m.hidden, ranks);
    L.rows_down = cl_share(m.dim, ranks);
    L.w_o = L.rows_qkv * m.dim;
    L.w_gu = L.w_o + L.rows_o * qd;
    L.w_down = L.w_gu + 2 * L.feats * m.dim;
    L.w_layer = L.w_down + L.rows_down * m.hidden;
    L.bytes = (size_t)at * sizeof(float) + (size_t)m.n_layers * L.w_layer * 2;
    return L;
}

struct ClusterArgs {
    augur_fused_model m;
    augur_fused_cache kv;
    int ids[AUGUR_FUSED_MAX_FEED];
    int n, start, steps;
    int32_t *out;
    float *logits;
    long long *trace;
    int trace_cap;
    int max_chunks;
    /* The LM head's exchange in global memory (the scratch): tagged words, tag << 32 |
     * payload, that a reader takes once the tag is its step's, seq + s + 1. A word is
     * stored and loaded whole, so no fence, counter or second read stands between a
     * writer and its readers; tags only grow (the host's seq), so a word left by any
     * earlier step or launch never passes for this one. */
    unsigned long long *mail_x;    /* the residual stream x after the last layer, dim words */
    unsigned long long *mail_best; /* each posting block's best: value, then index */
    unsigned seq;
    /* the blocks' shared memory, laid out by the host: read from the parameters where
     * used, not held in registers (the kernel has 128 a thread and spilled them) */
    ClLayout L;
};

/* [lo, hi): block rank's share of count rows, `share` each. */
struct ClSlice {
    int lo, hi;
};

__device__ __forceinline__ ClSlice cl_slice(int count, int share, int rank)
{
    const int lo = min(count, rank * share);
    return {lo, min(count, lo + share)};
}

/* Every lane holds v: lane j stores it at buf[i] in block j's shared memory. */
__device__ __forceinline__ void cl_send(const cg::cluster_group &cluster, float *buf, int i, float v, int ranks)
{
    const int lane = threadIdx.x & 31;
    if (lane < ranks)
        cluster.map_shared_rank(buf, lane)[i] = v;
}

/* x[i] += v in every block (x[i] is the same in each): the one block that produces row i
 * adds it for all of them. Safe while no block reads x: C and E write it, and only A, D
 * and the LM head read it, each behind a barrier from them. */
__device__ __forceinline__ float cl_send_add(const cg::cluster_group &cluster, float *x, int i, float v, int ranks)
{
    const float sum = x[i] + v;
    __syncwarp(); /* every lane has read this block's x[i] before lane `rank` writes it */
    cl_send(cluster, x, i, sum, ranks);
    return sum;
}

/* 1 / rms(x) over dim, by one warp (each warp computes it alike, so no block barrier). */
__device__ __forceinline__ float cl_rnorm(const float *x, int dim, float eps)
{
    float ss = 0.0f;
    for (int i = threadIdx.x & 31; i < dim; i += 32)
        ss = fmaf(x[i], x[i], ss);
    return rsqrtf(cuk_warp_sum(ss) / (float)dim + eps);
}

/* A product's input as it is in shared memory. */
struct ClPlain {
    const float *x;
    __device__ __forceinline__ void load(int c, float4 &a, float4 &b) const
    {
        a = *reinterpret_cast<const float4 *>(x + c);
        b = *reinterpret_cast<const float4 *>(x + c + 4);
    }
};

/* A product's input normalised as it is read: x * r * w, as cl_norm stores it. */
struct ClNormed {
    const float *x, *w;
    float r;
    __device__ __forceinline__ void load(int c, float4 &a, float4 &b) const
    {
        const float4 xa = *reinterpret_cast<const float4 *>(x + c), xb = *reinterpret_cast<const float4 *>(x + c + 4);
        const float4 wa = *reinterpret_cast<const float4 *>(w + c), wb = *reinterpret_cast<const float4 *>(w + c + 4);
        a = make_float4(xa.x * r * wa.x, xa.y * r * wa.y, xa.z * r * wa.z, xa.w * r * wa.w);
        b = make_float4(xb.x * r * wb.x, xb.y * r * wb.y, xb.z * r * wb.z, xb.w * r * wb.w);
    }
};

/* out[j] = row(j) . input over cols for j < n <= R (bf16 rows in shared memory), by the
 * warp, every lane getting every sum; the rows' reductions interleave. */
template <int R, typename In, typename Row>
__device__ __forceinline__ void cl_dots(Row row, int n, const In &in, int cols, float (&out)[R])
{
    float acc[R];
#pragma unroll
    for (int j = 0; j < R; j++)
        acc[j] = 0.0f;
    for (int c = (threadIdx.x & 31) * 8; c < cols; c += 32 * 8) {
        float4 a, b;
        in.load(c, a, b);
#pragma unroll
        for (int j = 0; j < R; j++)
            if (j < n)
                acc[j] = dot8v(*reinterpret_cast<const uint4 *>(row(j) + c), a, b, acc[j]);
    }
#pragma unroll
    for (int j = 0; j < R; j++)
        out[j] = cuk_warp_sum(acc[j]);
}

/* Rows of a block's share [lo, hi) that warp-strided group f0 holds (f0, f0 + CL_WARPS, ...). */
__device__ __forceinline__ int cl_group(int f0, int hi, int most)
{
    return min(most, (hi - f0 + CL_WARPS - 1) / CL_WARPS);
}

/* The block's rows [sl.lo, sl.hi) of a product whose rows of `cols` bf16 start at w (the
 * block's share, in shared memory): each warp takes rows warp, warp + CL_WARPS, ... four at
 * once, and emit(row, sum) gets each row's sum in every lane. */
template <typename In, typename Emit>
__device__ __forceinline__ void cl_product(const __nv_bfloat16 *w, ClSlice sl, int cols, const In &in, Emit emit)
{
    for (int f0 = sl.lo + (int)(threadIdx.x >> 5); f0 < sl.hi; f0 += 4 * CL_WARPS) {
        const int n = cl_group(f0, sl.hi, 4);
        float v[4];
        cl_dots<4>([&](int j) { return w + (int64_t)(f0 + j * CL_WARPS - sl.lo) * cols; }, n, in, cols, v);
        for (int j = 0; j < n; j++)
            emit(f0 + j * CL_WARPS, v[j]);
    }
}

/* xn = rmsnorm(x) * w over dim, by the block. */
__device__ __forceinline__ void cl_norm(float *xn, const float *x, const float *w, int dim, float eps)
{
    const float r = cl_rnorm(x, dim, eps);
    for (int i = threadIdx.x; i < dim; i += CL_THREADS)
        xn[i] = x[i] * r * w[i];
    __syncthreads();
}

/* `rows` rows of `cols` bf16 into dst (shared memory) asynchronously: row r from src(r). */
template <typename Src> __device__ __forceinline__ void cl_copy_rows(__nv_bfloat16 *dst, int rows, int cols, Src src)
{
    const int vecs = cols / 8;
    for (int idx = threadIdx.x; idx < rows * vecs; idx += CL_THREADS) {
        const int r = idx / vecs, c = idx % vecs;
        fused_copy16(dst + (int64_t)r * cols + c * 8, src(r) + c * 8);
    }
}

/* n floats into dst (shared memory): asynchronously where both ends allow 16-byte copies. */
__device__ __forceinline__ void cl_copy_floats(float *dst, const float *src, int n)
{
    if (n % 4 == 0 && (((uintptr_t)dst | (uintptr_t)src) & 15) == 0)
        for (int i = threadIdx.x; i < n / 4; i += CL_THREADS)
            fused_copy16(dst + 4 * i, src + 4 * i);
    else
        for (int i = threadIdx.x; i < n; i += CL_THREADS)
            dst[i] = src[i];
}

/* The block's share of every layer's weights, and every norm weight, into shared memory:
 * it returns once layer 0's share is there; the later layers' copies go on behind layer
 * 0's first stages, as one group of copies that the first attention stage completes. */
__device__ void cl_load_weights(const augur_fused_model &m, const ClLayout &L, int rank, __nv_bfloat16 *W, float *norms)
{
    const int hd = m.head_dim, qd = m.n_heads * hd, kvd = m.n_kv_heads * hd, dim = m.dim;
    const ClSlice q = cl_slice(qd + 2 * kvd, L.rows_qkv, rank), o = cl_slice(dim, L.rows_o, rank),
                  f = cl_slice(m.hidden, L.feats, rank), d = cl_slice(dim, L.rows_down, rank);
    for (int l = 0; l < m.n_layers; l++) {
        const augur_fused_layer &ly = m.layers[l];
        __nv_bfloat16 *wl = W + (int64_t)l * L.w_layer;
        const __nv_bfloat16 *wq = static_cast<const __nv_bfloat16 *>(ly.wq),
                            *wk = static_cast<const __nv_bfloat16 *>(ly.wk),
                            *wv = static_cast<const __nv_bfloat16 *>(ly.wv);
        cl_copy_rows(wl, q.hi - q.lo, dim, [&](int r) {
            const int row = q.lo + r;
            return row < qd         ? wq + (int64_t)row * dim
                   : row < qd + kvd ? wk + (int64_t)(row - qd) * dim
                                    : wv + (int64_t)(row - qd - kvd) * dim;
        });
        const __nv_bfloat16 *wo = static_cast<const __nv_bfloat16 *>(ly.wo);
        cl_copy_rows(wl + L.w_o, o.hi - o.lo, qd, [&](int r) { return wo + (int64_t)(o.lo + r) * qd; });
        const __nv_bfloat16 *wg = static_cast<const __nv_bfloat16 *>(ly.w_gate),
                            *wu = static_cast<const __nv_bfloat16 *>(ly.w_up);
        cl_copy_rows(wl + L.w_gu, 2 * (f.hi - f.lo), dim,
                     [&](int r) { return (r & 1 ? wu : wg) + (int64_t)(f.lo + r / 2) * dim; });
        const __nv_bfloat16 *wd = static_cast<const __nv_bfloat16 *>(ly.w_down);
        cl_copy_rows(wl + L.w_down, d.hi - d.lo, m.hidden, [&](int r) { return wd + (int64_t)(d.lo + r) * m.hidden; });
        /* copies too: a plain load's wait would stand between the layers' copies */
        cl_copy_floats(norms + 2 * l * dim, ly.attn_norm, dim);
        cl_copy_floats(norms + (2 * l + 1) * dim, ly.ffn_norm, dim);
        if (l == 0)
            asm volatile("cp.async.commit_group;" ::: "memory");
    }
    cl_copy_floats(norms + 2 * m.n_layers * dim, m.final_norm, dim);
    /* all groups but the newest (the later layers) complete */
    asm volatile("cp.async.commit_group;\n\tcp.async.wait_group 1;" ::: "memory");
    __syncthreads();
}

/* Shared-memory buffers of stage B. */
struct ClAttBufs {
    float *qkv, *part, *q, *knew, *vnew, *ho, *wstat, *wv, *sK, *sV;
};

/* Stage B's task k of layer l, the new row at position p; staged: its K, V copies were
 * started before the barrier. Sends the chunk's unnormalised output and (max, sum) to
 * every block's part[h][c] (cl_part_floats each). */
__device__ void cl_attention(const ClusterArgs &a, const cg::cluster_group &cluster, int ranks, int l, const AttTask &k,
                             int p, bool staged, const ClAttBufs &B)
{
    const augur_fused_model &m = a.m;
    const int hd = m.head_dim, half = hd / 2, grp = m.n_heads / m.n_kv_heads, h = k.h, g = h / grp;
    const int qd = m.n_heads * hd, kvd = m.n_kv_heads * hd, len = k.len, tid = threadIdx.x;
    if (!staged)
        stage_kv(m, a.kv, l, k, B.sK, B.sV);
    /* RoPE at position p, as rope_kernel: angle = float(p) * inv_freq[i] */
    for (int i = tid; i < half; i += CL_THREADS) {
        float s, co;
        sincosf(__fmul_rn((float)p, __ldg(m.inv_freq + i)), &s, &co);
        const int ia = m.rope_pairs == 0 ? i : 2 * i, ib = m.rope_pairs == 0 ? i + half : 2 * i + 1;
        const float q1 = B.qkv[h * hd + ia], q2 = B.qkv[h * hd + ib];
        if (k.has_new) {
            const float k1 = B.qkv[qd + g * hd + ia], k2 = B.qkv[qd + g * hd + ib];
            const float k1r = __fsub_rn(__fmul_rn(k1, co), __fmul_rn(k2, s));
            const float k2r = __fadd_rn(__fmul_rn(k2, co), __fmul_rn(k1, s));
            const float v1 = B.qkv[qd + kvd + g * hd + ia], v2 = B.qkv[qd + kvd + g * hd + ib];
            B.knew[ia] = k1r;
            B.knew[ib] = k2r;
            B.vnew[ia] = v1;
            B.vnew[ib] = v2;
            B.sK[(len - 1) * hd + ia] = k1r;
            B.sK[(len - 1) * hd + ib] = k2r;
            B.sV[(len - 1) * hd + ia] = v1;
            B.sV[(len - 1) * hd + ib] = v2;
        }
        B.q[ia] = __fsub_rn(__fmul_rn(q1, co), __fmul_rn(q2, s));
        B.q[ib] = __fadd_rn(__fmul_rn(q2, co), __fmul_rn(q1, s));
    }
    fused_copies_wait();
    __syncthreads();
    /* the group's first query head stores the new row in the cache */
    if (k.has_new && h % grp == 0)
        for (int i = tid; i < hd; i += CL_THREADS) {
            const int64_t at = ((int64_t)l * a.kv.layer_rows + p) * kvd + g * hd + i;
            a.kv.k[at] = B.knew[i];
            a.kv.v[at] = B.vnew[i];
        }
    /* Warp w takes positions w, w + CL_WARPS, ... of the chunk (lane e holds elements e,
     * e + 32, ... of a row): their scores, their softmax over the warp's own positions
     * (max, sum) and their V sum, with no barrier of the block between; the warps are then
     * combined in a fixed order, as flash-decoding combines chunks. */
    const int lane = tid & 31, warp = tid >> 5;
    float sc[CL_POS_A_WARP];
#pragma unroll
    for (int t = 0; t < CL_POS_A_WARP; t++) {
        const int j = warp + t * CL_WARPS;
        float acc = 0.0f;
        if (j < len)
            for (int e = lane; e < hd; e += 32)
                acc = fmaf(B.q[e], B.sK[j * hd + e], acc);
        sc[t] = acc;
    }
    const float scale = rsqrtf((float)hd);
    float mw = -INFINITY;
#pragma unroll
    for (int t = 0; t < CL_POS_A_WARP; t++) {
        sc[t] = cuk_warp_sum(sc[t]) * scale;
        if (warp + t * CL_WARPS < len)
            mw = fmaxf(mw, sc[t]);
    }
    float sw = 0.0f;
#pragma unroll
    for (int t = 0; t < CL_POS_A_WARP; t++) {
        sc[t] = warp + t * CL_WARPS < len ? expf(sc[t] - mw) : 0.0f;
        sw += sc[t];
    }
    for (int e = lane; e < hd; e += 32) {
        float acc = 0.0f;
#pragma unroll
        for (int t = 0; t < CL_POS_A_WARP; t++)
            if (warp + t * CL_WARPS < len)
                acc = fmaf(sc[t], B.sV[(warp + t * CL_WARPS) * hd + e], acc);
        B.wv[warp * hd + e] = acc;
    }
    if (lane == 0) {
        B.wstat[2 * warp] = mw; /* -inf for a warp with no position: weight 0 below */
        B.wstat[2 * warp + 1] = sw;
    }
    __syncthreads();
    const int pf = cl_part_floats(hd), p4 = pf / 4;
    for (int i = tid; i < pf; i += CL_THREADS) {
        float mx = -INFINITY;
        for (int w = 0; w < CL_WARPS; w++)
            mx = fmaxf(mx, B.wstat[2 * w]);
        float acc = 0.0f;
        if (i < hd || i == hd + 1)
            for (int w = 0; w < CL_WARPS; w++)
                acc = fmaf(expf(B.wstat[2 * w] - mx), i < hd ? B.wv[w * hd + i] : B.wstat[2 * w + 1], acc);
        B.ho[i] = i == hd ? mx : i < hd + 2 ? acc : 0.0f; /* hd sums, max, sum, padding */
    }
    __syncthreads();
    /* to every block, 16 bytes a store */
    float4 *dst = reinterpret_cast<float4 *>(B.part + ((int64_t)h * a.max_chunks + k.c) * pf);
    for (int idx = tid; idx < p4 * ranks; idx += CL_THREADS)
        cluster.map_shared_rank(dst, idx / p4)[idx % p4] = reinterpret_cast<const float4 *>(B.ho)[idx % p4];
    __syncthreads(); /* the buffers serve the block's next task */
}

/* Stages of a trace: what ended at each clock: stage k's barrier (k), its work before the
 * barrier (CL_STAGE_WORK + k), or the start (CL_STAGE_START). */
#define CL_STAGE_START 9
#define CL_STAGE_WORK 10

__device__ __forceinline__ void cl_trace(const ClusterArgs &a, int rank, int &n, int stage)
{
    if (a.trace && rank == 0 && threadIdx.x == 0 && n < a.trace_cap) {
        a.trace[2 * n] = stage;
        a.trace[2 * n + 1] = clock64();
        n++;
    }
}

__device__ __forceinline__ void cl_sync(const cg::cluster_group &cluster, const ClusterArgs &a, int rank, int &n,
                                        int stage)
{
    cl_trace(a, rank, n, CL_STAGE_WORK + stage);
    cluster.sync();
    cl_trace(a, rank, n, stage);
}

/* Rows of the LM head each block takes: with helper clusters, an even share of the
 * vocabulary for each helper block and none for the first cluster (the LM head is its
 * longest stage: it streams its share from L2, the helpers hold theirs); alone, the first
 * cluster's blocks share it. */
__host__ __device__ static inline int cl_lm_share(int vocab, int ranks, int clusters)
{
    return cl_share(vocab, clusters > 1 ? (clusters - 1) * ranks : ranks);
}

/* One tagged word of the exchange: stored whole (single-copy atomic), at the GPU's scope. */
__device__ __forceinline__ void cl_put(unsigned long long *word, unsigned tag, unsigned payload)
{
    const unsigned long long w = (unsigned long long)tag << 32 | payload;
    asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(word), "l"(w) : "memory");
}

__device__ __forceinline__ unsigned long long cl_word(const unsigned long long *word)
{
    unsigned long long w;
    asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(w) : "l"(word) : "memory");
    return w;
}

/* *word's payload, once its tag is tag. */
__device__ __forceinline__ unsigned cl_await(const unsigned long long *word, unsigned tag)
{
    unsigned long long w;
    do
        w = cl_word(word);
    while ((unsigned)(w >> 32) != tag);
    return (unsigned)w;
}

/* The best of the bests that blocks [b0, b1) posted under tag, for the whole block: warp w
 * waits for blocks b0 + 32w .. (a lane's two words loaded together: one trip through L2
 * once they are there), reduces them, and after a barrier of the block every thread
 * reduces the warps' bests from shared memory (red_v, red_i: CL_REDUCE_WARPS each). */
__device__ __forceinline__ void cl_reduce_bests(const ClusterArgs &a, int b0, int b1, unsigned tag, float *red_v,
                                                int *red_i, float &gv, int &gi)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (b1 - b0 + 31) / 32;
    if (warp < warps) {
        const int b = b0 + 32 * warp + lane;
        float v = -INFINITY;
        int i = INT_MAX;
        if (b < b1) {
            unsigned long long wv, wi;
            do {
                wv = cl_word(a.mail_best + 2 * b);
                wi = cl_word(a.mail_best + 2 * b + 1);
            } while ((unsigned)(wv >> 32) != tag || (unsigned)(wi >> 32) != tag);
            v = __uint_as_float((unsigned)wv);
            i = (int)(unsigned)wi;
        }
        for (int off = 16; off > 0; off >>= 1)
            fused_better(v, i, __shfl_xor_sync(0xffffffffu, v, off), __shfl_xor_sync(0xffffffffu, i, off));
        if (lane == 0) {
            red_v[warp] = v;
            red_i[warp] = i;
        }
    }
    __syncthreads();
    gv = -INFINITY;
    gi = INT_MAX;
    for (int w = 0; w < warps; w++)
        fused_better(gv, gi, red_v[w], red_i[w]);
}

/* The block's best (value, index) of its warps' bests (every warp's lane 0 passes its
 * own), posted by thread 0 in the block's words of the exchange under tag. */
__device__ __forceinline__ void cl_block_best(const ClusterArgs &a, float bv, int bi, float *warp_v, int *warp_i,
                                              unsigned tag)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        warp_v[warp] = bv;
        warp_i[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
        float wv = lane < CL_WARPS ? warp_v[lane] : -INFINITY;
        int wi = lane < CL_WARPS ? warp_i[lane] : INT_MAX;
        for (int off = 16; off > 0; off >>= 1)
            fused_better(wv, wi, __shfl_xor_sync(0xffffffffu, wv, off), __shfl_xor_sync(0xffffffffu, wi, off));
        if (lane == 0) {
            cl_put(a.mail_best + 2 * blockIdx.x, tag, __float_as_uint(wv));
            cl_put(a.mail_best + 2 * blockIdx.x + 1, tag, (unsigned)wi);
        }
    }
}

/* A helper cluster's block (every cluster but the first): its share of the LM head stays
 * in its shared memory for the launch; for each step it waits for the residual stream x
 * after the last layer, each element posted by the first cluster's block that adds its
 * down row (thread 0 watches the first word, then each thread takes its own), applies the
 * final norm as cl_norm does there, takes its rows' dot products (four rows of a warp at
 * once, each summed as cl_dots sums a row) and posts its best. */
__device__ void cl_lm_helper(const ClusterArgs &a, int ranks, __nv_bfloat16 *lm, float *x, float *xn, float *norm,
                             float *warp_v, int *warp_i)
{
    const augur_fused_model &m = a.m;
    const int dim = m.dim, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int share = cl_lm_share(m.vocab, ranks, gridDim.x / ranks),
              lo = min(m.vocab, ((int)blockIdx.x - ranks) * share), hi = min(m.vocab, lo + share);
    const __nv_bfloat16 *src = static_cast<const __nv_bfloat16 *>(m.lm_head);
    cl_copy_rows(lm, hi - lo, dim, [&](int r) { return src + (int64_t)(lo + r) * dim; });
    cl_copy_floats(norm, m.final_norm, dim);
    fused_copies_wait();
    __syncthreads();
    for (int s = 0; s < a.steps; s++) {
        const unsigned tag = a.seq + (unsigned)s + 1;
        if (threadIdx.x == 0)
            cl_await(a.mail_x, tag);
        __syncthreads();
        for (int i = threadIdx.x; i < dim; i += CL_THREADS)
            x[i] = __uint_as_float(cl_await(a.mail_x + i, tag));
        __syncthreads();
        cl_norm(xn, x, norm, dim, m.eps);
        float bv = -INFINITY;
        int bi = INT_MAX;
        for (int base = lo + 4 * warp; base < hi; base += 4 * CL_WARPS) {
            float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int c = lane * 8; c < dim; c += 32 * 8)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    if (base + j < hi)
                        acc[j] = dot8(*reinterpret_cast<const uint4 *>(lm + (int64_t)(base + j - lo) * dim + c), xn + c,
                                      acc[j]);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const float v = cuk_warp_sum(acc[j]);
                if (base + j < hi) {
                    fused_better(bv, bi, v, base + j);
                    if (a.logits && lane == 0)
                        a.logits[(int64_t)s * m.vocab + base + j] = v;
                }
            }
        }
        cl_block_best(a, bv, bi, warp_v, warp_i, tag);
    }
}

/* The LM head rows of a warp's group at base, bounded by hi (NULL past it). */
__device__ __forceinline__ void cl_lm_rows(const augur_fused_model &m, int base, int hi, const __nv_bfloat16 **row)
{
#pragma unroll
    for (int j = 0; j < FUSED_LM_ROWS; j++)
        row[j] = base + j < hi ? static_cast<const __nv_bfloat16 *>(m.lm_head) + (int64_t)(base + j) * m.dim : nullptr;
}

__global__ void __launch_bounds__(CL_THREADS, 1) fused_cluster_kernel(const __grid_constant__ ClusterArgs a)
{
    extern __shared__ float4 cl_smem4[];
    __shared__ float warp_v[CL_WARPS];
    __shared__ int warp_i[CL_WARPS];
    __shared__ float red_v[CL_REDUCE_WARPS];
    __shared__ int red_i[CL_REDUCE_WARPS];
    const cg::cluster_group cluster = cg::this_cluster();
    const augur_fused_model &m = a.m;
    const int ranks = (int)cluster.num_blocks(), rank = (int)cluster.block_rank();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int dim = m.dim, hd = m.head_dim, hidden = m.hidden, qd = m.n_heads * hd;
    const int nqkv = qd + 2 * m.n_kv_heads * hd;
    const ClLayout &L = a.L;
    float *sm = reinterpret_cast<float *>(cl_smem4);
    float *x = sm + L.x, *xn = sm + L.xn, *h_in = sm + L.h, *coef = sm + L.coef,
          *norms = sm + L.norms, *part = sm + L.part;
    const ClAttBufs B = {sm + L.qkv, part,      sm + L.q,  sm + L.knew, sm + L.vnew,
                         sm + L.ho,  sm + L.wstat, sm + L.wv, sm + L.sK,   sm + L.sV};
    __nv_bfloat16 *W = reinterpret_cast<__nv_bfloat16 *>(sm + L.w);
    if ((int)blockIdx.x >= ranks) { /* a helper cluster: the LM head only */
        cl_lm_helper(a, ranks, W, x, xn, norms + 2 * m.n_layers * dim, warp_v, warp_i);
        return;
    }
    const ClSlice sq = cl_slice(nqkv, L.rows_qkv, rank), so = cl_slice(dim, L.rows_o, rank),
                  sf = cl_slice(hidden, L.feats, rank), sd = cl_slice(dim, L.rows_down, rank),
                  sv = (int)gridDim.x > ranks ? ClSlice{0, 0} : cl_slice(m.vocab, cl_lm_share(m.vocab, ranks, 1), rank);
    int n_trace = 0;
    cl_trace(a, rank, n_trace, CL_STAGE_START);
    cl_load_weights(m, L, rank, W, norms);
    cluster.sync(); /* every block has started: its shared memory may be written */

    const __nv_bfloat16 *emb = static_cast<const __nv_bfloat16 *>(m.embedding);
    const int rows = a.n + a.steps - 1;
    int token = 0;
    const __nv_bfloat16 *row[FUSED_LM_ROWS];
    float o[FUSED_LM_ROWS];
    const bool helped = (int)gridDim.x > ranks;
    for (int r = 0; r < rows; r++) {
        const int p = a.start + r;
        const bool emits = r >= a.n - 1;
        const int s = r - (a.n - 1); /* the step, where the row emits */
        const unsigned tag = a.seq + (unsigned)s + 1;
        const int chunks = p / CUK_FUSED_CHUNK + 1, tasks = m.n_heads * chunks;
        if (r < a.n)
            token = a.ids[r];
        for (int i = tid; i < dim; i += CL_THREADS)
            x[i] = __bfloat162float(emb[(int64_t)token * dim + i]);
        __syncthreads();
        for (int l = 0; l < m.n_layers; l++) {
            const bool last = l + 1 == m.n_layers;
            const __nv_bfloat16 *wl = W + (int64_t)l * L.w_layer;
            /* A: norm; the block's rows of q|k|v, to every block */
            {
                const ClNormed in = {x, norms + 2 * l * dim, cl_rnorm(x, dim, m.eps)};
                cl_product(wl, sq, dim, in, [&](int f, float v) { cl_send(cluster, B.qkv, f, v, ranks); });
            }
            if (rank < tasks)
                stage_kv(m, a.kv, l, att_task(rank, chunks, p), B.sK, B.sV);
            cl_sync(cluster, a, rank, n_trace, 0);
            /* B: attention */
            for (int t = rank; t < tasks; t += ranks)
                cl_attention(a, cluster, ranks, l, att_task(t, chunks, p), p, t == rank, B);
            if (r == 0 && l == 0) { /* the later layers' weights (cl_load_weights), where no task waited */
                fused_copies_wait();
                __syncthreads();
            }
            cl_sync(cluster, a, rank, n_trace, 1);
            if (!emits && last)
                break; /* a fed row's last MLP reaches only the logits it does not want */
            /* C: the chunks combined per head (every block alike), the block's rows of W_o */
            const int pf = cl_part_floats(hd);
            for (int h = tid; h < m.n_heads; h += CL_THREADS) {
                const float *ph = part + (int64_t)h * a.max_chunks * pf;
                float mx = -INFINITY, sum = 0.0f;
                for (int c = 0; c < chunks; c++)
                    mx = fmaxf(mx, ph[c * pf + hd]);
                for (int c = 0; c < chunks; c++)
                    sum = fmaf(expf(ph[c * pf + hd] - mx), ph[c * pf + hd + 1], sum);
                for (int c = 0; c < chunks; c++)
                    coef[h * a.max_chunks + c] = expf(ph[c * pf + hd] - mx) / sum;
            }
            __syncthreads();
            for (int i = tid; i < qd; i += CL_THREADS) {
                const int h = i / hd, e = i % hd;
                const float *ph = part + (int64_t)h * a.max_chunks * pf;
                float acc = 0.0f;
                for (int c = 0; c < chunks; c++)
                    acc = fmaf(coef[h * a.max_chunks + c], ph[c * pf + e], acc);
                xn[i] = acc;
            }
            __syncthreads();
            cl_product(wl + L.w_o, so, qd, ClPlain{xn}, [&](int f, float v) { cl_send_add(cluster, x, f, v, ranks); });
            cl_sync(cluster, a, rank, n_trace, 2);
            /* D: norm; the block's features of gate|up, SwiGLU */
            {
                const ClNormed in = {x, norms + (2 * l + 1) * dim, cl_rnorm(x, dim, m.eps)};
                for (int f0 = sf.lo + warp; f0 < sf.hi; f0 += 2 * CL_WARPS) {
                    const int n = cl_group(f0, sf.hi, 2);
                    float v[4]; /* gate, up of feature f0, then of f0 + CL_WARPS */
                    cl_dots<4>(
                        [&](int j) {
                            return wl + L.w_gu + (int64_t)(2 * (f0 + (j >> 1) * CL_WARPS - sf.lo) + (j & 1)) * dim;
                        },
                        2 * n, in, dim, v);
                    for (int k = 0; k < n; k++) {
                        const float gt = v[2 * k];
                        cl_send(cluster, h_in, f0 + k * CL_WARPS, gt / (1.0f + expf(-gt)) * v[2 * k + 1], ranks);
                    }
                }
            }
            cl_sync(cluster, a, rank, n_trace, 3);
            /* E: the block's rows of down, added to x */
            cl_product(wl + L.w_down, sd, hidden, ClPlain{h_in}, [&](int f, float v) {
                const float sum = cl_send_add(cluster, x, f, v, ranks);
                if (last && helped && lane == 0) /* x after the last layer, to the helpers */
                    cl_put(a.mail_x + f, tag, __float_as_uint(sum));
            });
            cl_sync(cluster, a, rank, n_trace, 4);
        }
        if (!emits)
            continue;
        /* the LM head: with helper clusters, they took x as stage E made it and take
         * the rows; alone, each block applies the final norm and takes its rows (read
         * from L2). Every block then reduces the posted bests alike. */
        if (!helped) {
            cl_norm(xn, x, norms + 2 * m.n_layers * dim, dim, m.eps);
            const uint4 none[FUSED_LM_ROWS] = {};
            float bv = -INFINITY;
            int bi = INT_MAX;
            for (int base = sv.lo + warp * FUSED_LM_ROWS; base < sv.hi; base += CL_WARPS * FUSED_LM_ROWS) {
                cl_lm_rows(m, base, sv.hi, row);
                /* no rows loaded ahead (prefetch_rows): the registers they would hold
                 * past the barrier made the kernel spill, and this path (no helper
                 * clusters) is the fallback */
                warp_dots<FUSED_LM_ROWS>(row, xn, dim, o, none, false);
#pragma unroll
                for (int j = 0; j < FUSED_LM_ROWS; j++)
                    if (row[j]) {
                        fused_better(bv, bi, o[j], base + j);
                        if (a.logits && lane == 0)
                            a.logits[(int64_t)s * m.vocab + base + j] = o[j];
                    }
            }
            cl_block_best(a, bv, bi, warp_v, warp_i, tag);
        }
        cl_trace(a, rank, n_trace, CL_STAGE_WORK + 5);
        float gv;
        int gi;
        cl_reduce_bests(a, helped ? ranks : 0, helped ? (int)gridDim.x : ranks, tag, red_v, red_i, gv, gi);
        cl_trace(a, rank, n_trace, 5);
        token = gi == INT_MAX ? 0 : gi;
        if (rank == 0 && tid == 0)
            a.out[s] = token;
        /* red_v, red_i are read by every thread above: the next step's writers wait behind
         * at least one barrier of the block (its layers' stages) */
    }
}

static size_t cl_smem_bytes(const augur_fused_model *m, int layer_rows, int ranks)
{
    const int max_chunks = (layer_rows + CUK_FUSED_CHUNK - 1) / CUK_FUSED_CHUNK;
    return cl_layout(*m, max_chunks, ranks).bytes;
}

/* Static shared memory of the kernel (reductions, the token), besides the dynamic. */
#define CL_STATIC_SMEM 1024

extern "C" const char *cuk_fused_cluster_unfit(const augur_fused_model *m, int layer_rows, size_t smem_limit, int ranks)
{
    const char *why = fused_shape_unfit(m, layer_rows);
    if (why)
        return why;
    if (ranks < 2 || ranks > CUK_FUSED_CLUSTER_MAX)
        return "the cluster size is outside 2..16";
    if (cl_smem_bytes(m, layer_rows, ranks) + CL_STATIC_SMEM > smem_limit)
        return "its layers' weights, shared over the cluster, with the attention buffers exceed a block's shared "
               "memory";
    return NULL;
}

static cudaLaunchConfig_t cl_config(const augur_fused_model *m, int layer_rows, int ranks, int clusters,
                                    cudaStream_t stream, cudaLaunchAttribute *attr, bool cooperative)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(ranks * clusters);
    cfg.blockDim = dim3(CL_THREADS);
    cfg.dynamicSmemBytes = cl_smem_bytes(m, layer_rows, ranks);
    cfg.stream = stream;
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = ranks;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    attr[1].id = cudaLaunchAttributeCooperative;
    attr[1].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = cooperative ? 2 : 1;
    return cfg;
}

/* Whether a helper's share of the LM head fits where the first cluster keeps its weights. */
static bool cl_helpers_fit(const augur_fused_model *m, int layer_rows, int ranks, int clusters)
{
    const int max_chunks = (layer_rows + CUK_FUSED_CHUNK - 1) / CUK_FUSED_CHUNK;
    const ClLayout L = cl_layout(*m, max_chunks, ranks);
    return (size_t)cl_lm_share(m->vocab, ranks, clusters) * m->dim <= (size_t)m->n_layers * L.w_layer;
}

/* Lets the kernel take as much dynamic shared memory as a block of the current device may
 * have. The attribute is the function's, for every model and launch, so it is only ever
 * set to this most (never a model's own size, which would refuse a larger model's launch
 * later), once per backend (cuk_cluster_launch_state) instead of before every launch. */
static cudaError_t cl_allow_smem(void)
{
    int device = 0, optin = 0;
    cudaFuncAttributes fa;
    cudaError_t rc = cudaGetDevice(&device);
    if (rc == cudaSuccess)
        rc = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (rc == cudaSuccess)
        rc = cudaFuncGetAttributes(&fa, fused_cluster_kernel);
    if (rc == cudaSuccess)
        rc = cudaFuncSetAttribute(fused_cluster_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  optin - (int)fa.sharedSizeBytes);
    if (rc == cudaSuccess)
        rc = cudaFuncSetAttribute(fused_cluster_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    return rc;
}

extern "C" int cuk_fused_cluster_groups(const augur_fused_model *m, int layer_rows, int ranks, int want)
{
    cudaLaunchAttribute attr[2];
    const cudaLaunchConfig_t cfg = cl_config(m, layer_rows, ranks, 1, 0, attr, false);
    if (cl_allow_smem() != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    int clusters = 0;
    if (cudaOccupancyMaxActiveClusters(&clusters, fused_cluster_kernel, &cfg) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    if (clusters < 1)
        return 0;
    int g = want > 0 && want < clusters ? want : clusters;
    if (g > CUK_FUSED_CLUSTER_GROUPS_MAX)
        g = CUK_FUSED_CLUSTER_GROUPS_MAX;
    return g > 1 && !cl_helpers_fit(m, layer_rows, ranks, g) ? 1 : g;
}

extern "C" size_t cuk_fused_cluster_scratch_bytes(const augur_fused_model *m, int blocks)
{
    return ((size_t)m->dim + 2 * (size_t)blocks) * sizeof(unsigned long long);
}

extern "C" cudaError_t cuk_fused_cluster_greedy(cudaStream_t stream, const augur_fused_model *m,
                                                const augur_fused_cache *kv, const int32_t *ids, int n, int start,
                                                int steps, int32_t *out, float *logits, int ranks, int clusters,
                                                void *scratch, size_t scratch_bytes, cuk_cluster_launch_state *state,
                                                long long *trace, int trace_cap)
{
    const int blocks = ranks * clusters;
    if (n < 1 || n > AUGUR_FUSED_MAX_FEED || steps < 1 || ranks < 2 || ranks > CUK_FUSED_CLUSTER_MAX || clusters < 1 ||
        clusters > CUK_FUSED_CLUSTER_GROUPS_MAX ||
        (clusters > 1 && !cl_helpers_fit(m, kv->layer_rows, ranks, clusters)) ||
        scratch_bytes < cuk_fused_cluster_scratch_bytes(m, blocks))
        return cudaErrorInvalidValue;
    ClusterArgs a = {};
    fused_chain_args(a, m, kv, ids, n, start, steps, out, logits, trace, trace_cap);
    a.L = cl_layout(*m, a.max_chunks, ranks);
    a.mail_x = static_cast<unsigned long long *>(scratch);
    a.mail_best = a.mail_x + m->dim;
    /* The exchange's words are zeroed (tag 0, never a step's) when they are new to the
     * state, or when its tags would wrap; after that each launch's tags follow the last's. */
    cudaError_t rc;
    if (!state || state->exchange != scratch || state->exchange_bytes != scratch_bytes ||
        state->seq > UINT_MAX - (unsigned)steps) {
        if ((rc = cudaMemsetAsync(scratch, 0, scratch_bytes, stream)) != cudaSuccess)
            return rc;
        if (state) {
            state->exchange = scratch;
            state->exchange_bytes = scratch_bytes;
            state->seq = 0;
        }
    }
    a.seq = state ? state->seq : 0;
    if (!state || !state->smem_allowed) {
        if ((rc = cl_allow_smem()) != cudaSuccess)
            return rc;
        if (state)
            state->smem_allowed = 1;
    }
    const bool cooperative = clusters > 1 && !(state && state->cooperative_refused);
    cudaLaunchAttribute attr[2];
    cudaLaunchConfig_t cfg = cl_config(m, kv->layer_rows, ranks, clusters, stream, attr, cooperative);
    rc = cudaLaunchKernelEx(&cfg, fused_cluster_kernel, a);
    if (rc != cudaSuccess && cooperative) {
        /* a cooperative cluster launch refused (CUDA MPS may): the clusters wait on each
         * other only for the LM head, and cuk_fused_cluster_groups asked for no more than
         * fit at once */
        cudaGetLastError();
        cfg.numAttrs = 1;
        rc = cudaLaunchKernelEx(&cfg, fused_cluster_kernel, a);
        if (rc == cudaSuccess && state)
            state->cooperative_refused = 1;
    }
    if (rc == cudaSuccess && state)
        state->seq += (unsigned)steps;
    return rc;
}
