/* Summing and printing the speculative engine's per-request stats. */
#ifndef AUGUR_SPEC_STATS_PRINT_H
#define AUGUR_SPEC_STATS_PRINT_H

#include "runtime/spec/spec_engine.h"

void spec_stats_add(spec_stats *sum, const spec_stats *s);
/* Generated tokens over the decode time (total less prefill). */
double spec_stats_tok_per_s(const spec_stats *s);
/* "augur: LABEL: 3 requests, 96 tokens in ... ms, ... tok/s", rounds, acceptance and the time split. */
void spec_stats_print(const char *label, const spec_stats *s, int requests);

#endif
