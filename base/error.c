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
