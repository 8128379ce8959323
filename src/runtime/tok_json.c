/* tok_json.c - a small strict JSON reader for tokenizer.json.
 *
 * tokenizer.json is mostly two huge members, model.vocab (token -> id) and
 * model.merges (a list of pairs): 33 MB for Gemma 3. Building a cJSON tree of them
 * costs ~0.8 s and ~200 MB, so this reader streams those two straight to
 * callbacks and hands every other member to the caller as raw JSON text (small;
 * the caller parses it with cJSON). Strings are unescaped into reusable buffers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tok_internal.h"
#include "runtime/unicode.h"

#define MAX_DEPTH 200

typedef struct {
    const char *s;
    size_t n, i;
    Err *e;
} JScan;

static int jerr(JScan *j, const char *what) {
    size_t line = 1, col = 1;
    for (size_t k = 0; k < j->i && k < j->n; k++) {
        if (j->s[k] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    if (j->i >= j->n) return err_set(j->e, "invalid JSON: unexpected end of file (%s)", what);
    return err_set(j->e, "invalid JSON at line %zu, column %zu: %s", line, col, what);
}

static void skip_ws(JScan *j) {
    while (j->i < j->n) {
        char c = j->s[j->i];
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t') break;
        j->i++;
    }
}

static int expect(JScan *j, char c) {
    skip_ws(j);
    if (j->i >= j->n || j->s[j->i] != c) {
        char what[32];
        snprintf(what, sizeof what, "expected '%c'", c);
        return jerr(j, what);
    }
    j->i++;
    return 0;
}

static int hex4(JScan *j, uint32_t *v) {
    if (j->i + 4 > j->n) return jerr(j, "truncated \\u escape");
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = j->s[j->i + (size_t)k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return jerr(j, "bad \\u escape");
        *v = *v * 16 + (uint32_t)d;
    }
    j->i += 4;
    return 0;
}

/* Reads a string (at the opening quote) into out (cleared first). Lone surrogate
 * escapes become U+FFFD. */
static int read_string(JScan *j, StrBuf *out) {
    sb_clear(out);
    skip_ws(j);
    if (j->i >= j->n || j->s[j->i] != '"') return jerr(j, "expected a string");
    j->i++;
    for (;;) {
        size_t start = j->i;
        while (j->i < j->n) {
            unsigned char c = (unsigned char)j->s[j->i];
            if (c == '"' || c == '\\' || c < 0x20) break;
            j->i++;
        }
        sb_add(out, j->s + start, j->i - start);
        if (j->i >= j->n) return jerr(j, "unterminated string");
        char c = j->s[j->i++];
        if (c == '"') return 0;
        if (c != '\\') {
            j->i--;
            return jerr(j, "control character in string");
        }
        if (j->i >= j->n) return jerr(j, "unterminated string");
        char esc = j->s[j->i++];
        switch (esc) {
        case '"': sb_addc(out, '"'); break;
        case '\\': sb_addc(out, '\\'); break;
        case '/': sb_addc(out, '/'); break;
        case 'b': sb_addc(out, '\b'); break;
        case 'f': sb_addc(out, '\f'); break;
        case 'n': sb_addc(out, '\n'); break;
        case 'r': sb_addc(out, '\r'); break;
        case 't': sb_addc(out, '\t'); break;
        case 'u': {
            uint32_t cp;
            if (hex4(j, &cp) < 0) return -1;
            if (cp >= 0xD800 && cp < 0xDC00 && j->i + 6 <= j->n && j->s[j->i] == '\\' && j->s[j->i + 1] == 'u') {
                size_t save = j->i;
                j->i += 2;
                uint32_t lo;
                if (hex4(j, &lo) < 0) return -1;
                if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                else j->i = save;
            }
            if (cp >= 0xD800 && cp < 0xE000) cp = UNI_REPLACEMENT;
            char u[4];
            sb_add(out, u, (size_t)utf8_encode(cp, u));
            break;
        }
        default:
            j->i--;
            return jerr(j, "bad escape in string");
        }
    }
}

static int skip_value(JScan *j, int depth);

static int skip_container(JScan *j, char close, int is_object, int depth) {
    j->i++; /* the opening bracket */
    skip_ws(j);
    if (j->i < j->n && j->s[j->i] == close) {
        j->i++;
        return 0;
    }
    StrBuf key = {0};
    for (;;) {
        if (is_object) {
            if (read_string(j, &key) < 0 || expect(j, ':') < 0) goto fail;
        }
        if (skip_value(j, depth + 1) < 0) goto fail;
        skip_ws(j);
        if (j->i < j->n && j->s[j->i] == ',') {
            j->i++;
            continue;
        }
        if (j->i < j->n && j->s[j->i] == close) {
            j->i++;
            sb_free(&key);
            return 0;
        }
        jerr(j, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
        goto fail;
    }
fail:
    sb_free(&key);
    return -1;
}

static int skip_literal(JScan *j, const char *word) {
    size_t len = strlen(word);
    if (j->i + len > j->n || memcmp(j->s + j->i, word, len) != 0) return jerr(j, "unexpected character");
    j->i += len;
    return 0;
}

static int skip_number(JScan *j) {
    size_t start = j->i;
    if (j->s[j->i] == '-') j->i++;
    while (j->i < j->n && strchr("0123456789+-.eE", j->s[j->i])) j->i++;
    if (j->i == start || (j->i == start + 1 && j->s[start] == '-')) return jerr(j, "bad number");
    return 0;
}

static int skip_value(JScan *j, int depth) {
    if (depth > MAX_DEPTH) return jerr(j, "nested too deeply");
    skip_ws(j);
    if (j->i >= j->n) return jerr(j, "expected a value");
    StrBuf tmp = {0};
    int rc;
    switch (j->s[j->i]) {
    case '{': return skip_container(j, '}', 1, depth);
    case '[': return skip_container(j, ']', 0, depth);
    case '"':
        rc = read_string(j, &tmp);
        sb_free(&tmp);
        return rc;
    case 't': return skip_literal(j, "true");
    case 'f': return skip_literal(j, "false");
    case 'n': return skip_literal(j, "null");
    default:
        if (j->s[j->i] == '-' || (j->s[j->i] >= '0' && j->s[j->i] <= '9')) return skip_number(j);
        return jerr(j, "unexpected character");
    }
}

/* Calls fn(key) for each member of the object at the cursor; fn reads the value. */
typedef int (*MemberFn)(JScan *j, const char *key, void *ctx);
static int each_member(JScan *j, MemberFn fn, void *ctx) {
    if (expect(j, '{') < 0) return -1;
    skip_ws(j);
    if (j->i < j->n && j->s[j->i] == '}') {
        j->i++;
        return 0;
    }
    StrBuf key = {0};
    for (;;) {
        if (read_string(j, &key) < 0 || expect(j, ':') < 0) break;
        skip_ws(j);
        if (fn(j, key.data, ctx) < 0) break;
        skip_ws(j);
        if (j->i < j->n && j->s[j->i] == ',') {
            j->i++;
            continue;
        }
        if (j->i < j->n && j->s[j->i] == '}') {
            j->i++;
            sb_free(&key);
            return 0;
        }
        jerr(j, "expected ',' or '}'");
        break;
    }
    sb_free(&key);
    return -1;
}

/* ---- model.vocab and model.merges ---------------------------------------------- */

static int read_int(JScan *j, long *out) {
    skip_ws(j);
    size_t start = j->i;
    int neg = 0;
    if (j->i < j->n && j->s[j->i] == '-') {
        neg = 1;
        j->i++;
    }
    long v = 0;
    int digits = 0;
    while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9') {
        if (v > 100000000L) return jerr(j, "token id too large");
        v = v * 10 + (j->s[j->i++] - '0');
        digits++;
    }
    if (!digits || (j->i < j->n && strchr(".eE", j->s[j->i]))) {
        j->i = start;
        return jerr(j, "expected an integer token id");
    }
    *out = neg ? -v : v;
    return 0;
}

typedef struct {
    const TokJsonVisitor *v;
    StrBuf a, b;
    long n_merges;
} ModelCtx;

/* strlen() would stop at a NUL inside a token ("\u0000" is a real vocab entry in
 * byte-fallback vocabularies), so vocab keys are re-read with their length. */
static int read_vocab(JScan *j, ModelCtx *m) {
    skip_ws(j);
    if (j->i < j->n && j->s[j->i] == '[')
        return jerr(j, "model.vocab is a list, as in a Unigram model; only BPE models are supported");
    if (expect(j, '{') < 0) return -1;
    skip_ws(j);
    if (j->i < j->n && j->s[j->i] == '}') {
        j->i++;
        return 0;
    }
    for (;;) {
        if (read_string(j, &m->a) < 0 || expect(j, ':') < 0) return -1;
        long id = 0;
        if (read_int(j, &id) < 0) return -1;
        if (m->v->vocab_entry(m->v->ctx, m->a.data, m->a.len, id, j->e) < 0) return -1;
        skip_ws(j);
        if (j->i < j->n && j->s[j->i] == ',') {
            j->i++;
            continue;
        }
        if (j->i < j->n && j->s[j->i] == '}') {
            j->i++;
            return 0;
        }
        return jerr(j, "expected ',' or '}' in model.vocab");
    }
}

/* One merge: "a b" (split at the single space) or ["a", "b"]. */
static int read_merge(JScan *j, ModelCtx *m) {
    skip_ws(j);
    if (j->i < j->n && j->s[j->i] == '[') {
        j->i++;
        if (read_string(j, &m->a) < 0 || expect(j, ',') < 0 || read_string(j, &m->b) < 0 || expect(j, ']') < 0)
            return err_wrap(j->e, "model.merges[%ld] must be a pair of strings", m->n_merges);
    } else {
        if (read_string(j, &m->a) < 0) return err_wrap(j->e, "model.merges[%ld]", m->n_merges);
        char *sp = memchr(m->a.data, ' ', m->a.len);
        if (!sp || memchr(sp + 1, ' ', m->a.len - (size_t)(sp + 1 - m->a.data)))
            return err_set(j->e, "model.merges[%ld] \"%.60s\" must be two tokens separated by one space", m->n_merges,
                           m->a.data);
        size_t alen = (size_t)(sp - m->a.data);
        sb_clear(&m->b);
        sb_add(&m->b, sp + 1, m->a.len - alen - 1);
        m->a.len = alen;
        m->a.data[alen] = 0;
    }
    return m->v->merge_entry(m->v->ctx, m->n_merges++, m->a.data, m->a.len, m->b.data, m->b.len, j->e);
}

static int read_merges(JScan *j, ModelCtx *m) {
    if (expect(j, '[') < 0) return err_wrap(j->e, "model.merges must be a list");
    skip_ws(j);
    if (j->i < j->n && j->s[j->i] == ']') {
        j->i++;
        return 0;
    }
    for (;;) {
        if (read_merge(j, m) < 0) return -1;
        skip_ws(j);
        if (j->i < j->n && j->s[j->i] == ',') {
            j->i++;
            continue;
        }
        if (j->i < j->n && j->s[j->i] == ']') {
            j->i++;
            return 0;
        }
        return jerr(j, "expected ',' or ']' in model.merges");
    }
}

static int model_member(JScan *j, const char *key, void *vctx) {
    ModelCtx *m = vctx;
    if (!strcmp(key, "vocab")) return read_vocab(j, m);
    if (!strcmp(key, "merges")) return read_merges(j, m);
    size_t start = j->i;
    if (skip_value(j, 1) < 0) return -1;
    return m->v->model_member(m->v->ctx, key, j->s + start, j->i - start, j->e);
}

static int top_member(JScan *j, const char *key, void *vctx) {
    ModelCtx *m = vctx;
    if (!strcmp(key, "model")) {
        skip_ws(j);
        if (j->i >= j->n || j->s[j->i] != '{') return jerr(j, "\"model\" must be an object");
        return each_member(j, model_member, m);
    }
    size_t start = j->i;
    if (skip_value(j, 0) < 0) return -1;
    return m->v->top_member(m->v->ctx, key, j->s + start, j->i - start, j->e);
}

int tok_json_read(const char *text, size_t len, const TokJsonVisitor *v, Err *e) {
    JScan j = {text, len, 0, e};
    ModelCtx m = {v, {0}, {0}, 0};
    skip_ws(&j);
    int rc = -1;
    if (j.i >= j.n || j.s[j.i] != '{') {
        jerr(&j, "the file must hold a JSON object");
    } else if (each_member(&j, top_member, &m) == 0) {
        skip_ws(&j);
        rc = j.i == j.n ? 0 : jerr(&j, "trailing characters after the JSON object");
    }
    sb_free(&m.a);
    sb_free(&m.b);
    return rc;
}
