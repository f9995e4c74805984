#include "runtime/kv_cache.h"

#include <stdlib.h>

#include "kernels/backend.h"

size_t kv_cache_bytes(int n_layers, int max_seq, int n_kv_heads, int head_dim)
{
    return 2 * (size_t)n_layers * (size_t)max_seq * (size_t)n_kv_heads * (size_t)head_dim * sizeof(float);
}

size_t kv_pool_bytes(int n_layers, int n_blocks, int n_kv_heads, int head_dim)
{
    return kv_cache_bytes(n_layers, n_blocks * KV_BLOCK, n_kv_heads, head_dim);
}

int kv_blocks_for(int positions)
{
    return positions <= 0 ? 0 : (positions + KV_BLOCK - 1) / KV_BLOCK;
}

static void *alloc_in(augur_backend *be, size_t bytes)
{
    if (!be)
        return malloc(bytes);
    void *p = NULL;
    augur_error ignored = {0};
    return backend_alloc(be, &p, bytes, &ignored) ? NULL : p;
}

static void free_in(augur_backend *be, void *p)
{
    if (be)
        backend_free(be, p);
    else
        free(p);
}

/* ------------------------------------------------------------------ pool */

augur_status kv_pool_init(kv_pool *pool, augur_backend *be, int n_layers, int n_blocks, int n_kv_heads, int head_dim,
                          augur_error *err)
{
    *pool = (kv_pool){.n_layers = n_layers, .n_blocks = n_blocks, .n_kv_heads = n_kv_heads, .head_dim = head_dim,
                      .be = be};
    if (n_layers <= 0 || n_blocks <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_blocks > INT32_MAX / KV_BLOCK)
        return augur_fail(err, AUGUR_E_INTERNAL, "kv pool: invalid shape %d layers x %d blocks x %d heads x %d",
                          n_layers, n_blocks, n_kv_heads, head_dim);
    size_t half = kv_pool_bytes(n_layers, n_blocks, n_kv_heads, head_dim) / 2;
    pool->k = alloc_in(be, half);
    pool->v = alloc_in(be, half);
    pool->free_ids = malloc((size_t)n_blocks * sizeof *pool->free_ids);
    if (!pool->k || !pool->v || !pool->free_ids) {
        kv_pool_free(pool);
        return augur_fail(err, AUGUR_E_NOMEM, "kv pool: cannot allocate 2 x %.1f MiB for %d blocks of %d positions%s%s",
                          (double)half / (1 << 20), n_blocks, KV_BLOCK, be ? " on backend " : "", be ? be->name : "");
    }
    /* Block 0 comes out first: a lone sequence's blocks are then in ascending order. */
    for (int i = 0; i < n_blocks; i++)
        pool->free_ids[i] = n_blocks - 1 - i;
    pool->n_free = n_blocks;
    return AUGUR_OK;
}

void kv_pool_free(kv_pool *pool)
{
    free_in(pool->be, pool->k);
    free_in(pool->be, pool->v);
    free(pool->free_ids);
    pool->k = pool->v = NULL;
    pool->free_ids = NULL;
    pool->n_free = 0;
}

int kv_pool_free_blocks(const kv_pool *pool)
{
    return pool->n_free;
}

/* ------------------------------------------------------------------ caches */

augur_status kv_cache_init(kv_cache *kv, augur_backend *be, int n_layers, int max_seq, int n_kv_heads, int head_dim,
                           augur_error *err)
{
    *kv = (kv_cache){.n_layers = n_layers, .max_seq = max_seq, .n_kv_heads = n_kv_heads, .head_dim = head_dim,
                     .layer_rows = max_seq, .be = be};
    if (n_layers <= 0 || max_seq <= 0 || n_kv_heads <= 0 || head_dim <= 0)
        return augur_fail(err, AUGUR_E_INTERNAL, "kv cache: invalid shape %d layers x %d positions x %d heads x %d",
                          n_layers, max_seq, n_kv_heads, head_dim);
    size_t half = kv_cache_bytes(n_layers, max_seq, n_kv_heads, head_dim) / 2;
    kv->k = alloc_in(be, half);
    kv->v = alloc_in(be, half);
    if (!kv->k || !kv->v) {
        kv_cache_free(kv);
        return augur_fail(err, AUGUR_E_NOMEM, "kv cache: cannot allocate 2 x %.1f MiB for %d positions%s%s",
                          (double)half / (1 << 20), max_seq, be ? " on backend " : "", be ? be->name : "");
    }
    return AUGUR_OK;
}

/* The table's device copy is separate only where the backend's memory is not the host's. */
static bool table_on_device(const kv_pool *pool)
{
    return pool->be && !pool->be->caps.host_memory;
}

augur_status kv_cache_init_paged(kv_cache *kv, kv_pool *pool, int max_seq, augur_error *err)
{
    *kv = (kv_cache){.n_layers = pool->n_layers, .max_seq = max_seq, .n_kv_heads = pool->n_kv_heads,
                     .head_dim = pool->head_dim, .k = pool->k, .v = pool->v,
                     .layer_rows = pool->n_blocks * KV_BLOCK, .be = pool->be, .pool = pool};
    if (max_seq <= 0)
        return augur_fail(err, AUGUR_E_INTERNAL, "kv cache: a paged sequence of %d positions", max_seq);
    size_t bytes = (size_t)kv_blocks_for(max_seq) * sizeof(int32_t);
    kv->table = malloc(bytes);
    kv->table_dev = table_on_device(pool) ? alloc_in(pool->be, bytes) : kv->table;
    if (!kv->table || !kv->table_dev) {
        kv_cache_free(kv);
        return augur_fail(err, AUGUR_E_NOMEM, "kv cache: cannot allocate the block table of %d positions", max_seq);
    }
    return AUGUR_OK;
}

/* Gives blocks [keep, n_held) back to the pool. */
static void release_blocks(kv_cache *kv, int keep)
{
    while (kv->n_held > keep)
        kv->pool->free_ids[kv->pool->n_free++] = kv->table[--kv->n_held];
}

void kv_cache_free(kv_cache *kv)
{
    if (kv->pool) {
        if (kv->table)
            release_blocks(kv, 0);
        if (kv->table_dev != kv->table)
            free_in(kv->be, kv->table_dev);
        free(kv->table);
        kv->table = kv->table_dev = NULL;
    } else {
        free_in(kv->be, kv->k);
        free_in(kv->be, kv->v);
    }
    kv->k = kv->v = NULL;
    kv->len = 0;
}

static size_t row_floats(const kv_cache *kv)
{
    return (size_t)kv->n_kv_heads * (size_t)kv->head_dim;
}

/* Physical row of position pos within a layer. */
static size_t kv_row(const kv_cache *kv, int pos)
{
    if (!kv->pool)
        return (size_t)pos;
    return (size_t)kv->table[pos / KV_BLOCK] * KV_BLOCK + (size_t)(pos % KV_BLOCK);
}

float *kv_cache_layer_k(const kv_cache *kv, int layer)
{
    return kv->k + (size_t)layer * (size_t)kv->layer_rows * row_floats(kv);
}

float *kv_cache_layer_v(const kv_cache *kv, int layer)
{
    return kv->v + (size_t)layer * (size_t)kv->layer_rows * row_floats(kv);
}

float *kv_cache_k(const kv_cache *kv, int layer, int pos)
{
    return kv_cache_layer_k(kv, layer) + kv_row(kv, pos) * row_floats(kv);
}

float *kv_cache_v(const kv_cache *kv, int layer, int pos)
{
    return kv_cache_layer_v(kv, layer) + kv_row(kv, pos) * row_floats(kv);
}

const int32_t *kv_cache_table(const kv_cache *kv)
{
    return kv->pool ? kv->table_dev : NULL;
}

augur_status kv_cache_reserve(kv_cache *kv, int n, augur_error *err)
{
    if (n < 0 || kv->len + n > kv->max_seq)
        return augur_fail(err, AUGUR_E_INPUT, "kv cache: %d + %d positions exceed the context of %d", kv->len, n,
                          kv->max_seq);
    if (!kv->pool)
        return AUGUR_OK;
    kv_pool *pool = kv->pool;
    const int had = kv->n_held, need = kv_blocks_for(kv->len + n);
    if (need <= had)
        return AUGUR_OK;
    if (need - had > pool->n_free)
        return augur_fail(err, AUGUR_E_NOMEM,
                          "kv pool: %d more blocks of %d positions wanted, %d of the pool's %d blocks (%d positions) "
                          "free",
                          need - had, KV_BLOCK, pool->n_free, pool->n_blocks, pool->n_blocks * KV_BLOCK);
    while (kv->n_held < need)
        kv->table[kv->n_held++] = pool->free_ids[--pool->n_free];
    if (kv->table_dev != kv->table) {
        augur_status st = backend_upload(kv->be, kv->table_dev + had, kv->table + had,
                                         (size_t)(need - had) * sizeof(int32_t), err);
        if (st) {
            release_blocks(kv, had);
            return augur_wrap(err, "kv cache: block table upload");
        }
    }
    return AUGUR_OK;
}

augur_status kv_cache_append(kv_cache *kv, int n, augur_error *err)
{
    augur_status st = kv_cache_reserve(kv, n, err);
    if (st)
        return st;
    kv->len += n;
    return AUGUR_OK;
}

augur_status kv_cache_trim(kv_cache *kv, int len, augur_error *err)
{
    if (len < 0 || len > kv->len)
        return augur_fail(err, AUGUR_E_INTERNAL, "kv cache: cannot trim to %d positions, it holds %d", len, kv->len);
    kv->len = len; /* positions past len are simply overwritten by the next append */
    if (kv->pool)
        release_blocks(kv, kv_blocks_for(len));
    return AUGUR_OK;
}
