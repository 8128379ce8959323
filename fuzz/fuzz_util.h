/* fuzz_util.h - small helpers shared by the fuzz targets (header-only; each target is one
 * translation unit): little-endian framing and a scratch folder for targets whose code under
 * test reads files by path. */
#ifndef ANEMLL_FUZZ_UTIL_H
#define ANEMLL_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

static inline uint32_t fuzz_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Takes a u32 length and that many bytes (clamped to what is left) off the front of *data. */
static inline void fuzz_take(const uint8_t **data, size_t *size, const uint8_t **part, size_t *len) {
    if (*size < 4) {
        *part = *data + *size;
        *len = 0;
        *size = 0;
        return;
    }
    size_t n = fuzz_le32(*data);
    *data += 4;
    *size -= 4;
    if (n > *size) n = *size;
    *part = *data;
    *len = n;
    *data += n;
    *size -= n;
}

/* A copy of exactly len bytes (so any over-read is caught), NUL-terminated one past the end
 * only when nul is set. */
static inline char *fuzz_copy(const uint8_t *p, size_t len, int nul) {
    size_t size = nul ? len + 1 : len ? len : 1;
    char *c = xmalloc(size);
    memcpy(c, p, len);
    if (nul) c[len] = 0;
    return c;
}

/* A private folder in /dev/shm (memory) or $TMPDIR, removed at exit. */
static char *fuzz_scratch;
static void fuzz_scratch_remove(void) {
    if (fuzz_scratch) remove_tree(fuzz_scratch);
}
static inline const char *fuzz_scratch_dir(void) {
    if (fuzz_scratch) return fuzz_scratch;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    fuzz_scratch = xasprintf("%s/anemll-fuzz.XXXXXX", base);
    if (!mkdtemp(fuzz_scratch)) {
        perror("mkdtemp");
        abort();
    }
    atexit(fuzz_scratch_remove);
    return fuzz_scratch;
}

/* Writes a whole file (the harness's own I/O: failure is fatal). */
static inline void fuzz_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f)) {
        perror(path);
        abort();
    }
}

#endif
