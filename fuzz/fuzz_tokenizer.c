/* fuzz_tokenizer.c - libFuzzer target for tokenizer.json loading, encoding and decoding.
 *
 * Input framing (little-endian, the length clamped to what follows):
 *     u32 json_len | tokenizer.json | text
 * The tokenizer is loaded from memory (tok_load_json: vocab and merges reader, pipeline
 * components, added tokens). One that loads encodes the text with and without special tokens,
 * decodes the ids (all, and skipping specials), streams the first 64 one at a time, and
 * decodes the text's bytes read as arbitrary ids (negative, past the vocabulary, ...). Encoding may refuse
 * invalid UTF-8, or a text on which the tokenizer's regex exceeds PCRE2's match limit (a
 * backtracking pattern), with a message; nothing else may fail.
 *
 *     make fuzz-one FUZZ_TARGET=tokenizer FUZZ_SECONDS=60      (see fuzz/module.mk)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "runtime/tokenizer.h"

/* Streaming decodes a window per id: the first ids cover it (more only slow the fuzzer). */
#define MAX_STREAMED 64

static void must(int rc, const char *what, const Err *e) {
    if (rc == 0) return;
    fprintf(stderr, "%s failed: %s\n", what, e->msg);
    abort();
}

static void decode_all_ways(const Tokenizer *t, const int *ids, int n) {
    Err e;
    char *text;
    size_t len;
    must(tok_decode(t, ids, n, 0, &text, &len, &e), "tok_decode", &e);
    free(text);
    must(tok_decode(t, ids, n, TOK_SKIP_SPECIAL | TOK_NO_CLEANUP, &text, NULL, &e), "tok_decode(skip special)", &e);
    free(text);
    TokStream s;
    tok_stream_init(&s);
    for (int i = 0; i < n && i < MAX_STREAMED; i++) {
        must(tok_stream_push(t, &s, ids[i], &text, &e), "tok_stream_push", &e);
        free(text);
    }
    must(tok_stream_flush(t, &s, &text, &e), "tok_stream_flush", &e);
    free(text);
    tok_stream_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *json;
    size_t json_len;
    fuzz_take(&data, &size, &json, &json_len);
    char *json_copy = fuzz_copy(json, json_len, 0);
    Tokenizer *t;
    Err e;
    int rc = tok_load_json(&t, json_copy, json_len, "tokenizer.json", &e);
    free(json_copy);
    if (rc < 0) {
        if (!strstr(e.msg, "tokenizer.json")) {
            fprintf(stderr, "error does not name the file: %s\n", e.msg);
            abort();
        }
        return 0;
    }
    char *text = fuzz_copy(data, size, 0);
    for (int flags = 0; flags <= TOK_ADD_SPECIAL; flags += TOK_ADD_SPECIAL) {
        int *ids, n;
        if (tok_encode(t, text, size, flags, &ids, &n, &e) < 0) {
            if (!strstr(e.msg, "UTF-8") && !strstr(e.msg, "regex matching failed")) {
                fprintf(stderr, "tok_encode failed: %s\n", e.msg);
                abort();
            }
            continue;
        }
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= tok_vocab_size(t) || !tok_id_to_token(t, ids[i], NULL)) {
                fprintf(stderr, "encoding gave id %d, which names no token\n", ids[i]);
                abort();
            }
        decode_all_ways(t, ids, n);
        free(ids);
    }
    /* the text's bytes as ids: pairs of bytes, signed, scaled to reach past the vocabulary */
    int n = (int)(size / 2 < 1024 ? size / 2 : 1024);
    int *ids = xmalloc(sizeof *ids * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) ids[i] = (int16_t)(data[2 * i] | data[2 * i + 1] << 8) * 3;
    decode_all_ways(t, ids, n);
    free(ids);
    free(text);
    tok_free(t);
    return 0;
}
