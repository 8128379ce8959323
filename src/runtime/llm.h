/* llm.h - running a converted model the way ANEMLL's tests/chat.py drives it on a Mac.
 *
 *     Llm *m;
 *     if (llm_open(&m, "out/meta.yaml", NULL, &e) < 0) ...
 *     llm_reset(m);                                   // zero the KV cache
 *     llm_prefill(m, prompt, n, &e);                  // positions 0..n-1
 *     LlmStep s;
 *     llm_step(m, prompt[n - 1], n - 1, &s, &e);      // logits after the last prompt token
 *     ... next = sampler_pick(sampler, s.logits); llm_step(m, next, n, &s, &e); ...
 *     llm_close(m);
 *
 * Parts (paths from meta.yaml, llm_meta.h): the embeddings package, N FFN chunk packages with
 * functions `infer` and `prefill` (docs/parts.md), the LM head. One KV state is created from
 * chunk 1's declaration and passed to every chunk (chat.py's create_unified_state).
 *
 * llm_prefill: full batches of B tokens through embeddings (1, B) and every chunk's `prefill`
 * (position_ids batch_pos.., causal_mask rows batch_pos.., current_pos = batch_pos); the
 * remaining tokens one at a time through `infer`. Without prefill_dynamic_slice in meta.yaml (or
 * without a `prefill` function) every token goes through `infer`, as chat.py does. Prefill
 * computes no logits: chat.py runs the last prompt token again through `infer` (llm_step at
 * position n - 1) to get them.
 *
 * llm_step: embeddings (1, 1) -> every chunk's `infer` (position_ids = current_pos = pos,
 * causal_mask row pos) -> LM head. Logits mode concatenates logits1..logitsS (fp16 values as
 * float); argmax mode (argmax_idx / argmax_val outputs) gives only the token:
 * argmax_idx[best] + offset[best], best = the first largest argmax_val, offsets the prefix sums
 * of lm_head_chunk_sizes.
 *
 * The causal mask is the additive fp16 mask chat.py slices from its (ctx, ctx) matrix: 0 where
 * column <= row, -inf elsewhere; built row by row, never as a whole matrix.
 *
 * Return convention: 0, or -1 with e naming the part, function and input at fault.
 */
#ifndef ANEMLL_RUNTIME_LLM_H
#define ANEMLL_RUNTIME_LLM_H

#include "common/err.h"
#include "runtime/interp.h"
#include "runtime/llm_meta.h"

typedef struct Llm Llm;

/* What one llm_step produced. */
typedef struct LlmStep {
    const float *logits;        /* [vocab], valid until the next step; NULL in argmax mode */
    int token;                  /* the greedy token (first largest logit) */
    float value;                /* its logit */
} LlmStep;

/* Time spent so far (reset with llm_reset_times). */
typedef struct LlmTimes {
    double prefill_s;           /* llm_prefill */
    long prefill_tokens;
    double step_s;              /* llm_step */
    long steps;
} LlmTimes;

/* opt->threads > 0 also sets OpenBLAS's thread count (process-wide). */
int llm_open(Llm **out, const char *meta_path, const RtOptions *opt, Err *e);
void llm_close(Llm *m);

const LlmMeta *llm_meta(const Llm *m);
int llm_vocab(const Llm *m);          /* logits per step */
int llm_context(const Llm *m);        /* positions: the causal mask's width */
int llm_batch(const Llm *m);          /* prefill batch (1 when every token goes through infer) */
int llm_hidden(const Llm *m);
int llm_argmax_mode(const Llm *m);    /* the LM head returns argmax_idx / argmax_val only */
int llm_uses_prefill(const Llm *m);

/* Zeroes the KV state (a new conversation). */
void llm_reset(Llm *m);
/* Fills the KV cache for tokens[0..n) at positions 0..n-1 (n <= context). */
int llm_prefill(Llm *m, const int *tokens, int n, Err *e);
/* Runs token at position pos (0 <= pos < context) and the LM head. */
int llm_step(Llm *m, int token, int pos, LlmStep *out, Err *e);

const LlmTimes *llm_times(const Llm *m);
void llm_reset_times(Llm *m);
/* Memory figures summed over every part. */
void llm_memory(const Llm *m, RtMemoryStats *total);
/* The parts: 0 embeddings, 1 LM head, 2.. the chunks. */
int llm_n_parts(const Llm *m);
RtModel *llm_part(const Llm *m, int i);
/* The shared state (tests: one object for every chunk). */
RtStates *llm_states(Llm *m);

#endif
