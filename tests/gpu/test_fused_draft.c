/* The fused greedy chain (backend_greedy_fused: kernels/cuda/cuda_fused_cluster.cu on
 * thread-block clusters where the model's layers fit 16 blocks, else the cooperative grid
 * of kernels/cuda/cuda_fused_step.cu) against the forward of separate kernels on the same
 * GPU; both kernels where both take the model.
 *
 * For each model (the shipped draft, given as argv[1], and dummy-weight models of other
 * shapes: head_dim 64 and 128, 1 to 4 query heads a KV head, a vocabulary that is not a
 * multiple of the rows a warp takes) and each case (prompt length, tokens fed by the
 * first row, steps: chunk edges at 64 and 128 positions, a first row of 1, 2 and 5 tokens,
 * a chain that ends at the context's last position):
 *   - the chain's logits, row by row, against forward_run of the same tokens at the same
 *     positions (a relative tolerance: the sums are fp32 FMA, not the tensor cores');
 *   - each token is the argmax of its own logits, exactly, and the separate kernels'
 *     argmax too unless their top two are within the tolerance (a near-tie, counted);
 *   - the K and V it stored against forward_run's, every layer, every new position;
 *   - a second launch gives the same tokens and the same logits bit for bit; so do grids
 *     of 1 and 5 blocks against the grid of one block a multiprocessor, and one cluster of
 *     8 against the clusters of 16 (the first the layers, the others sharing the LM head;
 *     each on a backend of its own, AUGUR_CUDA_FUSED_BLOCKS, AUGUR_CUDA_FUSED_CLUSTER,
 *     AUGUR_CUDA_FUSED_CLUSTERS);
 *   - the cluster kernel's exchange between its clusters, kept across launches: tags that
 *     go on, a launch on one cluster between, tags at wrap give the same tokens;
 *   - forward_greedy_chain takes the fused path (its counter moves) and returns the
 *     launch's tokens.
 * Then, for information only (nothing asserted on time), the host's wall time of a chain
 * of 4 steps from a context of 100 through forward_greedy_chain, fused and as the captured
 * chain of separate kernels (AUGUR_CUDA_CHAINS), on each model; and where the fused
 * kernels' time goes, stage by stage (their trace: block 0's clock when a stage's work is
 * done and when the barrier after it returns), on the clusters and on grids of 132 (or every
 * multiprocessor), 32 and 1 blocks.
 * Prints one line per case; exit 0 when all pass, 1 otherwise, 77 without a GPU. */
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/probs.h"
#include "runtime/forward.h"
#include "runtime/kv_cache.h"
#include "runtime/model/model.h"

#define MAX_STEPS 32
#define TOL 2e-3 /* of the largest |logit| (or |K|, |V|) of the row */

static int n_cases, n_failed;

static void die_if(augur_status st, const augur_error *e, const char *what)
{
    if (st) {
        fprintf(stderr, "FAIL: %s: %s\n", what, e->message);
        exit(1);
    }
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "FAIL: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static int rand_below(int n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (int)(rng % (uint64_t)n);
}

/* One model on one backend, with a fused and a plain forward context and a cache each. */
typedef struct {
    augur_backend *be;
    model m;
    forward_ctx fused, plain;
    kv_cache kf, kp;
    int max_seq;
    int cluster; /* blocks of the cluster backend_greedy_fused runs on; 0: the grid */
    int groups;  /* clusters of its launch (the first the layers, the others the LM head) */
} bench;

/* The cluster a backend opened with AUGUR_CUDA_FUSED_CLUSTER=`cluster` (NULL: unset, 16
 * unless AUGUR_CUDA_FUSED_BLOCKS is set) runs m on, as backend_cuda.c decides; 0: the grid.
 * groups: how many clusters a launch takes, as AUGUR_CUDA_FUSED_CLUSTERS (want) allows. */
static int cluster_of(bench *b, const char *cluster, const char *blocks, int want_groups, int *groups)
{
    const int want = cluster ? atoi(cluster) : blocks ? 0 : CUK_FUSED_CLUSTER_MAX;
    int optin = 0;
    cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, backend_cuda_device(b->be));
    *groups = 0;
    if (want == 0 || cuk_fused_cluster_unfit(b->fused.fused, b->kf.layer_rows, (size_t)optin, want))
        return 0;
    *groups = cuk_fused_cluster_groups(b->fused.fused, b->kf.layer_rows, want, want_groups);
    return *groups > 0 ? want : 0;
}

/* Opens b; false (b closed) where `optional` and the fused chain does not take the model. */
static bool bench_open(bench *b, const char *path, bool dummy, int max_seq, const char *blocks, const char *cluster,
                       const char *groups, bool optional)
{
    augur_error e = {0};
    memset(b, 0, sizeof *b);
    if (blocks)
        setenv("AUGUR_CUDA_FUSED_BLOCKS", blocks, 1);
    else
        unsetenv("AUGUR_CUDA_FUSED_BLOCKS");
    if (cluster)
        setenv("AUGUR_CUDA_FUSED_CLUSTER", cluster, 1);
    else
        unsetenv("AUGUR_CUDA_FUSED_CLUSTER");
    if (groups)
        setenv("AUGUR_CUDA_FUSED_CLUSTERS", groups, 1);
    else
        unsetenv("AUGUR_CUDA_FUSED_CLUSTERS");
    die_if(backend_cuda_create(&b->be, 0, &e), &e, "cuda backend");
    if (dummy) {
        die_if(model_load_dummy(&b->m, path, NULL, b->be, 7, &e), &e, path);
    } else {
        die_if(model_load(&b->m, path, NULL, &e), &e, path);
        die_if(model_to_backend(&b->m, b->be, &e), &e, path);
    }
    b->max_seq = max_seq;
    die_if(forward_init(&b->fused, &b->m, b->be, NULL, 1, MAX_STEPS, max_seq, &e), &e, "forward_init");
    die_if(forward_init(&b->plain, &b->m, b->be, NULL, 1, MAX_STEPS, max_seq, &e), &e, "forward_init");
    char why[1200];
    if (!forward_use_fused(&b->fused, why, sizeof why)) {
        if (optional) {
            forward_free(&b->fused);
            forward_free(&b->plain);
            model_free(&b->m);
            backend_destroy(b->be);
            return false;
        }
        fprintf(stderr, "FAIL: %s: the fused chain does not take this model: %s\n", path, why);
        exit(1);
    }
    const model_config *c = &b->m.cfg;
    die_if(kv_cache_init(&b->kf, b->be, c->n_layers, max_seq, c->n_kv_heads, c->head_dim, &e), &e, "cache");
    die_if(kv_cache_init(&b->kp, b->be, c->n_layers, max_seq, c->n_kv_heads, c->head_dim, &e), &e, "cache");
    b->cluster = cluster_of(b, cluster, blocks, groups ? atoi(groups) : 0, &b->groups);
    return true;
}

static void bench_close(bench *b)
{
    kv_cache_free(&b->kf);
    kv_cache_free(&b->kp);
    forward_free(&b->fused);
    forward_free(&b->plain);
    model_free(&b->m);
    backend_destroy(b->be);
}

/* Runs the fused kernel directly (for its logits) from the fused cache's length; returns
 * the tokens and logits ([steps][vocab]) in host memory. */
static void fused_launch(bench *b, const int32_t *feed, int n, int steps, int32_t *tokens, float *logits)
{
    augur_error e = {0};
    const int V = b->m.cfg.vocab_size;
    float *dlog = NULL;
    die_if(backend_alloc(b->be, (void **)&dlog, (size_t)steps * V * sizeof(float), &e), &e, "logits buffer");
    die_if(kv_cache_reserve(&b->kf, n + steps - 1, &e), &e, "reserve");
    const augur_fused_cache cache = {.k = b->kf.k, .v = b->kf.v, .layer_rows = b->kf.layer_rows};
    die_if(backend_greedy_fused(b->be, b->fused.fused, &cache, feed, n, b->kf.len, steps, false, tokens, dlog, &e),
           &e, "fused greedy chain");
    die_if(kv_cache_append(&b->kf, n + steps - 1, &e), &e, "append");
    die_if(backend_download(b->be, logits, dlog, (size_t)steps * V * sizeof(float), &e), &e, "logits");
    backend_free(b->be, dlog);
}

static float max_abs(const float *x, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++)
        m = fmaxf(m, fabsf(x[i]));
    return m;
}

static float max_diff(const float *a, const float *b, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        m = (d > m || isnan(d)) ? (isnan(d) ? INFINITY : d) : m;
    }
    return m;
}

/* The gap between a row's largest and second largest value. */
static float top2_gap(const float *x, int n)
{
    float a = -INFINITY, b = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (x[i] > a) {
            b = a;
            a = x[i];
        } else if (x[i] > b) {
            b = x[i];
        }
    }
    return a - b;
}

typedef struct {
    int prompt, n, steps;
} chain_case;

/* o's fused launch (tokens tok, logits lf) against the separate kernels' logits lp and
 * cache kp of b, over the case's new positions; false with why filled when it fails. */
static bool check_launch(bench *b, bench *o, chain_case cs, const float *lp, const int32_t *tok, const float *lf,
                         float *worst, int *ties, char *why, size_t why_len)
{
    augur_error e = {0};
    const model_config *c = &b->m.cfg;
    const int V = c->vocab_size, n = cs.n, S = cs.steps, pre = cs.prompt - cs.n;
    const char *who = o->cluster ? "cluster" : "grid";
    for (int s = 0; s < S; s++) {
        const float *f = lf + (size_t)s * V, *p = lp + (size_t)s * V;
        const float scale = max_abs(p, (size_t)V), diff = max_diff(f, p, (size_t)V);
        *worst = fmaxf(*worst, scale > 0 ? diff / scale : diff);
        if (!(diff <= TOL * scale)) {
            snprintf(why, why_len, "%s, step %d: logits differ by %.3g (largest |logit| %.3g)", who, s, diff, scale);
            return false;
        }
        if (tok[s] != argmax_f32(f, V)) {
            snprintf(why, why_len, "%s, step %d: token %d is not its logits' argmax %d", who, s, tok[s],
                     argmax_f32(f, V));
            return false;
        }
        if (tok[s] != argmax_f32(p, V)) {
            if (top2_gap(p, V) > 2 * TOL * scale) {
                snprintf(why, why_len, "%s, step %d: token %d, the separate kernels' %d (top two %.3g apart)", who, s,
                         tok[s], argmax_f32(p, V), top2_gap(p, V));
                return false;
            }
            (*ties)++;
        }
    }
    /* K and V of every new position, every layer */
    const size_t row = (size_t)c->n_kv_heads * c->head_dim, rows = (size_t)(n + S - 1);
    float *a = xmalloc(rows * row * sizeof(float)), *p = xmalloc(rows * row * sizeof(float));
    bool ok = true;
    for (int l = 0; l < c->n_layers && ok; l++)
        for (int kv = 0; kv < 2 && ok; kv++) {
            float *(*at)(const kv_cache *, int, int) = kv ? kv_cache_v : kv_cache_k;
            die_if(backend_download(o->be, a, at(&o->kf, l, pre), rows * row * sizeof(float), &e), &e, "cache");
            die_if(backend_download(b->be, p, at(&b->kp, l, pre), rows * row * sizeof(float), &e), &e, "cache");
            const float scale = max_abs(p, rows * row), diff = max_diff(a, p, rows * row);
            if (!(diff <= TOL * scale)) {
                snprintf(why, why_len, "%s, layer %d: %s of the new positions differ by %.3g (largest %.3g)", who, l,
                         kv ? "V" : "K", diff, scale);
                ok = false;
            }
        }
    free(a);
    free(p);
    return ok;
}

/* Benches of one model: b as backend_greedy_fused chooses (the cluster where it fits),
 * bg the grid of one block a multiprocessor; b1, b5 grids of 1 and 5 blocks, b8 a cluster
 * of 8 (NULL where it does not fit). */
typedef struct {
    bench *b, *bg, *b1, *b5, *b8;
} bench_set;

/* The cluster kernel's LM head exchange over launches that share one state and one scratch
 * (cuk_cluster_launch_state), as a backend's do: tags that go on from launch to launch, a
 * launch on one cluster between (its blocks post where the helpers do not read), and tags
 * about to wrap (the scratch zeroed again) all give b's tokens `want`. */
static bool check_exchange(bench *b, const int32_t *feed, int pre, int n, int S, const int32_t *want, char *why,
                           size_t len)
{
    augur_error e = {0};
    const size_t bytes = cuk_fused_cluster_scratch_bytes(b->fused.fused, b->cluster * b->groups);
    void *scratch = NULL;
    int32_t *dtok = NULL, tok[MAX_STEPS];
    die_if(backend_alloc(b->be, &scratch, bytes, &e), &e, "exchange scratch");
    die_if(backend_alloc(b->be, (void **)&dtok, (size_t)S * sizeof(int32_t), &e), &e, "token buffer");
    cuk_cluster_launch_state state = {0};
    const struct {
        int clusters;
        unsigned seq; /* set before the launch where not 0 */
        const char *what;
    } runs[] = {
        {b->groups, 0, "a fresh state"},           {b->groups, 0, "tags that follow the last launch's"},
        {1, 0, "one cluster between"},             {b->groups, 0, "the clusters after one cluster"},
        {b->groups, UINT_MAX - 2, "tags at wrap"}, {b->groups, 0, "the launch after the wrap"},
    };
    bool ok = true;
    for (size_t i = 0; i < sizeof runs / sizeof runs[0] && ok; i++) {
        if (runs[i].seq)
            state.seq = runs[i].seq;
        kv_cache_trim(&b->kf, pre, &e);
        die_if(kv_cache_reserve(&b->kf, n + S - 1, &e), &e, "reserve");
        const augur_fused_cache cache = {.k = b->kf.k, .v = b->kf.v, .layer_rows = b->kf.layer_rows};
        cudaError_t rc = cuk_fused_cluster_greedy(backend_cuda_stream(b->be), b->fused.fused, &cache, feed, n, pre, S,
                                                  dtok, NULL, b->cluster, runs[i].clusters, scratch, bytes, &state,
                                                  NULL, 0);
        if (rc != cudaSuccess) {
            snprintf(why, len, "exchange, %s: launch: %s", runs[i].what, cudaGetErrorString(rc));
            ok = false;
            break;
        }
        die_if(kv_cache_append(&b->kf, n + S - 1, &e), &e, "append");
        die_if(backend_download(b->be, tok, dtok, (size_t)S * sizeof(int32_t), &e), &e, "tokens");
        if (memcmp(tok, want, (size_t)S * sizeof(int32_t))) {
            snprintf(why, len, "exchange, %s (tags from %u): other tokens", runs[i].what, state.seq - (unsigned)S);
            ok = false;
        } else if (runs[i].seq && state.seq != (unsigned)S) {
            snprintf(why, len, "exchange, %s: the state's tags went on to %u, not zeroed", runs[i].what, state.seq);
            ok = false;
        }
    }
    backend_free(b->be, scratch);
    backend_free(b->be, dtok);
    return ok;
}

/* One case: b and bg against the separate kernels; b again, b8 and (b1, b5 where given)
 * must reproduce b's and bg's bits. */
static void run_case(const bench_set *set, bool grids, const char *name, chain_case cs)
{
    augur_error e = {0};
    bench *b = set->b, *bg = set->bg;
    const model_config *c = &b->m.cfg;
    const int V = c->vocab_size, P = cs.prompt, n = cs.n, S = cs.steps;
    n_cases++;
    bool ok = true;
    char why[512] = "";
    int32_t *prompt = xmalloc((size_t)P * sizeof(int32_t));
    for (int i = 0; i < P; i++)
        prompt[i] = 2 + rand_below(V - 2);
    const int pre = P - n; /* the caches hold these; the chain feeds the last n */
    bench *all[] = {b, bg, grids ? set->b1 : NULL, grids ? set->b5 : NULL, set->b8};
    for (int i = 0; i < 5; i++) {
        if (!all[i])
            continue;
        kv_cache_trim(&all[i]->kf, 0, &e);
        kv_cache_trim(&all[i]->kp, 0, &e);
        if (pre > 0) {
            die_if(forward_prefill(&all[i]->plain, &all[i]->kf, prompt, pre, NULL, &e), &e, "prefill");
            if (i == 0)
                die_if(forward_prefill(&all[i]->plain, &all[i]->kp, prompt, pre, NULL, &e), &e, "prefill");
        }
    }
    int32_t tok[MAX_STEPS], tokg[MAX_STEPS], tok2[MAX_STEPS];
    float *lf = xmalloc((size_t)S * V * sizeof(float)), *lfg = xmalloc((size_t)S * V * sizeof(float));
    float *lf2 = xmalloc((size_t)S * V * sizeof(float)), *lp = xmalloc((size_t)S * V * sizeof(float));
    fused_launch(b, prompt + pre, n, S, tok, lf);
    fused_launch(bg, prompt + pre, n, S, tokg, lfg);

    /* the separate kernels over the same tokens */
    die_if(forward_run(&b->plain, &b->kp, prompt + pre, n, n - 1, lp, &e), &e, "forward_run");
    for (int s = 1; s < S; s++)
        die_if(forward_run(&b->plain, &b->kp, &tok[s - 1], 1, 0, lp + (size_t)s * V, &e), &e, "forward_run");
    float worst = 0.0f;
    int ties = 0;
    ok = check_launch(b, b, cs, lp, tok, lf, &worst, &ties, why, sizeof why);
    /* the grid's chain may part from the cluster's at a near-tie: its own reference then */
    if (ok && b->cluster && memcmp(tok, tokg, (size_t)S * sizeof(int32_t))) {
        kv_cache_trim(&b->kp, pre, &e);
        die_if(forward_run(&b->plain, &b->kp, prompt + pre, n, n - 1, lp, &e), &e, "forward_run");
        for (int s = 1; s < S; s++)
            die_if(forward_run(&b->plain, &b->kp, &tokg[s - 1], 1, 0, lp + (size_t)s * V, &e), &e, "forward_run");
    }
    if (ok && b->cluster)
        ok = check_launch(b, bg, cs, lp, tokg, lfg, &worst, &ties, why, sizeof why);

    /* the same launch again, and on the other grids and clusters: the same bits */
    bench *again[] = {b, set->b8, grids ? set->b1 : NULL, grids ? set->b5 : NULL};
    const char *label[] = {"a second launch", "one cluster of 8 blocks", "a grid of 1 block", "a grid of 5 blocks"};
    for (int i = 0; i < 4 && ok; i++) {
        bench *o = again[i];
        if (!o)
            continue;
        const int32_t *want_tok = i >= 2 ? tokg : tok;
        const float *want_lf = i >= 2 ? lfg : lf;
        kv_cache_trim(&o->kf, pre, &e);
        fused_launch(o, prompt + pre, n, S, tok2, lf2);
        if (memcmp(want_tok, tok2, (size_t)S * sizeof(int32_t)) ||
            memcmp(want_lf, lf2, (size_t)S * V * sizeof(float))) {
            snprintf(why, sizeof why, "%s gave other tokens or logits", label[i]);
            ok = false;
        }
    }
    if (ok && b->cluster)
        ok = check_exchange(b, prompt + pre, pre, n, S, tok, why, sizeof why);
    /* through forward_greedy_chain, on the whole device and beside other work (part of
     * it: fewer clusters, or a smaller grid; AUGUR_CUDA_FUSED_BESIDE) */
    for (int beside = 0; beside < 2 && ok; beside++) {
        kv_cache_trim(&b->kf, pre, &e);
        int64_t before = b->fused.fused_chains;
        die_if(forward_greedy_chain(&b->fused, &b->kf, prompt + pre, n, S, beside, tok2, NULL, &e), &e,
               "forward_greedy_chain");
        if (b->fused.fused_chains != before + 1 || b->kf.len != pre + n + S - 1 ||
            memcmp(tok, tok2, (size_t)S * sizeof(int32_t))) {
            snprintf(why, sizeof why, "forward_greedy_chain%s: %lld fused chains run, cache length %d (want %d), %s",
                     beside ? " beside other work" : "", (long long)(b->fused.fused_chains - before), b->kf.len,
                     pre + n + S - 1, memcmp(tok, tok2, (size_t)S * sizeof(int32_t)) ? "other tokens" : "same tokens");
            ok = false;
        }
    }
    printf("%-34s %-10s prompt %4d, feed %d, %2d steps: max |diff| / max |logit| %.2e, near-ties %d  %s%s\n", name,
           b->cluster ? "cluster+grid" : "grid", P, n, S, worst, ties, ok ? "ok" : "FAIL: ", ok ? "" : why);
    if (!ok)
        n_failed++;
    free(prompt);
    free(lf);
    free(lfg);
    free(lf2);
    free(lp);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Mean wall time of forward_greedy_chain (4 steps after a context of 100) on ctx. */
static double chain_us(bench *b, forward_ctx *ctx, kv_cache *kv, bool beside)
{
    augur_error e = {0};
    const int V = b->m.cfg.vocab_size, P = 100, reps = 200;
    int32_t prompt[100], out[4];
    for (int i = 0; i < P; i++)
        prompt[i] = 2 + rand_below(V - 2);
    kv_cache_trim(kv, 0, &e);
    die_if(forward_prefill(&b->plain, kv, prompt, P - 1, NULL, &e), &e, "prefill");
    double best = 0;
    for (int round = 0; round < 2; round++) { /* the first round warms up (captures) */
        double t0 = now_us();
        for (int r = 0; r < reps; r++) {
            kv_cache_trim(kv, P - 1, &e);
            die_if(forward_greedy_chain(ctx, kv, prompt + P - 1, 1, 4, beside, out, NULL, &e), &e, "chain");
        }
        best = (now_us() - t0) / reps;
    }
    return best;
}

/* A fused kernel's stages, mean microseconds each, over a chain of 4 steps from a context
 * of 100: on a cluster of `cluster` blocks, or (cluster 0) on a grid of `want` blocks (0:
 * one a multiprocessor). */
static void trace_stages(bench *b, const char *name, int want, int cluster)
{
    augur_error e = {0};
    enum { CAP = 512 };
    const int V = b->m.cfg.vocab_size, P = 100, steps = 4;
    int32_t prompt[100];
    for (int i = 0; i < P; i++)
        prompt[i] = 2 + rand_below(V - 2);
    kv_cache_trim(&b->kf, 0, &e);
    die_if(forward_prefill(&b->plain, &b->kf, prompt, P - 1, NULL, &e), &e, "prefill");
    int dev = backend_cuda_device(b->be), sm = 0, khz = 0;
    cudaDeviceGetAttribute(&sm, cudaDevAttrMultiProcessorCount, dev);
    cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev);
    const augur_fused_cache cache = {.k = b->kf.k, .v = b->kf.v, .layer_rows = b->kf.layer_rows};
    const int blocks = cluster ? cluster * b->groups : cuk_fused_blocks(b->fused.fused, cache.layer_rows, sm, want);
    const int K = cluster ? 6 : 5; /* stages a row */
    void *scratch = NULL;
    long long *trace = NULL, host[2 * CAP];
    const size_t scratch_bytes = cluster ? cuk_fused_cluster_scratch_bytes(b->fused.fused, blocks)
                                         : cuk_fused_scratch_bytes(b->fused.fused, cache.layer_rows, blocks);
    die_if(backend_alloc(b->be, &scratch, scratch_bytes, &e), &e, "scratch");
    die_if(backend_alloc(b->be, (void **)&trace, sizeof host, &e), &e, "trace");
    double work[6] = {0}, wait[6] = {0}, first = 0, span = 0;
    int count[6] = {0}, n_work0 = 0;
    for (int rep = 0; rep < 20; rep++) {
        /* -1: past the last stage the launch writes */
        cudaError_t rc = cudaMemsetAsync(trace, 0xff, sizeof host, backend_cuda_stream(b->be));
        if (rc == cudaSuccess && cluster)
            rc = cuk_fused_cluster_greedy(backend_cuda_stream(b->be), b->fused.fused, &cache, prompt + P - 1, 1, P - 1,
                                          steps, b->fused.argmax, NULL, cluster, b->groups, scratch, scratch_bytes,
                                          NULL, trace, CAP);
        else if (rc == cudaSuccess)
            rc = cuk_fused_greedy(backend_cuda_stream(b->be), b->fused.fused, &cache, prompt + P - 1, 1, P - 1, steps,
                                  b->fused.argmax, NULL, scratch, blocks, trace, CAP);
        if (rc != cudaSuccess) {
            fprintf(stderr, "FAIL: traced fused launch: %s\n", cudaGetErrorString(rc));
            exit(1);
        }
        die_if(backend_download(b->be, host, trace, sizeof host, &e), &e, "trace");
        /* codes: 10 + k when stage k's work is done, k when its barrier returns (the start's
         * code is K or above) */
        int i = 1;
        for (; rep >= 5 && i < CAP && host[2 * i] >= 0; i++) {
            const long long code = host[2 * i];
            const double us = (double)(host[2 * i + 1] - host[2 * i - 1]) / khz * 1e3;
            if (i == 1) { /* the start-up (weights into shared memory, the first barrier) and stage 0's work */
                first += us;
            } else if (code >= 10 && code < 10 + K) {
                work[code - 10] += us;
                n_work0 += code == 10;
            } else if (code < K) {
                wait[code] += us;
                count[code]++;
            }
        }
        if (rep >= 5 && i > 1)
            span += (double)(host[2 * (i - 1) + 1] - host[1]) / khz * 1e3;
    }
    const char *grid_label[] = {"norm+qkv", "attention", "combine+gate|up", "down", "lm head"};
    const char *cluster_label[] = {"norm+qkv", "attention", "combine+o", "norm+gate|up", "down", "lm head"};
    const char **label = cluster ? cluster_label : grid_label;
    double total = 0;
    const double work0 = n_work0 ? work[0] / n_work0 : 0.0;
    printf("%-34s stages on %s of %3d blocks (us, mean of 15 launches, block 0's work + barrier):", name,
           cluster ? "clusters" : "a grid", blocks);
    for (int k = 0; k < K; k++) {
        const double w = k == 0 ? work0 : count[k] ? work[k] / count[k] : 0.0;
        printf(" %s %.2f+%.2f", label[k], w, count[k] ? wait[k] / count[k] : 0.0);
        total += work[k] + wait[k];
    }
    printf("; a step %.1f us inside the kernel; start-up %.1f us (to the first stage, net of its work), the "
           "kernel %.1f us from its first clock to its last\n",
           (total + first) / 15 / steps, first / 15 - work0, span / 15);
    backend_free(b->be, scratch);
    backend_free(b->be, trace);
}

static void write_config(const char *path, int dim, int hidden, int layers, int heads, int kv_heads, int head_dim,
                         int vocab, int max_pos)
{
    FILE *fp = fopen(path, "w");
    if (!fp) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        exit(1);
    }
    fprintf(fp,
            "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": %d,"
            " \"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d,"
            " \"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, \"max_position_embeddings\": %d,"
            " \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"tie_word_embeddings\": false,"
            " \"bos_token_id\": 0, \"eos_token_id\": 1, \"torch_dtype\": \"bfloat16\"}\n",
            dim, hidden, layers, heads, kv_heads, head_dim, vocab, max_pos);
    fclose(fp);
}

static void run_model(const char *name, const char *path, bool dummy, int max_seq)
{
    bench b, bg, b1, b5, b8;
    bench_open(&b, path, dummy, max_seq, NULL, NULL, NULL, false);
    bench_open(&bg, path, dummy, max_seq, "0", NULL, NULL, false);
    bench_open(&b1, path, dummy, max_seq, "1", NULL, NULL, false);
    bench_open(&b5, path, dummy, max_seq, "5", NULL, NULL, false);
    const bool has8 = bench_open(&b8, path, dummy, max_seq, NULL, "8", "1", true);
    if (bg.cluster || b1.cluster || b5.cluster) {
        fprintf(stderr, "FAIL: %s: AUGUR_CUDA_FUSED_BLOCKS did not select the grid\n", name);
        exit(1);
    }
    if (b.cluster)
        printf("%-34s backend_greedy_fused runs %d cluster(s) of %d blocks; one cluster of 8 %s\n", name, b.groups,
               b.cluster, has8 ? "too" : "not");
    else
        printf("%-34s backend_greedy_fused runs the grid (the weights do not fit a cluster)\n", name);
    const bench_set set = {&b, &bg, &b1, &b5, has8 ? &b8 : NULL};
    const chain_case cases[] = {
        {1, 1, 8},   {5, 1, 4},    {63, 1, 4},   {64, 2, 6},
        {70, 5, 16}, {127, 1, 32}, {200, 2, 12}, {max_seq - 11, 1, 12}, /* its last position is the context's last */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&set, i % 3 != 2, name, cases[i]);
    const double fused = chain_us(&b, &b.fused, &b.kf, false), grid = chain_us(&bg, &bg.fused, &bg.kf, false),
                 beside = chain_us(&b, &b.fused, &b.kf, true), plain = chain_us(&b, &b.plain, &b.kp, false);
    printf("%-34s timing (information): a chain of 4 steps %.1f us fused (%s), %.1f us on the grid, %.1f us beside "
           "other work, %.1f us as separate kernels%s\n",
           name, fused, b.cluster ? "cluster" : "grid", grid, beside, plain, b.plain.chain ? " (captured chain)" : "");
    if (b.cluster)
        printf("%-34s the cooperative cluster launch was %s\n", name,
               backend_cuda_cooperative_refused(b.be) ? "refused (the chains launch plainly)" : "taken");
    if (b.cluster)
        trace_stages(&b, name, 0, b.cluster);
    const int grids[] = {0, 32, 1};
    for (size_t i = 0; i < sizeof grids / sizeof grids[0]; i++)
        trace_stages(&bg, name, grids[i], 0);
    bench_close(&b);
    bench_close(&bg);
    bench_close(&b1);
    bench_close(&b5);
    if (has8)
        bench_close(&b8);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DRAFT_MODEL_DIR\n", argv[0]);
        return 2;
    }
    if (backend_cuda_device_count() < 1) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    char dir[] = "/tmp/augur-fused-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "FAIL: mkdtemp\n");
        return 1;
    }
    char cfg_a[256], cfg_b[256], cfg_c[256], cfg_d[256];
    snprintf(cfg_a, sizeof cfg_a, "%s/hd64.json", dir);
    snprintf(cfg_b, sizeof cfg_b, "%s/hd128.json", dir);
    snprintf(cfg_c, sizeof cfg_c, "%s/cl64.json", dir);
    snprintf(cfg_d, sizeof cfg_d, "%s/cl128.json", dir);
    /* the shipped target's shape, untied; and head_dim 128 with 4 query heads a KV head
     * and a vocabulary of 1001 (not a multiple of 4) */
    write_config(cfg_a, 384, 1024, 2, 6, 2, 64, 8192, 512);
    write_config(cfg_b, 512, 1376, 2, 4, 1, 128, 1001, 512);
    /* shapes whose weights fit a cluster of 16 and of 8: head_dim 64 with 3 query heads a
     * KV head, and 128 with 2; vocabularies not a multiple of 8 x 16 */
    write_config(cfg_c, 192, 256, 2, 3, 1, 64, 1001, 400);
    write_config(cfg_d, 256, 384, 1, 2, 1, 128, 3000, 300);
    run_model("shipped draft", argv[1], false, 1024);
    run_model("dummy 384 wide, head_dim 64", cfg_a, true, 512);
    run_model("dummy 512 wide, head_dim 128", cfg_b, true, 300);
    run_model("dummy 192 wide, head_dim 64", cfg_c, true, 400);
    run_model("dummy 256 wide, head_dim 128", cfg_d, true, 300);
    unlink(cfg_a);
    unlink(cfg_b);
    unlink(cfg_c);
    unlink(cfg_d);
    rmdir(dir);
    printf("%d cases, %d failed\n", n_cases, n_failed);
    return n_failed ? 1 : 0;
}
