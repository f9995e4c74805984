/* Error reporting: every fallible call returns an augur status code and fills an
 * augur_error whose message names the file, tensor, rank or field at fault. */
#ifndef AUGUR_ERROR_H
#define AUGUR_ERROR_H

#include <stdarg.h>
#include <stddef.h>

typedef enum {
    AUGUR_OK = 0,
    AUGUR_E_INPUT = 2,     /* bad user input: flags, prompt, paths (CLI exit code 2) */
    AUGUR_E_FORMAT = 3,    /* a file or message whose content is malformed */
    AUGUR_E_IO = 4,        /* the OS refused: open, read, mmap */
    AUGUR_E_NOMEM = 5,
    AUGUR_E_UNSUPPORTED = 6,
    AUGUR_E_COMM = 7,      /* MPI / NCCL / protocol failure */
    AUGUR_E_INTERNAL = 8,
} augur_status;

typedef struct augur_error {
    augur_status code;
    char message[1024];
} augur_error;

/* Records the first failure and returns its code, so callers can write
 * `return augur_fail(err, AUGUR_E_FORMAT, "%s: tensor %s ...", path, name);`.
 * A NULL err is allowed (the message is dropped). */
augur_status augur_fail(augur_error *err, augur_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes context to an existing message ("loading target: <old message>"). */
augur_status augur_wrap(augur_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void augur_error_clear(augur_error *err);

/* Copies s into out (cap bytes, NUL-terminated) with control bytes, DEL and
 * backslashes written as \xNN / \\, cut with "..." when it does not fit: text from a
 * corrupt file can then be quoted in a message without moving the terminal. */
const char *augur_escape(const char *s, char *out, size_t cap);

/* Exit code the CLI uses for a status: input and format problems are the user's (2). */
int augur_exit_code(augur_status code);

#endif
