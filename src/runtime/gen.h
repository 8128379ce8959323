/* gen.h - the generation loop shared by chat, generate and verify, over any source of logits
 * (the converted packages through llm.h, or the reference forward pass).
 *
 * Loop (chat.py / chat_full.py):
 *     prefill(prompt[0..n)); pos = n
 *     repeat: if pos >= context - 2: shift (below), or stop when shifting is off
 *             step(seq[pos - 1], pos - 1)  ->  logits of the next token
 *             next = forced[i] if teacher-forcing, else the sampler's pick (greedy by default)
 *             report it; seq[pos++] = next; stop on a stop token or after max_new tokens
 * Context shift (chat_full.py): keep the last new_size = min(max(1, ctx/B - 2) * B, ctx - B)
 * tokens (ctx/2 when that is < 1), move them to the front, prefill them again and continue at
 * pos = new_size. (chat_full.py prefills over the old cache; the converted-model source zeroes
 * it first, which changes nothing: positions past the prefill are masked.)
 *
 * Return convention: 0, or -1 with e set (a callback's nonzero return stops without error).
 */
#ifndef ANEMLL_RUNTIME_GEN_H
#define ANEMLL_RUNTIME_GEN_H

#include "common/err.h"
#include "runtime/llm.h"
#include "runtime/sampler.h"

/* Where logits come from. step fills out (logits may be NULL when only the token is known). */
typedef struct LmSource {
    void *ctx;
    int vocab, context, batch;
    int (*prefill)(void *ctx, const int *tokens, int n, Err *e);
    int (*step)(void *ctx, int token, int pos, LlmStep *out, Err *e);
} LmSource;

/* The converted model: prefill = llm_reset + llm_prefill, step = llm_step. */
LmSource gen_llm_source(Llm *m);

typedef struct GenOptions {
    int max_new;                    /* tokens to produce */
    Sampler *sampler;               /* NULL: greedy */
    const int *forced;              /* teacher forcing: token i is forced[i] (n_forced >= max_new) */
    int n_forced;
    int (*is_stop)(void *ctx, int token);   /* NULL: never stop early */
    void *stop_ctx;
    int no_shift;                   /* stop at the end of the context instead of shifting */
} GenOptions;

/* Called for every produced token: index i, the token, and the step whose logits predicted it.
 * Nonzero stops the loop. */
typedef int (*GenTokenFn)(void *ctx, int i, int token, const LlmStep *step);

typedef struct GenResult {
    int n_generated;
    int n_shifts;
    int stopped_by_token;           /* the last token was a stop token */
    int context_full;               /* stopped at the end of the context (no_shift) */
} GenResult;

int gen_run(const LmSource *src, const int *prompt, int n_prompt, const GenOptions *o, GenTokenFn fn, void *ctx,
            GenResult *res, Err *e);

/* The new length after a context shift (see above). */
int gen_shift_size(int context, int batch);

#endif
