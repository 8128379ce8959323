/* cmd_chunks.c - `anemll chunks`: the chunk split calculator (ANEMLL's calc_chunk_split.py),
 * from the exact weight.bin sizes convert would write (parts/plan.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "parts/options.h"
#include "parts/plan.h"

static const char *usage_text =
    "usage: anemll chunks --model DIR [--lut SPEC] [--max-chunk-mb N] [--context N] [--skip-anemll-dedup] [--auto]\n"
    "\n"
    "Chunk split calculator: the size of every FFN chunk `anemll convert` would write for the checkpoint in DIR\n"
    "(exact weight.bin bytes: packed LUT indices, LUTs, fp16 norms and RoPE tables, blob records and\n"
    "alignment), and the fewest chunks whose largest fits the limit (what --chunk auto picks).\n"
    "\n"
    "  --model DIR           Hugging Face checkpoint folder (only config.json is read)\n"
    "  --lut SPEC            FFN LUT as for convert's --lut2: bits or bits,group, \"\"/none = fp16 (default 4)\n"
    "  --max-chunk-mb N      MiB per chunk (default 950)\n"
    "  --context N           context length (sizes the RoPE tables; default 512)\n"
    "  --skip-anemll-dedup   size combined chunks that store each function's weights separately\n"
    "  --auto                print only the recommended chunk count\n"
    "  -h, --help            this text\n";

typedef struct Args {
    const char *model;
    LutSpec lut;
    long max_mb, context;
    int copies, auto_only;
} Args;

static int parse_args(int argc, char **argv, Args *a) {
    a->lut = (LutSpec){4, LUT_DEFAULT_GROUP};
    a->max_mb = CONVERT_DEFAULT_MAX_CHUNK_MB;
    a->context = CONVERT_DEFAULT_CONTEXT;
    a->copies = 1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--auto")) {
            a->auto_only = 1;
            continue;
        }
        if (!strcmp(o, "--skip-anemll-dedup")) {
            a->copies = 2;
            continue;
        }
        if (strcmp(o, "--model") && strcmp(o, "--lut") && strcmp(o, "--max-chunk-mb") && strcmp(o, "--context"))
            return cli_usage_error("chunks", "unknown option '%s'", o);
        if (i + 1 >= argc) return cli_usage_error("chunks", "%s needs a value", o);
        const char *v = argv[++i];
        Err e;
        if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--lut")) {
            if (lut_parse_option("--lut", v, &a->lut, &e) < 0) return cli_usage_error("chunks", "%s", e.msg);
        } else {
            long x;
            long hi = !strcmp(o, "--context") ? CONVERT_MAX_CONTEXT : 1L << 30;
            if (cli_parse_int(v, &x) < 0 || x < 1 || x > hi)
                return cli_usage_error("chunks", "%s wants a positive number (at most %ld), got '%s'", o, hi, v);
            *(!strcmp(o, "--context") ? &a->context : &a->max_mb) = x;
        }
    }
    if (!a->model) return cli_usage_error("chunks", "--model is required");
    return 0;
}

static double mib(uint64_t b) { return (double)b / 1048576.0; }

static int run_chunks(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return CLI_OK;
    }
    Args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    Arch arch;
    Err e = {0};
    if (arch_load(&arch, a.model, &e) < 0) return cli_fail("%s", e.msg);
    LutSpec luts[3] = {{0, 0}, a.lut, {0, 0}};
    if (plan_check_lut_groups(&arch, luts, &e) < 0) {
        arch_free(&arch);
        return cli_fail("%s", e.msg);
    }
    int state = plan_state_length(&arch, a.context);
    if (a.copies > 1 && plan_has_rotate(&arch, a.context)) a.copies = 4;   /* gemma3: four functions per file */
    uint64_t max = (uint64_t)a.max_mb << 20;
    int n;
    int over = plan_auto_chunks(&arch, &a.lut, state, max, a.copies, &n);
    if (a.auto_only) {
        printf("%d\n", n);
        arch_free(&arch);
        return CLI_OK;
    }
    char bits[16];
    snprintf(bits, sizeof bits, a.lut.bits ? "LUT%d" : "FP16", a.lut.bits);
    LutSpec fp16 = {0, 0};
    printf("model        %s (%s, %d layers, hidden %d, intermediate %d, heads %d/%d, head_dim %d, vocab %d)\n",
           a.model, arch.model_type, arch.n_layers, arch.hidden, arch.intermediate, arch.n_heads, arch.n_kv_heads,
           arch.head_dim, arch.vocab);
    printf("per layer    %.2f MiB fp16", mib(plan_ffn_chunk_bytes(&arch, &fp16, 0, 0, 1, 1)));
    if (a.lut.bits) printf(", %.2f MiB %s", mib(plan_ffn_chunk_bytes(&arch, &a.lut, 0, 0, 1, 1)), bits);
    printf(" (weight.bin of a one-layer chunk without RoPE tables)\n");
    printf("not chunked  embeddings %.1f MiB fp16, LM head %.1f MiB fp16 (their own packages)\n",
           mib(plan_embeddings_bytes(&arch, &fp16)), mib(plan_lm_head_bytes(&arch, &fp16)));
    printf("\n  chunks  layers/chunk  largest chunk (MiB)\n");
    for (int c = 1; c <= arch.n_layers; c++) {
        uint64_t largest = plan_largest_chunk_bytes(&arch, &a.lut, state, c, a.copies);
        int first, count;
        plan_chunk_layers(arch.n_layers, c, 0, &first, &count);
        printf("  %6d  %12d  %19.1f%s\n", c, count, mib(largest), largest <= max ? "  fits" : "");
        if (c >= n + 2) break;
    }
    if (over)
        printf("\nNo split fits: one layer per chunk exceeds %ld MiB; --chunk auto would use %d chunks\n", a.max_mb, n);
    else
        printf("\nRecommended: --chunk %d (%s, max %ld MiB per chunk)\n", n, bits, a.max_mb);
    arch_free(&arch);
    return CLI_OK;
}

CLI_COMMAND(chunks, "chunks", "chunk split calculator: FFN chunk sizes and the --chunk auto choice", run_chunks)
