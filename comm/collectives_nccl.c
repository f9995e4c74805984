/* NCCL implementation of the collectives interface (GPU backend). Compiled only
 * where a CUDA toolkit with NCCL exists. Buffers are device pointers; every call
 * is enqueued on the communicator's stream and completes before returning, matching
 * the MPI implementation's blocking semantics.
 *
 * Reproducibility: from three ranks on, NCCL's all-reduce may associate an element's
 * sum differently with the message size (ring chunks, tree, protocol), so a verify
 * batch would differ from a one-row decode in the last bit. There, the all-reduce is an
 * all-gather of the partial sums and a rank-order sum on the GPU
 * (comm/nccl_ordered_sum.cu), the same ((x0 + x1) + x2) + ... in fp32 as the MPI
 * implementation computes on the host: the two communicators give equal bits. Two
 * ranks need no such care (a + b == b + a exactly).
 *
 * Faults: completion is polled rather than waited for, against c->timeout_s, while
 * ncclCommGetAsyncError reports a transport failure (a peer that died); either way the
 * communicator is aborted (ncclCommAbort) so that nothing stays stuck on the GPU, and the
 * caller ends the job. */
#include <cuda_runtime.h>
#include <nccl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "comm/collectives.h"
#include "comm/liveness.h"
#include "comm/nccl_ordered_sum.h"

typedef struct {
    ncclComm_t comm;
    cudaStream_t stream;
    bool own_stream;         /* made here, rather than the compute backend's */
    bool aborted;            /* ncclCommAbort ran: the communicator is gone */
    MPI_Comm group;          /* the same ranks over MPI: liveness names the silent ones */
    int device;
    float *gathered;         /* [size][gathered_cap] partial sums of the ordered all-reduce */
    size_t gathered_cap;     /* floats per rank */
} nccl_impl;

/* Errors name the operation, not this rank: the caller's log line does that. */
static augur_status nccl_fail(const collectives *c, const char *op, ncclResult_t rc, augur_error *err)
{
    return augur_fail(err, AUGUR_E_COMM, "%s over %d ranks failed: %s", op, c->size, ncclGetErrorString(rc));
}

static augur_status abort_comm(collectives *c, augur_status code)
{
    nccl_impl *n = c->impl;
    if (!n->aborted) {
        ncclCommAbort(n->comm);
        n->aborted = true;
    }
    return code;
}

/* Waits for the stream (the collective and what came before it) against the deadline,
 * watching NCCL's asynchronous error. Spins first: most waits are microseconds. */
static augur_status finish(collectives *c, const char *op, ncclResult_t rc, augur_error *err)
{
    nccl_impl *n = c->impl;
    if (rc != ncclSuccess)
        return abort_comm(c, nccl_fail(c, op, rc, err));
    const double start = live_now();
    for (long polls = 0;; polls++) {
        cudaError_t ce = cudaStreamQuery(n->stream);
        if (ce == cudaSuccess)
            return AUGUR_OK;
        if (ce != cudaErrorNotReady)
            return abort_comm(c,
                              augur_fail(err, AUGUR_E_COMM, "rank %d of the target group: %s: %s", c->rank, op,
                                         cudaGetErrorString(ce)));
        if (polls % 64 == 63) {
            ncclResult_t async = ncclSuccess;
            if (ncclCommGetAsyncError(n->comm, &async) == ncclSuccess && async != ncclSuccess &&
                async != ncclInProgress)
                return abort_comm(c,
                                  augur_fail(err, AUGUR_E_COMM,
                                             "rank %d of the target group: %s failed in NCCL's transport (%s): "
                                             "a peer rank of the %d-rank group died or disconnected",
                                             c->rank, op, ncclGetErrorString(async), c->size));
            live_tick(); /* keep beating while waiting, so idle ranks know this one lives */
            double waited = live_now() - start;
            if (c->timeout_s > 0 && waited > c->timeout_s)
                return abort_comm(c, live_fail_collective(err, n->group, op, c->timeout_s));
            if (waited > 1e-3)
                sched_yield();
        }
    }
}

static augur_status ensure_gathered(collectives *c, size_t count, augur_error *err)
{
    nccl_impl *n = c->impl;
    if (count <= n->gathered_cap)
        return AUGUR_OK;
    cudaFree(n->gathered);
    n->gathered = NULL;
    n->gathered_cap = 0;
    cudaError_t ce = cudaMalloc((void **)&n->gathered, count * (size_t)c->size * sizeof(float));
    if (ce != cudaSuccess)
        return augur_fail(err, AUGUR_E_NOMEM, "rank %d of the target group: %zu floats for the ordered all-reduce: %s",
                          c->rank, count * (size_t)c->size, cudaGetErrorString(ce));
    n->gathered_cap = count;
    return AUGUR_OK;
}

static augur_status nccl_allreduce(collectives *c, float *buf, size_t count, augur_error *err)
{
    nccl_impl *n = c->impl;
    if (n->aborted)
        return augur_fail(err, AUGUR_E_COMM, "rank %d of the target group: the NCCL communicator was aborted",
                          c->rank);
    if (c->size <= 2) {
        ncclResult_t rc = ncclAllReduce(buf, buf, count, ncclFloat32, ncclSum, n->comm, n->stream);
        if (c->deferred)
            return rc == ncclSuccess ? AUGUR_OK : abort_comm(c, nccl_fail(c, "ncclAllReduce (captured)", rc, err));
        return finish(c, "ncclAllReduce", rc, err);
    }
    /* a captured step's buffer was sized by its uncaptured run (no cudaMalloc in a capture) */
    augur_status st = ensure_gathered(c, count, err);
    if (st)
        return st;
    ncclResult_t rc = ncclAllGather(buf, n->gathered, count, ncclFloat32, n->comm, n->stream);
    if (rc == ncclSuccess && nccl_sum_ranks_f32(buf, n->gathered, c->size, count, n->stream) != cudaSuccess)
        rc = ncclUnhandledCudaError;
    if (c->deferred)
        return rc == ncclSuccess ? AUGUR_OK : abort_comm(c, nccl_fail(c, "all-reduce (captured)", rc, err));
    return finish(c, "all-reduce (ncclAllGather + rank-order sum)", rc, err);
}

/* NCCL has no gatherv: the root receives each rank's block with grouped point-to-point calls. */
static augur_status nccl_gatherv(collectives *c, const float *send, int count, float *recv, const int *counts,
                                 int root, augur_error *err)
{
    nccl_impl *n = c->impl;
    ncclResult_t rc = ncclGroupStart();
    if (rc == ncclSuccess && c->rank == root) {
        size_t offset = 0;
        for (int r = 0; r < c->size && rc == ncclSuccess; r++) {
            if (r == root)
                rc = cudaMemcpyAsync(recv + offset, send, (size_t)count * sizeof(float), cudaMemcpyDeviceToDevice,
                                     n->stream) == cudaSuccess ? ncclSuccess : ncclUnhandledCudaError;
            else
                rc = ncclRecv(recv + offset, (size_t)counts[r], ncclFloat32, r, n->comm, n->stream);
            offset += (size_t)counts[r];
        }
    } else if (rc == ncclSuccess) {
        rc = ncclSend(send, (size_t)count, ncclFloat32, root, n->comm, n->stream);
    }
    ncclResult_t end = ncclGroupEnd();
    return finish(c, "gatherv (ncclSend/ncclRecv)", rc != ncclSuccess ? rc : end, err);
}

static augur_status nccl_bcast(collectives *c, void *buf, size_t bytes, int root, augur_error *err)
{
    nccl_impl *n = c->impl;
    return finish(c, "ncclBroadcast", ncclBroadcast(buf, buf, bytes, ncclUint8, root, n->comm, n->stream), err);
}

static augur_status nccl_wait(collectives *c, const char *what, augur_error *err)
{
    nccl_impl *n = c->impl;
    if (n->aborted)
        return augur_fail(err, AUGUR_E_COMM, "rank %d of the target group: the NCCL communicator was aborted",
                          c->rank);
    return finish(c, what, ncclSuccess, err);
}

static void nccl_destroy(collectives *c)
{
    nccl_impl *n = c->impl;
    if (n) {
        if (!n->aborted)
            ncclCommDestroy(n->comm);
        cudaFree(n->gathered);
        if (n->own_stream)
            cudaStreamDestroy(n->stream);
        free(n);
    }
    free(c);
}

static const collectives_ops nccl_ops = {
    .name = "nccl",
    .device_buffers = true,
    .allreduce_sum_f32 = nccl_allreduce,
    .gatherv_f32 = nccl_gatherv,
    .bcast = nccl_bcast,
    .wait = nccl_wait,
    .destroy = nccl_destroy,
};

augur_status collectives_nccl_create(collectives **out, MPI_Comm comm, int device, void *stream,
                                     augur_error *err)
{
    *out = NULL;
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    ncclUniqueId id;
    ncclResult_t rc = ncclSuccess;
    if (rank == 0)
        rc = ncclGetUniqueId(&id);
    /* Everyone learns whether the id exists, so no rank waits in ncclCommInitRank alone. */
    int ok = rc == ncclSuccess, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
    if (!all_ok)
        return augur_fail(err, AUGUR_E_COMM, "ncclGetUniqueId failed on the leader: %s", ncclGetErrorString(rc));
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, comm);
    collectives *c = calloc(1, sizeof *c);
    nccl_impl *n = calloc(1, sizeof *n);
    if (!c || !n) {
        free(c);
        free(n);
        return augur_fail(err, AUGUR_E_NOMEM, "NCCL collectives: out of memory");
    }
    n->device = device;
    n->group = comm;
    n->stream = (cudaStream_t)stream;
    n->own_stream = stream == NULL;
    cudaError_t ce = cudaSetDevice(device);
    if (ce == cudaSuccess && n->own_stream)
        ce = cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking);
    if (ce != cudaSuccess) {
        free(c);
        free(n);
        return augur_fail(err, AUGUR_E_COMM, "GPU %d: %s", device, cudaGetErrorString(ce));
    }
    setenv("NCCL_NVLS_ENABLE", "0", 1); /* never NVLink multicast, whoever calls this */
    rc = ncclCommInitRank(&n->comm, size, id, rank);
    if (rc != ncclSuccess) {
        if (n->own_stream)
            cudaStreamDestroy(n->stream);
        free(c);
        free(n);
        return augur_fail(err, AUGUR_E_COMM, "ncclCommInitRank over %d ranks failed: %s", size,
                          ncclGetErrorString(rc));
    }
    *c = (collectives){.ops = &nccl_ops, .rank = rank, .size = size, .impl = n};
    *out = c;
    return AUGUR_OK;
}
