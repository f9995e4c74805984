/* llama2.c -> Hugging Face conversion: the written directory loads, every tensor equals
 * its source, q/k rows are permuted to the half-split RoPE layout, and attention scores
 * come out the same under each model's own RoPE convention. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/model/convert_llama2c.h"
#include "runtime/model/model.h"
#include "runtime/model/safetensors.h"
#include "test_util.h"

#define STORIES "models/stories260K/stories260K.bin" /* a shared fixture */

static void convert_ok(const char *bin, const char *out)
{
    augur_error err = {0};
    test_expect_ok(convert_llama2c_to_hf(bin, out, &err), &err, "convert");
}

static void expect_equal_views(const tensor_view *a, const tensor_view *b)
{
    assert_int_equal(a->rows, b->rows);
    assert_int_equal(a->cols, b->cols);
    for (int64_t r = 0; r < a->rows; r++)
        for (int64_t c = 0; c < a->cols; c++)
            assert_true(tensor_get_f32(a, r, c) == tensor_get_f32(b, r, c));
}

/* HF row j of each head must be llama2.c row 2j (j < hd/2) or 2(j - hd/2) + 1. */
static void expect_permuted(const tensor_view *hf, const tensor_view *l2c, int n_heads, int hd)
{
    assert_int_equal(hf->rows, (int64_t)n_heads * hd);
    assert_int_equal(hf->rows, l2c->rows);
    for (int h = 0; h < n_heads; h++)
        for (int j = 0; j < hd; j++) {
            int src = j < hd / 2 ? 2 * j : 2 * (j - hd / 2) + 1;
            for (int64_t c = 0; c < hf->cols; c++)
                assert_true(tensor_get_f32(hf, (int64_t)h * hd + j, c) == tensor_get_f32(l2c, (int64_t)h * hd + src, c));
        }
    /* the same statement as Hugging Face's permute(): view(heads, hd/2, 2, dim).transpose(1, 2) */
    for (int h = 0; h < n_heads; h++)
        for (int t = 0; t < 2; t++)
            for (int i = 0; i < hd / 2; i++)
                assert_true(tensor_get_f32(hf, (int64_t)h * hd + t * hd / 2 + i, 3) ==
                            tensor_get_f32(l2c, (int64_t)h * hd + 2 * i + t, 3));
}

static void expect_same_weights(const model *hf, const model *l2c)
{
    const model_config *c = &l2c->cfg;
    int64_t D = c->dim;
    expect_equal_views(&hf->w.tok_embedding, &l2c->w.tok_embedding);
    expect_equal_views(&hf->w.lm_head, &l2c->w.lm_head);
    assert_memory_equal(hf->w.final_norm, l2c->w.final_norm, (size_t)D * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *a = &hf->w.layers[l], *b = &l2c->w.layers[l];
        assert_memory_equal(a->attn_norm, b->attn_norm, (size_t)D * sizeof(float));
        assert_memory_equal(a->ffn_norm, b->ffn_norm, (size_t)D * sizeof(float));
        expect_permuted(&a->wq, &b->wq, c->n_heads, c->head_dim);
        expect_permuted(&a->wk, &b->wk, c->n_kv_heads, c->head_dim);
        expect_equal_views(&a->wv, &b->wv);
        expect_equal_views(&a->wo, &b->wo);
        expect_equal_views(&a->w_gate, &b->w_gate);
        expect_equal_views(&a->w_up, &b->w_up);
        expect_equal_views(&a->w_down, &b->w_down);
    }
}

static void matvec(const tensor_view *w, const float *x, double *y)
{
    for (int64_t r = 0; r < w->rows; r++) {
        y[r] = 0;
        for (int64_t c = 0; c < w->cols; c++)
            y[r] += (double)tensor_get_f32(w, r, c) * x[c];
    }
}

/* Rotates each head of v at position pos, pairing elements as the model's convention says. */
static void rope(double *v, int n_heads, int hd, int pos, rope_pairing pairs)
{
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < hd / 2; i++) {
            double freq = pow(10000.0, -2.0 * i / hd), a = pos * freq;
            int p0 = pairs == ROPE_PAIRS_ADJACENT ? 2 * i : i, p1 = pairs == ROPE_PAIRS_ADJACENT ? 2 * i + 1 : i + hd / 2;
            double x0 = v[h * hd + p0], x1 = v[h * hd + p1];
            v[h * hd + p0] = x0 * cos(a) - x1 * sin(a);
            v[h * hd + p1] = x0 * sin(a) + x1 * cos(a);
        }
}

/* q.k per query head, with RoPE at positions pq and pk, using layer 0. */
static void attention_scores(const model *m, const float *x, int pq, int pk, double *scores)
{
    const model_config *c = &m->cfg;
    double *q = malloc((size_t)c->n_heads * c->head_dim * sizeof *q);
    double *k = malloc((size_t)c->n_kv_heads * c->head_dim * sizeof *k);
    matvec(&m->w.layers[0].wq, x, q);
    matvec(&m->w.layers[0].wk, x, k);
    rope(q, c->n_heads, c->head_dim, pq, c->rope_pairs);
    rope(k, c->n_kv_heads, c->head_dim, pk, c->rope_pairs);
    for (int h = 0; h < c->n_heads; h++) {
        int kh = h / (c->n_heads / c->n_kv_heads);
        scores[h] = 0;
        for (int i = 0; i < c->head_dim; i++)
            scores[h] += q[h * c->head_dim + i] * k[kh * c->head_dim + i];
    }
    free(q);
    free(k);
}

static void test_convert_stories(void **state)
{
    char stories[512];
    test_need_fixture(stories, sizeof stories, STORIES);
    char out[512], path[600];
    snprintf(out, sizeof out, "%s/stories-hf", (const char *)*state); /* created by the converter */
    convert_ok(stories, out);

    /* config.json says what transformers needs to load it as a LlamaForCausalLM */
    snprintf(path, sizeof path, "%s/config.json", out);
    json_error_t jerr;
    json_t *cfg = json_load_file(path, 0, &jerr);
    assert_non_null(cfg);
    assert_string_equal(json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0)),
                        "LlamaForCausalLM");
    assert_string_equal(json_string_value(json_object_get(cfg, "model_type")), "llama");
    assert_string_equal(json_string_value(json_object_get(cfg, "torch_dtype")), "float32");
    assert_string_equal(json_string_value(json_object_get(cfg, "hidden_act")), "silu");
    assert_int_equal(json_integer_value(json_object_get(cfg, "max_position_embeddings")), 512);
    assert_int_equal(json_integer_value(json_object_get(cfg, "num_key_value_heads")), 4);
    assert_int_equal(json_integer_value(json_object_get(cfg, "head_dim")), 8);
    assert_int_equal(json_integer_value(json_object_get(cfg, "bos_token_id")), 1);
    assert_int_equal(json_integer_value(json_object_get(cfg, "eos_token_id")), 2);
    assert_true(json_is_true(json_object_get(cfg, "tie_word_embeddings")));
    assert_true(json_is_false(json_object_get(cfg, "attention_bias")));
    assert_true(json_is_false(json_object_get(cfg, "mlp_bias")));
    assert_float_equal(json_number_value(json_object_get(cfg, "rms_norm_eps")), 1e-5, 1e-12);
    assert_float_equal(json_number_value(json_object_get(cfg, "rope_theta")), 10000.0, 0);
    json_decref(cfg);
    snprintf(path, sizeof path, "%s/tokenizer.json", out);
    assert_int_not_equal(access(path, F_OK), 0); /* the tokenizer is not converted */

    /* every tensor F32 under its Hugging Face name; tied, so no lm_head */
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    safetensors_file *sf = NULL;
    augur_error err = {0};
    assert_int_equal(safetensors_open(&sf, path, &err), AUGUR_OK);
    assert_int_equal(safetensors_count(sf), 1 + 9 * 5 + 1);
    for (int i = 0; i < safetensors_count(sf); i++)
        assert_int_equal(safetensors_entry_at(sf, i)->dtype, AUGUR_F32);
    assert_null(safetensors_find(sf, "lm_head.weight"));
    assert_non_null(safetensors_find(sf, "model.layers.4.mlp.down_proj.weight"));
    safetensors_close(sf);

    model hf, l2c;
    test_load_ok(&hf, out, NULL);
    test_load_ok(&l2c, stories, NULL);
    assert_string_equal(hf.cfg.model_type, "llama");
    assert_int_equal(hf.cfg.rope_pairs, ROPE_PAIRS_HALF);
    assert_int_equal(l2c.cfg.rope_pairs, ROPE_PAIRS_ADJACENT);
    assert_int_equal(hf.cfg.dim, l2c.cfg.dim);
    assert_int_equal(hf.cfg.hidden_dim, l2c.cfg.hidden_dim);
    assert_int_equal(hf.cfg.n_layers, l2c.cfg.n_layers);
    assert_int_equal(hf.cfg.n_heads, l2c.cfg.n_heads);
    assert_int_equal(hf.cfg.n_kv_heads, l2c.cfg.n_kv_heads);
    assert_int_equal(hf.cfg.head_dim, l2c.cfg.head_dim);
    assert_int_equal(hf.cfg.vocab_size, l2c.cfg.vocab_size);
    assert_int_equal(hf.cfg.max_seq_len, l2c.cfg.max_seq_len);
    assert_true(hf.cfg.tie_embeddings);
    assert_float_equal(hf.cfg.rms_norm_eps, l2c.cfg.rms_norm_eps, 0);
    assert_int_equal(hf.cfg.bos_id, 1);
    assert_true(model_config_is_eos(&hf.cfg, 2));
    expect_same_weights(&hf, &l2c);

    /* what the permutation is for: each model, with its own RoPE pairing, gives the
     * same attention scores */
    float x[64];
    double s_hf[8], s_l2c[8];
    test_fill_random(x, 64, 11, 1.0f);
    const int positions[][2] = {{0, 0}, {5, 3}, {137, 20}, {511, 510}};
    for (int p = 0; p < 4; p++) {
        attention_scores(&hf, x, positions[p][0], positions[p][1], s_hf);
        attention_scores(&l2c, x, positions[p][0], positions[p][1], s_l2c);
        for (int h = 0; h < 8; h++)
            assert_float_equal(s_hf[h], s_l2c[h], 1e-9 * (1 + fabs(s_l2c[h])));
    }
    model_free(&hf);
    model_free(&l2c);

    /* an output folder that cannot be made is named */
    test_expect_status(convert_llama2c_to_hf(stories, "/nonexistent/dir/out", &err), &err, AUGUR_E_IO,
                       "/nonexistent/dir/out", NULL);
}

/* A synthetic checkpoint with an unshared classifier: lm_head.weight must be written. */
static void test_convert_unshared(void **state)
{
    size_t bytes;
    int64_t floats;
    unsigned char *buf = test_llama2c_unshared(&bytes, &floats);
    float *vals = malloc((size_t)floats * sizeof *vals);
    test_fill_random(vals, (size_t)floats, 5, 1.0f);
    memcpy(buf + 28, vals, (size_t)floats * 4);
    free(vals);
    char bin[512], out[512], path[600];
    snprintf(bin, sizeof bin, "%s/unshared.bin", (const char *)*state);
    snprintf(out, sizeof out, "%s/hf", (const char *)*state);
    assert_int_equal(test_write_file(bin, buf, bytes), 0);
    free(buf);
    assert_int_equal(mkdir(out, 0755), 0); /* an existing output directory is fine */
    convert_ok(bin, out);
    snprintf(path, sizeof path, "%s/config.json", out);
    json_error_t jerr;
    json_t *cfg = json_load_file(path, 0, &jerr);
    assert_true(json_is_false(json_object_get(cfg, "tie_word_embeddings")));
    json_decref(cfg);
    model hf, l2c;
    test_load_ok(&hf, out, NULL);
    test_load_ok(&l2c, bin, NULL);
    assert_false(hf.cfg.tie_embeddings);
    assert_ptr_not_equal(hf.w.lm_head.data, hf.w.tok_embedding.data);
    expect_same_weights(&hf, &l2c);
    model_free(&hf);
    model_free(&l2c);
}

static void test_convert_errors(void **state)
{
    augur_error err = {0};
    char out[512];
    snprintf(out, sizeof out, "%s/out", (const char *)*state);
    test_expect_status(convert_llama2c_to_hf("/nonexistent/model.bin", out, &err), &err, AUGUR_E_INPUT,
                       "/nonexistent/model.bin", NULL);
    test_expect_status(convert_llama2c_to_hf(*state, out, &err), &err, AUGUR_E_INPUT, "directory", NULL);
    char bin[512];
    snprintf(bin, sizeof bin, "%s/short.bin", (const char *)*state);
    int32_t header[7] = {64, 172, 5, 8, 4, 512, 512};
    assert_int_equal(test_write_file(bin, header, sizeof header), 0);
    assert_int_equal(convert_llama2c_to_hf(bin, out, &err), AUGUR_E_FORMAT);
    assert_non_null(strstr(err.message, "truncated"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        test_in_tmpdir(test_convert_stories),
        test_in_tmpdir(test_convert_unshared),
        test_in_tmpdir(test_convert_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
