/* One collectives interface for the target tensor-parallel group, with an MPI
 * implementation (CPU) and an NCCL one (GPU, compiled when CUDA exists).
 * Every call is collective over the group and returns a status naming the operation
 * at fault (the caller's log line names the rank). A call that fails its own argument
 * checks returns before entering the collective, so the other ranks are left inside
 * it: treat any failure as fatal for the job (MPI_Abort), never retry.
 *
 * Reproducibility (MPI implementation): allreduce_sum_f32 returns, bit for bit on every
 * rank, the left-to-right sum in rank order ((x0 + x1) + x2) + ..., whatever the count.
 * MPI_Allreduce alone does not promise that: Open MPI picks its algorithm (recursive
 * doubling, ring with segments, ...) by message size, so with three or more ranks the
 * association of an element's sum can change with the number of rows in the batch, and
 * a verification batch would differ in the last bit from a single-token forward,
 * breaking the greedy-equality contract (DESIGN §8). Two ranks are safe (a + b == b + a
 * exactly), so the MPI implementation uses MPI_Allreduce there and an allgather plus
 * an ordered local sum from three ranks on. */
#ifndef AUGUR_COLLECTIVES_H
#define AUGUR_COLLECTIVES_H

#include <stdbool.h>
#include <stddef.h>

#include <mpi.h>

#include "base/error.h"

typedef struct collectives collectives;

typedef struct {
    const char *name; /* "mpi", "nccl" */
    bool device_buffers; /* buffers are device memory (NCCL), not host memory (MPI) */
    augur_status (*allreduce_sum_f32)(collectives *c, float *buf, size_t count, augur_error *err);
    /* Root receives the concatenation of each rank's counts[r] floats in rank order. */
    augur_status (*gatherv_f32)(collectives *c, const float *send, int count, float *recv,
                                const int *counts, int root, augur_error *err);
    augur_status (*bcast)(collectives *c, void *buf, size_t bytes, int root, augur_error *err);
    /* Stream-ordered implementations (NCCL): waits, against timeout_s and watching for a
     * peer's failure, until everything enqueued on the stream so far is done. NULL where
     * every call completes before returning (MPI). */
    augur_status (*wait)(collectives *c, const char *what, augur_error *err);
    void (*destroy)(collectives *c);
} collectives_ops;

struct collectives {
    const collectives_ops *ops;
    int rank;                /* rank within the group */
    int size;
    /* How long one collective may wait for its peers before it fails with a message
     * naming what it waited for (a peer that died or stopped); <= 0 waits forever. */
    double timeout_s;
    /* Set while a CUDA graph captures a step (stream-ordered implementations only): an
     * all-reduce is enqueued and not waited for, so it becomes part of the graph; the
     * caller waits with coll_wait after launching the graph. */
    bool deferred;
    void *impl;
};

/* Wraps an MPI communicator of the target group (not duplicated: the caller owns it,
 * and finds MPI_ERRORS_RETURN set on it so that errors come back as messages). */
augur_status collectives_mpi_create(collectives **out, MPI_Comm comm, augur_error *err);
#ifdef AUGUR_HAVE_CUDA
/* NCCL over the same group: rank 0 makes the unique id and broadcasts it over comm.
 * Buffers passed to this implementation are device pointers on `device`. stream (a
 * cudaStream_t, NULL for one of its own) orders the collectives after the kernels that
 * produce their input: pass the compute backend's stream. */
augur_status collectives_nccl_create(collectives **out, MPI_Comm comm, int device, void *stream,
                                     augur_error *err);
#endif

/* Calls c->ops->destroy; NULL is allowed. */
void collectives_destroy(collectives *c);

static inline augur_status coll_allreduce_sum(collectives *c, float *buf, size_t count, augur_error *err)
{
    return c->size == 1 ? AUGUR_OK : c->ops->allreduce_sum_f32(c, buf, count, err);
}

/* Whether c's all-reduces can be captured into a CUDA graph (c->deferred). */
static inline bool coll_capturable(const collectives *c)
{
    return c->ops->wait != NULL;
}

static inline augur_status coll_wait(collectives *c, const char *what, augur_error *err)
{
    return c->ops->wait ? c->ops->wait(c, what, err) : AUGUR_OK;
}

/* counts (root only): how many floats each rank sends; other ranks may pass NULL. */
static inline augur_status coll_gatherv_f32(collectives *c, const float *send, int count, float *recv,
                                            const int *counts, int root, augur_error *err)
{
    return c->ops->gatherv_f32(c, send, count, recv, counts, root, err);
}

static inline augur_status coll_bcast(collectives *c, void *buf, size_t bytes, int root, augur_error *err)
{
    return c->size == 1 ? AUGUR_OK : c->ops->bcast(c, buf, bytes, root, err);
}

#endif
