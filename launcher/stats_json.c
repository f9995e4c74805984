/* `generate --stats-json FILE` writer: the figures print_stats puts on stderr, with the
 * settings that produced them, so that a run's record stands on its own. */
#include "launcher/stats_json.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

static double tok_per_s(const spec_stats *s)
{
    double decode_ms = s->total_ms - s->prefill_ms;
    return decode_ms > 0 ? s->generated / (decode_ms / 1e3) : 0.0;
}

static json_t *run_json(const stats_run *r, int n_targets)
{
    const spec_stats *s = r->s;
    double decode_ms = s->total_ms - s->prefill_ms;
    json_t *o = json_pack("{s:s, s:i, s:f, s:f, s:f, s:f, s:f, s:i}", "label", r->label, "generated", s->generated,
                          "total_ms", s->total_ms, "prefill_ms", s->prefill_ms, "decode_ms", decode_ms,
                          "tokens_per_s", tok_per_s(s), "ms_per_token",
                          s->generated ? decode_ms / s->generated : 0.0, "rounds", s->rounds);
    if (!o)
        return NULL;
    json_object_set_new(o, "tokens_per_round", json_real(s->rounds ? (double)s->generated / s->rounds : 0.0));
    json_object_set_new(o, "proposed", json_integer(s->proposed));
    json_object_set_new(o, "accepted", json_integer(s->accepted));
    json_object_set_new(o, "acceptance", s->proposed ? json_real((double)s->accepted / s->proposed) : json_null());
    json_t *t = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f}", "draft_wait_ms", s->draft_wait_ms, "draft_compute_ms",
                          s->draft_compute_ms, "draft_hidden_ms", s->draft_hidden_ms, "verify_ms", s->verify_ms,
                          "comm_ms", s->comm_ms, "sample_ms", s->sample_ms);
    json_object_set_new(o, "time", t ? t : json_null());
    json_t *ar = json_object();
    if (ar) {
        /* Rank 0's own all-reduces: the time includes waiting for the slowest peer. */
        json_object_set_new(ar, "ranks", json_integer(n_targets));
        json_object_set_new(ar, "calls", json_integer(r->ar.calls));
        json_object_set_new(ar, "ms", json_real(r->ar.ms));
        json_object_set_new(ar, "bytes", json_integer(r->ar.bytes));
        json_object_set_new(ar, "mean_us", r->ar.calls ? json_real(1e3 * r->ar.ms / (double)r->ar.calls) : json_null());
    }
    json_object_set_new(o, "allreduce", ar ? ar : json_null());
    return o;
}

augur_status stats_json_write(const char *path, const generate_cli *cli, const spec_engine *e, int world_size,
                              int requests, const stats_run *main_run, const stats_run *baseline,
                              augur_error *err)
{
    char rule[128];
    draft_rule_describe(&cli->rule, rule, sizeof rule);
    json_t *root = json_object();
    json_t *runs = json_array();
    if (!root || !runs) {
        json_decref(root);
        json_decref(runs);
        return augur_fail(err, AUGUR_E_NOMEM, "--stats-json: out of memory");
    }
    json_object_set_new(root, "ranks", json_integer(world_size)); /* this group's (see "job") */
    json_object_set_new(root, "tp", json_integer(e->n_targets));
    json_object_set_new(root, "tp_comm", json_string(e->tp ? e->tp->ops->name : "none"));
    json_object_set_new(root, "device", json_string(e->be ? e->be->name : "none"));
    json_object_set_new(root, "speculative", json_boolean(!cli->no_speculation));
    json_object_set_new(root, "draft_rule", json_string(draft_rule_kind_name(cli->rule.kind)));
    json_object_set_new(root, "draft_rule_detail", json_string(rule));
    json_object_set_new(root, "gamma", json_integer(cli->rule.gamma));
    json_object_set_new(root, "overlap", json_boolean(!cli->no_overlap));
    json_object_set_new(root, "synthetic_acceptance",
                        cli->have_synthetic ? json_real(cli->synthetic_acceptance) : json_null());
    json_object_set_new(root, "load_format", json_string(cli->device.dummy ? "dummy" : "auto"));
    json_object_set_new(root, "simulate_hosts", json_integer(cli->device.simulate_hosts));
    json_object_set_new(root, "requests", json_integer(requests));
    json_object_set_new(root, "max_tokens", json_integer(cli->max_tokens));
    json_object_set_new(root, "threads", json_integer(cli->threads));
    json_array_append_new(runs, run_json(main_run, e->n_targets));
    if (baseline)
        json_array_append_new(runs, run_json(baseline, e->n_targets));
    json_object_set_new(root, "runs", runs);
    if (baseline) {
        double a = tok_per_s(main_run->s), b = tok_per_s(baseline->s);
        json_object_set_new(root, "speedup", b > 0 ? json_real(a / b) : json_null());
    }
    int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (rc)
        return augur_fail(err, AUGUR_E_IO, "--stats-json: cannot write %s: %s", path, strerror(errno));
    return AUGUR_OK;
}

augur_status stats_json_add_job(const char *path, const replica_totals *t, augur_error *err)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        return augur_fail(err, AUGUR_E_IO, "--stats-json: cannot read back %s: %s", path, jerr.text);
    json_t *job = json_pack("{s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f}", "replicas", t->replicas, "ranks", t->ranks,
                            "requests", t->requests,
                            "generated", t->generated, "wall_ms", t->wall_ms, "tokens_per_s", t->tokens_per_s,
                            "ms_per_token", t->generated ? t->wall_ms / t->generated : 0.0, "acceptance",
                            t->acceptance);
    if (job && t->base_tokens_per_s > 0) {
        json_object_set_new(job, "baseline_tokens_per_s", json_real(t->base_tokens_per_s));
        json_object_set_new(job, "speedup", json_real(t->tokens_per_s / t->base_tokens_per_s));
    }
    /* "runs" stays replica 0's own record: its round split is one group's */
    if (!job || json_object_set_new(root, "replicas", json_integer(t->replicas)) ||
        json_object_set_new(root, "job", job)) {
        json_decref(root);
        return augur_fail(err, AUGUR_E_NOMEM, "--stats-json: out of memory");
    }
    int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (rc)
        return augur_fail(err, AUGUR_E_IO, "--stats-json: cannot write %s: %s", path, strerror(errno));
    return AUGUR_OK;
}
