/* Draft-length rules: how many tokens the draft proposes in a round.
 *
 * fixed γ; the Hugging Face heuristic (+2 after a fully accepted round, −1 otherwise,
 * never below 1, and here never above γ, where it starts: γ caps every rule, which
 * bounds the verification width); and the thesis's entropy rules (DESIGN §2), which stop drafting after
 * the token whose draft entropy H_t (nats) fires the rule, keeping that token:
 *   static:          H_t >= τ
 *   moving average:  H_t² >= λ · mean(H²) over the last min(n, available) past entropies
 *                    of this round (needs at least one past entropy)
 *   cumulative:      H_t² + Σ of up to n past H² of this round >= τ
 * Entropy rules draft at most num_k tokens a round (the gamma field). */
#ifndef AUGUR_DRAFT_RULES_H
#define AUGUR_DRAFT_RULES_H

#include <stdbool.h>

#include "base/error.h"

typedef enum {
    DRAFT_RULE_FIXED = 0,
    DRAFT_RULE_HEURISTIC,
    DRAFT_RULE_STATIC,
    DRAFT_RULE_MOVING_AVERAGE,
    DRAFT_RULE_CUMULATIVE,
} draft_rule_kind;

#define DRAFT_RULE_MAX_GAMMA 64

typedef struct {
    draft_rule_kind kind;
    int gamma;               /* fixed γ; start and cap (heuristic); num_k (entropy rules) */
    float tau;               /* static, cumulative */
    float lambda;            /* moving average */
    int window;              /* n: past entropies considered (moving average, cumulative) */
} draft_rule;

typedef struct {
    draft_rule rule;
    int heuristic_gamma;     /* current γ of the heuristic */
    float past_sq[DRAFT_RULE_MAX_GAMMA]; /* squared entropies of this round */
    int n_past;
} draft_rule_state;

/* Parses a rule name: fixed, heuristic, static, moving-average, cumulative. */
augur_status draft_rule_kind_parse(const char *name, draft_rule_kind *kind, augur_error *err);
const char *draft_rule_kind_name(draft_rule_kind kind);
/* Checks parameters (γ in 1..64, τ > 0, λ > 0, n >= 1 where used). */
augur_status draft_rule_validate(const draft_rule *rule, augur_error *err);
/* One-line description such as "cumulative(tau=12, n=3, num_k=8)". */
void draft_rule_describe(const draft_rule *rule, char *out, int cap);

void draft_rule_init(draft_rule_state *s, const draft_rule *rule);
/* Whether draft_rule_stop_after reads its entropy argument (the entropy rules): the
 * others may pass 0 and spare the draft a softmax over the vocabulary per token. */
bool draft_rule_uses_entropy(const draft_rule *rule);
/* Starts a round; returns the most tokens this round may propose. */
int draft_rule_begin_round(draft_rule_state *s);
/* Called after each drafted token with its entropy: true when drafting stops here
 * (the token is kept). Length limits are the caller's (begin_round's value). */
bool draft_rule_stop_after(draft_rule_state *s, float entropy);
/* Feeds back a verdict: accepted of proposed tokens (the heuristic adapts). */
void draft_rule_end_round(draft_rule_state *s, int accepted, int proposed);

#endif
