/* rt_internal.h - what the interpreter's files share: the plan of a function (value slots and
 * ops), the buffer pool, const conversion and the kernel interface. Not a public header. */
#ifndef ANEMLL_RUNTIME_RT_INTERNAL_H
#define ANEMLL_RUNTIME_RT_INTERNAL_H

#include <stdint.h>

#include "common/err.h"
#include "mil/mil.h"
#include "mil/ops.h"
#include "runtime/interp.h"

/* ==== Buffer pool (rt_pool.c) ==== */

typedef struct RtPool RtPool;
RtPool *pool_new(void);
void pool_free(RtPool *p);
/* A 64-byte aligned buffer of at least bytes; *cls identifies it for pool_put. */
void *pool_get(RtPool *p, size_t bytes, int *cls);
void pool_put(RtPool *p, void *ptr, int cls);
uint64_t pool_fresh_allocs(const RtPool *p);
uint64_t pool_bytes(const RtPool *p);

/* ==== Plan ==== */

/* One value of a function: a const (converted at plan time, never released), a string
 * attribute, a function input or an op output (a pool buffer while it is live). */
typedef struct Slot {
    const MilValue *v;
    RtTensor t;                 /* shape and data of the current value */
    const char *str;            /* string consts */
    const uint16_t *f16;        /* consts kept as fp16 bits (gather tables, conv/linear weights); t.data NULL */
    int is_const;
    int buf_cls;                /* pool class of t.data when the slot owns it, else -1 */
    int last_use;               /* index of the last op reading it; n_ops for function outputs */
    int n_uses;
} Slot;

enum {
    PLAN_STATE_VIEW = 1,        /* read_state: the output is the state's own buffer */
    PLAN_STATE_INPLACE = 2,     /* slice_update: writes into the state (x is its view) */
    PLAN_SKIP = 4,              /* write_state of data that already is the state's buffer */
};

typedef struct PlanOp {
    const MilOp *op;
    const MilOpDef *def;
    int arg_start[MIL_MAX_PARAMS];   /* per parameter: first entry in arg_slots */
    int arg_n[MIL_MAX_PARAMS];       /* values bound (0: absent) */
    int *arg_slots;
    int n_out;
    int *out_slots;
    int flags;                  /* PLAN_* */
    int state;                  /* read_state / write_state / in-place slice_update: state index */
    int n_release;
    int *release;               /* slots whose last use is this op */
} PlanOp;

struct RtFunction {
    RtModel *m;
    const MilFunction *mf;
    int n_slots;
    Slot *slots;
    int n_ops;
    PlanOp *ops;                /* runtime ops in order (consts and constexpr ops excluded) */
    int n_inputs;               /* tensor inputs */
    int *input_slots;
    int n_states;
    int *state_slots;
    int n_outputs;
    int *output_slots;
    RtState **bound;            /* [n_states] during a run */
    int ran;
};

struct RtModel {
    char *name;
    Package *pkg;               /* NULL for rt_open_program */
    const MilProgram *prog;
    int n_functions;
    RtFunction **functions;
    RtPool *pool;
    struct ConstCache *consts;
    int threads;
    uint64_t const_bytes, shared_consts;
    int profiling;
    double prof_seconds[MIL_OP_COUNT];
    uint64_t prof_calls[MIL_OP_COUNT];
};

/* ==== Consts (rt_consts.c) ==== */

struct ConstCache *const_cache_new(void);
void const_cache_free(struct ConstCache *c);
/* Fills slot s with the value of the compile-time value v (const op output, literal or
 * constexpr_lut_to_dense output): strings as s->str, floats as float32 (or, with keep_f16,
 * as fp16 bits in s->f16), integers and bool as int32. Shared through m's cache. */
int const_materialize(RtModel *m, const MilValue *v, int keep_f16, Slot *s, Err *e);

/* ==== Kernels ==== */

typedef struct Kctx {
    RtFunction *f;
    PlanOp *p;
    Err *e;
} Kctx;

typedef int (*KernelFn)(Kctx *k);

/* Input bound to a parameter (first value), NULL if absent. */
RtTensor *kin(Kctx *k, const char *param);
/* Slot of an input (for fp16 tables kept as bits), NULL if absent. */
Slot *kin_slot(Kctx *k, const char *param, int index);
/* Number of values bound to a (variadic) parameter. */
int kin_count(Kctx *k, const char *param);
RtTensor *kin_at(Kctx *k, const char *param, int index);
/* Integer values of a parameter (any rank), or its table default when absent. -1 if the
 * parameter is absent without a default, has too many values or is not integer. */
int kin_ints(Kctx *k, const char *param, int64_t *out, int max, int *n);
/* One integer (scalar) with the same fallback. */
int kin_int(Kctx *k, const char *param, int64_t *out);
int kin_float(Kctx *k, const char *param, double *out);
/* A string parameter, or its default; NULL (message set) if neither. */
const char *kin_str(Kctx *k, const char *param);
/* Allocates output i with the given dtype and shape from the pool. */
RtTensor *kout(Kctx *k, int i, MilDType dt, int rank, const int64_t *dims);
/* Error naming the op. Returns -1. */
int kfail(Kctx *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Normalizes an axis into [0, rank); -1 (message) when out of range. */
int knorm_axis(Kctx *k, int64_t axis, int rank, int *out);

/* Kernel lookup by op id; NULL for ops that are not run (const, constexpr). *moves_data is
 * set for ops whose outputs are copies of input elements (no fp16 rounding needed). */
KernelFn kernel_for(MilOpId id, int *moves_data);

/* Narrow integer wrap (int8, uint8, int16, uint16; int32 unchanged) as numpy astype. */
int32_t wrap_int(MilDType dt, int64_t v);
/* Element strides of a shape (row-major). */
void shape_strides(int rank, const int64_t *dims, int64_t *strides);

/* Kernels by file. */
int k_binary(Kctx *k);
int k_unary(Kctx *k);
int k_select(Kctx *k);
int k_clip(Kctx *k);
int k_cast(Kctx *k);
int k_band_part(Kctx *k);
int k_conv(Kctx *k);
int k_linear(Kctx *k);
int k_matmul(Kctx *k);
int k_softmax(Kctx *k);
int k_layer_norm(Kctx *k);
int k_reduce(Kctx *k);
int k_reduce_argmax(Kctx *k);
int k_identity(Kctx *k);
int k_reshape(Kctx *k);
int k_expand_dims(Kctx *k);
int k_squeeze(Kctx *k);
int k_transpose(Kctx *k);
int k_tile(Kctx *k);
int k_concat(Kctx *k);
int k_split(Kctx *k);
int k_slice_by_index(Kctx *k);
int k_slice_update(Kctx *k);
int k_gather(Kctx *k);
int k_gather_along_axis(Kctx *k);

/* C = W . B with W (M, K) fp16 bits: B is (K, N) (b_is_nk 0, conv) or (N, K) (linear); C is
 * (M, N) (c_is_nm 0) or (N, M). float32 accumulation (k_half.c). */
int half_matmul(Kctx *k, const uint16_t *W, int64_t M, int64_t K, const float *B, int b_is_nk, int64_t N, float *C,
                int c_is_nm);

/* Slicing shared by slice_by_index and slice_update: per axis the first index, step and
 * count, and which axes are squeezed away. */
typedef struct SliceSpec {
    int rank;
    int64_t start[MIL_MAX_RANK], step[MIL_MAX_RANK], count[MIL_MAX_RANK];
    int squeeze[MIL_MAX_RANK];
} SliceSpec;
int slice_resolve(Kctx *k, const RtTensor *x, SliceSpec *s);

#endif
