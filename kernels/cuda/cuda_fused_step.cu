/* A small model's greedy steps in one cooperative launch (a draft's proposal).
 *
 * Why: a model of a few layers of width 192-384 is bound by kernel boundaries, not bytes.
 * Its forward as separate kernels is ~10 launches a layer at ~2 us each whatever their
 * size (perf-notes change 16: the shipped draft's step 95 us for 5.6 MB of weights, all
 * of them in L2). Here one persistent grid runs every row of a chain: the stages of a
 * layer are separated by grid-wide barriers (grid_barrier; a stage with its barrier costs
 * 2.5-5 us on an H200, perf-notes change 17), and whatever is cheap enough to compute
 * redundantly is computed by every block instead of passed through one: each block keeps
 * its own copy of the residual stream x in shared memory and applies every residual add
 * and RMSNorm itself, in the same order, so all copies stay identical. A layer is four
 * stages:
 *
 *   A  x += the last down projection; xn = rmsnorm(x); q|k|v = xn W^T   (warps of the grid)
 *   B  attention, one task per (query head, chunk of 64 positions): RoPE of q (and of the
 *      new k, which the chunk holding the new position also stores in the cache with v),
 *      scores, softmax over the chunk, its V sum, and that unnormalised output times the
 *      head's columns of W_o, with the chunk's (max, sum)
 *   D  x += the chunks' W_o products, rescaled and normalised per head (flash-decoding's
 *      combine, after W_o since it is linear); xn = rmsnorm(x); h = silu(xn Wg^T) * xn Wu^T
 *   E  the down projection of h
 *
 * and a row that yields a token ends with the LM head (each block's best logit, then every
 * block reduces the blocks' bests alike and feeds the token to the next row).
 *
 * Exactness: nothing here is shared with the target or with the forward of separate
 * kernels. The sums are fp32 FMA over bf16 weights in a fixed order (deterministic: the
 * same tokens every run), not the tensor-core GEMV's three-term split, so logits agree
 * with the separate kernels' to about fp32 rounding and a near-tie may pick the other
 * token. That only ever changes what a draft proposes, never what the target accepts. */
#include <limits.h>

#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_fused_common.h"
#include "kernels/cuda/cuda_kernels.h"

#define FUSED_THREADS 256
#define FUSED_WARPS (FUSED_THREADS / 32)
#define FUSED_ROWS 4 /* weight rows a warp keeps in flight */

/* Stage B's scores take four threads a position: a task is a block's chunk. */
static_assert(FUSED_THREADS == 4 * CUK_FUSED_CHUNK, "a fused attention task is 4 threads a position");

struct FusedArgs {
    augur_fused_model m;
    augur_fused_cache kv;
    int ids[AUGUR_FUSED_MAX_FEED]; /* the tokens fed by the first row(s), by value: no upload */
    int n, start, steps;
    int32_t *out;
    float *logits;
    long long *trace; /* NULL, or [2 * trace_cap]: (stage, clock64) of block 0 after each stage */
    int trace_cap;
    /* scratch (global; written by one stage, read by the next, across blocks) */
    float *qkv;    /* [(n_heads + 2 n_kv_heads) head_dim] */
    float *part;   /* [n_heads][max_chunks][dim]: a chunk's unnormalised output times W_o */
    float *ml;     /* [n_heads][max_chunks][2]: the chunk's max score and sum of exponentials */
    float *h;      /* [hidden] */
    float *d;      /* [dim] */
    float *best_v; /* [gridDim.x] */
    int *best_i;
    unsigned *barrier; /* arrivals at the grid barrier, zeroed before the launch */
    int max_chunks;
};

/* The grid barrier: every block's thread 0 adds its arrival with release semantics (after
 * the block's barrier, so the whole block's writes go with it) and polls the count with
 * acquire loads until the grid has arrived. Lighter than cooperative groups' grid sync,
 * whose full fences before and after cost more than the release/acquire pair (the count
 * only grows: the k-th barrier waits for k * gridDim.x arrivals). The launch is still
 * cooperative: all blocks resident, or a barrier would wait forever. */
__device__ __forceinline__ void grid_barrier(unsigned *count, unsigned &passed)
{
    __syncthreads();
    passed += gridDim.x;
    if (threadIdx.x == 0) {
        unsigned now;
        asm volatile("atom.add.release.gpu.global.u32 %0, [%1], 1;" : "=r"(now) : "l"(count) : "memory");
        for (now += 1; (int)(now - passed) < 0;)
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(now) : "l"(count) : "memory");
    }
    __syncthreads();
}

/* Floats of the combine's coefficients and (max, sum) pairs, rounded to whole float4 so
 * that the staged K and V after them are 16-byte aligned. */
__host__ __device__ static inline int fused_ml_floats(int n_heads, int max_chunks)
{
    return (3 * n_heads * max_chunks + 3) / 4 * 4;
}

/* Floats of dynamic shared memory: x, the product's input, q, k, v, the head's output,
 * the chunk's weights, the V sums' partials, the combine's coefficients and (max, sum)
 * pairs, and a chunk's K and V. */
static size_t fused_smem_floats(const augur_fused_model *m, int max_chunks)
{
    const int in = m->hidden > m->dim ? m->hidden : m->dim;
    return (size_t)m->dim + (size_t)in + 4 * (size_t)m->head_dim + CUK_FUSED_CHUNK + FUSED_THREADS +
           (size_t)fused_ml_floats(m->n_heads, max_chunks) + 2 * (size_t)CUK_FUSED_CHUNK * m->head_dim;
}

/* Most 8-element weight vectors of one head's W_o columns (head_dim <= 128). */
#define FUSED_WO_VECS (128 / 8)
/* Partials the combine loads at once. */
#define FUSED_COMBINE_LOADS 8

/* Data written inside this launch by other blocks: read through L2, never the
 * non-coherent path or a stale L1 line. */
__device__ __forceinline__ float ld_shared_global(const float *p)
{
    return __ldcg(p);
}

/* The rows of each product a warp takes at base (NULL past the end). */
__device__ __forceinline__ void qkv_rows(const augur_fused_model &m, int l, int base, const __nv_bfloat16 **row)
{
    const augur_fused_layer &L = m.layers[l];
    const int qd = m.n_heads * m.head_dim, kvd = m.n_kv_heads * m.head_dim;
#pragma unroll
    for (int j = 0; j < FUSED_ROWS; j++) {
        const int f = base + j;
        const void *w = f < qd ? L.wq : f < qd + kvd ? L.wk : L.wv;
        const int fr = f < qd ? f : f < qd + kvd ? f - qd : f - qd - kvd;
        row[j] = f < qd + 2 * kvd ? static_cast<const __nv_bfloat16 *>(w) + (int64_t)fr * m.dim : nullptr;
    }
}

/* gate and up of features base, base + 1: rows (gate, up, gate, up) */
__device__ __forceinline__ void gate_up_rows(const augur_fused_model &m, int l, int base, const __nv_bfloat16 **row)
{
    const augur_fused_layer &L = m.layers[l];
#pragma unroll
    for (int j = 0; j < FUSED_ROWS / 2; j++) {
        const bool in = base + j < m.hidden;
        row[2 * j] = in ? static_cast<const __nv_bfloat16 *>(L.w_gate) + (int64_t)(base + j) * m.dim : nullptr;
        row[2 * j + 1] = in ? static_cast<const __nv_bfloat16 *>(L.w_up) + (int64_t)(base + j) * m.dim : nullptr;
    }
}

__device__ __forceinline__ void down_rows(const augur_fused_model &m, int l, int base, const __nv_bfloat16 **row)
{
#pragma unroll
    for (int j = 0; j < FUSED_ROWS; j++)
        row[j] = base + j < m.dim
                     ? static_cast<const __nv_bfloat16 *>(m.layers[l].w_down) + (int64_t)(base + j) * m.hidden
                     : nullptr;
}

__device__ __forceinline__ void lm_rows(const augur_fused_model &m, int base, const __nv_bfloat16 **row)
{
#pragma unroll
    for (int j = 0; j < FUSED_LM_ROWS; j++)
        row[j] =
            base + j < m.vocab ? static_cast<const __nv_bfloat16 *>(m.lm_head) + (int64_t)(base + j) * m.dim : nullptr;
}

/* xn = rmsnorm(x) * w over dim, by the block (x already holds this stage's residual). */
__device__ __forceinline__ void block_norm(float *xn, const float *x, const float *w, int dim, float eps, float *red)
{
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += FUSED_THREADS)
        ss = fmaf(x[i], x[i], ss);
    ss = cuk_block_sum(ss, red);
    const float r = rsqrtf(ss / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += FUSED_THREADS)
        xn[i] = x[i] * r * __ldg(w + i);
    __syncthreads();
}

/* A thread's first row of the task's W_o product (output feature threadIdx.x < dim). */
__device__ __forceinline__ void prefetch_wo(const augur_fused_model &m, int l, int h, uint4 (&wo_pre)[FUSED_WO_VECS])
{
    const int qd = m.n_heads * m.head_dim, i = threadIdx.x;
    const __nv_bfloat16 *w = static_cast<const __nv_bfloat16 *>(m.layers[l].wo) + (int64_t)i * qd + h * m.head_dim;
#pragma unroll
    for (int u = 0; u < FUSED_WO_VECS; u++)
        wo_pre[u] =
            i < m.dim && u * 8 < m.head_dim ? __ldg(reinterpret_cast<const uint4 *>(w) + u) : make_uint4(0, 0, 0, 0);
}

/* Stage B's task k of layer l, the new row at position p. staged: its K, V copies and
 * W_o rows were started before the barrier (the block's first task); otherwise they
 * start here. Every global read of a phase is issued before any is used. */
__device__ __forceinline__ void attention_task(const FusedArgs &a, int l, const AttTask &k, int p, bool staged,
                                               uint4 (&wo_pre)[FUSED_WO_VECS], float *sm_q, float *sm_k, float *sm_v,
                                               float *sm_e, float *sm_part, float *sm_out, float *sK, float *sV,
                                               float *red)
{
    const augur_fused_model &m = a.m;
    const int hd = m.head_dim, half = hd / 2, grp = m.n_heads / m.n_kv_heads, h = k.h, g = h / grp;
    const int qd = m.n_heads * hd, kvd = m.n_kv_heads * hd, len = k.len;
    const int tid = threadIdx.x;
    if (!staged) {
        stage_kv(a.m, a.kv, l, k, sK, sV);
        prefetch_wo(m, l, h, wo_pre);
    }
    /* RoPE at position p, as rope_kernel: angle = float(p) * inv_freq[i] */
    for (int i = tid; i < half; i += FUSED_THREADS) {
        float s, co;
        sincosf(__fmul_rn((float)p, __ldg(m.inv_freq + i)), &s, &co);
        const int ia = m.rope_pairs == 0 ? i : 2 * i, ib = m.rope_pairs == 0 ? i + half : 2 * i + 1;
        const float q1 = ld_shared_global(a.qkv + h * hd + ia), q2 = ld_shared_global(a.qkv + h * hd + ib);
        if (k.has_new) {
            const float k1 = ld_shared_global(a.qkv + qd + g * hd + ia),
                        k2 = ld_shared_global(a.qkv + qd + g * hd + ib);
            const float v1 = ld_shared_global(a.qkv + qd + kvd + g * hd + ia);
            const float v2 = ld_shared_global(a.qkv + qd + kvd + g * hd + ib);
            const float k1r = __fsub_rn(__fmul_rn(k1, co), __fmul_rn(k2, s));
            const float k2r = __fadd_rn(__fmul_rn(k2, co), __fmul_rn(k1, s));
            sm_k[ia] = k1r;
            sm_k[ib] = k2r;
            sm_v[ia] = v1;
            sm_v[ib] = v2;
            sK[(len - 1) * hd + ia] = k1r;
            sK[(len - 1) * hd + ib] = k2r;
            sV[(len - 1) * hd + ia] = v1;
            sV[(len - 1) * hd + ib] = v2;
        }
        sm_q[ia] = __fsub_rn(__fmul_rn(q1, co), __fmul_rn(q2, s));
        sm_q[ib] = __fadd_rn(__fmul_rn(q2, co), __fmul_rn(q1, s));
    }
    fused_copies_wait();
    __syncthreads();
    /* the group's first query head stores the new row; the others take it from here */
    if (k.has_new && h % grp == 0)
        for (int i = tid; i < hd; i += FUSED_THREADS) {
            const int64_t at = ((int64_t)l * a.kv.layer_rows + p) * kvd + g * hd + i;
            a.kv.k[at] = sm_k[i];
            a.kv.v[at] = sm_v[i];
        }

    /* scores: four threads a position, a quarter of the head each, summed in a fixed order */
    const int j = tid >> 2, quarter = tid & 3, span = hd / 4;
    float s = 0.0f;
    if (j < len) {
        const float *kr = sK + j * hd + quarter * span, *q = sm_q + quarter * span;
        for (int e = 0; e < span; e++)
            s = fmaf(q[e], kr[e], s);
    }
    s += __shfl_xor_sync(0xffffffffu, s, 1);
    s += __shfl_xor_sync(0xffffffffu, s, 2);
    s *= rsqrtf((float)hd);
    const float mx = cuk_block_max(quarter == 0 && j < len ? s : -INFINITY, red);
    const float e = quarter == 0 && j < len ? expf(s - mx) : 0.0f;
    const float sum = cuk_block_sum(e, red);
    if (quarter == 0 && j < len)
        sm_e[j] = e;
    __syncthreads();

    /* V: thread (group r, element d) sums positions r, r + groups, ... in order */
    const int groups = FUSED_THREADS / hd, d = tid % hd, r = tid / hd;
    if (r < groups) {
        float acc = 0.0f;
        for (int jj = r; jj < len; jj += groups)
            acc = fmaf(sm_e[jj], sV[jj * hd + d], acc);
        sm_part[tid] = acc;
    }
    __syncthreads();
    for (int i = tid; i < hd; i += FUSED_THREADS) {
        float acc = 0.0f;
        for (int rr = 0; rr < groups; rr++)
            acc += sm_part[rr * hd + i];
        sm_out[i] = acc;
    }
    __syncthreads();

    /* the head's columns of W_o times that output: a thread per output feature */
    float *dst = a.part + ((int64_t)h * a.max_chunks + k.c) * m.dim;
    for (int i = tid; i < m.dim; i += FUSED_THREADS) {
        uint4 raw[FUSED_WO_VECS];
        if (i == tid) {
#pragma unroll
            for (int u = 0; u < FUSED_WO_VECS; u++)
                raw[u] = wo_pre[u];
        } else {
            const __nv_bfloat16 *w = static_cast<const __nv_bfloat16 *>(m.layers[l].wo) + (int64_t)i * qd + h * hd;
#pragma unroll
            for (int u = 0; u < FUSED_WO_VECS; u++)
                raw[u] = u * 8 < hd ? __ldg(reinterpret_cast<const uint4 *>(w) + u) : make_uint4(0, 0, 0, 0);
        }
        float acc = 0.0f;
#pragma unroll
        for (int u = 0; u < FUSED_WO_VECS; u++)
            if (u * 8 < hd)
                acc = dot8(raw[u], sm_out + u * 8, acc);
        dst[i] = acc;
    }
    if (tid == 0) {
        a.ml[((int64_t)h * a.max_chunks + k.c) * 2] = mx;
        a.ml[((int64_t)h * a.max_chunks + k.c) * 2 + 1] = sum;
    }
    __syncthreads(); /* the shared buffers serve the block's next task */
}

/* Stages of a trace (cuk_fused_greedy's trace): what ended at each clock: stage k's
 * barrier (k), its work before the barrier (FUSED_STAGE_WORK + k), or the start. */
#define FUSED_STAGE_START 5
#define FUSED_STAGE_WORK 10

__device__ __forceinline__ void trace_stage(const FusedArgs &a, int &n, int stage)
{
    if (a.trace && blockIdx.x == 0 && threadIdx.x == 0 && n < a.trace_cap) {
        a.trace[2 * n] = stage;
        a.trace[2 * n + 1] = clock64();
        n++;
    }
}

/* The whole chain; a is __grid_constant__: read in place (its layer table is indexed by a
 * runtime layer), never copied per thread. Before each grid barrier a block starts the
 * loads of the next stage that do not depend on the stage ending (weights, cached K and
 * V), so that after the barrier only the stage's own input is a round trip away. */
__global__ void __launch_bounds__(FUSED_THREADS, 1) fused_greedy_kernel(const __grid_constant__ FusedArgs a)
{
    extern __shared__ float4 fused_smem4[];
    __shared__ float red[32];
    __shared__ float best_v[FUSED_WARPS];
    __shared__ int best_i[FUSED_WARPS];
    __shared__ int token_sh;
    unsigned passed = 0; /* arrivals the barriers so far have waited for */
    const augur_fused_model &m = a.m;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int gwarp = blockIdx.x * FUSED_WARPS + warp, nwarps = gridDim.x * FUSED_WARPS;
    const int dim = m.dim, hd = m.head_dim, hidden = m.hidden;
    const int qd = m.n_heads * hd, kvd = m.n_kv_heads * hd;
    const int in_floats = hidden > dim ? hidden : dim;

    float *sm = reinterpret_cast<float *>(fused_smem4);
    float *x = sm, *xn = x + dim, *sm_q = xn + in_floats, *sm_k = sm_q + hd, *sm_v = sm_k + hd, *sm_out = sm_v + hd,
          *sm_e = sm_out + hd, *sm_part = sm_e + CUK_FUSED_CHUNK, *coef = sm_part + FUSED_THREADS,
          *sm_ml = coef + m.n_heads * a.max_chunks, *sK = coef + fused_ml_floats(m.n_heads, a.max_chunks),
          *sV = sK + CUK_FUSED_CHUNK * hd;

    const __nv_bfloat16 *emb = static_cast<const __nv_bfloat16 *>(m.embedding);
    const int rows = a.n + a.steps - 1;
    int token = 0, n_trace = 0;
    uint4 pre[FUSED_LM_ROWS], wo_pre[FUSED_WO_VECS];
    const __nv_bfloat16 *row[FUSED_LM_ROWS];
    float o[FUSED_LM_ROWS];
    /* the first product's first rows */
    qkv_rows(m, 0, gwarp * FUSED_ROWS, row);
    prefetch_rows<FUSED_ROWS>(row, dim, pre);
    trace_stage(a, n_trace, FUSED_STAGE_START);
    for (int r = 0; r < rows; r++) {
        const int p = a.start + r;
        const bool emits = r >= a.n - 1;
        const int chunks = p / CUK_FUSED_CHUNK + 1, tasks = m.n_heads * chunks;
        if (r < a.n)
            token = a.ids[r];
        for (int i = tid; i < dim; i += FUSED_THREADS)
            x[i] = __bfloat162float(emb[(int64_t)token * dim + i]);
        __syncthreads();
        for (int l = 0; l < m.n_layers; l++) {
            const bool last = l + 1 == m.n_layers;
            /* A: x += down; norm; q|k|v */
            if (l > 0)
                for (int i = tid; i < dim; i += FUSED_THREADS)
                    x[i] += ld_shared_global(a.d + i);
            __syncthreads();
            block_norm(xn, x, m.layers[l].attn_norm, dim, m.eps, red);
            for (int base = gwarp * FUSED_ROWS; base < qd + 2 * kvd; base += nwarps * FUSED_ROWS) {
                qkv_rows(m, l, base, row);
                warp_dots<FUSED_ROWS>(row, xn, dim, o, pre, base == gwarp * FUSED_ROWS);
                if (lane == 0)
#pragma unroll
                    for (int j = 0; j < FUSED_ROWS; j++)
                        if (row[j])
                            a.qkv[base + j] = o[j];
            }
            const bool first_task = (int)blockIdx.x < tasks;
            if (first_task) {
                const AttTask k = att_task(blockIdx.x, chunks, p);
                stage_kv(a.m, a.kv, l, k, sK, sV);
                prefetch_wo(m, l, k.h, wo_pre);
            }
            trace_stage(a, n_trace, FUSED_STAGE_WORK + 0);
            grid_barrier(a.barrier, passed);
            trace_stage(a, n_trace, 0);
            /* B: attention, and the W_o product of each task */
            for (int t = blockIdx.x; t < tasks; t += gridDim.x)
                attention_task(a, l, att_task(t, chunks, p), p, t == (int)blockIdx.x, wo_pre, sm_q, sm_k, sm_v, sm_e,
                               sm_part, sm_out, sK, sV, red);
            if (!emits && last) {
                /* a fed row's last MLP reaches only the logits it does not want */
                qkv_rows(m, 0, gwarp * FUSED_ROWS, row);
                prefetch_rows<FUSED_ROWS>(row, dim, pre);
                trace_stage(a, n_trace, FUSED_STAGE_WORK + 1);
                grid_barrier(a.barrier, passed);
                trace_stage(a, n_trace, 1);
                break;
            }
            gate_up_rows(m, l, gwarp * (FUSED_ROWS / 2), row);
            prefetch_rows<FUSED_ROWS>(row, dim, pre);
            trace_stage(a, n_trace, FUSED_STAGE_WORK + 1);
            grid_barrier(a.barrier, passed);
            trace_stage(a, n_trace, 1);
            /* D: x += the chunks' W_o products, rescaled per head; norm; gate|up and SwiGLU.
             * The partials' loads go out with the (max, sum) pairs' */
            float v[FUSED_COMBINE_LOADS];
#pragma unroll
            for (int u = 0; u < FUSED_COMBINE_LOADS; u++)
                v[u] = u < tasks && tid < dim
                           ? ld_shared_global(a.part + ((int64_t)(u / chunks) * a.max_chunks + u % chunks) * dim + tid)
                           : 0.0f;
            for (int t = tid; t < tasks; t += FUSED_THREADS) {
                const float *src = a.ml + ((int64_t)(t / chunks) * a.max_chunks + t % chunks) * 2;
                sm_ml[2 * t] = ld_shared_global(src);
                sm_ml[2 * t + 1] = ld_shared_global(src + 1);
            }
            __syncthreads();
            for (int h = tid; h < m.n_heads; h += FUSED_THREADS) {
                const float *mlh = sm_ml + 2 * h * chunks;
                float mx = -INFINITY, sum = 0.0f;
                for (int c = 0; c < chunks; c++)
                    mx = fmaxf(mx, mlh[2 * c]);
                for (int c = 0; c < chunks; c++)
                    sum = fmaf(expf(mlh[2 * c] - mx), mlh[2 * c + 1], sum);
                for (int c = 0; c < chunks; c++)
                    coef[h * chunks + c] = expf(mlh[2 * c] - mx) / sum;
            }
            __syncthreads();
            for (int i = tid; i < dim; i += FUSED_THREADS) {
                float acc = 0.0f, oh = 0.0f;
                for (int t0 = 0; t0 < tasks; t0 += FUSED_COMBINE_LOADS) {
                    if (t0 > 0 || i != tid)
#pragma unroll
                        for (int u = 0; u < FUSED_COMBINE_LOADS; u++) {
                            const int t = t0 + u;
                            v[u] = t < tasks
                                       ? ld_shared_global(a.part +
                                                          ((int64_t)(t / chunks) * a.max_chunks + t % chunks) * dim + i)
                                       : 0.0f;
                        }
#pragma unroll
                    for (int u = 0; u < FUSED_COMBINE_LOADS; u++) {
                        const int t = t0 + u;
                        if (t < tasks) {
                            oh = fmaf(coef[t], v[u], oh); /* head t / chunks, its chunks in order */
                            if (t % chunks == chunks - 1) {
                                acc += oh;
                                oh = 0.0f;
                            }
                        }
                    }
                }
                x[i] += acc;
            }
            __syncthreads();
            block_norm(xn, x, m.layers[l].ffn_norm, dim, m.eps, red);
            for (int base = gwarp * (FUSED_ROWS / 2); base < hidden; base += nwarps * (FUSED_ROWS / 2)) {
                gate_up_rows(m, l, base, row);
                warp_dots<FUSED_ROWS>(row, xn, dim, o, pre, base == gwarp * (FUSED_ROWS / 2));
                if (lane == 0)
#pragma unroll
                    for (int j = 0; j < FUSED_ROWS / 2; j++)
                        if (row[2 * j]) {
                            const float gt = o[2 * j];
                            a.h[base + j] = gt / (1.0f + expf(-gt)) * o[2 * j + 1];
                        }
            }
            down_rows(m, l, gwarp * FUSED_ROWS, row);
            prefetch_rows<FUSED_ROWS>(row, hidden, pre);
            trace_stage(a, n_trace, FUSED_STAGE_WORK + 2);
            grid_barrier(a.barrier, passed);
            trace_stage(a, n_trace, 2);
            /* E: down */
            for (int i = tid; i < hidden; i += FUSED_THREADS)
                xn[i] = ld_shared_global(a.h + i);
            __syncthreads();
            for (int base = gwarp * FUSED_ROWS; base < dim; base += nwarps * FUSED_ROWS) {
                down_rows(m, l, base, row);
                warp_dots<FUSED_ROWS>(row, xn, hidden, o, pre, base == gwarp * FUSED_ROWS);
                if (lane == 0)
#pragma unroll
                    for (int j = 0; j < FUSED_ROWS; j++)
                        if (row[j])
                            a.d[base + j] = o[j];
            }
            if (!last) {
                qkv_rows(m, l + 1, gwarp * FUSED_ROWS, row);
                prefetch_rows<FUSED_ROWS>(row, dim, pre);
            } else {
                lm_rows(m, gwarp * FUSED_LM_ROWS, row);
                prefetch_rows<FUSED_LM_ROWS>(row, dim, pre);
            }
            trace_stage(a, n_trace, FUSED_STAGE_WORK + 3);
            grid_barrier(a.barrier, passed);
            trace_stage(a, n_trace, 3);
        }
        if (!emits)
            continue;
        /* the LM head: x += the last down projection, the final norm, each block's best */
        for (int i = tid; i < dim; i += FUSED_THREADS)
            x[i] += ld_shared_global(a.d + i);
        __syncthreads();
        block_norm(xn, x, m.final_norm, dim, m.eps, red);
        const int s = r - (a.n - 1);
        float bv = -INFINITY;
        int bi = INT_MAX;
        for (int base = gwarp * FUSED_LM_ROWS; base < m.vocab; base += nwarps * FUSED_LM_ROWS) {
            lm_rows(m, base, row);
            warp_dots<FUSED_LM_ROWS>(row, xn, dim, o, pre, base == gwarp * FUSED_LM_ROWS);
#pragma unroll
            for (int j = 0; j < FUSED_LM_ROWS; j++)
                if (row[j]) {
                    fused_better(bv, bi, o[j], base + j);
                    if (a.logits && lane == 0)
                        a.logits[(int64_t)s * m.vocab + base + j] = o[j];
                }
        }
        if (lane == 0) {
            best_v[warp] = bv;
            best_i[warp] = bi;
        }
        __syncthreads();
        if (tid == 0) {
            for (int w = 1; w < FUSED_WARPS; w++)
                fused_better(bv, bi, best_v[w], best_i[w]);
            a.best_v[blockIdx.x] = bv;
            a.best_i[blockIdx.x] = bi;
        }
        qkv_rows(m, 0, gwarp * FUSED_ROWS, row);
        prefetch_rows<FUSED_ROWS>(row, dim, pre);
        trace_stage(a, n_trace, FUSED_STAGE_WORK + 4);
        grid_barrier(a.barrier, passed);
        trace_stage(a, n_trace, 4);
        /* every block reduces the blocks' bests alike (the better of two is a total order
         * on (value, index), so any order of reduction gives the same token): warp 0, a
         * lane for every 32nd block, its loads all issued at once */
        if (warp == 0) {
            float gv = -INFINITY;
            int gi = INT_MAX;
            for (int b = lane; b < (int)gridDim.x; b += 32)
                fused_better(gv, gi, ld_shared_global(a.best_v + b), __ldcg(a.best_i + b));
            for (int off = 16; off > 0; off >>= 1)
                fused_better(gv, gi, __shfl_xor_sync(0xffffffffu, gv, off), __shfl_xor_sync(0xffffffffu, gi, off));
            if (lane == 0) {
                token_sh = gi == INT_MAX ? 0 : gi;
                if (blockIdx.x == 0)
                    a.out[s] = token_sh;
            }
        }
        __syncthreads();
        token = token_sh;
    }
}

extern "C" const char *cuk_fused_unfit(const augur_fused_model *m, int layer_rows, size_t smem_limit)
{
    const char *why = fused_shape_unfit(m, layer_rows);
    if (why)
        return why;
    const int max_chunks = (layer_rows + CUK_FUSED_CHUNK - 1) / CUK_FUSED_CHUNK;
    if (fused_smem_floats(m, max_chunks) * sizeof(float) > smem_limit)
        return "its activations and attention partials exceed a block's shared memory";
    return NULL;
}

extern "C" size_t cuk_fused_scratch_bytes(const augur_fused_model *m, int layer_rows, int blocks)
{
    const size_t max_chunks = (size_t)(layer_rows + CUK_FUSED_CHUNK - 1) / CUK_FUSED_CHUNK;
    const size_t floats = (size_t)(m->n_heads + 2 * m->n_kv_heads) * m->head_dim +
                          (size_t)m->n_heads * max_chunks * (m->dim + 2) + m->hidden + m->dim;
    return (floats + 2 * (size_t)blocks + 4) * sizeof(float); /* + the barrier's count, 16-byte aligned */
}

extern "C" int cuk_fused_blocks(const augur_fused_model *m, int layer_rows, int sm_count, int want)
{
    const int max_chunks = (layer_rows + CUK_FUSED_CHUNK - 1) / CUK_FUSED_CHUNK;
    const size_t smem = fused_smem_floats(m, max_chunks) * sizeof(float);
    if (smem > 48 * 1024 && cudaFuncSetAttribute(fused_greedy_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 (int)smem) != cudaSuccess)
        return 0;
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fused_greedy_kernel, FUSED_THREADS, smem) != cudaSuccess)
        return 0;
    const int most = per_sm * sm_count;
    if (want <= 0)
        want = sm_count;
    return want < most ? want : most;
}

extern "C" cudaError_t cuk_fused_greedy(cudaStream_t stream, const augur_fused_model *m, const augur_fused_cache *kv,
                                        const int32_t *ids, int n, int start, int steps, int32_t *out, float *logits,
                                        void *scratch, int blocks, long long *trace, int trace_cap)
{
    if (n < 1 || n > AUGUR_FUSED_MAX_FEED || steps < 1 || blocks < 1)
        return cudaErrorInvalidValue;
    FusedArgs a = {};
    fused_chain_args(a, m, kv, ids, n, start, steps, out, logits, trace, trace_cap);
    float *f = static_cast<float *>(scratch);
    a.qkv = f;
    f += (size_t)(m->n_heads + 2 * m->n_kv_heads) * m->head_dim;
    a.part = f;
    f += (size_t)m->n_heads * a.max_chunks * m->dim;
    a.ml = f;
    f += (size_t)m->n_heads * a.max_chunks * 2;
    a.h = f;
    f += m->hidden;
    a.d = f;
    f += m->dim;
    a.best_v = f;
    a.best_i = reinterpret_cast<int *>(f + blocks);
    a.barrier = reinterpret_cast<unsigned *>(f + 2 * blocks);
    cudaError_t rc = cudaMemsetAsync(a.barrier, 0, sizeof(unsigned), stream);
    if (rc != cudaSuccess)
        return rc;
    const size_t smem = fused_smem_floats(m, a.max_chunks) * sizeof(float);
    void *params[] = {&a};
    return cudaLaunchCooperativeKernel((const void *)fused_greedy_kernel, dim3(blocks), dim3(FUSED_THREADS), params,
                                       smem, stream);
}
