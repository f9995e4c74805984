/* Rank roles and communicators (see layout.h). */
#include "comm/layout.h"

#include <string.h>

#include "comm/mpi_error.h"

/* The launcher prints layout errors without a rank prefix, so these name it. */
static augur_status layout_mpi_fail(const comm_layout *l, const char *op, int rc, augur_error *err)
{
    return comm_mpi_fail(err, rc, "layout: rank %d: %s failed", l->world_rank, op);
}

augur_status comm_layout_plan(comm_layout *out, int world_size, int world_rank, int n_target, bool speculation,
                              augur_error *err)
{
    memset(out, 0, sizeof *out);
    out->world = MPI_COMM_NULL;
    out->target = MPI_COMM_NULL;
    out->job = MPI_COMM_NULL;
    out->n_replicas = 1;
    out->job_rank = world_rank;
    out->job_size = world_size;
    out->world_rank = world_rank;
    out->world_size = world_size;
    if (n_target < 1)
        return augur_fail(err, AUGUR_E_INPUT, "layout needs at least 1 target rank, got %d", n_target);
    if (world_size != n_target + 1)
        return augur_fail(err, AUGUR_E_INPUT, "layout needs %d ranks (%d target + 1 draft%s), mpirun started %d",
                          n_target + 1, n_target, speculation ? "" : ", idle with --no-speculation", world_size);
    if (world_rank < 0 || world_rank >= world_size)
        return augur_fail(err, AUGUR_E_INTERNAL, "layout: rank %d outside a world of %d", world_rank, world_size);
    out->n_target = n_target;
    out->speculation = speculation;
    out->leader = 0;
    out->draft_rank = n_target;
    out->role = world_rank < n_target ? COMM_ROLE_TARGET : COMM_ROLE_DRAFT;
    out->tp_rank = out->role == COMM_ROLE_TARGET ? world_rank : -1;
    return AUGUR_OK;
}

augur_status comm_layout_create(comm_layout *out, MPI_Comm world, int n_target, bool speculation, augur_error *err)
{
    memset(out, 0, sizeof *out);
    out->world = out->target = out->job = MPI_COMM_NULL;
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized)
        return augur_fail(err, AUGUR_E_INTERNAL, "layout: MPI is not initialised");
    int rank = -1, size = 0;
    int rc = MPI_Comm_set_errhandler(world, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_rank(world, &rank);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_size(world, &size);
    if (rc != MPI_SUCCESS)
        return layout_mpi_fail(out, "reading the world communicator", rc, err);

    augur_status st = comm_layout_plan(out, size, rank, n_target, speculation, err);
    if (st != AUGUR_OK)
        return st;

    rc = MPI_Comm_dup(world, &out->world);
    if (rc != MPI_SUCCESS) {
        out->world = MPI_COMM_NULL;
        return layout_mpi_fail(out, "MPI_Comm_dup of the world communicator", rc, err);
    }
    rc = MPI_Comm_set_errhandler(out->world, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) {
        int color = out->role == COMM_ROLE_TARGET ? 0 : MPI_UNDEFINED;
        rc = MPI_Comm_split(out->world, color, rank, &out->target);
        if (rc != MPI_SUCCESS)
            out->target = MPI_COMM_NULL;
    }
    if (rc == MPI_SUCCESS && out->target != MPI_COMM_NULL)
        rc = MPI_Comm_set_errhandler(out->target, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) {
        st = layout_mpi_fail(out, "MPI_Comm_split of the target group", rc, err);
        comm_layout_free(out);
        return st;
    }
    if (out->target != MPI_COMM_NULL) {
        int tp_rank = -1, tp_size = 0;
        MPI_Comm_rank(out->target, &tp_rank);
        MPI_Comm_size(out->target, &tp_size);
        if (tp_rank != out->tp_rank || tp_size != n_target) {
            st = augur_fail(err, AUGUR_E_INTERNAL, "layout: rank %d: target group rank %d of %d, expected %d of %d",
                            rank, tp_rank, tp_size, out->tp_rank, n_target);
            comm_layout_free(out);
            return st;
        }
    }
    return AUGUR_OK;
}

augur_status comm_layout_plan_replicas(int job_size, int job_rank, int n_target, int n_replicas, bool speculation,
                                       int *replica, augur_error *err)
{
    if (n_target < 1 || n_replicas < 1)
        return augur_fail(err, AUGUR_E_INPUT, "layout needs at least 1 target rank and 1 replica, got %d and %d",
                          n_target, n_replicas);
    long long need = (long long)n_replicas * (n_target + 1);
    if (job_size != need) {
        if (n_replicas == 1)
            return augur_fail(err, AUGUR_E_INPUT, "layout needs %d ranks (%d target + 1 draft%s), mpirun started %d",
                              n_target + 1, n_target, speculation ? "" : ", idle with --no-speculation", job_size);
        return augur_fail(err, AUGUR_E_INPUT,
                          "layout needs %lld ranks (%d replicas x (%d target + 1 draft%s)), mpirun started %d", need,
                          n_replicas, n_target, speculation ? "" : ", idle with --no-speculation", job_size);
    }
    if (job_rank < 0 || job_rank >= job_size)
        return augur_fail(err, AUGUR_E_INTERNAL, "layout: rank %d outside a job of %d", job_rank, job_size);
    *replica = job_rank / (n_target + 1);
    return AUGUR_OK;
}

augur_status comm_layout_create_replicas(comm_layout *out, MPI_Comm job, int n_target, int n_replicas,
                                         bool speculation, augur_error *err)
{
    memset(out, 0, sizeof *out);
    out->world = out->target = out->job = MPI_COMM_NULL;
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized)
        return augur_fail(err, AUGUR_E_INTERNAL, "layout: MPI is not initialised");
    int rank = -1, size = 0, replica = 0;
    int rc = MPI_Comm_set_errhandler(job, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_rank(job, &rank);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_size(job, &size);
    if (rc != MPI_SUCCESS)
        return comm_mpi_fail(err, rc, "layout: reading the job's communicator failed");
    augur_status st = comm_layout_plan_replicas(size, rank, n_target, n_replicas, speculation, &replica, err);
    if (st)
        return st;
    MPI_Comm group = MPI_COMM_NULL, job_dup = MPI_COMM_NULL;
    rc = MPI_Comm_split(job, replica, rank, &group);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_dup(job, &job_dup);
    if (rc == MPI_SUCCESS)
        rc = MPI_Comm_set_errhandler(job_dup, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) {
        if (group != MPI_COMM_NULL)
            MPI_Comm_free(&group);
        if (job_dup != MPI_COMM_NULL)
            MPI_Comm_free(&job_dup);
        return comm_mpi_fail(err, rc, "layout: rank %d: splitting the job into %d replicas failed", rank, n_replicas);
    }
    /* comm_layout_create keeps a duplicate of the group */
    st = comm_layout_create(out, group, n_target, speculation, err);
    MPI_Comm_free(&group);
    if (st) {
        MPI_Comm_free(&job_dup);
        return st;
    }
    out->job = job_dup;
    out->replica = replica;
    out->n_replicas = n_replicas;
    out->job_rank = rank;
    out->job_size = size;
    return AUGUR_OK;
}

/* A zeroed struct holds handle 0, which is no communicator in Open MPI or MPICH. */
static int comm_is_set(MPI_Comm c)
{
    return c != MPI_COMM_NULL && c != (MPI_Comm)0;
}

void comm_layout_free(comm_layout *l)
{
    if (!l)
        return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
        if (comm_is_set(l->target))
            MPI_Comm_free(&l->target);
        if (comm_is_set(l->world))
            MPI_Comm_free(&l->world);
        if (comm_is_set(l->job))
            MPI_Comm_free(&l->job);
    }
    l->target = MPI_COMM_NULL;
    l->world = MPI_COMM_NULL;
    l->job = MPI_COMM_NULL;
}
