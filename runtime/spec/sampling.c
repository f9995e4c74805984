/* Seeded draws: the RNG and drawing a token from a processed distribution. Every draw
 * is a pure function of the RNG state handed in, so draft and target runs on every
 * rank agree. */
#include "runtime/spec/sampling.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rng_seed(augur_rng *rng, uint64_t seed)
{
    /* splitmix64 never yields four zero words, the one state xoshiro cannot leave. */
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&x);
}

void rng_seed_at(augur_rng *rng, uint64_t seed, uint64_t stream, uint64_t request, uint64_t position)
{
    /* Each field passes through splitmix64 before the next is mixed in, so nearby
     * (request, position) pairs give unrelated states. */
    uint64_t x = seed ^ stream;
    uint64_t h = splitmix64(&x);
    x = h ^ request;
    h = splitmix64(&x);
    x = h ^ position;
    rng_seed(rng, splitmix64(&x));
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t rng_next(augur_rng *rng)
{
    uint64_t *s = rng->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform(augur_rng *rng)
{
    return (double)(rng_next(rng) >> 11) * 0x1.0p-53;
}

int sample_from_probs(const float *probs, int n, augur_rng *rng)
{
    const double u = rng_uniform(rng);
    double cum = 0.0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (probs[i] > 0.0f) {
            cum += probs[i];
            last = i;
            if (u < cum)
                return i;
        }
    }
    return last;
}
