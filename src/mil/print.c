/* print.c - model.mil text for a MIL program (see print.h for the syntax). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "common/strbuf.h"
#include "common/util.h"
#include "mil/ops.h"
#include "mil/print.h"

/* ==== Values ==== */

static void put_type(StrBuf *b, const MilType *t) {
    char s[256];
    mil_type_str(t, s, sizeof s);
    strbuf_printf(b, "%s", s);
}

static void put_string(StrBuf *b, const char *s) {
    strbuf_printf(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            strbuf_printf(b, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            strbuf_printf(b, "\\x%02x", (unsigned char)*s);
        else
            strbuf_printf(b, "%c", *s);
    }
    strbuf_printf(b, "\"");
}

static void put_float(StrBuf *b, double v) {
    if (isnan(v))
        strbuf_printf(b, "nan");
    else if (isinf(v))
        strbuf_printf(b, v < 0 ? "-inf" : "inf");
    else
        strbuf_printf(b, "%a", v);
}

/* Element i of in-memory const data, as text. */
static void put_elem(StrBuf *b, MilDType dt, const uint8_t *d, size_t i) {
    switch (dt) {
    case MIL_BOOL: strbuf_printf(b, d[i] ? "true" : "false"); break;
    case MIL_FP16: { uint16_t h; memcpy(&h, d + 2 * i, 2); put_float(b, f16_to_f32(h)); break; }
    case MIL_BF16: { uint16_t h; memcpy(&h, d + 2 * i, 2); put_float(b, bf16_to_f32(h)); break; }
    case MIL_FP32: { float x; memcpy(&x, d + 4 * i, 4); put_float(b, x); break; }
    case MIL_FP64: { double x; memcpy(&x, d + 8 * i, 8); put_float(b, x); break; }
    case MIL_INT8: strbuf_printf(b, "%d", (int8_t)d[i]); break;
    case MIL_UINT8: strbuf_printf(b, "%u", d[i]); break;
    case MIL_INT16: { int16_t x; memcpy(&x, d + 2 * i, 2); strbuf_printf(b, "%d", x); break; }
    case MIL_UINT16: { uint16_t x; memcpy(&x, d + 2 * i, 2); strbuf_printf(b, "%u", x); break; }
    case MIL_INT32: { int32_t x; memcpy(&x, d + 4 * i, 4); strbuf_printf(b, "%d", x); break; }
    case MIL_UINT32: { uint32_t x; memcpy(&x, d + 4 * i, 4); strbuf_printf(b, "%u", x); break; }
    case MIL_INT64: { int64_t x; memcpy(&x, d + 8 * i, 8); strbuf_printf(b, "%lld", (long long)x); break; }
    case MIL_UINT64: { uint64_t x; memcpy(&x, d + 8 * i, 8); strbuf_printf(b, "%llu", (unsigned long long)x); break; }
    default:
        if (mil_dtype_is_subbyte(dt))
            strbuf_printf(b, "%d", mil_subbyte_get(dt, d, i));
        else
            strbuf_printf(b, "?");
    }
}

/* Nested brackets over the dims, row-major. */
static void put_nested(StrBuf *b, const MilType *t, const MilConst *c, int axis, size_t *idx) {
    if (axis == t->rank) {
        if (t->dtype == MIL_STRING)
            put_string(b, c->strs[(*idx)++]);
        else
            put_elem(b, t->dtype, mil_const_bytes(c), (*idx)++);
        return;
    }
    strbuf_printf(b, "[");
    for (int64_t i = 0; i < t->dims[axis]; i++) {
        if (i) strbuf_printf(b, ", ");
        put_nested(b, t, c, axis + 1, idx);
    }
    strbuf_printf(b, "]");
}

#define MAX_PRINTED_ELEMS 4096

static void put_literal(StrBuf *b, const MilValue *v) {
    const MilType *t = &v->type;
    const MilConst *c = v->data;
    const char *dtn = mil_dtype_name(t->dtype);
    if (c->kind == MIL_CONST_BLOB) {
        put_type(b, t);
        strbuf_printf(b, "(BLOBFILE(path = string(");
        put_string(b, c->blob.file ? c->blob.file : "@model_path/weights/weight.bin");
        strbuf_printf(b, "), offset = uint64(%llu)))", (unsigned long long)c->blob.offset);
        return;
    }
    int64_t numel = mil_type_numel(t);
    if (t->rank == 0) {
        strbuf_printf(b, "%s(", dtn);
        size_t i = 0;
        put_nested(b, t, c, 0, &i);
        strbuf_printf(b, ")");
        return;
    }
    put_type(b, t);
    if (numel > MAX_PRINTED_ELEMS) {
        strbuf_printf(b, "(/* %lld values in memory, not yet written */)", (long long)numel);
        return;
    }
    strbuf_printf(b, "(");
    size_t i = 0;
    put_nested(b, t, c, 0, &i);
    strbuf_printf(b, ")");
}

static void put_arg_value(StrBuf *b, const MilValue *v) {
    if (v->name)
        strbuf_printf(b, "%s", v->name);
    else
        put_literal(b, v);
}

/* ==== Ops ==== */

static int cmp_arg(const void *a, const void *b) {
    return strcmp((*(const MilArg *const *)a)->param, (*(const MilArg *const *)b)->param);
}

static void put_op(StrBuf *b, const MilOp *op) {
    strbuf_printf(b, "            ");
    for (int i = 0; i < op->n_outputs; i++) {
        if (i) strbuf_printf(b, ", ");
        put_type(b, &op->outputs[i]->type);
        strbuf_printf(b, " %s", op->outputs[i]->name);
    }
    if (op->n_outputs) strbuf_printf(b, " = ");
    if (op->def && op->def->id == MIL_OP_CONST) {
        strbuf_printf(b, "const()[name = string(");
        put_string(b, op->name);
        strbuf_printf(b, "), val = ");
        put_literal(b, op->outputs[0]);
        strbuf_printf(b, "];\n");
        return;
    }
    strbuf_printf(b, "%s(", op->type);
    const MilArg *sorted[64];
    int n = 0;
    for (int i = 0; i < op->n_args && n < 64; i++)
        if (op->args[i].n) sorted[n++] = &op->args[i];
    qsort(sorted, (size_t)n, sizeof sorted[0], cmp_arg);
    for (int i = 0; i < n; i++) {
        const MilArg *a = sorted[i];
        int variadic = op->def && (op->def->params[mil_param_index(op->def, a->param)].flags & MIL_P_VARIADIC);
        strbuf_printf(b, "%s%s = ", i ? ", " : "", a->param);
        if (variadic || a->n > 1) strbuf_printf(b, "(");
        for (int k = 0; k < a->n; k++) {
            if (k) strbuf_printf(b, ", ");
            put_arg_value(b, a->vals[k]);
        }
        if (variadic || a->n > 1) strbuf_printf(b, ")");
    }
    strbuf_printf(b, ")[name = string(");
    put_string(b, op->name);
    strbuf_printf(b, ")];\n");
}

/* ==== Functions ==== */

static void put_shape(StrBuf *b, const int64_t *dims, int rank) {
    strbuf_printf(b, "[");
    for (int i = 0; i < rank; i++) strbuf_printf(b, "%s%lld", i ? ", " : "", (long long)dims[i]);
    strbuf_printf(b, "]");
}

/* Core ML's compiler adds this attribute for inputs with enumerated shapes. */
static void put_flexible_shapes(StrBuf *b, const MilFunction *f) {
    int any = 0;
    for (int i = 0; i < f->n_inputs; i++) any |= f->inputs[i]->n_shapes > 0;
    if (!any) return;
    strbuf_printf(b, "\n            [FlexibleShapeInformation = tuple<tuple<string, dict<string, tensor<int32, [?]>>>, "
               "tuple<string, dict<string, dict<string, tensor<int32, [?]>>>>>(((\"DefaultShapes\", {");
    int first = 1;
    for (int i = 0; i < f->n_inputs; i++) {
        const MilValue *v = f->inputs[i];
        if (!v->n_shapes) continue;
        strbuf_printf(b, "%s{", first ? "" : ", ");
        put_string(b, v->name);
        strbuf_printf(b, ", ");
        put_shape(b, v->shapes, v->type.rank);
        strbuf_printf(b, "}");
        first = 0;
    }
    strbuf_printf(b, "}), (\"EnumeratedShapes\", {");
    first = 1;
    for (int i = 0; i < f->n_inputs; i++) {
        const MilValue *v = f->inputs[i];
        for (int s = 0; s < v->n_shapes; s++) {
            const int64_t *sh = v->shapes + (size_t)s * (size_t)v->type.rank;
            strbuf_printf(b, "%s{\"%s", first ? "" : ", ", v->name);
            for (int d = 0; d < v->type.rank; d++) strbuf_printf(b, "_%lld", (long long)sh[d]);
            strbuf_printf(b, "\", {{");
            put_string(b, v->name);
            strbuf_printf(b, ", ");
            put_shape(b, sh, v->type.rank);
            strbuf_printf(b, "}}}");
            first = 0;
        }
    }
    strbuf_printf(b, "})))]");
}

static void put_function(StrBuf *b, const MilFunction *f) {
    const char *tag = mil_opset_tag(f->opset);
    strbuf_printf(b, "    func %s<%s>(", f->name, tag ? tag : f->opset);
    for (int i = 0; i < f->n_inputs; i++) {
        if (i) strbuf_printf(b, ", ");
        put_type(b, &f->inputs[i]->type);
        strbuf_printf(b, " %s", f->inputs[i]->name);
    }
    strbuf_printf(b, ")");
    put_flexible_shapes(b, f);
    strbuf_printf(b, " {\n");
    for (int i = 0; i < f->n_ops; i++) put_op(b, f->ops[i]);
    strbuf_printf(b, "        } -> (");
    for (int i = 0; i < f->n_outputs; i++) strbuf_printf(b, "%s%s", i ? ", " : "", f->outputs[i]->name);
    strbuf_printf(b, ");\n");
}

char *mil_program_to_text(const MilProgram *p) {
    StrBuf b = {0};
    strbuf_printf(&b, "program(1.3)\n{\n");
    for (int i = 0; i < p->n_functions; i++) put_function(&b, p->functions[i]);
    strbuf_printf(&b, "}\n");
    return strbuf_take(&b);
}
