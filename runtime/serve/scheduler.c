/* Continuous batching of served requests on the speculative engine (see scheduler.h). */
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

augur_status serve_queue_init(serve_queue *q, int max_waiting, serve_metrics *metrics, augur_error *err)
{
    *q = (serve_queue){.cap = max_waiting, .max_waiting = max_waiting, .metrics = metrics};
    q->items = calloc((size_t)max_waiting, sizeof *q->items);
    if (!q->items)
        return augur_fail(err, AUGUR_E_NOMEM, "serve: out of memory for a queue of %d requests", max_waiting);
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

static void publish_gauges_locked(serve_queue *q)
{
    metrics_gauges(q->metrics, q->n, q->running, q->kv_used, q->kv_blocks);
}

queue_verdict serve_queue_submit(serve_queue *q, serve_request *r)
{
    pthread_mutex_lock(&q->mu);
    queue_verdict v = QUEUE_ADMITTED;
    if (q->draining)
        v = QUEUE_DRAINING;
    else if (q->n >= q->max_waiting) /* the engine takes waiting requests while it has free slots */
        v = QUEUE_FULL;
    if (v == QUEUE_ADMITTED) {
        serve_request_retain(r);
        q->items[(q->head + q->n) % q->cap] = r;
        q->n++;
        pthread_cond_signal(&q->cv);
        publish_gauges_locked(q);
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
        publish_gauges_locked(q);
    }
    *idle_drained = !r && q->draining && q->n == 0 && q->running == 0;
    pthread_mutex_unlock(&q->mu);
    return r;
}

static void queue_finished(serve_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->running--;
    publish_gauges_locked(q);
    pthread_mutex_unlock(&q->mu);
}

/* A request on the engine: its slot's handle, its stats, and how far its text is decoded. */
typedef struct {
    serve_engine *se;
    serve_request *r;        /* NULL: the slot is free */
    spec_request *h;
    spec_stats stats;
    int seen;                /* tokens already decoded */
    bool speculate;
    char *piece;             /* detok buffer */
    size_t piece_cap;
} running_req;

/* After each of the request's rounds: decode the new tokens, latency figures, stop
 * strings and whether the client is still there. Returning true ends the request
 * with this round's verdict (its slot is freed after the round). */
static bool after_round(void *user, const spec_stats *s)
{
    running_req *c = user;
    serve_request *r = c->r;
    double now = augur_now_ms();
    pthread_mutex_lock(&r->mu);
    int fresh = s->generated - c->seen;
    const int32_t *ids = r->seq + r->n_prompt;
    for (int i = c->seen; i < s->generated; i++) {
        if (s->hit_eos && i == s->generated - 1)
            break; /* a stop token ends the text without text of its own */
        size_t n = detok_stream_push(&r->ds, ids[i], c->piece, c->piece_cap);
        sreq_append_locked(r, c->piece, n);
    }
    c->seen = s->generated;
    r->n_generated = s->generated;
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
    return stop;
}

/* Prepares a request's token buffer and its text decoder, fed the prompt first so that
 * the generated text decodes as it would after it. */
static bool start_request(serve_engine *se, serve_request *r, char *piece, size_t cap)
{
    r->seq = malloc((size_t)(r->n_prompt + r->max_tokens) * sizeof *r->seq);
    if (!r->seq)
        return false;
    memcpy(r->seq, r->prompt, (size_t)r->n_prompt * sizeof *r->seq);
    detok_stream_init(&r->ds, se->tok, true);
    for (int i = 0; i < r->n_prompt; i++)
        detok_stream_push(&r->ds, r->prompt[i], piece, cap);
    return true;
}

static void mark_done(serve_request *r)
{
    pthread_mutex_lock(&r->mu);
    r->state = SREQ_DONE;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
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

/* Puts r on free slot `slot`: the Request to the draft and the prefill on every rank.
 * A request the engine refuses (AUGUR_E_INPUT: the HTTP side checks the same limits
 * first) fails alone; any other failure is the job's. *placed: whether it runs. */
static bool request_gone(serve_request *r)
{
    pthread_mutex_lock(&r->mu);
    bool gone = r->client_gone;
    pthread_mutex_unlock(&r->mu);
    return gone;
}

static augur_status begin_request(serve_engine *se, running_req *c, serve_request *r, int slot, bool *placed,
                                  augur_error *err)
{
    *placed = false;
    pthread_mutex_lock(&r->mu);
    bool gone = r->client_gone;
    r->state = gone ? SREQ_DONE : SREQ_RUNNING;
    pthread_mutex_unlock(&r->mu);
    if (gone) /* abandoned while it waited: it never runs */
        return AUGUR_OK;
    bool speculate = r->speculate && se->e->layout->speculation;
    /* Draws are keyed by (seed, draw key, position): every request's key is 1, so a seeded
     * request draws what `augur generate --seed S` draws for its one prompt, whatever
     * else runs beside it; the wire ids stay distinct. */
    /* A synthetic coin is a draw of a greedy request: without a seed of its own it takes
     * a fixed one, so a greedy answer stays one answer whatever runs beside it. */
    bool synthetic = speculate && se->synthetic_acceptance >= 0 && r->params.sampling.temperature <= 0;
    spec_request_opts o = {.rule = se->rule, .speculate = speculate, .overlap = se->overlap,
                           .overlap_shared_gpu = se->overlap_shared_gpu,
                           .sampling = r->params.sampling,
                           .seed = synthetic && !r->params.have_seed ? 0 : r->seed, .max_tokens = r->max_tokens,
                           .variant = ACCEPT_CORRECT, .draw_key = 1,
                           .synthetic_acceptance = synthetic ? se->synthetic_acceptance : -1.0f};
    c->r = r;
    c->seen = 0;
    c->speculate = speculate;
    spec_output out = {.out_tokens = r->seq + r->n_prompt, .on_round = after_round, .round_user = c};
    augur_status st = spec_leader_begin(se->e, ++se->next_request_id, slot, se->tok, r->seq, r->n_prompt, &o, &out,
                                        &c->stats, &c->h, err);
    if (st == AUGUR_E_INPUT) {
        pthread_mutex_lock(&r->mu);
        snprintf(r->failure, sizeof r->failure, "%.500s", err->message);
        pthread_mutex_unlock(&r->mu);
        augur_error_clear(err);
        c->r = NULL;
        return AUGUR_OK;
    }
    if (st) {
        c->r = NULL;
        return st;
    }
    *placed = true;
    return AUGUR_OK;
}

/* A request whose round ended it: its usage, its slot freed on every rank, its answer. */
static augur_status end_request(serve_engine *se, running_req *c, augur_error *err)
{
    serve_request *r = c->r;
    bool hit_eos = c->stats.hit_eos;
    augur_status st = spec_leader_end(se->e, c->h, err);
    c->h = NULL;
    pthread_mutex_lock(&r->mu);
    r->usage.rounds = c->stats.rounds;
    r->usage.proposed = c->stats.proposed;
    r->usage.accepted = c->stats.accepted;
    r->usage.speculation = c->speculate;
    pthread_mutex_unlock(&r->mu);
    finish_request(se, r, hit_eos, c->piece, c->piece_cap);
    c->r = NULL;
    queue_finished(se->q);
    serve_request_release(r);
    return st;
}

/* KV positions the running requests hold on each rank (prompt and generated tokens). */
static void publish_kv(serve_engine *se, const running_req *run, int n_slots)
{
    long used = 0;
    for (int i = 0; i < n_slots; i++)
        if (run[i].r)
            used += run[i].r->n_prompt + run[i].r->n_generated;
    pthread_mutex_lock(&se->q->mu);
    se->q->kv_used = used;
    se->q->kv_blocks = se->e->has_pool ? se->e->pool.n_blocks - kv_pool_free_blocks(&se->e->pool) : 0;
    publish_gauges_locked(se->q);
    pthread_mutex_unlock(&se->q->mu);
}

augur_status serve_engine_run(serve_engine *se, augur_error *err)
{
    spec_engine *e = se->e;
    int S = e->n_slots;
    live_start(e->world, e->layout->leader, e->timeout_s);
    size_t cap = tokenizer_max_piece_bytes(se->tok) + 64;
    running_req *run = calloc((size_t)S, sizeof *run);
    spec_request **handles = calloc((size_t)S, sizeof *handles);
    char *piece = malloc(cap);
    if (!run || !handles || !piece) {
        free(run);
        free(handles);
        free(piece);
        return augur_fail(err, AUGUR_E_NOMEM, "serve: out of memory for the scheduler");
    }
    for (int i = 0; i < S; i++)
        run[i] = (running_req){.se = se, .piece = piece, .piece_cap = cap};
    int n_running = 0;
    serve_request *parked = NULL; /* taken from the queue, waiting for room in the KV pool */
    augur_status st = AUGUR_OK;
    for (;;) {
        if (*se->term && !serve_queue_draining(se->q)) {
            fprintf(stderr, "augur: serve: SIGTERM: refusing new requests, finishing the admitted ones\n");
            serve_queue_drain(se->q);
        }
        /* Between rounds: waiting requests join, in arrival order, while slots are free. */
        bool drained = false;
        for (int slot = 0; slot < S && !st; slot++) {
            if (run[slot].r)
                continue;
            serve_request *r = parked;
            const bool fresh = !r;
            if (fresh)
                r = queue_take(se->q, n_running ? 0 : ENGINE_IDLE_WAIT_MS, se->hold_file, &drained);
            if (!r)
                break;
            parked = NULL;
            bool placed = false;
            if (fresh && !start_request(se, r, piece, cap)) {
                pthread_mutex_lock(&r->mu);
                r->out_of_memory = true;
                pthread_mutex_unlock(&r->mu);
            } else if (!spec_leader_has_room(e, r->n_prompt, r->max_tokens) && !request_gone(r)) {
                /* The KV pool is spoken for: the request waits, first in line, until
                 * running ones end (an empty pool always has room for one). */
                parked = r;
                break;
            } else {
                st = begin_request(se, &run[slot], r, slot, &placed, err);
            }
            if (placed) {
                n_running++;
                continue;
            }
            mark_done(r);
            queue_finished(se->q);
            serve_request_release(r);
            slot--; /* the slot is still free */
        }
        if (st)
            break;
        if (drained && n_running == 0)
            break;
        if (n_running == 0) {
            /* Idle: keep the other ranks' patient waits fed, and notice a rank gone. */
            live_tick();
            if ((st = live_check_peers(err)))
                break;
            continue;
        }
        publish_kv(se, run, S);
        /* One round over every running request: one batched verification. */
        int n = 0;
        for (int i = 0; i < S; i++)
            if (run[i].r)
                handles[n++] = run[i].h;
        if ((st = spec_leader_step(e, handles, n, err)))
            break;
        for (int i = 0; i < S && !st; i++) {
            if (!run[i].r || !spec_request_finished(run[i].h))
                continue;
            st = end_request(se, &run[i], err);
            n_running--;
        }
        publish_kv(se, run, S);
        if (st)
            break;
    }
    for (int i = 0; i < S; i++) { /* after a failure: the job ends, answers are lost */
        if (!run[i].r)
            continue;
        spec_leader_abandon(e, run[i].h);
        mark_done(run[i].r);
        queue_finished(se->q);
        serve_request_release(run[i].r);
    }
    if (parked) {
        mark_done(parked);
        queue_finished(se->q);
        serve_request_release(parked);
    }
    free(run);
    free(handles);
    free(piece);
    return st;
}
