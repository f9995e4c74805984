/* NCCL implementation of the collectives interface (GPU backend). Compiled only
 * where a CUDA toolkit with NCCL exists. Buffers are device pointers; every call
 * is enqueued on the communicator's stream and completes before returning, matching
 * the MPI implementation's blocking semantics. */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdbool.h>
#include <stdlib.h>

#include "comm/collectives.h"

typedef struct {
    ncclComm_t comm;
    cudaStream_t stream;
    bool own_stream;         /* made here, rather than the compute backend's */
    int device;
} nccl_impl;

/* Errors name the operation, not this rank: the caller's log line does that. */
static augur_status nccl_fail(const collectives *c, const char *op, ncclResult_t rc, augur_error *err)
{
    return augur_fail(err, AUGUR_E_COMM, "%s over %d ranks failed: %s", op, c->size, ncclGetErrorString(rc));
}

static augur_status finish(collectives *c, const char *op, ncclResult_t rc, augur_error *err)
{
    nccl_impl *n = c->impl;
    if (rc != ncclSuccess)
        return nccl_fail(c, op, rc, err);
    cudaError_t ce = cudaStreamSynchronize(n->stream);
    if (ce != cudaSuccess)
        return augur_fail(err, AUGUR_E_COMM, "%s over %d ranks: %s", op, c->size, cudaGetErrorString(ce));
    return AUGUR_OK;
}

static augur_status nccl_allreduce(collectives *c, float *buf, size_t count, augur_error *err)
{
    nccl_impl *n = c->impl;
    return finish(c, "ncclAllReduce", ncclAllReduce(buf, buf, count, ncclFloat32, ncclSum, n->comm, n->stream),
                  err);
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

static void nccl_destroy(collectives *c)
{
    nccl_impl *n = c->impl;
    if (n) {
        ncclCommDestroy(n->comm);
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
