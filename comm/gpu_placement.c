#include "comm/gpu_placement.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Places this rank among the ranks of `node` (a real or simulated node's ranks). */
static augur_status place_in_node(MPI_Comm node, bool is_target, bool needs_gpu, int n_gpus,
                                  bool allow_shared_targets, bool draft_shares, gpu_placement *out, augur_error *err)
{
    int node_size = 1;
    MPI_Comm_rank(node, &out->node_rank);
    MPI_Comm_size(node, &node_size);
    /* role per node rank: 2 = target on a GPU, 1 = draft on a GPU, 0 = no GPU */
    int mine = needs_gpu ? (is_target ? 2 : 1) : 0;
    int *roles = calloc((size_t)node_size, sizeof(int));
    if (!roles)
        return augur_fail(err, AUGUR_E_NOMEM, "GPU placement: out of memory");
    MPI_Allgather(&mine, 1, MPI_INT, roles, 1, MPI_INT, node);

    int targets = 0, my_index = 0, others_before = 0;
    for (int r = 0; r < node_size; r++) {
        if (roles[r] == 2) {
            if (r < out->node_rank)
                my_index++;
            targets++;
        } else if (roles[r] == 1 && r < out->node_rank) {
            others_before++;
        }
    }
    free(roles);
    out->node_targets = targets;
    if (!needs_gpu)
        return AUGUR_OK;
    if (n_gpus <= 0)
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "--device cuda but no GPU is visible on %s", out->node);
    if (targets > n_gpus && !allow_shared_targets)
        return augur_fail(err, AUGUR_E_UNSUPPORTED,
                          "node %s runs %d target ranks but has %d GPU%s visible: each target rank needs its own GPU "
                          "(use fewer ranks per node, more nodes, a smaller --tp, or --simulate-hosts)",
                          out->node, targets, n_gpus, n_gpus == 1 ? "" : "s");
    if (is_target) {
        out->gpu = my_index % n_gpus;
        out->shared = targets > n_gpus;
        return AUGUR_OK;
    }
    if (draft_shares && targets > 0) {
        /* --draft-placement shared: the last target GPUs first, as augur launch plans it */
        out->gpu = (targets - 1 - others_before % targets) % n_gpus;
        out->shared = true;
        return AUGUR_OK;
    }
    int slot = targets + others_before;
    out->gpu = slot < n_gpus ? slot : (n_gpus - 1 - (others_before % n_gpus) + n_gpus) % n_gpus;
    out->shared = slot >= n_gpus;
    return AUGUR_OK;
}

static void host_name(gpu_placement *out)
{
    int name_len = 0;
    char name[MPI_MAX_PROCESSOR_NAME];
    if (MPI_Get_processor_name(name, &name_len) != MPI_SUCCESS)
        snprintf(name, sizeof name, "?");
    snprintf(out->node, sizeof out->node, "%s", name);
}

augur_status gpu_place(MPI_Comm world, bool is_target, bool needs_gpu, int n_gpus, bool allow_shared_targets,
                       bool draft_shares, gpu_placement *out, augur_error *err)
{
    *out = (gpu_placement){.gpu = -1, .sim_node = -1};
    int world_rank = 0;
    MPI_Comm_rank(world, &world_rank);
    host_name(out);
    MPI_Comm node = MPI_COMM_NULL;
    if (MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &node) != MPI_SUCCESS)
        return augur_fail(err, AUGUR_E_COMM, "cannot group the ranks of node %s (MPI_Comm_split_type)", out->node);
    augur_status st = place_in_node(node, is_target, needs_gpu, n_gpus, allow_shared_targets, draft_shares, out, err);
    MPI_Comm_free(&node);
    return st;
}

int gpu_sim_node_of(int world_rank, int n_targets, int n_nodes)
{
    if (world_rank < n_targets)
        return (int)((long long)world_rank * n_nodes / n_targets);
    return n_nodes - 1;
}

augur_status gpu_place_simulated(MPI_Comm world, int local_rank, bool is_target, bool needs_gpu, int n_gpus,
                                 int n_targets, int n_nodes, gpu_placement *out, augur_error *err)
{
    *out = (gpu_placement){.gpu = -1, .sim_node = -1};
    int world_rank = 0;
    MPI_Comm_rank(world, &world_rank);
    if (n_nodes < 1 || n_nodes > n_targets + 1)
        return augur_fail(err, AUGUR_E_INPUT, "--simulate-hosts %d: needs 1 .. %d (the ranks of a target group and "
                          "its draft)", n_nodes, n_targets + 1);
    out->sim_node = gpu_sim_node_of(local_rank, n_targets, n_nodes);
    char host[MPI_MAX_PROCESSOR_NAME];
    host_name(out);
    snprintf(host, sizeof host, "%s", out->node);
    snprintf(out->node, sizeof out->node, "augur-sim-node%d", out->sim_node);
    /* NCCL hashes NCCL_HOSTID instead of the host name when it is set: distinct values
     * make distinct nodes, joined over sockets on the loopback interface. */
    setenv("NCCL_HOSTID", out->node, 1);
    setenv("NCCL_SOCKET_IFNAME", "lo", 0);
    MPI_Comm node = MPI_COMM_NULL;
    if (MPI_Comm_split(world, out->sim_node, world_rank, &node) != MPI_SUCCESS)
        return augur_fail(err, AUGUR_E_COMM, "cannot group the ranks of simulated node %d (MPI_Comm_split)",
                          out->sim_node);
    augur_status st = place_in_node(node, is_target, needs_gpu, n_gpus, false, false, out, err);
    MPI_Comm_free(&node);
    if (!st)
        fprintf(stderr, "augur: rank %d: simulated node %d of %d (NCCL_HOSTID=%s) on host %s, physical GPU %d\n",
                world_rank, out->sim_node, n_nodes, out->node, host, out->gpu);
    return st;
}
