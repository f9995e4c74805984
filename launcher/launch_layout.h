/* The rank layout of `augur launch` (DESIGN §3): which host, GPU and cores each rank of
 * a job gets, and whether the hosts can hold it. Pure arithmetic over a host list, no MPI
 * and no files, so every odd case is unit-tested (tests/unit/test_launch_layout.c).
 *
 * A job runs `replicas` groups of T + 1 ranks. Replica r owns world ranks r·(T+1) ..
 * r·(T+1)+T: its T target ranks first (tensor-parallel ranks 0..T-1, the first one leads
 * the replica), then its draft rank. Ranks fill the hosts in hostfile order, each host up
 * to its slots (Open MPI's "by slot"); with draft-placement own-node the target ranks
 * fill the hosts first and the draft ranks go to the hosts after the last one holding a
 * target rank. On each host the target ranks take GPUs 0, 1, ... in rank order and the
 * draft ranks the GPUs after them (own-gpu, own-node), or share a target's GPU (shared),
 * the rule comm/gpu_placement.c applies at run time. */
#ifndef AUGUR_LAUNCH_LAYOUT_H
#define AUGUR_LAUNCH_LAYOUT_H

#include <stdbool.h>
#include <stdio.h>

#include "base/error.h"

#define LAUNCH_HOST_NAME_MAX 256

typedef enum {
    DRAFT_OWN_GPU = 0,       /* each draft rank on a GPU no other rank uses (the default) */
    DRAFT_SHARED = 1,        /* each draft rank shares a GPU with a target rank of its host */
    DRAFT_OWN_NODE = 2,      /* draft ranks on hosts that hold no target rank */
} draft_placement;

/* "own-gpu" | "shared" | "own-node" (flag names the key or flag in the message). */
augur_status draft_placement_parse(const char *flag, const char *text, draft_placement *out, augur_error *err);
const char *draft_placement_name(draft_placement p);

typedef struct {
    char name[LAUNCH_HOST_NAME_MAX];
    int slots;               /* ranks the host may run */
    int gpus;                /* GPUs visible on it (0: none, or not said) */
    int cores;               /* cores to bind ranks to (0: unknown, taken as slots) */
    int line;                /* hostfile line, 0 when not from a file */
} launch_host;

typedef struct {
    launch_host *hosts;
    int n;
    const char *source;      /* the hostfile's path, or "localhost" */
} launch_hosts;

typedef struct {
    int tp;                  /* T: target ranks per replica */
    int replicas;
    draft_placement draft;
    bool use_gpus;           /* ranks run models on GPUs: check and assign them */
    int simulate_hosts;      /* >0: target ranks on different simulated nodes may share a GPU */
    bool allow_oversubscribe;/* more ranks than slots is allowed (then no core binding is exclusive) */
    bool single_rank;        /* one rank alone (augur bench): tp and replicas only describe it */
} launch_spec;

typedef enum { LAUNCH_TARGET = 0, LAUNCH_DRAFT = 1 } launch_role;

typedef struct {
    int rank;                /* world rank */
    int replica;
    launch_role role;
    int tp_rank;             /* -1 on a draft rank */
    int host;                /* index into launch_hosts */
    int gpu;                 /* -1: no GPU */
    bool gpu_shared;         /* another rank uses this GPU too */
    int core_first, n_cores; /* cores this rank is bound to: core_first .. core_first+n_cores-1 */
} launch_rank;

typedef struct {
    launch_rank *ranks;
    int n;
    int *host_ranks;         /* [hosts.n]: ranks placed on each host */
    bool oversubscribed;     /* some host runs more ranks than it has cores (or slots) */
    char notes[1024];        /* "replica 0's target ranks span hosts a, b (...)\n", or "" */
} launch_layout;

/* Places spec's ranks on hosts. Errors name the hostfile (hosts->source), the host and
 * the figures: more ranks than slots, too few GPUs for the target ranks of a host, no
 * free GPU for a draft rank under own-gpu / own-node, no host left for the drafts under
 * own-node. */
augur_status launch_layout_plan(launch_layout *out, const launch_spec *spec, const launch_hosts *hosts,
                                augur_error *err);
void launch_layout_free(launch_layout *l);

/* The layout table: one line per rank (rank, host, GPU, cores, role, replica). */
void launch_layout_print(FILE *f, const launch_layout *l, const launch_hosts *hosts);

/* An Open MPI rankfile for the layout ("rank 3=node-b slot=0-7"), so that mpirun places
 * every rank exactly where the table says. */
void launch_layout_write_rankfile(FILE *f, const launch_layout *l, const launch_hosts *hosts);

/* Parses an Open MPI hostfile: one host a line, "NAME [slots=N] [gpus=N] [cores=N]",
 * '#' comments; slots defaults to 1 (Open MPI's default), gpus to 0, cores to slots.
 * Also accepted: "max_slots=N" (ignored) and a trailing "# gpus=N" comment, for files
 * that Open MPI itself must also read. Errors name path:line and the problem. */
augur_status launch_hosts_parse(launch_hosts *out, const char *path, const char *text, augur_error *err);
/* One host: localhost with slots = cores = n_cores and n_gpus GPUs. */
augur_status launch_hosts_local(launch_hosts *out, int n_cores, int n_gpus, augur_error *err);
void launch_hosts_free(launch_hosts *h);
/* Writes a plain hostfile (NAME slots=N), with each host's slots raised to the ranks
 * the layout puts there, for mpirun. */
void launch_hosts_write(FILE *f, const launch_hosts *h, const launch_layout *l);

#endif
