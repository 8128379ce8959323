/* lut_option.c - the `--lutN bits[,group]` option (contract in lut.h). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/lut.h"

#define USAGE_HINT "bits[,group] with bits 1, 2, 3, 4, 6 or 8 (e.g. 4, 6,16 or 6,tensor), or '' for no LUT"

/* Copies s[0..len) without surrounding blanks into buf (cap bytes); 0 if it fits. */
static int trimmed(const char *s, size_t len, char *buf, size_t cap) {
    while (len && isspace((unsigned char)*s)) s++, len--;
    while (len && isspace((unsigned char)s[len - 1])) len--;
    if (len >= cap) return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    return 0;
}

/* Decimal digits only, no sign; 0 on success. */
static int parse_count(const char *s, long *out) {
    if (!*s) return -1;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p)) return -1;
    errno = 0;
    long v = strtol(s, NULL, 10);
    if (errno == ERANGE || v > INT_MAX) return -1;
    *out = v;
    return 0;
}

static int parse_bits(const char *option, const char *value, const char *s, int *bits, Err *e) {
    long b;
    if (parse_count(s, &b) < 0)
        return err_set(e, "%s '%s': '%s' is not a number of LUT bits; use " USAGE_HINT, option, value, s);
    if (b == 5 || b == 7)
        return err_set(e,
                       "%s '%s': %ld-bit LUTs do not exist in Core ML (index types are uint1, uint2, uint3, "
                       "uint4, uint6, uint8); use %ld or %ld",
                       option, value, b, b - 1, b + 1);
    if (!(b == 1 || b == 2 || b == 3 || b == 4 || b == 6 || b == 8))
        return err_set(e, "%s '%s': %ld is not a LUT bit width; use " USAGE_HINT, option, value, b);
    *bits = (int)b;
    return 0;
}

static int parse_group(const char *option, const char *value, const char *s, long *group, Err *e) {
    if (strcmp(s, "tensor") == 0) {
        *group = 0;
        return 0;
    }
    if (parse_count(s, group) < 0)
        return err_set(e,
                       "%s '%s': group '%s' is not a number of output channels; use a positive count "
                       "(default %d), or 0 or 'tensor' for one LUT per tensor",
                       option, value, s, LUT_DEFAULT_GROUP);
    return 0;
}

int lut_parse_option(const char *option, const char *value, LutSpec *spec, Err *e) {
    if (!option) option = "--lut";
    char whole[64], bits_s[64], group_s[64];
    if (!value || trimmed(value, strlen(value), whole, sizeof whole) < 0)
        return err_set(e, "%s: value missing or too long; use " USAGE_HINT, option);
    if (!*whole || strcmp(whole, "none") == 0) {
        *spec = (LutSpec){0, 0};
        return 0;
    }
    const char *comma = strchr(whole, ',');
    if (comma && strchr(comma + 1, ','))
        return err_set(e, "%s '%s': too many commas; use " USAGE_HINT, option, value);
    size_t blen = comma ? (size_t)(comma - whole) : strlen(whole);
    trimmed(whole, blen, bits_s, sizeof bits_s);
    LutSpec s = {0, LUT_DEFAULT_GROUP};
    if (parse_bits(option, value, bits_s, &s.bits, e) < 0) return -1;
    if (comma) {
        trimmed(comma + 1, strlen(comma + 1), group_s, sizeof group_s);
        if (parse_group(option, value, group_s, &s.group, e) < 0) return -1;
    }
    *spec = s;
    return 0;
}

/* Largest divisor of n that is <= g (>= 1), and smallest divisor >= g (or 0 if none). */
static void nearby_divisors(long n, long g, long *below, long *above) {
    *below = 1, *above = 0;
    for (long d = g; d >= 1; d--)
        if (n % d == 0) { *below = d; break; }
    for (long d = g; d <= n; d++)
        if (n % d == 0) { *above = d; break; }
}

int lut_check_channels(const LutSpec *spec, const char *option, const char *tensor, long out_channels,
                       Err *e) {
    if (!option) option = "--lut";
    if (!tensor) tensor = "?";
    if (spec->bits == 0 || spec->group == 0) return 0;
    if (out_channels <= 0) return err_set(e, "%s: tensor %s has no output channels", option, tensor);
    if (out_channels % spec->group == 0) return 0;
    long below, above;
    nearby_divisors(out_channels, spec->group, &below, &above);
    char alt[64] = "";
    if (above) snprintf(alt, sizeof alt, " or %ld", above);
    return err_set(e,
                   "%s %d,%ld: tensor %s has %ld output channels, which groups of %ld do not divide; "
                   "use a group that divides %ld (e.g. %d,%ld%s), or %d,0 for one LUT per tensor",
                   option, spec->bits, spec->group, tensor, out_channels, spec->group, out_channels, spec->bits,
                   below, alt, spec->bits);
}

const char *lut_spec_str(const LutSpec *spec, char buf[32]) {
    if (spec->bits == 0) snprintf(buf, 32, "%s", "");
    else if (spec->group == 0) snprintf(buf, 32, "%d,tensor", spec->bits);
    else snprintf(buf, 32, "%d,%ld", spec->bits, spec->group);
    return buf;
}
