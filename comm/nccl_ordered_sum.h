/* Rank-order sum of all-gathered partials on the GPU (comm/nccl_ordered_sum.cu). */
#ifndef AUGUR_NCCL_ORDERED_SUM_H
#define AUGUR_NCCL_ORDERED_SUM_H

#include <stddef.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[i] = ((parts[0][i] + parts[1][i]) + ...) + parts[ranks-1][i] for i < count, in fp32;
 * parts is [ranks][count] device memory; enqueued on stream. */
cudaError_t nccl_sum_ranks_f32(float *out, const float *parts, int ranks, size_t count, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
