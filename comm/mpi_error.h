/* MPI failures as augur errors, with MPI's own words for the code. */
#ifndef AUGUR_MPI_ERROR_H
#define AUGUR_MPI_ERROR_H

#include "base/error.h"

/* Fails with AUGUR_E_COMM and "<what fmt says>: <MPI's text for rc>". */
augur_status comm_mpi_fail(augur_error *err, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
