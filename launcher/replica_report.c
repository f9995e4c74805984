/* Gathering the replicas' outputs and stats to job rank 0 (replica_report.h). */
#include "launcher/replica_report.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/mpi_error.h"
#include "launcher/args.h"
#include "launcher/spec_stats_print.h"

static bool grow(replica_report *r, size_t more)
{
    if (r->cur_len + more + 1 <= r->cur_cap)
        return true;
    size_t cap = r->cur_cap ? r->cur_cap : 256;
    while (cap < r->cur_len + more + 1)
        cap *= 2;
    char *p = realloc(r->cur, cap);
    if (!p)
        return false;
    r->cur = p;
    r->cur_cap = cap;
    return true;
}

void replica_report_write(void *user, const char *text, size_t len)
{
    replica_report *r = user;
    if (!grow(r, len))
        return; /* replica_report_end_output reports the loss */
    memcpy(r->cur + r->cur_len, text, len);
    r->cur_len += len;
}

void replica_report_printf(replica_report *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !grow(r, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(r->cur + r->cur_len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    r->cur_len += (size_t)n;
}

augur_status replica_report_end_output(replica_report *r, int64_t request, augur_error *err)
{
    replica_output *a = realloc(r->outputs, (size_t)(r->n_outputs + 1) * sizeof *a);
    if (!a || !grow(r, 0)) {
        if (a)
            r->outputs = a;
        return augur_fail(err, AUGUR_E_NOMEM, "leader: out of memory for the output of request %lld",
                          (long long)request);
    }
    r->outputs = a;
    r->outputs[r->n_outputs++] = (replica_output){.request = request, .bytes = r->cur, .len = r->cur_len};
    r->cur = NULL;
    r->cur_len = r->cur_cap = 0;
    return AUGUR_OK;
}

void replica_report_free(replica_report *r)
{
    for (int i = 0; i < r->n_outputs; i++)
        free(r->outputs[i].bytes);
    free(r->outputs);
    free(r->cur);
    memset(r, 0, sizeof *r);
}

/* ---- the wire: a header, then per output its request, length and bytes ---- */

typedef struct {
    spec_stats main, base;
    double wall_ms;
    int32_t requests;
    int32_t have_base;
    int32_t n_outputs;
    int32_t replica;
} report_header;

typedef struct {
    int64_t request;
    int64_t len;
} output_header;

static augur_status pack(const replica_report *r, int replica, char **buf, int *len, augur_error *err)
{
    size_t n = sizeof(report_header);
    for (int i = 0; i < r->n_outputs; i++)
        n += sizeof(output_header) + r->outputs[i].len;
    if (n > (size_t)1 << 30)
        return augur_fail(err, AUGUR_E_INPUT, "replica %d: %zu bytes of output is more than one gather carries",
                          replica, n);
    char *p = malloc(n);
    if (!p)
        return augur_fail(err, AUGUR_E_NOMEM, "replica %d: out of memory for its report", replica);
    report_header h = {.main = r->main, .base = r->base, .wall_ms = r->wall_ms, .requests = r->requests,
                       .have_base = r->have_base, .n_outputs = r->n_outputs, .replica = replica};
    memcpy(p, &h, sizeof h);
    size_t at = sizeof h;
    for (int i = 0; i < r->n_outputs; i++) {
        output_header o = {.request = r->outputs[i].request, .len = (int64_t)r->outputs[i].len};
        memcpy(p + at, &o, sizeof o);
        memcpy(p + at + sizeof o, r->outputs[i].bytes, r->outputs[i].len);
        at += sizeof o + r->outputs[i].len;
    }
    *buf = p;
    *len = (int)n;
    return AUGUR_OK;
}

typedef struct {
    int64_t request;
    const char *bytes;
    int64_t len;
} output_ref;

static int by_request(const void *a, const void *b)
{
    int64_t x = ((const output_ref *)a)->request, y = ((const output_ref *)b)->request;
    return (x > y) - (x < y);
}

/* Job rank 0: every leader's report lies in all at offsets[k] (sizes[k] bytes, 0 for
 * ranks that lead nothing). */
static augur_status print_reports(const char *all, const int *sizes, const int *offsets, int n_ranks,
                                  const char *main_label, replica_totals *totals, augur_error *err)
{
    int n_out = 0, n_rep = 0;
    for (int k = 0; k < n_ranks; k++) {
        if (sizes[k] < (int)sizeof(report_header))
            continue;
        report_header h;
        memcpy(&h, all + offsets[k], sizeof h);
        n_out += h.n_outputs;
        n_rep++;
    }
    output_ref *refs = calloc((size_t)n_out + 1, sizeof *refs);
    if (!refs)
        return augur_fail(err, AUGUR_E_NOMEM, "rank 0: out of memory for the replicas' outputs");
    int at_ref = 0;
    spec_stats sum = {0}, base_sum = {0};
    double wall = 0, base_wall = 0;
    int requests = 0;
    bool have_base = false;
    for (int k = 0; k < n_ranks; k++) {
        if (sizes[k] < (int)sizeof(report_header))
            continue;
        const char *p = all + offsets[k];
        report_header h;
        memcpy(&h, p, sizeof h);
        size_t at = sizeof h;
        for (int i = 0; i < h.n_outputs; i++) {
            output_header o;
            memcpy(&o, p + at, sizeof o);
            refs[at_ref++] = (output_ref){.request = o.request, .bytes = p + at + sizeof o, .len = o.len};
            at += sizeof o + (size_t)o.len;
        }
        char label[96];
        snprintf(label, sizeof label, "replica %d %s", h.replica, main_label);
        spec_stats_print(label, &h.main, h.requests);
        if (h.have_base) {
            snprintf(label, sizeof label, "replica %d baseline (target-only)", h.replica);
            spec_stats_print(label, &h.base, h.requests);
            base_wall = h.base.total_ms > base_wall ? h.base.total_ms : base_wall;
        }
        spec_stats_add(&sum, &h.main);
        spec_stats_add(&base_sum, &h.base);
        wall = h.wall_ms > wall ? h.wall_ms : wall;
        requests += h.requests;
        have_base |= h.have_base != 0;
    }
    qsort(refs, (size_t)n_out, sizeof *refs, by_request);
    for (int i = 0; i < n_out; i++)
        fwrite(refs[i].bytes, 1, (size_t)refs[i].len, stdout);
    fflush(stdout);
    free(refs);
    double tps = wall > 0 ? sum.generated / (wall / 1e3) : 0.0;
    fprintf(stderr,
            "augur: total %s: %d replicas, %d request%s, %d token%s in %.1f ms (the slowest replica's wall time), "
            "%.1f tok/s; acceptance %.3f\n",
            main_label, n_rep, requests, plural(requests), sum.generated, plural(sum.generated), wall, tps,
            sum.proposed ? (double)sum.accepted / sum.proposed : 0.0);
    /* the baselines ran one request after another like the main runs: their summed time
     * per replica is their wall time */
    double btps = have_base && base_wall > 0 ? base_sum.generated / (base_wall / 1e3) : 0.0;
    if (have_base)
        fprintf(stderr, "augur: total baseline (target-only): %d tokens, %.1f tok/s; speedup %.2fx\n",
                base_sum.generated, btps, btps > 0 ? tps / btps : 0.0);
    if (totals)
        *totals = (replica_totals){.replicas = n_rep, .requests = requests, .generated = sum.generated,
                                   .wall_ms = wall, .tokens_per_s = tps, .base_tokens_per_s = btps,
                                   .acceptance = sum.proposed ? (double)sum.accepted / sum.proposed : 0.0};
    return AUGUR_OK;
}

augur_status replica_report_gather(const comm_layout *layout, const replica_report *r, const char *main_label,
                                   replica_totals *totals, augur_error *err)
{
    char *mine = NULL;
    int my_len = 0;
    augur_status st = r ? pack(r, layout->replica, &mine, &my_len, err) : AUGUR_OK;
    int root = layout->job_rank == 0;
    int n = layout->job_size;
    int *sizes = root ? calloc((size_t)n, sizeof *sizes) : NULL;
    int *offsets = root ? calloc((size_t)n, sizeof *offsets) : NULL;
    if (root && (!sizes || !offsets) && !st)
        st = augur_fail(err, AUGUR_E_NOMEM, "rank 0: out of memory for the replicas' reports");
    /* a rank that failed above still takes part, with nothing, so no rank waits for ever */
    if (st)
        my_len = 0;
    int rc = MPI_Gather(&my_len, 1, MPI_INT, sizes, 1, MPI_INT, 0, layout->job);
    char *all = NULL;
    if (rc == MPI_SUCCESS && root) {
        long long total = 0;
        for (int k = 0; k < n; k++) {
            offsets[k] = (int)total;
            total += sizes[k];
        }
        all = malloc(total > 0 ? (size_t)total : 1);
        if (!all && !st)
            st = augur_fail(err, AUGUR_E_NOMEM, "rank 0: out of memory for %lld bytes of reports", total);
    }
    if (root && !all) /* the caller ends the job (MPI_Abort) */
        return st ? st : augur_fail(err, AUGUR_E_COMM, "rank 0: gathering the replicas' reports failed");
    if (rc == MPI_SUCCESS)
        rc = MPI_Gatherv(mine, my_len, MPI_BYTE, all, sizes, offsets, MPI_BYTE, 0, layout->job);
    if (rc != MPI_SUCCESS && !st)
        st = comm_mpi_fail(err, rc, "rank %d: gathering the replicas' reports failed", layout->job_rank);
    if (!st && root && all)
        st = print_reports(all, sizes, offsets, n, main_label, totals, err);
    if (!st && root && totals)
        totals->ranks = n;
    free(all);
    free(sizes);
    free(offsets);
    free(mine);
    return st;
}
