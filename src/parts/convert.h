/* convert.h - the conversion pipeline of ../shared/seed/convert_model.md, steps 1-8.
 *
 *   1 embeddings     {prefix}_embeddings[_lut{b1}].mlpackage
 *   2 LM head        {prefix}_lm_head[_lut{b3}].mlpackage
 *   3 FFN            {prefix}_FFN[_lut{b2}]_chunk_NNofMM.mlpackage       (function main = infer)
 *   4 prefill        {prefix}_prefill[_lut{b2}]_chunk_NNofMM.mlpackage   (function main = prefill)
 *   5 combine        {prefix}_FFN_PF[_lut{b2}]_chunk_NNofMM.mlpackage    (infer + prefill, shared blobs)
 *   6 compile        *.mlmodelc with `xcrun coremlcompiler compile` where it exists (macOS);
 *                    elsewhere a note (Core ML compiles .mlpackage files on first load)
 *   7 tokenizer      tokenizer files copied, config.json for Qwen tokenizers, meta.yaml
 *   8 test           every package read back and checked against the interface (check.h)
 *
 * --restart N runs steps N..8, --only N step N alone. When steps 3 and 4 both run, one pass
 * over the checkpoint writes both packages of a chunk (each weight read and quantized once).
 *
 * convert_prepare makes every check that can fail before work starts (options against the
 * model, config.json, tokenizer files, the checkpoint's tensors, LUT groups, the chunk count,
 * the output folder, inputs of the selected steps) and creates nothing. convert_run creates the
 * output folder and runs the steps, reporting progress through the event callback.
 *
 * Interruptions (a kill, a crash, a full disk): every package and file appears under its name
 * only when complete (written beside it, synced, renamed). convert_run locks the output folder
 * (one conversion at a time), removes what an interrupted run left unfinished there, and, when it
 * rewrites packages and will write meta.yaml again, removes meta.yaml first: a folder with a
 * meta.yaml holds a finished conversion. On failure it names the step to --restart from.
 *
 * Return convention: 0, or -1 with a message in *e. Ownership: the Conversion owns everything
 * it opened; convert_free releases it.
 */
#ifndef ANEMLL_PARTS_CONVERT_H
#define ANEMLL_PARTS_CONVERT_H

#include "common/err.h"
#include "model/arch.h"
#include "parts/options.h"
#include "parts/part.h"

typedef enum ConvertEventKind {
    CONVERT_PLAN,          /* text: the plan (one line per call) */
    CONVERT_STEP_BEGIN,    /* step, title */
    CONVERT_STEP_SKIP,     /* step, title: not selected */
    CONVERT_STEP_END,      /* step, title, seconds */
    CONVERT_PART,          /* step, file, report, seconds, index/count (chunk i of n; 0/0 otherwise) */
    CONVERT_NOTE,          /* step, text */
    CONVERT_WARNING,       /* step, text */
} ConvertEventKind;

typedef struct ConvertEvent {
    ConvertEventKind kind;
    int step;
    const char *title;
    const char *text;
    const char *file;             /* file name inside the output folder */
    const PartReport *report;
    double seconds;
    int index, count;
} ConvertEvent;

typedef void (*ConvertEventFn)(void *ctx, const ConvertEvent *ev);

/* One row of the closing table: a file the run wrote. */
typedef struct ConvertResult {
    int step;
    char file[256];
    PartReport report;            /* total_bytes only, for plain files */
    int lut_bits;                 /* 0: fp16 / not a package */
    int is_package;
} ConvertResult;

typedef struct Conversion Conversion;

/* tool: "anemll-c 0.1.0" (package metadata and meta.yaml comment). */
int convert_prepare(Conversion **out, const ConvertOptions *o, const char *tool, ConvertEventFn fn, void *ctx,
                    Err *e);
int convert_run(Conversion *c, Err *e);
void convert_free(Conversion *c);

const Arch *convert_arch(const Conversion *c);
int convert_n_chunks(const Conversion *c);
const char *convert_prefix(const Conversion *c);
/* The step convert_run failed in (resume with --restart at it), or 0. */
int convert_failed_step(const Conversion *c);
/* Rows of the closing table (valid until convert_free). */
const ConvertResult *convert_results(const Conversion *c, int *n);

/* Title of step s ("Convert Embeddings", ...). */
const char *convert_step_title(int step);

#endif
