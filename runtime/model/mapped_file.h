/* A read-only memory mapping of a whole file: weights stay in the page cache and are
 * shared by every rank on a node that maps the same checkpoint. */
#ifndef AUGUR_MAPPED_FILE_H
#define AUGUR_MAPPED_FILE_H

#include <stddef.h>

#include "base/error.h"

/* The descriptor is closed once mapped (the mapping keeps the file alive), so there
 * is no fd to leak or exhaust with many shards. */
struct mapped_file {
    char *path;
    const unsigned char *base;
    size_t size;
};
typedef struct mapped_file mapped_file;

/* Missing files and directories are AUGUR_E_INPUT, empty files AUGUR_E_FORMAT;
 * every message names the path. */
augur_status mapped_file_open(mapped_file **out, const char *path, augur_error *err);
void mapped_file_close(mapped_file *f);

#endif
