/* Weights in a compute backend's memory: moving a loaded model there, making a random
 * one there from a config.json alone, and what either costs (runtime/model.h). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kernels/backend.h"
#include "kernels/fill_random.h"
#include "runtime/model/mapped_file.h"
#include "runtime/model/model.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/model_shard.h"
#include "runtime/model/load_progress.h"
#include "runtime/model/safetensors.h"

/* ---------------------------------------------------------------- uploading */

static augur_status upload_view(load_progress *pg, augur_backend *be, tensor_view *dev, const tensor_view *host,
                                const char *source, const char *name, augur_error *err)
{
    augur_status st = backend_weight_upload(be, dev, host, err);
    if (st)
        return augur_wrap(err, "%s: uploading %s", source, name);
    load_progress_add(pg, (size_t)(host->rows * host->cols) * augur_dtype_size(host->dtype), load_progress_now());
    return AUGUR_OK;
}

/* *dev = a copy of host's n floats in be's memory; NULL stays NULL (absent biases). */
static augur_status upload_vec(load_progress *pg, augur_backend *be, float **dev, const float *host, int64_t n,
                               const char *source, const char *name, augur_error *err)
{
    *dev = NULL;
    if (!host)
        return AUGUR_OK;
    void *p = NULL;
    const size_t bytes = (size_t)n * sizeof(float);
    augur_status st = backend_alloc(be, &p, bytes, err);
    if (!st) {
        *dev = p;
        st = backend_upload(be, p, host, bytes, err);
    }
    if (!st)
        load_progress_add(pg, bytes, load_progress_now());
    return st ? augur_wrap(err, "%s: uploading %s (%zu bytes)", source, name, bytes) : AUGUR_OK;
}

static augur_status upload_layer(load_progress *pg, const model *m, augur_backend *be, int l, layer_weights *d,
                                 augur_error *err)
{
    const layer_weights *h = &m->w.layers[l];
    const int64_t D = m->cfg.dim, q = (int64_t)m->n_heads_local * m->cfg.head_dim;
    const int64_t kv = (int64_t)m->n_kv_heads_local * m->cfg.head_dim;
    const struct {
        tensor_view *dev;
        const tensor_view *host;
        const char *name;
    } views[] = {{&d->wq, &h->wq, "self_attn.q_proj.weight"},  {&d->wk, &h->wk, "self_attn.k_proj.weight"},
                 {&d->wv, &h->wv, "self_attn.v_proj.weight"},  {&d->wo, &h->wo, "self_attn.o_proj.weight"},
                 {&d->w_gate, &h->w_gate, "mlp.gate_proj.weight"}, {&d->w_up, &h->w_up, "mlp.up_proj.weight"},
                 {&d->w_down, &h->w_down, "mlp.down_proj.weight"}};
    const struct {
        float **dev;
        const float *host;
        int64_t n;
        const char *name;
    } vecs[] = {{&d->attn_norm, h->attn_norm, D, "input_layernorm.weight"},
                {&d->ffn_norm, h->ffn_norm, D, "post_attention_layernorm.weight"},
                {&d->bq, h->bq, q, "self_attn.q_proj.bias"},
                {&d->bk, h->bk, kv, "self_attn.k_proj.bias"},
                {&d->bv, h->bv, kv, "self_attn.v_proj.bias"}};
    char name[128];
    augur_status st = AUGUR_OK;
    for (size_t i = 0; !st && i < sizeof views / sizeof views[0]; i++) {
        snprintf(name, sizeof name, "model.layers.%d.%s", l, views[i].name);
        st = upload_view(pg, be, views[i].dev, views[i].host, m->source, name, err);
    }
    for (size_t i = 0; !st && i < sizeof vecs / sizeof vecs[0]; i++) {
        snprintf(name, sizeof name, "model.layers.%d.%s", l, vecs[i].name);
        st = upload_vec(pg, be, vecs[i].dev, vecs[i].host, vecs[i].n, m->source, name, err);
    }
    return st;
}

/* lm_head on the device: an alias of the device embedding when the host one is whole
 * rows of the host embedding (tied), at the device's row stride; else its own copy. */
static augur_status upload_lm_head(load_progress *pg, const model *m, augur_backend *be, model_weights *d,
                                   augur_error *err)
{
    const tensor_view *he = &m->w.tok_embedding, *hh = &m->w.lm_head;
    const uintptr_t row_bytes = (uintptr_t)he->row_stride * augur_dtype_size(he->dtype);
    uintptr_t offset = 0;
    if (lm_head_in_embedding(&m->w, &offset) && offset % row_bytes == 0 && hh->dtype == he->dtype &&
        hh->cols == he->cols && hh->row_stride == he->row_stride) {
        const int64_t row = (int64_t)(offset / row_bytes);
        d->lm_head = (tensor_view){
            .data = (const char *)d->tok_embedding.data +
                    (size_t)(row * d->tok_embedding.row_stride) * augur_dtype_size(he->dtype),
            .dtype = he->dtype, .rows = hh->rows, .cols = hh->cols, .row_stride = d->tok_embedding.row_stride};
        return AUGUR_OK;
    }
    return upload_view(pg, be, &d->lm_head, hh, m->source, "lm_head.weight", err);
}

augur_status model_to_backend(model *m, augur_backend *be, augur_error *err)
{
    if (m->backend == be)
        return AUGUR_OK;
    if (m->backend)
        return augur_fail(err, AUGUR_E_INTERNAL, "%s: weights already in the %s backend, not movable to %s", m->source,
                          m->backend->name, be->name);
    if (!m->w.layers)
        return augur_fail(err, AUGUR_E_INTERNAL, "%s: model_to_backend of a model with no weights", m->source);
    if (be->caps.weights_alias_host) {
        m->backend = be;
        return AUGUR_OK;
    }

    /* Built aside, so that a failure leaves m as it was. */
    model dev = {.cfg = m->cfg, .backend = be, .memory = MODEL_WEIGHTS_UPLOADED};
    dev.w.layers = calloc((size_t)m->cfg.n_layers, sizeof *dev.w.layers);
    augur_status st = dev.w.layers ? AUGUR_OK : augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", m->source);
    /* a many-shard checkpoint takes long enough to upload that the user should see it move */
    load_progress pg;
    load_progress_start(&pg, stderr, m->opts.who,
                        model_weight_bytes(&m->cfg, &m->opts, m->w.tok_embedding.dtype), load_progress_now());
    if (!st)
        st = upload_view(&pg, be, &dev.w.tok_embedding, &m->w.tok_embedding, m->source, "model.embed_tokens.weight",
                         err);
    if (!st)
        st = upload_lm_head(&pg, m, be, &dev.w, err);
    if (!st)
        st = upload_vec(&pg, be, &dev.w.final_norm, m->w.final_norm, m->cfg.dim, m->source, "model.norm.weight", err);
    for (int l = 0; !st && l < m->cfg.n_layers; l++)
        st = upload_layer(&pg, m, be, l, &dev.w.layers[l], err);
    if (!st)
        load_progress_end(&pg, load_progress_now());
    /* A copy that failed on the device reports here, not after the checkpoint is gone. */
    if (!st && (st = backend_synchronize(be, err)))
        augur_wrap(err, "%s: uploading the weights", m->source);
    if (st) {
        model_free_backend_weights(&dev);
        free(dev.w.layers);
        return st;
    }
    /* Nothing reads the host weights or the mapped checkpoint any more. */
    model_release_host(m);
    free(m->w.layers);
    m->w = dev.w;
    m->backend = be;
    m->memory = MODEL_WEIGHTS_UPLOADED;
    return AUGUR_OK;
}

/* ------------------------------------------------------------- dummy weights */

/* Tensor identities the per-tensor seeds derive from: a layer's tensors are the same
 * whatever max_layers or tp_size, so drafts and shards agree with the whole. */
enum { ID_EMBEDDING, ID_FINAL_NORM, ID_LM_HEAD, ID_FIRST_LAYER = 16 };
enum { ID_ATTN_NORM, ID_FFN_NORM, ID_WQ, ID_WK, ID_WV, ID_WO, ID_BQ, ID_BK, ID_BV, ID_GATE, ID_UP, ID_DOWN,
       ID_PER_LAYER = 16 };

typedef struct {
    model *m;
    augur_backend *be;
    uint64_t seed;
    augur_error *err;
} dummy_maker;

static uint64_t tensor_seed(const dummy_maker *d, int layer, int id)
{
    const uint64_t n = layer < 0 ? (uint64_t)id : ID_FIRST_LAYER + (uint64_t)layer * ID_PER_LAYER + (uint64_t)id;
    return augur_fill_bits(d->seed, n);
}

/* *v = rows [r0, r0+rows) x columns [c0, c0+cols) of a bf16 tensor with full_cols
 * columns whose element (r, c) is element r*full_cols + c of the fill of tseed, packed. */
static augur_status dummy_matrix(dummy_maker *d, tensor_view *v, const char *name, uint64_t tseed, int64_t full_cols,
                                 int64_t r0, int64_t rows, int64_t c0, int64_t cols, float scale)
{
    const size_t esz = augur_dtype_size(AUGUR_BF16), bytes = (size_t)(rows * cols) * esz;
    void *p = NULL;
    augur_status st = backend_alloc(d->be, &p, bytes, d->err);
    if (st)
        return augur_wrap(d->err, "%s: %s (%lld x %lld BF16)", d->m->source, name, (long long)rows, (long long)cols);
    *v = (tensor_view){.data = p, .dtype = AUGUR_BF16, .rows = rows, .cols = cols, .row_stride = cols};
    if (cols == full_cols) { /* whole rows: one contiguous stretch of the full tensor */
        st = backend_fill_random(d->be, p, AUGUR_BF16, rows * cols,
                                 augur_fill_seed_at(tseed, (uint64_t)(r0 * full_cols)), scale, 0.0f, d->err);
    } else { /* a column slice: each row is a stretch of its own */
        for (int64_t r = 0; !st && r < rows; r++)
            st = backend_fill_random(d->be, (char *)p + (size_t)(r * cols) * esz, AUGUR_BF16, cols,
                                     augur_fill_seed_at(tseed, (uint64_t)((r0 + r) * full_cols + c0)), scale, 0.0f,
                                     d->err);
    }
    return st ? augur_wrap(d->err, "%s: %s", d->m->source, name) : AUGUR_OK;
}

/* *out = elements [i0, i0+n) of the fp32 fill of tseed. */
static augur_status dummy_vector(dummy_maker *d, float **out, const char *name, uint64_t tseed, int64_t i0, int64_t n,
                                 float scale, float offset)
{
    void *p = NULL;
    augur_status st = backend_alloc(d->be, &p, (size_t)n * sizeof(float), d->err);
    if (!st) {
        *out = p;
        st = backend_fill_random(d->be, p, AUGUR_F32, n, augur_fill_seed_at(tseed, (uint64_t)i0), scale, offset,
                                 d->err);
    }
    return st ? augur_wrap(d->err, "%s: %s (%lld floats)", d->m->source, name, (long long)n) : AUGUR_OK;
}

static augur_status dummy_layer(dummy_maker *d, int l)
{
    const model *m = d->m;
    const model_config *c = &m->cfg;
    layer_weights *lw = &m->w.layers[l];
    const int64_t D = c->dim, hd = c->head_dim, Q = (int64_t)c->n_heads * hd;
    const int64_t q0 = (int64_t)m->head_start * hd, nq = (int64_t)m->n_heads_local * hd;
    const int64_t kv0 = (int64_t)m->kv_head_start * hd, nkv = (int64_t)m->n_kv_heads_local * hd;
    const int64_t f0 = m->hidden_start, nf = m->hidden_local, F = c->hidden_dim;
    const float in_dim = 1.0f / sqrtf((float)D), in_q = 1.0f / sqrtf((float)Q), in_f = 1.0f / sqrtf((float)F);
    char name[128];
    augur_status st;
#define NAME(suffix) (snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix), name)
#define SEED(id) tensor_seed(d, l, id)
    if ((st = dummy_vector(d, &lw->attn_norm, NAME("input_layernorm.weight"), SEED(ID_ATTN_NORM), 0, D, 0.0f, 1.0f)) ||
        (st = dummy_vector(d, &lw->ffn_norm, NAME("post_attention_layernorm.weight"), SEED(ID_FFN_NORM), 0, D, 0.0f,
                           1.0f)) ||
        (st = dummy_matrix(d, &lw->wq, NAME("self_attn.q_proj.weight"), SEED(ID_WQ), D, q0, nq, 0, D, in_dim)) ||
        (st = dummy_matrix(d, &lw->wk, NAME("self_attn.k_proj.weight"), SEED(ID_WK), D, kv0, nkv, 0, D, in_dim)) ||
        (st = dummy_matrix(d, &lw->wv, NAME("self_attn.v_proj.weight"), SEED(ID_WV), D, kv0, nkv, 0, D, in_dim)) ||
        (st = dummy_matrix(d, &lw->wo, NAME("self_attn.o_proj.weight"), SEED(ID_WO), Q, 0, D, q0, nq, in_q)) ||
        (st = dummy_matrix(d, &lw->w_gate, NAME("mlp.gate_proj.weight"), SEED(ID_GATE), D, f0, nf, 0, D, in_dim)) ||
        (st = dummy_matrix(d, &lw->w_up, NAME("mlp.up_proj.weight"), SEED(ID_UP), D, f0, nf, 0, D, in_dim)) ||
        (st = dummy_matrix(d, &lw->w_down, NAME("mlp.down_proj.weight"), SEED(ID_DOWN), F, 0, D, f0, nf, in_f)))
        return st;
    if (c->attn_bias &&
        ((st = dummy_vector(d, &lw->bq, NAME("self_attn.q_proj.bias"), SEED(ID_BQ), q0, nq, 0.02f, 0.0f)) ||
         (st = dummy_vector(d, &lw->bk, NAME("self_attn.k_proj.bias"), SEED(ID_BK), kv0, nkv, 0.02f, 0.0f)) ||
         (st = dummy_vector(d, &lw->bv, NAME("self_attn.v_proj.bias"), SEED(ID_BV), kv0, nkv, 0.02f, 0.0f))))
        return st;
#undef SEED
#undef NAME
    return AUGUR_OK;
}

static augur_status dummy_weights(dummy_maker *d)
{
    model *m = d->m;
    const model_config *c = &m->cfg;
    const int64_t D = c->dim, V = c->vocab_size;
    m->w.layers = calloc((size_t)c->n_layers, sizeof *m->w.layers);
    if (!m->w.layers)
        return augur_fail(d->err, AUGUR_E_NOMEM, "%s: out of memory", m->source);
    augur_status st;
    if ((st = dummy_matrix(d, &m->w.tok_embedding, "model.embed_tokens.weight", tensor_seed(d, -1, ID_EMBEDDING), D, 0,
                           V, 0, D, 1.0f)))
        return st;
    if (c->tie_embeddings) {
        const tensor_view *e = &m->w.tok_embedding;
        m->w.lm_head = *e;
        m->w.lm_head.data = (const char *)e->data + (size_t)((int64_t)m->vocab_start * D) * augur_dtype_size(e->dtype);
        m->w.lm_head.rows = m->vocab_local;
    } else if ((st = dummy_matrix(d, &m->w.lm_head, "lm_head.weight", tensor_seed(d, -1, ID_LM_HEAD), D,
                                  m->vocab_start, m->vocab_local, 0, D, 1.0f / sqrtf((float)D)))) {
        return st;
    }
    if ((st = dummy_vector(d, &m->w.final_norm, "model.norm.weight", tensor_seed(d, -1, ID_FINAL_NORM), 0, D, 0.0f,
                           1.0f)))
        return st;
    for (int l = 0; l < c->n_layers; l++)
        if ((st = dummy_layer(d, l)))
            return st;
    /* Fills are asynchronous on a device: a failed one reports here, against this model. */
    if ((st = backend_synchronize(d->be, d->err)))
        return augur_wrap(d->err, "%s: filling the dummy weights", m->source);
    return AUGUR_OK;
}

augur_status model_load_dummy(model *m, const char *path, const model_load_opts *opts, augur_backend *be,
                              uint64_t seed, augur_error *err)
{
    memset(m, 0, sizeof *m);
    m->opts = opts ? *opts : (model_load_opts){.tp_rank = 0, .tp_size = 1};
    snprintf(m->source, sizeof m->source, "%s", path);
    if (m->opts.tp_size < 1 || m->opts.tp_rank < 0 || m->opts.tp_rank >= m->opts.tp_size)
        return augur_fail(err, AUGUR_E_INTERNAL, "%s: tensor-parallel rank %d of %d", path, m->opts.tp_rank,
                          m->opts.tp_size);
    if (!be)
        return augur_fail(err, AUGUR_E_INTERNAL, "%s: dummy weights need a backend to live in", path);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return augur_fail(err, AUGUR_E_INPUT, "%s: no such file or directory", path);
    char config[1200];
    snprintf(config, sizeof config, S_ISDIR(sb.st_mode) ? "%s/config.json" : "%s", path);
    augur_status st = model_config_load_hf(&m->cfg, config, err);
    if (st)
        return st;
    if (m->opts.max_layers > m->cfg.n_layers)
        return augur_fail(err, AUGUR_E_INPUT, "%s: %d draft layers requested, the model has %d", path,
                          m->opts.max_layers, m->cfg.n_layers);
    if (m->opts.max_layers > 0)
        m->cfg.n_layers = m->opts.max_layers;
    if ((st = tp_check_layout(&m->cfg, m->opts.tp_size, err)))
        return augur_wrap(err, "%s", path);
    model_plan_shard(m);
    m->backend = be;
    m->memory = MODEL_WEIGHTS_ALLOCATED;
    dummy_maker d = {.m = m, .be = be, .seed = seed, .err = err};
    if ((st = dummy_weights(&d)))
        model_free(m);
    return st;
}

size_t model_weight_bytes(const model_config *c, const model_load_opts *opts, augur_dtype dtype)
{
    model m = {.cfg = *c, .opts = opts ? *opts : (model_load_opts){.tp_rank = 0, .tp_size = 1}};
    if (model_config_validate(c, "model_weight_bytes", NULL) || m.opts.tp_size < 1 || m.opts.tp_rank < 0 ||
        m.opts.tp_rank >= m.opts.tp_size || tp_check_layout(c, m.opts.tp_size, NULL))
        return 0;
    if (m.opts.max_layers > 0 && m.opts.max_layers < c->n_layers)
        m.cfg.n_layers = m.opts.max_layers;
    model_plan_shard(&m);
    const size_t es = augur_dtype_size(dtype), f32 = sizeof(float), D = (size_t)c->dim;
    const size_t q = (size_t)m.n_heads_local * (size_t)c->head_dim;
    const size_t kv = (size_t)m.n_kv_heads_local * (size_t)c->head_dim;
    const size_t per_layer = 2 * D * f32 +                           /* norms */
                             (q + 2 * kv) * D * es + D * q * es +    /* wq, wk, wv; wo */
                             3 * (size_t)m.hidden_local * D * es +   /* gate, up, down */
                             (c->attn_bias ? (q + 2 * kv) * f32 : 0); /* biases */
    return (size_t)c->vocab_size * D * es +                                 /* embedding, replicated */
           (c->tie_embeddings ? 0 : (size_t)m.vocab_local * D * es) +       /* lm_head shard */
           D * f32 + (size_t)m.cfg.n_layers * per_layer;
}
