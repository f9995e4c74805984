/* What `augur serve` counts, and its Prometheus text exposition (GET /metrics).
 * One mutex guards everything: the HTTP threads and the engine thread each touch it a
 * few times per request or round. */
#ifndef AUGUR_SERVE_METRICS_H
#define AUGUR_SERVE_METRICS_H

#include <pthread.h>
#include <stdint.h>

typedef enum {
    OUTCOME_SUCCESS,         /* answered 200 with a completion */
    OUTCOME_CANCELLED,       /* the client went away before the end */
    OUTCOME_INVALID,         /* 4xx: malformed or out of range, unknown model or path */
    OUTCOME_TOO_LARGE,       /* 413 */
    OUTCOME_REJECTED,        /* 503: queue full or draining */
    OUTCOME_ERROR,           /* 5xx from a failure of ours */
    OUTCOME_COUNT,
} request_outcome;

#define METRICS_BUCKETS 14

typedef struct {
    uint64_t counts[METRICS_BUCKETS + 1]; /* per bucket (not cumulative); the last is +Inf */
    double sum;
    uint64_t count;
} histogram;

typedef struct {
    pthread_mutex_t mu;
    uint64_t requests[OUTCOME_COUNT];
    uint64_t prompt_tokens, completion_tokens;
    uint64_t rounds, proposed, accepted, spec_completion_tokens;
    int queue_depth;         /* admitted, not yet running */
    int running;
    long kv_used;            /* KV positions held by running requests (each target rank) */
    long kv_capacity;
    long kv_blocks_used;     /* blocks of the leader's paged KV pool in use (0 without a pool) */
    long kv_blocks_capacity;
    histogram ttft, itl, e2e; /* seconds */
} serve_metrics;

void metrics_init(serve_metrics *m, long kv_capacity, long kv_blocks_capacity);
void metrics_free(serve_metrics *m);

void metrics_outcome(serve_metrics *m, request_outcome o);
void metrics_observe(serve_metrics *m, histogram *h, double seconds, uint64_t times);
/* A finished request's tokens and speculation counts. */
void metrics_tokens(serve_metrics *m, int prompt, int completion, int rounds, int proposed, int accepted,
                    int spec_completion);
void metrics_gauges(serve_metrics *m, int queue_depth, int running, long kv_used, long kv_blocks_used);

/* The Prometheus text format, malloc'ed; NULL when out of memory. */
char *metrics_render(serve_metrics *m);

#endif
