/* A loaded model: its configuration and this rank's slice of its weights.
 *
 * Large matrices stay in the memory-mapped checkpoint (tensor_view into the mapping);
 * norms and biases are small and are converted to owned fp32 arrays at load time.
 *
 * Tensor parallelism (DESIGN §5) with tp_size T, tp_rank r:
 *   - wq, wk, wv, w_gate, w_up: column-parallel, this rank's rows of the [out, in] matrix
 *     (query heads [r*H/T, (r+1)*H/T); KV heads likewise, or the one KV head those query
 *     heads use when T exceeds n_kv_heads).
 *   - wo, w_down: row-parallel, this rank's columns (a strided view).
 *   - lm_head: vocab-parallel, rows [vocab_start, vocab_start + vocab_local).
 *   - tok_embedding and norms: replicated. */
#ifndef AUGUR_MODEL_H
#define AUGUR_MODEL_H

#include <stdint.h>

#include "runtime/error.h"
#include "runtime/model_config.h"
#include "runtime/tensor.h"

typedef struct {
    float *attn_norm;        /* [dim] */
    float *ffn_norm;         /* [dim] */
    tensor_view wq;          /* [n_heads_local*head_dim, dim] */
    tensor_view wk;          /* [n_kv_heads_local*head_dim, dim] */
    tensor_view wv;          /* [n_kv_heads_local*head_dim, dim] */
    tensor_view wo;          /* [dim, n_heads_local*head_dim] (strided) */
    float *bq, *bk, *bv;     /* attention biases (qwen2) or NULL */
    tensor_view w_gate;      /* [hidden_local, dim] */
    tensor_view w_up;        /* [hidden_local, dim] */
    tensor_view w_down;      /* [dim, hidden_local] (strided) */
} layer_weights;

typedef struct {
    tensor_view tok_embedding; /* [vocab, dim], replicated */
    layer_weights *layers;     /* [n_layers] */
    float *final_norm;         /* [dim] */
    tensor_view lm_head;       /* [vocab_local, dim]; aliases tok_embedding rows when tied */
} model_weights;

typedef struct {
    int tp_rank;             /* 0 for single-process use */
    int tp_size;             /* 1 for single-process use */
    int max_layers;          /* >0: keep only the first k layers (self-draft); 0 = all */
} model_load_opts;

typedef struct mapped_file mapped_file; /* runtime/mapped_file.h */
typedef struct safetensors_file safetensors_file; /* runtime/safetensors.h */

typedef struct {
    model_config cfg;        /* the whole model's config (n_layers reflects max_layers) */
    model_load_opts opts;
    int n_heads_local;
    int n_kv_heads_local;
    int head_start;          /* first global query head of this rank */
    int kv_head_start;       /* first global KV head of this rank */
    int hidden_local;        /* intermediate columns of this rank */
    int hidden_start;
    int vocab_start;         /* first vocabulary row of this rank's lm_head shard */
    int vocab_local;
    model_weights w;
    safetensors_file **shards; /* Hugging Face weights the views point into */
    int n_shards;
    mapped_file *llama2c;    /* or the llama2.c checkpoint they point into */
    char source[512];        /* path it was loaded from, for messages */
} model;

/* Loads a Hugging Face model directory (config.json + safetensors) or a llama2.c
 * checkpoint file (.bin). opts may be NULL (single rank, all layers). */
augur_status model_load(model *m, const char *path, const model_load_opts *opts, augur_error *err);
void model_free(model *m);

/* Splits n items over size ranks as evenly as possible: rank r gets [*start, *start+*count). */
void tp_split(int n, int size, int rank, int *start, int *count);

/* Checks that tp_size fits the head layout; the message names the fields at fault. */
augur_status tp_check_layout(const model_config *cfg, int tp_size, augur_error *err);

#endif
