/* Trace replay (runtime/simulate.h) on small hand-made traces whose results are worked
 * out by hand in the comments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/trace_stream.h"
#include "runtime/spec/simulate.h"
#include "test_util.h"

#define MAX_RECS 64

typedef struct {
    wire_trace_record r[MAX_RECS];
    size_t n;
} recs;

/* Appends one recorded round: pattern has 'A' (accepted) or 'R' (rejected) per record,
 * from position start; draft_len is what the recorded run proposed that round. */
static void add_round(recs *t, uint64_t request, uint32_t round, uint32_t start, const char *pattern,
                      uint32_t draft_len, float draft_ms, float target_ms)
{
    for (uint32_t i = 0; pattern[i]; i++) {
        assert_true(t->n < MAX_RECS);
        t->r[t->n++] = (wire_trace_record){
            .request_id = request, .position = start + i, .round = round, .draft_entropy = 0.5f,
            .target_entropy = 0.25f, .accepted = pattern[i] == 'A', .draft_ms = draft_ms, .target_ms = target_ms,
            .index_in_round = i, .draft_len_in_round = draft_len,
        };
    }
}

static void set_entropy(recs *t, uint64_t request, uint32_t position, float h)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->r[i].request_id == request && t->r[i].position == position)
            t->r[i].draft_entropy = h;
}

/* Recorded with fixed γ = 4, request 7:
 *   round 1 at 10: A A R        -> next round at 13
 *   round 2 at 13: A A A A      -> bonus token at 17, no record; next round at 18
 *   round 3 at 18: R            -> next round at 19
 *   round 4 at 19: A R          -> the request ends at 19 + 4 = 23 (the last proposal)
 * 4 rounds, 16 proposed, 7 accepted, 11 tokens (positions 10..20). */
static void gamma4_trace(recs *t)
{
    t->n = 0;
    add_round(t, 7, 1, 10, "AAR", 4, 2.0f, 10.0f);
    add_round(t, 7, 2, 13, "AAAA", 4, 1.0f, 20.0f);
    add_round(t, 7, 3, 18, "R", 4, 1.0f, 30.0f);
    add_round(t, 7, 4, 19, "AR", 4, 2.0f, 40.0f);
}

static void build(sim_trace *st, const recs *t)
{
    augur_error err = {0};
    assert_int_equal(sim_trace_from_records(st, t->r, t->n, "test", &err), AUGUR_OK);
}

static sim_result run(const sim_trace *st, draft_rule rule, double td, double tt)
{
    augur_error err = {0};
    sim_result res;
    sim_cost cost = {td, tt, 0};
    assert_int_equal(sim_run(st, &rule, &cost, &res, &err), AUGUR_OK);
    return res;
}

static void test_stats(void **state)
{
    (void)state;
    recs t;
    gamma4_trace(&t);
    sim_trace st;
    build(&st, &t);
    const sim_trace_stats *s = &st.stats;
    assert_int_equal(s->records, 10);
    assert_int_equal(s->requests, 1);
    assert_int_equal(s->rounds, 4);
    assert_int_equal(s->proposed, 16);
    assert_int_equal(s->accepted, 7);
    assert_int_equal(s->rejected, 3);
    assert_int_equal(s->max_draft_len, 4);
    /* draft: (2·4 + 1·4 + 1·4 + 2·4) / 16 ms per token; target: (10+20+30+40)/4 per round */
    assert_true(fabs(s->draft_ms - 1.5) < 1e-9);
    assert_true(fabs(s->target_ms - 25.0) < 1e-9);
    assert_int_equal(st.n_requests, 1);
    assert_int_equal(st.requests[0].end, 23);
    sim_trace_free(&st);
}

/* Replays t with rule at t_d = 1 ms, t_t = 10 ms. */
static sim_result replay(const recs *t, draft_rule rule)
{
    sim_trace st;
    build(&st, t);
    sim_result r = run(&st, rule, 1.0, 10.0);
    sim_trace_free(&st);
    return r;
}

static sim_result replay_gamma4(draft_rule rule)
{
    recs t;
    gamma4_trace(&t);
    return replay(&t, rule);
}

static void expect_counts(const sim_result *r, uint64_t rounds, uint64_t proposed, uint64_t accepted, uint64_t tokens)
{
    assert_int_equal(r->rounds, rounds);
    assert_int_equal(r->proposed, proposed);
    assert_int_equal(r->accepted, accepted);
    assert_int_equal(r->tokens, tokens);
}

static draft_rule fixed(int gamma)
{
    return (draft_rule){.kind = DRAFT_RULE_FIXED, .gamma = gamma};
}

/* The recording's own rule reproduces it: rounds at 10, 13, 18, 19 with k = 4 each
 * (past a rejection fixed γ needs no record), a = 2, 4, 0, 1. */
static void test_fixed_same_gamma_is_exact(void **state)
{
    (void)state;
    sim_result r = replay_gamma4(fixed(4));
    expect_counts(&r, 4, 16, 7, 11);
    assert_int_equal(r.cut, 0);
    assert_int_equal(r.skipped, 0);
}

/* γ = 2: 10 [A A] +12 -> 13 [A A] +15 -> 16 [A, 17 unrecorded: cut] +17 -> 18 [R .] ->
 * 19 [A R] -> 21, past the records. k = 2,2,1,2,2; a = 2,2,1,0,1; tokens 3,3,2,1,2.
 * With t_d = 1, t_t = 10: cost 9·1 + 5·10 = 59 ms for 11 tokens. */
static void test_fixed_gamma2_and_cost(void **state)
{
    (void)state;
    sim_result r = replay_gamma4(fixed(2));
    expect_counts(&r, 5, 9, 6, 11);
    assert_int_equal(r.cut, 1);
    assert_int_equal(r.skipped, 0);
    assert_true(fabs(r.cost_ms - 59.0) < 1e-9);
    assert_true(fabs(r.ms_per_token - 59.0 / 11.0) < 1e-9);
    assert_true(fabs(r.speedup - 110.0 / 59.0) < 1e-9);
    assert_true(fabs(r.tokens_per_round - 11.0 / 5.0) < 1e-9);
    assert_true(fabs(r.acceptance - 6.0 / 9.0) < 1e-9);
}

/* γ = 3 lands on the bonus position: 10 [A A R] -> 13 [A A A] +16 -> 17 has no record:
 * skipped -> 18 [R . .] -> 19 [A R .] -> 21. k = 3·4, a = 2,3,0,1, tokens 3,4,1,2. */
static void test_bonus_gap_skipped(void **state)
{
    (void)state;
    sim_result r = replay_gamma4(fixed(3));
    expect_counts(&r, 4, 12, 6, 10);
    assert_int_equal(r.skipped, 1);
    assert_int_equal(r.cut, 0);
}

/* Static τ = 2.5, num_k = 4, entropy 3 at position 11 (else 0.5): 10 [A, A fires] +12 ->
 * 13 [A A A A] +17 -> 18 [R A R, 21 unrecorded: an entropy rule cannot go on, cut] ->
 * 19 [A R, 21: cut] -> 21. k = 2,4,3,2; a = 2,4,0,1; tokens 3,5,1,2. */
static void test_static_stops_on_high_entropy(void **state)
{
    (void)state;
    recs t;
    gamma4_trace(&t);
    set_entropy(&t, 7, 11, 3.0f);
    sim_result r = replay(&t, (draft_rule){.kind = DRAFT_RULE_STATIC, .gamma = 4, .tau = 2.5f});
    expect_counts(&r, 4, 11, 7, 11);
    assert_int_equal(r.cut, 2);
    /* With the threshold above every entropy it drafts like fixed γ = 4 until records end. */
    sim_result hi = replay(&t, (draft_rule){.kind = DRAFT_RULE_STATIC, .gamma = 4, .tau = 5.0f});
    assert_int_equal(hi.rounds, 4);
    assert_int_equal(hi.accepted, 7);
    assert_int_equal(hi.proposed, 4 + 4 + 3 + 2);
}

/* Recorded with γ = 8, request 3: round at 0: 8×A (bonus at 8); at 9: A A A R; at 13:
 * A R (end 13 + 8 = 21). Heuristic from γ = 4, which is also its cap:
 *   p=0  k=4 a=4 (+2 -> 6, capped at 4)  tokens 5
 *   p=5  5 A, 6 A, 7 A, 8 unrecorded: cut, k=3 a=3 (-> 4)  tokens 4
 *   p=9  9 A 10 A 11 A 12 R, k=4 a=3 (-1 -> 3)  tokens 4
 *   p=13 13 A 14 R 15 (past the rejection, no record needed) k=3 a=1 (-> 2)  tokens 2
 *   p=15 past the records. */
static void test_heuristic_grows(void **state)
{
    (void)state;
    recs t = {.n = 0};
    add_round(&t, 3, 1, 0, "AAAAAAAA", 8, 1.0f, 10.0f);
    add_round(&t, 3, 2, 9, "AAAR", 8, 1.0f, 10.0f);
    add_round(&t, 3, 3, 13, "AR", 8, 1.0f, 10.0f);
    sim_result r = replay(&t, (draft_rule){.kind = DRAFT_RULE_HEURISTIC, .gamma = 4});
    expect_counts(&r, 4, 4 + 3 + 4 + 3, 4 + 3 + 3 + 1, 5 + 4 + 4 + 2);
    assert_int_equal(r.cut, 1);
    /* Fixed γ = 8 is the recording itself. */
    sim_result f = replay(&t, fixed(8));
    expect_counts(&f, 3, 24, 8 + 3 + 1, 9 + 4 + 2);
    assert_int_equal(f.cut + f.skipped, 0);
}

/* Verification cost as a function of the positions verified. Request 1, rounds with
 * target_ms = 10 + 2·(n − 1) exactly for n = k + 1 verified positions:
 *   at 0: A R (k=2, 14 ms); at 2: A A A R (k=4, 18 ms); at 6: R (k=1, 12 ms); end 7.
 * The fit recovers t_t(1) = 10 and 2 ms per extra position. Fixed γ = 2, t_d = 1:
 *   p=0 0 A 1 R      k=2 a=1  2 + t_t(3)=14 -> 16  tokens 2
 *   p=2 2 A 3 A      k=2 a=2  16               tokens 3
 *   p=5 5 R 6 R      k=2 a=0  16               tokens 1
 *   p=6 room 1: 6 R  k=1 a=0  1 + t_t(2)=12 -> 13  tokens 1
 * 61 ms for 7 tokens against 10 ms a token target-only: speedup 70/61. */
static void test_cost_by_width(void **state)
{
    (void)state;
    recs t = {.n = 0};
    add_round(&t, 1, 1, 0, "AR", 2, 1.0f, 14.0f);
    add_round(&t, 1, 2, 2, "AAAR", 4, 1.0f, 18.0f);
    add_round(&t, 1, 3, 6, "R", 1, 1.0f, 12.0f);
    sim_trace st;
    build(&st, &t);
    augur_error err = {0};
    sim_cost cost = {.td_ms = 1.0};
    int widths = 0;
    assert_int_equal(sim_fit_target_cost(&st, 0, &cost, &widths, &err), AUGUR_OK);
    assert_int_equal(widths, 3);
    assert_float_equal(cost.tt_ms, 10.0, 1e-9);
    assert_float_equal(cost.tt_per_position_ms, 2.0, 1e-9);
    assert_float_equal(sim_cost_verify_ms(&cost, 6), 20.0, 1e-9);
    draft_rule rule = {.kind = DRAFT_RULE_FIXED, .gamma = 2};
    sim_result r;
    assert_int_equal(sim_run(&st, &rule, &cost, &r, &err), AUGUR_OK);
    assert_int_equal(r.rounds, 4);
    assert_int_equal(r.tokens, 7);
    assert_float_equal(r.cost_ms, 61.0, 1e-9);
    assert_float_equal(r.speedup, 70.0 / 61.0, 1e-12);

    /* Anchored at a measured one-position step of 8 ms: the slope alone is fitted,
     * Σx(y − 8) / Σx² = (2·6 + 4·10 + 1·4) / (4 + 16 + 1) = 56/21. */
    assert_int_equal(sim_fit_target_cost(&st, 8.0, &cost, &widths, &err), AUGUR_OK);
    assert_float_equal(cost.tt_ms, 8.0, 0.0);
    assert_float_equal(cost.tt_per_position_ms, 56.0 / 21.0, 1e-12);
    sim_trace_free(&st);

    /* One width only (every round proposed 4): t_t(1) cannot be fitted without an anchor;
     * with one, the line runs through it and the rounds' mean (25 ms at n = 5). */
    gamma4_trace(&t);
    build(&st, &t);
    assert_int_equal(sim_fit_target_cost(&st, 0, &cost, &widths, &err), AUGUR_E_INPUT);
    assert_int_equal(widths, 1);
    assert_non_null(strstr(err.message, "verified 5 positions"));
    assert_int_equal(sim_fit_target_cost(&st, 5.0, &cost, &widths, &err), AUGUR_OK);
    assert_float_equal(cost.tt_ms, 5.0, 0.0);
    assert_float_equal(cost.tt_per_position_ms, 5.0, 1e-12);
    sim_trace_free(&st);

    /* Seven rounds of width 5 and one of width 2 (a fixed-γ run's short last round): too
     * few off the commonest width to fit a slope, so it counts as one width. */
    t.n = 0;
    for (uint32_t k = 0; k < 7; k++)
        add_round(&t, 2, k + 1, 5 * k, "AAAAR" + 1, 4, 1.0f, 20.0f + (float)k);
    add_round(&t, 2, 8, 35, "R", 1, 1.0f, 9.0f);
    build(&st, &t);
    assert_int_equal(sim_fit_target_cost(&st, 0, &cost, &widths, &err), AUGUR_E_INPUT);
    assert_int_equal(widths, 1);
    assert_non_null(strstr(err.message, "verified 5 positions"));
    sim_trace_free(&st);
}

static void test_end_of_request(void **state)
{
    (void)state;
    recs t = {.n = 0};
    add_round(&t, 1, 1, 5, "AR", 4, 1.0f, 10.0f);
    add_round(&t, 1, 2, 7, "AA", 2, 1.0f, 10.0f);
    sim_result r = replay(&t, fixed(4));
    expect_counts(&r, 2, 6, 3, 4); /* tokens: positions 5..8 */
}

/* Requests replay independently and add up; records may come in any order. */
static void test_requests_and_order(void **state)
{
    (void)state;
    recs t;
    gamma4_trace(&t);
    recs u = {.n = 0};
    add_round(&u, 2, 1, 0, "AR", 4, 1.0f, 10.0f);
    add_round(&u, 2, 2, 2, "AR", 2, 1.0f, 10.0f);
    for (size_t i = 0; i < u.n; i++)
        t.r[t.n++] = u.r[i];
    /* reverse them */
    for (size_t i = 0; i < t.n / 2; i++) {
        wire_trace_record x = t.r[i];
        t.r[i] = t.r[t.n - 1 - i];
        t.r[t.n - 1 - i] = x;
    }
    sim_trace st;
    build(&st, &t);
    assert_int_equal(st.n_requests, 2);
    assert_int_equal(st.requests[0].request_id, 2);
    assert_int_equal(st.requests[0].end, 4);
    /* request 2 at γ = 4: 0 [A R . .] k=4 capped by the end (4) -> 2 [A R] k=2 -> 4 */
    sim_result r = run(&st, fixed(4), 1.0, 10.0);
    expect_counts(&r, 4 + 2, 16 + 4 + 2, 7 + 2, 11 + 4);
    sim_trace_free(&st);
}

static void test_bad_traces(void **state)
{
    (void)state;
    augur_error err = {0};
    sim_trace st;
    recs t;
    gamma4_trace(&t);
    t.r[1].position = 10; /* two records at 10 */
    test_expect_status(sim_trace_from_records(&st, t.r, t.n, "dup.bin", &err), &err, AUGUR_E_FORMAT,
                       "dup.bin: request 7 has two records at position 10", NULL);
    gamma4_trace(&t);
    t.r[2].index_in_round = 4;
    test_expect_status(sim_trace_from_records(&st, t.r, t.n, "idx.bin", &err), &err, AUGUR_E_FORMAT, "idx.bin",
                       "index_in_round 4");

    test_expect_status(sim_trace_load(&st, "/nonexistent/t.bin", &err), &err, AUGUR_E_IO, "/nonexistent/t.bin", NULL);
    FILE *f = tmpfile();
    assert_non_null(f);
    fputs("this is not a zstd stream at all", f);
    rewind(f);
    test_expect_status(sim_trace_read(&st, f, "garbage.bin", &err), &err, AUGUR_E_FORMAT, "garbage.bin", NULL);
    fclose(f);

    /* An empty trace loads but does not replay. */
    assert_int_equal(sim_trace_from_records(&st, t.r, 0, "empty", &err), AUGUR_OK);
    sim_result r;
    sim_cost cost = {1, 10, 0};
    draft_rule rule = {.kind = DRAFT_RULE_FIXED, .gamma = 2};
    assert_int_equal(sim_run(&st, &rule, &cost, &r, &err), AUGUR_E_INPUT);
    sim_trace_free(&st);
    /* bad rule and cost */
    gamma4_trace(&t);
    build(&st, &t);
    rule.gamma = 0;
    assert_int_equal(sim_run(&st, &rule, &cost, &r, &err), AUGUR_E_INPUT);
    assert_non_null(strstr(err.message, "--gamma"));
    rule.gamma = 2;
    cost.tt_ms = 0;
    assert_int_equal(sim_run(&st, &rule, &cost, &r, &err), AUGUR_E_INPUT);
    sim_trace_free(&st);
}

/* Written with the trace writer and read back from the stream. */
static void test_stream_round_trip(void **state)
{
    (void)state;
    recs t;
    gamma4_trace(&t);
    augur_error err = {0};
    FILE *f = tmpfile();
    assert_non_null(f);
    trace_writer *w;
    assert_int_equal(trace_writer_open(&w, f, "rt.bin", 0, &err), AUGUR_OK);
    for (size_t i = 0; i < t.n; i++)
        assert_int_equal(trace_writer_append(w, &t.r[i], &err), AUGUR_OK);
    assert_int_equal(trace_writer_close(w, &err), AUGUR_OK);
    rewind(f);
    sim_trace st;
    assert_int_equal(sim_trace_read(&st, f, "rt.bin", &err), AUGUR_OK);
    fclose(f);
    assert_int_equal(st.n_records, t.n);
    assert_int_equal(st.stats.rounds, 4);
    sim_result r = run(&st, fixed(2), 1.0, 10.0);
    assert_int_equal(r.tokens, 11);
    assert_int_equal(r.rounds, 5);
    sim_trace_free(&st);
}

static void test_grid(void **state)
{
    (void)state;
    augur_error err = {0};
    draft_rule *rules = NULL;
    size_t n = 0;
    sim_grid none = {0};
    assert_int_equal(sim_grid_expand(DRAFT_RULE_FIXED, &none, &rules, &n, &err), AUGUR_OK);
    assert_int_equal(n, 8);
    assert_int_equal(rules[7].gamma, 8);
    assert_int_equal(sim_grid_expand(DRAFT_RULE_STATIC, &none, &rules, &n, &err), AUGUR_OK);
    assert_int_equal(n, 8 + 8);
    assert_int_equal(rules[8].gamma, 8);
    assert_true(rules[8].tau == 0.5f && rules[15].tau == 4.0f);
    assert_int_equal(sim_grid_expand(DRAFT_RULE_MOVING_AVERAGE, &none, &rules, &n, &err), AUGUR_OK);
    assert_int_equal(n, 16 + 9 * 5);
    assert_int_equal(sim_grid_expand(DRAFT_RULE_CUMULATIVE, &none, &rules, &n, &err), AUGUR_OK);
    assert_int_equal(n, 61 + 15 * 7);
    free(rules);

    int gammas[] = {2, 4};
    float taus[] = {1.0f, 2.0f, 3.0f};
    int windows[] = {3};
    sim_grid g = {.gamma = gammas, .n_gamma = 2, .tau = taus, .n_tau = 3, .window = windows, .n_window = 1};
    rules = NULL;
    n = 0;
    assert_int_equal(sim_grid_expand(DRAFT_RULE_CUMULATIVE, &g, &rules, &n, &err), AUGUR_OK);
    assert_int_equal(n, 6);
    assert_int_equal(rules[5].gamma, 4);
    assert_true(rules[5].tau == 3.0f);
    assert_int_equal(rules[5].window, 3);
    int bad[] = {0};
    g.gamma = bad;
    g.n_gamma = 1;
    assert_int_equal(sim_grid_expand(DRAFT_RULE_FIXED, &g, &rules, &n, &err), AUGUR_E_INPUT);
    free(rules);
}

static void test_sort(void **state)
{
    (void)state;
    sim_result r[4] = {{.ms_per_token = 3, .tokens = 1}, {.ms_per_token = 1, .tokens = 2},
                       {.ms_per_token = 3, .tokens = 3}, {.ms_per_token = 2, .tokens = 4}};
    sim_results_sort(r, 4);
    assert_int_equal(r[0].tokens, 2);
    assert_int_equal(r[1].tokens, 4);
    assert_int_equal(r[2].tokens, 1); /* ties keep their order */
    assert_int_equal(r[3].tokens, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_fixed_same_gamma_is_exact),
        cmocka_unit_test(test_fixed_gamma2_and_cost),
        cmocka_unit_test(test_bonus_gap_skipped),
        cmocka_unit_test(test_static_stops_on_high_entropy),
        cmocka_unit_test(test_heuristic_grows),
        cmocka_unit_test(test_cost_by_width),
        cmocka_unit_test(test_end_of_request),
        cmocka_unit_test(test_requests_and_order),
        cmocka_unit_test(test_bad_traces),
        cmocka_unit_test(test_stream_round_trip),
        cmocka_unit_test(test_grid),
        cmocka_unit_test(test_sort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
