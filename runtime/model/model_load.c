/* Loading a model's weights for one tensor-parallel rank, from a Hugging Face
 * directory (safetensors, single or sharded) or a llama2.c checkpoint. Large matrices
 * stay in the mapping; each rank views only its slices (DESIGN §5). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/model/mapped_file.h"
#include "runtime/model/model.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/model_shard.h"
#include "runtime/model/safetensors.h"

/* A whole 2-D (or 1-D: rows = 1) tensor before slicing. */
typedef struct {
    const void *data;
    augur_dtype dtype;
    int64_t rows, cols;
} raw_tensor;

static tensor_view rows_view(raw_tensor t, int64_t start, int64_t count)
{
    size_t esz = augur_dtype_size(t.dtype);
    return (tensor_view){.data = (const char *)t.data + (size_t)(start * t.cols) * esz, .dtype = t.dtype,
                         .rows = count, .cols = t.cols, .row_stride = t.cols};
}

static tensor_view cols_view(raw_tensor t, int64_t start, int64_t count)
{
    size_t esz = augur_dtype_size(t.dtype);
    return (tensor_view){.data = (const char *)t.data + (size_t)start * esz, .dtype = t.dtype, .rows = t.rows,
                         .cols = count, .row_stride = t.cols};
}

/* Owned fp32 copy of elements [start, start+count) of a 1-D tensor. */
static float *vec_f32(raw_tensor t, int64_t start, int64_t count)
{
    float *out = malloc((size_t)(count ? count : 1) * sizeof(float));
    if (!out)
        return NULL;
    tensor_view v = {.data = t.data, .dtype = t.dtype, .rows = 1, .cols = t.rows * t.cols, .row_stride = 0};
    for (int64_t i = 0; i < count; i++)
        out[i] = tensor_get_f32(&v, 0, start + i);
    return out;
}

/* ---- one layer, whatever the source ---- */

typedef struct {
    raw_tensor attn_norm, ffn_norm, wq, wk, wv, wo, bq, bk, bv, gate, up, down;
} raw_layer;

static augur_status place_layer(model *m, int l, const raw_layer *t, augur_error *err)
{
    const model_config *c = &m->cfg;
    int hd = c->head_dim;
    layer_weights *lw = &m->w.layers[l];
    lw->wq = rows_view(t->wq, (int64_t)m->head_start * hd, (int64_t)m->n_heads_local * hd);
    lw->wk = rows_view(t->wk, (int64_t)m->kv_head_start * hd, (int64_t)m->n_kv_heads_local * hd);
    lw->wv = rows_view(t->wv, (int64_t)m->kv_head_start * hd, (int64_t)m->n_kv_heads_local * hd);
    lw->wo = cols_view(t->wo, (int64_t)m->head_start * hd, (int64_t)m->n_heads_local * hd);
    lw->w_gate = rows_view(t->gate, m->hidden_start, m->hidden_local);
    lw->w_up = rows_view(t->up, m->hidden_start, m->hidden_local);
    lw->w_down = cols_view(t->down, m->hidden_start, m->hidden_local);
    lw->attn_norm = vec_f32(t->attn_norm, 0, c->dim);
    lw->ffn_norm = vec_f32(t->ffn_norm, 0, c->dim);
    bool ok = lw->attn_norm && lw->ffn_norm;
    if (c->attn_bias) {
        lw->bq = vec_f32(t->bq, (int64_t)m->head_start * hd, (int64_t)m->n_heads_local * hd);
        lw->bk = vec_f32(t->bk, (int64_t)m->kv_head_start * hd, (int64_t)m->n_kv_heads_local * hd);
        lw->bv = vec_f32(t->bv, (int64_t)m->kv_head_start * hd, (int64_t)m->n_kv_heads_local * hd);
        ok = ok && lw->bq && lw->bk && lw->bv;
    }
    return ok ? AUGUR_OK : augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory for layer %d", m->source, l);
}

static augur_status place_globals(model *m, raw_tensor emb, raw_tensor norm, raw_tensor head, augur_error *err)
{
    m->w.tok_embedding = rows_view(emb, 0, emb.rows);
    m->w.lm_head = rows_view(head, m->vocab_start, m->vocab_local);
    m->w.final_norm = vec_f32(norm, 0, m->cfg.dim);
    return m->w.final_norm ? AUGUR_OK : augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", m->source);
}

/* ---- Hugging Face directories ---- */

typedef struct {
    model *m;
    augur_error *err;
} hf_loader;

static augur_status hf_open_shards(model *m, const char *dir, augur_error *err)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (stat(path, &st) != 0)
            return augur_fail(err, AUGUR_E_INPUT, "%s: no model.safetensors or model.safetensors.index.json", dir);
        m->shards = calloc(1, sizeof *m->shards);
        if (!m->shards)
            return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", dir);
        m->n_shards = 1;
        return safetensors_open(&m->shards[0], path, err);
    }
    json_error_t jerr;
    json_t *index = json_load_file(path, 0, &jerr);
    json_t *map = index ? json_object_get(index, "weight_map") : NULL;
    if (!json_is_object(map)) {
        json_decref(index);
        return augur_fail(err, AUGUR_E_FORMAT, "%s: no weight_map object (%s)", path, index ? "missing" : jerr.text);
    }
    /* Distinct shard files, in first-seen order. */
    size_t n_names = json_object_size(map);
    const char **files = calloc(n_names ? n_names : 1, sizeof *files);
    int n_files = 0;
    augur_status status = files ? AUGUR_OK : augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", path);
    const char *key;
    json_t *val;
    json_object_foreach(map, key, val) {
        if (status)
            break;
        if (!json_is_string(val)) {
            status = augur_fail(err, AUGUR_E_FORMAT, "%s: weight_map entry %s is not a file name", path, key);
            break;
        }
        const char *f = json_string_value(val);
        if (strchr(f, '/')) {
            status = augur_fail(err, AUGUR_E_FORMAT, "%s: weight_map entry %s names a file outside the directory: %s",
                                path, key, f);
            break;
        }
        int k = 0;
        while (k < n_files && strcmp(files[k], f))
            k++;
        if (k == n_files)
            files[n_files++] = f;
    }
    if (!status) {
        m->shards = calloc((size_t)(n_files ? n_files : 1), sizeof *m->shards);
        if (!m->shards)
            status = augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", path);
    }
    for (int k = 0; !status && k < n_files; k++) {
        char shard[1200];
        snprintf(shard, sizeof shard, "%s/%s", dir, files[k]);
        status = safetensors_open(&m->shards[k], shard, err);
        if (!status)
            m->n_shards++;
    }
    free(files);
    json_decref(index);
    return status;
}

/* Finds a tensor in any shard and checks its shape: rows x cols (cols = 0 for 1-D). */
static augur_status hf_tensor(hf_loader *L, const char *name, int64_t rows, int64_t cols, raw_tensor *out)
{
    model *m = L->m;
    for (int k = 0; k < m->n_shards; k++) {
        safetensors_file *sf = m->shards[k];
        for (int i = 0; i < sf->n_entries; i++) {
            const safetensors_entry *e = &sf->entries[i];
            if (strcmp(e->name, name))
                continue;
            bool ok = cols ? (e->ndim == 2 && e->shape[0] == rows && e->shape[1] == cols)
                           : (e->ndim == 1 && e->shape[0] == rows);
            if (!ok) {
                char got[96] = "[";
                for (int d = 0; d < e->ndim; d++)
                    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "",
                             (long long)e->shape[d]);
                strncat(got, "]", sizeof got - strlen(got) - 1);
                if (cols)
                    return augur_fail(L->err, AUGUR_E_FORMAT, "%s: tensor %s has shape %s, expected [%lld, %lld]",
                                      sf->file->path, name, got, (long long)rows, (long long)cols);
                return augur_fail(L->err, AUGUR_E_FORMAT, "%s: tensor %s has shape %s, expected [%lld]",
                                  sf->file->path, name, got, (long long)rows);
            }
            sf->used[i] = true;
            *out = (raw_tensor){.data = e->data, .dtype = e->dtype, .rows = rows, .cols = cols ? cols : 1};
            if (!cols) { /* 1-D: one row of rows elements */
                out->cols = rows;
                out->rows = 1;
            }
            return AUGUR_OK;
        }
    }
    return augur_fail(L->err, AUGUR_E_FORMAT, "%s: tensor %s is missing", m->source, name);
}

static augur_status hf_check_unused(hf_loader *L)
{
    const model *m = L->m;
    for (int k = 0; k < m->n_shards; k++) {
        const safetensors_file *sf = m->shards[k];
        for (int i = 0; i < sf->n_entries; i++) {
            const char *n = sf->entries[i].name;
            size_t len = strlen(n);
            if (sf->used[i] || (len >= 19 && !strcmp(n + len - 19, "rotary_emb.inv_freq")))
                continue;
            /* Layers dropped by max_layers are expected leftovers. */
            int layer = -1;
            if (m->opts.max_layers > 0 && sscanf(n, "model.layers.%d.", &layer) == 1 && layer >= m->cfg.n_layers)
                continue;
            if (m->cfg.tie_embeddings && !strcmp(n, "lm_head.weight"))
                continue;
            return augur_fail(L->err, AUGUR_E_FORMAT, "%s: unexpected tensor %s", sf->file->path, n);
        }
    }
    return AUGUR_OK;
}

/* 1-D tensors of length n are matched with cols = 0. */
static augur_status hf_load_layer(hf_loader *L, int l, raw_layer *t)
{
    const model_config *c = &L->m->cfg;
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    char name[160];
    augur_status st;
#define LAYER_TENSOR(field, suffix, rows, cols)                                                                      \
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);                                                    \
    if ((st = hf_tensor(L, name, rows, cols, &t->field)))                                                            \
        return st;
    LAYER_TENSOR(attn_norm, "input_layernorm.weight", c->dim, 0)
    LAYER_TENSOR(ffn_norm, "post_attention_layernorm.weight", c->dim, 0)
    LAYER_TENSOR(wq, "self_attn.q_proj.weight", q, c->dim)
    LAYER_TENSOR(wk, "self_attn.k_proj.weight", kv, c->dim)
    LAYER_TENSOR(wv, "self_attn.v_proj.weight", kv, c->dim)
    LAYER_TENSOR(wo, "self_attn.o_proj.weight", c->dim, q)
    LAYER_TENSOR(gate, "mlp.gate_proj.weight", c->hidden_dim, c->dim)
    LAYER_TENSOR(up, "mlp.up_proj.weight", c->hidden_dim, c->dim)
    LAYER_TENSOR(down, "mlp.down_proj.weight", c->dim, c->hidden_dim)
    if (c->attn_bias) {
        LAYER_TENSOR(bq, "self_attn.q_proj.bias", q, 0)
        LAYER_TENSOR(bk, "self_attn.k_proj.bias", kv, 0)
        LAYER_TENSOR(bv, "self_attn.v_proj.bias", kv, 0)
    }
#undef LAYER_TENSOR
    return AUGUR_OK;
}

static augur_status load_hf(model *m, const char *dir, augur_error *err)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    struct stat st;
    if (stat(path, &st) != 0)
        return augur_fail(err, AUGUR_E_INPUT, "%s: no config.json (not a Hugging Face model directory)", dir);
    augur_status s = model_config_load_hf(&m->cfg, path, err);
    if (s)
        return s;
    if (m->opts.max_layers > m->cfg.n_layers)
        return augur_fail(err, AUGUR_E_INPUT, "%s: %d draft layers requested, the model has %d", dir,
                          m->opts.max_layers, m->cfg.n_layers);
    if (m->opts.max_layers > 0)
        m->cfg.n_layers = m->opts.max_layers;
    if ((s = tp_check_layout(&m->cfg, m->opts.tp_size, err)))
        return augur_wrap(err, "%s", dir);
    model_plan_shard(m);
    if ((s = hf_open_shards(m, dir, err)))
        return s;
    hf_loader L = {.m = m, .err = err};
    const model_config *c = &m->cfg;
    m->w.layers = calloc((size_t)c->n_layers, sizeof *m->w.layers);
    if (!m->w.layers)
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", dir);
    raw_tensor emb, norm, head;
    if ((s = hf_tensor(&L, "model.embed_tokens.weight", c->vocab_size, c->dim, &emb)) ||
        (s = hf_tensor(&L, "model.norm.weight", c->dim, 0, &norm)))
        return s;
    if (c->tie_embeddings)
        head = emb;
    else if ((s = hf_tensor(&L, "lm_head.weight", c->vocab_size, c->dim, &head)))
        return s;
    if ((s = place_globals(m, emb, norm, head, err)))
        return s;
    for (int l = 0; l < c->n_layers; l++) {
        raw_layer t = {0};
        if ((s = hf_load_layer(&L, l, &t)) || (s = place_layer(m, l, &t, err)))
            return s;
    }
    return hf_check_unused(&L);
}

/* ---- llama2.c checkpoints ---- */

/* *acc += a*b*c floats; false on overflow, which only a corrupt header can cause. */
static bool add_floats(uint64_t *acc, int64_t a, int64_t b, int64_t c)
{
    uint64_t ab, abc;
    return !__builtin_mul_overflow((uint64_t)a, (uint64_t)b, &ab) && !__builtin_mul_overflow(ab, (uint64_t)c, &abc) &&
           !__builtin_add_overflow(*acc, abc, acc);
}

/* Bytes the header implies: 7 int32, the float arrays of DESIGN §7, the two RoPE
 * tables (seq_len x head_dim/2 each), then the classifier when it is not shared. */
static bool llama2c_expected_bytes(const model_config *c, uint64_t *bytes)
{
    int64_t D = c->dim, H = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    int64_t KV = (int64_t)c->n_kv_heads * c->head_dim;
    uint64_t n = 0;
    bool ok = add_floats(&n, V, D, 1) &&                  /* token embedding */
              add_floats(&n, L, D, 2) &&                  /* rms_att, rms_ffn */
              add_floats(&n, L, D, 2 * D) &&              /* wq, wo */
              add_floats(&n, L, KV, 2 * D) &&             /* wk, wv */
              add_floats(&n, L, H, 3 * D) &&              /* w1, w2, w3 */
              add_floats(&n, D, 1, 1) &&                  /* rms_final */
              add_floats(&n, c->max_seq_len, c->head_dim, 1) && /* RoPE tables */
              (c->tie_embeddings || add_floats(&n, V, D, 1));
    return ok && !__builtin_mul_overflow(n, (uint64_t)sizeof(float), bytes) &&
           !__builtin_add_overflow(*bytes, (uint64_t)(7 * sizeof(int32_t)), bytes);
}

static augur_status llama2c_config(model_config *c, const mapped_file *f, augur_error *err)
{
    if (f->size < 7 * sizeof(int32_t))
        return augur_fail(err, AUGUR_E_FORMAT, "%s: %zu bytes is too short for a llama2.c header", f->path,
                          f->size);
    int32_t h[7];
    memcpy(h, f->base, sizeof h);
    if (h[5] == INT32_MIN)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: vocab_size %d in the llama2.c header is invalid", f->path, h[5]);
    bool shared = h[5] > 0; /* negative: an unshared classifier follows the weights */
    *c = (model_config){.dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3], .n_kv_heads = h[4],
                        .vocab_size = shared ? h[5] : -h[5], .max_seq_len = h[6], .rms_norm_eps = 1e-5f,
                        .rope_theta = 10000.0f, .rope_pairs = ROPE_PAIRS_ADJACENT, .tie_embeddings = shared,
                        .bos_id = 1, .eos_ids = {2}, .n_eos = 1};
    snprintf(c->model_type, sizeof c->model_type, "llama2c");
    if (c->n_heads > 0)
        c->head_dim = c->dim / c->n_heads;
    augur_status s = model_config_validate(c, f->path, err);
    if (s)
        return s;
    if (c->head_dim * c->n_heads != c->dim)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: dim %d is not a multiple of n_heads %d", f->path, c->dim,
                          c->n_heads);
    uint64_t want = 0;
    if (!llama2c_expected_bytes(c, &want) || f->size != want)
        return augur_fail(err, AUGUR_E_FORMAT,
                          "%s: %zu bytes, but its header (dim %d, hidden %d, %d layers, %d heads, %d kv heads, vocab "
                          "%d%s, seq_len %d) implies %llu%s",
                          f->path, f->size, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                          c->vocab_size, shared ? "" : " unshared", c->max_seq_len, (unsigned long long)want,
                          f->size < want ? " (truncated file?)" : "");
    return AUGUR_OK;
}

static augur_status load_llama2c(model *m, const char *path, augur_error *err)
{
    augur_status s = mapped_file_open(&m->llama2c, path, err);
    if (s)
        return s;
    const mapped_file *f = m->llama2c;
    model_config *c = &m->cfg;
    if ((s = llama2c_config(c, f, err)))
        return s;
    bool shared = c->tie_embeddings;
    int64_t D = c->dim, H = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    int64_t KV = (int64_t)c->n_kv_heads * c->head_dim;
    if (m->opts.max_layers > c->n_layers)
        return augur_fail(err, AUGUR_E_INPUT, "%s: %d draft layers requested, the model has %d", path,
                          m->opts.max_layers, c->n_layers);
    int kept_layers = m->opts.max_layers > 0 ? m->opts.max_layers : c->n_layers;
    if ((s = tp_check_layout(c, m->opts.tp_size, err)))
        return augur_wrap(err, "%s", path);

    const float *p = (const float *)(f->base + 28);
    raw_tensor emb = {p, AUGUR_F32, V, D};
    p += V * D;
    const float *rms_att = p, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3;
    p += L * D;
    wq = p, p += L * D * D;
    wk = p, p += L * KV * D;
    wv = p, p += L * KV * D;
    wo = p, p += L * D * D;
    rms_ffn = p, p += L * D;
    w1 = p, p += L * H * D;
    w2 = p, p += L * D * H;
    w3 = p, p += L * H * D;
    raw_tensor norm = {p, AUGUR_F32, 1, D};
    p += D + (int64_t)c->max_seq_len * c->head_dim; /* skip the two RoPE tables */
    raw_tensor head = shared ? emb : (raw_tensor){p, AUGUR_F32, V, D};

    c->n_layers = kept_layers;
    model_plan_shard(m);
    m->w.layers = calloc((size_t)c->n_layers, sizeof *m->w.layers);
    if (!m->w.layers)
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", path);
    if ((s = place_globals(m, emb, norm, head, err)))
        return s;
    for (int l = 0; l < c->n_layers; l++) {
        raw_layer t = {
            .attn_norm = {rms_att + l * D, AUGUR_F32, 1, D},
            .ffn_norm = {rms_ffn + l * D, AUGUR_F32, 1, D},
            .wq = {wq + l * D * D, AUGUR_F32, D, D},
            .wk = {wk + l * KV * D, AUGUR_F32, KV, D},
            .wv = {wv + l * KV * D, AUGUR_F32, KV, D},
            .wo = {wo + l * D * D, AUGUR_F32, D, D},
            .gate = {w1 + l * H * D, AUGUR_F32, H, D},
            .down = {w2 + l * D * H, AUGUR_F32, D, H},
            .up = {w3 + l * H * D, AUGUR_F32, H, D},
        };
        if ((s = place_layer(m, l, &t, err)))
            return s;
    }
    return AUGUR_OK;
}

augur_status model_load(model *m, const char *path, const model_load_opts *opts, augur_error *err)
{
    memset(m, 0, sizeof *m);
    m->opts = opts ? *opts : (model_load_opts){.tp_rank = 0, .tp_size = 1};
    if (m->opts.tp_size < 1 || m->opts.tp_rank < 0 || m->opts.tp_rank >= m->opts.tp_size)
        return augur_fail(err, AUGUR_E_INTERNAL, "%s: tensor-parallel rank %d of %d", path, m->opts.tp_rank,
                          m->opts.tp_size);
    snprintf(m->source, sizeof m->source, "%s", path);
    struct stat st;
    if (stat(path, &st) != 0)
        return augur_fail(err, AUGUR_E_INPUT, "%s: no such file or directory", path);
    augur_status s = S_ISDIR(st.st_mode) ? load_hf(m, path, err) : load_llama2c(m, path, err);
    if (s)
        model_free(m);
    return s;
}

