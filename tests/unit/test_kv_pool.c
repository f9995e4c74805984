/* The paged KV cache (runtime/kv_cache.h): a pool's block accounting through append,
 * trim and free, the exhaustion error, two sequences interleaved in one pool, and
 * kv_cache_k/v going through the block table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/kv_cache.h"
#include "test_util.h"

enum { LAYERS = 2, HEADS = 2, HD = 4, ROW = HEADS * HD, BLOCKS = 6 };

/* A value that names (sequence, layer, position, element): what was written where. */
static float tag(int seq, int layer, int pos, int e)
{
    return (float)(seq * 100000 + layer * 10000 + pos * 10 + e);
}

static void write_positions(kv_cache *kv, int seq, int from, int to)
{
    for (int l = 0; l < LAYERS; l++)
        for (int p = from; p < to; p++)
            for (int e = 0; e < ROW; e++) {
                kv_cache_k(kv, l, p)[e] = tag(seq, l, p, e);
                kv_cache_v(kv, l, p)[e] = -tag(seq, l, p, e);
            }
}

/* Every valid position of kv still holds what sequence seq wrote there. */
static void expect_positions(const kv_cache *kv, int seq)
{
    for (int l = 0; l < LAYERS; l++)
        for (int p = 0; p < kv->len; p++)
            for (int e = 0; e < ROW; e++)
                if (kv_cache_k(kv, l, p)[e] != tag(seq, l, p, e) || kv_cache_v(kv, l, p)[e] != -tag(seq, l, p, e))
                    fail_msg("sequence %d layer %d position %d element %d was overwritten (k %g)", seq, l, p, e,
                             (double)kv_cache_k(kv, l, p)[e]);
}

/* Appends n positions (reserving, writing, then marking them), as a forward does. */
static void append(kv_cache *kv, int seq, int n)
{
    augur_error err = {0};
    test_expect_ok(kv_cache_reserve(kv, n, &err), &err, "kv_cache_reserve");
    write_positions(kv, seq, kv->len, kv->len + n);
    test_expect_ok(kv_cache_append(kv, n, &err), &err, "kv_cache_append");
}

static void test_pool_accounting(void **state)
{
    (void)state;
    kv_pool pool;
    kv_cache kv;
    augur_error err = {0};
    assert_int_equal(kv_pool_bytes(LAYERS, BLOCKS, HEADS, HD), 2 * (size_t)LAYERS * BLOCKS * KV_BLOCK * ROW * 4);
    assert_int_equal(kv_pool_bytes(LAYERS, BLOCKS, HEADS, HD), kv_cache_bytes(LAYERS, BLOCKS * KV_BLOCK, HEADS, HD));
    test_expect_ok(kv_pool_init(&pool, NULL, LAYERS, BLOCKS, HEADS, HD, &err), &err, "kv_pool_init");
    assert_int_equal(kv_pool_free_blocks(&pool), BLOCKS);
    test_expect_ok(kv_cache_init_paged(&kv, &pool, 80, &err), &err, "kv_cache_init_paged");
    assert_non_null(kv_cache_table(&kv));
    assert_int_equal(kv_pool_free_blocks(&pool), BLOCKS); /* no block until a position arrives */

    append(&kv, 1, 1);
    assert_int_equal(kv.n_held, 1);
    assert_int_equal(kv_pool_free_blocks(&pool), BLOCKS - 1);
    append(&kv, 1, KV_BLOCK - 1); /* fills the first block exactly */
    assert_int_equal(kv_pool_free_blocks(&pool), BLOCKS - 1);
    append(&kv, 1, 1);
    assert_int_equal(kv.n_held, 2);
    append(&kv, 1, 2 * KV_BLOCK); /* 49 positions: 4 blocks */
    assert_int_equal(kv.len, 3 * KV_BLOCK + 1);
    assert_int_equal(kv_pool_free_blocks(&pool), BLOCKS - 4);
    expect_positions(&kv, 1);

    /* kv_cache_k goes through the table: position p is row table[p/16]*16 + p%16 of the layer */
    for (int p = 0; p < kv.len; p += 7)
        assert_ptr_equal(kv_cache_k(&kv, 1, p),
                         kv_cache_layer_k(&kv, 1) + ((size_t)kv.table[p / KV_BLOCK] * KV_BLOCK + p % KV_BLOCK) * ROW);
    assert_ptr_equal(kv_cache_layer_k(&kv, 1), pool.k + (size_t)BLOCKS * KV_BLOCK * ROW);

    /* trim frees whole blocks past the one holding the last kept position */
    test_expect_ok(kv_cache_trim(&kv, 2 * KV_BLOCK + 1, &err), &err, "kv_cache_trim");
    assert_int_equal(kv.n_held, 3);
    assert_int_equal(kv_pool_free_blocks(&pool), BLOCKS - 3);
    test_expect_ok(kv_cache_trim(&kv, 2 * KV_BLOCK, &err), &err, "kv_cache_trim");
    assert_int_equal(kv.n_held, 2);
    expect_positions(&kv, 1);
    test_expect_status(kv_cache_trim(&kv, 2 * KV_BLOCK + 1, &err), &err, AUGUR_E_INTERNAL, "cannot trim", NULL);

    /* past the sequence's own context: an input error, nothing taken */
    test_expect_status(kv_cache_append(&kv, 80 - 2 * KV_BLOCK + 1, &err), &err, AUGUR_E_INPUT, "context of 80", NULL);
    assert_int_equal(kv_pool_free_blocks(&pool), BLOCKS - 2);

    /* reserved but never appended: trim to the length gives those blocks back */
    test_expect_ok(kv_cache_reserve(&kv, KV_BLOCK + 1, &err), &err, "kv_cache_reserve");
    assert_int_equal(kv_pool_free_blocks(&pool), BLOCKS - 4);
    assert_int_equal(kv.len, 2 * KV_BLOCK);
    test_expect_ok(kv_cache_trim(&kv, kv.len, &err), &err, "kv_cache_trim");
    assert_int_equal(kv_pool_free_blocks(&pool), BLOCKS - 2);

    test_expect_ok(kv_cache_trim(&kv, 0, &err), &err, "kv_cache_trim");
    assert_int_equal(kv.n_held, 0);
    assert_int_equal(kv_pool_free_blocks(&pool), BLOCKS);
    append(&kv, 1, 3);
    kv_cache_free(&kv);
    assert_int_equal(kv_pool_free_blocks(&pool), BLOCKS);
    kv_pool_free(&pool);
}

/* Two sequences appending in turn share the pool; neither sees the other's rows, the
 * pool running dry is an error naming its size that leaves the asker unchanged, and the
 * blocks a rejection trims off serve the other sequence. */
static void test_pool_two_sequences(void **state)
{
    (void)state;
    kv_pool pool;
    kv_cache a, b;
    augur_error err = {0};
    test_expect_ok(kv_pool_init(&pool, NULL, LAYERS, BLOCKS, HEADS, HD, &err), &err, "kv_pool_init");
    test_expect_ok(kv_cache_init_paged(&a, &pool, 200, &err), &err, "kv_cache_init_paged");
    test_expect_ok(kv_cache_init_paged(&b, &pool, 200, &err), &err, "kv_cache_init_paged");
    const int steps[][2] = {{5, 9}, {20, 3}, {1, 30}, {6, 2}};
    for (int s = 0; s < 4; s++) {
        append(&a, 1, steps[s][0]);
        append(&b, 2, steps[s][1]);
    }
    assert_int_equal(a.len, 32);
    assert_int_equal(b.len, 44);
    assert_int_equal(kv_pool_free_blocks(&pool), BLOCKS - 2 - 3);
    expect_positions(&a, 1);
    expect_positions(&b, 2);
    for (int i = 0; i < a.n_held; i++)
        for (int j = 0; j < b.n_held; j++)
            if (a.table[i] == b.table[j])
                fail_msg("block %d is in both sequences' tables", a.table[i]);

    /* b wants 2 more blocks, 1 is free */
    test_expect_status(kv_cache_append(&b, KV_BLOCK + 5, &err), &err, AUGUR_E_NOMEM, "6 blocks", "96 positions");
    assert_int_equal(b.len, 44);
    assert_int_equal(b.n_held, 3);
    assert_int_equal(kv_pool_free_blocks(&pool), 1);

    /* a's draft of 14 positions takes the last block; a rejection keeping 1 of them
     * keeps it, one keeping none frees it for b */
    append(&a, 1, 14); /* 46 positions: 3 blocks */
    assert_int_equal(kv_pool_free_blocks(&pool), 0);
    test_expect_status(kv_cache_reserve(&b, 5, &err), &err, AUGUR_E_NOMEM, "6 blocks", NULL);
    test_expect_ok(kv_cache_trim(&a, 33, &err), &err, "kv_cache_trim");
    assert_int_equal(kv_pool_free_blocks(&pool), 0);
    test_expect_ok(kv_cache_trim(&a, 32, &err), &err, "kv_cache_trim");
    assert_int_equal(kv_pool_free_blocks(&pool), 1);
    append(&b, 2, 5);
    expect_positions(&a, 1);
    expect_positions(&b, 2);

    kv_cache_free(&a);
    assert_int_equal(kv_pool_free_blocks(&pool), 2);
    append(&b, 2, 2 * KV_BLOCK);
    expect_positions(&b, 2);
    kv_cache_free(&b);
    assert_int_equal(kv_pool_free_blocks(&pool), BLOCKS);
    kv_pool_free(&pool);
}

/* A contiguous cache is what it always was: no table, position p at row p. */
static void test_contiguous_unchanged(void **state)
{
    (void)state;
    kv_cache kv;
    augur_error err = {0};
    test_expect_ok(kv_cache_init(&kv, NULL, LAYERS, 40, HEADS, HD, &err), &err, "kv_cache_init");
    assert_null(kv_cache_table(&kv));
    assert_ptr_equal(kv_cache_k(&kv, 1, 7), kv.k + ((size_t)40 + 7) * ROW);
    assert_ptr_equal(kv_cache_layer_v(&kv, 1), kv.v + (size_t)40 * ROW);
    append(&kv, 3, 40);
    expect_positions(&kv, 3);
    test_expect_status(kv_cache_append(&kv, 1, &err), &err, AUGUR_E_INPUT, "context of 40", NULL);
    kv_cache_free(&kv);
}

static void test_pool_bad_shape(void **state)
{
    (void)state;
    kv_pool pool;
    augur_error err = {0};
    test_expect_status(kv_pool_init(&pool, NULL, LAYERS, 0, HEADS, HD, &err), &err, AUGUR_E_INTERNAL, "0 blocks",
                       NULL);
    kv_pool_free(&pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_accounting),
        cmocka_unit_test(test_pool_two_sequences),
        cmocka_unit_test(test_contiguous_unchanged),
        cmocka_unit_test(test_pool_bad_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
