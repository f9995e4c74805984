#include "runtime/model/safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The format's reference reader refuses larger headers; so do we, before parsing. */
#define HEADER_LIMIT ((uint64_t)100 << 20)

static augur_status parse_dtype(const char *path, const char *name, const char *s, augur_dtype *dt,
                                augur_error *err)
{
    if (!strcmp(s, "F32"))
        *dt = AUGUR_F32;
    else if (!strcmp(s, "F16"))
        *dt = AUGUR_F16;
    else if (!strcmp(s, "BF16"))
        *dt = AUGUR_BF16;
    else {
        char shown[64];
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "%s: tensor %s has unsupported dtype %s (F32, F16, BF16)",
                          path, name, augur_escape(s, shown, sizeof shown));
    }
    return AUGUR_OK;
}

/* Element count of the shape, refusing negative or overflowing sizes. */
static augur_status parse_shape(const char *path, const char *name, json_t *shape, safetensors_entry *e,
                                uint64_t *count, augur_error *err)
{
    size_t nd = json_array_size(shape);
    if (nd > SAFETENSORS_MAX_DIMS)
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "%s: tensor %s has %zu dimensions (at most %d)", path, name, nd,
                          SAFETENSORS_MAX_DIMS);
    e->ndim = (int)nd;
    *count = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return augur_fail(err, AUGUR_E_FORMAT, "%s: tensor %s: shape[%zu] is not a non-negative integer", path,
                              name, i);
        e->shape[i] = json_integer_value(d);
        if (__builtin_mul_overflow(*count, (uint64_t)e->shape[i], count))
            return augur_fail(err, AUGUR_E_FORMAT, "%s: tensor %s: shape overflows", path, name);
    }
    return AUGUR_OK;
}

static augur_status parse_entry(const char *path, const char *name, json_t *v, const unsigned char *data,
                                size_t data_len, safetensors_entry *e, augur_error *err)
{
    json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_object(v) || !json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offs) ||
        json_array_size(offs) != 2)
        return augur_fail(err, AUGUR_E_FORMAT,
                          "%s: tensor %s: header entry needs a dtype string, a shape list and two data_offsets",
                          path, name);
    augur_status st = parse_dtype(path, name, json_string_value(dtype), &e->dtype, err);
    uint64_t count = 0;
    if (st || (st = parse_shape(path, name, shape, e, &count, err)))
        return st;

    json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
    if (!json_is_integer(b) || !json_is_integer(en) || json_integer_value(b) < 0 || json_integer_value(en) < 0)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: tensor %s: data_offsets must be non-negative integers", path,
                          name);
    uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(en);
    if (begin > end)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: tensor %s: data_offsets begin %llu is after end %llu", path,
                          name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_len)
        return augur_fail(err, AUGUR_E_FORMAT,
                          "%s: tensor %s: data_offsets [%llu, %llu] run past the %zu data bytes in the file "
                          "(truncated?)",
                          path, name, (unsigned long long)begin, (unsigned long long)end, data_len);
    size_t esz = augur_dtype_size(e->dtype);
    uint64_t want;
    if (__builtin_mul_overflow(count, (uint64_t)esz, &want) || end - begin != want)
        return augur_fail(err, AUGUR_E_FORMAT,
                          "%s: tensor %s: data_offsets span %llu bytes, but a %s tensor of %llu elements needs %llu",
                          path, name, (unsigned long long)(end - begin), augur_dtype_name(e->dtype),
                          (unsigned long long)count, (unsigned long long)(count * esz));
    e->data = data + begin;
    e->nbytes = (size_t)want;
    /* Kernels read elements through typed pointers; Hugging Face pads the header so
     * this always holds, and a file where it does not would need a copy to use. */
    if ((uintptr_t)e->data % esz)
        return augur_fail(err, AUGUR_E_UNSUPPORTED,
                          "%s: tensor %s: data is not aligned to its %zu-byte elements (header not padded; "
                          "re-save the file with a current safetensors)",
                          path, name, esz);
    return AUGUR_OK;
}

/* Reads and checks the length prefix; *hlen is the JSON header's size. */
static augur_status parse_prefix(const mapped_file *f, uint64_t *hlen, augur_error *err)
{
    if (f->size < 8)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: %zu bytes is too short for a safetensors header", f->path,
                          f->size);
    *hlen = 0;
    for (int i = 7; i >= 0; i--) /* little-endian, whatever the host */
        *hlen = (*hlen << 8) | f->base[i];
    if (*hlen > HEADER_LIMIT)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: header length %llu exceeds the 100 MB limit (corrupt file?)",
                          f->path, (unsigned long long)*hlen);
    if (*hlen > f->size - 8)
        return augur_fail(err, AUGUR_E_FORMAT,
                          "%s: header length %llu runs past the end of the file (%zu bytes; truncated?)", f->path,
                          (unsigned long long)*hlen, f->size);
    if (*hlen < 2)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: header length %llu is too short for a JSON object", f->path,
                          (unsigned long long)*hlen);
    return AUGUR_OK;
}

static int by_offset(const void *a, const void *b)
{
    const safetensors_entry *x = *(const safetensors_entry *const *)a, *y = *(const safetensors_entry *const *)b;
    if (x->data != y->data)
        return (uintptr_t)x->data < (uintptr_t)y->data ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* The tensors must tile the data buffer exactly, as strict readers (the format's own)
 * require: an overlap would let two tensors read the same bytes, a gap or a tail means
 * the header and the data disagree. */
static augur_status check_tiling(safetensors_file *sf, const unsigned char *data, size_t data_len, augur_error *err)
{
    const safetensors_entry **order = malloc((size_t)(sf->n_entries ? sf->n_entries : 1) * sizeof *order);
    if (!order)
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", sf->file->path);
    for (int i = 0; i < sf->n_entries; i++)
        order[i] = &sf->entries[i];
    qsort(order, (size_t)sf->n_entries, sizeof *order, by_offset);
    augur_status st = AUGUR_OK;
    size_t expected = 0;
    char shown[160];
    for (int i = 0; i < sf->n_entries && !st; i++) {
        size_t begin = (size_t)((const unsigned char *)order[i]->data - data);
        if (begin < expected)
            st = augur_fail(err, AUGUR_E_FORMAT, "%s: tensor %s: data_offsets begin %zu overlaps the tensor before it "
                            "(which ends at %zu)", sf->file->path, augur_escape(order[i]->name, shown, sizeof shown),
                            begin, expected);
        else if (begin > expected)
            st = augur_fail(err, AUGUR_E_FORMAT, "%s: tensor %s: data_offsets begin %zu leaves a gap after byte %zu",
                            sf->file->path, augur_escape(order[i]->name, shown, sizeof shown), begin, expected);
        expected = begin + order[i]->nbytes;
    }
    if (!st && expected != data_len)
        st = augur_fail(err, AUGUR_E_FORMAT, "%s: the tensors cover %zu of the %zu data bytes after the header",
                        sf->file->path, expected, data_len);
    free(order);
    return st;
}

static augur_status parse_header(safetensors_file *sf, json_t *root, size_t hlen, augur_error *err)
{
    const mapped_file *f = sf->file;
    const unsigned char *data = f->base + 8 + hlen;
    size_t data_len = f->size - 8 - hlen;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val))
                return augur_fail(err, AUGUR_E_FORMAT, "%s: __metadata__ is not an object", f->path);
            continue;
        }
        safetensors_entry *e = &sf->entries[sf->n_entries];
        char shown[160];
        augur_status st = parse_entry(f->path, augur_escape(key, shown, sizeof shown), val, data, data_len, e, err);
        if (st)
            return st;
        if (!(e->name = strdup(key)))
            return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", f->path);
        sf->n_entries++;
    }
    return check_tiling(sf, data, data_len, err);
}

augur_status safetensors_open(safetensors_file **out, const char *path, augur_error *err)
{
    *out = NULL;
    safetensors_file *sf = calloc(1, sizeof *sf);
    if (!sf)
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", path);
    uint64_t hlen = 0;
    augur_status st = mapped_file_open(&sf->file, path, err);
    if (!st)
        st = parse_prefix(sf->file, &hlen, err);
    json_t *root = NULL;
    if (!st) {
        json_error_t jerr;
        root = json_loadb((const char *)sf->file->base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
        char shown[sizeof jerr.text];
        if (!root)
            st = augur_fail(err, AUGUR_E_FORMAT, "%s: header is not valid JSON (byte %d: %s)", path, jerr.position,
                            augur_escape(jerr.text, shown, sizeof shown));
        else if (!json_is_object(root))
            st = augur_fail(err, AUGUR_E_FORMAT, "%s: header is JSON but not an object", path);
    }
    if (!st) {
        size_t n = json_object_size(root);
        sf->entries = calloc(n ? n : 1, sizeof *sf->entries);
        sf->used = calloc(n ? n : 1, sizeof *sf->used);
        st = sf->entries && sf->used ? parse_header(sf, root, (size_t)hlen, err)
                                     : augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", path);
    }
    json_decref(root);
    if (st) {
        safetensors_close(sf);
        return st;
    }
    *out = sf;
    return AUGUR_OK;
}

void safetensors_close(safetensors_file *sf)
{
    if (!sf)
        return;
    for (int i = 0; i < sf->n_entries; i++)
        free(sf->entries[i].name);
    free(sf->entries);
    free(sf->used);
    mapped_file_close(sf->file);
    free(sf);
}

const safetensors_entry *safetensors_find(const safetensors_file *sf, const char *name)
{
    for (int i = 0; i < sf->n_entries; i++)
        if (!strcmp(sf->entries[i].name, name))
            return &sf->entries[i];
    return NULL;
}

int safetensors_count(const safetensors_file *sf)
{
    return sf->n_entries;
}

const safetensors_entry *safetensors_entry_at(const safetensors_file *sf, int i)
{
    return i >= 0 && i < sf->n_entries ? &sf->entries[i] : NULL;
}

const char *safetensors_path(const safetensors_file *sf)
{
    return sf->file->path;
}
