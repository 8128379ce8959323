/* Interpreter kernels that move data, against naive loops: reshape, expand_dims, squeeze,
 * transpose, tile, concat (plain and interleaved), split, slice_by_index (masks, negative
 * strides, squeeze, run-time begin/end), slice_update, gather (negative indices, batch_dims,
 * fp16 tables), gather_along_axis, cast (rounding, truncation, wrap), select, clip,
 * band_part, identity, constexpr_lut_to_dense (grouped and per-tensor LUTs, vector LUTs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runtime_testutil.h"

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

static void iota(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)i;
}

static void assert_floats(const RtTensor *t, const float *want, int64_t n) {
    assert_int_equal(rt_numel(t), n);
    const float *g = t->data;
    for (int64_t i = 0; i < n; i++)
        if (g[i] != want[i]) {
            print_error("element %lld: got %g, want %g\n", (long long)i, (double)g[i], (double)want[i]);
            fail();
        }
}

static void assert_ints(const RtTensor *t, const int32_t *want, int64_t n) {
    assert_int_equal(rt_numel(t), n);
    const int32_t *g = t->data;
    for (int64_t i = 0; i < n; i++)
        if (g[i] != want[i]) {
            print_error("element %lld: got %d, want %d\n", (long long)i, g[i], want[i]);
            fail();
        }
}

/* ==== reshape, expand_dims, squeeze, transpose, tile ==== */

static void test_reshape_family(void **state) {
    (void)state;
    const int64_t d[] = {2, 3, 4};
    TProg t = tprog_begin();
    MilValue *x = mil_input(t.f, "x", MIL_FP16, 3, d);
    MilValue *outs[5] = {
        mil_add_reshape(t.f, "r", x, 3, (int32_t[]){4, -1, 2}),
        mil_add_expand_dims(t.f, "e", x, 2, (int32_t[]){0, -1}),
        NULL,
        mil_add_transpose(t.f, "t", x, 3, (int32_t[]){2, 0, 1}),
        mil_add_tile(t.f, "ti", x, 3, (int32_t[]){2, 1, 3}),
    };
    outs[2] = mil_add_squeeze(t.f, "s", outs[1], 1, (int32_t[]){0});
    tprog_finish(&t, 5, outs);
    float xs[24];
    iota(xs, 24);
    tprog_run(&t, 1, (RtInput[]){input("x", MIL_FP16, xs, 3, d)}, NULL);
    tassert_shape(tprog_out(&t, "r"), 3, (int64_t[]){4, 3, 2});
    assert_floats(tprog_out(&t, "r"), xs, 24);
    tassert_shape(tprog_out(&t, "e"), 5, (int64_t[]){1, 2, 3, 4, 1});
    tassert_shape(tprog_out(&t, "s"), 4, (int64_t[]){2, 3, 4, 1});
    assert_floats(tprog_out(&t, "s"), xs, 24);
    float tw[24], tl[144];
    for (int c = 0; c < 4; c++)
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 3; b++) tw[(c * 2 + a) * 3 + b] = xs[(a * 3 + b) * 4 + c];
    tassert_shape(tprog_out(&t, "t"), 3, (int64_t[]){4, 2, 3});
    assert_floats(tprog_out(&t, "t"), tw, 24);
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 3; b++)
            for (int c = 0; c < 12; c++) tl[(a * 3 + b) * 12 + c] = xs[((a % 2) * 3 + b) * 4 + c % 4];
    tassert_shape(tprog_out(&t, "ti"), 3, (int64_t[]){4, 3, 12});
    assert_floats(tprog_out(&t, "ti"), tl, 144);
    tprog_end(&t);
    /* squeeze without axes drops every size-1 axis; reshape to a run-time shape */
    t = tprog_begin();
    MilValue *y = mil_input(t.f, "y", MIL_INT32, 4, (int64_t[]){1, 3, 1, 2});
    MilValue *shape = mil_input(t.f, "shape", MIL_INT32, 1, (int64_t[]){2});
    MilValue *o2[2] = {mil_add_squeeze(t.f, "sq", y, 0, NULL),
                       mil_add_op1(t.f, "reshape", "rr", 2, (MilIn[]){MIL_IN("x", y), MIL_IN("shape", shape)})};
    tprog_finish(&t, 2, o2);
    int32_t ys[6] = {1, 2, 3, 4, 5, 6}, sh[2] = {2, -1};
    tprog_run(&t, 2, (RtInput[]){input("y", MIL_INT32, ys, 4, (int64_t[]){1, 3, 1, 2}), input("shape", MIL_INT32, sh, 1, (int64_t[]){2})}, NULL);
    tassert_shape(tprog_out(&t, "sq"), 2, (int64_t[]){3, 2});
    tassert_shape(tprog_out(&t, "rr"), 2, (int64_t[]){2, 3});
    assert_ints(tprog_out(&t, "rr"), ys, 6);
    tprog_end(&t);
}

/* ==== concat, split ==== */

static void test_concat_split(void **state) {
    (void)state;
    TProg t = tprog_begin();
    MilValue *a = mil_input(t.f, "a", MIL_FP16, 3, (int64_t[]){2, 2, 3});
    MilValue *b = mil_input(t.f, "b", MIL_FP16, 3, (int64_t[]){2, 1, 3});
    MilValue *c = mil_input(t.f, "c", MIL_FP16, 3, (int64_t[]){2, 2, 3});
    MilValue *cat = mil_add_concat(t.f, "cat", 2, (MilValue *[]){a, b}, 1, 0);
    MilValue *il = mil_add_concat(t.f, "il", 2, (MilValue *[]){a, c}, -1, 1);
    MilOp *sp = mil_add_split(t.f, "sp", cat, 1, 2, (int32_t[]){1, 2});
    MilOp *sp3 = mil_add_split(t.f, "sp3", a, 2, 3, NULL);
    assert_non_null(sp);
    assert_non_null(sp3);
    MilValue *outs[6] = {cat, il, sp->outputs[0], sp->outputs[1], sp3->outputs[0], sp3->outputs[2]};
    tprog_finish(&t, 6, outs);
    float as[12], bs[6], cs[12];
    iota(as, 12);
    for (int i = 0; i < 6; i++) bs[i] = 100 + i;
    for (int i = 0; i < 12; i++) cs[i] = 200 + i;
    tprog_run(&t, 3,
              (RtInput[]){input("a", MIL_FP16, as, 3, (int64_t[]){2, 2, 3}), input("b", MIL_FP16, bs, 3, (int64_t[]){2, 1, 3}),
                          input("c", MIL_FP16, cs, 3, (int64_t[]){2, 2, 3})},
              NULL);
    float want_cat[18], want_il[24], want_s0[6], want_s1[12], want_p0[4], want_p2[4];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 3; k++) want_cat[(i * 3 + j) * 3 + k] = j < 2 ? as[(i * 2 + j) * 3 + k] : bs[i * 3 + k];
    for (int r = 0; r < 4; r++)
        for (int k = 0; k < 3; k++) want_il[r * 6 + 2 * k] = as[r * 3 + k], want_il[r * 6 + 2 * k + 1] = cs[r * 3 + k];
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 3; k++) {
            want_s0[i * 3 + k] = want_cat[(i * 3) * 3 + k];
            for (int j = 0; j < 2; j++) want_s1[(i * 2 + j) * 3 + k] = want_cat[(i * 3 + 1 + j) * 3 + k];
        }
    for (int r = 0; r < 4; r++) want_p0[r] = as[r * 3], want_p2[r] = as[r * 3 + 2];
    assert_floats(tprog_out(&t, "cat"), want_cat, 18);
    tassert_shape(tprog_out(&t, "il"), 3, (int64_t[]){2, 2, 6});
    assert_floats(tprog_out(&t, "il"), want_il, 24);
    assert_floats(tprog_out(&t, "sp_0"), want_s0, 6);
    assert_floats(tprog_out(&t, "sp_1"), want_s1, 12);
    assert_floats(tprog_out(&t, "sp3_0"), want_p0, 4);
    assert_floats(tprog_out(&t, "sp3_2"), want_p2, 4);
    tprog_end(&t);
}

/* ==== slicing ==== */

/* Python-style slice of one axis (what numpy does), for the naive reference. */
static int64_t py_slice(int64_t d, int64_t b, int64_t e, int64_t s, int bm, int em, int64_t *idx) {
    int64_t lo = s > 0 ? 0 : -1, hi = s > 0 ? d : d - 1;
    if (bm) b = s > 0 ? lo : hi;
    else {
        if (b < 0) b += d;
        b = b < lo ? lo : (b > hi ? hi : b);
    }
    if (em) e = s > 0 ? hi : lo;
    else {
        if (e < 0) e += d;
        e = e < lo ? lo : (e > hi ? hi : e);
    }
    int64_t n = 0;
    for (int64_t i = b; s > 0 ? i < e : i > e; i += s) idx[n++] = i;
    return n;
}

static void test_slice_by_index(void **state) {
    (void)state;
    const int64_t d[] = {4, 5, 6};
    TProg t = tprog_begin();
    MilValue *x = mil_input(t.f, "x", MIL_FP16, 3, d);
    MilValue *beg = mil_input(t.f, "beg", MIL_INT32, 1, (int64_t[]){3});
    MilSlice s1 = {3, (int32_t[]){-10, -4, 5}, (int32_t[]){3, 100, 0}, NULL, NULL, (int32_t[]){1, 2, -2}, NULL, NULL, NULL};
    MilSlice s2 = {3, (int32_t[]){0, 2, -1}, (int32_t[]){0, 0, 0}, NULL, NULL, NULL, (uint8_t[]){1, 0, 0},
                   (uint8_t[]){1, 1, 1}, (uint8_t[]){0, 1, 0}};
    MilSlice s3 = {3, NULL, (int32_t[]){4, 5, 6}, beg, NULL, NULL, NULL, NULL, NULL};
    MilValue *outs[3] = {mil_add_slice_by_index(t.f, "s1", x, &s1), mil_add_slice_by_index(t.f, "s2", x, &s2),
                         mil_add_slice_by_index(t.f, "s3", x, &s3)};
    assert_non_null(outs[0]);
    assert_non_null(outs[1]);
    assert_non_null(outs[2]);
    tprog_finish(&t, 3, outs);
    float xs[120];
    iota(xs, 120);
    int32_t bv[3] = {2, 1, -2};
    tprog_run(&t, 2, (RtInput[]){input("x", MIL_FP16, xs, 3, d), input("beg", MIL_INT32, bv, 1, (int64_t[]){3})}, NULL);
    /* s1: x[-10:3:1, -4:100:2, 5:0:-2] (begin and end clamped) */
    int64_t i0[8], i1[8], i2[8], n0, n1, n2;
    float want[120];
    int64_t n = 0;
    n0 = py_slice(4, -10, 3, 1, 0, 0, i0);
    n1 = py_slice(5, -4, 100, 2, 0, 0, i1);
    n2 = py_slice(6, 5, 0, -2, 0, 0, i2);
    for (int64_t a = 0; a < n0; a++)
        for (int64_t b = 0; b < n1; b++)
            for (int64_t c = 0; c < n2; c++) want[n++] = xs[(i0[a] * 5 + i1[b]) * 6 + i2[c]];
    tassert_shape(tprog_out(&t, "s1"), 3, (int64_t[]){n0, n1, n2});
    assert_floats(tprog_out(&t, "s1"), want, n);
    /* s2: x[:, 2, -1:] (squeeze axis 1; end_mask everywhere) */
    n = 0;
    n2 = py_slice(6, -1, 0, 1, 0, 1, i2);
    for (int64_t a = 0; a < 4; a++)
        for (int64_t c = 0; c < n2; c++) want[n++] = xs[(a * 5 + 2) * 6 + i2[c]];
    tassert_shape(tprog_out(&t, "s2"), 2, (int64_t[]){4, n2});
    assert_floats(tprog_out(&t, "s2"), want, n);
    /* s3: run-time begin [2, 1, -2] */
    n = 0;
    for (int64_t a = 2; a < 4; a++)
        for (int64_t b = 1; b < 5; b++)
            for (int64_t c = 4; c < 6; c++) want[n++] = xs[(a * 5 + b) * 6 + c];
    tassert_shape(tprog_out(&t, "s3"), 3, (int64_t[]){2, 4, 2});
    assert_floats(tprog_out(&t, "s3"), want, n);
    tprog_end(&t);
}

static void test_slice_update(void **state) {
    (void)state;
    const int64_t d[] = {3, 4, 5};
    TProg t = tprog_begin();
    MilValue *x = mil_input(t.f, "x", MIL_FP16, 3, d);
    MilValue *u = mil_input(t.f, "u", MIL_FP16, 3, (int64_t[]){1, 2, 5});
    MilValue *pos = mil_input(t.f, "pos", MIL_INT32, 1, (int64_t[]){1});
    /* begin = [1, pos, 0], end = [2, pos + 2, 5]: the KV-cache write's dynamic slice */
    MilValue *b0 = mil_const_i32v(t.f, "b0", 1, (int32_t[]){1}), *z = mil_const_i32v(t.f, "z", 1, (int32_t[]){0});
    MilValue *e0 = mil_const_i32v(t.f, "e0", 1, (int32_t[]){2}), *e2 = mil_const_i32v(t.f, "e2", 1, (int32_t[]){5});
    MilValue *p2 = mil_add_add(t.f, "p2", pos, mil_const_i32(t.f, "two", 2));
    MilValue *beg = mil_add_concat(t.f, "beg", 3, (MilValue *[]){b0, pos, z}, 0, 0);
    MilValue *end = mil_add_concat(t.f, "end", 3, (MilValue *[]){e0, p2, e2}, 0, 0);
    MilSlice s = {3, NULL, NULL, beg, end, NULL, NULL, NULL, NULL};
    MilValue *o = mil_add_slice_update(t.f, "o", x, u, &s);
    /* stride 2 with a squeezed axis: x[0, ::2, 1] = v (shape (2,)) */
    MilValue *v = mil_input(t.f, "v", MIL_FP16, 1, (int64_t[]){2});
    MilSlice s2 = {3, (int32_t[]){0, 0, 1}, (int32_t[]){1, 4, 2}, NULL, NULL, (int32_t[]){1, 2, 1}, NULL, NULL,
                   (uint8_t[]){1, 0, 1}};
    MilValue *o2 = mil_add_slice_update(t.f, "o2", x, v, &s2);
    assert_non_null(o);
    assert_non_null(o2);
    tprog_finish(&t, 2, (MilValue *[]){o, o2});
    float xs[60], us[10], vs[2] = {-1, -2};
    iota(xs, 60);
    for (int i = 0; i < 10; i++) us[i] = 1000 + i;
    int32_t pv[1] = {2};
    tprog_run(&t, 4,
              (RtInput[]){input("x", MIL_FP16, xs, 3, d), input("u", MIL_FP16, us, 3, (int64_t[]){1, 2, 5}),
                          input("pos", MIL_INT32, pv, 1, (int64_t[]){1}), input("v", MIL_FP16, vs, 1, (int64_t[]){2})},
              NULL);
    float want[60], want2[60];
    memcpy(want, xs, sizeof want);
    memcpy(want2, xs, sizeof want2);
    for (int j = 0; j < 2; j++)
        for (int k = 0; k < 5; k++) want[(1 * 4 + 2 + j) * 5 + k] = us[j * 5 + k];
    want2[(0 * 4 + 0) * 5 + 1] = -1;
    want2[(0 * 4 + 2) * 5 + 1] = -2;
    assert_floats(tprog_out(&t, "o"), want, 60);
    assert_floats(tprog_out(&t, "o2"), want2, 60);
    /* an update that does not fit the slice is an error, not a crash */
    pv[0] = 3;   /* rows 3..5 of an axis of 4: the slice is clamped to 1 row */
    tprog_run_fails(&t, 4,
                    (RtInput[]){input("x", MIL_FP16, xs, 3, d), input("u", MIL_FP16, us, 3, (int64_t[]){1, 2, 5}),
                                input("pos", MIL_INT32, pv, 1, (int64_t[]){1}), input("v", MIL_FP16, vs, 1, (int64_t[]){2})},
                    NULL, "does not have the shape of the slice");
    tprog_end(&t);
}

/* ==== gather ==== */

static void test_gather(void **state) {
    (void)state;
    const int64_t td[] = {6, 4};
    float table[24];
    trand(table, 24, 3.0f, 99);
    TProg t = tprog_begin();
    MilValue *tab = tconst_f16(t.f, "table", 2, td, table);          /* gather-only: kept as fp16 */
    MilValue *tab2 = tconst_f16(t.f, "table2", 2, td, table);        /* also used by add: float */
    MilValue *ids = mil_input(t.f, "ids", MIL_INT32, 2, (int64_t[]){1, 3});
    MilValue *ids16 = mil_add_cast(t.f, "ids16", ids, MIL_INT16);
    MilValue *g0 = mil_add_gather(t.f, "g0", tab, ids16, 0, 0);
    MilValue *g1 = mil_add_gather(t.f, "g1", tab2, ids, 0, 0);
    MilValue *sum = mil_add_add(t.f, "sum", tab2, tab2);
    MilValue *cols = mil_input(t.f, "cols", MIL_INT32, 1, (int64_t[]){2});
    MilValue *g2 = mil_add_gather(t.f, "g2", tab2, cols, 1, 0);
    /* batch_dims 1: x (2, 3, 2), indices (2, 2) -> out[b, i, :] = x[b, idx[b, i], :] */
    MilValue *bx = mil_input(t.f, "bx", MIL_FP16, 3, (int64_t[]){2, 3, 2});
    MilValue *bi = mil_input(t.f, "bi", MIL_INT32, 2, (int64_t[]){2, 2});
    MilValue *g3 = mil_add_gather(t.f, "g3", bx, bi, 1, 1);
    MilValue *ga = mil_add_gather_along_axis(t.f, "ga", bx, mil_input(t.f, "ai", MIL_INT32, 3, (int64_t[]){2, 1, 2}), 1);
    tprog_finish(&t, 6, (MilValue *[]){g0, g1, sum, g2, g3, ga});
    int32_t idv[3] = {5, -1, 2}, cv[2] = {3, 0}, biv[4] = {2, 0, 1, 1}, aiv[4] = {2, 0, 1, -3};
    float bxs[12];
    iota(bxs, 12);
    RtInput in[5] = {input("ids", MIL_INT32, idv, 2, (int64_t[]){1, 3}), input("cols", MIL_INT32, cv, 1, (int64_t[]){2}),
                     input("bx", MIL_FP16, bxs, 3, (int64_t[]){2, 3, 2}), input("bi", MIL_INT32, biv, 2, (int64_t[]){2, 2}),
                     input("ai", MIL_INT32, aiv, 3, (int64_t[]){2, 1, 2})};
    tprog_run(&t, 5, in, NULL);
    float want[24];
    int rows[3] = {5, 5, 2};
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) want[r * 4 + c] = table[rows[r] * 4 + c];
    tassert_shape(tprog_out(&t, "g0"), 3, (int64_t[]){1, 3, 4});
    assert_floats(tprog_out(&t, "g0"), want, 12);
    assert_floats(tprog_out(&t, "g1"), want, 12);
    for (int r = 0; r < 6; r++) want[r * 2] = table[r * 4 + 3], want[r * 2 + 1] = table[r * 4];
    tassert_shape(tprog_out(&t, "g2"), 2, (int64_t[]){6, 2});
    assert_floats(tprog_out(&t, "g2"), want, 12);
    float w3[8];
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < 2; k++) w3[(b * 2 + i) * 2 + k] = bxs[(b * 3 + biv[b * 2 + i]) * 2 + k];
    tassert_shape(tprog_out(&t, "g3"), 3, (int64_t[]){2, 2, 2});
    assert_floats(tprog_out(&t, "g3"), w3, 8);
    float wa[4] = {bxs[(0 * 3 + 2) * 2 + 0], bxs[(0 * 3 + 0) * 2 + 1], bxs[(1 * 3 + 1) * 2 + 0], bxs[(1 * 3 + 0) * 2 + 1]};
    assert_floats(tprog_out(&t, "ga"), wa, 4);
    /* out-of-range index: an error naming it */
    idv[1] = 6;
    tprog_run_fails(&t, 5, in, NULL, "index 6 is out of range");
    tprog_end(&t);
}

/* ==== cast, select, clip, band_part, identity ==== */

static void test_cast_select_clip_band(void **state) {
    (void)state;
    const int64_t d[] = {6};
    TProg t = tprog_begin();
    MilValue *xf = mil_input(t.f, "xf", MIL_FP32, 1, d);
    MilValue *xi = mil_input(t.f, "xi", MIL_INT32, 1, d);
    MilValue *c16 = mil_add_cast(t.f, "c16", xf, MIL_FP16);
    MilValue *ci = mil_add_cast(t.f, "ci", xf, MIL_INT32);
    MilValue *cs = mil_add_cast(t.f, "cs", xi, MIL_INT16);
    MilValue *cb = mil_add_cast(t.f, "cb", xi, MIL_BOOL);
    MilValue *cu = mil_add_cast(t.f, "cu", xi, MIL_UINT8);
    MilValue *cond = mil_add_greater_equal(t.f, "cond", xi, mil_const_i32(t.f, "zero", 0));
    MilValue *sel = mil_add_select(t.f, "sel", cond, c16, mil_const_fp16(t.f, "m", -7.0f));
    MilValue *cl = mil_add_clip(t.f, "cl", c16, -1.5, 2.0);
    MilValue *id = mil_add_identity(t.f, "id", c16);
    MilValue *m = mil_input(t.f, "m3", MIL_FP16, 3, (int64_t[]){2, 3, 4});
    MilValue *bp = mil_add_band_part(t.f, "bp", m, 1, 0);
    MilValue *bp2 = mil_add_band_part(t.f, "bp2", m, -1, 2);
    tprog_finish(&t, 10, (MilValue *[]){c16, ci, cs, cb, cu, sel, cl, id, bp, bp2});
    float fv[6] = {1.00048828125f, -2.7f, 70000.0f, 3.99f, -0.5f, 65519.0f};
    int32_t iv[6] = {40000, -1, 0, 7, 255 + 256, -40000};
    float ms[24];
    iota(ms, 24);
    tprog_run(&t, 3,
              (RtInput[]){input("xf", MIL_FP32, fv, 1, d), input("xi", MIL_INT32, iv, 1, d),
                          input("m3", MIL_FP16, ms, 3, (int64_t[]){2, 3, 4})},
              NULL);
    const float *h = tprog_out(&t, "c16")->data;
    assert_true(h[0] == 1.0f && h[1] == round_f16(-2.7f) && isinf(h[2]) && h[5] == 65504.0f);
    assert_ints(tprog_out(&t, "ci"), (int32_t[]){1, -2, 70000, 3, 0, 65519}, 6);
    assert_ints(tprog_out(&t, "cs"), (int32_t[]){40000 - 65536, -1, 0, 7, 511, -40000 + 65536}, 6);
    assert_ints(tprog_out(&t, "cb"), (int32_t[]){1, 1, 0, 1, 1, 1}, 6);
    assert_ints(tprog_out(&t, "cu"), (int32_t[]){40000 & 255, 255, 0, 7, 255, (-40000) & 255}, 6);
    const float *sel_v = tprog_out(&t, "sel")->data;
    for (int i = 0; i < 6; i++) assert_true(sel_v[i] == (iv[i] >= 0 ? h[i] : -7.0f));
    const float *cl_v = tprog_out(&t, "cl")->data;
    for (int i = 0; i < 6; i++) assert_true(cl_v[i] == (h[i] < -1.5f ? -1.5f : (h[i] > 2.0f ? 2.0f : h[i])));
    assert_floats(tprog_out(&t, "id"), h, 6);
    float w1[24], w2[24];
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 4; j++) {
                int at = (b * 3 + i) * 4 + j;
                w1[at] = (i - j <= 1 && j - i <= 0) ? ms[at] : 0;
                w2[at] = (j - i <= 2) ? ms[at] : 0;
            }
    assert_floats(tprog_out(&t, "bp"), w1, 24);
    assert_floats(tprog_out(&t, "bp2"), w2, 24);
    tprog_end(&t);
}

/* ==== constexpr_lut_to_dense ==== */

static void lut_case(int bits, int64_t rows, int64_t cols, int64_t group, int vector) {
    int n_idx = 1 << bits;
    int64_t vs = vector ? 2 : 1, wcols = cols * vs;
    int64_t groups = group ? rows / group : 1;
    uint8_t *idx = malloc((size_t)(rows * cols)), *packed = calloc((size_t)(rows * cols), 1);
    float *lut = malloc(sizeof(float) * (size_t)(groups * n_idx * vs));
    uint32_t seed = 5;
    for (int64_t i = 0; i < rows * cols; i++) {
        seed = seed * 1664525u + 1013904223u;
        idx[i] = (uint8_t)((seed >> 16) % (uint32_t)n_idx);
    }
    trand(lut, groups * n_idx * vs, 2.0f, 31);
    MilDType dt = bits == 1 ? MIL_UINT1 : bits == 2 ? MIL_UINT2 : bits == 3 ? MIL_UINT3 : bits == 4 ? MIL_UINT4 : bits == 6 ? MIL_UINT6 : MIL_UINT8;
    assert_int_equal(mil_pack_subbyte(dt, idx, (size_t)(rows * cols), packed), 0);
    uint64_t packed_n;
    mil_packed_size(dt, (uint64_t)(rows * cols), &packed_n);
    TProg t = tprog_begin();
    MilValue *ind = mil_literal(t.p, dt, 4, (int64_t[]){rows, cols, 1, 1}, packed, packed_n);
    uint16_t *lh = tf16(lut, groups * n_idx * vs);
    MilValue *lt = mil_literal(t.p, MIL_FP16, 6, (int64_t[]){groups, 1, 1, 1, n_idx, vs}, lh, sizeof(uint16_t) * (size_t)(groups * n_idx * vs));
    MilValue *w = mil_add_lut_to_dense(t.f, "w", ind, lt, vector ? 1 : -1);
    assert_non_null(w);
    /* conv (1, wcols, 1, 1) -> (1, rows, 1, 1) exposes the dense weight: x = one-hot columns */
    MilValue *x = mil_input(t.f, "x", MIL_FP16, 4, (int64_t[]){1, wcols, 1, 1});
    MilValue *o = mil_add_conv(t.f, "o", x, w, NULL, NULL);
    tprog_finish(&t, 1, &o);
    float *xs = calloc((size_t)wcols, sizeof(float));
    for (int64_t c = 0; c < wcols; c++) {
        memset(xs, 0, sizeof(float) * (size_t)wcols);
        xs[c] = 1.0f;
        tprog_run(&t, 1, (RtInput[]){input("x", MIL_FP16, xs, 4, (int64_t[]){1, wcols, 1, 1})}, NULL);
        const float *got = tprog_out(&t, "o")->data;
        for (int64_t r = 0; r < rows; r++) {
            int64_t g = group ? r / group : 0, ic = c / vs, v = c % vs;
            float want = lut[(g * n_idx + idx[r * cols + ic]) * vs + v];
            if (got[r] != want) {
                print_error("bits %d group %lld: W[%lld][%lld] = %g, want %g\n", bits, (long long)group, (long long)r,
                            (long long)c, (double)got[r], (double)want);
                fail();
            }
        }
    }
    free(xs);
    free(lh);
    free(idx);
    free(packed);
    free(lut);
    tprog_end(&t);
}

static void test_lut_to_dense(void **state) {
    (void)state;
    lut_case(4, 16, 8, 8, 0);     /* grouped along output channels, as --lutN b,8 */
    lut_case(6, 16, 5, 4, 0);     /* 6-bit indices straddle bytes */
    lut_case(3, 8, 7, 0, 0);      /* per-tensor LUT */
    lut_case(2, 8, 4, 2, 1);      /* vector LUT along axis 1 */
    lut_case(1, 4, 9, 1, 0);
    lut_case(8, 4, 3, 2, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reshape_family),
        cmocka_unit_test(test_concat_split),
        cmocka_unit_test(test_slice_by_index),
        cmocka_unit_test(test_slice_update),
        cmocka_unit_test(test_gather),
        cmocka_unit_test(test_cast_select_clip_band),
        cmocka_unit_test(test_lut_to_dense),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
