/* Trace replay: estimates what a draft-length rule would have achieved on a recorded
 * speculative run, without running any model (the thesis's method, DESIGN §1, §2).
 *
 * A trace (`augur generate --trace`) holds one record per proposed token up to and
 * including the first rejected one of each round. Every position is drafted in exactly
 * one round, from the true prefix (all earlier tokens of the round were accepted), so a
 * request's records give, per position, at most one draft token's entropy and whether the
 * target accepted it. Replaying a rule walks those positions as speculation would:
 *
 *   p = the request's first recorded position
 *   round: k_max = begin_round; propose positions p, p+1, ... calling stop_after on each
 *          recorded draft entropy, until k_max, the rule fires, or the request's end;
 *          a = consecutive accepted records from p (at most k); end_round(a, k);
 *          the round yields a+1 tokens and costs k·t_d + t_t(k+1); p += a+1.
 *
 * What the records cannot say, and how the replay treats it (counted in sim_result.cut
 * and .skipped so that a result shows how much it leaned on approximations):
 *  - A position with no record is a bonus position of the recorded run (a round whose
 *    k tokens were all accepted ended with the target's own token there). Reaching one
 *    while every token so far was accepted ends the proposal there (the target supplies
 *    that token, as it did when recording); a round starting on one skips it (the
 *    position counts neither as a token nor as a round).
 *  - Past the first rejection of a simulated round, drafted tokens cannot change the
 *    accepted count, only k. Fixed and heuristic k does not depend on entropies, so it is
 *    exact there. Entropy rules read the recorded entropy at those positions, which was
 *    measured on the true prefix rather than the rejected one: an approximation of k;
 *    where that position has no record, the proposal ends.
 *  - A request ends where its furthest recorded proposal ended (round start +
 *    draft_len_in_round): the real draft never proposes past the request's remaining
 *    tokens, so that is the --max-tokens limit whenever the last round was cut by it.
 *    Proposals are capped at that end and the last round yields at most end − p tokens,
 *    as in the leader. A stop token, or a last round fully accepted without hitting the
 *    limit, is not visible in the trace: the replay's count can differ by a token there.
 * Consequence: replaying the rule a trace was recorded with (fixed γ, or the heuristic
 * with the same initial γ) reproduces its rounds, proposed and accepted counts exactly;
 * replaying fixed γ below the recorded γ meets bonus positions (cut, skipped); above it,
 * every fully accepted recorded round cuts the replay's proposal short. */
#ifndef AUGUR_SIMULATE_H
#define AUGUR_SIMULATE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/wire.h"
#include "runtime/spec/draft_rules.h"
#include "base/error.h"

/* Whole-trace figures (augur trace's summary, and the default cost model). */
typedef struct {
    uint64_t records, requests, rounds;
    uint64_t proposed;               /* Σ draft_len_in_round over rounds, as generate reports it */
    uint64_t accepted, rejected;     /* records */
    double draft_entropy_accepted, draft_entropy_rejected;   /* means, nats (0 when none) */
    double target_entropy_accepted, target_entropy_rejected;
    double draft_ms;                 /* per drafted token, mean over all proposed tokens */
    double target_ms;                /* per round (verify forward), mean over rounds */
    uint32_t max_draft_len;          /* longest proposal recorded */
} sim_trace_stats;

/* One request's records: records[first .. first+count), ascending positions. */
typedef struct {
    uint64_t request_id;
    size_t first, count;
    uint32_t end;                    /* position just past the furthest recorded proposal */
} sim_request;

/* A trace ready to replay: records sorted by (request, position), one per position. */
typedef struct {
    wire_trace_record *records;
    size_t n_records;
    sim_request *requests;
    size_t n_requests;
    sim_trace_stats stats;
} sim_trace;

/* Builds a trace from records in any order (copied). name labels error messages. A
 * second record at the same (request, position), or an index_in_round not below
 * draft_len_in_round, is a format error. */
augur_status sim_trace_from_records(sim_trace *t, const wire_trace_record *records, size_t n, const char *name,
                                    augur_error *err);
/* Reads a whole trace stream (trace_stream.h) from f. */
augur_status sim_trace_read(sim_trace *t, FILE *f, const char *name, augur_error *err);
/* Opens, reads and closes path. */
augur_status sim_trace_load(sim_trace *t, const char *path, augur_error *err);
void sim_trace_free(sim_trace *t);

/* Cost model c = x_d·t_d + Σ_rounds t_t(n) (DESIGN §1): t_d per drafted token, and a
 * verify forward of n positions (the k drafted tokens and the last accepted one)
 * costs t_t(n) = tt_ms + tt_per_position_ms·(n − 1). Target-only decoding costs
 * t_t(1) = tt_ms a token. A verify forward reads the same weights whatever n, so one
 * shared cost with a cheaper slope per extra row is the shape to fit; charging every
 * round the mean verify time instead overstates the baseline (a recorded γ = 8 run
 * predicted 1.84x where 0.82x was measured). tt_per_position_ms = 0 is the old
 * one-cost model. */
typedef struct {
    double td_ms, tt_ms;
    double tt_per_position_ms;
} sim_cost;

/* Verify cost of n positions under c. */
double sim_cost_verify_ms(const sim_cost *c, int n);

/* Least-squares fit of t_t(n) to the trace's rounds (n = draft_len_in_round + 1, the
 * round's target_ms), into tt_ms and tt_per_position_ms of *c (td_ms untouched).
 * anchor_tt1_ms > 0 fixes t_t(1) at that measured one-position time (a target-only
 * step) and fits the slope alone; otherwise both are fitted, which needs at least two
 * distinct widths holding, off the commonest one, at least a quarter of the rounds.
 * *n_widths receives how many distinct n the trace holds (1 when the rest are too few).
 * A trace of one width with no anchor is an AUGUR_E_INPUT error saying so: its rounds tell
 * nothing about a one-position step, and guessing t_t(1) as their mean is what made
 * the old model wrong. Negative fitted values (noise) are clamped at 0. */
augur_status sim_fit_target_cost(const sim_trace *t, double anchor_tt1_ms, sim_cost *c, int *n_widths,
                                  augur_error *err);

typedef struct {
    draft_rule rule;
    uint64_t tokens, rounds, proposed, accepted;
    uint64_t cut;                    /* proposals ended early for want of a record */
    uint64_t skipped;                /* bonus positions a round started on, passed over */
    double cost_ms;                  /* Σ over rounds of k·t_d + t_t(k + 1) */
    double tokens_per_round, acceptance, ms_per_token;
    double speedup;                  /* t_t(1) / ms_per_token: over target-only decoding */
} sim_result;

/* Replays rule over every request of t (the rule is validated first). */
augur_status sim_run(const sim_trace *t, const draft_rule *rule, const sim_cost *cost, sim_result *out,
                     augur_error *err);

/* Parameter lists of a grid; a list with n == 0 takes the rule's default:
 *   gamma  fixed γ 1..8 / heuristic start and cap 1..8 / num_k 8 for the entropy rules
 *   tau    static 0.5..4 step 0.5, cumulative 2..16 step 1
 *   lambda moving average 0.2..1.0 step 0.1
 *   window moving average 1..5, cumulative 1..7 */
typedef struct {
    const int *gamma;
    size_t n_gamma;
    const float *tau;
    size_t n_tau;
    const float *lambda;
    size_t n_lambda;
    const int *window;
    size_t n_window;
} sim_grid;

/* Appends one rule per combination of kind's parameters to *rules (realloc'ed; *n
 * counts them), each validated. */
augur_status sim_grid_expand(draft_rule_kind kind, const sim_grid *g, draft_rule **rules, size_t *n,
                             augur_error *err);

/* Sorts results by cost per token, cheapest first (ties keep their order). */
void sim_results_sort(sim_result *results, size_t n);

#endif
