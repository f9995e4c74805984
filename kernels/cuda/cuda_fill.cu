/* backend_fill_random on the device: the generator of kernels/fill_random.h, the same
 * code the CPU backend runs, so both write the same bits for the same seed. The
 * float-to-16-bit conversions are the round-to-nearest-even intrinsics, which agree
 * with augur_f32_to_bf16 / augur_f32_to_f16 on every finite value. */
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/fill_random.h"

#define FILL_THREADS 256

__device__ __forceinline__ void fill_store(float *p, float v) { *p = v; }
__device__ __forceinline__ void fill_store(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void fill_store(__half *p, float v) { *p = __float2half_rn(v); }

template <typename T>
__global__ void __launch_bounds__(FILL_THREADS)
    fill_random_kernel(T *buf, int64_t count, uint64_t seed, float scale, float offset)
{
    cuk_begin();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        fill_store(buf + i, augur_fill_value(seed, (uint64_t)i, scale, offset));
}

extern "C" cudaError_t cuk_fill_random(cuk_stream stream, void *buf, int dtype, int64_t count, uint64_t seed,
                                       float scale, float offset)
{
    const unsigned blocks = cuk_blocks_for(count, FILL_THREADS);
    switch (dtype) {
    case AUGUR_F32:
        cuk_launch(stream, blocks, FILL_THREADS, 0, fill_random_kernel<float>, (float *)buf, count, seed, scale,
                   offset);
        break;
    case AUGUR_BF16:
        cuk_launch(stream, blocks, FILL_THREADS, 0, fill_random_kernel<__nv_bfloat16>, (__nv_bfloat16 *)buf, count,
                   seed, scale, offset);
        break;
    case AUGUR_F16:
        cuk_launch(stream, blocks, FILL_THREADS, 0, fill_random_kernel<__half>, (__half *)buf, count, seed, scale,
                   offset);
        break;
    default:
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}
