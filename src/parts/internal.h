/* internal.h - helpers shared by the part builders (not a public interface).
 *
 * Weight loading: a WeightLoader writes each checkpoint tensor into one or two packages at
 * once (the infer and prefill packages of a chunk share every weight): the tensor is read
 * (in blocks of rows), converted to fp16, LUT-quantized when a LutSpec asks for it, and added
 * to each target's weight.bin; each target gets a MIL value for it (a const, or a
 * constexpr_lut_to_dense of two inline blob literals). Blob order = call order, which
 * plan.c's size computation mirrors.
 *
 * Graph helpers build the recurring patterns of docs/parts.md on the conv layout
 * (1, C, 1, T): exact RMSNorm with layer_norm over [x, -x], 1x1 conv projections.
 * All helpers return NULL once the program has failed (the error is in the program).
 */
#ifndef ANEMLL_PARTS_INTERNAL_H
#define ANEMLL_PARTS_INTERNAL_H

#include "coreml/package.h"
#include "mil/mil.h"
#include "parts/part.h"

#define PARTS_MAX_TARGETS 4

typedef struct WeightTarget {
    PkgWriter *w;
    MilFunction *f;
    PartReport *r;
} WeightTarget;

typedef struct WeightLoader {
    const PartSource *src;
    int n;
    WeightTarget t[PARTS_MAX_TARGETS];
} WeightLoader;

/* Rows [r0, r0+rows) of the 2-D tensor `tensor` (cols columns) as an fp16 value of shape
 * dims (rank dims whose product is rows*cols, dims[0] == rows) in every target, LUT-quantized
 * along dims[0] when lut->bits > 0. name: the value's name. vals[i] for target i. */
int wl_matrix(WeightLoader *l, const char *tensor, long r0, long rows, long cols, int rank, const int64_t *dims,
              const LutSpec *lut, const char *name, MilValue **vals, Err *e);

/* wl_matrix with every value multiplied by scale in double before the one rounding to fp16
 * (gemma's embedding table: embed_scale times the --fp16-scale alpha). */
int wl_matrix_scaled(WeightLoader *l, const char *tensor, long r0, long rows, long cols, double scale, int rank,
                     const int64_t *dims, const LutSpec *lut, const char *name, MilValue **vals, Err *e);

/* A 1-D fp16 tensor (norm gain, bias) with n elements, as a const of shape dims. */
int wl_vector(WeightLoader *l, const char *tensor, long n, int rank, const int64_t *dims, const char *name,
              MilValue **vals, Err *e);
/* A norm gain stored as mul * (add + w), computed in double from the float32 weights and rounded
 * to fp16 once (gemma: add 1 for the (1 + w) gain; mul alpha for the post norms under
 * --fp16-scale). add 0, mul 1: as wl_vector. */
int wl_gain(WeightLoader *l, const char *tensor, long n, double add, double mul, int rank, const int64_t *dims,
            const char *name, MilValue **vals, Err *e);

/* fp16 data in memory as a const of shape dims in every target. */
int wl_fp16(WeightLoader *l, const uint16_t *data, int rank, const int64_t *dims, const char *name, MilValue **vals,
            Err *e);

/* "model.layers.0.self_attn.q_proj.weight" -> "model_layers_0_self_attn_q_proj_weight". */
const char *parts_mil_name(const char *tensor, char *buf, size_t n);

/* ==== graph helpers (conv layout) ==== */

/* (1, T, H) -> (1, H, 1, T) and back. */
MilValue *g_to_conv(MilFunction *f, MilValue *x);
MilValue *g_from_conv(MilFunction *f, MilValue *x, const char *name);
/* RMSNorm over axis `axis` of x (size C): layer_norm of concat([x, -x], axis) over that axis,
 * first half, times gain (broadcastable). */
MilValue *g_rmsnorm(MilFunction *f, MilValue *x, int axis, MilValue *gain, double eps);
/* 1x1 conv of x (1, Cin, 1, T) with weight (Cout, Cin, 1, 1) and optional bias (Cout). */
MilValue *g_conv(MilFunction *f, MilValue *x, MilValue *w, MilValue *b);
/* int32 [v] */
MilValue *g_i32(MilFunction *f, int32_t v);

/* ==== packages ==== */

/* Metadata builder: up to 12 userDefined keys. Strings are copied. */
typedef struct PartMeta {
    PkgMetadata md;
    PkgKeyValue kv[12];
    char vals[12][128];
} PartMeta;

void part_meta_init(PartMeta *m, const char *short_description, const char *info);
void part_meta_set(PartMeta *m, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Fills the report from the writer's statistics and the finished package on disk. */
void part_report_finish(PartReport *r, const char *path);

#endif
