/* `augur serve`: an OpenAI-compatible HTTP endpoint on the leader of a speculative
 * engine. Every rank runs this under mpirun like `augur generate --target`: rank 0
 * serves HTTP (libmicrohttpd threads) and feeds requests to the engine from its main
 * thread, the only one that talks MPI; the other ranks serve rounds until stopped. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "launcher/args.h"
#include "launcher/dist_util.h"
#include "launcher/commands.h"
#include "launcher/model_files.h"
#include "runtime/serve/http_server.h"
#include "runtime/serve/scheduler.h"
#include "runtime/spec/spec_engine.h"

typedef struct {
    const char *target_path;
    const char *draft_path;
    int draft_layers;
    int tp;
    const char *tokenizer_path;
    int max_context;
    int threads;
    draft_rule rule;
    bool no_overlap;
    bool overlap;
    bool no_speculation;
    double timeout_s;
    device_opts device;
    const char *host;
    int port;
    const char *model_name;
    int max_tokens;
    int max_queue;
    int max_connections;
    int max_body_kib;
    int retry_after_s;
    double drain_wait_s;
    const char *debug_hold_file;
    int max_running;
    bool have_synthetic;
    float synthetic_acceptance;
} serve_cli;

static const char serve_synopsis[] =
    "usage: mpirun -np T+1 augur serve --target PATH (--draft PATH | --draft-layers K)\n"
    "              [--host ADDR] [--port N] [options]\n"
    "\n"
    "An OpenAI-compatible HTTP server on rank 0: POST /v1/completions and\n"
    "/v1/chat/completions (streaming with \"stream\": true), GET /v1/models, /health and\n"
    "/metrics (Prometheus). Ranks 0..T-1 hold the target, rank T the draft, as in\n"
    "augur generate. Up to --max-running requests run at once, each round verifying\n"
    "all of them in one batched verification; more wait (--max-queue).\n"
    "SIGTERM to rank 0 (its pid is printed) stops admitting requests (503), finishes\n"
    "the admitted ones and ends every rank with exit code 0 (a SIGTERM to mpirun\n"
    "reaches rank 0 too, but mpirun then exits 1 and may end the ranks before the\n"
    "drain is over).\n"
    "docs/serving.md has the API.\n"
    "\n";

static augur_status parse_draft_rule(const char *flag, const char *text, void *dest, augur_error *err)
{
    (void)flag;
    return draft_rule_kind_parse(text, dest, err);
}

static augur_status check_serve(void *ctx, int n_operands, char **operands, augur_error *err)
{
    (void)n_operands, (void)operands;
    const serve_cli *cli = ctx;
    if (!cli->target_path)
        return augur_fail(err, AUGUR_E_INPUT, "--target PATH is required (see augur serve --help)");
    if (!cli->no_speculation && !cli->draft_path && !cli->draft_layers)
        return augur_fail(err, AUGUR_E_INPUT, "--target needs --draft PATH or --draft-layers K (or --no-speculation)");
    if (cli->draft_path && cli->draft_layers)
        return augur_fail(err, AUGUR_E_INPUT, "--draft and --draft-layers exclude each other");
    if (cli->device.dummy && !cli->tokenizer_path)
        return augur_fail(err, AUGUR_E_INPUT,
                          "--load-format dummy reads config.json only: give --tokenizer FILE (for a Llama-3-sized "
                          "vocabulary, tools/bench/make_wide_tokenizer.py writes one)");
    if (cli->overlap && cli->no_overlap)
        return augur_fail(err, AUGUR_E_INPUT, "--overlap and --no-overlap contradict each other");
    if (cli->have_synthetic && !cli->device.dummy)
        return augur_fail(err, AUGUR_E_INPUT,
                          "--synthetic-acceptance replaces the target's verdicts, so its text is not the target's: "
                          "it runs only with --load-format dummy");
    if (cli->have_synthetic && cli->no_speculation)
        return augur_fail(err, AUGUR_E_INPUT, "--synthetic-acceptance needs speculation (not --no-speculation)");
    return draft_rule_validate(&cli->rule, err);
}

static void serve_defaults(serve_cli *cli)
{
    *cli = (serve_cli){.timeout_s = 60, .rule = {.kind = DRAFT_RULE_FIXED, .gamma = 4, .window = 3},
                       .device = {.kind = AUGUR_DEVICE_AUTO, .dummy_seed = 0x5eed}, .host = "127.0.0.1",
                       .port = 8000, .max_tokens = 256, .max_queue = 64, .max_connections = 128,
                       .max_body_kib = 1024, .retry_after_s = 1, .drain_wait_s = 30, .max_running = 8};
}

#define SERVE_MAX_SPECS 64

/* The flag table of augur serve over cli's fields, into specs[SERVE_MAX_SPECS]. */
static void serve_command(serve_cli *cli, arg_spec *out, arg_command *cmd)
{
    const arg_spec specs[] = {
        FLAG_CONFIG("a JSON object of these flags (e.g. configs/tiny-cpu.json);\n"
                    "flags given on the command line override it"),
        FLAG_SECTION("model:"),
        FLAG_STRING("target", &cli->target_path, "PATH", "the target model, sharded over T ranks"),
        FLAG_STRING("draft", &cli->draft_path, "PATH", "the draft model (same vocabulary)"),
        FLAG_INT("draft-layers", &cli->draft_layers, "K", 1, 1 << 16, "draft with the target's first K layers instead"),
        FLAG_INT("tp", &cli->tp, "T", 1, 4096, "target ranks (default: mpirun's rank count - 1)"),
        FLAG_STRING("tokenizer", &cli->tokenizer_path, "FILE", "tokenizer.json (default: <target>/tokenizer.json)"),
        FLAG_INT("max-context", &cli->max_context, "N", 2, 1 << 24,
                 "KV-cache positions (default: as augur generate); a prompt\n"
                 "plus max_tokens must fit"),
        FLAG_STRING("model-name", &cli->model_name, "NAME",
                    "the id /v1/models lists and requests may name (default:\n"
                    "the target directory's last component)"),
        FLAG_SWITCH("load-format", &cli->device.dummy, "F", "auto", "dummy",
                    "auto | dummy: dummy reads config.json only and fills the\n"
                    "weights with seeded noise (benchmarks; needs --tokenizer)"),
        FLAG_SECTION("device:"),
        FLAG_CUSTOM("device", arg_device_kind, &cli->device.kind, "D", ARG_DEVICE_HELP),
        FLAG_DOUBLE("gpu-memory-fraction", &cli->device.mem_fraction, "F", 0.01, 1.0,
                    "share of a GPU's free memory to use (default 0.9)"),
        FLAG_SWITCH("tp-comm", &cli->device.tp_over_mpi, "C", "nccl", "mpi",
                    "nccl | mpi: how target ranks all-reduce on GPUs"),
        FLAG_INT("threads", &cli->threads, "N", 1, 1024, "CPU threads per rank (default: online CPUs / ranks)"),
        FLAG_SECTION("speculation:"),
        FLAG_CUSTOM("draft-rule", parse_draft_rule, &cli->rule.kind, "RULE",
                    "fixed | heuristic | static | moving-average | cumulative\n(default fixed)"),
        FLAG_INT("gamma", &cli->rule.gamma, "N", 1, DRAFT_RULE_MAX_GAMMA, "most tokens per proposal (default 4)"),
        FLAG_FLOAT("tau", &cli->rule.tau, "X", 1e-9, 1e9, "static / cumulative entropy threshold"),
        FLAG_FLOAT("lambda", &cli->rule.lambda, "X", 1e-9, 1e9, "moving-average factor"),
        FLAG_INT("window", &cli->rule.window, "N", 1, DRAFT_RULE_MAX_GAMMA, "past entropies used (default 3)"),
        FLAG_BOOL("no-overlap", &cli->no_overlap, "the draft waits for each verdict instead of drafting ahead"),
        FLAG_BOOL("overlap", &cli->overlap,
                  "draft ahead even where the draft shares a GPU with a target\n"
                  "rank (by default it waits there, drafting beside the\n"
                  "verification slows the verification more than it hides;\n"
                  "except a fused greedy draft under CUDA MPS, which drafts\n"
                  "ahead on half the GPU's multiprocessors)"),
        FLAG_BOOL("no-speculation", &cli->no_speculation,
                  "target-only for every request (the draft rank idles;\n"
                  "requests' \"speculation\" is then ignored)"),
        {.name = "synthetic-acceptance", .kind = ARG_FLOAT, .dest = &cli->synthetic_acceptance,
         .given = &cli->have_synthetic, .min = 0, .max = 1, .value = "A",
         .help = "with --load-format dummy: each greedy request keeps each\n"
                 "proposed token with probability A (a coin seeded by its\n"
                 "\"seed\", else a fixed one), so dummy targets run at a\n"
                 "chosen acceptance; the text is not the target's"},
        FLAG_DOUBLE("timeout", &cli->timeout_s, "SEC", 0.1, 86400,
                    "fail when a peer rank is silent this long (default 60)"),
        FLAG_SECTION("server:"),
        FLAG_STRING("host", &cli->host, "ADDR", "IPv4 address to listen on (default 127.0.0.1)"),
        FLAG_INT("port", &cli->port, "N", 0, 65535,
                 "TCP port (default 8000; 0: a free port). Rank 0 prints\n"
                 "\"augur serve: listening on http://ADDR:PORT (rank 0 pid N)\"\n"
                 "on stdout once it accepts requests"),
        FLAG_INT("max-tokens", &cli->max_tokens, "N", 1, 1 << 24,
                 "max_tokens of a request that gives none, capped by the\n"
                 "context (default 256)"),
        FLAG_INT("max-running", &cli->max_running, "N", 1, 4096,
                 "requests generated at once, each with its own KV slot on\n"
                 "every rank, in a paged KV pool (--kv-blocks); they share\n"
                 "every round's batched verification (default 8)"),
        FLAG_INT("kv-blocks", &cli->device.kv_pool_blocks, "N", 1, 1 << 26,
                 "blocks of 16 positions in each rank's paged KV pool, which\n"
                 "the running requests share (default: N x --max-context\n"
                 "positions, on a GPU at most what its memory plan holds;\n"
                 "never less than one context); a request waits for room"),
        FLAG_INT("max-queue", &cli->max_queue, "N", 1, 1 << 20,
                 "requests waiting for a slot (streaming or not) beyond\n"
                 "which new ones get 503 + Retry-After (default 64)"),
        FLAG_INT("max-connections", &cli->max_connections, "N", 1, 1 << 16,
                 "open HTTP connections at most (default 128)"),
        FLAG_INT("max-body-kib", &cli->max_body_kib, "N", 1, 1 << 20,
                 "largest request body in KiB; larger gets 413 (default 1024)"),
        FLAG_INT("retry-after", &cli->retry_after_s, "SEC", 1, 3600, "Retry-After of a 503 (default 1)"),
        FLAG_DOUBLE("drain-wait", &cli->drain_wait_s, "SEC", 0, 3600,
                    "after SIGTERM and the last generation, how long to wait\n"
                    "for answers still being sent (default 30)"),
        FLAG_HELP,
        FLAG_SECTION("test hooks (for augur's own tests):"),
        FLAG_STRING("debug-hold-file", &cli->debug_hold_file, "FILE",
                    "no request starts while FILE exists (admitted ones wait)"),
    };
    _Static_assert(sizeof specs <= SERVE_MAX_SPECS * sizeof specs[0], "raise SERVE_MAX_SPECS");
    memcpy(out, specs, sizeof specs);
    *cmd = (arg_command){.name = "serve", .synopsis = serve_synopsis, .specs = out,
                         .n_specs = sizeof specs / sizeof specs[0], .help_column = 23, .check = check_serve,
                         .cli = cli};
}

/* Returns ARGS_RUN to continue, else an exit code. */
static int parse_serve(int argc, char **argv, serve_cli *cli, config_args *config)
{
    serve_defaults(cli);
    *config = (config_args){0};
    int rc = args_device_default(&cli->device.kind);
    if (rc != ARGS_RUN)
        return rc;
    arg_spec specs[SERVE_MAX_SPECS];
    arg_command cmd;
    serve_command(cli, specs, &cmd);
    return args_parse(&cmd, argc, argv, config);
}

int serve_check_args(int argc, char **argv)
{
    serve_cli cli;
    config_args config;
    int rc = parse_serve(argc, argv, &cli, &config);
    config_args_free(&config);
    return rc;
}

augur_status serve_check_flag(const char *key, const char *value, augur_error *err)
{
    serve_cli scratch;
    serve_defaults(&scratch);
    arg_spec specs[SERVE_MAX_SPECS];
    arg_command cmd;
    serve_command(&scratch, specs, &cmd);
    return args_check_flag(&cmd, key, value, err);
}

/* Set by SIGTERM / SIGINT on rank 0: the engine loop drains and returns. */
static volatile sig_atomic_t g_term;

static void on_term(int sig)
{
    (void)sig;
    g_term = 1;
}

static const char *default_model_name(const char *path, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", path);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = '\0';
    const char *slash = strrchr(buf, '/');
    return slash ? slash + 1 : buf;
}

/* Rank 0: the HTTP server and the engine loop, until a drain completes. */
static augur_status lead(const serve_cli *cli, spec_engine *e, augur_error *err)
{
    tokenizer *tok = NULL;
    augur_status st = open_tokenizer_for(&e->m, cli->tokenizer_path, &tok, err);
    if (st)
        return st;
    char tok_dir[4096];
    snprintf(tok_dir, sizeof tok_dir, "%s", cli->target_path);
    if (cli->tokenizer_path) {
        snprintf(tok_dir, sizeof tok_dir, "%s", cli->tokenizer_path); /* its directory */
        char *slash = strrchr(tok_dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(tok_dir, sizeof tok_dir, ".");
    }
    chat_template_kind chat;
    const char *chat_desc = NULL;
    if ((st = chat_template_detect(tok_dir, &chat, &chat_desc, err))) {
        tokenizer_free(tok);
        return st;
    }
    char name_buf[4096];
    serve_metrics metrics;
    metrics_init(&metrics, e->pool_positions ? (long)e->pool_positions : (long)e->max_context * e->n_slots,
                 e->has_pool ? e->pool.n_blocks : 0);
    serve_queue queue;
    if ((st = serve_queue_init(&queue, cli->max_queue, &metrics, err))) {
        metrics_free(&metrics);
        tokenizer_free(tok);
        return st;
    }
    serve_ctx ctx = {.tok = tok, .chat = chat,
                     .model_name = cli->model_name ? cli->model_name
                                                   : default_model_name(cli->target_path, name_buf, sizeof name_buf),
                     .created = (long long)time(NULL), .max_context = e->max_context, .vocab = e->vocab,
                     .default_max_tokens = cli->max_tokens, .max_body = (size_t)cli->max_body_kib * 1024,
                     .retry_after_s = cli->retry_after_s, .queue = &queue, .metrics = &metrics};
    pthread_mutex_init(&ctx.tok_mu, NULL);
    atomic_init(&ctx.next_id, 0);
    atomic_init(&ctx.open_requests, 0);
    http_server *srv = NULL;
    st = http_server_start(&srv, &ctx, cli->host, cli->port, cli->max_connections, err);
    if (!st) {
        fprintf(stderr, "augur: serve: model '%s', context %d, %s; chat template: %s\n", ctx.model_name,
                e->max_context,
                e->layout->speculation ? "speculative (requests may turn it off)" : "target-only (--no-speculation)",
                chat_desc);
        printf("augur serve: listening on http://%s:%d (rank 0 pid %ld)\n", cli->host, http_server_port(srv),
               (long)getpid());
        fflush(stdout);
        serve_engine se = {.e = e, .tok = tok, .q = &queue, .metrics = &metrics, .rule = cli->rule,
                           .overlap = !cli->no_overlap, .overlap_shared_gpu = cli->overlap, .term = &g_term,
                           .hold_file = cli->debug_hold_file,
                           .synthetic_acceptance = cli->have_synthetic ? cli->synthetic_acceptance : -1.0f};
        st = serve_engine_run(&se, err);
        if (!st)
            fprintf(stderr, "augur: serve: drained, stopping\n");
        /* After a failure the job ends by MPI_Abort; answers in flight are lost with it. */
        http_server_stop(srv, st ? 0 : cli->drain_wait_s);
    }
    serve_queue_free(&queue);
    metrics_free(&metrics);
    pthread_mutex_destroy(&ctx.tok_mu);
    tokenizer_free(tok);
    return st;
}

static int run_serve(const serve_cli *cli)
{
    int provided = 0;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    int world_rank = 0, world_size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    /* SIGTERM reaches every rank when it is sent to mpirun: only the leader acts on it,
     * the others finish when the leader stops them after the drain. */
    struct sigaction sa = {.sa_handler = world_rank == 0 ? on_term : SIG_IGN};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    if (world_rank == 0)
        sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    augur_error err = {0};
    int n_target = cli->tp ? cli->tp : world_size - 1;
    comm_layout layout = {0};
    augur_status st = n_target < 1 ? augur_fail(&err, AUGUR_E_INPUT,
                                                "augur serve needs mpirun with at least 2 ranks (T targets + 1 "
                                                "draft), got %d",
                                                world_size)
                                   : comm_layout_create(&layout, MPI_COMM_WORLD, n_target, !cli->no_speculation, &err);
    if (st) {
        if (world_rank == 0)
            fprintf(stderr, "augur: %s\n", err.message);
        MPI_Finalize();
        return augur_exit_code(st) ? augur_exit_code(st) : 1;
    }
    spec_engine e;
    device_opts dev = cli->device;
    dev.threads = cli->threads ? cli->threads : dist_default_threads(world_size);
    st = spec_engine_init(&e, &layout, cli->target_path, cli->draft_path, cli->draft_layers, !cli->no_speculation,
                          &dev, cli->max_context, cli->max_running, &err);
    if (st) {
        if (world_rank == 0 || !strstr(err.message, "failed to start"))
            fprintf(stderr, "augur: rank %d: %s\n", world_rank, err.message);
        spec_engine_free(&e);
        comm_layout_free(&layout);
        MPI_Finalize();
        return augur_exit_code(st) ? augur_exit_code(st) : 1;
    }
    spec_engine_set_timeout(&e, cli->timeout_s);
    int rc = 0;
    if (world_rank == 0) {
        st = lead(cli, &e, &err);
        if (st && (err.code == AUGUR_E_INPUT || err.code == AUGUR_E_IO || err.code == AUGUR_E_FORMAT)) {
            /* Could not start serving (a taken port, a bad tokenizer): release the others. */
            fprintf(stderr, "augur: %s\n", err.message);
            augur_error stop_err = {0};
            if (spec_leader_stop(&e, &stop_err))
                dist_die(world_rank, &stop_err);
            rc = augur_exit_code(st);
        } else if (st) {
            dist_die(world_rank, &err);
        } else if ((st = spec_leader_stop(&e, &err))) {
            dist_die(world_rank, &err);
        }
    } else if (e.role == SPEC_ROLE_TARGET) {
        if ((st = spec_target_serve(&e, &err)))
            dist_die(world_rank, &err);
    } else if ((st = spec_draft_serve(&e, &err))) {
        dist_die(world_rank, &err);
    }
    spec_engine_free(&e);
    comm_layout_free(&layout);
    MPI_Finalize();
    return rc;
}

int cmd_serve(int argc, char **argv)
{
    serve_cli cli;
    config_args config;
    int rc = parse_serve(argc, argv, &cli, &config);
    if (rc == ARGS_RUN)
        rc = run_serve(&cli);
    config_args_free(&config);
    return rc;
}
