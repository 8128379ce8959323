/* lut_pack.c - LSB-first sub-byte index streams (contract in lut_pack.h).
 *
 * Eight elements of b bits are exactly b bytes, so the stream is handled eight
 * elements at a time through a 64-bit little-endian word; the tail is the same with
 * fewer elements and ceil(rem*b/8) bytes.
 */
#include "quant/lut_pack.h"

#include <string.h>

static int valid_bits(int bits) {
    return bits == 1 || bits == 2 || bits == 3 || bits == 4 || bits == 6 || bits == 8;
}

size_t lut_packed_size(size_t n, int bits) {
    if (!valid_bits(bits)) return 0;
    return n / 8 * (size_t)bits + (n % 8 * (size_t)bits + 7) / 8;
}

/* Elements [0, cnt) of e packed into the low cnt*bits bits of a word. */
static inline uint64_t pack_word(const uint8_t *e, int cnt, int bits) {
    uint64_t mask = (1u << bits) - 1, word = 0;
    for (int t = 0; t < cnt; t++) word |= (e[t] & mask) << (t * bits);
    return word;
}

static inline void unpack_word(uint64_t word, int cnt, int bits, uint8_t *e) {
    uint64_t mask = (1u << bits) - 1;
    for (int t = 0; t < cnt; t++) e[t] = (uint8_t)((word >> (t * bits)) & mask);
}

/* 6 bits, the common width, without the generic word loop; the same stream as the generic
 * code. On little-endian machines eight elements are loaded as one word and folded in three
 * shift-and-mask steps (pairs to 12 bits, quads to 24, the eight to 48) -- several times
 * faster than gathering them one by one, which is what the other path does. */
static size_t pack6_octets(const uint8_t *idx, size_t n, uint8_t *out) {
    size_t full = n / 8; /* whole groups of eight only, so the generic tail code follows */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (size_t g = 0; g < full; g++) {
        uint64_t v;
        memcpy(&v, idx + 8 * g, 8);
        v &= 0x3F3F3F3F3F3F3F3Full;
        v = (v & 0x00FF00FF00FF00FFull) | (v >> 2 & 0x0FC00FC00FC00FC0ull);
        v = (v & 0x0000FFFF0000FFFFull) | (v >> 4 & 0x00FFF00000FFF000ull);
        v = (v & 0x00000000FFFFFFFFull) | (v >> 8 & 0x0000FFFFFF000000ull);
        memcpy(out + 6 * g, &v, 6);
    }
#else
    for (size_t i = 0; i < full * 2; i++) {
        const uint8_t *e = idx + 4 * i;
        uint32_t v = (uint32_t)(e[0] & 63) | (uint32_t)(e[1] & 63) << 6 | (uint32_t)(e[2] & 63) << 12 |
                     (uint32_t)(e[3] & 63) << 18;
        out[3 * i] = (uint8_t)v, out[3 * i + 1] = (uint8_t)(v >> 8), out[3 * i + 2] = (uint8_t)(v >> 16);
    }
#endif
    return full;
}

void lut_pack_indices(const uint8_t *idx, size_t n, int bits, uint8_t *out) {
    if (!valid_bits(bits)) return;
    size_t full = n / 8, g0 = bits == 6 ? pack6_octets(idx, n, out) : 0;
    for (size_t g = g0; g < full; g++) {
        uint64_t word = pack_word(idx + 8 * g, 8, bits);
        for (int b = 0; b < bits; b++) out[g * (size_t)bits + (size_t)b] = (uint8_t)(word >> (8 * b));
    }
    int rem = (int)(n % 8);
    if (rem) {
        uint64_t word = pack_word(idx + 8 * full, rem, bits);
        int nbytes = (rem * bits + 7) / 8;
        for (int b = 0; b < nbytes; b++) out[full * (size_t)bits + (size_t)b] = (uint8_t)(word >> (8 * b));
    }
}

void lut_unpack_indices(const uint8_t *packed, size_t n, int bits, uint8_t *idx) {
    if (!valid_bits(bits)) return;
    size_t full = n / 8;
    for (size_t g = 0; g < full; g++) {
        uint64_t word = 0;
        for (int b = 0; b < bits; b++) word |= (uint64_t)packed[g * (size_t)bits + (size_t)b] << (8 * b);
        unpack_word(word, 8, bits, idx + 8 * g);
    }
    int rem = (int)(n % 8);
    if (rem) {
        uint64_t word = 0;
        int nbytes = (rem * bits + 7) / 8;
        for (int b = 0; b < nbytes; b++) word |= (uint64_t)packed[full * (size_t)bits + (size_t)b] << (8 * b);
        unpack_word(word, rem, bits, idx + 8 * full);
    }
}
