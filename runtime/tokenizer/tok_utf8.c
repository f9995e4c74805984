/* UTF-8 for the tokenizer (see tok_utf8.h). utf8proc_iterate accepts exactly the
 * well-formed sequences of Unicode table 3-7, so validation and decoding use it;
 * the lossy assembler needs to know whether a *prefix* can still become
 * well-formed, which utf8proc does not say, so it reads the same table itself. */
#include "runtime/tokenizer/tok_utf8.h"

#include <utf8proc.h>

size_t tok_utf8_seq_len(const char *s, size_t n)
{
    if (n && (unsigned char)s[0] < 0x80) /* most text: spare the library call */
        return 1;
    utf8proc_int32_t cp;
    utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &cp);
    return r > 0 ? (size_t)r : 0;
}

size_t tok_utf8_check(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = tok_utf8_seq_len(s + i, n - i);
        if (!l)
            return i;
        i += l;
    }
    return n;
}

uint32_t tok_utf8_decode(const char *s, size_t n, size_t *adv)
{
    if (n && (unsigned char)s[0] < 0x80) {
        *adv = 1;
        return (unsigned char)s[0];
    }
    utf8proc_int32_t cp;
    utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &cp);
    if (r <= 0) {
        *adv = 1;
        return 0xFFFD;
    }
    *adv = (size_t)r;
    return (uint32_t)cp;
}

size_t tok_utf8_prev(const char *s, size_t lo, size_t e)
{
    size_t b = e - 1;
    while (b > lo && ((unsigned char)s[b] & 0xC0) == 0x80)
        b--;
    return b;
}

size_t tok_utf8_encode(uint32_t cp, char out[4])
{
    if (cp > 0x10FFFF)
        return 0;
    return (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)out);
}

/* ---------------------------------------------------------------- lossy */

/* Unicode table 3-7: for each range of lead bytes, the sequence length and the
 * range of the second byte; any later byte is 80..BF. */
typedef struct {
    unsigned char lead_lo, lead_hi, len, second_lo, second_hi;
} utf8_row;

static const utf8_row WELL_FORMED[] = {
    {0x00, 0x7F, 1, 0x00, 0x00}, {0xC2, 0xDF, 2, 0x80, 0xBF}, {0xE0, 0xE0, 3, 0xA0, 0xBF},
    {0xE1, 0xEC, 3, 0x80, 0xBF}, {0xED, 0xED, 3, 0x80, 0x9F}, {0xEE, 0xEF, 3, 0x80, 0xBF},
    {0xF0, 0xF0, 4, 0x90, 0xBF}, {0xF1, 0xF3, 4, 0x80, 0xBF}, {0xF4, 0xF4, 4, 0x80, 0x8F},
};

/* The row of lead byte c; NULL when c cannot start a sequence. */
static const utf8_row *row_of(unsigned char c)
{
    for (size_t i = 0; i < sizeof WELL_FORMED / sizeof WELL_FORMED[0]; i++)
        if (c >= WELL_FORMED[i].lead_lo && c <= WELL_FORMED[i].lead_hi)
            return &WELL_FORMED[i];
    return NULL;
}

static const char REPLACEMENT[] = "\xEF\xBF\xBD";

/* When the next byte cannot continue the pending prefix, that prefix (a "maximal
 * subpart") becomes one U+FFFD and the byte is looked at afresh. */
bool tok_utf8_asm_byte(tok_utf8_asm *a, unsigned char b, tok_emit_fn emit, void *ctx)
{
    for (;;) {
        size_t k = *a->n_pending;
        if (k == 0) {
            const utf8_row *r = row_of(b);
            if (!r)
                return emit(ctx, REPLACEMENT, 3);
            if (r->len == 1)
                return emit(ctx, (const char *)&b, 1);
            a->pending[0] = b;
            *a->n_pending = 1;
            return true;
        }
        const utf8_row *r = row_of(a->pending[0]);
        bool ok = k == 1 ? b >= r->second_lo && b <= r->second_hi : b >= 0x80 && b <= 0xBF;
        if (!ok) {
            *a->n_pending = 0;
            if (!emit(ctx, REPLACEMENT, 3))
                return false;
            continue; /* reprocess b as the start of something new */
        }
        a->pending[k++] = b;
        if (k == r->len) {
            *a->n_pending = 0;
            return emit(ctx, (const char *)a->pending, k);
        }
        *a->n_pending = k;
        return true;
    }
}

bool tok_utf8_asm_finish(tok_utf8_asm *a, tok_emit_fn emit, void *ctx)
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
    tok_utf8_asm a = {pending, &n_pending};
    for (size_t i = valid; i < n; i++)
        if (!tok_utf8_asm_byte(&a, (unsigned char)s[i], emit_to_buf, out))
            return false;
    return tok_utf8_asm_finish(&a, emit_to_buf, out);
}
