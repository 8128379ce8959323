/* UTF-8 handling and Unicode normalization (runtime/unicode.h): the four forms against
 * ICU's (tests/data/tokenizer/normalization.json, from scripts/gen-tokenizer-refs.mjs),
 * and the UTF-8 validity / lossy-conversion rules worked out by hand. */
#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/util.h"
#include "runtime/unicode.h"

static void check_form(const char *text, const char *want, UniForm form, const char *name, int index) {
    size_t len;
    char *got = uni_normalize(text, strlen(text), form, &len);
    if (len != strlen(want) || memcmp(got, want, len)) {
        /* find the first differing byte to keep the message readable */
        size_t i = 0;
        while (i < len && want[i] && got[i] == want[i]) i++;
        size_t from = i > 12 ? i - 12 : 0;
        fail_msg("%s of case %d differs at byte %zu: expected \"%.40s\" got \"%.40s\"", name, index, i, want + from, got + from);
    }
    /* normalizing again changes nothing */
    size_t len2;
    char *again = uni_normalize(got, len, form, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(again, got, len);
    free(again);
    free(got);
}

static void test_normalization_against_icu(void **state) {
    (void)state;
    char *text;
    size_t len;
    Err e = {0};
    if (file_read_all("tests/data/tokenizer/normalization.json", 1u << 24, &text, &len, &e) < 0) fail_msg("%s", e.msg);
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    assert_non_null(j);
    const cJSON *c;
    int i = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases")) {
        const char *s = cJSON_GetObjectItem(c, "text")->valuestring;
        check_form(s, cJSON_GetObjectItem(c, "nfc")->valuestring, UNI_NFC, "NFC", i);
        check_form(s, cJSON_GetObjectItem(c, "nfd")->valuestring, UNI_NFD, "NFD", i);
        check_form(s, cJSON_GetObjectItem(c, "nfkc")->valuestring, UNI_NFKC, "NFKC", i);
        check_form(s, cJSON_GetObjectItem(c, "nfkd")->valuestring, UNI_NFKD, "NFKD", i);
        i++;
    }
    assert_true(i > 20);
    cJSON_Delete(j);
}

static void test_normalization_by_hand(void **state) {
    (void)state;
    check_form("e\xCC\x81", "\xC3\xA9", UNI_NFC, "NFC", 0);                      /* e + acute -> é */
    check_form("\xC3\xA9", "e\xCC\x81", UNI_NFD, "NFD", 1);
    check_form("q\xCC\x87\xCC\xA3", "q\xCC\xA3\xCC\x87", UNI_NFC, "NFC", 2);      /* dot below (220) before dot above (230) */
    check_form("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "\xEA\xB0\x81", UNI_NFC, "NFC", 3); /* jamo -> 각 */
    check_form("\xEF\xAC\x81", "fi", UNI_NFKC, "NFKC", 4);                        /* ﬁ ligature */
    check_form("\xEF\xAC\x81", "\xEF\xAC\x81", UNI_NFC, "NFC", 5);
    check_form("\xE0\xA5\x98", "\xE0\xA4\x95\xE0\xA4\xBC", UNI_NFC, "NFC", 6);    /* क़: a composition exclusion */
    check_form("plain ASCII", "plain ASCII", UNI_NFKD, "NFKD", 7);
}

static void test_utf8_rules(void **state) {
    (void)state;
    uint32_t cp;
    assert_int_equal(utf8_decode("\xE2\x82\xAC", 3, &cp), 3);
    assert_int_equal(cp, 0x20AC);
    assert_int_equal(utf8_decode("\xF0\x9F\x99\x82", 4, &cp), 4);
    assert_int_equal(cp, 0x1F642);
    assert_int_equal(utf8_decode("\xC0\xAF", 2, &cp), 0);         /* overlong */
    assert_int_equal(utf8_decode("\xED\xA0\x80", 3, &cp), 0);     /* surrogate */
    assert_int_equal(utf8_decode("\xF4\x90\x80\x80", 4, &cp), 0); /* > U+10FFFF */
    assert_int_equal(utf8_decode("\xE2\x82", 2, &cp), 0);         /* truncated */
    char out[4];
    assert_int_equal(utf8_encode(0x10FFFF, out), 4);
    assert_memory_equal(out, "\xF4\x8F\xBF\xBF", 4);

    assert_int_equal(utf8_valid_prefix("ab\xE2\x82\xAC" "c", 6), 6);
    assert_int_equal(utf8_valid_prefix("ab\xE2\x82" "c", 5), 2);
    /* an incomplete last character is dropped, an invalid byte is kept (it is "a character") */
    assert_int_equal(utf8_complete_prefix("ab\xE2\x82", 4), 2);
    assert_int_equal(utf8_complete_prefix("ab\xFF", 3), 3);
    assert_int_equal(utf8_complete_prefix("ab\xE2\x82\xAC", 5), 5);

    /* maximal subparts: E2 82 (truncated) is one U+FFFD; each stray byte is one */
    size_t n;
    char *s = utf8_lossy("a\xE2\x82z\xFF\x80!", 7, &n);
    assert_string_equal(s, "a\xEF\xBF\xBDz\xEF\xBF\xBD\xEF\xBF\xBD!");
    assert_int_equal(n, strlen(s));
    free(s);
    s = utf8_lossy("\xF0\x9F\x99", 3, &n);
    assert_string_equal(s, "\xEF\xBF\xBD");
    free(s);

    assert_true(uni_is_whitespace(0x85));
    assert_true(uni_is_whitespace(0x3000));
    assert_false(uni_is_whitespace(0x180E));
    assert_false(uni_is_whitespace(0x200B));
    assert_false(uni_is_whitespace(0xFEFF));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalization_against_icu),
        cmocka_unit_test(test_normalization_by_hand),
        cmocka_unit_test(test_utf8_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
