/* Matrix products of up to 16 rows over bf16 weights on the tensor cores.
 *
 * Why: the CUDA-core GEMV (cuda_matmul.cu) issues one fp32 FMA per weight per row, so a
 * verification of 6 rows cost 2.2x one row on the 8B shape, far from the bandwidth
 * floor that reading each weight once sets. Here a warp feeds 16 weight rows (features)
 * x 16 columns to mma.sync m16n8k16 as the A operand and 8 rows of x as B: the tensor
 * core does the rows' work, the weights are read once for up to 8 (or 16) rows.
 *
 * Batch invariance by construction: an output (row, feature) is a function of that row
 * of x and that feature's weights only. Rows that share a call occupy other columns of
 * B, which the tensor core never mixes into this one's sum; absent rows are zeros. The
 * chunking of the columns (32 a chunk, chunk c to warp c % 8, the 8 warps summed in
 * order) depends on the matrix's shape alone, never on n.
 *
 * Precision: the tensor core multiplies bf16 by bf16. The weights are bf16 already; each
 * activation x is split into three bf16 terms hi + mid + lo (hi = bf16(x), mid =
 * bf16(x - hi), lo = bf16(x - hi - mid)), which together carry x's 24-bit significand;
 * the three products go through the tensor core in turn, accumulating in fp32. The split
 * is done once per call by a small kernel (cuk_split_x), not by every warp that reads x:
 * done in the GEMV it cost about 5 instructions per weight at one row, against 1.5 for
 * the CUDA-core GEMV, and the one-row product fell to half the bandwidth (ncu).
 *
 * Column order: within a chunk, lane (g, t) loads 8 consecutive weights of feature rows
 * g and g + 8 in one 16-byte load each, and the split terms of the same 8 columns of x.
 * Those land on the fragment positions mma expects for k = 2t, 2t+1, 2t+8, 2t+9 (two mma
 * per chunk), a permutation of the column order that A and B share, so the dot product
 * is unchanged and every load stays 16 bytes wide. */
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_kernels.h"

#define MMA_WARPS 8                    /* warps of a block, splitting the columns */
#define MMA_THREADS (MMA_WARPS * 32)
#define MMA_CHUNK 32                   /* columns a warp takes at a time */
#define MMA_UNROLL 4                   /* chunks whose loads a warp issues before their mma */

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
__device__ __forceinline__ uint4 load_w8(const __nv_bfloat16 *__restrict__ wr, bool present, int64_t col0,
                                         int64_t cols)
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
 * against each row tile's split x (xt[t][s]: term s of the lane's 8 columns, in pairs). */
template <int NT>
__device__ __forceinline__ void mma_chunk(float (&acc)[NT][4], const uint4 &wa, const uint4 &wb,
                                          const uint4 (&xt)[NT][3])
{
#pragma unroll
    for (int t = 0; t < NT; t++) {
#pragma unroll
        for (int s = 2; s >= 0; s--) { /* the small terms first */
            mma_bf16_16816(acc[t], wa.x, wb.x, wa.y, wb.y, xt[t][s].x, xt[t][s].y);
            mma_bf16_16816(acc[t], wa.z, wb.z, wa.w, wb.w, xt[t][s].z, xt[t][s].w);
        }
    }
}

/* Split x, 16-byte vectors: [row][chunk][t (4 lanes)][term (3)], each vector the
 * term's 4 bf16 pairs of columns chunk*32 + t*8 .. +7 (zeros past cols). */
__device__ __forceinline__ int64_t xsplit_index(int64_t r, int64_t chunks, int64_t c, int t4)
{
    return ((r * chunks + c) * 4 + t4) * 3;
}

__global__ void split_x_kernel(uint4 *__restrict__ xs, const float *__restrict__ x, int n, int64_t cols,
                               int64_t chunks)
{
    const int64_t total = (int64_t)n * chunks * 4;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int t4 = (int)(i & 3);
        const int64_t c = (i >> 2) % chunks, r = (i >> 2) / chunks;
        const int64_t col0 = c * MMA_CHUNK + t4 * 8;
        uint32_t term[3][4];
#pragma unroll
        for (int p = 0; p < 4; p++) {
            __nv_bfloat16 h[2], m[2], l[2];
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int64_t col = col0 + 2 * p + e;
                cuk_split3(col < cols ? x[r * cols + col] : 0.0f, h[e], m[e], l[e]);
            }
            term[0][p] = cuk_pack_bf16x2(h[0], h[1]);
            term[1][p] = cuk_pack_bf16x2(m[0], m[1]);
            term[2][p] = cuk_pack_bf16x2(l[0], l[1]);
        }
        uint4 *dst = xs + xsplit_index(r, chunks, c, t4);
#pragma unroll
        for (int k = 0; k < 3; k++)
            dst[k] = make_uint4(term[k][0], term[k][1], term[k][2], term[k][3]);
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

/* Block: 16 features of its part from (blockIdx.x - first) * 16, rows blockIdx.y * 8 * NT .. (+8 NT). */
template <int NT>
__global__ void __launch_bounds__(MMA_THREADS, 2) /* two blocks a multiprocessor: bytes in flight */
    gemv_mma_kernel(const __grid_constant__ MmaParts parts, const uint4 *__restrict__ xs, int n, int64_t cols)
{
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
    const int r0 = blockIdx.y * 8 * NT;
    const int64_t chunks = (cols + MMA_CHUNK - 1) / MMA_CHUNK;
    const bool fa = f0 + g < rows, fb = f0 + g + 8 < rows;
    const __nv_bfloat16 *wra = w + (fa ? f0 + g : 0) * ld;
    const __nv_bfloat16 *wrb = w + (fb ? f0 + g + 8 : 0) * ld;
    bool xp[NT];
    const uint4 *xr[NT]; /* the lane's row, its t4 vectors of chunk 0 */
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const int r = r0 + t * 8 + g;
        xp[t] = r < n;
        xr[t] = xs + xsplit_index(xp[t] ? r : 0, chunks, 0, t4);
    }

    float acc[NT][4];
#pragma unroll
    for (int t = 0; t < NT; t++)
        acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;

    const uint4 zero = make_uint4(0, 0, 0, 0);
    int64_t c = warp;
    /* Groups of MMA_UNROLL chunks with every load in flight before the first mma. */
    for (; c + (MMA_UNROLL - 1) * MMA_WARPS < chunks; c += MMA_UNROLL * MMA_WARPS) {
        uint4 wa[MMA_UNROLL], wb[MMA_UNROLL], xt[MMA_UNROLL][NT][3];
#pragma unroll
        for (int u = 0; u < MMA_UNROLL; u++) {
            const int64_t cu = c + u * MMA_WARPS, col0 = cu * MMA_CHUNK + t4 * 8;
            wa[u] = load_w8(wra, fa, col0, cols);
            wb[u] = load_w8(wrb, fb, col0, cols);
#pragma unroll
            for (int t = 0; t < NT; t++)
#pragma unroll
                for (int k = 0; k < 3; k++)
                    xt[u][t][k] = xp[t] ? __ldg(xr[t] + cu * 12 + k) : zero;
        }
#pragma unroll
        for (int u = 0; u < MMA_UNROLL; u++)
            mma_chunk<NT>(acc, wa[u], wb[u], xt[u]);
    }
    for (; c < chunks; c += MMA_WARPS) {
        const int64_t col0 = c * MMA_CHUNK + t4 * 8;
        const uint4 wa = load_w8(wra, fa, col0, cols), wb = load_w8(wrb, fb, col0, cols);
        uint4 xt[NT][3];
#pragma unroll
        for (int t = 0; t < NT; t++)
#pragma unroll
            for (int k = 0; k < 3; k++)
                xt[t][k] = xp[t] ? __ldg(xr[t] + c * 12 + k) : zero;
        mma_chunk<NT>(acc, wa, wb, xt);
    }

    /* acc[t]: (feature g, rows 2 t4, 2 t4 + 1), then (feature g + 8, the same rows). */
#pragma unroll
    for (int t = 0; t < NT; t++) {
        red[warp][t * 8 + 2 * t4][g] = acc[t][0];
        red[warp][t * 8 + 2 * t4 + 1][g] = acc[t][1];
        red[warp][t * 8 + 2 * t4][g + 8] = acc[t][2];
        red[warp][t * 8 + 2 * t4 + 1][g + 8] = acc[t][3];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < NT * 8 * 16; i += MMA_THREADS) {
        const int rl = i >> 4, f = i & 15;
        if (r0 + rl >= n || f0 + f >= rows)
            continue;
        float s = red[0][rl][f];
#pragma unroll
        for (int k = 1; k < MMA_WARPS; k++)
            s = __fadd_rn(s, red[k][rl][f]);
        out[(int64_t)(r0 + rl) * rows + f0 + f] = bias ? __fadd_rn(s, bias[f0 + f]) : s;
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

extern "C" cudaError_t cuk_gemv_split_x(cudaStream_t stream, void *scratch, const float *x, int n, int64_t cols)
{
    const int64_t chunks = (cols + MMA_CHUNK - 1) / MMA_CHUNK;
    split_x_kernel<<<cuk_blocks_for((int64_t)n * chunks * 4, 256), 256, 0, stream>>>(static_cast<uint4 *>(scratch), x,
                                                                                    n, cols, chunks);
    return cudaGetLastError();
}

extern "C" cudaError_t cuk_gemv_mma_parts(cudaStream_t stream, const void *x_split, int n, int64_t cols,
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
    if (n <= 8)
        gemv_mma_kernel<1><<<dim3(blocks, 1), MMA_THREADS, 0, stream>>>(a, xs, n, cols);
    else
        gemv_mma_kernel<2><<<dim3(blocks, (unsigned)((n + 15) / 16)), MMA_THREADS, 0, stream>>>(a, xs, n, cols);
    return cudaGetLastError();
}

extern "C" cudaError_t cuk_gemv_mma(cudaStream_t stream, float *out, const void *x_split, int n, const void *w,
                                    int64_t rows, int64_t cols, int64_t ld, const float *bias)
{
    const cuk_mma_part part = {out, w, rows, ld, bias};
    return cuk_gemv_mma_parts(stream, x_split, n, cols, &part, 1);
}
