#include "runtime/forward.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/cpu_kernels.h"

static float *alloc_floats(size_t n, int *failed)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p)
        *failed = 1;
    return p;
}

augur_status forward_init(forward_ctx *f, const model *m, collectives *tp, int threads, int max_tokens,
                          int max_seq, augur_error *err)
{
    *f = (forward_ctx){.m = m, .tp = tp, .threads = threads < 1 ? 1 : threads, .max_tokens = max_tokens,
                       .max_seq = max_seq};
    const model_config *c = &m->cfg;
    size_t T = (size_t)max_tokens;
    size_t q_dim = (size_t)m->n_heads_local * c->head_dim;
    size_t kv_dim = (size_t)m->n_kv_heads_local * c->head_dim;
    int failed = 0;
    f->inv_freq = alloc_floats((size_t)c->head_dim / 2, &failed);
    f->positions = calloc(T, sizeof(int));
    failed |= f->positions == NULL;
    f->x = alloc_floats(T * c->dim, &failed);
    f->xb = alloc_floats(T * c->dim, &failed);
    f->proj = alloc_floats(T * c->dim, &failed);
    f->q = alloc_floats(T * q_dim, &failed);
    f->att = alloc_floats(T * q_dim, &failed);
    f->k = alloc_floats(T * kv_dim, &failed);
    f->v = alloc_floats(T * kv_dim, &failed);
    f->gate = alloc_floats(T * (size_t)m->hidden_local, &failed);
    f->up = alloc_floats(T * (size_t)m->hidden_local, &failed);
    f->att_scratch = alloc_floats((size_t)f->threads * (size_t)max_seq, &failed);
    if (failed) {
        forward_free(f);
        return augur_fail(err, AUGUR_E_NOMEM, "%s: cannot allocate activations for %d positions", m->source,
                          max_tokens);
    }
    rope_inv_freq(f->inv_freq, c->head_dim, c->rope_theta, &c->rope_scaling);
    return AUGUR_OK;
}

void forward_free(forward_ctx *f)
{
    free(f->inv_freq);
    free(f->positions);
    free(f->x);
    free(f->xb);
    free(f->proj);
    free(f->q);
    free(f->att);
    free(f->k);
    free(f->v);
    free(f->gate);
    free(f->up);
    free(f->att_scratch);
    memset(f, 0, sizeof *f);
}

/* Adds a row-parallel projection's partial result, summed over the TP group, into x. */
static augur_status add_reduced(forward_ctx *f, float *x, float *partial, size_t count, augur_error *err)
{
    if (f->tp) {
        augur_status st = coll_allreduce_sum(f->tp, partial, count, err);
        if (st)
            return st;
    }
    cpu_add(x, x, partial, (int64_t)count);
    return AUGUR_OK;
}

static augur_status attention_block(forward_ctx *f, kv_cache *kv, const layer_weights *lw, int layer, int n,
                                    int start, augur_error *err)
{
    const model *m = f->m;
    const model_config *c = &m->cfg;
    int hd = c->head_dim;
    int nh = m->n_heads_local, nkv = m->n_kv_heads_local;
    size_t kv_dim = (size_t)nkv * hd;

    cpu_rmsnorm(f->xb, f->x, lw->attn_norm, n, c->dim, c->rms_norm_eps);
    cpu_matmul(f->q, f->xb, n, &lw->wq, lw->bq, f->threads);
    cpu_matmul(f->k, f->xb, n, &lw->wk, lw->bk, f->threads);
    cpu_matmul(f->v, f->xb, n, &lw->wv, lw->bv, f->threads);
    cpu_rope(f->q, n, nh, hd, f->positions, f->inv_freq, c->rope_pairs);
    cpu_rope(f->k, n, nkv, hd, f->positions, f->inv_freq, c->rope_pairs);
    for (int i = 0; i < n; i++) {
        memcpy(kv_cache_k(kv, layer, start + i), f->k + (size_t)i * kv_dim, kv_dim * sizeof(float));
        memcpy(kv_cache_v(kv, layer, start + i), f->v + (size_t)i * kv_dim, kv_dim * sizeof(float));
    }
    cpu_attention(f->att, f->q, n, start, nh, nkv, hd, kv_cache_k(kv, layer, 0), kv_cache_v(kv, layer, 0),
                  f->att_scratch, f->threads);
    cpu_matmul(f->proj, f->att, n, &lw->wo, NULL, f->threads);
    return add_reduced(f, f->x, f->proj, (size_t)n * c->dim, err);
}

static augur_status mlp_block(forward_ctx *f, const layer_weights *lw, int n, augur_error *err)
{
    const model_config *c = &f->m->cfg;
    cpu_rmsnorm(f->xb, f->x, lw->ffn_norm, n, c->dim, c->rms_norm_eps);
    cpu_matmul(f->gate, f->xb, n, &lw->w_gate, NULL, f->threads);
    cpu_matmul(f->up, f->xb, n, &lw->w_up, NULL, f->threads);
    cpu_swiglu(f->gate, f->gate, f->up, (int64_t)n * f->m->hidden_local);
    cpu_matmul(f->proj, f->gate, n, &lw->w_down, NULL, f->threads);
    return add_reduced(f, f->x, f->proj, (size_t)n * c->dim, err);
}

augur_status forward_run(forward_ctx *f, kv_cache *kv, const int32_t *tokens, int n, int logits_from,
                         float *logits, augur_error *err)
{
    const model *m = f->m;
    const model_config *c = &m->cfg;
    if (n <= 0 || n > f->max_tokens)
        return augur_fail(err, AUGUR_E_INTERNAL, "forward: %d positions in one call (limit %d)", n, f->max_tokens);
    if (logits_from < 0 || logits_from > n)
        return augur_fail(err, AUGUR_E_INTERNAL, "forward: logits_from %d outside 0..%d", logits_from, n);
    int start = kv->len;
    if (start + n > kv->max_seq || start + n > f->max_seq)
        return augur_fail(err, AUGUR_E_INPUT, "%s: sequence of %d tokens exceeds the context of %d", m->source,
                          start + n, kv->max_seq < f->max_seq ? kv->max_seq : f->max_seq);
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return augur_fail(err, AUGUR_E_INPUT, "%s: token id %d outside the vocabulary of %d", m->source,
                              tokens[i], c->vocab_size);
        f->positions[i] = start + i;
    }

    cpu_embedding(f->x, &m->w.tok_embedding, tokens, n);
    augur_status st;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *lw = &m->w.layers[l];
        if ((st = attention_block(f, kv, lw, l, n, start, err)) || (st = mlp_block(f, lw, n, err)))
            return st;
    }
    if ((st = kv_cache_append(kv, n, err)))
        return st;
    if (logits && logits_from < n) {
        int rows = n - logits_from;
        float *xs = f->x + (size_t)logits_from * c->dim;
        cpu_rmsnorm(f->xb, xs, m->w.final_norm, rows, c->dim, c->rms_norm_eps);
        cpu_matmul(logits, f->xb, rows, &m->w.lm_head, NULL, f->threads);
    }
    return AUGUR_OK;
}

augur_status forward_prefill(forward_ctx *f, kv_cache *kv, const int32_t *tokens, int n, float *last_logits,
                             augur_error *err)
{
    for (int done = 0; done < n;) {
        int chunk = n - done < f->max_tokens ? n - done : f->max_tokens;
        bool last = done + chunk == n;
        augur_status st = forward_run(f, kv, tokens + done, chunk, last ? chunk - 1 : chunk,
                                      last ? last_logits : NULL, err);
        if (st)
            return st;
        done += chunk;
    }
    return AUGUR_OK;
}
