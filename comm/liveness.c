/* Deadlines and heartbeats (see liveness.h). */
#include "comm/liveness.h"

#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/mpi_error.h"

/* A member not heard from for this many periods never arrived (waiters beat every period). */
#define SILENT_PERIODS 2.0
/* A wait yields the core for this long before it sleeps between polls: most waits (an
 * all-reduce of the forward, a verdict) end within it, and a sleep's wake-up would add
 * tens of microseconds to each of them. */
#define YIELD_S 2e-3
/* A wait this old is idle (a draft rank waiting for the next request): polling every
 * millisecond then costs the busy ranks next to nothing, and adds 1 ms at most to a
 * wait that has already lasted a hundred times longer. */
#define IDLE_S 0.1

static struct {
    bool on;
    MPI_Comm world;
    int rank, size, leader;
    double period_s;         /* between heartbeats: timeout / 3 */
    double next_beat, next_drain;
    double *last_heard;      /* [size]: live_now() when each rank was last heard (or start) */
} live;

/* Kept apart from `live`, which live_stop clears: the setting outlives heartbeats. */
static struct {
    double timeout_s;        /* 0: LIVE_STARTUP_TIMEOUT_S */
} live_startup;

double live_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void live_backoff(const live_deadline *d)
{
    double waited = d->last_poll - d->start;
    if (waited < YIELD_S) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, waited < IDLE_S ? 50 * 1000 : 1000 * 1000};
    nanosleep(&ts, NULL);
}

void live_take_heartbeat(MPI_Message *msg, int source)
{
    char sink;
    MPI_Mrecv(&sink, 0, MPI_BYTE, msg, MPI_STATUS_IGNORE);
    if (live.on && source >= 0 && source < live.size)
        live.last_heard[source] = live_now();
}

static void drain(void)
{
    for (;;) {
        int flag = 0;
        MPI_Message msg;
        MPI_Status status;
        if (MPI_Improbe(MPI_ANY_SOURCE, LIVE_TAG_HEARTBEAT, live.world, &flag, &msg, &status) != MPI_SUCCESS ||
            !flag)
            return;
        live_take_heartbeat(&msg, status.MPI_SOURCE);
    }
}

/* Fire and forget: an empty message goes out eagerly; a peer that never drains it
 * (stopped, dead) costs a few bytes until the job ends. */
static void beat(void)
{
    static char empty;
    for (int r = 0; r < live.size; r++) {
        MPI_Request req;
        if (r != live.rank && MPI_Isend(&empty, 0, MPI_BYTE, r, LIVE_TAG_HEARTBEAT, live.world, &req) == MPI_SUCCESS)
            MPI_Request_free(&req);
    }
}

void live_tick(void)
{
    if (!live.on)
        return;
    double now = live_now();
    if (now >= live.next_drain) {
        drain();
        live.next_drain = now + live.period_s / 4;
    }
    if (now >= live.next_beat) {
        beat();
        live.next_beat = now + live.period_s;
    }
}

void live_stop(void)
{
    if (live.on)
        drain();
    free(live.last_heard);
    memset(&live, 0, sizeof live);
}

void live_start(MPI_Comm world, int leader, double timeout_s)
{
    if (live.on && live.world == world && timeout_s > 0) {
        live.period_s = timeout_s / 3;
        return;
    }
    live_stop();
    int rank = -1, size = 0;
    if (timeout_s <= 0 || MPI_Comm_rank(world, &rank) != MPI_SUCCESS || MPI_Comm_size(world, &size) != MPI_SUCCESS ||
        leader < 0 || leader >= size)
        return;
    live.last_heard = malloc((size_t)size * sizeof *live.last_heard);
    if (!live.last_heard)
        return; /* no heartbeats: every wait is then hard, which only makes idle ranks quit early */
    double now = live_now();
    for (int r = 0; r < size; r++)
        live.last_heard[r] = now;
    live.world = world;
    live.rank = rank;
    live.size = size;
    live.leader = leader;
    live.period_s = timeout_s / 3;
    live.next_beat = live.next_drain = now;
    live.on = true;
    live_tick();
}

/* ---- deadlines ---- */

live_deadline live_deadline_start(double timeout_s, int patient_on)
{
    live_tick();
    double now = live_now();
    return (live_deadline){.start = now, .last_poll = now, .timeout_s = timeout_s,
                           .patient_on = live.on && patient_on >= 0 && patient_on < live.size ? patient_on : -1};
}

bool live_expired(live_deadline *d)
{
    live_tick();
    if (d->timeout_s <= 0)
        return false;
    double now = live_now();
    if (now - d->last_poll > d->timeout_s / 3)
        d->start += now - d->last_poll;
    d->last_poll = now;
    if (now - d->start <= d->timeout_s)
        return false;
    if (d->patient_on < 0)
        return true;
    if (now - live.last_heard[d->patient_on] > d->timeout_s)
        drain(); /* a heartbeat may be queued since the last drain */
    return now - live.last_heard[d->patient_on] > d->timeout_s;
}

const char *live_within(const live_deadline *d, char *buf, size_t cap)
{
    snprintf(buf, cap, "within %g s%s", d->timeout_s, d->patient_on >= 0 ? " of its last heartbeat" : "");
    return buf;
}

int live_wait(MPI_Request *req, live_deadline *d, bool *done)
{
    for (;;) {
        int flag = 0;
        int rc = MPI_Test(req, &flag, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS || flag) {
            *done = flag != 0;
            return rc;
        }
        if (live_expired(d)) {
            *done = false;
            return MPI_SUCCESS;
        }
        live_backoff(d);
    }
}

/* ---- ranks ---- */

/* World ranks of comm's ranks first..first+n-1 into out (MPI_UNDEFINED where none). */
static void translate(MPI_Comm comm, int first, int n, int *out)
{
    for (int i = 0; i < n; i++)
        out[i] = comm == live.world ? first + i : MPI_UNDEFINED;
    if (comm == live.world)
        return;
    int *ranks = malloc((size_t)n * sizeof *ranks);
    MPI_Group g, w;
    if (!ranks || MPI_Comm_group(comm, &g) != MPI_SUCCESS) {
        free(ranks);
        return;
    }
    if (MPI_Comm_group(live.world, &w) == MPI_SUCCESS) {
        for (int i = 0; i < n; i++)
            ranks[i] = first + i;
        MPI_Group_translate_ranks(g, n, ranks, w, out);
        MPI_Group_free(&w);
    }
    MPI_Group_free(&g);
    free(ranks);
}

int live_world_rank(MPI_Comm comm, int rank)
{
    if (!live.on || rank < 0)
        return -1;
    int w = MPI_UNDEFINED;
    translate(comm, rank, 1, &w);
    return w == MPI_UNDEFINED ? -1 : w;
}

int live_patient_on(MPI_Comm comm, int peer)
{
    if (!live.on || live.rank == live.leader)
        return -1;
    return live_world_rank(comm, peer) == live.leader ? live.leader : -1;
}

/* ---- naming who did not arrive ---- */

/* Appends to buf (at *used) without overflowing. */
static void append(char *buf, size_t cap, size_t *used, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t cap, size_t *used, const char *fmt, ...)
{
    if (*used >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *used, cap - *used, fmt, ap);
    va_end(ap);
    if (n > 0)
        *used += (size_t)n < cap - *used ? (size_t)n : cap - *used;
}

/* "ranks 0-3" when contiguous, else "ranks 0, 2, 5". */
static void describe_members(const int *world, int n, char *buf, size_t cap)
{
    size_t used = 0;
    bool contiguous = true;
    for (int i = 1; i < n; i++)
        contiguous = contiguous && world[i] == world[0] + i;
    append(buf, cap, &used, "rank%s ", n == 1 ? "" : "s");
    if (contiguous && n > 1) {
        append(buf, cap, &used, "%d-%d", world[0], world[n - 1]);
        return;
    }
    for (int i = 0; i < n; i++)
        append(buf, cap, &used, i ? ", %d" : "%d", world[i]);
}

/* ": rank 1 silent for 3.4 s", or that every member still answers. */
static void describe_silent(const int *world, int n, char *buf, size_t cap)
{
    size_t used = 0;
    double now = live_now();
    int silent = 0;
    for (int i = 0; i < n; i++) {
        int w = world[i];
        if (w == MPI_UNDEFINED || w == live.rank || now - live.last_heard[w] < SILENT_PERIODS * live.period_s)
            continue;
        append(buf, cap, &used, "%s rank %d silent for %.1f s", silent++ ? "," : ":", w, now - live.last_heard[w]);
    }
    if (!silent)
        append(buf, cap, &used, ", though every rank still answers");
}

augur_status live_check_peers(augur_error *err)
{
    if (!live.on)
        return AUGUR_OK;
    double timeout_s = 3 * live.period_s;
    bool drained = false;
    for (int r = 0; r < live.size; r++) {
        if (r == live.rank || live_now() - live.last_heard[r] <= timeout_s)
            continue;
        if (!drained) { /* a heartbeat may be queued since the last drain */
            drain();
            drained = true;
        }
        double silent = live_now() - live.last_heard[r];
        if (silent > timeout_s)
            return augur_fail(err, AUGUR_E_COMM, "rank %d silent for %.1f s (no heartbeat within %g s)", r, silent,
                              timeout_s);
    }
    return AUGUR_OK;
}

augur_status live_fail_collective(augur_error *err, MPI_Comm comm, const char *what, double timeout_s)
{
    int size = 0;
    MPI_Comm_size(comm, &size);
    int *world = malloc((size_t)(size > 0 ? size : 1) * sizeof *world);
    if (!world || size <= 0 || !live.on) {
        free(world);
        return augur_fail(err, AUGUR_E_COMM, "%s over %d ranks not complete within %g s", what, size, timeout_s);
    }
    drain();
    translate(comm, 0, size, world);
    char members[256], silent[512];
    describe_members(world, size, members, sizeof members);
    describe_silent(world, size, silent, sizeof silent);
    free(world);
    return augur_fail(err, AUGUR_E_COMM, "%s over %s not complete within %g s%s", what, members, timeout_s, silent);
}

augur_status live_finish(MPI_Comm world, double timeout_s, augur_error *err)
{
    MPI_Request req;
    int rc = MPI_Ibarrier(world, &req);
    bool done = false;
    if (rc == MPI_SUCCESS) {
        live_deadline d = live_deadline_start(timeout_s, -1);
        rc = live_wait(&req, &d, &done);
    }
    augur_status st = AUGUR_OK;
    if (rc != MPI_SUCCESS)
        st = comm_mpi_fail(err, rc, "end-of-job barrier failed");
    else if (!done)
        st = live_fail_collective(err, world, "end-of-job barrier", timeout_s);
    live_stop();
    return st;
}

void live_set_startup_timeout(double timeout_s) { live_startup.timeout_s = timeout_s; }

double live_startup_timeout(void)
{
    return live_startup.timeout_s > 0 ? live_startup.timeout_s : LIVE_STARTUP_TIMEOUT_S;
}

augur_status live_gate(MPI_Comm comm, const char *what, augur_error *err)
{
    const double timeout_s = live_startup_timeout();
    MPI_Request req;
    int rc = MPI_Ibarrier(comm, &req);
    bool done = false;
    if (rc == MPI_SUCCESS) {
        live_deadline d = live_deadline_start(timeout_s, -1);
        rc = live_wait(&req, &d, &done);
    }
    char label[160];
    snprintf(label, sizeof label, "start-up handshake (%s)", what);
    if (rc != MPI_SUCCESS)
        return comm_mpi_fail(err, rc, "%s: barrier failed", label);
    if (!done) {
        augur_status st = live_fail_collective(err, comm, label, timeout_s);
        if (err) {
            size_t used = strlen(err->message);
            snprintf(err->message + used, sizeof err->message - used,
                     ": a rank stopped, died or is still loading (--startup-timeout sets this limit)");
        }
        return st;
    }
    return AUGUR_OK;
}
