/* weight.bin (blob storage v2): the byte layout against the worked example of
 * coreml_format.md 5.6, de-duplication, sub-byte padding bits, and every check of the reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "coreml/blob.h"
#include "coreml_testutil.h"

static char *dir;

static int setup(void **state) {
    (void)state;
    dir = scratch_dir("blobtest");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(dir);
    free(dir);
    return 0;
}

static uint32_t u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static char *write_two_fp16(void) {
    char *path = path_join(dir, "two.bin");
    BlobWriter *w;
    Err e;
    assert_int_equal(blob_writer_open(&w, path, &e), 0);
    uint16_t a[5] = {0x3C00, 0x4000, 0x4200, 0x4400, 0x4500}, b[3] = {0xBC00, 0x0001, 0x7BFF};
    uint64_t off_a, off_b;
    assert_int_equal(blob_writer_add(w, MIL_FP16, 5, a, &off_a, NULL, &e), 0);
    assert_int_equal(blob_writer_add(w, MIL_FP16, 3, b, &off_b, NULL, &e), 0);
    assert_int_equal(off_a, 64);
    assert_int_equal(off_b, 192);
    assert_int_equal(blob_writer_finish(w, &e), 0);
    blob_writer_free(w);
    return path;
}

/* coreml_format.md 5.6: two fp16 blobs of 5 and 3 elements. */
static void test_golden_layout(void **state) {
    (void)state;
    char *path = write_two_fp16();
    size_t len;
    uint8_t *f = (uint8_t *)read_text(path, &len);
    assert_int_equal(len, 256 + 6);   /* no padding after the last blob */
    assert_int_equal(u32(f), 2);        /* count */
    assert_int_equal(u32(f + 4), 2);    /* version */
    for (int i = 8; i < 64; i++) assert_int_equal(f[i], 0);
    /* first record at 64 */
    static const uint8_t sentinel[4] = {0xEF, 0xBE, 0xAD, 0xDE};
    assert_memory_equal(f + 64, sentinel, 4);
    assert_int_equal(u32(f + 68), 1);      /* fp16 */
    assert_int_equal(u64(f + 72), 10);     /* size */
    assert_int_equal(u64(f + 80), 128);    /* data offset */
    assert_int_equal(u64(f + 88), 0);      /* padding bits */
    for (int i = 96; i < 128; i++) assert_int_equal(f[i], 0);
    static const uint8_t data_a[10] = {0x00, 0x3C, 0x00, 0x40, 0x00, 0x42, 0x00, 0x44, 0x00, 0x45};
    assert_memory_equal(f + 128, data_a, 10);
    for (int i = 138; i < 192; i++) assert_int_equal(f[i], 0);   /* zero fill to the next record */
    assert_memory_equal(f + 192, sentinel, 4);
    assert_int_equal(u32(f + 196), 1);
    assert_int_equal(u64(f + 200), 6);
    assert_int_equal(u64(f + 208), 256);
    static const uint8_t data_b[6] = {0x00, 0xBC, 0x01, 0x00, 0xFF, 0x7B};
    assert_memory_equal(f + 256, data_b, 6);

    /* and the reader sees the same */
    BlobFile *bf;
    Err e;
    assert_int_equal(blob_file_open(&bf, path, &e), 0);
    assert_int_equal(blob_file_count(bf), 2);
    BlobInfo infos[4];
    uint32_t n;
    assert_int_equal(blob_file_walk(bf, infos, 4, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_int_equal(infos[1].offset, 192);
    assert_int_equal(infos[1].nbytes, 6);
    assert_int_equal(infos[1].dtype, MIL_FP16);
    assert_memory_equal(infos[1].data, data_b, 6);
    assert_int_equal(blob_check_elements(bf, &infos[0], MIL_FP16, 5, &e), 0);
    blob_file_close(bf);
    free(f);
    free(path);
}

static void test_dedup(void **state) {
    (void)state;
    char *path = path_join(dir, "dedup.bin");
    BlobWriter *w;
    Err e;
    assert_int_equal(blob_writer_open(&w, path, &e), 0);
    uint8_t data[4096];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7);
    uint64_t o1, o2, o3, o4, o5, o6;
    int reused;
    assert_int_equal(blob_writer_add(w, MIL_UINT8, 4096, data, &o1, &reused, &e), 0);
    assert_false(reused);
    assert_int_equal(blob_writer_add(w, MIL_UINT8, 4096, data, &o2, &reused, &e), 0);
    assert_true(reused);
    assert_int_equal(o1, o2);
    assert_int_equal(blob_writer_add(w, MIL_INT8, 4096, data, &o3, &reused, &e), 0);   /* other dtype */
    assert_false(reused);
    assert_int_not_equal(o3, o1);
    data[4095] ^= 1;   /* same size, one byte differs */
    assert_int_equal(blob_writer_add(w, MIL_UINT8, 4096, data, &o4, &reused, &e), 0);
    assert_false(reused);
    /* uint3: 3 and 5 elements both take 2 bytes; same bytes, different counts are different blobs */
    uint8_t two[2] = {0x11, 0x00};
    assert_int_equal(blob_writer_add(w, MIL_UINT3, 3, two, &o5, NULL, &e), 0);
    assert_int_equal(blob_writer_add(w, MIL_UINT3, 5, two, &o6, &reused, &e), 0);
    assert_false(reused);
    assert_int_equal(blob_writer_count(w), 5);
    assert_int_equal(blob_writer_reused_bytes(w), 4096);
    assert_int_equal(blob_writer_finish(w, &e), 0);
    blob_writer_free(w);
    BlobFile *bf;
    assert_int_equal(blob_file_open(&bf, path, &e), 0);
    BlobInfo b;
    assert_int_equal(blob_file_get(bf, o5, &b, &e), 0);
    assert_int_equal(b.padding_bits, 7);   /* 3 x 3 bits in 16 */
    assert_int_equal(blob_check_elements(bf, &b, MIL_UINT3, 3, &e), 0);
    assert_int_equal(blob_file_get(bf, o6, &b, &e), 0);
    assert_int_equal(b.padding_bits, 1);   /* 5 x 3 bits in 16 */
    assert_int_equal(blob_check_elements(bf, &b, MIL_UINT3, 5, &e), 0);
    assert_int_equal(blob_check_elements(bf, &b, MIL_UINT3, 4, &e), -1);
    assert_contains(e.msg, "holds 5 uint3 elements but the tensor using it has 4");
    blob_file_close(bf);
    free(path);
}

static void test_subbyte_padding_fields(void **state) {
    (void)state;
    char *path = path_join(dir, "sub.bin");
    BlobWriter *w;
    Err e;
    assert_int_equal(blob_writer_open(&w, path, &e), 0);
    static const struct { MilDType dt; uint64_t n, bytes, pad; } cases[] = {
        {MIL_UINT4, 5, 3, 4}, {MIL_UINT6, 3, 3, 6}, {MIL_UINT2, 7, 2, 2}, {MIL_UINT1, 9, 2, 7},
        {MIL_UINT4, 4096, 2048, 0}, {MIL_INT4, 3, 2, 4},
    };
    uint8_t zero[4096] = {0};
    uint64_t offs[6];
    for (int i = 0; i < 6; i++) assert_int_equal(blob_writer_add(w, cases[i].dt, cases[i].n, zero + i, &offs[i], NULL, &e), 0);
    assert_int_equal(blob_writer_finish(w, &e), 0);
    blob_writer_free(w);
    BlobFile *bf;
    assert_int_equal(blob_file_open(&bf, path, &e), 0);
    for (int i = 0; i < 6; i++) {
        BlobInfo b;
        assert_int_equal(blob_file_get(bf, offs[i], &b, &e), 0);
        assert_int_equal(b.dtype, cases[i].dt);
        assert_int_equal(b.nbytes, cases[i].bytes);
        assert_int_equal(b.padding_bits, cases[i].pad);
        assert_int_equal(blob_check_elements(bf, &b, cases[i].dt, cases[i].n, &e), 0);
    }
    blob_file_close(bf);
    free(path);
}

/* Corrupts a copy of the two-blob file and expects the reader to say what is wrong. */
static void expect_bad(void (*corrupt)(uint8_t *f, size_t *len), uint64_t offset, const char *want) {
    char *path = write_two_fp16();
    size_t len;
    uint8_t *f = (uint8_t *)read_text(path, &len);
    corrupt(f, &len);
    BlobFile *bf;
    Err e;
    int rc = blob_file_from_memory(&bf, f, len, "bad.bin", &e);
    if (rc == 0) {
        BlobInfo b;
        rc = blob_file_get(bf, offset, &b, &e);
        if (rc == 0) rc = blob_check_elements(bf, &b, MIL_FP16, offset == 64 ? 5 : 3, &e);
        blob_file_close(bf);
    }
    assert_int_equal(rc, -1);
    assert_contains(e.msg, want);
    free(f);
    free(path);
}

static void bad_version(uint8_t *f, size_t *len) { (void)len; f[4] = 1; }
static void bad_sentinel(uint8_t *f, size_t *len) { (void)len; f[192] = 0xEE; }
static void truncated(uint8_t *f, size_t *len) { (void)f; *len -= 3; }
static void short_header(uint8_t *f, size_t *len) { (void)f; *len = 40; }
static void bad_dtype_code(uint8_t *f, size_t *len) { (void)len; f[196] = 99; }
static void dtype_fp32(uint8_t *f, size_t *len) { (void)len; f[196] = 2; f[200] = 4; }   /* fp32, 4 bytes */
static void odd_size(uint8_t *f, size_t *len) { (void)len; f[200] = 5; }
static void pad_on_fp16(uint8_t *f, size_t *len) { (void)len; f[216] = 4; }
static void data_before_record(uint8_t *f, size_t *len) { (void)len; f[208] = 0; f[209] = 0; f[208] = 128; }
static void count_too_big(uint8_t *f, size_t *len) { (void)len; f[0] = 3; }
static void nothing(uint8_t *f, size_t *len) { (void)f; (void)len; }

static void test_reader_errors(void **state) {
    (void)state;
    expect_bad(bad_version, 64, "only version 2");
    expect_bad(short_header, 64, "truncated weight file");
    expect_bad(bad_sentinel, 192, "bad sentinel 0xDEADBEEE");
    expect_bad(truncated, 192, "outside the file");
    expect_bad(bad_dtype_code, 192, "unknown blob dtype code 99");
    expect_bad(dtype_fp32, 192, "dtype mismatch");
    expect_bad(odd_size, 192, "not a whole number of fp16 elements");
    expect_bad(pad_on_fp16, 192, "padding bits for a byte-sized dtype");
    expect_bad(data_before_record, 192, "outside the file");
    expect_bad(nothing, 4096, "out of range");
    expect_bad(nothing, 96, "not 64-byte aligned");
    expect_bad(nothing, 0, "out of range");
    /* walking past the real blobs */
    char *path = write_two_fp16();
    size_t len;
    uint8_t *f = (uint8_t *)read_text(path, &len);
    count_too_big(f, &len);
    BlobFile *bf;
    Err e;
    assert_int_equal(blob_file_from_memory(&bf, f, len, "bad.bin", &e), 0);
    BlobInfo infos[4];
    uint32_t n;
    assert_int_equal(blob_file_walk(bf, infos, 4, &n, &e), -1);
    assert_contains(e.msg, "blob 2 of 3");
    blob_file_close(bf);
    free(f);
    free(path);
    /* a file that is not there */
    assert_int_equal(blob_file_open(&bf, "/nonexistent/weight.bin", &e), -1);
    assert_contains(e.msg, "cannot open weight file /nonexistent/weight.bin");
}

static void test_sub_byte_padding_checks(void **state) {
    (void)state;
    char *path = path_join(dir, "pad.bin");
    BlobWriter *w;
    Err e;
    assert_int_equal(blob_writer_open(&w, path, &e), 0);
    uint64_t off;
    uint8_t z[4] = {0};
    assert_int_equal(blob_writer_add(w, MIL_UINT4, 5, z, &off, NULL, &e), 0);
    assert_int_equal(blob_writer_finish(w, &e), 0);
    blob_writer_free(w);
    size_t len;
    uint8_t *f = (uint8_t *)read_text(path, &len);
    BlobFile *bf;
    BlobInfo b;
    f[off + 24] = 8;   /* 8 padding bits: never valid */
    assert_int_equal(blob_file_from_memory(&bf, f, len, "pad.bin", &e), 0);
    assert_int_equal(blob_file_get(bf, off, &b, &e), -1);
    assert_contains(e.msg, "8 padding bits (must be < 8)");
    blob_file_close(bf);
    f[off + 24] = 2;   /* not a multiple of 4 bits */
    assert_int_equal(blob_file_from_memory(&bf, f, len, "pad.bin", &e), 0);
    assert_int_equal(blob_file_get(bf, off, &b, &e), -1);
    assert_contains(e.msg, "not a multiple of 4");
    blob_file_close(bf);
    free(f);
    free(path);
}


/* Writes the same blob sequence three ways into three files: whole adds, adds with the hash
 * given, and streamed in uneven pieces. The files must be byte-identical (offsets, dedup,
 * header count) and the digests equal. */
static char *write_sequence(const char *name, int mode, uint64_t digest[2]) {
    char *path = path_join(dir, name);
    BlobWriter *w;
    Err e;
    assert_int_equal(blob_writer_open(&w, path, &e), 0);
    uint8_t big[10000], small[5] = {1, 2, 3, 4, 5};
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 13 + 1);
    const struct {
        MilDType dt;
        uint64_t numel;
        const uint8_t *data;
        uint64_t want; /* expected offset */
    } seq[] = {
        {MIL_UINT8, 10000, big, 64},       /* 64 + 64 + 10000 = 10128 -> next at 10176 */
        {MIL_UINT8, 5, small, 10176},
        {MIL_UINT8, 10000, big, 64},       /* a duplicate: shared */
        {MIL_UINT6, 4, small, 10304},      /* 3 bytes of uint6 */
        {MIL_UINT8, 5, small, 10176},
    };
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        uint64_t nbytes, off;
        assert_int_equal(mil_packed_size(seq[i].dt, seq[i].numel, &nbytes), 0);
        if (mode == 0) {
            assert_int_equal(blob_writer_add(w, seq[i].dt, seq[i].numel, seq[i].data, &off, NULL, &e), 0);
        } else if (mode == 1) {
            uint64_t h = blob_content_hash(seq[i].dt, seq[i].data, nbytes);
            assert_int_equal(blob_writer_add_hashed(w, seq[i].dt, seq[i].numel, seq[i].data, h, &off, NULL, &e), 0);
        } else {
            assert_int_equal(blob_writer_begin(w, seq[i].dt, seq[i].numel, &e), 0);
            for (uint64_t at = 0, piece = 1; at < nbytes; at += piece, piece = piece * 3 % 4001 + 1) {
                if (piece > nbytes - at) piece = nbytes - at;
                assert_int_equal(blob_writer_append(w, seq[i].data + at, (size_t)piece, &e), 0);
            }
            int reused = -1;
            assert_int_equal(blob_writer_end(w, &off, &reused, &e), 0);
            assert_int_equal(reused, i == 2 || i == 4);
        }
        assert_int_equal(off, seq[i].want);
    }
    assert_int_equal(blob_writer_count(w), 3);
    assert_int_equal(blob_writer_reused_bytes(w), 10005);
    blob_writer_digest(w, digest);
    assert_int_equal(blob_writer_finish(w, &e), 0);
    blob_writer_free(w);
    return path;
}

static void test_streamed_and_hashed_adds(void **state) {
    (void)state;
    uint64_t d[3][2];
    char *p[3] = {write_sequence("whole.bin", 0, d[0]), write_sequence("hashed.bin", 1, d[1]),
                  write_sequence("streamed.bin", 2, d[2])};
    size_t len[3];
    char *f[3];
    for (int i = 0; i < 3; i++) f[i] = read_text(p[i], &len[i]);
    assert_int_equal(len[0], 10304 + 64 + 3);
    for (int i = 1; i < 3; i++) {
        assert_int_equal(len[i], len[0]);
        assert_memory_equal(f[i], f[0], len[0]);
        assert_true(d[i][0] == d[0][0] && d[i][1] == d[0][1]);
    }
    for (int i = 0; i < 3; i++) free(f[i]), free(p[i]);
}

/* Blobs of several megabytes go through the writer's 4 MB stage and its direct writes: a
 * sequence whose duplicates are found partly in the file and partly in the stage, and a
 * streamed duplicate cut back from beyond a flushed stage. Written whole and streamed, the
 * files must be identical, and the reader must find every blob's bytes at its offset. */
static char *write_large(const char *name, int streamed, uint8_t *const data[3], const uint64_t size[3]) {
    char *path = path_join(dir, name);
    BlobWriter *w;
    Err e;
    assert_int_equal(blob_writer_open(&w, path, &e), 0);
    const int seq[] = {0, 1, 1, 2, 0, 1};
    const int reused_want[] = {0, 0, 1, 0, 1, 1};
    uint64_t first[3] = {0}, off;
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        int b = seq[i], reused = -1;
        if (!streamed) {
            assert_int_equal(blob_writer_add(w, MIL_UINT8, size[b], data[b], &off, &reused, &e), 0);
        } else {
            assert_int_equal(blob_writer_begin(w, MIL_UINT8, size[b], &e), 0);
            for (uint64_t at = 0, piece = 777777; at < size[b]; at += piece) {
                if (piece > size[b] - at) piece = size[b] - at;
                assert_int_equal(blob_writer_append(w, data[b] + at, (size_t)piece, &e), 0);
            }
            assert_int_equal(blob_writer_end(w, &off, &reused, &e), 0);
        }
        assert_int_equal(reused, reused_want[i]);
        if (!reused) first[b] = off;
        assert_int_equal(off, first[b]);
    }
    assert_int_equal(blob_writer_count(w), 3);
    assert_int_equal(blob_writer_finish(w, &e), 0);
    blob_writer_free(w);
    /* the layout: 64-byte header, then each blob's record and data, 64-aligned */
    uint64_t at = 64;
    for (int b = 0; b < 3; b++) {
        assert_int_equal(first[b], at);
        at = (at + 64 + size[b] + 63) / 64 * 64;
    }
    BlobFile *f;
    assert_int_equal(blob_file_open(&f, path, &e), 0);
    assert_int_equal(blob_file_size(f), first[2] + 64 + size[2]);
    for (int b = 0; b < 3; b++) {
        BlobInfo info;
        assert_int_equal(blob_file_get(f, first[b], &info, &e), 0);
        assert_int_equal(info.nbytes, size[b]);
        assert_memory_equal(info.data, data[b], size[b]);
    }
    blob_file_close(f);
    return path;
}

static void test_large_blobs_through_the_stage(void **state) {
    (void)state;
    const uint64_t size[3] = {3000001, 5000000, 4097};
    uint8_t *data[3];
    for (int b = 0; b < 3; b++) {
        data[b] = malloc(size[b]);
        uint32_t x = 12345u + (uint32_t)b;
        for (uint64_t i = 0; i < size[b]; i++) x = x * 1103515245u + 12345u, data[b][i] = (uint8_t)(x >> 24);
    }
    char *p[2] = {write_large("large_whole.bin", 0, data, size), write_large("large_streamed.bin", 1, data, size)};
    size_t len[2];
    char *f[2] = {read_text(p[0], &len[0]), read_text(p[1], &len[1])};
    assert_int_equal(len[0], len[1]);
    assert_memory_equal(f[0], f[1], len[0]);
    for (int i = 0; i < 2; i++) free(f[i]), free(p[i]);
    for (int b = 0; b < 3; b++) free(data[b]);
}

/* A mirror gets the same file as its source through the stage, direct writes and cut-backs,
 * takes no blob of its own while its source writes, then knows the source's blobs. */
static void test_mirror(void **state) {
    (void)state;
    const uint64_t size[3] = {3000001, 5000000, 4097};
    uint8_t *data[3];
    for (int b = 0; b < 3; b++) {
        data[b] = malloc(size[b]);
        uint32_t x = 777u + (uint32_t)b;
        for (uint64_t i = 0; i < size[b]; i++) x = x * 1103515245u + 12345u, data[b][i] = (uint8_t)(x >> 24);
    }
    char *src_path = path_join(dir, "mirrored_src.bin"), *m_path = path_join(dir, "mirror.bin");
    BlobWriter *w, *m, *other;
    Err e;
    uint64_t off, first[3];
    int seen[3] = {0};
    assert_int_equal(blob_writer_open(&w, src_path, &e), 0);
    assert_int_equal(blob_writer_open(&m, m_path, &e), 0);
    assert_int_equal(blob_writer_mirror(w, w, &e), -1);
    assert_int_equal(blob_writer_mirror(w, m, &e), 0);
    assert_int_equal(blob_writer_mirror(w, m, &e), -1); /* already mirrored */
    assert_contains(e.msg, "not mirrored already");
    assert_int_equal(blob_writer_add(m, MIL_UINT8, 4, data[0], &off, NULL, &e), -1);
    assert_contains(e.msg, "before it is finished");
    assert_int_equal(blob_writer_finish(m, &e), -1);
    const int seq[] = {0, 1, 1, 2, 0};
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) { /* streamed: duplicates are cut back */
        int b = seq[i];
        assert_int_equal(blob_writer_begin(w, MIL_UINT8, size[b], &e), 0);
        assert_int_equal(blob_writer_append(w, data[b], (size_t)size[b], &e), 0);
        assert_int_equal(blob_writer_end(w, &off, NULL, &e), 0);
        if (!seen[b]++) first[b] = off;
        assert_int_equal(off, first[b]);
    }
    assert_int_equal(blob_writer_finish(w, &e), 0);
    uint64_t dw[2], dm[2];
    blob_writer_digest(w, dw);
    blob_writer_digest(m, dm);
    assert_true(dw[0] == dm[0] && dw[1] == dm[1]);
    assert_int_equal(blob_writer_count(m), 3);
    assert_int_equal(blob_writer_size(m), blob_writer_size(w));
    for (int b = 0; b < 3; b++) {
        assert_int_equal(blob_writer_has_blob(m, first[b], MIL_UINT8, size[b]), 1);
        assert_int_equal(blob_writer_has_blob(m, first[b], MIL_INT8, size[b]), 0);
        assert_int_equal(blob_writer_has_blob(m, first[b], MIL_UINT8, size[b] + 1), 0);
        assert_int_equal(blob_writer_has_blob(m, first[b] + 64, MIL_UINT8, size[b]), 0);
    }
    blob_writer_free(w);
    assert_int_equal(blob_writer_finish(m, &e), 0); /* seals it again, same bytes */
    blob_writer_free(m);
    size_t len[2];
    char *f[2] = {read_text(src_path, &len[0]), read_text(m_path, &len[1])};
    assert_int_equal(len[0], len[1]);
    assert_memory_equal(f[0], f[1], len[0]);
    free(f[0]), free(f[1]);

    /* a source freed unfinished leaves a mirror that refuses everything */
    assert_int_equal(blob_writer_open(&w, src_path, &e), 0);
    assert_int_equal(blob_writer_open(&m, m_path, &e), 0);
    char *other_path = path_join(dir, "other.bin");
    assert_int_equal(blob_writer_open(&other, other_path, &e), 0);
    free(other_path);
    assert_int_equal(blob_writer_add(other, MIL_UINT8, 8, data[0], &off, NULL, &e), 0);
    assert_int_equal(blob_writer_mirror(other, m, &e), -1); /* not fresh */
    assert_contains(e.msg, "must be new");
    blob_writer_free(other);
    assert_int_equal(blob_writer_mirror(w, m, &e), 0);
    assert_int_equal(blob_writer_add(w, MIL_UINT8, size[1], data[1], &off, NULL, &e), 0);
    blob_writer_free(w);
    assert_int_equal(blob_writer_finish(m, &e), -1);
    assert_contains(e.msg, "was not finished");
    assert_int_equal(blob_writer_add(m, MIL_UINT8, 8, data[0], &off, NULL, &e), -1);
    blob_writer_free(m);

    /* a mirror freed first: the source goes on alone */
    assert_int_equal(blob_writer_open(&w, src_path, &e), 0);
    assert_int_equal(blob_writer_open(&m, m_path, &e), 0);
    assert_int_equal(blob_writer_mirror(w, m, &e), 0);
    assert_int_equal(blob_writer_add(w, MIL_UINT8, size[1], data[1], &off, NULL, &e), 0);
    blob_writer_free(m);
    assert_int_equal(blob_writer_add(w, MIL_UINT8, size[0], data[0], &off, NULL, &e), 0);
    assert_int_equal(blob_writer_finish(w, &e), 0);
    blob_writer_free(w);
    free(src_path), free(m_path);
    for (int b = 0; b < 3; b++) free(data[b]);
}

static void test_stream_misuse(void **state) {
    (void)state;
    char *path = path_join(dir, "misuse.bin");
    BlobWriter *w;
    Err e;
    uint8_t data[16] = {0};
    uint64_t off;
    assert_int_equal(blob_writer_open(&w, path, &e), 0);
    assert_int_equal(blob_writer_append(w, data, 4, &e), -1);   /* nothing open */
    assert_contains(e.msg, "no streamed blob");
    assert_int_equal(blob_writer_begin(w, MIL_UINT8, 8, &e), 0);
    assert_int_equal(blob_writer_add(w, MIL_UINT8, 4, data, &off, NULL, &e), -1);   /* add inside a stream */
    assert_contains(e.msg, "still open");
    assert_int_equal(blob_writer_append(w, data, 9, &e), -1);   /* more than announced */
    assert_contains(e.msg, "more than its 8 bytes");
    assert_int_equal(blob_writer_append(w, data, 5, &e), 0);
    assert_int_equal(blob_writer_finish(w, &e), -1);
    assert_contains(e.msg, "not ended");
    assert_int_equal(blob_writer_end(w, &off, NULL, &e), -1);   /* 5 of 8 bytes */
    assert_contains(e.msg, "got 5 of its 8 bytes");
    blob_writer_free(w);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_layout),    cmocka_unit_test(test_dedup),
        cmocka_unit_test(test_subbyte_padding_fields), cmocka_unit_test(test_reader_errors),
        cmocka_unit_test(test_sub_byte_padding_checks), cmocka_unit_test(test_streamed_and_hashed_adds),
        cmocka_unit_test(test_stream_misuse), cmocka_unit_test(test_large_blobs_through_the_stage),
        cmocka_unit_test(test_mirror),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
