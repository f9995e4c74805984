/* Strict parsing of numeric command-line values: "12x", "", overflow and out-of-range
 * values are errors naming the flag. */
#ifndef AUGUR_ARGS_H
#define AUGUR_ARGS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

augur_status arg_int(const char *flag, const char *text, long min, long max, int *out, augur_error *err);
augur_status arg_u64(const char *flag, const char *text, uint64_t *out, augur_error *err);
augur_status arg_float(const char *flag, const char *text, double min, double max, float *out, augur_error *err);

/* Parses "1 2 3" (spaces or commas) into a malloc'ed id array; each id in [0, vocab). */
augur_status parse_token_ids(const char *flag, const char *text, int vocab, int32_t **ids, size_t *n,
                             augur_error *err);

/* Prints "augur: <message>" to stderr and returns the CLI exit code for err. */
int cli_report(const augur_error *err);

#endif
