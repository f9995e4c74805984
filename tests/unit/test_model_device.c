/* Weights in a backend's memory (runtime/model_device.c, backend_fill_random):
 *   - fill_random on the CPU backend: every dtype, the published splitmix64 stream,
 *     ranges, determinism, thread-count invariance, slices via augur_fill_seed_at;
 *   - model_load_dummy: shapes and dtypes of every view, values and ranges, determinism,
 *     each rank's shard equal to its slice of the unsharded model (tp 2 and 4, KV heads
 *     replicated), max_layers, tied embeddings, qwen2 biases, errors;
 *   - model_weight_bytes against the bytes of the views model_load_dummy makes;
 *   - model_to_backend on the CPU backend (nothing moves), and on a copying host-memory
 *     backend standing in for a device: padded rows, a tied lm_head aliasing the copied
 *     embedding, the checkpoint released, every allocation returned by model_free, and a
 *     refused allocation at each step leaving the model as it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/fill_random.h"
#include "runtime/model/model.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/safetensors_write.h"
#include "test_util.h"

/* ------------------------------------------------------------------ helpers */

static augur_backend *cpu_backend(int threads)
{
    augur_backend *be = NULL;
    augur_error err = {0};
    assert_int_equal(backend_cpu_create(&be, threads, &err), AUGUR_OK);
    return be;
}

/* Element i of a buffer of dtype as fp32. */
static float elem(const void *buf, augur_dtype dt, int64_t i)
{
    const tensor_view v = {.data = buf, .dtype = dt, .rows = 1, .cols = i + 1, .row_stride = i + 1};
    return tensor_get_f32(&v, 0, i);
}

/* What fill_random must store for element i: the generator's value, rounded to dt. */
static void reference_fill(void *buf, augur_dtype dt, int64_t count, uint64_t seed, float scale, float offset)
{
    for (int64_t i = 0; i < count; i++) {
        const float v = augur_fill_value(seed, (uint64_t)i, scale, offset);
        if (dt == AUGUR_F32)
            ((float *)buf)[i] = v;
        else
            ((uint16_t *)buf)[i] = dt == AUGUR_BF16 ? augur_f32_to_bf16(v) : augur_f32_to_f16(v);
    }
}

/* ---------------------------------------------------------- fill_random (CPU) */

static void test_fill_random_cpu(void **state)
{
    (void)state;
    augur_backend *one = cpu_backend(1), *four = cpu_backend(4);
    augur_error err = {0};
    /* splitmix64's first output from state 0: the stream is the published generator */
    assert_true(augur_fill_bits(0, 0) == 0xe220a8397b1dcdafull);

    const int64_t n = 100003; /* odd, and above the size the CPU fill goes parallel at */
    const float scale = 0.5f, offset = 0.25f;
    const augur_dtype dts[] = {AUGUR_F32, AUGUR_F16, AUGUR_BF16};
    for (int d = 0; d < 3; d++) {
        const augur_dtype dt = dts[d];
        const size_t es = augur_dtype_size(dt);
        unsigned char *a = malloc((size_t)n * es), *b = malloc((size_t)n * es), *ref = malloc((size_t)n * es);
        assert_int_equal(backend_fill_random(one, a, dt, n, 42, scale, offset, &err), AUGUR_OK);
        reference_fill(ref, dt, n, 42, scale, offset);
        assert_memory_equal(a, ref, (size_t)n * es);
        /* same seed, other thread count: same bytes */
        assert_int_equal(backend_fill_random(four, b, dt, n, 42, scale, offset, &err), AUGUR_OK);
        assert_memory_equal(a, b, (size_t)n * es);
        /* a slice starting at element 1000 through the shifted seed */
        assert_int_equal(backend_fill_random(one, b, dt, n - 1000, augur_fill_seed_at(42, 1000), scale, offset, &err),
                         AUGUR_OK);
        assert_memory_equal(a + 1000 * es, b, (size_t)(n - 1000) * es);
        /* another seed: different values nearly everywhere (16-bit types collide more) */
        assert_int_equal(backend_fill_random(one, b, dt, n, 43, scale, offset, &err), AUGUR_OK);
        int64_t same = 0;
        for (int64_t i = 0; i < n; i++)
            same += !memcmp(a + i * es, b + i * es, es);
        assert_true(same < n / 50);
        /* range [offset - scale, offset + scale], all of it used, centred on offset */
        double sum = 0, lo = INFINITY, hi = -INFINITY;
        for (int64_t i = 0; i < n; i++) {
            const double v = elem(a, dt, i);
            assert_true(v >= offset - scale && v <= offset + scale);
            sum += v;
            lo = fmin(lo, v);
            hi = fmax(hi, v);
        }
        assert_true(lo < offset - 0.99 * scale && hi > offset + 0.99 * scale);
        assert_true(fabs(sum / (double)n - offset) < 0.01);
        free(a);
        free(b);
        free(ref);
    }
    /* scale 0: the offset exactly, as model_load_dummy's norms rely on */
    float ones[17];
    assert_int_equal(backend_fill_random(one, ones, AUGUR_F32, 17, 9, 0.0f, 1.0f, &err), AUGUR_OK);
    for (int i = 0; i < 17; i++)
        assert_true(ones[i] == 1.0f);
    /* nothing to fill */
    assert_int_equal(backend_fill_random(one, NULL, AUGUR_BF16, 0, 9, 1.0f, 0.0f, &err), AUGUR_OK);
    backend_destroy(one);
    backend_destroy(four);
}

/* ------------------------------------------------------------ tiny configs */

typedef test_hf_shape spec;

/* GQA, head_dim 4; hidden 22 and vocab 30 split unevenly over 4 ranks on purpose. */
static spec llama_gqa(void)
{
    return (spec){.model_type = "llama", .dim = 16, .hidden = 22, .layers = 3, .heads = 4, .kv_heads = 2,
                  .vocab = 30};
}

/* One KV head, so that 2 ranks replicate it; biases. */
static spec qwen2_biases(void)
{
    return (spec){.model_type = "qwen2", .dim = 16, .hidden = 24, .layers = 2, .heads = 4, .kv_heads = 1,
                  .vocab = 31};
}

static spec llama_tied(void)
{
    spec s = llama_gqa();
    s.tie = true;
    return s;
}

static model_load_opts opts_of(int T, int r, int max_layers)
{
    return (model_load_opts){.tp_rank = r, .tp_size = T, .max_layers = max_layers};
}

static void dummy_ok(model *m, const char *path, model_load_opts o, augur_backend *be, uint64_t seed)
{
    augur_error err = {0};
    test_expect_ok(model_load_dummy(m, path, &o, be, seed, &err), &err, "model_load_dummy");
}

/* ------------------------------------------------------- checking a dummy */

/* Every element within ±bound (bf16 rounding may round up by 2^-8 relative), and the
 * range used: some element beyond bound / 2. */
static void expect_range(const tensor_view *v, double bound, const char *what)
{
    double hi = 0;
    for (int64_t r = 0; r < v->rows; r++)
        for (int64_t c = 0; c < v->cols; c++) {
            const double x = fabs(tensor_get_f32(v, r, c));
            if (!(x <= bound * (1.0 + 1.0 / 128))) {
                print_error("%s: |element (%lld, %lld)| = %g beyond %g\n", what, (long long)r, (long long)c, x,
                            bound);
                fail();
            }
            hi = fmax(hi, x);
        }
    if (v->rows * v->cols > 0 && !(hi > bound / 2)) {
        print_error("%s: largest |element| %g, bound %g\n", what, hi, bound);
        fail();
    }
}

static void expect_view(const tensor_view *v, int64_t rows, int64_t cols, double bound, const char *what)
{
    if (v->rows != rows || v->cols != cols || v->dtype != AUGUR_BF16 || v->row_stride != cols || !v->data) {
        print_error("%s: %s %lld x %lld stride %lld, expected BF16 %lld x %lld packed\n", what,
                    augur_dtype_name(v->dtype), (long long)v->rows, (long long)v->cols, (long long)v->row_stride,
                    (long long)rows, (long long)cols);
        fail();
    }
    expect_range(v, bound, what);
}

static void expect_ones(const float *x, int64_t n)
{
    assert_non_null(x);
    for (int64_t i = 0; i < n; i++)
        assert_true(x[i] == 1.0f);
}

static void expect_bias(const float *x, int64_t n)
{
    assert_non_null(x);
    float hi = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_true(fabsf(x[i]) <= 0.02f);
        hi = fmaxf(hi, fabsf(x[i]));
    }
    assert_true(hi > 0.0f);
}

static size_t view_bytes(const tensor_view *v)
{
    return (size_t)(v->rows * v->row_stride) * augur_dtype_size(v->dtype);
}

/* Checks the shard layout (computed here independently of the loader), every view's
 * shape, dtype and range, and returns the bytes the views and arrays take. */
static size_t check_dummy(const model *m, const spec *s, int T, int r)
{
    const int hd = s->dim / s->heads, H = s->heads, KV = s->kv_heads, D = s->dim;
    const test_tp_share w = test_expect_tp_share(m, H, KV, s->hidden, s->vocab, T, r);
    const int nh = w.heads, nkv = w.kv_heads, fn = w.hidden, v0 = w.vocab_start, vn = w.vocab;
    assert_int_equal(m->memory, MODEL_WEIGHTS_ALLOCATED);
    assert_null(m->shards);
    assert_null(m->llama2c);

    const double in_dim = 1.0f / sqrtf((float)D), in_q = 1.0f / sqrtf((float)(H * hd));
    const double in_f = 1.0f / sqrtf((float)s->hidden);
    const bool bias = !strcmp(s->model_type, "qwen2");
    size_t bytes = 0;
    char what[96];
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const layer_weights *lw = &m->w.layers[l];
#define W(field, rows, cols, bound)                                                                                  \
    snprintf(what, sizeof what, "layer %d " #field, l);                                                             \
    expect_view(&lw->field, rows, cols, bound, what);                                                               \
    bytes += view_bytes(&lw->field);
        W(wq, nh * hd, D, in_dim)
        W(wk, nkv * hd, D, in_dim)
        W(wv, nkv * hd, D, in_dim)
        W(wo, D, nh * hd, in_q)
        W(w_gate, fn, D, in_dim)
        W(w_up, fn, D, in_dim)
        W(w_down, D, fn, in_f)
#undef W
        expect_ones(lw->attn_norm, D);
        expect_ones(lw->ffn_norm, D);
        bytes += 2 * (size_t)D * sizeof(float);
        if (bias) {
            expect_bias(lw->bq, (int64_t)nh * hd);
            expect_bias(lw->bk, (int64_t)nkv * hd);
            expect_bias(lw->bv, (int64_t)nkv * hd);
            bytes += (size_t)(nh + 2 * nkv) * hd * sizeof(float);
        } else {
            assert_null(lw->bq);
            assert_null(lw->bk);
            assert_null(lw->bv);
        }
    }
    expect_view(&m->w.tok_embedding, s->vocab, D, 1.0, "embedding");
    bytes += view_bytes(&m->w.tok_embedding);
    expect_ones(m->w.final_norm, D);
    bytes += (size_t)D * sizeof(float);
    if (s->tie) {
        assert_int_equal(m->w.lm_head.rows, vn);
        assert_int_equal(m->w.lm_head.cols, D);
        assert_int_equal(m->w.lm_head.row_stride, D);
        assert_ptr_equal(m->w.lm_head.data, (const char *)m->w.tok_embedding.data + (size_t)v0 * D * 2);
    } else {
        expect_view(&m->w.lm_head, vn, D, in_dim, "lm_head");
        bytes += view_bytes(&m->w.lm_head);
    }
    return bytes;
}

/* part == the [r0.., c0..] block of whole, element by element. */
static void expect_block(const tensor_view *part, const tensor_view *whole, int64_t r0, int64_t c0, const char *what)
{
    assert_true(r0 + part->rows <= whole->rows && c0 + part->cols <= whole->cols);
    for (int64_t r = 0; r < part->rows; r++)
        for (int64_t c = 0; c < part->cols; c++)
            if (tensor_get_f32(part, r, c) != tensor_get_f32(whole, r0 + r, c0 + c)) {
                print_error("%s: element (%lld, %lld) is not element (%lld, %lld) of the whole\n", what, (long long)r,
                            (long long)c, (long long)(r0 + r), (long long)(c0 + c));
                fail();
            }
}

/* The rank's shard of m is exactly its slice of the unsharded model full. */
static void expect_shard_of(const model *m, const model *full)
{
    const int hd = m->cfg.head_dim;
    const int64_t q0 = (int64_t)m->head_start * hd, kv0 = (int64_t)m->kv_head_start * hd;
    char what[96];
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const layer_weights *a = &m->w.layers[l], *b = &full->w.layers[l];
        snprintf(what, sizeof what, "rank %d layer %d", m->opts.tp_rank, l);
        expect_block(&a->wq, &b->wq, q0, 0, what);
        expect_block(&a->wk, &b->wk, kv0, 0, what);
        expect_block(&a->wv, &b->wv, kv0, 0, what);
        expect_block(&a->wo, &b->wo, 0, q0, what);
        expect_block(&a->w_gate, &b->w_gate, m->hidden_start, 0, what);
        expect_block(&a->w_up, &b->w_up, m->hidden_start, 0, what);
        expect_block(&a->w_down, &b->w_down, 0, m->hidden_start, what);
        if (a->bq) {
            assert_memory_equal(a->bq, b->bq + q0, (size_t)m->n_heads_local * hd * sizeof(float));
            assert_memory_equal(a->bk, b->bk + kv0, (size_t)m->n_kv_heads_local * hd * sizeof(float));
            assert_memory_equal(a->bv, b->bv + kv0, (size_t)m->n_kv_heads_local * hd * sizeof(float));
        }
    }
    expect_block(&m->w.tok_embedding, &full->w.tok_embedding, 0, 0, "embedding");
    expect_block(&m->w.lm_head, &full->w.lm_head, m->vocab_start, 0, "lm_head");
}

static bool views_equal(const tensor_view *a, const tensor_view *b)
{
    return a->rows == b->rows && a->cols == b->cols && a->dtype == b->dtype && a->row_stride == b->row_stride &&
           !memcmp(a->data, b->data, view_bytes(a));
}

static int count_equal_views(const model *a, const model *b)
{
    int same = 0;
    for (int l = 0; l < a->cfg.n_layers; l++) {
        const layer_weights *x = &a->w.layers[l], *y = &b->w.layers[l];
        same += views_equal(&x->wq, &y->wq) + views_equal(&x->wk, &y->wk) + views_equal(&x->wv, &y->wv) +
                views_equal(&x->wo, &y->wo) + views_equal(&x->w_gate, &y->w_gate) +
                views_equal(&x->w_up, &y->w_up) + views_equal(&x->w_down, &y->w_down);
    }
    return same + views_equal(&a->w.tok_embedding, &b->w.tok_embedding) + views_equal(&a->w.lm_head, &b->w.lm_head);
}

static int n_views(const model *m)
{
    return 7 * m->cfg.n_layers + 2;
}

/* ----------------------------------------------------------- dummy models */

static void dummy_shapes_and_shards(const char *dir, const spec *s)
{
    test_write_hf_config(dir, s);
    augur_backend *cpu = cpu_backend(2);
    model full;
    dummy_ok(&full, dir, opts_of(1, 0, 0), cpu, 1234);
    assert_ptr_equal(full.backend, cpu);
    assert_string_equal(full.source, dir);
    assert_int_equal(full.cfg.n_layers, s->layers);
    size_t bytes = check_dummy(&full, s, 1, 0);
    model_load_opts o = opts_of(1, 0, 0);
    assert_int_equal(model_weight_bytes(&full.cfg, &o, AUGUR_BF16), bytes);
    assert_int_equal(model_weight_bytes(&full.cfg, NULL, AUGUR_BF16), bytes);
    for (int T = 2; T <= 4; T *= 2)
        for (int r = 0; r < T; r++) {
            model m;
            dummy_ok(&m, dir, opts_of(T, r, 0), cpu, 1234);
            bytes = check_dummy(&m, s, T, r);
            o = opts_of(T, r, 0);
            assert_int_equal(model_weight_bytes(&m.cfg, &o, AUGUR_BF16), bytes);
            expect_shard_of(&m, &full);
            model_free(&m);
            assert_null(m.w.layers);
            assert_string_equal(m.source, dir); /* kept for messages */
        }
    model_free(&full);
    backend_destroy(cpu);
}

/* llama with grouped-query attention, qwen2 with biases, llama with tied embeddings. */
static void test_dummy_each_architecture(void **state)
{
    const spec specs[] = {llama_gqa(), qwen2_biases(), llama_tied()};
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++)
        dummy_shapes_and_shards(*state, &specs[i]);
}

static void test_dummy_determinism(void **state)
{
    spec s = qwen2_biases();
    test_write_hf_config(*state, &s);
    augur_backend *cpu = cpu_backend(1), *cpu4 = cpu_backend(4);
    char config[512];
    snprintf(config, sizeof config, "%s/config.json", (const char *)*state);
    model a, b, c;
    dummy_ok(&a, *state, opts_of(2, 1, 0), cpu, 7);
    dummy_ok(&b, config, opts_of(2, 1, 0), cpu4, 7); /* the config file itself; other threads */
    assert_string_equal(b.source, config);
    assert_int_equal(count_equal_views(&a, &b), n_views(&a));
    const size_t bq_bytes = (size_t)a.n_heads_local * a.cfg.head_dim * sizeof(float);
    for (int l = 0; l < a.cfg.n_layers; l++)
        assert_memory_equal(a.w.layers[l].bq, b.w.layers[l].bq, bq_bytes);
    dummy_ok(&c, *state, opts_of(2, 1, 0), cpu, 8);
    assert_int_equal(count_equal_views(&a, &c), 0);
    assert_memory_not_equal(a.w.layers[0].bq, c.w.layers[0].bq, bq_bytes);
    /* distinct tensors of one model differ too (each has its own seed) */
    assert_memory_not_equal(a.w.layers[0].w_gate.data, a.w.layers[0].w_up.data, view_bytes(&a.w.layers[0].w_up));
    assert_memory_not_equal(a.w.layers[0].wq.data, a.w.layers[1].wq.data, view_bytes(&a.w.layers[0].wq));
    model_free(&a);
    model_free(&b);
    model_free(&c);
    backend_destroy(cpu);
    backend_destroy(cpu4);
}

static void test_dummy_max_layers(void **state)
{
    spec s = llama_gqa();
    test_write_hf_config(*state, &s);
    augur_backend *cpu = cpu_backend(1);
    model full, draft;
    dummy_ok(&full, *state, opts_of(2, 0, 0), cpu, 99);
    dummy_ok(&draft, *state, opts_of(2, 0, 2), cpu, 99);
    assert_int_equal(draft.cfg.n_layers, 2);
    size_t bytes = check_dummy(&draft, &s, 2, 0);
    /* a self-draft shares its layers with the full model */
    for (int l = 0; l < 2; l++) {
        const layer_weights *x = &draft.w.layers[l], *y = &full.w.layers[l];
        assert_true(views_equal(&x->wq, &y->wq) && views_equal(&x->wk, &y->wk) && views_equal(&x->wv, &y->wv) &&
                    views_equal(&x->wo, &y->wo) && views_equal(&x->w_gate, &y->w_gate) &&
                    views_equal(&x->w_up, &y->w_up) && views_equal(&x->w_down, &y->w_down));
    }
    assert_true(views_equal(&draft.w.lm_head, &full.w.lm_head));
    /* the whole config with max_layers, or the cut one: the same plan */
    model_load_opts o = opts_of(2, 0, 2);
    assert_int_equal(model_weight_bytes(&full.cfg, &o, AUGUR_BF16), bytes);
    assert_int_equal(model_weight_bytes(&draft.cfg, &o, AUGUR_BF16), bytes);
    model_free(&full);
    model_free(&draft);
    backend_destroy(cpu);
}

static void expect_dummy_error(const char *path, model_load_opts o, augur_backend *be, augur_status code,
                               const char *needle)
{
    model m;
    augur_error err = {0};
    test_expect_status(model_load_dummy(&m, path, &o, be, 1, &err), &err, code, needle, NULL);
    assert_null(m.w.layers); /* nothing left to free */
    model_free(&m);
}

static void test_dummy_errors(void **state)
{
    augur_backend *cpu = cpu_backend(1);
    char path[512];
    snprintf(path, sizeof path, "%s/nowhere", (const char *)*state);
    expect_dummy_error(path, opts_of(1, 0, 0), cpu, AUGUR_E_INPUT, "nowhere");
    /* a directory without config.json */
    expect_dummy_error(*state, opts_of(1, 0, 0), cpu, AUGUR_E_INPUT, "config.json");
    spec s = llama_gqa();
    test_write_hf_config(*state, &s);
    expect_dummy_error(*state, opts_of(3, 0, 0), cpu, AUGUR_E_INPUT, "num_attention_heads");
    expect_dummy_error(*state, opts_of(1, 0, 9), cpu, AUGUR_E_INPUT, "draft layers");
    expect_dummy_error(*state, opts_of(2, 2, 0), cpu, AUGUR_E_INTERNAL, "rank 2 of 2");
    expect_dummy_error(*state, opts_of(1, 0, 0), NULL, AUGUR_E_INTERNAL, "backend");
    backend_destroy(cpu);
}

static void test_weight_bytes(void **state)
{
    spec s = llama_gqa();
    test_write_hf_config(*state, &s);
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", (const char *)*state);
    model_config c;
    augur_error err = {0};
    assert_int_equal(model_config_load_hf(&c, path, &err), AUGUR_OK);
    /* by hand, one rank, f32: embedding, lm_head, final norm, 3 layers of norms, q/k/v
     * (16 + 8 + 8 rows), o (16 x 16), gate/up/down (22 x 16 each) */
    const size_t layer = 2 * 16 * 4 + (16 + 8 + 8) * 16 * 4 + 16 * 16 * 4 + 3 * 22 * 16 * 4;
    assert_int_equal(model_weight_bytes(&c, NULL, AUGUR_F32), 30 * 16 * 4 * 2 + 16 * 4 + 3 * layer);
    /* half the matrix bytes in bf16; the fp32 norms stay */
    const size_t layer16 = 2 * 16 * 4 + (16 + 8 + 8) * 16 * 2 + 16 * 16 * 2 + 3 * 22 * 16 * 2;
    assert_int_equal(model_weight_bytes(&c, NULL, AUGUR_BF16), 30 * 16 * 2 * 2 + 16 * 4 + 3 * layer16);
    assert_int_equal(model_weight_bytes(&c, NULL, AUGUR_F16), model_weight_bytes(&c, NULL, AUGUR_BF16));
    /* layouts the heads do not allow */
    model_load_opts o = opts_of(3, 0, 0);
    assert_int_equal(model_weight_bytes(&c, &o, AUGUR_BF16), 0);
    o = opts_of(2, 5, 0);
    assert_int_equal(model_weight_bytes(&c, &o, AUGUR_BF16), 0);
}

/* --------------------------------------------------- a tiny real checkpoint */

/* Tensor k gets dtype k % 3 (f32, f16, bf16), so uploads see every element size. */
static void add_random(safetensors_writer *w, const char *name, int64_t rows, int64_t cols, int k)
{
    const augur_dtype dt = (augur_dtype)(k % 3);
    const int64_t n = rows * (cols ? cols : 1);
    float *x = malloc((size_t)n * sizeof *x);
    uint16_t *h = malloc((size_t)n * sizeof *h);
    test_fill_random(x, (size_t)n, (uint64_t)k + 1, 1.0f);
    for (int64_t i = 0; i < n; i++)
        h[i] = dt == AUGUR_BF16 ? augur_f32_to_bf16(x[i]) : augur_f32_to_f16(x[i]);
    const int64_t shape[2] = {rows, cols};
    augur_error err = {0};
    assert_int_equal(safetensors_writer_add(w, name, dt, cols ? 2 : 1, shape, dt == AUGUR_F32 ? (void *)x : h, &err),
                     AUGUR_OK);
    free(x);
    free(h);
}

static void write_checkpoint(const char *dir, const spec *s)
{
    test_write_hf_config(dir, s);
    const int hd = s->dim / s->heads;
    const int64_t q = (int64_t)s->heads * hd, kv = (int64_t)s->kv_heads * hd;
    safetensors_writer *w = safetensors_writer_new();
    int k = 0;
    char name[128];
    add_random(w, "model.embed_tokens.weight", s->vocab, s->dim, k++);
    for (int l = 0; l < s->layers; l++) {
#define L(suffix, rows, cols)                                                                                        \
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);                                                    \
    add_random(w, name, rows, cols, k++);
        L("input_layernorm.weight", s->dim, 0)
        L("post_attention_layernorm.weight", s->dim, 0)
        L("self_attn.q_proj.weight", q, s->dim)
        L("self_attn.k_proj.weight", kv, s->dim)
        L("self_attn.v_proj.weight", kv, s->dim)
        L("self_attn.o_proj.weight", s->dim, q)
        L("mlp.gate_proj.weight", s->hidden, s->dim)
        L("mlp.up_proj.weight", s->hidden, s->dim)
        L("mlp.down_proj.weight", s->dim, s->hidden)
        if (!strcmp(s->model_type, "qwen2")) {
            L("self_attn.q_proj.bias", q, 0)
            L("self_attn.k_proj.bias", kv, 0)
            L("self_attn.v_proj.bias", kv, 0)
        }
#undef L
    }
    add_random(w, "model.norm.weight", s->dim, 0, k++);
    if (!s->tie)
        add_random(w, "lm_head.weight", s->vocab, s->dim, k++);
    snprintf(name, sizeof name, "%s/model.safetensors", dir);
    augur_error err = {0};
    assert_int_equal(safetensors_writer_save(w, name, &err), AUGUR_OK);
    safetensors_writer_free(w);
}

static void load_ok(model *m, const char *dir, model_load_opts o)
{
    test_load_ok(m, dir, &o);
}

/* m's weights hold the values of ref's (a host model loaded from the same files). */
static void expect_same_weights(const model *m, const model *ref)
{
    const int hd = m->cfg.head_dim;
    char what[96];
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const layer_weights *a = &m->w.layers[l], *b = &ref->w.layers[l];
        snprintf(what, sizeof what, "layer %d", l);
        const tensor_view *va[] = {&a->wq, &a->wk, &a->wv, &a->wo, &a->w_gate, &a->w_up, &a->w_down};
        const tensor_view *vb[] = {&b->wq, &b->wk, &b->wv, &b->wo, &b->w_gate, &b->w_up, &b->w_down};
        for (int i = 0; i < 7; i++) {
            assert_int_equal(va[i]->rows, vb[i]->rows);
            assert_int_equal(va[i]->cols, vb[i]->cols);
            assert_int_equal(va[i]->dtype, vb[i]->dtype);
            expect_block(va[i], vb[i], 0, 0, what);
        }
        assert_memory_equal(a->attn_norm, b->attn_norm, (size_t)m->cfg.dim * sizeof(float));
        assert_memory_equal(a->ffn_norm, b->ffn_norm, (size_t)m->cfg.dim * sizeof(float));
        if (b->bq) {
            assert_memory_equal(a->bq, b->bq, (size_t)m->n_heads_local * hd * sizeof(float));
            assert_memory_equal(a->bk, b->bk, (size_t)m->n_kv_heads_local * hd * sizeof(float));
            assert_memory_equal(a->bv, b->bv, (size_t)m->n_kv_heads_local * hd * sizeof(float));
        } else {
            assert_null(a->bq);
        }
    }
    expect_block(&m->w.tok_embedding, &ref->w.tok_embedding, 0, 0, "embedding");
    assert_int_equal(m->w.lm_head.rows, ref->w.lm_head.rows);
    expect_block(&m->w.lm_head, &ref->w.lm_head, 0, 0, "lm_head");
    assert_memory_equal(m->w.final_norm, ref->w.final_norm, (size_t)m->cfg.dim * sizeof(float));
}

/* On "cpu" nothing moves: the views stay in the mapped checkpoint, so a forward pass
 * reads the very same bytes. */
static void test_to_backend_cpu(void **state)
{
    spec s = llama_tied();
    write_checkpoint(*state, &s);
    augur_backend *cpu = cpu_backend(1), *other = cpu_backend(1);
    model m, ref;
    load_ok(&m, *state, opts_of(2, 1, 0));
    load_ok(&ref, *state, opts_of(2, 1, 0));
    const void *wq = m.w.layers[0].wq.data, *wo = m.w.layers[1].wo.data, *head = m.w.lm_head.data;
    augur_error err = {0};
    assert_null(m.backend);
    assert_int_equal(model_to_backend(&m, cpu, &err), AUGUR_OK);
    assert_ptr_equal(m.backend, cpu);
    assert_int_equal(m.memory, MODEL_WEIGHTS_HOST);
    assert_int_equal(m.n_shards, 1);
    assert_ptr_equal(m.w.layers[0].wq.data, wq);
    assert_ptr_equal(m.w.layers[1].wo.data, wo);
    assert_ptr_equal(m.w.lm_head.data, head);
    expect_same_weights(&m, &ref);
    /* the same products through the backend */
    float x[16], y1[16], y2[16];
    test_fill_random(x, 16, 5, 1.0f);
    assert_int_equal(backend_matmul(cpu, y1, x, 1, &m.w.layers[1].wo, NULL, &err), AUGUR_OK);
    assert_int_equal(backend_matmul(cpu, y2, x, 1, &ref.w.layers[1].wo, NULL, &err), AUGUR_OK);
    assert_memory_equal(y1, y2, sizeof y1);
    /* again into the same backend: nothing to do; into another: refused */
    assert_int_equal(model_to_backend(&m, cpu, &err), AUGUR_OK);
    assert_int_equal(model_to_backend(&m, other, &err), AUGUR_E_INTERNAL);
    assert_non_null(strstr(err.message, *state));
    assert_ptr_equal(m.backend, cpu);
    model_free(&m);
    model_free(&ref);
    backend_destroy(cpu);
    backend_destroy(other);
}

/* ------------------------------------ a copying backend standing in for a GPU */

/* Host memory, but weight_upload copies into rows padded by 3 elements of NaN (a reader
 * ignoring row_stride shows) and every allocation is counted; allocation number fail_at
 * is refused. Kernels and scratch are the CPU backend's. */
typedef struct {
    augur_backend be; /* first: the operations receive &fake->be */
    augur_backend *cpu;
    int live;         /* allocations not yet freed */
    int allocs;       /* allocations attempted */
    int fail_at;      /* -1: none refused */
} copy_backend;

static copy_backend *fake_of(augur_backend *be)
{
    return (copy_backend *)be;
}

static augur_status fake_alloc(augur_backend *be, void **buf, size_t bytes, augur_error *err)
{
    copy_backend *f = fake_of(be);
    if (f->allocs++ == f->fail_at) {
        *buf = NULL;
        return augur_fail(err, AUGUR_E_NOMEM, "fake backend: allocation %d of %zu bytes refused", f->fail_at, bytes);
    }
    augur_status st = f->cpu->iface.alloc(f->cpu, buf, bytes, err);
    f->live += st == AUGUR_OK;
    return st;
}

static void fake_free(augur_backend *be, void *buf)
{
    if (!buf)
        return;
    fake_of(be)->live--;
    free(buf);
}

static augur_status fake_weight_upload(augur_backend *be, tensor_view *dev, const tensor_view *host,
                                       augur_error *err)
{
    const size_t es = augur_dtype_size(host->dtype);
    const int64_t stride = host->cols + 3;
    void *p = NULL;
    memset(dev, 0, sizeof *dev);
    augur_status st = fake_alloc(be, &p, (size_t)(host->rows * stride) * es, err);
    if (st)
        return st;
    memset(p, 0xff, (size_t)(host->rows * stride) * es);
    for (int64_t r = 0; r < host->rows; r++)
        memcpy((char *)p + (size_t)(r * stride) * es, (const char *)host->data + (size_t)(r * host->row_stride) * es,
               (size_t)host->cols * es);
    *dev = (tensor_view){.data = p, .dtype = host->dtype, .rows = host->rows, .cols = host->cols, .row_stride = stride};
    return AUGUR_OK;
}

static void fake_weight_free(augur_backend *be, tensor_view *dev)
{
    fake_free(be, (void *)dev->data);
    memset(dev, 0, sizeof *dev);
}

static void fake_destroy(augur_backend *be)
{
    copy_backend *f = fake_of(be);
    backend_destroy(f->cpu);
    free(f);
}

static copy_backend *fake_create(void)
{
    copy_backend *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->cpu = cpu_backend(1);
    f->be = *f->cpu; /* the CPU operations, with its context */
    f->be.name = "fakegpu";
    f->be.caps = (augur_backend_caps){0}; /* a GPU's: nothing read in place, weights copied */
    f->be.iface.destroy = fake_destroy;
    f->be.iface.alloc = fake_alloc;
    f->be.iface.free = fake_free;
    f->be.iface.weight_upload = fake_weight_upload;
    f->be.iface.weight_free = fake_weight_free;
    f->fail_at = -1;
    return f;
}

static void upload_case(const char *dir, const spec *s, int T, int r)
{
    write_checkpoint(dir, s);
    copy_backend *f = fake_create();
    model m, ref;
    load_ok(&ref, dir, opts_of(T, r, 0));
    load_ok(&m, dir, opts_of(T, r, 0));
    augur_error err = {0};
    assert_int_equal(model_to_backend(&m, &f->be, &err), AUGUR_OK);
    const int allocs = f->allocs;
    assert_ptr_equal(m.backend, &f->be);
    assert_int_equal(m.memory, MODEL_WEIGHTS_UPLOADED);
    assert_null(m.shards); /* nothing points into the checkpoint any more */
    assert_int_equal(m.n_shards, 0);
    assert_int_equal(m.w.layers[0].wq.row_stride, m.w.layers[0].wq.cols + 3);
    assert_int_equal(m.w.layers[0].wo.row_stride, m.w.layers[0].wo.cols + 3); /* strided on the host */
    expect_same_weights(&m, &ref);
    const tensor_view *e = &m.w.tok_embedding;
    if (s->tie) { /* the copied embedding's rows, at its padded stride: one allocation fewer */
        assert_ptr_equal(m.w.lm_head.data,
                         (const char *)e->data + (size_t)(m.vocab_start * e->row_stride) * augur_dtype_size(e->dtype));
        assert_int_equal(m.w.lm_head.row_stride, e->row_stride);
    } else {
        assert_true((const char *)m.w.lm_head.data < (const char *)e->data ||
                    (const char *)m.w.lm_head.data >= (const char *)e->data + view_bytes(e));
    }
    /* the model computes the same through the backend */
    float x[2 * 16], y1[2 * 32], y2[2 * 32];
    test_fill_random(x, 2 * 16, 11, 1.0f);
    assert_true(m.w.lm_head.rows <= 32);
    assert_int_equal(backend_matmul(&f->be, y1, x, 2, &m.w.lm_head, NULL, &err), AUGUR_OK);
    assert_int_equal(backend_matmul(&f->be, y2, x, 2, &ref.w.lm_head, NULL, &err), AUGUR_OK);
    assert_memory_equal(y1, y2, (size_t)(2 * m.w.lm_head.rows) * sizeof(float));
    /* already there: nothing to do */
    assert_int_equal(model_to_backend(&m, &f->be, &err), AUGUR_OK);
    assert_int_equal(f->allocs, allocs);
    model_free(&m);
    assert_int_equal(f->live, 0);

    /* A refusal at each allocation: an error naming the model, m still on the host and
     * whole, nothing left allocated. */
    for (int k = 0; k < allocs; k++) {
        load_ok(&m, dir, opts_of(T, r, 0));
        f->allocs = 0;
        f->fail_at = k;
        augur_error e2 = {0};
        assert_int_equal(model_to_backend(&m, &f->be, &e2), AUGUR_E_NOMEM);
        assert_non_null(strstr(e2.message, dir));
        assert_non_null(strstr(e2.message, "refused"));
        assert_int_equal(f->live, 0);
        assert_null(m.backend);
        assert_int_equal(m.memory, MODEL_WEIGHTS_HOST);
        assert_int_equal(m.n_shards, 1);
        expect_same_weights(&m, &ref);
        model_free(&m);
        f->fail_at = -1;
    }
    model_free(&ref);
    backend_destroy(&f->be);
}

static void test_to_backend_copy_tied(void **state)
{
    spec s = llama_tied();
    upload_case(*state, &s, 2, 1);
}

static void test_to_backend_copy_qwen2(void **state)
{
    spec s = qwen2_biases();
    upload_case(*state, &s, 2, 0);
}

static void test_to_backend_copy_whole(void **state)
{
    spec s = llama_gqa();
    upload_case(*state, &s, 1, 0);
}

/* model_load_dummy in a backend of its own: the same values as on "cpu", freed through
 * the backend, and a refused allocation anywhere leaves nothing behind. */
static void test_dummy_in_copy_backend(void **state)
{
    spec s = llama_tied();
    test_write_hf_config(*state, &s);
    copy_backend *f = fake_create();
    augur_backend *cpu = cpu_backend(1);
    model m, ref;
    dummy_ok(&ref, *state, opts_of(2, 1, 0), cpu, 5);
    dummy_ok(&m, *state, opts_of(2, 1, 0), &f->be, 5);
    const int allocs = f->allocs;
    assert_int_equal(count_equal_views(&m, &ref), n_views(&m));
    augur_error err = {0};
    assert_int_equal(model_to_backend(&m, cpu, &err), AUGUR_E_INTERNAL); /* already in fakegpu */
    assert_non_null(strstr(err.message, "fakegpu"));
    model_free(&m);
    assert_int_equal(f->live, 0);
    for (int k = 0; k < allocs; k++) {
        f->allocs = 0;
        f->fail_at = k;
        augur_error e2 = {0};
        const model_load_opts o = opts_of(2, 1, 0);
        assert_int_equal(model_load_dummy(&m, *state, &o, &f->be, 5, &e2), AUGUR_E_NOMEM);
        assert_non_null(strstr(e2.message, *state));
        assert_int_equal(f->live, 0);
        assert_null(m.w.layers);
        model_free(&m);
    }
    model_free(&ref);
    backend_destroy(&f->be);
    backend_destroy(cpu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fill_random_cpu),
        test_in_tmpdir(test_dummy_each_architecture),
        test_in_tmpdir(test_dummy_determinism),
        test_in_tmpdir(test_dummy_max_layers),
        test_in_tmpdir(test_dummy_errors),
        test_in_tmpdir(test_weight_bytes),
        test_in_tmpdir(test_to_backend_cpu),
        test_in_tmpdir(test_to_backend_copy_tied),
        test_in_tmpdir(test_to_backend_copy_qwen2),
        test_in_tmpdir(test_to_backend_copy_whole),
        test_in_tmpdir(test_dummy_in_copy_backend),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
