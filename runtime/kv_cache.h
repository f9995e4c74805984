/* Per-layer key/value cache of one rank, fp32 rows of [n_kv_heads][head_dim] in a compute
 * backend's memory (or plain host memory when made without one). Two kinds:
 *
 *   contiguous (kv_cache_init) - a private [n_layers][max_seq][row] buffer; position p
 *       is row p. What single-sequence generation and captured CUDA steps use.
 *   paged (kv_cache_init_paged) - rows live in a kv_pool shared by many sequences, in
 *       blocks of KV_BLOCK positions; the sequence's block table maps its positions to
 *       blocks, taken from the pool as positions are appended and given back by trim
 *       and free. What continuous batching uses: a rejected draft frees whole blocks,
 *       and requests of different lengths share one budget.
 *
 * Both kinds hand the kernels a layer base and, for paged ones, the block table
 * (kv_cache_layer_k/v, kv_cache_table): position p of a paged sequence is physical row
 * table[p / KV_BLOCK] * KV_BLOCK + p % KV_BLOCK of the pool's layer. */
#ifndef AUGUR_KV_CACHE_H
#define AUGUR_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct augur_backend augur_backend;

/* Positions per block of a paged cache. 16 rows of a Llama-3-8B layer's KV are 16 KiB: a
 * trim wastes at most 15 positions a sequence, a table holds max_seq / 16 ids. */
#define KV_BLOCK 16

/* Fixed-size blocks for every layer of one model on one rank. Block b holds physical
 * rows b*KV_BLOCK .. b*KV_BLOCK+15 of every layer. Not thread-safe: one forward thread. */
typedef struct {
    int n_layers;
    int n_blocks;
    int n_kv_heads;
    int head_dim;
    float *k;                /* [n_layers][n_blocks * KV_BLOCK][n_kv_heads][head_dim] */
    float *v;
    augur_backend *be;       /* where k and v live; NULL: host memory */
    int32_t *free_ids;       /* [n_blocks] stack of free block ids, top at n_free - 1 */
    int n_free;
} kv_pool;

/* be may be NULL (host memory). */
augur_status kv_pool_init(kv_pool *pool, augur_backend *be, int n_layers, int n_blocks, int n_kv_heads, int head_dim,
                          augur_error *err);
/* Every sequence using the pool must have been freed first. */
void kv_pool_free(kv_pool *pool);
int kv_pool_free_blocks(const kv_pool *pool);

/* Backend bytes kv_pool_init allocates for these dimensions (memory plans). */
size_t kv_pool_bytes(int n_layers, int n_blocks, int n_kv_heads, int head_dim);

/* Blocks that hold `positions` positions. */
int kv_blocks_for(int positions);

typedef struct {
    int n_layers;
    int max_seq;             /* most positions this sequence may hold */
    int n_kv_heads;          /* heads held by this rank */
    int head_dim;
    int len;                 /* positions 0..len-1 are valid */
    float *k;                /* layer l's rows start at k + l * layer_rows * row floats */
    float *v;
    int layer_rows;          /* physical rows per layer: max_seq, or the pool's blocks * KV_BLOCK */
    augur_backend *be;       /* where k and v live; NULL: host memory */
    /* paged caches only (pool == NULL: contiguous) */
    kv_pool *pool;
    int32_t *table;          /* host: [kv_blocks_for(max_seq)] block ids, the first n_held valid */
    int32_t *table_dev;      /* the copy the kernels read, in be's memory (== table for host memory) */
    int n_held;              /* blocks taken from the pool */
} kv_cache;

/* A contiguous cache of max_seq positions. be may be NULL (host memory).
 *
 * Why contiguous caches are not pools with an identity table: they are what a captured
 * CUDA step replays against (forward_run), and their kernels must stay exactly as fast
 * as before paging existed, with no table to read per position; a NULL table in the
 * kernels keeps that path untouched (the paged kernels are separate instantiations). */
augur_status kv_cache_init(kv_cache *kv, augur_backend *be, int n_layers, int max_seq, int n_kv_heads, int head_dim,
                           augur_error *err);

/* A paged sequence of at most max_seq positions over pool (which must outlive it). It
 * holds no block until positions are appended; its table's device copy is allocated
 * here (kv_blocks_for(max_seq) int32). */
augur_status kv_cache_init_paged(kv_cache *kv, kv_pool *pool, int max_seq, augur_error *err);

/* Bytes kv_cache_init allocates for these dimensions. */
size_t kv_cache_bytes(int n_layers, int max_seq, int n_kv_heads, int head_dim);

/* Frees a contiguous cache's memory; returns every block of a paged one to its pool. */
void kv_cache_free(kv_cache *kv);

/* Row of position pos in layer l (n_kv_heads*head_dim floats), in the cache's memory. For
 * a paged cache pos must lie in a held block (pos < n_held * KV_BLOCK), and the host
 * reads the table. */
float *kv_cache_k(const kv_cache *kv, int layer, int pos);
float *kv_cache_v(const kv_cache *kv, int layer, int pos);

/* Layer l's physical row 0, which the kernels index (through kv_cache_table when paged). */
float *kv_cache_layer_k(const kv_cache *kv, int layer);
float *kv_cache_layer_v(const kv_cache *kv, int layer);

/* The block table the kernels read (backend memory), NULL for a contiguous cache. */
const int32_t *kv_cache_table(const kv_cache *kv);

/* Makes positions [len, len + n) writable without marking them valid: a paged cache takes
 * the blocks they need from its pool and updates its table (host and device copies).
 * Fails past max_seq (AUGUR_E_INPUT) or when the pool has too few free blocks
 * (AUGUR_E_NOMEM, naming the pool's size); on failure the cache is as it was. */
augur_status kv_cache_reserve(kv_cache *kv, int n, augur_error *err);

/* Marks positions [len, len + n) as written (reserving them first if needed); fails as
 * kv_cache_reserve. */
augur_status kv_cache_append(kv_cache *kv, int n, augur_error *err);

/* Forgets every position at or beyond len (a speculation rejection); a paged cache gives
 * back every block past the one holding position len - 1 (reserved ones included). */
augur_status kv_cache_trim(kv_cache *kv, int len, augur_error *err);

#endif
