/* part.h - writing the model parts of a conversion as .mlpackage files (docs/parts.md).
 *
 *   part_write_embeddings   {prefix}_embeddings[_lutB]: input_ids (1,1)|(1,batch) -> hidden_states
 *   part_write_lm_head      {prefix}_lm_head[_lutB]: hidden_states -> logits1..S, or argmax_idx/argmax_val
 *   part_write_ffn          one chunk's {prefix}_FFN (infer), {prefix}_prefill, and for gemma3 with a
 *                           context beyond the sliding window {prefix}_FFN_rotate (infer_rotate) and
 *                           {prefix}_prefill_rotate packages, any subset; each weight is read and
 *                           quantized once and written to every package asked for
 *   part_combine            {prefix}_FFN_PF[_rot]: single-function packages read back and written as one
 *                           multifunction package (the first function is the default), identical blobs
 *                           stored once
 *
 * Weights stream from the checkpoint: one tensor (or a block of rows of it) is read as fp16,
 * quantized if its part has a LUT, written to weight.bin and dropped before the next one.
 * Every package is written atomically (coreml/package.h): a failed or interrupted part leaves
 * nothing that looks like a package. Output bytes depend only on the checkpoint and the
 * options (quantization is deterministic; no timestamps): the same conversion twice, or a
 * restarted one, writes byte-identical packages.
 *
 * Return convention: 0, or -1 with a message in *e naming the package and the tensor.
 */
#ifndef ANEMLL_PARTS_PART_H
#define ANEMLL_PARTS_PART_H

#include <stdint.h>

#include "common/err.h"
#include "coreml/package.h"
#include "io/checkpoint.h"
#include "model/arch.h"
#include "parts/plan.h"
#include "quant/lut.h"

/* Notes for the user (e.g. fp16 overflow clamped); the CLI prints them. */
typedef void (*PartNoteFn)(void *ctx, const char *msg);

typedef struct PartPrefetch PartPrefetch;

typedef struct PartSource {
    const Arch *arch;
    const Checkpoint *ckpt;
    int threads;                    /* quantization threads; <= 0 all cores */
    const char *info;               /* com.anemll.info, e.g. "Converted with anemll-c 0.1.0" */
    PartNoteFn note;                /* may be NULL */
    void *note_ctx;
    PartPrefetch *prefetch;         /* NULL: every weight is read when the builder needs it */
    double fp16_scale;              /* gemma3 --fp16-scale alpha; 0 or 1 = none (model/fp16_scale.h) */
} PartSource;

/* What one written package holds, for the closing table. */
typedef struct PartReport {
    uint64_t weight_bytes;          /* weight.bin */
    uint64_t total_bytes;           /* weight.bin + model.mlmodel + Manifest.json */
    uint64_t shared_bytes;          /* blob bytes stored once but used twice (combine) */
    uint32_t blobs;
    int quantized;                  /* 1 if any weight is LUT-quantized */
    LutStats lut;                   /* over every quantized weight */
    uint64_t weights_digest[2];     /* part_write_ffn: of weight.bin (PkgWriteStats.digest) */
    int mirrored;                   /* part_combine_mirrored: the weights were written with step 3 */
} PartReport;

/* Shared settings of the parts of one conversion. */
typedef struct PartCommon {
    long context;
    long batch;
    int state_length;               /* plan_state_length (gemma3: the global cache) */
    int local_length;               /* plan_local_length (gemma3: the local cache), else 0 */
    int n_chunks;
} PartCommon;

int part_write_embeddings(const PartSource *src, const PartCommon *c, const LutSpec *lut, const char *path,
                          PartReport *r, Err *e);

int part_write_lm_head(const PartSource *src, const PartCommon *c, const LutSpec *lut, int argmax, const char *path,
                       PartReport *r, Err *e);

/* Chunk `chunk` (0-based) of c->n_chunks. paths[k], k a PlanFfnKind below PLAN_FFN_FUNCTIONS
 * (FFN_INFER, FFN_PREFILL, FFN_INFER_ROTATE, FFN_PREFILL_ROTATE): the package of that kind to
 * write, or NULL; its report in r[k]. Rotate kinds only for gemma3 with context > sliding window. */
int part_write_ffn(const PartSource *src, const PartCommon *c, const LutSpec *lut, int chunk,
                   const char *const paths[PLAN_FFN_FUNCTIONS], PartReport r[PLAN_FFN_FUNCTIONS], Err *e);

/* part_write_ffn, and the weight.bin of each kind k with mirrors[k] (an open package writer or
 * NULL) is also written into mirrors[k]'s weight.bin, for part_combine_mirrored. */
int part_write_ffn_mirrored(const PartSource *src, const PartCommon *c, const LutSpec *lut, int chunk,
                            const char *const paths[PLAN_FFN_FUNCTIONS], PkgWriter *const mirrors[PLAN_FFN_FUNCTIONS],
                            PartReport r[PLAN_FFN_FUNCTIONS], Err *e);

/* Combines n single-function packages (function main) of one chunk into out_path as functions
 * names[0..n) (names[0] the default). separate_copies: store each function's weights separately
 * (--skip-anemll-dedup) instead of once. */
int part_combine(int n, const char *const *paths, const char *const *names, const char *out_path, int separate_copies,
                 PartReport *r, Err *e);
/* part_combine (sharing blobs) into `mirrored`, a package writer at out_path whose weight.bin
 * mirrored paths[0]'s as part_write_ffn_mirrored wrote it; digests[i]: the weights_digest
 * reported for paths[i]. When digests[0] equals the mirror's and the combined file would lay
 * paths[0]'s blobs out as its own file does, the functions refer to the mirror's blobs and the
 * first source's weights are not read or written again (r->mirrored = 1; sources with another
 * digest are read, and their blobs found by content or added); otherwise the mirror is dropped
 * and part_combine runs. The output bytes are the same either way. Takes `mirrored` over
 * (finished or aborted). */
int part_combine_mirrored(int n, const char *const *paths, const char *const *names, PkgWriter *mirrored,
                          const uint64_t (*digests)[2], const char *out_path, PartReport *r, Err *e);

/* ==== reading ahead ====
 * The weight matrices the part builders will read, in the order they read them, can be read and
 * quantized ahead on a background thread while the builders write earlier ones: the builders find
 * the results ready (and fall back to reading themselves if asked for something else). The output
 * is the same bytes either way. At most budget_bytes of finished results wait (always at least
 * one). */
typedef struct PartWeightJob {
    char tensor[160];
    long r0, rows, cols;
    LutSpec lut;
    double scale;                   /* values multiplied by this in float before rounding (0 = 1) */
} PartWeightJob;

/* Append the jobs of a part to *jobs (*n entries, *cap capacity; grown with xrealloc). */
void part_jobs_embeddings(const Arch *a, const LutSpec *lut, double fp16_scale, PartWeightJob **jobs, int *n,
                          int *cap);
/* The factor the embedding table is stored with: gemma's embed_scale times --fp16-scale alpha. */
double part_embedding_scale(const Arch *a, double fp16_scale);
void part_jobs_lm_head(const Arch *a, const LutSpec *lut, PartWeightJob **jobs, int *n, int *cap);
void part_jobs_ffn(const Arch *a, const LutSpec *lut, int chunk, int n_chunks, PartWeightJob **jobs, int *n, int *cap);

/* Starts reading ahead (the jobs are copied). src->prefetch is not set by this call. */
PartPrefetch *part_prefetch_start(const PartSource *src, const PartWeightJob *jobs, int n, size_t budget_bytes);
/* Stops the background thread and frees what it holds. NULL is a no-op. */
void part_prefetch_stop(PartPrefetch *p);
/* Requests served from results read ahead, and requests that were not the next job. */
void part_prefetch_counts(const PartPrefetch *p, int *hits, int *misses);
/* Blocks of grouped-LUT matrices the quantizer took from the reader thread, and blocks it asked
 * the reader for but read itself (both 0 when no reader thread could be started). */
void part_prefetch_blocks(const PartPrefetch *p, int *ahead, int *here);

/* Total bytes of the regular files under path (a package directory or a file); 0 if absent. */
uint64_t part_disk_bytes(const char *path);

#endif
