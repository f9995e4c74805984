/* augur logits: runs a prompt of token ids through one forward pass per chunk and
 * writes every position's logits to a file (raw little-endian float32, [n][vocab]), for
 * checking a backend against another implementation (tools/gpu/hf_logits_check.py). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher/args.h"
#include "launcher/commands.h"
#include "launcher/model_files.h"
#include "kernels/cuda/cuda_backend.h"
#include "runtime/device_plan.h"
#include "runtime/forward.h"
#include "runtime/kv_cache.h"

/* The KV cache is sized to the prompt rounded up to this many positions. */
#define LOGITS_CONTEXT_ROUND 64

static const char logits_usage[] =
    "usage: augur logits --model PATH --prompt-ids IDS --out FILE [options]\n"
    "\n"
    "Runs the prompt through the model (one forward pass per chunk of positions) and\n"
    "writes the logits of every position to FILE as raw little-endian float32,\n"
    "[positions][vocab_size] row-major; prints the shape to stderr.\n"
    "\n"
    "  --model PATH         Hugging Face model directory (config.json, *.safetensors) or\n"
    "                       llama2.c checkpoint (.bin)\n"
    "  --prompt-ids IDS     the input as token ids (\"1 2 3\", spaces or commas)\n"
    "  --out FILE           where to write the logits\n"
    "  --device D           auto | cpu | cuda (default: $AUGUR_DEVICE, else auto: cuda\n"
    "                       when a GPU is visible)\n"
    "  --gpu N              which visible GPU (default 0)\n"
    "  --load-format F      auto | dummy: dummy reads config.json only and fills the\n"
    "                       weights with seeded random values (default auto)\n"
    "  --threads N          CPU threads (default: online CPUs)\n"
    "  --chunk N            positions per forward pass (default 64); the CPU backend\n"
    "                       gives the same bits for every chunk size\n"
    "  -h, --help           show this help\n";

enum { OPT_MODEL = 1000, OPT_PROMPT_IDS, OPT_OUT, OPT_DEVICE, OPT_GPU, OPT_LOAD_FORMAT, OPT_THREADS, OPT_CHUNK };

static const struct option logits_options[] = {
    {"model", required_argument, NULL, OPT_MODEL},
    {"prompt-ids", required_argument, NULL, OPT_PROMPT_IDS},
    {"out", required_argument, NULL, OPT_OUT},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"gpu", required_argument, NULL, OPT_GPU},
    {"load-format", required_argument, NULL, OPT_LOAD_FORMAT},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"chunk", required_argument, NULL, OPT_CHUNK},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct {
    const char *model_path;
    const char *prompt_ids;
    const char *out_path;
    device_opts device;
    int gpu;
    int threads;
    int chunk;
} logits_cli;

static augur_status parse_one(int c, const char *arg, logits_cli *cli, augur_error *err)
{
    switch (c) {
    case OPT_MODEL: cli->model_path = arg; return AUGUR_OK;
    case OPT_PROMPT_IDS: cli->prompt_ids = arg; return AUGUR_OK;
    case OPT_OUT: cli->out_path = arg; return AUGUR_OK;
    case OPT_DEVICE: return device_kind_parse("--device", arg, &cli->device.kind, err);
    case OPT_GPU: return arg_int("--gpu", arg, 0, 1023, &cli->gpu, err);
    case OPT_LOAD_FORMAT:
        if (strcmp(arg, "auto") && strcmp(arg, "dummy"))
            return augur_fail(err, AUGUR_E_INPUT, "--load-format: '%s' is not auto or dummy", arg);
        cli->device.dummy = !strcmp(arg, "dummy");
        return AUGUR_OK;
    case OPT_THREADS: return arg_int("--threads", arg, 1, 1024, &cli->threads, err);
    case OPT_CHUNK: return arg_int("--chunk", arg, 1, 1 << 16, &cli->chunk, err);
    default: return augur_fail(err, AUGUR_E_INTERNAL, "unhandled option %d", c);
    }
}

/* Returns -1 to continue, else an exit code. */
static int parse_logits(int argc, char **argv, logits_cli *cli, augur_error *err)
{
    *cli = (logits_cli){.chunk = 64, .device = {.kind = AUGUR_DEVICE_AUTO, .dummy_seed = 0x5eed}};
    if (device_kind_default(&cli->device.kind, err))
        return cli_report(err);
    optind = 1;
    opterr = 0;
    int c;
    augur_status st = AUGUR_OK;
    while (!st && (c = getopt_long(argc, argv, ":h", logits_options, NULL)) != -1) {
        if (c == 'h') {
            fputs(logits_usage, stdout);
            return 0;
        }
        if (c == ':')
            st = augur_fail(err, AUGUR_E_INPUT, "%s needs a value", argv[optind - 1]);
        else if (c == '?')
            st = augur_fail(err, AUGUR_E_INPUT, "unknown option '%s' (see augur logits --help)", argv[optind - 1]);
        else
            st = parse_one(c, optarg, cli, err);
    }
    if (!st && optind < argc)
        st = augur_fail(err, AUGUR_E_INPUT, "unexpected argument '%s' (see augur logits --help)", argv[optind]);
    if (!st && !cli->model_path)
        st = augur_fail(err, AUGUR_E_INPUT, "--model PATH is required (see augur logits --help)");
    if (!st && !cli->prompt_ids)
        st = augur_fail(err, AUGUR_E_INPUT, "--prompt-ids IDS is required (see augur logits --help)");
    if (!st && (!cli->out_path || !cli->out_path[0]))
        st = augur_fail(err, AUGUR_E_INPUT, "--out FILE is required (see augur logits --help)");
    if (!st && !cli->threads) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        cli->threads = ncpu > 0 ? (int)ncpu : 1;
    }
    return st ? cli_report(err) : -1;
}

/* Writes n floats as little-endian float32. */
static augur_status write_f32_le(FILE *f, const char *path, const float *x, size_t n, augur_error *err)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++) {
        unsigned char b[4];
        memcpy(b, &x[i], 4);
        unsigned char le[4] = {b[3], b[2], b[1], b[0]};
        if (fwrite(le, 1, 4, f) != 4)
            return augur_fail(err, AUGUR_E_IO, "%s: write failed", path);
    }
#else
    if (n && fwrite(x, sizeof(float), n, f) != n)
        return augur_fail(err, AUGUR_E_IO, "%s: write failed", path);
#endif
    return AUGUR_OK;
}

static augur_status run_logits(const logits_cli *cli, augur_error *err)
{
    model m = {0};
    forward_ctx fwd = {0};
    kv_cache kv = {0};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    float *logits = NULL;
    augur_backend *be = NULL;
    FILE *out = NULL;
    device_opts dev = cli->device;
    dev.threads = cli->threads;
    memory_plan plan = {0};

    augur_status st = device_open_backend(&be, &dev, cli->gpu, err);
    if (!st)
        st = device_load_model(&m, be, cli->model_path, NULL, &dev, err);
    if (!st)
        st = parse_token_ids("--prompt-ids", cli->prompt_ids, m.cfg.vocab_size, &ids, &n_ids, err);
    int n = (int)n_ids;
    if (!st && n > m.cfg.max_seq_len)
        st = augur_fail(err, AUGUR_E_INPUT, "--prompt-ids: %d ids exceed %s's max_position_embeddings %d", n,
                        m.source, m.cfg.max_seq_len);
    int chunk = cli->chunk < n ? cli->chunk : n;
    if (!st) {
        long want = ((long)n + LOGITS_CONTEXT_ROUND - 1) / LOGITS_CONTEXT_ROUND * LOGITS_CONTEXT_ROUND;
        int requested = want > m.cfg.max_seq_len ? m.cfg.max_seq_len : (int)want;
        if (requested < 2)
            requested = 2;
        st = device_plan_memory(&m, be, &dev, requested, 0, chunk, &plan, err);
        if (!st && strcmp(be->name, "cpu") != 0)
            memory_plan_print(stderr, "model", &plan);
    }
    int ctx = plan.context;
    if (!st)
        st = kv_cache_init(&kv, be, m.cfg.n_layers, ctx, m.n_kv_heads_local, m.cfg.head_dim, err);
    if (!st)
        st = forward_init(&fwd, &m, be, NULL, cli->threads, chunk, ctx, err);
    int vocab = m.vocab_local;
    if (!st && !(logits = malloc((size_t)n * (size_t)vocab * sizeof(float))))
        st = augur_fail(err, AUGUR_E_NOMEM, "out of memory for %d x %d logits", n, vocab);
    for (int pos = 0; !st && pos < n; pos += chunk) {
        int len = n - pos < chunk ? n - pos : chunk;
        st = forward_run(&fwd, &kv, ids + pos, len, 0, logits + (size_t)pos * (size_t)vocab, err);
    }
    if (!st && !(out = fopen(cli->out_path, "wb")))
        st = augur_fail(err, AUGUR_E_IO, "--out %s: cannot open for writing: %s", cli->out_path,
                        strerror(errno));
    if (!st)
        st = write_f32_le(out, cli->out_path, logits, (size_t)n * (size_t)vocab, err);
    if (out && fclose(out) != 0 && !st)
        st = augur_fail(err, AUGUR_E_IO, "%s: write failed", cli->out_path);
    if (out && st)
        remove(cli->out_path);
    if (!st) {
        char where[192];
        if (strcmp(be->name, "cpu") == 0) {
            snprintf(where, sizeof where, "%d thread%s", cli->threads, cli->threads == 1 ? "" : "s");
        } else {
            char name[128];
            backend_cuda_device_name(backend_cuda_device(be), name, sizeof name);
            snprintf(where, sizeof where, "GPU %d, %s", backend_cuda_device(be), name);
        }
        fprintf(stderr, "augur: logits %d x %d (%s, %s) -> %s\n", n, vocab, be->name, where, cli->out_path);
    }
    free(logits);
    free(ids);
    forward_free(&fwd);
    kv_cache_free(&kv);
    model_free(&m);
    backend_destroy(be);
    return st;
}

int cmd_logits(int argc, char **argv)
{
    augur_error err = {0};
    logits_cli cli;
    int rc = parse_logits(argc, argv, &cli, &err);
    if (rc >= 0)
        return rc;
    return run_logits(&cli, &err) ? cli_report(&err) : 0;
}
