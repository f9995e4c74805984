/* The shipped pair (models/target, models/draft): augur's tokenizer and CPU greedy
 * generation reproduce what the Hugging Face libraries produced on the GPU machine
 * when the pair was trained (models/goldens/hf_greedy.json, tools/train/). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/generate.h"

#define MODELS AUGUR_SOURCE_DIR "/models"

static json_t *load_goldens(void)
{
    json_error_t jerr;
    json_t *g = json_load_file(MODELS "/goldens/hf_greedy.json", 0, &jerr);
    if (!g)
        fail_msg("models/goldens/hf_greedy.json: %s", jerr.text);
    return g;
}

static void test_tokenizer_matches(void **state)
{
    (void)state;
    json_t *g = load_goldens();
    tokenizer *tok = NULL;
    augur_error err = {0};
    assert_int_equal(tokenizer_load(&tok, MODELS "/target/tokenizer.json", 8192, &err), AUGUR_OK);
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(g, "prompts"), i, p) {
        const char *text = json_string_value(json_object_get(p, "text"));
        json_t *want = json_object_get(p, "ids");
        int32_t *ids = NULL;
        size_t n = 0;
        assert_int_equal(tokenizer_encode(tok, text, strlen(text), true, &ids, &n, &err), AUGUR_OK);
        assert_int_equal(n, json_array_size(want));
        for (size_t k = 0; k < n; k++)
            assert_int_equal(ids[k], json_integer_value(json_array_get(want, k)));
        free(ids);
    }
    tokenizer_free(tok);
    json_decref(g);
}

static void check_model(const char *name)
{
    json_t *g = load_goldens();
    json_t *prompts = json_object_get(g, "prompts");
    json_t *expected = json_object_get(json_object_get(json_object_get(g, "models"), name), "ids");
    assert_int_equal(json_array_size(prompts), json_array_size(expected));
    char path[512];
    snprintf(path, sizeof path, MODELS "/%s", name);
    model m;
    augur_error err = {0};
    assert_int_equal(model_load(&m, path, NULL, &err), AUGUR_OK);
    kv_cache kv;
    forward_ctx f;
    assert_int_equal(kv_cache_init(&kv, NULL, m.cfg.n_layers, 256, m.n_kv_heads_local, m.cfg.head_dim, &err), AUGUR_OK);
    assert_int_equal(forward_init(&f, &m, NULL, NULL, 2, 64, 256, &err), AUGUR_OK);
    int equal = 0;
    size_t i;
    json_t *p;
    json_array_foreach(prompts, i, p) {
        json_t *ids = json_object_get(p, "ids"), *want = json_array_get(expected, i);
        int n_prompt = (int)json_array_size(ids), n_want = (int)json_array_size(want);
        int32_t prompt[256], got[256];
        for (int k = 0; k < n_prompt; k++)
            prompt[k] = (int32_t)json_integer_value(json_array_get(ids, k));
        generate_opts o = {.max_tokens = n_want, .sampling = {.temperature = 0, .top_k = 0, .top_p = 1}};
        generate_stats st;
        assert_int_equal(generate_run(&f, &kv, NULL, prompt, n_prompt, &o, NULL, got, &st, &err), AUGUR_OK);
        int same = st.generated_tokens == n_want;
        for (int k = 0; same && k < n_want; k++)
            same = got[k] == json_integer_value(json_array_get(want, k));
        if (!same)
            print_message("%s prompt %zu: augur's greedy tokens differ from transformers'\n", name, i);
        equal += same;
    }
    print_message("%s: %d of %zu prompts equal transformers' greedy output\n", name, equal,
                  json_array_size(prompts));
    assert_int_equal(equal, (int)json_array_size(prompts));
    forward_free(&f);
    kv_cache_free(&kv);
    model_free(&m);
    json_decref(g);
}

static void test_target_greedy(void **state)
{
    (void)state;
    check_model("target");
}

static void test_draft_greedy(void **state)
{
    (void)state;
    check_model("draft");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_matches),
        cmocka_unit_test(test_target_greedy),
        cmocka_unit_test(test_draft_greedy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
