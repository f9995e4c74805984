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
} round_ctx;

static void write_text(void *user, const char *text, size_t len)
{
    serve_request *r = ((round_ctx *)user)->r;
    pthread_mutex_lock(&r->mu);
    sreq_append_locked(r, text, len);
    pthread_mutex_unlock(&r->mu);
}

/* After each round: latency figures, stop strings, and whether the client is still there. */
static bool after_round(void *user, const spec_stats *s)
{
    round_ctx *c = user;
    serve_request *r = c->r;
    double now = augur_now_ms();
    pthread_mutex_lock(&r->mu);
    int fresh = s->generated - r->last_generated;
    r->last_generated = s->generated;
    double since = now - (r->t_last_ms > 0 ? r->t_last_ms : r->t_admit_ms);
    bool first = r->t_first_ms == 0 && fresh > 0;
    if (first)
        r->t_first_ms = now;
    if (fresh > 0)
        r->t_last_ms = now;
    r->usage.completion_tokens = s->generated;
    r->usage.rounds = s->rounds;
    r->usage.proposed = s->proposed;
    r->usage.accepted = s->accepted;
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
    publish_gauges_locked(c->se->q, r->n_prompt + s->generated);
    pthread_mutex_unlock(&c->se->q->mu);
    return stop;
}

static augur_status run_one(serve_engine *se, serve_request *r, augur_error *err)
{
    pthread_mutex_lock(&r->mu);
    bool gone = r->client_gone;
    r->state = gone ? SREQ_DONE : SREQ_RUNNING;
    pthread_mutex_unlock(&r->mu);
    if (gone) /* abandoned while it waited: nothing to free on the other ranks */
        return AUGUR_OK;
    bool speculate = r->speculate && se->e->layout->speculation;
    spec_request_opts o = {.rule = se->rule, .speculate = speculate, .overlap = se->overlap,
                           .sampling = r->params.sampling, .seed = r->seed, .max_tokens = r->max_tokens,
                           .variant = ACCEPT_CORRECT, .synthetic_acceptance = -1.0f};
    round_ctx c = {.se = se, .r = r};
    text_sink sink = {.write = write_text, .user = &c};
    spec_output out = {.sink = &sink, .on_round = after_round, .round_user = &c};
    spec_stats s;
    /* Every engine request is number 1: requests never overlap on the engine, and a
     * seeded request then draws exactly what `augur generate --seed S` draws for one
     * prompt (draws are keyed by seed, request and position). */
    augur_status st = spec_leader_generate(se->e, 1, se->tok, r->prompt, r->n_prompt, &o, &out, &s, err);
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
    sreq_scan_stop_locked(r, true);
    r->usage.prompt_tokens = r->n_prompt;
    r->usage.completion_tokens = s.generated;
    r->usage.rounds = s.rounds;
    r->usage.proposed = s.proposed;
    r->usage.accepted = s.accepted;
    r->usage.speculation = speculate;
    r->finish = r->stop_matched || s.hit_eos ? FINISH_STOP : FINISH_LENGTH;
    r->state = SREQ_DONE;
    double e2e = augur_now_ms() - r->t_admit_ms;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    metrics_observe(se->metrics, &se->metrics->e2e, e2e / 1e3, 1);
    metrics_tokens(se->metrics, r->n_prompt, s.generated, speculate ? s.rounds : 0, s.proposed, s.accepted,
                   speculate ? s.generated : 0);
    return AUGUR_OK;
}

augur_status serve_engine_run(serve_engine *se, augur_error *err)
{
    spec_engine *e = se->e;
    live_start(e->world, e->layout->leader, e->timeout_s);
    for (;;) {
        if (*se->term && !serve_queue_draining(se->q)) {
            fprintf(stderr, "augur: serve: SIGTERM: refusing new requests, finishing the admitted ones\n");
            serve_queue_drain(se->q);
        }
        bool drained = false;
        serve_request *r = queue_take(se->q, ENGINE_IDLE_WAIT_MS, se->hold_file, &drained);
        if (drained)
            return AUGUR_OK;
        if (!r) {
            /* Idle: keep the other ranks' patient waits fed, and notice a rank gone. */
            live_tick();
            augur_status st = live_check_peers(err);
            if (st)
                return st;
            continue;
        }
        augur_status st = run_one(se, r, err);
        if (!st) {
            /* A request that ended without running (client gone) is also DONE now. */
            pthread_mutex_lock(&r->mu);
            r->state = SREQ_DONE;
            pthread_cond_broadcast(&r->cv);
            pthread_mutex_unlock(&r->mu);
        }
        queue_finished(se->q);
        serve_request_release(r);
        if (st)
            return st;
    }
}
