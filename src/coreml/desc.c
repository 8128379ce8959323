/* desc.c - the ModelDescription of a program: derived as coremltools derives it, checked with
 * Core ML's interface rules (mlmodel/src/Validation/InterfaceValidators.cpp), and matched
 * against a program that was read from a file. */
#include <stdio.h>
#include <string.h>

#include "coreml/internal.h"

/* ==== Deriving ==== */

static int io_dtype_ok(MilDType dt) { return dt == MIL_FP16 || dt == MIL_FP32 || dt == MIL_INT32; }

static int describe_input(const MilFunction *f, const MilValue *v, PkgFeature *out, Err *e) {
    memset(out, 0, sizeof *out);
    out->name = v->name;
    out->dtype = v->type.dtype;
    if (v->type.kind == MIL_STATE) {
        out->kind = PKG_FEATURE_STATE;
        out->shape.rank = v->type.rank;
        memcpy(out->shape.dims, v->type.dims, sizeof v->type.dims);
        return 0;
    }
    out->kind = PKG_FEATURE_ARRAY;
    if (!io_dtype_ok(v->type.dtype))
        return err_set(e, "function '%s': input '%s' is %s; Core ML model inputs must be fp16, fp32 or int32 (add a cast)",
                       f->name, v->name, mil_dtype_name(v->type.dtype));
    if (v->type.rank == 0) {
        /* a scalar input is described as a 1-element array */
        out->shape.rank = 1;
        out->shape.dims[0] = 1;
        return 0;
    }
    int unknown = 0;
    for (int i = 0; i < v->type.rank; i++) unknown |= v->type.dims[i] < 0;
    if (unknown && !v->n_shapes)
        return err_set(e, "function '%s': input '%s' has unknown dimensions but no enumerated shapes "
                          "(use mil_input_enumerated)", f->name, v->name);
    out->shape.rank = v->type.rank;
    if (v->n_shapes) {
        PkgShape *shapes = mil_alloc(f->prog, sizeof *shapes * (size_t)v->n_shapes);
        for (int s = 0; s < v->n_shapes; s++) {
            shapes[s].rank = v->type.rank;
            memcpy(shapes[s].dims, v->shapes + (size_t)s * (size_t)v->type.rank, sizeof(int64_t) * (size_t)v->type.rank);
        }
        out->n_enum = v->n_shapes;
        out->enum_shapes = shapes;
        out->shape = shapes[0];   /* the default shape */
    } else {
        memcpy(out->shape.dims, v->type.dims, sizeof v->type.dims);
    }
    return 0;
}

static int describe_output(const MilFunction *f, const MilValue *v, PkgFeature *out, Err *e) {
    memset(out, 0, sizeof *out);
    out->name = v->name;
    out->kind = PKG_FEATURE_ARRAY;
    out->dtype = v->type.dtype;
    if (!io_dtype_ok(v->type.dtype))
        return err_set(e, "function '%s': output '%s' is %s; Core ML model outputs must be fp16, fp32 or int32 (add a cast)",
                       f->name, v->name, mil_dtype_name(v->type.dtype));
    int unknown = 0;
    for (int i = 0; i < v->type.rank; i++) unknown |= v->type.dims[i] < 0;
    if (!unknown && v->type.rank > 0) {   /* coremltools leaves the shape out when it is not static */
        out->shape.rank = v->type.rank;
        memcpy(out->shape.dims, v->type.dims, sizeof v->type.dims);
    }
    return 0;
}

static int describe_function(const MilFunction *f, PkgFunctionDesc *fd, Err *e) {
    MilProgram *p = f->prog;
    int n_states = 0;
    for (int i = 0; i < f->n_inputs; i++) n_states += f->inputs[i]->type.kind == MIL_STATE;
    PkgFeature *in = mil_alloc(p, sizeof *in * (size_t)(f->n_inputs - n_states + 1));
    PkgFeature *st = mil_alloc(p, sizeof *st * (size_t)(n_states + 1));
    PkgFeature *out = mil_alloc(p, sizeof *out * (size_t)(f->n_outputs + 1));
    fd->name = f->name;
    fd->n_inputs = fd->n_states = 0;
    for (int i = 0; i < f->n_inputs; i++) {
        const MilValue *v = f->inputs[i];
        PkgFeature *dst = v->type.kind == MIL_STATE ? &st[fd->n_states++] : &in[fd->n_inputs++];
        if (describe_input(f, v, dst, e) < 0) return -1;
    }
    if (f->n_outputs < 1) return err_set(e, "function '%s' has no outputs (mil_set_outputs)", f->name);
    for (int i = 0; i < f->n_outputs; i++)
        if (describe_output(f, f->outputs[i], &out[i], e) < 0) return -1;
    fd->n_outputs = f->n_outputs;
    fd->inputs = in;
    fd->states = st;
    fd->outputs = out;
    return 0;
}

int pkg_describe(const MilProgram *cp, const PkgMetadata *meta, PkgDescription *d, Err *e) {
    MilProgram *p = (MilProgram *)cp;   /* only the arena is used */
    memset(d, 0, sizeof *d);
    if (p->n_functions < 1) return err_set(e, "the program has no functions");
    PkgFunctionDesc *fds = mil_alloc(p, sizeof *fds * (size_t)p->n_functions);
    for (int i = 0; i < p->n_functions; i++)
        if (describe_function(p->functions[i], &fds[i], e) < 0) return -1;
    d->functions = fds;
    d->n_functions = p->n_functions;
    d->multifunction = !(p->n_functions == 1 && !strcmp(p->functions[0]->name, "main"));
    if (d->multifunction) {
        const char *def = p->default_function ? p->default_function : p->functions[0]->name;
        if (!mil_program_function(p, def))
            return err_set(e, "default function '%s' is not a function of the program", def);
        d->default_function = def;
    } else if (p->default_function && strcmp(p->default_function, "main")) {
        return err_set(e, "default function '%s' is not a function of the program", p->default_function);
    }
    if (meta) d->metadata = *meta;
    return 0;
}

/* ==== Core ML's interface rules ==== */

static int shape_eq(const PkgShape *a, const PkgShape *b) {
    return a->rank == b->rank && !memcmp(a->dims, b->dims, sizeof(int64_t) * (size_t)a->rank);
}

static int validate_feature(const PkgFeature *f, int spec, int is_input, int is_state, Err *e) {
    if (!f->name || !*f->name) return err_set(e, "a feature description has an empty name");
    if (is_state != (f->kind == PKG_FEATURE_STATE))
        return err_set(e, is_state ? "state description '%s' is not a state" :
                                     "state '%s' must be declared in the state list, not as an input or output", f->name);
    if (f->kind == PKG_FEATURE_OTHER) return 0;
    if (f->kind == PKG_FEATURE_STATE) {
        if (spec < 9) return err_set(e, "state '%s' needs specification version 9, the model has %d", f->name, spec);
        if (f->optional) return err_set(e, "state '%s' cannot be optional", f->name);
        if (f->shape.rank == 0) return err_set(e, "state '%s' has no shape", f->name);
        if (f->dtype != MIL_FP16 && f->dtype != MIL_INT8)
            return err_set(e, "state '%s' must be FLOAT16, is %s", f->name, mil_dtype_name(f->dtype));
        if (f->n_enum || f->n_range) return err_set(e, "state '%s' cannot have a flexible shape", f->name);
        return 0;
    }
    if (f->n_enum) {
        for (int i = 0; i < f->n_enum; i++)
            if (f->enum_shapes[i].rank == 0)
                return err_set(e, "feature '%s' has an enumerated shape with zero dimensions", f->name);
        int found = f->shape.rank == 0;
        for (int i = 0; i < f->n_enum && !found; i++) found = shape_eq(&f->enum_shapes[i], &f->shape);
        if (!found) return err_set(e, "feature '%s' has a default shape that is not one of its enumerated shapes", f->name);
    }
    if (is_input && f->shape.rank == 0 && !f->n_enum && !f->n_range)
        return err_set(e, "input '%s' has no shape constraints", f->name);
    switch (f->dtype) {
    case MIL_FP32: case MIL_FP64: case MIL_INT32: break;
    case MIL_FP16:
        if (spec < 7) return err_set(e, "feature '%s' is FLOAT16, which needs specification version 7", f->name);
        break;
    case MIL_INT8:
        if (spec < 10) return err_set(e, "feature '%s' is INT8, which needs specification version 10", f->name);
        break;
    default:
        return err_set(e, "feature '%s' has an invalid or missing array data type", f->name);
    }
    return 0;
}

static int validate_function(const PkgFunctionDesc *fd, int spec, Err *e) {
    for (int i = 0; i < fd->n_inputs; i++)
        if (validate_feature(&fd->inputs[i], spec, 1, 0, e) < 0) return -1;
    for (int i = 0; i < fd->n_outputs; i++)
        if (validate_feature(&fd->outputs[i], spec, 0, 0, e) < 0) return -1;
    for (int i = 0; i < fd->n_states; i++)
        if (validate_feature(&fd->states[i], spec, 0, 1, e) < 0) return -1;
    return 0;
}

int pkg_description_validate(const PkgDescription *d, int spec, Err *e) {
    if (d->multifunction) {
        if (spec < 9) return err_set(e, "multifunction models need specification version 9, the model has %d", spec);
        int found = 0;
        for (int i = 0; i < d->n_functions; i++) {
            if (validate_function(&d->functions[i], spec, e) < 0)
                return err_wrap(e, "description of function '%s'", d->functions[i].name);
            found |= !strcmp(d->functions[i].name, d->default_function ? d->default_function : "");
        }
        if (!found)
            return err_set(e, "the default function '%s' is not in the description's function list",
                           d->default_function ? d->default_function : "");
        return 0;
    }
    return d->n_functions == 1 ? validate_function(&d->functions[0], spec, e) : err_set(e, "description has no function");
}

/* ==== Matching a read program ==== */

static const PkgFeature *find_feature(int n, const PkgFeature *fs, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(fs[i].name, name)) return &fs[i];
    return NULL;
}

/* The description's dims must agree with the MIL type where the MIL type knows them. */
static int feature_matches(const char *fn, const PkgFeature *feat, const MilValue *v, int is_output, Err *e) {
    char ts[160];
    mil_type_str(&v->type, ts, sizeof ts);
    if (feat->kind == PKG_FEATURE_OTHER) return 0;
    if (feat->dtype != v->type.dtype)
        return err_set(e, "function '%s': '%s' is %s in the description but %s in the program", fn, feat->name,
                       mil_dtype_name(feat->dtype), ts);
    if (feat->shape.rank == 0) return 0;   /* no shape given */
    if (v->type.rank == 0) return feat->shape.rank == 1 && feat->shape.dims[0] == 1
                                      ? 0 : err_set(e, "function '%s': scalar '%s' must be described as shape [1]", fn, feat->name);
    if (feat->shape.rank != v->type.rank)
        return err_set(e, "function '%s': '%s' has rank %d in the description but the program has %s", fn, feat->name,
                       feat->shape.rank, ts);
    for (int i = 0; i < v->type.rank; i++) {
        if (v->type.dims[i] < 0) {
            if (!is_output && !feat->n_enum && !feat->n_range)
                return err_set(e, "function '%s': input '%s' has an unknown dimension but no flexible shape in the description",
                               fn, feat->name);
            continue;
        }
        if (feat->shape.dims[i] != v->type.dims[i])
            return err_set(e, "function '%s': '%s' has dimension %lld at axis %d in the description but the program has %s",
                           fn, feat->name, (long long)feat->shape.dims[i], i, ts);
    }
    for (int s = 0; s < feat->n_enum; s++) {
        const PkgShape *sh = &feat->enum_shapes[s];
        if (sh->rank != v->type.rank)
            return err_set(e, "function '%s': an enumerated shape of '%s' has rank %d, the input has %s", fn, feat->name,
                           sh->rank, ts);
        for (int i = 0; i < sh->rank; i++)
            if (v->type.dims[i] >= 0 && sh->dims[i] != v->type.dims[i])
                return err_set(e, "function '%s': an enumerated shape of '%s' does not fit %s", fn, feat->name, ts);
    }
    return 0;
}

int cml_match_description(MilProgram *p, const PkgDescription *d, Err *e) {
    for (int k = 0; k < d->n_functions; k++) {
        const PkgFunctionDesc *fd = &d->functions[k];
        MilFunction *f = mil_program_function(p, fd->name);
        if (!f) return err_set(e, "the description's function '%s' is not in the program", fd->name);
        int n_in = 0, n_st = 0;
        for (int i = 0; i < f->n_inputs; i++) {
            MilValue *v = f->inputs[i];
            int state = v->type.kind == MIL_STATE;
            const PkgFeature *feat = state ? find_feature(fd->n_states, fd->states, v->name)
                                           : find_feature(fd->n_inputs, fd->inputs, v->name);
            if (!feat && state) feat = find_feature(fd->n_inputs, fd->inputs, v->name);   /* older files */
            if (!feat)
                return err_set(e, "function '%s': %s '%s' is not in the model description", f->name, state ? "state" : "input",
                               v->name);
            state ? n_st++ : n_in++;
            if (feature_matches(f->name, feat, v, 0, e) < 0) return -1;
            /* enumerated shapes of the right rank become the input's accepted shapes */
            if (!state && feat->n_enum && v->type.rank > 0) {
                int64_t *shapes = mil_alloc(p, sizeof *shapes * (size_t)feat->n_enum * (size_t)v->type.rank);
                for (int s = 0; s < feat->n_enum; s++)
                    memcpy(shapes + (size_t)s * (size_t)v->type.rank, feat->enum_shapes[s].dims,
                           sizeof *shapes * (size_t)v->type.rank);
                v->n_shapes = feat->n_enum;
                v->shapes = shapes;
            }
        }
        if (n_in != fd->n_inputs)
            return err_set(e, "function '%s': the description lists %d inputs, the program has %d", f->name, fd->n_inputs, n_in);
        if (n_st != fd->n_states && fd->n_states)
            return err_set(e, "function '%s': the description lists %d states, the program has %d", f->name, fd->n_states, n_st);
        if (fd->n_outputs != f->n_outputs)
            return err_set(e, "function '%s': the description lists %d outputs, the program has %d", f->name,
                           fd->n_outputs, f->n_outputs);
        for (int i = 0; i < f->n_outputs; i++) {
            const PkgFeature *feat = find_feature(fd->n_outputs, fd->outputs, f->outputs[i]->name);
            if (!feat)
                return err_set(e, "function '%s': output '%s' is not in the model description", f->name, f->outputs[i]->name);
            if (feature_matches(f->name, feat, f->outputs[i], 1, e) < 0) return -1;
        }
    }
    return 0;
}
