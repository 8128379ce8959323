/* bf16/fp32/double -> fp16 conversion with overflow accounting. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/half.h"
#include "quant/fp16_tools.h"

static void test_f32_counts(void **state) {
    (void)state;
    const float src[] = {1.0f, -2.5f, 65504.0f, 65519.0f, 65520.0f, -1e6f, INFINITY, NAN, 1e-9f, 0.0f, -0.0f,
                         5.9604645e-08f};
    enum { N = sizeof src / sizeof src[0] };
    uint16_t dst[N];
    Fp16ConvStats st = {0};
    fp16_from_f32(src, N, dst, FP16_OVERFLOW_INF, &st);
    assert_int_equal(dst[0], 0x3c00);
    assert_int_equal(dst[1], 0xc100);
    assert_int_equal(dst[2], 0x7bff);
    assert_int_equal(dst[3], 0x7bff); /* rounds down to the largest finite */
    assert_int_equal(dst[4], 0x7c00); /* halfway to 65536: ties to even = inf */
    assert_int_equal(dst[5], 0xfc00);
    assert_int_equal(dst[6], 0x7c00);
    assert_false(f16_is_finite(dst[7]));
    assert_int_equal(dst[8], 0x0000);
    assert_int_equal(dst[10], 0x8000);
    assert_int_equal(dst[11], 0x0001);
    assert_int_equal(st.overflow, 2);  /* 65520, -1e6 */
    assert_int_equal(st.nonfinite, 2); /* inf, nan */
    assert_int_equal(st.underflow, 1); /* 1e-9 */

    Fp16ConvStats sat = {0};
    fp16_from_f32(src, N, dst, FP16_SATURATE, &sat);
    assert_int_equal(dst[4], 0x7bff);
    assert_int_equal(dst[5], 0xfbff);
    assert_int_equal(dst[6], 0x7c00); /* an input inf stays inf */
    assert_int_equal(sat.overflow, 2);
    /* counts accumulate across calls */
    fp16_from_f32(src, N, dst, FP16_SATURATE, &sat);
    assert_int_equal(sat.overflow, 4);
    fp16_from_f32(src, N, dst, FP16_SATURATE, NULL); /* stats optional */
}

static void test_bf16(void **state) {
    (void)state;
    /* bf16 1.0, 1e5 (0x47C3 ~ 99840), -3.0e38 (0xFF61), tiny 1e-10 (0x2EDC), 1+2^-7 (0x3F81) */
    const uint16_t src[] = {0x3f80, 0x47c3, 0xff61, 0x2edc, 0x3f81, 0x7f80, 0x7fc0};
    enum { N = sizeof src / sizeof src[0] };
    uint16_t dst[N];
    Fp16ConvStats st = {0};
    fp16_from_bf16(src, N, dst, FP16_OVERFLOW_INF, &st);
    assert_int_equal(dst[0], 0x3c00);
    assert_int_equal(dst[1], 0x7c00);
    assert_int_equal(dst[2], 0xfc00);
    assert_int_equal(dst[3], 0x0000);
    assert_int_equal(dst[4], 0x3c08); /* 1 + 2^-7 is exact in fp16 */
    assert_int_equal(dst[5], 0x7c00);
    assert_false(f16_is_finite(dst[6]));
    assert_int_equal(st.overflow, 2);
    assert_int_equal(st.nonfinite, 2);
    assert_int_equal(st.underflow, 1);
    fp16_from_bf16(src, N, dst, FP16_SATURATE, NULL);
    assert_int_equal(dst[1], 0x7bff);
    assert_int_equal(dst[2], 0xfbff);
    /* every bf16 value converts as its fp32 value would */
    for (uint32_t h = 0; h < 0x10000; h += 7) {
        uint16_t a, b;
        fp16_from_bf16((const uint16_t[]){(uint16_t)h}, 1, &a, FP16_OVERFLOW_INF, NULL);
        b = f32_to_f16(bf16_to_f32((uint16_t)h));
        if (f16_is_finite(b)) assert_int_equal(a, b);
    }
}

static void test_saturate_after_the_fact(void **state) {
    (void)state;
    const float src[] = {1.0f, 7e4f, -7e4f, NAN, -0.5f, 65504.0f};
    uint16_t a[6], b[6];
    fp16_from_f32(src, 6, a, FP16_OVERFLOW_INF, NULL);
    fp16_from_f32(src, 6, b, FP16_SATURATE, NULL);
    assert_int_equal(fp16_saturate_inf(a, 6), 2);
    assert_int_equal(a[1], 0x7bff);
    assert_int_equal(a[2], 0xfbff);
    assert_false(f16_is_finite(a[3])); /* NaN stays */
    a[3] = b[3] = 0;
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(fp16_saturate_inf(a, 6), 0);
}

/* Reference: the fp16 nearest to d by exhaustive search over finite values, ties to
 * the even mantissa. */
static uint16_t nearest_f16(double d) {
    uint16_t best = 0;
    double be = INFINITY;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if (!f16_is_finite((uint16_t)h)) continue;
        double e = fabs((double)f16_to_f32((uint16_t)h) - d);
        if (e < be || (e == be && !(h & 1) && (best & 1))) be = e, best = (uint16_t)h;
    }
    return best;
}

static void test_f64_single_rounding(void **state) {
    (void)state;
    /* exact values and exact midpoints between neighbours */
    for (uint32_t h = 0x0001; h < 0x7bff; h += 97) {
        double a = f16_to_f32((uint16_t)h), b = f16_to_f32((uint16_t)(h + 1));
        assert_int_equal(f64_to_f16(a), h);
        assert_int_equal(f64_to_f16(-a), h | 0x8000);
        uint16_t mid = f64_to_f16((a + b) / 2);
        assert_int_equal(mid, (h & 1) ? h + 1 : h);
    }
    /* a double just above a midpoint, which rounds to nearest float = the midpoint
     * itself and then (via float) would tie to even: single rounding must go up. */
    double a = f16_to_f32(0x3c00), b = f16_to_f32(0x3c01);
    double above = (a + b) / 2 + 1e-12;
    assert_int_equal(f32_to_f16((float)above), 0x3c00); /* the double-rounding trap */
    assert_int_equal(f64_to_f16(above), 0x3c01);
    assert_int_equal(f64_to_f16(above), nearest_f16(above));
    /* scattered values against the exhaustive reference */
    const double probes[] = {0.1, -0.0123456789, 3.14159265358979, 1e-7, -6.1e-5, 65503.9, 0.33333333333};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
        assert_int_equal(f64_to_f16(probes[i]), nearest_f16(probes[i]));
    assert_int_equal(f64_to_f16(65520.0), 0x7c00);
    assert_int_equal(f64_to_f16(-1e300), 0xfc00);
    assert_int_equal(f64_to_f16(0.0), 0x0000);
    assert_int_equal(f64_to_f16(-0.0), 0x8000);
    assert_false(f16_is_finite(f64_to_f16(NAN)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_counts),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_saturate_after_the_fact),
        cmocka_unit_test(test_f64_single_rounding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
