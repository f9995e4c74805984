/* What the distributed subcommands (generate under mpirun, serve) share: ending every rank
 * on a fatal error, and the default thread count per rank. */
#ifndef AUGUR_DIST_UTIL_H
#define AUGUR_DIST_UTIL_H

#include "base/error.h"

/* A failure once ranks are running: logs it naming the rank, then ends every rank of the
 * job (MPI_Abort on the world; DESIGN §8). */
_Noreturn void dist_die(int rank, const augur_error *err);

/* CPU threads per rank: this node's online CPUs over the ranks mpirun placed on it
 * (OMPI_COMM_WORLD_LOCAL_SIZE, else world_size), at least 1. */
int dist_default_threads(int world_size);

#endif
