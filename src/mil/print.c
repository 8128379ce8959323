/* print.c - model.mil text for a MIL program (see print.h for the syntax). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "common/util.h"
#include "mil/ops.h"
#include "mil/print.h"

/* ==== A growable string ==== */

typedef struct Buf {
    char *s;
    size_t len, cap;
} Buf;

static void bprintf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(Buf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
        va_end(ap);
        AN_ASSERT(n >= 0);
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        b->cap = (b->cap + (size_t)n + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
}

/* ==== Values ==== */

static void put_type(Buf *b, const MilType *t) {
    char s[256];
    mil_type_str(t, s, sizeof s);
    bprintf(b, "%s", s);
}

static void put_string(Buf *b, const char *s) {
    bprintf(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            bprintf(b, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            bprintf(b, "\\x%02x", (unsigned char)*s);
        else
            bprintf(b, "%c", *s);
    }
    bprintf(b, "\"");
}

static void put_float(Buf *b, double v) {
    if (isnan(v))
        bprintf(b, "nan");
    else if (isinf(v))
        bprintf(b, v < 0 ? "-inf" : "inf");
    else
        bprintf(b, "%a", v);
}

/* Element i of in-memory const data, as text. */
static void put_elem(Buf *b, MilDType dt, const uint8_t *d, size_t i) {
    switch (dt) {
    case MIL_BOOL: bprintf(b, d[i] ? "true" : "false"); break;
    case MIL_FP16: { uint16_t h; memcpy(&h, d + 2 * i, 2); put_float(b, f16_to_f32(h)); break; }
    case MIL_BF16: { uint16_t h; memcpy(&h, d + 2 * i, 2); put_float(b, bf16_to_f32(h)); break; }
    case MIL_FP32: { float x; memcpy(&x, d + 4 * i, 4); put_float(b, x); break; }
    case MIL_FP64: { double x; memcpy(&x, d + 8 * i, 8); put_float(b, x); break; }
    case MIL_INT8: bprintf(b, "%d", (int8_t)d[i]); break;
    case MIL_UINT8: bprintf(b, "%u", d[i]); break;
    case MIL_INT16: { int16_t x; memcpy(&x, d + 2 * i, 2); bprintf(b, "%d", x); break; }
    case MIL_UINT16: { uint16_t x; memcpy(&x, d + 2 * i, 2); bprintf(b, "%u", x); break; }
    case MIL_INT32: { int32_t x; memcpy(&x, d + 4 * i, 4); bprintf(b, "%d", x); break; }
    case MIL_UINT32: { uint32_t x; memcpy(&x, d + 4 * i, 4); bprintf(b, "%u", x); break; }
    case MIL_INT64: { int64_t x; memcpy(&x, d + 8 * i, 8); bprintf(b, "%lld", (long long)x); break; }
    case MIL_UINT64: { uint64_t x; memcpy(&x, d + 8 * i, 8); bprintf(b, "%llu", (unsigned long long)x); break; }
    default:
        if (mil_dtype_is_subbyte(dt))
            bprintf(b, "%d", mil_subbyte_get(dt, d, i));
        else
            bprintf(b, "?");
    }
}

/* Nested brackets over the dims, row-major. */
static void put_nested(Buf *b, const MilType *t, const MilConst *c, int axis, size_t *idx) {
    if (axis == t->rank) {
        if (t->dtype == MIL_STRING)
            put_string(b, c->strs[(*idx)++]);
        else
            put_elem(b, t->dtype, mil_const_bytes(c), (*idx)++);
        return;
    }
    bprintf(b, "[");
    for (int64_t i = 0; i < t->dims[axis]; i++) {
        if (i) bprintf(b, ", ");
        put_nested(b, t, c, axis + 1, idx);
    }
    bprintf(b, "]");
}

#define MAX_PRINTED_ELEMS 4096

static void put_literal(Buf *b, const MilValue *v) {
    const MilType *t = &v->type;
    const MilConst *c = v->data;
    const char *dtn = mil_dtype_name(t->dtype);
    if (c->kind == MIL_CONST_BLOB) {
        put_type(b, t);
        bprintf(b, "(BLOBFILE(path = string(");
        put_string(b, c->blob.file ? c->blob.file : "@model_path/weights/weight.bin");
        bprintf(b, "), offset = uint64(%llu)))", (unsigned long long)c->blob.offset);
        return;
    }
    int64_t numel = mil_type_numel(t);
    if (t->rank == 0) {
        bprintf(b, "%s(", dtn);
        size_t i = 0;
        put_nested(b, t, c, 0, &i);
        bprintf(b, ")");
        return;
    }
    put_type(b, t);
    if (numel > MAX_PRINTED_ELEMS) {
        bprintf(b, "(/* %lld values in memory, not yet written */)", (long long)numel);
        return;
    }
    bprintf(b, "(");
    size_t i = 0;
    put_nested(b, t, c, 0, &i);
    bprintf(b, ")");
}

static void put_arg_value(Buf *b, const MilValue *v) {
    if (v->name)
        bprintf(b, "%s", v->name);
    else
        put_literal(b, v);
}

/* ==== Ops ==== */

static int cmp_arg(const void *a, const void *b) {
    return strcmp((*(const MilArg *const *)a)->param, (*(const MilArg *const *)b)->param);
}

static void put_op(Buf *b, const MilOp *op) {
    bprintf(b, "            ");
    for (int i = 0; i < op->n_outputs; i++) {
        if (i) bprintf(b, ", ");
        put_type(b, &op->outputs[i]->type);
        bprintf(b, " %s", op->outputs[i]->name);
    }
    if (op->n_outputs) bprintf(b, " = ");
    if (op->def && op->def->id == MIL_OP_CONST) {
        bprintf(b, "const()[name = string(");
        put_string(b, op->name);
        bprintf(b, "), val = ");
        put_literal(b, op->outputs[0]);
        bprintf(b, "];\n");
        return;
    }
    bprintf(b, "%s(", op->type);
    const MilArg *sorted[64];
    int n = 0;
    for (int i = 0; i < op->n_args && n < 64; i++)
        if (op->args[i].n) sorted[n++] = &op->args[i];
    qsort(sorted, (size_t)n, sizeof sorted[0], cmp_arg);
    for (int i = 0; i < n; i++) {
        const MilArg *a = sorted[i];
        int variadic = op->def && (op->def->params[mil_param_index(op->def, a->param)].flags & MIL_P_VARIADIC);
        bprintf(b, "%s%s = ", i ? ", " : "", a->param);
        if (variadic || a->n > 1) bprintf(b, "(");
        for (int k = 0; k < a->n; k++) {
            if (k) bprintf(b, ", ");
            put_arg_value(b, a->vals[k]);
        }
        if (variadic || a->n > 1) bprintf(b, ")");
    }
    bprintf(b, ")[name = string(");
    put_string(b, op->name);
    bprintf(b, ")];\n");
}

/* ==== Functions ==== */

static void put_shape(Buf *b, const int64_t *dims, int rank) {
    bprintf(b, "[");
    for (int i = 0; i < rank; i++) bprintf(b, "%s%lld", i ? ", " : "", (long long)dims[i]);
    bprintf(b, "]");
}

/* Core ML's compiler adds this attribute for inputs with enumerated shapes. */
static void put_flexible_shapes(Buf *b, const MilFunction *f) {
    int any = 0;
    for (int i = 0; i < f->n_inputs; i++) any |= f->inputs[i]->n_shapes > 0;
    if (!any) return;
    bprintf(b, "\n            [FlexibleShapeInformation = tuple<tuple<string, dict<string, tensor<int32, [?]>>>, "
               "tuple<string, dict<string, dict<string, tensor<int32, [?]>>>>>(((\"DefaultShapes\", {");
    int first = 1;
    for (int i = 0; i < f->n_inputs; i++) {
        const MilValue *v = f->inputs[i];
        if (!v->n_shapes) continue;
        bprintf(b, "%s{", first ? "" : ", ");
        put_string(b, v->name);
        bprintf(b, ", ");
        put_shape(b, v->shapes, v->type.rank);
        bprintf(b, "}");
        first = 0;
    }
    bprintf(b, "}), (\"EnumeratedShapes\", {");
    first = 1;
    for (int i = 0; i < f->n_inputs; i++) {
        const MilValue *v = f->inputs[i];
        for (int s = 0; s < v->n_shapes; s++) {
            const int64_t *sh = v->shapes + (size_t)s * (size_t)v->type.rank;
            bprintf(b, "%s{\"%s", first ? "" : ", ", v->name);
            for (int d = 0; d < v->type.rank; d++) bprintf(b, "_%lld", (long long)sh[d]);
            bprintf(b, "\", {{");
            put_string(b, v->name);
            bprintf(b, ", ");
            put_shape(b, sh, v->type.rank);
            bprintf(b, "}}}");
            first = 0;
        }
    }
    bprintf(b, "})))]");
}

static void put_function(Buf *b, const MilFunction *f) {
    const char *tag = mil_opset_tag(f->opset);
    bprintf(b, "    func %s<%s>(", f->name, tag ? tag : f->opset);
    for (int i = 0; i < f->n_inputs; i++) {
        if (i) bprintf(b, ", ");
        put_type(b, &f->inputs[i]->type);
        bprintf(b, " %s", f->inputs[i]->name);
    }
    bprintf(b, ")");
    put_flexible_shapes(b, f);
    bprintf(b, " {\n");
    for (int i = 0; i < f->n_ops; i++) put_op(b, f->ops[i]);
    bprintf(b, "        } -> (");
    for (int i = 0; i < f->n_outputs; i++) bprintf(b, "%s%s", i ? ", " : "", f->outputs[i]->name);
    bprintf(b, ");\n");
}

char *mil_program_to_text(const MilProgram *p) {
    Buf b = {0};
    bprintf(&b, "program(1.3)\n{\n");
    for (int i = 0; i < p->n_functions; i++) put_function(&b, p->functions[i]);
    bprintf(&b, "}\n");
    return b.s;
}
