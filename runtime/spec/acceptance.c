#include "runtime/spec/acceptance.h"

#include <stddef.h>

acceptance_result accept_greedy(const int32_t *draft, int gamma, const int32_t *target_argmax)
{
    for (int i = 0; i < gamma; i++)
        if (draft[i] != target_argmax[i])
            return (acceptance_result){.accepted = i, .next_token = target_argmax[i]};
    return (acceptance_result){.accepted = gamma, .next_token = target_argmax[gamma]};
}

acceptance_result accept_sampling(const int32_t *draft, int gamma, const float *q, const float *p, int vocab,
                                  augur_rng *rng, float *residual, acceptance_variant variant)
{
    for (int i = 0; i < gamma; i++) {
        const float *pi = p + (size_t)i * vocab;
        const float *qi = q + (size_t)i * vocab;
        int32_t x = draft[i];
        float px = pi[x], qx = qi[x];
        /* qx > 0 always for a token the draft sampled; guard anyway. */
        double ratio = qx > 0 ? (double)px / (double)qx : 1.0;
        if (ratio >= 1.0 || rng_uniform(rng) < ratio)
            continue;
        int32_t next;
        if (variant == ACCEPT_BROKEN_RESAMPLE_FROM_P) {
            next = sample_from_probs(pi, vocab, rng);
        } else {
            double total = 0;
            for (int v = 0; v < vocab; v++) {
                float d = pi[v] - qi[v];
                residual[v] = d > 0 ? d : 0;
                total += residual[v];
            }
            if (total <= 0) { /* p == q up to rounding: the residual is empty, p itself is exact */
                next = sample_from_probs(pi, vocab, rng);
            } else {
                for (int v = 0; v < vocab; v++)
                    residual[v] = (float)(residual[v] / total);
                next = sample_from_probs(residual, vocab, rng);
            }
        }
        return (acceptance_result){.accepted = i, .next_token = next};
    }
    return (acceptance_result){.accepted = gamma,
                               .next_token = sample_from_probs(p + (size_t)gamma * vocab, vocab, rng)};
}
