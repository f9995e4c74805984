/* A small Llama-architecture model described for one fused launch (backend_greedy_fused):
 * the addresses of its weights in a backend's memory and the shapes that go with them.
 * Plain C, read by the runtime (runtime/forward.c builds it from a model) and by the CUDA
 * kernel that runs it (kernels/cuda/cuda_fused_step.cu). */
#ifndef AUGUR_FUSED_MODEL_H
#define AUGUR_FUSED_MODEL_H

#include <stdint.h>

/* Layers a fused model may have: its descriptor travels by value as the kernel's
 * parameter, and a model deeper than this is not the latency-bound kind it is for. */
#define AUGUR_FUSED_MAX_LAYERS 16

/* Tokens the first row(s) of a fused chain may feed: they travel in the parameter too. */
#define AUGUR_FUSED_MAX_FEED 16

/* One layer: fp32 norm weights, bf16 matrices of dense rows ([out][in], no padding). */
typedef struct {
    const float *attn_norm, *ffn_norm; /* [dim] */
    const void *wq, *wk, *wv;          /* [n_heads|n_kv_heads * head_dim][dim] */
    const void *wo;                    /* [dim][n_heads * head_dim] */
    const void *w_gate, *w_up;         /* [hidden][dim] */
    const void *w_down;                /* [dim][hidden] */
} augur_fused_layer;

typedef struct {
    int n_layers, dim, n_heads, n_kv_heads, head_dim, hidden, vocab;
    float eps;               /* RMSNorm epsilon */
    int rope_pairs;          /* rope_pairing: 0 halves (HF), 1 adjacent */
    const float *inv_freq;   /* [head_dim / 2] */
    const void *embedding;   /* [vocab][dim] bf16 */
    const void *lm_head;     /* [vocab][dim] bf16 (may alias embedding) */
    const float *final_norm; /* [dim] */
    augur_fused_layer layers[AUGUR_FUSED_MAX_LAYERS];
} augur_fused_model;

/* A contiguous KV cache: layer l's position p at k + (l * layer_rows + p) * n_kv_heads *
 * head_dim (fp32), as runtime/kv_cache.h lays it out. */
typedef struct {
    float *k, *v;
    int layer_rows;
} augur_fused_cache;

#endif
