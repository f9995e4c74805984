/* The augur subcommands; each returns the process exit code. */
#ifndef AUGUR_COMMANDS_H
#define AUGUR_COMMANDS_H

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_simulate(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_project(int argc, char **argv);
int cmd_launch(int argc, char **argv);

#include "base/error.h"

/* For augur launch: whether key (value: NULL for a flag without one) is a valid flag of
 * augur bench. */
augur_status bench_check_flag(const char *key, const char *value, augur_error *err);
/* Parses argv as augur bench would, printing the first error: ARGS_RUN when good. */
int bench_check_args(int argc, char **argv);
/* The same two for augur serve. */
augur_status serve_check_flag(const char *key, const char *value, augur_error *err);
int serve_check_args(int argc, char **argv);

#endif
