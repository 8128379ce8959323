/* k_shape.c - kernels that move elements without arithmetic: reshape, expand_dims, squeeze,
 * transpose, tile, concat, split, slice_by_index, slice_update, gather, gather_along_axis.
 *
 * Every element is 4 bytes (float or int32), so these kernels copy uint32_t regardless of
 * dtype. Index inputs may be run-time values (the KV-cache write's begin/end).
 */
#include "runtime/rt_internal.h"

#include <string.h>

#include "common/half.h"

static RtTensor *copy_as(Kctx *k, const RtTensor *x, int rank, const int64_t *dims) {
    RtTensor *o = kout(k, 0, x->dtype, rank, dims);
    memcpy(o->data, x->data, (size_t)rt_numel(x) * 4);
    return o;
}

/* ==== reshape, expand_dims, squeeze ==== */

int k_reshape(Kctx *k) {
    const RtTensor *x = kin(k, "x");
    int64_t sh[MIL_MAX_RANK], known = 1;
    int r, neg = -1;
    if (kin_ints(k, "shape", sh, MIL_MAX_RANK, &r) < 0) return -1;
    for (int i = 0; i < r; i++) {
        if (sh[i] == 0) {
            int xi = x->rank - (r - i);   /* 0 copies the matching dim (right-aligned, as mil/ops.c infers) */
            sh[i] = xi >= 0 ? x->dims[xi] : 1;
        }
        if (sh[i] == -1) {
            if (neg >= 0) return kfail(k, "shape has more than one -1");
            neg = i;
        } else if (sh[i] < 0) {
            return kfail(k, "shape entry %lld is invalid", (long long)sh[i]);
        } else {
            known *= sh[i];
        }
    }
    int64_t n = rt_numel(x);
    if (neg >= 0) {
        if (known == 0 || n % known) return kfail(k, "cannot reshape %lld elements with a -1 entry", (long long)n);
        sh[neg] = n / known;
    } else if (known != n) {
        return kfail(k, "cannot reshape %lld elements to %lld", (long long)n, (long long)known);
    }
    copy_as(k, x, r, sh);
    return 0;
}

int k_expand_dims(Kctx *k) {
    const RtTensor *x = kin(k, "x");
    int64_t axes[MIL_MAX_RANK], od[MIL_MAX_RANK];
    int n, ins[MIL_MAX_RANK] = {0};
    if (kin_ints(k, "axes", axes, MIL_MAX_RANK, &n) < 0) return -1;
    int orank = x->rank + n;
    if (orank > MIL_MAX_RANK) return kfail(k, "result rank %d is too large", orank);
    for (int i = 0; i < n; i++) {
        int a;
        if (knorm_axis(k, axes[i], orank, &a) < 0) return -1;
        ins[a] = 1;
    }
    for (int i = 0, j = 0; i < orank; i++) od[i] = ins[i] ? 1 : x->dims[j++];
    copy_as(k, x, orank, od);
    return 0;
}

int k_squeeze(Kctx *k) {
    const RtTensor *x = kin(k, "x");
    int drop[MIL_MAX_RANK] = {0}, orank = 0;
    int64_t od[MIL_MAX_RANK];
    if (kin(k, "axes")) {
        int64_t axes[MIL_MAX_RANK];
        int n;
        if (kin_ints(k, "axes", axes, MIL_MAX_RANK, &n) < 0) return -1;
        for (int i = 0; i < n; i++) {
            int a;
            if (knorm_axis(k, axes[i], x->rank, &a) < 0) return -1;
            if (x->dims[a] != 1) return kfail(k, "axis %d has size %lld; only size-1 axes can be squeezed", a, (long long)x->dims[a]);
            drop[a] = 1;
        }
    } else {
        for (int a = 0; a < x->rank; a++) drop[a] = x->dims[a] == 1;
    }
    for (int a = 0; a < x->rank; a++)
        if (!drop[a]) od[orank++] = x->dims[a];
    copy_as(k, x, orank, od);
    return 0;
}

/* ==== transpose, tile ==== */

int k_transpose(Kctx *k) {
    const RtTensor *x = kin(k, "x");
    int64_t perm[MIL_MAX_RANK], od[MIL_MAX_RANK], xs[MIL_MAX_RANK], ps[MIL_MAX_RANK];
    int n, seen[MIL_MAX_RANK] = {0};
    if (kin_ints(k, "perm", perm, MIL_MAX_RANK, &n) < 0) return -1;
    if (n != x->rank) return kfail(k, "perm has %d entries, x has rank %d", n, x->rank);
    shape_strides(x->rank, x->dims, xs);
    for (int i = 0; i < n; i++) {
        int a;
        if (knorm_axis(k, perm[i], x->rank, &a) < 0) return -1;
        if (seen[a]++) return kfail(k, "perm lists axis %d twice", a);
        od[i] = x->dims[a];
        ps[i] = xs[a];                      /* input stride of output axis i */
    }
    RtTensor *o = kout(k, 0, x->dtype, n, od);
    const uint32_t *xd = x->data;
    uint32_t *odata = o->data;
    int64_t total = rt_numel(o), c[MIL_MAX_RANK] = {0}, off = 0;
    if (n == 0) {
        if (total) odata[0] = xd[0];
        return 0;
    }
    int64_t last = od[n - 1], lstr = ps[n - 1];
    for (int64_t i = 0; i < total; i += last) {
        for (int64_t j = 0; j < last; j++) odata[i + j] = xd[off + j * lstr];
        for (int a = n - 2; a >= 0; a--) {   /* next row: odometer over the other axes */
            off += ps[a];
            if (++c[a] < od[a]) break;
            off -= ps[a] * od[a];
            c[a] = 0;
        }
    }
    return 0;
}

int k_tile(Kctx *k) {
    const RtTensor *x = kin(k, "x");
    int64_t reps[MIL_MAX_RANK], od[MIL_MAX_RANK], xs[MIL_MAX_RANK];
    int n;
    if (kin_ints(k, "reps", reps, MIL_MAX_RANK, &n) < 0) return -1;
    if (n != x->rank) return kfail(k, "reps has %d entries, x has rank %d", n, x->rank);
    for (int a = 0; a < n; a++) {
        if (reps[a] < 1) return kfail(k, "reps entries must be >= 1");
        od[a] = x->dims[a] * reps[a];
    }
    RtTensor *o = kout(k, 0, x->dtype, n, od);
    if (n == 0) {
        memcpy(o->data, x->data, 4);
        return 0;
    }
    shape_strides(n, x->dims, xs);
    const uint32_t *xd = x->data;
    uint32_t *odata = o->data;
    int64_t total = rt_numel(o), last = od[n - 1], xlast = x->dims[n - 1], c[MIL_MAX_RANK] = {0};
    if (total == 0) return 0;
    for (int64_t i = 0; i < total; i += last) {
        int64_t src = 0;
        for (int a = 0; a + 1 < n; a++) src += (c[a] % x->dims[a]) * xs[a];
        for (int64_t r = 0; r < reps[n - 1]; r++) memcpy(odata + i + r * xlast, xd + src, (size_t)xlast * 4);
        for (int a = n - 2; a >= 0; a--) {
            if (++c[a] < od[a]) break;
            c[a] = 0;
        }
    }
    return 0;
}

/* ==== concat, split ==== */

int k_concat(Kctx *k) {
    int nv = kin_count(k, "values");
    const RtTensor *v0 = kin_at(k, "values", 0);
    int64_t axis, inter;
    if (kin_int(k, "axis", &axis) < 0 || kin_int(k, "interleave", &inter) < 0) return -1;
    int rank = v0->rank, a = 0;
    if (rank > 0 && knorm_axis(k, axis, rank, &a) < 0) return -1;
    int64_t od[MIL_MAX_RANK], total = 0;
    memcpy(od, v0->dims, sizeof od);
    for (int i = 0; i < nv; i++) {
        const RtTensor *v = kin_at(k, "values", i);
        if (v->rank != rank || v->dtype != v0->dtype) return kfail(k, "value %d differs in rank or dtype from value 0", i);
        for (int d = 0; d < rank; d++)
            if ((d != a || inter) && v->dims[d] != v0->dims[d]) return kfail(k, "value %d has size %lld at axis %d, value 0 has %lld", i, (long long)v->dims[d], d, (long long)v0->dims[d]);
        total += rank ? v->dims[a] : 1;
    }
    int orank = rank ? rank : 1;
    od[rank ? a : 0] = total;
    RtTensor *o = kout(k, 0, v0->dtype, orank, od);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < a && rank; d++) outer *= v0->dims[d];
    for (int d = a + 1; d < rank; d++) inner *= v0->dims[d];
    uint32_t *dst = o->data;
    if (!inter) {
        for (int64_t ou = 0; ou < outer; ou++)
            for (int i = 0; i < nv; i++) {
                const RtTensor *v = kin_at(k, "values", i);
                int64_t block = (rank ? v->dims[a] : 1) * inner;
                memcpy(dst, (const uint32_t *)v->data + ou * block, (size_t)block * 4);
                dst += block;
            }
    } else {
        int64_t d = rank ? v0->dims[a] : 1;
        for (int64_t ou = 0; ou < outer; ou++)
            for (int64_t j = 0; j < d; j++)
                for (int i = 0; i < nv; i++) {
                    const RtTensor *v = kin_at(k, "values", i);
                    memcpy(dst, (const uint32_t *)v->data + (ou * d + j) * inner, (size_t)inner * 4);
                    dst += inner;
                }
    }
    return 0;
}

int k_split(Kctx *k) {
    const RtTensor *x = kin(k, "x");
    int64_t axis, sizes[MIL_MAX_OUTPUTS], ns = -1;
    int a, n = 0;
    if (kin_int(k, "axis", &axis) < 0 || knorm_axis(k, axis, x->rank, &a) < 0) return -1;
    if (kin(k, "split_sizes")) {
        if (kin_ints(k, "split_sizes", sizes, MIL_MAX_OUTPUTS, &n) < 0) return -1;
    } else {
        if (kin_int(k, "num_splits", &ns) < 0) return -1;
        if (ns < 1 || ns > MIL_MAX_OUTPUTS || x->dims[a] % ns) return kfail(k, "num_splits %lld does not divide axis %d", (long long)ns, a);
        n = (int)ns;
        for (int i = 0; i < n; i++) sizes[i] = x->dims[a] / ns;
    }
    int64_t sum = 0;
    for (int i = 0; i < n; i++) sum += sizes[i];
    if (sum != x->dims[a] || n != k->p->n_out) return kfail(k, "split sizes do not cover axis %d", a);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < a; d++) outer *= x->dims[d];
    for (int d = a + 1; d < x->rank; d++) inner *= x->dims[d];
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        int64_t od[MIL_MAX_RANK];
        memcpy(od, x->dims, sizeof od);
        od[a] = sizes[i];
        RtTensor *o = kout(k, i, x->dtype, x->rank, od);
        for (int64_t ou = 0; ou < outer; ou++)
            memcpy((uint32_t *)o->data + ou * sizes[i] * inner, (const uint32_t *)x->data + (ou * x->dims[a] + at) * inner,
                   (size_t)(sizes[i] * inner) * 4);
        at += sizes[i];
    }
    return 0;
}

/* ==== slicing ==== */

static int mask_vec(Kctx *k, const char *param, int rank, int64_t *out) {
    int n;
    for (int i = 0; i < rank; i++) out[i] = 0;
    if (!kin(k, param)) return 0;
    if (kin_ints(k, param, out, MIL_MAX_RANK, &n) < 0) return -1;
    if (n != rank) return kfail(k, "%s has %d values, x has rank %d", param, n, rank);
    return 0;
}

/* Python slice semantics per axis (what coremltools' value inference computes). */
int slice_resolve(Kctx *k, const RtTensor *x, SliceSpec *s) {
    int r = x->rank, nb, ne;
    int64_t b[MIL_MAX_RANK], e[MIL_MAX_RANK], st[MIL_MAX_RANK], bm[MIL_MAX_RANK], em[MIL_MAX_RANK], sm[MIL_MAX_RANK];
    if (kin_ints(k, "begin", b, MIL_MAX_RANK, &nb) < 0 || kin_ints(k, "end", e, MIL_MAX_RANK, &ne) < 0) return -1;
    if (nb != r || ne != r) return kfail(k, "begin/end have %d/%d values, x has rank %d", nb, ne, r);
    for (int i = 0; i < r; i++) st[i] = 1;
    if (kin(k, "stride")) {
        int n;
        if (kin_ints(k, "stride", st, MIL_MAX_RANK, &n) < 0) return -1;
        if (n != r) return kfail(k, "stride has %d values, x has rank %d", n, r);
    }
    if (mask_vec(k, "begin_mask", r, bm) < 0 || mask_vec(k, "end_mask", r, em) < 0 || mask_vec(k, "squeeze_mask", r, sm) < 0)
        return -1;
    s->rank = r;
    for (int i = 0; i < r; i++) {
        int64_t d = x->dims[i], step = st[i];
        s->squeeze[i] = (int)sm[i];
        if (sm[i]) {
            int64_t at = b[i] < 0 ? b[i] + d : b[i];
            if (at < 0 || at >= d) return kfail(k, "index %lld is out of range for axis %d (size %lld)", (long long)b[i], i, (long long)d);
            s->start[i] = at, s->step[i] = 1, s->count[i] = 1;
            continue;
        }
        if (step == 0) return kfail(k, "stride is 0 at axis %d", i);
        int64_t lo = step > 0 ? 0 : -1, hi = step > 0 ? d : d - 1, bb, ee;
        if (bm[i]) bb = step > 0 ? lo : hi;
        else {
            bb = b[i] < 0 ? b[i] + d : b[i];
            bb = bb < lo ? lo : (bb > hi ? hi : bb);
        }
        if (em[i]) ee = step > 0 ? hi : lo;
        else {
            ee = e[i] < 0 ? e[i] + d : e[i];
            ee = ee < lo ? lo : (ee > hi ? hi : ee);
        }
        int64_t cnt = step > 0 ? (ee > bb ? (ee - bb + step - 1) / step : 0) : (bb > ee ? (bb - ee - step - 1) / -step : 0);
        s->start[i] = bb, s->step[i] = step, s->count[i] = cnt;
    }
    return 0;
}

/* Calls copy for every row of the slice (last axis run). to_x: 1 copies update -> x. */
static void slice_walk(const SliceSpec *s, const RtTensor *x, uint32_t *xd, uint32_t *flat, int to_x) {
    int r = s->rank;
    int64_t xs[MIL_MAX_RANK], c[MIL_MAX_RANK] = {0}, total = 1;
    shape_strides(r, x->dims, xs);
    for (int i = 0; i < r; i++) total *= s->count[i];
    if (total == 0) return;
    if (r == 0) {
        if (to_x) xd[0] = flat[0];
        else flat[0] = xd[0];
        return;
    }
    int64_t len = s->count[r - 1], lstep = s->step[r - 1] * xs[r - 1];
    for (int64_t done = 0; done < total; done += len) {
        int64_t off = 0;
        for (int i = 0; i < r; i++) off += (s->start[i] + c[i] * s->step[i]) * xs[i];
        uint32_t *row = flat + done;
        if (lstep == 1) {
            if (to_x) memcpy(xd + off, row, (size_t)len * 4);
            else memcpy(row, xd + off, (size_t)len * 4);
        } else {
            for (int64_t j = 0; j < len; j++) {
                if (to_x) xd[off + j * lstep] = row[j];
                else row[j] = xd[off + j * lstep];
            }
        }
        for (int i = r - 2; i >= 0; i--) {
            if (++c[i] < s->count[i]) break;
            c[i] = 0;
        }
    }
}

int k_slice_by_index(Kctx *k) {
    const RtTensor *x = kin(k, "x");
    SliceSpec s;
    if (slice_resolve(k, x, &s) < 0) return -1;
    int64_t od[MIL_MAX_RANK];
    int orank = 0;
    for (int i = 0; i < s.rank; i++)
        if (!s.squeeze[i]) od[orank++] = s.count[i];
    RtTensor *o = kout(k, 0, x->dtype, orank, od);
    slice_walk(&s, x, x->data, o->data, 0);
    return 0;
}

int k_slice_update(Kctx *k) {
    const RtTensor *x = kin(k, "x"), *u = kin(k, "update");
    SliceSpec s;
    if (slice_resolve(k, x, &s) < 0) return -1;
    int64_t n = 1;
    int ui = 0;
    for (int i = 0; i < s.rank; i++) {
        n *= s.count[i];
        if (s.squeeze[i]) continue;
        if (ui < u->rank && u->dims[ui] != s.count[i]) break;
        ui++;
    }
    if (n != rt_numel(u) || ui != u->rank) {
        char us[160];
        rt_tensor_str(u, us, sizeof us);
        return kfail(k, "update %s does not have the shape of the slice (it holds %lld elements)", us, (long long)n);
    }
    if (u->dtype != x->dtype) return kfail(k, "update and x must have the same dtype");
    RtTensor *o;
    if (k->p->flags & PLAN_STATE_INPLACE) {
        Slot *os = &k->f->slots[k->p->out_slots[0]];
        os->t = *x;                 /* x is the state's own buffer */
        os->buf_cls = -1;
        o = &os->t;
    } else {
        o = copy_as(k, x, x->rank, x->dims);
    }
    slice_walk(&s, o, o->data, u->data, 1);
    return 0;
}

/* ==== gather ==== */

static int index_at(Kctx *k, const int32_t *idx, int64_t i, int64_t dim, int64_t *out) {
    int64_t v = idx[i];
    *out = 0;
    if (v < 0) v += dim;
    if (v < 0 || v >= dim) return kfail(k, "index %d is out of range for an axis of size %lld", idx[i], (long long)dim);
    *out = v;
    return 0;
}

int k_gather(Kctx *k) {
    Slot *xs = kin_slot(k, "x", 0);
    const RtTensor *x = &xs->t, *ix = kin(k, "indices");
    int64_t axis, bd;
    int a;
    if (kin_int(k, "axis", &axis) < 0 || knorm_axis(k, axis, x->rank, &a) < 0 || kin_int(k, "batch_dims", &bd) < 0) return -1;
    if (bd < 0 || bd > a || bd > ix->rank) return kfail(k, "batch_dims %lld is out of range", (long long)bd);
    for (int i = 0; i < bd; i++)
        if (x->dims[i] != ix->dims[i]) return kfail(k, "batch dimension %d differs between x and indices", i);
    int64_t od[MIL_MAX_RANK];
    int orank = 0;
    for (int i = 0; i < a; i++) od[orank++] = x->dims[i];
    for (int i = (int)bd; i < ix->rank; i++) od[orank++] = ix->dims[i];
    for (int i = a + 1; i < x->rank; i++) od[orank++] = x->dims[i];
    if (orank > MIL_MAX_RANK) return kfail(k, "result rank is too large");
    RtTensor *o = kout(k, 0, x->dtype, orank, od);
    int64_t nb = 1, mid = 1, ni = 1, inner = 1, d = x->dims[a];
    for (int i = 0; i < bd; i++) nb *= x->dims[i];
    for (int i = (int)bd; i < a; i++) mid *= x->dims[i];
    for (int i = (int)bd; i < ix->rank; i++) ni *= ix->dims[i];
    for (int i = a + 1; i < x->rank; i++) inner *= x->dims[i];
    const int32_t *id = ix->data;
    uint32_t *dst = o->data;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t m = 0; m < mid; m++)
            for (int64_t i = 0; i < ni; i++) {
                int64_t row;
                if (index_at(k, id, b * ni + i, d, &row) < 0) return -1;
                int64_t src = ((b * mid + m) * d + row) * inner;
                if (xs->f16) {
                    float *f = (float *)dst;
                    for (int64_t j = 0; j < inner; j++) f[j] = f16_to_f32(xs->f16[src + j]);
                } else {
                    memcpy(dst, (const uint32_t *)x->data + src, (size_t)inner * 4);
                }
                dst += inner;
            }
    return 0;
}

int k_gather_along_axis(Kctx *k) {
    Slot *xs = kin_slot(k, "x", 0);
    const RtTensor *x = &xs->t, *ix = kin(k, "indices");
    int64_t axis;
    int a;
    if (kin_int(k, "axis", &axis) < 0 || knorm_axis(k, axis, x->rank, &a) < 0) return -1;
    if (ix->rank != x->rank) return kfail(k, "indices must have the rank of x");
    for (int i = 0; i < x->rank; i++)
        if (i != a && ix->dims[i] != x->dims[i]) return kfail(k, "indices and x differ at axis %d", i);
    RtTensor *o = kout(k, 0, x->dtype, ix->rank, ix->dims);
    int64_t outer = 1, inner = 1, d = x->dims[a], di = ix->dims[a];
    for (int i = 0; i < a; i++) outer *= x->dims[i];
    for (int i = a + 1; i < x->rank; i++) inner *= x->dims[i];
    const int32_t *id = ix->data;
    uint32_t *dst = o->data;
    for (int64_t ou = 0; ou < outer; ou++)
        for (int64_t j = 0; j < di; j++)
            for (int64_t in = 0; in < inner; in++) {
                int64_t at = (ou * di + j) * inner + in, row;
                if (index_at(k, id, at, d, &row) < 0) return -1;
                int64_t src = (ou * d + row) * inner + in;
                if (xs->f16) ((float *)dst)[at] = f16_to_f32(xs->f16[src]);
                else dst[at] = ((const uint32_t *)x->data)[src];
            }
    return 0;
}
