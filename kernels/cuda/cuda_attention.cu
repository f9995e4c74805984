/* Causal grouped-query attention of n new query rows against the KV cache
 * ([pos][n_kv_heads][head_dim], fp32), as cpu_attention computes it.
 *
 * Two schedules:
 *   single - one block per (query row, head) holding all of the row's scores in shared
 *            memory: score, softmax, weighted sum of V. Enough blocks when many rows
 *            or heads are in flight (prefill, and verification of larger models).
 *   split  - flash-decoding: the context cut into chunks, one block per (chunk, head,
 *            row) writing its chunk's max m, sum l = sum exp(s - m) and unnormalised
 *            output o = sum exp(s - m) v; a combine kernel rescales them to the common
 *            max. Fills the GPU at batch 1 and has no context-length limit.
 * Scores: a warp per key position (lanes split head_dim, one butterfly). Weighted sum:
 * threads own output dimensions, coalesced over V rows; when head_dim is below the block
 * size, several thread groups take interleaved positions and add up at the end.
 *
 * Paged caches: every kernel is a template on PAGED. The contiguous instantiation reads
 * position t at row t, exactly the code it was before paging; the paged one reads row
 * table[t / bs] * bs + t % bs and does the same arithmetic in the same order, so a row's
 * result is bitwise the same from either cache. */
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_kernels.h"

#define ATT_THREADS 128

/* Row of position t in a layer of the cache. */
template <bool PAGED>
__device__ __forceinline__ int64_t kv_row(const int *__restrict__ table, int bs, int t)
{
    if (PAGED)
        return (int64_t)__ldg(table + t / bs) * bs + t % bs;
    return (int64_t)t;
}

/* Floats of shared memory besides the scores: q, reduction slots, group partials. */
static inline size_t att_fixed_floats(int head_dim)
{
    return (size_t)head_dim + 32 + (size_t)(head_dim > ATT_THREADS ? head_dim : ATT_THREADS);
}

/* s[t - t0] = (q . k_t) * scale for t in [t0, t1); returns the max (to every thread),
 * after a barrier that makes s visible to the whole block. */
template <bool PAGED>
__device__ float att_scores(float *s, const float *qs, const float *__restrict__ kc, const int *__restrict__ table,
                            int bs, int64_t kv_stride, int kvh, int head_dim, int t0, int t1, float scale, float *red)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    float mx = -INFINITY;
    for (int t = t0 + warp; t < t1; t += nwarps) {
        const float *kt = kc + kv_row<PAGED>(table, bs, t) * kv_stride + (int64_t)kvh * head_dim;
        float d = 0.0f;
        for (int c = lane; c < head_dim; c += 32)
            d = fmaf(qs[c], __ldg(kt + c), d);
        d = cuk_warp_sum(d) * scale;
        if (lane == 0)
            s[t - t0] = d;
        mx = fmaxf(mx, d);
    }
    return cuk_block_max(mx, red);
}

/* s[j] = exp(s[j] - mx) for j < len; returns their sum (to every thread), after a barrier. */
__device__ float att_exp(float *s, int len, float mx, float *red)
{
    float sum = 0.0f;
    for (int j = threadIdx.x; j < len; j += blockDim.x) {
        const float e = expf(s[j] - mx);
        s[j] = e;
        sum += e;
    }
    return cuk_block_sum(sum, red);
}

/* o[d] = sum_{t in [t0,t1)} p[t - t0] * v_t[d] for d < head_dim (o in global memory).
 * acc: shared, max(blockDim, head_dim) floats. */
template <bool PAGED>
__device__ void att_values(float *o, const float *p, const float *__restrict__ vc, const int *__restrict__ table,
                           int bs, int64_t kv_stride, int kvh, int head_dim, int t0, int t1, float *acc)
{
    const int dims = head_dim < (int)blockDim.x ? head_dim : (int)blockDim.x;
    const int groups = blockDim.x / dims;
    const int g = threadIdx.x / dims, dl = threadIdx.x % dims;
    if (g < groups) {
        for (int d = dl; d < head_dim; d += dims) {
            float a = 0.0f;
            for (int t = t0 + g; t < t1; t += groups)
                a = fmaf(p[t - t0],
                         __ldg(vc + kv_row<PAGED>(table, bs, t) * kv_stride + (int64_t)kvh * head_dim + d), a);
            if (groups == 1)
                o[d] = a;
            else
                acc[g * head_dim + d] = a; /* groups > 1: head_dim < blockDim, one d per thread */
        }
    }
    if (groups > 1) {
        __syncthreads();
        for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
            float a = 0.0f;
            for (int k = 0; k < groups; k++)
                a += acc[k * head_dim + d];
            o[d] = a;
        }
    }
}

template <bool PAGED>
__global__ void __launch_bounds__(ATT_THREADS)
    att_single_kernel(float *__restrict__ out, const float *__restrict__ q, int start_pos, int n_heads,
                      int n_kv_heads, int head_dim, const float *__restrict__ kc, const float *__restrict__ vc,
                      const int *__restrict__ table, int bs, float scale)
{
    cuk_begin();
    extern __shared__ float sm[];
    float *qs = sm;
    float *red = qs + head_dim;
    float *acc = red + 32;
    float *s = acc + (head_dim > ATT_THREADS ? head_dim : ATT_THREADS);
    const int h = blockIdx.x, i = blockIdx.y;
    const int kvh = h / (n_heads / n_kv_heads);
    const int len = start_pos + i + 1;
    const int64_t kv_stride = (int64_t)n_kv_heads * head_dim;
    const int64_t row = ((int64_t)i * n_heads + h) * head_dim;

    for (int d = threadIdx.x; d < head_dim; d += blockDim.x)
        qs[d] = q[row + d];
    __syncthreads();
    const float mx = att_scores<PAGED>(s, qs, kc, table, bs, kv_stride, kvh, head_dim, 0, len, scale, red);
    const float sum = att_exp(s, len, mx, red);
    /* Normalise first, as the CPU does (p = e / sum, then sum p * v). */
    for (int t = threadIdx.x; t < len; t += blockDim.x)
        s[t] = s[t] / sum;
    __syncthreads();
    att_values<PAGED>(out + row, s, vc, table, bs, kv_stride, kvh, head_dim, 0, len, acc);
}

extern "C" size_t cuk_attention_single_smem(int max_len, int head_dim)
{
    return (att_fixed_floats(head_dim) + (size_t)max_len) * sizeof(float);
}

extern "C" cudaError_t cuk_attention_single(cuk_stream stream, float *out, const float *q, int n, int start_pos,
                                            int n_heads, int n_kv_heads, int head_dim, const float *k_cache,
                                            const float *v_cache, const int *block_table, int block_size)
{
    const size_t smem = cuk_attention_single_smem(start_pos + n, head_dim);
    const float scale = 1.0f / sqrtf((float)head_dim);
    /* Beyond the default 48 KB a block must opt in (the caller checked the device's limit);
     * once per size reached, not per call: it is a host API call. */
    static size_t opted; /* one process, one device kind: a stale read only repeats the call */
    if (smem > 48 * 1024 && smem > opted) {
        cudaError_t rc =
            cudaFuncSetAttribute(att_single_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (rc == cudaSuccess)
            rc = cudaFuncSetAttribute(att_single_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (rc != cudaSuccess)
            return rc;
        opted = smem;
    }
    const dim3 grid((unsigned)n_heads, (unsigned)n);
    if (block_table)
        cuk_launch(stream, grid, ATT_THREADS, smem, att_single_kernel<true>, out, q, start_pos, n_heads, n_kv_heads,
                   head_dim, k_cache, v_cache, block_table, block_size, scale);
    else
        cuk_launch(stream, grid, ATT_THREADS, smem, att_single_kernel<false>, out, q, start_pos, n_heads, n_kv_heads,
                   head_dim, k_cache, v_cache, nullptr, 0, scale);
    return cudaGetLastError();
}

/* Partial of (row i, head h, split sp): [m, l, o[head_dim]]. */
static __device__ __forceinline__ float *att_partial(float *scratch, int i, int h, int sp, int n_heads,
                                                     int max_splits, int head_dim)
{
    return scratch + (((int64_t)i * n_heads + h) * max_splits + sp) * (head_dim + 2);
}

template <bool PAGED>
__global__ void __launch_bounds__(ATT_THREADS)
    att_split_kernel(float *__restrict__ scratch, const float *__restrict__ q, int start_pos, int n_heads,
                     int n_kv_heads, int head_dim, const float *__restrict__ kc, const float *__restrict__ vc,
                     const int *__restrict__ table, int bs, float scale, int chunk, int max_splits)
{
    cuk_begin();
    extern __shared__ float sm[];
    float *qs = sm;
    float *red = qs + head_dim;
    float *acc = red + 32;
    float *s = acc + (head_dim > ATT_THREADS ? head_dim : ATT_THREADS);
    const int sp = blockIdx.x, h = blockIdx.y, i = blockIdx.z;
    const int len = start_pos + i + 1;
    const int t0 = sp * chunk;
    if (t0 >= len)
        return; /* past this row's causal end: the combine reads only the splits it has */
    const int t1 = len - t0 < chunk ? len : t0 + chunk;
    const int kvh = h / (n_heads / n_kv_heads);
    const int64_t kv_stride = (int64_t)n_kv_heads * head_dim;
    const int64_t row = ((int64_t)i * n_heads + h) * head_dim;
    float *part = att_partial(scratch, i, h, sp, n_heads, max_splits, head_dim);

    for (int d = threadIdx.x; d < head_dim; d += blockDim.x)
        qs[d] = q[row + d];
    __syncthreads();
    const float mx = att_scores<PAGED>(s, qs, kc, table, bs, kv_stride, kvh, head_dim, t0, t1, scale, red);
    const float l = att_exp(s, t1 - t0, mx, red);
    att_values<PAGED>(part + 2, s, vc, table, bs, kv_stride, kvh, head_dim, t0, t1, acc);
    if (threadIdx.x == 0) {
        part[0] = mx;
        part[1] = l;
    }
}

/* xs (NULL: none; head_dim % 32 == 0): out also written as the tensor-core GEMV's split
 * activations (cuk_gemv_split_x's layout, one row of n_heads * head_dim columns), so that
 * the output projection after attention needs no split kernel of its own. */
__global__ void __launch_bounds__(ATT_THREADS)
    att_combine_kernel(float *__restrict__ out, const float *__restrict__ scratch, int start_pos,
                       const int *__restrict__ pos_dev, int n_heads, int head_dim, int chunk, int max_splits,
                       uint4 *__restrict__ xs)
{
    cuk_begin();
    if (pos_dev)
        start_pos = *pos_dev;
    const int h = blockIdx.x, i = blockIdx.y;
    const int len = start_pos + i + 1;
    const int splits = (len + chunk - 1) / chunk;
    const float *base = scratch + ((int64_t)i * n_heads + h) * max_splits * (head_dim + 2);
    const int64_t stride = head_dim + 2;
    /* The splits' maxima and sums are read by all threads at once (a tree of fixed shape
     * for the row's split count); a thread walking them one by one waited an L2 round trip
     * per split. */
    __shared__ float red[32];
    float m = -INFINITY;
    for (int k = threadIdx.x; k < splits; k += blockDim.x)
        m = fmaxf(m, base[k * stride]);
    m = cuk_block_max(m, red);
    float l = 0.0f;
    for (int k = threadIdx.x; k < splits; k += blockDim.x)
        l += base[k * stride + 1] * expf(base[k * stride] - m);
    l = cuk_block_sum(l, red);
    float *o = out + ((int64_t)i * n_heads + h) * head_dim;
    extern __shared__ float ov[]; /* [head_dim] when xs: the output, for the split */
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float a = 0.0f;
#pragma unroll 8
        for (int k = 0; k < splits; k++)
            a = fmaf(base[k * stride + 2 + d], expf(base[k * stride] - m), a);
        const float r = a / l;
        o[d] = r;
        if (xs)
            ov[d] = r;
    }
    if (!xs)
        return;
    __syncthreads();
    /* 8 columns a thread: columns h head_dim + 8 j .. +7 of row i */
    const int64_t chunks = (int64_t)n_heads * head_dim / 32;
    for (int j = threadIdx.x; j < head_dim / 8; j += blockDim.x)
        cuk_xsplit_store8(xs, i, chunks, (int64_t)h * head_dim + 8 * j, ov + 8 * j);
}

extern "C" size_t cuk_attention_split_scratch(int n, int n_heads, int head_dim, int max_splits)
{
    return (size_t)n * n_heads * max_splits * (size_t)(head_dim + 2);
}

extern "C" cudaError_t cuk_attention_split(cuk_stream stream, float *out, const float *q, int n, int start_pos,
                                           int n_heads, int n_kv_heads, int head_dim, const float *k_cache,
                                           const float *v_cache, const int *block_table, int block_size, int chunk,
                                           int max_splits, float *scratch)
{
    const size_t smem = (att_fixed_floats(head_dim) + (size_t)chunk) * sizeof(float);
    const float scale = 1.0f / sqrtf((float)head_dim);
    const dim3 grid((unsigned)max_splits, (unsigned)n_heads, (unsigned)n);
    if (block_table)
        cuk_launch(stream, grid, ATT_THREADS, smem, att_split_kernel<true>, scratch, q, start_pos, n_heads, n_kv_heads,
                   head_dim, k_cache, v_cache, block_table, block_size, scale, chunk, max_splits);
    else
        cuk_launch(stream, grid, ATT_THREADS, smem, att_split_kernel<false>, scratch, q, start_pos, n_heads, n_kv_heads,
                   head_dim, k_cache, v_cache, nullptr, 0, scale, chunk, max_splits);
    cudaError_t rc = cudaGetLastError();
    if (rc != cudaSuccess)
        return rc;
    cuk_launch(stream, dim3((unsigned)n_heads, (unsigned)n), ATT_THREADS, 0, att_combine_kernel, out, scratch,
               start_pos, nullptr, n_heads, head_dim, chunk, max_splits, nullptr);
    return cudaGetLastError();
}

/* ------------------------------------------------------------------ grouped
 *
 * The split schedule above reads a chunk's K and V once per (query head, row): the 4
 * query heads of a Llama-3 KV group and the 6 rows of a verification read them 24 times
 * (ncu, 8B shape: 150 us a layer at 6 rows against about 1 us to read the layer's K and
 * V once). Here one block takes a chunk of ATT_GROUP_CHUNK absolute positions of one KV
 * head, stages its K and V in shared memory once, and serves up to 8 (row, query head)
 * pairs of the group from there, one warp per pair (more pairs: more blocks, each staging
 * the chunk again, mostly from L2), writing the same partials the combine kernel reads.
 *
 * A pair's arithmetic is fixed whatever else shares the block: lane j scores positions
 * t0 + j and t0 + j + 32 with one fmaf per dimension in ascending order, the max and the
 * sum of exponentials are warp butterflies, and lane d sums p_t v_t[d] over the chunk's
 * positions in ascending order. So a row's output does not depend on n. */
#define ATT_GROUP_CHUNK CUK_ATT_GROUP_CHUNK
#define ATT_GROUP_WARPS 8
#define ATT_STAGE_LOADS 8

/* Floats of dynamic shared memory: K (odd row stride: lane j reads row j without bank
 * conflicts), V, and per warp its query row and its chunk's probabilities. */
__host__ __device__ static inline int att_group_kstride(int head_dim) { return head_dim | 1; }

extern "C" size_t cuk_attention_grouped_smem(int head_dim)
{
    return ((size_t)ATT_GROUP_CHUNK * att_group_kstride(head_dim) + (size_t)ATT_GROUP_CHUNK * head_dim +
            (size_t)ATT_GROUP_WARPS * (head_dim + ATT_GROUP_CHUNK)) *
           sizeof(float);
}

template <bool PAGED>
__global__ void __launch_bounds__(ATT_GROUP_WARPS * 32)
    att_grouped_kernel(float *__restrict__ scratch, const float *__restrict__ q, int n, int start_pos,
                       const int *__restrict__ pos_dev, int n_heads, int n_kv_heads, int head_dim,
                       const float *__restrict__ kc, const float *__restrict__ vc, const int *__restrict__ table,
                       int bs, float scale, int max_splits)
{
    cuk_begin();
    if (pos_dev) /* a captured step: the grid covers every position the cache holds */
        start_pos = *pos_dev;
    extern __shared__ float sm[];
    const int ks = att_group_kstride(head_dim);
    float *kt = sm;                                   /* [chunk][ks] */
    float *vt = kt + ATT_GROUP_CHUNK * ks;            /* [chunk][head_dim] */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float *qs = vt + ATT_GROUP_CHUNK * head_dim + warp * (head_dim + ATT_GROUP_CHUNK);
    float *ps = qs + head_dim;
    const int sp = blockIdx.x, kvh = blockIdx.y;
    const int t0 = sp * ATT_GROUP_CHUNK;
    const int end = start_pos + n; /* the longest row's causal length */
    if (t0 >= end)
        return;
    const int cn = end - t0 < ATT_GROUP_CHUNK ? end - t0 : ATT_GROUP_CHUNK;
    const int64_t kv_stride = (int64_t)n_kv_heads * head_dim;
    if (head_dim % 4 == 0) {
        /* 16-byte loads, ATT_STAGE_LOADS of K and of V in flight per thread before the first
         * store: a loop that stored each load before issuing the next paid a DRAM latency
         * per element and took 23 us for 512 positions of the 8B shape (ncu) */
        const int hv = head_dim / 4, total = cn * hv;
        for (int e0 = threadIdx.x; e0 < total; e0 += ATT_STAGE_LOADS * blockDim.x) {
            float4 k4[ATT_STAGE_LOADS], v4[ATT_STAGE_LOADS];
#pragma unroll
            for (int u = 0; u < ATT_STAGE_LOADS; u++) {
                const int e = e0 + u * blockDim.x;
                if (e < total) {
                    const int j = e / hv, d = (e - j * hv) * 4;
                    const int64_t at = kv_row<PAGED>(table, bs, t0 + j) * kv_stride + (int64_t)kvh * head_dim + d;
                    k4[u] = __ldg(reinterpret_cast<const float4 *>(kc + at));
                    v4[u] = __ldg(reinterpret_cast<const float4 *>(vc + at));
                }
            }
#pragma unroll
            for (int u = 0; u < ATT_STAGE_LOADS; u++) {
                const int e = e0 + u * blockDim.x;
                if (e < total) {
                    const int j = e / hv, d = (e - j * hv) * 4;
                    float *kr = kt + j * ks + d; /* odd row stride: no 16-byte stores */
                    kr[0] = k4[u].x, kr[1] = k4[u].y, kr[2] = k4[u].z, kr[3] = k4[u].w;
                    *reinterpret_cast<float4 *>(vt + j * head_dim + d) = v4[u];
                }
            }
        }
    } else {
        for (int e = threadIdx.x; e < cn * head_dim; e += blockDim.x) {
            const int j = e / head_dim, d = e - j * head_dim;
            const int64_t at = kv_row<PAGED>(table, bs, t0 + j) * kv_stride + (int64_t)kvh * head_dim + d;
            kt[j * ks + d] = __ldg(kc + at);
            vt[j * head_dim + d] = __ldg(vc + at);
        }
    }
    __syncthreads();

    const int group = n_heads / n_kv_heads;
    /* Block z serves pairs 8 z .. 8 z + 7, one a warp: a verification's rows spread over
     * more blocks (9 rows of a Llama-3 group are 36 pairs, 5 blocks beside each other where
     * one block took 5 turns); a pair's arithmetic is its warp's alone, whatever block. */
    for (int pair = blockIdx.z * ATT_GROUP_WARPS + warp; pair < n * group && pair < (blockIdx.z + 1) * ATT_GROUP_WARPS;
         pair += ATT_GROUP_WARPS) {
        const int i = pair / group, h = kvh * group + pair % group;
        const int len = start_pos + i + 1;
        if (t0 >= len)
            continue; /* past this row's causal end: the combine reads only the splits it has */
        const int cl = len - t0 < ATT_GROUP_CHUNK ? len - t0 : ATT_GROUP_CHUNK;
        const int64_t row = ((int64_t)i * n_heads + h) * head_dim;
        for (int d = lane; d < head_dim; d += 32)
            qs[d] = q[row + d];
        __syncwarp();
        float s[2];
#pragma unroll
        for (int k = 0; k < 2; k++) {
            const int j = lane + 32 * k;
            float a = 0.0f;
            if (j < cl) {
                const float *kr = kt + j * ks;
                for (int d = 0; d < head_dim; d++)
                    a = fmaf(qs[d], kr[d], a);
            }
            s[k] = j < cl ? a * scale : -INFINITY;
        }
        const float m = cuk_warp_reduce(fmaxf(s[0], s[1]), cuk_max_op());
        const float e0 = lane < cl ? expf(s[0] - m) : 0.0f;
        const float e1 = lane + 32 < cl ? expf(s[1] - m) : 0.0f;
        const float l = cuk_warp_sum(e0 + e1);
        ps[lane] = e0;
        ps[lane + 32] = e1;
        __syncwarp();
        float *part = att_partial(scratch, i, h, sp, n_heads, max_splits, head_dim);
        for (int d = lane; d < head_dim; d += 32) {
            float a = 0.0f;
            for (int j = 0; j < cl; j++)
                a = fmaf(ps[j], vt[j * head_dim + d], a);
            part[2 + d] = a;
        }
        if (lane == 0) {
            part[0] = m;
            part[1] = l;
        }
        __syncwarp(); /* qs and ps are reused by the warp's next pair */
    }
}

extern "C" cudaError_t cuk_attention_grouped(cuk_stream stream, float *out, const float *q, int n, int start_pos,
                                             const int *pos_dev, int max_positions, int n_heads, int n_kv_heads,
                                             int head_dim, const float *k_cache, const float *v_cache,
                                             const int *block_table, int block_size, float *scratch, void *x_split)
{
    if (x_split && head_dim % 32)
        return cudaErrorInvalidValue;
    const size_t smem = cuk_attention_grouped_smem(head_dim);
    const float scale = 1.0f / sqrtf((float)head_dim);
    /* The splits a row may have: from its position, or (position read at run time) from
     * the most the cache holds; blocks past the rows' end return at once. */
    const int max_splits = ((pos_dev ? max_positions : start_pos + n) + ATT_GROUP_CHUNK - 1) / ATT_GROUP_CHUNK;
    static size_t opted; /* as in cuk_attention_single */
    if (smem > 48 * 1024 && smem > opted) {
        cudaError_t rc =
            cudaFuncSetAttribute(att_grouped_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (rc == cudaSuccess)
            rc = cudaFuncSetAttribute(att_grouped_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      (int)smem);
        if (rc != cudaSuccess)
            return rc;
        opted = smem;
    }
    const int64_t pair_blocks = ((int64_t)n * (n_heads / n_kv_heads) + ATT_GROUP_WARPS - 1) / ATT_GROUP_WARPS;
    if (pair_blocks > 65535) /* grid z; the backend takes this kernel for at most 80 rows unless told */
        return cudaErrorInvalidValue;
    const dim3 grid((unsigned)max_splits, (unsigned)n_kv_heads, (unsigned)pair_blocks);
    if (block_table)
        cuk_launch(stream, grid, ATT_GROUP_WARPS * 32, smem, att_grouped_kernel<true>, scratch, q, n, start_pos,
                   pos_dev, n_heads, n_kv_heads, head_dim, k_cache, v_cache, block_table, block_size, scale,
                   max_splits);
    else
        cuk_launch(stream, grid, ATT_GROUP_WARPS * 32, smem, att_grouped_kernel<false>, scratch, q, n, start_pos,
                   pos_dev, n_heads, n_kv_heads, head_dim, k_cache, v_cache, nullptr, 0, scale, max_splits);
    cudaError_t rc = cudaGetLastError();
    if (rc != cudaSuccess)
        return rc;
    cuk_launch(stream, dim3((unsigned)n_heads, (unsigned)n), ATT_THREADS,
               x_split ? (size_t)head_dim * sizeof(float) : 0, att_combine_kernel, out, scratch, start_pos, pos_dev,
               n_heads, head_dim, ATT_GROUP_CHUNK, max_splits, static_cast<uint4 *>(x_split));
    return cudaGetLastError();
}
