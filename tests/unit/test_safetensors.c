/* safetensors reading and writing: round trips in every supported dtype, and a
 * specific error, naming the file and tensor, for each way a file can be broken. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#define _XOPEN_SOURCE_EXTENDED 1
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/model/safetensors.h"
#include "runtime/model/safetensors_write.h"
#include "test_util.h"


static char *path_in(void **state, const char *name)
{
    char *p = malloc(strlen(*state) + strlen(name) + 2);
    sprintf(p, "%s/%s", (const char *)*state, name);
    return p;
}

/* A file from a literal header: 8-byte length (hlen_override if non-zero), the header
 * padded with spaces to 8 bytes as Hugging Face does, then data. */
static char *write_raw(void **state, const char *name, const char *header, const void *data, size_t data_len,
                       uint64_t hlen_override)
{
    size_t hlen = strlen(header), padded = (hlen + 7) & ~(size_t)7;
    size_t total = 8 + padded + data_len;
    unsigned char *buf = malloc(total);
    uint64_t n = hlen_override ? hlen_override : padded;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + 8, header, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    if (data_len)
        memcpy(buf + 8 + padded, data, data_len);
    char *path = path_in(state, name);
    assert_int_equal(test_write_file(path, buf, total), 0);
    free(buf);
    return path;
}

/* Opens path, expecting failure with code and a message containing both needles. */
static void expect_open_error(const char *path, augur_status code, const char *needle1, const char *needle2)
{
    safetensors_file *sf = (safetensors_file *)(uintptr_t)1;
    augur_error err = {0};
    test_expect_status(safetensors_open(&sf, path, &err), &err, code, needle1, needle2);
    assert_null(sf);
}

/* A file from a literal header (write_raw) that must fail to open with code and a
 * message naming the file and containing needle1 and, unless NULL, needle2. */
static void expect_raw_error(void **state, const char *name, const char *header, const void *data, size_t data_len,
                             augur_status code, const char *needle1, const char *needle2)
{
    char *path = write_raw(state, name, header, data, data_len, 0);
    expect_open_error(path, code, needle1, needle2);
    expect_open_error(path, code, path, NULL);
    free(path);
}

static void test_roundtrip_all_dtypes(void **state)
{
    float f32[6] = {1.5f, -2.25f, 3.0f, 0.0f, -0.0f, 1e-30f};
    float ref[4] = {0.5f, -1.0f, 256.0f, 3.140625f}; /* exact in F16 and BF16 */
    uint16_t f16[4], bf16[4];
    for (int i = 0; i < 4; i++) {
        f16[i] = augur_f32_to_f16(ref[i]);
        bf16[i] = augur_f32_to_bf16(ref[i]);
    }
    float scalar = 42.0f;
    augur_error err = {0};
    safetensors_writer *w = safetensors_writer_new();
    assert_non_null(w);
    assert_int_equal(safetensors_writer_add(w, "a.f32", AUGUR_F32, 2, (int64_t[]){2, 3}, f32, &err), AUGUR_OK);
    assert_int_equal(safetensors_writer_add(w, "b.f16", AUGUR_F16, 1, (int64_t[]){4}, f16, &err), AUGUR_OK);
    assert_int_equal(safetensors_writer_add(w, "c.bf16", AUGUR_BF16, 3, (int64_t[]){1, 2, 2}, bf16, &err), AUGUR_OK);
    assert_int_equal(safetensors_writer_add(w, "d.scalar", AUGUR_F32, 0, NULL, &scalar, &err), AUGUR_OK);
    assert_int_equal(safetensors_writer_add(w, "e.empty", AUGUR_BF16, 2, (int64_t[]){0, 5}, NULL, &err), AUGUR_OK);
    /* a name can only be added once */
    assert_int_equal(safetensors_writer_add(w, "b.f16", AUGUR_F16, 1, (int64_t[]){4}, f16, &err), AUGUR_E_INPUT);
    assert_non_null(strstr(err.message, "b.f16"));
    char *path = path_in(state, "rt.safetensors");
    assert_int_equal(safetensors_writer_save(w, path, &err), AUGUR_OK);
    safetensors_writer_free(w);

    safetensors_file *sf = NULL;
    assert_int_equal(safetensors_open(&sf, path, &err), AUGUR_OK);
    assert_int_equal(safetensors_count(sf), 5);
    assert_string_equal(safetensors_path(sf), path);
    const char *order[] = {"a.f32", "b.f16", "c.bf16", "d.scalar", "e.empty"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(safetensors_entry_at(sf, i)->name, order[i]);
    assert_null(safetensors_entry_at(sf, 5));
    assert_null(safetensors_find(sf, "missing"));

    const safetensors_entry *a = safetensors_find(sf, "a.f32");
    assert_int_equal(a->dtype, AUGUR_F32);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->shape[1], 3);
    assert_int_equal(a->nbytes, sizeof f32);
    assert_int_equal((uintptr_t)a->data % 8, 0); /* the padded header keeps data aligned */
    assert_memory_equal(a->data, f32, sizeof f32);

    const safetensors_entry *b = safetensors_find(sf, "b.f16");
    assert_int_equal(b->dtype, AUGUR_F16);
    tensor_view vb = {.data = b->data, .dtype = b->dtype, .rows = 1, .cols = 4, .row_stride = 4};
    const safetensors_entry *c = safetensors_find(sf, "c.bf16");
    assert_int_equal(c->dtype, AUGUR_BF16);
    assert_int_equal(c->ndim, 3);
    tensor_view vc = {.data = c->data, .dtype = c->dtype, .rows = 2, .cols = 2, .row_stride = 2};
    for (int i = 0; i < 4; i++) {
        assert_true(tensor_get_f32(&vb, 0, i) == ref[i]); /* all exactly representable */
        assert_true(tensor_get_f32(&vc, i / 2, i % 2) == ref[i]);
    }
    const safetensors_entry *d = safetensors_find(sf, "d.scalar");
    assert_int_equal(d->ndim, 0);
    assert_true(*(const float *)d->data == 42.0f);
    const safetensors_entry *e = safetensors_find(sf, "e.empty");
    assert_int_equal(e->nbytes, 0);
    assert_int_equal(e->shape[1], 5);
    safetensors_close(sf);
    free(path);
}

static void test_hand_written_with_metadata(void **state)
{
    float data[3] = {1, 2, 3};
    char *path = write_raw(state, "meta.safetensors",
                           "{\"__metadata__\":{\"format\":\"pt\"},"
                           "\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}",
                           data, sizeof data, 0);
    safetensors_file *sf = NULL;
    augur_error err = {0};
    assert_int_equal(safetensors_open(&sf, path, &err), AUGUR_OK);
    assert_int_equal(safetensors_count(sf), 1); /* metadata is not a tensor */
    assert_memory_equal(safetensors_find(sf, "x")->data, data, sizeof data);
    safetensors_close(sf);
    free(path);
}

static void test_truncated(void **state)
{
    float data[64] = {0};
    safetensors_writer *w = safetensors_writer_new();
    augur_error err = {0};
    assert_int_equal(safetensors_writer_add(w, "first", AUGUR_F32, 1, (int64_t[]){32}, data, &err), AUGUR_OK);
    assert_int_equal(safetensors_writer_add(w, "last", AUGUR_F32, 1, (int64_t[]){32}, data + 32, &err), AUGUR_OK);
    char *path = path_in(state, "trunc.safetensors");
    assert_int_equal(safetensors_writer_save(w, path, &err), AUGUR_OK);
    safetensors_writer_free(w);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    /* the last tensor's bytes are cut short */
    assert_int_equal(truncate(path, st.st_size - 10), 0);
    expect_open_error(path, AUGUR_E_FORMAT, "last", "truncated");
    expect_open_error(path, AUGUR_E_FORMAT, path, NULL);
    /* cut inside the header */
    assert_int_equal(truncate(path, 20), 0);
    expect_open_error(path, AUGUR_E_FORMAT, path, "header length");
    /* cut inside the length prefix */
    assert_int_equal(truncate(path, 5), 0);
    expect_open_error(path, AUGUR_E_FORMAT, path, "too short");
    free(path);
}

static void test_header_length_past_eof(void **state)
{
    char *path = write_raw(state, "eof.safetensors", "{}", NULL, 0, 4096);
    expect_open_error(path, AUGUR_E_FORMAT, path, "runs past the end");
    free(path);
    path = write_raw(state, "huge.safetensors", "{}", NULL, 0, (uint64_t)1 << 40);
    expect_open_error(path, AUGUR_E_FORMAT, path, "100 MB");
    free(path);
}

static void test_invalid_json(void **state)
{
    expect_raw_error(state, "json.safetensors", "{\"x\": {\"dtype\": ", NULL, 0, AUGUR_E_FORMAT, "not valid JSON",
                     NULL);
    expect_raw_error(state, "array.safetensors", "[1, 2, 3]", NULL, 0, AUGUR_E_FORMAT, "not an object", NULL);
    float data[2] = {0};
    expect_raw_error(state, "dup.safetensors",
                     "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                     data, sizeof data, AUGUR_E_FORMAT, "duplicate", NULL);
    expect_raw_error(state, "entry.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", data, sizeof data,
                     AUGUR_E_FORMAT, "tensor x", NULL);
}

static void test_offsets_outside_file(void **state)
{
    float data[4] = {0};
    expect_raw_error(state, "offs.safetensors",
                     "{\"ok\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"model.bad\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                     data, sizeof data, AUGUR_E_FORMAT, "model.bad", "run past");
}

static void test_begin_after_end(void **state)
{
    float data[4] = {0};
    expect_raw_error(state, "order.safetensors",
                     "{\"w.reversed\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", data, sizeof data,
                     AUGUR_E_FORMAT, "w.reversed", "begin 8 is after end 4");
    expect_raw_error(state, "neg.safetensors", "{\"w.neg\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}",
                     data, sizeof data, AUGUR_E_FORMAT, "w.neg", "non-negative");
}

static void test_unsupported_dtype(void **state)
{
    int64_t ids[2] = {1, 2};
    expect_raw_error(state, "i64.safetensors",
                     "{\"position_ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", ids, sizeof ids,
                     AUGUR_E_UNSUPPORTED, "position_ids", "unsupported dtype I64");
    expect_raw_error(state, "f8.safetensors", "{\"q8\":{\"dtype\":\"F8_E4M3\",\"shape\":[16],\"data_offsets\":[0,16]}}",
                     ids, sizeof ids, AUGUR_E_UNSUPPORTED, "q8", "F8_E4M3");
}

static void test_shape_size_mismatch(void **state)
{
    float data[6] = {0};
    expect_raw_error(state, "shape.safetensors",
                     "{\"layer.w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", data, sizeof data,
                     AUGUR_E_FORMAT, "layer.w", "needs 12");
    expect_raw_error(state, "negdim.safetensors",
                     "{\"layer.n\":{\"dtype\":\"F32\",\"shape\":[-1,6],\"data_offsets\":[0,24]}}", data, sizeof data,
                     AUGUR_E_FORMAT, "layer.n", "shape[0]");
}

/* The tensors must tile the data buffer exactly, as strict readers require: two
 * tensors reading the same bytes would silently change the model. */
static void test_tiling(void **state)
{
    float data[4] = {1, 2, 3, 4};
    expect_raw_error(state, "overlap.safetensors",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                     data, 12, AUGUR_E_FORMAT, "tensor b", "overlaps");
    expect_raw_error(state, "same.safetensors",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                     data, 8, AUGUR_E_FORMAT, "overlaps", NULL);
    expect_raw_error(state, "gap.safetensors",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                     data, 16, AUGUR_E_FORMAT, "tensor b", "gap after byte 4");
    expect_raw_error(state, "tail.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                     data, 16, AUGUR_E_FORMAT, "cover 8 of the 16 data bytes", NULL);
    /* In order or not, tensors that tile the buffer open. */
    char *path = write_raw(state, "tiled.safetensors",
                           "{\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]},"
                           "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                           "\"empty\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,16]}}",
                           data, 16, 0);
    safetensors_file *sf = NULL;
    augur_error err = {0};
    if (safetensors_open(&sf, path, &err) != AUGUR_OK)
        print_error("%s\n", err.message);
    assert_non_null(sf);
    assert_int_equal(safetensors_count(sf), 3);
    safetensors_close(sf);
    free(path);
}

/* Control bytes from a corrupt header are escaped in messages, never echoed raw. */
static void test_escaped_names(void **state)
{
    float data[1] = {0};
    char *path = write_raw(state, "ctl.safetensors",
                           "{\"bad\\u001b[2Jname\":{\"dtype\":\"I\\u0007X\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                           data, sizeof data, 0);
    safetensors_file *sf = NULL;
    augur_error err = {0};
    assert_int_equal(safetensors_open(&sf, path, &err), AUGUR_E_UNSUPPORTED);
    if (!strstr(err.message, "bad\\x1b[2Jname") || !strstr(err.message, "I\\x07X"))
        print_error("message: %s\n", err.message);
    assert_non_null(strstr(err.message, "bad\\x1b[2Jname"));
    assert_non_null(strstr(err.message, "I\\x07X"));
    for (const char *c = err.message; *c; c++)
        assert_true((unsigned char)*c >= 0x20 && *c != 0x7f);
    free(path);
    char out[8];
    assert_string_equal(augur_escape("a\\b\n", out, sizeof out), "a\\\\b...");
}

static void test_misaligned_data(void **state)
{
    /* an unpadded header leaves the F32 data at an odd offset */
    char header[96] = "{\"odd\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    while ((8 + strlen(header)) % 4 != 2)
        strcat(header, " "); /* trailing spaces are still valid JSON */
    size_t hlen = strlen(header);
    unsigned char buf[128] = {0};
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    char *path = path_in(state, "odd.safetensors");
    assert_int_equal(test_write_file(path, buf, 8 + hlen + 4), 0);
    expect_open_error(path, AUGUR_E_UNSUPPORTED, "odd", "aligned");
    free(path);
}

static void test_not_a_file(void **state)
{
    char *path = path_in(state, "absent.safetensors");
    expect_open_error(path, AUGUR_E_INPUT, path, "no such file");
    free(path);
    expect_open_error(*state, AUGUR_E_INPUT, *state, "is a directory");
    path = path_in(state, "empty.safetensors");
    assert_int_equal(test_write_file(path, "", 0), 0);
    expect_open_error(path, AUGUR_E_FORMAT, path, "empty");
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        test_in_tmpdir(test_roundtrip_all_dtypes),
        test_in_tmpdir(test_hand_written_with_metadata),
        test_in_tmpdir(test_truncated),
        test_in_tmpdir(test_header_length_past_eof),
        test_in_tmpdir(test_invalid_json),
        test_in_tmpdir(test_offsets_outside_file),
        test_in_tmpdir(test_begin_after_end),
        test_in_tmpdir(test_unsupported_dtype),
        test_in_tmpdir(test_shape_size_mismatch),
        test_in_tmpdir(test_tiling),
        test_in_tmpdir(test_escaped_names),
        test_in_tmpdir(test_misaligned_data),
        test_in_tmpdir(test_not_a_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
