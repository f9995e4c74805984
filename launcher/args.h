/* Command-line parsing for every augur subcommand: one table of flag specs per command
 * drives getopt_long, the value checks, the error messages and the --help text, so a flag
 * is declared once and behaves the same in every command. Numeric values are strict:
 * "12x", "", overflow and out-of-range values are errors naming the flag. */
#ifndef AUGUR_ARGS_H
#define AUGUR_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/error.h"
#include "launcher/config_file.h"
#include "runtime/device_plan.h"

typedef enum {
    ARG_STRING,      /* const char **: the text as given */
    ARG_FLAG,        /* bool *: set to true; takes no value */
    ARG_INT,         /* int *: an integer in min..max */
    ARG_U64,         /* uint64_t *: a non-negative integer */
    ARG_FLOAT,       /* float *: a number in min..max (above min, with above_min) */
    ARG_DOUBLE,      /* double *: as ARG_FLOAT */
    ARG_INT_LIST,    /* int[cap], count: comma-separated integers in min..max */
    ARG_FLOAT_LIST,  /* float[cap], count: comma-separated numbers as ARG_FLOAT */
    ARG_SWITCH,      /* bool *: choices[0] sets false, choices[1] true */
    ARG_CUSTOM,      /* parse(flag, text, dest, err) */
    ARG_CONFIG,      /* --config FILE: a JSON object of the command's flags (config_file.h) */
    ARG_HELP,        /* -h, --help: where its line goes in --help (it is always accepted) */
    ARG_SECTION,     /* not a flag: a heading (name) in --help */
} arg_kind;

typedef augur_status (*arg_parse_fn)(const char *flag, const char *text, void *dest, augur_error *err);

typedef struct {
    const char *name;        /* long name without "--"; the heading of an ARG_SECTION */
    arg_kind kind;
    void *dest;
    const char *value;       /* the value's name in --help ("PATH"); NULL for ARG_FLAG */
    const char *help;        /* "\n" starts a line indented under the first */
    double min, max;         /* ARG_INT, ARG_FLOAT, ARG_DOUBLE and the lists */
    bool above_min;          /* min itself is out of range ("0 is not > 0") */
    size_t *count;           /* lists: values parsed; at most cap */
    size_t cap;
    const char *choices[2];  /* ARG_SWITCH */
    arg_parse_fn parse;      /* ARG_CUSTOM */
    bool *given;             /* when not NULL: set once the flag is seen */
    bool required;           /* ARG_STRING: absent or empty is an error */
    char short_name;         /* a one-letter alias ('o' for -o), or 0 */
} arg_spec;

/* Spec builders for the common kinds; each checks the type its destination points to
 * (a mismatch is a compile error under -Werror). Rarer fields (given, above_min, lists)
 * are set with designated initializers. */
#define ARG_DEST(type, p) (1 ? (p) : (type *)0)
#define FLAG_STRING(n, d, v, h) \
    {.name = (n), .kind = ARG_STRING, .dest = ARG_DEST(const char *, d), .value = (v), .help = (h)}
#define FLAG_REQUIRED(n, d, v, h) \
    {.name = (n), .kind = ARG_STRING, .dest = ARG_DEST(const char *, d), .value = (v), .help = (h), .required = true}
#define FLAG_BOOL(n, d, h) {.name = (n), .kind = ARG_FLAG, .dest = ARG_DEST(bool, d), .help = (h)}
#define FLAG_INT(n, d, v, lo, hi, h) \
    {.name = (n), .kind = ARG_INT, .dest = ARG_DEST(int, d), .value = (v), .min = (lo), .max = (hi), .help = (h)}
#define FLAG_U64(n, d, v, h) {.name = (n), .kind = ARG_U64, .dest = ARG_DEST(uint64_t, d), .value = (v), .help = (h)}
#define FLAG_FLOAT(n, d, v, lo, hi, h) \
    {.name = (n), .kind = ARG_FLOAT, .dest = ARG_DEST(float, d), .value = (v), .min = (lo), .max = (hi), .help = (h)}
#define FLAG_DOUBLE(n, d, v, lo, hi, h) \
    {.name = (n), .kind = ARG_DOUBLE, .dest = ARG_DEST(double, d), .value = (v), .min = (lo), .max = (hi), .help = (h)}
#define FLAG_SWITCH(n, d, v, off, on, h) \
    {.name = (n), .kind = ARG_SWITCH, .dest = ARG_DEST(bool, d), .value = (v), .choices = {(off), (on)}, .help = (h)}
#define FLAG_CUSTOM(n, fn, d, v, h) \
    {.name = (n), .kind = ARG_CUSTOM, .parse = (fn), .dest = (d), .value = (v), .help = (h)}
#define FLAG_CONFIG(h) {.name = "config", .kind = ARG_CONFIG, .value = "FILE", .help = (h)}
#define FLAG_HELP {.name = "help", .kind = ARG_HELP}
#define FLAG_SECTION(title) {.name = (title), .kind = ARG_SECTION}

typedef enum {
    ARGS_NO_OPERANDS,        /* a non-flag argument is an error */
    ARGS_OPERANDS,           /* operands may stand anywhere among the flags */
    ARGS_OPERANDS_LAST,      /* the first operand ends the flags (the rest may look like flags) */
} args_operands;

/* Runs after the flags: checks the operands and the flags that depend on each other, and
 * may fill defaults that depend on them. cli is arg_command.cli. */
typedef augur_status (*arg_check_fn)(void *cli, int n_operands, char **operands, augur_error *err);

typedef struct {
    const char *name;        /* "bench": messages say "see augur bench --help" */
    const char *synopsis;    /* --help text before the flags: usage lines and description */
    const arg_spec *specs;
    size_t n_specs;
    const char *epilogue;    /* --help text after the flags, or NULL */
    int help_column;         /* column where flag descriptions start */
    args_operands operands;
    arg_check_fn check;      /* or NULL */
    void *cli;
} arg_command;

/* The result of args_parse when the command should run. */
#define ARGS_RUN (-1)

/* Parses argv (argv[0] is the command name) into the specs' destinations, in order, then
 * runs cmd->check. Returns ARGS_RUN to run, 0 after printing --help, or the exit code of
 * the first error, reported with cli_report_once. A command with an ARG_CONFIG spec passes
 * config: values from the file live there (config_args_free it after the run, whatever
 * the result); other commands pass NULL, their values pointing into argv. */
int args_parse(const arg_command *cmd, int argc, char **argv, config_args *config);
void args_print_help(const arg_command *cmd, FILE *f);
/* Checks one flag as a config file gives it: name (without "--") must be one of cmd's
 * flags and value (NULL: a flag without a value) valid for it. Writes into the spec's
 * destination like parsing does, so pass a command whose cli is scratch. */
augur_status args_check_flag(const arg_command *cmd, const char *name, const char *value, augur_error *err);

augur_status arg_int(const char *flag, const char *text, long min, long max, int *out, augur_error *err);
augur_status arg_u64(const char *flag, const char *text, uint64_t *out, augur_error *err);
augur_status arg_double(const char *flag, const char *text, double min, double max, double *out,
                        augur_error *err);
augur_status arg_float(const char *flag, const char *text, double min, double max, float *out, augur_error *err);

/* Sets *kind to the --device default ($AUGUR_DEVICE, else auto). Returns ARGS_RUN, or the
 * exit code of a bad $AUGUR_DEVICE (reported once). */
int args_device_default(augur_device_kind *kind);

/* ARG_CUSTOM parser of --device (auto | cpu | cuda) into an augur_device_kind, and the
 * start of its help text. */
augur_status arg_device_kind(const char *flag, const char *text, void *dest, augur_error *err);
#define ARG_DEVICE_HELP \
    "auto | cpu | cuda (default: $AUGUR_DEVICE, else auto: cuda\n" \
    "when a GPU is visible)"

/* Parses "1 2 3" (spaces or commas) into a malloc'ed id array; each id in [0, vocab). */
augur_status parse_token_ids(const char *flag, const char *text, int vocab, int32_t **ids, size_t *n,
                             augur_error *err);

/* Online CPUs (at least 1): the default of --threads. */
int online_cpus(void);

/* Prints "augur: <message>" to stderr and returns the CLI exit code for err. */
int cli_report(const augur_error *err);

/* cli_report for errors every rank of an mpirun job meets alike (flags, config files):
 * only rank 0 prints; the other ranks return the same exit code silently. */
int cli_report_once(const augur_error *err);

/* "s" unless n is 1: printf("%d thread%s", n, plural(n)). */
static inline const char *plural(unsigned long long n)
{
    return n == 1 ? "" : "s";
}

#endif
