/* unicode.c - strict UTF-8 and UAX #15 normalization (see unicode.h). */
#include "runtime/unicode.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "runtime/strbuf.h"
#include "runtime/unicode_tables.h"

/* ---- UTF-8 ------------------------------------------------------------------ */

/* Valid range of the second byte of a sequence that starts with `lead`
 * (the first-byte-dependent limits that exclude overlongs, surrogates and > U+10FFFF). */
static int utf8_second_byte_ok(unsigned char lead, unsigned char b) {
    switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return b >= 0x80 && b <= 0xBF;
    }
}

static int utf8_seq_len(unsigned char lead) {
    if (lead < 0x80) return 1;
    if (lead >= 0xC2 && lead <= 0xDF) return 2;
    if (lead >= 0xE0 && lead <= 0xEF) return 3;
    if (lead >= 0xF0 && lead <= 0xF4) return 4;
    return 0;
}

/* Length of the valid prefix of a (possibly incomplete) sequence at s: how many
 * bytes belong to it before it goes wrong. Sets *complete if it is a whole character. */
static int utf8_scan(const unsigned char *s, size_t n, int *complete) {
    *complete = 0;
    if (n == 0) return 0;
    int len = utf8_seq_len(s[0]);
    if (len == 0) return 1;
    if (len == 1) {
        *complete = 1;
        return 1;
    }
    int i = 1;
    for (; i < len && (size_t)i < n; i++) {
        int ok = i == 1 ? utf8_second_byte_ok(s[0], s[1]) : (s[i] & 0xC0) == 0x80;
        if (!ok) return i;
    }
    *complete = i == len;
    return i;
}

int utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    int complete;
    int len = utf8_scan(u, n, &complete);
    if (!complete) return 0;
    switch (len) {
    case 1: *cp = u[0]; break;
    case 2: *cp = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F); break;
    case 3: *cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F); break;
    default:
        *cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
              ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
    }
    return len;
}

int utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t utf8_valid_prefix(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        int complete;
        int len = utf8_scan((const unsigned char *)s + i, n - i, &complete);
        if (!complete) return i;
        i += (size_t)len;
    }
    return n;
}

size_t utf8_complete_prefix(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int complete;
        int len = utf8_scan((const unsigned char *)s + i, n - i, &complete);
        if (!complete && i + (size_t)len == n && len < utf8_seq_len((unsigned char)s[i])) return i;
        i += (size_t)len;
    }
    return n;
}

char *utf8_lossy(const char *s, size_t n, size_t *out_len) {
    StrBuf b = {0};
    sb_reserve(&b, n);
    size_t i = 0;
    while (i < n) {
        int complete;
        int len = utf8_scan((const unsigned char *)s + i, n - i, &complete);
        if (complete) sb_add(&b, s + i, (size_t)len);
        else sb_add(&b, "\xEF\xBF\xBD", 3);
        i += (size_t)len;
    }
    return sb_take(&b, out_len);
}

int uni_is_whitespace(uint32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000:
        return 1;
    }
    return cp >= 0x2000 && cp <= 0x200A;
}

/* ---- normalization ------------------------------------------------------------ */

/* Hangul syllables decompose and compose arithmetically (Unicode ch. 3.12). */
enum {
    HANGUL_S = 0xAC00, HANGUL_L = 0x1100, HANGUL_V = 0x1161, HANGUL_T = 0x11A7,
    HANGUL_LCOUNT = 19, HANGUL_VCOUNT = 21, HANGUL_TCOUNT = 28,
    HANGUL_NCOUNT = HANGUL_VCOUNT * HANGUL_TCOUNT, HANGUL_SCOUNT = HANGUL_LCOUNT * HANGUL_NCOUNT
};

static int ccc_of(uint32_t cp) {
    if (cp < 0x300) return 0;
    int lo = 0, hi = uni_ccc_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (uni_ccc[mid].cp == cp) return uni_ccc[mid].ccc;
        if (uni_ccc[mid].cp < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

static const UniDecomposition *decomposition_of(uint32_t cp) {
    int lo = 0, hi = uni_decomp_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (uni_decomp[mid].cp == cp) return &uni_decomp[mid];
        if (uni_decomp[mid].cp < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

/* Composite of (a, b), or 0 if the pair does not compose. */
static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= HANGUL_L && a < HANGUL_L + HANGUL_LCOUNT && b >= HANGUL_V && b < HANGUL_V + HANGUL_VCOUNT)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_VCOUNT + (b - HANGUL_V)) * HANGUL_TCOUNT;
    if (a >= HANGUL_S && a < HANGUL_S + HANGUL_SCOUNT && (a - HANGUL_S) % HANGUL_TCOUNT == 0 &&
        b > HANGUL_T && b < HANGUL_T + HANGUL_TCOUNT)
        return a + (b - HANGUL_T);
    int lo = 0, hi = uni_comp_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const UniComposition *c = &uni_comp[mid];
        if (c->first == a && c->second == b) return c->composite;
        if (c->first < a || (c->first == a && c->second < b)) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

typedef struct {
    uint32_t *v;
    size_t n, cap;
} CpVec;

static void cp_push(CpVec *a, uint32_t cp) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->v = xrealloc(a->v, sizeof *a->v * a->cap);
    }
    a->v[a->n++] = cp;
}

static void decompose_into(CpVec *out, uint32_t cp, int compat) {
    if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_SCOUNT) {
        uint32_t s = cp - HANGUL_S;
        cp_push(out, HANGUL_L + s / HANGUL_NCOUNT);
        cp_push(out, HANGUL_V + (s % HANGUL_NCOUNT) / HANGUL_TCOUNT);
        if (s % HANGUL_TCOUNT) cp_push(out, HANGUL_T + s % HANGUL_TCOUNT);
        return;
    }
    const UniDecomposition *d = cp < 0xA0 ? NULL : decomposition_of(cp);
    int off = d ? (compat ? d->compat_off : d->canon_off) : 0;
    int len = d ? (compat ? d->compat_len : d->canon_len) : 0;
    if (len == 0) {
        cp_push(out, cp);
        return;
    }
    for (int i = 0; i < len; i++) cp_push(out, uni_decomp_pool[off + i]);
}

/* Canonical ordering: stable sort of every run of non-starters by combining class. */
static void reorder(CpVec *a) {
    for (size_t i = 1; i < a->n; i++) {
        int cc = ccc_of(a->v[i]);
        if (cc == 0) continue;
        size_t j = i;
        uint32_t cp = a->v[i];
        while (j > 0 && ccc_of(a->v[j - 1]) > cc) {
            a->v[j] = a->v[j - 1];
            j--;
        }
        a->v[j] = cp;
    }
}

/* Canonical composition in place (UAX #15 section 1.3: a character composes with the
 * last starter unless something between them blocks it). */
static void compose(CpVec *a) {
    size_t out = 0;
    long starter = -1;
    int last_cc = 0;
    for (size_t i = 0; i < a->n; i++) {
        uint32_t cp = a->v[i];
        int cc = ccc_of(cp);
        if (starter >= 0) {
            int adjacent = (size_t)starter == out - 1;
            if (adjacent || (last_cc != 0 && last_cc < cc)) {
                uint32_t c = compose_pair(a->v[starter], cp);
                if (c) {
                    a->v[starter] = c;
                    continue;
                }
            }
        }
        if (cc == 0) starter = (long)out;
        last_cc = cc;
        a->v[out++] = cp;
    }
    a->n = out;
}

char *uni_normalize(const char *s, size_t n, UniForm form, size_t *out_len) {
    int compat = form == UNI_NFKC || form == UNI_NFKD;
    int composed = form == UNI_NFC || form == UNI_NFKC;
    /* Below U+0300 (lead bytes < 0xCC) text is already NFC; ASCII is in every form. */
    unsigned char limit = form == UNI_NFC ? 0xCC : 0x80;
    size_t k = 0;
    while (k < n && (unsigned char)s[k] < limit) k++;
    if (k == n) {
        char *copy = xmalloc(n + 1);
        memcpy(copy, s, n);
        copy[n] = 0;
        *out_len = n;
        return copy;
    }
    StrBuf b = {0};
    CpVec cps = {0};
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int len = utf8_decode(s + i, n - i, &cp);
        if (len == 0) { /* callers pass valid UTF-8; keep going rather than loop forever */
            cp = UNI_REPLACEMENT;
            len = 1;
        }
        decompose_into(&cps, cp, compat);
        i += (size_t)len;
    }
    reorder(&cps);
    if (composed) compose(&cps);
    sb_reserve(&b, n);
    for (size_t j = 0; j < cps.n; j++) {
        char u[4];
        sb_add(&b, u, (size_t)utf8_encode(cps.v[j], u));
    }
    free(cps.v);
    return sb_take(&b, out_len);
}
