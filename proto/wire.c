/* Encode/decode/validate for every augur wire message (see wire.h for the contract).
 *
 * Layout of this file: shared helpers, then draft distributions, then one section per
 * message. Decoders unpack with protobuf-c (which returns NULL, never crashes, on
 * malformed or truncated bytes), validate the whole message, and only then copy it into
 * the caller's plain struct, so a rejected message leaves nothing half-built behind. */
#include "proto/wire.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "proto/augur.pb-c.h"

/* ---- shared helpers ---- */

/* "proposal from rank 2", or just "proposal" when the sender is unknown. */
static void name_sender(char *buf, size_t n, const char *what, const wire_expect *want)
{
    if (want && want->peer_rank >= 0)
        snprintf(buf, n, "%s from rank %d", what, want->peer_rank);
    else
        snprintf(buf, n, "%s", what);
}

static augur_status fail_at(augur_error *err, augur_status code, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static augur_status fail_at(augur_error *err, augur_status code, const char *who, const char *fmt, ...)
{
    char detail[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return augur_fail(err, code, "%s: %s", who, detail);
}

/* Completeness, version, request and round. A peer of another version may not write
 * the end mark, so its version is named first when it sent one; a mismatch of version,
 * request or round is a protocol error, not a malformed message. */
static augur_status check_header(const char *who, uint32_t version, uint32_t end_mark, uint64_t request_id,
                                 const uint32_t *round, const wire_expect *want, augur_error *err)
{
    if (version != AUGUR_WIRE_VERSION && version != 0)
        return fail_at(err, AUGUR_E_COMM, who, "wire version %u expected, got %u",
                       AUGUR_WIRE_VERSION, version);
    if (end_mark != AUGUR_WIRE_END_MARK)
        return fail_at(err, AUGUR_E_FORMAT, who, "incomplete message (end mark %s): truncated in transit?",
                       end_mark ? "wrong" : "missing");
    if (version != AUGUR_WIRE_VERSION)
        return fail_at(err, AUGUR_E_COMM, who, "wire version %u expected, got %u",
                       AUGUR_WIRE_VERSION, version);
    if (!want)
        return AUGUR_OK;
    if (want->request_id != WIRE_ANY_REQUEST && request_id != want->request_id)
        return fail_at(err, AUGUR_E_COMM, who, "request %" PRIu64 " expected, got %" PRIu64,
                       want->request_id, request_id);
    if (round && want->round != WIRE_ANY_ROUND && *round != want->round)
        return fail_at(err, AUGUR_E_COMM, who, "round %u expected, got %u", want->round, *round);
    return AUGUR_OK;
}

/* vocab <= 0 means the receiver cannot judge the upper bound; negatives are always wrong. */
static augur_status check_tokens(const char *who, const char *field, const int32_t *tokens, size_t n,
                                 int32_t vocab, augur_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || (vocab > 0 && tokens[i] >= vocab)) {
            if (vocab > 0)
                return fail_at(err, AUGUR_E_FORMAT, who, "%s[%zu] = %d outside vocabulary [0, %d)",
                               field, i, tokens[i], vocab);
            return fail_at(err, AUGUR_E_FORMAT, who, "%s[%zu] = %d is negative", field, i, tokens[i]);
        }
    }
    return AUGUR_OK;
}

static augur_status check_nonneg(const char *who, const char *field, double v, augur_error *err)
{
    if (!isfinite(v) || v < 0)
        return fail_at(err, AUGUR_E_FORMAT, who, "%s = %g, expected a finite value >= 0", field, v);
    return AUGUR_OK;
}

static augur_status pack_message(const ProtobufCMessage *m, const char *what, uint8_t **out, size_t *len,
                                 augur_error *err)
{
    size_t size = protobuf_c_message_get_packed_size(m);
    /* An all-default proto3 message packs to zero bytes; malloc(0) may return NULL. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return augur_fail(err, AUGUR_E_NOMEM, "%s: cannot allocate %zu bytes to encode", what, size);
    size_t wrote = protobuf_c_message_pack(m, buf);
    if (wrote != size) {
        free(buf);
        return augur_fail(err, AUGUR_E_INTERNAL, "%s: encoded %zu bytes, expected %zu", what, wrote, size);
    }
    *out = buf;
    *len = size;
    return AUGUR_OK;
}

static augur_status check_input(const char *who, const uint8_t *buf, size_t len, augur_error *err)
{
    if (!buf && len)
        return fail_at(err, AUGUR_E_INTERNAL, who, "NULL buffer of %zu bytes", len);
    return AUGUR_OK;
}

static augur_status malformed(const char *who, size_t len, augur_error *err)
{
    return fail_at(err, AUGUR_E_FORMAT, who, "malformed message (%zu bytes do not parse)", len);
}

/* Copies n ints into a fresh array; n == 0 gives NULL, which every free accepts. */
static augur_status dup_ints(const int32_t *src, size_t n, int32_t **dst, const char *who, augur_error *err)
{
    *dst = NULL;
    if (n == 0)
        return AUGUR_OK;
    *dst = malloc(n * sizeof **dst);
    if (!*dst)
        return fail_at(err, AUGUR_E_NOMEM, who, "cannot allocate %zu tokens", n);
    memcpy(*dst, src, n * sizeof **dst);
    return AUGUR_OK;
}

static augur_status dup_string(const char *src, char **dst, const char *who, augur_error *err)
{
    *dst = strdup(src ? src : "");
    if (!*dst)
        return fail_at(err, AUGUR_E_NOMEM, who, "cannot allocate a %zu-byte string", strlen(src ? src : ""));
    return AUGUR_OK;
}

/* ---- draft distributions ---- */

/* The wire carries little-endian fp32 whatever the host is. */
static void f32_to_le(const float *src, uint8_t *dst, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst, src, n * sizeof(float));
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        for (int b = 0; b < 4; b++)
            dst[4 * i + b] = (uint8_t)(u >> (8 * b));
    }
#endif
}

static void le_to_f32(const uint8_t *src, float *dst, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memmove(dst, src, n * sizeof(float));
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t u = 0;
        for (int b = 0; b < 4; b++)
            u |= (uint32_t)src[4 * i + b] << (8 * b);
        memcpy(&dst[i], &u, 4);
    }
#endif
}

static augur_status pack_sparse(const float *probs, int32_t vocab, size_t nnz, Augur__DraftDist *out,
                                augur_error *err)
{
    Augur__SparseDist *s = malloc(sizeof *s);
    uint32_t *ids = nnz ? malloc(nnz * sizeof *ids) : NULL;
    float *vals = nnz ? malloc(nnz * sizeof *vals) : NULL;
    if (!s || (nnz && (!ids || !vals))) {
        free(s);
        free(ids);
        free(vals);
        return augur_fail(err, AUGUR_E_NOMEM, "distribution: cannot allocate %zu sparse entries", nnz);
    }
    *s = (Augur__SparseDist)AUGUR__SPARSE_DIST__INIT;
    size_t k = 0;
    for (int32_t i = 0; i < vocab; i++) {
        if (probs[i] != 0.0f) {
            ids[k] = (uint32_t)i;
            vals[k] = probs[i];
            k++;
        }
    }
    s->n_ids = s->n_probs = nnz;
    s->ids = ids;
    s->probs = vals;
    out->form_case = AUGUR__DRAFT_DIST__FORM_SPARSE;
    out->sparse = s;
    return AUGUR_OK;
}

/* *cctx is created on first need and reused across a proposal's distributions. */
static augur_status pack_dense(const float *probs, int32_t vocab, ZSTD_CCtx **cctx, Augur__DraftDist *out,
                               augur_error *err)
{
    size_t raw_len = (size_t)vocab * sizeof(float);
    Augur__DenseDist *d = malloc(sizeof *d);
    uint8_t *raw = malloc(raw_len);
    if (!d || !raw) {
        free(d);
        free(raw);
        return augur_fail(err, AUGUR_E_NOMEM, "distribution: cannot allocate %zu dense bytes", raw_len);
    }
    *d = (Augur__DenseDist)AUGUR__DENSE_DIST__INIT;
    f32_to_le(probs, raw, (size_t)vocab);
    d->data.data = raw;
    d->data.len = raw_len;

    if (raw_len >= WIRE_ZSTD_MIN_BYTES) {
        /* The checksum (4 bytes) makes a damaged frame an error rather than other numbers. */
        if (!*cctx && (*cctx = ZSTD_createCCtx()) != NULL &&
            (ZSTD_isError(ZSTD_CCtx_setParameter(*cctx, ZSTD_c_compressionLevel, WIRE_ZSTD_LEVEL)) ||
             ZSTD_isError(ZSTD_CCtx_setParameter(*cctx, ZSTD_c_checksumFlag, 1)))) {
            ZSTD_freeCCtx(*cctx);
            *cctx = NULL;
        }
        size_t bound = ZSTD_compressBound(raw_len);
        uint8_t *packed = *cctx ? malloc(bound) : NULL;
        if (!packed) {
            free(raw);
            free(d);
            return augur_fail(err, AUGUR_E_NOMEM, "distribution: cannot set up zstd for %zu bytes", raw_len);
        }
        size_t got = ZSTD_compress2(*cctx, packed, bound, raw, raw_len);
        /* Keep the frame only when it pays: near-uniform float noise barely compresses,
         * and then the receiver should not spend time decompressing it. */
        if (!ZSTD_isError(got) && got <= raw_len - raw_len / 10) {
            free(raw);
            d->data.data = packed;
            d->data.len = got;
            d->zstd = 1;
        } else {
            free(packed);
        }
    }
    out->form_case = AUGUR__DRAFT_DIST__FORM_DENSE;
    out->dense = d;
    return AUGUR_OK;
}

static augur_status dist_pack(const float *probs, int32_t vocab, ZSTD_CCtx **cctx, Augur__DraftDist *out,
                              augur_error *err)
{
    if (!probs || vocab <= 0)
        return augur_fail(err, AUGUR_E_INTERNAL, "distribution: nothing to pack (vocabulary %d)", vocab);
    size_t nnz = 0;
    for (int32_t i = 0; i < vocab; i++)
        nnz += probs[i] != 0.0f;
    /* A sparse entry costs ~5-7 bytes against 4 for a dense slot, so sparse wins up to a
     * quarter full with room to spare. */
    if (nnz <= (size_t)vocab / 4)
        return pack_sparse(probs, vocab, nnz, out, err);
    return pack_dense(probs, vocab, cctx, out, err);
}

augur_status wire_dist_pack(const float *probs, int32_t vocab, Augur__DraftDist *out, augur_error *err)
{
    ZSTD_CCtx *cctx = NULL;
    augur_status st = dist_pack(probs, vocab, &cctx, out, err);
    ZSTD_freeCCtx(cctx);
    return st;
}

void wire_dist_release(Augur__DraftDist *d)
{
    if (!d)
        return;
    if (d->form_case == AUGUR__DRAFT_DIST__FORM_DENSE && d->dense) {
        free(d->dense->data.data);
        free(d->dense);
    } else if (d->form_case == AUGUR__DRAFT_DIST__FORM_SPARSE && d->sparse) {
        free(d->sparse->ids);
        free(d->sparse->probs);
        free(d->sparse);
    }
    *d = (Augur__DraftDist)AUGUR__DRAFT_DIST__INIT;
}

static augur_status unpack_dense(const Augur__DenseDist *d, int32_t vocab, float *probs, augur_error *err)
{
    size_t need = (size_t)vocab * sizeof(float);
    const uint8_t *data = d->data.data;
    size_t len = d->data.len;
    if (d->zstd) {
        unsigned long long declared = ZSTD_getFrameContentSize(data, len);
        if (declared == ZSTD_CONTENTSIZE_ERROR)
            return augur_fail(err, AUGUR_E_FORMAT, "dense: %zu bytes flagged zstd are not a zstd frame", len);
        if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != need)
            return augur_fail(err, AUGUR_E_FORMAT, "dense: decompresses to %llu bytes, vocabulary %d needs %zu",
                              declared, vocab, need);
        /* Decompressing straight into the caller's array bounds the output by need. */
        size_t got = ZSTD_decompress(probs, need, data, len);
        if (ZSTD_isError(got))
            return augur_fail(err, AUGUR_E_FORMAT, "dense: corrupt zstd frame (%s)", ZSTD_getErrorName(got));
        if (got != need)
            return augur_fail(err, AUGUR_E_FORMAT, "dense: decompresses to %zu bytes, vocabulary %d needs %zu",
                              got, vocab, need);
        le_to_f32((const uint8_t *)probs, probs, (size_t)vocab);
    } else {
        if (len != need)
            return augur_fail(err, AUGUR_E_FORMAT, "dense: %zu bytes, vocabulary %d needs %zu", len, vocab, need);
        le_to_f32(data, probs, (size_t)vocab);
    }
    for (int32_t i = 0; i < vocab; i++) {
        if (!isfinite(probs[i]) || probs[i] < 0)
            return augur_fail(err, AUGUR_E_FORMAT, "dense: probability of token %d is %g", i, probs[i]);
    }
    return AUGUR_OK;
}

static augur_status unpack_sparse(const Augur__SparseDist *s, int32_t vocab, float *probs, augur_error *err)
{
    if (s->n_ids != s->n_probs)
        return augur_fail(err, AUGUR_E_FORMAT, "sparse: %zu ids but %zu probs", s->n_ids, s->n_probs);
    memset(probs, 0, (size_t)vocab * sizeof *probs);
    for (size_t i = 0; i < s->n_ids; i++) {
        uint32_t id = s->ids[i];
        if (id >= (uint32_t)vocab)
            return augur_fail(err, AUGUR_E_FORMAT, "sparse: ids[%zu] = %u outside vocabulary [0, %d)", i, id, vocab);
        /* Strictly increasing rules out duplicates, whose meaning would be ambiguous. */
        if (i > 0 && id <= s->ids[i - 1])
            return augur_fail(err, AUGUR_E_FORMAT, "sparse: ids not strictly increasing at ids[%zu] = %u", i, id);
        float p = s->probs[i];
        if (!isfinite(p) || p < 0)
            return augur_fail(err, AUGUR_E_FORMAT, "sparse: probs[%zu] (token %u) is %g", i, id, p);
        probs[id] = p;
    }
    return AUGUR_OK;
}

augur_status wire_dist_unpack(const Augur__DraftDist *d, int32_t vocab, float *probs, augur_error *err)
{
    if (vocab <= 0 || !probs)
        return augur_fail(err, AUGUR_E_INTERNAL, "distribution: no room to unpack (vocabulary %d)", vocab);
    if (d->form_case == AUGUR__DRAFT_DIST__FORM_DENSE && d->dense)
        return unpack_dense(d->dense, vocab, probs, err);
    if (d->form_case == AUGUR__DRAFT_DIST__FORM_SPARSE && d->sparse)
        return unpack_sparse(d->sparse, vocab, probs, err);
    return augur_fail(err, AUGUR_E_FORMAT, "neither a dense nor a sparse distribution");
}

/* ---- Proposal ---- */

augur_status wire_proposal_encode(const wire_proposal *p, uint8_t **out, size_t *len, augur_error *err)
{
    if (p->n_tokens < 0 || (p->n_tokens > 0 && !p->tokens))
        return augur_fail(err, AUGUR_E_INTERNAL, "proposal: %d tokens without a token array", p->n_tokens);
    if (p->dists && p->vocab_size <= 0)
        return augur_fail(err, AUGUR_E_INTERNAL, "proposal: distributions without a vocabulary size");
    size_t n = (size_t)p->n_tokens;
    Augur__Proposal m = AUGUR__PROPOSAL__INIT;
    m.version = AUGUR_WIRE_VERSION;
    m.end_mark = AUGUR_WIRE_END_MARK;
    m.request_id = p->request_id;
    m.round = p->round;
    m.start_position = p->start_position;
    m.n_tokens = n;
    m.tokens = p->tokens;
    m.n_entropies = p->entropies ? n : 0;
    m.entropies = p->entropies;
    m.draft_ms = p->draft_ms;
    m.hidden_ms = p->hidden_ms;
    m.vocab_size = p->vocab_size > 0 ? (uint32_t)p->vocab_size : 0;

    Augur__DraftDist *dists = NULL;
    Augur__DraftDist **ptrs = NULL;
    ZSTD_CCtx *cctx = NULL;
    augur_status st = AUGUR_OK;
    if (p->dists && n > 0) {
        dists = calloc(n, sizeof *dists);
        ptrs = calloc(n, sizeof *ptrs);
        if (!dists || !ptrs) {
            st = augur_fail(err, AUGUR_E_NOMEM, "proposal: cannot allocate %zu distributions", n);
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            dists[i] = (Augur__DraftDist)AUGUR__DRAFT_DIST__INIT;
            ptrs[i] = &dists[i];
        }
        for (size_t i = 0; i < n && st == AUGUR_OK; i++) {
            st = dist_pack(p->dists + i * (size_t)p->vocab_size, p->vocab_size, &cctx, &dists[i], err);
            if (st != AUGUR_OK)
                augur_wrap(err, "proposal: dists[%zu]", i);
        }
        if (st != AUGUR_OK)
            goto done;
        m.n_dists = n;
        m.dists = ptrs;
    }
    st = pack_message(&m.base, "proposal", out, len, err);
done:
    if (dists) {
        for (size_t i = 0; i < n; i++)
            wire_dist_release(&dists[i]);
    }
    free(dists);
    free(ptrs);
    ZSTD_freeCCtx(cctx);
    return st;
}

static augur_status validate_proposal(const char *who, const Augur__Proposal *m, const wire_expect *want,
                                      augur_error *err)
{
    augur_status st = check_header(who, m->version, m->end_mark, m->request_id, &m->round, want, err);
    if (st != AUGUR_OK)
        return st;
    size_t n = m->n_tokens;
    if (n > WIRE_MAX_DRAFT_TOKENS)
        return fail_at(err, AUGUR_E_FORMAT, who, "%zu tokens exceed the limit of %d", n, WIRE_MAX_DRAFT_TOKENS);
    if (m->n_dists != 0 && m->n_dists != n)
        return fail_at(err, AUGUR_E_FORMAT, who, "%zu tokens but %zu distributions", n, m->n_dists);
    if (m->n_entropies != 0 && m->n_entropies != n)
        return fail_at(err, AUGUR_E_FORMAT, who, "%zu tokens but %zu entropies", n, m->n_entropies);
    if (m->n_dists && m->vocab_size != (uint32_t)want->vocab_size)
        return fail_at(err, AUGUR_E_FORMAT, who, "distributions over a vocabulary of %u, the receiver's has %d",
                       m->vocab_size, want->vocab_size);
    st = check_tokens(who, "tokens", m->tokens, n, want->vocab_size, err);
    if (st != AUGUR_OK)
        return st;
    char field[32];
    for (size_t i = 0; i < m->n_entropies; i++) {
        snprintf(field, sizeof field, "entropies[%zu]", i);
        if ((st = check_nonneg(who, field, m->entropies[i], err)) != AUGUR_OK)
            return st;
    }
    if ((st = check_nonneg(who, "draft_ms", m->draft_ms, err)) != AUGUR_OK)
        return st;
    return check_nonneg(who, "hidden_ms", m->hidden_ms, err);
}

static augur_status fill_proposal(const char *who, const Augur__Proposal *m, int32_t vocab, wire_proposal *out,
                                  augur_error *err)
{
    size_t n = m->n_tokens;
    out->request_id = m->request_id;
    out->round = m->round;
    out->start_position = m->start_position;
    out->n_tokens = (int)n;
    out->vocab_size = vocab;
    out->draft_ms = m->draft_ms;
    out->hidden_ms = m->hidden_ms;
    augur_status st = dup_ints(m->tokens, n, &out->tokens, who, err);
    if (st != AUGUR_OK)
        return st;
    if (m->n_entropies) {
        out->entropies = malloc(n * sizeof *out->entropies);
        if (!out->entropies)
            return fail_at(err, AUGUR_E_NOMEM, who, "cannot allocate %zu entropies", n);
        memcpy(out->entropies, m->entropies, n * sizeof *out->entropies);
    }
    if (m->n_dists) {
        out->dists = malloc(n * (size_t)vocab * sizeof *out->dists);
        if (!out->dists)
            return fail_at(err, AUGUR_E_NOMEM, who, "cannot allocate %zu distributions over %d tokens", n, vocab);
        for (size_t i = 0; i < n; i++) {
            st = wire_dist_unpack(m->dists[i], vocab, out->dists + i * (size_t)vocab, err);
            if (st != AUGUR_OK)
                return augur_wrap(err, "%s: dists[%zu]", who, i);
        }
    }
    return AUGUR_OK;
}

augur_status wire_proposal_decode(const uint8_t *buf, size_t len, const wire_expect *want, wire_proposal *out,
                                  augur_error *err)
{
    char who[64];
    name_sender(who, sizeof who, "proposal", want);
    memset(out, 0, sizeof *out);
    if (!want || want->vocab_size <= 0)
        return fail_at(err, AUGUR_E_INTERNAL, who, "the receiver's vocabulary size is not set");
    augur_status st = check_input(who, buf, len, err);
    if (st != AUGUR_OK)
        return st;
    Augur__Proposal *m = augur__proposal__unpack(NULL, len, buf);
    if (!m)
        return malformed(who, len, err);
    st = validate_proposal(who, m, want, err);
    if (st == AUGUR_OK)
        st = fill_proposal(who, m, want->vocab_size, out, err);
    augur__proposal__free_unpacked(m, NULL);
    if (st != AUGUR_OK)
        wire_proposal_free(out);
    return st;
}

void wire_proposal_free(wire_proposal *p)
{
    if (!p)
        return;
    free(p->tokens);
    free(p->dists);
    free(p->entropies);
    memset(p, 0, sizeof *p);
}

/* ---- Verdict (and the Accept body of a Command, which carries the same facts) ---- */

static augur_status check_outcome(const char *who, uint32_t accepted, int32_t next_token, bool finished,
                                  uint32_t new_length, int32_t vocab, augur_error *err)
{
    if (!(finished && next_token == -1) && (next_token < 0 || (vocab > 0 && next_token >= vocab))) {
        if (next_token == -1)
            return fail_at(err, AUGUR_E_FORMAT, who, "next_token = -1 (none) but the request is not finished");
        if (vocab > 0)
            return fail_at(err, AUGUR_E_FORMAT, who, "next_token = %d outside vocabulary [0, %d)", next_token, vocab);
        return fail_at(err, AUGUR_E_FORMAT, who, "next_token = %d is negative", next_token);
    }
    if (new_length < accepted)
        return fail_at(err, AUGUR_E_FORMAT, who, "new_length %u is shorter than the %u accepted tokens",
                       new_length, accepted);
    return AUGUR_OK;
}

augur_status wire_verdict_encode(const wire_verdict *v, uint8_t **out, size_t *len, augur_error *err)
{
    Augur__Verdict m = AUGUR__VERDICT__INIT;
    m.version = AUGUR_WIRE_VERSION;
    m.end_mark = AUGUR_WIRE_END_MARK;
    m.request_id = v->request_id;
    m.round = v->round;
    m.accepted = v->accepted;
    m.next_token = v->next_token;
    m.finished = v->finished;
    m.new_length = v->new_length;
    m.burst_rest = v->burst_rest;
    return pack_message(&m.base, "verdict", out, len, err);
}

augur_status wire_verdict_decode(const uint8_t *buf, size_t len, const wire_expect *want, wire_verdict *out,
                                 augur_error *err)
{
    char who[64];
    name_sender(who, sizeof who, "verdict", want);
    memset(out, 0, sizeof *out);
    augur_status st = check_input(who, buf, len, err);
    if (st != AUGUR_OK)
        return st;
    Augur__Verdict *m = augur__verdict__unpack(NULL, len, buf);
    if (!m)
        return malformed(who, len, err);
    st = check_header(who, m->version, m->end_mark, m->request_id, &m->round, want, err);
    if (st == AUGUR_OK)
        st = check_outcome(who, m->accepted, m->next_token, m->finished, m->new_length,
                           want ? want->vocab_size : 0, err);
    if (st == AUGUR_OK) {
        out->request_id = m->request_id;
        out->round = m->round;
        out->accepted = m->accepted;
        out->next_token = m->next_token;
        out->finished = m->finished;
        out->new_length = m->new_length;
        out->burst_rest = m->burst_rest;
    }
    augur__verdict__free_unpacked(m, NULL);
    return st;
}

/* ---- Request ---- */

augur_status wire_request_encode(const wire_request *r, uint8_t **out, size_t *len, augur_error *err)
{
    if (!r->prompt_text && r->n_prompt_tokens > 0 && !r->prompt_tokens)
        return augur_fail(err, AUGUR_E_INTERNAL, "request: %d prompt tokens without an array", r->n_prompt_tokens);
    Augur__Request m = AUGUR__REQUEST__INIT;
    Augur__TokenList tokens = AUGUR__TOKEN_LIST__INIT;
    Augur__SamplingParams sp = AUGUR__SAMPLING_PARAMS__INIT;
    Augur__DraftRule rule = AUGUR__DRAFT_RULE__INIT;
    m.version = AUGUR_WIRE_VERSION;
    m.end_mark = AUGUR_WIRE_END_MARK;
    m.request_id = r->request_id;
    if (r->prompt_text) {
        m.prompt_case = AUGUR__REQUEST__PROMPT_TEXT;
        m.text = r->prompt_text;
    } else {
        tokens.n_ids = r->n_prompt_tokens > 0 ? (size_t)r->n_prompt_tokens : 0;
        tokens.ids = r->prompt_tokens;
        m.prompt_case = AUGUR__REQUEST__PROMPT_TOKENS;
        m.tokens = &tokens;
    }
    m.max_tokens = r->max_tokens;
    sp.temperature = r->sampling.temperature;
    sp.top_k = r->sampling.top_k;
    sp.top_p = r->sampling.top_p;
    sp.seed = r->sampling.seed;
    m.sampling = &sp;
    rule.kind = (Augur__DraftRule__Kind)r->rule.kind;
    rule.max_len = r->rule.max_len;
    rule.tau = r->rule.tau;
    rule.lambda = r->rule.lambda;
    rule.window = r->rule.window;
    m.draft = &rule;
    m.overlap = r->overlap;
    m.debug_draft_exit_after = r->debug_draft_exit_after;
    m.slot = r->slot;
    m.draw_key = r->draw_key;
    m.want_entropies = r->want_entropies;
    m.overlap_shared_gpu = r->overlap_shared_gpu;
    return pack_message(&m.base, "request", out, len, err);
}

static augur_status validate_sampling(const char *who, const Augur__SamplingParams *sp, augur_error *err)
{
    if (!sp)
        return fail_at(err, AUGUR_E_FORMAT, who, "no sampling parameters");
    augur_status st = check_nonneg(who, "sampling.temperature", sp->temperature, err);
    if (st != AUGUR_OK)
        return st;
    if (sp->top_k < 0)
        return fail_at(err, AUGUR_E_FORMAT, who, "sampling.top_k = %d is negative", sp->top_k);
    if (!(sp->top_p > 0 && sp->top_p <= 1))
        return fail_at(err, AUGUR_E_FORMAT, who, "sampling.top_p = %g outside (0, 1]", sp->top_p);
    return AUGUR_OK;
}

static augur_status validate_rule(const char *who, const Augur__DraftRule *rule, augur_error *err)
{
    if (!rule)
        return fail_at(err, AUGUR_E_FORMAT, who, "no draft rule");
    if ((int)rule->kind < WIRE_RULE_FIXED || (int)rule->kind > WIRE_RULE_NONE)
        return fail_at(err, AUGUR_E_FORMAT, who, "draft rule kind %d unknown", (int)rule->kind);
    if (rule->kind != AUGUR__DRAFT_RULE__KIND__NONE &&
        (rule->max_len < 1 || rule->max_len > WIRE_MAX_DRAFT_TOKENS))
        return fail_at(err, AUGUR_E_FORMAT, who, "draft rule max_len = %u outside [1, %d]", rule->max_len,
                       WIRE_MAX_DRAFT_TOKENS);
    if (!isfinite(rule->tau) || !isfinite(rule->lambda))
        return fail_at(err, AUGUR_E_FORMAT, who, "draft rule tau = %g, lambda = %g: both must be finite",
                       rule->tau, rule->lambda);
    return AUGUR_OK;
}

static augur_status validate_request(const char *who, const Augur__Request *m, const wire_expect *want,
                                     augur_error *err)
{
    augur_status st = check_header(who, m->version, m->end_mark, m->request_id, NULL, want, err);
    if (st != AUGUR_OK)
        return st;
    if (m->prompt_case == AUGUR__REQUEST__PROMPT_TOKENS && m->tokens)
        st = check_tokens(who, "prompt tokens", m->tokens->ids, m->tokens->n_ids, want ? want->vocab_size : 0, err);
    else if (m->prompt_case != AUGUR__REQUEST__PROMPT_TEXT)
        st = fail_at(err, AUGUR_E_FORMAT, who, "no prompt (neither text nor tokens)");
    if (st != AUGUR_OK)
        return st;
    if (m->max_tokens < 1)
        return fail_at(err, AUGUR_E_FORMAT, who, "max_tokens = 0, at least 1 expected");
    if ((st = validate_sampling(who, m->sampling, err)) != AUGUR_OK)
        return st;
    return validate_rule(who, m->draft, err);
}

augur_status wire_request_decode(const uint8_t *buf, size_t len, const wire_expect *want, wire_request *out,
                                 augur_error *err)
{
    char who[64];
    name_sender(who, sizeof who, "request", want);
    memset(out, 0, sizeof *out);
    augur_status st = check_input(who, buf, len, err);
    if (st != AUGUR_OK)
        return st;
    Augur__Request *m = augur__request__unpack(NULL, len, buf);
    if (!m)
        return malformed(who, len, err);
    st = validate_request(who, m, want, err);
    if (st == AUGUR_OK) {
        out->request_id = m->request_id;
        if (m->prompt_case == AUGUR__REQUEST__PROMPT_TEXT) {
            st = dup_string(m->text, &out->prompt_text, who, err);
        } else {
            out->n_prompt_tokens = (int)m->tokens->n_ids;
            st = dup_ints(m->tokens->ids, m->tokens->n_ids, &out->prompt_tokens, who, err);
        }
        out->max_tokens = m->max_tokens;
        out->sampling = (wire_sampling){m->sampling->temperature, m->sampling->top_k, m->sampling->top_p,
                                        m->sampling->seed};
        out->rule = (wire_draft_rule){(wire_rule_kind)m->draft->kind, m->draft->max_len, m->draft->tau,
                                      m->draft->lambda, m->draft->window};
        out->overlap = m->overlap;
        out->debug_draft_exit_after = m->debug_draft_exit_after;
        out->slot = m->slot;
        out->draw_key = m->draw_key;
        out->want_entropies = m->want_entropies;
        out->overlap_shared_gpu = m->overlap_shared_gpu;
    }
    augur__request__free_unpacked(m, NULL);
    if (st != AUGUR_OK)
        wire_request_free(out);
    return st;
}

void wire_request_free(wire_request *r)
{
    if (!r)
        return;
    free(r->prompt_text);
    free(r->prompt_tokens);
    memset(r, 0, sizeof *r);
}

/* ---- Result ---- */

augur_status wire_result_encode(const wire_result *r, uint8_t **out, size_t *len, augur_error *err)
{
    if (r->n_tokens < 0 || (r->n_tokens > 0 && !r->tokens))
        return augur_fail(err, AUGUR_E_INTERNAL, "result: %d tokens without a token array", r->n_tokens);
    Augur__Result m = AUGUR__RESULT__INIT;
    Augur__Stats s = AUGUR__STATS__INIT;
    m.version = AUGUR_WIRE_VERSION;
    m.end_mark = AUGUR_WIRE_END_MARK;
    m.request_id = r->request_id;
    m.n_tokens = (size_t)r->n_tokens;
    m.tokens = r->tokens;
    /* protobuf-c packs a proto3 string only when it differs from its shared empty string. */
    m.text = r->text ? r->text : (char *)protobuf_c_empty_string;
    s.rounds = r->stats.rounds;
    s.accepted = r->stats.accepted;
    s.proposed = r->stats.proposed;
    s.draft_ms = r->stats.draft_ms;
    s.target_ms = r->stats.target_ms;
    s.comm_ms = r->stats.comm_ms;
    s.sample_ms = r->stats.sample_ms;
    s.total_ms = r->stats.total_ms;
    m.stats = &s;
    return pack_message(&m.base, "result", out, len, err);
}

static augur_status validate_stats(const char *who, const Augur__Stats *s, augur_error *err)
{
    if (!s)
        return AUGUR_OK; /* all zeros: nothing was timed */
    if (s->accepted > s->proposed)
        return fail_at(err, AUGUR_E_FORMAT, who, "stats: %u accepted of %u proposed", s->accepted, s->proposed);
    const double times[] = {s->draft_ms, s->target_ms, s->comm_ms, s->sample_ms, s->total_ms};
    const char *names[] = {"stats.draft_ms", "stats.target_ms", "stats.comm_ms", "stats.sample_ms",
                           "stats.total_ms"};
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        augur_status st = check_nonneg(who, names[i], times[i], err);
        if (st != AUGUR_OK)
            return st;
    }
    return AUGUR_OK;
}

augur_status wire_result_decode(const uint8_t *buf, size_t len, const wire_expect *want, wire_result *out,
                                augur_error *err)
{
    char who[64];
    name_sender(who, sizeof who, "result", want);
    memset(out, 0, sizeof *out);
    augur_status st = check_input(who, buf, len, err);
    if (st != AUGUR_OK)
        return st;
    Augur__Result *m = augur__result__unpack(NULL, len, buf);
    if (!m)
        return malformed(who, len, err);
    st = check_header(who, m->version, m->end_mark, m->request_id, NULL, want, err);
    if (st == AUGUR_OK)
        st = check_tokens(who, "tokens", m->tokens, m->n_tokens, want ? want->vocab_size : 0, err);
    if (st == AUGUR_OK)
        st = validate_stats(who, m->stats, err);
    if (st == AUGUR_OK) {
        out->request_id = m->request_id;
        out->n_tokens = (int)m->n_tokens;
        st = dup_ints(m->tokens, m->n_tokens, &out->tokens, who, err);
        if (st == AUGUR_OK)
            st = dup_string(m->text, &out->text, who, err);
        if (m->stats) {
            const Augur__Stats *s = m->stats;
            out->stats = (wire_stats){s->rounds, s->accepted, s->proposed, s->draft_ms, s->target_ms,
                                      s->comm_ms, s->sample_ms, s->total_ms};
        }
    }
    augur__result__free_unpacked(m, NULL);
    if (st != AUGUR_OK)
        wire_result_free(out);
    return st;
}

void wire_result_free(wire_result *r)
{
    if (!r)
        return;
    free(r->tokens);
    free(r->text);
    memset(r, 0, sizeof *r);
}

/* ---- Command ---- */

/* The batched bodies: their segments and trims point into c's arrays (only read). */
static augur_status encode_batch(const wire_command *c, Augur__Command *m, Augur__VerifyBatch *vb,
                                 Augur__AcceptBatch *ab, uint8_t **out, size_t *len, augur_error *err)
{
    bool verify = c->kind == WIRE_CMD_VERIFY_BATCH;
    int n = verify ? c->n_segments : c->n_trims;
    if (n < 0 || (n > 0 && !(verify ? (void *)c->segments : (void *)c->trims)))
        return augur_fail(err, AUGUR_E_INTERNAL, "command: batch of %d entries without an array", n);
    size_t each = verify ? sizeof(Augur__Segment) + sizeof(Augur__Segment *) : sizeof(Augur__Trim) + sizeof(Augur__Trim *);
    uint8_t *mem = calloc(n ? (size_t)n : 1, each);
    if (!mem)
        return augur_fail(err, AUGUR_E_NOMEM, "command: cannot allocate a batch of %d entries", n);
    augur_status st = AUGUR_OK;
    if (verify) {
        Augur__Segment **ptrs = (Augur__Segment **)mem;
        Augur__Segment *segs = (Augur__Segment *)(mem + (size_t)n * sizeof *ptrs);
        for (int i = 0; i < n && !st; i++) {
            const wire_segment *w = &c->segments[i];
            if (w->n_tokens < 1 || !w->tokens)
                st = augur_fail(err, AUGUR_E_INTERNAL, "command: segment %d of %d tokens without an array", i,
                                w->n_tokens);
            augur__segment__init(&segs[i]);
            segs[i].request_id = w->request_id;
            segs[i].slot = w->slot;
            segs[i].start_position = w->start_position;
            segs[i].n_tokens = (size_t)w->n_tokens;
            segs[i].tokens = w->tokens;
            segs[i].gather = w->gather;
            ptrs[i] = &segs[i];
        }
        vb->n_segments = (size_t)n;
        vb->segments = ptrs;
        m->body_case = AUGUR__COMMAND__BODY_VERIFY_BATCH;
        m->verify_batch = vb;
    } else {
        Augur__Trim **ptrs = (Augur__Trim **)mem;
        Augur__Trim *trims = (Augur__Trim *)(mem + (size_t)n * sizeof *ptrs);
        for (int i = 0; i < n; i++) {
            augur__trim__init(&trims[i]);
            trims[i].request_id = c->trims[i].request_id;
            trims[i].slot = c->trims[i].slot;
            trims[i].new_length = c->trims[i].new_length;
            trims[i].finished = c->trims[i].finished;
            ptrs[i] = &trims[i];
        }
        ab->n_trims = (size_t)n;
        ab->trims = ptrs;
        m->body_case = AUGUR__COMMAND__BODY_ACCEPT_BATCH;
        m->accept_batch = ab;
    }
    if (!st)
        st = pack_message(&m->base, "command", out, len, err);
    free(mem);
    return st;
}

static augur_status fill_verify_batch(const char *who, const Augur__VerifyBatch *b, int32_t vocab, wire_command *out,
                                      augur_error *err)
{
    if (b->n_segments < 1 || b->n_segments > WIRE_MAX_SEGMENTS)
        return fail_at(err, AUGUR_E_FORMAT, who, "verify batch of %zu segments (expected 1..%d)", b->n_segments,
                       WIRE_MAX_SEGMENTS);
    out->kind = WIRE_CMD_VERIFY_BATCH;
    out->segments = calloc(b->n_segments, sizeof *out->segments);
    if (!out->segments)
        return fail_at(err, AUGUR_E_NOMEM, who, "cannot allocate %zu segments", b->n_segments);
    out->n_segments = (int)b->n_segments;
    for (size_t i = 0; i < b->n_segments; i++) {
        const Augur__Segment *g = b->segments[i];
        if (g->n_tokens < 1 || g->n_tokens > WIRE_MAX_DRAFT_TOKENS + 1)
            return fail_at(err, AUGUR_E_FORMAT, who, "segment %zu (request %" PRIu64 ") has %zu tokens (expected 1..%d)",
                           i, g->request_id, g->n_tokens, WIRE_MAX_DRAFT_TOKENS + 1);
        augur_status st = check_tokens(who, "segment tokens", g->tokens, g->n_tokens, vocab, err);
        if (st != AUGUR_OK)
            return st;
        wire_segment *w = &out->segments[i];
        *w = (wire_segment){.request_id = g->request_id, .slot = g->slot, .start_position = g->start_position,
                            .n_tokens = (int)g->n_tokens, .gather = g->gather};
        if ((st = dup_ints(g->tokens, g->n_tokens, &w->tokens, who, err)))
            return st;
    }
    return AUGUR_OK;
}

static augur_status fill_accept_batch(const char *who, const Augur__AcceptBatch *b, wire_command *out,
                                      augur_error *err)
{
    if (b->n_trims < 1 || b->n_trims > WIRE_MAX_SEGMENTS)
        return fail_at(err, AUGUR_E_FORMAT, who, "accept batch of %zu trims (expected 1..%d)", b->n_trims,
                       WIRE_MAX_SEGMENTS);
    out->kind = WIRE_CMD_ACCEPT_BATCH;
    out->trims = calloc(b->n_trims, sizeof *out->trims);
    if (!out->trims)
        return fail_at(err, AUGUR_E_NOMEM, who, "cannot allocate %zu trims", b->n_trims);
    out->n_trims = (int)b->n_trims;
    for (size_t i = 0; i < b->n_trims; i++) {
        const Augur__Trim *t = b->trims[i];
        if (t->new_length < 1)
            return fail_at(err, AUGUR_E_FORMAT, who, "trim %zu (request %" PRIu64 ", slot %u): new_length 0", i,
                           t->request_id, t->slot);
        out->trims[i] = (wire_trim){.request_id = t->request_id, .slot = t->slot, .new_length = t->new_length,
                                    .finished = t->finished};
    }
    return AUGUR_OK;
}

augur_status wire_command_encode(const wire_command *c, uint8_t **out, size_t *len, augur_error *err)
{
    Augur__Command m = AUGUR__COMMAND__INIT;
    Augur__Verify verify = AUGUR__VERIFY__INIT;
    Augur__Accept accept = AUGUR__ACCEPT__INIT;
    Augur__Stop stop = AUGUR__STOP__INIT;
    Augur__Free free_body = AUGUR__FREE__INIT;
    Augur__VerifyBatch vb = AUGUR__VERIFY_BATCH__INIT;
    Augur__AcceptBatch ab = AUGUR__ACCEPT_BATCH__INIT;
    m.version = AUGUR_WIRE_VERSION;
    m.end_mark = AUGUR_WIRE_END_MARK;
    m.request_id = c->request_id;
    m.round = c->round;
    m.slot = c->slot;
    if (c->kind == WIRE_CMD_VERIFY_BATCH || c->kind == WIRE_CMD_ACCEPT_BATCH)
        return encode_batch(c, &m, &vb, &ab, out, len, err);
    switch (c->kind) {
    case WIRE_CMD_VERIFY:
        if (c->n_tokens < 0 || (c->n_tokens > 0 && !c->tokens))
            return augur_fail(err, AUGUR_E_INTERNAL, "command: VERIFY of %d tokens without an array", c->n_tokens);
        verify.start_position = c->start_position;
        verify.n_tokens = (size_t)c->n_tokens;
        verify.tokens = c->tokens;
        verify.gather = c->gather;
        m.body_case = AUGUR__COMMAND__BODY_VERIFY;
        m.verify = &verify;
        break;
    case WIRE_CMD_ACCEPT:
        accept.accepted = c->accept.accepted;
        accept.next_token = c->accept.next_token;
        accept.finished = c->accept.finished;
        accept.new_length = c->accept.new_length;
        m.body_case = AUGUR__COMMAND__BODY_ACCEPT;
        m.accept = &accept;
        break;
    case WIRE_CMD_STOP:
        m.body_case = AUGUR__COMMAND__BODY_STOP;
        m.stop = &stop;
        break;
    case WIRE_CMD_FREE:
        m.body_case = AUGUR__COMMAND__BODY_FREE;
        m.free = &free_body;
        break;
    default:
        return augur_fail(err, AUGUR_E_INTERNAL, "command: unknown kind %d", (int)c->kind);
    }
    return pack_message(&m.base, "command", out, len, err);
}

static augur_status fill_command(const char *who, const Augur__Command *m, int32_t vocab, wire_command *out,
                                 augur_error *err)
{
    out->request_id = m->request_id;
    out->round = m->round;
    out->slot = m->slot;
    if (m->body_case == AUGUR__COMMAND__BODY_VERIFY_BATCH && m->verify_batch)
        return fill_verify_batch(who, m->verify_batch, vocab, out, err);
    if (m->body_case == AUGUR__COMMAND__BODY_ACCEPT_BATCH && m->accept_batch)
        return fill_accept_batch(who, m->accept_batch, out, err);
    if (m->body_case == AUGUR__COMMAND__BODY_FREE) {
        out->kind = WIRE_CMD_FREE;
        return AUGUR_OK;
    }
    if (m->body_case == AUGUR__COMMAND__BODY_VERIFY && m->verify) {
        augur_status st = check_tokens(who, "verify tokens", m->verify->tokens, m->verify->n_tokens, vocab, err);
        if (st != AUGUR_OK)
            return st;
        out->kind = WIRE_CMD_VERIFY;
        out->start_position = m->verify->start_position;
        out->gather = m->verify->gather;
        out->n_tokens = (int)m->verify->n_tokens;
        return dup_ints(m->verify->tokens, m->verify->n_tokens, &out->tokens, who, err);
    }
    if (m->body_case == AUGUR__COMMAND__BODY_ACCEPT && m->accept) {
        const Augur__Accept *a = m->accept;
        augur_status st = check_outcome(who, a->accepted, a->next_token, a->finished, a->new_length, vocab, err);
        if (st != AUGUR_OK)
            return st;
        out->kind = WIRE_CMD_ACCEPT;
        out->accept = (wire_verdict){m->request_id, m->round, a->accepted, a->next_token, a->finished,
                                     a->new_length, 0};
        return AUGUR_OK;
    }
    if (m->body_case == AUGUR__COMMAND__BODY_STOP) {
        out->kind = WIRE_CMD_STOP;
        return AUGUR_OK;
    }
    return fail_at(err, AUGUR_E_FORMAT, who, "no body (none of verify, accept, stop, verify_batch, accept_batch, free)");
}

augur_status wire_command_decode(const uint8_t *buf, size_t len, const wire_expect *want, wire_command *out,
                                 augur_error *err)
{
    char who[64];
    name_sender(who, sizeof who, "command", want);
    memset(out, 0, sizeof *out);
    augur_status st = check_input(who, buf, len, err);
    if (st != AUGUR_OK)
        return st;
    Augur__Command *m = augur__command__unpack(NULL, len, buf);
    if (!m)
        return malformed(who, len, err);
    st = check_header(who, m->version, m->end_mark, m->request_id, &m->round, want, err);
    if (st == AUGUR_OK)
        st = fill_command(who, m, want ? want->vocab_size : 0, out, err);
    augur__command__free_unpacked(m, NULL);
    if (st != AUGUR_OK)
        wire_command_free(out);
    return st;
}

void wire_command_free(wire_command *c)
{
    if (!c)
        return;
    free(c->tokens);
    for (int i = 0; c->segments && i < c->n_segments; i++)
        free(c->segments[i].tokens);
    free(c->segments);
    free(c->trims);
    memset(c, 0, sizeof *c);
}

/* ---- TraceRecord ---- */

augur_status wire_trace_record_encode(const wire_trace_record *r, uint8_t **out, size_t *len, augur_error *err)
{
    Augur__TraceRecord m = AUGUR__TRACE_RECORD__INIT;
    m.version = AUGUR_WIRE_VERSION;
    m.end_mark = AUGUR_WIRE_END_MARK;
    m.request_id = r->request_id;
    m.position = r->position;
    m.round = r->round;
    m.draft_entropy = r->draft_entropy;
    m.target_entropy = r->target_entropy;
    m.accepted = r->accepted;
    m.draft_ms = r->draft_ms;
    m.target_ms = r->target_ms;
    m.index_in_round = r->index_in_round;
    m.draft_len_in_round = r->draft_len_in_round;
    return pack_message(&m.base, "trace record", out, len, err);
}

static augur_status validate_trace(const char *who, const Augur__TraceRecord *m, augur_error *err)
{
    augur_status st = check_header(who, m->version, m->end_mark, m->request_id, NULL, NULL, err);
    if (st != AUGUR_OK)
        return st;
    if (m->index_in_round >= m->draft_len_in_round)
        return fail_at(err, AUGUR_E_FORMAT, who, "index_in_round %u not below draft_len_in_round %u",
                       m->index_in_round, m->draft_len_in_round);
    if ((st = check_nonneg(who, "draft_entropy", m->draft_entropy, err)) != AUGUR_OK ||
        (st = check_nonneg(who, "target_entropy", m->target_entropy, err)) != AUGUR_OK ||
        (st = check_nonneg(who, "draft_ms", m->draft_ms, err)) != AUGUR_OK ||
        (st = check_nonneg(who, "target_ms", m->target_ms, err)) != AUGUR_OK)
        return st;
    return AUGUR_OK;
}

augur_status wire_trace_record_decode(const uint8_t *buf, size_t len, wire_trace_record *out, augur_error *err)
{
    const char *who = "trace record";
    memset(out, 0, sizeof *out);
    augur_status st = check_input(who, buf, len, err);
    if (st != AUGUR_OK)
        return st;
    Augur__TraceRecord *m = augur__trace_record__unpack(NULL, len, buf);
    if (!m)
        return malformed(who, len, err);
    st = validate_trace(who, m, err);
    if (st == AUGUR_OK) {
        *out = (wire_trace_record){
            .request_id = m->request_id,
            .position = m->position,
            .round = m->round,
            .draft_entropy = m->draft_entropy,
            .target_entropy = m->target_entropy,
            .accepted = m->accepted,
            .draft_ms = m->draft_ms,
            .target_ms = m->target_ms,
            .index_in_round = m->index_in_round,
            .draft_len_in_round = m->draft_len_in_round,
        };
    }
    augur__trace_record__free_unpacked(m, NULL);
    return st;
}
