/* Hostile checkpoints: safetensors headers that claim huge shapes, offsets near 2^64,
 * overlapping or out-of-file data, deeply nested or enormous JSON, and sharded indexes that
 * are nested, enormous or name files outside the folder. Each is refused with its own message
 * (asserted) in bounded time, without allocating what the file claims. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/util.h"
#include "io/checkpoint.h"
#include "io/json.h"

static char tmpdir[512];

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TEST_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/io_hostile.XXXXXX", base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(tmpdir);
    return 0;
}

/* ==== helpers ============================================================== */

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* <tmpdir>/<name>: u64 header length (hlen, or the header's length when 0), the header, then
 * data_len bytes of data. Caller frees the path. */
static char *st_file(const char *name, const char *header, uint64_t hlen, size_t data_len) {
    size_t hl = strlen(header);
    unsigned char *buf = xcalloc(8 + hl + data_len + 1, 1);
    uint64_t n = hlen ? hlen : hl;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + 8, header, hl);
    char *p = path_join(tmpdir, name);
    write_file(p, buf, 8 + hl + data_len);
    free(buf);
    return p;
}

/* Opening must fail within 5 seconds (a loaded machine, sanitizers) with an error containing `want` and the file path. */
static void expect_st_error(const char *header, uint64_t hlen, size_t data_len, const char *want) {
    char *p = st_file("hostile.safetensors", header, hlen, data_len);
    StFile *f = NULL;
    Err e = {0};
    double t0 = now_seconds();
    if (st_open(&f, p, &e) == 0) {
        st_close(f);
        fail_msg("accepted a hostile header, expected \"%s\"", want);
    }
    assert_true(now_seconds() - t0 < 5.0);
    if (!strstr(e.msg, want)) fail_msg("error \"%s\" lacks \"%s\"", e.msg, want);
    if (!strstr(e.msg, p)) fail_msg("error \"%s\" does not name the file", e.msg);
    free(p);
}

/* "<prefix>" + n x open + middle + n x close + "<suffix>"; caller frees. */
static char *nest(const char *prefix, const char *open, const char *middle, const char *close, int n,
                  const char *suffix) {
    size_t len = strlen(prefix) + (size_t)n * (strlen(open) + strlen(close)) + strlen(middle) + strlen(suffix);
    char *s = xmalloc(len + 1), *p = stpcpy(s, prefix);
    for (int i = 0; i < n; i++) p = stpcpy(p, open);
    p = stpcpy(p, middle);
    for (int i = 0; i < n; i++) p = stpcpy(p, close);
    stpcpy(p, suffix);
    return s;
}

/* A sparse file of `size` bytes (nothing is written, nothing is read back). */
static void sparse_file(const char *path, off_t size) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), size), 0);
    fclose(f);
}

/* ==== safetensors headers ==================================================== */

static void test_huge_shapes(void **state) {
    (void)state;
    /* more elements than memory can address */
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[9007199254740992,9007199254740992],\"data_offsets\":[0,8]}}", 0,
                    8, "tensor 'w': shape [9007199254740992, 9007199254740992] overflows");
    expect_st_error("{\"w\":{\"dtype\":\"BF16\",\"shape\":[65536,65536,65536,65536,2],\"data_offsets\":[0,8]}}", 0, 8,
                    "overflows");
    /* addressable but not in the file: the shape is only compared, never allocated */
    long rss0 = peak_rss_kb();
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1048576,1048576],\"data_offsets\":[0,8]}}", 0, 8,
                    "data_offsets hold 8 bytes but shape [1048576, 1048576] of F32 needs 4398046511104");
    assert_true(peak_rss_kb() - rss0 < 64 * 1024);
    /* beyond 2^53: not an exact JSON integer */
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],\"data_offsets\":[0,8]}}", 0, 8,
                    "shape[0] is not a non-negative integer");
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e308],\"data_offsets\":[0,8]}}", 0, 8,
                    "shape[0] is not a non-negative integer");
    /* zero-size dimensions with a huge other one are empty tensors, not overflows */
    char *p = st_file("empty.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0,9007199254740992],\"data_offsets\":[0,0]}}",
                      0, 0);
    StFile *f;
    Err e = {0};
    if (st_open(&f, p, &e) < 0) fail_msg("%s", e.msg);
    assert_int_equal(st_tensor(f, 0)->numel, 0);
    st_close(f);
    free(p);
}

static void test_offsets_near_2_64(void **state) {
    (void)state;
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551608,18446744073709551615]}}",
                    0, 8, "\"data_offsets\" must be two integers [begin, end] in 0..2^53 (the data section is 8 bytes)");
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[9007199254740984,9007199254740992]}}", 0, 8,
                    "data_offsets [9007199254740984, 9007199254740992] lie outside the file (data section is 8 bytes");
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[9007199254740992,9007199254740992]}}", 0, 8,
                    "lie outside the file");
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 0, 8, "end before they begin");
    /* header length fields near 2^64 */
    expect_st_error("{}", UINT64_MAX, 0, "header length 18446744073709551615 is larger than the 100000000-byte limit");
    expect_st_error("{}", UINT64_MAX - 7, 0, "is larger than the 100000000-byte limit");
    expect_st_error("{}", 99999999, 0, "runs past the end of the file");
}

static void test_overlapping_and_outside(void **state) {
    (void)state;
    /* the same bytes claimed twice */
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}",
                    0, 8, "tensors 'a' and 'b' overlap (data_offsets [0, 8] and [0, 8])");
    /* overlap between tensors far apart in name order, one inside another */
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"m\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]},"
                    "\"z\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]}}",
                    0, 20, "tensors 'a' and 'z' overlap");
    /* data past the end of a truncated file */
    expect_st_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1024],\"data_offsets\":[0,4096]}}", 0, 100,
                    "data_offsets [0, 4096] lie outside the file (data section is 100 bytes; the file may be truncated)");
    /* the header length swallowing the data (trailing NULs are padding): no data section left */
    static const char h[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    expect_st_error(h, sizeof h - 1 + 4, 4, "data_offsets [0, 4] lie outside the file (data section is 0 bytes");
}

static void test_nested_and_enormous_headers(void **state) {
    (void)state;
    /* 100,000 levels deep: refused before cJSON recurses */
    char *deep = nest("{\"__metadata__\":{\"a\":", "[", "1", "]", 100000, "}}");
    expect_st_error(deep, 0, 0, "header is nested more than 64 levels deep (at byte 83)");
    free(deep);
    deep = nest("{\"w\":", "{\"x\":", "1", "}", 65, "}");
    expect_st_error(deep, 0, 0, "nested more than 64 levels deep");
    free(deep);
    /* brackets inside strings do not count */
    char *names = nest("{\"__metadata__\":{\"k\":\"", "[[[[", "", "", 100, "\"}}");
    char *p = st_file("strings.safetensors", names, 0, 0);
    StFile *f;
    Err e = {0};
    if (st_open(&f, p, &e) < 0) fail_msg("%s", e.msg);
    st_close(f);
    free(p);
    free(names);
    /* a header length of 99 MB over a sparse file: refused by its first byte, nothing parsed */
    p = path_join(tmpdir, "sparse.safetensors");
    sparse_file(p, 100 * 1000 * 1000);
    FILE *fp = fopen(p, "r+b");
    uint64_t hlen = 99 * 1000 * 1000;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hlen >> (8 * i));
    assert_int_equal(fwrite(le, 1, 8, fp), 8);
    fclose(fp);
    double t0 = now_seconds();
    assert_int_equal(st_open(&f, p, &e), -1);
    assert_true(now_seconds() - t0 < 1.0);
    assert_non_null(strstr(e.msg, "header does not start with '{'"));
    free(p);
}

/* 20,000 tensors (a 1.3 MB header): opened in bounded time; lookups work. */
static void test_many_tensors(void **state) {
    (void)state;
    enum { N = 20000 };
    char *hdr = xmalloc((size_t)N * 80 + 16), *q = hdr;
    q += sprintf(q, "{");
    for (int i = 0; i < N; i++)
        q += sprintf(q, "%s\"t%05d\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[%d,%d]}", i ? "," : "", N - 1 - i,
                     4 * i, 4 * i + 4);
    sprintf(q, "}");
    char *p = st_file("many.safetensors", hdr, 0, 4 * N);
    StFile *f;
    Err e = {0};
    double t0 = now_seconds();
    if (st_open(&f, p, &e) < 0) fail_msg("%s", e.msg);
    print_message("20000 tensors opened in %.2f s\n", now_seconds() - t0);
    assert_true(now_seconds() - t0 < 10);
    assert_int_equal(st_count(f), N);
    const StTensor *t = st_find(f, "t00000");
    assert_non_null(t);
    assert_int_equal(t->offset - (8 + strlen(hdr)), 4 * (N - 1));
    st_close(f);
    /* the same with one duplicate name at the very end */
    sprintf(q, ",\"t00007\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[0,0]}}");
    expect_st_error(hdr, 0, 4 * N, "tensor 't00007' appears twice in the header");
    free(p);
    free(hdr);
}

/* ==== sharded indexes ======================================================== */

static char *ckpt_dir(const char *name) {
    char *d = path_join(tmpdir, name);
    Err e = {0};
    assert_int_equal(mkdir_p(d, &e), 0);
    return d;
}

static void put(const char *dir, const char *name, const char *text) {
    char *p = path_join(dir, name);
    write_file(p, text, strlen(text));
    free(p);
}

static void expect_ckpt_error(const char *dir, const char *want) {
    Checkpoint *c = NULL;
    Err e = {0};
    double t0 = now_seconds();
    if (ckpt_open(&c, dir, &e) == 0) {
        ckpt_close(c);
        fail_msg("accepted, expected \"%s\"", want);
    }
    assert_true(now_seconds() - t0 < 2.0);
    if (!strstr(e.msg, want)) fail_msg("error \"%s\" lacks \"%s\"", e.msg, want);
}

static void test_hostile_indexes(void **state) {
    (void)state;
    char *d = ckpt_dir("sharded");
    char *shard = st_file("sharded/s1.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8);
    free(shard);
    /* deeply nested metadata */
    char *deep = nest("{\"metadata\":", "{\"x\":", "1", "}", 10000, ",\"weight_map\":{\"a\":\"s1.safetensors\"}}");
    put(d, CKPT_INDEX_NAME, deep);
    expect_ckpt_error(d, CKPT_INDEX_NAME " is nested more than 64 levels deep");
    free(deep);
    /* shard names that leave the folder or are not names */
    static const char *const escapes[] = {"../s1.safetensors", "/etc/passwd", "", ".", "..", "sub/s1.safetensors",
                                          "s1.safetensors\\\\..\\\\x"};
    for (size_t i = 0; i < sizeof escapes / sizeof *escapes; i++) {
        char *idx = xasprintf("{\"weight_map\":{\"a\":\"%s\"}}", escapes[i]);
        put(d, CKPT_INDEX_NAME, idx);
        expect_ckpt_error(d, "which is not a plain file name inside the checkpoint directory");
        free(idx);
    }
    /* a shard mapped but holding a different tensor; a shard name that is the index itself */
    put(d, CKPT_INDEX_NAME, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\"}}");
    expect_ckpt_error(d, "tensor 'b' is mapped to s1.safetensors but that shard does not contain it");
    put(d, CKPT_INDEX_NAME, "{\"weight_map\":{\"a\":\"" CKPT_INDEX_NAME "\"}}");
    expect_ckpt_error(d, "is larger than the 100000000-byte limit; not a safetensors file");
    /* 100,000 entries mapped to a missing shard: the first one is reported */
    char *big = xmalloc(100000 * 40 + 64), *q = big;
    q += sprintf(q, "{\"weight_map\":{");
    for (int i = 0; i < 100000; i++) q += sprintf(q, "%s\"t%d\":\"missing.safetensors\"", i ? "," : "", i);
    sprintf(q, "}}");
    put(d, CKPT_INDEX_NAME, big);
    expect_ckpt_error(d, "shard missing.safetensors (holding tensor 't0') is missing");
    free(big);
    /* an index larger than the 100 MB limit (sparse): refused from its size */
    char *idx = path_join(d, CKPT_INDEX_NAME);
    sparse_file(idx, (off_t)200 * 1000 * 1000);
    expect_ckpt_error(d, "is too large (200000000 bytes, limit 100000000)");
    free(idx);
    free(d);
}

/* ==== JSON nesting limit ====================================================== */

static void test_json_depth_limit(void **state) {
    (void)state;
    cJSON *j;
    Err e = {0};
    char *ok = nest("", "[", "1", "]", JSON_MAX_DEPTH, "");
    assert_int_equal(json_parse_text(ok, strlen(ok), "t.json", &j, &e), 0);
    cJSON_Delete(j);
    free(ok);
    char *bad = nest("", "[", "1", "]", JSON_MAX_DEPTH + 1, "");
    assert_int_equal(json_parse_text(bad, strlen(bad), "t.json", &j, &e), -1);
    assert_non_null(strstr(e.msg, "t.json is nested more than 64 levels deep (at byte 64)"));
    free(bad);
    /* escaped quotes keep the string open; unbalanced closers do not hide depth */
    static const char str[] = "{\"a\": \"\\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}";
    assert_int_equal(json_parse_text(str, sizeof str - 1, "t.json", &j, &e), 0);
    cJSON_Delete(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_huge_shapes),
        cmocka_unit_test(test_offsets_near_2_64),
        cmocka_unit_test(test_overlapping_and_outside),
        cmocka_unit_test(test_nested_and_enormous_headers),
        cmocka_unit_test(test_many_tensors),
        cmocka_unit_test(test_hostile_indexes),
        cmocka_unit_test(test_json_depth_limit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
