/* strbuf.c - growable string (see strbuf.h). */
#include <stdio.h>
#include <stdlib.h>

#include "common/strbuf.h"
#include "common/err.h"
#include "common/util.h"

void strbuf_vprintf(StrBuf *b, const char *fmt, va_list ap) {
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, again);
    va_end(again);
    AN_ASSERT(n >= 0);
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void strbuf_printf(StrBuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    strbuf_vprintf(b, fmt, ap);
    va_end(ap);
}

char *strbuf_take(StrBuf *b) {
    char *s = b->s ? b->s : xcalloc(1, 1);
    b->s = NULL;
    b->len = b->cap = 0;
    return s;
}
