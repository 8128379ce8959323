/* kmeans1d.h - weighted 1-D k-means on sorted values (the engine behind LUT palettization).
 *
 * Input: n distinct values x[0] < x[1] < ... < x[n-1] with positive weights w[i]
 * (for palettization: the unique fp16 values of a group and how often each occurs).
 * Output: k clusters, each a contiguous run of the sorted values,
 *
 *     cluster c = items [start[c], start[c+1]),  start[0] = 0,  start[k] = n,
 *     centroid[c] = weighted mean of its items (ascending in c),
 *
 * minimizing SSE = sum_i w[i] * (x[i] - centroid[cluster(i)])^2.
 *
 * Two solvers, same contract:
 *  - kmeans1d_optimal: the exact dynamic program (Wu 1991; Gronlund et al. 2017):
 *    D[l][j] = min_i D[l-1][i] + cost(i, j), cost from prefix sums of w, w*x, w*x^2,
 *    each layer filled by divide and conquer on the monotone argmin:
 *    O(k * n * log n) time, O(k * n) memory for the back-pointers. The readable
 *    reference; tests and the benchmark hold the fast solver against it.
 *  - kmeans1d_fast: the same DP with boundary c restricted to windows of candidate
 *    positions, coarse to fine: first over a few bins per cluster of equal "companded
 *    measure" (bins narrow where values are dense, wide in sparse tails, an isolated
 *    outlier alone), then over finer nested bins within 2 clusters of where each
 *    boundary settled, then weighted Lloyd iterations and a banded DP over the values
 *    in narrow windows; windows whose answer lands on their edge are re-centred and
 *    solved again. Measured against kmeans1d_optimal on synthetic LLM-like weights
 *    (fp16 and bf16): within 0.1% on all but ~1 in 700 groups and within 0.2% on all
 *    (see kmeans1d.c and bench/bench_quant.c), at 1/30 (bf16-valued groups) to 1/90
 *    (fp16-valued) of its time. Inputs with at most 2k values are solved exactly.
 * Ties: among equal-cost split points both take the leftmost (in floating point, so
 * "equal" means bit-equal sums; which of two equally good clusterings wins is
 * otherwise unspecified but deterministic).
 * If n <= k every value is its own cluster (only n clusters are returned).
 * Deterministic: the result depends only on the input values.
 *
 * Return: the number of clusters produced (min(n, k)), or -1 if an argument is
 * invalid (k < 1, n < 1, values not strictly ascending or not finite, weight <= 0).
 * Ownership: out->centroid (capacity k) and out->start (capacity k + 1) belong to the
 * caller. `work` is optional reusable scratch (NULL: allocated and freed inside);
 * one Km1dWork must not be used by two threads at once.
 */
#ifndef ANEMLL_QUANT_KMEANS1D_H
#define ANEMLL_QUANT_KMEANS1D_H

#include <stddef.h>

typedef struct Km1dWork Km1dWork;

typedef struct Km1dResult {
    int k;              /* clusters produced */
    double sse;         /* weighted SSE with the unrounded centroids */
    double *centroid;   /* (k) ascending; caller-provided */
    size_t *start;      /* (k + 1) first item of each cluster; caller-provided */
} Km1dResult;

Km1dWork *kmeans1d_work_new(void);
void kmeans1d_work_free(Km1dWork *work);

/* Exact optimum (the reference). */
int kmeans1d_optimal(const double *x, const double *w, size_t n, int k, Km1dResult *out, Km1dWork *work);

/* Fast near-optimal solver (the production path). */
int kmeans1d_fast(const double *x, const double *w, size_t n, int k, Km1dResult *out, Km1dWork *work);

/* Inputs of at most this many values kmeans1d_fast solves with the exact DP. */
size_t kmeans1d_fast_bins(int k);

/* SSE of the partition `start` (k clusters) with each cluster at its own weighted mean;
 * lets tests re-derive what a solver reports. */
double kmeans1d_partition_sse(const double *x, const double *w, size_t n, const size_t *start, int k);

#endif
