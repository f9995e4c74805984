/* Logits reductions, one block per row: softmax, argmax, and the processed sampling
 * distribution of kernels/sampling.c (temperature, top-k, top-p, ties to the lower id).
 *
 * Top-k and top-p need the rank order "higher probability, then lower id" without
 * sorting. Every element gets a unique 64-bit key, (float bits of p) << 32 | ~id (p >= 0,
 * so its bits order like its value), and a radix select over the key's eight bytes, most
 * significant first, finds a threshold key: the k-th largest for top-k (by counts), and
 * for top-p the key at which the mass of everything ranked at or before it first reaches
 * top_p times the mass left by top-k. The kept set is then "key >= threshold", exactly
 * the CPU's sorted prefix. */
#include <limits.h>

#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_kernels.h"

#define LOGITS_THREADS 1024

__global__ void __launch_bounds__(LOGITS_THREADS) softmax_kernel(float *x, int cols)
{
    cuk_begin();
    __shared__ float red[32];
    float *xr = x + (int64_t)blockIdx.x * cols;
    float mx = -INFINITY;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        mx = fmaxf(mx, xr[c]);
    mx = cuk_block_max(mx, red);
    float sum = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float e = expf(xr[c] - mx);
        xr[c] = e;
        sum += e;
    }
    sum = cuk_block_sum(sum, red);
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        xr[c] = xr[c] / sum;
}

extern "C" cudaError_t cuk_softmax(cuk_stream stream, float *x, int rows, int cols)
{
    cuk_launch(stream, rows, LOGITS_THREADS, 0, softmax_kernel, x, cols);
    return cudaGetLastError();
}

/* (bv, bi) = the better of itself and (v, i): larger value, then lower index. */
__device__ __forceinline__ void arg_better(float &bv, int &bi, float v, int i)
{
    if (v > bv || (v == bv && i < bi)) {
        bv = v;
        bi = i;
    }
}

/* Index of the largest value of x[0..cols), lowest index on ties, never a NaN, 0 when
 * nothing exceeds -inf (argmax_f32's rules). Every thread gets it. */
__device__ int block_argmax(const float *x, int cols, float *redv, int *redi)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float v = x[c];
        if (v > bv) { /* strict: within a thread indices rise, so the first max stays */
            bv = v;
            bi = c;
        }
    }
    for (int off = 16; off > 0; off >>= 1)
        arg_better(bv, bi, __shfl_xor_sync(0xffffffffu, bv, off), __shfl_xor_sync(0xffffffffu, bi, off));
    if (lane == 0) {
        redv[warp] = bv;
        redi[warp] = bi;
    }
    __syncthreads();
    bv = lane < nwarps ? redv[lane] : -INFINITY;
    bi = lane < nwarps ? redi[lane] : INT_MAX;
    for (int off = 16; off > 0; off >>= 1)
        arg_better(bv, bi, __shfl_xor_sync(0xffffffffu, bv, off), __shfl_xor_sync(0xffffffffu, bi, off));
    __syncthreads();
    return bi == INT_MAX ? 0 : bi;
}

__global__ void __launch_bounds__(LOGITS_THREADS) argmax_kernel(int32_t *out, float *max_out, const float *x,
                                                                int cols)
{
    cuk_begin();
    __shared__ float redv[32];
    __shared__ int redi[32];
    const float *xr = x + (int64_t)blockIdx.x * cols;
    const int best = block_argmax(xr, cols, redv, redi);
    if (threadIdx.x == 0) {
        out[blockIdx.x] = best;
        if (max_out)
            max_out[blockIdx.x] = xr[best];
    }
}

extern "C" cudaError_t cuk_argmax(cuk_stream stream, int32_t *out, float *max_out, const float *x, int rows, int cols)
{
    cuk_launch(stream, rows, LOGITS_THREADS, 0, argmax_kernel, out, max_out, x, cols);
    return cudaGetLastError();
}

/* argmax_kernel's choice for one row, also fed to the next step of a chain: its token id
 * and position advanced where that step's embedding and kernels read them. */
__global__ void __launch_bounds__(LOGITS_THREADS)
    argmax_feed_kernel(int32_t *out, int32_t *ids, int32_t *pos, int advance, const float *x, int cols)
{
    cuk_begin();
    __shared__ float redv[32];
    __shared__ int redi[32];
    const int best = block_argmax(x, cols, redv, redi);
    if (threadIdx.x == 0) {
        *out = best;
        if (ids) {
            *ids = best;
            *pos += advance;
        }
    }
}

extern "C" cudaError_t cuk_argmax_feed(cuk_stream stream, int32_t *out, int32_t *ids, int32_t *pos, int advance,
                                       const float *x, int cols)
{
    cuk_launch(stream, 1, LOGITS_THREADS, 0, argmax_feed_kernel, out, ids, pos, advance, x, cols);
    return cudaGetLastError();
}

/* ------------------------------------------------------------ sampling */

__device__ __forceinline__ uint64_t rank_key(float p, int id)
{
    return ((uint64_t)__float_as_uint(p) << 32) | (uint64_t)(0xffffffffu - (uint32_t)id);
}

typedef struct {
    unsigned cnt[256];
    double mass[256];
    float redv[32];
    int redi[32];
    double redd[32];
    int sel;                  /* the bucket warp 0 picked */
    unsigned above_cnt;       /* count / mass of keys ranked above that bucket */
    double above_mass;
} select_smem;

/* Warp 0 walks the 256 buckets from the highest digit down, skipping empty ones, and
 * picks the first where base + (weight of the buckets walked, this one included) reaches
 * goal; if none does (top-p mass short of its target by rounding), the lowest non-empty
 * bucket, so that everything is kept. Lane l owns buckets 255-8l .. 248-8l. Writes the
 * bucket and the weight strictly above it (base included) to *sel, *above. */
template <typename T>
__device__ void pick_bucket(const unsigned *cnt, const T *wt, T base, T goal, int *sel, T *above)
{
    const int lane = threadIdx.x & 31;
    const int hi = 255 - 8 * lane;
    T gsum = 0;
    bool nonempty = false;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        gsum += wt[hi - k];
        nonempty |= cnt[hi - k] != 0;
    }
    T incl = gsum;
    for (int off = 1; off < 32; off <<= 1) {
        const T y = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off)
            incl += y;
    }
    T excl = __shfl_up_sync(0xffffffffu, incl, 1);
    if (lane == 0)
        excl = 0;
    const unsigned hits = __ballot_sync(0xffffffffu, nonempty && base + incl >= goal);
    const unsigned full = __ballot_sync(0xffffffffu, nonempty);
    const int owner = hits ? __ffs(hits) - 1 : 31 - __clz(full);
    if (lane == owner) {
        T cum = base + excl;
        int pick = -1;
        T pick_above = cum;
        for (int k = 0; k < 8; k++) {
            const int b = hi - k;
            if (!cnt[b])
                continue;
            pick = b; /* the lowest non-empty so far, should nothing reach goal */
            pick_above = cum;
            if (hits && cum + wt[b] >= goal)
                break;
            cum += wt[b];
        }
        *sel = pick;
        *above = pick_above;
    }
}

/* Radix select, eight 8-bit digits: the threshold key of the elements with key >= thresh.
 * by_mass false: the goal-th largest key (goal = k). by_mass true: the key at which the
 * mass of keys ranked at or above it first reaches goal (or the smallest such key). */
__device__ uint64_t radix_threshold(const float *p, int cols, uint64_t thresh, bool by_mass, unsigned goal_cnt,
                                    double goal_mass, select_smem *sh)
{
    uint64_t prefix = 0, mask = 0;
    unsigned above_cnt = 0;
    double above_mass = 0.0;
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += blockDim.x) {
            sh->cnt[b] = 0;
            sh->mass[b] = 0.0;
        }
        __syncthreads();
        for (int c = threadIdx.x; c < cols; c += blockDim.x) {
            const float pc = p[c];
            const uint64_t key = rank_key(pc, c);
            if (key >= thresh && (key & mask) == prefix) {
                const int b = (int)((key >> shift) & 0xff);
                atomicAdd(&sh->cnt[b], 1u);
                if (by_mass)
                    atomicAdd(&sh->mass[b], (double)pc);
            }
        }
        __syncthreads();
        if (threadIdx.x < 32) {
            if (by_mass)
                pick_bucket<double>(sh->cnt, sh->mass, above_mass, goal_mass, &sh->sel, &sh->above_mass);
            else
                pick_bucket<unsigned>(sh->cnt, sh->cnt, above_cnt, goal_cnt, &sh->sel, &sh->above_cnt);
        }
        __syncthreads();
        prefix |= (uint64_t)sh->sel << shift;
        mask |= (uint64_t)0xff << shift;
        above_cnt = sh->above_cnt;
        above_mass = sh->above_mass;
        __syncthreads(); /* sh is rewritten by the next digit */
    }
    return prefix;
}

/* Sum of p over the elements with key >= thresh, in double, to every thread. */
__device__ double kept_mass(const float *p, int cols, uint64_t thresh, double *red)
{
    double m = 0.0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float pc = p[c];
        if (rank_key(pc, c) >= thresh)
            m += (double)pc;
    }
    return cuk_block_sum_d(m, red);
}

__device__ void one_hot(float *p, int cols, int idx)
{
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        p[c] = c == idx ? 1.0f : 0.0f;
}

__global__ void __launch_bounds__(LOGITS_THREADS)
    sample_probs_kernel(float *probs, const float *logits, int cols, float temperature, int top_k, float top_p)
{
    cuk_begin();
    __shared__ select_smem sh;
    const float *l = logits + (int64_t)blockIdx.x * cols;
    float *p = probs + (int64_t)blockIdx.x * cols;

    const int amax = block_argmax(l, cols, sh.redv, sh.redi);
    const float lmax = l[amax];
    if (!(temperature > 0.0f) || !isfinite(lmax)) { /* greedy, or nothing to soften */
        one_hot(p, cols, amax);
        return;
    }
    /* (l - max) / T rather than l / T - max / T, and the total in double, as the CPU. */
    double part = 0.0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float e = expf((l[c] - lmax) / temperature);
        e = e == e ? e : 0.0f; /* NaN logits get no mass */
        p[c] = e;
        part += e;
    }
    const double total = cuk_block_sum_d(part, sh.redd);
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        p[c] = (float)((double)p[c] / total);

    const bool use_k = top_k > 0 && top_k < cols;
    const bool use_p = top_p < 1.0f;
    if (!use_k && !use_p)
        return;
    __syncthreads(); /* the selection reads every p[c] */

    uint64_t thresh = 0;
    if (use_k)
        thresh = radix_threshold(p, cols, 0, false, (unsigned)top_k, 0.0, &sh);
    if (use_p) {
        /* top_p is relative to the mass top-k left. */
        const double target = (double)top_p * kept_mass(p, cols, thresh, sh.redd);
        thresh = radix_threshold(p, cols, thresh, true, 0, target, &sh);
    }
    const double kept = kept_mass(p, cols, thresh, sh.redd);
    if (!(kept > 0.0)) { /* only zero-probability tokens survived: the best one */
        __syncthreads();
        one_hot(p, cols, amax);
        return;
    }
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float pc = p[c];
        p[c] = rank_key(pc, c) >= thresh ? (float)((double)pc / kept) : 0.0f;
    }
}

extern "C" cudaError_t cuk_sample_probs(cuk_stream stream, float *probs, const float *logits, int rows, int cols,
                                        float temperature, int top_k, float top_p)
{
    cuk_launch(stream, rows, LOGITS_THREADS, 0, sample_probs_kernel, probs, logits, cols, temperature, top_k, top_p);
    return cudaGetLastError();
}
