/* Hugging Face config.json for the Llama family (llama, mistral, qwen2). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/model_config.h"

typedef struct {
    const char *path;
    json_t *root;
    augur_error *err;
} config_reader;

static augur_status get_int(config_reader *r, json_t *obj, const char *key, int fallback, bool required, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required)
            return augur_fail(r->err, AUGUR_E_FORMAT, "%s: field %s is missing", r->path, key);
        *out = fallback;
        return AUGUR_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 30))
        return augur_fail(r->err, AUGUR_E_FORMAT, "%s: field %s must be a non-negative integer", r->path, key);
    *out = (int)json_integer_value(v);
    return AUGUR_OK;
}

static augur_status get_float(config_reader *r, json_t *obj, const char *key, float fallback, float *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = fallback;
        return AUGUR_OK;
    }
    if (!json_is_number(v))
        return augur_fail(r->err, AUGUR_E_FORMAT, "%s: field %s must be a number", r->path, key);
    *out = (float)json_number_value(v);
    return AUGUR_OK;
}

static augur_status parse_rope(config_reader *r, model_config *c)
{
    augur_status st = get_float(r, r->root, "rope_theta", 10000.0f, &c->rope_theta);
    if (st)
        return st;
    /* transformers 5 may write rope settings under rope_parameters instead */
    json_t *params = json_object_get(r->root, "rope_parameters");
    json_t *scaling = json_object_get(r->root, "rope_scaling");
    if (json_is_object(params)) {
        if ((st = get_float(r, params, "rope_theta", c->rope_theta, &c->rope_theta)))
            return st;
        if (!scaling || json_is_null(scaling))
            scaling = params;
    }
    if (!scaling || json_is_null(scaling))
        return AUGUR_OK;
    if (!json_is_object(scaling))
        return augur_fail(r->err, AUGUR_E_FORMAT, "%s: rope_scaling must be an object or null", r->path);
    json_t *type = json_object_get(scaling, "rope_type");
    if (!json_is_string(type))
        type = json_object_get(scaling, "type");
    const char *t = json_is_string(type) ? json_string_value(type) : "default";
    if (!strcmp(t, "default"))
        return AUGUR_OK;
    if (strcmp(t, "llama3"))
        return augur_fail(r->err, AUGUR_E_UNSUPPORTED, "%s: rope_scaling type '%s' is not supported (llama3)",
                          r->path, t);
    rope_llama3_scaling *s = &c->rope_scaling;
    s->enabled = true;
    if ((st = get_float(r, scaling, "factor", 8.0f, &s->factor)) ||
        (st = get_float(r, scaling, "low_freq_factor", 1.0f, &s->low_freq_factor)) ||
        (st = get_float(r, scaling, "high_freq_factor", 4.0f, &s->high_freq_factor)) ||
        (st = get_int(r, scaling, "original_max_position_embeddings", 8192, false, &s->original_max_position)))
        return st;
    if (!(s->factor > 0) || !(s->high_freq_factor > s->low_freq_factor) || s->original_max_position <= 0)
        return augur_fail(r->err, AUGUR_E_FORMAT, "%s: rope_scaling llama3 parameters are inconsistent", r->path);
    return AUGUR_OK;
}

static augur_status parse_special_ids(config_reader *r, model_config *c)
{
    json_t *bos = json_object_get(r->root, "bos_token_id");
    c->bos_id = json_is_integer(bos) ? (int)json_integer_value(bos) : -1;
    if (json_is_array(bos) && json_array_size(bos) > 0 && json_is_integer(json_array_get(bos, 0)))
        c->bos_id = (int)json_integer_value(json_array_get(bos, 0));
    json_t *eos = json_object_get(r->root, "eos_token_id");
    c->n_eos = 0;
    if (json_is_integer(eos)) {
        c->eos_ids[c->n_eos++] = (int)json_integer_value(eos);
    } else if (json_is_array(eos)) {
        size_t i;
        json_t *v;
        json_array_foreach(eos, i, v) {
            if (!json_is_integer(v))
                return augur_fail(r->err, AUGUR_E_FORMAT, "%s: eos_token_id[%zu] is not an integer", r->path, i);
            if (c->n_eos < AUGUR_MAX_EOS)
                c->eos_ids[c->n_eos++] = (int)json_integer_value(v);
        }
    } else if (eos && !json_is_null(eos)) {
        return augur_fail(r->err, AUGUR_E_FORMAT, "%s: eos_token_id must be an integer, a list or null", r->path);
    }
    return AUGUR_OK;
}

augur_status model_config_load_hf(model_config *c, const char *path, augur_error *err)
{
    memset(c, 0, sizeof *c);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: not valid JSON (line %d: %s)", path, jerr.line, jerr.text);
    config_reader r = {.path = path, .root = root, .err = err};
    augur_status st = AUGUR_OK;
    json_t *mt = json_object_get(root, "model_type");
    if (!json_is_object(root)) {
        st = augur_fail(err, AUGUR_E_FORMAT, "%s: not a JSON object", path);
    } else if (!json_is_string(mt)) {
        st = augur_fail(err, AUGUR_E_FORMAT, "%s: field model_type is missing", path);
    } else {
        const char *t = json_string_value(mt);
        if (strcmp(t, "llama") && strcmp(t, "mistral") && strcmp(t, "qwen2"))
            st = augur_fail(err, AUGUR_E_UNSUPPORTED, "%s: model_type '%s' is not supported (llama, mistral, qwen2)",
                            path, t);
        else
            snprintf(c->model_type, sizeof c->model_type, "%s", t);
    }
    if (!st && !(st = get_int(&r, root, "hidden_size", 0, true, &c->dim)) &&
        !(st = get_int(&r, root, "intermediate_size", 0, true, &c->hidden_dim)) &&
        !(st = get_int(&r, root, "num_hidden_layers", 0, true, &c->n_layers)) &&
        !(st = get_int(&r, root, "num_attention_heads", 0, true, &c->n_heads)) &&
        !(st = get_int(&r, root, "num_key_value_heads", c->n_heads, false, &c->n_kv_heads)) &&
        !(st = get_int(&r, root, "vocab_size", 0, true, &c->vocab_size)) &&
        !(st = get_int(&r, root, "max_position_embeddings", 2048, false, &c->max_seq_len)) &&
        !(st = get_float(&r, root, "rms_norm_eps", 1e-6f, &c->rms_norm_eps)) &&
        !(st = get_int(&r, root, "head_dim", c->n_heads ? c->dim / c->n_heads : 0, false, &c->head_dim)) &&
        !(st = parse_rope(&r, c)))
        st = parse_special_ids(&r, c);
    if (!st) {
        json_t *tie = json_object_get(root, "tie_word_embeddings");
        c->tie_embeddings = json_is_true(tie);
        json_t *bias = json_object_get(root, "attention_bias");
        c->attn_bias = !strcmp(c->model_type, "qwen2") || json_is_true(bias);
        c->rope_pairs = ROPE_PAIRS_HALF;
        st = model_config_validate(c, path, err);
    }
    json_decref(root);
    return st;
}

augur_status model_config_validate(const model_config *c, const char *source, augur_error *err)
{
    const struct {
        const char *name;
        int value;
    } positive[] = {{"hidden_size", c->dim},       {"intermediate_size", c->hidden_dim},
                    {"num_hidden_layers", c->n_layers}, {"num_attention_heads", c->n_heads},
                    {"num_key_value_heads", c->n_kv_heads}, {"head_dim", c->head_dim},
                    {"vocab_size", c->vocab_size}, {"max_position_embeddings", c->max_seq_len}};
    for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++)
        if (positive[i].value <= 0)
            return augur_fail(err, AUGUR_E_FORMAT, "%s: %s must be positive, got %d", source, positive[i].name,
                              positive[i].value);
    if (c->n_heads % c->n_kv_heads)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: num_key_value_heads %d does not divide num_attention_heads %d",
                          source, c->n_kv_heads, c->n_heads);
    if (c->head_dim % 2)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: head_dim %d must be even for rotary embeddings", source,
                          c->head_dim);
    if (!(c->rms_norm_eps > 0) || !(c->rope_theta > 0))
        return augur_fail(err, AUGUR_E_FORMAT, "%s: rms_norm_eps and rope_theta must be positive", source);
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] < 0 || c->eos_ids[i] >= c->vocab_size)
            return augur_fail(err, AUGUR_E_FORMAT, "%s: eos_token_id %d outside the vocabulary of %d", source,
                              c->eos_ids[i], c->vocab_size);
    return AUGUR_OK;
}

bool model_config_is_eos(const model_config *c, int token)
{
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == token)
            return true;
    return false;
}
