/* bench_quant - LUT palettization speed and quality on Llama-3.2-1B-shaped fp16 tensors.
 *
 *     make bench                      (builds this in release mode and runs it)
 *     build/release/bench/bench_quant [--no-full] [--samples N]
 *
 * Tensors (synthetic, tests/unit/quant_synth.h SYN_LLAMA: Student-t(5) values, row
 * scales 0.02 * lognormal(0.25), every 64th input column x3, 1 value in 5000 a x6-x20
 * outlier, rounded to fp16): q_proj 2048x2048, gate_proj 8192x2048, down_proj
 * 2048x8192, lm_head 128256x2048.
 *
 * For each tensor at LUT 4 and 6 bits, group 8, on 1 and 2 threads: groups/s, input
 * MB/s, time relative to a memcpy of the same bytes measured in the same run, and on a
 * sample of groups the SSE relative to the exact DP (kmeans1d_optimal). Then the whole
 * Llama-3.2-1B weight set at LUT6 g8 on 2 threads, timed: 16 layers of q, k, v, o,
 * gate, up, down (the layer tensors reuse the generated buffers: same shapes, same
 * statistics, each far larger than the caches) plus the LM head. Peak RSS at the end.
 *
 * The machine may be shared: times are wall clock of one run each (the lm_head runs
 * take seconds); the memcpy baseline is the best of three right before each tensor.
 */
#include <math.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/unit/quant_synth.h"
#include "common/parallel.h"
#include "common/util.h"
#include "quant/lut.h"

typedef struct {
    const char *name;
    size_t rows, cols;
    uint16_t *w;
} Tensor;

/* ---- data ------------------------------------------------------------------ */

typedef struct {
    Tensor *t;
    uint64_t seed;
} GenJob;

static void gen_task(void *ctx, long block, int thread) {
    (void)thread;
    GenJob *g = ctx;
    size_t r0 = (size_t)block * 256, r1 = r0 + 256 < g->t->rows ? r0 + 256 : g->t->rows;
    syn_fill_rows(g->t->w, g->t->cols, r0, r1, SYN_LLAMA, 0.02, g->seed);
}

static void generate(Tensor *t, uint64_t seed) {
    t->w = xmalloc(t->rows * t->cols * sizeof *t->w);
    GenJob g = {t, seed};
    par_for((long)((t->rows + 255) / 256), par_threads(0), gen_task, &g);
}

/* ---- measurements ---------------------------------------------------------- */

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double load_average(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

static double memcpy_seconds(const void *src, size_t bytes) {
    void *dst = xmalloc(bytes);
    memset(dst, 1, bytes); /* fault the pages in first */
    double best = INFINITY;
    for (int r = 0; r < 3; r++) {
        double t0 = now_seconds();
        memcpy(dst, src, bytes);
        double t = now_seconds() - t0;
        if (t < best) best = t;
    }
    volatile unsigned char sink = ((unsigned char *)dst)[bytes / 2];
    (void)sink;
    free(dst);
    return best;
}

/* Wall seconds; *cpu gets the CPU seconds all threads used. */
static double quantize_seconds(const Tensor *t, int bits, int threads, uint16_t *lut, uint8_t *idx, LutStats *st,
                               double *cpu) {
    Err e = {0};
    *st = (LutStats){0};
    double c0 = cpu_seconds(), t0 = now_seconds();
    if (lut_quantize_rows(t->w, t->rows, t->cols, 8, bits, threads, t->name, 0, lut, idx, st, &e) < 0) {
        fprintf(stderr, "bench_quant: %s\n", e.msg);
        exit(1);
    }
    double wall = now_seconds() - t0;
    if (cpu) *cpu = cpu_seconds() - c0;
    return wall;
}

typedef struct {
    int groups, over_01;
    double mean, worst, lut_worst;
} Quality;

/* Fast vs exact DP on `samples` groups spread over the tensor. */
static Quality sample_quality(const Tensor *t, int bits, int samples) {
    Quality q = {0};
    size_t groups = t->rows / 8, n = 8 * t->cols;
    uint16_t lut[256];
    uint8_t *idx = xmalloc(n);
    LutWork *wk = lut_work_new();
    Err e = {0};
    for (int s = 0; s < samples; s++) {
        size_t g = (size_t)s * groups / (size_t)samples + (size_t)s % 3;
        if (g >= groups) g = groups - 1;
        LutStats fast = {0}, exact = {0};
        if (lut_quantize_group(wk, t->w + g * n, n, bits, lut, idx, &fast, &e) < 0 ||
            lut_quantize_group_exact(wk, t->w + g * n, n, bits, lut, idx, &exact, &e) < 0) {
            fprintf(stderr, "bench_quant: %s\n", e.msg);
            exit(1);
        }
        double r = fast.cluster_sse / exact.cluster_sse, rl = fast.sse / exact.sse;
        q.groups++;
        q.mean += r;
        if (r > 1.001) q.over_01++;
        if (r > q.worst) q.worst = r;
        if (rl > q.lut_worst) q.lut_worst = rl;
    }
    q.mean /= q.groups;
    lut_work_free(wk);
    free(idx);
    return q;
}

/* ---- the whole model ------------------------------------------------------- */

/* Llama-3.2-1B: 16 layers; k and v are 512x2048 (the first 512 rows of q's buffer). */
static double full_model_seconds(Tensor *q, Tensor *gate, Tensor *down, Tensor *lm, int threads, uint16_t *lut,
                                 uint8_t *idx, double *weights, LutStats *total, double *cpu) {
    Tensor kv = {"k/v_proj", 512, 2048, q->w};
    Tensor *layer[] = {q, &kv, &kv, q, gate, gate, down};
    *weights = 0;
    *total = (LutStats){0};
    double t0 = now_seconds(), c0 = cpu_seconds();
    for (int l = 0; l < 16; l++) {
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++) {
            LutStats st;
            quantize_seconds(layer[i], 6, threads, lut, idx, &st, NULL);
            lut_stats_add(total, &st);
            *weights += (double)layer[i]->rows * (double)layer[i]->cols;
        }
    }
    LutStats st;
    quantize_seconds(lm, 6, threads, lut, idx, &st, NULL);
    lut_stats_add(total, &st);
    *weights += (double)lm->rows * (double)lm->cols;
    *cpu = cpu_seconds() - c0;
    return now_seconds() - t0;
}

int main(int argc, char **argv) {
    int full = 1, samples = 12;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-full") == 0) full = 0;
        else if (strcmp(argv[i], "--samples") == 0 && i + 1 < argc) samples = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_quant [--no-full] [--samples N]\n");
            return 2;
        }
    }
    Tensor ts[] = {{"q_proj", 2048, 2048, NULL},
                   {"gate_proj", 8192, 2048, NULL},
                   {"down_proj", 2048, 8192, NULL},
                   {"lm_head", 128256, 2048, NULL}};
    enum { NT = sizeof ts / sizeof ts[0] };
    double t0 = now_seconds();
    for (int i = 0; i < NT; i++) generate(&ts[i], 1000 + (uint64_t)i);
    printf("bench_quant: %d cores online, load average %.2f at start; synthetic Llama-3.2-1B-shaped fp16\n"
           "weights generated in %.1f s\n",
           par_threads(0), load_average(), now_seconds() - t0);
    printf("(SYN_LLAMA: t5 values, lognormal row scales, x3 outlier columns, 1/5000 x6-x20 outliers)\n\n");

    size_t max_n = 0;
    for (int i = 0; i < NT; i++)
        if (ts[i].rows * ts[i].cols > max_n) max_n = ts[i].rows * ts[i].cols;
    uint8_t *idx = xmalloc(max_n);
    uint16_t *lut = xmalloc(max_n / 8 / 2048 * 256 * sizeof *lut + 4096);

    printf("time = wall clock; cpu = CPU seconds of all threads (cpu/thr is what dedicated cores would take)\n");
    printf("%-10s %4s %3s %7s %7s %10s %9s %8s %7s %8s  %s\n", "tensor", "bits", "thr", "time s", "cpu s",
           "groups/s", "MB/s in", "x memcpy", "SNR dB", "Mw/s", "cluster SSE / exact DP (sampled groups)");
    for (int i = 0; i < NT; i++) {
        Tensor *t = &ts[i];
        size_t n = t->rows * t->cols, bytes = n * 2, groups = t->rows / 8;
        double mc = memcpy_seconds(t->w, bytes);
        for (int bits = 6; bits >= 4; bits -= 2) {
            Quality q = sample_quality(t, bits, samples);
            for (int thr = 1; thr <= 2; thr++) {
                LutStats st;
                double cpu, s = quantize_seconds(t, bits, thr, lut, idx, &st, &cpu);
                printf("%-10s %4d %3d %7.3f %7.3f %10.0f %9.1f %8.1f %7.2f %8.1f", t->name, bits, thr, s, cpu,
                       groups / s, bytes / s / 1e6, s / mc, lut_stats_snr_db(&st), n / s / 1e6);
                if (thr == 1)
                    printf("  mean %.6f max %.6f, %d/%d over 0.1%% (LUT SSE max %.6f)", q.mean, q.worst, q.over_01,
                           q.groups, q.lut_worst);
                printf("\n");
            }
        }
        printf("%-10s memcpy of the same %zu MB: %.4f s (%.0f MB/s)\n", "", bytes >> 20, mc, bytes / mc / 1e6);
    }

    if (full) {
        double weights, cpu;
        LutStats total;
        printf("\nload average %.2f\n", load_average());
        double s = full_model_seconds(&ts[0], &ts[1], &ts[2], &ts[3], 2, lut, idx, &weights, &total, &cpu);
        printf("whole Llama-3.2-1B weight set (16 layers x q,k,v,o,gate,up,down + lm_head = %.3f G weights)\n",
               weights / 1e9);
        printf("LUT6 g8 on 2 threads: %.1f s wall (%.1f M weights/s), %.1f CPU s = %.1f s on 2 free cores "
               "(target < 30 s); SNR %.2f dB\n",
               s, weights / s / 1e6, cpu, cpu / 2, lut_stats_snr_db(&total));
    }
    printf("\npeak RSS %.0f MB, total bench time %.0f s\n", peak_rss_kb() / 1024.0, now_seconds() - t0);
    for (int i = 0; i < NT; i++) free(ts[i].w);
    free(idx);
    free(lut);
    return 0;
}
