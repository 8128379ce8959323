/* cmd_convert.c - `anemll convert`: a Hugging Face checkpoint to ANEMLL's Core ML packages
 * (the pipeline of ../shared/seed/convert_model.md; the work is done by parts/convert.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>

#include "cli/cli.h"
#include "common/util.h"
#include "parts/convert.h"
#include "model/preflight.h"
#include "runtime/tokenizer.h"
#include "runtime/verify.h"

#define TOOL_NAME "anemll-c 0.1.0"

static const char *usage_text =
    "usage: anemll convert --model DIR --output DIR [options]\n"
    "\n"
    "Converts a Hugging Face checkpoint (llama: Llama 3.x, DeepSeek-R1-Distill-Llama; qwen3; qwen2: Qwen2.5;\n"
    "gemma3_text and gemma3: Gemma 3)\n"
    "into Core ML packages for the Apple Neural Engine, laid out as ANEMLL 0.3.5 lays them out (its chat.py\n"
    "and Swift CLI run them): embeddings, FFN+prefill chunks, LM head, meta.yaml and the tokenizer files.\n"
    "\n"
    "  --model DIR           Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer files)\n"
    "  --output DIR          output folder (created if missing)\n"
    "  --context N           context length (default 512)\n"
    "  --batch N             prefill batch size (default 64, at most the context)\n"
    "  --lut1 SPEC           LUT for the embeddings (default none)\n"
    "  --lut2 SPEC           LUT for the FFN/prefill chunks (default 4)\n"
    "  --lut3 SPEC           LUT for the LM head (default 6)\n"
    "                        SPEC: bits (1, 2, 3, 4, 6, 8) with the default group of 8 output channels per\n"
    "                        LUT, bits,group (e.g. 6,4), bits,0 or bits,tensor for one LUT per tensor,\n"
    "                        or \"\" / none for fp16\n"
    "  --restart N           run steps N..8 (default 1)\n"
    "  --only N              run step N only (--only 6 compiles every part)\n"
    "  --chunk N|auto        number of FFN chunks (default 2); auto: the fewest chunks whose largest\n"
    "                        weight file fits --max-chunk-mb (exact quantized sizes)\n"
    "  --max-chunk-mb N      MiB per chunk for --chunk auto (default 950)\n"
    "  --prefix NAME         file name prefix (default llama; qwen for qwen3, qwen25 for qwen2, gemma3)\n"
    "  --skip-check          convert even without tokenizer files (a warning instead of an error)\n"
    "  --skip-anemll-dedup   store the infer and prefill weights of a combined chunk separately\n"
    "                        (default: each weight once, shared by both functions)\n"
    "  --argmax              LM head outputs argmax_idx/argmax_val (greedy only) instead of logits\n"
    "  --fp16-scale V        Gemma 3 only: scale the residual stream by V in (0, 1] so it fits fp16 (embeddings\n"
    "                        x V, post-attention/post-feedforward norm gains V(1+w); logits unchanged), or\n"
    "                        auto: V = 50000 / the float32 residual peak the preflight measures on its prompt\n"
    "                        (1 = no scaling needed). See `anemll preflight`\n"
    "  --split-rotate        Gemma 3 with --context beyond the sliding window: write infer_rotate and\n"
    "                        prefill_rotate in a second file per chunk (..._chunk_NNofMM_rot), not in the\n"
    "                        four-function FFN_PF file\n"
    "  --threads N           quantization threads (default: all cores)\n"
    "  -h, --help            this text\n"
    "\n"
    "Steps: 1 embeddings, 2 LM head, 3 FFN (Gemma 3: + FFN_rotate), 4 prefill (+ prefill_rotate), 5 combine,\n"
    "6 compile (macOS only), 7 tokenizer +\n"
    "meta.yaml, 8 test (every package read back and checked). Every package is written atomically; a\n"
    "conversion run twice, or resumed with --restart, writes byte-identical files. An interrupted\n"
    "conversion (killed, crashed, disk full) leaves no half-written file and no meta.yaml: run again\n"
    "with --restart at the step it was in (a failed run prints the command).\n";

typedef struct Printer {
    double t0;
} Printer;

static void human_bytes(uint64_t b, char *buf, size_t n) {
    if (b >= (uint64_t)1 << 30) snprintf(buf, n, "%.2f GiB", (double)b / (1 << 30));
    else if (b >= 1 << 20) snprintf(buf, n, "%.1f MiB", (double)b / (1 << 20));
    else if (b >= 1 << 10) snprintf(buf, n, "%.1f KiB", (double)b / (1 << 10));
    else snprintf(buf, n, "%llu B", (unsigned long long)b);
}

/* User + system CPU time of this process so far (every thread). */
static double cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0) return 0;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void on_event(void *ctx, const ConvertEvent *ev) {
    Printer *p = ctx;
    char size[32];
    switch (ev->kind) {
    case CONVERT_PLAN: printf("  %s\n", ev->text); break;
    case CONVERT_STEP_BEGIN: printf("\nStep %d: %s\n", ev->step, ev->title); break;
    case CONVERT_STEP_SKIP: printf("\nSkipping step %d: %s\n", ev->step, ev->title); break;
    case CONVERT_STEP_END:
        printf("  step %d done in %.1f s (%.1f s elapsed, %.1f s CPU, peak memory %.0f MiB)\n", ev->step, ev->seconds,
               now_seconds() - p->t0, cpu_seconds(), (double)peak_rss_kb() / 1024.0);
        break;
    case CONVERT_PART:
        human_bytes(ev->report->total_bytes, size, sizeof size);
        if (ev->count) printf("  [chunk %d/%d] ", ev->index, ev->count);
        else printf("  ");
        printf("%s  %s", ev->file, size);
        if (ev->report->quantized) printf("  LUT SNR %.1f dB", lut_stats_snr_db(&ev->report->lut));
        if (ev->seconds > 0) printf("  (%.1f s)", ev->seconds);
        printf("\n");
        break;
    case CONVERT_NOTE: printf("  note: %s\n", ev->text); break;
    case CONVERT_WARNING: printf("  warning: %s\n", ev->text); break;
    }
    fflush(stdout);
}

static void print_summary(const Conversion *c, const ConvertOptions *o, double seconds) {
    int n;
    const ConvertResult *r = convert_results(c, &n);
    printf("\nConversion finished in %.1f s (peak memory %.0f MiB). Files written to %s:\n", seconds,
           (double)peak_rss_kb() / 1024.0, o->output_dir);
    printf("  %-4s  %-52s  %10s  %5s  %9s\n", "step", "file", "size", "LUT", "SNR (dB)");
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        char size[32], lut[8] = "-", snr[16] = "-";
        human_bytes(r[i].report.total_bytes, size, sizeof size);
        total += r[i].report.total_bytes;
        if (r[i].is_package) snprintf(lut, sizeof lut, r[i].lut_bits ? "%d" : "fp16", r[i].lut_bits);
        if (r[i].report.quantized) snprintf(snr, sizeof snr, "%.1f", lut_stats_snr_db(&r[i].report.lut));
        printf("  %-4d  %-52s  %10s  %5s  %9s", r[i].step, r[i].file, size, lut, snr);
        if (r[i].report.shared_bytes) {
            human_bytes(r[i].report.shared_bytes, size, sizeof size);
            printf("  (%s shared by its functions)", size);
        }
        printf("\n");
    }
    char size[32];
    human_bytes(total, size, sizeof size);
    printf("  total %s\n", size);
    if (convert_step_selected(o, 7) || convert_step_selected(o, 8)) {
        printf("\nTo chat with the model on this machine (CPU): anemll chat --meta %s/meta.yaml\n", o->output_dir);
        printf("To chat with the model on a Mac (ANEMLL): python3 tests/chat.py --meta %s/meta.yaml\n", o->output_dir);
    }
}

#define STEP8_TOKENS 16

/* Step 8, after the interface check: the packages against the float32 reference of the
 * checkpoint (runtime/verify.h). A report past the default thresholds is a warning, not a
 * failure: quantization loses what the chosen LUT sizes lose, and `anemll verify` (whose exit
 * status follows the thresholds) is there to gate on it. Returns -1 only when verify could not
 * run. */
static int verify_step(const ConvertOptions *o) {
    char *meta = path_join(o->output_dir, "meta.yaml"), skip[512], why[512];
    VerifyReport r;
    VerifyThresholds th;
    Err e = {0};
    verify_default_thresholds(&th);
    printf("\nStep 8: verify against the reference forward pass (CPU, %d generated tokens)\n", STEP8_TOKENS);
    fflush(stdout);
    int rc = verify_quick(meta, o->model_dir, STEP8_TOKENS, &r, skip, sizeof skip, &e);
    if (rc == 1) {
        printf("  verify skipped: %s\n", skip);
        rc = 0;
    } else if (rc == 0) {
        char *text = verify_format(&r, &th);
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) printf("  %s\n", line);
        free(text);
        if (!verify_passes(&r, &th, why, sizeof why))
            printf("  warning: the packages differ from the checkpoint more than verify's default thresholds allow "
                   "(%s); with LUT quantization this is its loss, otherwise a conversion problem. Details: anemll "
                   "verify --meta %s --model %s\n",
                   why, meta, o->model_dir);
        verify_report_free(&r);
    } else {
        fprintf(stderr, "error: step 8 (verify): %s\n", e.msg);
    }
    fflush(stdout);
    free(meta);
    return rc;
}

/* The command line again, with --restart/--only replaced by the step to resume at. */
static void print_resume_command(int argc, char **argv, const char *opt, int step) {
    fprintf(stderr, "  anemll convert");
    for (int i = 1; i < argc; i++) {   /* argv[0] is "convert" */
        if (!strcmp(argv[i], "--restart") || !strcmp(argv[i], "--only")) {
            i++;
            continue;
        }
        if (!strncmp(argv[i], "--restart=", 10) || !strncmp(argv[i], "--only=", 7)) continue;
        const char *a = argv[i];
        if (strpbrk(a, " \t'\"$\\") || !*a) {
            fputs(" '", stderr);
            for (; *a; a++) fputs(*a == '\'' ? "'\\''" : (char[]){*a, 0}, stderr);
            fputc('\'', stderr);
        } else {
            fprintf(stderr, " %s", a);
        }
    }
    fprintf(stderr, " %s %d\n", opt, step);
}

/* After a failed run: what is left, why (a full disk is named as such), and how to resume. */
static void explain_failure(const Conversion *c, const ConvertOptions *o, const char *msg, int argc, char **argv) {
    if (strstr(msg, strerror(ENOSPC)) || strstr(msg, strerror(EDQUOT))) {
        struct statvfs vfs;
        if (statvfs(o->output_dir, &vfs) == 0)
            fprintf(stderr, "The file system of %s is full (%.1f MiB free): free space there or choose another "
                            "--output.\n",
                    o->output_dir, (double)vfs.f_bavail * (double)vfs.f_frsize / 1048576.0);
    }
    int step = convert_failed_step(c);
    if (!step) return;
    fprintf(stderr, "Nothing half-written was left behind: files and packages appear only when complete%s. "
                    "Fix the cause and resume with:\n",
            step > 1 && !o->only ? " (those of the steps before it are done)" : "");
    print_resume_command(argc, argv, o->only ? "--only" : "--restart", step);
}

static int run_convert(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return CLI_OK;
    }
    ConvertOptions o;
    convert_options_init(&o);
    Err e = {0};
    if (convert_options_parse(&o, argc, argv, &e) < 0) return cli_usage_error("convert", "%s", e.msg);
    Printer p = {now_seconds()};
    printf("anemll convert: %s -> %s\n", o.model_dir, o.output_dir);
    int *scale_ids = NULL;
    if (o.fp16_auto) {   /* the preflight's prompt, with the model's tokenizer when it has one */
        Tokenizer *tok;
        Err te = {0};
        int n = 0;
        if (tok_load(&tok, o.model_dir, &te) == 0) {
            const char *text = PREFLIGHT_DEFAULT_PROMPT;
            if (tok_encode(tok, text, strlen(text), TOK_ADD_SPECIAL, &scale_ids, &n, &te) == 0 && n > 0) {
                o.fp16_prompt = scale_ids;
                o.n_fp16_prompt = n;
            }
            tok_free(tok);
        }
    }
    Conversion *c;
    if (convert_prepare(&c, &o, TOOL_NAME, on_event, &p, &e) < 0) {
        free(scale_ids);
        return cli_fail("%s", e.msg);
    }
    int rc = convert_run(c, &e);
    if (rc < 0) {
        fprintf(stderr, "error: %s\n", e.msg);
        explain_failure(c, &o, e.msg, argc, argv);
    } else {
        if (convert_step_selected(&o, 8) && verify_step(&o) < 0) rc = -1;
        print_summary(c, &o, now_seconds() - p.t0);
    }
    convert_free(c);
    free(scale_ids);
    return rc < 0 ? CLI_FAIL : CLI_OK;
}

CLI_COMMAND(convert, "convert", "convert a Hugging Face checkpoint to Core ML packages (ANEMLL layout)", run_convert)
