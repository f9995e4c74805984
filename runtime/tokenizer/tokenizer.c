/* Tokenizer front end: picks the back end from the file's content, forwards calls
 * through its table (tok_backend.h), and turns its raw pieces into whole UTF-8
 * characters for the streaming decoder. */
#include "runtime/tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer/tok_backend.h"
#include "runtime/tokenizer/tok_utf8.h"

struct tokenizer {
    const tok_backend *be;
    void *impl;
};

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
    tok->be = json ? &tok_hf_backend : &tok_l2c_backend;
    if (len == 0)
        st = augur_fail(err, AUGUR_E_FORMAT, "tokenizer '%s': file is empty", path);
    else if ((st = tok->be->load(&tok->impl, path, data, len, vocab_hint, err)) == AUGUR_E_FORMAT && !json)
        augur_wrap(err, "tokenizer '%s': not a tokenizer.json (no JSON object) and not a llama2.c tokenizer.bin",
                   path);
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
    tok->be->free(tok->impl);
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
    augur_status st = tok->be->encode(tok->impl, text ? text : "", len, add_special, &out, err);
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
    augur_status st = tok->be->decode(tok->impl, ids, n_ids, skip_special, &out, err);
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
    return tok->be->vocab_size(tok->impl);
}

int tokenizer_bos_id(const tokenizer *tok)
{
    if (!tok)
        return -1;
    return tok->be->bos(tok->impl);
}

int tokenizer_eos_id(const tokenizer *tok)
{
    if (!tok)
        return -1;
    return tok->be->eos(tok->impl);
}

bool tokenizer_is_special(const tokenizer *tok, int32_t id)
{
    if (!tok)
        return false;
    return tok->be->is_special(tok->impl, id);
}

size_t tokenizer_max_piece_bytes(const tokenizer *tok)
{
    if (!tok)
        return 0;
    size_t raw = tok->be->max_piece(tok->impl);
    /* Worst case every raw byte, plus a held-back prefix, turns into a 3-byte U+FFFD. */
    return 3 * (raw + sizeof ((detok_stream *)0)->pending) + 1;
}

/* ---------------------------------------------------------------- streaming */

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
    tok_stream_pos pos = {ds->n_emitted_tokens == 0, ds->after_bos};
    int r = tok->be->piece(tok->impl, id, pos, ds->skip_special, &piece);
    ds->after_bos = id == tok->be->bos(tok->impl);
    if (r > 0) {
        ds->n_emitted_tokens++;
        tok_utf8_asm a = {ds->pending, &ds->n_pending};
        for (size_t i = 0; i < piece.len; i++)
            tok_utf8_asm_byte(&a, (unsigned char)piece.data[i], emit_to_sink, &s);
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
    tok_utf8_asm a = {ds->pending, &ds->n_pending};
    tok_utf8_asm_finish(&a, emit_to_sink, &s);
    return s.len;
}
