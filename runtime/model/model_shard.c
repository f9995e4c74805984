/* How a tensor-parallel rank's share of a model is cut (DESIGN §5): which heads, KV
 * heads, intermediate rows and vocabulary rows it owns. */
#include "runtime/model/model_shard.h"

void tp_split(int n, int size, int rank, int *start, int *count)
{
    int base = n / size, extra = n % size;
    *count = base + (rank < extra ? 1 : 0);
    *start = rank * base + (rank < extra ? rank : extra);
}

augur_status tp_check_layout(const model_config *c, int tp, augur_error *err)
{
    if (tp < 1)
        return augur_fail(err, AUGUR_E_INPUT, "tensor-parallel size %d must be at least 1", tp);
    if (c->n_heads % tp)
        return augur_fail(err, AUGUR_E_INPUT, "%d target ranks do not divide num_attention_heads %d", tp,
                          c->n_heads);
    if (tp <= c->n_kv_heads ? c->n_kv_heads % tp : tp % c->n_kv_heads)
        return augur_fail(err, AUGUR_E_INPUT,
                          "%d target ranks do not divide num_key_value_heads %d (nor are a multiple of it)", tp,
                          c->n_kv_heads);
    if (c->hidden_dim < tp || c->vocab_size < tp)
        return augur_fail(err, AUGUR_E_INPUT, "%d target ranks exceed intermediate_size %d or vocab_size %d", tp,
                          c->hidden_dim, c->vocab_size);
    return AUGUR_OK;
}

void model_plan_shard(model *m)
{
    const model_config *c = &m->cfg;
    int T = m->opts.tp_size, r = m->opts.tp_rank;
    m->n_heads_local = c->n_heads / T;
    m->head_start = r * m->n_heads_local;
    if (T <= c->n_kv_heads) {
        m->n_kv_heads_local = c->n_kv_heads / T;
        m->kv_head_start = r * m->n_kv_heads_local;
    } else { /* replicate: the one KV head this rank's query heads share */
        m->n_kv_heads_local = 1;
        m->kv_head_start = m->head_start / (c->n_heads / c->n_kv_heads);
    }
    tp_split(c->hidden_dim, T, r, &m->hidden_start, &m->hidden_local);
    tp_split(c->vocab_size, T, r, &m->vocab_start, &m->vocab_local);
}
