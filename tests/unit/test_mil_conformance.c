/* The op table against coremltools' own op definitions (iOS 15..18, the newest at or below iOS 18)
 * and its program checks, case by case where an earlier table differed:
 *  - matmul (iOS 17): x and y may differ in dtype only when exactly one of them is a const op's
 *    output (a constexpr output does not count), and the result takes the non-const one's dtype;
 *  - reduce_argmax (iOS 17): output_dtype is compared lower-cased ("UINT16" is uint16);
 *  - gather / gather_along_axis (iOS 17): validate_indices = true checks compile-time indices
 *    against [0, size of the axis);
 *  - gather.batch_dims (iOS 16), gather/gather_along_axis.validate_indices and
 *    reduce_argmax.output_dtype (iOS 17) do not exist in older functions: neither written as
 *    defaults there nor accepted;
 *  - conv: dilations > 1 need a weight that is a compile-time value; pad_type same_lower does not
 *    exist in iOS 15;
 *  - programs: every function shares one opset, function inputs have rank >= 1 (the loader's
 *    Placeholder refuses rank 0), op outputs have rank <= 5 unless they are compile-time values
 *    that only constexpr ops read (a LUT). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "coreml_testutil.h"
#include "mil/mil.h"
#include "mil/ops.h"

static char tbuf[256];
static const char *ty(const MilValue *v) {
    assert_non_null(v);
    mil_type_str(&v->type, tbuf, sizeof tbuf);
    return tbuf;
}

/* A const of zeros with the given dtype and shape. */
static MilValue *zconst(MilFunction *f, const char *name, MilDType dt, int rank, const int64_t *dims) {
    MilType t = mil_tensor_type(dt, rank, dims);
    uint64_t nb;
    assert_int_equal(mil_packed_size(dt, (uint64_t)mil_type_numel(&t), &nb), 0);
    void *z = xcalloc(1, (size_t)nb ? (size_t)nb : 1);
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

static void assert_fails(MilProgram *p, const char *want) {
    Err e;
    assert_int_equal(mil_error(p, &e), -1);
    assert_contains(e.msg, want);
}

static void assert_invalid(const MilProgram *p, const char *want) {
    Err e;
    assert_int_equal(mil_program_validate(p, 0, &e), -1);
    assert_contains(e.msg, want);
}

/* A 4-bit constexpr_lut_to_dense of shape dims (rank 2), one LUT. */
static MilValue *lut_weight(MilProgram *p, MilFunction *f, const char *name, int64_t rows, int64_t cols) {
    uint8_t idx[64] = {0};
    uint16_t lut[16] = {0};
    MilValue *i = mil_literal(p, MIL_UINT4, 2, (int64_t[]){rows, cols}, idx, (size_t)(rows * cols + 1) / 2);
    MilValue *l = mil_literal(p, MIL_FP16, 4, (int64_t[]){1, 1, 16, 1}, lut, sizeof lut);
    return mil_add_lut_to_dense(f, name, i, l, -1);
}

/* ==== matmul ==== */

static void test_matmul_mixed_dtypes(void **state) {
    (void)state;
    /* const fp32 x, run-time fp16 y: allowed, the result is fp16 (y's) */
    MilProgram *p = mil_program_new();
    MilFunction *f = mil_function_new(p, "main", NULL);
    MilValue *x = zconst(f, "x", MIL_FP32, 2, (int64_t[]){3, 4});
    MilValue *y = mil_input(f, "y", MIL_FP16, 2, (int64_t[]){4, 5});
    assert_string_equal(ty(mil_add_matmul(f, "m", x, y, 0, 0)), "tensor<fp16, [3, 5]>");
    /* run-time fp16 x, const fp32 y: x's dtype */
    MilValue *x2 = mil_input(f, "x2", MIL_FP16, 2, (int64_t[]){3, 4});
    MilValue *y2 = zconst(f, "y2", MIL_FP32, 2, (int64_t[]){4, 5});
    assert_string_equal(ty(mil_add_matmul(f, "m2", x2, y2, 0, 0)), "tensor<fp16, [3, 5]>");
    assert_ok(p);
    mil_program_free(p);

    /* both computed at run time: the dtypes must match */
    p = mil_program_new();
    f = mil_function_new(p, "main", NULL);
    x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){3, 4});
    y = mil_input(f, "y", MIL_FP32, 2, (int64_t[]){4, 5});
    assert_null(mil_add_matmul(f, "m", x, y, 0, 0));
    assert_fails(p, "exactly one of them is a const");
    mil_program_free(p);

    /* both consts: the same */
    p = mil_program_new();
    f = mil_function_new(p, "main", NULL);
    x = zconst(f, "x", MIL_FP16, 2, (int64_t[]){3, 4});
    y = zconst(f, "y", MIL_FP32, 2, (int64_t[]){4, 5});
    assert_null(mil_add_matmul(f, "m", x, y, 0, 0));
    assert_fails(p, "exactly one of them is a const");
    mil_program_free(p);

    /* a constexpr output is not a const op: with an fp32 run-time x the dtypes must match */
    p = mil_program_new();
    f = mil_function_new(p, "main", NULL);
    x = mil_input(f, "x", MIL_FP32, 2, (int64_t[]){3, 4});
    y = lut_weight(p, f, "w", 4, 5);
    assert_null(mil_add_matmul(f, "m", x, y, 0, 0));
    assert_fails(p, "exactly one of them is a const");
    mil_program_free(p);
}

/* ==== reduce_argmax ==== */

static void test_argmax_output_dtype_case(void **state) {
    (void)state;
    MilProgram *p = mil_program_new();
    MilFunction *f = mil_function_new(p, "main", NULL);
    MilValue *x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){2, 7});
    MilValue *up = mil_add_op1(f, "reduce_argmax", "a", 2,
                               (MilIn[]){MIL_IN("x", x), MIL_IN("output_dtype", mil_const_str(f, "odt", "UINT16"))});
    assert_string_equal(ty(up), "tensor<uint16, [2]>");
    MilValue *i32 = mil_add_op1(f, "reduce_argmax", "b", 2,
                                (MilIn[]){MIL_IN("x", x), MIL_IN("output_dtype", mil_const_str(f, "odt2", "Int32"))});
    assert_string_equal(ty(i32), "tensor<int32, [2]>");
    assert_ok(p);
    assert_null(mil_add_op1(f, "reduce_argmax", "c", 2,
                            (MilIn[]){MIL_IN("x", x), MIL_IN("output_dtype", mil_const_str(f, "odt3", "int16"))}));
    assert_fails(p, "must be int32 or uint16");
    mil_program_free(p);
}

/* ==== gather ==== */

static MilValue *gather_checked(MilFunction *f, const char *name, MilValue *x, MilValue *ix, int along) {
    MilValue *v = mil_const_bool(f, NULL, 1);
    MilValue *axis = mil_const_i32(f, NULL, along ? 1 : 0);
    if (along)
        return mil_add_op1(f, "gather_along_axis", name, 4,
                           (MilIn[]){MIL_IN("x", x), MIL_IN("indices", ix), MIL_IN("axis", axis),
                                     MIL_IN("validate_indices", v)});
    return mil_add_op1(f, "gather", name, 4,
                       (MilIn[]){MIL_IN("x", x), MIL_IN("indices", ix), MIL_IN("axis", axis),
                                 MIL_IN("validate_indices", v)});
}

static void test_gather_validate_indices(void **state) {
    (void)state;
    for (int along = 0; along < 2; along++) {
        MilProgram *p = mil_program_new();
        MilFunction *f = mil_function_new(p, "main", NULL);
        MilValue *x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){4, 4});
        int32_t good[4] = {0, 1, 2, 3};
        MilValue *ig = along ? mil_const(f, "ig", MIL_INT32, 2, (int64_t[]){4, 1}, good, sizeof good)
                             : mil_const_i32v(f, "ig", 4, good);
        assert_non_null(gather_checked(f, "g_ok", x, ig, along));
        /* run-time indices are not checked */
        MilValue *ir = along ? mil_input(f, "ir", MIL_INT32, 2, (int64_t[]){4, 1}) : mil_input(f, "ir", MIL_INT32, 1, (int64_t[]){4});
        assert_non_null(gather_checked(f, "g_rt", x, ir, along));
        assert_ok(p);
        int32_t bad[4] = {0, 1, 4, 3};
        MilValue *ib = along ? mil_const(f, "ib", MIL_INT32, 2, (int64_t[]){4, 1}, bad, sizeof bad)
                             : mil_const_i32v(f, "ib", 4, bad);
        assert_null(gather_checked(f, "g_bad", x, ib, along));
        assert_fails(p, "index 4 is outside [0, 4)");
        mil_program_free(p);

        p = mil_program_new();
        f = mil_function_new(p, "main", NULL);
        x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){4, 4});
        int32_t neg[4] = {0, -1, 2, 3};
        MilValue *in = along ? mil_const(f, "in", MIL_INT32, 2, (int64_t[]){4, 1}, neg, sizeof neg)
                             : mil_const_i32v(f, "in", 4, neg);
        assert_null(gather_checked(f, "g_neg", x, in, along));
        assert_fails(p, "index -1 is outside");
        mil_program_free(p);
    }
}

/* Parameters added after the op: gather.batch_dims (iOS 16), gather.validate_indices,
 * gather_along_axis.validate_indices and reduce_argmax.output_dtype (iOS 17) are neither written
 * as defaults nor accepted in older functions. */
static void test_later_parameters(void **state) {
    (void)state;
    static const struct { const char *opset; int batch_dims, validate, output_dtype; } v[] = {
        {"CoreML5", 0, 0, 0}, {"CoreML6", 1, 0, 0}, {"CoreML7", 1, 1, 1}, {"CoreML8", 1, 1, 1}};
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
        MilProgram *p = mil_program_new();
        MilFunction *f = mil_function_new(p, "main", v[k].opset);
        MilValue *x = mil_input(f, "x", MIL_FP32, 2, (int64_t[]){4, 3});
        MilValue *ix = mil_input(f, "ix", MIL_INT32, 1, (int64_t[]){2});
        MilValue *g = mil_add_gather(f, "g", x, ix, 0, 0);
        MilValue *ia = mil_input(f, "ia", MIL_INT32, 2, (int64_t[]){4, 1});
        MilValue *ga = mil_add_gather_along_axis(f, "ga", x, ia, 1);
        MilValue *am = mil_add_reduce_argmax(f, "am", x, -1, 0);
        assert_ok(p);
        assert_string_equal(ty(g), "tensor<fp32, [2, 3]>");
        assert_string_equal(ty(am), "tensor<int32, [4]>");
        assert_int_equal(mil_op_input(g->producer, "batch_dims") != NULL, v[k].batch_dims);
        assert_int_equal(mil_op_input(g->producer, "validate_indices") != NULL, v[k].validate);
        assert_int_equal(mil_op_input(ga->producer, "validate_indices") != NULL, v[k].validate);
        assert_int_equal(mil_op_input(am->producer, "output_dtype") != NULL, v[k].output_dtype);
        MilValue *outs[3] = {g, ga, am};
        mil_set_outputs(f, 3, outs);
        Err e;
        assert_int_equal(mil_program_validate(p, 0, &e), 0);
        if (!v[k].validate) {
            assert_null(mil_add_op1(f, "gather_along_axis", "ga2", 3,
                                    (MilIn[]){MIL_IN("x", x), MIL_IN("indices", ia),
                                              MIL_IN("validate_indices", mil_const_bool(f, "vi", 0))}));
            assert_fails(p, "input 'validate_indices' exists from opset CoreML7");
        }
        mil_program_free(p);
    }
    /* a non-zero batch_dims cannot be expressed before iOS 16 */
    MilProgram *p = mil_program_new();
    MilFunction *f = mil_function_new(p, "main", "CoreML5");
    MilValue *x = mil_input(f, "x", MIL_FP32, 2, (int64_t[]){4, 3});
    MilValue *ix = mil_input(f, "ix", MIL_INT32, 2, (int64_t[]){4, 2});
    assert_null(mil_add_gather(f, "g", x, ix, 1, 1));
    assert_fails(p, "input 'batch_dims' exists from opset CoreML6");
    mil_program_free(p);
}

/* ==== conv ==== */

static void test_conv_dilation_and_same_lower(void **state) {
    (void)state;
    MilProgram *p = mil_program_new();
    MilFunction *f = mil_function_new(p, "main", NULL);
    MilValue *x = mil_input(f, "x", MIL_FP16, 4, (int64_t[]){1, 2, 9, 9});
    MilValue *wc = zconst(f, "wc", MIL_FP16, 4, (int64_t[]){3, 2, 3, 3});
    MilConvOpts dil = {.dilations = (int32_t[]){2, 2}};
    assert_string_equal(ty(mil_add_conv(f, "c_const", x, wc, NULL, &dil)), "tensor<fp16, [1, 3, 5, 5]>");
    /* a weight computed from consts only still counts as compile-time (coremltools: descendant of const) */
    MilValue *wt = mil_add_transpose(f, "wt", wc, 4, (int32_t[]){0, 1, 3, 2});
    assert_non_null(mil_add_conv(f, "c_derived", x, wt, NULL, &dil));
    assert_ok(p);
    MilValue *wr = mil_input(f, "wr", MIL_FP16, 4, (int64_t[]){3, 2, 3, 3});
    assert_non_null(mil_add_conv(f, "c_runtime", x, wr, NULL, NULL));   /* dilation 1: fine */
    assert_null(mil_add_conv(f, "c_runtime_dil", x, wr, NULL, &dil));
    assert_fails(p, "dilations > 1 need a compile-time weight");
    mil_program_free(p);

    MilConvOpts sl = {.pad_type = "same_lower"};
    p = mil_program_new();
    f = mil_function_new(p, "main", "CoreML5");
    x = mil_input(f, "x", MIL_FP32, 4, (int64_t[]){1, 2, 9, 9});
    wc = zconst(f, "wc", MIL_FP32, 4, (int64_t[]){3, 2, 3, 3});
    assert_null(mil_add_conv(f, "c", x, wc, NULL, &sl));
    assert_fails(p, "same_lower' needs opset CoreML6");
    mil_program_free(p);

    p = mil_program_new();
    f = mil_function_new(p, "main", "CoreML6");
    x = mil_input(f, "x", MIL_FP32, 4, (int64_t[]){1, 2, 9, 9});
    wc = zconst(f, "wc", MIL_FP32, 4, (int64_t[]){3, 2, 3, 3});
    assert_string_equal(ty(mil_add_conv(f, "c", x, wc, NULL, &sl)), "tensor<fp32, [1, 3, 9, 9]>");
    assert_ok(p);
    mil_program_free(p);
}

/* ==== program checks ==== */

static void test_program_opsets_ranks(void **state) {
    (void)state;
    /* functions with different opsets */
    MilProgram *p = mil_program_new();
    MilFunction *f = mil_function_new(p, "a", NULL);
    MilValue *x = mil_input(f, "x", MIL_FP16, 1, (int64_t[]){3});
    MilValue *o = mil_add_relu(f, "r", x);
    mil_set_outputs(f, 1, &o);
    MilFunction *g = mil_function_new(p, "b", "CoreML7");
    MilValue *y = mil_input(g, "x", MIL_FP16, 1, (int64_t[]){3});
    MilValue *o2 = mil_add_relu(g, "r", y);
    mil_set_outputs(g, 1, &o2);
    assert_ok(p);
    assert_invalid(p, "all functions must share one opset");
    mil_program_free(p);

    /* a rank-0 input */
    p = mil_program_new();
    f = mil_function_new(p, "main", NULL);
    x = mil_input(f, "x", MIL_FP16, 0, NULL);
    o = mil_add_relu(f, "r", x);
    mil_set_outputs(f, 1, &o);
    assert_ok(p);
    assert_invalid(p, "input 'x' has rank 0");
    mil_program_free(p);

    /* a rank-6 op output */
    p = mil_program_new();
    f = mil_function_new(p, "main", NULL);
    x = mil_input(f, "x", MIL_FP16, 1, (int64_t[]){64});
    o = mil_add_reshape(f, "r", x, 6, (int32_t[]){2, 2, 2, 2, 2, 2});
    MilValue *back = mil_add_reshape(f, "b", o, 1, (int32_t[]){64});
    mil_set_outputs(f, 1, &back);
    assert_ok(p);
    assert_invalid(p, "output 'r' has rank 6");
    mil_program_free(p);

    /* a rank-6 const that only a constexpr reads (a grouped-channel LUT) is fine; read by another
     * op it is not */
    for (int misuse = 0; misuse < 2; misuse++) {
        p = mil_program_new();
        f = mil_function_new(p, "main", NULL);
        uint8_t idx[32] = {0};
        uint16_t lut[32] = {0};
        MilValue *i = mil_literal(p, MIL_UINT4, 4, (int64_t[]){16, 4, 1, 1}, idx, sizeof idx);
        MilValue *l = mil_const(f, "lut", MIL_FP16, 6, (int64_t[]){2, 1, 1, 1, 16, 1}, lut, sizeof lut);
        MilValue *w = mil_add_lut_to_dense(f, "w", i, l, -1);
        x = mil_input(f, "x", MIL_FP16, 4, (int64_t[]){1, 4, 1, 1});
        o = mil_add_conv(f, "c", x, w, NULL, NULL);
        MilValue *outs[2] = {o, NULL};
        int n = 1;
        if (misuse) outs[n++] = mil_add_reshape(f, "lut_flat", l, 1, (int32_t[]){32});
        mil_set_outputs(f, n, outs);
        assert_ok(p);
        Err e;
        if (misuse)
            assert_invalid(p, "op 'lut' (const): output 'lut' has rank 6");
        else
            assert_int_equal(mil_program_validate(p, 0, &e), 0);
        mil_program_free(p);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_mixed_dtypes),
        cmocka_unit_test(test_argmax_output_dtype_case),
        cmocka_unit_test(test_gather_validate_indices),
        cmocka_unit_test(test_later_parameters),
        cmocka_unit_test(test_conv_dilation_and_same_lower),
        cmocka_unit_test(test_program_opsets_ranks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
