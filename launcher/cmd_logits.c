/* augur logits: runs a prompt of token ids through one forward pass per chunk and
 * writes every position's logits to a file (raw little-endian float32, [n][vocab]), for
 * checking a backend against another implementation (tools/gpu/hf_logits_check.py). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/args.h"
#include "launcher/commands.h"
#include "launcher/model_files.h"
#include "runtime/device_plan.h"
#include "runtime/forward.h"
#include "runtime/kv_cache.h"

/* The KV cache is sized to the prompt rounded up to this many positions. */
#define LOGITS_CONTEXT_ROUND 64

static const char logits_synopsis[] =
    "usage: augur logits --model PATH --prompt-ids IDS --out FILE [options]\n"
    "\n"
    "Runs the prompt through the model (one forward pass per chunk of positions) and\n"
    "writes the logits of every position to FILE as raw little-endian float32,\n"
    "[positions][vocab_size] row-major; prints the shape to stderr.\n"
    "\n";

typedef struct {
    const char *model_path;
    const char *prompt_ids;
    const char *out_path;
    device_opts device;
    int gpu;
    int threads;
    int chunk;
} logits_cli;

/* Returns ARGS_RUN to continue, else an exit code. */
static int parse_logits(int argc, char **argv, logits_cli *cli)
{
    *cli = (logits_cli){.chunk = 64, .device = {.kind = AUGUR_DEVICE_AUTO, .dummy_seed = 0x5eed}};
    int rc = args_device_default(&cli->device.kind);
    if (rc != ARGS_RUN)
        return rc;
    const arg_spec specs[] = {
        FLAG_REQUIRED("model", &cli->model_path, "PATH", MODEL_PATH_HELP),
        FLAG_REQUIRED("prompt-ids", &cli->prompt_ids, "IDS",
                      "the input as token ids (\"1 2 3\", spaces or commas)"),
        FLAG_REQUIRED("out", &cli->out_path, "FILE", "where to write the logits"),
        FLAG_CUSTOM("device", arg_device_kind, &cli->device.kind, "D", ARG_DEVICE_HELP),
        FLAG_INT("gpu", &cli->gpu, "N", 0, 1023, "which visible GPU (default 0)"),
        FLAG_SWITCH("load-format", &cli->device.dummy, "F", "auto", "dummy",
                    "auto | dummy: dummy reads config.json only and fills the\n"
                    "weights with seeded random values (default auto)"),
        FLAG_INT("threads", &cli->threads, "N", 1, 1024, "CPU threads (default: online CPUs)"),
        FLAG_INT("chunk", &cli->chunk, "N", 1, 1 << 16,
                 "positions per forward pass (default 64); the CPU backend\n"
                 "gives the same bits for every chunk size"),
        FLAG_HELP,
    };
    const arg_command cmd = {.name = "logits", .synopsis = logits_synopsis, .specs = specs,
                             .n_specs = sizeof specs / sizeof specs[0], .help_column = 23};
    return args_parse(&cmd, argc, argv, NULL);
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
        if (!st && !be->caps.host_memory)
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
        describe_backend(be, cli->threads, where, sizeof where);
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
    int rc = parse_logits(argc, argv, &cli);
    if (rc != ARGS_RUN)
        return rc;
    if (!cli.threads)
        cli.threads = online_cpus();
    return run_logits(&cli, &err) ? cli_report(&err) : 0;
}
