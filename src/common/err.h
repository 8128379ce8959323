/* err.h - error reporting for library code.
 *
 * Library functions never print or exit. They return 0 on success and -1 on
 * failure, with a human-readable message in an Err the caller passed in:
 *
 *     Err e = {0};
 *     if (st_open(&f, path, &e) < 0) { fprintf(stderr, "error: %s\n", e.msg); ... }
 *
 * Messages name the thing that is wrong (file, tensor, option) and, where one
 * exists, the fix. Only cli/ prints them and decides the exit status.
 */
#ifndef ANEMLL_ERR_H
#define ANEMLL_ERR_H

#include <stddef.h>

typedef struct Err {
    char msg[2048];
} Err;

/* Sets the message (printf format). Always returns -1, so: return err_set(e, ...); */
int err_set(Err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes context to the current message: "<context>: <old message>". Returns -1. */
int err_wrap(Err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* err_set with ": <strerror(errno)>" appended. Returns -1. */
int err_errno(Err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Internal invariant that must hold whatever the input; a failure is a bug. */
#define AN_ASSERT(cond)                                                                  \
    do {                                                                                 \
        if (!(cond)) an_assert_fail(#cond, __FILE__, __LINE__);                          \
    } while (0)
void an_assert_fail(const char *what, const char *file, int line) __attribute__((noreturn));

#endif
