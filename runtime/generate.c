#include "runtime/generate.h"

#include <stdlib.h>
#include <time.h>

double augur_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

bool generate_is_stop_token(const model_config *cfg, const tokenizer *tok, int32_t id)
{
    if (cfg->n_eos > 0)
        return model_config_is_eos(cfg, id);
    return tok && id == tokenizer_eos_id(tok);
}

static void emit(text_sink *sink, detok_stream *ds, int32_t id)
{
    char buf[512];
    size_t n = detok_stream_push(ds, id, buf, sizeof buf);
    if (n && sink)
        sink->write(sink->user, buf, n);
}

augur_status generate_run(forward_ctx *f, kv_cache *kv, const tokenizer *tok, const int32_t *prompt,
                          int n_prompt, const generate_opts *opts, text_sink *sink, int32_t *out_tokens,
                          generate_stats *stats, augur_error *err)
{
    const model *m = f->m;
    int vocab = m->vocab_local;
    *stats = (generate_stats){.prompt_tokens = n_prompt};
    if (n_prompt <= 0)
        return augur_fail(err, AUGUR_E_INPUT, "the prompt encodes to no tokens");
    if (n_prompt + opts->max_tokens > kv->max_seq)
        return augur_fail(err, AUGUR_E_INPUT,
                          "prompt of %d tokens plus --max-tokens %d exceeds the context of %d positions", n_prompt,
                          opts->max_tokens, kv->max_seq);
    float *logits = malloc((size_t)vocab * sizeof(float));
    float *probs = malloc((size_t)vocab * sizeof(float));
    int *scratch = malloc((size_t)vocab * sizeof(int));
    if (!logits || !probs || !scratch) {
        free(logits);
        free(probs);
        free(scratch);
        return augur_fail(err, AUGUR_E_NOMEM, "generate: cannot allocate %d-entry logits", vocab);
    }
    augur_rng rng;
    rng_seed(&rng, opts->seed);
    detok_stream ds;
    detok_stream_init(&ds, tok, true);
    if (opts->echo_prompt)
        for (int i = 0; i < n_prompt; i++)
            emit(sink, &ds, prompt[i]);

    kv->len = 0;
    double t0 = augur_now_ms();
    augur_status st = forward_prefill(f, kv, prompt, n_prompt, logits, err);
    stats->prefill_ms = augur_now_ms() - t0;
    double t_decode = augur_now_ms();
    for (int g = 0; !st && g < opts->max_tokens; g++) {
        int32_t next;
        if (sampling_is_greedy(&opts->sampling)) {
            next = argmax_f32(logits, vocab);
        } else {
            sampling_probs(&opts->sampling, logits, vocab, probs, scratch);
            next = sample_from_probs(probs, vocab, &rng);
        }
        if (out_tokens)
            out_tokens[g] = next;
        stats->generated_tokens++;
        if (generate_is_stop_token(&m->cfg, tok, next)) {
            stats->hit_eos = true;
            break;
        }
        emit(sink, &ds, next);
        if (g + 1 < opts->max_tokens)
            st = forward_run(f, kv, &next, 1, 0, logits, err);
    }
    stats->decode_ms = augur_now_ms() - t_decode;
    char tail[64];
    size_t n = detok_stream_flush(&ds, tail, sizeof tail);
    if (n && sink)
        sink->write(sink->user, tail, n);
    free(logits);
    free(probs);
    free(scratch);
    return st;
}
