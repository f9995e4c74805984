/* Logits -> processed next-token distributions on the host: argmax, softmax at a
 * temperature with top-k and top-p, entropy. Pure functions of their inputs, so every
 * rank that runs them on the same logits agrees; the CUDA backend mirrors them
 * (kernels/cuda/cuda_logits.cu). */
#include "kernels/probs.h"

#include <math.h>
#include <string.h>

int argmax_f32(const float *x, int n)
{
    int best = 0;
    float bv = -INFINITY;
    /* Strict > makes the lowest index win ties and never selects a NaN. */
    for (int i = 0; i < n; i++)
        if (x[i] > bv) {
            bv = x[i];
            best = i;
        }
    return best;
}

static void one_hot(float *probs, int n, int idx)
{
    memset(probs, 0, (size_t)n * sizeof(float));
    probs[idx] = 1.0f;
}

/* The total order of the processed distribution: higher probability first, then lower id. */
static bool ranks_before(const float *p, int a, int b)
{
    return p[a] > p[b] || (p[a] == p[b] && a < b);
}

static void swap_ids(int *ids, int i, int j)
{
    int t = ids[i];
    ids[i] = ids[j];
    ids[j] = t;
}

static void sift_down(int *ids, int root, int len, const float *p)
{
    for (;;) {
        int child = 2 * root + 1;
        if (child >= len)
            return;
        /* Max-heap of the worst-ranked element, so popping yields best-first order. */
        if (child + 1 < len && ranks_before(p, ids[child], ids[child + 1]))
            child++;
        if (!ranks_before(p, ids[root], ids[child]))
            return;
        swap_ids(ids, root, child);
        root = child;
    }
}

/* Sorts ids best-first. Heapsort: O(m log m) worst case, no recursion, no allocation. */
static void sort_ids(int *ids, int m, const float *p)
{
    for (int i = m / 2 - 1; i >= 0; i--)
        sift_down(ids, i, m, p);
    for (int end = m - 1; end > 0; end--) {
        swap_ids(ids, 0, end);
        sift_down(ids, 0, end, p);
    }
}

/* Permutes ids so that ids[0..k) are the k best-ranked (in no particular order):
 * quickselect, O(m) expected, falling back to a full sort if partitions degenerate. */
static void select_top(int *ids, int m, int k, const float *p)
{
    int lo = 0, hi = m;
    int depth = 64;
    while (hi - lo > 16) {
        if (depth-- == 0) {
            sort_ids(ids + lo, hi - lo, p);
            return;
        }
        /* Median of three as the pivot, parked at hi-1. */
        int mid = lo + (hi - lo) / 2;
        if (ranks_before(p, ids[mid], ids[lo]))
            swap_ids(ids, mid, lo);
        if (ranks_before(p, ids[hi - 1], ids[lo]))
            swap_ids(ids, hi - 1, lo);
        if (ranks_before(p, ids[mid], ids[hi - 1]))
            swap_ids(ids, mid, hi - 1);
        const int pivot = ids[hi - 1];
        int store = lo;
        for (int i = lo; i < hi - 1; i++)
            if (ranks_before(p, ids[i], pivot))
                swap_ids(ids, i, store++);
        swap_ids(ids, store, hi - 1);
        if (k <= store)
            hi = store;
        else if (k == store + 1)
            return;
        else
            lo = store + 1;
    }
    /* Insertion sort of the last small range settles the boundary. */
    for (int i = lo + 1; i < hi; i++)
        for (int j = i; j > lo && ranks_before(p, ids[j], ids[j - 1]); j--)
            swap_ids(ids, j, j - 1);
}

/* Returns how many of the best-ranked ids (left sorted at the front) form the smallest
 * prefix with mass >= top_p * total. Sorting grows geometrically from a small head so
 * that the usual peaked distribution costs O(m), not O(m log m). */
static int top_p_prefix(int *ids, int m, const float *p, double target, double *kept_mass)
{
    double cum = 0.0;
    int sorted = 0;
    int head = m < 256 ? m : 256;
    for (;;) {
        select_top(ids + sorted, m - sorted, head - sorted, p);
        sort_ids(ids + sorted, head - sorted, p);
        for (; sorted < head; sorted++) {
            cum += p[ids[sorted]];
            if (cum >= target) {
                *kept_mass = cum;
                return sorted + 1;
            }
        }
        if (head == m) {
            *kept_mass = cum;
            return m;
        }
        head = m - head < 3 * head ? m : 4 * head;
    }
}

void sampling_probs(const sampling_params *sp, const float *logits, int n, float *probs, int *scratch)
{
    if (n <= 0)
        return;
    if (sampling_is_greedy(sp)) {
        one_hot(probs, n, argmax_f32(logits, n));
        return;
    }
    const int amax = argmax_f32(logits, n);
    const float lmax = logits[amax];
    if (!isfinite(lmax)) { /* all -inf / NaN, or a +inf logit: nothing to soften */
        one_hot(probs, n, amax);
        return;
    }
    /* (l - max) / T rather than l / T - max / T: the shift cannot overflow for tiny T. */
    const float t = sp->temperature;
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        float e = expf((logits[i] - lmax) / t);
        probs[i] = e == e ? e : 0.0f; /* NaN logits get no mass */
        total += probs[i];
    }
    for (int i = 0; i < n; i++)
        probs[i] = (float)(probs[i] / total);

    const bool use_k = sp->top_k > 0 && sp->top_k < n;
    const bool use_p = sp->top_p < 1.0f;
    if (!use_k && !use_p)
        return;

    for (int i = 0; i < n; i++)
        scratch[i] = i;
    int kept = n;
    if (use_k) {
        kept = sp->top_k;
        select_top(scratch, n, kept, probs);
    }
    double kept_mass = 0.0;
    if (use_p) {
        double mass = 0.0;
        for (int j = 0; j < kept; j++)
            mass += probs[scratch[j]];
        /* top_p is relative to the distribution left after top_k, as when the filters
         * are applied to logits in sequence. */
        kept = top_p_prefix(scratch, kept, probs, (double)sp->top_p * mass, &kept_mass);
    } else {
        for (int j = 0; j < kept; j++)
            kept_mass += probs[scratch[j]];
    }
    for (int j = kept; j < n; j++)
        probs[scratch[j]] = 0.0f;
    if (!(kept_mass > 0.0)) { /* only zero-probability tokens survived: fall back to the best */
        one_hot(probs, n, scratch[0]);
        return;
    }
    for (int j = 0; j < kept; j++)
        probs[scratch[j]] = (float)(probs[scratch[j]] / kept_mass);
}

float entropy_nats(const float *probs, int n)
{
    double h = 0.0;
    for (int i = 0; i < n; i++)
        if (probs[i] > 0.0f)
            h -= (double)probs[i] * log((double)probs[i]);
    return (float)h;
}
