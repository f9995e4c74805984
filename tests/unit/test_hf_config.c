/* Hugging Face config.json parsing: the Llama family's fields, their defaults, the
 * transformers 4 and 5 spellings of RoPE settings, and errors naming the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/model_config.h"
#include "runtime/model/hf_config.h"
#include "test_util.h"

typedef struct {
    char *dir;
    char path[512];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = test_tmpdir();
    snprintf(f->path, sizeof f->path, "%s/config.json", f->dir);
    *state = f;
    return f->dir ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    unlink(f->path);
    rmdir(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static augur_status load(void **state, const char *json, model_config *c, augur_error *err)
{
    fixture *f = *state;
    assert_int_equal(test_write_file(f->path, json, strlen(json)), 0);
    return model_config_load_hf(c, f->path, err);
}

static void expect_error(void **state, const char *json, augur_status code, const char *needle)
{
    model_config c;
    augur_error err = {0};
    /* the file is always named */
    test_expect_status(load(state, json, &c, &err), &err, code, needle, "config.json");
}

static model_config load_ok(void **state, const char *json)
{
    model_config c;
    augur_error err = {0};
    test_expect_ok(load(state, json, &c, &err), &err, "model_config_load_hf");
    return c;
}

/* Llama 3.2 1B's config, abridged. */
static const char llama3_json[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 2048,"
    " \"intermediate_size\": 8192, \"num_hidden_layers\": 16, \"num_attention_heads\": 32,"
    " \"num_key_value_heads\": 8, \"head_dim\": 64, \"vocab_size\": 128256,"
    " \"max_position_embeddings\": 131072, \"rms_norm_eps\": 1e-05, \"rope_theta\": 500000.0,"
    " \"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
    " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},"
    " \"tie_word_embeddings\": true, \"attention_bias\": false, \"mlp_bias\": false,"
    " \"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009], \"torch_dtype\": \"bfloat16\"}";

static void test_llama3_gqa_scaling(void **state)
{
    model_config c = load_ok(state, llama3_json);
    assert_string_equal(c.model_type, "llama");
    assert_int_equal(c.dim, 2048);
    assert_int_equal(c.hidden_dim, 8192);
    assert_int_equal(c.n_layers, 16);
    assert_int_equal(c.n_heads, 32);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.vocab_size, 128256);
    assert_int_equal(c.max_seq_len, 131072);
    assert_float_equal(c.rms_norm_eps, 1e-5f, 1e-12);
    assert_float_equal(c.rope_theta, 500000.0f, 0);
    assert_true(c.rope_scaling.enabled);
    assert_float_equal(c.rope_scaling.factor, 32.0f, 0);
    assert_float_equal(c.rope_scaling.low_freq_factor, 1.0f, 0);
    assert_float_equal(c.rope_scaling.high_freq_factor, 4.0f, 0);
    assert_int_equal(c.rope_scaling.original_max_position, 8192);
    assert_int_equal(c.rope_pairs, ROPE_PAIRS_HALF);
    assert_true(c.tie_embeddings);
    assert_false(c.attn_bias);
    assert_int_equal(c.bos_id, 128000);
    assert_int_equal(c.n_eos, 3);
    assert_true(model_config_is_eos(&c, 128001));
    assert_true(model_config_is_eos(&c, 128008));
    assert_true(model_config_is_eos(&c, 128009));
    assert_false(model_config_is_eos(&c, 128000));
    assert_false(model_config_is_eos(&c, 2));
}

static void test_qwen2_bias(void **state)
{
    const char *json =
        "{\"model_type\": \"qwen2\", \"hidden_size\": 896, \"intermediate_size\": 4864, \"num_hidden_layers\": 24,"
        " \"num_attention_heads\": 14, \"num_key_value_heads\": 2, \"vocab_size\": 151936,"
        " \"max_position_embeddings\": 32768, \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0,"
        " \"rope_scaling\": null, \"sliding_window\": 32768, \"use_sliding_window\": false,"
        " \"tie_word_embeddings\": true, \"bos_token_id\": 151643, \"eos_token_id\": 151645}";
    model_config c = load_ok(state, json);
    assert_string_equal(c.model_type, "qwen2");
    assert_true(c.attn_bias); /* implied by the architecture, not a field */
    assert_int_equal(c.head_dim, 64);
    assert_false(c.rope_scaling.enabled);
    assert_float_equal(c.rope_theta, 1e6f, 0);
    assert_int_equal(c.n_eos, 1);
    assert_true(model_config_is_eos(&c, 151645));
    assert_int_equal(c.bos_id, 151643);
}

static void test_defaults(void **state)
{
    /* mistral: no num_key_value_heads, head_dim null, sliding_window ignored, no ids */
    const char *json = "{\"model_type\": \"mistral\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                       " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"head_dim\": null,"
                       " \"vocab_size\": 100, \"sliding_window\": 4096, \"bos_token_id\": null}";
    model_config c = load_ok(state, json);
    assert_string_equal(c.model_type, "mistral");
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.max_seq_len, 2048);
    assert_float_equal(c.rms_norm_eps, 1e-6f, 1e-12);
    assert_float_equal(c.rope_theta, 10000.0f, 0);
    assert_false(c.rope_scaling.enabled);
    assert_false(c.tie_embeddings);
    assert_false(c.attn_bias);
    assert_int_equal(c.bos_id, -1);
    assert_int_equal(c.n_eos, 0);
    assert_false(model_config_is_eos(&c, 0));
}

static void test_llama_attention_bias(void **state)
{
    const char *json = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                       " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
                       " \"head_dim\": 32, \"vocab_size\": 100, \"attention_bias\": true, \"eos_token_id\": 2}";
    model_config c = load_ok(state, json);
    assert_true(c.attn_bias);
    assert_int_equal(c.head_dim, 32); /* an explicit head_dim need not be hidden_size / heads */
}

static void test_transformers5_rope_parameters(void **state)
{
    const char *plain = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                        " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
                        " \"rope_parameters\": {\"rope_theta\": 250000.0, \"rope_type\": \"default\"}}";
    model_config c = load_ok(state, plain);
    assert_float_equal(c.rope_theta, 250000.0f, 0);
    assert_false(c.rope_scaling.enabled);
    const char *scaled = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                         " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
                         " \"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": \"llama3\", \"factor\": 8.0,"
                         " \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
                         " \"original_max_position_embeddings\": 8192}}";
    c = load_ok(state, scaled);
    assert_float_equal(c.rope_theta, 500000.0f, 0);
    assert_true(c.rope_scaling.enabled);
    assert_float_equal(c.rope_scaling.factor, 8.0f, 0);
    assert_int_equal(c.rope_scaling.original_max_position, 8192);
    /* the older spelling "type" is accepted too */
    const char *old = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                      " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
                      " \"rope_scaling\": {\"type\": \"llama3\", \"factor\": 16.0, \"low_freq_factor\": 1.0,"
                      " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 4096}}";
    c = load_ok(state, old);
    assert_float_equal(c.rope_scaling.factor, 16.0f, 0);
}

static void test_unsupported_rope_scaling(void **state)
{
    const char *types[] = {"linear", "dynamic", "yarn"};
    for (int i = 0; i < 3; i++) {
        char json[512];
        snprintf(json, sizeof json,
                 "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                 " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
                 " \"rope_scaling\": {\"rope_type\": \"%s\", \"factor\": 2.0}}",
                 types[i]);
        expect_error(state, json, AUGUR_E_UNSUPPORTED, "rope_scaling");
        expect_error(state, json, AUGUR_E_UNSUPPORTED, types[i]);
    }
    expect_error(state,
                 "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                 " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
                 " \"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}",
                 AUGUR_E_UNSUPPORTED, "rope_parameters.rope_type 'yarn'");
}

static void test_unsupported_model_type(void **state)
{
    expect_error(state,
                 "{\"model_type\": \"bert\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                 " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100}",
                 AUGUR_E_UNSUPPORTED, "model_type 'bert' is not supported (llama, mistral, qwen2)");
    expect_error(state, "{\"hidden_size\": 64}", AUGUR_E_FORMAT, "model_type");
}

static void test_missing_and_bad_fields(void **state)
{
    expect_error(state,
                 "{\"model_type\": \"llama\", \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
                 " \"num_attention_heads\": 4, \"vocab_size\": 100}",
                 AUGUR_E_FORMAT, "field hidden_size is missing");
    expect_error(state,
                 "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                 " \"num_hidden_layers\": 2, \"num_attention_heads\": 4}",
                 AUGUR_E_FORMAT, "vocab_size");
    expect_error(state,
                 "{\"model_type\": \"llama\", \"hidden_size\": \"64\", \"intermediate_size\": 128,"
                 " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100}",
                 AUGUR_E_FORMAT, "hidden_size");
    expect_error(state,
                 "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                 " \"num_hidden_layers\": 0, \"num_attention_heads\": 4, \"vocab_size\": 100}",
                 AUGUR_E_FORMAT, "num_hidden_layers must be positive");
    expect_error(state,
                 "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                 " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
                 " \"eos_token_id\": \"</s>\"}",
                 AUGUR_E_FORMAT, "eos_token_id");
    expect_error(state,
                 "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                 " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100,"
                 " \"eos_token_id\": [2, 100]}",
                 AUGUR_E_FORMAT, "eos_token_id 100 outside the vocabulary");
    expect_error(state, "{\"model_type\": \"llama\", ", AUGUR_E_FORMAT, "not valid JSON");
    expect_error(state, "[1]", AUGUR_E_FORMAT, "not a JSON object");
}

static void test_inconsistent_heads(void **state)
{
    expect_error(state,
                 "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                 " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 3,"
                 " \"vocab_size\": 100}",
                 AUGUR_E_FORMAT, "num_key_value_heads 3 does not divide num_attention_heads 4");
    expect_error(state,
                 "{\"model_type\": \"llama\", \"hidden_size\": 60, \"intermediate_size\": 128,"
                 " \"num_hidden_layers\": 2, \"num_attention_heads\": 8, \"vocab_size\": 100}",
                 AUGUR_E_FORMAT, "hidden_size 60 is not a multiple of num_attention_heads 8");
    expect_error(state,
                 "{\"model_type\": \"llama\", \"hidden_size\": 36, \"intermediate_size\": 128,"
                 " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 100}",
                 AUGUR_E_FORMAT, "head_dim 9 must be even");
}

static void test_missing_file(void **state)
{
    (void)state;
    model_config c;
    augur_error err = {0};
    test_expect_status(model_config_load_hf(&c, "/nonexistent/config.json", &err), &err, AUGUR_E_INPUT,
                       "/nonexistent/config.json", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_llama3_gqa_scaling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qwen2_bias, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_llama_attention_bias, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transformers5_rope_parameters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsupported_rope_scaling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsupported_model_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_and_bad_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inconsistent_heads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
