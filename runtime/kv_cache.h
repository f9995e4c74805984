/* Per-layer key/value cache of one rank: fp32 [max_seq][n_kv_heads][head_dim], in a
 * compute backend's memory (or plain host memory when made without one). */
#ifndef AUGUR_KV_CACHE_H
#define AUGUR_KV_CACHE_H

#include <stddef.h>

#include "base/error.h"

typedef struct augur_backend augur_backend;

typedef struct {
    int n_layers;
    int max_seq;
    int n_kv_heads;          /* heads held by this rank */
    int head_dim;
    int len;                 /* positions 0..len-1 are valid */
    float *k;                /* [n_layers][max_seq][n_kv_heads][head_dim] */
    float *v;
    augur_backend *be;       /* where k and v live; NULL: host memory */
} kv_cache;

/* be may be NULL (host memory). */
augur_status kv_cache_init(kv_cache *kv, augur_backend *be, int n_layers, int max_seq, int n_kv_heads, int head_dim,
                           augur_error *err);

/* Bytes kv_cache_init allocates for these dimensions. */
size_t kv_cache_bytes(int n_layers, int max_seq, int n_kv_heads, int head_dim);
void kv_cache_free(kv_cache *kv);

/* Row of position pos in layer l (n_kv_heads*head_dim floats), in the cache's memory. */
float *kv_cache_k(const kv_cache *kv, int layer, int pos);
float *kv_cache_v(const kv_cache *kv, int layer, int pos);

/* Marks positions [len, len + n) as written; fails past max_seq. */
augur_status kv_cache_append(kv_cache *kv, int n, augur_error *err);

/* Forgets every position at or beyond len (a speculation rejection). */
augur_status kv_cache_trim(kv_cache *kv, int len, augur_error *err);

#endif
