/* k_elementwise.c - elementwise kernels: binary arithmetic and comparisons with numpy
 * broadcasting, unary functions, select, clip, cast, band_part.
 *
 * Float inputs are computed in float32; the interpreter rounds fp16 outputs afterwards.
 * Integer arithmetic is done in 64 bits and wrapped to the output dtype.
 */
#include "runtime/rt_internal.h"

#include <math.h>
#include <string.h>

/* ==== Broadcasting ==== */

/* Up to three inputs broadcast to one output shape, walked row by row (the last axis). */
typedef struct Bcast {
    int rank, n;
    int64_t dims[MIL_MAX_RANK];
    int64_t str[3][MIL_MAX_RANK];   /* element strides per input, 0 on broadcast axes */
    int64_t rows, len;              /* rows of the output and their length */
} Bcast;

static int bcast_init(Kctx *k, Bcast *b, int n, const RtTensor *const *ts) {
    memset(b, 0, sizeof *b);
    b->n = n;
    for (int i = 0; i < n; i++)
        if (ts[i]->rank > b->rank) b->rank = ts[i]->rank;
    for (int a = 0; a < b->rank; a++) {
        int64_t d = 1;
        for (int i = 0; i < n; i++) {
            int ia = a - (b->rank - ts[i]->rank);
            int64_t di = ia >= 0 ? ts[i]->dims[ia] : 1;
            if (di == 1 || di == d) continue;
            if (d != 1) {
                char s0[160], s1[160];
                rt_tensor_str(ts[0], s0, sizeof s0);
                rt_tensor_str(ts[i], s1, sizeof s1);
                return kfail(k, "shapes %s and %s do not broadcast (axis %d)", s0, s1, a);
            }
            d = di;
        }
        b->dims[a] = d;
    }
    for (int i = 0; i < n; i++) {
        int64_t st[MIL_MAX_RANK];
        shape_strides(ts[i]->rank, ts[i]->dims, st);
        for (int a = 0; a < b->rank; a++) {
            int ia = a - (b->rank - ts[i]->rank);
            b->str[i][a] = ia >= 0 && ts[i]->dims[ia] != 1 ? st[ia] : 0;
        }
    }
    b->len = b->rank ? b->dims[b->rank - 1] : 1;
    b->rows = 1;
    for (int a = 0; a + 1 < b->rank; a++) b->rows *= b->dims[a];
    return 0;
}

/* Offsets of row r for each input. */
static void bcast_row(const Bcast *b, int64_t r, int64_t *off) {
    for (int i = 0; i < b->n; i++) off[i] = 0;
    for (int a = b->rank - 2; a >= 0; a--) {
        int64_t c = r % b->dims[a];
        r /= b->dims[a];
        for (int i = 0; i < b->n; i++) off[i] += c * b->str[i][a];
    }
}

static int64_t inner_stride(const Bcast *b, int i) { return b->rank ? b->str[i][b->rank - 1] : 0; }

/* ==== Binary ==== */

static float fbin(MilOpId id, float x, float y) {
    switch (id) {
    case MIL_OP_ADD: return x + y;
    case MIL_OP_SUB: return x - y;
    case MIL_OP_MUL: return x * y;
    case MIL_OP_REAL_DIV: return x / y;
    case MIL_OP_MAXIMUM: return (x > y || isnan(x)) ? x : y;
    case MIL_OP_MINIMUM: return (x < y || isnan(x)) ? x : y;
    case MIL_OP_POW: return powf(x, y);
    case MIL_OP_GREATER_EQUAL: return x >= y;
    case MIL_OP_GREATER: return x > y;
    case MIL_OP_LESS: return x < y;
    case MIL_OP_LESS_EQUAL: return x <= y;
    case MIL_OP_EQUAL: return x == y;
    case MIL_OP_NOT_EQUAL: return x != y;
    default: return 0;
    }
}

static int64_t ipow(int64_t b, int64_t e) {
    if (e < 0) return b == 1 ? 1 : (b == -1 ? (e % 2 ? -1 : 1) : 0);
    int64_t r = 1;
    while (e > 0) {
        if (e & 1) r = (int64_t)((uint64_t)r * (uint64_t)b);
        b = (int64_t)((uint64_t)b * (uint64_t)b);
        e >>= 1;
    }
    return r;
}

static int64_t ibin(MilOpId id, int64_t x, int64_t y) {
    switch (id) {
    case MIL_OP_ADD: return x + y;
    case MIL_OP_SUB: return x - y;
    case MIL_OP_MUL: return (int64_t)((uint64_t)x * (uint64_t)y);
    case MIL_OP_REAL_DIV: return y ? (int64_t)((double)x / (double)y) : 0;
    case MIL_OP_MAXIMUM: return x > y ? x : y;
    case MIL_OP_MINIMUM: return x < y ? x : y;
    case MIL_OP_POW: return ipow(x, y);
    case MIL_OP_GREATER_EQUAL: return x >= y;
    case MIL_OP_GREATER: return x > y;
    case MIL_OP_LESS: return x < y;
    case MIL_OP_LESS_EQUAL: return x <= y;
    case MIL_OP_EQUAL: return x == y;
    case MIL_OP_NOT_EQUAL: return x != y;
    default: return 0;
    }
}

static int is_compare(MilOpId id) { return id >= MIL_OP_GREATER_EQUAL && id <= MIL_OP_NOT_EQUAL; }

/* The common float cases get their own loops (the add of a mask, the mul by a gain). */
static void frow(MilOpId id, float *o, const float *x, int64_t sx, const float *y, int64_t sy, int64_t n) {
    if (id == MIL_OP_ADD && sx == 1 && sy == 1) {
        for (int64_t i = 0; i < n; i++) o[i] = x[i] + y[i];
    } else if (id == MIL_OP_MUL && sx == 1 && sy == 1) {
        for (int64_t i = 0; i < n; i++) o[i] = x[i] * y[i];
    } else if (id == MIL_OP_MUL && sx == 1 && sy == 0) {
        float c = y[0];
        for (int64_t i = 0; i < n; i++) o[i] = x[i] * c;
    } else if (id == MIL_OP_SUB && sx == 1 && sy == 1) {
        for (int64_t i = 0; i < n; i++) o[i] = x[i] - y[i];
    } else {
        for (int64_t i = 0; i < n; i++) o[i] = fbin(id, x[i * sx], y[i * sy]);
    }
}

int k_binary(Kctx *k) {
    MilOpId id = k->p->def->id;
    const RtTensor *x = kin(k, "x"), *y = kin(k, "y");
    if (x->dtype != y->dtype) return kfail(k, "x is %s and y is %s", mil_dtype_name(x->dtype), mil_dtype_name(y->dtype));
    const RtTensor *ts[2] = {x, y};
    Bcast b;
    if (bcast_init(k, &b, 2, ts) < 0) return -1;
    MilDType odt = is_compare(id) ? MIL_BOOL : x->dtype;
    RtTensor *o = kout(k, 0, odt, b.rank, b.dims);
    int64_t sx = inner_stride(&b, 0), sy = inner_stride(&b, 1), off[3];
    for (int64_t r = 0; r < b.rows; r++) {
        bcast_row(&b, r, off);
        int64_t base = r * b.len;
        if (rt_is_float(x->dtype)) {
            const float *xd = (const float *)x->data + off[0], *yd = (const float *)y->data + off[1];
            if (odt == MIL_BOOL) {
                int32_t *od = (int32_t *)o->data + base;
                for (int64_t i = 0; i < b.len; i++) od[i] = fbin(id, xd[i * sx], yd[i * sy]) != 0;
            } else {
                frow(id, (float *)o->data + base, xd, sx, yd, sy, b.len);
            }
        } else {
            const int32_t *xd = (const int32_t *)x->data + off[0], *yd = (const int32_t *)y->data + off[1];
            int32_t *od = (int32_t *)o->data + base;
            for (int64_t i = 0; i < b.len; i++) od[i] = wrap_int(odt, ibin(id, xd[i * sx], yd[i * sy]));
        }
    }
    return 0;
}

/* ==== Unary ==== */

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

int k_unary(Kctx *k) {
    MilOpId id = k->p->def->id;
    const RtTensor *x = kin(k, "x");
    if (!rt_is_float(x->dtype)) return kfail(k, "x must be fp16 or fp32");
    RtTensor *o = kout(k, 0, x->dtype, x->rank, x->dims);
    const float *xd = x->data;
    float *od = o->data;
    int64_t n = rt_numel(x);
    double eps = 0;
    int gelu = 0;
    if (id == MIL_OP_RSQRT && kin_float(k, "epsilon", &eps) < 0) return -1;
    if (id == MIL_OP_GELU) {
        const char *mode = kin_str(k, "mode");
        if (!mode) return -1;
        if (!strcmp(mode, "EXACT")) gelu = 0;
        else if (!strcmp(mode, "TANH_APPROXIMATION")) gelu = 1;
        else if (!strcmp(mode, "SIGMOID_APPROXIMATION")) gelu = 2;
        else return kfail(k, "unknown gelu mode '%s'", mode);
    }
    const float c_tanh = 0.7978845608028654f;   /* sqrt(2 / pi) */
    for (int64_t i = 0; i < n; i++) {
        float v = xd[i], r;
        switch (id) {
        case MIL_OP_SQRT: r = sqrtf(v); break;
        case MIL_OP_RSQRT: r = 1.0f / sqrtf(v + (float)eps); break;
        case MIL_OP_EXP: r = expf(v); break;
        case MIL_OP_TANH: r = tanhf(v); break;
        case MIL_OP_SILU: r = v * sigmoidf(v); break;
        case MIL_OP_RELU: r = v > 0 ? v : (isnan(v) ? v : 0.0f); break;
        case MIL_OP_SIGMOID: r = sigmoidf(v); break;
        case MIL_OP_GELU:
            if (gelu == 0) r = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
            else if (gelu == 1) r = 0.5f * v * (1.0f + tanhf(c_tanh * (v + 0.044715f * v * v * v)));
            else r = v * sigmoidf(1.702f * v);
            break;
        default: return kfail(k, "not a unary op");
        }
        od[i] = r;
    }
    return 0;
}

int k_clip(Kctx *k) {
    const RtTensor *x = kin(k, "x");
    double lo, hi;
    if (kin_float(k, "alpha", &lo) < 0 || kin_float(k, "beta", &hi) < 0) return -1;
    RtTensor *o = kout(k, 0, x->dtype, x->rank, x->dims);
    const float *xd = x->data;
    float *od = o->data;
    float flo = (float)lo, fhi = (float)hi;
    for (int64_t i = 0, n = rt_numel(x); i < n; i++) {
        float v = xd[i];
        od[i] = v < flo ? flo : (v > fhi ? fhi : v);
    }
    return 0;
}

/* ==== select, cast, band_part ==== */

int k_select(Kctx *k) {
    const RtTensor *c = kin(k, "cond"), *a = kin(k, "a"), *bb = kin(k, "b");
    const RtTensor *ts[3] = {a, bb, c};
    Bcast b;
    if (bcast_init(k, &b, 3, ts) < 0) return -1;
    RtTensor *o = kout(k, 0, a->dtype, b.rank, b.dims);
    const int32_t *cd = c->data;
    const uint32_t *ad = a->data, *bd = bb->data;    /* 4-byte elements of any kind */
    uint32_t *od = o->data;
    int64_t off[3], sa = inner_stride(&b, 0), sb = inner_stride(&b, 1), sc = inner_stride(&b, 2);
    for (int64_t r = 0; r < b.rows; r++) {
        bcast_row(&b, r, off);
        for (int64_t i = 0; i < b.len; i++)
            od[r * b.len + i] = cd[off[2] + i * sc] ? ad[off[0] + i * sa] : bd[off[1] + i * sb];
    }
    return 0;
}

int k_cast(Kctx *k) {
    const RtTensor *x = kin(k, "x");
    const char *name = kin_str(k, "dtype");
    if (!name) return -1;
    MilDType to = mil_dtype_from_name(name);
    if (to == MIL_DT_INVALID || !(rt_is_float(to) || mil_dtype_is_int(to) || to == MIL_BOOL))
        return kfail(k, "cannot cast to '%s'", name);
    RtTensor *o = kout(k, 0, to, x->rank, x->dims);
    int64_t n = rt_numel(x);
    if (rt_is_float(x->dtype)) {
        const float *xd = x->data;
        if (rt_is_float(to)) {
            memcpy(o->data, xd, (size_t)n * 4);   /* fp16 outputs are rounded afterwards */
        } else {
            int32_t *od = o->data;
            for (int64_t i = 0; i < n; i++) {
                float v = xd[i];
                int64_t t = isnan(v) ? 0 : (v >= 9.2e18f ? INT64_MAX : (v <= -9.2e18f ? INT64_MIN : (int64_t)v));
                od[i] = to == MIL_BOOL ? v != 0 : wrap_int(to, t);
            }
        }
    } else {
        const int32_t *xd = x->data;
        if (rt_is_float(to)) {
            float *od = o->data;
            for (int64_t i = 0; i < n; i++) od[i] = (float)xd[i];
        } else {
            int32_t *od = o->data;
            for (int64_t i = 0; i < n; i++) od[i] = wrap_int(to, xd[i]);
        }
    }
    return 0;
}

int k_band_part(Kctx *k) {
    const RtTensor *x = kin(k, "x");
    int64_t lower, upper;
    if (kin_int(k, "lower", &lower) < 0 || kin_int(k, "upper", &upper) < 0) return -1;
    if (x->rank < 2) return kfail(k, "x must have rank >= 2");
    RtTensor *o = kout(k, 0, x->dtype, x->rank, x->dims);
    int64_t m = x->dims[x->rank - 2], n = x->dims[x->rank - 1], mats = m * n > 0 ? rt_numel(x) / (m * n) : 0;
    const uint32_t *xd = x->data;
    uint32_t *od = o->data;
    for (int64_t b = 0; b < mats; b++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                int keep = (lower < 0 || i - j <= lower) && (upper < 0 || j - i <= upper);
                int64_t at = (b * m + i) * n + j;
                od[at] = keep ? xd[at] : 0;   /* 0 bits: 0.0f, integer 0, false */
            }
    return 0;
}

int k_identity(Kctx *k) {
    const RtTensor *x = kin(k, "x");
    RtTensor *o = kout(k, 0, x->dtype, x->rank, x->dims);
    memcpy(o->data, x->data, (size_t)rt_numel(x) * 4);
    return 0;
}
