/* verify.h - converted packages against the HF-exact reference forward pass.
 *
 * The reference (model/reference.h, float32) generates max_new tokens greedily from the prompt;
 * the packages run the same sequence in lockstep (teacher forcing: at every step both see the
 * same tokens at the same positions, context shifts included, see gen.h). At every generated
 * position the package's logits are compared with the reference's:
 *   top-1 agreement   fraction of positions where the package's greedy token is the reference's
 *                     (100% means a greedy run of the packages reproduces the reference exactly)
 *   KL divergence     KL(P_ref || P_pkg) of the softmaxed logits, in nats (mean and max)
 *   logit cosine      cosine similarity of the two logit vectors (mean and min)
 *   first divergence  the first position whose greedy tokens differ
 *   near ties         positions where the reference's two best logits are closer than fp16 can
 *                     tell apart (VERIFY_NEAR_TIE * max(1, |best logit|), about 4 fp16 steps);
 *                     agreement is also given over the other ("decisive") positions, where an
 *                     fp16 model has no excuse to pick another token
 * Argmax-mode LM heads return no logits: only agreement is measured.
 *
 * Pass/fail (VerifyThresholds, defaults VERIFY_DEFAULT_*): agreement >= min_agreement, mean
 * cosine >= min_cosine, mean KL <= max_kl, and every package logit finite. The defaults are
 * meant to reject broken conversions (a wrong layout or an fp16 overflow gives agreement near 0,
 * cosines below 0.5 and KL of several nats) while accepting LUT-quantized models, whose loss
 * is real but small: on the tiny random-weight test models LUT6 g8 gives cosine 0.96-0.995 and
 * KL < 0.02, and agreement as low as 65% because their near-uniform logits are full of near
 * ties. An fp16 conversion of such a model shows 100% agreement and cosine > 0.9999; check that
 * with --min-agreement 1 --min-cosine 0.9999.
 *
 * Return convention: 0, or -1 with e set. The report's arrays are owned by it
 * (verify_report_free).
 */
#ifndef ANEMLL_RUNTIME_VERIFY_H
#define ANEMLL_RUNTIME_VERIFY_H

#include <stddef.h>

#include "common/err.h"
#include "model/reference.h"
#include "runtime/llm.h"

#define VERIFY_DEFAULT_MIN_AGREEMENT 0.50
#define VERIFY_DEFAULT_MIN_COSINE 0.90
#define VERIFY_DEFAULT_MAX_KL 0.25

#define VERIFY_NEAR_TIE 0.004

/* The prompt of `anemll verify` without --prompt and of convert's step 8. */
#define VERIFY_DEFAULT_PROMPT "The quick brown fox jumps over the lazy dog. Once upon a time"

typedef struct VerifyThresholds {
    double min_agreement;
    double min_cosine;              /* on the mean */
    double max_kl;                  /* on the mean */
} VerifyThresholds;

typedef struct VerifyReport {
    int n_prompt;
    int n_positions;                /* generated (compared) positions */
    int has_logits;                 /* 0: argmax-mode LM head */
    int vocab_compared;             /* logits compared per position */
    int agree;
    double agreement;
    double kl_mean, kl_max;
    double cos_mean, cos_min;
    int n_decisive;                 /* positions that are not near ties */
    int agree_decisive;             /* agreement among them */
    int first_divergent;            /* index among the generated tokens, -1: none */
    int first_divergent_pos;        /* its index in the token sequence (prompt + generated), -1: none */
    double first_divergent_margin;  /* there, how much the reference preferred its token over the
                                       package's (reference logit difference): a near tie when small */
    int nonfinite;                  /* positions whose package logits hold inf or NaN */
    int n_shifts;                   /* context shifts during the run */
    int *ref_tokens;                /* [n_positions] the reference's greedy tokens */
    int *pkg_tokens;                /* [n_positions] the package's greedy tokens */
    double pkg_prefill_tps, pkg_decode_tps;
    long fn_runs[LLM_FN_COUNT];     /* runs of each chunk function (a batch or a token through all chunks) */
} VerifyReport;

void verify_default_thresholds(VerifyThresholds *t);

int verify_run(Llm *m, RefModel *ref, const int *prompt, int n_prompt, int max_new, VerifyReport *r, Err *e);
void verify_report_free(VerifyReport *r);

/* 1 if the report passes; otherwise 0 with the failed checks in why. */
int verify_passes(const VerifyReport *r, const VerifyThresholds *t, char *why, size_t why_size);

/* Prompt ids for text: encoded (special tokens added as Hugging Face's encode does) with the
 * tokenizer in tokenizer_dir, else the one in model_dir. */
int verify_prompt_ids(const char *tokenizer_dir, const char *model_dir, const char *text, int **ids, int *n, Err *e);

/* A copy of the checkpoint in model_dir, written to out_dir (config.json + one float32
 * model.safetensors), whose LUT-quantized tensors are replaced by the packages' dequantized
 * values: a reference loaded from it has exactly the packages' weights, so verify against it
 * measures the conversion alone, without the quantization loss. Package tensors are matched by
 * name (the checkpoint name with '.' -> '_'; the LM head splits lm_head_split_{i}_weight are
 * stacked into lm_head.weight (language_model.lm_head.weight for the gemma3 wrapper), and a tied
 * model is written untied when its LM head differs from its embeddings) and must be close to the
 * original (SNR > 10 dB) to be used. Gemma's embedding table is stored scaled (embed_scale, the
 * --fp16-scale alpha), so a LUT on it (--lut1) is not substituted. *n_replaced
 * counts the tensors replaced. */
int verify_dequantized_checkpoint(const Llm *m, const char *model_dir, const char *out_dir, int *n_replaced, Err *e);

/* Convert's step 8: verify the packages of meta_path against the checkpoint in model_dir on
 * VERIFY_DEFAULT_PROMPT (token ids 1..8 when there is no tokenizer) for max_new tokens.
 * Returns 0 when it ran (report in *r), 1 when it was skipped because the float32 reference
 * would not fit in the available memory (reason in skip_reason), -1 on error. */
int verify_quick(const char *meta_path, const char *model_dir, int max_new, VerifyReport *r, char *skip_reason,
                 size_t skip_size, Err *e);

/* The report as text (the lines `anemll verify` and convert step 8 print). Caller frees. */
char *verify_format(const VerifyReport *r, const VerifyThresholds *t);
/* The report as JSON (one object). Caller frees. */
char *verify_format_json(const VerifyReport *r, const VerifyThresholds *t);

#endif
