/* The OpenAI-compatible wire format of `augur serve`: request bodies parsed and
 * validated into serve_params, responses, stream chunks and error objects built as
 * JSON text (jansson). Pure functions of their arguments: no server state, so every
 * bad-input rule is unit-tested here. */
#ifndef AUGUR_OPENAI_API_H
#define AUGUR_OPENAI_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sampling_params.h"

#define OPENAI_MAX_STOP 4          /* OpenAI's limit on "stop" strings */
#define OPENAI_MAX_STOP_BYTES 256  /* longest stop string accepted */

typedef enum { SERVE_COMPLETION, SERVE_CHAT } serve_kind;

typedef struct {
    char *role;              /* system | user | assistant | developer */
    char *content;
} chat_message;

typedef struct {
    serve_kind kind;
    char *model;             /* NULL: not given */
    char *prompt;            /* completion given as text */
    int32_t *prompt_ids;     /* completion given as token ids (array of integers) */
    size_t n_prompt_ids;
    chat_message *messages;  /* chat */
    size_t n_messages;
    int max_tokens;          /* 0: not given (the server's default applies) */
    sampling_params sampling;
    bool have_seed;
    uint64_t seed;
    char *stop[OPENAI_MAX_STOP];
    int n_stop;
    bool stream;
    bool include_usage;      /* stream_options.include_usage */
    bool speculation;        /* augur's field: false runs target-only (default true) */
} serve_params;

/* An OpenAI-style error: HTTP status and {"error":{"message","type","param","code"}}. */
typedef struct {
    int status;
    const char *type;        /* invalid_request_error | not_found_error | server_error ... */
    const char *code;        /* may be NULL */
    char param[64];          /* empty: null */
    char message[512];
} api_error;

void api_error_set(api_error *e, int status, const char *type, const char *code, const char *param,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Parses and validates a request body. vocab bounds prompt token ids. Returns false
 * with e filled (status 400) on malformed JSON, unknown or mistyped fields and
 * out-of-range values. *out is owned by the caller (serve_params_free) either way. */
bool openai_parse_request(serve_kind kind, const char *body, size_t len, int vocab, serve_params *out,
                          api_error *e);
void serve_params_free(serve_params *p);

typedef enum { FINISH_STOP, FINISH_LENGTH } finish_reason;

typedef struct {
    int prompt_tokens;
    int completion_tokens;
    int rounds;
    int proposed;            /* draft tokens proposed */
    int accepted;            /* of those, accepted by the target */
    bool speculation;
} serve_usage;

/* Each returns malloc'ed NUL-terminated JSON, or NULL when out of memory. */
char *openai_error_json(const api_error *e);
char *openai_response_json(serve_kind kind, const char *id, long long created, const char *model, const char *text,
                           size_t text_len, finish_reason finish, const serve_usage *usage);
/* One stream chunk: role_only sends the chat's opening {"role":"assistant"} delta;
 * finish (when not NULL) closes the choice with an empty delta / text. */
char *openai_chunk_json(serve_kind kind, const char *id, long long created, const char *model, const char *text,
                        size_t text_len, bool role_only, const finish_reason *finish);
/* The stream's usage chunk (stream_options.include_usage): empty choices and usage. */
char *openai_usage_chunk_json(serve_kind kind, const char *id, long long created, const char *model,
                              const serve_usage *usage);
char *openai_models_json(const char *model, long long created);

/* Bytes of text up to which a stream may send: pulled back off a partial UTF-8
 * character, since a JSON string holds whole characters only. */
size_t utf8_safe_prefix(const char *text, size_t len);

#endif
