/* The request queue of `augur serve` and the engine loop that drains it.
 *
 * The engine loop runs on the leader's main thread, the only one that talks MPI
 * (MPI_THREAD_FUNNELED); the HTTP threads only submit requests and read their text.
 * Scheduling (continuous batching): up to the engine's slot count (--max-running)
 * requests run at once, each with its KV resident in its own slot on every rank; every
 * round verifies all of them in one batched verification (spec_leader_step), and
 * waiting requests join, in arrival order, between rounds as slots free up. A request
 * ends in the round that finishes it (stop token, length, stop string, client gone) and
 * frees its slot after it. Every forward computes each row the same whatever the rows
 * beside it (CPU; GPU up to 80 rows, and the engine's forwards carry at most
 * SPEC_FORWARD_TOKENS), so a greedy answer equals the same request run alone, and
 * seeded draws are keyed by position, so a seeded answer does not depend on the load
 * either. */
#ifndef AUGUR_SERVE_SCHEDULER_H
#define AUGUR_SERVE_SCHEDULER_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>

#include "runtime/serve/metrics.h"
#include "runtime/serve/serve_request.h"
#include "runtime/spec/spec_engine.h"

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    serve_request **items;   /* ring of waiting requests */
    int cap, head, n;
    int running;
    int max_waiting;         /* waiting requests (all slots busy): more are refused (503) */
    long kv_used;            /* KV positions the running requests hold (gauge) */
    long kv_blocks;          /* blocks of the leader's KV pool in use (gauge) */
    bool draining;           /* SIGTERM: refuse new requests, finish the admitted ones */
    serve_metrics *metrics;
} serve_queue;

typedef enum { QUEUE_ADMITTED, QUEUE_FULL, QUEUE_DRAINING } queue_verdict;

augur_status serve_queue_init(serve_queue *q, int max_waiting, serve_metrics *metrics, augur_error *err);
void serve_queue_free(serve_queue *q);
/* Takes a reference on r when admitted. */
queue_verdict serve_queue_submit(serve_queue *q, serve_request *r);
void serve_queue_drain(serve_queue *q);
bool serve_queue_draining(serve_queue *q);

typedef struct {
    spec_engine *e;
    const tokenizer *tok;
    serve_queue *q;
    serve_metrics *metrics;
    draft_rule rule;
    bool overlap;
    bool overlap_shared_gpu; /* --overlap: ... even where the draft shares a GPU */
    volatile sig_atomic_t *term;  /* set by SIGTERM: drain, then return */
    const char *hold_file;   /* tests: no request starts while this file exists (or NULL) */
    uint64_t next_request_id; /* the last engine request id given out */
    float synthetic_acceptance; /* >= 0: greedy requests' verdicts are this coin (dummy weights) */
} serve_engine;

/* Serves requests until a drain finishes (every admitted request answered). A failure
 * of the engine (a rank gone, a protocol error) is returned: the job must end. */
augur_status serve_engine_run(serve_engine *se, augur_error *err);

#endif
