/* The interpreter as a whole: states updated in place (and copied when a read value must
 * survive a write), one state shared by two models, memory that stays flat over many runs,
 * packages written and read back (a LUT weight shared by two functions is converted once),
 * input/state checking, and the golden packages (coremltools' stateful palettized model and
 * ANEMLL's own FFN_PF chunks, whose prefill and infer functions must agree). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "coreml/package.h"
#include "coreml_testutil.h"
#include "runtime/rt_internal.h"
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

/* ==== A KV-cache style program ==== */

/* state S (2, 2, 8, 4): writes k (1, 2, 1, 4) at row `layer`, position pos, then returns the
 * sum over positions of that row (1, 2, 1, 4)... as coremltools writes it: read_state ->
 * slice_update (dynamic begin/end) -> write_state -> read_state. */
static MilValue *kv_write(MilFunction *f, MilValue *S, MilValue *k, MilValue *pos, int layer, const char *tag) {
    char n[64];
    snprintf(n, sizeof n, "%s_r", tag);
    MilValue *r = mil_add_read_state(f, n, S);
    snprintf(n, sizeof n, "%s_b0", tag);
    MilValue *b0 = mil_const_i32v(f, n, 2, (int32_t[]){layer, 0});
    snprintf(n, sizeof n, "%s_z", tag);
    MilValue *z = mil_const_i32v(f, n, 1, (int32_t[]){0});
    snprintf(n, sizeof n, "%s_e0", tag);
    MilValue *e0 = mil_const_i32v(f, n, 2, (int32_t[]){layer + 1, 2});
    snprintf(n, sizeof n, "%s_e3", tag);
    MilValue *e3 = mil_const_i32v(f, n, 1, (int32_t[]){4});
    snprintf(n, sizeof n, "%s_p1", tag);
    MilValue *p1 = mil_add_add(f, n, pos, mil_const_i32(f, NULL, 1));
    snprintf(n, sizeof n, "%s_beg", tag);
    MilValue *beg = mil_add_concat(f, n, 3, (MilValue *[]){b0, pos, z}, 0, 0);
    snprintf(n, sizeof n, "%s_end", tag);
    MilValue *end = mil_add_concat(f, n, 3, (MilValue *[]){e0, p1, e3}, 0, 0);
    MilSlice s = {4, NULL, NULL, beg, end, NULL, NULL, NULL, NULL};
    snprintf(n, sizeof n, "%s_upd", tag);
    MilValue *u = mil_add_slice_update(f, n, r, k, &s);
    snprintf(n, sizeof n, "%s_state", tag);
    return mil_add_update_state(f, n, S, u);
}

static MilValue *layer_sum(MilFunction *f, MilValue *cache, int layer, const char *tag) {
    char n[64];
    MilSlice s = {4, (int32_t[]){layer, 0, 0, 0}, (int32_t[]){layer + 1, 2, 8, 4}, NULL, NULL, NULL, NULL, NULL, NULL};
    snprintf(n, sizeof n, "%s_row", tag);
    MilValue *row = mil_add_slice_by_index(f, n, cache, &s);
    snprintf(n, sizeof n, "%s_sum", tag);
    return mil_add_reduce_sum(f, n, row, 1, (int32_t[]){2}, 1);
}

static const int64_t S_DIMS[4] = {2, 2, 8, 4}, K_DIMS[4] = {1, 2, 1, 4};

static void build_kv_program(TProg *t, int layer) {
    MilValue *S = mil_state(t->f, "cache", MIL_FP16, 4, S_DIMS);
    MilValue *k = mil_input(t->f, "k", MIL_FP16, 4, K_DIMS);
    MilValue *pos = mil_input(t->f, "pos", MIL_INT32, 1, (int64_t[]){1});
    MilValue *c = kv_write(t->f, S, k, pos, layer, "w");
    MilValue *out = layer_sum(t->f, c, layer, "o");
    tprog_finish(t, 1, &out);
}

static float kval(int pos, int i) { return round_f16(0.25f * (float)(pos + 1) + 0.01f * (float)i); }

static void test_state_updates_in_place(void **state) {
    (void)state;
    TProg t = tprog_begin();
    build_kv_program(&t, 1);
    /* the plan: read_state is a view, slice_update writes into the state, write_state is free */
    RtFunction *f = t.fn;
    int n_inplace = 0, n_skip = 0, n_view = 0;
    for (int i = 0; i < f->n_ops; i++) {
        n_inplace += !!(f->ops[i].flags & PLAN_STATE_INPLACE);
        n_skip += !!(f->ops[i].flags & PLAN_SKIP);
        n_view += !!(f->ops[i].flags & PLAN_STATE_VIEW);
    }
    assert_int_equal(n_inplace, 1);
    assert_int_equal(n_skip, 1);
    assert_int_equal(n_view, 2);
    Err e = {{0}};
    RtStates *st = rt_states_new(t.fn, &e);
    assert_non_null(st);
    assert_int_equal(st->n, 1);
    for (int p = 0; p < 8; p++) {
        float k[8];
        for (int i = 0; i < 8; i++) k[i] = kval(p, i);
        int32_t pos = p;
        tprog_run(&t, 2, (RtInput[]){input("k", MIL_FP16, k, 4, K_DIMS), input("pos", MIL_INT32, &pos, 1, (int64_t[]){1})}, st);
        const float *sum = tprog_out(&t, "o_sum")->data;
        for (int h = 0; h < 2; h++)
            for (int d = 0; d < 4; d++) {
                float want = 0;
                for (int q = 0; q <= p; q++) want += kval(q, h * 4 + d);
                assert_true(fabsf(sum[h * 4 + d] - want) <= 0.01f * fabsf(want) + 1e-3f);
            }
    }
    /* the state holds every row written, and nothing in layer row 0 */
    const float *c = st->states[0].t.data;
    for (int p = 0; p < 8; p++)
        for (int h = 0; h < 2; h++)
            for (int d = 0; d < 4; d++) {
                assert_true(c[((1 * 2 + h) * 8 + p) * 4 + d] == kval(p, h * 4 + d));
                assert_true(c[((0 * 2 + h) * 8 + p) * 4 + d] == 0.0f);
            }
    rt_states_free(st);
    tprog_end(&t);
}

/* A value read before a write must keep the old contents: read_state cannot be a view. */
static void test_state_read_before_write_is_copied(void **state) {
    (void)state;
    TProg t = tprog_begin();
    const int64_t d[] = {4};
    MilValue *S = mil_state(t.f, "s", MIL_FP16, 1, d);
    MilValue *x = mil_input(t.f, "x", MIL_FP16, 1, d);
    MilValue *old = mil_add_read_state(t.f, "old", S);
    assert_non_null(mil_add_write_state(t.f, "w", S, x));
    MilValue *out = mil_add_mul(t.f, "out", old, mil_const_fp16(t.f, "two", 2.0f));
    tprog_finish(&t, 1, &out);
    Err e = {{0}};
    RtStates *st = rt_states_new(t.fn, &e);
    float x1[4] = {1, 2, 3, 4}, x2[4] = {5, 6, 7, 8};
    tprog_run(&t, 1, (RtInput[]){input("x", MIL_FP16, x1, 1, d)}, st);
    const float *o = tprog_out(&t, "out")->data;
    for (int i = 0; i < 4; i++) assert_true(o[i] == 0.0f);
    tprog_run(&t, 1, (RtInput[]){input("x", MIL_FP16, x2, 1, d)}, st);
    o = tprog_out(&t, "out")->data;
    for (int i = 0; i < 4; i++) assert_true(o[i] == 2 * x1[i]);
    for (int i = 0; i < 4; i++) assert_true(((float *)st->states[0].t.data)[i] == x2[i]);
    rt_states_free(st);
    tprog_end(&t);
}

/* Two models (chunks) declaring the same state share one RtStates; each writes its own row. */
static void test_state_shared_across_models(void **state) {
    (void)state;
    TProg a = tprog_begin(), b = tprog_begin();
    build_kv_program(&a, 0);
    build_kv_program(&b, 1);
    Err e = {{0}};
    RtStates *st = rt_states_new(a.fn, &e);
    for (int p = 0; p < 3; p++) {
        float k[8];
        int32_t pos = p;
        for (int i = 0; i < 8; i++) k[i] = kval(p, i);
        RtInput in[2] = {input("k", MIL_FP16, k, 4, K_DIMS), input("pos", MIL_INT32, &pos, 1, (int64_t[]){1})};
        tprog_run(&a, 2, in, st);
        for (int i = 0; i < 8; i++) k[i] = -kval(p, i);
        tprog_run(&b, 2, in, st);
    }
    const float *c = st->states[0].t.data;
    for (int p = 0; p < 3; p++)
        for (int i = 0; i < 8; i++) {
            int h = i / 4, dd = i % 4;
            assert_true(c[((0 * 2 + h) * 8 + p) * 4 + dd] == kval(p, i));
            assert_true(c[((1 * 2 + h) * 8 + p) * 4 + dd] == -kval(p, i));
        }
    /* chunk b's own sum sees only its row */
    const float *sum = tprog_out(&b, "o_sum")->data;
    assert_true(sum[0] < 0);
    rt_states_free(st);
    /* a state of another shape is refused */
    TProg w = tprog_begin();
    MilValue *S = mil_state(w.f, "cache", MIL_FP16, 4, (int64_t[]){2, 2, 4, 4});
    MilValue *r = mil_add_read_state(w.f, "r", S);
    tprog_finish(&w, 1, &r);
    RtStates *other = rt_states_new(w.fn, &e);
    float k[8] = {0};
    int32_t pos = 0;
    tprog_run_fails(&a, 2, (RtInput[]){input("k", MIL_FP16, k, 4, K_DIMS), input("pos", MIL_INT32, &pos, 1, (int64_t[]){1})},
                    other, "state 'cache' is fp16 [2, 2, 4, 4]; the function declares tensor<fp16, [2, 2, 8, 4]>");
    tprog_run_fails(&a, 2, (RtInput[]){input("k", MIL_FP16, k, 4, K_DIMS), input("pos", MIL_INT32, &pos, 1, (int64_t[]){1})},
                    NULL, "state 'cache' (tensor<fp16, [2, 2, 8, 4]>) was not passed");
    rt_states_free(other);
    tprog_end(&w);
    tprog_end(&a);
    tprog_end(&b);
}

/* Repeated runs allocate nothing new once the pool is warm. */
static void test_memory_is_flat(void **state) {
    (void)state;
    TProg t = tprog_begin();
    build_kv_program(&t, 0);
    Err e = {{0}};
    RtStates *st = rt_states_new(t.fn, &e);
    RtMemoryStats m1, m2;
    float k[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (int p = 0; p < 200; p++) {
        int32_t pos = p % 8;
        tprog_run(&t, 2, (RtInput[]){input("k", MIL_FP16, k, 4, K_DIMS), input("pos", MIL_INT32, &pos, 1, (int64_t[]){1})}, st);
        if (p == 1) rt_memory_stats(t.m, &m1);
    }
    rt_memory_stats(t.m, &m2);
    assert_true(m1.fresh_allocs > 0);
    assert_int_equal(m2.fresh_allocs, m1.fresh_allocs);
    assert_int_equal(m2.pool_bytes, m1.pool_bytes);
    rt_states_free(st);
    tprog_end(&t);
}

static void test_input_checks(void **state) {
    (void)state;
    TProg t = tprog_begin();
    MilValue *ids = mil_input_enumerated(t.f, "ids", MIL_INT32, 2, 2, (int64_t[]){1, 1, 1, 4});
    MilValue *tab = tconst_f16(t.f, "tab", 2, (int64_t[]){10, 3}, (float[30]){0});
    MilValue *g = mil_add_gather(t.f, "g", tab, ids, 0, 0);
    tprog_finish(&t, 1, &g);
    int32_t v[4] = {1, 2, 3, 4};
    tprog_run(&t, 1, (RtInput[]){input("ids", MIL_INT32, v, 2, (int64_t[]){1, 1})}, NULL);
    tassert_shape(tprog_out(&t, "g"), 3, (int64_t[]){1, 1, 3});
    tprog_run(&t, 1, (RtInput[]){input("ids", MIL_INT32, v, 2, (int64_t[]){1, 4})}, NULL);
    tassert_shape(tprog_out(&t, "g"), 3, (int64_t[]){1, 4, 3});
    tprog_run_fails(&t, 1, (RtInput[]){input("ids", MIL_INT32, v, 2, (int64_t[]){1, 3})}, NULL,
                    "input 'ids' is int32 [1, 3]; the function declares tensor<int32, [1, ?]> (one of its enumerated shapes)");
    tprog_run_fails(&t, 1, (RtInput[]){input("ids", MIL_FP16, v, 2, (int64_t[]){1, 1})}, NULL, "input 'ids' is fp16 [1, 1]");
    tprog_run_fails(&t, 0, NULL, NULL, "input 'ids' (tensor<int32, [1, ?]>) is missing");
    tprog_run_fails(&t, 2, (RtInput[]){input("ids", MIL_INT32, v, 2, (int64_t[]){1, 1}), input("idz", MIL_INT32, v, 2, (int64_t[]){1, 1})},
                    NULL, "no input named 'idz'");
    assert_null(rt_output(t.fn, "g"));   /* a failed run leaves no outputs */
    tprog_end(&t);
}

/* ==== Packages ==== */

/* Two functions using one LUT weight (the same blobs): written, read back, run; the weight is
 * dequantized once. */
static void test_package_round_trip_shares_weights(void **state) {
    (void)state;
    char *dir = scratch_dir("rtpkg");
    char *path = path_join(dir, "two.mlpackage");
    Err e = {{0}};
    PkgWriter *w;
    assert_int_equal(pkg_writer_open(&w, path, &e), 0);
    MilProgram *p = mil_program_new();
    pkg_writer_attach(w, p);
    enum { OUT = 32, IN = 16 };
    uint8_t idx[OUT * IN], packed[OUT * IN / 2];
    for (int i = 0; i < OUT * IN; i++) idx[i] = (uint8_t)((i * 7 + i / 5) % 16);
    mil_pack_subbyte(MIL_UINT4, idx, OUT * IN, packed);
    float lut[OUT / 8 * 16];
    trand(lut, OUT / 8 * 16, 1.0f, 3);
    uint16_t *lh = tf16(lut, OUT / 8 * 16);
    MilBlobRef ri, rl;
    assert_int_equal(pkg_writer_add_blob(w, MIL_UINT4, OUT * IN, packed, &ri, &e), 0);
    assert_int_equal(pkg_writer_add_blob(w, MIL_FP16, OUT / 8 * 16, lh, &rl, &e), 0);
    const char *names[2] = {"infer", "prefill"};
    int64_t T[2] = {1, 4};
    for (int fi = 0; fi < 2; fi++) {
        MilFunction *f = mil_function_new(p, names[fi], NULL);
        MilValue *x = mil_input(f, "x", MIL_FP16, 4, (int64_t[]){1, IN, 1, T[fi]});
        MilValue *ind = mil_literal_blob(p, MIL_UINT4, 4, (int64_t[]){OUT, IN, 1, 1}, &ri);
        MilValue *lt = mil_literal_blob(p, MIL_FP16, 6, (int64_t[]){OUT / 8, 1, 1, 1, 16, 1}, &rl);
        MilValue *wt = mil_add_lut_to_dense(f, "w", ind, lt, -1);
        MilValue *y = mil_add_conv(f, "y", x, wt, NULL, NULL);
        mil_set_outputs(f, 1, &y);
    }
    mil_program_set_default_function(p, "infer");
    if (pkg_writer_finish(w, p, NULL, &e) < 0) {
        print_error("%s\n", e.msg);
        fail();
    }
    RtModel *m;
    if (rt_open(&m, path, NULL, &e) < 0) {
        print_error("%s\n", e.msg);
        fail();
    }
    assert_int_equal(rt_n_functions(m), 2);
    assert_string_equal(rt_function_name(rt_function(m, NULL)), "infer");
    RtMemoryStats ms;
    rt_memory_stats(m, &ms);
    /* one dequantized copy of the weight, kept as fp16 (plus a few small int consts of each
     * function) */
    assert_true(ms.const_bytes >= (uint64_t)OUT * IN * 2 && ms.const_bytes < (uint64_t)OUT * IN * 2 + 256);
    assert_true(ms.shared_consts >= 1);
    float xs[IN * 4];
    trand(xs, IN * 4, 1.0f, 8);
    RtFunction *pf = rt_function(m, "prefill"), *inf = rt_function(m, "infer");
    assert_int_equal(rt_run(pf, 1, (RtInput[]){input("x", MIL_FP16, xs, 4, (int64_t[]){1, IN, 1, 4})}, NULL, &e), 0);
    const float *yp = rt_output(pf, "y")->data;
    for (int tt = 0; tt < 4; tt++) {
        float col[IN];
        for (int c = 0; c < IN; c++) col[c] = xs[c * 4 + tt];
        assert_int_equal(rt_run(inf, 1, (RtInput[]){input("x", MIL_FP16, col, 4, (int64_t[]){1, IN, 1, 1})}, NULL, &e), 0);
        const float *yi = rt_output(inf, "y")->data;
        for (int o = 0; o < OUT; o++) {
            double want = 0;
            for (int c = 0; c < IN; c++) want += (double)lut[(o / 8) * 16 + idx[o * IN + c]] * col[c];
            assert_true(tulps(yi[o], round_f16((float)want)) <= 1);
            assert_true(tulps(yp[o * 4 + tt], yi[o]) <= 1);
        }
    }
    rt_close(m);
    mil_program_free(p);
    free(lh);
    remove_tree(dir);
    free(path);
    free(dir);
}

/* ==== Golden packages ==== */

static void test_golden_stateful_palettized(void **state) {
    (void)state;
    char *path = shared_path("golden/stateful_palettized_ios18.mlpackage");
    if (!path) skip();
    Err e = {{0}};
    RtModel *m;
    if (rt_open(&m, path, NULL, &e) < 0) {
        print_error("%s\n", e.msg);
        fail();
    }
    RtFunction *f = rt_function(m, NULL);
    RtStates *st = rt_states_new(f, &e);
    assert_non_null(st);
    const int64_t d[] = {1, 64, 8, 8};
    float *x = malloc(sizeof(float) * 4096), *prev = malloc(sizeof(float) * 4096);
    trand(x, 4096, 1.0f, 12);
    for (int run = 0; run < 2; run++) {
        memcpy(prev, st->states[0].t.data, sizeof(float) * 4096);
        assert_int_equal(rt_run(f, 1, (RtInput[]){input("x", MIL_FP16, x, 4, d)}, st, &e), 0);
        const float *out = rt_output(f, "out")->data, *s = st->states[0].t.data;
        /* out = relu(state'), state' = layer_norm(conv(x)) + state */
        int nonzero = 0;
        for (int i = 0; i < 4096; i++) {
            assert_true(out[i] == (s[i] > 0 ? s[i] : 0.0f));
            nonzero += s[i] != prev[i];
        }
        assert_true(nonzero > 4000);
    }
    /* the same x twice: state2 = 2 * layer_norm(conv(x)) = 2 * state1, up to fp16 rounding */
    const float *s2 = st->states[0].t.data;
    for (int i = 0; i < 4096; i++) assert_true(fabsf(s2[i] - 2 * prev[i]) <= 2e-3f * fabsf(s2[i]) + 1e-3f);
    rt_states_free(st);
    rt_close(m);
    free(x);
    free(prev);
    free(path);
}

static void test_golden_multifunction(void **state) {
    (void)state;
    char *path = shared_path("golden/multifunction_ios18.mlpackage");
    if (!path) skip();
    Err e = {{0}};
    RtModel *m;
    if (rt_open(&m, path, NULL, &e) < 0) {
        print_error("%s\n", e.msg);
        fail();
    }
    for (int i = 0; i < rt_n_functions(m); i++) {
        RtFunction *f = rt_function_at(m, i);
        const MilFunction *mf = rt_function_mil(f);
        RtInput in[8];
        float *bufs[8] = {0};
        int n = 0;
        for (int k = 0; k < mf->n_inputs && n < 8; k++) {
            const MilValue *v = mf->inputs[k];
            if (v->type.kind == MIL_STATE) continue;
            int64_t cnt = mil_type_numel(&v->type);
            assert_true(cnt > 0);
            bufs[n] = calloc((size_t)cnt, 4);
            if (rt_is_float(v->type.dtype)) trand(bufs[n], cnt, 1.0f, 3);
            in[n] = input(v->name, v->type.dtype, bufs[n], v->type.rank, v->type.dims);
            n++;
        }
        RtStates *st = rt_states_new(f, &e);
        if (rt_run(f, n, in, st, &e) < 0) {
            print_error("%s\n", e.msg);
            fail();
        }
        for (int k = 0; k < rt_n_outputs(f); k++) {
            const RtTensor *o = rt_output(f, rt_output_name(f, k));
            assert_non_null(o);
            if (rt_is_float(o->dtype))
                for (int64_t j = 0; j < rt_numel(o); j++) assert_true(isfinite(((float *)o->data)[j]));
        }
        rt_states_free(st);
        for (int k = 0; k < n; k++) free(bufs[k]);
    }
    rt_close(m);
    free(path);
}

/* ANEMLL's chunk: running a batch through `prefill` and the same tokens one by one through
 * `infer` must give the same hidden states and the same KV cache. */
static void golden_ffn_pf(const char *rel, int n_tokens) {
    char *path = shared_path(rel);
    if (!path) skip();
    Err e = {{0}};
    RtModel *m;
    if (rt_open(&m, path, NULL, &e) < 0) {
        print_error("%s\n", e.msg);
        fail();
    }
    RtFunction *pf = rt_function(m, "prefill"), *inf = rt_function(m, "infer");
    assert_non_null(pf);
    assert_non_null(inf);
    assert_ptr_equal(rt_function(m, NULL), inf);
    const MilValue *hs = rt_find_input(pf, "hidden_states"), *cm = rt_find_input(pf, "causal_mask");
    int64_t B = hs->type.dims[1], H = hs->type.dims[2], ctx = cm->type.dims[3];
    RtStates *s1 = rt_states_new(pf, &e), *s2 = rt_states_new(inf, &e);
    assert_non_null(s1);
    assert_non_null(s2);
    float *hid = malloc(sizeof(float) * (size_t)(B * H)), *mask = malloc(sizeof(float) * (size_t)(B * ctx));
    int32_t *posv = malloc(sizeof(int32_t) * (size_t)B), zero = 0;
    trand(hid, B * H, 1.0f, 77);
    for (int64_t i = 0; i < B; i++) {
        posv[i] = (int32_t)i;
        for (int64_t j = 0; j < ctx; j++) mask[i * ctx + j] = j <= i ? 0.0f : -INFINITY;
    }
    RtInput pin[4] = {input("hidden_states", MIL_FP16, hid, 3, (int64_t[]){1, B, H}),
                      input("position_ids", MIL_INT32, posv, 1, (int64_t[]){B}),
                      input("causal_mask", MIL_FP16, mask, 4, (int64_t[]){1, 1, B, ctx}),
                      input("current_pos", MIL_INT32, &zero, 1, (int64_t[]){1})};
    if (rt_run(pf, 4, pin, s1, &e) < 0) {
        print_error("%s\n", e.msg);
        fail();
    }
    const RtTensor *po = rt_output(pf, "output_hidden_states");
    int full = po->dims[1] == B;   /* the last chunk returns only row 0 */
    float *pref = malloc(sizeof(float) * (size_t)rt_numel(po));
    memcpy(pref, po->data, sizeof(float) * (size_t)rt_numel(po));
    double max_diff = 0, max_val = 0;
    for (int t = 0; t < n_tokens; t++) {
        int32_t p = t;
        RtInput iin[4] = {input("hidden_states", MIL_FP16, hid + t * H, 3, (int64_t[]){1, 1, H}),
                          input("position_ids", MIL_INT32, &p, 1, (int64_t[]){1}),
                          input("causal_mask", MIL_FP16, mask + t * ctx, 4, (int64_t[]){1, 1, 1, ctx}),
                          input("current_pos", MIL_INT32, &p, 1, (int64_t[]){1})};
        if (rt_run(inf, 4, iin, s2, &e) < 0) {
            print_error("%s\n", e.msg);
            fail();
        }
        const float *io = rt_output(inf, "output_hidden_states")->data;
        /* the last chunk's prefill returns an unnormed row 0 (ANEMLL: it skips the final norm,
         * llama also the last MLP): only its cache can be compared */
        if (!full) continue;
        for (int64_t j = 0; j < H; j++) {
            assert_true(isfinite(io[j]));
            double d = fabs((double)io[j] - pref[t * H + j]);
            max_diff = d > max_diff ? d : max_diff;
            max_val = fabs(io[j]) > max_val ? fabs(io[j]) : max_val;
        }
    }
    assert_true(!full || max_val > 0.1);
    if (max_diff > 0.02 * max_val) {
        print_error("%s: prefill and infer outputs differ by %g (max |value| %g)\n", rel, max_diff, max_val);
        fail();
    }
    /* the KV rows of the processed positions agree; the rest of the cache is untouched (0) */
    const RtTensor *c1 = &s1->states[0].t, *c2 = &s2->states[0].t;
    int64_t L2 = c1->dims[0], nkv = c1->dims[1], sl = c1->dims[2], hd = c1->dims[3];
    long written = 0;
    for (int64_t r = 0; r < L2; r++)
        for (int64_t h = 0; h < nkv; h++)
            for (int64_t p = 0; p < sl; p++)
                for (int64_t d = 0; d < hd; d++) {
                    int64_t at = ((r * nkv + h) * sl + p) * hd + d;
                    float a = ((float *)c1->data)[at], b = ((float *)c2->data)[at];
                    if (p >= B) assert_true(a == 0.0f);
                    if (p >= n_tokens) continue;
                    written += a != 0.0f;
                    if (fabsf(a - b) > 0.02f * (fabsf(b) + 0.5f)) {
                        print_error("%s: cache [%lld, %lld, %lld, %lld]: prefill %g, infer %g\n", rel, (long long)r,
                                    (long long)h, (long long)p, (long long)d, (double)a, (double)b);
                        fail();
                    }
                }
    assert_true(written > 0);
    rt_states_free(s1);
    rt_states_free(s2);
    free(hid);
    free(mask);
    free(posv);
    free(pref);
    rt_close(m);
    free(path);
}

static void test_golden_anemll_llama(void **state) {
    (void)state;
    golden_ffn_pf("golden/anemll/llama3_tiny/nolut/llama_FFN_PF_chunk_01of02.mlpackage", 32);
    golden_ffn_pf("golden/anemll/llama3_tiny/lut/llama_FFN_PF_lut4_chunk_02of02.mlpackage", 4);
}

static void test_golden_anemll_qwen(void **state) {
    (void)state;
    golden_ffn_pf("golden/anemll/qwen3_tiny/nolut/qwen_FFN_PF_chunk_01of02.mlpackage", 32);
    golden_ffn_pf("golden/anemll/qwen3_tiny/lut/qwen_FFN_PF_lut4_chunk_02of02.mlpackage", 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_updates_in_place),
        cmocka_unit_test(test_state_read_before_write_is_copied),
        cmocka_unit_test(test_state_shared_across_models),
        cmocka_unit_test(test_memory_is_flat),
        cmocka_unit_test(test_input_checks),
        cmocka_unit_test(test_package_round_trip_shares_weights),
        cmocka_unit_test(test_golden_stateful_palettized),
        cmocka_unit_test(test_golden_multifunction),
        cmocka_unit_test(test_golden_anemll_llama),
        cmocka_unit_test(test_golden_anemll_qwen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
