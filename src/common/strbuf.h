/* strbuf.h - a growable string for text built piece by piece (model.mil, protobuf text,
 * meta.yaml).
 *
 *     StrBuf b = {0};
 *     strbuf_printf(&b, "program(%s)\n", "1.3");
 *     char *text = strbuf_take(&b);      // caller frees; b is empty again
 *
 * Growth aborts on out-of-memory like xmalloc; the text is always NUL-terminated. */
#ifndef ANEMLL_COMMON_STRBUF_H
#define ANEMLL_COMMON_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct StrBuf {
    char *s;
    size_t len, cap;
} StrBuf;

void strbuf_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_vprintf(StrBuf *b, const char *fmt, va_list ap);
/* The text (an empty string if nothing was added); the buffer is reset. */
char *strbuf_take(StrBuf *b);

#endif
