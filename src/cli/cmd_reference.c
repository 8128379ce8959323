/* cmd_reference.c - `anemll reference`: greedy continuation from the HF-exact reference pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/util.h"
#include "model/reference.h"

static const char *usage_text =
    "usage: anemll reference --model DIR --tokens IDS [--max-new N] [--json] [--fp16]\n"
    "\n"
    "Runs the reference forward pass (float32, Hugging Face transformers semantics) of the\n"
    "checkpoint in DIR on the prompt token ids and prints the greedy continuation.\n"
    "\n"
    "  --model DIR     Hugging Face checkpoint folder (config.json + *.safetensors)\n"
    "  --tokens IDS    prompt token ids, comma-separated (e.g. 128000,791,6864)\n"
    "  --max-new N     tokens to generate (default 16; generation never stops early)\n"
    "  --json          print {\"tokens\": [generated ids], \"logits_last_top5\": [[id, value], ...]},\n"
    "                  the top-5 logits at the last prompt position\n"
    "  --fp16          fp16 weights with every op's output rounded to fp16 (overflow shows up\n"
    "                  as inf/NaN logits) instead of float32\n"
    "  -h, --help      this text\n";

typedef struct Args {
    const char *model;
    int *tokens;
    int n_tokens;
    long max_new;
    int json, fp16;
} Args;

static int parse_args(int argc, char **argv, Args *a) {
    a->max_new = 16;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(o, "--json")) a->json = 1;
        else if (!strcmp(o, "--fp16")) a->fp16 = 1;
        else if (!strcmp(o, "--model") || !strcmp(o, "--tokens") || !strcmp(o, "--max-new")) {
            if (!has_value) return cli_usage_error("reference", "%s needs a value", o);
            const char *v = argv[++i];
            int rc = 0;
            if (!strcmp(o, "--model")) a->model = v;
            else if (!strcmp(o, "--tokens")) rc = cli_opt_ids("reference", o, v, &a->tokens, &a->n_tokens);
            else rc = cli_opt_int("reference", o, v, 0, 1000000, &a->max_new);
            if (rc) return rc;
        } else {
            return cli_usage_error("reference", "unknown option '%s'", o);
        }
    }
    if (!a->model) return cli_usage_error("reference", "--model is required");
    if (!a->tokens) return cli_usage_error("reference", "--tokens is required");
    return 0;
}

static void print_json(const int *gen, long n_gen, const int *top_ids, const float *top_vals, int k) {
    printf("{\"tokens\": [");
    for (long i = 0; i < n_gen; i++) printf("%s%d", i ? ", " : "", gen[i]);
    printf("], \"logits_last_top5\": [");
    for (int i = 0; i < k; i++) printf("%s[%d, %.9g]", i ? ", " : "", top_ids[i], (double)top_vals[i]);
    printf("]}\n");
}

static int run_reference(int argc, char **argv) {
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
    RefModel *m;
    Err e = {0};
    RefOptions opt = {.precision = a.fp16 ? REF_FP16 : REF_FP32};
    if (ref_load(&m, a.model, &opt, &e) < 0) {
        free(a.tokens);
        return cli_fail("%s", e.msg);
    }
    int vocab = ref_arch(m)->vocab, k = vocab < 5 ? vocab : 5;
    float *logits = xmalloc(sizeof *logits * (size_t)vocab);
    int *gen = xmalloc(sizeof *gen * (size_t)(a.max_new + 1));
    int top_ids[5];
    float top_vals[5];
    rc = ref_forward(m, a.tokens, a.n_tokens, 0, logits, 0, &e);
    if (rc == 0) ref_top_k(logits, vocab, k, top_ids, top_vals);
    for (long g = 0; rc == 0 && g < a.max_new; g++) {
        gen[g] = ref_argmax(logits, vocab);
        if (g + 1 < a.max_new) rc = ref_forward(m, &gen[g], 1, a.n_tokens + (int)g, logits, 0, &e);
    }
    if (rc == 0) {
        if (a.json) {
            print_json(gen, a.max_new, top_ids, top_vals, k);
        } else {
            for (long g = 0; g < a.max_new; g++) printf("%s%d", g ? "," : "", gen[g]);
            printf("\n");
        }
    }
    free(gen);
    free(logits);
    free(a.tokens);
    ref_free(m);
    return rc == 0 ? CLI_OK : cli_fail("%s", e.msg);
}

CLI_COMMAND(reference, "reference", "greedy continuation from the HF-exact reference forward pass", run_reference)
