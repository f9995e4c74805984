/* Causal grouped-query attention over the KV cache. Each (query row, head) pair is one
 * independent work item computed by the same code whatever n is, so a verification
 * forward reproduces one-token decoding bit for bit. */
#include <math.h>
#include <omp.h>
#include <stdint.h>

#include "kernels/cpu_kernels.h"

/* Dot product with eight fixed partial sums and a fixed fold: vectorisable and
 * order-stable. */
static float dot8(const float *a, const float *b, int len)
{
    float part[8] = {0};
    int c = 0;
    for (; c + 8 <= len; c += 8)
        for (int j = 0; j < 8; j++)
            part[j] += a[c + j] * b[c + j];
    for (int j = 0; c < len; c++, j++)
        part[j] += a[c] * b[c];
    return ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
}

/* Row of position t in the cache: t itself, or through the block table of a paged cache. */
static inline int64_t cache_row(const int32_t *table, int block_size, int t)
{
    return table ? (int64_t)table[t / block_size] * block_size + t % block_size : (int64_t)t;
}

void cpu_attention(float *out, const float *q, int n, int start_pos, int n_heads, int n_kv_heads,
                   int head_dim, const float *k_cache, const float *v_cache, const int32_t *block_table,
                   int block_size, float *scratch, int threads)
{
    if (threads < 1)
        threads = 1;
    const int group = n_heads / n_kv_heads;
    const int64_t kv_stride = (int64_t)n_kv_heads * head_dim; /* floats per cached position */
    const int64_t scratch_len = (int64_t)start_pos + n;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const int items = n * n_heads;

#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && items > 1)
    for (int item = 0; item < items; item++) {
        const int i = item / n_heads, h = item % n_heads;
        const int kvh = h / group;
        const int len = start_pos + i + 1; /* causal: positions 0 .. start_pos+i */
        const float *qi = q + ((int64_t)i * n_heads + h) * head_dim;
        float *oi = out + ((int64_t)i * n_heads + h) * head_dim;
        float *s = scratch + (int64_t)omp_get_thread_num() * scratch_len;

        float mx = -INFINITY;
        for (int t = 0; t < len; t++) {
            s[t] = dot8(qi, k_cache + cache_row(block_table, block_size, t) * kv_stride + (int64_t)kvh * head_dim,
                        head_dim) *
                   scale;
            if (s[t] > mx)
                mx = s[t];
        }
        float sum = 0.0f;
        for (int t = 0; t < len; t++) {
            s[t] = expf(s[t] - mx);
            sum += s[t];
        }
        for (int t = 0; t < len; t++)
            s[t] /= sum;

        for (int d = 0; d < head_dim; d++)
            oi[d] = 0.0f;
        for (int t = 0; t < len; t++) {
            const float p = s[t];
            const float *vt = v_cache + cache_row(block_table, block_size, t) * kv_stride + (int64_t)kvh * head_dim;
            for (int d = 0; d < head_dim; d++)
                oi[d] += p * vt[d];
        }
    }
}
