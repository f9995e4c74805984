#include "runtime/spec/draft_rules.h"

#include <stdio.h>
#include <string.h>

static const char *const rule_names[] = {"fixed", "heuristic", "static", "moving-average", "cumulative"};

augur_status draft_rule_kind_parse(const char *name, draft_rule_kind *kind, augur_error *err)
{
    for (int i = 0; i < (int)(sizeof rule_names / sizeof rule_names[0]); i++) {
        if (!strcmp(name, rule_names[i])) {
            *kind = (draft_rule_kind)i;
            return AUGUR_OK;
        }
    }
    return augur_fail(err, AUGUR_E_INPUT,
                      "--draft-rule: '%s' is not a rule (fixed, heuristic, static, moving-average, cumulative)", name);
}

const char *draft_rule_kind_name(draft_rule_kind kind)
{
    return (unsigned)kind < sizeof rule_names / sizeof rule_names[0] ? rule_names[kind] : "?";
}

augur_status draft_rule_validate(const draft_rule *r, augur_error *err)
{
    if (r->gamma < 1 || r->gamma > DRAFT_RULE_MAX_GAMMA)
        return augur_fail(err, AUGUR_E_INPUT, "--gamma: %d is outside 1..%d", r->gamma, DRAFT_RULE_MAX_GAMMA);
    if ((r->kind == DRAFT_RULE_STATIC || r->kind == DRAFT_RULE_CUMULATIVE) && !(r->tau > 0))
        return augur_fail(err, AUGUR_E_INPUT, "--tau must be > 0 for the %s rule", draft_rule_kind_name(r->kind));
    if (r->kind == DRAFT_RULE_MOVING_AVERAGE && !(r->lambda > 0))
        return augur_fail(err, AUGUR_E_INPUT, "--lambda must be > 0 for the moving-average rule");
    if ((r->kind == DRAFT_RULE_MOVING_AVERAGE || r->kind == DRAFT_RULE_CUMULATIVE) && r->window < 1)
        return augur_fail(err, AUGUR_E_INPUT, "--window must be >= 1 for the %s rule",
                          draft_rule_kind_name(r->kind));
    return AUGUR_OK;
}

void draft_rule_describe(const draft_rule *r, char *out, int cap)
{
    switch (r->kind) {
    case DRAFT_RULE_FIXED: snprintf(out, (size_t)cap, "fixed(gamma=%d)", r->gamma); break;
    case DRAFT_RULE_HEURISTIC: snprintf(out, (size_t)cap, "heuristic(+2/-1, from and at most gamma=%d)", r->gamma); break;
    case DRAFT_RULE_STATIC: snprintf(out, (size_t)cap, "static(tau=%g, num_k=%d)", r->tau, r->gamma); break;
    case DRAFT_RULE_MOVING_AVERAGE:
        snprintf(out, (size_t)cap, "moving-average(lambda=%g, n=%d, num_k=%d)", r->lambda, r->window, r->gamma);
        break;
    case DRAFT_RULE_CUMULATIVE:
        snprintf(out, (size_t)cap, "cumulative(tau=%g, n=%d, num_k=%d)", r->tau, r->window, r->gamma);
        break;
    }
}

bool draft_rule_uses_entropy(const draft_rule *rule)
{
    return rule->kind == DRAFT_RULE_STATIC || rule->kind == DRAFT_RULE_MOVING_AVERAGE ||
           rule->kind == DRAFT_RULE_CUMULATIVE;
}

void draft_rule_init(draft_rule_state *s, const draft_rule *rule)
{
    memset(s, 0, sizeof *s);
    s->rule = *rule;
    s->heuristic_gamma = rule->gamma;
}

int draft_rule_begin_round(draft_rule_state *s)
{
    s->n_past = 0;
    return s->rule.kind == DRAFT_RULE_HEURISTIC ? s->heuristic_gamma : s->rule.gamma;
}

bool draft_rule_stop_after(draft_rule_state *s, float entropy)
{
    const draft_rule *r = &s->rule;
    float h2 = entropy * entropy;
    bool stop = false;
    switch (r->kind) {
    case DRAFT_RULE_FIXED:
    case DRAFT_RULE_HEURISTIC:
        break;
    case DRAFT_RULE_STATIC:
        stop = entropy >= r->tau;
        break;
    case DRAFT_RULE_MOVING_AVERAGE: {
        int k = s->n_past < r->window ? s->n_past : r->window;
        if (k > 0) {
            float sum = 0;
            for (int i = s->n_past - k; i < s->n_past; i++)
                sum += s->past_sq[i];
            stop = h2 >= r->lambda * (sum / (float)k);
        }
        break;
    }
    case DRAFT_RULE_CUMULATIVE: {
        int k = s->n_past < r->window ? s->n_past : r->window;
        float sum = h2;
        for (int i = s->n_past - k; i < s->n_past; i++)
            sum += s->past_sq[i];
        stop = sum >= r->tau;
        break;
    }
    }
    if (s->n_past < DRAFT_RULE_MAX_GAMMA)
        s->past_sq[s->n_past++] = h2;
    return stop;
}

void draft_rule_end_round(draft_rule_state *s, int accepted, int proposed)
{
    if (s->rule.kind != DRAFT_RULE_HEURISTIC)
        return;
    if (accepted >= proposed)
        s->heuristic_gamma += 2;
    else
        s->heuristic_gamma -= 1;
    if (s->heuristic_gamma < 1)
        s->heuristic_gamma = 1;
    if (s->heuristic_gamma > s->rule.gamma) /* --gamma caps every rule */
        s->heuristic_gamma = s->rule.gamma;
}
