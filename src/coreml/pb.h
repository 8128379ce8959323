/* pb.h - short names for the protobuf-c types generated from proto/mil_subset.proto and
 * proto/model_subset.proto, and a small allocation pool for building messages. Internal to
 * the coreml module. */
#ifndef ANEMLL_COREML_PB_H
#define ANEMLL_COREML_PB_H

#include <stdlib.h>

#include "common/util.h"
#include "coreml/model_subset.pb-c.h"

typedef CoreML__Specification__Model PbModel;
typedef CoreML__Specification__ModelDescription PbModelDesc;
typedef CoreML__Specification__FunctionDescription PbFuncDesc;
typedef CoreML__Specification__FeatureDescription PbFeature;
typedef CoreML__Specification__FeatureType PbFeatureType;
typedef CoreML__Specification__ArrayFeatureType PbArrayType;
typedef CoreML__Specification__ArrayFeatureType__Shape PbShape;
typedef CoreML__Specification__ArrayFeatureType__EnumeratedShapes PbEnumShapes;
typedef CoreML__Specification__StateFeatureType PbStateFeature;
typedef CoreML__Specification__Metadata PbMetadata;
typedef CoreML__Specification__Metadata__UserDefinedEntry PbUserEntry;

typedef CoreML__Specification__MILSpec__Program PbProgram;
typedef CoreML__Specification__MILSpec__Program__FunctionsEntry PbFunctionsEntry;
typedef CoreML__Specification__MILSpec__Function PbFunction;
typedef CoreML__Specification__MILSpec__Function__BlockSpecializationsEntry PbBlockEntry;
typedef CoreML__Specification__MILSpec__Block PbBlock;
typedef CoreML__Specification__MILSpec__Operation PbOp;
typedef CoreML__Specification__MILSpec__Operation__InputsEntry PbInputsEntry;
typedef CoreML__Specification__MILSpec__Operation__AttributesEntry PbAttrEntry;
typedef CoreML__Specification__MILSpec__Argument PbArgument;
typedef CoreML__Specification__MILSpec__Argument__Binding PbBinding;
typedef CoreML__Specification__MILSpec__NamedValueType PbNamedType;
typedef CoreML__Specification__MILSpec__ValueType PbValueType;
typedef CoreML__Specification__MILSpec__TensorType PbTensorType;
typedef CoreML__Specification__MILSpec__StateType PbStateType;
typedef CoreML__Specification__MILSpec__StateWrappedType PbWrapped;
typedef CoreML__Specification__MILSpec__Dimension PbDim;
typedef CoreML__Specification__MILSpec__Dimension__ConstantDimension PbDimConst;
typedef CoreML__Specification__MILSpec__Dimension__UnknownDimension PbDimUnknown;
typedef CoreML__Specification__MILSpec__Value PbValue;
typedef CoreML__Specification__MILSpec__Value__ImmediateValue PbImmediate;
typedef CoreML__Specification__MILSpec__Value__BlobFileValue PbBlobFile;
typedef CoreML__Specification__MILSpec__TensorValue PbTensorValue;

/* ArrayFeatureType.ArrayDataType values. */
#define PB_ARRAY_FLOAT32 65568
#define PB_ARRAY_DOUBLE 65600
#define PB_ARRAY_INT32 131104
#define PB_ARRAY_INT8 131080
#define PB_ARRAY_FLOAT16 65552

/* A pool of zeroed allocations freed together. */
typedef struct PbPool {
    void **ptrs;
    size_t n, cap;
} PbPool;

static inline void *pb_alloc(PbPool *p, size_t size) {
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 256;
        p->ptrs = xrealloc(p->ptrs, sizeof *p->ptrs * p->cap);
    }
    void *m = xcalloc(1, size ? size : 1);
    p->ptrs[p->n++] = m;
    return m;
}

static inline void pb_pool_free(PbPool *p) {
    for (size_t i = 0; i < p->n; i++) free(p->ptrs[i]);
    free(p->ptrs);
    p->ptrs = NULL;
    p->n = p->cap = 0;
}

#define PB_NEW(pool, T, init) ({ T *m_ = pb_alloc((pool), sizeof(T)); init(m_); m_; })

#endif
