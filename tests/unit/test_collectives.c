/* MPI collectives, rank layout and draft <-> leader messaging.
 *
 * Runs as a plain unit test on one rank (MPI singleton) and, from tests/mpi/collectives.sh,
 * under `mpirun -np 3`, where the multi-rank cases run too: every rank executes the same
 * cmocka tests in the same order, so collectives inside them match up.
 *
 * `test_collectives --layout-check T` only builds the layout for T target ranks and exits
 * with the CLI's exit code for the outcome, printing "rank R: <message>" on failure: the
 * script uses it to check that a wrong world size fails on every rank, quickly. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <mpi.h>

#include "comm/collectives.h"
#include "comm/layout.h"
#include "comm/messaging.h"
#include "proto/wire.h"
#include "test_util.h"

static int g_rank, g_size; /* set once in main before any test runs */

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("rank %d: \"%s\" does not contain \"%s\"", g_rank, haystack, needle);
}

static collectives *world_collectives(void)
{
    collectives *c = NULL;
    augur_error err = {0};
    if (collectives_mpi_create(&c, MPI_COMM_WORLD, &err) != AUGUR_OK)
        fail_msg("rank %d: %s", g_rank, err.message);
    return c;
}

/* What the ordered all-reduce must return: rank 0's values plus rank 1's plus ... */
static void expected_sum(float *out, size_t n, uint64_t seed_base, float scale)
{
    float *x = malloc(n * sizeof *x);
    for (int r = 0; r < g_size; r++) {
        test_fill_random(x, n, seed_base + (uint64_t)r, scale);
        for (size_t i = 0; i < n; i++)
            out[i] = r == 0 ? x[i] : out[i] + x[i];
    }
    free(x);
}

static void test_allreduce(void **state)
{
    (void)state;
    collectives *c = world_collectives();
    assert_int_equal(c->rank, g_rank);
    assert_int_equal(c->size, g_size);
    assert_string_equal(c->ops->name, "mpi");
    enum { ROWS = 5, DIM = 333 };
    float *batch = malloc(ROWS * DIM * sizeof *batch), *want = malloc(ROWS * DIM * sizeof *want);
    augur_error err = {0};

    test_fill_random(batch, ROWS * DIM, 100 + (uint64_t)g_rank, 3.0f);
    expected_sum(want, ROWS * DIM, 100, 3.0f);
    /* The MPI path itself, even on one rank (coll_allreduce_sum skips it there). */
    assert_int_equal(c->ops->allreduce_sum_f32(c, batch, ROWS * DIM, &err), AUGUR_OK);
    assert_memory_equal(batch, want, ROWS * DIM * sizeof *batch);

    /* Row by row gives the same bits as the batch: the greedy-equality contract. */
    test_fill_random(batch, ROWS * DIM, 100 + (uint64_t)g_rank, 3.0f);
    for (int r = 0; r < ROWS; r++)
        assert_int_equal(coll_allreduce_sum(c, batch + r * DIM, DIM, &err), AUGUR_OK);
    assert_memory_equal(batch, want, ROWS * DIM * sizeof *batch);

    assert_int_equal(c->ops->allreduce_sum_f32(c, batch, 0, &err), AUGUR_OK);
    free(batch);
    free(want);
    collectives_destroy(c);
}

/* More than one chunk of the ordered all-reduce's scratch. */
static void test_allreduce_large(void **state)
{
    (void)state;
    collectives *c = world_collectives();
    size_t n = (1u << 20) + 77;
    float *x = malloc(n * sizeof *x), *want = malloc(n * sizeof *want);
    augur_error err = {0};
    test_fill_random(x, n, 500 + (uint64_t)g_rank, 1.0f);
    expected_sum(want, n, 500, 1.0f);
    assert_int_equal(c->ops->allreduce_sum_f32(c, x, n, &err), AUGUR_OK);
    assert_memory_equal(x, want, n * sizeof *x);
    free(x);
    free(want);
    collectives_destroy(c);
}

static void test_gatherv(void **state)
{
    (void)state;
    collectives *c = world_collectives();
    augur_error err = {0};
    int *counts = malloc((size_t)g_size * sizeof *counts);
    int total = 0;
    for (int r = 0; r < g_size; r++)
        total += counts[r] = r + 1;
    float send[64], *recv = malloc((size_t)total * sizeof *recv);
    for (int i = 0; i <= g_rank; i++)
        send[i] = (float)(100 * g_rank + i);
    for (int root = 0; root < g_size; root += g_size > 1 ? g_size - 1 : 1) {
        memset(recv, 0, (size_t)total * sizeof *recv);
        assert_int_equal(coll_gatherv_f32(c, send, g_rank + 1, g_rank == root ? recv : NULL,
                                          g_rank == root ? counts : NULL, root, &err), AUGUR_OK);
        if (g_rank == root) {
            int k = 0;
            for (int r = 0; r < g_size; r++)
                for (int i = 0; i <= r; i++)
                    assert_true(recv[k++] == (float)(100 * r + i));
        }
    }
    /* Argument errors every rank makes alike: refused before entering MPI. */
    assert_int_equal(coll_gatherv_f32(c, send, 1, recv, counts, g_size, &err), AUGUR_E_INTERNAL);
    char want[64];
    snprintf(want, sizeof want, "gatherv to root %d outside the group of %d", g_size, g_size);
    assert_string_equal(err.message, want);
    assert_int_equal(coll_gatherv_f32(c, send, -1, recv, counts, 0, &err), AUGUR_E_INTERNAL);
    assert_contains(err.message, "gatherv of -1 floats");
    free(counts);
    free(recv);
    collectives_destroy(c);
}

static void test_bcast(void **state)
{
    (void)state;
    collectives *c = world_collectives();
    augur_error err = {0};
    uint8_t buf[1000];
    int root = g_size - 1;
    for (int i = 0; i < 1000; i++)
        buf[i] = g_rank == root ? (uint8_t)(i * 7 + 3) : 0;
    assert_int_equal(c->ops->bcast(c, buf, sizeof buf, root, &err), AUGUR_OK);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(buf[i], (uint8_t)(i * 7 + 3));
    assert_int_equal(c->ops->bcast(c, buf, 1, -1, &err), AUGUR_E_INTERNAL);
    assert_contains(err.message, "bcast from root -1 outside the group");
    collectives_destroy(c);
}

static void test_create_errors(void **state)
{
    (void)state;
    collectives *c = (collectives *)0x1;
    augur_error err = {0};
    assert_int_equal(collectives_mpi_create(&c, MPI_COMM_NULL, &err), AUGUR_E_INTERNAL);
    assert_null(c);
    assert_contains(err.message, "MPI_COMM_NULL");
    collectives_destroy(NULL);
}

static void test_layout_plan(void **state)
{
    (void)state;
    comm_layout l;
    augur_error err = {0};
    for (int r = 0; r < 3; r++) {
        assert_int_equal(comm_layout_plan(&l, 3, r, 2, true, &err), AUGUR_OK);
        assert_int_equal(l.role, r < 2 ? COMM_ROLE_TARGET : COMM_ROLE_DRAFT);
        assert_int_equal(l.tp_rank, r < 2 ? r : -1);
        assert_int_equal(l.leader, 0);
        assert_int_equal(l.draft_rank, 2);
        assert_int_equal(comm_layout_is_leader(&l), r == 0);
        comm_layout_free(&l);
    }
    assert_int_equal(comm_layout_plan(&l, 4, 0, 2, true, &err), AUGUR_E_INPUT);
    assert_string_equal(err.message, "layout needs 3 ranks (2 target + 1 draft), mpirun started 4");
    assert_int_equal(comm_layout_plan(&l, 2, 0, 2, false, &err), AUGUR_E_INPUT);
    assert_string_equal(err.message,
                        "layout needs 3 ranks (2 target + 1 draft, idle with --no-speculation), mpirun started 2");
    assert_int_equal(comm_layout_plan(&l, 1, 0, 0, true, &err), AUGUR_E_INPUT);
    assert_string_equal(err.message, "layout needs at least 1 target rank, got 0");
    comm_layout zero = {0};
    comm_layout_free(&zero);
}

static void test_layout_create(void **state)
{
    (void)state;
    comm_layout l;
    augur_error err = {0};
    /* Too many targets for this world: every rank fails the same way, none blocks. */
    assert_int_equal(comm_layout_create(&l, MPI_COMM_WORLD, g_size, true, &err), AUGUR_E_INPUT);
    char want[128];
    snprintf(want, sizeof want, "layout needs %d ranks (%d target + 1 draft), mpirun started %d", g_size + 1,
             g_size, g_size);
    assert_string_equal(err.message, want);
    comm_layout_free(&l);
    if (g_size < 2)
        skip();

    int T = g_size - 1;
    assert_int_equal(comm_layout_create(&l, MPI_COMM_WORLD, T, true, &err), AUGUR_OK);
    assert_int_equal(l.world_rank, g_rank);
    assert_int_equal(l.draft_rank, T);
    assert_int_equal(l.role, g_rank < T ? COMM_ROLE_TARGET : COMM_ROLE_DRAFT);
    if (l.role == COMM_ROLE_TARGET) {
        int tp_size, tp_rank;
        MPI_Comm_size(l.target, &tp_size);
        MPI_Comm_rank(l.target, &tp_rank);
        assert_int_equal(tp_size, T);
        assert_int_equal(tp_rank, g_rank);
        /* The target group's collectives see only target ranks. */
        collectives *c = NULL;
        assert_int_equal(collectives_mpi_create(&c, l.target, &err), AUGUR_OK);
        float ones[4] = {1, 1, 1, 1};
        assert_int_equal(c->ops->allreduce_sum_f32(c, ones, 4, &err), AUGUR_OK);
        assert_true(ones[3] == (float)T);
        collectives_destroy(c);
    } else {
        assert_true(l.target == MPI_COMM_NULL);
    }
    comm_layout_free(&l);
}

/* One rank talking to itself: sends this small go out eagerly, so no second rank is needed. */
static void test_messaging_self(void **state)
{
    (void)state;
    if (g_size != 1)
        skip();
    augur_error err = {0};
    MPI_Comm comm = MPI_COMM_WORLD;
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    bool ready = true;
    assert_int_equal(msg_poll(comm, 0, MSG_TAG_VERDICT, &ready, &err), AUGUR_OK);
    assert_false(ready);

    wire_verdict v = {.request_id = 1, .round = 2, .accepted = 0, .next_token = 3, .new_length = 5};
    assert_int_equal(msg_send_typed(comm, 0, MSG_TAG_VERDICT, &v, 5.0, &err), AUGUR_OK);
    assert_int_equal(msg_poll(comm, 0, MSG_TAG_VERDICT, &ready, &err), AUGUR_OK);
    assert_true(ready);
    wire_expect want = {.request_id = 1, .round = 2, .vocab_size = 8, .peer_rank = -1};
    wire_verdict got;
    assert_int_equal(msg_recv_typed(comm, 0, MSG_TAG_VERDICT, 5.0, &want, &got, &err), AUGUR_OK);
    assert_int_equal(got.next_token, 3);

    /* An empty message with a caller's own tag, received with MPI_ANY_TAG. */
    assert_int_equal(msg_send(comm, 0, 99, NULL, 0, 5.0, &err), AUGUR_OK);
    uint8_t *buf = NULL;
    size_t len = 7;
    int tag = 0;
    assert_int_equal(msg_recv(comm, 0, MPI_ANY_TAG, 5.0, &buf, &len, &tag, &err), AUGUR_OK);
    assert_int_equal(tag, 99);
    assert_int_equal(len, 0);
    free(buf);

    assert_int_equal(msg_recv_typed(comm, 0, MSG_TAG_VERDICT, 0.2, &want, &got, &err), AUGUR_E_COMM);
    assert_string_equal(err.message, "no verdict from leader rank 0 within 0.2 s");
}

/* Draft (last rank) and leader (rank 0) exchange a round; middle ranks only watch. */
static void test_messaging_ranks(void **state)
{
    (void)state;
    if (g_size < 2)
        skip();
    augur_error err = {0};
    comm_layout l;
    assert_int_equal(comm_layout_create(&l, MPI_COMM_WORLD, g_size - 1, true, &err), AUGUR_OK);
    enum { V = 5000 };
    int32_t tokens[2] = {17, 4999};
    float ent[2] = {0.5f, 2.5f};
    float *q = calloc(2 * V, sizeof *q);
    q[17] = 0.75f;
    q[18] = 0.25f;
    for (int i = 0; i < V; i++)
        q[V + i] = 1.0f / V;
    wire_expect want = {.request_id = 42, .round = 7, .vocab_size = V, .peer_rank = -1};

    if (l.world_rank == l.draft_rank) {
        wire_proposal p = {.request_id = 42, .round = 7, .start_position = 9, .n_tokens = 2, .tokens = tokens,
                           .dists = q, .entropies = ent, .vocab_size = V, .draft_ms = 2.0f};
        assert_int_equal(msg_send_typed(l.world, l.leader, MSG_TAG_PROPOSAL, &p, 30.0, &err), AUGUR_OK);
        wire_verdict v;
        assert_int_equal(msg_recv_typed(l.world, l.leader, MSG_TAG_VERDICT, 30.0, &want, &v, &err), AUGUR_OK);
        assert_int_equal(v.accepted, 1);
        assert_int_equal(v.next_token, 3);
        /* Out of order: the leader expects round 8 next. */
        p.round = 9;
        assert_int_equal(msg_send_typed(l.world, l.leader, MSG_TAG_PROPOSAL, &p, 30.0, &err), AUGUR_OK);
    } else if (comm_layout_is_leader(&l)) {
        wire_proposal p;
        assert_int_equal(msg_recv_typed(l.world, l.draft_rank, MSG_TAG_PROPOSAL, 30.0, &want, &p, &err), AUGUR_OK);
        assert_int_equal(p.n_tokens, 2);
        assert_memory_equal(p.tokens, tokens, sizeof tokens);
        assert_memory_equal(p.dists, q, 2 * V * sizeof *q);
        wire_proposal_free(&p);
        wire_verdict v = {.request_id = 42, .round = 7, .accepted = 1, .next_token = 3, .new_length = 11};
        assert_int_equal(msg_send_typed(l.world, l.draft_rank, MSG_TAG_VERDICT, &v, 30.0, &err), AUGUR_OK);
        want.round = 8;
        assert_int_equal(msg_recv_typed(l.world, l.draft_rank, MSG_TAG_PROPOSAL, 30.0, &want, &p, &err), AUGUR_E_COMM);
        char msg[128];
        snprintf(msg, sizeof msg, "proposal from rank %d: round 8 expected, got 9", l.draft_rank);
        assert_string_equal(err.message, msg);
        /* Nothing more comes: a clear timeout, not a hang. */
        assert_int_equal(msg_recv_typed(l.world, l.draft_rank, MSG_TAG_PROPOSAL, 0.3, &want, &p, &err), AUGUR_E_COMM);
        snprintf(msg, sizeof msg, "no proposal from draft rank %d within 0.3 s", l.draft_rank);
        assert_string_equal(err.message, msg);
    }

    /* The leader's command reaches every target rank. */
    if (l.role == COMM_ROLE_TARGET) {
        int32_t vt[3] = {1, 2, 3};
        wire_command cmd = {0};
        if (l.tp_rank == 0)
            cmd = (wire_command){.kind = WIRE_CMD_VERIFY, .request_id = 42, .round = 8, .start_position = 10,
                                 .tokens = vt, .n_tokens = 3, .gather = 1};
        wire_expect cw = {.request_id = 42, .round = 8, .vocab_size = V};
        assert_int_equal(msg_bcast_command(l.target, 0, &cmd, &cw, 30.0, &err), AUGUR_OK);
        assert_int_equal(cmd.kind, WIRE_CMD_VERIFY);
        assert_int_equal(cmd.n_tokens, 3);
        assert_int_equal(cmd.tokens[2], 3);
        assert_int_equal(cmd.gather, 1);
        if (l.tp_rank != 0)
            wire_command_free(&cmd);
    }
    free(q);
    MPI_Barrier(l.world);
    comm_layout_free(&l);
}

/* A send nobody takes fails at its deadline instead of blocking. It is too large to go
 * out eagerly, so it waits for a receive; the leader drains it afterwards, so the
 * abandoned send completes before its buffer is freed. */
static void test_messaging_send_timeout(void **state)
{
    (void)state;
    if (g_size < 2)
        skip();
    augur_error err = {0};
    comm_layout l;
    assert_int_equal(comm_layout_create(&l, MPI_COMM_WORLD, g_size - 1, true, &err), AUGUR_OK);
    enum { BIG = 4 << 20, TAG = 98 };
    uint8_t *big = calloc(BIG, 1);
    assert_non_null(big);
    if (l.world_rank == l.draft_rank) {
        assert_int_equal(msg_send(l.world, l.leader, TAG, big, BIG, 0.3, &err), AUGUR_E_COMM);
        char msg[128];
        snprintf(msg, sizeof msg, "message to rank %d not taken within 0.3 s", l.leader);
        assert_string_equal(err.message, msg);
    }
    MPI_Barrier(l.world);
    if (comm_layout_is_leader(&l)) {
        uint8_t *buf = NULL;
        size_t len = 0;
        assert_int_equal(msg_recv(l.world, l.draft_rank, TAG, 30.0, &buf, &len, NULL, &err), AUGUR_OK);
        assert_int_equal(len, BIG);
        free(buf);
    }
    MPI_Barrier(l.world);
    free(big);
    comm_layout_free(&l);
}

static int layout_check(int n_target)
{
    comm_layout l;
    augur_error err = {0};
    augur_status st = comm_layout_create(&l, MPI_COMM_WORLD, n_target, true, &err);
    if (st != AUGUR_OK)
        fprintf(stderr, "rank %d: %s\n", g_rank, err.message);
    else
        printf("rank %d: layout ok (%s)\n", g_rank, l.role == COMM_ROLE_DRAFT ? "draft" : "target");
    comm_layout_free(&l);
    MPI_Finalize();
    return augur_exit_code(st);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (argc == 3 && strcmp(argv[1], "--layout-check") == 0)
        return layout_check(atoi(argv[2]));

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allreduce),
        cmocka_unit_test(test_allreduce_large),
        cmocka_unit_test(test_gatherv),
        cmocka_unit_test(test_bcast),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_layout_plan),
        cmocka_unit_test(test_layout_create),
        cmocka_unit_test(test_messaging_self),
        cmocka_unit_test(test_messaging_ranks),
        cmocka_unit_test(test_messaging_send_timeout),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed ? 1 : 0;
}

/* Open MPI unloads its plugins (dlclose) in MPI_Finalize, after which LeakSanitizer
 * can no longer name the code behind their process-lifetime allocations, and
 * tests/lsan.supp cannot match "<unknown module>". Keeping every library mapped lets
 * the suppressions (mca_*, libopen-pal, ...) see them; this program loads nothing that
 * must really be unloaded. */
int dlclose(void *handle);
int dlclose(void *handle)
{
    (void)handle;
    return 0;
}

/* Merged with tests/lsan.supp: PMIx (under Open MPI) keeps a few strings for the life
 * of the process, some allocated through vasprintf in frames the fast unwinder cannot
 * walk. Nothing in augur calls vasprintf. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libpmix.so\nleak:__vasprintf_internal\n";
}
