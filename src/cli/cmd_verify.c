/* cmd_verify.c - `anemll verify`: converted packages against the HF-exact reference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/util.h"
#include "model/reference.h"
#include "runtime/llm.h"
#include "runtime/verify.h"

static const char *usage_text =
    "usage: anemll verify --meta DIR/meta.yaml --model HFDIR [--prompt TEXT | --tokens IDS] [--max-new N]\n"
    "                     [--json] [--dequantized] [--threads N] [--min-agreement F] [--min-cosine F] [--max-kl F]\n"
    "\n"
    "Runs the converted packages (CPU interpreter, fp16 at every op) and the reference forward pass of\n"
    "the Hugging Face checkpoint (float32) on the same input: the reference generates N tokens greedily\n"
    "and the packages follow the same sequence (teacher forcing). Reports, over the N generated\n"
    "positions, top-1 agreement, KL divergence of the next-token distributions (mean, max), logit\n"
    "cosine (mean, min) and the first position where the greedy tokens differ.\n"
    "Exit status 0 when every threshold holds, 1 otherwise (or on error).\n"
    "\n"
    "  --meta PATH          meta.yaml written by `anemll convert`\n"
    "  --model DIR          the Hugging Face checkpoint that was converted\n"
    "  --prompt TEXT        prompt text, encoded with the model's tokenizer (special tokens added as\n"
    "                       Hugging Face's encode does); default: \"" VERIFY_DEFAULT_PROMPT "\"\n"
    "  --tokens IDS         prompt token ids instead of text\n"
    "  --max-new N          generated positions to compare (default 32)\n"
    "  --json               print the report as one JSON object\n"
    "  --dequantized        give the reference the packages' dequantized LUT weights instead of the\n"
    "                       checkpoint's (a float32 copy of the checkpoint is written to a temporary\n"
    "                       folder): the report then shows the conversion's own error, without the\n"
    "                       quantization loss\n"
    "  --threads N          threads for the products and OpenBLAS (default: all cores)\n"
    "  --min-agreement F    pass threshold for top-1 agreement, 0..1 (default 0.50)\n"
    "  --min-cosine F       pass threshold for the mean logit cosine (default 0.90)\n"
    "  --max-kl F           pass threshold for the mean KL divergence in nats (default 0.25)\n"
    "  -h, --help           this text\n"
    "\n"
    "The default thresholds reject broken conversions (wrong layouts, fp16 overflow: agreement near 0,\n"
    "cosine < 0.5) and accept LUT-quantized models, which lose a little. An fp16 conversion should match\n"
    "closely: check it with --min-agreement 1 --min-cosine 0.9999.\n";

typedef struct Args {
    const char *meta, *model, *prompt;
    int *tokens;
    int n_tokens;
    long max_new, threads;
    int json, dequantized;
    VerifyThresholds th;
} Args;

static int parse_frac(const char *opt, const char *v, double lo, double hi, double *out) {
    if (cli_parse_double(v, out) < 0 || *out < lo || *out > hi)
        return cli_usage_error("verify", "%s wants a number in [%g, %g], got '%s'", opt, lo, hi, v);
    return 0;
}

static int parse_args(int argc, char **argv, Args *a) {
    a->max_new = 32;
    verify_default_thresholds(&a->th);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--json") || !strcmp(o, "--dequantized")) {
            if (!strcmp(o, "--json")) a->json = 1;
            else a->dequantized = 1;
            continue;
        }
        static const char *const valued[] = {"--meta", "--model", "--prompt", "--tokens", "--max-new", "--threads",
                                             "--min-agreement", "--min-cosine", "--max-kl"};
        int known = 0;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) known |= !strcmp(o, valued[k]);
        if (!known) return cli_usage_error("verify", "unknown option '%s'", o);
        if (i + 1 >= argc) return cli_usage_error("verify", "%s needs a value", o);
        const char *v = argv[++i];
        int rc = 0;
        if (!strcmp(o, "--meta")) a->meta = v;
        else if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--prompt")) a->prompt = v;
        else if (!strcmp(o, "--tokens")) rc = cli_opt_ids("verify", o, v, &a->tokens, &a->n_tokens);
        else if (!strcmp(o, "--max-new")) rc = cli_opt_int("verify", o, v, 1, 100000, &a->max_new);
        else if (!strcmp(o, "--threads")) rc = cli_opt_int("verify", o, v, 1, 1024, &a->threads);
        else if (!strcmp(o, "--min-agreement")) rc = parse_frac(o, v, 0, 1, &a->th.min_agreement);
        else if (!strcmp(o, "--min-cosine")) rc = parse_frac(o, v, -1, 1, &a->th.min_cosine);
        else rc = parse_frac(o, v, 0, 1e9, &a->th.max_kl);
        if (rc) return rc;
    }
    if (!a->meta) return cli_usage_error("verify", "--meta is required");
    if (!a->model) return cli_usage_error("verify", "--model is required (the Hugging Face checkpoint folder)");
    if (a->prompt && a->tokens) return cli_usage_error("verify", "give --prompt or --tokens, not both");
    return 0;
}

/* Prompt ids from --tokens, or the text encoded with the tokenizer beside meta.yaml (else the
 * checkpoint's). */
static int prompt_ids(const Args *a, const Llm *m, int **ids, int *n, Err *e) {
    if (a->tokens) {
        *ids = xmalloc(sizeof(int) * (size_t)a->n_tokens);
        memcpy(*ids, a->tokens, sizeof(int) * (size_t)a->n_tokens);
        *n = a->n_tokens;
        return 0;
    }
    if (verify_prompt_ids(llm_meta(m)->tokenizer_dir, a->model, a->prompt ? a->prompt : VERIFY_DEFAULT_PROMPT, ids, n, e) < 0)
        return err_wrap(e, "verify --prompt (or pass --tokens)");
    return 0;
}

static int run_verify(int argc, char **argv) {
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
    Err e = {0};
    Llm *m = NULL;
    RefModel *ref = NULL;
    int *ids = NULL, n = 0;
    VerifyReport r;
    memset(&r, 0, sizeof r);
    char *dq_dir = NULL;
    RtOptions ro = {.threads = (int)a.threads};
    rc = llm_open(&m, a.meta, &ro, &e);
    if (rc == 0 && a.dequantized) {
        const char *base = getenv("TMPDIR");
        dq_dir = xasprintf("%s/anemll-verify.XXXXXX", base && *base ? base : "/tmp");
        int replaced = 0;
        if (!mkdtemp(dq_dir)) rc = err_errno(&e, "cannot create a temporary folder %s", dq_dir);
        if (rc == 0) rc = verify_dequantized_checkpoint(m, a.model, dq_dir, &replaced, &e);
        if (rc == 0)
            fprintf(a.json ? stderr : stdout, "reference: %s with the packages' dequantized weights (%d LUT tensors)\n",
                    a.model, replaced);
    }
    if (rc == 0) rc = ref_load(&ref, dq_dir ? dq_dir : a.model, NULL, &e);
    if (rc == 0) rc = prompt_ids(&a, m, &ids, &n, &e);
    if (rc == 0) rc = verify_run(m, ref, ids, n, (int)a.max_new, &r, &e);
    int pass = 0;
    if (rc == 0) {
        char *text = a.json ? verify_format_json(&r, &a.th) : verify_format(&r, &a.th);
        fputs(text, stdout);
        if (a.json) fputc('\n', stdout);
        free(text);
        pass = verify_passes(&r, &a.th, NULL, 0);
    }
    verify_report_free(&r);
    free(ids);
    free(a.tokens);
    ref_free(ref);
    llm_close(m);
    if (dq_dir) remove_tree(dq_dir);
    free(dq_dir);
    if (rc < 0) return cli_fail("%s", e.msg);
    return pass ? CLI_OK : CLI_FAIL;
}

CLI_COMMAND(verify, "verify", "compare converted packages with the HF-exact reference (agreement, KL, cosine)", run_verify)
