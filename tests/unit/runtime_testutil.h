/* runtime_testutil.h - helpers for the interpreter's unit tests (static, header only).
 * Include after <cmocka.h>.
 *
 *     TProg t = tprog_begin();                         // a program with one function "main"
 *     MilValue *x = mil_input(t.f, "x", MIL_FP16, 2, (int64_t[]){2, 3});
 *     MilValue *y = mil_add_relu(t.f, "y", x);
 *     tprog_finish(&t, 1, &y);                         // validates and plans it
 *     tprog_run(&t, 1, (RtInput[]){{"x", rt_f16(xs, 2, (int64_t[]){2, 3})}}, NULL);
 *     const RtTensor *out = tprog_out(&t, "y");
 *     tprog_end(&t);
 */
#ifndef ANEMLL_RUNTIME_TESTUTIL_H
#define ANEMLL_RUNTIME_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "mil/mil.h"
#include "runtime/interp.h"

typedef struct TProg {
    MilProgram *p;
    MilFunction *f;
    RtModel *m;
    RtFunction *fn;
} TProg;

static inline TProg tprog_begin(void) {
    TProg t = {0};
    t.p = mil_program_new();
    t.f = mil_function_new(t.p, "main", NULL);
    return t;
}

static inline void tprog_finish(TProg *t, int n_out, MilValue *const *outs) {
    Err e = {{0}};
    mil_set_outputs(t->f, n_out, outs);
    if (rt_open_program(&t->m, t->p, "test", NULL, &e) < 0) {
        print_error("rt_open_program: %s\n", e.msg);
        fail();
    }
    t->fn = rt_function(t->m, NULL);
    assert_non_null(t->fn);
}

static inline void tprog_run(TProg *t, int n, const RtInput *in, RtStates *st) {
    Err e = {{0}};
    if (rt_run(t->fn, n, in, st, &e) < 0) {
        print_error("rt_run: %s\n", e.msg);
        fail();
    }
}

/* Runs and expects an error containing needle. */
static inline void tprog_run_fails(TProg *t, int n, const RtInput *in, RtStates *st, const char *needle) {
    Err e = {{0}};
    assert_int_equal(rt_run(t->fn, n, in, st, &e), -1);
    if (!strstr(e.msg, needle)) {
        print_error("expected an error containing \"%s\", got \"%s\"\n", needle, e.msg);
        fail();
    }
}

static inline const RtTensor *tprog_out(TProg *t, const char *name) {
    const RtTensor *o = rt_output(t->fn, name);
    assert_non_null(o);
    return o;
}

static inline void tprog_end(TProg *t) {
    rt_close(t->m);
    mil_program_free(t->p);
    memset(t, 0, sizeof *t);
}

/* Deterministic values in [-scale, scale), rounded to fp16. */
static inline void trand(float *x, int64_t n, float scale, uint32_t seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = round_f16(((float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f) * scale);
    }
}

static inline void trand_f32(float *x, int64_t n, float scale, uint32_t seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = ((float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f) * scale;
    }
}

/* fp16 bits of fp32 data (for consts). Caller frees. */
static inline uint16_t *tf16(const float *x, int64_t n) {
    uint16_t *h = malloc(sizeof *h * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_f16(x[i]);
    return h;
}

/* A const fp16 tensor holding x. */
static inline MilValue *tconst_f16(MilFunction *f, const char *name, int rank, const int64_t *dims, const float *x) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    uint16_t *h = tf16(x, n);
    MilValue *v = mil_const(f, name, MIL_FP16, rank, dims, h, sizeof *h * (size_t)n);
    free(h);
    return v;
}

/* Distance in fp16 units in the last place (both values must be fp16-representable);
 * equal infinities and NaN/NaN count as 0. */
static inline long tulps(float a, float b) {
    if (isnan(a) && isnan(b)) return 0;
    if (isnan(a) || isnan(b)) return 1L << 20;
    uint16_t ha = f32_to_f16(a), hb = f32_to_f16(b);
    long ia = (ha & 0x8000) ? -(long)(ha & 0x7fff) : (long)ha;
    long ib = (hb & 0x8000) ? -(long)(hb & 0x7fff) : (long)hb;
    return labs(ia - ib);
}

/* Every got[i] within ulps fp16 ULPs of round_f16(want[i]). */
static inline void tassert_f16(const float *got, const double *want, int64_t n, long ulps, const char *what) {
    for (int64_t i = 0; i < n; i++) {
        float w = round_f16((float)want[i]);
        if (got[i] != round_f16(got[i])) {
            print_error("%s[%lld] = %.9g is not an fp16 value\n", what, (long long)i, (double)got[i]);
            fail();
        }
        if (tulps(got[i], w) > ulps) {
            print_error("%s[%lld]: got %.9g, want %.9g (%ld ulps)\n", what, (long long)i, (double)got[i], (double)w,
                        tulps(got[i], w));
            fail();
        }
    }
}

/* As tassert_f16, but also accepting |got - want| <= abs_tol (sums whose terms cancel: float32
 * accumulation error is relative to the terms, not to the small result). */
static inline void tassert_f16_abs(const float *got, const double *want, int64_t n, long ulps, double abs_tol,
                                   const char *what) {
    for (int64_t i = 0; i < n; i++) {
        if (fabs((double)got[i] - want[i]) <= abs_tol && got[i] == round_f16(got[i])) continue;
        tassert_f16(got + i, want + i, 1, ulps, what);
    }
}

static inline void tassert_f32(const float *got, const double *want, int64_t n, double rel, const char *what) {
    for (int64_t i = 0; i < n; i++) {
        double tol = rel * (fabs(want[i]) + 1e-6);
        if (!(fabs(got[i] - want[i]) <= tol) && !(isinf(want[i]) && got[i] == want[i])) {
            print_error("%s[%lld]: got %.9g, want %.9g\n", what, (long long)i, (double)got[i], want[i]);
            fail();
        }
    }
}

static inline void tassert_shape(const RtTensor *t, int rank, const int64_t *dims) {
    assert_int_equal(t->rank, rank);
    for (int i = 0; i < rank; i++) assert_int_equal(t->dims[i], dims[i]);
}

/* Offset of the element at output coordinates c (rank ro) in an input of shape (ri, di)
 * broadcast numpy-style to the output. */
static inline int64_t tbcast_offset(const int64_t *c, int ro, int ri, const int64_t *di) {
    int64_t off = 0;
    for (int a = 0; a < ri; a++) {
        int oa = a + (ro - ri);
        int64_t coord = di[a] == 1 ? 0 : c[oa];
        off = off * di[a] + coord;
    }
    return off;
}

/* Coordinates of flat index i in a shape. */
static inline void tcoords(int64_t i, int rank, const int64_t *dims, int64_t *c) {
    for (int a = rank - 1; a >= 0; a--) {
        c[a] = i % dims[a];
        i /= dims[a];
    }
}

#endif
