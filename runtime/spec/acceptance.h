/* The speculative acceptance test run by the leader (DESIGN §2).
 *
 * Greedy: draft token x_i is accepted iff it equals argmax p_i; the first mismatch is
 * replaced by argmax p_i, and after γ acceptances argmax p_{γ+1} is the bonus.
 * Sampling (Leviathan et al. / Chen et al.): accept x_i with probability
 * min(1, p_i(x_i) / q_i(x_i)); at the first rejection sample from norm(max(0, p_i − q_i));
 * after γ acceptances sample the bonus from p_{γ+1}. p and q are the processed
 * distributions (temperature, top-k, top-p applied to both), so the output is
 * distributed exactly as target-only sampling. */
#ifndef AUGUR_ACCEPTANCE_H
#define AUGUR_ACCEPTANCE_H

#include <stdint.h>

#include "runtime/spec/sampling.h"

typedef struct {
    int accepted;            /* draft tokens accepted, 0..γ */
    int32_t next_token;      /* the correction or bonus token */
} acceptance_result;

/* target_argmax: [γ+1] argmax of each verification row. */
acceptance_result accept_greedy(const int32_t *draft, int gamma, const int32_t *target_argmax);

/* Deliberately broken variants exist only so that the statistical test can show it
 * detects a wrong rule. */
typedef enum {
    ACCEPT_CORRECT = 0,
    ACCEPT_BROKEN_RESAMPLE_FROM_P, /* on rejection sample from p instead of the residual */
} acceptance_variant;

/* q: [γ][vocab] draft distributions; p: [γ+1][vocab] target distributions.
 * residual: vocab floats of scratch. */
acceptance_result accept_sampling(const int32_t *draft, int gamma, const float *q, const float *p, int vocab,
                                  augur_rng *rng, float *residual, acceptance_variant variant);

#endif
