#include "runtime/kv_cache.h"

#include <stdlib.h>

#include "kernels/backend.h"

size_t kv_cache_bytes(int n_layers, int max_seq, int n_kv_heads, int head_dim)
{
    return 2 * (size_t)n_layers * (size_t)max_seq * (size_t)n_kv_heads * (size_t)head_dim * sizeof(float);
}

static void *alloc_half(augur_backend *be, size_t bytes)
{
    if (!be)
        return malloc(bytes);
    void *p = NULL;
    augur_error ignored = {0};
    return backend_alloc(be, &p, bytes, &ignored) ? NULL : p;
}

augur_status kv_cache_init(kv_cache *kv, augur_backend *be, int n_layers, int max_seq, int n_kv_heads, int head_dim,
                           augur_error *err)
{
    *kv = (kv_cache){.n_layers = n_layers, .max_seq = max_seq, .n_kv_heads = n_kv_heads, .head_dim = head_dim,
                     .be = be};
    if (n_layers <= 0 || max_seq <= 0 || n_kv_heads <= 0 || head_dim <= 0)
        return augur_fail(err, AUGUR_E_INTERNAL, "kv cache: invalid shape %d layers x %d positions x %d heads x %d",
                          n_layers, max_seq, n_kv_heads, head_dim);
    size_t half = kv_cache_bytes(n_layers, max_seq, n_kv_heads, head_dim) / 2;
    kv->k = alloc_half(be, half);
    kv->v = alloc_half(be, half);
    if (!kv->k || !kv->v) {
        kv_cache_free(kv);
        return augur_fail(err, AUGUR_E_NOMEM, "kv cache: cannot allocate 2 x %.1f MiB for %d positions%s%s",
                          (double)half / (1 << 20), max_seq, be ? " on backend " : "", be ? be->name : "");
    }
    return AUGUR_OK;
}

void kv_cache_free(kv_cache *kv)
{
    if (kv->be) {
        backend_free(kv->be, kv->k);
        backend_free(kv->be, kv->v);
    } else {
        free(kv->k);
        free(kv->v);
    }
    kv->k = kv->v = NULL;
    kv->len = 0;
}

static size_t kv_offset(const kv_cache *kv, int layer, int pos)
{
    return (((size_t)layer * (size_t)kv->max_seq) + (size_t)pos) * (size_t)kv->n_kv_heads * (size_t)kv->head_dim;
}

float *kv_cache_k(const kv_cache *kv, int layer, int pos)
{
    return kv->k + kv_offset(kv, layer, pos);
}

float *kv_cache_v(const kv_cache *kv, int layer, int pos)
{
    return kv->v + kv_offset(kv, layer, pos);
}

augur_status kv_cache_append(kv_cache *kv, int n, augur_error *err)
{
    if (n < 0 || kv->len + n > kv->max_seq)
        return augur_fail(err, AUGUR_E_INPUT, "kv cache: %d + %d positions exceed the context of %d", kv->len, n,
                          kv->max_seq);
    kv->len += n;
    return AUGUR_OK;
}

augur_status kv_cache_trim(kv_cache *kv, int len, augur_error *err)
{
    if (len < 0 || len > kv->len)
        return augur_fail(err, AUGUR_E_INTERNAL, "kv cache: cannot trim to %d positions, it holds %d", len, kv->len);
    kv->len = len; /* positions past len are simply overwritten by the next append */
    return AUGUR_OK;
}
