/* tok_decode.c - ids -> text: the decoder chain, clean-up of tokenization spaces,
 * and incremental (streaming) decoding (see tokenizer.h). */
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "runtime/tok_internal.h"
#include "runtime/unicode.h"

/* The decoder chain works on a list of strings, as Hugging Face's decode_chain does. */
typedef struct {
    char *s;
    size_t n;
    int added; /* an added token (ByteLevel leaves those as they are) */
} DTok;

typedef struct {
    DTok *v;
    int n, cap;
} DList;

static void dl_push_owned(DList *l, char *s, size_t n, int added) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xrealloc(l->v, sizeof *l->v * (size_t)l->cap);
    }
    l->v[l->n++] = (DTok){s, n, added};
}

static void dl_push(DList *l, const char *s, size_t n, int added) {
    char *c = xmalloc(n + 1);
    memcpy(c, s, n);
    c[n] = 0;
    dl_push_owned(l, c, n, added);
}

static void dl_push_buf(DList *l, StrBuf *b, int added) {
    size_t n;
    char *s = sb_take(b, &n);
    dl_push_owned(l, s, n, added);
}

static void dl_free(DList *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i].s);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

/* ---- ByteLevel: characters back to bytes ---------------------------------------- */

/* Appends the bytes a byte-level token stands for; a token with a character outside
 * the 256-character alphabet is taken as its raw UTF-8 (as Hugging Face does). */
static void bytelevel_bytes(const DTok *tk, StrBuf *out) {
    size_t mark = out->len, i = 0;
    while (i < tk->n) {
        uint32_t cp;
        int len = utf8_decode(tk->s + i, tk->n - i, &cp);
        int b = len > 0 ? bytelevel_byte(cp) : -1;
        if (b < 0) {
            out->len = mark;
            sb_add(out, tk->s, tk->n);
            return;
        }
        sb_addc(out, (char)b);
        i += (size_t)len;
    }
}

/* Runs of ordinary tokens become one string each (so a character split over several
 * tokens comes back whole); added tokens pass through unchanged. */
static void dec_bytelevel(DList *in, DList *out) {
    StrBuf run = {0};
    int have_run = 0;
    for (int i = 0; i <= in->n; i++) {
        int flush = i == in->n || in->v[i].added;
        if (flush && have_run) {
            size_t n;
            char *s = utf8_lossy(run.data, run.len, &n);
            dl_push_owned(out, s, n, 0);
            sb_clear(&run);
            have_run = 0;
        }
        if (i == in->n) break;
        if (in->v[i].added) {
            dl_push(out, in->v[i].s, in->v[i].n, 1);
        } else {
            bytelevel_bytes(&in->v[i], &run);
            have_run = 1;
        }
    }
    sb_free(&run);
}

/* ---- ByteFallback: <0xXX> tokens back to bytes ------------------------------------ */

static int byte_token(const DTok *tk) {
    if (tk->n != 6 || memcmp(tk->s, "<0x", 3) || tk->s[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        char c = tk->s[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* A run of byte tokens becomes their text if it is valid UTF-8, else one U+FFFD per byte. */
static void flush_bytes(StrBuf *bytes, DList *out) {
    if (!bytes->len) return;
    if (utf8_valid_prefix(bytes->data, bytes->len) == bytes->len) {
        dl_push(out, bytes->data, bytes->len, 0);
    } else {
        for (size_t k = 0; k < bytes->len; k++) dl_push(out, "\xEF\xBF\xBD", 3, 0);
    }
    sb_clear(bytes);
}

static void dec_bytefallback(DList *in, DList *out) {
    StrBuf bytes = {0};
    for (int i = 0; i < in->n; i++) {
        int b = byte_token(&in->v[i]);
        if (b >= 0) {
            sb_addc(&bytes, (char)b);
            continue;
        }
        flush_bytes(&bytes, out);
        dl_push(out, in->v[i].s, in->v[i].n, in->v[i].added);
    }
    flush_bytes(&bytes, out);
    sb_free(&bytes);
}

/* ---- the others ------------------------------------------------------------------- */

static void dec_replace(const TokDecoder *d, DList *in, DList *out, TokMatch *md) {
    for (int i = 0; i < in->n; i++) {
        StrBuf b = {0};
        size_t pos = 0, ms, me;
        while (pattern_find(&d->pattern, in->v[i].s, in->v[i].n, pos, &ms, &me, md)) {
            sb_add(&b, in->v[i].s + pos, ms - pos);
            sb_adds(&b, d->content);
            pos = me;
        }
        sb_add(&b, in->v[i].s + pos, in->v[i].n - pos);
        dl_push_buf(out, &b, in->v[i].added);
    }
}

static void dec_fuse(DList *in, DList *out) {
    StrBuf b = {0};
    for (int i = 0; i < in->n; i++) sb_add(&b, in->v[i].s, in->v[i].n);
    dl_push_buf(out, &b, 0);
}

/* Strip: up to `start` leading and `stop` trailing copies of one character. */
static void dec_strip(const TokDecoder *d, DList *in, DList *out) {
    size_t clen = strlen(d->content);
    for (int i = 0; i < in->n; i++) {
        const char *s = in->v[i].s;
        size_t a = 0, z = in->v[i].n;
        for (int k = 0; k < d->start && clen && z - a >= clen && !memcmp(s + a, d->content, clen); k++) a += clen;
        for (int k = 0; k < d->stop && clen && z - a >= clen && !memcmp(s + z - clen, d->content, clen); k++) z -= clen;
        dl_push(out, s + a, z - a, in->v[i].added);
    }
}

/* Metaspace: the replacement character back to a space; the first token loses the
 * space the pre-tokenizer prepended. */
static void dec_metaspace(const TokDecoder *d, DList *in, DList *out) {
    size_t rlen = strlen(d->content);
    for (int i = 0; i < in->n; i++) {
        StrBuf b = {0};
        const char *s = in->v[i].s;
        size_t n = in->v[i].n;
        for (size_t k = 0; k < n;) {
            if (rlen && n - k >= rlen && !memcmp(s + k, d->content, rlen)) {
                sb_addc(&b, ' ');
                k += rlen;
            } else {
                sb_addc(&b, s[k++]);
            }
        }
        if (i == 0 && d->prepend_scheme != PREPEND_NEVER && b.len && b.data[0] == ' ') {
            memmove(b.data, b.data + 1, b.len);
            b.len--;
        }
        dl_push_buf(out, &b, in->v[i].added);
    }
}

/* BPEDecoder: the end-of-word suffix becomes a space (nothing after the last token). */
static void dec_bpe(const TokDecoder *d, DList *in, DList *out) {
    size_t slen = strlen(d->content);
    for (int i = 0; i < in->n; i++) {
        StrBuf b = {0};
        const char *s = in->v[i].s;
        size_t n = in->v[i].n;
        for (size_t k = 0; k < n;) {
            if (slen && n - k >= slen && !memcmp(s + k, d->content, slen)) {
                if (i != in->n - 1) sb_addc(&b, ' ');
                k += slen;
            } else {
                sb_addc(&b, s[k++]);
            }
        }
        dl_push_buf(out, &b, in->v[i].added);
    }
}

static void run_decoder(const TokDecoder *d, DList *tokens, TokMatch *md) {
    if (d->type == DEC_SEQUENCE) {
        for (int i = 0; i < d->n_children; i++) run_decoder(d->children[i], tokens, md);
        return;
    }
    DList out = {0};
    switch (d->type) {
    case DEC_BYTELEVEL: dec_bytelevel(tokens, &out); break;
    case DEC_BYTEFALLBACK: dec_bytefallback(tokens, &out); break;
    case DEC_REPLACE: dec_replace(d, tokens, &out, md); break;
    case DEC_FUSE: dec_fuse(tokens, &out); break;
    case DEC_STRIP: dec_strip(d, tokens, &out); break;
    case DEC_METASPACE: dec_metaspace(d, tokens, &out); break;
    case DEC_BPE: dec_bpe(d, tokens, &out); break;
    case DEC_SEQUENCE: break;
    }
    dl_free(tokens);
    *tokens = out;
}

/* ---- clean_up_tokenization_spaces ------------------------------------------------- */

/* transformers' clean_up_tokenization: drop the space before punctuation and
 * English contractions, applied in this order. */
static void clean_up_spaces(StrBuf *text) {
    static const char *pairs[][2] = {{" .", "."},   {" ?", "?"},     {" !", "!"},     {" ,", ","},
                                     {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"},   {" 's", "'s"},
                                     {" 've", "'ve"}, {" 're", "'re"}};
    for (size_t p = 0; p < sizeof pairs / sizeof *pairs; p++) {
        const char *from = pairs[p][0], *to = pairs[p][1];
        size_t flen = strlen(from);
        if (!memmem(text->data, text->len, from, flen)) continue;
        StrBuf out = {0};
        size_t i = 0;
        while (i < text->len) {
            if (text->len - i >= flen && !memcmp(text->data + i, from, flen)) {
                sb_adds(&out, to);
                i += flen;
            } else {
                sb_addc(&out, text->data[i++]);
            }
        }
        sb_free(text);
        *text = out;
    }
}

/* ---- tok_decode -------------------------------------------------------------------- */

int tok_decode(const Tokenizer *t, const int *ids, int n, int flags, char **text, size_t *len, Err *e) {
    *text = NULL;
    DList tokens = {0};
    for (int i = 0; i < n; i++) {
        size_t tl;
        const char *s = tok_str(t, ids[i], &tl);
        if (!s) continue;
        if ((flags & TOK_SKIP_SPECIAL) && (t->tok_flags[ids[i]] & TOKF_SPECIAL)) continue;
        dl_push(&tokens, s, tl, (t->tok_flags[ids[i]] & TOKF_ADDED) != 0);
    }
    StrBuf joined = {0};
    sb_reserve(&joined, 0);
    if (t->decoder) {
        TokMatch m = {pcre2_match_data_create(8, NULL), 0};
        run_decoder(t->decoder, &tokens, &m);
        pcre2_match_data_free(m.md);
        if (m.error) {
            dl_free(&tokens);
            sb_free(&joined);
            return err_set(e, "decoder: regex matching failed (PCRE2 error %d)", m.error);
        }
        for (int i = 0; i < tokens.n; i++) sb_add(&joined, tokens.v[i].s, tokens.v[i].n);
    } else {
        for (int i = 0; i < tokens.n; i++) {
            if (i) sb_addc(&joined, ' ');
            sb_add(&joined, tokens.v[i].s, tokens.v[i].n);
        }
    }
    dl_free(&tokens);
    if (t->clean_up_spaces && !(flags & TOK_NO_CLEANUP)) clean_up_spaces(&joined);
    *text = utf8_lossy(joined.data, joined.len, len);
    sb_free(&joined);
    return 0;
}

/* ---- streaming ----------------------------------------------------------------------- */

void tok_stream_init(TokStream *s) { memset(s, 0, sizeof *s); }

void tok_stream_free(TokStream *s) {
    free(s->ids);
    memset(s, 0, sizeof *s);
}

static int ends_with_replacement(const char *s, size_t n) {
    return n >= 3 && !memcmp(s + n - 3, "\xEF\xBF\xBD", 3);
}

/* The window trick: decode ids[prefix..read) and ids[prefix..n); what the second adds
 * to the first is new text, unless it ends in an incomplete character. Decoding from
 * a few tokens back keeps context-dependent decoders (leading-space stripping) right. */
int tok_stream_push(const Tokenizer *t, TokStream *s, int id, char **text, Err *e) {
    *text = NULL;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->ids = xrealloc(s->ids, sizeof *s->ids * (size_t)s->cap);
    }
    s->ids[s->n++] = id;
    char *before, *after;
    size_t blen, alen;
    if (tok_decode(t, s->ids + s->prefix, s->read - s->prefix, TOK_SKIP_SPECIAL, &before, &blen, e) < 0) return -1;
    if (tok_decode(t, s->ids + s->prefix, s->n - s->prefix, TOK_SKIP_SPECIAL, &after, &alen, e) < 0) {
        free(before);
        return -1;
    }
    if (alen > blen && !memcmp(after, before, blen) && !ends_with_replacement(after, alen)) {
        memmove(after, after + blen, alen - blen + 1);
        *text = after;
        s->prefix = s->read;
        s->read = s->n;
    } else {
        free(after);
        *text = xstrdup("");
    }
    free(before);
    return 0;
}

int tok_stream_flush(const Tokenizer *t, TokStream *s, char **text, Err *e) {
    *text = NULL;
    if (!s->ids) {
        *text = xstrdup("");
        return 0;
    }
    char *before, *after;
    size_t blen, alen;
    if (tok_decode(t, s->ids + s->prefix, s->read - s->prefix, TOK_SKIP_SPECIAL, &before, &blen, e) < 0) return -1;
    if (tok_decode(t, s->ids + s->prefix, s->n - s->prefix, TOK_SKIP_SPECIAL, &after, &alen, e) < 0) {
        free(before);
        return -1;
    }
    if (alen > blen && !memcmp(after, before, blen)) {
        memmove(after, after + blen, alen - blen + 1);
        *text = after;
    } else {
        free(after);
        *text = xstrdup("");
    }
    free(before);
    s->prefix = s->read = s->n;
    return 0;
}
