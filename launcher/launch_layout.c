/* Rank placement for augur launch (see launch_layout.h). */
#include "launcher/launch_layout.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "comm/gpu_placement.h"

static const char *const placement_names[] = {"own-gpu", "shared", "own-node"};

augur_status draft_placement_parse(const char *flag, const char *text, draft_placement *out, augur_error *err)
{
    for (int i = 0; i < 3; i++) {
        if (!strcmp(text, placement_names[i])) {
            *out = (draft_placement)i;
            return AUGUR_OK;
        }
    }
    return augur_fail(err, AUGUR_E_INPUT, "%s: '%s' is not own-gpu, shared or own-node", flag, text);
}

const char *draft_placement_name(draft_placement p)
{
    return (unsigned)p < 3 ? placement_names[p] : "?";
}

/* "hosts.txt line 3: host node-a" or "host localhost": where a host came from, for messages. */
static const char *where(const launch_hosts *h, int i, char *buf, size_t cap)
{
    if (h->hosts[i].line > 0)
        snprintf(buf, cap, "%s line %d: host %s", h->source, h->hosts[i].line, h->hosts[i].name);
    else
        snprintf(buf, cap, "host %s", h->hosts[i].name);
    return buf;
}

static void note(launch_layout *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(launch_layout *l, const char *fmt, ...)
{
    size_t used = strlen(l->notes);
    if (used + 1 >= sizeof l->notes)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->notes + used, sizeof l->notes - used, fmt, ap);
    va_end(ap);
}

static int total_slots(const launch_hosts *h)
{
    long long s = 0;
    for (int i = 0; i < h->n; i++)
        s += h->hosts[i].slots;
    return s > (1 << 30) ? 1 << 30 : (int)s;
}

/* Assigns hosts with each host holding at most slots·k ranks. Returns false (out of
 * room) with *short_of naming which ranks found none: 't' target, 'd' draft. */
static bool assign_hosts(launch_layout *l, const launch_spec *spec, const launch_hosts *h, int k, char *short_of)
{
    memset(l->host_ranks, 0, (size_t)h->n * sizeof *l->host_ranks);
    int cursor = 0, draft_cursor = -1;
    if (spec->draft == DRAFT_OWN_NODE) {
        /* the drafts start after the last host the target ranks reach */
        long long need = (long long)spec->replicas * spec->tp, room = 0;
        int last = -1;
        for (int i = 0; i < h->n && room < need; i++) {
            room += (long long)h->hosts[i].slots * k;
            last = i;
        }
        if (room < need) {
            *short_of = 't';
            return false;
        }
        draft_cursor = last + 1;
    }
    for (int r = 0; r < l->n; r++) {
        launch_rank *x = &l->ranks[r];
        int *c = spec->draft == DRAFT_OWN_NODE && x->role == LAUNCH_DRAFT ? &draft_cursor : &cursor;
        while (*c < h->n && l->host_ranks[*c] >= h->hosts[*c].slots * k)
            (*c)++;
        if (*c >= h->n) {
            *short_of = x->role == LAUNCH_DRAFT ? 'd' : 't';
            return false;
        }
        x->host = *c;
        l->host_ranks[*c]++;
    }
    return true;
}

static augur_status no_room(const launch_spec *spec, const launch_hosts *h, int n_ranks, char short_of,
                            augur_error *err)
{
    int slots = total_slots(h);
    if (spec->draft == DRAFT_OWN_NODE && short_of == 'd')
        return augur_fail(err, AUGUR_E_INPUT,
                          "%s: draft-placement own-node needs %d slot%s for the draft ranks on hosts without target "
                          "ranks, but the %d target ranks fill the hosts up to the last one: list more hosts (or "
                          "more slots after the target hosts), or use draft-placement own-gpu",
                          h->source, spec->replicas, spec->replicas == 1 ? "" : "s", spec->replicas * spec->tp);
    return augur_fail(err, AUGUR_E_INPUT,
                      "%s: the layout needs %d ranks (%d replica%s x (%d target + 1 draft)) but the %d host%s "
                      "offer%s %d slot%s: add hosts or slots, lower tp or replicas, or set \"oversubscribe\": true",
                      h->source, n_ranks, spec->replicas, spec->replicas == 1 ? "" : "s", spec->tp, h->n,
                      h->n == 1 ? "" : "s", h->n == 1 ? "s" : "", slots, slots == 1 ? "" : "s");
}

/* The group whose ranks pick GPUs together: the host, or with simulated hosts the
 * (host, simulated node) pair, as comm/gpu_placement.c groups them at run time. */
static int gpu_group(const launch_spec *spec, const launch_rank *x)
{
    if (spec->simulate_hosts <= 0)
        return x->host;
    int local = x->role == LAUNCH_TARGET ? x->tp_rank : spec->tp;
    return x->host * (spec->simulate_hosts + 1) + gpu_sim_node_of(local, spec->tp, spec->simulate_hosts);
}

static augur_status assign_gpus(launch_layout *l, const launch_spec *spec, const launch_hosts *h, augur_error *err)
{
    char at[LAUNCH_HOST_NAME_MAX + 128];
    for (int r = 0; r < l->n; r++) {
        launch_rank *x = &l->ranks[r];
        if (x->gpu != -2) /* done with its group */
            continue;
        int group = gpu_group(spec, x), gpus = h->hosts[x->host].gpus;
        int t = 0, d = 0;
        for (int s = r; s < l->n; s++)
            if (l->ranks[s].host == x->host && gpu_group(spec, &l->ranks[s]) == group)
                *(l->ranks[s].role == LAUNCH_TARGET ? &t : &d) += 1;
        if (gpus <= 0)
            return augur_fail(err, AUGUR_E_INPUT,
                              "%s has no GPUs (gpus=N missing or 0) but runs %d rank%s on device cuda: give its "
                              "GPU count (gpus=N) or use \"device\": \"cpu\"",
                              where(h, x->host, at, sizeof at), t + d, t + d == 1 ? "" : "s");
        if (t > gpus)
            return augur_fail(err, AUGUR_E_INPUT,
                              "%s runs %d target ranks but has %d GPU%s: each target rank needs its own GPU (lower "
                              "tp or replicas, add hosts, or raise its gpus=)",
                              where(h, x->host, at, sizeof at), t, gpus, gpus == 1 ? "" : "s");
        int ti = 0, di = 0;
        for (int s = r; s < l->n; s++) {
            launch_rank *y = &l->ranks[s];
            if (y->host != x->host || gpu_group(spec, y) != group)
                continue;
            if (y->role == LAUNCH_TARGET) {
                y->gpu = ti++;
                continue;
            }
            int slot = t + di;
            if (spec->draft == DRAFT_SHARED && t > 0) {
                y->gpu = t - 1 - di % t;
                y->gpu_shared = true;
            } else if (slot < gpus) {
                y->gpu = slot;
            } else if (spec->simulate_hosts > 0) {
                /* as at run time: a simulated node's draft shares rather than fails */
                y->gpu = (gpus - 1 - di % gpus + gpus) % gpus;
                y->gpu_shared = true;
            } else {
                return augur_fail(err, AUGUR_E_INPUT,
                                  "%s has %d GPU%s for %d target and %d draft rank%s: draft rank %d has no GPU of its "
                                  "own under draft-placement %s (use draft-placement shared, add hosts, or raise "
                                  "its gpus=)",
                                  where(h, x->host, at, sizeof at), gpus, gpus == 1 ? "" : "s", t, d,
                                  d == 1 ? "" : "s", y->rank, draft_placement_name(spec->draft));
            }
            di++;
        }
    }
    /* a target whose GPU a draft took is shared too */
    for (int r = 0; r < l->n; r++)
        for (int s = 0; s < l->n; s++)
            if (s != r && l->ranks[s].gpu_shared && l->ranks[s].host == l->ranks[r].host &&
                l->ranks[s].gpu == l->ranks[r].gpu)
                l->ranks[r].gpu_shared = true;
    return AUGUR_OK;
}

/* Each host's cores split evenly over its ranks in rank order; with more ranks than
 * cores (oversubscribed) each rank gets them all. */
static void assign_cores(launch_layout *l, const launch_hosts *h)
{
    for (int i = 0; i < h->n; i++) {
        int n = l->host_ranks[i], cores = h->hosts[i].cores > 0 ? h->hosts[i].cores : h->hosts[i].slots;
        if (n == 0)
            continue;
        if (cores < 1)
            cores = 1;
        /* oversubscribed: every rank may run on every core, and the scheduler balances */
        int share = n <= cores ? cores / n : cores, j = 0;
        if (n > cores)
            l->oversubscribed = true;
        for (int r = 0; r < l->n; r++) {
            if (l->ranks[r].host != i)
                continue;
            l->ranks[r].core_first = n <= cores ? j * share : 0;
            l->ranks[r].n_cores = share;
            j++;
        }
    }
}

static void note_spans(launch_layout *l, const launch_spec *spec, const launch_hosts *h)
{
    for (int rep = 0; rep < spec->replicas; rep++) {
        const launch_rank *first = &l->ranks[rep * (spec->tp + 1)];
        int hosts = 1;
        for (int t = 1; t < spec->tp; t++)
            if (first[t].host != first[t - 1].host)
                hosts++;
        if (hosts > 1)
            note(l, "replica %d: its %d target ranks span %d hosts (%s .. %s): its all-reduces cross the network\n",
                 rep, spec->tp, hosts, h->hosts[first[0].host].name, h->hosts[first[spec->tp - 1].host].name);
    }
}

augur_status launch_layout_plan(launch_layout *out, const launch_spec *spec, const launch_hosts *hosts,
                                augur_error *err)
{
    memset(out, 0, sizeof *out);
    if (spec->tp < 1 || spec->replicas < 1)
        return augur_fail(err, AUGUR_E_INPUT, "layout: tp %d and replicas %d must be at least 1", spec->tp,
                          spec->replicas);
    if (hosts->n < 1)
        return augur_fail(err, AUGUR_E_INPUT, "%s: no hosts", hosts->source);
    long long n = spec->single_rank ? 1 : (long long)spec->replicas * (spec->tp + 1);
    if (n > 1 << 20)
        return augur_fail(err, AUGUR_E_INPUT, "layout: %lld ranks is too many", n);
    out->n = (int)n;
    out->ranks = calloc((size_t)n, sizeof *out->ranks);
    out->host_ranks = calloc((size_t)hosts->n, sizeof *out->host_ranks);
    if (!out->ranks || !out->host_ranks) {
        launch_layout_free(out);
        return augur_fail(err, AUGUR_E_NOMEM, "layout: out of memory");
    }
    for (int r = 0; r < out->n; r++) {
        int local = spec->single_rank ? 0 : r % (spec->tp + 1);
        out->ranks[r] = (launch_rank){.rank = r, .replica = r / (spec->tp + 1),
                                      .role = local < spec->tp ? LAUNCH_TARGET : LAUNCH_DRAFT,
                                      .tp_rank = local < spec->tp ? local : -1, .gpu = spec->use_gpus ? -2 : -1};
    }
    char short_of = 0;
    bool placed = assign_hosts(out, spec, hosts, 1, &short_of);
    /* oversubscribing: each host takes its share times k, the least k that fits */
    for (int k = 2; !placed && spec->allow_oversubscribe && k <= out->n; k++) {
        if ((placed = assign_hosts(out, spec, hosts, k, &short_of)))
            out->oversubscribed = true;
    }
    augur_status st = placed ? AUGUR_OK : no_room(spec, hosts, out->n, short_of, err);
    if (!st && spec->use_gpus)
        st = assign_gpus(out, spec, hosts, err);
    if (st) {
        launch_layout_free(out);
        return st;
    }
    assign_cores(out, hosts);
    if (!spec->single_rank)
        note_spans(out, spec, hosts);
    return AUGUR_OK;
}

void launch_layout_free(launch_layout *l)
{
    free(l->ranks);
    free(l->host_ranks);
    memset(l, 0, sizeof *l);
}

void launch_layout_print(FILE *f, const launch_layout *l, const launch_hosts *hosts)
{
    fprintf(f, "rank | host | gpu | cores | role | replica\n");
    for (int r = 0; r < l->n; r++) {
        const launch_rank *x = &l->ranks[r];
        char gpu[32], cores[32], role[48];
        if (x->gpu < 0)
            snprintf(gpu, sizeof gpu, "-");
        else
            snprintf(gpu, sizeof gpu, "%d%s", x->gpu, x->gpu_shared ? " (shared)" : "");
        if (x->n_cores > 1)
            snprintf(cores, sizeof cores, "%d-%d", x->core_first, x->core_first + x->n_cores - 1);
        else
            snprintf(cores, sizeof cores, "%d", x->core_first);
        if (x->role == LAUNCH_DRAFT)
            snprintf(role, sizeof role, "draft");
        else
            snprintf(role, sizeof role, "target %d%s", x->tp_rank, x->tp_rank == 0 ? " (leader)" : "");
        fprintf(f, "%4d | %s | %s | %s | %s | %d\n", x->rank, hosts->hosts[x->host].name, gpu, cores, role,
                x->replica);
    }
}

void launch_layout_write_rankfile(FILE *f, const launch_layout *l, const launch_hosts *hosts)
{
    for (int r = 0; r < l->n; r++) {
        const launch_rank *x = &l->ranks[r];
        if (x->n_cores > 1)
            fprintf(f, "rank %d=%s slot=%d-%d\n", r, hosts->hosts[x->host].name, x->core_first,
                    x->core_first + x->n_cores - 1);
        else
            fprintf(f, "rank %d=%s slot=%d\n", r, hosts->hosts[x->host].name, x->core_first);
    }
}
