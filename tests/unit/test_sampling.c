/* RNG, logits processing and sampling against straightforward references. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/spec/sampling.h"
#include "test_util.h"

/* ---------------------------------------------------------------- rng */

static void test_rng_known_answer(void **state)
{
    (void)state;
    /* From an independent implementation of splitmix64 seeding + xoshiro256**: the stream
     * must be the same on every platform. */
    augur_rng r;
    rng_seed(&r, 0);
    assert_true(rng_next(&r) == 0x99ec5f36cb75f2b4ull);
    assert_true(rng_next(&r) == 0xbf6e1f784956452aull);
    assert_true(rng_next(&r) == 0x1a5f849d4933e6e0ull);
    rng_seed(&r, 42);
    assert_true(rng_next(&r) == 0x15780b2e0c2ec716ull);
    assert_true(rng_next(&r) == 0x6104d9866d113a7eull);
    assert_true(rng_next(&r) == 0xae17533239e499a1ull);
}

static void test_rng_same_seed_same_stream(void **state)
{
    (void)state;
    augur_rng a, b, c;
    rng_seed(&a, 12345);
    rng_seed(&b, 12345);
    rng_seed(&c, 12346);
    int same_as_other_seed = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = rng_next(&a), y = rng_next(&b), z = rng_next(&c);
        assert_true(x == y);
        same_as_other_seed += x == z;
    }
    assert_int_equal(same_as_other_seed, 0);
}

static void test_rng_uniform_range(void **state)
{
    (void)state;
    augur_rng r;
    rng_seed(&r, 7);
    double sum = 0, lo = 1, hi = 0;
    const int N = 200000;
    int buckets[10] = {0};
    for (int i = 0; i < N; i++) {
        double u = rng_uniform(&r);
        assert_true(u >= 0.0 && u < 1.0);
        /* 53 bits: u * 2^53 is an integer. */
        assert_true(u * 0x1.0p53 == floor(u * 0x1.0p53));
        sum += u;
        lo = fmin(lo, u);
        hi = fmax(hi, u);
        buckets[(int)(u * 10)]++;
    }
    assert_true(fabs(sum / N - 0.5) < 0.01);
    assert_true(lo < 0.001 && hi > 0.999);
    for (int b = 0; b < 10; b++)
        assert_true(abs(buckets[b] - N / 10) < N / 100);
}

/* ---------------------------------------------------------------- argmax */

static void test_argmax(void **state)
{
    (void)state;
    float a[] = {1.0f, 3.0f, 2.0f, 3.0f};
    assert_int_equal(argmax_f32(a, 4), 1);
    float b[] = {NAN, -1.0f, NAN, 5.0f, 5.0f};
    assert_int_equal(argmax_f32(b, 5), 3);
    float c[] = {-INFINITY, NAN, -2.0f};
    assert_int_equal(argmax_f32(c, 3), 2);
    float d[] = {-INFINITY, -INFINITY};
    assert_int_equal(argmax_f32(d, 2), 0);
    float e[] = {2.0f, NAN, 7.0f};
    assert_int_equal(argmax_f32(e, 3), 2);
}

/* ---------------------------------------------------------------- sampling_probs */

static int count_nonzero(const float *p, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += p[i] != 0.0f;
    return k;
}

static double total(const float *p, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += p[i];
    return s;
}

static void test_probs_greedy(void **state)
{
    (void)state;
    float logits[6] = {0.5f, 2.0f, -1.0f, 2.0f, NAN, 1.0f};
    float probs[6];
    int scratch[6];
    sampling_params sp = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f};
    assert_true(sampling_is_greedy(&sp));
    sampling_probs(&sp, logits, 6, probs, scratch);
    for (int i = 0; i < 6; i++)
        assert_true(probs[i] == (i == 1 ? 1.0f : 0.0f));
    sp.temperature = 0.8f;
    assert_false(sampling_is_greedy(&sp));
}

static void test_probs_temperature(void **state)
{
    (void)state;
    enum { N = 50 };
    float *logits = malloc(N * sizeof(float));
    assert_non_null(logits);
    test_fill_random(logits, N, 3, 6.0f);
    const float temps[] = {0.3f, 1.0f, 1.7f};
    for (int t = 0; t < 3; t++) {
        float probs[N];
        int scratch[N];
        sampling_params sp = {.temperature = temps[t], .top_k = 0, .top_p = 1.0f};
        sampling_probs(&sp, logits, N, probs, scratch);
        double ref[N], mx = -INFINITY, s = 0;
        for (int i = 0; i < N; i++)
            mx = fmax(mx, logits[i] / (double)temps[t]);
        for (int i = 0; i < N; i++)
            s += (ref[i] = exp(logits[i] / (double)temps[t] - mx));
        for (int i = 0; i < N; i++)
            if (fabs(probs[i] - ref[i] / s) > 1e-5 * (ref[i] / s) + 1e-9)
                fail_msg("T=%g p[%d] = %.9g, want %.9g", temps[t], i, probs[i], ref[i] / s);
        assert_true(fabs(total(probs, N) - 1.0) < 1e-5);
    }
    free(logits);
}

static void test_probs_top_k(void **state)
{
    (void)state;
    float logits[8] = {0.1f, 2.0f, -1.0f, 1.5f, 3.0f, 0.0f, 1.4f, -2.0f};
    float probs[8], full[8];
    int scratch[8];
    sampling_params sp = {.temperature = 1.0f, .top_k = 3, .top_p = 1.0f};
    sampling_probs(&sp, logits, 8, probs, scratch);
    assert_int_equal(count_nonzero(probs, 8), 3);
    assert_true(probs[4] > 0 && probs[1] > 0 && probs[3] > 0);
    assert_true(fabs(total(probs, 8) - 1.0) < 1e-6);
    sampling_params plain = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f};
    sampling_probs(&plain, logits, 8, full, scratch);
    double kept = (double)full[4] + full[1] + full[3];
    assert_true(fabs(probs[1] - full[1] / kept) < 1e-6);

    /* Ties at the boundary go to the lower id. */
    float flat[6] = {1.0f, 0.0f, 1.0f, 1.0f, 1.0f, 1.0f};
    float pf[6];
    sp.top_k = 2;
    sampling_probs(&sp, flat, 6, pf, scratch);
    for (int i = 0; i < 6; i++)
        assert_true(pf[i] == (i == 0 || i == 2 ? 0.5f : 0.0f));
}

static void test_probs_top_p(void **state)
{
    (void)state;
    /* Distribution 0.1, 0.4, 0.2, 0.3: by descending mass 1 (0.4), 3 (0.7), 2 (0.9), 0 (1.0). */
    const double p[4] = {0.1, 0.4, 0.2, 0.3};
    float logits[4];
    for (int i = 0; i < 4; i++)
        logits[i] = (float)log(p[i]);
    float probs[4];
    int scratch[4];
    sampling_params sp = {.temperature = 1.0f, .top_k = 0, .top_p = 0.65f};
    sampling_probs(&sp, logits, 4, probs, scratch);
    assert_true(probs[0] == 0.0f && probs[2] == 0.0f);
    assert_true(fabs(probs[1] - 0.4 / 0.7) < 1e-6 && fabs(probs[3] - 0.3 / 0.7) < 1e-6);
    assert_true(fabs(total(probs, 4) - 1.0) < 1e-6);

    sp.top_p = 0.85f;
    sampling_probs(&sp, logits, 4, probs, scratch);
    assert_int_equal(count_nonzero(probs, 4), 3);
    assert_true(probs[0] == 0.0f);
    assert_true(fabs(total(probs, 4) - 1.0) < 1e-6);

    /* A top_p below the largest mass still keeps one token. */
    sp.top_p = 0.01f;
    sampling_probs(&sp, logits, 4, probs, scratch);
    assert_true(probs[1] == 1.0f && count_nonzero(probs, 4) == 1);

    /* Equal masses: the prefix takes the lower ids first. 0.25 + 0.25 reaches 0.5 exactly. */
    float flat[4] = {2.0f, 2.0f, 2.0f, 2.0f};
    sp.top_p = 0.5f;
    sampling_probs(&sp, flat, 4, probs, scratch);
    assert_true(probs[0] == 0.5f && probs[1] == 0.5f && probs[2] == 0.0f && probs[3] == 0.0f);

    /* top_k then top_p: top_p is measured on what top_k left. Top-2 of p is {1: 4/7, 3: 3/7};
     * top_p 0.5 keeps only id 1, whereas on the full distribution it would keep 1 and 3. */
    sp.top_k = 2;
    sp.top_p = 0.5f;
    sampling_probs(&sp, logits, 4, probs, scratch);
    assert_true(probs[1] == 1.0f && count_nonzero(probs, 4) == 1);
    sp.top_p = 0.6f;
    sampling_probs(&sp, logits, 4, probs, scratch);
    assert_int_equal(count_nonzero(probs, 4), 2);
}

/* Large vocabulary against a full sort: exercises the selection and the growing sorted head. */
typedef struct {
    double p;
    int id;
} ranked;

static int by_prob_then_id(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->p != y->p)
        return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}

static void check_large_vocab(int n, float temperature, int top_k, float top_p, uint64_t seed)
{
    float *logits = malloc((size_t)n * sizeof(float));
    float *probs = malloc((size_t)n * sizeof(float));
    float *plain = malloc((size_t)n * sizeof(float));
    int *scratch = malloc((size_t)n * sizeof(int));
    int *order = malloc((size_t)n * sizeof(int));
    double *pd = malloc((size_t)n * sizeof(double));
    ranked *rk = malloc((size_t)n * sizeof(ranked));
    assert_true(logits && probs && plain && scratch && order && pd && rk);
    test_fill_random(logits, (size_t)n, seed, 4.0f);
    for (int i = 0; i < n; i += 97) /* ties */
        logits[i] = 1.25f;

    sampling_params sp0 = {.temperature = temperature, .top_k = 0, .top_p = 1.0f};
    sampling_probs(&sp0, logits, n, plain, scratch);
    for (int i = 0; i < n; i++) {
        pd[i] = plain[i];
        rk[i] = (ranked){.p = pd[i], .id = i};
    }
    qsort(rk, (size_t)n, sizeof *rk, by_prob_then_id);
    for (int i = 0; i < n; i++)
        order[i] = rk[i].id;
    int keep = (top_k > 0 && top_k < n) ? top_k : n;
    double mass = 0;
    for (int j = 0; j < keep; j++)
        mass += pd[order[j]];
    if (top_p < 1.0f) {
        double cum = 0;
        int j = 0;
        while (j < keep) {
            cum += pd[order[j++]];
            if (cum >= (double)top_p * mass)
                break;
        }
        keep = j;
    }
    double kept = 0;
    for (int j = 0; j < keep; j++)
        kept += pd[order[j]];

    sampling_params sp = {.temperature = temperature, .top_k = top_k, .top_p = top_p};
    sampling_probs(&sp, logits, n, probs, scratch);
    assert_int_equal(count_nonzero(probs, n), keep);
    for (int j = 0; j < keep; j++) {
        int id = order[j];
        if (fabs(probs[id] - pd[id] / kept) > 1e-6 * (pd[id] / kept) + 1e-12)
            fail_msg("n=%d k=%d p=%g: rank %d id %d has %.9g, want %.9g", n, top_k, top_p, j, id, probs[id],
                     pd[id] / kept);
    }
    assert_true(fabs(total(probs, n) - 1.0) < 1e-4);
    free(rk);
    free(pd);
    free(order);
    free(scratch);
    free(plain);
    free(probs);
    free(logits);
}

static void test_probs_large_vocab(void **state)
{
    (void)state;
    check_large_vocab(50000, 1.0f, 40, 1.0f, 1);
    check_large_vocab(50000, 1.0f, 0, 0.9f, 2);  /* thousands of tokens in the nucleus */
    check_large_vocab(50000, 0.3f, 0, 0.95f, 3); /* a peaked distribution */
    check_large_vocab(50000, 0.7f, 1000, 0.8f, 4);
    check_large_vocab(300, 1.0f, 0, 0.999f, 5);
}

/* ---------------------------------------------------------------- sample_from_probs */

/* Counts n draws from the 5 probabilities p, seeded with seed. */
static void count_draws(const float p[5], uint64_t seed, int n, int counts[5])
{
    augur_rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        int s = sample_from_probs(p, 5, &r);
        assert_true(s >= 0 && s < 5);
        counts[s]++;
    }
}

static void test_sample_frequencies(void **state)
{
    (void)state;
    const float p[5] = {0.1f, 0.0f, 0.45f, 0.25f, 0.2f};
    int counts[5] = {0};
    const int N = 200000;
    count_draws(p, 99, N, counts);
    assert_int_equal(counts[1], 0);
    for (int i = 0; i < 5; i++)
        assert_true(fabs((double)counts[i] / N - p[i]) < 0.01);

    /* Same seed, same draws. */
    augur_rng a, b;
    rng_seed(&a, 5);
    rng_seed(&b, 5);
    for (int i = 0; i < 100; i++)
        assert_int_equal(sample_from_probs(p, 5, &a), sample_from_probs(p, 5, &b));
}

static void test_sample_mass_shortfall(void **state)
{
    (void)state;
    /* Mass 0.8: a u past the total must land on the last nonzero index, never a zero one. */
    const float p[5] = {0.5f, 0.0f, 0.3f, 0.0f, 0.0f};
    int counts[5] = {0};
    count_draws(p, 11, 20000, counts);
    assert_int_equal(counts[1] + counts[3] + counts[4], 0);
    assert_true(fabs(counts[2] / 20000.0 - 0.5) < 0.02);
}

static void test_entropy(void **state)
{
    (void)state;
    float u[10];
    for (int i = 0; i < 10; i++)
        u[i] = 0.1f;
    assert_true(fabs(entropy_nats(u, 10) - log(10.0)) < 1e-5);
    float one[3] = {0.0f, 1.0f, 0.0f};
    assert_true(entropy_nats(one, 3) == 0.0f);
    float two[2] = {0.25f, 0.75f};
    assert_true(fabs(entropy_nats(two, 2) - (-0.25 * log(0.25) - 0.75 * log(0.75))) < 1e-6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_known_answer),
        cmocka_unit_test(test_rng_same_seed_same_stream),
        cmocka_unit_test(test_rng_uniform_range),
        cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_probs_greedy),
        cmocka_unit_test(test_probs_temperature),
        cmocka_unit_test(test_probs_top_k),
        cmocka_unit_test(test_probs_top_p),
        cmocka_unit_test(test_probs_large_vocab),
        cmocka_unit_test(test_sample_frequencies),
        cmocka_unit_test(test_sample_mass_shortfall),
        cmocka_unit_test(test_entropy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
