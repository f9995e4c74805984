/* The CUDA backend's kernels against the CPU backend (kernels/backend.h), kernel by
 * kernel, on random inputs: odd sizes, strided weights, GQA, both RoPE pairings with and
 * without llama3 scaling, attention at several positions on every path, logits ties.
 *
 * Every output buffer is poisoned (a NaN pattern) before the run and carries a guard
 * tail: an element left unwritten, or a write past the end, fails the case. Prints one
 * table row per case: kernel, shape, ||gpu - cpu|| / ||cpu||, max |gpu - cpu|, the
 * tolerance, and ok / FAIL. Exit 0 when all pass, 1 otherwise, 77 without a GPU.
 *
 * Run by tests/gpu/cuda_kernels.sh (ctest -L gpu). */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu_kernels.h"
#include "kernels/cuda/cuda_backend.h"

#define GUARD 64                  /* floats past every output that must stay poisoned */
#define POISON_BITS 0x7fc0deadu   /* a quiet NaN no kernel produces */

static augur_backend *cpu, *gpu;
static augur_error E;
static int n_cases, n_failed;

/* ------------------------------------------------------------------ helpers */

static void die_if(augur_status st, const char *what, int line)
{
    if (st != AUGUR_OK) {
        fprintf(stderr, "FATAL line %d: %s: %s\n", line, what, E.message);
        exit(1);
    }
}
#define OK(call) die_if((call), #call, __LINE__)

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "FATAL: out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static double uniform01(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * 0x1.0p-53;
}

/* Uniform in [lo, hi), never exactly 0 (a zero would hide a missed term). */
static void fill(float *x, size_t count, float lo, float hi)
{
    for (size_t i = 0; i < count; i++) {
        float v = (float)(lo + (hi - lo) * uniform01());
        x[i] = v != 0.0f ? v : 1e-3f;
    }
}

static float *random_floats(size_t count, float lo, float hi)
{
    float *x = xmalloc(count * sizeof(float));
    fill(x, count, lo, hi);
    return x;
}

static float poison_value(void)
{
    uint32_t u = POISON_BITS;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static bool is_poison(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u == POISON_BITS;
}

static void *dev_alloc(size_t bytes)
{
    void *p = NULL;
    OK(backend_alloc(gpu, &p, bytes, &E));
    return p;
}

static void *dev_from(const void *host, size_t bytes)
{
    void *p = dev_alloc(bytes);
    OK(backend_upload(gpu, p, host, bytes, &E));
    return p;
}

/* A device output of count floats plus the guard, all poisoned. */
static float *dev_output(size_t count)
{
    float *h = xmalloc((count + GUARD) * sizeof(float));
    for (size_t i = 0; i < count + GUARD; i++)
        h[i] = poison_value();
    float *d = dev_from(h, (count + GUARD) * sizeof(float));
    free(h);
    return d;
}

/* Downloads count floats (and the guard) of d into a new host array; *unwritten counts
 * elements still poisoned, *overrun guard elements no longer poisoned. */
static float *fetch(const float *d, size_t count, int *unwritten, int *overrun)
{
    float *h = xmalloc((count + GUARD) * sizeof(float));
    OK(backend_download(gpu, h, d, (count + GUARD) * sizeof(float), &E));
    *unwritten = *overrun = 0;
    for (size_t i = 0; i < count; i++)
        *unwritten += is_poison(h[i]);
    for (size_t i = count; i < count + GUARD; i++)
        *overrun += !is_poison(h[i]);
    return h;
}

/* Fetches d without a guard (in-place outputs, whose inputs were not poisoned). */
static float *fetch_plain(const float *d, size_t count)
{
    float *h = xmalloc(count * sizeof(float));
    OK(backend_download(gpu, h, d, count * sizeof(float), &E));
    return h;
}

static void print_header(const char *section)
{
    printf("\n== %s\n%-14s %-58s %11s %11s %9s  %s\n", section, "kernel", "shape", "rel err", "max abs", "tol",
           "result");
}

/* Compares got with ref: relative error ||got - ref|| / ||ref|| and max |got - ref|. */
static bool report(const char *kernel, const char *shape, const float *got, const float *ref, size_t count,
                   double tol, int unwritten, int overrun)
{
    double num = 0, den = 0, max_abs = 0;
    int nonfinite = 0;
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(got[i]) && !is_poison(got[i]) && isfinite(ref[i]))
            nonfinite++;
        if (is_poison(got[i]) || !isfinite(got[i]) || !isfinite(ref[i]))
            continue;
        const double d = (double)got[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
        if (fabs(d) > max_abs)
            max_abs = fabs(d);
    }
    const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    const bool ok = rel <= tol && unwritten == 0 && overrun == 0 && nonfinite == 0;
    printf("%-14s %-58s %11.3e %11.3e %9.1e  %s", kernel, shape, rel, max_abs, tol, ok ? "ok" : "FAIL");
    if (unwritten)
        printf(" (%d outputs unwritten)", unwritten);
    if (overrun)
        printf(" (%d writes past the end)", overrun);
    if (nonfinite)
        printf(" (%d non-finite)", nonfinite);
    printf("\n");
    n_cases++;
    n_failed += !ok;
    return ok;
}

static void set_paths(cuda_matmul_path mm, cuda_attn_path att, int chunk)
{
    cuda_backend_paths p = {.matmul = mm, .attention = att, .split_chunk = chunk};
    OK(backend_cuda_set_paths(gpu, &p, &E));
}

/* ------------------------------------------------------------------ matmul */

/* A host matrix rows x cols in dt with row_stride stride; padding columns hold huge
 * values so that a kernel reading past cols shows. */
static tensor_view host_matrix(augur_dtype dt, int rows, int cols, int stride, float scale)
{
    const size_t total = (size_t)rows * stride;
    const size_t es = augur_dtype_size(dt);
    void *data = xmalloc(total * es);
    for (size_t i = 0; i < total; i++) {
        const bool pad = (int)(i % (size_t)stride) >= cols;
        float v = pad ? 1e30f : (float)(scale * (2.0 * uniform01() - 1.0));
        if (v == 0.0f)
            v = 1e-3f;
        if (dt == AUGUR_F32)
            ((float *)data)[i] = v;
        else if (dt == AUGUR_BF16)
            ((uint16_t *)data)[i] = augur_f32_to_bf16(v);
        else
            ((uint16_t *)data)[i] = pad ? 0x7bff : augur_f32_to_f16(v); /* fp16 max as padding */
    }
    return (tensor_view){.data = data, .dtype = dt, .rows = rows, .cols = cols, .row_stride = stride};
}

static const char *path_name(cuda_matmul_path p)
{
    return p == CUDA_MATMUL_GEMV ? "gemv" : p == CUDA_MATMUL_CUBLAS ? "cublas" : "auto";
}

/* raw_ld > 0: upload the host matrix as it is (row_stride raw_ld == its stride, no
 * padding to 16 bytes), exercising the GEMV kernel's unaligned path. */
static void matmul_case(augur_dtype dt, int rows, int cols, int stride, int n, bool with_bias, cuda_matmul_path path,
                        bool raw)
{
    tensor_view hw = host_matrix(dt, rows, cols, stride, 1.0f);
    float *x = random_floats((size_t)n * cols, -1.0f, 1.0f);
    float *bias = with_bias ? random_floats((size_t)rows, -1.0f, 1.0f) : NULL;
    const size_t count = (size_t)n * rows;
    float *ref = xmalloc(count * sizeof(float));
    OK(backend_matmul(cpu, ref, x, n, &hw, bias, &E));

    const bool blas = (path == CUDA_MATMUL_CUBLAS || (path == CUDA_MATMUL_AUTO && n > 16)) && dt != AUGUR_F16;
    set_paths(path, CUDA_ATTN_AUTO, 0);
    tensor_view dw;
    if (raw) {
        dw = hw;
        dw.data = dev_from(hw.data, (size_t)rows * stride * augur_dtype_size(dt));
    } else {
        OK(backend_weight_upload(gpu, &dw, &hw, &E));
    }
    float *dx = dev_from(x, (size_t)n * cols * sizeof(float));
    float *db = bias ? dev_from(bias, (size_t)rows * sizeof(float)) : NULL;
    float *dout = dev_output(count);
    OK(backend_matmul(gpu, dout, dx, n, &dw, db, &E));
    int unwritten, overrun;
    float *got = fetch(dout, count, &unwritten, &overrun);

    char shape[128];
    snprintf(shape, sizeof shape, "%s %dx%d st%d%s n=%d%s %s", augur_dtype_name(dt), rows, cols, stride,
             raw ? " raw" : "", n, with_bias ? " +bias" : "", path_name(path));
    if (blas && dt == AUGUR_BF16) {
        /* cuBLAS multiplies bf16 by bf16: against the CPU on x rounded to bf16 it must
         * agree to fp32 rounding; against the CPU on x itself, to bf16's. */
        report("matmul", shape, got, ref, count, 2e-2, unwritten, overrun);
        float *xr = xmalloc((size_t)n * cols * sizeof(float));
        for (size_t i = 0; i < (size_t)n * cols; i++)
            xr[i] = augur_bf16_to_f32(augur_f32_to_bf16(x[i]));
        OK(backend_matmul(cpu, ref, xr, n, &hw, bias, &E));
        strncat(shape, " vs bf16 x", sizeof shape - strlen(shape) - 1);
        report("matmul", shape, got, ref, count, 1e-5, unwritten, overrun);
        free(xr);
    } else {
        report("matmul", shape, got, ref, count, 1e-5, unwritten, overrun);
    }

    if (raw)
        backend_free(gpu, (void *)dw.data);
    else
        backend_weight_free(gpu, &dw);
    backend_free(gpu, dx);
    backend_free(gpu, db);
    backend_free(gpu, dout);
    free(got);
    free(ref);
    free(bias);
    free(x);
    free((void *)hw.data);
}

static void test_matmul(void)
{
    print_header("matmul: out[n][rows] = x[n][cols] W^T (+ bias)");
    static const struct {
        int rows, cols, stride, n;
        bool bias;
    } shapes[] = {
        {64, 64, 64, 1, false},    {257, 131, 131, 3, true}, /* odd: scalar path */
        {128, 130, 130, 2, false}, {200, 1028, 1028, 5, true}, /* 16-byte loads plus a tail */
        {512, 1024, 1040, 9, false}, /* strided host view (a TP column slice) */
        {300, 520, 520, 16, true}, {1000, 768, 768, 17, false}, {96, 200, 208, 100, true},
    };
    const augur_dtype dts[] = {AUGUR_F32, AUGUR_BF16, AUGUR_F16};
    const cuda_matmul_path paths[] = {CUDA_MATMUL_AUTO, CUDA_MATMUL_GEMV, CUDA_MATMUL_CUBLAS};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t d = 0; d < 3; d++)
            for (size_t p = 0; p < 3; p++) {
                if (paths[p] == CUDA_MATMUL_CUBLAS && dts[d] == AUGUR_F16)
                    continue; /* fp16 weights always take the GEMV path */
                matmul_case(dts[d], shapes[s].rows, shapes[s].cols, shapes[s].stride, shapes[s].n, shapes[s].bias,
                            paths[p], false);
            }
    /* Weights as a device view with an unaligned row stride. */
    matmul_case(AUGUR_BF16, 100, 1027, 1027, 4, false, CUDA_MATMUL_GEMV, true);
    matmul_case(AUGUR_F16, 33, 1030, 1030, 1, true, CUDA_MATMUL_GEMV, true);
    matmul_case(AUGUR_F32, 70, 515, 515, 7, false, CUDA_MATMUL_GEMV, true);
    set_paths(CUDA_MATMUL_AUTO, CUDA_ATTN_AUTO, 0);
}

/* ----------------------------------------------------------------- rmsnorm */

static void rmsnorm_case(int n, int dim, bool in_place)
{
    const size_t count = (size_t)n * dim;
    float *x = random_floats(count, -2.0f, 2.0f);
    float *w = random_floats((size_t)dim, 0.5f, 1.5f);
    float *ref = xmalloc(count * sizeof(float));
    OK(backend_rmsnorm(cpu, ref, x, w, n, dim, 1e-5f, &E));
    float *dx = dev_from(x, count * sizeof(float));
    float *dw = dev_from(w, (size_t)dim * sizeof(float));
    float *got;
    int unwritten = 0, overrun = 0;
    if (in_place) {
        OK(backend_rmsnorm(gpu, dx, dx, dw, n, dim, 1e-5f, &E));
        got = fetch_plain(dx, count);
    } else {
        float *dout = dev_output(count);
        OK(backend_rmsnorm(gpu, dout, dx, dw, n, dim, 1e-5f, &E));
        got = fetch(dout, count, &unwritten, &overrun);
        backend_free(gpu, dout);
    }
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d dim=%d%s", n, dim, in_place ? " in place" : "");
    report("rmsnorm", shape, got, ref, count, 1e-5, unwritten, overrun);
    backend_free(gpu, dx);
    backend_free(gpu, dw);
    free(got);
    free(ref);
    free(w);
    free(x);
}

static void test_rmsnorm(void)
{
    print_header("rmsnorm");
    rmsnorm_case(1, 64, false);
    rmsnorm_case(5, 4099, false);
    rmsnorm_case(3, 8192, false);
    rmsnorm_case(4, 1000, true);
}

/* -------------------------------------------------------------------- rope */

static void rope_case(rope_pairing pairs, bool llama3, int start_pos, int n, int n_heads, int head_dim)
{
    rope_llama3_scaling sc = {.enabled = llama3, .factor = 8.0f, .low_freq_factor = 1.0f,
                              .high_freq_factor = 4.0f, .original_max_position = 8192};
    const float theta = llama3 ? 500000.0f : 10000.0f;
    float *inv = xmalloc((size_t)head_dim / 2 * sizeof(float));
    rope_inv_freq(inv, head_dim, theta, &sc);
    const size_t count = (size_t)n * n_heads * head_dim;
    float *x = random_floats(count, -1.0f, 1.0f);
    float *ref = xmalloc(count * sizeof(float));
    memcpy(ref, x, count * sizeof(float));
    OK(backend_rope(cpu, ref, n, n_heads, head_dim, start_pos, inv, pairs, &E));
    float *dx = dev_from(x, count * sizeof(float));
    float *dinv = dev_from(inv, (size_t)head_dim / 2 * sizeof(float));
    OK(backend_rope(gpu, dx, n, n_heads, head_dim, start_pos, dinv, pairs, &E));
    float *got = fetch_plain(dx, count);
    int changed = 0; /* in place: every element must have been rewritten, most of them changed */
    for (size_t i = 0; i < count; i++)
        changed += got[i] != x[i];
    char shape[128];
    snprintf(shape, sizeof shape, "%s%s pos=%d n=%d heads=%d hd=%d", pairs == ROPE_PAIRS_HALF ? "half" : "adjacent",
             llama3 ? " llama3" : "", start_pos, n, n_heads, head_dim);
    report("rope", shape, got, ref, count, 1e-5, start_pos > 0 && changed < (int)count / 2 ? 1 : 0, 0);
    backend_free(gpu, dx);
    backend_free(gpu, dinv);
    free(got);
    free(ref);
    free(x);
    free(inv);
}

static void test_rope(void)
{
    print_header("rope (in place)");
    const int heads[][2] = {{8, 64}, {3, 128}};
    for (int p = 0; p < 2; p++)
        for (int l = 0; l < 2; l++)
            for (int h = 0; h < 2; h++) {
                rope_case((rope_pairing)p, l, 0, 1, heads[h][0], heads[h][1]);
                rope_case((rope_pairing)p, l, 0, 9, heads[h][0], heads[h][1]);
                rope_case((rope_pairing)p, l, 1000, 1, heads[h][0], heads[h][1]);
                rope_case((rope_pairing)p, l, 1000, 9, heads[h][0], heads[h][1]);
            }
    rope_case(ROPE_PAIRS_HALF, true, 131000, 4, 2, 128);
    rope_case(ROPE_PAIRS_ADJACENT, false, 30000, 3, 4, 32);
}

/* --------------------------------------------------------------- attention */

static const char *attn_name(cuda_attn_path p, int chunk)
{
    static char buf[32];
    if (p == CUDA_ATTN_SINGLE)
        return "single";
    if (p == CUDA_ATTN_SPLIT) {
        snprintf(buf, sizeof buf, "split/%d", chunk);
        return chunk ? buf : "split/auto";
    }
    return "auto";
}

static void attention_case(int n_heads, int n_kv, int head_dim, int start_pos, int n, cuda_attn_path path, int chunk)
{
    const int len = start_pos + n;
    const size_t q_count = (size_t)n * n_heads * head_dim;
    const size_t kv_count = (size_t)len * n_kv * head_dim;
    float *q = random_floats(q_count, -3.0f, 3.0f);
    float *k = random_floats(kv_count, -1.0f, 1.0f);
    float *v = random_floats(kv_count, -1.0f, 1.0f);
    float *ref = xmalloc(q_count * sizeof(float));
    OK(backend_attention(cpu, ref, q, n, start_pos, n_heads, n_kv, head_dim, k, v, &E));

    set_paths(CUDA_MATMUL_AUTO, path, chunk);
    float *dq = dev_from(q, q_count * sizeof(float));
    float *dk = dev_from(k, kv_count * sizeof(float));
    float *dv = dev_from(v, kv_count * sizeof(float));
    float *dout = dev_output(q_count);
    OK(backend_attention(gpu, dout, dq, n, start_pos, n_heads, n_kv, head_dim, dk, dv, &E));
    int unwritten, overrun;
    float *got = fetch(dout, q_count, &unwritten, &overrun);
    char shape[128];
    snprintf(shape, sizeof shape, "heads=%d kv=%d hd=%d pos=%d n=%d %s", n_heads, n_kv, head_dim, start_pos, n,
             attn_name(path, chunk));
    report("attention", shape, got, ref, q_count, 1e-5, unwritten, overrun);
    backend_free(gpu, dq);
    backend_free(gpu, dk);
    backend_free(gpu, dv);
    backend_free(gpu, dout);
    free(got);
    free(ref);
    free(v);
    free(k);
    free(q);
}

static void test_attention(void)
{
    print_header("attention (causal GQA against the KV cache)");
    const int cfg[][3] = {{8, 2, 64}, {4, 4, 128}, {6, 3, 48}, {2, 1, 256}};
    const struct {
        cuda_attn_path path;
        int chunk;
    } paths[] = {{CUDA_ATTN_SINGLE, 0}, {CUDA_ATTN_SPLIT, 64}, {CUDA_ATTN_SPLIT, 0}, {CUDA_ATTN_AUTO, 0}};
    for (int c = 0; c < 4; c++)
        for (int p = 0; p < 4; p++) {
            attention_case(cfg[c][0], cfg[c][1], cfg[c][2], 0, 1, paths[p].path, paths[p].chunk);
            attention_case(cfg[c][0], cfg[c][1], cfg[c][2], 0, 9, paths[p].path, paths[p].chunk);
            attention_case(cfg[c][0], cfg[c][1], cfg[c][2], 1000, 1, paths[p].path, paths[p].chunk);
            attention_case(cfg[c][0], cfg[c][1], cfg[c][2], 1000, 9, paths[p].path, paths[p].chunk);
        }
    /* Long contexts: single past the default 48 KB of shared memory (opt-in), past the
     * opt-in limit (falls back to split), and a chunk that does not divide the length. */
    attention_case(8, 2, 64, 20000, 3, CUDA_ATTN_SINGLE, 0);
    attention_case(8, 2, 64, 70000, 1, CUDA_ATTN_SINGLE, 0);
    attention_case(8, 2, 64, 20000, 3, CUDA_ATTN_AUTO, 0);
    attention_case(4, 1, 128, 5000, 2, CUDA_ATTN_SPLIT, 96);
    attention_case(32, 8, 128, 1, 300, CUDA_ATTN_AUTO, 0); /* prefill-like: many rows */
    set_paths(CUDA_MATMUL_AUTO, CUDA_ATTN_AUTO, 0);
}

/* ------------------------------------------------------ element-wise kernels */

static void test_elementwise(void)
{
    print_header("swiglu, add, embedding");
    const int64_t counts[] = {1, 1000003};
    for (int i = 0; i < 2; i++) {
        const int64_t count = counts[i];
        float *g = random_floats((size_t)count, -30.0f, 30.0f); /* both exp tails */
        float *u = random_floats((size_t)count, -1.0f, 1.0f);
        float *ref = xmalloc((size_t)count * sizeof(float));
        OK(backend_swiglu(cpu, ref, g, u, count, &E));
        float *dg = dev_from(g, (size_t)count * sizeof(float));
        float *du = dev_from(u, (size_t)count * sizeof(float));
        float *dout = dev_output((size_t)count);
        OK(backend_swiglu(gpu, dout, dg, du, count, &E));
        int unwritten, overrun;
        float *got = fetch(dout, (size_t)count, &unwritten, &overrun);
        char shape[128];
        snprintf(shape, sizeof shape, "count=%lld", (long long)count);
        report("swiglu", shape, got, ref, (size_t)count, 1e-5, unwritten, overrun);
        free(got);
        OK(backend_swiglu(gpu, dg, dg, du, count, &E)); /* out aliasing gate */
        got = fetch_plain(dg, (size_t)count);
        snprintf(shape, sizeof shape, "count=%lld in place", (long long)count);
        report("swiglu", shape, got, ref, (size_t)count, 1e-5, 0, 0);
        free(got);

        OK(backend_add(cpu, ref, g, u, count, &E));
        OK(backend_upload(gpu, dg, g, (size_t)count * sizeof(float), &E));
        float *dout2 = dev_output((size_t)count);
        OK(backend_add(gpu, dout2, dg, du, count, &E));
        got = fetch(dout2, (size_t)count, &unwritten, &overrun);
        snprintf(shape, sizeof shape, "count=%lld", (long long)count);
        report("add", shape, got, ref, (size_t)count, 0.0, unwritten, overrun);
        free(got);
        OK(backend_add(gpu, dg, dg, du, count, &E)); /* in place, as the residual adds */
        got = fetch_plain(dg, (size_t)count);
        snprintf(shape, sizeof shape, "count=%lld in place", (long long)count);
        report("add", shape, got, ref, (size_t)count, 0.0, 0, 0);
        free(got);

        backend_free(gpu, dg);
        backend_free(gpu, du);
        backend_free(gpu, dout);
        backend_free(gpu, dout2);
        free(ref);
        free(u);
        free(g);
    }

    const augur_dtype dts[] = {AUGUR_F32, AUGUR_BF16, AUGUR_F16};
    const int32_t ids[] = {0, 999, 17, 17, 500, 1};
    const int n = 6, vocab = 1000, cols = 67;
    for (int d = 0; d < 3; d++) {
        tensor_view ht = host_matrix(dts[d], vocab, cols, 70, 1.0f);
        float *ref = xmalloc((size_t)n * cols * sizeof(float));
        OK(backend_embedding(cpu, ref, &ht, ids, n, &E));
        tensor_view dt;
        OK(backend_weight_upload(gpu, &dt, &ht, &E));
        int32_t *dids = dev_from(ids, sizeof ids);
        float *dout = dev_output((size_t)n * cols);
        OK(backend_embedding(gpu, dout, &dt, dids, n, &E));
        int unwritten, overrun;
        float *got = fetch(dout, (size_t)n * cols, &unwritten, &overrun);
        char shape[128];
        snprintf(shape, sizeof shape, "%s vocab=%d cols=%d st70 n=%d", augur_dtype_name(dts[d]), vocab, cols, n);
        report("embedding", shape, got, ref, (size_t)n * cols, 0.0, unwritten, overrun);
        backend_weight_free(gpu, &dt);
        backend_free(gpu, dids);
        backend_free(gpu, dout);
        free(got);
        free(ref);
        free((void *)ht.data);
    }

    /* copy: device to device, as the forward pass appends K/V rows to the cache */
    float *h = random_floats(1001, -1.0f, 1.0f);
    float *src = dev_from(h, 1001 * sizeof(float));
    float *dst = dev_output(1001);
    OK(backend_copy(gpu, dst, src, 1001 * sizeof(float), &E));
    int unwritten, overrun;
    float *got = fetch(dst, 1001, &unwritten, &overrun);
    report("copy", "count=1001", got, h, 1001, 0.0, unwritten, overrun);
    backend_free(gpu, src);
    backend_free(gpu, dst);
    free(got);
    free(h);
}

/* ----------------------------------------------------------------- logits */

static void test_softmax(void)
{
    print_header("softmax (rows, in place)");
    const int shapes[][2] = {{3, 32000}, {1, 1}, {2, 129}, {2, 128256}};
    for (int s = 0; s < 4; s++) {
        const int rows = shapes[s][0], cols = shapes[s][1];
        const size_t count = (size_t)rows * cols;
        float *x = random_floats(count, -8.0f, 8.0f);
        float *ref = xmalloc(count * sizeof(float));
        memcpy(ref, x, count * sizeof(float));
        OK(backend_softmax(cpu, ref, rows, cols, &E));
        float *dx = dev_from(x, count * sizeof(float));
        OK(backend_softmax(gpu, dx, rows, cols, &E));
        float *got = fetch_plain(dx, count);
        char shape[128];
        snprintf(shape, sizeof shape, "rows=%d cols=%d", rows, cols);
        /* The CPU sums in one fp32 chain (relative error ~ sqrt(cols) ulp), the GPU in a tree. */
        report("softmax", shape, got, ref, count, 1e-4, 0, 0);
        backend_free(gpu, dx);
        free(got);
        free(ref);
        free(x);
    }
}

static void test_argmax(void)
{
    print_header("argmax (exact; ties to the lowest index)");
    const int rows = 7, cols = 50000;
    float *x = random_floats((size_t)rows * cols, -5.0f, 5.0f);
    float *r;
    r = x + 1 * cols; /* ties: the max at 7, 30000, 49999 */
    r[7] = r[30000] = r[49999] = 9.0f;
    r = x + 2 * cols; /* the max last */
    r[cols - 1] = 7.0f;
    r = x + 3 * cols; /* nothing above -inf: 0 */
    for (int c = 0; c < cols; c++)
        r[c] = -INFINITY;
    r = x + 4 * cols; /* NaNs are never chosen */
    for (int c = 0; c < cols; c += 3)
        r[c] = NAN;
    r[40001] = 8.0f;
    r = x + 5 * cols; /* +inf twice */
    r[4000] = r[123] = INFINITY;
    r = x + 6 * cols; /* ties across every thread's stride: the same value everywhere */
    for (int c = 0; c < cols; c++)
        r[c] = 1.5f;
    int32_t ref[7];
    OK(backend_argmax(cpu, ref, x, rows, cols, &E));
    float *dx = dev_from(x, (size_t)rows * cols * sizeof(float));
    int32_t *dout = dev_alloc(rows * sizeof(int32_t));
    int32_t poison[7];
    for (int i = 0; i < rows; i++)
        poison[i] = -12345;
    OK(backend_upload(gpu, dout, poison, sizeof poison, &E));
    OK(backend_argmax(gpu, dout, dx, rows, cols, &E));
    int32_t got[7];
    OK(backend_download(gpu, got, dout, sizeof got, &E));
    int bad = 0;
    for (int i = 0; i < rows; i++)
        bad += got[i] != ref[i];
    printf("%-14s %-58s", "argmax", "rows=7 cols=50000 (random, ties, last, -inf, NaN, +inf, flat)");
    for (int i = 0; i < rows; i++)
        printf(" %d/%d", got[i], ref[i]);
    printf("  %s\n", bad ? "FAIL" : "ok");
    n_cases++;
    n_failed += bad != 0;

    float one = 3.0f;
    float *d1 = dev_from(&one, sizeof one);
    OK(backend_argmax(gpu, dout, d1, 1, 1, &E));
    OK(backend_download(gpu, got, dout, sizeof(int32_t), &E));
    printf("%-14s %-58s %d  %s\n", "argmax", "rows=1 cols=1", got[0], got[0] == 0 ? "ok" : "FAIL");
    n_cases++;
    n_failed += got[0] != 0;
    backend_free(gpu, d1);
    backend_free(gpu, dx);
    backend_free(gpu, dout);
    free(x);
}

static void sample_case(const char *label, const sampling_params *sp, int rows, int cols, bool quantized)
{
    const size_t count = (size_t)rows * cols;
    float *logits = random_floats(count, -6.0f, 6.0f);
    if (quantized) /* many exact ties: values in {-2, -1.5, ..., 2} */
        for (size_t i = 0; i < count; i++)
            logits[i] = roundf(logits[i] / 1.5f) * 0.5f;
    float *ref = xmalloc(count * sizeof(float));
    OK(backend_sample_probs(cpu, ref, logits, rows, cols, sp, &E));
    float *dl = dev_from(logits, count * sizeof(float));
    float *dp = dev_output(count);
    OK(backend_sample_probs(gpu, dp, dl, rows, cols, sp, &E));
    int unwritten, overrun;
    float *got = fetch(dp, count, &unwritten, &overrun);
    int support = 0, kept = 0; /* the kept sets must match exactly */
    for (size_t i = 0; i < count; i++) {
        support += (got[i] > 0.0f) != (ref[i] > 0.0f);
        kept += ref[i] > 0.0f;
    }
    char shape[160];
    snprintf(shape, sizeof shape, "%s rows=%d cols=%d kept=%d%s", label, rows, cols, kept,
             quantized ? " ties" : "");
    const bool ok = report("sample_probs", shape, got, ref, count, 1e-5, unwritten, overrun);
    if (support) {
        printf("%-14s   ^ %d tokens kept by one backend only: FAIL\n", "", support);
        if (ok)
            n_failed++;
    }
    backend_free(gpu, dl);
    backend_free(gpu, dp);
    free(got);
    free(ref);
    free(logits);
}

static void test_sampling(void)
{
    print_header("sample_probs (temperature, top-k, top-p; kept sets must match exactly)");
    const struct {
        const char *label;
        sampling_params sp;
    } cases[] = {
        {"greedy", {0.0f, 0, 1.0f}},
        {"T=0.8", {0.8f, 0, 1.0f}},
        {"T=1 k=40", {1.0f, 40, 1.0f}},
        {"T=1 p=0.9", {1.0f, 0, 0.9f}},
        {"T=0.7 k=50 p=0.8", {0.7f, 50, 0.8f}},
        {"T=1 k=1", {1.0f, 1, 1.0f}},
        {"T=1.3 p=1e-4", {1.3f, 0, 1e-4f}},
        {"T=1 p=0", {1.0f, 0, 0.0f}},
        {"T=2 k=1000 p=0.95", {2.0f, 1000, 0.95f}},
    };
    const int vocabs[] = {32000, 129};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int v = 0; v < 2; v++)
            sample_case(cases[c].label, &cases[c].sp, 3, vocabs[v], false);
    /* Ties at the cut: the lower ids must win, as on the CPU. */
    const sampling_params tk = {1.0f, 100, 1.0f}, tp = {1.0f, 0, 0.37f}, tkp = {0.9f, 300, 0.61f};
    sample_case("T=1 k=100", &tk, 4, 32000, true);
    sample_case("T=1 p=0.37", &tp, 4, 32000, true);
    sample_case("T=0.9 k=300 p=0.61", &tkp, 4, 1000, true);
    sample_case("T=1 k=100", &tk, 2, 129, true);
}

int main(void)
{
    const int devices = backend_cuda_device_count();
    if (devices == 0) {
        printf("SKIP: no CUDA device visible\n");
        return 77;
    }
    if (backend_cuda_create(&gpu, 0, &E) != AUGUR_OK) {
        printf("SKIP: %s\n", E.message);
        return 77;
    }
    OK(backend_cpu_create(&cpu, 4, &E));
    printf("augur CUDA kernels vs CPU backend, device 0 of %d%s\n", devices,
           getenv("AUGUR_CUDA_SYNC") ? " (AUGUR_CUDA_SYNC: synchronised after every kernel)" : "");

    test_matmul();
    test_rmsnorm();
    test_rope();
    test_attention();
    test_elementwise();
    test_softmax();
    test_argmax();
    test_sampling();

    OK(backend_synchronize(gpu, &E));
    backend_destroy(gpu);
    backend_destroy(cpu);
    printf("\n%d cases, %d failed\n", n_cases, n_failed);
    return n_failed ? 1 : 0;
}
