/* preflight.c - the fp16 preflight (contract and definitions in preflight.h).
 *
 * Sections: weights, greedy runs, the residual stream, the verdict, the report, --fp16-scale auto.
 */
#include "model/preflight.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "common/util.h"
#include "io/checkpoint.h"

/* ==== weights ============================================================= */

#define WEIGHT_BLOCK_VALUES ((size_t)1 << 20) /* floats read at a time: 4 MB */

/* max |w| of one tensor, read a block of rows at a time (a 1 GB table never sits in memory). */
static int tensor_max_abs(const StTensor *t, float *buf, float *out, Err *e) {
    size_t row = st_row_numel(t), rows = st_rows(t);
    size_t per = row >= WEIGHT_BLOCK_VALUES ? 1 : WEIGHT_BLOCK_VALUES / row;
    float mx = 0;
    for (size_t r0 = 0; r0 < rows; r0 += per) {
        size_t n = rows - r0 < per ? rows - r0 : per;
        if (st_read_rows_f32(t, r0, n, buf, e) < 0) return -1;
        for (size_t i = 0; i < n * row; i++) {
            float v = fabsf(buf[i]);
            if (!(v <= mx)) mx = isnan(v) ? INFINITY : v;
        }
    }
    *out = mx;
    return 0;
}

static int analyse_weights(Preflight *p, Err *e) {
    ArchTensor *list;
    int n;
    arch_tensor_list(&p->arch, &list, &n);
    Checkpoint *ck;
    if (ckpt_open(&ck, p->model_dir, e) < 0) {
        arch_free_tensor_list(list);
        return -1;
    }
    p->n_tensors = n;
    p->tensor_names = xcalloc((size_t)n, sizeof *p->tensor_names);
    p->tensor_max_abs = xcalloc((size_t)n, sizeof *p->tensor_max_abs);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        snprintf(p->tensor_names[i], sizeof p->tensor_names[i], "%s", list[i].name);
        const StTensor *t = ckpt_require(ck, list[i].name, e);
        size_t block = t && st_row_numel(t) > WEIGHT_BLOCK_VALUES ? st_row_numel(t) : WEIGHT_BLOCK_VALUES;
        float *buf = t ? xmalloc(sizeof *buf * block) : NULL;
        if (!t || tensor_max_abs(t, buf, &p->tensor_max_abs[i], e) < 0) rc = -1;
        free(buf);
        if (rc < 0) break;
        p->total_params += t->numel;
        if (!(p->tensor_max_abs[i] <= FP16_MAX)) p->n_weights_exceed_fp16++;
        if (i == 0 || !(p->tensor_max_abs[i] <= p->weight_max_abs)) {
            p->weight_max_abs = p->tensor_max_abs[i];
            p->weight_max_tensor = i;
        }
    }
    ckpt_close(ck);
    arch_free_tensor_list(list);
    return rc;
}

/* ==== greedy runs ========================================================= */

/* Largest |x| of the residual stream in the statistics, and where it is. */
static float residual_peak(const RefStats *s, char *where, size_t n) {
    float best = s->embed_peak;
    if (where) snprintf(where, n, "embeddings");
    for (int l = 0; l < s->n_layers; l++) {
        const RefLayerStats *ls = &s->layers[l];
        if (!(ls->resid_after_attn <= best)) {
            best = ls->resid_after_attn;
            if (where) snprintf(where, n, "layer %d residual after attention", l);
        }
        if (!(ls->resid_after_mlp <= best)) {
            best = ls->resid_after_mlp;
            if (where) snprintf(where, n, "layer %d residual after mlp", l);
        }
    }
    return best;
}

static int all_finite(const float *v, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* Prefill, then max_tokens greedy steps on a loaded model whose statistics are run->stats. */
static int generate(RefModel *m, const int *prompt, int n_prompt, int max_tokens, PreflightRun *run, Err *e) {
    int vocab = ref_arch(m)->vocab;
    float *logits = xmalloc(sizeof *logits * (size_t)vocab);
    free(run->tokens);
    run->tokens = xcalloc((size_t)(max_tokens ? max_tokens : 1), sizeof *run->tokens);
    run->n_tokens = max_tokens;
    ref_reset(m);
    ref_stats_reset(run->stats);
    int finite = 1, rc = ref_forward(m, prompt, n_prompt, 0, logits, 0, e);
    for (int g = 0; rc == 0 && g < max_tokens; g++) {
        finite &= all_finite(logits, vocab);
        run->tokens[g] = ref_argmax(logits, vocab);
        if (g + 1 < max_tokens) rc = ref_forward(m, &run->tokens[g], 1, n_prompt + g, logits, 0, e);
    }
    free(logits);
    if (rc < 0) return -1;
    run->done = 1;
    run->works = finite && !run->stats->first_nonfinite[0];
    run->residual_peak = residual_peak(run->stats, NULL, 0);
    return 0;
}

/* Loads the model with these options, runs it, frees it. */
static int run_fresh(const Preflight *p, RefOptions ro, PreflightRun *run, Err *e) {
    RefModel *m;
    if (ref_load(&m, p->model_dir, &ro, e) < 0) return -1;
    run->stats = ref_stats_new(m);
    ref_set_stats(m, run->stats);
    int rc = generate(m, p->prompt, p->n_prompt, p->max_tokens, run, e);
    ref_free(m);
    return rc;
}

static void compare_with(PreflightRun *run, const PreflightRun *base) {
    int same = 0;
    run->first_mismatch = -1;
    for (int i = 0; i < run->n_tokens && i < base->n_tokens; i++) {
        if (run->tokens[i] == base->tokens[i]) same++;
        else if (run->first_mismatch < 0) run->first_mismatch = i;
    }
    run->match_rate = base->n_tokens ? (double)same / base->n_tokens : 1;
}

static void copy_run(PreflightRun *dst, const PreflightRun *src) {
    *dst = *src;
    dst->stats = NULL;
    dst->tokens = xcalloc((size_t)(src->n_tokens ? src->n_tokens : 1), sizeof *dst->tokens);
    memcpy(dst->tokens, src->tokens, sizeof *dst->tokens * (size_t)src->n_tokens);
}

/* The fp16 run and the clamp sweep share one loaded fp16 model. */
static int run_fp16_and_sweep(Preflight *p, RefOptions ro, int sweep, Err *e) {
    RefModel *m;
    if (ref_load(&m, p->model_dir, &ro, e) < 0) return -1;
    p->fp16.stats = ref_stats_new(m);
    ref_set_stats(m, p->fp16.stats);
    int rc = generate(m, p->prompt, p->n_prompt, p->max_tokens, &p->fp16, e);
    compare_with(&p->fp16, &p->fp32);
    for (int i = 0; rc == 0 && sweep && i < PREFLIGHT_N_CLAMPS; i++) {
        PreflightClamp *c = &p->clamps[p->n_clamps++];
        c->clamp = PREFLIGHT_CLAMP_FIRST - PREFLIGHT_CLAMP_STEP * (float)i;
        if (p->fp16.works && p->fp16.residual_peak <= c->clamp) {
            c->reused = 1; /* no residual value reaches the clamp: the same run */
            copy_run(&c->run, &p->fp16);
            continue;
        }
        ref_set_residual_clamp(m, c->clamp);
        c->run.stats = ref_stats_new(m);
        ref_set_stats(m, c->run.stats);
        rc = generate(m, p->prompt, p->n_prompt, p->max_tokens, &c->run, e);
        c->n_clamped = c->run.stats->n_clamped;
        compare_with(&c->run, &p->fp32);
    }
    ref_free(m);
    return rc;
}

static void free_run(PreflightRun *r) {
    free(r->tokens);
    ref_stats_free(r->stats);
}

/* ==== the residual stream ================================================= */

static double alpha_for_peak(float peak) {
    if (!(peak > FP16_SCALE_TARGET)) return 1;
    return FP16_SCALE_TARGET / (double)peak;
}

static void analyse_residual(Preflight *p) {
    const RefStats *s = p->fp32.stats;
    p->residual_peak = residual_peak(s, p->residual_peak_at, sizeof p->residual_peak_at);
    p->first_overflow_layer = -1;
    for (int l = 0; l < s->n_layers && p->first_overflow_layer < 0; l++)
        if (!(s->layers[l].resid_after_attn <= FP16_MAX && s->layers[l].resid_after_mlp <= FP16_MAX))
            p->first_overflow_layer = l;
    p->recommended_alpha = isfinite(p->residual_peak) ? alpha_for_peak(p->residual_peak) : NAN;
    p->scaling_supported = p->arch.sandwich_norms;
}

/* ==== the verdict ========================================================= */

static void add_line(char ***list, int *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add_line(char ***list, int *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = xmalloc((size_t)len + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    *list = xrealloc(*list, sizeof **list * (size_t)(*n + 1));
    (*list)[(*n)++] = s;
}

static int run_helps(const PreflightRun *r) {
    return r->done && r->works && r->match_rate > PREFLIGHT_CLAMP_GOOD_MATCH;
}

/* The highest clamp value with the best match rate among the working ones, or NULL. */
static const PreflightClamp *best_clamp(const Preflight *p) {
    const PreflightClamp *best = NULL;
    for (int i = 0; i < p->n_clamps; i++) {
        const PreflightClamp *c = &p->clamps[i];
        if (run_helps(&c->run) && (!best || c->run.match_rate > best->run.match_rate)) best = c;
    }
    return best;
}

static void decide(Preflight *p) {
    p->compatible = p->fp16.works && p->fp16.first_mismatch < 0;
    const PreflightClamp *clamp = best_clamp(p);
    if (p->compatible) p->score = 1.0;
    else if (p->fp16_to_fp32.works) p->score = clamp || run_helps(&p->fp16_scaled) ? 0.7 : 0.5;
    else p->score = 0.0;
}

static void write_issues(Preflight *p) {
    char ***L = &p->issues;
    int *n = &p->n_issues;
    if (p->n_weights_exceed_fp16)
        add_line(L, n, "%d weight tensor(s) hold values beyond fp16's 65504 (largest |w| %g in %s); they become inf in fp16",
                 p->n_weights_exceed_fp16, (double)p->weight_max_abs, p->tensor_names[p->weight_max_tensor]);
    if (!p->fp32.works)
        add_line(L, n, "the float32 reference itself produced inf/NaN (first at %s): the checkpoint looks broken",
                 p->fp32.stats->first_nonfinite);
    if (p->residual_peak > FP16_MAX)
        add_line(L, n, "the float32 residual stream peaks at %.0f (%s), %.2fx fp16's maximum 65504; layer %d is the first to exceed it",
                 (double)p->residual_peak, p->residual_peak_at, (double)p->residual_peak / FP16_MAX,
                 p->first_overflow_layer);
    if (!p->fp16.works)
        add_line(L, n, "the fp16 run overflows: first value beyond 65504 at %s, first inf/NaN at %s (%d op outputs overflow)",
                 p->fp16.stats->first_overflow[0] ? p->fp16.stats->first_overflow : "-",
                 p->fp16.stats->first_nonfinite, p->fp16.stats->n_overflow_sites);
    else if (p->fp16.first_mismatch >= 0)
        add_line(L, n, "fp16 greedy tokens differ from float32's from position %d on (match rate %.2f)",
                 p->fp16.first_mismatch, p->fp16.match_rate);
    if (p->fp32.works && !p->fp16_to_fp32.works)
        add_line(L, n, "fp16 weights fail even when computed in float32 (first inf/NaN at %s)",
                 p->fp16_to_fp32.stats->first_nonfinite);
    if (!p->bf16.works)
        add_line(L, n, "the bfloat16 run produced inf/NaN (first at %s)", p->bf16.stats->first_nonfinite);
}

static void recommend_scaling(Preflight *p) {
    char ***L = &p->recommendations;
    int *n = &p->n_recommendations;
    double a = p->recommended_alpha;
    if (!p->scaling_supported) {
        add_line(L, n,
                 "residual scaling (--fp16-scale) does not exist for model_type '%s' (no norm after the branches); "
                 "the recommended alpha %.4g is for information only",
                 p->arch.model_type, a);
        return;
    }
    if (!p->fp16_scaled.done) {
        add_line(L, n, "convert with --fp16-scale auto (alpha = 50000 / %.0f = %.4g)", (double)p->residual_peak, a);
        return;
    }
    const PreflightRun *s = &p->fp16_scaled;
    if (s->works)
        add_line(L, n,
                 "convert with --fp16-scale auto (alpha = 50000 / %.0f = %.4g): with it the fp16 run stays finite and "
                 "matches %.0f%% of float32's greedy tokens",
                 (double)p->residual_peak, a, 100 * s->match_rate);
    else
        add_line(L, n, "--fp16-scale %.4g (50000 / residual peak) is not enough: the scaled fp16 run still fails at %s",
                 a, s->stats->first_nonfinite);
}

static void write_recommendations(Preflight *p) {
    char ***L = &p->recommendations;
    int *n = &p->n_recommendations;
    int needs_alpha = isfinite(p->recommended_alpha) && p->recommended_alpha < 1;
    if (p->compatible) {
        if (needs_alpha && p->scaling_supported)
            add_line(L, n, "fp16 works, but the residual peak %.0f leaves little headroom below 65504: consider --fp16-scale %.4g",
                     (double)p->residual_peak, p->recommended_alpha);
        else add_line(L, n, "fp16 is safe for this model on this prompt: convert without --fp16-scale or a clamp");
        return;
    }
    if (!p->fp32.works) {
        add_line(L, n, "check the checkpoint: its float32 forward pass is not finite");
        return;
    }
    if (needs_alpha) recommend_scaling(p);
    else if (!p->fp16.works)
        add_line(L, n, "the residual stream stays below 50000: the overflow starts inside a branch (%s), which "
                       "residual scaling and clamping do not fix",
                 p->fp16.stats->first_overflow[0] ? p->fp16.stats->first_overflow : p->fp16.stats->first_nonfinite);
    const PreflightClamp *c = best_clamp(p);
    if (c)
        add_line(L, n, "a residual clamp at +-%.0f keeps fp16 finite with %.0f%% of float32's greedy tokens (--clamp %.0f)",
                 (double)c->clamp, 100 * c->run.match_rate, (double)c->clamp);
    else if (p->n_clamps)
        add_line(L, n, "no clamp value of the sweep (65000..20000) gives a working fp16 run matching more than half of the tokens");
    else if (!p->fp16.works)
        add_line(L, n, "run without --no-sweep to see whether a residual clamp helps");
    if (p->fp16.works && p->fp16.first_mismatch >= 0)
        add_line(L, n, "fp16 stays finite; the token differences are rounding: compare the converted model with "
                       "'verify' over more positions before relying on it");
}

/* ==== the run ============================================================= */

static int check_prompt(const Preflight *p, Err *e) {
    if (p->n_prompt < 1) return err_set(e, "preflight: the prompt has no tokens");
    for (int i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= p->arch.vocab)
            return err_set(e, "preflight: prompt token id %d is outside the vocabulary of %s (0..%d)", p->prompt[i],
                           p->model_dir, p->arch.vocab - 1);
    return 0;
}

static int check_options(const PreflightOptions *opt, Err *e) {
    if (opt->max_tokens < 1 || opt->max_tokens > PREFLIGHT_MAX_TOKENS_LIMIT)
        return err_set(e, "preflight: max_tokens %d is outside 1..%d", opt->max_tokens, PREFLIGHT_MAX_TOKENS_LIMIT);
    if (!opt->prompt) return err_set(e, "preflight: no prompt token ids");
    return 0;
}

static int run_all(Preflight *p, const PreflightOptions *opt, Err *e) {
    float scale = (float)p->fp16_scale;
    if (analyse_weights(p, e) < 0) return -1;
    if (run_fresh(p, (RefOptions){.precision = REF_FP32, .fp16_scale = scale}, &p->fp32, e) < 0) return -1;
    compare_with(&p->fp32, &p->fp32);
    analyse_residual(p);
    if (run_fp16_and_sweep(p, (RefOptions){.precision = REF_FP16, .fp16_scale = scale}, opt->sweep, e) < 0) return -1;
    RefOptions w16 = {.precision = REF_FP32, .weights_fp16 = 1, .fp16_scale = scale};
    if (run_fresh(p, w16, &p->fp16_to_fp32, e) < 0) return -1;
    compare_with(&p->fp16_to_fp32, &p->fp32);
    if (run_fresh(p, (RefOptions){.precision = REF_BF16, .fp16_scale = scale}, &p->bf16, e) < 0) return -1;
    compare_with(&p->bf16, &p->fp32);
    if (p->scaling_supported && p->fp16_scale == 0 && p->recommended_alpha < 1) {
        p->scaled_alpha = p->recommended_alpha;
        RefOptions sc = {.precision = REF_FP16, .fp16_scale = (float)p->scaled_alpha};
        if (run_fresh(p, sc, &p->fp16_scaled, e) < 0) return -1;
        compare_with(&p->fp16_scaled, &p->fp32);
    }
    decide(p);
    write_issues(p);
    write_recommendations(p);
    return 0;
}

int preflight_run(Preflight **out, const char *model_dir, const PreflightOptions *opt, Err *e) {
    *out = NULL;
    if (check_options(opt, e) < 0) return -1;
    Preflight *p = xcalloc(1, sizeof *p);
    p->model_dir = xstrdup(model_dir);
    if (arch_load(&p->arch, model_dir, e) < 0) {
        free(p->model_dir);
        free(p);
        return -1;
    }
    p->prompt = xcalloc((size_t)opt->n_prompt + 1, sizeof *p->prompt);
    memcpy(p->prompt, opt->prompt, sizeof *p->prompt * (size_t)opt->n_prompt);
    p->n_prompt = opt->n_prompt;
    p->prompt_text = opt->prompt_text ? xstrdup(opt->prompt_text) : NULL;
    p->max_tokens = opt->max_tokens;
    p->fp16_scale = opt->fp16_scale == 1 ? 0 : opt->fp16_scale;
    int rc = check_prompt(p, e);
    if (rc == 0 && p->fp16_scale != 0) rc = fp16_scale_check(&p->arch, p->fp16_scale, e);
    if (rc == 0) rc = run_all(p, opt, e);
    if (rc < 0) {
        preflight_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

void preflight_free(Preflight *p) {
    if (!p) return;
    free_run(&p->fp32);
    free_run(&p->fp16);
    free_run(&p->fp16_to_fp32);
    free_run(&p->bf16);
    free_run(&p->fp16_scaled);
    for (int i = 0; i < p->n_clamps; i++) free_run(&p->clamps[i].run);
    for (int i = 0; i < p->n_issues; i++) free(p->issues[i]);
    for (int i = 0; i < p->n_recommendations; i++) free(p->recommendations[i]);
    free(p->issues);
    free(p->recommendations);
    free(p->tensor_names);
    free(p->tensor_max_abs);
    free(p->prompt);
    free(p->prompt_text);
    free(p->model_dir);
    arch_free(&p->arch);
    free(p);
}

/* ==== the report ========================================================== */

/* A number, or null when it is not finite (JSON has no inf/NaN). Seven significant digits: the
 * values are floats, and their double expansion (0.772357940673828) only adds noise. */
static void add_number(cJSON *o, const char *key, double v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", v);
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, strtod(buf, NULL));
    else cJSON_AddNullToObject(o, key);
}

static void add_string_or_null(cJSON *o, const char *key, const char *s) {
    if (s && *s) cJSON_AddStringToObject(o, key, s);
    else cJSON_AddNullToObject(o, key);
}

static cJSON *int_array(const int *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static cJSON *string_array(char **v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
    return a;
}

/* The decoded text of ids, or "id,id,..." without a decoder. */
static char *output_text(const int *ids, int n, PreflightDecodeFn decode, void *ctx) {
    char *text = decode ? decode(ctx, ids, n) : NULL;
    if (text) return text;
    size_t cap = (size_t)n * 12 + 1, len = 0;
    text = xmalloc(cap);
    text[0] = 0;
    for (int i = 0; i < n; i++) len += (size_t)snprintf(text + len, cap - len, "%s%d", i ? "," : "", ids[i]);
    return text;
}

static void add_output(cJSON *o, const PreflightRun *r, PreflightDecodeFn decode, void *ctx) {
    char *text = output_text(r->tokens, r->n_tokens, decode, ctx);
    cJSON_AddStringToObject(o, "output", text);
    free(text);
    cJSON_AddItemToObject(o, "tokens", int_array(r->tokens, r->n_tokens));
}

static cJSON *run_json(const PreflightRun *r, PreflightDecodeFn decode, void *ctx) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "works", r->works);
    add_number(o, "match_rate", r->match_rate);
    cJSON_AddNumberToObject(o, "first_mismatch", r->first_mismatch);
    add_number(o, "residual_peak", r->residual_peak);
    add_string_or_null(o, "first_overflow", r->stats ? r->stats->first_overflow : NULL);
    add_string_or_null(o, "first_nonfinite", r->stats ? r->stats->first_nonfinite : NULL);
    long over = 0;
    for (int i = 0; r->stats && i < r->stats->n_overflow_sites; i++) over += r->stats->overflow_sites[i].count;
    cJSON_AddNumberToObject(o, "overflow_values", (double)over);
    add_output(o, r, decode, ctx);
    return o;
}

static cJSON *clamp_sweep_json(const Preflight *p, PreflightDecodeFn decode, void *ctx) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < p->n_clamps; i++) {
        const PreflightClamp *c = &p->clamps[i];
        char key[32];
        snprintf(key, sizeof key, "%.0f", (double)c->clamp);
        cJSON *v = cJSON_AddObjectToObject(o, key);
        cJSON_AddBoolToObject(v, "success", c->run.works);
        cJSON_AddBoolToObject(v, "clamped", c->n_clamped > 0);
        add_number(v, "match_rate", c->run.match_rate);
        add_output(v, &c->run, decode, ctx);
        cJSON_AddNumberToObject(v, "clamped_values", (double)c->n_clamped);
        cJSON_AddBoolToObject(v, "reused_unclamped_run", c->reused);
        add_string_or_null(v, "first_nonfinite", c->run.stats ? c->run.stats->first_nonfinite : NULL);
    }
    return o;
}

static cJSON *residual_peaks_json(const Preflight *p) {
    cJSON *a = cJSON_CreateArray();
    const RefStats *s32 = p->fp32.stats, *s16 = p->fp16.stats;
    for (int l = 0; l < s32->n_layers; l++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", l);
        add_number(o, "after_attention", s32->layers[l].resid_after_attn);
        add_number(o, "after_mlp", s32->layers[l].resid_after_mlp);
        add_number(o, "attention_out", s32->layers[l].attn_out);
        add_number(o, "mlp_out", s32->layers[l].mlp_out);
        add_number(o, "fp16_after_attention", s16->layers[l].resid_after_attn);
        add_number(o, "fp16_after_mlp", s16->layers[l].resid_after_mlp);
        cJSON_AddNumberToObject(o, "fp16_overflow_values", (double)s16->layers[l].n_overflow);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static cJSON *definitions_json(void) {
    static const char *defs[][2] = {
        {"model_id", "the model folder as given"},
        {"total_params", "values in the text model's tensors (a tied LM head counted once)"},
        {"weight_max_abs", "largest |w| over those tensors, as stored in the checkpoint"},
        {"weight_max_layer", "the tensor holding weight_max_abs"},
        {"weights_exceed_fp16", "number of tensors holding a value beyond 65504"},
        {"bf16_works", "the bfloat16 run (weights and every op output rounded to bf16) produced no inf/NaN"},
        {"fp16_works", "the fp16 run (weights and every op output rounded to fp16) produced no inf/NaN"},
        {"fp16_to_fp32_works", "fp16-rounded weights computed in float32 produced no inf/NaN"},
        {"fp16_first_nan_layer", "the first op output of the fp16 run holding inf/NaN"},
        {"fp16_overflow_layers", "op outputs of the fp16 run with values beyond 65504, in order of first overflow"},
        {"ane_compatible", "fp16_works and every fp16 greedy token equals the float32 run's"},
        {"compatibility_score", "1.0 compatible; 0.7 fp16_to_fp32_works and a clamp or the recommended scaling "
                                "gives a working fp16 run matching > 50% of the tokens; 0.5 fp16_to_fp32_works; 0.0 otherwise"},
        {"clamp_sweep", "fp16 runs with the residual clamped to +-value after every add: success = no inf/NaN, "
                        "clamped = the clamp changed at least one value, match_rate = share of greedy tokens equal "
                        "to float32's, output = the greedy continuation"},
        {"runs", "every run: works, match_rate against float32, greedy tokens and text, peaks"},
        {"residual_peaks", "per layer: float32 max |residual| after the attention and MLP adds, branch outputs, "
                           "and the fp16 run's values"},
        {"residual_peak", "largest |x| of the float32 residual stream (prompt and generated tokens)"},
        {"first_overflow", "the first op output of the fp16 run beyond 65504"},
        {"first_overflow_layer", "the first layer whose float32 residual exceeds 65504"},
        {"recommended_alpha", "min(1, 50000 / residual_peak): the --fp16-scale that puts the peak at 50000"},
    };
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) cJSON_AddStringToObject(o, defs[i][0], defs[i][1]);
    return o;
}

static cJSON *thresholds_json(void) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "fp16_max", FP16_MAX);
    cJSON_AddNumberToObject(o, "target_peak", FP16_SCALE_TARGET);
    cJSON_AddNumberToObject(o, "compatible_match_rate", 1.0);
    cJSON_AddNumberToObject(o, "clamp_helps_match_rate", PREFLIGHT_CLAMP_GOOD_MATCH);
    cJSON *clamps = cJSON_AddArrayToObject(o, "clamp_values");
    for (int i = 0; i < PREFLIGHT_N_CLAMPS; i++)
        cJSON_AddItemToArray(clamps, cJSON_CreateNumber(PREFLIGHT_CLAMP_FIRST - PREFLIGHT_CLAMP_STEP * i));
    return o;
}

static void add_anemll_keys(cJSON *r, const Preflight *p, PreflightDecodeFn decode, void *ctx) {
    cJSON_AddStringToObject(r, "model_id", p->model_dir);
    cJSON_AddNumberToObject(r, "total_params", (double)p->total_params);
    add_number(r, "weight_max_abs", p->weight_max_abs);
    cJSON_AddStringToObject(r, "weight_max_layer", p->n_tensors ? p->tensor_names[p->weight_max_tensor] : "");
    cJSON_AddNumberToObject(r, "weights_exceed_fp16", p->n_weights_exceed_fp16);
    cJSON_AddBoolToObject(r, "bf16_works", p->bf16.works);
    cJSON_AddBoolToObject(r, "fp16_works", p->fp16.works);
    cJSON_AddBoolToObject(r, "fp16_to_fp32_works", p->fp16_to_fp32.works);
    add_string_or_null(r, "fp16_first_nan_layer", p->fp16.stats->first_nonfinite);
    cJSON *over = cJSON_AddArrayToObject(r, "fp16_overflow_layers");
    for (int i = 0; i < p->fp16.stats->n_overflow_sites; i++)
        cJSON_AddItemToArray(over, cJSON_CreateString(p->fp16.stats->overflow_sites[i].name));
    cJSON_AddBoolToObject(r, "ane_compatible", p->compatible);
    cJSON_AddNumberToObject(r, "compatibility_score", p->score);
    cJSON_AddItemToObject(r, "issues", string_array(p->issues, p->n_issues));
    cJSON_AddItemToObject(r, "recommendations", string_array(p->recommendations, p->n_recommendations));
    cJSON_AddItemToObject(r, "clamp_sweep", clamp_sweep_json(p, decode, ctx));
}

static void add_our_keys(cJSON *r, const Preflight *p, PreflightDecodeFn decode, void *ctx) {
    cJSON_AddStringToObject(r, "model_type", p->arch.model_type);
    add_string_or_null(r, "prompt", p->prompt_text);
    cJSON_AddItemToObject(r, "prompt_ids", int_array(p->prompt, p->n_prompt));
    cJSON_AddNumberToObject(r, "max_tokens", p->max_tokens);
    if (p->fp16_scale != 0) cJSON_AddNumberToObject(r, "fp16_scale", p->fp16_scale);
    else cJSON_AddNullToObject(r, "fp16_scale");
    cJSON *runs = cJSON_AddObjectToObject(r, "runs");
    cJSON_AddItemToObject(runs, "fp32", run_json(&p->fp32, decode, ctx));
    cJSON_AddItemToObject(runs, "fp16", run_json(&p->fp16, decode, ctx));
    cJSON_AddItemToObject(runs, "fp16_to_fp32", run_json(&p->fp16_to_fp32, decode, ctx));
    cJSON_AddItemToObject(runs, "bf16", run_json(&p->bf16, decode, ctx));
    if (p->fp16_scaled.done) {
        cJSON *s = run_json(&p->fp16_scaled, decode, ctx);
        cJSON_AddNumberToObject(s, "alpha", p->scaled_alpha);
        cJSON_AddItemToObject(runs, "fp16_scaled", s);
    }
    add_number(r, "embedding_peak", p->fp32.stats->embed_peak);
    cJSON_AddItemToObject(r, "residual_peaks", residual_peaks_json(p));
    add_number(r, "residual_peak", p->residual_peak);
    cJSON_AddStringToObject(r, "residual_peak_at", p->residual_peak_at);
    add_string_or_null(r, "first_overflow", p->fp16.stats->first_overflow);
    if (p->first_overflow_layer >= 0) cJSON_AddNumberToObject(r, "first_overflow_layer", p->first_overflow_layer);
    else cJSON_AddNullToObject(r, "first_overflow_layer");
    add_number(r, "recommended_alpha", p->recommended_alpha);
    cJSON_AddBoolToObject(r, "fp16_scale_supported", p->scaling_supported);
    cJSON *sites = cJSON_AddArrayToObject(r, "fp16_overflow_sites");
    for (int i = 0; i < p->fp16.stats->n_overflow_sites; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "site", p->fp16.stats->overflow_sites[i].name);
        cJSON_AddNumberToObject(o, "count", (double)p->fp16.stats->overflow_sites[i].count);
        cJSON_AddItemToArray(sites, o);
    }
    cJSON *w = cJSON_AddObjectToObject(r, "weight_max_abs_per_tensor");
    for (int i = 0; i < p->n_tensors; i++) add_number(w, p->tensor_names[i], p->tensor_max_abs[i]);
    cJSON_AddItemToObject(r, "thresholds", thresholds_json());
    cJSON_AddItemToObject(r, "definitions", definitions_json());
}

cJSON *preflight_report_json(const Preflight *p, PreflightDecodeFn decode, void *ctx) {
    cJSON *r = cJSON_CreateObject();
    add_anemll_keys(r, p, decode, ctx);
    add_our_keys(r, p, decode, ctx);
    return r;
}

int preflight_write_report(const Preflight *p, const char *path, PreflightDecodeFn decode, void *ctx, Err *e) {
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    int rc = 0;
    if (slash && slash != dir) {
        *slash = 0;
        rc = mkdir_p(dir, e);
    }
    free(dir);
    if (rc < 0) return err_wrap(e, "preflight report %s", path);
    cJSON *r = preflight_report_json(p, decode, ctx);
    char *text = cJSON_Print(r);
    cJSON_Delete(r);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len++] = '\n';
    rc = file_write_atomic(path, text, len, e);
    free(text);
    return rc;
}

/* ==== --fp16-scale auto =================================================== */

int preflight_measure_alpha(const char *model_dir, const int *prompt, int n_prompt, int max_tokens, Fp16Alpha *out,
                            Err *e) {
    memset(out, 0, sizeof *out);
    if (max_tokens < 0 || max_tokens > PREFLIGHT_MAX_TOKENS_LIMIT)
        return err_set(e, "--fp16-scale auto: max_tokens %d is outside 0..%d", max_tokens, PREFLIGHT_MAX_TOKENS_LIMIT);
    Preflight p = {.model_dir = (char *)model_dir, .prompt = (int *)prompt, .n_prompt = n_prompt,
                   .max_tokens = max_tokens};
    if (arch_load(&p.arch, model_dir, e) < 0) return -1;
    int rc = fp16_scale_check(&p.arch, 1.0, e);
    if (rc == 0) rc = check_prompt(&p, e);
    if (rc == 0) rc = run_fresh(&p, (RefOptions){.precision = REF_FP32}, &p.fp32, e);
    if (rc == 0) {
        out->peak = residual_peak(p.fp32.stats, out->peak_at, sizeof out->peak_at);
        if (!p.fp32.works || !isfinite(out->peak))
            rc = err_set(e, "--fp16-scale auto: the float32 reference of %s produced inf/NaN (first at %s), so its "
                            "residual peak cannot be measured",
                         model_dir, p.fp32.stats->first_nonfinite);
    }
    if (rc == 0) {
        out->alpha = alpha_for_peak(out->peak);
        out->needs_scaling = out->alpha < 1;
    }
    free_run(&p.fp32);
    arch_free(&p.arch);
    return rc;
}

int preflight_fallback_prompt(const Arch *a, int *ids, int max) {
    int n = 0;
    if (max > 0 && a->bos_id >= 0 && a->bos_id < a->vocab) ids[n++] = a->bos_id;
    for (uint64_t i = 1; n < max && i <= 15; i++) ids[n++] = (int)(i * 2654435761u % (uint64_t)a->vocab);
    return n;
}
