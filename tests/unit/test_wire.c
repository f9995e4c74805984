/* Wire protocol: round trips of every message, distribution packing (sparse, dense,
 * zstd), validation failures, malformed bytes, and trace streams. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "proto/augur.pb-c.h"
#include "proto/trace_stream.h"
#include "proto/wire.h"
#include "test_util.h"

#define V_SMALL 64
#define V_LARGE 32000

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

static wire_expect expect(uint64_t request_id, uint32_t round, int32_t vocab, int peer)
{
    return (wire_expect){.request_id = request_id, .round = round, .vocab_size = vocab, .peer_rank = peer};
}

/* A top-k style distribution: k equal-ish non-zero entries spread over the vocabulary. */
static void topk_dist(float *q, int vocab, int k, int seed)
{
    memset(q, 0, (size_t)vocab * sizeof *q);
    for (int i = 0; i < k; i++)
        q[(i * 7919 + seed * 31) % vocab] += 1.0f / (float)(i + 2);
}

/* Half the vocabulary non-zero with a few repeated values: dense, and compressible. */
static void compressible_dense(float *q, int vocab)
{
    for (int i = 0; i < vocab; i++)
        q[i] = (i % 2) ? 0.0f : (float)(1 + i % 3) / (float)vocab;
}

/* Field by field: struct padding is not part of any value. */
static void assert_verdict_equal(const wire_verdict *a, const wire_verdict *b)
{
    assert_int_equal(a->request_id, b->request_id);
    assert_int_equal(a->round, b->round);
    assert_int_equal(a->accepted, b->accepted);
    assert_int_equal(a->next_token, b->next_token);
    assert_int_equal(a->finished, b->finished);
    assert_int_equal(a->new_length, b->new_length);
    assert_int_equal(a->burst_rest, b->burst_rest);
}

static void assert_stats_equal(const wire_stats *a, const wire_stats *b)
{
    assert_int_equal(a->rounds, b->rounds);
    assert_int_equal(a->accepted, b->accepted);
    assert_int_equal(a->proposed, b->proposed);
    assert_true(a->draft_ms == b->draft_ms && a->target_ms == b->target_ms && a->comm_ms == b->comm_ms &&
                a->sample_ms == b->sample_ms && a->total_ms == b->total_ms);
}

static void assert_trace_equal(const wire_trace_record *a, const wire_trace_record *b)
{
    assert_int_equal(a->request_id, b->request_id);
    assert_int_equal(a->position, b->position);
    assert_int_equal(a->round, b->round);
    assert_true(a->draft_entropy == b->draft_entropy);
    assert_true(a->target_entropy == b->target_entropy);
    assert_int_equal(a->accepted, b->accepted);
    assert_true(a->draft_ms == b->draft_ms);
    assert_true(a->target_ms == b->target_ms);
    assert_int_equal(a->index_in_round, b->index_in_round);
    assert_int_equal(a->draft_len_in_round, b->draft_len_in_round);
}

static Augur__Proposal *unpack_proposal(const uint8_t *buf, size_t len)
{
    Augur__Proposal *m = augur__proposal__unpack(NULL, len, buf);
    assert_non_null(m);
    return m;
}

/* ---- round trips ---- */

static void test_proposal_greedy_round_trip(void **state)
{
    (void)state;
    int32_t tokens[] = {5, 0, 63, 17};
    float ent[] = {0.5f, 0.0f, 3.25f, 1.0f};
    wire_proposal p = {.request_id = 42, .round = 7, .start_position = 100, .n_tokens = 4, .tokens = tokens,
                       .entropies = ent, .vocab_size = V_SMALL, .draft_ms = 1.5f};
    uint8_t *buf;
    size_t len;
    augur_error err = {0};
    assert_int_equal(wire_proposal_encode(&p, &buf, &len, &err), AUGUR_OK);
    wire_expect want = expect(42, 7, V_SMALL, 2);
    wire_proposal got;
    assert_int_equal(wire_proposal_decode(buf, len, &want, &got, &err), AUGUR_OK);
    assert_int_equal(got.request_id, 42);
    assert_int_equal(got.round, 7);
    assert_int_equal(got.start_position, 100);
    assert_int_equal(got.n_tokens, 4);
    assert_memory_equal(got.tokens, tokens, sizeof tokens);
    assert_memory_equal(got.entropies, ent, sizeof ent);
    assert_null(got.dists);
    assert_true(got.draft_ms == 1.5f);
    wire_proposal_free(&got);
    free(buf);
}

static void test_proposal_sparse_round_trip(void **state)
{
    (void)state;
    enum { N = 3 };
    int32_t tokens[N] = {1, 2, 3};
    float *q = malloc(N * V_LARGE * sizeof *q);
    for (int i = 0; i < N; i++)
        topk_dist(q + i * V_LARGE, V_LARGE, 40, i);
    wire_proposal p = {.request_id = 1, .round = 1, .n_tokens = N, .tokens = tokens, .dists = q,
                       .vocab_size = V_LARGE};
    uint8_t *buf;
    size_t len;
    augur_error err = {0};
    assert_int_equal(wire_proposal_encode(&p, &buf, &len, &err), AUGUR_OK);
    /* 40 entries of ~7 bytes each, nowhere near the 128 KB dense rows. */
    assert_true(len < N * 40 * 8 + 64);
    Augur__Proposal *m = unpack_proposal(buf, len);
    for (int i = 0; i < N; i++)
        assert_int_equal(m->dists[i]->form_case, AUGUR__DRAFT_DIST__FORM_SPARSE);
    augur__proposal__free_unpacked(m, NULL);

    wire_expect want = expect(1, 1, V_LARGE, 2);
    wire_proposal got;
    assert_int_equal(wire_proposal_decode(buf, len, &want, &got, &err), AUGUR_OK);
    assert_memory_equal(got.dists, q, N * V_LARGE * sizeof *q);
    assert_null(got.entropies);
    wire_proposal_free(&got);
    free(buf);
    free(q);
}

static void test_proposal_dense_zstd_round_trip(void **state)
{
    (void)state;
    int32_t tokens[2] = {10, 20};
    float *q = malloc(2 * V_LARGE * sizeof *q);
    compressible_dense(q, V_LARGE);
    compressible_dense(q + V_LARGE, V_LARGE);
    wire_proposal p = {.request_id = 9, .round = 3, .n_tokens = 2, .tokens = tokens, .dists = q,
                       .vocab_size = V_LARGE};
    uint8_t *buf;
    size_t len;
    augur_error err = {0};
    assert_int_equal(wire_proposal_encode(&p, &buf, &len, &err), AUGUR_OK);
    Augur__Proposal *m = unpack_proposal(buf, len);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(m->dists[i]->form_case, AUGUR__DRAFT_DIST__FORM_DENSE);
        assert_true(m->dists[i]->dense->zstd);
        assert_true(m->dists[i]->dense->data.len < V_LARGE * 4 / 10);
    }
    augur__proposal__free_unpacked(m, NULL);
    wire_expect want = expect(9, 3, V_LARGE, 2);
    wire_proposal got;
    assert_int_equal(wire_proposal_decode(buf, len, &want, &got, &err), AUGUR_OK);
    assert_memory_equal(got.dists, q, 2 * V_LARGE * sizeof *q);
    wire_proposal_free(&got);
    free(buf);
    free(q);
}

static void test_dist_forms(void **state)
{
    (void)state;
    augur_error err = {0};
    float q[V_SMALL], back[V_SMALL];

    /* Tiny and dense: raw bytes, no zstd (below WIRE_ZSTD_MIN_BYTES). */
    for (int i = 0; i < V_SMALL; i++)
        q[i] = 1.0f / V_SMALL;
    Augur__DraftDist d = AUGUR__DRAFT_DIST__INIT;
    assert_int_equal(wire_dist_pack(q, V_SMALL, &d, &err), AUGUR_OK);
    assert_int_equal(d.form_case, AUGUR__DRAFT_DIST__FORM_DENSE);
    assert_false(d.dense->zstd);
    assert_int_equal(d.dense->data.len, V_SMALL * 4);
    assert_int_equal(wire_dist_unpack(&d, V_SMALL, back, &err), AUGUR_OK);
    assert_memory_equal(back, q, sizeof q);
    wire_dist_release(&d);

    /* Exactly a quarter non-zero: sparse; one more: dense. */
    memset(q, 0, sizeof q);
    for (int i = 0; i < V_SMALL / 4; i++)
        q[i * 4 + 1] = 0.25f;
    assert_int_equal(wire_dist_pack(q, V_SMALL, &d, &err), AUGUR_OK);
    assert_int_equal(d.form_case, AUGUR__DRAFT_DIST__FORM_SPARSE);
    assert_int_equal(d.sparse->n_ids, V_SMALL / 4);
    assert_int_equal(wire_dist_unpack(&d, V_SMALL, back, &err), AUGUR_OK);
    assert_memory_equal(back, q, sizeof q);
    wire_dist_release(&d);
    q[0] = 0.5f;
    assert_int_equal(wire_dist_pack(q, V_SMALL, &d, &err), AUGUR_OK);
    assert_int_equal(d.form_case, AUGUR__DRAFT_DIST__FORM_DENSE);
    wire_dist_release(&d);

    /* A one-hot (greedy-like) distribution is one sparse entry. */
    memset(q, 0, sizeof q);
    q[33] = 1.0f;
    assert_int_equal(wire_dist_pack(q, V_SMALL, &d, &err), AUGUR_OK);
    assert_int_equal(d.form_case, AUGUR__DRAFT_DIST__FORM_SPARSE);
    assert_int_equal(d.sparse->n_ids, 1);
    assert_int_equal(d.sparse->ids[0], 33);
    wire_dist_release(&d);
}

static void test_dist_large_dense(void **state)
{
    (void)state;
    augur_error err = {0};
    float *q = malloc(V_LARGE * sizeof *q), *back = malloc(V_LARGE * sizeof *back);
    Augur__DraftDist d = AUGUR__DRAFT_DIST__INIT;

    compressible_dense(q, V_LARGE);
    assert_int_equal(wire_dist_pack(q, V_LARGE, &d, &err), AUGUR_OK);
    assert_int_equal(d.form_case, AUGUR__DRAFT_DIST__FORM_DENSE);
    assert_true(d.dense->zstd);
    assert_int_equal(wire_dist_unpack(&d, V_LARGE, back, &err), AUGUR_OK);
    assert_memory_equal(back, q, V_LARGE * sizeof *q);
    wire_dist_release(&d);

    /* ~30 random bits a value (positive, finite, below 2): zstd cannot save 10%, so
     * the raw bytes go. */
    uint64_t s = 7;
    for (int i = 0; i < V_LARGE; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t bits = ((uint32_t)(s >> 32) & 0x3fffffffu) | 1u;
        memcpy(&q[i], &bits, 4);
    }
    assert_int_equal(wire_dist_pack(q, V_LARGE, &d, &err), AUGUR_OK);
    assert_int_equal(d.form_case, AUGUR__DRAFT_DIST__FORM_DENSE);
    assert_false(d.dense->zstd);
    assert_int_equal(d.dense->data.len, V_LARGE * 4);
    assert_int_equal(wire_dist_unpack(&d, V_LARGE, back, &err), AUGUR_OK);
    assert_memory_equal(back, q, V_LARGE * sizeof *q);
    wire_dist_release(&d);
    free(q);
    free(back);
}

static void test_verdict_round_trip(void **state)
{
    (void)state;
    augur_error err = {0};
    wire_verdict v = {.request_id = 3, .round = 12, .accepted = 4, .next_token = 61, .finished = false,
                      .new_length = 57, .burst_rest = 5};
    uint8_t *buf;
    size_t len;
    assert_int_equal(wire_verdict_encode(&v, &buf, &len, &err), AUGUR_OK);
    wire_expect want = expect(3, 12, V_SMALL, 0);
    wire_verdict got;
    assert_int_equal(wire_verdict_decode(buf, len, &want, &got, &err), AUGUR_OK);
    assert_verdict_equal(&got, &v);
    free(buf);

    /* A request that ended inside the accepted run has no next token. */
    v = (wire_verdict){.request_id = 3, .round = 13, .accepted = 2, .next_token = -1, .finished = true,
                       .new_length = 59};
    assert_int_equal(wire_verdict_encode(&v, &buf, &len, &err), AUGUR_OK);
    want.round = 13;
    assert_int_equal(wire_verdict_decode(buf, len, &want, &got, &err), AUGUR_OK);
    assert_true(got.finished);
    assert_int_equal(got.next_token, -1);
    free(buf);
}

static void test_request_round_trip(void **state)
{
    (void)state;
    augur_error err = {0};
    wire_request r = {.request_id = 77, .prompt_text = "Once upon a time", .max_tokens = 128,
                      .sampling = {.temperature = 0.7f, .top_k = 40, .top_p = 0.9f, .seed = 1234567890123ull},
                      .rule = {.kind = WIRE_RULE_ENTROPY_CUMULATIVE, .max_len = 8, .tau = 12.0f, .lambda = 0.45f,
                               .window = 3},
                      .overlap = true, .debug_draft_exit_after = 2};
    uint8_t *buf;
    size_t len;
    assert_int_equal(wire_request_encode(&r, &buf, &len, &err), AUGUR_OK);
    wire_expect want = expect(WIRE_ANY_REQUEST, WIRE_ANY_ROUND, V_SMALL, 0);
    wire_request got;
    assert_int_equal(wire_request_decode(buf, len, &want, &got, &err), AUGUR_OK);
    assert_int_equal(got.request_id, 77);
    assert_string_equal(got.prompt_text, "Once upon a time");
    assert_null(got.prompt_tokens);
    assert_int_equal(got.max_tokens, 128);
    assert_true(got.sampling.temperature == r.sampling.temperature && got.sampling.top_p == r.sampling.top_p);
    assert_int_equal(got.sampling.top_k, r.sampling.top_k);
    assert_int_equal(got.sampling.seed, r.sampling.seed);
    assert_memory_equal(&got.rule, &r.rule, sizeof r.rule);
    assert_true(got.overlap);
    assert_int_equal(got.debug_draft_exit_after, 2);
    wire_request_free(&got);
    free(buf);

    int32_t prompt[] = {1, 2, 3, 4, 5};
    r = (wire_request){.request_id = 78, .prompt_tokens = prompt, .n_prompt_tokens = 5, .max_tokens = 1,
                       .sampling = {.temperature = 0, .top_k = 0, .top_p = 1, .seed = 0},
                       .rule = {.kind = WIRE_RULE_FIXED, .max_len = 4}};
    assert_int_equal(wire_request_encode(&r, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_request_decode(buf, len, &want, &got, &err), AUGUR_OK);
    assert_null(got.prompt_text);
    assert_int_equal(got.n_prompt_tokens, 5);
    assert_memory_equal(got.prompt_tokens, prompt, sizeof prompt);
    assert_false(got.overlap);
    wire_request_free(&got);
    free(buf);
}

static void test_result_round_trip(void **state)
{
    (void)state;
    augur_error err = {0};
    int32_t toks[] = {9, 8, 7};
    wire_result r = {.request_id = 5, .tokens = toks, .n_tokens = 3, .text = "abc",
                     .stats = {.rounds = 2, .accepted = 3, .proposed = 5, .draft_ms = 1, .target_ms = 2,
                               .comm_ms = 0.5, .sample_ms = 0.25, .total_ms = 4}};
    uint8_t *buf;
    size_t len;
    assert_int_equal(wire_result_encode(&r, &buf, &len, &err), AUGUR_OK);
    wire_expect want = expect(5, WIRE_ANY_ROUND, V_SMALL, 0);
    wire_result got;
    assert_int_equal(wire_result_decode(buf, len, &want, &got, &err), AUGUR_OK);
    assert_int_equal(got.n_tokens, 3);
    assert_memory_equal(got.tokens, toks, sizeof toks);
    assert_string_equal(got.text, "abc");
    assert_stats_equal(&got.stats, &r.stats);
    wire_result_free(&got);
    free(buf);
}

static void test_command_round_trip(void **state)
{
    (void)state;
    augur_error err = {0};
    int32_t toks[] = {4, 5, 6};
    wire_command c = {.kind = WIRE_CMD_VERIFY, .request_id = 8, .round = 2, .start_position = 31, .tokens = toks,
                      .n_tokens = 3, .gather = 2};
    uint8_t *buf;
    size_t len;
    wire_expect want = expect(8, 2, V_SMALL, 0);
    wire_command got;
    assert_int_equal(wire_command_encode(&c, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_command_decode(buf, len, &want, &got, &err), AUGUR_OK);
    assert_int_equal(got.kind, WIRE_CMD_VERIFY);
    assert_int_equal(got.start_position, 31);
    assert_int_equal(got.gather, 2);
    assert_int_equal(got.n_tokens, 3);
    assert_memory_equal(got.tokens, toks, sizeof toks);
    wire_command_free(&got);
    free(buf);

    c = (wire_command){.kind = WIRE_CMD_ACCEPT, .request_id = 8, .round = 2,
                       .accept = {.accepted = 2, .next_token = 7, .new_length = 35}};
    assert_int_equal(wire_command_encode(&c, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_command_decode(buf, len, &want, &got, &err), AUGUR_OK);
    assert_int_equal(got.kind, WIRE_CMD_ACCEPT);
    assert_int_equal(got.accept.accepted, 2);
    assert_int_equal(got.accept.next_token, 7);
    assert_int_equal(got.accept.new_length, 35);
    assert_int_equal(got.accept.round, 2);
    wire_command_free(&got);
    free(buf);

    c = (wire_command){.kind = WIRE_CMD_STOP};
    want = expect(WIRE_ANY_REQUEST, WIRE_ANY_ROUND, V_SMALL, 0);
    assert_int_equal(wire_command_encode(&c, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_command_decode(buf, len, &want, &got, &err), AUGUR_OK);
    assert_int_equal(got.kind, WIRE_CMD_STOP);
    wire_command_free(&got);
    free(buf);
}

/* Version 2: a round's batched verification and trims, and FREE, name their slots. */
static void test_command_batch_round_trip(void **state)
{
    (void)state;
    augur_error err = {0};
    int32_t a[] = {4, 5, 6}, b[] = {9};
    wire_segment segs[] = {{.request_id = 3, .slot = 1, .start_position = 10, .tokens = a, .n_tokens = 3, .gather = 1},
                           {.request_id = 5, .slot = 0, .start_position = 2, .tokens = b, .n_tokens = 1, .gather = 2}};
    wire_command c = {.kind = WIRE_CMD_VERIFY_BATCH, .request_id = 3, .round = 4, .segments = segs, .n_segments = 2};
    uint8_t *buf;
    size_t len;
    wire_expect want = expect(WIRE_ANY_REQUEST, WIRE_ANY_ROUND, V_SMALL, 0);
    wire_command got;
    assert_int_equal(wire_command_encode(&c, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_command_decode(buf, len, &want, &got, &err), AUGUR_OK);
    assert_int_equal(got.kind, WIRE_CMD_VERIFY_BATCH);
    assert_int_equal(got.n_segments, 2);
    assert_int_equal(got.segments[0].slot, 1);
    assert_int_equal(got.segments[0].start_position, 10);
    assert_int_equal(got.segments[0].gather, 1);
    assert_memory_equal(got.segments[0].tokens, a, sizeof a);
    assert_int_equal(got.segments[1].request_id, 5);
    assert_int_equal(got.segments[1].n_tokens, 1);
    wire_command_free(&got);
    free(buf);

    /* a token outside the vocabulary in any segment is refused */
    b[0] = V_SMALL;
    assert_int_equal(wire_command_encode(&c, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_command_decode(buf, len, &want, &got, &err), AUGUR_E_FORMAT);
    assert_non_null(strstr(err.message, "segment tokens"));
    free(buf);

    wire_trim trims[] = {{.request_id = 3, .slot = 1, .new_length = 14, .finished = true}};
    c = (wire_command){.kind = WIRE_CMD_ACCEPT_BATCH, .request_id = 3, .round = 4, .trims = trims, .n_trims = 1};
    assert_int_equal(wire_command_encode(&c, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_command_decode(buf, len, &want, &got, &err), AUGUR_OK);
    assert_int_equal(got.kind, WIRE_CMD_ACCEPT_BATCH);
    assert_int_equal(got.n_trims, 1);
    assert_int_equal(got.trims[0].new_length, 14);
    assert_true(got.trims[0].finished);
    wire_command_free(&got);
    free(buf);

    /* an empty batch is malformed, not a no-op */
    c.n_trims = 0;
    assert_int_equal(wire_command_encode(&c, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_command_decode(buf, len, &want, &got, &err), AUGUR_E_FORMAT);
    free(buf);

    c = (wire_command){.kind = WIRE_CMD_FREE, .request_id = 3, .slot = 6};
    assert_int_equal(wire_command_encode(&c, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_command_decode(buf, len, &want, &got, &err), AUGUR_OK);
    assert_int_equal(got.kind, WIRE_CMD_FREE);
    assert_int_equal(got.slot, 6);
    wire_command_free(&got);
    free(buf);
}

static wire_trace_record trace_rec(int i)
{
    return (wire_trace_record){.request_id = (uint64_t)(i / 100), .position = (uint32_t)(10 + i),
                               .round = (uint32_t)(i / 4), .draft_entropy = 0.01f * (float)i,
                               .target_entropy = 0.5f + 0.001f * (float)i, .accepted = i % 3 != 0,
                               .draft_ms = 0.25f, .target_ms = 3.5f + (float)(i % 7),
                               .index_in_round = (uint32_t)(i % 4), .draft_len_in_round = 4};
}

static void test_trace_record_round_trip(void **state)
{
    (void)state;
    augur_error err = {0};
    wire_trace_record r = trace_rec(123), got;
    uint8_t *buf;
    size_t len;
    assert_int_equal(wire_trace_record_encode(&r, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_trace_record_decode(buf, len, &got, &err), AUGUR_OK);
    assert_trace_equal(&got, &r);
    free(buf);
    r.index_in_round = 4;
    assert_int_equal(wire_trace_record_encode(&r, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_trace_record_decode(buf, len, &got, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "index_in_round 4 not below draft_len_in_round 4");
    free(buf);
}

/* ---- validation ---- */

/* Encodes a proposal built with the generated API, so a test can set any field. */
static void pack_raw(const Augur__Proposal *m, uint8_t **buf, size_t *len)
{
    *len = augur__proposal__get_packed_size(m);
    *buf = malloc(*len ? *len : 1);
    augur__proposal__pack(m, *buf);
}

static augur_status decode_raw(const Augur__Proposal *m, const wire_expect *want, augur_error *err)
{
    uint8_t *buf;
    size_t len;
    pack_raw(m, &buf, &len);
    wire_proposal got;
    augur_status st = wire_proposal_decode(buf, len, want, &got, err);
    wire_proposal_free(&got);
    free(buf);
    return st;
}

static void test_proposal_header_checks(void **state)
{
    (void)state;
    augur_error err = {0};
    int32_t tokens[] = {1, 2};
    Augur__Proposal m = AUGUR__PROPOSAL__INIT;
    m.version = AUGUR_WIRE_VERSION;
    m.end_mark = AUGUR_WIRE_END_MARK;
    m.request_id = 4;
    m.round = 9;
    m.n_tokens = 2;
    m.tokens = tokens;
    wire_expect want = expect(4, 7, V_SMALL, 2);

    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_COMM);
    assert_string_equal(err.message, "proposal from rank 2: round 7 expected, got 9");

    want.round = 9;
    want.request_id = 5;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_COMM);
    assert_string_equal(err.message, "proposal from rank 2: request 5 expected, got 4");

    want.request_id = 4;
    m.version = AUGUR_WIRE_VERSION + 1;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_COMM);
    assert_string_equal(err.message, "proposal from rank 2: wire version 2 expected, got 3");

    m.version = AUGUR_WIRE_VERSION;
    m.end_mark = 0;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "end mark missing");

    m.end_mark = AUGUR_WIRE_END_MARK;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_OK);

    /* Wildcards accept any request and round. */
    want = expect(WIRE_ANY_REQUEST, WIRE_ANY_ROUND, V_SMALL, -1);
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_OK);
}

static void test_proposal_content_checks(void **state)
{
    (void)state;
    augur_error err = {0};
    int32_t tokens[] = {1, 2, 3};
    float ent[] = {0.1f, 0.2f};
    Augur__Proposal m = AUGUR__PROPOSAL__INIT;
    m.version = AUGUR_WIRE_VERSION;
    m.end_mark = AUGUR_WIRE_END_MARK;
    m.n_tokens = 3;
    m.tokens = tokens;
    m.vocab_size = V_SMALL;
    wire_expect want = expect(0, 0, V_SMALL, 2);

    m.n_entropies = 2;
    m.entropies = ent;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_string_equal(err.message, "proposal from rank 2: 3 tokens but 2 entropies");
    m.n_entropies = 0;

    tokens[1] = V_SMALL;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_string_equal(err.message, "proposal from rank 2: tokens[1] = 64 outside vocabulary [0, 64)");
    tokens[1] = -3;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "tokens[1] = -3 outside vocabulary");
    tokens[1] = 2;

    /* Distributions: count, vocabulary, sparse lengths, ranges, order, values. */
    uint32_t ids[] = {3, 5};
    float probs[] = {0.5f, 0.5f};
    Augur__SparseDist sp = AUGUR__SPARSE_DIST__INIT;
    sp.n_ids = 2;
    sp.ids = ids;
    sp.n_probs = 2;
    sp.probs = probs;
    Augur__DraftDist d = AUGUR__DRAFT_DIST__INIT;
    d.form_case = AUGUR__DRAFT_DIST__FORM_SPARSE;
    d.sparse = &sp;
    Augur__DraftDist *dists[] = {&d, &d, &d};
    m.dists = dists;

    m.n_dists = 2;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_string_equal(err.message, "proposal from rank 2: 3 tokens but 2 distributions");
    m.n_dists = 3;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_OK);

    m.vocab_size = V_SMALL + 1;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "vocabulary of 65, the receiver's has 64");
    m.vocab_size = V_SMALL;

    sp.n_probs = 1;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_string_equal(err.message, "proposal from rank 2: dists[0]: sparse: 2 ids but 1 probs");
    sp.n_probs = 2;

    ids[1] = V_SMALL;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "dists[0]: sparse: ids[1] = 64 outside vocabulary [0, 64)");
    ids[1] = 3;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "not strictly increasing");
    ids[1] = 5;

    probs[1] = -0.25f;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "sparse: probs[1] (token 5) is -0.25");
    probs[1] = NAN;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "sparse: probs[1] (token 5) is nan");
    probs[1] = 0.5f;

    /* Dense: wrong byte length, NaN, corrupt zstd. */
    float row[V_SMALL];
    for (int i = 0; i < V_SMALL; i++)
        row[i] = 1.0f / V_SMALL;
    Augur__DenseDist dn = AUGUR__DENSE_DIST__INIT;
    dn.data.data = (uint8_t *)row;
    dn.data.len = sizeof row - 4;
    d.form_case = AUGUR__DRAFT_DIST__FORM_DENSE;
    d.dense = &dn;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "dists[0]: dense: 252 bytes, vocabulary 64 needs 256");
    dn.data.len = sizeof row;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_OK);
    row[9] = NAN;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "dense: probability of token 9 is nan");
    row[9] = -1.0f;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "dense: probability of token 9 is -1");
    row[9] = 1.0f / V_SMALL;
    dn.zstd = 1;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "not a zstd frame");

    d.form_case = AUGUR__DRAFT_DIST__FORM__NOT_SET;
    assert_int_equal(decode_raw(&m, &want, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "neither a dense nor a sparse distribution");
}

static void test_zstd_size_mismatch(void **state)
{
    (void)state;
    augur_error err = {0};
    float *q = malloc(V_LARGE * sizeof *q);
    compressible_dense(q, V_LARGE);
    Augur__DraftDist d = AUGUR__DRAFT_DIST__INIT;
    assert_int_equal(wire_dist_pack(q, V_LARGE, &d, &err), AUGUR_OK);
    assert_true(d.dense->zstd);
    /* The frame holds V_LARGE floats: unpacking for a smaller vocabulary must refuse. */
    assert_int_equal(wire_dist_unpack(&d, V_LARGE / 2, q, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "decompresses to 128000 bytes, vocabulary 16000 needs 64000");
    /* A damaged frame. */
    d.dense->data.data[d.dense->data.len / 2] ^= 0x5a;
    d.dense->data.data[d.dense->data.len / 2 + 1] ^= 0xa5;
    assert_int_equal(wire_dist_unpack(&d, V_LARGE, q, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "dense:");
    wire_dist_release(&d);
    free(q);
}

static void test_other_message_checks(void **state)
{
    (void)state;
    augur_error err = {0};
    uint8_t *buf;
    size_t len;
    wire_expect want = expect(3, 4, V_SMALL, 0);

    wire_verdict v = {.request_id = 3, .round = 4, .accepted = 1, .next_token = V_SMALL, .new_length = 10};
    wire_verdict vg;
    assert_int_equal(wire_verdict_encode(&v, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_verdict_decode(buf, len, &want, &vg, &err), AUGUR_E_FORMAT);
    assert_string_equal(err.message, "verdict from rank 0: next_token = 64 outside vocabulary [0, 64)");
    free(buf);
    v.next_token = -1; /* only allowed when finished */
    assert_int_equal(wire_verdict_encode(&v, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_verdict_decode(buf, len, &want, &vg, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "not finished");
    free(buf);
    v.next_token = 1;
    v.round = 5;
    assert_int_equal(wire_verdict_encode(&v, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_verdict_decode(buf, len, &want, &vg, &err), AUGUR_E_COMM);
    assert_string_equal(err.message, "verdict from rank 0: round 4 expected, got 5");
    free(buf);

    wire_request r = {.request_id = 3, .prompt_text = "x", .max_tokens = 4,
                      .sampling = {.temperature = 1, .top_p = 1.5f},
                      .rule = {.kind = WIRE_RULE_FIXED, .max_len = 4}};
    wire_request rg;
    assert_int_equal(wire_request_encode(&r, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_request_decode(buf, len, &want, &rg, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "sampling.top_p = 1.5 outside (0, 1]");
    free(buf);
    r.sampling.top_p = 1;
    r.sampling.temperature = NAN;
    assert_int_equal(wire_request_encode(&r, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_request_decode(buf, len, &want, &rg, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "sampling.temperature = nan");
    free(buf);
    r.sampling.temperature = 0;
    r.rule.max_len = 0;
    assert_int_equal(wire_request_encode(&r, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_request_decode(buf, len, &want, &rg, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "max_len = 0 outside [1, 1024]");
    free(buf);
    r.rule.max_len = 4;
    int32_t prompt[] = {1, 999};
    r.prompt_text = NULL;
    r.prompt_tokens = prompt;
    r.n_prompt_tokens = 2;
    assert_int_equal(wire_request_encode(&r, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_request_decode(buf, len, &want, &rg, &err), AUGUR_E_FORMAT);
    assert_string_equal(err.message, "request from rank 0: prompt tokens[1] = 999 outside vocabulary [0, 64)");
    free(buf);

    int32_t toks[] = {1};
    wire_result res = {.request_id = 3, .tokens = toks, .n_tokens = 1, .stats = {.accepted = 5, .proposed = 4}};
    wire_result resg;
    assert_int_equal(wire_result_encode(&res, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_result_decode(buf, len, &want, &resg, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "stats: 5 accepted of 4 proposed");
    free(buf);

    int32_t vt[] = {70};
    wire_command c = {.kind = WIRE_CMD_VERIFY, .request_id = 3, .round = 4, .tokens = vt, .n_tokens = 1};
    wire_command cg;
    assert_int_equal(wire_command_encode(&c, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_command_decode(buf, len, &want, &cg, &err), AUGUR_E_FORMAT);
    assert_string_equal(err.message, "command from rank 0: verify tokens[0] = 70 outside vocabulary [0, 64)");
    free(buf);

    /* A proposal longer than any draft would send is refused before allocating. */
    int32_t *many = calloc(WIRE_MAX_DRAFT_TOKENS + 1, sizeof *many);
    wire_proposal p = {.request_id = 3, .round = 4, .n_tokens = WIRE_MAX_DRAFT_TOKENS + 1, .tokens = many};
    wire_proposal pg;
    assert_int_equal(wire_proposal_encode(&p, &buf, &len, &err), AUGUR_OK);
    assert_int_equal(wire_proposal_decode(buf, len, &want, &pg, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "1025 tokens exceed the limit of 1024");
    free(buf);
    free(many);
}

/* ---- malformed bytes ---- */

typedef augur_status (*decode_fn)(const uint8_t *buf, size_t len, augur_error *err);

static augur_status dec_proposal(const uint8_t *b, size_t n, augur_error *e)
{
    wire_expect w = expect(WIRE_ANY_REQUEST, WIRE_ANY_ROUND, V_LARGE, 1);
    wire_proposal p;
    augur_status st = wire_proposal_decode(b, n, &w, &p, e);
    wire_proposal_free(&p);
    return st;
}
static augur_status dec_verdict(const uint8_t *b, size_t n, augur_error *e)
{
    wire_expect w = expect(WIRE_ANY_REQUEST, WIRE_ANY_ROUND, V_LARGE, 0);
    wire_verdict v;
    return wire_verdict_decode(b, n, &w, &v, e);
}
static augur_status dec_request(const uint8_t *b, size_t n, augur_error *e)
{
    wire_expect w = expect(WIRE_ANY_REQUEST, WIRE_ANY_ROUND, V_LARGE, 0);
    wire_request r;
    augur_status st = wire_request_decode(b, n, &w, &r, e);
    wire_request_free(&r);
    return st;
}
static augur_status dec_result(const uint8_t *b, size_t n, augur_error *e)
{
    wire_expect w = expect(WIRE_ANY_REQUEST, WIRE_ANY_ROUND, V_LARGE, 0);
    wire_result r;
    augur_status st = wire_result_decode(b, n, &w, &r, e);
    wire_result_free(&r);
    return st;
}
static augur_status dec_command(const uint8_t *b, size_t n, augur_error *e)
{
    wire_expect w = expect(WIRE_ANY_REQUEST, WIRE_ANY_ROUND, V_LARGE, 0);
    wire_command c;
    augur_status st = wire_command_decode(b, n, &w, &c, e);
    wire_command_free(&c);
    return st;
}
static augur_status dec_trace(const uint8_t *b, size_t n, augur_error *e)
{
    wire_trace_record r;
    return wire_trace_record_decode(b, n, &r, e);
}

/* Every proper prefix must fail cleanly; the exact copy in a fresh allocation lets
 * ASan catch any read past the end. */
static void check_truncations(const uint8_t *buf, size_t len, decode_fn dec, const char *what)
{
    augur_error err = {0};
    uint8_t *whole = malloc(len);
    memcpy(whole, buf, len);
    assert_int_equal(dec(whole, len, &err), AUGUR_OK);
    free(whole);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *prefix = malloc(cut ? cut : 1);
        memcpy(prefix, buf, cut);
        augur_status st = dec(cut ? prefix : NULL, cut, &err);
        if (st == AUGUR_OK)
            fail_msg("%s cut to %zu of %zu bytes decoded without error", what, cut, len);
        assert_true(err.message[0] != '\0');
        free(prefix);
    }
}

static void test_truncated_messages(void **state)
{
    (void)state;
    augur_error err = {0};
    uint8_t *buf;
    size_t len;

    int32_t tokens[] = {1, 300, 31999};
    float ent[] = {0.1f, 2.0f, 0.0f};
    float *q = malloc(3 * V_LARGE * sizeof *q);
    topk_dist(q, V_LARGE, 20, 1);
    compressible_dense(q + V_LARGE, V_LARGE);
    topk_dist(q + 2 * V_LARGE, V_LARGE, 1, 2);
    wire_proposal p = {.request_id = 1, .round = 2, .start_position = 3, .n_tokens = 3, .tokens = tokens,
                       .dists = q, .entropies = ent, .vocab_size = V_LARGE, .draft_ms = 0.5f};
    assert_int_equal(wire_proposal_encode(&p, &buf, &len, &err), AUGUR_OK);
    check_truncations(buf, len, dec_proposal, "proposal");
    free(buf);
    free(q);

    wire_verdict v = {.request_id = 1, .round = 2, .accepted = 3, .next_token = 4, .new_length = 9};
    assert_int_equal(wire_verdict_encode(&v, &buf, &len, &err), AUGUR_OK);
    check_truncations(buf, len, dec_verdict, "verdict");
    free(buf);

    wire_request r = {.request_id = 1, .prompt_text = "hello there", .max_tokens = 8,
                      .sampling = {.temperature = 0.5f, .top_k = 3, .top_p = 0.9f, .seed = 99},
                      .rule = {.kind = WIRE_RULE_ENTROPY_STATIC, .max_len = 6, .tau = 2.25f}};
    assert_int_equal(wire_request_encode(&r, &buf, &len, &err), AUGUR_OK);
    check_truncations(buf, len, dec_request, "request");
    free(buf);

    wire_result res = {.request_id = 1, .tokens = tokens, .n_tokens = 3, .text = "out",
                       .stats = {.rounds = 1, .accepted = 1, .proposed = 2, .total_ms = 5}};
    assert_int_equal(wire_result_encode(&res, &buf, &len, &err), AUGUR_OK);
    check_truncations(buf, len, dec_result, "result");
    free(buf);

    wire_command c = {.kind = WIRE_CMD_VERIFY, .request_id = 1, .round = 2, .start_position = 5, .tokens = tokens,
                      .n_tokens = 3, .gather = 1};
    assert_int_equal(wire_command_encode(&c, &buf, &len, &err), AUGUR_OK);
    check_truncations(buf, len, dec_command, "command");
    free(buf);

    wire_trace_record t = trace_rec(7);
    assert_int_equal(wire_trace_record_encode(&t, &buf, &len, &err), AUGUR_OK);
    check_truncations(buf, len, dec_trace, "trace record");
    free(buf);
}

static void test_garbage_bytes(void **state)
{
    (void)state;
    decode_fn decs[] = {dec_proposal, dec_verdict, dec_request, dec_result, dec_command, dec_trace};
    uint64_t s = 0x243f6a8885a308d3ull;
    for (int trial = 0; trial < 3000; trial++) {
        size_t len = (size_t)(trial % 97) + 1;
        uint8_t *buf = malloc(len);
        for (size_t i = 0; i < len; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            buf[i] = (uint8_t)(s >> 24);
        }
        for (size_t d = 0; d < sizeof decs / sizeof decs[0]; d++) {
            augur_error err = {0};
            if (decs[d](buf, len, &err) == AUGUR_OK)
                fail_msg("trial %d: %zu random bytes decoded as message type %zu", trial, len, d);
        }
        free(buf);
    }
}

/* ---- trace streams ---- */

static char *tmp_path(char **dir, const char *name)
{
    *dir = test_tmpdir();
    assert_non_null(*dir);
    size_t n = strlen(*dir) + strlen(name) + 2;
    char *path = malloc(n);
    snprintf(path, n, "%s/%s", *dir, name);
    return path;
}

static void write_trace(const char *path, int n)
{
    augur_error err = {0};
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    trace_writer *w;
    assert_int_equal(trace_writer_open(&w, f, path, 0, &err), AUGUR_OK);
    for (int i = 0; i < n; i++) {
        wire_trace_record r = trace_rec(i);
        assert_int_equal(trace_writer_append(w, &r, &err), AUGUR_OK);
        if (i == n / 2)
            assert_int_equal(trace_writer_flush(w, &err), AUGUR_OK);
    }
    assert_int_equal(trace_writer_close(w, &err), AUGUR_OK);
    fclose(f);
}

/* Reads the whole file: the number of records and the final status. check: compare
 * each record with what write_trace wrote (off for deliberately corrupted files). */
static augur_status read_trace_opt(const char *path, bool check, int *count, augur_error *err)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    trace_reader *r;
    augur_status st = trace_reader_open(&r, f, path, err);
    assert_int_equal(st, AUGUR_OK);
    *count = 0;
    for (;;) {
        wire_trace_record rec;
        bool got;
        st = trace_reader_next(r, &rec, &got, err);
        if (st != AUGUR_OK || !got)
            break;
        wire_trace_record want = trace_rec(*count);
        if (check)
            assert_trace_equal(&rec, &want);
        (*count)++;
    }
    trace_reader_close(r);
    fclose(f);
    return st;
}

static augur_status read_trace(const char *path, int *count, augur_error *err)
{
    return read_trace_opt(path, true, count, err);
}

static void test_trace_stream_round_trip(void **state)
{
    (void)state;
    char *dir;
    char *path = tmp_path(&dir, "trace.zst");
    write_trace(path, 1000);
    augur_error err = {0};
    int count;
    assert_int_equal(read_trace(path, &count, &err), AUGUR_OK);
    assert_int_equal(count, 1000);

    /* Compression pays on this highly regular stream. */
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    assert_true(size > 0 && size < 1000 * 20);

    /* Zero records is still a valid (one empty frame) stream. */
    write_trace(path, 0);
    assert_int_equal(read_trace(path, &count, &err), AUGUR_OK);
    assert_int_equal(count, 0);

    unlink(path);
    rmdir(dir);
    free(path);
    free(dir);
}

static void test_trace_stream_damage(void **state)
{
    (void)state;
    char *dir;
    char *path = tmp_path(&dir, "trace.zst");
    write_trace(path, 1000);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    uint8_t *bytes = malloc((size_t)size);
    assert_int_equal(fread(bytes, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    augur_error err = {0};
    int count;

    /* Cut anywhere short of the end, the stream must say so. */
    long cuts[] = {0, 1, 4, 9, size / 3, size / 2, size - 5, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        assert_int_equal(test_write_file(path, bytes, (size_t)cuts[i]), 0);
        augur_error_clear(&err);
        augur_status st = read_trace(path, &count, &err);
        if (st == AUGUR_OK)
            fail_msg("trace cut to %ld of %ld bytes read as complete (%d records)", cuts[i], size, count);
        assert_int_equal(st, AUGUR_E_FORMAT);
        assert_contains(err.message, path);
    }
    assert_int_equal(test_write_file(path, bytes, (size_t)size - 1), 0);
    read_trace(path, &count, &err);
    assert_contains(err.message, "truncated after");

    /* A flipped byte in the middle: corrupt data or a checksum mismatch, never a crash. */
    bytes[size / 2] ^= 0xff;
    assert_int_equal(test_write_file(path, bytes, (size_t)size), 0);
    assert_int_equal(read_trace_opt(path, false, &count, &err) != AUGUR_OK, 1);

    /* Not zstd at all. */
    assert_int_equal(test_write_file(path, "request_id,round\n", 17), 0);
    assert_int_equal(read_trace(path, &count, &err), AUGUR_E_FORMAT);
    assert_contains(err.message, "corrupt zstd stream");

    unlink(path);
    rmdir(dir);
    free(path);
    free(dir);
    free(bytes);
}

static void test_trace_csv(void **state)
{
    (void)state;
    char *dir;
    char *path = tmp_path(&dir, "trace.zst");
    write_trace(path, 3);
    FILE *in = fopen(path, "rb");
    char *text = NULL;
    size_t text_len = 0;
    FILE *csv = open_memstream(&text, &text_len);
    augur_error err = {0};
    uint64_t rows = 0;
    assert_int_equal(trace_dump_csv(in, path, csv, &rows, &err), AUGUR_OK);
    fclose(csv);
    fclose(in);
    assert_int_equal(rows, 3);
    const char *header = "request_id,round,position,index_in_round,draft_len_in_round,"
                         "draft_entropy,target_entropy,accepted,draft_ms,target_ms\n";
    assert_true(strncmp(text, header, strlen(header)) == 0);
    /* Row for record 1: request 0, round 0, position 11, index 1 of 4, accepted. */
    const char *row1 = text + strlen(header);
    row1 = strchr(row1, '\n') + 1;
    assert_true(strncmp(row1, "0,0,11,1,4,0.00999999978,0.500999987,1,0.25,4.5\n",
                        strlen("0,0,11,1,4,0.00999999978,0.500999987,1,0.25,4.5\n")) == 0);
    int lines = 0;
    for (const char *c = text; *c; c++)
        lines += *c == '\n';
    assert_int_equal(lines, 4);
    free(text);
    unlink(path);
    rmdir(dir);
    free(path);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proposal_greedy_round_trip),
        cmocka_unit_test(test_proposal_sparse_round_trip),
        cmocka_unit_test(test_proposal_dense_zstd_round_trip),
        cmocka_unit_test(test_dist_forms),
        cmocka_unit_test(test_dist_large_dense),
        cmocka_unit_test(test_verdict_round_trip),
        cmocka_unit_test(test_request_round_trip),
        cmocka_unit_test(test_result_round_trip),
        cmocka_unit_test(test_command_round_trip),
        cmocka_unit_test(test_command_batch_round_trip),
        cmocka_unit_test(test_trace_record_round_trip),
        cmocka_unit_test(test_proposal_header_checks),
        cmocka_unit_test(test_proposal_content_checks),
        cmocka_unit_test(test_zstd_size_mismatch),
        cmocka_unit_test(test_other_message_checks),
        cmocka_unit_test(test_truncated_messages),
        cmocka_unit_test(test_garbage_bytes),
        cmocka_unit_test(test_trace_stream_round_trip),
        cmocka_unit_test(test_trace_stream_damage),
        cmocka_unit_test(test_trace_csv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
