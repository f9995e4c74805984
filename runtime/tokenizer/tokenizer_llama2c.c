/* llama2.c tokenizer.bin: int32 max_token_length, then per token float32 score,
 * int32 length, bytes (little-endian; the count is not stored). Encoding and
 * decoding follow llama2.c's run.c exactly, since its models were trained on what
 * that code produces. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer/tok_backend.h"
#include "runtime/tokenizer/tok_utf8.h"

#define L2C_UNK 0
#define L2C_BOS 1
#define L2C_EOS 2
#define L2C_BYTE0 3 /* <0x00> .. <0xFF> follow <unk>, <s>, </s> */

typedef struct {
    char **piece;      /* id -> bytes (NUL-terminated copy) */
    uint32_t *len;
    float *score;
    int n;
    int max_len;
    tok_map map;       /* piece -> lowest id with that piece, as run.c's lookup finds */
} tok_l2c;

static int32_t rd_i32(const unsigned char *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

static float rd_f32(const unsigned char *p)
{
    uint32_t u = (uint32_t)rd_i32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void l2c_free(void *impl)
{
    tok_l2c *t = impl;
    if (!t)
        return;
    for (int i = 0; i < t->n; i++)
        free(t->piece[i]);
    free(t->piece);
    free(t->len);
    free(t->score);
    tok_map_free(&t->map);
    free(t);
}

static augur_status grow(tok_l2c *t, int *cap, const char *path, augur_error *err)
{
    int nc = *cap ? *cap * 2 : 1024;
    char **p = realloc(t->piece, (size_t)nc * sizeof *p);
    if (p)
        t->piece = p;
    uint32_t *l = realloc(t->len, (size_t)nc * sizeof *l);
    if (l)
        t->len = l;
    float *s = realloc(t->score, (size_t)nc * sizeof *s);
    if (s)
        t->score = s;
    if (!p || !l || !s)
        return augur_fail(err, AUGUR_E_NOMEM, "tokenizer.bin '%s': out of memory", path);
    *cap = nc;
    return AUGUR_OK;
}

static augur_status l2c_load(void **out, const char *path, const char *data, size_t size, int vocab_hint,
                             augur_error *err)
{
    *out = NULL;
    const unsigned char *p = (const unsigned char *)data;
    if (size < 4)
        return augur_fail(err, AUGUR_E_FORMAT, "tokenizer.bin '%s': %zu bytes, too short for max_token_length",
                          path, size);
    int32_t max_len = rd_i32(p);
    /* No real vocabulary has longer pieces; a larger value means this is not a
     * tokenizer.bin at all (text, JSON, another binary). */
    if (max_len <= 0 || max_len > 65536)
        return augur_fail(err, AUGUR_E_FORMAT, "tokenizer.bin '%s': max_token_length %d out of range 1..65536",
                          path, (int)max_len);
    tok_l2c *t = calloc(1, sizeof *t);
    if (!t)
        return augur_fail(err, AUGUR_E_NOMEM, "tokenizer.bin '%s': out of memory", path);
    t->max_len = max_len;
    int cap = 0;
    size_t off = 4;
    augur_status st = AUGUR_OK;
    while (off < size) {
        if (vocab_hint > 0 && t->n == vocab_hint) {
            st = augur_fail(err, AUGUR_E_FORMAT,
                            "tokenizer.bin '%s': holds more than the model's vocab_size %d tokens (%zu bytes "
                            "left at offset %zu)",
                            path, vocab_hint, size - off, off);
            break;
        }
        if (size - off < 8) {
            st = augur_fail(err, AUGUR_E_FORMAT, "tokenizer.bin '%s': truncated in the header of token %d "
                            "(offset %zu)", path, t->n, off);
            break;
        }
        float score = rd_f32(p + off);
        int32_t len = rd_i32(p + off + 4);
        off += 8;
        if (len < 0 || len > max_len) {
            st = augur_fail(err, AUGUR_E_FORMAT, "tokenizer.bin '%s': token %d has length %d outside "
                            "0..max_token_length %d", path, t->n, (int)len, (int)max_len);
            break;
        }
        if (size - off < (size_t)len) {
            st = augur_fail(err, AUGUR_E_FORMAT, "tokenizer.bin '%s': truncated in token %d (needs %d bytes "
                            "at offset %zu, file has %zu)", path, t->n, (int)len, off, size);
            break;
        }
        if (t->n == cap && (st = grow(t, &cap, path, err)) != AUGUR_OK)
            break;
        char *s = malloc((size_t)len + 1);
        if (!s) {
            st = augur_fail(err, AUGUR_E_NOMEM, "tokenizer.bin '%s': out of memory", path);
            break;
        }
        memcpy(s, p + off, (size_t)len);
        s[len] = '\0';
        off += (size_t)len;
        t->piece[t->n] = s;
        t->len[t->n] = (uint32_t)len;
        t->score[t->n] = score;
        t->n++;
    }
    if (st == AUGUR_OK && t->n < L2C_BYTE0 + 256)
        st = augur_fail(err, AUGUR_E_FORMAT, "tokenizer.bin '%s': only %d tokens; llama2.c layout needs "
                        "<unk> <s> </s> and 256 byte tokens", path, t->n);
    if (st == AUGUR_OK && vocab_hint > 0 && t->n != vocab_hint)
        st = augur_fail(err, AUGUR_E_FORMAT, "tokenizer.bin '%s': holds %d tokens but the model's vocab_size "
                        "is %d (truncated file?)", path, t->n, vocab_hint);
    if (st == AUGUR_OK && !tok_map_init(&t->map, (size_t)t->n))
        st = augur_fail(err, AUGUR_E_NOMEM, "tokenizer.bin '%s': out of memory", path);
    for (int i = 0; st == AUGUR_OK && i < t->n; i++)
        if (!tok_map_put(&t->map, t->piece[i], t->len[i], i, false))
            st = augur_fail(err, AUGUR_E_NOMEM, "tokenizer.bin '%s': out of memory", path);
    if (st != AUGUR_OK) {
        l2c_free(t);
        return st;
    }
    *out = t;
    return AUGUR_OK;
}

/* ------------------------------------------------------------------ encode */

typedef struct {
    float score;
    int pos;      /* index of the left symbol in its original position */
    int32_t left, right, merged;
} l2c_cand;

/* Max-heap on score, then min position: run.c rescans all pairs each round and
 * takes the first pair with the highest score, which is the same choice. */
static bool cand_before(const l2c_cand *a, const l2c_cand *b)
{
    if (a->score != b->score)
        return a->score > b->score;
    return a->pos < b->pos;
}

typedef struct {
    l2c_cand *v;
    size_t n, cap;
} cand_heap;

static bool heap_push(cand_heap *h, l2c_cand c)
{
    l2c_cand *v = tok_grow(h->v, h->n, &h->cap, sizeof *v, 64);
    if (!v)
        return false;
    h->v = v;
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_before(&c, &h->v[parent]))
            break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = c;
    return true;
}

static l2c_cand heap_pop(cand_heap *h)
{
    l2c_cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && cand_before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!cand_before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    return top;
}

typedef struct {
    int32_t id;
    int prev, next;
} l2c_sym;

/* Looks up the concatenation of two pieces; scratch must hold 2 * max_len bytes. */
static int32_t pair_id(const tok_l2c *t, int32_t a, int32_t b, char *scratch)
{
    memcpy(scratch, t->piece[a], t->len[a]);
    memcpy(scratch + t->len[a], t->piece[b], t->len[b]);
    return tok_map_get(&t->map, scratch, (size_t)t->len[a] + t->len[b]);
}

static bool consider(const tok_l2c *t, cand_heap *h, const l2c_sym *sym, int left, char *scratch)
{
    int right = sym[left].next;
    if (right < 0)
        return true;
    int32_t id = pair_id(t, sym[left].id, sym[right].id, scratch);
    /* run.c starts its best score at -1e10, so pairs scoring lower never merge. */
    if (id < 0 || !(t->score[id] > -1e10f))
        return true;
    return heap_push(h, (l2c_cand){t->score[id], left, sym[left].id, sym[right].id, id});
}

static augur_status l2c_encode(const void *impl, const char *text, size_t len, bool add_special, tok_ids *ids,
                               augur_error *err)
{
    const tok_l2c *t = impl;
    tok_ids seq = {0};
    cand_heap heap = {0};
    l2c_sym *sym = NULL;
    char *scratch = malloc(2 * (size_t)t->max_len + 8);
    bool ok = scratch != NULL;
    if (ok && add_special)
        ok = tok_ids_push(&seq, L2C_BOS);
    /* run.c's dummy prefix: the text gets a leading " " token unless empty. */
    if (ok && len > 0) {
        int32_t sp = tok_map_get(&t->map, " ", 1);
        if (sp >= 0)
            ok = tok_ids_push(&seq, sp);
    }
    /* Group bytes as run.c does: a non-continuation byte starts a new group and at
     * most 4 bytes join one, then the group is looked up whole or split into byte
     * tokens. This mirrors its handling of ill-formed input too. */
    size_t i = 0;
    while (ok && i < len) {
        size_t g = 1;
        while (i + g < len && ((unsigned char)text[i + g] & 0xC0) == 0x80 && g < 4)
            g++;
        int32_t id = tok_map_get(&t->map, text + i, g);
        if (id >= 0)
            ok = tok_ids_push(&seq, id);
        else
            for (size_t k = 0; ok && k < g; k++)
                ok = tok_ids_push(&seq, (unsigned char)text[i + k] + L2C_BYTE0);
        i += g;
    }
    size_t n = seq.n;
    if (ok && n > 1) {
        sym = malloc(n * sizeof *sym);
        ok = sym != NULL;
        for (size_t k = 0; ok && k < n; k++)
            sym[k] = (l2c_sym){seq.v[k], (int)k - 1, k + 1 < n ? (int)k + 1 : -1};
        for (size_t k = 0; ok && k + 1 < n; k++)
            ok = consider(t, &heap, sym, (int)k, scratch);
        while (ok && heap.n) {
            l2c_cand c = heap_pop(&heap);
            int right = sym[c.pos].next;
            /* Stale entries: either side merged since this pair was queued. */
            if (sym[c.pos].id != c.left || right < 0 || sym[right].id != c.right)
                continue;
            sym[c.pos].id = c.merged;
            sym[c.pos].next = sym[right].next;
            if (sym[right].next >= 0)
                sym[sym[right].next].prev = c.pos;
            sym[right].id = -1;
            if (sym[c.pos].prev >= 0)
                ok = consider(t, &heap, sym, sym[c.pos].prev, scratch);
            if (ok)
                ok = consider(t, &heap, sym, c.pos, scratch);
        }
        for (int k = 0; ok && k >= 0; k = sym[k].next)
            ok = tok_ids_push(ids, sym[k].id);
    } else {
        for (size_t k = 0; ok && k < n; k++)
            ok = tok_ids_push(ids, seq.v[k]);
    }
    free(sym);
    free(heap.v);
    free(scratch);
    tok_ids_free(&seq);
    if (!ok)
        return augur_fail(err, AUGUR_E_NOMEM, "tokenizer.bin: out of memory encoding %zu bytes", len);
    return AUGUR_OK;
}

/* ------------------------------------------------------------------ decode */

static bool l2c_is_special(const void *impl, int32_t id)
{
    (void)impl;
    return id >= 0 && id < L2C_BYTE0;
}

static int l2c_vocab_size(const void *impl)
{
    return ((const tok_l2c *)impl)->n;
}

static int l2c_bos(const void *impl)
{
    (void)impl;
    return L2C_BOS;
}

static int l2c_eos(const void *impl)
{
    (void)impl;
    return L2C_EOS;
}

static size_t l2c_max_piece(const void *impl)
{
    return (size_t)((const tok_l2c *)impl)->max_len;
}

/* Parses run.c's "<0x%02hhX>" byte pieces; returns -1 for anything else. */
static int byte_piece(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static int l2c_piece(const void *impl, int32_t id, tok_stream_pos pos, bool skip_special, tok_buf *out)
{
    const tok_l2c *t = impl;
    if (id < 0 || id >= t->n)
        return 0;
    const char *s = t->piece[id];
    size_t n = t->len[id];
    if (l2c_is_special(t, id)) {
        if (skip_special)
            return 0;
        /* The file stores "\n<s>\n"; the newlines are an export artefact, not text. */
        while (n && (*s == '\n' || *s == ' ')) {
            s++;
            n--;
        }
        while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
            n--;
        return tok_buf_append(out, s, n) ? 1 : -1;
    }
    /* SentencePiece drops the space that its dummy prefix put after BOS. */
    if (pos.after_bos && n && s[0] == ' ') {
        s++;
        n--;
    }
    int b = byte_piece(s, n);
    if (b >= 0) {
        char c = (char)b;
        return tok_buf_append(out, &c, 1) ? 1 : -1;
    }
    return tok_buf_append(out, s, n) ? 1 : -1;
}

static augur_status l2c_decode(const void *impl, const int32_t *ids, size_t n, bool skip_special, tok_buf *out,
                               augur_error *err)
{
    const tok_l2c *t = impl;
    tok_buf raw = {0};
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n) {
            tok_buf_free(&raw);
            return augur_fail(err, AUGUR_E_INPUT, "tokenizer.bin: decode: id %d at position %zu is outside "
                              "the vocabulary (0..%d)", (int)ids[i], i, t->n - 1);
        }
        tok_stream_pos pos = {i == 0, i > 0 && ids[i - 1] == L2C_BOS};
        if (l2c_piece(t, ids[i], pos, skip_special, &raw) < 0) {
            tok_buf_free(&raw);
            return augur_fail(err, AUGUR_E_NOMEM, "tokenizer.bin: decode: out of memory");
        }
    }
    bool ok = tok_utf8_lossy(out, raw.data ? raw.data : "", raw.len);
    tok_buf_free(&raw);
    if (!ok)
        return augur_fail(err, AUGUR_E_NOMEM, "tokenizer.bin: decode: out of memory");
    return AUGUR_OK;
}

const tok_backend tok_l2c_backend = {
    .load = l2c_load,
    .free = l2c_free,
    .encode = l2c_encode,
    .decode = l2c_decode,
    .piece = l2c_piece,
    .vocab_size = l2c_vocab_size,
    .bos = l2c_bos,
    .eos = l2c_eos,
    .is_special = l2c_is_special,
    .max_piece = l2c_max_piece,
};
