/* fuzz_safetensors.c - libFuzzer target for the safetensors reader.
 *
 * Input: a whole .safetensors file. It is placed in a memory file (memfd) and opened by path
 * (/proc/self/fd/N), so st_open runs as on a disk file: fstat, mmap, header validation. Every
 * tensor of a file that opens is then read whole as fp32 and fp16 and by rows, and its view
 * must lie inside the file: the validated header promises both.
 *
 *     make fuzz-one FUZZ_TARGET=safetensors FUZZ_SECONDS=60      (see fuzz/module.mk)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "io/safetensors.h"

static int memfd = -1;
static char path[64];

static void check_tensor(const StFile *f, const StTensor *t, size_t file_size) {
    Err e;
    if (t->offset > file_size || t->nbytes > file_size - t->offset) {
        fprintf(stderr, "tensor '%s' [%llu, +%zu) lies outside the %zu-byte file\n", t->name,
                (unsigned long long)t->offset, t->nbytes, file_size);
        abort();
    }
    if (st_find(f, t->name) != t) abort();
    float *f32 = xmalloc(t->numel * sizeof *f32 + 1);
    uint16_t *f16 = xmalloc(t->numel * sizeof *f16 + 1);
    if (st_read_f32(t, f32, &e) < 0 || st_read_f16(t, f16, &e) < 0) {
        fprintf(stderr, "reading a validated tensor failed: %s\n", e.msg);
        abort();
    }
    size_t rows = st_rows(t);
    if (rows > 1 && st_read_rows_f32(t, rows / 2, rows - rows / 2, f32, &e) < 0) abort();
    if (st_read_rows_f16(t, rows, 1, f16, &e) == 0) abort(); /* one past the end */
    free(f32);
    free(f16);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (memfd < 0) {
        memfd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
        if (memfd < 0) abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    }
    if (ftruncate(memfd, 0) < 0 || (size && pwrite(memfd, data, size, 0) != (ssize_t)size)) abort();
    StFile *f;
    Err e;
    if (st_open(&f, path, &e) < 0) return 0;
    for (size_t i = 0; i < st_count(f); i++) check_tensor(f, st_tensor(f, i), size);
    st_close(f);
    return 0;
}
