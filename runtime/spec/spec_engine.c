/* Building a rank's part of the distributed engine: layout, model shard, caches,
 * and a start-up handshake that fails every rank together instead of leaving some
 * waiting on a peer that already gave up. */
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/spec/spec_engine.h"

#include "comm/liveness.h"

/* Every rank contributes its status; on failure each rank's err names the first rank
 * at fault (its own message if that is this rank). */
static augur_status agree(spec_engine *e, augur_status mine, const char *stage, augur_error *err)
{
    /* A rank that fails the gate cannot know the others' status: its own is the message. */
    augur_error gate_err = {0};
    if (live_gate(e->world, stage, &gate_err)) {
        e->missed_gate = true;
        *err = gate_err;
        return gate_err.code;
    }
    int world_size = 0;
    MPI_Comm_size(e->world, &world_size);
    int *all = calloc((size_t)world_size, sizeof(int));
    if (!all)
        return augur_fail(err, AUGUR_E_NOMEM, "out of memory");
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

/* The draft rank idles under --no-speculation: no model, no GPU. */
static bool runs_model(const spec_engine *e, bool load_draft)
{
    return e->role == SPEC_ROLE_TARGET || load_draft;
}

/* Picks this rank's GPU (collective over world) and opens its backend. */
static augur_status open_backend(spec_engine *e, bool load_draft, augur_error *err)
{
    bool cuda = device_kind_resolve(e->dev.kind) == AUGUR_DEVICE_CUDA;
    bool needs = cuda && runs_model(e, load_draft);
    int n_gpus = cuda ? backend_device_count(AUGUR_BACKEND_CUDA) : 0;
    /* GPUs are a node's, whichever replica its ranks serve: place over the whole job */
    MPI_Comm job = e->layout->job != MPI_COMM_NULL ? e->layout->job : e->world;
    augur_status st =
        e->dev.simulate_hosts > 0
            ? gpu_place_simulated(job, e->world_rank, e->role == SPEC_ROLE_TARGET, needs, n_gpus, e->n_targets,
                                  e->dev.simulate_hosts, &e->place, err)
            : gpu_place(job, e->role == SPEC_ROLE_TARGET, needs, n_gpus, e->dev.tp_over_mpi, e->dev.draft_shares_gpu,
                        &e->place, err);
    if (st || !runs_model(e, load_draft))
        return st;
    if ((st = device_open_backend(&e->be, &e->dev, e->place.gpu < 0 ? 0 : e->place.gpu, err)))
        return augur_wrap(err, "opening the backend");
    /* spec_draft.c decides per request whether to draft ahead; this says what it will do */
    if (e->place.shared && e->role == SPEC_ROLE_DRAFT)
        fprintf(stderr, "augur: rank %d (draft): node %s has no free GPU, sharing GPU %d with a target rank; %s\n",
                e->world_rank, e->place.node, e->place.gpu,
                e->be->caps.shares_device_concurrently
                    ? "the GPU runs both ranks' kernels at once (CUDA MPS), so a greedy draft in fused chains drafts "
                      "ahead beside the verification; other drafts wait for each verdict (--overlap: every draft "
                      "drafts ahead, --no-overlap: none)"
                    : "the draft waits for each verdict there instead of drafting ahead (--overlap drafts ahead "
                      "anyway)");
    return AUGUR_OK;
}

/* "rank 2 (target shard)", or with replicas "rank 5 (replica 1: target shard)": the job's
 * rank, which is what mpirun and the launch table show. */
static void rank_name(const spec_engine *e, char *buf, size_t cap)
{
    const char *role = e->role == SPEC_ROLE_TARGET ? (e->n_targets > 1 ? "target shard" : "target") : "draft";
    if (e->layout->n_replicas > 1)
        snprintf(buf, cap, "rank %d (replica %d: %s)", e->layout->job_rank, e->layout->replica, role);
    else
        snprintf(buf, cap, "rank %d (%s)", e->world_rank, role);
}

static augur_status load_role_model(spec_engine *e, const char *target_path, const char *draft_path,
                                    int draft_layers, bool load_draft, augur_error *err)
{
    augur_status st;
    char who[96];
    rank_name(e, who, sizeof who);
    if (e->role == SPEC_ROLE_TARGET) {
        model_load_opts o = {.tp_rank = e->world_rank, .tp_size = e->n_targets, .who = who};
        if ((st = device_load_model(&e->m, e->be, target_path, &o, &e->dev, err)))
            return augur_wrap(err, "target shard %d of %d", e->world_rank, e->n_targets);
        e->m.opts.who = NULL; /* who lives in this frame */
        e->has_model = true;
        return AUGUR_OK;
    }
    if (!load_draft)
        return AUGUR_OK;
    model_load_opts o = {.tp_rank = 0, .tp_size = 1, .max_layers = draft_layers, .who = who};
    const char *path = draft_path ? draft_path : target_path;
    if ((st = device_load_model(&e->m, e->be, path, &o, &e->dev, err)))
        return augur_wrap(err, "draft");
    e->m.opts.who = NULL;
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
        return augur_fail(err, AUGUR_E_NOMEM, "out of memory");
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
    e->max_context = ctx_limit;
    return AUGUR_OK;
}

/* Every rank plans its memory for the context asked for (or as much as fits); the job
 * uses the smallest context any rank can hold. */
static augur_status plan_context(spec_engine *e, int requested, augur_error *err)
{
    int mine = 1 << 30;
    augur_status st = AUGUR_OK;
    if (e->has_model) {
        st = device_plan_memory(&e->m, e->be, &e->dev, requested, e->max_context, SPEC_FORWARD_TOKENS, &e->plan, err);
        if (!st)
            mine = e->plan.context;
    }
    if ((st = agree(e, st, "memory plan", err)))
        return st;
    int least = 0;
    MPI_Allreduce(&mine, &least, 1, MPI_INT, MPI_MIN, e->world);
    e->max_context = least;
    e->plan.context = least;
    return AUGUR_OK;
}

static augur_status alloc_state(spec_engine *e, int threads, augur_error *err)
{
    if (!e->has_model)
        return AUGUR_OK;
    augur_status st = AUGUR_OK;
    /* Only a backend with a stream holds device buffers NCCL can reduce in place, after its kernels. */
    if (e->role == SPEC_ROLE_TARGET && e->n_targets > 1 && e->be != NULL && e->be->caps.stream &&
        !e->dev.tp_over_mpi) {
#ifdef AUGUR_HAVE_CUDA
        st = collectives_nccl_create(&e->tp, e->layout->target, e->place.gpu, backend_stream(e->be), err);
#endif
    } else if (e->role == SPEC_ROLE_TARGET) {
        e->tp = e->ctl;
    }
    if (!st && e->n_slots > 1) {
        /* every rank's pool holds the positions of the smallest: the leader admits by them */
        int blocks = e->dev.kv_pool_blocks ? e->dev.kv_pool_blocks
                                           : memory_plan_pool_blocks(&e->plan, &e->m, e->n_slots * e->max_context);
        /* an empty pool must take any request the context allows (spec_leader_has_room) */
        if (blocks < kv_blocks_for(e->max_context + SPEC_MAX_VERIFY))
            blocks = kv_blocks_for(e->max_context + SPEC_MAX_VERIFY);
        st = kv_pool_init(&e->pool, e->be, e->m.cfg.n_layers, blocks, e->m.n_kv_heads_local, e->m.cfg.head_dim, err);
        if (!st) {
            e->has_pool = true;
            e->pool_positions = blocks * KV_BLOCK;
        } else {
            augur_wrap(err, "KV pool of %d blocks for %d sequence slots (--max-running)", blocks, e->n_slots);
        }
    }
    if (!st) {
        e->slots = calloc((size_t)e->n_slots, sizeof *e->slots);
        if (!e->slots)
            st = augur_fail(err, AUGUR_E_NOMEM, "cannot allocate %d sequence slots", e->n_slots);
    }
    for (int i = 0; !st && i < e->n_slots; i++)
        if ((st = spec_engine_slot_init(e, &e->slots[i], err)))
            augur_wrap(err, "KV slot %d of %d (--max-running)", i, e->n_slots);
    if (!st)
        st = forward_init(&e->fwd, &e->m, e->be, e->role == SPEC_ROLE_TARGET ? e->tp : NULL, threads,
                          SPEC_FORWARD_TOKENS, e->max_context, err);
    if (st)
        return augur_wrap(err, "allocating caches and activations");
    if (e->role == SPEC_ROLE_DRAFT && e->be && e->be->iface.greedy_fused) {
        /* the draft's greedy proposals (forward_greedy_chain) as one launch each where it can */
        char who[96], why[1100];
        rank_name(e, who, sizeof who);
        if (e->has_pool)
            fprintf(stderr,
                    "augur: %s: greedy proposals without the fused launch: its KV caches are paged "
                    "(--max-running > 1)\n",
                    who);
        else if (forward_use_fused(&e->fwd, why, sizeof why))
            fprintf(stderr, "augur: %s: greedy proposals as one fused launch each (AUGUR_CUDA_FUSED_DRAFT=0: off)\n",
                    who);
        else
            fprintf(stderr, "augur: %s: greedy proposals without the fused launch: %s\n", who, why);
    }
    if (e->role == SPEC_ROLE_TARGET) {
        e->logits = malloc((size_t)SPEC_FORWARD_TOKENS * e->m.vocab_local * sizeof(float));
        e->compact = malloc((size_t)SPEC_FORWARD_TOKENS * e->m.vocab_local * sizeof(float));
        if (!e->logits || !e->compact)
            return augur_fail(err, AUGUR_E_NOMEM, "target: cannot allocate logits");
        if (e->world_rank == 0) {
            e->gather_buf = malloc((size_t)SPEC_FORWARD_TOKENS * e->vocab * sizeof(float));
            e->gather_pairs = malloc((size_t)SPEC_FORWARD_TOKENS * 2 * sizeof(float));
            e->gather_counts = calloc((size_t)e->n_targets, sizeof(int));
            e->requests = calloc((size_t)e->n_slots, sizeof *e->requests);
            if (!e->gather_buf || !e->gather_pairs || !e->gather_counts || !e->requests)
                return augur_fail(err, AUGUR_E_NOMEM, "leader: cannot allocate the gather buffers");
        }
    }
    return AUGUR_OK;
}

augur_status spec_engine_slot_init(spec_engine *e, kv_cache *kv, augur_error *err)
{
    if (e->has_pool)
        return kv_cache_init_paged(kv, &e->pool, e->max_context, err);
    return kv_cache_init(kv, e->be, e->m.cfg.n_layers, e->max_context, e->m.n_kv_heads_local, e->m.cfg.head_dim,
                         err);
}

augur_status spec_engine_init(spec_engine *e, comm_layout *layout, const char *target_path, const char *draft_path,
                              int draft_layers, bool load_draft, const device_opts *dev, int max_context,
                              int n_slots, augur_error *err)
{
    *e = (spec_engine){0};
    if (n_slots < 1)
        return augur_fail(err, AUGUR_E_INPUT, "%d sequence slots: at least 1 needed", n_slots);
    *e = (spec_engine){.n_slots = n_slots, .layout = layout, .world = layout->world, .world_rank = layout->world_rank,
                       .n_targets = layout->n_target, .draft_rank = layout->draft_rank,
                       .role = layout->role == COMM_ROLE_TARGET ? SPEC_ROLE_TARGET : SPEC_ROLE_DRAFT,
                       .timeout_s = MSG_DEFAULT_TIMEOUT_S, .dev = *dev};
    augur_status st = AUGUR_OK;
    if (e->role == SPEC_ROLE_TARGET)
        st = collectives_mpi_create(&e->ctl, layout->target, err);
    if ((st = agree(e, st, "layout", err)))
        return st;
    st = open_backend(e, load_draft, err);
    if (!st)
        st = load_role_model(e, target_path, draft_path, draft_layers, load_draft, err);
    if ((st = agree(e, st, "after loading the models", err)))
        return st;
    if ((st = agree(e, check_models(e, max_context, err), "model check", err)))
        return st;
    if ((st = plan_context(e, max_context, err)))
        return st;
    if ((st = agree(e, alloc_state(e, dev->threads, err), "allocating caches", err)))
        return st;
    if (n_slots > 1) {
        int mine = e->has_pool ? e->pool_positions : INT_MAX, least = 0;
        MPI_Allreduce(&mine, &least, 1, MPI_INT, MPI_MIN, e->world);
        e->pool_positions = least;
    }
    spec_engine_set_timeout(e, e->timeout_s);
    if (e->has_model) {
        char who[96];
        rank_name(e, who, sizeof who);
        memory_plan_print(stderr, who, &e->plan);
    }
    return AUGUR_OK;
}

void spec_engine_set_timeout(spec_engine *e, double timeout_s)
{
    e->timeout_s = timeout_s;
    if (e->ctl)
        e->ctl->timeout_s = timeout_s;
    if (e->tp)
        e->tp->timeout_s = timeout_s;
}

void spec_engine_free(spec_engine *e)
{
    free(e->logits);
    free(e->compact);
    free(e->gather_buf);
    free(e->gather_pairs);
    free(e->gather_counts);
    free(e->requests);
    if (e->has_model) {
        char who[48];
        snprintf(who, sizeof who, "rank %d (%s)", e->world_rank, e->role == SPEC_ROLE_TARGET ? "target" : "draft");
        forward_report_graphs(&e->fwd, who);
        forward_report_fused(&e->fwd, who);
        forward_free(&e->fwd);
        for (int i = 0; e->slots && i < e->n_slots; i++)
            kv_cache_free(&e->slots[i]);
        free(e->slots);
        if (e->has_pool)
            kv_pool_free(&e->pool); /* after the slots: they give their blocks back to it */
        model_free(&e->m);
    }
    if (e->tp && e->tp != e->ctl)
        collectives_destroy(e->tp);
    if (e->ctl)
        collectives_destroy(e->ctl);
    backend_destroy(e->be);
    memset(e, 0, sizeof *e);
}
