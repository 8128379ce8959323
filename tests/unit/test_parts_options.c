/* `anemll convert` option parsing: the seed's defaults, every option and both spellings,
 * and each malformed value rejected with a message naming the option. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "parts/options.h"

/* Parses a NULL-terminated argument list (argv[0] = "convert"). */
static int parse(ConvertOptions *o, Err *e, ...) {
    char *argv[64] = {"convert"};
    int argc = 1;
    va_list ap;
    va_start(ap, e);
    for (char *a; (a = va_arg(ap, char *)) && argc < 63;) argv[argc++] = a;
    va_end(ap);
    convert_options_init(o);
    memset(e, 0, sizeof *e);
    return convert_options_parse(o, argc, argv, e);
}

static void test_defaults(void **state) {
    (void)state;
    ConvertOptions o;
    Err e;
    assert_int_equal(parse(&o, &e, "--model", "m", "--output", "out", NULL), 0);
    assert_string_equal(o.model_dir, "m");
    assert_string_equal(o.output_dir, "out");
    assert_int_equal(o.context, 512);
    assert_int_equal(o.batch, 64);
    assert_int_equal(o.lut[PART_EMBEDDINGS].bits, 0);
    assert_int_equal(o.lut[PART_FFN].bits, 4);
    assert_int_equal(o.lut[PART_FFN].group, 8);
    assert_int_equal(o.lut[PART_LM_HEAD].bits, 6);
    assert_int_equal(o.restart, 1);
    assert_int_equal(o.only, 0);
    assert_int_equal(o.chunks, 2);
    assert_int_equal(o.max_chunk_mb, 950);
    assert_null(o.prefix);
    assert_false(o.skip_check || o.skip_dedup || o.argmax || o.split_rotate);
    assert_null(o.fp16_scale);
    for (int s = 1; s <= 8; s++) assert_true(convert_step_selected(&o, s));
}

static void test_every_option(void **state) {
    (void)state;
    ConvertOptions o;
    Err e;
    int rc = parse(&o, &e, "--model", "m", "--output=out", "--context", "1024", "--batch=32", "--lut1", "8,4", "--lut2",
                   "6,tensor", "--lut3", "", "--restart", "5", "--chunk", "auto", "--max-chunk-mb", "500", "--prefix",
                   "DeepSeek", "--skip-check", "--skip-anemll-dedup", "--argmax", "--fp16-scale", "auto",
                   "--split-rotate", "--threads", "3", NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(o.context, 1024);
    assert_int_equal(o.batch, 32);
    assert_int_equal(o.lut[PART_EMBEDDINGS].bits, 8);
    assert_int_equal(o.lut[PART_EMBEDDINGS].group, 4);
    assert_int_equal(o.lut[PART_FFN].bits, 6);
    assert_int_equal(o.lut[PART_FFN].group, 0);
    assert_int_equal(o.lut[PART_LM_HEAD].bits, 0);
    assert_int_equal(o.restart, 5);
    assert_int_equal(o.chunks, 0);
    assert_int_equal(o.max_chunk_mb, 500);
    assert_string_equal(o.prefix, "DeepSeek");
    assert_true(o.skip_check && o.skip_dedup && o.argmax && o.split_rotate);
    assert_string_equal(o.fp16_scale, "auto");
    assert_int_equal(o.threads, 3);
    for (int s = 1; s <= 8; s++) assert_int_equal(convert_step_selected(&o, s), s >= 5);
    assert_int_equal(parse(&o, &e, "--model", "m", "--output", "o", "--only", "6", "--lut2", "none", NULL), 0);
    for (int s = 1; s <= 8; s++) assert_int_equal(convert_step_selected(&o, s), s == 6);
    assert_int_equal(o.lut[PART_FFN].bits, 0);
}

/* Each bad command line fails and the message mentions `want`. */
static void expect_error(const char *want, ...) {
    char *argv[64] = {"convert"};
    int argc = 1;
    va_list ap;
    va_start(ap, want);
    for (char *a; (a = va_arg(ap, char *)) && argc < 63;) argv[argc++] = a;
    va_end(ap);
    ConvertOptions o;
    convert_options_init(&o);
    Err e = {0};
    if (convert_options_parse(&o, argc, argv, &e) == 0) fail_msg("accepted a bad command line (want '%s')", want);
    if (!strstr(e.msg, want)) fail_msg("message '%s' does not mention '%s'", e.msg, want);
}

static void test_errors(void **state) {
    (void)state;
    expect_error("--model is required", "--output", "o", NULL);
    expect_error("--output is required", "--model", "m", NULL);
    expect_error("--context '0'", "--model", "m", "--output", "o", "--context", "0", NULL);
    expect_error("--context '-5'", "--model", "m", "--output", "o", "--context", "-5", NULL);
    expect_error("--context 'abc'", "--model", "m", "--output", "o", "--context", "abc", NULL);
    expect_error("--batch '0'", "--model", "m", "--output", "o", "--batch", "0", NULL);
    expect_error("--batch 128 is larger than --context 64", "--model", "m", "--output", "o", "--context", "64",
                 "--batch", "128", NULL);
    expect_error("--lut2 '5'", "--model", "m", "--output", "o", "--lut2", "5", NULL);
    expect_error("--lut1 'x'", "--model", "m", "--output", "o", "--lut1", "x", NULL);
    expect_error("--lut3 '6,a'", "--model", "m", "--output", "o", "--lut3", "6,a", NULL);
    expect_error("--lut2 '4,8,2'", "--model", "m", "--output", "o", "--lut2", "4,8,2", NULL);
    expect_error("--restart '9'", "--model", "m", "--output", "o", "--restart", "9", NULL);
    expect_error("--only '0'", "--model", "m", "--output", "o", "--only", "0", NULL);
    expect_error("give one of them", "--model", "m", "--output", "o", "--only", "3", "--restart", "2", NULL);
    expect_error("--chunk 'two'", "--model", "m", "--output", "o", "--chunk", "two", NULL);
    expect_error("--chunk '0'", "--model", "m", "--output", "o", "--chunk", "0", NULL);
    expect_error("--max-chunk-mb '-1'", "--model", "m", "--output", "o", "--max-chunk-mb", "-1", NULL);
    expect_error("--prefix", "--model", "m", "--output", "o", "--prefix", "a/b", NULL);
    expect_error("--prefix", "--model", "m", "--output", "o", "--prefix", "", NULL);
    expect_error("unknown option '--no-lut'", "--model", "m", "--output", "o", "--no-lut", NULL);
    expect_error("unknown option '--argmax=1'", "--model", "m", "--output", "o", "--argmax=1", NULL);
    expect_error("--context needs a value", "--model", "m", "--output", "o", "--context", NULL);
    expect_error("--model: the path is empty", "--model", "", "--output", "o", NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_option),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
