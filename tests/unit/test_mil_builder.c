/* The MIL builder: output types of every op in the table, the defaults it materializes
 * (as coremltools does), the errors it reports for bad graphs, the blob sink, the model.mil
 * printer, validation and structural comparison. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "coreml_testutil.h"
#include "mil/mil.h"
#include "mil/ops.h"
#include "mil/print.h"

static char tbuf[256];
static const char *ty(const MilValue *v) {
    assert_non_null(v);
    mil_type_str(&v->type, tbuf, sizeof tbuf);
    return tbuf;
}

static void *zeros(size_t n) { return xcalloc(1, n); }

/* A const of zeros with the given dtype and shape. */
static MilValue *zconst(MilFunction *f, const char *name, MilDType dt, int rank, const int64_t *dims) {
    MilType t = mil_tensor_type(dt, rank, dims);
    uint64_t nb;
    mil_packed_size(dt, (uint64_t)mil_type_numel(&t), &nb);
    void *z = zeros((size_t)nb);
    MilValue *v = mil_const(f, name, dt, rank, dims, z, (size_t)nb);
    free(z);
    return v;
}

static void assert_ok(MilProgram *p) {
    Err e;
    if (mil_error(p, &e) < 0) {
        print_error("unexpected builder error: %s\n", e.msg);
        fail();
    }
}

static void assert_ints(const MilValue *v, int n, const int64_t *want) {
    int64_t got[16];
    int k;
    assert_non_null(v);
    assert_int_equal(mil_value_ints(v, got, 16, &k), 0);
    assert_int_equal(k, n);
    for (int i = 0; i < n; i++) assert_int_equal(got[i], want[i]);
}

/* ==== Output types of every op ==== */

static void test_conv_and_defaults(void **state) {
    (void)state;
    MilProgram *p = mil_program_new();
    MilFunction *f = mil_function_new(p, "main", NULL);
    MilValue *x = mil_input(f, "x", MIL_FP16, 4, (int64_t[]){1, 64, 1, 8});
    MilValue *w = zconst(f, "w", MIL_FP16, 4, (int64_t[]){32, 64, 1, 1});
    MilValue *y = mil_add_conv(f, "c", x, w, NULL, NULL);
    assert_string_equal(ty(y), "tensor<fp16, [1, 32, 1, 8]>");
    /* coremltools passes every optional input with a default explicitly */
    assert_ints(mil_lookup(f, "c_strides_0"), 2, (int64_t[]){1, 1});
    assert_ints(mil_lookup(f, "c_pad_0"), 4, (int64_t[]){0, 0, 0, 0});
    assert_ints(mil_lookup(f, "c_dilations_0"), 2, (int64_t[]){1, 1});
    assert_ints(mil_lookup(f, "c_groups_0"), 1, (int64_t[]){1});
    assert_string_equal(mil_value_str(mil_lookup(f, "c_pad_type_0")), "valid");
    const MilOp *op = y->producer;
    assert_null(mil_op_input(op, "bias"));   /* None default: omitted */
    assert_ptr_equal(mil_op_input(op, "strides"), mil_lookup(f, "c_strides_0"));
    assert_int_equal(op->def->id, MIL_OP_CONV);
    assert_int_equal(op->n_args, op->def->n_params);

    MilValue *x2 = mil_input(f, "x2", MIL_FP32, 4, (int64_t[]){1, 4, 9, 9});
    MilValue *w2 = zconst(f, "w2", MIL_FP32, 4, (int64_t[]){8, 4, 3, 3});
    MilConvOpts same = {.pad_type = "same", .strides = (int32_t[]){2, 2}};
    assert_string_equal(ty(mil_add_conv(f, "c_same", x2, w2, NULL, &same)), "tensor<fp32, [1, 8, 5, 5]>");
    MilConvOpts custom = {.pad_type = "custom", .pad = (int32_t[]){1, 1, 1, 1}};
    assert_string_equal(ty(mil_add_conv(f, "c_custom", x2, w2, NULL, &custom)), "tensor<fp32, [1, 8, 9, 9]>");
    assert_string_equal(ty(mil_add_conv(f, "c_valid", x2, w2, zconst(f, "b2", MIL_FP32, 1, (int64_t[]){8}), NULL)),
                        "tensor<fp32, [1, 8, 7, 7]>");
    MilConvOpts dil = {.dilations = (int32_t[]){2, 2}, .groups = 2};
    MilValue *wg = zconst(f, "wg", MIL_FP32, 4, (int64_t[]){8, 2, 3, 3});
    assert_string_equal(ty(mil_add_conv(f, "c_dil", x2, wg, NULL, &dil)), "tensor<fp32, [1, 8, 5, 5]>");
    assert_ok(p);
    mil_program_free(p);
}

static void test_linear_matmul_elementwise(void **state) {
    (void)state;
    MilProgram *p = mil_program_new();
    MilFunction *f = mil_function_new(p, "main", NULL);
    MilValue *x = mil_input(f, "x", MIL_FP16, 3, (int64_t[]){1, 3, 128});
    MilValue *w = zconst(f, "w", MIL_FP16, 2, (int64_t[]){64, 128});
    MilValue *y = mil_add_linear(f, "lin", x, w, NULL);
    assert_string_equal(ty(y), "tensor<fp16, [1, 3, 64]>");
    MilValue *bias = mil_lookup(f, "lin_bias_0");   /* non-None default: zeros of D_out */
    assert_string_equal(ty(bias), "tensor<fp16, [64]>");

    MilValue *q = mil_input(f, "q", MIL_FP16, 4, (int64_t[]){1, 4, 1, 32});
    MilValue *k = mil_input(f, "k", MIL_FP16, 4, (int64_t[]){1, 4, 256, 32});
    MilValue *s = mil_add_matmul(f, "s", q, k, 0, 1);
    assert_string_equal(ty(s), "tensor<fp16, [1, 4, 1, 256]>");
    MilValue *v1 = mil_input(f, "v1", MIL_FP32, 1, (int64_t[]){3});
    MilValue *m2 = mil_input(f, "m2", MIL_FP32, 2, (int64_t[]){3, 4});
    assert_string_equal(ty(mil_add_matmul(f, "mv", v1, m2, 0, 0)), "tensor<fp32, [4]>");
    MilValue *b1 = mil_input(f, "b1", MIL_FP32, 3, (int64_t[]){5, 2, 3});
    assert_string_equal(ty(mil_add_matmul(f, "bm", b1, m2, 0, 0)), "tensor<fp32, [5, 2, 4]>");

    MilValue *mask = mil_input(f, "mask", MIL_FP16, 4, (int64_t[]){1, 1, 1, 256});
    MilValue *a = mil_add_add(f, "a", s, mask);
    assert_string_equal(ty(a), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_greater_equal(f, "ge", s, mask)), "tensor<bool, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_less(f, "lt", s, mask)), "tensor<bool, [1, 4, 1, 256]>");
    MilValue *neg = mil_const_fp16(f, "neg", -1.0f);
    assert_string_equal(ty(mil_add_mul(f, "mneg", a, neg)), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_sub(f, "sb", a, neg)), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_real_div(f, "dv", a, neg)), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_maximum(f, "mx", a, neg)), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_minimum(f, "mn", a, neg)), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_pow(f, "pw", a, neg)), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_sqrt(f, "sq", a)), "tensor<fp16, [1, 4, 1, 256]>");
    MilValue *rs = mil_add_rsqrt(f, "rs", a, 1e-6);
    assert_string_equal(ty(rs), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_lookup(f, "rs_epsilon_0")), "fp16");   /* in x's dtype */
    assert_string_equal(ty(mil_add_exp(f, "ex", a)), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_tanh(f, "th", a)), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_silu(f, "si", a)), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_relu(f, "re", a)), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_gelu(f, "ge2", a, "TANH_APPROXIMATION")), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_softmax(f, "sm", a, -1)), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_clip(f, "cl", a, -1.0, 1.0)), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_band_part(f, "bp", a, -1, 0)), "tensor<fp16, [1, 4, 1, 256]>");
    assert_string_equal(ty(mil_add_identity(f, "id", a)), "tensor<fp16, [1, 4, 1, 256]>");
    assert_ok(p);
    mil_program_free(p);
}

static void test_norms_and_reductions(void **state) {
    (void)state;
    MilProgram *p = mil_program_new();
    MilFunction *f = mil_function_new(p, "main", NULL);
    MilValue *x = mil_input(f, "x", MIL_FP16, 3, (int64_t[]){1, 1, 256});
    MilValue *ln = mil_add_layer_norm(f, "ln", x, 1, (int32_t[]){-1}, NULL, NULL, 1e-5);
    assert_string_equal(ty(ln), "tensor<fp16, [1, 1, 256]>");
    assert_string_equal(ty(mil_lookup(f, "ln_epsilon_0")), "fp16");
    MilValue *g = zconst(f, "g", MIL_FP16, 1, (int64_t[]){256});
    assert_non_null(mil_add_layer_norm(f, "ln2", x, 1, (int32_t[]){2}, g, g, 1e-5));
    assert_non_null(mil_add_layer_norm(f, "ln3", x, 0, NULL, NULL, NULL, 1e-5));
    assert_ints(mil_lookup(f, "ln3_axes_0"), 3, (int64_t[]){0, 1, 2});   /* default: every axis */
    assert_string_equal(ty(mil_add_reduce_mean(f, "rm", x, 1, (int32_t[]){-1}, 1)), "tensor<fp16, [1, 1, 1]>");
    assert_string_equal(ty(mil_add_reduce_max(f, "rx", x, 1, (int32_t[]){-1}, 0)), "tensor<fp16, [1, 1]>");
    assert_string_equal(ty(mil_add_reduce_sum(f, "rsum", x, 0, NULL, 0)), "fp16");   /* all axes: scalar */
    MilValue *am = mil_add_reduce_argmax(f, "am", x, -1, 1);
    assert_string_equal(ty(am), "tensor<int32, [1, 1, 1]>");
    assert_string_equal(mil_value_str(mil_lookup(f, "am_output_dtype_0")), "int32");
    MilValue *am16 = mil_add_cast(f, "am16", am, MIL_INT16);
    assert_string_equal(ty(am16), "tensor<int16, [1, 1, 1]>");
    assert_string_equal(ty(mil_add_gather_along_axis(f, "gv", x, am16, -1)), "tensor<fp16, [1, 1, 1]>");
    assert_ok(p);
    mil_program_free(p);
}

static void test_shape_ops(void **state) {
    (void)state;
    MilProgram *p = mil_program_new();
    MilFunction *f = mil_function_new(p, "main", NULL);
    MilValue *x = mil_input(f, "x", MIL_FP16, 4, (int64_t[]){1, 4, 1, 32});
    MilValue *r = mil_add_reshape(f, "r", x, 2, (int32_t[]){1, -1});
    assert_string_equal(ty(r), "tensor<fp16, [1, 128]>");
    assert_string_equal(ty(mil_add_reshape(f, "r0", x, 3, (int32_t[]){0, 0, 32})), "tensor<fp16, [4, 1, 32]>");
    MilValue *h = mil_input(f, "h", MIL_FP16, 3, (int64_t[]){1, 1, 128});
    MilValue *t = mil_add_transpose(f, "t", h, 3, (int32_t[]){0, 2, 1});
    assert_string_equal(ty(t), "tensor<fp16, [1, 128, 1]>");
    MilValue *e4 = mil_add_expand_dims(f, "e4", t, 1, (int32_t[]){2});
    assert_string_equal(ty(e4), "tensor<fp16, [1, 128, 1, 1]>");
    assert_string_equal(ty(mil_add_expand_dims(f, "em", t, 2, (int32_t[]){0, -1})), "tensor<fp16, [1, 1, 128, 1, 1]>");
    assert_string_equal(ty(mil_add_squeeze(f, "sq", e4, 1, (int32_t[]){2})), "tensor<fp16, [1, 128, 1]>");
    assert_string_equal(ty(mil_add_squeeze(f, "sqa", e4, 0, NULL)), "tensor<fp16, [128]>");
    MilValue *kv = mil_input(f, "kv", MIL_FP16, 4, (int64_t[]){2, 1, 256, 32});
    assert_string_equal(ty(mil_add_tile(f, "tl", kv, 4, (int32_t[]){1, 2, 1, 1})), "tensor<fp16, [2, 2, 256, 32]>");
    MilValue *cc = mil_add_concat(f, "cc", 2, (MilValue *[]){x, x}, -1, 0);
    assert_string_equal(ty(cc), "tensor<fp16, [1, 4, 1, 64]>");
    MilOp *sp = mil_add_split(f, "sp", r, 1, 4, NULL);
    assert_int_equal(sp->n_outputs, 4);
    assert_string_equal(sp->outputs[3]->name, "sp_3");
    assert_string_equal(ty(sp->outputs[3]), "tensor<fp16, [1, 32]>");
    MilOp *sp2 = mil_add_split(f, "sp2", r, -1, 2, (int32_t[]){100, 28});
    assert_string_equal(ty(sp2->outputs[0]), "tensor<fp16, [1, 100]>");
    assert_string_equal(ty(sp2->outputs[1]), "tensor<fp16, [1, 28]>");
    MilValue *n = mil_input(f, "n", MIL_FP16, 3, (int64_t[]){1, 1, 256});
    MilSlice s = {3, (int32_t[]){0, 0, 0}, (int32_t[]){1, 1, 128}, NULL, NULL, NULL, NULL, (uint8_t[]){1, 1, 0}, NULL};
    assert_string_equal(ty(mil_add_slice_by_index(f, "sl", n, &s)), "tensor<fp16, [1, 1, 128]>");
    MilSlice s2 = {3, (int32_t[]){0, 0, 16}, (int32_t[]){1, 1, 32}, NULL, NULL, (int32_t[]){1, 1, 2}, NULL, NULL,
                   (uint8_t[]){0, 1, 0}};
    assert_string_equal(ty(mil_add_slice_by_index(f, "sl2", n, &s2)), "tensor<fp16, [1, 8]>");
    MilValue *c = mil_input(f, "cond", MIL_BOOL, 1, (int64_t[]){1});
    MilValue *i1 = mil_input(f, "i1", MIL_INT32, 1, (int64_t[]){1});
    assert_string_equal(ty(mil_add_select(f, "sel", c, i1, mil_const_i32(f, "k", 5))), "tensor<int32, [1]>");
    assert_ok(p);
    mil_program_free(p);
}

static void test_states_gather_and_enumerated_inputs(void **state) {
    (void)state;
    MilProgram *p = mil_program_new();
    MilFunction *f = mil_function_new(p, "infer", NULL);
    MilValue *ids = mil_input_enumerated(f, "input_ids", MIL_INT32, 2, 2, (int64_t[]){1, 1, 1, 32});
    assert_string_equal(ty(ids), "tensor<int32, [1, ?]>");
    assert_int_equal(ids->n_shapes, 2);
    MilValue *emb = zconst(f, "emb", MIL_FP16, 2, (int64_t[]){16, 8});
    MilValue *g = mil_add_gather(f, "g", emb, ids, 0, 0);
    assert_string_equal(ty(g), "tensor<fp16, [1, ?, 8]>");   /* unknown dims propagate */
    assert_string_equal(ty(mil_add_add(f, "g2", g, g)), "tensor<fp16, [1, ?, 8]>");

    MilValue *kv = mil_state(f, "kv", MIL_FP16, 4, (int64_t[]){8, 2, 512, 32});
    assert_string_equal(ty(kv), "state<tensor<fp16, [8, 2, 512, 32]>>");
    MilValue *cur = mil_input(f, "pos", MIL_INT32, 1, (int64_t[]){1});
    MilValue *k = mil_add_read_state(f, "k", kv);
    assert_string_equal(ty(k), "tensor<fp16, [8, 2, 512, 32]>");
    MilValue *z = mil_const_i32v(f, "z", 1, (int32_t[]){0});
    MilValue *one = mil_const_i32v(f, "one", 1, (int32_t[]){1});
    MilValue *end = mil_add_add(f, "end", cur, one);
    MilValue *begin_v = mil_add_concat(f, "bv", 4, (MilValue *[]){z, z, cur, z}, 0, 0);
    MilValue *end_v = mil_add_concat(f, "ev", 4, (MilValue *[]){one, mil_const_i32v(f, "two", 1, (int32_t[]){2}), end, z}, 0, 0);
    MilValue *upd = mil_input(f, "upd", MIL_FP16, 4, (int64_t[]){1, 2, 1, 32});
    MilSlice s = {4, NULL, NULL, begin_v, end_v, (int32_t[]){1, 1, 1, 1}, (uint8_t[]){0, 0, 0, 0},
                  (uint8_t[]){0, 1, 0, 1}, (uint8_t[]){0, 0, 0, 0}};
    MilValue *k2 = mil_add_slice_update(f, "k2", k, upd, &s);
    assert_string_equal(ty(k2), "tensor<fp16, [8, 2, 512, 32]>");
    MilValue *k3 = mil_add_update_state(f, "upd_state", kv, k2);
    assert_string_equal(k3->name, "upd_state");
    assert_non_null(mil_lookup(f, "upd_state"));
    MilOp *w = f->ops[f->n_ops - 2];
    assert_string_equal(w->type, "write_state");
    assert_string_equal(w->name, "upd_state_write_state");
    assert_int_equal(w->n_outputs, 0);

    /* palettized weight: 4-bit indices [8, 4], one 16-entry LUT per 4 rows */
    uint8_t idx[16] = {0};
    MilValue *ind = mil_literal(p, MIL_UINT4, 2, (int64_t[]){8, 4}, idx, sizeof idx);
    uint16_t lut[32] = {0};
    MilValue *lt = mil_literal(p, MIL_FP16, 4, (int64_t[]){2, 1, 16, 1}, lut, sizeof lut);
    MilValue *wd = mil_add_lut_to_dense(f, "w_palettized", ind, lt, -1);
    assert_string_equal(ty(wd), "tensor<fp16, [8, 4]>");
    assert_true(mil_value_is_const(wd));   /* constexpr output: usable where consts are required */
    MilValue *xin = mil_input(f, "xin", MIL_FP16, 2, (int64_t[]){1, 4});
    assert_string_equal(ty(mil_add_linear(f, "lin", xin, wd, NULL)), "tensor<fp16, [1, 8]>");
    assert_int_equal(mil_set_outputs(f, 2, (MilValue *[]){g, k3}), 0);
    assert_ok(p);
    Err e;
    assert_int_equal(mil_program_validate(p, 0, &e), 0);
    mil_program_free(p);
}

/* ==== Errors ==== */

typedef const char *(*Case)(MilProgram *p, MilFunction *f);

static const char *c_dtype_mismatch(MilProgram *p, MilFunction *f) {
    MilValue *a = mil_input(f, "a", MIL_FP16, 1, (int64_t[]){4});
    MilValue *b = mil_input(f, "b", MIL_FP32, 1, (int64_t[]){4});
    return mil_add_add(f, "s", a, b) ? NULL : p->err.msg;
}
static const char *c_broadcast(MilProgram *p, MilFunction *f) {
    MilValue *a = mil_input(f, "a", MIL_FP16, 2, (int64_t[]){2, 3});
    MilValue *b = mil_input(f, "b", MIL_FP16, 2, (int64_t[]){4, 3});
    return mil_add_mul(f, "s", a, b) ? NULL : p->err.msg;
}
static const char *c_conv_channels(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 4, (int64_t[]){1, 64, 1, 1});
    MilValue *w = zconst(f, "w", MIL_FP16, 4, (int64_t[]){8, 32, 1, 1});
    return mil_add_conv(f, "c", x, w, NULL, NULL) ? NULL : p->err.msg;
}
static const char *c_linear_runtime_weight(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){1, 4});
    MilValue *w = mil_input(f, "w", MIL_FP16, 2, (int64_t[]){8, 4});
    return mil_add_linear(f, "l", x, w, NULL) ? NULL : p->err.msg;
}
static const char *c_reshape_count(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){3, 4});
    return mil_add_reshape(f, "r", x, 2, (int32_t[]){5, 2}) ? NULL : p->err.msg;
}
static const char *c_unknown_op(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 1, (int64_t[]){3});
    return mil_add_op1(f, "frobnicate", "y", 1, (MilIn[]){MIL_IN("x", x)}) ? NULL : p->err.msg;
}
static const char *c_unknown_param(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 1, (int64_t[]){3});
    return mil_add_op1(f, "relu", "y", 2, (MilIn[]){MIL_IN("x", x), MIL_IN("alpha", x)}) ? NULL : p->err.msg;
}
static const char *c_missing_input(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 1, (int64_t[]){3});
    return mil_add_op1(f, "add", "y", 1, (MilIn[]){MIL_IN("x", x)}) ? NULL : p->err.msg;
}
static const char *c_null_input(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 1, (int64_t[]){3});
    return mil_add_add(f, "y", x, NULL) ? NULL : p->err.msg;
}
static const char *c_duplicate_name(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 1, (int64_t[]){3});
    mil_add_relu(f, "y", x);
    return mil_add_relu(f, "y", x) ? NULL : p->err.msg;
}
static const char *c_bad_identifier(MilProgram *p, MilFunction *f) {
    return mil_input(f, "model.kv", MIL_FP16, 1, (int64_t[]){3}) ? NULL : p->err.msg;
}
static const char *c_read_tensor_as_state(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 1, (int64_t[]){3});
    return mil_add_read_state(f, "r", x) ? NULL : p->err.msg;
}
static const char *c_state_as_tensor(MilProgram *p, MilFunction *f) {
    MilValue *s = mil_state(f, "s", MIL_FP16, 1, (int64_t[]){3});
    return mil_add_relu(f, "r", s) ? NULL : p->err.msg;
}
static const char *c_state_fp32(MilProgram *p, MilFunction *f) {
    return mil_state(f, "s", MIL_FP32, 1, (int64_t[]){3}) ? NULL : p->err.msg;
}
static const char *c_write_state_type(MilProgram *p, MilFunction *f) {
    MilValue *s = mil_state(f, "s", MIL_FP16, 1, (int64_t[]){3});
    MilValue *d = mil_input(f, "d", MIL_FP16, 1, (int64_t[]){4});
    return mil_add_write_state(f, "w", s, d) ? NULL : p->err.msg;
}
static const char *c_old_opset(MilProgram *p, MilFunction *f) {
    (void)f;
    MilFunction *g = mil_function_new(p, "old", "CoreML7");
    MilValue *x = mil_input(g, "x", MIL_FP16, 1, (int64_t[]){4});
    MilValue *u = mil_input(g, "u", MIL_FP16, 1, (int64_t[]){2});
    MilSlice s = {1, (int32_t[]){0}, (int32_t[]){2}, NULL, NULL, NULL, NULL, NULL, NULL};
    return mil_add_slice_update(g, "su", x, u, &s) ? NULL : p->err.msg;
}
static const char *c_lut_palette(MilProgram *p, MilFunction *f) {
    uint8_t idx[4] = {0};
    uint16_t lut[8] = {0};
    MilValue *i = mil_literal(p, MIL_UINT4, 1, (int64_t[]){8}, idx, 4);
    MilValue *l = mil_literal(p, MIL_FP16, 3, (int64_t[]){1, 8, 1}, lut, 16);
    return mil_add_lut_to_dense(f, "w", i, l, -1) ? NULL : p->err.msg;
}
static const char *c_literal_in_generic_op(MilProgram *p, MilFunction *f) {
    float v[2] = {1, 2};
    MilValue *l = mil_literal(p, MIL_FP32, 1, (int64_t[]){2}, v, 8);
    return mil_add_relu(f, "r", l) ? NULL : p->err.msg;
}
static const char *c_foreign_value(MilProgram *p, MilFunction *f) {
    MilFunction *g = mil_function_new(p, "other", NULL);
    MilValue *x = mil_input(g, "x", MIL_FP16, 1, (int64_t[]){3});
    return mil_add_relu(f, "r", x) ? NULL : p->err.msg;
}
static const char *c_cast_int64(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 1, (int64_t[]){3});
    return mil_add_cast(f, "c", x, MIL_INT64) ? NULL : p->err.msg;
}
static const char *c_gelu_mode(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 1, (int64_t[]){3});
    return mil_add_gelu(f, "g", x, "FAST") ? NULL : p->err.msg;
}
static const char *c_split_indivisible(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 1, (int64_t[]){10});
    return mil_add_split(f, "s", x, 0, 3, NULL) ? NULL : p->err.msg;
}
static const char *c_concat_dtypes(MilProgram *p, MilFunction *f) {
    MilValue *a = mil_input(f, "a", MIL_FP16, 1, (int64_t[]){3});
    MilValue *b = mil_input(f, "b", MIL_INT32, 1, (int64_t[]){3});
    return mil_add_concat(f, "c", 2, (MilValue *[]){a, b}, 0, 0) ? NULL : p->err.msg;
}
static const char *c_squeeze_non_one(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){1, 3});
    return mil_add_squeeze(f, "s", x, 1, (int32_t[]){1}) ? NULL : p->err.msg;
}
static const char *c_transpose_dup(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){2, 3});
    return mil_add_transpose(f, "t", x, 2, (int32_t[]){0, 0}) ? NULL : p->err.msg;
}
static const char *c_gather_axis(MilProgram *p, MilFunction *f) {
    MilValue *e = zconst(f, "e", MIL_FP16, 2, (int64_t[]){4, 2});
    MilValue *i = mil_input(f, "i", MIL_INT32, 1, (int64_t[]){1});
    return mil_add_gather(f, "g", e, i, 2, 0) ? NULL : p->err.msg;
}
static const char *c_gather_float_indices(MilProgram *p, MilFunction *f) {
    MilValue *e = zconst(f, "e", MIL_FP16, 2, (int64_t[]){4, 2});
    MilValue *i = mil_input(f, "i", MIL_FP16, 1, (int64_t[]){1});
    return mil_add_gather(f, "g", e, i, 0, 0) ? NULL : p->err.msg;
}
static const char *c_const_bytes(MilProgram *p, MilFunction *f) {
    uint16_t v[3] = {0};
    return mil_const(f, "c", MIL_FP16, 1, (int64_t[]){4}, v, sizeof v) ? NULL : p->err.msg;
}
static const char *c_slice_update_shape(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){4, 8});
    MilValue *u = mil_input(f, "u", MIL_FP16, 2, (int64_t[]){1, 4});
    MilSlice s = {2, (int32_t[]){0, 0}, (int32_t[]){1, 8}, NULL, NULL, NULL, NULL, NULL, NULL};
    return mil_add_slice_update(f, "su", x, u, &s) ? NULL : p->err.msg;
}
static const char *c_layer_norm_gamma(MilProgram *p, MilFunction *f) {
    MilValue *x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){1, 8});
    MilValue *g = zconst(f, "g", MIL_FP16, 1, (int64_t[]){4});
    return mil_add_layer_norm(f, "ln", x, 1, (int32_t[]){-1}, g, NULL, 1e-5) ? NULL : p->err.msg;
}
static const char *c_output_state(MilProgram *p, MilFunction *f) {
    MilValue *s = mil_state(f, "s", MIL_FP16, 1, (int64_t[]){3});
    return mil_set_outputs(f, 1, &s) == 0 ? NULL : p->err.msg;
}
static const char *c_unknown_opset(MilProgram *p, MilFunction *f) {
    (void)f;
    return mil_function_new(p, "g", "CoreML4") ? NULL : p->err.msg;
}

static void test_errors(void **state) {
    (void)state;
    static const struct { Case fn; const char *want; } cases[] = {
        {c_dtype_mismatch, "they must have the same dtype"},
        {c_broadcast, "do not broadcast"},
        {c_conv_channels, "input channels"},
        {c_linear_runtime_weight, "must be a compile-time value"},
        {c_reshape_count, "cannot reshape"},
        {c_unknown_op, "'frobnicate' is not in the op table"},
        {c_unknown_param, "'alpha' is not an input of relu"},
        {c_missing_input, "required input 'y' is missing"},
        {c_null_input, "input 'y' is NULL"},
        {c_duplicate_name, "'y' (relu) is already used"},
        {c_bad_identifier, "not a valid MIL identifier"},
        {c_read_tensor_as_state, "must be a state"},
        {c_state_as_tensor, "read it with read_state first"},
        {c_state_fp32, "fp16 states only"},
        {c_write_state_type, "must match the state's type"},
        {c_old_opset, "needs opset CoreML8"},
        {c_lut_palette, "palette entries"},
        {c_literal_in_generic_op, "literals are only for constexpr ops"},
        {c_foreign_value, "is not a value of this function"},
        {c_cast_int64, "dtype 'int64' is not one of"},
        {c_gelu_mode, "mode 'FAST'"},
        {c_split_indivisible, "does not divide"},
        {c_concat_dtypes, "must share one dtype"},
        {c_squeeze_non_one, "only size-1 axes can be squeezed"},
        {c_transpose_dup, "twice"},
        {c_gather_axis, "axis 2 is out of range"},
        {c_gather_float_indices, "input 'indices' ('i') is fp16; it must be one of"},
        {c_const_bytes, "needs 8 bytes of data, got 6"},
        {c_slice_update_shape, "update must have the slice's shape"},
        {c_layer_norm_gamma, "gamma must have the normalized shape"},
        {c_output_state, "is a state"},
        {c_unknown_opset, "unknown opset 'CoreML4'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        MilProgram *p = mil_program_new();
        MilFunction *f = mil_function_new(p, "main", NULL);
        const char *msg = cases[i].fn(p, f);
        Err e;
        if (!msg || mil_error(p, &e) == 0) {
            print_error("case %zu (%s) did not fail\n", i, cases[i].want);
            fail();
        }
        assert_contains(e.msg, cases[i].want);
        mil_program_free(p);
    }
}

static void test_first_error_sticks(void **state) {
    (void)state;
    MilProgram *p = mil_program_new();
    MilFunction *f = mil_function_new(p, "main", NULL);
    MilValue *a = mil_input(f, "a", MIL_FP16, 1, (int64_t[]){4});
    MilValue *b = mil_input(f, "b", MIL_FP32, 1, (int64_t[]){4});
    assert_null(mil_add_add(f, "s", a, b));
    /* everything after the first error is refused, and the first message is kept */
    assert_null(mil_add_relu(f, "r", a));
    assert_null(mil_input(f, "c", MIL_FP16, 1, (int64_t[]){1}));
    assert_null(mil_const_i32(f, "k", 1));
    assert_int_equal(mil_set_outputs(f, 1, &a), -1);
    Err e;
    assert_int_equal(mil_error(p, &e), -1);
    assert_contains(e.msg, "function 'main'");
    assert_contains(e.msg, "op 's' (add)");
    assert_int_equal(mil_program_validate(p, 0, &e), -1);
    mil_program_free(p);
}

/* ==== Blob sink ==== */

typedef struct FakeSink {
    int calls;
    uint64_t next;
} FakeSink;

static int fake_put(void *ctx, MilDType dt, uint64_t numel, const void *data, MilBlobRef *out, Err *e) {
    (void)data;
    (void)e;
    FakeSink *s = ctx;
    s->calls++;
    uint64_t nb;
    mil_packed_size(dt, numel, &nb);
    out->file = "@model_path/weights/weight.bin";
    out->offset = 64 + 128 * s->next++;
    out->nbytes = nb;
    out->owner = s;
    return 0;
}

static void test_blob_sink(void **state) {
    (void)state;
    FakeSink fs = {0, 0};
    MilBlobSink sink = {&fs, fake_put};
    MilProgram *p = mil_program_new();
    mil_program_set_blob_sink(p, &sink);
    MilFunction *f = mil_function_new(p, "main", NULL);
    MilValue *small = zconst(f, "small", MIL_FP16, 1, (int64_t[]){9});
    MilValue *big = zconst(f, "big", MIL_FP16, 1, (int64_t[]){10});
    MilValue *ints = zconst(f, "ints", MIL_INT32, 1, (int64_t[]){12});
    MilValue *bools = zconst(f, "bools", MIL_BOOL, 1, (int64_t[]){12});   /* bool stays inline */
    uint8_t idx[8] = {0};
    MilValue *lit = mil_literal(p, MIL_UINT4, 1, (int64_t[]){16}, idx, sizeof idx);
    assert_int_equal(small->data->kind, MIL_CONST_BYTES);
    assert_int_equal(big->data->kind, MIL_CONST_BLOB);
    assert_int_equal(ints->data->kind, MIL_CONST_BLOB);
    assert_int_equal(bools->data->kind, MIL_CONST_BYTES);
    assert_int_equal(lit->data->kind, MIL_CONST_BLOB);
    assert_int_equal(fs.calls, 3);
    assert_int_equal(big->data->blob.offset, 64);
    assert_non_null(big->data->blob.data);   /* small blobs keep a copy for inference */
    assert_ok(p);
    mil_program_free(p);
}

/* ==== Printer, validation, comparison ==== */

static MilProgram *small_program(float c) {
    MilProgram *p = mil_program_new();
    MilFunction *f = mil_function_new(p, "main", NULL);
    MilValue *x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){1, 4});
    MilValue *s = mil_state(f, "kv", MIL_FP16, 2, (int64_t[]){1, 4});
    MilValue *k = mil_add_read_state(f, "k", s);
    MilValue *y = mil_add_mul(f, "y", x, mil_const_fp16(f, "half", c));
    MilValue *z = mil_add_concat(f, "z", 2, (MilValue *[]){y, k}, -1, 0);
    mil_add_write_state(f, "w", s, y);
    mil_set_outputs(f, 1, &z);
    return p;
}

static void test_printer(void **state) {
    (void)state;
    MilProgram *p = small_program(0.5f);
    assert_ok(p);
    char *text = mil_program_to_text(p);
    const char *want =
        "program(1.3)\n"
        "{\n"
        "    func main<ios18>(tensor<fp16, [1, 4]> x, state<tensor<fp16, [1, 4]>> kv) {\n"
        "            tensor<fp16, [1, 4]> k = read_state(input = kv)[name = string(\"k\")];\n"
        "            fp16 half = const()[name = string(\"half\"), val = fp16(0x1p-1)];\n"
        "            tensor<fp16, [1, 4]> y = mul(x = x, y = half)[name = string(\"y\")];\n"
        "            int32 z_axis_0 = const()[name = string(\"z_axis_0\"), val = int32(-1)];\n"
        "            bool z_interleave_0 = const()[name = string(\"z_interleave_0\"), val = bool(false)];\n"
        "            tensor<fp16, [1, 8]> z = concat(axis = z_axis_0, interleave = z_interleave_0, values = (y, k))[name = string(\"z\")];\n"
        "            write_state(data = y, input = kv)[name = string(\"w\")];\n"
        "        } -> (z);\n"
        "}\n";
    assert_string_equal(text, want);
    free(text);
    mil_program_free(p);
}

static void test_validate_and_compare(void **state) {
    (void)state;
    MilProgram *a = small_program(0.5f), *b = small_program(0.5f), *c = small_program(0.25f);
    Err e;
    assert_int_equal(mil_program_validate(a, 0, &e), 0);
    assert_int_equal(mil_program_compare(a, b, &e), 0);
    assert_int_equal(mil_program_compare(a, c, &e), -1);
    assert_contains(e.msg, "const 'half': data differs");
    mil_program_free(a);
    mil_program_free(b);
    mil_program_free(c);

    /* an op whose declared output type disagrees with what its inputs give */
    MilProgram *p = mil_program_new();
    MilFunction *f = mil_function_new(p, "main", NULL);
    MilValue *x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){2, 3});
    MilArg arg = {"x", 1, &x};
    MilType wrong = mil_tensor_type(MIL_FP16, 2, (int64_t[]){3, 2});
    MilOp *op = mil_raw_op(f, "relu", "r", 1, &arg, 1, (const char *[]){"r"}, &wrong, 0);
    assert_non_null(op);
    mil_set_outputs(f, 1, &op->outputs[0]);
    assert_int_equal(mil_program_validate(p, 0, &e), -1);
    assert_contains(e.msg, "output 'r' is declared tensor<fp16, [3, 2]> but its inputs give tensor<fp16, [2, 3]>");
    /* unknown op types: rejected unless allowed */
    MilOp *u = mil_raw_op(f, "mystery", "m", 1, &arg, 1, (const char *[]){"m"}, &wrong, 1);
    assert_non_null(u);
    assert_null(u->def);
    mil_program_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_and_defaults),
        cmocka_unit_test(test_linear_matmul_elementwise),
        cmocka_unit_test(test_norms_and_reductions),
        cmocka_unit_test(test_shape_ops),
        cmocka_unit_test(test_states_gather_and_enumerated_inputs),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_first_error_sticks),
        cmocka_unit_test(test_blob_sink),
        cmocka_unit_test(test_printer),
        cmocka_unit_test(test_validate_and_compare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
