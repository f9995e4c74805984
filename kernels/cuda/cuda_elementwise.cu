/* RMSNorm, rotary embeddings, SwiGLU, embedding lookup and residual add on fp32
 * activations. The formulas (and their operation order) are the CPU kernels'
 * (kernels/cpu/norm_rope.c, elementwise.c); products and sums that the CPU keeps as
 * separate roundings use __fmul_rn / __fadd_rn so that nvcc does not fuse them. */
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_kernels.h"

#define NORM_THREADS 256
#define NORM_VEC_THREADS 1024

/* One block per row: sum of squares, then out = weight * (x * r). Every thread reads
 * its x[c] before the reduction's barrier and writes out[c] after it: out may alias x. */
__global__ void __launch_bounds__(NORM_THREADS)
    rmsnorm_kernel(float *out, const float *x, const float *__restrict__ weight, int dim, float eps)
{
    cuk_begin();
    __shared__ float red[32];
    const float *xi = x + (int64_t)blockIdx.x * dim;
    float *oi = out + (int64_t)blockIdx.x * dim;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < dim; c += blockDim.x)
        ss = fmaf(xi[c], xi[c], ss);
    ss = cuk_block_sum(ss, red);
    const float r = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int c = threadIdx.x; c < dim; c += blockDim.x)
        oi[c] = __fmul_rn(weight[c], __fmul_rn(xi[c], r));
}

/* rmsnorm_kernel for dim % 4 == 0 (every model's hidden size): 1024 threads and 16-byte
 * accesses, so a thread of a 4096- or 8192-wide row makes one or two loads instead of 16
 * or 32 dependent ones. The 256-thread version took 14 us a call at dim 4096 on an H200
 * (ncu): a row is too small to hide a memory latency per loop iteration. Each thread
 * keeps its elements in registers between the reduction and the store. */
#define NORM_VEC_MAX 4 /* float4s a thread holds: dims up to 16384 */
/* ADD: x += partial first (stored back; the norm reads the sum from registers, the value
 * add_kernel would have stored). SPLIT: also writes out as the tensor-core GEMV's split
 * activations (cuk_gemv_split_x's layout, dim % 32 == 0), sparing the next product's
 * split kernel; four columns are half of one 16-byte vector of each term. */
template <bool ADD, bool SPLIT>
__global__ void __launch_bounds__(NORM_VEC_THREADS)
    rmsnorm_vec_kernel(float *out, float *x, const float *__restrict__ partial, const float *__restrict__ weight,
                       int dim, float eps, uint2 *__restrict__ xs)
{
    cuk_begin();
    __shared__ float red[32];
    float4 *xi = reinterpret_cast<float4 *>(x + (int64_t)blockIdx.x * dim);
    const float4 *pi = ADD ? reinterpret_cast<const float4 *>(partial + (int64_t)blockIdx.x * dim) : nullptr;
    float4 *oi = reinterpret_cast<float4 *>(out + (int64_t)blockIdx.x * dim);
    const float4 *wv = reinterpret_cast<const float4 *>(weight);
    const int nv = dim / 4;
    float4 v[NORM_VEC_MAX];
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < NORM_VEC_MAX; k++) {
        const int c = threadIdx.x + k * NORM_VEC_THREADS;
        v[k] = c < nv ? xi[c] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (ADD && c < nv) {
            const float4 p = pi[c];
            v[k] = make_float4(__fadd_rn(v[k].x, p.x), __fadd_rn(v[k].y, p.y), __fadd_rn(v[k].z, p.z),
                               __fadd_rn(v[k].w, p.w));
        }
    }
    if (ADD) { /* every read of x above is this thread's own, so storing now is safe */
#pragma unroll
        for (int k = 0; k < NORM_VEC_MAX; k++) {
            const int c = threadIdx.x + k * NORM_VEC_THREADS;
            if (c < nv)
                xi[c] = v[k];
        }
    }
#pragma unroll
    for (int k = 0; k < NORM_VEC_MAX; k++) {
        ss = fmaf(v[k].x, v[k].x, ss);
        ss = fmaf(v[k].y, v[k].y, ss);
        ss = fmaf(v[k].z, v[k].z, ss);
        ss = fmaf(v[k].w, v[k].w, ss);
    }
    ss = cuk_block_sum(ss, red);
    const float r = 1.0f / sqrtf(ss / (float)dim + eps);
#pragma unroll
    for (int k = 0; k < NORM_VEC_MAX; k++) {
        const int c = threadIdx.x + k * NORM_VEC_THREADS;
        if (c < nv) {
            const float4 w = __ldg(wv + c);
            const float4 o = make_float4(__fmul_rn(w.x, __fmul_rn(v[k].x, r)), __fmul_rn(w.y, __fmul_rn(v[k].y, r)),
                                         __fmul_rn(w.z, __fmul_rn(v[k].z, r)), __fmul_rn(w.w, __fmul_rn(v[k].w, r)));
            oi[c] = o;
            if (SPLIT)
                cuk_xsplit_store4(xs, blockIdx.x, dim / 32, 4 * (int64_t)c, o);
        }
    }
}

static bool norm_vec_ok(const float *out, const float *x, const float *weight, int dim)
{
    return dim % 4 == 0 && dim <= 4 * NORM_VEC_MAX * NORM_VEC_THREADS && (uintptr_t)x % 16 == 0 &&
           (uintptr_t)out % 16 == 0 && (uintptr_t)weight % 16 == 0;
}

extern "C" cudaError_t cuk_rmsnorm(cuk_stream stream, float *out, const float *x, const float *weight, int n, int dim,
                                   float eps)
{
    if (norm_vec_ok(out, x, weight, dim))
        cuk_launch(stream, n, NORM_VEC_THREADS, 0, rmsnorm_vec_kernel<false, false>, out, const_cast<float *>(x),
                   nullptr, weight, dim, eps, nullptr);
    else
        cuk_launch(stream, n, NORM_THREADS, 0, rmsnorm_kernel, out, x, weight, dim, eps);
    return cudaGetLastError();
}

extern "C" bool cuk_rmsnorm_fused_ok(const float *out, const float *x, const float *partial, const float *weight,
                                     int dim)
{
    return norm_vec_ok(out, x, weight, dim) && (!partial || (uintptr_t)partial % 16 == 0);
}

extern "C" cudaError_t cuk_rmsnorm_fused(cuk_stream stream, float *out, float *x, const float *partial,
                                         const float *weight, int n, int dim, float eps, void *x_split)
{
    if (!cuk_rmsnorm_fused_ok(out, x, partial, weight, dim) || (x_split && dim % 32))
        return cudaErrorInvalidValue;
    uint2 *xs = static_cast<uint2 *>(x_split);
    if (partial && xs)
        cuk_launch(stream, n, NORM_VEC_THREADS, 0, rmsnorm_vec_kernel<true, true>, out, x, partial, weight, dim, eps,
                   xs);
    else if (partial)
        cuk_launch(stream, n, NORM_VEC_THREADS, 0, rmsnorm_vec_kernel<true, false>, out, x, partial, weight, dim, eps,
                   xs);
    else if (xs)
        cuk_launch(stream, n, NORM_VEC_THREADS, 0, rmsnorm_vec_kernel<false, true>, out, x, partial, weight, dim, eps,
                   xs);
    else
        cuk_launch(stream, n, NORM_VEC_THREADS, 0, rmsnorm_vec_kernel<false, false>, out, x, partial, weight, dim, eps,
                   xs);
    return cudaGetLastError();
}

#define ROPE_THREADS 512

/* cos[i], sin[i] of angle float(pos) * inv_freq[i] for i < half, by the block's threads
 * (the CPU's angles); the caller synchronises before reading them. */
__device__ __forceinline__ void rope_angles(float *cs, float *sn, int half, float pos, const float *inv_freq)
{
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float s, c;
        sincosf(__fmul_rn(pos, inv_freq[i]), &s, &c);
        cs[i] = c;
        sn[i] = s;
    }
}

/* Pair i of a head (pairs 0: i and i + half; else 2i and 2i + 1) rotated by (c, s) in
 * place; returns where the pair sits and its rotated values (rope_store also caches them). */
struct RopePair {
    int a, b;
    float o1, o2;
};

__device__ __forceinline__ RopePair rope_rotate(float *x, int i, int half, int pairs, float c, float s)
{
    RopePair p;
    p.a = pairs == 0 ? i : 2 * i;
    p.b = pairs == 0 ? i + half : 2 * i + 1;
    const float x1 = x[p.a], x2 = x[p.b];
    p.o1 = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
    p.o2 = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    x[p.a] = p.o1;
    x[p.b] = p.o2;
    return p;
}

/* One block per row: cos/sin of each frequency at the row's position into shared
 * memory (as the CPU, angle = float(pos) * inv_freq[i]), then every (head, pair). */
__global__ void __launch_bounds__(ROPE_THREADS)
    rope_kernel(float *x, int n_heads, int head_dim, int start_pos, const int *__restrict__ pos_dev,
                const float *__restrict__ inv_freq, int pairs)
{
    cuk_begin();
    if (pos_dev) /* a captured step reads its position when it runs */
        start_pos = *pos_dev;
    extern __shared__ float cs[]; /* [half] cos, then [half] sin */
    const int half = head_dim / 2;
    float *sn = cs + half;
    rope_angles(cs, sn, half, (float)(start_pos + (int)blockIdx.x), inv_freq);
    __syncthreads();
    float *row = x + (int64_t)blockIdx.x * n_heads * head_dim;
    for (int idx = threadIdx.x; idx < n_heads * half; idx += blockDim.x) {
        const int h = idx / half, i = idx % half;
        rope_rotate(row + (int64_t)h * head_dim, i, half, pairs, cs[i], sn[i]);
    }
}

extern "C" cudaError_t cuk_rope(cuk_stream stream, float *x, int n, int n_heads, int head_dim, int start_pos,
                                const int *pos_dev, const float *inv_freq, int pairs)
{
    const size_t smem = (size_t)(head_dim / 2) * 2 * sizeof(float);
    cuk_launch(stream, n, ROPE_THREADS, smem, rope_kernel, x, n_heads, head_dim, start_pos, pos_dev, inv_freq, pairs);
    return cudaGetLastError();
}

#define ROPE_STORE_THREADS 256
#define ROPE_STORE_HEADS 4 /* heads a block: 12 blocks a row for 32 q + 8 k + 8 v heads */

/* rope_kernel on q and k, and store_rows_kernel (or its paged twin) on k and v, in one
 * launch: block (row, g) takes heads 4g .. 4g+3 of the row's q heads, then k heads,
 * then v heads. Why: a layer's append was four launches (two ropes, two stores) of
 * about 1 us each inside a graph for a few KB of work; several blocks a row, so that one
 * row still spreads over the multiprocessors. cos/sin and every rotation are
 * rope_kernel's expressions, so q, k and the cache rows are its bits; a rotated k goes to
 * k and to its cache row from the same registers. */
__global__ void __launch_bounds__(ROPE_STORE_THREADS)
    rope_store_kernel(float *__restrict__ q, float *__restrict__ k, const float *__restrict__ v,
                      float *__restrict__ k_cache, float *__restrict__ v_cache, int n_heads, int n_kv_heads,
                      int head_dim, int start_pos, const int *__restrict__ pos_dev, const float *__restrict__ inv_freq,
                      int pairs, const int *__restrict__ table, int bs)
{
    cuk_begin();
    if (pos_dev) /* a captured step reads its position when it runs */
        start_pos = *pos_dev;
    extern __shared__ float cs[]; /* [half] cos, then [half] sin */
    const int half = head_dim / 2;
    float *sn = cs + half;
    const int r = blockIdx.x, p = start_pos + r;
    const int rotated = n_heads + n_kv_heads, all = rotated + n_kv_heads;
    const int h0 = blockIdx.y * ROPE_STORE_HEADS, h1 = min(h0 + ROPE_STORE_HEADS, all);
    if (h0 < rotated) { /* block-uniform: the barrier below is reached by all or none */
        rope_angles(cs, sn, half, (float)(start_pos + r), inv_freq);
        __syncthreads();
    }
    const int64_t row_floats = (int64_t)n_kv_heads * head_dim;
    const int64_t crow = table ? (int64_t)table[p / bs] * bs + p % bs : (int64_t)p;
    const int r1 = min(h1, rotated);
    for (int idx = threadIdx.x; idx < (r1 - h0) * half; idx += blockDim.x) { /* empty for v-only blocks */
        const int h = h0 + idx / half, i = idx % half;
        const bool is_k = h >= n_heads;
        const int kh = h - n_heads;
        float *x = is_k ? k + ((int64_t)r * n_kv_heads + kh) * head_dim : q + ((int64_t)r * n_heads + h) * head_dim;
        const RopePair rp = rope_rotate(x, i, half, pairs, cs[i], sn[i]);
        if (is_k) {
            float *dst = k_cache + crow * row_floats + (int64_t)kh * head_dim;
            dst[rp.a] = rp.o1;
            dst[rp.b] = rp.o2;
        }
    }
    const int v0 = max(h0, rotated);
    for (int idx = threadIdx.x; idx < (h1 - v0) * head_dim; idx += blockDim.x) {
        const int vh = v0 - rotated + idx / head_dim, e = idx % head_dim;
        v_cache[crow * row_floats + (int64_t)vh * head_dim + e] = v[((int64_t)r * n_kv_heads + vh) * head_dim + e];
    }
}

extern "C" cudaError_t cuk_rope_store(cuk_stream stream, float *q, float *k, const float *v, int n, int n_heads,
                                      int n_kv_heads, int head_dim, int start_pos, const int *pos_dev,
                                      const float *inv_freq, int pairs, float *k_cache, float *v_cache,
                                      const int *block_table, int block_size)
{
    const int groups = (n_heads + 2 * n_kv_heads + ROPE_STORE_HEADS - 1) / ROPE_STORE_HEADS;
    if (n <= 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || head_dim % 2 || groups > 65535 ||
        (block_table && block_size <= 0))
        return cudaErrorInvalidValue;
    const size_t smem = (size_t)(head_dim / 2) * 2 * sizeof(float);
    cuk_launch(stream, dim3((unsigned)n, (unsigned)groups), ROPE_STORE_THREADS, smem, rope_store_kernel, q, k, v,
               k_cache, v_cache, n_heads, n_kv_heads, head_dim, start_pos, pos_dev, inv_freq, pairs, block_table,
               block_size);
    return cudaGetLastError();
}

/* silu(g) * u as g / (1 + exp(-g)) * u; for very negative g, exp overflows to inf and
 * g / inf is the right limit, -0. */
__device__ __forceinline__ float swiglu_value(float g, float u)
{
    return __fmul_rn(g / __fadd_rn(1.0f, expf(-g)), u);
}

__global__ void swiglu_kernel(float *out, const float *gate, const float *up, int64_t count)
{
    cuk_begin();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = swiglu_value(gate[i], up[i]);
}

extern "C" cudaError_t cuk_swiglu(cuk_stream stream, float *out, const float *gate, const float *up, int64_t count)
{
    cuk_launch(stream, cuk_blocks_for(count, 256), 256, 0, swiglu_kernel, out, gate, up, count);
    return cudaGetLastError();
}

#define SPLIT_CHUNK 32 /* MMA_CHUNK of cuda_gemv_mma.cu: columns of one chunk of the split x */

/* swiglu_kernel over n rows of cols (cols % 32 == 0) that also writes out as the
 * tensor-core GEMV's split activations, as split_x_kernel would from out, sparing the
 * down projection's split kernel. A thread takes 4 columns, half of one 16-byte vector
 * of each term (as rmsnorm_vec_kernel's SPLIT). Each thread reads its gate and up
 * elements before writing out: out may alias gate. */
__global__ void swiglu_split_kernel(float *out, const float *gate, const float *__restrict__ up, int64_t n,
                                    int64_t cols, uint2 *__restrict__ xs)
{
    cuk_begin();
    const int64_t per_row = cols / 4, total = n * per_row, chunks = cols / SPLIT_CHUNK;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const float4 g = reinterpret_cast<const float4 *>(gate)[i];
        const float4 u = reinterpret_cast<const float4 *>(up)[i];
        const float4 o =
            make_float4(swiglu_value(g.x, u.x), swiglu_value(g.y, u.y), swiglu_value(g.z, u.z), swiglu_value(g.w, u.w));
        reinterpret_cast<float4 *>(out)[i] = o;
        cuk_xsplit_store4(xs, i / per_row, chunks, 4 * (i % per_row), o);
    }
}

extern "C" bool cuk_swiglu_split_ok(const float *out, const float *gate, const float *up, int64_t cols)
{
    return cols > 0 && cols % SPLIT_CHUNK == 0 && (uintptr_t)out % 16 == 0 && (uintptr_t)gate % 16 == 0 &&
           (uintptr_t)up % 16 == 0;
}

extern "C" cudaError_t cuk_swiglu_split(cuk_stream stream, float *out, const float *gate, const float *up, int n,
                                        int64_t cols, void *x_split)
{
    if (n <= 0 || !cuk_swiglu_split_ok(out, gate, up, cols) || !x_split)
        return cudaErrorInvalidValue;
    /* 128 threads a block: one row of 14336 columns is still 28 blocks */
    cuk_launch(stream, cuk_blocks_for((int64_t)n * cols / 4, 128), 128, 0, swiglu_split_kernel, out, gate, up,
               (int64_t)n, cols, static_cast<uint2 *>(x_split));
    return cudaGetLastError();
}

/* One block per token. An id outside the table (the caller checks ids) gives a NaN row
 * rather than a read out of bounds. */
template <typename T>
__global__ void embedding_kernel(float *__restrict__ out, const T *__restrict__ table, int64_t vocab, int64_t cols,
                                 int64_t ld, const int32_t *__restrict__ ids)
{
    cuk_begin();
    const int32_t id = ids[blockIdx.x];
    float *oi = out + (int64_t)blockIdx.x * cols;
    const bool ok = id >= 0 && id < vocab;
    const T *row = table + (ok ? (int64_t)id * ld : 0);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
        oi[c] = ok ? cuk_load_f32(row + c) : __int_as_float(0x7fc00000);
}

extern "C" cudaError_t cuk_embedding(cuk_stream stream, float *out, const void *table, int dtype, int64_t vocab,
                                     int64_t cols, int64_t ld, const int32_t *ids, int n)
{
    switch (dtype) {
    case AUGUR_F32:
        cuk_launch(stream, n, 256, 0, embedding_kernel<float>, out, static_cast<const float *>(table), vocab, cols, ld,
                   ids);
        break;
    case AUGUR_BF16:
        cuk_launch(stream, n, 256, 0, embedding_kernel<__nv_bfloat16>, out, static_cast<const __nv_bfloat16 *>(table),
                   vocab, cols, ld, ids);
        break;
    case AUGUR_F16:
        cuk_launch(stream, n, 256, 0, embedding_kernel<__half>, out, static_cast<const __half *>(table), vocab, cols,
                   ld, ids);
        break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

__global__ void add_kernel(float *out, const float *a, const float *b, int64_t count)
{
    cuk_begin();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = __fadd_rn(a[i], b[i]);
}

extern "C" cudaError_t cuk_add(cuk_stream stream, float *out, const float *a, const float *b, int64_t count)
{
    cuk_launch(stream, cuk_blocks_for(count, 256), 256, 0, add_kernel, out, a, b, count);
    return cudaGetLastError();
}

/* Row i of src (row_floats each) to row start + i of base, start = *pos_dev when given:
 * the KV cache append of a captured step, whose position is known only when it runs. */
__global__ void store_rows_kernel(float *__restrict__ base, const float *__restrict__ src, int64_t row_floats, int n,
                                  int start, const int *__restrict__ pos_dev)
{
    cuk_begin();
    const int64_t first = (int64_t)(pos_dev ? *pos_dev : start) * row_floats;
    const int64_t total = (int64_t)n * row_floats;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        base[first + i] = src[i];
}

/* As store_rows_kernel, each row to the row of its position in a paged cache. */
__global__ void store_rows_paged_kernel(float *__restrict__ base, const float *__restrict__ src, int64_t row_floats,
                                        int n, int start, const int *__restrict__ pos_dev,
                                        const int *__restrict__ table, int bs)
{
    cuk_begin();
    const int first = pos_dev ? *pos_dev : start;
    const int64_t total = (int64_t)n * row_floats;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / row_floats;
        const int p = first + (int)r;
        const int64_t row = (int64_t)table[p / bs] * bs + p % bs;
        base[row * row_floats + (i - r * row_floats)] = src[i];
    }
}

extern "C" cudaError_t cuk_store_rows(cuk_stream stream, float *base, const float *src, int64_t row_floats, int n,
                                      int start, const int *pos_dev, const int *block_table, int block_size)
{
    const int64_t total = (int64_t)n * row_floats;
    if (block_table)
        cuk_launch(stream, cuk_blocks_for(total, 256), 256, 0, store_rows_paged_kernel, base, src, row_floats, n, start,
                   pos_dev, block_table, block_size);
    else
        cuk_launch(stream, cuk_blocks_for(total, 256), 256, 0, store_rows_kernel, base, src, row_floats, n, start,
                   pos_dev);
    return cudaGetLastError();
}
