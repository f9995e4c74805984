/* Where a rank's model runs, and whether it fits: backend choice (--device), weight
 * placement (real checkpoint or --load-format dummy), and the memory plan that sizes the
 * KV cache from --max-context and the memory left after the weights (DESIGN §12). */
#ifndef AUGUR_DEVICE_PLAN_H
#define AUGUR_DEVICE_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/backend.h"
#include "base/error.h"
#include "runtime/model/model.h"

typedef enum { AUGUR_DEVICE_AUTO = 0, AUGUR_DEVICE_CPU, AUGUR_DEVICE_CUDA } augur_device_kind;

typedef struct {
    augur_device_kind kind;
    bool dummy;              /* --load-format dummy: config.json only, random weights */
    uint64_t dummy_seed;
    int threads;             /* CPU backend threads */
    double mem_fraction;     /* share of a GPU's free memory the rank may use; 0 = 0.9 */
    bool tp_over_mpi;        /* --tp-comm mpi: target all-reduces through host memory, not NCCL */
    int simulate_hosts;      /* --simulate-hosts N: ranks on N simulated nodes (NCCL_HOSTID); 0 = real nodes */
    bool draft_shares_gpu;   /* --draft-placement shared: the draft rank takes a target rank's GPU */
    int kv_pool_blocks;      /* serve --kv-blocks: blocks of the paged KV pool; 0 = from the memory plan */
} device_opts;

/* "auto", "cpu" or "cuda" (flag names the option in the message). */
augur_status device_kind_parse(const char *flag, const char *s, augur_device_kind *out, augur_error *err);
const char *device_kind_name(augur_device_kind k);

/* The --device default: $AUGUR_DEVICE when set and non-empty, else auto. */
augur_status device_kind_default(augur_device_kind *out, augur_error *err);

/* AUTO becomes CUDA where augur has CUDA and a GPU is visible, else CPU. */
augur_device_kind device_kind_resolve(augur_device_kind k);

/* The backend for this rank: CPU with d->threads, or CUDA on GPU `gpu`. A clear error
 * when CUDA is asked for and there is no such GPU. */
augur_status device_open_backend(augur_backend **be, const device_opts *d, int gpu, augur_error *err);

/* Loads this rank's slice of the model at path into be's memory: from the checkpoint
 * (mapped, then uploaded for a device backend) or, with d->dummy, from config.json alone.
 * On a GPU it first checks that the weights fit in its free memory. */
augur_status device_load_model(model *m, augur_backend *be, const char *path, const model_load_opts *lo,
                               const device_opts *d, augur_error *err);

typedef struct {
    const char *backend;     /* "cpu" / "cuda" */
    int gpu;                 /* -1 on CPU */
    char device_name[128];   /* the GPU's, for memory_plan_print */
    size_t weight_bytes;     /* this rank's weights */
    size_t kv_bytes_per_position;
    size_t workspace_bytes;  /* activations of one forward */
    size_t free_bytes;       /* device memory free after the weights (0 on CPU: not planned) */
    size_t total_bytes;
    size_t budget_bytes;     /* what the KV cache and workspace may take */
    int context;             /* positions the KV cache holds */
    int context_fit;         /* most positions that would fit (CPU: the model's limit) */
} memory_plan;

/* Chooses the context: `requested` (--max-context; 0 = as much as fits, at most the
 * model's max_position_embeddings, and at most 4096 on CPU) and checks it fits. The error
 * names the figures. model_limit caps it (the smallest limit of all models in a job). */
augur_status device_plan_memory(const model *m, augur_backend *be, const device_opts *d, int requested,
                                int model_limit, int max_tokens, memory_plan *plan, augur_error *err);

/* Blocks of a paged KV pool (kv_pool_init) for this plan: those of `positions` (0:
 * plan->context), on a GPU no more than the KV budget holds (kv_pool_bytes per block)
 * but never fewer than one context's (the plan checked that those fit). */
int memory_plan_pool_blocks(const memory_plan *p, const model *m, int positions);

/* One line per rank to stderr: backend, GPU, weights, KV, workspace, free. */
void memory_plan_print(FILE *out, const char *who, const memory_plan *p);

#endif
