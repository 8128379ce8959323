/* tok_internal.h - the tokenizer's in-memory form, shared by tokenizer.c (loading),
 * tok_pipeline.c (regexes, pipeline trees), tok_json.c (the fast vocab/merges reader),
 * tok_map.c (hash maps), tok_encode.c and tok_decode.c.
 * Not a public header: users go through runtime/tokenizer.h. */
#ifndef ANEMLL_TOK_INTERNAL_H
#define ANEMLL_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "common/err.h"
#include "runtime/strbuf.h"
#include "runtime/tokenizer.h"

/* ---- hash maps (open addressing, power-of-two capacity, linear probing) ------- */

/* Byte string -> int. Keys are (offset, length) into a caller-owned arena. */
typedef struct {
    uint32_t *slot_off; /* (cap) arena offset of the key, UINT32_MAX = empty */
    uint32_t *slot_len; /* (cap) */
    int32_t *slot_val;  /* (cap) */
    size_t cap, count;
} StrMap;

/* u64 -> u64 (merges: pair of ids -> rank and merged id; tries: node and byte -> child). */
typedef struct {
    uint64_t *keys; /* (cap) key + 1, 0 = empty */
    uint64_t *vals; /* (cap) */
    size_t cap, count;
} U64Map;

void strmap_init(StrMap *m, size_t expected);
void strmap_free(StrMap *m);
/* Looks key up; returns the value or -1. */
int strmap_get(const StrMap *m, const char *arena, const char *key, size_t len);
/* Inserts or overwrites; the key must already be stored at arena[off..off+len). */
void strmap_put(StrMap *m, const char *arena, uint32_t off, uint32_t len, int32_t val);

void u64map_init(U64Map *m, size_t expected);
void u64map_free(U64Map *m);
int u64map_get(const U64Map *m, uint64_t key, uint64_t *val);
void u64map_put(U64Map *m, uint64_t key, uint64_t val);

/* ---- patterns (Split, Replace): a literal string or a PCRE2 regex -------------- */

typedef struct {
    char *literal; /* NULL for a regex */
    size_t literal_len;
    pcre2_code *re;
} TokPattern;

/* Match state for pattern_find: PCRE2 match data plus the first matching error (a
 * resource limit; 0 if none), which the caller turns into an Err. */
typedef struct {
    pcre2_match_data *md;
    int error;
} TokMatch;

/* Finds the first match at or after `from`; returns 1 and sets [*ms, *me), or 0 (no
 * match, or an error recorded in m->error). */
int pattern_find(const TokPattern *p, const char *s, size_t n, size_t from, size_t *ms, size_t *me, TokMatch *m);

/* ---- pipeline components (trees mirroring tokenizer.json) --------------------- */

typedef enum { NORM_SEQUENCE, NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_REPLACE, NORM_PREPEND, NORM_STRIP } NormType;
typedef struct TokNormalizer {
    NormType type;
    struct TokNormalizer **children; /* Sequence */
    int n_children;
    TokPattern pattern; /* Replace */
    char *content;      /* Replace: replacement; Prepend: prefix */
    int strip_left, strip_right;
} TokNormalizer;

typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS } SplitBehavior;
typedef enum { PRE_SEQUENCE, PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE, PRE_DIGITS, PRE_WHITESPACE, PRE_WHITESPACE_SPLIT } PreType;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } PrependScheme;
typedef struct TokPreTokenizer {
    PreType type;
    struct TokPreTokenizer **children; /* Sequence */
    int n_children;
    TokPattern pattern;     /* Split; ByteLevel/Whitespace/Digits: their fixed regex */
    SplitBehavior behavior; /* Split */
    int invert;             /* Split */
    int add_prefix_space;   /* ByteLevel */
    int use_regex;          /* ByteLevel */
    char *replacement;      /* Metaspace */
    PrependScheme prepend_scheme;
    int split;              /* Metaspace */
} TokPreTokenizer;

typedef enum { POST_SEQUENCE, POST_TEMPLATE, POST_BYTELEVEL, POST_CLS_SEP } PostType;
typedef struct TokPostProcessor {
    PostType type;
    struct TokPostProcessor **children; /* Sequence */
    int n_children;
    /* Template (single sequence): ids to put before and after $A. */
    int *before, n_before, *after, n_after;
} TokPostProcessor;

typedef enum { DEC_SEQUENCE, DEC_BYTELEVEL, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_METASPACE, DEC_BPE } DecType;
typedef struct TokDecoder {
    DecType type;
    struct TokDecoder **children; /* Sequence */
    int n_children;
    TokPattern pattern; /* Replace */
    char *content;      /* Replace: replacement; Strip: the character; Metaspace: replacement; BPE: suffix */
    int start, stop;    /* Strip */
    PrependScheme prepend_scheme; /* Metaspace */
} TokDecoder;

typedef struct {
    int id;
    char *content;    /* what is matched in the text */
    size_t len;
    int special;      /* skipped by TOK_SKIP_SPECIAL */
    int normalized;   /* matched after normalization */
    int single_word, lstrip, rstrip;
} TokAdded;

/* A trie over added-token contents: node 0 is the root, edges in a U64Map keyed by
 * (node << 8 | byte); terminal[node] = index into Tokenizer.added or -1. */
typedef struct {
    U64Map edges;
    int *terminal;
    int n_nodes, cap_nodes;
} TokTrie;

struct Tokenizer {
    char *dir; /* the folder it was loaded from, for messages */

    /* Every token string (model vocab and added tokens), NUL-separated. */
    char *arena;
    size_t arena_len, arena_cap;

    /* id -> token; ids with no token have off == UINT32_MAX. */
    uint32_t *tok_off, *tok_len; /* (n_vocab) */
    uint8_t *tok_flags;          /* (n_vocab) TOKF_* */
    int n_vocab;                 /* highest id + 1 */
    int cap_vocab;               /* allocated length of the three arrays */

    /* BPE model */
    StrMap vocab;  /* model vocab: token -> id */
    U64Map merges; /* (a << 32 | b) -> (rank << 32 | merged id) */
    int unk_id;    /* -1 if none */
    int byte_fallback, fuse_unk, ignore_merges;
    char *subword_prefix, *word_suffix; /* continuing_subword_prefix, end_of_word_suffix (or NULL) */
    int byte_ids[256];                  /* ids of <0x00>..<0xFF>, -1 where absent */

    TokAdded *added;
    int n_added;
    StrMap added_map; /* added token content -> id (first one wins) */
    pcre2_code *word_re; /* a word character, for single_word tokens (NULL if none has it) */
    TokTrie trie_raw, trie_norm; /* added tokens matched before / after normalization */

    TokNormalizer *normalizer;
    TokPreTokenizer *pre_tokenizer;
    TokPostProcessor *post_processor;
    TokDecoder *decoder;

    /* tokenizer_config.json */
    int clean_up_spaces;
    int bos_id, eos_id;
    char *chat_template; /* NULL if none */
    int *stop_ids, n_stop;
};

enum { TOKF_ADDED = 1, TOKF_SPECIAL = 2 };

static inline const char *tok_str(const Tokenizer *t, int id, size_t *len) {
    if (id < 0 || id >= t->n_vocab || t->tok_off[id] == UINT32_MAX) return NULL;
    *len = t->tok_len[id];
    return t->arena + t->tok_off[id];
}

/* Appends s to the arena (plus a NUL); returns its offset. */
uint32_t tok_arena_add(Tokenizer *t, const char *s, size_t len);

/* The GPT-2 byte <-> printable-character mapping that byte-level BPE uses. */
typedef struct {
    char utf8[256][3]; /* byte -> its character in UTF-8 (2 bytes, except for the ASCII ones) */
    uint8_t len[256];
} ByteLevelMap;
const ByteLevelMap *bytelevel_map(void);
/* Character -> byte, or -1 if cp is not one of the 256 characters. */
int bytelevel_byte(uint32_t cp);

/* Reads model.vocab and model.merges (and the other top-level members, handed to
 * `member` as raw JSON text) from tokenizer.json. Defined in tok_json.c. */
typedef int (*TokJsonMemberFn)(void *ctx, const char *key, const char *json, size_t len, Err *e);
typedef struct {
    void *ctx;
    TokJsonMemberFn top_member;   /* each top-level member except "model" */
    TokJsonMemberFn model_member; /* each member of "model" except vocab and merges */
    /* vocab entry: token -> id */
    int (*vocab_entry)(void *ctx, const char *tok, size_t len, long id, Err *e);
    /* merge number `index`: the two parts */
    int (*merge_entry)(void *ctx, long index, const char *a, size_t alen, const char *b, size_t blen, Err *e);
} TokJsonVisitor;
int tok_json_read(const char *text, size_t len, const TokJsonVisitor *v, Err *e);

/* Pipeline trees from their tokenizer.json objects (tok_pipeline.c). `where` is the JSON
 * path used in messages; on failure *out may hold a partial tree (free it). */
struct cJSON;
int load_normalizer(const struct cJSON *o, TokNormalizer **out, const char *where, Err *e);
int load_pre_tokenizer(const struct cJSON *o, TokPreTokenizer **out, const char *where, Err *e);
int load_post_processor(const struct cJSON *o, TokPostProcessor **out, const char *where, Err *e);
int load_decoder(const struct cJSON *o, TokDecoder **out, const char *where, Err *e);
void free_normalizer(TokNormalizer *n);
void free_pre_tokenizer(TokPreTokenizer *p);
void free_post_processor(TokPostProcessor *p);
void free_decoder(TokDecoder *d);

/* Compiles a Hugging Face (Oniguruma-syntax) regex with PCRE2 in UTF + UCP mode. */
int tok_regex_compile(const char *pattern, pcre2_code **out, Err *e);
/* Runs the tokenizer's normalizer (a copy of s if it has none). Defined in tok_encode.c. */
int tok_normalize(const Tokenizer *t, const char *s, size_t n, char **out, size_t *out_len, Err *e);

#endif
