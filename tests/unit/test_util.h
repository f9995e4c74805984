/* Helpers shared by the cmocka unit tests. */
#ifndef AUGUR_TEST_UTIL_H
#define AUGUR_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "runtime/model/model.h"

/* Deterministic pseudo-random floats in [-scale, scale). */
void test_fill_random(float *x, size_t n, uint64_t seed, float scale);

/* Max |a-b| / max(|b|, floor) over n values. */
double test_max_rel_err(const float *a, const float *b, size_t n, double floor);

/* Makes a fresh temporary directory (mkdtemp) and returns its malloc'ed path. */
char *test_tmpdir(void);

/* cmocka group setup/teardown: *state becomes a fresh temporary directory (a
 * malloc'ed path), removed with its contents afterwards. */
int test_setup_tmpdir(void **state);
int test_teardown_tmpdir(void **state);

/* A cmocka test that runs in a fresh temporary directory (its path in *state). */
#define test_in_tmpdir(f) cmocka_unit_test_setup_teardown(f, test_setup_tmpdir, test_teardown_tmpdir)

/* Writes len bytes to path; returns 0 on success. */
int test_write_file(const char *path, const void *data, size_t len);

/* The shape of a tiny Llama-family model, as its Hugging Face config.json states it. */
typedef struct {
    const char *model_type;
    int dim, hidden, layers, heads, kv_heads, vocab;
    bool tie;
} test_hf_shape;

/* Writes dir/config.json for shape (64 positions, RoPE theta 10000, bos 1, eos 2). */
void test_write_hf_config(const char *dir, const test_hf_shape *shape);

/* The shared fixtures folder (models/stories260K/...): $AUGUR_SHARED_DIR where set, else
 * the folder compiled in (the checkout's ../shared). */
const char *test_shared_dir(void);

/* Writes the path of the shared fixture `relative` into buf and returns it. Where the
 * file cannot be read the running test ends here: skipped with a message naming the
 * path, or failed with that message under CI (CI=true), where every fixture must exist.
 * The one rule for fixtures; tests/lib.sh's need_fixture is its shell twin. */
const char *test_need_fixture(char *buf, size_t size, const char *relative);

/* Asserts that a call returned want with a message containing needle1 and, unless
 * NULL, needle2; where it did not, prints the status and message first. */
void test_expect_status(augur_status got, const augur_error *err, augur_status want, const char *needle1,
                        const char *needle2);

/* Asserts that `what` (a call's name, for the message) succeeded. */
void test_expect_ok(augur_status got, const augur_error *err, const char *what);

/* model_load, which must succeed. */
void test_load_ok(model *m, const char *path, const model_load_opts *opts);

/* Rank r's share of a T-way tensor-parallel model (DESIGN §5): its query heads, KV heads,
 * FFN rows and vocabulary rows, as (first, count). */
typedef struct {
    int head_start, heads, kv_head_start, kv_heads, hidden_start, hidden, vocab_start, vocab;
} test_tp_share;

/* Computes rank r's share independently of the loader, from the full model's heads,
 * kv_heads, hidden and vocab (query heads split evenly; KV heads split, or replicated
 * where T > kv_heads; FFN and vocabulary rows split by tp_split), asserts that m holds
 * exactly that share, and returns it for the caller's checks of the views. */
test_tp_share test_expect_tp_share(const model *m, int heads, int kv_heads, int hidden, int vocab, int T, int r);

/* A llama2.c checkpoint with an unshared classifier (negative vocab_size in the header):
 * dim 8, hidden 12, 2 layers, 2 heads, 1 KV head, vocab 10, seq_len 4. Every float holds
 * its own index, so any view element tells where in the file it came from. Returns the
 * malloc'ed file; *bytes its size, *floats the floats after the 7-int header. */
enum { TEST_L2C_DIM = 8, TEST_L2C_LAYERS = 2, TEST_L2C_VOCAB = 10, TEST_L2C_KV_DIM = 4 /* KV heads x head_dim */ };
unsigned char *test_llama2c_unshared(size_t *bytes, int64_t *floats);

#endif
