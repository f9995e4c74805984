#include "runtime/safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_LIMIT (100u << 20) /* the format's own reference reader refuses more */

static augur_status parse_dtype(const char *path, const char *name, const char *s, augur_dtype *dt,
                                augur_error *err)
{
    if (!strcmp(s, "F32"))
        *dt = AUGUR_F32;
    else if (!strcmp(s, "F16"))
        *dt = AUGUR_F16;
    else if (!strcmp(s, "BF16"))
        *dt = AUGUR_BF16;
    else
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "%s: tensor %s has unsupported dtype %s (F32, F16, BF16)",
                          path, name, s);
    return AUGUR_OK;
}

static augur_status parse_entry(const char *path, const char *name, json_t *v, const unsigned char *data,
                                size_t data_len, safetensors_entry *e, augur_error *err)
{
    json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_object(v) || !json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offs) ||
        json_array_size(offs) != 2)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: tensor %s: header entry needs dtype, shape and data_offsets",
                          path, name);
    augur_status st = parse_dtype(path, name, json_string_value(dtype), &e->dtype, err);
    if (st)
        return st;
    size_t nd = json_array_size(shape);
    if (nd > SAFETENSORS_MAX_DIMS)
        return augur_fail(err, AUGUR_E_UNSUPPORTED, "%s: tensor %s has %zu dimensions (at most %d)", path, name, nd,
                          SAFETENSORS_MAX_DIMS);
    e->ndim = (int)nd;
    uint64_t count = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > (1ll << 40))
            return augur_fail(err, AUGUR_E_FORMAT, "%s: tensor %s: shape[%zu] is not a valid size", path, name, i);
        e->shape[i] = json_integer_value(d);
        count *= (uint64_t)e->shape[i];
    }
    json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
    if (!json_is_integer(b) || !json_is_integer(en) || json_integer_value(b) < 0 ||
        json_integer_value(en) < json_integer_value(b))
        return augur_fail(err, AUGUR_E_FORMAT, "%s: tensor %s: data_offsets are not 0 <= begin <= end", path, name);
    uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(en);
    if (end > data_len)
        return augur_fail(err, AUGUR_E_FORMAT,
                          "%s: tensor %s: data_offsets [%llu, %llu] run past the end of the file's %zu data bytes "
                          "(truncated file?)",
                          path, name, (unsigned long long)begin, (unsigned long long)end, data_len);
    uint64_t want = count * augur_dtype_size(e->dtype);
    if (end - begin != want)
        return augur_fail(err, AUGUR_E_FORMAT, "%s: tensor %s: %llu bytes for a %s tensor of %llu elements (%llu expected)",
                          path, name, (unsigned long long)(end - begin), augur_dtype_name(e->dtype),
                          (unsigned long long)count, (unsigned long long)want);
    e->data = data + begin;
    e->nbytes = (size_t)want;
    return AUGUR_OK;
}

augur_status safetensors_open(safetensors_file **out, const char *path, augur_error *err)
{
    *out = NULL;
    mapped_file *f = NULL;
    augur_status st = mapped_file_open(&f, path, err);
    if (st)
        return st;
    if (f->size < 8) {
        mapped_file_close(f);
        return augur_fail(err, AUGUR_E_FORMAT, "%s: %zu bytes is too short for a safetensors header", path, f->size);
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | f->base[i];
    if (hlen > f->size - 8 || hlen > HEADER_LIMIT || hlen < 2) {
        size_t size = f->size;
        mapped_file_close(f);
        return augur_fail(err, AUGUR_E_FORMAT, "%s: header length %llu does not fit the file of %zu bytes", path,
                          (unsigned long long)hlen, size);
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->base + 8, (size_t)hlen, 0, &jerr);
    if (!root || !json_is_object(root)) {
        mapped_file_close(f);
        json_decref(root);
        return augur_fail(err, AUGUR_E_FORMAT, "%s: header is not a JSON object (%s)", path,
                          root ? "not an object" : jerr.text);
    }
    safetensors_file *sf = calloc(1, sizeof *sf);
    size_t n = json_object_size(root);
    if (sf) {
        sf->entries = calloc(n ? n : 1, sizeof *sf->entries);
        sf->used = calloc(n ? n : 1, sizeof *sf->used);
    }
    if (!sf || !sf->entries || !sf->used) {
        if (sf) {
            free(sf->entries);
            free(sf->used);
        }
        free(sf);
        json_decref(root);
        mapped_file_close(f);
        return augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", path);
    }
    sf->file = f;
    const unsigned char *data = f->base + 8 + hlen;
    size_t data_len = f->size - 8 - (size_t)hlen;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__"))
            continue;
        safetensors_entry *e = &sf->entries[sf->n_entries];
        if ((st = parse_entry(path, key, val, data, data_len, e, err)))
            break;
        if (!(e->name = strdup(key))) {
            st = augur_fail(err, AUGUR_E_NOMEM, "%s: out of memory", path);
            break;
        }
        sf->n_entries++;
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

/* ---- writer ---- */

struct safetensors_writer {
    safetensors_entry *entries;
    void **blobs;
    int n, cap;
};

safetensors_writer *safetensors_writer_new(void)
{
    return calloc(1, sizeof(safetensors_writer));
}

augur_status safetensors_writer_add(safetensors_writer *w, const char *name, augur_dtype dtype, int ndim,
                                    const int64_t *shape, const void *data, augur_error *err)
{
    if (ndim < 0 || ndim > SAFETENSORS_MAX_DIMS)
        return augur_fail(err, AUGUR_E_INTERNAL, "safetensors writer: tensor %s has %d dimensions", name, ndim);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        safetensors_entry *e = realloc(w->entries, (size_t)cap * sizeof *e);
        if (!e)
            return augur_fail(err, AUGUR_E_NOMEM, "safetensors writer: out of memory");
        w->entries = e;
        void **b = realloc(w->blobs, (size_t)cap * sizeof *b);
        if (!b)
            return augur_fail(err, AUGUR_E_NOMEM, "safetensors writer: out of memory");
        w->blobs = b;
        w->cap = cap;
    }
    safetensors_entry *e = &w->entries[w->n];
    memset(e, 0, sizeof *e);
    e->dtype = dtype;
    e->ndim = ndim;
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        count *= (size_t)shape[i];
    }
    e->nbytes = count * augur_dtype_size(dtype);
    e->name = strdup(name);
    void *blob = malloc(e->nbytes ? e->nbytes : 1);
    if (!e->name || !blob) {
        free(e->name);
        free(blob);
        return augur_fail(err, AUGUR_E_NOMEM, "safetensors writer: out of memory for %s", name);
    }
    memcpy(blob, data, e->nbytes);
    w->blobs[w->n++] = blob;
    return AUGUR_OK;
}

augur_status safetensors_writer_save(const safetensors_writer *w, const char *path, augur_error *err)
{
    static const char *const dtype_names[] = {"F32", "F16", "BF16"};
    json_t *root = json_object();
    size_t offset = 0;
    for (int i = 0; i < w->n && root; i++) {
        const safetensors_entry *e = &w->entries[i];
        json_t *shape = json_array();
        for (int d = 0; d < e->ndim; d++)
            json_array_append_new(shape, json_integer(e->shape[d]));
        json_object_set_new(root, e->name,
                            json_pack("{s:s, s:o, s:[I, I]}", "dtype", dtype_names[e->dtype], "shape", shape,
                                      "data_offsets", (json_int_t)offset, (json_int_t)(offset + e->nbytes)));
        offset += e->nbytes;
    }
    char *header = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!header)
        return augur_fail(err, AUGUR_E_NOMEM, "%s: cannot build the safetensors header", path);
    size_t hlen = strlen(header);
    size_t padded = (hlen + 7) & ~(size_t)7; /* data starts 8-byte aligned, padded with spaces */
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
        ok = fwrite(w->blobs[i], 1, w->entries[i].nbytes, f) == w->entries[i].nbytes;
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
        free(w->entries[i].name);
        free(w->blobs[i]);
    }
    free(w->entries);
    free(w->blobs);
    free(w);
}
