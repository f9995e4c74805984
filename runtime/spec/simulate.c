/* Trace replay of draft-length rules (method and approximations in simulate.h). */
#include "runtime/spec/simulate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "proto/trace_stream.h"

/* ---- loading ---- */

static int record_order(const void *a, const void *b)
{
    const wire_trace_record *x = a, *y = b;
    if (x->request_id != y->request_id)
        return x->request_id < y->request_id ? -1 : 1;
    return (x->position > y->position) - (x->position < y->position);
}

/* Whole-trace means; records are sorted, so a round's records are adjacent. */
static void compute_stats(sim_trace *t)
{
    sim_trace_stats *s = &t->stats;
    double h_acc = 0, h_rej = 0, ht_acc = 0, ht_rej = 0, draft_total = 0, target_total = 0;
    memset(s, 0, sizeof *s);
    s->records = t->n_records;
    s->requests = t->n_requests;
    for (size_t i = 0; i < t->n_records; i++) {
        const wire_trace_record *r = &t->records[i];
        if (r->accepted) {
            s->accepted++;
            h_acc += r->draft_entropy;
            ht_acc += r->target_entropy;
        } else {
            s->rejected++;
            h_rej += r->draft_entropy;
            ht_rej += r->target_entropy;
        }
        if (r->draft_len_in_round > s->max_draft_len)
            s->max_draft_len = r->draft_len_in_round;
        const wire_trace_record *prev = i ? r - 1 : NULL;
        if (prev && prev->request_id == r->request_id && prev->round == r->round)
            continue;
        /* First record of a round: draft_ms is already per token, target_ms per round. */
        s->rounds++;
        s->proposed += r->draft_len_in_round;
        draft_total += (double)r->draft_ms * r->draft_len_in_round;
        target_total += r->target_ms;
    }
    if (s->accepted) {
        s->draft_entropy_accepted = h_acc / (double)s->accepted;
        s->target_entropy_accepted = ht_acc / (double)s->accepted;
    }
    if (s->rejected) {
        s->draft_entropy_rejected = h_rej / (double)s->rejected;
        s->target_entropy_rejected = ht_rej / (double)s->rejected;
    }
    if (s->proposed)
        s->draft_ms = draft_total / (double)s->proposed;
    if (s->rounds)
        s->target_ms = target_total / (double)s->rounds;
}

/* Splits the sorted records into requests and checks that each position occurs once. */
static augur_status index_requests(sim_trace *t, const char *name, augur_error *err)
{
    size_t n_req = 0;
    for (size_t i = 0; i < t->n_records; i++)
        n_req += i == 0 || t->records[i].request_id != t->records[i - 1].request_id;
    t->requests = calloc(n_req ? n_req : 1, sizeof *t->requests);
    if (!t->requests)
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory for %zu requests", name, n_req);
    sim_request *q = NULL;
    for (size_t i = 0; i < t->n_records; i++) {
        const wire_trace_record *r = &t->records[i];
        if (r->index_in_round >= r->draft_len_in_round || r->index_in_round > r->position)
            return augur_fail(err, AUGUR_E_FORMAT,
                              "%s: request %" PRIu64 ", position %u: index_in_round %u does not fit a proposal "
                              "of draft_len_in_round %u",
                              name, r->request_id, r->position, r->index_in_round, r->draft_len_in_round);
        if (!q || q->request_id != r->request_id) {
            q = &t->requests[t->n_requests++];
            *q = (sim_request){.request_id = r->request_id, .first = i};
        } else if (r[-1].position == r->position) {
            return augur_fail(err, AUGUR_E_FORMAT,
                              "%s: request %" PRIu64 " has two records at position %u (traces of several runs "
                              "concatenated?)",
                              name, r->request_id, r->position);
        }
        q->count++;
        /* Where the recorded proposal ended; 64-bit so a hostile position cannot wrap. */
        uint64_t end = (uint64_t)r->position - r->index_in_round + r->draft_len_in_round;
        if (end >= UINT32_MAX)
            return augur_fail(err, AUGUR_E_FORMAT, "%s: request %" PRIu64 ", position %u: proposal runs past "
                              "position %u", name, r->request_id, r->position, UINT32_MAX - 1);
        if (end > q->end)
            q->end = (uint32_t)end;
    }
    return AUGUR_OK;
}

augur_status sim_trace_from_records(sim_trace *t, const wire_trace_record *records, size_t n, const char *name,
                                    augur_error *err)
{
    memset(t, 0, sizeof *t);
    if (!name)
        name = "trace";
    /* An empty trace is valid (a run that proposed nothing); replaying it is not. */
    t->records = malloc((n ? n : 1) * sizeof *t->records);
    if (!t->records)
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory for %zu records", name, n);
    if (n)
        memcpy(t->records, records, n * sizeof *records);
    t->n_records = n;
    qsort(t->records, n, sizeof *t->records, record_order);
    augur_status st = index_requests(t, name, err);
    if (st != AUGUR_OK) {
        sim_trace_free(t);
        return st;
    }
    compute_stats(t);
    return AUGUR_OK;
}

augur_status sim_trace_read(sim_trace *t, FILE *f, const char *name, augur_error *err)
{
    memset(t, 0, sizeof *t);
    trace_reader *r;
    augur_status st = trace_reader_open(&r, f, name, err);
    if (st != AUGUR_OK)
        return st;
    wire_trace_record *recs = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            size_t new_cap = cap ? 2 * cap : 1024;
            wire_trace_record *grown = realloc(recs, new_cap * sizeof *recs);
            if (!grown) {
                st = augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory after %zu records", name, n);
                break;
            }
            recs = grown;
            cap = new_cap;
        }
        bool got;
        st = trace_reader_next(r, &recs[n], &got, err);
        if (st != AUGUR_OK || !got)
            break;
        n++;
    }
    trace_reader_close(r);
    if (st == AUGUR_OK)
        st = sim_trace_from_records(t, recs, n, name, err);
    free(recs);
    return st;
}

augur_status sim_trace_load(sim_trace *t, const char *path, augur_error *err)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f)
        return augur_fail(err, AUGUR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    augur_status st = sim_trace_read(t, f, path, err);
    fclose(f);
    return st;
}

void sim_trace_free(sim_trace *t)
{
    if (!t)
        return;
    free(t->records);
    free(t->requests);
    memset(t, 0, sizeof *t);
}

/* ---- cost model ---- */

double sim_cost_verify_ms(const sim_cost *c, int n)
{
    return c->tt_ms + c->tt_per_position_ms * (n > 1 ? n - 1 : 0);
}

augur_status sim_fit_target_cost(const sim_trace *t, double anchor_tt1_ms, sim_cost *c, int *n_widths,
                                  augur_error *err)
{
    /* Sums for the regression of target_ms on x = n − 1, one point per round. */
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    int per_width[DRAFT_RULE_MAX_GAMMA + 2] = {0};
    int widths = 0, only_width = 0;
    for (size_t i = 0; i < t->n_records; i++) {
        const wire_trace_record *r = &t->records[i];
        const wire_trace_record *prev = i ? r - 1 : NULL;
        if (prev && prev->request_id == r->request_id && prev->round == r->round)
            continue; /* one point per round: its first record */
        double x = r->draft_len_in_round, y = r->target_ms;
        uint32_t w = r->draft_len_in_round + 1;
        if (w < sizeof per_width / sizeof *per_width && per_width[w]++ == 0) {
            widths++;
            only_width = (int)w;
        }
        n++;
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    *n_widths = widths;
    if (n == 0)
        return augur_fail(err, AUGUR_E_INPUT, "the trace holds no rounds to fit the target's cost to");
    if (anchor_tt1_ms > 0) {
        /* Through the measured point (x = 0, t_t(1)): minimise Σ (y − t1 − b·x)². */
        double slope = sxx > 0 ? (sxy - anchor_tt1_ms * sx) / sxx : 0;
        c->tt_ms = anchor_tt1_ms;
        c->tt_per_position_ms = slope > 0 ? slope : 0;
        return AUGUR_OK;
    }
    /* A fit leans on the rounds off the commonest width: a fixed-γ trace has a few
     * short last rounds, too few to tell a slope from noise (measured: intercepts of
     * 0.1 ms against 6-25 ms steps), so such a trace counts as one width. */
    int modal = 0, modal_width = 0;
    for (int w = 0; w < (int)(sizeof per_width / sizeof *per_width); w++)
        if (per_width[w] > modal) {
            modal = per_width[w];
            modal_width = w;
        }
    if (widths >= 2 && (n - modal) < 0.25 * n) {
        widths = 1;
        only_width = modal_width;
    }
    *n_widths = widths;
    double var = sxx - sx * sx / n;
    if (widths < 2 || !(var > 0))
        return augur_fail(err, AUGUR_E_INPUT,
                          "(nearly) every round of the trace verified %d positions, so the cost of a one-position "
                          "step cannot be fitted: give it (--tt MS, e.g. the per-token time of the same run with "
                          "--no-speculation)",
                          only_width);
    double slope = (sxy - sx * sy / n) / var;
    if (slope < 0)
        slope = 0;
    double intercept = sy / n - slope * sx / n; /* t_t at x = 0, i.e. one position */
    c->tt_per_position_ms = slope;
    c->tt_ms = intercept > 0 ? intercept : 0;
    return AUGUR_OK;
}

/* ---- replay ---- */

static bool rule_reads_entropy(draft_rule_kind kind)
{
    return kind != DRAFT_RULE_FIXED && kind != DRAFT_RULE_HEURISTIC;
}

/* Replays one request into the running totals of *res. */
static void run_request(const sim_trace *t, const sim_request *q, const draft_rule *rule, const sim_cost *cost,
                        sim_result *res)
{
    const wire_trace_record *rec = t->records + q->first;
    size_t n = q->count, i = 0;
    draft_rule_state st;
    draft_rule_init(&st, rule);
    uint32_t p = rec[0].position;
    while (p < q->end) {
        while (i < n && rec[i].position < p)
            i++;
        if (i == n)
            break; /* past the last record: nothing left that the trace can replay */
        if (rec[i].position > p) {
            res->skipped += rec[i].position - p;
            p = rec[i].position;
        }
        int k_max = draft_rule_begin_round(&st);
        uint32_t room = q->end - p;
        int limit = (uint32_t)k_max < room ? k_max : (int)room;
        int k = 0, a = 0;
        bool all_accepted = true;
        size_t j = i;
        while (k < limit) {
            bool have = j < n && rec[j].position == p + (uint32_t)k;
            if (!have) {
                /* Before a rejection this is a recorded bonus position: the target
                 * supplies the token. After one, only an entropy rule needs to know more. */
                if (all_accepted || rule_reads_entropy(rule->kind)) {
                    res->cut++;
                    break;
                }
                k++;
                continue;
            }
            if (all_accepted && rec[j].accepted)
                a++;
            else
                all_accepted = false;
            bool stop = draft_rule_stop_after(&st, rec[j].draft_entropy);
            k++;
            j++;
            if (stop)
                break;
        }
        draft_rule_end_round(&st, a, k);
        uint32_t yielded = (uint32_t)a + 1 < room ? (uint32_t)a + 1 : room;
        res->tokens += yielded;
        res->rounds++;
        res->proposed += (uint64_t)k;
        res->accepted += (uint64_t)a;
        res->cost_ms += k * cost->td_ms + sim_cost_verify_ms(cost, k + 1);
        p += (uint32_t)a + 1;
    }
}

augur_status sim_run(const sim_trace *t, const draft_rule *rule, const sim_cost *cost, sim_result *out,
                     augur_error *err)
{
    memset(out, 0, sizeof *out);
    out->rule = *rule;
    augur_status st = draft_rule_validate(rule, err);
    if (st != AUGUR_OK)
        return st;
    if (!(cost->td_ms >= 0) || !(cost->tt_ms > 0) || !(cost->tt_per_position_ms >= 0))
        return augur_fail(err, AUGUR_E_INPUT,
                          "cost model: t_d must be >= 0, t_t(1) > 0 and t_t's slope >= 0 ms (got %g, %g and %g)",
                          cost->td_ms, cost->tt_ms, cost->tt_per_position_ms);
    if (t->n_requests == 0)
        return augur_fail(err, AUGUR_E_INPUT, "the trace holds no records to replay");
    for (size_t r = 0; r < t->n_requests; r++)
        run_request(t, &t->requests[r], rule, cost, out);
    if (out->rounds)
        out->tokens_per_round = (double)out->tokens / (double)out->rounds;
    if (out->proposed)
        out->acceptance = (double)out->accepted / (double)out->proposed;
    if (out->tokens) {
        out->ms_per_token = out->cost_ms / (double)out->tokens;
        out->speedup = sim_cost_verify_ms(cost, 1) / out->ms_per_token;
    }
    return AUGUR_OK;
}

/* ---- grids ---- */

static augur_status push_rule(draft_rule **rules, size_t *n, const draft_rule *r, augur_error *err)
{
    augur_status st = draft_rule_validate(r, err);
    if (st != AUGUR_OK)
        return st;
    draft_rule *grown = realloc(*rules, (*n + 1) * sizeof **rules);
    if (!grown)
        return augur_fail(err, AUGUR_E_NOMEM, "out of memory for %zu rule settings", *n + 1);
    grown[(*n)++] = *r;
    *rules = grown;
    return AUGUR_OK;
}

augur_status sim_grid_expand(draft_rule_kind kind, const sim_grid *g, draft_rule **rules, size_t *n,
                             augur_error *err)
{
    static const int gammas_1_8[] = {1, 2, 3, 4, 5, 6, 7, 8};
    static const int num_k_8[] = {8};
    static const float static_taus[] = {0.5f, 1.0f, 1.5f, 2.0f, 2.5f, 3.0f, 3.5f, 4.0f};
    static const float cumulative_taus[] = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    static const float lambdas[] = {0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f, 0.9f, 1.0f};
    static const int windows_1_5[] = {1, 2, 3, 4, 5};
    static const int windows_1_7[] = {1, 2, 3, 4, 5, 6, 7};
    /* Lists a rule does not read get one dummy entry so the loops below run once. */
    static const int one_int[] = {0};
    static const float one_float[] = {0};
    const int *gam;
    const float *tau = one_float, *lam = one_float;
    const int *win = one_int;
    size_t n_gam, n_tau = 1, n_lam = 1, n_win = 1;
    switch (kind) {
    case DRAFT_RULE_FIXED:
    case DRAFT_RULE_HEURISTIC:
        gam = g->n_gamma ? g->gamma : gammas_1_8;
        n_gam = g->n_gamma ? g->n_gamma : 8;
        break;
    case DRAFT_RULE_STATIC:
    case DRAFT_RULE_MOVING_AVERAGE:
    case DRAFT_RULE_CUMULATIVE:
        gam = g->n_gamma ? g->gamma : num_k_8;
        n_gam = g->n_gamma ? g->n_gamma : 1;
        break;
    default:
        return augur_fail(err, AUGUR_E_INTERNAL, "simulate: unknown rule kind %d", (int)kind);
    }
    if (kind == DRAFT_RULE_STATIC) {
        tau = g->n_tau ? g->tau : static_taus;
        n_tau = g->n_tau ? g->n_tau : sizeof static_taus / sizeof *static_taus;
    } else if (kind == DRAFT_RULE_CUMULATIVE) {
        tau = g->n_tau ? g->tau : cumulative_taus;
        n_tau = g->n_tau ? g->n_tau : sizeof cumulative_taus / sizeof *cumulative_taus;
        win = g->n_window ? g->window : windows_1_7;
        n_win = g->n_window ? g->n_window : sizeof windows_1_7 / sizeof *windows_1_7;
    } else if (kind == DRAFT_RULE_MOVING_AVERAGE) {
        lam = g->n_lambda ? g->lambda : lambdas;
        n_lam = g->n_lambda ? g->n_lambda : sizeof lambdas / sizeof *lambdas;
        win = g->n_window ? g->window : windows_1_5;
        n_win = g->n_window ? g->n_window : sizeof windows_1_5 / sizeof *windows_1_5;
    }
    for (size_t a = 0; a < n_gam; a++)
        for (size_t b = 0; b < n_tau; b++)
            for (size_t c = 0; c < n_lam; c++)
                for (size_t d = 0; d < n_win; d++) {
                    draft_rule r = {.kind = kind, .gamma = gam[a], .tau = tau[b], .lambda = lam[c],
                                    .window = win[d]};
                    augur_status st = push_rule(rules, n, &r, err);
                    if (st != AUGUR_OK)
                        return st;
                }
    return AUGUR_OK;
}

/* ---- ordering ---- */

void sim_results_sort(sim_result *results, size_t n)
{
    /* Insertion sort: stable, allocation-free, and grids are a few hundred settings. */
    for (size_t i = 1; i < n; i++) {
        sim_result r = results[i];
        size_t j = i;
        while (j > 0 && results[j - 1].ms_per_token > r.ms_per_token) {
            results[j] = results[j - 1];
            j--;
        }
        results[j] = r;
    }
}
