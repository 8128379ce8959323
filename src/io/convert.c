/* convert.c - BF16/F16/F32 -> fp32 / fp16 conversion kernels for the safetensors reader.
 *
 * The converter streams every weight of a checkpoint through st_convert_f16, so it should
 * run at memory speed. On x86-64 with F16C the conversions use the hardware instructions
 * (round to nearest even, overflow to inf: the same results as common/half.h, which the
 * portable path uses; unit tests compare the two on every 16-bit pattern).
 */
#include <string.h>

#include "common/half.h"
#include "io/safetensors.h"

/* ==== portable kernels ==================================================== */

static int force_portable;

static inline uint16_t load_u16(const unsigned char *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* bf16 bit patterns whose magnitude is finite but beyond the fp16 range (>= 65536; the
 * largest bf16 below that, 65280, fits fp16). */
static inline int bf16_overflows_f16(uint16_t h) {
    return (uint16_t)((h & 0x7fff) - 0x4780) < (uint16_t)(0x7f80 - 0x4780);
}

static size_t count_f16_overflow_from_bf16(const unsigned char *src, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += (size_t)bf16_overflows_f16(load_u16(src + 2 * i));
    return c;
}

static size_t count_f16_overflow_from_f32(const unsigned char *src, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + 4 * i, 4);
        u &= 0x7fffffffu;
        c += (size_t)(u >= 0x477ff000u && u < 0x7f800000u); /* rounds to inf, was finite */
    }
    return c;
}

static void bf16_to_f32_portable(const unsigned char *src, size_t n, float *dst) {
    for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(load_u16(src + 2 * i));
}

static void f16_to_f32_portable(const unsigned char *src, size_t n, float *dst) {
    for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(load_u16(src + 2 * i));
}

static void bf16_to_f16_portable(const unsigned char *src, size_t n, uint16_t *dst) {
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_f16(bf16_to_f32(load_u16(src + 2 * i)));
}

static void f32_to_f16_portable(const unsigned char *src, size_t n, uint16_t *dst) {
    for (size_t i = 0; i < n; i++) {
        float v;
        memcpy(&v, src + 4 * i, 4);
        dst[i] = f32_to_f16(v);
    }
}

/* ==== x86-64 F16C kernels ================================================= */

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_F16C_PATH 1

/* Returns the number of values that overflowed to inf (the bf16_overflows_f16 test, on 8 lanes). */
__attribute__((target("avx2,f16c"))) static size_t bf16_to_f16_f16c(const unsigned char *src, size_t n,
                                                                       uint16_t *dst) {
    const __m128i abs_mask = _mm_set1_epi16(0x7fff), lo = _mm_set1_epi16(0x477f), hi = _mm_set1_epi16(0x7f80);
    size_t i = 0, over = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + 2 * i));
        __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        __m128i r = _mm256_cvtps_ph(_mm256_castsi256_ps(w), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(dst + i), r);
        __m128i a = _mm_and_si128(h, abs_mask);
        int m = _mm_movemask_epi8(_mm_and_si128(_mm_cmpgt_epi16(a, lo), _mm_cmplt_epi16(a, hi)));
        if (m) over += (size_t)__builtin_popcount((unsigned)m) / 2;
    }
    over += count_f16_overflow_from_bf16(src + 2 * i, n - i); /* before converting: src may be dst */
    bf16_to_f16_portable(src + 2 * i, n - i, dst + i);
    return over;
}

__attribute__((target("avx2,f16c"))) static void f32_to_f16_f16c(const unsigned char *src, size_t n,
                                                                    uint16_t *dst) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps((const float *)(const void *)(src + 4 * i));
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    f32_to_f16_portable(src + 4 * i, n - i, dst + i);
}

__attribute__((target("avx2,f16c"))) static void bf16_to_f32_avx2(const unsigned char *src, size_t n, float *dst) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + 2 * i));
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    bf16_to_f32_portable(src + 2 * i, n - i, dst + i);
}

__attribute__((target("avx2,f16c"))) static void f16_to_f32_f16c(const unsigned char *src, size_t n, float *dst) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    f16_to_f32_portable(src + 2 * i, n - i, dst + i);
}

/* AVX2 and F16C present, and AVX state enabled by the OS (cpuid + xgetbv; written out
 * because clang's __builtin_cpu_supports does not know "f16c"). */
static int detect_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx || !f16c) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6) return 0; /* XMM and YMM state saved by the OS */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 5) & 1; /* AVX2 */
}

static int have_f16c(void) {
    static int cached = -1; /* racing first calls compute the same value */
    if (__atomic_load_n(&force_portable, __ATOMIC_RELAXED)) return 0;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        v = detect_f16c();
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}
#else
#define HAVE_F16C_PATH 0
#endif

/* ==== dispatch ============================================================ */

void st_convert_f32(StDtype src_type, const void *src, size_t n, float *dst) {
    const unsigned char *s = src;
    switch (src_type) {
    case ST_F32: memmove(dst, s, n * 4); return;
    case ST_BF16:
#if HAVE_F16C_PATH
        if (have_f16c()) {
            bf16_to_f32_avx2(s, n, dst);
            return;
        }
#endif
        bf16_to_f32_portable(s, n, dst);
        return;
    case ST_F16:
#if HAVE_F16C_PATH
        if (have_f16c()) {
            f16_to_f32_f16c(s, n, dst);
            return;
        }
#endif
        f16_to_f32_portable(s, n, dst);
        return;
    }
}

size_t st_convert_f16(StDtype src_type, const void *src, size_t n, uint16_t *dst) {
    const unsigned char *s = src;
    size_t over;
    switch (src_type) {
    case ST_F16: memmove(dst, s, n * 2); return 0;
    case ST_BF16:
#if HAVE_F16C_PATH
        if (have_f16c()) return bf16_to_f16_f16c(s, n, dst);
#endif
        over = count_f16_overflow_from_bf16(s, n); /* before converting: s may be dst */
        bf16_to_f16_portable(s, n, dst);
        return over;
    case ST_F32:
        over = count_f16_overflow_from_f32(s, n);
#if HAVE_F16C_PATH
        if (have_f16c()) {
            f32_to_f16_f16c(s, n, dst);
            return over;
        }
#endif
        f32_to_f16_portable(s, n, dst);
        return over;
    }
    return 0;
}

void st_convert_force_portable(int on) { __atomic_store_n(&force_portable, on, __ATOMIC_RELAXED); }
