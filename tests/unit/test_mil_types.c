/* MIL data types: names, widths, packed sizes, LSB-first sub-byte packing against bytes worked
 * out by hand, and type strings / compatibility. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mil/mil.h"

static void test_names_and_widths(void **state) {
    (void)state;
    static const struct { MilDType dt; const char *name; int bits; } cases[] = {
        {MIL_FP16, "fp16", 16},  {MIL_FP32, "fp32", 32},  {MIL_INT32, "int32", 32}, {MIL_BOOL, "bool", 8},
        {MIL_UINT1, "uint1", 1}, {MIL_UINT2, "uint2", 2}, {MIL_UINT3, "uint3", 3},   {MIL_UINT4, "uint4", 4},
        {MIL_UINT6, "uint6", 6}, {MIL_UINT8, "uint8", 8}, {MIL_INT4, "int4", 4},     {MIL_STRING, "string", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_string_equal(mil_dtype_name(cases[i].dt), cases[i].name);
        assert_int_equal(mil_dtype_from_name(cases[i].name), cases[i].dt);
        assert_int_equal(mil_dtype_bits(cases[i].dt), cases[i].bits);
    }
    assert_int_equal(mil_dtype_from_name("fp8"), MIL_DT_INVALID);
    assert_true(mil_dtype_is_subbyte(MIL_UINT6));
    assert_false(mil_dtype_is_subbyte(MIL_UINT8));
    assert_false(mil_dtype_is_valid(0));
    assert_false(mil_dtype_is_valid(3));
    assert_true(mil_dtype_is_valid(MIL_UINT3));
}

static void test_packed_sizes(void **state) {
    (void)state;
    uint64_t n;
    assert_int_equal(mil_packed_size(MIL_UINT4, 5, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(mil_packed_size(MIL_UINT3, 3, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(mil_packed_size(MIL_UINT6, 3, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(mil_packed_size(MIL_FP16, 7, &n), 0);
    assert_int_equal(n, 14);
    assert_int_equal(mil_packed_size(MIL_UINT1, 9, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(mil_packed_size(MIL_FP32, UINT64_MAX / 2, &n), -1);
}

/* Each case: values, and the bytes MILBlob's packing gives for them (worked out by hand:
 * element i occupies bits [i*b, i*b+b), bit k of the stream is bit k%8 of byte k/8). */
static void check_pack(MilDType dt, const uint8_t *vals, size_t n, const uint8_t *want, size_t nbytes) {
    uint8_t out[16], back[16];
    memset(out, 0xAA, sizeof out);
    assert_int_equal(mil_pack_subbyte(dt, vals, n, out), 0);
    assert_memory_equal(out, want, nbytes);
    mil_unpack_subbyte(dt, out, n, back);
    assert_memory_equal(back, vals, n);
}

static void test_subbyte_packing_lsb_first(void **state) {
    (void)state;
    check_pack(MIL_UINT4, (uint8_t[]){1, 2, 3, 4, 5}, 5, (uint8_t[]){0x21, 0x43, 0x05}, 3);
    check_pack(MIL_UINT2, (uint8_t[]){1, 2, 3, 0, 1}, 5, (uint8_t[]){0x39, 0x01}, 2);
    check_pack(MIL_UINT1, (uint8_t[]){1, 0, 1, 1, 0, 0, 0, 1, 1}, 9, (uint8_t[]){0x8D, 0x01}, 2);
    /* uint3 straddles bytes: 5 in bits 0-2, 6 in bits 3-5, 7 in bits 6-8 */
    check_pack(MIL_UINT3, (uint8_t[]){5, 6, 7}, 3, (uint8_t[]){0xF5, 0x01}, 2);
    /* uint6: 63 in bits 0-5, 1 in bits 6-11, 32 in bits 12-17 */
    check_pack(MIL_UINT6, (uint8_t[]){63, 1, 32}, 3, (uint8_t[]){0x7F, 0x00, 0x02}, 3);
    /* int4 two's complement nibbles */
    check_pack(MIL_INT4, (uint8_t[]){(uint8_t)-1, 7, (uint8_t)-8}, 3, (uint8_t[]){0x7F, 0x08}, 2);
    assert_int_equal(mil_subbyte_get(MIL_INT4, (uint8_t[]){0x7F, 0x08}, 0), -1);
    assert_int_equal(mil_subbyte_get(MIL_UINT6, (uint8_t[]){0x7F, 0x00, 0x02}, 2), 32);
}

static void test_subbyte_out_of_range(void **state) {
    (void)state;
    uint8_t out[4];
    assert_int_equal(mil_pack_subbyte(MIL_UINT4, (uint8_t[]){16}, 1, out), -1);
    assert_int_equal(mil_pack_subbyte(MIL_UINT3, (uint8_t[]){8}, 1, out), -1);
    assert_int_equal(mil_pack_subbyte(MIL_INT4, (uint8_t[]){8}, 1, out), -1);
    assert_int_equal(mil_pack_subbyte(MIL_UINT1, (uint8_t[]){2}, 1, out), -1);
}

static void test_subbyte_roundtrip_all_widths(void **state) {
    (void)state;
    const MilDType dts[] = {MIL_UINT1, MIL_UINT2, MIL_UINT3, MIL_UINT4, MIL_UINT6, MIL_INT4};
    uint8_t vals[257], back[257], packed[257];
    uint32_t seed = 12345;
    for (size_t k = 0; k < sizeof dts / sizeof dts[0]; k++) {
        int b = mil_dtype_bits(dts[k]);
        for (size_t n = 1; n <= 257; n += 37) {
            for (size_t i = 0; i < n; i++) {
                seed = seed * 1103515245u + 12345u;
                int v = (int)((seed >> 16) % (1u << b));
                if (dts[k] == MIL_INT4) v -= 8;
                vals[i] = (uint8_t)v;
            }
            assert_int_equal(mil_pack_subbyte(dts[k], vals, n, packed), 0);
            uint64_t nb;
            mil_packed_size(dts[k], n, &nb);
            unsigned used = (unsigned)((n * (size_t)b) % 8);
            if (used) assert_int_equal(packed[nb - 1] >> used, 0);   /* unused high bits are zero */
            mil_unpack_subbyte(dts[k], packed, n, back);
            assert_memory_equal(back, vals, n);
        }
    }
}

static void test_types(void **state) {
    (void)state;
    char s[128];
    MilType t = mil_tensor_type(MIL_FP16, 3, (int64_t[]){1, MIL_DIM_UNKNOWN, 128});
    mil_type_str(&t, s, sizeof s);
    assert_string_equal(s, "tensor<fp16, [1, ?, 128]>");
    assert_int_equal(mil_type_numel(&t), -1);
    MilType u = mil_tensor_type(MIL_FP16, 3, (int64_t[]){1, 32, 128});
    assert_true(mil_type_compatible(&t, &u));
    assert_false(mil_type_equal(&t, &u));
    assert_int_equal(mil_type_numel(&u), 4096);
    MilType sc = mil_tensor_type(MIL_INT32, 0, NULL);
    mil_type_str(&sc, s, sizeof s);
    assert_string_equal(s, "int32");
    u.kind = MIL_STATE;
    mil_type_str(&u, s, sizeof s);
    assert_string_equal(s, "state<tensor<fp16, [1, 32, 128]>>");
    assert_false(mil_type_compatible(&t, &u));
    MilType big = mil_tensor_type(MIL_FP32, 3, (int64_t[]){1ll << 30, 1ll << 30, 1ll << 30});
    assert_int_equal(mil_type_numel(&big), -1);
}

static void test_identifiers(void **state) {
    (void)state;
    assert_true(mil_is_identifier("model_model_kv_cache_0"));
    assert_true(mil_is_identifier("_x@1"));
    assert_false(mil_is_identifier("1abc"));
    assert_false(mil_is_identifier("model.model"));
    assert_false(mil_is_identifier(""));
    assert_false(mil_is_identifier(NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_widths),        cmocka_unit_test(test_packed_sizes),
        cmocka_unit_test(test_subbyte_packing_lsb_first), cmocka_unit_test(test_subbyte_out_of_range),
        cmocka_unit_test(test_subbyte_roundtrip_all_widths), cmocka_unit_test(test_types),
        cmocka_unit_test(test_identifiers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
