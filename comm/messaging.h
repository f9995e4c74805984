/* Point-to-point wire messages between the draft rank and the leader (DESIGN §4), and
 * the leader's command broadcast to the target group.
 *
 * Each message type has its own tag, so a verdict can never be read as a proposal.
 * Receives poll MPI_Improbe against a deadline: a peer that died or wandered off is
 * reported as "no proposal from draft rank 2 within 30 s" instead of a hang. Sends
 * are plain MPI_Send: they block only until the peer's matching receive is posted,
 * and the peer's receive is what carries the deadline, so one side of every exchange
 * always notices. The job is then expected to end (MPI_Abort) on the first error.
 *
 * Typed receives decode and validate with proto/wire.c; want->peer_rank is filled in
 * from the source rank so errors name it. */
#ifndef AUGUR_MESSAGING_H
#define AUGUR_MESSAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "proto/wire.h"
#include "base/error.h"

/* What a stalled round waits for before calling its peer dead. */
#define MSG_DEFAULT_TIMEOUT_S 30.0

/* Tags are plain ints so callers may define their own beside these (and pass
 * MPI_ANY_TAG to receive); these are the ones errors name ("no proposal ..."). The
 * values match runtime/spec_engine.h's SPEC_TAG_*. */
enum {
    MSG_TAG_REQUEST = 11,    /* leader -> draft: a new request */
    MSG_TAG_PROPOSAL = 12,   /* draft -> leader */
    MSG_TAG_VERDICT = 13,    /* leader -> draft */
    MSG_TAG_STOP = 14,       /* leader -> draft: leave the serving loop (empty body) */
    MSG_TAG_RESULT = 15,     /* leader -> whoever asked */
    MSG_TAG_COMMAND = 16,    /* leader -> one rank, point to point */
};

/* Sends len bytes (len <= INT_MAX). */
augur_status msg_send(MPI_Comm comm, int dest, int tag, const uint8_t *buf, size_t len, augur_error *err);

/* Waits for one message with this tag (or MPI_ANY_TAG) from source (or MPI_ANY_SOURCE)
 * and returns it in a malloc'ed buffer (*buf, *len; the caller frees, also for an
 * empty message). timeout_s <= 0 waits forever. *tag_out (may be NULL) gets the tag. */
augur_status msg_recv(MPI_Comm comm, int source, int tag, double timeout_s, uint8_t **buf, size_t *len,
                      int *tag_out, augur_error *err);

/* Whether a message with this tag from source is waiting, without receiving it. */
augur_status msg_poll(MPI_Comm comm, int source, int tag, bool *ready, augur_error *err);

augur_status msg_send_proposal(MPI_Comm comm, int leader, const wire_proposal *p, augur_error *err);
augur_status msg_recv_proposal(MPI_Comm comm, int draft, double timeout_s, const wire_expect *want,
                               wire_proposal *out, augur_error *err);

augur_status msg_send_verdict(MPI_Comm comm, int draft, const wire_verdict *v, augur_error *err);
augur_status msg_recv_verdict(MPI_Comm comm, int leader, double timeout_s, const wire_expect *want,
                              wire_verdict *out, augur_error *err);

augur_status msg_send_request(MPI_Comm comm, int dest, const wire_request *r, augur_error *err);
augur_status msg_recv_request(MPI_Comm comm, int leader, double timeout_s, const wire_expect *want,
                              wire_request *out, augur_error *err);

augur_status msg_send_command(MPI_Comm comm, int dest, const wire_command *c, augur_error *err);
augur_status msg_recv_command(MPI_Comm comm, int leader, double timeout_s, const wire_expect *want,
                              wire_command *out, augur_error *err);

/* Collective over comm: root sends *cmd, every other rank decodes it into *cmd (free
 * with wire_command_free) after checking it against want. If the root cannot encode,
 * it still takes part and every rank returns an error, so none is left waiting. */
augur_status msg_bcast_command(MPI_Comm comm, int root, wire_command *cmd, const wire_expect *want,
                               augur_error *err);

#endif
