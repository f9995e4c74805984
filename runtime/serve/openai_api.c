/* Request validation and response JSON for the OpenAI-compatible endpoints. */
#include "runtime/serve/openai_api.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static void api_error_vset(api_error *e, int status, const char *type, const char *code, const char *param,
                           const char *fmt, va_list ap)
{
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    vsnprintf(e->message, sizeof e->message, fmt, ap);
}

void api_error_set(api_error *e, int status, const char *type, const char *code, const char *param,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    api_error_vset(e, status, type, code, param, fmt, ap);
    va_end(ap);
}

static bool bad(api_error *e, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bool bad(api_error *e, const char *param, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    api_error_vset(e, 400, "invalid_request_error", code, param, fmt, ap);
    va_end(ap);
    return false;
}

void serve_params_free(serve_params *p)
{
    free(p->model);
    free(p->prompt);
    free(p->prompt_ids);
    for (size_t i = 0; i < p->n_messages; i++) {
        free(p->messages[i].role);
        free(p->messages[i].content);
    }
    free(p->messages);
    for (int i = 0; i < p->n_stop; i++)
        free(p->stop[i]);
    *p = (serve_params){0};
}

static bool oom(api_error *e)
{
    api_error_set(e, 500, "server_error", NULL, NULL, "out of memory while parsing the request");
    return false;
}

static char *dup_string(const json_t *v)
{
    size_t n = json_string_length(v);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, json_string_value(v), n);
        s[n] = '\0';
    }
    return s;
}

/* Integers only: 1.0 or "1" is a mistyped field, as JSON Schema's "integer" would say. */
static bool get_int(const json_t *v, const char *name, long long lo, long long hi, long long *out, api_error *e)
{
    if (!json_is_integer(v))
        return bad(e, name, "invalid_type", "'%s' must be an integer", name);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return bad(e, name, "invalid_value", "'%s' is %lld, outside %lld..%lld", name, x, lo, hi);
    *out = x;
    return true;
}

static bool get_number(const json_t *v, const char *name, double lo, double hi, bool above_lo, double *out,
                       api_error *e)
{
    if (!json_is_number(v))
        return bad(e, name, "invalid_type", "'%s' must be a number", name);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi || (above_lo && x == lo))
        return bad(e, name, "invalid_value", "'%s' is %g, outside %s%g, %g]", name, x, above_lo ? "(" : "[", lo, hi);
    *out = x;
    return true;
}

static bool get_bool(const json_t *v, const char *name, bool *out, api_error *e)
{
    if (!json_is_boolean(v))
        return bad(e, name, "invalid_type", "'%s' must be true or false", name);
    *out = json_is_true(v);
    return true;
}

static bool parse_stop(const json_t *v, serve_params *p, api_error *e)
{
    if (json_is_null(v))
        return true;
    const json_t *one[1] = {v};
    size_t n = 1;
    if (json_is_array(v)) {
        n = json_array_size(v);
        if (n > OPENAI_MAX_STOP)
            return bad(e, "stop", "invalid_value", "'stop' holds %zu strings, at most %d", n, OPENAI_MAX_STOP);
    } else if (!json_is_string(v)) {
        return bad(e, "stop", "invalid_type", "'stop' must be a string or an array of strings");
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_is_array(v) ? json_array_get(v, i) : one[0];
        if (!json_is_string(s))
            return bad(e, "stop", "invalid_type", "'stop'[%zu] is not a string", i);
        size_t len = json_string_length(s);
        if (len == 0 || len > OPENAI_MAX_STOP_BYTES || strlen(json_string_value(s)) != len)
            return bad(e, "stop", "invalid_value", "'stop'[%zu] must hold 1 to %d bytes without NUL", i,
                       OPENAI_MAX_STOP_BYTES);
        if (!(p->stop[p->n_stop] = dup_string(s)))
            return oom(e);
        p->n_stop++;
    }
    return true;
}

static bool parse_prompt(const json_t *v, int vocab, serve_params *p, api_error *e)
{
    if (json_is_array(v) && json_array_size(v) == 1 && json_is_string(json_array_get(v, 0)))
        v = json_array_get(v, 0); /* ["text"]: one prompt, as clients often send */
    if (json_is_string(v)) {
        if (json_string_length(v) == 0)
            return bad(e, "prompt", "invalid_value", "'prompt' is empty");
        if (strlen(json_string_value(v)) != json_string_length(v))
            return bad(e, "prompt", "invalid_value", "'prompt' holds a NUL character");
        return (p->prompt = dup_string(v)) ? true : oom(e);
    }
    if (!json_is_array(v))
        return bad(e, "prompt", "invalid_type", "'prompt' must be a string, [string] or an array of token ids");
    size_t n = json_array_size(v);
    if (n == 0)
        return bad(e, "prompt", "invalid_value", "'prompt' is empty");
    for (size_t i = 0; i < n; i++)
        if (json_is_string(json_array_get(v, i)))
            return bad(e, "prompt", "invalid_value", "'prompt' holds %zu strings: one prompt per request (n=1)", n);
    if (!(p->prompt_ids = malloc(n * sizeof *p->prompt_ids)))
        return oom(e);
    p->n_prompt_ids = n;
    for (size_t i = 0; i < n; i++) {
        long long id = 0;
        if (!get_int(json_array_get(v, i), "prompt", 0, vocab - 1, &id, e))
            return false;
        p->prompt_ids[i] = (int32_t)id;
    }
    return true;
}

/* Message content: a string, or an array of {"type":"text","text":...} parts joined. */
static bool message_content(const json_t *c, size_t i, char **out, api_error *e)
{
    if (json_is_string(c)) {
        if (strlen(json_string_value(c)) != json_string_length(c))
            return bad(e, "messages", "invalid_value", "messages[%zu].content holds a NUL character", i);
        return (*out = dup_string(c)) ? true : oom(e);
    }
    if (!json_is_array(c))
        return bad(e, "messages", "invalid_type", "messages[%zu].content must be a string or an array of text parts",
                   i);
    size_t total = 0, idx;
    json_t *part;
    json_array_foreach(c, idx, part) {
        const json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) || strcmp(json_string_value(type), "text") ||
            !json_is_string(text) || json_object_size(part) != 2)
            return bad(e, "messages", "invalid_value",
                       "messages[%zu].content[%zu] must be {\"type\": \"text\", \"text\": string} (only text is "
                       "supported)",
                       i, idx);
        if (strlen(json_string_value(text)) != json_string_length(text))
            return bad(e, "messages", "invalid_value", "messages[%zu].content[%zu] holds a NUL character", i, idx);
        total += json_string_length(text);
    }
    char *s = malloc(total + 1);
    if (!s)
        return oom(e);
    size_t at = 0;
    json_array_foreach(c, idx, part) {
        const json_t *text = json_object_get(part, "text");
        memcpy(s + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    s[at] = '\0';
    *out = s;
    return true;
}

static bool parse_messages(const json_t *v, serve_params *p, api_error *e)
{
    static const char *roles[] = {"system", "developer", "user", "assistant"};
    if (!json_is_array(v))
        return bad(e, "messages", "invalid_type", "'messages' must be an array");
    size_t n = json_array_size(v);
    if (n == 0)
        return bad(e, "messages", "invalid_value", "'messages' is empty");
    if (!(p->messages = calloc(n, sizeof *p->messages)))
        return oom(e);
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(v, i);
        if (!json_is_object(m))
            return bad(e, "messages", "invalid_type", "messages[%zu] must be an object", i);
        const char *key;
        const json_t *val;
        json_object_foreach((json_t *)m, key, val) {
            if (strcmp(key, "role") && strcmp(key, "content") && strcmp(key, "name"))
                return bad(e, "messages", "unknown_field", "messages[%zu] has an unknown field '%s'", i, key);
        }
        const json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        bool known = false;
        for (size_t r = 0; json_is_string(role) && r < sizeof roles / sizeof roles[0]; r++)
            known |= !strcmp(json_string_value(role), roles[r]);
        if (!known)
            return bad(e, "messages", "invalid_value",
                       "messages[%zu].role must be one of system, developer, user, assistant", i);
        if (!content)
            return bad(e, "messages", "missing_field", "messages[%zu] has no content", i);
        p->n_messages = i + 1;
        if (!(p->messages[i].role = dup_string(role)) || !message_content(content, i, &p->messages[i].content, e))
            return p->messages[i].role ? false : oom(e);
    }
    return true;
}

/* Fields OpenAI defines that augur accepts only at their neutral value. */
static bool neutral_field(const char *key, const json_t *v, api_error *e)
{
    if (!strcmp(key, "user"))
        return json_is_string(v) ? true : bad(e, key, "invalid_type", "'user' must be a string");
    if (!strcmp(key, "frequency_penalty") || !strcmp(key, "presence_penalty")) {
        if (!json_is_number(v))
            return bad(e, key, "invalid_type", "'%s' must be a number", key);
        return json_number_value(v) == 0 ? true
                                         : bad(e, key, "unsupported_value", "'%s' other than 0 is not supported", key);
    }
    if (!strcmp(key, "logprobs") || !strcmp(key, "echo")) {
        if (json_is_null(v) || json_is_false(v) || (json_is_integer(v) && json_integer_value(v) == 0))
            return true;
        return bad(e, key, "unsupported_value", "'%s' is not supported", key);
    }
    return bad(e, key, "unknown_field", "unknown field '%s'", key);
}

static bool parse_field(serve_kind kind, const char *key, const json_t *v, int vocab, serve_params *p,
                        bool *stream_options_given, api_error *e)
{
    long long i = 0;
    double x = 0;
    if (!strcmp(key, "model")) {
        if (!json_is_string(v))
            return bad(e, key, "invalid_type", "'model' must be a string");
        return (p->model = dup_string(v)) ? true : oom(e);
    }
    if (kind == SERVE_COMPLETION && !strcmp(key, "prompt"))
        return parse_prompt(v, vocab, p, e);
    if (kind == SERVE_CHAT && !strcmp(key, "messages"))
        return parse_messages(v, p, e);
    if (!strcmp(key, "max_tokens") || (kind == SERVE_CHAT && !strcmp(key, "max_completion_tokens"))) {
        if (json_is_null(v))
            return true;
        if (!get_int(v, key, 1, 1 << 24, &i, e))
            return false;
        p->max_tokens = (int)i;
        return true;
    }
    if (!strcmp(key, "temperature")) {
        if (!get_number(v, key, 0, 2, false, &x, e))
            return false;
        p->sampling.temperature = (float)x;
        return true;
    }
    if (!strcmp(key, "top_p")) {
        if (!get_number(v, key, 0, 1, true, &x, e))
            return false;
        p->sampling.top_p = (float)x;
        return true;
    }
    if (!strcmp(key, "top_k")) { /* -1 or 0: off (vLLM's and augur's spellings) */
        if (!get_int(v, key, -1, 1 << 24, &i, e))
            return false;
        p->sampling.top_k = i < 0 ? 0 : (int)i;
        return true;
    }
    if (!strcmp(key, "seed")) {
        if (json_is_null(v))
            return true;
        if (!get_int(v, key, 0, INT64_MAX, &i, e))
            return false;
        p->have_seed = true;
        p->seed = (uint64_t)i;
        return true;
    }
    if (!strcmp(key, "n")) {
        if (!get_int(v, key, 1, 128, &i, e))
            return false;
        return i == 1 ? true : bad(e, key, "unsupported_value", "'n' = %lld: only n = 1 is supported", i);
    }
    if (!strcmp(key, "stop"))
        return parse_stop(v, p, e);
    if (!strcmp(key, "stream"))
        return json_is_null(v) ? true : get_bool(v, key, &p->stream, e);
    if (!strcmp(key, "speculation"))
        return get_bool(v, key, &p->speculation, e);
    if (!strcmp(key, "stream_options")) {
        if (json_is_null(v))
            return true;
        if (!json_is_object(v))
            return bad(e, key, "invalid_type", "'stream_options' must be an object");
        const char *k;
        const json_t *o;
        json_object_foreach((json_t *)v, k, o) {
            if (strcmp(k, "include_usage"))
                return bad(e, key, "unknown_field", "unknown field 'stream_options.%s'", k);
            if (!get_bool(o, "stream_options", &p->include_usage, e))
                return false;
        }
        *stream_options_given = true;
        return true;
    }
    return neutral_field(key, v, e);
}

bool openai_parse_request(serve_kind kind, const char *body, size_t len, int vocab, serve_params *out,
                          api_error *e)
{
    *out = (serve_params){.kind = kind, .sampling = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f},
                          .speculation = true};
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return bad(e, NULL, "invalid_json", "the body is not valid JSON: %s at line %d, column %d", jerr.text,
                   jerr.line, jerr.column);
    bool ok = true, stream_options = false;
    if (!json_is_object(root)) {
        ok = bad(e, NULL, "invalid_json", "the body must be a JSON object");
    } else {
        const char *key;
        json_t *v;
        json_object_foreach(root, key, v) {
            if (!(ok = parse_field(kind, key, v, vocab, out, &stream_options, e)))
                break;
        }
    }
    if (ok && kind == SERVE_COMPLETION && !out->prompt && !out->prompt_ids)
        ok = bad(e, "prompt", "missing_field", "'prompt' is required");
    if (ok && kind == SERVE_CHAT && !out->messages)
        ok = bad(e, "messages", "missing_field", "'messages' is required");
    if (ok && stream_options && !out->stream)
        ok = bad(e, "stream_options", "invalid_value", "'stream_options' is allowed only with \"stream\": true");
    json_decref(root);
    return ok;
}

static char *dump(json_t *root)
{
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return s;
}

char *openai_error_json(const api_error *e)
{
    return dump(json_pack("{s:{s:s, s:s, s:o, s:o}}", "error", "message", e->message, "type", e->type, "param",
                          e->param[0] ? json_string(e->param) : json_null(), "code",
                          e->code ? json_string(e->code) : json_null()));
}

static const char *finish_name(finish_reason f)
{
    return f == FINISH_STOP ? "stop" : "length";
}

static json_t *usage_json(const serve_usage *u)
{
    return json_pack("{s:i, s:i, s:i, s:{s:b, s:i, s:i, s:i, s:f, s:f}}", "prompt_tokens", u->prompt_tokens,
                     "completion_tokens", u->completion_tokens, "total_tokens",
                     u->prompt_tokens + u->completion_tokens, "augur", "speculation", u->speculation, "rounds",
                     u->rounds, "proposed_tokens", u->proposed, "accepted_tokens", u->accepted, "acceptance_rate",
                     u->proposed ? (double)u->accepted / u->proposed : 0.0, "tokens_per_round",
                     u->rounds ? (double)u->completion_tokens / u->rounds : 0.0);
}

static const char *object_name(serve_kind kind, bool chunk)
{
    if (kind == SERVE_CHAT)
        return chunk ? "chat.completion.chunk" : "chat.completion";
    return "text_completion";
}

char *openai_response_json(serve_kind kind, const char *id, long long created, const char *model, const char *text,
                           size_t text_len, finish_reason finish, const serve_usage *usage)
{
    json_t *content = json_stringn(text, text_len);
    if (!content)
        return NULL;
    json_t *choice = kind == SERVE_CHAT
                         ? json_pack("{s:i, s:{s:s, s:o}, s:n, s:s}", "index", 0, "message", "role", "assistant",
                                     "content", content, "logprobs", "finish_reason", finish_name(finish))
                         : json_pack("{s:i, s:o, s:n, s:s}", "index", 0, "text", content, "logprobs", "finish_reason",
                                     finish_name(finish));
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", id, "object", object_name(kind, false),
                          "created", (json_int_t)created, "model", model, "choices", choice, "usage",
                          usage_json(usage)));
}

char *openai_chunk_json(serve_kind kind, const char *id, long long created, const char *model, const char *text,
                        size_t text_len, bool role_only, const finish_reason *finish)
{
    json_t *content = json_stringn(text ? text : "", text ? text_len : 0);
    if (!content)
        return NULL;
    json_t *fin = finish ? json_string(finish_name(*finish)) : json_null();
    json_t *choice;
    if (kind == SERVE_CHAT) {
        json_t *delta = role_only ? json_pack("{s:s, s:o}", "role", "assistant", "content", content)
                        : finish  ? (json_decref(content), json_object())
                                  : json_pack("{s:o}", "content", content);
        choice = json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "delta", delta, "logprobs", "finish_reason", fin);
    } else {
        choice = json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "text", content, "logprobs", "finish_reason", fin);
    }
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id, "object", object_name(kind, true), "created",
                          (json_int_t)created, "model", model, "choices", choice));
}

char *openai_usage_chunk_json(serve_kind kind, const char *id, long long created, const char *model,
                              const serve_usage *usage)
{
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", id, "object", object_name(kind, true), "created",
                          (json_int_t)created, "model", model, "choices", "usage", usage_json(usage)));
}

char *openai_models_json(const char *model, long long created)
{
    return dump(json_pack("{s:s, s:[{s:s, s:s, s:I, s:s}]}", "object", "list", "data", "id", model, "object",
                          "model", "created", (json_int_t)created, "owned_by", "augur"));
}

size_t utf8_safe_prefix(const char *text, size_t len)
{
    size_t cut = len;
    /* back over at most 3 continuation bytes to the lead byte of the last character */
    size_t back = 0;
    while (back < 4 && cut > 0 && ((unsigned char)text[cut - 1] & 0xC0) == 0x80) {
        cut--;
        back++;
    }
    if (cut == 0)
        return len; /* not UTF-8 text; leave it to the JSON encoder to refuse */
    unsigned char lead = (unsigned char)text[cut - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return back + 1 >= need ? len : cut - 1;
}
