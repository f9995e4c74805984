/* UTF-8 for the tokenizer: well-formedness (Unicode table 3-7), decoding and
 * encoding through utf8proc, and Rust's from_utf8_lossy, which utf8proc lacks.
 * Private to runtime/tokenizer; depends on tok_util.h only. */
#ifndef AUGUR_TOK_UTF8_H
#define AUGUR_TOK_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/tokenizer/tok_util.h"

/* Length of the well-formed UTF-8 sequence at s (1..4), 0 when ill-formed or n == 0. */
size_t tok_utf8_seq_len(const char *s, size_t n);
/* Offset of the first ill-formed byte, or n when s is valid UTF-8. */
size_t tok_utf8_check(const char *s, size_t n);
/* Decodes the sequence at s (n bytes available); *adv receives its length. An
 * ill-formed sequence reads as U+FFFD with *adv = 1. */
uint32_t tok_utf8_decode(const char *s, size_t n, size_t *adv);
/* Start of the last character of s[lo..e) (valid UTF-8, lo < e). */
size_t tok_utf8_prev(const char *s, size_t lo, size_t e);
/* Encodes a Unicode scalar value; returns its length (0 when cp is out of range). */
size_t tok_utf8_encode(uint32_t cp, char out[4]);

/* Appends s with each ill-formed subsequence replaced by U+FFFD, exactly as Rust's
 * String::from_utf8_lossy (which Hugging Face's decoders use) does. */
bool tok_utf8_lossy(tok_buf *out, const char *s, size_t n);

/* The same, a byte at a time, for the streaming decoder: pending holds a proper
 * prefix of a well-formed sequence (at most 3 bytes) between calls. emit receives
 * whole characters only (a U+FFFD for every maximal ill-formed subpart). */
typedef bool (*tok_emit_fn)(void *ctx, const char *p, size_t n);

typedef struct {
    unsigned char *pending;
    size_t *n_pending;
} tok_utf8_asm;

bool tok_utf8_asm_byte(tok_utf8_asm *a, unsigned char b, tok_emit_fn emit, void *ctx);
/* Emits a U+FFFD for a cut-off sequence still pending. */
bool tok_utf8_asm_finish(tok_utf8_asm *a, tok_emit_fn emit, void *ctx);

#endif
