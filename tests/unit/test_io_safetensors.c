/* The safetensors reader: one malformed file per validation rule (each asserting its own
 * error text, the file and the tensor), the sharded-checkpoint rules, dtype conversions
 * (hardware and portable kernels against common/half.h), row ranges and the writer. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/half.h"
#include "common/util.h"
#include "io/checkpoint.h"
#include "io/st_writer.h"

static char tmpdir[512];

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TEST_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/io_st.XXXXXX", base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(tmpdir);
    return 0;
}

static char *tmp_path(const char *name) { return path_join(tmpdir, name); }

static void write_bytes(const char *path, const void *data, size_t n) {
    Err e = {0};
    if (file_write_atomic(path, data, n, &e) < 0) fail_msg("%s", e.msg);
}

/* A file with the given header text (length field = its length unless hlen_override) and
 * data_len bytes of data (byte i = i & 0xff). */
static char *make_file(const char *name, const char *header, size_t data_len, uint64_t hlen_override) {
    size_t hl = strlen(header);
    unsigned char *buf = xcalloc(8 + hl + data_len + 1, 1);
    uint64_t n = hlen_override ? hlen_override : hl;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) buf[8 + hl + i] = (unsigned char)i;
    char *p = tmp_path(name);
    write_bytes(p, buf, 8 + hl + data_len);
    free(buf);
    return p;
}

/* Opening the file must fail with an error containing `want`, the file path, and (if given)
 * the tensor name in quotes. */
static void expect_open_error(const char *header, size_t data_len, uint64_t hlen, const char *tensor,
                              const char *want) {
    char *p = make_file("bad.safetensors", header, data_len, hlen);
    StFile *f = NULL;
    Err e = {0};
    int rc = st_open(&f, p, &e);
    if (rc == 0) {
        st_close(f);
        fail_msg("accepted a malformed header, expected \"%s\": %s", want, header);
    }
    assert_null(f);
    if (!strstr(e.msg, want)) fail_msg("error \"%s\" lacks \"%s\"", e.msg, want);
    assert_non_null(strstr(e.msg, p));
    if (tensor) {
        char q[128];
        snprintf(q, sizeof q, "'%s'", tensor);
        if (!strstr(e.msg, q)) fail_msg("error \"%s\" does not name tensor %s", e.msg, q);
    }
    free(p);
}

#define OK_ENTRY "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

static void test_header_rules(void **state) {
    (void)state;
    /* too short for the length field */
    char *p = tmp_path("short.safetensors");
    write_bytes(p, "abc", 3);
    StFile *f;
    Err e = {0};
    assert_int_equal(st_open(&f, p, &e), -1);
    assert_non_null(strstr(e.msg, "too small to be a safetensors file"));
    free(p);

    /* zero length: make_file treats 0 as "use the real length", so write it by hand */
    p = tmp_path("zero.safetensors");
    write_bytes(p, "\0\0\0\0\0\0\0\0{}", 10);
    assert_int_equal(st_open(&f, p, &e), -1);
    assert_non_null(strstr(e.msg, "header length is 0"));
    free(p);
    expect_open_error("{}", 0, (uint64_t)1 << 40, NULL, "larger than the 100000000-byte limit");
    expect_open_error("{}", 0, 5000, NULL, "runs past the end of the file");
    expect_open_error("[1,2]   ", 0, 0, NULL, "does not start with '{'");
    expect_open_error("{\"a\":{\"dtype\":\"F32\",", 0, 0, NULL, "is not valid JSON");
    expect_open_error("{}xyz", 0, 0, NULL, "unexpected data after the value");
    expect_open_error("{\"__metadata__\":[1]," OK_ENTRY "}", 8, 0, NULL, "\"__metadata__\" must be an object");
    expect_open_error("{\"w\":[1,2]}", 0, 0, "w", "header entry must be an object");
    expect_open_error("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, "w", "\"dtype\" must be a string");
    expect_open_error("{\"w\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, "w", "unknown dtype");
    expect_open_error("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, 0, "w",
                      "dequantize it first");
    expect_open_error("{\"w\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, 0, "w",
                      "dequantize it first");
    expect_open_error("{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, 0, "w", "has dtype U8");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, 0, "w",
                      "\"shape\" must be an array");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 0, "w",
                      "negative dimension");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, 0, "w",
                      "shape[0] is not a non-negative integer");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,8]}}", 8, 0, "w",
                      "shape[1] is not a non-negative integer");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, 0,
                      "w", "9 dimensions, at most 8");
    expect_open_error("{\"w\":{\"dtype\":\"BF16\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", 8,
                      0, "w", "overflows");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, 0, "w",
                      "must be two integers [begin, end] in 0..2^53");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, 0, "w",
                      "must be two integers [begin, end] in 0..2^53");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}}", 8, 0,
                      "w", "must be two integers [begin, end] in 0..2^53");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, 0, "w",
                      "end before they begin");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, 0, "w",
                      "lie outside the file");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0, "w",
                      "hold 8 bytes but shape [3] of F32 needs 12");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"v\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[6,10]}}",
                      16, 0, "w", "overlap");
    expect_open_error("{" OK_ENTRY "," OK_ENTRY "}", 16, 0, "a", "appears twice in the header");
}

/* A valid file: scalar, empty and unaligned tensors are fine, gaps are allowed. */
static void test_valid_edge_cases(void **state) {
    (void)state;
    /* header of 75 bytes: data starts at byte 83, not aligned */
    const char *h = "{\"s\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,2]},\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],"
                    "\"data_offsets\":[2,2]},\"g\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[4,6]}}";
    char *p = make_file("edge.safetensors", h, 6, 0);
    StFile *f;
    Err e = {0};
    if (st_open(&f, p, &e) < 0) fail_msg("%s", e.msg);
    assert_int_equal(st_count(f), 3);
    const StTensor *s = st_find(f, "s"), *z = st_find(f, "z"), *g = st_find(f, "g");
    assert_non_null(s);
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->numel, 1);
    assert_int_equal(z->numel, 0);
    assert_int_equal(st_rows(z), 0);
    assert_null(st_find(f, "missing"));
    float v;
    assert_int_equal(st_read_f32(s, &v, &e), 0);
    assert_true(v == f16_to_f32(0x0100)); /* bytes 00 01 little-endian */
    assert_int_equal(st_read_f32(g, &v, &e), 0);
    assert_true(v == bf16_to_f32(0x0504));
    assert_int_equal(st_read_rows_f32(z, 0, 0, &v, &e), 0);
    st_close(f);
    free(p);
}

/* A file truncated after it was opened: reading reports it instead of crashing. */
static void test_truncated_after_open(void **state) {
    (void)state;
    StWriteSpec spec = {"t", ST_BF16, 2, {64, 64}};
    uint16_t v[64 * 64] = {0};
    char *p = tmp_path("trunc.safetensors");
    StWriter *w;
    Err e = {0};
    assert_int_equal(st_writer_open(&w, p, &spec, 1, &e), 0);
    assert_int_equal(st_writer_write(w, v, sizeof v, &e), 0);
    assert_int_equal(st_writer_finish(w, &e), 0);
    StFile *f;
    assert_int_equal(st_open(&f, p, &e), 0);
    assert_int_equal(truncate(p, 200), 0);
    float out[64 * 64];
    assert_int_equal(st_read_f32(st_find(f, "t"), out, &e), -1);
    assert_non_null(strstr(e.msg, "tensor 't': unexpected end of file"));
    st_close(f);
    free(p);
}

/* ==== conversions ========================================================= */

/* Every bf16 and fp16 bit pattern through the dispatching (hardware where present) and the
 * portable kernels; both must equal common/half.h, NaN as NaN. */
static void test_conversion_kernels(void **state) {
    (void)state;
    size_t n = 65536;
    uint16_t *src = xmalloc(n * 2), *out16 = xmalloc(n * 2);
    float *out32 = xmalloc(n * 4);
    for (size_t i = 0; i < n; i++) src[i] = (uint16_t)i;
    for (int portable = 0; portable < 2; portable++) {
        st_convert_force_portable(portable);
        size_t inf = st_convert_f16(ST_BF16, (const unsigned char *)src + 0, n, out16);
        size_t want_inf = 0;
        for (size_t i = 0; i < n; i++) {
            float f = bf16_to_f32(src[i]);
            uint16_t want = f32_to_f16(f);
            if (isnan(f)) assert_true((out16[i] & 0x7c00) == 0x7c00 && (out16[i] & 0x3ff));
            else if (out16[i] != want) fail_msg("bf16 %04zx -> f16 %04x, want %04x (portable=%d)", i, out16[i], want, portable);
            want_inf += isfinite(f) && !f16_is_finite(want);
        }
        assert_int_equal(inf, want_inf);
        assert_true(want_inf > 0);
        /* in place (src == dst) gives the same values and count */
        uint16_t *inplace = xmalloc(n * 2);
        memcpy(inplace, src, n * 2);
        assert_int_equal(st_convert_f16(ST_BF16, inplace, n, inplace), want_inf);
        for (size_t i = 0; i < n; i++)
            if (!isnan(bf16_to_f32(src[i]))) assert_int_equal(inplace[i], out16[i]);
        free(inplace);
        st_convert_f32(ST_F16, src, n, out32);
        for (size_t i = 0; i < n; i++) {
            float want = f16_to_f32(src[i]);
            if (isnan(want)) assert_true(isnan(out32[i]));
            else assert_true(out32[i] == want);
        }
        /* fp32 -> fp16 on values around every rounding boundary */
        float *f32 = xmalloc(n * 4);
        for (size_t i = 0; i < n; i++) f32[i] = f16_to_f32((uint16_t)i) * (1.0f + 0.0004f * (float)((i % 7) - 3));
        f32[1] = 65519.0f, f32[2] = 65520.0f, f32[3] = 1e30f;
        inf = st_convert_f16(ST_F32, f32, n, out16);
        want_inf = 0;
        for (size_t i = 0; i < n; i++) {
            uint16_t want = f32_to_f16(f32[i]);
            if (isnan(f32[i])) continue;
            assert_int_equal(out16[i], want);
            want_inf += isfinite(f32[i]) && !f16_is_finite(want);
        }
        assert_int_equal(inf, want_inf);
        free(f32);
    }
    st_convert_force_portable(0);
    free(src);
    free(out16);
    free(out32);
}

static void write_specs(const char *path, const StWriteSpec *specs, size_t n, const void *data, size_t len) {
    StWriter *w;
    Err e = {0};
    if (st_writer_open(&w, path, specs, n, &e) < 0 || st_writer_write(w, data, len, &e) < 0 ||
        st_writer_finish(w, &e) < 0)
        fail_msg("%s", e.msg);
}

/* Rows of BF16, F16 and F32 tensors as fp32 and fp16. */
static void test_row_reads_all_dtypes(void **state) {
    (void)state;
    enum { R = 5, C = 3 };
    float vals[R * C];
    for (int i = 0; i < R * C; i++) vals[i] = (float)(i - 7) * 0.375f; /* exact in every dtype */
    vals[4] = 69632.0f;                                                /* beyond fp16 (exact in bf16/f32) */
    unsigned char data[R * C * (2 + 2 + 4)];
    size_t off = 0;
    for (int i = 0; i < R * C; i++, off += 2) {
        uint16_t h = f32_to_bf16(vals[i]);
        memcpy(data + off, &h, 2);
    }
    for (int i = 0; i < R * C; i++, off += 2) {
        uint16_t h = f32_to_f16(vals[i]);
        memcpy(data + off, &h, 2);
    }
    memcpy(data + off, vals, sizeof vals);
    StWriteSpec specs[3] = {{"b", ST_BF16, 2, {R, C}}, {"h", ST_F16, 2, {R, C}}, {"f", ST_F32, 2, {R, C}}};
    char *p = tmp_path("rows.safetensors");
    write_specs(p, specs, 3, data, sizeof data);
    Checkpoint *ck;
    Err e = {0};
    if (ckpt_open(&ck, p, &e) < 0) fail_msg("%s", e.msg);
    const char *names[3] = {"b", "h", "f"};
    for (int k = 0; k < 3; k++) {
        const StTensor *t = ckpt_find(ck, names[k]);
        assert_non_null(t);
        assert_int_equal(st_row_numel(t), C);
        float out[R * C];
        uint16_t out16[R * C];
        assert_int_equal(st_read_rows_f32(t, 1, 3, out, &e), 0);
        for (int i = 0; i < 3 * C; i++) {
            float want = k == 1 ? f16_to_f32(f32_to_f16(vals[C + i])) : vals[C + i];
            assert_true(out[i] == want);
        }
        long inf = st_read_rows_f16(t, 1, 3, out16, &e);
        assert_int_equal(inf, k == 1 ? 0 : 1); /* 70000 overflows fp16 unless it already is fp16 (inf) */
        for (int i = 0; i < 3 * C; i++) assert_int_equal(out16[i], f32_to_f16(vals[C + i]));
        assert_int_equal(st_read_f32(t, out, &e), 0);
        assert_true(out[0] == vals[0] && out[R * C - 1] == vals[R * C - 1]);
        assert_int_equal(st_read_rows_f32(t, 4, 2, out, &e), -1);
        assert_non_null(strstr(e.msg, "rows [4, 6) requested but it has 5 rows"));
        assert_int_equal(st_read_rows_f16(t, 6, 0, out16, &e), -1);
    }
    ckpt_close(ck);
    free(p);
}

/* The writer's byte layout: LE length, __metadata__ first, spaces to a multiple of 8. */
static void test_writer_layout(void **state) {
    (void)state;
    StWriteSpec spec = {"x\"y", ST_F32, 1, {3}};
    float v[3] = {1, 2, 3};
    char *p = tmp_path("w.safetensors");
    write_specs(p, &spec, 1, v, sizeof v);
    char *buf;
    size_t len;
    Err e = {0};
    assert_int_equal(file_read_all(p, 1 << 20, &buf, &len, &e), 0);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | (unsigned char)buf[i];
    assert_int_equal(hl % 8, 0);
    assert_int_equal(len, 8 + hl + 12);
    assert_memory_equal(buf + 8, "{\"__metadata__\":{\"format\":\"pt\"},\"x\\\"y\":{\"dtype\":\"F32\",\"shape\":[3],"
                                 "\"data_offsets\":[0,12]}}",
                        88);
    assert_true(buf[8 + hl - 1] == ' ' || buf[8 + hl - 1] == '}');
    free(buf);
    /* short data: finish fails, abort leaves nothing behind */
    StWriter *w;
    char *q = tmp_path("short_w.safetensors");
    assert_int_equal(st_writer_open(&w, q, &spec, 1, &e), 0);
    assert_int_equal(st_writer_write(w, v, 8, &e), 0);
    assert_int_equal(st_writer_write(w, v, 8, &e), -1);
    assert_non_null(strstr(e.msg, "more tensor data written than the header declares"));
    assert_int_equal(st_writer_finish(w, &e), -1);
    assert_non_null(strstr(e.msg, "8 bytes of tensor data written, the header declares 12"));
    st_writer_abort(w);
    assert_false(path_exists(q));
    char *qt = xasprintf("%s.tmp", q);
    assert_false(path_exists(qt));
    free(qt);
    free(q);
    free(p);
}

/* ==== sharded checkpoints ================================================= */

static char *make_dir(const char *name) {
    char *d = tmp_path(name);
    remove_tree(d);
    Err e = {0};
    assert_int_equal(mkdir_p(d, &e), 0);
    return d;
}

static void put(const char *dir, const char *name, const char *text) {
    char *p = path_join(dir, name);
    write_bytes(p, text, strlen(text));
    free(p);
}

static void put_shard(const char *dir, const char *name, const char *tensor) {
    StWriteSpec s = {tensor, ST_F32, 1, {2}};
    float v[2] = {1, 2};
    char *p = path_join(dir, name);
    write_specs(p, &s, 1, v, sizeof v);
    free(p);
}

static void expect_ckpt_error(const char *dir, const char *want) {
    Checkpoint *c = NULL;
    Err e = {0};
    if (ckpt_open(&c, dir, &e) == 0) {
        ckpt_close(c);
        fail_msg("accepted, expected \"%s\"", want);
    }
    if (!strstr(e.msg, want)) fail_msg("error \"%s\" lacks \"%s\"", e.msg, want);
}

static void test_sharded_rules(void **state) {
    (void)state;
    char *d = make_dir("sharded");
    put_shard(d, "s1.safetensors", "a");
    put_shard(d, "s2.safetensors", "b");
    put(d, CKPT_INDEX_NAME, "{\"metadata\":{\"total_size\":16},\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
    Checkpoint *c;
    Err e = {0};
    if (ckpt_open(&c, d, &e) < 0) fail_msg("%s", e.msg);
    assert_int_equal(c->n_files, 2);
    assert_int_equal(c->n_tensors, 2);
    assert_non_null(ckpt_find(c, "a"));
    assert_non_null(ckpt_find(c, "b"));
    assert_null(ckpt_require(c, "zz", &e));
    assert_non_null(strstr(e.msg, "has no tensor 'zz'"));
    ckpt_close(c);

    put(d, CKPT_INDEX_NAME, "{\"weight_map\":{\"a\":\"s1.safetensors\",");
    expect_ckpt_error(d, "is not valid JSON");
    put(d, CKPT_INDEX_NAME, "{\"metadata\":{}}");
    expect_ckpt_error(d, "\"weight_map\" must be an object");
    put(d, CKPT_INDEX_NAME, "{\"weight_map\":{}}");
    expect_ckpt_error(d, "\"weight_map\" is empty");
    put(d, CKPT_INDEX_NAME, "{\"weight_map\":{\"a\":7}}");
    expect_ckpt_error(d, "must name a shard file");
    put(d, CKPT_INDEX_NAME, "{\"weight_map\":{\"a\":\"../s1.safetensors\"}}");
    expect_ckpt_error(d, "not a plain file name inside the checkpoint directory");
    put(d, CKPT_INDEX_NAME, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s3.safetensors\"}}");
    expect_ckpt_error(d, "shard s3.safetensors (holding tensor 'b') is missing");
    put(d, CKPT_INDEX_NAME, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}");
    expect_ckpt_error(d, "tensor 'c' is mapped to s2.safetensors but that shard does not contain it");
    put(d, CKPT_INDEX_NAME, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\",\"x\":\"s2.safetensors\"}}");
    expect_ckpt_error(d, "tensor 'b' is mapped to s1.safetensors but is stored in s2.safetensors");
    put_shard(d, "s2.safetensors", "a");
    put(d, CKPT_INDEX_NAME, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
    expect_ckpt_error(d, "tensor 'a' is stored twice, in s1.safetensors and in s2.safetensors");
    /* a bad shard header is reported with the shard's path */
    put(d, "s2.safetensors", "xx");
    expect_ckpt_error(d, "s2.safetensors: file is 2 bytes, too small");
    free(d);

    d = make_dir("empty");
    expect_ckpt_error(d, "has neither model.safetensors nor model.safetensors.index.json");
    put(d, "pytorch_model.bin", "PK");
    expect_ckpt_error(d, "PyTorch pickle checkpoint");
    char *missing = path_join(d, "nope");
    expect_ckpt_error(missing, "does not exist");
    free(missing);
    free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_rules),       cmocka_unit_test(test_valid_edge_cases),
        cmocka_unit_test(test_conversion_kernels), cmocka_unit_test(test_row_reads_all_dtypes),
        cmocka_unit_test(test_writer_layout),      cmocka_unit_test(test_sharded_rules),
        cmocka_unit_test(test_truncated_after_open),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
