/* The collectives interface over an MPI communicator: the CPU backend's tensor-parallel
 * all-reduce, the leader's logit gather, and broadcasts (see collectives.h for the
 * reproducibility contract this file keeps). Each is a non-blocking MPI collective
 * polled against c->timeout_s (comm/liveness.h): a member that stopped or died is
 * named instead of a hang. */
#include "comm/collectives.h"

#include <limits.h>
#include <stdlib.h>

#include "comm/liveness.h"
#include "comm/mpi_error.h"

/* Bounds the ordered all-reduce's scratch to size * this many floats per step. */
#define ORDERED_CHUNK_FLOATS (1u << 20)

typedef struct {
    MPI_Comm comm;
    float *scratch;          /* allgather target of the ordered sum, grown on demand */
    size_t scratch_cap;      /* in floats */
} mpi_impl;

/* Errors name the operation, not this rank: the caller's log line does that. */
static augur_status mpi_fail(const collectives *c, const char *op, int rc, augur_error *err)
{
    return comm_mpi_fail(err, rc, "%s over %d ranks failed", op, c->size);
}

/* Completes a started collective (rc: the MPI call's code) within c->timeout_s. After a
 * timeout the operation stays posted (MPI cannot withdraw a collective): the job must
 * end, which the caller's MPI_Abort does. */
static augur_status finish(collectives *c, const char *op, int rc, MPI_Request *req, augur_error *err)
{
    mpi_impl *m = c->impl;
    bool done = false;
    if (rc == MPI_SUCCESS) {
        live_deadline d = live_deadline_start(c->timeout_s, -1);
        rc = live_wait(req, &d, &done);
    }
    if (rc != MPI_SUCCESS)
        return mpi_fail(c, op, rc, err);
    return done ? AUGUR_OK : live_fail_collective(err, m->comm, op, c->timeout_s);
}

static augur_status ensure_scratch(collectives *c, size_t floats, augur_error *err)
{
    mpi_impl *m = c->impl;
    if (floats <= m->scratch_cap)
        return AUGUR_OK;
    float *p = realloc(m->scratch, floats * sizeof *p);
    if (!p)
        return augur_fail(err, AUGUR_E_NOMEM, "allreduce cannot allocate %zu floats of scratch", floats);
    m->scratch = p;
    m->scratch_cap = floats;
    return AUGUR_OK;
}

/* Every rank gathers all contributions (exact copies) and adds them in rank order, so
 * each element's result depends only on the values, never on count or algorithm. */
static augur_status ordered_allreduce(collectives *c, float *buf, size_t count, augur_error *err)
{
    mpi_impl *m = c->impl;
    size_t size = (size_t)c->size;
    size_t chunk = count < ORDERED_CHUNK_FLOATS ? count : ORDERED_CHUNK_FLOATS;
    augur_status st = ensure_scratch(c, chunk * size, err);
    if (st != AUGUR_OK)
        return st;
    for (size_t off = 0; off < count; off += chunk) {
        size_t n = count - off < chunk ? count - off : chunk;
        MPI_Request req;
        int rc = MPI_Iallgather(buf + off, (int)n, MPI_FLOAT, m->scratch, (int)n, MPI_FLOAT, m->comm, &req);
        if ((st = finish(c, "all-reduce (MPI_Iallgather)", rc, &req, err)))
            return st;
        for (size_t i = 0; i < n; i++) {
            float s = m->scratch[i];
            for (size_t r = 1; r < size; r++)
                s += m->scratch[r * n + i];
            buf[off + i] = s;
        }
    }
    return AUGUR_OK;
}

static augur_status mpi_allreduce_sum_f32(collectives *c, float *buf, size_t count, augur_error *err)
{
    if (count == 0)
        return AUGUR_OK;
    if (c->size > 2)
        return ordered_allreduce(c, buf, count, err);
    mpi_impl *m = c->impl;
    for (size_t off = 0; off < count; off += INT_MAX) {
        size_t n = count - off < INT_MAX ? count - off : INT_MAX;
        MPI_Request req;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)n, MPI_FLOAT, MPI_SUM, m->comm, &req);
        augur_status st = finish(c, "all-reduce (MPI_Iallreduce)", rc, &req, err);
        if (st)
            return st;
    }
    return AUGUR_OK;
}

/* The root's view of the gather: displacements, and checks that its own part fits. */
static augur_status root_displacements(collectives *c, int count, const float *recv, const int *counts,
                                       int **displs_out, augur_error *err)
{
    if (!counts)
        return augur_fail(err, AUGUR_E_INTERNAL, "gatherv root without per-rank counts");
    int *displs = malloc((size_t)c->size * sizeof *displs);
    if (!displs)
        return augur_fail(err, AUGUR_E_NOMEM, "gatherv cannot allocate displacements");
    long long total = 0;
    for (int r = 0; r < c->size; r++) {
        if (counts[r] < 0 || total + counts[r] > INT_MAX) {
            free(displs);
            return augur_fail(err, AUGUR_E_INTERNAL, "gatherv counts[%d] = %d is negative or overflows", r,
                              counts[r]);
        }
        displs[r] = (int)total;
        total += counts[r];
    }
    if (counts[c->rank] != count || (total > 0 && !recv)) {
        free(displs);
        return augur_fail(err, AUGUR_E_INTERNAL, "gatherv root sends %d floats but counts[%d] = %d%s", count,
                          c->rank, counts[c->rank], total > 0 && !recv ? ", and no receive buffer" : "");
    }
    *displs_out = displs;
    return AUGUR_OK;
}

static augur_status mpi_gatherv_f32(collectives *c, const float *send, int count, float *recv, const int *counts,
                                    int root, augur_error *err)
{
    mpi_impl *m = c->impl;
    if (root < 0 || root >= c->size)
        return augur_fail(err, AUGUR_E_INTERNAL, "gatherv to root %d outside the group of %d", root, c->size);
    if (count < 0)
        return augur_fail(err, AUGUR_E_INTERNAL, "gatherv of %d floats", count);
    int *displs = NULL;
    if (c->rank == root) {
        augur_status st = root_displacements(c, count, recv, counts, &displs, err);
        if (st != AUGUR_OK)
            return st;
    }
    MPI_Request req;
    int rc = MPI_Igatherv(send, count, MPI_FLOAT, recv, counts, displs, MPI_FLOAT, root, m->comm, &req);
    augur_status st = finish(c, "gather (MPI_Igatherv)", rc, &req, err);
    if (st == AUGUR_OK || rc != MPI_SUCCESS)
        free(displs); /* else MPI may still read them: the job is ending */
    return st;
}

static augur_status mpi_bcast(collectives *c, void *buf, size_t bytes, int root, augur_error *err)
{
    mpi_impl *m = c->impl;
    if (root < 0 || root >= c->size)
        return augur_fail(err, AUGUR_E_INTERNAL, "bcast from root %d outside the group of %d", root, c->size);
    for (size_t off = 0; off < bytes; off += INT_MAX) {
        size_t n = bytes - off < INT_MAX ? bytes - off : INT_MAX;
        MPI_Request req;
        int rc = MPI_Ibcast((char *)buf + off, (int)n, MPI_BYTE, root, m->comm, &req);
        augur_status st = finish(c, "broadcast (MPI_Ibcast)", rc, &req, err);
        if (st)
            return st;
    }
    return AUGUR_OK;
}

static void mpi_destroy(collectives *c)
{
    mpi_impl *m = c->impl;
    if (m)
        free(m->scratch);
    free(m);
    free(c);
}

static const collectives_ops mpi_ops = {
    .name = "mpi",
    .device_buffers = false,
    .allreduce_sum_f32 = mpi_allreduce_sum_f32,
    .gatherv_f32 = mpi_gatherv_f32,
    .bcast = mpi_bcast,
    .destroy = mpi_destroy,
};

augur_status collectives_mpi_create(collectives **out, MPI_Comm comm, augur_error *err)
{
    *out = NULL;
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized)
        return augur_fail(err, AUGUR_E_INTERNAL, "collectives: MPI is not initialised");
    if (comm == MPI_COMM_NULL)
        return augur_fail(err, AUGUR_E_INTERNAL, "collectives: no communicator (MPI_COMM_NULL)");
    /* Errors must come back as codes we can name, not abort the job inside MPI. */
    int rc = MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    int rank = -1, size = 0;
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_rank(comm, &rank);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_size(comm, &size);
    if (rc != MPI_SUCCESS)
        return comm_mpi_fail(err, rc, "collectives setup failed");
    collectives *c = calloc(1, sizeof *c);
    mpi_impl *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c);
        free(m);
        return augur_fail(err, AUGUR_E_NOMEM, "cannot allocate MPI collectives");
    }
    m->comm = comm;
    c->ops = &mpi_ops;
    c->rank = rank;
    c->size = size;
    c->impl = m;
    *out = c;
    return AUGUR_OK;
}

void collectives_destroy(collectives *c)
{
    if (c && c->ops && c->ops->destroy)
        c->ops->destroy(c);
}
