/* --config FILE: a JSON object whose keys are `augur generate` flags ("target",
 * "gamma", "no-overlap": true, ...). Its values come first on the command line, so
 * flags given explicitly override them. */
#ifndef AUGUR_CONFIG_FILE_H
#define AUGUR_CONFIG_FILE_H

#include "base/error.h"

typedef struct {
    int argc;
    char **argv;             /* argv[0], the config's flags, then the remaining arguments */
    char **owned;            /* strings made from the config, freed by config_args_free */
    int n_owned;
} config_args;

/* Expands the first --config FILE (or --config=FILE) in argv; without one, out
 * mirrors argv. */
augur_status config_args_expand(config_args *out, int argc, char **argv, augur_error *err);
void config_args_free(config_args *c);

#endif
