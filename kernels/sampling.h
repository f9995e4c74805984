/* Turning logits into tokens: processed distributions (temperature, top-k, top-p),
 * greedy argmax, and a seeded reproducible RNG. The same processing is applied to
 * the draft's q and the target's p before the speculative acceptance test. */
#ifndef AUGUR_SAMPLING_H
#define AUGUR_SAMPLING_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    float temperature;       /* 0 = greedy */
    int top_k;               /* 0 = off */
    float top_p;             /* 1 = off */
} sampling_params;

/* xoshiro256** seeded through splitmix64: the same seed gives the same stream on every platform. */
typedef struct {
    uint64_t s[4];
} augur_rng;

void rng_seed(augur_rng *rng, uint64_t seed);
uint64_t rng_next(augur_rng *rng);
/* Uniform in [0, 1) with 53 random bits. */
double rng_uniform(augur_rng *rng);

bool sampling_is_greedy(const sampling_params *sp);

/* Index of the largest value; the lowest index wins ties. */
int argmax_f32(const float *x, int n);

/* probs = the processed next-token distribution: softmax(logits / T), then keep the
 * top_k most likely, then the smallest prefix (by descending probability) whose mass
 * reaches top_p, renormalised; everything else exactly 0. Ties are broken by lower
 * token id. For greedy params it is one-hot on the argmax. scratch: n ints. */
void sampling_probs(const sampling_params *sp, const float *logits, int n, float *probs, int *scratch);

/* Draws an index from a distribution that sums to ~1 (inverse CDF in index order). */
int sample_from_probs(const float *probs, int n, augur_rng *rng);

/* Entropy in nats of a distribution: -sum p log p over p > 0. */
float entropy_nats(const float *probs, int n);

#endif
