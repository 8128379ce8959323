/* sampler.h - picking the next token from logits: greedy, or temperature with top-k / top-p.
 *
 *     Sampler *s = sampler_new(&(SamplerOptions){.temperature = 0.7f, .top_k = 40, .top_p = 0.9f,
 *                                                .seed = 1}, vocab);
 *     int id = sampler_pick(s, logits);
 *     sampler_free(s);
 *
 * temperature <= 0 is greedy: the first index of the largest logit (torch.argmax). Otherwise the
 * logits are divided by the temperature, softmaxed (in double), cut to the top_k most likely
 * tokens (0: no cut), then to the smallest set whose probability reaches top_p (1 or 0: no cut;
 * the most likely token is always kept), renormalized and sampled with a xorshift generator
 * seeded by seed: the same seed gives the same tokens. Non-finite logits never get picked unless
 * every logit is non-finite (then the greedy rule applies).
 */
#ifndef ANEMLL_RUNTIME_SAMPLER_H
#define ANEMLL_RUNTIME_SAMPLER_H

#include <stdint.h>

typedef struct SamplerOptions {
    float temperature;
    int top_k;
    float top_p;
    uint64_t seed;
} SamplerOptions;

typedef struct Sampler Sampler;

Sampler *sampler_new(const SamplerOptions *o, int vocab);
void sampler_free(Sampler *s);
int sampler_is_greedy(const Sampler *s);
int sampler_pick(Sampler *s, const float *logits);

/* The greedy rule on its own. */
int sampler_argmax(const float *logits, int n);

#endif
