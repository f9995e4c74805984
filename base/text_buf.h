/* A growable NUL-terminated string for text built piece by piece (HTTP bodies, chat
 * prompts, metrics). An allocation failure sets `failed` and makes later appends no-ops,
 * so a builder checks once at the end: text_buf_take. */
#ifndef AUGUR_TEXT_BUF_H
#define AUGUR_TEXT_BUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *s;       /* NUL-terminated once anything was appended; NULL before */
    size_t len, cap;
    bool failed;
} text_buf;

void text_buf_put(text_buf *b, const char *s, size_t n);
void text_buf_puts(text_buf *b, const char *s);
void text_buf_printf(text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The text (the caller frees it; "" when nothing was appended), or NULL after a failure,
 * the buffer's memory then released. */
char *text_buf_take(text_buf *b);

#endif
