/* Model loading: tiny random Hugging Face directories (single file and sharded, mixed
 * dtypes), the errors a broken directory gives, tensor-parallel slices checked element
 * by element against the full matrices, max_layers, and llama2.c checkpoints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/model/model.h"
#include "runtime/model/safetensors.h"
#include "runtime/model/safetensors_write.h"
#include "test_util.h"

#define STORIES "models/stories260K/stories260K.bin" /* a shared fixture */

/* ---- temporary directories ---- */


/* ---- a tiny random Hugging Face model ---- */

typedef struct {
    const char *model_type;
    int dim, hidden, layers, heads, kv_heads, vocab;
    bool tie, lm_head_anyway, sharded;
    const char *omit;     /* a tensor left out */
    const char *extra;    /* an unexpected tensor added */
    const char *misshape; /* a tensor written with one row too many */
} tiny_spec;

/* head_dim 4; hidden 22 and vocab 30 do not split evenly over 4 ranks, on purpose. */
static tiny_spec base_spec(void)
{
    return (tiny_spec){.model_type = "llama", .dim = 16, .hidden = 22, .layers = 2, .heads = 4, .kv_heads = 2,
                       .vocab = 30};
}

static int head_dim(const tiny_spec *s)
{
    return s->dim / s->heads;
}

typedef struct {
    char name[96];
    int64_t rows, cols; /* cols = 0: a 1-D tensor of rows elements */
} tensor_desc;

static int list_tensors(const tiny_spec *s, tensor_desc *out)
{
    int n = 0, hd = head_dim(s);
    int64_t q = (int64_t)s->heads * hd, kv = (int64_t)s->kv_heads * hd;
#define T(r, c, ...)                                                                                                 \
    do {                                                                                                             \
        snprintf(out[n].name, sizeof out[n].name, __VA_ARGS__);                                                      \
        out[n].rows = (r);                                                                                           \
        out[n].cols = (c);                                                                                           \
        n++;                                                                                                         \
    } while (0)
    T(s->vocab, s->dim, "model.embed_tokens.weight");
    for (int l = 0; l < s->layers; l++) {
        T(s->dim, 0, "model.layers.%d.input_layernorm.weight", l);
        T(q, s->dim, "model.layers.%d.self_attn.q_proj.weight", l);
        T(kv, s->dim, "model.layers.%d.self_attn.k_proj.weight", l);
        T(kv, s->dim, "model.layers.%d.self_attn.v_proj.weight", l);
        if (!strcmp(s->model_type, "qwen2")) {
            T(q, 0, "model.layers.%d.self_attn.q_proj.bias", l);
            T(kv, 0, "model.layers.%d.self_attn.k_proj.bias", l);
            T(kv, 0, "model.layers.%d.self_attn.v_proj.bias", l);
        }
        T(s->dim, q, "model.layers.%d.self_attn.o_proj.weight", l);
        T(hd / 2, 0, "model.layers.%d.self_attn.rotary_emb.inv_freq", l); /* old checkpoints carry it */
        T(s->dim, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        T(s->hidden, s->dim, "model.layers.%d.mlp.gate_proj.weight", l);
        T(s->hidden, s->dim, "model.layers.%d.mlp.up_proj.weight", l);
        T(s->dim, s->hidden, "model.layers.%d.mlp.down_proj.weight", l);
    }
    T(s->dim, 0, "model.norm.weight");
    if (!s->tie || s->lm_head_anyway)
        T(s->vocab, s->dim, "lm_head.weight");
    if (s->extra)
        T(s->dim, s->dim, "%s", s->extra);
#undef T
    return n;
}

static uint64_t name_hash(const char *name)
{
    uint64_t h = 1469598103934665603ull;
    for (; *name; name++)
        h = (h ^ (unsigned char)*name) * 1099511628211ull;
    return h;
}

/* A tensor's deterministic values, already rounded to the dtype it is stored in;
 * each name gets its own values and one of the three dtypes. */
static float *ref_values(const char *name, int64_t n, augur_dtype *dtype)
{
    uint64_t h = name_hash(name);
    augur_dtype dt = (augur_dtype)(h % 3);
    float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
    test_fill_random(x, (size_t)n, h, 1.0f);
    for (int64_t i = 0; i < n; i++) {
        if (dt == AUGUR_BF16)
            x[i] = augur_bf16_to_f32(augur_f32_to_bf16(x[i]));
        else if (dt == AUGUR_F16)
            x[i] = augur_f16_to_f32(augur_f32_to_f16(x[i]));
    }
    if (dtype)
        *dtype = dt;
    return x;
}

static void add_tensor(safetensors_writer *w, const tensor_desc *t, bool misshape)
{
    int64_t rows = t->rows + (misshape ? 1 : 0);
    int64_t n = t->cols ? rows * t->cols : rows;
    augur_dtype dt;
    float *x = ref_values(t->name, n, &dt);
    void *buf = x;
    uint16_t *half = NULL;
    if (dt != AUGUR_F32) {
        half = malloc((size_t)n * sizeof *half);
        for (int64_t i = 0; i < n; i++)
            half[i] = dt == AUGUR_BF16 ? augur_f32_to_bf16(x[i]) : augur_f32_to_f16(x[i]);
        buf = half;
    }
    int64_t shape[2] = {rows, t->cols};
    augur_error err = {0};
    assert_int_equal(safetensors_writer_add(w, t->name, dt, t->cols ? 2 : 1, shape, buf, &err), AUGUR_OK);
    free(half);
    free(x);
}

static void write_config(const char *dir, const tiny_spec *s)
{
    test_write_hf_config(dir, &(test_hf_shape){.model_type = s->model_type, .dim = s->dim, .hidden = s->hidden,
                                               .layers = s->layers, .heads = s->heads, .kv_heads = s->kv_heads,
                                               .vocab = s->vocab, .tie = s->tie});
}

/* Writes config.json and the weights: model.safetensors, or two shards (the embedding
 * and layer 0 in the first) with model.safetensors.index.json. */
static void write_tiny_model(const char *dir, const tiny_spec *s)
{
    const char *old[] = {"model.safetensors", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
                         "model-00002-of-00002.safetensors"};
    char path[512];
    for (int i = 0; i < 4; i++) { /* a previous model in the same directory */
        snprintf(path, sizeof path, "%s/%s", dir, old[i]);
        unlink(path);
    }
    write_config(dir, s);
    tensor_desc *ts = calloc(256, sizeof *ts);
    int n = list_tensors(s, ts);
    safetensors_writer *w[2] = {safetensors_writer_new(), safetensors_writer_new()};
    const char *files[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    json_t *map = json_object();
    for (int i = 0; i < n; i++) {
        if (s->omit && !strcmp(ts[i].name, s->omit))
            continue;
        int k = s->sharded && !(i == 0 || !strncmp(ts[i].name, "model.layers.0.", 15));
        add_tensor(w[k], &ts[i], s->misshape && !strcmp(ts[i].name, s->misshape));
        json_object_set_new(map, ts[i].name, json_string(files[k]));
    }
    augur_error err = {0};
    if (s->sharded) {
        for (int k = 0; k < 2; k++) {
            snprintf(path, sizeof path, "%s/%s", dir, files[k]);
            assert_int_equal(safetensors_writer_save(w[k], path, &err), AUGUR_OK);
        }
        json_t *index = json_pack("{s:{s:i}, s:o}", "metadata", "total_size", 0, "weight_map", map);
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        assert_int_equal(json_dump_file(index, path, JSON_INDENT(2)), 0);
        json_decref(index);
    } else {
        json_decref(map);
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        assert_int_equal(safetensors_writer_save(w[0], path, &err), AUGUR_OK);
    }
    safetensors_writer_free(w[0]);
    safetensors_writer_free(w[1]);
    free(ts);
}

/* ---- checking views against the reference values ---- */

/* v must be rows x cols and equal the [row0.., col0..] block of the full_rows x full_cols
 * tensor name. */
static void expect_block(const tensor_view *v, const char *name, int64_t full_rows, int64_t full_cols, int64_t row0,
                         int64_t col0, int64_t rows, int64_t cols)
{
    assert_int_equal(v->rows, rows);
    assert_int_equal(v->cols, cols);
    float *ref = ref_values(name, full_rows * full_cols, NULL);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            if (tensor_get_f32(v, r, c) != ref[(row0 + r) * full_cols + col0 + c]) {
                print_error("%s: element (%lld, %lld) of the slice differs\n", name, (long long)r, (long long)c);
                fail();
            }
    free(ref);
}

static void expect_vector(const float *v, const char *name, int64_t full, int64_t start, int64_t n)
{
    float *ref = ref_values(name, full, NULL);
    assert_memory_equal(v, ref + start, (size_t)n * sizeof *v);
    free(ref);
}

/* The slice layout DESIGN §5 specifies, computed here independently of the loader. */
static void check_rank(const model *m, const tiny_spec *s, int T, int r)
{
    int hd = head_dim(s), H = s->heads, KV = s->kv_heads, D = s->dim;
    const test_tp_share w = test_expect_tp_share(m, H, KV, s->hidden, s->vocab, T, r);
    const int nh = w.heads, hs = w.head_start, nkv = w.kv_heads, kvs = w.kv_head_start, f0 = w.hidden_start,
              fn = w.hidden, v0 = w.vocab_start, vn = w.vocab;
    char name[128];
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const layer_weights *lw = &m->w.layers[l];
#define N(suffix) (snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix), name)
        expect_vector(lw->attn_norm, N("input_layernorm.weight"), D, 0, D);
        expect_vector(lw->ffn_norm, N("post_attention_layernorm.weight"), D, 0, D);
        expect_block(&lw->wq, N("self_attn.q_proj.weight"), H * hd, D, hs * hd, 0, nh * hd, D);
        expect_block(&lw->wk, N("self_attn.k_proj.weight"), KV * hd, D, kvs * hd, 0, nkv * hd, D);
        expect_block(&lw->wv, N("self_attn.v_proj.weight"), KV * hd, D, kvs * hd, 0, nkv * hd, D);
        expect_block(&lw->wo, N("self_attn.o_proj.weight"), D, H * hd, 0, hs * hd, D, nh * hd);
        assert_int_equal(lw->wo.row_stride, H * hd); /* a column slice, in place */
        expect_block(&lw->w_gate, N("mlp.gate_proj.weight"), s->hidden, D, f0, 0, fn, D);
        expect_block(&lw->w_up, N("mlp.up_proj.weight"), s->hidden, D, f0, 0, fn, D);
        expect_block(&lw->w_down, N("mlp.down_proj.weight"), D, s->hidden, 0, f0, D, fn);
        assert_int_equal(lw->w_down.row_stride, s->hidden);
        if (!strcmp(s->model_type, "qwen2")) {
            expect_vector(lw->bq, N("self_attn.q_proj.bias"), H * hd, hs * hd, nh * hd);
            expect_vector(lw->bk, N("self_attn.k_proj.bias"), KV * hd, kvs * hd, nkv * hd);
            expect_vector(lw->bv, N("self_attn.v_proj.bias"), KV * hd, kvs * hd, nkv * hd);
        } else {
            assert_null(lw->bq);
            assert_null(lw->bk);
            assert_null(lw->bv);
        }
#undef N
    }
    expect_block(&m->w.tok_embedding, "model.embed_tokens.weight", s->vocab, D, 0, 0, s->vocab, D);
    expect_vector(m->w.final_norm, "model.norm.weight", D, 0, D);
    if (s->tie) {
        expect_block(&m->w.lm_head, "model.embed_tokens.weight", s->vocab, D, v0, 0, vn, D);
        assert_ptr_equal(m->w.lm_head.data,
                         (const char *)m->w.tok_embedding.data +
                             (size_t)v0 * D * augur_dtype_size(m->w.tok_embedding.dtype));
    } else {
        expect_block(&m->w.lm_head, "lm_head.weight", s->vocab, D, v0, 0, vn, D);
    }
}

static void expect_load_error(const char *path, const model_load_opts *opts, augur_status code, const char *needle1,
                              const char *needle2)
{
    model m;
    augur_error err = {0};
    test_expect_status(model_load(&m, path, opts, &err), &err, code, needle1, needle2);
    assert_null(m.w.layers); /* a failed load leaves nothing to free */
}

/* ---- Hugging Face directories ---- */

static void test_load_single_file(void **state)
{
    tiny_spec s = base_spec();
    write_tiny_model(*state, &s);
    model m;
    test_load_ok(&m, *state, NULL);
    assert_string_equal(m.cfg.model_type, "llama");
    assert_int_equal(m.cfg.dim, 16);
    assert_int_equal(m.cfg.hidden_dim, 22);
    assert_int_equal(m.cfg.n_layers, 2);
    assert_int_equal(m.cfg.n_heads, 4);
    assert_int_equal(m.cfg.n_kv_heads, 2);
    assert_int_equal(m.cfg.head_dim, 4);
    assert_int_equal(m.cfg.vocab_size, 30);
    assert_int_equal(m.cfg.rope_pairs, ROPE_PAIRS_HALF);
    assert_int_equal(m.n_shards, 1);
    assert_null(m.llama2c);
    assert_string_equal(m.source, *state);
    check_rank(&m, &s, 1, 0);
    model_free(&m);
}

static void test_load_sharded(void **state)
{
    tiny_spec s = base_spec();
    s.sharded = true;
    write_tiny_model(*state, &s);
    model m;
    test_load_ok(&m, *state, NULL);
    assert_int_equal(m.n_shards, 2);
    check_rank(&m, &s, 1, 0);
    model_free(&m);
}

static void test_tied_embeddings(void **state)
{
    tiny_spec s = base_spec();
    s.tie = true;
    write_tiny_model(*state, &s);
    model m;
    test_load_ok(&m, *state, NULL);
    assert_true(m.cfg.tie_embeddings);
    assert_ptr_equal(m.w.lm_head.data, m.w.tok_embedding.data);
    check_rank(&m, &s, 1, 0);
    model_free(&m);
    /* some tied checkpoints store lm_head.weight anyway: accepted, the embedding is used */
    s.lm_head_anyway = true;
    write_tiny_model(*state, &s);
    test_load_ok(&m, *state, NULL);
    assert_ptr_equal(m.w.lm_head.data, m.w.tok_embedding.data);
    model_free(&m);
}

static void test_qwen2_biases_tp(void **state)
{
    tiny_spec s = base_spec();
    s.model_type = "qwen2";
    s.sharded = true;
    write_tiny_model(*state, &s);
    for (int r = 0; r < 2; r++) {
        model m;
        test_load_ok(&m, *state, &(model_load_opts){.tp_rank = r, .tp_size = 2});
        assert_true(m.cfg.attn_bias);
        check_rank(&m, &s, 2, r);
        model_free(&m);
    }
}

static void test_wrong_shape(void **state)
{
    tiny_spec s = base_spec();
    s.misshape = "model.layers.1.self_attn.k_proj.weight";
    write_tiny_model(*state, &s);
    expect_load_error(*state, NULL, AUGUR_E_FORMAT, "model.layers.1.self_attn.k_proj.weight",
                      "has shape [9, 16], expected [8, 16]");
    expect_load_error(*state, NULL, AUGUR_E_FORMAT, "model.safetensors", NULL);
}

static void test_missing_tensor(void **state)
{
    tiny_spec s = base_spec();
    s.omit = "model.layers.1.mlp.up_proj.weight";
    s.sharded = true;
    write_tiny_model(*state, &s);
    expect_load_error(*state, NULL, AUGUR_E_FORMAT, "model.layers.1.mlp.up_proj.weight", "missing");
    s = base_spec();
    s.omit = "lm_head.weight"; /* untied: the head is required */
    write_tiny_model(*state, &s);
    expect_load_error(*state, NULL, AUGUR_E_FORMAT, "lm_head.weight", "missing");
}

static void test_extra_tensor(void **state)
{
    tiny_spec s = base_spec();
    s.extra = "model.layers.0.mlp.extra_proj.weight";
    write_tiny_model(*state, &s);
    expect_load_error(*state, NULL, AUGUR_E_FORMAT, "unexpected tensor model.layers.0.mlp.extra_proj.weight",
                      "model.safetensors");
    /* biases on a model whose config has none are unexpected too */
    s = base_spec();
    s.extra = "model.layers.1.self_attn.q_proj.bias";
    write_tiny_model(*state, &s);
    expect_load_error(*state, NULL, AUGUR_E_FORMAT, "model.layers.1.self_attn.q_proj.bias", "unexpected");
}

static void test_not_a_model_directory(void **state)
{
    char msg[600];
    snprintf(msg, sizeof msg, "%s: no config.json (not a Hugging Face model directory)", (const char *)*state);
    expect_load_error(*state, NULL, AUGUR_E_INPUT, msg, NULL);
    tiny_spec s = base_spec();
    write_config(*state, &s);
    expect_load_error(*state, NULL, AUGUR_E_INPUT, *state, "no model.safetensors");
    expect_load_error("/nonexistent/model", NULL, AUGUR_E_INPUT, "/nonexistent/model", NULL);
}

static void test_tp_slices(void **state)
{
    tiny_spec s = base_spec();
    write_tiny_model(*state, &s);
    const int sizes[] = {2, 4};
    for (int i = 0; i < 2; i++) {
        int T = sizes[i];
        int vocab_total = 0;
        for (int r = 0; r < T; r++) {
            model m;
            test_load_ok(&m, *state, &(model_load_opts){.tp_rank = r, .tp_size = T});
            check_rank(&m, &s, T, r);
            if (T == 4) { /* 4 ranks, 2 KV heads: each holds the one its query head uses */
                assert_int_equal(m.n_kv_heads_local, 1);
                assert_int_equal(m.kv_head_start, r / 2);
            }
            vocab_total += m.vocab_local;
            model_free(&m);
        }
        assert_int_equal(vocab_total, s.vocab);
    }
}

static void test_tp_layout_errors(void **state)
{
    tiny_spec s = base_spec();
    write_tiny_model(*state, &s);
    expect_load_error(*state, &(model_load_opts){.tp_rank = 0, .tp_size = 3}, AUGUR_E_INPUT, "num_attention_heads 4",
                      *state);
    augur_error err = {0};
    model_config c = {.n_heads = 8, .n_kv_heads = 4, .hidden_dim = 64, .vocab_size = 100};
    assert_int_equal(tp_check_layout(&c, 2, &err), AUGUR_OK);
    assert_int_equal(tp_check_layout(&c, 4, &err), AUGUR_OK);
    assert_int_equal(tp_check_layout(&c, 8, &err), AUGUR_OK); /* KV heads replicated */
    c = (model_config){.n_heads = 12, .n_kv_heads = 4, .hidden_dim = 64, .vocab_size = 100};
    assert_int_equal(tp_check_layout(&c, 6, &err), AUGUR_E_INPUT); /* 6 > 4 and not a multiple */
    assert_non_null(strstr(err.message, "num_key_value_heads 4"));
    c = (model_config){.n_heads = 12, .n_kv_heads = 6, .hidden_dim = 64, .vocab_size = 100};
    assert_int_equal(tp_check_layout(&c, 4, &err), AUGUR_E_INPUT); /* 4 <= 6 but does not divide it */
    assert_int_equal(tp_check_layout(&c, 3, &err), AUGUR_OK);
    assert_int_equal(tp_check_layout(&c, 0, &err), AUGUR_E_INPUT);
}

static void test_tp_split(void **state)
{
    (void)state;
    const int want[4][2] = {{0, 3}, {3, 3}, {6, 2}, {8, 2}}; /* the first n % size ranks get one extra */
    for (int r = 0; r < 4; r++) {
        int start, count;
        tp_split(10, 4, r, &start, &count);
        assert_int_equal(start, want[r][0]);
        assert_int_equal(count, want[r][1]);
    }
    int start, count;
    tp_split(7, 1, 0, &start, &count);
    assert_int_equal(start, 0);
    assert_int_equal(count, 7);
}

static void test_max_layers(void **state)
{
    tiny_spec s = base_spec();
    s.layers = 3;
    write_tiny_model(*state, &s);
    model m;
    test_load_ok(&m, *state, &(model_load_opts){.tp_rank = 0, .tp_size = 1, .max_layers = 1});
    assert_int_equal(m.cfg.n_layers, 1);
    check_rank(&m, &s, 1, 0); /* layer 0 as in the full model */
    model_free(&m);
    test_load_ok(&m, *state, &(model_load_opts){.tp_rank = 1, .tp_size = 2, .max_layers = 2});
    assert_int_equal(m.cfg.n_layers, 2);
    check_rank(&m, &s, 2, 1);
    model_free(&m);
    expect_load_error(*state, &(model_load_opts){.tp_rank = 0, .tp_size = 1, .max_layers = 4}, AUGUR_E_INPUT,
                      "4 draft layers requested, the model has 3", NULL);
}

/* ---- llama2.c checkpoints ---- */

static float *read_floats(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *buf = malloc((size_t)size);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size / sizeof(float);
    return buf;
}

static void test_llama2c_stories(void **state)
{
    (void)state;
    char stories[512];
    test_need_fixture(stories, sizeof stories, STORIES);
    size_t n_floats;
    float *file = read_floats(stories, &n_floats);
    model m;
    test_load_ok(&m, stories, NULL);
    const model_config *c = &m.cfg;
    assert_string_equal(c->model_type, "llama2c");
    assert_int_equal(c->dim, 64);
    assert_int_equal(c->hidden_dim, 172);
    assert_int_equal(c->n_layers, 5);
    assert_int_equal(c->n_heads, 8);
    assert_int_equal(c->n_kv_heads, 4);
    assert_int_equal(c->head_dim, 8);
    assert_int_equal(c->vocab_size, 512);
    assert_int_equal(c->max_seq_len, 512);
    assert_int_equal(c->rope_pairs, ROPE_PAIRS_ADJACENT);
    assert_true(c->tie_embeddings);
    assert_int_equal(c->bos_id, 1);
    assert_true(model_config_is_eos(c, 2));
    assert_float_equal(c->rms_norm_eps, 1e-5f, 0);
    assert_float_equal(c->rope_theta, 10000.0f, 0);
    assert_non_null(m.llama2c);
    assert_int_equal(m.n_shards, 0);
    assert_int_equal(m.w.tok_embedding.dtype, AUGUR_F32);
    model_free(&m);

    /* DESIGN §7's layout, in floats after the 7-int header */
    const int64_t D = 64, H = 172, L = 5, V = 512, KV = 32;
    const float *w = file + 7;
    const float *emb = w, *rms_att = emb + V * D, *wq = rms_att + L * D, *wk = wq + L * D * D,
                *wv = wk + L * KV * D, *wo = wv + L * KV * D, *rms_ffn = wo + L * D * D, *w1 = rms_ffn + L * D,
                *w2 = w1 + L * H * D, *w3 = w2 + L * D * H, *rms_final = w3 + L * H * D;
    for (int r = 0; r < 2; r++) {
        test_load_ok(&m, stories, &(model_load_opts){.tp_rank = r, .tp_size = 2});
        assert_int_equal(m.head_start, 4 * r);
        assert_int_equal(m.kv_head_start, 2 * r);
        assert_int_equal(m.hidden_start, 86 * r);
        for (int l = 0; l < L; l++) {
            const layer_weights *lw = &m.w.layers[l];
            assert_memory_equal(lw->attn_norm, rms_att + l * D, D * sizeof(float));
            assert_memory_equal(lw->ffn_norm, rms_ffn + l * D, D * sizeof(float));
            for (int64_t i = 0; i < 32; i++)
                for (int64_t j = 0; j < D; j++) {
                    assert_true(tensor_get_f32(&lw->wq, i, j) == wq[l * D * D + (32 * r + i) * D + j]);
                    if (i < 16) {
                        assert_true(tensor_get_f32(&lw->wk, i, j) == wk[l * KV * D + (16 * r + i) * D + j]);
                        assert_true(tensor_get_f32(&lw->wv, i, j) == wv[l * KV * D + (16 * r + i) * D + j]);
                    }
                    assert_true(tensor_get_f32(&lw->wo, j, i) == wo[l * D * D + j * D + 32 * r + i]);
                }
            for (int64_t i = 0; i < 86; i++)
                for (int64_t j = 0; j < D; j++) {
                    assert_true(tensor_get_f32(&lw->w_gate, i, j) == w1[l * H * D + (86 * r + i) * D + j]);
                    assert_true(tensor_get_f32(&lw->w_up, i, j) == w3[l * H * D + (86 * r + i) * D + j]);
                    assert_true(tensor_get_f32(&lw->w_down, j, i) == w2[l * D * H + j * H + 86 * r + i]);
                }
        }
        assert_memory_equal(m.w.final_norm, rms_final, D * sizeof(float));
        assert_true(tensor_get_f32(&m.w.lm_head, 5, 7) == emb[(256 * r + 5) * D + 7]);
        assert_ptr_equal(m.w.tok_embedding.data, (const char *)m.llama2c->base + 28);
        model_free(&m);
    }
    free(file);
}

static void test_llama2c_truncated(void **state)
{
    char stories[512];
    test_need_fixture(stories, sizeof stories, STORIES);
    size_t n_floats;
    float *file = read_floats(stories, &n_floats);
    char path[512], msg[256];
    snprintf(path, sizeof path, "%s/truncated.bin", (const char *)*state);
    size_t full = n_floats * sizeof(float);
    assert_int_equal(test_write_file(path, file, full - 1000), 0);
    snprintf(msg, sizeof msg, "%zu bytes, but its header", full - 1000);
    expect_load_error(path, NULL, AUGUR_E_FORMAT, msg, "truncated");
    snprintf(msg, sizeof msg, "implies %zu", full);
    expect_load_error(path, NULL, AUGUR_E_FORMAT, path, msg);
    assert_int_equal(test_write_file(path, file, 10), 0);
    expect_load_error(path, NULL, AUGUR_E_FORMAT, path, "too short");
    free(file);
}

/* A synthetic checkpoint with an unshared classifier (negative vocab_size) whose floats
 * hold their own index. */
static void test_llama2c_unshared_classifier(void **state)
{
    const int64_t D = TEST_L2C_DIM, L = TEST_L2C_LAYERS, V = TEST_L2C_VOCAB, KV = TEST_L2C_KV_DIM;
    size_t bytes;
    int64_t floats;
    unsigned char *buf = test_llama2c_unshared(&bytes, &floats);
    char path[512];
    snprintf(path, sizeof path, "%s/unshared.bin", (const char *)*state);
    assert_int_equal(test_write_file(path, buf, bytes), 0);
    model m;
    test_load_ok(&m, path, NULL);
    assert_false(m.cfg.tie_embeddings);
    assert_int_equal(m.cfg.vocab_size, V);
    assert_int_equal(m.cfg.n_kv_heads, 1);
    int64_t classifier = floats - (int64_t)V * D;
    assert_true(tensor_get_f32(&m.w.lm_head, 0, 0) == (float)classifier);
    assert_true(tensor_get_f32(&m.w.lm_head, 9, 7) == (float)(classifier + 9 * D + 7));
    int64_t wk1 = (int64_t)V * D + L * D + L * D * D + KV * D; /* layer 1's wk */
    assert_true(tensor_get_f32(&m.w.layers[1].wk, 1, 2) == (float)(wk1 + D + 2));
    model_free(&m);
    /* TP 2 over one KV head: both ranks hold it */
    for (int r = 0; r < 2; r++) {
        test_load_ok(&m, path, &(model_load_opts){.tp_rank = r, .tp_size = 2});
        assert_int_equal(m.kv_head_start, 0);
        assert_int_equal(m.n_kv_heads_local, 1);
        assert_true(tensor_get_f32(&m.w.lm_head, 0, 0) == (float)(classifier + 5 * r * D));
        model_free(&m);
    }
    /* one float too many is as wrong as one too few */
    unsigned char *longer = calloc(1, bytes + 4);
    memcpy(longer, buf, bytes);
    assert_int_equal(test_write_file(path, longer, bytes + 4), 0);
    expect_load_error(path, NULL, AUGUR_E_FORMAT, "unshared", "implies");
    free(longer);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        test_in_tmpdir(test_load_single_file),
        test_in_tmpdir(test_load_sharded),
        test_in_tmpdir(test_tied_embeddings),
        test_in_tmpdir(test_qwen2_biases_tp),
        test_in_tmpdir(test_wrong_shape),
        test_in_tmpdir(test_missing_tensor),
        test_in_tmpdir(test_extra_tensor),
        test_in_tmpdir(test_not_a_model_directory),
        test_in_tmpdir(test_tp_slices),
        test_in_tmpdir(test_tp_layout_errors),
        cmocka_unit_test(test_tp_split),
        test_in_tmpdir(test_max_layers),
        cmocka_unit_test(test_llama2c_stories),
        test_in_tmpdir(test_llama2c_truncated),
        test_in_tmpdir(test_llama2c_unshared_classifier),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
