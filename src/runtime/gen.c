/* gen.c - the generation loop (contract in gen.h). */
#include "runtime/gen.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static int llm_src_prefill(void *ctx, const int *tokens, int n, Err *e) {
    Llm *m = ctx;
    llm_reset(m);
    return llm_prefill(m, tokens, n, e);
}

static int llm_src_step(void *ctx, int token, int pos, LlmStep *out, Err *e) { return llm_step(ctx, token, pos, out, e); }

LmSource gen_llm_source(Llm *m) {
    LmSource s = {m, llm_vocab(m), llm_context(m), llm_batch(m), llm_src_prefill, llm_src_step};
    return s;
}

int gen_shift_size(int context, int batch) {
    if (batch < 1) batch = 1;
    int keep = context / batch - 2;
    if (keep < 1) keep = 1;
    int n = keep * batch;
    if (n > context - batch) n = context - batch;
    if (n < 1) n = context / 2;
    return n;
}

int gen_run(const LmSource *src, const int *prompt, int n_prompt, const GenOptions *o, GenTokenFn fn, void *ctx,
            GenResult *res, Err *e) {
    memset(res, 0, sizeof *res);
    int C = src->context;
    if (n_prompt < 1) return err_set(e, "the prompt is empty");
    if (n_prompt > C - 2)
        return err_set(e, "the prompt has %d tokens; the context holds %d (at most %d for a prompt): shorten it", n_prompt, C,
                       C - 2);
    if (o->forced && o->n_forced < o->max_new) return err_set(e, "teacher forcing needs %d tokens, got %d", o->max_new, o->n_forced);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= src->vocab)
            return err_set(e, "prompt token %d (id %d) is outside the vocabulary of %d", i, prompt[i], src->vocab);
    int *seq = xmalloc(sizeof *seq * (size_t)(C + 1));
    memcpy(seq, prompt, sizeof *seq * (size_t)n_prompt);
    int pos = n_prompt, rc = src->prefill(src->ctx, seq, pos, e);
    for (int i = 0; rc == 0 && i < o->max_new; i++) {
        if (pos >= C - 2) {
            if (o->no_shift) {
                res->context_full = 1;
                break;
            }
            int keep = gen_shift_size(C, src->batch);
            memmove(seq, seq + pos - keep, sizeof *seq * (size_t)keep);
            pos = keep;
            res->n_shifts++;
            if ((rc = src->prefill(src->ctx, seq, pos, e)) < 0) break;
        }
        LlmStep st;
        if ((rc = src->step(src->ctx, seq[pos - 1], pos - 1, &st, e)) < 0) break;
        int next = o->forced ? o->forced[i] : (st.logits && o->sampler ? sampler_pick(o->sampler, st.logits) : st.token);
        seq[pos++] = next;
        res->n_generated++;
        if (fn && fn(ctx, i, next, &st)) break;
        if (o->is_stop && o->is_stop(o->stop_ctx, next)) {
            res->stopped_by_token = 1;
            break;
        }
    }
    free(seq);
    return rc;
}
