#include "launcher/args.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#define ARGS_MAX_SPECS 64          /* flags of one command, sections included */
#define ARGS_ITEM_MAX 64           /* longest item of a comma-separated list */
#define ARGS_SPEC_VAL 1000         /* getopt_long's value for spec i is this + i */
#define ARGS_ERROR_BARRIER_S 10.0  /* see cli_report_once */

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

augur_status arg_double(const char *flag, const char *text, double min, double max, double *out,
                        augur_error *err)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (!text[0] || *end || errno || !isfinite(v))
        return augur_fail(err, AUGUR_E_INPUT, "%s: '%s' is not a number", flag, text);
    if (v < min || v > max)
        return augur_fail(err, AUGUR_E_INPUT, "%s: %g is outside %g..%g", flag, v, min, max);
    *out = v;
    return AUGUR_OK;
}

augur_status arg_float(const char *flag, const char *text, double min, double max, float *out, augur_error *err)
{
    double v = 0;
    augur_status st = arg_double(flag, text, min, max, &v, err);
    if (!st)
        *out = (float)v;
    return st;
}

int args_device_default(augur_device_kind *kind)
{
    augur_error err = {0};
    return device_kind_default(kind, &err) ? cli_report_once(&err) : ARGS_RUN;
}

augur_status arg_device_kind(const char *flag, const char *text, void *dest, augur_error *err)
{
    return device_kind_parse(flag, text, dest, err);
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

int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int exit_code(const augur_error *err)
{
    int code = augur_exit_code(err->code);
    return code ? code : 1;
}

int cli_report(const augur_error *err)
{
    fprintf(stderr, "augur: %s\n", err->message[0] ? err->message : "unknown error");
    return exit_code(err);
}

/* This process's rank in a job started by mpirun / mpiexec, or -1 outside one. Read from
 * the launcher's environment because flags are parsed before MPI_Init (which a bad flag
 * never reaches). */
static int job_rank(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && v[0])
            return atoi(v);
    }
    return -1;
}

int cli_report_once(const augur_error *err)
{
    int rank = job_rank();
    if (rank < 0)
        return cli_report(err);
    /* Under mpirun every rank parsed the same flags and failed alike. Rank 0 prints; then
     * all ranks meet in a barrier before exiting, because mpirun kills the job at the first
     * non-zero exit and a silent rank leaving early could take rank 0 down before its line
     * is out. The barrier has a deadline in case some rank did not fail the same way. */
    int code = rank == 0 ? cli_report(err) : exit_code(err);
    fflush(stderr);
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS)
        return code;
    MPI_Request req;
    if (MPI_Ibarrier(MPI_COMM_WORLD, &req) == MPI_SUCCESS) {
        const struct timespec pause = {.tv_nsec = 1000000};
        int done = 0;
        for (double waited = 0; !done && waited < ARGS_ERROR_BARRIER_S; waited += 1e-3) {
            MPI_Test(&req, &done, MPI_STATUS_IGNORE);
            if (!done)
                nanosleep(&pause, NULL);
        }
        if (!done) /* a rank that did not fail here: leave without it */
            MPI_Abort(MPI_COMM_WORLD, code);
    }
    MPI_Finalize();
    return code;
}

/* ---- values ---- */

static augur_status check_above_min(const arg_spec *s, const char *flag, const char *text, double v,
                                    augur_error *err)
{
    if (s->above_min && !(v > s->min))
        return augur_fail(err, AUGUR_E_INPUT, "%s: %s is not > %g", flag, text, s->min);
    return AUGUR_OK;
}

static augur_status parse_float(const arg_spec *s, const char *flag, const char *text, float *out,
                                augur_error *err)
{
    augur_status st = arg_float(flag, text, s->min, s->max, out, err);
    return st ? st : check_above_min(s, flag, text, *out, err);
}

static augur_status parse_double(const arg_spec *s, const char *flag, const char *text, augur_error *err)
{
    double *out = s->dest;
    augur_status st = arg_double(flag, text, s->min, s->max, out, err);
    return st ? st : check_above_min(s, flag, text, *out, err);
}

static augur_status bad_list(const arg_spec *s, const char *flag, const char *text, augur_error *err)
{
    if (s->kind == ARG_INT_LIST)
        return augur_fail(err, AUGUR_E_INPUT, "%s: '%s' is not a comma-separated list of %ld..%ld", flag, text,
                          (long)s->min, (long)s->max);
    return augur_fail(err, AUGUR_E_INPUT, "%s: '%s' is not a comma-separated list of numbers", flag, text);
}

static augur_status list_item(const arg_spec *s, const char *flag, const char *item, size_t i, augur_error *err)
{
    if (s->kind == ARG_INT_LIST)
        return arg_int(flag, item, (long)s->min, (long)s->max, (int *)s->dest + i, err);
    return parse_float(s, flag, item, (float *)s->dest + i, err);
}

/* "1,6" -> {1, 6}: no empty items, at most s->cap of them. */
static augur_status parse_list(const arg_spec *s, const char *flag, const char *text, augur_error *err)
{
    size_t n = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[ARGS_ITEM_MAX];
        if (len == 0 || len >= sizeof item)
            return bad_list(s, flag, text, err);
        if (n == s->cap)
            return augur_fail(err, AUGUR_E_INPUT, "%s: more than %zu values", flag, s->cap);
        memcpy(item, p, len);
        item[len] = '\0';
        augur_status st = list_item(s, flag, item, n, err);
        if (st)
            return st;
        n++;
        if (!comma)
            break;
        p = comma + 1;
    }
    *s->count = n;
    return AUGUR_OK;
}

static augur_status parse_switch(const arg_spec *s, const char *flag, const char *text, augur_error *err)
{
    for (int i = 0; i < 2; i++) {
        if (!strcmp(text, s->choices[i])) {
            *(bool *)s->dest = i == 1;
            return AUGUR_OK;
        }
    }
    return augur_fail(err, AUGUR_E_INPUT, "%s: '%s' is not %s or %s", flag, text, s->choices[0], s->choices[1]);
}

/* text is NULL for flags that take no value. */
static augur_status parse_value(const arg_spec *s, const char *text, augur_error *err)
{
    char flag[80];
    snprintf(flag, sizeof flag, "--%s", s->name);
    if (s->given)
        *s->given = true;
    switch (s->kind) {
    case ARG_STRING: *(const char **)s->dest = text; return AUGUR_OK;
    case ARG_FLAG: *(bool *)s->dest = true; return AUGUR_OK;
    case ARG_INT: return arg_int(flag, text, (long)s->min, (long)s->max, s->dest, err);
    case ARG_U64: return arg_u64(flag, text, s->dest, err);
    case ARG_FLOAT: return parse_float(s, flag, text, s->dest, err);
    case ARG_DOUBLE: return parse_double(s, flag, text, err);
    case ARG_INT_LIST:
    case ARG_FLOAT_LIST: return parse_list(s, flag, text, err);
    case ARG_SWITCH: return parse_switch(s, flag, text, err);
    case ARG_CUSTOM: return s->parse(flag, text, s->dest, err);
    case ARG_CONFIG:
        /* config_args_expand took the first one out of argv */
        return augur_fail(err, AUGUR_E_INPUT, "--config: only one config file may be given");
    default: return augur_fail(err, AUGUR_E_INTERNAL, "%s: unhandled flag kind %d", flag, (int)s->kind);
    }
}

/* ---- getopt_long ---- */

static bool is_flag(const arg_spec *s)
{
    return s->kind != ARG_SECTION && s->kind != ARG_HELP;
}

static bool takes_value(const arg_spec *s)
{
    return s->kind != ARG_FLAG;
}

augur_status args_check_flag(const arg_command *cmd, const char *name, const char *value, augur_error *err)
{
    for (size_t i = 0; i < cmd->n_specs; i++) {
        const arg_spec *s = &cmd->specs[i];
        if (!is_flag(s) || strcmp(s->name, name))
            continue;
        if (s->kind == ARG_CONFIG)
            return augur_fail(err, AUGUR_E_INPUT, "a config file cannot name another (--config)");
        if (!takes_value(s) && value)
            return augur_fail(err, AUGUR_E_INPUT, "--%s takes no value: write true (or false)", name);
        if (takes_value(s) && !value)
            return augur_fail(err, AUGUR_E_INPUT, "--%s needs a value, not true", name);
        if (s->kind == ARG_STRING && s->required && !value[0])
            return augur_fail(err, AUGUR_E_INPUT, "--%s must not be empty", name);
        return parse_value(s, value, err);
    }
    return augur_fail(err, AUGUR_E_INPUT, "not a flag of augur %s (see augur %s --help)", cmd->name, cmd->name);
}


/* getopt_long's tables for cmd: long options (spec i answers ARGS_SPEC_VAL + i, --help
 * 'h') and the short-option string. */
static augur_status build_getopt(const arg_command *cmd, struct option *longs, char *shorts, augur_error *err)
{
    if (cmd->n_specs > ARGS_MAX_SPECS)
        return augur_fail(err, AUGUR_E_INTERNAL, "augur %s: %zu flags, at most %d", cmd->name, cmd->n_specs,
                          ARGS_MAX_SPECS);
    size_t n = 0;
    char *sp = shorts;
    if (cmd->operands == ARGS_OPERANDS_LAST)
        *sp++ = '+';
    *sp++ = ':'; /* a missing value returns ':', told apart from an unknown flag */
    *sp++ = 'h';
    for (size_t i = 0; i < cmd->n_specs; i++) {
        const arg_spec *s = &cmd->specs[i];
        if (!is_flag(s))
            continue;
        longs[n++] = (struct option){s->name, takes_value(s) ? required_argument : no_argument, NULL,
                                     ARGS_SPEC_VAL + (int)i};
        if (s->short_name) {
            *sp++ = s->short_name;
            if (takes_value(s))
                *sp++ = ':';
        }
    }
    longs[n++] = (struct option){"help", no_argument, NULL, 'h'};
    longs[n] = (struct option){0};
    *sp = '\0';
    return AUGUR_OK;
}

/* The spec behind getopt_long's answer c, or NULL. */
static const arg_spec *spec_of(const arg_command *cmd, int c)
{
    if (c >= ARGS_SPEC_VAL && c < ARGS_SPEC_VAL + (int)cmd->n_specs)
        return &cmd->specs[c - ARGS_SPEC_VAL];
    for (size_t i = 0; i < cmd->n_specs; i++)
        if (c && cmd->specs[i].short_name == c && is_flag(&cmd->specs[i]))
            return &cmd->specs[i];
    return NULL;
}

/* getopt_long answered '?': an unknown flag, or a value given to one that takes none. */
static augur_status unknown_flag(const arg_command *cmd, char **argv, augur_error *err)
{
    const arg_spec *s = spec_of(cmd, optopt);
    if (s && optopt >= ARGS_SPEC_VAL)
        return augur_fail(err, AUGUR_E_INPUT, "--%s takes no value (see augur %s --help)", s->name, cmd->name);
    if (optopt)
        return augur_fail(err, AUGUR_E_INPUT, "unknown option '-%c' (see augur %s --help)", optopt, cmd->name);
    return augur_fail(err, AUGUR_E_INPUT, "unknown option '%s' (see augur %s --help)", argv[optind - 1],
                      cmd->name);
}

/* Runs getopt_long over argv; *first_operand is where the operands start after it. */
static augur_status scan_flags(const arg_command *cmd, int argc, char **argv, bool *help, int *first_operand,
                               augur_error *err)
{
    struct option longs[ARGS_MAX_SPECS + 2];
    char shorts[2 * ARGS_MAX_SPECS + 4];
    augur_status st = build_getopt(cmd, longs, shorts, err);
    optind = 0; /* 0, not 1: glibc then also forgets the previous scan's optstring */
    opterr = 0;
    int c;
    while (!st && (c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        if (c == 'h') {
            *help = true;
            return AUGUR_OK;
        }
        const arg_spec *s = spec_of(cmd, c);
        if (c == ':')
            st = augur_fail(err, AUGUR_E_INPUT, "%s needs a value", argv[optind - 1]);
        else if (c == '?' || !s)
            st = unknown_flag(cmd, argv, err);
        else
            st = parse_value(s, optarg, err);
    }
    *first_operand = optind;
    return st;
}

static augur_status check_required(const arg_command *cmd, augur_error *err)
{
    for (size_t i = 0; i < cmd->n_specs; i++) {
        const arg_spec *s = &cmd->specs[i];
        const char *v = s->required && s->kind == ARG_STRING ? *(const char **)s->dest : "given";
        if (!v || !v[0])
            return augur_fail(err, AUGUR_E_INPUT, "--%s %s is required (see augur %s --help)", s->name,
                              s->value ? s->value : "", cmd->name);
    }
    return AUGUR_OK;
}

static bool has_config(const arg_command *cmd)
{
    for (size_t i = 0; i < cmd->n_specs; i++)
        if (cmd->specs[i].kind == ARG_CONFIG)
            return true;
    return false;
}

/* Replaces argv by its expansion when the command reads --config. */
static augur_status expand_config(const arg_command *cmd, int *argc, char ***argv, config_args *config,
                                  augur_error *err)
{
    if (config)
        *config = (config_args){0};
    if (!has_config(cmd))
        return AUGUR_OK;
    if (!config)
        return augur_fail(err, AUGUR_E_INTERNAL, "augur %s: --config without storage for its values", cmd->name);
    augur_status st = config_args_expand(config, *argc, *argv, err);
    if (!st) {
        *argc = config->argc;
        *argv = config->argv;
    }
    return st;
}

int args_parse(const arg_command *cmd, int argc, char **argv, config_args *config)
{
    augur_error err = {0};
    bool help = false;
    int first = argc;
    augur_status st = expand_config(cmd, &argc, &argv, config, &err);
    if (!st)
        st = scan_flags(cmd, argc, argv, &help, &first, &err);
    if (!st && help) {
        args_print_help(cmd, stdout);
        return 0;
    }
    if (!st && cmd->operands == ARGS_NO_OPERANDS && first < argc)
        st = augur_fail(&err, AUGUR_E_INPUT, "unexpected argument '%s' (see augur %s --help)", argv[first],
                        cmd->name);
    if (!st)
        st = check_required(cmd, &err);
    if (!st && cmd->check)
        st = cmd->check(cmd->cli, argc - first, argv + first, &err);
    return st ? cli_report_once(&err) : ARGS_RUN;
}

/* ---- --help ---- */

/* "  LEFT" padded to column, then help; help's further lines are indented to column. */
static void print_flag_line(FILE *f, const char *left, const char *help, int column)
{
    int w = fprintf(f, "  %s", left);
    fprintf(f, "%*s", w + 2 > column ? 2 : column - w, "");
    const char *p = help ? help : "";
    for (;;) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        fprintf(f, "%.*s\n", len, p);
        if (!nl)
            break;
        p = nl + 1;
        fprintf(f, "%*s", column, "");
    }
}

static void print_spec(FILE *f, const arg_spec *s, int column)
{
    char left[128];
    if (s->kind == ARG_SECTION) {
        fprintf(f, "\n%s\n", s->name);
        return;
    }
    if (s->kind == ARG_HELP) {
        print_flag_line(f, "-h, --help", "show this help", column);
        return;
    }
    int n = s->short_name ? snprintf(left, sizeof left, "-%c, ", s->short_name) : 0;
    snprintf(left + n, sizeof left - (size_t)n, "--%s%s%s", s->name, s->value ? " " : "", s->value ? s->value : "");
    print_flag_line(f, left, s->help, column);
}

void args_print_help(const arg_command *cmd, FILE *f)
{
    fputs(cmd->synopsis, f);
    bool help_listed = false;
    for (size_t i = 0; i < cmd->n_specs; i++) {
        print_spec(f, &cmd->specs[i], cmd->help_column);
        help_listed |= cmd->specs[i].kind == ARG_HELP;
    }
    if (!help_listed)
        print_spec(f, &(arg_spec){.kind = ARG_HELP}, cmd->help_column);
    if (cmd->epilogue)
        fputs(cmd->epilogue, f);
}
