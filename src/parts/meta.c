/* meta.c - writing meta.yaml (contract in meta.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"
#include "parts/meta.h"
#include "parts/options.h"

typedef struct Text {
    char *s;
    size_t len, cap;
} Text;

static void put(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(Text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (t->len + (size_t)n + 1 > t->cap) {
        t->cap = (t->len + (size_t)n + 1) * 2;
        t->s = xrealloc(t->s, t->cap);
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* A YAML scalar: plain when it is safe, else double-quoted with escapes. */
static void put_scalar(Text *t, const char *s) {
    int plain = *s && !strchr("-?:,[]{}#&*!|>'\"%@`~ ", *s);
    for (const char *p = s; *p && plain; p++) {
        unsigned char c = (unsigned char)*p;
        plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("_.-/+", c);
    }
    /* words YAML would read as booleans, null or numbers */
    static const char *const special[] = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"};
    for (size_t i = 0; plain && i < sizeof special / sizeof special[0]; i++)
        if (!strcasecmp(s, special[i])) plain = 0;
    if (plain && (strspn(s, "0123456789.+-eE") == strlen(s))) plain = 0;
    if (plain) {
        put(t, "%s", s);
        return;
    }
    put(t, "\"");
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') put(t, "\\%c", c);
        else if (c < 0x20) put(t, "\\x%02x", c);
        else put(t, "%c", c);
    }
    put(t, "\"");
}

const char *meta_model_name(const char *model_path, char *buf, size_t n) {
    const char *hub = strstr(model_path, "models--");
    const char *snap = hub ? strstr(hub, "/snapshots/") : NULL;
    if (hub && snap) {
        const char *org = hub + strlen("models--");
        const char *sep = strstr(org, "--");
        if (sep && sep < snap) {
            snprintf(buf, n, "%.*s-%.*s", (int)(sep - org), org, (int)(snap - sep - 2), sep + 2);
            return buf;
        }
    }
    size_t len = strlen(model_path);
    while (len > 1 && model_path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && model_path[start - 1] != '/') start--;
    snprintf(buf, n, "%.*s", (int)(len - start), model_path + start);
    return buf;
}

static void put_lut(Text *t, const char *key, const LutSpec *l) {
    if (l->bits) put(t, "    %s: %d\n", key, l->bits);
    else put(t, "    %s: none\n", key);
    if (l->bits && l->group != LUT_DEFAULT_GROUP) put(t, "    %s_per_channel: %ld\n", key, l->group);
}

static void put_sizes(Text *t, const MetaInfo *m) {
    put(t, "[");
    for (int i = 0; i < m->n_splits; i++) put(t, "%s%d", i ? ", " : "", m->split_sizes[i]);
    put(t, "]");
}

static void put_parameters(Text *t, const MetaInfo *m) {
    char name[256];
    put(t, "  parameters:\n");
    put(t, "    context_length: %ld\n", m->context);
    put(t, "    batch_size: %ld\n", m->batch);
    put_lut(t, "lut_embeddings", &m->lut[PART_EMBEDDINGS]);
    put_lut(t, "lut_ffn", &m->lut[PART_FFN]);
    put_lut(t, "lut_lmhead", &m->lut[PART_LM_HEAD]);
    put(t, "    num_chunks: %d\n", m->num_chunks);
    put(t, "    model_prefix: ");
    put_scalar(t, m->prefix);
    put(t, "\n    embeddings: ");
    plan_embeddings_name(m->prefix, m->lut[PART_EMBEDDINGS].bits, name, sizeof name);
    put_scalar(t, strcat(name, ".mlmodelc"));
    put(t, "\n    lm_head: ");
    plan_lm_head_name(m->prefix, m->lut[PART_LM_HEAD].bits, name, sizeof name);
    put_scalar(t, strcat(name, ".mlmodelc"));
    put(t, "\n    ffn: ");
    plan_ffn_name(m->prefix, FFN_COMBINED, m->lut[PART_FFN].bits, 0, m->num_chunks, name, sizeof name);
    put_scalar(t, strcat(name, ".mlmodelc"));
    if (m->split_rotate) {
        put(t, "\n    pf: ");
        plan_ffn_name(m->prefix, FFN_COMBINED_ROT, m->lut[PART_FFN].bits, 0, m->num_chunks, name, sizeof name);
        put_scalar(t, strcat(name, ".mlmodelc"));
    }
    put(t, "\n    split_lm_head: %d\n", m->n_splits);
    if (m->argmax) put(t, "    argmax_in_model: true\n");
    put(t, "    vocab_size: %d\n", m->vocab);
    put(t, "    lm_head_chunk_sizes: ");
    put_sizes(t, m);
    put(t, "\n");
    if (m->split_rotate) put(t, "    split_rotate: true\n");
    if (m->sliding_window > 0) put(t, "    sliding_window: %d\n", m->sliding_window);
    put(t, "    prefill_dynamic_slice: true\n");
}

static void put_comments(Text *t, const MetaInfo *m) {
    char spec[32];
    put(t, "\n# =============================================================================\n");
    put(t, "# Conversion Parameters (for troubleshooting)\n");
    put(t, "# =============================================================================\n");
    put(t, "# converter: %s\n", m->tool ? m->tool : "anemll-c");
    put(t, "# model_path: %s\n", m->model_path ? m->model_path : "");
    put(t, "# context_length: %ld\n", m->context);
    put(t, "# batch_size: %ld\n", m->batch);
    put(t, "# num_chunks: %d\n", m->num_chunks);
    for (int p = 0; p < PART_LUT_COUNT; p++) {
        const char *s = lut_spec_str(&m->lut[p], spec);
        put(t, "# lut_part%d: %s\n", p + 1, *s ? s : "none");
    }
    put(t, "# prefix: %s\n", m->prefix);
    put(t, "# architecture: %s\n", m->architecture);
    put(t, "# argmax_in_model: %s\n", m->argmax ? "true" : "false");
    put(t, "# split_rotate: %s\n", m->split_rotate ? "true" : "false");
    if (m->sliding_window > 0) put(t, "# sliding_window: %d\n", m->sliding_window);
    if (m->fp16_scale > 0) put(t, "# fp16_scale: %.9g\n", m->fp16_scale);
    else put(t, "# fp16_scale: none\n");
    put(t, "# dynamic_prefill_slice: true\n");
    put(t, "# monolithic: false\n");
    put(t, "# anemll_version: %s\n", ANEMLL_INTERFACE_VERSION);
    put(t, "# vocab_size: %d\n", m->vocab);
    put(t, "# lm_head_chunk_sizes: \"");
    put_sizes(t, m);
    put(t, "\"\n");
    put(t, "# =============================================================================\n");
}

char *meta_yaml_text(const MetaInfo *m) {
    Text t = {0};
    char name[512];
    snprintf(name, sizeof name, "anemll-%s-ctx%ld", m->model_name, m->context);
    put(&t, "model_info:\n  name: ");
    put_scalar(&t, name);
    put(&t, "\n  version: %s\n", ANEMLL_INTERFACE_VERSION);
    put(&t, "  description: |\n");
    put(&t, "    Demonstrates running %s on Apple Neural Engine\n", m->model_name);
    put(&t, "    Context length: %ld\n", m->context);
    put(&t, "    Batch size: %ld\n", m->batch);
    put(&t, "    Chunks: %d\n", m->num_chunks);
    put(&t, "  license: MIT\n  author: Anemll\n  framework: Core ML\n  language: Python\n");
    put(&t, "  architecture: ");
    put_scalar(&t, m->architecture);
    put(&t, "\n");
    put_parameters(&t, m);
    put_comments(&t, m);
    return t.s;
}

int meta_yaml_write(const char *path, const MetaInfo *m, Err *e) {
    char *text = meta_yaml_text(m);
    int rc = file_write_atomic(path, text, strlen(text), e);
    free(text);
    return rc;
}
