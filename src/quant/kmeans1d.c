/* kmeans1d.c - exact and fast weighted 1-D k-means (contract in kmeans1d.h).
 *
 * Both solvers are the same dynamic program over "boundaries": boundary c (1 <= c < k)
 * is the index of the first value of cluster c, and
 *
 *     D[c][j] = min over i < j of D[c-1][i] + cost(i, j)
 *
 * is the least SSE of c clusters covering values [0, j), cost(i, j) being the SSE of
 * values [i, j) around their mean (from prefix sums). cost satisfies the quadrangle
 * inequality, so for a fixed layer the best i never decreases as j grows, which lets
 * each layer be filled by divide and conquer.
 *
 * The exact solver fills every (c, j). The fast one restricts boundary c to a window
 * of candidate positions, coarse to fine (the plan is under "tuning"):
 *  - level 0: the values cut into a few bins per cluster of equal "companded measure"
 *    (bins_by_measure) and the DP over the bin edges, boundary c within a window around
 *    where the measure says it should be (or over every edge);
 *  - each finer level subdivides the bins (nested, so the previous answer is always
 *    a candidate) and lets boundary c move within +-window bins of the previous
 *    level around where it settled; the last of these has a window of 1.5-2 clusters
 *    so the number of clusters given to each region can still change;
 *  - then, unless a level already was the values themselves, weighted Lloyd iterations
 *    on the values and a banded DP over the values in narrow windows.
 * Whenever a boundary settles on the edge of its window (and the window could have
 * gone further), the windows are re-centred and the level solved again, so each
 * level's answer is optimal against every move within its windows.
 */
#include "quant/kmeans1d.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* ==== tuning ================================================================ */

/* The fast solver's plan: level 0 has `bins_per_cluster` bins per cluster and boundary c
 * starts in a window of +-level0_half bins around its guessed bin (level0_guess; 0: every
 * bin, the plain DP over the bins); each of the `levels` refinements has bins `refine`
 * times finer (measure threshold / refine^3) and lets boundary c move `window` bins of the
 * previous level either way. Then, unless a level already was the values themselves,
 * weighted Lloyd iterations on the values and a last banded DP over the values with
 * windows of +-POLISH_HALF values (Lloyd alone stalls where moving one boundary by one
 * value does not pay; the banded DP moves runs of boundaries together).
 * The last coarse level must let boundaries move 1.5-2 clusters either way at 12-16 bins
 * per cluster: only there is the number of clusters each region of the values gets
 * settled (narrower windows left 1-7% of groups 0.1-0.5% above the optimum; Lloyd and the
 * polish cannot move a cluster from one region to another).
 * Chosen on the synthetic weights of tests/unit/quant_synth.h (t5 with outliers, normal,
 * Laplace, uniform, bimodal; fp16 and bf16-rounded; groups of 8 x 512 to 8 x 8192)
 * against the exact DP: at 2-6 bits 1 of 720 groups 0.15% above the optimum, every other
 * within 0.04%, at 1.3-2x the speed of the previous 4-level schedule; bench/bench_quant.c
 * reports it on every run. 8-bit LUTs keep that schedule's first two levels.
 * 5-6 bit LUTs refine 3x (12 bins per cluster, still +-2 clusters): a quarter fewer
 * candidates in the level that dominates the time, 1.25x faster at 6 bits; on the
 * benchmark's Llama-like tensors 800 sampled groups all within 0.07% (as before), mean
 * 1.00005 (was 1.00002). Halving the window or the resolution instead (refine 2 from 8
 * bins per cluster, +-1.5 clusters) put 1% of those groups 0.1-0.4% above the optimum.
 * Up to 4-bit LUTs the refined level's windows are +-1.5 clusters (+-6 level-0 bins, was
 * +-2): the same clusterings on those 800 groups and on the unit tests' inputs, 1.2x
 * faster at 4 bits. */
typedef struct {
    int bins_per_cluster, level0_half, levels;
    struct {
        int refine, window;
    } level[2];
    int widen_to_values; /* the first refinement is already the values: double its window */
} FastPlan;
static const FastPlan plan_upto_16 = {4, 8, 1, {{4, 6}}, 0};       /* up to 4-bit LUTs */
static const FastPlan plan_upto_64 = {4, 8, 1, {{3, 8}}, 0};       /* 5- and 6-bit LUTs */
static const FastPlan plan_wide = {2, 0, 2, {{4, 6}, {2, 12}}, 1}; /* 8-bit LUTs: k > 64 */
#define FAST_MAX_LEVELS 3
#define FAST_MAX_ROUNDS 16 /* re-centring rounds per level; only bounds odd inputs */
#define POLISH_HALF 4
#define PAIR_SPAN 8 /* searches of at most this many candidates go in pairs (band_layer) */
#define LLOYD_MAX_ITER 100

/* ==== scratch =============================================================== */

/* One resolution of the fast solver: bins of adjacent values. Edge e (0..m) is the
 * index of the first value of bin e (pos[m] = n); the prefix sums are taken there.
 * At the finest level the bins are the values themselves (edge e = value e; pos is
 * not used and the prefix sums are the values' own). */
typedef struct {
    size_t *pos;
    const double *pw, *ps1, *ps2; /* (m+1) */
    double *own_w, *own_s1, *own_s2;
    size_t *up;    /* (m+1) index of each edge in the next finer level */
    uint8_t *need; /* (m) bins the next level subdivides (the others it copies) */
    size_t m, cap;
} Level;

struct Km1dWork {
    double *pw, *ps1, *ps2; /* (n+1) prefix sums over the values */
    size_t cap_n;
    double *dp_a, *dp_b; /* exact DP: (n+1) two layers */
    size_t cap_m;
    uint32_t *arg; /* exact DP: (k, n+1) back-pointers */
    size_t cap_arg;
    Level level[FAST_MAX_LEVELS];
    size_t *lo, *hi, *sel, *off; /* fast DP: (k+1) per-boundary window, choice, offset */
    size_t *part, *next_part;    /* Lloyd: (k+1) partitions */
    double *mean, *next_mean;    /* Lloyd: (k) cluster means */
    double *unit;                /* level 0 guess: (bins) */
    size_t cap_unit;
    size_t cap_k;
    double *D; /* fast DP: per (boundary, candidate) best cost and back-pointer */
    uint32_t *back;
    size_t cap_cells;
};

Km1dWork *kmeans1d_work_new(void) { return xcalloc(1, sizeof(Km1dWork)); }

static void level_free(Level *lv) {
    free(lv->pos), free(lv->own_w), free(lv->own_s1), free(lv->own_s2), free(lv->up), free(lv->need);
}

void kmeans1d_work_free(Km1dWork *wk) {
    if (!wk) return;
    free(wk->pw), free(wk->ps1), free(wk->ps2), free(wk->dp_a), free(wk->dp_b), free(wk->arg);
    for (int t = 0; t < FAST_MAX_LEVELS; t++) level_free(&wk->level[t]);
    free(wk->lo), free(wk->hi), free(wk->sel), free(wk->off), free(wk->D), free(wk->back);
    free(wk->part), free(wk->next_part), free(wk->mean), free(wk->next_mean), free(wk->unit);
    free(wk);
}

static void work_reserve_values(Km1dWork *wk, size_t n) {
    if (wk->cap_n >= n + 1) return;
    size_t cap = n + 1;
    wk->pw = xrealloc(wk->pw, cap * sizeof(double));
    wk->ps1 = xrealloc(wk->ps1, cap * sizeof(double));
    wk->ps2 = xrealloc(wk->ps2, cap * sizeof(double));
    wk->cap_n = cap;
}

static void work_reserve_exact(Km1dWork *wk, size_t m, int k) {
    if (wk->cap_m < m + 1) {
        wk->dp_a = xrealloc(wk->dp_a, (m + 1) * sizeof(double));
        wk->dp_b = xrealloc(wk->dp_b, (m + 1) * sizeof(double));
        wk->cap_m = m + 1;
    }
    size_t need = (size_t)k * (m + 1);
    if (wk->cap_arg < need) {
        wk->arg = xrealloc(wk->arg, need * sizeof(uint32_t));
        wk->cap_arg = need;
    }
}

static void work_reserve_fast(Km1dWork *wk, int k) {
    if (wk->cap_k >= (size_t)k + 1) return;
    size_t cap = (size_t)k + 1;
    wk->lo = xrealloc(wk->lo, cap * sizeof(size_t));
    wk->hi = xrealloc(wk->hi, cap * sizeof(size_t));
    wk->sel = xrealloc(wk->sel, cap * sizeof(size_t));
    wk->off = xrealloc(wk->off, (cap + 1) * sizeof(size_t));
    wk->part = xrealloc(wk->part, cap * sizeof(size_t));
    wk->next_part = xrealloc(wk->next_part, cap * sizeof(size_t));
    wk->mean = xrealloc(wk->mean, cap * sizeof(double));
    wk->next_mean = xrealloc(wk->next_mean, cap * sizeof(double));
    wk->cap_k = cap;
}

static void work_reserve_units(Km1dWork *wk, size_t m) {
    if (wk->cap_unit >= m) return;
    wk->cap_unit = m + m / 2;
    wk->unit = xrealloc(wk->unit, wk->cap_unit * sizeof(double));
}

static void work_reserve_cells(Km1dWork *wk, size_t cells) {
    if (wk->cap_cells >= cells) return;
    size_t cap = cells + cells / 2;
    wk->D = xrealloc(wk->D, cap * sizeof(double));
    wk->back = xrealloc(wk->back, cap * sizeof(uint32_t));
    wk->cap_cells = cap;
}

static void level_reserve(Level *lv, size_t m) {
    if (lv->cap >= m + 1) return;
    size_t cap = m + 1 + m / 2;
    lv->pos = xrealloc(lv->pos, cap * sizeof(size_t));
    lv->own_w = xrealloc(lv->own_w, cap * sizeof(double));
    lv->own_s1 = xrealloc(lv->own_s1, cap * sizeof(double));
    lv->own_s2 = xrealloc(lv->own_s2, cap * sizeof(double));
    lv->up = xrealloc(lv->up, cap * sizeof(size_t));
    lv->need = xrealloc(lv->need, cap);
    lv->cap = cap;
}

/* ==== prefix sums and segment costs ========================================= */

/* Prefix sums over m items: segment [i, j) has weight w[j]-w[i] etc. Values are
 * shifted by the weighted mean so that the w*x^2 sums do not swamp the small
 * within-cluster spread (cancellation in q - s^2/w). */
typedef struct {
    const double *w, *s1, *s2;
    size_t m;
    double shift;
} Prefix;

static Prefix prefix_build(const double *x, const double *w, size_t n, double shift, Km1dWork *wk) {
    work_reserve_values(wk, n);
    double a = 0, b = 0, c = 0;
    wk->pw[0] = wk->ps1[0] = wk->ps2[0] = 0;
    for (size_t i = 0; i < n; i++) {
        double d = x[i] - shift;
        a += w[i];
        b += w[i] * d;
        c += w[i] * d * d;
        wk->pw[i + 1] = a, wk->ps1[i + 1] = b, wk->ps2[i + 1] = c;
    }
    return (Prefix){wk->pw, wk->ps1, wk->ps2, n, shift};
}

/* SSE of items [i, j) around their mean, i < j. */
static inline double seg_cost(const Prefix *p, size_t i, size_t j) {
    double w = p->w[j] - p->w[i], s = p->s1[j] - p->s1[i], q = p->s2[j] - p->s2[i];
    double c = q - s * s / w;
    return c > 0 ? c : 0;
}

/* ==== the exact DP (the reference) ========================================= */

typedef struct {
    const Prefix *p;
    const double *prev; /* D[c-1][i] */
    double *cur;        /* D[c][j] */
    uint32_t *arg;      /* best i for each j of this layer */
    size_t first_i;     /* c - 1: each earlier cluster needs one item */
} Layer;

/* min over i in [lo, hi] of D[c-1][i] + cost(i, j); leftmost on ties. */
static size_t best_split(const Layer *L, size_t j, size_t lo, size_t hi, double *best) {
    const Prefix *p = L->p;
    double bv = INFINITY;
    size_t bi = lo;
    for (size_t i = lo; i <= hi; i++) {
        double w = p->w[j] - p->w[i], s = p->s1[j] - p->s1[i], q = p->s2[j] - p->s2[i];
        double v = L->prev[i] + (q - s * s / w);
        if (v < bv) bv = v, bi = i;
    }
    *best = bv;
    return bi;
}

/* D[c][j] for j in [jlo, jhi], knowing the best i lies in [optlo, opthi]. */
static void layer_fill(const Layer *L, size_t jlo, size_t jhi, size_t optlo, size_t opthi) {
    if (jlo > jhi) return;
    size_t mid = jlo + (jhi - jlo) / 2;
    size_t lo = optlo > L->first_i ? optlo : L->first_i;
    size_t hi = opthi < mid - 1 ? opthi : mid - 1;
    size_t best = best_split(L, mid, lo, hi, &L->cur[mid]);
    L->arg[mid] = (uint32_t)best;
    if (mid > jlo) layer_fill(L, jlo, mid - 1, optlo, best);
    layer_fill(L, mid + 1, jhi, best, opthi);
}

/* Optimal k-segmentation (1 <= k <= p->m) of the items of p; writes start[0..k]. */
static void exact_segment(const Prefix *p, int k, size_t *start, Km1dWork *wk) {
    size_t m = p->m;
    work_reserve_exact(wk, m, k);
    double *prev = wk->dp_a, *cur = wk->dp_b;
    for (size_t j = 1; j <= m; j++) prev[j] = seg_cost(p, 0, j);
    for (int c = 2; c <= k; c++) {
        size_t jlo = (size_t)c, jhi = m - (size_t)(k - c);
        Layer L = {p, prev, cur, wk->arg + (size_t)(c - 1) * (m + 1), (size_t)c - 1};
        layer_fill(&L, jlo, jhi, (size_t)c - 1, jhi - 1);
        double *t = prev;
        prev = cur, cur = t;
    }
    start[k] = m;
    size_t j = m;
    for (int c = k; c >= 2; c--) {
        j = wk->arg[(size_t)(c - 1) * (m + 1) + j];
        start[c - 1] = j;
    }
    start[0] = 0;
}

/* ==== the fast solver: levels of bins ====================================== */

size_t kmeans1d_fast_bins(int k) { return 2 * (size_t)k; }

/* Bins of about equal "companded measure": the bin starting at value s ends before the
 * first value i with (x[i] - x[s])^2 * weight(s..i) > T. In 1-D k-means the optimal
 * cluster width goes as density^(-1/3), and a bin of width b and weight m has density
 * m/b, so b^2 * m = T keeps every bin the same fraction of the local cluster width:
 * narrow where values are dense, wide in sparse tails, and an isolated outlier alone.
 * The test grows with i, so each bin's end is found by galloping then bisecting.
 * Emits the edges after `from` and before `to` into lv. */
static void measure_edges(const double *x, const double *pw, size_t from, size_t to, double T, Level *lv) {
    size_t s = from;
    while (s + 1 < to) {
#define CLOSES(i) ((x[i] - x[s]) * (x[i] - x[s]) * (pw[(i) + 1] - pw[s]) > T)
        size_t good = s, step = 1, bad = to; /* values in (s, good] stay; bad closes (or is `to`) */
        while (good + step < to) {
            if (CLOSES(good + step)) {
                bad = good + step;
                break;
            }
            good += step, step *= 2;
        }
        while (bad - good > 1) {
            size_t mid = good + (bad - good) / 2;
            if (CLOSES(mid)) bad = mid;
            else good = mid;
        }
#undef CLOSES
        if (bad >= to) break;
        lv->pos[lv->m++] = bad;
        s = bad;
    }
}

static void level_take_prefix(Level *lv, const Prefix *pv) {
    for (size_t e = 0; e <= lv->m; e++) {
        size_t q = lv->pos[e];
        lv->own_w[e] = pv->w[q], lv->own_s1[e] = pv->s1[q], lv->own_s2[e] = pv->s2[q];
    }
    lv->pw = lv->own_w, lv->ps1 = lv->own_s1, lv->ps2 = lv->own_s2;
}

static size_t level_bins_by_measure(const double *x, const Prefix *pv, double T, Level *lv) {
    size_t n = pv->m;
    level_reserve(lv, n);
    lv->m = 0;
    lv->pos[lv->m++] = 0;
    measure_edges(x, pv->w, 0, n, T, lv);
    lv->pos[lv->m] = n;
    return lv->m;
}

/* Level 0: about `target` equal-measure bins, at least k. T starts from a normal
 * model of the data (the bin count goes as T^(-1/3) n^(1/3) sigma^(2/3) * 3.2) and is
 * rescaled once by the count it gave. Returns the T used. */
static double level0_build(const double *x, const Prefix *pv, size_t target, int k, Level *lv) {
    size_t n = pv->m;
    double W = pv->w[n], var = pv->s2[n] / W, c = 3.2 / (double)target;
    double T = W * var * c * c * c;
    size_t m = level_bins_by_measure(x, pv, T, lv);
    double r = (double)m / (double)target;
    if (r < 0.8 || r > 1.25) T *= r * r * r, m = level_bins_by_measure(x, pv, T, lv);
    while (m < (size_t)k) T /= 8, m = level_bins_by_measure(x, pv, T, lv);
    level_take_prefix(lv, pv);
    return T;
}

/* Subdivides the bins of `coarse` marked in coarse->need with threshold T into `fine`
 * (the others are copied whole: no window reaches them, so their resolution does not
 * matter), or makes `fine` the values themselves (T == 0); fills coarse->up. */
static void level_refine(const double *x, const Prefix *pv, Level *coarse, double T, Level *fine) {
    size_t n = pv->m;
    if (T <= 0) {
        fine->m = n;
        fine->pw = pv->w, fine->ps1 = pv->s1, fine->ps2 = pv->s2;
        for (size_t e = 0; e <= coarse->m; e++) coarse->up[e] = coarse->pos[e];
        return;
    }
    level_reserve(fine, n);
    fine->m = 0;
    for (size_t e = 0; e < coarse->m; e++) {
        coarse->up[e] = fine->m;
        fine->pos[fine->m++] = coarse->pos[e];
        if (coarse->need[e]) measure_edges(x, pv->w, coarse->pos[e], coarse->pos[e + 1], T, fine);
    }
    coarse->up[coarse->m] = fine->m;
    fine->pos[fine->m] = n;
    level_take_prefix(fine, pv);
}

/* ==== the fast solver: banded DP on one level ============================== */

/* Pairs of doubles / int64 (GCC/clang vector extensions: one SSE2 register on x86-64,
 * one NEON register on arm64). Unaligned loads go through memcpy. */
typedef double v2d __attribute__((vector_size(16)));
typedef long long v2i __attribute__((vector_size(16)));

static inline v2d load2(const double *p) {
    v2d v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Candidates i, i+1 against the running per-lane minima (vb, ib). */
#define ARGMIN_STEP(vb, ib, id, i)                                                              \
    do {                                                                                        \
        v2d w_ = Wj - load2(pw + (i)), s_ = Sj - load2(ps1 + (i)), q_ = Qj - load2(ps2 + (i)); \
        v2d v_ = load2(pD + (i)) + (q_ - s_ * s_ / w_);                                         \
        v2i b_ = v_ < (vb);                                                                     \
        (vb) = (v2d)(((v2i)v_ & b_) | ((v2i)(vb) & ~b_));                                       \
        (ib) = ((id) & b_) | ((ib) & ~b_);                                                      \
    } while (0)

/* Merges two lanes' (value, index) minima: smaller value, then smaller index. */
static inline void lanes_merge(double v, long long i, double *bv, size_t *bi) {
    int take = (v < *bv) | ((v == *bv) & ((size_t)i < *bi));
    *bi = take ? (size_t)i : *bi;
    *bv = take ? v : *bv;
}

/* argmin_split below for at most four candidates (most calls of the divide and conquer:
 * its lower levels search between neighbours' answers), without the vector set-up;
 * the same arithmetic, so the same answer. */
static inline size_t argmin_split_short(const double *pw, const double *ps1, const double *ps2, const double *pD,
                                        size_t lo, size_t hi, double wj, double sj, double qj, double *best) {
    size_t bi = lo;
    double bv = INFINITY;
    for (size_t i = lo; i <= hi; i++) {
        double w = wj - pw[i], s = sj - ps1[i], q = qj - ps2[i];
        double v = pD[i] + (q - s * s / w);
        int take = v < bv;
        bi = take ? i : bi;
        bv = take ? v : bv;
    }
    *best = bv;
    return bi;
}

/* argmin over i in [lo, hi] of pD[i] + cost(i, j), with the prefix sums of candidate i
 * in pw/ps1/ps2 and those of j in wj/sj/qj; leftmost on ties. The division dominates,
 * so candidates go in pairs (four at a time in two register pairs for long ranges);
 * each lane keeps its own leftmost minimum and the lanes are merged at the end (an odd
 * last candidate comes after every lane's, so it wins only if strictly smaller). */
static size_t argmin_split(const double *pw, const double *ps1, const double *ps2, const double *pD, size_t lo,
                           size_t hi, double wj, double sj, double qj, double *best) {
    if (hi - lo < 4) return argmin_split_short(pw, ps1, ps2, pD, lo, hi, wj, sj, qj, best);
    const v2d Wj = {wj, wj}, Sj = {sj, sj}, Qj = {qj, qj};
    const v2i two = {2, 2};
    size_t i = lo, bi = lo;
    double bv = INFINITY;
    v2d va = {INFINITY, INFINITY};
    v2i ia = {(long long)lo, (long long)lo}, ida = {(long long)i, (long long)i + 1};
    if (hi - lo + 1 >= 8) {
        v2d vb = va;
        v2i ib = ia, idb = {(long long)i + 2, (long long)i + 3};
        for (; i + 3 <= hi; i += 4) {
            ARGMIN_STEP(va, ia, ida, i);
            ARGMIN_STEP(vb, ib, idb, i + 2);
            ida += two + two, idb += two + two;
        }
        lanes_merge(vb[0], ib[0], &bv, &bi);
        lanes_merge(vb[1], ib[1], &bv, &bi);
    }
    for (; i + 1 <= hi; i += 2) {
        ARGMIN_STEP(va, ia, ida, i);
        ida += two;
    }
    lanes_merge(va[0], ia[0], &bv, &bi);
    lanes_merge(va[1], ia[1], &bv, &bi);
    if (i == hi) { /* an odd last one */
        double v;
        argmin_split_short(pw, ps1, ps2, pD, i, i, wj, sj, qj, &v);
        bi = v < bv ? i : bi;
        bv = v < bv ? v : bv;
    }
    *best = bv;
    return bi;
}

/* argmin_split_short for two independent searches at once, one in each lane: candidates
 * [lo[0], hi[0]] against the sums (wj[0], sj[0], qj[0]) and [lo[1], hi[1]] against lane 1's.
 * The shorter range repeats its last candidate, which never displaces a minimum (it is not
 * strictly smaller than itself); the lanes' arithmetic is argmin_split_short's, so the
 * answers are the same. Two short searches cost about what one did: the loop overhead and
 * the division's latency are shared. */
static inline void argmin_pair_short(const double *pw, const double *ps1, const double *ps2, const double *pD,
                                     const size_t *lo, const size_t *hi, v2d Wj, v2d Sj, v2d Qj, double *best,
                                     size_t *arg) {
    size_t n0 = hi[0] - lo[0], n1 = hi[1] - lo[1], len = (n0 > n1 ? n0 : n1) + 1;
    v2d bv = {INFINITY, INFINITY};
    v2i bi = {(long long)lo[0], (long long)lo[1]};
    for (size_t t = 0; t < len; t++) {
        size_t i0 = lo[0] + (t < n0 ? t : n0), i1 = lo[1] + (t < n1 ? t : n1);
        v2d w = Wj - (v2d){pw[i0], pw[i1]}, s_ = Sj - (v2d){ps1[i0], ps1[i1]}, q = Qj - (v2d){ps2[i0], ps2[i1]};
        v2d v = (v2d){pD[i0], pD[i1]} + (q - s_ * s_ / w);
        v2i b = v < bv;
        bv = (v2d)(((v2i)v & b) | ((v2i)bv & ~b));
        bi = ((v2i){(long long)i0, (long long)i1} & b) | (bi & ~b);
    }
    best[0] = bv[0], best[1] = bv[1];
    arg[0] = (size_t)bi[0], arg[1] = (size_t)bi[1];
}

/* Boundary c may sit on edges [lo[c], hi[c]] of level lv. off[c] is where its cells
 * start in wk->D / wk->back. */
typedef struct {
    const Level *lv;
    size_t *lo, *hi, *off;
    double *D;
    uint32_t *back;
} Band;

/* Layer c of the band DP. Its candidates and boundary c-1's are both runs of the same
 * edge array, so the predecessors strictly below candidate edge e are simply
 * [lo[c-1], e-1] and their prefix sums are contiguous. The best predecessor is
 * monotone in e, so this is divide and conquer done bottom-up: first the middle
 * candidate over every predecessor, then at each halving of the stride the candidates
 * between two solved ones, searching only between their answers. */
static void band_layer(const Band *b, int c) {
    const Level *lv = b->lv;
    size_t plo = b->lo[c - 1], np = b->hi[c - 1] - plo + 1, clo = b->lo[c], nc = b->hi[c] - clo + 1;
    const double *pw = lv->pw + plo, *ps1 = lv->ps1 + plo, *ps2 = lv->ps2 + plo, *pD = b->D + b->off[c - 1];
    double *D = b->D + b->off[c];
    uint32_t *arg = b->back + b->off[c];
    size_t top = 1;
    while (top * 2 <= nc) top *= 2;
    for (size_t step = top; step >= 1; step >>= 1) {
        size_t held = SIZE_MAX, held_lo = 0, held_hi = 0; /* a short search waiting for a partner */
        for (size_t j = step - 1; j < nc; j += 2 * step) {
            size_t e = clo + j;
            size_t lo = j >= step ? arg[j - step] : 0;
            size_t hi = j + step < nc ? arg[j + step] : np - 1;
            size_t below = e > plo ? e - plo : 0; /* predecessors [0, below) */
            if (below <= lo) {
                D[j] = INFINITY;
                arg[j] = (uint32_t)lo;
                continue;
            }
            if (hi > below - 1) hi = below - 1;
            if (hi - lo >= PAIR_SPAN) {
                arg[j] = (uint32_t)argmin_split(pw, ps1, ps2, pD, lo, hi, lv->pw[e], lv->ps1[e], lv->ps2[e], &D[j]);
            } else if (held == SIZE_MAX) {
                held = j, held_lo = lo, held_hi = hi;
            } else { /* the searches of one step are independent: two at once */
                size_t e0 = clo + held, los[2] = {held_lo, lo}, his[2] = {held_hi, hi}, got[2];
                double best[2];
                argmin_pair_short(pw, ps1, ps2, pD, los, his, (v2d){lv->pw[e0], lv->pw[e]},
                                  (v2d){lv->ps1[e0], lv->ps1[e]}, (v2d){lv->ps2[e0], lv->ps2[e]}, best, got);
                D[held] = best[0], arg[held] = (uint32_t)got[0];
                D[j] = best[1], arg[j] = (uint32_t)got[1];
                held = SIZE_MAX;
            }
        }
        if (held != SIZE_MAX) {
            size_t e = clo + held;
            arg[held] = (uint32_t)argmin_split(pw, ps1, ps2, pD, held_lo, held_hi, lv->pw[e], lv->ps1[e], lv->ps2[e],
                                               &D[held]);
        }
    }
}

static inline double level_cost(const Level *lv, size_t a, size_t b) {
    double w = lv->pw[b] - lv->pw[a], s = lv->ps1[b] - lv->ps1[a], q = lv->ps2[b] - lv->ps2[a];
    return q - s * s / w;
}

/* Best segmentation with boundary c on an edge in [lo[c], hi[c]] (every window must
 * hold a feasible path); writes the chosen edge of each boundary to sel[c]. Layers below
 * `from` are kept from the previous call on the same level (their windows, hence their
 * cells, have not changed since: layer c depends only on the windows of boundaries <= c). */
static void band_solve(Km1dWork *wk, const Level *lv, int k, int from) {
    size_t *lo = wk->lo, *hi = wk->hi, *off = wk->off;
    size_t cells = 0;
    for (int c = 1; c < k; c++) {
        if (c >= from) off[c] = cells;
        cells = off[c] + hi[c] - lo[c] + 1;
    }
    work_reserve_cells(wk, cells);
    Band b = {lv, lo, hi, off, wk->D, wk->back};
    if (from == 1)
        for (size_t e = lo[1]; e <= hi[1]; e++) b.D[off[1] + e - lo[1]] = level_cost(lv, 0, e);
    for (int c = from > 2 ? from : 2; c < k; c++) band_layer(&b, c);
    size_t last = off[k - 1], best = 0;
    double bv = INFINITY;
    for (size_t t = 0; t <= hi[k - 1] - lo[k - 1]; t++) {
        double v = b.D[last + t] + level_cost(lv, lo[k - 1] + t, lv->m);
        if (v < bv) bv = v, best = t;
    }
    for (int c = k - 1; c >= 1; c--) {
        wk->sel[c] = lo[c] + best;
        if (c > 1) best = b.back[off[c] + best];
    }
}

/* Window of +-half edges around edge s for boundary c, within the hard limits (every
 * cluster keeps at least one bin). */
static void window_around(Km1dWork *wk, int c, int k, size_t m, size_t s, size_t half) {
    size_t lim_lo = (size_t)c, lim_hi = m - (size_t)(k - c);
    wk->lo[c] = s > lim_lo + half ? s - half : lim_lo;
    wk->hi[c] = s + half < lim_hi ? s + half : lim_hi;
}

/* Solves a level, re-centring windows whose answer sits on an edge that is not a hard
 * limit, until none does. */
static void band_settle(Km1dWork *wk, const Level *lv, int k) {
    int from = 1;
    for (int round = 0; round < FAST_MAX_ROUNDS; round++) {
        band_solve(wk, lv, k, from);
        int first_moved = 0;
        for (int c = 1; c < k; c++) {
            size_t s = wk->sel[c], lim_lo = (size_t)c, lim_hi = lv->m - (size_t)(k - c);
            if ((s == wk->lo[c] && s > lim_lo) || (s == wk->hi[c] && s < lim_hi)) {
                window_around(wk, c, k, lv->m, s, (wk->hi[c] - wk->lo[c] + 1) / 2);
                if (!first_moved) first_moved = c;
            }
        }
        if (!first_moved) break;
        from = first_moved; /* the layers below it are solved already */
    }
}

/* The partition's SSE and cluster means (over the shifted values). */
static double partition_means(const Prefix *p, int k, const size_t *s, double *mean) {
    double sse = 0;
    for (int c = 0; c < k; c++) {
        mean[c] = (p->s1[s[c + 1]] - p->s1[s[c]]) / (p->w[s[c + 1]] - p->w[s[c]]);
        sse += seg_cost(p, s[c], s[c + 1]);
    }
    return sse;
}

/* Weighted Lloyd iterations on the values from the partition wk->part[0..k]: each boundary
 * moves to the first value above the midpoint of its neighbouring means (values move a
 * few places per round, so walking beats bisecting), then the means follow. Stops when no
 * boundary moves or the SSE stops falling (keeping the better partition). */
static void lloyd(const double *x, const Prefix *p, int k, Km1dWork *wk) {
    size_t n = p->m, *s = wk->part, *ns = wk->next_part;
    double sse = partition_means(p, k, s, wk->mean);
    for (int it = 0; it < LLOYD_MAX_ITER; it++) {
        const double *mean = wk->mean;
        ns[0] = 0, ns[k] = n;
        for (int c = 1; c < k; c++) {
            double mid = p->shift + 0.5 * (mean[c - 1] + mean[c]);
            size_t i = s[c];
            while (i < n && x[i] <= mid) i++;
            while (i > 0 && x[i - 1] > mid) i--;
            ns[c] = i;
        }
        /* keep every cluster non-empty */
        for (int c = 1; c < k; c++)
            if (ns[c] <= ns[c - 1]) ns[c] = ns[c - 1] + 1;
        for (int c = k - 1; c >= 1; c--)
            if (ns[c] >= ns[c + 1]) ns[c] = ns[c + 1] - 1;
        if (!memcmp(s, ns, sizeof *s * (size_t)(k + 1))) break;
        double nsse = partition_means(p, k, ns, wk->next_mean);
        if (!(nsse < sse)) break;
        sse = nsse;
        size_t *ts = s;
        s = ns, ns = ts;
        double *tm = wk->mean;
        wk->mean = wk->next_mean, wk->next_mean = tm;
    }
    if (s != wk->part) memcpy(wk->part, s, sizeof *s * (size_t)(k + 1));
}

/* Refines level t into level t+1 (T: its measure threshold, 0 = the values), moving each
 * boundary's choice and +-half window (in level t's bins) to the finer level. */
static void refine_level(const double *x, const Prefix *pv, Km1dWork *wk, int k, int t, double T, size_t half) {
    Level *lv = wk->level;
    memset(lv[t].need, 0, lv[t].m);
    for (int c = 1; c < k; c++) {
        size_t a = wk->sel[c] > half ? wk->sel[c] - half : 0;
        size_t b = wk->sel[c] + half < lv[t].m ? wk->sel[c] + half : lv[t].m - 1;
        memset(lv[t].need + a, 1, b - a + 1);
    }
    level_refine(x, pv, &lv[t], T, &lv[t + 1]);
    for (int c = 1; c < k; c++) {
        size_t a = wk->sel[c] > half ? wk->sel[c] - half : 0;
        size_t b = wk->sel[c] + half < lv[t].m ? wk->sel[c] + half : lv[t].m;
        wk->sel[c] = lv[t].up[wk->sel[c]];
        wk->lo[c] = lv[t].up[a], wk->hi[c] = lv[t].up[b];
        size_t lim_lo = (size_t)c, lim_hi = lv[t + 1].m - (size_t)(k - c);
        if (wk->lo[c] < lim_lo) wk->lo[c] = lim_lo;
        if (wk->hi[c] > lim_hi) wk->hi[c] = lim_hi;
    }
}

/* Cube root for the guess below, for y in [2^-10, 2^10]: a seed from the bits (a third of
 * the exponent) refined by Newton steps, in integer and basic IEEE arithmetic only, so
 * the guess (and through it the LUTs) is the same on every platform (libm's cbrt may
 * differ in the last place). The seed is within ~5%, three steps give ~10 digits. */
static double rough_cbrt(double y) {
    uint64_t bits;
    memcpy(&bits, &y, sizeof bits);
    bits = bits / 3 + (uint64_t)682 * ((uint64_t)1 << 52); /* exponent / 3 (682 = 2/3 of the bias) */
    double x;
    memcpy(&x, &bits, sizeof x);
    for (int i = 0; i < 3; i++) x -= (x * x * x - y) / (3 * x * x);
    return x;
}

/* Where boundary c probably sits among level 0's bins (edge indices into wk->sel): a bin of
 * extent b (to the next bin) and weight m holds about (b^2 m / T)^(1/3) bins' worth of
 * cluster (the asymptotic k-means density, which made the bins: ~1 for regular bins), an
 * isolated value more, but at most a whole cluster; the boundaries go at equal steps of
 * that measure. Evenly spread guesses (c*m/k) missed by several clusters where outliers
 * sit alone in bins. */
static void level0_guess(const double *x, const Level *lv, double T, int k, int bins_per_cluster, Km1dWork *wk) {
    size_t m = lv->m;
    work_reserve_units(wk, m);
    double *unit = wk->unit, total = 0;
    for (size_t e = 0; e < m; e++) {
        size_t a = lv->pos[e], b = lv->pos[e + 1];
        double ext = (e + 1 < m ? x[b] : x[b - 1]) - x[a], mass = lv->pw[e + 1] - lv->pw[e];
        double v = ext * ext * mass / T, cap = bins_per_cluster;
        double u = v <= 1.0 / 64 ? 0.25 : v >= cap * cap * cap ? cap : rough_cbrt(v); /* cbrt clamped to [1/4, cap] */
        unit[e] = u;
        total += u;
    }
    double step = total / k, acc = 0;
    int c = 1;
    for (size_t e = 0; e < m && c < k; e++) {
        acc += unit[e];
        while (c < k && acc >= step * c) wk->sel[c++] = e + 1;
    }
    for (; c < k; c++) wk->sel[c] = m - (size_t)(k - c);
}

static void fast_segment(const double *x, const Prefix *pv, int k, size_t *start, Km1dWork *wk) {
    const FastPlan *plan = k <= 16 ? &plan_upto_16 : k <= 64 ? &plan_upto_64 : &plan_wide;
    size_t n = pv->m;
    Level *lv = wk->level;
    double T = level0_build(x, pv, (size_t)plan->bins_per_cluster * (size_t)k, k, &lv[0]);
    if (plan->level0_half > 0) level0_guess(x, &lv[0], T, k, plan->bins_per_cluster, wk);
    for (int c = 1; c < k; c++) {
        if (plan->level0_half > 0)
            window_around(wk, c, k, lv[0].m, wk->sel[c], (size_t)plan->level0_half);
        else
            wk->lo[c] = (size_t)c, wk->hi[c] = lv[0].m - (size_t)(k - c);
    }
    band_settle(wk, &lv[0], k);

    double items_per_bin = (double)n / (double)lv[0].m;
    int t = 0;
    for (; T > 0 && t < plan->levels; t++) {
        double r = plan->level[t].refine;
        size_t half = (size_t)plan->level[t].window;
        items_per_bin /= r;
        T = items_per_bin < 2 ? 0 : T / (r * r * r);
        /* Few values per cluster (8-bit LUTs of small groups): the values come right
         * after level 0, so this one window must also do the second's job. */
        if (T == 0 && t == 0 && plan->widen_to_values) half *= 2;
        refine_level(x, pv, wk, k, t, T, half);
        band_settle(wk, &lv[t + 1], k);
    }
    start[0] = 0, start[k] = n;
    if (T == 0) { /* the last level was the values: its edges are value indices */
        for (int c = 1; c < k; c++) start[c] = wk->sel[c];
        return;
    }
    size_t *s = wk->part;
    s[0] = 0, s[k] = n;
    for (int c = 1; c < k; c++) s[c] = lv[t].pos[wk->sel[c]];
    lloyd(x, pv, k, wk);
    Level values = {.pw = pv->w, .ps1 = pv->s1, .ps2 = pv->s2, .m = n};
    for (int c = 1; c < k; c++) window_around(wk, c, k, n, wk->part[c], POLISH_HALF);
    band_settle(wk, &values, k);
    for (int c = 1; c < k; c++) start[c] = wk->sel[c];
}

/* ==== public entry points =================================================== */

/* Validates the input (see kmeans1d.h) and returns the weighted mean of the values in
 * *mean (the prefix sums' shift), in one pass. Branch-free, so the loop streams: a
 * non-finite value fails the ordering or the finiteness test (NaN compares false). */
static int check_input(const double *x, const double *w, size_t n, int k, double *mean) {
    if (k < 1 || n < 1) return -1;
    int ok = isfinite(x[0]) & isfinite(x[n - 1]);
    double sw = 0, sx = 0;
    for (size_t i = 0; i < n; i++) {
        ok &= (w[i] > 0) & (w[i] <= DBL_MAX) & (i == 0 || x[i] > x[i - 1]);
        sw += w[i], sx += w[i] * x[i];
    }
    if (!ok) return -1;
    *mean = sx / sw;
    return 0;
}

/* Every value its own cluster (n <= k). */
static int each_value_a_cluster(const double *x, size_t n, Km1dResult *out) {
    for (size_t i = 0; i < n; i++) out->centroid[i] = x[i], out->start[i] = i;
    out->start[n] = n;
    out->k = (int)n;
    out->sse = 0;
    return out->k;
}

/* Centroids and SSE of the final partition. */
static int finish(const Prefix *p, int k, Km1dResult *out) {
    double sse = 0;
    for (int c = 0; c < k; c++) {
        size_t a = out->start[c], b = out->start[c + 1];
        out->centroid[c] = p->shift + (p->s1[b] - p->s1[a]) / (p->w[b] - p->w[a]);
        sse += seg_cost(p, a, b);
    }
    out->k = k;
    out->sse = sse;
    return k;
}

int kmeans1d_optimal(const double *x, const double *w, size_t n, int k, Km1dResult *out, Km1dWork *work) {
    double mean;
    if (check_input(x, w, n, k, &mean) < 0) return -1;
    if (n <= (size_t)k) return each_value_a_cluster(x, n, out);
    Km1dWork *wk = work ? work : kmeans1d_work_new();
    Prefix pv = prefix_build(x, w, n, mean, wk);
    exact_segment(&pv, k, out->start, wk);
    int r = finish(&pv, k, out);
    if (!work) kmeans1d_work_free(wk);
    return r;
}

int kmeans1d_fast(const double *x, const double *w, size_t n, int k, Km1dResult *out, Km1dWork *work) {
    double mean;
    if (check_input(x, w, n, k, &mean) < 0) return -1;
    if (n <= (size_t)k) return each_value_a_cluster(x, n, out);
    Km1dWork *wk = work ? work : kmeans1d_work_new();
    Prefix pv = prefix_build(x, w, n, mean, wk);
    if (k == 1 || n <= kmeans1d_fast_bins(k)) {
        exact_segment(&pv, k, out->start, wk);
    } else {
        work_reserve_fast(wk, k);
        fast_segment(x, &pv, k, out->start, wk);
    }
    int r = finish(&pv, k, out);
    if (!work) kmeans1d_work_free(wk);
    return r;
}

double kmeans1d_partition_sse(const double *x, const double *w, size_t n, const size_t *start, int k) {
    double sse = 0;
    for (int c = 0; c < k; c++) {
        size_t a = start[c], b = start[c + 1];
        if (b > n || a >= b) continue;
        double sw = 0, sx = 0;
        for (size_t i = a; i < b; i++) sw += w[i], sx += w[i] * x[i];
        double mu = sx / sw;
        for (size_t i = a; i < b; i++) sse += w[i] * (x[i] - mu) * (x[i] - mu);
    }
    return sse;
}
