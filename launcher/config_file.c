#include "launcher/config_file.h"
#include "launcher/launch_config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *own(config_args *c, char *s)
{
    if (s)
        c->owned[c->n_owned++] = s;
    return s;
}

static augur_status add_entry(config_args *c, const char *path, const char *key, json_t *v, augur_error *err)
{
    char buf[64];
    const char *value = NULL;
    /* keys only augur launch reads: a launch config serves --config as well */
    if (json_is_false(v) || json_is_null(v) || launch_config_key_is_launch_only(key))
        return AUGUR_OK;
    if (json_is_string(v)) {
        value = json_string_value(v);
    } else if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        value = buf;
    } else if (json_is_real(v)) {
        snprintf(buf, sizeof buf, "%.9g", json_real_value(v));
        value = buf;
    } else if (!json_is_true(v)) {
        return augur_fail(err, AUGUR_E_INPUT, "%s: \"%s\" must be a string, a number or a boolean", path, key);
    }
    size_t len = strlen(key) + 3;
    char *flag = own(c, malloc(len));
    if (!flag)
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", path);
    snprintf(flag, len, "--%s", key);
    c->argv[c->argc++] = flag;
    if (value) {
        char *copy = own(c, strdup(value));
        if (!copy)
            return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", path);
        c->argv[c->argc++] = copy;
    }
    return AUGUR_OK;
}

/* Opened here rather than by json_load_file, so that a file that cannot be opened says
 * why (errno) instead of a parse error at line -1. */
static augur_status load_object(const char *path, json_t **root, augur_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return augur_fail(err, AUGUR_E_INPUT, "--config: %s: cannot open: %s", path, strerror(errno));
    json_error_t jerr;
    *root = json_loadf(f, 0, &jerr);
    fclose(f);
    if (!*root && jerr.line > 0)
        return augur_fail(err, AUGUR_E_INPUT, "--config: %s: %s (line %d)", path, jerr.text, jerr.line);
    if (!*root)
        return augur_fail(err, AUGUR_E_INPUT, "--config: %s: %s", path, jerr.text);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return augur_fail(err, AUGUR_E_INPUT, "--config: %s is not a JSON object of flags", path);
    }
    return AUGUR_OK;
}

augur_status config_args_expand(config_args *out, int argc, char **argv, augur_error *err)
{
    *out = (config_args){0};
    const char *path = NULL;
    int at = -1, span = 0;
    for (int i = 1; i < argc && !path; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            path = argv[i + 1], at = i, span = 2;
        } else if (!strncmp(argv[i], "--config=", 9)) {
            path = argv[i] + 9, at = i, span = 1;
        } else if (!strcmp(argv[i], "--config")) {
            return augur_fail(err, AUGUR_E_INPUT, "--config needs a file");
        }
    }
    json_t *root = NULL;
    size_t n_keys = 0;
    if (path) {
        augur_status st = load_object(path, &root, err);
        if (st)
            return st;
        n_keys = json_object_size(root);
    }
    out->argv = calloc((size_t)argc + 2 * n_keys + 1, sizeof *out->argv);
    out->owned = calloc(2 * n_keys + 1, sizeof *out->owned);
    augur_status st = out->argv && out->owned ? AUGUR_OK : augur_fail(err, AUGUR_E_NOMEM, "out of memory");
    if (!st)
        out->argv[out->argc++] = argv[0];
    const char *key;
    json_t *v;
    if (root) {
        json_object_foreach(root, key, v) {
            if (st || (st = add_entry(out, path, key, v, err)))
                break;
        }
    }
    for (int i = 1; !st && i < argc; i++)
        if (i < at || i >= at + span)
            out->argv[out->argc++] = argv[i];
    json_decref(root);
    if (st)
        config_args_free(out);
    return st;
}

void config_args_free(config_args *c)
{
    for (int i = 0; i < c->n_owned; i++)
        free(c->owned[i]);
    free(c->owned);
    free(c->argv);
    *c = (config_args){0};
}
