/* `generate --stats-json FILE`: every figure the final stats print, as one JSON object,
 * for scripts (cluster/scale.sh) that would otherwise scrape stderr. */
#ifndef AUGUR_STATS_JSON_H
#define AUGUR_STATS_JSON_H

#include <stdint.h>

#include "base/error.h"
#include "launcher/generate_cli.h"
#include "launcher/replica_report.h"
#include "runtime/spec/spec_engine.h"

/* The leader's all-reduces over one configuration's requests (rank 0's share). */
typedef struct {
    int64_t calls;
    double ms;
    int64_t bytes;
} stats_allreduce;

/* One configuration's figures: the main run, or the --compare-baseline run. */
typedef struct {
    const char *label;       /* "speculative", "target-only", "baseline (target-only)" */
    const spec_stats *s;
    stats_allreduce ar;
} stats_run;

/* Writes {"command": ..., "ranks": ..., "runs": [main, baseline?]} to path. baseline may be
 * NULL. world_size and the engine say the layout; cli says the settings. */
augur_status stats_json_write(const char *path, const generate_cli *cli, const spec_engine *e, int world_size,
                              int requests, const stats_run *main_run, const stats_run *baseline,
                              augur_error *err);

/* Adds the job's totals over its replicas ({"replicas": R, "job": {...}}) to the record
 * that replica 0's leader (job rank 0) wrote to path. */
augur_status stats_json_add_job(const char *path, const replica_totals *t, augur_error *err);

#endif
