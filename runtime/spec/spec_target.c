/* The target side of a speculation round, run identically by every target rank
 * (the leader included): forward over the verified positions, then gather what the
 * leader's acceptance test needs. */
#include <stdlib.h>
#include <string.h>

#include "runtime/spec/spec_engine.h"

augur_status spec_bcast_command(spec_engine *e, wire_command *cmd, augur_error *err)
{
    wire_expect want = {.request_id = WIRE_ANY_REQUEST, .round = WIRE_ANY_ROUND, .vocab_size = e->vocab,
                        .peer_rank = 0};
    return msg_bcast_command(e->layout->target, 0, cmd, &want, e->timeout_s, err);
}

/* Per wanted row: this shard's largest logit and its global token id, from the
 * forward's per-row reductions (forward_run_batch_reduced). */
static void shard_argmax(const spec_engine *e, const int *row_idx, int rows, const int32_t *argmax,
                         const float *max, float *pairs)
{
    for (int r = 0; r < rows; r++) {
        pairs[2 * r] = max[row_idx[r]];
        pairs[2 * r + 1] = (float)(e->m.vocab_start + argmax[row_idx[r]]);
    }
}

/* Leader: reduces the gathered [rank][row][2] pairs into [row][2], keeping the lowest
 * token id on ties so the result equals an argmax over the whole vocabulary. */
static void reduce_argmax(spec_engine *e, int rows, const float *gathered)
{
    for (int r = 0; r < rows; r++) {
        float best = gathered[2 * r];
        float id = gathered[2 * r + 1];
        for (int k = 1; k < e->n_targets; k++) {
            const float *pair = gathered + (size_t)k * rows * 2 + 2 * r;
            if (pair[0] > best || (best != best && pair[0] == pair[0])) {
                best = pair[0];
                id = pair[1];
            }
        }
        e->gather_pairs[2 * r] = best;
        e->gather_pairs[2 * r + 1] = id;
    }
}

/* Leader: gathered holds each rank's [rows][vocab_local_k] block; lay them side by side. */
static void assemble_logits(spec_engine *e, int rows, const float *gathered)
{
    size_t offset = 0;
    for (int k = 0; k < e->n_targets; k++) {
        int start, count;
        tp_split(e->vocab, e->n_targets, k, &start, &count);
        for (int r = 0; r < rows; r++)
            memcpy(e->gather_buf + (size_t)r * e->vocab + start, gathered + offset + (size_t)r * count,
                   (size_t)count * sizeof(float));
        offset += (size_t)rows * count;
    }
}

/* This forward's rows and their reductions (forward_run_batch_reduced). */
typedef struct {
    int32_t argmax[SPEC_FORWARD_TOKENS];
    float max[SPEC_FORWARD_TOKENS];
    bool want_logits[SPEC_FORWARD_TOKENS];
} verify_rows;

/* Gathers the rows row_idx[0..n) of this forward: per-shard (max, argmax) pairs reduced
 * on the leader into gather_pairs[i], or full logits into gather_buf[i]. */
static augur_status gather_rows(spec_engine *e, const verify_rows *v, const int *row_idx, int n, spec_gather gather,
                                augur_error *err)
{
    int T = e->n_targets;
    bool leader = e->world_rank == 0;
    int vl = e->m.vocab_local;
    if (n == 0)
        return AUGUR_OK;
    if (gather == SPEC_GATHER_ARGMAX) {
        float pairs[2 * SPEC_FORWARD_TOKENS];
        shard_argmax(e, row_idx, n, v->argmax, v->max, pairs);
        if (T == 1) {
            memcpy(e->gather_pairs, pairs, (size_t)n * 2 * sizeof(float));
            return AUGUR_OK;
        }
        float *all = leader ? malloc((size_t)T * n * 2 * sizeof(float)) : NULL;
        if (leader && !all)
            return augur_fail(err, AUGUR_E_NOMEM, "leader: cannot allocate the argmax gather");
        for (int k = 0; leader && k < T; k++)
            e->gather_counts[k] = n * 2;
        augur_status st = e->ctl->ops->gatherv_f32(e->ctl, pairs, n * 2, all, e->gather_counts, 0, err);
        if (!st && leader)
            reduce_argmax(e, n, all);
        free(all);
        return st;
    }
    /* full logits of the wanted rows, side by side */
    for (int i = 0; i < n; i++)
        memcpy(e->compact + (size_t)i * vl, e->logits + (size_t)row_idx[i] * vl, (size_t)vl * sizeof(float));
    if (T == 1) {
        memcpy(e->gather_buf, e->compact, (size_t)n * vl * sizeof(float));
        return AUGUR_OK;
    }
    float *all = leader ? malloc((size_t)n * e->vocab * sizeof(float)) : NULL;
    if (leader && !all)
        return augur_fail(err, AUGUR_E_NOMEM, "leader: cannot allocate the logits gather");
    for (int k = 0; leader && k < T; k++) {
        int start, count;
        tp_split(e->vocab, T, k, &start, &count);
        e->gather_counts[k] = n * count;
    }
    augur_status st = e->ctl->ops->gatherv_f32(e->ctl, e->compact, n * vl, all, e->gather_counts, 0, err);
    if (!st && leader)
        assemble_logits(e, n, all);
    free(all);
    return st;
}

static augur_status slot_of(spec_engine *e, uint32_t slot, uint32_t round, kv_cache **kv, augur_error *err)
{
    if (slot >= (uint32_t)e->n_slots)
        return augur_fail(err, AUGUR_E_COMM, "target, round %u: slot %u out of range (%d slots: --max-running)",
                          round, slot, e->n_slots);
    *kv = &e->slots[slot];
    return AUGUR_OK;
}

/* Positions beyond start are forgotten: a new request (start 0), a resend, or what a
 * trim already dropped. */
static augur_status rewind_to(kv_cache *kv, uint32_t slot, int start, uint32_t round, augur_error *err)
{
    if (start > kv->len)
        return augur_fail(err, AUGUR_E_COMM, "target, round %u: verify at position %d but slot %u holds %d",
                          round, start, slot, kv->len);
    return kv_cache_trim(kv, start, err);
}

int spec_batch_forward_end(const wire_command *cmd, int from)
{
    int rows = 0, to = from;
    while (to < cmd->n_segments && (to == from || rows + cmd->segments[to].n_tokens <= SPEC_FORWARD_TOKENS))
        rows += cmd->segments[to++].n_tokens;
    return to;
}

augur_status spec_target_verify_forward(spec_engine *e, const wire_command *cmd, int from, int to, augur_error *err)
{
    forward_seq seqs[SPEC_FORWARD_TOKENS] = {0};
    int argmax_rows[SPEC_FORWARD_TOKENS], logits_rows[SPEC_FORWARD_TOKENS];
    verify_rows v = {0};
    int n_argmax = 0, n_logits = 0, rows = 0;
    augur_status st;
    if (to - from > SPEC_FORWARD_TOKENS)
        return augur_fail(err, AUGUR_E_INTERNAL, "target: %d segments in one forward", to - from);
    for (int i = from; i < to; i++) {
        const wire_segment *g = &cmd->segments[i];
        kv_cache *kv = NULL;
        if ((st = slot_of(e, g->slot, cmd->round, &kv, err)))
            return st;
        if (rows + g->n_tokens > SPEC_FORWARD_TOKENS)
            return augur_fail(err, AUGUR_E_COMM, "target, round %u: request %llu verifies %d positions (limit %d)",
                              cmd->round, (unsigned long long)g->request_id, g->n_tokens, SPEC_MAX_VERIFY);
        if (g->gather != SPEC_GATHER_ARGMAX && g->gather != SPEC_GATHER_LOGITS)
            return augur_fail(err, AUGUR_E_COMM, "target, round %u: request %llu asks for gather %u", cmd->round,
                              (unsigned long long)g->request_id, g->gather);
        if ((st = rewind_to(kv, g->slot, (int)g->start_position, cmd->round, err)))
            return st;
        seqs[i - from] = (forward_seq){.kv = kv, .tokens = g->tokens, .n = g->n_tokens, .logits_from = 0};
        for (int r = 0; r < g->n_tokens; r++) {
            v.want_logits[rows + r] = g->gather != SPEC_GATHER_ARGMAX;
            if (g->gather == SPEC_GATHER_ARGMAX)
                argmax_rows[n_argmax++] = rows + r;
            else
                logits_rows[n_logits++] = rows + r;
        }
        rows += g->n_tokens;
    }
    if ((st = forward_run_batch_reduced(&e->fwd, seqs, to - from, v.want_logits, e->logits, v.argmax, v.max, err)))
        return augur_wrap(err, "target, round %u", cmd->round);
    if ((st = gather_rows(e, &v, argmax_rows, n_argmax, SPEC_GATHER_ARGMAX, err)))
        return st;
    return gather_rows(e, &v, logits_rows, n_logits, SPEC_GATHER_LOGITS, err);
}

augur_status spec_target_execute(spec_engine *e, const wire_command *cmd, augur_error *err)
{
    augur_status st;
    kv_cache *kv = NULL;
    switch (cmd->kind) {
    case WIRE_CMD_ACCEPT:
        if ((st = slot_of(e, cmd->slot, cmd->round, &kv, err)))
            return st;
        if ((st = kv_cache_trim(kv, (int)cmd->accept.new_length - 1, err)))
            return augur_wrap(err, "target, round %u, slot %u", cmd->round, cmd->slot);
        return AUGUR_OK;
    case WIRE_CMD_ACCEPT_BATCH:
        for (int i = 0; i < cmd->n_trims; i++) {
            const wire_trim *t = &cmd->trims[i];
            if ((st = slot_of(e, t->slot, cmd->round, &kv, err)))
                return st;
            if ((st = kv_cache_trim(kv, (int)t->new_length - 1, err)))
                return augur_wrap(err, "target, round %u, request %llu (slot %u)", cmd->round,
                                  (unsigned long long)t->request_id, t->slot);
        }
        return AUGUR_OK;
    case WIRE_CMD_FREE:
        if ((st = slot_of(e, cmd->slot, cmd->round, &kv, err)))
            return st;
        return kv_cache_trim(kv, 0, err);
    case WIRE_CMD_VERIFY_BATCH:
        for (int from = 0; from < cmd->n_segments;) {
            int to = spec_batch_forward_end(cmd, from);
            if ((st = spec_target_verify_forward(e, cmd, from, to, err)))
                return st;
            from = to;
        }
        return AUGUR_OK;
    case WIRE_CMD_VERIFY:
        break;
    default:
        return augur_fail(err, AUGUR_E_INTERNAL, "target: unexpected command %d", cmd->kind);
    }
    if ((st = slot_of(e, cmd->slot, cmd->round, &kv, err)))
        return st;
    if ((st = rewind_to(kv, cmd->slot, (int)cmd->start_position, cmd->round, err)))
        return st;
    int n = cmd->n_tokens;
    spec_gather gather = (spec_gather)cmd->gather;
    if (n == 0)
        return AUGUR_OK;
    if (gather == SPEC_GATHER_NONE)
        return forward_prefill(&e->fwd, kv, cmd->tokens, n, NULL, err);
    if (n > SPEC_MAX_VERIFY)
        return augur_fail(err, AUGUR_E_COMM, "target, round %u: %d positions to verify (limit %d)",
                          cmd->round, n, SPEC_MAX_VERIFY);
    verify_rows v = {0};
    int rows[SPEC_MAX_VERIFY];
    for (int i = 0; i < n; i++) {
        rows[i] = i;
        v.want_logits[i] = gather != SPEC_GATHER_ARGMAX;
    }
    const forward_seq seq = {.kv = kv, .tokens = cmd->tokens, .n = n, .logits_from = 0};
    if ((st = forward_run_batch_reduced(&e->fwd, &seq, 1, v.want_logits, e->logits, v.argmax, v.max, err)))
        return st;
    return gather_rows(e, &v, rows, n, gather, err);
}

/* Waiting for the next command is patient: it lasts while the leader's heartbeats come
 * (comm/liveness.h), however long the leader works between commands. */
augur_status spec_target_serve(spec_engine *e, augur_error *err)
{
    live_start(e->world, e->layout->leader, e->timeout_s);
    for (;;) {
        wire_command cmd = {0};
        augur_status st = spec_bcast_command(e, &cmd, err);
        if (!st && cmd.kind != WIRE_CMD_STOP)
            st = spec_target_execute(e, &cmd, err);
        bool stop = cmd.kind == WIRE_CMD_STOP;
        wire_command_free(&cmd);
        if (st) {
            live_stop();
            return st;
        }
        if (stop)
            return live_finish(e->world, e->timeout_s, err);
    }
}
