/* Helpers shared by the cmocka unit tests. */
#ifndef AUGUR_TEST_UTIL_H
#define AUGUR_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

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

/* Writes len bytes to path; returns 0 on success. */
int test_write_file(const char *path, const void *data, size_t len);

#endif
