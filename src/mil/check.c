/* check.c - whole-program validation against the op table, and structural comparison. */
#include <stdio.h>
#include <string.h>

#include "mil/ops.h"

/* ==== Validation ==== */

static int validate_op(const MilFunction *f, const MilOp *op, int level, int allow_unknown, Err *e) {
    if (!op->def) {
        if (allow_unknown) return 0;
        return err_set(e, "function '%s', op '%s': op type '%s' is not supported", f->name, op->name, op->type);
    }
    if (op->def->id == MIL_OP_CONST) {
        if (op->n_outputs != 1 || !op->outputs[0]->data)
            return err_set(e, "function '%s', const '%s': must have one output with data", f->name, op->name);
        return 0;
    }
    Err sub;
    MilInferCtx c;
    memset(&c, 0, sizeof c);
    c.def = op->def;
    c.args = op->args;
    c.op_name = op->name;
    c.opset = level;
    c.e = &sub;
    AN_ASSERT(op->n_args == op->def->n_params);
    if (mil_check_and_infer(&c) < 0) return err_set(e, "function '%s': %s", f->name, sub.msg);
    if (c.n_out != op->n_outputs)
        return err_set(e, "function '%s', op '%s' (%s): declares %d outputs, the op has %d", f->name, op->name,
                       op->type, op->n_outputs, c.n_out);
    for (int i = 0; i < c.n_out; i++) {
        const MilType *decl = &op->outputs[i]->type;
        if (!mil_type_compatible(decl, &c.out[i])) {
            char s1[160], s2[160];
            mil_type_str(decl, s1, sizeof s1);
            mil_type_str(&c.out[i], s2, sizeof s2);
            return err_set(e, "function '%s', op '%s' (%s): output '%s' is declared %s but its inputs give %s",
                           f->name, op->name, op->type, op->outputs[i]->name, s1, s2);
        }
    }
    return 0;
}

/* Core ML runs tensors of rank <= 5 (coremltools refuses a program with a larger op output, except
 * a const or constexpr output that only constexpr ops read, such as a LUT). */
#define COREML_MAX_RANK 5

static int only_constexpr_reads(const MilFunction *f, const MilValue *v) {
    for (int i = 0; i < f->n_outputs; i++)
        if (f->outputs[i] == v) return 0;
    for (int i = 0; i < f->n_ops; i++) {
        const MilOp *op = f->ops[i];
        for (int a = 0; a < op->n_args; a++)
            for (int k = 0; k < op->args[a].n; k++)
                if (op->args[a].vals[k] == v && strncmp(op->type, "constexpr_", 10)) return 0;
    }
    return 1;
}

static int check_ranks(const MilFunction *f, Err *e) {
    for (int i = 0; i < f->n_inputs; i++) {
        const MilValue *v = f->inputs[i];
        /* coremltools' loader makes a Placeholder per input and refuses rank 0 */
        if (v->type.rank < 1 || v->type.rank > COREML_MAX_RANK)
            return err_set(e, "function '%s': input '%s' has rank %d; Core ML inputs and states need rank 1..%d",
                           f->name, v->name, v->type.rank, COREML_MAX_RANK);
    }
    for (int i = 0; i < f->n_ops; i++) {
        const MilOp *op = f->ops[i];
        int compile_time = (op->def && op->def->id == MIL_OP_CONST) || !strncmp(op->type, "constexpr_", 10);
        for (int k = 0; k < op->n_outputs; k++) {
            const MilValue *v = op->outputs[k];
            if (v->type.rank <= COREML_MAX_RANK) continue;
            if (compile_time && only_constexpr_reads(f, v)) continue;
            return err_set(e, "function '%s', op '%s' (%s): output '%s' has rank %d; Core ML supports tensors of rank <= %d",
                           f->name, op->name, op->type, v->name, v->type.rank, COREML_MAX_RANK);
        }
    }
    return 0;
}

int mil_program_validate(const MilProgram *p, int allow_unknown, Err *e) {
    if (p->failed) return err_set(e, "%s", p->err.msg);
    if (p->n_functions < 1) return err_set(e, "the program has no functions");
    if (p->default_function && !mil_program_function(p, p->default_function))
        return err_set(e, "default function '%s' is not a function of the program", p->default_function);
    for (int fi = 0; fi < p->n_functions; fi++) {
        const MilFunction *f = p->functions[fi];
        int level = mil_opset_level(f->opset);
        if (level < 0) return err_set(e, "function '%s': unknown opset '%s'", f->name, f->opset);
        /* coremltools: "all functions must have the same opset_version" */
        if (fi > 0 && strcmp(f->opset, p->functions[0]->opset))
            return err_set(e, "function '%s' has opset %s but function '%s' has %s; all functions must share one opset",
                           f->name, f->opset, p->functions[0]->name, p->functions[0]->opset);
        if (check_ranks(f, e) < 0) return -1;
        for (int i = 0; i < f->n_inputs; i++)
            if (f->inputs[i]->type.kind == MIL_STATE && f->inputs[i]->type.dtype != MIL_FP16)
                return err_set(e, "function '%s': state '%s' is %s; Core ML supports fp16 states only", f->name,
                               f->inputs[i]->name, mil_dtype_name(f->inputs[i]->type.dtype));
        for (int i = 0; i < f->n_ops; i++)
            if (validate_op(f, f->ops[i], level, allow_unknown, e) < 0) return -1;
        if (f->n_outputs < 1) return err_set(e, "function '%s' has no outputs", f->name);
        for (int i = 0; i < f->n_outputs; i++)
            if (f->outputs[i]->type.kind == MIL_STATE)
                return err_set(e, "function '%s': output '%s' is a state", f->name, f->outputs[i]->name);
    }
    return 0;
}

/* ==== Comparison ==== */

static int cmp_str(const char *a, const char *b) {
    if (!a || !b) return a == b ? 0 : 1;
    return strcmp(a, b);
}

static int const_equal(const MilValue *a, const MilValue *b, char *why, size_t n) {
    const MilConst *ca = a->data, *cb = b->data;
    if (!ca || !cb) {
        snprintf(why, n, "one side has no const data");
        return ca == cb;
    }
    if (a->type.dtype == MIL_STRING) {
        int64_t numel = mil_type_numel(&a->type);
        for (int64_t i = 0; i < numel; i++)
            if (!ca->strs || !cb->strs || cmp_str(ca->strs[i], cb->strs[i])) {
                snprintf(why, n, "string element %lld differs", (long long)i);
                return 0;
            }
        return 1;
    }
    if (ca->nbytes != cb->nbytes) {
        snprintf(why, n, "data sizes differ (%llu vs %llu bytes)", (unsigned long long)ca->nbytes,
                 (unsigned long long)cb->nbytes);
        return 0;
    }
    const void *da = mil_const_bytes(ca), *db = mil_const_bytes(cb);
    if (da && db) {
        if (ca->nbytes && memcmp(da, db, (size_t)ca->nbytes)) {
            const unsigned char *x = da, *y = db;
            uint64_t k = 0;
            while (x[k] == y[k]) k++;
            snprintf(why, n, "data differs at byte %llu", (unsigned long long)k);
            return 0;
        }
        return 1;
    }
    /* at least one side is only on disk: the same blob file must be meant */
    if (ca->kind == MIL_CONST_BLOB && cb->kind == MIL_CONST_BLOB && ca->blob.offset != cb->blob.offset) {
        snprintf(why, n, "blob offsets differ (%llu vs %llu) and the data is not in memory",
                 (unsigned long long)ca->blob.offset, (unsigned long long)cb->blob.offset);
        return 0;
    }
    return 1;
}

static int value_equal(const MilValue *a, const MilValue *b, char *why, size_t n) {
    if (!mil_type_equal(&a->type, &b->type)) {
        char s1[160], s2[160];
        mil_type_str(&a->type, s1, sizeof s1);
        mil_type_str(&b->type, s2, sizeof s2);
        snprintf(why, n, "types differ: %s vs %s", s1, s2);
        return 0;
    }
    if ((a->name == NULL) != (b->name == NULL)) {
        snprintf(why, n, "one is a literal, the other a named value");
        return 0;
    }
    if (a->name) {
        if (strcmp(a->name, b->name)) {
            snprintf(why, n, "bound to '%s' vs '%s'", a->name, b->name);
            return 0;
        }
        return 1;
    }
    return const_equal(a, b, why, n);
}

static int compare_function(const MilFunction *fa, const MilFunction *fb, Err *e) {
    char why[512];
    if (strcmp(fa->opset, fb->opset))
        return err_set(e, "function '%s': opset %s vs %s", fa->name, fa->opset, fb->opset);
    if (fa->n_inputs != fb->n_inputs)
        return err_set(e, "function '%s': %d vs %d inputs", fa->name, fa->n_inputs, fb->n_inputs);
    for (int i = 0; i < fa->n_inputs; i++) {
        const MilValue *a = fa->inputs[i], *b = fb->inputs[i];
        if (strcmp(a->name, b->name) || !mil_type_equal(&a->type, &b->type))
            return err_set(e, "function '%s': input %d differs ('%s' vs '%s' or its type)", fa->name, i, a->name,
                           b->name);
        if (a->n_shapes != b->n_shapes ||
            (a->n_shapes && memcmp(a->shapes, b->shapes, sizeof *a->shapes * (size_t)a->n_shapes * (size_t)a->type.rank)))
            return err_set(e, "function '%s': input '%s' has different enumerated shapes", fa->name, a->name);
    }
    if (fa->n_ops != fb->n_ops) return err_set(e, "function '%s': %d vs %d ops", fa->name, fa->n_ops, fb->n_ops);
    for (int i = 0; i < fa->n_ops; i++) {
        const MilOp *a = fa->ops[i], *b = fb->ops[i];
        if (strcmp(a->type, b->type) || cmp_str(a->name, b->name))
            return err_set(e, "function '%s', op %d: '%s' (%s) vs '%s' (%s)", fa->name, i, a->name, a->type, b->name,
                           b->type);
        if (a->n_outputs != b->n_outputs)
            return err_set(e, "function '%s', op '%s': %d vs %d outputs", fa->name, a->name, a->n_outputs, b->n_outputs);
        for (int k = 0; k < a->n_outputs; k++) {
            const MilValue *oa = a->outputs[k], *ob = b->outputs[k];
            if (strcmp(oa->name, ob->name) || !mil_type_equal(&oa->type, &ob->type))
                return err_set(e, "function '%s', op '%s': output %d differs ('%s' vs '%s' or its type)", fa->name,
                               a->name, k, oa->name, ob->name);
            if ((oa->data || ob->data) && !const_equal(oa, ob, why, sizeof why))
                return err_set(e, "function '%s', const '%s': %s", fa->name, a->name, why);
        }
        /* inputs by parameter name, either order */
        int present_a = 0, present_b = 0;
        for (int k = 0; k < b->n_args; k++) present_b += b->args[k].n > 0;
        for (int k = 0; k < a->n_args; k++) {
            const MilArg *x = &a->args[k];
            if (!x->n) continue;
            present_a++;
            const MilArg *y = mil_op_arg(b, x->param);
            if (!y) return err_set(e, "function '%s', op '%s': input '%s' missing on one side", fa->name, a->name, x->param);
            if (x->n != y->n)
                return err_set(e, "function '%s', op '%s': input '%s' has %d vs %d values", fa->name, a->name,
                               x->param, x->n, y->n);
            for (int j = 0; j < x->n; j++)
                if (!value_equal(x->vals[j], y->vals[j], why, sizeof why))
                    return err_set(e, "function '%s', op '%s', input '%s'[%d]: %s", fa->name, a->name, x->param, j, why);
        }
        if (present_a != present_b)
            return err_set(e, "function '%s', op '%s': %d vs %d inputs", fa->name, a->name, present_a, present_b);
    }
    if (fa->n_outputs != fb->n_outputs)
        return err_set(e, "function '%s': %d vs %d outputs", fa->name, fa->n_outputs, fb->n_outputs);
    for (int i = 0; i < fa->n_outputs; i++)
        if (strcmp(fa->outputs[i]->name, fb->outputs[i]->name))
            return err_set(e, "function '%s': output %d is '%s' vs '%s'", fa->name, i, fa->outputs[i]->name,
                           fb->outputs[i]->name);
    return 0;
}

int mil_program_compare(const MilProgram *a, const MilProgram *b, Err *e) {
    if (a->n_functions != b->n_functions)
        return err_set(e, "%d vs %d functions", a->n_functions, b->n_functions);
    const char *da = a->default_function ? a->default_function : a->functions[0]->name;
    const char *db = b->default_function ? b->default_function : b->functions[0]->name;
    if (strcmp(da, db)) return err_set(e, "default function '%s' vs '%s'", da, db);
    for (int i = 0; i < a->n_functions; i++) {
        const MilFunction *fb = mil_program_function(b, a->functions[i]->name);
        if (!fb) return err_set(e, "function '%s' is missing on one side", a->functions[i]->name);
        if (compare_function(a->functions[i], fb, e) < 0) return -1;
    }
    return 0;
}
