/* fp16 / bf16 conversions against values worked out by hand. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/half.h"

static void test_exact_values(void **state) {
    (void)state;
    assert_int_equal(f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(f32_to_f16(0.0f), 0x0000);
    assert_int_equal(f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(f32_to_f16(5.9604645e-08f), 0x0001); /* smallest subnormal */
    assert_true(f16_to_f32(0x0001) == 5.9604645e-08f);
    assert_true(f16_to_f32(0x7bff) == 65504.0f);
    assert_true(bf16_to_f32(0x3f80) == 1.0f);
}

static void test_overflow_and_nan(void **state) {
    (void)state;
    assert_int_equal(f32_to_f16(65519.0f), 0x7bff); /* below the halfway point to 65536 */
    assert_int_equal(f32_to_f16(65520.0f), 0x7c00); /* ties to even -> inf */
    assert_int_equal(f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(f32_to_f16(-1e10f), 0xfc00);
    assert_false(f16_is_finite(f32_to_f16(NAN)));
    assert_true(isnan(f16_to_f32(f32_to_f16(NAN))));
}

static void test_round_to_nearest_even(void **state) {
    (void)state;
    /* 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to the even mantissa (1.0). */
    assert_int_equal(f32_to_f16(1.0f + 0.00048828125f), 0x3c00);
    /* 1 + 3*2^-11 is halfway between 1+2^-10 (odd) and 1+2^-9 (even). */
    assert_int_equal(f32_to_f16(1.0f + 3 * 0.00048828125f), 0x3c02);
    /* every fp16 value survives a round trip */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if (!f16_is_finite((uint16_t)h)) continue;
        assert_int_equal(f32_to_f16(f16_to_f32((uint16_t)h)), h);
    }
    assert_int_equal(f32_to_bf16(1.00390625f), 0x3f80); /* tie -> even */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_values),
        cmocka_unit_test(test_overflow_and_nan),
        cmocka_unit_test(test_round_to_nearest_even),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
