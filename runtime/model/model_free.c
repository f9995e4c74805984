/* Releasing a model's weights wherever they live: host mappings and arrays, or a
 * backend's memory. Shared by the host loader (model_load.c) and the backend path
 * (model_device.c) so that neither needs the other. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "runtime/model/mapped_file.h"
#include "runtime/model/model_shard.h"
#include "runtime/model/safetensors.h"

/* Whether lm_head's data lies inside the embedding's rows (tied embeddings), and at
 * which byte offset. Addresses are compared as integers so that this works for host
 * and device pointers alike. */
bool lm_head_in_embedding(const model_weights *w, uintptr_t *offset)
{
    const tensor_view *e = &w->tok_embedding;
    if (!e->data || !w->lm_head.data)
        return false;
    const uintptr_t base = (uintptr_t)e->data, p = (uintptr_t)w->lm_head.data;
    const uintptr_t bytes = (uintptr_t)e->rows * (uintptr_t)e->row_stride * augur_dtype_size(e->dtype);
    if (p < base || p >= base + bytes)
        return false;
    if (offset)
        *offset = p - base;
    return true;
}

static void free_view(augur_backend *be, tensor_view *v, bool uploaded)
{
    if (uploaded)
        backend_weight_free(be, v);
    else
        backend_free(be, (void *)v->data);
    memset(v, 0, sizeof *v);
}

static void free_vec(augur_backend *be, float **v)
{
    backend_free(be, *v);
    *v = NULL;
}

void model_free_backend_weights(model *m)
{
    augur_backend *be = m->backend;
    model_weights *w = &m->w;
    if (!be)
        return;
    const bool up = m->memory == MODEL_WEIGHTS_UPLOADED;
    if (lm_head_in_embedding(w, NULL))
        memset(&w->lm_head, 0, sizeof w->lm_head); /* the embedding's memory, freed with it */
    else
        free_view(be, &w->lm_head, up);
    free_view(be, &w->tok_embedding, up);
    free_vec(be, &w->final_norm);
    for (int l = 0; w->layers && l < m->cfg.n_layers; l++) {
        layer_weights *lw = &w->layers[l];
        tensor_view *views[] = {&lw->wq, &lw->wk, &lw->wv, &lw->wo, &lw->w_gate, &lw->w_up, &lw->w_down};
        for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
            free_view(be, views[i], up);
        float **vecs[] = {&lw->attn_norm, &lw->ffn_norm, &lw->bq, &lw->bk, &lw->bv};
        for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++)
            free_vec(be, vecs[i]);
    }
}

void model_release_host(model *m)
{
    for (int l = 0; m->w.layers && l < m->cfg.n_layers; l++) {
        layer_weights *lw = &m->w.layers[l];
        free(lw->attn_norm);
        free(lw->ffn_norm);
        free(lw->bq);
        free(lw->bk);
        free(lw->bv);
        lw->attn_norm = lw->ffn_norm = lw->bq = lw->bk = lw->bv = NULL;
    }
    free(m->w.final_norm);
    m->w.final_norm = NULL;
    for (int k = 0; k < m->n_shards; k++)
        safetensors_close(m->shards[k]);
    free(m->shards);
    mapped_file_close(m->llama2c);
    m->shards = NULL;
    m->n_shards = 0;
    m->llama2c = NULL;
}

void model_free(model *m)
{
    if (m->memory != MODEL_WEIGHTS_HOST)
        model_free_backend_weights(m);
    model_release_host(m);
    free(m->w.layers);
    char source[sizeof m->source];
    memcpy(source, m->source, sizeof source);
    memset(m, 0, sizeof *m);
    memcpy(m->source, source, sizeof source); /* callers still name the model in messages */
}
