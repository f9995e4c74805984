#include "launcher/dist_util.h"

#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

#include "launcher/args.h"

_Noreturn void dist_die(int rank, const augur_error *err)
{
    fprintf(stderr, "augur: rank %d: %s\n", rank, err->message);
    fflush(stderr);
    int code = augur_exit_code(err->code);
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    exit(code ? code : 1);
}

int dist_default_threads(int world_size)
{
    int ncpu = online_cpus();
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int ranks_here = local ? atoi(local) : world_size;
    if (ranks_here < 1)
        ranks_here = 1;
    int t = ncpu / ranks_here;
    return t < 1 ? 1 : t;
}
