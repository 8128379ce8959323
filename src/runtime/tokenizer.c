/* tokenizer.c - loading tokenizer.json / tokenizer_config.json into a Tokenizer
 * (see tokenizer.h), and the small queries on it. The pipeline trees are built in
 * tok_pipeline.c, the vocab/merges reader is tok_json.c, encoding is in tok_encode.c
 * and decoding in tok_decode.c. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "runtime/tok_cjson.h"
#include "runtime/tok_internal.h"
#include "runtime/unicode.h"

#define MAX_TOKENIZER_JSON (1u << 30)
#define MAX_CONFIG_JSON (64u << 20)
/* Ids are array indices: a bound keeps a one-line file from claiming gigabytes. 16x the
 * largest vocabulary in use (Gemma 3: 262,144 ids). */
#define MAX_VOCAB_ID ((1 << 22) - 1)

/* ==== arena and id table ===================================================== */

uint32_t tok_arena_add(Tokenizer *t, const char *s, size_t len) {
    if (t->arena_len + len + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 1 << 16;
        while (cap < t->arena_len + len + 1) cap *= 2;
        t->arena = xrealloc(t->arena, cap);
        t->arena_cap = cap;
    }
    uint32_t off = (uint32_t)t->arena_len;
    memcpy(t->arena + off, s, len);
    t->arena[off + len] = 0;
    t->arena_len += len + 1;
    return off;
}

/* Makes ids [0, id] addressable (id <= MAX_VOCAB_ID). */
static void ensure_id(Tokenizer *t, int id) {
    if (id >= t->cap_vocab) {
        int old = t->cap_vocab, cap = old ? old : 1024;
        while (cap <= id) cap *= 2;
        if (cap > MAX_VOCAB_ID + 1) cap = MAX_VOCAB_ID + 1;
        t->tok_off = xrealloc(t->tok_off, sizeof *t->tok_off * (size_t)cap);
        t->tok_len = xrealloc(t->tok_len, sizeof *t->tok_len * (size_t)cap);
        t->tok_flags = xrealloc(t->tok_flags, (size_t)cap);
        for (int i = old; i < cap; i++) {
            t->tok_off[i] = UINT32_MAX;
            t->tok_len[i] = 0;
            t->tok_flags[i] = 0;
        }
        t->cap_vocab = cap;
    }
    if (id >= t->n_vocab) t->n_vocab = id + 1;
}

/* ==== reading tokenizer.json ======================================================= */

typedef struct {
    Tokenizer *t;
    cJSON *top;   /* the members other than "model", parsed */
    cJSON *model; /* the members of "model" other than vocab and merges, parsed */
    StrBuf merge_text; /* merge parts, each a u32 length and its bytes (tokens may hold NULs) */
    long n_merges;
    long n_vocab_entries;
    size_t json_len;   /* sizes the vocab map: an entry takes at least 6 bytes of JSON */
} LoadCtx;

static int add_parsed_member(cJSON *obj, const char *key, const char *json, size_t len, Err *e) {
    cJSON *v = cJSON_ParseWithLength(json, len);
    if (!v) return err_set(e, "member \"%s\" is not valid JSON", key);
    cJSON_AddItemToObject(obj, key, v);
    return 0;
}

static int on_top_member(void *vctx, const char *key, const char *json, size_t len, Err *e) {
    LoadCtx *c = vctx;
    /* Only the members the pipeline uses are parsed (others, e.g. "truncation", are ignored). */
    static const char *used[] = {"added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder"};
    for (size_t i = 0; i < sizeof used / sizeof *used; i++)
        if (!strcmp(key, used[i])) return add_parsed_member(c->top, key, json, len, e);
    return 0;
}

static int on_model_member(void *vctx, const char *key, const char *json, size_t len, Err *e) {
    LoadCtx *c = vctx;
    return add_parsed_member(c->model, key, json, len, e);
}

static int on_vocab_entry(void *vctx, const char *tok, size_t len, long id, Err *e) {
    LoadCtx *c = vctx;
    Tokenizer *t = c->t;
    if (id < 0 || id > MAX_VOCAB_ID) return err_set(e, "model.vocab: token \"%.60s\" has id %ld, outside 0..%d", tok, id, MAX_VOCAB_ID);
    if (len > 65535) return err_set(e, "model.vocab: token with id %ld is %zu bytes long", id, len);
    ensure_id(t, (int)id);
    if (t->tok_off[id] != UINT32_MAX)
        return err_set(e, "model.vocab: id %ld is given to both \"%.60s\" and \"%.60s\"", id, t->arena + t->tok_off[id], tok);
    uint32_t off = tok_arena_add(t, tok, len);
    t->tok_off[id] = off;
    t->tok_len[id] = (uint32_t)len;
    if (!t->vocab.cap) strmap_init(&t->vocab, c->json_len / 8 < (1 << 16) ? c->json_len / 8 + 16 : 1 << 16);
    strmap_put(&t->vocab, t->arena, off, (uint32_t)len, (int32_t)id);
    c->n_vocab_entries++;
    return 0;
}

static int on_merge_entry(void *vctx, long index, const char *a, size_t alen, const char *b, size_t blen, Err *e) {
    LoadCtx *c = vctx;
    if (alen > UINT32_MAX || blen > UINT32_MAX) return err_set(e, "model.merges[%ld] is too long", index);
    uint32_t la = (uint32_t)alen, lb = (uint32_t)blen;
    sb_add(&c->merge_text, &la, sizeof la);
    sb_add(&c->merge_text, a, alen);
    sb_add(&c->merge_text, &lb, sizeof lb);
    sb_add(&c->merge_text, b, blen);
    c->n_merges++;
    return 0;
}

/* The next length-prefixed merge part at *p. */
static const char *next_merge_part(const char **p, size_t *len) {
    uint32_t n;
    memcpy(&n, *p, sizeof n);
    const char *s = *p + sizeof n;
    *p = s + n;
    *len = n;
    return s;
}

/* Turns the merge list into (a, b) -> (rank, merged id). As in Hugging Face, every
 * part and every result must be in the vocab; a repeated pair keeps its last rank. */
static int resolve_merges(LoadCtx *c, Err *e) {
    Tokenizer *t = c->t;
    u64map_init(&t->merges, (size_t)c->n_merges);
    size_t prefix_len = t->subword_prefix ? strlen(t->subword_prefix) : 0;
    StrBuf joined = {0};
    const char *p = c->merge_text.data;
    for (long rank = 0; rank < c->n_merges; rank++) {
        size_t alen, blen;
        const char *a = next_merge_part(&p, &alen);
        const char *b = next_merge_part(&p, &blen);
        int ia = strmap_get(&t->vocab, t->arena, a, alen), ib = strmap_get(&t->vocab, t->arena, b, blen);
        /* (parts are not NUL-terminated here; messages show at most 200 bytes of each) */
        int pa = alen < 200 ? (int)alen : 200, pb = blen < 200 ? (int)blen : 200;
        if (ia < 0 || ib < 0) {
            sb_free(&joined);
            return err_set(e, "model.merges[%ld] (\"%.*s\" \"%.*s\"): \"%.*s\" is not in model.vocab", rank, pa, a, pb, b,
                           ia < 0 ? pa : pb, ia < 0 ? a : b);
        }
        sb_clear(&joined);
        sb_add(&joined, a, alen);
        if (blen >= prefix_len) sb_add(&joined, b + prefix_len, blen - prefix_len);
        int im = strmap_get(&t->vocab, t->arena, joined.data, joined.len);
        if (im < 0) {
            err_set(e, "model.merges[%ld] (\"%.*s\" \"%.*s\"): the merged token \"%.400s\" is not in model.vocab", rank, pa,
                    a, pb, b, joined.data);
            sb_free(&joined);
            return -1;
        }
        u64map_put(&t->merges, (uint64_t)ia << 32 | (uint32_t)ib, (uint64_t)rank << 32 | (uint32_t)im);
    }
    sb_free(&joined);
    return 0;
}

static int load_model(LoadCtx *c, Err *e) {
    Tokenizer *t = c->t;
    const char *type = jstr(c->model, "type");
    if (type && strcmp(type, "BPE"))
        return err_set(e, "model type \"%s\" is not supported (only BPE: Llama 3, Qwen, Gemma 3, DeepSeek)", type);
    if (!c->n_vocab_entries) return err_set(e, "model.vocab is missing or empty");
    if (!type && !c->n_merges) return err_set(e, "model has no \"type\" and no merges; only BPE models are supported");
    const cJSON *dropout = jget(c->model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return err_set(e, "model.dropout is %g; BPE dropout (random merges) is not supported", dropout->valuedouble);
    t->byte_fallback = jbool(c->model, "byte_fallback", 0);
    t->fuse_unk = jbool(c->model, "fuse_unk", 0);
    t->ignore_merges = jbool(c->model, "ignore_merges", 0);
    const char *s;
    if ((s = jstr(c->model, "continuing_subword_prefix")) && *s) t->subword_prefix = xstrdup(s);
    if ((s = jstr(c->model, "end_of_word_suffix")) && *s) t->word_suffix = xstrdup(s);
    t->unk_id = -1;
    if ((s = jstr(c->model, "unk_token"))) {
        t->unk_id = strmap_get(&t->vocab, t->arena, s, strlen(s));
        if (t->unk_id < 0) return err_set(e, "model.unk_token \"%s\" is not in model.vocab", s);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_ids[b] = strmap_get(&t->vocab, t->arena, name, 6);
    }
    return resolve_merges(c, e);
}

/* ==== added tokens ================================================================== */

static void trie_init(TokTrie *tr) {
    u64map_init(&tr->edges, 256);
    tr->cap_nodes = 64;
    tr->terminal = xmalloc(sizeof *tr->terminal * (size_t)tr->cap_nodes);
    tr->terminal[0] = -1;
    tr->n_nodes = 1;
}

static void trie_insert(TokTrie *tr, const char *s, size_t len, int value) {
    int node = 0;
    for (size_t i = 0; i < len; i++) {
        uint64_t key = (uint64_t)node << 8 | (unsigned char)s[i], child;
        if (u64map_get(&tr->edges, key, &child)) {
            node = (int)child;
            continue;
        }
        if (tr->n_nodes == tr->cap_nodes) {
            tr->cap_nodes *= 2;
            tr->terminal = xrealloc(tr->terminal, sizeof *tr->terminal * (size_t)tr->cap_nodes);
        }
        tr->terminal[tr->n_nodes] = -1;
        u64map_put(&tr->edges, key, (uint64_t)tr->n_nodes);
        node = tr->n_nodes++;
    }
    /* The first added token with this content wins, as the file order intends. */
    if (tr->terminal[node] < 0) tr->terminal[node] = value;
}

static void trie_free(TokTrie *tr) {
    u64map_free(&tr->edges);
    free(tr->terminal);
}

static int load_added_tokens(LoadCtx *c, Err *e) {
    Tokenizer *t = c->t;
    const cJSON *list = jget(c->top, "added_tokens");
    trie_init(&t->trie_raw);
    trie_init(&t->trie_norm);
    if (!list || cJSON_IsNull(list)) return 0;
    if (!cJSON_IsArray(list)) return err_set(e, "\"added_tokens\" must be a list");
    t->added = xcalloc((size_t)cJSON_GetArraySize(list) + 1, sizeof *t->added);
    strmap_init(&t->added_map, (size_t)cJSON_GetArraySize(list));
    const cJSON *it;
    int index = 0;
    cJSON_ArrayForEach(it, list) {
        const char *content = jstr(it, "content");
        const cJSON *idv = jget(it, "id");
        if (!content || !cJSON_IsNumber(idv) || idv->valueint < 0 || idv->valueint > MAX_VOCAB_ID)
            return err_set(e, "added_tokens[%d] needs \"content\" (a string) and \"id\" (0..%d)", index, MAX_VOCAB_ID);
        TokAdded *a = &t->added[t->n_added++];
        a->id = idv->valueint;
        a->content = xstrdup(content);
        a->len = strlen(content);
        a->special = jbool(it, "special", 0);
        a->normalized = jbool(it, "normalized", !a->special);
        a->single_word = jbool(it, "single_word", 0);
        a->lstrip = jbool(it, "lstrip", 0);
        a->rstrip = jbool(it, "rstrip", 0);
        /* id -> string: the added token's content takes precedence over the model's. */
        ensure_id(t, a->id);
        t->tok_off[a->id] = tok_arena_add(t, content, a->len);
        t->tok_len[a->id] = (uint32_t)a->len;
        if (strmap_get(&t->added_map, t->arena, content, a->len) < 0)
            strmap_put(&t->added_map, t->arena, t->tok_off[a->id], (uint32_t)a->len, a->id);
        t->tok_flags[a->id] |= TOKF_ADDED | (a->special ? TOKF_SPECIAL : 0);
        index++;
    }
    for (int i = 0; i < t->n_added; i++) {
        TokAdded *a = &t->added[i];
        if (a->single_word && !t->word_re && tok_regex_compile("[\\p{L}\\p{N}_]", &t->word_re, e) < 0) return -1;
        if (!a->len) continue;
        if (a->normalized && t->normalizer) {
            char *norm;
            size_t nlen;
            if (tok_normalize(t, a->content, a->len, &norm, &nlen, e) < 0) return -1;
            if (nlen) trie_insert(&t->trie_norm, norm, nlen, i);
            free(norm);
        } else {
            trie_insert(&t->trie_raw, a->content, a->len, i);
        }
    }
    return 0;
}

/* ==== tokenizer_config.json, config.json, generation_config.json ==================== */

static cJSON *read_json_file(const char *path, Err *e) {
    char *text;
    size_t len;
    if (file_read_all(path, MAX_CONFIG_JSON, &text, &len, e) < 0) return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j) err_set(e, "%s is not valid JSON", path);
    return j;
}

static int token_id_of(const Tokenizer *t, const char *s) { return s ? tok_token_to_id(t, s, strlen(s)) : -1; }

static void add_stop(Tokenizer *t, int id) {
    if (id < 0 || id >= t->n_vocab || t->tok_off[id] == UINT32_MAX) return;
    for (int i = 0; i < t->n_stop; i++)
        if (t->stop_ids[i] == id) return;
    t->stop_ids = xrealloc(t->stop_ids, sizeof *t->stop_ids * (size_t)(t->n_stop + 1));
    t->stop_ids[t->n_stop++] = id;
}

/* eos_token_id as a number or a list of numbers, in config.json / generation_config.json. */
static int add_model_config_stops(Tokenizer *t, const char *dir, const char *name, Err *e) {
    char *path = path_join(dir, name);
    if (!path_exists(path)) {
        free(path);
        return 0;
    }
    cJSON *j = read_json_file(path, e);
    free(path);
    if (!j) return -1;
    const cJSON *eos = jget(j, "eos_token_id");
    if (cJSON_IsNumber(eos)) add_stop(t, eos->valueint);
    const cJSON *it;
    if (cJSON_IsArray(eos)) cJSON_ArrayForEach(it, eos) if (cJSON_IsNumber(it)) add_stop(t, it->valueint);
    cJSON_Delete(j);
    return 0;
}

static const char *chat_template_of(const cJSON *cfg) {
    const cJSON *ct = jget(cfg, "chat_template");
    if (cJSON_IsString(ct)) return ct->valuestring;
    if (!cJSON_IsArray(ct)) return NULL;
    /* [{"name": "default", "template": ...}, {"name": "tool_use", ...}] */
    const cJSON *it, *first = NULL;
    cJSON_ArrayForEach(it, ct) {
        const char *name = jstr(it, "name"), *tmpl = jstr(it, "template");
        if (!tmpl) continue;
        if (name && !strcmp(name, "default")) return tmpl;
        if (!first) first = it;
    }
    return first ? jstr(first, "template") : NULL;
}

/* The end-of-turn tokens of the supported families, whichever the vocabulary has. */
static void add_known_stops(Tokenizer *t) {
    static const char *enders[] = {"<|eot_id|>",  "<|eom_id|>",    "<|end_of_text|>", "<|im_end|>",
                                   "<|endoftext|>", "<end_of_turn>", "<eos>",           "</s>",
                                   ("<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>")};
    for (size_t i = 0; i < sizeof enders / sizeof *enders; i++) add_stop(t, token_id_of(t, enders[i]));
}

static int load_configs(Tokenizer *t, const char *dir, Err *e) {
    t->clean_up_spaces = 1; /* Hugging Face's default when the config does not say */
    t->bos_id = t->eos_id = -1;
    char *path = path_join(dir, "tokenizer_config.json");
    cJSON *cfg = NULL;
    if (path_exists(path)) {
        cfg = read_json_file(path, e);
        if (!cfg) {
            free(path);
            return -1;
        }
        if (!cJSON_IsObject(cfg)) {
            cJSON_Delete(cfg);
            err_set(e, "%s must hold a JSON object", path);
            free(path);
            return -1;
        }
    }
    free(path);
    if (cfg) {
        t->clean_up_spaces = jbool(cfg, "clean_up_tokenization_spaces", 1);
        t->bos_id = token_id_of(t, jtoken(jget(cfg, "bos_token")));
        t->eos_id = token_id_of(t, jtoken(jget(cfg, "eos_token")));
        /* Hugging Face also skips these when decoding with skip_special_tokens. */
        const cJSON *extra = jget(cfg, "additional_special_tokens"), *it;
        if (cJSON_IsArray(extra)) cJSON_ArrayForEach(it, extra) {
                int id = token_id_of(t, jtoken(it));
                if (id >= 0) t->tok_flags[id] |= TOKF_SPECIAL;
            }
        const char *tmpl = chat_template_of(cfg);
        if (tmpl) t->chat_template = xstrdup(tmpl);
        cJSON_Delete(cfg);
    }
    if (!t->chat_template) {
        char *jinja = path_join(dir, "chat_template.jinja");
        size_t len;
        Err ignored = {0};
        if (path_exists(jinja) && file_read_all(jinja, MAX_CONFIG_JSON, &t->chat_template, &len, &ignored) < 0) {
            free(jinja);
            return err_set(e, "%s", ignored.msg);
        }
        free(jinja);
    }
    add_stop(t, t->eos_id);
    if (add_model_config_stops(t, dir, "config.json", e) < 0 ||
        add_model_config_stops(t, dir, "generation_config.json", e) < 0)
        return -1;
    add_known_stops(t);
    return 0;
}

/* ==== tok_load ======================================================================= */

static int load_pipeline(LoadCtx *c, Err *e) {
    Tokenizer *t = c->t;
    const cJSON *v;
    if ((v = jget(c->top, "normalizer")) && !cJSON_IsNull(v) && load_normalizer(v, &t->normalizer, "normalizer", e) < 0)
        return -1;
    if ((v = jget(c->top, "pre_tokenizer")) && !cJSON_IsNull(v) &&
        load_pre_tokenizer(v, &t->pre_tokenizer, "pre_tokenizer", e) < 0)
        return -1;
    if ((v = jget(c->top, "post_processor")) && !cJSON_IsNull(v) &&
        load_post_processor(v, &t->post_processor, "post_processor", e) < 0)
        return -1;
    if ((v = jget(c->top, "decoder")) && !cJSON_IsNull(v) && load_decoder(v, &t->decoder, "decoder", e) < 0)
        return -1;
    return 0;
}

/* The ids a post-processor adds must name tokens: an id past the vocabulary would reach the
 * model's embedding table (Hugging Face takes them on trust). */
static int check_post_ids(const Tokenizer *t, const TokPostProcessor *p, Err *e) {
    if (!p) return 0;
    for (int i = 0; i < p->n_children; i++)
        if (check_post_ids(t, p->children[i], e) < 0) return -1;
    for (int k = 0; k < 2; k++) {
        const int *ids = k ? p->after : p->before;
        int n = k ? p->n_after : p->n_before;
        size_t len;
        for (int i = 0; i < n; i++)
            if (!tok_str(t, ids[i], &len))
                return err_set(e, "post_processor: special token id %d is not in the vocabulary or added_tokens",
                               ids[i]);
    }
    return 0;
}

/* tokenizer.json text -> vocab, merges, pipeline, added tokens; `name` prefixes errors. */
static int load_tokenizer_text(Tokenizer *t, const char *text, size_t len, const char *name, Err *e) {
    size_t bad = utf8_valid_prefix(text, len);
    if (bad != len) return err_set(e, "%s is not valid UTF-8 (byte %zu)", name, bad);
    LoadCtx c = {.t = t, .top = cJSON_CreateObject(), .model = cJSON_CreateObject(), .json_len = len};
    TokJsonVisitor v = {&c, on_top_member, on_model_member, on_vocab_entry, on_merge_entry};
    int rc = tok_json_read(text, len, &v, e);
    if (rc == 0) rc = load_model(&c, e);
    sb_free(&c.merge_text);
    if (rc == 0) rc = load_pipeline(&c, e);
    if (rc == 0) rc = load_added_tokens(&c, e);
    if (rc == 0) rc = check_post_ids(t, t->post_processor, e);
    cJSON_Delete(c.top);
    cJSON_Delete(c.model);
    if (rc < 0) return err_wrap(e, "%s", name);
    return 0;
}

static int load_tokenizer_json(Tokenizer *t, const char *path, Err *e) {
    char *text;
    size_t len;
    if (file_read_all(path, MAX_TOKENIZER_JSON, &text, &len, e) < 0) return -1;
    int rc = load_tokenizer_text(t, text, len, path, e);
    free(text);
    return rc;
}

int tok_load(Tokenizer **out, const char *dir, Err *e) {
    *out = NULL;
    if (!path_is_dir(dir))
        return err_set(e, "tokenizer folder %s does not exist (give the model folder holding tokenizer.json)", dir);
    char *path = path_join(dir, "tokenizer.json");
    if (!path_exists(path)) {
        err_set(e, "%s not found: the folder must hold a Hugging Face tokenizer.json (a SentencePiece "
                   "tokenizer.model alone is not supported)", path);
        free(path);
        return -1;
    }
    Tokenizer *t = xcalloc(1, sizeof *t);
    t->dir = xstrdup(dir);
    int rc = load_tokenizer_json(t, path, e);
    free(path);
    if (rc == 0) rc = load_configs(t, dir, e);
    if (rc < 0) {
        tok_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int tok_load_json(Tokenizer **out, const char *json, size_t len, const char *name, Err *e) {
    *out = NULL;
    if (len > MAX_TOKENIZER_JSON) return err_set(e, "%s is larger than %u bytes", name, MAX_TOKENIZER_JSON);
    Tokenizer *t = xcalloc(1, sizeof *t);
    t->dir = xstrdup(name);
    t->clean_up_spaces = 1;
    t->bos_id = t->eos_id = -1;
    if (load_tokenizer_text(t, json, len, name, e) < 0) {
        tok_free(t);
        return -1;
    }
    add_known_stops(t);
    *out = t;
    return 0;
}

void tok_free(Tokenizer *t) {
    if (!t) return;
    free(t->dir);
    free(t->arena);
    free(t->tok_off);
    free(t->tok_len);
    free(t->tok_flags);
    strmap_free(&t->vocab);
    u64map_free(&t->merges);
    free(t->subword_prefix);
    free(t->word_suffix);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    strmap_free(&t->added_map);
    if (t->word_re) pcre2_code_free(t->word_re);
    if (t->trie_raw.terminal) trie_free(&t->trie_raw);
    if (t->trie_norm.terminal) trie_free(&t->trie_norm);
    free_normalizer(t->normalizer);
    free_pre_tokenizer(t->pre_tokenizer);
    free_post_processor(t->post_processor);
    free_decoder(t->decoder);
    free(t->chat_template);
    free(t->stop_ids);
    free(t);
}

/* ==== queries ========================================================================= */

int tok_vocab_size(const Tokenizer *t) { return t->n_vocab; }

const char *tok_id_to_token(const Tokenizer *t, int id, size_t *len) {
    size_t l = 0;
    const char *s = tok_str(t, id, &l);
    if (len) *len = l;
    return s;
}

int tok_token_to_id(const Tokenizer *t, const char *token, size_t len) {
    int id = strmap_get(&t->added_map, t->arena, token, len);
    return id >= 0 ? id : strmap_get(&t->vocab, t->arena, token, len);
}

int tok_is_special(const Tokenizer *t, int id) {
    return id >= 0 && id < t->n_vocab && (t->tok_flags[id] & TOKF_SPECIAL);
}

int tok_bos_id(const Tokenizer *t) { return t->bos_id; }
int tok_eos_id(const Tokenizer *t) { return t->eos_id; }

int tok_stop_ids(const Tokenizer *t, const int **ids) {
    *ids = t->stop_ids;
    return t->n_stop;
}

int tok_is_stop(const Tokenizer *t, int id) {
    for (int i = 0; i < t->n_stop; i++)
        if (t->stop_ids[i] == id) return 1;
    return 0;
}

const char *tok_chat_template(const Tokenizer *t) { return t->chat_template; }
const char *tok_dir(const Tokenizer *t) { return t->dir; }
