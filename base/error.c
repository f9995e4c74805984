#include "base/error.h"

#include <stdio.h>
#include <string.h>

augur_status augur_fail(augur_error *err, augur_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

augur_status augur_wrap(augur_error *err, const char *fmt, ...)
{
    if (!err)
        return AUGUR_E_INTERNAL;
    char old[sizeof err->message];
    memcpy(old, err->message, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    size_t used = n < 0 ? 0 : (size_t)n;
    if (used + 2 < sizeof err->message) { /* room for ": " and some of the old message */
        size_t room = sizeof err->message - used - 3;
        size_t len = strnlen(old, room);
        memcpy(err->message + used, ": ", 2);
        memcpy(err->message + used + 2, old, len);
        err->message[used + 2 + len] = '\0';
    }
    return err->code;
}

void augur_error_clear(augur_error *err)
{
    if (err) {
        err->code = AUGUR_OK;
        err->message[0] = '\0';
    }
}

int augur_exit_code(augur_status code)
{
    switch (code) {
    case AUGUR_OK:
        return 0;
    case AUGUR_E_INPUT:
    case AUGUR_E_FORMAT:
    case AUGUR_E_UNSUPPORTED:
    case AUGUR_E_IO:
        return 2;
    default:
        return 1;
    }
}

const char *augur_escape(const char *s, char *out, size_t cap)
{
    if (cap == 0)
        return out;
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char piece[8];
        int n = *p < 0x20 || *p == 0x7f ? snprintf(piece, sizeof piece, "\\x%02x", *p)
                : *p == '\\'            ? snprintf(piece, sizeof piece, "\\\\")
                                        : snprintf(piece, sizeof piece, "%c", *p);
        if (o + (size_t)n + 4 > cap) { /* keep room for "..." and the NUL */
            if (o + 4 <= cap) {
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        memcpy(out + o, piece, (size_t)n);
        o += (size_t)n;
    }
    out[o < cap ? o : cap - 1] = '\0';
    return out;
}
