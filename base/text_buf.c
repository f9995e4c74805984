#include "base/text_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for n more bytes and the NUL. */
static bool reserve(text_buf *b, size_t n)
{
    if (b->failed)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    size_t cap = (b->len + n + 1) * 2;
    char *p = realloc(b->s, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->s = p;
    b->cap = cap;
    return true;
}

void text_buf_put(text_buf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void text_buf_puts(text_buf *b, const char *s) { text_buf_put(b, s, strlen(s)); }

void text_buf_printf(text_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if (!reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *text_buf_take(text_buf *b)
{
    if (b->failed) {
        free(b->s);
        *b = (text_buf){0};
        return NULL;
    }
    if (!b->s)
        reserve(b, 0);
    if (b->failed)
        return NULL;
    if (b->len == 0)
        b->s[0] = '\0';
    char *s = b->s;
    *b = (text_buf){0};
    return s;
}
