/* reference.h - the HF-exact reference forward pass: plain float32 loops plus BLAS.
 *
 * This is the oracle converted packages are checked against: for every architecture in
 * arch.h it computes what transformers 4.57 computes in float32 (eager attention), with a KV
 * cache. It favours readability over speed; weights are held as fp32 (about 4 bytes per
 * parameter: fine for the test models and the 1B class, not for 8B).
 *
 *     RefModel *m;
 *     if (ref_load(&m, "path/to/hf_dir", NULL, &e) < 0) ...
 *     float *logits = malloc(sizeof(float) * ref_arch(m)->vocab);
 *     ref_forward(m, prompt, n, 0, logits, 0, &e);        // prefill: logits of the last position
 *     ref_forward(m, &next, 1, n, logits, 0, &e);          // one decode step at position n
 *     ref_free(m);
 *
 * Precision modes (RefOptions.precision):
 *   REF_FP32  float32 everywhere, as transformers with torch_dtype=float32.
 *   REF_FP16  weights converted to fp16 and every op's output rounded to fp16 (matrix products
 *             accumulated in float32, then rounded; RMSNorm and softmax computed in float32 as
 *             transformers does), so overflow behaves like an fp16 model: values beyond 65504
 *             become inf and propagate. Used by the fp16 preflight.
 *   REF_BF16  the same with bfloat16 rounding (the range of float32, 8 mantissa bits): how the
 *             checkpoint behaves in its training dtype.
 * RefOptions.weights_fp16 rounds the weights to fp16 whatever the compute precision (with REF_FP32:
 * "fp16 weights run in float32"); RefOptions.fp16_scale applies Gemma 3's residual scaling
 * (model/fp16_scale.h) to the weights as they load, before any rounding, as the converter does.
 * Statistics (ref_set_stats): per-layer residual peaks, branch-output peaks, counts of values
 * beyond the fp16 range, and where the first overflow / non-finite value appeared.
 *
 * Ownership: ref_load returns a model the caller frees with ref_free; the Arch inside stays
 * owned by the model. RefStats from ref_stats_new are freed with ref_stats_free and must stay
 * alive while attached. Returns 0, or -1 with e->msg set.
 */
#ifndef ANEMLL_MODEL_REFERENCE_H
#define ANEMLL_MODEL_REFERENCE_H

#include "common/err.h"
#include "model/arch.h"
#include "model/fp16_scale.h"

typedef enum RefPrecision { REF_FP32 = 0, REF_FP16 = 1, REF_BF16 = 2 } RefPrecision;

typedef struct RefOptions {
    RefPrecision precision;
    float residual_clamp;   /* 0 = off; else the residual is clamped to +-value after each add */
    int weights_fp16;       /* round the weights to fp16 whatever `precision` computes in */
    float fp16_scale;       /* 0 or 1 = off; else alpha in (0, 1): Gemma 3 residual scaling
                               (ref_load fails for architectures it is not valid for) */
} RefOptions;

typedef struct RefLayerStats {
    float resid_after_attn; /* max |x| of the residual after the attention add */
    float resid_after_mlp;  /* max |x| of the residual after the MLP add (the layer output) */
    float attn_out;         /* max |x| of the attention branch added to the residual */
    float mlp_out;          /* max |x| of the MLP branch added to the residual */
    long n_overflow;        /* op-output values of this layer with |x| > 65504, inf or NaN */
} RefLayerStats;

/* One op output (a "site", named as in first_overflow) that held values beyond 65504. */
typedef struct RefSiteCount {
    char name[96];
    long count;                     /* values with |x| > 65504, inf or NaN, over all passes */
} RefSiteCount;

typedef struct RefStats {
    int n_layers;
    float embed_peak;               /* max |x| of the (scaled) embeddings */
    RefLayerStats *layers;          /* [n_layers] */
    char first_overflow[96];        /* first op output with |x| > 65504 ("" if none), e.g.
                                       "layer 1 residual after attention" */
    char first_nonfinite[96];       /* first op output holding inf/NaN ("" if none) */
    RefSiteCount *overflow_sites;   /* [n_overflow_sites], in order of first overflow */
    int n_overflow_sites, cap_overflow_sites;
    long n_clamped;                 /* residual values the residual clamp limited */
} RefStats;

typedef struct RefModel RefModel;

/* opt NULL = REF_FP32, no clamp. */
int ref_load(RefModel **out, const char *model_dir, const RefOptions *opt, Err *e);
void ref_free(RefModel *m);
const Arch *ref_arch(const RefModel *m);

/* Changes the residual clamp (0 = off) for later passes, e.g. between runs of a sweep. */
void ref_set_residual_clamp(RefModel *m, float clamp);

/* Forgets the KV cache. */
void ref_reset(RefModel *m);
/* Number of positions in the KV cache. */
int ref_n_cached(const RefModel *m);

/* Runs tokens[0..n) at positions pos0..pos0+n-1 with a causal mask over the cache, which
 * must already hold positions 0..pos0-1 (pos0 <= ref_n_cached; later entries are replaced).
 * logits: NULL, or [n][vocab] if all_logits, else [vocab] for the last position. */
int ref_forward(RefModel *m, const int *tokens, int n, int pos0, float *logits, int all_logits, Err *e);

/* Attach statistics (NULL detaches); forward passes accumulate into them. */
void ref_set_stats(RefModel *m, RefStats *stats);
RefStats *ref_stats_new(const RefModel *m);
void ref_stats_reset(RefStats *s);
void ref_stats_free(RefStats *s);

/* Index of the largest value (the first on ties, as torch.argmax). */
int ref_argmax(const float *v, int n);
/* The k largest values, descending (ties by lower index): ids[k], vals[k]. */
void ref_top_k(const float *v, int n, int k, int *ids, float *vals);

#endif
