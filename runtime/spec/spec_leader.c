/* The leader (world rank 0, also target tensor-parallel rank 0): owns the requests,
 * asks the draft for proposals, drives the target group through batched verification,
 * runs each request's acceptance test and emits its text (DESIGN §4). A request lives
 * from spec_leader_begin to spec_leader_end on its own slot of every rank's KV; each
 * spec_leader_step is one round over all the requests it is given. */
#include <stdlib.h>
#include <string.h>

#include "comm/messaging.h"
#include "runtime/spec/spec_engine.h"

struct spec_request {
    spec_engine *e;
    spec_request_opts opts;
    spec_output out;
    const tokenizer *tok;
    spec_stats *stats;
    uint64_t request_id;
    uint64_t draw_key;       /* seeded draws: (seed, draw_key, position) */
    int slot;
    int reserved;            /* KV pool positions set aside for it (spec_leader_has_room) */
    uint32_t round;          /* the round the next step runs */
    int32_t *seq;            /* confirmed sequence */
    int len;
    bool greedy;
    spec_gather gather;
    float *p;                /* [SPEC_MAX_VERIFY][vocab] processed target distributions */
    float *residual;
    int *scratch;
    int32_t argmax[SPEC_MAX_VERIFY];
    detok_stream ds;
    wire_proposal prop;      /* this round's proposal, once it came */
    bool have_prop;
    bool draft_holds;        /* the draft rank has the request (no finishing verdict yet) */
    bool finished;
    double verify_ms;        /* this round: the forward that carried the request */
    double t_start;
};

bool spec_request_finished(const spec_request *r)
{
    return r->finished;
}

/* Records a generated token; a stop token ends the text but is not printed. */
static void emit_token(spec_request *s, int32_t id, bool is_stop)
{
    if (s->out.out_tokens)
        s->out.out_tokens[s->stats->generated] = id;
    s->stats->generated++;
    if (!s->out.sink || is_stop)
        return;
    char buf[512];
    size_t n = detok_stream_push(&s->ds, id, buf, sizeof buf);
    if (n)
        s->out.sink->write(s->out.sink->user, buf, n);
}

static augur_status send_request(spec_request *s, augur_error *err)
{
    const spec_request_opts *o = &s->opts;
    static const wire_rule_kind kinds[] = {
        [DRAFT_RULE_FIXED] = WIRE_RULE_FIXED,
        [DRAFT_RULE_HEURISTIC] = WIRE_RULE_HEURISTIC,
        [DRAFT_RULE_STATIC] = WIRE_RULE_ENTROPY_STATIC,
        [DRAFT_RULE_MOVING_AVERAGE] = WIRE_RULE_ENTROPY_MOVING_AVG,
        [DRAFT_RULE_CUMULATIVE] = WIRE_RULE_ENTROPY_CUMULATIVE,
    };
    wire_request r = {
        .request_id = s->request_id,
        .prompt_tokens = s->seq,
        .n_prompt_tokens = s->len,
        .max_tokens = (uint32_t)o->max_tokens,
        .sampling = {.temperature = o->sampling.temperature, .top_k = o->sampling.top_k,
                     .top_p = o->sampling.top_p, .seed = o->seed},
        .rule = {.kind = kinds[o->rule.kind], .max_len = (uint32_t)o->rule.gamma, .tau = o->rule.tau,
                 .lambda = o->rule.lambda, .window = (uint32_t)o->rule.window},
        .overlap = o->overlap,
        .overlap_shared_gpu = o->overlap_shared_gpu,
        .debug_draft_exit_after = (uint32_t)(o->debug_draft_exit_after > 0 ? o->debug_draft_exit_after : 0),
        .slot = (uint32_t)s->slot,
        .draw_key = s->draw_key,
        .want_entropies = s->out.trace != NULL,
    };
    double t0 = augur_now_ms();
    augur_status st = msg_send_typed(s->e->world, s->e->draft_rank, MSG_TAG_REQUEST, &r, s->e->timeout_s, err);
    s->stats->comm_ms += augur_now_ms() - t0;
    return st;
}

static spec_request *find_request(spec_engine *e, uint64_t request_id)
{
    for (int i = 0; i < e->n_slots; i++)
        if (e->requests[i] && e->requests[i]->request_id == request_id)
            return e->requests[i];
    return NULL;
}

/* Takes the draft's next proposal, whichever request it is for (the draft answers
 * requests in the order their verdicts went out), and files it with its request. */
static augur_status recv_any_proposal(spec_engine *e, augur_error *err)
{
    double t0 = augur_now_ms();
    wire_expect want = {.request_id = WIRE_ANY_REQUEST, .round = WIRE_ANY_ROUND, .vocab_size = e->vocab,
                        .peer_rank = e->draft_rank};
    wire_proposal p = {0};
    augur_status st = msg_recv_typed(e->world, e->draft_rank, MSG_TAG_PROPOSAL, e->timeout_s, &want, &p, err);
    if (st)
        return st;
    spec_request *s = find_request(e, p.request_id);
    if (!s || !s->draft_holds || s->have_prop || p.round != s->round) {
        st = augur_fail(err, AUGUR_E_COMM, "proposal from rank %d for request %llu, round %u: %s", e->draft_rank,
                        (unsigned long long)p.request_id, p.round,
                        !s || !s->draft_holds ? "no such request in flight"
                        : s->have_prop        ? "a second proposal for that round"
                                              : "not the round in progress");
        wire_proposal_free(&p);
        return st;
    }
    s->stats->draft_wait_ms += augur_now_ms() - t0;
    int room = e->max_context - s->len;
    if (p.n_tokens > DRAFT_RULE_MAX_GAMMA || p.n_tokens > room || (int)p.start_position != s->len ||
        (!s->greedy && p.n_tokens > 0 && !p.dists)) {
        st = augur_fail(err, AUGUR_E_COMM,
                        "proposal from rank %d, request %llu, round %u: %d tokens at position %u (expected position "
                        "%d, at most %d tokens%s)",
                        e->draft_rank, (unsigned long long)p.request_id, s->round, p.n_tokens, p.start_position,
                        s->len, room < DRAFT_RULE_MAX_GAMMA ? room : DRAFT_RULE_MAX_GAMMA,
                        s->greedy ? "" : ", with distributions");
        wire_proposal_free(&p);
        return st;
    }
    s->stats->draft_compute_ms += p.draft_ms;
    s->stats->draft_hidden_ms += p.hidden_ms;
    s->prop = p;
    s->have_prop = true;
    return AUGUR_OK;
}

static void record_trace(spec_request *s, int accepted)
{
    if (!s->out.trace)
        return;
    const wire_proposal *p = &s->prop;
    int V = s->e->vocab;
    int upto = accepted < p->n_tokens ? accepted + 1 : p->n_tokens;
    for (int i = 0; i < upto; i++) {
        wire_trace_record rec = {
            .request_id = s->request_id,
            .position = p->start_position + (uint32_t)i,
            .round = s->round,
            .draft_entropy = p->entropies ? p->entropies[i] : 0.0f,
            .target_entropy = entropy_nats(s->p + (size_t)i * V, V),
            .accepted = i < accepted,
            .draft_ms = p->n_tokens ? (p->draft_ms + p->hidden_ms) / (float)p->n_tokens : 0.0f,
            .target_ms = (float)s->verify_ms,
            .index_in_round = (uint32_t)i,
            .draft_len_in_round = (uint32_t)p->n_tokens,
        };
        s->out.trace(s->out.trace_user, &rec);
    }
}

/* Takes a request's rows out of the leader's gather buffers after its forward: greedy
 * argmaxes, and the processed distributions when sampling or tracing. */
static void harvest(spec_request *s, int rows, int argmax_at, int logits_at)
{
    spec_engine *e = s->e;
    int V = e->vocab;
    if (s->gather == SPEC_GATHER_ARGMAX) {
        for (int r = 0; r < rows; r++)
            s->argmax[r] = (int32_t)e->gather_pairs[2 * (argmax_at + r) + 1];
        return;
    }
    sampling_params sp = s->opts.sampling;
    if (s->greedy) /* for trace entropies: the plain softmax */
        sp = (sampling_params){.temperature = 1.0f, .top_k = 0, .top_p = 1.0f};
    for (int r = 0; r < rows; r++) {
        const float *logits = e->gather_buf + (size_t)(logits_at + r) * V;
        if (s->greedy)
            s->argmax[r] = argmax_f32(logits, V);
        sampling_probs(&sp, logits, V, s->p + (size_t)r * V, s->scratch);
    }
}

/* --synthetic-acceptance: a seeded coin of probability alpha per proposed token, in
 * order, decides how many are kept; the token after them is the target's own, as after
 * a real rejection or a full acceptance. Keyed by position like every draw. */
static acceptance_result accept_synthetic(spec_request *s, int k)
{
    augur_rng rng;
    rng_seed_at(&rng, s->opts.seed, SPEC_DRAW_STREAM_SYNTHETIC, s->draw_key, (uint64_t)s->len);
    int a = 0;
    while (a < k && rng_uniform(&rng) < s->opts.synthetic_acceptance)
        a++;
    return (acceptance_result){.accepted = a, .next_token = s->argmax[a]};
}

static acceptance_result decide(spec_request *s)
{
    const wire_proposal *p = &s->prop;
    int k = p->n_tokens;
    if (s->greedy) {
        if (s->opts.synthetic_acceptance >= 0)
            return accept_synthetic(s, k);
        return accept_greedy(p->tokens, k, s->argmax);
    }
    /* The round's draws are keyed by where it starts, so they depend on the text so far
     * and never on how far the draft ran ahead (round starts only ever increase). */
    augur_rng rng;
    rng_seed_at(&rng, s->opts.seed, SPEC_DRAW_STREAM_LEADER, s->draw_key, (uint64_t)s->len);
    return accept_sampling(p->tokens, k, p->dists, s->p, s->e->vocab, &rng, s->residual, s->opts.variant);
}

/* After the verification: accept, extend S, decide whether the request is done. Fills
 * its verdict and its slot's trim. */
static void conclude(spec_request *s, wire_verdict *v, wire_trim *t)
{
    spec_engine *e = s->e;
    double t1 = augur_now_ms();
    acceptance_result r = decide(s);
    record_trace(s, r.accepted);
    int k = s->prop.n_tokens;
    s->stats->sample_ms += augur_now_ms() - t1;
    s->stats->rounds++;
    s->stats->proposed += k;
    s->stats->accepted += r.accepted;

    /* Stop exactly where target-only decoding would: at a stop token or the limit. */
    int n_new = r.accepted + 1;
    int32_t new_tokens[SPEC_MAX_VERIFY];
    if (r.accepted > 0)
        memcpy(new_tokens, s->prop.tokens, (size_t)r.accepted * sizeof(int32_t));
    new_tokens[r.accepted] = r.next_token;
    int room = s->opts.max_tokens - s->stats->generated;
    if (n_new > room)
        n_new = room;
    for (int i = 0; i < n_new; i++) {
        if (generate_is_stop_token(&e->m.cfg, s->tok, new_tokens[i])) {
            n_new = i + 1;
            s->stats->hit_eos = true;
            break;
        }
    }
    for (int i = 0; i < n_new; i++) {
        s->seq[s->len++] = new_tokens[i];
        emit_token(s, new_tokens[i], s->stats->hit_eos && i == n_new - 1);
    }
    bool finished = s->stats->hit_eos || s->stats->generated >= s->opts.max_tokens || s->len >= e->max_context;
    /* The finishing verdict is what releases the draft, so the caller's stop travels in it. */
    if (s->out.on_round && s->out.on_round(s->out.round_user, s->stats))
        finished = true;
    s->finished = finished;
    *v = (wire_verdict){.request_id = s->request_id, .round = s->round, .accepted = (uint32_t)(n_new - 1),
                        .next_token = new_tokens[n_new - 1], .finished = finished, .new_length = (uint32_t)s->len};
    *t = (wire_trim){.request_id = s->request_id, .slot = (uint32_t)s->slot, .new_length = (uint32_t)s->len,
                     .finished = finished};
}

/* Broadcasts a command to the target group and runs the leader's share of it (for a
 * VERIFY_BATCH, forward by forward, handing each forward's rows to its requests). */
static augur_status run_batch(spec_engine *e, spec_request **reqs, wire_command *cmd, double *comm_ms,
                              augur_error *err)
{
    double t0 = augur_now_ms();
    augur_status st = spec_bcast_command(e, cmd, err);
    *comm_ms = augur_now_ms() - t0;
    if (st || cmd->kind != WIRE_CMD_VERIFY_BATCH)
        return st ? st : spec_target_execute(e, cmd, err);
    for (int from = 0; from < cmd->n_segments && !st;) {
        int to = spec_batch_forward_end(cmd, from);
        double t1 = augur_now_ms();
        if ((st = spec_target_verify_forward(e, cmd, from, to, err)))
            break;
        double ms = augur_now_ms() - t1;
        int argmax_at = 0, logits_at = 0;
        for (int i = from; i < to; i++) {
            spec_request *s = reqs[i];
            int rows = cmd->segments[i].n_tokens;
            harvest(s, rows, argmax_at, logits_at);
            if (s->gather == SPEC_GATHER_ARGMAX)
                argmax_at += rows;
            else
                logits_at += rows;
            s->verify_ms = ms;
            s->stats->verify_ms += ms;
        }
        from = to;
    }
    return st;
}

augur_status spec_leader_step(spec_engine *e, spec_request **reqs, int n, augur_error *err)
{
    augur_status st;
    if (n < 1 || n > e->n_slots)
        return augur_fail(err, AUGUR_E_INTERNAL, "leader: a round over %d requests (%d slots)", n, e->n_slots);
    if ((st = live_check_peers(err)))
        return st;
    for (int i = 0; i < n; i++)
        if (reqs[i]->finished)
            return augur_fail(err, AUGUR_E_INTERNAL, "leader: request %llu already finished",
                              (unsigned long long)reqs[i]->request_id);
    /* 1. every speculating request's proposal (k = 0 for the others) */
    for (int i = 0; i < n; i++)
        while (reqs[i]->draft_holds && !reqs[i]->have_prop)
            if ((st = recv_any_proposal(e, err)))
                return st;
    wire_segment *segs = calloc((size_t)n, sizeof *segs);
    wire_verdict *verdicts = calloc((size_t)n, sizeof *verdicts);
    wire_trim *trims = calloc((size_t)n, sizeof *trims);
    int32_t *rows = malloc((size_t)n * SPEC_MAX_VERIFY * sizeof *rows);
    if (!segs || !verdicts || !trims || !rows) {
        st = augur_fail(err, AUGUR_E_NOMEM, "leader: out of memory for a round of %d requests", n);
        goto out;
    }
    /* 2. one batched verification: [S[L-1], x1..xk] of each request on its slot */
    uint32_t round = reqs[0]->round;
    for (int i = 0; i < n; i++) {
        spec_request *s = reqs[i];
        int k = s->prop.n_tokens;
        int32_t *t = rows + (size_t)i * SPEC_MAX_VERIFY;
        t[0] = s->seq[s->len - 1];
        if (k > 0)
            memcpy(t + 1, s->prop.tokens, (size_t)k * sizeof(int32_t));
        segs[i] = (wire_segment){.request_id = s->request_id, .slot = (uint32_t)s->slot,
                                 .start_position = (uint32_t)(s->len - 1), .tokens = t, .n_tokens = k + 1,
                                 .gather = s->gather};
    }
    wire_command cmd = {.kind = WIRE_CMD_VERIFY_BATCH, .request_id = reqs[0]->request_id, .round = round,
                        .segments = segs, .n_segments = n};
    double comm_ms = 0;
    if ((st = run_batch(e, reqs, &cmd, &comm_ms, err)))
        goto out;
    for (int i = 0; i < n; i++)
        reqs[i]->stats->comm_ms += comm_ms;
    /* 3. each request's acceptance, then every slot's trim in one command */
    for (int i = 0; i < n; i++)
        conclude(reqs[i], &verdicts[i], &trims[i]);
    wire_command acc = {.kind = WIRE_CMD_ACCEPT_BATCH, .request_id = reqs[0]->request_id, .round = round,
                        .trims = trims, .n_trims = n};
    if ((st = run_batch(e, reqs, &acc, &comm_ms, err)))
        goto out;
    /* 4. verdicts to the draft, in request order, each saying how many follow (the draft
     * drafts for the whole burst at once); the next proposals come back in any order */
    int burst = 0;
    for (int i = 0; i < n; i++)
        burst += reqs[i]->draft_holds;
    for (int i = 0; i < n && !st; i++) {
        spec_request *s = reqs[i];
        s->stats->comm_ms += comm_ms;
        if (s->draft_holds) {
            verdicts[i].burst_rest = (uint32_t)--burst;
            double t2 = augur_now_ms();
            st = msg_send_typed(e->world, e->draft_rank, MSG_TAG_VERDICT, &verdicts[i], e->timeout_s, err);
            s->stats->comm_ms += augur_now_ms() - t2;
            s->draft_holds = !s->finished;
        }
        wire_proposal_free(&s->prop);
        s->have_prop = false;
        s->round++;
    }
out:
    free(segs);
    free(verdicts);
    free(trims);
    free(rows);
    return st;
}

/* Positions a request may hold at its longest: prompt and answer, plus the rows of a
 * verification appended before its trim, in whole blocks. */
static int positions_needed(int n_prompt, int max_tokens)
{
    return kv_blocks_for(n_prompt + max_tokens + SPEC_MAX_VERIFY) * KV_BLOCK;
}

bool spec_leader_has_room(const spec_engine *e, int n_prompt, int max_tokens)
{
    return !e->pool_positions || e->reserved_positions + positions_needed(n_prompt, max_tokens) <= e->pool_positions;
}

static void request_free(spec_request *s)
{
    if (!s)
        return;
    s->e->reserved_positions -= s->reserved;
    wire_proposal_free(&s->prop);
    free(s->seq);
    free(s->p);
    free(s->residual);
    free(s->scratch);
    free(s);
}

augur_status spec_leader_begin(spec_engine *e, uint64_t request_id, int slot, const tokenizer *tok,
                               const int32_t *prompt, int n_prompt, const spec_request_opts *opts,
                               const spec_output *out, spec_stats *stats, spec_request **handle, augur_error *err)
{
    *handle = NULL;
    *stats = (spec_stats){0};
    /* Heartbeats from here on keep the idle ranks' patient waits going (comm/liveness.h). */
    live_start(e->world, e->layout->leader, e->timeout_s);
    if (n_prompt < 1)
        return augur_fail(err, AUGUR_E_INPUT, "the prompt encodes to no tokens");
    if (n_prompt + opts->max_tokens > e->max_context)
        return augur_fail(err, AUGUR_E_INPUT,
                          "prompt of %d tokens plus --max-tokens %d exceeds the context of %d positions", n_prompt,
                          opts->max_tokens, e->max_context);
    if (slot < 0 || slot >= e->n_slots || e->requests[slot] || find_request(e, request_id))
        return augur_fail(err, AUGUR_E_INTERNAL, "leader: request %llu on slot %d: %s", (unsigned long long)request_id,
                          slot, slot < 0 || slot >= e->n_slots ? "no such slot" : "slot or request id in use");
    int V = e->vocab;
    spec_request *s = calloc(1, sizeof *s);
    if (!s)
        return augur_fail(err, AUGUR_E_NOMEM, "leader: out of memory for request %llu", (unsigned long long)request_id);
    *s = (spec_request){.e = e, .opts = *opts, .out = *out, .tok = tok, .stats = stats, .request_id = request_id,
                        .draw_key = opts->draw_key ? opts->draw_key : request_id, .slot = slot, .round = 1,
                        .len = n_prompt, .greedy = sampling_is_greedy(&opts->sampling)};
    s->gather = s->greedy && !opts->gather_full ? SPEC_GATHER_ARGMAX : SPEC_GATHER_LOGITS;
    s->seq = malloc((size_t)e->max_context * sizeof(int32_t));
    s->p = malloc((size_t)SPEC_MAX_VERIFY * V * sizeof(float));
    s->residual = malloc((size_t)V * sizeof(float));
    s->scratch = malloc((size_t)V * sizeof(int));
    if (!s->seq || !s->p || !s->residual || !s->scratch) {
        request_free(s);
        return augur_fail(err, AUGUR_E_NOMEM, "leader: out of memory for request %llu", (unsigned long long)request_id);
    }
    if (!spec_leader_has_room(e, n_prompt, opts->max_tokens)) {
        request_free(s);
        return augur_fail(err, AUGUR_E_INTERNAL, "leader: request %llu started without room in the KV pool "
                          "(%d of %d positions reserved)", (unsigned long long)request_id, e->reserved_positions,
                          e->pool_positions);
    }
    if (e->pool_positions) {
        s->reserved = positions_needed(n_prompt, opts->max_tokens);
        e->reserved_positions += s->reserved;
    }
    memcpy(s->seq, prompt, (size_t)n_prompt * sizeof(int32_t));
    detok_stream_init(&s->ds, tok, true);
    if (out->sink && out->echo_prompt) {
        char buf[512];
        for (int i = 0; i < n_prompt; i++) {
            size_t n = detok_stream_push(&s->ds, prompt[i], buf, sizeof buf);
            if (n)
                out->sink->write(out->sink->user, buf, n);
        }
    }
    s->t_start = augur_now_ms();
    e->requests[slot] = s;
    *handle = s;
    augur_status st = AUGUR_OK;
    if (opts->speculate) {
        if ((st = send_request(s, err)))
            goto fail;
        s->draft_holds = true;
    }
    /* Prefill the slot on every target rank with all prompt tokens but the last (round 0). */
    wire_command prefill = {.kind = WIRE_CMD_VERIFY, .request_id = request_id, .round = 0, .start_position = 0,
                            .tokens = s->seq, .n_tokens = n_prompt - 1, .gather = SPEC_GATHER_NONE,
                            .slot = (uint32_t)slot};
    double t0 = augur_now_ms();
    st = spec_bcast_command(e, &prefill, err);
    double t1 = augur_now_ms();
    if (!st)
        st = spec_target_execute(e, &prefill, err);
    stats->comm_ms += t1 - t0;
    stats->verify_ms += augur_now_ms() - t1;
    stats->prefill_ms = augur_now_ms() - t0;
    if (!st)
        return AUGUR_OK;
fail: /* the job ends on this error: release the leader's side only */
    e->requests[slot] = NULL;
    request_free(s);
    *handle = NULL;
    return st;
}

void spec_leader_abandon(spec_engine *e, spec_request *s)
{
    if (!s)
        return;
    if (e->requests[s->slot] == s)
        e->requests[s->slot] = NULL;
    request_free(s);
}

augur_status spec_leader_end(spec_engine *e, spec_request *s, augur_error *err)
{
    augur_status st = AUGUR_OK;
    if (!s)
        return AUGUR_OK;
    /* Ended outside a round (its caller gave up on it): the draft has sent, or will send,
     * the proposal of the round in progress; take it, then release the draft. */
    while (s->draft_holds && !s->have_prop && !st)
        st = recv_any_proposal(e, err);
    if (!st && s->draft_holds) {
        wire_verdict v = {.request_id = s->request_id, .round = s->round, .accepted = 0, .next_token = -1,
                          .finished = true, .new_length = (uint32_t)s->len};
        st = msg_send_typed(e->world, e->draft_rank, MSG_TAG_VERDICT, &v, e->timeout_s, err);
        s->draft_holds = false;
    }
    if (!st) {
        wire_command fr = {.kind = WIRE_CMD_FREE, .request_id = s->request_id, .round = s->round,
                           .slot = (uint32_t)s->slot};
        st = spec_bcast_command(e, &fr, err);
        if (!st)
            st = spec_target_execute(e, &fr, err);
    }
    s->stats->total_ms = augur_now_ms() - s->t_start;
    if (s->out.sink) {
        char tail[64];
        size_t n = detok_stream_flush(&s->ds, tail, sizeof tail);
        if (n)
            s->out.sink->write(s->out.sink->user, tail, n);
    }
    if (e->requests[s->slot] == s)
        e->requests[s->slot] = NULL;
    request_free(s);
    return st;
}

augur_status spec_leader_generate(spec_engine *e, uint64_t request_id, const tokenizer *tok, const int32_t *prompt,
                                  int n_prompt, const spec_request_opts *opts, const spec_output *out,
                                  spec_stats *stats, augur_error *err)
{
    spec_request *s = NULL;
    augur_status st = spec_leader_begin(e, request_id, 0, tok, prompt, n_prompt, opts, out, stats, &s, err);
    while (!st && !s->finished)
        st = spec_leader_step(e, &s, 1, err);
    if (st) {
        /* The job ends on this error; only free the leader's side. */
        spec_leader_abandon(e, s);
        return st;
    }
    return spec_leader_end(e, s, err);
}

augur_status spec_leader_stop(spec_engine *e, augur_error *err)
{
    live_start(e->world, e->layout->leader, e->timeout_s);
    wire_command stop = {.kind = WIRE_CMD_STOP, .request_id = 0, .round = 0};
    augur_status st = spec_bcast_command(e, &stop, err);
    if (!st)
        st = msg_send_typed(e->world, e->draft_rank, MSG_TAG_COMMAND, &stop, e->timeout_s, err);
    if (st) {
        live_stop();
        return st;
    }
    return live_finish(e->world, e->timeout_s, err);
}
