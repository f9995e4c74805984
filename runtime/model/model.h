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
 *   - tok_embedding and norms: replicated.
 *
 * Where the weights live (m->backend): model_load leaves them in host memory (NULL);
 * model_to_backend moves them into a compute backend's memory, and model_load_dummy
 * makes random ones there without a checkpoint (runtime/model_device.c). Every view's
 * data and every fp32 array is then an address in that backend's memory. */
#ifndef AUGUR_MODEL_H
#define AUGUR_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/model_config.h"
#include "base/tensor.h"

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
    const char *who;         /* names this load in progress lines ("rank 3 (target shard)"); NULL: "model";
                              * read only during the load call */
} model_load_opts;

typedef struct mapped_file mapped_file; /* runtime/mapped_file.h */
typedef struct safetensors_file safetensors_file; /* runtime/safetensors.h */
typedef struct augur_backend augur_backend; /* kernels/backend.h */

/* Who owns the weight memory, and so how model_free releases it. */
typedef enum {
    MODEL_WEIGHTS_HOST = 0,  /* views into the mapped checkpoint, malloc'ed fp32 arrays */
    MODEL_WEIGHTS_UPLOADED,  /* views from backend_weight_upload, arrays from backend_alloc */
    MODEL_WEIGHTS_ALLOCATED, /* views and arrays from backend_alloc (model_load_dummy) */
} model_weight_memory;

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
    augur_backend *backend;  /* whose memory the weights are in; NULL = host memory, as loaded */
    model_weight_memory memory;
    char source[512];        /* path it was loaded from, for messages */
} model;

/* Loads a Hugging Face model directory (config.json + safetensors) or a llama2.c
 * checkpoint file (.bin). opts may be NULL (single rank, all layers). */
augur_status model_load(model *m, const char *path, const model_load_opts *opts, augur_error *err);

/* Releases the weights (host or backend memory; the backend itself stays) and zeroes m
 * but for m->source. Fine on a zeroed or failed model. */
void model_free(model *m);

/* ---- runtime/model_device.c ---- */

/* Moves a loaded model's weights into be's memory. For "cpu" it only records be (the
 * views into the mapped checkpoint are already its memory). Otherwise every matrix goes
 * through backend_weight_upload and every fp32 array through backend_alloc +
 * backend_upload; a tied lm_head stays an alias of the embedding rows it covers; then
 * the host arrays are freed and the mapped checkpoint closed. On error m is unchanged
 * (still in host memory) and freeable. A model already in be: no-op; in another
 * backend: AUGUR_E_INTERNAL. */
augur_status model_to_backend(model *m, augur_backend *be, augur_error *err);

/* A model of path's shape with random weights made in be's memory, for benchmarks and
 * memory tests without a checkpoint. path is a model directory or its config.json;
 * only the config is read. This rank's shard is planned as model_load plans it, with
 * opts as there (NULL: one rank, all layers). Matrices are bf16, uniform in
 * ±1/sqrt(in_features) (the embedding ±1); norms (1.0) and biases (uniform in ±0.02)
 * are fp32 arrays. Each tensor's values are a function of (seed, tensor) and a shard holds
 * exactly its slice of the unsharded tensor, so any tp_size computes the same model and
 * a max_layers draft shares its layers with the full model. Tied embeddings: lm_head
 * aliases this rank's vocabulary rows of the embedding. */
augur_status model_load_dummy(model *m, const char *path, const model_load_opts *opts, augur_backend *be,
                              uint64_t seed, augur_error *err);

/* Bytes this rank's shard of the weights takes with matrices in dtype, fp32 norms and
 * biases, packed rows (as model_load_dummy makes them; the CUDA backend's uploads pad
 * rows to 16 bytes, which real models' shapes rarely need). c is the whole model's
 * config; opts may be NULL; 0 when opts do not fit the config's head layout. */
size_t model_weight_bytes(const model_config *c, const model_load_opts *opts, augur_dtype dtype);

/* Splits n items over size ranks as evenly as possible: rank r gets [*start, *start+*count). */
void tp_split(int n, int size, int rank, int *start, int *count);

/* Checks that tp_size fits the head layout; the message names the fields at fault. */
augur_status tp_check_layout(const model_config *cfg, int tp_size, augur_error *err);

#endif
