/* cmd_preflight.c - `anemll preflight`: will the model survive fp16, and what fixes it if not
 * (the work is done by model/preflight.c; this file tokenizes, prints and picks the exit status). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "common/half.h"
#include "common/util.h"
#include "model/preflight.h"
#include "runtime/tokenizer.h"

static const char *usage_text =
    "usage: anemll preflight --model DIR [--report PATH] [--no-sweep] [--prompt TEXT | --tokens IDS]\n"
    "                        [--max-tokens N] [--fp16-scale auto|ALPHA]\n"
    "\n"
    "Checks whether the checkpoint in DIR runs in fp16 (the Neural Engine's precision): runs the\n"
    "reference forward pass greedily on a prompt in float32, fp16 (every op output rounded),\n"
    "fp16 weights in float32 and bfloat16; reports where fp16 overflows (|x| > 65504, inf, NaN)\n"
    "per layer and op, the float32 residual peaks, the recommended --fp16-scale alpha\n"
    "(50000 / peak) and, for Gemma 3, whether that alpha fixes it; sweeps a residual clamp\n"
    "(65000, 60000, ..., 20000) and compares each run's greedy tokens with float32's.\n"
    "Writes a JSON report (ANEMLL fp16_compatibility_check keys plus ours, each defined in it).\n"
    "\n"
    "  --model DIR          Hugging Face checkpoint folder\n"
    "  --report PATH        report file (default tests/dev/logs/fp16_preflight_<YYYYmmdd_HHMMSS>.json\n"
    "                       under the current directory; folders are created)\n"
    "  --no-sweep           skip the clamp sweep\n"
    "  --prompt TEXT        prompt, encoded with DIR's tokenizer\n"
    "                       (default \"" PREFLIGHT_DEFAULT_PROMPT "\")\n"
    "  --tokens IDS         prompt as comma-separated token ids instead (no tokenizer needed)\n"
    "  --max-tokens N       greedy tokens per run (default 30, at most 4096)\n"
    "  --fp16-scale A       check the model as `convert --fp16-scale A` writes it: A in (0, 1], or\n"
    "                       auto (alpha from the float32 residual peak); Gemma 3 only\n"
    "  -h, --help           this text\n"
    "\n"
    "Exit status: 0 fp16-compatible (the fp16 run has no inf/NaN and every greedy token equals\n"
    "float32's), 1 not compatible or an error, 2 bad usage.\n";

typedef struct Args {
    const char *model, *report, *prompt;
    int *tokens, n_tokens;
    long max_tokens;
    int sweep;
    const char *scale_text;
} Args;

static int parse_args(int argc, char **argv, Args *a) {
    a->max_tokens = PREFLIGHT_DEFAULT_MAX_TOKENS;
    a->sweep = 1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--no-sweep")) {
            a->sweep = 0;
            continue;
        }
        static const char *valued[] = {"--model", "--report", "--prompt", "--tokens", "--max-tokens", "--fp16-scale"};
        int known = 0;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) known |= !strcmp(o, valued[k]);
        if (!known) return cli_usage_error("preflight", "unknown option '%s'", o);
        if (i + 1 >= argc) return cli_usage_error("preflight", "%s needs a value", o);
        const char *v = argv[++i];
        if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--report")) a->report = v;
        else if (!strcmp(o, "--prompt")) a->prompt = v;
        else if (!strcmp(o, "--fp16-scale")) a->scale_text = v;
        else if (!strcmp(o, "--tokens")) {
            int rc = cli_opt_ids("preflight", o, v, &a->tokens, &a->n_tokens);
            if (rc) return rc;
        } else {
            int rc = cli_opt_int("preflight", o, v, 1, PREFLIGHT_MAX_TOKENS_LIMIT, &a->max_tokens);
            if (rc) return rc;
        }
    }
    if (!a->model) return cli_usage_error("preflight", "--model is required");
    if (a->prompt && a->tokens) return cli_usage_error("preflight", "give the prompt as --prompt or --tokens, not both");
    if (a->report && !*a->report) return cli_usage_error("preflight", "--report wants a file path");
    if (a->scale_text) {
        double alpha;
        int is_auto;
        Err e = {0};
        if (fp16_scale_parse(a->scale_text, &alpha, &is_auto, &e) < 0) return cli_usage_error("preflight", "%s", e.msg);
    }
    return 0;
}

/* ==== prompt and decoding ================================================= */

static char *decode_ids(void *ctx, const int *ids, int n) {
    char *text = NULL;
    Err e = {0};
    if (!ctx || tok_decode(ctx, ids, n, 0, &text, NULL, &e) < 0) return NULL;
    return text;
}

/* The prompt ids: --tokens as given, else the text encoded with the model's tokenizer. */
static int prompt_ids(const Args *a, Tokenizer *tok, int **ids, int *n, Err *e) {
    if (a->tokens) {
        *ids = xmalloc(sizeof **ids * (size_t)a->n_tokens);
        memcpy(*ids, a->tokens, sizeof **ids * (size_t)a->n_tokens);
        *n = a->n_tokens;
        return 0;
    }
    if (!tok) return -1;
    const char *text = a->prompt ? a->prompt : PREFLIGHT_DEFAULT_PROMPT;
    if (tok_encode(tok, text, strlen(text), TOK_ADD_SPECIAL, ids, n, e) < 0) return -1;
    if (*n == 0) {
        free(*ids);
        return err_set(e, "--prompt encodes to no tokens");
    }
    return 0;
}

/* ==== the summary ========================================================= */

static const char *yes_no(int v) { return v ? "yes" : "NO"; }

static void print_run(const char *name, const PreflightRun *r) {
    if (!r->done) return;
    const char *bad = r->stats && r->stats->first_nonfinite[0] ? r->stats->first_nonfinite : "-";
    int decimals = r->residual_peak < 100 ? 3 : 0; /* small models peak at a few units */
    printf("  %-18s %-5s  %5.2f  %-10.*f  %s\n", name, yes_no(r->works), r->match_rate, decimals,
           (double)r->residual_peak, bad);
}

static void print_summary(const Preflight *p) {
    printf("fp16 preflight: %s (%s, %d layers)\n", p->model_dir, p->arch.model_type, p->arch.n_layers);
    printf("  prompt: %d tokens; %d greedy tokens per run%s\n", p->n_prompt, p->max_tokens,
           p->fp16_scale ? "; weights scaled as --fp16-scale" : "");
    if (p->fp16_scale) printf("  fp16 scale: %.6g\n", p->fp16_scale);
    printf("  weights: %llu parameters, max |w| %g (%s), %d tensor(s) beyond 65504\n\n",
           (unsigned long long)p->total_params, (double)p->weight_max_abs, p->tensor_names[p->weight_max_tensor],
           p->n_weights_exceed_fp16);
    printf("  %-18s %-5s  %5s  %-10s  %s\n", "run", "works", "match", "resid peak", "first inf/NaN");
    print_run("fp32", &p->fp32);
    print_run("fp16", &p->fp16);
    print_run("fp16 weights, fp32", &p->fp16_to_fp32);
    print_run("bf16", &p->bf16);
    char name[40];
    snprintf(name, sizeof name, "fp16, alpha %.4g", p->scaled_alpha);
    print_run(name, &p->fp16_scaled);

    printf("\n  float32 residual peaks  after attention  after mlp  fp16 overflow values\n");
    const RefStats *s = p->fp32.stats;
    for (int l = 0; l < s->n_layers; l++)
        printf("    layer %-4d %27.1f %10.1f  %ld\n", l, (double)s->layers[l].resid_after_attn,
               (double)s->layers[l].resid_after_mlp, p->fp16.stats->layers[l].n_overflow);
    printf("  peak %.1f at %s (%.2fx fp16's 65504)", (double)p->residual_peak, p->residual_peak_at,
           (double)p->residual_peak / FP16_MAX);
    if (p->first_overflow_layer >= 0) printf("; first layer beyond 65504: %d", p->first_overflow_layer);
    printf("\n  fp16 first overflow: %s\n", p->fp16.stats->first_overflow[0] ? p->fp16.stats->first_overflow : "none");
    if (isfinite(p->recommended_alpha))
        printf("  recommended alpha: %.4g (%s%s)\n", p->recommended_alpha,
               p->recommended_alpha < 1 ? "50000 / peak" : "no scaling needed",
               p->recommended_alpha < 1 && !p->scaling_supported ? "; --fp16-scale does not exist for this architecture"
                                                                  : "");

    if (p->n_clamps) {
        printf("\n  clamp sweep   success  clamped  match\n");
        for (int i = 0; i < p->n_clamps; i++) {
            const PreflightClamp *c = &p->clamps[i];
            printf("    %-10.0f  %-7s  %-7s  %.2f\n", (double)c->clamp, yes_no(c->run.works),
                   c->n_clamped ? "yes" : "no", c->run.match_rate);
        }
    }
    if (p->n_issues) printf("\n  issues:\n");
    for (int i = 0; i < p->n_issues; i++) printf("    - %s\n", p->issues[i]);
    printf("\n  recommendations:\n");
    for (int i = 0; i < p->n_recommendations; i++) printf("    - %s\n", p->recommendations[i]);
    printf("\n  verdict: %s (score %.2f)\n", p->compatible ? "fp16-compatible" : "NOT fp16-compatible", p->score);
}

/* ==== the command ========================================================= */

static char *default_report_path(void) {
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d_%H%M%S", &tm);
    return xasprintf("tests/dev/logs/fp16_preflight_%s.json", stamp);
}

/* --fp16-scale: the alpha to check with (0 = none), measuring it for "auto". */
static int resolve_scale(const Args *a, const int *ids, int n, double *alpha, Err *e) {
    *alpha = 0;
    if (!a->scale_text) return 0;
    int is_auto;
    if (fp16_scale_parse(a->scale_text, alpha, &is_auto, e) < 0) return -1;
    if (!is_auto) return 0;
    Fp16Alpha fa;
    if (preflight_measure_alpha(a->model, ids, n, (int)a->max_tokens, &fa, e) < 0) return -1;
    *alpha = fa.alpha;
    printf("--fp16-scale auto: float32 residual peak %.1f at %s -> alpha %.6g%s\n", (double)fa.peak, fa.peak_at,
           fa.alpha, fa.needs_scaling ? "" : " (below 50000: no scaling needed)");
    return 0;
}

static int run_preflight(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return CLI_OK;
    }
    Args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc) {
        free(a.tokens);
        return rc;
    }
    Err e = {0}, tok_err = {0};
    Arch arch;
    if (arch_load(&arch, a.model, &e) < 0) { /* a missing or broken folder says so before the tokenizer does */
        free(a.tokens);
        return cli_fail("%s", e.msg);
    }
    arch_free(&arch);
    Tokenizer *tok = NULL;
    if (tok_load(&tok, a.model, &tok_err) < 0) tok = NULL; /* only needed for --prompt; decoding is optional */
    int *ids = NULL, n = 0;
    Preflight *p = NULL;
    double alpha = 0;
    char *report = a.report ? xstrdup(a.report) : default_report_path();
    if (prompt_ids(&a, tok, &ids, &n, &e) < 0) {
        if (!tok) err_set(&e, "cannot encode the prompt: %s. Pass the prompt as token ids with --tokens", tok_err.msg);
        rc = cli_fail("%s", e.msg);
    } else if (resolve_scale(&a, ids, n, &alpha, &e) < 0) {
        rc = cli_fail("%s", e.msg);
    } else {
        PreflightOptions opt = {.prompt = ids, .n_prompt = n, .prompt_text = a.tokens ? NULL : (a.prompt ? a.prompt : PREFLIGHT_DEFAULT_PROMPT),
                                .max_tokens = (int)a.max_tokens, .sweep = a.sweep, .fp16_scale = alpha};
        if (preflight_run(&p, a.model, &opt, &e) < 0) {
            rc = cli_fail("%s", e.msg);
        } else {
            print_summary(p);
            if (preflight_write_report(p, report, decode_ids, tok, &e) < 0) rc = cli_fail("%s", e.msg);
            else {
                printf("  report: %s\n", report);
                rc = p->compatible ? CLI_OK : CLI_FAIL;
            }
        }
    }
    preflight_free(p);
    free(report);
    free(ids);
    free(a.tokens);
    tok_free(tok);
    return rc;
}

CLI_COMMAND(preflight, "preflight", "fp16 overflow check: per-layer peaks, recommended --fp16-scale, clamp sweep",
            run_preflight)
