/* The draft rank: drafts proposals with its own model, records each token's draft
 * distribution and entropy, and (with overlap) keeps drafting ahead while the target
 * verifies, keeping whatever the verdict confirms (DESIGN §4). Serving several requests,
 * it drafts a round's proposals together, one forward per step over all of them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/messaging.h"
#include "kernels/cpu_kernels.h"
#include "runtime/spec/spec_engine.h"

/* Tokens drafted beyond the confirmed sequence, each with its q and entropy. */
typedef struct {
    int32_t *tokens;
    float *entropies;
    float *ms;               /* drafting time of each token */
    bool *ahead;             /* drafted while the target verified (overlap) */
    float *q;                /* [cap][vocab] when sampling, else NULL */
    int n, cap;
} drafted;

typedef struct {
    spec_engine *e;
    kv_cache *kv;            /* this request's slot */
    uint64_t draw_key;
    bool awaiting;           /* a proposal went out and its verdict has not come */
    int proposed;            /* tokens of that proposal */
    bool due;                /* its next proposal is to be drafted (propose_due) */
    int k, k_max;            /* propose_due: tokens of the proposal so far, and its limit */
    bool full;               /* propose_due: the proposal is complete */
    double t0;               /* when its drafting began */
    wire_request req;
    sampling_params sp;
    bool greedy;
    bool want_entropy;       /* the rule reads entropies or the leader traces them */
    draft_rule rule;
    draft_rule_state rule_state;
    bool overlap;
    int32_t *seq;            /* confirmed sequence S */
    int len;                 /* |S| */
    int prompt_len;
    drafted d;
    float *logits, *probs, *softmax_buf;
    int *scratch;
    uint32_t round;
    int proposals_sent;
    int exit_after;          /* tests: exit after this many proposals */
} draft_state;

static void draft_state_free(draft_state *s)
{
    free(s->seq);
    free(s->d.tokens);
    free(s->d.entropies);
    free(s->d.ms);
    free(s->d.ahead);
    free(s->d.q);
    free(s->logits);
    free(s->probs);
    free(s->softmax_buf);
    free(s->scratch);
    wire_request_free(&s->req);
}

static draft_rule rule_from_wire(const wire_draft_rule *w)
{
    static const draft_rule_kind kinds[] = {
        [WIRE_RULE_FIXED] = DRAFT_RULE_FIXED,
        [WIRE_RULE_HEURISTIC] = DRAFT_RULE_HEURISTIC,
        [WIRE_RULE_ENTROPY_STATIC] = DRAFT_RULE_STATIC,
        [WIRE_RULE_ENTROPY_MOVING_AVG] = DRAFT_RULE_MOVING_AVERAGE,
        [WIRE_RULE_ENTROPY_CUMULATIVE] = DRAFT_RULE_CUMULATIVE,
    };
    draft_rule r = {.kind = w->kind <= WIRE_RULE_ENTROPY_CUMULATIVE ? kinds[w->kind] : DRAFT_RULE_FIXED,
                    .gamma = (int)w->max_len, .tau = w->tau, .lambda = w->lambda, .window = (int)w->window};
    return r;
}

static augur_status draft_state_init(draft_state *s, spec_engine *e, augur_error *err)
{
    int V = e->vocab;
    const wire_request *r = &s->req;
    s->e = e;
    s->sp = (sampling_params){.temperature = r->sampling.temperature, .top_k = r->sampling.top_k,
                              .top_p = r->sampling.top_p};
    s->greedy = sampling_is_greedy(&s->sp);
    s->rule = rule_from_wire(&r->rule);
    draft_rule_init(&s->rule_state, &s->rule);
    /* A softmax and a log over the vocabulary per token (~1-2 ms at 128k entries on a
     * host core, as much as a 1B-shape draft step on a GPU): only when someone reads it. */
    s->want_entropy = draft_rule_uses_entropy(&s->rule) || r->want_entropies;
    s->len = s->prompt_len = r->n_prompt_tokens;
    s->d.cap = 2 * DRAFT_RULE_MAX_GAMMA + 2;
    s->seq = malloc((size_t)e->max_context * sizeof(int32_t));
    s->d.tokens = malloc((size_t)s->d.cap * sizeof(int32_t));
    s->d.entropies = malloc((size_t)s->d.cap * sizeof(float));
    s->d.ms = malloc((size_t)s->d.cap * sizeof(float));
    s->d.ahead = malloc((size_t)s->d.cap * sizeof(bool));
    s->d.q = s->greedy ? NULL : malloc((size_t)s->d.cap * V * sizeof(float));
    s->logits = malloc((size_t)V * sizeof(float));
    s->probs = malloc((size_t)V * sizeof(float));
    s->softmax_buf = malloc((size_t)V * sizeof(float));
    s->scratch = malloc((size_t)V * sizeof(int));
    if (!s->seq || !s->d.tokens || !s->d.entropies || !s->d.ms || !s->d.ahead || (!s->greedy && !s->d.q) || !s->logits || !s->probs ||
        !s->softmax_buf || !s->scratch)
        return augur_fail(err, AUGUR_E_NOMEM, "draft: out of memory for request %llu",
                          (unsigned long long)r->request_id);
    if (r->n_prompt_tokens < 1 || r->n_prompt_tokens >= e->max_context)
        return augur_fail(err, AUGUR_E_COMM, "draft: request %llu has a prompt of %d tokens (context %d)",
                          (unsigned long long)r->request_id, r->n_prompt_tokens, e->max_context);
    if (r->slot >= (uint32_t)e->n_slots)
        return augur_fail(err, AUGUR_E_COMM, "draft: request %llu on slot %u (%d slots: --max-running)",
                          (unsigned long long)r->request_id, r->slot, e->n_slots);
    memcpy(s->seq, r->prompt_tokens, (size_t)s->len * sizeof(int32_t));
    s->kv = &e->slots[r->slot];
    s->kv->len = 0;
    s->draw_key = r->draw_key ? r->draw_key : r->request_id;
    return AUGUR_OK;
}

/* Entropy (nats) the rules see: of the processed q when sampling; when greedy, of
 * softmax(logits), since the one-hot greedy distribution carries no information. */
static float draft_entropy(draft_state *s)
{
    if (!s->greedy)
        return entropy_nats(s->probs, s->e->vocab);
    memcpy(s->softmax_buf, s->logits, (size_t)s->e->vocab * sizeof(float));
    cpu_softmax(s->softmax_buf, s->e->vocab);
    return entropy_nats(s->softmax_buf, s->e->vocab);
}

/* Feeds n tokens; a greedy step that nobody needs the logits of (no entropy) takes the
 * argmax where the logits are, so a GPU draft sends back one id instead of a vocabulary
 * row and the host scans nothing. Otherwise the last position's logits land in s->logits
 * and, when greedy, *tok is their argmax. */
static augur_status draft_feed(draft_state *s, const int32_t *tokens, int n, int32_t *tok, augur_error *err)
{
    spec_engine *e = s->e;
    if (s->greedy && !s->want_entropy)
        return forward_prefill_argmax(&e->fwd, s->kv, tokens, n, s->logits, tok, err);
    augur_status st = forward_prefill(&e->fwd, s->kv, tokens, n, s->logits, err);
    if (!st && s->greedy)
        *tok = argmax_f32(s->logits, e->vocab);
    return st;
}

/* The token drafted after the feed (tok: the greedy argmax; sampled here otherwise),
 * with its q, entropy and timing, appended to D. */
static void draft_take(draft_state *s, int32_t tok, bool ahead, double t0)
{
    spec_engine *e = s->e;
    int total = s->len + s->d.n;
    if (!s->greedy) {
        sampling_probs(&s->sp, s->logits, e->vocab, s->probs, s->scratch);
        /* Keyed by position: a token drafted ahead and discarded leaves the next draw
         * at this position unchanged, so one seed gives one output however the
         * verification and the drafting interleaved. */
        augur_rng rng;
        rng_seed_at(&rng, s->req.sampling.seed, SPEC_DRAW_STREAM_DRAFT, s->draw_key, (uint64_t)total);
        tok = sample_from_probs(s->probs, e->vocab, &rng);
        memcpy(s->d.q + (size_t)s->d.n * e->vocab, s->probs, (size_t)e->vocab * sizeof(float));
    }
    s->d.entropies[s->d.n] = s->want_entropy ? draft_entropy(s) : 0.0f;
    s->d.ahead[s->d.n] = ahead;
    s->d.ms[s->d.n] = (float)(augur_now_ms() - t0);
    s->d.tokens[s->d.n++] = tok;
}

/* Position pos of S ++ D (pos < len + d.n). */
static int32_t token_at(const draft_state *s, int pos)
{
    return pos < s->len ? s->seq[pos] : s->d.tokens[pos - s->len];
}

/* Drafts one more token after S ++ D, feeding whatever the cache lacks first. */
static augur_status draft_one(draft_state *s, bool ahead, augur_error *err)
{
    spec_engine *e = s->e;
    double t0 = augur_now_ms();
    int total = s->len + s->d.n;
    if (s->d.n >= s->d.cap || total >= e->max_context)
        return augur_fail(err, AUGUR_E_INTERNAL, "draft: no room to draft past %d tokens", total);
    int32_t tok = 0;
    /* Unfed tokens: positions kv.len .. total-1 of S ++ D. */
    int32_t unfed[2 * DRAFT_RULE_MAX_GAMMA + 4];
    int n_unfed = total - s->kv->len;
    int32_t *feed;
    if (s->kv->len >= s->len) {
        for (int i = 0; i < n_unfed; i++)
            unfed[i] = token_at(s, s->kv->len + i);
        feed = unfed;
    } else if (s->d.n == 0) {
        feed = s->seq + s->kv->len;
    } else { /* some of S and all of D: copy into one run */
        int32_t *run = malloc((size_t)n_unfed * sizeof(int32_t));
        if (!run)
            return augur_fail(err, AUGUR_E_NOMEM, "draft: out of memory");
        memcpy(run, s->seq + s->kv->len, (size_t)(s->len - s->kv->len) * sizeof(int32_t));
        memcpy(run + (s->len - s->kv->len), s->d.tokens, (size_t)s->d.n * sizeof(int32_t));
        augur_status st = draft_feed(s, run, n_unfed, &tok, err);
        free(run);
        if (st)
            return st;
        feed = NULL;
    }
    if (feed) {
        augur_status st = draft_feed(s, feed, n_unfed, &tok, err);
        if (st)
            return st;
    }
    draft_take(s, tok, ahead, t0);
    return AUGUR_OK;
}

/* k more tokens after S ++ D in one greedy chain (forward_greedy_chain: on a GPU one captured
 * program and one download for all of them, where one step at a time pays a host round trip
 * each). Only a greedy draft that reads no entropy: a chain keeps no logits. The tokens are
 * those draft_one would draft one by one. ahead: drafted past the proposal awaiting its
 * verdict (overlap), beside the target's verification where the GPU is shared. */
static augur_status draft_chain(draft_state *s, int k, bool ahead, augur_error *err)
{
    spec_engine *e = s->e;
    int total = s->len + s->d.n;
    if (k < 1 || s->d.n + k > s->d.cap || total + k > e->max_context)
        return augur_fail(err, AUGUR_E_INTERNAL, "draft: no room to draft %d tokens past %d", k, total);
    if (total - s->kv->len > FORWARD_CHAIN_FEED) { /* a prompt first: its own forward, in chunks */
        augur_status st = draft_one(s, ahead, err);
        if (st || --k == 0)
            return st;
        total++;
    }
    double t0 = augur_now_ms();
    int32_t feed[FORWARD_CHAIN_FEED], chosen[DRAFT_RULE_MAX_GAMMA];
    const int n_unfed = total - s->kv->len;
    if (n_unfed < 1 || k > DRAFT_RULE_MAX_GAMMA)
        return augur_fail(err, AUGUR_E_INTERNAL, "draft: a chain of %d tokens after %d unfed", k, n_unfed);
    for (int i = 0; i < n_unfed; i++)
        feed[i] = token_at(s, s->kv->len + i);
    const bool beside = ahead && e->place.shared;
    augur_status st = forward_greedy_chain(&e->fwd, s->kv, feed, n_unfed, k, beside, chosen, s->logits, err);
    if (st)
        return st;
    float each = (float)(augur_now_ms() - t0) / (float)k;
    for (int i = 0; i < k; i++) {
        draft_take(s, chosen[i], ahead, t0);
        s->d.ms[s->d.n - 1] = each;
    }
    return AUGUR_OK;
}

static void drafted_drop_front(draft_state *s, int k)
{
    int V = s->e->vocab;
    int rest = s->d.n - k;
    memmove(s->d.tokens, s->d.tokens + k, (size_t)rest * sizeof(int32_t));
    memmove(s->d.entropies, s->d.entropies + k, (size_t)rest * sizeof(float));
    memmove(s->d.ms, s->d.ms + k, (size_t)rest * sizeof(float));
    memmove(s->d.ahead, s->d.ahead + k, (size_t)rest * sizeof(bool));
    if (s->d.q)
        memmove(s->d.q, s->d.q + (size_t)k * V, (size_t)rest * V * sizeof(float));
    s->d.n = rest;
}

/* Most tokens the next proposal may hold: the rule's limit, the context (the target
 * verifies positions len-1 .. len-1+k), and what the request still needs. */
static int proposal_limit(draft_state *s, int rule_max)
{
    int k = rule_max;
    int room = s->e->max_context - s->len;
    if (k > room)
        k = room;
    int remaining = (int)s->req.max_tokens - (s->len - s->prompt_len);
    if (k > remaining)
        k = remaining;
    return k < 0 ? 0 : k;
}

/* Sends D's first k tokens as the request's proposal, drafted since t0. */
static augur_status send_drafted(draft_state *s, int k, double t0, augur_error *err)
{
    spec_engine *e = s->e;
    wire_proposal p = {.request_id = s->req.request_id, .round = s->round, .start_position = (uint32_t)s->len,
                       .n_tokens = k, .tokens = s->d.tokens, .dists = s->greedy ? NULL : s->d.q,
                       .entropies = s->want_entropy ? s->d.entropies : NULL, .vocab_size = e->vocab,
                       .draft_ms = (float)(augur_now_ms() - t0), .hidden_ms = 0};
    for (int i = 0; i < k; i++)
        if (s->d.ahead[i])
            p.hidden_ms += s->d.ms[i];
    augur_status st = msg_send_typed(e->world, 0, MSG_TAG_PROPOSAL, &p, e->timeout_s, err);
    s->proposals_sent++;
    return st;
}

/* Applies a verdict: S grows by the accepted tokens and the next token; drafted tokens
 * survive only where they continue the new S. */
static augur_status apply_verdict(draft_state *s, const wire_verdict *v, int proposed, augur_error *err)
{
    spec_engine *e = s->e;
    int n = (int)v->accepted;
    if (n > proposed || (int)v->new_length != s->len + n + 1 || v->next_token < 0 || v->next_token >= e->vocab)
        return augur_fail(err, AUGUR_E_COMM,
                          "draft: verdict for round %u is inconsistent (accepted %d of %d, new length %u, "
                          "sequence %d)",
                          v->round, n, proposed, v->new_length, s->len);
    int old_len = s->len;
    memcpy(s->seq + s->len, s->d.tokens, (size_t)n * sizeof(int32_t));
    s->len += n;
    s->seq[s->len++] = v->next_token;
    if (n < s->d.n && s->d.tokens[n] == v->next_token) {
        drafted_drop_front(s, n + 1); /* S ++ D is unchanged: the cache stays valid */
    } else {
        s->d.n = 0;
        if (s->kv->len > old_len + n)
            s->kv->len = old_len + n;
    }
    draft_rule_end_round(&s->rule_state, n, proposed);
    return AUGUR_OK;
}

/* Every request in flight on this rank, by slot. */
typedef struct {
    spec_engine *e;
    const wire_expect *want;
    draft_state **states;    /* [n_slots] */
    int next_ahead;          /* round robin over the requests to draft ahead for */
    /* drafting for several requests at once (propose_due) */
    draft_state **due, **need; /* [n_slots] */
    forward_seq *seqs;       /* [n_slots] */
    int32_t *feed;           /* [n_slots][DRAFT_BATCH_FEED_MAX] */
    bool *row_logits;        /* [n_slots] */
    int32_t *argmax;         /* [SPEC_FORWARD_TOKENS] */
    float *row_max;          /* [SPEC_FORWARD_TOKENS] */
    float *logits;           /* [SPEC_FORWARD_TOKENS][vocab] */
    int64_t proposals, batched_forwards, batched_tokens;
} draft_table;

/* Most tokens a request feeds in a forward shared with other requests: a verdict leaves
 * one to a few unfed; more (a new request's prompt) go through forward_prefill alone. */
#define DRAFT_BATCH_FEED_MAX 8

/* The request now awaits the verdict on its proposal of k tokens. */
static augur_status proposed_k(draft_state *s, int proposed)
{
    s->awaiting = true;
    s->proposed = proposed;
    if (s->exit_after > 0 && s->proposals_sent >= s->exit_after) {
        fprintf(stderr, "augur: draft rank %d: exiting after %d proposals as asked (test)\n", s->e->world_rank,
                s->proposals_sent);
        exit(3);
    }
    return AUGUR_OK;
}

/* One more token for each of ss[0..n): requests with few unfed tokens share forwards of
 * up to the forward's rows (one pass over the draft's weights for all of them), the
 * others draft alone. A request's logits are the same either way (forward_run_batch is
 * row-invariant), so batching changes no proposal. */
static augur_status draft_step_together(draft_table *t, draft_state **ss, int n, augur_error *err)
{
    spec_engine *e = t->e;
    const int V = e->vocab;
    if (n == 1) /* the single-request path (captured steps on GPUs; no shared buffers with one slot) */
        return draft_one(ss[0], false, err);
    augur_status st = AUGUR_OK;
    int i = 0;
    while (i < n && !st) {
        double t0 = augur_now_ms();
        int g = 0, rows = 0;
        draft_state *group[SPEC_FORWARD_TOKENS];
        for (; i < n && g < SPEC_FORWARD_TOKENS; i++) {
            draft_state *s = ss[i];
            const int total = s->len + s->d.n, n_unfed = total - s->kv->len;
            if (s->d.n >= s->d.cap || total >= e->max_context)
                return augur_fail(err, AUGUR_E_INTERNAL, "draft: no room to draft past %d tokens", total);
            if (n_unfed > DRAFT_BATCH_FEED_MAX || n_unfed < 1) {
                if ((st = draft_one(s, false, err)))
                    return st;
                continue;
            }
            if (rows + n_unfed > e->fwd.max_tokens)
                break;
            int32_t *feed = t->feed + (size_t)g * DRAFT_BATCH_FEED_MAX;
            for (int p = 0; p < n_unfed; p++)
                feed[p] = token_at(s, s->kv->len + p);
            t->seqs[g] = (forward_seq){.kv = s->kv, .tokens = feed, .n = n_unfed, .logits_from = n_unfed - 1};
            t->row_logits[g] = !s->greedy || s->want_entropy;
            group[g++] = s;
            rows += n_unfed;
        }
        if (g == 0)
            continue;
        if (g == 1) { /* alone after all */
            st = draft_one(group[0], false, err);
            continue;
        }
        if ((st = forward_run_batch_reduced(&e->fwd, t->seqs, g, t->row_logits, t->logits, t->argmax, t->row_max,
                                            err)))
            return augur_wrap(err, "draft: a forward over %d requests", g);
        t->batched_forwards++;
        t->batched_tokens += g;
        for (int j = 0; j < g; j++) {
            draft_state *s = group[j];
            if (t->row_logits[j])
                memcpy(s->logits, t->logits + (size_t)j * V, (size_t)V * sizeof(float));
            draft_take(s, t->argmax[j], false, t0);
        }
    }
    return st;
}

/* Proposals for every request whose turn came (a verdict burst, a new request), drafted
 * together: each step feeds every unfinished proposal's next token in shared forwards,
 * and each request stops where its own rule and limit say, exactly as drafting alone. */
static augur_status propose_due(draft_table *t, augur_error *err)
{
    spec_engine *e = t->e;
    draft_state **due = t->due, **need = t->need;
    int n = 0;
    for (int i = 0; i < e->n_slots; i++)
        if (t->states[i] && t->states[i]->due)
            due[n++] = t->states[i];
    for (int i = 0; i < n; i++) {
        draft_state *s = due[i];
        s->due = false;
        s->t0 = augur_now_ms();
        s->k = 0;
        s->k_max = proposal_limit(s, draft_rule_begin_round(&s->rule_state));
        s->full = s->k_max == 0;
    }
    for (;;) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            draft_state *s = due[i];
            while (!s->full && s->k < s->d.n) {
                bool stop = draft_rule_stop_after(&s->rule_state, s->d.entropies[s->k]);
                s->k++;
                s->full = stop || s->k >= s->k_max;
            }
            if (!s->full)
                need[m++] = s;
        }
        if (m == 0)
            break;
        /* one request alone, greedy without entropies: the rest of its proposal in one chain */
        augur_status st = m == 1 && need[0]->greedy && !need[0]->want_entropy
                              ? draft_chain(need[0], need[0]->k_max - need[0]->k, false, err)
                              : draft_step_together(t, need, m, err);
        if (st)
            return st;
    }
    for (int i = 0; i < n; i++) {
        augur_status st = send_drafted(due[i], due[i]->k, due[i]->t0, err);
        if (!st)
            st = proposed_k(due[i], due[i]->k);
        if (st)
            return st;
        t->proposals++;
    }
    return AUGUR_OK;
}

/* Whether the request drafts ahead in fused chains: a greedy draft without entropies whose
 * chains are one fused launch (a small draft on a GPU). */
static bool ahead_in_chains(const draft_state *s)
{
    return s->greedy && !s->want_entropy && s->e->fwd.fused;
}

static void drop_state(draft_table *t, int slot)
{
    draft_state_free(t->states[slot]);
    free(t->states[slot]);
    t->states[slot] = NULL;
}

static augur_status on_verdict(draft_table *t, uint32_t *burst_rest, augur_error *err);

/* A new request: its draft state on the slot the leader chose, and its first proposal. */
static augur_status on_request(draft_table *t, augur_error *err)
{
    spec_engine *e = t->e;
    draft_state *s = calloc(1, sizeof *s);
    if (!s)
        return augur_fail(err, AUGUR_E_NOMEM, "draft: out of memory for a request");
    augur_status st = msg_recv_typed(e->world, 0, MSG_TAG_REQUEST, e->timeout_s, t->want, &s->req, err);
    /* The leader reuses a slot only after its request's finishing verdict, which went
     * out before this Request but travels under another tag: take verdicts first. */
    while (!st && s->req.slot < (uint32_t)e->n_slots && t->states[s->req.slot]) {
        if (!t->states[s->req.slot]->awaiting) {
            st = augur_fail(err, AUGUR_E_COMM, "draft: request %llu on slot %u, which request %llu still holds",
                            (unsigned long long)s->req.request_id, s->req.slot,
                            (unsigned long long)t->states[s->req.slot]->req.request_id);
            break;
        }
        uint32_t rest;
        st = on_verdict(t, &rest, err);
    }
    if (!st)
        st = draft_state_init(s, e, err);
    if (st || s->req.rule.kind == WIRE_RULE_NONE) {
        draft_state_free(s);
        free(s);
        return st;
    }
    /* On a GPU it shares with a target rank, drafting ahead step by step runs beside the
     * verification and slows it more than it hides (docs/perf-notes.md, change 10); a fused
     * chain on part of the GPU hides more than it costs where the two processes' kernels
     * run at once (CUDA MPS), not where they take turns (change 19). */
    const bool beside_pays = ahead_in_chains(s) && e->be && e->be->caps.shares_device_concurrently;
    s->overlap = s->req.overlap && (!e->place.shared || s->req.overlap_shared_gpu || beside_pays);
    s->exit_after = (int)s->req.debug_draft_exit_after;
    s->round = 1;
    t->states[s->req.slot] = s;
    s->due = true;
    return AUGUR_OK;
}

/* A verdict: its request moves on and is due to propose again, or (finishing) is
 * dropped. *burst_rest: how many verdicts the leader sends right after it. */
static augur_status on_verdict(draft_table *t, uint32_t *burst_rest, augur_error *err)
{
    spec_engine *e = t->e;
    wire_expect want = {.request_id = WIRE_ANY_REQUEST, .round = WIRE_ANY_ROUND, .vocab_size = e->vocab,
                        .peer_rank = 0};
    wire_verdict v = {0};
    *burst_rest = 0;
    augur_status st = msg_recv_typed(e->world, 0, MSG_TAG_VERDICT, e->timeout_s, &want, &v, err);
    if (st)
        return st;
    *burst_rest = v.burst_rest;
    int slot = -1;
    for (int i = 0; i < e->n_slots && slot < 0; i++)
        if (t->states[i] && t->states[i]->req.request_id == v.request_id)
            slot = i;
    draft_state *s = slot >= 0 ? t->states[slot] : NULL;
    if (!s || !s->awaiting || v.round != s->round)
        return augur_fail(err, AUGUR_E_COMM, "draft: verdict for request %llu, round %u: %s",
                          (unsigned long long)v.request_id, v.round,
                          !s ? "no such request in flight" : !s->awaiting ? "no proposal awaits it" : "another round");
    s->awaiting = false;
    if (v.finished) {
        drop_state(t, slot);
        return AUGUR_OK;
    }
    if ((st = apply_verdict(s, &v, s->proposed, err)))
        return st;
    s->round++;
    s->due = true;
    return AUGUR_OK;
}

/* Overlap: more tokens, drafted as if the whole proposal were accepted, for the next
 * request (round robin) that awaits a verdict and has room. One token at a time, so that
 * a verdict is taken as soon as it comes; or, with fused chains, the proposal's length + 1
 * tokens in one chain: what the next proposal needs when every token and the draft's own
 * guess of the target's next one are taken (beside the verification, on a few
 * multiprocessors, where the GPU is shared). *drafted: whether it did. */
static augur_status draft_ahead_one(draft_table *t, bool *drafted, augur_error *err)
{
    spec_engine *e = t->e;
    *drafted = false;
    for (int j = 0; j < e->n_slots; j++) {
        int i = (t->next_ahead + j) % e->n_slots;
        draft_state *s = t->states[i];
        if (!s || !s->overlap || !s->awaiting)
            continue;
        const bool chain = ahead_in_chains(s);
        int limit = chain ? 2 * s->proposed + 1 : s->proposed + DRAFT_RULE_MAX_GAMMA;
        if (limit > s->d.cap)
            limit = s->d.cap;
        if (limit > e->max_context - 1 - s->len)
            limit = e->max_context - 1 - s->len;
        if (s->d.n >= limit)
            continue;
        t->next_ahead = (i + 1) % e->n_slots;
        *drafted = true;
        if (!chain)
            return draft_one(s, true, err);
        const int k = limit - s->d.n;
        return draft_chain(s, k < DRAFT_RULE_MAX_GAMMA ? k : DRAFT_RULE_MAX_GAMMA, true, err);
    }
    return AUGUR_OK;
}

/* Requests and verdicts until the stop command. Waiting with nothing to draft ahead is
 * patient: the leader may take its time between messages (tokenizing, target-only
 * requests, an idle server), and the wait lasts while its heartbeats come
 * (comm/liveness.h), failing only when the leader falls silent for the timeout. */
static augur_status draft_serve_loop(draft_table *t, augur_error *err)
{
    static const int tags[] = {MSG_TAG_VERDICT, MSG_TAG_REQUEST, MSG_TAG_COMMAND};
    spec_engine *e = t->e;
    for (;;) {
        int tag = -1;
        augur_status st = AUGUR_OK;
        for (int i = 0; i < 3 && tag < 0 && !st; i++) {
            bool ready = false;
            st = msg_poll(e->world, 0, tags[i], &ready, err);
            if (ready)
                tag = tags[i];
        }
        if (!st && tag < 0) {
            bool drafted = false;
            if ((st = draft_ahead_one(t, &drafted, err)) || drafted)
                continue;
            st = msg_wait_any(e->world, e->layout->leader, tags, 3, e->timeout_s, &tag, err);
        }
        if (st)
            return st;
        if (tag == MSG_TAG_REQUEST) {
            if (!(st = on_request(t, err)))
                st = propose_due(t, err);
        } else if (tag == MSG_TAG_VERDICT) {
            uint32_t rest = 0;
            /* the rest of a burst is on its way: draft once it is all in */
            if (!(st = on_verdict(t, &rest, err)) && rest == 0)
                st = propose_due(t, err);
        } else {
            wire_command cmd = {0};
            st = msg_recv_typed(e->world, 0, MSG_TAG_COMMAND, e->timeout_s, t->want, &cmd, err);
            bool stop = !st && cmd.kind == WIRE_CMD_STOP;
            wire_command_free(&cmd);
            if (st || stop)
                return st;
            return augur_fail(err, AUGUR_E_COMM, "draft: the leader sent a command other than stop");
        }
        if (st)
            return st;
    }
}

augur_status spec_draft_serve(spec_engine *e, augur_error *err)
{
    wire_expect want = {.request_id = WIRE_ANY_REQUEST, .round = WIRE_ANY_ROUND, .vocab_size = e->vocab,
                        .peer_rank = 0};
    live_start(e->world, e->layout->leader, e->timeout_s);
    draft_table t = {.e = e, .want = &want};
    const size_t S = (size_t)e->n_slots;
    t.states = calloc(S, sizeof *t.states);
    t.due = calloc(S, sizeof *t.due);
    t.need = calloc(S, sizeof *t.need);
    if (S > 1) { /* several requests at once: the shared forwards' buffers */
        t.seqs = calloc(S, sizeof *t.seqs);
        t.feed = malloc(S * DRAFT_BATCH_FEED_MAX * sizeof *t.feed);
        t.row_logits = calloc(S, sizeof *t.row_logits);
        t.argmax = malloc(SPEC_FORWARD_TOKENS * sizeof *t.argmax);
        t.row_max = malloc(SPEC_FORWARD_TOKENS * sizeof *t.row_max);
        t.logits = malloc((size_t)SPEC_FORWARD_TOKENS * e->vocab * sizeof *t.logits);
    }
    augur_status st = AUGUR_OK;
    if (!t.states || !t.due || !t.need || (S > 1 && (!t.seqs || !t.feed || !t.row_logits || !t.argmax || !t.row_max || !t.logits)))
        st = augur_fail(err, AUGUR_E_NOMEM, "draft: out of memory for %d request slots", e->n_slots);
    if (!st)
        st = draft_serve_loop(&t, err);
    if (t.states)
        for (size_t i = 0; i < S; i++)
            if (t.states[i])
                drop_state(&t, (int)i);
    if (S > 1)
        fprintf(stderr, "augur: draft rank %d: %lld proposals; %lld forwards drafted for several requests at once "
                        "(%lld tokens)\n", e->world_rank, (long long)t.proposals, (long long)t.batched_forwards,
                (long long)t.batched_tokens);
    free(t.states);
    free(t.due);
    free(t.need);
    free(t.seqs);
    free(t.feed);
    free(t.row_logits);
    free(t.argmax);
    free(t.row_max);
    free(t.logits);
    if (st) {
        live_stop();
        return st;
    }
    return live_finish(e->world, e->timeout_s, err);
}
