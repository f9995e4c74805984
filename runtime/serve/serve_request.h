/* One request of `augur serve`, shared by the HTTP thread that answers it and the
 * engine thread that generates it. Everything below `mu` is guarded by it; the HTTP
 * side waits on `cv` for text, the engine broadcasts after every round. Reference
 * counted: the connection, its stream and the queue each hold one. */
#ifndef AUGUR_SERVE_REQUEST_H
#define AUGUR_SERVE_REQUEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime/serve/openai_api.h"
#include "runtime/tokenizer/tokenizer.h"

typedef enum { SREQ_QUEUED, SREQ_RUNNING, SREQ_DONE } sreq_state;

typedef struct serve_request {
    /* set before admission, read-only afterwards */
    char id[48];             /* "cmpl-7" / "chatcmpl-7" */
    long long created;       /* Unix seconds */
    serve_params params;
    int32_t *prompt;
    int n_prompt;
    int max_tokens;
    uint64_t seed;
    bool speculate;
    double t_admit_ms;
    int client_fd;           /* to notice a client that went away while we wait */

    /* engine thread only */
    int32_t *seq;            /* prompt then generated ids: [n_prompt + max_tokens] */
    int n_generated;
    detok_stream ds;         /* text of the generated ids, decoded after the prompt's */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    sreq_state state;
    bool client_gone;        /* generation stops at the end of the current round */
    bool stop_matched;       /* a "stop" string ended the text */
    char *text;              /* generated text so far (cut at a matched stop string) */
    size_t len, cap;
    size_t visible;          /* bytes that can be sent: never part of a stop string */
    bool out_of_memory;
    char failure[512];       /* the engine refused the request (an input it checks itself) */
    finish_reason finish;
    serve_usage usage;
    double t_first_ms, t_last_ms;
} serve_request;

serve_request *serve_request_new(void);
void serve_request_retain(serve_request *r);
void serve_request_release(serve_request *r);

/* Engine side, with r->mu held: appends generated text. */
void sreq_append_locked(serve_request *r, const char *text, size_t len);
/* With r->mu held: looks for the stop strings in the new text (cutting the text at the
 * first match) and moves `visible` on, holding back what could still start a stop
 * string unless final. Returns true when a stop string matched. */
bool sreq_scan_stop_locked(serve_request *r, bool final);

/* Marks the request abandoned by its client (any thread). */
void sreq_mark_gone(serve_request *r);

#endif
