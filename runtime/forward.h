/* The transformer forward pass of one rank over a block of new positions.
 *
 * The same call serves prefill (a chunk of the prompt), decode (one token) and
 * speculative verification (γ+1 tokens): it appends the new positions to the KV
 * cache and writes this rank's vocabulary shard of the logits. With a tensor-parallel
 * group (tp != NULL) the O and down projections are all-reduced across it. */
#ifndef AUGUR_FORWARD_H
#define AUGUR_FORWARD_H

#include <stdint.h>

#include "comm/collectives.h"
#include "runtime/error.h"
#include "runtime/kv_cache.h"
#include "runtime/model.h"

typedef struct {
    const model *m;
    collectives *tp;          /* NULL: a single rank holds the whole model */
    int threads;
    int max_tokens;           /* most positions one call may carry */
    int max_seq;              /* context length of the caches it serves */
    float *inv_freq;          /* [head_dim/2] */
    int *positions;           /* [max_tokens] */
    float *x, *xb, *q, *k, *v, *att, *proj, *gate, *up; /* activations, [max_tokens][...] */
    float *att_scratch;       /* [threads][max_seq] */
} forward_ctx;

augur_status forward_init(forward_ctx *f, const model *m, collectives *tp, int threads, int max_tokens,
                          int max_seq, augur_error *err);
void forward_free(forward_ctx *f);

/* Runs tokens[0..n) at positions kv->len .. kv->len+n-1 (n <= max_tokens), appends
 * them to kv, and writes logits rows for positions logits_from..n-1 into
 * logits[(n - logits_from)][m->vocab_local]. logits may be NULL (prefill chunks
 * whose logits nobody reads). */
augur_status forward_run(forward_ctx *f, kv_cache *kv, const int32_t *tokens, int n, int logits_from,
                         float *logits, augur_error *err);

/* Feeds a long token sequence through in max_tokens chunks; logits of the last
 * position only (may be NULL). */
augur_status forward_prefill(forward_ctx *f, kv_cache *kv, const int32_t *tokens, int n, float *last_logits,
                             augur_error *err);

#endif
