/* augur simulate: replays a recorded trace under grids of draft-length rules and ranks
 * them by the cost model (runtime/simulate.h has the method). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/args.h"
#include "launcher/commands.h"
#include "runtime/spec/simulate.h"

static const char simulate_usage[] =
    "usage: augur simulate FILE [--rule RULE] [--td MS] [--tt MS] [--gamma LIST] [--tau LIST]\n"
    "                      [--lambda LIST] [--window LIST] [--top N]\n"
    "\n"
    "Replays a trace written by `augur generate --trace FILE` as if each setting of a\n"
    "draft-length rule had drafted, and ranks the settings by the cost model\n"
    "c = x_d*t_d + x_t*t_t: a round drafting k tokens costs k*t_d + t_t, and target-only\n"
    "decoding costs t_t a token, so speedup = t_t / (cost per token).\n"
    "\n"
    "  --rule RULE     fixed, heuristic, static, moving-average, cumulative or all\n"
    "                  (default all)\n"
    "  --td MS         draft time per drafted token (default: the trace's mean, which\n"
    "                  includes drafting that overlap hid behind verification: the\n"
    "                  model charges every drafted token, as without overlap)\n"
    "  --tt MS         target time per verify forward (default: the trace's mean)\n"
    "  --gamma LIST    fixed gamma / heuristic initial gamma / entropy rules' num_k\n"
    "                  (default 1..8 for fixed and heuristic, 8 for entropy rules)\n"
    "  --tau LIST      static threshold (default 0.5..4 step 0.5) and cumulative\n"
    "                  threshold (default 2..16 step 1), nats and squared nats\n"
    "  --lambda LIST   moving-average factor (default 0.2..1.0 step 0.1)\n"
    "  --window LIST   past entropies n (default 1..5 moving-average, 1..7 cumulative)\n"
    "  --top N         print only the N cheapest settings (best lines still cover all)\n"
    "  -h, --help      show this help\n"
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

enum { OPT_RULE = 1000, OPT_TD, OPT_TT, OPT_GAMMA, OPT_TAU, OPT_LAMBDA, OPT_WINDOW, OPT_TOP };

static const struct option simulate_options[] = {
    {"rule", required_argument, NULL, OPT_RULE},
    {"td", required_argument, NULL, OPT_TD},
    {"tt", required_argument, NULL, OPT_TT},
    {"gamma", required_argument, NULL, OPT_GAMMA},
    {"tau", required_argument, NULL, OPT_TAU},
    {"lambda", required_argument, NULL, OPT_LAMBDA},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"top", required_argument, NULL, OPT_TOP},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

#define MAX_LIST 64
#define N_KINDS 5

typedef struct {
    int gamma[MAX_LIST], window[MAX_LIST];
    float tau[MAX_LIST], lambda[MAX_LIST];
    sim_grid grid;
    bool kinds[N_KINDS];
    bool have_td, have_tt;
    float td, tt;
    int top;                 /* 0 = all */
    const char *path;
} simulate_cli;

/* Splits a comma list into items, each parsed by parse(flag, item, index). */
static augur_status parse_list(const char *flag, const char *text, size_t *n,
                               augur_status (*parse)(simulate_cli *, const char *, const char *, size_t,
                                                     augur_error *),
                               simulate_cli *cli, augur_error *err)
{
    char item[64];
    size_t count = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= sizeof item)
            return augur_fail(err, AUGUR_E_INPUT, "%s: '%s' is not a comma-separated list of values", flag, text);
        if (count == MAX_LIST)
            return augur_fail(err, AUGUR_E_INPUT, "%s: more than %d values", flag, MAX_LIST);
        memcpy(item, p, len);
        item[len] = '\0';
        augur_status st = parse(cli, flag, item, count, err);
        if (st != AUGUR_OK)
            return st;
        count++;
        if (!comma)
            break;
        p = comma + 1;
    }
    *n = count;
    return AUGUR_OK;
}

static augur_status parse_gamma(simulate_cli *c, const char *flag, const char *item, size_t i, augur_error *err)
{
    return arg_int(flag, item, 1, DRAFT_RULE_MAX_GAMMA, &c->gamma[i], err);
}

static augur_status parse_window(simulate_cli *c, const char *flag, const char *item, size_t i, augur_error *err)
{
    return arg_int(flag, item, 1, DRAFT_RULE_MAX_GAMMA, &c->window[i], err);
}

static augur_status parse_positive(const char *flag, const char *item, float *out, augur_error *err)
{
    augur_status st = arg_float(flag, item, 0, 1e6, out, err);
    if (st == AUGUR_OK && !(*out > 0))
        return augur_fail(err, AUGUR_E_INPUT, "%s: %s is not > 0", flag, item);
    return st;
}

static augur_status parse_tau(simulate_cli *c, const char *flag, const char *item, size_t i, augur_error *err)
{
    return parse_positive(flag, item, &c->tau[i], err);
}

static augur_status parse_lambda(simulate_cli *c, const char *flag, const char *item, size_t i, augur_error *err)
{
    return parse_positive(flag, item, &c->lambda[i], err);
}

static augur_status parse_rule(simulate_cli *c, const char *text, augur_error *err)
{
    memset(c->kinds, 0, sizeof c->kinds);
    if (!strcmp(text, "all")) {
        for (int k = 0; k < N_KINDS; k++)
            c->kinds[k] = true;
        return AUGUR_OK;
    }
    draft_rule_kind kind;
    if (draft_rule_kind_parse(text, &kind, NULL) != AUGUR_OK)
        return augur_fail(err, AUGUR_E_INPUT,
                          "--rule: '%s' is not a rule (fixed, heuristic, static, moving-average, cumulative, all)",
                          text);
    c->kinds[kind] = true;
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

static augur_status parse_args(simulate_cli *c, int argc, char **argv, bool *help, augur_error *err)
{
    *help = false;
    for (int k = 0; k < N_KINDS; k++)
        c->kinds[k] = true;
    c->grid = (sim_grid){.gamma = c->gamma, .tau = c->tau, .lambda = c->lambda, .window = c->window};
    optind = 1;
    opterr = 0;
    int opt;
    augur_status st = AUGUR_OK;
    /* Without "+" getopt moves positionals last, so FILE may come before the flags. */
    while (!st && (opt = getopt_long(argc, argv, "h", simulate_options, NULL)) != -1) {
        switch (opt) {
        case OPT_RULE: st = parse_rule(c, optarg, err); break;
        case OPT_TD:
            st = arg_float("--td", optarg, 0, 1e6, &c->td, err);
            c->have_td = true;
            break;
        case OPT_TT:
            st = parse_positive("--tt", optarg, &c->tt, err);
            c->have_tt = true;
            break;
        case OPT_GAMMA: st = parse_list("--gamma", optarg, &c->grid.n_gamma, parse_gamma, c, err); break;
        case OPT_TAU: st = parse_list("--tau", optarg, &c->grid.n_tau, parse_tau, c, err); break;
        case OPT_LAMBDA: st = parse_list("--lambda", optarg, &c->grid.n_lambda, parse_lambda, c, err); break;
        case OPT_WINDOW: st = parse_list("--window", optarg, &c->grid.n_window, parse_window, c, err); break;
        case OPT_TOP: st = arg_int("--top", optarg, 1, 1000000, &c->top, err); break;
        case 'h': *help = true; return AUGUR_OK;
        default:
            return augur_fail(err, AUGUR_E_INPUT, "unknown or incomplete option '%s' (see augur simulate --help)",
                              argv[optind - 1]);
        }
    }
    if (st != AUGUR_OK)
        return st;
    if (optind >= argc)
        return augur_fail(err, AUGUR_E_INPUT, "no trace FILE given (see augur simulate --help)");
    if (argc - optind > 1)
        return augur_fail(err, AUGUR_E_INPUT, "simulate takes one FILE, got %d more arguments", argc - optind - 1);
    c->path = argv[optind];
    return check_lists_used(c, err);
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
        printf("(%zu more settings not shown; --top %d)\n", n - shown, top);
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
    sim_cost cost = {.td_ms = c->have_td ? c->td : s->draft_ms, .tt_ms = c->have_tt ? c->tt : s->target_ms};
    if (t.n_records == 0) {
        st = augur_fail(err, AUGUR_E_FORMAT, "%s: the trace holds no records to replay", c->path);
        goto out;
    }
    if (!(cost.tt_ms > 0)) {
        st = augur_fail(err, AUGUR_E_INPUT, "%s: the trace records no target time; pass --tt MS", c->path);
        goto out;
    }
    for (int k = 0; !st && k < N_KINDS; k++)
        if (c->kinds[k])
            st = sim_grid_expand((draft_rule_kind)k, &c->grid, &rules, &n, err);
    if (st != AUGUR_OK)
        goto out;
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

    printf("trace %s: %" PRIu64 " request%s, %" PRIu64 " records, %" PRIu64 " rounds, acceptance %.3f (%" PRIu64
           " of %" PRIu64 " proposed), longest proposal %u\n",
           c->path, s->requests, s->requests == 1 ? "" : "s", s->records, s->rounds,
           s->proposed ? (double)s->accepted / (double)s->proposed : 0.0, s->accepted, s->proposed,
           s->max_draft_len);
    printf("cost model: t_d = %.4f ms per drafted token (%s), t_t = %.4f ms per verify forward (%s)\n", cost.td_ms,
           c->have_td ? "--td" : "trace mean", cost.tt_ms, c->have_tt ? "--tt" : "trace mean");
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
    bool help;
    augur_status st = parse_args(&cli, argc, argv, &help, &err);
    if (st != AUGUR_OK)
        return cli_report(&err);
    if (help) {
        fputs(simulate_usage, stdout);
        return 0;
    }
    st = simulate(&cli, &err);
    return st ? cli_report(&err) : 0;
}
