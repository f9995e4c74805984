/* FIFO scheduling of served requests onto the speculative engine (see scheduler.h). */
#include "runtime/serve/scheduler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm/liveness.h"

/* How long the idle engine sleeps between liveness checks and drain checks. */
#define ENGINE_IDLE_WAIT_MS 20

augur_status serve_queue_init(serve_queue *q, int max_pending, serve_metrics *metrics, augur_error *err)
{
    *q = (serve_queue){.cap = max_pending, .max_pending = max_pending, .metrics = metrics};
    q->items = calloc((size_t)max_pending, sizeof *q->items);
    if (!q->items)
        return augur_fail(err, AUGUR_E_NOMEM, "serve: out of memory for a queue of %d requests", max_pending);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    return AUGUR_OK;
}

void serve_queue_free(serve_queue *q)
{
    if (!q->items)
        return;
    for (int i = 0; i < q->n; i++)
        serve_request_release(q->items[(q->head + i) % q->cap]);
    free(q->items);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    *q = (serve_queue){0};
}

static void publish_gauges_locked(serve_queue *q, long kv_used)
{
    metrics_gauges(q->metrics, q->n, q->running, kv_used);
}

queue_verdict serve_queue_submit(serve_queue *q, serve_request *r)
{
    pthread_mutex_lock(&q->mu);
    queue_verdict v = QUEUE_ADMITTED;
    if (q->draining)
        v = QUEUE_DRAINING;
    else if (q->n + q->running >= q->max_pending)
        v = QUEUE_FULL;
    if (v == QUEUE_ADMITTED) {
        serve_request_retain(r);
        q->items[(q->head + q->n) % q->cap] = r;
        q->n++;
        pthread_cond_signal(&q->cv);
        publish_gauges_locked(q, 0);
    }
    pthread_mutex_unlock(&q->mu);
    return v;
}

void serve_queue_drain(serve_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->draining = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

bool serve_queue_draining(serve_queue *q)
{
    pthread_mutex_lock(&q->mu);
    bool d = q->draining;
    pthread_mutex_unlock(&q->mu);
    return d;
}

/* The next request, or NULL after waiting wait_ms (or while hold_file exists: checked
 * after the wait, so a request submitted after the file appeared is never taken);
 * *idle_drained when draining with nothing left. */
static serve_request *queue_take(serve_queue *q, int wait_ms, const char *hold_file, bool *idle_drained)
{
    if (hold_file && access(hold_file, F_OK) == 0)
        usleep((useconds_t)wait_ms * 1000);
    pthread_mutex_lock(&q->mu);
    if (q->n == 0 && !q->draining) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)wait_ms * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        while (q->n == 0 && !q->draining)
            if (pthread_cond_timedwait(&q->cv, &q->mu, &until) == ETIMEDOUT)
                break;
    }
    serve_request *r = NULL;
    bool held = hold_file && access(hold_file, F_OK) == 0;
    if (q->n > 0 && !held) {
        r = q->items[q->head];
        q->head = (q->head + 1) % q->cap;
        q->n--;
        q->running++;
        publish_gauges_locked(q, 0);
    }
    *idle_drained = !r && q->draining && q->n == 0 && q->running == 0;
    pthread_mutex_unlock(&q->mu);
    return r;
}

static void queue_finished(serve_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->running--;
    publish_gauges_locked(q, 0);
    pthread_mutex_unlock(&q->mu);
}

typedef struct {
    serve_engine *se;
    serve_request *r;
    int base;                /* tokens generated before this slice */
    int seen;                /* tokens of this slice already decoded */
    int rounds;              /* rounds of this slice */
    bool others;             /* other requests are active: yield after slice_rounds */
    bool preempted;          /* this slice ended to let another request run */
    char *piece;             /* detok buffer */
    size_t piece_cap;
} round_ctx;

/* Whether another request is waiting for the engine (queued, or active beside this one). */
static bool others_waiting(round_ctx *c)
{
    if (c->others)
        return true;
    serve_queue *q = c->se->q;
    pthread_mutex_lock(&q->mu);
    bool waiting = q->n > 0 && !(c->se->hold_file && access(c->se->hold_file, F_OK) == 0);
    pthread_mutex_unlock(&q->mu);
    return waiting;
}

/* After each round: decode the new tokens, latency figures, stop strings, whether the
 * client is still there, and whether to yield the engine to another request. */
static bool after_round(void *user, const spec_stats *s)
{
    round_ctx *c = user;
    serve_request *r = c->r;
    double now = augur_now_ms();
    c->rounds++;
    pthread_mutex_lock(&r->mu);
    int fresh = s->generated - c->seen;
    const int32_t *ids = r->seq + r->n_prompt + c->base;
    for (int i = c->seen; i < s->generated; i++) {
        if (s->hit_eos && i == s->generated - 1)
            break; /* a stop token ends the text without text of its own */
        size_t n = detok_stream_push(&r->ds, ids[i], c->piece, c->piece_cap);
        sreq_append_locked(r, c->piece, n);
    }
    c->seen = s->generated;
    r->n_generated = c->base + s->generated;
    double since = now - (r->t_last_ms > 0 ? r->t_last_ms : r->t_admit_ms);
    bool first = r->t_first_ms == 0 && fresh > 0;
    if (first)
        r->t_first_ms = now;
    if (fresh > 0)
        r->t_last_ms = now;
    r->usage.completion_tokens = r->n_generated;
    bool stop = sreq_scan_stop_locked(r, false) || r->client_gone;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    serve_metrics *m = c->se->metrics;
    if (first) {
        metrics_observe(m, &m->ttft, since / 1e3, 1);
        if (fresh > 1) /* the rest of the first round came at once */
            metrics_observe(m, &m->itl, 0.0, (uint64_t)(fresh - 1));
    } else if (fresh > 0) {
        metrics_observe(m, &m->itl, since / 1e3 / fresh, (uint64_t)fresh);
    }
    pthread_mutex_lock(&c->se->q->mu);
    publish_gauges_locked(c->se->q, r->n_prompt + r->n_generated);
    pthread_mutex_unlock(&c->se->q->mu);
    if (!stop && r->preemptible && c->se->slice_rounds > 0 && c->rounds >= c->se->slice_rounds &&
        r->n_generated < r->max_tokens && !s->hit_eos && others_waiting(c)) {
        c->preempted = true;
        return true;
    }
    return stop;
}

/* Prepares a request for its first slice: its token buffer and its text decoder, fed
 * the prompt first so that the generated text decodes as it would after it. */
static bool start_request(serve_engine *se, serve_request *r, char *piece, size_t cap)
{
    r->seq = malloc((size_t)(r->n_prompt + r->max_tokens) * sizeof *r->seq);
    if (!r->seq)
        return false;
    memcpy(r->seq, r->prompt, (size_t)r->n_prompt * sizeof *r->seq);
    detok_stream_init(&r->ds, se->tok, true);
    for (int i = 0; i < r->n_prompt; i++)
        detok_stream_push(&r->ds, r->prompt[i], piece, cap);
    r->preemptible = sampling_is_greedy(&r->params.sampling) || !r->params.have_seed;
    return true;
}

static void finish_request(serve_engine *se, serve_request *r, bool hit_eos, char *piece, size_t cap)
{
    pthread_mutex_lock(&r->mu);
    size_t n = detok_stream_flush(&r->ds, piece, cap);
    sreq_append_locked(r, piece, n);
    sreq_scan_stop_locked(r, true);
    r->usage.prompt_tokens = r->n_prompt;
    r->usage.completion_tokens = r->n_generated;
    r->finish = r->stop_matched || hit_eos ? FINISH_STOP : FINISH_LENGTH;
    r->state = SREQ_DONE;
    double e2e = augur_now_ms() - r->t_admit_ms;
    serve_usage u = r->usage;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    metrics_observe(se->metrics, &se->metrics->e2e, e2e / 1e3, 1);
    metrics_tokens(se->metrics, r->n_prompt, u.completion_tokens, u.speculation ? u.rounds : 0, u.proposed,
                   u.accepted, u.speculation ? u.completion_tokens : 0);
}

/* Runs one slice of r: from its tokens so far until it ends, or until it yields the
 * engine (after slice_rounds rounds while others wait). The ranks then start the next
 * slice over from position 0 (recompute): every forward of the engine computes each
 * row alike whatever the rows beside it, so a greedy answer does not change. Returns
 * whether r is done. */
static augur_status run_slice(serve_engine *se, serve_request *r, bool others, char *piece, size_t cap, bool *done,
                              augur_error *err)
{
    *done = true;
    pthread_mutex_lock(&r->mu);
    bool gone = r->client_gone;
    r->state = gone ? SREQ_DONE : SREQ_RUNNING;
    pthread_mutex_unlock(&r->mu);
    if (gone) /* abandoned: nothing to free on the other ranks between slices */
        return AUGUR_OK;
    bool speculate = r->speculate && se->e->layout->speculation;
    spec_request_opts o = {.rule = se->rule, .speculate = speculate, .overlap = se->overlap,
                           .sampling = r->params.sampling, .seed = r->seed, .max_tokens = r->max_tokens - r->n_generated,
                           .variant = ACCEPT_CORRECT, .synthetic_acceptance = -1.0f};
    round_ctx c = {.se = se, .r = r, .base = r->n_generated, .others = others, .piece = piece, .piece_cap = cap};
    spec_output out = {.out_tokens = r->seq + r->n_prompt + r->n_generated, .on_round = after_round,
                       .round_user = &c};
    spec_stats s;
    r->slices++;
    /* Every engine request is number 1: slices never overlap on the engine, and a seeded
     * request then draws exactly what `augur generate --seed S` draws for one prompt
     * (draws are keyed by seed, request and position). */
    augur_status st = spec_leader_generate(se->e, 1, se->tok, r->seq, r->n_prompt + r->n_generated, &o, &out, &s,
                                           err);
    if (st == AUGUR_E_INPUT) {
        /* Refused before any round (the HTTP side checks the same limits first): the
         * ranks are untouched, so only this request fails. */
        pthread_mutex_lock(&r->mu);
        snprintf(r->failure, sizeof r->failure, "%.500s", err->message);
        pthread_mutex_unlock(&r->mu);
        augur_error_clear(err);
        return AUGUR_OK;
    }
    if (st)
        return st;
    pthread_mutex_lock(&r->mu);
    r->usage.rounds += s.rounds;
    r->usage.proposed += s.proposed;
    r->usage.accepted += s.accepted;
    r->usage.speculation = speculate;
    bool ended = !c.preempted || r->stop_matched || r->client_gone;
    pthread_mutex_unlock(&r->mu);
    if (!ended) {
        *done = false;
        return AUGUR_OK;
    }
    finish_request(se, r, s.hit_eos, piece, cap);
    return AUGUR_OK;
}

augur_status serve_engine_run(serve_engine *se, augur_error *err)
{
    spec_engine *e = se->e;
    live_start(e->world, e->layout->leader, e->timeout_s);
    size_t cap = tokenizer_max_piece_bytes(se->tok) + 64;
    char *piece = malloc(cap);
    serve_request **active = calloc((size_t)se->q->max_pending, sizeof *active);
    if (!piece || !active) {
        free(piece);
        free(active);
        return augur_fail(err, AUGUR_E_NOMEM, "serve: out of memory for the scheduler");
    }
    int n_active = 0, next = 0;
    augur_status st = AUGUR_OK;
    for (;;) {
        if (*se->term && !serve_queue_draining(se->q)) {
            fprintf(stderr, "augur: serve: SIGTERM: refusing new requests, finishing the admitted ones\n");
            serve_queue_drain(se->q);
        }
        /* Admit what waits (FIFO order) when interleaving, or one at a time when not. */
        bool drained = false;
        while (n_active < se->q->max_pending && (se->slice_rounds > 0 || n_active == 0)) {
            serve_request *r = queue_take(se->q, n_active ? 0 : ENGINE_IDLE_WAIT_MS, se->hold_file, &drained);
            if (!r)
                break;
            if (!start_request(se, r, piece, cap)) {
                pthread_mutex_lock(&r->mu);
                r->out_of_memory = true;
                r->state = SREQ_DONE;
                pthread_cond_broadcast(&r->cv);
                pthread_mutex_unlock(&r->mu);
                queue_finished(se->q);
                serve_request_release(r);
                continue;
            }
            active[n_active++] = r;
        }
        if (drained && n_active == 0)
            break;
        if (n_active == 0) {
            /* Idle: keep the other ranks' patient waits fed, and notice a rank gone. */
            live_tick();
            if ((st = live_check_peers(err)))
                break;
            continue;
        }
        if (next >= n_active)
            next = 0;
        serve_request *r = active[next];
        bool done = true;
        st = run_slice(se, r, n_active > 1, piece, cap, &done, err);
        if (st)
            break;
        if (!done) {
            next++; /* round robin: the next active request gets the next slice */
            continue;
        }
        pthread_mutex_lock(&r->mu);
        r->state = SREQ_DONE; /* also when it ended without running (client gone) */
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        memmove(active + next, active + next + 1, (size_t)(n_active - next - 1) * sizeof *active);
        n_active--;
        queue_finished(se->q);
        serve_request_release(r);
    }
    for (int i = 0; i < n_active; i++) { /* after a failure: the job ends, answers are lost */
        queue_finished(se->q);
        serve_request_release(active[i]);
    }
    free(active);
    free(piece);
    return st;
}
