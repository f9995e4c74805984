/* Which rank does what (DESIGN §3), and the communicators each role talks over.
 *
 * With T target ranks the job has exactly T + 1 ranks: world ranks 0 .. T-1 form the
 * target tensor-parallel group (tp_rank = world rank; world rank 0 is also the leader)
 * and world rank T is the draft rank. `--no-speculation` keeps the same layout with the
 * draft rank idle, so one mpirun line serves both modes of a comparison. */
#ifndef AUGUR_LAYOUT_H
#define AUGUR_LAYOUT_H

#include <stdbool.h>

#include <mpi.h>

#include "base/error.h"

typedef enum {
    COMM_ROLE_TARGET = 0,
    COMM_ROLE_DRAFT = 1,
} comm_role;

typedef struct {
    int world_rank;
    int world_size;
    int n_target;            /* T */
    bool speculation;        /* false: the draft rank idles */
    comm_role role;
    int tp_rank;             /* rank within the target group; -1 on the draft rank */
    int leader;              /* world rank of the leader (0) */
    int draft_rank;          /* world rank of the draft (T) */
    /* A duplicate of the world communicator (with MPI_ERRORS_RETURN) for control and
     * draft <-> leader messages: its own tag space, so nothing else in the process that
     * uses MPI_COMM_WORLD can intercept augur's messages. */
    MPI_Comm world;
    MPI_Comm target;         /* the target group; MPI_COMM_NULL on the draft rank */
    /* Replicas (comm_layout_create_replicas): the job holds n_replicas groups of T + 1
     * ranks, replica r owning job ranks r·(T+1) .. r·(T+1)+T; world_rank, world and every
     * field above are then the replica's own, so the engine runs unchanged on it. */
    int replica;
    int n_replicas;
    int job_rank;
    int job_size;
    MPI_Comm job;            /* the whole job (dup, MPI_ERRORS_RETURN); MPI_COMM_NULL without replicas */
} comm_layout;

/* Pure arithmetic, no MPI: fills every field but the communicators (left
 * MPI_COMM_NULL). Fails with "layout needs 3 ranks (2 target + 1 draft), mpirun
 * started 4" when world_size != n_target + 1. */
augur_status comm_layout_plan(comm_layout *out, int world_size, int world_rank, int n_target, bool speculation,
                              augur_error *err);

/* Collective over `world` (usually MPI_COMM_WORLD): sets MPI_ERRORS_RETURN on it (so
 * failures come back as messages, not aborts inside MPI), plans, then duplicates world
 * and splits off the target group. A wrong world size fails identically on every rank
 * before any communication, so all ranks exit with the same message, none hangs. */
augur_status comm_layout_create(comm_layout *out, MPI_Comm world, int n_target, bool speculation,
                                augur_error *err);

/* Pure: which replica job rank job_rank serves, for n_replicas groups of n_target + 1
 * ranks. Fails with "layout needs 8 ranks (2 replicas x (3 target + 1 draft)), mpirun
 * started 6" when job_size is not n_replicas·(n_target + 1). */
augur_status comm_layout_plan_replicas(int job_size, int job_rank, int n_target, int n_replicas, bool speculation,
                                       int *replica, augur_error *err);

/* Collective over job: splits it into n_replicas groups of n_target + 1 consecutive
 * ranks and builds this rank's layout over its group (comm_layout_create), keeping a
 * duplicate of job for what spans the replicas (GPU placement per node, final stats).
 * With n_replicas 1 the replica is the whole job. */
augur_status comm_layout_create_replicas(comm_layout *out, MPI_Comm job, int n_target, int n_replicas,
                                         bool speculation, augur_error *err);

/* Frees the communicators (collectively, like their creation); a zeroed or planned
 * layout is fine. */
void comm_layout_free(comm_layout *l);

static inline bool comm_layout_is_leader(const comm_layout *l)
{
    return l->world_rank == l->leader;
}

#endif
