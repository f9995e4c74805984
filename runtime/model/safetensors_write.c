#include "runtime/model/safetensors_write.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WRITER_MAX_DIMS 4

typedef struct {
    char *name;
    augur_dtype dtype;
    int ndim;
    int64_t shape[WRITER_MAX_DIMS];
    void *data;
    size_t nbytes;
} pending_tensor;

struct safetensors_writer {
    pending_tensor *tensors;
    int n, cap;
};

safetensors_writer *safetensors_writer_new(void)
{
    return calloc(1, sizeof(safetensors_writer));
}

static augur_status check_new_tensor(const safetensors_writer *w, const char *name, int ndim,
                                     const int64_t *shape, augur_error *err)
{
    if (!strcmp(name, "__metadata__"))
        return augur_fail(err, AUGUR_E_INPUT, "safetensors writer: __metadata__ is not a tensor name");
    if (ndim < 0 || ndim > WRITER_MAX_DIMS)
        return augur_fail(err, AUGUR_E_INPUT, "safetensors writer: tensor %s has %d dimensions (at most %d)", name,
                          ndim, WRITER_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return augur_fail(err, AUGUR_E_INPUT, "safetensors writer: tensor %s has shape[%d] = %lld", name, i,
                              (long long)shape[i]);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->tensors[i].name, name))
            return augur_fail(err, AUGUR_E_INPUT, "safetensors writer: tensor %s added twice", name);
    return AUGUR_OK;
}

augur_status safetensors_writer_add(safetensors_writer *w, const char *name, augur_dtype dtype, int ndim,
                                    const int64_t *shape, const void *data, augur_error *err)
{
    augur_status st = check_new_tensor(w, name, ndim, shape, err);
    if (st)
        return st;
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        pending_tensor *t = realloc(w->tensors, (size_t)cap * sizeof *t);
        if (!t)
            return augur_fail(err, AUGUR_E_NOMEM, "safetensors writer: out of memory for %s", name);
        w->tensors = t;
        w->cap = cap;
    }
    pending_tensor *t = &w->tensors[w->n];
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        count *= (size_t)shape[i];
    }
    t->nbytes = count * augur_dtype_size(dtype);
    t->name = strdup(name);
    t->data = malloc(t->nbytes ? t->nbytes : 1);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return augur_fail(err, AUGUR_E_NOMEM, "safetensors writer: out of memory for %s", name);
    }
    if (t->nbytes)
        memcpy(t->data, data, t->nbytes);
    w->n++;
    return AUGUR_OK;
}

/* The JSON header, in insertion order, with contiguous data_offsets. */
static char *build_header(const safetensors_writer *w)
{
    json_t *root = json_object();
    size_t offset = 0;
    bool ok = root != NULL;
    for (int i = 0; ok && i < w->n; i++) {
        const pending_tensor *t = &w->tensors[i];
        json_t *shape = json_array();
        for (int d = 0; shape && d < t->ndim; d++)
            ok = ok && !json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *entry = shape ? json_pack("{s:s, s:o, s:[I, I]}", "dtype", augur_dtype_name(t->dtype), "shape",
                                          shape, "data_offsets", (json_int_t)offset,
                                          (json_int_t)(offset + t->nbytes))
                              : NULL;
        ok = ok && entry && !json_object_set_new(root, t->name, entry);
        offset += t->nbytes;
    }
    char *header = ok ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    return header;
}

augur_status safetensors_writer_save(const safetensors_writer *w, const char *path, augur_error *err)
{
    char *header = build_header(w);
    if (!header)
        return augur_fail(err, AUGUR_E_NOMEM, "%s: cannot build the safetensors header", path);
    size_t hlen = strlen(header);
    size_t padded = (hlen + 7) & ~(size_t)7; /* data then starts 8-byte aligned */
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(header);
        return augur_fail(err, AUGUR_E_IO, "%s: cannot create file", path);
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)(((uint64_t)padded >> (8 * i)) & 0xff);
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
    for (size_t i = hlen; ok && i < padded; i++)
        ok = fputc(' ', f) != EOF;
    for (int i = 0; ok && i < w->n; i++)
        ok = fwrite(w->tensors[i].data, 1, w->tensors[i].nbytes, f) == w->tensors[i].nbytes;
    free(header);
    if (fclose(f) != 0 || !ok)
        return augur_fail(err, AUGUR_E_IO, "%s: write failed", path);
    return AUGUR_OK;
}

void safetensors_writer_free(safetensors_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].data);
    }
    free(w->tensors);
    free(w);
}
