/* ops.c - the MIL op table (signatures, defaults, dtypes) and type inference for each op.
 *
 * Shapes follow coremltools' type_inference for the iOS 18 view of each op (see ops.h for
 * sources). Unknown dimensions (MIL_DIM_UNKNOWN) propagate the way coremltools' symbols do:
 * a result that depends on one is unknown.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"
#include "mil/ops.h"

/* ==== dtype sets ==== */

#define DT(x) (1ull << (x))
#define D_F (DT(MIL_FP16) | DT(MIL_FP32))
#define D_FI (D_F | DT(MIL_INT32))
#define D_I32 DT(MIL_INT32)
#define D_BOOL DT(MIL_BOOL)
#define D_STR DT(MIL_STRING)
#define D_IDX8 (DT(MIL_INT8) | DT(MIL_INT16) | DT(MIL_INT32))
/* iOS 17 tensor-transformation dtypes: fp16 fp32 int8 int16 int32 uint8 uint16 bool */
#define D_XFORM (D_F | DT(MIL_INT8) | DT(MIL_INT16) | DT(MIL_INT32) | DT(MIL_UINT8) | DT(MIL_UINT16) | D_BOOL)
#define D_GATHER_X (D_F | DT(MIL_INT32) | DT(MIL_INT16) | DT(MIL_UINT16) | DT(MIL_INT8) | DT(MIL_UINT8))
#define D_GATHER_I (DT(MIL_INT32) | DT(MIL_INT16) | DT(MIL_UINT16) | DT(MIL_INT8) | DT(MIL_UINT8))
#define D_LUT_IDX (DT(MIL_UINT1) | DT(MIL_UINT2) | DT(MIL_UINT3) | DT(MIL_UINT4) | DT(MIL_UINT6) | DT(MIL_UINT8))
#define D_LUT_T (DT(MIL_INT8) | DT(MIL_UINT8) | D_F)
#define D_ANY 0

#define OPT MIL_P_OPTIONAL
#define CST MIL_P_CONST
#define VAR MIL_P_VARIADIC
#define STATE MIL_P_STATE

#define NODEF {MIL_DEF_NONE, 0, 0, NULL}
#define DEF_I32(v) {MIL_DEF_I32, (v), 0, NULL}
#define DEF_BOOL(v) {MIL_DEF_BOOL, (v), 0, NULL}
#define DEF_STR(v) {MIL_DEF_STR, 0, 0, (v)}
#define DEF_FLOAT(v, like) {MIL_DEF_FLOAT, 0, (v), (like)}

/* ==== Inference helpers ==== */

static int ierr(MilInferCtx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ierr(MilInferCtx *c, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(c->e, "op '%s' (%s): %s", c->op_name ? c->op_name : "?", c->def->type, msg);
}

static const MilArg *arg(const MilInferCtx *c, const char *param) {
    int i = mil_param_index(c->def, param);
    AN_ASSERT(i >= 0);
    return &c->args[i];
}

static MilValue *in(const MilInferCtx *c, const char *param) {
    const MilArg *a = arg(c, param);
    return a->n ? a->vals[0] : NULL;
}

static void tstr(const MilType *t, char *buf, size_t n) { mil_type_str(t, buf, n); }

/* Integer values of a compile-time input (scalar or vector). */
static int const_ints(MilInferCtx *c, const char *param, int64_t *out, int max, int *n) {
    MilValue *v = in(c, param);
    if (!v) return ierr(c, "input '%s' is missing", param);
    if (mil_value_ints(v, out, max, n) < 0)
        return ierr(c, "input '%s' must be a compile-time integer value with at most %d elements", param, max);
    return 0;
}

static int const_int(MilInferCtx *c, const char *param, int64_t *out) {
    int n;
    int64_t buf[1];
    if (const_ints(c, param, buf, 1, &n) < 0) return -1;
    if (n != 1 || in(c, param)->type.rank != 0) return ierr(c, "input '%s' must be a scalar", param);
    *out = buf[0];
    return 0;
}

static int const_bool(MilInferCtx *c, const char *param, int dflt, int *out) {
    MilValue *v = in(c, param);
    if (!v) {
        *out = dflt;
        return 0;
    }
    int64_t b;
    if (const_int(c, param, &b) < 0) return -1;
    *out = b != 0;
    return 0;
}

static const char *const_str(MilInferCtx *c, const char *param) {
    MilValue *v = in(c, param);
    const char *s = mil_value_str(v);
    if (!s) ierr(c, "input '%s' must be a compile-time string scalar", param);
    return s;
}

/* Normalizes axis into [0, rank); -1 on error. */
static int norm_axis(MilInferCtx *c, const char *what, int64_t axis, int rank, int *out) {
    *out = 0;
    if (axis < -rank || axis >= rank) return ierr(c, "%s %lld is out of range for rank %d", what, (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return 0;
}

static MilType tensor_like(const MilType *t, MilDType dt) {
    MilType r = *t;
    r.kind = MIL_TENSOR;
    r.dtype = dt;
    return r;
}

int mil_broadcast(const MilType *a, const MilType *b, MilType *out, Err *e) {
    int rank = a->rank > b->rank ? a->rank : b->rank;
    MilType r;
    memset(&r, 0, sizeof r);
    r.kind = MIL_TENSOR;
    r.dtype = a->dtype;
    r.rank = rank;
    for (int i = 0; i < rank; i++) {
        int ia = i - (rank - a->rank), ib = i - (rank - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        int64_t d;
        if (da == 1)
            d = db;
        else if (db == 1)
            d = da;
        else if (da < 0 || db < 0)
            d = da < 0 ? (db < 0 ? MIL_DIM_UNKNOWN : db) : da;
        else if (da == db)
            d = da;
        else {
            char sa[128], sb[128];
            mil_type_str(a, sa, sizeof sa);
            mil_type_str(b, sb, sizeof sb);
            return err_set(e, "shapes of %s and %s do not broadcast (axis %d: %lld vs %lld)", sa, sb, i,
                           (long long)da, (long long)db);
        }
        r.dims[i] = d;
    }
    *out = r;
    return 0;
}

static int broadcast2(MilInferCtx *c, const MilType *a, const MilType *b, MilType *out) {
    Err sub;
    if (mil_broadcast(a, b, out, &sub) < 0) return ierr(c, "%s", sub.msg);
    return 0;
}

/* ==== Elementwise ==== */

static int infer_same_as_x(MilInferCtx *c) {
    c->n_out = 1;
    c->out[0] = tensor_like(&in(c, "x")->type, in(c, "x")->type.dtype);
    return 0;
}

static int infer_binary(MilInferCtx *c) {
    c->n_out = 1;
    return broadcast2(c, &in(c, "x")->type, &in(c, "y")->type, &c->out[0]);
}

static int infer_compare(MilInferCtx *c) {
    if (infer_binary(c) < 0) return -1;
    c->out[0].dtype = MIL_BOOL;
    return 0;
}

static int infer_gelu(MilInferCtx *c) {
    const char *mode = const_str(c, "mode");
    if (!mode) return -1;
    if (strcmp(mode, "EXACT") && strcmp(mode, "TANH_APPROXIMATION") && strcmp(mode, "SIGMOID_APPROXIMATION"))
        return ierr(c, "mode '%s' is not one of EXACT, TANH_APPROXIMATION, SIGMOID_APPROXIMATION", mode);
    return infer_same_as_x(c);
}

static int infer_softmax(MilInferCtx *c) {
    int64_t axis;
    int a;
    if (const_int(c, "axis", &axis) < 0) return -1;
    if (norm_axis(c, "axis", axis, in(c, "x")->type.rank, &a) < 0) return -1;
    return infer_same_as_x(c);
}

static int infer_clip(MilInferCtx *c) {
    double lo, hi;
    int n;
    if (mil_value_floats(in(c, "alpha"), &lo, 1, &n) < 0 || n != 1 ||
        mil_value_floats(in(c, "beta"), &hi, 1, &n) < 0 || n != 1)
        return ierr(c, "alpha and beta must be compile-time float scalars");
    if (!(lo < hi)) return ierr(c, "alpha (%g) must be smaller than beta (%g)", lo, hi);
    return infer_same_as_x(c);
}

static int infer_band_part(MilInferCtx *c) {
    if (in(c, "x")->type.rank < 2) return ierr(c, "x must have rank >= 2");
    return infer_same_as_x(c);
}

static int infer_cast(MilInferCtx *c) {
    const char *s = const_str(c, "dtype");
    if (!s) return -1;
    static const char *const ok[] = {"int8", "uint8", "int16", "uint16", "int32", "fp16", "fp32", "bool"};
    MilDType to = MIL_DT_INVALID;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(s, ok[i])) to = mil_dtype_from_name(s);
    if (to == MIL_DT_INVALID)
        return ierr(c, "dtype '%s' is not one of int8, uint8, int16, uint16, int32, fp16, fp32, bool", s);
    c->n_out = 1;
    c->out[0] = tensor_like(&in(c, "x")->type, to);
    return 0;
}

static int infer_select(MilInferCtx *c) {
    MilType ab, all;
    if (broadcast2(c, &in(c, "a")->type, &in(c, "b")->type, &ab) < 0) return -1;
    MilType cond = in(c, "cond")->type;
    cond.dtype = ab.dtype;
    if (broadcast2(c, &cond, &ab, &all) < 0) return -1;
    if (!mil_type_equal(&all, &ab)) {
        char s1[128], s2[128];
        tstr(&in(c, "cond")->type, s1, sizeof s1);
        tstr(&ab, s2, sizeof s2);
        return ierr(c, "cond %s must broadcast to the shape of a and b (%s)", s1, s2);
    }
    c->n_out = 1;
    c->out[0] = ab;
    return 0;
}

/* ==== Linear algebra ==== */

/* coremltools' is_descendant_of_const: a compile-time value, or an op output whose inputs all are
 * (searched up to a depth; deeper chains count as run-time values). */
static int descends_from_const(const MilValue *v, int depth) {
    if (mil_value_is_const(v)) return 1;
    if (!v->producer || depth > 32) return 0;
    const MilOp *op = v->producer;
    for (int i = 0; i < op->n_args; i++)
        for (int k = 0; k < op->args[i].n; k++)
            if (!descends_from_const(op->args[i].vals[k], depth + 1)) return 0;
    return op->n_args > 0;
}

static int infer_conv(MilInferCtx *c) {
    const MilType *x = &in(c, "x")->type, *w = &in(c, "weight")->type;
    int r = x->rank;
    if (r < 3 || r > 5) return ierr(c, "x must have rank 3..5 (n, C_in, spatial...), got %d", r);
    if (w->rank != r) return ierr(c, "weight must have the same rank as x (%d), got %d", r, w->rank);
    int ns = r - 2;
    int64_t groups, strides[3], dil[3], pad[6];
    int n;
    if (const_int(c, "groups", &groups) < 0) return -1;
    if (groups < 1) return ierr(c, "groups must be >= 1, got %lld", (long long)groups);
    if (const_ints(c, "strides", strides, 3, &n) < 0) return -1;
    if (n != ns) return ierr(c, "strides needs %d values, got %d", ns, n);
    if (const_ints(c, "dilations", dil, 3, &n) < 0) return -1;
    if (n != ns) return ierr(c, "dilations needs %d values, got %d", ns, n);
    if (const_ints(c, "pad", pad, 6, &n) < 0) return -1;
    if (n != 2 * ns) return ierr(c, "pad needs %d values, got %d", 2 * ns, n);
    const char *pt = const_str(c, "pad_type");
    if (!pt) return -1;
    int custom = !strcmp(pt, "custom"), same = !strcmp(pt, "same") || !strcmp(pt, "same_lower");
    if (!custom && !same && strcmp(pt, "valid"))
        return ierr(c, "pad_type '%s' is not one of valid, same, same_lower, custom", pt);
    if (c->opset < 6 && !strcmp(pt, "same_lower"))
        return ierr(c, "pad_type 'same_lower' needs opset CoreML6 (iOS 16) or later");
    /* coremltools: a weight computed at run time cannot be dilated */
    for (int i = 0; i < ns; i++)
        if (dil[i] > 1 && !descends_from_const(in(c, "weight"), 0))
            return ierr(c, "dilations > 1 need a compile-time weight; 'weight' is computed at run time");
    int64_t cin = x->dims[1], cout = w->dims[0];
    if (cin >= 0) {
        if (cin % groups) return ierr(c, "input channels %lld are not divisible by groups %lld", (long long)cin, (long long)groups);
        if (w->dims[1] >= 0 && cin / groups != w->dims[1])
            return ierr(c, "x has %lld input channels; with groups %lld the weight needs shape [C_out, %lld, ...], got [.., %lld, ..]",
                        (long long)cin, (long long)groups, (long long)(cin / groups), (long long)w->dims[1]);
    }
    MilValue *bias = in(c, "bias");
    if (bias && (bias->type.rank != 1 || (cout >= 0 && bias->type.dims[0] >= 0 && bias->type.dims[0] != cout)))
        return ierr(c, "bias must have shape [%lld]", (long long)cout);
    MilType o = tensor_like(x, x->dtype);
    o.dims[1] = cout;
    for (int i = 0; i < ns; i++) {
        int64_t xi = x->dims[2 + i], k = w->dims[2 + i];
        if (strides[i] < 1 || dil[i] < 1) return ierr(c, "strides and dilations must be >= 1");
        if (xi < 0 || k < 0) {
            o.dims[2 + i] = MIL_DIM_UNKNOWN;
            continue;
        }
        int64_t ek = (k - 1) * dil[i] + 1, out;
        if (same)
            out = (xi + strides[i] - 1) / strides[i];
        else {
            int64_t p = custom ? pad[2 * i] + pad[2 * i + 1] : 0;
            if (xi + p < ek) return ierr(c, "spatial axis %d: input %lld (+ pad %lld) is smaller than the kernel %lld", i, (long long)xi, (long long)p, (long long)ek);
            out = (xi + p - ek) / strides[i] + 1;
        }
        o.dims[2 + i] = out;
    }
    c->n_out = 1;
    c->out[0] = o;
    return 0;
}

static int infer_linear(MilInferCtx *c) {
    const MilType *x = &in(c, "x")->type, *w = &in(c, "weight")->type;
    if (x->rank < 1) return ierr(c, "x must have rank >= 1");
    if (w->rank != 2) return ierr(c, "weight must have rank 2 (D_out, D_in), got rank %d", w->rank);
    int64_t din = x->dims[x->rank - 1];
    if (din >= 0 && w->dims[1] >= 0 && din != w->dims[1])
        return ierr(c, "last dim of x (%lld) does not match weight's D_in (%lld)", (long long)din, (long long)w->dims[1]);
    MilValue *bias = in(c, "bias");
    if (bias && (bias->type.rank != 1 || bias->type.dims[0] != w->dims[0]))
        return ierr(c, "bias must have shape [%lld]", (long long)w->dims[0]);
    c->n_out = 1;
    c->out[0] = tensor_like(x, x->dtype);
    c->out[0].dims[x->rank - 1] = w->dims[0];
    return 0;
}

/* True for the output of a const op (or a literal): coremltools' iOS 17 matmul tests the producer's op
 * type, so a constexpr output does not count. */
static int is_const_op_output(const MilValue *v) {
    if (!v->producer) return v->data != NULL && !v->fn;
    return v->producer->def && v->producer->def->id == MIL_OP_CONST;
}

static int infer_matmul(MilInferCtx *c) {
    MilType x = in(c, "x")->type, y = in(c, "y")->type;
    int tx, ty;
    if (const_bool(c, "transpose_x", 0, &tx) < 0 || const_bool(c, "transpose_y", 0, &ty) < 0) return -1;
    /* iOS 17: x and y may differ in dtype only when exactly one of them is a const; the result then
     * takes the other one's dtype */
    int xc = is_const_op_output(in(c, "x")), yc = is_const_op_output(in(c, "y"));
    if (xc == yc && x.dtype != y.dtype)
        return ierr(c, "x is %s and y is %s; they may differ only when exactly one of them is a const",
                    mil_dtype_name(x.dtype), mil_dtype_name(y.dtype));
    MilDType odt = xc && !yc ? y.dtype : x.dtype;
    int xr = x.rank, yr = y.rank;
    if (xr < 1 || yr < 1) return ierr(c, "x and y must have rank >= 1");
    if (xr == 1 && tx) return ierr(c, "x is rank 1, transpose_x must be false");
    if (yr == 1 && ty) return ierr(c, "y is rank 1, transpose_y must be false");
    int64_t t;
    if (tx) t = x.dims[xr - 1], x.dims[xr - 1] = x.dims[xr - 2], x.dims[xr - 2] = t;
    if (ty) t = y.dims[yr - 1], y.dims[yr - 1] = y.dims[yr - 2], y.dims[yr - 2] = t;
    if (xr == 1) {
        memmove(x.dims + 1, x.dims, sizeof x.dims[0] * 1);
        x.dims[0] = 1;
        x.rank = 2;
    }
    if (yr == 1) {
        y.dims[1] = 1;
        y.rank = 2;
    }
    int64_t k1 = x.dims[x.rank - 1], k2 = y.dims[y.rank - 2];
    if (k1 >= 0 && k2 >= 0 && k1 != k2)
        return ierr(c, "inner dimensions differ: x (..., %lld) and y (%lld, ...)", (long long)k1, (long long)k2);
    MilType bx = x, by = y, b;
    bx.rank = x.rank - 2;
    by.rank = y.rank - 2;
    if (broadcast2(c, &bx, &by, &b) < 0) return -1;
    if (b.rank + 2 > MIL_MAX_RANK) return ierr(c, "result rank too large");
    b.dims[b.rank] = x.dims[x.rank - 2];
    b.dims[b.rank + 1] = y.dims[y.rank - 1];
    b.rank += 2;
    if (yr == 1) b.rank--;
    if (xr == 1) {
        int pos = yr != 1 ? b.rank - 2 : b.rank - 1;
        memmove(b.dims + pos, b.dims + pos + 1, sizeof b.dims[0] * (size_t)(b.rank - pos - 1));
        b.rank--;
    }
    b.dtype = odt;
    c->n_out = 1;
    c->out[0] = b;
    return 0;
}

/* ==== Normalization and reductions ==== */

static int infer_layer_norm(MilInferCtx *c) {
    const MilType *x = &in(c, "x")->type;
    int64_t axes[MIL_MAX_RANK];
    int n;
    if (const_ints(c, "axes", axes, MIL_MAX_RANK, &n) < 0) return -1;
    int used[MIL_MAX_RANK] = {0};
    for (int i = 0; i < n; i++) {
        int a;
        if (norm_axis(c, "axes entry", axes[i], x->rank, &a) < 0) return -1;
        used[a] = 1;
    }
    MilType norm;
    memset(&norm, 0, sizeof norm);
    for (int i = 0; i < x->rank; i++)
        if (used[i]) norm.dims[norm.rank++] = x->dims[i];
    const char *names[2] = {"gamma", "beta"};
    for (int k = 0; k < 2; k++) {
        MilValue *g = in(c, names[k]);
        if (!g) continue;
        int ok = g->type.rank == norm.rank;
        for (int i = 0; ok && i < norm.rank; i++)
            if (g->type.dims[i] >= 0 && norm.dims[i] >= 0 && g->type.dims[i] != norm.dims[i]) ok = 0;
        if (!ok) {
            char s[128];
            norm.dtype = g->type.dtype;
            tstr(&norm, s, sizeof s);
            return ierr(c, "%s must have the normalized shape %s", names[k], s);
        }
    }
    return infer_same_as_x(c);
}

static int reduce_shape(MilInferCtx *c, const MilType *x, const int *red, int keep, MilType *o) {
    *o = tensor_like(x, x->dtype);
    o->rank = 0;
    for (int i = 0; i < x->rank; i++) {
        if (red[i] && !keep) continue;
        o->dims[o->rank++] = red[i] ? 1 : x->dims[i];
    }
    (void)c;
    return 0;
}

static int infer_reduce(MilInferCtx *c) {
    const MilType *x = &in(c, "x")->type;
    int keep;
    if (const_bool(c, "keep_dims", 0, &keep) < 0) return -1;
    int red[MIL_MAX_RANK] = {0};
    if (in(c, "axes")) {
        int64_t axes[MIL_MAX_RANK];
        int n;
        if (const_ints(c, "axes", axes, MIL_MAX_RANK, &n) < 0) return -1;
        for (int i = 0; i < n; i++) {
            int a;
            if (norm_axis(c, "axes entry", axes[i], x->rank, &a) < 0) return -1;
            if (red[a]) return ierr(c, "axis %d is listed twice", a);
            red[a] = 1;
        }
    } else {
        for (int i = 0; i < x->rank; i++) red[i] = 1;
    }
    c->n_out = 1;
    return reduce_shape(c, x, red, keep, &c->out[0]);
}

static int infer_reduce_argmax(MilInferCtx *c) {
    const MilType *x = &in(c, "x")->type;
    int64_t axis;
    int a, keep;
    if (const_int(c, "axis", &axis) < 0 || norm_axis(c, "axis", axis, x->rank, &a) < 0) return -1;
    if (const_bool(c, "keep_dims", 0, &keep) < 0) return -1;
    MilDType odt = MIL_INT32;
    if (in(c, "output_dtype")) {
        const char *s = const_str(c, "output_dtype");
        if (!s) return -1;
        /* coremltools lower-cases the string before checking it */
        if (!strcasecmp(s, "uint16"))
            odt = MIL_UINT16;
        else if (strcasecmp(s, "int32"))
            return ierr(c, "output_dtype '%s' must be int32 or uint16", s);
    }
    int red[MIL_MAX_RANK] = {0};
    red[a] = 1;
    c->n_out = 1;
    reduce_shape(c, x, red, keep, &c->out[0]);
    c->out[0].dtype = odt;
    return 0;
}

/* ==== Gather ==== */

/* iOS 17 validate_indices = true: compile-time indices must lie in [0, size), as coremltools
 * checks in type inference (run-time indices are the runtime's business). */
static int check_gather_indices(MilInferCtx *c, int64_t size) {
    int validate;
    if (const_bool(c, "validate_indices", 0, &validate) < 0) return -1;
    MilValue *iv = in(c, "indices");
    int64_t n = mil_type_numel(&iv->type);
    if (!validate || !iv->data || n < 1 || n > INT32_MAX || size < 0) return 0;
    int64_t *idx = xmalloc(sizeof *idx * (size_t)n), bad = 0;
    int got, found = 0;
    if (mil_value_ints(iv, idx, (int)n, &got) == 0)
        for (int k = 0; k < got && !found; k++)
            if (idx[k] < 0 || idx[k] >= size) bad = idx[k], found = 1;
    free(idx);
    if (found) return ierr(c, "validate_indices: index %lld is outside [0, %lld)", (long long)bad, (long long)size);
    return 0;
}

static int infer_gather(MilInferCtx *c) {
    const MilType *x = &in(c, "x")->type, *ix = &in(c, "indices")->type;
    int64_t axis, bd;
    int a;
    if (const_int(c, "axis", &axis) < 0 || norm_axis(c, "axis", axis, x->rank, &a) < 0) return -1;
    bd = 0;   /* absent before iOS 16 */
    if (in(c, "batch_dims") && const_int(c, "batch_dims", &bd) < 0) return -1;
    if (bd < 0 || bd >= x->rank || bd > ix->rank) return ierr(c, "batch_dims %lld is out of range", (long long)bd);
    int orank = x->rank - 1 + ix->rank - (int)bd;
    if (orank > MIL_MAX_RANK) return ierr(c, "result rank %d is too large", orank);
    MilType o = tensor_like(x, x->dtype);
    o.rank = 0;
    for (int i = 0; i < a; i++) o.dims[o.rank++] = x->dims[i];
    for (int i = (int)bd; i < ix->rank; i++) o.dims[o.rank++] = ix->dims[i];
    for (int i = a + 1; i < x->rank; i++) o.dims[o.rank++] = x->dims[i];
    if (check_gather_indices(c, x->dims[a]) < 0) return -1;
    c->n_out = 1;
    c->out[0] = o;
    return 0;
}

static int infer_gather_along_axis(MilInferCtx *c) {
    const MilType *x = &in(c, "x")->type, *ix = &in(c, "indices")->type;
    int64_t axis;
    int a;
    if (x->rank != ix->rank) return ierr(c, "x (rank %d) and indices (rank %d) must have the same rank", x->rank, ix->rank);
    if (const_int(c, "axis", &axis) < 0 || norm_axis(c, "axis", axis, x->rank, &a) < 0) return -1;
    for (int i = 0; i < x->rank; i++)
        if (i != a && x->dims[i] >= 0 && ix->dims[i] >= 0 && x->dims[i] != ix->dims[i])
            return ierr(c, "x and indices differ at axis %d (%lld vs %lld)", i, (long long)x->dims[i], (long long)ix->dims[i]);
    if (check_gather_indices(c, x->dims[a]) < 0) return -1;
    c->n_out = 1;
    c->out[0] = tensor_like(ix, x->dtype);
    return 0;
}

/* ==== Concat / split ==== */

static int infer_concat(MilInferCtx *c) {
    const MilArg *vals = arg(c, "values");
    const MilType *t0 = &vals->vals[0]->type;
    int rank = t0->rank;
    int64_t axis;
    int a = 0, inter;
    if (const_int(c, "axis", &axis) < 0) return -1;
    if (const_bool(c, "interleave", 0, &inter) < 0) return -1;
    if (rank > 0 && norm_axis(c, "axis", axis, rank, &a) < 0) return -1;
    MilType o = tensor_like(t0, t0->dtype);
    int64_t total = 0;
    for (int k = 0; k < vals->n; k++) {
        const MilType *t = &vals->vals[k]->type;
        if (t->rank != rank) return ierr(c, "value %d has rank %d, value 0 has rank %d", k, t->rank, rank);
        if (t->dtype != t0->dtype)
            return ierr(c, "value %d is %s, value 0 is %s; values must share one dtype", k, mil_dtype_name(t->dtype),
                        mil_dtype_name(t0->dtype));
        for (int i = 0; i < rank; i++) {
            if (t->dims[i] < 0 || o.dims[i] < 0) continue;
            if ((i != a || inter) && t->dims[i] != o.dims[i])
                return ierr(c, "value %d has size %lld at axis %d, value 0 has %lld", k, (long long)t->dims[i], i,
                            (long long)o.dims[i]);
        }
        int64_t d = rank == 0 ? 1 : t->dims[a];
        if (d < 0 || total < 0)
            total = MIL_DIM_UNKNOWN;
        else
            total += d;
    }
    if (rank == 0) {
        o.rank = 1;
        o.dims[0] = total;
    } else {
        o.dims[a] = total;
    }
    c->n_out = 1;
    c->out[0] = o;
    return 0;
}

static int infer_split(MilInferCtx *c) {
    const MilType *x = &in(c, "x")->type;
    int64_t axis, ns = -1, sizes[MIL_MAX_OUTPUTS];
    int a, n_sizes = 0;
    if (const_int(c, "axis", &axis) < 0 || norm_axis(c, "axis", axis, x->rank, &a) < 0) return -1;
    if (in(c, "num_splits") && const_int(c, "num_splits", &ns) < 0) return -1;
    if (in(c, "split_sizes") && const_ints(c, "split_sizes", sizes, MIL_MAX_OUTPUTS, &n_sizes) < 0) return -1;
    if (ns < 0 && !n_sizes) return ierr(c, "needs num_splits or split_sizes");
    int64_t d = x->dims[a];
    int n;
    if (n_sizes) {
        if (ns >= 0 && ns != n_sizes) return ierr(c, "num_splits %lld differs from %d split_sizes", (long long)ns, n_sizes);
        int64_t sum = 0;
        for (int i = 0; i < n_sizes; i++) {
            if (sizes[i] < 0) return ierr(c, "split size %lld is negative", (long long)sizes[i]);
            sum += sizes[i];
        }
        if (d >= 0 && sum != d) return ierr(c, "split_sizes sum to %lld, axis %d has size %lld", (long long)sum, a, (long long)d);
        n = n_sizes;
    } else {
        if (ns < 1 || ns > MIL_MAX_OUTPUTS) return ierr(c, "num_splits %lld must be 1..%d", (long long)ns, MIL_MAX_OUTPUTS);
        if (d >= 0 && d % ns) return ierr(c, "num_splits %lld does not divide axis %d (size %lld)", (long long)ns, a, (long long)d);
        n = (int)ns;
        for (int i = 0; i < n; i++) sizes[i] = d >= 0 ? d / ns : MIL_DIM_UNKNOWN;
    }
    c->n_out = n;
    for (int i = 0; i < n; i++) {
        c->out[i] = tensor_like(x, x->dtype);
        c->out[i].dims[a] = sizes[i];
    }
    return 0;
}

/* ==== Slicing ==== */

/* Optional per-axis int/bool vectors for slicing; -1 on error. known[i] = 0 marks a run-time
 * begin/end entry. */
static int slice_vec(MilInferCtx *c, const char *param, int rank, int64_t dflt, int64_t *out, int *known,
                     int allow_runtime) {
    MilValue *v = in(c, param);
    for (int i = 0; i < rank; i++) out[i] = dflt, known[i] = 1;
    if (!v) return 0;
    if (v->type.rank != 1 || (v->type.dims[0] >= 0 && v->type.dims[0] != rank))
        return ierr(c, "%s must be a vector of %d values (one per axis of x)", param, rank);
    int n;
    if (mil_value_ints(v, out, rank, &n) == 0) {
        if (n != rank) return ierr(c, "%s must have %d values", param, rank);
        return 0;
    }
    if (!allow_runtime) return ierr(c, "%s must be a compile-time value", param);
    for (int i = 0; i < rank; i++) known[i] = 0;
    return 0;
}

static int slice_shape(MilInferCtx *c, const MilType *x, MilType *o) {
    int r = x->rank;
    int64_t b[MIL_MAX_RANK], e[MIL_MAX_RANK], s[MIL_MAX_RANK], bm[MIL_MAX_RANK], em[MIL_MAX_RANK], sm[MIL_MAX_RANK];
    int kb[MIL_MAX_RANK], ke[MIL_MAX_RANK], k[MIL_MAX_RANK];
    if (r < 1) return ierr(c, "x must have rank >= 1");
    if (slice_vec(c, "begin", r, 0, b, kb, 1) < 0 || slice_vec(c, "end", r, 0, e, ke, 1) < 0 ||
        slice_vec(c, "stride", r, 1, s, k, 0) < 0 || slice_vec(c, "begin_mask", r, 0, bm, k, 0) < 0 ||
        slice_vec(c, "end_mask", r, 0, em, k, 0) < 0 || slice_vec(c, "squeeze_mask", r, 0, sm, k, 0) < 0)
        return -1;
    *o = tensor_like(x, x->dtype);
    o->rank = 0;
    for (int i = 0; i < r; i++) {
        int64_t xd = x->dims[i], st = s[i], out;
        if (st == 0) return ierr(c, "stride is 0 at axis %d", i);
        if (sm[i]) continue;
        if (bm[i] && em[i]) {
            out = xd < 0 ? (st == 1 || st == -1 ? xd : MIL_DIM_UNKNOWN) : (xd + (st > 0 ? st : -st) - 1) / (st > 0 ? st : -st);
            o->dims[o->rank++] = out;
            continue;
        }
        if (!bm[i] && !em[i] && kb[i] && ke[i]) {
            int64_t o1 = -1;
            if (b[i] >= 0 && e[i] >= 0 && st > 0) {
                if (e[i] < b[i]) return ierr(c, "end %lld < begin %lld at axis %d", (long long)e[i], (long long)b[i], i);
                o1 = (e[i] - b[i] + st - 1) / st;
            }
            if (b[i] < 0 && e[i] < 0 && st < 0) {
                if (b[i] < e[i]) return ierr(c, "begin %lld < end %lld with a negative stride at axis %d", (long long)b[i], (long long)e[i], i);
                o1 = (b[i] - e[i] + (-st) - 1) / (-st);
            }
            if (o1 == 0 || o1 == 1) {
                o->dims[o->rank++] = o1;
                continue;
            }
        }
        if (!bm[i] && em[i] && kb[i] && ((b[i] == 0 && st < 0) || (b[i] == -1 && st > 0))) {
            o->dims[o->rank++] = 1;
            continue;
        }
        if (xd < 0 || (!kb[i] && !bm[i]) || (!ke[i] && !em[i])) {
            o->dims[o->rank++] = xd == 1 ? 1 : MIL_DIM_UNKNOWN;
            continue;
        }
        if (xd == 1) {
            o->dims[o->rank++] = 1;
            continue;
        }
        int64_t bb = b[i], ee = e[i];
        if (bb < 0) bb = bb + xd < 0 ? 0 : bb + xd;
        if (ee < 0) ee = ee + xd < 0 ? 0 : ee + xd;
        int64_t lo, hi, bi, ei;
        int ibm, iem;
        if (st > 0) lo = 0, hi = xd, bi = bb, ei = ee, ibm = (int)bm[i], iem = (int)em[i];
        else lo = -1, hi = xd - 1, bi = ee, ei = bb, ibm = (int)em[i], iem = (int)bm[i];
        if (ibm) bi = lo;
        ei = iem ? hi : (ei < hi ? ei : hi);
        int64_t as = st > 0 ? st : -st, diff = ei - bi;
        out = diff <= 0 ? 0 : (diff + as - 1) / as;
        o->dims[o->rank++] = out;
    }
    return 0;
}

static int infer_slice_by_index(MilInferCtx *c) {
    c->n_out = 1;
    return slice_shape(c, &in(c, "x")->type, &c->out[0]);
}

static int infer_slice_update(MilInferCtx *c) {
    MilType sl;
    const MilType *x = &in(c, "x")->type, *u = &in(c, "update")->type;
    if (slice_shape(c, x, &sl) < 0) return -1;
    if (u->rank == 0) return ierr(c, "update must have rank >= 1");
    sl.dtype = u->dtype;
    if (!mil_type_compatible(&sl, u)) {
        char s1[128], s2[128];
        tstr(&sl, s1, sizeof s1);
        tstr(u, s2, sizeof s2);
        return ierr(c, "update must have the slice's shape %s, got %s", s1, s2);
    }
    return infer_same_as_x(c);
}

/* ==== Shape ops ==== */

static int infer_reshape(MilInferCtx *c) {
    const MilType *x = &in(c, "x")->type;
    MilValue *sv = in(c, "shape");
    if (sv->type.rank != 1 || sv->type.dims[0] < 0) return ierr(c, "shape must be a 1-D tensor of known length");
    int r = (int)sv->type.dims[0];
    if (r > MIL_MAX_RANK) return ierr(c, "target rank %d is too large", r);
    MilType o = tensor_like(x, x->dtype);
    o.rank = r;
    int64_t sh[MIL_MAX_RANK];
    int n;
    if (mil_value_ints(sv, sh, MIL_MAX_RANK, &n) < 0) {
        for (int i = 0; i < r; i++) o.dims[i] = MIL_DIM_UNKNOWN;   /* shape known at run time */
        c->n_out = 1;
        c->out[0] = o;
        return 0;
    }
    int neg = -1;
    for (int i = 0; i < r; i++) {
        int64_t d = sh[i];
        if (d == 0) {
            int xi = x->rank - (r - i);   /* 0 copies the matching dim, aligned from the right */
            d = xi >= 0 ? x->dims[xi] : 1;
        }
        if (d == -1) {
            if (neg >= 0) return ierr(c, "shape has more than one -1");
            neg = i;
        } else if (d < 0 && d != MIL_DIM_UNKNOWN) {
            return ierr(c, "shape entry %lld is invalid", (long long)sh[i]);
        }
        o.dims[i] = d;
    }
    int64_t xn = mil_type_numel(x), known = 1;
    int unknown = 0;
    for (int i = 0; i < r; i++) {
        if (i == neg) continue;
        if (o.dims[i] < 0) unknown = 1; else known *= o.dims[i];
    }
    if (neg >= 0) {
        if (xn < 0 || unknown || known == 0)
            o.dims[neg] = MIL_DIM_UNKNOWN;
        else if (xn % known)
            return ierr(c, "cannot infer the -1 dimension: %lld elements are not divisible by %lld", (long long)xn, (long long)known);
        else
            o.dims[neg] = xn / known;
    } else if (xn >= 0 && !unknown && xn != known) {
        char s[128];
        tstr(x, s, sizeof s);
        return ierr(c, "cannot reshape %s (%lld elements) to %lld elements", s, (long long)xn, (long long)known);
    }
    c->n_out = 1;
    c->out[0] = o;
    return 0;
}

static int infer_transpose(MilInferCtx *c) {
    const MilType *x = &in(c, "x")->type;
    int64_t perm[MIL_MAX_RANK];
    int n, seen[MIL_MAX_RANK] = {0};
    if (const_ints(c, "perm", perm, MIL_MAX_RANK, &n) < 0) return -1;
    if (n != x->rank) return ierr(c, "perm has %d entries, x has rank %d", n, x->rank);
    MilType o = tensor_like(x, x->dtype);
    for (int i = 0; i < n; i++) {
        int a;
        if (norm_axis(c, "perm entry", perm[i], x->rank, &a) < 0) return -1;
        if (seen[a]++) return ierr(c, "perm lists axis %d twice", a);
        o.dims[i] = x->dims[a];
    }
    c->n_out = 1;
    c->out[0] = o;
    return 0;
}

static int infer_expand_dims(MilInferCtx *c) {
    const MilType *x = &in(c, "x")->type;
    int64_t axes[MIL_MAX_RANK];
    int n;
    if (const_ints(c, "axes", axes, MIL_MAX_RANK, &n) < 0) return -1;
    if (n < 1) return ierr(c, "axes must not be empty");
    int orank = x->rank + n;
    if (orank > MIL_MAX_RANK) return ierr(c, "result rank %d is too large", orank);
    int ins[MIL_MAX_RANK] = {0};
    for (int i = 0; i < n; i++) {
        int a;
        if (norm_axis(c, "axes entry", axes[i], orank, &a) < 0) return -1;
        if (ins[a]++) return ierr(c, "axis %d is listed twice", a);
    }
    MilType o = tensor_like(x, x->dtype);
    o.rank = orank;
    for (int i = 0, j = 0; i < orank; i++) o.dims[i] = ins[i] ? 1 : x->dims[j++];
    c->n_out = 1;
    c->out[0] = o;
    return 0;
}

static int infer_squeeze(MilInferCtx *c) {
    const MilType *x = &in(c, "x")->type;
    int drop[MIL_MAX_RANK] = {0};
    if (in(c, "axes")) {
        int64_t axes[MIL_MAX_RANK];
        int n;
        if (const_ints(c, "axes", axes, MIL_MAX_RANK, &n) < 0) return -1;
        for (int i = 0; i < n; i++) {
            int a;
            if (norm_axis(c, "axes entry", axes[i], x->rank, &a) < 0) return -1;
            if (x->dims[a] >= 0 && x->dims[a] != 1)
                return ierr(c, "axis %d has size %lld; only size-1 axes can be squeezed", a, (long long)x->dims[a]);
            drop[a] = 1;
        }
    } else {
        for (int i = 0; i < x->rank; i++) drop[i] = x->dims[i] == 1;
    }
    MilType o = tensor_like(x, x->dtype);
    o.rank = 0;
    for (int i = 0; i < x->rank; i++)
        if (!drop[i]) o.dims[o.rank++] = x->dims[i];
    c->n_out = 1;
    c->out[0] = o;
    return 0;
}

static int infer_tile(MilInferCtx *c) {
    const MilType *x = &in(c, "x")->type;
    MilValue *rv = in(c, "reps");
    MilType o = tensor_like(x, x->dtype);
    int64_t reps[MIL_MAX_RANK];
    int n;
    if (rv->type.rank != 1) return ierr(c, "reps must be a 1-D tensor");
    if (mil_value_ints(rv, reps, MIL_MAX_RANK, &n) < 0) {
        for (int i = 0; i < x->rank; i++) o.dims[i] = MIL_DIM_UNKNOWN;
    } else {
        if (n != x->rank) return ierr(c, "reps has %d entries, x has rank %d", n, x->rank);
        for (int i = 0; i < n; i++) {
            if (reps[i] < 1) return ierr(c, "reps entries must be >= 1, got %lld", (long long)reps[i]);
            o.dims[i] = x->dims[i] < 0 ? (reps[i] == 1 ? x->dims[i] : MIL_DIM_UNKNOWN) : x->dims[i] * reps[i];
        }
    }
    c->n_out = 1;
    c->out[0] = o;
    return 0;
}

/* ==== States ==== */

static int infer_read_state(MilInferCtx *c) {
    c->n_out = 1;
    c->out[0] = tensor_like(&in(c, "input")->type, in(c, "input")->type.dtype);
    return 0;
}

static int infer_write_state(MilInferCtx *c) {
    MilType want = tensor_like(&in(c, "input")->type, in(c, "input")->type.dtype);
    const MilType *got = &in(c, "data")->type;
    if (!mil_type_equal(&want, got)) {
        char s1[128], s2[128];
        tstr(&want, s1, sizeof s1);
        tstr(got, s2, sizeof s2);
        return ierr(c, "data must match the state's type %s, got %s", s1, s2);
    }
    c->n_out = 0;
    return 0;
}

/* ==== constexpr_lut_to_dense (iOS 18) ==== */

static int infer_lut_to_dense(MilInferCtx *c) {
    const MilType *ix = &in(c, "indices")->type, *lut = &in(c, "lut")->type;
    if (ix->rank < 1) return ierr(c, "indices must have rank >= 1");
    if (lut->rank != ix->rank + 2)
        return ierr(c, "lut must have rank %d (indices rank + 2), got %d", ix->rank + 2, lut->rank);
    for (int i = 0; i < ix->rank; i++)
        if (lut->dims[i] < 1 || ix->dims[i] % lut->dims[i])
            return ierr(c, "indices axis %d (%lld) is not divisible by lut axis %d (%lld)", i, (long long)ix->dims[i], i,
                        (long long)lut->dims[i]);
    int bits = mil_dtype_bits(ix->dtype);
    if (lut->dims[ix->rank] != ((int64_t)1 << bits))
        return ierr(c, "lut has %lld palette entries; %s indices need %lld", (long long)lut->dims[ix->rank],
                    mil_dtype_name(ix->dtype), (long long)1 << bits);
    int64_t vs = lut->dims[ix->rank + 1];
    MilType o = tensor_like(ix, lut->dtype);
    MilValue *va = in(c, "vector_axis");
    if (va) {
        int64_t axis;
        int a;
        if (const_int(c, "vector_axis", &axis) < 0 || norm_axis(c, "vector_axis", axis, ix->rank, &a) < 0) return -1;
        o.dims[a] *= vs;
    } else if (vs != 1) {
        return ierr(c, "lut vector size is %lld; vector_axis is required when it is > 1", (long long)vs);
    }
    c->n_out = 1;
    c->out[0] = o;
    return 0;
}

/* ==== The table ==== */

#define P(n, f, d, dom, df) {n, f, d, dom, df, 0}
/* A parameter added after the op itself (coremltools' later opset definitions). */
#define PV(lvl, n, f, d, dom, df) {n, f, d, dom, df, lvl}
#define X_F P("x", 0, D_F, 'T', NODEF)

static const MilOpDef op_table[] = {
    {MIL_OP_CONST, "const", 5, 0, {{0}}, NULL},
    {MIL_OP_CONV, "conv", 5, 8,
     {P("x", 0, D_F, 'T', NODEF), P("weight", 0, D_F, 'U', NODEF), P("bias", OPT, D_F, 'U', NODEF),
      P("strides", OPT | CST, D_I32, 0, ((MilDefault){MIL_DEF_SPATIAL_I32, 1, 0, NULL})),
      P("pad_type", OPT | CST, D_STR, 0, DEF_STR("valid")),
      P("pad", OPT | CST, D_I32, 0, ((MilDefault){MIL_DEF_SPATIAL2_I32, 0, 0, NULL})),
      P("dilations", OPT | CST, D_I32, 0, ((MilDefault){MIL_DEF_SPATIAL_I32, 1, 0, NULL})),
      P("groups", OPT | CST, D_I32, 0, DEF_I32(1))},
     infer_conv},
    {MIL_OP_LINEAR, "linear", 5, 3,
     {P("x", 0, D_FI, 'T', NODEF), P("weight", CST, D_FI, 'U', NODEF),
      P("bias", OPT | CST, D_FI, 'U', ((MilDefault){MIL_DEF_ZEROS_DOUT, 0, 0, NULL}))},
     infer_linear},
    {MIL_OP_MATMUL, "matmul", 5, 4,
     {P("x", 0, D_FI, 'T', NODEF), P("y", 0, D_FI, 'U', NODEF), P("transpose_x", OPT | CST, D_BOOL, 0, DEF_BOOL(0)),
      P("transpose_y", OPT | CST, D_BOOL, 0, DEF_BOOL(0))},
     infer_matmul},
#define BINARY(id, nm, fn) {id, nm, 5, 2, {P("x", 0, D_FI, 'T', NODEF), P("y", 0, D_FI, 'T', NODEF)}, fn}
    BINARY(MIL_OP_ADD, "add", infer_binary),
    BINARY(MIL_OP_SUB, "sub", infer_binary),
    BINARY(MIL_OP_MUL, "mul", infer_binary),
    BINARY(MIL_OP_REAL_DIV, "real_div", infer_binary),
    BINARY(MIL_OP_MAXIMUM, "maximum", infer_binary),
    BINARY(MIL_OP_MINIMUM, "minimum", infer_binary),
    BINARY(MIL_OP_POW, "pow", infer_binary),
    BINARY(MIL_OP_GREATER_EQUAL, "greater_equal", infer_compare),
    BINARY(MIL_OP_GREATER, "greater", infer_compare),
    BINARY(MIL_OP_LESS, "less", infer_compare),
    BINARY(MIL_OP_LESS_EQUAL, "less_equal", infer_compare),
    BINARY(MIL_OP_EQUAL, "equal", infer_compare),
    BINARY(MIL_OP_NOT_EQUAL, "not_equal", infer_compare),
#define UNARY(id, nm) {id, nm, 5, 1, {X_F}, infer_same_as_x}
    UNARY(MIL_OP_SQRT, "sqrt"),
    {MIL_OP_RSQRT, "rsqrt", 5, 2, {X_F, P("epsilon", OPT | CST, D_F, 'U', DEF_FLOAT(1e-12, NULL))}, infer_same_as_x},
    UNARY(MIL_OP_EXP, "exp"),
    UNARY(MIL_OP_TANH, "tanh"),
    UNARY(MIL_OP_SILU, "silu"),
    UNARY(MIL_OP_RELU, "relu"),
    UNARY(MIL_OP_SIGMOID, "sigmoid"),
    {MIL_OP_IDENTITY, "identity", 5, 1, {P("x", 0, D_ANY, 0, NODEF)}, infer_same_as_x},
    {MIL_OP_GELU, "gelu", 5, 2, {X_F, P("mode", OPT | CST, D_STR, 0, DEF_STR("EXACT"))}, infer_gelu},
    {MIL_OP_SOFTMAX, "softmax", 5, 2, {X_F, P("axis", OPT | CST, D_I32, 0, DEF_I32(-1))}, infer_softmax},
    {MIL_OP_LAYER_NORM, "layer_norm", 5, 5,
     {X_F, P("axes", OPT | CST, D_I32, 0, ((MilDefault){MIL_DEF_AXES_ALL, 0, 0, NULL})),
      P("gamma", OPT | CST, D_F, 'U', NODEF), P("beta", OPT | CST, D_F, 'U', NODEF),
      P("epsilon", OPT | CST, D_F, 'U', DEF_FLOAT(1e-5, "gamma"))},
     infer_layer_norm},
#define REDUCE(id, nm)                                                                                       \
    {id, nm, 5, 3,                                                                                           \
     {P("x", 0, D_FI, 'T', NODEF), P("axes", OPT | CST, D_I32, 0, NODEF), P("keep_dims", OPT | CST, D_BOOL, 0, DEF_BOOL(0))}, \
     infer_reduce}
    REDUCE(MIL_OP_REDUCE_MEAN, "reduce_mean"),
    REDUCE(MIL_OP_REDUCE_SUM, "reduce_sum"),
    REDUCE(MIL_OP_REDUCE_MAX, "reduce_max"),
    {MIL_OP_REDUCE_ARGMAX, "reduce_argmax", 5, 4,
     {P("x", 0, D_FI, 'T', NODEF), P("axis", OPT | CST, D_I32, 0, DEF_I32(-1)),
      P("keep_dims", OPT | CST, D_BOOL, 0, DEF_BOOL(0)), PV(7, "output_dtype", OPT | CST, D_STR, 0, DEF_STR("int32"))},
     infer_reduce_argmax},
    {MIL_OP_GATHER, "gather", 5, 5,
     {P("x", 0, D_GATHER_X, 0, NODEF), P("indices", 0, D_GATHER_I, 0, NODEF), P("axis", OPT | CST, D_I32, 0, DEF_I32(0)),
      PV(6, "batch_dims", OPT | CST, D_I32, 0, DEF_I32(0)), PV(7, "validate_indices", OPT | CST, D_BOOL, 0, DEF_BOOL(0))},
     infer_gather},
    {MIL_OP_GATHER_ALONG_AXIS, "gather_along_axis", 5, 4,
     {P("x", 0, D_GATHER_X, 0, NODEF), P("indices", 0, D_GATHER_I, 0, NODEF),
      P("axis", OPT | CST, D_I32, 0, DEF_I32(0)), PV(7, "validate_indices", OPT | CST, D_BOOL, 0, DEF_BOOL(0))},
     infer_gather_along_axis},
    {MIL_OP_CONCAT, "concat", 5, 3,
     {P("values", VAR, D_ANY, 0, NODEF), P("axis", CST, D_I32, 0, NODEF), P("interleave", OPT | CST, D_BOOL, 0, DEF_BOOL(0))},
     infer_concat},
    {MIL_OP_SPLIT, "split", 5, 4,
     {P("x", 0, D_FI | D_BOOL, 0, NODEF), P("num_splits", OPT | CST, D_I32, 0, NODEF),
      P("split_sizes", OPT | CST, D_I32, 0, NODEF), P("axis", CST, D_I32, 0, NODEF)},
     infer_split},
#define SLICE_PARAMS                                                                                          \
    P("begin", 0, D_IDX8, 'U', NODEF), P("end", 0, D_IDX8, 'U', NODEF), P("stride", OPT | CST, D_IDX8, 'U', NODEF), \
        P("begin_mask", OPT | CST, D_BOOL, 0, NODEF), P("end_mask", OPT | CST, D_BOOL, 0, NODEF),               \
        P("squeeze_mask", OPT | CST, D_BOOL, 0, NODEF)
    {MIL_OP_SLICE_BY_INDEX, "slice_by_index", 5, 7, {P("x", 0, D_XFORM, 'T', NODEF), SLICE_PARAMS}, infer_slice_by_index},
    {MIL_OP_SLICE_UPDATE, "slice_update", 8, 8,
     {P("x", 0, D_XFORM, 'T', NODEF), P("update", 0, D_XFORM, 'T', NODEF), SLICE_PARAMS},
     infer_slice_update},
    {MIL_OP_RESHAPE, "reshape", 5, 2, {P("x", 0, D_XFORM, 0, NODEF), P("shape", 0, D_IDX8, 0, NODEF)}, infer_reshape},
    {MIL_OP_TRANSPOSE, "transpose", 5, 2, {P("x", 0, D_XFORM, 0, NODEF), P("perm", CST, D_I32, 0, NODEF)}, infer_transpose},
    {MIL_OP_EXPAND_DIMS, "expand_dims", 5, 2, {P("x", 0, D_XFORM, 0, NODEF), P("axes", CST, D_I32, 0, NODEF)},
     infer_expand_dims},
    {MIL_OP_SQUEEZE, "squeeze", 5, 2, {P("x", 0, D_XFORM, 0, NODEF), P("axes", OPT | CST, D_I32, 0, NODEF)}, infer_squeeze},
    {MIL_OP_TILE, "tile", 5, 2, {P("x", 0, D_FI | D_BOOL, 0, NODEF), P("reps", 0, D_I32, 0, NODEF)}, infer_tile},
    {MIL_OP_CAST, "cast", 5, 2, {P("x", 0, D_XFORM, 0, NODEF), P("dtype", CST, D_STR, 0, NODEF)}, infer_cast},
    {MIL_OP_SELECT, "select", 5, 3,
     {P("cond", 0, D_BOOL, 0, NODEF), P("a", 0, D_FI | D_BOOL, 'T', NODEF), P("b", 0, D_FI | D_BOOL, 'T', NODEF)},
     infer_select},
    {MIL_OP_CLIP, "clip", 5, 3, {X_F, P("alpha", CST, D_F, 'T', NODEF), P("beta", CST, D_F, 'T', NODEF)}, infer_clip},
    {MIL_OP_BAND_PART, "band_part", 5, 3,
     {P("x", 0, D_FI | D_BOOL, 0, NODEF), P("lower", OPT | CST, D_I32, 0, DEF_I32(-1)),
      P("upper", OPT | CST, D_I32, 0, DEF_I32(-1))},
     infer_band_part},
    {MIL_OP_READ_STATE, "read_state", 8, 1, {P("input", STATE, D_ANY, 0, NODEF)}, infer_read_state},
    {MIL_OP_WRITE_STATE, "write_state", 8, 2, {P("input", STATE, D_ANY, 0, NODEF), P("data", 0, D_ANY, 0, NODEF)},
     infer_write_state},
    {MIL_OP_CONSTEXPR_LUT_TO_DENSE, "constexpr_lut_to_dense", 8, 3,
     {P("indices", CST, D_LUT_IDX, 0, NODEF), P("lut", CST, D_LUT_T, 0, NODEF), P("vector_axis", OPT | CST, D_I32, 0, NODEF)},
     infer_lut_to_dense},
};
#define N_OPS ((int)(sizeof op_table / sizeof op_table[0]))

const MilOpDef *mil_op_def(const char *type) {
    if (!type) return NULL;
    for (int i = 0; i < N_OPS; i++)
        if (!strcmp(op_table[i].type, type)) return &op_table[i];
    return NULL;
}

const MilOpDef *mil_op_def_by_id(MilOpId id) {
    AN_ASSERT(N_OPS == MIL_OP_COUNT);
    AN_ASSERT((int)id >= 0 && (int)id < N_OPS && op_table[id].id == id);
    return &op_table[id];
}

int mil_param_index(const MilOpDef *d, const char *param) {
    for (int i = 0; i < d->n_params; i++)
        if (!strcmp(d->params[i].name, param)) return i;
    return -1;
}

int mil_opset_level(const char *opset) {
    static const char *const names[] = {"CoreML5", "CoreML6", "CoreML7", "CoreML8", "CoreML9"};
    for (int i = 0; i < 5; i++)
        if (opset && !strcmp(opset, names[i])) return 5 + i;
    return -1;
}

const char *mil_opset_tag(const char *opset) {
    static const char *const tags[] = {"ios15", "ios16", "ios17", "ios18", "ios26"};
    int l = mil_opset_level(opset);
    return l < 0 ? NULL : tags[l - 5];
}

/* ==== Checking ==== */

static void dtype_list(uint64_t mask, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = 0;
    for (int d = 0; d < MIL_DT_MAX && len < size; d++)
        if (mask & DT(d)) len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? ", " : "", mil_dtype_name((MilDType)d));
}

int mil_check_and_infer(MilInferCtx *c) {
    const MilOpDef *d = c->def;
    char dom_letter[MIL_MAX_PARAMS];
    MilDType dom_dt[MIL_MAX_PARAMS];
    const char *dom_param[MIL_MAX_PARAMS];
    int n_dom = 0;
    if (d->min_opset > c->opset)
        return ierr(c, "needs opset CoreML%d (iOS %d) or later; the function's opset is CoreML%d", d->min_opset,
                    d->min_opset + 10, c->opset);
    for (int i = 0; i < d->n_params; i++) {
        const MilParamDef *pd = &d->params[i];
        const MilArg *a = &c->args[i];
        if (!a->n) {
            if (!(pd->flags & MIL_P_OPTIONAL)) return ierr(c, "required input '%s' is missing", pd->name);
            continue;
        }
        if (pd->min_opset > c->opset)
            return ierr(c, "input '%s' exists from opset CoreML%d (iOS %d) on; the function's opset is CoreML%d",
                        pd->name, pd->min_opset, pd->min_opset + 10, c->opset);
        if (!(pd->flags & MIL_P_VARIADIC) && a->n != 1)
            return ierr(c, "input '%s' takes one value, got %d", pd->name, a->n);
        for (int k = 0; k < a->n; k++) {
            const MilValue *v = a->vals[k];
            if (!v) return ierr(c, "input '%s' is NULL", pd->name);
            const char *vn = v->name ? v->name : "(literal)";
            if ((pd->flags & MIL_P_STATE) && v->type.kind != MIL_STATE)
                return ierr(c, "input '%s' must be a state, '%s' is a tensor", pd->name, vn);
            if (!(pd->flags & MIL_P_STATE) && v->type.kind == MIL_STATE)
                return ierr(c, "input '%s' is the state '%s'; read it with read_state first", pd->name, vn);
            if (pd->dtypes && !(pd->dtypes & DT(v->type.dtype))) {
                char list[256];
                dtype_list(pd->dtypes, list, sizeof list);
                return ierr(c, "input '%s' ('%s') is %s; it must be one of %s", pd->name, vn,
                            mil_dtype_name(v->type.dtype), list);
            }
            if ((pd->flags & MIL_P_CONST) && !mil_value_is_const(v))
                return ierr(c, "input '%s' ('%s') must be a compile-time value (a const), not computed at run time",
                            pd->name, vn);
            if (pd->domain) {
                int j = 0;
                while (j < n_dom && dom_letter[j] != pd->domain) j++;
                if (j == n_dom) {
                    dom_letter[n_dom] = pd->domain;
                    dom_dt[n_dom] = v->type.dtype;
                    dom_param[n_dom++] = pd->name;
                } else if (dom_dt[j] != v->type.dtype) {
                    return ierr(c, "input '%s' is %s but '%s' is %s; they must have the same dtype", pd->name,
                                mil_dtype_name(v->type.dtype), dom_param[j], mil_dtype_name(dom_dt[j]));
                }
            }
        }
    }
    c->n_out = 0;
    if (!d->infer) return 0;
    return d->infer(c);
}
