/* The growable string: appends, growth across many pieces, take resets the buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/strbuf.h"

static void test_empty_take_is_empty_string(void **state) {
    (void)state;
    StrBuf b = {0};
    char *s = strbuf_take(&b);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
}

static void test_appends_and_grows(void **state) {
    (void)state;
    StrBuf b = {0};
    char want[20000] = "";
    size_t n = 0;
    for (int i = 0; i < 2000; i++) {
        strbuf_printf(&b, "%d,", i);
        n += (size_t)snprintf(want + n, sizeof want - n, "%d,", i);
    }
    strbuf_printf(&b, "%s", "");            /* an empty piece changes nothing */
    assert_int_equal(b.len, n);
    char *s = strbuf_take(&b);
    assert_string_equal(s, want);
    assert_null(b.s);
    assert_int_equal(b.len, 0);
    free(s);
    strbuf_printf(&b, "again %s", "x");     /* reusable after take */
    s = strbuf_take(&b);
    assert_string_equal(s, "again x");
    free(s);
}

static void test_long_piece(void **state) {
    (void)state;
    char big[5000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    StrBuf b = {0};
    strbuf_printf(&b, "<");
    strbuf_printf(&b, "%s>", big);
    char *s = strbuf_take(&b);
    assert_int_equal(strlen(s), sizeof big + 1);
    assert_int_equal(s[0], '<');
    assert_int_equal(s[sizeof big], '>');
    free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_take_is_empty_string),
        cmocka_unit_test(test_appends_and_grows),
        cmocka_unit_test(test_long_piece),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
