/* Containers the tokenizer's back ends and its dispatcher share: a byte buffer, an
 * id list, array growth, a byte-string -> int32 map, and reading a whole file. Private to runtime/tokenizer; depends on base/error.h only. */
#ifndef AUGUR_TOK_UTIL_H
#define AUGUR_TOK_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* ---- growable buffers ---- */

typedef struct {
    char *data;
    size_t len, cap;
} tok_buf;

bool tok_buf_reserve(tok_buf *b, size_t extra);
/* Also writes a terminating NUL after the data, so the buffer reads as a C string. */
bool tok_buf_append(tok_buf *b, const void *p, size_t n);
void tok_buf_free(tok_buf *b);

typedef struct {
    int32_t *v;
    size_t n, cap;
} tok_ids;

bool tok_ids_push(tok_ids *a, int32_t x);
void tok_ids_free(tok_ids *a);

/* Room for one more element in array v holding n elements of elem bytes (*cap of
 * them allocated; the first allocation is for `first`). Returns v itself while it
 * has room, else the grown array (and updates *cap), or NULL when memory ran out
 * (v is then still valid and unchanged). */
void *tok_grow(void *v, size_t n, size_t *cap, size_t elem, size_t first);

/* ---- byte-string -> int32 map; keys are borrowed and must outlive the map ---- */

typedef struct {
    const char *key;
    uint32_t len;
    int32_t val;
} tok_map_slot;

typedef struct {
    tok_map_slot *slots;
    size_t cap, n;
} tok_map;

bool tok_map_init(tok_map *m, size_t expected);
/* Inserts key; when it is present already, keeps the old value unless overwrite. */
bool tok_map_put(tok_map *m, const char *key, size_t len, int32_t val, bool overwrite);
int32_t tok_map_get(const tok_map *m, const char *key, size_t len); /* -1 when absent */
void tok_map_free(tok_map *m);

/* ---- files ---- */

/* Reads a whole file (NUL-terminated for convenience). */
augur_status tok_read_file(const char *path, char **data, size_t *len, augur_error *err);

#endif
