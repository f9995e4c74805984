/* Tokenizer front end: picks the back end from the file's content, forwards calls,
 * and owns what both back ends share: buffers, a string map, UTF-8 handling and the
 * streaming decoder. */
#include "runtime/tokenizer/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer/tokenizer_impl.h"

struct tokenizer {
    tok_hf *hf;   /* exactly one of hf / l2c is set */
    tok_l2c *l2c;
};

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
    /* Always leaves room for (and writes) a terminating NUL so callers can hand the
     * buffer out as a C string. */
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

bool tok_ids_push(tok_ids *a, int32_t x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 32;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v)
            return false;
        a->v = v;
        a->cap = cap;
    }
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

/* ---------------------------------------------------------------- UTF-8 */

/* Valid range of the second byte for each lead byte (Unicode table 3-7); later
 * continuation bytes are always 80..BF. */
static bool second_ok(unsigned char lead, unsigned char b)
{
    switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return b >= 0x80 && b <= 0xBF;
    }
}

static size_t lead_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    return 0;
}

size_t tok_utf8_seq_len(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    size_t need = lead_len(s[0]);
    if (need == 0 || need > n)
        return 0;
    for (size_t i = 1; i < need; i++) {
        bool ok = i == 1 ? second_ok(s[0], s[1]) : (s[i] >= 0x80 && s[i] <= 0xBF);
        if (!ok)
            return 0;
    }
    return need;
}

size_t tok_utf8_check(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = tok_utf8_seq_len(u + i, n - i);
        if (!l)
            return i;
        i += l;
    }
    return n;
}

uint32_t tok_utf8_decode(const char *s, size_t *adv)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t l = lead_len(u[0]);
    uint32_t cp;
    switch (l) {
    case 1: cp = u[0]; break;
    case 2: cp = (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F); break;
    case 3: cp = (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F); break;
    case 4:
        cp = (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 | (uint32_t)(u[2] & 0x3F) << 6 |
             (u[3] & 0x3F);
        break;
    default: cp = 0xFFFD; l = 1; break;
    }
    *adv = l;
    return cp;
}

size_t tok_utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static const char REPLACEMENT[] = "\xEF\xBF\xBD";

/* Incremental form of from_utf8_lossy, shared by full decoding and the stream:
 * pending holds a proper prefix of a well-formed sequence. When the next byte cannot
 * continue it, the prefix (a "maximal subpart") becomes one U+FFFD and the byte is
 * looked at afresh. */
typedef struct {
    unsigned char *pending;
    size_t *n_pending;
} utf8_asm;

typedef bool (*emit_fn)(void *ctx, const char *p, size_t n);

static bool asm_byte(utf8_asm *a, unsigned char b, emit_fn emit, void *ctx)
{
    for (;;) {
        size_t k = *a->n_pending;
        if (k == 0) {
            size_t need = lead_len(b);
            if (need == 1)
                return emit(ctx, (const char *)&b, 1);
            if (need == 0)
                return emit(ctx, REPLACEMENT, 3);
            a->pending[0] = b;
            *a->n_pending = 1;
            return true;
        }
        unsigned char lead = a->pending[0];
        bool ok = k == 1 ? second_ok(lead, b) : (b >= 0x80 && b <= 0xBF);
        if (!ok) {
            *a->n_pending = 0;
            if (!emit(ctx, REPLACEMENT, 3))
                return false;
            continue; /* reprocess b as the start of something new */
        }
        a->pending[k++] = b;
        if (k == lead_len(lead)) {
            *a->n_pending = 0;
            return emit(ctx, (const char *)a->pending, k);
        }
        *a->n_pending = k;
        return true;
    }
}

static bool asm_finish(utf8_asm *a, emit_fn emit, void *ctx)
{
    if (*a->n_pending == 0)
        return true;
    *a->n_pending = 0;
    return emit(ctx, REPLACEMENT, 3);
}

static bool emit_to_buf(void *ctx, const char *p, size_t n)
{
    return tok_buf_append(ctx, p, n);
}

bool tok_utf8_lossy(tok_buf *out, const char *s, size_t n)
{
    size_t valid = tok_utf8_check(s, n);
    if (!tok_buf_append(out, s, valid))
        return false;
    unsigned char pending[4];
    size_t n_pending = 0;
    utf8_asm a = {pending, &n_pending};
    for (size_t i = valid; i < n; i++)
        if (!asm_byte(&a, (unsigned char)s[i], emit_to_buf, out))
            return false;
    return asm_finish(&a, emit_to_buf, out);
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

/* ---------------------------------------------------------------- dispatch */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

augur_status tokenizer_load(tokenizer **out, const char *path, int vocab_hint, augur_error *err)
{
    if (!out || !path)
        return augur_fail(err, AUGUR_E_INPUT, "tokenizer_load: NULL %s", out ? "path" : "out");
    *out = NULL;
    char *data;
    size_t len;
    augur_status st = tok_read_file(path, &data, &len, err);
    if (st != AUGUR_OK)
        return st;
    tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) {
        free(data);
        return augur_fail(err, AUGUR_E_NOMEM, "tokenizer '%s': out of memory", path);
    }
    /* tokenizer.bin starts with a small binary int32, so a leading '{' (after
     * whitespace) or a .json name is a reliable sign of JSON. */
    size_t i = 0;
    while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r'))
        i++;
    bool json = (i < len && data[i] == '{') || ends_with(path, ".json");
    if (len == 0)
        st = augur_fail(err, AUGUR_E_FORMAT, "tokenizer '%s': file is empty", path);
    else if (json)
        st = tok_hf_load(&tok->hf, path, data, len, err);
    else {
        st = tok_l2c_load(&tok->l2c, path, data, len, vocab_hint, err);
        if (st == AUGUR_E_FORMAT)
            augur_wrap(err, "tokenizer '%s': not a tokenizer.json (no JSON object) and not a llama2.c "
                            "tokenizer.bin", path);
    }
    free(data);
    if (st != AUGUR_OK) {
        free(tok);
        return st;
    }
    *out = tok;
    return AUGUR_OK;
}

void tokenizer_free(tokenizer *tok)
{
    if (!tok)
        return;
    tok_hf_free(tok->hf);
    tok_l2c_free(tok->l2c);
    free(tok);
}

augur_status tokenizer_encode(const tokenizer *tok, const char *text, size_t len, bool add_special,
                              int32_t **ids, size_t *n_ids, augur_error *err)
{
    if (!tok || !ids || !n_ids || (!text && len))
        return augur_fail(err, AUGUR_E_INPUT, "tokenizer_encode: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    tok_ids out = {0};
    augur_status st = tok->hf ? tok_hf_encode(tok->hf, text ? text : "", len, add_special, &out, err)
                              : tok_l2c_encode(tok->l2c, text ? text : "", len, add_special, &out, err);
    if (st != AUGUR_OK) {
        tok_ids_free(&out);
        return st;
    }
    /* An empty result is still a valid allocation, so callers can free() uniformly. */
    if (!out.v && !(out.v = malloc(sizeof *out.v)))
        return augur_fail(err, AUGUR_E_NOMEM, "tokenizer_encode: out of memory");
    *ids = out.v;
    *n_ids = out.n;
    return AUGUR_OK;
}

augur_status tokenizer_decode(const tokenizer *tok, const int32_t *ids, size_t n_ids, bool skip_special,
                              char **text, augur_error *err)
{
    if (!tok || !text || (!ids && n_ids))
        return augur_fail(err, AUGUR_E_INPUT, "tokenizer_decode: NULL argument");
    *text = NULL;
    tok_buf out = {0};
    augur_status st = tok->hf ? tok_hf_decode(tok->hf, ids, n_ids, skip_special, &out, err)
                              : tok_l2c_decode(tok->l2c, ids, n_ids, skip_special, &out, err);
    if (st == AUGUR_OK && !out.data && !tok_buf_append(&out, "", 0))
        st = augur_fail(err, AUGUR_E_NOMEM, "tokenizer_decode: out of memory");
    if (st != AUGUR_OK) {
        tok_buf_free(&out);
        return st;
    }
    *text = out.data;
    return AUGUR_OK;
}

int tokenizer_vocab_size(const tokenizer *tok)
{
    if (!tok)
        return 0;
    return tok->hf ? tok_hf_vocab_size(tok->hf) : tok_l2c_vocab_size(tok->l2c);
}

int tokenizer_bos_id(const tokenizer *tok)
{
    if (!tok)
        return -1;
    return tok->hf ? tok_hf_bos(tok->hf) : TOK_L2C_BOS;
}

int tokenizer_eos_id(const tokenizer *tok)
{
    if (!tok)
        return -1;
    return tok->hf ? tok_hf_eos(tok->hf) : TOK_L2C_EOS;
}

bool tokenizer_is_special(const tokenizer *tok, int32_t id)
{
    if (!tok)
        return false;
    return tok->hf ? tok_hf_is_special(tok->hf, id) : tok_l2c_is_special(tok->l2c, id);
}

size_t tokenizer_max_piece_bytes(const tokenizer *tok)
{
    if (!tok)
        return 0;
    size_t raw = tok->hf ? tok_hf_max_piece(tok->hf) : tok_l2c_max_piece(tok->l2c);
    /* Worst case every raw byte, plus a held-back prefix, turns into a 3-byte U+FFFD. */
    return 3 * (raw + sizeof ((detok_stream *)0)->pending) + 1;
}

/* ---------------------------------------------------------------- streaming */

/* The public struct has no field for the llama2.c rule "strip the space after BOS",
 * so the last byte of pending (never used by UTF-8, which holds back at most 3)
 * remembers whether the previous id was BOS. */
#define DS_FLAG_AT (sizeof ((detok_stream *)0)->pending - 1)
#define DS_AFTER_BOS 1u

void detok_stream_init(detok_stream *ds, const tokenizer *tok, bool skip_special)
{
    memset(ds, 0, sizeof *ds);
    ds->tok = tok;
    ds->skip_special = skip_special;
}

typedef struct {
    char *out;
    size_t cap, len;
} sink;

/* Writes whole characters only: a caller's short buffer truncates at a character
 * boundary rather than splitting one. */
static bool emit_to_sink(void *ctx, const char *p, size_t n)
{
    sink *s = ctx;
    if (s->cap && s->len + n + 1 <= s->cap) {
        memcpy(s->out + s->len, p, n);
        s->len += n;
        s->out[s->len] = '\0';
    }
    return true;
}

size_t detok_stream_push(detok_stream *ds, int32_t id, char *out, size_t cap)
{
    sink s = {out, cap, 0};
    if (out && cap)
        out[0] = '\0';
    if (!ds || !ds->tok)
        return 0;
    const tokenizer *tok = ds->tok;
    tok_buf piece = {0};
    int r;
    if (tok->hf) {
        r = tok_hf_piece(tok->hf, id, ds->n_emitted_tokens == 0, ds->skip_special, &piece);
    } else {
        bool after_bos = ds->pending[DS_FLAG_AT] & DS_AFTER_BOS;
        r = tok_l2c_piece(tok->l2c, id, after_bos, ds->skip_special, &piece);
        ds->pending[DS_FLAG_AT] = id == TOK_L2C_BOS ? DS_AFTER_BOS : 0;
    }
    if (r > 0) {
        ds->n_emitted_tokens++;
        utf8_asm a = {ds->pending, &ds->n_pending};
        for (size_t i = 0; i < piece.len; i++)
            asm_byte(&a, (unsigned char)piece.data[i], emit_to_sink, &s);
    }
    tok_buf_free(&piece);
    return s.len;
}

size_t detok_stream_flush(detok_stream *ds, char *out, size_t cap)
{
    sink s = {out, cap, 0};
    if (out && cap)
        out[0] = '\0';
    if (!ds)
        return 0;
    utf8_asm a = {ds->pending, &ds->n_pending};
    asm_finish(&a, emit_to_sink, &s);
    return s.len;
}
