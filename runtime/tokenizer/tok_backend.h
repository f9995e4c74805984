/* The interface a tokenizer back end (tokenizer_hf.c for tokenizer.json,
 * tokenizer_llama2c.c for tokenizer.bin) presents to the dispatcher in tokenizer.c.
 * Private to runtime/tokenizer: back ends include this and tok_util.h / tok_utf8.h,
 * never tokenizer.h, and the dispatcher reaches them only through these tables. */
#ifndef AUGUR_TOK_BACKEND_H
#define AUGUR_TOK_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "runtime/tokenizer/tok_util.h"

/* Where a streamed token stands: first, no earlier token was emitted; after_bos,
 * the id pushed just before it was BOS. */
typedef struct {
    bool first, after_bos;
} tok_stream_pos;

typedef struct {
    /* Parses the file's bytes (path names it in messages). Returns AUGUR_E_FORMAT
     * when the bytes are not this back end's format at all, so the dispatcher can
     * say which formats it tried. vocab_hint: the model's vocab_size, 0 if unknown. */
    augur_status (*load)(void **impl, const char *path, const char *data, size_t len, int vocab_hint,
                         augur_error *err);
    void (*free)(void *impl);
    augur_status (*encode)(const void *impl, const char *text, size_t len, bool add_special, tok_ids *ids,
                           augur_error *err);
    augur_status (*decode)(const void *impl, const int32_t *ids, size_t n, bool skip_special, tok_buf *out,
                           augur_error *err);
    /* Decodes one token for the streaming decoder: appends the raw bytes of id as
     * it reads at that position (possibly a partial UTF-8 sequence) and returns 1,
     * or 0 when id is skipped (a special token under skip_special, or out of
     * range), or -1 when memory ran out. */
    int (*piece)(const void *impl, int32_t id, tok_stream_pos pos, bool skip_special, tok_buf *out);
    int (*vocab_size)(const void *impl);
    int (*bos)(const void *impl); /* -1 when none */
    int (*eos)(const void *impl); /* -1 when none */
    bool (*is_special)(const void *impl, int32_t id);
    /* Longest raw piece() output in bytes. */
    size_t (*max_piece)(const void *impl);
} tok_backend;

extern const tok_backend tok_hf_backend;  /* Hugging Face tokenizer.json */
extern const tok_backend tok_l2c_backend; /* llama2.c tokenizer.bin */

#endif
