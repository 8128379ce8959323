/* tok_encode.c - text -> ids (see tokenizer.h for the pipeline).
 *
 * The semantics follow Hugging Face's Rust `tokenizers` library, which the
 * committed reference encodings (tests/data/tokenizer/) were checked against.
 */
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "runtime/tok_internal.h"
#include "runtime/unicode.h"

/* ==== patterns ==================================================================== */

int pattern_find(const TokPattern *p, const char *s, size_t n, size_t from, size_t *ms, size_t *me, TokMatch *m) {
    if (p->literal) {
        if (!p->literal_len || from >= n || n - from < p->literal_len) return 0;
        const char *hit = memmem(s + from, n - from, p->literal, p->literal_len);
        if (!hit) return 0;
        *ms = (size_t)(hit - s);
        *me = *ms + p->literal_len;
        return 1;
    }
    while (from <= n) {
        int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, m->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc < 0) {
            if (!m->error) m->error = rc;
            return 0;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
        if (ov[1] > ov[0]) {
            *ms = ov[0];
            *me = ov[1];
            return 1;
        }
        /* An empty match splits nothing: look again one character further on. */
        size_t next = ov[0] + 1;
        while (next < n && ((unsigned char)s[next] & 0xC0) == 0x80) next++;
        from = next;
    }
    return 0;
}

/* ==== per-call scratch ================================================================ */

typedef struct {
    char *s;
    size_t n;
    int at_start; /* begins at offset 0 of the whole input (Metaspace prepend_scheme "first") */
} Piece;

typedef struct {
    Piece *v;
    int n, cap;
} PieceList;

static void pl_push(PieceList *l, const char *s, size_t n, int at_start) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xrealloc(l->v, sizeof *l->v * (size_t)l->cap);
    }
    Piece *p = &l->v[l->n++];
    p->s = xmalloc(n + 1);
    memcpy(p->s, s, n);
    p->s[n] = 0;
    p->n = n;
    p->at_start = at_start;
}

static void pl_free(PieceList *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i].s);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

typedef struct {
    int id;
    int prev, next; /* -1 at the ends */
    int alive;
} Sym;

typedef struct {
    uint32_t rank;
    int pos;
    int new_id;
} Cand;

typedef struct {
    const Tokenizer *t;
    TokMatch *md;
    Sym *syms;
    int cap_syms;
    Cand *heap;
    int n_heap, cap_heap;
} Enc;

/* ==== normalizers ===================================================================== */

static void replace_all(const TokPattern *p, const char *content, const char *s, size_t n, StrBuf *out,
                        TokMatch *md) {
    size_t pos = 0, ms, me;
    while (pattern_find(p, s, n, pos, &ms, &me, md)) {
        sb_add(out, s + pos, ms - pos);
        sb_adds(out, content);
        pos = me;
    }
    sb_add(out, s + pos, n - pos);
}

/* Length of the whitespace run at the start (dir > 0) or end (dir < 0) of s. */
static size_t whitespace_run(const char *s, size_t n, int dir) {
    if (dir > 0) {
        size_t i = 0;
        uint32_t cp;
        int len;
        while (i < n && (len = utf8_decode(s + i, n - i, &cp)) > 0 && uni_is_whitespace(cp)) i += (size_t)len;
        return i;
    }
    size_t end = n;
    while (end > 0) {
        size_t start = end - 1;
        while (start > 0 && ((unsigned char)s[start] & 0xC0) == 0x80) start--;
        uint32_t cp;
        if (utf8_decode(s + start, end - start, &cp) <= 0 || !uni_is_whitespace(cp)) break;
        end = start;
    }
    return n - end;
}

static void normalize_node(const TokNormalizer *nz, StrBuf *text, TokMatch *md) {
    StrBuf out = {0};
    switch (nz->type) {
    case NORM_SEQUENCE:
        for (int i = 0; i < nz->n_children; i++) normalize_node(nz->children[i], text, md);
        return;
    case NORM_NFC:
    case NORM_NFD:
    case NORM_NFKC:
    case NORM_NFKD: {
        static const UniForm forms[] = {[NORM_NFC] = UNI_NFC, [NORM_NFD] = UNI_NFD, [NORM_NFKC] = UNI_NFKC, [NORM_NFKD] = UNI_NFKD};
        size_t len;
        char *s = uni_normalize(text->data ? text->data : "", text->len, forms[nz->type], &len);
        sb_free(text);
        text->data = s;
        text->len = len;
        text->cap = len + 1;
        return;
    }
    case NORM_REPLACE:
        replace_all(&nz->pattern, nz->content, text->data ? text->data : "", text->len, &out, md);
        break;
    case NORM_PREPEND:
        if (!text->len) return;
        sb_adds(&out, nz->content);
        sb_add(&out, text->data, text->len);
        break;
    case NORM_STRIP: {
        size_t lead = nz->strip_left ? whitespace_run(text->data, text->len, 1) : 0;
        size_t trail = nz->strip_right && lead < text->len ? whitespace_run(text->data + lead, text->len - lead, -1) : 0;
        sb_add(&out, text->data + lead, text->len - lead - trail);
        break;
    }
    }
    sb_free(text);
    *text = out;
}

int tok_normalize(const Tokenizer *t, const char *s, size_t n, char **out, size_t *out_len, Err *e) {
    StrBuf b = {0};
    sb_add(&b, s, n);
    TokMatch m = {pcre2_match_data_create(8, NULL), 0};
    if (t->normalizer) normalize_node(t->normalizer, &b, &m);
    pcre2_match_data_free(m.md);
    if (m.error) {
        sb_free(&b);
        return err_set(e, "normalizer: regex matching failed (PCRE2 error %d)", m.error);
    }
    *out = sb_take(&b, out_len);
    return 0;
}

/* ==== pre-tokenizers ==================================================================== */

typedef struct {
    size_t start, end;
    int is_match;
} Span;

typedef struct {
    Span *v;
    int n, cap;
} SpanList;

static void span_push(SpanList *l, size_t start, size_t end, int is_match) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xrealloc(l->v, sizeof *l->v * (size_t)l->cap);
    }
    l->v[l->n++] = (Span){start, end, is_match};
}

/* The piece cut into alternating non-matching and matching spans (each match its own). */
static void find_spans(const TokPattern *p, const char *s, size_t n, int invert, SpanList *spans, TokMatch *md) {
    size_t pos = 0, ms, me;
    while (pos < n && pattern_find(p, s, n, pos, &ms, &me, md)) {
        if (ms > pos) span_push(spans, pos, ms, invert);
        span_push(spans, ms, me, !invert);
        pos = me;
    }
    if (pos < n) span_push(spans, pos, n, invert);
}

/* Applies a split behavior (Hugging Face's SplitDelimiterBehavior) to the spans:
 * the result, in place, is the list of pieces to keep (is_match unused after). */
static void apply_behavior(SpanList *l, SplitBehavior b) {
    int out = 0, prev_match = 0;
    for (int i = 0; i < l->n; i++) {
        Span s = l->v[i];
        switch (b) {
        case SPLIT_REMOVED:
            if (!s.is_match) l->v[out++] = s;
            break;
        case SPLIT_ISOLATED:
            l->v[out++] = s;
            break;
        case SPLIT_MERGED_PREV:
            if (s.is_match && !prev_match && out > 0) l->v[out - 1].end = s.end;
            else l->v[out++] = s;
            break;
        case SPLIT_CONTIGUOUS:
            if (s.is_match == prev_match && out > 0) l->v[out - 1].end = s.end;
            else l->v[out++] = s;
            break;
        case SPLIT_MERGED_NEXT:
            l->v[out++] = s; /* handled below, from the end */
            break;
        }
        prev_match = s.is_match;
    }
    l->n = out;
    if (b == SPLIT_MERGED_NEXT) {
        /* From the end: a match joins the piece after it. */
        int w = l->n;
        prev_match = 0;
        for (int i = l->n - 1; i >= 0; i--) {
            Span s = l->v[i];
            if (s.is_match && !prev_match && w < l->n) l->v[w].start = s.start;
            else l->v[--w] = s;
            prev_match = s.is_match;
        }
        memmove(l->v, l->v + w, sizeof *l->v * (size_t)(l->n - w));
        l->n -= w;
    }
}

static void split_piece(const TokPattern *p, SplitBehavior b, int invert, const Piece *in, PieceList *out,
                        TokMatch *md) {
    SpanList spans = {0};
    find_spans(p, in->s, in->n, invert, &spans, md);
    apply_behavior(&spans, b);
    for (int i = 0; i < spans.n; i++)
        if (spans.v[i].end > spans.v[i].start)
            pl_push(out, in->s + spans.v[i].start, spans.v[i].end - spans.v[i].start, in->at_start && spans.v[i].start == 0);
    free(spans.v);
}

static void bytelevel_piece(const TokPreTokenizer *p, const Piece *in, PieceList *out, TokMatch *md) {
    const ByteLevelMap *map = bytelevel_map();
    StrBuf text = {0};
    if (p->add_prefix_space && (in->n == 0 || in->s[0] != ' ')) sb_addc(&text, ' ');
    sb_add(&text, in->s, in->n);
    PieceList parts = {0};
    Piece whole = {text.data, text.len, in->at_start};
    if (p->use_regex) split_piece(&p->pattern, SPLIT_ISOLATED, 0, &whole, &parts, md);
    else pl_push(&parts, text.data, text.len, in->at_start);
    StrBuf mapped = {0};
    for (int i = 0; i < parts.n; i++) {
        sb_clear(&mapped);
        for (size_t k = 0; k < parts.v[i].n; k++) {
            unsigned char c = (unsigned char)parts.v[i].s[k];
            sb_add(&mapped, map->utf8[c], map->len[c]);
        }
        pl_push(out, mapped.data, mapped.len, parts.v[i].at_start);
    }
    sb_free(&mapped);
    pl_free(&parts);
    sb_free(&text);
}

static void metaspace_piece(const TokPreTokenizer *p, const Piece *in, PieceList *out, TokMatch *md) {
    StrBuf text = {0};
    size_t rlen = strlen(p->replacement);
    int starts_with = in->n >= rlen && !memcmp(in->s, p->replacement, rlen);
    if (!starts_with && (p->prepend_scheme == PREPEND_ALWAYS || (p->prepend_scheme == PREPEND_FIRST && in->at_start)))
        sb_adds(&text, p->replacement);
    for (size_t i = 0; i < in->n; i++) {
        if (in->s[i] == ' ') sb_adds(&text, p->replacement);
        else sb_addc(&text, in->s[i]);
    }
    Piece whole = {text.data ? text.data : "", text.len, in->at_start};
    if (p->split) {
        TokPattern rep = {.literal = p->replacement, .literal_len = rlen};
        split_piece(&rep, SPLIT_MERGED_NEXT, 0, &whole, out, md);
    } else if (text.len) {
        pl_push(out, text.data, text.len, in->at_start);
    }
    sb_free(&text);
}

static void pre_tokenize(const TokPreTokenizer *p, PieceList *pieces, TokMatch *md) {
    if (p->type == PRE_SEQUENCE) {
        for (int i = 0; i < p->n_children; i++) pre_tokenize(p->children[i], pieces, md);
        return;
    }
    PieceList out = {0};
    for (int i = 0; i < pieces->n; i++) {
        const Piece *in = &pieces->v[i];
        switch (p->type) {
        case PRE_SPLIT: split_piece(&p->pattern, p->behavior, p->invert, in, &out, md); break;
        case PRE_BYTELEVEL: bytelevel_piece(p, in, &out, md); break;
        case PRE_METASPACE: metaspace_piece(p, in, &out, md); break;
        case PRE_DIGITS: split_piece(&p->pattern, SPLIT_ISOLATED, 0, in, &out, md); break;
        case PRE_WHITESPACE: split_piece(&p->pattern, SPLIT_REMOVED, 1, in, &out, md); break;
        case PRE_WHITESPACE_SPLIT: split_piece(&p->pattern, SPLIT_REMOVED, 0, in, &out, md); break;
        case PRE_SEQUENCE: break;
        }
    }
    pl_free(pieces);
    *pieces = out;
}

/* ==== BPE ================================================================================ */

static int cand_less(const Cand *a, const Cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(Enc *x, Cand c) {
    if (x->n_heap == x->cap_heap) {
        x->cap_heap = x->cap_heap ? x->cap_heap * 2 : 64;
        x->heap = xrealloc(x->heap, sizeof *x->heap * (size_t)x->cap_heap);
    }
    int i = x->n_heap++;
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!cand_less(&c, &x->heap[parent])) break;
        x->heap[i] = x->heap[parent];
        i = parent;
    }
    x->heap[i] = c;
}

static Cand heap_pop(Enc *x) {
    Cand top = x->heap[0], last = x->heap[--x->n_heap];
    int i = 0, n = x->n_heap;
    for (;;) {
        int child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && cand_less(&x->heap[child + 1], &x->heap[child])) child++;
        if (!cand_less(&x->heap[child], &last)) break;
        x->heap[i] = x->heap[child];
        i = child;
    }
    if (n) x->heap[i] = last;
    return top;
}

/* Queues the merge of symbol pos with its successor, if the pair has a rank. */
static void queue_pair(Enc *x, int pos) {
    int next = x->syms[pos].next;
    if (next < 0) return;
    uint64_t v;
    uint64_t key = (uint64_t)(uint32_t)x->syms[pos].id << 32 | (uint32_t)x->syms[next].id;
    if (!u64map_get(&x->t->merges, key, &v)) return;
    heap_push(x, (Cand){(uint32_t)(v >> 32), pos, (int)(uint32_t)v});
}

static void add_sym(Enc *x, int *n, int id) {
    if (*n == x->cap_syms) {
        x->cap_syms = x->cap_syms ? x->cap_syms * 2 : 64;
        x->syms = xrealloc(x->syms, sizeof *x->syms * (size_t)x->cap_syms);
    }
    x->syms[*n] = (Sym){id, *n - 1, -1, 1};
    if (*n > 0) x->syms[*n - 1].next = *n;
    (*n)++;
}

/* The word as initial symbols: one per character, the character's <0xXX> byte tokens
 * when it is not in the vocab and byte_fallback is on, else unk (consecutive unks
 * fused with fuse_unk), else nothing. */
static int initial_symbols(Enc *x, const char *w, size_t n) {
    const Tokenizer *t = x->t;
    int count = 0, pending_unk = 0;
    StrBuf s = {0};
    size_t i = 0;
    while (i < n) {
        size_t end = i + 1;
        while (end < n && ((unsigned char)w[end] & 0xC0) == 0x80) end++;
        sb_clear(&s);
        if (i > 0 && t->subword_prefix) sb_adds(&s, t->subword_prefix);
        sb_add(&s, w + i, end - i);
        if (end == n && t->word_suffix) sb_adds(&s, t->word_suffix);
        int id = strmap_get(&t->vocab, t->arena, s.data, s.len);
        if (id >= 0) {
            if (pending_unk) add_sym(x, &count, t->unk_id);
            pending_unk = 0;
            add_sym(x, &count, id);
        } else {
            int all_bytes = t->byte_fallback;
            for (size_t k = 0; all_bytes && k < s.len; k++) all_bytes = t->byte_ids[(unsigned char)s.data[k]] >= 0;
            if (all_bytes) {
                for (size_t k = 0; k < s.len; k++) add_sym(x, &count, t->byte_ids[(unsigned char)s.data[k]]);
            } else if (t->unk_id >= 0) {
                if (pending_unk && !t->fuse_unk) add_sym(x, &count, t->unk_id);
                pending_unk = 1;
            }
        }
        i = end;
    }
    if (pending_unk) add_sym(x, &count, t->unk_id);
    sb_free(&s);
    return count;
}

static void bpe_word(Enc *x, const char *w, size_t n, IntVec *out) {
    const Tokenizer *t = x->t;
    if (t->ignore_merges) {
        int id = strmap_get(&t->vocab, t->arena, w, n);
        if (id >= 0) {
            iv_push(out, id);
            return;
        }
    }
    int count = initial_symbols(x, w, n);
    x->n_heap = 0;
    for (int i = 0; i + 1 < count; i++) queue_pair(x, i);
    /* Lowest rank first, leftmost among equals; a queued pair whose symbols have
     * changed since is stale and dropped. */
    while (x->n_heap) {
        Cand c = heap_pop(x);
        Sym *a = &x->syms[c.pos];
        if (!a->alive || a->next < 0) continue;
        Sym *b = &x->syms[a->next];
        uint64_t v;
        uint64_t key = (uint64_t)(uint32_t)a->id << 32 | (uint32_t)b->id;
        if (!u64map_get(&t->merges, key, &v) || (int)(uint32_t)v != c.new_id || (uint32_t)(v >> 32) != c.rank) continue;
        a->id = c.new_id;
        b->alive = 0;
        a->next = b->next;
        if (b->next >= 0) x->syms[b->next].prev = c.pos;
        if (a->prev >= 0) queue_pair(x, a->prev);
        queue_pair(x, c.pos);
    }
    for (int i = 0; i < count; i = x->syms[i].next) {
        iv_push(out, x->syms[i].id);
        if (x->syms[i].next < 0) break;
    }
}

/* ==== added tokens ========================================================================= */

typedef struct {
    size_t start, end; /* text range, including whitespace absorbed by lstrip / rstrip */
    int added;         /* index into t->added, or -1 for plain text */
} Segment;

typedef struct {
    Segment *v;
    int n, cap;
} SegList;

static void seg_push(SegList *l, size_t start, size_t end, int added) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xrealloc(l->v, sizeof *l->v * (size_t)l->cap);
    }
    l->v[l->n++] = (Segment){start, end, added};
}

/* Longest added token starting at s[i], or -1. */
static int trie_longest(const TokTrie *tr, const char *s, size_t n, size_t i, size_t *len) {
    int node = 0, best = -1;
    for (size_t k = i; k < n; k++) {
        uint64_t child;
        if (!u64map_get(&tr->edges, (uint64_t)node << 8 | (unsigned char)s[k], &child)) break;
        node = (int)child;
        if (tr->terminal[node] >= 0) {
            best = tr->terminal[node];
            *len = k + 1 - i;
        }
    }
    return best;
}

/* Letters, digits and '_' (what a single_word added token must not touch). */
static int is_word_char(const Tokenizer *t, const char *s, size_t n, size_t i, TokMatch *md) {
    return pcre2_match(t->word_re, (PCRE2_SPTR)s, n, i, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK, md->md, NULL) > 0;
}

static int word_char_before(const Tokenizer *t, const char *s, size_t n, size_t i, TokMatch *md) {
    if (i == 0) return 0;
    size_t start = i - 1;
    while (start > 0 && ((unsigned char)s[start] & 0xC0) == 0x80) start--;
    return is_word_char(t, s, n, start, md);
}

/* Splits s into plain-text segments and added tokens (leftmost-longest). */
static void split_added(const Tokenizer *t, const TokTrie *tr, const char *s, size_t n, SegList *out,
                        TokMatch *md) {
    size_t text_start = 0, i = 0;
    while (i < n) {
        size_t len = 0;
        int a = tr->n_nodes > 1 ? trie_longest(tr, s, n, i, &len) : -1;
        if (a >= 0 && t->added[a].single_word &&
            (word_char_before(t, s, n, i, md) || (i + len < n && is_word_char(t, s, n, i + len, md))))
            a = -1;
        if (a < 0) {
            i++;
            continue;
        }
        size_t ms = i, me = i + len;
        if (t->added[a].lstrip) ms -= whitespace_run(s + text_start, ms - text_start, -1);
        if (t->added[a].rstrip) me += whitespace_run(s + me, n - me, 1);
        if (ms > text_start) seg_push(out, text_start, ms, -1);
        seg_push(out, ms, me, a);
        text_start = i = me;
    }
    if (text_start < n) seg_push(out, text_start, n, -1);
}

/* ==== the pipeline ============================================================================ */

/* Plain text (no added tokens in it) after normalization -> ids. */
static void encode_words(Enc *x, const char *s, size_t n, int at_start, IntVec *ids) {
    PieceList pieces = {0};
    pl_push(&pieces, s, n, at_start);
    if (x->t->pre_tokenizer) pre_tokenize(x->t->pre_tokenizer, &pieces, x->md);
    for (int i = 0; i < pieces.n; i++)
        if (pieces.v[i].n) bpe_word(x, pieces.v[i].s, pieces.v[i].n, ids);
    pl_free(&pieces);
}

static void encode_segment(Enc *x, const char *s, size_t n, int at_start, IntVec *ids) {
    const Tokenizer *t = x->t;
    StrBuf norm = {0};
    sb_add(&norm, s, n);
    if (t->normalizer) normalize_node(t->normalizer, &norm, x->md);
    if (!norm.len) {
        sb_free(&norm);
        return;
    }
    SegList segs = {0};
    split_added(t, &t->trie_norm, norm.data, norm.len, &segs, x->md);
    for (int i = 0; i < segs.n; i++) {
        Segment *g = &segs.v[i];
        if (g->added >= 0) iv_push(ids, t->added[g->added].id);
        else encode_words(x, norm.data + g->start, g->end - g->start, at_start && g->start == 0, ids);
    }
    free(segs.v);
    sb_free(&norm);
}

static void post_process(const TokPostProcessor *p, IntVec *ids) {
    if (p->type == POST_SEQUENCE) {
        for (int i = 0; i < p->n_children; i++) post_process(p->children[i], ids);
        return;
    }
    if (!p->n_before && !p->n_after) return;
    IntVec out = {0};
    for (int i = 0; i < p->n_before; i++) iv_push(&out, p->before[i]);
    for (int i = 0; i < ids->n; i++) iv_push(&out, ids->v[i]);
    for (int i = 0; i < p->n_after; i++) iv_push(&out, p->after[i]);
    iv_free(ids);
    *ids = out;
}

int tok_encode(const Tokenizer *t, const char *text, size_t len, int flags, int **ids_out, int *n_out, Err *e) {
    *ids_out = NULL;
    *n_out = 0;
    size_t bad = utf8_valid_prefix(text, len);
    if (bad != len) return err_set(e, "text is not valid UTF-8 (byte %zu of %zu)", bad, len);
    TokMatch m = {pcre2_match_data_create(8, NULL), 0};
    Enc x = {.t = t, .md = &m};
    IntVec ids = {0};
    SegList segs = {0};
    split_added(t, &t->trie_raw, text, len, &segs, &m);
    for (int i = 0; i < segs.n; i++) {
        Segment *g = &segs.v[i];
        if (g->added >= 0) iv_push(&ids, t->added[g->added].id);
        else encode_segment(&x, text + g->start, g->end - g->start, g->start == 0, &ids);
    }
    free(segs.v);
    if ((flags & TOK_ADD_SPECIAL) && t->post_processor) post_process(t->post_processor, &ids);
    pcre2_match_data_free(m.md);
    free(x.syms);
    free(x.heap);
    if (m.error) {
        iv_free(&ids);
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(m.error, msg, sizeof msg);
        return err_set(e, "regex matching failed on this text (%s); try a shorter text", (const char *)msg);
    }
    if (!ids.v) ids.v = xmalloc(sizeof(int));
    *ids_out = ids.v;
    *n_out = ids.n;
    return 0;
}
