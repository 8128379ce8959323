/* uint{1,2,3,4,6,8} index packing: hand-worked bytes (coreml_format.md 5.5), round
 * trips for every width and length, zero padding, and block concatenation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "quant/lut_pack.h"

static const int widths[] = {1, 2, 3, 4, 6, 8};

static void check_bytes(const uint8_t *idx, size_t n, int bits, const uint8_t *want, size_t want_len) {
    uint8_t out[16];
    memset(out, 0xAA, sizeof out); /* the packer must write every byte it owns */
    assert_int_equal(lut_packed_size(n, bits), want_len);
    lut_pack_indices(idx, n, bits, out);
    assert_memory_equal(out, want, want_len);
    assert_int_equal(out[want_len], 0xAA); /* and nothing past the end */
    uint8_t back[16];
    lut_unpack_indices(out, n, bits, back);
    assert_memory_equal(back, idx, n);
}

/* Worked by hand: element i occupies stream bits [i*b, i*b+b), LSB first; stream bit t
 * is bit t%8 of byte t/8. */
static void test_worked_bytes(void **state) {
    (void)state;
    /* 4-bit: byte j = e[2j] | e[2j+1] << 4; odd count leaves a zero high nibble. */
    check_bytes((const uint8_t[]){1, 2, 3, 4, 5}, 5, 4, (const uint8_t[]){0x21, 0x43, 0x05}, 3);
    /* 2-bit: 1 | 2<<2 | 3<<4 | 0<<6 = 0x39, then e4 = 1 alone. */
    check_bytes((const uint8_t[]){1, 2, 3, 0, 1}, 5, 2, (const uint8_t[]){0x39, 0x01}, 2);
    /* 1-bit: bits 0,2,3,7 set = 0x8D, then bit 8 -> byte 1 bit 0. */
    check_bytes((const uint8_t[]){1, 0, 1, 1, 0, 0, 0, 1, 1}, 9, 1, (const uint8_t[]){0x8D, 0x01}, 2);
    /* 3-bit 1..7,0: byte0 = 001 | 010<<3 | (low two bits of 011)<<6 = 0xD1; e2's top
     * bit (0) is bit 0 of byte1, e3 = 100 is bits 1-3 (0x08), e4 = 101 bits 4-6 (0x50),
     * e5's low bit (0) bit 7 -> 0x58; byte2 = e5 high bits 11 | 111<<2 | 000<<5 = 0x1F. */
    check_bytes((const uint8_t[]){1, 2, 3, 4, 5, 6, 7, 0}, 8, 3, (const uint8_t[]){0xD1, 0x58, 0x1F}, 3);
    /* 3-bit, 3 elements (9 bits, 7 padding bits): 101 | 011<<3 | (110 & 3)<<6 = 0x9D,
     * then the top bit of 6 -> 0x01. */
    check_bytes((const uint8_t[]){5, 3, 6}, 3, 3, (const uint8_t[]){0x9D, 0x01}, 2);
    /* 6-bit: 0x3F | (1 & 3)<<6 = 0x7F; byte1 = 1>>2 | (0x20 & 0xF)<<4 = 0x00;
     * byte2 = 0x20>>4 | 0x15<<2 = 0x02 | 0x54 = 0x56. */
    check_bytes((const uint8_t[]){0x3F, 0x01, 0x20, 0x15}, 4, 6, (const uint8_t[]){0x7F, 0x00, 0x56}, 3);
    /* 6-bit, 3 elements (18 bits): 0x2A | (0x15&3)<<6 = 0x6A; 0x15>>2 | (0x3F&0xF)<<4
     * = 0x05 | 0xF0 = 0xF5; 0x3F>>4 = 0x03. */
    check_bytes((const uint8_t[]){0x2A, 0x15, 0x3F}, 3, 6, (const uint8_t[]){0x6A, 0xF5, 0x03}, 3);
    check_bytes((const uint8_t[]){200, 7, 0}, 3, 8, (const uint8_t[]){200, 7, 0}, 3);
}

static void test_sizes(void **state) {
    (void)state;
    assert_int_equal(lut_packed_size(0, 4), 0);
    assert_int_equal(lut_packed_size(1, 1), 1);
    assert_int_equal(lut_packed_size(8, 1), 1);
    assert_int_equal(lut_packed_size(9, 1), 2);
    assert_int_equal(lut_packed_size(3, 3), 2);   /* 9 bits */
    assert_int_equal(lut_packed_size(8, 3), 3);   /* 24 bits */
    assert_int_equal(lut_packed_size(5, 6), 4);   /* 30 bits */
    assert_int_equal(lut_packed_size(2048 * 2048, 6), 2048 * 2048 * 6 / 8);
    assert_int_equal(lut_packed_size(10, 5), 0);  /* not a Core ML width */
}

static uint32_t rng_state = 12345;
static uint32_t next_rand(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

static void test_round_trip_every_width_and_length(void **state) {
    (void)state;
    enum { MAXN = 300 };
    uint8_t idx[MAXN], back[MAXN], packed[MAXN + 8];
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
        int bits = widths[w];
        for (size_t n = 0; n <= MAXN; n += (n < 40 ? 1 : 37)) {
            for (size_t i = 0; i < n; i++) idx[i] = (uint8_t)(next_rand() & ((1u << bits) - 1));
            size_t len = lut_packed_size(n, bits);
            memset(packed, 0xFF, sizeof packed);
            lut_pack_indices(idx, n, bits, packed);
            /* padding bits of the last byte are zero */
            size_t used_bits = n * (size_t)bits;
            if (used_bits % 8) assert_int_equal(packed[len - 1] >> (used_bits % 8), 0);
            assert_int_equal(packed[len], 0xFF);
            memset(back, 0xEE, sizeof back);
            lut_unpack_indices(packed, n, bits, back);
            assert_memory_equal(back, idx, n);
            if (n < MAXN) assert_int_equal(back[n], 0xEE);
        }
    }
}

static void test_high_bits_dropped(void **state) {
    (void)state;
    uint8_t idx[4] = {0xF1, 0xF2, 0xF3, 0xF4}, out[4], back[4];
    lut_pack_indices(idx, 4, 2, out);
    assert_int_equal(out[0], 0x01 | 0x02 << 2 | 0x03 << 4 | 0x00 << 6);
    lut_pack_indices(idx, 4, 4, out);
    lut_unpack_indices(out, 4, 4, back);
    assert_memory_equal(back, ((const uint8_t[]){1, 2, 3, 4}), 4);
}

/* Rows of 2048 (or any count with count*bits % 8 == 0) pack independently. */
static void test_blocks_concatenate(void **state) {
    (void)state;
    enum { A = 24, B = 13 };
    uint8_t idx[A + B], whole[64], parts[64];
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
        int bits = widths[w];
        for (size_t i = 0; i < A + B; i++) idx[i] = (uint8_t)(next_rand() & ((1u << bits) - 1));
        lut_pack_indices(idx, A + B, bits, whole);
        size_t la = lut_packed_size(A, bits);
        lut_pack_indices(idx, A, bits, parts);
        lut_pack_indices(idx + A, B, bits, parts + la);
        assert_memory_equal(whole, parts, lut_packed_size(A + B, bits));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worked_bytes),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_round_trip_every_width_and_length),
        cmocka_unit_test(test_high_bits_dropped),
        cmocka_unit_test(test_blocks_concatenate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
