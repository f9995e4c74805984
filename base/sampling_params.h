/* How logits become a next-token distribution: the sampling controls a request
 * carries, shared by the kernels that apply them and the engine that draws from them. */
#ifndef AUGUR_SAMPLING_PARAMS_H
#define AUGUR_SAMPLING_PARAMS_H

#include <stdbool.h>

typedef struct {
    float temperature;       /* 0 = greedy */
    int top_k;               /* 0 = off */
    float top_p;             /* 1 = off */
} sampling_params;

static inline bool sampling_is_greedy(const sampling_params *sp)
{
    return !(sp->temperature > 0.0f); /* NaN temperature also means greedy */
}

#endif
