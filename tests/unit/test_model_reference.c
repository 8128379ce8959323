/* The reference forward pass against Hugging Face outputs (tests/data/refvectors), the KV
 * cache against full recomputation, and the fp16 mode against the overflow HF reports. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/half.h"
#include "common/util.h"
#include "io/json.h"
#include "model/reference.h"

static const char *data_dir(void) {
    const char *d = getenv("ANEMLL_TEST_DATA");
    return d ? d : "tests/data";
}

typedef struct Expected {
    int prompt[64], n_prompt;
    int generated[64], n_generated;
    float *logits; /* [n_prompt][vocab] */
    int vocab;
    cJSON *root;
} Expected;

static void int_list(const cJSON *arr, int *out, int *n) {
    *n = 0;
    for (const cJSON *it = arr ? arr->child : NULL; it; it = it->next) out[(*n)++] = it->valueint;
}

static void load_expected(const char *dir, Expected *x) {
    memset(x, 0, sizeof *x);
    char *path = path_join(dir, "expected.json");
    Err e = {0};
    if (json_read_file(path, 1 << 24, &x->root, &e) < 0) fail_msg("%s", e.msg);
    free(path);
    int_list(cJSON_GetObjectItem(x->root, "prompt_ids"), x->prompt, &x->n_prompt);
    int_list(cJSON_GetObjectItem(x->root, "generated_ids"), x->generated, &x->n_generated);
    const cJSON *rows = cJSON_GetObjectItem(x->root, "logits");
    assert_int_equal(cJSON_GetArraySize(rows), x->n_prompt);
    x->vocab = cJSON_GetArraySize(rows->child);
    x->logits = xmalloc(sizeof(float) * (size_t)x->n_prompt * x->vocab);
    int r = 0;
    for (const cJSON *row = rows->child; row; row = row->next, r++) {
        int c = 0;
        for (const cJSON *v = row->child; v; v = v->next, c++) x->logits[(size_t)r * x->vocab + c] = (float)v->valuedouble;
    }
    assert_true(x->n_prompt == 24 && x->n_generated == 12);
}

static void free_expected(Expected *x) {
    free(x->logits);
    cJSON_Delete(x->root);
}

static RefModel *load_case(const char *name, RefPrecision prec) {
    char *dir = xasprintf("%s/refvectors/%s", data_dir(), name);
    RefModel *m;
    Err e = {0};
    RefOptions opt = {.precision = prec};
    if (ref_load(&m, dir, &opt, &e) < 0) fail_msg("%s", e.msg);
    free(dir);
    return m;
}

static const char *cases[] = {"llama_rope_llama3", "llama_untied_sharded", "qwen2_bias", "qwen3_qknorm",
                              "gemma3_text_sliding", "gemma3_multimodal_text", "fp16_overflow"};
#define N_CASES (sizeof cases / sizeof cases[0])

/* All 24 prompt positions within 1e-3 of HF's float32 logits; 12 greedy ids identical. */
static void check_case(const char *name) {
    char *dir = xasprintf("%s/refvectors/%s", data_dir(), name);
    Expected x;
    load_expected(dir, &x);
    free(dir);
    RefModel *m = load_case(name, REF_FP32);
    const Arch *a = ref_arch(m);
    assert_int_equal(a->vocab, x.vocab);
    Err e = {0};
    float *logits = xmalloc(sizeof(float) * (size_t)x.n_prompt * a->vocab);
    assert_int_equal(ref_forward(m, x.prompt, x.n_prompt, 0, logits, 1, &e), 0);
    double max_diff = 0;
    for (size_t i = 0; i < (size_t)x.n_prompt * a->vocab; i++) {
        double d = fabs((double)logits[i] - x.logits[i]);
        if (!(d <= max_diff)) max_diff = d;
    }
    /* greedy continuation through the KV cache, one token at a time */
    float *last = logits + (size_t)(x.n_prompt - 1) * a->vocab;
    int tok = ref_argmax(last, a->vocab), same = 0;
    for (int g = 0; g < x.n_generated; g++) {
        same += tok == x.generated[g];
        assert_int_equal(ref_forward(m, &tok, 1, x.n_prompt + g, last, 0, &e), 0);
        tok = ref_argmax(last, a->vocab);
    }
    print_message("%-24s max|dlogit| %.2e over %d x %d, generated %d/12 identical\n", name, max_diff, x.n_prompt,
                  a->vocab, same);
    assert_true(max_diff <= 1e-3);
    assert_int_equal(same, x.n_generated);
    free(logits);
    free_expected(&x);
    ref_free(m);
}

static void test_refvectors(void **state) {
    (void)state;
    for (size_t i = 0; i < N_CASES; i++) check_case(cases[i]);
}

/* Logits of prompt + continuation computed in one call (no cache reuse) and one token at a
 * time (every step reads the cache) agree to 1e-4, for every case, also across sliding
 * windows (the sequences are 36 long, the windows 8 and 16). */
static void test_incremental_equals_full(void **state) {
    (void)state;
    for (size_t c = 0; c < N_CASES; c++) {
        char *dir = xasprintf("%s/refvectors/%s", data_dir(), cases[c]);
        Expected x;
        load_expected(dir, &x);
        free(dir);
        int seq[96], n = 0;
        for (int i = 0; i < x.n_prompt; i++) seq[n++] = x.prompt[i];
        for (int i = 0; i < x.n_generated; i++) seq[n++] = x.generated[i];
        RefModel *m = load_case(cases[c], REF_FP32);
        int V = ref_arch(m)->vocab;
        Err e = {0};
        float *full = xmalloc(sizeof(float) * (size_t)n * V), *step = xmalloc(sizeof(float) * (size_t)n * V);
        assert_int_equal(ref_forward(m, seq, n, 0, full, 1, &e), 0);
        ref_reset(m);
        for (int t = 0; t < n; t++) assert_int_equal(ref_forward(m, &seq[t], 1, t, step + (size_t)t * V, 0, &e), 0);
        double md = 0;
        for (size_t i = 0; i < (size_t)n * V; i++) md = fmax(md, fabs((double)full[i] - step[i]));
        /* chunked prefill: 10 tokens, then chunks of 7, reusing the cache */
        ref_reset(m);
        for (int t = 0; t < n;) {
            int k = t == 0 ? 10 : (n - t < 7 ? n - t : 7);
            assert_int_equal(ref_forward(m, &seq[t], k, t, step + (size_t)t * V, 1, &e), 0);
            t += k;
        }
        double mc = 0;
        for (size_t i = 0; i < (size_t)n * V; i++) mc = fmax(mc, fabs((double)full[i] - step[i]));
        print_message("%-24s incremental vs full %.2e, chunked vs full %.2e (%d positions)\n", cases[c], md, mc, n);
        assert_true(md < 1e-4);
        assert_true(mc < 1e-4);
        free(full);
        free(step);
        free_expected(&x);
        ref_free(m);
    }
}

/* Rewinding: running position 5 again replaces the cache from there on. */
static void test_rewind_replaces_cache(void **state) {
    (void)state;
    RefModel *m = load_case("gemma3_text_sliding", REF_FP32);
    int V = ref_arch(m)->vocab;
    int a[12] = {2, 5, 9, 33, 100, 7, 8, 9, 10, 11, 12, 13}, b[12];
    memcpy(b, a, sizeof a);
    b[5] = 200;
    Err e = {0};
    float *la = xmalloc(sizeof(float) * V), *lb = xmalloc(sizeof(float) * V);
    assert_int_equal(ref_forward(m, b, 12, 0, lb, 0, &e), 0);
    ref_reset(m);
    assert_int_equal(ref_forward(m, a, 12, 0, la, 0, &e), 0);
    assert_int_equal(ref_forward(m, b + 5, 7, 5, la, 0, &e), 0);
    for (int i = 0; i < V; i++) assert_true(fabsf(la[i] - lb[i]) < 1e-4f);
    assert_int_equal(ref_forward(m, a, 1, 13, la, 0, &e), -1);
    assert_non_null(strstr(e.msg, "not next to the cached positions"));
    int bad = V;
    assert_int_equal(ref_forward(m, &bad, 1, 0, la, 0, &e), -1);
    assert_non_null(strstr(e.msg, "outside the vocabulary"));
    free(la);
    free(lb);
    ref_free(m);
}

/* fp16_overflow: float32 residual peaks as HF measured them; with fp16 rounding the residual
 * overflows first at layer 1 after the attention add, as HF's float16 run does. */
static void test_fp16_overflow_statistics(void **state) {
    (void)state;
    char *dir = xasprintf("%s/refvectors/fp16_overflow", data_dir());
    Expected x;
    load_expected(dir, &x);
    free(dir);
    const cJSON *detail = cJSON_GetObjectItem(x.root, "residual_peaks_detail");
    const cJSON *after_attn = cJSON_GetObjectItem(detail, "after_attention");
    const cJSON *after_mlp = cJSON_GetObjectItem(detail, "after_mlp");
    assert_non_null(after_attn);
    Err e = {0};

    RefModel *m = load_case("fp16_overflow", REF_FP32);
    RefStats *st = ref_stats_new(m);
    ref_set_stats(m, st);
    float *logits = xmalloc(sizeof(float) * ref_arch(m)->vocab);
    assert_int_equal(ref_forward(m, x.prompt, x.n_prompt, 0, logits, 0, &e), 0);
    for (int l = 0; l < 3; l++) {
        double want_a = cJSON_GetArrayItem(after_attn, l)->valuedouble;
        double want_m = cJSON_GetArrayItem(after_mlp, l)->valuedouble;
        print_message("layer %d residual peak after attention %.0f (HF %.0f), after mlp %.0f (HF %.0f)\n", l,
                      st->layers[l].resid_after_attn, want_a, st->layers[l].resid_after_mlp, want_m);
        assert_true(fabs(st->layers[l].resid_after_attn - want_a) <= 1e-3 * want_a + 1);
        assert_true(fabs(st->layers[l].resid_after_mlp - want_m) <= 1e-3 * want_m + 1);
    }
    assert_string_equal(st->first_nonfinite, "");
    print_message("fp32 mode: first value beyond the fp16 range at \"%s\"\n", st->first_overflow);
    assert_true(st->first_overflow[0] != 0);
    ref_stats_free(st);
    ref_free(m);

    m = load_case("fp16_overflow", REF_FP16);
    st = ref_stats_new(m);
    ref_set_stats(m, st);
    assert_int_equal(ref_forward(m, x.prompt, x.n_prompt, 0, logits, 0, &e), 0);
    print_message("fp16 mode: first non-finite at \"%s\", layer 0 peak %.0f\n", st->first_nonfinite,
                  st->layers[0].resid_after_mlp);
    assert_string_equal(st->first_nonfinite, "layer 1 residual after attention");
    assert_true(isfinite(st->layers[0].resid_after_mlp));
    assert_false(isfinite(logits[0]) && isfinite(logits[1]));
    ref_stats_free(st);
    ref_free(m);
    free(logits);
    free_expected(&x);
}

/* The residual clamp (the preflight's sweep): with +-55000 after every residual add the fp16
 * run of fp16_overflow stays finite and the peaks respect the clamp. */
static void test_residual_clamp(void **state) {
    (void)state;
    char *dir = xasprintf("%s/refvectors/fp16_overflow", data_dir());
    Expected x;
    load_expected(dir, &x);
    RefModel *m;
    Err e = {0};
    RefOptions opt = {.precision = REF_FP16, .residual_clamp = 55000};
    if (ref_load(&m, dir, &opt, &e) < 0) fail_msg("%s", e.msg);
    free(dir);
    RefStats *st = ref_stats_new(m);
    ref_set_stats(m, st);
    int V = ref_arch(m)->vocab;
    float *logits = xmalloc(sizeof(float) * V);
    assert_int_equal(ref_forward(m, x.prompt, x.n_prompt, 0, logits, 0, &e), 0);
    float peak = 0;
    for (int l = 0; l < 3; l++) peak = fmaxf(peak, fmaxf(st->layers[l].resid_after_attn, st->layers[l].resid_after_mlp));
    print_message("fp16 with clamp 55000: residual peak %.0f, first non-finite \"%s\", greedy id %d (fp32: %d)\n", peak,
                  st->first_nonfinite, ref_argmax(logits, V), x.generated[0]);
    assert_true(peak <= round_f16(55000.0f)); /* the clamp bound itself is an fp16 value: 55008 */
    assert_string_equal(st->first_nonfinite, "");
    for (int i = 0; i < V; i++) assert_true(isfinite(logits[i]));
    ref_stats_free(st);
    ref_free(m);
    free(logits);
    free_expected(&x);
}

static void test_top_k(void **state) {
    (void)state;
    float v[8] = {0.5f, 3.0f, -1.0f, 3.0f, 2.0f, 7.0f, 0.0f, 2.5f};
    int ids[3];
    float vals[3];
    ref_top_k(v, 8, 3, ids, vals);
    assert_int_equal(ids[0], 5);
    assert_int_equal(ids[1], 1); /* tie with 3: lower index first */
    assert_int_equal(ids[2], 3);
    assert_int_equal(ref_argmax(v, 8), 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refvectors),
        cmocka_unit_test(test_incremental_equals_full),
        cmocka_unit_test(test_rewind_replaces_cache),
        cmocka_unit_test(test_fp16_overflow_statistics),
        cmocka_unit_test(test_residual_clamp),
        cmocka_unit_test(test_top_k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
