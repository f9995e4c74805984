/* Trace files: length-delimited TraceRecords through zstd's streaming API (format in
 * trace_stream.h). */
#include "proto/trace_stream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

/* Frame checksums let the reader tell a flipped byte from a valid stream. */
#define TRACE_DEFAULT_LEVEL 3
#define VARINT_MAX_BYTES 10

struct trace_writer {
    FILE *f;
    ZSTD_CCtx *cctx;
    uint8_t *out;
    size_t out_cap;
    uint64_t records;
    char name[256];
};

struct trace_reader {
    FILE *f;
    ZSTD_DCtx *dctx;
    uint8_t *in;             /* compressed bytes read from f */
    size_t in_cap;
    ZSTD_inBuffer zin;
    uint8_t *buf;            /* decompressed bytes; [start, end) not yet consumed */
    size_t cap, start, end;
    size_t frame_left;       /* zstd's last hint: 0 exactly at a frame boundary */
    uint64_t bytes_in;
    uint64_t records;
    bool eof;
    char name[256];
};

/* ---- writing ---- */

static augur_status push(trace_writer *w, const void *src, size_t len, ZSTD_EndDirective mode, augur_error *err)
{
    ZSTD_inBuffer in = {src, len, 0};
    for (;;) {
        ZSTD_outBuffer out = {w->out, w->out_cap, 0};
        size_t left = ZSTD_compressStream2(w->cctx, &out, &in, mode);
        if (ZSTD_isError(left))
            return augur_fail(err, AUGUR_E_INTERNAL, "%s: zstd compression failed after %" PRIu64 " records: %s",
                              w->name, w->records, ZSTD_getErrorName(left));
        if (out.pos && fwrite(w->out, 1, out.pos, w->f) != out.pos)
            return augur_fail(err, AUGUR_E_IO, "%s: write failed after %" PRIu64 " records: %s", w->name,
                              w->records, strerror(errno));
        /* ZSTD_e_continue is done once the input is taken; flush and end once zstd
         * reports nothing left to write out. */
        if (mode == ZSTD_e_continue ? in.pos == in.size : left == 0)
            return AUGUR_OK;
    }
}

static void writer_free(trace_writer *w)
{
    ZSTD_freeCCtx(w->cctx);
    free(w->out);
    free(w);
}

augur_status trace_writer_open(trace_writer **out, FILE *f, const char *name, int level, augur_error *err)
{
    *out = NULL;
    trace_writer *w = calloc(1, sizeof *w);
    if (!w)
        return augur_fail(err, AUGUR_E_NOMEM, "%s: cannot allocate a trace writer", name);
    snprintf(w->name, sizeof w->name, "%s", name ? name : "trace");
    w->f = f;
    w->cctx = ZSTD_createCCtx();
    w->out_cap = ZSTD_CStreamOutSize();
    w->out = malloc(w->out_cap);
    if (!w->cctx || !w->out) {
        writer_free(w);
        return augur_fail(err, AUGUR_E_NOMEM, "%s: cannot set up zstd compression", name);
    }
    size_t r = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level > 0 ? level : TRACE_DEFAULT_LEVEL);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    if (ZSTD_isError(r)) {
        augur_fail(err, AUGUR_E_INPUT, "%s: zstd level %d rejected: %s", w->name, level, ZSTD_getErrorName(r));
        writer_free(w);
        return AUGUR_E_INPUT;
    }
    *out = w;
    return AUGUR_OK;
}

augur_status trace_writer_append(trace_writer *w, const wire_trace_record *r, augur_error *err)
{
    uint8_t *rec = NULL;
    size_t len = 0;
    augur_status st = wire_trace_record_encode(r, &rec, &len, err);
    if (st != AUGUR_OK)
        return augur_wrap(err, "%s: record %" PRIu64, w->name, w->records);
    uint8_t prefix[VARINT_MAX_BYTES];
    size_t n = 0;
    for (uint64_t v = len; ; v >>= 7) {
        prefix[n++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80)
            break;
    }
    st = push(w, prefix, n, ZSTD_e_continue, err);
    if (st == AUGUR_OK)
        st = push(w, rec, len, ZSTD_e_continue, err);
    free(rec);
    if (st == AUGUR_OK)
        w->records++;
    return st;
}

augur_status trace_writer_flush(trace_writer *w, augur_error *err)
{
    augur_status st = push(w, NULL, 0, ZSTD_e_flush, err);
    if (st == AUGUR_OK && fflush(w->f) != 0)
        st = augur_fail(err, AUGUR_E_IO, "%s: flush failed: %s", w->name, strerror(errno));
    return st;
}

augur_status trace_writer_close(trace_writer *w, augur_error *err)
{
    if (!w)
        return AUGUR_OK;
    augur_status st = push(w, NULL, 0, ZSTD_e_end, err);
    if (st == AUGUR_OK && fflush(w->f) != 0)
        st = augur_fail(err, AUGUR_E_IO, "%s: flush failed: %s", w->name, strerror(errno));
    writer_free(w);
    return st;
}

/* ---- reading ---- */

augur_status trace_reader_open(trace_reader **out, FILE *f, const char *name, augur_error *err)
{
    *out = NULL;
    trace_reader *r = calloc(1, sizeof *r);
    if (!r)
        return augur_fail(err, AUGUR_E_NOMEM, "%s: cannot allocate a trace reader", name);
    snprintf(r->name, sizeof r->name, "%s", name ? name : "trace");
    r->f = f;
    r->dctx = ZSTD_createDCtx();
    r->in_cap = ZSTD_DStreamInSize();
    r->in = malloc(r->in_cap);
    /* Room for one whole record left over from the last refill plus a full zstd block,
     * so a refill always has space to make progress. */
    r->cap = TRACE_MAX_RECORD_BYTES + VARINT_MAX_BYTES + ZSTD_DStreamOutSize();
    r->buf = malloc(r->cap);
    if (!r->dctx || !r->in || !r->buf) {
        trace_reader_close(r);
        return augur_fail(err, AUGUR_E_NOMEM, "%s: cannot set up zstd decompression", name);
    }
    r->zin = (ZSTD_inBuffer){r->in, 0, 0};
    /* Not at a frame boundary until one frame has ended: an empty file is no stream. */
    r->frame_left = 1;
    *out = r;
    return AUGUR_OK;
}

void trace_reader_close(trace_reader *r)
{
    if (!r)
        return;
    ZSTD_freeDCtx(r->dctx);
    free(r->in);
    free(r->buf);
    free(r);
}

/* Decompresses more bytes into buf; *progress = false once the file has nothing more. */
static augur_status refill(trace_reader *r, bool *progress, augur_error *err)
{
    *progress = false;
    memmove(r->buf, r->buf + r->start, r->end - r->start);
    r->end -= r->start;
    r->start = 0;
    for (;;) {
        if (r->zin.pos == r->zin.size && !r->eof) {
            size_t n = fread(r->in, 1, r->in_cap, r->f);
            if (n == 0) {
                if (ferror(r->f))
                    return augur_fail(err, AUGUR_E_IO, "%s: read failed after %" PRIu64 " records: %s", r->name,
                                      r->records, strerror(errno));
                r->eof = true;
            }
            r->bytes_in += n;
            r->zin = (ZSTD_inBuffer){r->in, n, 0};
        }
        bool input_done = r->zin.pos == r->zin.size && r->eof;
        /* With input exhausted zstd may still hold decoded bytes, but only mid-frame. */
        if (input_done && r->frame_left == 0)
            return AUGUR_OK;
        ZSTD_outBuffer zout = {r->buf + r->end, r->cap - r->end, 0};
        size_t ret = ZSTD_decompressStream(r->dctx, &zout, &r->zin);
        if (ZSTD_isError(ret))
            return augur_fail(err, AUGUR_E_FORMAT, "%s: corrupt zstd stream after %" PRIu64 " records: %s",
                              r->name, r->records, ZSTD_getErrorName(ret));
        r->frame_left = ret;
        r->end += zout.pos;
        if (zout.pos > 0) {
            *progress = true;
            return AUGUR_OK;
        }
        if (input_done)
            return AUGUR_OK;
    }
}

/* 1: a complete varint; 0: needs more bytes; -1: longer than any varint. */
static int parse_varint(const uint8_t *p, size_t n, uint64_t *value, size_t *used)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && i < VARINT_MAX_BYTES; i++) {
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *value = v;
            *used = i + 1;
            return 1;
        }
    }
    return n >= VARINT_MAX_BYTES ? -1 : 0;
}

augur_status trace_reader_next(trace_reader *r, wire_trace_record *rec, bool *got, augur_error *err)
{
    *got = false;
    for (;;) {
        size_t avail = r->end - r->start;
        const uint8_t *p = r->buf + r->start;
        uint64_t len = 0;
        size_t used = 0;
        int parsed = avail ? parse_varint(p, avail, &len, &used) : 0;
        if (parsed < 0)
            return augur_fail(err, AUGUR_E_FORMAT, "%s: record %" PRIu64 ": bad length prefix", r->name,
                              r->records);
        if (parsed > 0 && len > TRACE_MAX_RECORD_BYTES)
            return augur_fail(err, AUGUR_E_FORMAT, "%s: record %" PRIu64 ": length %" PRIu64
                              " exceeds the %d-byte limit (corrupt stream?)", r->name, r->records, len,
                              TRACE_MAX_RECORD_BYTES);
        if (parsed > 0 && avail - used >= len) {
            augur_status st = wire_trace_record_decode(p + used, (size_t)len, rec, err);
            if (st != AUGUR_OK)
                return augur_wrap(err, "%s: record %" PRIu64, r->name, r->records);
            r->start += used + (size_t)len;
            r->records++;
            *got = true;
            return AUGUR_OK;
        }
        bool progress;
        augur_status st = refill(r, &progress, err);
        if (st != AUGUR_OK)
            return st;
        if (progress)
            continue;
        if (r->bytes_in == 0)
            return augur_fail(err, AUGUR_E_FORMAT, "%s: empty file, not a trace stream", r->name);
        if (avail == 0 && r->frame_left == 0)
            return AUGUR_OK;
        return augur_fail(err, AUGUR_E_FORMAT, "%s: truncated after %" PRIu64 " records (%s)", r->name,
                          r->records, avail ? "the stream ends inside a record" : "the zstd frame is incomplete");
    }
}

/* ---- CSV ---- */

augur_status trace_csv_header(FILE *csv, augur_error *err)
{
    if (fputs("request_id,round,position,index_in_round,draft_len_in_round,"
              "draft_entropy,target_entropy,accepted,draft_ms,target_ms\n", csv) < 0)
        return augur_fail(err, AUGUR_E_IO, "csv: write failed: %s", strerror(errno));
    return AUGUR_OK;
}

augur_status trace_csv_row(FILE *csv, const wire_trace_record *r, augur_error *err)
{
    if (fprintf(csv, "%" PRIu64 ",%u,%u,%u,%u,%.9g,%.9g,%d,%.9g,%.9g\n", r->request_id, r->round, r->position,
                r->index_in_round, r->draft_len_in_round, (double)r->draft_entropy, (double)r->target_entropy,
                r->accepted ? 1 : 0, (double)r->draft_ms, (double)r->target_ms) < 0)
        return augur_fail(err, AUGUR_E_IO, "csv: write failed: %s", strerror(errno));
    return AUGUR_OK;
}

augur_status trace_dump_csv(FILE *trace, const char *name, FILE *csv, uint64_t *rows, augur_error *err)
{
    if (rows)
        *rows = 0;
    trace_reader *r;
    augur_status st = trace_reader_open(&r, trace, name, err);
    if (st != AUGUR_OK)
        return st;
    st = trace_csv_header(csv, err);
    uint64_t n = 0;
    while (st == AUGUR_OK) {
        wire_trace_record rec;
        bool got;
        st = trace_reader_next(r, &rec, &got, err);
        if (st != AUGUR_OK || !got)
            break;
        st = trace_csv_row(csv, &rec, err);
        n += st == AUGUR_OK;
    }
    trace_reader_close(r);
    if (rows)
        *rows = n;
    return st;
}
