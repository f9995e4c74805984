/* Tokenizer tests: every golden case written by tools/tokenizer_goldens.py (the
 * Hugging Face `tokenizers` library's own output) must encode and decode
 * identically here; llama2.c's tok512.bin round-trips; bad files fail clearly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "runtime/tokenizer/tokenizer.h"
#include "test_util.h"

#define FIXTURES AUGUR_SOURCE_DIR "/tests/fixtures/tokenizers/"
#define TOK512 AUGUR_SHARED_DIR "/models/stories260K/tok512.bin"
#define MAX_REPORTS 5

static tokenizer *load_ok(const char *path)
{
    tokenizer *tok = NULL;
    augur_error err = {0};
    augur_status st = tokenizer_load(&tok, path, 0, &err);
    if (st != AUGUR_OK)
        fail_msg("loading %s: %s", path, err.message);
    return tok;
}

/* Decodes ids one at a time through detok_stream into a malloc'ed string
 * (*len_out: its length, which counts any NUL characters the text holds). */
static char *stream_decode(const tokenizer *tok, const int32_t *ids, size_t n, bool skip_special, size_t *len_out)
{
    size_t cap = tokenizer_max_piece_bytes(tok);
    char *piece = malloc(cap);
    size_t total_cap = 64, len = 0;
    char *all = malloc(total_cap);
    assert_non_null(piece);
    assert_non_null(all);
    all[0] = '\0';
    detok_stream ds;
    detok_stream_init(&ds, tok, skip_special);
    for (size_t i = 0; i <= n; i++) {
        size_t got = i < n ? detok_stream_push(&ds, ids[i], piece, cap) : detok_stream_flush(&ds, piece, cap);
        assert_true(got < cap && piece[got] == '\0');
        while (len + got + 1 > total_cap) {
            total_cap *= 2;
            all = realloc(all, total_cap);
            assert_non_null(all);
        }
        memcpy(all + len, piece, got + 1);
        len += got;
    }
    free(piece);
    *len_out = len;
    return all;
}

static bool ids_equal(const int32_t *a, size_t na, const json_t *b)
{
    if (na != json_array_size(b))
        return false;
    for (size_t i = 0; i < na; i++)
        if (a[i] != json_integer_value(json_array_get(b, i)))
            return false;
    return true;
}

static void print_ids(const char *label, const int32_t *a, size_t n)
{
    fprintf(stderr, "      %s (%zu):", label, n);
    for (size_t i = 0; i < n && i < 40; i++)
        fprintf(stderr, " %d", (int)a[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

static void print_json_ids(const char *label, const json_t *a)
{
    fprintf(stderr, "      %s (%zu):", label, json_array_size(a));
    for (size_t i = 0; i < json_array_size(a) && i < 40; i++)
        fprintf(stderr, " %d", (int)json_integer_value(json_array_get(a, i)));
    fprintf(stderr, json_array_size(a) > 40 ? " ...\n" : "\n");
}

typedef struct {
    size_t cases, encode_fail, decode_fail, stream_fail, reported;
} golden_stats;

static void report(golden_stats *s, const char *what, const char *text, size_t len)
{
    if (s->reported++ >= MAX_REPORTS)
        return;
    fprintf(stderr, "    MISMATCH %s for text (%zu bytes) \"%.*s\"%s\n", what, len, len > 120 ? 120 : (int)len,
            text, len > 120 ? "..." : "");
}

static void check_case(const tokenizer *tok, const json_t *rec, golden_stats *s)
{
    const json_t *jt = json_object_get(rec, "text");
    const char *text = json_string_value(jt);
    size_t len = json_string_length(jt);
    s->cases++;
    bool bad_decode = false, bad_stream = false, bad_encode = false;
    for (int special = 1; special >= 0; special--) {
        const json_t *want = json_object_get(rec, special ? "ids" : "ids_no_special");
        int32_t *ids = NULL;
        size_t n = 0;
        augur_error err = {0};
        augur_status st = tokenizer_encode(tok, text, len, special, &ids, &n, &err);
        if (st != AUGUR_OK || !ids_equal(ids, n, want)) {
            if (!bad_encode)
                report(s, special ? "encode(add_special)" : "encode(no special)", text, len);
            if (s->reported <= MAX_REPORTS) {
                if (st != AUGUR_OK)
                    fprintf(stderr, "      error: %s\n", err.message);
                print_ids("got ", ids, n);
                print_json_ids("want", want);
            }
            bad_encode = true;
        }
        free(ids);
    }
    /* Decoding is checked on the reference ids, independent of encoding. */
    const json_t *jids = json_object_get(rec, "ids");
    size_t n = json_array_size(jids);
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    assert_non_null(ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(jids, i));
    for (int skip = 0; skip <= 1; skip++) {
        const json_t *jwant = json_object_get(rec, skip ? "decoded_skip" : "decoded");
        const char *want = json_string_value(jwant);
        size_t want_len = json_string_length(jwant);
        char *got = NULL;
        augur_error err = {0};
        /* tokenizer_decode returns a C string, so a text holding U+0000 compares up
         * to it; the stream below reports lengths and checks the rest. */
        if (tokenizer_decode(tok, ids, n, skip, &got, &err) != AUGUR_OK || strcmp(got, want) != 0) {
            if (!bad_decode)
                report(s, skip ? "decode(skip_special)" : "decode", text, len);
            if (s->reported <= MAX_REPORTS)
                fprintf(stderr, "      got  \"%s\"\n      want \"%s\" %s\n", got ? got : "(error)", want,
                        err.message);
            bad_decode = true;
        }
        free(got);
        size_t streamed_len;
        char *streamed = stream_decode(tok, ids, n, skip, &streamed_len);
        if (streamed_len != want_len || memcmp(streamed, want, want_len) != 0) {
            if (!bad_stream)
                report(s, skip ? "stream(skip_special)" : "stream", text, len);
            if (s->reported <= MAX_REPORTS)
                fprintf(stderr, "      got  \"%s\"\n      want \"%s\"\n", streamed, want);
            bad_stream = true;
        }
        free(streamed);
    }
    free(ids);
    s->encode_fail += bad_encode;
    s->decode_fail += bad_decode;
    s->stream_fail += bad_stream;
}

static void run_goldens(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, FIXTURES "%s/tokenizer.json", name);
    tokenizer *tok = load_ok(path);
    snprintf(path, sizeof path, FIXTURES "%s/cases.jsonl", name);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    golden_stats s = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, f)) > 0) {
        json_error_t jerr;
        json_t *rec = json_loadb(line, (size_t)got, JSON_ALLOW_NUL, &jerr);
        if (!rec)
            fail_msg("%s line %d: %s", path, jerr.line, jerr.text);
        check_case(tok, rec, &s);
        json_decref(rec);
    }
    free(line);
    fclose(f);
    tokenizer_free(tok);
    fprintf(stderr, "  %s: %zu cases, %zu encode / %zu decode / %zu stream mismatches\n", name, s.cases,
            s.encode_fail, s.decode_fail, s.stream_fail);
    assert_true(s.cases >= 200);
    assert_int_equal(s.encode_fail, 0);
    assert_int_equal(s.decode_fail, 0);
    assert_int_equal(s.stream_fail, 0);
}

/* *state: the fixture's directory name under tests/fixtures/tokenizers. */
static void test_golden(void **state)
{
    run_goldens(*state);
}

static int32_t id_of(const tokenizer *tok, const char *text)
{
    int32_t *ids = NULL;
    size_t n = 0;
    augur_error err = {0};
    assert_int_equal(tokenizer_encode(tok, text, strlen(text), false, &ids, &n, &err), AUGUR_OK);
    assert_int_equal(n, 1);
    int32_t id = ids[0];
    free(ids);
    return id;
}

static void test_special_ids(void **state)
{
    (void)state;
    tokenizer *tok = load_ok(FIXTURES "byte_level/tokenizer.json");
    int32_t bot = id_of(tok, "<|begin_of_text|>"), eot = id_of(tok, "<|end_of_text|>");
    assert_int_equal(tokenizer_bos_id(tok), bot);
    assert_int_equal(tokenizer_eos_id(tok), eot);
    assert_true(tokenizer_is_special(tok, bot));
    assert_true(tokenizer_is_special(tok, id_of(tok, "<|eot_id|>")));
    assert_false(tokenizer_is_special(tok, id_of(tok, "<tool_call>"))); /* added, not special */
    assert_false(tokenizer_is_special(tok, 0));
    assert_int_equal(tokenizer_vocab_size(tok), id_of(tok, "<tool_call>") + 1);
    tokenizer_free(tok);

    tok = load_ok(FIXTURES "sentencepiece/tokenizer.json");
    assert_int_equal(tokenizer_bos_id(tok), 1);
    assert_int_equal(tokenizer_eos_id(tok), 2);
    tokenizer_free(tok);

    tok = load_ok(FIXTURES "gpt2/tokenizer.json");
    assert_int_equal(tokenizer_bos_id(tok), -1); /* GPT-2 adds no BOS */
    assert_int_equal(tokenizer_eos_id(tok), id_of(tok, "<|endoftext|>"));
    tokenizer_free(tok);
}

/* An emoji that the small vocabulary lacks is four byte-fallback tokens; the
 * stream must hold the first three back and emit the character once. */
static void test_stream_emoji_whole(void **state)
{
    (void)state;
    tokenizer *tok = load_ok(FIXTURES "sentencepiece/tokenizer.json");
    const char *text = "\xF0\x9F\x98\x80"; /* U+1F600 */
    int32_t *ids = NULL;
    size_t n = 0;
    augur_error err = {0};
    assert_int_equal(tokenizer_encode(tok, text, strlen(text), false, &ids, &n, &err), AUGUR_OK);
    assert_int_equal(n, 5); /* "▁" then <0xF0> <0x9F> <0x98> <0x80> */
    char out[64];
    detok_stream ds;
    detok_stream_init(&ds, tok, true);
    assert_int_equal(detok_stream_push(&ds, ids[0], out, sizeof out), 0); /* leading space stripped */
    for (size_t i = 1; i < 4; i++) {
        assert_int_equal(detok_stream_push(&ds, ids[i], out, sizeof out), 0);
        assert_string_equal(out, "");
    }
    assert_int_equal(detok_stream_push(&ds, ids[4], out, sizeof out), 4);
    assert_string_equal(out, text);
    assert_int_equal(detok_stream_flush(&ds, out, sizeof out), 0);
    /* a cut-off sequence becomes one U+FFFD at flush */
    detok_stream_init(&ds, tok, true);
    for (size_t i = 0; i < 3; i++)
        detok_stream_push(&ds, ids[i], out, sizeof out);
    assert_int_equal(detok_stream_flush(&ds, out, sizeof out), 3);
    assert_string_equal(out, "\xEF\xBF\xBD");
    free(ids);
    tokenizer_free(tok);
}

/* The merge loop must stay near O(n log n): a 10,000-letter word (and one that
 * repeats a single letter, the worst case for naive BPE) encodes quickly. */
static void test_long_word_speed(void **state)
{
    (void)state;
    static const char *const names[] = {"byte_level", "sentencepiece", "gpt2"};
    char *word = malloc(10001);
    assert_non_null(word);
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char path[1024];
        snprintf(path, sizeof path, FIXTURES "%s/tokenizer.json", names[k]);
        tokenizer *tok = load_ok(path);
        for (int variant = 0; variant < 2; variant++) {
            for (size_t i = 0; i < 10000; i++)
                word[i] = variant ? 'a' : (char)('a' + (i * 7 + i / 3) % 26);
            word[10000] = '\0';
            clock_t t0 = clock();
            int32_t *ids = NULL;
            size_t n = 0;
            augur_error err = {0};
            assert_int_equal(tokenizer_encode(tok, word, 10000, false, &ids, &n, &err), AUGUR_OK);
            double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
            char *back = NULL;
            assert_int_equal(tokenizer_decode(tok, ids, n, true, &back, &err), AUGUR_OK);
            assert_string_equal(back, word);
            assert_true(secs < 2.0);
            free(back);
            free(ids);
        }
        tokenizer_free(tok);
    }
    free(word);
}

/* ---------------------------------------------------------------- llama2.c */

static bool have_tok512(void)
{
    if (access(TOK512, R_OK) == 0)
        return true;
    fprintf(stderr, "  skipped: %s not found\n", TOK512);
    return false;
}

static void roundtrip(const tokenizer *tok, const char *text)
{
    int32_t *ids = NULL;
    size_t n = 0;
    augur_error err = {0};
    assert_int_equal(tokenizer_encode(tok, text, strlen(text), true, &ids, &n, &err), AUGUR_OK);
    assert_true(n >= 2);
    assert_int_equal(ids[0], 1); /* BOS */
    for (size_t i = 0; i < n; i++)
        assert_true(ids[i] >= 0 && ids[i] < 512);
    char *back = NULL;
    assert_int_equal(tokenizer_decode(tok, ids, n, true, &back, &err), AUGUR_OK);
    assert_string_equal(back, text);
    size_t streamed_len;
    char *streamed = stream_decode(tok, ids, n, true, &streamed_len);
    assert_int_equal(streamed_len, strlen(text));
    assert_string_equal(streamed, text);
    free(streamed);
    free(back);
    free(ids);
}

static void test_llama2c_roundtrip(void **state)
{
    (void)state;
    if (!have_tok512()) {
        skip();
    }
    tokenizer *tok = load_ok(TOK512);
    assert_int_equal(tokenizer_vocab_size(tok), 512);
    assert_int_equal(tokenizer_bos_id(tok), 1);
    assert_int_equal(tokenizer_eos_id(tok), 2);
    assert_true(tokenizer_is_special(tok, 1));
    assert_false(tokenizer_is_special(tok, 300));
    roundtrip(tok, "Once upon a time, there was a little girl named Lily.");
    roundtrip(tok, "She loved to play outside in the park with her friends.");
    roundtrip(tok, "One day, she saw a big, red ball. \"Can I play?\" she asked.");
    roundtrip(tok, "The end.\n");

    /* Known encoding: " Once" is merged from the dummy prefix and the word. */
    int32_t *ids = NULL;
    size_t n = 0;
    augur_error err = {0};
    assert_int_equal(tokenizer_encode(tok, "", 0, true, &ids, &n, &err), AUGUR_OK);
    assert_int_equal(n, 1); /* empty text: BOS only, no dummy prefix */
    free(ids);

    /* A CJK character is not in the 512-token vocabulary: three byte tokens. */
    const char *cjk = "\xE9\xBE\x8D"; /* U+9F8D */
    assert_int_equal(tokenizer_encode(tok, cjk, strlen(cjk), false, &ids, &n, &err), AUGUR_OK);
    assert_int_equal(n, 4); /* " " then the bytes */
    assert_int_equal(ids[1], 0xE9 + 3);
    assert_int_equal(ids[2], 0xBE + 3);
    assert_int_equal(ids[3], 0x8D + 3);
    char *back = NULL;
    assert_int_equal(tokenizer_decode(tok, ids, n, true, &back, &err), AUGUR_OK);
    assert_string_equal(back, " \xE9\xBE\x8D"); /* no BOS before it, so the space stays */
    free(back);
    free(ids);
    roundtrip(tok, "Lily saw a \xE9\xBE\x8D and \xF0\x9F\x98\x80!");
    tokenizer_free(tok);
}

/* ---------------------------------------------------------------- errors */

static void expect_load_error(const char *path, int vocab_hint, augur_status code, const char *needle)
{
    tokenizer *tok = (tokenizer *)1;
    augur_error err = {0};
    augur_status st = tokenizer_load(&tok, path, vocab_hint, &err);
    if (st != code)
        fail_msg("%s: status %d (want %d): %s", path, (int)st, (int)code, err.message);
    assert_null(tok);
    assert_int_equal(err.code, code);
    if (!strstr(err.message, path) || (needle && !strstr(err.message, needle)))
        fail_msg("message \"%s\" should name %s and say \"%s\"", err.message, path, needle ? needle : "");
}

/* Writes data (len bytes; none when data is NULL) to dir/name, expects loading it
 * to fail with code and a message holding needle, and removes the file. */
static void expect_file_error(const char *dir, const char *name, const void *data, size_t len, int vocab_hint,
                              augur_status code, const char *needle)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (data)
        assert_int_equal(test_write_file(path, data, len), 0);
    expect_load_error(path, vocab_hint, code, needle);
    unlink(path);
}

static void test_load_errors(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    assert_non_null(dir);
    const char *junk = "this is not { json";
    const char *wp = "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}";
    const char *bm = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}";
    const char *bp = "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []},"
                     " \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}";
    const char *seq = "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []},"
                      " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Fuse\"}, {}]}}";
    expect_file_error(dir, "missing.json", NULL, 0, 0, AUGUR_E_IO, "cannot open");
    expect_file_error(dir, "tokenizer.json", junk, strlen(junk), 0, AUGUR_E_FORMAT, "not valid JSON");
    expect_file_error(dir, "notes.txt", junk, strlen(junk), 0, AUGUR_E_FORMAT, "not a tokenizer.json");
    expect_file_error(dir, "wordpiece.json", wp, strlen(wp), 0, AUGUR_E_UNSUPPORTED,
                      "model type 'WordPiece' is not supported (BPE only)");
    expect_file_error(dir, "badmerge.json", bm, strlen(bm), 0, AUGUR_E_FORMAT, "model.merges[0]");
    expect_file_error(dir, "badpre.json", bp, strlen(bp), 0, AUGUR_E_UNSUPPORTED, "pre_tokenizer");
    expect_file_error(dir, "badseq.json", seq, strlen(seq), 0, AUGUR_E_FORMAT, "decoder.decoders[1]");
    if (access(TOK512, R_OK) == 0) {
        FILE *f = fopen(TOK512, "rb");
        assert_non_null(f);
        char buf[8192];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        expect_file_error(dir, "tok_cut.bin", buf, n - 3, 0, AUGUR_E_FORMAT, "truncated");
        expect_file_error(dir, "tok_full.bin", buf, n, 600, AUGUR_E_FORMAT, "vocab_size");
    }
    rmdir(dir);
    free(dir);
}

/* The Whitespace pre-tokenizer's \w is the Rust regex crate's, which leaves out
 * U+00B2 (category No, a "word" character to Oniguruma): "x\u00b2y" splits into
 * three pieces, so the merges towards "x\u00b2y" never apply. */
static void test_whitespace_pretokenizer(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    assert_non_null(dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/ws.json", dir);
    const char *json = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"x\": 0, \"\\u00b2\": 1, \"y\": 2, "
                       "\"x\\u00b2\": 3, \"x\\u00b2y\": 4}, \"merges\": [\"x \\u00b2\", \"x\\u00b2 y\"]}, "
                       "\"pre_tokenizer\": {\"type\": \"Whitespace\"}}";
    assert_int_equal(test_write_file(path, json, strlen(json)), 0);
    tokenizer *tok = load_ok(path);
    int32_t *ids = NULL;
    size_t n = 0;
    augur_error err = {0};
    const char *text = "x\xC2\xB2y x";
    assert_int_equal(tokenizer_encode(tok, text, strlen(text), false, &ids, &n, &err), AUGUR_OK);
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 1);
    assert_int_equal(ids[2], 2);
    assert_int_equal(ids[3], 0);
    free(ids);
    tokenizer_free(tok);
    unlink(path);
    rmdir(dir);
    free(dir);
}

static void test_bad_input(void **state)
{
    (void)state;
    tokenizer *tok = load_ok(FIXTURES "byte_level/tokenizer.json");
    int32_t *ids = NULL;
    size_t n = 0;
    augur_error err = {0};
    assert_int_equal(tokenizer_encode(tok, "ab\xFF", 3, false, &ids, &n, &err), AUGUR_E_INPUT);
    assert_non_null(strstr(err.message, "UTF-8"));
    int32_t bad = 1 << 30;
    char *text = NULL;
    assert_int_equal(tokenizer_decode(tok, &bad, 1, false, &text, &err), AUGUR_E_INPUT);
    assert_null(text);
    tokenizer_free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define GOLDEN(name) {"test_golden_" #name, test_golden, NULL, NULL, (void *)#name}
        GOLDEN(byte_level),
        GOLDEN(sentencepiece),
        GOLDEN(metaspace),
        GOLDEN(gpt2),
        cmocka_unit_test(test_special_ids),
        cmocka_unit_test(test_stream_emoji_whole),
        cmocka_unit_test(test_long_word_speed),
        cmocka_unit_test(test_llama2c_roundtrip),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_whitespace_pretokenizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
