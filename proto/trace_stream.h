/* Per-token trace files: a zstd stream of length-delimited TraceRecords.
 *
 * File format: one or more zstd frames (with content checksums) whose decompressed bytes
 * are a sequence of (varint length, TraceRecord bytes) pairs — protobuf's own
 * "delimited" framing, so other tools can read the stream with stock libraries after
 * `zstd -d`. A stream ends cleanly only at a frame boundary between records; anything
 * else (cut file, flipped byte) is reported with the record count reached.
 *
 * Writers and readers borrow the FILE: they neither open nor close it. */
#ifndef AUGUR_TRACE_STREAM_H
#define AUGUR_TRACE_STREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/wire.h"
#include "base/error.h"

/* A record longer than this cannot be a TraceRecord; the reader treats it as corruption
 * rather than allocating whatever a damaged length prefix asks for. */
#define TRACE_MAX_RECORD_BYTES 4096

typedef struct trace_writer trace_writer;
typedef struct trace_reader trace_reader;

/* name labels the stream in error messages (usually its path). level: zstd level, 0 = 3. */
augur_status trace_writer_open(trace_writer **out, FILE *f, const char *name, int level, augur_error *err);
augur_status trace_writer_append(trace_writer *w, const wire_trace_record *r, augur_error *err);
/* Pushes everything appended so far to the FILE, so that a crash later loses nothing
 * already flushed (the file then reads as truncated after the flushed records). */
augur_status trace_writer_flush(trace_writer *w, augur_error *err);
/* Ends the zstd frame, flushes the FILE and frees the writer (also on failure). */
augur_status trace_writer_close(trace_writer *w, augur_error *err);

augur_status trace_reader_open(trace_reader **out, FILE *f, const char *name, augur_error *err);
/* Reads the next record into *rec and sets *got; *got = false at the clean end. */
augur_status trace_reader_next(trace_reader *r, wire_trace_record *rec, bool *got, augur_error *err);
void trace_reader_close(trace_reader *r);

/* CSV with a header line: request_id,round,position,index_in_round,draft_len_in_round,
 * draft_entropy,target_entropy,accepted,draft_ms,target_ms. Floats use %.9g, enough
 * digits to read back the exact fp32 value. */
augur_status trace_csv_header(FILE *csv, augur_error *err);
augur_status trace_csv_row(FILE *csv, const wire_trace_record *r, augur_error *err);

/* Reads every record of the trace stream in `trace` and writes the CSV to `csv`;
 * *rows (may be NULL) gets the number of records written. */
augur_status trace_dump_csv(FILE *trace, const char *name, FILE *csv, uint64_t *rows, augur_error *err);

#endif
