/* meta.yaml: parsed back with libyaml, every key chat.py and the Swift CLI read is present
 * with its value, optional keys appear only when they apply, odd model names are quoted, the
 * HF-cache model name rule, and the text is the same byte for byte every time (no timestamps). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <yaml.h>

#include "common/util.h"
#include "parts/meta.h"
#include "parts/options.h"

/* ==== a flat view of a YAML document: "a.b.c" -> scalar, sequences as "a.b[i]" ==== */

typedef struct Flat {
    char key[64][96];
    char val[64][160];
    int n;
} Flat;

static void flatten(yaml_document_t *d, yaml_node_t *node, const char *prefix, Flat *f) {
    if (node->type == YAML_SCALAR_NODE) {
        assert_true(f->n < 64);
        snprintf(f->key[f->n], sizeof f->key[0], "%s", prefix);
        snprintf(f->val[f->n], sizeof f->val[0], "%.*s", (int)node->data.scalar.length,
                 (const char *)node->data.scalar.value);
        f->n++;
    } else if (node->type == YAML_SEQUENCE_NODE) {
        int i = 0;
        for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top; it++, i++) {
            char k[96];
            snprintf(k, sizeof k, "%s[%d]", prefix, i);
            flatten(d, yaml_document_get_node(d, *it), k, f);
        }
    } else if (node->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(d, p->key);
            assert_int_equal(k->type, YAML_SCALAR_NODE);
            char key[96];
            snprintf(key, sizeof key, "%s%s%.*s", prefix, *prefix ? "." : "", (int)k->data.scalar.length,
                     (const char *)k->data.scalar.value);
            flatten(d, yaml_document_get_node(d, p->value), key, f);
        }
    }
}

static void parse_yaml(const char *text, Flat *f) {
    yaml_parser_t p;
    yaml_document_t d;
    assert_true(yaml_parser_initialize(&p));
    yaml_parser_set_input_string(&p, (const unsigned char *)text, strlen(text));
    if (!yaml_parser_load(&p, &d)) fail_msg("meta.yaml does not parse: %s (line %zu)", p.problem, p.problem_mark.line);
    memset(f, 0, sizeof *f);
    yaml_node_t *root = yaml_document_get_root_node(&d);
    assert_non_null(root);
    flatten(&d, root, "", f);
    yaml_document_delete(&d);
    yaml_parser_delete(&p);
}

static const char *get(const Flat *f, const char *key) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->key[i], key)) return f->val[i];
    return NULL;
}

static void expect(const Flat *f, const char *key, const char *want) {
    const char *v = get(f, key);
    if (!v) fail_msg("meta.yaml has no %s", key);
    if (strcmp(v, want)) fail_msg("meta.yaml %s = '%s', expected '%s'", key, v, want);
}

#define P "model_info.parameters."

static MetaInfo base_info(void) {
    MetaInfo m = {0};
    m.model_name = "llama3_tiny";
    m.model_path = "../llama3_tiny";
    m.architecture = "llama";
    m.tool = "anemll-c test";
    m.context = 256;
    m.batch = 32;
    m.lut[PART_EMBEDDINGS] = (LutSpec){0, 0};
    m.lut[PART_FFN] = (LutSpec){4, 8};
    m.lut[PART_LM_HEAD] = (LutSpec){6, 8};
    m.num_chunks = 2;
    m.prefix = "llama";
    m.vocab = 128256;
    m.n_splits = 8;
    for (int i = 0; i < 8; i++) m.split_sizes[i] = 16032;
    return m;
}

/* The keys of ../shared/golden/anemll/llama3_tiny/lut/meta.yaml, with the same values. */
static void test_golden_keys(void **state) {
    (void)state;
    MetaInfo m = base_info();
    char *text = meta_yaml_text(&m);
    Flat f;
    parse_yaml(text, &f);
    expect(&f, "model_info.name", "anemll-llama3_tiny-ctx256");
    expect(&f, "model_info.version", "0.3.5");
    assert_non_null(strstr(get(&f, "model_info.description"), "Context length: 256\nBatch size: 32\nChunks: 2\n"));
    expect(&f, "model_info.license", "MIT");
    expect(&f, "model_info.author", "Anemll");
    expect(&f, "model_info.framework", "Core ML");
    expect(&f, "model_info.language", "Python");
    expect(&f, "model_info.architecture", "llama");
    expect(&f, P "context_length", "256");
    expect(&f, P "batch_size", "32");
    expect(&f, P "lut_embeddings", "none");
    expect(&f, P "lut_ffn", "4");
    expect(&f, P "lut_lmhead", "6");
    expect(&f, P "num_chunks", "2");
    expect(&f, P "model_prefix", "llama");
    expect(&f, P "embeddings", "llama_embeddings.mlmodelc");
    expect(&f, P "lm_head", "llama_lm_head_lut6.mlmodelc");
    expect(&f, P "ffn", "llama_FFN_PF_lut4_chunk_01of02.mlmodelc");
    expect(&f, P "split_lm_head", "8");
    expect(&f, P "vocab_size", "128256");
    for (int i = 0; i < 8; i++) {
        char k[96];
        snprintf(k, sizeof k, P "lm_head_chunk_sizes[%d]", i);
        expect(&f, k, "16032");
    }
    assert_null(get(&f, P "lm_head_chunk_sizes[8]"));
    expect(&f, P "prefill_dynamic_slice", "true");
    /* conditional keys are absent */
    assert_null(get(&f, P "argmax_in_model"));
    assert_null(get(&f, P "sliding_window"));
    assert_null(get(&f, P "lut_ffn_per_channel"));
    assert_null(get(&f, P "split_rotate"));
    /* the golden file has exactly these parameter keys, no more */
    int n_params = 0;
    for (int i = 0; i < f.n; i++) n_params += !strncmp(f.key[i], P, strlen(P)) && !strchr(f.key[i] + strlen(P), '[');
    assert_int_equal(n_params, 13);   /* 14 keys, lm_head_chunk_sizes counted above */
    assert_null(strstr(text, "Generated"));   /* no timestamp */
    char *again = meta_yaml_text(&m);
    assert_string_equal(text, again);
    free(again);
    free(text);
}

static void test_optional_keys(void **state) {
    (void)state;
    MetaInfo m = base_info();
    m.lut[PART_EMBEDDINGS] = (LutSpec){8, 4};
    m.lut[PART_FFN] = (LutSpec){6, 0};
    m.lut[PART_LM_HEAD] = (LutSpec){0, 0};
    m.argmax = 1;
    m.sliding_window = 4096;
    m.prefix = "qwen";
    m.architecture = "qwen3";
    m.n_splits = 16;
    m.vocab = 151937;
    for (int i = 0; i < 16; i++) m.split_sizes[i] = 9496 + (i == 0);
    char *text = meta_yaml_text(&m);
    Flat f;
    parse_yaml(text, &f);
    expect(&f, P "lut_embeddings", "8");
    expect(&f, P "lut_embeddings_per_channel", "4");
    expect(&f, P "lut_ffn", "6");
    expect(&f, P "lut_ffn_per_channel", "0");
    expect(&f, P "lut_lmhead", "none");
    assert_null(get(&f, P "lut_lmhead_per_channel"));
    expect(&f, P "embeddings", "qwen_embeddings_lut8.mlmodelc");
    expect(&f, P "lm_head", "qwen_lm_head.mlmodelc");
    expect(&f, P "ffn", "qwen_FFN_PF_lut6_chunk_01of02.mlmodelc");
    expect(&f, P "argmax_in_model", "true");
    expect(&f, P "sliding_window", "4096");
    expect(&f, P "split_lm_head", "16");
    expect(&f, P "lm_head_chunk_sizes[0]", "9497");
    expect(&f, P "lm_head_chunk_sizes[15]", "9496");
    free(text);
}

/* Names that YAML would misread are quoted and come back unchanged. */
static void test_quoting(void **state) {
    (void)state;
    const char *names[] = {"my model: v2", "yes", "1.5", "#hash", "quote\"and\\back", "-dash", "null"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        MetaInfo m = base_info();
        /* prefixes are [A-Za-z0-9_.-]+ (options.c), which still allows YAML booleans and numbers */
        int prefix_ok = strspn(names[i], "abcdefghijklmnopqrstuvwxyz0123456789.") == strlen(names[i]);
        m.prefix = prefix_ok ? names[i] : "llama";
        m.model_name = names[i];
        char *text = meta_yaml_text(&m);
        Flat f;
        parse_yaml(text, &f);
        char want[128];
        snprintf(want, sizeof want, "anemll-%s-ctx256", names[i]);
        expect(&f, "model_info.name", want);
        expect(&f, P "model_prefix", m.prefix);
        free(text);
    }
}

static void test_model_name(void **state) {
    (void)state;
    char b[256];
    assert_string_equal(meta_model_name("/data/models/Llama-3.2-1B/", b, sizeof b), "Llama-3.2-1B");
    assert_string_equal(meta_model_name("m", b, sizeof b), "m");
    assert_string_equal(
        meta_model_name("/root/.cache/huggingface/hub/models--meta-llama--Llama-3.2-1B/snapshots/abc123", b, sizeof b),
        "meta-llama-Llama-3.2-1B");
}

static void test_write_atomic(void **state) {
    (void)state;
    char dir[512];
    const char *base = getenv("TEST_TMP");
    snprintf(dir, sizeof dir, "%s/meta.XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(dir));
    char *path = path_join(dir, "meta.yaml");
    MetaInfo m = base_info();
    Err e = {0};
    assert_int_equal(meta_yaml_write(path, &m, &e), 0);
    char *text;
    size_t len;
    assert_int_equal(file_read_all(path, 1 << 20, &text, &len, &e), 0);
    char *want = meta_yaml_text(&m);
    assert_string_equal(text, want);
    free(text);
    free(want);
    /* an unwritable destination fails with a message naming it, and leaves nothing */
    char *bad = path_join(dir, "missing/meta.yaml");
    assert_int_equal(meta_yaml_write(bad, &m, &e), -1);
    assert_non_null(strstr(e.msg, "missing"));
    free(bad);
    free(path);
    remove_tree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_keys), cmocka_unit_test(test_optional_keys), cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_model_name),  cmocka_unit_test(test_write_atomic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
