/* fp16_tools.h - converting checkpoint tensors (bf16, fp32) to fp16 arrays.
 *
 * Rounding is to nearest, ties to even (as torch .half() and numpy do). Finite inputs
 * beyond the fp16 range (|x| >= 65520 after rounding) either become +-inf
 * (FP16_OVERFLOW_INF, what torch does) or are clamped to +-65504 (FP16_SATURATE,
 * what a converter that wants a usable model does); either way they are counted so
 * the converter can report them. Inputs that are already inf/NaN stay inf/NaN and are
 * counted separately. Nonzero inputs too small for fp16 become +-0 and are counted.
 * The functions never fail; dst must hold n values (it may not alias src).
 */
#ifndef ANEMLL_QUANT_FP16_TOOLS_H
#define ANEMLL_QUANT_FP16_TOOLS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { FP16_OVERFLOW_INF, FP16_SATURATE } Fp16Overflow;

typedef struct Fp16ConvStats {
    size_t overflow;  /* finite inputs beyond the fp16 range (became inf, or +-65504) */
    size_t nonfinite; /* inputs that were already inf or NaN */
    size_t underflow; /* nonzero inputs that became +-0 */
} Fp16ConvStats;

/* bf16 -> fp16. Counts are ADDED to *stats (may be NULL). */
void fp16_from_bf16(const uint16_t *src, size_t n, uint16_t *dst, Fp16Overflow mode, Fp16ConvStats *stats);

/* fp32 -> fp16. Counts are ADDED to *stats (may be NULL). */
void fp16_from_f32(const float *src, size_t n, uint16_t *dst, Fp16Overflow mode, Fp16ConvStats *stats);

/* Replaces +-inf by +-65504 in place (NaN stays); returns how many. For fp16 data that
 * went through a converter that overflows to inf (io's st_read_*_f16): applying this
 * afterwards equals converting with FP16_SATURATE. */
size_t fp16_saturate_inf(uint16_t *w, size_t n);

/* double -> fp16 with a single rounding (nearest, ties to even; overflow -> +-inf).
 * Going through float first would round twice and can differ by one ulp on ties. */
uint16_t f64_to_f16(double d);

#endif
