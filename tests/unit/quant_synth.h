/* quant_synth.h - deterministic synthetic fp16 weights for the quant tests and benchmark.
 *
 * Header-only (static functions) so both tests/unit/test_quant_*.c and bench/ use it
 * without a link dependency. Every row has its own generator seeded from (seed, row),
 * so a tensor is the same whether it is generated on one thread or many.
 *
 * SYN_LLAMA, the "realistic" weights: row r has scale sigma * exp(0.25 * N(0,1))
 * (rows differ in norm); 1 column in 64 is an outlier input feature (x3); each value
 * is Student-t with 5 degrees of freedom scaled to unit variance (heavier tails than a
 * normal, as trained LLM weights have); 1 value in 5000 is a heavy outlier (x 6..20).
 * Rounded to fp16 (nearest even).
 */
#ifndef ANEMLL_TESTS_QUANT_SYNTH_H
#define ANEMLL_TESTS_QUANT_SYNTH_H

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "common/half.h"

typedef enum {
    SYN_LLAMA,     /* see above */
    SYN_NORMAL,    /* N(0, sigma^2) */
    SYN_LAPLACE,   /* Laplace with std sigma */
    SYN_UNIFORM,   /* uniform on [-sigma*sqrt3, sigma*sqrt3] */
    SYN_BIMODAL,   /* two normals at +-2 sigma, std sigma/4 */
    SYN_FEW,       /* only 5 distinct values */
    SYN_CONSTANT,  /* every value sigma */
} SynKind;

typedef struct {
    uint64_t s;
} SynRng;

static inline uint64_t syn_next(SynRng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1). */
static inline double syn_uniform(SynRng *r) { return ((double)(syn_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static inline double syn_normal(SynRng *r) {
    double u = syn_uniform(r), v = syn_uniform(r);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* Student-t with 5 degrees of freedom: CDF F(t) = 1/2 + (th + sin(th) cos(th)
 * (1 + 2/3 cos^2 th)) / pi with th = atan(t / sqrt 5). Sampled by inverting F: a table
 * of SYN_T5_TABLE quantiles with linear interpolation, bisection in the far tails
 * (the bench draws hundreds of millions of values; this is ~50x cheaper than a ratio
 * of normals). */
#define SYN_T5_TABLE 16384

static inline double syn_t5_cdf(double t) {
    double th = atan(t / sqrt(5.0)), c = cos(th);
    return 0.5 + (th + sin(th) * c * (1 + 2.0 / 3.0 * c * c)) / 3.141592653589793;
}

static inline double syn_t5_quantile(double u) {
    double lo = -1e4, hi = 1e4;
    for (int i = 0; i < 80; i++) {
        double mid = 0.5 * (lo + hi);
        if (syn_t5_cdf(mid) < u) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

static double syn_t5_table[SYN_T5_TABLE + 1];
static pthread_once_t syn_t5_once = PTHREAD_ONCE_INIT;

static void syn_t5_init(void) {
    for (int i = 0; i <= SYN_T5_TABLE; i++) {
        double u = (double)i / SYN_T5_TABLE;
        syn_t5_table[i] = i == 0 ? -1e300 : i == SYN_T5_TABLE ? 1e300 : syn_t5_quantile(u);
    }
}

/* Student-t(5) scaled to unit variance (var of t5 = 5/3). */
static inline double syn_t5(SynRng *r) {
    pthread_once(&syn_t5_once, syn_t5_init);
    double u = syn_uniform(r), f = u * SYN_T5_TABLE;
    int i = (int)f;
    double t = (i < 2 || i >= SYN_T5_TABLE - 2) ? syn_t5_quantile(u)
                                                : syn_t5_table[i] + (f - i) * (syn_t5_table[i + 1] - syn_t5_table[i]);
    return t / sqrt(5.0 / 3.0);
}

static inline double syn_value(SynRng *r, SynKind kind, double sigma) {
    switch (kind) {
    case SYN_LLAMA: {
        double v = syn_t5(r);
        if (syn_next(r) % 5000 == 0) v *= 6 + 14 * syn_uniform(r);
        return sigma * v;
    }
    case SYN_NORMAL: return sigma * syn_normal(r);
    case SYN_LAPLACE: {
        double u = syn_uniform(r) - 0.5;
        return -sigma / sqrt(2.0) * (u < 0 ? -1 : 1) * log(1 - 2 * fabs(u));
    }
    case SYN_UNIFORM: return sigma * sqrt(3.0) * (2 * syn_uniform(r) - 1);
    case SYN_BIMODAL: return sigma * ((syn_next(r) & 1 ? 2 : -2) + 0.25 * syn_normal(r));
    case SYN_FEW: return sigma * (double)((int)(syn_next(r) % 5) - 2);
    case SYN_CONSTANT: return sigma;
    }
    return 0;
}

/* Fills rows [row0, row1) of a (rows x cols) fp16 tensor. */
static inline void syn_fill_rows(uint16_t *w, size_t cols, size_t row0, size_t row1, SynKind kind, double sigma,
                                 uint64_t seed) {
    for (size_t r = row0; r < row1; r++) {
        SynRng rng = {seed * 0x100000001b3ull ^ (r + 1) * 0xd6e8feb86659fd93ull};
        double s = sigma;
        if (kind == SYN_LLAMA) s *= exp(0.25 * syn_normal(&rng));
        for (size_t c = 0; c < cols; c++) {
            double cs = (kind == SYN_LLAMA && c % 64 == 17) ? 3 * s : s;
            w[r * cols + c] = f32_to_f16((float)syn_value(&rng, kind, cs));
        }
    }
}

#endif
