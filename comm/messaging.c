/* Draft <-> leader messages over MPI (see messaging.h). */
#include "comm/messaging.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char *tag_noun(int tag)
{
    switch (tag) {
    case MSG_TAG_REQUEST: return "request";
    case MSG_TAG_PROPOSAL: return "proposal";
    case MSG_TAG_VERDICT: return "verdict";
    case MSG_TAG_STOP: return "stop";
    case MSG_TAG_RESULT: return "result";
    case MSG_TAG_COMMAND: return "command";
    default: return "message";
    }
}

/* Who sends this kind of message, for "no proposal from draft rank 2". */
static const char *tag_sender(int tag)
{
    switch (tag) {
    case MSG_TAG_PROPOSAL: return "draft rank";
    case MSG_TAG_REQUEST:
    case MSG_TAG_VERDICT:
    case MSG_TAG_STOP:
    case MSG_TAG_COMMAND: return "leader rank";
    default: return "rank";
    }
}

static int my_rank(MPI_Comm comm)
{
    int rank = -1;
    MPI_Comm_rank(comm, &rank);
    return rank;
}

static augur_status msg_mpi_fail(MPI_Comm comm, const char *op, int tag, int peer, int rc, augur_error *err)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error code %d", rc);
    return augur_fail(err, AUGUR_E_COMM, "rank %d: %s of a %s with rank %d failed: %s", my_rank(comm), op,
                      tag_noun(tag), peer, text);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Yield first (a proposal usually arrives within microseconds of the verify ending),
 * then sleep briefly so an idle waiter leaves the core to busy ranks; 50 us keeps the
 * added latency small next to a forward pass. */
static void backoff(unsigned *polls)
{
    if (*polls < 100) {
        (*polls)++;
        sched_yield();
        return;
    }
    struct timespec ts = {0, 50 * 1000};
    nanosleep(&ts, NULL);
}

augur_status msg_send(MPI_Comm comm, int dest, int tag, const uint8_t *buf, size_t len, augur_error *err)
{
    if (len > INT_MAX)
        return augur_fail(err, AUGUR_E_INTERNAL, "rank %d: %s of %zu bytes to rank %d exceeds MPI's int count",
                          my_rank(comm), tag_noun(tag), len, dest);
    int rc = MPI_Send(buf, (int)len, MPI_BYTE, dest, tag, comm);
    if (rc != MPI_SUCCESS)
        return msg_mpi_fail(comm, "MPI_Send", tag, dest, rc, err);
    return AUGUR_OK;
}

augur_status msg_poll(MPI_Comm comm, int source, int tag, bool *ready, augur_error *err)
{
    int flag = 0;
    int rc = MPI_Iprobe(source, tag, comm, &flag, MPI_STATUS_IGNORE);
    *ready = flag != 0;
    if (rc != MPI_SUCCESS)
        return msg_mpi_fail(comm, "MPI_Iprobe", tag, source, rc, err);
    return AUGUR_OK;
}

static augur_status timed_out(MPI_Comm comm, int source, int tag, double timeout_s, augur_error *err)
{
    if (source == MPI_ANY_SOURCE)
        return augur_fail(err, AUGUR_E_COMM, "no %s from any rank within %g s (rank %d waiting)", tag_noun(tag),
                          timeout_s, my_rank(comm));
    return augur_fail(err, AUGUR_E_COMM, "no %s from %s %d within %g s (rank %d waiting)", tag_noun(tag),
                      tag_sender(tag), source, timeout_s, my_rank(comm));
}

/* msg_recv that also reports the sender, for the typed receives' error messages. */
static augur_status recv_from(MPI_Comm comm, int source, int tag, double timeout_s, uint8_t **buf, size_t *len,
                              int *tag_out, int *from, augur_error *err)
{
    *buf = NULL;
    *len = 0;
    double deadline = now_s() + timeout_s;
    unsigned polls = 0;
    MPI_Message handle;
    MPI_Status status;
    for (;;) {
        int flag = 0;
        /* The matched probe claims the message, so nothing can receive it between our
         * size query and the receive below. */
        int rc = MPI_Improbe(source, tag, comm, &flag, &handle, &status);
        if (rc != MPI_SUCCESS)
            return msg_mpi_fail(comm, "MPI_Improbe", tag, source, rc, err);
        if (flag)
            break;
        if (timeout_s > 0 && now_s() > deadline)
            return timed_out(comm, source, tag, timeout_s, err);
        backoff(&polls);
    }
    int count = 0;
    int rc = MPI_Get_count(&status, MPI_BYTE, &count);
    if (rc != MPI_SUCCESS || count < 0)
        return augur_fail(err, AUGUR_E_COMM, "rank %d: %s from rank %d has no byte count", my_rank(comm),
                          tag_noun(status.MPI_TAG), status.MPI_SOURCE);
    uint8_t *data = malloc(count ? (size_t)count : 1);
    if (!data) {
        /* The message is claimed: it must still be received, into a throwaway buffer. */
        char sink;
        MPI_Mrecv(&sink, 0, MPI_BYTE, &handle, MPI_STATUS_IGNORE);
        return augur_fail(err, AUGUR_E_NOMEM, "rank %d: cannot allocate %d bytes for a %s", my_rank(comm), count,
                          tag_noun(status.MPI_TAG));
    }
    rc = MPI_Mrecv(data, count, MPI_BYTE, &handle, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
        free(data);
        return msg_mpi_fail(comm, "MPI_Mrecv", status.MPI_TAG, status.MPI_SOURCE, rc, err);
    }
    *buf = data;
    *len = (size_t)count;
    if (from)
        *from = status.MPI_SOURCE;
    if (tag_out)
        *tag_out = status.MPI_TAG;
    return AUGUR_OK;
}

augur_status msg_recv(MPI_Comm comm, int source, int tag, double timeout_s, uint8_t **buf, size_t *len,
                      int *tag_out, augur_error *err)
{
    return recv_from(comm, source, tag, timeout_s, buf, len, tag_out, NULL, err);
}

/* ---- typed messages: encode + send, receive + decode ---- */

static augur_status send_encoded(MPI_Comm comm, int dest, int tag, augur_status encoded, uint8_t *buf,
                                 size_t len, augur_error *err)
{
    augur_status st = encoded;
    if (st == AUGUR_OK)
        st = msg_send(comm, dest, tag, buf, len, err);
    free(buf);
    return st;
}

/* The decoders name the sender from want->peer_rank. */
static wire_expect expect_from(const wire_expect *want, int source)
{
    wire_expect w = want ? *want
                         : (wire_expect){.request_id = WIRE_ANY_REQUEST, .round = WIRE_ANY_ROUND, .vocab_size = 0};
    w.peer_rank = source;
    return w;
}

augur_status msg_send_proposal(MPI_Comm comm, int leader, const wire_proposal *p, augur_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    augur_status st = wire_proposal_encode(p, &buf, &len, err);
    return send_encoded(comm, leader, MSG_TAG_PROPOSAL, st, buf, len, err);
}

augur_status msg_recv_proposal(MPI_Comm comm, int draft, double timeout_s, const wire_expect *want,
                               wire_proposal *out, augur_error *err)
{
    uint8_t *buf;
    size_t len;
    int from;
    augur_status st = recv_from(comm, draft, MSG_TAG_PROPOSAL, timeout_s, &buf, &len, NULL, &from, err);
    if (st != AUGUR_OK)
        return st;
    wire_expect w = expect_from(want, from);
    st = wire_proposal_decode(buf, len, &w, out, err);
    free(buf);
    return st;
}

augur_status msg_send_verdict(MPI_Comm comm, int draft, const wire_verdict *v, augur_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    augur_status st = wire_verdict_encode(v, &buf, &len, err);
    return send_encoded(comm, draft, MSG_TAG_VERDICT, st, buf, len, err);
}

augur_status msg_recv_verdict(MPI_Comm comm, int leader, double timeout_s, const wire_expect *want,
                              wire_verdict *out, augur_error *err)
{
    uint8_t *buf;
    size_t len;
    int from;
    augur_status st = recv_from(comm, leader, MSG_TAG_VERDICT, timeout_s, &buf, &len, NULL, &from, err);
    if (st != AUGUR_OK)
        return st;
    wire_expect w = expect_from(want, from);
    st = wire_verdict_decode(buf, len, &w, out, err);
    free(buf);
    return st;
}

augur_status msg_send_request(MPI_Comm comm, int dest, const wire_request *r, augur_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    augur_status st = wire_request_encode(r, &buf, &len, err);
    return send_encoded(comm, dest, MSG_TAG_REQUEST, st, buf, len, err);
}

augur_status msg_recv_request(MPI_Comm comm, int leader, double timeout_s, const wire_expect *want,
                              wire_request *out, augur_error *err)
{
    uint8_t *buf;
    size_t len;
    int from;
    augur_status st = recv_from(comm, leader, MSG_TAG_REQUEST, timeout_s, &buf, &len, NULL, &from, err);
    if (st != AUGUR_OK)
        return st;
    wire_expect w = expect_from(want, from);
    st = wire_request_decode(buf, len, &w, out, err);
    free(buf);
    return st;
}

augur_status msg_send_command(MPI_Comm comm, int dest, const wire_command *c, augur_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    augur_status st = wire_command_encode(c, &buf, &len, err);
    return send_encoded(comm, dest, MSG_TAG_COMMAND, st, buf, len, err);
}

augur_status msg_recv_command(MPI_Comm comm, int leader, double timeout_s, const wire_expect *want,
                              wire_command *out, augur_error *err)
{
    uint8_t *buf;
    size_t len;
    int from;
    augur_status st = recv_from(comm, leader, MSG_TAG_COMMAND, timeout_s, &buf, &len, NULL, &from, err);
    if (st != AUGUR_OK)
        return st;
    wire_expect w = expect_from(want, from);
    st = wire_command_decode(buf, len, &w, out, err);
    free(buf);
    return st;
}

/* ---- broadcast to the target group ---- */

augur_status msg_bcast_command(MPI_Comm comm, int root, wire_command *cmd, const wire_expect *want,
                               augur_error *err)
{
    int rank = my_rank(comm);
    uint8_t *buf = NULL;
    size_t len = 0;
    augur_status st = AUGUR_OK;
    if (rank == root) {
        st = wire_command_encode(cmd, &buf, &len, err);
        if (st == AUGUR_OK && len > INT_MAX)
            st = augur_fail(err, AUGUR_E_INTERNAL, "rank %d: command of %zu bytes exceeds MPI's int count", rank, len);
    }
    /* Length 0 never encodes a command (version is always set), so it tells the other
     * ranks that the root failed and they should not wait for the bytes. */
    uint64_t n = st == AUGUR_OK ? (uint64_t)len : 0;
    int rc = MPI_Bcast(&n, 1, MPI_UINT64_T, root, comm);
    if (rc != MPI_SUCCESS) {
        free(buf);
        return msg_mpi_fail(comm, "MPI_Bcast (length)", MSG_TAG_COMMAND, root, rc, err);
    }
    if (rank == root && st != AUGUR_OK) {
        free(buf);
        return st;
    }
    if (n == 0)
        return augur_fail(err, AUGUR_E_COMM, "rank %d: leader rank %d could not encode its command", rank, root);
    if (n > INT_MAX)
        return augur_fail(err, AUGUR_E_COMM, "rank %d: command broadcast of %llu bytes from rank %d is impossible",
                          rank, (unsigned long long)n, root);
    if (rank != root) {
        buf = malloc((size_t)n);
        if (!buf)
            return augur_fail(err, AUGUR_E_NOMEM, "rank %d: cannot allocate %llu bytes for a command", rank,
                              (unsigned long long)n);
    }
    rc = MPI_Bcast(buf, (int)n, MPI_BYTE, root, comm);
    if (rc != MPI_SUCCESS) {
        free(buf);
        return msg_mpi_fail(comm, "MPI_Bcast (bytes)", MSG_TAG_COMMAND, root, rc, err);
    }
    if (rank != root) {
        wire_expect w = expect_from(want, root);
        st = wire_command_decode(buf, (size_t)n, &w, cmd, err);
    }
    free(buf);
    return st;
}
