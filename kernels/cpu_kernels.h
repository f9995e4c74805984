/* CPU kernels: fp32 math over fp32/fp16/bf16 weights.
 *
 * Correctness contract (DESIGN §8): every output row is computed with the same
 * sequence of floating-point operations whatever the number of rows n in the call,
 * so a verification forward over γ+1 positions reproduces a one-position forward bit
 * for bit. Threads split work over output features (and heads), never over a
 * reduction. */
#ifndef AUGUR_CPU_KERNELS_H
#define AUGUR_CPU_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "base/model_config.h"
#include "base/tensor.h"

/* out[i][o] = sum_c x[i][c] * W[o][c] (+ bias[o]) for i < n, o < W.rows; x is
 * [n][W.cols]. bias may be NULL. threads >= 1. */
void cpu_matmul(float *out, const float *x, int n, const tensor_view *w, const float *bias, int threads);

/* cpu_matmul's code paths. Every path gives the same bits (no FMA, same lane order); they
 * differ only in speed. Exposed so that tests and benchmarks can cover each path. */
typedef enum { CPU_ISA_BASELINE = 0, CPU_ISA_AVX2 = 1, CPU_ISA_AVX512 = 2 } cpu_isa;

/* The widest path this CPU (and OS) supports; the one cpu_matmul takes. */
cpu_isa cpu_best_isa(void);

/* cpu_matmul on a given path; an isa beyond cpu_best_isa() falls back to the best one. */
void cpu_matmul_isa(cpu_isa isa, float *out, const float *x, int n, const tensor_view *w, const float *bias,
                    int threads);

/* Converts count contiguous elements of dtype to fp32 (the conversion behind cpu_matmul
 * and cpu_embedding). Bit-identical to augur_bf16_to_f32 / augur_f16_to_f32, except that
 * a signalling fp16 NaN comes out quiet, as the F16C instruction makes it. */
void cpu_convert_f32(float *out, const void *src, augur_dtype dtype, int64_t count);

/* out[i] = x[i] / sqrt(mean(x[i]^2) + eps) * weight, per row of dim elements. out may alias x. */
void cpu_rmsnorm(float *out, const float *x, const float *weight, int n, int dim, float eps);

/* Inverse frequencies for RoPE, head_dim/2 values, with llama3 scaling applied when enabled. */
void rope_inv_freq(float *inv_freq, int head_dim, float theta, const rope_llama3_scaling *scaling);

/* Rotates x = [n][n_heads][head_dim] in place; row i is at position positions[i]. */
void cpu_rope(float *x, int n, int n_heads, int head_dim, const int *positions,
              const float *inv_freq, rope_pairing pairs);

/* Causal grouped-query attention of n new query rows against a KV cache.
 * q: [n][n_heads][head_dim]; k_cache, v_cache: [rows][n_kv_heads][head_dim],
 * already holding positions 0 .. start_pos+n-1: position p at row p, or with a block
 * table (NULL: none) at row block_table[p / block_size] * block_size + p % block_size,
 * with the same arithmetic. Query row i (position start_pos+i) attends to positions
 * 0 .. start_pos+i. Query head h uses KV head h / (n_heads/n_kv_heads).
 * out: [n][n_heads][head_dim]. scratch: at least threads * (start_pos + n) floats. */
void cpu_attention(float *out, const float *q, int n, int start_pos, int n_heads, int n_kv_heads,
                   int head_dim, const float *k_cache, const float *v_cache, const int32_t *block_table,
                   int block_size, float *scratch, int threads);

/* out[i] = silu(gate[i]) * up[i]; out may alias gate. */
void cpu_swiglu(float *out, const float *gate, const float *up, int64_t count);

/* out[i] = table row ids[i] converted to fp32 ([n][table.cols]). */
void cpu_embedding(float *out, const tensor_view *table, const int32_t *ids, int n);

/* In-place numerically stable softmax over n values. */
void cpu_softmax(float *x, int n);

/* out[i] = a[i] + b[i]. */
void cpu_add(float *out, const float *a, const float *b, int64_t count);

#endif
