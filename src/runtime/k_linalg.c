/* k_linalg.c - conv, linear and matmul through OpenBLAS sgemm (float32 accumulation).
 *
 * conv: 1-D and 2-D (x rank 3 or 4), any kernel size, strides, dilations, groups and padding
 * mode. A 1x1 kernel with unit strides and no padding (every projection the converter writes)
 * is one product per group; anything else goes through im2col first. Weights kept as fp16
 * bits (the usual case for consts) go through k_half.c, float weights straight to sgemm.
 */
#include "runtime/rt_internal.h"

#include <cblas.h>
#include <string.h>

/* ==== conv ==== */

typedef struct ConvGeom {
    int ns;                         /* spatial axes: 1 or 2 */
    int64_t n, cin, cout, groups;
    int64_t in[2], k[2], out[2], stride[2], dil[2], pad_lo[2];
} ConvGeom;

static int conv_geometry(Kctx *k, const RtTensor *x, const RtTensor *w, ConvGeom *g) {
    memset(g, 0, sizeof *g);
    if (x->rank != 3 && x->rank != 4) return kfail(k, "x must have rank 3 or 4 (1-D or 2-D convolution), got %d", x->rank);
    if (w->rank != x->rank) return kfail(k, "weight must have rank %d", x->rank);
    g->ns = x->rank - 2;
    g->n = x->dims[0];
    g->cin = x->dims[1];
    g->cout = w->dims[0];
    int64_t strides[2], dil[2], pad[4], groups;
    int n1, n2, n3;
    if (kin_ints(k, "strides", strides, 2, &n1) < 0 || kin_ints(k, "dilations", dil, 2, &n2) < 0 ||
        kin_ints(k, "pad", pad, 4, &n3) < 0 || kin_int(k, "groups", &groups) < 0)
        return -1;
    if (n1 != g->ns || n2 != g->ns || n3 != 2 * g->ns) return kfail(k, "strides/dilations/pad do not match the spatial rank");
    const char *pt = kin_str(k, "pad_type");
    if (!pt) return -1;
    if (groups < 1 || g->cin % groups || g->cout % groups || w->dims[1] != g->cin / groups)
        return kfail(k, "channels (in %lld, out %lld, weight in %lld) do not fit groups %lld", (long long)g->cin,
                     (long long)g->cout, (long long)w->dims[1], (long long)groups);
    g->groups = groups;
    for (int i = 0; i < g->ns; i++) {
        g->in[i] = x->dims[2 + i];
        g->k[i] = w->dims[2 + i];
        g->stride[i] = strides[i];
        g->dil[i] = dil[i];
        if (strides[i] < 1 || dil[i] < 1) return kfail(k, "strides and dilations must be >= 1");
        int64_t ek = (g->k[i] - 1) * g->dil[i] + 1, total;
        if (!strcmp(pt, "valid")) {
            g->pad_lo[i] = 0;
            total = 0;
        } else if (!strcmp(pt, "custom")) {
            g->pad_lo[i] = pad[2 * i];
            total = pad[2 * i] + pad[2 * i + 1];
        } else if (!strcmp(pt, "same") || !strcmp(pt, "same_lower")) {
            int64_t o = (g->in[i] + g->stride[i] - 1) / g->stride[i];
            total = (o - 1) * g->stride[i] + ek - g->in[i];
            if (total < 0) total = 0;
            g->pad_lo[i] = !strcmp(pt, "same") ? total / 2 : (total + 1) / 2;
        } else {
            return kfail(k, "unknown pad_type '%s'", pt);
        }
        if (g->in[i] + total < ek) return kfail(k, "input is smaller than the kernel");
        g->out[i] = (g->in[i] + total - ek) / g->stride[i] + 1;
    }
    if (g->ns == 1) g->in[1] = g->k[1] = g->out[1] = g->stride[1] = g->dil[1] = 1;
    return 0;
}

/* col (cin_g * kh * kw, oh * ow) for one batch item and group. */
static void im2col(const float *x, const ConvGeom *g, float *col) {
    int64_t cin_g = g->cin / g->groups, ohw = g->out[0] * g->out[1];
    for (int64_t c = 0; c < cin_g; c++)
        for (int64_t ky = 0; ky < g->k[0]; ky++)
            for (int64_t kx = 0; kx < g->k[1]; kx++) {
                float *row = col + ((c * g->k[0] + ky) * g->k[1] + kx) * ohw;
                const float *plane = x + c * g->in[0] * g->in[1];
                for (int64_t oy = 0; oy < g->out[0]; oy++) {
                    int64_t iy = oy * g->stride[0] - g->pad_lo[0] + ky * g->dil[0];
                    for (int64_t ox = 0; ox < g->out[1]; ox++) {
                        int64_t ix = g->ns == 2 ? ox * g->stride[1] - g->pad_lo[1] + kx * g->dil[1] : 0;
                        int inside = iy >= 0 && iy < g->in[0] && ix >= 0 && ix < g->in[1];
                        row[oy * g->out[1] + ox] = inside ? plane[iy * g->in[1] + ix] : 0.0f;
                    }
                }
            }
}

int k_conv(Kctx *k) {
    const Slot *wslot = kin_slot(k, "weight", 0);
    const RtTensor *x = kin(k, "x"), *w = &wslot->t, *bias = kin(k, "bias");
    const uint16_t *wh = wslot->f16;   /* weights kept as fp16 bits (k_half.c) */
    if (!rt_is_float(x->dtype) || !rt_is_float(w->dtype)) return kfail(k, "x and weight must be fp16 or fp32");
    ConvGeom g;
    if (conv_geometry(k, x, w, &g) < 0) return -1;
    if (bias && rt_numel(bias) != g.cout) return kfail(k, "bias must have %lld values", (long long)g.cout);
    int64_t od[4] = {g.n, g.cout, g.out[0], g.out[1]};
    RtTensor *o = kout(k, 0, x->dtype, x->rank, od);
    int64_t cin_g = g.cin / g.groups, cout_g = g.cout / g.groups;
    int64_t in_sp = g.in[0] * g.in[1], out_sp = g.out[0] * g.out[1], kk = cin_g * g.k[0] * g.k[1];
    int pointwise = g.k[0] == 1 && g.k[1] == 1 && g.stride[0] == 1 && g.stride[1] == 1 && g.pad_lo[0] == 0 &&
                    g.pad_lo[1] == 0 && out_sp == in_sp;
    float *col = NULL;
    int col_cls = -1;
    if (!pointwise) col = pool_get(k->f->m->pool, (size_t)(kk * out_sp) * 4, &col_cls);
    const float *xd = x->data, *wd = w->data;
    float *odata = o->data;
    for (int64_t b = 0; b < g.n; b++)
        for (int64_t gr = 0; gr < g.groups; gr++) {
            const float *xg = xd + (b * g.cin + gr * cin_g) * in_sp;
            const float *src = xg;
            if (!pointwise) {
                im2col(xg, &g, col);
                src = col;
            }
            float *dst = odata + (b * g.cout + gr * cout_g) * out_sp;
            if (wh)
                half_matmul(k, wh + gr * cout_g * kk, cout_g, kk, src, 0, out_sp, dst, 0);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout_g, (int)out_sp, (int)kk, 1.0f,
                            wd + gr * cout_g * kk, (int)kk, src, (int)out_sp, 0.0f, dst, (int)out_sp);
        }
    if (col) pool_put(k->f->m->pool, col, col_cls);
    if (bias) {
        const float *bd = bias->data;
        for (int64_t b = 0; b < g.n; b++)
            for (int64_t c = 0; c < g.cout; c++) {
                float *row = odata + (b * g.cout + c) * out_sp;
                for (int64_t s = 0; s < out_sp; s++) row[s] += bd[c];
            }
    }
    return 0;
}

/* ==== linear ==== */

int k_linear(Kctx *k) {
    const Slot *wslot = kin_slot(k, "weight", 0);
    const RtTensor *x = kin(k, "x"), *w = &wslot->t, *bias = kin(k, "bias");
    if (!rt_is_float(x->dtype) || !rt_is_float(w->dtype)) return kfail(k, "integer linear is not supported");
    if (x->rank < 1 || w->rank != 2 || x->dims[x->rank - 1] != w->dims[1])
        return kfail(k, "x's last dimension must equal weight's D_in (%lld)", (long long)w->dims[1]);
    int64_t din = w->dims[1], dout = w->dims[0], rows = din ? rt_numel(x) / din : 0;
    int64_t od[MIL_MAX_RANK];
    memcpy(od, x->dims, sizeof od);
    od[x->rank - 1] = dout;
    RtTensor *o = kout(k, 0, x->dtype, x->rank, od);
    if (rows && dout && wslot->f16)
        half_matmul(k, wslot->f16, dout, din, x->data, 1, rows, o->data, 1);
    else if (rows && dout)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)dout, (int)din, 1.0f, x->data, (int)din,
                    w->data, (int)din, 0.0f, o->data, (int)dout);
    if (bias) {
        if (rt_numel(bias) != dout) return kfail(k, "bias must have %lld values", (long long)dout);
        const float *bd = bias->data;
        float *odata = o->data;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < dout; c++) odata[r * dout + c] += bd[c];
    }
    return 0;
}

/* ==== matmul ==== */

int k_matmul(Kctx *k) {
    const RtTensor *x = kin(k, "x"), *y = kin(k, "y");
    int64_t tx, ty;
    if (kin_int(k, "transpose_x", &tx) < 0 || kin_int(k, "transpose_y", &ty) < 0) return -1;
    if (x->dtype != y->dtype) return kfail(k, "x and y must have the same dtype");
    if (x->rank < 1 || y->rank < 1) return kfail(k, "x and y must have rank >= 1");
    /* Matrix views: x (M, K), y (K, N) after the transposes; rank 1 is promoted. */
    int64_t xr = x->rank, yr = y->rank;
    int64_t xm = xr == 1 ? 1 : x->dims[xr - 2], xk = x->dims[xr - 1];
    int64_t yk = yr == 1 ? y->dims[0] : y->dims[yr - 2], yn = yr == 1 ? 1 : y->dims[yr - 1];
    if (xr == 1 && tx) return kfail(k, "x is rank 1; transpose_x must be false");
    if (yr == 1 && ty) return kfail(k, "y is rank 1; transpose_y must be false");
    int64_t M = tx ? xk : xm, K = tx ? xm : xk, K2 = ty ? yn : yk, N = ty ? yk : yn;
    if (K != K2) return kfail(k, "inner dimensions differ (%lld vs %lld)", (long long)K, (long long)K2);
    /* Batch dims broadcast. */
    int xb = xr > 2 ? (int)xr - 2 : 0, yb = yr > 2 ? (int)yr - 2 : 0, nb = xb > yb ? xb : yb;
    int64_t bdims[MIL_MAX_RANK], xbs[MIL_MAX_RANK], ybs[MIL_MAX_RANK], nbatch = 1;
    for (int a = 0; a < nb; a++) {
        int ia = a - (nb - xb), ib = a - (nb - yb);
        int64_t dx = ia >= 0 ? x->dims[ia] : 1, dy = ib >= 0 ? y->dims[ib] : 1;
        if (dx != dy && dx != 1 && dy != 1) return kfail(k, "batch dimensions do not broadcast (axis %d: %lld vs %lld)", a, (long long)dx, (long long)dy);
        bdims[a] = dx == 1 ? dy : dx;
        nbatch *= bdims[a];
    }
    /* Batch strides in matrices. */
    int64_t sx = 1, sy = 1;
    for (int a = nb - 1; a >= 0; a--) {
        int ia = a - (nb - xb), ib = a - (nb - yb);
        int64_t dx = ia >= 0 ? x->dims[ia] : 1, dy = ib >= 0 ? y->dims[ib] : 1;
        xbs[a] = dx == 1 ? 0 : sx;
        ybs[a] = dy == 1 ? 0 : sy;
        sx *= dx;
        sy *= dy;
    }
    int64_t od[MIL_MAX_RANK];
    int orank = 0;
    for (int a = 0; a < nb; a++) od[orank++] = bdims[a];
    if (xr != 1) od[orank++] = M;
    if (yr != 1) od[orank++] = N;
    RtTensor *o = kout(k, 0, x->dtype, orank, od);
    int64_t xmat = xm * xk, ymat = yk * yn, omat = M * N;
    for (int64_t b = 0; b < nbatch; b++) {
        int64_t rem = b, xo = 0, yo = 0;
        for (int a = nb - 1; a >= 0; a--) {
            int64_t c = rem % bdims[a];
            rem /= bdims[a];
            xo += c * xbs[a];
            yo += c * ybs[a];
        }
        if (rt_is_float(x->dtype)) {
            const float *A = (const float *)x->data + xo * xmat, *B = (const float *)y->data + yo * ymat;
            float *C = (float *)o->data + b * omat;
            if (M && N)
                cblas_sgemm(CblasRowMajor, tx ? CblasTrans : CblasNoTrans, ty ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                            (int)K, 1.0f, A, (int)(tx ? M : K), B, (int)(ty ? K : N), 0.0f, C, (int)N);
        } else {
            const int32_t *A = (const int32_t *)x->data + xo * xmat, *B = (const int32_t *)y->data + yo * ymat;
            int32_t *C = (int32_t *)o->data + b * omat;
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    int64_t acc = 0;
                    for (int64_t kk = 0; kk < K; kk++)
                        acc += (int64_t)A[tx ? kk * M + i : i * K + kk] * B[ty ? j * K + kk : kk * N + j];
                    C[i * N + j] = wrap_int(x->dtype, acc);
                }
        }
    }
    return 0;
}
