/* augur simulate: replays a recorded trace under grids of draft-length rules and ranks
 * them by the cost model (runtime/simulate.h has the method). */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/args.h"
#include "launcher/commands.h"
#include "runtime/spec/simulate.h"

static const char simulate_synopsis[] =
    "usage: augur simulate FILE [--rule RULE] [--td MS] [--tt MS] [--gamma LIST] [--tau LIST]\n"
    "                      [--lambda LIST] [--window LIST] [--top N]\n"
    "\n"
    "Replays a trace written by `augur generate --trace FILE` as if each setting of a\n"
    "draft-length rule had drafted, and ranks the settings by the cost model\n"
    "c = x_d*t_d + sum t_t(n): a round drafting k tokens costs k*t_d + t_t(k+1), where a\n"
    "verify forward of n positions costs t_t(n) = t_t(1) + s*(n-1), fitted to the trace's\n"
    "rounds; target-only decoding costs t_t(1) a token, so speedup = t_t(1) / (cost per\n"
    "token). A trace whose rounds all verified one width needs --tt (t_t(1)).\n"
    "\n";

static const char simulate_epilogue[] =
    "\n"
    "LISTs are comma-separated, e.g. --gamma 1,2,4,8; a grid is every combination of the\n"
    "lists its rule reads. Output: one line per setting, cheapest cost per token first\n"
    "(rounds, tokens, tokens/round, accepted/proposed, acceptance, cost ms/token,\n"
    "speedup, gaps), then a best line per rule.\n"
    "\n"
    "The trace records each position's draft token once, drafted from the true prefix.\n"
    "Replaying the rule the trace was recorded with reproduces its rounds and accepted\n"
    "and proposed counts. Other settings meet positions the recording never drafted (the\n"
    "bonus token after a fully accepted round): a proposal reaching one stops there, a\n"
    "round starting on one skips it; the gaps column counts both. Settings drafting more\n"
    "than the recorded proposals, or entropy rules deciding after a rejection, are\n"
    "therefore estimates. Record with a large fixed --gamma to search widely.\n";

#define MAX_LIST 64
#define N_KINDS 5

typedef struct {
    int gamma[MAX_LIST], window[MAX_LIST];
    float tau[MAX_LIST], lambda[MAX_LIST];
    sim_grid grid;
    bool kinds[N_KINDS];
    bool have_td, have_tt, have_slope;
    float td, tt, slope;
    int top;                 /* 0 = all */
    const char *path;
} simulate_cli;

static augur_status parse_rule(const char *flag, const char *text, void *dest, augur_error *err)
{
    bool *kinds = dest;
    memset(kinds, 0, N_KINDS * sizeof *kinds);
    if (!strcmp(text, "all")) {
        for (int k = 0; k < N_KINDS; k++)
            kinds[k] = true;
        return AUGUR_OK;
    }
    draft_rule_kind kind;
    if (draft_rule_kind_parse(text, &kind, NULL) != AUGUR_OK)
        return augur_fail(err, AUGUR_E_INPUT,
                          "%s: '%s' is not a rule (fixed, heuristic, static, moving-average, cumulative, all)", flag,
                          text);
    kinds[kind] = true;
    return AUGUR_OK;
}

/* A list given for parameters no selected rule reads is a mistake worth naming. */
static augur_status check_lists_used(const simulate_cli *c, augur_error *err)
{
    const bool *k = c->kinds;
    if (c->grid.n_tau && !k[DRAFT_RULE_STATIC] && !k[DRAFT_RULE_CUMULATIVE])
        return augur_fail(err, AUGUR_E_INPUT, "--tau: only the static and cumulative rules read it");
    if (c->grid.n_lambda && !k[DRAFT_RULE_MOVING_AVERAGE])
        return augur_fail(err, AUGUR_E_INPUT, "--lambda: only the moving-average rule reads it");
    if (c->grid.n_window && !k[DRAFT_RULE_MOVING_AVERAGE] && !k[DRAFT_RULE_CUMULATIVE])
        return augur_fail(err, AUGUR_E_INPUT, "--window: only the moving-average and cumulative rules read it");
    return AUGUR_OK;
}

static augur_status check_simulate(void *ctx, int n_operands, char **operands, augur_error *err)
{
    simulate_cli *c = ctx;
    if (n_operands < 1)
        return augur_fail(err, AUGUR_E_INPUT, "no trace FILE given (see augur simulate --help)");
    if (n_operands > 1)
        return augur_fail(err, AUGUR_E_INPUT, "simulate takes one FILE, got %d more argument%s",
                          n_operands - 1, plural(n_operands - 1));
    c->path = operands[0];
    return check_lists_used(c, err);
}

/* Returns ARGS_RUN to continue, else an exit code. */
static int parse_simulate(simulate_cli *c, int argc, char **argv)
{
    for (int k = 0; k < N_KINDS; k++)
        c->kinds[k] = true;
    c->grid = (sim_grid){.gamma = c->gamma, .tau = c->tau, .lambda = c->lambda, .window = c->window};
    const arg_spec specs[] = {
        FLAG_CUSTOM("rule", parse_rule, c->kinds, "RULE",
                    "fixed, heuristic, static, moving-average, cumulative or all\n"
                    "(default all)"),
        {.name = "td", .kind = ARG_FLOAT, .dest = &c->td, .given = &c->have_td, .min = 0, .max = 1e6, .value = "MS",
         .help = "draft time per drafted token (default: the trace's mean, which\n"
                 "includes drafting that overlap hid behind verification: the\n"
                 "model charges every drafted token, as without overlap)"},
        {.name = "tt", .kind = ARG_FLOAT, .dest = &c->tt, .given = &c->have_tt, .min = 0, .max = 1e6,
         .above_min = true, .value = "MS",
         .help = "t_t(1): a one-position target step, e.g. the per-token time of\n"
                 "--no-speculation (default: fitted with the slope from the trace)"},
        {.name = "tt-slope", .kind = ARG_FLOAT, .dest = &c->slope, .given = &c->have_slope, .min = 0, .max = 1e6,
         .value = "MS", .help = "s: what each verified position beyond the first adds to t_t(n)\n"
                                "(default: fitted from the trace)"},
        {.name = "gamma", .kind = ARG_INT_LIST, .dest = c->gamma, .count = &c->grid.n_gamma, .cap = MAX_LIST,
         .min = 1, .max = DRAFT_RULE_MAX_GAMMA, .value = "LIST",
         .help = "fixed gamma / heuristic start and cap / entropy rules' num_k\n"
                 "(default 1..8 for fixed and heuristic, 8 for entropy rules)"},
        {.name = "tau", .kind = ARG_FLOAT_LIST, .dest = c->tau, .count = &c->grid.n_tau, .cap = MAX_LIST, .min = 0,
         .max = 1e6, .above_min = true, .value = "LIST",
         .help = "static threshold (default 0.5..4 step 0.5) and cumulative\n"
                 "threshold (default 2..16 step 1), nats and squared nats"},
        {.name = "lambda", .kind = ARG_FLOAT_LIST, .dest = c->lambda, .count = &c->grid.n_lambda, .cap = MAX_LIST,
         .min = 0, .max = 1e6, .above_min = true, .value = "LIST",
         .help = "moving-average factor (default 0.2..1.0 step 0.1)"},
        {.name = "window", .kind = ARG_INT_LIST, .dest = c->window, .count = &c->grid.n_window, .cap = MAX_LIST,
         .min = 1, .max = DRAFT_RULE_MAX_GAMMA, .value = "LIST",
         .help = "past entropies n (default 1..5 moving-average, 1..7 cumulative)"},
        FLAG_INT("top", &c->top, "N", 1, 1000000, "print only the N cheapest settings (best lines still cover all)"),
        FLAG_HELP,
    };
    const arg_command cmd = {.name = "simulate", .synopsis = simulate_synopsis, .specs = specs,
                             .n_specs = sizeof specs / sizeof specs[0], .epilogue = simulate_epilogue,
                             .help_column = 18, .operands = ARGS_OPERANDS, .check = check_simulate, .cli = c};
    return args_parse(&cmd, argc, argv, NULL);
}

static void print_table(const sim_result *res, size_t n, int top)
{
    char desc[128];
    int width = (int)strlen("setting");
    for (size_t i = 0; i < n; i++) {
        draft_rule_describe(&res[i].rule, desc, sizeof desc);
        if ((int)strlen(desc) > width)
            width = (int)strlen(desc);
    }
    printf("%-*s  %6s  %7s  %9s  %17s  %10s  %9s  %8s  %5s\n", width, "setting", "rounds", "tokens", "tok/round",
           "accepted/proposed", "acceptance", "ms/token", "speedup", "gaps");
    size_t shown = top > 0 && (size_t)top < n ? (size_t)top : n;
    for (size_t i = 0; i < shown; i++) {
        const sim_result *r = &res[i];
        char ap[48];
        snprintf(ap, sizeof ap, "%" PRIu64 "/%" PRIu64, r->accepted, r->proposed);
        draft_rule_describe(&r->rule, desc, sizeof desc);
        printf("%-*s  %6" PRIu64 "  %7" PRIu64 "  %9.3f  %17s  %10.3f  %9.4f  %7.3fx  %5" PRIu64 "\n", width, desc,
               r->rounds, r->tokens, r->tokens_per_round, ap, r->acceptance, r->ms_per_token, r->speedup,
               r->cut + r->skipped);
    }
    if (shown < n)
        printf("(%zu more setting%s not shown; --top %d)\n", n - shown, plural(n - shown), top);
}

/* One line per rule with its cheapest setting; then the overall best against the
 * heuristic, the baseline the thesis compares with. */
static void print_best(const sim_result *res, size_t n)
{
    char desc[128];
    const sim_result *best_of[N_KINDS] = {0};
    int kinds = 0;
    for (size_t i = 0; i < n; i++) {
        draft_rule_kind k = res[i].rule.kind;
        if (!best_of[k]) {
            best_of[k] = &res[i];
            kinds++;
        }
    }
    for (int k = 0; k < N_KINDS; k++) {
        const sim_result *r = best_of[k];
        if (!r)
            continue;
        draft_rule_describe(&r->rule, desc, sizeof desc);
        printf("best: %s: %.3f tokens/round, acceptance %.3f, %.4f ms/token, %.3fx over target-only\n", desc,
               r->tokens_per_round, r->acceptance, r->ms_per_token, r->speedup);
    }
    const sim_result *h = best_of[DRAFT_RULE_HEURISTIC];
    if (kinds > 1 && h && n > 0) {
        draft_rule_describe(&res[0].rule, desc, sizeof desc);
        printf("best overall: %s, %.3fx over target-only, %.3fx over the best heuristic setting\n", desc,
               res[0].speedup, h->ms_per_token / res[0].ms_per_token);
    }
}

static augur_status simulate(simulate_cli *c, augur_error *err)
{
    sim_trace t;
    augur_status st = sim_trace_load(&t, c->path, err);
    if (st != AUGUR_OK)
        return st;
    draft_rule *rules = NULL;
    sim_result *res = NULL;
    size_t n = 0;
    const sim_trace_stats *s = &t.stats;
    sim_cost cost = {.td_ms = c->have_td ? c->td : s->draft_ms};
    int widths = 0;
    if (t.n_records == 0) {
        st = augur_fail(err, AUGUR_E_FORMAT, "%s: the trace holds no records to replay", c->path);
        goto out;
    }
    for (int k = 0; !st && k < N_KINDS; k++)
        if (c->kinds[k])
            st = sim_grid_expand((draft_rule_kind)k, &c->grid, &rules, &n, err);
    if (st != AUGUR_OK)
        goto out;
    if (c->have_tt && c->have_slope) {
        cost.tt_ms = c->tt;
        cost.tt_per_position_ms = c->slope;
    } else if ((st = sim_fit_target_cost(&t, c->have_tt ? c->tt : 0, &cost, &widths, err))) {
        augur_wrap(err, "%s", c->path);
        goto out;
    } else if (c->have_slope) { /* the line of that slope through the rounds' centre */
        cost.tt_ms += (cost.tt_per_position_ms - c->slope) * s->proposed / (double)(s->rounds ? s->rounds : 1);
        cost.tt_per_position_ms = c->slope;
    }
    if (!(cost.tt_ms > 0)) {
        st = augur_fail(err, AUGUR_E_INPUT, "%s: the trace's rounds fit t_t(1) = %g ms (their times vary more with noise than "
                        "with the width verified); pass --tt MS",
                        c->path, cost.tt_ms);
        goto out;
    }
    res = calloc(n, sizeof *res);
    if (!res) {
        st = augur_fail(err, AUGUR_E_NOMEM, "simulate: out of memory for %zu results", n);
        goto out;
    }
    for (size_t i = 0; !st && i < n; i++)
        st = sim_run(&t, &rules[i], &cost, &res[i], err);
    if (st != AUGUR_OK) {
        augur_wrap(err, "%s", c->path);
        goto out;
    }
    sim_results_sort(res, n);

    printf("trace %s: %" PRIu64 " request%s, %" PRIu64 " record%s, %" PRIu64 " round%s, acceptance %.3f (%" PRIu64
           " of %" PRIu64 " proposed), longest proposal %u\n",
           c->path, s->requests, plural(s->requests), s->records, plural(s->records), s->rounds,
           plural(s->rounds),
           s->proposed ? (double)s->accepted / (double)s->proposed : 0.0, s->accepted, s->proposed,
           s->max_draft_len);
    printf("cost model: t_d = %.4f ms per drafted token (%s), t_t(n) = %.4f + %.4f*(n-1) ms per verify forward "
           "(%s, %" PRIu64 " round%s over %d width%s)\n",
           cost.td_ms, c->have_td ? "--td" : "trace mean", cost.tt_ms, cost.tt_per_position_ms,
           c->have_tt && c->have_slope ? "--tt, --tt-slope"
           : c->have_tt                ? "t_t(1) from --tt, slope fitted"
           : c->have_slope             ? "slope from --tt-slope, t_t(1) fitted"
                                       : "fitted",
           s->rounds, plural(s->rounds), widths,
           plural((unsigned long long)widths));
    printf("\n");
    print_table(res, n, c->top);
    printf("\n");
    print_best(res, n);
    if (fflush(stdout) != 0 || ferror(stdout))
        st = augur_fail(err, AUGUR_E_IO, "stdout: write failed: %s", strerror(errno));
out:
    free(res);
    free(rules);
    sim_trace_free(&t);
    return st;
}

int cmd_simulate(int argc, char **argv)
{
    augur_error err = {0};
    simulate_cli cli = {0};
    int rc = parse_simulate(&cli, argc, argv);
    if (rc != ARGS_RUN)
        return rc;
    return simulate(&cli, &err) ? cli_report(&err) : 0;
}
