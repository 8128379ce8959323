/* options.h - the options of `anemll convert` (and of anemll/utils/convert_model.sh, which
 * passes them through unchanged), as ../shared/seed/convert_model.md specifies them.
 *
 *   --model DIR           Hugging Face checkpoint folder (required)
 *   --output DIR          output folder, created if missing (required)
 *   --context N           context length (512)
 *   --batch N             prefill batch size (64); 1 <= N <= context
 *   --lut1 / --lut2 / --lut3 SPEC
 *                         LUT for embeddings / FFN+prefill / LM head: "bits" or "bits,group"
 *                         (group 0 or "tensor": one LUT per tensor), "" or "none" = no LUT.
 *                         Defaults: none, 4, 6 (group 8).
 *   --restart N           run steps N..8 (1)
 *   --only N              run step N only
 *   --chunk N|auto        FFN chunks (2); auto: the fewest chunks whose largest fits --max-chunk-mb
 *   --max-chunk-mb N      MiB per chunk for --chunk auto (950)
 *   --prefix NAME         file-name prefix (llama; qwen for qwen3, qwen25 for qwen2 unless given)
 *   --skip-check          skip the pre-flight checks that are not needed to convert (tokenizer
 *                         files present, Core ML compiler present)
 *   --skip-anemll-dedup   the combined FFN_PF packages store the weights of each function separately
 *   --argmax              LM head outputs argmax_idx/argmax_val instead of logits
 *   --fp16-scale V        Gemma 3 only: residual scaling by alpha V in (0, 1], or auto (alpha =
 *                         50000 / the float32 residual peak measured on the preflight prompt)
 *   --split-rotate        Gemma 3 with a context beyond the sliding window: the rotate functions
 *                         in a second file per chunk (..._chunk_NNofMM_rot)
 *   --threads N           worker threads for quantization (default: all cores)
 * Both "--opt value" and "--opt=value" are accepted.
 *
 * Parsing checks everything that can be checked without the model (numbers, ranges, LUT
 * specs, batch <= context, --restart/--only ranges); checks that need config.json (group sizes
 * against channel counts, chunk count against layers, Gemma-only options) are made by
 * convert_prepare (convert.h).
 *
 * Return convention: 0, or -1 with a message in *e naming the option and the fix.
 * The strings in ConvertOptions point into argv (or are static defaults).
 */
#ifndef ANEMLL_PARTS_OPTIONS_H
#define ANEMLL_PARTS_OPTIONS_H

#include "common/err.h"
#include "quant/lut.h"

enum { PART_EMBEDDINGS = 0, PART_FFN = 1, PART_LM_HEAD = 2, PART_LUT_COUNT = 3 };

#define CONVERT_STEPS 8
#define CONVERT_DEFAULT_CONTEXT 512
#define CONVERT_DEFAULT_BATCH 64
#define CONVERT_DEFAULT_CHUNKS 2
#define CONVERT_DEFAULT_MAX_CHUNK_MB 950
#define CONVERT_MAX_CONTEXT 32768     /* int16 position indices on the ANE */

typedef struct ConvertOptions {
    const char *model_dir;
    const char *output_dir;
    long context;
    long batch;
    LutSpec lut[PART_LUT_COUNT];      /* [PART_EMBEDDINGS] = --lut1, [PART_FFN] = --lut2, [PART_LM_HEAD] = --lut3 */
    int restart;                      /* 1..8 */
    int only;                         /* 0 = every step from restart on */
    int chunks;                       /* 0 = auto */
    long max_chunk_mb;
    const char *prefix;               /* NULL = the family's default */
    int skip_check;
    int skip_dedup;
    int argmax;
    const char *fp16_scale;           /* NULL = not given; else "auto" or the number as given */
    int fp16_auto;                    /* --fp16-scale auto */
    double fp16_alpha;                /* --fp16-scale as a number (0 = not given or auto) */
    const int *fp16_prompt;           /* auto: the prompt ids to measure on (the CLI encodes
                                         PREFLIGHT_DEFAULT_PROMPT with the model's tokenizer);
                                         NULL: preflight_fallback_prompt */
    int n_fp16_prompt;
    int split_rotate;
    int threads;                      /* 0 = all cores */
} ConvertOptions;

/* The seed's defaults. */
void convert_options_init(ConvertOptions *o);

/* Parses argv[1..argc) (argv[0] is the command name) into *o, which must have been initialised.
 * -h/--help is not handled here. */
int convert_options_parse(ConvertOptions *o, int argc, char **argv, Err *e);

/* 1 if step s (1..8) runs under these options. */
int convert_step_selected(const ConvertOptions *o, int step);

/* Option name of a LUT slot: "--lut1", "--lut2", "--lut3". */
const char *convert_lut_option(int part);

#endif
