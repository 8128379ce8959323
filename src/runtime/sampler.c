/* sampler.c - greedy / temperature / top-k / top-p sampling (contract in sampler.h). */
#include "runtime/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct Sampler {
    SamplerOptions o;
    int vocab;
    uint64_t rng;
    int *order;       /* [vocab] candidate ids */
    double *prob;     /* [vocab] by id */
};

Sampler *sampler_new(const SamplerOptions *o, int vocab) {
    Sampler *s = xcalloc(1, sizeof *s);
    s->o = *o;
    s->vocab = vocab;
    s->rng = o->seed ? o->seed : 0x2545F4914F6CDD1Dull;
    s->order = xmalloc(sizeof *s->order * (size_t)(vocab ? vocab : 1));
    s->prob = xmalloc(sizeof *s->prob * (size_t)(vocab ? vocab : 1));
    return s;
}

void sampler_free(Sampler *s) {
    if (!s) return;
    free(s->order);
    free(s->prob);
    free(s);
}

int sampler_is_greedy(const Sampler *s) { return !s || !(s->o.temperature > 0); }

int sampler_argmax(const float *logits, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (isfinite(logits[i]) && (best < 0 || logits[i] > logits[best])) best = i;
    if (best >= 0) return best;
    /* nothing finite: +inf wins, then the first index */
    for (int i = 0; i < n; i++)
        if (isinf(logits[i]) && logits[i] > 0) return i;
    return 0;
}

static double uniform(Sampler *s) {
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

static int by_prob_desc(const void *a, const void *b, void *ctx) {
    const double *prob = ctx;
    int x = *(const int *)a, y = *(const int *)b;
    if (prob[x] != prob[y]) return prob[x] > prob[y] ? -1 : 1;
    return x - y;
}

int sampler_pick(Sampler *s, const float *logits) {
    if (sampler_is_greedy(s)) return sampler_argmax(logits, s->vocab);
    int n = 0, best = sampler_argmax(logits, s->vocab);
    if (!isfinite(logits[best])) return best;
    double mx = logits[best] / s->o.temperature, sum = 0;
    for (int i = 0; i < s->vocab; i++) {
        s->prob[i] = isfinite(logits[i]) ? exp(logits[i] / s->o.temperature - mx) : 0.0;
        /* tokens 1e-10 times less likely than the best cannot matter: they are not sorted */
        if (s->prob[i] >= 1e-10) s->order[n++] = i;
        sum += s->prob[i];
    }
    for (int i = 0; i < n; i++) s->prob[s->order[i]] /= sum;
    qsort_r(s->order, (size_t)n, sizeof *s->order, by_prob_desc, s->prob);
    if (s->o.top_k > 0 && s->o.top_k < n) n = s->o.top_k;
    if (s->o.top_p > 0 && s->o.top_p < 1) {
        double acc = 0;
        int keep = 0;
        while (keep < n) {
            acc += s->prob[s->order[keep++]];
            if (acc >= s->o.top_p) break;
        }
        n = keep;
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += s->prob[s->order[i]];
    double u = uniform(s) * total, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += s->prob[s->order[i]];
        if (u < acc) return s->order[i];
    }
    return s->order[n - 1];
}
