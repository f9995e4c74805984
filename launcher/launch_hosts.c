/* Host lists for augur launch: Open MPI hostfiles, extended with gpus= and cores=
 * (launch_layout.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/launch_layout.h"

#define HOSTS_MAX 65536
#define HOST_COUNT_MAX (1 << 20)

static augur_status add_host(launch_hosts *h, const launch_host *x, augur_error *err)
{
    launch_host *a = realloc(h->hosts, (size_t)(h->n + 1) * sizeof *a);
    if (!a)
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", h->source);
    h->hosts = a;
    h->hosts[h->n++] = *x;
    return AUGUR_OK;
}

static augur_status count_value(const char *path, int line, const char *key, const char *text, int *out,
                                augur_error *err)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (!text[0] || *end || errno || v < 0 || v > HOST_COUNT_MAX)
        return augur_fail(err, AUGUR_E_INPUT, "%s line %d: %s='%s' is not a count in 0..%d", path, line, key, text,
                          HOST_COUNT_MAX);
    *out = (int)v;
    return AUGUR_OK;
}

/* One "key=value" word; in_comment: after '#', where only gpus= and cores= count and
 * other words are prose. */
static augur_status host_key(const char *path, int line, char *word, bool in_comment, launch_host *x,
                             bool *slots_given, augur_error *err)
{
    char *eq = strchr(word, '=');
    if (!eq) {
        if (in_comment)
            return AUGUR_OK;
        return augur_fail(err, AUGUR_E_INPUT, "%s line %d: '%s' after the host name is not KEY=N (slots=, gpus=, "
                          "cores=)", path, line, word);
    }
    *eq = '\0';
    const char *key = word, *val = eq + 1;
    if (!strcmp(key, "gpus"))
        return count_value(path, line, key, val, &x->gpus, err);
    if (!strcmp(key, "cores"))
        return count_value(path, line, key, val, &x->cores, err);
    if (in_comment)
        return AUGUR_OK;
    if (!strcmp(key, "slots")) {
        *slots_given = true;
        augur_status st = count_value(path, line, key, val, &x->slots, err);
        if (!st && x->slots < 1)
            return augur_fail(err, AUGUR_E_INPUT, "%s line %d: slots=%s: a host needs at least 1 slot", path, line,
                              val);
        return st;
    }
    if (!strcmp(key, "max_slots") || !strcmp(key, "max-slots")) {
        int ignored = 0;
        return count_value(path, line, key, val, &ignored, err);
    }
    return augur_fail(err, AUGUR_E_INPUT, "%s line %d: unknown key '%s' (slots=, max_slots=, gpus=, cores=)", path,
                      line, key);
}

static augur_status parse_line(launch_hosts *h, const char *path, int lineno, char *line, augur_error *err)
{
    char *hash = strchr(line, '#');
    if (hash)
        *hash++ = '\0';
    launch_host x = {.slots = 1, .line = lineno};
    bool slots_given = false;
    char *save = NULL;
    char *name = strtok_r(line, " \t\r", &save);
    if (!name) /* blank, or a comment alone */
        return AUGUR_OK;
    if (strlen(name) >= sizeof x.name)
        return augur_fail(err, AUGUR_E_INPUT, "%s line %d: host name longer than %zu bytes", path, lineno,
                          sizeof x.name - 1);
    snprintf(x.name, sizeof x.name, "%s", name);
    augur_status st = AUGUR_OK;
    for (char *w; !st && (w = strtok_r(NULL, " \t\r", &save));)
        st = host_key(path, lineno, w, false, &x, &slots_given, err);
    save = NULL;
    for (char *w = hash ? strtok_r(hash, " \t\r", &save) : NULL; !st && w; w = strtok_r(NULL, " \t\r", &save))
        st = host_key(path, lineno, w, true, &x, &slots_given, err);
    if (st)
        return st;
    for (int i = 0; i < h->n; i++)
        if (!strcmp(h->hosts[i].name, x.name))
            return augur_fail(err, AUGUR_E_INPUT, "%s line %d: host %s is listed again (first on line %d)", path,
                              lineno, x.name, h->hosts[i].line);
    if (h->n >= HOSTS_MAX)
        return augur_fail(err, AUGUR_E_INPUT, "%s: more than %d hosts", path, HOSTS_MAX);
    return add_host(h, &x, err);
}

augur_status launch_hosts_parse(launch_hosts *out, const char *path, const char *text, augur_error *err)
{
    *out = (launch_hosts){.source = path};
    char *copy = strdup(text);
    if (!copy)
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", path);
    augur_status st = AUGUR_OK;
    int lineno = 0;
    char *save = NULL;
    /* strtok_r would skip empty lines and so miscount them: split by hand */
    for (char *line = copy; !st && line; line = save) {
        char *nl = strchr(line, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        lineno++;
        st = parse_line(out, path, lineno, line, err);
    }
    free(copy);
    if (!st && out->n == 0)
        st = augur_fail(err, AUGUR_E_INPUT, "%s: no hosts (one a line: NAME slots=N gpus=N)", path);
    if (st)
        launch_hosts_free(out);
    return st;
}

augur_status launch_hosts_local(launch_hosts *out, int n_cores, int n_gpus, augur_error *err)
{
    *out = (launch_hosts){.source = "localhost"};
    launch_host x = {.slots = n_cores > 0 ? n_cores : 1, .gpus = n_gpus, .cores = n_cores};
    snprintf(x.name, sizeof x.name, "localhost");
    return add_host(out, &x, err);
}

void launch_hosts_free(launch_hosts *h)
{
    free(h->hosts);
    h->hosts = NULL;
    h->n = 0;
}

void launch_hosts_write(FILE *f, const launch_hosts *h, const launch_layout *l)
{
    for (int i = 0; i < h->n; i++) {
        int slots = h->hosts[i].slots;
        if (l && l->host_ranks && l->host_ranks[i] > slots)
            slots = l->host_ranks[i];
        fprintf(f, "%s slots=%d\n", h->hosts[i].name, slots);
    }
}
