/* Architecture hyper-parameters of a Llama-family model, from a Hugging Face
 * config.json or a llama2.c checkpoint header. */
#ifndef AUGUR_MODEL_CONFIG_H
#define AUGUR_MODEL_CONFIG_H

#include <stdbool.h>

#include "base/error.h"

#define AUGUR_MAX_EOS 8

typedef enum {
    ROPE_PAIRS_HALF = 0,     /* Hugging Face: element i pairs with i + head_dim/2 */
    ROPE_PAIRS_ADJACENT = 1, /* llama2.c: elements (2i, 2i+1) pair */
} rope_pairing;

typedef struct {
    bool enabled;            /* rope_scaling.rope_type == "llama3" */
    float factor;
    float low_freq_factor;
    float high_freq_factor;
    int original_max_position;
} rope_llama3_scaling;

typedef struct {
    char model_type[32];     /* "llama", "mistral", "qwen2", or "llama2c" */
    int dim;                 /* hidden_size */
    int hidden_dim;          /* intermediate_size */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;            /* config head_dim, else dim / n_heads */
    int vocab_size;
    int max_seq_len;         /* max_position_embeddings */
    float rms_norm_eps;
    float rope_theta;
    rope_llama3_scaling rope_scaling;
    rope_pairing rope_pairs;
    bool tie_embeddings;
    bool attn_bias;          /* qwen2: q/k/v projections carry biases */
    int bos_id;              /* -1 when absent */
    int eos_ids[AUGUR_MAX_EOS];
    int n_eos;
} model_config;

/* Checks internal consistency (heads divide dim, kv heads divide heads, ...). */
augur_status model_config_validate(const model_config *cfg, const char *source, augur_error *err);

bool model_config_is_eos(const model_config *cfg, int token);

#endif
