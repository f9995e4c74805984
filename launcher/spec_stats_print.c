/* The final stats lines of a distributed run (spec_stats_print.h). */
#include "launcher/spec_stats_print.h"

#include <stdio.h>

#include "launcher/args.h"

void spec_stats_add(spec_stats *sum, const spec_stats *s)
{
    sum->rounds += s->rounds;
    sum->proposed += s->proposed;
    sum->accepted += s->accepted;
    sum->generated += s->generated;
    sum->total_ms += s->total_ms;
    sum->prefill_ms += s->prefill_ms;
    sum->draft_wait_ms += s->draft_wait_ms;
    sum->draft_compute_ms += s->draft_compute_ms;
    sum->draft_hidden_ms += s->draft_hidden_ms;
    sum->verify_ms += s->verify_ms;
    sum->comm_ms += s->comm_ms;
    sum->sample_ms += s->sample_ms;
}

double spec_stats_tok_per_s(const spec_stats *s)
{
    double decode_ms = s->total_ms - s->prefill_ms;
    return decode_ms > 0 ? s->generated / (decode_ms / 1e3) : 0.0;
}

void spec_stats_print(const char *label, const spec_stats *s, int requests)
{
    fprintf(stderr, "augur: %s: %d request%s, %d token%s in %.1f ms (prefill %.1f ms), %.1f tok/s\n", label,
            requests, plural(requests), s->generated, plural(s->generated), s->total_ms, s->prefill_ms,
            spec_stats_tok_per_s(s));
    if (s->proposed > 0) {
        fprintf(stderr,
                "augur: %s: %d round%s, %.2f tokens/round, acceptance %.3f (%d of %d proposed)\n"
                "augur: %s: time: draft wait %.1f ms (drafting %.1f ms after verdicts, %.1f ms hidden by overlap), "
                "verify %.1f ms, comm %.1f ms, sample %.1f ms\n",
                label, s->rounds, plural(s->rounds), s->rounds ? (double)s->generated / s->rounds : 0.0,
                (double)s->accepted / s->proposed, s->accepted, s->proposed, label, s->draft_wait_ms,
                s->draft_compute_ms, s->draft_hidden_ms, s->verify_ms, s->comm_ms, s->sample_ms);
    } else {
        fprintf(stderr, "augur: %s: %d round%s, time: verify %.1f ms, comm %.1f ms, sample %.1f ms\n", label,
                s->rounds, plural(s->rounds), s->verify_ms, s->comm_ms, s->sample_ms);
    }
}

