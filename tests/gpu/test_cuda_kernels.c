/* The CUDA backend's kernels against the CPU backend (kernels/backend.h), kernel by
 * kernel, on random inputs: odd sizes, strided weights, GQA, both RoPE pairings with and
 * without llama3 scaling, attention at several positions on every path, logits ties.
 * Then weights: fill_random bit for bit against the CPU, weight_upload through the
 * pinned staging (strided views, chunks ending inside rows), model_to_backend of a tiny
 * checkpoint (strided row-parallel slices, tied lm_head) and model_load_dummy against
 * the same on the CPU. Paged KV: attention and store_rows through a shuffled block table
 * against the same rows stored contiguously, bit for bit, on every attention path.
 * Fused operations against the same work apart, bit for bit: the norm with the residual
 * add and the split, SwiGLU with the split, RoPE with the KV append (rope_store),
 * attention with the split of its output.
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
#include <unistd.h>

#include "kernels/backend.h"
#include "kernels/cpu_kernels.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/fill_random.h"
#include "kernels/probs.h"
#include "runtime/forward.h"
#include "runtime/model/model.h"
#include "runtime/model/safetensors_write.h"

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
    return p == CUDA_MATMUL_GEMV ? "gemv" : p == CUDA_MATMUL_CUBLAS ? "cublas" : p == CUDA_MATMUL_MMA ? "mma" : "auto";
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

    const bool blas = (path == CUDA_MATMUL_CUBLAS || (path == CUDA_MATMUL_AUTO && n > CUK_INVARIANT_ROWS)) && dt != AUGUR_F16;
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
        {300, 520, 520, 16, true}, {1000, 768, 768, 17, false}, {96, 200, 208, 100, true}, /* 100 > 80: cuBLAS */
    };
    const augur_dtype dts[] = {AUGUR_F32, AUGUR_BF16, AUGUR_F16};
    const cuda_matmul_path paths[] = {CUDA_MATMUL_AUTO, CUDA_MATMUL_GEMV, CUDA_MATMUL_CUBLAS, CUDA_MATMUL_MMA};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t d = 0; d < 3; d++)
            for (size_t p = 0; p < 4; p++) {
                if (paths[p] == CUDA_MATMUL_CUBLAS && dts[d] == AUGUR_F16)
                    continue; /* fp16 weights always take the GEMV path */
                matmul_case(dts[d], shapes[s].rows, shapes[s].cols, shapes[s].stride, shapes[s].n, shapes[s].bias,
                            paths[p], false);
            }
    /* Weights as a device view with an unaligned row stride. */
    matmul_case(AUGUR_BF16, 100, 1027, 1027, 4, false, CUDA_MATMUL_GEMV, true);
    matmul_case(AUGUR_F16, 33, 1030, 1030, 1, true, CUDA_MATMUL_GEMV, true);
    matmul_case(AUGUR_F32, 70, 515, 515, 7, false, CUDA_MATMUL_GEMV, true);
    /* The tensor-core GEMV on a raw view whose padding is not zero, with a column tail. */
    matmul_case(AUGUR_BF16, 77, 1060, 1064, 5, true, CUDA_MATMUL_MMA, true);
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
    if (p == CUDA_ATTN_GROUPED)
        return "grouped";
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
    OK(backend_attention(cpu, ref, q, n, start_pos, n_heads, n_kv, head_dim, k, v, NULL, 0, &E));

    set_paths(CUDA_MATMUL_AUTO, path, chunk);
    float *dq = dev_from(q, q_count * sizeof(float));
    float *dk = dev_from(k, kv_count * sizeof(float));
    float *dv = dev_from(v, kv_count * sizeof(float));
    float *dout = dev_output(q_count);
    OK(backend_attention(gpu, dout, dq, n, start_pos, n_heads, n_kv, head_dim, dk, dv, NULL, 0, &E));
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
    const int cfg[][3] = {{8, 2, 64}, {4, 4, 128}, {6, 3, 48}, {2, 1, 256}, {32, 8, 128}, {4, 2, 16}};
    const struct {
        cuda_attn_path path;
        int chunk;
    } paths[] = {{CUDA_ATTN_SINGLE, 0}, {CUDA_ATTN_SPLIT, 64}, {CUDA_ATTN_SPLIT, 0}, {CUDA_ATTN_AUTO, 0},
                 {CUDA_ATTN_GROUPED, 0}};
    for (int c = 0; c < 6; c++)
        for (int p = 0; p < 5; p++) {
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
    attention_case(32, 8, 128, 3000, 33, CUDA_ATTN_GROUPED, 0);
    attention_case(8, 2, 64, 63, 2, CUDA_ATTN_GROUPED, 0); /* rows on both sides of a chunk edge */
    set_paths(CUDA_MATMUL_AUTO, CUDA_ATTN_AUTO, 0);
}

/* ------------------------------------------------------ element-wise kernels */

static void test_elementwise(void)
{
    print_header("swiglu, add, embedding");
    /* rows x cols; 6 x 4096 takes the kernel that also writes the tensor cores' split */
    const int shapes[][2] = {{1, 1}, {1, 1000003}, {6, 4096}};
    for (int i = 0; i < 3; i++) {
        const int rows = shapes[i][0], cols = shapes[i][1];
        const int64_t count = (int64_t)rows * cols;
        float *g = random_floats((size_t)count, -30.0f, 30.0f); /* both exp tails */
        float *u = random_floats((size_t)count, -1.0f, 1.0f);
        float *ref = xmalloc((size_t)count * sizeof(float));
        OK(backend_swiglu(cpu, ref, g, u, rows, cols, &E));
        float *dg = dev_from(g, (size_t)count * sizeof(float));
        float *du = dev_from(u, (size_t)count * sizeof(float));
        float *dout = dev_output((size_t)count);
        OK(backend_swiglu(gpu, dout, dg, du, rows, cols, &E));
        int unwritten, overrun;
        float *got = fetch(dout, (size_t)count, &unwritten, &overrun);
        char shape[128];
        snprintf(shape, sizeof shape, "n=%d cols=%d", rows, cols);
        report("swiglu", shape, got, ref, (size_t)count, 1e-5, unwritten, overrun);
        free(got);
        OK(backend_swiglu(gpu, dg, dg, du, rows, cols, &E)); /* out aliasing gate */
        got = fetch_plain(dg, (size_t)count);
        snprintf(shape, sizeof shape, "n=%d cols=%d in place", rows, cols);
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
        report("softmax", shape, got, ref, count, 5e-4, 0, 0);
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
    float ref_max[7];
    OK(backend_argmax(cpu, ref, ref_max, x, rows, cols, &E));
    float *dx = dev_from(x, (size_t)rows * cols * sizeof(float));
    int32_t *dout = dev_alloc(rows * sizeof(int32_t));
    int32_t poison[7];
    for (int i = 0; i < rows; i++)
        poison[i] = -12345;
    OK(backend_upload(gpu, dout, poison, sizeof poison, &E));
    float *dmax = dev_alloc(rows * sizeof(float));
    OK(backend_argmax(gpu, dout, dmax, dx, rows, cols, &E));
    int32_t got[7];
    OK(backend_download(gpu, got, dout, sizeof got, &E));
    float got_max[7];
    OK(backend_download(gpu, got_max, dmax, sizeof got_max, &E));
    int bad = 0;
    for (int i = 0; i < rows; i++) /* the values compared as bits: NaN rows included */
        bad += got[i] != ref[i] || memcmp(&got_max[i], &ref_max[i], sizeof(float)) != 0;
    printf("%-14s %-58s", "argmax", "rows=7 cols=50000 (random, ties, last, -inf, NaN, +inf, flat), max");
    for (int i = 0; i < rows; i++)
        printf(" %d/%d", got[i], ref[i]);
    printf("  %s\n", bad ? "FAIL" : "ok");
    n_cases++;
    n_failed += bad != 0;

    float one = 3.0f;
    float *d1 = dev_from(&one, sizeof one);
    OK(backend_argmax(gpu, dout, NULL, d1, 1, 1, &E));
    OK(backend_download(gpu, got, dout, sizeof(int32_t), &E));
    printf("%-14s %-58s %d  %s\n", "argmax", "rows=1 cols=1", got[0], got[0] == 0 ? "ok" : "FAIL");
    n_cases++;
    n_failed += got[0] != 0;
    backend_free(gpu, d1);
    backend_free(gpu, dmax);
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

/* ------------------------------------------------------------------ weights */

/* These cases must match exactly: the row gives how many elements differ. */
static void print_exact_header(const char *section)
{
    printf("\n== %s\n%-14s %-58s %11s %11s %9s  %s\n", section, "operation", "shape", "differ", "extra", "tol",
           "result");
}

static void report_exact(const char *op, const char *shape, int64_t differ, int64_t extra, const char *extra_what)
{
    const bool ok = differ == 0 && extra == 0;
    printf("%-14s %-58s %11lld %11lld %9s  %s", op, shape, (long long)differ, (long long)extra, "exact",
           ok ? "ok" : "FAIL");
    if (extra)
        printf(" (%lld %s)", (long long)extra, extra_what);
    printf("\n");
    n_cases++;
    n_failed += !ok;
}

/* ---------------------------------------------------------- batch invariance */

/* Rows computed in one call of b rows must equal, bit for bit, the same rows computed
 * one at a time (DESIGN §8): verification of gamma+1 positions then reproduces
 * decode. The default (AUTO) paths, at the batch sizes the issue names. */
static const int invariance_batches[] = {2, 6, 9, 16, 33};
#define INV_MAX_ROWS 33

static int64_t count_differ(const float *a, const float *b, size_t count)
{
    int64_t d = 0;
    for (size_t i = 0; i < count; i++)
        d += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return d;
}

static void invariance_attention(int n_heads, int n_kv, int head_dim, int start_pos)
{
    set_paths(CUDA_MATMUL_AUTO, CUDA_ATTN_AUTO, 0);
    const size_t row = (size_t)n_heads * head_dim;
    const size_t kv_count = (size_t)(start_pos + INV_MAX_ROWS) * n_kv * head_dim;
    float *q = random_floats(row * INV_MAX_ROWS, -3.0f, 3.0f);
    float *k = random_floats(kv_count, -1.0f, 1.0f);
    float *v = random_floats(kv_count, -1.0f, 1.0f);
    float *dq = dev_from(q, row * INV_MAX_ROWS * sizeof(float));
    float *dk = dev_from(k, kv_count * sizeof(float));
    float *dv = dev_from(v, kv_count * sizeof(float));
    float *dout = dev_output(row * INV_MAX_ROWS);
    float *alone = xmalloc(row * INV_MAX_ROWS * sizeof(float));
    for (int i = 0; i < INV_MAX_ROWS; i++) { /* row i alone, at its own position */
        OK(backend_attention(gpu, dout, dq + i * row, 1, start_pos + i, n_heads, n_kv, head_dim, dk, dv, NULL, 0,
                              &E));
        float *got = fetch_plain(dout, row);
        memcpy(alone + i * row, got, row * sizeof(float));
        free(got);
    }
    for (size_t b = 0; b < sizeof invariance_batches / sizeof *invariance_batches; b++) {
        const int n = invariance_batches[b];
        OK(backend_attention(gpu, dout, dq, n, start_pos, n_heads, n_kv, head_dim, dk, dv, NULL, 0, &E));
        float *got = fetch_plain(dout, row * n);
        char shape[128];
        snprintf(shape, sizeof shape, "heads=%d kv=%d hd=%d context %d: %d rows vs 1", n_heads, n_kv, head_dim,
                 start_pos, n);
        report_exact("attention", shape, count_differ(got, alone, row * n), 0, "");
        free(got);
    }
    backend_free(gpu, dq);
    backend_free(gpu, dk);
    backend_free(gpu, dv);
    backend_free(gpu, dout);
    free(alone);
    free(v);
    free(k);
    free(q);
}

static void invariance_matmul(augur_dtype dt, int rows, int cols)
{
    set_paths(CUDA_MATMUL_AUTO, CUDA_ATTN_AUTO, 0);
    tensor_view host = host_matrix(dt, rows, cols, cols, 0.05f);
    tensor_view dev;
    OK(backend_weight_upload(gpu, &dev, &host, &E));
    float *x = random_floats((size_t)cols * INV_MAX_ROWS, -2.0f, 2.0f);
    float *dx = dev_from(x, (size_t)cols * INV_MAX_ROWS * sizeof(float));
    float *dout = dev_output((size_t)rows * INV_MAX_ROWS);
    float *alone = xmalloc((size_t)rows * INV_MAX_ROWS * sizeof(float));
    for (int i = 0; i < INV_MAX_ROWS; i++) {
        OK(backend_matmul(gpu, dout, dx + (size_t)i * cols, 1, &dev, NULL, &E));
        float *got = fetch_plain(dout, (size_t)rows);
        memcpy(alone + (size_t)i * rows, got, (size_t)rows * sizeof(float));
        free(got);
    }
    for (size_t b = 0; b < sizeof invariance_batches / sizeof *invariance_batches; b++) {
        const int n = invariance_batches[b];
        OK(backend_matmul(gpu, dout, dx, n, &dev, NULL, &E));
        float *got = fetch_plain(dout, (size_t)rows * n);
        char shape[128];
        snprintf(shape, sizeof shape, "%s %d x %d: %d rows vs 1", augur_dtype_name(dt), rows, cols, n);
        report_exact("matmul", shape, count_differ(got, alone, (size_t)rows * n), 0, "");
        free(got);
    }
    backend_weight_free(gpu, &dev);
    backend_free(gpu, dx);
    backend_free(gpu, dout);
    free(alone);
    free(x);
    free((void *)host.data);
}

/* backend_matmul_parts (q|k|v and gate|up in one grid) must give each part exactly what
 * backend_matmul gives it alone, at every row count and on every path; parts of
 * different heights, a column tail, a bias on some. */
static void matmul_parts_case(int n, cuda_matmul_path path)
{
    set_paths(path, CUDA_ATTN_AUTO, 0);
    enum { PARTS = 3, COLS = 1060 };
    const int rows[PARTS] = {272, 64, 40};
    tensor_view host[PARTS], dev[PARTS];
    float *dbias[PARTS] = {NULL}, *dout[PARTS], *alone[PARTS];
    matmul_part parts[PARTS];
    float *x = random_floats((size_t)COLS * n, -2.0f, 2.0f);
    float *dx = dev_from(x, (size_t)COLS * n * sizeof(float));
    for (int p = 0; p < PARTS; p++) {
        host[p] = host_matrix(AUGUR_BF16, rows[p], COLS, COLS, 0.05f);
        OK(backend_weight_upload(gpu, &dev[p], &host[p], &E));
        if (p != 1) {
            float *b = random_floats((size_t)rows[p], -1.0f, 1.0f);
            dbias[p] = dev_from(b, (size_t)rows[p] * sizeof(float));
            free(b);
        }
        dout[p] = dev_output((size_t)rows[p] * n);
        OK(backend_matmul(gpu, dout[p], dx, n, &dev[p], dbias[p], &E));
        alone[p] = fetch_plain(dout[p], (size_t)rows[p] * n);
        parts[p] = (matmul_part){dout[p], &dev[p], dbias[p]};
    }
    for (int count = 2; count <= PARTS; count++) {
        for (int p = 0; p < count; p++) { /* poisoned again: an output the grouped launch skips shows */
            backend_free(gpu, dout[p]);
            parts[p].out = dout[p] = dev_output((size_t)rows[p] * n);
        }
        OK(backend_matmul_parts(gpu, dx, n, parts, count, &E));
        for (int p = 0; p < count; p++) {
            int unwritten, overrun;
            float *got = fetch(dout[p], (size_t)rows[p] * n, &unwritten, &overrun);
            char shape[128];
            snprintf(shape, sizeof shape, "part %d of %d (%d x %d) n=%d %s vs alone", p + 1, count, rows[p], COLS, n,
                     path_name(path));
            report_exact("matmul_parts", shape, count_differ(got, alone[p], (size_t)rows[p] * n),
                         unwritten + overrun, "unwritten or past the end");
            free(got);
        }
    }
    for (int p = 0; p < PARTS; p++) {
        backend_weight_free(gpu, &dev[p]);
        backend_free(gpu, dbias[p]);
        backend_free(gpu, dout[p]);
        free(alone[p]);
        free((void *)host[p].data);
    }
    backend_free(gpu, dx);
    free(x);
    set_paths(CUDA_MATMUL_AUTO, CUDA_ATTN_AUTO, 0);
}

static void test_matmul_parts(void)
{
    print_exact_header("grouped products: backend_matmul_parts == each product alone");
    const int ns[] = {1, 6, 9, 17, 100};
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) {
        matmul_parts_case(ns[i], CUDA_MATMUL_AUTO);
        matmul_parts_case(ns[i], CUDA_MATMUL_MMA);
    }
    matmul_parts_case(6, CUDA_MATMUL_GEMV);
}

/* The residual add fused into the next norm, and a norm that also writes the split
 * activations of the product after it (backend_add_rmsnorm, cuda backend norm_op): x, the
 * norm and the product after it must equal, bit for bit, the same work done apart (add,
 * norm, a copy so that the product splits its x itself). Dims: split (% 32 == 0), fused
 * without a split (% 4 == 0), neither (odd). */
static void fused_norm_case(int n, int dim)
{
    set_paths(CUDA_MATMUL_AUTO, CUDA_ATTN_AUTO, 0);
    const size_t count = (size_t)n * dim;
    const int rows = 48;
    float *x = random_floats(count, -2.0f, 2.0f);
    float *partial = random_floats(count, -1.0f, 1.0f);
    float *w = random_floats((size_t)dim, 0.5f, 1.5f);
    tensor_view hw = host_matrix(AUGUR_BF16, rows, dim, dim, 0.05f), dw;
    OK(backend_weight_upload(gpu, &dw, &hw, &E));
    float *dp = dev_from(partial, count * sizeof(float)), *dnw = dev_from(w, (size_t)dim * sizeof(float));
    /* fused: add + norm (+ split) in one kernel, then the product on the norm's split */
    float *dx1 = dev_from(x, count * sizeof(float)), *dxb1 = dev_output(count), *dout1 = dev_output((size_t)n * rows);
    OK(backend_add_rmsnorm(gpu, dxb1, dx1, dp, dnw, n, dim, 1e-5f, &E));
    OK(backend_matmul(gpu, dout1, dxb1, n, &dw, NULL, &E));
    /* apart: add, norm, a copy, the product splitting the copy itself */
    float *dx2 = dev_from(x, count * sizeof(float)), *dxb2 = dev_output(count), *dxb3 = dev_output(count);
    float *dout2 = dev_output((size_t)n * rows), *dout3 = dev_output((size_t)n * rows);
    OK(backend_add(gpu, dx2, dx2, dp, (int64_t)count, &E));
    OK(backend_rmsnorm(gpu, dxb2, dx2, dnw, n, dim, 1e-5f, &E));
    OK(backend_copy(gpu, dxb3, dxb2, count * sizeof(float), &E));
    OK(backend_matmul(gpu, dout2, dxb3, n, &dw, NULL, &E));
    /* a plain norm (no add) straight before the product: its split is the one used */
    OK(backend_rmsnorm(gpu, dxb3, dx2, dnw, n, dim, 1e-5f, &E));
    OK(backend_matmul(gpu, dout3, dxb3, n, &dw, NULL, &E));

    int unwritten, overrun;
    float *x1 = fetch_plain(dx1, count), *x2 = fetch_plain(dx2, count);
    float *xb1 = fetch(dxb1, count, &unwritten, &overrun), *xb2 = fetch_plain(dxb2, count);
    float *o1 = fetch_plain(dout1, (size_t)n * rows), *o2 = fetch_plain(dout2, (size_t)n * rows);
    float *o3 = fetch_plain(dout3, (size_t)n * rows);
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d dim=%d: x after the add", n, dim);
    report_exact("add_rmsnorm", shape, count_differ(x1, x2, count), 0, "");
    snprintf(shape, sizeof shape, "n=%d dim=%d: norm", n, dim);
    report_exact("add_rmsnorm", shape, count_differ(xb1, xb2, count), unwritten + overrun,
                 "unwritten or past the end");
    snprintf(shape, sizeof shape, "n=%d dim=%d: product after the fused norm", n, dim);
    report_exact("add_rmsnorm", shape, count_differ(o1, o2, (size_t)n * rows), 0, "");
    snprintf(shape, sizeof shape, "n=%d dim=%d: product after a plain norm", n, dim);
    report_exact("rmsnorm", shape, count_differ(o3, o2, (size_t)n * rows), 0, "");

    float *bufs[] = {dp, dnw, dx1, dxb1, dout1, dx2, dxb2, dxb3, dout2, dout3};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        backend_free(gpu, bufs[i]);
    backend_weight_free(gpu, &dw);
    float *host[] = {x1, x2, xb1, xb2, o1, o2, o3, x, partial, w};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++)
        free(host[i]);
    free((void *)hw.data);
}

static void test_fused_norm(void)
{
    print_exact_header("fused norm: add + rmsnorm + split in one kernel == apart");
    static const int cases[][2] = {{1, 4096}, {6, 4096}, {9, 8192}, {17, 2048}, {100, 512}, {5, 1000}, {3, 130}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        fused_norm_case(cases[i][0], cases[i][1]);
}

/* SwiGLU that also writes the split activations of the down projection after it (cuda
 * backend cuda_swiglu), in place as the MLP runs it: its output must equal, bit for bit,
 * the plain swiglu kernel's (on the GEMV path no product takes the tensor cores, so the
 * split is left to the product), and the product on its split the product splitting a
 * copy of that output itself; an operation that rewrites x in between must leave the
 * product to split x again. cols % 32 != 0: no split, the same equalities. */
static void swiglu_split_case(int n, int cols, cuda_matmul_path path)
{
    set_paths(path, CUDA_ATTN_AUTO, 0);
    const int rows = 48;
    const size_t count = (size_t)n * cols, out_count = (size_t)n * rows;
    float *g = random_floats(count, -12.0f, 12.0f), *u = random_floats(count, -1.0f, 1.0f);
    tensor_view hw = host_matrix(AUGUR_BF16, rows, cols, cols, 0.05f), dw;
    OK(backend_weight_upload(gpu, &dw, &hw, &E));
    float *du = dev_from(u, count * sizeof(float));
    float *dg1 = dev_from(g, count * sizeof(float)), *dg2 = dev_from(g, count * sizeof(float));
    float *dg3 = dev_output(count), *dg4 = dev_from(g, count * sizeof(float));
    float *dg5 = dev_from(g, count * sizeof(float)), *dg6 = dev_output(count);
    float *dout[4];
    for (int i = 0; i < 4; i++)
        dout[i] = dev_output(out_count);
    /* fused: the product on the swiglu's split */
    OK(backend_swiglu(gpu, dg1, dg1, du, n, cols, &E));
    OK(backend_matmul(gpu, dout[0], dg1, n, &dw, NULL, &E));
    /* apart: a copy in between, the product splitting the copy itself */
    OK(backend_swiglu(gpu, dg2, dg2, du, n, cols, &E));
    OK(backend_copy(gpu, dg3, dg2, count * sizeof(float), &E));
    OK(backend_matmul(gpu, dout[1], dg3, n, &dw, NULL, &E));
    /* x rewritten between the swiglu and the product (the swiglu's split is stale) */
    OK(backend_swiglu(gpu, dg5, dg5, du, n, cols, &E));
    OK(backend_add(gpu, dg5, dg5, du, (int64_t)count, &E));
    OK(backend_matmul(gpu, dout[2], dg5, n, &dw, NULL, &E));
    OK(backend_copy(gpu, dg6, dg5, count * sizeof(float), &E));
    OK(backend_matmul(gpu, dout[3], dg6, n, &dw, NULL, &E));
    /* the plain swiglu kernel */
    set_paths(CUDA_MATMUL_GEMV, CUDA_ATTN_AUTO, 0);
    OK(backend_swiglu(gpu, dg4, dg4, du, n, cols, &E));
    set_paths(path, CUDA_ATTN_AUTO, 0);

    float *g1 = fetch_plain(dg1, count), *g4 = fetch_plain(dg4, count);
    int unwritten[4], overrun[4];
    float *o[4];
    for (int i = 0; i < 4; i++)
        o[i] = fetch(dout[i], out_count, &unwritten[i], &overrun[i]);
    const char *split =
        cols % 32 == 0 && (path == CUDA_MATMUL_MMA || (path == CUDA_MATMUL_AUTO && n <= CUK_INVARIANT_ROWS))
            ? "split"
            : "no split";
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d cols=%d %s (%s): output vs plain kernel", n, cols, path_name(path), split);
    report_exact("swiglu", shape, count_differ(g1, g4, count), 0, "");
    snprintf(shape, sizeof shape, "n=%d cols=%d %s (%s): product after it", n, cols, path_name(path), split);
    report_exact("swiglu", shape, count_differ(o[0], o[1], out_count), unwritten[0] + overrun[0],
                 "unwritten or past the end");
    snprintf(shape, sizeof shape, "n=%d cols=%d %s (%s): product after x rewritten", n, cols, path_name(path), split);
    report_exact("swiglu", shape, count_differ(o[2], o[3], out_count), unwritten[2] + overrun[2],
                 "unwritten or past the end");

    float *bufs[] = {du, dg1, dg2, dg3, dg4, dg5, dg6, dout[0], dout[1], dout[2], dout[3]};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        backend_free(gpu, bufs[i]);
    backend_weight_free(gpu, &dw);
    float *host[] = {g, u, g1, g4, o[0], o[1], o[2], o[3]};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++)
        free(host[i]);
    free((void *)hw.data);
    set_paths(CUDA_MATMUL_AUTO, CUDA_ATTN_AUTO, 0);
}

static void test_swiglu_split(void)
{
    print_exact_header("swiglu + split in one kernel, then the down projection == apart");
    const int ns[] = {1, 6, 9, 17, 80};
    const int cols[] = {14336, 8192, 1000};
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
        for (size_t c = 0; c < sizeof cols / sizeof *cols; c++)
            swiglu_split_case(ns[i], cols[c], CUDA_MATMUL_AUTO);
    swiglu_split_case(100, 4096, CUDA_MATMUL_MMA);  /* the split of more rows than one block takes */
    swiglu_split_case(100, 4096, CUDA_MATMUL_AUTO); /* prefill: cuBLAS, no split */
}

/* Grouped attention whose combine also writes the split activations of the output
 * projection after it (cuda backend cuda_attention): the attention output and the product
 * must equal, bit for bit, the same work with a copy in between (the product splitting
 * its x itself); and a second attention between the first and the product must not leave
 * the product reading the second one's split. head_dim 48: no split. */
static void attention_split_case(int n, int start_pos, int n_heads, int n_kv, int head_dim)
{
    set_paths(CUDA_MATMUL_AUTO, CUDA_ATTN_AUTO, 0);
    const int cols = n_heads * head_dim, rows = 40;
    const size_t count = (size_t)n * cols, out_count = (size_t)n * rows;
    const size_t kv_count = (size_t)(start_pos + n) * n_kv * head_dim;
    float *q = random_floats(count, -3.0f, 3.0f), *q2 = random_floats(count, -3.0f, 3.0f);
    float *k = random_floats(kv_count, -1.0f, 1.0f), *v = random_floats(kv_count, -1.0f, 1.0f);
    tensor_view hw = host_matrix(AUGUR_BF16, rows, cols, cols, 0.05f), dw;
    OK(backend_weight_upload(gpu, &dw, &hw, &E));
    float *dq = dev_from(q, count * sizeof(float)), *dq2 = dev_from(q2, count * sizeof(float));
    float *dk = dev_from(k, kv_count * sizeof(float)), *dv = dev_from(v, kv_count * sizeof(float));
    float *da1 = dev_output(count), *da2 = dev_output(count), *da3 = dev_output(count), *da4 = dev_output(count);
    float *do1 = dev_output(out_count), *do2 = dev_output(out_count), *do3 = dev_output(out_count);
    /* fused: the product on the combine's split */
    OK(backend_attention(gpu, da1, dq, n, start_pos, n_heads, n_kv, head_dim, dk, dv, NULL, 0, &E));
    OK(backend_matmul(gpu, do1, da1, n, &dw, NULL, &E));
    /* apart: a copy in between */
    OK(backend_attention(gpu, da2, dq, n, start_pos, n_heads, n_kv, head_dim, dk, dv, NULL, 0, &E));
    OK(backend_copy(gpu, da3, da2, count * sizeof(float), &E));
    OK(backend_matmul(gpu, do2, da3, n, &dw, NULL, &E));
    /* another attention (other queries) before the product of the first */
    OK(backend_attention(gpu, da2, dq, n, start_pos, n_heads, n_kv, head_dim, dk, dv, NULL, 0, &E));
    OK(backend_attention(gpu, da4, dq2, n, start_pos, n_heads, n_kv, head_dim, dk, dv, NULL, 0, &E));
    OK(backend_matmul(gpu, do3, da2, n, &dw, NULL, &E));

    int unwritten, overrun;
    float *a1 = fetch(da1, count, &unwritten, &overrun), *a3 = fetch_plain(da3, count);
    float *o1 = fetch_plain(do1, out_count), *o2 = fetch_plain(do2, out_count), *o3 = fetch_plain(do3, out_count);
    const char *split = head_dim % 32 == 0 ? "split" : "no split";
    char shape[128];
    snprintf(shape, sizeof shape, "n=%d pos %d heads %d/%d hd %d (%s): output", n, start_pos, n_heads, n_kv, head_dim,
             split);
    report_exact("attention", shape, count_differ(a1, a3, count), unwritten + overrun, "unwritten or past the end");
    snprintf(shape, sizeof shape, "n=%d pos %d heads %d/%d hd %d (%s): product after it", n, start_pos, n_heads, n_kv,
             head_dim, split);
    report_exact("attention", shape, count_differ(o1, o2, out_count), 0, "");
    snprintf(shape, sizeof shape, "n=%d pos %d heads %d/%d hd %d (%s): another attention between", n, start_pos,
             n_heads, n_kv, head_dim, split);
    report_exact("attention", shape, count_differ(o3, o2, out_count), 0, "");

    float *bufs[] = {dq, dq2, dk, dv, da1, da2, da3, da4, do1, do2, do3};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        backend_free(gpu, bufs[i]);
    backend_weight_free(gpu, &dw);
    float *host[] = {q, q2, k, v, a1, a3, o1, o2, o3};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++)
        free(host[i]);
    free((void *)hw.data);
}

static void test_attention_split(void)
{
    print_exact_header("attention's combine + split, then the output projection == apart");
    const int ns[] = {1, 6, 9, 17};
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) {
        attention_split_case(ns[i], 100, 32, 8, 128);
        attention_split_case(ns[i], 600, 6, 2, 64);
    }
    attention_split_case(5, 37, 4, 2, 48);
}

static void test_batch_invariance(void)
{
    print_exact_header("batch invariance: rows in one call == the same rows one at a time");
    const int contexts[] = {100, 600, 3000};
    for (size_t c = 0; c < sizeof contexts / sizeof *contexts; c++)
        invariance_attention(32, 8, 128, contexts[c]);
    invariance_matmul(AUGUR_BF16, 4096, 1024);
    /* few tiles over many columns (the 70B shard of 8's q|k|v), a ragged last tile and chunk */
    invariance_matmul(AUGUR_BF16, 1280, 8192);
    invariance_matmul(AUGUR_BF16, 1000, 4001);
    invariance_matmul(AUGUR_F32, 1000, 515);
    invariance_matmul(AUGUR_F16, 512, 2048);
}

/* ------------------------------------------------------------- paged KV cache */

#define PAGED_BLOCK 16 /* as KV_BLOCK (runtime/kv_cache.h) */

/* A block table for len positions over a pool of *pool_blocks blocks (three spare), the
 * blocks shuffled so that neighbours in the sequence are not neighbours in the pool. */
static int32_t *shuffled_table(int len, int *pool_blocks)
{
    const int used = (len + PAGED_BLOCK - 1) / PAGED_BLOCK;
    *pool_blocks = used + 3;
    int32_t *ids = xmalloc((size_t)*pool_blocks * sizeof(int32_t));
    for (int i = 0; i < *pool_blocks; i++)
        ids[i] = i;
    for (int i = *pool_blocks - 1; i > 0; i--) {
        int j = (int)(uniform01() * (i + 1));
        int32_t t = ids[i];
        ids[i] = ids[j];
        ids[j] = t;
    }
    return ids;
}

/* The rows of a contiguous cache k ([len][row]) laid out in a pool through table; other
 * rows hold random values that must not be read. */
static float *scatter_rows(const float *k, int len, size_t row, const int32_t *table, int pool_blocks)
{
    float *pool = random_floats((size_t)pool_blocks * PAGED_BLOCK * row, -1.0f, 1.0f);
    for (int t = 0; t < len; t++)
        memcpy(pool + ((size_t)table[t / PAGED_BLOCK] * PAGED_BLOCK + t % PAGED_BLOCK) * row, k + (size_t)t * row,
               row * sizeof(float));
    return pool;
}

/* Attention through a block table must equal, bit for bit, attention over the same rows
 * stored contiguously, on the given path (and the CPU backend likewise). */
static void paged_attention_case(int n_heads, int n_kv, int head_dim, int start_pos, int n, cuda_attn_path path,
                                 int chunk)
{
    set_paths(CUDA_MATMUL_AUTO, path, chunk);
    const int len = start_pos + n;
    const size_t row = (size_t)n_kv * head_dim, q_count = (size_t)n * n_heads * head_dim;
    int pool_blocks;
    int32_t *table = shuffled_table(len, &pool_blocks);
    const size_t pool_count = (size_t)pool_blocks * PAGED_BLOCK * row;
    float *q = random_floats(q_count, -3.0f, 3.0f);
    float *k = random_floats((size_t)len * row, -1.0f, 1.0f);
    float *v = random_floats((size_t)len * row, -1.0f, 1.0f);
    float *kp = scatter_rows(k, len, row, table, pool_blocks), *vp = scatter_rows(v, len, row, table, pool_blocks);
    float *dq = dev_from(q, q_count * sizeof(float));
    float *dk = dev_from(k, (size_t)len * row * sizeof(float)), *dv = dev_from(v, (size_t)len * row * sizeof(float));
    float *dkp = dev_from(kp, pool_count * sizeof(float)), *dvp = dev_from(vp, pool_count * sizeof(float));
    int32_t *dtable = dev_from(table, (size_t)pool_blocks * sizeof(int32_t));
    float *dout = dev_output(q_count);
    OK(backend_attention(gpu, dout, dq, n, start_pos, n_heads, n_kv, head_dim, dk, dv, NULL, 0, &E));
    float *contiguous = fetch_plain(dout, q_count);
    OK(backend_attention(gpu, dout, dq, n, start_pos, n_heads, n_kv, head_dim, dkp, dvp, dtable, PAGED_BLOCK, &E));
    int unwritten, overrun;
    float *paged = fetch(dout, q_count, &unwritten, &overrun);
    char shape[128];
    snprintf(shape, sizeof shape, "heads=%d kv=%d hd=%d pos=%d n=%d %s", n_heads, n_kv, head_dim, start_pos, n,
             attn_name(path, chunk));
    report_exact("attn paged", shape, count_differ(paged, contiguous, q_count), overrun, "guard floats overwritten");

    float *cpu_c = xmalloc(q_count * sizeof(float)), *cpu_p = xmalloc(q_count * sizeof(float));
    OK(backend_attention(cpu, cpu_c, q, n, start_pos, n_heads, n_kv, head_dim, k, v, NULL, 0, &E));
    OK(backend_attention(cpu, cpu_p, q, n, start_pos, n_heads, n_kv, head_dim, kp, vp, table, PAGED_BLOCK, &E));
    snprintf(shape, sizeof shape, "heads=%d kv=%d hd=%d pos=%d n=%d cpu", n_heads, n_kv, head_dim, start_pos, n);
    report_exact("attn paged", shape, count_differ(cpu_p, cpu_c, q_count), 0, "");

    void *dev[] = {dq, dk, dv, dkp, dvp, dtable, dout};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
        backend_free(gpu, dev[i]);
    void *host[] = {table, q, k, v, kp, vp, contiguous, paged, cpu_c, cpu_p};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++)
        free(host[i]);
}

/* store_rows through a block table writes exactly the rows of positions start..start+n-1
 * where the table puts them, and nothing else of the pool. */
static void paged_store_case(int n_kv, int head_dim, int start_pos, int n)
{
    const int len = start_pos + n;
    const size_t row = (size_t)n_kv * head_dim;
    int pool_blocks;
    int32_t *table = shuffled_table(len, &pool_blocks);
    const size_t pool_count = (size_t)pool_blocks * PAGED_BLOCK * row;
    float *src = random_floats((size_t)n * row, -1.0f, 1.0f);
    float *before = random_floats(pool_count, -1.0f, 1.0f);
    float *want = xmalloc(pool_count * sizeof(float));
    memcpy(want, before, pool_count * sizeof(float));
    for (int i = 0; i < n; i++) {
        const int p = start_pos + i;
        memcpy(want + ((size_t)table[p / PAGED_BLOCK] * PAGED_BLOCK + p % PAGED_BLOCK) * row, src + (size_t)i * row,
               row * sizeof(float));
    }
    float *dsrc = dev_from(src, (size_t)n * row * sizeof(float)), *dpool = dev_from(before, pool_count * sizeof(float));
    int32_t *dtable = dev_from(table, (size_t)pool_blocks * sizeof(int32_t));
    OK(backend_store_rows(gpu, dpool, dsrc, (int64_t)row, n, start_pos, dtable, PAGED_BLOCK, &E));
    float *got = fetch_plain(dpool, pool_count);
    char shape[128];
    snprintf(shape, sizeof shape, "kv=%d hd=%d pos=%d n=%d", n_kv, head_dim, start_pos, n);
    report_exact("store paged", shape, count_differ(got, want, pool_count), 0, "");
    memcpy(got, before, pool_count * sizeof(float)); /* the CPU backend through the same table */
    OK(backend_store_rows(cpu, got, src, (int64_t)row, n, start_pos, table, PAGED_BLOCK, &E));
    snprintf(shape, sizeof shape, "kv=%d hd=%d pos=%d n=%d cpu", n_kv, head_dim, start_pos, n);
    report_exact("store paged", shape, count_differ(got, want, pool_count), 0, "");
    backend_free(gpu, dsrc);
    backend_free(gpu, dpool);
    backend_free(gpu, dtable);
    void *host[] = {table, src, before, want, got};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++)
        free(host[i]);
}

static void test_paged(void)
{
    print_exact_header("paged KV cache: through a block table == the same rows contiguous");
    const struct {
        cuda_attn_path path;
        int chunk;
    } paths[] = {{CUDA_ATTN_SINGLE, 0}, {CUDA_ATTN_SPLIT, 64}, {CUDA_ATTN_SPLIT, 0}, {CUDA_ATTN_AUTO, 0},
                 {CUDA_ATTN_GROUPED, 0}};
    for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
        paged_attention_case(8, 2, 64, 0, 1, paths[p].path, paths[p].chunk);
        paged_attention_case(8, 2, 64, 15, 9, paths[p].path, paths[p].chunk); /* rows across a block edge */
        paged_attention_case(32, 8, 128, 1000, 6, paths[p].path, paths[p].chunk);
        paged_attention_case(6, 3, 48, 63, 2, paths[p].path, paths[p].chunk); /* rows across a chunk edge */
    }
    paged_attention_case(32, 8, 128, 1, 300, CUDA_ATTN_AUTO, 0); /* prefill-like: many rows */
    paged_attention_case(8, 2, 64, 20000, 3, CUDA_ATTN_SINGLE, 0); /* opted-in shared memory */
    paged_store_case(8, 128, 0, 1);
    paged_store_case(8, 128, 15, 2);
    paged_store_case(2, 64, 5, 40);
    paged_store_case(3, 48, 1000, 80);
    set_paths(CUDA_MATMUL_AUTO, CUDA_ATTN_AUTO, 0);
}

/* backend_rope_store (the cuda backend's one kernel) against its four operations on the
 * GPU (rope of q, rope of k, store_rows of k and of v): q, k and both caches bit for
 * bit, contiguous (rows past the step must stay) and paged, with the position passed or
 * bound as a captured step reads it. */
static void rope_store_case(int n_heads, int n_kv, int head_dim, int start_pos, int n, rope_pairing pairs, bool paged,
                            bool bound)
{
    set_paths(CUDA_MATMUL_AUTO, CUDA_ATTN_AUTO, 0);
    const int len = start_pos + n;
    const size_t row = (size_t)n_kv * head_dim, q_count = (size_t)n * n_heads * head_dim, kv_count = (size_t)n * row;
    int pool_blocks = 0;
    int32_t *table = paged ? shuffled_table(len, &pool_blocks) : NULL;
    const int cache_rows = paged ? pool_blocks * PAGED_BLOCK : len + 5;
    const size_t cache_count = (size_t)cache_rows * row;
    rope_llama3_scaling sc = {.enabled = false};
    float *inv = xmalloc((size_t)head_dim / 2 * sizeof(float));
    rope_inv_freq(inv, head_dim, 10000.0f, &sc);
    float *q = random_floats(q_count, -1.0f, 1.0f), *k = random_floats(kv_count, -1.0f, 1.0f);
    float *v = random_floats(kv_count, -1.0f, 1.0f);
    float *kc = random_floats(cache_count, -1.0f, 1.0f), *vc = random_floats(cache_count, -1.0f, 1.0f);
    float *dinv = dev_from(inv, (size_t)head_dim / 2 * sizeof(float)), *dv = dev_from(v, kv_count * sizeof(float));
    int32_t *dtable = paged ? dev_from(table, (size_t)pool_blocks * sizeof(int32_t)) : NULL;
    const int32_t pos = start_pos;
    int32_t *dpos = bound ? dev_from(&pos, sizeof pos) : NULL;
    float *d[2][4]; /* per run: q, k, k cache, v cache */
    for (int r = 0; r < 2; r++) {
        d[r][0] = dev_from(q, q_count * sizeof(float));
        d[r][1] = dev_from(k, kv_count * sizeof(float));
        d[r][2] = dev_from(kc, cache_count * sizeof(float));
        d[r][3] = dev_from(vc, cache_count * sizeof(float));
    }
    if (bound)
        OK(backend_bind_position(gpu, dpos, cache_rows, &E));
    OK(backend_rope_store(gpu, d[0][0], d[0][1], dv, n, n_heads, n_kv, head_dim, start_pos, dinv, pairs, d[0][2],
                          d[0][3], dtable, PAGED_BLOCK, &E));
    OK(backend_rope(gpu, d[1][0], n, n_heads, head_dim, start_pos, dinv, pairs, &E));
    OK(backend_rope(gpu, d[1][1], n, n_kv, head_dim, start_pos, dinv, pairs, &E));
    OK(backend_store_rows(gpu, d[1][2], d[1][1], (int64_t)row, n, start_pos, dtable, PAGED_BLOCK, &E));
    OK(backend_store_rows(gpu, d[1][3], dv, (int64_t)row, n, start_pos, dtable, PAGED_BLOCK, &E));
    if (bound)
        OK(backend_bind_position(gpu, NULL, 0, &E));

    const size_t counts[4] = {q_count, kv_count, cache_count, cache_count};
    static const char *const names[4] = {"q", "k", "k cache", "v cache"};
    int64_t differ[4], total = 0;
    float *got[2][4];
    for (int b = 0; b < 4; b++) {
        got[0][b] = fetch_plain(d[0][b], counts[b]);
        got[1][b] = fetch_plain(d[1][b], counts[b]);
        differ[b] = count_differ(got[0][b], got[1][b], counts[b]);
        total += differ[b];
    }
    /* the step's rows are in the caches: v as it came, k as rotated */
    int64_t misplaced = 0;
    for (int i = 0; i < n; i++) {
        const int p = start_pos + i;
        const size_t at = (paged ? (size_t)table[p / PAGED_BLOCK] * PAGED_BLOCK + p % PAGED_BLOCK : (size_t)p) * row;
        misplaced += count_differ(got[0][3] + at, v + (size_t)i * row, row) +
                     count_differ(got[0][2] + at, got[0][1] + (size_t)i * row, row);
    }
    char shape[128];
    snprintf(shape, sizeof shape, "%s heads=%d kv=%d hd=%d pos=%d n=%d%s%s",
             pairs == ROPE_PAIRS_HALF ? "half" : "adjacent", n_heads, n_kv, head_dim, start_pos, n,
             paged ? " paged" : "", bound ? " bound" : "");
    report_exact("rope_store", shape, total, misplaced, "cache floats not the step's row");
    if (total)
        for (int b = 0; b < 4; b++)
            printf("%-14s   ^ %s: %lld differ\n", "", names[b], (long long)differ[b]);

    for (int r = 0; r < 2; r++)
        for (int b = 0; b < 4; b++) {
            backend_free(gpu, d[r][b]);
            free(got[r][b]);
        }
    void *dev[] = {dinv, dv, dtable, dpos};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++)
        backend_free(gpu, dev[i]);
    void *host[] = {table, inv, q, k, v, kc, vc};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++)
        free(host[i]);
}

static void test_rope_store(void)
{
    print_exact_header("rope_store: RoPE of q and k and the KV append in one kernel == the four operations");
    const int heads[][3] = {{32, 8, 128}, {32, 8, 64}};
    const int ns[] = {1, 6, 9, 17}, starts[] = {0, 100};
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 4; i++)
            for (int s = 0; s < 2; s++)
                for (int p = 0; p < 2; p++)
                    for (int paged = 0; paged < 2; paged++)
                        for (int bound = 0; bound < 2; bound++)
                            rope_store_case(heads[h][0], heads[h][1], heads[h][2], starts[s], ns[i], (rope_pairing)p,
                                            paged, bound);
    /* blocks holding q and k heads, or k and v heads, together (4 heads a block) */
    rope_store_case(4, 1, 128, 31, 3, ROPE_PAIRS_HALF, false, true);
    rope_store_case(6, 3, 48, 7, 300, ROPE_PAIRS_ADJACENT, true, false); /* prefill-like: many rows */
    rope_store_case(6, 3, 48, 1000, 80, ROPE_PAIRS_HALF, false, true);
}

static void fill_case(augur_dtype dt, int64_t count, uint64_t seed, float scale, float offset)
{
    const size_t es = augur_dtype_size(dt), bytes = (size_t)count * es, guard = 256;
    unsigned char *ref = xmalloc(bytes), *got = xmalloc(bytes + guard), *poison = xmalloc(bytes + guard);
    memset(poison, 0xa5, bytes + guard);
    unsigned char *d = dev_from(poison, bytes + guard);
    OK(backend_fill_random(cpu, ref, dt, count, seed, scale, offset, &E));
    OK(backend_fill_random(gpu, d, dt, count, seed, scale, offset, &E));
    OK(backend_download(gpu, got, d, bytes + guard, &E));
    int64_t differ = 0, overrun = 0;
    for (int64_t i = 0; i < count; i++)
        differ += memcmp(got + (size_t)i * es, ref + (size_t)i * es, es) != 0;
    for (size_t b = 0; b < guard; b++)
        overrun += got[bytes + b] != 0xa5;
    char shape[128];
    snprintf(shape, sizeof shape, "%s count=%lld seed=%llx scale=%g offset=%g", augur_dtype_name(dt),
             (long long)count, (unsigned long long)seed, (double)scale, (double)offset);
    report_exact("fill_random", shape, differ, overrun, "guard bytes written");
    if (count > 1000) { /* a slice at an interior address, through the shifted seed */
        OK(backend_upload(gpu, d, poison, bytes + guard, &E));
        OK(backend_fill_random(gpu, d + 1000 * es, dt, count - 1000, augur_fill_seed_at(seed, 1000), scale, offset,
                               &E));
        OK(backend_download(gpu, got, d, bytes + guard, &E));
        differ = overrun = 0;
        for (int64_t i = 1000; i < count; i++)
            differ += memcmp(got + (size_t)i * es, ref + (size_t)i * es, es) != 0;
        for (size_t b = 0; b < 1000 * es; b++)
            overrun += got[b] != 0xa5;
        for (size_t b = 0; b < guard; b++)
            overrun += got[bytes + b] != 0xa5;
        strncat(shape, " from 1000", sizeof shape - strlen(shape) - 1);
        report_exact("fill_random", shape, differ, overrun, "bytes outside the slice written");
    }
    backend_free(gpu, d);
    free(ref);
    free(got);
    free(poison);
}

static void test_fill_random(void)
{
    print_exact_header("fill_random: CUDA bytes == CPU bytes");
    const augur_dtype dts[] = {AUGUR_F32, AUGUR_BF16, AUGUR_F16};
    static const struct {
        uint64_t seed;
        float scale, offset;
    } params[] = {
        {1, 1.0f, 0.0f},         {0xdeadbeefcafef00dull, 0.02f, 0.0f}, {3, 0.0f, 1.0f}, {42, 0.37f, -0.11f},
        {5, 1e-6f, 0.0f},        /* fp16 subnormals */
        {6, 70000.0f, 0.0f},     /* beyond fp16's range: infinities */
    };
    for (int d = 0; d < 3; d++) {
        fill_case(dts[d], 1, 9, 1.0f, 0.0f);
        fill_case(dts[d], 4097, 10, 0.125f, 0.5f);
        for (size_t p = 0; p < sizeof params / sizeof params[0]; p++)
            fill_case(dts[d], 3000017, params[p].seed, params[p].scale, params[p].offset);
    }
}

/* Uploads a host matrix, wipes and frees the host copy at once (the upload has read it
 * when it returns), and compares the device rows and their zero padding with a copy. */
static void upload_case(augur_dtype dt, int rows, int cols, int stride)
{
    tensor_view hw = host_matrix(dt, rows, cols, stride, 1.0f);
    const size_t es = augur_dtype_size(dt), host_bytes = (size_t)rows * (size_t)stride * es;
    unsigned char *keep = xmalloc(host_bytes);
    memcpy(keep, hw.data, host_bytes);
    tensor_view dw;
    OK(backend_weight_upload(gpu, &dw, &hw, &E));
    memset((void *)hw.data, 0x5a, host_bytes);
    free((void *)hw.data);
    const int64_t per16 = 16 / (int64_t)es, want_stride = (cols + per16 - 1) / per16 * per16;
    int64_t differ = 0, pad = 0;
    if (dw.rows != rows || dw.cols != cols || dw.dtype != dt || dw.row_stride != want_stride) {
        printf("weight_upload: device view %s %lld x %lld stride %lld, expected stride %lld\n",
               augur_dtype_name(dw.dtype), (long long)dw.rows, (long long)dw.cols, (long long)dw.row_stride,
               (long long)want_stride);
        differ = rows;
    } else {
        const size_t drow = (size_t)dw.row_stride * es, dev_bytes = (size_t)rows * drow;
        unsigned char *got = xmalloc(dev_bytes);
        OK(backend_download(gpu, got, dw.data, dev_bytes, &E));
        for (int r = 0; r < rows; r++) {
            const unsigned char *g = got + (size_t)r * drow, *h = keep + (size_t)r * (size_t)stride * es;
            differ += memcmp(g, h, (size_t)cols * es) != 0;
            for (size_t b = (size_t)cols * es; b < drow; b++)
                pad += g[b] != 0;
        }
        free(got);
    }
    char shape[128];
    snprintf(shape, sizeof shape, "%s %dx%d st%d (%.1f MiB on the device)", augur_dtype_name(dt), rows, cols, stride,
             (double)rows * (double)want_stride * (double)es / (1 << 20));
    report_exact("weight_upload", shape, differ, pad, "padding bytes not zero");
    backend_weight_free(gpu, &dw);
    free(keep);
}

static void test_weight_upload(void)
{
    print_exact_header("weight_upload through the pinned staging: rows differing from the host's");
    upload_case(AUGUR_F16, 7, 9, 9);               /* smaller than a chunk, padded */
    upload_case(AUGUR_BF16, 3001, 4099, 4107);     /* strided, two chunks, the boundary inside a row */
    upload_case(AUGUR_F32, 1500, 5001, 5003);      /* strided, padded */
    upload_case(AUGUR_BF16, 20000, 1000, 1000);    /* three chunks: the first half reused */
    upload_case(AUGUR_F32, 1, 5000000, 5000000);   /* one row longer than a chunk */
    upload_case(AUGUR_F16, 4096, 2048, 8192);      /* a TP column slice of a wider matrix */
}

/* ----- a tiny checkpoint, written here (config.json + model.safetensors) */

typedef struct {
    int dim, hidden, layers, heads, kv_heads, vocab;
    bool tie, qwen2;
} tiny_model;

/* Tensor k gets dtype k % 3, so that every element size is uploaded. */
static void add_tensor(safetensors_writer *w, const char *name, int64_t rows, int64_t cols, int k)
{
    const augur_dtype dt = (augur_dtype)(k % 3);
    const int64_t n = rows * (cols ? cols : 1);
    float *x = random_floats((size_t)n, -1.0f, 1.0f);
    uint16_t *h = xmalloc((size_t)n * sizeof *h);
    for (int64_t i = 0; i < n; i++)
        h[i] = dt == AUGUR_BF16 ? augur_f32_to_bf16(x[i]) : augur_f32_to_f16(x[i]);
    const int64_t shape[2] = {rows, cols};
    OK(safetensors_writer_add(w, name, dt, cols ? 2 : 1, shape, dt == AUGUR_F32 ? (void *)x : (void *)h, &E));
    free(x);
    free(h);
}

static void write_tiny_model(const char *dir, const tiny_model *t)
{
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "FATAL: cannot write %s\n", path);
        exit(1);
    }
    fprintf(f,
            "{\"model_type\": \"%s\", \"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, "
            "\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"vocab_size\": %d, "
            "\"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, "
            "\"tie_word_embeddings\": %s, \"bos_token_id\": 1, \"eos_token_id\": 2}\n",
            t->qwen2 ? "qwen2" : "llama", t->dim, t->hidden, t->layers, t->heads, t->kv_heads, t->vocab,
            t->tie ? "true" : "false");
    fclose(f);
    const int hd = t->dim / t->heads;
    const int64_t q = (int64_t)t->heads * hd, kv = (int64_t)t->kv_heads * hd;
    safetensors_writer *w = safetensors_writer_new();
    if (!w) {
        fprintf(stderr, "FATAL: out of memory\n");
        exit(1);
    }
    int k = 0;
    char name[128];
    add_tensor(w, "model.embed_tokens.weight", t->vocab, t->dim, k++);
    for (int l = 0; l < t->layers; l++) {
        static const char *const suffix[] = {"input_layernorm.weight", "post_attention_layernorm.weight",
                                             "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                             "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                                             "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
                                             "self_attn.q_proj.bias", "self_attn.k_proj.bias",
                                             "self_attn.v_proj.bias"};
        const int64_t rows[] = {t->dim, t->dim, q, kv, kv, t->dim, t->hidden, t->hidden, t->dim, q, kv, kv};
        const int64_t cols[] = {0, 0, t->dim, t->dim, t->dim, q, t->dim, t->dim, t->hidden, 0, 0, 0};
        for (int i = 0; i < (t->qwen2 ? 12 : 9); i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix[i]);
            add_tensor(w, name, rows[i], cols[i], k++);
        }
    }
    add_tensor(w, "model.norm.weight", t->dim, 0, k++);
    if (!t->tie)
        add_tensor(w, "lm_head.weight", t->vocab, t->dim, k++);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    OK(safetensors_writer_save(w, path, &E));
    safetensors_writer_free(w);
}

static void remove_tiny_model(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
}

/* Elements of the device view dev (downloaded whole, at its own row stride) that differ
 * bitwise from the host view host. */
static int64_t view_differs(const tensor_view *dev, const tensor_view *host)
{
    if (dev->rows != host->rows || dev->cols != host->cols || dev->dtype != host->dtype)
        return dev->rows * dev->cols + 1;
    const size_t es = augur_dtype_size(dev->dtype), drow = (size_t)dev->row_stride * es;
    const size_t bytes = (size_t)dev->rows * drow;
    unsigned char *got = xmalloc(bytes);
    OK(backend_download(gpu, got, dev->data, bytes, &E));
    const unsigned char *h = host->data;
    const size_t hrow = (size_t)host->row_stride * es;
    int64_t differ = 0;
    for (int64_t r = 0; r < dev->rows; r++)
        for (int64_t c = 0; c < dev->cols; c++)
            differ += memcmp(got + (size_t)r * drow + (size_t)c * es, h + (size_t)r * hrow + (size_t)c * es, es) != 0;
    free(got);
    return differ;
}

/* Floats of a device array that differ from the host's; both NULL is a match. */
static int64_t vec_differs(const float *dev, const float *host, int64_t n)
{
    if (!dev || !host)
        return (dev == NULL) != (host == NULL) ? n + 1 : 0;
    float *got = fetch_plain(dev, (size_t)n);
    int64_t differ = 0;
    for (int64_t i = 0; i < n; i++)
        differ += memcmp(&got[i], &host[i], sizeof(float)) != 0;
    free(got);
    return differ;
}

/* dev (in the GPU) against host, tensor by tensor: one result row per model. */
static int64_t model_differs(const model *dev, const model *host)
{
    const int64_t D = host->cfg.dim, hd = host->cfg.head_dim;
    int64_t differ = view_differs(&dev->w.tok_embedding, &host->w.tok_embedding) +
                     view_differs(&dev->w.lm_head, &host->w.lm_head) +
                     vec_differs(dev->w.final_norm, host->w.final_norm, D);
    for (int l = 0; l < host->cfg.n_layers; l++) {
        const layer_weights *a = &dev->w.layers[l], *b = &host->w.layers[l];
        differ += view_differs(&a->wq, &b->wq) + view_differs(&a->wk, &b->wk) + view_differs(&a->wv, &b->wv) +
                  view_differs(&a->wo, &b->wo) + view_differs(&a->w_gate, &b->w_gate) +
                  view_differs(&a->w_up, &b->w_up) + view_differs(&a->w_down, &b->w_down) +
                  vec_differs(a->attn_norm, b->attn_norm, D) + vec_differs(a->ffn_norm, b->ffn_norm, D) +
                  vec_differs(a->bq, b->bq, host->n_heads_local * hd) +
                  vec_differs(a->bk, b->bk, host->n_kv_heads_local * hd) +
                  vec_differs(a->bv, b->bv, host->n_kv_heads_local * hd);
    }
    return differ;
}

/* Whether a tied model's lm_head is the embedding's rows from vocab_start on, at the
 * embedding's row stride (an alias, not a copy). */
static bool lm_head_aliased(const model *m)
{
    const tensor_view *e = &m->w.tok_embedding, *h = &m->w.lm_head;
    const size_t row_bytes = (size_t)e->row_stride * augur_dtype_size(e->dtype);
    return h->row_stride == e->row_stride && h->data == (const char *)e->data + (size_t)m->vocab_start * row_bytes;
}

static void to_backend_case(const char *dir, const tiny_model *t, int T, int r)
{
    model m, ref;
    const model_load_opts o = {.tp_rank = r, .tp_size = T};
    OK(model_load(&m, dir, &o, &E));
    OK(model_load(&ref, dir, &o, &E));
    OK(model_to_backend(&m, gpu, &E));
    int64_t wrong = (m.backend != gpu) + (m.n_shards != 0) + (m.memory != MODEL_WEIGHTS_UPLOADED);
    if (t->tie)
        wrong += !lm_head_aliased(&m);
    char shape[128];
    snprintf(shape, sizeof shape, "%s%s dim %d hidden %d, rank %d of %d%s", t->qwen2 ? "qwen2" : "llama",
             t->tie ? " tied" : "", t->dim, t->hidden, r, T, T > 1 ? " (strided o/down)" : "");
    report_exact("to_backend", shape, model_differs(&m, &ref), wrong, "bookkeeping checks failed");
    /* the device model computes what the host one does */
    const int n = 3;
    float *x = random_floats((size_t)n * t->dim, -1.0f, 1.0f);
    float *want = xmalloc((size_t)n * m.vocab_local * sizeof(float));
    OK(backend_matmul(cpu, want, x, n, &ref.w.lm_head, NULL, &E));
    float *dx = dev_from(x, (size_t)n * t->dim * sizeof(float));
    float *dout = dev_output((size_t)n * m.vocab_local);
    OK(backend_matmul(gpu, dout, dx, n, &m.w.lm_head, NULL, &E));
    int unwritten, overrun;
    float *got = fetch(dout, (size_t)n * m.vocab_local, &unwritten, &overrun);
    strncat(shape, " lm_head matmul", sizeof shape - strlen(shape) - 1);
    report("to_backend", shape, got, want, (size_t)n * m.vocab_local, 1e-5, unwritten, overrun);
    backend_free(gpu, dx);
    backend_free(gpu, dout);
    free(got);
    free(want);
    free(x);
    model_free(&m);
    model_free(&ref);
}

static void dummy_case(const char *dir, const tiny_model *t, int T, int r)
{
    model mc, mg;
    const model_load_opts o = {.tp_rank = r, .tp_size = T};
    OK(model_load_dummy(&mc, dir, &o, cpu, 77, &E));
    OK(model_load_dummy(&mg, dir, &o, gpu, 77, &E));
    int64_t wrong = (mg.backend != gpu) + (mg.memory != MODEL_WEIGHTS_ALLOCATED);
    if (t->tie)
        wrong += !lm_head_aliased(&mg);
    char shape[128];
    snprintf(shape, sizeof shape, "%s%s dim %d hidden %d, rank %d of %d", t->qwen2 ? "qwen2" : "llama",
             t->tie ? " tied" : "", t->dim, t->hidden, r, T);
    report_exact("load_dummy", shape, model_differs(&mg, &mc), wrong, "bookkeeping checks failed");
    model_free(&mg);
    model_free(&mc);
}

/* forward_prefill_argmax on the device (the argmax taken where the logits are, chunked
 * prefills and single steps) names the token argmax_f32 picks from forward_prefill's
 * logits on a twin cache. */
static void argmax_case(const char *dir, const tiny_model *t)
{
    model m;
    OK(model_load_dummy(&m, dir, NULL, gpu, 78, &E));
    forward_ctx f;
    OK(forward_init(&f, &m, gpu, NULL, 0, 8, 64, &E));
    kv_cache a, b;
    OK(kv_cache_init(&a, gpu, m.cfg.n_layers, 64, m.n_kv_heads_local, m.cfg.head_dim, &E));
    OK(kv_cache_init(&b, gpu, m.cfg.n_layers, 64, m.n_kv_heads_local, m.cfg.head_dim, &E));
    float *logits = xmalloc((size_t)m.vocab_local * sizeof(float));
    int32_t tokens[11];
    for (int i = 0; i < 11; i++)
        tokens[i] = (int32_t)(uniform01() * t->vocab) % t->vocab;
    int64_t differ = 0, steps = 0;
    /* 11 prompt tokens (chunks of 8 and 3), then steps of 1, 3 and 4 tokens */
    const int feeds[] = {11, 1, 3, 1, 4, 1};
    int32_t next = 0;
    for (size_t k = 0; k < sizeof feeds / sizeof *feeds; k++) {
        int32_t *in = k == 0 ? tokens : tokens + 11 - feeds[k];
        if (k > 0)
            in[feeds[k] - 1] = next;
        int32_t got = -1;
        OK(forward_prefill_argmax(&f, &a, in, feeds[k], logits, &got, &E));
        OK(forward_prefill(&f, &b, in, feeds[k], logits, &E));
        next = (int32_t)argmax_f32(logits, m.vocab_local);
        differ += got != next;
        steps++;
    }
    char shape[128];
    snprintf(shape, sizeof shape, "%s dim %d vocab %d, %lld steps, len %d", t->qwen2 ? "qwen2" : "llama", t->dim,
             t->vocab, (long long)steps, a.len);
    report_exact("prefill_argmax", shape, differ, (a.len != b.len) + (a.len != 21), "cache length wrong");

    /* forward_run_batch_reduced: two sequences (5 rows from 0, 3 rows from 1) after their
     * prefixes, reduced on the device, against forward_run_batch's logits on twin caches;
     * only the rows asked for come back as logits, the others stay as they were. */
    const int V = m.vocab_local;
    float *full = xmalloc((size_t)7 * V * sizeof(float)), *part = xmalloc((size_t)7 * V * sizeof(float));
    for (size_t i = 0; i < (size_t)7 * V; i++)
        part[i] = -7.0f;
    kv_cache_trim(&a, 6, &E);
    kv_cache_trim(&b, 6, &E);
    kv_cache c, d;
    OK(kv_cache_init(&c, gpu, m.cfg.n_layers, 64, m.n_kv_heads_local, m.cfg.head_dim, &E));
    OK(kv_cache_init(&d, gpu, m.cfg.n_layers, 64, m.n_kv_heads_local, m.cfg.head_dim, &E));
    const forward_seq red[2] = {{.kv = &a, .tokens = tokens, .n = 4, .logits_from = 0},
                                {.kv = &c, .tokens = tokens + 4, .n = 4, .logits_from = 1}};
    const forward_seq ref[2] = {{.kv = &b, .tokens = tokens, .n = 4, .logits_from = 0},
                                {.kv = &d, .tokens = tokens + 4, .n = 4, .logits_from = 1}};
    const bool want[7] = {false, true, true, false, false, true, false};
    int32_t amax[7];
    float mx[7];
    OK(forward_run_batch_reduced(&f, red, 2, want, part, amax, mx, &E));
    OK(forward_run_batch(&f, ref, 2, full, &E));
    int64_t bad = 0, untouched = 0;
    for (int r = 0; r < 7; r++) {
        const float *row = full + (size_t)r * V;
        const int best = argmax_f32(row, V);
        bad += amax[r] != best || memcmp(&mx[r], &row[best], sizeof(float)) != 0;
        if (want[r])
            bad += count_differ(part + (size_t)r * V, row, (size_t)V);
        else
            for (int k = 0; k < V; k++)
                untouched += part[(size_t)r * V + k] != -7.0f;
    }
    snprintf(shape, sizeof shape, "%s dim %d vocab %d, 2 sequences, 7 rows", t->qwen2 ? "qwen2" : "llama", t->dim,
             t->vocab);
    report_exact("batch_reduced", shape, bad, untouched, "floats written to rows not asked for");
    free(full);
    free(part);
    kv_cache_free(&c);
    kv_cache_free(&d);
    free(logits);
    kv_cache_free(&a);
    kv_cache_free(&b);
    forward_free(&f);
    model_free(&m);
}

static void test_model_weights(void)
{
    print_exact_header("model_to_backend (vs the host model), model_load_dummy (vs the CPU's), forward_prefill_argmax");
    char dir[] = "/tmp/augur-cuda-test-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "FATAL: mkdtemp failed\n");
        exit(1);
    }
    /* head_dim 6 and odd slices: most rows need padding to 16 bytes on the device */
    const tiny_model models[] = {
        {.dim = 24, .hidden = 22, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 30, .tie = true},
        {.dim = 24, .hidden = 38, .layers = 2, .heads = 4, .kv_heads = 1, .vocab = 37, .qwen2 = true},
        {.dim = 256, .hidden = 688, .layers = 2, .heads = 8, .kv_heads = 4, .vocab = 1000, .tie = false},
    };
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        write_tiny_model(dir, &models[i]);
        for (int T = 1; T <= 2; T++)
            for (int r = 0; r < T; r++) {
                to_backend_case(dir, &models[i], T, r);
                dummy_case(dir, &models[i], T, r);
            }
        argmax_case(dir, &models[i]);
        remove_tiny_model(dir);
    }
    rmdir(dir);
}

/* What the interface says of a CUDA backend (kernels/backend.h: capabilities and queries). */
static void test_caps(void)
{
    size_t free_b = 0, total_b = 0;
    OK(backend_memory_info(gpu, &free_b, &total_b, &E));
    char name[256];
    backend_device_name(gpu, name, sizeof name);
    const augur_backend_caps *c = &gpu->caps;
    const bool ok = c->stream && c->memory_info && !c->host_memory && !c->weights_alias_host && gpu->device == 0 &&
                    backend_stream(gpu) != NULL && backend_stream(gpu) == backend_cuda_stream(gpu) &&
                    free_b > 0 && free_b <= total_b && strcmp(name, "?") != 0;
    printf("\n== capabilities\nstream, memory info (%.1f of %.1f GiB free), device %d (%s): %s\n",
           (double)free_b / (1 << 30), (double)total_b / (1 << 30), gpu->device, name, ok ? "ok" : "FAIL");
    n_cases++;
    n_failed += !ok;
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

    test_caps();
    test_matmul();
    test_rmsnorm();
    test_rope();
    test_attention();
    test_batch_invariance();
    test_matmul_parts();
    test_fused_norm();
    test_swiglu_split();
    test_attention_split();
    test_paged();
    test_rope_store();
    test_elementwise();
    test_softmax();
    test_argmax();
    test_sampling();
    test_fill_random();
    test_weight_upload();
    test_model_weights();

    OK(backend_synchronize(gpu, &E));
    backend_destroy(gpu);
    backend_destroy(cpu);
    printf("\n%d cases, %d failed\n", n_cases, n_failed);
    return n_failed ? 1 : 0;
}
