/* fuzz_mlpackage.c - libFuzzer target for the .mlpackage reader.
 *
 * Input framing (little-endian):  u32 manifest_len | u32 model_len | manifest | model | weight.bin
 * Lengths larger than what follows are clamped, so every input is some package. A manifest
 * length of 0xFFFFFFFF means "no Manifest.json" (reads the model directly).
 *
 * Each input is opened from memory (pkg_open_memory: manifest, protobuf, weight blobs, op
 * checks; strict or lenient by the low bit of model_len). A package that opens is printed as
 * model.mlmodel text, re-encoded, decoded again and compared with itself: the reader and the
 * writer must agree on everything they accept.
 *
 *     make fuzz FUZZ_SECONDS=60      (see fuzz/module.mk)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coreml/internal.h"
#include "coreml/package.h"
#include "mil/print.h"

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Blob placement for re-encoding: data must already be in the (single) weight file. */
static int keep_offsets(void *ctx, const MilValue *v, uint64_t *offset, Err *e) {
    (void)ctx;
    if (v->data->kind != MIL_CONST_BLOB) return err_set(e, "would need a new blob");
    *offset = v->data->blob.offset;
    return 0;
}

typedef struct Mem {
    const uint8_t *weights;
    size_t len;
    BlobFile *file;
} Mem;

static int resolve(void *ctx, const char *rel, const BlobFile **out, Err *e) {
    Mem *m = ctx;
    if (strcmp(rel, "weights/weight.bin") || !m->weights) return err_set(e, "no such weight file");
    if (!m->file && blob_file_from_memory(&m->file, m->weights, m->len, "weight.bin", e) < 0) return -1;
    *out = m->file;
    return 0;
}

static void round_trip(const Package *pkg, const uint8_t *weights, size_t wlen) {
    uint8_t *bytes;
    size_t len;
    Err e;
    if (cml_encode(pkg->prog, &pkg->desc, pkg->spec_version, keep_offsets, NULL, &bytes, &len, &e) < 0) return;
    Mem m = {weights, wlen, NULL};
    MilProgram *p2;
    PkgDescription d2;
    int spec2;
    if (cml_decode(bytes, len, resolve, &m, PKG_OPEN_LENIENT, &p2, &d2, &spec2, &e) < 0) {
        /* what the reader accepted once, it must accept again after our own encoding */
        fprintf(stderr, "re-decoding failed: %s\n", e.msg);
        abort();
    }
    if (cml_match_description(p2, &d2, &e) < 0 || mil_program_compare(pkg->prog, p2, &e) < 0 || spec2 != pkg->spec_version) {
        fprintf(stderr, "round trip differs: %s\n", e.msg);
        abort();
    }
    mil_program_free(p2);
    blob_file_close(m.file);
    free(bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    uint32_t mlen = le32(data), plen = le32(data + 4);
    size_t rest = size - 8;
    int no_manifest = mlen == 0xFFFFFFFFu;
    if (no_manifest) mlen = 0;
    if (mlen > rest) mlen = (uint32_t)rest;
    if (plen > rest - mlen) plen = (uint32_t)(rest - mlen);
    size_t wlen = rest - mlen - plen;
    /* exact-size copies, so any over-read is caught */
    char *manifest = malloc(mlen ? mlen : 1);
    uint8_t *model = malloc(plen ? plen : 1), *weights = malloc(wlen ? wlen : 1);
    memcpy(manifest, data + 8, mlen);
    memcpy(model, data + 8 + mlen, plen);
    memcpy(weights, data + 8 + mlen + plen, wlen);
    PkgMemory mem = {no_manifest ? NULL : manifest, mlen, model, plen, wlen ? weights : NULL, wlen};
    Package *pkg;
    Err e;
    if (pkg_open_memory(&pkg, &mem, (plen & 1) ? PKG_OPEN_LENIENT : 0, &e) == 0) {
        char *text = mil_program_to_text(pkg->prog);
        free(text);
        if (pkg_model_to_text(model, plen, &text, &e) == 0) free(text);
        round_trip(pkg, wlen ? weights : NULL, wlen);
        pkg_close(pkg);
    }
    free(manifest);
    free(model);
    free(weights);
    return 0;
}
