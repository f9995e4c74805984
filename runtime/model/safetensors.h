/* Reading safetensors files: an 8-byte little-endian header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the
 * tensor bytes. Opening validates every entry, so a loader can trust what it finds. */
#ifndef AUGUR_SAFETENSORS_H
#define AUGUR_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "runtime/model/mapped_file.h"
#include "runtime/model/safetensors_write.h" /* the writer, for callers that do both */
#include "base/tensor.h"

#define SAFETENSORS_MAX_DIMS 4

typedef struct {
    char *name;
    augur_dtype dtype;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    const void *data;        /* into the mapping, aligned to the element size */
    size_t nbytes;
} safetensors_entry;

typedef struct safetensors_file {
    mapped_file *file;
    safetensors_entry *entries; /* in header order, "__metadata__" excluded */
    bool *used;              /* [n_entries], for loaders to find unexpected tensors */
    int n_entries;
} safetensors_file;

/* Maps and validates path. Only F32, F16 and BF16 tensors are accepted: any other
 * dtype is AUGUR_E_UNSUPPORTED naming the tensor; a malformed file is AUGUR_E_FORMAT. */
augur_status safetensors_open(safetensors_file **out, const char *path, augur_error *err);
void safetensors_close(safetensors_file *st);

/* NULL when absent. */
const safetensors_entry *safetensors_find(const safetensors_file *st, const char *name);

/* Iteration: entries 0 .. count-1 in header order. */
int safetensors_count(const safetensors_file *st);
const safetensors_entry *safetensors_entry_at(const safetensors_file *st, int i);

/* The path it was opened from, for messages. */
const char *safetensors_path(const safetensors_file *st);

#endif
