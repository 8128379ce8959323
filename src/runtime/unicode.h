/* unicode.h - UTF-8 and Unicode normalization for the tokenizer.
 *
 * UTF-8 here is strict (RFC 3629): no overlong forms, no surrogates, nothing past
 * U+10FFFF. Functions returning a string allocate it (NUL-terminated; the caller
 * frees it) and report its byte length through *out_len.
 * Normalization follows UAX #15 with the tables in unicode_tables.c (Unicode
 * version: unicode_tables_version).
 */
#ifndef ANEMLL_UNICODE_H
#define ANEMLL_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#define UNI_REPLACEMENT 0xFFFDu

/* Decodes the code point at s[0..n). Returns its byte length (1..4), or 0 if the
 * bytes there are not valid UTF-8 (or n == 0). */
int utf8_decode(const char *s, size_t n, uint32_t *cp);
/* Writes cp (<= 0x10FFFF) as UTF-8 into out; returns the byte count (1..4). */
int utf8_encode(uint32_t cp, char out[4]);
/* Byte offset of the first invalid UTF-8 sequence in s[0..n), or n if all valid. */
size_t utf8_valid_prefix(const char *s, size_t n);
/* Byte length of the longest prefix of s[0..n) that ends on a character boundary
 * (drops a trailing incomplete sequence; invalid bytes count as characters). */
size_t utf8_complete_prefix(const char *s, size_t n);
/* Copies s, replacing each invalid sequence by U+FFFD using the "maximal subpart"
 * rule (as Rust's String::from_utf8_lossy and the WHATWG decoder do). */
char *utf8_lossy(const char *s, size_t n, size_t *out_len);

/* Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s accept). */
int uni_is_whitespace(uint32_t cp);

typedef enum { UNI_NFC, UNI_NFD, UNI_NFKC, UNI_NFKD } UniForm;

/* Normalizes valid UTF-8 text s[0..n) to the given form. */
char *uni_normalize(const char *s, size_t n, UniForm form, size_t *out_len);

#endif
