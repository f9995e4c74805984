/* Single-process autoregressive generation: prefill the prompt, then sample one
 * token at a time until EOS or the token limit, streaming text as it completes. */
#ifndef AUGUR_GENERATE_H
#define AUGUR_GENERATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/spec/sampling.h"
#include "runtime/forward.h"
#include "runtime/tokenizer/tokenizer.h"

typedef struct {
    int max_tokens;          /* generated tokens at most */
    sampling_params sampling;
    uint64_t seed;
    bool echo_prompt;        /* stream the prompt's text before the generated text */
} generate_opts;

typedef struct {
    int prompt_tokens;
    int generated_tokens;
    bool hit_eos;
    double prefill_ms;
    double decode_ms;        /* from the first decode step to the last token */
} generate_stats;

typedef struct {
    void (*write)(void *user, const char *text, size_t len);
    void *user;
} text_sink;

/* Runs generation on a fresh cache. out_tokens (may be NULL) receives up to
 * opts->max_tokens generated ids. */
augur_status generate_run(forward_ctx *f, kv_cache *kv, const tokenizer *tok, const int32_t *prompt,
                          int n_prompt, const generate_opts *opts, text_sink *sink, int32_t *out_tokens,
                          generate_stats *stats, augur_error *err);

/* Milliseconds on a monotonic clock. */
double augur_now_ms(void);

/* True when id ends generation for this model (config eos ids, else the tokenizer's). */
bool generate_is_stop_token(const model_config *cfg, const tokenizer *tok, int32_t id);

#endif
