/* tok_pipeline.c - the pieces of the tokenizer.json pipeline, built from their JSON:
 * regexes (Oniguruma syntax compiled with PCRE2), the byte-level alphabet, and the
 * normalizer / pre-tokenizer / post-processor / decoder trees (see tok_internal.h).
 * Each loader names the JSON path of what it rejects ("pre_tokenizer.pretokenizers[0]"). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "runtime/tok_cjson.h"
#include "runtime/tok_internal.h"
#include "runtime/unicode.h"

/* ==== byte-level alphabet ===================================================== */

/* GPT-2's reversible byte -> character map: printable Latin-1 bytes map to
 * themselves, the other 68 bytes to U+0100.. in byte order. */
static ByteLevelMap g_bytelevel;
static int16_t g_bytelevel_inverse[0x180];
static pthread_once_t g_bytelevel_once = PTHREAD_ONCE_INIT;

static void bytelevel_build(void) {
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)extra++;
        g_bytelevel.len[b] = (uint8_t)utf8_encode(cp, g_bytelevel.utf8[b]);
    }
    for (int i = 0; i < 0x180; i++) g_bytelevel_inverse[i] = -1;
    for (int b = 0; b < 256; b++) {
        uint32_t cp;
        utf8_decode(g_bytelevel.utf8[b], g_bytelevel.len[b], &cp);
        g_bytelevel_inverse[cp] = (int16_t)b;
    }
}

const ByteLevelMap *bytelevel_map(void) {
    pthread_once(&g_bytelevel_once, bytelevel_build);
    return &g_bytelevel;
}

int bytelevel_byte(uint32_t cp) {
    bytelevel_map();
    return cp < 0x180 ? g_bytelevel_inverse[cp] : -1;
}

/* ==== regexes ================================================================== */

/* Oniguruma's \s (which Hugging Face's Rust library uses) is Unicode White_Space;
 * PCRE2's \s under UCP also accepts U+180E. Spell the class out so both agree. */
#define WHITE_SPACE_MEMBERS "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

static void translate_regex(const char *p, StrBuf *out) {
    int in_class = 0;
    for (size_t i = 0; p[i]; i++) {
        char c = p[i];
        if (c == '\\' && p[i + 1]) {
            char n = p[i + 1];
            if (n == 's') sb_adds(out, in_class ? WHITE_SPACE_MEMBERS : "[" WHITE_SPACE_MEMBERS "]");
            else if (n == 'S' && !in_class) sb_adds(out, "[^" WHITE_SPACE_MEMBERS "]");
            else sb_add(out, p + i, 2);
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = 1;
            sb_addc(out, c);
            /* a ']' right after '[' or '[^' is a literal */
            if (p[i + 1] == '^') sb_addc(out, p[++i]);
            if (p[i + 1] == ']') sb_addc(out, p[++i]);
            continue;
        }
        if (in_class && c == '[' && p[i + 1] == ':') { /* POSIX class [:alpha:] */
            const char *end = strstr(p + i + 2, ":]");
            if (end) {
                sb_add(out, p + i, (size_t)(end + 2 - (p + i)));
                i = (size_t)(end + 1 - p);
                continue;
            }
        }
        if (in_class && c == ']') in_class = 0;
        sb_addc(out, c);
    }
}

int tok_regex_compile(const char *pattern, pcre2_code **out, Err *e) {
    StrBuf tr = {0};
    translate_regex(pattern, &tr);
    int code;
    PCRE2_SIZE off;
    /* MULTILINE: Oniguruma's ^ and $ are line anchors. */
    *out = pcre2_compile((PCRE2_SPTR)tr.data, tr.len, PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &code, &off, NULL);
    sb_free(&tr);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return err_set(e, "regex /%s/ does not compile: %s", pattern, (const char *)msg);
    }
    pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* optional speed-up; the interpreter is the fallback */
    return 0;
}

/* ==== pipeline components ========================================================= */

static int load_pattern(const cJSON *spec, TokPattern *p, const char *where, Err *e) {
    const char *s;
    if ((s = jstr(spec, "String"))) {
        p->literal = xstrdup(s);
        p->literal_len = strlen(s);
        return 0;
    }
    if ((s = jstr(spec, "Regex"))) {
        if (tok_regex_compile(s, &p->re, e) < 0) return err_wrap(e, "%s", where);
        return 0;
    }
    return err_set(e, "%s: pattern must be {\"String\": ...} or {\"Regex\": ...}", where);
}

static void free_pattern(TokPattern *p) {
    free(p->literal);
    if (p->re) pcre2_code_free(p->re);
}

static const char *type_of(const cJSON *o, const char *where, Err *e) {
    const char *type = jstr(o, "type");
    if (!type) err_set(e, "%s: missing \"type\"", where);
    return type;
}

int load_normalizer(const cJSON *o, TokNormalizer **out, const char *where, Err *e) {
    const char *type = type_of(o, where, e);
    if (!type) return -1;
    TokNormalizer *n = xcalloc(1, sizeof *n);
    *out = n;
    if (!strcmp(type, "Sequence")) {
        n->type = NORM_SEQUENCE;
        const cJSON *list = jget(o, "normalizers");
        if (!cJSON_IsArray(list)) return err_set(e, "%s: Sequence needs a \"normalizers\" list", where);
        n->children = xcalloc((size_t)cJSON_GetArraySize(list) + 1, sizeof *n->children);
        const cJSON *it;
        cJSON_ArrayForEach(it, list) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.normalizers[%d]", where, n->n_children);
            if (load_normalizer(it, &n->children[n->n_children++], sub, e) < 0) return -1;
        }
    } else if (!strcmp(type, "NFC")) {
        n->type = NORM_NFC;
    } else if (!strcmp(type, "NFD")) {
        n->type = NORM_NFD;
    } else if (!strcmp(type, "NFKC")) {
        n->type = NORM_NFKC;
    } else if (!strcmp(type, "NFKD")) {
        n->type = NORM_NFKD;
    } else if (!strcmp(type, "Replace")) {
        n->type = NORM_REPLACE;
        if (load_pattern(jget(o, "pattern"), &n->pattern, where, e) < 0) return -1;
        const char *c = jstr(o, "content");
        n->content = xstrdup(c ? c : "");
    } else if (!strcmp(type, "Prepend")) {
        n->type = NORM_PREPEND;
        const char *c = jstr(o, "prepend");
        if (!c) return err_set(e, "%s: Prepend needs \"prepend\"", where);
        n->content = xstrdup(c);
    } else if (!strcmp(type, "Strip")) {
        n->type = NORM_STRIP;
        n->strip_left = jbool(o, "strip_left", 1);
        n->strip_right = jbool(o, "strip_right", 1);
    } else {
        return err_set(e, "%s: normalizer \"%s\" is not supported (supported: Sequence, NFC, NFD, NFKC, NFKD, "
                          "Replace, Prepend, Strip)", where, type);
    }
    return 0;
}

void free_normalizer(TokNormalizer *n) {
    if (!n) return;
    for (int i = 0; i < n->n_children; i++) free_normalizer(n->children[i]);
    free(n->children);
    free_pattern(&n->pattern);
    free(n->content);
    free(n);
}

static PrependScheme prepend_scheme_of(const cJSON *o) {
    const char *s = jstr(o, "prepend_scheme");
    if (s && !strcmp(s, "first")) return PREPEND_FIRST;
    if (s && !strcmp(s, "never")) return PREPEND_NEVER;
    if (!s && !jbool(o, "add_prefix_space", 1)) return PREPEND_NEVER; /* older files */
    return PREPEND_ALWAYS;
}

#define GPT2_REGEX "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

int load_pre_tokenizer(const cJSON *o, TokPreTokenizer **out, const char *where, Err *e) {
    const char *type = type_of(o, where, e);
    if (!type) return -1;
    TokPreTokenizer *p = xcalloc(1, sizeof *p);
    *out = p;
    if (!strcmp(type, "Sequence")) {
        p->type = PRE_SEQUENCE;
        const cJSON *list = jget(o, "pretokenizers");
        if (!cJSON_IsArray(list)) return err_set(e, "%s: Sequence needs a \"pretokenizers\" list", where);
        p->children = xcalloc((size_t)cJSON_GetArraySize(list) + 1, sizeof *p->children);
        const cJSON *it;
        cJSON_ArrayForEach(it, list) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.pretokenizers[%d]", where, p->n_children);
            if (load_pre_tokenizer(it, &p->children[p->n_children++], sub, e) < 0) return -1;
        }
    } else if (!strcmp(type, "Split")) {
        p->type = PRE_SPLIT;
        if (load_pattern(jget(o, "pattern"), &p->pattern, where, e) < 0) return -1;
        const char *b = jstr(o, "behavior");
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        int found = -1;
        for (int i = 0; b && i < 5; i++)
            if (!strcmp(b, names[i])) found = i;
        if (found < 0)
            return err_set(e, "%s: Split behavior \"%s\" is not one of Removed, Isolated, MergedWithPrevious, "
                              "MergedWithNext, Contiguous", where, b ? b : "(missing)");
        p->behavior = (SplitBehavior)found;
        p->invert = jbool(o, "invert", 0);
    } else if (!strcmp(type, "ByteLevel")) {
        p->type = PRE_BYTELEVEL;
        p->add_prefix_space = jbool(o, "add_prefix_space", 1);
        p->use_regex = jbool(o, "use_regex", 1);
        if (p->use_regex && tok_regex_compile(GPT2_REGEX, &p->pattern.re, e) < 0) return -1;
    } else if (!strcmp(type, "Metaspace")) {
        p->type = PRE_METASPACE;
        const char *r = jstr(o, "replacement");
        p->replacement = xstrdup(r ? r : "\xE2\x96\x81");
        p->prepend_scheme = prepend_scheme_of(o);
        p->split = jbool(o, "split", 1);
    } else if (!strcmp(type, "Digits")) {
        p->type = PRE_DIGITS;
        if (tok_regex_compile(jbool(o, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+", &p->pattern.re, e) < 0)
            return -1;
    } else if (!strcmp(type, "Whitespace")) {
        p->type = PRE_WHITESPACE;
        if (tok_regex_compile("\\w+|[^\\w\\s]+", &p->pattern.re, e) < 0) return -1;
    } else if (!strcmp(type, "WhitespaceSplit")) {
        p->type = PRE_WHITESPACE_SPLIT;
        if (tok_regex_compile("\\s+", &p->pattern.re, e) < 0) return -1;
    } else {
        return err_set(e, "%s: pre-tokenizer \"%s\" is not supported (supported: Sequence, Split, ByteLevel, "
                          "Metaspace, Digits, Whitespace, WhitespaceSplit)", where, type);
    }
    return 0;
}

void free_pre_tokenizer(TokPreTokenizer *p) {
    if (!p) return;
    for (int i = 0; i < p->n_children; i++) free_pre_tokenizer(p->children[i]);
    free(p->children);
    free_pattern(&p->pattern);
    free(p->replacement);
    free(p);
}

/* TemplateProcessing's "single" template: special tokens before and after $A.
 * Each piece {"SpecialToken": {"id": NAME}} expands to special_tokens[NAME].ids. */
static int load_template(const cJSON *o, TokPostProcessor *p, const char *where, Err *e) {
    const cJSON *single = jget(o, "single"), *specials = jget(o, "special_tokens");
    if (!cJSON_IsArray(single)) return err_set(e, "%s: TemplateProcessing needs a \"single\" list", where);
    IntVec before = {0}, after = {0};
    int seen_a = 0;
    const cJSON *piece;
    cJSON_ArrayForEach(piece, single) {
        const cJSON *sp = jget(piece, "SpecialToken"), *seq = jget(piece, "Sequence");
        if (seq) {
            seen_a = 1;
            continue;
        }
        const char *name = jstr(sp, "id");
        const cJSON *ids = jget(jget(specials, name ? name : ""), "ids");
        if (!name || !cJSON_IsArray(ids)) {
            iv_free(&before);
            iv_free(&after);
            return err_set(e, "%s: template piece %s is not listed in special_tokens", where, name ? name : "(no id)");
        }
        const cJSON *id;
        cJSON_ArrayForEach(id, ids) iv_push(seen_a ? &after : &before, id->valueint);
    }
    p->before = before.v;
    p->n_before = before.n;
    p->after = after.v;
    p->n_after = after.n;
    return 0;
}

static int token_pair_id(const cJSON *pair, int *id) {
    /* "cls": ["<s>", 0] */
    const cJSON *v = cJSON_IsArray(pair) ? cJSON_GetArrayItem(pair, 1) : NULL;
    if (!cJSON_IsNumber(v)) return -1;
    *id = v->valueint;
    return 0;
}

int load_post_processor(const cJSON *o, TokPostProcessor **out, const char *where, Err *e) {
    const char *type = type_of(o, where, e);
    if (!type) return -1;
    TokPostProcessor *p = xcalloc(1, sizeof *p);
    *out = p;
    if (!strcmp(type, "Sequence")) {
        p->type = POST_SEQUENCE;
        const cJSON *list = jget(o, "processors");
        if (!cJSON_IsArray(list)) return err_set(e, "%s: Sequence needs a \"processors\" list", where);
        p->children = xcalloc((size_t)cJSON_GetArraySize(list) + 1, sizeof *p->children);
        const cJSON *it;
        cJSON_ArrayForEach(it, list) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.processors[%d]", where, p->n_children);
            if (load_post_processor(it, &p->children[p->n_children++], sub, e) < 0) return -1;
        }
    } else if (!strcmp(type, "TemplateProcessing")) {
        p->type = POST_TEMPLATE;
        return load_template(o, p, where, e);
    } else if (!strcmp(type, "ByteLevel")) {
        p->type = POST_BYTELEVEL; /* only adjusts offsets, which we do not produce */
    } else if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        p->type = POST_CLS_SEP;
        int cls, sep;
        if (token_pair_id(jget(o, "cls"), &cls) < 0 || token_pair_id(jget(o, "sep"), &sep) < 0)
            return err_set(e, "%s: %s needs \"cls\" and \"sep\" as [token, id]", where, type);
        p->before = xmalloc(sizeof(int));
        p->after = xmalloc(sizeof(int));
        p->before[0] = cls;
        p->after[0] = sep;
        p->n_before = p->n_after = 1;
    } else {
        return err_set(e, "%s: post-processor \"%s\" is not supported (supported: Sequence, TemplateProcessing, "
                          "ByteLevel, RobertaProcessing, BertProcessing)", where, type);
    }
    return 0;
}

void free_post_processor(TokPostProcessor *p) {
    if (!p) return;
    for (int i = 0; i < p->n_children; i++) free_post_processor(p->children[i]);
    free(p->children);
    free(p->before);
    free(p->after);
    free(p);
}

int load_decoder(const cJSON *o, TokDecoder **out, const char *where, Err *e) {
    const char *type = type_of(o, where, e);
    if (!type) return -1;
    TokDecoder *d = xcalloc(1, sizeof *d);
    *out = d;
    if (!strcmp(type, "Sequence")) {
        d->type = DEC_SEQUENCE;
        const cJSON *list = jget(o, "decoders");
        if (!cJSON_IsArray(list)) return err_set(e, "%s: Sequence needs a \"decoders\" list", where);
        d->children = xcalloc((size_t)cJSON_GetArraySize(list) + 1, sizeof *d->children);
        const cJSON *it;
        cJSON_ArrayForEach(it, list) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.decoders[%d]", where, d->n_children);
            if (load_decoder(it, &d->children[d->n_children++], sub, e) < 0) return -1;
        }
    } else if (!strcmp(type, "ByteLevel")) {
        d->type = DEC_BYTELEVEL;
    } else if (!strcmp(type, "Replace")) {
        d->type = DEC_REPLACE;
        if (load_pattern(jget(o, "pattern"), &d->pattern, where, e) < 0) return -1;
        const char *c = jstr(o, "content");
        d->content = xstrdup(c ? c : "");
    } else if (!strcmp(type, "ByteFallback")) {
        d->type = DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        d->type = DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        d->type = DEC_STRIP;
        const char *c = jstr(o, "content");
        d->content = xstrdup(c ? c : " ");
        d->start = jint(o, "start", 0);
        d->stop = jint(o, "stop", 0);
    } else if (!strcmp(type, "Metaspace")) {
        d->type = DEC_METASPACE;
        const char *r = jstr(o, "replacement");
        d->content = xstrdup(r ? r : "\xE2\x96\x81");
        d->prepend_scheme = prepend_scheme_of(o);
    } else if (!strcmp(type, "BPEDecoder")) {
        d->type = DEC_BPE;
        const char *s = jstr(o, "suffix");
        d->content = xstrdup(s ? s : "</w>");
    } else {
        return err_set(e, "%s: decoder \"%s\" is not supported (supported: Sequence, ByteLevel, Replace, "
                          "ByteFallback, Fuse, Strip, Metaspace, BPEDecoder)", where, type);
    }
    return 0;
}

void free_decoder(TokDecoder *d) {
    if (!d) return;
    for (int i = 0; i < d->n_children; i++) free_decoder(d->children[i]);
    free(d->children);
    free_pattern(&d->pattern);
    free(d->content);
    free(d);
}

