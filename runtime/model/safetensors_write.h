/* Writing safetensors files: collect named tensors, then save them as one file whose
 * header is padded with spaces so the data starts 8-byte aligned, as Hugging Face's
 * writer does. Used by tests, tools and the llama2.c converter. */
#ifndef AUGUR_SAFETENSORS_WRITE_H
#define AUGUR_SAFETENSORS_WRITE_H

#include <stdint.h>

#include "base/error.h"
#include "base/tensor.h"

typedef struct safetensors_writer safetensors_writer;

/* NULL when out of memory. */
safetensors_writer *safetensors_writer_new(void);

/* Copies data (the product of shape's ndim entries, in dtype); names must be unique. */
augur_status safetensors_writer_add(safetensors_writer *w, const char *name, augur_dtype dtype, int ndim,
                                    const int64_t *shape, const void *data, augur_error *err);

/* Writes the tensors in the order they were added. */
augur_status safetensors_writer_save(const safetensors_writer *w, const char *path, augur_error *err);

void safetensors_writer_free(safetensors_writer *w);

#endif
