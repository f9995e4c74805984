/* CPU kernels against plain double-precision references, plus the batch-invariance
 * property the speculative verifier depends on (DESIGN §8), and what the backend
 * interface (kernels/backend.h) says of the CPU backend and of absent devices. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu_kernels.h"
#include "test_util.h"

/* ---------------------------------------------------------------- helpers */

/* A weight matrix in a given dtype, with padding columns so row_stride > cols is exercised. */
typedef struct {
    tensor_view view;
    void *data;
} test_matrix;

static test_matrix make_matrix(augur_dtype dt, int64_t rows, int64_t cols, int64_t stride, uint64_t seed)
{
    test_matrix m;
    float *src = malloc((size_t)(rows * stride) * sizeof(float));
    assert_non_null(src);
    test_fill_random(src, (size_t)(rows * stride), seed, 1.0f);
    size_t es = augur_dtype_size(dt);
    m.data = malloc((size_t)(rows * stride) * es);
    assert_non_null(m.data);
    for (int64_t i = 0; i < rows * stride; i++) {
        if (dt == AUGUR_F32)
            ((float *)m.data)[i] = src[i];
        else if (dt == AUGUR_BF16)
            ((uint16_t *)m.data)[i] = augur_f32_to_bf16(src[i]);
        else
            ((uint16_t *)m.data)[i] = augur_f32_to_f16(src[i]);
    }
    free(src);
    m.view = (tensor_view){.data = m.data, .dtype = dt, .rows = rows, .cols = cols, .row_stride = stride};
    return m;
}

static float *random_floats(size_t n, uint64_t seed, float scale)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    test_fill_random(p, n, seed, scale);
    return p;
}

/* ---------------------------------------------------------------- matmul */

static void check_matmul_case(augur_dtype dt, int rows, int cols, int stride, int n, bool with_bias, int threads,
                              uint64_t seed)
{
    test_matrix m = make_matrix(dt, rows, cols, stride, seed);
    float *x = random_floats((size_t)n * cols, seed + 1, 2.0f);
    float *bias = with_bias ? random_floats((size_t)rows, seed + 2, 1.0f) : NULL;
    float *out = malloc((size_t)n * rows * sizeof(float));
    assert_non_null(out);
    /* Poison: a padding column leaking into the sum would show up as a huge error. */
    for (int r = 0; r < rows; r++)
        for (int c = cols; c < stride; c++) {
            int64_t idx = (int64_t)r * stride + c;
            if (dt == AUGUR_F32)
                ((float *)m.data)[idx] = 1e30f;
            else
                ((uint16_t *)m.data)[idx] = dt == AUGUR_BF16 ? augur_f32_to_bf16(1e30f) : 0x7bff; /* f16 max */
        }

    cpu_matmul(out, x, n, &m.view, bias, threads);
    /* Every code path this CPU has must give exactly cpu_matmul's bits. */
    float *alt = malloc((size_t)n * rows * sizeof(float));
    assert_non_null(alt);
    for (int isa = CPU_ISA_BASELINE; isa <= (int)cpu_best_isa(); isa++) {
        cpu_matmul_isa((cpu_isa)isa, alt, x, n, &m.view, bias, threads);
        if (memcmp(alt, out, (size_t)n * rows * sizeof(float)))
            fail_msg("matmul %s cols=%d: path %d differs from cpu_matmul", augur_dtype_name(dt), cols, isa);
    }
    free(alt);

    for (int i = 0; i < n; i++)
        for (int o = 0; o < rows; o++) {
            double ref = bias ? bias[o] : 0.0, mag = bias ? fabs(bias[o]) : 0.0;
            for (int c = 0; c < cols; c++) {
                double p = (double)x[(int64_t)i * cols + c] * tensor_get_f32(&m.view, o, c);
                ref += p;
                mag += fabs(p);
            }
            double got = out[(int64_t)i * rows + o];
            if (fabs(got - ref) > 1e-5 * mag + 1e-30)
                fail_msg("matmul %s rows=%d cols=%d stride=%d n=%d bias=%d threads=%d: out[%d][%d]=%.9g ref=%.9g",
                         augur_dtype_name(dt), rows, cols, stride, n, with_bias, threads, i, o, got, ref);
        }
    free(out);
    free(bias);
    free(x);
    free(m.data);
}

static void test_matmul_reference(void **state)
{
    (void)state;
    const augur_dtype dts[] = {AUGUR_F32, AUGUR_F16, AUGUR_BF16};
    const int col_sizes[] = {1, 7, 16, 33, 100, 1100};
    uint64_t seed = 100;
    for (int d = 0; d < 3; d++)
        for (size_t ci = 0; ci < sizeof col_sizes / sizeof *col_sizes; ci++)
            for (int pad = 0; pad <= 5; pad += 5)
                for (int bias = 0; bias <= 1; bias++)
                    for (int threads = 1; threads <= 3; threads += 2) {
                        int cols = col_sizes[ci];
                        check_matmul_case(dts[d], 13, cols, cols + pad, 3, bias, threads, seed++);
                        check_matmul_case(dts[d], 5, cols, cols + pad, 1, bias, threads, seed++);
                    }
}

/* Row i of an n-row call must be bit-identical to row i computed alone, for every n and
 * thread count: the property that makes speculative greedy output equal target greedy. */
static void test_matmul_batch_invariance(void **state)
{
    (void)state;
    const augur_dtype dts[] = {AUGUR_F32, AUGUR_F16, AUGUR_BF16};
    const int rows = 37, cols = 1100, stride = 1103, max_n = 40;
    for (int d = 0; d < 3; d++) {
        test_matrix m = make_matrix(dts[d], rows, cols, stride, 7 + d);
        float *x = random_floats((size_t)max_n * cols, 11 + d, 1.0f);
        float *bias = random_floats(rows, 13 + d, 1.0f);
        float *alone = malloc((size_t)max_n * rows * sizeof(float));
        float *out = malloc((size_t)max_n * rows * sizeof(float));
        assert_non_null(alone);
        assert_non_null(out);
        for (int i = 0; i < max_n; i++)
            cpu_matmul_isa(CPU_ISA_BASELINE, alone + (size_t)i * rows, x + (size_t)i * cols, 1, &m.view, bias, 1);
        const int threads_list[] = {1, 4};
        for (int isa = CPU_ISA_BASELINE; isa <= (int)cpu_best_isa(); isa++) {
            for (int t = 0; t < 2; t++) {
                /* 1..9 is the verification shape; 40 crosses the kernel's internal row block. */
                const int ns[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 40};
                for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
                    int n = ns[k];
                    memset(out, 0xff, (size_t)max_n * rows * sizeof(float));
                    cpu_matmul_isa((cpu_isa)isa, out, x, n, &m.view, bias, threads_list[t]);
                    for (int i = 0; i < n; i++)
                        if (memcmp(out + (size_t)i * rows, alone + (size_t)i * rows, (size_t)rows * sizeof(float)))
                            fail_msg("%s: row %d of an n=%d call (path %d, threads %d) differs from the row alone",
                                     augur_dtype_name(dts[d]), i, n, isa, threads_list[t]);
                }
            }
        }
        free(out);
        free(alone);
        free(bias);
        free(x);
        free(m.data);
    }
}

/* A NaN with its quiet bit set, as F16C returns a converted signalling NaN. */
static float quiet(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        u |= 0x400000u;
    memcpy(&f, &u, sizeof u);
    return f;
}

/* The fast converters must agree with the reference scalar ones on every bit pattern
 * (subnormals, infinities and NaNs included). */
static void test_convert_exhaustive(void **state)
{
    (void)state;
    uint16_t *h = malloc(65536 * sizeof(uint16_t));
    float *f = malloc(65536 * sizeof(float));
    assert_non_null(h);
    assert_non_null(f);
    for (int i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    cpu_convert_f32(f, h, AUGUR_F16, 65536);
    for (int i = 0; i < 65536; i++) {
        float ref = quiet(augur_f16_to_f32(h[i]));
        if (memcmp(&f[i], &ref, sizeof ref))
            fail_msg("f16 0x%04x -> %a, expected %a", i, f[i], ref);
    }
    cpu_convert_f32(f, h, AUGUR_BF16, 65536);
    for (int i = 0; i < 65536; i++) {
        float ref = augur_bf16_to_f32(h[i]);
        if (memcmp(&f[i], &ref, sizeof ref))
            fail_msg("bf16 0x%04x -> %a, expected %a", i, f[i], ref);
    }
    free(f);
    free(h);
}

/* Every fp16 / bf16 bit pattern through every matmul path (F16C, shifts, the portable
 * converter): row p holds pattern p in all 16 columns and x = e_0, so out[p] is the
 * converted value itself (the other lanes add zeros), and NaN for inf/NaN (0 * inf). */
static void test_matmul_all_patterns(void **state)
{
    (void)state;
    enum { ROWS = 65536, COLS = 16 };
    uint16_t *w = malloc((size_t)ROWS * COLS * sizeof(uint16_t));
    float *out = malloc(ROWS * sizeof(float));
    assert_non_null(w);
    assert_non_null(out);
    for (int p = 0; p < ROWS; p++)
        for (int c = 0; c < COLS; c++)
            w[p * COLS + c] = (uint16_t)p;
    float x[COLS] = {1.0f};
    for (int bf = 0; bf <= 1; bf++) {
        tensor_view v = {.data = w, .dtype = bf ? AUGUR_BF16 : AUGUR_F16, .rows = ROWS, .cols = COLS,
                         .row_stride = COLS};
        for (int isa = CPU_ISA_BASELINE; isa <= (int)cpu_best_isa(); isa++) {
            cpu_matmul_isa((cpu_isa)isa, out, x, 1, &v, NULL, 2);
            for (int p = 0; p < ROWS; p++) {
                /* + 0: accumulators start at +0, so a -0 weight sums to +0. */
                float ref = (bf ? augur_bf16_to_f32((uint16_t)p) : augur_f16_to_f32((uint16_t)p)) + 0.0f;
                if (isfinite(ref) ? memcmp(&out[p], &ref, sizeof ref) != 0 : !isnan(out[p]))
                    fail_msg("%s pattern 0x%04x on path %d: %a, expected %a", bf ? "bf16" : "f16", p, isa,
                             out[p], ref);
            }
        }
    }
    free(out);
    free(w);
}

/* ---------------------------------------------------------------- rmsnorm */

static void test_rmsnorm(void **state)
{
    (void)state;
    const int n = 3, dim = 37;
    const float eps = 1e-5f;
    float *x = random_floats((size_t)n * dim, 21, 3.0f);
    float *w = random_floats(dim, 22, 1.0f);
    float *out = malloc((size_t)n * dim * sizeof(float));
    assert_non_null(out);
    cpu_rmsnorm(out, x, w, n, dim, eps);
    for (int i = 0; i < n; i++) {
        double ss = 0;
        for (int c = 0; c < dim; c++)
            ss += (double)x[i * dim + c] * x[i * dim + c];
        double r = 1.0 / sqrt(ss / dim + eps);
        for (int c = 0; c < dim; c++) {
            double ref = x[i * dim + c] * r * w[c];
            assert_true(fabs(out[i * dim + c] - ref) <= 1e-5 * fabs(ref) + 1e-6);
        }
    }
    /* In place gives the same bits as out of place. */
    cpu_rmsnorm(x, x, w, n, dim, eps);
    assert_memory_equal(x, out, (size_t)n * dim * sizeof(float));
    free(out);
    free(w);
    free(x);
}

/* ---------------------------------------------------------------- rope */

static void test_rope_inv_freq_default(void **state)
{
    (void)state;
    const int hd = 64;
    float inv[32];
    rope_llama3_scaling off = {.enabled = false};
    rope_inv_freq(inv, hd, 10000.0f, &off);
    for (int i = 0; i < hd / 2; i++) {
        double ref = pow(10000.0, -2.0 * i / hd);
        assert_true(fabs(inv[i] - ref) <= 2e-6 * ref);
    }
    float inv_null[32];
    rope_inv_freq(inv_null, hd, 10000.0f, NULL);
    assert_memory_equal(inv, inv_null, sizeof inv);
}

static void test_rope_inv_freq_llama3(void **state)
{
    (void)state;
    const int hd = 128;
    const double theta = 500000.0, factor = 8.0, lo = 1.0, hi = 4.0, orig = 8192.0;
    rope_llama3_scaling sc = {.enabled = true, .factor = 8.0f, .low_freq_factor = 1.0f, .high_freq_factor = 4.0f,
                              .original_max_position = 8192};
    float inv[64];
    rope_inv_freq(inv, hd, (float)theta, &sc);
    int regions[3] = {0, 0, 0};
    for (int i = 0; i < hd / 2; i++) {
        double base = pow(theta, -2.0 * i / hd);
        double wavelen = 2.0 * M_PI / base;
        double ref;
        if (wavelen > orig / lo) {
            ref = base / factor;
            regions[0]++;
        } else if (wavelen < orig / hi) {
            ref = base;
            regions[1]++;
        } else {
            double smooth = (orig / wavelen - lo) / (hi - lo);
            ref = (1 - smooth) * base / factor + smooth * base;
            regions[2]++;
        }
        if (fabs(inv[i] - ref) > 1e-5 * ref)
            fail_msg("inv_freq[%d] = %.9g, expected %.9g", i, inv[i], ref);
    }
    /* The test only means something if all three branches were taken. */
    assert_true(regions[0] > 0 && regions[1] > 0 && regions[2] > 0);
}

static void rope_reference(double *out, const float *x, int n, int nh, int hd, const int *pos, const float *inv,
                           rope_pairing pairs)
{
    for (int r = 0; r < n; r++)
        for (int h = 0; h < nh; h++) {
            const float *v = x + ((size_t)r * nh + h) * hd;
            double *o = out + ((size_t)r * nh + h) * hd;
            for (int i = 0; i < hd / 2; i++) {
                int a = pairs == ROPE_PAIRS_HALF ? i : 2 * i;
                int b = pairs == ROPE_PAIRS_HALF ? i + hd / 2 : 2 * i + 1;
                double ang = (double)pos[r] * inv[i];
                o[a] = v[a] * cos(ang) - v[b] * sin(ang);
                o[b] = v[b] * cos(ang) + v[a] * sin(ang);
            }
        }
}

static void test_rope_reference(void **state)
{
    (void)state;
    const int n = 3, nh = 4, hd = 32;
    const int pos[3] = {0, 17, 1000};
    float inv[16];
    rope_inv_freq(inv, hd, 10000.0f, NULL);
    for (int p = 0; p < 2; p++) {
        rope_pairing pairs = p ? ROPE_PAIRS_ADJACENT : ROPE_PAIRS_HALF;
        float *x = random_floats((size_t)n * nh * hd, 31 + p, 1.0f);
        double ref[3 * 4 * 32];
        rope_reference(ref, x, n, nh, hd, pos, inv, pairs);
        cpu_rope(x, n, nh, hd, pos, inv, pairs);
        for (int i = 0; i < n * nh * hd; i++)
            if (fabs(x[i] - ref[i]) > 1e-4)
                fail_msg("pairing %d element %d: %.9g vs %.9g", p, i, x[i], ref[i]);
        free(x);
    }
}

/* Rotating a unit vector shows which element each one is paired with. */
static void test_rope_pairing(void **state)
{
    (void)state;
    const int hd = 8, nh = 2, pos = 3;
    float inv[4];
    rope_inv_freq(inv, hd, 10000.0f, NULL);
    for (int p = 0; p < 2; p++) {
        rope_pairing pairs = p ? ROPE_PAIRS_ADJACENT : ROPE_PAIRS_HALF;
        for (int i = 0; i < hd / 2; i++) {
            float x[16] = {0};
            int a = p ? 2 * i : i, b = p ? 2 * i + 1 : i + hd / 2;
            x[hd + a] = 1.0f; /* second head */
            cpu_rope(x, 1, nh, hd, &pos, inv, pairs);
            double ang = pos * (double)inv[i];
            for (int e = 0; e < 2 * hd; e++) {
                double want = e == hd + a ? cos(ang) : e == hd + b ? sin(ang) : 0.0;
                if (fabs(x[e] - want) > 1e-6)
                    fail_msg("pairing %d, unit %d: element %d = %g, want %g", p, a, e, x[e], want);
            }
        }
    }
}

/* ---------------------------------------------------------------- attention */

static void attention_reference(double *out, const float *q, int n, int start, int nh, int nkv, int hd,
                                const float *k, const float *v)
{
    for (int i = 0; i < n; i++)
        for (int h = 0; h < nh; h++) {
            int kvh = h / (nh / nkv), len = start + i + 1;
            const float *qi = q + ((size_t)i * nh + h) * hd;
            double *s = malloc((size_t)len * sizeof(double));
            assert_non_null(s);
            double mx = -INFINITY, sum = 0;
            for (int t = 0; t < len; t++) {
                double d = 0;
                for (int c = 0; c < hd; c++)
                    d += (double)qi[c] * k[((size_t)t * nkv + kvh) * hd + c];
                s[t] = d / sqrt((double)hd);
                mx = fmax(mx, s[t]);
            }
            for (int t = 0; t < len; t++)
                sum += (s[t] = exp(s[t] - mx));
            double *o = out + ((size_t)i * nh + h) * hd;
            for (int c = 0; c < hd; c++) {
                o[c] = 0;
                for (int t = 0; t < len; t++)
                    o[c] += s[t] / sum * v[((size_t)t * nkv + kvh) * hd + c];
            }
            free(s);
        }
}

enum { AT_NH = 8, AT_NKV = 2, AT_HD = 16, AT_START = 5, AT_N = 4, AT_POS = AT_START + AT_N };

static void test_attention_reference(void **state)
{
    (void)state;
    float *q = random_floats(AT_N * AT_NH * AT_HD, 41, 2.0f);
    float *k = random_floats(AT_POS * AT_NKV * AT_HD, 42, 2.0f);
    float *v = random_floats(AT_POS * AT_NKV * AT_HD, 43, 1.0f);
    double ref[AT_N * AT_NH * AT_HD];
    attention_reference(ref, q, AT_N, AT_START, AT_NH, AT_NKV, AT_HD, k, v);
    for (int threads = 1; threads <= 3; threads += 2) {
        float out[AT_N * AT_NH * AT_HD];
        float *scratch = malloc((size_t)threads * AT_POS * sizeof(float));
        assert_non_null(scratch);
        cpu_attention(out, q, AT_N, AT_START, AT_NH, AT_NKV, AT_HD, k, v, NULL, 0, scratch, threads);
        for (int i = 0; i < AT_N * AT_NH * AT_HD; i++)
            if (fabs(out[i] - ref[i]) > 1e-5)
                fail_msg("threads %d element %d: %.9g vs %.9g", threads, i, out[i], ref[i]);
        free(scratch);
    }
    free(v);
    free(k);
    free(q);
}

/* n rows in one call equal the rows decoded one at a time with a growing start_pos. */
static void test_attention_batch_invariance(void **state)
{
    (void)state;
    const int row = AT_NH * AT_HD;
    float *q = random_floats(AT_N * row, 51, 2.0f);
    float *k = random_floats(AT_POS * AT_NKV * AT_HD, 52, 2.0f);
    float *v = random_floats(AT_POS * AT_NKV * AT_HD, 53, 1.0f);
    float *scratch = malloc(4 * AT_POS * sizeof(float));
    assert_non_null(scratch);
    const int threads_list[] = {1, 4};
    for (int t = 0; t < 2; t++) {
        float batch[AT_N * AT_NH * AT_HD], single[AT_NH * AT_HD];
        cpu_attention(batch, q, AT_N, AT_START, AT_NH, AT_NKV, AT_HD, k, v, NULL, 0, scratch, threads_list[t]);
        for (int i = 0; i < AT_N; i++) {
            cpu_attention(single, q + i * row, 1, AT_START + i, AT_NH, AT_NKV, AT_HD, k, v, NULL, 0, scratch, 1);
            assert_memory_equal(single, batch + i * row, sizeof single);
        }
    }
    free(scratch);
    free(v);
    free(k);
    free(q);
}

/* Through a block table (a paged cache: positions in shuffled blocks of 4 rows, spare
 * blocks full of other values) attention gives exactly the contiguous cache's result,
 * and backend_store_rows writes each new row where the table puts it and nothing else. */
static void test_attention_paged(void **state)
{
    (void)state;
    enum { BS = 4, BLOCKS = 5 }; /* AT_POS = 9 positions use 3 blocks */
    const int32_t table[BLOCKS] = {3, 0, 4, 1, 2};
    const int row = AT_NKV * AT_HD, qrow = AT_NH * AT_HD;
    float *q = random_floats(AT_N * qrow, 71, 2.0f);
    float *k = random_floats(AT_POS * row, 72, 2.0f);
    float *v = random_floats(AT_POS * row, 73, 1.0f);
    float *kp = random_floats(BLOCKS * BS * row, 74, 5.0f);
    float *vp = random_floats(BLOCKS * BS * row, 75, 5.0f);
    /* the first AT_START positions are already in the pool; the AT_N new ones arrive by store_rows */
    for (int t = 0; t < AT_START; t++) {
        memcpy(kp + ((size_t)table[t / BS] * BS + t % BS) * row, k + (size_t)t * row, row * sizeof(float));
        memcpy(vp + ((size_t)table[t / BS] * BS + t % BS) * row, v + (size_t)t * row, row * sizeof(float));
    }
    float *want_k = malloc(BLOCKS * BS * row * sizeof(float));
    assert_non_null(want_k);
    memcpy(want_k, kp, BLOCKS * BS * row * sizeof(float));
    for (int t = AT_START; t < AT_POS; t++)
        memcpy(want_k + ((size_t)table[t / BS] * BS + t % BS) * row, k + (size_t)t * row, row * sizeof(float));
    augur_backend *be = NULL;
    augur_error err = {0};
    assert_int_equal(backend_cpu_create(&be, 2, &err), AUGUR_OK);
    assert_int_equal(backend_store_rows(be, kp, k + AT_START * row, row, AT_N, AT_START, table, BS, &err), AUGUR_OK);
    assert_int_equal(backend_store_rows(be, vp, v + AT_START * row, row, AT_N, AT_START, table, BS, &err), AUGUR_OK);
    if (memcmp(kp, want_k, BLOCKS * BS * row * sizeof(float)))
        fail_msg("store_rows through the block table wrote the wrong rows of the pool");
    assert_int_equal(backend_store_rows(be, kp, k, row, 1, 0, table, 0, &err), AUGUR_E_INTERNAL);
    float *scratch = malloc(4 * AT_POS * sizeof(float));
    assert_non_null(scratch);
    for (int threads = 1; threads <= 4; threads += 3) {
        float contiguous[AT_N * AT_NH * AT_HD], paged[AT_N * AT_NH * AT_HD];
        cpu_attention(contiguous, q, AT_N, AT_START, AT_NH, AT_NKV, AT_HD, k, v, NULL, 0, scratch, threads);
        cpu_attention(paged, q, AT_N, AT_START, AT_NH, AT_NKV, AT_HD, kp, vp, table, BS, scratch, threads);
        if (memcmp(paged, contiguous, sizeof paged))
            fail_msg("threads %d: attention through the block table differs from the contiguous cache", threads);
        /* and through the backend, row by row as decoding would */
        for (int i = 0; i < AT_N; i++) {
            float one[AT_NH * AT_HD];
            assert_int_equal(backend_attention(be, one, q + i * qrow, 1, AT_START + i, AT_NH, AT_NKV, AT_HD, kp, vp,
                                               table, BS, &err),
                             AUGUR_OK);
            if (memcmp(one, contiguous + i * qrow, sizeof one))
                fail_msg("row %d alone through the block table differs from the contiguous batch", i);
        }
    }
    backend_destroy(be);
    free(scratch);
    free(want_k);
    free(vp);
    free(kp);
    free(v);
    free(k);
    free(q);
}

/* ---------------------------------------------------------------- element-wise */

static void test_swiglu(void **state)
{
    (void)state;
    enum { N = 67 };
    float *g = random_floats(N, 61, 8.0f);
    float *u = random_floats(N, 62, 2.0f);
    g[0] = -200.0f; /* exp overflow must give 0, not NaN */
    g[1] = 200.0f;
    float out[N];
    cpu_swiglu(out, g, u, N);
    for (int i = 0; i < N; i++) {
        double ref = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        assert_false(isnan(out[i]));
        assert_true(fabs(out[i] - ref) <= 1e-5 * fabs(ref) + 1e-7);
    }
    cpu_swiglu(g, g, u, N); /* aliasing out with gate */
    assert_memory_equal(g, out, sizeof out);
    free(u);
    free(g);
}

static void test_embedding(void **state)
{
    (void)state;
    const int vocab = 11, cols = 19, stride = 23;
    const augur_dtype dts[] = {AUGUR_BF16, AUGUR_F16, AUGUR_F32};
    const int32_t ids[4] = {3, 0, 10, 3};
    for (int d = 0; d < 3; d++) {
        test_matrix m = make_matrix(dts[d], vocab, cols, stride, 71 + d);
        float out[4 * 19];
        cpu_embedding(out, &m.view, ids, 4);
        for (int i = 0; i < 4; i++)
            for (int c = 0; c < cols; c++) {
                float ref = tensor_get_f32(&m.view, ids[i], c);
                assert_memory_equal(&out[i * cols + c], &ref, sizeof ref);
            }
        free(m.data);
    }
}

static void test_softmax(void **state)
{
    (void)state;
    float x[5] = {1000.0f, 999.0f, -1000.0f, 998.5f, 1000.0f};
    double ref[5], mx = 1000.0, sum = 0;
    for (int i = 0; i < 5; i++)
        sum += (ref[i] = exp(x[i] - mx));
    cpu_softmax(x, 5);
    double total = 0;
    for (int i = 0; i < 5; i++) {
        assert_true(isfinite(x[i]));
        assert_true(fabs(x[i] - ref[i] / sum) <= 1e-6);
        total += x[i];
    }
    assert_true(fabs(total - 1.0) < 1e-6);
    assert_true(x[0] == x[4] && x[0] > x[1] && x[2] >= 0.0f && x[2] < 1e-30f);

    float *y = random_floats(1000, 81, 30.0f);
    double r2[1000], s2 = 0, m2 = -INFINITY;
    for (int i = 0; i < 1000; i++)
        m2 = fmax(m2, y[i]);
    for (int i = 0; i < 1000; i++)
        s2 += (r2[i] = exp(y[i] - m2));
    cpu_softmax(y, 1000);
    for (int i = 0; i < 1000; i++)
        assert_true(fabs(y[i] - r2[i] / s2) <= 1e-5 * (r2[i] / s2) + 1e-9);
    free(y);
}

static void test_add(void **state)
{
    (void)state;
    float *a = random_floats(33, 91, 5.0f), *b = random_floats(33, 92, 5.0f);
    float out[33];
    cpu_add(out, a, b, 33);
    for (int i = 0; i < 33; i++)
        assert_true(out[i] == a[i] + b[i]);
    cpu_add(a, a, b, 33);
    assert_memory_equal(a, out, sizeof out);
    free(b);
    free(a);
}

/* ---------------------------------------------------------- backend interface */

static void test_backend_cpu_caps(void **state)
{
    (void)state;
    augur_error err = {0};
    augur_backend *be = NULL;
    assert_int_equal(backend_create(&be, AUGUR_BACKEND_CPU, &(augur_backend_opts){.threads = 2}, &err), AUGUR_OK);
    assert_true(be->caps.host_memory);
    assert_true(be->caps.weights_alias_host);
    assert_false(be->caps.stream);
    assert_false(be->caps.memory_info);
    assert_int_equal(be->device, -1);
    assert_null(backend_stream(be));
    char name[32];
    backend_device_name(be, name, sizeof name);
    assert_string_equal(name, "host");
    size_t free_b = 1, total_b = 1;
    assert_int_equal(backend_memory_info(be, &free_b, &total_b, &err), AUGUR_E_UNSUPPORTED);
    assert_true(free_b == 0 && total_b == 0);
    assert_non_null(strstr(err.message, "cpu backend"));
    assert_int_equal(backend_device_count(AUGUR_BACKEND_CPU), 1);
    backend_destroy(be);
}

/* A device past the last visible one (none without a GPU or without CUDA) is refused
 * with a message, and nothing is left to destroy. */
static void test_backend_absent_device(void **state)
{
    (void)state;
    augur_error err = {0};
    augur_backend *be = (augur_backend *)&err;
    const int past = backend_device_count(AUGUR_BACKEND_CUDA);
    assert_true(past >= 0);
    assert_int_equal(backend_create(&be, AUGUR_BACKEND_CUDA, &(augur_backend_opts){.device = past}, &err),
                     AUGUR_E_UNSUPPORTED);
    assert_null(be);
    assert_non_null(strstr(err.message, "cuda backend"));
    augur_error err2 = {0};
    assert_int_equal(backend_create(&be, (augur_backend_kind)7, &(augur_backend_opts){.threads = 1}, &err2),
                     AUGUR_E_INTERNAL);
    assert_null(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_reference),
        cmocka_unit_test(test_matmul_batch_invariance),
        cmocka_unit_test(test_convert_exhaustive),
        cmocka_unit_test(test_matmul_all_patterns),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope_inv_freq_default),
        cmocka_unit_test(test_rope_inv_freq_llama3),
        cmocka_unit_test(test_rope_reference),
        cmocka_unit_test(test_rope_pairing),
        cmocka_unit_test(test_attention_reference),
        cmocka_unit_test(test_attention_batch_invariance),
        cmocka_unit_test(test_attention_paged),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_backend_cpu_caps),
        cmocka_unit_test(test_backend_absent_device),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
