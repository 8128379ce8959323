/* verify.c - packages against the reference in lockstep (contract in verify.h). */
#include "runtime/verify.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "runtime/gen.h"
#include "io/checkpoint.h"
#include "io/json.h"
#include "io/st_writer.h"
#include "runtime/rt_internal.h"
#include "runtime/sampler.h"
#include "runtime/tokenizer.h"

void verify_default_thresholds(VerifyThresholds *t) {
    t->min_agreement = VERIFY_DEFAULT_MIN_AGREEMENT;
    t->min_cosine = VERIFY_DEFAULT_MIN_COSINE;
    t->max_kl = VERIFY_DEFAULT_MAX_KL;
}

/* ==== Metrics ==== */

static double log_sum_exp(const float *x, int n) {
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++) s += exp(x[i] - mx);
    return mx + log(s);
}

/* KL(softmax(p) || softmax(q)) in nats. */
static double kl_divergence(const float *p, const float *q, int n) {
    double lp = log_sum_exp(p, n), lq = log_sum_exp(q, n), kl = 0;
    for (int i = 0; i < n; i++) {
        double a = p[i] - lp, b = q[i] - lq, pa = exp(a);
        if (pa > 0) kl += pa * (a - b);
    }
    return kl < 0 ? 0 : kl;
}

static double cosine(const float *a, const float *b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
}

/* ==== Lockstep source ==== */

typedef struct Pair {
    Llm *m;
    RefModel *ref;
    float *ref_logits;
    int ref_vocab;
    VerifyReport *r;
    int cap;
} Pair;

static int pair_prefill(void *ctx, const int *tokens, int n, Err *e) {
    Pair *p = ctx;
    llm_reset(p->m);
    if (llm_prefill(p->m, tokens, n, e) < 0) return err_wrap(e, "packages");
    ref_reset(p->ref);
    if (ref_forward(p->ref, tokens, n, 0, NULL, 0, e) < 0) return err_wrap(e, "reference");
    return 0;
}

/* The reference's margin between its best and second-best logit. */
static double top2_margin(const float *l, int n, int best) {
    double second = -INFINITY;
    for (int i = 0; i < n; i++)
        if (i != best && l[i] > second) second = l[i];
    return (double)l[best] - second;
}

static void record(Pair *p, const LlmStep *pkg, int ref_token) {
    VerifyReport *r = p->r;
    double scale = fabs((double)p->ref_logits[ref_token]);
    int decisive = top2_margin(p->ref_logits, p->ref_vocab, ref_token) >= VERIFY_NEAR_TIE * (scale > 1 ? scale : 1);
    if (decisive) {
        r->n_decisive++;
        r->agree_decisive += pkg->token == ref_token;
    }
    int i = r->n_positions++;
    if (i == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        r->ref_tokens = xrealloc(r->ref_tokens, sizeof(int) * (size_t)p->cap);
        r->pkg_tokens = xrealloc(r->pkg_tokens, sizeof(int) * (size_t)p->cap);
    }
    r->ref_tokens[i] = ref_token;
    r->pkg_tokens[i] = pkg->token;
    if (pkg->token == ref_token) {
        r->agree++;
    } else if (r->first_divergent < 0) {
        r->first_divergent = i;
        r->first_divergent_margin = pkg->token >= 0 && pkg->token < p->ref_vocab
                                        ? (double)p->ref_logits[ref_token] - p->ref_logits[pkg->token]
                                        : INFINITY;
    }
    if (!pkg->logits) return;
    int n = r->vocab_compared, finite = 1;
    for (int k = 0; k < n && finite; k++) finite = isfinite(pkg->logits[k]);
    if (!finite) {
        r->nonfinite++;
        r->kl_max = INFINITY;
        r->cos_min = -1;
        return;
    }
    double kl = kl_divergence(p->ref_logits, pkg->logits, n), cs = cosine(p->ref_logits, pkg->logits, n);
    r->kl_mean += kl;
    r->cos_mean += cs;
    if (kl > r->kl_max) r->kl_max = kl;
    if (cs < r->cos_min) r->cos_min = cs;
}

static int pair_step(void *ctx, int token, int pos, LlmStep *out, Err *e) {
    Pair *p = ctx;
    LlmStep pkg;
    if (llm_step(p->m, token, pos, &pkg, e) < 0) return err_wrap(e, "packages");
    if (ref_forward(p->ref, &token, 1, pos, p->ref_logits, 0, e) < 0) return err_wrap(e, "reference");
    int ref_token = ref_argmax(p->ref_logits, p->ref_vocab);
    record(p, &pkg, ref_token);
    out->logits = p->ref_logits;   /* the reference leads: its greedy token comes next */
    out->token = ref_token;
    out->value = p->ref_logits[ref_token];
    return 0;
}

int verify_run(Llm *m, RefModel *ref, const int *prompt, int n_prompt, int max_new, VerifyReport *r, Err *e) {
    memset(r, 0, sizeof *r);
    r->first_divergent = r->first_divergent_pos = -1;
    r->cos_min = 1;
    r->has_logits = !llm_argmax_mode(m);
    int rv = ref_arch(ref)->vocab, pv = llm_vocab(m);
    r->vocab_compared = rv < pv ? rv : pv;
    r->n_prompt = n_prompt;
    if (max_new < 1) return err_set(e, "verify needs at least one generated token");
    Pair p = {m, ref, xmalloc(sizeof(float) * (size_t)rv), rv, r, 0};
    LmSource src = {&p, r->vocab_compared, llm_context(m), llm_batch(m), pair_prefill, pair_step};
    GenOptions o = {.max_new = max_new};
    GenResult res;
    llm_reset_times(m);
    int rc = gen_run(&src, prompt, n_prompt, &o, NULL, NULL, &res, e);
    free(p.ref_logits);
    if (rc < 0) {
        verify_report_free(r);
        return -1;
    }
    r->n_shifts = res.n_shifts;
    int n = r->n_positions, nf = n - r->nonfinite;
    r->agreement = n ? (double)r->agree / n : 0;
    if (r->has_logits && nf > 0) {
        r->kl_mean /= nf;
        r->cos_mean /= nf;
    }
    if (r->nonfinite) r->kl_mean = INFINITY;
    if (r->first_divergent >= 0) r->first_divergent_pos = n_prompt + r->first_divergent;
    const LlmTimes *t = llm_times(m);
    r->pkg_prefill_tps = t->prefill_s > 0 ? t->prefill_tokens / t->prefill_s : 0;
    r->pkg_decode_tps = t->step_s > 0 ? t->steps / t->step_s : 0;
    memcpy(r->fn_runs, t->runs, sizeof r->fn_runs);
    return 0;
}

void verify_report_free(VerifyReport *r) {
    free(r->ref_tokens);
    free(r->pkg_tokens);
    r->ref_tokens = r->pkg_tokens = NULL;
}

/* ==== Prompt and the step-8 check ==== */

int verify_prompt_ids(const char *tokenizer_dir, const char *model_dir, const char *text, int **ids, int *n, Err *e) {
    const char *dir = tokenizer_dir;
    char *tj = dir ? path_join(dir, "tokenizer.json") : NULL;
    if (!tj || !path_exists(tj)) dir = model_dir;
    free(tj);
    Tokenizer *tok;
    if (tok_load(&tok, dir, e) < 0) return -1;
    int rc = tok_encode(tok, text, strlen(text), TOK_ADD_SPECIAL, ids, n, e);
    tok_free(tok);
    return rc;
}

/* MemAvailable in bytes, or 0 when unknown. */
static uint64_t available_memory(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long kb = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lu kB", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024;
}

int verify_quick(const char *meta_path, const char *model_dir, int max_new, VerifyReport *r, char *skip_reason,
                 size_t skip_size, Err *e) {
    memset(r, 0, sizeof *r);
    Checkpoint *ck;
    if (ckpt_open(&ck, model_dir, e) < 0) return -1;
    uint64_t params = 0;
    for (size_t i = 0; i < ck->n_tensors; i++) params += ck->tensors[i]->numel;
    ckpt_close(ck);
    /* the float32 reference, plus the packages' weights converted to float32 */
    uint64_t need = params * 4 * 2, avail = available_memory();
    if (avail && need > avail) {
        snprintf(skip_reason, skip_size,
                 "the float32 reference and the packages need about %.1f GB, %.1f GB are available; run `anemll verify` "
                 "on a machine with more memory",
                 (double)need / 1e9, (double)avail / 1e9);
        return 1;
    }
    Llm *m = NULL;
    RefModel *ref = NULL;
    int *ids = NULL, n = 0;
    int rc = llm_open(&m, meta_path, NULL, e);
    if (rc == 0) rc = ref_load(&ref, model_dir, NULL, e);
    if (rc == 0 && verify_prompt_ids(llm_meta(m)->tokenizer_dir, model_dir, VERIFY_DEFAULT_PROMPT, &ids, &n, e) < 0) {
        n = 8;   /* no tokenizer (convert --skip-check): plain ids */
        ids = xmalloc(sizeof(int) * (size_t)n);
        for (int i = 0; i < n; i++) ids[i] = 1 + i % (llm_vocab(m) - 1);
    }
    if (rc == 0 && n > llm_context(m) / 2) n = llm_context(m) / 2;   /* leave room to generate */
    if (rc == 0) rc = verify_run(m, ref, ids, n, max_new, r, e);
    free(ids);
    ref_free(ref);
    llm_close(m);
    return rc;
}

/* ==== Reference with the packages' dequantized weights ==== */

/* The dequantized value of a LUT const named name in any part, as float (caller frees), or NULL. */
static float *dequantized(const Llm *m, const char *name, int64_t numel) {
    for (int p = 0; p < llm_n_parts(m); p++) {
        RtModel *rm = llm_part(m, p);
        for (int fi = 0; fi < rt_n_functions(rm); fi++) {
            RtFunction *f = rt_function_at(rm, fi);
            for (int s = 0; s < f->n_slots; s++) {
                const Slot *sl = &f->slots[s];
                const MilOp *op = sl->v->producer;
                if (!sl->is_const || !op || !op->def || op->def->id != MIL_OP_CONSTEXPR_LUT_TO_DENSE || !sl->v->name ||
                    strcmp(sl->v->name, name) || rt_numel(&sl->t) != numel)
                    continue;
                float *out = xmalloc(sizeof(float) * (size_t)numel);
                if (sl->f16) st_convert_f32(ST_F16, sl->f16, (size_t)numel, out);
                else memcpy(out, sl->t.data, sizeof(float) * (size_t)numel);
                return out;
            }
        }
    }
    return NULL;
}

/* The LM head splits stacked (vocab, hidden), or NULL. */
static float *dequantized_lm_head(const Llm *m, int64_t vocab, int64_t hidden) {
    float *out = xmalloc(sizeof(float) * (size_t)(vocab * hidden));
    int64_t rows = 0;
    for (int i = 1; rows < vocab; i++) {
        char name[64];
        snprintf(name, sizeof name, "lm_head_split_%d_weight", i);
        int64_t r = 0;
        float *part = NULL;
        RtModel *lm = llm_part(m, 1);
        RtFunction *f = rt_function_at(lm, 0);
        for (int s = 0; s < f->n_slots && !part; s++) {
            const Slot *sl = &f->slots[s];
            if (sl->is_const && sl->v->name && !strcmp(sl->v->name, name) && sl->t.rank >= 2 && sl->t.dims[1] == hidden) {
                r = sl->t.dims[0];
                part = dequantized(m, name, r * hidden);
            }
        }
        if (!part || rows + r > vocab) {
            free(part);
            free(out);
            return NULL;
        }
        memcpy(out + rows * hidden, part, sizeof(float) * (size_t)(r * hidden));
        rows += r;
        free(part);
    }
    return out;
}

static double snr_db(const float *a, const float *b, int64_t n) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        e += d * d;
        s += (double)b[i] * b[i];
    }
    return e > 0 ? 10 * log10(s / e) : INFINITY;
}

int verify_dequantized_checkpoint(const Llm *m, const char *model_dir, const char *out_dir, int *n_replaced, Err *e) {
    *n_replaced = 0;
    Checkpoint *ck;
    Arch arch;
    if (arch_load(&arch, model_dir, e) < 0) return -1;
    if (ckpt_open(&ck, model_dir, e) < 0) {
        arch_free(&arch);
        return -1;
    }
    char *cfg_path = path_join(model_dir, "config.json"), *out_cfg = path_join(out_dir, "config.json");
    char *out_st = path_join(out_dir, "model.safetensors");
    size_t n = ck->n_tensors;
    StWriteSpec *specs = xcalloc(n + 1, sizeof *specs);
    float **data = xcalloc(n + 1, sizeof *data);
    int rc = mkdir_p(out_dir, e), untie = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const StTensor *t = ck->tensors[i];
        specs[i].name = t->name;
        specs[i].dtype = ST_F32;
        specs[i].ndim = t->ndim;
        memcpy(specs[i].shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        data[i] = xmalloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
        if ((rc = st_read_f32(t, data[i], e)) < 0) break;
        char name[256];
        snprintf(name, sizeof name, "%s", t->name);
        for (char *c = name; *c; c++)
            if (*c == '.') *c = '_';
        float *dq = dequantized(m, name, (int64_t)t->numel);
        if (dq && snr_db(dq, data[i], (int64_t)t->numel) > 10) {
            free(data[i]);
            data[i] = dq;
            ++*n_replaced;
        } else {
            free(dq);
        }
    }
    /* the LM head: a tensor of its own, or the embeddings' (tied) */
    int64_t V = arch.vocab, H = arch.hidden;
    float *lm = rc == 0 ? dequantized_lm_head(m, V, H) : NULL;
    if (lm) {
        size_t at = n;
        for (size_t i = 0; i < n; i++)
            if (!strcmp(ck->tensors[i]->name, arch.lm_head_name)) at = i;
        if (at < n && snr_db(lm, data[at], V * H) > 10) {
            if (arch.tied) {   /* the packages' LM head differs from their embeddings: untie */
                specs[n] = (StWriteSpec){.name = arch.multimodal ? "language_model.lm_head.weight" : "lm_head.weight",
                                         .dtype = ST_F32, .ndim = 2, .shape = {V, H}};
                data[n] = lm;
                untie = 1;
            } else {
                free(data[at]);
                data[at] = lm;
            }
            lm = NULL;
            ++*n_replaced;
        }
        free(lm);
    }
    if (rc == 0) {   /* config.json, untied if needed */
        cJSON *cfg;
        rc = json_read_file(cfg_path, 1 << 24, &cfg, e);
        if (rc == 0) {
            if (untie) {
                cJSON_DeleteItemFromObject(cfg, "tie_word_embeddings");
                cJSON_AddBoolToObject(cfg, "tie_word_embeddings", 0);
            }
            char *txt = cJSON_Print(cfg);
            rc = file_write_atomic(out_cfg, txt, strlen(txt), e);
            free(txt);
            cJSON_Delete(cfg);
        }
    }
    StWriter *w = NULL;
    size_t total = n + (size_t)untie;
    if (rc == 0) rc = st_writer_open(&w, out_st, specs, total, e);
    for (size_t i = 0; rc == 0 && i < total; i++) {
        int64_t cnt = 1;
        for (int d = 0; d < specs[i].ndim; d++) cnt *= specs[i].shape[d];
        rc = st_writer_write(w, data[i], sizeof(float) * (size_t)cnt, e);
    }
    if (w) {
        if (rc == 0) rc = st_writer_finish(w, e);
        else st_writer_abort(w);
    }
    for (size_t i = 0; i <= n; i++) free(data[i]);
    free(data);
    free(specs);
    free(cfg_path);
    free(out_cfg);
    free(out_st);
    ckpt_close(ck);
    arch_free(&arch);
    return rc < 0 ? err_wrap(e, "dequantized reference") : 0;
}

/* ==== Verdict and text ==== */

static void add(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add(char *buf, size_t size, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len >= size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, size - len, fmt, ap);
    va_end(ap);
}

int verify_passes(const VerifyReport *r, const VerifyThresholds *t, char *why, size_t why_size) {
    char tmp[512] = "";
    if (r->agreement < t->min_agreement)
        add(tmp, sizeof tmp, "%stop-1 agreement %.1f%% < %.1f%%", *tmp ? "; " : "", 100 * r->agreement, 100 * t->min_agreement);
    if (r->has_logits) {
        if (r->nonfinite) add(tmp, sizeof tmp, "%s%d positions with inf/NaN logits (fp16 overflow?)", *tmp ? "; " : "", r->nonfinite);
        if (!(r->cos_mean >= t->min_cosine))
            add(tmp, sizeof tmp, "%smean logit cosine %.6f < %.6f", *tmp ? "; " : "", r->cos_mean, t->min_cosine);
        if (!(r->kl_mean <= t->max_kl)) add(tmp, sizeof tmp, "%smean KL %.4g > %.4g", *tmp ? "; " : "", r->kl_mean, t->max_kl);
    }
    if (why && why_size) snprintf(why, why_size, "%s", tmp);
    return *tmp == 0;
}

char *verify_format(const VerifyReport *r, const VerifyThresholds *t) {
    char buf[2048] = "", why[512];
    add(buf, sizeof buf, "verify: %d prompt tokens, %d generated positions compared (teacher-forced)%s\n", r->n_prompt,
        r->n_positions, r->n_shifts ? " with context shifts" : "");
    add(buf, sizeof buf, "  top-1 agreement   %.2f%% (%d/%d)   [pass >= %.2f%%]\n", 100 * r->agreement, r->agree,
        r->n_positions, 100 * t->min_agreement);
    add(buf, sizeof buf, "                    %d/%d where the reference is decisive (%d near ties, top-2 logit margin < %.3g)\n",
        r->agree_decisive, r->n_decisive, r->n_positions - r->n_decisive, VERIFY_NEAR_TIE);
    if (r->has_logits) {
        add(buf, sizeof buf, "  KL divergence     mean %.3g  max %.3g nats   [pass: mean <= %.3g]\n", r->kl_mean, r->kl_max, t->max_kl);
        add(buf, sizeof buf, "  logit cosine      mean %.6f  min %.6f   [pass: mean >= %.6f]\n", r->cos_mean, r->cos_min,
            t->min_cosine);
    } else {
        add(buf, sizeof buf, "  KL / cosine       n/a (argmax-mode LM head returns no logits)\n");
    }
    if (r->first_divergent >= 0)
        add(buf, sizeof buf,
            "  first divergence  generated token %d (sequence index %d): packages %d, reference %d (reference logit "
            "margin %.3g)\n",
            r->first_divergent, r->first_divergent_pos, r->pkg_tokens[r->first_divergent], r->ref_tokens[r->first_divergent],
            r->first_divergent_margin);
    else
        add(buf, sizeof buf, "  first divergence  none\n");
    add(buf, sizeof buf, "  packages on CPU   prefill %.1f t/s, decode %.1f t/s\n", r->pkg_prefill_tps, r->pkg_decode_tps);
    add(buf, sizeof buf, "  functions run     infer %ld, prefill %ld", r->fn_runs[LLM_INFER], r->fn_runs[LLM_PREFILL]);
    if (r->fn_runs[LLM_INFER_ROTATE] || r->fn_runs[LLM_PREFILL_ROTATE])
        add(buf, sizeof buf, ", infer_rotate %ld, prefill_rotate %ld", r->fn_runs[LLM_INFER_ROTATE],
            r->fn_runs[LLM_PREFILL_ROTATE]);
    add(buf, sizeof buf, "\n");
    int ok = verify_passes(r, t, why, sizeof why);
    add(buf, sizeof buf, "%s%s\n", ok ? "PASS" : "FAIL: ", ok ? "" : why);
    return xstrdup(buf);
}

static void json_num(char *buf, size_t size, const char *key, double v, int last) {
    if (isfinite(v)) add(buf, size, "\"%s\": %.9g%s", key, v, last ? "" : ", ");
    else add(buf, size, "\"%s\": null%s", key, last ? "" : ", ");
}

char *verify_format_json(const VerifyReport *r, const VerifyThresholds *t) {
    size_t size = 1024 + 32 * (size_t)r->n_positions;
    char *buf = xcalloc(size, 1), why[512];
    int ok = verify_passes(r, t, why, sizeof why);
    add(buf, size, "{\"pass\": %s, \"prompt_tokens\": %d, \"positions\": %d, \"agree\": %d, ", ok ? "true" : "false",
        r->n_prompt, r->n_positions, r->agree);
    add(buf, size, "\"decisive\": %d, \"agree_decisive\": %d, ", r->n_decisive, r->agree_decisive);
    json_num(buf, size, "agreement", r->agreement, 0);
    if (r->has_logits) {
        json_num(buf, size, "kl_mean", r->kl_mean, 0);
        json_num(buf, size, "kl_max", r->kl_max, 0);
        json_num(buf, size, "cosine_mean", r->cos_mean, 0);
        json_num(buf, size, "cosine_min", r->cos_min, 0);
    }
    add(buf, size, "\"first_divergent\": %d, \"first_divergent_position\": %d, ", r->first_divergent, r->first_divergent_pos);
    if (r->first_divergent >= 0) json_num(buf, size, "first_divergent_margin", r->first_divergent_margin, 0);
    add(buf, size, "\"nonfinite\": %d, \"shifts\": %d, ", r->nonfinite, r->n_shifts);
    for (int k = 0; k < 2; k++) {
        const int *tk = k ? r->pkg_tokens : r->ref_tokens;
        add(buf, size, "\"%s\": [", k ? "package_tokens" : "reference_tokens");
        for (int i = 0; i < r->n_positions; i++) add(buf, size, "%s%d", i ? ", " : "", tk[i]);
        add(buf, size, "], ");
    }
    add(buf, size, "\"functions\": {");
    for (int f = 0; f < LLM_FN_COUNT; f++) add(buf, size, "%s\"%s\": %ld", f ? ", " : "", llm_fn_name((LlmFn)f), r->fn_runs[f]);
    add(buf, size, "}, ");
    json_num(buf, size, "prefill_tps", r->pkg_prefill_tps, 0);
    json_num(buf, size, "decode_tps", r->pkg_decode_tps, 1);
    add(buf, size, "}");
    return buf;
}
