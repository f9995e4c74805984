/* The second half of the NCCL fixed-order all-reduce (collectives_nccl.c): after an
 * all-gather of every rank's partial sums, each element is added left to right in rank
 * order, ((x0 + x1) + x2) + ..., in fp32 as the MPI implementation does on the host, so
 * the result depends on the values alone and never on the message size or NCCL's
 * algorithm (DESIGN §8, batch invariance). */
#include <cuda_runtime.h>
#include <stddef.h>

#include "comm/nccl_ordered_sum.h"

__global__ void sum_ranks_kernel(float *out, const float *parts, int ranks, size_t count)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        float s = parts[i];
        for (int r = 1; r < ranks; r++)
            s = __fadd_rn(s, parts[(size_t)r * count + i]); /* never contracted or reassociated */
        out[i] = s;
    }
}

extern "C" cudaError_t nccl_sum_ranks_f32(float *out, const float *parts, int ranks, size_t count,
                                          cudaStream_t stream)
{
    if (count == 0)
        return cudaSuccess;
    const int threads = 256;
    size_t blocks = (count + threads - 1) / threads;
    if (blocks > 1024)
        blocks = 1024;
    sum_ranks_kernel<<<(unsigned)blocks, threads, 0, stream>>>(out, parts, ranks, count);
    return cudaGetLastError();
}
