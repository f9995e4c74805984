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
#include <unistd.h>

#include "test_util.h"

void test_fill_random(float *x, size_t n, uint64_t seed, float scale)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = scale * (float)(((s >> 11) * 0x1.0p-53) * 2.0 - 1.0);
    }
}

double test_max_rel_err(const float *a, const float *b, size_t n, double floor)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / fmax(fabs((double)b[i]), floor);
        if (isnan(d))
            return INFINITY;
        if (d > worst)
            worst = d;
    }
    return worst;
}

char *test_tmpdir(void)
{
    char tmpl[] = "/tmp/augur-test-XXXXXX";
    if (!mkdtemp(tmpl))
        return NULL;
    return strdup(tmpl);
}

int test_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

int test_setup_tmpdir(void **state)
{
    *state = test_tmpdir();
    return *state ? 0 : -1;
}

int test_teardown_tmpdir(void **state)
{
    nftw(*state, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(*state);
    return 0;
}

void test_write_hf_config(const char *dir, const test_hf_shape *s)
{
    json_t *cfg =
        json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:i, s:i}", "architectures",
                  "LlamaForCausalLM", "model_type", s->model_type, "hidden_size", s->dim, "intermediate_size",
                  s->hidden, "num_hidden_layers", s->layers, "num_attention_heads", s->heads, "num_key_value_heads",
                  s->kv_heads, "vocab_size", s->vocab, "max_position_embeddings", 64, "rms_norm_eps", 1e-5,
                  "rope_theta", 10000.0, "tie_word_embeddings", s->tie, "bos_token_id", 1, "eos_token_id", 2);
    assert_non_null(cfg);
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    assert_int_equal(json_dump_file(cfg, path, JSON_INDENT(2)), 0);
    json_decref(cfg);
}

const char *test_shared_dir(void)
{
    const char *dir = getenv("AUGUR_SHARED_DIR");
    return dir && *dir ? dir : AUGUR_SHARED_DIR;
}

const char *test_need_fixture(char *buf, size_t size, const char *relative)
{
    int n = snprintf(buf, size, "%s/%s", test_shared_dir(), relative);
    assert_true(n > 0 && (size_t)n < size);
    if (access(buf, R_OK) == 0)
        return buf;
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0)
        fail_msg("fixture %s not found (CI=true: a missing fixture fails; set AUGUR_SHARED_DIR)", buf);
    print_message("skipping: fixture %s not found\n", buf);
    skip();
    return NULL; /* not reached: skip() leaves the test */
}

void test_expect_status(augur_status got, const augur_error *err, augur_status want, const char *needle1,
                        const char *needle2)
{
    if (got != want || !strstr(err->message, needle1) || (needle2 && !strstr(err->message, needle2)))
        print_error("status %d, message: %s\n", got, err->message);
    assert_int_equal(got, want);
    assert_non_null(strstr(err->message, needle1));
    if (needle2)
        assert_non_null(strstr(err->message, needle2));
}

void test_expect_ok(augur_status got, const augur_error *err, const char *what)
{
    if (got != AUGUR_OK)
        print_error("%s: %s\n", what, err->message);
    assert_int_equal(got, AUGUR_OK);
}

void test_load_ok(model *m, const char *path, const model_load_opts *opts)
{
    augur_error err = {0};
    test_expect_ok(model_load(m, path, opts, &err), &err, "model_load");
}

test_tp_share test_expect_tp_share(const model *m, int heads, int kv_heads, int hidden, int vocab, int T, int r)
{
    test_tp_share w = {.heads = heads / T, .head_start = r * (heads / T)};
    if (T <= kv_heads) {
        w.kv_heads = kv_heads / T;
        w.kv_head_start = r * w.kv_heads;
    } else {
        w.kv_heads = 1;
        w.kv_head_start = w.head_start / (heads / kv_heads);
    }
    tp_split(hidden, T, r, &w.hidden_start, &w.hidden);
    tp_split(vocab, T, r, &w.vocab_start, &w.vocab);
    assert_int_equal(m->n_heads_local, w.heads);
    assert_int_equal(m->head_start, w.head_start);
    assert_int_equal(m->n_kv_heads_local, w.kv_heads);
    assert_int_equal(m->kv_head_start, w.kv_head_start);
    assert_int_equal(m->hidden_start, w.hidden_start);
    assert_int_equal(m->hidden_local, w.hidden);
    assert_int_equal(m->vocab_start, w.vocab_start);
    assert_int_equal(m->vocab_local, w.vocab);
    return w;
}

unsigned char *test_llama2c_unshared(size_t *bytes, int64_t *floats)
{
    const int32_t D = TEST_L2C_DIM, H = 12, L = TEST_L2C_LAYERS, NH = 2, NKV = 1, V = TEST_L2C_VOCAB, S = 4, HD = 4,
                  KV = TEST_L2C_KV_DIM;
    /* embedding, attention norms, wq, wk + wv, wo, FFN norms, w1 + w2 + w3, final norm,
     * the legacy RoPE tables (S x HD), classifier */
    *floats =
        (int64_t)V * D + L * D + L * D * D + 2 * L * KV * D + L * D * D + L * D + 3 * L * H * D + D + S * HD + V * D;
    *bytes = 28 + (size_t)*floats * 4;
    unsigned char *buf = malloc(*bytes);
    assert_non_null(buf);
    const int32_t header[7] = {D, H, L, NH, NKV, -V, S};
    memcpy(buf, header, sizeof header);
    for (int64_t i = 0; i < *floats; i++) {
        float f = (float)i;
        memcpy(buf + 28 + 4 * i, &f, 4);
    }
    return buf;
}
