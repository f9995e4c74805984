#include "runtime/model/convert_llama2c.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/model/model.h"
#include "runtime/model/safetensors.h"

/* HF row j of a head comes from llama2.c row 2j (first half) or 2(j - hd/2) + 1 (second half):
 * the inverse of the permutation Hugging Face's Llama conversion applies. */
static float *permute_rope_rows(const tensor_view *w, int n_heads, int head_dim)
{
    int64_t cols = w->cols;
    float *out = malloc((size_t)(w->rows * cols) * sizeof(float));
    if (!out)
        return NULL;
    for (int h = 0; h < n_heads; h++) {
        for (int j = 0; j < head_dim; j++) {
            int src = j < head_dim / 2 ? 2 * j : 2 * (j - head_dim / 2) + 1;
            tensor_row_to_f32(w, (int64_t)h * head_dim + src, out + ((int64_t)h * head_dim + j) * cols);
        }
    }
    return out;
}

static float *copy_rows(const tensor_view *w)
{
    float *out = malloc((size_t)(w->rows * w->cols) * sizeof(float));
    if (!out)
        return NULL;
    for (int64_t r = 0; r < w->rows; r++)
        tensor_row_to_f32(w, r, out + r * w->cols);
    return out;
}

static augur_status add_matrix(safetensors_writer *wr, const char *name, const tensor_view *w, float *owned,
                               augur_error *err)
{
    float *data = owned ? owned : copy_rows(w);
    if (!data)
        return augur_fail(err, AUGUR_E_NOMEM, "convert: out of memory for %s", name);
    int64_t shape[2] = {w->rows, w->cols};
    augur_status st = safetensors_writer_add(wr, name, AUGUR_F32, 2, shape, data, err);
    free(data);
    return st;
}

static augur_status add_vector(safetensors_writer *wr, const char *name, const float *v, int64_t n,
                               augur_error *err)
{
    return safetensors_writer_add(wr, name, AUGUR_F32, 1, &n, v, err);
}

static augur_status write_config(const model_config *c, const char *dir, augur_error *err)
{
    json_t *cfg = json_pack(
        "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:i, s:i, s:s, s:s, s:b, s:b}",
        "architectures", "LlamaForCausalLM", "model_type", "llama", "hidden_size", c->dim, "intermediate_size",
        c->hidden_dim, "num_hidden_layers", c->n_layers, "num_attention_heads", c->n_heads, "num_key_value_heads",
        c->n_kv_heads, "head_dim", c->head_dim, "vocab_size", c->vocab_size, "max_position_embeddings",
        c->max_seq_len, "rms_norm_eps", (double)c->rms_norm_eps, "rope_theta", (double)c->rope_theta,
        "tie_word_embeddings", c->tie_embeddings, "bos_token_id", c->bos_id, "eos_token_id", c->eos_ids[0],
        "torch_dtype", "float32", "hidden_act", "silu", "attention_bias", 0, "mlp_bias", 0);
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = cfg ? json_dump_file(cfg, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : -1;
    json_decref(cfg);
    return rc ? augur_fail(err, AUGUR_E_IO, "%s: cannot write", path) : AUGUR_OK;
}

augur_status convert_llama2c_to_hf(const char *bin_path, const char *out_dir, augur_error *err)
{
    struct stat st;
    if (stat(bin_path, &st) == 0 && S_ISDIR(st.st_mode))
        return augur_fail(err, AUGUR_E_INPUT, "%s is a directory, not a llama2.c checkpoint", bin_path);
    model m;
    augur_status s = model_load(&m, bin_path, NULL, err);
    if (s)
        return s;
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        model_free(&m);
        return augur_fail(err, AUGUR_E_IO, "%s: cannot create directory: %s", out_dir, strerror(errno));
    }
    const model_config *c = &m.cfg;
    safetensors_writer *wr = safetensors_writer_new();
    if (!wr) {
        model_free(&m);
        return augur_fail(err, AUGUR_E_NOMEM, "convert: out of memory");
    }
    char name[128];
    s = add_matrix(wr, "model.embed_tokens.weight", &m.w.tok_embedding, NULL, err);
    for (int l = 0; !s && l < c->n_layers; l++) {
        const layer_weights *lw = &m.w.layers[l];
        float *q = permute_rope_rows(&lw->wq, c->n_heads, c->head_dim);
        float *k = permute_rope_rows(&lw->wk, c->n_kv_heads, c->head_dim);
        if (!q || !k) {
            free(q);
            free(k);
            s = augur_fail(err, AUGUR_E_NOMEM, "convert: out of memory");
            break;
        }
#define ADD(kind, suffix, ...)                                                                                       \
    if (!s) {                                                                                                        \
        snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);                                                \
        s = add_##kind(wr, name, __VA_ARGS__, err);                                                                  \
    }
        ADD(vector, "input_layernorm.weight", lw->attn_norm, c->dim)
        ADD(matrix, "self_attn.q_proj.weight", &lw->wq, q)
        ADD(matrix, "self_attn.k_proj.weight", &lw->wk, k)
        ADD(matrix, "self_attn.v_proj.weight", &lw->wv, NULL)
        ADD(matrix, "self_attn.o_proj.weight", &lw->wo, NULL)
        ADD(vector, "post_attention_layernorm.weight", lw->ffn_norm, c->dim)
        ADD(matrix, "mlp.gate_proj.weight", &lw->w_gate, NULL)
        ADD(matrix, "mlp.up_proj.weight", &lw->w_up, NULL)
        ADD(matrix, "mlp.down_proj.weight", &lw->w_down, NULL)
#undef ADD
    }
    if (!s)
        s = add_vector(wr, "model.norm.weight", m.w.final_norm, c->dim, err);
    if (!s && !c->tie_embeddings)
        s = add_matrix(wr, "lm_head.weight", &m.w.lm_head, NULL, err);
    if (!s) {
        char path[1200];
        snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
        s = safetensors_writer_save(wr, path, err);
    }
    if (!s)
        s = write_config(c, out_dir, err);
    safetensors_writer_free(wr);
    model_free(&m);
    return s;
}
