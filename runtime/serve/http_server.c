/* libmicrohttpd front end of `augur serve` (see http_server.h). */
#include "runtime/serve/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "runtime/generate.h"

/* How often a waiting answer checks that its client is still connected. */
#define CLIENT_CHECK_MS 500

struct http_server {
    struct MHD_Daemon *d;
    serve_ctx *ctx;
    int port;
};

/* Per HTTP request (MHD's con_cls): the body as it arrives, and how it ended. */
typedef struct {
    char *body;
    size_t len;
    bool too_large;
    bool counted;            /* a generation request: its outcome goes to the metrics */
    request_outcome outcome;
    serve_request *req;      /* a generation admitted to the queue */
} conn_state;

/* A streaming answer: what the reader callback still has to send. */
typedef struct {
    serve_ctx *ctx;
    serve_request *r;
    char *out;               /* formatted SSE bytes not yet handed to MHD */
    size_t out_len, out_off;
    size_t sent;             /* bytes of r->text already in chunks */
    bool role_sent;
    bool ended;
} stream_state;

static bool client_gone(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
        return true;
    if (p.revents & POLLIN) {
        char c;
        return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
    }
    return false;
}

static void deadline_in(struct timespec *t, int ms)
{
    clock_gettime(CLOCK_REALTIME, t);
    t->tv_nsec += (long)ms * 1000000L;
    t->tv_sec += t->tv_nsec / 1000000000L;
    t->tv_nsec %= 1000000000L;
}

static enum MHD_Result send_text(struct MHD_Connection *c, int status, const char *type, char *text,
                                 int retry_after_s)
{
    if (!text) {
        static const char oom[] =
            "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
        struct MHD_Response *r = MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Content-Type", "application/json");
        enum MHD_Result ret = MHD_queue_response(c, 500, r);
        MHD_destroy_response(r);
        return ret;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", type);
    if (retry_after_s > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", retry_after_s);
        MHD_add_response_header(r, "Retry-After", v);
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, conn_state *cs, const api_error *e, int retry_after_s)
{
    if (cs) {
        cs->outcome = e->status == 413   ? OUTCOME_TOO_LARGE
                      : e->status == 503 ? OUTCOME_REJECTED
                      : e->status < 500  ? OUTCOME_INVALID
                                         : OUTCOME_ERROR;
    }
    return send_text(c, e->status, "application/json", openai_error_json(e), retry_after_s);
}

static void usage_snapshot_locked(const serve_request *r, serve_usage *u)
{
    *u = r->usage;
}

/* ---- streaming ---- */

static bool stream_put(stream_state *s, char *json)
{
    if (!json)
        return false;
    size_t n = strlen(json);
    char *buf = malloc(n + 9);
    if (!buf) {
        free(json);
        return false;
    }
    memcpy(buf, "data: ", 6);
    memcpy(buf + 6, json, n);
    memcpy(buf + 6 + n, "\n\n", 3);
    free(json);
    free(s->out);
    s->out = buf;
    s->out_len = n + 8;
    s->out_off = 0;
    return true;
}

static bool stream_put_raw(stream_state *s, const char *text)
{
    char *buf = strdup(text);
    if (!buf)
        return false;
    free(s->out);
    s->out = buf;
    s->out_len = strlen(text);
    s->out_off = 0;
    return true;
}

/* Fills s->out with the next SSE event; false when the stream cannot go on. */
static bool stream_next(stream_state *s)
{
    serve_request *r = s->r;
    const serve_ctx *ctx = s->ctx;
    serve_kind kind = r->params.kind;
    if (!s->role_sent && kind == SERVE_CHAT) {
        s->role_sent = true;
        return stream_put(s, openai_chunk_json(kind, r->id, r->created, ctx->model_name, "", 0, true, NULL));
    }
    pthread_mutex_lock(&r->mu);
    while (s->sent == r->visible && r->state != SREQ_DONE && !r->client_gone) {
        struct timespec until;
        deadline_in(&until, CLIENT_CHECK_MS);
        if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT && client_gone(r->client_fd))
            r->client_gone = true;
    }
    if (r->client_gone) {
        pthread_mutex_unlock(&r->mu);
        return false;
    }
    if (s->sent < r->visible) {
        char *json = openai_chunk_json(kind, r->id, r->created, ctx->model_name, r->text + s->sent,
                                       r->visible - s->sent, false, NULL);
        s->sent = r->visible;
        pthread_mutex_unlock(&r->mu);
        return stream_put(s, json);
    }
    if (r->failure[0] || r->out_of_memory) {
        /* the 200 is already sent: an error event, as OpenAI's streams do, then [DONE] */
        api_error e;
        api_error_set(&e, r->failure[0] ? 400 : 500, r->failure[0] ? "invalid_request_error" : "server_error", NULL,
                      NULL, "%s", r->failure[0] ? r->failure : "out of memory for the generated text");
        pthread_mutex_unlock(&r->mu);
        char *json = openai_error_json(&e);
        s->ended = true;
        bool ok = stream_put(s, json);
        if (ok) {
            size_t n = s->out_len + sizeof "data: [DONE]\n\n";
            char *all = malloc(n);
            if (!all)
                return false;
            snprintf(all, n, "%.*sdata: [DONE]\n\n", (int)s->out_len, s->out);
            ok = stream_put_raw(s, all);
            free(all);
        }
        return ok;
    }
    /* done: the closing chunk, the usage chunk when asked, then [DONE] in one write */
    finish_reason fin = r->finish;
    serve_usage u;
    usage_snapshot_locked(r, &u);
    pthread_mutex_unlock(&r->mu);
    char *last = openai_chunk_json(kind, r->id, r->created, ctx->model_name, NULL, 0, false, &fin);
    char *usage = r->params.include_usage ? openai_usage_chunk_json(kind, r->id, r->created, ctx->model_name, &u)
                                          : NULL;
    bool ok = last && (!r->params.include_usage || usage);
    if (ok) {
        size_t n = strlen(last) + (usage ? strlen(usage) : 0) + 64;
        char *all = malloc(n);
        ok = all != NULL;
        if (ok) {
            snprintf(all, n, "data: %s\n\n%s%s%sdata: [DONE]\n\n", last, usage ? "data: " : "", usage ? usage : "",
                     usage ? "\n\n" : "");
            ok = stream_put_raw(s, all);
            free(all);
        }
    }
    free(last);
    free(usage);
    s->ended = true;
    return ok;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream_state *s = cls;
    while (s->out_off >= s->out_len) {
        if (s->ended)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (!stream_next(s)) {
            sreq_mark_gone(s->r);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = s->out_len - s->out_off;
    if (n > max)
        n = max;
    memcpy(buf, s->out + s->out_off, n);
    s->out_off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    stream_state *s = cls;
    serve_request_release(s->r);
    free(s->out);
    free(s);
}

/* ---- generation requests ---- */

static bool tokenize_prompt(serve_ctx *ctx, serve_request *r, api_error *e)
{
    const serve_params *p = &r->params;
    if (p->prompt_ids) {
        r->prompt = malloc(p->n_prompt_ids * sizeof *r->prompt);
        if (!r->prompt) {
            api_error_set(e, 500, "server_error", NULL, NULL, "out of memory for the prompt");
            return false;
        }
        memcpy(r->prompt, p->prompt_ids, p->n_prompt_ids * sizeof *r->prompt);
        r->n_prompt = (int)p->n_prompt_ids;
        return true;
    }
    bool add_special = true;
    char *rendered = NULL;
    const char *text = p->prompt;
    if (p->kind == SERVE_CHAT) {
        rendered = chat_template_render(ctx->chat, p->messages, p->n_messages, &add_special);
        if (!rendered) {
            api_error_set(e, 500, "server_error", NULL, NULL, "out of memory for the chat prompt");
            return false;
        }
        text = rendered;
    }
    augur_error err = {0};
    size_t n = 0;
    pthread_mutex_lock(&ctx->tok_mu);
    augur_status st = tokenizer_encode(ctx->tok, text, strlen(text), add_special, &r->prompt, &n, &err);
    pthread_mutex_unlock(&ctx->tok_mu);
    free(rendered);
    if (st) {
        api_error_set(e, 400, "invalid_request_error", "invalid_prompt", p->kind == SERVE_CHAT ? "messages" : "prompt",
                      "the prompt cannot be tokenized: %s", err.message);
        return false;
    }
    r->n_prompt = (int)n;
    return true;
}

/* Checks the prompt and max_tokens against the context, as OpenAI does. */
static bool fit_context(serve_ctx *ctx, serve_request *r, api_error *e)
{
    const char *param = r->params.kind == SERVE_CHAT ? "messages" : "prompt";
    if (r->n_prompt < 1) {
        api_error_set(e, 400, "invalid_request_error", "invalid_prompt", param, "the prompt encodes to no tokens");
        return false;
    }
    if (r->n_prompt >= ctx->max_context) {
        api_error_set(e, 400, "invalid_request_error", "context_length_exceeded", param,
                      "this model's context is %d tokens; the prompt has %d, leaving no room to generate",
                      ctx->max_context, r->n_prompt);
        return false;
    }
    int room = ctx->max_context - r->n_prompt;
    if (r->params.max_tokens > room) {
        api_error_set(e, 400, "invalid_request_error", "context_length_exceeded", "max_tokens",
                      "this model's context is %d tokens; the prompt has %d and max_tokens asks for %d more",
                      ctx->max_context, r->n_prompt, r->params.max_tokens);
        return false;
    }
    r->max_tokens = r->params.max_tokens ? r->params.max_tokens
                                         : (ctx->default_max_tokens < room ? ctx->default_max_tokens : room);
    return true;
}

static uint64_t fresh_seed(uint64_t id)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return ((uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec) ^ (id * 0x9E3779B97F4A7C15ull);
}

/* The whole answer of a non-streaming request, once the engine is done with it. */
static enum MHD_Result answer_whole(struct MHD_Connection *c, serve_ctx *ctx, conn_state *cs, serve_request *r)
{
    pthread_mutex_lock(&r->mu);
    while (r->state != SREQ_DONE && !r->client_gone) {
        struct timespec until;
        deadline_in(&until, CLIENT_CHECK_MS);
        if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT && client_gone(r->client_fd)) {
            r->client_gone = true;
            pthread_cond_broadcast(&r->cv);
        }
    }
    if (r->client_gone) {
        pthread_mutex_unlock(&r->mu);
        cs->outcome = OUTCOME_CANCELLED;
        return MHD_NO; /* closes the connection: nobody is listening */
    }
    if (r->out_of_memory || r->failure[0]) {
        api_error e;
        if (r->failure[0])
            api_error_set(&e, 400, "invalid_request_error", "invalid_value", NULL, "%s", r->failure);
        else
            api_error_set(&e, 500, "server_error", NULL, NULL, "out of memory for the generated text");
        pthread_mutex_unlock(&r->mu);
        return send_error(c, cs, &e, 0);
    }
    serve_usage u;
    usage_snapshot_locked(r, &u);
    char *json = openai_response_json(r->params.kind, r->id, r->created, ctx->model_name, r->text ? r->text : "",
                                      r->len, r->finish, &u);
    pthread_mutex_unlock(&r->mu);
    cs->outcome = OUTCOME_SUCCESS;
    return send_text(c, 200, "application/json", json, 0);
}

static enum MHD_Result handle_generate(struct MHD_Connection *c, serve_ctx *ctx, conn_state *cs, serve_kind kind)
{
    cs->counted = true;
    api_error e = {0};
    if (cs->too_large) {
        api_error_set(&e, 413, "invalid_request_error", "request_too_large", NULL,
                      "the request body is larger than %zu bytes (--max-body-kib)", ctx->max_body);
        return send_error(c, cs, &e, 0);
    }
    if (serve_queue_draining(ctx->queue)) {
        api_error_set(&e, 503, "server_error", "server_shutting_down", NULL,
                      "the server is shutting down and accepts no new requests");
        return send_error(c, cs, &e, ctx->retry_after_s);
    }
    serve_request *r = serve_request_new();
    if (!r) {
        api_error_set(&e, 500, "server_error", NULL, NULL, "out of memory for the request");
        return send_error(c, cs, &e, 0);
    }
    enum MHD_Result ret;
    if (!openai_parse_request(kind, cs->body ? cs->body : "", cs->len, ctx->vocab, &r->params, &e)) {
        ret = send_error(c, cs, &e, 0);
        goto out;
    }
    if (r->params.model && strcmp(r->params.model, ctx->model_name)) {
        api_error_set(&e, 404, "invalid_request_error", "model_not_found", "model",
                      "the model '%.200s' does not exist here (GET /v1/models lists '%.200s')", r->params.model,
                      ctx->model_name);
        ret = send_error(c, cs, &e, 0);
        goto out;
    }
    if (!tokenize_prompt(ctx, r, &e) || !fit_context(ctx, r, &e)) {
        ret = send_error(c, cs, &e, 0);
        goto out;
    }
    unsigned long long id = atomic_fetch_add(&ctx->next_id, 1) + 1;
    snprintf(r->id, sizeof r->id, "%s-%llu", kind == SERVE_CHAT ? "chatcmpl" : "cmpl", id);
    r->created = (long long)time(NULL);
    r->seed = r->params.have_seed ? r->params.seed : fresh_seed(id);
    r->speculate = r->params.speculation;
    r->t_admit_ms = augur_now_ms();
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    r->client_fd = ci ? ci->connect_fd : -1;
    queue_verdict v = serve_queue_submit(ctx->queue, r);
    if (v != QUEUE_ADMITTED) {
        if (v == QUEUE_FULL)
            api_error_set(&e, 503, "server_error", "server_overloaded", NULL,
                          "every slot is busy and %d requests already wait (--max-queue); retry later",
                          ctx->queue->max_waiting);
        else
            api_error_set(&e, 503, "server_error", "server_shutting_down", NULL,
                          "the server is shutting down and accepts no new requests");
        ret = send_error(c, cs, &e, ctx->retry_after_s);
        goto out;
    }
    serve_request_retain(r);
    cs->req = r; /* so that the completion callback can stop an abandoned generation */
    if (!r->params.stream) {
        ret = answer_whole(c, ctx, cs, r);
        goto out;
    }
    stream_state *s = calloc(1, sizeof *s);
    struct MHD_Response *resp = s ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, s,
                                                                      stream_free)
                                  : NULL;
    if (!resp) {
        free(s);
        sreq_mark_gone(r);
        api_error_set(&e, 500, "server_error", NULL, NULL, "out of memory for the stream");
        ret = send_error(c, cs, &e, 0);
        goto out;
    }
    s->ctx = ctx;
    s->r = r;
    serve_request_retain(r);
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    cs->outcome = OUTCOME_SUCCESS; /* unless the completion callback says the client left */
    ret = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
out:
    serve_request_release(r);
    return ret;
}

/* ---- routing ---- */

static enum MHD_Result not_found(struct MHD_Connection *c, const char *method, const char *url)
{
    api_error e;
    api_error_set(&e, 404, "invalid_request_error", "not_found", NULL, "no route for %.16s %.200s", method, url);
    return send_error(c, NULL, &e, 0);
}

static enum MHD_Result wrong_method(struct MHD_Connection *c, const char *method, const char *url, const char *allow)
{
    api_error e;
    api_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL, "%.16s is not allowed on %.200s (%s)",
                  method, url, allow);
    char *json = openai_error_json(&e);
    struct MHD_Response *r = json ? MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!r) {
        free(json);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Allow", allow);
    enum MHD_Result ret = MHD_queue_response(c, 405, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result route(serve_ctx *ctx, struct MHD_Connection *c, conn_state *cs, const char *url,
                             const char *method)
{
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/v1/completions") || !strcmp(url, "/v1/chat/completions")) {
        if (!post)
            return wrong_method(c, method, url, "POST");
        return handle_generate(c, ctx, cs, url[4] == 'c' && url[5] == 'h' ? SERVE_CHAT : SERVE_COMPLETION);
    }
    bool health = !strcmp(url, "/health"), models = !strcmp(url, "/v1/models"), metrics = !strcmp(url, "/metrics");
    if (!health && !models && !metrics)
        return not_found(c, method, url);
    if (!get)
        return wrong_method(c, method, url, "GET");
    if (health) {
        bool draining = serve_queue_draining(ctx->queue);
        return send_text(c, draining ? 503 : 200, "application/json",
                         strdup(draining ? "{\"status\":\"draining\"}" : "{\"status\":\"ok\"}"), 0);
    }
    if (models)
        return send_text(c, 200, "application/json", openai_models_json(ctx->model_name, ctx->created), 0);
    return send_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", metrics_render(ctx->metrics), 0);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
    (void)version;
    serve_ctx *ctx = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
        if (!(cs = calloc(1, sizeof *cs)))
            return MHD_NO;
        *con_cls = cs;
        atomic_fetch_add(&ctx->open_requests, 1);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > ctx->max_body)
            cs->too_large = true; /* the body is still read (and dropped), so the client sees the 413 */
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (cs->too_large)
            return MHD_YES;
        if (cs->len + n > ctx->max_body) {
            cs->too_large = true;
            free(cs->body);
            cs->body = NULL;
            cs->len = 0;
            return MHD_YES;
        }
        char *b = realloc(cs->body, cs->len + n + 1);
        if (!b)
            return MHD_NO;
        memcpy(b + cs->len, upload_data, n);
        cs->body = b;
        cs->len += n;
        b[cs->len] = '\0';
        return MHD_YES;
    }
    return route(ctx, c, cs, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)c;
    serve_ctx *ctx = cls;
    conn_state *cs = *con_cls;
    if (!cs)
        return;
    if (cs->req) {
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
            sreq_mark_gone(cs->req); /* its generation ends with the current round */
            cs->outcome = OUTCOME_CANCELLED;
        }
        serve_request_release(cs->req);
    }
    if (cs->counted)
        metrics_outcome(ctx->metrics, cs->outcome);
    free(cs->body);
    free(cs);
    *con_cls = NULL;
    atomic_fetch_sub(&ctx->open_requests, 1);
}

augur_status http_server_start(http_server **out, serve_ctx *ctx, const char *host, int port, int max_connections,
                               augur_error *err)
{
    *out = NULL;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return augur_fail(err, AUGUR_E_INPUT, "--host: '%s' is not an IPv4 address", host);
    http_server *s = calloc(1, sizeof *s);
    if (!s)
        return augur_fail(err, AUGUR_E_NOMEM, "serve: out of memory");
    s->ctx = ctx;
    s->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
                            NULL, NULL, on_request, ctx, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)max_connections, MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, ctx, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600, MHD_OPTION_END);
    if (!s->d) {
        free(s);
        return augur_fail(err, AUGUR_E_IO, "serve: cannot listen on %s:%d (%s)", host, port,
                          errno ? strerror(errno) : "libmicrohttpd refused");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : port;
    *out = s;
    return AUGUR_OK;
}

int http_server_port(const http_server *s)
{
    return s->port;
}

void http_server_stop(http_server *s, double wait_s)
{
    if (!s)
        return;
    double until = augur_now_ms() + wait_s * 1e3;
    while (atomic_load(&s->ctx->open_requests) > 0 && augur_now_ms() < until)
        usleep(10 * 1000);
    MHD_stop_daemon(s->d);
    free(s);
}
