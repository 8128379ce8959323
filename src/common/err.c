#include "common/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int err_set(Err *e, const char *fmt, ...) {
    if (!e) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int err_wrap(Err *e, const char *fmt, ...) {
    if (!e) return -1;
    char ctx[sizeof e->msg], old[sizeof e->msg];
    memcpy(old, e->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    snprintf(e->msg, sizeof e->msg, "%.1000s: %.1000s", ctx, old);
    return -1;
}

int err_errno(Err *e, const char *fmt, ...) {
    int saved = errno;
    if (!e) return -1;
    char ctx[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    snprintf(e->msg, sizeof e->msg, "%.1500s: %.200s", ctx, strerror(saved));
    return -1;
}

void an_assert_fail(const char *what, const char *file, int line) {
    fprintf(stderr, "internal error: assertion '%s' failed at %s:%d\n", what, file, line);
    abort();
}
