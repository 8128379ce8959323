/* strbuf.h - growable byte strings and int arrays for the runtime module (internal).
 *
 * A StrBuf owns its bytes, always NUL-terminated once anything was appended;
 * sb_take hands the buffer to the caller (who frees it) and resets the StrBuf.
 * Allocation failure aborts (see common/util.h).
 */
#ifndef ANEMLL_RUNTIME_STRBUF_H
#define ANEMLL_RUNTIME_STRBUF_H

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

typedef struct {
    char *data;
    size_t len, cap;
} StrBuf;

static inline void sb_reserve(StrBuf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

static inline void sb_add(StrBuf *b, const void *p, size_t n) {
    sb_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

static inline void sb_addc(StrBuf *b, char c) { sb_add(b, &c, 1); }
static inline void sb_adds(StrBuf *b, const char *s) { sb_add(b, s, strlen(s)); }
static inline void sb_clear(StrBuf *b) {
    b->len = 0;
    if (b->data) b->data[0] = 0;
}
static inline void sb_free(StrBuf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
/* Returns the (NUL-terminated, possibly empty) string; the caller frees it. */
static inline char *sb_take(StrBuf *b, size_t *len) {
    sb_reserve(b, 0);
    b->data[b->len] = 0;
    char *s = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

typedef struct {
    int *v;
    int n, cap;
} IntVec;

static inline void iv_push(IntVec *a, int x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->v = xrealloc(a->v, sizeof *a->v * (size_t)a->cap);
    }
    a->v[a->n++] = x;
}
static inline void iv_free(IntVec *a) {
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

#endif
