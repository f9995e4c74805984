/* Weight-load progress (runtime/model/load_progress.h): nothing for a load under a
 * second, then at most one line a second with bytes, total and rate, and a closing line.
 * The clock is passed in, so no test waits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/model/load_progress.h"

static char out[4096];

static FILE *sink(void)
{
    memset(out, 0, sizeof out);
    FILE *f = fmemopen(out, sizeof out, "w");
    assert_non_null(f);
    return f;
}

static int lines(void)
{
    int n = 0;
    for (const char *p = out; *p; p++)
        n += *p == '\n';
    return n;
}

static void test_short_load_is_silent(void **state)
{
    (void)state;
    FILE *f = sink();
    load_progress p;
    load_progress_start(&p, f, "rank 0 (target)", 1000, 10.0);
    for (int i = 0; i < 10; i++)
        load_progress_add(&p, 100, 10.0 + 0.09 * i);
    load_progress_end(&p, 10.95);
    fclose(f);
    if (out[0])
        fail_msg("a load under a second printed: %s", out);
    assert_int_equal((int)p.done, 1000);
}

static void test_once_a_second(void **state)
{
    (void)state;
    FILE *f = sink();
    load_progress p;
    const size_t gb = 1000000000;
    load_progress_start(&p, f, "rank 3 (target shard)", 10 * gb, 0.0);
    /* a tensor every 0.25 s for 4.5 s: lines at 1.0, 2.0, 3.0 and 4.0 s only */
    for (int i = 1; i <= 18; i++)
        load_progress_add(&p, gb / 2, 0.25 * i);
    load_progress_end(&p, 4.5);
    fclose(f);
    if (lines() != 5)
        fail_msg("expected 4 progress lines and a closing one, got:\n%s", out);
    if (!strstr(out, "augur: rank 3 (target shard): loaded 2.00 of 10.00 GB (20%), 2.00 GB/s\n"))
        fail_msg("first line wrong:\n%s", out);
    if (!strstr(out, "augur: rank 3 (target shard): loaded 9.00 GB in 4.5 s, 2.00 GB/s\n"))
        fail_msg("closing line wrong:\n%s", out);
}

static void test_no_sink(void **state)
{
    (void)state;
    load_progress p;
    load_progress_start(&p, NULL, NULL, 10, 0.0);
    load_progress_add(&p, 10, 5.0);
    load_progress_end(&p, 6.0);
    assert_string_equal(p.who, "model");
    assert_int_equal(p.lines, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_load_is_silent),
        cmocka_unit_test(test_once_a_second),
        cmocka_unit_test(test_no_sink),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
