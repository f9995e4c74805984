/* Building a rank's part of the distributed engine: layout, model shard, caches,
 * and a start-up handshake that fails every rank together instead of leaving some
 * waiting on a peer that already gave up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/spec_engine.h"

/* Every rank contributes its status; on failure each rank's err names the first rank
 * at fault (its own message if that is this rank). */
static augur_status agree(spec_engine *e, augur_status mine, augur_error *err)
{
    int world_size = 0;
    MPI_Comm_size(e->world, &world_size);
    int *all = calloc((size_t)world_size, sizeof(int));
    if (!all)
        return augur_fail(err, AUGUR_E_NOMEM, "rank %d: out of memory", e->world_rank);
    int code = (int)mine;
    MPI_Allgather(&code, 1, MPI_INT, all, 1, MPI_INT, e->world);
    augur_status worst = AUGUR_OK;
    for (int r = 0; r < world_size && !worst; r++) {
        if (all[r]) {
            worst = (augur_status)all[r];
            if (r != e->world_rank)
                augur_fail(err, worst, "rank %d failed to start (see its message)", r);
        }
    }
    free(all);
    return worst;
}

static augur_status load_role_model(spec_engine *e, const char *target_path, const char *draft_path,
                                    int draft_layers, bool load_draft, augur_error *err)
{
    augur_status st;
    if (e->role == SPEC_ROLE_TARGET) {
        model_load_opts o = {.tp_rank = e->world_rank, .tp_size = e->n_targets};
        if ((st = model_load(&e->m, target_path, &o, err)))
            return augur_wrap(err, "target rank %d", e->world_rank);
        e->has_model = true;
        return AUGUR_OK;
    }
    if (!load_draft)
        return AUGUR_OK;
    model_load_opts o = {.tp_rank = 0, .tp_size = 1, .max_layers = draft_layers};
    const char *path = draft_path ? draft_path : target_path;
    if ((st = model_load(&e->m, path, &o, err)))
        return augur_wrap(err, "draft rank %d", e->world_rank);
    e->has_model = true;
    return AUGUR_OK;
}

/* Draft and target must agree on the vocabulary; the context is the smallest any rank allows. */
static augur_status check_models(spec_engine *e, int max_context, augur_error *err)
{
    int mine[2] = {e->has_model ? e->m.cfg.vocab_size : -1, e->has_model ? e->m.cfg.max_seq_len : 1 << 30};
    int world_size = 0;
    MPI_Comm_size(e->world, &world_size);
    int *all = calloc((size_t)world_size * 2, sizeof(int));
    if (!all)
        return augur_fail(err, AUGUR_E_NOMEM, "rank %d: out of memory", e->world_rank);
    MPI_Allgather(mine, 2, MPI_INT, all, 2, MPI_INT, e->world);
    int target_vocab = all[0], draft_vocab = all[2 * e->draft_rank];
    int ctx_limit = 1 << 30;
    for (int r = 0; r < world_size; r++)
        if (all[2 * r + 1] < ctx_limit)
            ctx_limit = all[2 * r + 1];
    free(all);
    e->vocab = target_vocab;
    if (draft_vocab >= 0 && draft_vocab != target_vocab)
        return augur_fail(err, AUGUR_E_INPUT,
                          "draft and target vocabularies differ: the draft (rank %d) has %d tokens, the target %d",
                          e->draft_rank, draft_vocab, target_vocab);
    if (max_context > ctx_limit)
        return augur_fail(err, AUGUR_E_INPUT, "--max-context %d exceeds a model's max_position_embeddings %d",
                          max_context, ctx_limit);
    e->max_context = max_context ? max_context : (ctx_limit < 4096 ? ctx_limit : 4096);
    return AUGUR_OK;
}

static augur_status alloc_state(spec_engine *e, int threads, augur_error *err)
{
    if (!e->has_model)
        return AUGUR_OK;
    augur_status st = kv_cache_init(&e->kv, e->m.cfg.n_layers, e->max_context, e->m.n_kv_heads_local,
                                    e->m.cfg.head_dim, err);
    if (!st)
        st = forward_init(&e->fwd, &e->m, e->role == SPEC_ROLE_TARGET ? e->tp : NULL, threads, SPEC_MAX_VERIFY + 7,
                          e->max_context, err);
    if (st)
        return augur_wrap(err, "rank %d", e->world_rank);
    if (e->role == SPEC_ROLE_TARGET) {
        e->logits = malloc((size_t)SPEC_MAX_VERIFY * e->m.vocab_local * sizeof(float));
        if (!e->logits)
            return augur_fail(err, AUGUR_E_NOMEM, "target rank %d: cannot allocate logits", e->world_rank);
        if (e->world_rank == 0) {
            e->gather_buf = malloc((size_t)SPEC_MAX_VERIFY * e->vocab * sizeof(float));
            e->gather_counts = calloc((size_t)e->n_targets, sizeof(int));
            if (!e->gather_buf || !e->gather_counts)
                return augur_fail(err, AUGUR_E_NOMEM, "leader: cannot allocate the gather buffers");
        }
    }
    return AUGUR_OK;
}

augur_status spec_engine_init(spec_engine *e, comm_layout *layout, const char *target_path, const char *draft_path,
                              int draft_layers, bool load_draft, int threads, int max_context, augur_error *err)
{
    *e = (spec_engine){.layout = layout, .world = layout->world, .world_rank = layout->world_rank,
                       .n_targets = layout->n_target, .draft_rank = layout->draft_rank,
                       .role = layout->role == COMM_ROLE_TARGET ? SPEC_ROLE_TARGET : SPEC_ROLE_DRAFT,
                       .timeout_s = MSG_DEFAULT_TIMEOUT_S};
    augur_status st = AUGUR_OK;
    if (e->role == SPEC_ROLE_TARGET)
        st = collectives_mpi_create(&e->tp, layout->target, err);
    if (!st)
        st = load_role_model(e, target_path, draft_path, draft_layers, load_draft, err);
    if ((st = agree(e, st, err)))
        return st;
    if ((st = agree(e, check_models(e, max_context, err), err)))
        return st;
    return agree(e, alloc_state(e, threads, err), err);
}

void spec_engine_free(spec_engine *e)
{
    free(e->logits);
    free(e->gather_buf);
    free(e->gather_counts);
    if (e->has_model) {
        forward_free(&e->fwd);
        kv_cache_free(&e->kv);
        model_free(&e->m);
    }
    if (e->tp)
        collectives_destroy(e->tp);
    memset(e, 0, sizeof *e);
}
