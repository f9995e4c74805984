/* Matrix-vector(s) product over fp32/fp16/bf16 weights: the hot loop of decoding.
 *
 * Batch invariance (DESIGN §8): every dot product accumulates into 16 partial sums,
 * lane j taking the columns c with c % 16 == j in increasing c, and the lanes are folded
 * by one fixed tree. The number of rows n only decides which kernel streams the weights
 * (several features against one row at n = 1; several rows sharing each weight load
 * otherwise) and in what column steps, never the arithmetic applied to one (row, feature),
 * so out[i] is bit-identical for every n and thread count. Mul and add stay separate
 * roundings (ISO C mode compiles with -ffp-contract=off and no path enables FMA), and
 * weight conversion is exact, so the SSE, AVX2 and AVX-512 paths also agree bit for bit.
 *
 * Weights are widened in registers (bf16: a 16-bit shift; fp16: F16C) as they stream past;
 * only the baseline path converts fp16 through a small L1-resident buffer. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu_kernels.h"

/* The AVX2 / AVX-512 paths exist on x86-64 only; elsewhere the portable path serves. */
#if defined(__x86_64__)
#include <immintrin.h>
#define HAVE_X86_PATHS 1
#else
#define HAVE_X86_PATHS 0
#endif

/* GNU vector extensions: lane-wise IEEE operations. 16-byte vectors are native on every
 * x86-64; 32- and 64-byte ones appear only in functions compiled for AVX2 / AVX-512, since
 * elsewhere GCC lowers them through the stack. Vectors never cross a call by value. */
typedef float v4f __attribute__((vector_size(16)));
typedef uint32_t v4u __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef uint16_t v4h __attribute__((vector_size(8)));
typedef float v8f __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef uint16_t v8h __attribute__((vector_size(16)));
typedef float v16f __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef uint16_t v16h __attribute__((vector_size(32)));

#define LANES 16
/* Columns per step: a step's slice of x (up to ROW_BLOCK rows) and of the weights stays in
 * cache while several features reuse it; accumulators persist across steps. The baseline
 * fp16 path converts one step of weights into a 2 KB buffer. */
#define CHUNK 512
/* Output features that share each CHUNK-column slice of x while it sits in L1. */
#define FEATURE_GROUP 4
/* Rows of x per pass over W. Beyond it (prefill) W is streamed again for the next block,
 * which keeps the block of x cache-resident instead of re-reading all of x per feature. */
#define ROW_BLOCK 32

#define INLINE static inline __attribute__((always_inline))
#define LOADU(dst, p) memcpy(&(dst), (p), sizeof(dst))
#define STOREU(p, src) memcpy((p), &(src), sizeof(src))

/* The weight encodings a kernel instance is specialised for. */
typedef enum { WK_F32, WK_BF16, WK_F16 } weight_kind;

static void convert_bf16(float *out, const uint16_t *in, int64_t count)
{
    int64_t c = 0;
    for (; c + 4 <= count; c += 4) {
        v4h h;
        LOADU(h, in + c);
        v4u u = __builtin_convertvector(h, v4u) << 16;
        STOREU(out + c, u);
    }
    for (; c < count; c++)
        out[c] = augur_bf16_to_f32(in[c]);
}

/* Bit-identical to the F16C instruction (and so to augur_f16_to_f32, except that a
 * signalling NaN comes out quiet, as F16C makes it), branch-free so that it vectorises.
 * Subnormals go through an exact int->float conversion rather than an fp32 denormal
 * multiply, which would be slow and flushed to zero under DAZ. Comparisons are signed
 * because SSE has no unsigned 32-bit compare (the values are below 2^15 anyway). */
static void convert_f16(float *out, const uint16_t *in, int64_t count)
{
    int64_t c = 0;
    for (; c + 4 <= count; c += 4) {
        v4h h16;
        LOADU(h16, in + c);
        v4i h = __builtin_convertvector(h16, v4i);
        v4i sign = (h & 0x8000) << 16;
        v4i em = h & 0x7fff;
        v4i normal = (em << 13) + ((127 - 15) << 23);
        v4f sub_f = __builtin_convertvector(em, v4f) * 0x1p-24f;
        v4i sub = (v4i)sub_f;
        v4i special = (em << 13) | 0x7f800000 | ((em > 0x7c00) & 0x400000);
        v4i is_sub = em < 0x400;
        v4i is_special = em >= 0x7c00;
        v4i r = (normal & ~is_sub & ~is_special) | (sub & is_sub) | (special & is_special);
        r |= sign;
        STOREU(out + c, r);
    }
    for (; c < count; c++) {
        uint32_t u;
        float f = augur_f16_to_f32(in[c]);
        memcpy(&u, &f, sizeof u);
        if ((u & 0x7fffffffu) > 0x7f800000u)
            u |= 0x400000u;
        memcpy(&out[c], &u, sizeof u);
    }
}

void cpu_convert_f32(float *out, const void *src, augur_dtype dtype, int64_t count)
{
    switch (dtype) {
    case AUGUR_F32: memcpy(out, src, (size_t)count * sizeof(float)); break;
    case AUGUR_BF16: convert_bf16(out, src, count); break;
    case AUGUR_F16: convert_f16(out, src, count); break;
    }
}

/* Weight loads: the 16 columns c .. c+15 of one weight row as fp32 vectors, widened in
 * registers (bf16: a 16-bit shift, exact; fp16: F16C, exact). */
INLINE void load_w4(v4f wv[4], const void *w, weight_kind kind, int64_t c)
{
    for (int k = 0; k < 4; k++) {
        if (kind == WK_BF16) {
            v4h h;
            LOADU(h, (const uint16_t *)w + c + 4 * k);
            wv[k] = (v4f)(__builtin_convertvector(h, v4u) << 16);
        } else { /* the baseline path hands fp16 over pre-converted */
            LOADU(wv[k], (const float *)w + c + 4 * k);
        }
    }
}

#if HAVE_X86_PATHS
__attribute__((target("avx2,f16c"))) INLINE void load_w8(v8f wv[2], const void *w, weight_kind kind, int64_t c)
{
    for (int k = 0; k < 2; k++) {
        if (kind == WK_BF16) {
            v8h h;
            LOADU(h, (const uint16_t *)w + c + 8 * k);
            wv[k] = (v8f)(__builtin_convertvector(h, v8u) << 16);
        } else if (kind == WK_F16) {
            __m128i h;
            LOADU(h, (const uint16_t *)w + c + 8 * k);
            wv[k] = (v8f)_mm256_cvtph_ps(h);
        } else {
            LOADU(wv[k], (const float *)w + c + 8 * k);
        }
    }
}

__attribute__((target("avx512f"))) INLINE void load_w16(v16f *wv, const void *w, weight_kind kind, int64_t c)
{
    if (kind == WK_BF16) {
        v16h h;
        LOADU(h, (const uint16_t *)w + c);
        *wv = (v16f)(__builtin_convertvector(h, v16u) << 16);
    } else if (kind == WK_F16) {
        __m256i h;
        LOADU(h, (const uint16_t *)w + c);
        *wv = (v16f)_mm512_cvtph_ps(h);
    } else {
        LOADU(*wv, (const float *)w + c);
    }
}
#endif

/* Two kernel families, both computing acc[lane] += x[c] * w[c] for c = lane, lane+16, ...
 * over len columns (a multiple of 16), and always inlined with constant counts and kind so
 * that each instance keeps its accumulators in registers:
 *   rows_vN  - R rows of x (stride ldx) against one weight row: each weight vector is
 *              loaded and widened once per R rows (the verification shape);
 *   feats_vN - one row of x against F weight rows: F independent add chains, which a
 *              single dot product (one chain per register) lacks at n = 1.
 * acc is indexed [feature][row][lane].
 *
 * KERNELS defines both for one instruction set: ATTR its target attribute, N the floats
 * of its vector type V (LANES / N of them hold the 16 lanes), LOAD_W its weight load. Only
 * the vector width differs between instruction sets; each lane's arithmetic is the same.
 * MAXR_N / MAXF_N: the most rows / features one call takes, the register budget its
 * block function passes on. */
enum {
    MAXR_4 = 2, MAXF_4 = 2,  /* 16 SSE registers: 8 accumulators + 4 operands + scratch */
    MAXR_8 = 4, MAXF_8 = 4,  /* 16 AVX registers: 8 accumulators + 2-4 operands */
    MAXR_16 = 8, MAXF_16 = 4 /* 32 registers */
};

#define KERNELS(ATTR, N, V, LOAD_W)                                                                            \
    ATTR INLINE void rows_v##N(float (*acc)[LANES], const float *x, int64_t ldx, const void *w,                \
                               weight_kind kind, int64_t len, int R)                                           \
    {                                                                                                          \
        V a[MAXR_##N][LANES / N];                                                                              \
        for (int r = 0; r < R; r++)                                                                            \
            for (int k = 0; k < LANES / N; k++)                                                                \
                LOADU(a[r][k], acc[r] + N * k);                                                                \
        for (int64_t c = 0; c < len; c += LANES) {                                                             \
            V wv[LANES / N];                                                                                   \
            LOAD_W(wv, w, kind, c);                                                                            \
            for (int r = 0; r < R; r++)                                                                        \
                for (int k = 0; k < LANES / N; k++) {                                                          \
                    V xv;                                                                                      \
                    LOADU(xv, x + r * ldx + c + N * k);                                                        \
                    a[r][k] += xv * wv[k];                                                                     \
                }                                                                                              \
        }                                                                                                      \
        for (int r = 0; r < R; r++)                                                                            \
            for (int k = 0; k < LANES / N; k++)                                                                \
                STOREU(acc[r] + N * k, a[r][k]);                                                               \
    }                                                                                                          \
                                                                                                               \
    ATTR INLINE void feats_v##N(float (*acc)[ROW_BLOCK][LANES], const float *x, const void *const *w,          \
                                weight_kind kind, int64_t len, int F)                                          \
    {                                                                                                          \
        V a[MAXF_##N][LANES / N];                                                                              \
        for (int f = 0; f < F; f++)                                                                            \
            for (int k = 0; k < LANES / N; k++)                                                                \
                LOADU(a[f][k], acc[f][0] + N * k);                                                             \
        for (int64_t c = 0; c < len; c += LANES) {                                                             \
            V xv[LANES / N];                                                                                   \
            for (int k = 0; k < LANES / N; k++)                                                                \
                LOADU(xv[k], x + c + N * k);                                                                   \
            for (int f = 0; f < F; f++) {                                                                      \
                V wv[LANES / N];                                                                               \
                LOAD_W(wv, w[f], kind, c);                                                                     \
                for (int k = 0; k < LANES / N; k++)                                                            \
                    a[f][k] += xv[k] * wv[k];                                                                  \
            }                                                                                                  \
        }                                                                                                      \
        for (int f = 0; f < F; f++)                                                                            \
            for (int k = 0; k < LANES / N; k++)                                                                \
                STOREU(acc[f][0] + N * k, a[f][k]);                                                            \
    }

KERNELS(, 4, v4f, load_w4)
#if HAVE_X86_PATHS
KERNELS(__attribute__((target("avx2,f16c"))), 8, v8f, load_w8)
KERNELS(__attribute__((target("avx512f"))), 16, v16f, load_w16)
#endif
#undef KERNELS

/* Block functions: nb rows of x against len columns (a multiple of 16) of nf weight rows
 * (w[f], already offset to the first column), in as few passes as the registers allow.
 * One per instruction set; the caller's column steps, tail and fold are shared. */
typedef void block_fn(float (*acc)[ROW_BLOCK][LANES], const float *x, int64_t ldx, const void *const *w, int nf,
                      augur_dtype dtype, int64_t len, int nb);

/* Passes of MAXR_N rows (MAXF_N features at n = 1) through the kernels of width N, then
 * fewer. The count passed to a kernel stays within its register array even in the
 * branches a small MAX disables, which -O0 still compiles. */
#define PASSES(N, KIND, W, LEN, X)                                                                             \
    do {                                                                                                       \
        if (nb == 1) {                                                                                         \
            int f_ = 0;                                                                                        \
            if (MAXF_##N >= 4)                                                                                 \
                for (; f_ + 4 <= nf; f_ += 4)                                                                  \
                    feats_v##N(acc + f_, (X), (W) + f_, KIND, LEN, MAXF_##N >= 4 ? 4 : 1);                     \
            for (; f_ + 2 <= nf; f_ += 2)                                                                      \
                feats_v##N(acc + f_, (X), (W) + f_, KIND, LEN, 2);                                             \
            for (; f_ < nf; f_++)                                                                              \
                feats_v##N(acc + f_, (X), (W) + f_, KIND, LEN, 1);                                             \
            break;                                                                                             \
        }                                                                                                      \
        for (int f_ = 0; f_ < nf; f_++) {                                                                      \
            int i_ = 0;                                                                                        \
            if (MAXR_##N >= 8)                                                                                 \
                for (; i_ + 8 <= nb; i_ += 8)                                                                  \
                    rows_v##N(acc[f_] + i_, (X) + i_ * ldx, ldx, (W)[f_], KIND, LEN, MAXR_##N >= 8 ? 8 : 1);   \
            if (MAXR_##N >= 4)                                                                                 \
                for (; i_ + 4 <= nb; i_ += 4)                                                                  \
                    rows_v##N(acc[f_] + i_, (X) + i_ * ldx, ldx, (W)[f_], KIND, LEN, MAXR_##N >= 4 ? 4 : 1);   \
            for (; i_ + 2 <= nb; i_ += 2)                                                                      \
                rows_v##N(acc[f_] + i_, (X) + i_ * ldx, ldx, (W)[f_], KIND, LEN, 2);                           \
            for (; i_ < nb; i_++)                                                                              \
                rows_v##N(acc[f_] + i_, (X) + i_ * ldx, ldx, (W)[f_], KIND, LEN, 1);                           \
        }                                                                                                      \
    } while (0)

static void block_baseline(float (*acc)[ROW_BLOCK][LANES], const float *x, int64_t ldx, const void *const *w,
                           int nf, augur_dtype dtype, int64_t len, int nb)
{
    if (dtype == AUGUR_F32) {
        PASSES(4, WK_F32, w, len, x);
    } else if (dtype == AUGUR_BF16) {
        PASSES(4, WK_BF16, w, len, x);
    } else {
        /* No F16C here: convert a step of each row into an L1-resident buffer. */
        _Alignas(64) float wbuf[FEATURE_GROUP][CHUNK];
        const void *wb[FEATURE_GROUP];
        for (int64_t c0 = 0; c0 < len; c0 += CHUNK) {
            const int64_t part = len - c0 < CHUNK ? len - c0 : CHUNK;
            for (int f = 0; f < nf; f++) {
                convert_f16(wbuf[f], (const uint16_t *)w[f] + c0, part);
                wb[f] = wbuf[f];
            }
            PASSES(4, WK_F32, wb, part, x + c0);
        }
    }
}

#if HAVE_X86_PATHS
/* The block function of an instruction set whose weight loads widen every dtype in registers. */
#define WIDENING_BLOCK(ATTR, NAME, N)                                                                          \
    ATTR static void NAME(float (*acc)[ROW_BLOCK][LANES], const float *x, int64_t ldx, const void *const *w,   \
                          int nf, augur_dtype dtype, int64_t len, int nb)                                      \
    {                                                                                                          \
        if (dtype == AUGUR_F32)                                                                                \
            PASSES(N, WK_F32, w, len, x);                                                                      \
        else if (dtype == AUGUR_BF16)                                                                          \
            PASSES(N, WK_BF16, w, len, x);                                                                     \
        else                                                                                                   \
            PASSES(N, WK_F16, w, len, x);                                                                      \
    }

WIDENING_BLOCK(__attribute__((target("avx2,f16c"))), block_avx2, 8)
WIDENING_BLOCK(__attribute__((target("avx512f"))), block_avx512, 16)
#undef WIDENING_BLOCK
#endif
#undef PASSES

/* Output features [o0, o0+nf) for rows [i0, i0+nb) of x. With several rows, the features
 * of a group walk the columns together, CHUNK at a time, so that the slice of x they all
 * read stays in L1 instead of streaming from L2 once per feature. Each feature's lanes see
 * their columns in the same order whatever the steps and kernels, so none of this changes
 * a bit. */
static void matmul_group(block_fn *block, float *out, const float *x, int64_t n_out, int i0, int nb,
                         const tensor_view *w, int64_t o0, int nf, const float *bias)
{
    const int64_t cols = w->cols;
    const int64_t nfull = cols & ~(int64_t)(LANES - 1);
    const size_t esize = augur_dtype_size(w->dtype);
    const float *xb = x + (int64_t)i0 * cols;
    _Alignas(64) float acc[FEATURE_GROUP][ROW_BLOCK][LANES];
    const char *wrow[FEATURE_GROUP];
    const void *wc[FEATURE_GROUP];

    for (int f = 0; f < nf; f++) {
        wrow[f] = (const char *)w->data + (size_t)((o0 + f) * w->row_stride) * esize;
        memset(acc[f], 0, (size_t)nb * sizeof acc[f][0]);
    }
    /* One row of x sits in L1 whole: then one long pass streams W fastest. */
    const int64_t step = nb >= 2 ? CHUNK : nfull;
    for (int64_t c0 = 0; c0 < nfull; c0 += step) {
        const int64_t len = nfull - c0 < step ? nfull - c0 : step;
        for (int f = 0; f < nf; f++)
            wc[f] = wrow[f] + (size_t)c0 * esize;
        block(acc, xb + c0, cols, wc, nf, w->dtype, len, nb);
    }

    const int tail = (int)(cols - nfull);
    for (int f = 0; f < nf; f++) {
        float tail_w[LANES];
        cpu_convert_f32(tail_w, wrow[f] + (size_t)nfull * esize, w->dtype, tail);
        for (int i = 0; i < nb; i++) {
            float *s = acc[f][i];
            const float *xt = xb + i * cols + nfull;
            for (int j = 0; j < tail; j++)
                s[j] += xt[j] * tail_w[j];
            for (int half = LANES / 2; half >= 1; half /= 2)
                for (int j = 0; j < half; j++)
                    s[j] += s[j + half];
            float v = s[0];
            if (bias)
                v += bias[o0 + f];
            out[(int64_t)(i0 + i) * n_out + o0 + f] = v;
        }
    }
}

cpu_isa cpu_best_isa(void)
{
#if HAVE_X86_PATHS
    if (__builtin_cpu_supports("avx512f"))
        return CPU_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c"))
        return CPU_ISA_AVX2;
#endif
    return CPU_ISA_BASELINE;
}

void cpu_matmul_isa(cpu_isa isa, float *out, const float *x, int n, const tensor_view *w, const float *bias,
                    int threads)
{
    const cpu_isa best = cpu_best_isa();
    if (isa > best)
        isa = best;
    block_fn *block = block_baseline;
#if HAVE_X86_PATHS
    if (isa == CPU_ISA_AVX512)
        block = block_avx512;
    else if (isa == CPU_ISA_AVX2)
        block = block_avx2;
#endif
    const int64_t rows = w->rows;
    if (threads < 1)
        threads = 1;
    /* Waking threads costs microseconds; a small product (a tiny model's projection)
     * runs faster on fewer. Results do not depend on the thread count. */
    const int64_t work = rows * w->cols * (int64_t)n;
    const int64_t min_work_per_thread = 1 << 16;
    if (work / min_work_per_thread < threads)
        threads = work / min_work_per_thread > 1 ? (int)(work / min_work_per_thread) : 1;
    const int64_t groups = (rows + FEATURE_GROUP - 1) / FEATURE_GROUP;
    for (int i0 = 0; i0 < n; i0 += ROW_BLOCK) {
        const int nb = n - i0 < ROW_BLOCK ? n - i0 : ROW_BLOCK;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && groups > 1)
        for (int64_t g = 0; g < groups; g++) {
            const int64_t o0 = g * FEATURE_GROUP;
            const int nf = rows - o0 < FEATURE_GROUP ? (int)(rows - o0) : FEATURE_GROUP;
            matmul_group(block, out, x, rows, i0, nb, w, o0, nf, bias);
        }
    }
}

void cpu_matmul(float *out, const float *x, int n, const tensor_view *w, const float *bias, int threads)
{
    /* The path is chosen before any thread starts, and all paths give the same bits. */
    cpu_matmul_isa(cpu_best_isa(), out, x, n, w, bias, threads);
}
