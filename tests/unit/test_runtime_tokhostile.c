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
#include <unistd.h>
#include <cmocka.h>

#include "common/util.h"
#include "runtime/tokenizer.h"

#define DATA "tests/data/tokenizer"

/* ==== helpers ======================================================================= */

static Tokenizer *load_ok(const char *json) {
    Tokenizer *t;
    Err e = {0};
    if (tok_load_json(&t, json, strlen(json), "hostile.json", &e) < 0) fail_msg("%s", e.msg);
    return t;
}

static void expect_refused(const char *json, size_t len, const char *want) {
    Tokenizer *t;
    Err e = {0};
    if (tok_load_json(&t, json, len, "hostile.json", &e) == 0) {
        tok_free(t);
        fail_msg("a tokenizer that should be refused (\"%s\") loaded", want);
    }
    if (!strstr(e.msg, want)) fail_msg("error \"%s\" lacks \"%s\"", e.msg, want);
    if (!strstr(e.msg, "hostile.json")) fail_msg("error \"%s\" does not name the file", e.msg);
}

static void expect_ids(const Tokenizer *t, const char *text, size_t len, const int *want, int n_want) {
    int *ids, n;
    Err e = {0};
    if (tok_encode(t, text, len, 0, &ids, &n, &e) < 0) fail_msg("%s", e.msg);
    assert_int_equal(n, n_want);
    assert_memory_equal(ids, want, sizeof *ids * (size_t)n);
    free(ids);
}

/* "<prefix>" + n copies of `open` + `middle` + n copies of `close` + "<suffix>" */
static char *nest(const char *prefix, const char *open, const char *middle, const char *close, int n,
                  const char *suffix) {
    size_t lo = strlen(open), lm = strlen(middle), lc = strlen(close);
    size_t len = strlen(prefix) + (size_t)n * (lo + lc) + lm + strlen(suffix);
    char *s = xmalloc(len + 1), *p = s;
    p = stpcpy(p, prefix);
    for (int i = 0; i < n; i++) p = stpcpy(p, open);
    p = stpcpy(p, middle);
    for (int i = 0; i < n; i++) p = stpcpy(p, close);
    stpcpy(p, suffix);
    return s;
}

#define BPE(vocab, merges) "\"model\": {\"type\": \"BPE\", \"vocab\": " vocab ", \"merges\": " merges "}"

/* ==== ids ============================================================================= */

/* Ids index arrays: the largest allowed id costs tens of megabytes, not hundreds, and a
 * larger one is refused by name. (Runs first: it measures the peak resident set.) */
static void test_huge_id_claims(void **state) {
    (void)state;
    long rss0 = peak_rss_kb();
    double t0 = now_seconds();
    Tokenizer *t = load_ok("{" BPE("{\"a\": 4194303, \"b\": 0}", "[]") "}");
    assert_int_equal(tok_vocab_size(t), 4194304);
    expect_ids(t, "ab", 2, (int[]){4194303, 0}, 2);
    tok_free(t);
    long grown_mb = (peak_rss_kb() - rss0) / 1024;
    print_message("largest id: %.2f s, peak resident set +%ld MB\n", now_seconds() - t0, grown_mb);
    assert_true(grown_mb < 120);   /* 4M ids x 9 bytes (+ sanitizer overhead); was 200+ MB at 16M */

    const char *big = "{" BPE("{\"a\": 4194304}", "[]") "}";
    expect_refused(big, strlen(big), "model.vocab: token \"a\" has id 4194304, outside 0..4194303");
    const char *huge = "{" BPE("{\"a\": 99999999999999999999}", "[]") "}";
    expect_refused(huge, strlen(huge), "token id too large");
    const char *neg = "{" BPE("{\"a\": -1}", "[]") "}";
    expect_refused(neg, strlen(neg), "has id -1, outside 0..4194303");
    const char *added = "{\"added_tokens\": [{\"id\": 2147483648, \"content\": \"<x>\"}], " BPE("{\"a\": 0}", "[]") "}";
    expect_refused(added, strlen(added), "added_tokens[0] needs \"content\" (a string) and \"id\" (0..4194303)");
}

/* ==== merges ========================================================================== */

/* Merge parts may hold any character, NUL included (regression: parts were stored
 * NUL-separated, so a NUL inside one shifted every later merge and named the wrong token). */
static void test_merges_with_nul(void **state) {
    (void)state;
    static const char json[] = "{" BPE("{\"a\": 0, \"\\u0000\": 1, \"b\": 2, \"a\\u0000\": 3, \"a\\u0000b\": 4}",
                                       "[\"a \\u0000\", [\"a\\u0000\", \"b\"]]") "}";
    Tokenizer *t = load_ok(json);
    expect_ids(t, "a\0b", 3, (int[]){4}, 1);
    expect_ids(t, "a\0a", 3, (int[]){3, 0}, 2);
    tok_free(t);
    static const char bad[] = "{" BPE("{\"a\": 0, \"\\u0000\": 1}", "[\"a \\u0000\"]") "}";
    expect_refused(bad, sizeof bad - 1, "the merged token \"a\" is not in model.vocab");
}

/* No merges at all (regression: an empty merge list was walked from a NULL pointer). */
static void test_no_merges(void **state) {
    (void)state;
    Tokenizer *t = load_ok("{" BPE("{\"a\": 0, \"b\": 1}", "[]") "}");
    expect_ids(t, "ab", 2, (int[]){0, 1}, 2);
    tok_free(t);
    t = load_ok("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}");
    expect_ids(t, "aa", 2, (int[]){0, 0}, 2);
    tok_free(t);
}

/* A chain of 3000 merges (a+a, aa+a, aaa+a, ...) over a 3000-character word: loads and
 * encodes in bounded time. */
static void test_merge_chain(void **state) {
    (void)state;
    enum { N = 3000 };
    size_t cap = (size_t)N * N + 100000;
    char *json = xmalloc(cap), *p = json;
    p += sprintf(p, "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
    char *run = xmalloc(N + 1);
    memset(run, 'a', N);
    for (int k = 1; k <= N; k++) p += sprintf(p, "%s\"%.*s\": %d", k > 1 ? ", " : "", k, run, k - 1);
    p += sprintf(p, "}, \"merges\": [");
    for (int k = 1; k < N; k++) p += sprintf(p, "%s[\"%.*s\", \"a\"]", k > 1 ? ", " : "", k, run);
    p += sprintf(p, "]}}");
    double t0 = now_seconds();
    Tokenizer *t = load_ok(json);
    int *ids, n;
    Err e = {0};
    assert_int_equal(tok_encode(t, run, N, 0, &ids, &n, &e), 0);
    /* rank 0 (a a) merges every pair first; nothing is left for the longer merges */
    assert_int_equal(n, N / 2);
    for (int i = 0; i < n; i++) assert_int_equal(ids[i], 1);
    double dt = now_seconds() - t0;
    print_message("3000-merge chain: %d ids, %.2f s\n", n, dt);
    assert_true(dt < 30);
    free(ids);
    /* merged bottom-up from a one-merge-per-rank order: (a a) is missing, so nothing merges */
    tok_free(t);
    p = strstr(json, "[[\"a\", \"a\"], ");
    assert_non_null(p);
    memmove(p + 1, p + 13, strlen(p + 13) + 1);
    t = load_ok(json);
    assert_int_equal(tok_encode(t, run, N, 0, &ids, &n, &e), 0);
    assert_int_equal(n, N);
    free(ids);
    tok_free(t);
    free(run);
    free(json);
}

static void test_absurd_merges(void **state) {
    (void)state;
    static const char self[] = "{" BPE("{\"a\": 0}", "[\"a a\"]") "}";
    expect_refused(self, sizeof self - 1, "the merged token \"aa\" is not in model.vocab");
    static const char three[] = "{" BPE("{\"a\": 0}", "[[\"a\", \"a\", \"a\"]]") "}";
    expect_refused(three, sizeof three - 1, "model.merges[0] must be a pair of strings");
    static const char num[] = "{" BPE("{\"a\": 0}", "[17]") "}";
    expect_refused(num, sizeof num - 1, "model.merges[0]");
    static const char obj[] = "{" BPE("{\"a\": 0}", "{\"a\": \"a\"}") "}";
    expect_refused(obj, sizeof obj - 1, "model.merges must be a list");
    /* a token of 70,000 bytes */
    char *big = nest("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"", "", "", "", 0, "");
    size_t n = strlen(big);
    big = xrealloc(big, n + 70000 + 64);
    memset(big + n, 'x', 70000);
    strcpy(big + n + 70000, "\": 0}}}");
    expect_refused(big, strlen(big), "model.vocab: token with id 0 is 70000 bytes long");
    free(big);
}

/* Ids a post-processor adds must name tokens (found by fuzzing: a template id with no token
 * was emitted by encode, and an id past the vocabulary would reach the embedding table). */
static void test_post_processor_ids(void **state) {
    (void)state;
    static const char tmpl[] = "{\"added_tokens\": [{\"id\": 2, \"content\": \"<s>\", \"special\": true}], "
                               "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": "
                               "{\"id\": \"<s>\"}}, {\"Sequence\": {\"id\": \"A\"}}], \"special_tokens\": {\"<s>\": "
                               "{\"id\": \"<s>\", \"ids\": [%d]}}}, " BPE("{\"a\": 0, \"b\": 1}", "[]") "}";
    char json[1024];
    snprintf(json, sizeof json, tmpl, 2);
    Tokenizer *t = load_ok(json);
    int *ids, n;
    Err e = {0};
    assert_int_equal(tok_encode(t, "ab", 2, TOK_ADD_SPECIAL, &ids, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 2);
    free(ids);
    tok_free(t);
    snprintf(json, sizeof json, tmpl, 3);
    expect_refused(json, strlen(json), "post_processor: special token id 3 is not in the vocabulary or added_tokens");
    snprintf(json, sizeof json, tmpl, -7);
    expect_refused(json, strlen(json), "special token id -7 is not in the vocabulary");
    static const char roberta[] = "{\"post_processor\": {\"type\": \"Sequence\", \"processors\": [{\"type\": "
                                  "\"RobertaProcessing\", \"cls\": [\"<s>\", 0], \"sep\": [\"</s>\", 99999]}]}, "
                                  BPE("{\"a\": 0}", "[]") "}";
    expect_refused(roberta, sizeof roberta - 1, "special token id 99999 is not in the vocabulary");
}

/* ==== nesting and size ================================================================ */

static void test_deep_nesting(void **state) {
    (void)state;
    /* 5000 levels in a member the loader skips: refused, not a stack overflow */
    char *deep = nest("{\"truncation\": ", "[", "1", "]", 5000, ", " BPE("{\"a\": 0}", "[]") "}");
    expect_refused(deep, strlen(deep), "nested too deeply");
    free(deep);
    /* pre-tokenizer Sequences nested 40 deep load and encode; 150 deep are refused */
    char *seq = nest("{\"pre_tokenizer\": ", "{\"type\": \"Sequence\", \"pretokenizers\": [",
                     "{\"type\": \"WhitespaceSplit\"}", "]}", 40, ", " BPE("{\"a\": 0, \"b\": 1}", "[]") "}");
    Tokenizer *t = load_ok(seq);
    expect_ids(t, "a  b", 4, (int[]){0, 1}, 2);
    tok_free(t);
    free(seq);
    seq = nest("{\"pre_tokenizer\": ", "{\"type\": \"Sequence\", \"pretokenizers\": [", "{\"type\": \"WhitespaceSplit\"}",
               "]}", 150, ", " BPE("{\"a\": 0}", "[]") "}");
    expect_refused(seq, strlen(seq), "nested too deeply");
    free(seq);
    /* deep inside the vocab: a value that is not an id */
    deep = nest("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": ", "[", "0", "]", 3000, "}}}");
    expect_refused(deep, strlen(deep), "expected an integer token id");
    free(deep);
}

/* A tokenizer.json larger than the 1 GiB limit is refused from its size alone (a sparse
 * file: nothing is read). */
static void test_enormous_file(void **state) {
    (void)state;
    char dir[] = "/tmp/anemll-tokhostile.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = xasprintf("%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), (off_t)3 << 30), 0);
    fclose(f);
    Tokenizer *t;
    Err e = {0};
    double t0 = now_seconds();
    assert_int_equal(tok_load(&t, dir, &e), -1);
    assert_true(now_seconds() - t0 < 1.0);
    if (!strstr(e.msg, "is too large (3221225472 bytes, limit 1073741824)")) fail_msg("%s", e.msg);
    assert_non_null(strstr(e.msg, path));
    remove_tree(dir);
    free(path);
}

/* 20,000 added tokens: loaded and matched in bounded time. */
static void test_many_added_tokens(void **state) {
    (void)state;
    enum { N = 20000 };
    char *json = xmalloc((size_t)N * 64 + 256), *p = json;
    p += sprintf(p, "{\"added_tokens\": [");
    for (int i = 0; i < N; i++)
        p += sprintf(p, "%s{\"id\": %d, \"content\": \"<t%d>\", \"special\": true}", i ? ", " : "", i + 2, i);
    sprintf(p, "], " BPE("{\"a\": 0, \"b\": 1}", "[]") "}");
    double t0 = now_seconds();
    Tokenizer *t = load_ok(json);
    expect_ids(t, "a<t19999>b<t0>", 14, (int[]){0, N + 1, 1, 2}, 4);
    print_message("20000 added tokens: %.2f s\n", now_seconds() - t0);
    assert_true(now_seconds() - t0 < 20);
    tok_free(t);
    free(json);
}

/* ==== regex =========================================================================== */

/* A pre-tokenizer regex with catastrophic backtracking: PCRE2's match limit ends the
 * match, and encoding fails with a message instead of running for hours. */
static void test_backtracking_regex(void **state) {
    (void)state;
    Tokenizer *t = load_ok("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a+)+$\"}, "
                           "\"behavior\": \"Isolated\"}, " BPE("{\"a\": 0, \"b\": 1}", "[]") "}");
    char text[64];
    memset(text, 'a', 40);
    text[40] = 'b';
    int *ids, n;
    Err e = {0};
    double t0 = now_seconds();
    assert_int_equal(tok_encode(t, text, 41, 0, &ids, &n, &e), -1);
    double dt = now_seconds() - t0;
    print_message("backtracking regex refused in %.2f s\n", dt);
    if (!strstr(e.msg, "match limit exceeded")) fail_msg("%s", e.msg);
    assert_true(dt < 30);
    expect_ids(t, "aab", 3, (int[]){0, 0, 1}, 3);   /* short texts still encode */
    tok_free(t);
}

/* ==== loading from memory ========================================================== */

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
        cmocka_unit_test(test_huge_id_claims),
        cmocka_unit_test(test_merges_with_nul),
        cmocka_unit_test(test_no_merges),
        cmocka_unit_test(test_merge_chain),
        cmocka_unit_test(test_absurd_merges),
        cmocka_unit_test(test_post_processor_ids),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_enormous_file),
        cmocka_unit_test(test_many_added_tokens),
        cmocka_unit_test(test_backtracking_regex),
        cmocka_unit_test(test_load_json_matches_folder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
