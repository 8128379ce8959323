/* lut.h - LUT palettization of fp16 weights (Core ML constexpr_lut_to_dense).
 *
 * A weight W of shape (rows = output channels, cols = everything else flattened,
 * e.g. in_channels for [out, in] or [out, in, 1, 1]) is cut into groups of
 * `group_rows` consecutive rows. Each group gets its own table of 2^bits fp16 values
 * (its LUT) and every weight becomes the index of one LUT entry:
 *
 *     W[r][c] ~= lut[r / group_rows][idx[r][c]]
 *     lut: (rows / group_rows, 2^bits) fp16 -- the converter reshapes it to
 *          [groups, 1, ..., 1, 2^bits, 1] (coreml_format.md section 6)
 *     idx: (rows, cols) one uint8 per weight; lut_pack_indices() turns it into the
 *          uint{bits} LSB-first stream Core ML stores (lut_pack.h).
 *
 * What a group's LUT is (the same clustering coremltools computes, section 10):
 *  - k = min(distinct values in the group, 2^bits) clusters of the group's fp16 values,
 *    minimizing the squared error (weighted 1-D k-means on the unique values with their
 *    counts, kmeans1d_fast: on synthetic LLM-like weights within 0.1% of the exact
 *    optimum on all but ~1 in 700 groups tested and within 0.2% on all, see kmeans1d.h);
 *  - lut[0..k) = the cluster means rounded to fp16 (round to nearest even), ascending;
 *    lut[k..2^bits) = 0 (unused slots are zero, as coremltools leaves them);
 *  - each weight gets the index of the nearest of lut[0..k) (ties: the lower index),
 *    so a group with at most 2^bits distinct values is reproduced exactly;
 *  - -0.0 and +0.0 are the same value (one LUT entry, 0.0).
 * Non-finite weights (+-inf, NaN) are an error naming the tensor, row and column: an
 * fp16 inf means the checkpoint value overflowed fp16; convert with
 * FP16_SATURATE (fp16_tools.h) to clamp such values to +-65504 instead.
 *
 * Determinism: the output bytes depend only on the weights, bits and group size,
 * never on the thread count (groups are independent; sums run in group order).
 * Return convention: 0 on success, -1 with a message in *e. Outputs are caller-owned
 * buffers; on failure their contents are unspecified.
 */
#ifndef ANEMLL_QUANT_LUT_H
#define ANEMLL_QUANT_LUT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define LUT_MAX_ENTRIES 256 /* 2^8, the widest index type */

/* ==== the --lutN option ===================================================== */

/* `--lutN bits[,group]`: bits in {1,2,3,4,6,8}; group = output channels per LUT
 * (default 8), "0" or "tensor" = one LUT for the whole tensor; "" = no LUT. */
typedef struct LutSpec {
    int bits;   /* 0: no LUT (keep fp16) */
    long group; /* output channels per LUT; 0: per tensor */
} LutSpec;

#define LUT_DEFAULT_GROUP 8

/* Parses `value` given to option `option` (e.g. "--lut2", used in messages). */
int lut_parse_option(const char *option, const char *value, LutSpec *spec, Err *e);

/* Checks that spec's group divides the tensor's output channels; per tensor and
 * no-LUT specs always pass. `option` and `tensor` name the culprits in the message. */
int lut_check_channels(const LutSpec *spec, const char *option, const char *tensor, long out_channels,
                       Err *e);

/* Formats a spec the way the option takes it ("", "6", "4,16", "6,tensor"). */
const char *lut_spec_str(const LutSpec *spec, char buf[32]);

/* ==== quality figures ======================================================= */

typedef struct LutStats {
    double sse;         /* sum of (dequantized - original)^2 */
    double energy;      /* sum of original^2 */
    double cluster_sse; /* the clustering's own SSE, with the unrounded cluster means:
                           what the k-means minimizes (sse adds the fp16 rounding of
                           the LUT entries, which no clustering controls) */
    uint64_t count;     /* weights covered */
} LutStats;

void lut_stats_add(LutStats *acc, const LutStats *s);
/* sse / energy (0 for an all-zero tensor reproduced exactly). */
double lut_stats_rel_mse(const LutStats *s);
/* 10*log10(energy / sse); INFINITY when the tensor is reproduced exactly. */
double lut_stats_snr_db(const LutStats *s);

/* ==== grouped palettization ================================================= */

/* Palettizes rows x cols fp16 weights w (row-major) in groups of group_rows rows
 * (rows % group_rows == 0; pass group_rows = rows for a per-tensor LUT of a tensor held
 * whole). Writes lut (rows/group_rows, 2^bits) fp16 and idx (rows, cols) uint8 and ADDS
 * this block's figures to *stats (may be NULL), so a caller may stream a large tensor
 * through in blocks of whole groups and read the totals at the end.
 * threads <= 0: all cores. `tensor` and `first_row` (the block's first row within the
 * tensor) only label error messages. */
int lut_quantize_rows(const uint16_t *w, size_t rows, size_t cols, size_t group_rows, int bits,
                      int threads, const char *tensor, size_t first_row, uint16_t *lut, uint8_t *idx,
                      LutStats *stats, Err *e);

/* lut_quantize_rows that also packs the indices (lut_pack_indices layout) into packed
 * (lut_packed_size(rows * cols, bits) bytes), each group on the thread that quantized it
 * while its indices are in cache (when a group is a whole number of bytes; else after).
 * idx may be NULL: then the indices are only packed. */
int lut_quantize_rows_packed(const uint16_t *w, size_t rows, size_t cols, size_t group_rows, int bits,
                             int threads, const char *tensor, size_t first_row, uint16_t *lut, uint8_t *idx,
                             uint8_t *packed, LutStats *stats, Err *e);

/* One group of n weights (any layout) with caller-owned scratch; what lut_quantize_rows
 * runs per group. lut: (2^bits); idx: (n). */
typedef struct LutWork LutWork;
LutWork *lut_work_new(void);
void lut_work_free(LutWork *work);
int lut_quantize_group(LutWork *work, const uint16_t *w, size_t n, int bits, uint16_t *lut, uint8_t *idx,
                       LutStats *stats, Err *e);

/* ==== per-tensor LUT over a streamed tensor ================================= */
/* Two passes for a tensor too large to hold whole:
 *     LutHist *h = lut_hist_new();
 *     for each block: lut_hist_add(h, block, n, name, e);       pass 1: count values
 *     lut_hist_fit(h, bits, lut, &used, &stats, e);             the LUT + whole-tensor figures
 *     LutMap *m = lut_map_new(lut, used);
 *     for each block: lut_map_apply(m, block, n, idx, name, e); pass 2: indices
 * The result equals lut_quantize_rows with group_rows = rows. */
typedef struct LutHist LutHist;
LutHist *lut_hist_new(void);
void lut_hist_free(LutHist *h);
int lut_hist_add(LutHist *h, const uint16_t *w, size_t n, const char *tensor, Err *e);
/* lut: (2^bits) fp16; *used = fitted entries (the rest are 0); stats (may be NULL)
 * receives the figures for every counted weight. Fails on an empty histogram. */
int lut_hist_fit(const LutHist *h, int bits, uint16_t *lut, int *used, LutStats *stats, Err *e);

/* Nearest-entry lookup over every finite fp16 value among lut[0..used), which must be
 * ascending (as this module makes them); ties go to the lower index. */
typedef struct LutMap LutMap;
LutMap *lut_map_new(const uint16_t *lut, int used);
void lut_map_free(LutMap *m);
int lut_map_apply(const LutMap *m, const uint16_t *w, size_t n, uint8_t *idx, const char *tensor, Err *e);

/* ==== the reference path ==================================================== */

/* Same contract as lut_quantize_group but clustering with the exact DP
 * (kmeans1d_optimal): slow, for tests and the benchmark's quality column. Its
 * stats->cluster_sse is the global optimum, a lower bound for any LUT of the group. */
int lut_quantize_group_exact(LutWork *work, const uint16_t *w, size_t n, int bits, uint16_t *lut,
                             uint8_t *idx, LutStats *stats, Err *e);

#endif
