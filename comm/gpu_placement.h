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
    int sim_node;            /* simulated node (gpu_place_simulated), else -1 */
    bool shared;             /* another rank of the node uses it too */
    int node_rank;           /* rank among the node's ranks */
    int node_targets;        /* target ranks on this node */
    char node[MPI_MAX_PROCESSOR_NAME]; /* host name */
} gpu_placement;

/* is_target / needs_gpu: this rank's role and whether it runs a model on a GPU.
 * n_gpus: GPUs visible to this rank. allow_shared_targets lets target ranks share GPUs
 * (only with host-memory collectives, for tests on a one-GPU machine). draft_shares
 * (--draft-placement shared): a draft rank takes the GPU of a target rank of its node,
 * the last one first, even when a GPU is free. world is the whole job (every replica),
 * so that replicas on one node take different GPUs. Fails on every rank of a node with
 * more target ranks than GPUs; the message names the node. */
augur_status gpu_place(MPI_Comm world, bool is_target, bool needs_gpu, int n_gpus, bool allow_shared_targets,
                       bool draft_shares, gpu_placement *out, augur_error *err);

/* Simulated nodes on one machine (DESIGN §5): the job's ranks are spread over
 * n_nodes nodes that NCCL tells apart by NCCL_HOSTID alone, so ranks that share a GPU
 * but not a simulated node join one communicator through NCCL's network transport.
 * Target rank t of n_targets goes to node t·n_nodes/n_targets, every other rank to the
 * last node (local_rank: the rank within its replica; world: the whole job, whose
 * replicas' ranks of one simulated node place together); each simulated node places its
 * ranks as gpu_place places a real node's, over all n_gpus visible GPUs, so target ranks of different simulated nodes may share
 * a physical GPU (and only then). Sets NCCL_HOSTID (augur-sim-node<k>), and
 * NCCL_SOCKET_IFNAME=lo unless already set, for this process: call before any NCCL
 * call. Collective over world. */
augur_status gpu_place_simulated(MPI_Comm world, int local_rank, bool is_target, bool needs_gpu, int n_gpus,
                                 int n_targets, int n_nodes, gpu_placement *out, augur_error *err);

/* Which simulated node a world rank lands on (as gpu_place_simulated). */
int gpu_sim_node_of(int world_rank, int n_targets, int n_nodes);

#endif
