/* 1-D k-means: known optimal clusterings, the exact DP against a brute-force DP, and
 * the fast solver against the exact DP (SSE within 0.1% on >= 99% of inputs and within
 * 1% on all). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "quant/kmeans1d.h"
#include "quant_synth.h"

typedef int (*Solver)(const double *, const double *, size_t, int, Km1dResult *, Km1dWork *);

typedef struct {
    double cent[256];
    size_t start[257];
    Km1dResult r;
} Out;

static Km1dResult *out_init(Out *o) {
    o->r = (Km1dResult){.centroid = o->cent, .start = o->start};
    return &o->r;
}

/* ---- tiny cases whose optimum is known ------------------------------------ */

static void check_known(Solver solve, const double *x, const double *w, size_t n, int k, const size_t *want_start,
                        double want_sse) {
    Out o;
    Km1dResult *r = out_init(&o);
    assert_int_equal(solve(x, w, n, k, r, NULL), k);
    for (int c = 0; c <= k; c++) assert_int_equal(r->start[c], want_start[c]);
    assert_true(fabs(r->sse - want_sse) <= 1e-9 * (1 + want_sse)); /* prefix sums cancel */
    for (int c = 1; c < k; c++) assert_true(r->centroid[c] > r->centroid[c - 1]);
}

static void test_known_clusterings(void **state) {
    (void)state;
    Solver solvers[] = {kmeans1d_optimal, kmeans1d_fast};
    for (int s = 0; s < 2; s++) {
        /* two obvious groups: SSE 2 + 2 */
        const double x1[] = {1, 2, 3, 10, 11, 12}, w1[] = {1, 1, 1, 1, 1, 1};
        check_known(solvers[s], x1, w1, 6, 2, (const size_t[]){0, 3, 6}, 4.0);
        /* weights pull the split: {0,1} | {10 x2}: SSE 0.5 */
        const double x2[] = {0, 1, 10}, w2[] = {1, 1, 2};
        check_known(solvers[s], x2, w2, 3, 2, (const size_t[]){0, 2, 3}, 0.5);
        /* {0,1,2} {100,101} {200}: 2 + 0.5 + 0 */
        const double x3[] = {0, 1, 2, 100, 101, 200}, w3[] = {1, 1, 1, 1, 1, 1};
        check_known(solvers[s], x3, w3, 6, 3, (const size_t[]){0, 3, 5, 6}, 2.5);
        /* one cluster: SSE = sum w (x - mean)^2 with mean 2: 4*1 + 0 + 1*4 = 8... */
        const double x4[] = {0, 2, 4}, w4[] = {4, 1, 1};
        /* mean = (0*4 + 2 + 4)/6 = 1; SSE = 4*1 + 1*1 + 1*9 = 14 */
        check_known(solvers[s], x4, w4, 3, 1, (const size_t[]){0, 3}, 14.0);
        /* a heavy single value keeps its own cluster: {-5} {0 x100} {0.5, 1} */
        const double x5[] = {-5, 0, 0.5, 1}, w5[] = {1, 100, 1, 1};
        check_known(solvers[s], x5, w5, 4, 3, (const size_t[]){0, 1, 2, 4}, 0.125);
    }
}

static void test_fewer_values_than_clusters(void **state) {
    (void)state;
    const double x[] = {-1, 0.25, 3}, w[] = {2, 5, 1};
    Out o;
    Km1dResult *r = out_init(&o);
    assert_int_equal(kmeans1d_fast(x, w, 3, 16, r, NULL), 3);
    assert_true(r->sse == 0);
    for (int c = 0; c < 3; c++) assert_true(r->centroid[c] == x[c]), assert_int_equal(r->start[c], c);
    assert_int_equal(r->start[3], 3);
    assert_int_equal(kmeans1d_optimal(x, w, 3, 3, r, NULL), 3);
    assert_true(r->sse == 0);
    assert_int_equal(kmeans1d_optimal(x, w, 1, 4, r, NULL), 1);
}

static void test_invalid_input(void **state) {
    (void)state;
    Out o;
    Km1dResult *r = out_init(&o);
    const double w[] = {1, 1, 1};
    assert_int_equal(kmeans1d_fast((const double[]){1, 1, 2}, w, 3, 2, r, NULL), -1);   /* not strictly ascending */
    assert_int_equal(kmeans1d_fast((const double[]){2, 1, 3}, w, 3, 2, r, NULL), -1);
    assert_int_equal(kmeans1d_optimal((const double[]){1, NAN, 3}, w, 3, 2, r, NULL), -1);
    assert_int_equal(kmeans1d_optimal((const double[]){1, 2, INFINITY}, w, 3, 2, r, NULL), -1);
    assert_int_equal(kmeans1d_fast((const double[]){1, 2, 3}, (const double[]){1, 0, 1}, 3, 2, r, NULL), -1);
    assert_int_equal(kmeans1d_fast((const double[]){1, 2, 3}, w, 3, 0, r, NULL), -1);
    assert_int_equal(kmeans1d_fast((const double[]){1, 2, 3}, w, 0, 2, r, NULL), -1);
}

/* ---- the exact DP against a brute-force DP -------------------------------- */

/* Textbook O(k n^2) DP with direct (two-pass) segment costs: shares nothing with the
 * library. */
static double brute_force_sse(const double *x, const double *w, size_t n, int k) {
    double *D = malloc((size_t)(k + 1) * (n + 1) * sizeof *D);
#define AT(c, j) D[(size_t)(c) * (n + 1) + (j)]
    for (size_t j = 0; j <= n; j++) AT(0, j) = j == 0 ? 0 : INFINITY;
    for (int c = 1; c <= k; c++) {
        for (size_t j = 0; j <= n; j++) {
            double best = INFINITY;
            for (size_t i = 0; i < j; i++) {
                if (AT(c - 1, i) == INFINITY) continue;
                double sw = 0, sx = 0, cost = 0;
                for (size_t t = i; t < j; t++) sw += w[t], sx += w[t] * x[t];
                for (size_t t = i; t < j; t++) cost += w[t] * (x[t] - sx / sw) * (x[t] - sx / sw);
                if (AT(c - 1, i) + cost < best) best = AT(c - 1, i) + cost;
            }
            AT(c, j) = best;
        }
    }
    double r = AT(k, n);
#undef AT
    free(D);
    return r;
}

static void random_values(SynRng *rng, size_t n, double *x, double *w, int heavy) {
    double v = 0;
    for (size_t i = 0; i < n; i++) {
        double gap = syn_uniform(rng);
        if (heavy && syn_next(rng) % 7 == 0) gap *= 30; /* clumps and gaps */
        v += 0.01 + gap;
        x[i] = v;
        w[i] = 1 + (double)(syn_next(rng) % (heavy ? 50 : 3));
    }
}

static void test_exact_matches_brute_force(void **state) {
    (void)state;
    SynRng rng = {2024};
    double x[64], w[64];
    Km1dWork *wk = kmeans1d_work_new();
    for (int trial = 0; trial < 60; trial++) {
        size_t n = 2 + syn_next(&rng) % 50;
        int k = 1 + (int)(syn_next(&rng) % 9);
        random_values(&rng, n, x, w, trial % 2);
        Out o;
        Km1dResult *r = out_init(&o);
        int got = kmeans1d_optimal(x, w, n, k, r, trial % 3 ? wk : NULL);
        assert_int_equal(got, (size_t)k < n ? k : (int)n);
        double want = (size_t)k < n ? brute_force_sse(x, w, n, k) : 0;
        assert_true(fabs(r->sse - want) <= 1e-9 * want + 1e-12);
        /* the reported SSE is the SSE of the reported partition */
        double re = kmeans1d_partition_sse(x, w, n, r->start, got);
        assert_true(fabs(r->sse - re) <= 1e-9 * re + 1e-12);
        /* fast agrees exactly on inputs this small (it runs the exact DP up to 2k values,
         * and is otherwise never below the optimum) */
        Out f;
        Km1dResult *rf = out_init(&f);
        assert_int_equal(kmeans1d_fast(x, w, n, k, rf, wk), got);
        assert_true(rf->sse >= want * (1 - 1e-9) - 1e-12);
    }
    kmeans1d_work_free(wk);
}

/* ---- the fast solver against the exact DP --------------------------------- */

/* Sorted unique fp16 values (and counts) of n synthetic weights. */
static size_t synth_uniques(SynKind kind, size_t n, uint64_t seed, double *x, double *w) {
    uint16_t *v = malloc(n * sizeof *v);
    syn_fill_rows(v, n / 8, 0, 8, kind, 0.02, seed);
    /* counting sort on the order-preserving key */
    uint32_t *count = calloc(65536, sizeof *count);
    for (size_t i = 0; i < n; i++) {
        uint16_t h = v[i] == 0x8000 ? 0 : v[i];
        count[(h & 0x8000) ? (uint16_t)~h : (uint16_t)(h | 0x8000)]++;
    }
    size_t u = 0;
    for (uint32_t key = 0; key < 65536; key++) {
        if (!count[key]) continue;
        uint16_t h = (key & 0x8000) ? (uint16_t)(key & 0x7fff) : (uint16_t)~key;
        x[u] = f16_to_f32(h), w[u] = count[key], u++;
    }
    free(count);
    free(v);
    return u;
}

typedef struct {
    int groups, over_01, over_1;
    double worst;
} Tally;

static void compare_on(SynKind kind, int bits, size_t n, uint64_t seed, Km1dWork *wk, Tally *t) {
    double *x = malloc(n * sizeof *x), *w = malloc(n * sizeof *w);
    size_t u = synth_uniques(kind, n, seed, x, w);
    Out a, b;
    Km1dResult *fast = out_init(&a), *exact = out_init(&b);
    int k = 1 << bits;
    assert_int_equal(kmeans1d_fast(x, w, u, k, fast, wk), kmeans1d_optimal(x, w, u, k, exact, wk));
    /* never better than the optimum, and the reported SSE is the partition's */
    assert_true(fast->sse >= exact->sse * (1 - 1e-9));
    double re = kmeans1d_partition_sse(x, w, u, fast->start, fast->k);
    assert_true(fabs(re - fast->sse) <= 1e-9 * re);
    double ratio = exact->sse > 0 ? fast->sse / exact->sse : 1;
    t->groups++;
    if (ratio > 1.001) t->over_01++;
    if (ratio > 1.01) t->over_1++;
    if (ratio > t->worst) t->worst = ratio;
    free(x);
    free(w);
}

static void test_fast_near_optimal(void **state) {
    (void)state;
    Km1dWork *wk = kmeans1d_work_new();
    Tally t = {0};
    const SynKind kinds[] = {SYN_LLAMA, SYN_NORMAL, SYN_LAPLACE, SYN_UNIFORM, SYN_BIMODAL};
    /* 6 and 4 bits on groups of 8 x 512 weights (~2-3k unique values), and a few at
     * other widths and sizes; every input is far above the 2k values solved exactly */
    for (int s = 0; s < 6; s++)
        for (size_t kk = 0; kk < sizeof kinds / sizeof kinds[0]; kk++) {
            compare_on(kinds[kk], 6, 4096, 100 + (uint64_t)s, wk, &t);
            compare_on(kinds[kk], 4, 4096, 200 + (uint64_t)s, wk, &t);
        }
    for (int s = 0; s < 3; s++) {
        compare_on(SYN_LLAMA, 3, 8192, 300 + (uint64_t)s, wk, &t);
        compare_on(SYN_LLAMA, 2, 8192, 400 + (uint64_t)s, wk, &t);
        compare_on(SYN_NORMAL, 1, 4096, 500 + (uint64_t)s, wk, &t);
        compare_on(SYN_LLAMA, 6, 16384, 600 + (uint64_t)s, wk, &t);
    }
    print_message("fast vs exact: %d groups, %d over 0.1%%, %d over 1%%, worst ratio %.6f\n", t.groups, t.over_01,
                  t.over_1, t.worst);
    assert_true(t.over_01 * 100 <= t.groups); /* >= 99% within 0.1% */
    assert_int_equal(t.over_1, 0);            /* all within 1% */
    kmeans1d_work_free(wk);
}

/* Same input, fresh or reused scratch: the same clustering. */
static void test_deterministic(void **state) {
    (void)state;
    size_t n = 8192;
    double *x = malloc(n * sizeof *x), *w = malloc(n * sizeof *w);
    size_t u = synth_uniques(SYN_LLAMA, n, 77, x, w);
    Out a, b;
    Km1dResult *ra = out_init(&a), *rb = out_init(&b);
    Km1dWork *wk = kmeans1d_work_new();
    kmeans1d_fast(x, w, 100, 64, ra, wk); /* leave different state in the scratch */
    kmeans1d_fast(x, w, u, 64, ra, wk);
    kmeans1d_fast(x, w, u, 64, rb, NULL);
    assert_memory_equal(a.start, b.start, 65 * sizeof(size_t));
    assert_memory_equal(a.cent, b.cent, 64 * sizeof(double));
    kmeans1d_work_free(wk);
    free(x);
    free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_clusterings),
        cmocka_unit_test(test_fewer_values_than_clusters),
        cmocka_unit_test(test_invalid_input),
        cmocka_unit_test(test_exact_matches_brute_force),
        cmocka_unit_test(test_fast_near_optimal),
        cmocka_unit_test(test_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
