/* Tokenizers: Hugging Face tokenizer.json (BPE; byte-level with a Split regex as in
 * Llama 3 / Qwen2 / GPT-2, or SentencePiece-style with byte_fallback as in Llama 2 /
 * Mistral) and llama2.c's tokenizer.bin. Encoding must match the reference
 * implementations exactly (tests/fixtures/tokenizers holds the goldens). */
#ifndef AUGUR_TOKENIZER_H
#define AUGUR_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct tokenizer tokenizer;

/* Loads tokenizer.json (by content) or a llama2.c tokenizer.bin. vocab_hint is the
 * model's vocab_size for tokenizer.bin (which does not record it); 0 when unknown. */
augur_status tokenizer_load(tokenizer **out, const char *path, int vocab_hint, augur_error *err);
void tokenizer_free(tokenizer *tok);

/* Encodes UTF-8 text. add_special: add BOS/EOS as the tokenizer's post-processor
 * says (llama2.c: BOS). *ids is malloc'ed; the caller frees it. */
augur_status tokenizer_encode(const tokenizer *tok, const char *text, size_t len, bool add_special,
                              int32_t **ids, size_t *n_ids, augur_error *err);

/* Decodes ids to a malloc'ed NUL-terminated string (special tokens skipped when
 * skip_special). Invalid UTF-8 bytes decode as U+FFFD as Hugging Face does. */
augur_status tokenizer_decode(const tokenizer *tok, const int32_t *ids, size_t n_ids, bool skip_special,
                              char **text, augur_error *err);

int tokenizer_vocab_size(const tokenizer *tok);
int tokenizer_bos_id(const tokenizer *tok);  /* -1 when none */
int tokenizer_eos_id(const tokenizer *tok);  /* -1 when none */
bool tokenizer_is_special(const tokenizer *tok, int32_t id);

/* Streaming decoder: feed ids one at a time; it writes only complete UTF-8 sequences,
 * holding back a partial multi-byte character until it is complete. */
typedef struct {
    const tokenizer *tok;
    bool skip_special;
    size_t n_emitted_tokens;
    bool after_bos; /* the previous id pushed was BOS (llama2.c drops the space after it) */
    unsigned char pending[16];
    size_t n_pending;
} detok_stream;

void detok_stream_init(detok_stream *ds, const tokenizer *tok, bool skip_special);
/* Appends the text of id to out (capacity cap, NUL-terminated); returns bytes written. */
size_t detok_stream_push(detok_stream *ds, int32_t id, char *out, size_t cap);
/* Emits whatever remains (incomplete sequences become U+FFFD). */
size_t detok_stream_flush(detok_stream *ds, char *out, size_t cap);

/* A detok_stream_push/flush capacity that always holds one token's text (the
 * longest token, with every byte turned into U+FFFD in the worst case). A smaller
 * buffer truncates at a character boundary. */
size_t tokenizer_max_piece_bytes(const tokenizer *tok);

#endif
