/* Launchers of the CUDA kernels (the .cu files beside this one), callable from C.
 *
 * Each enqueues its kernel(s) on `stream` and returns cudaGetLastError() (a launch
 * failure, or an earlier asynchronous error). Pointers are device memory; shapes have
 * been checked by the caller (kernels/cuda/backend_cuda.c). Weight dtypes are
 * augur_dtype values. */
#ifndef AUGUR_CUDA_KERNELS_H
#define AUGUR_CUDA_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "kernels/fused_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where the kernels of a launcher go. early: launch them as programmatic dependents
 * (Hopper): a kernel's blocks may be placed while the kernel before it drains, and wait
 * for it (griddepcontrol.wait) before touching memory, so the gap between kernels
 * closes and a matrix product streams its first weights meanwhile. Every kernel of
 * these launchers waits first, so early changes when they start, never what they read. */
typedef struct {
    cudaStream_t stream;
    bool early;
} cuk_stream;

/* Rows of x one GEMV pass keeps in registers: each weight is read once per this many rows. */
#define CUK_GEMV_MAX_ROWS 16


/* out[i][o] = sum_c x[i][c] * w[o][c] (+ bias[o]): warp per output feature, fp32
 * accumulation with fmaf in a fixed order per (row, feature) whatever n is. w is [rows]
 * rows of cols elements, row o at w + o*ld. Any n (passes of CUK_GEMV_MAX_ROWS rows). */
cudaError_t cuk_gemv(cuk_stream stream, float *out, const float *x, int n, const void *w, int dtype, int64_t rows,
                     int64_t cols, int64_t ld, const float *bias);

/* Whether cuk_gemv_mma can take this product: bf16 weights in 16-byte aligned rows. A
 * function of the weights' shape and allocation, never of the number of rows. */
bool cuk_gemv_mma_eligible(const void *w, int dtype, int64_t cols, int64_t ld, const float *x);

/* Bytes of device scratch for n rows of cols split into bf16 terms (cuk_gemv_split_x). */
size_t cuk_gemv_mma_scratch(int n, int64_t cols);

/* x (n rows of cols) as the three bf16 terms cuk_gemv_mma reads, into scratch. */
cudaError_t cuk_gemv_split_x(cuk_stream stream, void *scratch, const float *x, int n, int64_t cols);

/* cuk_gemv on the tensor cores (kernels/cuda/cuda_gemv_mma.cu) over x as split by
 * cuk_gemv_split_x: the same product, each output a function of its own row of x and its
 * feature's weights only. Any n. */
cudaError_t cuk_gemv_mma(cuk_stream stream, float *out, const void *x_split, int n, const void *w, int64_t rows,
                         int64_t cols, int64_t ld, const float *bias);

/* One product of cuk_gemv_mma_parts: out [n][rows] from bf16 w ([rows] rows, row o at w + o*ld). */
typedef struct {
    float *out;
    const void *w;
    int64_t rows, ld;
    const float *bias; /* may be NULL */
} cuk_mma_part;
#define CUK_MMA_MAX_PARTS 3

/* 1 to CUK_MMA_MAX_PARTS products of the same split x (cols columns) in one launch, each
 * output bit for bit what cuk_gemv_mma computes for its part alone. */
cudaError_t cuk_gemv_mma_parts(cuk_stream stream, const void *x_split, int n, int64_t cols, const cuk_mma_part *part,
                               int count);

/* dst[i] = x[i] rounded to nearest-even bf16 (dtype AUGUR_BF16) or fp16 (AUGUR_F16). */
cudaError_t cuk_round_activations(cuk_stream stream, void *dst, const float *x, int64_t count, int dtype);

/* out[i][o] += bias[o] over n rows of rows values. */
cudaError_t cuk_add_bias(cuk_stream stream, float *out, const float *bias, int n, int64_t rows);

cudaError_t cuk_rmsnorm(cuk_stream stream, float *out, const float *x, const float *weight, int n, int dim, float eps);

/* Whether cuk_rmsnorm_fused takes these buffers (16-byte aligned, dim % 4 == 0, dim <=
 * 16384). */
bool cuk_rmsnorm_fused_ok(const float *out, const float *x, const float *partial, const float *weight, int dim);

/* cuk_rmsnorm with, when partial is given, x += partial first (x is stored updated; out
 * must alias neither), and, when x_split is given (dim % 32 == 0), out also written as
 * cuk_gemv_split_x would split it. Bit for bit cuk_add + cuk_rmsnorm + cuk_gemv_split_x. */
cudaError_t cuk_rmsnorm_fused(cuk_stream stream, float *out, float *x, const float *partial, const float *weight, int n,
                              int dim, float eps, void *x_split);

/* pairs: 0 = half (Hugging Face), 1 = adjacent (llama2.c), as rope_pairing. */
cudaError_t cuk_rope(cuk_stream stream, float *x, int n, int n_heads, int head_dim, int start_pos, const int *pos_dev,
                     const float *inv_freq, int pairs);

/* One launch for cuk_rope on q ([n][n_heads][head_dim]) and on k ([n][n_kv_heads]
 * [head_dim]), then cuk_store_rows of k into k_cache and of v into v_cache (rows of
 * n_kv_heads * head_dim), bit for bit; start_pos, pos_dev and the block table as there.
 * No buffer may overlap another; cudaErrorInvalidValue for an empty or odd shape. */
cudaError_t cuk_rope_store(cuk_stream stream, float *q, float *k, const float *v, int n, int n_heads, int n_kv_heads,
                           int head_dim, int start_pos, const int *pos_dev, const float *inv_freq, int pairs,
                           float *k_cache, float *v_cache, const int *block_table, int block_size);
/* Bytes of dynamic shared memory cuk_attention_single needs for a context of max_len. */
size_t cuk_attention_single_smem(int max_len, int head_dim);

/* The attention launchers below read position p of the cache at row p, or with a
 * block table (device int32, NULL: none) at row block_table[p / block_size] * block_size
 * + p % block_size (a paged cache), with the same arithmetic. */

/* One block per (query row, head): the row's scores in shared memory. */
cudaError_t cuk_attention_single(cuk_stream stream, float *out, const float *q, int n, int start_pos, int n_heads,
                                 int n_kv_heads, int head_dim, const float *k_cache, const float *v_cache,
                                 const int *block_table, int block_size);

/* Floats of scratch cuk_attention_split needs. */
size_t cuk_attention_split_scratch(int n, int n_heads, int head_dim, int max_splits);

/* Flash-decoding: the context split into chunks of `chunk` positions, one block per
 * (chunk, head, row) writing a partial (max, sum, unnormalised output) to scratch, then a
 * combine kernel. max_splits = ceil((start_pos + n) / chunk). */
cudaError_t cuk_attention_split(cuk_stream stream, float *out, const float *q, int n, int start_pos, int n_heads,
                                int n_kv_heads, int head_dim, const float *k_cache, const float *v_cache,
                                const int *block_table, int block_size, int chunk, int max_splits, float *scratch);

/* Positions of a chunk of cuk_attention_grouped (the invariant chunk: cuda_backend.h). */
#define CUK_ATT_GROUP_CHUNK 64

/* Bytes of dynamic shared memory cuk_attention_grouped needs. */
size_t cuk_attention_grouped_smem(int head_dim);

/* Split attention over chunks of 64 absolute positions, one block per (chunk, KV head,
 * 8 of its (row, query head) pairs) serving them from K and V staged once (scratch: as
 * cuk_attention_split with max_splits = ceil((start_pos + n) / 64)); then the combine,
 * which with x_split (NULL: none; head_dim % 32 == 0) also writes out split as
 * cuk_gemv_split_x would (n rows of n_heads * head_dim), for the product after it. */
cudaError_t cuk_attention_grouped(cuk_stream stream, float *out, const float *q, int n, int start_pos,
                                  const int *pos_dev, int max_positions, int n_heads, int n_kv_heads, int head_dim,
                                  const float *k_cache, const float *v_cache, const int *block_table, int block_size,
                                  float *scratch, void *x_split);

/* Rows 0..n-1 of src (row_floats each) to the rows of positions start..start+n-1 of
 * base (through block_table when not NULL, as attention); with pos_dev, start is read
 * from device memory when the kernel runs (a captured step). */
cudaError_t cuk_store_rows(cuk_stream stream, float *base, const float *src, int64_t row_floats, int n, int start,
                           const int *pos_dev, const int *block_table, int block_size);
cudaError_t cuk_swiglu(cuk_stream stream, float *out, const float *gate, const float *up, int64_t count);

/* Whether cuk_swiglu_split takes these buffers: cols % 32 == 0, all three 16-byte aligned. */
bool cuk_swiglu_split_ok(const float *out, const float *gate, const float *up, int64_t cols);

/* cuk_swiglu over n rows of cols that also writes out, split as cuk_gemv_split_x would
 * split it, into x_split (cuk_gemv_mma_scratch(n, cols) bytes): bit for bit cuk_swiglu +
 * cuk_gemv_split_x. out may alias gate. */
cudaError_t cuk_swiglu_split(cuk_stream stream, float *out, const float *gate, const float *up, int n, int64_t cols,
                             void *x_split);

cudaError_t cuk_embedding(cuk_stream stream, float *out, const void *table, int dtype, int64_t vocab, int64_t cols,
                          int64_t ld, const int32_t *ids, int n);

cudaError_t cuk_add(cuk_stream stream, float *out, const float *a, const float *b, int64_t count);

cudaError_t cuk_softmax(cuk_stream stream, float *x, int rows, int cols);

cudaError_t cuk_argmax(cuk_stream stream, int32_t *out, float *max_out, const float *x, int rows, int cols);

/* cuk_argmax of one row into *out; with ids, also ids[0] = that id and *pos += advance
 * (the next step of a greedy chain reads both). */
cudaError_t cuk_argmax_feed(cuk_stream stream, int32_t *out, int32_t *ids, int32_t *pos, int advance, const float *x,
                            int cols);

/* As sampling_probs per row; temperature <= 0 or NaN means greedy, top_k <= 0 or >= cols
 * and top_p >= 1 are off. */
cudaError_t cuk_sample_probs(cuk_stream stream, float *probs, const float *logits, int rows, int cols,
                             float temperature, int top_k, float top_p);

/* buf[i] = augur_fill_value(seed, i, scale, offset) (kernels/fill_random.h) stored as
 * dtype, for i < count; cudaErrorInvalidValue for any other dtype. */
cudaError_t cuk_fill_random(cuk_stream stream, void *buf, int dtype, int64_t count, uint64_t seed, float scale,
                            float offset);

/* Positions of one attention task of cuk_fused_greedy. */
#define CUK_FUSED_CHUNK 64

/* Why cuk_fused_greedy cannot run m over a cache of layer_rows rows with smem_limit bytes
 * of shared memory a block (NULL: it can). Weights must be bf16 of dense rows; the
 * caller checks dtypes and strides, this checks shapes and alignment. */
const char *cuk_fused_unfit(const augur_fused_model *m, int layer_rows, size_t smem_limit);

/* Bytes of device scratch cuk_fused_greedy needs for blocks blocks. */
size_t cuk_fused_scratch_bytes(const augur_fused_model *m, int layer_rows, int blocks);

/* Blocks of the cooperative grid: want (<= 0: one a multiprocessor), at most what fits
 * on the device at once; 0 when the kernel cannot be placed. */
int cuk_fused_blocks(const augur_fused_model *m, int layer_rows, int sm_count, int want);

/* Greedy chain of a small model in one cooperative launch (kernels/cuda/cuda_fused_step.cu):
 * feeds ids[0..n) (host memory, n <= AUGUR_FUSED_MAX_FEED) at positions start.., then each chosen token, storing every
 * fed position's K and V in kv, and writes the argmax of rows n-1 .. n+steps-2 to
 * out[0..steps) (device or mapped host memory; argmax_f32's rule); with logits (device, may be NULL) also each
 * of those rows' logits, [steps][vocab]. trace (device, may be NULL): block 0 writes
 * (stage, clock64()) pairs, at most trace_cap of them: 5 at the start, then for each stage
 * k (0 norm + q|k|v, 1 attention, 2 combine + gate|up, 3 down, 4 LM head and argmax) 10 + k
 * when its work is done and k when the grid barrier after it returns
 * (tests/gpu/test_fused_draft.c prints their mean durations). */
cudaError_t cuk_fused_greedy(cudaStream_t stream, const augur_fused_model *m, const augur_fused_cache *kv,
                             const int32_t *ids, int n, int start, int steps, int32_t *out, float *logits,
                             void *scratch, int blocks, long long *trace, int trace_cap);

/* The same chain on one thread-block cluster (kernels/cuda/cuda_fused_cluster.cu): each
 * block keeps its share of the layers' weights in shared memory, and the stages exchange
 * their outputs through distributed shared memory. Clusters of at most this many blocks
 * (16 is Hopper's non-portable most). */
#define CUK_FUSED_CLUSTER_MAX 16

/* Why cuk_fused_cluster_greedy cannot run m over a cache of layer_rows rows on a cluster
 * of `ranks` blocks with smem_limit bytes of shared memory a block (NULL: it can). */
const char *cuk_fused_cluster_unfit(const augur_fused_model *m, int layer_rows, size_t smem_limit, int ranks);

/* Most clusters of one launch: the first runs the layers, the others (helpers) only the LM
 * head, each block keeping its share of it in shared memory. */
#define CUK_FUSED_CLUSTER_GROUPS_MAX 8

/* Clusters of `ranks` blocks for one launch: the most the device holds at once
 * (cudaOccupancyMaxActiveClusters), at most want (<= 0: no limit) and
 * CUK_FUSED_CLUSTER_GROUPS_MAX; 1 where the helpers' shares of the LM head would not fit
 * their shared memory; 0 when not even one cluster can be placed. */
int cuk_fused_cluster_groups(const augur_fused_model *m, int layer_rows, int ranks, int want);

/* Bytes of device scratch cuk_fused_cluster_greedy needs for `blocks` blocks in all. */
size_t cuk_fused_cluster_scratch_bytes(const augur_fused_model *m, int blocks);

/* What earlier cluster launches learned, kept by the caller (one per device context, with
 * one scratch it passes to every launch): whether the device refused a cooperative cluster
 * launch (CUDA MPS may; then every later launch goes plainly, without a refused attempt
 * first), whether the kernel's shared-memory limit is raised, and the LM head exchange's
 * words (the scratch, zeroed the first time) with the tag its next launch starts after.
 * Zero-initialised: nothing known. */
typedef struct {
    int cooperative_refused;
    int smem_allowed;
    const void *exchange;
    size_t exchange_bytes;
    unsigned seq;
} cuk_cluster_launch_state;

/* cuk_fused_greedy's chain on `clusters` clusters of `ranks` blocks (the first runs the
 * layers, the others share the LM head; cuk_fused_cluster_groups says how many): the same
 * arguments and outputs; out may be mapped host memory. scratch: scratch_bytes of device
 * memory (at least cuk_fused_cluster_scratch_bytes), only ever given to this function.
 * trace: the first block's (stage, clock64) pairs: 9 at the start, then for each stage k
 * (0 norm + q|k|v, 1 attention, 2 combine + W_o, 3 norm + gate|up, 4 down, 5 LM head) 10
 * + k when its work is done and k when the barrier (or, for the LM head, the bests it
 * reduces) after it returns. The tokens and logits do not depend on `ranks` or
 * `clusters`. state (may be NULL: the scratch is zeroed and the limit raised afresh). */
cudaError_t cuk_fused_cluster_greedy(cudaStream_t stream, const augur_fused_model *m, const augur_fused_cache *kv,
                                     const int32_t *ids, int n, int start, int steps, int32_t *out, float *logits,
                                     int ranks, int clusters, void *scratch, size_t scratch_bytes,
                                     cuk_cluster_launch_state *state, long long *trace, int trace_cap);

#ifdef __cplusplus
}
#endif

#endif
