/* lut_pack.h - uint{1,2,3,4,6,8} index streams as Core ML stores them.
 *
 * Element i of width b occupies stream bits [i*b, i*b + b), bit t of the stream being
 * bit t%8 of byte t/8, the element's least significant bit first
 * (coreml_format.md 5.5). So 4-bit: byte j = e[2j] | e[2j+1] << 4; 3- and 6-bit
 * elements straddle bytes (low bits at the top of one byte, the rest at the bottom of
 * the next). The unused high bits of the last byte are 0; a stream of n elements has
 * lut_packed_size(n, b) = ceil(n*b / 8) bytes and (8 - n*b % 8) % 8 padding bits.
 * Blocks whose element count times b is a multiple of 8 pack independently and
 * concatenate (e.g. whole rows of 2048 weights at any width).
 *
 * bits must be one of 1, 2, 3, 4, 6, 8 (other values: the functions do nothing and
 * lut_packed_size returns 0). Buffers are caller-owned; they may not overlap.
 */
#ifndef ANEMLL_QUANT_LUT_PACK_H
#define ANEMLL_QUANT_LUT_PACK_H

#include <stddef.h>
#include <stdint.h>

size_t lut_packed_size(size_t n, int bits);

/* Packs n indices (each < 2^bits; higher bits are dropped) into lut_packed_size bytes. */
void lut_pack_indices(const uint8_t *idx, size_t n, int bits, uint8_t *out);

/* Unpacks n indices from a packed stream (reads lut_packed_size(n, bits) bytes). */
void lut_unpack_indices(const uint8_t *packed, size_t n, int bits, uint8_t *idx);

#endif
