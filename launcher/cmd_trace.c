/* augur trace: summarises a per-token trace (augur generate --trace), or dumps it as CSV. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "launcher/args.h"
#include "launcher/commands.h"
#include "proto/trace_stream.h"
#include "runtime/spec/simulate.h"

static const char trace_synopsis[] =
    "usage: augur trace FILE [--csv] [-o OUT]\n"
    "\n"
    "Reads a trace written by `augur generate --trace FILE` (one record per proposed\n"
    "token, up to and including the first rejected one of each round) and prints a\n"
    "summary: records, requests, rounds, acceptance (accepted of proposed tokens, as\n"
    "generate reports it), mean draft and target entropies (nats) of accepted and\n"
    "rejected tokens, mean draft time per drafted token and target time per round.\n"
    "\n";

static const char trace_epilogue[] =
    "\n"
    "A missing, truncated or corrupt trace is one line on stderr and exit code 2.\n";

static augur_status print_summary(FILE *out, const char *out_name, const char *path, const sim_trace *t,
                                  augur_error *err)
{
    const sim_trace_stats *s = &t->stats;
    fprintf(out, "trace:            %s\n", path);
    fprintf(out, "records:          %" PRIu64 " (%" PRIu64 " accepted, %" PRIu64 " rejected)\n", s->records,
            s->accepted, s->rejected);
    fprintf(out, "requests:         %" PRIu64 "\n", s->requests);
    fprintf(out, "rounds:           %" PRIu64 "\n", s->rounds);
    fprintf(out, "acceptance:       %.3f (%" PRIu64 " of %" PRIu64 " proposed)\n",
            s->proposed ? (double)s->accepted / (double)s->proposed : 0.0, s->accepted, s->proposed);
    fprintf(out, "longest proposal: %u token%s\n", s->max_draft_len, plural(s->max_draft_len));
    fprintf(out, "draft entropy:    accepted %.3f, rejected %.3f (mean, nats)\n", s->draft_entropy_accepted,
            s->draft_entropy_rejected);
    fprintf(out, "target entropy:   accepted %.3f, rejected %.3f (mean, nats)\n", s->target_entropy_accepted,
            s->target_entropy_rejected);
    fprintf(out, "draft time:       %.4f ms per drafted token (mean)\n", s->draft_ms);
    fprintf(out, "target time:      %.4f ms per round (mean verify forward)\n", s->target_ms);
    if (fflush(out) != 0 || ferror(out))
        return augur_fail(err, AUGUR_E_IO, "%s: write failed: %s", out_name, strerror(errno));
    return AUGUR_OK;
}

/* Writes the CSV or the summary of path to out (out_name labels write errors). */
static augur_status run_trace(const char *path, bool csv, FILE *out, const char *out_name, augur_error *err)
{
    if (!csv) {
        sim_trace t;
        augur_status st = sim_trace_load(&t, path, err);
        if (st == AUGUR_OK)
            st = print_summary(out, out_name, path, &t, err);
        sim_trace_free(&t);
        return st;
    }
    FILE *f = fopen(path, "rb");
    if (!f)
        return augur_fail(err, AUGUR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    augur_status st = trace_dump_csv(f, path, out, NULL, err);
    fclose(f);
    if (st == AUGUR_OK && (fflush(out) != 0 || ferror(out)))
        st = augur_fail(err, AUGUR_E_IO, "%s: write failed: %s", out_name, strerror(errno));
    return st;
}

typedef struct {
    const char *path;
    const char *out_path;
    bool csv;
} trace_cli;

static augur_status check_trace(void *ctx, int n_operands, char **operands, augur_error *err)
{
    trace_cli *cli = ctx;
    if (n_operands < 1)
        return augur_fail(err, AUGUR_E_INPUT, "no trace FILE given (see augur trace --help)");
    if (n_operands > 1)
        return augur_fail(err, AUGUR_E_INPUT, "trace takes one FILE, got %d more argument%s",
                          n_operands - 1, plural(n_operands - 1));
    cli->path = operands[0];
    if (cli->out_path && !strcmp(cli->out_path, cli->path))
        return augur_fail(err, AUGUR_E_INPUT, "-o: %s is the trace being read", cli->out_path);
    return AUGUR_OK;
}

/* Returns ARGS_RUN to continue, else an exit code. */
static int parse_trace(int argc, char **argv, trace_cli *cli)
{
    *cli = (trace_cli){0};
    const arg_spec specs[] = {
        FLAG_BOOL("csv", &cli->csv,
                  "print every record as CSV instead, with a header line:\n"
                  "request_id,round,position,index_in_round,draft_len_in_round,\n"
                  "draft_entropy,target_entropy,accepted,draft_ms,target_ms"),
        {.name = "output", .short_name = 'o', .kind = ARG_STRING, .dest = &cli->out_path, .value = "OUT",
         .help = "write to OUT instead of stdout (removed again on failure)"},
        FLAG_HELP,
    };
    const arg_command cmd = {.name = "trace", .synopsis = trace_synopsis, .specs = specs,
                             .n_specs = sizeof specs / sizeof specs[0], .epilogue = trace_epilogue,
                             .help_column = 21, .operands = ARGS_OPERANDS, .check = check_trace, .cli = cli};
    return args_parse(&cmd, argc, argv, NULL);
}

int cmd_trace(int argc, char **argv)
{
    augur_error err = {0};
    trace_cli cli;
    int rc = parse_trace(argc, argv, &cli);
    if (rc != ARGS_RUN)
        return rc;
    const char *out_path = cli.out_path;
    FILE *out = stdout;
    if (out_path && !(out = fopen(out_path, "w"))) {
        augur_fail(&err, AUGUR_E_IO, "-o: cannot create %s: %s", out_path, strerror(errno));
        return cli_report(&err);
    }
    augur_status st = run_trace(cli.path, cli.csv, out, out_path ? out_path : "stdout", &err);
    if (out != stdout) {
        if (fclose(out) != 0 && st == AUGUR_OK)
            st = augur_fail(&err, AUGUR_E_IO, "-o: cannot write %s: %s", out_path, strerror(errno));
        /* A half-written output would pass for a whole one. */
        if (st != AUGUR_OK)
            remove(out_path);
    }
    return st ? cli_report(&err) : 0;
}
