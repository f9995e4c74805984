#include "launcher/args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

augur_status arg_int(const char *flag, const char *text, long min, long max, int *out, augur_error *err)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (!text[0] || *end || errno)
        return augur_fail(err, AUGUR_E_INPUT, "%s: '%s' is not an integer", flag, text);
    if (v < min || v > max)
        return augur_fail(err, AUGUR_E_INPUT, "%s: %ld is outside %ld..%ld", flag, v, min, max);
    *out = (int)v;
    return AUGUR_OK;
}

augur_status arg_u64(const char *flag, const char *text, uint64_t *out, augur_error *err)
{
    char *end = NULL;
    errno = 0;
    if (!text[0] || text[0] == '-')
        return augur_fail(err, AUGUR_E_INPUT, "%s: '%s' is not a non-negative integer", flag, text);
    unsigned long long v = strtoull(text, &end, 10);
    if (*end || errno)
        return augur_fail(err, AUGUR_E_INPUT, "%s: '%s' is not a non-negative integer", flag, text);
    *out = (uint64_t)v;
    return AUGUR_OK;
}

augur_status arg_float(const char *flag, const char *text, double min, double max, float *out, augur_error *err)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (!text[0] || *end || errno || !isfinite(v))
        return augur_fail(err, AUGUR_E_INPUT, "%s: '%s' is not a number", flag, text);
    if (v < min || v > max)
        return augur_fail(err, AUGUR_E_INPUT, "%s: %g is outside %g..%g", flag, v, min, max);
    *out = (float)v;
    return AUGUR_OK;
}

augur_status parse_token_ids(const char *flag, const char *text, int vocab, int32_t **ids, size_t *n,
                             augur_error *err)
{
    size_t cap = strlen(text) / 2 + 1, count = 0;
    int32_t *out = malloc(cap * sizeof *out);
    if (!out)
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", flag);
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        char *end = NULL;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v >= vocab || (*end && *end != ' ' && *end != ',')) {
            free(out);
            return augur_fail(err, AUGUR_E_INPUT, "%s: '%s' is not a list of token ids in 0..%d", flag, text,
                              vocab - 1);
        }
        out[count++] = (int32_t)v;
        p = end;
    }
    if (!count) {
        free(out);
        return augur_fail(err, AUGUR_E_INPUT, "%s: no token ids given", flag);
    }
    *ids = out;
    *n = count;
    return AUGUR_OK;
}

int cli_report(const augur_error *err)
{
    fprintf(stderr, "augur: %s\n", err->message[0] ? err->message : "unknown error");
    int code = augur_exit_code(err->code);
    return code ? code : 1;
}
