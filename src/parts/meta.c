/* meta.c - writing meta.yaml (contract in meta.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/strbuf.h"
#include "common/util.h"
#include "parts/meta.h"
#include "parts/options.h"

/* A YAML scalar: plain when it is safe, else double-quoted with escapes. */
static void put_scalar(StrBuf *t, const char *s) {
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
        strbuf_printf(t, "%s", s);
        return;
    }
    strbuf_printf(t, "\"");
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') strbuf_printf(t, "\\%c", c);
        else if (c < 0x20) strbuf_printf(t, "\\x%02x", c);
        else strbuf_printf(t, "%c", c);
    }
    strbuf_printf(t, "\"");
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

static void put_lut(StrBuf *t, const char *key, const LutSpec *l) {
    if (l->bits) strbuf_printf(t, "    %s: %d\n", key, l->bits);
    else strbuf_printf(t, "    %s: none\n", key);
    if (l->bits && l->group != LUT_DEFAULT_GROUP) strbuf_printf(t, "    %s_per_channel: %ld\n", key, l->group);
}

static void put_sizes(StrBuf *t, const MetaInfo *m) {
    strbuf_printf(t, "[");
    for (int i = 0; i < m->n_splits; i++) strbuf_printf(t, "%s%d", i ? ", " : "", m->split_sizes[i]);
    strbuf_printf(t, "]");
}

static void put_parameters(StrBuf *t, const MetaInfo *m) {
    char name[256];
    strbuf_printf(t, "  parameters:\n");
    strbuf_printf(t, "    context_length: %ld\n", m->context);
    strbuf_printf(t, "    batch_size: %ld\n", m->batch);
    put_lut(t, "lut_embeddings", &m->lut[PART_EMBEDDINGS]);
    put_lut(t, "lut_ffn", &m->lut[PART_FFN]);
    put_lut(t, "lut_lmhead", &m->lut[PART_LM_HEAD]);
    strbuf_printf(t, "    num_chunks: %d\n", m->num_chunks);
    strbuf_printf(t, "    model_prefix: ");
    put_scalar(t, m->prefix);
    strbuf_printf(t, "\n    embeddings: ");
    plan_embeddings_name(m->prefix, m->lut[PART_EMBEDDINGS].bits, name, sizeof name);
    put_scalar(t, strcat(name, ".mlmodelc"));
    strbuf_printf(t, "\n    lm_head: ");
    plan_lm_head_name(m->prefix, m->lut[PART_LM_HEAD].bits, name, sizeof name);
    put_scalar(t, strcat(name, ".mlmodelc"));
    strbuf_printf(t, "\n    ffn: ");
    plan_ffn_name(m->prefix, FFN_COMBINED, m->lut[PART_FFN].bits, 0, m->num_chunks, name, sizeof name);
    put_scalar(t, strcat(name, ".mlmodelc"));
    if (m->split_rotate) {
        strbuf_printf(t, "\n    pf: ");
        plan_ffn_name(m->prefix, FFN_COMBINED_ROT, m->lut[PART_FFN].bits, 0, m->num_chunks, name, sizeof name);
        put_scalar(t, strcat(name, ".mlmodelc"));
    }
    strbuf_printf(t, "\n    split_lm_head: %d\n", m->n_splits);
    if (m->argmax) strbuf_printf(t, "    argmax_in_model: true\n");
    strbuf_printf(t, "    vocab_size: %d\n", m->vocab);
    strbuf_printf(t, "    lm_head_chunk_sizes: ");
    put_sizes(t, m);
    strbuf_printf(t, "\n");
    if (m->split_rotate) strbuf_printf(t, "    split_rotate: true\n");
    if (m->sliding_window > 0) strbuf_printf(t, "    sliding_window: %d\n", m->sliding_window);
    strbuf_printf(t, "    prefill_dynamic_slice: true\n");
}

static void put_comments(StrBuf *t, const MetaInfo *m) {
    char spec[32];
    strbuf_printf(t, "\n# =============================================================================\n");
    strbuf_printf(t, "# Conversion Parameters (for troubleshooting)\n");
    strbuf_printf(t, "# =============================================================================\n");
    strbuf_printf(t, "# converter: %s\n", m->tool ? m->tool : "anemll-c");
    strbuf_printf(t, "# model_path: %s\n", m->model_path ? m->model_path : "");
    strbuf_printf(t, "# context_length: %ld\n", m->context);
    strbuf_printf(t, "# batch_size: %ld\n", m->batch);
    strbuf_printf(t, "# num_chunks: %d\n", m->num_chunks);
    for (int p = 0; p < PART_LUT_COUNT; p++) {
        const char *s = lut_spec_str(&m->lut[p], spec);
        strbuf_printf(t, "# lut_part%d: %s\n", p + 1, *s ? s : "none");
    }
    strbuf_printf(t, "# prefix: %s\n", m->prefix);
    strbuf_printf(t, "# architecture: %s\n", m->architecture);
    strbuf_printf(t, "# argmax_in_model: %s\n", m->argmax ? "true" : "false");
    strbuf_printf(t, "# split_rotate: %s\n", m->split_rotate ? "true" : "false");
    if (m->sliding_window > 0) strbuf_printf(t, "# sliding_window: %d\n", m->sliding_window);
    if (m->fp16_scale > 0) strbuf_printf(t, "# fp16_scale: %.9g\n", m->fp16_scale);
    else strbuf_printf(t, "# fp16_scale: none\n");
    strbuf_printf(t, "# dynamic_prefill_slice: true\n");
    strbuf_printf(t, "# monolithic: false\n");
    strbuf_printf(t, "# anemll_version: %s\n", ANEMLL_INTERFACE_VERSION);
    strbuf_printf(t, "# vocab_size: %d\n", m->vocab);
    strbuf_printf(t, "# lm_head_chunk_sizes: \"");
    put_sizes(t, m);
    strbuf_printf(t, "\"\n");
    strbuf_printf(t, "# =============================================================================\n");
}

char *meta_yaml_text(const MetaInfo *m) {
    StrBuf t = {0};
    char name[512];
    snprintf(name, sizeof name, "anemll-%s-ctx%ld", m->model_name, m->context);
    strbuf_printf(&t, "model_info:\n  name: ");
    put_scalar(&t, name);
    strbuf_printf(&t, "\n  version: %s\n", ANEMLL_INTERFACE_VERSION);
    strbuf_printf(&t, "  description: |\n");
    strbuf_printf(&t, "    Demonstrates running %s on Apple Neural Engine\n", m->model_name);
    strbuf_printf(&t, "    Context length: %ld\n", m->context);
    strbuf_printf(&t, "    Batch size: %ld\n", m->batch);
    strbuf_printf(&t, "    Chunks: %d\n", m->num_chunks);
    strbuf_printf(&t, "  license: MIT\n  author: Anemll\n  framework: Core ML\n  language: Python\n");
    strbuf_printf(&t, "  architecture: ");
    put_scalar(&t, m->architecture);
    strbuf_printf(&t, "\n");
    put_parameters(&t, m);
    put_comments(&t, m);
    return strbuf_take(&t);
}

int meta_yaml_write(const char *path, const MetaInfo *m, Err *e) {
    char *text = meta_yaml_text(m);
    int rc = file_write_atomic(path, text, strlen(text), e);
    free(text);
    return rc;
}
