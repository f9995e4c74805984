#include "base/tensor.h"

#include <math.h>

size_t augur_dtype_size(augur_dtype dt)
{
    return dt == AUGUR_F32 ? 4 : 2;
}

const char *augur_dtype_name(augur_dtype dt)
{
    switch (dt) {
    case AUGUR_F32: return "F32";
    case AUGUR_F16: return "F16";
    case AUGUR_BF16: return "BF16";
    }
    return "?";
}

float augur_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while (!(mant & 0x400u));
            mant &= 0x3ffu;
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (mant << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t augur_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t sign = (u >> 16) & 0x8000u;
    int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    uint32_t mant = u & 0x7fffffu;
    if (((u >> 23) & 0xff) == 0xff)
        return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0));
    if (exp >= 31)
        return (uint16_t)(sign | 0x7c00u);
    if (exp <= 0) {
        if (exp < -10)
            return (uint16_t)sign;
        mant |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = 1u << (shift - 1);
        uint32_t r = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((uint32_t)exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1)))
        r++;
    return (uint16_t)(sign | r);
}

void tensor_row_to_f32(const tensor_view *t, int64_t r, float *out)
{
    const char *base = (const char *)t->data + (size_t)(r * t->row_stride) * augur_dtype_size(t->dtype);
    switch (t->dtype) {
    case AUGUR_F32:
        memcpy(out, base, (size_t)t->cols * sizeof(float));
        break;
    case AUGUR_BF16: {
        const uint16_t *p = (const uint16_t *)base;
        for (int64_t c = 0; c < t->cols; c++)
            out[c] = augur_bf16_to_f32(p[c]);
        break;
    }
    case AUGUR_F16: {
        const uint16_t *p = (const uint16_t *)base;
        for (int64_t c = 0; c < t->cols; c++)
            out[c] = augur_f16_to_f32(p[c]);
        break;
    }
    }
}

float tensor_get_f32(const tensor_view *t, int64_t r, int64_t c)
{
    size_t idx = (size_t)(r * t->row_stride + c);
    switch (t->dtype) {
    case AUGUR_F32: return ((const float *)t->data)[idx];
    case AUGUR_BF16: return augur_bf16_to_f32(((const uint16_t *)t->data)[idx]);
    case AUGUR_F16: return augur_f16_to_f32(((const uint16_t *)t->data)[idx]);
    }
    return NAN;
}
