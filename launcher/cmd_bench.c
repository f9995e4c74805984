/* augur bench: times the forward pass of one tensor-parallel rank's shard (decode and
 * verification sizes) against the floor its memory bandwidth sets: reading this rank's
 * weights once. Loads shard R of T alone, with no collectives, so one GPU shows what one
 * GPU of a T-GPU job computes per forward, minus the all-reduces. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "launcher/args.h"
#include "launcher/commands.h"
#include "launcher/model_files.h"
#include "runtime/device_plan.h"
#include "runtime/forward.h"
#include "runtime/kv_cache.h"

#ifdef AUGUR_HAVE_CUDA
/* Named ranges around the timed forwards, so that a profiler (ncu --nvtx --nvtx-include
 * "bench n=6/", tools/gpu/ncu_forward.sh) can select one width's forwards; header-only,
 * free when no profiler is attached. */
#include <nvtx3/nvToolsExt.h>
#define BENCH_RANGE_PUSH(name) nvtxRangePushA(name)
#define BENCH_RANGE_POP() nvtxRangePop()
#else
#define BENCH_RANGE_PUSH(name) ((void)(name))
#define BENCH_RANGE_POP() ((void)0)
#endif

#define BENCH_MAX_POSITIONS 16     /* largest --positions value: a verification of γ+1 <= 16 */
#define BENCH_MAX_LIST 16          /* values in one --positions list */
#define BENCH_DEFAULT_CONTEXT 1024
#define BENCH_CHUNK 64             /* the forward's max_tokens: prefill chunk, >= every --positions value */
#define BENCH_BW_REPEATS 10
#define BENCH_BW_WARMUP 2
#define BENCH_BW_BYTES_GPU ((size_t)1 << 30)
#define BENCH_BW_BYTES_CPU ((size_t)256 << 20)
#define BENCH_SEED 0x5eedbe4cULL

static const char bench_synopsis[] =
    "usage: augur bench --model PATH [options]\n"
    "\n"
    "Times forward passes of n positions (one-position decode, a gamma+1 verification)\n"
    "over one tensor-parallel rank's shard of the model, against the floor set by memory\n"
    "bandwidth: this rank's weight bytes (less the embedding table, of which a forward\n"
    "reads only n rows; a tied lm_head's rows stay in) over the bandwidth measured here\n"
    "(cuda: 1 GiB device-to-device copies; cpu: 256 MiB memcpy; read + write counted).\n"
    "Only shard R of T is loaded and no collectives run (tp = none): this measures the\n"
    "compute of one GPU of a T-GPU job, without its all-reduces.\n"
    "\n"
    "The KV cache holds --context positions, filled to half with random token ids first;\n"
    "every timed forward is trimmed back to that fill level, so each sees the same cache,\n"
    "and returns every row's logits to host memory (as verification does).\n"
    "\n";

static const char bench_epilogue[] =
    "\n"
    "Output: a header (backend, device, model shape, shard, weight bytes, measured\n"
    "bandwidth), then one row per positions value: median and min ms per forward, the\n"
    "floor in ms, median/floor, ms per position; and, when 1 is measured, the cost of\n"
    "each larger forward relative to it (\"verify n=6 costs 1.05x a one-position forward\").\n";

typedef struct {
    const char *model_path;
    const char *csv_path;
    device_opts device;
    int gpu;
    int threads;
    int tp_size;
    int tp_rank;
    int layers;              /* 0 = all */
    int positions[BENCH_MAX_LIST];
    size_t n_positions;
    int context;             /* 0 = default (BENCH_DEFAULT_CONTEXT, capped by the model) */
    int warmup;
    int iters;
} bench_cli;

static augur_status parse_csv_path(const char *flag, const char *text, void *dest, augur_error *err)
{
    if (!text[0])
        return augur_fail(err, AUGUR_E_INPUT, "%s: empty file name", flag);
    *(const char **)dest = text;
    return AUGUR_OK;
}

static int max_positions(const bench_cli *cli)
{
    int most = 0;
    for (size_t i = 0; i < cli->n_positions; i++)
        if (cli->positions[i] > most)
            most = cli->positions[i];
    return most;
}

static augur_status check_bench(void *ctx, int n_operands, char **operands, augur_error *err)
{
    (void)n_operands, (void)operands; /* ARGS_NO_OPERANDS */
    const bench_cli *cli = ctx;
    if (cli->tp_rank >= cli->tp_size)
        return augur_fail(err, AUGUR_E_INPUT, "--tp-rank %d is not below --tp-size %d", cli->tp_rank, cli->tp_size);
    if (cli->context && cli->context - cli->context / 2 < max_positions(cli))
        return augur_fail(err, AUGUR_E_INPUT,
                          "--context %d leaves %d position%s above its fill level %d, fewer than --positions' %d",
                          cli->context, cli->context - cli->context / 2, plural(cli->context - cli->context / 2),
                          cli->context / 2, max_positions(cli));
    return AUGUR_OK;
}

static void bench_defaults(bench_cli *cli)
{
    *cli = (bench_cli){.device = {.kind = AUGUR_DEVICE_AUTO, .dummy_seed = 0x5eed},
                       .tp_size = 1,
                       .positions = {1, 6},
                       .n_positions = 2,
                       .warmup = 3,
                       .iters = 20};
}

#define BENCH_MAX_SPECS 32

/* The flag table of augur bench over cli's fields, into specs[BENCH_MAX_SPECS]. */
static void bench_command(bench_cli *cli, arg_spec *out, arg_command *cmd)
{
    const arg_spec specs[] = {
        FLAG_REQUIRED("model", &cli->model_path, "PATH",
                      MODEL_PATH_HELP "; with --load-format dummy, a\n"
                      "directory holding config.json, or the config.json itself"),
        FLAG_SWITCH("load-format", &cli->device.dummy, "F", "auto", "dummy",
                    "auto | dummy: dummy reads config.json only and fills the\n"
                    "weights (bf16) with seeded random values (default auto)"),
        FLAG_CUSTOM("device", arg_device_kind, &cli->device.kind, "D", ARG_DEVICE_HELP),
        FLAG_INT("gpu", &cli->gpu, "N", 0, 1023, "which visible GPU (default 0)"),
        FLAG_INT("threads", &cli->threads, "N", 1, 1024, "CPU threads (default: online CPUs)"),
        FLAG_INT("tp-size", &cli->tp_size, "T", 1, 1024, "tensor-parallel size whose shard to load (default 1)"),
        FLAG_INT("tp-rank", &cli->tp_rank, "R", 0, 1023, "which shard, 0 <= R < T (default 0)"),
        FLAG_INT("layers", &cli->layers, "K", 1, 1 << 16, "keep only the first K layers (default: all)"),
        {.name = "positions", .kind = ARG_INT_LIST, .dest = cli->positions, .count = &cli->n_positions,
         .cap = BENCH_MAX_LIST, .min = 1, .max = BENCH_MAX_POSITIONS, .value = "LIST",
         .help = "comma-separated positions per forward, each 1..16\n"
                 "(default 1,6: decode and a gamma=5 verification)"},
        FLAG_INT("context", &cli->context, "N", 2, 1 << 24,
                 "KV cache positions (default 1024, at most the model's\n"
                 "max_position_embeddings); filled to N/2 before timing"),
        FLAG_INT("warmup", &cli->warmup, "N", 0, 1000000, "untimed forwards per positions value (default 3)"),
        FLAG_INT("iters", &cli->iters, "N", 1, 1000000, "timed forwards per positions value (default 20)"),
        FLAG_CUSTOM("csv", parse_csv_path, &cli->csv_path, "FILE", "also write the table's rows to FILE as CSV"),
        FLAG_HELP,
    };
    _Static_assert(sizeof specs <= BENCH_MAX_SPECS * sizeof specs[0], "raise BENCH_MAX_SPECS");
    memcpy(out, specs, sizeof specs);
    *cmd = (arg_command){.name = "bench", .synopsis = bench_synopsis, .specs = out,
                         .n_specs = sizeof specs / sizeof specs[0], .epilogue = bench_epilogue,
                         .help_column = 23, .check = check_bench, .cli = cli};
}

/* Returns ARGS_RUN to continue, else an exit code. */
static int parse_bench(int argc, char **argv, bench_cli *cli)
{
    bench_defaults(cli);
    int rc = args_device_default(&cli->device.kind);
    if (rc != ARGS_RUN)
        return rc;
    arg_spec specs[BENCH_MAX_SPECS];
    arg_command cmd;
    bench_command(cli, specs, &cmd);
    return args_parse(&cmd, argc, argv, NULL);
}

int bench_check_args(int argc, char **argv)
{
    bench_cli cli;
    return parse_bench(argc, argv, &cli);
}

augur_status bench_check_flag(const char *key, const char *value, augur_error *err)
{
    bench_cli scratch;
    bench_defaults(&scratch);
    arg_spec specs[BENCH_MAX_SPECS];
    arg_command cmd;
    bench_command(&scratch, specs, &cmd);
    return args_check_flag(&cmd, key, value, err);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (sorts them). */
static double median_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* "12.3 MiB" / "16.43 GiB" */
static const char *fmt_bytes(char *buf, size_t len, size_t bytes)
{
    if (bytes >= ((size_t)1 << 30))
        snprintf(buf, len, "%.2f GiB", (double)bytes / (double)((size_t)1 << 30));
    else
        snprintf(buf, len, "%.1f MiB", (double)bytes / (double)((size_t)1 << 20));
    return buf;
}

/* Bytes per second of a backend-to-backend copy: reads and writes `bytes` each time. */
static augur_status measure_bandwidth(augur_backend *be, size_t bytes, double *bw, augur_error *err)
{
    void *src = NULL, *dst = NULL;
    augur_status st = backend_alloc(be, &src, bytes, err);
    if (!st)
        st = backend_alloc(be, &dst, bytes, err);
    if (st) {
        augur_wrap(err, "measuring bandwidth with two %zu MiB buffers", bytes >> 20);
    } else {
        /* Written once, so the copies read real pages (an untouched host page reads as the
         * shared zero page, which caches would serve). */
        st = backend_fill_random(be, src, AUGUR_F32, (int64_t)(bytes / sizeof(float)), BENCH_SEED, 1.0f, 0.0f, err);
    }
    for (int i = 0; !st && i < BENCH_BW_WARMUP; i++)
        st = backend_copy(be, dst, src, bytes, err);
    if (!st)
        st = backend_synchronize(be, err);
    double t0 = now_s();
    for (int i = 0; !st && i < BENCH_BW_REPEATS; i++)
        st = backend_copy(be, dst, src, bytes, err);
    if (!st)
        st = backend_synchronize(be, err);
    double secs = now_s() - t0;
    if (!st)
        *bw = 2.0 * (double)bytes * BENCH_BW_REPEATS / (secs > 0 ? secs : 1e-9);
    backend_free(be, dst);
    backend_free(be, src);
    return st;
}

static uint64_t lcg_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

static void random_ids(int32_t *ids, int n, int vocab, uint64_t *s)
{
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(lcg_next(s) % (uint64_t)vocab);
}

typedef struct {
    int positions;
    double median_ms, min_ms, floor_ms;
} bench_row;

/* Writes the rows to f (opened before the run, so a bad path fails at once) and closes it. */
static augur_status write_csv(FILE *f, const char *path, const bench_row *rows, size_t n, augur_error *err)
{
    fprintf(f, "positions,median_ms,min_ms,floor_ms,median_over_floor,ms_per_position\n");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%d,%.6f,%.6f,%.6f,%.4f,%.6f\n", rows[i].positions, rows[i].median_ms, rows[i].min_ms,
                rows[i].floor_ms, rows[i].median_ms / rows[i].floor_ms, rows[i].median_ms / rows[i].positions);
    if (fclose(f) != 0) {
        remove(path);
        return augur_fail(err, AUGUR_E_IO, "--csv %s: write failed", path);
    }
    return AUGUR_OK;
}

static augur_status run_bench(const bench_cli *cli, augur_error *err)
{
    model m = {0};
    forward_ctx fwd = {0};
    kv_cache kv = {0};
    augur_backend *be = NULL;
    float *logits = NULL;
    int32_t *ids = NULL;
    double *times = NULL;
    bench_row rows[BENCH_MAX_LIST];
    device_opts dev = cli->device;
    dev.threads = cli->threads;
    memory_plan plan = {0};
    model_load_opts lo = {.tp_rank = cli->tp_rank, .tp_size = cli->tp_size, .max_layers = cli->layers,
                          .who = "bench"};
    const int most = max_positions(cli);

    FILE *csv = NULL;
    augur_status st = AUGUR_OK;
    if (cli->csv_path && !(csv = fopen(cli->csv_path, "w")))
        st = augur_fail(err, AUGUR_E_IO, "--csv %s: cannot open for writing: %s", cli->csv_path, strerror(errno));
    if (!st)
        st = device_open_backend(&be, &dev, cli->gpu, err);
    const bool on_cpu = be && be->caps.host_memory;
    if (!st) {
        char layers[48] = "";
        if (cli->layers)
            snprintf(layers, sizeof layers, ", first %d layer%s", cli->layers, plural(cli->layers));
        fprintf(stderr, "augur: bench: loading %s (shard %d of %d%s%s)...\n", cli->model_path, cli->tp_rank,
                cli->tp_size, layers, dev.dummy ? ", dummy weights" : "");
        st = device_load_model(&m, be, cli->model_path, &lo, &dev, err);
    }
    const model_config *c = &m.cfg;
    int context = cli->context;
    if (!st) {
        if (!context)
            context = c->max_seq_len < BENCH_DEFAULT_CONTEXT ? c->max_seq_len : BENCH_DEFAULT_CONTEXT;
        if (context > c->max_seq_len)
            st = augur_fail(err, AUGUR_E_INPUT, "--context %d exceeds %s's max_position_embeddings %d", context,
                            m.source, c->max_seq_len);
        else if (context - context / 2 < most)
            st = augur_fail(err, AUGUR_E_INPUT,
                            "a context of %d positions (%s's max_position_embeddings) is too short for %d positions "
                            "above its fill level %d",
                            context, m.source, most, context / 2);
    }

    /* Bandwidth before the KV cache and activations take their memory. */
    double bw = 0;
    size_t bw_bytes = on_cpu ? BENCH_BW_BYTES_CPU : BENCH_BW_BYTES_GPU;
    if (!st) {
        fprintf(stderr, "augur: bench: measuring bandwidth (%s of %zu MiB, %d times)\n",
                on_cpu ? "memcpy" : "device-to-device copy", bw_bytes >> 20, BENCH_BW_REPEATS);
        st = measure_bandwidth(be, bw_bytes, &bw, err);
    }

    int max_tokens = BENCH_CHUNK > most ? BENCH_CHUNK : most;
    if (!st) {
        st = device_plan_memory(&m, be, &dev, context, 0, max_tokens, &plan, err);
        if (!st && !on_cpu)
            memory_plan_print(stderr, "bench", &plan);
    }
    if (!st)
        st = kv_cache_init(&kv, be, c->n_layers, context, m.n_kv_heads_local, c->head_dim, err);
    if (!st)
        st = forward_init(&fwd, &m, be, NULL, cli->threads, max_tokens, context, err);

    const int fill = context / 2;
    const int vocab = m.vocab_local;
    uint64_t seed = BENCH_SEED;
    if (!st && !(ids = malloc((size_t)(fill > most ? fill : most) * sizeof *ids)))
        st = augur_fail(err, AUGUR_E_NOMEM, "out of memory for %d token ids", fill);
    if (!st && !(logits = malloc((size_t)most * (size_t)vocab * sizeof *logits)))
        st = augur_fail(err, AUGUR_E_NOMEM, "out of memory for %d x %d logits", most, vocab);
    if (!st && !(times = malloc((size_t)cli->iters * sizeof *times)))
        st = augur_fail(err, AUGUR_E_NOMEM, "out of memory for %d timings", cli->iters);

    if (!st && fill > 0) {
        fprintf(stderr, "augur: bench: filling the KV cache with %d position%s (chunks of %d)\n", fill, plural(fill),
                max_tokens);
        random_ids(ids, fill, c->vocab_size, &seed);
        st = forward_prefill(&fwd, &kv, ids, fill, NULL, err);
    }

    /* The floor: every weight this rank holds is read once per forward, except the
     * embedding table, of which only n rows are; a tied lm_head still reads this rank's
     * vocabulary rows of it. */
    const size_t es = augur_dtype_size(m.w.tok_embedding.dtype);
    const size_t weight_bytes = st ? 0 : model_weight_bytes(c, &m.opts, m.w.tok_embedding.dtype);
    const size_t embed_bytes = (size_t)c->vocab_size * (size_t)c->dim * es;
    size_t floor_bytes = weight_bytes > embed_bytes ? weight_bytes - embed_bytes : weight_bytes;
    if (c->tie_embeddings)
        floor_bytes += (size_t)vocab * (size_t)c->dim * es;
    const double floor_ms = bw > 0 ? (double)floor_bytes / bw * 1e3 : 0;

    for (size_t p = 0; !st && p < cli->n_positions; p++) {
        const int n = cli->positions[p];
        fprintf(stderr, "augur: bench: cell %zu of %zu: %d position%s per forward: %d warmup + %d timed\n", p + 1,
                cli->n_positions, n, plural(n), cli->warmup, cli->iters);
        random_ids(ids, n, c->vocab_size, &seed);
        char range[32];
        snprintf(range, sizeof range, "bench n=%d", n);
        double last_note = now_s();
        for (int it = 0; !st && it < cli->warmup + cli->iters; it++) {
            if (it == cli->warmup)
                BENCH_RANGE_PUSH(range);
            double t0 = now_s();
            /* a long cell says where it is, at most once a second */
            if (t0 - last_note >= 1.0) {
                fprintf(stderr, "augur: bench: cell %zu of %zu: forward %d of %d\n", p + 1, cli->n_positions, it + 1,
                        cli->warmup + cli->iters);
                last_note = t0;
            }
            st = forward_run(&fwd, &kv, ids, n, 0, logits, err);
            double ms = (now_s() - t0) * 1e3;
            if (it + 1 == cli->warmup + cli->iters)
                BENCH_RANGE_POP();
            if (!st)
                st = kv_cache_trim(&kv, fill, err);
            if (it >= cli->warmup)
                times[it - cli->warmup] = ms;
        }
        if (st)
            break;
        double min_ms = times[0];
        for (int i = 1; i < cli->iters; i++)
            if (times[i] < min_ms)
                min_ms = times[i];
        rows[p] = (bench_row){.positions = n, .median_ms = median_of(times, cli->iters), .min_ms = min_ms,
                              .floor_ms = floor_ms};
    }

    if (csv) {
        if (!st) {
            st = write_csv(csv, cli->csv_path, rows, cli->n_positions, err);
        } else {
            fclose(csv);
            remove(cli->csv_path);
        }
    }

    if (!st) {
        char where[192], wb[32], fb[32];
        char ran_on[160];
        describe_backend(be, cli->threads, ran_on, sizeof ran_on);
        snprintf(where, sizeof where, "%s, %s", be->name, ran_on);
        printf("augur bench: %s | %s: %d layer%s, hidden %d, %d head%s, %d kv head%s, vocab %d, %s | shard %d of %d "
               "(%d head%s, %d kv head%s, %d intermediate, %d vocab row%s) | weights %s\n",
               where, c->model_type, c->n_layers, plural(c->n_layers), c->dim, c->n_heads, plural(c->n_heads),
               c->n_kv_heads, plural(c->n_kv_heads), c->vocab_size, augur_dtype_name(m.w.tok_embedding.dtype),
               cli->tp_rank, cli->tp_size, m.n_heads_local, plural(m.n_heads_local), m.n_kv_heads_local,
               plural(m.n_kv_heads_local), m.hidden_local, vocab, plural(vocab),
               fmt_bytes(wb, sizeof wb, weight_bytes));
        printf("compute only: no tensor-parallel collectives run%s\n",
               cli->tp_size > 1 ? " (a real job adds the all-reduces across its ranks)" : "");
        printf("bandwidth %.1f GB/s (%s, %zu MiB x %d, read + write); floor reads %s (weights less the "
               "embedding table%s)\n",
               bw / 1e9, on_cpu ? "memcpy" : "device-to-device copy", bw_bytes >> 20, BENCH_BW_REPEATS,
               fmt_bytes(fb, sizeof fb, floor_bytes), c->tie_embeddings ? ", plus the tied lm_head's rows" : "");
        printf("KV cache %d positions, filled to %d; %d timed forward%s per row after %d warmup\n", context, fill,
               cli->iters, plural(cli->iters), cli->warmup);
        printf("%9s | %9s | %9s | %9s | %12s | %15s\n", "positions", "median ms", "min ms", "floor ms", "median/floor",
               "ms per position");
        for (size_t p = 0; p < cli->n_positions; p++) {
            const bench_row *r = &rows[p];
            printf("%9d | %9.3f | %9.3f | %9.3f | %11.2fx | %15.3f\n", r->positions, r->median_ms, r->min_ms,
                   r->floor_ms, r->floor_ms > 0 ? r->median_ms / r->floor_ms : 0.0, r->median_ms / r->positions);
        }
        const bench_row *one = NULL;
        for (size_t p = 0; p < cli->n_positions && !one; p++)
            if (rows[p].positions == 1)
                one = &rows[p];
        for (size_t p = 0; one && p < cli->n_positions; p++)
            if (rows[p].positions > 1)
                printf("verify n=%d costs %.2fx a one-position forward\n", rows[p].positions,
                       one->median_ms > 0 ? rows[p].median_ms / one->median_ms : 0.0);
    }

    free(times);
    free(logits);
    free(ids);
    forward_report_graphs(&fwd, "bench");
    forward_free(&fwd);
    kv_cache_free(&kv);
    model_free(&m);
    backend_destroy(be);
    return st;
}

int cmd_bench(int argc, char **argv)
{
    augur_error err = {0};
    bench_cli cli;
    int rc = parse_bench(argc, argv, &cli);
    if (rc != ARGS_RUN)
        return rc;
    if (!cli.threads)
        cli.threads = online_cpus();
    return run_bench(&cli, &err) ? cli_report(&err) : 0;
}
