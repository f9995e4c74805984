/* Hugging Face tokenizer.json with a BPE model. The encode pipeline mirrors the
 * `tokenizers` library step for step, because the goal is bit-identical ids:
 *   1. added tokens that are not "normalized" are cut out of the raw text;
 *   2. every remaining piece is normalized on its own, then the "normalized" added
 *      tokens are cut out of it;
 *   3. the pre-tokenizers split (and for ByteLevel / Metaspace, rewrite) pieces;
 *   4. the BPE model turns each piece into ids;
 *   5. the post-processor adds BOS/EOS-like tokens when asked.
 * Empty pieces are dropped after every split, as the library does. */
#include <jansson.h>
#include <oniguruma.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "runtime/tokenizer/tok_backend.h"
#include "runtime/tokenizer/tok_utf8.h"

/* ======================================================================
 * Errors at load time name the file and the JSON field at fault.
 * ====================================================================== */

typedef struct {
    const char *path;
    augur_error *err;
} hf_ctx;

static augur_status fail(const hf_ctx *c, augur_status code, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static augur_status fail(const hf_ctx *c, augur_status code, const char *where, const char *fmt, ...)
{
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return augur_fail(c->err, code, "tokenizer.json '%s': %s: %s", c->path, where, msg);
}

static augur_status oom(const hf_ctx *c, const char *where)
{
    return fail(c, AUGUR_E_NOMEM, where, "out of memory");
}

static char *dup_bytes(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* String member of an object; NULL when absent or not a string. */
static const char *jstr(const json_t *o, const char *key, size_t *len)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return NULL;
    if (len)
        *len = json_string_length(v);
    return json_string_value(v);
}

static bool jbool(const json_t *o, const char *key, bool dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* ======================================================================
 * Unicode classes the library relies on (Rust's char methods).
 * ====================================================================== */

/* char::is_whitespace, i.e. the White_Space property. */
static bool is_ws(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* char::is_numeric: general categories Nd, Nl, No. */
static bool is_numeric(uint32_t c)
{
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

/* Rust regex's Unicode \w, used by added tokens' single_word check. */
static bool is_word(uint32_t c)
{
    if (c == 0x200C || c == 0x200D)
        return true;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return false;
    }
}

/* Code point that ends at byte e of valid UTF-8 text s. */
static uint32_t last_cp(const char *s, size_t e)
{
    size_t b = tok_utf8_prev(s, 0, e), adv;
    return tok_utf8_decode(s + b, e - b, &adv);
}

/* ======================================================================
 * Patterns: a literal string, a regex, or a per-character predicate. Every
 * split in the library goes through one of these, producing spans that cover
 * the whole input, each flagged as a match or not.
 * ====================================================================== */

typedef enum { PAT_LITERAL, PAT_REGEX, PAT_CHAR, PAT_NUMERIC, PAT_SPACE } pat_kind;

typedef struct {
    pat_kind kind;
    char *lit; /* PAT_LITERAL */
    size_t lit_len;
    uint32_t ch; /* PAT_CHAR */
    regex_t *re;
} hf_pattern;

typedef struct {
    size_t s, e;
    bool match;
} hf_span;

typedef struct {
    hf_span *v;
    size_t n, cap;
} hf_spans;

/* Per-call scratch and error sink (the tokenizer itself stays read-only). */
typedef struct {
    augur_error *err;
    OnigRegion *md; /* created at the first regex match */
    hf_spans spans, spans2;
} hf_run;

static void run_free(hf_run *run)
{
    free(run->spans.v);
    free(run->spans2.v);
    if (run->md)
        onig_region_free(run->md, 1);
}

static bool spans_push(hf_spans *a, size_t s, size_t e, bool match)
{
    hf_span *v = tok_grow(a->v, a->n, &a->cap, sizeof *v, 32);
    if (!v)
        return false;
    a->v = v;
    a->v[a->n++] = (hf_span){s, e, match};
    return true;
}

static void pattern_free(hf_pattern *p)
{
    free(p->lit);
    if (p->re)
        onig_free(p->re);
    memset(p, 0, sizeof *p);
}

/* Regexes in tokenizer.json are Oniguruma's, since the library compiles them with
 * the onig crate (Oniguruma's default syntax, UTF-8, no options), so they run on
 * Oniguruma itself rather than on a translation into another dialect. PCRE2 with
 * JIT was ~1.5x faster on bulk encoding, but its \w, \s, (?i) and property names
 * differ in corners that a translation could only approximate. */
static pthread_once_t onig_once = PTHREAD_ONCE_INIT;
static int onig_init_rc;

static void onig_setup(void)
{
    OnigEncoding enc[] = {ONIG_ENCODING_UTF8};
    onig_init_rc = onig_initialize(enc, 1);
}

static augur_status compile_regex(const hf_ctx *c, const char *where, const char *pat, size_t n, regex_t **out)
{
    pthread_once(&onig_once, onig_setup);
    if (onig_init_rc != ONIG_NORMAL)
        return fail(c, AUGUR_E_INTERNAL, where, "Oniguruma failed to initialise (%d)", onig_init_rc);
    OnigErrorInfo info;
    const OnigUChar *p = (const OnigUChar *)pat;
    int rc = onig_new(out, p, p + n, ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &info);
    if (rc != ONIG_NORMAL) {
        *out = NULL;
        OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, rc, &info);
        return fail(c, AUGUR_E_FORMAT, where, "regex /%.*s/ does not compile: %s", (int)n, pat, (const char *)msg);
    }
    return AUGUR_OK;
}

/* Parses {"String": "..."} or {"Regex": "..."}. */
static augur_status parse_pattern(const hf_ctx *c, const json_t *o, const char *where, hf_pattern *p)
{
    memset(p, 0, sizeof *p);
    size_t n;
    const char *s;
    if ((s = jstr(o, "String", &n))) {
        p->kind = PAT_LITERAL;
        p->lit = dup_bytes(s, n);
        p->lit_len = n;
        return p->lit ? AUGUR_OK : oom(c, where);
    }
    if ((s = jstr(o, "Regex", &n))) {
        p->kind = PAT_REGEX;
        return compile_regex(c, where, s, n, &p->re);
    }
    return fail(c, AUGUR_E_FORMAT, where, "pattern must be {\"String\": ...} or {\"Regex\": ...}");
}

/* The first match in s[from..n) (look-behind sees all of s): *ms = *me = n + 1
 * when there is none. */
static augur_status regex_next(regex_t *re, const char *s, size_t n, size_t from, hf_run *run, size_t *ms,
                               size_t *me)
{
    if (!run->md && !(run->md = onig_region_new()))
        return augur_fail(run->err, AUGUR_E_NOMEM, "tokenizer: out of memory");
    const OnigUChar *u = (const OnigUChar *)s;
    int rc = onig_search(re, u, u + n, u + from, u + n, run->md, ONIG_OPTION_NONE);
    if (rc < 0 && rc != ONIG_MISMATCH) {
        OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, rc);
        return augur_fail(run->err, AUGUR_E_INTERNAL, "tokenizer: regex match failed: %s", (const char *)msg);
    }
    *ms = rc == ONIG_MISMATCH ? n + 1 : (size_t)run->md->beg[0];
    *me = rc == ONIG_MISMATCH ? n + 1 : (size_t)run->md->end[0];
    return AUGUR_OK;
}

/* Spans covering s, matches flagged (the library's Pattern::find_matches). */
static augur_status find_matches(const hf_pattern *p, const char *s, size_t n, hf_run *run, hf_spans *out)
{
    out->n = 0;
    bool ok = true;
    if (n == 0)
        return spans_push(out, 0, 0, false) ? AUGUR_OK
                                            : augur_fail(run->err, AUGUR_E_NOMEM, "tokenizer: out of memory");
    size_t prev = 0;
    switch (p->kind) {
    case PAT_REGEX: {
        /* Like the onig crate's find_iter: an empty match right where the previous
         * match ended is skipped by stepping one character. */
        size_t pos = 0;
        bool have_last = false;
        size_t last_end = 0;
        while (ok && pos <= n) {
            size_t ms = 0, me = 0;
            augur_status st = regex_next(p->re, s, n, pos, run, &ms, &me);
            if (st != AUGUR_OK)
                return st;
            if (ms > n)
                break;
            if (ms == me && have_last && last_end == me) {
                if (pos >= n)
                    break;
                size_t adv = tok_utf8_seq_len(s + pos, n - pos);
                pos += adv ? adv : 1;
                continue;
            }
            if (prev != ms)
                ok = spans_push(out, prev, ms, false);
            if (ok)
                ok = spans_push(out, ms, me, true);
            prev = me;
            pos = me;
            have_last = true;
            last_end = me;
        }
        break;
    }
    case PAT_LITERAL: {
        if (p->lit_len == 0)
            break;
        size_t pos = 0;
        while (ok && pos + p->lit_len <= n) {
            const char *hit = memmem(s + pos, n - pos, p->lit, p->lit_len);
            if (!hit)
                break;
            size_t ms = (size_t)(hit - s);
            if (prev != ms)
                ok = spans_push(out, prev, ms, false);
            if (ok)
                ok = spans_push(out, ms, ms + p->lit_len, true);
            prev = pos = ms + p->lit_len;
        }
        break;
    }
    default: {
        /* Character predicates: every matching character is its own match. */
        for (size_t i = 0; ok && i < n;) {
            size_t adv;
            uint32_t cp = tok_utf8_decode(s + i, n - i, &adv);
            bool m = p->kind == PAT_CHAR ? cp == p->ch : p->kind == PAT_NUMERIC ? is_numeric(cp) : is_ws(cp);
            if (m) {
                if (prev < i)
                    ok = spans_push(out, prev, i, false);
                if (ok)
                    ok = spans_push(out, i, i + adv, true);
                prev = i + adv;
            }
            i += adv;
        }
        break;
    }
    }
    if (ok && prev != n)
        ok = spans_push(out, prev, n, false);
    return ok ? AUGUR_OK : augur_fail(run->err, AUGUR_E_NOMEM, "tokenizer: out of memory");
}

/* ======================================================================
 * Piece lists: the pipeline's working set. Bytes live in one buffer; a piece
 * is either text (id < 0) or an already-resolved added token.
 * ====================================================================== */

typedef struct {
    size_t off, len;
    int32_t id;
    bool at_start; /* begins at offset 0 of the original text (Metaspace "first") */
} hf_piece;

typedef struct {
    tok_buf b;
    hf_piece *v;
    size_t n, cap;
} hf_pieces;

static bool pieces_add(hf_pieces *p, const char *s, size_t n, int32_t id, bool at_start)
{
    hf_piece *v = tok_grow(p->v, p->n, &p->cap, sizeof *v, 32);
    if (!v)
        return false;
    p->v = v;
    size_t off = p->b.len;
    if (n && !tok_buf_append(&p->b, s, n))
        return false;
    p->v[p->n++] = (hf_piece){off, n, id, at_start};
    return true;
}

/* Records the bytes appended to p->b since offset off as one text piece. */
static bool pieces_add_tail(hf_pieces *p, size_t off, bool at_start)
{
    size_t n = p->b.len - off;
    p->b.len = off;
    if (!pieces_add(p, NULL, 0, -1, at_start))
        return false;
    p->b.len = off + n;
    p->v[p->n - 1].len = n;
    return true;
}

static void pieces_clear(hf_pieces *p)
{
    p->n = 0;
    p->b.len = 0;
}

static void pieces_free(hf_pieces *p)
{
    tok_buf_free(&p->b);
    free(p->v);
    memset(p, 0, sizeof *p);
}

static const char *piece_text(const hf_pieces *p, size_t i)
{
    return p->b.data ? p->b.data + p->v[i].off : "";
}

typedef enum { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS } hf_behavior;

/* NormalizedString::split: regroups the spans per behaviour, then keeps the
 * non-empty, non-removed ones. */
static augur_status split_spans(hf_run *run, const hf_spans *in, hf_behavior beh, const char *s, bool at_start,
                                hf_pieces *out)
{
    hf_spans *g = &run->spans2;
    g->n = 0;
    bool ok = true;
    bool prev_match = false;
    switch (beh) {
    case B_ISOLATED:
    case B_REMOVED:
        for (size_t i = 0; ok && i < in->n; i++)
            ok = spans_push(g, in->v[i].s, in->v[i].e, beh == B_REMOVED && in->v[i].match);
        break;
    case B_CONTIGUOUS:
        for (size_t i = 0; ok && i < in->n; i++) {
            if (in->v[i].match == prev_match && g->n)
                g->v[g->n - 1].e = in->v[i].e;
            else
                ok = spans_push(g, in->v[i].s, in->v[i].e, false);
            prev_match = in->v[i].match;
        }
        break;
    case B_MERGED_PREV:
        for (size_t i = 0; ok && i < in->n; i++) {
            if (in->v[i].match && !prev_match && g->n)
                g->v[g->n - 1].e = in->v[i].e;
            else
                ok = spans_push(g, in->v[i].s, in->v[i].e, false);
            prev_match = in->v[i].match;
        }
        break;
    case B_MERGED_NEXT:
        for (size_t i = in->n; ok && i-- > 0;) {
            if (in->v[i].match && !prev_match && g->n)
                g->v[g->n - 1].s = in->v[i].s;
            else
                ok = spans_push(g, in->v[i].s, in->v[i].e, false);
            prev_match = in->v[i].match;
        }
        for (size_t i = 0; i < g->n / 2; i++) {
            hf_span t = g->v[i];
            g->v[i] = g->v[g->n - 1 - i];
            g->v[g->n - 1 - i] = t;
        }
        break;
    }
    for (size_t i = 0; ok && i < g->n; i++)
        if (!g->v[i].match && g->v[i].e > g->v[i].s)
            ok = pieces_add(out, s + g->v[i].s, g->v[i].e - g->v[i].s, -1, at_start && g->v[i].s == 0);
    return ok ? AUGUR_OK : augur_fail(run->err, AUGUR_E_NOMEM, "tokenizer: out of memory");
}

static augur_status split_with(hf_run *run, const hf_pattern *p, hf_behavior beh, bool invert, const char *s,
                               size_t n, bool at_start, hf_pieces *out)
{
    augur_status st = find_matches(p, s, n, run, &run->spans);
    if (st != AUGUR_OK)
        return st;
    if (invert)
        for (size_t i = 0; i < run->spans.n; i++)
            run->spans.v[i].match = !run->spans.v[i].match;
    return split_spans(run, &run->spans, beh, s, at_start, out);
}

/* ======================================================================
 * Pipeline steps in tokenizer.json: each of normalizer, pre_tokenizer, decoder and
 * post_processor is one step object or a tree of {"type": "Sequence", <list>: [...]}.
 * The library runs a nested Sequence's steps in order, so every one is parsed into
 * a flat list.
 * ====================================================================== */

/* Parses one step object o, whose "type" is not "Sequence", into out. */
typedef augur_status (*hf_step_fn)(const hf_ctx *c, const json_t *o, const char *type, const char *where,
                                   void *out);

static augur_status walk_steps(const hf_ctx *c, const json_t *o, const char *where, const char *list_key,
                               hf_step_fn step, void *out)
{
    if (!o || json_is_null(o))
        return AUGUR_OK;
    const char *type = jstr(o, "type", NULL);
    if (!json_is_object(o) || !type)
        return fail(c, AUGUR_E_FORMAT, where, "expected an object with a \"type\"");
    if (strcmp(type, "Sequence"))
        return step(c, o, type, where, out);
    json_t *arr = json_object_get(o, list_key);
    if (!json_is_array(arr))
        return fail(c, AUGUR_E_FORMAT, where, "Sequence without a \"%s\" array", list_key);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        char sub[256];
        if (snprintf(sub, sizeof sub, "%s.%s[%zu]", where, list_key, i) >= (int)sizeof sub)
            return fail(c, AUGUR_E_UNSUPPORTED, where, "Sequences nested too deeply");
        augur_status st = walk_steps(c, json_array_get(arr, i), sub, list_key, step, out);
        if (st != AUGUR_OK)
            return st;
    }
    return AUGUR_OK;
}

/* A step's "content" string (copied to *content) and "pattern", as Replace has. */
static augur_status parse_replace(const hf_ctx *c, const json_t *o, const char *where, char **content,
                                  size_t *len, hf_pattern *pat)
{
    const char *s = jstr(o, "content", len);
    if (!s)
        return fail(c, AUGUR_E_FORMAT, where, "Replace without a \"content\" string");
    if (!(*content = dup_bytes(s, *len)))
        return oom(c, where);
    char sub[256];
    snprintf(sub, sizeof sub, "%s.pattern", where);
    return parse_pattern(c, json_object_get(o, "pattern"), sub, pat);
}

/* Appends s with every match of pat replaced by with. */
static augur_status replace_matches(const hf_pattern *pat, const char *with, size_t with_len, hf_run *run,
                                    const char *s, size_t n, tok_buf *out)
{
    augur_status st = find_matches(pat, s, n, run, &run->spans);
    bool ok = true;
    for (size_t i = 0; st == AUGUR_OK && ok && i < run->spans.n; i++) {
        const hf_span *sp = &run->spans.v[i];
        ok = sp->match ? tok_buf_append(out, with, with_len) : tok_buf_append(out, s + sp->s, sp->e - sp->s);
    }
    return st != AUGUR_OK || ok ? st : augur_fail(run->err, AUGUR_E_NOMEM, "tokenizer: out of memory");
}

/* ======================================================================
 * Normalizers.
 * ====================================================================== */

typedef enum { N_PREPEND, N_REPLACE, N_NFC, N_NFD, N_NFKC, N_NFKD, N_LOWERCASE, N_STRIP, N_STRIP_ACCENTS } norm_kind;

typedef struct {
    norm_kind kind;
    char *str; /* prepend text / replacement content */
    size_t str_len;
    hf_pattern pat;
    bool left, right;
} hf_norm;

typedef struct {
    void *v;
    size_t n, cap;
} vec;

static void *vec_add(vec *a, size_t elem)
{
    void *v = tok_grow(a->v, a->n, &a->cap, elem, 4);
    if (!v)
        return NULL;
    a->v = v;
    void *slot = (char *)a->v + a->n++ * elem;
    memset(slot, 0, elem);
    return slot;
}

static augur_status parse_normalizer(const hf_ctx *c, const json_t *o, const char *type, const char *where,
                                     void *out_vec)
{
    vec *out = out_vec;
    static const struct {
        const char *name;
        norm_kind kind;
    } simple[] = {{"NFC", N_NFC}, {"NFD", N_NFD}, {"NFKC", N_NFKC}, {"NFKD", N_NFKD},
                  {"Lowercase", N_LOWERCASE}, {"StripAccents", N_STRIP_ACCENTS}};
    hf_norm *n = vec_add(out, sizeof *n);
    if (!n)
        return oom(c, where);
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
        if (!strcmp(type, simple[i].name)) {
            n->kind = simple[i].kind;
            return AUGUR_OK;
        }
    size_t len;
    const char *s;
    if (!strcmp(type, "Prepend")) {
        n->kind = N_PREPEND;
        if (!(s = jstr(o, "prepend", &len)))
            return fail(c, AUGUR_E_FORMAT, where, "Prepend without a \"prepend\" string");
        n->str = dup_bytes(s, len);
        n->str_len = len;
        return n->str ? AUGUR_OK : oom(c, where);
    }
    if (!strcmp(type, "Replace")) {
        n->kind = N_REPLACE;
        return parse_replace(c, o, where, &n->str, &n->str_len, &n->pat);
    }
    if (!strcmp(type, "Strip")) {
        n->kind = N_STRIP;
        n->left = jbool(o, "strip_left", true);
        n->right = jbool(o, "strip_right", true);
        return AUGUR_OK;
    }
    out->n--; /* nothing to free in the unused slot */
    return fail(c, AUGUR_E_UNSUPPORTED, where, "normalizer type '%s' is not supported", type);
}

static void norms_free(vec *v)
{
    hf_norm *a = v->v;
    for (size_t i = 0; i < v->n; i++) {
        free(a[i].str);
        pattern_free(&a[i].pat);
    }
    free(v->v);
}

static bool utf8proc_apply(tok_buf *out, const char *s, size_t n, utf8proc_option_t opt)
{
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, opt);
    if (r < 0)
        return false;
    bool ok = tok_buf_append(out, dst, (size_t)r);
    free(dst);
    return ok;
}

static augur_status norm_step(const hf_norm *nm, hf_run *run, const char *s, size_t n, tok_buf *out)
{
    bool ok = true;
    switch (nm->kind) {
    case N_PREPEND:
        if (n)
            ok = tok_buf_append(out, nm->str, nm->str_len);
        ok = ok && tok_buf_append(out, s, n);
        break;
    case N_REPLACE:
        return replace_matches(&nm->pat, nm->str, nm->str_len, run, s, n, out);
    case N_NFC: ok = utf8proc_apply(out, s, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE); break;
    case N_NFD: ok = utf8proc_apply(out, s, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE); break;
    case N_NFKC: ok = utf8proc_apply(out, s, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT); break;
    case N_NFKD: ok = utf8proc_apply(out, s, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT); break;
    case N_LOWERCASE:
    case N_STRIP_ACCENTS:
        for (size_t i = 0; ok && i < n;) {
            size_t adv;
            uint32_t cp = tok_utf8_decode(s + i, n - i, &adv);
            char enc[4];
            if (nm->kind == N_STRIP_ACCENTS) {
                utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
                if (cat != UTF8PROC_CATEGORY_MN && cat != UTF8PROC_CATEGORY_MC && cat != UTF8PROC_CATEGORY_ME)
                    ok = tok_buf_append(out, s + i, adv);
            } else if (cp == 0x130) {
                /* The one unconditional multi-character lowercase mapping. */
                ok = tok_buf_append(out, "i\xCC\x87", 3);
            } else {
                ok = tok_buf_append(out, enc, tok_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), enc));
            }
            i += adv;
        }
        break;
    case N_STRIP: {
        size_t b = 0, e = n;
        while (nm->left && b < e) {
            size_t adv;
            if (!is_ws(tok_utf8_decode(s + b, e - b, &adv)))
                break;
            b += adv;
        }
        while (nm->right && e > b && is_ws(last_cp(s, e)))
            e = tok_utf8_prev(s, b, e);
        ok = tok_buf_append(out, s + b, e - b);
        break;
    }
    }
    return ok ? AUGUR_OK : augur_fail(run->err, AUGUR_E_NOMEM, "tokenizer: out of memory normalizing");
}

/* Runs all normalizers over s into out (which is cleared first). */
static augur_status normalize(const hf_norm *steps, size_t n_steps, hf_run *run, const char *s, size_t n,
                              tok_buf *out)
{
    out->len = 0;
    if (n_steps == 0)
        return tok_buf_append(out, s, n) ? AUGUR_OK : augur_fail(run->err, AUGUR_E_NOMEM, "tokenizer: out of memory");
    tok_buf tmp = {0};
    augur_status st = AUGUR_OK;
    if (!tok_buf_append(&tmp, s, n))
        st = augur_fail(run->err, AUGUR_E_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; st == AUGUR_OK && i < n_steps; i++) {
        out->len = 0;
        st = norm_step(&steps[i], run, tmp.data ? tmp.data : "", tmp.len, out);
        if (st == AUGUR_OK && i + 1 < n_steps) {
            tmp.len = 0;
            if (!tok_buf_append(&tmp, out->data ? out->data : "", out->len))
                st = augur_fail(run->err, AUGUR_E_NOMEM, "tokenizer: out of memory");
        }
    }
    tok_buf_free(&tmp);
    return st;
}

/* ======================================================================
 * Pre-tokenizers (flattened like normalizers).
 * ====================================================================== */

typedef enum { P_SPLIT, P_BYTELEVEL, P_METASPACE } pt_kind;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } prepend_scheme;

typedef struct {
    pt_kind kind;
    hf_pattern pat;    /* P_SPLIT; P_METASPACE's split character */
    hf_behavior beh;
    bool invert;
    bool add_prefix_space, use_regex; /* P_BYTELEVEL */
    char repl[8];      /* P_METASPACE */
    size_t repl_len;
    prepend_scheme prepend;
    bool split;
} hf_pretok;

/* GPT-2's pre-tokenizer regex, used by ByteLevel when use_regex is set. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static augur_status parse_prepend_scheme(const hf_ctx *c, const json_t *o, const char *where, prepend_scheme *ps)
{
    const char *s = jstr(o, "prepend_scheme", NULL);
    if (!s) {
        /* Files written before prepend_scheme existed say add_prefix_space. */
        *ps = jbool(o, "add_prefix_space", true) ? PREPEND_ALWAYS : PREPEND_NEVER;
        return AUGUR_OK;
    }
    if (!strcmp(s, "always"))
        *ps = PREPEND_ALWAYS;
    else if (!strcmp(s, "first"))
        *ps = PREPEND_FIRST;
    else if (!strcmp(s, "never"))
        *ps = PREPEND_NEVER;
    else
        return fail(c, AUGUR_E_FORMAT, where, "prepend_scheme '%s' is not always/first/never", s);
    return AUGUR_OK;
}

static augur_status parse_replacement(const hf_ctx *c, const json_t *o, const char *where, char *buf,
                                      size_t *len, uint32_t *cp)
{
    size_t n;
    const char *s = jstr(o, "replacement", &n);
    if (!s)
        s = jstr(o, "str_rep", &n);
    if (!s) {
        s = "\xE2\x96\x81"; /* U+2581, the library's default */
        n = 3;
    }
    size_t adv = tok_utf8_seq_len(s, n);
    if (!adv || adv != n)
        return fail(c, AUGUR_E_FORMAT, where, "replacement must be a single character");
    memcpy(buf, s, n);
    *len = n;
    *cp = tok_utf8_decode(s, n, &adv);
    return AUGUR_OK;
}

static augur_status parse_pretok(const hf_ctx *c, const json_t *o, const char *type, const char *where,
                                 void *out_vec)
{
    vec *out = out_vec;
    char sub[256];
    hf_pretok *p = vec_add(out, sizeof *p);
    if (!p)
        return oom(c, where);
    if (!strcmp(type, "Split")) {
        p->kind = P_SPLIT;
        p->invert = jbool(o, "invert", false);
        const char *b = jstr(o, "behavior", NULL);
        static const struct {
            const char *name;
            hf_behavior beh;
        } behs[] = {{"Removed", B_REMOVED}, {"Isolated", B_ISOLATED}, {"MergedWithPrevious", B_MERGED_PREV},
                    {"MergedWithNext", B_MERGED_NEXT}, {"Contiguous", B_CONTIGUOUS}};
        size_t k = 0;
        while (b && k < sizeof behs / sizeof behs[0] && strcmp(b, behs[k].name))
            k++;
        if (!b || k == sizeof behs / sizeof behs[0])
            return fail(c, AUGUR_E_FORMAT, where, "Split behavior '%s' is not one of Removed, Isolated, "
                        "MergedWithPrevious, MergedWithNext, Contiguous", b ? b : "(missing)");
        p->beh = behs[k].beh;
        snprintf(sub, sizeof sub, "%s.pattern", where);
        return parse_pattern(c, json_object_get(o, "pattern"), sub, &p->pat);
    }
    if (!strcmp(type, "ByteLevel")) {
        p->kind = P_BYTELEVEL;
        p->add_prefix_space = jbool(o, "add_prefix_space", true);
        p->use_regex = jbool(o, "use_regex", true);
        if (p->use_regex) {
            p->pat.kind = PAT_REGEX;
            return compile_regex(c, where, GPT2_PATTERN, sizeof GPT2_PATTERN - 1, &p->pat.re);
        }
        return AUGUR_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        p->kind = P_METASPACE;
        p->split = jbool(o, "split", true);
        p->pat.kind = PAT_CHAR;
        p->beh = B_MERGED_NEXT;
        augur_status st = parse_replacement(c, o, where, p->repl, &p->repl_len, &p->pat.ch);
        return st != AUGUR_OK ? st : parse_prepend_scheme(c, o, where, &p->prepend);
    }
    if (!strcmp(type, "Digits")) {
        p->kind = P_SPLIT;
        p->pat.kind = PAT_NUMERIC;
        p->beh = jbool(o, "individual_digits", false) ? B_ISOLATED : B_CONTIGUOUS;
        return AUGUR_OK;
    }
    if (!strcmp(type, "WhitespaceSplit")) {
        p->kind = P_SPLIT;
        p->pat.kind = PAT_SPACE;
        p->beh = B_REMOVED;
        return AUGUR_OK;
    }
    if (!strcmp(type, "Whitespace")) {
        /* The library matches \w+|[^\w\s]+ here with the Rust regex crate, not
         * Oniguruma: its \w lacks Oniguruma's No and Nl (e.g. U+00B2), so spell
         * it out. Rust's \s and Oniguruma's are both White_Space. */
#define RUST_W "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}"
        static const char ws[] = "[" RUST_W "]+|[^" RUST_W "\\s]+";
#undef RUST_W
        p->kind = P_SPLIT;
        p->pat.kind = PAT_REGEX;
        p->beh = B_REMOVED;
        p->invert = true;
        return compile_regex(c, where, ws, sizeof ws - 1, &p->pat.re);
    }
    out->n--;
    return fail(c, AUGUR_E_UNSUPPORTED, where, "pre_tokenizer type '%s' is not supported", type);
}

static void pretoks_free(vec *v)
{
    hf_pretok *a = v->v;
    for (size_t i = 0; i < v->n; i++)
        pattern_free(&a[i].pat);
    free(v->v);
}

/* ======================================================================
 * Decoders (flattened).
 * ====================================================================== */

typedef enum { D_BYTELEVEL, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_METASPACE, D_BPE } dec_kind;

typedef struct {
    dec_kind kind;
    hf_pattern pat;   /* D_REPLACE */
    char *content;    /* D_REPLACE content, D_BPE suffix */
    size_t content_len;
    uint32_t ch;      /* D_STRIP content, D_METASPACE replacement */
    size_t start, stop;
    prepend_scheme prepend;
} hf_dec;

static augur_status parse_decoder(const hf_ctx *c, const json_t *o, const char *type, const char *where,
                                  void *out_vec)
{
    vec *out = out_vec;
    hf_dec *d = vec_add(out, sizeof *d);
    if (!d)
        return oom(c, where);
    size_t n;
    const char *s;
    if (!strcmp(type, "ByteLevel")) {
        d->kind = D_BYTELEVEL;
        return AUGUR_OK;
    }
    if (!strcmp(type, "ByteFallback")) {
        d->kind = D_BYTEFALLBACK;
        return AUGUR_OK;
    }
    if (!strcmp(type, "Fuse")) {
        d->kind = D_FUSE;
        return AUGUR_OK;
    }
    if (!strcmp(type, "Replace")) {
        d->kind = D_REPLACE;
        return parse_replace(c, o, where, &d->content, &d->content_len, &d->pat);
    }
    if (!strcmp(type, "Strip")) {
        d->kind = D_STRIP;
        json_t *st = json_object_get(o, "start"), *sp = json_object_get(o, "stop");
        s = jstr(o, "content", &n);
        size_t adv = s && n ? tok_utf8_seq_len(s, n) : 0;
        if (!adv || adv != n || !json_is_integer(st) || !json_is_integer(sp) || json_integer_value(st) < 0 ||
            json_integer_value(sp) < 0)
            return fail(c, AUGUR_E_FORMAT, where, "Strip needs a one-character \"content\" and integer "
                        "\"start\"/\"stop\"");
        d->ch = tok_utf8_decode(s, n, &adv);
        d->start = (size_t)json_integer_value(st);
        d->stop = (size_t)json_integer_value(sp);
        return AUGUR_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        d->kind = D_METASPACE;
        char buf[8];
        augur_status st = parse_replacement(c, o, where, buf, &n, &d->ch);
        return st != AUGUR_OK ? st : parse_prepend_scheme(c, o, where, &d->prepend);
    }
    if (!strcmp(type, "BPEDecoder")) {
        d->kind = D_BPE;
        if (!(s = jstr(o, "suffix", &n))) {
            s = "</w>";
            n = 4;
        }
        if (!(d->content = dup_bytes(s, n)))
            return oom(c, where);
        d->content_len = n;
        return AUGUR_OK;
    }
    out->n--;
    return fail(c, AUGUR_E_UNSUPPORTED, where, "decoder type '%s' is not supported", type);
}

static void decs_free(vec *v)
{
    hf_dec *a = v->v;
    for (size_t i = 0; i < v->n; i++) {
        free(a[i].content);
        pattern_free(&a[i].pat);
    }
    free(v->v);
}

/* ======================================================================
 * BPE model.
 * ====================================================================== */

typedef struct {
    uint64_t key; /* left id << 32 | right id; EMPTY_KEY when free */
    int32_t rank, new_id;
} merge_slot;

#define EMPTY_KEY UINT64_MAX

typedef struct {
    char **keys; /* every vocab key (owned); the map and tok[] point into these */
    size_t n_keys;
    const char **tok; /* id -> token text (NULL for ids the vocab skips) */
    uint32_t *tok_len;
    int32_t n;  /* 1 + largest id */
    tok_map vocab;
    merge_slot *merges;
    size_t merge_cap;
    int32_t unk_id;      /* -1: no unk_token; -2: unk_token not in vocab */
    char *unk_token;
    bool byte_fallback, fuse_unk, ignore_merges;
    char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix */
    size_t prefix_len, suffix_len;
    int32_t byte_id[256];  /* <0xXX> tokens, -1 when missing */
} hf_bpe;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void merge_put(hf_bpe *m, uint64_t key, int32_t rank, int32_t new_id)
{
    size_t mask = m->merge_cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (m->merges[i].key == EMPTY_KEY || m->merges[i].key == key) {
            /* A pair listed twice keeps its last rank, as the library's HashMap does. */
            m->merges[i] = (merge_slot){key, rank, new_id};
            return;
        }
    }
}

static const merge_slot *merge_get(const hf_bpe *m, int32_t a, int32_t b)
{
    if (!m->merge_cap)
        return NULL;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t mask = m->merge_cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (m->merges[i].key == key)
            return &m->merges[i];
        if (m->merges[i].key == EMPTY_KEY)
            return NULL;
    }
}

static void bpe_free(hf_bpe *m)
{
    for (size_t i = 0; i < m->n_keys; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->tok);
    free(m->tok_len);
    tok_map_free(&m->vocab);
    free(m->merges);
    free(m->unk_token);
    free(m->prefix);
    free(m->suffix);
}

/* Splits one merges entry into its two tokens: "a b" (first space) or ["a", "b"]. */
static bool merge_parts(const json_t *e, const char **a, size_t *an, const char **b, size_t *bn)
{
    if (json_is_string(e)) {
        const char *s = json_string_value(e);
        size_t n = json_string_length(e);
        const char *sp = memchr(s, ' ', n);
        if (!sp)
            return false;
        *a = s;
        *an = (size_t)(sp - s);
        *b = sp + 1;
        *bn = n - *an - 1;
        return true;
    }
    if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
        json_is_string(json_array_get(e, 1))) {
        *a = json_string_value(json_array_get(e, 0));
        *an = json_string_length(json_array_get(e, 0));
        *b = json_string_value(json_array_get(e, 1));
        *bn = json_string_length(json_array_get(e, 1));
        return true;
    }
    return false;
}

static augur_status parse_bpe(const hf_ctx *c, const json_t *model, hf_bpe *m)
{
    memset(m->byte_id, 0xff, sizeof m->byte_id);
    m->unk_id = -1;
    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab))
        return fail(c, AUGUR_E_FORMAT, "model.vocab", "missing or not an object");
    if (!json_is_array(merges))
        return fail(c, AUGUR_E_FORMAT, "model.merges", "missing or not an array");
    int64_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= INT32_MAX)
            return fail(c, AUGUR_E_FORMAT, "model.vocab", "token '%s' has id that is not a non-negative integer",
                        key);
        if (json_integer_value(val) > max_id)
            max_id = json_integer_value(val);
    }
    m->n = (int32_t)(max_id + 1);
    m->tok = calloc((size_t)m->n + 1, sizeof *m->tok);
    m->tok_len = calloc((size_t)m->n + 1, sizeof *m->tok_len);
    m->keys = calloc(json_object_size(vocab) + 1, sizeof *m->keys);
    if (!m->tok || !m->tok_len || !m->keys || !tok_map_init(&m->vocab, json_object_size(vocab)))
        return oom(c, "model.vocab");
    for (void *it = json_object_iter(vocab); it; it = json_object_iter_next(vocab, it)) {
        size_t kl = json_object_iter_key_len(it);
        char *k = dup_bytes(json_object_iter_key(it), kl);
        if (!k)
            return oom(c, "model.vocab");
        m->keys[m->n_keys++] = k;
        int32_t id = (int32_t)json_integer_value(json_object_iter_value(it));
        if (!tok_map_put(&m->vocab, k, kl, id, false))
            return oom(c, "model.vocab");
        if (!m->tok[id]) { /* two tokens sharing an id: the first decodes it */
            m->tok[id] = k;
            m->tok_len[id] = (uint32_t)kl;
        }
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_id[b] = tok_map_get(&m->vocab, name, 6);
    }
    size_t n;
    const char *s;
    m->byte_fallback = jbool(model, "byte_fallback", false);
    m->fuse_unk = jbool(model, "fuse_unk", false);
    m->ignore_merges = jbool(model, "ignore_merges", false);
    if ((s = jstr(model, "unk_token", &n))) {
        if (!(m->unk_token = dup_bytes(s, n)))
            return oom(c, "model.unk_token");
        m->unk_id = tok_map_get(&m->vocab, s, n);
        if (m->unk_id < 0)
            m->unk_id = -2; /* the library fails only when the unk token is needed */
    }
    if ((s = jstr(model, "continuing_subword_prefix", &n)) && n) {
        if (!(m->prefix = dup_bytes(s, n)))
            return oom(c, "model.continuing_subword_prefix");
        m->prefix_len = n;
    }
    if ((s = jstr(model, "end_of_word_suffix", &n)) && n) {
        if (!(m->suffix = dup_bytes(s, n)))
            return oom(c, "model.end_of_word_suffix");
        m->suffix_len = n;
    }
    size_t nm = json_array_size(merges);
    m->merge_cap = 16;
    while (m->merge_cap < nm * 2 + 2)
        m->merge_cap *= 2;
    if (!(m->merges = malloc(m->merge_cap * sizeof *m->merges)))
        return oom(c, "model.merges");
    for (size_t i = 0; i < m->merge_cap; i++)
        m->merges[i].key = EMPTY_KEY;
    tok_buf joined = {0};
    for (size_t i = 0; i < nm; i++) {
        char where[64];
        snprintf(where, sizeof where, "model.merges[%zu]", i);
        const char *a, *b;
        size_t an, bn;
        if (!merge_parts(json_array_get(merges, i), &a, &an, &b, &bn)) {
            tok_buf_free(&joined);
            return fail(c, AUGUR_E_FORMAT, where, "expected \"a b\" or [\"a\", \"b\"]");
        }
        int32_t ia = tok_map_get(&m->vocab, a, an), ib = tok_map_get(&m->vocab, b, bn);
        /* With a continuing_subword_prefix, the merged token drops b's prefix. */
        size_t skip = m->prefix_len && bn >= m->prefix_len && !memcmp(b, m->prefix, m->prefix_len) ? m->prefix_len : 0;
        joined.len = 0;
        if (!tok_buf_append(&joined, a, an) || !tok_buf_append(&joined, b + skip, bn - skip)) {
            tok_buf_free(&joined);
            return oom(c, where);
        }
        int32_t inew = tok_map_get(&m->vocab, joined.data, joined.len);
        if (ia < 0 || ib < 0 || inew < 0) {
            augur_status st = fail(c, AUGUR_E_FORMAT, where, "token '%.*s' is not in model.vocab",
                                   ia < 0 ? (int)an : ib < 0 ? (int)bn : (int)joined.len,
                                   ia < 0 ? a : ib < 0 ? b : joined.data);
            tok_buf_free(&joined);
            return st;
        }
        merge_put(m, (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib, (int32_t)i, inew);
    }
    tok_buf_free(&joined);
    return AUGUR_OK;
}

typedef struct {
    int32_t id;
    int32_t prev, next;
    uint32_t len; /* bytes of the word it covers; 0 once merged away */
} bpe_sym;

typedef struct {
    int32_t rank, pos, new_id;
} bpe_merge;

/* Min-heap on (rank, pos), the library's merge priority. The heap is typed (not
 * shared with tokenizer_llama2c.c's): with element size and order as run-time
 * parameters, encoding a long Llama-2-style prompt took a third longer. */
static bool merge_before(const bpe_merge *a, const bpe_merge *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

typedef struct {
    bpe_sym *sym;
    size_t n_sym, cap_sym;
    bpe_merge *heap;
    size_t n_heap, cap_heap;
    tok_buf scratch;
} bpe_work;

static bool heap_push(bpe_work *w, bpe_merge m)
{
    bpe_merge *v = tok_grow(w->heap, w->n_heap, &w->cap_heap, sizeof *v, 64);
    if (!v)
        return false;
    w->heap = v;
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!merge_before(&m, &w->heap[parent]))
            break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = m;
    return true;
}

static bpe_merge heap_pop(bpe_work *w)
{
    bpe_merge top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= w->n_heap)
            break;
        if (c + 1 < w->n_heap && merge_before(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!merge_before(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (w->n_heap)
        w->heap[i] = last;
    return top;
}

static bool sym_add(bpe_work *w, int32_t id, uint32_t len)
{
    bpe_sym *v = tok_grow(w->sym, w->n_sym, &w->cap_sym, sizeof *v, 64);
    if (!v)
        return false;
    w->sym = v;
    int32_t i = (int32_t)w->n_sym++;
    w->sym[i] = (bpe_sym){id, i - 1, -1, len};
    if (i > 0)
        w->sym[i - 1].next = i;
    return true;
}

/* Queues the merge of the pair starting at pos, if the model has one. */
static bool queue_merge(const hf_bpe *m, bpe_work *w, int32_t pos, int32_t right)
{
    const merge_slot *ms = merge_get(m, w->sym[pos].id, w->sym[right].id);
    return !ms || heap_push(w, (bpe_merge){ms->rank, pos, ms->new_id});
}

/* Word::merge_all: repeatedly apply the lowest-rank merge (leftmost on ties),
 * with lazy deletion of queue entries that no longer describe a live pair. */
static bool merge_all(const hf_bpe *m, bpe_work *w)
{
    w->n_heap = 0;
    for (size_t i = 0; i + 1 < w->n_sym; i++)
        if (!queue_merge(m, w, (int32_t)i, (int32_t)i + 1))
            return false;
    while (w->n_heap) {
        bpe_merge top = heap_pop(w);
        bpe_sym *cur = &w->sym[top.pos];
        if (cur->len == 0 || cur->next == -1)
            continue;
        int32_t next_pos = cur->next;
        bpe_sym right = w->sym[next_pos];
        const merge_slot *ms = merge_get(m, cur->id, right.id);
        if (!ms || ms->new_id != top.new_id)
            continue;
        cur->id = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        w->sym[next_pos].len = 0;
        if (right.next > -1 && (size_t)right.next < w->n_sym)
            w->sym[right.next].prev = top.pos;
        if (cur->prev >= 0 && !queue_merge(m, w, cur->prev, top.pos))
            return false;
        if (cur->next >= 0 && !queue_merge(m, w, top.pos, cur->next))
            return false;
    }
    return true;
}

/* BPE::tokenize for one pre-token (BPE::merge_word + merge_all). */
static augur_status bpe_encode_word(const hf_bpe *m, bpe_work *w, const char *s, size_t n, tok_ids *out,
                                    augur_error *err)
{
    if (n == 0)
        return AUGUR_OK;
    if (m->ignore_merges) {
        int32_t id = tok_map_get(&m->vocab, s, n);
        if (id >= 0)
            return tok_ids_push(out, id) ? AUGUR_OK : augur_fail(err, AUGUR_E_NOMEM, "tokenizer: out of memory");
    }
    w->n_sym = 0;
    int32_t unk = -1;
    uint32_t unk_len = 0;
    bool ok = true;
    for (size_t i = 0; ok && i < n;) {
        size_t clen = tok_utf8_seq_len(s + i, n - i);
        if (!clen)
            clen = 1;
        bool first = i == 0, last = i + clen == n;
        const char *key = s + i;
        size_t klen = clen;
        if ((!first && m->prefix_len) || (last && m->suffix_len)) {
            w->scratch.len = 0;
            ok = (!(!first && m->prefix_len) || tok_buf_append(&w->scratch, m->prefix, m->prefix_len)) &&
                 tok_buf_append(&w->scratch, s + i, clen) &&
                 (!(last && m->suffix_len) || tok_buf_append(&w->scratch, m->suffix, m->suffix_len));
            key = w->scratch.data;
            klen = w->scratch.len;
        }
        int32_t id = ok ? tok_map_get(&m->vocab, key, klen) : -1;
        if (!ok) {
        } else if (id >= 0) {
            if (unk >= 0) {
                ok = sym_add(w, unk, unk_len);
                unk = -1;
            }
            ok = ok && sym_add(w, id, (uint32_t)clen);
        } else {
            bool done = false;
            if (m->byte_fallback) {
                bool all = true;
                for (size_t k = 0; k < klen; k++)
                    all = all && m->byte_id[(unsigned char)key[k]] >= 0;
                if (all) {
                    /* Copy first: key may point into scratch, which sym_add does not touch. */
                    for (size_t k = 0; ok && k < klen; k++)
                        ok = sym_add(w, m->byte_id[(unsigned char)key[k]], 1);
                    done = true;
                }
            }
            if (!done && m->unk_id != -1) {
                if (m->unk_id == -2)
                    return augur_fail(err, AUGUR_E_FORMAT, "tokenizer.json: model.unk_token '%s' is not in the "
                                      "vocabulary but is needed to encode this text", m->unk_token);
                if (unk >= 0 && m->fuse_unk) {
                    unk_len += (uint32_t)clen;
                } else {
                    if (unk >= 0)
                        ok = sym_add(w, unk, unk_len);
                    unk = m->unk_id;
                    unk_len = (uint32_t)clen;
                }
            }
        }
        i += clen;
    }
    if (ok && unk >= 0)
        ok = sym_add(w, unk, unk_len);
    ok = ok && merge_all(m, w);
    for (size_t i = 0; ok && i < w->n_sym; i++)
        if (w->sym[i].len)
            ok = tok_ids_push(out, w->sym[i].id);
    return ok ? AUGUR_OK : augur_fail(err, AUGUR_E_NOMEM, "tokenizer: out of memory");
}

/* ======================================================================
 * Added tokens.
 * ====================================================================== */

typedef struct {
    char *content;
    size_t len;
    char *norm; /* content after the normalizer, for normalized tokens */
    size_t norm_len;
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} hf_added;

/* Leftmost-longest matcher (what the library builds with Aho-Corasick): patterns
 * bucketed by first byte, longest first within a bucket. */
typedef struct {
    uint32_t *order; /* indices into added[] */
    uint32_t start[257];
} hf_matcher;

typedef struct {
    hf_bpe bpe;
    hf_added *added;
    size_t n_added;
    int32_t *added_by_id; /* id -> index into added, -1 */
    int32_t n_total;      /* 1 + largest id of model or added tokens */
    hf_matcher raw, norm; /* not normalized / normalized added tokens */
    vec norms, pretoks, decs;
    bool has_decoder;
    tok_ids prefix, suffix; /* post-processor around the single sequence */
    char bl_enc[256][2];    /* ByteLevel: byte -> UTF-8 of its stand-in code point */
    uint8_t bl_len[256];
    int16_t bl_dec[324];    /* stand-in code point -> byte, -1 */
    int32_t bos, eos;
    size_t max_piece;
} tok_hf;

static size_t pat_len(const hf_added *a, bool norm)
{
    return norm ? a->norm_len : a->len;
}

static const char *pat_str(const hf_added *a, bool norm)
{
    return norm ? a->norm : a->content;
}

/* Insertion sort: qsort's comparator could not see which pattern (raw or
 * normalized) to compare without global state, and added-token lists are small. */
static bool build_matcher(tok_hf *hf, bool norm, hf_matcher *mt)
{
    size_t k = 0;
    mt->order = malloc((hf->n_added + 1) * sizeof *mt->order);
    if (!mt->order)
        return false;
    for (size_t i = 0; i < hf->n_added; i++) {
        const hf_added *a = &hf->added[i];
        if (a->normalized != norm || pat_len(a, norm) == 0)
            continue;
        /* insert keeping (first byte asc, length desc, input order) */
        size_t j = k++;
        unsigned char fb = (unsigned char)pat_str(a, norm)[0];
        while (j > 0) {
            const hf_added *b = &hf->added[mt->order[j - 1]];
            unsigned char bb = (unsigned char)pat_str(b, norm)[0];
            if (bb < fb || (bb == fb && pat_len(b, norm) >= pat_len(a, norm)))
                break;
            mt->order[j] = mt->order[j - 1];
            j--;
        }
        mt->order[j] = (uint32_t)i;
    }
    size_t pos = 0;
    for (int b = 0; b < 256; b++) {
        mt->start[b] = (uint32_t)pos;
        while (pos < k && (unsigned char)pat_str(&hf->added[mt->order[pos]], norm)[0] == b)
            pos++;
    }
    mt->start[256] = (uint32_t)k;
    return true;
}

static bool find_added(const tok_hf *hf, const hf_matcher *mt, bool norm, const char *s, size_t n, size_t from,
                       size_t *ms, size_t *me, size_t *which)
{
    for (size_t i = from; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        for (uint32_t k = mt->start[b]; k < mt->start[b + 1]; k++) {
            const hf_added *a = &hf->added[mt->order[k]];
            size_t l = pat_len(a, norm);
            if (l <= n - i && !memcmp(s + i, pat_str(a, norm), l)) {
                *ms = i;
                *me = i + l;
                *which = mt->order[k];
                return true;
            }
        }
    }
    return false;
}

/* AddedVocabulary::find_matches + split_with_indices for one piece. */
static augur_status split_added(const tok_hf *hf, const hf_matcher *mt, bool norm, hf_run *run, const char *s,
                                size_t n, bool at_start, hf_pieces *out)
{
    size_t start_offset = 0, pos = 0, ms, me, which;
    bool ok = true;
    while (ok && pos < n && find_added(hf, mt, norm, s, n, pos, &ms, &me, &which)) {
        const hf_added *a = &hf->added[which];
        pos = me;
        if (a->single_word) {
            bool start_space = ms == 0 || !is_word(last_cp(s, ms));
            size_t adv;
            bool stop_space = me == n || !is_word(tok_utf8_decode(s + me, n - me, &adv));
            if (!start_space || !stop_space)
                continue;
        }
        size_t start = ms, stop = me;
        if (a->lstrip) {
            while (start > 0 && is_ws(last_cp(s, start)))
                start = tok_utf8_prev(s, 0, start);
            if (start < start_offset)
                start = start_offset;
        }
        if (a->rstrip) {
            size_t adv;
            while (stop < n && is_ws(tok_utf8_decode(s + stop, n - stop, &adv)))
                stop += adv;
        }
        if (start < start_offset) /* overlapping strip regions: keep pieces disjoint */
            start = start_offset;
        if (start_offset < start)
            ok = pieces_add(out, s + start_offset, start - start_offset, -1, at_start && start_offset == 0);
        ok = ok && pieces_add(out, NULL, 0, a->id, false);
        start_offset = stop;
        if (pos < stop)
            pos = stop;
    }
    if (ok && start_offset < n)
        ok = pieces_add(out, s + start_offset, n - start_offset, -1, at_start && start_offset == 0);
    return ok ? AUGUR_OK : augur_fail(run->err, AUGUR_E_NOMEM, "tokenizer: out of memory");
}

/* ======================================================================
 * Post-processor: reduced to ids before and after the single sequence.
 * ====================================================================== */

static augur_status parse_post(const hf_ctx *c, const json_t *o, const char *type, const char *where, void *out)
{
    tok_hf *hf = out;
    char sub[256];
    if (!strcmp(type, "ByteLevel"))
        return AUGUR_OK; /* only adjusts offsets */
    /* Each processor wraps what the previous ones produced. */
    tok_ids pre = {0}, post = {0};
    bool ok = true;
    augur_status st = AUGUR_OK;
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(o, "single"), *specials = json_object_get(o, "special_tokens");
        if (!json_is_array(single))
            return fail(c, AUGUR_E_FORMAT, where, "TemplateProcessing without a \"single\" array");
        int seen_a = 0;
        for (size_t i = 0; ok && st == AUGUR_OK && i < json_array_size(single); i++) {
            json_t *item = json_array_get(single, i);
            json_t *seq = json_object_get(item, "Sequence"), *sp = json_object_get(item, "SpecialToken");
            snprintf(sub, sizeof sub, "%s.single[%zu]", where, i);
            if (seq) {
                const char *id = jstr(seq, "id", NULL);
                if (!id || strcmp(id, "A") || seen_a++)
                    st = fail(c, AUGUR_E_UNSUPPORTED, sub, "the single template must hold $A exactly once");
            } else if (sp) {
                const char *name = jstr(sp, "id", NULL);
                json_t *ids = json_object_get(json_object_get(specials, name ? name : ""), "ids");
                if (!name || !json_is_array(ids)) {
                    st = fail(c, AUGUR_E_FORMAT, sub, "special token '%s' has no entry with \"ids\" in "
                              "special_tokens", name ? name : "(missing)");
                    break;
                }
                for (size_t k = 0; ok && k < json_array_size(ids); k++)
                    ok = tok_ids_push(seen_a ? &post : &pre, (int32_t)json_integer_value(json_array_get(ids, k)));
            } else {
                st = fail(c, AUGUR_E_FORMAT, sub, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
            }
        }
        if (st == AUGUR_OK && !seen_a)
            st = fail(c, AUGUR_E_UNSUPPORTED, where, "the single template has no $A");
    } else if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        json_t *cls = json_object_get(o, "cls"), *sep = json_object_get(o, "sep");
        if (!json_is_integer(json_array_get(cls, 1)) || !json_is_integer(json_array_get(sep, 1)))
            return fail(c, AUGUR_E_FORMAT, where, "%s needs \"cls\" and \"sep\" as [token, id]", type);
        ok = tok_ids_push(&pre, (int32_t)json_integer_value(json_array_get(cls, 1))) &&
             tok_ids_push(&post, (int32_t)json_integer_value(json_array_get(sep, 1)));
    } else {
        return fail(c, AUGUR_E_UNSUPPORTED, where, "post_processor type '%s' is not supported", type);
    }
    /* new prefix = pre + old prefix; new suffix = old suffix + post */
    for (size_t i = 0; ok && st == AUGUR_OK && i < hf->prefix.n; i++)
        ok = tok_ids_push(&pre, hf->prefix.v[i]);
    for (size_t i = 0; ok && st == AUGUR_OK && i < post.n; i++)
        ok = tok_ids_push(&hf->suffix, post.v[i]);
    if (ok && st == AUGUR_OK) {
        tok_ids_free(&hf->prefix);
        hf->prefix = pre;
        pre = (tok_ids){0};
    }
    tok_ids_free(&pre);
    tok_ids_free(&post);
    if (st == AUGUR_OK && !ok)
        st = oom(c, where);
    return st;
}

/* ======================================================================
 * Load / free.
 * ====================================================================== */

static void byte_level_tables(tok_hf *hf)
{
    /* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
     * rest are moved to U+0100.. in byte order. */
    int next = 256;
    for (int i = 0; i < 324; i++)
        hf->bl_dec[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        int cp = printable ? b : next++;
        char enc[4];
        hf->bl_len[b] = (uint8_t)tok_utf8_encode((uint32_t)cp, enc);
        memcpy(hf->bl_enc[b], enc, hf->bl_len[b]);
        hf->bl_dec[cp] = (int16_t)b;
    }
}

static void hf_free(void *impl)
{
    tok_hf *hf = impl;
    if (!hf)
        return;
    bpe_free(&hf->bpe);
    for (size_t i = 0; i < hf->n_added; i++) {
        free(hf->added[i].content);
        free(hf->added[i].norm);
    }
    free(hf->added);
    free(hf->added_by_id);
    free(hf->raw.order);
    free(hf->norm.order);
    norms_free(&hf->norms);
    pretoks_free(&hf->pretoks);
    decs_free(&hf->decs);
    tok_ids_free(&hf->prefix);
    tok_ids_free(&hf->suffix);
    free(hf);
}

static augur_status parse_added(const hf_ctx *c, const json_t *arr, tok_hf *hf)
{
    if (!arr || json_is_null(arr))
        return AUGUR_OK;
    if (!json_is_array(arr))
        return fail(c, AUGUR_E_FORMAT, "added_tokens", "not an array");
    hf->added = calloc(json_array_size(arr) + 1, sizeof *hf->added);
    if (!hf->added)
        return oom(c, "added_tokens");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        size_t n;
        const char *s = jstr(o, "content", &n);
        json_t *id = json_object_get(o, "id");
        if (!s || !json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= INT32_MAX)
            return fail(c, AUGUR_E_FORMAT, where, "needs a \"content\" string and a non-negative \"id\"");
        hf_added *a = &hf->added[hf->n_added];
        if (!(a->content = dup_bytes(s, n)))
            return oom(c, where);
        hf->n_added++;
        a->len = n;
        a->id = (int32_t)json_integer_value(id);
        a->special = jbool(o, "special", false);
        a->single_word = jbool(o, "single_word", false);
        a->lstrip = jbool(o, "lstrip", false);
        a->rstrip = jbool(o, "rstrip", false);
        a->normalized = jbool(o, "normalized", !a->special);
    }
    return AUGUR_OK;
}

static int32_t added_named(const tok_hf *hf, const char *const *names)
{
    for (size_t k = 0; names[k]; k++)
        for (size_t i = 0; i < hf->n_added; i++)
            if (!strcmp(hf->added[i].content, names[k]))
                return hf->added[i].id;
    return -1;
}

static augur_status finish_load(const hf_ctx *c, tok_hf *hf)
{
    hf_run run = {.err = c->err};
    augur_status st = AUGUR_OK;
    tok_buf nb = {0};
    /* Normalized added tokens match the text after normalization, so their
     * patterns are their normalized content. */
    for (size_t i = 0; st == AUGUR_OK && i < hf->n_added; i++) {
        hf_added *a = &hf->added[i];
        if (!a->normalized)
            continue;
        if (tok_utf8_check(a->content, a->len) != a->len) {
            st = fail(c, AUGUR_E_FORMAT, "added_tokens", "content of id %d is not UTF-8", (int)a->id);
            break;
        }
        st = normalize(hf->norms.v, hf->norms.n, &run, a->content, a->len, &nb);
        if (st == AUGUR_OK && !(a->norm = dup_bytes(nb.data ? nb.data : "", nb.len)))
            st = oom(c, "added_tokens");
        a->norm_len = nb.len;
    }
    tok_buf_free(&nb);
    run_free(&run);
    if (st != AUGUR_OK)
        return st;
    if (!build_matcher(hf, false, &hf->raw) || !build_matcher(hf, true, &hf->norm))
        return oom(c, "added_tokens");

    hf->n_total = hf->bpe.n;
    for (size_t i = 0; i < hf->n_added; i++)
        if (hf->added[i].id >= hf->n_total)
            hf->n_total = hf->added[i].id + 1;
    hf->added_by_id = malloc(((size_t)hf->n_total + 1) * sizeof *hf->added_by_id);
    if (!hf->added_by_id)
        return oom(c, "added_tokens");
    for (int32_t i = 0; i < hf->n_total; i++)
        hf->added_by_id[i] = -1;
    for (size_t i = 0; i < hf->n_added; i++)
        hf->added_by_id[hf->added[i].id] = (int32_t)i;

    for (size_t i = 0; i < hf->prefix.n + hf->suffix.n; i++) {
        int32_t id = i < hf->prefix.n ? hf->prefix.v[i] : hf->suffix.v[i - hf->prefix.n];
        if (id < 0 || id >= hf->n_total)
            return fail(c, AUGUR_E_FORMAT, "post_processor", "special token id %d is outside the vocabulary",
                        (int)id);
    }
    /* BOS/EOS: what the template adds, else the conventional names. */
    static const char *const bos_names[] = {"<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>", NULL};
    static const char *const eos_names[] = {"<|end_of_text|>", "</s>", "<|endoftext|>", "<|eot_id|>", "<eos>",
                                            "<|im_end|>", NULL};
    hf->bos = hf->prefix.n ? hf->prefix.v[0] : added_named(hf, bos_names);
    hf->eos = hf->suffix.n ? hf->suffix.v[hf->suffix.n - 1] : added_named(hf, eos_names);

    size_t longest = 0;
    for (int32_t i = 0; i < hf->bpe.n; i++)
        if (hf->bpe.tok_len[i] > longest)
            longest = hf->bpe.tok_len[i];
    for (size_t i = 0; i < hf->n_added; i++)
        if (hf->added[i].len > longest)
            longest = hf->added[i].len;
    size_t grow = 1;
    const hf_dec *d = hf->decs.v;
    for (size_t i = 0; i < hf->decs.n; i++)
        if (d[i].kind == D_REPLACE && d[i].pat.kind == PAT_LITERAL && d[i].pat.lit_len &&
            d[i].content_len > d[i].pat.lit_len)
            grow *= (d[i].content_len + d[i].pat.lit_len - 1) / d[i].pat.lit_len;
        else if (d[i].kind == D_REPLACE && d[i].pat.kind == PAT_REGEX)
            grow *= d[i].content_len + 1;
    hf->max_piece = longest * grow + 1;
    return AUGUR_OK;
}

static augur_status hf_load(void **out, const char *path, const char *text, size_t len, int vocab_hint,
                            augur_error *err)
{
    (void)vocab_hint; /* tokenizer.json records its vocabulary */
    *out = NULL;
    hf_ctx c = {path, err};
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_ALLOW_NUL, &jerr);
    if (!root)
        return augur_fail(err, AUGUR_E_FORMAT, "tokenizer.json '%s': not valid JSON (line %d, column %d): %s",
                          path, jerr.line, jerr.column, jerr.text);
    augur_status st = AUGUR_OK;
    tok_hf *hf = NULL;
    json_t *model = json_object_get(root, "model");
    const char *type = jstr(model, "type", NULL);
    if (!json_is_object(root))
        st = fail(&c, AUGUR_E_FORMAT, "(root)", "expected a JSON object");
    else if (!json_is_object(model))
        st = fail(&c, AUGUR_E_FORMAT, "model", "missing or not an object");
    else if (type ? strcmp(type, "BPE") != 0 : !json_object_get(model, "merges"))
        /* Files from old library versions omit the type; only BPE has merges. */
        st = fail(&c, AUGUR_E_UNSUPPORTED, "model", "model type '%s' is not supported (BPE only)",
                  type ? type : "(untyped, no merges)");
    else if (!(hf = calloc(1, sizeof *hf)))
        st = oom(&c, "(root)");
    if (st == AUGUR_OK) {
        byte_level_tables(hf);
        st = parse_bpe(&c, model, &hf->bpe);
    }
    if (st == AUGUR_OK)
        st = parse_added(&c, json_object_get(root, "added_tokens"), hf);
    if (st == AUGUR_OK)
        st = walk_steps(&c, json_object_get(root, "normalizer"), "normalizer", "normalizers", parse_normalizer,
                        &hf->norms);
    if (st == AUGUR_OK)
        st = walk_steps(&c, json_object_get(root, "pre_tokenizer"), "pre_tokenizer", "pretokenizers", parse_pretok,
                        &hf->pretoks);
    if (st == AUGUR_OK)
        st = walk_steps(&c, json_object_get(root, "post_processor"), "post_processor", "processors", parse_post, hf);
    if (st == AUGUR_OK) {
        json_t *dec = json_object_get(root, "decoder");
        hf->has_decoder = dec && !json_is_null(dec);
        st = walk_steps(&c, dec, "decoder", "decoders", parse_decoder, &hf->decs);
    }
    if (st == AUGUR_OK)
        st = finish_load(&c, hf);
    json_decref(root);
    if (st != AUGUR_OK) {
        hf_free(hf);
        return st;
    }
    *out = hf;
    return AUGUR_OK;
}

/* ======================================================================
 * Encode.
 * ====================================================================== */

static augur_status pretok_step(const tok_hf *hf, const hf_pretok *p, hf_run *run, const hf_pieces *in,
                                hf_pieces *out, tok_buf *tmp)
{
    augur_status st = AUGUR_OK;
    bool ok = true;
    hf_pieces split = {0};
    for (size_t i = 0; ok && st == AUGUR_OK && i < in->n; i++) {
        const hf_piece *pc = &in->v[i];
        const char *s = piece_text(in, i);
        if (pc->id >= 0) {
            ok = pieces_add(out, NULL, 0, pc->id, pc->at_start);
            continue;
        }
        switch (p->kind) {
        case P_SPLIT:
            st = split_with(run, &p->pat, p->beh, p->invert, s, pc->len, pc->at_start, out);
            break;
        case P_BYTELEVEL: {
            tmp->len = 0;
            if (p->add_prefix_space && (pc->len == 0 || s[0] != ' '))
                ok = tok_buf_append(tmp, " ", 1);
            ok = ok && tok_buf_append(tmp, s, pc->len);
            if (!ok)
                break;
            pieces_clear(&split);
            if (p->use_regex)
                st = split_with(run, &p->pat, B_ISOLATED, false, tmp->data, tmp->len, pc->at_start, &split);
            else
                ok = pieces_add(&split, tmp->data, tmp->len, -1, pc->at_start);
            /* then every byte becomes its printable stand-in character */
            for (size_t k = 0; ok && st == AUGUR_OK && k < split.n; k++) {
                const unsigned char *u = (const unsigned char *)piece_text(&split, k);
                size_t start = out->b.len;
                for (size_t j = 0; ok && j < split.v[k].len; j++)
                    ok = tok_buf_append(&out->b, hf->bl_enc[u[j]], hf->bl_len[u[j]]);
                if (ok) /* the bytes are in place already: record the piece */
                    ok = pieces_add_tail(out, start, split.v[k].at_start);
            }
            break;
        }
        case P_METASPACE: {
            tmp->len = 0;
            bool starts = pc->len >= p->repl_len && !memcmp(s, p->repl, p->repl_len);
            /* the library replaces spaces first, so a leading space counts as the mark */
            starts = starts || (pc->len && s[0] == ' ');
            bool prepend = !starts && (p->prepend == PREPEND_ALWAYS || (p->prepend == PREPEND_FIRST && pc->at_start));
            if (prepend)
                ok = tok_buf_append(tmp, p->repl, p->repl_len);
            for (size_t j = 0; ok && j < pc->len; j++)
                ok = s[j] == ' ' ? tok_buf_append(tmp, p->repl, p->repl_len) : tok_buf_append(tmp, s + j, 1);
            if (!ok)
                break;
            if (p->split)
                st = split_with(run, &p->pat, B_MERGED_NEXT, false, tmp->data, tmp->len, pc->at_start, out);
            else if (tmp->len)
                ok = pieces_add(out, tmp->data, tmp->len, -1, pc->at_start);
            break;
        }
        }
    }
    pieces_free(&split);
    if (st == AUGUR_OK && !ok)
        st = augur_fail(run->err, AUGUR_E_NOMEM, "tokenizer: out of memory");
    return st;
}

static augur_status hf_encode(const void *impl, const char *text, size_t len, bool add_special, tok_ids *ids,
                              augur_error *err)
{
    const tok_hf *hf = impl;
    size_t bad = tok_utf8_check(text, len);
    if (bad != len)
        return augur_fail(err, AUGUR_E_INPUT, "tokenizer_encode: text is not valid UTF-8 (byte %zu of %zu)", bad,
                          len);
    hf_run run = {.err = err};
    hf_pieces a = {0}, b = {0};
    tok_buf nb = {0}, tmp = {0};
    bpe_work w = {0};
    /* 1-2: added tokens around normalization */
    augur_status st = split_added(hf, &hf->raw, false, &run, text, len, true, &a);
    for (size_t i = 0; st == AUGUR_OK && i < a.n; i++) {
        if (a.v[i].id >= 0) {
            if (!pieces_add(&b, NULL, 0, a.v[i].id, false))
                st = augur_fail(err, AUGUR_E_NOMEM, "tokenizer: out of memory");
            continue;
        }
        st = normalize(hf->norms.v, hf->norms.n, &run, piece_text(&a, i), a.v[i].len, &nb);
        if (st == AUGUR_OK)
            st = split_added(hf, &hf->norm, true, &run, nb.data ? nb.data : "", nb.len, a.v[i].at_start, &b);
    }
    /* 3: pre-tokenizers, ping-ponging between the two lists */
    hf_pieces *cur = &b, *nxt = &a;
    const hf_pretok *pt = hf->pretoks.v;
    for (size_t k = 0; st == AUGUR_OK && k < hf->pretoks.n; k++) {
        pieces_clear(nxt);
        st = pretok_step(hf, &pt[k], &run, cur, nxt, &tmp);
        hf_pieces *t = cur;
        cur = nxt;
        nxt = t;
    }
    /* 4-5: model, then the post-processor's ids around the sequence */
    bool ok = true;
    for (size_t i = 0; add_special && ok && i < hf->prefix.n; i++)
        ok = tok_ids_push(ids, hf->prefix.v[i]);
    for (size_t i = 0; ok && st == AUGUR_OK && i < cur->n; i++) {
        if (cur->v[i].id >= 0)
            ok = tok_ids_push(ids, cur->v[i].id);
        else
            st = bpe_encode_word(&hf->bpe, &w, piece_text(cur, i), cur->v[i].len, ids, err);
    }
    for (size_t i = 0; add_special && ok && i < hf->suffix.n; i++)
        ok = tok_ids_push(ids, hf->suffix.v[i]);
    if (st == AUGUR_OK && !ok)
        st = augur_fail(err, AUGUR_E_NOMEM, "tokenizer: out of memory");
    pieces_free(&a);
    pieces_free(&b);
    tok_buf_free(&nb);
    tok_buf_free(&tmp);
    tok_buf_free(&w.scratch);
    free(w.sym);
    free(w.heap);
    run_free(&run);
    return st;
}

/* ======================================================================
 * Decode: ids -> token strings -> decoder chain -> text.
 * ====================================================================== */

static int hf_vocab_size(const void *impl)
{
    return ((const tok_hf *)impl)->n_total;
}

static int hf_bos(const void *impl)
{
    return ((const tok_hf *)impl)->bos;
}

static int hf_eos(const void *impl)
{
    return ((const tok_hf *)impl)->eos;
}

static bool hf_is_special(const void *impl, int32_t id)
{
    const tok_hf *hf = impl;
    return id >= 0 && id < hf->n_total && hf->added_by_id[id] >= 0 && hf->added[hf->added_by_id[id]].special;
}

static size_t hf_max_piece(const void *impl)
{
    return ((const tok_hf *)impl)->max_piece;
}

/* Token text for id; false when the id has none (the library skips those). A
 * normalized added token decodes from its normalized form, as the library does
 * since 0.19 (so the decoder can undo what the normalizer did). */
static bool token_text(const tok_hf *hf, int32_t id, const char **s, size_t *n)
{
    if (id < 0 || id >= hf->n_total)
        return false;
    if (hf->added_by_id[id] >= 0) {
        const hf_added *a = &hf->added[hf->added_by_id[id]];
        *s = a->normalized ? a->norm : a->content;
        *n = a->normalized ? a->norm_len : a->len;
        return true;
    }
    if (id < hf->bpe.n && hf->bpe.tok[id]) {
        *s = hf->bpe.tok[id];
        *n = hf->bpe.tok_len[id];
        return true;
    }
    return false;
}

/* "<0xAB>" -> 0xAB as the ByteFallback decoder parses it (u8::from_str_radix, which
 * also takes a leading '+'); -1 otherwise. */
static int byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0, digits = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        if (i == 3 && c == '+')
            continue;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
        digits++;
    }
    return digits ? v : -1;
}

/* skip_special drops a token whose decode text is a special token's content, so a
 * special token whose normalized form differs is kept (the library's behaviour). */
static bool skipped(const tok_hf *hf, int32_t id)
{
    if (!hf_is_special(hf, id))
        return false;
    const hf_added *a = &hf->added[hf->added_by_id[id]];
    return !a->normalized || (a->norm_len == a->len && !memcmp(a->norm, a->content, a->len));
}

/* Adds s as a piece with every occurrence of needle (when not empty) replaced by
 * with (a C string); t is scratch. */
static bool add_replaced(hf_pieces *out, const char *s, size_t n, const char *needle, size_t needle_len,
                         const char *with, tok_buf *t)
{
    bool ok = true;
    t->len = 0;
    for (size_t j = 0; ok && j < n;) {
        if (needle_len && j + needle_len <= n && !memcmp(s + j, needle, needle_len)) {
            ok = tok_buf_append(t, with, strlen(with));
            j += needle_len;
        } else {
            ok = tok_buf_append(t, s + j, 1);
            j++;
        }
    }
    return ok && pieces_add(out, t->data ? t->data : "", t->len, -1, false);
}

typedef struct {
    bool single;  /* decoding one token for the stream */
    bool first;   /* ...and it is the first one */
    bool fused;   /* a Fuse step has run */
} dec_mode;

/* Applies one decoder step to the token list in (producing out). */
static bool dec_step(const tok_hf *hf, const hf_dec *d, dec_mode *mode, hf_run *run, const hf_pieces *in,
                     hf_pieces *out, augur_status *st)
{
    bool ok = true;
    tok_buf t = {0};
    switch (d->kind) {
    case D_BYTELEVEL: {
        /* Tokens made only of stand-in characters become their bytes; any other
         * token passes through as is. Then the whole run is read as UTF-8. */
        for (size_t i = 0; ok && i < in->n; i++) {
            const char *s = piece_text(in, i);
            size_t n = in->v[i].len, mark = t.len;
            bool mapped = true;
            for (size_t j = 0; ok && j < n;) {
                size_t adv = tok_utf8_seq_len(s + j, n - j);
                uint32_t cp = adv ? tok_utf8_decode(s + j, n - j, &adv) : 0xFFFFFFFFu;
                if (!adv || cp >= 324 || hf->bl_dec[cp] < 0) {
                    mapped = false;
                    break;
                }
                char b = (char)hf->bl_dec[cp];
                ok = tok_buf_append(&t, &b, 1);
                j += adv;
            }
            if (ok && !mapped) {
                t.len = mark;
                ok = tok_buf_append(&t, s, n);
            }
        }
        if (!ok)
            break;
        if (mode->single) {
            ok = pieces_add(out, t.data ? t.data : "", t.len, -1, false);
        } else {
            tok_buf lossy = {0};
            ok = tok_utf8_lossy(&lossy, t.data ? t.data : "", t.len) &&
                 pieces_add(out, lossy.data ? lossy.data : "", lossy.len, -1, false);
            tok_buf_free(&lossy);
        }
        break;
    }
    case D_REPLACE:
        for (size_t i = 0; ok && i < in->n; i++) {
            const char *s = piece_text(in, i);
            size_t n = in->v[i].len;
            t.len = 0;
            /* A regex needs valid UTF-8; a lone byte from the stream's byte fallback
             * cannot contain the pattern anyway. */
            if (d->pat.kind == PAT_REGEX && tok_utf8_check(s, n) != n) {
                ok = pieces_add(out, s, n, -1, false);
                continue;
            }
            if ((*st = replace_matches(&d->pat, d->content, d->content_len, run, s, n, &t)) != AUGUR_OK) {
                tok_buf_free(&t);
                return false;
            }
            ok = pieces_add(out, t.data ? t.data : "", t.len, -1, false);
        }
        break;
    case D_BYTEFALLBACK:
        /* Runs of <0xXX> tokens become their bytes if those are valid UTF-8,
         * otherwise one U+FFFD per byte (the library's rule, not from_utf8_lossy). */
        for (size_t i = 0; ok && i <= in->n; i++) {
            int byte = i < in->n ? byte_token(piece_text(in, i), in->v[i].len) : -1;
            if (byte >= 0) {
                char c = (char)byte;
                ok = tok_buf_append(&t, &c, 1);
                continue;
            }
            if (t.len) {
                if (mode->single || tok_utf8_check(t.data, t.len) == t.len) {
                    ok = pieces_add(out, t.data, t.len, -1, false);
                } else {
                    for (size_t k = 0; ok && k < t.len; k++)
                        ok = pieces_add(out, "\xEF\xBF\xBD", 3, -1, false);
                }
                t.len = 0;
            }
            if (ok && i < in->n)
                ok = pieces_add(out, piece_text(in, i), in->v[i].len, -1, false);
        }
        break;
    case D_FUSE:
        for (size_t i = 0; ok && i < in->n; i++)
            ok = tok_buf_append(&t, piece_text(in, i), in->v[i].len);
        ok = ok && pieces_add(out, t.data ? t.data : "", t.len, -1, false);
        mode->fused = true;
        break;
    case D_STRIP:
        for (size_t i = 0; ok && i < in->n; i++) {
            const char *s = piece_text(in, i);
            size_t n = in->v[i].len, b = 0, e = n;
            /* After Fuse the list is the whole text, so a streamed token only has
             * a start to strip if it is the first one (and no end it knows of). */
            bool do_start = !(mode->single && mode->fused) || mode->first;
            bool do_stop = !(mode->single && mode->fused);
            for (size_t k = 0; do_start && k < d->start && b < n; k++) {
                size_t adv = tok_utf8_seq_len(s + b, n - b);
                if (!adv || tok_utf8_decode(s + b, n - b, &adv) != d->ch)
                    break;
                b += adv;
            }
            for (size_t k = 0; do_stop && k < d->stop && e > b; k++) {
                size_t st0 = tok_utf8_prev(s, b, e);
                size_t adv = tok_utf8_seq_len(s + st0, e - st0);
                if (!adv || adv != e - st0 || tok_utf8_decode(s + st0, e - st0, &adv) != d->ch)
                    break;
                e = st0;
            }
            ok = pieces_add(out, s + b, e - b, -1, false);
        }
        break;
    case D_METASPACE:
        for (size_t i = 0; ok && i < in->n; i++) {
            const char *s = piece_text(in, i);
            size_t n = in->v[i].len;
            bool index0 = mode->single ? (mode->first || mode->fused) : i == 0;
            char enc[4];
            size_t el = tok_utf8_encode(d->ch, enc);
            /* The library drops every mark of the first token, not just a prepended one. */
            bool drop = index0 && d->prepend != PREPEND_NEVER;
            ok = add_replaced(out, s, n, enc, el, drop ? "" : " ", &t);
        }
        break;
    case D_BPE:
        for (size_t i = 0; ok && i < in->n; i++) {
            const char *s = piece_text(in, i);
            size_t n = in->v[i].len;
            bool last = !mode->single && i + 1 == in->n;
            ok = add_replaced(out, s, n, d->content, d->content_len, last ? "" : " ", &t);
        }
        break;
    }
    tok_buf_free(&t);
    if (!ok)
        *st = augur_fail(run->err, AUGUR_E_NOMEM, "tokenizer: out of memory decoding");
    return ok;
}

/* Runs the decoder chain over tokens (consumed) and appends the joined text. */
static augur_status run_decoders(const tok_hf *hf, dec_mode mode, hf_pieces *tokens, tok_buf *out,
                                 augur_error *err)
{
    hf_run run = {.err = err};
    augur_status st = AUGUR_OK;
    bool ok = true;
    hf_pieces other = {0};
    hf_pieces *cur = tokens, *nxt = &other;
    const hf_dec *d = hf->decs.v;
    for (size_t k = 0; st == AUGUR_OK && k < hf->decs.n; k++) {
        pieces_clear(nxt);
        if (!dec_step(hf, &d[k], &mode, &run, cur, nxt, &st))
            break;
        hf_pieces *t = cur;
        cur = nxt;
        nxt = t;
    }
    /* Without a decoder the library joins tokens with spaces. */
    for (size_t i = 0; st == AUGUR_OK && ok && i < cur->n; i++) {
        bool space = !hf->has_decoder && (mode.single ? !mode.first : i > 0);
        ok = (!space || tok_buf_append(out, " ", 1)) && tok_buf_append(out, piece_text(cur, i), cur->v[i].len);
    }
    if (st == AUGUR_OK && !ok)
        st = augur_fail(err, AUGUR_E_NOMEM, "tokenizer: out of memory decoding");
    pieces_free(&other);
    run_free(&run);
    return st;
}

static augur_status hf_decode(const void *impl, const int32_t *ids, size_t n, bool skip_special, tok_buf *out,
                              augur_error *err)
{
    const tok_hf *hf = impl;
    hf_pieces toks = {0};
    augur_status st = AUGUR_OK;
    for (size_t i = 0; st == AUGUR_OK && i < n; i++) {
        const char *s;
        size_t len;
        if (!token_text(hf, ids[i], &s, &len)) {
            st = augur_fail(err, AUGUR_E_INPUT, "tokenizer.json: decode: id %d at position %zu is outside the "
                            "vocabulary (0..%d)", (int)ids[i], i, (int)hf->n_total - 1);
            break;
        }
        if (skip_special && skipped(hf, ids[i]))
            continue;
        if (!pieces_add(&toks, s, len, -1, false))
            st = augur_fail(err, AUGUR_E_NOMEM, "tokenizer: out of memory decoding");
    }
    tok_buf raw = {0};
    if (st == AUGUR_OK)
        st = run_decoders(hf, (dec_mode){false, false, false}, &toks, &raw, err);
    /* Every decoder step yields UTF-8 already; this only guards odd chains. */
    if (st == AUGUR_OK && !tok_utf8_lossy(out, raw.data ? raw.data : "", raw.len))
        st = augur_fail(err, AUGUR_E_NOMEM, "tokenizer: out of memory decoding");
    tok_buf_free(&raw);
    pieces_free(&toks);
    return st;
}

static int hf_token_piece(const void *impl, int32_t id, tok_stream_pos pos, bool skip_special, tok_buf *out)
{
    const tok_hf *hf = impl;
    const char *s;
    size_t len;
    if (!token_text(hf, id, &s, &len) || (skip_special && skipped(hf, id)))
        return 0;
    hf_pieces toks = {0};
    if (!pieces_add(&toks, s, len, -1, false)) {
        pieces_free(&toks);
        return -1;
    }
    augur_status st = run_decoders(hf, (dec_mode){true, pos.first, false}, &toks, out, NULL);
    pieces_free(&toks);
    return st == AUGUR_OK ? 1 : -1;
}

const tok_backend tok_hf_backend = {
    .load = hf_load,
    .free = hf_free,
    .encode = hf_encode,
    .decode = hf_decode,
    .piece = hf_token_piece,
    .vocab_size = hf_vocab_size,
    .bos = hf_bos,
    .eos = hf_eos,
    .is_special = hf_is_special,
    .max_piece = hf_max_piece,
};
