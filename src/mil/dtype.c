/* dtype.c - MIL data types: names, widths, sub-byte packing, tensor types. */
#include <stdio.h>
#include <string.h>

#include "mil/mil.h"

/* ==== Names and widths ==== */

typedef struct DTypeInfo {
    MilDType dt;
    const char *name;
    int bits;
} DTypeInfo;

static const DTypeInfo dtype_info[] = {
    {MIL_BOOL, "bool", 8},     {MIL_STRING, "string", 0},  {MIL_FP16, "fp16", 16},
    {MIL_FP32, "fp32", 32},    {MIL_FP64, "fp64", 64},     {MIL_BF16, "bf16", 16},
    {MIL_INT8, "int8", 8},     {MIL_INT16, "int16", 16},   {MIL_INT32, "int32", 32},
    {MIL_INT64, "int64", 64},  {MIL_INT4, "int4", 4},      {MIL_UINT8, "uint8", 8},
    {MIL_UINT16, "uint16", 16}, {MIL_UINT32, "uint32", 32}, {MIL_UINT64, "uint64", 64},
    {MIL_UINT4, "uint4", 4},   {MIL_UINT2, "uint2", 2},    {MIL_UINT1, "uint1", 1},
    {MIL_UINT6, "uint6", 6},   {MIL_UINT3, "uint3", 3},    {MIL_FP8E4M3FN, "fp8e4m3fn", 8},
    {MIL_FP8E5M2, "fp8e5m2", 8},
};
#define N_DTYPES ((int)(sizeof dtype_info / sizeof dtype_info[0]))

static const DTypeInfo *find_info(int dt) {
    for (int i = 0; i < N_DTYPES; i++)
        if ((int)dtype_info[i].dt == dt) return &dtype_info[i];
    return NULL;
}

const char *mil_dtype_name(MilDType dt) {
    const DTypeInfo *d = find_info(dt);
    return d ? d->name : "?";
}

MilDType mil_dtype_from_name(const char *name) {
    for (int i = 0; i < N_DTYPES; i++)
        if (!strcmp(dtype_info[i].name, name)) return dtype_info[i].dt;
    return MIL_DT_INVALID;
}

int mil_dtype_bits(MilDType dt) {
    const DTypeInfo *d = find_info(dt);
    return d ? d->bits : 0;
}

int mil_dtype_is_valid(int dt) { return find_info(dt) != NULL; }

int mil_dtype_is_subbyte(MilDType dt) {
    return dt == MIL_INT4 || dt == MIL_UINT1 || dt == MIL_UINT2 || dt == MIL_UINT3 || dt == MIL_UINT4 ||
           dt == MIL_UINT6;
}

int mil_dtype_is_float(MilDType dt) {
    return dt == MIL_FP16 || dt == MIL_FP32 || dt == MIL_FP64 || dt == MIL_BF16 || dt == MIL_FP8E4M3FN ||
           dt == MIL_FP8E5M2;
}

int mil_dtype_is_int(MilDType dt) {
    switch (dt) {
    case MIL_INT4: case MIL_INT8: case MIL_INT16: case MIL_INT32: case MIL_INT64:
    case MIL_UINT1: case MIL_UINT2: case MIL_UINT3: case MIL_UINT4: case MIL_UINT6:
    case MIL_UINT8: case MIL_UINT16: case MIL_UINT32: case MIL_UINT64:
        return 1;
    default:
        return 0;
    }
}

int mil_packed_size(MilDType dt, uint64_t n, uint64_t *out) {
    uint64_t bits = (uint64_t)mil_dtype_bits(dt);
    if (bits && n > UINT64_MAX / bits) return -1;
    *out = (n * bits + 7) / 8;
    return 0;
}

/* ==== Sub-byte packing ==== */

int mil_pack_subbyte(MilDType dt, const uint8_t *vals, size_t n, uint8_t *out) {
    int b = mil_dtype_bits(dt);
    unsigned mask = (1u << b) - 1;
    size_t nbytes = (n * (size_t)b + 7) / 8;
    memset(out, 0, nbytes);
    for (size_t i = 0; i < n; i++) {
        unsigned v = vals[i];
        if (dt == MIL_INT4) {
            int s = (int8_t)vals[i];
            if (s < -8 || s > 7) return -1;
            v = (unsigned)s & mask;
        } else if (v > mask) {
            return -1;
        }
        size_t bit = i * (size_t)b;
        size_t byte = bit / 8;
        unsigned shift = bit % 8;
        out[byte] |= (uint8_t)(v << shift);
        if (shift + (unsigned)b > 8) out[byte + 1] |= (uint8_t)(v >> (8 - shift));
    }
    return 0;
}

int32_t mil_subbyte_get(MilDType dt, const uint8_t *packed, size_t i) {
    int b = mil_dtype_bits(dt);
    unsigned mask = (1u << b) - 1;
    size_t bit = i * (size_t)b;
    size_t byte = bit / 8;
    unsigned shift = bit % 8;
    unsigned v = (unsigned)packed[byte] >> shift;
    if (shift + (unsigned)b > 8) v |= (unsigned)packed[byte + 1] << (8 - shift);
    v &= mask;
    if (dt == MIL_INT4 && (v & 8)) return (int32_t)v - 16;
    return (int32_t)v;
}

void mil_unpack_subbyte(MilDType dt, const uint8_t *packed, size_t n, uint8_t *vals) {
    for (size_t i = 0; i < n; i++) vals[i] = (uint8_t)mil_subbyte_get(dt, packed, i);
}

/* ==== Types ==== */

MilType mil_tensor_type(MilDType dt, int rank, const int64_t *dims) {
    MilType t;
    memset(&t, 0, sizeof t);
    t.kind = MIL_TENSOR;
    t.dtype = dt;
    t.rank = rank;
    for (int i = 0; i < rank && i < MIL_MAX_RANK; i++) t.dims[i] = dims[i];
    return t;
}

int64_t mil_type_numel(const MilType *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) {
        int64_t d = t->dims[i];
        if (d < 0) return -1;
        if (d && n > ((int64_t)1 << 62) / d) return -1;
        n *= d;
    }
    return n;
}

int mil_type_equal(const MilType *a, const MilType *b) {
    if (a->kind != b->kind || a->dtype != b->dtype || a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return 0;
    return 1;
}

int mil_type_compatible(const MilType *a, const MilType *b) {
    if (a->kind != b->kind || a->dtype != b->dtype || a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] >= 0 && b->dims[i] >= 0 && a->dims[i] != b->dims[i]) return 0;
    return 1;
}

void mil_type_str(const MilType *t, char *buf, size_t size) {
    char inner[256];
    size_t len;
    if (t->rank == 0) {
        snprintf(inner, sizeof inner, "%s", mil_dtype_name(t->dtype));
    } else {
        len = (size_t)snprintf(inner, sizeof inner, "tensor<%s, [", mil_dtype_name(t->dtype));
        for (int i = 0; i < t->rank && len < sizeof inner; i++) {
            if (t->dims[i] < 0)
                len += (size_t)snprintf(inner + len, sizeof inner - len, "%s?", i ? ", " : "");
            else
                len += (size_t)snprintf(inner + len, sizeof inner - len, "%s%lld", i ? ", " : "",
                                        (long long)t->dims[i]);
        }
        if (len < sizeof inner) snprintf(inner + len, sizeof inner - len, "]>");
    }
    if (t->kind == MIL_STATE) {
        /* a state always wraps a tensor, also when rank 0 */
        if (t->rank == 0)
            snprintf(buf, size, "state<tensor<%s, []>>", mil_dtype_name(t->dtype));
        else
            snprintf(buf, size, "state<%s>", inner);
    } else {
        snprintf(buf, size, "%s", inner);
    }
}
