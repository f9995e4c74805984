/* The tokenizer's shared containers (see tok_util.h). */
#include "runtime/tokenizer/tok_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- buffers */

bool tok_buf_reserve(tok_buf *b, size_t extra)
{
    if (b->cap - b->len > extra)
        return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len <= extra) {
        if (cap > SIZE_MAX / 2)
            return false;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return false;
    b->data = p;
    b->cap = cap;
    return true;
}

bool tok_buf_append(tok_buf *b, const void *p, size_t n)
{
    if (!tok_buf_reserve(b, n))
        return false;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

void tok_buf_free(tok_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void *tok_grow(void *v, size_t n, size_t *cap, size_t elem, size_t first)
{
    if (n < *cap)
        return v;
    size_t nc = *cap ? *cap * 2 : first;
    if (nc > SIZE_MAX / elem)
        return NULL;
    void *p = realloc(v, nc * elem);
    if (p)
        *cap = nc;
    return p;
}

bool tok_ids_push(tok_ids *a, int32_t x)
{
    int32_t *v = tok_grow(a->v, a->n, &a->cap, sizeof *v, 32);
    if (!v)
        return false;
    a->v = v;
    a->v[a->n++] = x;
    return true;
}

void tok_ids_free(tok_ids *a)
{
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

/* ---------------------------------------------------------------- string map */

static uint64_t hash_bytes(const char *s, size_t n)
{
    /* FNV-1a with a final mix: vocabularies are full of shared prefixes, and the
     * mix spreads those across the low bits used for the slot index. */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

bool tok_map_init(tok_map *m, size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2 + 2)
        cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    m->cap = m->slots ? cap : 0;
    m->n = 0;
    return m->slots != NULL;
}

static bool map_grow(tok_map *m)
{
    tok_map bigger;
    if (!tok_map_init(&bigger, m->cap))
        return false;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            tok_map_put(&bigger, m->slots[i].key, m->slots[i].len, m->slots[i].val, false);
    free(m->slots);
    *m = bigger;
    return true;
}

bool tok_map_put(tok_map *m, const char *key, size_t len, int32_t val, bool overwrite)
{
    if ((m->n + 1) * 2 > m->cap && !map_grow(m))
        return false;
    size_t mask = m->cap - 1;
    for (size_t i = hash_bytes(key, len) & mask;; i = (i + 1) & mask) {
        tok_map_slot *s = &m->slots[i];
        if (!s->key) {
            s->key = key;
            s->len = (uint32_t)len;
            s->val = val;
            m->n++;
            return true;
        }
        if (s->len == len && memcmp(s->key, key, len) == 0) {
            if (overwrite) {
                s->key = key;
                s->val = val;
            }
            return true;
        }
    }
}

int32_t tok_map_get(const tok_map *m, const char *key, size_t len)
{
    if (!m->cap)
        return -1;
    size_t mask = m->cap - 1;
    for (size_t i = hash_bytes(key, len) & mask;; i = (i + 1) & mask) {
        const tok_map_slot *s = &m->slots[i];
        if (!s->key)
            return -1;
        if (s->len == len && memcmp(s->key, key, len) == 0)
            return s->val;
    }
}

void tok_map_free(tok_map *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

/* ---------------------------------------------------------------- files */

augur_status tok_read_file(const char *path, char **data, size_t *len, augur_error *err)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return augur_fail(err, AUGUR_E_IO, "tokenizer '%s': cannot open: %s", path, strerror(errno));
    tok_buf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (!tok_buf_append(&b, chunk, got)) {
            fclose(f);
            tok_buf_free(&b);
            return augur_fail(err, AUGUR_E_NOMEM, "tokenizer '%s': out of memory reading the file", path);
        }
    }
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        tok_buf_free(&b);
        return augur_fail(err, AUGUR_E_IO, "tokenizer '%s': read error", path);
    }
    if (!b.data && !tok_buf_append(&b, "", 0))
        return augur_fail(err, AUGUR_E_NOMEM, "tokenizer '%s': out of memory", path);
    *data = b.data;
    *len = b.len;
    return AUGUR_OK;
}
