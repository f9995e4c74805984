/* Hugging Face config.json for the Llama family (llama, mistral, qwen2). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "runtime/model/hf_config.h"

typedef struct {
    const char *path;
    json_t *root;
    augur_error *err;
} config_reader;

/* Absent and null both mean "use the default": transformers writes null for unset fields. */
static bool absent(json_t *v)
{
    return !v || json_is_null(v);
}

static augur_status get_int(config_reader *r, json_t *obj, const char *key, int fallback, bool required, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (absent(v)) {
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
    if (absent(v)) {
        *out = fallback;
        return AUGUR_OK;
    }
    if (!json_is_number(v))
        return augur_fail(r->err, AUGUR_E_FORMAT, "%s: field %s must be a number", r->path, key);
    *out = (float)json_number_value(v);
    return AUGUR_OK;
}

static augur_status parse_llama3_scaling(config_reader *r, json_t *scaling, const char *field, model_config *c)
{
    rope_llama3_scaling *s = &c->rope_scaling;
    s->enabled = true;
    augur_status st;
    if ((st = get_float(r, scaling, "factor", 8.0f, &s->factor)) ||
        (st = get_float(r, scaling, "low_freq_factor", 1.0f, &s->low_freq_factor)) ||
        (st = get_float(r, scaling, "high_freq_factor", 4.0f, &s->high_freq_factor)) ||
        (st = get_int(r, scaling, "original_max_position_embeddings", 8192, false, &s->original_max_position)))
        return augur_wrap(r->err, "%s", field);
    if (!(s->factor > 0) || !(s->high_freq_factor > s->low_freq_factor) || s->original_max_position <= 0)
        return augur_fail(r->err, AUGUR_E_FORMAT,
                          "%s: %s llama3 parameters are inconsistent (need factor > 0, high_freq_factor > "
                          "low_freq_factor, original_max_position_embeddings > 0)",
                          r->path, field);
    return AUGUR_OK;
}

/* rope_theta and rope_scaling; transformers 5 writes both under rope_parameters. */
static augur_status parse_rope(config_reader *r, model_config *c)
{
    augur_status st = get_float(r, r->root, "rope_theta", 10000.0f, &c->rope_theta);
    if (st)
        return st;
    json_t *params = json_object_get(r->root, "rope_parameters");
    json_t *scaling = json_object_get(r->root, "rope_scaling");
    const char *field = "rope_scaling";
    if (!absent(params)) {
        if (!json_is_object(params))
            return augur_fail(r->err, AUGUR_E_FORMAT, "%s: rope_parameters must be an object or null", r->path);
        if ((st = get_float(r, params, "rope_theta", c->rope_theta, &c->rope_theta)))
            return augur_wrap(r->err, "rope_parameters");
        if (absent(scaling)) {
            scaling = params;
            field = "rope_parameters";
        }
    }
    if (absent(scaling))
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
        return augur_fail(r->err, AUGUR_E_UNSUPPORTED, "%s: %s.rope_type '%s' is not supported (default, llama3)",
                          r->path, field, t);
    return parse_llama3_scaling(r, scaling, field, c);
}

/* bos_token_id and eos_token_id: an int, a list of ints, or null. */
static augur_status parse_special_ids(config_reader *r, model_config *c)
{
    json_t *bos = json_object_get(r->root, "bos_token_id");
    if (json_is_array(bos))
        bos = json_array_get(bos, 0);
    if (!absent(bos) && (!json_is_integer(bos) || json_integer_value(bos) < 0))
        return augur_fail(r->err, AUGUR_E_FORMAT, "%s: bos_token_id must be a non-negative integer or null",
                          r->path);
    c->bos_id = absent(bos) ? -1 : (int)json_integer_value(bos);

    json_t *eos = json_object_get(r->root, "eos_token_id");
    c->n_eos = 0;
    if (json_is_integer(eos)) {
        c->eos_ids[c->n_eos++] = (int)json_integer_value(eos);
    } else if (json_is_array(eos)) {
        if (json_array_size(eos) > AUGUR_MAX_EOS)
            return augur_fail(r->err, AUGUR_E_UNSUPPORTED, "%s: eos_token_id lists %zu ids (at most %d)", r->path,
                              json_array_size(eos), AUGUR_MAX_EOS);
        size_t i;
        json_t *v;
        json_array_foreach(eos, i, v) {
            if (!json_is_integer(v))
                return augur_fail(r->err, AUGUR_E_FORMAT, "%s: eos_token_id[%zu] is not an integer", r->path, i);
            c->eos_ids[c->n_eos++] = (int)json_integer_value(v);
        }
    } else if (!absent(eos)) {
        return augur_fail(r->err, AUGUR_E_FORMAT, "%s: eos_token_id must be an integer, a list or null", r->path);
    }
    return AUGUR_OK;
}

static augur_status parse_model_type(config_reader *r, model_config *c)
{
    json_t *mt = json_object_get(r->root, "model_type");
    if (!json_is_string(mt))
        return augur_fail(r->err, AUGUR_E_FORMAT, "%s: field model_type is missing", r->path);
    const char *t = json_string_value(mt);
    if (strcmp(t, "llama") && strcmp(t, "mistral") && strcmp(t, "qwen2"))
        return augur_fail(r->err, AUGUR_E_UNSUPPORTED, "%s: model_type '%s' is not supported (llama, mistral, qwen2)",
                          r->path, t);
    snprintf(c->model_type, sizeof c->model_type, "%s", t);
    return AUGUR_OK;
}

static augur_status parse_dims(config_reader *r, model_config *c)
{
    json_t *root = r->root;
    augur_status st;
    if ((st = get_int(r, root, "hidden_size", 0, true, &c->dim)) ||
        (st = get_int(r, root, "intermediate_size", 0, true, &c->hidden_dim)) ||
        (st = get_int(r, root, "num_hidden_layers", 0, true, &c->n_layers)) ||
        (st = get_int(r, root, "num_attention_heads", 0, true, &c->n_heads)) ||
        (st = get_int(r, root, "num_key_value_heads", c->n_heads, false, &c->n_kv_heads)) ||
        (st = get_int(r, root, "vocab_size", 0, true, &c->vocab_size)) ||
        (st = get_int(r, root, "max_position_embeddings", 2048, false, &c->max_seq_len)) ||
        (st = get_float(r, root, "rms_norm_eps", 1e-6f, &c->rms_norm_eps)))
        return st;
    if (c->n_heads <= 0)
        return augur_fail(r->err, AUGUR_E_FORMAT, "%s: num_attention_heads must be positive, got %d", r->path,
                          c->n_heads);
    /* An explicit head_dim may differ from hidden_size / heads; a derived one must not. */
    if (absent(json_object_get(root, "head_dim")) && c->dim % c->n_heads)
        return augur_fail(r->err, AUGUR_E_FORMAT,
                          "%s: hidden_size %d is not a multiple of num_attention_heads %d (and no head_dim)", r->path,
                          c->dim, c->n_heads);
    return get_int(r, root, "head_dim", c->dim / c->n_heads, false, &c->head_dim);
}

static augur_status parse_flags(config_reader *r, model_config *c)
{
    json_t *tie = json_object_get(r->root, "tie_word_embeddings");
    json_t *bias = json_object_get(r->root, "attention_bias");
    if (!absent(tie) && !json_is_boolean(tie))
        return augur_fail(r->err, AUGUR_E_FORMAT, "%s: tie_word_embeddings must be true or false", r->path);
    if (!absent(bias) && !json_is_boolean(bias))
        return augur_fail(r->err, AUGUR_E_FORMAT, "%s: attention_bias must be true or false", r->path);
    c->tie_embeddings = json_is_true(tie);
    /* Qwen2 always has q/k/v biases; its config has no field for them. */
    c->attn_bias = !strcmp(c->model_type, "qwen2") || json_is_true(bias);
    c->rope_pairs = ROPE_PAIRS_HALF;
    return AUGUR_OK;
}

augur_status model_config_load_hf(model_config *c, const char *path, augur_error *err)
{
    memset(c, 0, sizeof *c);
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root && json_error_code(&jerr) == json_error_cannot_open_file)
        return augur_fail(err, AUGUR_E_INPUT, "%s: cannot open", path);
    if (!root)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: not valid JSON (line %d: %s)", path, jerr.line, jerr.text);
    config_reader r = {.path = path, .root = root, .err = err};
    augur_status st;
    if (!json_is_object(root))
        st = augur_fail(err, AUGUR_E_FORMAT, "%s: not a JSON object", path);
    else if (!(st = parse_model_type(&r, c)) && !(st = parse_dims(&r, c)) && !(st = parse_rope(&r, c)) &&
             !(st = parse_special_ids(&r, c)) && !(st = parse_flags(&r, c)))
        st = model_config_validate(c, path, err);
    json_decref(root);
    return st;
}
