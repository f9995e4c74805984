/* Which GPU each rank of a job uses, from the ranks that share its node.
 *
 * On every node, target ranks take GPUs 0, 1, ... in world-rank order (one GPU each: NCCL
 * refuses two ranks of one communicator on the same GPU, and two shards on one GPU would
 * halve its bandwidth); the draft rank takes the next free GPU, or shares the last GPU
 * with a target rank when the node has no free one (allowed, with a note: the draft is
 * small). Collective over world. */
#ifndef AUGUR_GPU_PLACEMENT_H
#define AUGUR_GPU_PLACEMENT_H

#include <stdbool.h>

#include <mpi.h>

#include "base/error.h"

typedef struct {
    int gpu;                 /* -1: this rank needs none */
    bool shared;             /* another rank of the node uses it too */
    int node_rank;           /* rank among the node's ranks */
    int node_targets;        /* target ranks on this node */
    char node[MPI_MAX_PROCESSOR_NAME]; /* host name */
} gpu_placement;

/* is_target / needs_gpu: this rank's role and whether it runs a model on a GPU.
 * n_gpus: GPUs visible to this rank. allow_shared_targets lets target ranks share GPUs
 * (only with host-memory collectives, for tests on a one-GPU machine). Fails on every
 * rank of a node with more target ranks than GPUs; the message names the node. */
augur_status gpu_place(MPI_Comm world, bool is_target, bool needs_gpu, int n_gpus, bool allow_shared_targets,
                       gpu_placement *out, augur_error *err);

#endif
