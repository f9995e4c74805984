/* MPI failures as augur errors (see mpi_error.h). */
#include "comm/mpi_error.h"

#include <stdarg.h>
#include <stdio.h>

#include <mpi.h>

augur_status comm_mpi_fail(augur_error *err, int rc, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error code %d", rc);
    return augur_fail(err, AUGUR_E_COMM, "%s: %s", what, text);
}
