/* Typed views of weight matrices, usually pointing into a memory-mapped file. */
#ifndef AUGUR_TENSOR_H
#define AUGUR_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum { AUGUR_F32 = 0, AUGUR_F16 = 1, AUGUR_BF16 = 2 } augur_dtype;

size_t augur_dtype_size(augur_dtype dt);
const char *augur_dtype_name(augur_dtype dt);

/* A 2-D row-major view. A 1-D tensor has rows = 1. row_stride (in elements, >= cols)
 * lets a rank view a column slice of a row-parallel matrix in place. */
typedef struct {
    const void *data;
    augur_dtype dtype;
    int64_t rows, cols;
    int64_t row_stride;
} tensor_view;

static inline float augur_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t augur_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN stays NaN */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float augur_f16_to_f32(uint16_t h);
uint16_t augur_f32_to_f16(float f);

/* Converts row r of a view (cols elements) to fp32. */
void tensor_row_to_f32(const tensor_view *t, int64_t r, float *out);

/* Element (r, c) as fp32; slow path for tests and small tensors. */
float tensor_get_f32(const tensor_view *t, int64_t r, int64_t c);

#endif
