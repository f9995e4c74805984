/* Matrix products over fp32 / fp16 / bf16 weights with fp32 accumulation.
 *
 * Decode and verification (n <= 16 rows) are memory-bound: every weight byte is read
 * once per forward. cuk_gemv gives each output feature to one warp, whose lanes stream
 * the feature's weight row in 16-byte loads (8 bf16 at a time, coalesced across the
 * warp) and apply each loaded weight to all n rows of x held in registers. Per (row,
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

/* Rows r0 .. r0+NR-1 of x (those below n) against feature (blockIdx.x, warp). VEC: the
 * weight rows and x rows are 16-byte aligned, so the bulk goes in 16-byte loads. */
template <typename W, int NR, bool VEC>
__global__ void __launch_bounds__(GEMV_THREADS)
    gemv_kernel(float *__restrict__ out, const float *__restrict__ x, int n, const W *__restrict__ w,
                int64_t rows, int64_t cols, int64_t ld, const float *__restrict__ bias)
{
    const int lane = threadIdx.x & 31;
    const int64_t o = (int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (o >= rows)
        return; /* the whole warp: o is per warp */
    const int r0 = blockIdx.y * NR;
    const int nr = n - r0 < NR ? n - r0 : NR;
    const W *wr = w + o * ld;
    const float *xr = x + (int64_t)r0 * cols;

    float acc[NR];
#pragma unroll
    for (int r = 0; r < NR; r++)
        acc[r] = 0.0f;

    int64_t c0 = 0;
    if (VEC) {
        constexpr int E = 16 / sizeof(W);
        const int64_t nvec = cols / E;
        const uint4 *wv = reinterpret_cast<const uint4 *>(wr);
        for (int64_t v = lane; v < nvec; v += 32) {
            float wf[E];
            unpack16<W>(__ldg(wv + v), wf);
#pragma unroll
            for (int r = 0; r < NR; r++) {
                if (r < nr) {
                    const float4 *xp = reinterpret_cast<const float4 *>(xr + r * cols + v * E);
#pragma unroll
                    for (int k = 0; k < E / 4; k++) {
                        const float4 xv = __ldg(xp + k);
                        acc[r] = fmaf(wf[4 * k + 0], xv.x, acc[r]);
                        acc[r] = fmaf(wf[4 * k + 1], xv.y, acc[r]);
                        acc[r] = fmaf(wf[4 * k + 2], xv.z, acc[r]);
                        acc[r] = fmaf(wf[4 * k + 3], xv.w, acc[r]);
                    }
                }
            }
        }
        c0 = nvec * E;
    }
    for (int64_t c = c0 + lane; c < cols; c += 32) {
        const float wf = cuk_load_f32(wr + c);
#pragma unroll
        for (int r = 0; r < NR; r++)
            if (r < nr)
                acc[r] = fmaf(wf, __ldg(xr + r * cols + c), acc[r]);
    }

#pragma unroll
    for (int r = 0; r < NR; r++) {
        const float s = cuk_warp_sum(acc[r]);
        if (lane == 0 && r < nr)
            out[(int64_t)(r0 + r) * rows + o] = bias ? s + bias[o] : s;
    }
}

template <typename W, int NR>
static cudaError_t gemv_launch(cudaStream_t stream, float *out, const float *x, int n, const void *w, int64_t rows,
                               int64_t cols, int64_t ld, const float *bias)
{
    const bool vec = (uintptr_t)w % 16 == 0 && (ld * (int64_t)sizeof(W)) % 16 == 0 && (uintptr_t)x % 16 == 0 &&
                     cols % 4 == 0;
    const dim3 grid((unsigned)((rows + GEMV_WARPS - 1) / GEMV_WARPS), (unsigned)((n + NR - 1) / NR));
    const W *wt = static_cast<const W *>(w);
    if (vec)
        gemv_kernel<W, NR, true><<<grid, GEMV_THREADS, 0, stream>>>(out, x, n, wt, rows, cols, ld, bias);
    else
        gemv_kernel<W, NR, false><<<grid, GEMV_THREADS, 0, stream>>>(out, x, n, wt, rows, cols, ld, bias);
    return cudaGetLastError();
}

template <typename W>
static cudaError_t gemv_dispatch(cudaStream_t stream, float *out, const float *x, int n, const void *w,
                                 int64_t rows, int64_t cols, int64_t ld, const float *bias)
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

extern "C" cudaError_t cuk_gemv(cudaStream_t stream, float *out, const float *x, int n, const void *w, int dtype,
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
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = round_to<H>(x[i]);
}

extern "C" cudaError_t cuk_round_activations(cudaStream_t stream, void *dst, const float *x, int64_t count,
                                             int dtype)
{
    const unsigned blocks = cuk_blocks_for(count, 256);
    if (dtype == AUGUR_BF16)
        round_kernel<<<blocks, 256, 0, stream>>>(static_cast<__nv_bfloat16 *>(dst), x, count);
    else if (dtype == AUGUR_F16)
        round_kernel<<<blocks, 256, 0, stream>>>(static_cast<__half *>(dst), x, count);
    else
        return cudaErrorInvalidValue;
    return cudaGetLastError();
}

__global__ void add_bias_kernel(float *__restrict__ out, const float *__restrict__ bias, int64_t total,
                                int64_t rows)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        out[i] += bias[i % rows];
}

extern "C" cudaError_t cuk_add_bias(cudaStream_t stream, float *out, const float *bias, int n, int64_t rows)
{
    const int64_t total = (int64_t)n * rows;
    add_bias_kernel<<<cuk_blocks_for(total, 256), 256, 0, stream>>>(out, bias, total, rows);
    return cudaGetLastError();
}
