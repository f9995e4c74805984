/* Weight-load progress lines (load_progress.h). */
#include "runtime/model/load_progress.h"

#include <string.h>
#include <time.h>

void load_progress_start(load_progress *p, FILE *out, const char *who, size_t total_bytes, double now)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    snprintf(p->who, sizeof p->who, "%s", who && who[0] ? who : "model");
    p->total = total_bytes;
    p->start = p->last = now;
}

static double gb(size_t bytes)
{
    return (double)bytes / 1e9;
}

void load_progress_add(load_progress *p, size_t bytes, double now)
{
    p->done += bytes;
    if (!p->out || now - p->last < LOAD_PROGRESS_PERIOD_S)
        return;
    double secs = now - p->start;
    double pct = p->total ? 100.0 * (double)p->done / (double)p->total : 0.0;
    fprintf(p->out, "augur: %s: loaded %.2f of %.2f GB (%.0f%%), %.2f GB/s\n", p->who, gb(p->done), gb(p->total),
            pct > 100.0 ? 100.0 : pct, secs > 0 ? gb(p->done) / secs : 0.0);
    fflush(p->out);
    p->last = now;
    p->lines++;
}

void load_progress_end(load_progress *p, double now)
{
    if (!p->out || p->lines == 0)
        return;
    double secs = now - p->start;
    fprintf(p->out, "augur: %s: loaded %.2f GB in %.1f s, %.2f GB/s\n", p->who, gb(p->done), secs,
            secs > 0 ? gb(p->done) / secs : 0.0);
    fflush(p->out);
}

double load_progress_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
