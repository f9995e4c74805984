/* augur launch's layout, hostfile and config (launcher/launch_layout.h,
 * launch_config.h) and the replicas' rank arithmetic (comm/layout.h): the odd cases of
 * placing replicas x (T + 1) ranks on hosts, and that every error names what is wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "comm/layout.h"
#include "launcher/launch_config.h"
#include "launcher/launch_layout.h"
#include "test_util.h"

static void hosts_from(launch_hosts *h, const char *text)
{
    augur_error err = {0};
    test_expect_ok(launch_hosts_parse(h, "hosts.txt", text, &err), &err, "launch_hosts_parse");
}

static void plan_ok(launch_layout *l, const launch_spec *spec, const launch_hosts *h)
{
    augur_error err = {0};
    test_expect_ok(launch_layout_plan(l, spec, h, &err), &err, "launch_layout_plan");
}

static void plan_fails(const launch_spec *spec, const launch_hosts *h, const char *needle1, const char *needle2)
{
    launch_layout l;
    augur_error err = {0};
    test_expect_status(launch_layout_plan(&l, spec, h, &err), &err, AUGUR_E_INPUT, needle1, needle2);
}

/* "rank | host | gpu | ..." for a failure message */
static char *table(const launch_layout *l, const launch_hosts *h)
{
    static char buf[8192];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    launch_layout_print(f, l, h);
    fclose(f);
    return buf;
}

static void expect_rank(const launch_layout *l, const launch_hosts *h, int r, const char *host, int gpu,
                        launch_role role, int replica)
{
    const launch_rank *x = &l->ranks[r];
    if (strcmp(h->hosts[x->host].name, host) || x->gpu != gpu || x->role != role || x->replica != replica)
        fail_msg("rank %d: expected host %s gpu %d %s replica %d; layout:\n%s", r, host, gpu,
                 role == LAUNCH_TARGET ? "target" : "draft", replica, table(l, h));
}

static void test_one_host_cpu(void **state)
{
    (void)state;
    launch_hosts h;
    augur_error err = {0};
    test_expect_ok(launch_hosts_local(&h, 2, 0, &err), &err, "launch_hosts_local");
    launch_layout l;
    plan_ok(&l, &(launch_spec){.tp = 1, .replicas = 1}, &h);
    assert_int_equal(l.n, 2);
    expect_rank(&l, &h, 0, "localhost", -1, LAUNCH_TARGET, 0);
    expect_rank(&l, &h, 1, "localhost", -1, LAUNCH_DRAFT, 0);
    /* two ranks on two cores: one core each, not oversubscribed */
    assert_false(l.oversubscribed);
    assert_int_equal(l.ranks[0].core_first, 0);
    assert_int_equal(l.ranks[1].core_first, 1);
    assert_int_equal(l.ranks[1].n_cores, 1);
    launch_layout_free(&l);
    launch_hosts_free(&h);
}

/* Replica r owns ranks r(T+1) .. r(T+1)+T, targets first. */
static void test_replicas_rank_order(void **state)
{
    (void)state;
    launch_hosts h;
    hosts_from(&h, "a slots=4 gpus=4\nb slots=4 gpus=4\n");
    launch_layout l;
    plan_ok(&l, &(launch_spec){.tp = 2, .replicas = 2, .use_gpus = true}, &h);
    assert_int_equal(l.n, 6);
    expect_rank(&l, &h, 0, "a", 0, LAUNCH_TARGET, 0);
    expect_rank(&l, &h, 1, "a", 1, LAUNCH_TARGET, 0);
    expect_rank(&l, &h, 2, "a", 3, LAUNCH_DRAFT, 0);  /* after a's 3 target GPUs */
    expect_rank(&l, &h, 3, "a", 2, LAUNCH_TARGET, 1);
    expect_rank(&l, &h, 4, "b", 0, LAUNCH_TARGET, 1);
    expect_rank(&l, &h, 5, "b", 1, LAUNCH_DRAFT, 1);
    assert_int_equal(l.ranks[3].tp_rank, 0);
    assert_int_equal(l.ranks[4].tp_rank, 1);
    /* replica 1's target ranks cross from a to b: said in a note */
    if (!strstr(l.notes, "replica 1: its 2 target ranks span 2 hosts (a .. b)"))
        fail_msg("notes: '%s'", l.notes);
    assert_null(strstr(l.notes, "replica 0"));
    launch_layout_free(&l);
    launch_hosts_free(&h);
}

static void test_more_ranks_than_slots(void **state)
{
    (void)state;
    launch_hosts h;
    hosts_from(&h, "a slots=2\nb slots=1\n");
    plan_fails(&(launch_spec){.tp = 3, .replicas = 1}, &h, "hosts.txt: the layout needs 4 ranks",
               "offer 3 slots");
    plan_fails(&(launch_spec){.tp = 1, .replicas = 2}, &h, "(2 replicas x (1 target + 1 draft))", "oversubscribe");
    /* allowed: each host takes twice its slots, and the layout says it is oversubscribed */
    launch_layout l;
    plan_ok(&l, &(launch_spec){.tp = 3, .replicas = 1, .allow_oversubscribe = true}, &h);
    assert_true(l.oversubscribed);
    assert_int_equal(l.host_ranks[0], 4);
    assert_int_equal(l.host_ranks[1], 0);
    /* oversubscribed cores: every rank may use all of the host's */
    assert_int_equal(l.ranks[3].core_first, 0);
    assert_int_equal(l.ranks[3].n_cores, 2);
    launch_layout_free(&l);
    launch_hosts_free(&h);
}

static void test_uneven_slots(void **state)
{
    (void)state;
    launch_hosts h;
    hosts_from(&h, "a slots=3 cores=6\nb slots=5 cores=10\n");
    launch_layout l;
    plan_ok(&l, &(launch_spec){.tp = 3, .replicas = 2}, &h);
    assert_int_equal(l.host_ranks[0], 3);
    assert_int_equal(l.host_ranks[1], 5);
    expect_rank(&l, &h, 2, "a", -1, LAUNCH_TARGET, 0);
    expect_rank(&l, &h, 3, "b", -1, LAUNCH_DRAFT, 0);
    expect_rank(&l, &h, 7, "b", -1, LAUNCH_DRAFT, 1);
    /* cores split evenly: a's 6 over 3 ranks, b's 10 over 5 */
    assert_int_equal(l.ranks[1].core_first, 2);
    assert_int_equal(l.ranks[1].n_cores, 2);
    assert_int_equal(l.ranks[4].core_first, 2);
    assert_false(l.oversubscribed);
    FILE *f = tmpfile();
    launch_layout_write_rankfile(f, &l, &h);
    rewind(f);
    char line[128];
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "rank 0=a slot=0-1\n");
    for (int i = 0; i < 4; i++)
        assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "rank 4=b slot=2-3\n");
    fclose(f);
    launch_layout_free(&l);
    launch_hosts_free(&h);
}

static void test_draft_own_node(void **state)
{
    (void)state;
    launch_hosts h;
    hosts_from(&h, "node-a slots=8 gpus=8\nnode-b slots=8 gpus=8\nnode-c slots=2 gpus=2\n");
    launch_layout l;
    /* T = 8, two replicas: targets fill a and b, both drafts go to c */
    plan_ok(&l, &(launch_spec){.tp = 8, .replicas = 2, .draft = DRAFT_OWN_NODE, .use_gpus = true}, &h);
    expect_rank(&l, &h, 7, "node-a", 7, LAUNCH_TARGET, 0);
    expect_rank(&l, &h, 8, "node-c", 0, LAUNCH_DRAFT, 0);
    expect_rank(&l, &h, 9, "node-b", 0, LAUNCH_TARGET, 1);
    expect_rank(&l, &h, 17, "node-c", 1, LAUNCH_DRAFT, 1);
    assert_false(l.ranks[8].gpu_shared);
    launch_layout_free(&l);
    /* own-gpu instead: the first draft fills node-b's first slot, and its GPU is the one
     * after the 7 target ranks of replica 1 there */
    plan_ok(&l, &(launch_spec){.tp = 8, .replicas = 2, .use_gpus = true}, &h);
    expect_rank(&l, &h, 8, "node-b", 7, LAUNCH_DRAFT, 0);
    expect_rank(&l, &h, 16, "node-c", 0, LAUNCH_TARGET, 1);
    launch_layout_free(&l);
    /* no host is left for the drafts when the targets reach the last one */
    launch_hosts_free(&h);
    hosts_from(&h, "node-a slots=4\nnode-b slots=8\n");
    plan_fails(&(launch_spec){.tp = 8, .replicas = 1, .draft = DRAFT_OWN_NODE}, &h,
               "draft-placement own-node needs 1 slot", "hosts without target ranks");
    launch_hosts_free(&h);
}

static void test_gpu_checks(void **state)
{
    (void)state;
    launch_hosts h;
    hosts_from(&h, "a slots=4 # gpus=2\n");
    assert_int_equal(h.hosts[0].gpus, 2);
    plan_fails(&(launch_spec){.tp = 3, .replicas = 1, .use_gpus = true}, &h,
               "hosts.txt line 1: host a runs 3 target ranks but has 2 GPUs", "own GPU");
    plan_fails(&(launch_spec){.tp = 2, .replicas = 1, .use_gpus = true}, &h,
               "host a has 2 GPUs for 2 target and 1 draft rank", "draft rank 2 has no GPU of its own");
    /* shared: the draft takes the last target's GPU */
    launch_layout l;
    plan_ok(&l, &(launch_spec){.tp = 2, .replicas = 1, .draft = DRAFT_SHARED, .use_gpus = true}, &h);
    expect_rank(&l, &h, 2, "a", 1, LAUNCH_DRAFT, 0);
    assert_true(l.ranks[2].gpu_shared);
    assert_true(l.ranks[1].gpu_shared);
    assert_false(l.ranks[0].gpu_shared);
    if (!strstr(table(&l, &h), "   2 | a | 1 (shared) | 2 | draft | 0\n"))
        fail_msg("table:\n%s", table(&l, &h));
    launch_layout_free(&l);
    launch_hosts_free(&h);
    hosts_from(&h, "a slots=4\n");
    plan_fails(&(launch_spec){.tp = 1, .replicas = 1, .use_gpus = true}, &h, "host a has no GPUs", "gpus=N");
    launch_hosts_free(&h);
    /* simulated hosts: T = 2 on one GPU, the targets on different simulated nodes */
    hosts_from(&h, "a slots=3 gpus=1\n");
    plan_ok(&l, &(launch_spec){.tp = 2, .replicas = 1, .use_gpus = true, .simulate_hosts = 2}, &h);
    expect_rank(&l, &h, 0, "a", 0, LAUNCH_TARGET, 0);
    expect_rank(&l, &h, 1, "a", 0, LAUNCH_TARGET, 0);
    expect_rank(&l, &h, 2, "a", 0, LAUNCH_DRAFT, 0);
    launch_layout_free(&l);
    launch_hosts_free(&h);
}

static void test_hostfile_errors(void **state)
{
    (void)state;
    launch_hosts h;
    augur_error err = {0};
    hosts_from(&h, "# cluster\n\nnode-a slots=8 max_slots=8 gpus=8\n  node-b   # gpus=1 cores=4 the draft\n");
    assert_int_equal(h.n, 2);
    assert_int_equal(h.hosts[1].slots, 1);
    assert_int_equal(h.hosts[1].gpus, 1);
    assert_int_equal(h.hosts[1].cores, 4);
    assert_int_equal(h.hosts[1].line, 4);
    launch_hosts_free(&h);
    test_expect_status(launch_hosts_parse(&h, "h.txt", "a slots=2\nb slots=x\n", &err), &err, AUGUR_E_INPUT,
                       "h.txt line 2: slots='x' is not a count", NULL);
    test_expect_status(launch_hosts_parse(&h, "h.txt", "a slots=0\n", &err), &err, AUGUR_E_INPUT,
                       "h.txt line 1: slots=0: a host needs at least 1 slot", NULL);
    test_expect_status(launch_hosts_parse(&h, "h.txt", "a ram=4\n", &err), &err, AUGUR_E_INPUT,
                       "h.txt line 1: unknown key 'ram'", NULL);
    test_expect_status(launch_hosts_parse(&h, "h.txt", "a\nb\na slots=2\n", &err), &err, AUGUR_E_INPUT,
                       "h.txt line 3: host a is listed again (first on line 1)", NULL);
    test_expect_status(launch_hosts_parse(&h, "h.txt", "# nothing\n", &err), &err, AUGUR_E_INPUT, "h.txt: no hosts",
                       NULL);
}

static void test_replica_ranks(void **state)
{
    (void)state;
    augur_error err = {0};
    int replica = -1;
    for (int r = 0; r < 8; r++) {
        test_expect_ok(comm_layout_plan_replicas(8, r, 3, 2, true, &replica, &err), &err, "plan_replicas");
        assert_int_equal(replica, r / 4);
    }
    test_expect_status(comm_layout_plan_replicas(6, 0, 3, 2, true, &replica, &err), &err, AUGUR_E_INPUT,
                       "layout needs 8 ranks (2 replicas x (3 target + 1 draft)), mpirun started 6", NULL);
    test_expect_status(comm_layout_plan_replicas(3, 0, 1, 1, true, &replica, &err), &err, AUGUR_E_INPUT,
                       "layout needs 2 ranks (1 target + 1 draft), mpirun started 3", NULL);
}

/* ---- config files ---- */

/* Accepts the flags a tiny generate would, as the real check does for its table. */
static augur_status fake_check(launch_command cmd, const char *key, const char *value, augur_error *err)
{
    static const char *const known[] = {"target", "draft", "gamma", "tp", "replicas", "draft-placement",
                                        "simulate-hosts", "device", "no-overlap", "prompt", "model", "tp-size"};
    (void)cmd;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(key, known[i]))
            continue;
        if (!strcmp(key, "gamma") && value && strspn(value, "0123456789") != strlen(value))
            return augur_fail(err, AUGUR_E_INPUT, "--gamma: '%s' is not an integer", value);
        return AUGUR_OK;
    }
    return augur_fail(err, AUGUR_E_INPUT, "not a flag of augur generate");
}

static augur_status load_text(const char *dir, const char *json, launch_config *c, augur_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/c.json", dir);
    assert_int_equal(test_write_file(path, json, strlen(json)), 0);
    return launch_config_load(c, path, fake_check, err);
}

static void config_fails(const char *dir, const char *json, const char *needle1, const char *needle2)
{
    launch_config c;
    augur_error err = {0};
    test_expect_status(load_text(dir, json, &c, &err), &err, AUGUR_E_INPUT, needle1, needle2);
    /* every message names the file */
    if (!strstr(err.message, "/c.json"))
        fail_msg("no file name in '%s'", err.message);
}

static void test_config_keys(void **state)
{
    const char *dir = *state;
    launch_config c;
    augur_error err = {0};
    test_expect_ok(load_text(dir,
                             "{\"target\": \"t\", \"draft\": \"d\", \"tp\": 2, \"replicas\": 3, \"draft-placement\": "
                             "\"own-node\", \"hostfile\": \"h\", \"oversubscribe\": true, \"no-overlap\": true, "
                             "\"gamma\": 4, \"simulate-hosts\": false}",
                             &c, &err),
                   &err, "launch_config_load");
    assert_int_equal(c.tp, 2);
    assert_int_equal(c.replicas, 3);
    assert_int_equal(c.draft, DRAFT_OWN_NODE);
    assert_string_equal(c.hostfile, "h");
    assert_true(c.oversubscribe);
    assert_string_equal(c.target, "t");
    assert_string_equal(c.draft_model, "d");
    assert_int_equal(c.simulate_hosts, 0);
    /* launch-only keys stay out of the command's flags; the layout keys generate reads go on */
    int seen_tp = 0, seen_overlap = 0;
    for (int i = 0; i < c.n_flags; i++) {
        assert_false(launch_config_key_is_launch_only(c.flags[i].key));
        if (!strcmp(c.flags[i].key, "tp"))
            seen_tp = !strcmp(c.flags[i].value, "2");
        if (!strcmp(c.flags[i].key, "no-overlap"))
            seen_overlap = c.flags[i].value == NULL;
        assert_string_not_equal(c.flags[i].key, "simulate-hosts");
    }
    assert_true(seen_tp && seen_overlap);
    launch_config_free(&c);

    config_fails(dir, "{\"target\": \"t\", \"draft\": \"d\", \"tp\": \"two\"}", "key \"tp\": must be an integer",
                 "got '\"two\"'");
    config_fails(dir, "{\"target\": \"t\", \"draft\": \"d\", \"tp\": 0}", "key \"tp\": must be an integer in 1..",
                 "got '0'");
    config_fails(dir, "{\"target\": \"t\", \"draft\": \"d\", \"replicas\": 2.5}", "key \"replicas\"", NULL);
    config_fails(dir, "{\"target\": \"t\", \"draft\": \"d\", \"draft-placement\": \"elsewhere\"}",
                 "key \"draft-placement\": must be own-gpu, shared or own-node", "got 'elsewhere'");
    config_fails(dir, "{\"target\": \"t\", \"draft\": \"d\", \"device\": \"tpu\"}", "key \"device\"", "'tpu'");
    config_fails(dir, "{\"target\": \"t\", \"draft\": \"d\", \"gama\": 4}", "key \"gama\": not a flag", NULL);
    config_fails(dir, "{\"target\": \"t\", \"draft\": \"d\", \"gamma\": \"x\"}", "key \"gamma\": --gamma: 'x'",
                 NULL);
    config_fails(dir, "{\"target\": \"t\", \"draft\": [\"d\"]}", "key \"draft\": must be a string, a number", NULL);
    config_fails(dir, "{\"draft\": \"d\"}", "key \"target\" is missing", NULL);
    config_fails(dir, "{\"target\": \"t\"}", "key \"draft\" is missing", NULL);
    config_fails(dir, "{\"target\": \"t\", \"draft\": \"d\", \"oversubscribe\": 1}", "key \"oversubscribe\": must be true",
                 NULL);
    config_fails(dir, "{\"command\": \"bench\", \"model\": \"m\", \"replicas\": 2}",
                 "key \"replicas\": is a layout key of command generate", NULL);
    config_fails(dir, "{\"command\": \"train\", \"target\": \"t\"}", "key \"command\": must be generate, bench or serve",
                 NULL);
    config_fails(dir, "{\"target\": \"t\", \"draft\": \"d\", \"tp\": 2, \"tp\": 3}", "duplicate", NULL);
    config_fails(dir, "[1, 2]", "not a JSON object", NULL);
    config_fails(dir, "{\"target\": ", "line 1", NULL);
    test_expect_status(launch_config_load(&c, "/nonexistent/c.json", fake_check, &err), &err, AUGUR_E_INPUT,
                       "/nonexistent/c.json: cannot open", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_host_cpu),
        cmocka_unit_test(test_replicas_rank_order),
        cmocka_unit_test(test_more_ranks_than_slots),
        cmocka_unit_test(test_uneven_slots),
        cmocka_unit_test(test_draft_own_node),
        cmocka_unit_test(test_gpu_checks),
        cmocka_unit_test(test_hostfile_errors),
        cmocka_unit_test(test_replica_ranks),
        test_in_tmpdir(test_config_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
