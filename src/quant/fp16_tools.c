/* fp16_tools.c - bf16/fp32/double -> fp16 with overflow accounting (contract in fp16_tools.h). */
#include "quant/fp16_tools.h"

#include <math.h>

#include "common/half.h"

#define FP16_MAX_BITS 0x7bffu

/* One value: the fp16 result, with the counters it touches. */
static inline uint16_t convert_one(float f, Fp16Overflow mode, Fp16ConvStats *c) {
    uint16_t h = f32_to_f16(f);
    if (!isfinite(f)) {
        c->nonfinite++;
    } else if (!f16_is_finite(h)) {
        c->overflow++;
        if (mode == FP16_SATURATE) h = (uint16_t)((h & 0x8000) | FP16_MAX_BITS);
    } else if ((h & 0x7fff) == 0 && f != 0) {
        c->underflow++;
    }
    return h;
}

static void stats_add(Fp16ConvStats *dst, const Fp16ConvStats *c) {
    if (!dst) return;
    dst->overflow += c->overflow;
    dst->nonfinite += c->nonfinite;
    dst->underflow += c->underflow;
}

void fp16_from_bf16(const uint16_t *src, size_t n, uint16_t *dst, Fp16Overflow mode, Fp16ConvStats *stats) {
    Fp16ConvStats c = {0};
    for (size_t i = 0; i < n; i++) dst[i] = convert_one(bf16_to_f32(src[i]), mode, &c);
    stats_add(stats, &c);
}

void fp16_from_f32(const float *src, size_t n, uint16_t *dst, Fp16Overflow mode, Fp16ConvStats *stats) {
    Fp16ConvStats c = {0};
    for (size_t i = 0; i < n; i++) dst[i] = convert_one(src[i], mode, &c);
    stats_add(stats, &c);
}

size_t fp16_saturate_inf(uint16_t *w, size_t n) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        int inf = (w[i] & 0x7fff) == 0x7c00;
        count += (size_t)inf;
        w[i] = inf ? (uint16_t)((w[i] & 0x8000) | FP16_MAX_BITS) : w[i];
    }
    return count;
}

/* Order-preserving 16-bit key of a finite fp16 value (see lut.c) and back. */
static inline int f16_key(uint16_t h) { return (h & 0x8000) ? -(int)(h & 0x7fff) : (int)h; }
static inline uint16_t f16_of_key(int k) { return k < 0 ? (uint16_t)(0x8000 | -k) : (uint16_t)k; }

uint16_t f64_to_f16(double d) {
    if (isnan(d)) return 0x7e00;
    if (fabs(d) >= 65520.0) return d > 0 ? 0x7c00 : 0xfc00;
    /* The float path is at most one fp16 step off; pick the nearest of its neighbours
     * in exact double arithmetic, ties to the even mantissa. */
    uint16_t h0 = f32_to_f16((float)d);
    int k0 = f16_key(h0);
    uint16_t best = h0;
    double best_err = fabs(f16_to_f32(h0) - d);
    for (int dk = -1; dk <= 1; dk += 2) {
        int k = k0 + dk;
        if (k < -(int)FP16_MAX_BITS || k > (int)FP16_MAX_BITS) continue;
        uint16_t h = f16_of_key(k);
        double err = fabs(f16_to_f32(h) - d);
        if (err < best_err || (err == best_err && !(h & 1) && (best & 1))) best = h, best_err = err;
    }
    if (d == 0) return signbit(d) ? 0x8000 : 0;
    return best;
}
