/* The HTTP front end of `augur serve` (libmicrohttpd, a thread per connection):
 * routes, body limits, OpenAI-style errors, Server-Sent Events streaming, and the
 * noticing of clients that go away. It never touches MPI: requests reach the engine
 * through the queue (scheduler.h). */
#ifndef AUGUR_HTTP_SERVER_H
#define AUGUR_HTTP_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "runtime/serve/chat_template.h"
#include "runtime/serve/metrics.h"
#include "runtime/serve/scheduler.h"
#include "runtime/tokenizer/tokenizer.h"

/* Everything the HTTP threads read; set up before the server starts. */
typedef struct {
    const tokenizer *tok;
    pthread_mutex_t tok_mu;  /* encoding runs Oniguruma regexes: one at a time */
    chat_template_kind chat;
    const char *model_name;
    long long created;
    int max_context;
    int vocab;
    int default_max_tokens;  /* for a request without max_tokens (capped by the context) */
    size_t max_body;         /* bytes; a larger body is answered 413 */
    int retry_after_s;       /* the Retry-After of a 503 */
    serve_queue *queue;
    serve_metrics *metrics;
    atomic_ullong next_id;
    atomic_int open_requests; /* requests being answered (for a graceful stop) */
} serve_ctx;

typedef struct http_server http_server;

/* Listens on host:port (port 0: a free port) with at most max_connections at once. */
augur_status http_server_start(http_server **out, serve_ctx *ctx, const char *host, int port, int max_connections,
                               augur_error *err);
int http_server_port(const http_server *s);
/* Waits (up to wait_s) for the requests being answered to finish, then stops. */
void http_server_stop(http_server *s, double wait_s);

#endif
