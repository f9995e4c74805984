#include "runtime/forward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu_kernels.h"
#include "kernels/probs.h"

/* Steps of up to this many rows may be captured (decode and every verification width;
 * the CUDA backend's row-invariant schedules cover as many). */
#define FORWARD_GRAPH_ROWS 80

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Sizes of the activation buffers, in floats, for max_tokens positions. */
typedef struct {
    size_t dim, q, kv, hidden, logits;
} act_sizes;

static act_sizes sizes_of(const model *m, int max_tokens)
{
    size_t T = (size_t)max_tokens;
    const model_config *c = &m->cfg;
    return (act_sizes){.dim = T * (size_t)c->dim,
                       .q = T * (size_t)m->n_heads_local * (size_t)c->head_dim,
                       .kv = T * (size_t)m->n_kv_heads_local * (size_t)c->head_dim,
                       .hidden = T * (size_t)m->hidden_local,
                       .logits = T * (size_t)m->vocab_local};
}

size_t forward_workspace_bytes(const model *m, int max_tokens)
{
    act_sizes s = sizes_of(m, max_tokens);
    size_t floats = 3 * s.dim + 2 * s.q + 2 * s.kv + 2 * s.hidden + s.logits + (size_t)m->cfg.head_dim / 2;
    return (floats + (size_t)max_tokens) * sizeof(float) + 2 * (size_t)max_tokens * sizeof(int32_t);
}

augur_status forward_init(forward_ctx *f, const model *m, augur_backend *be, collectives *tp, int threads,
                          int max_tokens, int max_seq, augur_error *err)
{
    *f = (forward_ctx){.m = m, .be = be, .tp = tp, .max_tokens = max_tokens, .max_seq = max_seq};
    augur_status st;
    if (!f->be) {
        if ((st = backend_cpu_create(&f->be, threads < 1 ? 1 : threads, err)))
            return st;
        f->owns_be = true;
    }
    const model_config *c = &m->cfg;
    act_sizes s = sizes_of(m, max_tokens);
    struct {
        void **p;
        size_t bytes;
    } bufs[] = {
        {(void **)&f->inv_freq, (size_t)c->head_dim / 2 * sizeof(float)},
        {(void **)&f->ids, (size_t)max_tokens * sizeof(int32_t)},
        {(void **)&f->argmax, f->be->caps.host_memory ? 0 : 2 * (size_t)max_tokens * sizeof(int32_t)},
        {(void **)&f->x, s.dim * sizeof(float)},
        {(void **)&f->xb, s.dim * sizeof(float)},
        {(void **)&f->proj, s.dim * sizeof(float)},
        {(void **)&f->q, s.q * sizeof(float)},
        {(void **)&f->att, s.q * sizeof(float)},
        {(void **)&f->k, s.kv * sizeof(float)},
        {(void **)&f->v, s.kv * sizeof(float)},
        {(void **)&f->gate, s.hidden * sizeof(float)},
        {(void **)&f->up, s.hidden * sizeof(float)},
        {(void **)&f->logits, f->be->caps.host_memory ? 0 : s.logits * sizeof(float)},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (!bufs[i].bytes)
            continue;
        if ((st = backend_alloc(f->be, bufs[i].p, bufs[i].bytes, err))) {
            forward_free(f);
            return augur_wrap(err, "%s: activations for %d positions", m->source, max_tokens);
        }
    }
    if (!f->be->caps.host_memory && !(f->reduced = malloc(2 * (size_t)max_tokens * sizeof(int32_t)))) {
        forward_free(f);
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory for the rows' argmax", m->source);
    }
    if (tp && tp->size > 1 && !tp->ops->device_buffers && !f->be->caps.host_memory) {
        f->stage = malloc(s.dim * sizeof(float));
        if (!f->stage) {
            forward_free(f);
            return augur_fail(err, AUGUR_E_NOMEM, "%s: cannot allocate the all-reduce staging buffer", m->source);
        }
    }
    const char *graphs = getenv("AUGUR_CUDA_GRAPHS");
    /* on by default; AUGUR_CUDA_GRAPHS=0 runs every step uncaptured (A/B measurements) */
    /* With a TP group only where its all-reduces can join the graph (NCCL), and opt-in
     * there (AUGUR_CUDA_GRAPHS_NCCL=1): a captured step's collectives are waited for once,
     * after the graph, rather than one by one. */
    const char *nccl_graphs = getenv("AUGUR_CUDA_GRAPHS_NCCL");
    bool tp_ok = !tp || tp->size <= 1 ||
                 (coll_capturable(tp) && nccl_graphs && !strcmp(nccl_graphs, "1"));
    if (!(graphs && !strcmp(graphs, "0")) && f->be->caps.graphs && tp_ok) {
        f->graph_rows = max_tokens < FORWARD_GRAPH_ROWS ? max_tokens : FORWARD_GRAPH_ROWS;
        size_t keys = (size_t)(f->graph_rows + 1) * (size_t)(f->graph_rows + 1);
        f->graph = calloc(keys, sizeof *f->graph);
        f->graph_ran = calloc(keys, 1);
        if (!f->graph || !f->graph_ran) {
            forward_free(f);
            return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory for captured steps", m->source);
        }
        if ((st = backend_alloc(f->be, (void **)&f->pos, sizeof(int32_t), err))) {
            forward_free(f);
            return st;
        }
        f->graphs = true;
        /* AUGUR_CUDA_CHAINS=0 runs a greedy chain step by step (A/B measurements) */
        const char *chains = getenv("AUGUR_CUDA_CHAINS");
        if (!(chains && !strcmp(chains, "0")) && f->be->iface.argmax_feed && !(tp && tp->size > 1)) {
            size_t keys = (size_t)(FORWARD_CHAIN_FEED + 1) * (FORWARD_CHAIN_STEPS + 1);
            f->chain = calloc(keys, sizeof *f->chain);
            f->chain_ran = calloc(keys, 1);
            if (!f->chain || !f->chain_ran) {
                forward_free(f);
                return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory for captured chains", m->source);
            }
        }
    }
    float *inv = malloc((size_t)c->head_dim / 2 * sizeof(float));
    if (!inv) {
        forward_free(f);
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", m->source);
    }
    rope_inv_freq(inv, c->head_dim, c->rope_theta, &c->rope_scaling);
    st = backend_upload(f->be, f->inv_freq, inv, (size_t)c->head_dim / 2 * sizeof(float), err);
    if (!st)
        st = backend_synchronize(f->be, err);
    free(inv);
    if (st)
        forward_free(f);
    return st;
}

void forward_free(forward_ctx *f)
{
    if (f->be && f->graph) {
        size_t keys = (size_t)(f->graph_rows + 1) * (size_t)(f->graph_rows + 1);
        for (size_t k = 0; k < keys; k++)
            backend_graph_free(f->be, f->graph[k]);
    }
    free(f->graph);
    free(f->graph_ran);
    if (f->be && f->chain)
        for (size_t k = 0; k < (size_t)(FORWARD_CHAIN_FEED + 1) * (FORWARD_CHAIN_STEPS + 1); k++)
            backend_graph_free(f->be, f->chain[k]);
    free(f->chain);
    free(f->chain_ran);
    free(f->fused);
    if (f->be)
        backend_free(f->be, f->pos);
    if (f->be) {
        void *bufs[] = {f->inv_freq, f->ids, f->argmax, f->x,    f->xb, f->proj,  f->q,
                        f->att,      f->k,   f->v,      f->gate, f->up, f->logits};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            backend_free(f->be, bufs[i]);
        if (f->owns_be)
            backend_destroy(f->be);
    }
    free(f->stage);
    free(f->reduced);
    memset(f, 0, sizeof *f);
}

void forward_report_graphs(const forward_ctx *f, const char *who)
{
    if (f->graphs)
        fprintf(stderr, "augur: %s: captured steps: %lld captures, %lld replays; %lld greedy chains (%lld tokens)\n",
                who, (long long)f->graph_captures, (long long)f->graph_replays, (long long)f->chains,
                (long long)f->chained_tokens);
}

void forward_report_fused(const forward_ctx *f, const char *who)
{
    if (f->fused)
        fprintf(stderr, "augur: %s: fused greedy chains: %lld (%lld tokens)\n", who, (long long)f->fused_chains,
                (long long)f->fused_tokens);
}

/* A bf16 matrix of dense rows (what the fused kernel reads); names the first that is not. */
static bool dense_bf16(const tensor_view *w, const char *name, int layer, char *why, size_t len)
{
    if (w->dtype == AUGUR_BF16 && w->row_stride == w->cols)
        return true;
    if (layer < 0)
        snprintf(why, len, "%s is %s with rows of %lld of %lld elements, not dense bf16", name,
                 augur_dtype_name(w->dtype), (long long)w->row_stride, (long long)w->cols);
    else
        snprintf(why, len, "layer %d's %s is %s with rows of %lld of %lld elements, not dense bf16", layer, name,
                 augur_dtype_name(w->dtype), (long long)w->row_stride, (long long)w->cols);
    return false;
}

bool forward_use_fused(forward_ctx *f, char *why_not, size_t len)
{
    char why[1100] = "";
    const model *m = f->m;
    const model_config *c = &m->cfg;
    const char *env = getenv("AUGUR_CUDA_FUSED_DRAFT");
    size_t bytes = model_weight_bytes(c, NULL, AUGUR_BF16);
    bool ok = false;
    if (env && !strcmp(env, "0"))
        snprintf(why, sizeof why, "AUGUR_CUDA_FUSED_DRAFT=0");
    else if (!f->be->iface.greedy_fused)
        snprintf(why, sizeof why, "backend %s has no fused greedy steps", f->be->name);
    else if ((f->tp && f->tp->size > 1) || m->n_heads_local != c->n_heads || m->vocab_local != c->vocab_size ||
             m->hidden_local != c->hidden_dim)
        snprintf(why, sizeof why, "the model is sharded over a tensor-parallel group");
    else if (c->n_layers > AUGUR_FUSED_MAX_LAYERS)
        snprintf(why, sizeof why, "%d layers (at most %d)", c->n_layers, AUGUR_FUSED_MAX_LAYERS);
    else if (bytes > FORWARD_FUSED_MAX_BYTES)
        snprintf(why, sizeof why, "%.1f MB of weights (at most %.0f: a bigger step is bound by bytes)", bytes / 1e6,
                 FORWARD_FUSED_MAX_BYTES / 1e6);
    else if (c->attn_bias)
        snprintf(why, sizeof why, "its attention projections have biases");
    else if (dense_bf16(&m->w.tok_embedding, "the embedding", -1, why, sizeof why) &&
             dense_bf16(&m->w.lm_head, "the LM head", -1, why, sizeof why))
        ok = true;
    augur_fused_model *fm = ok ? calloc(1, sizeof *fm) : NULL;
    if (ok && !fm) {
        snprintf(why, sizeof why, "out of memory");
        ok = false;
    }
    for (int l = 0; ok && l < c->n_layers; l++) {
        const layer_weights *lw = &m->w.layers[l];
        ok = dense_bf16(&lw->wq, "q_proj", l, why, sizeof why) && dense_bf16(&lw->wk, "k_proj", l, why, sizeof why) &&
             dense_bf16(&lw->wv, "v_proj", l, why, sizeof why) && dense_bf16(&lw->wo, "o_proj", l, why, sizeof why) &&
             dense_bf16(&lw->w_gate, "gate_proj", l, why, sizeof why) &&
             dense_bf16(&lw->w_up, "up_proj", l, why, sizeof why) &&
             dense_bf16(&lw->w_down, "down_proj", l, why, sizeof why);
        if (ok)
            fm->layers[l] = (augur_fused_layer){.attn_norm = lw->attn_norm,
                                                .ffn_norm = lw->ffn_norm,
                                                .wq = lw->wq.data,
                                                .wk = lw->wk.data,
                                                .wv = lw->wv.data,
                                                .wo = lw->wo.data,
                                                .w_gate = lw->w_gate.data,
                                                .w_up = lw->w_up.data,
                                                .w_down = lw->w_down.data};
    }
    if (ok) {
        fm->n_layers = c->n_layers;
        fm->dim = c->dim;
        fm->n_heads = c->n_heads;
        fm->n_kv_heads = c->n_kv_heads;
        fm->head_dim = c->head_dim;
        fm->hidden = c->hidden_dim;
        fm->vocab = c->vocab_size;
        fm->eps = c->rms_norm_eps;
        fm->rope_pairs = (int)c->rope_pairs;
        fm->inv_freq = f->inv_freq;
        fm->embedding = m->w.tok_embedding.data;
        fm->lm_head = m->w.lm_head.data;
        fm->final_norm = m->w.final_norm;
        /* the backend's own shape checks, against a cache of this context */
        augur_error e = {0};
        const augur_fused_cache probe = {.layer_rows = f->max_seq};
        if (backend_greedy_fused(f->be, fm, &probe, NULL, 0, 0, 0, false, NULL, NULL, &e)) {
            snprintf(why, sizeof why, "%s", e.message);
            ok = false;
        }
    }
    if (!ok) {
        free(fm);
        fm = NULL;
    }
    free(f->fused);
    f->fused = fm;
    if (why_not && len)
        snprintf(why_not, len, "%s", ok ? "" : why);
    return ok;
}

/* x += a row-parallel projection's partial result, summed over the TP group; then, when
 * norm is given, xb = rmsnorm(x) over rows (the next block's norm, in one kernel with the
 * add where the backend can). */
static augur_status add_reduced(forward_ctx *f, float *x, float *partial, int rows, const float *norm,
                                augur_error *err)
{
    const size_t count = (size_t)rows * f->m->cfg.dim;
    augur_status st = AUGUR_OK;
    if (f->tp && f->tp->size > 1) {
        /* Without the synchronisation the clock would also run over the kernels still
         * queued before the all-reduce on a device backend. */
        if (f->time_allreduce && !f->tp->deferred && (st = backend_synchronize(f->be, err)))
            return st;
        double t0 = now_ms();
        if (f->stage) {
            /* MPI over a device backend: the sum travels through host memory. */
            if (!(st = backend_download(f->be, f->stage, partial, count * sizeof(float), err)) &&
                !(st = coll_allreduce_sum(f->tp, f->stage, count, err)))
                st = backend_upload(f->be, partial, f->stage, count * sizeof(float), err);
        } else {
            /* NCCL runs on the backend's stream; MPI on host memory needs the CPU kernels done,
             * which they are (the CPU backend is synchronous). */
            st = coll_allreduce_sum(f->tp, partial, count, err);
        }
        f->allreduce_ms += now_ms() - t0;
        f->allreduces++;
        f->allreduce_bytes += (int64_t)(count * sizeof(float));
        if (st)
            return st;
    }
    if (norm)
        return backend_add_rmsnorm(f->be, f->xb, x, partial, norm, rows, f->m->cfg.dim, f->m->cfg.rms_norm_eps, err);
    return backend_add(f->be, x, x, partial, (int64_t)count, err);
}

/* One sequence's rows in a forward: activation rows row .. row+n-1 are its positions
 * start .. start+n-1 in cache kv. A plain forward_run is one segment at row 0. */
typedef struct {
    kv_cache *kv;
    int row;
    int n;
    int start;
} fwd_seg;

/* Activation rows row .. row+n-1 whose logits are wanted. */
typedef struct {
    int row;
    int n;
} fwd_rows;

/* RoPE, the KV store and attention act per segment (each its own positions and cache);
 * the norm and the projections run once over all rows: one pass over the weights.
 * normed: xb already holds this layer's attention norm of x (the previous MLP's add made
 * it). Ends with x += attention and xb = the MLP's norm of x. */
static augur_status attention_block(forward_ctx *f, const fwd_seg *segs, int n_segs, int rows,
                                    const layer_weights *lw, int layer, bool normed, augur_error *err)
{
    const model *m = f->m;
    const model_config *c = &m->cfg;
    augur_backend *be = f->be;
    int hd = c->head_dim;
    int nh = m->n_heads_local, nkv = m->n_kv_heads_local;
    size_t kv_row = (size_t)nkv * hd, q_row = (size_t)nh * hd;
    augur_status st;
    if ((!normed && (st = backend_rmsnorm(be, f->xb, f->x, lw->attn_norm, rows, c->dim, c->rms_norm_eps, err))) ||
        (st = backend_matmul_parts(be, f->xb, rows, (matmul_part[]){{f->q, &lw->wq, lw->bq}, {f->k, &lw->wk, lw->bk},
                                                                    {f->v, &lw->wv, lw->bv}}, 3, err)))
        return augur_wrap(err, "%s: layer %d attention", m->source, layer);
    for (int s = 0; s < n_segs; s++) {
        const fwd_seg *g = &segs[s];
        kv_cache *kv = g->kv;
        float *q = f->q + (size_t)g->row * q_row, *att = f->att + (size_t)g->row * q_row;
        float *k = f->k + (size_t)g->row * kv_row, *v = f->v + (size_t)g->row * kv_row;
        const int32_t *table = kv_cache_table(kv);
        float *kl = kv_cache_layer_k(kv, layer), *vl = kv_cache_layer_v(kv, layer);
        if ((st = backend_rope_store(be, q, k, v, g->n, nh, nkv, hd, g->start, f->inv_freq, c->rope_pairs, kl, vl,
                                     table, KV_BLOCK, err)) ||
            (st = backend_attention(be, att, q, g->n, g->start, nh, nkv, hd, kl, vl, table, KV_BLOCK, err)))
            return augur_wrap(err, "%s: layer %d attention, sequence %d of %d", m->source, layer, s + 1, n_segs);
    }
    if ((st = backend_matmul(be, f->proj, f->att, rows, &lw->wo, NULL, err)))
        return augur_wrap(err, "%s: layer %d attention", m->source, layer);
    return add_reduced(f, f->x, f->proj, rows, lw->ffn_norm, err);
}

/* From xb = the MLP's norm of x; ends with x += MLP and, when next_norm is given (the next
 * layer's attention norm), xb = that norm of x. */
static augur_status mlp_block(forward_ctx *f, const layer_weights *lw, int layer, int n, const float *next_norm,
                              augur_error *err)
{
    augur_backend *be = f->be;
    augur_status st;
    if ((st = backend_matmul_parts(be, f->xb, n,
                                   (matmul_part[]){{f->gate, &lw->w_gate, NULL}, {f->up, &lw->w_up, NULL}}, 2, err)) ||
        (st = backend_swiglu(be, f->gate, f->gate, f->up, n, f->m->hidden_local, err)) ||
        (st = backend_matmul(be, f->proj, f->gate, n, &lw->w_down, NULL, err)))
        return augur_wrap(err, "%s: layer %d MLP", f->m->source, layer);
    return add_reduced(f, f->x, f->proj, n, next_norm, err);
}

/* The step's device work, from the ids already in f->ids: embedding, the layers over all
 * segments' rows, and the logits of the wanted row ranges, in order, into out. */
static augur_status forward_body(forward_ctx *f, const fwd_seg *segs, int n_segs, int rows, const fwd_rows *want,
                                 int n_want, float *out, augur_error *err)
{
    const model *m = f->m;
    const model_config *c = &m->cfg;
    augur_backend *be = f->be;
    augur_status st;
    if ((st = backend_embedding(be, f->x, &m->w.tok_embedding, f->ids, rows, err)))
        return augur_wrap(err, "%s: embedding", m->source);
    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *lw = &m->w.layers[l];
        const float *next_norm = l + 1 < c->n_layers ? m->w.layers[l + 1].attn_norm : NULL;
        if ((st = attention_block(f, segs, n_segs, rows, lw, l, l > 0, err)) ||
            (st = mlp_block(f, lw, l, rows, next_norm, err)))
            return st;
    }
    if (n_want <= 0)
        return AUGUR_OK;
    /* One range is read in place; several are gathered into xb first. The norm works row
     * by row, so each row gets the same arithmetic either way. */
    const float *xs = f->x + (size_t)want[0].row * c->dim;
    int n_out = want[0].n;
    if (n_want > 1) {
        n_out = 0;
        for (int i = 0; i < n_want; i++) {
            if ((st = backend_copy(be, f->xb + (size_t)n_out * c->dim, f->x + (size_t)want[i].row * c->dim,
                                   (size_t)want[i].n * c->dim * sizeof(float), err)))
                return augur_wrap(err, "%s: logits rows", m->source);
            n_out += want[i].n;
        }
        xs = f->xb;
    }
    if ((st = backend_rmsnorm(be, f->xb, xs, m->w.final_norm, n_out, c->dim, c->rms_norm_eps, err)) ||
        (st = backend_matmul(be, out, f->xb, n_out, &m->w.lm_head, NULL, err)))
        return augur_wrap(err, "%s: logits", m->source);
    return AUGUR_OK;
}

/* A TP group whose all-reduces go into the captured steps. */
static bool captured_tp(const forward_ctx *f)
{
    return f->tp && f->tp->size > 1;
}

/* What one captured program runs from f->ids and the position in f->pos: a step of n rows
 * whose logits rows lf.. go to out (steps 0), or a greedy chain of `steps` steps, the
 * first of n rows, each later one of the token the step before chose (f->argmax[s]). */
typedef struct {
    kv_cache *kv;
    int n, start, lf;
    int steps;
    float *out;
} captured_work;

static augur_status captured_body(forward_ctx *f, const captured_work *w, augur_error *err)
{
    if (!w->steps) {
        const fwd_seg seg = {.kv = w->kv, .n = w->n, .start = w->start};
        const fwd_rows want = {.row = w->lf, .n = w->n - w->lf};
        return forward_body(f, &seg, 1, w->n, &want, w->lf < w->n, w->out, err);
    }
    augur_status st = AUGUR_OK;
    for (int s = 0, start = w->start; s < w->steps && !st; s++) {
        const int n = s ? 1 : w->n;
        const fwd_seg seg = {.kv = w->kv, .n = n, .start = start};
        const fwd_rows want = {.row = n - 1, .n = 1};
        const bool more = s + 1 < w->steps; /* then the next step's token and position, where it reads them */
        if (!(st = forward_body(f, &seg, 1, n, &want, 1, f->logits, err)) &&
            (st = backend_argmax_feed(f->be, f->argmax + s, more ? f->ids : NULL, more ? f->pos : NULL, n, f->logits,
                                      f->m->vocab_local, err)))
            augur_wrap(err, "%s: argmax of chained step %d", f->m->source, s + 1);
        start += n;
    }
    return st;
}

/* Runs w as a captured program kept in *slot: its first run goes uncaptured (it sizes the
 * backend's scratch; a capture cannot allocate), the second is captured, later ones
 * replay it. Every run reads the position from f->pos, so the captured and uncaptured
 * runs do the same arithmetic. A program bakes in the cache's addresses: forward_run
 * brings only the cache the steps were captured against. */
static augur_status run_captured(forward_ctx *f, const captured_work *w, void **slot, unsigned char *ran,
                                 augur_error *err)
{
    augur_backend *be = f->be;
    kv_cache *kv = w->kv;
    int max_positions = kv->max_seq < f->max_seq ? kv->max_seq : f->max_seq;
    int32_t pos = w->start;
    augur_status st = backend_upload(be, f->pos, &pos, sizeof pos, err);
    if (!st)
        st = backend_bind_position(be, f->pos, max_positions, err);
    if (st)
        return augur_wrap(err, "%s: captured step", f->m->source);
    f->graph_k = kv->k;
    f->graph_v = kv->v;
    f->graph_layer_rows = kv->layer_rows;
    if (*slot) {
        bool stale = false;
        st = backend_graph_launch(be, *slot, &stale, err);
        if (!st && !stale && captured_tp(f))
            st = coll_wait(f->tp, "captured step (its all-reduces)", err);
        if (!st && !stale) {
            f->graph_replays++;
        } else if (!st) { /* the backend moved a scratch buffer: run uncaptured, capture again next time */
            backend_graph_free(be, *slot);
            *slot = NULL;
            st = captured_body(f, w, err);
        }
    } else if (*ran) {
        void *g = NULL;
        if (!(st = backend_graph_begin(be, err))) {
            if (captured_tp(f))
                f->tp->deferred = true;
            st = captured_body(f, w, err);
            if (captured_tp(f))
                f->tp->deferred = false;
            augur_status end = backend_graph_end(be, st ? NULL : &g, st ? NULL : err);
            st = st ? st : end;
        }
        if (!st) {
            *slot = g;
            f->graph_captures++;
            bool stale = false;
            st = backend_graph_launch(be, g, &stale, err);
            if (!st && stale)
                st = augur_fail(err, AUGUR_E_INTERNAL, "%s: a step went stale as it was captured", f->m->source);
            if (!st && captured_tp(f))
                st = coll_wait(f->tp, "captured step (its all-reduces)", err);
        }
    } else {
        st = captured_body(f, w, err);
        *ran = 1;
    }
    augur_error unbind_err = {0};
    augur_status ub = backend_bind_position(be, NULL, 0, &unbind_err);
    if (!st && ub)
        *err = unbind_err;
    return st ? st : ub;
}

/* Whether forward_run may capture or replay a step over kv: a contiguous cache (a paged
 * one's table changes under the step), the one the steps so far were captured against. */
static bool graphs_take(const forward_ctx *f, const kv_cache *kv, int n)
{
    if (!f->graphs || n > f->graph_rows || kv->pool)
        return false;
    return !f->graph_k || (f->graph_k == kv->k && f->graph_v == kv->v && f->graph_layer_rows == kv->layer_rows);
}

/* Checks one sequence's share of a call: rows, logits rows, context and token ids. */
static augur_status check_seq(const forward_ctx *f, const kv_cache *kv, const int32_t *tokens, int n,
                              int logits_from, augur_error *err)
{
    const model *m = f->m;
    if (n <= 0 || n > f->max_tokens)
        return augur_fail(err, AUGUR_E_INTERNAL, "forward: %d positions in one call (limit %d)", n, f->max_tokens);
    if (logits_from < 0 || logits_from > n)
        return augur_fail(err, AUGUR_E_INTERNAL, "forward: logits_from %d outside 0..%d", logits_from, n);
    int start = kv->len;
    if (start + n > kv->max_seq || start + n > f->max_seq)
        return augur_fail(err, AUGUR_E_INPUT, "%s: sequence of %d tokens exceeds the context of %d", m->source,
                          start + n, kv->max_seq < f->max_seq ? kv->max_seq : f->max_seq);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab_size)
            return augur_fail(err, AUGUR_E_INPUT, "%s: token id %d outside the vocabulary of %d", m->source,
                              tokens[i], m->cfg.vocab_size);
    return AUGUR_OK;
}

/* forward_run's work; lf: first logits row (n: none), left in f->logits on a device
 * backend (host_out NULL) or copied into host_out. */
static augur_status run_one(forward_ctx *f, kv_cache *kv, const int32_t *tokens, int n, int lf, float *host_out,
                            augur_error *err)
{
    const model *m = f->m;
    augur_status st = check_seq(f, kv, tokens, n, lf, err);
    if (st)
        return st;
    int start = kv->len;
    augur_backend *be = f->be;
    if ((st = backend_upload(be, f->ids, tokens, (size_t)n * sizeof(int32_t), err)))
        return augur_wrap(err, "%s: embedding", m->source);
    /* A paged cache needs its blocks (and their table) before the rows are stored. */
    if ((st = kv_cache_reserve(kv, n, err)))
        return augur_wrap(err, "%s: KV cache", m->source);
    float *out = f->be->caps.host_memory ? host_out : f->logits;
    if (graphs_take(f, kv, n)) {
        size_t key = (size_t)n * (size_t)(f->graph_rows + 1) + (size_t)lf;
        const captured_work w = {.kv = kv, .n = n, .start = start, .lf = lf, .out = out};
        st = run_captured(f, &w, &f->graph[key], &f->graph_ran[key], err);
    } else {
        const fwd_seg seg = {.kv = kv, .n = n, .start = start};
        const fwd_rows want = {.row = lf, .n = n - lf};
        st = forward_body(f, &seg, 1, n, &want, lf < n, out, err);
    }
    if (!st)
        st = kv_cache_append(kv, n, err);
    if (st) {
        augur_error ignored = {0};
        kv_cache_trim(kv, kv->len, &ignored); /* gives back the blocks reserved above */
        return st;
    }
    if (lf < n && host_out && !f->be->caps.host_memory &&
        (st = backend_download(be, host_out, f->logits, (size_t)(n - lf) * m->vocab_local * sizeof(float), err)))
        return augur_wrap(err, "%s: logits", m->source);
    return AUGUR_OK;
}

augur_status forward_run(forward_ctx *f, kv_cache *kv, const int32_t *tokens, int n, int logits_from,
                         float *logits, augur_error *err)
{
    if (logits_from < 0 || logits_from > n) /* check_seq's message, before lf hides it */
        return augur_fail(err, AUGUR_E_INTERNAL, "forward: logits_from %d outside 0..%d", logits_from, n);
    return run_one(f, kv, tokens, n, logits ? logits_from : n, logits, err);
}

/* forward_run_batch's work; keep: a device backend computes the wanted rows into f->logits
 * and leaves them there (logits NULL), for forward_run_batch_reduced. */
static augur_status batch_one(forward_ctx *f, const forward_seq *seqs, int n_seqs, bool keep, float *logits,
                              augur_error *err)
{
    const model *m = f->m;
    if (n_seqs <= 0)
        return augur_fail(err, AUGUR_E_INTERNAL, "forward batch: %d sequences", n_seqs);
    int rows = 0, wanted = 0;
    for (int i = 0; i < n_seqs; i++) {
        if (seqs[i].n <= 0 || seqs[i].logits_from < 0 || seqs[i].logits_from > seqs[i].n)
            return augur_fail(err, AUGUR_E_INTERNAL, "forward batch: sequence %d has %d rows, logits from %d", i,
                              seqs[i].n, seqs[i].logits_from);
        for (int j = 0; j < i; j++)
            if (seqs[j].kv == seqs[i].kv)
                return augur_fail(err, AUGUR_E_INTERNAL, "forward batch: sequences %d and %d share a cache", j, i);
        rows += seqs[i].n;
        wanted += seqs[i].n - seqs[i].logits_from;
    }
    if (rows > f->max_tokens)
        return augur_fail(err, AUGUR_E_INTERNAL, "forward batch: %d rows in one call (limit %d)", rows, f->max_tokens);
    /* One sequence is a plain forward (which may replay a captured step). */
    if (n_seqs == 1)
        return run_one(f, seqs[0].kv, seqs[0].tokens, seqs[0].n, logits || keep ? seqs[0].logits_from : seqs[0].n,
                       logits, err);

    fwd_seg *segs = malloc((size_t)n_seqs * sizeof *segs);
    fwd_rows *want = malloc((size_t)n_seqs * sizeof *want);
    if (!segs || !want) {
        free(segs);
        free(want);
        return augur_fail(err, AUGUR_E_NOMEM, "forward batch: out of memory for %d sequences", n_seqs);
    }
    augur_backend *be = f->be;
    augur_status st = AUGUR_OK;
    int n_want = 0, reserved = 0;
    for (int i = 0, row = 0; i < n_seqs && !st; i++) {
        const forward_seq *q = &seqs[i];
        if ((st = check_seq(f, q->kv, q->tokens, q->n, q->logits_from, err))) {
            augur_wrap(err, "batched forward, sequence %d of %d", i + 1, n_seqs);
            break;
        }
        segs[i] = (fwd_seg){.kv = q->kv, .row = row, .n = q->n, .start = q->kv->len};
        if ((logits || keep) && q->logits_from < q->n) { /* adjacent ranges merge: fewer copies */
            if (n_want && want[n_want - 1].row + want[n_want - 1].n == row + q->logits_from)
                want[n_want - 1].n += q->n - q->logits_from;
            else
                want[n_want++] = (fwd_rows){.row = row + q->logits_from, .n = q->n - q->logits_from};
        }
        if ((st = backend_upload(be, f->ids + row, q->tokens, (size_t)q->n * sizeof(int32_t), err))) {
            augur_wrap(err, "%s: embedding", m->source);
            break;
        }
        if ((st = kv_cache_reserve(q->kv, q->n, err))) {
            augur_wrap(err, "%s: KV cache of batched sequence %d of %d", m->source, i + 1, n_seqs);
            break;
        }
        reserved = i + 1;
        row += q->n;
    }
    float *out = be->caps.host_memory ? logits : f->logits;
    if (!st)
        st = forward_body(f, segs, n_seqs, rows, want, n_want, out, err);
    for (int i = 0; i < reserved && !st; i++)
        st = kv_cache_append(segs[i].kv, segs[i].n, err);
    if (st) {
        augur_error ignored = {0};
        for (int i = 0; i < reserved; i++) /* gives back what was reserved (appended ones stay) */
            kv_cache_trim(segs[i].kv, segs[i].kv->len, &ignored);
    }
    free(segs);
    free(want);
    if (st)
        return st;
    if (logits && wanted > 0 && !be->caps.host_memory &&
        (st = backend_download(be, logits, f->logits, (size_t)wanted * m->vocab_local * sizeof(float), err)))
        return augur_wrap(err, "%s: logits", m->source);
    return AUGUR_OK;
}

augur_status forward_run_batch(forward_ctx *f, const forward_seq *seqs, int n_seqs, float *logits,
                               augur_error *err)
{
    return batch_one(f, seqs, n_seqs, false, logits, err);
}

augur_status forward_run_batch_reduced(forward_ctx *f, const forward_seq *seqs, int n_seqs, const bool *row_logits,
                                       float *logits, int32_t *argmax, float *max, augur_error *err)
{
    const int V = f->m->vocab_local;
    int wanted = 0;
    for (int i = 0; i < n_seqs; i++)
        wanted += seqs[i].n - seqs[i].logits_from;
    if (f->be->caps.host_memory) {
        augur_status st = forward_run_batch(f, seqs, n_seqs, logits, err);
        for (int r = 0; r < wanted && !st; r++) {
            argmax[r] = argmax_f32(logits + (size_t)r * V, V);
            max[r] = logits[(size_t)r * V + argmax[r]];
        }
        return st;
    }
    augur_backend *be = f->be;
    augur_status st = batch_one(f, seqs, n_seqs, true, NULL, err);
    if (st || wanted <= 0)
        return st;
    /* the maxima right after the ids: one download (one wait) brings both */
    if ((st = backend_argmax(be, f->argmax, (float *)(f->argmax + wanted), f->logits, wanted, V, err)) ||
        (st = backend_download(be, f->reduced, f->argmax, 2 * (size_t)wanted * sizeof(int32_t), err)))
        return augur_wrap(err, "%s: argmax of %d rows", f->m->source, wanted);
    memcpy(argmax, f->reduced, (size_t)wanted * sizeof(int32_t));
    memcpy(max, f->reduced + wanted, (size_t)wanted * sizeof(float));
    for (int r = 0; r < wanted;) { /* runs of rows whose logits are read, one copy each */
        int to = r;
        while (to < wanted && row_logits && row_logits[to])
            to++;
        if (to > r && (st = backend_download(be, logits + (size_t)r * V, f->logits + (size_t)r * V,
                                             (size_t)(to - r) * V * sizeof(float), err)))
            return augur_wrap(err, "%s: logits", f->m->source);
        r = to > r ? to : r + 1;
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
    /* A device backend runs ahead of the host: make a prefill without logits finish here,
     * so its errors and its time belong to it. */
    return last_logits ? AUGUR_OK : backend_synchronize(f->be, err);
}

augur_status forward_prefill_argmax(forward_ctx *f, kv_cache *kv, const int32_t *tokens, int n, float *logits,
                                    int32_t *argmax, augur_error *err)
{
    if (n <= 0)
        return augur_fail(err, AUGUR_E_INTERNAL, "forward: argmax of an empty prefill");
    if (f->be->caps.host_memory) {
        augur_status st = forward_prefill(f, kv, tokens, n, logits, err);
        if (!st)
            *argmax = argmax_f32(logits, f->m->vocab_local);
        return st;
    }
    int last = (n - 1) / f->max_tokens * f->max_tokens; /* the last chunk's first token */
    augur_status st = last ? forward_prefill(f, kv, tokens, last, NULL, err) : AUGUR_OK;
    if (!st)
        st = run_one(f, kv, tokens + last, n - last, n - last - 1, NULL, err);
    if (!st && (st = backend_argmax(f->be, f->argmax, NULL, f->logits, 1, f->m->vocab_local, err)))
        return augur_wrap(err, "%s: argmax", f->m->source);
    if (!st && (st = backend_download(f->be, argmax, f->argmax, sizeof(int32_t), err)))
        return augur_wrap(err, "%s: argmax", f->m->source);
    return st;
}

/* The end of a chain's one program (chain_run, fused_run), st its result: the `fed` rows
 * appended to kv, or none of them on failure. what names the chain in errors. */
static augur_status chain_settle(forward_ctx *f, kv_cache *kv, int fed, int steps, augur_status st, const char *what,
                                 augur_error *err)
{
    if (!st)
        st = kv_cache_append(kv, fed, err);
    if (st) {
        augur_error ignored = {0};
        kv_cache_trim(kv, kv->len, &ignored);
        return augur_wrap(err, "%s: %s of %d steps", f->m->source, what, steps);
    }
    return AUGUR_OK;
}

/* chain_settle, then the chain's tokens from the device (f->argmax) to out. */
static augur_status chain_finish(forward_ctx *f, kv_cache *kv, int fed, int steps, augur_status st, int32_t *out,
                                 const char *what, augur_error *err)
{
    if ((st = chain_settle(f, kv, fed, steps, st, what, err)))
        return st;
    if ((st = backend_download(f->be, out, f->argmax, (size_t)steps * sizeof(int32_t), err)))
        return augur_wrap(err, "%s: the tokens of %s of %d steps", f->m->source, what, steps);
    return AUGUR_OK;
}

/* Whether forward_greedy_chain may run this chain as one captured program. */
static bool chain_takes(const forward_ctx *f, const kv_cache *kv, int n, int steps)
{
    int max_positions = kv->max_seq < f->max_seq ? kv->max_seq : f->max_seq;
    return f->chain && n <= FORWARD_CHAIN_FEED && steps <= FORWARD_CHAIN_STEPS && steps <= f->max_tokens &&
           graphs_take(f, kv, n) && kv->len + n + steps - 1 <= max_positions;
}

static augur_status chain_run(forward_ctx *f, kv_cache *kv, const int32_t *tokens, int n, int steps, int32_t *out,
                              augur_error *err)
{
    const model *m = f->m;
    augur_status st = check_seq(f, kv, tokens, n, n - 1, err);
    if (st)
        return st;
    const int fed = n + steps - 1;
    if ((st = backend_upload(f->be, f->ids, tokens, (size_t)n * sizeof(int32_t), err)))
        return augur_wrap(err, "%s: embedding", m->source);
    if ((st = kv_cache_reserve(kv, fed, err)))
        return augur_wrap(err, "%s: KV cache", m->source);
    const size_t key = (size_t)n * (FORWARD_CHAIN_STEPS + 1) + (size_t)steps;
    const captured_work w = {.kv = kv, .n = n, .start = kv->len, .steps = steps};
    st = run_captured(f, &w, &f->chain[key], &f->chain_ran[key], err);
    if ((st = chain_finish(f, kv, fed, steps, st, out, "a chain", err)))
        return st;
    f->chains++;
    f->chained_tokens += steps;
    return AUGUR_OK;
}

/* Whether forward_greedy_chain may run this chain as one fused launch: a contiguous cache
 * no longer than the context forward_use_fused checked the kernel's shared memory for
 * (its attention partials grow with the cache's rows). */
static bool fused_takes(const forward_ctx *f, const kv_cache *kv, int n, int steps)
{
    int max_positions = kv->max_seq < f->max_seq ? kv->max_seq : f->max_seq;
    return f->fused && !kv->pool && kv->layer_rows <= f->max_seq && n <= FORWARD_CHAIN_FEED &&
           n <= AUGUR_FUSED_MAX_FEED && steps <= FORWARD_CHAIN_STEPS && steps <= 2 * f->max_tokens &&
           kv->len + n + steps - 1 <= max_positions;
}

static augur_status fused_run(forward_ctx *f, kv_cache *kv, const int32_t *tokens, int n, int steps, bool beside,
                              int32_t *out, augur_error *err)
{
    const model *m = f->m;
    augur_status st = check_seq(f, kv, tokens, n, n - 1, err);
    if (st)
        return st;
    const int fed = n + steps - 1;
    if ((st = kv_cache_reserve(kv, fed, err)))
        return augur_wrap(err, "%s: KV cache", m->source);
    const augur_fused_cache cache = {.k = kv->k, .v = kv->v, .layer_rows = kv->layer_rows};
    st = backend_greedy_fused(f->be, f->fused, &cache, tokens, n, kv->len, steps, beside, out, NULL, err);
    if ((st = chain_settle(f, kv, fed, steps, st, "a fused chain", err)))
        return st;
    f->fused_chains++;
    f->fused_tokens += steps;
    return AUGUR_OK;
}

augur_status forward_greedy_chain(forward_ctx *f, kv_cache *kv, const int32_t *tokens, int n, int steps, bool beside,
                                  int32_t *out, float *logits, augur_error *err)
{
    if (n <= 0 || steps <= 0)
        return augur_fail(err, AUGUR_E_INTERNAL, "forward: greedy chain of %d steps from %d tokens", steps, n);
    for (int done = 0; done < steps;) {
        int take = steps - done < FORWARD_CHAIN_STEPS ? steps - done : FORWARD_CHAIN_STEPS;
        augur_status st;
        if (fused_takes(f, kv, n, take)) {
            st = fused_run(f, kv, tokens, n, take, beside, out + done, err);
        } else if (chain_takes(f, kv, n, take)) {
            st = chain_run(f, kv, tokens, n, take, out + done, err);
        } else {
            take = 1;
            st = forward_prefill_argmax(f, kv, tokens, n, logits, out + done, err);
        }
        if (st)
            return st;
        done += take;
        tokens = out + done - 1; /* the next step feeds the last token chosen */
        n = 1;
    }
    return AUGUR_OK;
}
