/* k_half.c - matrix products with fp16 weights (conv and linear weights are kept as fp16 bits).
 *
 * Decode multiplies every weight by one token: the product is a matrix-vector one whose speed
 * is the memory speed of the weights, so reading 2 bytes per weight instead of 4 halves it.
 * Few columns (N <= HALF_DOT_MAX_N): dot products that convert fp16 on the fly (F16C + FMA
 * where the CPU has them, plain C otherwise), rows spread over the cores. More columns
 * (prefill): blocks of rows are converted to float32 and multiplied with OpenBLAS sgemm.
 * Either way every product accumulates in float32.
 */
#include "runtime/rt_internal.h"

#include <cblas.h>
#include <string.h>

#include "common/half.h"
#include "common/parallel.h"
#include "io/safetensors.h"

#define HALF_DOT_MAX_N 4
#define HALF_BLOCK_ROWS 1024

/* ==== dot products ==== */

static float dot_f16_c(const uint16_t *w, const float *x, int64_t n) {
    float acc = 0;
    for (int64_t i = 0; i < n; i++) acc += f16_to_f32(w[i]) * x[i];
    return acc;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

__attribute__((target("avx2,f16c,fma"))) static float dot_f16_avx(const uint16_t *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8))), _mm256_loadu_ps(x + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))), _mm256_loadu_ps(x + i), a0);
    __m256 s = _mm256_add_ps(a0, a1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h) + dot_f16_c(w + i, x + i, n - i);
}

/* AVX2, F16C and FMA, with the AVX state enabled by the OS. */
static int detect_avx_f16c_fma(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!((c >> 27) & 1) || !((c >> 28) & 1) || !((c >> 29) & 1) || !((c >> 12) & 1)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 5) & 1;
}

typedef float (*DotFn)(const uint16_t *, const float *, int64_t);
static DotFn dot_fn(void) {
    static int have = -1;
    int v = __atomic_load_n(&have, __ATOMIC_RELAXED);
    if (v < 0) {
        v = detect_avx_f16c_fma();
        __atomic_store_n(&have, v, __ATOMIC_RELAXED);
    }
    return v ? dot_f16_avx : dot_f16_c;
}
#else
typedef float (*DotFn)(const uint16_t *, const float *, int64_t);
static DotFn dot_fn(void) { return dot_f16_c; }
#endif

/* ==== products ==== */

typedef struct DotJob {
    DotFn dot;
    const uint16_t *w;
    const float *xt;            /* (N, K) */
    int64_t M, K, N, rows_per_task;
    float *c;
    int64_t cs_m, cs_n;         /* element strides of C along M and N */
} DotJob;

static void dot_task(void *ctx, long task, int thread) {
    (void)thread;
    const DotJob *j = ctx;
    int64_t m0 = task * j->rows_per_task, m1 = m0 + j->rows_per_task < j->M ? m0 + j->rows_per_task : j->M;
    for (int64_t m = m0; m < m1; m++)
        for (int64_t n = 0; n < j->N; n++) j->c[m * j->cs_m + n * j->cs_n] = j->dot(j->w + m * j->K, j->xt + n * j->K, j->K);
}

int half_matmul(Kctx *k, const uint16_t *W, int64_t M, int64_t K, const float *B, int b_is_nk, int64_t N, float *C,
                int c_is_nm) {
    RtPool *pool = k->f->m->pool;
    if (M == 0 || N == 0) return 0;
    if (N <= HALF_DOT_MAX_N) {
        const float *xt = B;
        float *tbuf = NULL;
        int tcls = -1;
        if (!b_is_nk && N > 1) {   /* (K, N) -> (N, K) */
            tbuf = pool_get(pool, (size_t)(N * K) * 4, &tcls);
            for (int64_t kk = 0; kk < K; kk++)
                for (int64_t n = 0; n < N; n++) tbuf[n * K + kk] = B[kk * N + n];
            xt = tbuf;
        }
        DotJob j = {dot_fn(), W, xt, M, K, N, 64, C, c_is_nm ? 1 : N, c_is_nm ? M : 1};
        long tasks = (long)((M + j.rows_per_task - 1) / j.rows_per_task);
        int threads = M * K >= (1 << 20) ? par_threads(k->f->m->threads) : 1;
        par_for(tasks, threads, dot_task, &j);
        if (tbuf) pool_put(pool, tbuf, tcls);
        return 0;
    }
    int64_t R = HALF_BLOCK_ROWS < M ? HALF_BLOCK_ROWS : M;
    int wcls;
    float *wf = pool_get(pool, (size_t)(R * K) * 4, &wcls);
    for (int64_t m0 = 0; m0 < M; m0 += R) {
        int64_t r = m0 + R <= M ? R : M - m0;
        st_convert_f32(ST_F16, W + m0 * K, (size_t)(r * K), wf);
        if (!c_is_nm)   /* C (M, N) rows m0.. = Wb (r, K) . B */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, b_is_nk ? CblasTrans : CblasNoTrans, (int)r, (int)N, (int)K, 1.0f, wf,
                        (int)K, B, (int)(b_is_nk ? K : N), 0.0f, C + m0 * N, (int)N);
        else            /* C (N, M) columns m0.. = B (N, K) . Wb^T */
            cblas_sgemm(CblasRowMajor, b_is_nk ? CblasNoTrans : CblasTrans, CblasTrans, (int)N, (int)r, (int)K, 1.0f, B,
                        (int)(b_is_nk ? K : N), wf, (int)K, 0.0f, C + m0, (int)M);
    }
    pool_put(pool, wf, wcls);
    return 0;
}
