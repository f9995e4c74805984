/* Processed next-token distributions over one logits row, computed on the host
 * (kernels/cpu/probs.c). The same processing is applied to the draft's q and the
 * target's p before the speculative acceptance test. */
#ifndef AUGUR_PROBS_H
#define AUGUR_PROBS_H

#include "base/sampling_params.h"

/* Index of the largest value; the lowest index wins ties. */
int argmax_f32(const float *x, int n);

/* probs = the processed next-token distribution: softmax(logits / T), then keep the
 * top_k most likely, then the smallest prefix (by descending probability) whose mass
 * reaches top_p, renormalised; everything else exactly 0. Ties are broken by lower
 * token id. For greedy params it is one-hot on the argmax. scratch: n ints. */
void sampling_probs(const sampling_params *sp, const float *logits, int n, float *probs, int *scratch);

/* Entropy in nats of a distribution: -sum p log p over p > 0. */
float entropy_nats(const float *probs, int n);

#endif
