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
