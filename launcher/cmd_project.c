/* augur project: the speculative cost model (scale_model.h) applied to a profile of
 * measured inputs: beside every measured cell of a scaling suite, and over node counts
 * and tensor-parallel sizes no machine here has. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/args.h"
#include "launcher/commands.h"
#include "launcher/scale_model.h"

#define MAX_LIST 32
#define MAX_CLASSES 32

static const char project_synopsis[] =
    "usage: augur project --profile FILE [--suite results.json] [--tp LIST] [--nodes LIST]\n"
    "                     [--alpha LIST] [--gamma N] [--csv FILE]\n"
    "\n"
    "Projects speculative decoding's tokens/s and latency per token from measured inputs:\n"
    "  tokens per round  E = (1 - a^(g+1)) / (1 - a)\n"
    "  round time        R = g t_draft + t_target(T, g+1) + 2 L (lat + 2 (T-1)/T bytes / bw)\n"
    "                        + 2 lat (a proposal and a verdict)\n"
    "  per replica       R / E ms a token, 1000 E / R tokens/s; replicas add up.\n"
    "The profile (docs/scaling.md) gives t_draft, t_target at some T and widths (augur\n"
    "bench), the layers L, hidden size, all-reduce element bytes, GPUs per node and the\n"
    "links inside and between nodes.\n"
    "\n"
    "With --suite (cluster/scale.sh's results.json) it fits each kind of link in the suite\n"
    "(shared memory; TCP in one namespace; TCP across namespaces, per delay) from the\n"
    "cells' all-reduce calls, bytes and time, then prints the model beside every measured\n"
    "cell with its error. Then it projects nodes x GPUs-per-node with T target ranks a\n"
    "replica (the draft sharing a GPU), replicas = GPUs / T, at each --alpha and the\n"
    "measured acceptance (the profile's alpha_measured, else the suite's).\n"
    "\n";

typedef struct {
    const char *profile_path;
    const char *suite_path;
    const char *csv_path;
    int tp[MAX_LIST], nodes[MAX_LIST];
    size_t n_tp, n_nodes;
    float alpha[MAX_LIST];
    size_t n_alpha;
    int gamma;
    double intra_lat, inter_lat;
    bool have_intra_lat, have_inter_lat;
    bool no_grid;
} project_cli;

static int parse_project(int argc, char **argv, project_cli *c)
{
    *c = (project_cli){.tp = {8, 16}, .n_tp = 2, .nodes = {1, 2, 4, 8, 16, 32, 64}, .n_nodes = 7,
                       .alpha = {0.6f, 0.8f}, .n_alpha = 2, .gamma = 4};
    const arg_spec specs[] = {
        FLAG_REQUIRED("profile", &c->profile_path, "FILE", "the inputs: a profile JSON (docs/scaling.md)"),
        FLAG_STRING("suite", &c->suite_path, "FILE", "cluster/scale.sh's results.json: model beside measurement"),
        {.name = "tp", .kind = ARG_INT_LIST, .dest = c->tp, .count = &c->n_tp, .cap = MAX_LIST, .min = 1,
         .max = 1 << 16, .value = "LIST", .help = "target ranks per replica to project (default 8,16)"},
        {.name = "nodes", .kind = ARG_INT_LIST, .dest = c->nodes, .count = &c->n_nodes, .cap = MAX_LIST, .min = 1,
         .max = 1 << 16, .value = "LIST", .help = "node counts to project (default 1,2,4,8,16,32,64)"},
        {.name = "alpha", .kind = ARG_FLOAT_LIST, .dest = c->alpha, .count = &c->n_alpha, .cap = MAX_LIST,
         .min = 0, .max = 1, .value = "LIST", .help = "acceptance rates besides the measured one (default 0.6,0.8)"},
        FLAG_INT("gamma", &c->gamma, "N", 1, 64, "tokens a proposal in the projection (default 4)"),
        {.name = "intra-latency-us", .kind = ARG_DOUBLE, .dest = &c->intra_lat, .given = &c->have_intra_lat,
         .min = 0, .max = 1e9, .value = "US", .help = "override the profile's link latency inside a node"},
        {.name = "inter-latency-us", .kind = ARG_DOUBLE, .dest = &c->inter_lat, .given = &c->have_inter_lat,
         .min = 0, .max = 1e9, .value = "US", .help = "override the profile's link latency between nodes"},
        FLAG_STRING("csv", &c->csv_path, "FILE", "also write the projection's rows to FILE as CSV"),
        FLAG_BOOL("no-projection", &c->no_grid, "with --suite: only the model beside the measured cells"),
        FLAG_HELP,
    };
    const arg_command cmd = {.name = "project", .synopsis = project_synopsis, .specs = specs,
                             .n_specs = sizeof specs / sizeof specs[0], .help_column = 25, .cli = c};
    return args_parse(&cmd, argc, argv, NULL);
}

/* ---- the suite: fitted links, and the model beside each measured cell ---- */

static double num(json_t *o, const char *path)
{
    /* "runs.0.allreduce.ms"-style lookups over objects and arrays; missing -> 0. */
    char key[64];
    const char *p = path;
    while (o && *p) {
        size_t n = strcspn(p, ".");
        snprintf(key, sizeof key, "%.*s", (int)n, p);
        o = json_is_array(o) ? json_array_get(o, (size_t)atoi(key)) : json_object_get(o, key);
        p += n + (p[n] == '.');
    }
    return json_is_number(o) ? json_number_value(o) : 0.0;
}

static const char *str(json_t *o, const char *key)
{
    json_t *v = json_object_get(json_object_get(o, "cell"), key);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* The kind of link a cell's ranks cross: what its all-reduces and messages are fitted to. */
static void link_class(json_t *rec, char *out, size_t len)
{
    int nodes = (int)num(rec, "cell.nodes");
    const char *net = str(rec, "net"), *rate = str(rec, "rate");
    double delay = num(rec, "cell.delay_ms");
    if (!strcmp(net, "shm"))
        snprintf(out, len, "shared memory, one node");
    else
        snprintf(out, len, "TCP, %s, %g ms delay%s%s", nodes > 1 ? "across namespaces" : "one namespace", delay,
                 *rate && strcmp(rate, "none") ? ", rate " : "", *rate && strcmp(rate, "none") ? rate : "");
}

typedef struct {
    char name[128];
    double calls[2 * 64], bytes[2 * 64], ms[2 * 64];
    int n;
    scale_link link;
    bool bw_resolved;
} link_class_fit;

static link_class_fit *find_class(link_class_fit *c, int *n, const char *name)
{
    for (int i = 0; i < *n; i++)
        if (!strcmp(c[i].name, name))
            return &c[i];
    if (*n == MAX_CLASSES)
        return NULL;
    memset(&c[*n], 0, sizeof c[*n]);
    snprintf(c[*n].name, sizeof c[*n].name, "%s", name);
    return &c[(*n)++];
}

static augur_status suite_compare(const project_cli *cli, const scale_profile *p, double *alpha_out,
                                  augur_error *err)
{
    json_error_t jerr;
    json_t *cells = json_load_file(cli->suite_path, 0, &jerr);
    if (!cells)
        return augur_fail(err, AUGUR_E_INPUT, "--suite %s: line %d: %s", cli->suite_path, jerr.line, jerr.text);
    if (!json_is_array(cells) || json_array_size(cells) == 0) {
        json_decref(cells);
        return augur_fail(err, AUGUR_E_INPUT, "--suite %s: not a non-empty array of cells (scale.sh results.json)",
                          cli->suite_path);
    }
    link_class_fit *classes = calloc(MAX_CLASSES, sizeof *classes);
    if (!classes) {
        json_decref(cells);
        return augur_fail(err, AUGUR_E_NOMEM, "--suite: out of memory");
    }
    int n_classes = 0;
    size_t i;
    json_t *rec;
    double gen_sum = 0, rounds_sum = 0, prop_sum = 0;
    json_array_foreach(cells, i, rec) {
        char name[128];
        link_class(rec, name, sizeof name);
        link_class_fit *c = find_class(classes, &n_classes, name);
        if (!c)
            break;
        json_t *runs = json_object_get(rec, "runs");
        for (size_t r = 0; r < json_array_size(runs) && c->n < 2 * 64; r++) {
            json_t *run = json_array_get(runs, r);
            if (num(run, "allreduce.calls") > 0) {
                c->calls[c->n] = num(run, "allreduce.calls");
                c->bytes[c->n] = num(run, "allreduce.bytes");
                c->ms[c->n++] = num(run, "allreduce.ms");
            }
        }
        if (!strcmp(str(rec, "acceptance"), "real") && num(rec, "runs.0.proposed") > 0)
            gen_sum += num(rec, "runs.0.generated"), rounds_sum += num(rec, "runs.0.rounds"),
                prop_sum += num(rec, "runs.0.proposed");
    }
    /* The shipped pair's acceptance, as the formula's a: pooled over the real-weight cells. */
    *alpha_out = rounds_sum > 0 ? scale_alpha_from_tokens(gen_sum / rounds_sum, prop_sum / rounds_sum) : -1;
    printf("## Links fitted from the suite (ms = calls x latency + bytes / bandwidth, rank 0's all-reduces)\n\n");
    printf("| link | runs | latency µs | bandwidth GB/s |\n| --- | --: | --: | --: |\n");
    for (int k = 0; k < n_classes; k++) {
        link_class_fit *c = &classes[k];
        scale_fit_link(c->calls, c->bytes, c->ms, c->n, &c->link, &c->bw_resolved);
        if (c->bw_resolved)
            printf("| %s | %d | %.1f | %.3f |\n", c->name, c->n, c->link.latency_us, c->link.bandwidth_gbps);
        else
            printf("| %s | %d | %.1f | not resolved (bytes per call hardly vary; latency only) |\n", c->name, c->n,
                   c->link.latency_us);
    }
    printf("\n## Model beside measurement (per replica; round = decode ms / rounds)\n\n");
    printf("γ is the mean proposal (proposed / rounds); acceptance is generate's (accepted / proposed); a is the\n"
           "per-position acceptance at which E(a, γ) equals the measured tokens/round, which the model uses: the\n"
           "comparison tests the round time, and a is what the projection's \"measured\" column takes.\n\n");
    printf("| cell | T | γ | acceptance | a | tokens/round | round ms measured | model (draft + target + all-reduce "
           "+ msgs) | error | tok/s measured | model | error |\n");
    printf("| --- | --: | --: | --: | --: | --: | --: | --- | --: | --: | --: | --: |\n");
    double abs_err = 0;
    int n_err = 0;
    augur_status st = AUGUR_OK;
    json_array_foreach(cells, i, rec) {
        char name[128];
        link_class(rec, name, sizeof name);
        link_class_fit *c = find_class(classes, &n_classes, name);
        int tp = (int)num(rec, "cell.tp");
        json_t *runs = json_object_get(rec, "runs");
        for (size_t r = 0; c && r < json_array_size(runs) && !st; r++) {
            json_t *run = json_array_get(runs, r);
            double rounds = num(run, "rounds"), proposed = num(run, "proposed");
            if (rounds <= 0)
                continue;
            double gamma = proposed / rounds, rate = proposed > 0 ? num(run, "accepted") / proposed : 0;
            double alpha = scale_alpha_from_tokens(num(run, "tokens_per_round"), gamma);
            scale_round m;
            if ((st = scale_predict(p, &c->link, tp, gamma, alpha, &m, err)))
                break;
            double meas_round = num(run, "decode_ms") / rounds, meas_tps = num(run, "tokens_per_s");
            double e_round = meas_round > 0 ? m.round_ms / meas_round - 1.0 : 0.0;
            double e = meas_tps > 0 ? m.tokens_per_s / meas_tps - 1.0 : 0.0;
            abs_err += fabs(e), n_err++;
            printf("| %s%s | %d | %.2f | %.3f | %.3f | %.2f | %.2f | %.2f (%.2f + %.2f + %.2f + %.2f) | %+.0f%% | %.1f | "
                   "%.1f | %+.0f%% |\n",
                   str(rec, "name"), r ? " (target-only)" : "", tp, gamma, rate, alpha, num(run, "tokens_per_round"),
                   meas_round, m.round_ms, m.draft_ms, m.target_ms, m.allreduce_ms, m.msg_ms, 100 * e_round, meas_tps,
                   m.tokens_per_s, 100 * e);
        }
    }
    if (!st && n_err)
        printf("\nMean absolute error of tokens/s over %d run%s: %.0f%%.\n\n", n_err, plural((unsigned)n_err),
               100 * abs_err / n_err);
    free(classes);
    json_decref(cells);
    return st;
}

/* ---- the projection over nodes, T and acceptance ---- */

static augur_status project_grid(const project_cli *cli, const scale_profile *p, double alpha_measured,
                                 FILE *csv, augur_error *err)
{
    double alphas[MAX_LIST + 1];
    const char *alpha_note[MAX_LIST + 1];
    int na = 0;
    if (alpha_measured >= 0)
        alphas[na] = alpha_measured, alpha_note[na++] = "(measured)";
    for (size_t k = 0; k < cli->n_alpha; k++)
        alphas[na] = cli->alpha[k], alpha_note[na++] = "";
    printf("## Projection: %s, γ = %d, draft sharing a GPU of its replica\n\n", p->name, cli->gamma);
    printf("Links: inside a node %.1f µs + bytes / %.0f GB/s; between nodes %.1f µs + bytes / %.0f GB/s.\n\n",
           p->intra.latency_us, p->intra.bandwidth_gbps, p->inter.latency_us, p->inter.bandwidth_gbps);
    if (csv)
        fprintf(csv, "tp,nodes,gpus,replicas,gamma,alpha,round_ms,tokens_per_round,ms_per_token,tokens_per_s,"
                     "target_only_tokens_per_s,speedup,extrapolated\n");
    for (size_t t = 0; t < cli->n_tp; t++) {
        int tp = cli->tp[t];
        const scale_link *link = tp <= p->gpus_per_node ? &p->intra : &p->inter;
        scale_round base, spec;
        augur_status st = scale_predict(p, link, tp, 0, 0, &base, err);
        if (!st)
            st = scale_predict(p, link, tp, cli->gamma, 0.5, &spec, err);
        if (st)
            return st;
        printf("### T = %d (%s%s)\n\n", tp, tp <= p->gpus_per_node ? "one node's links" : "spans nodes: inter-node link",
               spec.extrapolated ? "; t_target extrapolated as a + b/T from the measured T" : "");
        printf("One replica: round %.2f ms = draft %.2f + target %.2f + all-reduce %.2f + messages %.2f; "
               "target-only %.2f ms a token.\n\n",
               spec.round_ms, spec.draft_ms, spec.target_ms, spec.allreduce_ms, spec.msg_ms, base.round_ms);
        printf("| nodes | GPUs | replicas | target-only tok/s |");
        for (int a = 0; a < na; a++)
            printf(" α=%.3g%s%s ms/token | tok/s | speedup |", alphas[a], *alpha_note[a] ? " " : "", alpha_note[a]);
        printf("\n| --: | --: | --: | --: |");
        for (int a = 0; a < na; a++)
            printf(" --: | --: | --: |");
        printf("\n");
        for (size_t n = 0; n < cli->n_nodes; n++) {
            int gpus = cli->nodes[n] * p->gpus_per_node, replicas = gpus / tp;
            if (replicas == 0) {
                printf("| %d | %d | 0 | T = %d needs %d GPUs |\n", cli->nodes[n], gpus, tp, tp);
                continue;
            }
            double base_tps = replicas * base.tokens_per_s;
            printf("| %d | %d | %d | %.1f |", cli->nodes[n], gpus, replicas, base_tps);
            for (int a = 0; a < na; a++) {
                scale_round r;
                if ((st = scale_predict(p, link, tp, cli->gamma, alphas[a], &r, err)))
                    return st;
                double tps = replicas * r.tokens_per_s;
                printf(" %.2f | %.1f | %.2fx |", r.ms_per_token, tps, tps / base_tps);
                if (csv)
                    fprintf(csv, "%d,%d,%d,%d,%d,%.4f,%.4f,%.4f,%.4f,%.3f,%.3f,%.4f,%d\n", tp, cli->nodes[n], gpus,
                            replicas, cli->gamma, alphas[a], r.round_ms, r.tokens_per_round, r.ms_per_token, tps,
                            base_tps, tps / base_tps, r.extrapolated);
            }
            printf("\n");
        }
        printf("\n");
    }
    return AUGUR_OK;
}

int cmd_project(int argc, char **argv)
{
    project_cli cli;
    int rc = parse_project(argc, argv, &cli);
    if (rc != ARGS_RUN)
        return rc;
    augur_error err = {0};
    scale_profile p;
    augur_status st = scale_profile_load(&p, cli.profile_path, &err);
    if (!st && cli.have_intra_lat)
        p.intra.latency_us = cli.intra_lat;
    if (!st && cli.have_inter_lat)
        p.inter.latency_us = cli.inter_lat;
    double alpha = p.alpha_measured, suite_alpha = -1;
    if (!st && cli.suite_path)
        st = suite_compare(&cli, &p, &suite_alpha, &err);
    if (alpha < 0)
        alpha = suite_alpha;
    FILE *csv = NULL;
    if (!st && cli.csv_path && !(csv = fopen(cli.csv_path, "w")))
        st = augur_fail(&err, AUGUR_E_IO, "--csv %s: cannot open for writing: %s", cli.csv_path, strerror(errno));
    if (!st && !cli.no_grid)
        st = project_grid(&cli, &p, alpha, csv, &err);
    if (csv && fclose(csv) && !st)
        st = augur_fail(&err, AUGUR_E_IO, "--csv %s: write failed", cli.csv_path);
    fflush(stdout);
    return st ? cli_report(&err) : 0;
}
