/* KV cache append/trim, draft-length rules and the greedy acceptance test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/spec/acceptance.h"
#include "runtime/spec/draft_rules.h"
#include "runtime/kv_cache.h"

static void test_kv_append_trim(void **state)
{
    (void)state;
    kv_cache kv;
    augur_error err = {0};
    assert_int_equal(kv_cache_init(&kv, NULL, 2, 8, 2, 4, &err), AUGUR_OK);
    for (int p = 0; p < 6; p++) {
        kv_cache_k(&kv, 1, p)[0] = (float)p;
        kv_cache_v(&kv, 1, p)[7] = (float)(10 * p);
    }
    assert_int_equal(kv_cache_append(&kv, 6, &err), AUGUR_OK);
    assert_int_equal(kv.len, 6);
    assert_int_equal(kv_cache_trim(&kv, 3, &err), AUGUR_OK);
    assert_int_equal(kv.len, 3);
    /* positions before the trim point are intact */
    assert_true(kv_cache_k(&kv, 1, 2)[0] == 2.0f);
    assert_true(kv_cache_v(&kv, 1, 2)[7] == 20.0f);
    /* growing past the trim point is an error, as is appending past max_seq */
    assert_int_equal(kv_cache_trim(&kv, 4, &err), AUGUR_E_INTERNAL);
    assert_int_equal(kv_cache_append(&kv, 6, &err), AUGUR_E_INPUT);
    assert_non_null(strstr(err.message, "context of 8"));
    assert_int_equal(kv_cache_append(&kv, 5, &err), AUGUR_OK);
    assert_int_equal(kv.len, 8);
    assert_int_equal(kv_cache_trim(&kv, 0, &err), AUGUR_OK);
    assert_int_equal(kv.len, 0);
    kv_cache_free(&kv);
}

static int run_rule(draft_rule_state *s, const float *h, int n)
{
    int max = draft_rule_begin_round(s);
    int k = 0;
    while (k < max && k < n) {
        bool stop = draft_rule_stop_after(s, h[k]);
        k++;
        if (stop)
            break;
    }
    return k;
}

static void test_rules(void **state)
{
    (void)state;
    float h[8] = {0.5f, 1.0f, 3.0f, 0.2f, 0.2f, 0.2f, 0.2f, 0.2f};
    draft_rule_state s;
    draft_rule r = {.kind = DRAFT_RULE_FIXED, .gamma = 5};
    draft_rule_init(&s, &r);
    assert_int_equal(run_rule(&s, h, 8), 5);

    r = (draft_rule){.kind = DRAFT_RULE_STATIC, .gamma = 8, .tau = 2.25f};
    draft_rule_init(&s, &r);
    assert_int_equal(run_rule(&s, h, 8), 3); /* fires on 3.0 and keeps it */

    /* moving average: cannot fire on the first token; H² = 1 >= 0.5 * mean(0.25) fires at token 2 */
    r = (draft_rule){.kind = DRAFT_RULE_MOVING_AVERAGE, .gamma = 8, .lambda = 0.5f, .window = 3};
    draft_rule_init(&s, &r);
    float big_first[3] = {5.0f, 1.0f, 1.0f};
    assert_int_equal(run_rule(&s, big_first, 3), 3); /* 1 < 0.5*25 and 1 < 0.5*mean(25,1)=6.5 */
    draft_rule_init(&s, &r);
    assert_int_equal(run_rule(&s, h, 8), 2);

    /* cumulative: 0.25 + 1 + 9 = 10.25 >= 10 on the third token with n = 2 */
    r = (draft_rule){.kind = DRAFT_RULE_CUMULATIVE, .gamma = 8, .tau = 10.0f, .window = 2};
    draft_rule_init(&s, &r);
    assert_int_equal(run_rule(&s, h, 8), 3);
    r.window = 1; /* 1 + 9 = 10 still fires */
    draft_rule_init(&s, &r);
    assert_int_equal(run_rule(&s, h, 8), 3);
    r.tau = 10.5f; /* now never reaches: at most 9+1=10 or later 0.04+.. */
    draft_rule_init(&s, &r);
    assert_int_equal(run_rule(&s, h, 8), 8);

    /* heuristic: +2 after full acceptance, -1 otherwise, never below 1, never above
     * --gamma (where it starts): --gamma caps every rule */
    r = (draft_rule){.kind = DRAFT_RULE_HEURISTIC, .gamma = 4};
    draft_rule_init(&s, &r);
    assert_int_equal(draft_rule_begin_round(&s), 4);
    draft_rule_end_round(&s, 4, 4);
    assert_int_equal(draft_rule_begin_round(&s), 4);
    draft_rule_end_round(&s, 1, 4);
    assert_int_equal(draft_rule_begin_round(&s), 3);
    draft_rule_end_round(&s, 3, 3);
    assert_int_equal(draft_rule_begin_round(&s), 4);
    for (int i = 0; i < 6; i++)
        draft_rule_end_round(&s, 0, 3);
    assert_int_equal(draft_rule_begin_round(&s), 1);
    draft_rule_end_round(&s, 1, 1);
    assert_int_equal(draft_rule_begin_round(&s), 3);
    for (int i = 0; i < 40; i++)
        draft_rule_end_round(&s, 3, 3);
    assert_int_equal(draft_rule_begin_round(&s), 4);

    augur_error err = {0};
    draft_rule_kind kind;
    assert_int_equal(draft_rule_kind_parse("moving-average", &kind, &err), AUGUR_OK);
    assert_int_equal(kind, DRAFT_RULE_MOVING_AVERAGE);
    assert_int_equal(draft_rule_kind_parse("entropy", &kind, &err), AUGUR_E_INPUT);
    r = (draft_rule){.kind = DRAFT_RULE_STATIC, .gamma = 4, .tau = 0};
    assert_int_equal(draft_rule_validate(&r, &err), AUGUR_E_INPUT);
    assert_non_null(strstr(err.message, "--tau"));
}

static void test_accept_greedy(void **state)
{
    (void)state;
    int32_t draft[4] = {5, 6, 7, 8};
    int32_t all[5] = {5, 6, 7, 8, 9};
    acceptance_result r = accept_greedy(draft, 4, all);
    assert_int_equal(r.accepted, 4);
    assert_int_equal(r.next_token, 9);
    int32_t mid[5] = {5, 6, 1, 8, 9};
    r = accept_greedy(draft, 4, mid);
    assert_int_equal(r.accepted, 2);
    assert_int_equal(r.next_token, 1);
    r = accept_greedy(draft, 0, mid);
    assert_int_equal(r.accepted, 0);
    assert_int_equal(r.next_token, 5);
}

static void test_accept_sampling_identical(void **state)
{
    (void)state;
    /* When q == p every draft token is accepted. */
    enum { V = 4 };
    float q[2 * V] = {0.1f, 0.2f, 0.3f, 0.4f, 0.25f, 0.25f, 0.25f, 0.25f};
    float p[3 * V] = {0.1f, 0.2f, 0.3f, 0.4f, 0.25f, 0.25f, 0.25f, 0.25f, 0, 0, 1, 0};
    int32_t draft[2] = {3, 0};
    float residual[V];
    augur_rng rng;
    rng_seed(&rng, 7);
    for (int i = 0; i < 100; i++) {
        acceptance_result r = accept_sampling(draft, 2, q, p, V, &rng, residual, ACCEPT_CORRECT);
        assert_int_equal(r.accepted, 2);
        assert_int_equal(r.next_token, 2);
    }
    /* p(x) = 0: always rejected, and the replacement comes from the residual (never x) */
    float p0[3 * V] = {0.5f, 0.5f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 100; i++) {
        acceptance_result r = accept_sampling(draft, 2, q, p0, V, &rng, residual, ACCEPT_CORRECT);
        assert_int_equal(r.accepted, 0);
        assert_true(r.next_token == 0 || r.next_token == 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv_append_trim),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_accept_greedy),
        cmocka_unit_test(test_accept_sampling_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
