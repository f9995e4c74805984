/* safetensors files: an 8-byte little-endian header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the
 * tensor bytes. Reading validates everything before any tensor is used; writing is
 * for tests and converters. */
#ifndef AUGUR_SAFETENSORS_H
#define AUGUR_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"
#include "runtime/mapped_file.h"
#include "runtime/tensor.h"

#define SAFETENSORS_MAX_DIMS 4

typedef struct {
    char *name;
    augur_dtype dtype;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    const void *data;
    size_t nbytes;
} safetensors_entry;

typedef struct safetensors_file {
    mapped_file *file;
    safetensors_entry *entries;
    bool *used;              /* set by loaders to find unexpected tensors */
    int n_entries;
} safetensors_file;

augur_status safetensors_open(safetensors_file **out, const char *path, augur_error *err);
void safetensors_close(safetensors_file *st);
const safetensors_entry *safetensors_find(const safetensors_file *st, const char *name);

/* Collects tensors and writes them as one safetensors file. */
typedef struct safetensors_writer safetensors_writer;
safetensors_writer *safetensors_writer_new(void);
/* data is copied; shape has ndim entries. */
augur_status safetensors_writer_add(safetensors_writer *w, const char *name, augur_dtype dtype, int ndim,
                                    const int64_t *shape, const void *data, augur_error *err);
augur_status safetensors_writer_save(const safetensors_writer *w, const char *path, augur_error *err);
void safetensors_writer_free(safetensors_writer *w);

#endif
