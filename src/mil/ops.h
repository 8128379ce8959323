/* ops.h - the table of MIL op signatures (iOS 18 / opset CoreML8 view).
 *
 * One entry per op type: its parameters in coremltools' declaration order, for each whether
 * it is optional, must be a compile-time value, is variadic or a state, which dtypes it
 * accepts, which other parameters must share its dtype (type domains "T", "U", ...), and the
 * default coremltools materializes when it is absent. A type-inference function computes the
 * output types from the inputs, with the same checks coremltools' type_inference makes.
 *
 * Users: the builder (mil.h) checks and completes ops with it; the package reader re-checks
 * loaded programs with it (mil_program_validate); the CPU interpreter dispatches on
 * MilOpDef.id and reads inputs by parameter index.
 *
 * Sources (facts, not code): apple/coremltools converters/mil/mil/ops/defs/iOS15..iOS18;
 * the newest definition at or below iOS 18 applies. A parameter that a later opset added carries
 * that opset level (min_opset): older functions neither get its default nor accept it. Dtype
 * sets are the iOS 18 ones at every level (older opsets accept fewer; not modelled, the
 * converter writes CoreML8 only).
 */
#ifndef ANEMLL_MIL_OPS_H
#define ANEMLL_MIL_OPS_H

#include "mil/mil.h"

typedef enum MilOpId {
    MIL_OP_CONST,
    MIL_OP_CONV,
    MIL_OP_LINEAR,
    MIL_OP_MATMUL,
    MIL_OP_ADD,
    MIL_OP_SUB,
    MIL_OP_MUL,
    MIL_OP_REAL_DIV,
    MIL_OP_MAXIMUM,
    MIL_OP_MINIMUM,
    MIL_OP_POW,
    MIL_OP_GREATER_EQUAL,
    MIL_OP_GREATER,
    MIL_OP_LESS,
    MIL_OP_LESS_EQUAL,
    MIL_OP_EQUAL,
    MIL_OP_NOT_EQUAL,
    MIL_OP_SQRT,
    MIL_OP_RSQRT,
    MIL_OP_EXP,
    MIL_OP_TANH,
    MIL_OP_SILU,
    MIL_OP_RELU,
    MIL_OP_SIGMOID,
    MIL_OP_IDENTITY,
    MIL_OP_GELU,
    MIL_OP_SOFTMAX,
    MIL_OP_LAYER_NORM,
    MIL_OP_REDUCE_MEAN,
    MIL_OP_REDUCE_SUM,
    MIL_OP_REDUCE_MAX,
    MIL_OP_REDUCE_ARGMAX,
    MIL_OP_GATHER,
    MIL_OP_GATHER_ALONG_AXIS,
    MIL_OP_CONCAT,
    MIL_OP_SPLIT,
    MIL_OP_SLICE_BY_INDEX,
    MIL_OP_SLICE_UPDATE,
    MIL_OP_RESHAPE,
    MIL_OP_TRANSPOSE,
    MIL_OP_EXPAND_DIMS,
    MIL_OP_SQUEEZE,
    MIL_OP_TILE,
    MIL_OP_CAST,
    MIL_OP_SELECT,
    MIL_OP_CLIP,
    MIL_OP_BAND_PART,
    MIL_OP_READ_STATE,
    MIL_OP_WRITE_STATE,
    MIL_OP_CONSTEXPR_LUT_TO_DENSE,
    MIL_OP_COUNT
} MilOpId;

/* Parameter flags. */
enum {
    MIL_P_OPTIONAL = 1,   /* may be absent */
    MIL_P_CONST = 2,      /* must be a compile-time value (const, constexpr output, literal) */
    MIL_P_VARIADIC = 4,   /* one or more values (concat.values) */
    MIL_P_STATE = 8,      /* a state<tensor> value (read_state / write_state input) */
};

/* What coremltools' builder passes for an absent optional parameter. */
typedef enum MilDefaultKind {
    MIL_DEF_NONE = 0,      /* nothing: the input is omitted */
    MIL_DEF_I32,           /* int32 scalar .i */
    MIL_DEF_BOOL,          /* bool scalar .i */
    MIL_DEF_STR,           /* string scalar .s */
    MIL_DEF_FLOAT,         /* scalar .f in the dtype of the param named .s if present, else of x */
    MIL_DEF_SPATIAL_I32,   /* int32 [rank(x) - 2], every entry .i (conv strides, dilations) */
    MIL_DEF_SPATIAL2_I32,  /* int32 [2 * (rank(x) - 2)], every entry .i (conv pad) */
    MIL_DEF_AXES_ALL,      /* int32 [rank(x)] = 0, 1, ... (layer_norm axes) */
    MIL_DEF_ZEROS_DOUT,    /* zeros [weight.shape[0]] in weight's dtype (linear bias) */
} MilDefaultKind;

typedef struct MilDefault {
    MilDefaultKind kind;
    int64_t i;
    double f;
    const char *s;
} MilDefault;

#define MIL_MAX_PARAMS 8
#define MIL_MAX_OUTPUTS 64

typedef struct MilParamDef {
    const char *name;
    unsigned flags;        /* MIL_P_* */
    uint64_t dtypes;       /* bit (1 << dtype) for each accepted dtype */
    char domain;           /* 'T', 'U', ...: params with the same letter share one dtype; 0: none */
    MilDefault dflt;
    int min_opset;         /* 0: as old as the op; else the opset level that added this parameter
                              (its default is not materialized in older functions) */
} MilParamDef;

typedef struct MilInferCtx MilInferCtx;

struct MilOpDef {
    MilOpId id;
    const char *type;
    int min_opset;          /* lowest opset level (mil_opset_level) that has this signature */
    int n_params;
    MilParamDef params[MIL_MAX_PARAMS];
    int (*infer)(MilInferCtx *c);   /* NULL for const (its type is its data's) */
};

/* Input to and output of type inference. */
struct MilInferCtx {
    const MilOpDef *def;
    const MilArg *args;       /* args[i] for params[i]; n == 0 when absent */
    const char *op_name;
    int opset;                /* opset level of the enclosing function */
    int n_out;                /* set by infer */
    MilType out[MIL_MAX_OUTPUTS];
    Err *e;
};

const MilOpDef *mil_op_def(const char *type);     /* NULL if unknown */
const MilOpDef *mil_op_def_by_id(MilOpId id);
int mil_param_index(const MilOpDef *d, const char *param);   /* -1 if not a parameter */

/* "CoreML5" -> 5 ... "CoreML9" -> 9; -1 if not recognized. */
int mil_opset_level(const char *opset);
/* Tag used in model.mil: "ios15" .. "ios18", "ios26"; NULL if unknown. */
const char *mil_opset_tag(const char *opset);

/* Checks every present argument against the table (state/tensor kind, dtype, shared domain
 * dtypes, const-ness, variadic counts, required inputs) and runs type inference, filling
 * c->out / c->n_out. c->def, c->args (def->n_params entries), c->op_name, c->opset and c->e
 * must be set. Returns 0 or -1 with a message naming the op and the parameter. */
int mil_check_and_infer(MilInferCtx *c);

/* numpy-style broadcast of two shapes; -1 (with message) if incompatible. */
int mil_broadcast(const MilType *a, const MilType *b, MilType *out, Err *e);

#endif
