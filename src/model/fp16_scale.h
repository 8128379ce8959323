/* fp16_scale.h - residual-stream scaling that keeps Gemma 3 inside the fp16 range (--fp16-scale).
 *
 * Gemma 3 adds the output of a (1 + w)-gain RMSNorm to the residual stream after attention and
 * after the MLP (its "sandwich" norms, arch.h). With
 *     embed_tokens             E  ->  alpha * E
 *     post_attention_layernorm w  ->  alpha * (1 + w) - 1      (every layer)
 *     post_feedforward_layernorm w -> alpha * (1 + w) - 1      (every layer)
 * the embeddings and every residual increment are multiplied by alpha, hence so is the whole
 * residual stream. Everything that reads the residual stream starts with an RMSNorm (input and
 * pre-feedforward norms, the final norm), which does not see the scale (up to its eps, ~1e-12
 * relative for residuals of order 1e3 and more), so the logits are unchanged while the residual
 * peaks shrink by alpha. The LM head keeps the unscaled embedding table even when it is tied.
 * Llama and Qwen have no norm after the branches, so this weight change does not exist for them:
 * fp16_scale_check refuses them.
 *
 * alpha = FP16_SCALE_TARGET / residual peak (float32) puts the peak at 50000, leaving headroom
 * below fp16's 65504; model/preflight.h measures the peak ("--fp16-scale auto").
 *
 * Apply the scaling to float32 weights, before converting them to fp16, so that each scaled
 * weight is rounded once. Return convention: 0, or -1 with e->msg set.
 */
#ifndef ANEMLL_MODEL_FP16_SCALE_H
#define ANEMLL_MODEL_FP16_SCALE_H

#include <stddef.h>

#include "common/err.h"
#include "model/arch.h"

#define FP16_SCALE_TARGET 50000.0f

/* alpha must be a finite number in (0, 1] and the architecture must have sandwich norms
 * (Gemma 3). The message names --fp16-scale, the value or model_type, and what to do instead. */
int fp16_scale_check(const Arch *a, double alpha, Err *e);

/* Parses an --fp16-scale value: "auto" (*is_auto = 1, *alpha untouched) or a number in (0, 1]. */
int fp16_scale_parse(const char *text, double *alpha, int *is_auto, Err *e);

/* 1 for the layer weights the scaling changes (W_POST_ATTN_NORM, W_POST_MLP_NORM), else 0. */
int fp16_scale_changes_layer_weight(ArchWeight w);

/* The input embedding table (vocab, hidden): w *= alpha. Not the LM head, even when tied. */
void fp16_scale_embeddings(float *w, size_t n, float alpha);
/* A post-attention / post-feedforward norm weight (hidden): w = alpha * (1 + w) - 1. */
void fp16_scale_norm_gain(float *w, size_t n, float alpha);

#endif
