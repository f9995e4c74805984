/* What the replicas of a job (augur generate --replicas R) bring back to job rank 0:
 * each leader collects its requests' output (exactly the bytes a one-replica run would
 * print for them) and its stats; job rank 0 gathers them all, prints the outputs in
 * request order, then per-replica and total figures. */
#ifndef AUGUR_REPLICA_REPORT_H
#define AUGUR_REPLICA_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "comm/layout.h"
#include "runtime/spec/spec_engine.h"

typedef struct {
    int64_t request;         /* global request index: prompt · repeat + r (the print order) */
    char *bytes;
    size_t len;
} replica_output;

typedef struct {
    spec_stats main, base;   /* base: the --compare-baseline run (zero without one) */
    double wall_ms;          /* first request's start to the last one's end */
    int requests;
    bool have_base;
    replica_output *outputs;
    int n_outputs;
    /* the output being written (one request's) */
    char *cur;
    size_t cur_len, cur_cap;
} replica_report;

/* The text sink of a request whose output is kept rather than printed (user: the report). */
void replica_report_write(void *user, const char *text, size_t len);
/* Appends printf-style text to the current output. */
void replica_report_printf(replica_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Closes the current output as request `request`. */
augur_status replica_report_end_output(replica_report *r, int64_t request, augur_error *err);
void replica_report_free(replica_report *r);

/* The whole job's figures (job rank 0, after replica_report_gather). */
typedef struct {
    int replicas, requests;
    int ranks;               /* the job's, all replicas */
    int generated;           /* tokens, all replicas */
    double wall_ms;          /* the slowest replica's wall time */
    double tokens_per_s;     /* generated over wall_ms */
    double base_tokens_per_s; /* the baselines', 0 without --compare-baseline */
    double acceptance;       /* accepted over proposed, all replicas */
} replica_totals;

/* Collective over layout->job, on every rank (r is NULL except on a replica leader):
 * gathers to job rank 0, which prints the outputs to stdout in request order and the
 * figures to stderr with labels main_label / "baseline (target-only)", and fills totals
 * (may be NULL). */
augur_status replica_report_gather(const comm_layout *layout, const replica_report *r, const char *main_label,
                                   replica_totals *totals, augur_error *err);

#endif
