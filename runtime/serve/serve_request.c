/* Request lifetime and the stop-string rule (see serve_request.h). */
#include "runtime/serve/serve_request.h"

#include <stdlib.h>
#include <string.h>

serve_request *serve_request_new(void)
{
    serve_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->refs = 1;
    r->client_fd = -1;
    return r;
}

void serve_request_retain(serve_request *r)
{
    pthread_mutex_lock(&r->mu);
    r->refs++;
    pthread_mutex_unlock(&r->mu);
}

void serve_request_release(serve_request *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left > 0)
        return;
    serve_params_free(&r->params);
    free(r->prompt);
    free(r->seq);
    free(r->text);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void sreq_append_locked(serve_request *r, const char *text, size_t len)
{
    if (r->stop_matched || r->out_of_memory)
        return; /* text after a stop string is dropped */
    if (r->len + len + 1 > r->cap) {
        size_t cap = (r->len + len + 1) * 2;
        char *p = realloc(r->text, cap < 256 ? 256 : cap);
        if (!p) {
            r->out_of_memory = true;
            return;
        }
        r->text = p;
        r->cap = cap < 256 ? 256 : cap;
    }
    memcpy(r->text + r->len, text, len);
    r->len += len;
    r->text[r->len] = '\0';
}

bool sreq_scan_stop_locked(serve_request *r, bool final)
{
    const serve_params *p = &r->params;
    size_t longest = 0;
    for (int i = 0; i < p->n_stop; i++) {
        size_t n = strlen(p->stop[i]);
        longest = n > longest ? n : longest;
    }
    if (!r->stop_matched && longest > 0 && r->len > 0) {
        /* A match starting before `from` would have ended inside text already scanned. */
        size_t from = r->visible > longest ? r->visible - longest : 0;
        size_t best = r->len;
        for (int i = 0; i < p->n_stop; i++) {
            const char *hit = memmem(r->text + from, r->len - from, p->stop[i], strlen(p->stop[i]));
            if (hit && (size_t)(hit - r->text) < best)
                best = (size_t)(hit - r->text);
        }
        if (best < r->len) {
            r->len = best;
            r->text[best] = '\0';
            r->stop_matched = true;
        }
    }
    if (final || r->stop_matched) {
        r->visible = r->len;
    } else {
        size_t hold = longest > 0 ? longest - 1 : 0;
        size_t upto = r->len > hold ? utf8_safe_prefix(r->text, r->len - hold) : 0;
        if (upto > r->visible)
            r->visible = upto;
    }
    return r->stop_matched;
}

void sreq_mark_gone(serve_request *r)
{
    pthread_mutex_lock(&r->mu);
    r->client_gone = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}
