/* Element-wise kernels: SwiGLU, embedding lookup, softmax, residual add. */
#include <math.h>
#include <stdint.h>

#include "kernels/cpu_kernels.h"

void cpu_swiglu(float *out, const float *gate, const float *up, int64_t count)
{
    for (int64_t i = 0; i < count; i++) {
        const float g = gate[i];
        /* For very negative g, expf overflows to inf and g / inf is the correct limit, -0. */
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void cpu_embedding(float *out, const tensor_view *table, const int32_t *ids, int n)
{
    const size_t esize = augur_dtype_size(table->dtype);
    for (int i = 0; i < n; i++) {
        const char *row = (const char *)table->data + (size_t)((int64_t)ids[i] * table->row_stride) * esize;
        cpu_convert_f32(out + (int64_t)i * table->cols, row, table->dtype, table->cols);
    }
}

void cpu_softmax(float *x, int n)
{
    if (n <= 0)
        return;
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx)
            mx = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    for (int i = 0; i < n; i++)
        x[i] /= sum;
}

void cpu_add(float *out, const float *a, const float *b, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        out[i] = a[i] + b[i];
}
