/* The leader (world rank 0, also target tensor-parallel rank 0): owns the request,
 * asks the draft for proposals, drives the target group through verification, runs
 * the acceptance test and emits text (DESIGN §4). */
#include <stdlib.h>
#include <string.h>

#include "comm/messaging.h"
#include "runtime/spec/spec_engine.h"

typedef struct {
    spec_engine *e;
    const spec_request_opts *opts;
    const spec_output *out;
    const tokenizer *tok;
    spec_stats *stats;
    uint64_t request_id;
    uint32_t round;
    int32_t *seq;            /* confirmed sequence */
    int len;
    int prompt_len;
    bool greedy;
    spec_gather gather;
    float *p;                /* [SPEC_MAX_VERIFY][vocab] processed target distributions */
    float *residual;
    int *scratch;
    detok_stream ds;
} leader_state;

/* Records a generated token; a stop token ends the text but is not printed. */
static void emit_token(leader_state *s, int32_t id, bool is_stop)
{
    if (s->out->out_tokens)
        s->out->out_tokens[s->stats->generated] = id;
    s->stats->generated++;
    if (!s->out->sink || is_stop)
        return;
    char buf[512];
    size_t n = detok_stream_push(&s->ds, id, buf, sizeof buf);
    if (n)
        s->out->sink->write(s->out->sink->user, buf, n);
}

static augur_status run_command(leader_state *s, wire_command *cmd, augur_error *err)
{
    double t0 = augur_now_ms();
    augur_status st = spec_bcast_command(s->e, cmd, err);
    double t1 = augur_now_ms();
    if (!st)
        st = spec_target_execute(s->e, cmd, err);
    s->stats->comm_ms += t1 - t0;
    s->stats->verify_ms += augur_now_ms() - t1;
    return st;
}

static augur_status send_request(leader_state *s, augur_error *err)
{
    const spec_request_opts *o = s->opts;
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
        .debug_draft_exit_after = (uint32_t)(o->debug_draft_exit_after > 0 ? o->debug_draft_exit_after : 0),
    };
    double t0 = augur_now_ms();
    augur_status st = msg_send_typed(s->e->world, s->e->draft_rank, MSG_TAG_REQUEST, &r, s->e->timeout_s, err);
    s->stats->comm_ms += augur_now_ms() - t0;
    return st;
}

static augur_status recv_proposal(leader_state *s, wire_proposal *p, augur_error *err)
{
    double t0 = augur_now_ms();
    wire_expect want = {.request_id = s->request_id, .round = s->round, .vocab_size = s->e->vocab,
                        .peer_rank = s->e->draft_rank};
    augur_status st = msg_recv_typed(s->e->world, s->e->draft_rank, MSG_TAG_PROPOSAL, s->e->timeout_s, &want, p, err);
    s->stats->draft_wait_ms += augur_now_ms() - t0;
    if (st)
        return st;
    int room = s->e->max_context - s->len;
    if (p->n_tokens > DRAFT_RULE_MAX_GAMMA || p->n_tokens > room || (int)p->start_position != s->len ||
        (!s->greedy && p->n_tokens > 0 && !p->dists))
        return augur_fail(err, AUGUR_E_COMM,
                          "proposal from rank %d, round %u: %d tokens at position %u (expected position %d, at most "
                          "%d tokens%s)",
                          s->e->draft_rank, s->round, p->n_tokens, p->start_position, s->len,
                          room < DRAFT_RULE_MAX_GAMMA ? room : DRAFT_RULE_MAX_GAMMA,
                          s->greedy ? "" : ", with distributions");
    s->stats->draft_compute_ms += p->draft_ms;
    s->stats->draft_hidden_ms += p->hidden_ms;
    return AUGUR_OK;
}

static void record_trace(leader_state *s, const wire_proposal *p, int accepted, double verify_ms)
{
    if (!s->out->trace)
        return;
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
            .target_ms = (float)verify_ms,
            .index_in_round = (uint32_t)i,
            .draft_len_in_round = (uint32_t)p->n_tokens,
        };
        s->out->trace(s->out->trace_user, &rec);
    }
}

/* The target's processed distributions of every verified row (sampling or tracing). */
static void target_distributions(leader_state *s, int rows)
{
    int V = s->e->vocab;
    sampling_params sp = s->opts->sampling;
    if (s->greedy) /* for trace entropies: the plain softmax */
        sp = (sampling_params){.temperature = 1.0f, .top_k = 0, .top_p = 1.0f};
    for (int r = 0; r < rows; r++)
        sampling_probs(&sp, s->e->gather_buf + (size_t)r * V, V, s->p + (size_t)r * V, s->scratch);
}

/* --synthetic-acceptance: a seeded coin of probability alpha per proposed token, in
 * order, decides how many are kept; the token after them is the target's own, as after
 * a real rejection or a full acceptance. Keyed by position like every draw. */
static acceptance_result accept_synthetic(leader_state *s, const wire_proposal *p, const int32_t *argmax)
{
    augur_rng rng;
    rng_seed_at(&rng, s->opts->seed, SPEC_DRAW_STREAM_SYNTHETIC, s->request_id, (uint64_t)s->len);
    int a = 0;
    while (a < p->n_tokens && rng_uniform(&rng) < s->opts->synthetic_acceptance)
        a++;
    return (acceptance_result){.accepted = a, .next_token = argmax[a]};
}

static acceptance_result decide(leader_state *s, const wire_proposal *p)
{
    int k = p->n_tokens;
    int V = s->e->vocab;
    if (s->greedy) {
        int32_t argmax[SPEC_MAX_VERIFY];
        for (int r = 0; r <= k; r++)
            argmax[r] = s->gather == SPEC_GATHER_ARGMAX ? (int32_t)s->e->gather_buf[2 * r + 1]
                                                        : argmax_f32(s->e->gather_buf + (size_t)r * V, V);
        if (s->opts->synthetic_acceptance >= 0)
            return accept_synthetic(s, p, argmax);
        return accept_greedy(p->tokens, k, argmax);
    }
    /* The round's draws are keyed by where it starts, so they depend on the text so far
     * and never on how far the draft ran ahead (round starts only ever increase). */
    augur_rng rng;
    rng_seed_at(&rng, s->opts->seed, SPEC_DRAW_STREAM_LEADER, s->request_id, (uint64_t)s->len);
    return accept_sampling(p->tokens, k, p->dists, s->p, V, &rng, s->residual, s->opts->variant);
}

/* One round: verify [S[L-1], x1..xk], accept, extend S, tell everyone. */
static augur_status leader_round(leader_state *s, bool *finished, augur_error *err)
{
    spec_engine *e = s->e;
    wire_proposal p = {0};
    augur_status st;
    if ((st = live_check_peers(err)))
        return st;
    if (s->opts->speculate && (st = recv_proposal(s, &p, err)))
        return st;
    int k = p.n_tokens;
    int32_t verify_tokens[SPEC_MAX_VERIFY];
    verify_tokens[0] = s->seq[s->len - 1];
    if (k > 0)
        memcpy(verify_tokens + 1, p.tokens, (size_t)k * sizeof(int32_t));
    wire_command cmd = {.kind = WIRE_CMD_VERIFY, .request_id = s->request_id, .round = s->round,
                        .start_position = (uint32_t)(s->len - 1), .tokens = verify_tokens, .n_tokens = k + 1,
                        .gather = s->gather};
    double t0 = augur_now_ms();
    if ((st = run_command(s, &cmd, err)))
        goto out;
    double verify_ms = augur_now_ms() - t0;

    double t1 = augur_now_ms();
    if (s->gather == SPEC_GATHER_LOGITS)
        target_distributions(s, k + 1);
    acceptance_result r = decide(s, &p);
    record_trace(s, &p, r.accepted, verify_ms);
    s->stats->sample_ms += augur_now_ms() - t1;
    s->stats->rounds++;
    s->stats->proposed += k;
    s->stats->accepted += r.accepted;

    /* Stop exactly where target-only decoding would: at a stop token or the limit. */
    int n_new = r.accepted + 1;
    int32_t new_tokens[SPEC_MAX_VERIFY];
    if (r.accepted > 0)
        memcpy(new_tokens, p.tokens, (size_t)r.accepted * sizeof(int32_t));
    new_tokens[r.accepted] = r.next_token;
    int room = s->opts->max_tokens - s->stats->generated;
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
    *finished = s->stats->hit_eos || s->stats->generated >= s->opts->max_tokens ||
                s->len >= e->max_context;
    /* The finishing verdict is what releases the draft, so the caller's stop travels in it. */
    if (s->out->on_round && s->out->on_round(s->out->round_user, s->stats))
        *finished = true;
    wire_verdict v = {.request_id = s->request_id, .round = s->round, .accepted = (uint32_t)(n_new - 1),
                      .next_token = new_tokens[n_new - 1], .finished = *finished, .new_length = (uint32_t)s->len};
    wire_command acc = {.kind = WIRE_CMD_ACCEPT, .request_id = s->request_id, .round = s->round, .accept = v};
    if ((st = run_command(s, &acc, err)))
        goto out;
    if (s->opts->speculate) {
        double t2 = augur_now_ms();
        st = msg_send_typed(e->world, e->draft_rank, MSG_TAG_VERDICT, &v, e->timeout_s, err);
        s->stats->comm_ms += augur_now_ms() - t2;
    }
out:
    wire_proposal_free(&p);
    return st;
}

augur_status spec_leader_generate(spec_engine *e, uint64_t request_id, const tokenizer *tok, const int32_t *prompt,
                                  int n_prompt, const spec_request_opts *opts, const spec_output *out,
                                  spec_stats *stats, augur_error *err)
{
    *stats = (spec_stats){0};
    /* Heartbeats from here on keep the idle ranks' patient waits going (comm/liveness.h). */
    live_start(e->world, e->layout->leader, e->timeout_s);
    if (n_prompt < 1)
        return augur_fail(err, AUGUR_E_INPUT, "the prompt encodes to no tokens");
    if (n_prompt + opts->max_tokens > e->max_context)
        return augur_fail(err, AUGUR_E_INPUT,
                          "prompt of %d tokens plus --max-tokens %d exceeds the context of %d positions", n_prompt,
                          opts->max_tokens, e->max_context);
    int V = e->vocab;
    leader_state s = {.e = e, .opts = opts, .out = out, .tok = tok, .stats = stats, .request_id = request_id,
                      .len = n_prompt, .prompt_len = n_prompt, .greedy = sampling_is_greedy(&opts->sampling)};
    s.gather = s.greedy && !opts->gather_full ? SPEC_GATHER_ARGMAX : SPEC_GATHER_LOGITS;
    s.seq = malloc((size_t)e->max_context * sizeof(int32_t));
    s.p = malloc((size_t)SPEC_MAX_VERIFY * V * sizeof(float));
    s.residual = malloc((size_t)V * sizeof(float));
    s.scratch = malloc((size_t)V * sizeof(int));
    augur_status st = AUGUR_OK;
    if (!s.seq || !s.p || !s.residual || !s.scratch) {
        st = augur_fail(err, AUGUR_E_NOMEM, "leader: out of memory for request %llu", (unsigned long long)request_id);
        goto out;
    }
    memcpy(s.seq, prompt, (size_t)n_prompt * sizeof(int32_t));
    detok_stream_init(&s.ds, tok, true);
    if (out->sink && out->echo_prompt) {
        char buf[512];
        for (int i = 0; i < n_prompt; i++) {
            size_t n = detok_stream_push(&s.ds, prompt[i], buf, sizeof buf);
            if (n)
                out->sink->write(out->sink->user, buf, n);
        }
    }
    double t_start = augur_now_ms();
    if (opts->speculate && (st = send_request(&s, err)))
        goto out;
    /* Prefill every target rank with all prompt tokens but the last (round 0). */
    wire_command prefill = {.kind = WIRE_CMD_VERIFY, .request_id = request_id, .round = 0, .start_position = 0,
                            .tokens = s.seq, .n_tokens = n_prompt - 1, .gather = SPEC_GATHER_NONE};
    double t_prefill = augur_now_ms();
    if ((st = run_command(&s, &prefill, err)))
        goto out;
    stats->prefill_ms = augur_now_ms() - t_prefill;
    bool finished = false;
    for (s.round = 1; !finished && !st; s.round++)
        st = leader_round(&s, &finished, err);
    stats->total_ms = augur_now_ms() - t_start;
    if (out->sink) {
        char tail[64];
        size_t n = detok_stream_flush(&s.ds, tail, sizeof tail);
        if (n)
            out->sink->write(out->sink->user, tail, n);
    }
out:
    free(s.seq);
    free(s.p);
    free(s.residual);
    free(s.scratch);
    return st;
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
