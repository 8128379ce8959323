/* preflight.h - the fp16 preflight: does a checkpoint survive fp16 (the Neural Engine's precision),
 * and if not, what fixes it. `anemll preflight` and `convert --fp16-scale auto` are built on it.
 *
 * preflight_run streams the checkpoint for weight statistics, then runs the reference forward
 * pass (reference.h) greedily on a prompt several times, loading the model anew for each
 * precision (peak memory: one float32 copy of the text model, 4 bytes per parameter):
 *   fp32          float32: the baseline every other run is compared with
 *   fp16          fp16 weights, every op output rounded to fp16 (overflow becomes inf/NaN)
 *   fp16_to_fp32  fp16 weights computed in float32
 *   bf16          bfloat16 weights and op outputs
 *   fp16_scaled   fp16 with Gemma 3 residual scaling by the recommended alpha (fp16_scale.h);
 *                 only when alpha < 1, the model is a Gemma 3 and no scale was given
 *   clamp sweep   fp16 with the residual clamped to +-65000, 60000, ..., 20000 after every add
 *
 * Definitions (the report repeats them under "definitions"):
 *   greedy tokens  argmax after the prompt, then after each generated token: max_tokens ids,
 *                  never stopping at an end-of-sequence id
 *   a run works    no op output of the run held inf or NaN (so every logit is finite)
 *   match rate     fraction of the max_tokens positions where the run's greedy token equals the
 *                  float32 run's token at the same position
 *   residual peak  largest |x| of the float32 run's residual stream (embeddings, after every
 *                  attention add and MLP add), over the prompt and the generated tokens
 *   recommended alpha   min(1, 50000 / residual peak): 1 means no scaling is needed
 *   compatible     the fp16 run works and its match rate is 1 (every greedy token as float32's)
 *   score          1.0 compatible; 0.7 fp16 weights work in float32 and a clamp value or the
 *                  recommended scaling gives a working fp16 run matching more than half of the
 *                  tokens; 0.5 fp16 weights work in float32; 0.0 otherwise
 * A clamp value at or above the unclamped fp16 run's (finite) residual peak cannot change a
 * value, so its entry is the unclamped run's result (PreflightClamp.reused) without a rerun.
 *
 * Ownership: preflight_run returns a Preflight freed with preflight_free; it copies what it
 * needs from the options. Return convention: 0, or -1 with e->msg set.
 */
#ifndef ANEMLL_MODEL_PREFLIGHT_H
#define ANEMLL_MODEL_PREFLIGHT_H

#include <stdint.h>
#include <cjson/cJSON.h>

#include "common/err.h"
#include "model/arch.h"
#include "model/fp16_scale.h"
#include "model/reference.h"

#define PREFLIGHT_DEFAULT_PROMPT "Explain quantum computing in simple terms."
#define PREFLIGHT_DEFAULT_MAX_TOKENS 30
#define PREFLIGHT_MAX_TOKENS_LIMIT 4096
#define PREFLIGHT_N_CLAMPS 10         /* 65000 down to 20000 in steps of 5000 */
#define PREFLIGHT_CLAMP_FIRST 65000.0f
#define PREFLIGHT_CLAMP_STEP 5000.0f
#define PREFLIGHT_CLAMP_GOOD_MATCH 0.5 /* a clamp "helps" above this match rate (score 0.7) */

typedef struct PreflightOptions {
    const int *prompt;          /* [n_prompt] token ids (see preflight_fallback_prompt) */
    int n_prompt;
    const char *prompt_text;    /* the text they encode, for the report; NULL if given as ids */
    int max_tokens;             /* greedy tokens per run, 1..PREFLIGHT_MAX_TOKENS_LIMIT */
    int sweep;                  /* run the clamp sweep */
    double fp16_scale;          /* 0: the checkpoint as it is; alpha in (0, 1]: every run uses
                                   the scaled weights (Gemma 3 only), as `convert --fp16-scale` */
} PreflightOptions;

typedef struct PreflightRun {
    int done;                   /* the run was made */
    int works;                  /* no inf/NaN anywhere */
    int *tokens;                /* [n_tokens] greedy ids */
    int n_tokens;
    double match_rate;          /* against the fp32 run (1 for the fp32 run itself) */
    int first_mismatch;         /* first position differing from fp32's tokens, -1 if none */
    float residual_peak;        /* max |residual| of this run (inf if not finite) */
    RefStats *stats;            /* the run's statistics (NULL for a reused clamp entry) */
} PreflightRun;

typedef struct PreflightClamp {
    float clamp;                /* +-value applied after every residual add */
    int reused;                 /* the clamp cannot engage: the unclamped fp16 run's result */
    long n_clamped;             /* residual values the clamp limited (0: "clamped": false) */
    PreflightRun run;
} PreflightClamp;

typedef struct Preflight {
    char *model_dir;
    Arch arch;
    char *prompt_text;          /* NULL if the prompt was given as ids */
    int *prompt, n_prompt, max_tokens;
    double fp16_scale;          /* the scale every run used (0 = none) */

    /* weights (the text model's tensors as stored in the checkpoint, before any scaling) */
    uint64_t total_params;      /* values in the text model's tensors (a tied LM head once) */
    int n_tensors;
    char (*tensor_names)[128];  /* [n_tensors] */
    float *tensor_max_abs;      /* [n_tensors] max |w| of each */
    float weight_max_abs;
    int weight_max_tensor;      /* index into tensor_names */
    int n_weights_exceed_fp16;  /* tensors holding a value beyond 65504 */

    PreflightRun fp32, fp16, fp16_to_fp32, bf16, fp16_scaled;
    double scaled_alpha;        /* the alpha of the fp16_scaled run */

    /* the float32 residual stream */
    float residual_peak;
    char residual_peak_at[96];  /* "embeddings", "layer 2 residual after attention", ... */
    int first_overflow_layer;   /* first layer whose float32 residual exceeds 65504, -1 if none */
    double recommended_alpha;   /* min(1, 50000 / residual_peak) */
    int scaling_supported;      /* the architecture allows --fp16-scale (Gemma 3) */

    int n_clamps;               /* 0 without the sweep */
    PreflightClamp clamps[PREFLIGHT_N_CLAMPS];

    int compatible;
    double score;
    char **issues, **recommendations;   /* sentences for people */
    int n_issues, n_recommendations;
} Preflight;

int preflight_run(Preflight **out, const char *model_dir, const PreflightOptions *opt, Err *e);
void preflight_free(Preflight *p);

/* Text for the "output" fields: a malloc'ed decoding of ids, or NULL (then the ids are written
 * as "id,id,..."). The library cannot tokenize (the tokenizer lives in a higher layer). */
typedef char *(*PreflightDecodeFn)(void *ctx, const int *ids, int n);

/* The report: ANEMLL's fp16_compatibility_check keys plus ours (see "definitions" in it).
 * Caller deletes the tree with cJSON_Delete. */
cJSON *preflight_report_json(const Preflight *p, PreflightDecodeFn decode, void *ctx);
/* Writes the report (pretty-printed JSON) to path atomically, creating missing folders. */
int preflight_write_report(const Preflight *p, const char *path, PreflightDecodeFn decode, void *ctx, Err *e);

/* ==== --fp16-scale auto ===================================================
 * Measures the float32 residual peak on the prompt (prefill + max_tokens greedy tokens, the same
 * measurement as the preflight's) and derives alpha = 50000 / peak, clamped to (0, 1]: a peak
 * below 50000 needs no scaling (alpha = 1, needs_scaling = 0). Fails before loading any weight
 * if the architecture cannot be scaled (fp16_scale_check), and if the float32 pass itself is
 * not finite. Loads the float32 model once (4 bytes per parameter) and frees it. */
typedef struct Fp16Alpha {
    double alpha;
    float peak;                 /* float32 residual peak */
    char peak_at[96];           /* where it occurs, e.g. "layer 2 residual after attention" */
    int needs_scaling;          /* peak > 50000, alpha < 1 */
} Fp16Alpha;
int preflight_measure_alpha(const char *model_dir, const int *prompt, int n_prompt, int max_tokens, Fp16Alpha *out,
                            Err *e);

/* A prompt for checkpoints without a tokenizer: the bos id (if any) and 15 ids spread over the
 * vocabulary. Writes at most max ids and returns the count. */
int preflight_fallback_prompt(const Arch *a, int *ids, int max);

#endif
