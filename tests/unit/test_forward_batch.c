/* forward_run_batch (runtime/forward.h): several sequences' rows in one fused forward
 * give every sequence exactly the logits forward_run gives it alone on a contiguous
 * cache, bit for bit, whatever its batch-mates, with contiguous and paged caches mixed,
 * through prefill, verification-sized steps, rejections (trims) and sequences sitting out
 * rounds (odd rounds through forward_run_batch_reduced, whose per-row argmax and maximum
 * must match the rows'); and a pool running dry fails the call without growing any cache. A small
 * random Llama model (model_load_dummy) on the CPU backend; no fixture needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/probs.h"
#include "runtime/device_plan.h"
#include "runtime/forward.h"
#include "test_util.h"

enum { SEQS = 4, MAX_TOKENS = 64, MAX_SEQ = 256, ROUNDS = 10 };

typedef struct {
    augur_backend *be;
    model m;
    forward_ctx f;
} bench;

static void bench_open(bench *b, const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    /* 5 query heads over 1 KV head and head_dim 12: odd shapes; 512 positions */
    const char *json = "{\"model_type\": \"llama\", \"hidden_size\": 60, \"intermediate_size\": 88,"
                       " \"num_hidden_layers\": 2, \"num_attention_heads\": 5, \"num_key_value_heads\": 1,"
                       " \"vocab_size\": 97, \"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-5,"
                       " \"rope_theta\": 10000.0, \"tie_word_embeddings\": false, \"bos_token_id\": 1,"
                       " \"eos_token_id\": 2}";
    assert_int_equal(test_write_file(path, json, strlen(json)), 0);
    augur_error err = {0};
    test_expect_ok(backend_cpu_create(&b->be, 2, &err), &err, "backend_cpu_create");
    test_expect_ok(model_load_dummy(&b->m, path, NULL, b->be, 7, &err), &err, "model_load_dummy");
    test_expect_ok(forward_init(&b->f, &b->m, b->be, NULL, 0, MAX_TOKENS, MAX_SEQ, &err), &err, "forward_init");
}

static void bench_close(bench *b)
{
    forward_free(&b->f);
    model_free(&b->m);
    backend_destroy(b->be);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static int32_t random_token(int vocab)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (int32_t)(rng % (uint64_t)vocab);
}

/* Rounds of a few sequences, each: its reference alone (forward_run on a contiguous
 * cache) and its share of one batched call (caches alternately paged and contiguous). */
static void test_batch_equals_alone(void **state)
{
    bench b;
    bench_open(&b, *state);
    const int vocab = b.m.cfg.vocab_size, V = b.m.vocab_local;
    augur_error err = {0};
    kv_pool pool;
    test_expect_ok(kv_pool_init(&pool, b.be, b.m.cfg.n_layers, 40, b.m.n_kv_heads_local, b.m.cfg.head_dim, &err), &err,
                   "kv_pool_init");
    kv_cache ref[SEQS], bat[SEQS];
    for (int i = 0; i < SEQS; i++) {
        test_expect_ok(kv_cache_init(&ref[i], b.be, b.m.cfg.n_layers, MAX_SEQ, b.m.n_kv_heads_local, b.m.cfg.head_dim,
                                     &err),
                       &err, "kv_cache_init");
        if (i % 2)
            test_expect_ok(kv_cache_init(&bat[i], b.be, b.m.cfg.n_layers, MAX_SEQ, b.m.n_kv_heads_local,
                                         b.m.cfg.head_dim, &err),
                           &err, "kv_cache_init");
        else
            test_expect_ok(kv_cache_init_paged(&bat[i], &pool, MAX_SEQ, &err), &err, "kv_cache_init_paged");
    }
    const int prompt[SEQS] = {5, 23, 30, 1}; /* round 0: prefill, 59 rows in one call */
    int32_t next[SEQS] = {0};
    float *want = malloc((size_t)MAX_TOKENS * V * sizeof(float));
    float *got = malloc((size_t)MAX_TOKENS * V * sizeof(float));
    assert_non_null(want);
    assert_non_null(got);
    int64_t rows_compared = 0;
    for (int r = 0; r <= ROUNDS; r++) {
        forward_seq seqs[SEQS];
        int32_t tokens[SEQS][MAX_TOKENS];
        int idx[SEQS], n_seqs = 0;
        size_t off = 0;
        for (int i = 0; i < SEQS; i++) {
            if (r >= 2 && i == r % SEQS)
                continue; /* sits this round out, as a request between its turns */
            int n = r == 0 ? prompt[i] : 1 + (r + 2 * i) % 7; /* a verification of up to 7 rows */
            int lf = r == 0 ? n - 1 : (r + i) % 3 == 0 ? n - 1 : 0;
            tokens[i][0] = r == 0 ? random_token(vocab) : next[i];
            for (int t = 1; t < n; t++)
                tokens[i][t] = random_token(vocab); /* draft tokens */
            /* the reference: this sequence alone */
            test_expect_ok(forward_run(&b.f, &ref[i], tokens[i], n, lf, want + off, &err), &err, "forward_run");
            seqs[n_seqs] = (forward_seq){.kv = &bat[i], .tokens = tokens[i], .n = n, .logits_from = lf};
            idx[n_seqs++] = i;
            off += (size_t)(n - lf) * V;
        }
        /* odd rounds reduce each row as greedy verification does (the host backend still
         * fills every logits row) */
        int32_t amax[MAX_TOKENS];
        float mx[MAX_TOKENS];
        if (r % 2)
            test_expect_ok(forward_run_batch_reduced(&b.f, seqs, n_seqs, NULL, got, amax, mx, &err), &err,
                           "forward_run_batch_reduced");
        else
            test_expect_ok(forward_run_batch(&b.f, seqs, n_seqs, got, &err), &err, "forward_run_batch");
        for (size_t k = 0; r % 2 && k < off / (size_t)V; k++) {
            const int best = argmax_f32(want + k * V, V);
            if (amax[k] != best || mx[k] != want[k * V + best])
                fail_msg("round %d wanted row %zu: reduced to (%d, %g), the row alone gives (%d, %g)", r, k, amax[k],
                         (double)mx[k], best, (double)want[k * V + best]);
        }
        off = 0;
        for (int s = 0; s < n_seqs; s++) {
            const int i = idx[s], rows = seqs[s].n - seqs[s].logits_from;
            if (memcmp(got + off, want + off, (size_t)rows * V * sizeof(float)))
                fail_msg("round %d sequence %d (%s cache, %d rows at position %d): batched logits differ from the "
                         "sequence alone",
                         r, i, bat[i].pool ? "paged" : "contiguous", seqs[s].n, ref[i].len - seqs[s].n);
            assert_int_equal(bat[i].len, ref[i].len);
            for (int k = 0; k < rows; k++) /* greedy: the argmax of every wanted row */
                assert_int_equal(argmax_f32(got + off + (size_t)k * V, V), argmax_f32(want + off + (size_t)k * V, V));
            next[i] = (int32_t)argmax_f32(got + off + (size_t)(rows - 1) * V, V);
            rows_compared += rows;
            /* a rejection: keep a prefix of the verified rows, forget the rest, on both */
            int keep = seqs[s].n - (r + i) % seqs[s].n;
            if (r > 0) {
                test_expect_ok(kv_cache_trim(&ref[i], ref[i].len - seqs[s].n + keep, &err), &err, "kv_cache_trim");
                test_expect_ok(kv_cache_trim(&bat[i], bat[i].len - seqs[s].n + keep, &err), &err, "kv_cache_trim");
            }
            off += (size_t)rows * V;
        }
    }
    print_message("%lld logits rows equal bit for bit\n", (long long)rows_compared);
    /* positions held are exactly the blocks the paged sequences need */
    int held = 0;
    for (int i = 0; i < SEQS; i += 2)
        held += kv_blocks_for(bat[i].len);
    assert_int_equal(kv_pool_free_blocks(&pool), pool.n_blocks - held);
    for (int i = 0; i < SEQS; i++) {
        kv_cache_free(&ref[i]);
        kv_cache_free(&bat[i]);
    }
    assert_int_equal(kv_pool_free_blocks(&pool), pool.n_blocks);
    kv_pool_free(&pool);
    free(want);
    free(got);
    bench_close(&b);
}

/* A batch whose paged sequence cannot get its blocks fails as a whole: no cache grows,
 * the blocks another sequence reserved for the call go back, and the next call works.
 * Logits may be NULL. */
static void test_batch_pool_exhausted(void **state)
{
    bench b;
    bench_open(&b, *state);
    augur_error err = {0};
    kv_pool pool;
    test_expect_ok(kv_pool_init(&pool, b.be, b.m.cfg.n_layers, 3, b.m.n_kv_heads_local, b.m.cfg.head_dim, &err), &err,
                   "kv_pool_init");
    kv_cache a, c;
    test_expect_ok(kv_cache_init_paged(&a, &pool, MAX_SEQ, &err), &err, "kv_cache_init_paged");
    test_expect_ok(kv_cache_init_paged(&c, &pool, MAX_SEQ, &err), &err, "kv_cache_init_paged");
    int32_t tokens[40];
    for (int t = 0; t < 40; t++)
        tokens[t] = random_token(b.m.cfg.vocab_size);
    forward_seq seqs[2] = {{.kv = &a, .tokens = tokens, .n = 20, .logits_from = 20},
                           {.kv = &c, .tokens = tokens, .n = 20, .logits_from = 19}};
    float *logits = malloc((size_t)b.m.vocab_local * sizeof(float));
    assert_non_null(logits);
    test_expect_status(forward_run_batch(&b.f, seqs, 2, logits, &err), &err, AUGUR_E_NOMEM, "3 blocks",
                       "sequence 2 of 2");
    assert_int_equal(a.len, 0);
    assert_int_equal(c.len, 0);
    assert_int_equal(kv_pool_free_blocks(&pool), 3);
    seqs[1].n = seqs[1].logits_from = 10;
    test_expect_ok(forward_run_batch(&b.f, seqs, 2, NULL, &err), &err, "forward_run_batch");
    assert_int_equal(a.len, 20);
    assert_int_equal(c.len, 10);
    assert_int_equal(kv_pool_free_blocks(&pool), 0);
    /* alone, too: forward_run gives back what it reserved when the pool runs dry */
    test_expect_status(forward_run(&b.f, &c, tokens, 7, 7, NULL, &err), &err, AUGUR_E_NOMEM, "3 blocks", NULL);
    assert_int_equal(c.len, 10);
    assert_int_equal(c.n_held, 1);
    kv_cache_free(&a);
    kv_cache_free(&c);
    assert_int_equal(kv_pool_free_blocks(&pool), 3);
    kv_pool_free(&pool);
    free(logits);
    bench_close(&b);
}

/* Bad calls: a cache twice in one batch, more rows than the context allows. */
static void test_batch_bad_calls(void **state)
{
    bench b;
    bench_open(&b, *state);
    augur_error err = {0};
    kv_cache a;
    test_expect_ok(kv_cache_init(&a, b.be, b.m.cfg.n_layers, 16, b.m.n_kv_heads_local, b.m.cfg.head_dim, &err), &err,
                   "kv_cache_init");
    int32_t tokens[MAX_TOKENS] = {0};
    forward_seq twice[2] = {{.kv = &a, .tokens = tokens, .n = 2, .logits_from = 2},
                            {.kv = &a, .tokens = tokens, .n = 2, .logits_from = 2}};
    test_expect_status(forward_run_batch(&b.f, twice, 2, NULL, &err), &err, AUGUR_E_INTERNAL, "share a cache", NULL);
    kv_cache c;
    test_expect_ok(kv_cache_init(&c, b.be, b.m.cfg.n_layers, 64, b.m.n_kv_heads_local, b.m.cfg.head_dim, &err), &err,
                   "kv_cache_init");
    forward_seq long_one[2] = {{.kv = &c, .tokens = tokens, .n = 3, .logits_from = 3},
                               {.kv = &a, .tokens = tokens, .n = 17, .logits_from = 17}};
    test_expect_status(forward_run_batch(&b.f, long_one, 2, NULL, &err), &err, AUGUR_E_INPUT, "context of 16",
                       "sequence 2 of 2");
    assert_int_equal(c.len, 0);
    kv_cache_free(&a);
    kv_cache_free(&c);
    bench_close(&b);
}

/* forward_greedy_chain gives the tokens of greedy steps run one at a time, over more
 * steps than one chained program holds, leaves the cache at n + steps - 1 positions, and
 * stops with the context's error at its end. On the CPU it takes the step-by-step path;
 * the captured chains are checked on the GPU (tests/gpu/graphs.sh). */
static void test_greedy_chain(void **state)
{
    bench b;
    bench_open(&b, *state);
    const int vocab = b.m.cfg.vocab_size;
    augur_error err = {0};
    enum { PROMPT = 9, FEED = 3, STEPS = FORWARD_CHAIN_STEPS + 7 };
    kv_cache ref, got;
    test_expect_ok(kv_cache_init(&ref, b.be, b.m.cfg.n_layers, MAX_SEQ, b.m.n_kv_heads_local, b.m.cfg.head_dim, &err),
                   &err, "kv_cache_init");
    test_expect_ok(kv_cache_init(&got, b.be, b.m.cfg.n_layers, MAX_SEQ, b.m.n_kv_heads_local, b.m.cfg.head_dim, &err),
                   &err, "kv_cache_init");
    int32_t prompt[PROMPT + FEED];
    for (int i = 0; i < PROMPT + FEED; i++)
        prompt[i] = random_token(vocab);
    float *scratch = malloc((size_t)b.m.vocab_local * sizeof(float));
    assert_non_null(scratch);
    test_expect_ok(forward_prefill(&b.f, &ref, prompt, PROMPT, NULL, &err), &err, "forward_prefill");
    test_expect_ok(forward_prefill(&b.f, &got, prompt, PROMPT, NULL, &err), &err, "forward_prefill");
    int32_t want[STEPS], out[STEPS];
    const int32_t *feed = prompt + PROMPT;
    for (int s = 0, n = FEED; s < STEPS; s++, n = 1) {
        test_expect_ok(forward_prefill_argmax(&b.f, &ref, feed, n, scratch, &want[s], &err), &err,
                       "forward_prefill_argmax");
        feed = &want[s];
    }
    test_expect_ok(forward_greedy_chain(&b.f, &got, prompt + PROMPT, FEED, STEPS, false, out, scratch, &err), &err,
                   "forward_greedy_chain");
    for (int s = 0; s < STEPS; s++)
        if (out[s] != want[s])
            fail_msg("greedy chain: step %d chose token %d, step by step %d", s, out[s], want[s]);
    assert_int_equal(got.len, PROMPT + FEED + STEPS - 1);
    assert_int_equal(got.len, ref.len);
    test_expect_status(forward_greedy_chain(&b.f, &got, out, 1, 0, false, out, scratch, &err), &err, AUGUR_E_INTERNAL,
                       "0 steps", NULL);
    /* the context's end: the steps that fit run, the next one fails with the context's error */
    const int room = MAX_SEQ - got.len;
    int32_t *rest = malloc((size_t)(room + 1) * sizeof *rest); /* out holds every step's token */
    assert_non_null(rest);
    test_expect_status(forward_greedy_chain(&b.f, &got, out, 1, room + 1, false, rest, scratch, &err), &err,
                       AUGUR_E_INPUT, "exceeds the context", NULL);
    free(rest);
    assert_int_equal(got.len, MAX_SEQ);
    free(scratch);
    kv_cache_free(&ref);
    kv_cache_free(&got);
    bench_close(&b);
}

/* The fused greedy launch (forward_use_fused) stays off where the backend has none, and
 * says why; AUGUR_CUDA_FUSED_DRAFT=0 is named first. Chains then run as before
 * (test_greedy_chain). */
static void test_fused_off_without_op(void **state)
{
    bench b;
    bench_open(&b, *state);
    char why[256] = "unset";
    unsetenv("AUGUR_CUDA_FUSED_DRAFT");
    assert_false(forward_use_fused(&b.f, why, sizeof why));
    assert_null(b.f.fused);
    if (!strstr(why, "backend cpu has no fused greedy steps"))
        fail_msg("forward_use_fused on the CPU backend: reason '%s'", why);
    setenv("AUGUR_CUDA_FUSED_DRAFT", "0", 1);
    assert_false(forward_use_fused(&b.f, why, sizeof why));
    unsetenv("AUGUR_CUDA_FUSED_DRAFT");
    if (strcmp(why, "AUGUR_CUDA_FUSED_DRAFT=0"))
        fail_msg("forward_use_fused with AUGUR_CUDA_FUSED_DRAFT=0: reason '%s'", why);
    assert_null(b.f.fused);
    bench_close(&b);
}

/* The memory plan sizes a pool in whole blocks: on the CPU those of the positions asked
 * for (or the planned context). */
static void test_plan_pool_blocks(void **state)
{
    bench b;
    bench_open(&b, *state);
    augur_error err = {0};
    memory_plan plan;
    device_opts d = {.kind = AUGUR_DEVICE_CPU, .threads = 1};
    test_expect_ok(device_plan_memory(&b.m, b.be, &d, 200, 0, MAX_TOKENS, &plan, &err), &err, "device_plan_memory");
    assert_int_equal(memory_plan_pool_blocks(&plan, &b.m, 0), 13);   /* 200 positions */
    assert_int_equal(memory_plan_pool_blocks(&plan, &b.m, 1000), 63);
    assert_int_equal(kv_pool_bytes(2, 13, 1, 12), 13 * KV_BLOCK * plan.kv_bytes_per_position);
    bench_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        test_in_tmpdir(test_batch_equals_alone), test_in_tmpdir(test_batch_pool_exhausted),
        test_in_tmpdir(test_batch_bad_calls),    test_in_tmpdir(test_greedy_chain),
        test_in_tmpdir(test_plan_pool_blocks),   test_in_tmpdir(test_fused_off_without_op),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
