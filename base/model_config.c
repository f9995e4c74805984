/* Consistency checks shared by every source of a model_config (config.json, llama2.c
 * headers, dummy shapes). */
#include "base/model_config.h"

#include <stddef.h>

augur_status model_config_validate(const model_config *c, const char *source, augur_error *err)
{
    const struct {
        const char *name;
        int value;
    } positive[] = {{"hidden_size", c->dim},
                    {"intermediate_size", c->hidden_dim},
                    {"num_hidden_layers", c->n_layers},
                    {"num_attention_heads", c->n_heads},
                    {"num_key_value_heads", c->n_kv_heads},
                    {"head_dim", c->head_dim},
                    {"vocab_size", c->vocab_size},
                    {"max_position_embeddings", c->max_seq_len}};
    for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++)
        if (positive[i].value <= 0)
            return augur_fail(err, AUGUR_E_FORMAT, "%s: %s must be positive, got %d", source, positive[i].name,
                              positive[i].value);
    if (c->n_heads % c->n_kv_heads)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: num_key_value_heads %d does not divide num_attention_heads %d",
                          source, c->n_kv_heads, c->n_heads);
    if (c->head_dim % 2)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: head_dim %d must be even for rotary embeddings", source,
                          c->head_dim);
    if (!(c->rms_norm_eps > 0) || !(c->rope_theta > 0))
        return augur_fail(err, AUGUR_E_FORMAT, "%s: rms_norm_eps %g and rope_theta %g must be positive", source,
                          (double)c->rms_norm_eps, (double)c->rope_theta);
    if (c->bos_id >= c->vocab_size)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: bos_token_id %d outside the vocabulary of %d", source, c->bos_id,
                          c->vocab_size);
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] < 0 || c->eos_ids[i] >= c->vocab_size)
            return augur_fail(err, AUGUR_E_FORMAT, "%s: eos_token_id %d outside the vocabulary of %d", source,
                              c->eos_ids[i], c->vocab_size);
    return AUGUR_OK;
}

bool model_config_is_eos(const model_config *c, int token)
{
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == token)
            return true;
    return false;
}
