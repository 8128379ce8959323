/* builder.c - adding ops to a function: the generic mil_add_op (table-checked, defaults
 * materialized as consts) and the typed mil_add_<op> helpers built on it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "mil/internal.h"
#include "mil/ops.h"

/* ==== Names ==== */

/* Validates a caller-given op name or generates one; the name is not registered yet. */
static const char *op_name(MilFunction *f, const char *name, const char *type) {
    MilProgram *p = f->prog;
    if (!name) return mil_auto_name(f, type);
    if (!mil_is_identifier(name)) {
        mil_fail(p, "function '%s': op name '%s' (%s) is not a valid MIL identifier ([A-Za-z_][A-Za-z0-9_@]*)",
                 f->name, name, type);
        return NULL;
    }
    if (mil_names_get(f->names, name) || mil_names_get(f->op_names, name)) {
        mil_fail(p, "function '%s': the name '%s' (%s) is already used; op and value names must be unique", f->name,
                 name, type);
        return NULL;
    }
    return mil_strdup(p, name);
}

/* Name for a const feeding parameter param of op opname: "<opname>_<param>_<k>". */
static const char *param_const_name(MilFunction *f, const char *opname, const char *param) {
    char base[512];
    snprintf(base, sizeof base, "%.400s_%.100s", opname, param);
    return mil_unique_name(f, base, 1);
}

/* ==== Defaults ==== */

static MilValue *first_value(const MilArg *args, const MilOpDef *d, const char *param) {
    int i = mil_param_index(d, param);
    return i >= 0 && args[i].n ? args[i].vals[0] : NULL;
}

/* Creates the const coremltools would pass for absent parameter i; NULL when the default
 * cannot be formed yet (a missing x or weight: the check that follows reports that). */
static MilValue *default_const(MilFunction *f, const MilOpDef *d, const MilArg *args, int i, const char *opname) {
    const MilParamDef *pd = &d->params[i];
    const MilDefault *df = &pd->dflt;
    MilValue *x = first_value(args, d, "x");
    const char *cname = param_const_name(f, opname, pd->name);
    int32_t buf[2 * MIL_MAX_RANK];
    switch (df->kind) {
    case MIL_DEF_NONE:
        return NULL;
    case MIL_DEF_I32:
        return mil_const_i32(f, cname, (int32_t)df->i);
    case MIL_DEF_BOOL:
        return mil_const_bool(f, cname, (int)df->i);
    case MIL_DEF_STR:
        return mil_const_str(f, cname, df->s);
    case MIL_DEF_FLOAT: {
        MilValue *like = df->s ? first_value(args, d, df->s) : NULL;
        if (!like) like = x;
        if (!like || !mil_dtype_is_float(like->type.dtype)) return NULL;
        return mil_const_float(f, cname, like->type.dtype, df->f);
    }
    case MIL_DEF_SPATIAL_I32:
    case MIL_DEF_SPATIAL2_I32: {
        if (!x || x->type.rank < 3) return NULL;
        int n = (x->type.rank - 2) * (df->kind == MIL_DEF_SPATIAL2_I32 ? 2 : 1);
        for (int k = 0; k < n; k++) buf[k] = (int32_t)df->i;
        return mil_const_i32v(f, cname, n, buf);
    }
    case MIL_DEF_AXES_ALL: {
        if (!x || x->type.rank < 1) return NULL;
        for (int k = 0; k < x->type.rank; k++) buf[k] = k;
        return mil_const_i32v(f, cname, x->type.rank, buf);
    }
    case MIL_DEF_ZEROS_DOUT: {
        MilValue *w = first_value(args, d, "weight");
        if (!w || w->type.rank != 2 || w->type.dims[0] < 1) return NULL;
        uint64_t nbytes;
        if (mil_packed_size(w->type.dtype, (uint64_t)w->type.dims[0], &nbytes) < 0) return NULL;
        void *zeros = xcalloc(1, (size_t)nbytes);
        MilValue *v = mil_const(f, cname, w->type.dtype, 1, w->type.dims, zeros, (size_t)nbytes);
        free(zeros);
        return v;
    }
    }
    return NULL;
}

/* ==== Generic op ==== */

static int value_in_scope(MilFunction *f, const MilValue *v, int literal_ok) {
    if (v->fn == f) return 1;
    return literal_ok && !v->fn && !v->name && v->data;
}

MilOp *mil_add_op(MilFunction *f, const char *type, const char *name, int n_in, const MilIn *in) {
    if (!f || f->prog->failed) return NULL;
    MilProgram *p = f->prog;
    const MilOpDef *d = mil_op_def(type);
    if (!d) return mil_fail(p, "function '%s': op type '%s' is not in the op table", f->name, type ? type : "(null)"), NULL;
    if (d->id == MIL_OP_CONST)
        return mil_fail(p, "function '%s': add consts with mil_const(), not mil_add_op", f->name), NULL;
    const char *nm = op_name(f, name, d->type);
    if (!nm) return NULL;
    int literal_ok = !strncmp(d->type, "constexpr_", 10);

    MilArg *args = mil_alloc(p, sizeof *args * (size_t)d->n_params);
    for (int i = 0; i < d->n_params; i++) args[i].param = d->params[i].name;
    for (int k = 0; k < n_in; k++) {
        const MilIn *a = &in[k];
        int i = a->param ? mil_param_index(d, a->param) : -1;
        if (i < 0)
            return mil_fail(p, "function '%s', op '%s' (%s): '%s' is not an input of %s", f->name, nm, d->type,
                            a->param ? a->param : "(null)", d->type),
                   NULL;
        if (args[i].n)
            return mil_fail(p, "function '%s', op '%s' (%s): input '%s' given twice", f->name, nm, d->type, a->param),
                   NULL;
        int n = a->values ? a->n_values : 1;
        if (n < 1)
            return mil_fail(p, "function '%s', op '%s' (%s): input '%s' has no values", f->name, nm, d->type, a->param),
                   NULL;
        args[i].n = n;
        args[i].vals = mil_alloc(p, sizeof(MilValue *) * (size_t)n);
        for (int j = 0; j < n; j++) {
            MilValue *v = a->values ? a->values[j] : a->value;
            if (!v)
                return mil_fail(p, "function '%s', op '%s' (%s): input '%s' is NULL", f->name, nm, d->type, a->param),
                       NULL;
            if (!value_in_scope(f, v, literal_ok))
                return mil_fail(p, "function '%s', op '%s' (%s): input '%s' ('%s') is not a value of this function%s",
                                f->name, nm, d->type, a->param, v->name ? v->name : "(literal)",
                                v->fn ? "" : "; literals are only for constexpr ops"),
                       NULL;
            args[i].vals[j] = v;
        }
    }
    for (int i = 0; i < d->n_params; i++) {
        if (args[i].n || d->params[i].dflt.kind == MIL_DEF_NONE) continue;
        if (d->params[i].min_opset > mil_opset_level(f->opset)) continue;   /* not in this opset's op */
        MilValue *v = default_const(f, d, args, i, nm);
        if (p->failed) return NULL;
        if (!v) continue;
        args[i].n = 1;
        args[i].vals = mil_alloc(p, sizeof(MilValue *));
        args[i].vals[0] = v;
    }

    Err e;
    MilInferCtx c;
    memset(&c, 0, sizeof c);
    c.def = d;
    c.args = args;
    c.op_name = nm;
    c.opset = mil_opset_level(f->opset);
    c.e = &e;
    if (mil_check_and_infer(&c) < 0) return mil_fail(p, "function '%s': %s", f->name, e.msg), NULL;

    MilOp *op = mil_new_op(f, d->type, d, nm, c.n_out);
    op->n_args = d->n_params;
    op->args = args;
    for (int i = 0; i < c.n_out; i++) {
        const char *vn = nm;
        if (c.n_out > 1) {
            char buf[512];
            snprintf(buf, sizeof buf, "%.480s_%d", nm, i);
            if (mil_check_new_name(f, buf, "op output") < 0) return NULL;
            vn = mil_strdup(p, buf);
        }
        MilValue *v = mil_alloc(p, sizeof *v);
        v->name = vn;
        v->type = c.out[i];
        v->fn = f;
        v->producer = op;
        v->output_index = i;
        op->outputs[i] = v;
        mil_register_value(f, v);
    }
    mil_append_op(f, op);
    return op;
}

MilValue *mil_add_op1(MilFunction *f, const char *type, const char *name, int n_in, const MilIn *in) {
    MilOp *op = mil_add_op(f, type, name, n_in, in);
    if (!op) return NULL;
    if (op->n_outputs != 1) {
        mil_fail(f->prog, "function '%s', op '%s' (%s): has %d outputs, not 1", f->name, op->name, op->type,
                 op->n_outputs);
        return NULL;
    }
    return op->outputs[0];
}

const MilArg *mil_op_arg(const MilOp *op, const char *param) {
    for (int i = 0; i < op->n_args; i++)
        if (!strcmp(op->args[i].param, param)) return op->args[i].n ? &op->args[i] : NULL;
    return NULL;
}

MilValue *mil_op_input(const MilOp *op, const char *param) {
    const MilArg *a = mil_op_arg(op, param);
    return a ? a->vals[0] : NULL;
}

/* ==== Typed builders ==== */

static int usable(MilFunction *f) { return f && !f->prog->failed; }

#define BIN(fn, type)                                                                    \
    MilValue *fn(MilFunction *f, const char *name, MilValue *x, MilValue *y) {          \
        MilIn in[] = {MIL_IN("x", x), MIL_IN("y", y)};                                  \
        return mil_add_op1(f, type, name, 2, in);                                      \
    }
BIN(mil_add_add, "add")
BIN(mil_add_sub, "sub")
BIN(mil_add_mul, "mul")
BIN(mil_add_real_div, "real_div")
BIN(mil_add_maximum, "maximum")
BIN(mil_add_minimum, "minimum")
BIN(mil_add_pow, "pow")
BIN(mil_add_greater_equal, "greater_equal")
BIN(mil_add_less, "less")

#define UN(fn, type)                                                                     \
    MilValue *fn(MilFunction *f, const char *name, MilValue *x) {                       \
        MilIn in[] = {MIL_IN("x", x)};                                                  \
        return mil_add_op1(f, type, name, 1, in);                                      \
    }
UN(mil_add_sqrt, "sqrt")
UN(mil_add_exp, "exp")
UN(mil_add_tanh, "tanh")
UN(mil_add_silu, "silu")
UN(mil_add_relu, "relu")
UN(mil_add_identity, "identity")

/* x's float dtype for scalar parameters, or fp32 when x is NULL (the op reports that). */
static MilDType float_like(const MilValue *x) {
    return x && (x->type.dtype == MIL_FP16 || x->type.dtype == MIL_FP32) ? x->type.dtype : MIL_FP32;
}

MilValue *mil_add_rsqrt(MilFunction *f, const char *name, MilValue *x, double epsilon) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "rsqrt");
    if (!nm) return NULL;
    MilValue *eps = mil_const_float(f, param_const_name(f, nm, "epsilon"), float_like(x), epsilon);
    MilIn in[] = {MIL_IN("x", x), MIL_IN("epsilon", eps)};
    return mil_add_op1(f, "rsqrt", nm, 2, in);
}

MilValue *mil_add_gelu(MilFunction *f, const char *name, MilValue *x, const char *mode) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "gelu");
    if (!nm) return NULL;
    MilValue *m = mil_const_str(f, param_const_name(f, nm, "mode"), mode ? mode : "EXACT");
    MilIn in[] = {MIL_IN("x", x), MIL_IN("mode", m)};
    return mil_add_op1(f, "gelu", nm, 2, in);
}

MilValue *mil_add_softmax(MilFunction *f, const char *name, MilValue *x, int axis) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "softmax");
    if (!nm) return NULL;
    MilValue *a = mil_const_i32(f, param_const_name(f, nm, "axis"), axis);
    MilIn in[] = {MIL_IN("x", x), MIL_IN("axis", a)};
    return mil_add_op1(f, "softmax", nm, 2, in);
}

MilValue *mil_add_clip(MilFunction *f, const char *name, MilValue *x, double alpha, double beta) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "clip");
    if (!nm) return NULL;
    MilValue *lo = mil_const_float(f, param_const_name(f, nm, "alpha"), float_like(x), alpha);
    MilValue *hi = mil_const_float(f, param_const_name(f, nm, "beta"), float_like(x), beta);
    MilIn in[] = {MIL_IN("x", x), MIL_IN("alpha", lo), MIL_IN("beta", hi)};
    return mil_add_op1(f, "clip", nm, 3, in);
}

MilValue *mil_add_cast(MilFunction *f, const char *name, MilValue *x, MilDType dtype) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "cast");
    if (!nm) return NULL;
    MilValue *dt = mil_const_str(f, param_const_name(f, nm, "dtype"), mil_dtype_name(dtype));
    MilIn in[] = {MIL_IN("x", x), MIL_IN("dtype", dt)};
    return mil_add_op1(f, "cast", nm, 2, in);
}

MilValue *mil_add_layer_norm(MilFunction *f, const char *name, MilValue *x, int n_axes, const int32_t *axes,
                             MilValue *gamma, MilValue *beta, double epsilon) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "layer_norm");
    if (!nm) return NULL;
    MilIn in[5];
    int n = 0;
    in[n++] = MIL_IN("x", x);
    if (n_axes > 0) in[n++] = MIL_IN("axes", mil_const_i32v(f, param_const_name(f, nm, "axes"), n_axes, axes));
    if (gamma) in[n++] = MIL_IN("gamma", gamma);
    if (beta) in[n++] = MIL_IN("beta", beta);
    MilDType edt = gamma && mil_dtype_is_float(gamma->type.dtype) ? gamma->type.dtype : float_like(x);
    in[n++] = MIL_IN("epsilon", mil_const_float(f, param_const_name(f, nm, "epsilon"), edt, epsilon));
    return mil_add_op1(f, "layer_norm", nm, n, in);
}

static MilValue *reduce(MilFunction *f, const char *type, const char *name, MilValue *x, int n_axes,
                        const int32_t *axes, int keep_dims) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, type);
    if (!nm) return NULL;
    MilIn in[3];
    int n = 0;
    in[n++] = MIL_IN("x", x);
    if (n_axes > 0) in[n++] = MIL_IN("axes", mil_const_i32v(f, param_const_name(f, nm, "axes"), n_axes, axes));
    in[n++] = MIL_IN("keep_dims", mil_const_bool(f, param_const_name(f, nm, "keep_dims"), keep_dims));
    return mil_add_op1(f, type, nm, n, in);
}

MilValue *mil_add_reduce_mean(MilFunction *f, const char *name, MilValue *x, int n_axes, const int32_t *axes,
                              int keep_dims) {
    return reduce(f, "reduce_mean", name, x, n_axes, axes, keep_dims);
}
MilValue *mil_add_reduce_sum(MilFunction *f, const char *name, MilValue *x, int n_axes, const int32_t *axes,
                             int keep_dims) {
    return reduce(f, "reduce_sum", name, x, n_axes, axes, keep_dims);
}
MilValue *mil_add_reduce_max(MilFunction *f, const char *name, MilValue *x, int n_axes, const int32_t *axes,
                             int keep_dims) {
    return reduce(f, "reduce_max", name, x, n_axes, axes, keep_dims);
}

MilValue *mil_add_reduce_argmax(MilFunction *f, const char *name, MilValue *x, int axis, int keep_dims) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "reduce_argmax");
    if (!nm) return NULL;
    MilIn in[] = {MIL_IN("x", x), MIL_IN("axis", mil_const_i32(f, param_const_name(f, nm, "axis"), axis)),
                  MIL_IN("keep_dims", mil_const_bool(f, param_const_name(f, nm, "keep_dims"), keep_dims)),
                  MIL_IN("output_dtype", NULL)};
    int n = 3;   /* output_dtype exists from iOS 17 on (int32 before) */
    if (mil_opset_level(f->opset) >= 7)
        in[n++].value = mil_const_str(f, param_const_name(f, nm, "output_dtype"), "int32");
    return mil_add_op1(f, "reduce_argmax", nm, n, in);
}

MilValue *mil_add_conv(MilFunction *f, const char *name, MilValue *x, MilValue *weight, MilValue *bias,
                       const MilConvOpts *o) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "conv");
    if (!nm) return NULL;
    int ns = x && x->type.rank >= 3 ? x->type.rank - 2 : 0;
    MilIn in[8];
    int n = 0;
    in[n++] = MIL_IN("x", x);
    in[n++] = MIL_IN("weight", weight);
    if (bias) in[n++] = MIL_IN("bias", bias);
    /* explicit options first, in table order; the defaults follow (coremltools' order) */
    if (o && o->strides) in[n++] = MIL_IN("strides", mil_const_i32v(f, param_const_name(f, nm, "strides"), ns, o->strides));
    if (o && o->pad_type) in[n++] = MIL_IN("pad_type", mil_const_str(f, param_const_name(f, nm, "pad_type"), o->pad_type));
    if (o && o->pad) in[n++] = MIL_IN("pad", mil_const_i32v(f, param_const_name(f, nm, "pad"), 2 * ns, o->pad));
    if (o && o->dilations)
        in[n++] = MIL_IN("dilations", mil_const_i32v(f, param_const_name(f, nm, "dilations"), ns, o->dilations));
    if (o && o->groups) in[n++] = MIL_IN("groups", mil_const_i32(f, param_const_name(f, nm, "groups"), o->groups));
    return mil_add_op1(f, "conv", nm, n, in);
}

MilValue *mil_add_linear(MilFunction *f, const char *name, MilValue *x, MilValue *weight, MilValue *bias) {
    MilIn in[3] = {MIL_IN("x", x), MIL_IN("weight", weight), MIL_IN("bias", bias)};
    return mil_add_op1(f, "linear", name, bias ? 3 : 2, in);
}

MilValue *mil_add_matmul(MilFunction *f, const char *name, MilValue *x, MilValue *y, int transpose_x,
                         int transpose_y) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "matmul");
    if (!nm) return NULL;
    MilIn in[] = {MIL_IN("x", x), MIL_IN("y", y),
                  MIL_IN("transpose_x", mil_const_bool(f, param_const_name(f, nm, "transpose_x"), transpose_x)),
                  MIL_IN("transpose_y", mil_const_bool(f, param_const_name(f, nm, "transpose_y"), transpose_y))};
    return mil_add_op1(f, "matmul", nm, 4, in);
}

MilValue *mil_add_gather(MilFunction *f, const char *name, MilValue *x, MilValue *indices, int axis,
                         int batch_dims) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "gather");
    if (!nm) return NULL;
    MilIn in[] = {MIL_IN("x", x), MIL_IN("indices", indices),
                  MIL_IN("axis", mil_const_i32(f, param_const_name(f, nm, "axis"), axis)),
                  MIL_IN("batch_dims", NULL)};
    /* batch_dims exists from iOS 16 on; an older gather has none (0) */
    int n = 3;
    if (batch_dims || mil_opset_level(f->opset) >= 6)
        in[n++].value = mil_const_i32(f, param_const_name(f, nm, "batch_dims"), batch_dims);
    return mil_add_op1(f, "gather", nm, n, in);
}

MilValue *mil_add_gather_along_axis(MilFunction *f, const char *name, MilValue *x, MilValue *indices,
                                    int axis) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "gather_along_axis");
    if (!nm) return NULL;
    MilIn in[] = {MIL_IN("x", x), MIL_IN("indices", indices),
                  MIL_IN("axis", mil_const_i32(f, param_const_name(f, nm, "axis"), axis))};
    return mil_add_op1(f, "gather_along_axis", nm, 3, in);
}

MilValue *mil_add_concat(MilFunction *f, const char *name, int n, MilValue *const *values, int axis,
                         int interleave) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "concat");
    if (!nm) return NULL;
    MilIn in[] = {MIL_INS("values", values, n), MIL_IN("axis", mil_const_i32(f, param_const_name(f, nm, "axis"), axis)),
                  MIL_IN("interleave", mil_const_bool(f, param_const_name(f, nm, "interleave"), interleave))};
    return mil_add_op1(f, "concat", nm, 3, in);
}

MilOp *mil_add_split(MilFunction *f, const char *name, MilValue *x, int axis, int n_splits,
                     const int32_t *sizes) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "split");
    if (!nm) return NULL;
    MilIn in[3];
    int n = 0;
    in[n++] = MIL_IN("x", x);
    if (sizes)
        in[n++] = MIL_IN("split_sizes", mil_const_i32v(f, param_const_name(f, nm, "split_sizes"), n_splits, sizes));
    else
        in[n++] = MIL_IN("num_splits", mil_const_i32(f, param_const_name(f, nm, "num_splits"), n_splits));
    in[n++] = MIL_IN("axis", mil_const_i32(f, param_const_name(f, nm, "axis"), axis));
    return mil_add_op(f, "split", nm, n, in);
}

/* Inputs of slice_by_index / slice_update from a MilSlice; returns the count added. */
static int slice_inputs(MilFunction *f, const char *nm, const MilSlice *s, MilIn *in) {
    int n = 0;
    if (!s) {
        mil_fail(f->prog, "function '%s', op '%s': slice spec is NULL", f->name, nm);
        return 0;
    }
    in[n++] = MIL_IN("begin", s->begin_v ? s->begin_v : mil_const_i32v(f, param_const_name(f, nm, "begin"), s->rank, s->begin));
    in[n++] = MIL_IN("end", s->end_v ? s->end_v : mil_const_i32v(f, param_const_name(f, nm, "end"), s->rank, s->end));
    if (s->stride) in[n++] = MIL_IN("stride", mil_const_i32v(f, param_const_name(f, nm, "stride"), s->rank, s->stride));
    if (s->begin_mask)
        in[n++] = MIL_IN("begin_mask", mil_const_boolv(f, param_const_name(f, nm, "begin_mask"), s->rank, s->begin_mask));
    if (s->end_mask)
        in[n++] = MIL_IN("end_mask", mil_const_boolv(f, param_const_name(f, nm, "end_mask"), s->rank, s->end_mask));
    if (s->squeeze_mask)
        in[n++] = MIL_IN("squeeze_mask", mil_const_boolv(f, param_const_name(f, nm, "squeeze_mask"), s->rank, s->squeeze_mask));
    return n;
}

static int slice_spec_ok(MilFunction *f, const char *nm, const MilSlice *s) {
    if (!s) return mil_fail(f->prog, "function '%s', op '%s': slice spec is NULL", f->name, nm);
    if (s->rank < 1 || s->rank > MIL_MAX_RANK)
        return mil_fail(f->prog, "function '%s', op '%s': slice rank %d is invalid", f->name, nm, s->rank);
    if ((!s->begin_v && !s->begin) || (!s->end_v && !s->end))
        return mil_fail(f->prog, "function '%s', op '%s': slice needs begin and end", f->name, nm);
    return 0;
}

MilValue *mil_add_slice_by_index(MilFunction *f, const char *name, MilValue *x, const MilSlice *s) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "slice_by_index");
    if (!nm || slice_spec_ok(f, nm, s) < 0) return NULL;
    MilIn in[7];
    in[0] = MIL_IN("x", x);
    int n = 1 + slice_inputs(f, nm, s, in + 1);
    return mil_add_op1(f, "slice_by_index", nm, n, in);
}

MilValue *mil_add_slice_update(MilFunction *f, const char *name, MilValue *x, MilValue *update,
                               const MilSlice *s) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "slice_update");
    if (!nm || slice_spec_ok(f, nm, s) < 0) return NULL;
    MilIn in[8];
    in[0] = MIL_IN("x", x);
    in[1] = MIL_IN("update", update);
    int n = 2 + slice_inputs(f, nm, s, in + 2);
    return mil_add_op1(f, "slice_update", nm, n, in);
}

static MilValue *x_and_vec(MilFunction *f, const char *type, const char *param, const char *name, MilValue *x,
                           int n, const int32_t *v) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, type);
    if (!nm) return NULL;
    MilIn in[] = {MIL_IN("x", x), MIL_IN(param, mil_const_i32v(f, param_const_name(f, nm, param), n, v))};
    return mil_add_op1(f, type, nm, 2, in);
}

MilValue *mil_add_reshape(MilFunction *f, const char *name, MilValue *x, int rank, const int32_t *shape) {
    return x_and_vec(f, "reshape", "shape", name, x, rank, shape);
}
MilValue *mil_add_transpose(MilFunction *f, const char *name, MilValue *x, int rank, const int32_t *perm) {
    return x_and_vec(f, "transpose", "perm", name, x, rank, perm);
}
MilValue *mil_add_expand_dims(MilFunction *f, const char *name, MilValue *x, int n, const int32_t *axes) {
    return x_and_vec(f, "expand_dims", "axes", name, x, n, axes);
}
MilValue *mil_add_squeeze(MilFunction *f, const char *name, MilValue *x, int n, const int32_t *axes) {
    if (n > 0) return x_and_vec(f, "squeeze", "axes", name, x, n, axes);
    MilIn in[] = {MIL_IN("x", x)};
    return mil_add_op1(f, "squeeze", name, 1, in);
}
MilValue *mil_add_tile(MilFunction *f, const char *name, MilValue *x, int rank, const int32_t *reps) {
    return x_and_vec(f, "tile", "reps", name, x, rank, reps);
}

MilValue *mil_add_select(MilFunction *f, const char *name, MilValue *cond, MilValue *a, MilValue *b) {
    MilIn in[] = {MIL_IN("cond", cond), MIL_IN("a", a), MIL_IN("b", b)};
    return mil_add_op1(f, "select", name, 3, in);
}

MilValue *mil_add_band_part(MilFunction *f, const char *name, MilValue *x, int lower, int upper) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "band_part");
    if (!nm) return NULL;
    MilIn in[] = {MIL_IN("x", x), MIL_IN("lower", mil_const_i32(f, param_const_name(f, nm, "lower"), lower)),
                  MIL_IN("upper", mil_const_i32(f, param_const_name(f, nm, "upper"), upper))};
    return mil_add_op1(f, "band_part", nm, 3, in);
}

MilValue *mil_add_read_state(MilFunction *f, const char *name, MilValue *state) {
    MilIn in[] = {MIL_IN("input", state)};
    return mil_add_op1(f, "read_state", name, 1, in);
}

MilOp *mil_add_write_state(MilFunction *f, const char *name, MilValue *state, MilValue *data) {
    MilIn in[] = {MIL_IN("input", state), MIL_IN("data", data)};
    return mil_add_op(f, "write_state", name, 2, in);
}

MilValue *mil_add_update_state(MilFunction *f, const char *name, MilValue *state, MilValue *value) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "coreml_update_state");
    if (!nm) return NULL;
    char wname[512];
    snprintf(wname, sizeof wname, "%.480s_write_state", nm);
    if (!mil_add_write_state(f, wname, state, value)) return NULL;
    return mil_add_read_state(f, nm, state);
}

MilValue *mil_add_lut_to_dense(MilFunction *f, const char *name, MilValue *indices, MilValue *lut,
                               int vector_axis) {
    if (!usable(f)) return NULL;
    const char *nm = op_name(f, name, "constexpr_lut_to_dense");
    if (!nm) return NULL;
    MilIn in[3] = {MIL_IN("indices", indices), MIL_IN("lut", lut)};
    int n = 2;
    if (vector_axis >= 0) {
        int32_t va = vector_axis;
        in[n++] = MIL_IN("vector_axis", mil_literal(f->prog, MIL_INT32, 0, NULL, &va, 4));
    }
    return mil_add_op1(f, "constexpr_lut_to_dense", nm, n, in);
}
