/* Reading an augur launch config (launch_config.h). */
#include "launcher/launch_config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const launch_only_keys[] = {"command", "hostfile", "oversubscribe", "mpirun"};

bool launch_config_key_is_launch_only(const char *key)
{
    for (size_t i = 0; i < sizeof launch_only_keys / sizeof launch_only_keys[0]; i++)
        if (!strcmp(key, launch_only_keys[i]))
            return true;
    return false;
}

const char *launch_command_name(launch_command c)
{
    return c == LAUNCH_BENCH ? "bench" : c == LAUNCH_SERVE ? "serve" : "generate";
}

static augur_status bad_key(const launch_config *c, const char *key, const char *fmt, const char *got,
                            augur_error *err)
{
    char escaped[128];
    return augur_fail(err, AUGUR_E_INPUT, "%s: key \"%s\": %s%s%s%s", c->path, key, fmt, got ? ", got '" : "",
                      got ? augur_escape(got, escaped, sizeof escaped) : "", got ? "'" : "");
}

/* A JSON value as command-line text: strings as they are, numbers printed, true as
 * NULL with *present (a flag without value), false and null as absent. */
static augur_status value_text(const launch_config *c, const char *key, json_t *v, char **text, bool *present,
                               augur_error *err)
{
    char buf[64];
    *text = NULL;
    *present = true;
    if (json_is_false(v) || json_is_null(v)) {
        *present = false;
        return AUGUR_OK;
    }
    if (json_is_true(v))
        return AUGUR_OK;
    if (json_is_string(v))
        *text = strdup(json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v)), *text = strdup(buf);
    else if (json_is_real(v))
        snprintf(buf, sizeof buf, "%.9g", json_real_value(v)), *text = strdup(buf);
    else
        return bad_key(c, key, "must be a string, a number or a boolean, not an array or object", NULL, err);
    return *text ? AUGUR_OK : augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", c->path);
}

static augur_status int_key(const launch_config *c, const char *key, json_t *v, int min, int max, int *out,
                            augur_error *err)
{
    char msg[96];
    snprintf(msg, sizeof msg, "must be an integer in %d..%d", min, max);
    if (!json_is_integer(v)) {
        char *dump = json_dumps(v, JSON_ENCODE_ANY);
        augur_status st = bad_key(c, key, msg, dump ? dump : "?", err);
        free(dump);
        return st;
    }
    json_int_t x = json_integer_value(v);
    if (x < min || x > max) {
        char got[32];
        snprintf(got, sizeof got, "%lld", (long long)x);
        return bad_key(c, key, msg, got, err);
    }
    *out = (int)x;
    return AUGUR_OK;
}

static augur_status string_key(const launch_config *c, const char *key, json_t *v, char **out, augur_error *err)
{
    if (!json_is_string(v) || !json_string_value(v)[0]) {
        char *dump = json_dumps(v, JSON_ENCODE_ANY);
        augur_status st = bad_key(c, key, "must be a non-empty string", dump ? dump : "?", err);
        free(dump);
        return st;
    }
    free(*out);
    *out = strdup(json_string_value(v));
    return *out ? AUGUR_OK : augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", c->path);
}

static augur_status add_flag(launch_config *c, const char *key, char *value, augur_error *err)
{
    launch_flag *a = realloc(c->flags, (size_t)(c->n_flags + 1) * sizeof *a);
    char *k = strdup(key);
    if (!a || !k) {
        free(k);
        free(value);
        if (a)
            c->flags = a;
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", c->path);
    }
    c->flags = a;
    c->flags[c->n_flags++] = (launch_flag){.key = k, .value = value};
    return AUGUR_OK;
}

/* The keys launch itself reads; *used says whether key was one of them. */
static augur_status layout_key(launch_config *c, const char *key, json_t *v, bool *used, augur_error *err)
{
    *used = true;
    if (!strcmp(key, "tp"))
        return int_key(c, key, v, 1, 4096, &c->tp, err);
    if (!strcmp(key, "replicas"))
        return int_key(c, key, v, 1, 4096, &c->replicas, err);
    if (!strcmp(key, "simulate-hosts"))
        return int_key(c, key, v, 1, 4096, &c->simulate_hosts, err);
    if (!strcmp(key, "draft-placement")) {
        char *s = NULL;
        augur_status st = string_key(c, key, v, &s, err);
        augur_error inner = {0};
        if (!st && draft_placement_parse("value", s, &c->draft, &inner))
            st = bad_key(c, key, "must be own-gpu, shared or own-node", s, err);
        free(s);
        return st;
    }
    if (!strcmp(key, "device")) {
        augur_status st = string_key(c, key, v, &c->device, err);
        if (!st && strcmp(c->device, "auto") && strcmp(c->device, "cpu") && strcmp(c->device, "cuda"))
            st = bad_key(c, key, "must be auto, cpu or cuda", c->device, err);
        return st;
    }
    if (!strcmp(key, "command")) {
        char *s = NULL;
        augur_status st = string_key(c, key, v, &s, err);
        if (!st && !strcmp(s, "generate"))
            c->command = LAUNCH_GENERATE;
        else if (!st && !strcmp(s, "bench"))
            c->command = LAUNCH_BENCH;
        else if (!st && !strcmp(s, "serve"))
            c->command = LAUNCH_SERVE;
        else if (!st)
            st = bad_key(c, key, "must be generate, bench or serve", s, err);
        free(s);
        return st;
    }
    if (!strcmp(key, "hostfile"))
        return string_key(c, key, v, &c->hostfile, err);
    if (!strcmp(key, "mpirun"))
        return string_key(c, key, v, &c->mpirun, err);
    if (!strcmp(key, "oversubscribe")) {
        if (!json_is_boolean(v))
            return bad_key(c, key, "must be true or false", NULL, err);
        c->oversubscribe = json_is_true(v);
        return AUGUR_OK;
    }
    *used = false;
    return AUGUR_OK;
}

/* What launch needs to know of the command's own flags (models, speculation). */
static augur_status note_flag(launch_config *c, const char *key, const char *value, augur_error *err)
{
    if ((!strcmp(key, "target") && c->command != LAUNCH_BENCH) || (!strcmp(key, "model") && c->command == LAUNCH_BENCH)) {
        free(c->target);
        if (!(c->target = strdup(value ? value : "")))
            return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", c->path);
    } else if (!strcmp(key, "draft")) {
        free(c->draft_model);
        if (!(c->draft_model = strdup(value ? value : "")))
            return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", c->path);
    } else if (!strcmp(key, "draft-layers") && value) {
        c->draft_layers = atoi(value);
    } else if (!strcmp(key, "no-speculation")) {
        c->no_speculation = true;
    } else if (!strcmp(key, "load-format") && value) {
        c->dummy = !strcmp(value, "dummy");
    }
    return AUGUR_OK;
}

/* bench runs one rank: the generate-only layout keys make no sense there, and tp is its --tp-size. */
static const char *bench_flag_name(const char *key)
{
    return !strcmp(key, "tp") ? "tp-size" : key;
}

static augur_status command_flag(launch_config *c, const char *key, json_t *v, launch_flag_check_fn check,
                                 augur_error *err)
{
    if (c->command == LAUNCH_BENCH &&
        (!strcmp(key, "replicas") || !strcmp(key, "draft-placement") || !strcmp(key, "simulate-hosts")))
        return bad_key(c, key, "is a layout key of command generate; command bench runs one rank", NULL, err);
    /* serve answers every request through one target group, its leader holding the port */
    if (c->command == LAUNCH_SERVE &&
        (!strcmp(key, "replicas") || !strcmp(key, "draft-placement") || !strcmp(key, "simulate-hosts")))
        return bad_key(c, key, "is a layout key of command generate; command serve runs one target group", NULL, err);
    const char *name = c->command == LAUNCH_BENCH ? bench_flag_name(key) : key;
    char *text = NULL;
    bool present = false;
    augur_status st = value_text(c, key, v, &text, &present, err);
    if (st || !present)
        return st;
    augur_error inner = {0};
    if (check && check(c->command, name, text, &inner)) {
        free(text);
        return augur_fail(err, AUGUR_E_INPUT, "%s: key \"%s\": %s", c->path, key, inner.message);
    }
    if ((st = note_flag(c, name, text, err))) {
        free(text);
        return st;
    }
    return add_flag(c, name, text, err);
}

static augur_status load_root(const char *path, json_t **root, augur_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return augur_fail(err, AUGUR_E_INPUT, "%s: cannot open: %s", path, strerror(errno));
    json_error_t jerr;
    *root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    fclose(f);
    if (!*root)
        return augur_fail(err, AUGUR_E_INPUT, "%s: line %d: %s", path, jerr.line, jerr.text);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return augur_fail(err, AUGUR_E_INPUT, "%s: not a JSON object of keys (see configs/README.md)", path);
    }
    return AUGUR_OK;
}

augur_status launch_config_load(launch_config *out, const char *path, launch_flag_check_fn check, augur_error *err)
{
    *out = (launch_config){.tp = 1, .replicas = 1, .draft = DRAFT_OWN_GPU};
    out->path = strdup(path);
    out->device = strdup("auto");
    out->mpirun = strdup("mpirun");
    if (!out->path || !out->device || !out->mpirun) {
        launch_config_free(out);
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", path);
    }
    json_t *root = NULL;
    augur_status st = load_root(path, &root, err);
    const char *key;
    json_t *v;
    /* "command" first: it decides how the other keys read */
    json_t *cmd = root ? json_object_get(root, "command") : NULL;
    bool used = false;
    if (!st && cmd)
        st = layout_key(out, "command", cmd, &used, err);
    if (!st) {
        json_object_foreach(root, key, v) {
            /* false and null say "not given", as on the command line */
            if (!strcmp(key, "command") || json_is_false(v) || json_is_null(v))
                continue;
            if ((st = layout_key(out, key, v, &used, err)))
                break;
            if (launch_config_key_is_launch_only(key))
                continue;
            /* the layout keys generate reads too travel on as its flags */
            if ((st = command_flag(out, key, v, check, err)))
                break;
        }
    }
    json_decref(root);
    if (!st && out->command != LAUNCH_BENCH && !out->target)
        st = augur_fail(err, AUGUR_E_INPUT, "%s: key \"target\" is missing: the target model's directory", path);
    if (!st && out->command != LAUNCH_BENCH && !out->draft_model && !out->draft_layers && !out->no_speculation)
        st = augur_fail(err, AUGUR_E_INPUT,
                        "%s: key \"draft\" is missing: the draft model's directory (or \"draft-layers\": K, or "
                        "\"no-speculation\": true)",
                        path);
    if (!st && out->command == LAUNCH_BENCH && !out->target)
        st = augur_fail(err, AUGUR_E_INPUT, "%s: key \"model\" is missing: the model directory command bench times",
                        path);
    if (!st && out->command == LAUNCH_BENCH)
        out->replicas = 1;
    if (st)
        launch_config_free(out);
    return st;
}

void launch_config_free(launch_config *c)
{
    for (int i = 0; i < c->n_flags; i++) {
        free(c->flags[i].key);
        free(c->flags[i].value);
    }
    free(c->flags);
    free(c->path);
    free(c->device);
    free(c->hostfile);
    free(c->mpirun);
    free(c->target);
    free(c->draft_model);
    memset(c, 0, sizeof *c);
}
