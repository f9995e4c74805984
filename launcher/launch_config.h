/* The config file of `augur launch` (the JSON files in configs/, documented key by key in
 * configs/README.md): the layout keys launch reads itself, and the flags of the command
 * it runs on every rank. Every error names the file, the key and the problem. */
#ifndef AUGUR_LAUNCH_CONFIG_H
#define AUGUR_LAUNCH_CONFIG_H

#include <stdbool.h>

#include "base/error.h"
#include "launcher/launch_layout.h"

typedef enum { LAUNCH_GENERATE = 0, LAUNCH_BENCH = 1, LAUNCH_SERVE = 2 } launch_command;

/* Checks that `key` is a flag of the command and that value (NULL for a flag without a
 * value) is valid for it; the message says what is wrong with the value. */
typedef augur_status (*launch_flag_check_fn)(launch_command cmd, const char *key, const char *value,
                                             augur_error *err);

typedef struct {
    char *key;               /* without "--" */
    char *value;             /* NULL: a flag without a value (JSON true) */
} launch_flag;

typedef struct {
    char *path;
    launch_command command;
    int tp;                  /* 1 when not given */
    int replicas;            /* 1 when not given */
    draft_placement draft;
    int simulate_hosts;      /* 0 when not given */
    char *device;            /* "auto" (not given), "cpu" or "cuda" */
    char *hostfile;          /* NULL: localhost */
    bool oversubscribe;      /* more ranks than slots allowed (always on localhost) */
    char *mpirun;            /* "mpirun" unless given */
    /* the models, for the checks launch makes before starting ranks */
    char *target;            /* generate: --target; bench: --model */
    char *draft_model;
    int draft_layers;
    bool no_speculation;
    bool dummy;              /* load-format dummy */
    launch_flag *flags;      /* the command's flags, in file order (layout keys it also reads included) */
    int n_flags;
} launch_config;

/* Reads path; check (may be NULL) validates each key that becomes a flag. */
augur_status launch_config_load(launch_config *out, const char *path, launch_flag_check_fn check, augur_error *err);
void launch_config_free(launch_config *c);

/* Whether key is read by launch alone (never passed to the command): config_file.c
 * skips these when `augur generate --config` reads a launch config. */
bool launch_config_key_is_launch_only(const char *key);

const char *launch_command_name(launch_command c);

#endif
