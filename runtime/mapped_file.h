/* A read-only memory mapping of a whole file. */
#ifndef AUGUR_MAPPED_FILE_H
#define AUGUR_MAPPED_FILE_H

#include <stddef.h>

#include "runtime/error.h"

struct mapped_file {
    char *path;
    const unsigned char *base;
    size_t size;
};
typedef struct mapped_file mapped_file;

augur_status mapped_file_open(mapped_file **out, const char *path, augur_error *err);
void mapped_file_close(mapped_file *f);

#endif
