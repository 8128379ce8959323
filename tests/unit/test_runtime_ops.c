/* Interpreter kernels against naive C loops: elementwise ops with numpy broadcasting (fp16,
 * fp32, int), fp16 rounding and overflow at op outputs, unary functions and gelu modes,
 * softmax, layer_norm, reductions, conv (1x1 and general), linear, matmul, and the table
 * coverage (every op of mil/ops.h has a kernel). Shape ops and states: test_runtime_shape.c,
 * test_runtime_interp.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mil/ops.h"
#include "runtime/rt_internal.h"
#include "runtime_testutil.h"

/* ==== Elementwise binary ==== */

static double naive_bin(MilOpId id, double x, double y) {
    switch (id) {
    case MIL_OP_ADD: return x + y;
    case MIL_OP_SUB: return x - y;
    case MIL_OP_MUL: return x * y;
    case MIL_OP_REAL_DIV: return x / y;
    case MIL_OP_MAXIMUM: return x > y ? x : y;
    case MIL_OP_MINIMUM: return x < y ? x : y;
    case MIL_OP_POW: return pow(x, y);
    case MIL_OP_GREATER_EQUAL: return x >= y;
    case MIL_OP_GREATER: return x > y;
    case MIL_OP_LESS: return x < y;
    case MIL_OP_LESS_EQUAL: return x <= y;
    case MIL_OP_EQUAL: return x == y;
    case MIL_OP_NOT_EQUAL: return x != y;
    default: return 0;
    }
}

/* An input over caller data. */
static RtInput input(const char *name, MilDType dt, void *data, int rank, const int64_t *dims) {
    RtInput in;
    memset(&in, 0, sizeof in);
    in.name = name;
    in.t.dtype = dt;
    in.t.rank = rank;
    for (int i = 0; i < rank; i++) in.t.dims[i] = dims[i];
    in.t.data = data;
    return in;
}

static void binary_case(const char *type, MilDType dt, int xr, const int64_t *xd, int yr, const int64_t *yd) {
    const MilOpDef *def = mil_op_def(type);
    int cmp = def->id >= MIL_OP_GREATER_EQUAL && def->id <= MIL_OP_NOT_EQUAL;
    TProg t = tprog_begin();
    MilValue *x = mil_input(t.f, "x", dt, xr, xd), *y = mil_input(t.f, "y", dt, yr, yd);
    MilValue *o = mil_add_op1(t.f, type, "o", 2, (MilIn[]){MIL_IN("x", x), MIL_IN("y", y)});
    tprog_finish(&t, 1, &o);
    int64_t nx = 1, ny = 1;
    for (int i = 0; i < xr; i++) nx *= xd[i];
    for (int i = 0; i < yr; i++) ny *= yd[i];
    float xs[256], ys[256];
    int32_t xi[256], yi[256];
    if (dt == MIL_FP16) {
        trand(xs, nx, 4.0f, 11);
        trand(ys, ny, 4.0f, 29);
    } else {
        trand_f32(xs, nx, 4.0f, 11);
        trand_f32(ys, ny, 4.0f, 29);
    }
    if (def->id == MIL_OP_POW)
        for (int64_t i = 0; i < nx; i++) xs[i] = fabsf(xs[i]) + 0.5f;
    if (def->id == MIL_OP_REAL_DIV)
        for (int64_t i = 0; i < ny; i++) ys[i] = ys[i] >= 0 ? ys[i] + 0.25f : ys[i] - 0.25f;
    if (cmp)
        for (int64_t i = 0; i < nx && i < ny; i += 3) xs[i] = ys[i];
    if (dt == MIL_FP16) {   /* the adjustments above may need more than fp16's 11 bits */
        for (int64_t i = 0; i < nx; i++) xs[i] = round_f16(xs[i]);
        for (int64_t i = 0; i < ny; i++) ys[i] = round_f16(ys[i]);
    }
    for (int64_t i = 0; i < nx; i++) xi[i] = (int32_t)(xs[i] * 100);
    for (int64_t i = 0; i < ny; i++) yi[i] = (int32_t)(ys[i] * 100);
    if (def->id == MIL_OP_POW)
        for (int64_t i = 0; i < ny; i++) yi[i] = yi[i] % 4, xi[i % nx] = xi[i % nx] % 50;
    int is_int = dt == MIL_INT32;
    tprog_run(&t, 2,
              (RtInput[]){input("x", dt, is_int ? (void *)xi : (void *)xs, xr, xd),
                          input("y", dt, is_int ? (void *)yi : (void *)ys, yr, yd)},
              NULL);
    const RtTensor *out = tprog_out(&t, "o");
    int ro = xr > yr ? xr : yr;
    int64_t od[MIL_MAX_RANK];
    for (int a = 0; a < ro; a++) {
        int ia = a - (ro - xr), ib = a - (ro - yr);
        int64_t dx = ia >= 0 ? xd[ia] : 1, dy = ib >= 0 ? yd[ib] : 1;
        od[a] = dx == 1 ? dy : dx;
    }
    tassert_shape(out, ro, od);
    assert_int_equal(out->dtype, cmp ? MIL_BOOL : dt);
    int64_t n = rt_numel(out), c[MIL_MAX_RANK];
    double want[512];
    for (int64_t i = 0; i < n; i++) {
        tcoords(i, ro, od, c);
        int64_t ox = tbcast_offset(c, ro, xr, xd), oy = tbcast_offset(c, ro, yr, yd);
        if (is_int) {
            int64_t a = xi[ox], b = yi[oy], r;
            switch (def->id) {
            case MIL_OP_POW: r = 1; for (int64_t k = 0; k < b; k++) r *= a; if (b < 0) r = a == 1 ? 1 : 0; break;
            case MIL_OP_REAL_DIV: r = b ? (int64_t)((double)a / (double)b) : 0; break;
            default: r = (int64_t)naive_bin(def->id, (double)a, (double)b);
            }
            assert_int_equal(((int32_t *)out->data)[i], (int32_t)r);
        } else if (cmp) {
            assert_int_equal(((int32_t *)out->data)[i], (int)naive_bin(def->id, xs[ox], ys[oy]));
        } else {
            /* the kernel computes in float32, then rounds: so does the reference here */
            float r = def->id == MIL_OP_POW ? powf(xs[ox], ys[oy]) : (float)naive_bin(def->id, xs[ox], ys[oy]);
            if (def->id == MIL_OP_ADD) r = xs[ox] + ys[oy];
            if (def->id == MIL_OP_SUB) r = xs[ox] - ys[oy];
            if (def->id == MIL_OP_MUL) r = xs[ox] * ys[oy];
            if (def->id == MIL_OP_REAL_DIV) r = xs[ox] / ys[oy];
            want[i] = r;
        }
    }
    if (!is_int && !cmp) {
        if (dt == MIL_FP16) tassert_f16(out->data, want, n, 0, type);
        else tassert_f32(out->data, want, n, 1e-6, type);
    }
    tprog_end(&t);
}

static void test_binary_broadcasting(void **state) {
    (void)state;
    static const char *const ops[] = {"add", "sub", "mul", "real_div", "maximum", "minimum", "pow",
                                      "greater_equal", "greater", "less", "less_equal", "equal", "not_equal"};
    const int64_t s234[] = {2, 3, 4}, s34[] = {3, 4}, s31[] = {3, 1}, s1[] = {1}, s214[] = {2, 1, 4}, s131[] = {1, 3, 1};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        binary_case(ops[i], MIL_FP16, 3, s234, 3, s234);   /* same shape */
        binary_case(ops[i], MIL_FP16, 3, s234, 2, s31);    /* lower rank, size-1 axis */
        binary_case(ops[i], MIL_FP16, 1, s1, 3, s234);     /* scalar-like x */
        binary_case(ops[i], MIL_FP16, 3, s214, 3, s131);   /* both sides broadcast */
        binary_case(ops[i], MIL_FP32, 2, s34, 3, s214);
        binary_case(ops[i], MIL_INT32, 3, s234, 2, s31);
    }
}

/* fp16 semantics at op outputs: overflow to inf, values rounded to 11 significant bits. */
static void test_fp16_rounding_and_overflow(void **state) {
    (void)state;
    TProg t = tprog_begin();
    const int64_t d[] = {4};
    MilValue *x = mil_input(t.f, "x", MIL_FP16, 1, d), *y = mil_input(t.f, "y", MIL_FP16, 1, d);
    MilValue *xf = mil_input(t.f, "xf", MIL_FP32, 1, d), *yf = mil_input(t.f, "yf", MIL_FP32, 1, d);
    MilValue *outs[4] = {mil_add_mul(t.f, "prod", x, y), mil_add_add(t.f, "sum", x, y), mil_add_add(t.f, "sum32", xf, yf)};
    /* (a + b) - b in fp16 loses what the intermediate rounding removed */
    outs[3] = mil_add_sub(t.f, "back", outs[1], y);
    tprog_finish(&t, 4, outs);
    float xs[4] = {300.0f, 65504.0f, 1.0f, -300.0f}, ys[4] = {300.0f, 32.0f, 0.00048828125f, 300.0f};
    tprog_run(&t, 4,
              (RtInput[]){input("x", MIL_FP16, xs, 1, d), input("y", MIL_FP16, ys, 1, d), input("xf", MIL_FP32, xs, 1, d),
                          input("yf", MIL_FP32, ys, 1, d)},
              NULL);
    const float *prod = tprog_out(&t, "prod")->data, *sum = tprog_out(&t, "sum")->data;
    const float *sum32 = tprog_out(&t, "sum32")->data, *back = tprog_out(&t, "back")->data;
    assert_true(isinf(prod[0]) && prod[0] > 0);          /* 90000 > 65504 */
    assert_true(isinf(prod[3]) && prod[3] < 0);
    assert_true(isinf(sum[1]));                          /* 65536 rounds to inf in fp16 */
    assert_true(sum32[1] == 65536.0f);                   /* fp32 keeps it */
    assert_true(sum[2] == 1.0f);                         /* 1 + 2^-11 ties to even: 1 */
    assert_true(sum32[2] == 1.00048828125f);
    assert_true(back[2] == 1.0f - 0.00048828125f);       /* 1 - 2^-11 is exact in fp16 */
    assert_true(isnan(back[1]) || isinf(back[1]));       /* inf - 32 stays inf */
    tprog_end(&t);
}

/* ==== Unary ==== */

static double naive_unary(const char *type, const char *mode, double v, double eps) {
    if (!strcmp(type, "sqrt")) return sqrt(v);
    if (!strcmp(type, "rsqrt")) return 1.0 / sqrt(v + eps);
    if (!strcmp(type, "exp")) return exp(v);
    if (!strcmp(type, "tanh")) return tanh(v);
    if (!strcmp(type, "silu")) return v / (1.0 + exp(-v));
    if (!strcmp(type, "relu")) return v > 0 ? v : 0;
    if (!strcmp(type, "sigmoid")) return 1.0 / (1.0 + exp(-v));
    if (!strcmp(mode, "EXACT")) return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    if (!strcmp(mode, "TANH_APPROXIMATION")) return 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    return v / (1.0 + exp(-1.702 * v));
}

static void unary_case(const char *type, const char *mode) {
    TProg t = tprog_begin();
    const int64_t d[] = {3, 20};
    MilValue *x = mil_input(t.f, "x", MIL_FP16, 2, d), *o;
    if (!strcmp(type, "gelu")) o = mil_add_gelu(t.f, "o", x, mode);
    else if (!strcmp(type, "rsqrt")) o = mil_add_rsqrt(t.f, "o", x, 1e-3);
    else o = mil_add_op1(t.f, type, "o", 1, (MilIn[]){MIL_IN("x", x)});
    tprog_finish(&t, 1, &o);
    float xs[60];
    trand(xs, 60, 6.0f, 7);
    if (!strcmp(type, "sqrt") || !strcmp(type, "rsqrt"))
        for (int i = 0; i < 60; i++) xs[i] = fabsf(xs[i]);
    tprog_run(&t, 1, (RtInput[]){input("x", MIL_FP16, xs, 2, d)}, NULL);
    double want[60];
    for (int i = 0; i < 60; i++) want[i] = naive_unary(type, mode ? mode : "", xs[i], (double)round_f16(1e-3f));
    tassert_f16(tprog_out(&t, "o")->data, want, 60, 1, type);
    tprog_end(&t);
}

static void test_unary(void **state) {
    (void)state;
    const char *ops[] = {"sqrt", "rsqrt", "exp", "tanh", "silu", "relu", "sigmoid"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) unary_case(ops[i], NULL);
    unary_case("gelu", "EXACT");
    unary_case("gelu", "TANH_APPROXIMATION");
    unary_case("gelu", "SIGMOID_APPROXIMATION");
    /* exp overflows fp16 past ~11.09 */
    TProg t = tprog_begin();
    const int64_t d[] = {2};
    MilValue *x = mil_input(t.f, "x", MIL_FP16, 1, d), *o = mil_add_exp(t.f, "o", x);
    tprog_finish(&t, 1, &o);
    float xs[2] = {11.0f, 11.1f};
    tprog_run(&t, 1, (RtInput[]){input("x", MIL_FP16, xs, 1, d)}, NULL);
    const float *r = tprog_out(&t, "o")->data;
    assert_true(isfinite(r[0]) && isinf(r[1]));
    tprog_end(&t);
}

/* ==== Softmax, layer_norm, reductions ==== */

static void test_softmax(void **state) {
    (void)state;
    const int64_t d[] = {2, 5, 3};
    for (int axis = -1; axis <= 1; axis += 2) {
        TProg t = tprog_begin();
        MilValue *x = mil_input(t.f, "x", MIL_FP16, 3, d), *o = mil_add_softmax(t.f, "o", x, axis);
        tprog_finish(&t, 1, &o);
        float xs[30];
        trand(xs, 30, 5.0f, 3);
        xs[0] = -INFINITY;   /* masked entry */
        tprog_run(&t, 1, (RtInput[]){input("x", MIL_FP16, xs, 3, d)}, NULL);
        int a = axis < 0 ? 2 : axis;
        double want[30];
        int64_t c[3];
        for (int64_t i = 0; i < 30; i++) {
            tcoords(i, 3, d, c);
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < d[a]; j++) {
                int64_t cc[3] = {c[0], c[1], c[2]};
                cc[a] = j;
                double v = xs[(cc[0] * 5 + cc[1]) * 3 + cc[2]];
                mx = v > mx ? v : mx;
            }
            for (int64_t j = 0; j < d[a]; j++) {
                int64_t cc[3] = {c[0], c[1], c[2]};
                cc[a] = j;
                sum += exp(xs[(cc[0] * 5 + cc[1]) * 3 + cc[2]] - mx);
            }
            want[i] = exp(xs[i] - mx) / sum;
        }
        tassert_f16(tprog_out(&t, "o")->data, want, 30, 1, "softmax");
        assert_true(tprog_out(&t, "o")->data != NULL && ((float *)tprog_out(&t, "o")->data)[0] == 0.0f);
        tprog_end(&t);
    }
}

static void layer_norm_case(int n_axes, const int32_t *axes, int with_affine) {
    const int64_t d[] = {2, 4, 3, 5};
    TProg t = tprog_begin();
    MilValue *x = mil_input(t.f, "x", MIL_FP16, 4, d);
    int norm[4] = {0};
    int64_t nd[4];
    int nr = 0;
    for (int i = 0; i < n_axes; i++) norm[axes[i] < 0 ? axes[i] + 4 : axes[i]] = 1;
    for (int a = 0; a < 4; a++)
        if (norm[a]) nd[nr++] = d[a];
    int64_t nn = 1;
    for (int i = 0; i < nr; i++) nn *= nd[i];
    float g[60], b[60];
    trand(g, nn, 2.0f, 5);
    trand(b, nn, 1.0f, 9);
    MilValue *gamma = with_affine ? tconst_f16(t.f, "g", nr, nd, g) : NULL;
    MilValue *beta = with_affine ? tconst_f16(t.f, "b", nr, nd, b) : NULL;
    MilValue *o = mil_add_layer_norm(t.f, "o", x, n_axes, axes, gamma, beta, 1e-5);
    tprog_finish(&t, 1, &o);
    float xs[120];
    trand(xs, 120, 3.0f, 17);
    tprog_run(&t, 1, (RtInput[]){input("x", MIL_FP16, xs, 4, d)}, NULL);
    double want[120];
    int64_t c[4];
    double eps = round_f16(1e-5f);
    for (int64_t i = 0; i < 120; i++) {
        tcoords(i, 4, d, c);
        double sum = 0, sq = 0;
        int64_t cnt = 0, gi = 0;
        for (int64_t j = 0; j < 120; j++) {
            int64_t cj[4];
            tcoords(j, 4, d, cj);
            int same = 1;
            for (int a = 0; a < 4; a++)
                if (!norm[a] && cj[a] != c[a]) same = 0;
            if (same) sum += xs[j], cnt++;
        }
        double mean = sum / (double)cnt;
        for (int64_t j = 0; j < 120; j++) {
            int64_t cj[4];
            tcoords(j, 4, d, cj);
            int same = 1;
            for (int a = 0; a < 4; a++)
                if (!norm[a] && cj[a] != c[a]) same = 0;
            if (same) sq += (xs[j] - mean) * (xs[j] - mean);
        }
        for (int a = 0; a < 4; a++)
            if (norm[a]) gi = gi * d[a] + c[a];
        double v = (xs[i] - mean) / sqrt(sq / (double)cnt + eps);
        if (with_affine) v = v * g[gi] + b[gi];
        want[i] = v;
    }
    tassert_f16(tprog_out(&t, "o")->data, want, 120, 1, "layer_norm");
    tprog_end(&t);
}

static void test_layer_norm(void **state) {
    (void)state;
    layer_norm_case(1, (int32_t[]){-1}, 1);      /* the RMSNorm trick's layout */
    layer_norm_case(1, (int32_t[]){1}, 1);       /* channel axis of NCHW (non-trailing) */
    layer_norm_case(2, (int32_t[]){1, 3}, 0);    /* two separated axes */
    layer_norm_case(2, (int32_t[]){2, 3}, 1);
    /* RMSNorm via layer_norm over [x, -x]: exactly x / rms(x) */
    TProg t = tprog_begin();
    const int64_t d[] = {1, 1, 8}, d2[] = {1, 1, 16};
    MilValue *x = mil_input(t.f, "x", MIL_FP16, 3, d);
    MilValue *neg = mil_add_mul(t.f, "neg", x, mil_const_fp16(t.f, "m1", -1.0f));
    MilValue *cat = mil_add_concat(t.f, "cat", 2, (MilValue *[]){x, neg}, -1, 0);
    MilValue *ln = mil_add_layer_norm(t.f, "ln", cat, 1, (int32_t[]){-1}, NULL, NULL, 1e-5);
    tprog_finish(&t, 1, &ln);
    float xs[8];
    trand(xs, 8, 2.0f, 77);
    tprog_run(&t, 1, (RtInput[]){input("x", MIL_FP16, xs, 3, d)}, NULL);
    const RtTensor *o = tprog_out(&t, "ln");
    tassert_shape(o, 3, d2);
    double ms = 0, want[16];
    for (int i = 0; i < 8; i++) ms += (double)xs[i] * xs[i];
    ms /= 8;
    for (int i = 0; i < 8; i++) want[i] = xs[i] / sqrt(ms + round_f16(1e-5f)), want[8 + i] = -want[i];
    tassert_f16(o->data, want, 16, 0, "rmsnorm");
    tprog_end(&t);
}

static void test_reductions(void **state) {
    (void)state;
    const int64_t d[] = {3, 4, 5};
    for (int keep = 0; keep <= 1; keep++) {
        TProg t = tprog_begin();
        MilValue *x = mil_input(t.f, "x", MIL_FP16, 3, d);
        MilValue *outs[5] = {
            mil_add_reduce_sum(t.f, "sum", x, 1, (int32_t[]){1}, keep),
            mil_add_reduce_mean(t.f, "mean", x, 2, (int32_t[]){0, 2}, keep),
            mil_add_reduce_max(t.f, "max", x, 1, (int32_t[]){-1}, keep),
            mil_add_reduce_argmax(t.f, "amax", x, 1, keep),
            mil_add_reduce_sum(t.f, "all", x, 0, NULL, keep),
        };
        tprog_finish(&t, 5, outs);
        float xs[60];
        trand(xs, 60, 3.0f, 23);
        xs[7] = xs[2] = 10.0f;   /* a tie for the max of column (0, *, 2): the first index wins */
        tprog_run(&t, 1, (RtInput[]){input("x", MIL_FP16, xs, 3, d)}, NULL);
        double sum[15], mean[4], mx[12], all = 0;
        int amax[15];
        for (int i = 0; i < 3; i++)
            for (int k = 0; k < 5; k++) {
                double s = 0;
                int best = 0;
                for (int j = 0; j < 4; j++) {
                    s += xs[(i * 4 + j) * 5 + k];
                    if (xs[(i * 4 + j) * 5 + k] > xs[(i * 4 + best) * 5 + k]) best = j;
                }
                sum[i * 5 + k] = s;
                amax[i * 5 + k] = best;
            }
        for (int j = 0; j < 4; j++) {
            double s = 0;
            for (int i = 0; i < 3; i++)
                for (int k = 0; k < 5; k++) s += xs[(i * 4 + j) * 5 + k];
            mean[j] = s / 15;
        }
        for (int r = 0; r < 12; r++) {
            double m = -INFINITY;
            for (int k = 0; k < 5; k++) m = xs[r * 5 + k] > m ? xs[r * 5 + k] : m;
            mx[r] = m;
        }
        for (int i = 0; i < 60; i++) all += xs[i];
        tassert_f16(tprog_out(&t, "sum")->data, sum, 15, 0, "reduce_sum");
        tassert_f16(tprog_out(&t, "mean")->data, mean, 4, 0, "reduce_mean");
        tassert_f16(tprog_out(&t, "max")->data, mx, 12, 0, "reduce_max");
        tassert_f16(tprog_out(&t, "all")->data, &all, 1, 0, "reduce_sum all");
        const RtTensor *am = tprog_out(&t, "amax");
        assert_int_equal(am->dtype, MIL_INT32);
        for (int i = 0; i < 15; i++) assert_int_equal(((int32_t *)am->data)[i], amax[i]);
        if (keep) tassert_shape(tprog_out(&t, "sum"), 3, (int64_t[]){3, 1, 5});
        else tassert_shape(tprog_out(&t, "mean"), 1, (int64_t[]){4});
        tprog_end(&t);
    }
}

/* ==== conv, linear, matmul ==== */

typedef struct ConvCase {
    int ns;
    int64_t n, cin, cout, h, w, kh, kw, groups;
    int32_t stride[2], dil[2], pad[4];
    const char *pad_type;
    int bias;
} ConvCase;

static void conv_case(const ConvCase *cc) {
    TProg t = tprog_begin();
    int r = cc->ns + 2;
    int64_t xd[4] = {cc->n, cc->cin, cc->h, cc->w}, wd[4] = {cc->cout, cc->cin / cc->groups, cc->kh, cc->kw};
    MilValue *x = mil_input(t.f, "x", MIL_FP16, r, xd);
    int64_t nw = 1, nx = 1;
    for (int i = 0; i < r; i++) nw *= wd[i], nx *= xd[i];
    float *ws = malloc(sizeof(float) * (size_t)nw), *xs = malloc(sizeof(float) * (size_t)nx), bs[64];
    trand(ws, nw, 0.5f, 41);
    trand(xs, nx, 2.0f, 43);
    trand(bs, cc->cout, 1.0f, 47);
    MilValue *w = tconst_f16(t.f, "w", r, wd, ws);
    MilValue *b = cc->bias ? tconst_f16(t.f, "b", 1, (int64_t[]){cc->cout}, bs) : NULL;
    MilConvOpts opt = {cc->pad_type, cc->stride, cc->pad, cc->dil, (int)cc->groups};
    MilValue *o = mil_add_conv(t.f, "o", x, w, b, &opt);
    assert_non_null(o);
    tprog_finish(&t, 1, &o);
    tprog_run(&t, 1, (RtInput[]){input("x", MIL_FP16, xs, r, xd)}, NULL);
    const RtTensor *out = tprog_out(&t, "o");
    /* naive: padding per axis from the mode */
    int64_t in[2] = {cc->h, cc->ns == 2 ? cc->w : 1}, kk[2] = {cc->kh, cc->ns == 2 ? cc->kw : 1}, od[2], plo[2];
    for (int i = 0; i < cc->ns; i++) {
        int64_t ek = (kk[i] - 1) * cc->dil[i] + 1, total = 0;
        if (!strcmp(cc->pad_type, "custom")) plo[i] = cc->pad[2 * i], total = cc->pad[2 * i] + cc->pad[2 * i + 1];
        else if (!strcmp(cc->pad_type, "valid")) plo[i] = 0;
        else {
            int64_t o1 = (in[i] + cc->stride[i] - 1) / cc->stride[i];
            total = (o1 - 1) * cc->stride[i] + ek - in[i];
            if (total < 0) total = 0;
            plo[i] = !strcmp(cc->pad_type, "same") ? total / 2 : (total + 1) / 2;
        }
        od[i] = (in[i] + total - ek) / cc->stride[i] + 1;
    }
    if (cc->ns == 1) od[1] = 1, plo[1] = 0;
    int64_t want_dims[4] = {cc->n, cc->cout, od[0], od[1]};
    tassert_shape(out, r, want_dims);
    int64_t cin_g = cc->cin / cc->groups, cout_g = cc->cout / cc->groups, n_out = rt_numel(out);
    double *want = malloc(sizeof(double) * (size_t)n_out);
    for (int64_t b0 = 0; b0 < cc->n; b0++)
        for (int64_t co = 0; co < cc->cout; co++)
            for (int64_t oy = 0; oy < od[0]; oy++)
                for (int64_t ox = 0; ox < od[1]; ox++) {
                    double acc = cc->bias ? bs[co] : 0;
                    int64_t g = co / cout_g;
                    for (int64_t ci = 0; ci < cin_g; ci++)
                        for (int64_t ky = 0; ky < kk[0]; ky++)
                            for (int64_t kx = 0; kx < kk[1]; kx++) {
                                int64_t iy = oy * cc->stride[0] - plo[0] + ky * cc->dil[0];
                                int64_t ix = cc->ns == 2 ? ox * cc->stride[1] - plo[1] + kx * cc->dil[1] : 0;
                                if (iy < 0 || iy >= in[0] || ix < 0 || ix >= in[1]) continue;
                                acc += (double)ws[((co * cin_g + ci) * kk[0] + ky) * kk[1] + kx] *
                                       xs[((b0 * cc->cin + g * cin_g + ci) * in[0] + iy) * in[1] + ix];
                            }
                    want[((b0 * cc->cout + co) * od[0] + oy) * od[1] + ox] = acc;
                }
    tassert_f16(out->data, want, n_out, 1, "conv");
    free(want);
    free(ws);
    free(xs);
    tprog_end(&t);
}

static void test_conv(void **state) {
    (void)state;
    /* the converter's projection: 1x1 on (1, C, 1, T) */
    conv_case(&(ConvCase){2, 1, 16, 24, 1, 5, 1, 1, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}, "valid", 0});
    conv_case(&(ConvCase){2, 2, 8, 6, 1, 3, 1, 1, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}, "valid", 1});
    /* golden/stateful_palettized_ios18's conv: 3x3 same */
    conv_case(&(ConvCase){2, 1, 4, 6, 5, 5, 3, 3, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}, "same", 1});
    conv_case(&(ConvCase){2, 1, 4, 4, 7, 6, 2, 2, 2, {2, 1}, {1, 2}, {0, 0, 0, 0}, "same_lower", 0});   /* odd total padding */
    conv_case(&(ConvCase){2, 2, 6, 3, 6, 6, 2, 3, 3, {1, 2}, {2, 1}, {1, 0, 2, 1}, "custom", 1});
    conv_case(&(ConvCase){1, 1, 4, 8, 9, 1, 3, 1, 2, {2, 1}, {1, 1}, {1, 1, 0, 0}, "custom", 1});   /* 1-D, groups */
}

static void test_linear_matmul(void **state) {
    (void)state;
    /* linear: x (2, 3, 8) . W(5, 8)^T + b */
    {
        TProg t = tprog_begin();
        const int64_t xd[] = {2, 3, 8}, wd[] = {5, 8};
        float xs[48], ws[40], bs[5];
        trand(xs, 48, 2.0f, 1);
        trand(ws, 40, 1.0f, 2);
        trand(bs, 5, 1.0f, 3);
        MilValue *x = mil_input(t.f, "x", MIL_FP16, 3, xd);
        MilValue *o = mil_add_linear(t.f, "o", x, tconst_f16(t.f, "w", 2, wd, ws), tconst_f16(t.f, "b", 1, (int64_t[]){5}, bs));
        tprog_finish(&t, 1, &o);
        tprog_run(&t, 1, (RtInput[]){input("x", MIL_FP16, xs, 3, xd)}, NULL);
        double want[30];
        for (int r = 0; r < 6; r++)
            for (int c = 0; c < 5; c++) {
                double acc = bs[c];
                for (int k = 0; k < 8; k++) acc += (double)xs[r * 8 + k] * ws[c * 8 + k];
                want[r * 5 + c] = acc;
            }
        tassert_shape(tprog_out(&t, "o"), 3, (int64_t[]){2, 3, 5});
        tassert_f16(tprog_out(&t, "o")->data, want, 30, 1, "linear");
        tprog_end(&t);
    }
    /* matmul with transposes and broadcast batch dims: x (2, 1, M, K) or (.., K, M), y (3, K, N) or (3, N, K) */
    for (int tx = 0; tx <= 1; tx++)
        for (int ty = 0; ty <= 1; ty++) {
            const int64_t M = 3, K = 4, N = 5;
            int64_t xd[4] = {2, 1, tx ? K : M, tx ? M : K}, yd[3] = {3, ty ? N : K, ty ? K : N};
            TProg t = tprog_begin();
            MilValue *x = mil_input(t.f, "x", MIL_FP16, 4, xd), *y = mil_input(t.f, "y", MIL_FP16, 3, yd);
            MilValue *o = mil_add_matmul(t.f, "o", x, y, tx, ty);
            tprog_finish(&t, 1, &o);
            float xs[24], ys[60];
            trand(xs, 24, 2.0f, 5 + tx);
            trand(ys, 60, 2.0f, 9 + ty);
            tprog_run(&t, 2, (RtInput[]){input("x", MIL_FP16, xs, 4, xd), input("y", MIL_FP16, ys, 3, yd)}, NULL);
            const RtTensor *out = tprog_out(&t, "o");
            tassert_shape(out, 4, (int64_t[]){2, 3, M, N});
            double want[90];
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 3; b++)
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < N; j++) {
                            double acc = 0;
                            for (int kk = 0; kk < K; kk++) {
                                double xv = xs[a * 12 + (tx ? kk * M + i : i * K + kk)];
                                double yv = ys[b * 20 + (ty ? j * K + kk : kk * N + j)];
                                acc += xv * yv;
                            }
                            want[((a * 3 + b) * M + i) * N + j] = acc;
                        }
            tassert_f16(out->data, want, 90, 1, "matmul");
            tprog_end(&t);
        }
    /* rank-1 operands: (K) x (K, N) -> (N); (M, K) x (K) -> (M) */
    {
        TProg t = tprog_begin();
        MilValue *v = mil_input(t.f, "v", MIL_FP32, 1, (int64_t[]){3});
        MilValue *m = mil_input(t.f, "m", MIL_FP32, 2, (int64_t[]){3, 2});
        MilValue *m2 = mil_input(t.f, "m2", MIL_FP32, 2, (int64_t[]){2, 3});
        MilValue *outs[2] = {mil_add_matmul(t.f, "vm", v, m, 0, 0), mil_add_matmul(t.f, "mv", m2, v, 0, 0)};
        tprog_finish(&t, 2, outs);
        float vs[3] = {1, 2, 3}, ms[6] = {1, 2, 3, 4, 5, 6};
        tprog_run(&t, 3,
                  (RtInput[]){input("v", MIL_FP32, vs, 1, (int64_t[]){3}), input("m", MIL_FP32, ms, 2, (int64_t[]){3, 2}),
                              input("m2", MIL_FP32, ms, 2, (int64_t[]){2, 3})},
                  NULL);
        const RtTensor *vm = tprog_out(&t, "vm"), *mv = tprog_out(&t, "mv");
        tassert_shape(vm, 1, (int64_t[]){2});
        tassert_shape(mv, 1, (int64_t[]){2});
        tassert_f32(vm->data, (double[]){22, 28}, 2, 1e-6, "vm");
        tassert_f32(mv->data, (double[]){14, 32}, 2, 1e-6, "mv");
        tprog_end(&t);
    }
}

/* Large fp16 weights: the dot-product path (<= 4 columns, rows over several threads) and the
 * blocked sgemm path (several blocks of 256 rows), for conv and linear. */
static void test_half_weight_products(void **state) {
    (void)state;
    const int64_t M = 600, K = 2048;   /* M * K > 2^20: the dot path runs on several threads */
    float *w = malloc(sizeof(float) * (size_t)(M * K)), *x = malloc(sizeof(float) * (size_t)(K * 9));
    trand(w, M * K, 0.05f, 5);
    trand(x, K * 9, 1.0f, 6);
    for (int T = 1; T <= 9; T += 8) {
        TProg t = tprog_begin();
        MilValue *wv = tconst_f16(t.f, "w", 4, (int64_t[]){M, K, 1, 1}, w);
        MilValue *wl = tconst_f16(t.f, "wl", 2, (int64_t[]){M, K}, w);
        MilValue *xc = mil_input(t.f, "xc", MIL_FP16, 4, (int64_t[]){1, K, 1, T});
        MilValue *xl = mil_input(t.f, "xl", MIL_FP16, 2, (int64_t[]){T, K});
        MilValue *outs[2] = {mil_add_conv(t.f, "c", xc, wv, NULL, NULL), mil_add_linear(t.f, "l", xl, wl, NULL)};
        tprog_finish(&t, 2, outs);
        float *xt = malloc(sizeof(float) * (size_t)(K * T));   /* (T, K) for linear */
        for (int64_t kk = 0; kk < K; kk++)
            for (int tt = 0; tt < T; tt++) xt[tt * K + kk] = x[kk * T + tt];
        tprog_run(&t, 2, (RtInput[]){input("xc", MIL_FP16, x, 4, (int64_t[]){1, K, 1, T}), input("xl", MIL_FP16, xt, 2, (int64_t[]){T, K})},
                  NULL);
        double *wc = malloc(sizeof(double) * (size_t)(M * T)), *wlv = malloc(sizeof(double) * (size_t)(M * T));
        for (int64_t m = 0; m < M; m++)
            for (int tt = 0; tt < T; tt++) {
                double acc = 0;
                for (int64_t kk = 0; kk < K; kk++) acc += (double)w[m * K + kk] * x[kk * T + tt];
                wc[m * T + tt] = acc;
                wlv[tt * M + m] = acc;
            }
        /* terms up to 0.05 * 1: float32 sums of 2048 of them are good to ~1e-5 absolute */
        tassert_f16_abs(tprog_out(&t, "c")->data, wc, M * T, 1, 1e-5, "conv fp16 weight");
        tassert_f16_abs(tprog_out(&t, "l")->data, wlv, M * T, 1, 1e-5, "linear fp16 weight");
        RtMemoryStats ms;
        rt_memory_stats(t.m, &ms);
        assert_true(ms.const_bytes < (uint64_t)(M * K) * 2 * 2 + 1024);   /* both weights as fp16 */
        free(wc);
        free(wlv);
        free(xt);
        tprog_end(&t);
    }
    free(w);
    free(x);
}

/* reduce_argmax's output_dtype is read as the op table reads it (coremltools lower-cases it). */
static void test_argmax_output_dtype(void **state) {
    (void)state;
    const int64_t d[] = {2, 5};
    TProg t = tprog_begin();
    MilValue *x = mil_input(t.f, "x", MIL_FP16, 2, d);
    MilValue *o = mil_add_op1(t.f, "reduce_argmax", "o", 2,
                              (MilIn[]){MIL_IN("x", x), MIL_IN("output_dtype", mil_const_str(t.f, "odt", "UINT16"))});
    tprog_finish(&t, 1, &o);
    float xs[10] = {0, 1, 7, 2, 3, 9, 1, 0, 2, 4};
    tprog_run(&t, 1, (RtInput[]){input("x", MIL_FP16, xs, 2, d)}, NULL);
    const RtTensor *out = tprog_out(&t, "o");
    assert_int_equal(out->dtype, MIL_UINT16);
    tassert_shape(out, 1, (int64_t[]){2});
    const uint16_t *v = out->data;
    assert_int_equal(v[0], 2);
    assert_int_equal(v[1], 0);
    tprog_end(&t);
}

/* Every op of the table is executable: a kernel, or handled by the interpreter itself. */
static void test_every_op_has_a_kernel(void **state) {
    (void)state;
    for (int id = 0; id < MIL_OP_COUNT; id++) {
        const MilOpDef *d = mil_op_def_by_id((MilOpId)id);
        int moves;
        if (id == MIL_OP_CONST || id == MIL_OP_CONSTEXPR_LUT_TO_DENSE || id == MIL_OP_READ_STATE ||
            id == MIL_OP_WRITE_STATE)
            continue;
        if (!kernel_for((MilOpId)id, &moves)) {
            print_error("op '%s' has no kernel\n", d->type);
            fail();
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_broadcasting),
        cmocka_unit_test(test_fp16_rounding_and_overflow),
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_layer_norm),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_conv),
        cmocka_unit_test(test_linear_matmul),
        cmocka_unit_test(test_half_weight_products),
        cmocka_unit_test(test_argmax_output_dtype),
        cmocka_unit_test(test_every_op_has_a_kernel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
