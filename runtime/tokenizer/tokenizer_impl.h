/* Private to the tokenizer: the shared helpers in tokenizer.c and the interface the
 * two back ends (tokenizer_hf.c for tokenizer.json, tokenizer_llama2c.c for
 * tokenizer.bin) present to the dispatcher. Nothing outside runtime/tokenizer*.c
 * includes this. */
#ifndef AUGUR_TOKENIZER_IMPL_H
#define AUGUR_TOKENIZER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "runtime/tokenizer/tokenizer.h"

/* ---- growable buffers (tokenizer.c) ---- */

typedef struct {
    char *data;
    size_t len, cap;
} tok_buf;

bool tok_buf_reserve(tok_buf *b, size_t extra);
bool tok_buf_append(tok_buf *b, const void *p, size_t n);
void tok_buf_free(tok_buf *b);

typedef struct {
    int32_t *v;
    size_t n, cap;
} tok_ids;

bool tok_ids_push(tok_ids *a, int32_t x);
void tok_ids_free(tok_ids *a);

/* ---- byte-string -> int32 map; keys are borrowed and must outlive the map ---- */

typedef struct {
    const char *key;
    uint32_t len;
    int32_t val;
} tok_map_slot;

typedef struct {
    tok_map_slot *slots;
    size_t cap, n;
} tok_map;

bool tok_map_init(tok_map *m, size_t expected);
/* Inserts key; when it is present already, keeps the old value unless overwrite. */
bool tok_map_put(tok_map *m, const char *key, size_t len, int32_t val, bool overwrite);
int32_t tok_map_get(const tok_map *m, const char *key, size_t len); /* -1 when absent */
void tok_map_free(tok_map *m);

/* ---- UTF-8 ---- */

/* Length of the well-formed UTF-8 sequence at s (1..4), 0 when ill-formed. */
size_t tok_utf8_seq_len(const unsigned char *s, size_t n);
/* Offset of the first ill-formed byte, or n when s is valid UTF-8. */
size_t tok_utf8_check(const char *s, size_t n);
/* Decodes the sequence at s (which must be valid); *adv receives its length. */
uint32_t tok_utf8_decode(const char *s, size_t *adv);
size_t tok_utf8_encode(uint32_t cp, char out[4]);
/* Appends s with each ill-formed subsequence replaced by U+FFFD, exactly as Rust's
 * String::from_utf8_lossy (which Hugging Face's decoders use) does. */
bool tok_utf8_lossy(tok_buf *out, const char *s, size_t n);

/* Reads a whole file (NUL-terminated for convenience). */
augur_status tok_read_file(const char *path, char **data, size_t *len, augur_error *err);

/* ---- back ends ---- */

typedef struct tok_hf tok_hf;
typedef struct tok_l2c tok_l2c;

/* Both back ends decode one token at a time for detok_stream: piece() appends the
 * raw bytes of id as it reads at that position (possibly a partial UTF-8 sequence)
 * and returns 1, or 0 when id is skipped (a special token under skip_special, or out
 * of range), or -1 when memory ran out. first: no earlier token was emitted;
 * after_bos: the previous id was BOS. */

augur_status tok_hf_load(tok_hf **out, const char *path, const char *text, size_t len, augur_error *err);
void tok_hf_free(tok_hf *hf);
augur_status tok_hf_encode(const tok_hf *hf, const char *text, size_t len, bool add_special, tok_ids *ids,
                           augur_error *err);
augur_status tok_hf_decode(const tok_hf *hf, const int32_t *ids, size_t n, bool skip_special, tok_buf *out,
                           augur_error *err);
int tok_hf_piece(const tok_hf *hf, int32_t id, bool first, bool skip_special, tok_buf *out);
int tok_hf_vocab_size(const tok_hf *hf);
int tok_hf_bos(const tok_hf *hf);
int tok_hf_eos(const tok_hf *hf);
bool tok_hf_is_special(const tok_hf *hf, int32_t id);
size_t tok_hf_max_piece(const tok_hf *hf);

/* Returns AUGUR_E_FORMAT when the bytes are not a tokenizer.bin, so the dispatcher can
 * say which formats it tried. */
augur_status tok_l2c_load(tok_l2c **out, const char *path, const char *data, size_t len, int vocab_hint,
                          augur_error *err);
void tok_l2c_free(tok_l2c *t);
augur_status tok_l2c_encode(const tok_l2c *t, const char *text, size_t len, bool add_special, tok_ids *ids,
                            augur_error *err);
augur_status tok_l2c_decode(const tok_l2c *t, const int32_t *ids, size_t n, bool skip_special, tok_buf *out,
                            augur_error *err);
int tok_l2c_piece(const tok_l2c *t, int32_t id, bool after_bos, bool skip_special, tok_buf *out);
int tok_l2c_vocab_size(const tok_l2c *t);
bool tok_l2c_is_special(const tok_l2c *t, int32_t id);
size_t tok_l2c_max_piece(const tok_l2c *t);

#define TOK_L2C_BOS 1
#define TOK_L2C_EOS 2

#endif
