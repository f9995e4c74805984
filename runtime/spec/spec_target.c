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

/* Per row: this shard's largest logit and its global token id. */
static void shard_argmax(const spec_engine *e, int rows, float *pairs)
{
    int vl = e->m.vocab_local;
    for (int r = 0; r < rows; r++) {
        const float *row = e->logits + (size_t)r * vl;
        int best = argmax_f32(row, vl);
        pairs[2 * r] = row[best];
        pairs[2 * r + 1] = (float)(e->m.vocab_start + best);
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
        e->gather_buf[2 * r] = best;
        e->gather_buf[2 * r + 1] = id;
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

static augur_status gather_rows(spec_engine *e, int rows, spec_gather gather, augur_error *err)
{
    int T = e->n_targets;
    bool leader = e->world_rank == 0;
    if (gather == SPEC_GATHER_ARGMAX) {
        float pairs[2 * SPEC_MAX_VERIFY];
        shard_argmax(e, rows, pairs);
        if (T == 1) {
            memcpy(e->gather_buf, pairs, (size_t)rows * 2 * sizeof(float));
            return AUGUR_OK;
        }
        float *all = leader ? malloc((size_t)T * rows * 2 * sizeof(float)) : NULL;
        if (leader && !all)
            return augur_fail(err, AUGUR_E_NOMEM, "leader: cannot allocate the argmax gather");
        for (int k = 0; leader && k < T; k++)
            e->gather_counts[k] = rows * 2;
        augur_status st = e->ctl->ops->gatherv_f32(e->ctl, pairs, rows * 2, all, e->gather_counts, 0, err);
        if (!st && leader)
            reduce_argmax(e, rows, all);
        free(all);
        return st;
    }
    /* full logits */
    int vl = e->m.vocab_local;
    if (T == 1) {
        memcpy(e->gather_buf, e->logits, (size_t)rows * vl * sizeof(float));
        return AUGUR_OK;
    }
    float *all = leader ? malloc((size_t)rows * e->vocab * sizeof(float)) : NULL;
    if (leader && !all)
        return augur_fail(err, AUGUR_E_NOMEM, "leader: cannot allocate the logits gather");
    for (int k = 0; leader && k < T; k++) {
        int start, count;
        tp_split(e->vocab, T, k, &start, &count);
        e->gather_counts[k] = rows * count;
    }
    augur_status st = e->ctl->ops->gatherv_f32(e->ctl, e->logits, rows * vl, all, e->gather_counts, 0, err);
    if (!st && leader)
        assemble_logits(e, rows, all);
    free(all);
    return st;
}

augur_status spec_target_execute(spec_engine *e, const wire_command *cmd, augur_error *err)
{
    augur_status st;
    if (cmd->kind == WIRE_CMD_ACCEPT) {
        int keep = (int)cmd->accept.new_length - 1;
        if ((st = kv_cache_trim(&e->kv, keep, err)))
            return augur_wrap(err, "target, round %u", cmd->round);
        return AUGUR_OK;
    }
    if (cmd->kind != WIRE_CMD_VERIFY)
        return augur_fail(err, AUGUR_E_INTERNAL, "target: unexpected command %d", cmd->kind);
    int start = (int)cmd->start_position;
    if (start > e->kv.len)
        return augur_fail(err, AUGUR_E_COMM, "target, round %u: verify at position %d but the cache holds %d",
                          cmd->round, start, e->kv.len);
    e->kv.len = start; /* a new request (start 0) or a resend: forget what lies beyond */
    int n = cmd->n_tokens;
    spec_gather gather = (spec_gather)cmd->gather;
    if (n == 0)
        return AUGUR_OK;
    if (gather == SPEC_GATHER_NONE)
        return forward_prefill(&e->fwd, &e->kv, cmd->tokens, n, NULL, err);
    if (n > SPEC_MAX_VERIFY)
        return augur_fail(err, AUGUR_E_COMM, "target, round %u: %d positions to verify (limit %d)",
                          cmd->round, n, SPEC_MAX_VERIFY);
    if ((st = forward_run(&e->fwd, &e->kv, cmd->tokens, n, 0, e->logits, err)))
        return st;
    return gather_rows(e, n, gather, err);
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
