/* LUT palettization of fp16 weights: exact reproduction of few-valued groups, the LUT
 * layout (ascending, zero-filled), nearest-entry indices, quality figures, SSE against
 * the exact DP, non-finite weights, the per-tensor paths, and identical bytes on 1 and
 * N threads. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/half.h"
#include "quant/lut.h"
#include "quant/lut_pack.h"
#include "quant_synth.h"

static double h2d(uint16_t h) { return f16_to_f32(h); }

/* Checks the LUT layout and that every index names the nearest used entry (ties: the
 * lower index); returns the SSE recomputed from the dequantized weights. */
static double check_group(const uint16_t *w, size_t n, int bits, const uint16_t *lut, const uint8_t *idx) {
    int K = 1 << bits, used = K;
    /* used entries ascend; the unused tail is all zero (found as the first descent) */
    for (int c = 1; c < K; c++)
        if (h2d(lut[c]) < h2d(lut[c - 1])) { used = c; break; }
    for (int c = used; c < K; c++) assert_int_equal(lut[c], 0);
    double sse = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(idx[i] < K);
        double x = h2d(w[i]), got = fabs(h2d(lut[idx[i]]) - x);
        for (int c = 0; c < used; c++) {
            double d = fabs(h2d(lut[c]) - x);
            assert_true(d >= got);
            if (d == got && h2d(lut[c]) != h2d(lut[idx[i]])) assert_true(c > idx[i]);
        }
        sse += (h2d(lut[idx[i]]) - x) * (h2d(lut[idx[i]]) - x);
    }
    return sse;
}

static void test_few_values_reproduced_exactly(void **state) {
    (void)state;
    /* 5 distinct values, one of them -0: a 3-bit LUT holds them all */
    const uint16_t vals[] = {0xbc00 /*-1*/, 0x8000 /*-0*/, 0x0000, 0x3800 /*0.5*/, 0x4200 /*3*/, 0x3c00};
    uint16_t w[600];
    for (size_t i = 0; i < 600; i++) w[i] = vals[(i * 7) % 6];
    uint16_t lut[8];
    uint8_t idx[600];
    Err e = {0};
    LutWork *wk = lut_work_new();
    LutStats st = {0};
    assert_int_equal(lut_quantize_group(wk, w, 600, 3, lut, idx, &st, &e), 0);
    const uint16_t want[8] = {0xbc00, 0x0000, 0x3800, 0x3c00, 0x4200, 0, 0, 0};
    assert_memory_equal(lut, want, sizeof want);
    for (size_t i = 0; i < 600; i++) assert_true(h2d(lut[idx[i]]) == h2d(w[i])); /* -0 == +0 */
    assert_true(st.sse == 0);
    assert_int_equal(st.count, 600);
    assert_true(isinf(lut_stats_snr_db(&st)));
    assert_true(lut_stats_rel_mse(&st) == 0);
    /* 1-bit, two values: exact too */
    for (size_t i = 0; i < 600; i++) w[i] = (i % 3) ? 0xc000 : 0x4400;
    assert_int_equal(lut_quantize_group(wk, w, 600, 1, lut, idx, NULL, &e), 0);
    assert_int_equal(lut[0], 0xc000);
    assert_int_equal(lut[1], 0x4400);
    for (size_t i = 0; i < 600; i++) assert_int_equal(idx[i], (i % 3) ? 0 : 1);
    lut_work_free(wk);
}

static void test_constant_group(void **state) {
    (void)state;
    uint16_t w[100], lut[16];
    uint8_t idx[100];
    for (int i = 0; i < 100; i++) w[i] = 0x2e66; /* ~0.1 */
    Err e = {0};
    LutStats st = {0};
    LutWork *wk = lut_work_new();
    assert_int_equal(lut_quantize_group(wk, w, 100, 4, lut, idx, &st, &e), 0);
    assert_int_equal(lut[0], 0x2e66);
    for (int c = 1; c < 16; c++) assert_int_equal(lut[c], 0);
    for (int i = 0; i < 100; i++) assert_int_equal(idx[i], 0);
    assert_true(st.sse == 0 && st.energy > 0);
    /* all zeros: energy 0, reproduced exactly */
    memset(w, 0, sizeof w);
    st = (LutStats){0};
    assert_int_equal(lut_quantize_group(wk, w, 100, 4, lut, idx, &st, &e), 0);
    assert_true(st.sse == 0 && st.energy == 0);
    assert_true(lut_stats_rel_mse(&st) == 0);
    lut_work_free(wk);
}

/* Counts of 255, 256, 257, 512 and 70000 (past 8- and 16-bit counters): the figures weigh
 * every value by its whole count, whether the values come in runs or shuffled. 1-bit on the
 * first three runs: {0, 1} against {3}, the first entry their count-weighted mean 1/256. */
static void test_counts_past_a_byte(void **state) {
    (void)state;
    const struct {
        uint16_t h;
        size_t count;
    } runs[] = {{0x0000 /*0*/, 255}, {0x3c00 /*1*/, 1}, {0x4200 /*3*/, 70000}, {0x3800 /*0.5*/, 256},
                {0x3400 /*0.25*/, 257}, {0x4000 /*2*/, 512}};
    size_t n = 0;
    for (size_t r = 0; r < 6; r++) n += runs[r].count;
    uint16_t *w = malloc(n * sizeof *w), lut[256];
    uint8_t *idx = malloc(n);
    Err e = {0};
    LutWork *wk = lut_work_new();
    for (int round = 0; round < 2; round++) {
        size_t at = 0;
        for (size_t r = 0; r < 6; r++)
            for (size_t i = 0; i < runs[r].count; i++) w[at++] = runs[r].h;
        if (round == 1) /* shuffle deterministically: the counts do not arrive in runs */
            for (size_t i = n - 1; i > 0; i--) {
                size_t j = (i * 2654435761u) % (i + 1);
                uint16_t t = w[i];
                w[i] = w[j], w[j] = t;
            }
        LutStats st = {0};
        assert_int_equal(lut_quantize_group(wk, w, n, 8, lut, idx, &st, &e), 0);
        assert_true(st.sse == 0);
        assert_true(st.energy == 1.0 * 1 + 9.0 * 70000 + 0.25 * 256 + 0.0625 * 257 + 4.0 * 512);
        assert_int_equal(st.count, n);
        if (round == 0) { /* the first three runs: 0 x255 and 1 x1 against 3 x70000 */
            assert_int_equal(lut_quantize_group(wk, w, 255 + 1 + 70000, 1, lut, idx, NULL, &e), 0);
            assert_int_equal(lut[0], 0x1c00); /* 1/256 */
            assert_int_equal(lut[1], 0x4200);
        }
    }
    free(w), free(idx);
    lut_work_free(wk);
}

static void test_non_finite_is_an_error(void **state) {
    (void)state;
    enum { R = 16, C = 64 };
    uint16_t *w = malloc(R * C * sizeof *w), lut[2 * 16];
    uint8_t *idx = malloc(R * C);
    syn_fill_rows(w, C, 0, R, SYN_NORMAL, 0.02, 5);
    const uint16_t bad[] = {0x7c00, 0xfc00, 0x7e00, 0xfe01};
    const char *names[] = {"+inf", "-inf", "NaN", "NaN"};
    for (int b = 0; b < 4; b++) {
        uint16_t keep = w[11 * C + 5];
        w[11 * C + 5] = bad[b];
        for (int per_tensor = 0; per_tensor < 2; per_tensor++) {
            Err e = {0};
            int rc = lut_quantize_rows(w, R, C, per_tensor ? R : 8, 4, 2, "blk.w", 100, lut, idx, NULL, &e);
            assert_int_equal(rc, -1);
            assert_non_null(strstr(e.msg, "blk.w"));
            assert_non_null(strstr(e.msg, "row 111")); /* first_row 100 + 11 */
            assert_non_null(strstr(e.msg, "column 5"));
            assert_non_null(strstr(e.msg, names[b]));
        }
        LutWork *wk = lut_work_new();
        Err e = {0};
        assert_int_equal(lut_quantize_group(wk, w, R * C, 4, lut, idx, NULL, &e), -1);
        assert_non_null(strstr(e.msg, names[b]));
        /* the scratch is clean afterwards: the same group without the bad value works
         * and matches a fresh scratch */
        w[11 * C + 5] = keep;
        uint16_t lut2[16];
        uint8_t *idx2 = malloc(R * C);
        LutWork *fresh = lut_work_new();
        assert_int_equal(lut_quantize_group(wk, w, R * C, 4, lut, idx, NULL, &e), 0);
        assert_int_equal(lut_quantize_group(fresh, w, R * C, 4, lut2, idx2, NULL, &e), 0);
        assert_memory_equal(lut, lut2, sizeof lut2);
        assert_memory_equal(idx, idx2, R * C);
        free(idx2);
        lut_work_free(fresh);
        lut_work_free(wk);
        LutHist *h = lut_hist_new();
        w[3] = bad[b];
        assert_int_equal(lut_hist_add(h, w, R * C, "blk.w", &e), -1);
        assert_non_null(strstr(e.msg, "weight 3"));
        w[3] = 0;
        lut_hist_free(h);
    }
    free(w);
    free(idx);
}

static void test_argument_errors(void **state) {
    (void)state;
    uint16_t w[64] = {0}, lut[64];
    uint8_t idx[64];
    Err e = {0};
    assert_int_equal(lut_quantize_rows(w, 8, 8, 3, 4, 1, "t", 0, lut, idx, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "does not divide"));
    assert_int_equal(lut_quantize_rows(w, 8, 8, 4, 5, 1, "t", 0, lut, idx, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "bits 5"));
    assert_int_equal(lut_quantize_rows(w, 0, 8, 4, 4, 1, "t", 0, lut, idx, NULL, &e), -1);
    LutWork *wk = lut_work_new();
    assert_int_equal(lut_quantize_group(wk, w, 0, 4, lut, idx, NULL, &e), -1);
    assert_int_equal(lut_quantize_group(wk, w, 8, 7, lut, idx, NULL, &e), -1);
    lut_work_free(wk);
    LutHist *h = lut_hist_new();
    int used;
    assert_int_equal(lut_hist_fit(h, 4, lut, &used, NULL, &e), -1); /* empty */
    lut_hist_free(h);
}

/* Quality against the exact DP: the clustering SSE within 0.1% of the optimum on
 * >= 99% of groups; the final LUT SSE (fp16-rounded entries, nearest-entry indices,
 * which adds rounding noise neither clustering controls) within 1% on all; and no
 * LUT below the optimum. */
static void test_sse_against_exact(void **state) {
    (void)state;
    const SynKind kinds[] = {SYN_LLAMA, SYN_NORMAL, SYN_LAPLACE, SYN_UNIFORM, SYN_BIMODAL};
    const int bit_list[] = {6, 4, 3, 8};
    enum { N = 8 * 384 };
    uint16_t *w = malloc(N * sizeof *w), lut[256], lut_x[256];
    uint8_t *idx = malloc(N), *idx_x = malloc(N);
    LutWork *wk = lut_work_new();
    int groups = 0, over = 0;
    double worst = 0;
    for (size_t b = 0; b < sizeof bit_list / sizeof bit_list[0]; b++) {
        for (size_t kk = 0; kk < sizeof kinds / sizeof kinds[0]; kk++) {
            for (int s = 0; s < (bit_list[b] == 8 ? 1 : 3); s++) {
                syn_fill_rows(w, N / 8, 0, 8, kinds[kk], 0.02, 1000 + 10 * kk + (size_t)s);
                Err e = {0};
                LutStats fast = {0}, exact = {0};
                assert_int_equal(lut_quantize_group(wk, w, N, bit_list[b], lut, idx, &fast, &e), 0);
                assert_int_equal(lut_quantize_group_exact(wk, w, N, bit_list[b], lut_x, idx_x, &exact, &e), 0);
                double re = check_group(w, N, bit_list[b], lut, idx);
                assert_true(fabs(re - fast.sse) <= 1e-9 * re + 1e-30);
                check_group(w, N, bit_list[b], lut_x, idx_x);
                assert_true(fabs(fast.energy - exact.energy) <= 1e-12 * exact.energy);
                assert_true(fast.sse >= exact.cluster_sse * (1 - 1e-9)); /* no LUT beats the optimum */
                assert_true(fast.cluster_sse >= exact.cluster_sse * (1 - 1e-9));
                double ratio = exact.cluster_sse > 0 ? fast.cluster_sse / exact.cluster_sse : 1;
                groups++;
                if (ratio > 1.001) over++, print_message("  over: bits %d kind %zu seed %d ratio %.6f\n", bit_list[b], kk, s, ratio);
                if (ratio > worst) worst = ratio;
                assert_true(fast.sse <= exact.sse * 1.01);
            }
        }
    }
    print_message("clustering SSE vs exact DP: %d groups, %d over 0.1%%, worst %.6f\n", groups, over, worst);
    assert_true(over * 100 <= groups);
    lut_work_free(wk);
    free(w), free(idx), free(idx_x);
}

/* Figures from the dequantized tensor, computed here independently. */
static void test_stats(void **state) {
    (void)state;
    enum { R = 32, C = 96 };
    uint16_t *w = malloc(R * C * sizeof *w), lut[(R / 8) * 16];
    uint8_t *idx = malloc(R * C);
    syn_fill_rows(w, C, 0, R, SYN_LLAMA, 0.02, 9);
    Err e = {0};
    LutStats st = {0};
    assert_int_equal(lut_quantize_rows(w, R, C, 8, 4, 1, "t", 0, lut, idx, &st, &e), 0);
    double sse = 0, energy = 0;
    for (size_t i = 0; i < R * C; i++) {
        double x = h2d(w[i]), q = h2d(lut[(i / C / 8) * 16 + idx[i]]);
        sse += (q - x) * (q - x), energy += x * x;
    }
    assert_true(fabs(st.sse - sse) <= 1e-9 * sse);
    assert_true(fabs(st.energy - energy) <= 1e-9 * energy);
    assert_int_equal(st.count, R * C);
    assert_true(fabs(lut_stats_rel_mse(&st) - sse / energy) <= 1e-9);
    assert_true(fabs(lut_stats_snr_db(&st) - 10 * log10(energy / sse)) <= 1e-9);
    /* streaming: stats add up over blocks */
    LutStats twice = st;
    lut_stats_add(&twice, &st);
    assert_true(twice.count == 2 * st.count && twice.sse == 2 * st.sse);
    free(w), free(idx);
}

/* lut_quantize_rows_packed = lut_quantize_rows then lut_pack_indices, whether the groups
 * pack themselves (8 | group size) or not (3 x 7 weights), per tensor too, on 1 and 2
 * threads and every width; with idx or without. */
static void test_quantize_packed(void **state) {
    (void)state;
    enum { R = 24, C = 56 };
    uint16_t *w = malloc(R * C * sizeof *w);
    syn_fill_rows(w, C, 0, R, SYN_LLAMA, 0.03, 33);
    const struct {
        size_t rows, cols, group;
    } shapes[] = {{24, 56, 8}, {24, 56, 1}, {21, 7, 3}, {24, 56, 24}};
    const int widths[] = {1, 2, 3, 4, 6, 8};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
        for (size_t b = 0; b < sizeof widths / sizeof widths[0]; b++)
            for (int thr = 1; thr <= 2; thr++) {
                size_t rows = shapes[sh].rows, cols = shapes[sh].cols, g = shapes[sh].group, n = rows * cols;
                int bits = widths[b];
                size_t luts = (rows / g) << bits, pn = lut_packed_size(n, bits);
                uint16_t *la = malloc(luts * 2), *lb = malloc(luts * 2);
                uint8_t *ia = malloc(n), *ib = malloc(n), *pa = calloc(pn, 1), *pb = malloc(pn);
                memset(pb, 0xA5, pn); /* every byte must be written */
                LutStats sa = {0}, sb = {0};
                Err e = {0};
                assert_int_equal(lut_quantize_rows(w, rows, cols, g, bits, thr, "t", 0, la, ia, &sa, &e), 0);
                lut_pack_indices(ia, n, bits, pa);
                assert_int_equal(lut_quantize_rows_packed(w, rows, cols, g, bits, thr, "t", 0, lb, ib, pb, &sb, &e),
                                 0);
                assert_memory_equal(la, lb, luts * 2);
                assert_memory_equal(ia, ib, n);
                assert_memory_equal(pa, pb, pn);
                assert_memory_equal(&sa, &sb, sizeof sa);
                /* without idx: packed only, the same bytes */
                LutStats sc = {0};
                memset(pb, 0x5A, pn), memset(lb, 0x5A, luts * 2);
                assert_int_equal(
                    lut_quantize_rows_packed(w, rows, cols, g, bits, thr, "t", 0, lb, NULL, pb, &sc, &e), 0);
                assert_memory_equal(la, lb, luts * 2);
                assert_memory_equal(pa, pb, pn);
                assert_memory_equal(&sa, &sc, sizeof sa);
                free(la), free(lb), free(ia), free(ib), free(pa), free(pb);
            }
    free(w);
}

/* lut_quantize_rows = lut_quantize_group on each block of rows, and the same bytes on
 * 1 and N threads; the per-tensor paths agree with each other. */
static void test_grouping_threads_and_per_tensor(void **state) {
    (void)state;
    enum { R = 64, C = 200, G = 8, BITS = 6 };
    uint16_t *w = malloc(R * C * sizeof *w);
    syn_fill_rows(w, C, 0, R, SYN_LLAMA, 0.03, 21);
    size_t groups = R / G, K = 1 << BITS;
    uint16_t *lut1 = malloc(groups * K * 2), *lut4 = malloc(groups * K * 2), lutg[64];
    uint8_t *idx1 = malloc(R * C), *idx4 = malloc(R * C), *idxg = malloc(G * C);
    Err e = {0};
    LutStats s1 = {0}, s4 = {0};
    assert_int_equal(lut_quantize_rows(w, R, C, G, BITS, 1, "t", 0, lut1, idx1, &s1, &e), 0);
    assert_int_equal(lut_quantize_rows(w, R, C, G, BITS, 4, "t", 0, lut4, idx4, &s4, &e), 0);
    assert_memory_equal(lut1, lut4, groups * K * 2);
    assert_memory_equal(idx1, idx4, R * C);
    assert_memory_equal(&s1, &s4, sizeof s1);
    LutWork *wk = lut_work_new();
    for (size_t g = 0; g < groups; g++) {
        assert_int_equal(lut_quantize_group(wk, w + g * G * C, G * C, BITS, lutg, idxg, NULL, &e), 0);
        assert_memory_equal(lutg, lut1 + g * K, K * 2);
        assert_memory_equal(idxg, idx1 + g * G * C, G * C);
    }
    lut_work_free(wk);
    /* streaming in blocks of whole groups gives the same as one call */
    LutStats sb = {0};
    for (size_t r0 = 0; r0 < R; r0 += 3 * G) {
        size_t rows = R - r0 < 3 * G ? R - r0 : 3 * G;
        assert_int_equal(lut_quantize_rows(w + r0 * C, rows, C, G, BITS, 2, "t", r0, lut4 + r0 / G * K,
                                           idx4 + r0 * C, &sb, &e), 0);
    }
    assert_memory_equal(lut1, lut4, groups * K * 2);
    assert_memory_equal(idx1, idx4, R * C);
    assert_true(fabs(sb.sse - s1.sse) <= 1e-12 * s1.sse);

    /* per tensor: one call on 1 and 3 threads, and the two-pass histogram API */
    uint16_t lt1[64], lt3[64], lth[64];
    LutStats p1 = {0}, p3 = {0}, ph = {0};
    assert_int_equal(lut_quantize_rows(w, R, C, R, BITS, 1, "t", 0, lt1, idx1, &p1, &e), 0);
    assert_int_equal(lut_quantize_rows(w, R, C, R, BITS, 3, "t", 0, lt3, idx4, &p3, &e), 0);
    assert_memory_equal(lt1, lt3, sizeof lt1);
    assert_memory_equal(idx1, idx4, R * C);
    assert_memory_equal(&p1, &p3, sizeof p1);
    LutHist *h = lut_hist_new();
    for (size_t r0 = 0; r0 < R; r0 += 5)
        assert_int_equal(lut_hist_add(h, w + r0 * C, (R - r0 < 5 ? R - r0 : 5) * C, "t", &e), 0);
    int used;
    assert_int_equal(lut_hist_fit(h, BITS, lth, &used, &ph, &e), 0);
    assert_memory_equal(lt1, lth, sizeof lth);
    assert_int_equal(used, 64);
    LutMap *m = lut_map_new(lth, used);
    for (size_t r0 = 0; r0 < R; r0 += 7) {
        size_t rows = R - r0 < 7 ? R - r0 : 7;
        assert_int_equal(lut_map_apply(m, w + r0 * C, rows * C, idx4 + r0 * C, "t", &e), 0);
    }
    assert_memory_equal(idx1, idx4, R * C);
    assert_true(fabs(ph.sse - p1.sse) <= 1e-12 * p1.sse && ph.count == p1.count);
    double re = check_group(w, R * C, BITS, lt1, idx1);
    assert_true(fabs(re - p1.sse) <= 1e-9 * re);
    lut_map_free(m);
    lut_hist_free(h);
    free(w), free(lut1), free(lut4), free(idx1), free(idx4), free(idxg);
}

/* End to end with packing: dequantizing the packed stream gives back the LUT values. */
static void test_packed_round_trip(void **state) {
    (void)state;
    enum { R = 16, C = 37 }; /* odd row length: 3- and 6-bit rows straddle bytes */
    uint16_t *w = malloc(R * C * sizeof *w), lut[(R / 8) * 256];
    uint8_t *idx = malloc(R * C), *back = malloc(R * C), *packed = malloc(R * C);
    syn_fill_rows(w, C, 0, R, SYN_NORMAL, 0.02, 3);
    const int bit_list[] = {1, 2, 3, 4, 6, 8};
    for (size_t b = 0; b < 6; b++) {
        Err e = {0};
        int bits = bit_list[b];
        assert_int_equal(lut_quantize_rows(w, R, C, 8, bits, 2, "t", 0, lut, idx, NULL, &e), 0);
        lut_pack_indices(idx, R * C, bits, packed);
        lut_unpack_indices(packed, R * C, bits, back);
        assert_memory_equal(idx, back, R * C);
    }
    free(w), free(idx), free(back), free(packed);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_few_values_reproduced_exactly),
        cmocka_unit_test(test_constant_group),
        cmocka_unit_test(test_counts_past_a_byte),
        cmocka_unit_test(test_non_finite_is_an_error),
        cmocka_unit_test(test_argument_errors),
        cmocka_unit_test(test_sse_against_exact),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_grouping_threads_and_per_tensor),
        cmocka_unit_test(test_quantize_packed),
        cmocka_unit_test(test_packed_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
