/* plan.h - what a conversion will write, decided before anything is written: file names, the
 * chunk -> layer split, LM-head split sizes, the KV state length, and the exact size of every
 * package's weight.bin (for --chunk auto and `anemll chunks`).
 *
 * Rules (docs/parts.md):
 *   chunk c of N (0-based) holds layers [c*base + min(c, rem), ...) with base, rem = divmod(L, N):
 *     the first rem chunks take one extra layer;
 *   LM head: S = 8 splits for llama, 16 for qwen2/qwen3/gemma3; split i has V/S + (i < V%S) rows;
 *   state_length = max(ctx, 512) for llama, max(ctx, 256) for the qwen families, ctx for gemma3
 *     (ANEMLL's --state-length default);
 *   gemma3: the local (sliding-window) cache holds min(sliding_window, ctx) positions; rotate
 *     functions exist when ctx > sliding_window;
 *   names: {prefix}_embeddings[_lut{b}], {prefix}_lm_head[_lut{b}],
 *          {prefix}_{FFN|prefill|FFN_rotate|prefill_rotate|FFN_PF}[_lut{b}]_chunk_{NN}of{MM}[_rot],
 *          + ".mlpackage"/".mlmodelc".
 *
 * Sizes are computed from the blobs the part builders write (ffn.c, embeddings.c, lm_head.c),
 * in the same order, with weight.bin's layout (coreml/blob.h): a 64-byte header, then per blob a
 * 64-byte record at a 64-aligned offset followed by its data (packed LUT indices, the fp16 LUT,
 * fp16 weights, norms, biases, RoPE tables); data under 10 elements stays inline in the program.
 * A test checks them against the files actually written.
 */
#ifndef ANEMLL_PARTS_PLAN_H
#define ANEMLL_PARTS_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "model/arch.h"
#include "quant/lut.h"

#define PLAN_MAX_SPLITS 16

/* ==== names ==== */

/* The family's default prefix: llama, qwen (qwen3), qwen25 (qwen2), gemma3. */
const char *plan_default_prefix(const Arch *a);

/* The FFN packages of a chunk. The first PLAN_FFN_FUNCTIONS kinds are one function each (written by
 * steps 3 and 4, in that order in part_write_ffn's arrays); the combined kinds hold several:
 *   FFN_COMBINED      {prefix}_FFN_PF...: infer (default), [infer_rotate], prefill, [prefill_rotate]
 *                     (the rotate functions unless --split-rotate or there are none)
 *   FFN_COMBINED_ROT  {prefix}_FFN_PF..._rot (--split-rotate): infer_rotate (default), prefill_rotate */
typedef enum PlanFfnKind {
    FFN_INFER = 0,            /* {prefix}_FFN            function infer */
    FFN_PREFILL = 1,          /* {prefix}_prefill        function prefill */
    FFN_INFER_ROTATE = 2,     /* {prefix}_FFN_rotate     function infer_rotate */
    FFN_PREFILL_ROTATE = 3,   /* {prefix}_prefill_rotate function prefill_rotate */
    FFN_COMBINED = 4,
    FFN_COMBINED_ROT = 5
} PlanFfnKind;
#define PLAN_FFN_FUNCTIONS 4

/* The function name of a single-function kind in a combined package: "infer", "prefill",
 * "infer_rotate", "prefill_rotate". */
const char *plan_ffn_function_name(PlanFfnKind kind);
int plan_ffn_is_prefill(PlanFfnKind kind);
int plan_ffn_is_rotate(PlanFfnKind kind);

/* Base names without extension; return buf. lut_bits 0 = not quantized. chunk is 0-based. */
const char *plan_embeddings_name(const char *prefix, int lut_bits, char *buf, size_t n);
const char *plan_lm_head_name(const char *prefix, int lut_bits, char *buf, size_t n);
const char *plan_ffn_name(const char *prefix, PlanFfnKind kind, int lut_bits, int chunk, int n_chunks, char *buf,
                          size_t n);

/* ==== shapes ==== */

/* Layers of chunk `chunk` (0-based) of n_chunks: first layer and count. */
void plan_chunk_layers(int n_layers, int n_chunks, int chunk, int *first, int *count);
/* S: 8 (llama) or 16. */
int plan_lm_head_splits(const Arch *a);
/* sizes[0..S) rows of each LM-head split; returns S. */
int plan_lm_head_sizes(const Arch *a, int sizes[PLAN_MAX_SPLITS]);
/* KV cache positions (and RoPE table rows); for gemma3 the global cache. */
int plan_state_length(const Arch *a, long context);
/* gemma3: positions of the local (sliding-window) cache, min(sliding_window, context); 0 for
 * architectures without split caches. */
int plan_local_length(const Arch *a, long context);
/* 1 if the architecture has split local/global caches (gemma3). */
int plan_split_cache(const Arch *a);
/* 1 if the conversion has rotate functions: gemma3 with context > sliding_window. */
int plan_has_rotate(const Arch *a, long context);
/* gemma3: a layer's row in its cache: K at *rank, V at *rank + *n_type; *local 1 for a
 * sliding-window layer. Other architectures: rank = layer, n_type = n_layers, local = 0. */
void plan_cache_rows(const Arch *a, int layer, int *local, int *rank, int *n_type);
/* Layers of each type: *n_local sliding-window layers, *n_global the others. */
void plan_layer_types(const Arch *a, int *n_local, int *n_global);
/* 1 if the local and global layers' RoPE tables are identical (the same base and scaling): one
 * table pair then serves both. */
int plan_rope_shared(const Arch *a);
/* The RoPE table pairs a chunk holds: *global (the global layers' pair, or the only pair when
 * the tables are shared) and *local (the sliding-window layers' pair), each 0 or 1. */
void plan_chunk_rope_tables(const Arch *a, int first, int count, int *global, int *local);

/* ==== sizes ==== */

/* Accumulates the weight.bin of one package, blob by blob. */
typedef struct PlanBlobs {
    uint64_t bytes;      /* file size so far: header + records + data (+ alignment between blobs) */
    uint32_t count;
} PlanBlobs;

void plan_blobs_init(PlanBlobs *b);
/* Adds a const of numel elements of dtype bits bits each, if it would be a blob. */
void plan_blobs_add(PlanBlobs *b, uint64_t numel, int bits);
/* A weight of rows x cols: fp16, or LUT indices + the (rows/group or 1, 2^bits) fp16 LUT. */
void plan_blobs_add_weight(PlanBlobs *b, uint64_t rows, uint64_t cols, const LutSpec *lut);

/* weight.bin bytes of one FFN chunk package holding layers [first, first+count) (one function;
 * the combined package stores the same blobs once, or once per function with copies = the
 * function count under --skip-anemll-dedup). */
uint64_t plan_ffn_chunk_bytes(const Arch *a, const LutSpec *lut, int state_length, int first, int count, int copies);

/* What decides a Gemma package's extra blob: prefill_rotate holds its local layers' band mask
 * (batch x (local_length + batch) fp16, before the weights; in a combined file with shared blobs
 * it is the last blob). */
typedef struct PlanFfnShape {
    int state_length, local_length;
    long batch;
    int rotate;                 /* the conversion has rotate functions */
    int split_rotate;           /* FFN_COMBINED without them, FFN_COMBINED_ROT with them */
} PlanFfnShape;
/* weight.bin bytes of the package of `kind` for chunk layers [first, first+count); separate:
 * --skip-anemll-dedup (combined kinds store every function's blobs). Exact for every kind. */
uint64_t plan_ffn_package_bytes(const Arch *a, const LutSpec *lut, const PlanFfnShape *s, int first, int count,
                                PlanFfnKind kind, int separate);

uint64_t plan_embeddings_bytes(const Arch *a, const LutSpec *lut);
uint64_t plan_lm_head_bytes(const Arch *a, const LutSpec *lut);

/* The largest chunk of an n-chunk split (weights and tables: Gemma's prefill_rotate band mask,
 * batch x (window + batch) fp16 values, is not counted). */
uint64_t plan_largest_chunk_bytes(const Arch *a, const LutSpec *lut, int state_length, int n_chunks, int copies);

/* --chunk auto: the smallest n in 1..L whose largest chunk is at most max_bytes. If even one
 * layer per chunk does not fit, *n = L and the function returns 1 (the caller says so);
 * otherwise 0. */
int plan_auto_chunks(const Arch *a, const LutSpec *lut, int state_length, uint64_t max_bytes, int copies, int *n);

/* Checks that the LUT group sizes divide the output channels of every tensor they quantize:
 * --lut1 the embedding rows (vocab), --lut2 every projection of the blocks, --lut3 every LM-head
 * split. luts: [PART_EMBEDDINGS], [PART_FFN], [PART_LM_HEAD] as in options.h. */
int plan_check_lut_groups(const Arch *a, const LutSpec luts[3], Err *e);

#endif
