/* Deadlines and heartbeats for every wait in comm/: never a hang (DESIGN §8).
 *
 * Every wait in comm/ is a non-blocking MPI call (MPI_Isend, MPI_Improbe,
 * MPI_Iallreduce, MPI_Iallgather, MPI_Igatherv, MPI_Ibcast) polled against a deadline.
 *
 * Hard and patient deadlines. A wait fails timeout_s after it began (hard), except a
 * wait of another rank on the leader (patient): the leader may legitimately be busy
 * for much longer than the timeout while the others idle — a long target-only run
 * while the draft rank waits for the stop, the target followers waiting for the next
 * command while the leader waits on the draft — so a patient wait fails only timeout_s
 * after the leader's last heartbeat. The leader's own waits are all hard, so the
 * leader either drives the job on or fails, and the others never wait for ever.
 *
 * Heartbeats. Once live_start has run on a rank, live_tick (called by every wait in
 * comm/, once as it begins and on every poll) sends an empty message with
 * LIVE_TAG_HEARTBEAT over the world communicator to every other rank at most every
 * timeout/3, and drains the ones received (every period/4), stamping when each rank
 * was last heard. A rank thus beats whenever it communicates — inside any wait, and on
 * every round the leader drives — and falls silent when it is stopped, dead, or
 * computing for long without communicating. The normal path pays a clock read per
 * poll and (ranks - 1) empty sends per rank per timeout/3.
 *
 * Naming. A rank waiting in a collective beats every timeout/3, so when a collective
 * times out the members not heard from for 2/3 of the timeout are those that never
 * arrived; the message names them ("rank 1 silent for 3.4 s").
 *
 * Limits: a leader that computes or blocks outside comm/ for longer than the timeout
 * (one forward longer than --timeout, a stdout nobody reads) is taken for dead.
 * One state per process, like MPI's own: the collectives (MPI and NCCL) and messaging
 * all feed it without a handle threaded through the collectives interface. */
#ifndef AUGUR_LIVENESS_H
#define AUGUR_LIVENESS_H

#include <stdbool.h>

#include <mpi.h>

#include "base/error.h"

/* Heartbeats' tag on the world communicator (beside messaging.h's tags). */
#define LIVE_TAG_HEARTBEAT 17

/* Starts heartbeats over world (every rank of it should call this), the leader being
 * world rank `leader`; timeout_s <= 0 stops them (waits then have no deadline). Calling
 * it again with the same world only updates the timeout. */
void live_start(MPI_Comm world, int leader, double timeout_s);
/* Stops heartbeats and drains the ones received (call before freeing world). */
void live_stop(void);
/* The end of the job, on every rank of world: an MPI_Ibarrier within timeout_s, so a
 * rank stopped while idle is named here rather than hanging MPI_Finalize (which has no
 * deadline); then live_stop. */
augur_status live_finish(MPI_Comm world, double timeout_s, augur_error *err);

/* Start-up: the waits before heartbeats start (placement, the handshakes around model
 * loading) cannot use --timeout, since loading a large checkpoint legitimately takes
 * minutes on one rank while the others wait. live_gate is an MPI_Ibarrier over comm
 * polled against this separate, longer deadline (default LIVE_STARTUP_TIMEOUT_S): the
 * blocking collective that follows it then finds every rank arrived, so a rank stopped or
 * stuck while loading ends the job instead of hanging it. */
#define LIVE_STARTUP_TIMEOUT_S 900.0
void live_set_startup_timeout(double timeout_s);
double live_startup_timeout(void);
/* AUGUR_E_COMM "start-up (<what>) over ranks ... not complete within N s" when some rank
 * of comm does not reach the gate in time. */
augur_status live_gate(MPI_Comm comm, const char *what, augur_error *err);

/* Monotonic seconds. */
double live_now(void);
/* Sends a heartbeat when one is due, drains received ones; cheap when none is. */
void live_tick(void);

typedef struct {
    double start;            /* moved on by any stretch this rank itself did not run */
    double last_poll;
    double timeout_s;        /* <= 0: never expires */
    int patient_on;          /* world rank whose heartbeats extend the deadline, or -1 */
} live_deadline;

/* Begins a wait (and ticks). patient_on: from live_patient_on, or -1 for a hard one. */
live_deadline live_deadline_start(double timeout_s, int patient_on);
/* Waiting between two polls of d: yields at first, then sleeps 50 us so that an idle
 * waiter leaves the core to busy ranks. */
void live_backoff(const live_deadline *d);
/* Ticks, then says whether the wait is over its deadline. Only time this rank ran
 * counts: a gap between two polls longer than a third of the timeout (this rank was
 * stopped, or not scheduled) is not held against the peers, so a rank that is resumed
 * does not blame the ranks that waited for it. */
bool live_expired(live_deadline *d);
/* "within 3 s", or for a patient wait "within 3 s of its last heartbeat". */
const char *live_within(const live_deadline *d, char *buf, size_t cap);

/* Polls MPI_Test on *req until it completes (*done) or d expires (!*done, the request
 * left pending: the job must end). Returns MPI_Test's code. */
int live_wait(MPI_Request *req, live_deadline *d, bool *done);

/* The world rank of comm's rank `rank` (-1 when heartbeats are off or it has none). */
int live_world_rank(MPI_Comm comm, int rank);
/* For a wait on comm's rank `peer`: the leader's world rank if peer is the leader and
 * this rank is not (the wait is patient), else -1. */
int live_patient_on(MPI_Comm comm, int peer);

/* Fails (AUGUR_E_COMM, "rank 2 silent for 3.4 s ...") when a rank has not been heard
 * from for the timeout: the leader calls this once a round, so that a rank stopped
 * while nobody waits on it (an idle draft rank) still ends the job within the timeout. */
augur_status live_check_peers(augur_error *err);

/* Receives a heartbeat that a receive with MPI_ANY_TAG claimed, stamping its source. */
void live_take_heartbeat(MPI_Message *msg, int source);

/* AUGUR_E_COMM: "<what> over ranks 0-2 not complete within 3 s: rank 1 silent for
 * 3.4 s" (members named by world rank while heartbeats run; else comm ranks, unnamed). */
augur_status live_fail_collective(augur_error *err, MPI_Comm comm, const char *what, double timeout_s);

#endif
