/* k_reduce.c - kernels that combine elements along axes: softmax, layer_norm, reduce_mean /
 * reduce_sum / reduce_max, reduce_argmax.
 *
 * Sums and variances accumulate in double (the device's reductions are at least as wide as
 * fp16's), the result is rounded to fp16 afterwards by the interpreter.
 */
#include "runtime/rt_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

/* ==== Reduction geometry ==== */

/* x split into kept axes (outer) and reduced axes (inner), both in ascending axis order. */
typedef struct Red {
    int n_kept, n_red;
    int64_t kept_dims[MIL_MAX_RANK], kept_str[MIL_MAX_RANK];
    int64_t red_dims[MIL_MAX_RANK], red_str[MIL_MAX_RANK];
    int64_t outer, inner;
    int64_t *inner_off;          /* [inner] element offsets of the reduced coordinates, or NULL
                                    when they are contiguous (offset = index) */
} Red;

static int red_init(Kctx *k, Red *r, const RtTensor *x, const int *reduced) {
    memset(r, 0, sizeof *r);
    int64_t st[MIL_MAX_RANK];
    shape_strides(x->rank, x->dims, st);
    r->outer = r->inner = 1;
    int suffix = 1, seen_red = 0;
    for (int a = 0; a < x->rank; a++) {
        if (reduced[a]) {
            r->red_dims[r->n_red] = x->dims[a];
            r->red_str[r->n_red++] = st[a];
            r->inner *= x->dims[a];
            seen_red = 1;
        } else {
            r->kept_dims[r->n_kept] = x->dims[a];
            r->kept_str[r->n_kept++] = st[a];
            r->outer *= x->dims[a];
            if (seen_red && x->dims[a] != 1) suffix = 0;
        }
    }
    if (!suffix) {
        r->inner_off = xmalloc(sizeof(int64_t) * (size_t)(r->inner ? r->inner : 1));
        for (int64_t i = 0; i < r->inner; i++) {
            int64_t rem = i, off = 0;
            for (int a = r->n_red - 1; a >= 0; a--) {
                off += (rem % r->red_dims[a]) * r->red_str[a];
                rem /= r->red_dims[a];
            }
            r->inner_off[i] = off;
        }
    }
    (void)k;
    return 0;
}

static int64_t red_base(const Red *r, int64_t o) {
    int64_t off = 0;
    for (int a = r->n_kept - 1; a >= 0; a--) {
        off += (o % r->kept_dims[a]) * r->kept_str[a];
        o /= r->kept_dims[a];
    }
    return off;
}

static inline int64_t red_at(const Red *r, int64_t i) { return r->inner_off ? r->inner_off[i] : i; }

static void red_free(Red *r) { free(r->inner_off); }

/* Reduced-axis flags from an axes list (NULL/0 axes: every axis). */
static int axes_flags(Kctx *k, const int64_t *axes, int n, int rank, int *flags) {
    for (int a = 0; a < rank; a++) flags[a] = n == 0;
    for (int i = 0; i < n; i++) {
        int a;
        if (knorm_axis(k, axes[i], rank, &a) < 0) return -1;
        flags[a] = 1;
    }
    return 0;
}

/* ==== softmax ==== */

int k_softmax(Kctx *k) {
    const RtTensor *x = kin(k, "x");
    int64_t axis;
    int a;
    if (kin_int(k, "axis", &axis) < 0 || knorm_axis(k, axis, x->rank, &a) < 0) return -1;
    RtTensor *o = kout(k, 0, x->dtype, x->rank, x->dims);
    int64_t outer = 1, inner = 1, d = x->dims[a];
    for (int i = 0; i < a; i++) outer *= x->dims[i];
    for (int i = a + 1; i < x->rank; i++) inner *= x->dims[i];
    const float *xd = x->data;
    float *od = o->data;
    for (int64_t ou = 0; ou < outer; ou++)
        for (int64_t in = 0; in < inner; in++) {
            int64_t base = ou * d * inner + in;
            float mx = -INFINITY;
            for (int64_t j = 0; j < d; j++) {
                float v = xd[base + j * inner];
                if (v > mx || isnan(v)) mx = v;
            }
            double sum = 0;
            for (int64_t j = 0; j < d; j++) {
                float ev = expf(xd[base + j * inner] - mx);
                od[base + j * inner] = ev;
                sum += ev;
            }
            float inv = (float)(1.0 / sum);
            for (int64_t j = 0; j < d; j++) od[base + j * inner] *= inv;
        }
    return 0;
}

/* ==== layer_norm ==== */

int k_layer_norm(Kctx *k) {
    const RtTensor *x = kin(k, "x"), *gamma = kin(k, "gamma"), *beta = kin(k, "beta");
    int64_t axes[MIL_MAX_RANK];
    int n, flags[MIL_MAX_RANK];
    double eps;
    if (kin_ints(k, "axes", axes, MIL_MAX_RANK, &n) < 0 || kin_float(k, "epsilon", &eps) < 0) return -1;
    if (n == 0) {   /* an explicit empty list normalizes nothing: (x - x) / sqrt(eps) = 0 */
        for (int a = 0; a < x->rank; a++) flags[a] = 0;
    } else if (axes_flags(k, axes, n, x->rank, flags) < 0) {
        return -1;
    }
    Red r;
    red_init(k, &r, x, flags);
    if ((gamma && rt_numel(gamma) != r.inner) || (beta && rt_numel(beta) != r.inner)) {
        red_free(&r);
        return kfail(k, "gamma/beta must have %lld elements (the normalized shape)", (long long)r.inner);
    }
    RtTensor *o = kout(k, 0, x->dtype, x->rank, x->dims);
    const float *xd = x->data, *g = gamma ? gamma->data : NULL, *b = beta ? beta->data : NULL;
    float *od = o->data;
    for (int64_t ou = 0; ou < r.outer; ou++) {
        int64_t base = red_base(&r, ou);
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < r.inner; i++) sum += xd[base + red_at(&r, i)];
        double mean = r.inner ? sum / (double)r.inner : 0;
        for (int64_t i = 0; i < r.inner; i++) {
            double dv = xd[base + red_at(&r, i)] - mean;
            sq += dv * dv;
        }
        double inv = 1.0 / sqrt((r.inner ? sq / (double)r.inner : 0) + eps);
        for (int64_t i = 0; i < r.inner; i++) {
            int64_t at = base + red_at(&r, i);
            double v = (xd[at] - mean) * inv;
            if (g) v *= g[i];
            if (b) v += b[i];
            od[at] = (float)v;
        }
    }
    red_free(&r);
    return 0;
}

/* ==== reduce_* ==== */

static void reduced_shape(const RtTensor *x, const int *flags, int keep, int *rank, int64_t *dims) {
    *rank = 0;
    for (int a = 0; a < x->rank; a++) {
        if (flags[a] && !keep) continue;
        dims[(*rank)++] = flags[a] ? 1 : x->dims[a];
    }
}

int k_reduce(Kctx *k) {
    MilOpId id = k->p->def->id;
    const RtTensor *x = kin(k, "x");
    int64_t axes[MIL_MAX_RANK], keep;
    int n = 0, flags[MIL_MAX_RANK];
    if (kin(k, "axes") && kin_ints(k, "axes", axes, MIL_MAX_RANK, &n) < 0) return -1;
    if (kin_int(k, "keep_dims", &keep) < 0 || axes_flags(k, axes, n, x->rank, flags) < 0) return -1;
    int orank;
    int64_t odims[MIL_MAX_RANK];
    reduced_shape(x, flags, (int)keep, &orank, odims);
    Red r;
    red_init(k, &r, x, flags);
    RtTensor *o = kout(k, 0, x->dtype, orank, odims);
    for (int64_t ou = 0; ou < r.outer; ou++) {
        int64_t base = red_base(&r, ou);
        if (rt_is_float(x->dtype)) {
            const float *xd = x->data;
            double acc = id == MIL_OP_REDUCE_MAX ? -INFINITY : 0;
            for (int64_t i = 0; i < r.inner; i++) {
                float v = xd[base + red_at(&r, i)];
                if (id == MIL_OP_REDUCE_MAX) {
                    if (v > acc || isnan(v)) acc = v;
                } else {
                    acc += v;
                }
            }
            if (id == MIL_OP_REDUCE_MEAN) acc = r.inner ? acc / (double)r.inner : NAN;
            ((float *)o->data)[ou] = (float)acc;
        } else {
            const int32_t *xd = x->data;
            int64_t acc = id == MIL_OP_REDUCE_MAX ? INT64_MIN : 0;
            for (int64_t i = 0; i < r.inner; i++) {
                int64_t v = xd[base + red_at(&r, i)];
                if (id == MIL_OP_REDUCE_MAX) acc = v > acc ? v : acc;
                else acc += v;
            }
            if (id == MIL_OP_REDUCE_MEAN) acc = r.inner ? acc / r.inner : 0;
            ((int32_t *)o->data)[ou] = wrap_int(x->dtype, acc);
        }
    }
    red_free(&r);
    return 0;
}

int k_reduce_argmax(Kctx *k) {
    const RtTensor *x = kin(k, "x");
    int64_t axis, keep;
    int a, flags[MIL_MAX_RANK] = {0};
    if (kin_int(k, "axis", &axis) < 0 || knorm_axis(k, axis, x->rank, &a) < 0) return -1;
    if (kin_int(k, "keep_dims", &keep) < 0) return -1;
    const char *odt = kin_str(k, "output_dtype");
    if (!odt) return -1;
    MilDType out_dt = !strcasecmp(odt, "uint16") ? MIL_UINT16 : MIL_INT32;   /* as the op table reads it */
    flags[a] = 1;
    int orank;
    int64_t odims[MIL_MAX_RANK];
    reduced_shape(x, flags, (int)keep, &orank, odims);
    Red r;
    red_init(k, &r, x, flags);
    RtTensor *o = kout(k, 0, out_dt, orank, odims);
    int32_t *od = o->data;
    for (int64_t ou = 0; ou < r.outer; ou++) {
        int64_t base = red_base(&r, ou), best = 0;
        if (rt_is_float(x->dtype)) {
            const float *xd = x->data;
            float bv = xd[base];
            for (int64_t i = 1; i < r.inner && !isnan(bv); i++) {
                float v = xd[base + red_at(&r, i)];
                if (v > bv || isnan(v)) bv = v, best = i;
            }
        } else {
            const int32_t *xd = x->data;
            int32_t bv = xd[base];
            for (int64_t i = 1; i < r.inner; i++) {
                int32_t v = xd[base + red_at(&r, i)];
                if (v > bv) bv = v, best = i;
            }
        }
        od[ou] = wrap_int(out_dt, best);
    }
    red_free(&r);
    return 0;
}
