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
 * Argmax-mode LM heads return no logits: only agreement is measured.
 *
 * Pass/fail (VerifyThresholds, defaults VERIFY_DEFAULT_*): agreement >= min_agreement, mean
 * cosine >= min_cosine, mean KL <= max_kl, and every package logit finite. The defaults accept
 * 4-bit LUT models (which lose a little) and reject broken conversions (wrong layouts or
 * overflowing fp16 give agreement near 0 and cosines far below 0.9).
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

#define VERIFY_DEFAULT_MIN_AGREEMENT 0.80
#define VERIFY_DEFAULT_MIN_COSINE 0.98
#define VERIFY_DEFAULT_MAX_KL 0.25

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
    int first_divergent;            /* index among the generated tokens, -1: none */
    int first_divergent_pos;        /* its index in the token sequence (prompt + generated), -1: none */
    double first_divergent_margin;  /* there, how much the reference preferred its token over the
                                       package's (reference logit difference): a near tie when small */
    int nonfinite;                  /* positions whose package logits hold inf or NaN */
    int n_shifts;                   /* context shifts during the run */
    int *ref_tokens;                /* [n_positions] the reference's greedy tokens */
    int *pkg_tokens;                /* [n_positions] the package's greedy tokens */
    double pkg_prefill_tps, pkg_decode_tps;
} VerifyReport;

void verify_default_thresholds(VerifyThresholds *t);

int verify_run(Llm *m, RefModel *ref, const int *prompt, int n_prompt, int max_new, VerifyReport *r, Err *e);
void verify_report_free(VerifyReport *r);

/* 1 if the report passes; otherwise 0 with the failed checks in why. */
int verify_passes(const VerifyReport *r, const VerifyThresholds *t, char *why, size_t why_size);

/* The report as text (the lines `anemll verify` and convert step 8 print). Caller frees. */
char *verify_format(const VerifyReport *r, const VerifyThresholds *t);
/* The report as JSON (one object). Caller frees. */
char *verify_format_json(const VerifyReport *r, const VerifyThresholds *t);

#endif
