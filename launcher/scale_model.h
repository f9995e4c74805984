/* The speculative cost model behind `augur project` (docs/scaling.md):
 *   tokens per round   E(a, g) = (1 - a^(g+1)) / (1 - a)      (g + 1 when a = 1)
 *   round time         R = g * t_draft + t_target(T, g+1) + 2 L * allreduce(T, (g+1) rows) + 2 * msg
 *   all-reduce         lat + 2 (T-1)/T * bytes / bw           (ring over the slowest link)
 *   per replica        latency per token R / E, tokens/s 1000 E / R; replicas add up.
 * Its inputs, a "profile" JSON (measured forward times, link figures, each with its source),
 * are described in docs/scaling.md. */
#ifndef AUGUR_SCALE_MODEL_H
#define AUGUR_SCALE_MODEL_H

#include <stdbool.h>

#include "base/error.h"

#define SCALE_MAX_POINTS 64
#define SCALE_MAX_TP 16

typedef struct {
    double latency_us;
    double bandwidth_gbps;   /* GB/s one way; 0: the bandwidth term is left out */
} scale_link;

/* Target forward time of one shard at T ranks: t(n) = t1 + slope * (n - 1). */
typedef struct {
    int tp;
    double t1_ms, slope_ms;
} scale_shard;

typedef struct {
    char name[128];
    int layers;              /* all-reduces per forward: 2 a layer */
    int hidden;
    int elem_bytes;          /* bytes per hidden element all-reduced (4: fp32) */
    int gpus_per_node;
    double draft_ms;         /* one draft forward (one position) */
    scale_shard shards[SCALE_MAX_TP];
    int n_shards;
    scale_link intra, inter; /* inside a node, between nodes */
    double alpha_measured;   /* < 0: none given */
} scale_profile;

/* Reads a profile; every missing or malformed key is an error naming the file and key. */
augur_status scale_profile_load(scale_profile *p, const char *path, augur_error *err);

/* t_target(T, n): from the profile's shard of T, or for a T it lacks, t1 and slope each
 * fitted as a + b/T over the shards it has (needs two); *extrapolated says which. */
augur_status scale_target_ms(const scale_profile *p, int tp, double n, double *ms, bool *extrapolated,
                             augur_error *err);

double scale_tokens_per_round(double alpha, double gamma);
/* The per-position acceptance a at which E(a, gamma) equals a measured tokens/round (the
 * method of moments: generate's "acceptance", accepted / proposed, also counts the tokens
 * drafted after a round's first rejection, so it is not this a). */
double scale_alpha_from_tokens(double tokens_per_round, double gamma);
double scale_allreduce_ms(const scale_link *l, int tp, double bytes);

typedef struct {
    double round_ms, draft_ms, target_ms, allreduce_ms, msg_ms;
    double tokens_per_round, ms_per_token, tokens_per_s; /* per replica */
    bool extrapolated;
} scale_round;

/* One replica's round with T target ranks over link, gamma proposed tokens (a mean, so
 * possibly fractional) at acceptance alpha; gamma = 0 is target-only decoding. */
augur_status scale_predict(const scale_profile *p, const scale_link *link, int tp, double gamma, double alpha,
                           scale_round *out, augur_error *err);

/* Least squares of ms = calls * lat + bytes / bw over n runs: the link that explains them.
 * When the bytes per call hardly vary (or the fit gives a non-positive bandwidth), the
 * latency alone is fitted (bandwidth 0) and *bw_resolved is false. */
void scale_fit_link(const double *calls, const double *bytes, const double *ms, int n, scale_link *out,
                    bool *bw_resolved);

#endif
