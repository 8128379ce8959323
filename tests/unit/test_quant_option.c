/* The --lutN bits[,group] option and the group-divides-channels check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "quant/lut.h"

static LutSpec parse_ok(const char *value) {
    Err e = {0};
    LutSpec s = {-1, -1};
    int rc = lut_parse_option("--lut2", value, &s, &e);
    if (rc != 0) fail_msg("'%s' rejected: %s", value, e.msg);
    return s;
}

/* Parses a bad value; returns the message, which must name the option. */
static const char *parse_bad(const char *value) {
    static Err e;
    memset(&e, 0, sizeof e);
    LutSpec s = {7, 7};
    assert_int_equal(lut_parse_option("--lut3", value, &s, &e), -1);
    assert_non_null(strstr(e.msg, "--lut3"));
    assert_int_equal(s.bits, 7); /* untouched on failure */
    return e.msg;
}

static void test_valid_forms(void **state) {
    (void)state;
    LutSpec s = parse_ok("4");
    assert_int_equal(s.bits, 4), assert_int_equal(s.group, LUT_DEFAULT_GROUP);
    s = parse_ok("6,16");
    assert_int_equal(s.bits, 6), assert_int_equal(s.group, 16);
    s = parse_ok("6,4");
    assert_int_equal(s.group, 4);
    s = parse_ok("8,0");
    assert_int_equal(s.bits, 8), assert_int_equal(s.group, 0);
    s = parse_ok("4,tensor");
    assert_int_equal(s.bits, 4), assert_int_equal(s.group, 0);
    s = parse_ok(" 6 , 8 ");
    assert_int_equal(s.bits, 6), assert_int_equal(s.group, 8);
    for (int b = 1; b <= 8; b++) {
        if (b == 5 || b == 7) continue;
        char v[4] = {(char)('0' + b), 0};
        assert_int_equal(parse_ok(v).bits, b);
    }
}

static void test_no_lut(void **state) {
    (void)state;
    assert_int_equal(parse_ok("").bits, 0);
    assert_int_equal(parse_ok("none").bits, 0);
    assert_int_equal(parse_ok("  ").bits, 0);
}

static void test_errors(void **state) {
    (void)state;
    const char *m = parse_bad("5");
    assert_non_null(strstr(m, "5-bit"));
    assert_non_null(strstr(m, "use 4 or 6"));
    m = parse_bad("7,8");
    assert_non_null(strstr(m, "7-bit"));
    assert_non_null(strstr(m, "use 6 or 8"));
    assert_non_null(strstr(parse_bad("9"), "not a LUT bit width"));
    assert_non_null(strstr(parse_bad("0"), "not a LUT bit width"));
    assert_non_null(strstr(parse_bad("16"), "not a LUT bit width"));
    assert_non_null(strstr(parse_bad("four"), "not a number of LUT bits"));
    assert_non_null(strstr(parse_bad("-4"), "not a number of LUT bits"));
    assert_non_null(strstr(parse_bad(",8"), "not a number of LUT bits"));
    assert_non_null(strstr(parse_bad("4,"), "not a number of output channels"));
    assert_non_null(strstr(parse_bad("4,-8"), "not a number of output channels"));
    assert_non_null(strstr(parse_bad("4,8x"), "not a number of output channels"));
    assert_non_null(strstr(parse_bad("4,8,2"), "too many commas"));
    assert_non_null(strstr(parse_bad("4,99999999999999999999"), "not a number"));
    Err e = {0};
    LutSpec s;
    assert_int_equal(lut_parse_option("--lut1", NULL, &s, &e), -1);
    assert_non_null(strstr(e.msg, "--lut1"));
}

static void test_channel_check(void **state) {
    (void)state;
    Err e = {0};
    LutSpec s = {4, 8};
    assert_int_equal(lut_check_channels(&s, "--lut2", "model.layers.0.mlp.down_proj.weight", 2048, &e), 0);
    s.group = 12;
    assert_int_equal(lut_check_channels(&s, "--lut2", "model.layers.0.mlp.down_proj.weight", 2048, &e), -1);
    assert_non_null(strstr(e.msg, "--lut2"));
    assert_non_null(strstr(e.msg, "down_proj"));
    assert_non_null(strstr(e.msg, "2048"));
    assert_non_null(strstr(e.msg, "4,8"));  /* nearest divisor below */
    assert_non_null(strstr(e.msg, "or 16")); /* and above */
    s = (LutSpec){6, 0};
    assert_int_equal(lut_check_channels(&s, "--lut3", "lm_head.weight", 128257, &e), 0);
    s = (LutSpec){0, 0};
    assert_int_equal(lut_check_channels(&s, "--lut1", "x", 7, &e), 0);
    s = (LutSpec){4, 8};
    assert_int_equal(lut_check_channels(&s, "--lut1", "x", 0, &e), -1);
}

static void test_spec_str(void **state) {
    (void)state;
    char buf[32];
    assert_string_equal(lut_spec_str(&(LutSpec){0, 0}, buf), "");
    assert_string_equal(lut_spec_str(&(LutSpec){6, 0}, buf), "6,tensor");
    assert_string_equal(lut_spec_str(&(LutSpec){4, 16}, buf), "4,16");
    /* what it prints parses back to the same spec */
    LutSpec back = parse_ok(lut_spec_str(&(LutSpec){3, 32}, buf));
    assert_int_equal(back.bits, 3), assert_int_equal(back.group, 32);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_forms),   cmocka_unit_test(test_no_lut),
        cmocka_unit_test(test_errors),        cmocka_unit_test(test_channel_check),
        cmocka_unit_test(test_spec_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
