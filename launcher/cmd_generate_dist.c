/* `augur generate --target …` under mpirun: every rank runs this; rank 0 leads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "launcher/args.h"
#include "launcher/dist_util.h"
#include "launcher/generate_cli.h"
#include "launcher/model_files.h"
#include "comm/liveness.h"
#include "launcher/replica_report.h"
#include "launcher/spec_stats_print.h"
#include "launcher/stats_json.h"
#include "proto/trace_stream.h"
#include "runtime/spec/spec_engine.h"

typedef struct {
    trace_writer *w;
    augur_error err;
    augur_status st;
} trace_sink;

static void trace_append(void *user, const wire_trace_record *rec)
{
    trace_sink *t = user;
    if (!t->st)
        t->st = trace_writer_append(t->w, rec, &t->err);
}

static void write_stdout(void *user, const char *text, size_t len)
{
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

/* The leader's own all-reduces (it is target rank 0): what crossing ranks (or nodes) costs. */
static void print_allreduce(const char *label, const spec_engine *e, double ms, int64_t calls, const spec_stats *s)
{
    if (e->n_targets < 2 || calls <= 0) {
        fprintf(stderr, "augur: %s: all-reduce: none (one target rank)\n", label);
        return;
    }
    fprintf(stderr,
            "augur: %s: all-reduce (rank 0, %s over %d ranks): %lld calls (2 a layer per forward), %.1f us mean, "
            "%.3f ms per token, %.1f%% of the run\n",
            label, e->tp->ops->name, e->n_targets, (long long)calls, 1e3 * ms / (double)calls,
            s->generated ? ms / s->generated : 0.0,
            s->total_ms > 0 ? 100.0 * ms / s->total_ms : 0.0);
}

/* The prompts of a run: one (--prompt / --prompt-ids) or one per line of --prompts-file. */
typedef struct {
    int32_t **ids;
    size_t *lens;
    int n;
} prompt_set;

static void prompt_set_free(prompt_set *ps)
{
    for (int i = 0; i < ps->n; i++)
        free(ps->ids[i]);
    free(ps->ids);
    free(ps->lens);
}

static augur_status prompt_set_add(prompt_set *ps, int32_t *ids, size_t n, augur_error *err)
{
    int32_t **a = realloc(ps->ids, (size_t)(ps->n + 1) * sizeof *a);
    if (a)
        ps->ids = a;
    size_t *l = realloc(ps->lens, (size_t)(ps->n + 1) * sizeof *l);
    if (l)
        ps->lens = l;
    if (!a || !l) {
        free(ids);
        return augur_fail(err, AUGUR_E_NOMEM, "leader: out of memory for prompts");
    }
    ps->ids[ps->n] = ids;
    ps->lens[ps->n++] = n;
    return AUGUR_OK;
}

static augur_status read_prompts_file(const char *path, const tokenizer *tok, prompt_set *ps, augur_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return augur_fail(err, AUGUR_E_INPUT, "--prompts-file: cannot open %s", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    augur_status st = AUGUR_OK;
    int lineno = 0;
    while (!st && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue; /* blank lines separate nothing */
        int32_t *ids = NULL;
        size_t n = 0;
        if ((st = tokenizer_encode(tok, line, (size_t)len, true, &ids, &n, err)))
            augur_wrap(err, "%s line %d", path, lineno);
        else
            st = prompt_set_add(ps, ids, n, err);
    }
    free(line);
    fclose(f);
    if (!st && ps->n == 0)
        st = augur_fail(err, AUGUR_E_INPUT, "--prompts-file: %s holds no prompts", path);
    return st;
}

static augur_status leader_prompts(const generate_cli *cli, spec_engine *e, tokenizer **tok, prompt_set *ps,
                                   augur_error *err)
{
    int32_t *ids = NULL;
    size_t n = 0;
    augur_status st;
    if ((cli->device.dummy || (cli->prompt_ids && cli->ids_only)) && !cli->tokenizer_path) {
        /* ids in, ids out: a model directory without tokenizer.json is fine */
        augur_error ignored = {0};
        if (open_tokenizer_for(&e->m, NULL, tok, &ignored))
            *tok = NULL;
    } else if ((st = open_tokenizer_for(&e->m, cli->tokenizer_path, tok, err))) {
        return st;
    }
    if (cli->prompts_file)
        return read_prompts_file(cli->prompts_file, *tok, ps, err);
    if (cli->prompt_ids)
        st = parse_token_ids("--prompt-ids", cli->prompt_ids, e->vocab, &ids, &n, err);
    else
        st = tokenizer_encode(*tok, cli->prompt, strlen(cli->prompt), true, &ids, &n, err);
    return st ? st : prompt_set_add(ps, ids, n, err);
}

/* Which requests this leader runs and where their output goes: with replicas, prompt p
 * belongs to replica p mod R, and its output is kept for job rank 0 to print in order. */
typedef struct {
    int replica, n_replicas;
    replica_report *report;  /* NULL: print to stdout as each request ends */
} request_share;

/* Runs this replica's prompts cli->repeat times each (seeds seed, seed+1, ...) with one
 * configuration. A request's id (which seeds its draws) is its index over every prompt,
 * so any number of replicas draws what one replica draws. */
static augur_status run_requests(const generate_cli *cli, spec_engine *e, const tokenizer *tok,
                                 const prompt_set *ps, bool speculate, bool print, trace_sink *trace,
                                 const request_share *share, spec_stats *sum, augur_error *err)
{
    spec_request_opts o = {.rule = cli->rule, .speculate = speculate, .overlap = !cli->no_overlap,
                           .overlap_shared_gpu = cli->overlap,
                           .sampling = cli->sampling, .max_tokens = cli->max_tokens,
                           .variant = cli->debug_acceptance, .gather_full = trace != NULL,
                           .debug_draft_exit_after = cli->debug_draft_exit_after,
                           .synthetic_acceptance = speculate && cli->have_synthetic ? cli->synthetic_acceptance : -1.0f};
    int32_t *out_ids = malloc((size_t)cli->max_tokens * sizeof(int32_t));
    if (!out_ids)
        return augur_fail(err, AUGUR_E_NOMEM, "leader: out of memory");
    replica_report *keep = print ? share->report : NULL;
    text_sink sink = keep ? (text_sink){.write = replica_report_write, .user = keep} : (text_sink){.write = write_stdout};
    augur_status st = AUGUR_OK;
    for (int p = 0; p < ps->n && !st; p++) {
        if (p % share->n_replicas != share->replica)
            continue;
        for (int r = 0; r < cli->repeat && !st; r++) {
            uint64_t request = (uint64_t)p * (uint64_t)cli->repeat + (uint64_t)r + 1;
            o.seed = cli->seed + (uint64_t)r;
            spec_output out = {.sink = print && !cli->ids_only && tok ? &sink : NULL, .echo_prompt = true,
                               .out_tokens = out_ids, .trace = trace ? trace_append : NULL, .trace_user = trace};
            spec_stats s;
            st = spec_leader_generate(e, request, tok, ps->ids[p], (int)ps->lens[p], &o, &out, &s, err);
            if (!st && trace && trace->st) {
                *err = trace->err;
                st = trace->st;
            }
            if (st)
                break;
            spec_stats_add(sum, &s);
            if (keep) {
                for (int i = 0; (cli->ids_only || !tok) && i < s.generated; i++)
                    replica_report_printf(keep, i ? " %d" : "%d", out_ids[i]);
                replica_report_printf(keep, "\n");
                st = replica_report_end_output(keep, (int64_t)request, err);
                continue;
            }
            if (print && (cli->ids_only || !tok)) {
                for (int i = 0; i < s.generated; i++)
                    printf(i ? " %d" : "%d", out_ids[i]);
                putchar('\n');
            } else if (print) {
                putchar('\n');
            }
            fflush(stdout);
        }
    }
    free(out_ids);
    return st;
}

static double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* --trace FILE: with replicas, each writes FILE.replica<k>. */
static augur_status open_trace(const generate_cli *cli, const request_share *share, FILE **file, trace_sink *trace,
                               char *path, size_t cap, augur_error *err)
{
    if (share->n_replicas > 1)
        snprintf(path, cap, "%s.replica%d", cli->trace_path, share->replica);
    else
        snprintf(path, cap, "%s", cli->trace_path);
    *file = fopen(path, "wb");
    if (!*file)
        return augur_fail(err, AUGUR_E_IO, "--trace: cannot create %s", path);
    return trace_writer_open(&trace->w, *file, path, 3, err);
}

/* The label of the main run's stats. */
static void main_label(const generate_cli *cli, char *label, size_t cap)
{
    bool speculate = !cli->no_speculation;
    snprintf(label, cap, "%s", speculate ? "speculative" : "target-only");
    if (speculate && cli->have_synthetic)
        snprintf(label, cap, "speculative (synthetic acceptance %.2f)", (double)cli->synthetic_acceptance);
}

static augur_status lead(const generate_cli *cli, spec_engine *e, const request_share *share, augur_error *err)
{
    tokenizer *tok = NULL;
    prompt_set ps = {0};
    FILE *trace_file = NULL;
    trace_sink trace = {0};
    char trace_path[4096] = "";
    augur_status st = leader_prompts(cli, e, &tok, &ps, err);
    if (!st && cli->trace_path)
        st = open_trace(cli, share, &trace_file, &trace, trace_path, sizeof trace_path, err);
    bool speculate = !cli->no_speculation;
    int requests = 0;
    for (int p = share->replica; p < ps.n; p += share->n_replicas)
        requests += cli->repeat;
    spec_stats main_stats = {0}, base_stats = {0};
    double ar_ms = e->fwd.allreduce_ms;
    int64_t ar_n = e->fwd.allreduces, ar_bytes = e->fwd.allreduce_bytes;
    double t0 = wall_ms();
    if (!st)
        st = run_requests(cli, e, tok, &ps, speculate, true, trace.w ? &trace : NULL, share, &main_stats, err);
    double t1 = wall_ms();
    stats_run main_run = {.s = &main_stats,
                          .ar = {.calls = e->fwd.allreduces - ar_n, .ms = e->fwd.allreduce_ms - ar_ms,
                                 .bytes = e->fwd.allreduce_bytes - ar_bytes}};
    stats_run base_run = {.label = "baseline (target-only)", .s = &base_stats};
    char label[64];
    main_label(cli, label, sizeof label);
    if (speculate && cli->have_synthetic && share->replica == 0)
        fprintf(stderr, "augur: --synthetic-acceptance %.2f: each proposed token kept with that probability; the "
                        "text is not the target's output\n", (double)cli->synthetic_acceptance);
    if (!st && !share->report)
        spec_stats_print(label, &main_stats, requests);
    if (!st && cli->measure_comm)
        print_allreduce(label, e, e->fwd.allreduce_ms - ar_ms,
                        e->fwd.allreduces - ar_n, &main_stats);
    main_run.label = label;
    bool baseline = cli->compare_baseline && speculate;
    if (!st && baseline) {
        ar_ms = e->fwd.allreduce_ms, ar_n = e->fwd.allreduces, ar_bytes = e->fwd.allreduce_bytes;
        st = run_requests(cli, e, tok, &ps, false, false, NULL, share, &base_stats, err);
        base_run.ar = (stats_allreduce){.calls = e->fwd.allreduces - ar_n, .ms = e->fwd.allreduce_ms - ar_ms,
                                        .bytes = e->fwd.allreduce_bytes - ar_bytes};
        if (!st && !share->report) {
            spec_stats_print("baseline (target-only)", &base_stats, requests);
            double a = spec_stats_tok_per_s(&main_stats), b = spec_stats_tok_per_s(&base_stats);
            fprintf(stderr, "augur: speedup over target-only: %.2fx (%.1f vs %.1f tok/s)\n", b > 0 ? a / b : 0.0, a,
                    b);
        }
    }
    if (share->report) {
        share->report->main = main_stats;
        share->report->base = base_stats;
        share->report->have_base = baseline;
        share->report->wall_ms = t1 - t0;
        share->report->requests = requests;
    }
    /* replica 0's leader is job rank 0: it writes its group's record, and the job's totals
     * join it after the replicas' reports are gathered */
    if (!st && cli->stats_json_path && share->replica == 0)
        st = stats_json_write(cli->stats_json_path, cli, e, e->layout->world_size, requests, &main_run,
                              baseline ? &base_run : NULL, err);
    if (trace.w) {
        augur_status cst = trace_writer_close(trace.w, st ? NULL : err);
        if (!st)
            st = cst;
    }
    if (trace_file && fclose(trace_file) && !st)
        st = augur_fail(err, AUGUR_E_IO, "--trace: cannot write %s", trace_path);
    prompt_set_free(&ps);
    tokenizer_free(tok);
    return st;
}

/* With replicas, one that failed to start keeps the others from serving: every rank of
 * the job learns the worst status. */
static augur_status agree_job(const comm_layout *layout, augur_status mine)
{
    if (layout->n_replicas <= 1 || layout->job == MPI_COMM_NULL)
        return mine;
    int code = (int)mine, worst = code;
    if (MPI_Allreduce(&code, &worst, 1, MPI_INT, MPI_MAX, layout->job) != MPI_SUCCESS)
        return AUGUR_E_COMM;
    return (augur_status)worst;
}

/* This rank's part of a job: lead its replica, or serve it. Returns the exit code. */
static int serve_role(const generate_cli *cli, spec_engine *e, const comm_layout *layout, replica_report *report)
{
    augur_error err = {0};
    augur_status st;
    int rc = 0;
    if (comm_layout_is_leader(layout)) {
        request_share share = {.replica = layout->replica, .n_replicas = layout->n_replicas, .report = report};
        st = lead(cli, e, &share, &err);
        if (st && err.code == AUGUR_E_INPUT) {
            /* Bad input found before any round: release the others cleanly. */
            fprintf(stderr, "augur: %s\n", err.message);
            augur_error stop_err = {0};
            if (spec_leader_stop(e, &stop_err))
                dist_die(layout->job_rank, &stop_err);
            rc = 2;
        } else if (st) {
            dist_die(layout->job_rank, &err);
        } else if ((st = spec_leader_stop(e, &err))) {
            dist_die(layout->job_rank, &err);
        }
    } else if (e->role == SPEC_ROLE_TARGET) {
        if ((st = spec_target_serve(e, &err)))
            dist_die(layout->job_rank, &err);
    } else if ((st = spec_draft_serve(e, &err))) {
        dist_die(layout->job_rank, &err);
    }
    return rc;
}

int run_generate_distributed(const generate_cli *cli)
{
    MPI_Init(NULL, NULL);
    int world_rank = 0, world_size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    augur_error err = {0};
    int replicas = cli->replicas > 0 ? cli->replicas : 1;
    int n_target = cli->tp ? cli->tp : world_size / replicas - 1;
    live_set_startup_timeout(cli->startup_timeout_s);
    comm_layout layout = {0};
    augur_status st =
        n_target < 1 ? (replicas > 1 ? augur_fail(&err, AUGUR_E_INPUT,
                                                  "--target needs mpirun with at least %d ranks (%d replicas x "
                                                  "(T targets + 1 draft)), got %d",
                                                  2 * replicas, replicas, world_size)
                                     : augur_fail(&err, AUGUR_E_INPUT,
                                                  "--target needs mpirun with at least 2 ranks (T targets + 1 draft), "
                                                  "got %d",
                                                  world_size))
                     : comm_layout_create_replicas(&layout, MPI_COMM_WORLD, n_target, replicas, !cli->no_speculation,
                                                   &err);
    if (st) {
        if (world_rank == 0)
            fprintf(stderr, "augur: %s\n", err.message);
        MPI_Finalize();
        return augur_exit_code(st) ? augur_exit_code(st) : 1;
    }
    int threads = cli->threads ? cli->threads : dist_default_threads(world_size);
    spec_engine e;
    bool load_draft = !cli->no_speculation;
    device_opts dev = cli->device;
    dev.threads = threads;
    st = spec_engine_init(&e, &layout, cli->target_path, cli->draft_path, cli->draft_layers, load_draft, &dev,
                          cli->max_context, 1, &err);
    if (st && e.missed_gate)
        dist_die(world_rank, &err); /* a rank missed a start-up handshake: MPI_Finalize would wait for it */
    if (st) {
        /* The rank at fault says what; the leader says which rank when it is not that rank. */
        if (layout.world_rank == 0 || !strstr(err.message, "failed to start")) {
            if (layout.n_replicas > 1)
                fprintf(stderr, "augur: rank %d (replica %d): %s\n", world_rank, layout.replica, err.message);
            else
                fprintf(stderr, "augur: rank %d: %s\n", world_rank, err.message);
        }
    }
    augur_status job_st = agree_job(&layout, st);
    if (st || job_st) {
        spec_engine_free(&e);
        comm_layout_free(&layout);
        MPI_Finalize();
        st = st ? st : job_st;
        return augur_exit_code(st) ? augur_exit_code(st) : 1;
    }
    spec_engine_set_timeout(&e, cli->timeout_s);
    e.fwd.time_allreduce = cli->measure_comm;
    /* one replica prints as it goes; several keep their output for job rank 0 */
    replica_report report = {0};
    bool gather = layout.n_replicas > 1;
    int rc = serve_role(cli, &e, &layout, gather ? &report : NULL);
    if (gather) {
        char label[64];
        main_label(cli, label, sizeof label);
        replica_totals totals = {0};
        if ((st = replica_report_gather(&layout, comm_layout_is_leader(&layout) ? &report : NULL, label, &totals,
                                        &err)))
            dist_die(world_rank, &err);
        if (layout.job_rank == 0 && cli->stats_json_path && rc == 0 &&
            (st = stats_json_add_job(cli->stats_json_path, &totals, &err)))
            dist_die(world_rank, &err);
    }
    replica_report_free(&report);
    spec_engine_free(&e);
    comm_layout_free(&layout);
    MPI_Finalize();
    return rc;
}
