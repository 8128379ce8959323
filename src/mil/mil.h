/* mil.h - an in-memory MIL program (Core ML's ML Program IR) and a builder for it.
 *
 *     MilProgram *p = mil_program_new();
 *     MilFunction *f = mil_function_new(p, "main", NULL);             // opset CoreML8 (iOS 18)
 *     MilValue *x = mil_input(f, "x", MIL_FP16, 4, (int64_t[]){1, 64, 1, 8});
 *     MilValue *w = mil_const(f, "w", MIL_FP16, 4, (int64_t[]){32, 64, 1, 1}, w_bytes, w_nbytes);
 *     MilValue *y = mil_add_conv(f, "y", x, w, NULL, NULL);             // (1, 32, 1, 8)
 *     MilValue *out = mil_add_silu(f, "out", y);
 *     mil_set_outputs(f, 1, &out);
 *     Err e;
 *     if (mil_error(p, &e) < 0) ...                                     // first error, if any
 *     mil_program_free(p);
 *
 * Model: a program holds functions; a function has inputs (tensors and states), one block of
 * ops in order, and named outputs. Every op has a type ("conv"), a name, named inputs bound to
 * values (one, or several for a variadic input such as concat.values) and typed outputs.
 * A value is a function input, an op output, or a literal (data bound inline to an op input,
 * as the iOS 18 constexpr ops require). Const data is either bytes in memory or a reference to
 * a blob in a weight file (MilBlobRef; see coreml/blob.h for the file and coreml/package.h for
 * how the package writer turns bytes into blobs).
 *
 * Op signatures live in one table (mil/ops.h): input names, which are optional, their default
 * values, allowed dtypes and shape rules. The builder checks every op against it as it is added
 * (as coremltools' type inference would) and materializes every optional input that has a
 * default as an explicit const, like coremltools does. The protobuf writer, the package reader
 * and the CPU interpreter use the same table.
 *
 * Errors: builder calls never abort on bad input. The first error (a dtype or shape mismatch,
 * an unknown op, a duplicate name) is kept in the program and every later builder call returns
 * NULL, so a whole graph can be built and checked once with mil_error(). AN_ASSERT guards only
 * internal invariants. A NULL argument where a value is required is reported the same way.
 *
 * Ownership: the program owns everything reachable from it (functions, ops, values, names,
 * const bytes); pointers stay valid until mil_program_free(). Blob data referenced by a
 * MilBlobRef is owned by whoever produced the reference (a package reader's mapping, or a
 * package writer's file on disk).
 */
#ifndef ANEMLL_MIL_H
#define ANEMLL_MIL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* ==== Data types ==== */

/* Values are the numbers of MIL.proto's DataType enum. */
typedef enum MilDType {
    MIL_DT_INVALID = 0,
    MIL_BOOL = 1,
    MIL_STRING = 2,
    MIL_FP16 = 10,
    MIL_FP32 = 11,
    MIL_FP64 = 12,
    MIL_BF16 = 13,
    MIL_INT8 = 21,
    MIL_INT16 = 22,
    MIL_INT32 = 23,
    MIL_INT64 = 24,
    MIL_INT4 = 25,
    MIL_UINT8 = 31,
    MIL_UINT16 = 32,
    MIL_UINT32 = 33,
    MIL_UINT64 = 34,
    MIL_UINT4 = 35,
    MIL_UINT2 = 36,
    MIL_UINT1 = 37,
    MIL_UINT6 = 38,
    MIL_UINT3 = 39,
    MIL_FP8E4M3FN = 40,
    MIL_FP8E5M2 = 41,
} MilDType;

#define MIL_DT_MAX 42          /* one past the largest MilDType value (for bit masks) */
#define MIL_MAX_RANK 8
#define MIL_DIM_UNKNOWN (-1)   /* a dimension not known until run time (enumerated shapes) */

/* "fp16", "int32", "uint4", ... (model.mil spelling); "?" for an unknown value. */
const char *mil_dtype_name(MilDType dt);
/* Inverse of mil_dtype_name; MIL_DT_INVALID if unknown. */
MilDType mil_dtype_from_name(const char *name);
/* Bits per element: 1..64; strings 0. */
int mil_dtype_bits(MilDType dt);
int mil_dtype_is_subbyte(MilDType dt);     /* int4, uint1/2/3/4/6 */
int mil_dtype_is_float(MilDType dt);       /* fp16, fp32, fp64, bf16, fp8 */
int mil_dtype_is_int(MilDType dt);         /* signed or unsigned integers of any width */
int mil_dtype_is_valid(int dt);            /* a known DataType number other than 0 */
/* Bytes that n elements take in memory and in weight.bin: ceil(n * bits / 8); strings 0.
 * Returns -1 on overflow. */
int mil_packed_size(MilDType dt, uint64_t n, uint64_t *out);

/* Sub-byte packing, LSB first: element i occupies bits [i*b, i*b+b) of the byte stream,
 * bit k being bit k%8 of byte k/8 (MILBlob's layout). vals hold one element per byte
 * (int4 as two's complement in the low bits). out must hold ceil(n*b/8) bytes; unused high
 * bits of the last byte are zero. Returns -1 if a value does not fit in b bits. */
int mil_pack_subbyte(MilDType dt, const uint8_t *vals, size_t n, uint8_t *out);
/* The inverse; int4 values come back sign-extended into int8. */
void mil_unpack_subbyte(MilDType dt, const uint8_t *packed, size_t n, uint8_t *vals);
/* Element i of packed sub-byte data (unsigned; int4 sign-extended). */
int32_t mil_subbyte_get(MilDType dt, const uint8_t *packed, size_t i);

/* ==== Types ==== */

typedef enum MilTypeKind { MIL_TENSOR = 0, MIL_STATE = 1 } MilTypeKind;

/* A tensor (rank 0 = scalar), or a state wrapping a tensor (dtype/rank/dims describe the
 * wrapped tensor). dims[i] may be MIL_DIM_UNKNOWN. */
typedef struct MilType {
    MilTypeKind kind;
    MilDType dtype;
    int rank;
    int64_t dims[MIL_MAX_RANK];
} MilType;

MilType mil_tensor_type(MilDType dt, int rank, const int64_t *dims);
/* Number of elements; -1 if a dimension is unknown or the product overflows 2^62. */
int64_t mil_type_numel(const MilType *t);
int mil_type_equal(const MilType *a, const MilType *b);
/* Equal except that an unknown dim matches any dim (coremltools' compatibility rule). */
int mil_type_compatible(const MilType *a, const MilType *b);
/* "tensor<fp16, [1, 64, 8, 8]>", "int32", "state<tensor<fp16, [2]>>" (model.mil syntax). */
void mil_type_str(const MilType *t, char *buf, size_t size);

/* ==== Const data ==== */

/* A blob in a weight file (blob storage v2): where it is and, if available, its bytes. */
typedef struct MilBlobRef {
    const char *file;      /* proto path, "@model_path/weights/weight.bin" */
    uint64_t offset;       /* offset of the blob's 64-byte metadata record */
    uint64_t nbytes;       /* packed data size */
    const void *data;      /* the bytes (mapped by a reader, or a small copy kept by the
                              writer); NULL when the data lives only on disk */
    const void *owner;     /* identifies the file the offset belongs to (a writer or reader) */
} MilBlobRef;

typedef enum MilConstKind { MIL_CONST_BYTES = 0, MIL_CONST_BLOB = 1 } MilConstKind;

/* Compile-time data of a const output or a literal. Byte layout (both kinds): row-major,
 * little-endian, fp16 as IEEE half bits, bool one byte (0/1) per element, sub-byte types
 * packed LSB-first (see mil_pack_subbyte). String tensors keep their elements in strs. */
typedef struct MilConst {
    MilConstKind kind;
    const void *bytes;     /* MIL_CONST_BYTES: the data (nbytes long) */
    uint64_t nbytes;
    const char *const *strs;  /* MIL_STRING: numel strings */
    MilBlobRef blob;       /* MIL_CONST_BLOB */
} MilConst;

/* ==== Program ==== */

typedef struct MilProgram MilProgram;
typedef struct MilFunction MilFunction;
typedef struct MilOp MilOp;
typedef struct MilValue MilValue;
typedef struct MilOpDef MilOpDef;

struct MilValue {
    const char *name;       /* NULL for literals */
    MilType type;
    MilFunction *fn;        /* scope; NULL for literals */
    MilOp *producer;        /* NULL for function inputs and literals */
    int output_index;
    const MilConst *data;   /* const op outputs and literals; NULL otherwise */
    /* Function inputs with several accepted shapes (Core ML enumeratedShapes): n_shapes
     * shapes of type.rank dims each, the default first. type.dims has MIL_DIM_UNKNOWN where
     * they differ. */
    int n_shapes;
    const int64_t *shapes;
};

/* One input of an op: a parameter name bound to one value or, for a variadic parameter,
 * several. n == 0 means an optional input that is absent. */
typedef struct MilArg {
    const char *param;
    int n;
    MilValue **vals;
} MilArg;

struct MilOp {
    const char *type;       /* "conv" */
    const MilOpDef *def;    /* table entry; NULL for an op type the table does not know
                               (only in programs read leniently, see coreml/package.h) */
    const char *name;       /* the op's "name" attribute */
    MilFunction *fn;
    /* Known ops: one entry per parameter of def, in table order (absent ones have n == 0).
     * Unknown ops: the inputs in file order. */
    int n_args;
    MilArg *args;
    int n_outputs;
    MilValue **outputs;
};

struct MilFunction {
    const char *name;
    const char *opset;      /* "CoreML8" */
    MilProgram *prog;
    int n_inputs;           /* tensors and states, in declaration order */
    MilValue **inputs;
    int n_ops;              /* topological order */
    MilOp **ops;
    int n_outputs;
    MilValue **outputs;
    struct MilNameSet *names;     /* value names in scope */
    struct MilNameSet *op_names;  /* op names */
    int cap_inputs, cap_ops;
};

/* Blob sink: lets the builder stream large const data (>= 10 elements) straight into a
 * weight file as it is produced instead of keeping it in memory. put() stores the blob (or
 * finds an identical one) and fills *out. data is mil_packed_size(dt, numel) bytes.
 * Installed by the package writer. */
typedef struct MilBlobSink {
    void *ctx;
    int (*put)(void *ctx, MilDType dt, uint64_t numel, const void *data, MilBlobRef *out, Err *e);
} MilBlobSink;

struct MilProgram {
    int n_functions;        /* in order of creation (the order written to the description) */
    MilFunction **functions;
    const char *default_function;   /* NULL: the first function */
    MilBlobSink sink;
    struct MilArena *arena;
    int failed;
    Err err;
    unsigned long name_counter;
};

MilProgram *mil_program_new(void);
void mil_program_free(MilProgram *p);
/* 0 if no builder call has failed; otherwise -1 with the first error copied into *e. */
int mil_error(const MilProgram *p, Err *e);
/* Records an error (first one wins) and returns -1. For code that extends the builder. */
int mil_fail(MilProgram *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mil_program_set_blob_sink(MilProgram *p, const MilBlobSink *sink);
/* The function the package's description marks as default (multifunction form). */
void mil_program_set_default_function(MilProgram *p, const char *name);
MilFunction *mil_program_function(const MilProgram *p, const char *name);
/* Copies a string into the program's arena (for extensions and readers). */
const char *mil_strdup(MilProgram *p, const char *s);
void *mil_alloc(MilProgram *p, size_t n);   /* zeroed, arena-owned */

/* New function; opset NULL means "CoreML8". Names are MIL identifiers. */
MilFunction *mil_function_new(MilProgram *p, const char *name, const char *opset);
/* A tensor input. */
MilValue *mil_input(MilFunction *f, const char *name, MilDType dt, int rank, const int64_t *dims);
/* A tensor input that accepts several shapes (n_shapes x rank, the default first). The MIL
 * type has unknown dims where the shapes differ, as coremltools writes it. */
MilValue *mil_input_enumerated(MilFunction *f, const char *name, MilDType dt, int rank, int n_shapes,
                               const int64_t *shapes);
/* A state input (Core ML allows fp16 states only). */
MilValue *mil_state(MilFunction *f, const char *name, MilDType dt, int rank, const int64_t *dims);
/* The function's outputs (values of this function; names become the output names). */
int mil_set_outputs(MilFunction *f, int n, MilValue *const *outs);
/* Value in scope by name, or NULL. */
MilValue *mil_lookup(const MilFunction *f, const char *name);
/* True if v is a name that matches [A-Za-z_][A-Za-z0-9_@]*. */
int mil_is_identifier(const char *s);

/* ==== Consts and literals ==== */

/* A const op. data is packed bytes (layout above), nbytes long; it is copied. Fewer than
 * 10 elements stay in the program (written inline); larger data goes to the blob sink if one
 * is installed (only a reference is kept, plus a copy when it is small), else it is kept in
 * memory and written to weight.bin when the package is written. name NULL: generated. */
MilValue *mil_const(MilFunction *f, const char *name, MilDType dt, int rank, const int64_t *dims,
                    const void *data, size_t nbytes);
/* A const op whose data is an existing blob (e.g. from pkg_writer_add_blob): the same ref
 * may be used by any number of consts in any function. */
MilValue *mil_const_blob(MilFunction *f, const char *name, MilDType dt, int rank, const int64_t *dims,
                         const MilBlobRef *ref);
MilValue *mil_const_i32(MilFunction *f, const char *name, int32_t v);           /* int32 scalar */
MilValue *mil_const_i32v(MilFunction *f, const char *name, int n, const int32_t *v); /* int32 [n] */
MilValue *mil_const_bool(MilFunction *f, const char *name, int v);
MilValue *mil_const_boolv(MilFunction *f, const char *name, int n, const uint8_t *v);
MilValue *mil_const_fp16(MilFunction *f, const char *name, float v);            /* rounded */
MilValue *mil_const_fp32(MilFunction *f, const char *name, float v);
MilValue *mil_const_str(MilFunction *f, const char *name, const char *s);
/* A scalar of a float dtype (fp16 or fp32) holding v. */
MilValue *mil_const_float(MilFunction *f, const char *name, MilDType dt, double v);
/* Const strings for string tensors are rare; strs has numel entries. */
MilValue *mil_const_strv(MilFunction *f, const char *name, int n, const char *const *strs);

/* Literals: data bound inline to an op input (the iOS 18 constexpr ops take their inputs this
 * way; coremltools emits no const op for them). Same data rules as mil_const, except that
 * large bytes are always sent to the blob sink when there is one. */
MilValue *mil_literal(MilProgram *p, MilDType dt, int rank, const int64_t *dims, const void *data,
                      size_t nbytes);
MilValue *mil_literal_blob(MilProgram *p, MilDType dt, int rank, const int64_t *dims,
                           const MilBlobRef *ref);

/* True for const op outputs, constexpr op outputs and literals (compile-time values). */
int mil_value_is_const(const MilValue *v);
/* Bytes of const data, or NULL if not in memory (a blob only on disk). */
const void *mil_const_bytes(const MilConst *c);
/* Reads integer const data (any integer or bool dtype) as int64: up to max values into out,
 * count in *n. -1 if v has no data in memory or is not integer. */
int mil_value_ints(const MilValue *v, int64_t *out, int max, int *n);
/* Reads float const data (fp16/fp32/fp64/bf16) as double. Same convention. */
int mil_value_floats(const MilValue *v, double *out, int max, int *n);
/* The string of a string scalar const, or NULL. */
const char *mil_value_str(const MilValue *v);

/* ==== Ops ==== */

/* One input for mil_add_op: a single value, or a list for a variadic parameter. */
typedef struct MilIn {
    const char *param;
    MilValue *value;
    MilValue *const *values;
    int n_values;
} MilIn;
#define MIL_IN(p, v) ((MilIn){(p), (v), NULL, 0})
#define MIL_INS(p, vs, n) ((MilIn){(p), NULL, (vs), (n)})

/* Adds an op of any type in the table. Inputs not given that have a default are
 * materialized as consts named "<name>_<param>_0". Checks dtypes, const-ness, shapes and
 * opset; infers and names the outputs ("<name>" for one output, "<name>_<i>" for several).
 * name NULL: generated. Returns the op, or NULL (error recorded in the program). */
MilOp *mil_add_op(MilFunction *f, const char *type, const char *name, int n_in, const MilIn *in);
/* mil_add_op for an op with exactly one output; returns that output. */
MilValue *mil_add_op1(MilFunction *f, const char *type, const char *name, int n_in, const MilIn *in);
/* The op's input for a parameter, NULL if absent (first value for variadic inputs). */
MilValue *mil_op_input(const MilOp *op, const char *param);
const MilArg *mil_op_arg(const MilOp *op, const char *param);

/* ---- Typed builders (all return NULL after an error) ---- */

/* Elementwise binary, numpy broadcasting; x and y must have the same dtype. */
MilValue *mil_add_add(MilFunction *f, const char *name, MilValue *x, MilValue *y);
MilValue *mil_add_sub(MilFunction *f, const char *name, MilValue *x, MilValue *y);
MilValue *mil_add_mul(MilFunction *f, const char *name, MilValue *x, MilValue *y);
MilValue *mil_add_real_div(MilFunction *f, const char *name, MilValue *x, MilValue *y);
MilValue *mil_add_maximum(MilFunction *f, const char *name, MilValue *x, MilValue *y);
MilValue *mil_add_minimum(MilFunction *f, const char *name, MilValue *x, MilValue *y);
MilValue *mil_add_pow(MilFunction *f, const char *name, MilValue *x, MilValue *y);
MilValue *mil_add_greater_equal(MilFunction *f, const char *name, MilValue *x, MilValue *y); /* bool */
MilValue *mil_add_less(MilFunction *f, const char *name, MilValue *x, MilValue *y);          /* bool */

/* Elementwise unary on fp16/fp32. */
MilValue *mil_add_sqrt(MilFunction *f, const char *name, MilValue *x);
MilValue *mil_add_exp(MilFunction *f, const char *name, MilValue *x);
MilValue *mil_add_tanh(MilFunction *f, const char *name, MilValue *x);
MilValue *mil_add_silu(MilFunction *f, const char *name, MilValue *x);
MilValue *mil_add_relu(MilFunction *f, const char *name, MilValue *x);
MilValue *mil_add_identity(MilFunction *f, const char *name, MilValue *x);
MilValue *mil_add_rsqrt(MilFunction *f, const char *name, MilValue *x, double epsilon);
/* mode: "EXACT", "TANH_APPROXIMATION" or "SIGMOID_APPROXIMATION". */
MilValue *mil_add_gelu(MilFunction *f, const char *name, MilValue *x, const char *mode);
MilValue *mil_add_softmax(MilFunction *f, const char *name, MilValue *x, int axis);
MilValue *mil_add_clip(MilFunction *f, const char *name, MilValue *x, double alpha, double beta);
/* dtype: target type (fp16, fp32, int8, uint8, int16, uint16, int32, bool). */
MilValue *mil_add_cast(MilFunction *f, const char *name, MilValue *x, MilDType dtype);

/* layer_norm over axes (n_axes == 0: all axes); gamma/beta may be NULL. */
MilValue *mil_add_layer_norm(MilFunction *f, const char *name, MilValue *x, int n_axes, const int32_t *axes,
                             MilValue *gamma, MilValue *beta, double epsilon);
/* Reductions over axes (n_axes == 0: all axes). */
MilValue *mil_add_reduce_mean(MilFunction *f, const char *name, MilValue *x, int n_axes, const int32_t *axes,
                              int keep_dims);
MilValue *mil_add_reduce_sum(MilFunction *f, const char *name, MilValue *x, int n_axes, const int32_t *axes,
                             int keep_dims);
MilValue *mil_add_reduce_max(MilFunction *f, const char *name, MilValue *x, int n_axes, const int32_t *axes,
                             int keep_dims);
/* int32 indices of the maxima along axis. */
MilValue *mil_add_reduce_argmax(MilFunction *f, const char *name, MilValue *x, int axis, int keep_dims);

/* 2-D convolution style op on x (n, Cin, *spatial) with weight (Cout, Cin/groups, *kernel).
 * opts NULL: strides 1, pad_type "valid", pad 0, dilations 1, groups 1. */
typedef struct MilConvOpts {
    const char *pad_type;        /* NULL: "valid"; "same", "same_lower", "custom" */
    const int32_t *strides;      /* [spatial] or NULL */
    const int32_t *pad;          /* [2*spatial] or NULL (used with "custom") */
    const int32_t *dilations;    /* [spatial] or NULL */
    int groups;                  /* 0: 1 */
} MilConvOpts;
MilValue *mil_add_conv(MilFunction *f, const char *name, MilValue *x, MilValue *weight, MilValue *bias,
                       const MilConvOpts *opts);
/* x (..., Din) . weight(Dout, Din)^T + bias; weight/bias compile-time; bias NULL: zeros. */
MilValue *mil_add_linear(MilFunction *f, const char *name, MilValue *x, MilValue *weight, MilValue *bias);
MilValue *mil_add_matmul(MilFunction *f, const char *name, MilValue *x, MilValue *y, int transpose_x,
                         int transpose_y);

/* gather(x, indices, axis, batch_dims); validate_indices false. */
MilValue *mil_add_gather(MilFunction *f, const char *name, MilValue *x, MilValue *indices, int axis,
                         int batch_dims);
MilValue *mil_add_gather_along_axis(MilFunction *f, const char *name, MilValue *x, MilValue *indices,
                                    int axis);
MilValue *mil_add_concat(MilFunction *f, const char *name, int n, MilValue *const *values, int axis,
                         int interleave);
/* Splits along axis into n_splits equal parts (sizes NULL) or parts of the given sizes;
 * the outputs are op->outputs[0..n_splits-1], named "<name>_<i>". */
MilOp *mil_add_split(MilFunction *f, const char *name, MilValue *x, int axis, int n_splits,
                     const int32_t *sizes);

/* begin/end as constants (begin, end) or run-time int32 values (begin_v, end_v);
 * NULL stride/masks are omitted (their defaults apply). */
typedef struct MilSlice {
    int rank;
    const int32_t *begin, *end;
    MilValue *begin_v, *end_v;
    const int32_t *stride;
    const uint8_t *begin_mask, *end_mask, *squeeze_mask;
} MilSlice;
MilValue *mil_add_slice_by_index(MilFunction *f, const char *name, MilValue *x, const MilSlice *s);
/* x with the slice s replaced by update (iOS 18). */
MilValue *mil_add_slice_update(MilFunction *f, const char *name, MilValue *x, MilValue *update,
                               const MilSlice *s);
MilValue *mil_add_reshape(MilFunction *f, const char *name, MilValue *x, int rank, const int32_t *shape);
MilValue *mil_add_transpose(MilFunction *f, const char *name, MilValue *x, int rank, const int32_t *perm);
MilValue *mil_add_expand_dims(MilFunction *f, const char *name, MilValue *x, int n, const int32_t *axes);
/* n == 0: squeeze every size-1 dim. */
MilValue *mil_add_squeeze(MilFunction *f, const char *name, MilValue *x, int n, const int32_t *axes);
MilValue *mil_add_tile(MilFunction *f, const char *name, MilValue *x, int rank, const int32_t *reps);
MilValue *mil_add_select(MilFunction *f, const char *name, MilValue *cond, MilValue *a, MilValue *b);
MilValue *mil_add_band_part(MilFunction *f, const char *name, MilValue *x, int lower, int upper);

/* States (iOS 18). read_state gives the wrapped tensor; write_state has no output.
 * update_state is coremltools' coreml_update_state as Core ML stores it: write_state named
 * "<name>_write_state", then read_state named name, whose output is returned. */
MilValue *mil_add_read_state(MilFunction *f, const char *name, MilValue *state);
MilOp *mil_add_write_state(MilFunction *f, const char *name, MilValue *state, MilValue *data);
MilValue *mil_add_update_state(MilFunction *f, const char *name, MilValue *state, MilValue *value);

/* iOS 18 palettized weight: indices (uintN, weight shape) and lut (T, rank+2:
 * [g0..g(K-1), 2^N, vector]) are literals (mil_literal / mil_literal_blob), bound inline.
 * vector_axis < 0 when the LUT holds scalars. */
MilValue *mil_add_lut_to_dense(MilFunction *f, const char *name, MilValue *indices, MilValue *lut,
                               int vector_axis);

/* ==== Low-level construction (for readers) ==== */

/* These build programs exactly as a file describes them, without type inference; run
 * mil_program_validate() afterwards. They record errors like the builder does (duplicate or
 * invalid names, bad shapes). */

/* coremltools' rule for where const data goes: a blob when it has >= 10 elements and its
 * dtype is fp16/fp32/int8/uint8/sub-byte, or int16/uint16/int32/uint32 from spec 9 on. */
int mil_should_use_blob(MilDType dt, int64_t numel, int spec_version);
/* An input of any type (tensor with unknown dims, or state). */
MilValue *mil_raw_input(MilFunction *f, const char *name, const MilType *t);
/* A const op with the given output name, op name, type and data (data is referenced, not
 * copied: allocate it with mil_alloc or keep it alive as long as the program). */
MilValue *mil_raw_const(MilFunction *f, const char *op_name, const char *out_name, const MilType *t,
                        const MilConst *c);
/* A literal with the given type and data (referenced as above). */
MilValue *mil_raw_literal(MilProgram *p, const MilType *t, const MilConst *c);
/* An op with inputs args (param names and values; for known op types they are reordered to
 * the table's order, unknown params are errors) and declared outputs. */
MilOp *mil_raw_op(MilFunction *f, const char *type, const char *name, int n_args, const MilArg *args,
                  int n_outputs, const char *const *out_names, const MilType *out_types, int allow_unknown);

/* ==== Whole programs ==== */

/* Re-checks every op of every function against the op table: input dtypes, const-ness,
 * inferred vs declared output types, names, outputs. Used by the reader. Unknown op types are
 * errors unless allow_unknown. Returns 0 or -1 with e naming the function and op. */
int mil_program_validate(const MilProgram *p, int allow_unknown, Err *e);

/* Structural comparison: functions, inputs (with enumerated shapes), ops (type, name,
 * inputs, output names and types), outputs, const data (bytes in memory compared byte for
 * byte; blobs compared by size and, when both have data, bytes). 0 if equal, else -1 with
 * the first difference in e. */
int mil_program_compare(const MilProgram *a, const MilProgram *b, Err *e);

#endif
