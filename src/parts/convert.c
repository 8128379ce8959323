/* convert.c - the conversion pipeline, steps 1-8 (contract in convert.h).
 *
 * Sections: events and results, checks before work starts, the steps, the driver.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h> /* mallopt */
#endif
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/killpoint.h"
#include "common/util.h"
#include "model/preflight.h"
#include "parts/check.h"
#include "parts/compile.h"
#include "parts/convert.h"
#include "parts/meta.h"
#include "parts/plan.h"

/* A combined package (step 5) whose weight.bin step 3 wrote as it wrote the first source's. */
typedef struct PendingCombine {
    PkgWriter *w;                                 /* open; NULL = none */
    uint64_t digests[PLAN_FFN_FUNCTIONS][2];      /* of its sources' weight files, in function order */
} PendingCombine;

struct Conversion {
    ConvertOptions o;
    Arch arch;
    int arch_loaded;
    Checkpoint *ckpt;
    const char *prefix;
    int n_chunks;
    int state_length;
    int local_length;             /* gemma3: the local cache (plan_local_length) */
    int rotate;                   /* gemma3 with context > sliding window: rotate functions */
    double alpha;                 /* --fp16-scale alpha applied (0 = none) */
    char tool[96];
    char info[160];
    ConvertEventFn fn;
    void *ctx;
    int step;                     /* the step running (for notes) */
    ConvertResult *results;
    int n_results, cap_results;
    int ffn_prefill_done;         /* step 3 also wrote the prefill packages */
    PendingCombine *pending;      /* [chunk * 2 + combined kind], when step 3 ran with step 5 */
    PartPrefetch *prefetch;       /* reads the weights of steps 1-4 ahead */
    int failed_step;              /* the step convert_run failed in, 0 = none */
    int lock_fd;                  /* the output folder, flock'ed while convert_run runs; -1 = none */
};

static const char *const step_titles[CONVERT_STEPS + 1] = {
    "",
    "Convert Embeddings",
    "Convert LM Head",
    "Convert FFN",
    "Convert Prefill",
    "Combine Models",
    "Compile Models",
    "Copy Tokenizer & Create meta.yaml",
    "Test Conversion",
};

const char *convert_step_title(int step) { return step >= 1 && step <= CONVERT_STEPS ? step_titles[step] : "?"; }
const Arch *convert_arch(const Conversion *c) { return &c->arch; }
int convert_n_chunks(const Conversion *c) { return c->n_chunks; }
const char *convert_prefix(const Conversion *c) { return c->prefix; }

int convert_failed_step(const Conversion *c) { return c->failed_step; }

const ConvertResult *convert_results(const Conversion *c, int *n) {
    *n = c->n_results;
    return c->results;
}

/* ==== events and results ==== */

static void emit(Conversion *c, ConvertEvent ev) {
    if (c->fn) c->fn(c->ctx, &ev);
}

static void say(Conversion *c, ConvertEventKind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(Conversion *c, ConvertEventKind kind, const char *fmt, ...) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    emit(c, (ConvertEvent){.kind = kind, .step = c->step, .text = text});
}

static void part_note(void *ctx, const char *msg) { say(ctx, CONVERT_WARNING, "%s", msg); }

static void add_result(Conversion *c, int step, const char *file, const PartReport *r, int lut_bits, int pkg,
                       double seconds, int index, int count) {
    if (c->n_results == c->cap_results) {
        c->cap_results = c->cap_results ? c->cap_results * 2 : 16;
        c->results = xrealloc(c->results, sizeof *c->results * (size_t)c->cap_results);
    }
    ConvertResult *res = &c->results[c->n_results++];
    memset(res, 0, sizeof *res);
    res->step = step;
    snprintf(res->file, sizeof res->file, "%s", file);
    if (r) res->report = *r;
    res->lut_bits = lut_bits;
    res->is_package = pkg;
    emit(c, (ConvertEvent){.kind = CONVERT_PART, .step = step, .file = file, .report = &res->report,
                           .seconds = seconds, .index = index, .count = count});
}

/* "<out>/<name><ext>"; caller frees. */
static char *out_path(const Conversion *c, const char *name, const char *ext) {
    return xasprintf("%s/%s%s", c->o.output_dir, name, ext);
}

/* ==== checks before work starts ==== */

static int looks_like_hub_id(const char *p) {
    return strchr(p, '/') && p[0] != '/' && p[0] != '.' && p[0] != '~' && !strchr(strchr(p, '/') + 1, '/');
}

static int check_model_dir(Conversion *c, Err *e) {
    const char *m = c->o.model_dir;
    if (!path_exists(m)) {
        if (looks_like_hub_id(m))
            return err_set(e, "--model %s: no such folder. Hugging Face ids are not downloaded; fetch the model "
                              "first (e.g. huggingface-cli download %s --local-dir DIR) and pass the folder",
                           m, m);
        return err_set(e, "--model %s: no such folder", m);
    }
    if (!path_is_dir(m)) return err_set(e, "--model %s is not a folder (give the checkpoint folder)", m);
    char *cfg = path_join(m, "config.json");
    int ok = path_exists(cfg);
    free(cfg);
    if (!ok) return err_set(e, "--model %s: config.json is missing; a Hugging Face checkpoint folder has config.json, "
                               "*.safetensors and the tokenizer files", m);
    if (arch_load(&c->arch, m, e) < 0) return -1;
    c->arch_loaded = 1;
    return 0;
}

/* The largest divisor of n that is at most limit. */
static long largest_divisor(long n, long limit) {
    for (long d = limit < n ? limit : n; d > 1; d--)
        if (n % d == 0) return d;
    return 1;
}

static int check_gemma_options(Conversion *c, Err *e) {
    const ConvertOptions *o = &c->o;
    const Arch *a = &c->arch;
    int n_local, n_global;
    plan_layer_types(a, &n_local, &n_global);
    if (a->sliding_window <= 0 || n_local == 0 || n_global == 0)
        return err_set(e, "%s: this Gemma 3 config has %d sliding-window and %d global layers (sliding_window %d); the "
                          "converter builds both caches and needs at least one layer of each type",
                       o->model_dir, n_local, n_global, a->sliding_window);
    if (o->fp16_scale && !o->fp16_auto && fp16_scale_check(a, o->fp16_alpha, e) < 0) return -1;
    c->rotate = plan_has_rotate(a, o->context);
    if (c->rotate && a->sliding_window % o->batch != 0)
        return err_set(e, "--batch %ld does not divide the sliding window %d of %s: with --context %ld beyond the "
                          "window, prefill batches must not straddle it (prefill_rotate shifts the window by whole "
                          "batches); use a --batch that divides %d, e.g. --batch %ld",
                       o->batch, a->sliding_window, o->model_dir, o->context, a->sliding_window,
                       largest_divisor(a->sliding_window, o->batch));
    if (o->split_rotate && !c->rotate)
        return err_set(e, "--split-rotate: --context %ld does not exceed the sliding window %d of %s, so there are no "
                          "rotate functions to split; drop --split-rotate (or use a longer --context)",
                       o->context, a->sliding_window, o->model_dir);
    return 0;
}

static int check_family_options(Conversion *c, Err *e) {
    const ConvertOptions *o = &c->o;
    const char *fam = arch_family_name(c->arch.family);
    if (c->arch.head_dim % 2 || c->arch.head_dim > 4096)
        return err_set(e, "%s: head_dim %d is not supported (RoPE needs an even head_dim of at most 4096)",
                       o->model_dir, c->arch.head_dim);
    if (c->arch.family == FAMILY_GEMMA3) return check_gemma_options(c, e);
    if (o->fp16_scale)
        return err_set(e, "--fp16-scale applies to Gemma 3 checkpoints only; this is a %s checkpoint (model_type %s), "
                          "whose blocks have no norm after their branches to carry the scale (ANEMLL's %s converter "
                          "rejects the option too); drop it",
                       fam, c->arch.model_type, fam);
    if (o->split_rotate)
        return err_set(e, "--split-rotate applies to Gemma 3 checkpoints only (it splits their rotate functions); %s "
                          "models have none; drop it",
                       fam);
    if (arch_n_sliding(&c->arch) > 0 && o->context > c->arch.sliding_window)
        return err_set(e, "%s: config.json enables sliding-window attention (window %d) and --context %ld exceeds it; "
                          "sliding windows are converted for Gemma 3 only: use --context %d or less",
                       o->model_dir, c->arch.sliding_window, o->context, c->arch.sliding_window);
    return 0;
}

static int check_tokenizer_files(Conversion *c, Err *e) {
    static const char *const need[] = {"tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        char *p = path_join(c->o.model_dir, need[i]);
        int ok = path_exists(p);
        free(p);
        if (ok) continue;
        if (c->o.skip_check) {
            say(c, CONVERT_WARNING, "%s has no %s; the converted model will have no tokenizer (--skip-check)",
                c->o.model_dir, need[i]);
            continue;
        }
        return err_set(e, "--model %s: %s is missing; chat needs the tokenizer files (tokenizer.json and "
                          "tokenizer_config.json) next to the model. Copy them in, or pass --skip-check to "
                          "convert without them",
                       c->o.model_dir, need[i]);
    }
    return 0;
}

static void warn_quantized_name(Conversion *c) {
    static const char *const marks[] = {"fp8", "gptq", "awq", "4bit", "8bit"};
    char lower[256];
    const char *base = path_basename(c->o.model_dir);
    size_t i = 0;
    for (; base[i] && i + 1 < sizeof lower; i++) lower[i] = (char)(base[i] >= 'A' && base[i] <= 'Z' ? base[i] + 32 : base[i]);
    lower[i] = 0;
    for (size_t k = 0; k < sizeof marks / sizeof marks[0]; k++)
        if (strstr(lower, marks[k]))
            say(c, CONVERT_WARNING, "the folder name suggests a quantized checkpoint (%s); anemll converts fp16/bf16/"
                                    "fp32 weights only",
                marks[k]);
}

/* Every tensor the conversion reads is present with its expected shape. */
static int check_tensors(Conversion *c, Err *e) {
    if (ckpt_open(&c->ckpt, c->o.model_dir, e) < 0) return -1;
    ArchTensor *list;
    int n;
    if (arch_tensor_list(&c->arch, &list, &n) < 0) return err_set(e, "cannot list the tensors of the architecture");
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const StTensor *t = ckpt_require(c->ckpt, list[i].name, e);
        if (!t) {
            rc = err_wrap(e, "--model %s", c->o.model_dir);
            break;
        }
        int same = t->ndim == list[i].ndim;
        for (int d = 0; d < list[i].ndim && same; d++) same = t->shape[d] == list[i].shape[d];
        if (!same)
            rc = err_set(e, "%s: tensor %s has shape [%lld%s%lld], config.json implies [%ld%s%ld]", c->o.model_dir,
                         list[i].name, (long long)t->shape[0], t->ndim > 1 ? ", " : "",
                         t->ndim > 1 ? (long long)t->shape[1] : 0LL, list[i].shape[0], list[i].ndim > 1 ? ", " : "",
                         list[i].ndim > 1 ? list[i].shape[1] : 0L);
    }
    arch_free_tensor_list(list);
    return rc;
}

static void plan_chunks_note(Conversion *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void plan_chunks_note(Conversion *c, const char *fmt, ...) {
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    emit(c, (ConvertEvent){.kind = CONVERT_PLAN, .text = text});
}

/* Functions in the largest combined file: each stores its weights once with
 * --skip-anemll-dedup, otherwise they share one copy. */
static int weight_copies(const Conversion *c) {
    if (!c->o.skip_dedup) return 1;
    return c->rotate && !c->o.split_rotate ? 4 : 2;
}

static int choose_chunks(Conversion *c, Err *e) {
    const Arch *a = &c->arch;
    const LutSpec *lut = &c->o.lut[PART_FFN];
    int copies = weight_copies(c);
    if (c->o.chunks > 0) {
        if (c->o.chunks > a->n_layers)
            return err_set(e, "--chunk %d: the model has %d layers; use at most --chunk %d", c->o.chunks, a->n_layers,
                           a->n_layers);
        c->n_chunks = c->o.chunks;
        return 0;
    }
    uint64_t max = (uint64_t)c->o.max_chunk_mb << 20;
    int n;
    int over = plan_auto_chunks(a, lut, c->state_length, max, copies, &n);
    double largest = (double)plan_largest_chunk_bytes(a, lut, c->state_length, n, copies) / 1048576.0;
    char bits[16];
    snprintf(bits, sizeof bits, lut->bits ? "LUT%d" : "FP16", lut->bits);
    if (over)
        plan_chunks_note(c, "Auto-detected: --chunk %d (%s): even one layer per chunk is %.1f MiB, above --max-chunk-mb "
                            "%ld",
                         n, bits, largest, c->o.max_chunk_mb);
    else if (n == 1)
        plan_chunks_note(c, "Auto-detected: --chunk 1 (%s, all %d layers: %.1f MiB <= %ld MiB per chunk)", bits,
                         a->n_layers, largest, c->o.max_chunk_mb);
    else
        plan_chunks_note(c, "Auto-detected: --chunk %d (%s, largest chunk %.1f MiB <= %ld MiB; %d chunks would need "
                            "%.1f MiB; exact weight.bin sizes)",
                         n, bits, largest, c->o.max_chunk_mb, n - 1,
                         (double)plan_largest_chunk_bytes(a, lut, c->state_length, n - 1, copies) / 1048576.0);
    c->n_chunks = n;
    return 0;
}

/* The output folder exists and is writable, or can be created (nothing is created here). */
static int check_output_dir(Conversion *c, Err *e) {
    const char *out = c->o.output_dir;
    if (path_exists(out)) {
        if (!path_is_dir(out)) return err_set(e, "--output %s exists and is not a folder", out);
        char *probe = xasprintf("%s/.anemll-write-test.%ld", out, (long)getpid());
        FILE *f = fopen(probe, "w");
        int saved = errno;
        if (f) fclose(f);
        unlink(probe);
        free(probe);
        if (!f)
            return err_set(e, "--output %s is not writable (%s); choose another folder or fix its permissions", out,
                           strerror(saved));
        return 0;
    }
    char *parent = xstrdup(out);
    for (;;) {
        char *slash = strrchr(parent, '/');
        if (!slash) {
            strcpy(parent, ".");
            break;
        }
        if (slash == parent) {
            parent[1] = 0;
            break;
        }
        *slash = 0;
        if (path_exists(parent)) break;
    }
    int rc = 0;
    if (!path_is_dir(parent)) rc = err_set(e, "--output %s: %s is not a folder", out, parent);
    else if (access(parent, W_OK | X_OK) < 0)
        rc = err_set(e, "--output %s cannot be created: %s is not writable (%s)", out, parent, strerror(errno));
    free(parent);
    return rc;
}

static int package_exists(const char *path) {
    char *m = path_join(path, "Manifest.json");
    int ok = path_exists(m);
    free(m);
    return ok;
}

/* The single-function kinds this conversion writes (steps 3 and 4). */
static int ffn_kinds(const Conversion *c, PlanFfnKind kinds[PLAN_FFN_FUNCTIONS]) {
    int n = 0;
    kinds[n++] = FFN_INFER;
    kinds[n++] = FFN_PREFILL;
    if (c->rotate) {
        kinds[n++] = FFN_INFER_ROTATE;
        kinds[n++] = FFN_PREFILL_ROTATE;
    }
    return n;
}

/* The combined kinds step 5 writes: FFN_COMBINED, and FFN_COMBINED_ROT with --split-rotate. */
static int combined_kinds(const Conversion *c, PlanFfnKind kinds[2]) {
    kinds[0] = FFN_COMBINED;
    kinds[1] = FFN_COMBINED_ROT;
    return c->rotate && c->o.split_rotate ? 2 : 1;
}

/* The step that writes a single-function kind: 3 (infer kinds) or 4 (prefill kinds). */
static int step_of_kind(PlanFfnKind k) { return plan_ffn_is_prefill(k) ? 4 : 3; }

/* A selected step whose inputs neither exist nor are made by an earlier selected step. */
static int check_step_inputs(Conversion *c, Err *e) {
    const ConvertOptions *o = &c->o;
    char name[256];
    int b2 = o->lut[PART_FFN].bits;
    if (convert_step_selected(o, 5)) {
        PlanFfnKind kinds[PLAN_FFN_FUNCTIONS];
        int nk = ffn_kinds(c, kinds);
        for (int k = 0; k < nk; k++) {
            int step = step_of_kind(kinds[k]);
            if (convert_step_selected(o, step)) continue;
            for (int ch = 0; ch < c->n_chunks; ch++) {
                char *p = out_path(c, plan_ffn_name(c->prefix, kinds[k], b2, ch, c->n_chunks, name, sizeof name),
                                   ".mlpackage");
                int ok = package_exists(p);
                free(p);
                if (!ok)
                    return err_set(e, "step 5 combines %s.mlpackage, which is not in %s; run step %d first (--restart "
                                      "%d), with the same --chunk, --context and --lut2",
                                   name, o->output_dir, step, step);
            }
        }
    }
    PlanFfnKind comb[2];
    int nc = combined_kinds(c, comb);
    for (int step = 6; step <= 8; step += 2) {
        if (!convert_step_selected(o, step)) continue;
        for (int part = 0; part < 2 + nc * c->n_chunks; part++) {
            int made_by = part == 0 ? 1 : part == 1 ? 2 : 5;
            if (convert_step_selected(o, made_by)) continue;
            if (part == 0) plan_embeddings_name(c->prefix, o->lut[PART_EMBEDDINGS].bits, name, sizeof name);
            else if (part == 1) plan_lm_head_name(c->prefix, o->lut[PART_LM_HEAD].bits, name, sizeof name);
            else plan_ffn_name(c->prefix, comb[(part - 2) % nc], b2, (part - 2) / nc, c->n_chunks, name, sizeof name);
            char *p = out_path(c, name, ".mlpackage");
            int ok = package_exists(p);
            free(p);
            if (!ok)
                return err_set(e, "step %d needs %s.mlpackage, which is not in %s; run step %d first (--restart %d)",
                               step, name, o->output_dir, made_by, made_by);
        }
    }
    return 0;
}

static void describe_plan(Conversion *c) {
    const Arch *a = &c->arch;
    char spec[3][32];
    for (int p = 0; p < PART_LUT_COUNT; p++) {
        const char *s = lut_spec_str(&c->o.lut[p], spec[p]);
        if (!*s) snprintf(spec[p], sizeof spec[p], "none");
    }
    plan_chunks_note(c, "model      %s (%s: %d layers, hidden %d, heads %d/%d, head_dim %d, vocab %d%s)",
                     c->o.model_dir, a->model_type, a->n_layers, a->hidden, a->n_heads, a->n_kv_heads, a->head_dim,
                     a->vocab, a->tied ? ", tied" : "");
    plan_chunks_note(c, "output     %s (prefix %s)", c->o.output_dir, c->prefix);
    plan_chunks_note(c, "context    %ld (KV state %d positions), prefill batch %ld", c->o.context, c->state_length,
                     c->o.batch);
    if (plan_split_cache(a)) {
        int n_local, n_global;
        plan_layer_types(a, &n_local, &n_global);
        plan_chunks_note(c, "gemma3     sliding window %d: %d local layers (cache of %d positions), %d global layers "
                            "(%d positions); functions infer, prefill%s%s",
                         a->sliding_window, n_local, c->local_length, n_global, c->state_length,
                         c->rotate ? ", infer_rotate, prefill_rotate" : " (the context fits the window: no rotation)",
                         c->rotate && c->o.split_rotate ? " (rotate functions in _rot files)" : "");
    }
    plan_chunks_note(c, "LUT        embeddings %s, FFN %s, LM head %s", spec[0], spec[1], spec[2]);
    for (int ch = 0; ch < c->n_chunks; ch++) {
        int first, count;
        plan_chunk_layers(a->n_layers, c->n_chunks, ch, &first, &count);
        uint64_t bytes = plan_ffn_chunk_bytes(a, &c->o.lut[PART_FFN], c->state_length, first, count, weight_copies(c));
        plan_chunks_note(c, "chunk %2d   layers %d-%d (%d), %.1f MiB", ch + 1, first, first + count - 1, count,
                         (double)bytes / 1048576.0);
    }
}

/* The --fp16-scale alpha the weights get: the number given, or for auto the preflight's
 * measurement on its prompt (only when a step writes weights: 1, 3 or 4). */
static int resolve_fp16_scale(Conversion *c, Err *e) {
    const ConvertOptions *o = &c->o;
    if (!o->fp16_scale) return 0;
    if (!o->fp16_auto) {
        c->alpha = o->fp16_alpha;
        plan_chunks_note(c, "fp16 scale alpha %.6g (--fp16-scale): embeddings x alpha, post-attention and "
                            "post-feedforward norm gains alpha(1+w)",
                         c->alpha);
        return 0;
    }
    if (!convert_step_selected(o, 1) && !convert_step_selected(o, 3) && !convert_step_selected(o, 4)) {
        plan_chunks_note(c, "--fp16-scale auto: no selected step writes weights; nothing to measure");
        return 0;
    }
    int fallback[32], n = o->n_fp16_prompt;
    const int *ids = o->fp16_prompt;
    if (!ids) {
        n = preflight_fallback_prompt(&c->arch, fallback, 32);
        ids = fallback;
    }
    Fp16Alpha fa;
    double t0 = now_seconds();
    if (preflight_measure_alpha(o->model_dir, ids, n, PREFLIGHT_DEFAULT_MAX_TOKENS, &fa, e) < 0) return -1;
    plan_chunks_note(c, "--fp16-scale auto: float32 residual peak %.1f at %s on the preflight prompt (%d tokens%s, %d "
                        "generated; %.1f s)",
                     (double)fa.peak, fa.peak_at, n, o->fp16_prompt ? "" : ", no tokenizer: spread ids",
                     PREFLIGHT_DEFAULT_MAX_TOKENS, now_seconds() - t0);
    if (fa.needs_scaling) {
        c->alpha = fa.alpha;
        plan_chunks_note(c, "--fp16-scale auto: alpha = 50000 / %.1f = %.6g (embeddings x alpha, post-attention and "
                            "post-feedforward norm gains alpha(1+w))",
                         (double)fa.peak, c->alpha);
    } else {
        plan_chunks_note(c, "--fp16-scale auto: alpha = 1, the peak is below 50000: no scaling needed, the weights "
                            "are converted unscaled");
    }
    return 0;
}

int convert_prepare(Conversion **out, const ConvertOptions *o, const char *tool, ConvertEventFn fn, void *ctx,
                    Err *e) {
    *out = NULL;
    Conversion *c = xcalloc(1, sizeof *c);
    c->lock_fd = -1;
    c->o = *o;
    c->fn = fn;
    c->ctx = ctx;
    snprintf(c->tool, sizeof c->tool, "%s", tool ? tool : "anemll-c");
    snprintf(c->info, sizeof c->info, "Converted with %s (ANEMLL %s interface)", c->tool, "0.3.5");
    int rc = check_model_dir(c, e);
    if (rc == 0) rc = check_family_options(c, e);
    if (rc == 0) {
        c->prefix = o->prefix ? o->prefix : plan_default_prefix(&c->arch);
        c->state_length = plan_state_length(&c->arch, o->context);
        c->local_length = plan_local_length(&c->arch, o->context);
        rc = plan_check_lut_groups(&c->arch, o->lut, e);
    }
    if (rc == 0) rc = check_tokenizer_files(c, e);
    if (rc == 0) {
        warn_quantized_name(c);
        rc = check_tensors(c, e);
    }
    if (rc == 0) rc = choose_chunks(c, e);
    if (rc == 0) rc = check_output_dir(c, e);
    if (rc == 0) rc = check_step_inputs(c, e);
    if (rc == 0) {
        describe_plan(c);
        rc = resolve_fp16_scale(c, e);
    }
    if (rc < 0) {
        convert_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

static void drop_pending(Conversion *c) {
    for (int i = 0; c->pending && i < 2 * c->n_chunks; i++) pkg_writer_abort(c->pending[i].w);
    free(c->pending);
    c->pending = NULL;
}

void convert_free(Conversion *c) {
    if (!c) return;
    part_prefetch_stop(c->prefetch);
    if (c->lock_fd >= 0) close(c->lock_fd);   /* releases the lock */
    ckpt_close(c->ckpt);
    if (c->arch_loaded) arch_free(&c->arch);
    drop_pending(c);
    free(c->results);
    free(c);
}

/* ==== the steps ==== */

static PartSource source(Conversion *c) {
    return (PartSource){.arch = &c->arch, .ckpt = c->ckpt, .threads = c->o.threads, .info = c->info,
                        .note = part_note, .note_ctx = c, .prefetch = c->prefetch, .fp16_scale = c->alpha};
}

static PartCommon common(const Conversion *c) {
    return (PartCommon){.context = c->o.context, .batch = c->o.batch, .state_length = c->state_length,
                        .local_length = c->local_length, .n_chunks = c->n_chunks};
}

static int step_embeddings(Conversion *c, Err *e) {
    char name[256];
    const LutSpec *lut = &c->o.lut[PART_EMBEDDINGS];
    plan_embeddings_name(c->prefix, lut->bits, name, sizeof name);
    char *path = out_path(c, name, ".mlpackage");
    PartSource src = source(c);
    PartCommon pc = common(c);
    PartReport r;
    double t0 = now_seconds();
    int rc = part_write_embeddings(&src, &pc, lut, path, &r, e);
    free(path);
    if (rc == 0) add_result(c, 1, strcat(name, ".mlpackage"), &r, lut->bits, 1, now_seconds() - t0, 0, 0);
    return rc;
}

static int step_lm_head(Conversion *c, Err *e) {
    char name[256];
    const LutSpec *lut = &c->o.lut[PART_LM_HEAD];
    plan_lm_head_name(c->prefix, lut->bits, name, sizeof name);
    char *path = out_path(c, name, ".mlpackage");
    PartSource src = source(c);
    PartCommon pc = common(c);
    PartReport r;
    double t0 = now_seconds();
    int rc = part_write_lm_head(&src, &pc, lut, c->o.argmax, path, &r, e);
    free(path);
    if (rc == 0) add_result(c, 2, strcat(name, ".mlpackage"), &r, lut->bits, 1, now_seconds() - t0, 0, 0);
    return rc;
}

/* The functions of a combined kind, in file order (docs/parts.md): kinds and names. */
static int combined_sources(const Conversion *c, PlanFfnKind comb, PlanFfnKind kinds[PLAN_FFN_FUNCTIONS]) {
    int n = 0;
    if (comb == FFN_COMBINED_ROT) {
        kinds[n++] = FFN_INFER_ROTATE;
        kinds[n++] = FFN_PREFILL_ROTATE;
        return n;
    }
    int rotate = c->rotate && !c->o.split_rotate;
    kinds[n++] = FFN_INFER;
    if (rotate) kinds[n++] = FFN_INFER_ROTATE;
    kinds[n++] = FFN_PREFILL;
    if (rotate) kinds[n++] = FFN_PREFILL_ROTATE;
    return n;
}

/* With step 5 to follow: writers for chunk ch's combined packages, each mirroring (in
 * mirrors[]) its first source's weight.bin. */
static int open_pending(Conversion *c, int ch, PkgWriter *mirrors[PLAN_FFN_FUNCTIONS], Err *e) {
    PlanFfnKind comb[2];
    int nc = combined_kinds(c, comb);
    for (int ci = 0; ci < nc; ci++) {
        PlanFfnKind kinds[PLAN_FFN_FUNCTIONS];
        combined_sources(c, comb[ci], kinds);
        char name[256];
        plan_ffn_name(c->prefix, comb[ci], c->o.lut[PART_FFN].bits, ch, c->n_chunks, name, sizeof name);
        char *path = out_path(c, name, ".mlpackage");
        int rc = pkg_writer_open(&c->pending[2 * ch + ci].w, path, e);
        free(path);
        if (rc < 0) return -1;
        mirrors[kinds[0]] = c->pending[2 * ch + ci].w;
    }
    return 0;
}

/* The weight digests step 5 compares, from step 3's reports of chunk ch. */
static void note_pending_digests(Conversion *c, int ch, const PartReport r[PLAN_FFN_FUNCTIONS]) {
    PlanFfnKind comb[2];
    int nc = combined_kinds(c, comb);
    for (int ci = 0; ci < nc; ci++) {
        PlanFfnKind kinds[PLAN_FFN_FUNCTIONS];
        int n = combined_sources(c, comb[ci], kinds);
        for (int k = 0; k < n; k++)
            memcpy(c->pending[2 * ch + ci].digests[k], r[kinds[k]].weights_digest, sizeof r[0].weights_digest);
    }
}

/* Step 3 (infer kinds), step 4 (prefill kinds), or both in one pass when both are selected. */
static int step_ffn(Conversion *c, int with_infer, int with_prefill, Err *e) {
    const LutSpec *lut = &c->o.lut[PART_FFN];
    PartSource src = source(c);
    PartCommon pc = common(c);
    PlanFfnKind kinds[PLAN_FFN_FUNCTIONS];
    int nk = ffn_kinds(c, kinds);
    int mirror = with_infer && with_prefill && convert_step_selected(&c->o, 5) && !c->o.skip_dedup;
    if (mirror && !c->pending) c->pending = xcalloc(2 * (size_t)c->n_chunks, sizeof *c->pending);
    for (int ch = 0; ch < c->n_chunks; ch++) {
        char names[PLAN_FFN_FUNCTIONS][256];
        char *paths[PLAN_FFN_FUNCTIONS] = {0};
        PkgWriter *mirrors[PLAN_FFN_FUNCTIONS] = {0};
        if (mirror && open_pending(c, ch, mirrors, e) < 0) return -1;
        for (int k = 0; k < nk; k++) {
            PlanFfnKind kind = kinds[k];
            if (!(plan_ffn_is_prefill(kind) ? with_prefill : with_infer)) continue;
            plan_ffn_name(c->prefix, kind, lut->bits, ch, c->n_chunks, names[kind], sizeof names[kind]);
            paths[kind] = out_path(c, names[kind], ".mlpackage");
        }
        PartReport r[PLAN_FFN_FUNCTIONS];
        double t0 = now_seconds();
        int rc = part_write_ffn_mirrored(&src, &pc, lut, ch, (const char *const *)paths, mirrors, r, e);
        double dt = now_seconds() - t0;
        for (int k = 0; k < PLAN_FFN_FUNCTIONS; k++) free(paths[k]);
        if (rc < 0) return -1;
        if (mirror) note_pending_digests(c, ch, r);
        for (int k = 0; k < nk; k++) {
            PlanFfnKind kind = kinds[k];
            if (!paths[kind]) continue;
            add_result(c, step_of_kind(kind), strcat(names[kind], ".mlpackage"), &r[kind], lut->bits, 1, dt, ch + 1,
                       c->n_chunks);
        }
    }
    return 0;
}

static int step_combine(Conversion *c, Err *e) {
    int b = c->o.lut[PART_FFN].bits, mirrored = 0;
    PlanFfnKind comb[2];
    int nc = combined_kinds(c, comb);
    for (int ch = 0; ch < c->n_chunks; ch++)
        for (int ci = 0; ci < nc; ci++) {
            PlanFfnKind kinds[PLAN_FFN_FUNCTIONS];
            int n = combined_sources(c, comb[ci], kinds);
            char names[PLAN_FFN_FUNCTIONS][256], nc_name[256], first[300];
            char *paths[PLAN_FFN_FUNCTIONS];
            const char *fns[PLAN_FFN_FUNCTIONS];
            for (int k = 0; k < n; k++) {
                plan_ffn_name(c->prefix, kinds[k], b, ch, c->n_chunks, names[k], sizeof names[k]);
                paths[k] = out_path(c, names[k], ".mlpackage");
                fns[k] = plan_ffn_function_name(kinds[k]);
            }
            snprintf(first, sizeof first, "%s.mlpackage", names[0]);
            plan_ffn_name(c->prefix, comb[ci], b, ch, c->n_chunks, nc_name, sizeof nc_name);
            char *pc = out_path(c, nc_name, ".mlpackage");
            PartReport r;
            double t0 = now_seconds();
            PendingCombine *pend = c->pending ? &c->pending[2 * ch + ci] : NULL;
            int rc = pend && pend->w ? part_combine_mirrored(n, (const char *const *)paths, fns, pend->w,
                                                             (const uint64_t(*)[2])pend->digests, pc, &r, e)
                                     : part_combine(n, (const char *const *)paths, fns, pc, c->o.skip_dedup, &r, e);
            if (pend) pend->w = NULL;
            mirrored += r.mirrored;
            for (int k = 0; k < n; k++) free(paths[k]);
            free(pc);
            if (rc < 0) return -1;
            /* the same quantized weights as the step-3 package of this chunk, if this run wrote it */
            for (int i = 0; i < c->n_results; i++)
                if (c->results[i].step == 3 && !strcmp(c->results[i].file, first) && c->results[i].report.quantized) {
                    r.quantized = 1;
                    r.lut = c->results[i].report.lut;
                }
            add_result(c, 5, strcat(nc_name, ".mlpackage"), &r, b, 1, now_seconds() - t0, ch + 1, c->n_chunks);
        }
    if (mirrored)
        say(c, CONVERT_NOTE, "weights of %d combined package%s were written by step 3 along with the FFN "
                             "package%s (the same bytes), not copied again",
            mirrored, mirrored > 1 ? "s" : "", mirrored > 1 ? "s" : "");
    return 0;
}

/* <name>.mlpackage in the output folder -> <name>.mlmodelc beside it. */
static int compile_one(Conversion *c, const char *name, Err *e) {
    char *pkg = out_path(c, name, ".mlpackage");
    char *dest;
    int rc = part_compile(pkg, c->o.output_dir, &dest, e);
    if (rc == 0) {
        PartReport r = {.total_bytes = part_disk_bytes(dest)};
        char file[300];
        snprintf(file, sizeof file, "%s.mlmodelc", name);
        add_result(c, 6, file, &r, 0, 0, 0, 0, 0);
        free(dest);
    }
    free(pkg);
    return rc;
}

static int step_compile(Conversion *c, Err *e) {
    if (!part_compiler_available()) {
        say(c, CONVERT_NOTE, "compiling to .mlmodelc needs macOS (xcrun coremlcompiler), which this machine does not "
                             "have: skipped. Core ML compiles .mlpackage files on first load (chat.py falls back to "
                             "them); run --only 6 on a Mac to precompile");
        return 0;
    }
    char name[256];
    plan_embeddings_name(c->prefix, c->o.lut[PART_EMBEDDINGS].bits, name, sizeof name);
    if (compile_one(c, name, e) < 0) return -1;
    plan_lm_head_name(c->prefix, c->o.lut[PART_LM_HEAD].bits, name, sizeof name);
    if (compile_one(c, name, e) < 0) return -1;
    PlanFfnKind comb[2];
    int nc = combined_kinds(c, comb);
    for (int ch = 0; ch < c->n_chunks; ch++)
        for (int ci = 0; ci < nc; ci++) {
            plan_ffn_name(c->prefix, comb[ci], c->o.lut[PART_FFN].bits, ch, c->n_chunks, name, sizeof name);
            if (compile_one(c, name, e) < 0) return -1;
        }
    return 0;
}

/* Copies src to dst through a temporary file (never a partial dst). */
static int copy_file(const char *src, const char *dst, Err *e) {
    char *data;
    size_t len;
    if (file_read_all(src, (size_t)1 << 30, &data, &len, e) < 0) return -1;
    int rc = file_write_atomic(dst, data, len, e);
    free(data);
    return rc;
}

static int same_folder(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static void record_file(Conversion *c, const char *name) {
    char *p = out_path(c, name, "");
    PartReport r = {.total_bytes = part_disk_bytes(p)};
    free(p);
    add_result(c, 7, name, &r, 0, 0, 0, 0, 0);
}

/* The tokenizer files step 7 copies (when present). */
static const char *const tokenizer_files[] = {
    "tokenizer.json",         "tokenizer_config.json",        "tokenizer.model",
    "vocab.json",             "merges.txt",                   "chat_template.jinja",
    "added_tokens.json",      "special_tokens_map.json",      "tokenizer_config_search.json",
    "generation_config.json", "preprocessor_config.json"};
#define N_TOKENIZER_FILES (sizeof tokenizer_files / sizeof tokenizer_files[0])

static int step_tokenizer_meta(Conversion *c, Err *e) {
    const char *const *files = tokenizer_files;
    if (same_folder(c->o.model_dir, c->o.output_dir)) {
        say(c, CONVERT_NOTE, "--output is the model folder: tokenizer files are already there");
    } else {
        for (size_t i = 0; i < N_TOKENIZER_FILES; i++) {
            char *src = path_join(c->o.model_dir, files[i]);
            char *dst = path_join(c->o.output_dir, files[i]);
            int rc = path_exists(src) ? copy_file(src, dst, e) : 1;
            free(src);
            free(dst);
            if (rc < 0) return -1;
            if (rc == 0) record_file(c, files[i]);
        }
        char *cfg = path_join(c->o.output_dir, "config.json");
        int rc = 0;
        if (!path_exists(cfg) && (c->arch.family == FAMILY_QWEN2 || c->arch.family == FAMILY_QWEN3)) {
            /* transformers' AutoTokenizer finds the Qwen tokenizer class through config.json */
            const char *text = c->arch.family == FAMILY_QWEN2
                                   ? "{\n  \"tokenizer_class\": \"Qwen2Tokenizer\",\n  \"model_type\": \"qwen2\"\n}\n"
                                   : "{\n  \"tokenizer_class\": \"Qwen2Tokenizer\",\n  \"model_type\": \"qwen3\"\n}\n";
            rc = file_write_atomic(cfg, text, strlen(text), e);
            if (rc == 0) record_file(c, "config.json");
        }
        free(cfg);
        if (rc < 0) return -1;
    }
    MetaInfo m = {0};
    char model_name[256];
    m.model_name = meta_model_name(c->o.model_dir, model_name, sizeof model_name);
    m.model_path = c->o.model_dir;
    m.architecture = c->arch.model_type;
    m.tool = c->tool;
    m.context = c->o.context;
    m.batch = c->o.batch;
    memcpy(m.lut, c->o.lut, sizeof m.lut);
    m.num_chunks = c->n_chunks;
    m.prefix = c->prefix;
    m.argmax = c->o.argmax;
    m.vocab = c->arch.vocab;
    m.n_splits = plan_lm_head_sizes(&c->arch, m.split_sizes);
    m.sliding_window = arch_n_sliding(&c->arch) > 0 ? c->arch.sliding_window : 0;
    m.split_rotate = c->rotate && c->o.split_rotate;
    m.fp16_scale = c->alpha;
    char *path = path_join(c->o.output_dir, "meta.yaml");
    int rc = meta_yaml_write(path, &m, e);
    free(path);
    if (rc == 0) record_file(c, "meta.yaml");
    return rc;
}

static int step_test(Conversion *c, Err *e) {
    const ConvertOptions *o = &c->o;
    CheckSpec s = {.arch = &c->arch, .context = o->context, .batch = o->batch, .state_length = c->state_length,
                   .local_length = c->local_length, .n_chunks = c->n_chunks, .split_rotate = o->split_rotate,
                   .argmax = o->argmax};
    char name[256];
    int checked = 0;
    s.lut_bits = o->lut[PART_EMBEDDINGS].bits;
    char *p = out_path(c, plan_embeddings_name(c->prefix, s.lut_bits, name, sizeof name), ".mlpackage");
    int rc = check_embeddings(p, &s, e);
    if (rc == 0) killpoint("package checked", p);
    free(p);
    checked += rc == 0;
    s.lut_bits = o->lut[PART_LM_HEAD].bits;
    if (rc == 0) {
        p = out_path(c, plan_lm_head_name(c->prefix, s.lut_bits, name, sizeof name), ".mlpackage");
        rc = check_lm_head(p, &s, e);
        if (rc == 0) killpoint("package checked", p);
        free(p);
        checked += rc == 0;
    }
    s.lut_bits = o->lut[PART_FFN].bits;
    PlanFfnKind comb[2];
    int nc = combined_kinds(c, comb);
    for (int ch = 0; ch < c->n_chunks && rc == 0; ch++)
        for (int ci = 0; ci < nc && rc == 0; ci++) {
            p = out_path(c, plan_ffn_name(c->prefix, comb[ci], s.lut_bits, ch, c->n_chunks, name, sizeof name),
                         ".mlpackage");
            rc = check_ffn(p, &s, comb[ci], ch, e);
            if (rc == 0) killpoint("package checked", p);
            free(p);
            checked += rc == 0;
        }
    if (rc < 0) return err_wrap(e, "step 8 (interface check)");
    say(c, CONVERT_NOTE, "%d packages read back: interfaces match docs/parts.md (names, dtypes, shapes, state, "
                         "functions, metadata)",
        checked);
    return 0;
}

/* ==== the output folder ==== */

/* One conversion at a time per output folder: the lock makes the leftovers below safe to remove
 * (they cannot belong to a conversion still running). Released when the Conversion is freed or
 * the process dies. File systems without locks (some network mounts) go unlocked. */
static int lock_output(Conversion *c, Err *e) {
    c->lock_fd = open(c->o.output_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->lock_fd < 0) return err_errno(e, "--output %s", c->o.output_dir);
    if (flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK)
        return err_set(e, "--output %s: another anemll convert is writing into this folder; wait for it to finish "
                          "(or stop it) and run again",
                       c->o.output_dir);
    return 0;
}

/* name == prefix + sep + a tail of n characters (n = 0: one or more digits). */
static int temp_name(const char *name, const char *prefix, const char *sep, size_t n) {
    size_t lp = strlen(prefix), ls = strlen(sep), ln = strlen(name);
    if (ln <= lp + ls || strncmp(name, prefix, lp) || strncmp(name + lp, sep, ls)) return 0;
    const char *tail = name + lp + ls;
    if (n) return strlen(tail) == n;
    for (const char *q = tail; *q; q++)
        if (*q < '0' || *q > '9') return 0;
    return 1;
}

/* What an interrupted run of this tool leaves in the output folder: package directories being
 * built (X.mlpackage.tmp.XXXXXX) or replaced (X.mlpackage.old.XXXXXX), plain files being
 * written (meta.yaml.tmp.PID, tokenizer files), compiler scratch folders, the write probe. */
static int is_leftover(const char *name) {
    const char *pkg = strstr(name, ".mlpackage.");
    if (pkg && (temp_name(pkg, ".mlpackage", ".tmp.", 6) || temp_name(pkg, ".mlpackage", ".old.", 6))) return 1;
    if (!strncmp(name, ".compile.", 9) || temp_name(name, ".anemll-write-test", ".", 0)) return 1;
    if (temp_name(name, "meta.yaml", ".tmp.", 0) || temp_name(name, "config.json", ".tmp.", 0)) return 1;
    for (size_t i = 0; i < N_TOKENIZER_FILES; i++)
        if (temp_name(name, tokenizer_files[i], ".tmp.", 0)) return 1;
    return 0;
}

static void remove_leftovers(Conversion *c) {
    DIR *d = opendir(c->o.output_dir);
    if (!d) return;
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_leftover(de->d_name)) continue;
        char *p = path_join(c->o.output_dir, de->d_name);
        if (remove_tree(p) == 0) removed++;
        free(p);
    }
    closedir(d);
    if (removed)
        say(c, CONVERT_NOTE, "removed %d unfinished file%s left by an interrupted conversion", removed,
            removed == 1 ? "" : "s");
}

/* meta.yaml is what marks the folder as a finished conversion (the runtime starts from it). A run
 * that rewrites packages removes it first and step 7 writes it again, so a run that stops in
 * between never leaves an old meta.yaml over a mix of old and new packages. */
static void retire_meta(Conversion *c) {
    int rewrites = 0;
    for (int s = 1; s <= 5; s++) rewrites |= convert_step_selected(&c->o, s);
    if (!rewrites || !convert_step_selected(&c->o, 7)) return;
    char *p = path_join(c->o.output_dir, "meta.yaml");
    if (unlink(p) == 0) say(c, CONVERT_NOTE, "meta.yaml removed until step 7 writes it again");
    free(p);
}

/* ==== the driver ==== */

static int run_steps(Conversion *c, Err *e);

static int run_step(Conversion *c, int step, Err *e) {
    const ConvertOptions *o = &c->o;
    switch (step) {
    case 1: return step_embeddings(c, e);
    case 2: return step_lm_head(c, e);
    case 3: {
        int both = convert_step_selected(o, 4);
        c->ffn_prefill_done = both;
        if (both) say(c, CONVERT_NOTE, "one pass writes the FFN (step 3) and prefill (step 4) packages: each weight "
                                       "is read and quantized once");
        return step_ffn(c, 1, both, e);
    }
    case 4:
        if (c->ffn_prefill_done) {
            say(c, CONVERT_NOTE, "prefill packages were written with step 3");
            return 0;
        }
        return step_ffn(c, 0, 1, e);
    case 5: return step_combine(c, e);
    case 6: return step_compile(c, e);
    case 7: return step_tokenizer_meta(c, e);
    case 8: return step_test(c, e);
    }
    return err_set(e, "unknown step %d", step);
}

#define PREFETCH_BUDGET ((size_t)256 << 20)

/* Every weight matrix steps 1-4 will read, in their order, read and quantized ahead. */
static void start_prefetch(Conversion *c) {
    const ConvertOptions *o = &c->o;
    PartWeightJob *jobs = NULL;
    int n = 0, cap = 0;
    if (convert_step_selected(o, 1))
        part_jobs_embeddings(&c->arch, &o->lut[PART_EMBEDDINGS], c->alpha, &jobs, &n, &cap);
    if (convert_step_selected(o, 2)) part_jobs_lm_head(&c->arch, &o->lut[PART_LM_HEAD], &jobs, &n, &cap);
    if (convert_step_selected(o, 3) || convert_step_selected(o, 4))
        for (int ch = 0; ch < c->n_chunks; ch++)
            part_jobs_ffn(&c->arch, &o->lut[PART_FFN], ch, c->n_chunks, &jobs, &n, &cap);
    if (n) {
        PartSource src = source(c);
        c->prefetch = part_prefetch_start(&src, jobs, n, PREFETCH_BUDGET);
    }
    free(jobs);
}

static void stop_prefetch(Conversion *c) {
    if (!c->prefetch) return;
    int hits, misses;
    part_prefetch_counts(c->prefetch, &hits, &misses);
    if (misses) say(c, CONVERT_WARNING, "internal: %d weights were read out of the planned order (slower, same output)",
                    misses);
    part_prefetch_stop(c->prefetch);
    c->prefetch = NULL;
}

/* The weight pipeline allocates and frees buffers of megabytes per matrix (read blocks, packed
 * indices, per-thread k-means tables). glibc would hand the big ones back to the kernel at each
 * free and fault them in again, page by page, at the next matrix; keeping them for reuse saves
 * about a tenth of the conversion's CPU time. */
static void keep_freed_buffers(void) {
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD)
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
}

int convert_run(Conversion *c, Err *e) {
    keep_freed_buffers();
    if (mkdir_p(c->o.output_dir, e) < 0) return err_wrap(e, "--output");
    if (lock_output(c, e) < 0) return -1;
    remove_leftovers(c);
    retire_meta(c);
    start_prefetch(c);
    int rc = run_steps(c, e);
    stop_prefetch(c);
    return rc;
}

static int run_steps(Conversion *c, Err *e) {
    for (int step = 1; step <= CONVERT_STEPS; step++) {
        c->step = step;
        killpoint_step(step);
        ConvertEvent ev = {.step = step, .title = step_titles[step]};
        if (!convert_step_selected(&c->o, step)) {
            ev.kind = CONVERT_STEP_SKIP;
            emit(c, ev);
            continue;
        }
        ev.kind = CONVERT_STEP_BEGIN;
        emit(c, ev);
        double t0 = now_seconds();
        if (run_step(c, step, e) < 0) {
            c->failed_step = step;
            return err_wrap(e, "step %d (%s)", step, step_titles[step]);
        }
        ev.kind = CONVERT_STEP_END;
        ev.seconds = now_seconds() - t0;
        emit(c, ev);
    }
    return 0;
}
