/* The fp16 preflight and Gemma 3 residual scaling: the numbers Hugging Face measured on
 * refvectors/fp16_overflow, the scaling transformation (float32 logits unchanged, fp16 finite and
 * matching), --fp16-scale auto, the weight statistics, the report's keys, and errors. */
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
#include "io/checkpoint.h"
#include "io/json.h"
#include "io/st_writer.h"
#include "model/fp16_scale.h"
#include "model/preflight.h"
#include "model/reference.h"

static char tmpdir[512];

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TEST_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/preflight.XXXXXX", base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(tmpdir);
    return 0;
}

static char *case_dir(const char *name) {
    const char *d = getenv("ANEMLL_TEST_DATA");
    return xasprintf("%s/refvectors/%s", d ? d : "tests/data", name);
}

/* ==== expected.json ======================================================= */

typedef struct Expected {
    int prompt[64], n_prompt;
    int generated[64], n_generated;
    float *logits; /* [n_prompt][vocab] */
    int vocab;
    cJSON *root;
} Expected;

static void int_list(const cJSON *arr, int *out, int *n) {
    *n = 0;
    for (const cJSON *it = arr ? arr->child : NULL; it && *n < 64; it = it->next) out[(*n)++] = it->valueint;
}

static void load_expected(const char *name, Expected *x) {
    memset(x, 0, sizeof *x);
    char *dir = case_dir(name), *path = path_join(dir, "expected.json");
    Err e = {0};
    if (json_read_file(path, 1 << 24, &x->root, &e) < 0) fail_msg("%s", e.msg);
    free(path);
    free(dir);
    int_list(cJSON_GetObjectItem(x->root, "prompt_ids"), x->prompt, &x->n_prompt);
    int_list(cJSON_GetObjectItem(x->root, "generated_ids"), x->generated, &x->n_generated);
    const cJSON *rows = cJSON_GetObjectItem(x->root, "logits");
    x->vocab = cJSON_GetArraySize(rows->child);
    x->logits = xmalloc(sizeof(float) * (size_t)x->n_prompt * x->vocab);
    int r = 0;
    for (const cJSON *row = rows->child; row; row = row->next, r++) {
        int c = 0;
        for (const cJSON *v = row->child; v; v = v->next, c++) x->logits[(size_t)r * x->vocab + c] = (float)v->valuedouble;
    }
}

static void free_expected(Expected *x) {
    free(x->logits);
    cJSON_Delete(x->root);
}

static double expected_number(const Expected *x, const char *a, const char *b, int i) {
    const cJSON *o = cJSON_GetObjectItem(x->root, a);
    if (b) o = cJSON_GetObjectItem(o, b);
    if (i >= 0) o = cJSON_GetArrayItem(o, i);
    if (!cJSON_IsNumber(o)) fail_msg("expected.json has no number %s.%s[%d]", a, b ? b : "", i);
    return o->valuedouble;
}

static int near(double got, double want, double rel) { return fabs(got - want) <= rel * fabs(want); }

static Preflight *run_case(const char *name, const int *prompt, int n, int max_tokens, int sweep, double scale) {
    char *dir = case_dir(name);
    PreflightOptions opt = {.prompt = prompt, .n_prompt = n, .max_tokens = max_tokens, .sweep = sweep, .fp16_scale = scale};
    Preflight *p;
    Err e = {0};
    if (preflight_run(&p, dir, &opt, &e) < 0) fail_msg("%s: %s", name, e.msg);
    free(dir);
    return p;
}

/* ==== the overflow case =================================================== */

/* fp16_overflow: float32 peaks and greedy ids as Hugging Face measured them; fp16 breaks first at
 * "layer 1 residual after attention"; alpha = 50000 / 93171 makes the fp16 run finite and every
 * greedy token equal to float32's; the clamp sweep engages at every value. */
static void test_fp16_overflow_case(void **state) {
    (void)state;
    Expected x;
    load_expected("fp16_overflow", &x);
    Preflight *p = run_case("fp16_overflow", x.prompt, x.n_prompt, x.n_generated, 1, 0);

    for (int i = 0; i < x.n_generated; i++) assert_int_equal(p->fp32.tokens[i], x.generated[i]);
    const RefStats *s = p->fp32.stats;
    for (int l = 0; l < 3; l++) {
        double attn = expected_number(&x, "residual_peaks_detail", "after_attention", l);
        double mlp = expected_number(&x, "residual_peaks_detail", "after_mlp", l);
        print_message("layer %d: residual after attention %.1f (HF %.1f), after mlp %.1f (HF %.1f)\n", l,
                      s->layers[l].resid_after_attn, attn, s->layers[l].resid_after_mlp, mlp);
        /* HF measured the prompt only; the 12 generated tokens may only raise the peaks */
        assert_true(s->layers[l].resid_after_attn >= attn * (1 - 1e-4));
        assert_true(s->layers[l].resid_after_mlp >= mlp * (1 - 1e-4));
    }
    double peak = 0;
    for (int l = 0; l < 3; l++) peak = fmax(peak, expected_number(&x, "residual_peaks", NULL, l));
    assert_true(near(p->residual_peak, peak, 1e-3));
    assert_true(p->first_overflow_layer == 1);
    assert_true(near(p->recommended_alpha, 50000.0 / p->residual_peak, 1e-9));
    assert_true(p->recommended_alpha > 0.5 && p->recommended_alpha < 0.56);
    assert_int_equal(p->scaling_supported, 1);

    const char *hf_first = cJSON_GetObjectItem(x.root, "fp16_first_nonfinite")->valuestring;
    assert_false(p->fp16.works);
    assert_string_equal(p->fp16.stats->first_nonfinite, hf_first);
    assert_string_equal(p->fp16.stats->first_overflow, hf_first);
    assert_true(p->fp16.stats->n_overflow_sites > 0);
    assert_string_equal(p->fp16.stats->overflow_sites[0].name, hf_first);
    assert_true(p->fp16_to_fp32.works && p->fp16_to_fp32.match_rate == 1);
    assert_true(p->bf16.works); /* bf16 has float32's range */

    assert_true(p->fp16_scaled.done && p->fp16_scaled.works);
    assert_true(p->fp16_scaled.match_rate == 1 && p->fp16_scaled.first_mismatch < 0);
    assert_true(p->fp16_scaled.residual_peak < 51000 && p->fp16_scaled.residual_peak > 45000);
    assert_true(near(p->scaled_alpha, p->recommended_alpha, 1e-12));

    assert_int_equal(p->n_clamps, PREFLIGHT_N_CLAMPS);
    for (int i = 0; i < p->n_clamps; i++) {
        const PreflightClamp *c = &p->clamps[i];
        assert_true(c->clamp == 65000 - 5000 * i);
        assert_false(c->reused); /* the unclamped fp16 run is not finite: every value is a real run */
        assert_true(c->n_clamped > 0);
        assert_true(c->run.match_rate >= 0 && c->run.match_rate <= 1);
        assert_true((c->run.first_mismatch < 0) == (c->run.match_rate == 1));
    }
    assert_false(p->compatible);
    assert_true(p->score == 0.7); /* fp16 weights work in float32 and the scaling fixes it */
    int mentions_auto = 0;
    for (int i = 0; i < p->n_recommendations; i++) mentions_auto |= strstr(p->recommendations[i], "--fp16-scale auto") != NULL;
    assert_true(mentions_auto);
    assert_true(p->n_issues >= 2);
    preflight_free(p);
    free_expected(&x);
}

/* The same model checked "as converted with --fp16-scale alpha": compatible, exit-0 material. */
static void test_scaled_model_is_compatible(void **state) {
    (void)state;
    Expected x;
    load_expected("fp16_overflow", &x);
    Fp16Alpha fa;
    Err e = {0};
    char *dir = case_dir("fp16_overflow");
    assert_int_equal(preflight_measure_alpha(dir, x.prompt, x.n_prompt, 0, &fa, &e), 0);
    free(dir);
    print_message("auto: peak %.1f at %s, alpha %.6f\n", fa.peak, fa.peak_at, fa.alpha);
    double hf_peak = expected_number(&x, "residual_peaks_detail", "after_attention", 2);
    assert_true(near(fa.peak, hf_peak, 1e-4));
    assert_string_equal(fa.peak_at, "layer 2 residual after attention");
    assert_true(fa.needs_scaling && near(fa.alpha, 50000.0 / fa.peak, 1e-9));

    Preflight *p = run_case("fp16_overflow", x.prompt, x.n_prompt, x.n_generated, 1, fa.alpha);
    assert_true(p->compatible && p->score == 1.0);
    assert_true(p->fp16.works && p->fp16.match_rate == 1);
    for (int i = 0; i < x.n_generated; i++) assert_int_equal(p->fp16.tokens[i], x.generated[i]);
    assert_false(p->fp16_scaled.done); /* already scaled */
    assert_true(p->residual_peak < 50100 && p->residual_peak > 49900); /* prompt + 12 tokens: the peak is the prompt's */
    assert_true(near(p->recommended_alpha, 1, 0.01));
    /* clamps at or above the scaled peak cannot engage: reused, identical to the fp16 run */
    for (int i = 0; i < p->n_clamps; i++) {
        const PreflightClamp *c = &p->clamps[i];
        assert_int_equal(c->reused, c->clamp >= p->fp16.residual_peak);
        if (c->reused) assert_memory_equal(c->run.tokens, p->fp16.tokens, sizeof(int) * (size_t)p->max_tokens);
        else assert_true(c->n_clamped > 0);
    }
    preflight_free(p);
    free_expected(&x);
}

/* ==== the scaling transformation ========================================== */

static float *all_logits(const char *name, RefOptions opt, const int *ids, int n, RefStats **stats_out) {
    char *dir = case_dir(name);
    RefModel *m;
    Err e = {0};
    if (ref_load(&m, dir, &opt, &e) < 0) fail_msg("%s", e.msg);
    free(dir);
    RefStats *st = ref_stats_new(m);
    ref_set_stats(m, st);
    float *l = xmalloc(sizeof(float) * (size_t)n * ref_arch(m)->vocab);
    assert_int_equal(ref_forward(m, ids, n, 0, l, 1, &e), 0);
    if (stats_out) *stats_out = st;
    else ref_stats_free(st);
    ref_free(m);
    return l;
}

/* Scaling by alpha multiplies the float32 residual stream by alpha and leaves the logits alone
 * (up to the rounding of the scaled weights and the norms' eps); in fp16 the scaled model is
 * finite and within fp16 precision of Hugging Face's float32 logits at all 24 positions, and its
 * greedy continuation is Hugging Face's. */
static void test_scaling_is_exact(void **state) {
    (void)state;
    Expected x;
    load_expected("fp16_overflow", &x);
    int n = x.n_prompt, V = x.vocab;
    const float alpha = 0.5f;
    RefStats *s0, *s1, *s16;
    float *plain = all_logits("fp16_overflow", (RefOptions){.precision = REF_FP32}, x.prompt, n, &s0);
    float *scaled = all_logits("fp16_overflow", (RefOptions){.precision = REF_FP32, .fp16_scale = alpha}, x.prompt, n, &s1);
    float *half = all_logits("fp16_overflow", (RefOptions){.precision = REF_FP16, .fp16_scale = alpha}, x.prompt, n, &s16);
    double d32 = 0, d16 = 0, dhf = 0;
    int finite = 1;
    for (size_t i = 0; i < (size_t)n * V; i++) {
        d32 = fmax(d32, fabs((double)plain[i] - scaled[i]));
        finite &= isfinite(half[i]);
        d16 = fmax(d16, fabs((double)plain[i] - half[i]));
        dhf = fmax(dhf, fabs((double)x.logits[i] - half[i]));
    }
    for (int l = 0; l < 3; l++) {
        assert_true(near(s1->layers[l].resid_after_attn, alpha * s0->layers[l].resid_after_attn, 1e-5));
        assert_true(near(s1->layers[l].resid_after_mlp, alpha * s0->layers[l].resid_after_mlp, 1e-5));
    }
    print_message("scaled vs unscaled float32 logits %.2e; scaled fp16 vs float32 %.2e, vs HF %.2e; fp16 peak %.0f\n",
                  d32, d16, dhf, fmaxf(s16->layers[2].resid_after_attn, s16->layers[2].resid_after_mlp));
    assert_true(d32 < 1e-4);
    assert_true(finite && s16->first_nonfinite[0] == 0);
    assert_true(d16 < 0.01 && dhf < 0.01); /* |logits| < 1.7 (fp16 ulp 0.001): a few ulps after 3 layers */
    /* without the scaling the same fp16 run is not finite */
    RefStats *sbad;
    float *bad = all_logits("fp16_overflow", (RefOptions){.precision = REF_FP16}, x.prompt, n, &sbad);
    assert_true(sbad->first_nonfinite[0] != 0);

    /* greedy continuation of the scaled fp16 model, one token at a time through the cache */
    char *dir = case_dir("fp16_overflow");
    RefModel *m;
    Err e = {0};
    RefOptions o16 = {.precision = REF_FP16, .fp16_scale = alpha};
    assert_int_equal(ref_load(&m, dir, &o16, &e), 0);
    float *l = xmalloc(sizeof(float) * V);
    assert_int_equal(ref_forward(m, x.prompt, n, 0, l, 0, &e), 0);
    for (int g = 0; g < x.n_generated; g++) {
        int id = ref_argmax(l, V);
        assert_int_equal(id, x.generated[g]);
        assert_int_equal(ref_forward(m, &id, 1, n + g, l, 0, &e), 0);
    }
    ref_free(m);
    free(dir);
    free(l);
    free(plain), free(scaled), free(half), free(bad);
    ref_stats_free(s0), ref_stats_free(s1), ref_stats_free(s16), ref_stats_free(sbad);
    free_expected(&x);
}

/* Tied embeddings (gemma3_text_sliding ties them): the LM head keeps the unscaled table, so the
 * logits do not shrink by alpha. */
static void test_scaling_keeps_tied_lm_head(void **state) {
    (void)state;
    Expected x;
    load_expected("gemma3_text_sliding", &x);
    float *plain = all_logits("gemma3_text_sliding", (RefOptions){0}, x.prompt, x.n_prompt, NULL);
    float *scaled = all_logits("gemma3_text_sliding", (RefOptions){.fp16_scale = 0.25f}, x.prompt, x.n_prompt, NULL);
    double d = 0;
    for (size_t i = 0; i < (size_t)x.n_prompt * x.vocab; i++) d = fmax(d, fabs((double)plain[i] - scaled[i]));
    print_message("tied gemma3, alpha 0.25: max |dlogit| %.2e\n", d);
    assert_true(d < 1e-4);
    free(plain), free(scaled);
    free_expected(&x);
}

static void test_scale_rules(void **state) {
    (void)state;
    Arch gemma = {.sandwich_norms = 1, .family = FAMILY_GEMMA3}, llama = {.family = FAMILY_LLAMA};
    strcpy(gemma.model_type, "gemma3_text");
    strcpy(llama.model_type, "llama");
    Err e = {0};
    assert_int_equal(fp16_scale_check(&gemma, 0.5, &e), 0);
    assert_int_equal(fp16_scale_check(&gemma, 1, &e), 0);
    double bad[] = {0, -0.5, 1.0001, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(fp16_scale_check(&gemma, bad[i], &e), -1);
        assert_non_null(strstr(e.msg, "(0, 1]"));
    }
    assert_int_equal(fp16_scale_check(&llama, 0.5, &e), -1);
    assert_non_null(strstr(e.msg, "Gemma 3"));
    assert_non_null(strstr(e.msg, "'llama'"));

    double a = -1;
    int is_auto;
    assert_int_equal(fp16_scale_parse("auto", &a, &is_auto, &e), 0);
    assert_true(is_auto && a == -1);
    assert_int_equal(fp16_scale_parse("0.1875", &a, &is_auto, &e), 0);
    assert_true(!is_auto && a == 0.1875);
    const char *nots[] = {"", "0", "1.5", "-0.2", "x", "0.5x", "nan", "Auto"};
    for (size_t i = 0; i < sizeof nots / sizeof nots[0]; i++) {
        assert_int_equal(fp16_scale_parse(nots[i], &a, &is_auto, &e), -1);
        assert_non_null(strstr(e.msg, "--fp16-scale"));
    }

    float w[3] = {0, 11999, -1}, emb[2] = {2, -4};
    fp16_scale_norm_gain(w, 3, 0.5f);
    assert_true(w[0] == -0.5f && w[1] == 5999.0f && w[2] == -1.0f); /* gain (1+w): 1 -> 0.5, 12000 -> 6000, 0 -> 0 */
    fp16_scale_embeddings(emb, 2, 0.25f);
    assert_true(emb[0] == 0.5f && emb[1] == -1.0f);
    assert_true(fp16_scale_changes_layer_weight(W_POST_ATTN_NORM) && fp16_scale_changes_layer_weight(W_POST_MLP_NORM));
    assert_false(fp16_scale_changes_layer_weight(W_MLP_NORM) || fp16_scale_changes_layer_weight(W_ATTN_NORM));

    /* the reference refuses scaling where it is not valid */
    char *dir = case_dir("llama_rope_llama3");
    RefModel *m;
    RefOptions o = {.fp16_scale = 0.5f};
    assert_int_equal(ref_load(&m, dir, &o, &e), -1);
    assert_non_null(strstr(e.msg, "Gemma 3"));
    free(dir);
}

/* ==== --fp16-scale auto =================================================== */

static void test_measure_alpha(void **state) {
    (void)state;
    Expected x;
    load_expected("gemma3_text_sliding", &x);
    Fp16Alpha fa;
    Err e = {0};
    char *dir = case_dir("gemma3_text_sliding");
    assert_int_equal(preflight_measure_alpha(dir, x.prompt, x.n_prompt, 4, &fa, &e), 0);
    print_message("gemma3_text_sliding: peak %.3f at %s -> alpha %g\n", fa.peak, fa.peak_at, fa.alpha);
    assert_true(fa.alpha == 1 && !fa.needs_scaling && fa.peak > 0 && fa.peak < 50000);
    int bad = x.vocab;
    assert_int_equal(preflight_measure_alpha(dir, &bad, 1, 4, &fa, &e), -1);
    assert_non_null(strstr(e.msg, "outside the vocabulary"));
    assert_int_equal(preflight_measure_alpha(dir, x.prompt, x.n_prompt, -1, &fa, &e), -1);
    free(dir);
    free_expected(&x);

    load_expected("llama_rope_llama3", &x);
    dir = case_dir("llama_rope_llama3");
    assert_int_equal(preflight_measure_alpha(dir, x.prompt, x.n_prompt, 4, &fa, &e), -1);
    assert_non_null(strstr(e.msg, "only exact for Gemma 3"));
    free(dir);
    free_expected(&x);

    Arch a = {.vocab = 320, .bos_id = 2};
    int ids[20];
    int n = preflight_fallback_prompt(&a, ids, 20);
    assert_int_equal(n, 16);
    assert_int_equal(ids[0], 2);
    for (int i = 0; i < n; i++) assert_true(ids[i] >= 0 && ids[i] < 320);
    assert_int_equal(preflight_fallback_prompt(&a, ids, 3), 3);
}

/* ==== a model that is fine ================================================ */

/* A llama: compatible, alpha 1, every clamp value reused - and a reused entry equals a real
 * clamped run (the shortcut is sound). */
static void test_llama_is_compatible(void **state) {
    (void)state;
    Expected x;
    load_expected("llama_rope_llama3", &x);
    Preflight *p = run_case("llama_rope_llama3", x.prompt, x.n_prompt, 8, 1, 0);
    assert_true(p->compatible && p->score == 1.0 && p->fp16.works && p->fp16.match_rate == 1);
    assert_true(p->bf16.works && p->fp16_to_fp32.works);
    assert_true(p->recommended_alpha == 1 && !p->scaling_supported && !p->fp16_scaled.done);
    assert_int_equal(p->first_overflow_layer, -1);
    assert_int_equal(p->n_issues, 0);
    assert_int_equal(p->fp16.stats->n_overflow_sites, 0);
    for (int i = 0; i < 8; i++) assert_int_equal(p->fp32.tokens[i], x.generated[i]);
    for (int i = 0; i < p->n_clamps; i++) assert_true(p->clamps[i].reused && p->clamps[i].run.match_rate == 1);

    char *dir = case_dir("llama_rope_llama3");
    RefModel *m;
    Err e = {0};
    RefOptions o = {.precision = REF_FP16, .residual_clamp = 20000};
    assert_int_equal(ref_load(&m, dir, &o, &e), 0);
    float *l = xmalloc(sizeof(float) * x.vocab);
    assert_int_equal(ref_forward(m, x.prompt, x.n_prompt, 0, l, 0, &e), 0);
    for (int g = 0; g < 8; g++) {
        int id = ref_argmax(l, x.vocab);
        assert_int_equal(id, p->clamps[PREFLIGHT_N_CLAMPS - 1].run.tokens[g]);
        assert_int_equal(ref_forward(m, &id, 1, x.n_prompt + g, l, 0, &e), 0);
    }
    /* bf16 mode: every logit is a bf16 value, and not all equal float32's */
    RefModel *mb;
    RefOptions ob = {.precision = REF_BF16};
    assert_int_equal(ref_load(&mb, dir, &ob, &e), 0);
    assert_int_equal(ref_forward(mb, x.prompt, x.n_prompt, 0, l, 0, &e), 0);
    int differs = 0;
    for (int i = 0; i < x.vocab; i++) {
        assert_true(bf16_to_f32(f32_to_bf16(l[i])) == l[i]);
        differs |= fabsf(l[i] - x.logits[(size_t)(x.n_prompt - 1) * x.vocab + i]) > 1e-3f;
    }
    assert_true(differs);
    ref_free(mb);
    ref_free(m);
    free(l);
    free(dir);
    preflight_free(p);
    free_expected(&x);
}

/* ==== weights ============================================================= */

/* Max |w| per tensor as read independently; total_params = values in the text model's tensors. */
static void test_weight_statistics(void **state) {
    (void)state;
    Expected x;
    load_expected("fp16_overflow", &x);
    Preflight *p = run_case("fp16_overflow", x.prompt, 4, 1, 0, 0);
    char *dir = case_dir("fp16_overflow");
    Checkpoint *ck;
    Err e = {0};
    assert_int_equal(ckpt_open(&ck, dir, &e), 0);
    uint64_t total = 0;
    float global = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        const StTensor *t = ckpt_find(ck, p->tensor_names[i]);
        assert_non_null(t);
        float *buf = xmalloc(sizeof(float) * t->numel), mx = 0;
        assert_int_equal(st_read_f32(t, buf, &e), 0);
        for (size_t k = 0; k < t->numel; k++) mx = fmaxf(mx, fabsf(buf[k]));
        assert_true(mx == p->tensor_max_abs[i]);
        global = fmaxf(global, mx);
        total += t->numel;
        free(buf);
    }
    assert_int_equal(p->n_tensors, (int)ck->n_tensors); /* text-only, tied: every tensor once */
    assert_true(p->weight_max_abs == global && p->tensor_max_abs[p->weight_max_tensor] == global);
    assert_true(p->total_params == total);
    assert_int_equal(p->n_weights_exceed_fp16, 0);
    ckpt_close(ck);
    free(dir);
    preflight_free(p);
    free_expected(&x);
}

/* A checkpoint with one weight beyond the fp16 range: counted, named, an issue. */
static void test_weight_beyond_fp16(void **state) {
    (void)state;
    char *src = case_dir("llama_rope_llama3"), *dst = path_join(tmpdir, "big_weight");
    Err e = {0};
    assert_int_equal(mkdir_p(dst, &e), 0);
    char *cfg_src = path_join(src, "config.json"), *cfg_dst = path_join(dst, "config.json"), *text;
    size_t len;
    assert_int_equal(file_read_all(cfg_src, 1 << 20, &text, &len, &e), 0);
    assert_int_equal(file_write_atomic(cfg_dst, text, len, &e), 0);
    free(text), free(cfg_src), free(cfg_dst);

    Checkpoint *ck;
    assert_int_equal(ckpt_open(&ck, src, &e), 0);
    StWriteSpec *specs = xcalloc(ck->n_tensors, sizeof *specs);
    for (size_t i = 0; i < ck->n_tensors; i++) {
        const StTensor *t = ck->tensors[i];
        specs[i] = (StWriteSpec){.name = t->name, .dtype = ST_F32, .ndim = t->ndim};
        memcpy(specs[i].shape, t->shape, sizeof t->shape);
    }
    char *file = path_join(dst, "model.safetensors");
    StWriter *w;
    assert_int_equal(st_writer_open(&w, file, specs, ck->n_tensors, &e), 0);
    const char *victim = "model.layers.0.mlp.up_proj.weight";
    for (size_t i = 0; i < ck->n_tensors; i++) {
        const StTensor *t = ck->tensors[i];
        float *buf = xmalloc(sizeof(float) * t->numel);
        assert_int_equal(st_read_f32(t, buf, &e), 0);
        if (!strcmp(t->name, victim)) buf[7] = -70000;
        assert_int_equal(st_writer_write(w, buf, sizeof(float) * t->numel, &e), 0);
        free(buf);
    }
    assert_int_equal(st_writer_finish(w, &e), 0);
    ckpt_close(ck);
    free(specs), free(file);

    int ids[4] = {1, 2, 3, 4};
    PreflightOptions opt = {.prompt = ids, .n_prompt = 4, .max_tokens = 2};
    Preflight *p;
    if (preflight_run(&p, dst, &opt, &e) < 0) fail_msg("%s", e.msg);
    assert_int_equal(p->n_weights_exceed_fp16, 1);
    assert_true(p->weight_max_abs == 70000);
    assert_string_equal(p->tensor_names[p->weight_max_tensor], victim);
    assert_true(p->n_issues >= 1 && strstr(p->issues[0], victim) && strstr(p->issues[0], "65504"));
    assert_true(!p->fp16.works && !p->fp16_to_fp32.works); /* the weight is inf in fp16 */
    assert_true(p->fp32.works && p->bf16.works);
    preflight_free(p);
    free(src), free(dst);
}

/* ==== the report ========================================================== */

static char *fake_decode(void *ctx, const int *ids, int n) {
    (*(int *)ctx)++;
    return xasprintf("<%d tokens from %d>", n, ids[0]);
}

static const cJSON *need(const cJSON *o, const char *key, int (*is)(const cJSON *)) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || !is(v)) fail_msg("report: key '%s' missing or of the wrong type", key);
    return v;
}

static int is_bool(const cJSON *v) { return cJSON_IsBool(v); }
static int is_number(const cJSON *v) { return cJSON_IsNumber(v); }
static int is_string(const cJSON *v) { return cJSON_IsString(v); }
static int is_array(const cJSON *v) { return cJSON_IsArray(v); }
static int is_object(const cJSON *v) { return cJSON_IsObject(v); }
static int is_string_or_null(const cJSON *v) { return cJSON_IsString(v) || cJSON_IsNull(v); }
static int is_number_or_null(const cJSON *v) { return cJSON_IsNumber(v) || cJSON_IsNull(v); }

/* Every documented key (ANEMLL's schema and ours) with its type, read back from the file. */
static void test_report_keys(void **state) {
    (void)state;
    Expected x;
    load_expected("fp16_overflow", &x);
    Preflight *p = run_case("fp16_overflow", x.prompt, x.n_prompt, 6, 1, 0);
    char *path = path_join(tmpdir, "deep/er/report.json");
    Err e = {0};
    int calls = 0;
    assert_int_equal(preflight_write_report(p, path, fake_decode, &calls, &e), 0);
    assert_true(calls > 0);
    cJSON *r;
    assert_int_equal(json_read_file(path, 1 << 24, &r, &e), 0);

    assert_string_equal(need(r, "model_id", is_string)->valuestring, p->model_dir);
    assert_true(need(r, "total_params", is_number)->valuedouble == (double)p->total_params);
    assert_true(near(need(r, "weight_max_abs", is_number)->valuedouble, p->weight_max_abs, 1e-6));
    need(r, "weight_max_layer", is_string);
    assert_int_equal(need(r, "weights_exceed_fp16", is_number)->valueint, 0);
    assert_true(cJSON_IsTrue(need(r, "bf16_works", is_bool)));
    assert_true(cJSON_IsFalse(need(r, "fp16_works", is_bool)));
    assert_true(cJSON_IsTrue(need(r, "fp16_to_fp32_works", is_bool)));
    assert_string_equal(need(r, "fp16_first_nan_layer", is_string_or_null)->valuestring, "layer 1 residual after attention");
    const cJSON *layers = need(r, "fp16_overflow_layers", is_array);
    assert_int_equal(cJSON_GetArraySize(layers), p->fp16.stats->n_overflow_sites);
    assert_string_equal(layers->child->valuestring, "layer 1 residual after attention");
    assert_true(cJSON_IsFalse(need(r, "ane_compatible", is_bool)));
    assert_true(need(r, "compatibility_score", is_number)->valuedouble == 0.7);
    assert_int_equal(cJSON_GetArraySize(need(r, "issues", is_array)), p->n_issues);
    assert_int_equal(cJSON_GetArraySize(need(r, "recommendations", is_array)), p->n_recommendations);
    const cJSON *sweep = need(r, "clamp_sweep", is_object);
    assert_int_equal(cJSON_GetArraySize(sweep), PREFLIGHT_N_CLAMPS);
    for (int i = 0, c = 65000; c >= 20000; c -= 5000, i++) {
        char key[16], text[64];
        snprintf(key, sizeof key, "%d", c);
        const cJSON *v = need(sweep, key, is_object);
        need(v, "success", is_bool);
        assert_true(cJSON_IsTrue(need(v, "clamped", is_bool)));
        double mr = need(v, "match_rate", is_number)->valuedouble;
        assert_true(mr >= 0 && mr <= 1);
        snprintf(text, sizeof text, "<6 tokens from %d>", p->clamps[i].run.tokens[0]);
        assert_string_equal(need(v, "output", is_string)->valuestring, text);
    }
    /* ours */
    assert_string_equal(need(r, "model_type", is_string)->valuestring, "gemma3_text");
    assert_true(cJSON_IsNull(need(r, "prompt", is_string_or_null)));
    const cJSON *ids = need(r, "prompt_ids", is_array);
    assert_int_equal(cJSON_GetArraySize(ids), x.n_prompt);
    for (int i = 0; i < x.n_prompt; i++) assert_int_equal(cJSON_GetArrayItem(ids, i)->valueint, x.prompt[i]);
    assert_int_equal(need(r, "max_tokens", is_number)->valueint, 6);
    assert_true(cJSON_IsNull(need(r, "fp16_scale", is_number_or_null)));
    const cJSON *runs = need(r, "runs", is_object);
    const char *run_names[] = {"fp32", "fp16", "fp16_to_fp32", "bf16", "fp16_scaled"};
    for (size_t i = 0; i < 5; i++) {
        const cJSON *run = need(runs, run_names[i], is_object);
        need(run, "works", is_bool);
        need(run, "match_rate", is_number);
        assert_int_equal(cJSON_GetArraySize(need(run, "tokens", is_array)), 6);
        need(run, "output", is_string);
        need(run, "residual_peak", is_number_or_null);
    }
    assert_true(near(need(need(runs, "fp16_scaled", is_object), "alpha", is_number)->valuedouble, p->recommended_alpha, 1e-6));
    assert_true(cJSON_IsNull(need(need(runs, "fp16", is_object), "residual_peak", is_number_or_null)));
    const cJSON *peaks = need(r, "residual_peaks", is_array);
    assert_int_equal(cJSON_GetArraySize(peaks), 3);
    for (int l = 0; l < 3; l++) {
        const cJSON *o = cJSON_GetArrayItem(peaks, l);
        assert_int_equal(need(o, "layer", is_number)->valueint, l);
        assert_true(near(need(o, "after_attention", is_number)->valuedouble,
                         expected_number(&x, "residual_peaks_detail", "after_attention", l), 1e-3));
        need(o, "after_mlp", is_number);
        need(o, "fp16_overflow_values", is_number);
    }
    assert_true(near(need(r, "residual_peak", is_number)->valuedouble, 93171, 1e-4));
    assert_string_equal(need(r, "residual_peak_at", is_string)->valuestring, "layer 2 residual after attention");
    assert_string_equal(need(r, "first_overflow", is_string_or_null)->valuestring, "layer 1 residual after attention");
    assert_int_equal(need(r, "first_overflow_layer", is_number_or_null)->valueint, 1);
    assert_true(near(need(r, "recommended_alpha", is_number)->valuedouble, 50000.0 / 93171, 1e-4));
    assert_true(cJSON_IsTrue(need(r, "fp16_scale_supported", is_bool)));
    assert_int_equal(cJSON_GetArraySize(need(r, "fp16_overflow_sites", is_array)), cJSON_GetArraySize(layers));
    assert_int_equal(cJSON_GetArraySize(need(r, "weight_max_abs_per_tensor", is_object)), p->n_tensors);
    const cJSON *th = need(r, "thresholds", is_object);
    assert_true(need(th, "fp16_max", is_number)->valuedouble == 65504);
    assert_true(need(th, "target_peak", is_number)->valuedouble == 50000);
    assert_int_equal(cJSON_GetArraySize(need(th, "clamp_values", is_array)), PREFLIGHT_N_CLAMPS);
    const cJSON *defs = need(r, "definitions", is_object);
    const char *documented[] = {"bf16_works", "fp16_works", "fp16_to_fp32_works", "ane_compatible",
                                "compatibility_score", "clamp_sweep", "recommended_alpha", "total_params"};
    for (size_t i = 0; i < sizeof documented / sizeof documented[0]; i++) need(defs, documented[i], is_string);

    /* without a decoder the output is the ids */
    cJSON *plain = preflight_report_json(p, NULL, NULL);
    const cJSON *out = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(plain, "runs"), "fp32"), "output");
    char want[128] = "";
    for (int i = 0; i < 6; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? "," : "", x.generated[i]);
    assert_string_equal(out->valuestring, want);
    cJSON_Delete(plain);
    cJSON_Delete(r);

    /* a report path whose folder cannot be made: an error naming it, nothing written */
    char *blocker = path_join(tmpdir, "file"), *under = path_join(tmpdir, "file/x/report.json");
    assert_int_equal(file_write_atomic(blocker, "x", 1, &e), 0);
    assert_int_equal(preflight_write_report(p, under, NULL, NULL, &e), -1);
    assert_non_null(strstr(e.msg, under));
    free(blocker), free(under), free(path);
    preflight_free(p);
    free_expected(&x);
}

/* ==== errors ============================================================== */

static void test_errors(void **state) {
    (void)state;
    char *dir = case_dir("fp16_overflow");
    int ids[3] = {2, 5, 7};
    Preflight *p = (Preflight *)1;
    Err e = {0};
    PreflightOptions o = {.prompt = ids, .n_prompt = 3, .max_tokens = 0};
    assert_int_equal(preflight_run(&p, dir, &o, &e), -1);
    assert_null(p);
    assert_non_null(strstr(e.msg, "max_tokens"));
    o.max_tokens = PREFLIGHT_MAX_TOKENS_LIMIT + 1;
    assert_int_equal(preflight_run(&p, dir, &o, &e), -1);
    o.max_tokens = 2;
    o.n_prompt = 0;
    assert_int_equal(preflight_run(&p, dir, &o, &e), -1);
    assert_non_null(strstr(e.msg, "no tokens"));
    int bad[2] = {2, 320};
    o = (PreflightOptions){.prompt = bad, .n_prompt = 2, .max_tokens = 2};
    assert_int_equal(preflight_run(&p, dir, &o, &e), -1);
    assert_non_null(strstr(e.msg, "320"));
    assert_non_null(strstr(e.msg, "0..319"));
    o = (PreflightOptions){.prompt = ids, .n_prompt = 3, .max_tokens = 2, .fp16_scale = 1.5};
    assert_int_equal(preflight_run(&p, dir, &o, &e), -1);
    assert_non_null(strstr(e.msg, "(0, 1]"));
    o.fp16_scale = 0;
    char *missing = path_join(tmpdir, "no_such_model");
    assert_int_equal(preflight_run(&p, missing, &o, &e), -1);
    assert_non_null(strstr(e.msg, "config.json"));
    char *llama = case_dir("llama_rope_llama3");
    o.fp16_scale = 0.5;
    assert_int_equal(preflight_run(&p, llama, &o, &e), -1);
    assert_non_null(strstr(e.msg, "only exact for Gemma 3"));
    free(llama), free(missing), free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_overflow_case),
        cmocka_unit_test(test_scaled_model_is_compatible),
        cmocka_unit_test(test_scaling_is_exact),
        cmocka_unit_test(test_scaling_keeps_tied_lm_head),
        cmocka_unit_test(test_scale_rules),
        cmocka_unit_test(test_measure_alpha),
        cmocka_unit_test(test_llama_is_compatible),
        cmocka_unit_test(test_weight_statistics),
        cmocka_unit_test(test_weight_beyond_fp16),
        cmocka_unit_test(test_report_keys),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
