/* proto_write.c - a MIL program and its description as a CoreML.Specification.Model protobuf
 * (model.mlmodel), the way coremltools' MILProtoExporter writes it:
 *  - Program{version 1, functions{name: Function{inputs, opset, block_specializations{opset: Block}}}}
 *  - const ops: attributes {name, val}, no inputs; val immediate below 10 elements, else a blob
 *  - other ops: inputs bound by name (literals inline), attributes {name} only
 *  - maps written sorted by key, so the same program always gives the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "coreml/internal.h"
#include "coreml/pb.h"
#include "mil/ops.h"

typedef struct Enc {
    PbPool pool;
    const MilProgram *prog;
    int spec;
    CmlBlobPlace place;
    void *ctx;
    Err *e;
} Enc;

static char *pstr(Enc *c, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = pb_alloc(&c->pool, n);
    memcpy(d, s, n);
    return d;
}

/* ==== Types ==== */

static PbTensorType *enc_tensor_type(Enc *c, const MilType *t) {
    PbTensorType *tt = PB_NEW(&c->pool, PbTensorType, core_ml__specification__milspec__tensor_type__init);
    tt->datatype = (CoreML__Specification__MILSpec__DataType)t->dtype;
    tt->rank = t->rank;
    tt->n_dimensions = (size_t)t->rank;
    tt->dimensions = pb_alloc(&c->pool, sizeof(PbDim *) * (size_t)(t->rank ? t->rank : 1));
    for (int i = 0; i < t->rank; i++) {
        PbDim *d = PB_NEW(&c->pool, PbDim, core_ml__specification__milspec__dimension__init);
        if (t->dims[i] >= 0) {
            d->dimension_case = CORE_ML__SPECIFICATION__MILSPEC__DIMENSION__DIMENSION_CONSTANT;
            d->constant = PB_NEW(&c->pool, PbDimConst, core_ml__specification__milspec__dimension__constant_dimension__init);
            d->constant->size = (uint64_t)t->dims[i];
        } else {
            /* an unknown (non-variadic) dim is an empty UnknownDimension, which must still be written */
            d->dimension_case = CORE_ML__SPECIFICATION__MILSPEC__DIMENSION__DIMENSION_UNKNOWN;
            d->unknown = PB_NEW(&c->pool, PbDimUnknown, core_ml__specification__milspec__dimension__unknown_dimension__init);
        }
        tt->dimensions[i] = d;
    }
    return tt;
}

static PbValueType *enc_value_type(Enc *c, const MilType *t) {
    PbValueType *vt = PB_NEW(&c->pool, PbValueType, core_ml__specification__milspec__value_type__init);
    if (t->kind == MIL_STATE) {
        vt->type_case = CORE_ML__SPECIFICATION__MILSPEC__VALUE_TYPE__TYPE_STATE_TYPE;
        vt->statetype = PB_NEW(&c->pool, PbStateType, core_ml__specification__milspec__state_type__init);
        PbWrapped *w = PB_NEW(&c->pool, PbWrapped, core_ml__specification__milspec__state_wrapped_type__init);
        MilType inner = *t;
        inner.kind = MIL_TENSOR;
        w->type_case = CORE_ML__SPECIFICATION__MILSPEC__STATE_WRAPPED_TYPE__TYPE_TENSOR_TYPE;
        w->tensortype = enc_tensor_type(c, &inner);
        vt->statetype->wrappedtype = w;
    } else {
        vt->type_case = CORE_ML__SPECIFICATION__MILSPEC__VALUE_TYPE__TYPE_TENSOR_TYPE;
        vt->tensortype = enc_tensor_type(c, t);
    }
    return vt;
}

static PbNamedType *enc_named(Enc *c, const char *name, const MilType *t) {
    PbNamedType *n = PB_NEW(&c->pool, PbNamedType, core_ml__specification__milspec__named_value_type__init);
    n->name = pstr(c, name);
    n->type = enc_value_type(c, t);
    return n;
}

/* ==== Values ==== */

static PbTensorValue *enc_tensor_value(Enc *c, const MilValue *v) {
    const MilType *t = &v->type;
    const MilConst *k = v->data;
    int64_t numel = mil_type_numel(t);
    PbTensorValue *tv = PB_NEW(&c->pool, PbTensorValue, core_ml__specification__milspec__tensor_value__init);
    const uint8_t *b = mil_const_bytes(k);
    if (t->dtype != MIL_STRING && numel > 0 && !b) {
        err_set(c->e, "const data of '%s' is not in memory", v->name ? v->name : "(literal)");
        return NULL;
    }
    switch (t->dtype) {
    case MIL_FP32: {
        tv->value_case = CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_FLOATS;
        tv->floats = PB_NEW(&c->pool, CoreML__Specification__MILSpec__TensorValue__RepeatedFloats,
                            core_ml__specification__milspec__tensor_value__repeated_floats__init);
        tv->floats->n_values = (size_t)numel;
        tv->floats->values = pb_alloc(&c->pool, 4 * (size_t)(numel ? numel : 1));
        if (numel) memcpy(tv->floats->values, b, 4 * (size_t)numel);
        break;
    }
    case MIL_FP64: {
        tv->value_case = CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_DOUBLES;
        tv->doubles = PB_NEW(&c->pool, CoreML__Specification__MILSpec__TensorValue__RepeatedDoubles,
                             core_ml__specification__milspec__tensor_value__repeated_doubles__init);
        tv->doubles->n_values = (size_t)numel;
        tv->doubles->values = pb_alloc(&c->pool, 8 * (size_t)(numel ? numel : 1));
        if (numel) memcpy(tv->doubles->values, b, 8 * (size_t)numel);
        break;
    }
    case MIL_INT32: case MIL_INT16: case MIL_UINT16: {
        tv->value_case = CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_INTS;
        tv->ints = PB_NEW(&c->pool, CoreML__Specification__MILSpec__TensorValue__RepeatedInts,
                          core_ml__specification__milspec__tensor_value__repeated_ints__init);
        tv->ints->n_values = (size_t)numel;
        tv->ints->values = pb_alloc(&c->pool, 4 * (size_t)(numel ? numel : 1));
        for (int64_t i = 0; i < numel; i++) {
            int32_t x;
            if (t->dtype == MIL_INT32) memcpy(&x, b + 4 * i, 4);
            else if (t->dtype == MIL_INT16) { int16_t s; memcpy(&s, b + 2 * i, 2); x = s; }
            else { uint16_t u; memcpy(&u, b + 2 * i, 2); x = u; }
            tv->ints->values[i] = x;
        }
        break;
    }
    case MIL_INT64: case MIL_UINT64: {
        tv->value_case = CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_LONG_INTS;
        tv->longints = PB_NEW(&c->pool, CoreML__Specification__MILSpec__TensorValue__RepeatedLongInts,
                              core_ml__specification__milspec__tensor_value__repeated_long_ints__init);
        tv->longints->n_values = (size_t)numel;
        tv->longints->values = pb_alloc(&c->pool, 8 * (size_t)(numel ? numel : 1));
        if (numel) memcpy(tv->longints->values, b, 8 * (size_t)numel);
        break;
    }
    case MIL_BOOL: {
        tv->value_case = CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_BOOLS;
        tv->bools = PB_NEW(&c->pool, CoreML__Specification__MILSpec__TensorValue__RepeatedBools,
                           core_ml__specification__milspec__tensor_value__repeated_bools__init);
        tv->bools->n_values = (size_t)numel;
        tv->bools->values = pb_alloc(&c->pool, sizeof(protobuf_c_boolean) * (size_t)(numel ? numel : 1));
        for (int64_t i = 0; i < numel; i++) tv->bools->values[i] = b[i] != 0;
        break;
    }
    case MIL_STRING: {
        tv->value_case = CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_STRINGS;
        tv->strings = PB_NEW(&c->pool, CoreML__Specification__MILSpec__TensorValue__RepeatedStrings,
                             core_ml__specification__milspec__tensor_value__repeated_strings__init);
        tv->strings->n_values = (size_t)numel;
        tv->strings->values = pb_alloc(&c->pool, sizeof(char *) * (size_t)(numel ? numel : 1));
        for (int64_t i = 0; i < numel; i++) tv->strings->values[i] = pstr(c, k->strs[i]);
        break;
    }
    case MIL_FP16: case MIL_INT8: case MIL_UINT8: case MIL_UINT32: case MIL_INT4: case MIL_UINT1:
    case MIL_UINT2: case MIL_UINT3: case MIL_UINT4: case MIL_UINT6: {
        tv->value_case = CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_BYTES;
        tv->bytes = PB_NEW(&c->pool, CoreML__Specification__MILSpec__TensorValue__RepeatedBytes,
                           core_ml__specification__milspec__tensor_value__repeated_bytes__init);
        tv->bytes->values.len = (size_t)k->nbytes;
        tv->bytes->values.data = pb_alloc(&c->pool, (size_t)k->nbytes);
        if (k->nbytes) memcpy(tv->bytes->values.data, b, (size_t)k->nbytes);
        break;
    }
    default:
        err_set(c->e, "const '%s': dtype %s cannot be written as an immediate value", v->name ? v->name : "(literal)",
                mil_dtype_name(t->dtype));
        return NULL;
    }
    return tv;
}

/* A const's data as a Value: a blob reference or an immediate tensor. */
static PbValue *enc_const_value(Enc *c, const MilValue *v) {
    PbValue *pv = PB_NEW(&c->pool, PbValue, core_ml__specification__milspec__value__init);
    pv->type = enc_value_type(c, &v->type);
    const MilConst *k = v->data;
    int blob = k->kind == MIL_CONST_BLOB || mil_should_use_blob(v->type.dtype, mil_type_numel(&v->type), c->spec);
    if (blob) {
        uint64_t off;
        if (c->place(c->ctx, v, &off, c->e) < 0) return NULL;
        pv->value_case = CORE_ML__SPECIFICATION__MILSPEC__VALUE__VALUE_BLOB_FILE_VALUE;
        pv->blobfilevalue = PB_NEW(&c->pool, PbBlobFile, core_ml__specification__milspec__value__blob_file_value__init);
        pv->blobfilevalue->filename = pstr(c, PKG_WEIGHT_PATH);
        pv->blobfilevalue->offset = off;
        return pv;
    }
    pv->value_case = CORE_ML__SPECIFICATION__MILSPEC__VALUE__VALUE_IMMEDIATE_VALUE;
    pv->immediatevalue = PB_NEW(&c->pool, PbImmediate, core_ml__specification__milspec__value__immediate_value__init);
    pv->immediatevalue->value_case = CORE_ML__SPECIFICATION__MILSPEC__VALUE__IMMEDIATE_VALUE__VALUE_TENSOR;
    pv->immediatevalue->tensor = enc_tensor_value(c, v);
    return pv->immediatevalue->tensor ? pv : NULL;
}

static PbValue *enc_string_value(Enc *c, const char *s) {
    PbValue *pv = PB_NEW(&c->pool, PbValue, core_ml__specification__milspec__value__init);
    MilType t = mil_tensor_type(MIL_STRING, 0, NULL);
    pv->type = enc_value_type(c, &t);
    pv->value_case = CORE_ML__SPECIFICATION__MILSPEC__VALUE__VALUE_IMMEDIATE_VALUE;
    pv->immediatevalue = PB_NEW(&c->pool, PbImmediate, core_ml__specification__milspec__value__immediate_value__init);
    pv->immediatevalue->value_case = CORE_ML__SPECIFICATION__MILSPEC__VALUE__IMMEDIATE_VALUE__VALUE_TENSOR;
    PbTensorValue *tv = PB_NEW(&c->pool, PbTensorValue, core_ml__specification__milspec__tensor_value__init);
    tv->value_case = CORE_ML__SPECIFICATION__MILSPEC__TENSOR_VALUE__VALUE_STRINGS;
    tv->strings = PB_NEW(&c->pool, CoreML__Specification__MILSpec__TensorValue__RepeatedStrings,
                         core_ml__specification__milspec__tensor_value__repeated_strings__init);
    tv->strings->n_values = 1;
    tv->strings->values = pb_alloc(&c->pool, sizeof(char *));
    tv->strings->values[0] = pstr(c, s);
    pv->immediatevalue->tensor = tv;
    return pv;
}

/* ==== Ops ==== */

static PbAttrEntry *enc_attr(Enc *c, const char *key, PbValue *v) {
    PbAttrEntry *a = PB_NEW(&c->pool, PbAttrEntry, core_ml__specification__milspec__operation__attributes_entry__init);
    a->key = pstr(c, key);
    a->value = v;
    return a;
}

static int cmp_input_entry(const void *a, const void *b) {
    return strcmp((*(PbInputsEntry *const *)a)->key, (*(PbInputsEntry *const *)b)->key);
}

static PbOp *enc_op(Enc *c, const MilOp *op) {
    PbOp *po = PB_NEW(&c->pool, PbOp, core_ml__specification__milspec__operation__init);
    po->type = pstr(c, op->type);
    int is_const = op->def && op->def->id == MIL_OP_CONST;
    /* attributes: "name", plus "val" for consts (sorted by key) */
    po->n_attributes = is_const ? 2 : 1;
    po->attributes = pb_alloc(&c->pool, sizeof(PbAttrEntry *) * 2);
    po->attributes[0] = enc_attr(c, "name", enc_string_value(c, op->name));
    if (is_const) {
        PbValue *val = enc_const_value(c, op->outputs[0]);
        if (!val) return NULL;
        po->attributes[1] = enc_attr(c, "val", val);
    }
    int n_in = 0;
    for (int i = 0; i < op->n_args; i++) n_in += op->args[i].n > 0;
    po->inputs = pb_alloc(&c->pool, sizeof(PbInputsEntry *) * (size_t)(n_in ? n_in : 1));
    for (int i = 0; i < op->n_args; i++) {
        const MilArg *a = &op->args[i];
        if (!a->n) continue;
        PbInputsEntry *en = PB_NEW(&c->pool, PbInputsEntry, core_ml__specification__milspec__operation__inputs_entry__init);
        en->key = pstr(c, a->param);
        en->value = PB_NEW(&c->pool, PbArgument, core_ml__specification__milspec__argument__init);
        en->value->n_arguments = (size_t)a->n;
        en->value->arguments = pb_alloc(&c->pool, sizeof(PbBinding *) * (size_t)a->n);
        for (int k = 0; k < a->n; k++) {
            PbBinding *bd = PB_NEW(&c->pool, PbBinding, core_ml__specification__milspec__argument__binding__init);
            const MilValue *v = a->vals[k];
            if (v->name) {
                bd->binding_case = CORE_ML__SPECIFICATION__MILSPEC__ARGUMENT__BINDING__BINDING_NAME;
                bd->name = pstr(c, v->name);
            } else {
                bd->binding_case = CORE_ML__SPECIFICATION__MILSPEC__ARGUMENT__BINDING__BINDING_VALUE;
                bd->value = enc_const_value(c, v);
                if (!bd->value) return NULL;
            }
            en->value->arguments[k] = bd;
        }
        po->inputs[po->n_inputs++] = en;
    }
    qsort(po->inputs, po->n_inputs, sizeof po->inputs[0], cmp_input_entry);
    po->n_outputs = (size_t)op->n_outputs;
    po->outputs = pb_alloc(&c->pool, sizeof(PbNamedType *) * (size_t)(op->n_outputs ? op->n_outputs : 1));
    for (int i = 0; i < op->n_outputs; i++) po->outputs[i] = enc_named(c, op->outputs[i]->name, &op->outputs[i]->type);
    return po;
}

static PbFunction *enc_function(Enc *c, const MilFunction *f) {
    PbFunction *pf = PB_NEW(&c->pool, PbFunction, core_ml__specification__milspec__function__init);
    pf->n_inputs = (size_t)f->n_inputs;
    pf->inputs = pb_alloc(&c->pool, sizeof(PbNamedType *) * (size_t)(f->n_inputs ? f->n_inputs : 1));
    for (int i = 0; i < f->n_inputs; i++) pf->inputs[i] = enc_named(c, f->inputs[i]->name, &f->inputs[i]->type);
    pf->opset = pstr(c, f->opset);
    PbBlock *b = PB_NEW(&c->pool, PbBlock, core_ml__specification__milspec__block__init);
    b->n_outputs = (size_t)f->n_outputs;
    b->outputs = pb_alloc(&c->pool, sizeof(char *) * (size_t)(f->n_outputs ? f->n_outputs : 1));
    for (int i = 0; i < f->n_outputs; i++) b->outputs[i] = pstr(c, f->outputs[i]->name);
    b->n_operations = (size_t)f->n_ops;
    b->operations = pb_alloc(&c->pool, sizeof(PbOp *) * (size_t)(f->n_ops ? f->n_ops : 1));
    for (int i = 0; i < f->n_ops; i++) {
        b->operations[i] = enc_op(c, f->ops[i]);
        if (!b->operations[i]) {
            err_wrap(c->e, "function '%s', op '%s'", f->name, f->ops[i]->name);
            return NULL;
        }
    }
    PbBlockEntry *be = PB_NEW(&c->pool, PbBlockEntry, core_ml__specification__milspec__function__block_specializations_entry__init);
    be->key = pstr(c, f->opset);
    be->value = b;
    pf->n_block_specializations = 1;
    pf->block_specializations = pb_alloc(&c->pool, sizeof(PbBlockEntry *));
    pf->block_specializations[0] = be;
    return pf;
}

static int cmp_fn_name(const void *a, const void *b) {
    return strcmp((*(const MilFunction *const *)a)->name, (*(const MilFunction *const *)b)->name);
}

/* ==== Description ==== */

static int array_dtype(MilDType dt) {
    switch (dt) {
    case MIL_FP16: return PB_ARRAY_FLOAT16;
    case MIL_FP32: return PB_ARRAY_FLOAT32;
    case MIL_INT32: return PB_ARRAY_INT32;
    case MIL_INT8: return PB_ARRAY_INT8;
    case MIL_FP64: return PB_ARRAY_DOUBLE;
    default: return 0;
    }
}

static PbArrayType *enc_array(Enc *c, const PkgFeature *f) {
    PbArrayType *a = PB_NEW(&c->pool, PbArrayType, core_ml__specification__array_feature_type__init);
    a->n_shape = (size_t)f->shape.rank;
    a->shape = pb_alloc(&c->pool, sizeof(int64_t) * (size_t)(f->shape.rank ? f->shape.rank : 1));
    memcpy(a->shape, f->shape.dims, sizeof(int64_t) * (size_t)f->shape.rank);
    a->datatype = (CoreML__Specification__ArrayFeatureType__ArrayDataType)array_dtype(f->dtype);
    if (f->n_enum) {
        a->shape_flexibility_case = CORE_ML__SPECIFICATION__ARRAY_FEATURE_TYPE__SHAPE_FLEXIBILITY_ENUMERATED_SHAPES;
        a->enumeratedshapes = PB_NEW(&c->pool, PbEnumShapes, core_ml__specification__array_feature_type__enumerated_shapes__init);
        a->enumeratedshapes->n_shapes = (size_t)f->n_enum;
        a->enumeratedshapes->shapes = pb_alloc(&c->pool, sizeof(PbShape *) * (size_t)f->n_enum);
        for (int i = 0; i < f->n_enum; i++) {
            PbShape *s = PB_NEW(&c->pool, PbShape, core_ml__specification__array_feature_type__shape__init);
            s->n_shape = (size_t)f->enum_shapes[i].rank;
            s->shape = pb_alloc(&c->pool, sizeof(int64_t) * (size_t)(s->n_shape ? s->n_shape : 1));
            memcpy(s->shape, f->enum_shapes[i].dims, sizeof(int64_t) * s->n_shape);
            a->enumeratedshapes->shapes[i] = s;
        }
    }
    return a;
}

static PbFeature *enc_feature(Enc *c, const PkgFeature *f) {
    PbFeature *pf = PB_NEW(&c->pool, PbFeature, core_ml__specification__feature_description__init);
    pf->name = pstr(c, f->name);
    if (f->short_description) pf->shortdescription = pstr(c, f->short_description);
    pf->type = PB_NEW(&c->pool, PbFeatureType, core_ml__specification__feature_type__init);
    if (f->kind == PKG_FEATURE_STATE) {
        pf->type->type_case = CORE_ML__SPECIFICATION__FEATURE_TYPE__TYPE_STATE_TYPE;
        pf->type->statetype = PB_NEW(&c->pool, PbStateFeature, core_ml__specification__state_feature_type__init);
        pf->type->statetype->type_case = CORE_ML__SPECIFICATION__STATE_FEATURE_TYPE__TYPE_ARRAY_TYPE;
        pf->type->statetype->arraytype = enc_array(c, f);
    } else {
        pf->type->type_case = CORE_ML__SPECIFICATION__FEATURE_TYPE__TYPE_MULTI_ARRAY_TYPE;
        pf->type->multiarraytype = enc_array(c, f);
    }
    pf->type->isoptional = f->optional != 0;
    return pf;
}

static PbFeature **enc_features(Enc *c, int n, const PkgFeature *fs, size_t *count) {
    PbFeature **out = pb_alloc(&c->pool, sizeof(PbFeature *) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        if (fs[i].kind == PKG_FEATURE_OTHER) {
            err_set(c->e, "feature '%s' has a type other than multi-array or state, which cannot be written", fs[i].name);
            return NULL;
        }
        out[i] = enc_feature(c, &fs[i]);
    }
    *count = (size_t)n;
    return out;
}

static int cmp_user(const void *a, const void *b) {
    return strcmp((*(PbUserEntry *const *)a)->key, (*(PbUserEntry *const *)b)->key);
}

static PbMetadata *enc_metadata(Enc *c, const PkgMetadata *m) {
    if (!m->short_description && !m->version_string && !m->author && !m->license && !m->n_user) return NULL;
    PbMetadata *pm = PB_NEW(&c->pool, PbMetadata, core_ml__specification__metadata__init);
    if (m->short_description) pm->shortdescription = pstr(c, m->short_description);
    if (m->version_string) pm->versionstring = pstr(c, m->version_string);
    if (m->author) pm->author = pstr(c, m->author);
    if (m->license) pm->license = pstr(c, m->license);
    pm->n_userdefined = (size_t)m->n_user;
    pm->userdefined = pb_alloc(&c->pool, sizeof(PbUserEntry *) * (size_t)(m->n_user ? m->n_user : 1));
    for (int i = 0; i < m->n_user; i++) {
        PbUserEntry *u = PB_NEW(&c->pool, PbUserEntry, core_ml__specification__metadata__user_defined_entry__init);
        u->key = pstr(c, m->user[i].key);
        u->value = pstr(c, m->user[i].value);
        pm->userdefined[i] = u;
    }
    qsort(pm->userdefined, pm->n_userdefined, sizeof pm->userdefined[0], cmp_user);
    return pm;
}

static PbModelDesc *enc_description(Enc *c, const PkgDescription *d) {
    PbModelDesc *md = PB_NEW(&c->pool, PbModelDesc, core_ml__specification__model_description__init);
    if (d->multifunction) {
        md->n_functions = (size_t)d->n_functions;
        md->functions = pb_alloc(&c->pool, sizeof(PbFuncDesc *) * (size_t)(d->n_functions ? d->n_functions : 1));
        for (int i = 0; i < d->n_functions; i++) {
            const PkgFunctionDesc *fd = &d->functions[i];
            PbFuncDesc *pf = PB_NEW(&c->pool, PbFuncDesc, core_ml__specification__function_description__init);
            pf->name = pstr(c, fd->name);
            pf->input = enc_features(c, fd->n_inputs, fd->inputs, &pf->n_input);
            pf->output = enc_features(c, fd->n_outputs, fd->outputs, &pf->n_output);
            pf->state = enc_features(c, fd->n_states, fd->states, &pf->n_state);
            if (!pf->input || !pf->output || !pf->state) return NULL;
            md->functions[i] = pf;
        }
        md->defaultfunctionname = pstr(c, d->default_function);
    } else {
        const PkgFunctionDesc *fd = &d->functions[0];
        md->input = enc_features(c, fd->n_inputs, fd->inputs, &md->n_input);
        md->output = enc_features(c, fd->n_outputs, fd->outputs, &md->n_output);
        md->state = enc_features(c, fd->n_states, fd->states, &md->n_state);
        if (!md->input || !md->output || !md->state) return NULL;
    }
    md->metadata = enc_metadata(c, &d->metadata);
    return md;
}

/* ==== Model ==== */

int cml_encode(const MilProgram *p, const PkgDescription *d, int spec, CmlBlobPlace place, void *ctx,
               uint8_t **out, size_t *len, Err *e) {
    *out = NULL;
    *len = 0;
    Enc c = {{0}, p, spec, place, ctx, e};
    PbModel *m = PB_NEW(&c.pool, PbModel, core_ml__specification__model__init);
    m->specificationversion = spec;
    m->description = enc_description(&c, d);
    if (!m->description) {
        pb_pool_free(&c.pool);
        return -1;
    }
    PbProgram *pp = PB_NEW(&c.pool, PbProgram, core_ml__specification__milspec__program__init);
    pp->version = 1;
    /* functions map sorted by name */
    const MilFunction **fns = pb_alloc(&c.pool, sizeof *fns * (size_t)p->n_functions);
    memcpy(fns, p->functions, sizeof *fns * (size_t)p->n_functions);
    qsort(fns, (size_t)p->n_functions, sizeof *fns, cmp_fn_name);
    pp->n_functions = (size_t)p->n_functions;
    pp->functions = pb_alloc(&c.pool, sizeof(PbFunctionsEntry *) * (size_t)p->n_functions);
    for (int i = 0; i < p->n_functions; i++) {
        PbFunctionsEntry *fe = PB_NEW(&c.pool, PbFunctionsEntry, core_ml__specification__milspec__program__functions_entry__init);
        fe->key = pstr(&c, fns[i]->name);
        fe->value = enc_function(&c, fns[i]);
        if (!fe->value) {
            pb_pool_free(&c.pool);
            return -1;
        }
        pp->functions[i] = fe;
    }
    m->type_case = CORE_ML__SPECIFICATION__MODEL__TYPE_ML_PROGRAM;
    m->mlprogram = pp;
    size_t n = core_ml__specification__model__get_packed_size(m);
    uint8_t *buf = xmalloc(n);
    size_t w = core_ml__specification__model__pack(m, buf);
    AN_ASSERT(w == n);
    pb_pool_free(&c.pool);
    *out = buf;
    *len = n;
    return 0;
}
