/* Device-side helpers shared by the .cu files (CUDA C++ only): weight element loads,
 * warp and block reductions, launch-error reporting. */
#ifndef AUGUR_CUDA_DEVICE_H
#define AUGUR_CUDA_DEVICE_H

#ifndef __CUDACC__
#error "kernels/cuda/cuda_device.h is for CUDA sources only"
#endif

#include <stdint.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "base/tensor.h"
#include "kernels/cuda/cuda_kernels.h"

/* One weight element as fp32 (all three conversions are exact). */
__device__ __forceinline__ float cuk_to_f32(float v) { return v; }
__device__ __forceinline__ float cuk_to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float cuk_to_f32(__half v) { return __half2float(v); }

/* Read-only loads that bypass nothing but say so: weights and caches are not written
 * by the kernels that read them. */
template <typename T> __device__ __forceinline__ float cuk_load_f32(const T *p) { return cuk_to_f32(__ldg(p)); }

/* The operators of the reductions below. */
struct cuk_sum_op {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct cuk_max_op {
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

/* Butterfly over the 32 lanes of a warp: every lane gets op over all of them. */
template <typename T, typename Op> __device__ __forceinline__ T cuk_warp_reduce(T v, Op op)
{
    for (int off = 16; off > 0; off >>= 1)
        v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

__device__ __forceinline__ float cuk_warp_sum(float v) { return cuk_warp_reduce(v, cuk_sum_op()); }
__device__ __forceinline__ float cuk_warp_max(float v) { return cuk_warp_reduce(v, cuk_max_op()); }
__device__ __forceinline__ double cuk_warp_sum_d(double v) { return cuk_warp_reduce(v, cuk_sum_op()); }

/* Block-wide reductions: every thread of the block must call them (blockDim.x a multiple
 * of 32, at most 1024); every thread gets the result. red: 32 slots of shared memory,
 * free again when the call returns; identity: what a lane past the last warp adds. */
template <typename T, typename Op> __device__ __forceinline__ T cuk_block_reduce(T v, T *red, T identity, Op op)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = cuk_warp_reduce(v, op);
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    T t = lane < nwarps ? red[lane] : identity;
    t = cuk_warp_reduce(t, op);
    __syncthreads(); /* red may be reused right after */
    return t;
}

__device__ __forceinline__ float cuk_block_sum(float v, float *red)
{
    return cuk_block_reduce(v, red, 0.0f, cuk_sum_op());
}

__device__ __forceinline__ float cuk_block_max(float v, float *red)
{
    return cuk_block_reduce(v, red, -INFINITY, cuk_max_op());
}

__device__ __forceinline__ double cuk_block_sum_d(double v, double *red)
{
    return cuk_block_reduce(v, red, 0.0, cuk_sum_op());
}

/* The tensor-core GEMV's activations (cuda_gemv_mma.cu): v as three bf16 terms hi + mid +
 * lo that together carry its 24-bit significand, and two bf16 packed as mma wants them. */
__device__ __forceinline__ void cuk_split3(float v, __nv_bfloat16 &h, __nv_bfloat16 &m, __nv_bfloat16 &l)
{
    h = __float2bfloat16_rn(v);
    const float r1 = __fsub_rn(v, __bfloat162float(h));
    m = __float2bfloat16_rn(r1);
    l = __float2bfloat16_rn(__fsub_rn(r1, __bfloat162float(m)));
}

__device__ __forceinline__ uint32_t cuk_pack_bf16x2(__nv_bfloat16 lo, __nv_bfloat16 hi)
{
    return (uint32_t)__bfloat16_as_ushort(lo) | ((uint32_t)__bfloat16_as_ushort(hi) << 16);
}

/* The split activations' layout, the one the tensor-core GEMV reads: 16-byte vectors
 * [row][chunk of 32 columns][lane group t4 of 8 columns][term], a vector holding one term's
 * bf16 of columns 32 chunk + 8 t4 .. +7. Index of (row r, chunk c, t4)'s first term. */
__device__ __forceinline__ int64_t cuk_xsplit_index(int64_t r, int64_t chunks, int64_t c, int t4)
{
    return ((r * chunks + c) * 4 + t4) * 3;
}

/* Columns col .. col+7 (col % 8 == 0) of row r, from v[0..8): one vector of each term. */
__device__ __forceinline__ void cuk_xsplit_store8(uint4 *xs, int64_t r, int64_t chunks, int64_t col, const float *v)
{
    uint32_t term[3][4];
#pragma unroll
    for (int p = 0; p < 4; p++) {
        __nv_bfloat16 h[2], m[2], l[2];
        cuk_split3(v[2 * p], h[0], m[0], l[0]);
        cuk_split3(v[2 * p + 1], h[1], m[1], l[1]);
        term[0][p] = cuk_pack_bf16x2(h[0], h[1]);
        term[1][p] = cuk_pack_bf16x2(m[0], m[1]);
        term[2][p] = cuk_pack_bf16x2(l[0], l[1]);
    }
    uint4 *dst = xs + cuk_xsplit_index(r, chunks, col / 32, (int)(col % 32) / 8);
#pragma unroll
    for (int k = 0; k < 3; k++)
        dst[k] = make_uint4(term[k][0], term[k][1], term[k][2], term[k][3]);
}

/* Columns col .. col+3 (col % 4 == 0) of row r, from o: half of one vector of each term
 * (xs viewed as 8-byte halves). */
__device__ __forceinline__ void cuk_xsplit_store4(uint2 *xs, int64_t r, int64_t chunks, int64_t col, float4 o)
{
    __nv_bfloat16 h[4], m[4], l[4];
    cuk_split3(o.x, h[0], m[0], l[0]);
    cuk_split3(o.y, h[1], m[1], l[1]);
    cuk_split3(o.z, h[2], m[2], l[2]);
    cuk_split3(o.w, h[3], m[3], l[3]);
    uint2 *dst = xs + cuk_xsplit_index(r, chunks, col / 32, (int)(col % 32) / 8) * 2 + (col % 8) / 4;
    dst[0] = make_uint2(cuk_pack_bf16x2(h[0], h[1]), cuk_pack_bf16x2(h[2], h[3]));
    dst[2] = make_uint2(cuk_pack_bf16x2(m[0], m[1]), cuk_pack_bf16x2(m[2], m[3]));
    dst[4] = make_uint2(cuk_pack_bf16x2(l[0], l[1]), cuk_pack_bf16x2(l[2], l[3]));
}

/* Programmatic dependent launch. Every kernel of these files calls cuk_begin before it
 * reads or writes anything: it waits until the kernel before it in the stream has
 * finished and its writes are visible (a no-op when launched plainly), then lets the
 * kernel after it be placed on the multiprocessors its own blocks leave free, where that
 * one waits in turn. Only the wait is needed for correctness; the signal after it keeps
 * at most one kernel waiting ahead. The tensor-core GEMV calls the two apart: it loads
 * weights (no kernel's output) before its wait and signals after its main loop. */
__device__ __forceinline__ void cuk_wait_prior()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void cuk_allow_next()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void cuk_begin()
{
    cuk_wait_prior();
    cuk_allow_next();
}

/* kernel<<<grid, block, smem, s.stream>>>(args...), as a programmatic dependent of the
 * kernel before it when s.early. The error is also left for cudaGetLastError. */
template <typename... Params, typename... Args>
static inline cudaError_t cuk_launch(cuk_stream s, dim3 grid, dim3 block, size_t smem, void (*kernel)(Params...),
                                     Args &&...args)
{
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s.stream;
    cfg.attrs = attr;
    cfg.numAttrs = s.early ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...);
}

/* Grid size for a grid-stride loop over count elements. */
static inline unsigned cuk_blocks_for(int64_t count, int threads)
{
    int64_t b = (count + threads - 1) / threads;
    if (b > 65535 * 8)
        b = 65535 * 8;
    return (unsigned)(b < 1 ? 1 : b);
}

#endif
