/* Turning processed distributions into tokens: a seeded reproducible RNG and the draw.
 * The distributions themselves come from kernels/probs.h (host) or the backend. */
#ifndef AUGUR_SAMPLING_H
#define AUGUR_SAMPLING_H

#include <stdint.h>

#include "base/sampling_params.h"
#include "kernels/probs.h"

/* xoshiro256** seeded through splitmix64: the same seed gives the same stream on every platform. */
typedef struct {
    uint64_t s[4];
} augur_rng;

void rng_seed(augur_rng *rng, uint64_t seed);
uint64_t rng_next(augur_rng *rng);
/* Uniform in [0, 1) with 53 random bits. */
double rng_uniform(augur_rng *rng);

/* A fresh stream for the draws made at one position of one request: the seed, the
 * request and the position hashed together (stream tells apart independent users of
 * one seed, such as the draft and the leader). Keyed this way a draw never depends on
 * how many draws came before it, so drafting ahead and discarding tokens cannot shift
 * later samples (DESIGN §8: seeded sampling is reproducible). */
enum {
    SPEC_DRAW_STREAM_LEADER = 0x4c454144u,
    SPEC_DRAW_STREAM_DRAFT = 0x44524654u,
    SPEC_DRAW_STREAM_SYNTHETIC = 0x53594e54u, /* --synthetic-acceptance's coin */
};
void rng_seed_at(augur_rng *rng, uint64_t seed, uint64_t stream, uint64_t request, uint64_t position);

/* Draws an index from a distribution that sums to ~1 (inverse CDF in index order). */
int sample_from_probs(const float *probs, int n, augur_rng *rng);

#endif
