/* unicode_tables.h - Unicode normalization data (generated into unicode_tables.c by
 * scripts/gen-unicode-tables.py). Every table is sorted by its first field. */
#ifndef ANEMLL_UNICODE_TABLES_H
#define ANEMLL_UNICODE_TABLES_H

#include <stdint.h>

typedef struct {
    uint32_t cp;
    uint8_t ccc; /* canonical combining class, never 0 in the table */
} UniCombiningClass;

typedef struct {
    uint32_t cp;
    /* Full decompositions as (offset, length) into uni_decomp_pool; length 0 = none. */
    uint16_t canon_off, canon_len;
    uint16_t compat_off, compat_len;
} UniDecomposition;

typedef struct {
    uint32_t first, second, composite;
} UniComposition;

extern const char unicode_tables_version[];
extern const UniCombiningClass uni_ccc[];
extern const int uni_ccc_count;
extern const uint32_t uni_decomp_pool[];
extern const UniDecomposition uni_decomp[];
extern const int uni_decomp_count;
extern const UniComposition uni_comp[];
extern const int uni_comp_count;

#endif
