/* Progress of a long weight load (a sharded checkpoint uploaded to a GPU): one stderr line
 * at most once a second — bytes loaded of the total and the rate — once loading has taken
 * longer than a second, and a closing line when any was printed. A load that ends within
 * the first second prints nothing. The clock is the caller's (seconds), so that the rule
 * is tested without waiting. */
#ifndef AUGUR_LOAD_PROGRESS_H
#define AUGUR_LOAD_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define LOAD_PROGRESS_PERIOD_S 1.0

typedef struct {
    FILE *out;
    char who[96];            /* "rank 2 (target shard 2 of 8)" */
    size_t total, done;      /* bytes */
    double start, last;      /* seconds: the load's start, the last line's time */
    int lines;               /* progress lines printed */
} load_progress;

void load_progress_start(load_progress *p, FILE *out, const char *who, size_t total_bytes, double now);
/* Counts bytes loaded; prints a line when a period has passed since the start and since
 * the last line. */
void load_progress_add(load_progress *p, size_t bytes, double now);
/* The closing line ("loaded 70.1 GB in 17.2 s, 4.1 GB/s") when progress lines were printed. */
void load_progress_end(load_progress *p, double now);
/* Monotonic seconds, for callers that have no clock of their own. */
double load_progress_now(void);

#endif
