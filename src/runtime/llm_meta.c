/* llm_meta.c - reading meta.yaml with libyaml (contract in llm_meta.h). */
#include "runtime/llm_meta.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "common/util.h"

/* ==== YAML document helpers ==== */

static yaml_node_t *map_get(yaml_document_t *d, yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(d, p->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
            return yaml_document_get_node(d, p->value);
    }
    return NULL;
}

static const char *scalar(yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int parse_long(const char *s, long *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    while (*end && isspace((unsigned char)*end)) end++;
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

typedef struct Reader {
    yaml_document_t *doc;
    yaml_node_t *params;
    const char *path;
    Err *e;
} Reader;

/* An integer key: *out unchanged when absent (returns 0), -1 when present but not an integer
 * in [lo, hi]. required: absent is an error. */
static int get_int(Reader *r, const char *key, long lo, long hi, int required, int *out) {
    yaml_node_t *n = map_get(r->doc, r->params, key);
    const char *s = scalar(n);
    long v;
    if (!n) {
        if (required) return err_set(r->e, "%s: model_info.parameters.%s is missing", r->path, key);
        return 0;
    }
    if (parse_long(s, &v) < 0 || v < lo || v > hi)
        return err_set(r->e, "%s: model_info.parameters.%s must be an integer in [%ld, %ld], got '%s'", r->path, key, lo, hi,
                       s ? s : "(not a scalar)");
    *out = (int)v;
    return 0;
}

static int get_bool(Reader *r, const char *key, int *out) {
    yaml_node_t *n = map_get(r->doc, r->params, key);
    const char *s = scalar(n);
    if (!n) return 0;
    if (s && (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcmp(s, "1"))) *out = 1;
    else if (s && (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcmp(s, "0"))) *out = 0;
    else return err_set(r->e, "%s: model_info.parameters.%s must be true or false, got '%s'", r->path, key, s ? s : "?");
    return 0;
}

/* lut_* keys: bits, or none / false / empty. */
static int get_lut(Reader *r, const char *key, int *out) {
    yaml_node_t *n = map_get(r->doc, r->params, key);
    const char *s = scalar(n);
    long v;
    *out = 0;
    if (!n || !s || !*s || !strcasecmp(s, "none") || !strcasecmp(s, "false") || !strcasecmp(s, "null")) return 0;
    if (parse_long(s, &v) < 0 || v < 0 || v > 16)
        return err_set(r->e, "%s: model_info.parameters.%s must be LUT bits or none, got '%s'", r->path, key, s);
    *out = (int)v;
    return 0;
}

static char *get_str(Reader *r, const char *key) {
    const char *s = scalar(map_get(r->doc, r->params, key));
    return s && *s ? xstrdup(s) : NULL;
}

static int get_sizes(Reader *r, LlmMeta *m) {
    yaml_node_t *n = map_get(r->doc, r->params, "lm_head_chunk_sizes");
    if (!n) return 0;
    if (n->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            long v;
            if (m->n_chunk_sizes == LLM_MAX_SPLITS || parse_long(scalar(yaml_document_get_node(r->doc, *it)), &v) < 0 ||
                v < 1)
                return err_set(r->e, "%s: lm_head_chunk_sizes must be a list of at most %d positive integers", r->path,
                               LLM_MAX_SPLITS);
            m->lm_head_chunk_sizes[m->n_chunk_sizes++] = (int)v;
        }
        return 0;
    }
    const char *s = scalar(n);   /* also accept "a,b,c" (the Core ML metadata form) */
    while (s && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || m->n_chunk_sizes == LLM_MAX_SPLITS)
            return err_set(r->e, "%s: lm_head_chunk_sizes must be a list of positive integers", r->path);
        m->lm_head_chunk_sizes[m->n_chunk_sizes++] = (int)v;
        s = end;
        while (*s == ',' || *s == ' ' || *s == '[' || *s == ']') s++;
    }
    return 0;
}

/* ==== File names ==== */

/* "x.mlmodelc" / "x.mlpackage" / "x" -> "x". Caller frees. */
static char *strip_ext(const char *name) {
    size_t n = strlen(name);
    while (n > 1 && name[n - 1] == '/') n--;
    const char *exts[2] = {".mlmodelc", ".mlpackage"};
    for (int i = 0; i < 2; i++) {
        size_t l = strlen(exts[i]);
        if (n > l && !strncmp(name + n - l, exts[i], l)) {
            n -= l;
            break;
        }
    }
    char *s = xmalloc(n + 1);
    memcpy(s, name, n);
    s[n] = 0;
    return s;
}

static char *resolve_package(const LlmMeta *m, const char *name, const char *key, Err *e) {
    char *base = strip_ext(name);
    char *full = base[0] == '/' ? xstrdup(base) : path_join(m->dir, base);
    char *pkg = xasprintf("%s.mlpackage", full), *compiled = xasprintf("%s.mlmodelc", full);
    int ok = path_is_dir(pkg);
    if (!ok) {
        if (path_is_dir(compiled))
            err_set(e, "%s: %s names %s, a compiled model; the CPU runtime runs the .mlpackage beside it, and %s is "
                       "missing (convert again, or copy the .mlpackage next to it)",
                    m->path, key, compiled, pkg);
        else
            err_set(e, "%s: %s names %s, which does not exist", m->path, key, pkg);
        free(pkg);
        pkg = NULL;
    }
    free(base);
    free(full);
    free(compiled);
    return pkg;
}

char *llm_meta_chunk_name(const char *first, int i, int n) {
    const char *at = NULL;
    for (const char *p = strstr(first, "_chunk_"); p; p = strstr(p + 1, "_chunk_")) at = p;
    if (!at) return NULL;
    const char *d1 = at + 7, *e1 = d1;
    while (isdigit((unsigned char)*e1)) e1++;
    if (e1 == d1 || strncmp(e1, "of", 2)) return NULL;
    const char *d2 = e1 + 2, *e2 = d2;
    while (isdigit((unsigned char)*e2)) e2++;
    if (e2 == d2) return NULL;
    return xasprintf("%.*s%0*dof%0*d%s", (int)(d1 - first), first, (int)(e1 - d1), i, (int)(e2 - d2), n, e2);
}

static char *lut_suffix(int bits) { return bits ? xasprintf("_lut%d", bits) : xstrdup(""); }

/* The num_chunks packages named like `first` (chunk 01) with _chunk_NNofMM replaced. */
static char **resolve_chunks(LlmMeta *m, const char *first, const char *key, Err *e) {
    char **out = xcalloc((size_t)m->num_chunks, sizeof *out);
    char *base = strip_ext(first);
    int rc = 0;
    for (int i = 1; i <= m->num_chunks && rc == 0; i++) {
        char *name = llm_meta_chunk_name(base, i, m->num_chunks);
        if (!name && m->num_chunks == 1) name = xstrdup(base);
        if (!name) {
            rc = err_set(e, "%s: %s '%s' has no _chunk_NNofMM part, so the other %d chunks cannot be found", m->path, key,
                         first, m->num_chunks - 1);
            break;
        }
        out[i - 1] = resolve_package(m, name, key, e);
        if (!out[i - 1]) rc = -1;
        free(name);
    }
    free(base);
    if (rc == 0) return out;
    for (int i = 0; i < m->num_chunks; i++) free(out[i]);
    free(out);
    return NULL;
}

static int resolve_files(LlmMeta *m, Reader *r, Err *e) {
    char *emb = get_str(r, "embeddings"), *lm = get_str(r, "lm_head"), *ffn = get_str(r, "ffn");
    char *s1 = lut_suffix(m->lut_embeddings), *s2 = lut_suffix(m->lut_ffn), *s3 = lut_suffix(m->lut_lmhead);
    if (!emb) emb = xasprintf("%s_embeddings%s", m->model_prefix, s1);
    if (!lm) lm = xasprintf("%s_lm_head%s", m->model_prefix, s3);
    if (!ffn) ffn = xasprintf("%s_FFN_PF%s_chunk_01of%02d", m->model_prefix, s2, m->num_chunks);
    int rc = 0;
    m->embeddings = resolve_package(m, emb, "embeddings", e);
    if (!m->embeddings) rc = -1;
    if (rc == 0) {
        m->lm_head = resolve_package(m, lm, "lm_head", e);
        if (!m->lm_head) rc = -1;
    }
    if (rc == 0) {
        m->chunks = resolve_chunks(m, ffn, "ffn", e);
        if (!m->chunks) rc = -1;
    }
    if (rc == 0 && m->split_rotate) {
        char *pf = get_str(r, "pf");
        if (!pf) {   /* ANEMLL's combine names it after the main file */
            char *base = strip_ext(ffn);
            pf = xasprintf("%s_rot", base);
            free(base);
        }
        m->rot_chunks = resolve_chunks(m, pf, "pf", e);
        if (!m->rot_chunks) rc = -1;
        free(pf);
    }
    free(emb);
    free(lm);
    free(ffn);
    free(s1);
    free(s2);
    free(s3);
    return rc;
}

/* ==== Loading ==== */

static int read_parameters(LlmMeta *m, Reader *r) {
    if (get_int(r, "context_length", 1, 1 << 20, 1, &m->context_length) < 0 ||
        get_int(r, "batch_size", 1, 1 << 16, 1, &m->batch_size) < 0 ||
        get_int(r, "num_chunks", 1, 99, 1, &m->num_chunks) < 0 ||
        get_int(r, "split_lm_head", 1, LLM_MAX_SPLITS, 0, &m->split_lm_head) < 0 ||
        get_int(r, "vocab_size", 1, 1 << 24, 0, &m->vocab_size) < 0 ||
        get_int(r, "sliding_window", 0, 1 << 20, 0, &m->sliding_window) < 0 ||
        get_int(r, "state_length", 1, 1 << 20, 0, &m->state_length) < 0 ||
        get_int(r, "attention_size", 1, 1 << 20, 0, &m->attention_size) < 0)
        return -1;
    if (get_bool(r, "argmax_in_model", &m->argmax_in_model) < 0 ||
        get_bool(r, "prefill_dynamic_slice", &m->prefill_dynamic_slice) < 0 ||
        get_bool(r, "update_mask_prefill", &m->update_mask_prefill) < 0 ||
        get_bool(r, "split_rotate", &m->split_rotate) < 0)
        return -1;
    if (get_lut(r, "lut_embeddings", &m->lut_embeddings) < 0 || get_lut(r, "lut_ffn", &m->lut_ffn) < 0 ||
        get_lut(r, "lut_lmhead", &m->lut_lmhead) < 0)
        return -1;
    if (get_sizes(r, m) < 0) return -1;
    m->model_prefix = get_str(r, "model_prefix");
    if (!m->model_prefix) m->model_prefix = xstrdup("llama");
    char *tp = get_str(r, "tokenizer_path");
    if (tp) {
        m->tokenizer_dir = tp[0] == '/' ? xstrdup(tp) : path_join(m->dir, tp);
        free(tp);
    } else {
        m->tokenizer_dir = xstrdup(m->dir);
    }
    return 0;
}

int llm_meta_load(LlmMeta *m, const char *path, Err *e) {
    memset(m, 0, sizeof *m);
    m->split_lm_head = 8;
    m->prefill_dynamic_slice = -1;
    m->path = xstrdup(path);
    const char *slash = strrchr(path, '/');
    m->dir = slash ? xasprintf("%.*s", (int)(slash - path), path) : xstrdup(".");
    if (!m->dir[0]) {
        free(m->dir);
        m->dir = xstrdup("/");
    }
    char *text;
    size_t len;
    if (!path_exists(path) && path_is_dir(m->dir)) {
        /* convert writes meta.yaml last (step 7) and removes it while it rewrites packages */
        err_set(e, "--meta: %s does not exist: %s holds no finished conversion. If `anemll convert` into it was "
                   "interrupted, run it again with --restart at the step it stopped in",
                path, m->dir);
        llm_meta_free(m);
        return -1;
    }
    if (file_read_all(path, 1 << 20, &text, &len, e) < 0) {
        llm_meta_free(m);
        return err_wrap(e, "--meta");
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = 0;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = err_set(e, "%s: not valid YAML (line %zu: %s)", path, parser.problem_mark.line + 1,
                     parser.problem ? parser.problem : "parse error");
        yaml_parser_delete(&parser);
        free(text);
        llm_meta_free(m);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *info = map_get(&doc, root, "model_info");
    Reader r = {&doc, map_get(&doc, info, "parameters"), path, e};
    if (!r.params || r.params->type != YAML_MAPPING_NODE) {
        rc = err_set(e, "%s: model_info.parameters is missing; is this an ANEMLL meta.yaml?", path);
    } else {
        const char *mt = scalar(map_get(&doc, info, "model_type"));
        const char *s;
        if ((s = scalar(map_get(&doc, info, "name")))) m->name = xstrdup(s);
        if ((s = scalar(map_get(&doc, info, "architecture")))) m->architecture = xstrdup(s);
        if ((s = scalar(map_get(&doc, info, "version")))) m->version = xstrdup(s);
        if (mt && !strcmp(mt, "monolithic"))
            rc = err_set(e, "%s: monolithic models (model_type: monolithic) are not supported by the CPU runtime; "
                            "convert without --monolithic",
                         path);
        if (rc == 0) rc = read_parameters(m, &r);
        if (rc == 0 && m->n_chunk_sizes && m->n_chunk_sizes != m->split_lm_head)
            rc = err_set(e, "%s: lm_head_chunk_sizes has %d entries but split_lm_head is %d", path, m->n_chunk_sizes,
                         m->split_lm_head);
        if (rc == 0) rc = resolve_files(m, &r, e);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(text);
    if (rc < 0) llm_meta_free(m);
    return rc;
}

void llm_meta_free(LlmMeta *m) {
    if (m->chunks)
        for (int i = 0; i < m->num_chunks; i++) free(m->chunks[i]);
    free(m->chunks);
    if (m->rot_chunks)
        for (int i = 0; i < m->num_chunks; i++) free(m->rot_chunks[i]);
    free(m->rot_chunks);
    free(m->path);
    free(m->dir);
    free(m->name);
    free(m->architecture);
    free(m->version);
    free(m->model_prefix);
    free(m->embeddings);
    free(m->lm_head);
    free(m->tokenizer_dir);
    memset(m, 0, sizeof *m);
}
