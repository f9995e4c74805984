/* augur generate: single-process generation (--model) and, under mpirun,
 * distributed speculative decoding (--target / --draft). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/args.h"
#include "launcher/commands.h"
#include "launcher/generate_cli.h"
#include "launcher/launch_layout.h"
#include "launcher/model_files.h"
#include "comm/liveness.h"
#include "runtime/device_plan.h"
#include "runtime/generate.h"

/* Most positions one forward carries in single-process generation (prefill chunks). */
#define SINGLE_FORWARD_TOKENS 64

static const char generate_synopsis[] =
    "usage: augur generate --model PATH --prompt TEXT [options]\n"
    "       mpirun -np T+1 augur generate --target PATH (--draft PATH | --draft-layers K)\n"
    "              --prompt TEXT [options]\n"
    "       augur launch CONFIG [-- options]   (places the ranks and runs mpirun)\n"
    "\n"
    "Streams the prompt and then the generated text to stdout; prints stats to stderr\n"
    "when done. Under mpirun, ranks 0..T-1 hold the target tensor-parallel and rank T\n"
    "the draft; only rank 0 writes text.\n"
    "\n";

static augur_status parse_draft_rule(const char *flag, const char *text, void *dest, augur_error *err)
{
    (void)flag;
    return draft_rule_kind_parse(text, dest, err);
}

static augur_status parse_acceptance(const char *flag, const char *text, void *dest, augur_error *err)
{
    acceptance_variant *v = dest;
    if (!strcmp(text, "broken-resample"))
        *v = ACCEPT_BROKEN_RESAMPLE_FROM_P;
    else if (strcmp(text, "correct"))
        return augur_fail(err, AUGUR_E_INPUT, "%s: '%s' is not correct or broken-resample", flag, text);
    return AUGUR_OK;
}

/* Flags that only make sense together, or not at all together. */
static augur_status check_generate(void *ctx, int n_operands, char **operands, augur_error *err)
{
    (void)n_operands, (void)operands; /* ARGS_NO_OPERANDS */
    const generate_cli *cli = ctx;
    if (!cli->model_path && !cli->target_path)
        return augur_fail(err, AUGUR_E_INPUT, "--model PATH or --target PATH is required (see augur generate --help)");
    if (cli->model_path && cli->target_path)
        return augur_fail(err, AUGUR_E_INPUT, "--model and --target exclude each other");
    if (cli->prompts_file && !cli->target_path)
        return augur_fail(err, AUGUR_E_INPUT, "--prompts-file needs --target (distributed mode)");
    if (!cli->prompt_ids && !cli->prompts_file && (!cli->prompt || !cli->prompt[0]))
        return augur_fail(err, AUGUR_E_INPUT, "--prompt TEXT is required and must not be empty");
    if (cli->target_path && !cli->no_speculation && !cli->draft_path && !cli->draft_layers)
        return augur_fail(err, AUGUR_E_INPUT,
                          "--target needs --draft PATH or --draft-layers K (or --no-speculation)");
    if (cli->device.dummy && !cli->prompt_ids && !cli->tokenizer_path)
        return augur_fail(err, AUGUR_E_INPUT,
                          "--load-format dummy reads config.json only: give --prompt-ids (or --tokenizer FILE)");
    if (cli->draft_path && cli->draft_layers)
        return augur_fail(err, AUGUR_E_INPUT, "--draft and --draft-layers exclude each other");
    if (cli->model_path && (cli->draft_path || cli->draft_layers || cli->trace_path || cli->device.simulate_hosts))
        return augur_fail(err, AUGUR_E_INPUT,
                          "--draft, --draft-layers, --trace and --simulate-hosts need --target (distributed mode)");
    if (cli->model_path && cli->stats_json_path)
        return augur_fail(err, AUGUR_E_INPUT, "--stats-json needs --target (distributed mode)");
    if (cli->overlap && cli->no_overlap)
        return augur_fail(err, AUGUR_E_INPUT, "--overlap and --no-overlap contradict each other");
    if (cli->have_synthetic && !cli->device.dummy)
        return augur_fail(err, AUGUR_E_INPUT,
                          "--synthetic-acceptance replaces the target's verdicts, so its text is not the target's: "
                          "it runs only with --load-format dummy");
    if (cli->have_synthetic && (!cli->target_path || cli->no_speculation || cli->sampling.temperature > 0))
        return augur_fail(err, AUGUR_E_INPUT,
                          "--synthetic-acceptance needs speculative greedy decoding (--target, a draft, temperature 0)");
    return draft_rule_validate(&cli->rule, err);
}

static augur_status parse_placement(const char *flag, const char *text, void *dest, augur_error *err)
{
    return draft_placement_parse(flag, text, dest, err);
}

static void generate_defaults(generate_cli *cli)
{
    *cli = (generate_cli){.max_tokens = 256, .repeat = 1, .timeout_s = 60, .replicas = 1,
                          .startup_timeout_s = LIVE_STARTUP_TIMEOUT_S,
                          .sampling = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f},
                          .rule = {.kind = DRAFT_RULE_FIXED, .gamma = 4, .window = 3},
                          .device = {.kind = AUGUR_DEVICE_AUTO, .dummy_seed = 0x5eed}};
}

#define GENERATE_MAX_SPECS 64

/* The flag table of augur generate over cli's fields, into specs[GENERATE_MAX_SPECS]. */
static void generate_command(generate_cli *cli, arg_spec *out, arg_command *cmd)
{
    const arg_spec specs[] = {
        FLAG_CONFIG("a JSON object of these flags (e.g. configs/tiny-cpu.json);\n"
                    "flags given on the command line override it"),
        FLAG_SECTION("model:"),
        FLAG_STRING("model", &cli->model_path, "PATH",
                    "single process: Hugging Face model directory (config.json,\n"
                    "*.safetensors, tokenizer.json) or llama2.c checkpoint (.bin)"),
        FLAG_STRING("target", &cli->target_path, "PATH", "distributed: the target model, sharded over T ranks"),
        FLAG_STRING("draft", &cli->draft_path, "PATH", "distributed: the draft model (same vocabulary)"),
        FLAG_INT("draft-layers", &cli->draft_layers, "K", 1, 1 << 16,
                 "distributed: draft with the target's first K layers instead"),
        FLAG_INT("tp", &cli->tp, "T", 1, 4096,
                 "target ranks per replica (default: mpirun's rank count\n"
                 "/ replicas - 1)"),
        FLAG_INT("replicas", &cli->replicas, "R", 1, 4096,
                 "R target groups, each with its own draft rank, in one job\n"
                 "(mpirun -np R*(T+1)); --prompts-file's prompts go to them\n"
                 "in turn and rank 0 prints every answer in prompt order"),
        FLAG_CUSTOM("draft-placement", parse_placement, &cli->draft_placement, "P",
                    "own-gpu | shared | own-node: the draft rank's GPU: one of\n"
                    "its own (default), a target rank's, or on a host without\n"
                    "target ranks (augur launch places the ranks)"),
        FLAG_STRING("tokenizer", &cli->tokenizer_path, "FILE",
                    "tokenizer.json or llama2.c tokenizer.bin (default:\n"
                    "<model>/tokenizer.json; required for llama2.c checkpoints)"),
        FLAG_INT("max-context", &cli->max_context, "N", 2, 1 << 24,
                 "KV-cache positions to allocate (default: the model's\n"
                 "max_position_embeddings, at most 4096 on CPU; on a GPU as\n"
                 "many as fit in its free memory after the weights)"),
        FLAG_SECTION("device:"),
        FLAG_CUSTOM("device", arg_device_kind, &cli->device.kind, "D",
                    ARG_DEVICE_HELP ". Under mpirun each node's target ranks\n"
                    "take GPUs 0, 1, ... and the draft the next free one"),
        FLAG_INT("gpu", &cli->gpu, "N", 0, 1023, "single process: which visible GPU (default 0)"),
        FLAG_SWITCH("load-format", &cli->device.dummy, "F", "auto", "dummy",
                    "auto | dummy: dummy reads config.json only and fills the\n"
                    "weights with seeded random values on the device (for 70B-\n"
                    "shape runs without checkpoints; needs --prompt-ids)"),
        FLAG_DOUBLE("gpu-memory-fraction", &cli->device.mem_fraction, "F", 0.01, 1.0,
                    "share of a GPU's free memory to use (default 0.9)"),
        FLAG_SWITCH("tp-comm", &cli->device.tp_over_mpi, "C", "nccl", "mpi",
                    "nccl | mpi: how target ranks all-reduce on GPUs (default\n"
                    "nccl; mpi goes through host memory and lets target ranks\n"
                    "share a GPU, for testing)"),
        FLAG_INT("simulate-hosts", &cli->device.simulate_hosts, "N", 1, 4096,
                 "spread the ranks over N simulated nodes (target rank t on\n"
                 "node t*N/T, the draft on the last): each gets its own\n"
                 "NCCL_HOSTID, so NCCL joins them over loopback sockets and\n"
                 "target ranks of different nodes may share a GPU (testing\n"
                 "and node-boundary benchmarks on one machine)"),
        FLAG_SECTION("generation:"),
        FLAG_STRING("prompt", &cli->prompt, "TEXT", "the prompt (non-empty)"),
        FLAG_STRING("prompt-ids", &cli->prompt_ids, "IDS", "the prompt as token ids (\"1 2 3\"), instead of --prompt"),
        FLAG_STRING("prompts-file", &cli->prompts_file, "FILE",
                    "distributed: one prompt per line, each run as a request"),
        FLAG_INT("max-tokens", &cli->max_tokens, "N", 1, 1 << 24, "generate at most N tokens (default 256)"),
        FLAG_FLOAT("temperature", &cli->sampling.temperature, "T", 0, 100, "0 = greedy (default 0)"),
        FLAG_INT("top-k", &cli->sampling.top_k, "K", 0, 1 << 24, "keep the K most likely tokens, 0 = off (default 0)"),
        FLAG_FLOAT("top-p", &cli->sampling.top_p, "P", 1e-6, 1, "nucleus sampling mass in (0, 1], 1 = off (default 1)"),
        FLAG_U64("seed", &cli->seed, "S", "RNG seed for sampling (default 0)"),
        FLAG_INT("threads", &cli->threads, "N", 1, 1024, "CPU threads per rank (default: online CPUs / ranks)"),
        FLAG_SECTION("speculation (distributed):"),
        FLAG_CUSTOM("draft-rule", parse_draft_rule, &cli->rule.kind, "RULE",
                    "fixed | heuristic | static | moving-average | cumulative\n"
                    "(default fixed)"),
        FLAG_INT("gamma", &cli->rule.gamma, "N", 1, DRAFT_RULE_MAX_GAMMA,
                 "fixed: tokens per proposal; heuristic: start and cap;\n"
                 "entropy rules: num_k, the most per proposal (default 4)"),
        FLAG_FLOAT("tau", &cli->rule.tau, "X", 1e-9, 1e9,
                   "static: stop when entropy >= X; cumulative: stop when the\n"
                   "sum of squared entropies >= X"),
        FLAG_FLOAT("lambda", &cli->rule.lambda, "X", 1e-9, 1e9, "moving-average: stop when H^2 >= X * mean(past H^2)"),
        FLAG_INT("window", &cli->rule.window, "N", 1, DRAFT_RULE_MAX_GAMMA,
                 "moving-average / cumulative: past entropies used (default 3)"),
        FLAG_BOOL("no-overlap", &cli->no_overlap, "the draft waits for each verdict instead of drafting ahead"),
        FLAG_BOOL("overlap", &cli->overlap,
                  "draft ahead even where the draft shares a GPU with a target\n"
                  "rank (by default it waits there, drafting beside the\n"
                  "verification slows the verification more than it hides;\n"
                  "except a fused greedy draft under CUDA MPS, which drafts\n"
                  "ahead on half the GPU's multiprocessors)"),
        {.name = "synthetic-acceptance", .kind = ARG_FLOAT, .dest = &cli->synthetic_acceptance,
         .given = &cli->have_synthetic, .min = 0, .max = 1, .value = "A",
         .help = "with --load-format dummy, greedy: keep each proposed token\n"
                 "with probability A (seeded) instead of the target's verdict,\n"
                 "to run real forwards, messages and KV trims at a chosen\n"
                 "acceptance; the text is then not the target's output"},
        FLAG_BOOL("measure-comm", &cli->measure_comm,
                  "time each tensor-parallel all-reduce on its own (the GPU is\n"
                  "synchronised before it, which costs a little speed) and print\n"
                  "the count, mean latency and time per token"),
        FLAG_BOOL("no-speculation", &cli->no_speculation, "target-only decoding on the same ranks (the baseline)"),
        FLAG_BOOL("compare-baseline", &cli->compare_baseline, "also run target-only and report the speedup"),
        FLAG_STRING("trace", &cli->trace_path, "FILE",
                    "write one record per proposed token (zstd protobuf stream;\n"
                    "read it with augur trace FILE --csv)"),
        FLAG_STRING("stats-json", &cli->stats_json_path, "FILE",
                    "distributed: also write the final stats (every figure\n"
                    "printed, and the settings) to FILE as one JSON object"),
        FLAG_INT("repeat", &cli->repeat, "N", 1, 1 << 24, "run N requests, seeds S, S+1, ... (default 1)"),
        FLAG_BOOL("ids-only", &cli->ids_only, "print generated token ids, one request per line"),
        FLAG_DOUBLE("timeout", &cli->timeout_s, "SEC", 0.1, 86400,
                    "fail when a peer rank is silent this long (default 60)"),
        FLAG_DOUBLE("startup-timeout", &cli->startup_timeout_s, "SEC", 0.1, 86400,
                    "fail when a rank has not finished start-up (placement,\n"
                    "loading its model) this long after the first (default 900)"),
        FLAG_HELP,
        FLAG_SECTION("test hooks (for augur's own tests):"),
        FLAG_CUSTOM("debug-acceptance", parse_acceptance, &cli->debug_acceptance, "V",
                    "correct | broken-resample: a deliberately wrong acceptance\n"
                    "rule (default correct)"),
        FLAG_INT("debug-draft-exit-after", &cli->debug_draft_exit_after, "N", 1, 1 << 24,
                 "the draft rank exits after N proposals"),
    };
    _Static_assert(sizeof specs <= GENERATE_MAX_SPECS * sizeof specs[0], "raise GENERATE_MAX_SPECS");
    memcpy(out, specs, sizeof specs);
    *cmd = (arg_command){.name = "generate", .synopsis = generate_synopsis, .specs = out,
                         .n_specs = sizeof specs / sizeof specs[0], .help_column = 23,
                         .check = check_generate, .cli = cli};
}

/* Returns ARGS_RUN to continue, else an exit code. */
static int parse_generate(int argc, char **argv, generate_cli *cli, config_args *config)
{
    generate_defaults(cli);
    *config = (config_args){0};
    int rc = args_device_default(&cli->device.kind);
    if (rc != ARGS_RUN)
        return rc;
    arg_spec specs[GENERATE_MAX_SPECS];
    arg_command cmd;
    generate_command(cli, specs, &cmd);
    rc = args_parse(&cmd, argc, argv, config);
    cli->device.draft_shares_gpu = cli->draft_placement == DRAFT_SHARED;
    return rc;
}

int generate_check_args(int argc, char **argv)
{
    generate_cli cli;
    config_args config;
    int rc = parse_generate(argc, argv, &cli, &config);
    config_args_free(&config);
    return rc;
}

augur_status generate_check_flag(const char *key, const char *value, augur_error *err)
{
    generate_cli scratch;
    generate_defaults(&scratch);
    arg_spec specs[GENERATE_MAX_SPECS];
    arg_command cmd;
    generate_command(&scratch, specs, &cmd);
    return args_check_flag(&cmd, key, value, err);
}

static void write_stdout(void *user, const char *text, size_t len)
{
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

static int run_single(const generate_cli *cli, augur_error *err)
{
    model m = {0};
    tokenizer *tok = NULL;
    forward_ctx fwd = {0};
    kv_cache kv = {0};
    int32_t *prompt = NULL;
    size_t n_prompt = 0;
    augur_backend *be = NULL;
    device_opts dev = cli->device;
    dev.threads = cli->threads;
    memory_plan plan = {0};
    augur_status st = device_open_backend(&be, &dev, cli->gpu, err);
    if (!st)
        st = device_load_model(&m, be, cli->model_path, NULL, &dev, err);
    if (!st && (cli->device.dummy || (cli->prompt_ids && cli->ids_only)) && !cli->tokenizer_path) {
        /* ids in, ids out: a model directory without tokenizer.json is fine */
        augur_error ignored = {0};
        if (open_tokenizer_for(&m, NULL, &tok, &ignored))
            tok = NULL;
    } else if (!st) {
        st = open_tokenizer_for(&m, cli->tokenizer_path, &tok, err);
    }
    if (!st && cli->prompt_ids)
        st = parse_token_ids("--prompt-ids", cli->prompt_ids, m.cfg.vocab_size, &prompt, &n_prompt, err);
    else if (!st)
        st = tokenizer_encode(tok, cli->prompt, strlen(cli->prompt), true, &prompt, &n_prompt, err);
    if (!st) {
        st = device_plan_memory(&m, be, &dev, cli->max_context, 0, SINGLE_FORWARD_TOKENS, &plan, err);
        if (!st && !be->caps.host_memory)
            memory_plan_print(stderr, "model", &plan);
    }
    int ctx = plan.context;
    if (!st && (int)n_prompt + cli->max_tokens > ctx)
        st = augur_fail(err, AUGUR_E_INPUT,
                        "prompt of %zu tokens plus --max-tokens %d exceeds the context of %d positions", n_prompt,
                        cli->max_tokens, ctx);
    if (!st)
        st = kv_cache_init(&kv, be, m.cfg.n_layers, ctx, m.n_kv_heads_local, m.cfg.head_dim, err);
    if (!st)
        st = forward_init(&fwd, &m, be, NULL, cli->threads, SINGLE_FORWARD_TOKENS, ctx, err);
    generate_stats stats = {0};
    if (!st) {
        generate_opts opts = {.max_tokens = cli->max_tokens, .sampling = cli->sampling, .seed = cli->seed,
                              .echo_prompt = true};
        text_sink sink = {.write = write_stdout};
        bool ids_out = cli->ids_only || !tok; /* dummy weights without a tokenizer: ids */
        int32_t *ids = malloc((size_t)cli->max_tokens * sizeof(int32_t));
        if (!ids)
            st = augur_fail(err, AUGUR_E_NOMEM, "out of memory for %d tokens", cli->max_tokens);
        if (!st)
            st = generate_run(&fwd, &kv, tok, prompt, (int)n_prompt, &opts, ids_out ? NULL : &sink, ids, &stats,
                              err);
        for (int i = 0; !st && ids_out && i < stats.generated_tokens; i++)
            printf(i ? " %d" : "%d", ids[i]);
        free(ids);
        fputc('\n', stdout);
        fflush(stdout);
    }
    if (!st) {
        int steps = stats.generated_tokens - 1;
        double tps = steps > 0 && stats.decode_ms > 0 ? steps / (stats.decode_ms / 1e3) : 0.0;
        char where[160];
        describe_backend(be, cli->threads, where, sizeof where);
        fprintf(stderr,
                "augur: prompt %d token%s, generated %d token%s%s, prefill %.2f ms, decode %.1f tok/s (%s)\n",
                stats.prompt_tokens, plural(stats.prompt_tokens), stats.generated_tokens,
                plural(stats.generated_tokens), stats.hit_eos ? " (eos)" : "", stats.prefill_ms, tps, where);
    }
    free(prompt);
    forward_report_graphs(&fwd, "generate");
    forward_free(&fwd);
    kv_cache_free(&kv);
    tokenizer_free(tok);
    model_free(&m);
    backend_destroy(be);
    return st ? cli_report(err) : 0;
}

int cmd_generate(int argc, char **argv)
{
    augur_error err = {0};
    generate_cli cli;
    config_args config;
    int rc = parse_generate(argc, argv, &cli, &config);
    if (rc == ARGS_RUN && cli.target_path) {
        rc = run_generate_distributed(&cli);
    } else if (rc == ARGS_RUN) {
        if (!cli.threads)
            cli.threads = online_cpus();
        rc = run_single(&cli, &err);
    }
    config_args_free(&config);
    return rc;
}
