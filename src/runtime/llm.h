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
 * functions `infer` and `prefill` (docs/parts.md), for Gemma 3 with a context beyond its sliding
 * window W also `infer_rotate` and `prefill_rotate` (in the same packages, or with split_rotate
 * in the `pf` / _rot packages), the LM head. One set of states (one KV cache; Gemma 3: its local
 * and global caches) is created from chunk 1's declaration and passed to every chunk (chat.py's
 * create_unified_state).
 *
 * Function selection (chat.py's, W = infinity without rotate functions):
 *   a batch at batch_pos    prefill when batch_pos + B <= W, prefill_rotate when batch_pos >= W;
 *                           a batch straddling W (chat.py would give it to prefill, which
 *                           cannot write past the window) runs token by token
 *   a token at pos          infer when pos < W, infer_rotate when pos >= W
 * The rotate functions shift the local cache by what they write, so a position must not be run
 * twice once the window rotates: chat.py's loop runs the last prompt token again (llm_step at
 * n - 1) for its logits, which in rotate mode would store that token twice and drop the oldest.
 * So when n - 1 >= W llm_prefill leaves the last prompt token pending, and the llm_step at
 * n - 1 runs it once (an llm_step at any other position runs it first). Rotate steps must be
 * consecutive (pos = the next position to write); a fill-mode step after the window rotated is
 * refused (prefill again from 0 instead: a prefill from position 0 on the same states is
 * exact, as chat_full.py's context shift does).
 *
 * llm_prefill: full batches of B tokens through embeddings (1, B) and every chunk's prefill
 * function (position_ids batch_pos.., causal_mask rows batch_pos.., current_pos = batch_pos);
 * the remaining tokens one at a time through infer / infer_rotate. Without
 * prefill_dynamic_slice in meta.yaml (or without a `prefill` function) every token goes through
 * the infer functions, as chat.py does. Prefill computes no logits: chat.py runs the last prompt
 * token again through `infer` (llm_step at position n - 1) to get them.
 *
 * llm_step: embeddings (1, 1) -> every chunk's infer function (position_ids = current_pos = pos,
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

/* The chunk functions, as counted in LlmTimes.runs. */
typedef enum LlmFn { LLM_INFER = 0, LLM_PREFILL, LLM_INFER_ROTATE, LLM_PREFILL_ROTATE, LLM_FN_COUNT } LlmFn;
/* "infer", "prefill", "infer_rotate", "prefill_rotate" */
const char *llm_fn_name(LlmFn f);

/* Time spent so far (reset with llm_reset_times). */
typedef struct LlmTimes {
    double prefill_s;           /* llm_prefill */
    long prefill_tokens;
    double step_s;              /* llm_step */
    long steps;
    long runs[LLM_FN_COUNT];    /* runs of each function through all chunks (a batch or a token) */
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
/* The sliding window W from which the rotate functions run; 0 without rotate functions. */
int llm_rotate_window(const Llm *m);

/* Zeroes the KV state (a new conversation). */
void llm_reset(Llm *m);
/* Fills the KV cache for tokens[0..n) at positions 0..n-1 (n <= context), starting over at
 * position 0 on the current states (the last token may stay pending, see above). */
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
