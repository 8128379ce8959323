/* half.h - IEEE binary16 and bfloat16 conversions.
 *
 * fp16: 1 sign, 5 exponent (bias 15), 10 mantissa bits; largest finite 65504.
 * bf16: the top 16 bits of an fp32.
 * Conversions to fp16 round to nearest, ties to even, as numpy and PyTorch do;
 * values beyond the fp16 range become +-inf (callers that care count them with
 * half_is_inf on the result, see quant/fp16 tools).
 */
#ifndef ANEMLL_HALF_H
#define ANEMLL_HALF_H

#include <stdint.h>
#include <string.h>

#define FP16_MAX 65504.0f

static inline float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

/* fp32 -> bf16, round to nearest even (NaN stays NaN). */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    if (exp == 0) {
        if (man == 0) return bits_to_f32(sign);
        /* subnormal: man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* fp32 -> fp16, round to nearest even; overflow gives +-inf, NaN stays NaN. */
static inline uint16_t f32_to_f16(float f) {
    uint32_t u = f32_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00;          /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00;         /* >= 65520 rounds to inf */
    if (a < 0x38800000u) {                              /* below the smallest normal 2^-14 */
        if (a < 0x33000000u) return sign;               /* < 2^-25: rounds to 0 */
        uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
        int shift = 126 - (int)e;                       /* 14..24 */
        uint32_t half = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return sign | (uint16_t)half;
    }
    uint32_t r = a + 0x0fffu + ((a >> 13) & 1);         /* round mantissa to 10 bits */
    return sign | (uint16_t)((r - 0x38000000u) >> 13);
}

static inline int f16_is_finite(uint16_t h) { return (h & 0x7c00) != 0x7c00; }

/* Round an fp32 value to the nearest fp16 value (result as fp32). */
static inline float round_f16(float f) { return f16_to_f32(f32_to_f16(f)); }

#endif
