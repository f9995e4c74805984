/* augur generate: single-process generation (--model) and, under mpirun,
 * distributed speculative decoding (--target / --draft). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher/args.h"
#include "launcher/commands.h"
#include "launcher/config_file.h"
#include "launcher/generate_cli.h"
#include "launcher/model_files.h"
#include "kernels/cuda/cuda_backend.h"
#include "runtime/device_plan.h"
#include "runtime/generate.h"

/* Most positions one forward carries in single-process generation (prefill chunks). */
#define SINGLE_FORWARD_TOKENS 64

static const char generate_usage[] =
    "usage: augur generate --model PATH --prompt TEXT [options]\n"
    "       mpirun -np T+1 augur generate --target PATH (--draft PATH | --draft-layers K)\n"
    "              --prompt TEXT [options]\n"
    "\n"
    "Streams the prompt and then the generated text to stdout; prints stats to stderr\n"
    "when done. Under mpirun, ranks 0..T-1 hold the target tensor-parallel and rank T\n"
    "the draft; only rank 0 writes text.\n"
    "\n"
    "  --config FILE        a JSON object of these flags (e.g. configs/tiny-cpu.json);\n"
    "                       flags given on the command line override it\n"
    "\n"
    "model:\n"
    "  --model PATH         single process: Hugging Face model directory (config.json,\n"
    "                       *.safetensors, tokenizer.json) or llama2.c checkpoint (.bin)\n"
    "  --target PATH        distributed: the target model, sharded over T ranks\n"
    "  --draft PATH         distributed: the draft model (same vocabulary)\n"
    "  --draft-layers K     distributed: draft with the target's first K layers instead\n"
    "  --tp T               target ranks (default: mpirun's rank count - 1)\n"
    "  --tokenizer FILE     tokenizer.json or llama2.c tokenizer.bin (default:\n"
    "                       <model>/tokenizer.json; required for llama2.c checkpoints)\n"
    "  --max-context N      KV-cache positions to allocate (default: the model's\n"
    "                       max_position_embeddings, at most 4096 on CPU; on a GPU as\n"
    "                       many as fit in its free memory after the weights)\n"
    "\n"
    "device:\n"
    "  --device D           auto | cpu | cuda (default: $AUGUR_DEVICE, else auto: cuda\n"
    "                       when a GPU is visible). Under mpirun each node's target ranks\n"
    "                       take GPUs 0, 1, ... and the draft the next free one\n"
    "  --gpu N              single process: which visible GPU (default 0)\n"
    "  --load-format F      auto | dummy: dummy reads config.json only and fills the\n"
    "                       weights with seeded random values on the device (for 70B-\n"
    "                       shape runs without checkpoints; needs --prompt-ids)\n"
    "  --gpu-memory-fraction F  share of a GPU's free memory to use (default 0.9)\n"
    "  --tp-comm C          nccl | mpi: how target ranks all-reduce on GPUs (default\n"
    "                       nccl; mpi goes through host memory and lets target ranks\n"
    "                       share a GPU, for testing)\n"
    "\n"
    "generation:\n"
    "  --prompt TEXT        the prompt (non-empty)\n"
    "  --prompt-ids IDS     the prompt as token ids (\"1 2 3\"), instead of --prompt\n"
    "  --prompts-file FILE  distributed: one prompt per line, each run as a request\n"
    "  --max-tokens N       generate at most N tokens (default 256)\n"
    "  --temperature T      0 = greedy (default 0)\n"
    "  --top-k K            keep the K most likely tokens, 0 = off (default 0)\n"
    "  --top-p P            nucleus sampling mass in (0, 1], 1 = off (default 1)\n"
    "  --seed S             RNG seed for sampling (default 0)\n"
    "  --threads N          CPU threads per rank (default: online CPUs / ranks)\n"
    "\n"
    "speculation (distributed):\n"
    "  --draft-rule RULE    fixed | heuristic | static | moving-average | cumulative\n"
    "                       (default fixed)\n"
    "  --gamma N            fixed: tokens per proposal; heuristic: initial length;\n"
    "                       entropy rules: num_k, the most per proposal (default 4)\n"
    "  --tau X              static: stop when entropy >= X; cumulative: stop when the\n"
    "                       sum of squared entropies >= X\n"
    "  --lambda X           moving-average: stop when H^2 >= X * mean(past H^2)\n"
    "  --window N           moving-average / cumulative: past entropies used (default 3)\n"
    "  --no-overlap         the draft waits for each verdict instead of drafting ahead\n"
    "  --no-speculation     target-only decoding on the same ranks (the baseline)\n"
    "  --compare-baseline   also run target-only and report the speedup\n"
    "  --trace FILE         write one record per proposed token (zstd protobuf stream;\n"
    "                       read it with augur trace FILE --csv)\n"
    "  --repeat N           run N requests, seeds S, S+1, ... (default 1)\n"
    "  --ids-only           print generated token ids, one request per line\n"
    "  --timeout SEC        fail when a peer rank is silent this long (default 60)\n"
    "  -h, --help           show this help\n"
    "\n"
    "test hooks (for augur's own tests):\n"
    "  --debug-acceptance broken-resample   a deliberately wrong acceptance rule\n"
    "  --debug-draft-exit-after N           the draft rank exits after N proposals\n";

enum { OPT_MODEL = 1000, OPT_TARGET, OPT_DRAFT, OPT_DRAFT_LAYERS, OPT_TP, OPT_TOKENIZER, OPT_PROMPT,
       OPT_PROMPT_IDS, OPT_PROMPTS_FILE, OPT_MAX_TOKENS, OPT_MAX_CONTEXT, OPT_TEMPERATURE, OPT_TOP_K, OPT_TOP_P, OPT_SEED,
       OPT_THREADS, OPT_DRAFT_RULE, OPT_GAMMA, OPT_TAU, OPT_LAMBDA, OPT_WINDOW, OPT_NO_OVERLAP,
       OPT_NO_SPECULATION, OPT_COMPARE_BASELINE, OPT_TRACE, OPT_REPEAT, OPT_IDS_ONLY, OPT_TIMEOUT,
       OPT_DEBUG_ACCEPTANCE, OPT_DEBUG_DRAFT_EXIT, OPT_DEVICE, OPT_GPU, OPT_LOAD_FORMAT, OPT_GPU_MEM, OPT_TP_COMM };

static const struct option generate_options[] = {
    {"model", required_argument, NULL, OPT_MODEL},
    {"target", required_argument, NULL, OPT_TARGET},
    {"draft", required_argument, NULL, OPT_DRAFT},
    {"draft-layers", required_argument, NULL, OPT_DRAFT_LAYERS},
    {"tp", required_argument, NULL, OPT_TP},
    {"tokenizer", required_argument, NULL, OPT_TOKENIZER},
    {"prompt", required_argument, NULL, OPT_PROMPT},
    {"prompt-ids", required_argument, NULL, OPT_PROMPT_IDS},
    {"prompts-file", required_argument, NULL, OPT_PROMPTS_FILE},
    {"max-tokens", required_argument, NULL, OPT_MAX_TOKENS},
    {"max-context", required_argument, NULL, OPT_MAX_CONTEXT},
    {"temperature", required_argument, NULL, OPT_TEMPERATURE},
    {"top-k", required_argument, NULL, OPT_TOP_K},
    {"top-p", required_argument, NULL, OPT_TOP_P},
    {"seed", required_argument, NULL, OPT_SEED},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"draft-rule", required_argument, NULL, OPT_DRAFT_RULE},
    {"gamma", required_argument, NULL, OPT_GAMMA},
    {"tau", required_argument, NULL, OPT_TAU},
    {"lambda", required_argument, NULL, OPT_LAMBDA},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"no-overlap", no_argument, NULL, OPT_NO_OVERLAP},
    {"no-speculation", no_argument, NULL, OPT_NO_SPECULATION},
    {"compare-baseline", no_argument, NULL, OPT_COMPARE_BASELINE},
    {"trace", required_argument, NULL, OPT_TRACE},
    {"repeat", required_argument, NULL, OPT_REPEAT},
    {"ids-only", no_argument, NULL, OPT_IDS_ONLY},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"gpu", required_argument, NULL, OPT_GPU},
    {"load-format", required_argument, NULL, OPT_LOAD_FORMAT},
    {"gpu-memory-fraction", required_argument, NULL, OPT_GPU_MEM},
    {"tp-comm", required_argument, NULL, OPT_TP_COMM},
    /* test hooks */
    {"debug-acceptance", required_argument, NULL, OPT_DEBUG_ACCEPTANCE},
    {"debug-draft-exit-after", required_argument, NULL, OPT_DEBUG_DRAFT_EXIT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static augur_status parse_one(int c, const char *arg, generate_cli *cli, augur_error *err)
{
    float f = 0;
    augur_status st = AUGUR_OK;
    switch (c) {
    case OPT_MODEL: cli->model_path = arg; break;
    case OPT_TARGET: cli->target_path = arg; break;
    case OPT_DRAFT: cli->draft_path = arg; break;
    case OPT_DRAFT_LAYERS: return arg_int("--draft-layers", arg, 1, 1 << 16, &cli->draft_layers, err);
    case OPT_TP: return arg_int("--tp", arg, 1, 4096, &cli->tp, err);
    case OPT_TOKENIZER: cli->tokenizer_path = arg; break;
    case OPT_PROMPT: cli->prompt = arg; break;
    case OPT_PROMPT_IDS: cli->prompt_ids = arg; break;
    case OPT_PROMPTS_FILE: cli->prompts_file = arg; break;
    case OPT_MAX_TOKENS: return arg_int("--max-tokens", arg, 1, 1 << 24, &cli->max_tokens, err);
    case OPT_MAX_CONTEXT: return arg_int("--max-context", arg, 2, 1 << 24, &cli->max_context, err);
    case OPT_TEMPERATURE: return arg_float("--temperature", arg, 0, 100, &cli->sampling.temperature, err);
    case OPT_TOP_K: return arg_int("--top-k", arg, 0, 1 << 24, &cli->sampling.top_k, err);
    case OPT_TOP_P: return arg_float("--top-p", arg, 1e-6, 1, &cli->sampling.top_p, err);
    case OPT_SEED: return arg_u64("--seed", arg, &cli->seed, err);
    case OPT_THREADS: return arg_int("--threads", arg, 1, 1024, &cli->threads, err);
    case OPT_DRAFT_RULE: return draft_rule_kind_parse(arg, &cli->rule.kind, err);
    case OPT_GAMMA: return arg_int("--gamma", arg, 1, DRAFT_RULE_MAX_GAMMA, &cli->rule.gamma, err);
    case OPT_TAU: return arg_float("--tau", arg, 1e-9, 1e9, &cli->rule.tau, err);
    case OPT_LAMBDA: return arg_float("--lambda", arg, 1e-9, 1e9, &cli->rule.lambda, err);
    case OPT_WINDOW: return arg_int("--window", arg, 1, DRAFT_RULE_MAX_GAMMA, &cli->rule.window, err);
    case OPT_NO_OVERLAP: cli->no_overlap = true; break;
    case OPT_NO_SPECULATION: cli->no_speculation = true; break;
    case OPT_COMPARE_BASELINE: cli->compare_baseline = true; break;
    case OPT_TRACE: cli->trace_path = arg; break;
    case OPT_REPEAT: return arg_int("--repeat", arg, 1, 1 << 24, &cli->repeat, err);
    case OPT_IDS_ONLY: cli->ids_only = true; break;
    case OPT_TIMEOUT:
        st = arg_float("--timeout", arg, 0.1, 86400, &f, err);
        cli->timeout_s = f;
        return st;
    case OPT_DEBUG_ACCEPTANCE:
        if (!strcmp(arg, "broken-resample"))
            cli->debug_acceptance = ACCEPT_BROKEN_RESAMPLE_FROM_P;
        else if (strcmp(arg, "correct"))
            return augur_fail(err, AUGUR_E_INPUT, "--debug-acceptance: '%s' is not correct or broken-resample", arg);
        break;
    case OPT_DEVICE: return device_kind_parse("--device", arg, &cli->device.kind, err);
    case OPT_GPU: return arg_int("--gpu", arg, 0, 1023, &cli->gpu, err);
    case OPT_LOAD_FORMAT:
        if (strcmp(arg, "auto") && strcmp(arg, "dummy"))
            return augur_fail(err, AUGUR_E_INPUT, "--load-format: '%s' is not auto or dummy", arg);
        cli->device.dummy = !strcmp(arg, "dummy");
        break;
    case OPT_GPU_MEM:
        st = arg_float("--gpu-memory-fraction", arg, 0.01f, 1.0f, &f, err);
        cli->device.mem_fraction = f;
        return st;
    case OPT_TP_COMM:
        if (strcmp(arg, "nccl") && strcmp(arg, "mpi"))
            return augur_fail(err, AUGUR_E_INPUT, "--tp-comm: '%s' is not nccl or mpi", arg);
        cli->device.tp_over_mpi = !strcmp(arg, "mpi");
        break;
    case OPT_DEBUG_DRAFT_EXIT:
        return arg_int("--debug-draft-exit-after", arg, 1, 1 << 24, &cli->debug_draft_exit_after, err);
    default:
        return augur_fail(err, AUGUR_E_INTERNAL, "unhandled option %d", c);
    }
    return st;
}

/* Returns -1 to continue, else an exit code. */
static int parse_generate(int argc, char **argv, generate_cli *cli, augur_error *err)
{
    *cli = (generate_cli){.max_tokens = 256, .repeat = 1, .timeout_s = 60,
                          .sampling = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f},
                          .rule = {.kind = DRAFT_RULE_FIXED, .gamma = 4, .window = 3},
                          .device = {.kind = AUGUR_DEVICE_AUTO, .dummy_seed = 0x5eed}};
    if (device_kind_default(&cli->device.kind, err))
        return cli_report(err);
    optind = 1;
    opterr = 0;
    int c;
    augur_status st = AUGUR_OK;
    while (!st && (c = getopt_long(argc, argv, ":h", generate_options, NULL)) != -1) {
        if (c == 'h') {
            fputs(generate_usage, stdout);
            return 0;
        }
        if (c == ':')
            st = augur_fail(err, AUGUR_E_INPUT, "%s needs a value", argv[optind - 1]);
        else if (c == '?')
            st = augur_fail(err, AUGUR_E_INPUT, "unknown option '%s' (see augur generate --help)", argv[optind - 1]);
        else
            st = parse_one(c, optarg, cli, err);
    }
    if (!st && optind < argc)
        st = augur_fail(err, AUGUR_E_INPUT, "unexpected argument '%s' (see augur generate --help)", argv[optind]);
    if (!st && !cli->model_path && !cli->target_path)
        st = augur_fail(err, AUGUR_E_INPUT, "--model PATH or --target PATH is required (see augur generate --help)");
    if (!st && cli->model_path && cli->target_path)
        st = augur_fail(err, AUGUR_E_INPUT, "--model and --target exclude each other");
    if (!st && cli->prompts_file && !cli->target_path)
        st = augur_fail(err, AUGUR_E_INPUT, "--prompts-file needs --target (distributed mode)");
    if (!st && !cli->prompt_ids && !cli->prompts_file && (!cli->prompt || !cli->prompt[0]))
        st = augur_fail(err, AUGUR_E_INPUT, "--prompt TEXT is required and must not be empty");
    if (!st && cli->target_path && !cli->no_speculation && !cli->draft_path && !cli->draft_layers)
        st = augur_fail(err, AUGUR_E_INPUT, "--target needs --draft PATH or --draft-layers K (or --no-speculation)");
    if (!st && cli->device.dummy && !cli->prompt_ids && !cli->tokenizer_path)
        st = augur_fail(err, AUGUR_E_INPUT,
                        "--load-format dummy reads config.json only: give --prompt-ids (or --tokenizer FILE)");
    if (!st && cli->draft_path && cli->draft_layers)
        st = augur_fail(err, AUGUR_E_INPUT, "--draft and --draft-layers exclude each other");
    if (!st && cli->model_path && (cli->draft_path || cli->draft_layers || cli->trace_path))
        st = augur_fail(err, AUGUR_E_INPUT, "--draft, --draft-layers and --trace need --target (distributed mode)");
    if (!st)
        st = draft_rule_validate(&cli->rule, err);
    return st ? cli_report(err) : -1;
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
        if (!st && strcmp(be->name, "cpu") != 0)
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
        if (strcmp(be->name, "cpu") == 0) {
            snprintf(where, sizeof where, "%d threads", cli->threads);
        } else {
            char name[128];
            backend_cuda_device_name(cli->gpu, name, sizeof name);
            snprintf(where, sizeof where, "GPU %d, %s", cli->gpu, name);
        }
        fprintf(stderr,
                "augur: prompt %d tokens, generated %d tokens%s, prefill %.2f ms, decode %.1f tok/s "
                "(%s)\n",
                stats.prompt_tokens, stats.generated_tokens, stats.hit_eos ? " (eos)" : "", stats.prefill_ms, tps,
                where);
    }
    free(prompt);
    forward_free(&fwd);
    kv_cache_free(&kv);
    tokenizer_free(tok);
    model_free(&m);
    backend_destroy(be);
    return st ? cli_report(err) : 0;
}

static int generate_main(int argc, char **argv)
{
    augur_error err = {0};
    generate_cli cli;
    int rc = parse_generate(argc, argv, &cli, &err);
    if (rc >= 0)
        return rc;
    if (cli.target_path)
        return run_generate_distributed(&cli);
    if (!cli.threads) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        cli.threads = ncpu > 0 ? (int)ncpu : 1;
    }
    return run_single(&cli, &err);
}

int cmd_generate(int argc, char **argv)
{
    augur_error err = {0};
    config_args args;
    if (config_args_expand(&args, argc, argv, &err))
        return cli_report(&err);
    int rc = generate_main(args.argc, args.argv);
    config_args_free(&args);
    return rc;
}
