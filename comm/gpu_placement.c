#include "comm/gpu_placement.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

augur_status gpu_place(MPI_Comm world, bool is_target, bool needs_gpu, int n_gpus, bool allow_shared_targets,
                       gpu_placement *out, augur_error *err)
{
    *out = (gpu_placement){.gpu = -1};
    int world_rank = 0;
    MPI_Comm_rank(world, &world_rank);
    int name_len = 0;
    char name[MPI_MAX_PROCESSOR_NAME];
    if (MPI_Get_processor_name(name, &name_len) != MPI_SUCCESS)
        snprintf(name, sizeof name, "?");
    snprintf(out->node, sizeof out->node, "%s", name);

    MPI_Comm node = MPI_COMM_NULL;
    if (MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &node) != MPI_SUCCESS)
        return augur_fail(err, AUGUR_E_COMM, "rank %d: cannot group the ranks of node %s (MPI_Comm_split_type)",
                          world_rank, out->node);
    int node_size = 1;
    MPI_Comm_rank(node, &out->node_rank);
    MPI_Comm_size(node, &node_size);
    /* role per node rank: 2 = target on a GPU, 1 = draft on a GPU, 0 = no GPU */
    int mine = needs_gpu ? (is_target ? 2 : 1) : 0;
    int *roles = calloc((size_t)node_size, sizeof(int));
    if (!roles) {
        MPI_Comm_free(&node);
        return augur_fail(err, AUGUR_E_NOMEM, "rank %d: out of memory", world_rank);
    }
    MPI_Allgather(&mine, 1, MPI_INT, roles, 1, MPI_INT, node);
    MPI_Comm_free(&node);

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
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "rank %d on %s: --device cuda but no GPU is visible", world_rank,
                          out->node);
    if (targets > n_gpus && !allow_shared_targets)
        return augur_fail(err, AUGUR_E_UNSUPPORTED,
                          "node %s runs %d target ranks but has %d GPU%s visible: each target rank needs its own GPU "
                          "(use fewer ranks per node, more nodes, or a smaller --tp)",
                          out->node, targets, n_gpus, n_gpus == 1 ? "" : "s");
    if (is_target) {
        out->gpu = my_index % n_gpus;
        out->shared = targets > n_gpus;
        return AUGUR_OK;
    }
    int slot = targets + others_before;
    out->gpu = slot < n_gpus ? slot : (n_gpus - 1 - (others_before % n_gpus) + n_gpus) % n_gpus;
    out->shared = slot >= n_gpus;
    return AUGUR_OK;
}
