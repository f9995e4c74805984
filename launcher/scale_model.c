/* The speculative cost model of `augur project` (scale_model.h has the formulas). */
#include "launcher/scale_model.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static augur_status need_number(json_t *obj, const char *key, const char *path, const char *where, double lo,
                                double *out, augur_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v))
        return augur_fail(err, AUGUR_E_INPUT, "%s: %s%s\"%s\" must be a number", path, where, *where ? ": " : "", key);
    *out = json_number_value(v);
    if (!(*out >= lo))
        return augur_fail(err, AUGUR_E_INPUT, "%s: %s%s\"%s\" is %g, below %g", path, where, *where ? ": " : "", key,
                          *out, lo);
    return AUGUR_OK;
}

static augur_status need_int(json_t *obj, const char *key, const char *path, int lo, int *out, augur_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > (1 << 24))
        return augur_fail(err, AUGUR_E_INPUT, "%s: \"%s\" must be an integer >= %d", path, key, lo);
    *out = (int)json_integer_value(v);
    return AUGUR_OK;
}

static augur_status load_link(json_t *links, const char *key, const char *path, scale_link *l, augur_error *err)
{
    json_t *o = json_object_get(links, key);
    char where[64];
    snprintf(where, sizeof where, "links.%s", key);
    if (!json_is_object(o))
        return augur_fail(err, AUGUR_E_INPUT, "%s: \"%s\" must be an object {latency_us, bandwidth_GBps, source}",
                          path, where);
    augur_status st = need_number(o, "latency_us", path, where, 0, &l->latency_us, err);
    return st ? st : need_number(o, "bandwidth_GBps", path, where, 0, &l->bandwidth_gbps, err);
}

/* Least squares of y = a + b x over (x[i], y[i]). */
static void fit_line(const double *x, const double *y, int n, double *a, double *b)
{
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < n; i++)
        sx += x[i], sy += y[i], sxx += x[i] * x[i], sxy += x[i] * y[i];
    double d = n * sxx - sx * sx;
    *b = n > 1 && fabs(d) > 1e-12 ? (n * sxy - sx * sy) / d : 0.0;
    *a = n ? (sy - *b * sx) / n : 0.0;
}

/* "target": [{tp, positions, ms, source}, ...] grouped into one linear model per T. */
static augur_status load_shards(json_t *arr, const char *path, scale_profile *p, augur_error *err)
{
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return augur_fail(err, AUGUR_E_INPUT, "%s: \"target\" must be a non-empty array of {tp, positions, ms}", path);
    double n[SCALE_MAX_POINTS], ms[SCALE_MAX_POINTS];
    int tps[SCALE_MAX_POINTS];
    size_t count = json_array_size(arr);
    if (count > SCALE_MAX_POINTS)
        return augur_fail(err, AUGUR_E_INPUT, "%s: \"target\" has %zu points, at most %d", path, count,
                          SCALE_MAX_POINTS);
    for (size_t i = 0; i < count; i++) {
        json_t *o = json_array_get(arr, i);
        char where[32];
        snprintf(where, sizeof where, "target[%zu]", i);
        double tp;
        augur_status st = json_is_object(o) ? AUGUR_OK
                                            : augur_fail(err, AUGUR_E_INPUT, "%s: %s must be an object", path, where);
        if (!st)
            st = need_number(o, "tp", path, where, 1, &tp, err);
        if (!st)
            st = need_number(o, "positions", path, where, 1, &n[i], err);
        if (!st)
            st = need_number(o, "ms", path, where, 0, &ms[i], err);
        if (st)
            return st;
        tps[i] = (int)tp;
    }
    for (size_t i = 0; i < count; i++) {
        bool seen = false;
        for (int s = 0; s < p->n_shards; s++)
            seen |= p->shards[s].tp == tps[i];
        if (seen)
            continue;
        if (p->n_shards == SCALE_MAX_TP)
            return augur_fail(err, AUGUR_E_INPUT, "%s: \"target\" names more than %d tp sizes", path, SCALE_MAX_TP);
        double x[SCALE_MAX_POINTS], y[SCALE_MAX_POINTS];
        int k = 0;
        for (size_t j = 0; j < count; j++)
            if (tps[j] == tps[i])
                x[k] = n[j] - 1, y[k++] = ms[j];
        scale_shard *sh = &p->shards[p->n_shards++];
        sh->tp = tps[i];
        bool spread = false;
        for (int j = 1; j < k; j++)
            spread |= x[j] != x[0];
        if (!spread)
            return augur_fail(err, AUGUR_E_INPUT,
                              "%s: \"target\" has one positions value for tp %d: give two (e.g. 1 and 6) to fit "
                              "t(n) = t1 + slope (n - 1)",
                              path, tps[i]);
        fit_line(x, y, k, &sh->t1_ms, &sh->slope_ms);
        if (sh->slope_ms < 0)
            sh->slope_ms = 0; /* noise between two near-equal widths: a forward never gets cheaper */
    }
    return AUGUR_OK;
}

augur_status scale_profile_load(scale_profile *p, const char *path, augur_error *err)
{
    memset(p, 0, sizeof *p);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        return augur_fail(err, AUGUR_E_INPUT, "%s: line %d: %s", path, jerr.line, jerr.text);
    augur_status st = json_is_object(root) ? AUGUR_OK
                                           : augur_fail(err, AUGUR_E_INPUT, "%s: not a JSON object", path);
    json_t *name = json_object_get(root, "name");
    snprintf(p->name, sizeof p->name, "%s", json_is_string(name) ? json_string_value(name) : path);
    double draft = 0, alpha = -1;
    if (!st)
        st = need_int(root, "layers", path, 1, &p->layers, err);
    if (!st)
        st = need_int(root, "hidden", path, 1, &p->hidden, err);
    if (!st)
        st = need_int(root, "allreduce_element_bytes", path, 1, &p->elem_bytes, err);
    if (!st)
        st = need_int(root, "gpus_per_node", path, 1, &p->gpus_per_node, err);
    json_t *d = json_object_get(root, "draft");
    if (!st && !json_is_object(d))
        st = augur_fail(err, AUGUR_E_INPUT, "%s: \"draft\" must be an object {ms, source}", path);
    if (!st)
        st = need_number(d, "ms", path, "draft", 0, &draft, err);
    json_t *links = json_object_get(root, "links");
    if (!st && !json_is_object(links))
        st = augur_fail(err, AUGUR_E_INPUT, "%s: \"links\" must be an object {intra, inter}", path);
    if (!st)
        st = load_link(links, "intra", path, &p->intra, err);
    if (!st)
        st = load_link(links, "inter", path, &p->inter, err);
    if (!st)
        st = load_shards(json_object_get(root, "target"), path, p, err);
    json_t *a = json_object_get(root, "alpha_measured");
    if (!st && a && !json_is_null(a)) {
        st = need_number(a, "value", path, "alpha_measured", 0, &alpha, err);
        if (!st && alpha > 1)
            st = augur_fail(err, AUGUR_E_INPUT, "%s: alpha_measured: \"value\" is %g, above 1", path, alpha);
    }
    p->draft_ms = draft;
    p->alpha_measured = alpha;
    json_decref(root);
    return st;
}

augur_status scale_target_ms(const scale_profile *p, int tp, double n, double *ms, bool *extrapolated,
                             augur_error *err)
{
    for (int s = 0; s < p->n_shards; s++) {
        if (p->shards[s].tp == tp) {
            *ms = p->shards[s].t1_ms + p->shards[s].slope_ms * (n - 1);
            *extrapolated = false;
            return AUGUR_OK;
        }
    }
    if (p->n_shards < 2)
        return augur_fail(err, AUGUR_E_INPUT,
                          "%s: no target times for tp %d, and one tp size is too few to fit t(T) = a + b/T", p->name,
                          tp);
    double inv[SCALE_MAX_TP], t1[SCALE_MAX_TP], slope[SCALE_MAX_TP], a1, b1, a2, b2;
    for (int s = 0; s < p->n_shards; s++) {
        inv[s] = 1.0 / p->shards[s].tp;
        t1[s] = p->shards[s].t1_ms;
        slope[s] = p->shards[s].slope_ms;
    }
    fit_line(inv, t1, p->n_shards, &a1, &b1);
    fit_line(inv, slope, p->n_shards, &a2, &b2);
    double t = a1 + b1 / tp, s = a2 + b2 / tp;
    *ms = t + (s > 0 ? s : 0) * (n - 1);
    *extrapolated = true;
    return AUGUR_OK;
}

double scale_tokens_per_round(double alpha, double gamma)
{
    if (alpha >= 1.0)
        return gamma + 1.0;
    return (1.0 - pow(alpha, gamma + 1.0)) / (1.0 - alpha);
}

double scale_alpha_from_tokens(double tokens_per_round, double gamma)
{
    if (tokens_per_round <= 1.0 || gamma <= 0)
        return 0.0;
    if (tokens_per_round >= gamma + 1.0)
        return 1.0;
    double lo = 0.0, hi = 1.0; /* E is increasing in a */
    for (int i = 0; i < 60; i++) {
        double mid = 0.5 * (lo + hi);
        if (scale_tokens_per_round(mid, gamma) < tokens_per_round)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

double scale_allreduce_ms(const scale_link *l, int tp, double bytes)
{
    if (tp < 2)
        return 0.0;
    double ms = l->latency_us / 1e3;
    if (l->bandwidth_gbps > 0)
        ms += 2.0 * (tp - 1) / tp * bytes / (l->bandwidth_gbps * 1e9) * 1e3;
    return ms;
}

augur_status scale_predict(const scale_profile *p, const scale_link *link, int tp, double gamma, double alpha,
                           scale_round *out, augur_error *err)
{
    memset(out, 0, sizeof *out);
    augur_status st = scale_target_ms(p, tp, gamma + 1.0, &out->target_ms, &out->extrapolated, err);
    if (st)
        return st;
    double rows = gamma + 1.0;
    out->draft_ms = gamma * p->draft_ms;
    out->allreduce_ms = 2.0 * p->layers * scale_allreduce_ms(link, tp, rows * p->hidden * p->elem_bytes);
    /* A proposal and a verdict cross the draft-leader link each round; target-only decoding
     * still broadcasts each step's token to the other target ranks. */
    out->msg_ms = (gamma > 0 ? 2.0 : tp > 1 ? 1.0 : 0.0) * link->latency_us / 1e3;
    out->round_ms = out->draft_ms + out->target_ms + out->allreduce_ms + out->msg_ms;
    out->tokens_per_round = gamma > 0 ? scale_tokens_per_round(alpha, gamma) : 1.0;
    out->ms_per_token = out->round_ms / out->tokens_per_round;
    out->tokens_per_s = out->round_ms > 0 ? 1e3 * out->tokens_per_round / out->round_ms : 0.0;
    return AUGUR_OK;
}

void scale_fit_link(const double *calls, const double *bytes, const double *ms, int n, scale_link *out,
                    bool *bw_resolved)
{
    /* Normal equations of ms = lat * calls + inv_bw * bytes (no intercept). */
    double cc = 0, cb = 0, bb = 0, cm = 0, bm = 0, sc = 0, sm = 0;
    for (int i = 0; i < n; i++) {
        cc += calls[i] * calls[i], cb += calls[i] * bytes[i], bb += bytes[i] * bytes[i];
        cm += calls[i] * ms[i], bm += bytes[i] * ms[i], sc += calls[i], sm += ms[i];
    }
    double d = cc * bb - cb * cb;
    *bw_resolved = false;
    /* Relative determinant: near 0 when bytes per call is the same in every run. */
    if (n >= 2 && d > 1e-6 * cc * bb) {
        double lat = (cm * bb - bm * cb) / d, inv_bw = (cc * bm - cb * cm) / d;
        if (lat > 0 && inv_bw > 0) {
            out->latency_us = lat * 1e3;
            out->bandwidth_gbps = 1.0 / inv_bw / 1e6; /* bytes per ms -> GB/s */
            *bw_resolved = true;
            return;
        }
    }
    out->latency_us = sc > 0 ? 1e3 * sm / sc : 0.0;
    out->bandwidth_gbps = 0.0;
}
