/* The tokenizer against reference encodings made by Hugging Face's JS tokenizers
 * (tests/data/tokenizer/, written by scripts/gen-tokenizer-refs.mjs): the real
 * Llama 3, Qwen3 and Gemma 3 tokenizers in $SHARED/tokenizers and two small
 * self-contained ones; chat prompts against the Jinja rendering of the real
 * templates; decoding, streaming, special and stop tokens; pipeline pieces on
 * hand-made tokenizers; and the error messages for broken tokenizer folders.
 *
 * Each tokenizer is loaded once per run (the Gemma file is 33 MB). Without
 * $SHARED/tokenizers the real-tokenizer tests are skipped with a notice, unless
 * REQUIRE_SHARED=1, which makes that a failure. */
#include <cjson/cJSON.h>
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
#include "runtime/chat_template.h"
#include "runtime/tokenizer.h"

#define DATA "tests/data/tokenizer"

/* ==== fixtures ===================================================================== */

enum { LLAMA3, QWEN3, GEMMA3, MINI_BYTELEVEL, MINI_SPM, N_TOK };
static const char *const NAMES[N_TOK] = {"llama3", "qwen3", "gemma3", "mini_bytelevel", "mini_spm"};
static Tokenizer *g_tok[N_TOK];
static int g_tried[N_TOK];
static cJSON *g_corpus;

static int is_real(int which) { return which <= GEMMA3; }

static const char *shared_dir(void) {
    const char *s = getenv("SHARED");
    return s && *s ? s : "../shared";
}

static cJSON *read_json(const char *path) {
    char *text;
    size_t len;
    Err e = {0};
    if (file_read_all(path, 64u << 20, &text, &len, &e) < 0) fail_msg("%s", e.msg);
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j) fail_msg("%s is not valid JSON", path);
    return j;
}

/* The tokenizer, loaded on first use; skips (or fails with REQUIRE_SHARED=1) when the
 * shared reference files are absent. */
static int shared_required(void) {
    const char *req = getenv("REQUIRE_SHARED");
    return req && !strcmp(req, "1");
}

/* The tokenizer, loaded on first use; skips (or fails with REQUIRE_SHARED=1) when the
 * shared reference files are absent. */
static Tokenizer *tokenizer(int which) {
    char *dir = is_real(which) ? xasprintf("%s/tokenizers/%s", shared_dir(), NAMES[which])
                               : xasprintf(DATA "/%s", NAMES[which]);
    if (!g_tried[which]) {
        g_tried[which] = 1;
        if (is_real(which) && !path_is_dir(dir)) {
            if (!shared_required())
                fprintf(stderr, "SKIP: %s not found (set SHARED to the reference material); %s tests skipped\n", dir,
                        NAMES[which]);
        } else {
            Err e = {0};
            double t0 = now_seconds();
            if (tok_load(&g_tok[which], dir, &e) < 0) fail_msg("loading %s: %s", dir, e.msg);
            fprintf(stderr, "loaded %s in %.2f s\n", dir, now_seconds() - t0);
        }
    }
    if (!g_tok[which] && shared_required()) fail_msg("%s is missing and REQUIRE_SHARED=1", dir);
    free(dir);
    if (!g_tok[which]) skip();
    return g_tok[which];
}

static int group_setup(void **state) {
    (void)state;
    g_corpus = read_json(DATA "/corpus.json");
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    for (int i = 0; i < N_TOK; i++) tok_free(g_tok[i]);
    cJSON_Delete(g_corpus);
    return 0;
}

/* A corpus text (JSON strings may hold NUL: cJSON cuts them, so "\u0000" is rebuilt). */
static const char *corpus_text(int i, size_t *len) {
    const char *s = cJSON_GetArrayItem(g_corpus, i)->valuestring;
    static char buf[64];
    if (!strcmp(s, "nul")) { /* the one text with an embedded NUL: "nul\0byte" */
        memcpy(buf, "nul\0byte", 8);
        *len = 8;
        return buf;
    }
    *len = strlen(s);
    return s;
}

static int json_ids(const cJSON *arr, int **ids) {
    int n = cJSON_GetArraySize(arr);
    *ids = xmalloc(sizeof **ids * (size_t)(n + 1));
    for (int i = 0; i < n; i++) (*ids)[i] = cJSON_GetArrayItem(arr, i)->valueint;
    return n;
}

static void print_ids(const char *label, const int *ids, int n, int from) {
    char line[1024];
    size_t off = (size_t)snprintf(line, sizeof line, "%s [%d..]:", label, from);
    for (int i = from; i < n && i < from + 24; i++) off += (size_t)snprintf(line + off, sizeof line - off, " %d", ids[i]);
    print_error("%s%s\n", line, n > from + 24 ? " ..." : "");
}

/* Returns 1 if equal; prints where they part otherwise. */
static int same_ids(const char *what, int index, const int *want, int n_want, const int *got, int n_got) {
    int i = 0;
    while (i < n_want && i < n_got && want[i] == got[i]) i++;
    if (i == n_want && i == n_got) return 1;
    print_error("%s differ for corpus text %d at position %d (lengths %d expected, %d got)\n", what, index, i, n_want, n_got);
    int from = i > 4 ? i - 4 : 0;
    print_ids("  expected", want, n_want, from);
    print_ids("  got     ", got, n_got, from);
    return 0;
}

/* Compares a decoded text with the reference. cJSON ends strings at a NUL, so for the
 * corpus text with an embedded NUL the reference is rebuilt: what cJSON kept, then the
 * text's own tail from its NUL on (the decoded text ends with that text). */
static int same_text(const char *what, int index, const char *want, const char *got, size_t got_len) {
    size_t len;
    const char *text = corpus_text(index, &len);
    size_t nul = strlen(text), want_len = strlen(want);
    char *full = xmalloc(want_len + (len - nul) + 1);
    memcpy(full, want, want_len);
    memcpy(full + want_len, text + nul, len - nul);
    want_len += len - nul;
    int ok = want_len == got_len && !memcmp(full, got, got_len);
    if (!ok) print_error("%s differs for corpus text %d:\n  expected \"%s\"\n  got      \"%.*s\"\n", what, index, want, (int)got_len, got);
    free(full);
    return ok;
}

/* ==== encodings against the reference ===================================================== */

static void check_corpus(int which) {
    Tokenizer *tok = tokenizer(which);
    char *path = xasprintf(DATA "/expected_%s.json", NAMES[which]);
    cJSON *ref = read_json(path);
    free(path);
    const cJSON *cases = cJSON_GetObjectItem(ref, "cases");
    assert_int_equal(cJSON_GetArraySize(cases), cJSON_GetArraySize(g_corpus));
    int failures = 0;
    for (int i = 0; i < cJSON_GetArraySize(cases); i++) {
        const cJSON *c = cJSON_GetArrayItem(cases, i);
        size_t len;
        const char *text = corpus_text(i, &len);
        Err e = {0};
        int *want, *got, n_got;
        int n_want = json_ids(cJSON_GetObjectItem(c, "ids"), &want);
        assert_int_equal(tok_encode(tok, text, len, TOK_ADD_SPECIAL, &got, &n_got, &e), 0);
        failures += !same_ids("ids", i, want, n_want, got, n_got);
        free(got);
        free(want);

        n_want = json_ids(cJSON_GetObjectItem(c, "ids_no_special"), &want);
        assert_int_equal(tok_encode(tok, text, len, 0, &got, &n_got, &e), 0);
        failures += !same_ids("ids without special tokens", i, want, n_want, got, n_got);
        free(got);

        int *ids;
        int n_ids = json_ids(cJSON_GetObjectItem(c, "ids"), &ids);
        char *back;
        size_t back_len;
        assert_int_equal(tok_decode(tok, ids, n_ids, 0, &back, &back_len, &e), 0);
        failures += !same_text("decode", i, cJSON_GetObjectItem(c, "decoded")->valuestring, back, back_len);
        free(back);
        assert_int_equal(tok_decode(tok, ids, n_ids, TOK_SKIP_SPECIAL, &back, &back_len, &e), 0);
        failures += !same_text("decode(skip_special)", i, cJSON_GetObjectItem(c, "decoded_skip_special")->valuestring,
                               back, back_len);
        free(back);
        free(ids);
        free(want);
    }
    cJSON_Delete(ref);
    if (failures) fail_msg("%s: %d mismatches with the reference encodings", NAMES[which], failures);
}

static void test_corpus_llama3(void **state) { (void)state; check_corpus(LLAMA3); }
static void test_corpus_qwen3(void **state) { (void)state; check_corpus(QWEN3); }
static void test_corpus_gemma3(void **state) { (void)state; check_corpus(GEMMA3); }
static void test_corpus_mini_bytelevel(void **state) { (void)state; check_corpus(MINI_BYTELEVEL); }
static void test_corpus_mini_spm(void **state) { (void)state; check_corpus(MINI_SPM); }

/* decode(encode(text)) gives the text back wherever the tokenizer is lossless: byte-level
 * BPE always; Qwen3 up to NFC; the SentencePiece ones except literal "▁" (decoded as a space). */
static void check_round_trip(int which) {
    Tokenizer *tok = tokenizer(which);
    int checked = 0;
    for (int i = 0; i < cJSON_GetArraySize(g_corpus); i++) {
        size_t len;
        const char *text = corpus_text(i, &len);
        if ((which == GEMMA3 || which == MINI_SPM) && memmem(text, len, "\xE2\x96\x81", 3)) continue;
        if (which == QWEN3 && (strstr(text, "\xCC\x81") || strstr(text, "\xE2\x84\xAB") || strstr(text, "q\xCC\x87") ||
                               strstr(text, "\xE1\x84\x80")))
            continue; /* not NFC */
        Err e = {0};
        int *ids, n;
        assert_int_equal(tok_encode(tok, text, len, 0, &ids, &n, &e), 0);
        char *back;
        size_t back_len;
        assert_int_equal(tok_decode(tok, ids, n, TOK_NO_CLEANUP, &back, &back_len, &e), 0);
        if (back_len != len || memcmp(back, text, len))
            fail_msg("%s: corpus text %d does not survive the round trip: \"%s\" -> \"%s\"", NAMES[which], i, text, back);
        free(back);
        free(ids);
        checked++;
    }
    assert_true(checked > 50);
}

static void test_round_trip(void **state) {
    (void)state;
    /* the self-contained tokenizers first: a missing $SHARED skips only the rest */
    static const int order[] = {MINI_BYTELEVEL, MINI_SPM, LLAMA3, QWEN3, GEMMA3};
    for (int i = 0; i < N_TOK; i++) check_round_trip(order[i]);
}

/* ==== special tokens, post-processors, stop tokens ========================================== */

static int id_of(Tokenizer *tok, const char *s) {
    int id = tok_token_to_id(tok, s, strlen(s));
    if (id < 0) fail_msg("token %s not found", s);
    return id;
}

static int *encode(Tokenizer *tok, const char *text, int flags, int *n) {
    Err e = {0};
    int *ids;
    if (tok_encode(tok, text, strlen(text), flags, &ids, n, &e) < 0) fail_msg("%s", e.msg);
    return ids;
}

static void test_special_tokens_llama3(void **state) {
    (void)state;
    Tokenizer *tok = tokenizer(LLAMA3);
    int bot = id_of(tok, "<|begin_of_text|>"), eot = id_of(tok, "<|eot_id|>");
    assert_int_equal(bot, 128000);
    assert_int_equal(tok_bos_id(tok), bot);
    assert_int_equal(tok_eos_id(tok), id_of(tok, "<|end_of_text|>"));
    assert_true(tok_is_special(tok, bot));
    assert_false(tok_is_special(tok, id_of(tok, "Hello")));
    /* This tokenizer.json's post_processor is ByteLevel alone (the original Llama 3
     * release): encode() adds nothing, exactly like Hugging Face's. */
    int n, *ids = encode(tok, "Hello", TOK_ADD_SPECIAL, &n);
    assert_int_equal(n, 1);
    assert_int_not_equal(ids[0], bot);
    free(ids);
    /* Special tokens written in the text are matched whole, first. */
    ids = encode(tok, "x<|eot_id|>y", 0, &n);
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], eot);
    free(ids);
    assert_true(tok_is_stop(tok, eot));
    assert_true(tok_is_stop(tok, id_of(tok, "<|end_of_text|>")));
    assert_false(tok_is_stop(tok, bot));
    assert_int_equal(tok_vocab_size(tok), 128256);
}

static void test_special_tokens_qwen3(void **state) {
    (void)state;
    Tokenizer *tok = tokenizer(QWEN3);
    int n, *ids = encode(tok, "Hello", TOK_ADD_SPECIAL, &n);
    assert_int_equal(n, 1); /* Qwen's post_processor adds nothing */
    free(ids);
    assert_int_equal(tok_bos_id(tok), -1);
    assert_int_equal(tok_eos_id(tok), id_of(tok, "<|im_end|>"));
    assert_true(tok_is_stop(tok, id_of(tok, "<|im_end|>")));
    assert_true(tok_is_stop(tok, id_of(tok, "<|endoftext|>")));
    /* <think> is an added token but not special: kept by skip_special */
    int think = id_of(tok, "<think>");
    assert_false(tok_is_special(tok, think));
    int seq[] = {think, id_of(tok, "<|im_end|>")};
    char *text;
    Err e = {0};
    assert_int_equal(tok_decode(tok, seq, 2, TOK_SKIP_SPECIAL, &text, NULL, &e), 0);
    assert_string_equal(text, "<think>");
    free(text);
    /* ids past the tokenizer (the checkpoint's padded vocabulary) are skipped */
    int padded[] = {id_of(tok, "Hello"), 151900, -5};
    assert_int_equal(tok_decode(tok, padded, 3, 0, &text, NULL, &e), 0);
    assert_string_equal(text, "Hello");
    free(text);
}

static void test_special_tokens_gemma3(void **state) {
    (void)state;
    Tokenizer *tok = tokenizer(GEMMA3);
    int bos = id_of(tok, "<bos>");
    int n, *ids = encode(tok, "Hello", TOK_ADD_SPECIAL, &n);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], bos); /* TemplateProcessing: <bos> $A */
    free(ids);
    ids = encode(tok, "Hello", 0, &n);
    assert_int_equal(n, 1);
    free(ids);
    assert_true(tok_is_stop(tok, id_of(tok, "<end_of_turn>")));
    assert_true(tok_is_stop(tok, id_of(tok, "<eos>")));
    /* byte fallback: a character outside the vocabulary becomes <0x..> tokens */
    ids = encode(tok, "\xF0\x93\x80\x80", 0, &n); /* U+13000 */
    assert_int_equal(n, 4);
    size_t len;
    const char *s = tok_id_to_token(tok, ids[0], &len);
    assert_int_equal(len, 6);
    assert_memory_equal(s, "<0xF0>", 6);
    free(ids);
}

static void test_special_tokens_mini(void **state) {
    (void)state;
    Tokenizer *tok = tokenizer(MINI_BYTELEVEL);
    int bot = id_of(tok, "<|begin_of_text|>");
    int n, *ids = encode(tok, "Hello", TOK_ADD_SPECIAL, &n);
    assert_true(n >= 2);
    assert_int_equal(ids[0], bot); /* Sequence[ByteLevel, TemplateProcessing] */
    free(ids);
    /* lstrip: "<mask>" swallows the spaces before it; rstrip: "<sep>" those after it */
    int n1, n2, *a = encode(tok, "a   <mask>", 0, &n1), *b = encode(tok, "a<mask>", 0, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, sizeof *a * (size_t)n1);
    free(a);
    free(b);
    a = encode(tok, "<sep>   b", 0, &n1);
    b = encode(tok, "<sep>b", 0, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, sizeof *a * (size_t)n1);
    free(a);
    free(b);
}

/* ==== chat prompts ============================================================================ */

static void check_chat(int which) {
    Tokenizer *tok = tokenizer(which);
    char *path = xasprintf(DATA "/chat_%s.json", NAMES[which]);
    cJSON *ref = read_json(path);
    free(path);
    const cJSON *c;
    int count = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(ref, "cases")) {
        const cJSON *msgs = cJSON_GetObjectItem(c, "messages"), *m;
        ChatMessage cm[8];
        int n = 0;
        cJSON_ArrayForEach(m, msgs) cm[n++] = (ChatMessage){cJSON_GetObjectItem(m, "role")->valuestring,
                                                             cJSON_GetObjectItem(m, "content")->valuestring};
        ChatOptions o = {.no_think = cJSON_IsTrue(cJSON_GetObjectItem(c, "no_think"))};
        Err e = {0};
        char *prompt;
        if (chat_render(tok, cm, n, &o, &prompt, &e) < 0) fail_msg("%s", e.msg);
        const char *want = cJSON_GetObjectItem(c, "prompt")->valuestring;
        if (strcmp(prompt, want)) fail_msg("%s chat case %d:\nexpected \"%s\"\ngot      \"%s\"", NAMES[which], count, want, prompt);
        free(prompt);
        int *ids, n_ids, *want_ids;
        if (chat_encode(tok, cm, n, &o, &ids, &n_ids, &e) < 0) fail_msg("%s", e.msg);
        int n_want = json_ids(cJSON_GetObjectItem(c, "ids"), &want_ids);
        if (!same_ids("chat ids", count, want_ids, n_want, ids, n_ids)) fail_msg("%s chat ids differ", NAMES[which]);
        free(ids);
        free(want_ids);
        count++;
    }
    assert_true(count >= 5);
    cJSON_Delete(ref);
}

static void test_chat_llama3(void **state) {
    (void)state;
    check_chat(LLAMA3);
    ChatFormat f;
    Err e = {0};
    assert_int_equal(chat_detect_format(tokenizer(LLAMA3), &f, &e), 0);
    assert_int_equal(f, CHAT_FORMAT_LLAMA3);
}

static void test_chat_qwen3(void **state) {
    (void)state;
    check_chat(QWEN3);
    ChatFormat f;
    Err e = {0};
    assert_int_equal(chat_detect_format(tokenizer(QWEN3), &f, &e), 0);
    assert_int_equal(f, CHAT_FORMAT_CHATML);
}

static void test_chat_gemma3(void **state) {
    (void)state;
    check_chat(GEMMA3);
    Tokenizer *tok = tokenizer(GEMMA3);
    ChatMessage bad[] = {{"user", "a"}, {"user", "b"}};
    char *prompt;
    Err e = {0};
    assert_int_equal(chat_render(tok, bad, 2, NULL, &prompt, &e), -1);
    assert_non_null(strstr(e.msg, "alternate user/assistant"));
}

/* ==== hand-made tokenizer folders ================================================================ */

static char *g_tmp;

static const char *tmp_root(void) {
    if (!g_tmp) {
        const char *base = getenv("TEST_TMP");
        g_tmp = xasprintf("%s/tok.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(g_tmp)) fail_msg("mkdtemp %s failed", g_tmp);
    }
    return g_tmp;
}

/* Writes DIR/tokenizer.json (and tokenizer_config.json if config != NULL) in a fresh
 * folder; returns the folder (caller frees). */
static char *make_dir(const char *name, const char *tokenizer_json, const char *config) {
    char *dir = xasprintf("%s/%s", tmp_root(), name);
    Err e = {0};
    if (mkdir_p(dir, &e) < 0) fail_msg("%s", e.msg);
    if (tokenizer_json) {
        char *p = path_join(dir, "tokenizer.json");
        if (file_write_atomic(p, tokenizer_json, strlen(tokenizer_json), &e) < 0) fail_msg("%s", e.msg);
        free(p);
    }
    if (config) {
        char *p = path_join(dir, "tokenizer_config.json");
        if (file_write_atomic(p, config, strlen(config), &e) < 0) fail_msg("%s", e.msg);
        free(p);
    }
    return dir;
}

static Tokenizer *load_ok(const char *name, const char *json, const char *config) {
    char *dir = make_dir(name, json, config);
    Tokenizer *t;
    Err e = {0};
    if (tok_load(&t, dir, &e) < 0) fail_msg("%s: %s", name, e.msg);
    free(dir);
    return t;
}

/* Loading must fail with a message containing `want` (and the file name when it
 * is the file's fault). */
static void expect_load_error(const char *name, const char *json, const char *config, const char *want) {
    char *dir = make_dir(name, json, config);
    Tokenizer *t = NULL;
    Err e = {0};
    int rc = tok_load(&t, dir, &e);
    if (rc == 0) fail_msg("%s: loading succeeded, expected \"%s\"", name, want);
    assert_null(t);
    if (!strstr(e.msg, want)) fail_msg("%s: message \"%s\" lacks \"%s\"", name, e.msg, want);
    if (!strstr(e.msg, dir)) fail_msg("%s: message \"%s\" does not name the folder %s", name, e.msg, dir);
    free(dir);
}

/* A character-level BPE over {a, b, c, -} with a pre-tokenizer and merges given by the test. */
static char *tiny_json(const char *pre_tokenizer, const char *merges, const char *extra_vocab, int ignore_merges) {
    return xasprintf("{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": %s, \"post_processor\": null,"
                     " \"decoder\": null, \"model\": {\"type\": \"BPE\", \"ignore_merges\": %s,"
                     " \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"-\": 3%s}, \"merges\": [%s]}}",
                     pre_tokenizer, ignore_merges ? "true" : "false", extra_vocab, merges);
}

static void expect_ids(Tokenizer *t, const char *text, const int *want, int n_want) {
    int n, *got = encode(t, text, 0, &n);
    if (!same_ids(text, 0, want, n_want, got, n)) fail_msg("encoding of \"%s\" is wrong", text);
    free(got);
}

/* Merges apply lowest rank first, leftmost first among equal pairs, in either file form. */
static void test_bpe_merge_order(void **state) {
    (void)state;
    /* ids: a0 b1 c2 -3 bc4 ab5 abc6 aa7 */
    char *json = tiny_json("null", "\"b c\", [\"a\", \"b\"], \"a bc\", [\"a\", \"a\"]",
                           ", \"bc\": 4, \"ab\": 5, \"abc\": 6, \"aa\": 7", 0);
    Tokenizer *t = load_ok("merge_order", json, NULL);
    expect_ids(t, "abc", (int[]){6}, 1);      /* b+c (rank 0) first, then a+bc */
    expect_ids(t, "ab", (int[]){5}, 1);
    expect_ids(t, "aaa", (int[]){7, 0}, 2);   /* leftmost pair first */
    expect_ids(t, "abab", (int[]){5, 5}, 2);
    expect_ids(t, "cab", (int[]){2, 5}, 2);
    tok_free(t);
    free(json);
    /* ignore_merges: a whole word found in the vocab wins over the merges */
    json = tiny_json("null", "\"a b\"", ", \"ab\": 4, \"abc\": 5", 1);
    t = load_ok("ignore_merges", json, NULL);
    expect_ids(t, "abc", (int[]){5}, 1);
    expect_ids(t, "abca", (int[]){4, 2, 0}, 3);
    tok_free(t);
    free(json);
}

/* Split behaviors decide which pieces BPE may merge across. */
static void test_split_behaviors(void **state) {
    (void)state;
    static const char *behaviors[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    /* vocab: a0 b1 c2 -3 a-4 -a5 --6 */
    static const int want[][4] = {{0, 3, 0, -1}, {0, 0, -1}, {4, 0, -1}, {0, 5, -1}, {0, 3, 0, -1}};
    static const int want_n[] = {3, 2, 2, 2, 3};
    for (int i = 0; i < 5; i++) {
        char *pre = xasprintf("{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"%s\", \"invert\": false}",
                              behaviors[i]);
        char *json = tiny_json(pre, "\"a -\", \"- a\", \"- -\"", ", \"a-\": 4, \"-a\": 5, \"--\": 6", 0);
        Tokenizer *t = load_ok(behaviors[i], json, NULL);
        expect_ids(t, "a-a", want[i], want_n[i]);
        if (i == 4) expect_ids(t, "a--a", (int[]){0, 6, 0}, 3); /* Contiguous: "--" stays one piece */
        if (i == 0) expect_ids(t, "a--a", (int[]){0, 3, 3, 0}, 4);
        tok_free(t);
        free(json);
        free(pre);
    }
    /* a Regex pattern with a lookahead, and invert (the matches are the pieces) */
    char *json = tiny_json("{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a(?=-)\"}, \"behavior\": \"Isolated\"}",
                           "\"a -\"", ", \"a-\": 4", 0);
    Tokenizer *t = load_ok("lookahead", json, NULL);
    expect_ids(t, "a-a", (int[]){0, 3, 0}, 3);
    tok_free(t);
    free(json);
}

static void test_single_word(void **state) {
    (void)state;
    const char *json =
        "{\"added_tokens\": [{\"id\": 4, \"content\": \"ab\", \"single_word\": true, \"lstrip\": false, \"rstrip\": false,"
        " \"normalized\": false, \"special\": false}], \"normalizer\": null, \"pre_tokenizer\": null, \"post_processor\": null,"
        " \"decoder\": null, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \" \": 3}, \"merges\": []}}";
    Tokenizer *t = load_ok("single_word", json, NULL);
    expect_ids(t, "ab", (int[]){4}, 1);
    expect_ids(t, "c ab c", (int[]){2, 3, 4, 3, 2}, 5);
    expect_ids(t, "cab", (int[]){2, 0, 1}, 3);  /* inside a word: not the added token */
    expect_ids(t, "abc", (int[]){0, 1, 2}, 3);
    tok_free(t);
}

static void test_metaspace_and_unk(void **state) {
    (void)state;
    /* Metaspace pre-tokenizer (replace + prepend + split), unk with fuse_unk, Metaspace decoder */
    const char *json =
        "{\"added_tokens\": [], \"normalizer\": null,"
        " \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xE2\x96\x81\", \"prepend_scheme\": \"always\", \"split\": true},"
        " \"post_processor\": null, \"decoder\": {\"type\": \"Metaspace\", \"replacement\": \"\xE2\x96\x81\", \"prepend_scheme\": \"always\"},"
        " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true,"
        " \"vocab\": {\"<unk>\": 0, \"\xE2\x96\x81\": 1, \"a\": 2, \"b\": 3, \"\xE2\x96\x81" "a\": 4},"
        " \"merges\": [\"\xE2\x96\x81 a\"]}}";
    Tokenizer *t = load_ok("metaspace", json, NULL);
    expect_ids(t, "a b", (int[]){4, 1, 3}, 3);
    expect_ids(t, "axyb", (int[]){4, 0, 3}, 3); /* x and y fused into one <unk> */
    char *text;
    Err e = {0};
    assert_int_equal(tok_decode(t, (int[]){4, 1, 3}, 3, 0, &text, NULL, &e), 0);
    assert_string_equal(text, "a b"); /* the prepended space is dropped again */
    free(text);
    tok_free(t);
}

static void test_load_errors(void **state) {
    (void)state;
    Err e = {0};
    Tokenizer *t;
    assert_int_equal(tok_load(&t, "/nonexistent/tokenizer/dir", &e), -1);
    assert_non_null(strstr(e.msg, "/nonexistent/tokenizer/dir does not exist"));

    char *dir = make_dir("no_json", NULL, NULL);
    assert_int_equal(tok_load(&t, dir, &e), -1);
    assert_non_null(strstr(e.msg, "tokenizer.json not found"));
    free(dir);

    expect_load_error("truncated", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0", NULL, "unexpected end of file");
    expect_load_error("not_object", "[1, 2]", NULL, "must hold a JSON object");
    expect_load_error("bad_syntax", "{\"model\": {\"vocab\": {\"a\" 0}}}", NULL, "invalid JSON at line 1, column 26: expected ':'");
    expect_load_error("unigram", "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}", NULL, "Unigram");
    expect_load_error("wordpiece", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", NULL,
                      "model type \"WordPiece\" is not supported");
    expect_load_error("no_vocab", "{\"model\": {\"type\": \"BPE\", \"merges\": []}}", NULL, "model.vocab is missing or empty");
    expect_load_error("bad_merge", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}",
                      NULL, "model.merges[0] (\"a\" \"c\"): \"c\" is not in model.vocab");
    expect_load_error("merge_result", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [[\"a\", \"b\"]]}}",
                      NULL, "the merged token \"ab\" is not in model.vocab");
    expect_load_error("merge_form", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"abc\"]}}", NULL,
                      "must be two tokens separated by one space");
    expect_load_error("dup_id", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", NULL,
                      "id 0 is given to both \"a\" and \"b\"");
    expect_load_error("bad_id", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1.5}, \"merges\": []}}", NULL,
                      "expected an integer token id");
    expect_load_error("bad_regex",
                      "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\"},"
                      " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                      NULL, "pre_tokenizer: regex /(unclosed/ does not compile");
    expect_load_error("lowercase",
                      "{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, {\"type\": \"Lowercase\"}]},"
                      " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                      NULL, "normalizer.normalizers[1]: normalizer \"Lowercase\" is not supported");
    expect_load_error("bad_pre", "{\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}",
                      NULL, "pre-tokenizer \"BertPreTokenizer\" is not supported");
    expect_load_error("bad_behavior",
                      "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Sideways\"},"
                      " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}",
                      NULL, "Split behavior \"Sideways\"");
    expect_load_error("bad_template",
                      "{\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}],"
                      " \"special_tokens\": {}}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}",
                      NULL, "template piece <s> is not listed in special_tokens");
    expect_load_error("bad_added", "{\"added_tokens\": [{\"content\": \"x\"}], \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}",
                      NULL, "added_tokens[0] needs \"content\"");
    expect_load_error("bad_unk", "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"vocab\": {\"a\": 0}}}", NULL,
                      "model.unk_token \"<unk>\" is not in model.vocab");
    expect_load_error("bad_utf8", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\xC3\x28\": 0}}}", NULL, "is not valid UTF-8 (byte 37)");
    expect_load_error("bad_config", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", "{\"bos_token\": ", "tokenizer_config.json is not valid JSON");
}

static void test_encode_errors_and_edges(void **state) {
    (void)state;
    char *json = tiny_json("null", "", "", 0);
    Tokenizer *t = load_ok("edges", json, NULL);
    free(json);
    Err e = {0};
    int *ids, n;
    assert_int_equal(tok_encode(t, "ab\xFF", 3, 0, &ids, &n, &e), -1);
    assert_non_null(strstr(e.msg, "not valid UTF-8 (byte 2 of 3)"));
    assert_null(ids);
    assert_int_equal(tok_encode(t, "", 0, TOK_ADD_SPECIAL, &ids, &n, &e), 0);
    assert_int_equal(n, 0);
    assert_non_null(ids);
    free(ids);
    /* characters outside the vocab with neither byte fallback nor unk are dropped (as in HF) */
    expect_ids(t, "axb", (int[]){0, 1}, 2);
    char *text;
    assert_int_equal(tok_decode(t, NULL, 0, 0, &text, NULL, &e), 0);
    assert_string_equal(text, "");
    free(text);
    /* no decoder: tokens joined by spaces */
    assert_int_equal(tok_decode(t, (int[]){0, 1}, 2, 0, &text, NULL, &e), 0);
    assert_string_equal(text, "a b");
    free(text);
    ChatFormat f;
    assert_int_equal(chat_detect_format(t, &f, &e), -1);
    assert_non_null(strstr(e.msg, "has no chat_template and none of the chat tokens"));
    /* a pattern that backtracks exponentially hits PCRE2's match limit: an error, not a wrong split */
    char *slow = tiny_json("{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\\\\p{L}|\\\\p{L}\\\\p{L})+\\\\d\"}, \"behavior\": \"Isolated\"}", "", "", 0);
    Tokenizer *bt = load_ok("backtrack", slow, NULL);
    free(slow);
    char many_a[81];
    memset(many_a, 'a', 80);
    many_a[80] = 0;
    assert_int_equal(tok_encode(bt, many_a, 80, 0, &ids, &n, &e), -1);
    assert_non_null(strstr(e.msg, "regex matching failed"));
    tok_free(bt);
    ChatMessage m = {"user", "x"};
    assert_int_equal(chat_render(t, &m, 1, NULL, &text, &e), -1);
    ChatMessage bad = {"robot", "x"};
    ChatOptions o = {.format = CHAT_FORMAT_CHATML};
    assert_int_equal(chat_render(t, &bad, 1, &o, &text, &e), -1);
    assert_non_null(strstr(e.msg, "role \"robot\""));
    assert_int_equal(chat_render(t, &m, 0, &o, &text, &e), -1);
    assert_non_null(strstr(e.msg, "at least one message"));
    tok_free(t);
}

/* Templates recognised by their markers, rendered by the built-in formats. The expected
 * strings follow the real templates of Llama 3.1, Qwen 2.5 and DeepSeek-R1-Distill-Llama
 * (checked once against @huggingface/jinja's rendering of those templates). */
static void test_chat_template_variants(void **state) {
    (void)state;
    Tokenizer *base = tokenizer(MINI_BYTELEVEL);
    (void)base;
    char *tj;
    size_t tlen;
    Err e = {0};
    if (file_read_all(DATA "/mini_bytelevel/tokenizer.json", 1u << 24, &tj, &tlen, &e) < 0) fail_msg("%s", e.msg);
    static const struct {
        const char *name, *config, *want_plain, *want_system;
    } cases[] = {
        {"llama31",
         "{\"bos_token\": \"<|begin_of_text|>\", \"chat_template\": \"{{- bos_token }} Cutting Knowledge Date <|start_header_id|>\"}",
         "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
         "Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n",
         "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
         "Today Date: 26 Jul 2024\n\nBe nice.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n"},
        {"qwen25",
         "{\"chat_template\": \"{{- '<|im_start|>system\\\\n' + messages[0]['content'] }} {{- '<|im_start|>system\\\\nYou are Qwen, "
         "created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\\\n' }}\"}",
         "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
         "<|im_start|>user\n  Hi there <|im_end|>\n<|im_start|>assistant\n",
         "<|im_start|>system\n Be nice. <|im_end|>\n<|im_start|>user\n  Hi there <|im_end|>\n<|im_start|>assistant\n"},
        {"deepseek",
         "{\"bos_token\": \"<|begin_of_text|>\", \"chat_template\": \"{{bos_token}}{{ns.system_prompt}} <\xEF\xBD\x9CUser\xEF\xBD\x9C> "
         "{{'<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C><think>\\\\n'}}\"}",
         "<|begin_of_text|><\xEF\xBD\x9CUser\xEF\xBD\x9C>  Hi there <\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C><think>\n",
         "<|begin_of_text|> Be nice. <\xEF\xBD\x9CUser\xEF\xBD\x9C>  Hi there <\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C><think>\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Tokenizer *t = load_ok(cases[i].name, tj, cases[i].config);
        ChatMessage msgs[] = {{"system", " Be nice. "}, {"user", "  Hi there "}};
        char *prompt;
        if (chat_render(t, msgs + 1, 1, NULL, &prompt, &e) < 0) fail_msg("%s", e.msg);
        if (strcmp(prompt, cases[i].want_plain)) fail_msg("%s:\nexpected \"%s\"\ngot      \"%s\"", cases[i].name, cases[i].want_plain, prompt);
        free(prompt);
        if (chat_render(t, msgs, 2, NULL, &prompt, &e) < 0) fail_msg("%s", e.msg);
        if (strcmp(prompt, cases[i].want_system))
            fail_msg("%s with system:\nexpected \"%s\"\ngot      \"%s\"", cases[i].name, cases[i].want_system, prompt);
        free(prompt);
        tok_free(t);
    }
    /* a template in chat_template.jinja (newer Hugging Face folders) when the config has none */
    char *dir = make_dir("jinja_file", tj, "{\"bos_token\": \"<|begin_of_text|>\"}");
    char *jinja = path_join(dir, "chat_template.jinja");
    const char *gemma_like = "{{ bos_token }}{{ '<start_of_turn>' + role + '\\n' }}";
    if (file_write_atomic(jinja, gemma_like, strlen(gemma_like), &e) < 0) fail_msg("%s", e.msg);
    Tokenizer *jt;
    if (tok_load(&jt, dir, &e) < 0) fail_msg("%s", e.msg);
    assert_string_equal(tok_chat_template(jt), gemma_like);
    ChatFormat jf;
    assert_int_equal(chat_detect_format(jt, &jf, &e), 0);
    assert_int_equal(jf, CHAT_FORMAT_GEMMA);
    tok_free(jt);
    free(jinja);
    free(dir);
    free(tj);
    /* no template: the format comes from the special tokens (mini_bytelevel has Llama 3's) */
    ChatFormat f;
    assert_int_equal(chat_detect_format(tokenizer(MINI_BYTELEVEL), &f, &e), 0);
    assert_int_equal(f, CHAT_FORMAT_LLAMA3);
    assert_string_equal(chat_format_name(f), "llama3");
    assert_int_equal(chat_format_parse("qwen", &f), 0);
    assert_int_equal(f, CHAT_FORMAT_CHATML);
    assert_int_equal(chat_format_parse("jinja", &f), -1);
}

/* Damaged copies of a real tokenizer.json (truncated, bytes overwritten) either load or
 * fail with a message; nothing crashes (this runs under AddressSanitizer). */
static void test_corrupted_files(void **state) {
    (void)state;
    char *json;
    size_t len;
    Err e = {0};
    if (file_read_all(DATA "/mini_bytelevel/tokenizer.json", 1u << 24, &json, &len, &e) < 0) fail_msg("%s", e.msg);
    uint64_t rng = 0x2545F4914F6CDD1Dull;
    int loaded = 0, refused = 0;
    for (int k = 0; k < 120; k++) {
        char *copy = xmalloc(len + 1);
        memcpy(copy, json, len + 1);
        size_t n = len;
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        if (k % 3 == 0) {
            n = (size_t)(rng >> 33) % len; /* truncated */
        } else {
            for (int f = 0; f < 1 + k % 4; f++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                /* JSON punctuation, digits, letters; every other file also gets invalid UTF-8 */
                static const char junk[] = "\"{}[],:0\\ a-1e9" "\xff\x80";
                size_t choices = sizeof junk - 1 - (k % 2 ? 2 : 0);
                copy[(rng >> 33) % len] = junk[(rng >> 20) % choices];
            }
        }
        copy[n] = 0;
        char name[32];
        snprintf(name, sizeof name, "corrupt%d", k);
        char *dir = make_dir(name, copy, NULL);
        Tokenizer *t = NULL;
        if (tok_load(&t, dir, &e) == 0) {
            int *ids, n_ids;
            char *text;
            assert_int_equal(tok_encode(t, "Hello <|eot_id|> w\xC3\xB6rld 123", 25, TOK_ADD_SPECIAL, &ids, &n_ids, &e), 0);
            assert_int_equal(tok_decode(t, ids, n_ids, 0, &text, NULL, &e), 0);
            free(text);
            free(ids);
            tok_free(t);
            loaded++;
        } else {
            assert_true(strlen(e.msg) > 10);
            assert_non_null(strstr(e.msg, dir));
            refused++;
        }
        free(dir);
        free(copy);
    }
    free(json);
    assert_true(refused > 40); /* most damage is noticed */
    print_message("corrupted tokenizer.json: %d loaded, %d refused with a message\n", loaded, refused);
}

/* ==== streaming ======================================================================================= */

/* Pushing ids one at a time prints exactly decode(ids, skip_special), never a broken character. */
static void check_stream(int which, int text_index) {
    Tokenizer *tok = tokenizer(which);
    size_t len;
    const char *text = corpus_text(text_index, &len);
    Err e = {0};
    int *ids, n;
    assert_int_equal(tok_encode(tok, text, len, TOK_ADD_SPECIAL, &ids, &n, &e), 0);
    char *whole;
    size_t whole_len;
    assert_int_equal(tok_decode(tok, ids, n, TOK_SKIP_SPECIAL, &whole, &whole_len, &e), 0);
    TokStream s;
    tok_stream_init(&s);
    char *printed = xstrdup("");
    size_t plen = 0;
    for (int i = 0; i <= n; i++) {
        char *piece;
        if (i < n) assert_int_equal(tok_stream_push(tok, &s, ids[i], &piece, &e), 0);
        else assert_int_equal(tok_stream_flush(tok, &s, &piece, &e), 0);
        assert_null(strstr(piece, "\xEF\xBF\xBD"));
        size_t l = strlen(piece);
        printed = xrealloc(printed, plen + l + 1);
        memcpy(printed + plen, piece, l + 1);
        plen += l;
        free(piece);
    }
    if (plen != whole_len || memcmp(printed, whole, plen))
        fail_msg("%s stream of text %d:\nexpected \"%s\"\nprinted  \"%s\"", NAMES[which], text_index, whole, printed);
    tok_stream_free(&s);
    free(printed);
    free(whole);
    free(ids);
}

static void test_streaming(void **state) {
    (void)state;
    int n_texts = cJSON_GetArraySize(g_corpus);
    for (int i = 0; i < n_texts; i++) {
        size_t len;
        const char *text = corpus_text(i, &len);
        if (strlen(text) != len) continue; /* the NUL text */
        check_stream(MINI_SPM, i);         /* byte fallback splits characters over tokens */
        check_stream(MINI_BYTELEVEL, i);
    }
    check_stream(GEMMA3, n_texts - 1); /* skips here without $SHARED */
    check_stream(LLAMA3, n_texts - 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_mini_bytelevel),
        cmocka_unit_test(test_corpus_mini_spm),
        cmocka_unit_test(test_corpus_llama3),
        cmocka_unit_test(test_corpus_qwen3),
        cmocka_unit_test(test_corpus_gemma3),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_special_tokens_llama3),
        cmocka_unit_test(test_special_tokens_qwen3),
        cmocka_unit_test(test_special_tokens_gemma3),
        cmocka_unit_test(test_special_tokens_mini),
        cmocka_unit_test(test_chat_llama3),
        cmocka_unit_test(test_chat_qwen3),
        cmocka_unit_test(test_chat_gemma3),
        cmocka_unit_test(test_chat_template_variants),
        cmocka_unit_test(test_bpe_merge_order),
        cmocka_unit_test(test_split_behaviors),
        cmocka_unit_test(test_single_word),
        cmocka_unit_test(test_metaspace_and_unk),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_encode_errors_and_edges),
        cmocka_unit_test(test_corrupted_files),
        cmocka_unit_test(test_streaming),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    if (g_tmp) remove_tree(g_tmp);
    free(g_tmp);
    return rc;
}
