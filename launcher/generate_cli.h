/* Parsed flags of `augur generate`, shared by the single-process and MPI paths. */
#ifndef AUGUR_GENERATE_CLI_H
#define AUGUR_GENERATE_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/spec/sampling.h"
#include "runtime/spec/acceptance.h"
#include "runtime/device_plan.h"
#include "runtime/spec/draft_rules.h"
#include "launcher/launch_layout.h"

typedef struct {
    const char *model_path;      /* single-process */
    const char *target_path;     /* distributed */
    const char *draft_path;
    int draft_layers;
    int tp;                      /* 0: world size / replicas - 1 */
    int replicas;                /* target groups, each with its draft rank */
    draft_placement draft_placement;
    const char *tokenizer_path;
    const char *prompt;
    const char *prompt_ids;      /* "1 2 3": skip the tokenizer */
    const char *prompts_file;    /* one prompt per line, each a request (distributed) */
    int max_tokens;
    int max_context;
    int threads;
    sampling_params sampling;
    uint64_t seed;
    draft_rule rule;
    bool no_overlap;
    bool overlap;               /* --overlap: draft ahead even on a GPU shared with a target rank */
    bool measure_comm;
    bool have_synthetic;
    float synthetic_acceptance; /* --synthetic-acceptance A (dummy weights only) */       /* --measure-comm: time each TP all-reduce alone (synchronising first) */
    bool no_speculation;
    bool compare_baseline;
    bool ids_only;               /* print generated ids, one request per line */
    int repeat;                  /* requests (seeds seed, seed+1, ...) */
    const char *trace_path;
    const char *stats_json_path; /* --stats-json FILE (distributed) */
    double timeout_s;
    double startup_timeout_s;    /* --startup-timeout: start-up handshakes (model loading) */
    acceptance_variant debug_acceptance;
    int debug_draft_exit_after;
    device_opts device;          /* --device, --load-format, --gpu-memory-fraction, --tp-comm */
    int gpu;                     /* single process: --gpu */
} generate_cli;

int run_generate_distributed(const generate_cli *cli);

/* For augur launch: whether key (value: NULL for a flag without one) is a valid flag of
 * augur generate. */
augur_status generate_check_flag(const char *key, const char *value, augur_error *err);
/* For augur launch: parses argv as augur generate would (argv[0] = "generate"), printing
 * the first error; returns ARGS_RUN when the flags are good, else the exit code. */
int generate_check_args(int argc, char **argv);

#endif
