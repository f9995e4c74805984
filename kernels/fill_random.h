/* The counter-based generator behind backend_fill_random (kernels/backend.h), shared by
 * the CPU backend, the CUDA kernel (kernels/cuda/cuda_fill.cu) and the tests, so that
 * every backend writes the same bits for the same seed.
 *
 * Element i of a fill with seed s is a function of (s, i) alone: the splitmix64
 * finaliser of s + (i + 1) * golden, i.e. the i-th output of a splitmix64 stream
 * started at s. Being additive in i lets a caller fill a slice that starts at element
 * i0 of a larger tensor with augur_fill_seed_at(s, i0) and get exactly that slice of the
 * whole, which is how model_load_dummy keeps a rank's shard equal to the corresponding
 * slice of the unsharded tensor.
 *
 * Plain C and CUDA C++ (the functions are __host__ __device__ under nvcc). */
#ifndef AUGUR_FILL_RANDOM_H
#define AUGUR_FILL_RANDOM_H

#include <stdint.h>

#ifdef __CUDACC__
#define AUGUR_FILL_FN static inline __host__ __device__
#else
#define AUGUR_FILL_FN static inline
#endif

#define AUGUR_FILL_GOLDEN 0x9e3779b97f4a7c15ull

AUGUR_FILL_FN uint64_t augur_fill_bits(uint64_t seed, uint64_t i)
{
    uint64_t z = seed + (i + 1) * AUGUR_FILL_GOLDEN;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The seed whose element j is element i0 + j of seed's fill (wrapping arithmetic). */
AUGUR_FILL_FN uint64_t augur_fill_seed_at(uint64_t seed, uint64_t i0)
{
    return seed + i0 * AUGUR_FILL_GOLDEN;
}

/* offset + scale * u with u = k / 2^23 - 1, k the top 24 bits: uniform in [-1, 1) on a
 * grid of 2^-23. It is formed in double, where scale * u (24 x 24 significant bits) is
 * exact, so a compiler fusing the product into an FMA changes nothing; the sum and the
 * conversion to float round to nearest even on host and device alike, so both give the
 * same bits. */
AUGUR_FILL_FN float augur_fill_value(uint64_t seed, uint64_t i, float scale, float offset)
{
    const double u = (double)(int64_t)(augur_fill_bits(seed, i) >> 40) * (1.0 / 8388608.0) - 1.0;
    return (float)((double)offset + (double)scale * u);
}

#undef AUGUR_FILL_FN

#endif
