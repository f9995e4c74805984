/* Counters, gauges and histograms of the server, rendered as Prometheus text. */
#include "runtime/serve/metrics.h"

#include "base/text_buf.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds in seconds: from a fast CPU round (ms) to a long request (minutes). */
static const double bucket_le[METRICS_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                  0.25,  0.5,    1,     2.5,  5,     10,   60};

static const char *outcome_names[OUTCOME_COUNT] = {
    [OUTCOME_SUCCESS] = "success",   [OUTCOME_CANCELLED] = "cancelled", [OUTCOME_INVALID] = "invalid",
    [OUTCOME_TOO_LARGE] = "too_large", [OUTCOME_REJECTED] = "rejected", [OUTCOME_ERROR] = "error",
};

void metrics_init(serve_metrics *m, long kv_capacity, long kv_blocks_capacity)
{
    *m = (serve_metrics){.kv_capacity = kv_capacity, .kv_blocks_capacity = kv_blocks_capacity};
    pthread_mutex_init(&m->mu, NULL);
}

void metrics_free(serve_metrics *m)
{
    pthread_mutex_destroy(&m->mu);
}

void metrics_outcome(serve_metrics *m, request_outcome o)
{
    pthread_mutex_lock(&m->mu);
    m->requests[o]++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_observe(serve_metrics *m, histogram *h, double seconds, uint64_t times)
{
    int b = 0;
    while (b < METRICS_BUCKETS && seconds > bucket_le[b])
        b++;
    pthread_mutex_lock(&m->mu);
    h->counts[b] += times;
    h->count += times;
    h->sum += seconds * (double)times;
    pthread_mutex_unlock(&m->mu);
}

void metrics_tokens(serve_metrics *m, int prompt, int completion, int rounds, int proposed, int accepted,
                    int spec_completion)
{
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += (uint64_t)prompt;
    m->completion_tokens += (uint64_t)completion;
    m->rounds += (uint64_t)rounds;
    m->proposed += (uint64_t)proposed;
    m->accepted += (uint64_t)accepted;
    m->spec_completion_tokens += (uint64_t)spec_completion;
    pthread_mutex_unlock(&m->mu);
}

void metrics_gauges(serve_metrics *m, int queue_depth, int running, long kv_used, long kv_blocks_used)
{
    pthread_mutex_lock(&m->mu);
    m->queue_depth = queue_depth;
    m->running = running;
    m->kv_used = kv_used;
    m->kv_blocks_used = kv_blocks_used;
    pthread_mutex_unlock(&m->mu);
}

static void render_histogram(text_buf *b, const char *name, const char *help, const histogram *h)
{
    text_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < METRICS_BUCKETS; i++) {
        cum += h->counts[i];
        text_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_le[i], (unsigned long long)cum);
    }
    cum += h->counts[METRICS_BUCKETS];
    text_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)cum, name, h->sum,
        name, (unsigned long long)h->count);
}

static void render_scalar(text_buf *b, const char *name, const char *type, const char *help, double v)
{
    text_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

char *metrics_render(serve_metrics *m)
{
    text_buf b = {0};
    pthread_mutex_lock(&m->mu);
    text_buf_printf(&b, "# HELP augur_requests_total Requests answered, by outcome.\n# TYPE augur_requests_total counter\n");
    for (int o = 0; o < OUTCOME_COUNT; o++)
        text_buf_printf(&b, "augur_requests_total{outcome=\"%s\"} %llu\n", outcome_names[o], (unsigned long long)m->requests[o]);
    render_scalar(&b, "augur_prompt_tokens_total", "counter", "Prompt tokens of finished requests.",
                  (double)m->prompt_tokens);
    render_scalar(&b, "augur_completion_tokens_total", "counter", "Generated tokens of finished requests.",
                  (double)m->completion_tokens);
    render_scalar(&b, "augur_spec_rounds_total", "counter", "Verification rounds of speculative requests.",
                  (double)m->rounds);
    render_scalar(&b, "augur_spec_proposed_tokens_total", "counter", "Draft tokens proposed.", (double)m->proposed);
    render_scalar(&b, "augur_spec_accepted_tokens_total", "counter", "Draft tokens accepted by the target.",
                  (double)m->accepted);
    render_scalar(&b, "augur_spec_acceptance_rate", "gauge", "Accepted over proposed draft tokens, since start.",
                  m->proposed ? (double)m->accepted / (double)m->proposed : 0.0);
    render_scalar(&b, "augur_spec_tokens_per_round", "gauge",
                  "Generated tokens per verification round of speculative requests, since start.",
                  m->rounds ? (double)m->spec_completion_tokens / (double)m->rounds : 0.0);
    render_scalar(&b, "augur_queue_depth", "gauge", "Requests admitted and waiting to run.", m->queue_depth);
    render_scalar(&b, "augur_requests_running", "gauge", "Requests being generated.", m->running);
    render_scalar(&b, "augur_kv_positions_used", "gauge", "KV-cache positions held by running requests.",
                  (double)m->kv_used);
    render_scalar(&b, "augur_kv_positions_capacity", "gauge", "KV-cache positions of each rank.",
                  (double)m->kv_capacity);
    render_scalar(&b, "augur_kv_blocks_used", "gauge",
                  "Blocks of 16 positions of the leader's paged KV pool in use (0: one request, no pool).",
                  (double)m->kv_blocks_used);
    render_scalar(&b, "augur_kv_blocks_capacity", "gauge", "Blocks of the leader's paged KV pool.",
                  (double)m->kv_blocks_capacity);
    render_histogram(&b, "augur_time_to_first_token_seconds", "From admission to the first generated token.",
                     &m->ttft);
    render_histogram(&b, "augur_inter_token_latency_seconds",
                     "Per generated token after the first: the gap since the previous round over the tokens the "
                     "round produced.",
                     &m->itl);
    render_histogram(&b, "augur_request_duration_seconds", "From admission to the last token.", &m->e2e);
    pthread_mutex_unlock(&m->mu);
    return text_buf_take(&b);
}
