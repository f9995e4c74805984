/* RMSNorm and rotary position embeddings, following Hugging Face's fp32 formulas so the
 * CPU path can be compared with transformers to within rounding. */
#include <math.h>
#include <stdint.h>

#include "kernels/cpu_kernels.h"

void cpu_rmsnorm(float *out, const float *x, const float *weight, int n, int dim, float eps)
{
    for (int i = 0; i < n; i++) {
        const float *xi = x + (int64_t)i * dim;
        float *oi = out + (int64_t)i * dim;
        /* Eight fixed partial sums: vectorisable, yet the same order for every row and n. */
        float part[8] = {0};
        int c = 0;
        for (; c + 8 <= dim; c += 8)
            for (int j = 0; j < 8; j++)
                part[j] += xi[c + j] * xi[c + j];
        for (int j = 0; c < dim; c++, j++)
            part[j] += xi[c] * xi[c];
        float ss = ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
        float r = 1.0f / sqrtf(ss / (float)dim + eps);
        /* HF order: (x * rsqrt(var + eps)) then * weight. Reading xi[c] before writing oi[c]
         * keeps out == x aliasing safe. */
        for (c = 0; c < dim; c++)
            oi[c] = weight[c] * (xi[c] * r);
    }
}

void rope_inv_freq(float *inv_freq, int head_dim, float theta, const rope_llama3_scaling *scaling)
{
    /* As transformers computes it in float32: 1 / theta^(float(2i) / dim). */
    for (int i = 0; i < head_dim / 2; i++)
        inv_freq[i] = 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
    if (!scaling || !scaling->enabled)
        return;
    const float factor = scaling->factor;
    const float lo = scaling->low_freq_factor, hi = scaling->high_freq_factor;
    const float orig = (float)scaling->original_max_position;
    const float low_freq_wavelen = orig / lo;
    const float high_freq_wavelen = orig / hi;
    for (int i = 0; i < head_dim / 2; i++) {
        float inv = inv_freq[i];
        float wavelen = (float)6.283185307179586 / inv;
        if (wavelen > low_freq_wavelen) {
            inv_freq[i] = inv / factor;
        } else if (wavelen < high_freq_wavelen) {
            inv_freq[i] = inv;
        } else {
            float smooth = (orig / wavelen - lo) / (hi - lo);
            inv_freq[i] = (1.0f - smooth) * inv / factor + smooth * inv;
        }
    }
}

void cpu_rope(float *x, int n, int n_heads, int head_dim, const int *positions, const float *inv_freq,
              rope_pairing pairs)
{
    const int half = head_dim / 2;
    for (int r = 0; r < n; r++) {
        float *row = x + (int64_t)r * n_heads * head_dim;
        const float pos = (float)positions[r];
        /* Frequency outermost: one cos/sin per (row, frequency), shared by every head. */
        for (int i = 0; i < half; i++) {
            const float angle = pos * inv_freq[i];
            const float c = cosf(angle), s = sinf(angle);
            const int a = pairs == ROPE_PAIRS_HALF ? i : 2 * i;
            const int b = pairs == ROPE_PAIRS_HALF ? i + half : 2 * i + 1;
            for (int h = 0; h < n_heads; h++) {
                float *v = row + (int64_t)h * head_dim;
                const float x1 = v[a], x2 = v[b];
                v[a] = x1 * c - x2 * s;
                v[b] = x2 * c + x1 * s;
            }
        }
    }
}
