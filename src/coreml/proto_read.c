/* proto_read.c - a CoreML.Specification.Model protobuf (model.mlmodel) back into a MIL
 * program and a PkgDescription, checking everything a hostile or broken file could get wrong:
 * types, counts, names, references to undefined values, blob references and their dtypes. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "coreml/internal.h"
#include "coreml/pb.h"
#include "mil/ops.h"

#define MAX_DIM ((int64_t)1 << 40)      /* largest dimension accepted from a file */
#define MAX_NUMEL ((int64_t)1 << 48)    /* largest element count accepted from a file */

typedef struct Dec {
    MilProgram *p;
    CmlBlobOpen resolve;
    void *ctx;
    unsigned flags;
    Err *e;
    const char *fn;      /* function being read, for messages */
    const char *op;      /* op being read */
} Dec;

static int derr(Dec *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int derr(Dec *d, const char *fmt, ...) {
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (d->fn && d->op) return err_set(d->e, "model.mlmodel: function '%s', op '%s': %s", d->fn, d->op, msg);
    if (d->fn) return err_set(d->e, "model.mlmodel: function '%s': %s", d->fn, msg);
    return err_set(d->e, "model.mlmodel: %s", msg);
}

static const char *dstr(Dec *d, const char *s) { return mil_strdup(d->p, s ? s : ""); }

/* ==== Types ==== */

static int dec_tensor_type(Dec *d, const PbTensorType *tt, MilType *t, const char *what) {
    memset(t, 0, sizeof *t);
    if (!mil_dtype_is_valid((int)tt->datatype)) return derr(d, "%s has unknown data type %d", what, (int)tt->datatype);
    if (tt->base.n_unknown_fields) return derr(d, "%s: tensor type attributes are not supported", what);
    if (tt->rank < 0) return derr(d, "%s has unknown rank; dynamic ranks are not supported", what);
    if (tt->rank > MIL_MAX_RANK) return derr(d, "%s has rank %lld; at most %d is supported", what, (long long)tt->rank, MIL_MAX_RANK);
    if ((size_t)tt->rank != tt->n_dimensions)
        return derr(d, "%s has rank %lld but %zu dimensions", what, (long long)tt->rank, tt->n_dimensions);
    t->kind = MIL_TENSOR;
    t->dtype = (MilDType)tt->datatype;
    t->rank = (int)tt->rank;
    for (int i = 0; i < t->rank; i++) {
        const PbDim *dim = tt->dimensions[i];
        if (dim->dimension_case == CORE_ML__SPECIFICATION__MILSPEC__DIMENSION__DIMENSION_CONSTANT) {
            if (dim->constant->size > (uint64_t)MAX_DIM)
                return derr(d, "%s has dimension %llu at axis %d, too large", what, (unsigned long long)dim->constant->size, i);
            t->dims[i] = (int64_t)dim->constant->size;
        } else if (dim->dimension_case == CORE_ML__SPECIFICATION__MILSPEC__DIMENSION__DIMENSION_UNKNOWN) {
            if (dim->unknown->variadic) return derr(d, "%s has a variadic dimension; not supported", what);
            t->dims[i] = MIL_DIM_UNKNOWN;
        } else {
            return derr(d, "%s: dimension %d is neither constant nor unknown", what, i);
        }
    }
    int64_t numel = mil_type_numel(t);
    int unknown = 0;
    for (int i = 0; i < t->rank; i++) unknown |= t->dims[i] < 0;
    if (!unknown && (numel < 0 || numel > MAX_NUMEL)) return derr(d, "%s has too many elements", what);
    return 0;
}

static int dec_value_type(Dec *d, const PbValueType *vt, MilType *t, const char *what) {
    if (!vt) return derr(d, "%s has no type", what);
    if (vt->type_case == CORE_ML__SPECIFICATION__MILSPEC__VALUE_TYPE__TYPE_TENSOR_TYPE)
        return dec_tensor_type(d, vt->tensortype, t, what);
    if (vt->type_case == CORE_ML__SPECIFICATION__MILSPEC__VALUE_TYPE__TYPE_STATE_TYPE) {
        const PbWrapped *w = vt->statetype->wrappedtype;
        if (!w || w->type_case != CORE_ML__SPECIFICATION__MILSPEC__STATE_WRAPPED_TYPE__TYPE_TENSOR_TYPE)
            return derr(d, "%s is a state that does not wrap a tensor", what);
        if (dec_tensor_type(d, w->tensortype, t, what) < 0) return -1;
        for (int i = 0; i < t->rank; i++)
            if (t->dims[i] < 0) return derr(d, "%s is a state with an unknown dimension; states need fixed shapes", what);
        t->kind = MIL_STATE;
        return 0;
    }
    return derr(d, "%s has a list, tuple or dictionary type; only tensors and states are supported", what);
}

/* ==== Values ==== */

/* "@model_path/<rel>" -> rel, checked to stay inside the package. */
static const char *blob_rel_path(Dec *d, const char *file, const char *what) {
    static const char prefix[] = "@model_path/";
    if (strncmp(file, prefix, sizeof prefix - 1)) {
        derr(d, "%s: blob file '%s' does not start with @model_path/", what, file);
        return NULL;
    }
    const char *rel = file + sizeof prefix - 1;
    if (!*rel || rel[0] == '/' || strstr(rel, "..") || strchr(rel, '\\')) {
        derr(d, "%s: blob file path '%s' is not a plain path inside the package", what, file);
        return NULL;
    }
    return rel;
}

static int dec_blob(Dec *d, const PbBlobFile *bf, const MilType *t, MilConst *c, const char *what) {
    const char *rel = blob_rel_path(d, bf->filename, what);
    if (!rel) return -1;
    const BlobFile *file;
    Err sub;
    if (d->resolve(d->ctx, rel, &file, &sub) < 0) return derr(d, "%s: %s", what, sub.msg);
    BlobInfo b;
    if (blob_file_get(file, bf->offset, &b, &sub) < 0) return derr(d, "%s: %s", what, sub.msg);
    if (blob_check_elements(file, &b, t->dtype, (uint64_t)mil_type_numel(t), &sub) < 0)
        return derr(d, "%s: %s", what, sub.msg);
    c->kind = MIL_CONST_BLOB;
    c->nbytes = b.nbytes;
    c->blob.file = dstr(d, bf->filename);
    c->blob.offset = bf->offset;
    c->blob.nbytes = b.nbytes;
    c->blob.data = b.data;
    c->blob.owner = file;
    return 0;
}

/* Expected TensorValue field for a dtype (coremltools' _tensor_field_by_type). */
static int expected_field(MilDType dt) {
    switch (dt) {
    case MIL_FP32: return CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_FLOATS;
    case MIL_FP64: return CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_DOUBLES;
    case MIL_INT32: case MIL_INT16: case MIL_UINT16: return CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_INTS;
    case MIL_INT64: case MIL_UINT64: return CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_LONG_INTS;
    case MIL_BOOL: return CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_BOOLS;
    case MIL_STRING: return CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_STRINGS;
    case MIL_FP16: case MIL_INT8: case MIL_UINT8: case MIL_UINT32: case MIL_INT4: case MIL_UINT1:
    case MIL_UINT2: case MIL_UINT3: case MIL_UINT4: case MIL_UINT6:
        return CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_BYTES;
    default: return -1;
    }
}

static int dec_immediate(Dec *d, const PbImmediate *im, const MilType *t, MilConst *c, const char *what) {
    if (!im || im->value_case != CORE_ML__SPECIFICATION__MILSPEC__VALUE__IMMEDIATE_VALUE__VALUE_TENSOR || !im->tensor)
        return derr(d, "%s: only tensor immediate values are supported", what);
    const PbTensorValue *tv = im->tensor;
    int want = expected_field(t->dtype);
    if (want < 0) return derr(d, "%s: immediate values of dtype %s are not supported", what, mil_dtype_name(t->dtype));
    if ((int)tv->value_case != want)
        return derr(d, "%s: immediate %s value stored in the wrong TensorValue field (%d, expected %d)", what,
                    mil_dtype_name(t->dtype), (int)tv->value_case, want);
    int64_t numel = mil_type_numel(t);
    uint64_t nbytes = 0;
    if (t->dtype != MIL_STRING && mil_packed_size(t->dtype, (uint64_t)numel, &nbytes) < 0)
        return derr(d, "%s: value too large", what);
    uint8_t *buf = t->dtype == MIL_STRING ? NULL : mil_alloc(d->p, (size_t)nbytes);
    size_t have;
    switch (tv->value_case) {
    case CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_FLOATS:
        have = tv->floats->n_values;
        if (have == (size_t)numel && numel) memcpy(buf, tv->floats->values, (size_t)nbytes);
        break;
    case CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_DOUBLES:
        have = tv->doubles->n_values;
        if (have == (size_t)numel && numel) memcpy(buf, tv->doubles->values, (size_t)nbytes);
        break;
    case CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_LONG_INTS:
        have = tv->longints->n_values;
        if (have == (size_t)numel && numel) memcpy(buf, tv->longints->values, (size_t)nbytes);
        break;
    case CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_INTS:
        have = tv->ints->n_values;
        if (have == (size_t)numel)
            for (int64_t i = 0; i < numel; i++) {
                int32_t x = tv->ints->values[i];
                if (t->dtype == MIL_INT32) memcpy(buf + 4 * i, &x, 4);
                else if (t->dtype == MIL_INT16) {
                    if (x < -32768 || x > 32767) return derr(d, "%s: value %d does not fit int16", what, x);
                    int16_t s = (int16_t)x;
                    memcpy(buf + 2 * i, &s, 2);
                } else {
                    if (x < 0 || x > 65535) return derr(d, "%s: value %d does not fit uint16", what, x);
                    uint16_t u = (uint16_t)x;
                    memcpy(buf + 2 * i, &u, 2);
                }
            }
        break;
    case CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_BOOLS:
        have = tv->bools->n_values;
        if (have == (size_t)numel)
            for (int64_t i = 0; i < numel; i++) buf[i] = tv->bools->values[i] ? 1 : 0;
        break;
    case CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_STRINGS: {
        have = tv->strings->n_values;
        if (have == (size_t)numel) {
            const char **strs = mil_alloc(d->p, sizeof *strs * (size_t)(numel ? numel : 1));
            for (int64_t i = 0; i < numel; i++) strs[i] = dstr(d, tv->strings->values[i]);
            c->strs = strs;
        }
        break;
    }
    case CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_BYTES:
        if (tv->bytes->values.len != nbytes)
            return derr(d, "%s: %zu bytes of immediate %s data for %lld elements (expected %llu)", what,
                        tv->bytes->values.len, mil_dtype_name(t->dtype), (long long)numel, (unsigned long long)nbytes);
        if (nbytes) memcpy(buf, tv->bytes->values.data, (size_t)nbytes);
        if (mil_dtype_is_subbyte(t->dtype) && nbytes) {
            unsigned used = (unsigned)(((uint64_t)numel * (uint64_t)mil_dtype_bits(t->dtype)) % 8);
            if (used && (buf[nbytes - 1] >> used))
                return derr(d, "%s: unused high bits of the last byte of packed %s data are not zero", what,
                            mil_dtype_name(t->dtype));
        }
        have = (size_t)numel;
        break;
    default:
        return derr(d, "%s: immediate value has no data", what);
    }
    if (have != (size_t)numel)
        return derr(d, "%s: immediate value has %zu elements, its type has %lld", what, have, (long long)numel);
    c->kind = MIL_CONST_BYTES;
    c->bytes = buf;
    c->nbytes = nbytes;
    return 0;
}

/* A Value (const data): type plus immediate or blob data. */
static int dec_value(Dec *d, const PbValue *v, MilType *t, MilConst **out, const char *what) {
    *out = NULL;
    if (!v) return derr(d, "%s: missing value", what);
    if (dec_value_type(d, v->type, t, what) < 0) return -1;
    if (t->kind != MIL_TENSOR) return derr(d, "%s: a value cannot be a state", what);
    if (mil_type_numel(t) < 0) return derr(d, "%s: a value needs a fully known shape", what);
    MilConst *c = mil_alloc(d->p, sizeof *c);
    if (v->value_case == CORE_ML__SPECIFICATION__MILSPEC__VALUE__VALUE_IMMEDIATE_VALUE) {
        if (dec_immediate(d, v->immediatevalue, t, c, what) < 0) return -1;
    } else if (v->value_case == CORE_ML__SPECIFICATION__MILSPEC__VALUE__VALUE_BLOB_FILE_VALUE) {
        if (t->dtype == MIL_STRING || t->dtype == MIL_BOOL || !blob_dtype_code(t->dtype))
            return derr(d, "%s: %s data cannot come from a blob", what, mil_dtype_name(t->dtype));
        if (dec_blob(d, v->blobfilevalue, t, c, what) < 0) return -1;
    } else {
        return derr(d, "%s: value has neither immediate nor blob data", what);
    }
    *out = c;
    return 0;
}

static const char *string_attr(Dec *d, const PbValue *v, const char *what) {
    MilType t;
    MilConst *c;
    if (dec_value(d, v, &t, &c, what) < 0) return NULL;
    if (t.dtype != MIL_STRING || t.rank != 0) {
        derr(d, "%s must be a string scalar", what);
        return NULL;
    }
    return c->strs[0];
}

/* ==== Ops ==== */

static int dec_const_op(Dec *d, MilFunction *f, const PbOp *po, const char *name) {
    const PbValue *val = NULL;
    for (size_t i = 0; i < po->n_attributes; i++)
        if (!strcmp(po->attributes[i]->key, "val")) val = po->attributes[i]->value;
    if (!val) return derr(d, "const has no 'val' attribute");
    if (po->n_inputs) return derr(d, "const must not have inputs");
    if (po->n_outputs != 1) return derr(d, "const must have exactly one output, has %zu", po->n_outputs);
    MilType t, ot;
    MilConst *c;
    if (dec_value(d, val, &t, &c, "attribute 'val'") < 0) return -1;
    if (dec_value_type(d, po->outputs[0]->type, &ot, "const output") < 0) return -1;
    if (!mil_type_equal(&t, &ot)) {
        char s1[160], s2[160];
        mil_type_str(&t, s1, sizeof s1);
        mil_type_str(&ot, s2, sizeof s2);
        return derr(d, "const value is %s but its output is declared %s", s1, s2);
    }
    if (!mil_raw_const(f, name, po->outputs[0]->name, &t, c)) return derr(d, "%s", d->p->err.msg);
    return 0;
}

static int dec_op(Dec *d, MilFunction *f, const PbOp *po) {
    const char *name = NULL;
    d->op = po->type;
    if (po->base.n_unknown_fields)
        return derr(d, "op of type '%s' has nested blocks (control flow) or other unsupported fields", po->type);
    if (!*po->type) return derr(d, "an op has no type");
    for (size_t i = 0; i < po->n_attributes; i++) {
        const char *k = po->attributes[i]->key;
        if (!strcmp(k, "name")) {
            name = string_attr(d, po->attributes[i]->value, "attribute 'name'");
            if (!name) return -1;
        } else if (strcmp(k, "val") || strcmp(po->type, "const")) {
            return derr(d, "attribute '%s' is not supported (only 'name', and 'val' for const)", k);
        }
    }
    if (!name) return derr(d, "op of type '%s' has no 'name' attribute", po->type);
    d->op = name;
    if (!strcmp(po->type, "const")) return dec_const_op(d, f, po, name);
    if (po->n_inputs > 64) return derr(d, "too many inputs (%zu)", po->n_inputs);
    if (po->n_outputs > MIL_MAX_OUTPUTS) return derr(d, "too many outputs (%zu)", po->n_outputs);
    MilArg args[64];
    for (size_t i = 0; i < po->n_inputs; i++) {
        const PbInputsEntry *en = po->inputs[i];
        const PbArgument *a = en->value;
        if (!a || !a->n_arguments) return derr(d, "input '%s' has no bindings", en->key);
        if (a->n_arguments > 4096) return derr(d, "input '%s' has too many bindings", en->key);
        args[i].param = en->key;
        args[i].n = (int)a->n_arguments;
        args[i].vals = mil_alloc(d->p, sizeof(MilValue *) * a->n_arguments);
        for (size_t k = 0; k < a->n_arguments; k++) {
            const PbBinding *b = a->arguments[k];
            if (b->binding_case == CORE_ML__SPECIFICATION__MILSPEC__ARGUMENT__BINDING__BINDING_NAME) {
                MilValue *v = mil_lookup(f, b->name);
                if (!v) return derr(d, "input '%s' refers to '%s', which is not defined before this op", en->key, b->name);
                args[i].vals[k] = v;
            } else if (b->binding_case == CORE_ML__SPECIFICATION__MILSPEC__ARGUMENT__BINDING__BINDING_VALUE) {
                MilType t;
                MilConst *c;
                char what[160];
                snprintf(what, sizeof what, "inline value of input '%.100s'", en->key);
                if (dec_value(d, b->value, &t, &c, what) < 0) return -1;
                args[i].vals[k] = mil_raw_literal(d->p, &t, c);
            } else {
                return derr(d, "input '%s' has an empty binding", en->key);
            }
        }
    }
    const char *out_names[MIL_MAX_OUTPUTS];
    MilType out_types[MIL_MAX_OUTPUTS];
    for (size_t i = 0; i < po->n_outputs; i++) {
        out_names[i] = po->outputs[i]->name;
        if (dec_value_type(d, po->outputs[i]->type, &out_types[i], "output") < 0) return -1;
        if (out_types[i].kind == MIL_STATE) return derr(d, "output '%s' is a state", out_names[i]);
    }
    if (!mil_raw_op(f, po->type, name, (int)po->n_inputs, args, (int)po->n_outputs, out_names, out_types,
                    d->flags & PKG_OPEN_LENIENT))
        return err_set(d->e, "model.mlmodel: %s", d->p->err.msg);
    return 0;
}

static int dec_function(Dec *d, const char *name, const PbFunction *pf) {
    d->fn = name;
    d->op = NULL;
    if (mil_opset_level(pf->opset) < 0) return derr(d, "unknown opset '%s' (expected CoreML5 .. CoreML9)", pf->opset);
    MilFunction *f = mil_function_new(d->p, name, pf->opset);
    if (!f) return derr(d, "%s", d->p->err.msg);
    for (size_t i = 0; i < pf->n_inputs; i++) {
        MilType t;
        if (dec_value_type(d, pf->inputs[i]->type, &t, "function input") < 0) return -1;
        if (!mil_raw_input(f, pf->inputs[i]->name, &t)) return err_set(d->e, "model.mlmodel: %s", d->p->err.msg);
    }
    const PbBlock *b = NULL;
    for (size_t i = 0; i < pf->n_block_specializations; i++)
        if (!strcmp(pf->block_specializations[i]->key, pf->opset)) b = pf->block_specializations[i]->value;
    if (!b) return derr(d, "no block for its opset %s", pf->opset);
    if (b->n_inputs) return derr(d, "the function's block must not have inputs");
    for (size_t i = 0; i < b->n_operations; i++)
        if (dec_op(d, f, b->operations[i]) < 0) return -1;
    d->op = NULL;
    if (!b->n_outputs) return derr(d, "the block has no outputs");
    MilValue **outs = mil_alloc(d->p, sizeof *outs * b->n_outputs);
    for (size_t i = 0; i < b->n_outputs; i++) {
        outs[i] = mil_lookup(f, b->outputs[i]);
        if (!outs[i]) return derr(d, "output '%s' is not defined in the function", b->outputs[i]);
    }
    if (mil_set_outputs(f, (int)b->n_outputs, outs) < 0) return err_set(d->e, "model.mlmodel: %s", d->p->err.msg);
    return 0;
}

/* ==== Description ==== */

static MilDType array_mil_dtype(int pb) {
    switch (pb) {
    case PB_ARRAY_FLOAT16: return MIL_FP16;
    case PB_ARRAY_FLOAT32: return MIL_FP32;
    case PB_ARRAY_INT32: return MIL_INT32;
    case PB_ARRAY_INT8: return MIL_INT8;
    case PB_ARRAY_DOUBLE: return MIL_FP64;
    default: return MIL_DT_INVALID;
    }
}

static int dec_shape(Dec *d, size_t n, const int64_t *dims, PkgShape *s, const char *what) {
    if (n > MIL_MAX_RANK) return derr(d, "%s has a shape of rank %zu, too large", what, n);
    s->rank = (int)n;
    for (size_t i = 0; i < n; i++) {
        if (dims[i] < 0 || dims[i] > MAX_DIM) return derr(d, "%s has invalid shape value %lld", what, (long long)dims[i]);
        s->dims[i] = dims[i];
    }
    return 0;
}

static int dec_array(Dec *d, const PbArrayType *a, PkgFeature *f, const char *what) {
    f->dtype = array_mil_dtype((int)a->datatype);
    if (dec_shape(d, a->n_shape, a->shape, &f->shape, what) < 0) return -1;
    if (a->shape_flexibility_case == CORE_ML__SPECIFICATION__ARRAY_FEATURE_TYPE__SHAPE_FLEXIBILITY_ENUMERATED_SHAPES) {
        const PbEnumShapes *es = a->enumeratedshapes;
        if (es->n_shapes > 4096) return derr(d, "%s has too many enumerated shapes", what);
        PkgShape *shapes = mil_alloc(d->p, sizeof *shapes * (es->n_shapes ? es->n_shapes : 1));
        for (size_t i = 0; i < es->n_shapes; i++)
            if (dec_shape(d, es->shapes[i]->n_shape, es->shapes[i]->shape, &shapes[i], what) < 0) return -1;
        f->n_enum = (int)es->n_shapes;
        f->enum_shapes = shapes;
    } else if (a->shape_flexibility_case == CORE_ML__SPECIFICATION__ARRAY_FEATURE_TYPE__SHAPE_FLEXIBILITY_SHAPE_RANGE) {
        const CoreML__Specification__ArrayFeatureType__ShapeRange *r = a->shaperange;
        if (r->n_sizeranges > MIL_MAX_RANK) return derr(d, "%s has too many shape ranges", what);
        int64_t *lo = mil_alloc(d->p, sizeof *lo * (r->n_sizeranges + 1)), *hi = mil_alloc(d->p, sizeof *hi * (r->n_sizeranges + 1));
        for (size_t i = 0; i < r->n_sizeranges; i++) {
            lo[i] = (int64_t)(r->sizeranges[i]->lowerbound > (uint64_t)MAX_DIM ? MAX_DIM : r->sizeranges[i]->lowerbound);
            hi[i] = r->sizeranges[i]->upperbound;
        }
        f->n_range = (int)r->n_sizeranges;
        f->range_lower = lo;
        f->range_upper = hi;
    }
    return 0;
}

static int dec_feature(Dec *d, const PbFeature *pf, PkgFeature *f) {
    char what[300];
    snprintf(what, sizeof what, "description of feature '%.200s'", pf->name);
    memset(f, 0, sizeof *f);
    f->name = dstr(d, pf->name);
    if (*pf->shortdescription) f->short_description = dstr(d, pf->shortdescription);
    const PbFeatureType *t = pf->type;
    if (!t) return derr(d, "%s has no type", what);
    f->optional = t->isoptional;
    switch (t->type_case) {
    case CORE_ML__SPECIFICATION__FEATURE_TYPE__TYPE_MULTI_ARRAY_TYPE:
        f->kind = PKG_FEATURE_ARRAY;
        return dec_array(d, t->multiarraytype, f, what);
    case CORE_ML__SPECIFICATION__FEATURE_TYPE__TYPE_STATE_TYPE:
        f->kind = PKG_FEATURE_STATE;
        if (t->statetype->type_case != CORE_ML__SPECIFICATION__STATE_FEATURE_TYPE__TYPE_ARRAY_TYPE)
            return derr(d, "%s is a state without an array type", what);
        return dec_array(d, t->statetype->arraytype, f, what);
    default:
        f->kind = PKG_FEATURE_OTHER;
        return 0;
    }
}

static int dec_features(Dec *d, size_t n, PbFeature *const *pf, const PkgFeature **out, int *count) {
    if (n > 100000) return derr(d, "too many features in the description");
    PkgFeature *fs = mil_alloc(d->p, sizeof *fs * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        if (dec_feature(d, pf[i], &fs[i]) < 0) return -1;
    *out = fs;
    *count = (int)n;
    return 0;
}

static int dec_metadata(Dec *d, const PbMetadata *m, PkgMetadata *out) {
    memset(out, 0, sizeof *out);
    if (!m) return 0;
    if (*m->shortdescription) out->short_description = dstr(d, m->shortdescription);
    if (*m->versionstring) out->version_string = dstr(d, m->versionstring);
    if (*m->author) out->author = dstr(d, m->author);
    if (*m->license) out->license = dstr(d, m->license);
    PkgKeyValue *kv = mil_alloc(d->p, sizeof *kv * (m->n_userdefined ? m->n_userdefined : 1));
    for (size_t i = 0; i < m->n_userdefined; i++) {
        kv[i].key = dstr(d, m->userdefined[i]->key);
        kv[i].value = dstr(d, m->userdefined[i]->value);
    }
    out->n_user = (int)m->n_userdefined;
    out->user = kv;
    return 0;
}

static int dec_description(Dec *d, const PbModelDesc *md, PkgDescription *out) {
    memset(out, 0, sizeof *out);
    if (!md) return derr(d, "the model has no description");
    if (md->n_functions || *md->defaultfunctionname) {
        if (md->n_input || md->n_output || md->n_state)
            return derr(d, "a multifunction description must not use top-level input/output/state");
        if (md->n_functions > 10000) return derr(d, "too many functions");
        PkgFunctionDesc *fs = mil_alloc(d->p, sizeof *fs * (md->n_functions ? md->n_functions : 1));
        for (size_t i = 0; i < md->n_functions; i++) {
            const PbFuncDesc *pf = md->functions[i];
            fs[i].name = dstr(d, pf->name);
            if (dec_features(d, pf->n_input, pf->input, &fs[i].inputs, &fs[i].n_inputs) < 0 ||
                dec_features(d, pf->n_output, pf->output, &fs[i].outputs, &fs[i].n_outputs) < 0 ||
                dec_features(d, pf->n_state, pf->state, &fs[i].states, &fs[i].n_states) < 0)
                return -1;
        }
        out->multifunction = 1;
        out->n_functions = (int)md->n_functions;
        out->functions = fs;
        out->default_function = dstr(d, md->defaultfunctionname);
    } else {
        PkgFunctionDesc *fs = mil_alloc(d->p, sizeof *fs);
        if (dec_features(d, md->n_input, md->input, &fs->inputs, &fs->n_inputs) < 0 ||
            dec_features(d, md->n_output, md->output, &fs->outputs, &fs->n_outputs) < 0 ||
            dec_features(d, md->n_state, md->state, &fs->states, &fs->n_states) < 0)
            return -1;
        out->n_functions = 1;
        out->functions = fs;
    }
    return dec_metadata(d, md->metadata, &out->metadata);
}

/* ==== Program ==== */

static const PbFunction *find_pb_function(const PbProgram *pp, const char *name) {
    for (size_t i = 0; i < pp->n_functions; i++)
        if (!strcmp(pp->functions[i]->key, name)) return pp->functions[i]->value;
    return NULL;
}

static int dec_program(Dec *d, const PbProgram *pp, PkgDescription *desc) {
    if (pp->version != 1) return derr(d, "program version %lld; only version 1 exists", (long long)pp->version);
    if (!pp->n_functions) return derr(d, "the program has no functions");
    for (size_t i = 0; i < pp->n_functions; i++) {
        if (!pp->functions[i]->value) return derr(d, "function '%s' is empty", pp->functions[i]->key);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(pp->functions[i]->key, pp->functions[j]->key))
                return derr(d, "function '%s' is defined twice", pp->functions[i]->key);
    }
    if (desc->multifunction) {
        /* in the description's order, which is the order users see */
        if ((size_t)desc->n_functions != pp->n_functions)
            return derr(d, "the description lists %d functions, the program has %zu", desc->n_functions, pp->n_functions);
        for (int i = 0; i < desc->n_functions; i++) {
            const PbFunction *pf = find_pb_function(pp, desc->functions[i].name);
            if (!pf) return derr(d, "function '%s' of the description is not in the program", desc->functions[i].name);
            if (dec_function(d, desc->functions[i].name, pf) < 0) return -1;
        }
        mil_program_set_default_function(d->p, desc->default_function);
    } else {
        const PbFunction *pf = find_pb_function(pp, "main");
        if (!pf || pp->n_functions != 1)
            return derr(d, "a single-function model must have exactly one MIL function, named 'main'");
        if (dec_function(d, "main", pf) < 0) return -1;
        ((PkgFunctionDesc *)desc->functions)[0].name = d->p->functions[0]->name;
    }
    d->fn = d->op = NULL;
    return 0;
}

int cml_decode(const uint8_t *buf, size_t len, CmlBlobOpen resolve, void *ctx, unsigned flags, MilProgram **prog,
               PkgDescription *desc, int *spec, Err *e) {
    *prog = NULL;
    PbModel *m = core_ml__specification__model__unpack(NULL, len, buf);
    if (!m) return err_set(e, "model.mlmodel: not a valid Core ML model protobuf (%zu bytes)", len);
    Dec d = {mil_program_new(), resolve, ctx, flags, e, NULL, NULL};
    int rc = -1;
    if (m->type_case != CORE_ML__SPECIFICATION__MODEL__TYPE_ML_PROGRAM) {
        derr(&d, "not an ML Program model (neural networks, pipelines and other kinds are not supported)");
        goto out;
    }
    if (m->specificationversion < 6) {
        derr(&d, "specification version %d; ML Programs need 6 or later", m->specificationversion);
        goto out;
    }
    *spec = m->specificationversion;
    if (dec_description(&d, m->description, desc) < 0 || dec_program(&d, m->mlprogram, desc) < 0) goto out;
    rc = 0;
out:
    core_ml__specification__model__free_unpacked(m, NULL);
    if (rc < 0) {
        mil_program_free(d.p);
        memset(desc, 0, sizeof *desc);
        return -1;
    }
    *prog = d.p;
    return 0;
}
