/* lut.c - grouped LUT palettization of fp16 weights (contract in lut.h).
 *
 * Per group: count the fp16 values (a histogram indexed by an order-preserving 16-bit
 * key plus a bitmap of the keys seen, so reading the sorted uniques back and clearing
 * costs the uniques, not the 65536 keys), cluster the unique values weighted by their
 * counts (kmeans1d), round the centroids to fp16, map each unique value to its nearest
 * LUT entry, then write one index per weight through a key -> index table.
 */
#include "quant/lut.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "common/parallel.h"
#include "common/util.h"
#include "quant/fp16_tools.h"
#include "quant/kmeans1d.h"
#include "quant/lut_pack.h"

#define N_KEYS 65536

/* ==== fp16 order keys ====================================================== */

/* 16-bit key whose unsigned order is the numeric order of the fp16 value; -0 is folded
 * into +0. Finite values have keys in (KEY_NEG_INF, KEY_POS_INF). */
static inline uint16_t order_key(uint16_t h) {
    h = h == 0x8000 ? 0 : h;
    uint16_t neg = (uint16_t)-(h >> 15); /* 0xffff for negative values */
    return h ^ (neg | 0x8000);
}
#define KEY_NEG_INF 0x03ffu
#define KEY_POS_INF 0xfc00u

static inline uint16_t key_to_half(uint16_t k) { return (k & 0x8000) ? (uint16_t)(k & 0x7fff) : (uint16_t)~k; }

static int valid_bits(int bits) {
    return bits == 1 || bits == 2 || bits == 3 || bits == 4 || bits == 6 || bits == 8;
}

static const char *nonfinite_name(uint16_t h) {
    if ((h & 0x3ff) != 0) return "NaN";
    return (h & 0x8000) ? "-inf" : "+inf";
}

/* Index of the first non-finite value in w[0..n), or n. */
static size_t first_nonfinite(const uint16_t *w, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!f16_is_finite(w[i])) return i;
    return n;
}

/* ==== stats ================================================================ */

void lut_stats_add(LutStats *acc, const LutStats *s) {
    acc->sse += s->sse;
    acc->energy += s->energy;
    acc->cluster_sse += s->cluster_sse;
    acc->count += s->count;
}

double lut_stats_rel_mse(const LutStats *s) {
    if (s->sse == 0) return 0;
    return s->energy > 0 ? s->sse / s->energy : INFINITY;
}

double lut_stats_snr_db(const LutStats *s) {
    if (s->sse == 0) return INFINITY;
    return 10 * log10(s->energy / s->sse);
}

/* ==== clustering the unique values of a group ============================== */

/* Unique values of one group, ascending, with their counts. */
typedef struct {
    uint16_t *key; /* (u) order keys */
    double *x;     /* (u) values */
    double *wt;    /* (u) counts */
    size_t u;
} Uniques;

typedef enum { FIT_FAST, FIT_EXACT } FitMethod;

/* The distinct values of lut[0..used) (ascending; fp16 rounding may merge neighbours),
 * each with the lowest index holding it. */
typedef struct {
    double v[LUT_MAX_ENTRIES];
    uint8_t first[LUT_MAX_ENTRIES];
    int n;
} Distinct;

static void distinct_build(const uint16_t *lut, int used, Distinct *d) {
    d->n = 0;
    for (int c = 0; c < used && c < LUT_MAX_ENTRIES; c++) {
        double v = f16_to_f32(lut[c]);
        if (d->n == 0 || v != d->v[d->n - 1]) d->v[d->n] = v, d->first[d->n] = (uint8_t)c, d->n++;
    }
}

/* Nearest distinct value to x, for x visited in ascending order: the walk only moves
 * up, and only to a strictly nearer value, so a tie keeps the lower entry. */
static inline int distinct_nearest(const Distinct *d, int at, double x) {
    while (at + 1 < d->n && fabs(d->v[at + 1] - x) < fabs(d->v[at] - x)) at++;
    return at;
}

/* Clusters the uniques into min(u, 2^bits) LUT entries: lut[0..used) ascending fp16,
 * the rest 0. index_of[key] (may be NULL) receives each unique value's nearest entry.
 * Fills st->sse, st->energy and st->cluster_sse over the uniques. */
static void fit_uniques(const Uniques *un, int bits, FitMethod method, Km1dWork *km, uint16_t *lut, int *used,
                        uint8_t *index_of, LutStats *st) {
    int K = 1 << bits;
    double cent[LUT_MAX_ENTRIES];
    size_t start[LUT_MAX_ENTRIES + 1];
    Km1dResult res = {.centroid = cent, .start = start};
    int k = method == FIT_EXACT ? kmeans1d_optimal(un->x, un->wt, un->u, K, &res, km)
                                : kmeans1d_fast(un->x, un->wt, un->u, K, &res, km);
    AN_ASSERT(k >= 1 && k <= K); /* the inputs are sorted, finite, positive by construction */
    st->cluster_sse = res.sse;
    memset(lut, 0, (size_t)K * sizeof *lut);
    for (int c = 0; c < k; c++) lut[c] = f64_to_f16(cent[c]);
    *used = k;

    Distinct dl;
    distinct_build(lut, k, &dl);
    double sse = 0, energy = 0;
    int d = 0;
    for (size_t i = 0; i < un->u; i++) {
        double x = un->x[i];
        d = distinct_nearest(&dl, d, x);
        if (index_of) index_of[un->key[i]] = dl.first[d];
        sse += un->wt[i] * (dl.v[d] - x) * (dl.v[d] - x);
        energy += un->wt[i] * x * x;
    }
    st->sse = sse;
    st->energy = energy;
}

/* ==== one group ============================================================ */

struct LutWork {
    uint32_t *count;   /* (N_KEYS) zero between groups */
    uint64_t *seen;    /* (N_KEYS / 64) bit per key present; zero between groups */
    uint8_t *index_of; /* (N_KEYS) LUT index of each key present in the current group */
    uint8_t *idx;      /* (cap_idx) a group's indices on their way to being packed */
    size_t cap_idx;
    uint16_t *keys;    /* (cap_keys) the order keys of the current group's values */
    size_t cap_keys;
    uint16_t *key;     /* (N_KEYS) */
    double *x, *wt;    /* (N_KEYS) */
    Km1dWork *km;
};

LutWork *lut_work_new(void) {
    LutWork *wk = xcalloc(1, sizeof *wk);
    wk->count = xcalloc(N_KEYS, sizeof *wk->count);
    wk->seen = xcalloc(N_KEYS / 64, sizeof *wk->seen);
    wk->index_of = xcalloc(N_KEYS, 1);
    wk->key = xmalloc(N_KEYS * sizeof *wk->key);
    wk->x = xmalloc(N_KEYS * sizeof *wk->x);
    wk->wt = xmalloc(N_KEYS * sizeof *wk->wt);
    wk->km = kmeans1d_work_new();
    return wk;
}

void lut_work_free(LutWork *wk) {
    if (!wk) return;
    free(wk->count), free(wk->seen), free(wk->index_of), free(wk->idx), free(wk->keys), free(wk->key), free(wk->x),
        free(wk->wt);
    kmeans1d_work_free(wk->km);
    free(wk);
}

/* Value of every order key (the fp16 it stands for, as float). */
static float key_value[N_KEYS];
static pthread_once_t key_value_once = PTHREAD_ONCE_INIT;

static void key_value_init(void) {
    for (unsigned k = 0; k < N_KEYS; k++) key_value[k] = f16_to_f32(key_to_half((uint16_t)k));
}

typedef uint16_t v8u16 __attribute__((vector_size(16)));

/* keys[i] = order_key(w[i]), eight at a time (vector extensions; the tail one by one). */
static void order_keys(const uint16_t *w, size_t n, uint16_t *keys) {
    size_t i = 0;
    const v8u16 minus_zero = {0x8000, 0x8000, 0x8000, 0x8000, 0x8000, 0x8000, 0x8000, 0x8000};
    for (; i + 8 <= n; i += 8) {
        v8u16 h;
        memcpy(&h, w + i, sizeof h);
        h &= (v8u16)(h != minus_zero);          /* -0 -> +0 */
        v8u16 neg = (v8u16)((h >> 15) != 0);    /* 0xffff for negative values */
        h ^= neg | minus_zero;
        memcpy(keys + i, &h, sizeof h);
    }
    for (; i < n; i++) keys[i] = order_key(w[i]);
}

/* Counts the group's values into a histogram over order keys, marking each key seen
 * in a bitmap, then reads the uniques back in key (= value) order from the bitmap's
 * set bits. Returns the first non-finite index or n; either way wk->count and
 * wk->seen are zero again afterwards. The keys stay in wk->keys for the index write. */
static size_t group_uniques(LutWork *wk, const uint16_t *w, size_t n, Uniques *un) {
    pthread_once(&key_value_once, key_value_init);
    uint32_t *cnt = wk->count;
    uint64_t *seen = wk->seen;
    if (wk->cap_keys < n) free(wk->keys), wk->keys = xmalloc(n * sizeof *wk->keys), wk->cap_keys = n;
    uint16_t *keys = wk->keys;
    order_keys(w, n, keys);
    for (size_t i = 0; i < n; i++) {
        unsigned k = keys[i];
        cnt[k]++;
        seen[k >> 6] |= 1ull << (k & 63);
    }
    /* keys <= KEY_NEG_INF fill words 0..15, keys >= KEY_POS_INF words 1008..1023 */
    uint64_t nonfinite = 0;
    for (unsigned wi = 0; wi < 16; wi++) nonfinite |= seen[wi] | seen[N_KEYS / 64 - 1 - wi];
    size_t u = 0;
    for (unsigned wi = 0; wi < N_KEYS / 64; wi++) {
        uint64_t bits = seen[wi];
        if (!bits) continue;
        seen[wi] = 0;
        do {
            unsigned k = wi * 64 + (unsigned)__builtin_ctzll(bits);
            wk->key[u] = (uint16_t)k;
            wk->x[u] = key_value[k];
            wk->wt[u] = cnt[k];
            cnt[k] = 0;
            u++;
            bits &= bits - 1;
        } while (bits);
    }
    *un = (Uniques){wk->key, wk->x, wk->wt, u};
    return nonfinite ? first_nonfinite(w, n) : n;
}

/* Through the keys group_uniques left in wk->keys. */
static void group_write_indices(const LutWork *wk, size_t n, uint8_t *idx) {
    const uint8_t *index_of = wk->index_of;
    const uint16_t *keys = wk->keys;
    for (size_t i = 0; i < n; i++) idx[i] = index_of[keys[i]];
}

/* The group pipeline; returns the first non-finite index (error) or n. */
static size_t group_run(LutWork *wk, const uint16_t *w, size_t n, int bits, FitMethod method, uint16_t *lut,
                        uint8_t *idx, LutStats *st) {
    Uniques un;
    size_t bad = group_uniques(wk, w, n, &un);
    if (bad < n) return bad;
    int used;
    fit_uniques(&un, bits, method, wk->km, lut, &used, wk->index_of, st);
    st->count = n;
    group_write_indices(wk, n, idx);
    return n;
}

static int check_group_args(const uint16_t *w, size_t n, int bits, Err *e) {
    if (!valid_bits(bits)) return err_set(e, "LUT bits %d: use 1, 2, 3, 4, 6 or 8", bits);
    if (n == 0 || !w) return err_set(e, "LUT palettization of an empty group");
    if (n > UINT32_MAX) return err_set(e, "LUT group of %zu weights is too large (limit %u)", n, UINT32_MAX);
    return 0;
}

static int group_entry(LutWork *wk, const uint16_t *w, size_t n, int bits, FitMethod method, uint16_t *lut,
                       uint8_t *idx, LutStats *stats, Err *e) {
    if (check_group_args(w, n, bits, e) < 0) return -1;
    LutStats st = {0};
    size_t bad = group_run(wk, w, n, bits, method, lut, idx, &st);
    if (bad < n)
        return err_set(e, "weight %zu of the group is %s; fp16 LUTs need finite weights", bad,
                       nonfinite_name(w[bad]));
    if (stats) lut_stats_add(stats, &st);
    return 0;
}

int lut_quantize_group(LutWork *wk, const uint16_t *w, size_t n, int bits, uint16_t *lut, uint8_t *idx,
                       LutStats *stats, Err *e) {
    return group_entry(wk, w, n, bits, FIT_FAST, lut, idx, stats, e);
}

int lut_quantize_group_exact(LutWork *wk, const uint16_t *w, size_t n, int bits, uint16_t *lut, uint8_t *idx,
                             LutStats *stats, Err *e) {
    return group_entry(wk, w, n, bits, FIT_EXACT, lut, idx, stats, e);
}

/* ==== histogram + map (per-tensor LUTs) ==================================== */

struct LutHist {
    uint64_t count[N_KEYS];
};

LutHist *lut_hist_new(void) { return xcalloc(1, sizeof(LutHist)); }
void lut_hist_free(LutHist *h) { free(h); }

static int nonfinite_error(const char *tensor, size_t at, uint16_t h, Err *e) {
    return err_set(e,
                   "tensor %s: weight %zu is %s; LUT palettization needs finite fp16 weights "
                   "(convert with overflow saturation to clamp to +-65504, or fix the checkpoint)",
                   tensor ? tensor : "?", at, nonfinite_name(h));
}

int lut_hist_add(LutHist *h, const uint16_t *w, size_t n, const char *tensor, Err *e) {
    size_t bad = first_nonfinite(w, n);
    if (bad < n) return nonfinite_error(tensor, bad, w[bad], e);
    for (size_t i = 0; i < n; i++) h->count[order_key(w[i])]++;
    return 0;
}

static void hist_merge(LutHist *dst, const LutHist *src) {
    for (size_t k = 0; k < N_KEYS; k++) dst->count[k] += src->count[k];
}

int lut_hist_fit(const LutHist *h, int bits, uint16_t *lut, int *used, LutStats *stats, Err *e) {
    if (!valid_bits(bits)) return err_set(e, "LUT bits %d: use 1, 2, 3, 4, 6 or 8", bits);
    Uniques un = {xmalloc(N_KEYS * sizeof(uint16_t)), xmalloc(N_KEYS * sizeof(double)),
                  xmalloc(N_KEYS * sizeof(double)), 0};
    uint64_t total = 0;
    for (unsigned k = KEY_NEG_INF + 1; k < KEY_POS_INF; k++) {
        if (!h->count[k]) continue;
        un.key[un.u] = (uint16_t)k;
        un.x[un.u] = f16_to_f32(key_to_half((uint16_t)k));
        un.wt[un.u] = (double)h->count[k];
        total += h->count[k];
        un.u++;
    }
    int rc = 0;
    if (un.u == 0) {
        rc = err_set(e, "per-tensor LUT of an empty tensor");
    } else {
        Km1dWork *km = kmeans1d_work_new();
        LutStats st = {0};
        fit_uniques(&un, bits, FIT_FAST, km, lut, used, NULL, &st);
        st.count = total;
        if (stats) lut_stats_add(stats, &st);
        kmeans1d_work_free(km);
    }
    free(un.key), free(un.x), free(un.wt);
    return rc;
}

struct LutMap {
    uint8_t index_of[N_KEYS];
};

LutMap *lut_map_new(const uint16_t *lut, int used) {
    LutMap *m = xcalloc(1, sizeof *m);
    Distinct dl;
    distinct_build(lut, used, &dl);
    if (dl.n == 0) return m;
    int d = 0;
    for (unsigned k = KEY_NEG_INF + 1; k < KEY_POS_INF; k++) {
        d = distinct_nearest(&dl, d, f16_to_f32(key_to_half((uint16_t)k)));
        m->index_of[k] = dl.first[d];
    }
    return m;
}

void lut_map_free(LutMap *m) { free(m); }

int lut_map_apply(const LutMap *m, const uint16_t *w, size_t n, uint8_t *idx, const char *tensor, Err *e) {
    size_t bad = first_nonfinite(w, n);
    if (bad < n) return nonfinite_error(tensor, bad, w[bad], e);
    for (size_t i = 0; i < n; i++) idx[i] = m->index_of[order_key(w[i])];
    return 0;
}

/* ==== many groups on many threads ========================================== */

typedef struct {
    const uint16_t *w;
    size_t cols, group_rows;
    int bits;
    uint16_t *lut;
    uint8_t *idx;
    uint8_t *packed;   /* NULL, or where each group's packed indices go */
    LutWork **work;    /* (threads) created on first use by their thread */
    LutStats *stats;   /* (groups) */
    size_t *bad;       /* (groups) first non-finite element of the group, or group size */
} GroupJob;

/* Workspaces kept between calls: every block of a streamed matrix is one call, and a fresh
 * workspace per call and thread had its histogram and tables faulted in and zeroed again.
 * A workspace between groups holds no state that matters (the histogram is zero). */
#define SPARE_WORKS 8
static pthread_mutex_t spare_mu = PTHREAD_MUTEX_INITIALIZER;
static LutWork *spare_work[SPARE_WORKS];
static int n_spare_work;

static LutWork *work_take(void) {
    pthread_mutex_lock(&spare_mu);
    LutWork *wk = n_spare_work ? spare_work[--n_spare_work] : NULL;
    pthread_mutex_unlock(&spare_mu);
    return wk ? wk : lut_work_new();
}

static void work_give(LutWork *wk) {
    if (!wk) return;
    pthread_mutex_lock(&spare_mu);
    if (n_spare_work < SPARE_WORKS) spare_work[n_spare_work++] = wk, wk = NULL;
    pthread_mutex_unlock(&spare_mu);
    lut_work_free(wk);
}

static void group_task(void *ctx, long g, int thread) {
    GroupJob *job = ctx;
    if (!job->work[thread]) job->work[thread] = work_take();
    LutWork *wk = job->work[thread];
    size_t n = job->group_rows * job->cols, off = (size_t)g * n;
    uint8_t *idx = job->idx ? job->idx + off : NULL;
    if (!idx) { /* packed only: the indices go through the thread's own buffer, which stays in
                 * cache (a block-sized one made every group's writes miss) */
        if (wk->cap_idx < n) free(wk->idx), wk->idx = xmalloc(n), wk->cap_idx = n;
        idx = wk->idx;
    }
    LutStats st = {0};
    job->bad[g] = group_run(wk, job->w + off, n, job->bits, FIT_FAST, job->lut + ((size_t)g << job->bits), idx, &st);
    job->stats[g] = st;
    if (job->packed) lut_pack_indices(idx, n, job->bits, job->packed + off / 8 * (size_t)job->bits);
}

/* Per-tensor LUT of a tensor held whole: parallel counting and index writing around
 * one fit. Chunks of rows are fixed by the row count, not the thread count. */
typedef struct {
    const uint16_t *w;
    size_t n, chunk;
    LutHist **hist;    /* (threads) */
    const LutMap *map;
    uint8_t *idx;
} TensorJob;

static void tensor_count_task(void *ctx, long c, int thread) {
    TensorJob *job = ctx;
    if (!job->hist[thread]) job->hist[thread] = lut_hist_new();
    size_t a = (size_t)c * job->chunk, b = a + job->chunk < job->n ? a + job->chunk : job->n;
    uint64_t *cnt = job->hist[thread]->count;
    for (size_t i = a; i < b; i++) cnt[order_key(job->w[i])]++;
}

static void tensor_index_task(void *ctx, long c, int thread) {
    TensorJob *job = ctx;
    size_t a = (size_t)c * job->chunk, b = a + job->chunk < job->n ? a + job->chunk : job->n;
    for (size_t i = a; i < b; i++) job->idx[i] = job->map->index_of[order_key(job->w[i])];
}

static int quantize_tensor_whole(const uint16_t *w, size_t n, int bits, int threads, uint16_t *lut, uint8_t *idx,
                                 LutStats *stats, Err *e) {
    TensorJob job = {.w = w, .n = n, .chunk = 1u << 20, .idx = idx};
    long chunks = (long)((n + job.chunk - 1) / job.chunk);
    job.hist = xcalloc((size_t)threads, sizeof *job.hist);
    par_for(chunks, threads, tensor_count_task, &job);
    LutHist *total = lut_hist_new();
    for (int t = 0; t < threads; t++)
        if (job.hist[t]) hist_merge(total, job.hist[t]), lut_hist_free(job.hist[t]);
    free(job.hist);
    int used, rc = lut_hist_fit(total, bits, lut, &used, stats, e);
    lut_hist_free(total);
    if (rc < 0) return -1;
    LutMap *map = lut_map_new(lut, used);
    job.map = map;
    par_for(chunks, threads, tensor_index_task, &job);
    lut_map_free(map);
    return 0;
}

/* lut_quantize_rows; packed (may be NULL): each group's task also packs its indices there
 * (its size must be a multiple of 8). */
static int quantize_rows(const uint16_t *w, size_t rows, size_t cols, size_t group_rows, int bits, int threads,
                         const char *tensor, size_t first_row, uint16_t *lut, uint8_t *idx, uint8_t *packed,
                         LutStats *stats, Err *e) {
    const char *name = tensor ? tensor : "?";
    if (!valid_bits(bits)) return err_set(e, "tensor %s: LUT bits %d: use 1, 2, 3, 4, 6 or 8", name, bits);
    if (rows == 0 || cols == 0 || group_rows == 0)
        return err_set(e, "tensor %s: nothing to palettize (%zu rows x %zu columns, group of %zu rows)", name,
                       rows, cols, group_rows);
    if (rows % group_rows)
        return err_set(e, "tensor %s: LUT group of %zu output channels does not divide the %zu rows", name,
                       group_rows, rows);
    size_t n;
    if (mul_size(rows, cols, &n) < 0) return err_set(e, "tensor %s: size overflows", name);
    threads = par_threads(threads);
    size_t bad_at = n;
    if (group_rows == rows) {
        bad_at = first_nonfinite(w, n);
        if (bad_at == n) return quantize_tensor_whole(w, n, bits, threads, lut, idx, stats, e);
    } else {
        if (group_rows * cols > UINT32_MAX)
            return err_set(e, "tensor %s: LUT groups of %zu weights are too large (limit %u)", name,
                           group_rows * cols, UINT32_MAX);
        size_t groups = rows / group_rows;
        GroupJob job = {w, cols, group_rows, bits, lut, idx, packed, xcalloc((size_t)threads, sizeof(LutWork *)),
                        xcalloc(groups, sizeof(LutStats)), xcalloc(groups, sizeof(size_t))};
        par_for((long)groups, threads, group_task, &job);
        size_t gn = group_rows * cols;
        LutStats sum = {0};
        for (size_t g = 0; g < groups && bad_at == n; g++) {
            if (job.bad[g] < gn) bad_at = g * gn + job.bad[g];
            lut_stats_add(&sum, &job.stats[g]);
        }
        for (int t = 0; t < threads; t++) work_give(job.work[t]);
        free(job.work), free(job.stats), free(job.bad);
        if (bad_at == n) {
            if (stats) lut_stats_add(stats, &sum);
            return 0;
        }
    }
    return err_set(e,
                   "tensor %s: weight at row %zu, column %zu is %s; LUT palettization needs finite fp16 "
                   "weights (convert with overflow saturation to clamp to +-65504, or fix the checkpoint)",
                   name, first_row + bad_at / cols, bad_at % cols, nonfinite_name(w[bad_at]));
}

int lut_quantize_rows(const uint16_t *w, size_t rows, size_t cols, size_t group_rows, int bits, int threads,
                      const char *tensor, size_t first_row, uint16_t *lut, uint8_t *idx, LutStats *stats,
                      Err *e) {
    return quantize_rows(w, rows, cols, group_rows, bits, threads, tensor, first_row, lut, idx, NULL, stats, e);
}

int lut_quantize_rows_packed(const uint16_t *w, size_t rows, size_t cols, size_t group_rows, int bits,
                             int threads, const char *tensor, size_t first_row, uint16_t *lut, uint8_t *idx,
                             uint8_t *packed, LutStats *stats, Err *e) {
    /* a group packs itself when it is a whole number of bytes at any width: 8 | its size */
    int in_groups = group_rows < rows && group_rows * cols % 8 == 0;
    uint8_t *own = NULL;
    if (!idx && !in_groups) {
        size_t n;
        if (mul_size(rows, cols, &n) < 0) return err_set(e, "tensor %s: size overflows", tensor ? tensor : "?");
        idx = own = xmalloc(n ? n : 1);
    }
    int rc = quantize_rows(w, rows, cols, group_rows, bits, threads, tensor, first_row, lut, idx,
                           in_groups ? packed : NULL, stats, e);
    if (rc == 0 && !in_groups) lut_pack_indices(idx, rows * cols, bits, packed);
    free(own);
    return rc;
}
