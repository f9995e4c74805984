/* Draft <-> leader messages over MPI (see messaging.h). */
#include "comm/messaging.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "comm/liveness.h"
#include "comm/mpi_error.h"

/* What each tag carries, for errors: "no proposal from draft rank 2", "verdict to
 * draft rank 2 not taken". */
typedef struct {
    int tag;
    const char *noun;
    const char *sender;
    const char *receiver;
} msg_kind;

static const msg_kind kinds[] = {
    {MSG_TAG_REQUEST, "request", "leader rank", "draft rank"},
    {MSG_TAG_PROPOSAL, "proposal", "draft rank", "leader rank"},
    {MSG_TAG_VERDICT, "verdict", "leader rank", "draft rank"},
    {MSG_TAG_STOP, "stop", "leader rank", "draft rank"},
    {MSG_TAG_RESULT, "result", "rank", "rank"},
    {MSG_TAG_COMMAND, "command", "leader rank", "rank"},
};

static const msg_kind *kind_of(int tag)
{
    static const msg_kind other = {-1, "message", "rank", "rank"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (kinds[i].tag == tag)
            return &kinds[i];
    return &other;
}

static augur_status msg_mpi_fail(const char *op, int tag, int peer, int rc, augur_error *err)
{
    return comm_mpi_fail(err, rc, "%s of a %s with rank %d failed", op, kind_of(tag)->noun, peer);
}

/* ---- sends ---- */

/* A send buffer MPI may still read after its send was abandoned: kept reachable rather
 * than freed (a use after free) or dropped (a leak report); the job is ending anyway. */
static uint8_t *abandoned_buf;

/* Tries to withdraw a send past its deadline. Open MPI does not cancel sends, so after
 * a short grace the request is freed with the send still posted; returns whether MPI
 * is done with the buffer. */
static bool withdraw(MPI_Request *req)
{
    MPI_Cancel(req);
    live_deadline grace = live_deadline_start(0.05, -1);
    bool done = false;
    if (live_wait(req, &grace, &done) == MPI_SUCCESS && done)
        return true;
    MPI_Request_free(req);
    return false;
}

/* Posts the send and polls it against the deadline; *in_use says whether MPI may still
 * read buf when this returns (only after an error). */
static augur_status send_bytes(MPI_Comm comm, int dest, int tag, const uint8_t *buf, size_t len,
                               double timeout_s, bool *in_use, augur_error *err)
{
    *in_use = false;
    const msg_kind *k = kind_of(tag);
    if (len > INT_MAX)
        return augur_fail(err, AUGUR_E_INTERNAL, "%s of %zu bytes to rank %d exceeds MPI's int count", k->noun, len,
                          dest);
    MPI_Request req;
    int rc = MPI_Isend(buf, (int)len, MPI_BYTE, dest, tag, comm, &req);
    if (rc != MPI_SUCCESS)
        return msg_mpi_fail("MPI_Isend", tag, dest, rc, err);
    live_deadline d = live_deadline_start(timeout_s, live_patient_on(comm, dest));
    bool done = false;
    rc = live_wait(&req, &d, &done);
    if (rc != MPI_SUCCESS) {
        *in_use = true; /* the request's state is unknown: assume the worst */
        return msg_mpi_fail("MPI_Test", tag, dest, rc, err);
    }
    if (done)
        return AUGUR_OK;
    *in_use = !withdraw(&req);
    char within[64];
    return augur_fail(err, AUGUR_E_COMM, "%s to %s %d not taken %s", k->noun, k->receiver, dest,
                      live_within(&d, within, sizeof within));
}

augur_status msg_send(MPI_Comm comm, int dest, int tag, const uint8_t *buf, size_t len, double timeout_s,
                      augur_error *err)
{
    bool in_use;
    return send_bytes(comm, dest, tag, buf, len, timeout_s, &in_use, err);
}

/* ---- receives ---- */

augur_status msg_poll(MPI_Comm comm, int source, int tag, bool *ready, augur_error *err)
{
    live_tick();
    int flag = 0;
    int rc = MPI_Iprobe(source, tag, comm, &flag, MPI_STATUS_IGNORE);
    *ready = flag != 0;
    if (rc != MPI_SUCCESS)
        return msg_mpi_fail("MPI_Iprobe", tag, source, rc, err);
    return AUGUR_OK;
}

/* "no proposal from draft rank 2 within 3 s"; nouns joins the kinds waited for. */
static augur_status timed_out(int source, const char *nouns, const char *sender, const live_deadline *d,
                              augur_error *err)
{
    char within[64];
    live_within(d, within, sizeof within);
    if (source == MPI_ANY_SOURCE)
        return augur_fail(err, AUGUR_E_COMM, "no %s from any rank %s", nouns, within);
    return augur_fail(err, AUGUR_E_COMM, "no %s from %s %d %s", nouns, sender, source, within);
}

/* Claims the next matching message, polling against the deadline. The matched probe
 * means nothing else can receive it between our size query and the receive. A
 * heartbeat that MPI_ANY_TAG matches is taken for what it is, and the wait goes on. */
static augur_status claim(MPI_Comm comm, int source, int tag, double timeout_s, MPI_Message *handle,
                          MPI_Status *status, augur_error *err)
{
    live_deadline d = live_deadline_start(timeout_s, live_patient_on(comm, source));
    for (;;) {
        int flag = 0;
        int rc = MPI_Improbe(source, tag, comm, &flag, handle, status);
        if (rc != MPI_SUCCESS)
            return msg_mpi_fail("MPI_Improbe", tag, source, rc, err);
        if (flag && status->MPI_TAG == LIVE_TAG_HEARTBEAT && tag != LIVE_TAG_HEARTBEAT) {
            live_take_heartbeat(handle, status->MPI_SOURCE);
            continue;
        }
        if (flag)
            return AUGUR_OK;
        if (live_expired(&d))
            return timed_out(source, kind_of(tag)->noun, kind_of(tag)->sender, &d, err);
        live_backoff(&d);
    }
}

augur_status msg_wait_any(MPI_Comm comm, int source, const int *tags, int n_tags, double timeout_s, int *tag_out,
                          augur_error *err)
{
    live_deadline d = live_deadline_start(timeout_s, live_patient_on(comm, source));
    for (;;) {
        for (int i = 0; i < n_tags; i++) {
            int flag = 0;
            int rc = MPI_Iprobe(source, tags[i], comm, &flag, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS)
                return msg_mpi_fail("MPI_Iprobe", tags[i], source, rc, err);
            if (flag) {
                *tag_out = tags[i];
                return AUGUR_OK;
            }
        }
        if (live_expired(&d))
            break;
        live_backoff(&d);
    }
    char nouns[128] = "";
    size_t used = 0;
    for (int i = 0; i < n_tags && used < sizeof nouns; i++) {
        int n = snprintf(nouns + used, sizeof nouns - used, "%s%s", i ? " or " : "", kind_of(tags[i])->noun);
        used += n > 0 ? (size_t)n : 0;
    }
    return timed_out(source, nouns, n_tags ? kind_of(tags[0])->sender : "rank", &d, err);
}

/* msg_recv that also reports the sender, for the typed receives' error messages. */
static augur_status recv_from(MPI_Comm comm, int source, int tag, double timeout_s, uint8_t **buf, size_t *len,
                              int *tag_out, int *from, augur_error *err)
{
    *buf = NULL;
    *len = 0;
    MPI_Message handle;
    MPI_Status status;
    augur_status st = claim(comm, source, tag, timeout_s, &handle, &status, err);
    if (st != AUGUR_OK)
        return st;
    const char *noun = kind_of(status.MPI_TAG)->noun;
    int count = 0;
    int rc = MPI_Get_count(&status, MPI_BYTE, &count);
    if (rc != MPI_SUCCESS || count < 0)
        return augur_fail(err, AUGUR_E_COMM, "%s from rank %d has no byte count", noun, status.MPI_SOURCE);
    uint8_t *data = malloc(count ? (size_t)count : 1);
    if (!data) {
        /* The message is claimed: it must still be received, into a throwaway buffer. */
        char sink;
        MPI_Mrecv(&sink, 0, MPI_BYTE, &handle, MPI_STATUS_IGNORE);
        return augur_fail(err, AUGUR_E_NOMEM, "cannot allocate %d bytes for a %s", count, noun);
    }
    rc = MPI_Mrecv(data, count, MPI_BYTE, &handle, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
        free(data);
        return msg_mpi_fail("MPI_Mrecv", status.MPI_TAG, status.MPI_SOURCE, rc, err);
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

static augur_status no_wire_form(int tag, augur_error *err)
{
    return augur_fail(err, AUGUR_E_INTERNAL, "messaging: a %s (tag %d) has no typed wire form", kind_of(tag)->noun,
                      tag);
}

static augur_status encode(int tag, const void *msg, uint8_t **buf, size_t *len, augur_error *err)
{
    switch (tag) {
    case MSG_TAG_REQUEST: return wire_request_encode(msg, buf, len, err);
    case MSG_TAG_PROPOSAL: return wire_proposal_encode(msg, buf, len, err);
    case MSG_TAG_VERDICT: return wire_verdict_encode(msg, buf, len, err);
    case MSG_TAG_COMMAND: return wire_command_encode(msg, buf, len, err);
    default: return no_wire_form(tag, err);
    }
}

static augur_status decode(int tag, const uint8_t *buf, size_t len, const wire_expect *want, void *out,
                           augur_error *err)
{
    switch (tag) {
    case MSG_TAG_REQUEST: return wire_request_decode(buf, len, want, out, err);
    case MSG_TAG_PROPOSAL: return wire_proposal_decode(buf, len, want, out, err);
    case MSG_TAG_VERDICT: return wire_verdict_decode(buf, len, want, out, err);
    case MSG_TAG_COMMAND: return wire_command_decode(buf, len, want, out, err);
    default: return no_wire_form(tag, err);
    }
}

/* The decoders name the sender from want->peer_rank. */
static wire_expect expect_from(const wire_expect *want, int source)
{
    wire_expect w = want ? *want
                         : (wire_expect){.request_id = WIRE_ANY_REQUEST, .round = WIRE_ANY_ROUND, .vocab_size = 0};
    w.peer_rank = source;
    return w;
}

augur_status msg_send_typed(MPI_Comm comm, int dest, int tag, const void *msg, double timeout_s, augur_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    augur_status st = encode(tag, msg, &buf, &len, err);
    bool in_use = false;
    if (st == AUGUR_OK)
        st = send_bytes(comm, dest, tag, buf, len, timeout_s, &in_use, err);
    if (in_use)
        abandoned_buf = buf;
    else
        free(buf);
    return st;
}

augur_status msg_recv_typed(MPI_Comm comm, int source, int tag, double timeout_s, const wire_expect *want, void *out,
                            augur_error *err)
{
    uint8_t *buf;
    size_t len;
    int from;
    augur_status st = recv_from(comm, source, tag, timeout_s, &buf, &len, NULL, &from, err);
    if (st != AUGUR_OK)
        return st;
    wire_expect w = expect_from(want, from);
    st = decode(tag, buf, len, &w, out, err);
    free(buf);
    return st;
}

/* ---- broadcast to the target group ---- */

/* Root: encodes *cmd into *buf, *len; a failure still lets the broadcast go on. */
static augur_status encode_for_bcast(const wire_command *cmd, uint8_t **buf, size_t *len, augur_error *err)
{
    augur_status st = wire_command_encode(cmd, buf, len, err);
    if (st == AUGUR_OK && *len > INT_MAX)
        st = augur_fail(err, AUGUR_E_INTERNAL, "command of %zu bytes exceeds MPI's int count", *len);
    return st;
}

/* One MPI_Ibcast polled against d. The root's wait is hard and names the members that
 * never arrived; the others' wait is patient on the root (the leader). *pending: MPI
 * may still use buf (after a timeout: keep it, the job is ending). */
static augur_status bcast_part(MPI_Comm comm, int root, bool is_root, void *buf, int count, MPI_Datatype type,
                               live_deadline *d, const char *part, bool *pending, augur_error *err)
{
    MPI_Request req;
    int rc = MPI_Ibcast(buf, count, type, root, comm, &req);
    bool done = false;
    if (rc == MPI_SUCCESS)
        rc = live_wait(&req, d, &done);
    *pending = rc == MPI_SUCCESS && !done;
    if (rc != MPI_SUCCESS)
        return msg_mpi_fail(part, MSG_TAG_COMMAND, root, rc, err);
    if (done)
        return AUGUR_OK;
    if (is_root)
        return live_fail_collective(err, comm, "command broadcast", d->timeout_s);
    int world_root = live_world_rank(comm, root);
    return timed_out(world_root >= 0 ? world_root : root, "command", "leader rank", d, err);
}

augur_status msg_bcast_command(MPI_Comm comm, int root, wire_command *cmd, const wire_expect *want, double timeout_s,
                               augur_error *err)
{
    int rank = -1;
    MPI_Comm_rank(comm, &rank);
    bool is_root = rank == root;
    live_deadline d = live_deadline_start(timeout_s, is_root ? -1 : live_patient_on(comm, root));
    uint8_t *buf = NULL;
    size_t len = 0;
    augur_status st = is_root ? encode_for_bcast(cmd, &buf, &len, err) : AUGUR_OK;
    /* Length 0 never encodes a command (version is always set), so it tells the other
     * ranks that the root failed and they should not wait for the bytes. */
    static uint64_t n; /* static: a length broadcast abandoned at its deadline may still land here */
    n = st == AUGUR_OK ? (uint64_t)len : 0;
    bool pending = false;
    augur_status bst = bcast_part(comm, root, is_root, &n, 1, MPI_UINT64_T, &d, "MPI_Ibcast (length)", &pending, err);
    if (bst != AUGUR_OK) {
        free(buf);
        return bst;
    }
    if (is_root && st != AUGUR_OK) {
        free(buf);
        return st;
    }
    if (n == 0)
        return augur_fail(err, AUGUR_E_COMM, "leader rank %d could not encode its command", root);
    if (n > INT_MAX)
        return augur_fail(err, AUGUR_E_COMM, "command broadcast of %llu bytes from rank %d is impossible",
                          (unsigned long long)n, root);
    if (!is_root) {
        buf = malloc((size_t)n);
        if (!buf)
            return augur_fail(err, AUGUR_E_NOMEM, "cannot allocate %llu bytes for a command", (unsigned long long)n);
    }
    /* The bytes follow the length at once: a fresh deadline, for the root hard as before. */
    d = live_deadline_start(timeout_s, d.patient_on);
    st = bcast_part(comm, root, is_root, buf, (int)n, MPI_BYTE, &d, "MPI_Ibcast (bytes)", &pending, err);
    if (st == AUGUR_OK && !is_root) {
        wire_expect w = expect_from(want, root);
        st = decode(MSG_TAG_COMMAND, buf, (size_t)n, &w, cmd, err);
    }
    if (pending)
        abandoned_buf = buf;
    else
        free(buf);
    return st;
}
