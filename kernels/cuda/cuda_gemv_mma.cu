/* Matrix products of a few rows over bf16 weights on the tensor cores.
 *
 * Why: the CUDA-core GEMV (cuda_matmul.cu) issues one fp32 FMA per weight per row, so a
 * verification of 6 rows cost 2.2x one row on the 8B shape, far from the bandwidth
 * floor that reading each weight once sets. Here a warp feeds 16 weight rows (features)
 * x 16 columns to mma.sync m16n8k16 as the A operand and the activations as B: the
 * tensor core does the rows' work, the weights are read once for every row of the call.
 *
 * Precision: the tensor core multiplies bf16 by bf16. The weights are bf16 already; each
 * activation x is split into three bf16 terms hi + mid + lo (hi = bf16(x), mid =
 * bf16(x - hi), lo = bf16(x - hi - mid)), which together carry x's 24-bit significand.
 * The split is done once per call by a small kernel (cuk_split_x) or by the norm before
 * the product, not by every warp that reads x: done in the GEMV it cost about 5
 * instructions per weight at one row and halved the one-row bandwidth (ncu).
 *
 * B's columns are (row, term) pairs: row r of a block and term s are column 3 r + s, so
 * one row fills 3 of an mma's 8 columns and costs 2 mma a chunk (it cost 6 when each
 * term was an mma of its own over 8 columns, 7 of them empty at one row: the one-row
 * product was issue-bound). The three terms of an output are summed after the chunks,
 * lo + mid first, then hi.
 *
 * Batch invariance by construction: an output (row, feature) is a function of that row
 * of x and that feature's weights only. The tensor core never mixes one column of B into
 * another's sum, so where a row's columns land (which tile, which of its 8 columns) and
 * what the other columns hold change no bit; absent rows are zeros. The chunking of the
 * columns (32 a chunk, chunk c to warp c % 8, the 8 warps summed in order) depends on the
 * matrix's shape alone, never on n.
 *
 * Column order: within a chunk, lane (g, t) loads 8 consecutive weights of feature rows
 * g and g + 8 in one 16-byte load each, and the 8 same columns of its B column's term.
 * Those land on the fragment positions mma expects for k = 2t, 2t+1, 2t+8, 2t+9 (two mma
 * per chunk), a permutation of the column order that A and B share, so the dot product
 * is unchanged and every load stays 16 bytes wide. */
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_kernels.h"

#define MMA_WARPS 8                    /* warps of a block, splitting the columns */
#define MMA_THREADS (MMA_WARPS * 32)
#define MMA_CHUNK 32                   /* columns a warp takes at a time */
#define MMA_BLOCK_ROWS 16              /* rows a block takes at most: 48 columns, 6 tiles of 8 */

/* Chunks of a group, by tiles: a warp holds two groups in registers (the one in its mma,
 * the next one loading), as many as fit under two blocks a multiprocessor. */
__host__ __device__ constexpr int mma_group(int tiles)
{
    return tiles <= 1 ? 4 : tiles <= 3 ? 2 : 1;
}

__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                               uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* 8 weights of a feature row from col0 (zeros past cols: the padding of a raw view need
 * not be zero; absent features read as zeros too). */
__device__ __forceinline__ uint4 load_w8(const __nv_bfloat16 *__restrict__ wr, bool present, int col0, int cols)
{
    if (present && col0 + 8 <= cols)
        return __ldg(reinterpret_cast<const uint4 *>(wr + col0));
    uint32_t u[4] = {0, 0, 0, 0};
    if (present) {
#pragma unroll
        for (int e = 0; e < 8; e++)
            if (col0 + e < cols)
                u[e / 2] |= (uint32_t)__bfloat16_as_ushort(wr[col0 + e]) << (16 * (e & 1));
    }
    return make_uint4(u[0], u[1], u[2], u[3]);
}

/* One chunk: the two 16-column halves of weights wa (feature g) and wb (feature g + 8)
 * against each tile's B column of the lane (xt[t]: its term's 8 columns, in pairs). */
template <int NT>
__device__ __forceinline__ void mma_chunk(float (&acc)[NT][4], const uint4 &wa, const uint4 &wb, const uint4 (&xt)[NT])
{
#pragma unroll
    for (int t = 0; t < NT; t++) {
        mma_bf16_16816(acc[t], wa.x, wb.x, wa.y, wb.y, xt[t].x, xt[t].y);
        mma_bf16_16816(acc[t], wa.z, wb.z, wa.w, wb.w, xt[t].z, xt[t].w);
    }
}

/* U chunks of a warp (c, c + 8, ..., c + 8 (U - 1)) in registers: the weights of its
 * two features and, per tile, the lane's B column. */
template <int NT, int U> struct MmaGroup {
    uint4 wa[U], wb[U], xt[U][NT];
};

/* The lane's view of the operands (see gemv_mma_kernel); xo[t]: the lane's B column in
 * tile t at chunk 0 as an index into the split x, -1 when the column holds no row. */
template <int NT> struct MmaLane {
    const __nv_bfloat16 *wra, *wrb;
    const uint4 *xs;
    int xo[NT];
    int chunks, cols, t4;
    bool fa, fb;
};

/* Chunks past the last read as zeros: they add exact zeros, the same for every n. */
template <int NT, int U>
__device__ __forceinline__ void load_weights(MmaGroup<NT, U> &b, const MmaLane<NT> &l, int c)
{
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int cu = c + u * MMA_WARPS, col0 = cu * MMA_CHUNK + l.t4 * 8;
        b.wa[u] = load_w8(l.wra, l.fa && cu < l.chunks, col0, l.cols);
        b.wb[u] = load_w8(l.wrb, l.fb && cu < l.chunks, col0, l.cols);
    }
}

template <int NT, int U> __device__ __forceinline__ void load_x(MmaGroup<NT, U> &b, const MmaLane<NT> &l, int c)
{
    const uint4 zero = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int cu = c + u * MMA_WARPS;
#pragma unroll
        for (int t = 0; t < NT; t++)
            b.xt[u][t] = l.xo[t] >= 0 && cu < l.chunks ? __ldg(l.xs + l.xo[t] + cu * 12) : zero;
    }
}

template <int NT, int U> __device__ __forceinline__ void mma_group(float (&acc)[NT][4], const MmaGroup<NT, U> &b)
{
#pragma unroll
    for (int u = 0; u < U; u++)
        mma_chunk<NT>(acc, b.wa[u], b.wb[u], b.xt[u]);
}

/* Split x in cuk_xsplit_index's layout (cuda_device.h), zeros past cols. */
__global__ void split_x_kernel(uint4 *__restrict__ xs, const float *__restrict__ x, int n, int64_t cols,
                               int64_t chunks)
{
    cuk_begin();
    const int64_t total = (int64_t)n * chunks * 4;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int t4 = (int)(i & 3);
        const int64_t c = (i >> 2) % chunks, r = (i >> 2) / chunks;
        const int64_t col0 = c * MMA_CHUNK + t4 * 8;
        float v[8];
#pragma unroll
        for (int e = 0; e < 8; e++)
            v[e] = col0 + e < cols ? x[r * cols + col0 + e] : 0.0f;
        cuk_xsplit_store8(xs, r, chunks, col0, v);
    }
}

/* Up to CUK_MMA_MAX_PARTS products of the same x in one grid (q|k|v, gate|up): part p
 * owns blocks first[p] .. first[p + 1] - 1. Why: k and v of an 8B layer are 64 blocks
 * each on 132 multiprocessors (20% of DRAM peak alone, ncu); beside q's 256 they fill
 * the machine. A block computes exactly what it computes in a grid of its part alone. */
struct MmaParts {
    float *out[CUK_MMA_MAX_PARTS];
    const __nv_bfloat16 *w[CUK_MMA_MAX_PARTS];
    const float *bias[CUK_MMA_MAX_PARTS];
    int64_t rows[CUK_MMA_MAX_PARTS], ld[CUK_MMA_MAX_PARTS];
    unsigned first[CUK_MMA_MAX_PARTS + 1];
};

/* Block: 16 features of its part from (blockIdx.x - first) * 16, rows blockIdx.y * brows
 * .. + brows - 1 (brows <= MMA_BLOCK_ROWS, 3 brows <= 8 NT columns). */
template <int NT>
__global__ void __launch_bounds__(MMA_THREADS, 2) /* two blocks a multiprocessor: bytes in flight */
    gemv_mma_kernel(const __grid_constant__ MmaParts parts, const uint4 *__restrict__ xs, int n, int brows,
                    int64_t cols)
{
    constexpr int U = mma_group(NT);
    __shared__ float red[MMA_WARPS][NT * 8][17]; /* +1: lanes of a warp write distinct banks */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t4 = lane & 3;
    int p = 0;
#pragma unroll
    for (int q = 1; q < CUK_MMA_MAX_PARTS; q++)
        p += blockIdx.x >= parts.first[q];
    float *__restrict__ out = parts.out[p];
    const __nv_bfloat16 *__restrict__ w = parts.w[p];
    const float *__restrict__ bias = parts.bias[p];
    const int64_t rows = parts.rows[p], ld = parts.ld[p];
    const int64_t f0 = (int64_t)(blockIdx.x - parts.first[p]) * 16;
    const int r0 = blockIdx.y * brows;
    const int nb = min(brows, n - r0); /* rows of this block */
    MmaLane<NT> l;
    l.chunks = (int)((cols + MMA_CHUNK - 1) / MMA_CHUNK);
    l.cols = (int)cols;
    l.t4 = t4;
    l.fa = f0 + g < rows;
    l.fb = f0 + g + 8 < rows;
    l.wra = w + (l.fa ? f0 + g : 0) * ld;
    l.wrb = w + (l.fb ? f0 + g + 8 : 0) * ld;
    l.xs = xs;
#pragma unroll
    for (int t = 0; t < NT; t++) { /* column t * 8 + g: row col / 3 of the block, term col % 3 */
        const int col = t * 8 + g, rl = col / 3;
        l.xo[t] = rl < nb ? (int)cuk_xsplit_index(r0 + rl, l.chunks, 0, t4) + col % 3 : -1;
    }

    float acc[NT][4];
#pragma unroll
    for (int t = 0; t < NT; t++)
        acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;

    /* Every warp takes the same number of groups (chunks past the end are zeros); while
     * one group is in the tensor cores the next is loading, so a warp always has loads in
     * flight (loading a group, then running it, left DRAM idle at each group's turn). No
     * forward writes the weights: the first group's are loaded while the kernel before
     * this one (the norm or split making x) still runs. Loading x just before its mma
     * instead, its registers going to more weights in flight, was slower at 6 rows and
     * no faster at 9 (perf-notes change 13). */
    const int step = U * MMA_WARPS;
    const int groups = ((l.chunks + MMA_WARPS - 1) / MMA_WARPS + U - 1) / U;
    MmaGroup<NT, U> ga, gb;
    load_weights(ga, l, warp);
    cuk_wait_prior();
    load_x(ga, l, warp);
    for (int gi = 0; gi < groups; gi += 2) {
        const int c = warp + gi * step;
        if (gi + 1 < groups) {
            load_weights(gb, l, c + step);
            load_x(gb, l, c + step);
        }
        mma_group(acc, ga);
        if (gi + 1 >= groups)
            break;
        if (gi + 2 < groups) {
            load_weights(ga, l, c + 2 * step);
            load_x(ga, l, c + 2 * step);
        }
        mma_group(acc, gb);
    }
    /* Late, not at the start: the next kernel's blocks waiting beside this one's would
     * only take issue slots while the weights stream. */
    cuk_allow_next();

    /* acc[t]: (feature g, columns t*8 + 2 t4, + 1), then (feature g + 8, the same columns). */
#pragma unroll
    for (int t = 0; t < NT; t++) {
        red[warp][t * 8 + 2 * t4][g] = acc[t][0];
        red[warp][t * 8 + 2 * t4 + 1][g] = acc[t][1];
        red[warp][t * 8 + 2 * t4][g + 8] = acc[t][2];
        red[warp][t * 8 + 2 * t4 + 1][g + 8] = acc[t][3];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nb * 16; i += MMA_THREADS) {
        const int rl = i >> 4, f = i & 15;
        if (f0 + f >= rows)
            continue;
        float term[3];
#pragma unroll
        for (int s = 0; s < 3; s++) {
            term[s] = red[0][3 * rl + s][f];
#pragma unroll
            for (int k = 1; k < MMA_WARPS; k++)
                term[s] = __fadd_rn(term[s], red[k][3 * rl + s][f]);
        }
        const float v = __fadd_rn(__fadd_rn(term[2], term[1]), term[0]); /* the small terms first */
        out[(int64_t)(r0 + rl) * rows + f0 + f] = bias ? __fadd_rn(v, bias[f0 + f]) : v;
    }
}

extern "C" bool cuk_gemv_mma_eligible(const void *w, int dtype, int64_t cols, int64_t ld, const float *x)
{
    (void)x;
    return dtype == AUGUR_BF16 && (uintptr_t)w % 16 == 0 && ld % 8 == 0 && cols > 0;
}

extern "C" size_t cuk_gemv_mma_scratch(int n, int64_t cols)
{
    return (size_t)n * (size_t)((cols + MMA_CHUNK - 1) / MMA_CHUNK) * 4 * 3 * 16;
}

extern "C" cudaError_t cuk_gemv_split_x(cuk_stream stream, void *scratch, const float *x, int n, int64_t cols)
{
    const int64_t chunks = (cols + MMA_CHUNK - 1) / MMA_CHUNK;
    cuk_launch(stream, cuk_blocks_for((int64_t)n * chunks * 4, 256), 256, 0, split_x_kernel,
               static_cast<uint4 *>(scratch), x, n, cols, chunks);
    return cudaGetLastError();
}

extern "C" cudaError_t cuk_gemv_mma_parts(cuk_stream stream, const void *x_split, int n, int64_t cols,
                                          const cuk_mma_part *part, int count)
{
    if (count < 1 || count > CUK_MMA_MAX_PARTS)
        return cudaErrorInvalidValue;
    MmaParts a = {};
    unsigned blocks = 0;
    for (int p = 0; p < CUK_MMA_MAX_PARTS; p++) {
        a.first[p] = blocks;
        if (p >= count)
            continue; /* first[p] = the end: no block maps past the last part */
        a.out[p] = part[p].out;
        a.w[p] = static_cast<const __nv_bfloat16 *>(part[p].w);
        a.bias[p] = part[p].bias;
        a.rows[p] = part[p].rows;
        a.ld[p] = part[p].ld;
        blocks += (unsigned)((part[p].rows + 15) / 16);
    }
    a.first[CUK_MMA_MAX_PARTS] = blocks;
    const uint4 *xs = static_cast<const uint4 *>(x_split);
    /* Rows shared out evenly over the fewest blocks of at most MMA_BLOCK_ROWS (a row's
     * place in its block changes no bit), then the fewest tiles for their columns. */
    const unsigned ys = (unsigned)((n + MMA_BLOCK_ROWS - 1) / MMA_BLOCK_ROWS);
    const int brows = (int)((n + ys - 1) / ys), tiles = (3 * brows + 7) / 8;
    void (*const kernel[6])(MmaParts, const uint4 *, int, int, int64_t) = {
        gemv_mma_kernel<1>, gemv_mma_kernel<2>, gemv_mma_kernel<3>,
        gemv_mma_kernel<4>, gemv_mma_kernel<5>, gemv_mma_kernel<6>};
    cuk_launch(stream, dim3(blocks, ys), MMA_THREADS, 0, kernel[tiles - 1], a, xs, n, brows, cols);
    return cudaGetLastError();
}

extern "C" cudaError_t cuk_gemv_mma(cuk_stream stream, float *out, const void *x_split, int n, const void *w,
                                    int64_t rows, int64_t cols, int64_t ld, const float *bias)
{
    const cuk_mma_part part = {out, w, rows, ld, bias};
    return cuk_gemv_mma_parts(stream, x_split, n, cols, &part, 1);
}
