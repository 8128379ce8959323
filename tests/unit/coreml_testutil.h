/* coreml_testutil.h - small helpers for the mil/coreml unit tests (static, header only, so no
 * symbols are shared with other modules' tests). Include after <cmocka.h>. */
#ifndef ANEMLL_COREML_TESTUTIL_H
#define ANEMLL_COREML_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* Fails the test unless haystack contains needle (prints both). */
#define assert_contains(haystack, needle)                                                                 \
    do {                                                                                                  \
        const char *h_ = (haystack), *n_ = (needle);                                                      \
        if (!h_ || !strstr(h_, n_)) {                                                                     \
            print_error("expected a message containing \"%s\", got \"%s\"\n", n_, h_ ? h_ : "(null)");    \
            fail();                                                                                       \
        }                                                                                                 \
    } while (0)

/* The shared reference material, or NULL (the caller skips) when it is absent and
 * REQUIRE_SHARED is not 1. */
static inline const char *shared_dir(void) {
    const char *s = getenv("SHARED");
    if (!s || !*s) s = "../shared";
    char *golden = path_join(s, "golden");
    int ok = path_is_dir(golden);
    free(golden);
    if (ok) return s;
    const char *req = getenv("REQUIRE_SHARED");
    if (req && !strcmp(req, "1")) {
        print_error("SHARED=%s has no golden/ directory\n", s);
        fail();
    }
    return NULL;
}

/* Joins SHARED and a relative path; caller frees. */
static inline char *shared_path(const char *rel) {
    const char *s = shared_dir();
    return s ? path_join(s, rel) : NULL;
}

/* A fresh scratch directory under TEST_TMP (or /tmp); caller removes and frees. */
/* Fails the test with e's message when rc < 0 (the library's return convention). */
static inline void ok(int rc, const Err *e) {
    if (rc < 0) {
        print_error("unexpected error: %s\n", e->msg);
        fail();
    }
}

static inline char *scratch_dir(const char *tag) {
    const char *base = getenv("TEST_TMP");
    if (!base || !*base) base = "/tmp";
    char *t = xasprintf("%s/%s.XXXXXX", base, tag);
    if (!mkdtemp(t)) {
        print_error("cannot create a scratch directory %s\n", t);
        fail();
    }
    return t;
}

static inline char *read_text(const char *path, size_t *len) {
    char *buf = NULL;
    Err e;
    if (file_read_all(path, (size_t)1 << 31, &buf, len, &e) < 0) {
        print_error("%s\n", e.msg);
        fail();
    }
    return buf;
}

static inline void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f)) {
        print_error("cannot write %s\n", path);
        fail();
    }
}

/* 1 if the two files have the same bytes. */
static inline int same_file(const char *a, const char *b) {
    size_t la, lb;
    char *x = read_text(a, &la), *y = read_text(b, &lb);
    int same = la == lb && !memcmp(x, y, la);
    free(x);
    free(y);
    return same;
}

#endif
