/* Matrix products over fp32 / fp16 / bf16 weights with fp32 accumulation.
 *
 * Decode and verification (n <= 16 rows) are memory-bound: every weight byte is read
 * once per forward. cuk_gemv gives one to four output features to a warp, whose lanes
 * stream the features' weight rows in 16-byte loads (8 bf16 at a time, coalesced across
 * the warp) and apply each loaded weight to all n rows of x held in registers. Per (row,
 * feature) the arithmetic is fixed: lane l accumulates columns l*E .. l*E+E-1, then
 * (l+32)*E ..., with explicit fmaf, then the tail columns, then one butterfly over the
 * warp, so an output does not depend on how many rows share the call.
 *
 * Larger n (prefill) goes through cuBLAS (kernels/cuda/backend_cuda.c), which needs both
 * operands in one type: cuk_round_activations rounds x to the weights' 16-bit type. */
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_kernels.h"

#define GEMV_THREADS 256
#define GEMV_WARPS (GEMV_THREADS / 32)

/* 16 bytes of weights as fp32. Element 0 sits in the low half of each word. */
template <typename W> __device__ __forceinline__ void unpack16(const uint4 &r, float *f);

template <> __device__ __forceinline__ void unpack16<float>(const uint4 &r, float *f)
{
    f[0] = __uint_as_float(r.x);
    f[1] = __uint_as_float(r.y);
    f[2] = __uint_as_float(r.z);
    f[3] = __uint_as_float(r.w);
}

template <> __device__ __forceinline__ void unpack16<__nv_bfloat16>(const uint4 &r, float *f)
{
    const uint32_t u[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        f[2 * k] = __uint_as_float(u[k] << 16);
        f[2 * k + 1] = __uint_as_float(u[k] & 0xffff0000u);
    }
}

template <> __device__ __forceinline__ void unpack16<__half>(const uint4 &r, float *f)
{
    const uint32_t u[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        __half2 h;
        memcpy(&h, &u[k], sizeof h);
        const float2 v = __half22float2(h);
        f[2 * k] = v.x;
        f[2 * k + 1] = v.y;
    }
}

/* The end both GEMV kernels share: the columns past the last whole 16-byte vector (from
 * c0), one fmaf each from global memory, then one butterfly per (feature, row) and the
 * store with the bias. */
template <typename W, int NR, int FPW>
__device__ __forceinline__ void gemv_tail_and_store(float (&acc)[FPW][NR], float *__restrict__ out,
                                                    const float *__restrict__ xr, const W *__restrict__ w,
                                                    const float *__restrict__ bias, int64_t c0, int64_t o0, int nf,
                                                    int r0, int nr, int64_t rows, int64_t cols, int64_t ld)
{
    const int lane = threadIdx.x & 31;
    for (int64_t c = c0 + lane; c < cols; c += 32) {
#pragma unroll
        for (int f = 0; f < FPW; f++) {
            if (f < nf) {
                const float wf = cuk_load_f32(w + (o0 + f) * ld + c);
#pragma unroll
                for (int r = 0; r < NR; r++)
                    if (r < nr)
                        acc[f][r] = fmaf(wf, __ldg(xr + r * cols + c), acc[f][r]);
            }
        }
    }
#pragma unroll
    for (int f = 0; f < FPW; f++) {
#pragma unroll
        for (int r = 0; r < NR; r++) {
            const float s = cuk_warp_sum(acc[f][r]);
            if (lane == 0 && r < nr && f < nf)
                out[(int64_t)(r0 + r) * rows + o0 + f] = bias ? s + bias[o0 + f] : s;
        }
    }
}

/* Rows r0 .. r0+NR-1 of x (those below n) against FPW consecutive features from
 * (blockIdx.x, warp) on. A warp serving several features loads each chunk of x once for
 * all of them: with one feature per warp the x re-reads from L1, not the weights, set the
 * pace (a 16-byte weight load is met by NR 32-byte x loads). Each feature's arithmetic is
 * the same whatever FPW and NR, so the choice of FPW is free. VEC: the weight rows and x
 * rows are 16-byte aligned, so the bulk goes in 16-byte loads. */
template <typename W, int NR, int FPW, bool VEC>
__global__ void __launch_bounds__(GEMV_THREADS)
    gemv_kernel(float *__restrict__ out, const float *__restrict__ x, int n, const W *__restrict__ w,
                int64_t rows, int64_t cols, int64_t ld, const float *__restrict__ bias)
{
    cuk_begin();
    const int lane = threadIdx.x & 31;
    const int64_t o0 = ((int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5)) * FPW;
    if (o0 >= rows)
        return; /* the whole warp: o0 is per warp */
    const int nf = rows - o0 < FPW ? (int)(rows - o0) : FPW;
    const int r0 = blockIdx.y * NR;
    const int nr = n - r0 < NR ? n - r0 : NR;
    const float *xr = x + (int64_t)r0 * cols;

    float acc[FPW][NR];
#pragma unroll
    for (int f = 0; f < FPW; f++)
#pragma unroll
        for (int r = 0; r < NR; r++)
            acc[f][r] = 0.0f;

    int64_t c0 = 0;
    if (VEC) {
        constexpr int E = 16 / sizeof(W);
        const int64_t nvec = cols / E;
        for (int64_t v = lane; v < nvec; v += 32) {
            float wf[FPW][E];
#pragma unroll
            for (int f = 0; f < FPW; f++) {
                if (f < nf)
                    unpack16<W>(__ldg(reinterpret_cast<const uint4 *>(w + (o0 + f) * ld) + v), wf[f]);
            }
#pragma unroll
            for (int r = 0; r < NR; r++) {
                if (r < nr) {
                    const float4 *xp = reinterpret_cast<const float4 *>(xr + r * cols + v * E);
#pragma unroll
                    for (int k = 0; k < E / 4; k++) {
                        const float4 xv = __ldg(xp + k);
#pragma unroll
                        for (int f = 0; f < FPW; f++) {
                            if (f < nf) {
                                acc[f][r] = fmaf(wf[f][4 * k + 0], xv.x, acc[f][r]);
                                acc[f][r] = fmaf(wf[f][4 * k + 1], xv.y, acc[f][r]);
                                acc[f][r] = fmaf(wf[f][4 * k + 2], xv.z, acc[f][r]);
                                acc[f][r] = fmaf(wf[f][4 * k + 3], xv.w, acc[f][r]);
                            }
                        }
                    }
                }
            }
        }
        c0 = nvec * E;
    }
    gemv_tail_and_store<W, NR, FPW>(acc, out, xr, w, bias, c0, o0, nf, r0, nr, rows, cols, ld);
}

/* Columns of x staged per pass of gemv_staged_kernel: a multiple of 32 vectors for every
 * weight type (E = 4 or 8 columns a vector), so each lane still meets its vectors in the
 * order lane, lane + 32, ... across passes. 16 rows x 512 columns of fp32 = 32 KiB. */
#define GEMV_STAGE_COLS 512

/* gemv_kernel for several rows, with the rows' x staged in shared memory once per block
 * instead of read by every warp from L1/L2 (a verify batch re-read x per feature group:
 * 6 rows cost 3.6x one row, measured with ncu on the 8B shape). Every lane applies the
 * same fmaf sequence as gemv_kernel<W, NR, FPW, true> (vectors ascending, rows, then
 * 4-column groups, then features), then the same butterfly: the results are bit for bit
 * those of gemv_kernel, so batch invariance and every test of it carry over. Needs the
 * VEC conditions (16-byte aligned weights and x, cols % 4 == 0). */
template <typename W, int NR, int FPW>
__global__ void __launch_bounds__(GEMV_THREADS)
    gemv_staged_kernel(float *__restrict__ out, const float *__restrict__ x, int n, const W *__restrict__ w,
                       int64_t rows, int64_t cols, int64_t ld, const float *__restrict__ bias)
{
    cuk_begin();
    constexpr int E = 16 / sizeof(W);   /* columns a 16-byte weight vector holds */
    constexpr int K = E / 4;            /* float4 groups a vector's columns make */
    constexpr int VPS = GEMV_STAGE_COLS / E; /* vectors a pass stages */
    __shared__ float4 xs[NR * K * VPS];  /* [row][k][vector of the pass] */
    const int lane = threadIdx.x & 31;
    const int64_t o0 = ((int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5)) * FPW;
    const bool active = o0 < rows; /* idle warps still stage x and meet every barrier */
    const int nf = !active ? 0 : rows - o0 < FPW ? (int)(rows - o0) : FPW;
    const int r0 = blockIdx.y * NR;
    const int nr = n - r0 < NR ? n - r0 : NR;
    const float *xr = x + (int64_t)r0 * cols;

    float acc[FPW][NR];
#pragma unroll
    for (int f = 0; f < FPW; f++)
#pragma unroll
        for (int r = 0; r < NR; r++)
            acc[f][r] = 0.0f;

    const int64_t nvec = cols / E;
    for (int64_t v0 = 0; v0 < nvec; v0 += VPS) {
        const int nv = nvec - v0 < VPS ? (int)(nvec - v0) : VPS;
        /* Stage rows 0..nr-1, vectors v0..v0+nv-1: coalesced float4 reads of x. */
        const int groups = nv * K; /* float4 groups per row in this pass */
        for (int i = threadIdx.x; i < nr * groups; i += GEMV_THREADS) {
            const int r = i / groups, g = i - r * groups;
            const int vl = g / K, k = g - vl * K;
            xs[(r * K + k) * VPS + vl] = __ldg(reinterpret_cast<const float4 *>(xr + r * cols + v0 * E) + g);
        }
        __syncthreads();
        for (int vl = lane; vl < nv && nf > 0; vl += 32) {
            float wf[FPW][E];
#pragma unroll
            for (int f = 0; f < FPW; f++) {
                if (f < nf)
                    unpack16<W>(__ldg(reinterpret_cast<const uint4 *>(w + (o0 + f) * ld) + v0 + vl), wf[f]);
            }
#pragma unroll
            for (int r = 0; r < NR; r++) {
                if (r < nr) {
#pragma unroll
                    for (int k = 0; k < K; k++) {
                        const float4 xv = xs[(r * K + k) * VPS + vl];
#pragma unroll
                        for (int f = 0; f < FPW; f++) {
                            if (f < nf) {
                                acc[f][r] = fmaf(wf[f][4 * k + 0], xv.x, acc[f][r]);
                                acc[f][r] = fmaf(wf[f][4 * k + 1], xv.y, acc[f][r]);
                                acc[f][r] = fmaf(wf[f][4 * k + 2], xv.z, acc[f][r]);
                                acc[f][r] = fmaf(wf[f][4 * k + 3], xv.w, acc[f][r]);
                            }
                        }
                    }
                }
            }
        }
        __syncthreads();
    }
    if (active)
        gemv_tail_and_store<W, NR, FPW>(acc, out, xr, w, bias, nvec * E, o0, nf, r0, nr, rows, cols, ld);
}

template <typename W, int NR, int FPW>
static cudaError_t gemv_launch_fpw(cuk_stream stream, float *out, const float *x, int n, const W *w, int64_t rows,
                                   int64_t cols, int64_t ld, const float *bias, bool vec)
{
    const int64_t per_block = (int64_t)GEMV_WARPS * FPW;
    const dim3 grid((unsigned)((rows + per_block - 1) / per_block), (unsigned)((n + NR - 1) / NR));
    if (vec && NR > 1)
        cuk_launch(stream, grid, GEMV_THREADS, 0, gemv_staged_kernel<W, NR, FPW>, out, x, n, w, rows, cols, ld, bias);
    else if (vec)
        cuk_launch(stream, grid, GEMV_THREADS, 0, gemv_kernel<W, NR, FPW, true>, out, x, n, w, rows, cols, ld, bias);
    else
        cuk_launch(stream, grid, GEMV_THREADS, 0, gemv_kernel<W, NR, FPW, false>, out, x, n, w, rows, cols, ld, bias);
    return cudaGetLastError();
}

template <typename W, int NR>
static cudaError_t gemv_launch(cuk_stream stream, float *out, const float *x, int n, const void *w, int64_t rows,
                               int64_t cols, int64_t ld, const float *bias)
{
    const bool vec = (uintptr_t)w % 16 == 0 && (ld * (int64_t)sizeof(W)) % 16 == 0 && (uintptr_t)x % 16 == 0 &&
                     cols % 4 == 0;
    const W *wt = static_cast<const W *>(w);
    /* Several features per warp only while the grid still fills the GPU twice over:
     * small matrices (a KV projection shard) need every warp they can get. */
    static int sms; /* asked once: two host API calls per matmul showed in the launch overhead */
    if (sms <= 0) {
        int device = 0, count = 0;
        sms = cudaGetDevice(&device) == cudaSuccess &&
                      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) == cudaSuccess && count > 0
                  ? count
                  : 132;
    }
    const int64_t want_blocks = 2 * (int64_t)sms;
    if ((rows + GEMV_WARPS * 4 - 1) / (GEMV_WARPS * 4) >= want_blocks)
        return gemv_launch_fpw<W, NR, 4>(stream, out, x, n, wt, rows, cols, ld, bias, vec);
    if ((rows + GEMV_WARPS * 2 - 1) / (GEMV_WARPS * 2) >= want_blocks)
        return gemv_launch_fpw<W, NR, 2>(stream, out, x, n, wt, rows, cols, ld, bias, vec);
    return gemv_launch_fpw<W, NR, 1>(stream, out, x, n, wt, rows, cols, ld, bias, vec);
}

template <typename W>
static cudaError_t gemv_dispatch(cuk_stream stream, float *out, const float *x, int n, const void *w, int64_t rows,
                                 int64_t cols, int64_t ld, const float *bias)
{
    /* The fewest register rows that hold all of n: each weight is then read once. */
    if (n <= 1)
        return gemv_launch<W, 1>(stream, out, x, n, w, rows, cols, ld, bias);
    if (n <= 2)
        return gemv_launch<W, 2>(stream, out, x, n, w, rows, cols, ld, bias);
    if (n <= 4)
        return gemv_launch<W, 4>(stream, out, x, n, w, rows, cols, ld, bias);
    if (n <= 8)
        return gemv_launch<W, 8>(stream, out, x, n, w, rows, cols, ld, bias);
    return gemv_launch<W, CUK_GEMV_MAX_ROWS>(stream, out, x, n, w, rows, cols, ld, bias);
}

extern "C" cudaError_t cuk_gemv(cuk_stream stream, float *out, const float *x, int n, const void *w, int dtype,
                                int64_t rows, int64_t cols, int64_t ld, const float *bias)
{
    switch (dtype) {
    case AUGUR_F32: return gemv_dispatch<float>(stream, out, x, n, w, rows, cols, ld, bias);
    case AUGUR_BF16: return gemv_dispatch<__nv_bfloat16>(stream, out, x, n, w, rows, cols, ld, bias);
    case AUGUR_F16: return gemv_dispatch<__half>(stream, out, x, n, w, rows, cols, ld, bias);
    }
    return cudaErrorInvalidValue;
}

template <typename H> __device__ __forceinline__ H round_to(float v);
template <> __device__ __forceinline__ __nv_bfloat16 round_to<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ __half round_to<__half>(float v) { return __float2half_rn(v); }

template <typename H> __global__ void round_kernel(H *__restrict__ dst, const float *__restrict__ x, int64_t count)
{
    cuk_begin();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = round_to<H>(x[i]);
}

extern "C" cudaError_t cuk_round_activations(cuk_stream stream, void *dst, const float *x, int64_t count, int dtype)
{
    const unsigned blocks = cuk_blocks_for(count, 256);
    if (dtype == AUGUR_BF16)
        cuk_launch(stream, blocks, 256, 0, round_kernel<__nv_bfloat16>, static_cast<__nv_bfloat16 *>(dst), x, count);
    else if (dtype == AUGUR_F16)
        cuk_launch(stream, blocks, 256, 0, round_kernel<__half>, static_cast<__half *>(dst), x, count);
    else
        return cudaErrorInvalidValue;
    return cudaGetLastError();
}

__global__ void add_bias_kernel(float *__restrict__ out, const float *__restrict__ bias, int64_t total,
                                int64_t rows)
{
    cuk_begin();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        out[i] += bias[i % rows];
}

extern "C" cudaError_t cuk_add_bias(cuk_stream stream, float *out, const float *bias, int n, int64_t rows)
{
    const int64_t total = (int64_t)n * rows;
    cuk_launch(stream, cuk_blocks_for(total, 256), 256, 0, add_bias_kernel, out, bias, total, rows);
    return cudaGetLastError();
}
