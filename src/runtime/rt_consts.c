/* rt_consts.c - compile-time values converted once for the interpreter.
 *
 * Const ops, literals and constexpr_lut_to_dense outputs become float32 (or int32) buffers the
 * kernels read directly. A model keeps one converted copy per source: blobs are identified by
 * (file, offset), LUT weights by the pair (indices blob, lut blob), so the functions of a
 * multifunction package that reference the same weight share it. Tables that only feed
 * `gather` may stay fp16 (the bytes in the mapping, or the dequantized LUT as fp16 bits).
 */
#include "runtime/rt_internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "common/parallel.h"
#include "common/util.h"

/* ==== Cache ==== */

typedef struct ConstKey {
    const void *a;          /* blob owner, or inline bytes */
    uint64_t ao;            /* blob offset */
    const void *b;          /* LUT: the lut's owner / bytes */
    uint64_t bo;
    int f16;                /* the fp16-bits form */
} ConstKey;

typedef struct ConstEntry {
    ConstKey key;
    void *data;             /* float/int32 buffer, or uint16 fp16 bits */
    int owned;              /* data is ours to free (not a pointer into a mapping) */
} ConstEntry;

struct ConstCache {
    ConstEntry *slots;      /* open addressing; data == NULL marks an empty slot */
    size_t cap, n;
};

struct ConstCache *const_cache_new(void) {
    struct ConstCache *c = xcalloc(1, sizeof *c);
    c->cap = 256;
    c->slots = xcalloc(c->cap, sizeof *c->slots);
    return c;
}

void const_cache_free(struct ConstCache *c) {
    if (!c) return;
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i].data && c->slots[i].owned) free(c->slots[i].data);
    free(c->slots);
    free(c);
}

static uint64_t key_hash(const ConstKey *k) {
    uint64_t h[5] = {(uint64_t)(uintptr_t)k->a, k->ao, (uint64_t)(uintptr_t)k->b, k->bo, (uint64_t)k->f16};
    return hash64(h, sizeof h, 0x9e3779b97f4a7c15ull);
}

static int key_eq(const ConstKey *x, const ConstKey *y) {
    return x->a == y->a && x->ao == y->ao && x->b == y->b && x->bo == y->bo && x->f16 == y->f16;
}

static ConstEntry *cache_find(struct ConstCache *c, const ConstKey *k) {
    for (size_t i = key_hash(k) & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        ConstEntry *s = &c->slots[i];
        if (!s->data) return NULL;
        if (key_eq(&s->key, k)) return s;
    }
}

static void cache_put(struct ConstCache *c, const ConstKey *k, void *data, int owned) {
    if (2 * (c->n + 1) > c->cap) {
        ConstEntry *old = c->slots;
        size_t old_cap = c->cap;
        c->cap *= 2;
        c->slots = xcalloc(c->cap, sizeof *c->slots);
        c->n = 0;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].data) cache_put(c, &old[i].key, old[i].data, old[i].owned);
        free(old);
    }
    size_t i = key_hash(k) & (c->cap - 1);
    while (c->slots[i].data) i = (i + 1) & (c->cap - 1);
    c->slots[i] = (ConstEntry){*k, data, owned};
    c->n++;
}

/* Where the bytes of a const come from (the cache key's half). */
static void const_source(const MilConst *c, const void **who, uint64_t *off) {
    if (c->kind == MIL_CONST_BLOB && c->blob.owner) {
        *who = c->blob.owner;
        *off = c->blob.offset;
    } else {
        *who = mil_const_bytes(c);
        *off = 0;
    }
}

/* ==== Element decoding ==== */

/* Element i of packed data of an integer or bool dtype. */
static int64_t int_elem(MilDType dt, const uint8_t *p, size_t i) {
    switch (dt) {
    case MIL_BOOL: return p[i] != 0;
    case MIL_INT8: return (int8_t)p[i];
    case MIL_UINT8: return p[i];
    case MIL_INT16: { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case MIL_UINT16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case MIL_INT32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case MIL_UINT32: { uint32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case MIL_INT64: { int64_t v; memcpy(&v, p + 8 * i, 8); return v; }
    case MIL_UINT64: { uint64_t v; memcpy(&v, p + 8 * i, 8); return (int64_t)v; }
    default: return mil_subbyte_get(dt, p, i);
    }
}

static float float_elem(MilDType dt, const uint8_t *p, size_t i) {
    switch (dt) {
    case MIL_FP16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return f16_to_f32(h); }
    case MIL_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return bf16_to_f32(h); }
    case MIL_FP32: { float f; memcpy(&f, p + 4 * i, 4); return f; }
    case MIL_FP64: { double d; memcpy(&d, p + 8 * i, 8); return (float)d; }
    default: return 0.0f;
    }
}

/* Index i of a packed uint{bits} stream (LSB first), bits <= 8. */
static inline unsigned lut_index(const uint8_t *p, size_t n_bytes, int bits, size_t i) {
    if (bits == 8) return p[i];
    size_t bit = i * (size_t)bits, byte = bit >> 3;
    unsigned v = p[byte];
    if (byte + 1 < n_bytes) v |= (unsigned)p[byte + 1] << 8;
    return (v >> (bit & 7)) & ((1u << bits) - 1);
}

/* ==== constexpr_lut_to_dense ==== */

typedef struct LutJob {
    const uint8_t *idx;         /* packed indices */
    size_t idx_bytes;
    int bits;
    const uint8_t *lut;         /* lut bytes */
    MilDType lut_dt;
    int rank;                   /* of the indices */
    int64_t dims[MIL_MAX_RANK]; /* indices shape */
    int64_t block[MIL_MAX_RANK];/* indices per LUT group along each axis */
    int64_t gstride[MIL_MAX_RANK]; /* LUT element stride of each group axis */
    int64_t entry_stride;       /* LUT element stride between palette entries (= vector size) */
    int64_t vs;                 /* vector size */
    int vaxis;                  /* vector axis (vs > 1) */
    int64_t row_len;            /* indices per first-axis row */
    int row_uniform;            /* every axis but the first has one group */
    int out_f16, out_int;
    void *out;
    int64_t out_dims[MIL_MAX_RANK];
} LutJob;

static void lut_store(const LutJob *j, int64_t out_i, int64_t lut_i) {
    if (j->out_f16) {
        uint16_t h;
        if (j->lut_dt == MIL_FP16) memcpy(&h, j->lut + 2 * lut_i, 2);
        else h = f32_to_f16(float_elem(j->lut_dt, j->lut, (size_t)lut_i));
        ((uint16_t *)j->out)[out_i] = h;
    } else if (j->out_int) {
        ((int32_t *)j->out)[out_i] = (int32_t)int_elem(j->lut_dt, j->lut, (size_t)lut_i);
    } else {
        ((float *)j->out)[out_i] = float_elem(j->lut_dt, j->lut, (size_t)lut_i);
    }
}

/* One first-axis row of the indices. */
static void lut_row(void *ctx, long row, int thread) {
    (void)thread;
    const LutJob *j = ctx;
    int64_t first = (int64_t)row * j->row_len;
    if (j->row_uniform && j->vs == 1) {
        int64_t base = (row / j->block[0]) * j->gstride[0];
        for (int64_t i = 0; i < j->row_len; i++)
            lut_store(j, first + i, base + (int64_t)lut_index(j->idx, j->idx_bytes, j->bits, (size_t)(first + i)) *
                                               j->entry_stride);
        return;
    }
    /* General case: walk the coordinates of the row. */
    int64_t c[MIL_MAX_RANK] = {0}, ostr[MIL_MAX_RANK];
    c[0] = row;
    shape_strides(j->rank, j->out_dims, ostr);
    for (int64_t i = 0; i < j->row_len; i++) {
        int64_t g = 0, o = 0;
        for (int a = 0; a < j->rank; a++) {
            g += (c[a] / j->block[a]) * j->gstride[a];
            o += (a == j->vaxis ? c[a] * j->vs : c[a]) * ostr[a];
        }
        int64_t e = g + (int64_t)lut_index(j->idx, j->idx_bytes, j->bits, (size_t)(first + i)) * j->entry_stride;
        for (int64_t v = 0; v < j->vs; v++) lut_store(j, o + v * (j->vaxis >= 0 ? ostr[j->vaxis] : 0), e + v);
        for (int a = j->rank - 1; a > 0; a--) {
            if (++c[a] < j->dims[a]) break;
            c[a] = 0;
        }
    }
}

static int lut_dequantize(RtModel *m, const MilOp *op, int keep_f16, void **out, Err *e) {
    const MilValue *ix = mil_op_input(op, "indices"), *lut = mil_op_input(op, "lut");
    const MilValue *va = mil_op_input(op, "vector_axis");
    const MilValue *res = op->outputs[0];
    LutJob j;
    memset(&j, 0, sizeof j);
    j.idx = ix && ix->data ? mil_const_bytes(ix->data) : NULL;
    j.lut = lut && lut->data ? mil_const_bytes(lut->data) : NULL;
    if (!j.idx || !j.lut)
        return err_set(e, "constexpr_lut_to_dense '%s': indices or lut data is not available in memory", op->name);
    j.idx_bytes = ix->data->kind == MIL_CONST_BLOB ? ix->data->blob.nbytes : ix->data->nbytes;
    j.bits = mil_dtype_bits(ix->type.dtype);
    j.lut_dt = lut->type.dtype;
    j.rank = ix->type.rank;
    int64_t n = mil_type_numel(&ix->type);
    if (n < 0 || j.rank < 1 || j.bits < 1 || j.bits > 8)
        return err_set(e, "constexpr_lut_to_dense '%s': unsupported indices %s", op->name, mil_dtype_name(ix->type.dtype));
    uint64_t need;
    if (mil_packed_size(ix->type.dtype, (uint64_t)n, &need) < 0 || need > j.idx_bytes)
        return err_set(e, "constexpr_lut_to_dense '%s': indices data holds %llu bytes, %lld indices need %llu",
                       op->name, (unsigned long long)j.idx_bytes, (long long)n, (unsigned long long)need);
    int64_t lstr[MIL_MAX_RANK + 2];
    shape_strides(lut->type.rank, lut->type.dims, lstr);
    j.vs = lut->type.dims[j.rank + 1];
    j.entry_stride = lstr[j.rank];
    j.vaxis = -1;
    if (va) {
        int64_t a;
        int cnt;
        if (mil_value_ints(va, &a, 1, &cnt) < 0 || cnt != 1) return err_set(e, "constexpr_lut_to_dense '%s': bad vector_axis", op->name);
        j.vaxis = (int)(a < 0 ? a + j.rank : a);
    }
    for (int a = 0; a < j.rank; a++) {
        j.dims[a] = ix->type.dims[a];
        j.block[a] = ix->type.dims[a] / lut->type.dims[a];
        j.gstride[a] = lstr[a];
        j.out_dims[a] = res->type.dims[a];
    }
    j.row_len = n / j.dims[0];
    j.row_uniform = 1;
    for (int a = 1; a < j.rank; a++)
        if (lut->type.dims[a] != 1) j.row_uniform = 0;
    j.out_f16 = keep_f16 && j.lut_dt == MIL_FP16;
    j.out_int = mil_dtype_is_int(j.lut_dt);
    int64_t total = n * j.vs;
    j.out = xmalloc((size_t)total * (j.out_f16 ? 2 : 4) + 1);
    long rows = (long)j.dims[0];
    par_for(rows, total >= (1 << 20) ? par_threads(m->threads) : 1, lut_row, &j);
    *out = j.out;
    m->const_bytes += (uint64_t)total * (j.out_f16 ? 2 : 4);
    return 0;
}

/* ==== Plain consts ==== */

static void *convert_const(RtModel *m, const MilValue *v, int keep_f16, int *owned, Err *e) {
    const MilConst *c = v->data;
    const uint8_t *bytes = c ? mil_const_bytes(c) : NULL;
    int64_t n = mil_type_numel(&v->type);
    if (!bytes && n != 0) {
        err_set(e, "const '%s': its data is not in memory", v->name ? v->name : "(literal)");
        return NULL;
    }
    uint64_t need = 0;
    if (n < 0 || mil_packed_size(v->type.dtype, (uint64_t)n, &need) < 0 ||
        need > (c->kind == MIL_CONST_BLOB ? c->blob.nbytes : c->nbytes)) {
        err_set(e, "const '%s': data size does not match its type", v->name ? v->name : "(literal)");
        return NULL;
    }
    MilDType dt = v->type.dtype;
    *owned = 1;
    if (keep_f16 && dt == MIL_FP16 && ((uintptr_t)bytes & 1) == 0) {
        *owned = 0;
        return (void *)bytes;
    }
    void *out = xmalloc((size_t)n * 4 + 1);
    if (mil_dtype_is_float(dt)) {
        float *f = out;
        for (int64_t i = 0; i < n; i++) f[i] = float_elem(dt, bytes, (size_t)i);
    } else {
        int32_t *d = out;
        for (int64_t i = 0; i < n; i++) d[i] = (int32_t)int_elem(dt, bytes, (size_t)i);
    }
    m->const_bytes += (uint64_t)n * 4;
    return out;
}

int const_materialize(RtModel *m, const MilValue *v, int keep_f16, Slot *s, Err *e) {
    s->is_const = 1;
    s->buf_cls = -1;
    s->t.dtype = v->type.dtype;
    s->t.rank = v->type.rank;
    memcpy(s->t.dims, v->type.dims, sizeof s->t.dims);
    for (int i = 0; i < v->type.rank; i++)
        if (v->type.dims[i] < 0) return err_set(e, "const '%s' has an unknown dimension", v->name ? v->name : "(literal)");
    if (v->type.dtype == MIL_STRING) {
        s->str = mil_value_str(v);
        if (!s->str) return err_set(e, "const '%s': only string scalars are supported", v->name ? v->name : "(literal)");
        return 0;
    }
    keep_f16 = keep_f16 && v->type.dtype == MIL_FP16;
    const MilOp *op = v->producer;
    int is_lut = op && op->def && op->def->id == MIL_OP_CONSTEXPR_LUT_TO_DENSE;
    ConstKey key;
    memset(&key, 0, sizeof key);
    key.f16 = keep_f16;
    if (is_lut) {
        const MilValue *ix = mil_op_input(op, "indices"), *lut = mil_op_input(op, "lut");
        if (!ix || !lut || !ix->data || !lut->data)
            return err_set(e, "constexpr_lut_to_dense '%s': indices and lut must be const data", op->name);
        const_source(ix->data, &key.a, &key.ao);
        const_source(lut->data, &key.b, &key.bo);
    } else if (v->data) {
        const_source(v->data, &key.a, &key.ao);
    } else {
        return err_set(e, "'%s' is not a compile-time value the runtime can evaluate", v->name ? v->name : "(literal)");
    }
    ConstEntry *hit = key.a ? cache_find(m->consts, &key) : NULL;
    void *data = NULL;
    if (hit) {
        data = hit->data;
        m->shared_consts++;
    } else {
        int owned = 1;
        if (is_lut) {
            if (lut_dequantize(m, op, keep_f16, &data, e) < 0) return -1;
        } else {
            data = convert_const(m, v, keep_f16, &owned, e);
            if (!data) return -1;
        }
        if (key.a) cache_put(m->consts, &key, data, owned);
        else if (owned) {
            /* a const without bytes (zero elements): keep it alive in the cache anyway */
            key.a = data;
            cache_put(m->consts, &key, data, owned);
        }
    }
    if (keep_f16) s->f16 = data;
    else s->t.data = data;
    return 0;
}
