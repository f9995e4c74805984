/* Point-to-point wire messages between the draft rank and the leader (DESIGN §4), and
 * the leader's command broadcast to the target group.
 *
 * Each message type has its own tag, so a verdict can never be read as a proposal.
 * Every wait carries a deadline (comm/liveness.h), so a peer that died or stopped
 * answering is reported ("no proposal from draft rank 2 within 30 s", "proposal to
 * leader rank 0 not taken within 30 s of its last heartbeat") instead of a hang:
 * receives poll MPI_Improbe, sends post MPI_Isend, the command broadcast posts
 * MPI_Ibcast, and all poll against the deadline. Waits of other ranks on the leader
 * are patient (they go on while the leader's heartbeats come); the leader's are hard.
 * The job is then expected to end (MPI_Abort) on the first error. A large send is
 * taken only when the peer posts its receive, so its deadline also covers the peer's
 * work before that (the leader's target prefill before the first proposal), as a
 * receive's covers the peer's work before sending.
 *
 * Error messages name the peer, not the rank they run on: the caller's log line does
 * that ("augur: rank 1: ...").
 *
 * Typed messages (msg_send_typed, msg_recv_typed) encode, decode and validate with
 * proto/wire.c; want->peer_rank is filled in from the source rank so errors name it. */
#ifndef AUGUR_MESSAGING_H
#define AUGUR_MESSAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "base/error.h"
#include "comm/liveness.h"
#include "proto/wire.h"

/* How long a send or receive waits before calling its peer dead. */
#define MSG_DEFAULT_TIMEOUT_S 30.0

/* Tags are plain ints so callers may define their own beside these (and pass
 * MPI_ANY_TAG to receive); these are the ones errors name ("no proposal ..."). */
enum {
    MSG_TAG_REQUEST = 11,    /* leader -> draft: a new request */
    MSG_TAG_PROPOSAL = 12,   /* draft -> leader */
    MSG_TAG_VERDICT = 13,    /* leader -> draft */
    MSG_TAG_STOP = 14,       /* leader -> draft: leave the serving loop (empty body) */
    MSG_TAG_RESULT = 15,     /* leader -> whoever asked */
    MSG_TAG_COMMAND = 16,    /* leader -> one rank, point to point */
    MSG_TAG_HEARTBEAT = LIVE_TAG_HEARTBEAT, /* every rank -> every rank (liveness.c), empty */
};

/* Sends len bytes (len <= INT_MAX) and waits until MPI has taken them (buffered, or
 * matched by the peer's receive), at most timeout_s (<= 0 waits forever). After a
 * timeout the send is abandoned, not withdrawn (MPI may not cancel a send): keep buf
 * alive until the job ends, which should be at once. */
augur_status msg_send(MPI_Comm comm, int dest, int tag, const uint8_t *buf, size_t len, double timeout_s,
                      augur_error *err);

/* Waits for one message with this tag (or MPI_ANY_TAG) from source (or MPI_ANY_SOURCE)
 * and returns it in a malloc'ed buffer (*buf, *len; the caller frees, also for an
 * empty message). timeout_s <= 0 waits forever. *tag_out (may be NULL) gets the tag.
 * MPI_ANY_TAG never returns a heartbeat: those are taken in passing. */
augur_status msg_recv(MPI_Comm comm, int source, int tag, double timeout_s, uint8_t **buf, size_t *len,
                      int *tag_out, augur_error *err);

/* Whether a message with this tag from source is waiting, without receiving it. */
augur_status msg_poll(MPI_Comm comm, int source, int tag, bool *ready, augur_error *err);

/* Waits until a message with one of tags[0..n_tags-1] from source is waiting, without
 * receiving it; *tag_out says which. Fails with "no request or command from leader rank
 * 0 within 30 s ...". */
augur_status msg_wait_any(MPI_Comm comm, int source, const int *tags, int n_tags, double timeout_s, int *tag_out,
                          augur_error *err);

/* Typed messages: the tag says what msg / out points to (MSG_TAG_REQUEST: wire_request,
 * MSG_TAG_PROPOSAL: wire_proposal, MSG_TAG_VERDICT: wire_verdict, MSG_TAG_COMMAND:
 * wire_command); any other tag is refused. The send encodes *msg and sends it like
 * msg_send; the receive waits like msg_recv, then decodes into *out and checks it
 * against want (NULL: anything goes). Free what *out owns with its wire_*_free. */
augur_status msg_send_typed(MPI_Comm comm, int dest, int tag, const void *msg, double timeout_s, augur_error *err);
augur_status msg_recv_typed(MPI_Comm comm, int source, int tag, double timeout_s, const wire_expect *want, void *out,
                            augur_error *err);

/* Collective over comm: root sends *cmd, every other rank decodes it into *cmd (free
 * with wire_command_free) after checking it against want. If the root cannot encode,
 * it still takes part and every rank returns an error, so none is left waiting. The
 * root waits at most timeout_s for the others (then names the ranks that never came);
 * the others wait for the root (the leader) while its heartbeats come. */
augur_status msg_bcast_command(MPI_Comm comm, int root, wire_command *cmd, const wire_expect *want, double timeout_s,
                               augur_error *err);

#endif
