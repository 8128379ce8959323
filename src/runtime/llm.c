/* llm.c - the chat.py host loop over the interpreter (contract in llm.h).
 *
 * Sections: opening and checking the parts, the LM head, running (embeddings, chunks, mask),
 * prefill and step.
 */
#include "runtime/llm.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "common/util.h"
#include "runtime/sampler.h"

typedef struct Chunk {
    RtModel *model;
    RtModel *rot_model;         /* split_rotate: the _rot package */
    RtFunction *fn[LLM_FN_COUNT];   /* infer; prefill, rotate functions: NULL when absent */
} Chunk;

struct Llm {
    LlmMeta meta;
    RtModel *emb, *lm;
    RtFunction *emb_fn, *lm_fn;
    int n_chunks;
    Chunk *chunks;
    RtStates *states;
    int hidden, mask_len, batch, use_prefill;
    int window;                 /* rotate functions run from this position; INT_MAX: none */
    int next_pos;               /* the next position the cache expects (positions below are written) */
    int pending_token, pending_pos;   /* the last prompt token, not run yet (pending_pos -1: none) */
    /* LM head */
    int argmax_mode;
    int n_splits;
    char **split_names;         /* logits1.. in order */
    int *split_sizes;
    int *offsets;               /* argmax mode: first token id of each split */
    int vocab;
    float *logits;              /* [vocab] */
    /* scratch */
    int32_t *ids, *pos_ids;
    float *mask;                /* [batch * mask_len] */
    LlmTimes times;
};

/* ==== Opening ==== */

static int open_part(const char *path, const RtOptions *opt, RtModel **out, Err *e) {
    if (rt_open(out, path, opt, e) < 0) return -1;
    return 0;
}

/* The input's dims, or an error naming the part. */
static const MilValue *need_input(const RtFunction *f, const char *part, const char *name, MilDType dt, int rank,
                                  Err *e) {
    const MilValue *v = rt_find_input(f, name);
    if (!v || v->type.kind != MIL_TENSOR || v->type.dtype != dt || v->type.rank != rank) {
        err_set(e, "%s: function '%s' needs an input '%s' (%s, rank %d) as docs/parts.md describes", part,
                rt_function_name(f), name, mil_dtype_name(dt), rank);
        return NULL;
    }
    return v;
}

/* Checks a chunk function's inputs: hidden_states (1, T, H), position_ids (T,), causal_mask
 * (1, 1, T, ctx), current_pos (1,), and nothing else besides states. */
static int check_chunk_fn(Llm *m, const RtFunction *f, const char *part, int T, Err *e) {
    const MilValue *hs = need_input(f, part, "hidden_states", MIL_FP16, 3, e);
    const MilValue *pi = hs ? need_input(f, part, "position_ids", MIL_INT32, 1, e) : NULL;
    const MilValue *cm = pi ? need_input(f, part, "causal_mask", MIL_FP16, 4, e) : NULL;
    const MilValue *cp = cm ? need_input(f, part, "current_pos", MIL_INT32, 1, e) : NULL;
    if (!cp) return -1;
    if (hs->type.dims[1] != T || hs->type.dims[2] != m->hidden || pi->type.dims[0] != T || cm->type.dims[2] != T ||
        cm->type.dims[3] != m->mask_len)
        return err_set(e, "%s: function '%s' has hidden_states (1, %lld, %lld) and causal_mask (1, 1, %lld, %lld); "
                          "expected (1, %d, %d) and (1, 1, %d, %d) (context %d, batch %d in meta.yaml)",
                       part, rt_function_name(f), (long long)hs->type.dims[1], (long long)hs->type.dims[2],
                       (long long)cm->type.dims[2], (long long)cm->type.dims[3], T, m->hidden, T, m->mask_len,
                       m->mask_len, T);
    const MilFunction *mf = rt_function_mil(f);
    for (int i = 0; i < mf->n_inputs; i++) {
        const MilValue *v = mf->inputs[i];
        if (v->type.kind == MIL_STATE) continue;
        if (strcmp(v->name, "hidden_states") && strcmp(v->name, "position_ids") && strcmp(v->name, "causal_mask") &&
            strcmp(v->name, "current_pos"))
            return err_set(e, "%s: function '%s' has an input '%s' the CPU runtime does not provide (%s)", part,
                           rt_function_name(f), v->name,
                           !strcmp(v->name, "update_mask") ? "Gemma 3 --static-prefill-slice models are not supported"
                                                            : "not in docs/parts.md");
    }
    return 0;
}

const char *llm_fn_name(LlmFn f) {
    static const char *names[LLM_FN_COUNT] = {"infer", "prefill", "infer_rotate", "prefill_rotate"};
    return f >= 0 && f < LLM_FN_COUNT ? names[f] : "?";
}

/* Finds the chunk's functions: infer (or the default function) and prefill in its package, the
 * rotate functions there or in its _rot package. */
static int open_chunk_functions(Llm *m, Chunk *c, int i, const RtOptions *opt, Err *e) {
    const char *path = m->meta.chunks[i];
    if (open_part(path, opt, &c->model, e) < 0) return -1;
    c->fn[LLM_INFER] = rt_function(c->model, "infer");
    if (!c->fn[LLM_INFER]) c->fn[LLM_INFER] = rt_function(c->model, NULL);
    c->fn[LLM_PREFILL] = rt_function(c->model, "prefill");
    RtModel *rot = c->model;
    if (m->meta.split_rotate) {
        if (open_part(m->meta.rot_chunks[i], opt, &c->rot_model, e) < 0) return -1;
        rot = c->rot_model;
    }
    c->fn[LLM_INFER_ROTATE] = rt_function(rot, "infer_rotate");
    c->fn[LLM_PREFILL_ROTATE] = rt_function(rot, "prefill_rotate");
    if (m->meta.split_rotate && !c->fn[LLM_INFER_ROTATE])
        return err_set(e, "%s: meta.yaml says split_rotate but this package has no infer_rotate function",
                       m->meta.rot_chunks[i]);
    return 0;
}

/* The first chunk's shapes: hidden size, mask width, prefill batch. */
static int read_shapes(Llm *m, const Chunk *c, const char *path, Err *e) {
    const MilValue *hs = rt_find_input(c->fn[LLM_INFER], "hidden_states");
    const MilValue *cm = rt_find_input(c->fn[LLM_INFER], "causal_mask");
    if (!hs || !cm || hs->type.rank != 3 || cm->type.rank != 4)
        return err_set(e, "%s: function '%s' lacks hidden_states / causal_mask inputs (is this an FFN chunk?)", path,
                       rt_function_name(c->fn[LLM_INFER]));
    m->hidden = (int)hs->type.dims[2];
    m->mask_len = (int)cm->type.dims[3];
    if (c->fn[LLM_PREFILL]) {
        const MilValue *ph = rt_find_input(c->fn[LLM_PREFILL], "hidden_states");
        m->batch = ph && ph->type.rank == 3 ? (int)ph->type.dims[1] : 0;
    }
    return 0;
}

/* Rotation: on when the chunks have rotate functions and the context exceeds the window
 * (chat.py loads them only then); the window is meta.yaml's sliding_window, which must be the
 * length of the local cache the rotate functions shift. */
static int setup_rotation(Llm *m, Err *e) {
    m->window = INT_MAX;
    const Chunk *c = &m->chunks[0];
    const MilValue *local = rt_find_input(c->fn[LLM_INFER], "model_model_kv_cache_local");
    int sw = m->meta.sliding_window;
    if (!sw && local) sw = (int)local->type.dims[2];
    int has = c->fn[LLM_INFER_ROTATE] != NULL;
    if (!has || !sw || m->meta.context_length <= sw) {
        if (local && sw && m->mask_len > local->type.dims[2])
            return err_set(e, "%s: the context (%d) exceeds the local cache (%lld positions) but the chunks have no "
                              "infer_rotate function; convert again (Gemma 3 with --context beyond the window writes "
                              "the rotate functions)",
                           m->meta.path, m->mask_len, (long long)local->type.dims[2]);
        return 0;
    }
    if (!local || local->type.dims[2] != sw)
        return err_set(e, "%s: sliding_window is %d but the chunks' model_model_kv_cache_local holds %lld positions",
                       m->meta.path, sw, local ? (long long)local->type.dims[2] : 0LL);
    if (m->batch > 1 && !c->fn[LLM_PREFILL_ROTATE])
        return err_set(e, "%s: the chunks have infer_rotate but no prefill_rotate", m->meta.chunks[0]);
    m->window = sw;
    return 0;
}

static int open_chunks(Llm *m, const RtOptions *opt, Err *e) {
    m->n_chunks = m->meta.num_chunks;
    m->chunks = xcalloc((size_t)m->n_chunks, sizeof *m->chunks);
    for (int i = 0; i < m->n_chunks; i++) {
        Chunk *c = &m->chunks[i];
        const char *path = m->meta.chunks[i];
        if (open_chunk_functions(m, c, i, opt, e) < 0) return -1;
        if (i == 0 && read_shapes(m, c, path, e) < 0) return -1;
        for (int f = 0; f < LLM_FN_COUNT; f++) {
            if (!!c->fn[f] != !!m->chunks[0].fn[f])
                return err_set(e, "%s: chunk %d %s a %s function but chunk 1 %s", path, i + 1, c->fn[f] ? "has" : "lacks",
                               llm_fn_name((LlmFn)f), m->chunks[0].fn[f] ? "has one" : "does not");
            int T = f == LLM_PREFILL || f == LLM_PREFILL_ROTATE ? m->batch : 1;
            if (c->fn[f] && check_chunk_fn(m, c->fn[f], path, T, e) < 0) return -1;
        }
    }
    if (m->mask_len != m->meta.context_length && m->mask_len != m->meta.attention_size)
        return err_set(e, "%s: context_length is %d but the chunks' causal_mask covers %d positions", m->meta.path,
                       m->meta.context_length, m->mask_len);
    if (m->chunks[0].fn[LLM_PREFILL] && m->batch != m->meta.batch_size)
        return err_set(e, "%s: batch_size is %d but the chunks' prefill function takes %d tokens", m->meta.path,
                       m->meta.batch_size, m->batch);
    m->use_prefill = m->chunks[0].fn[LLM_PREFILL] && m->meta.prefill_dynamic_slice == 1;
    if (!m->use_prefill) m->batch = 1;
    return setup_rotation(m, e);
}

/* ==== LM head ==== */

static int split_number(const char *name) {
    if (strncmp(name, "logits", 6)) return -1;
    char *end;
    long v = strtol(name + 6, &end, 10);
    return *end || end == name + 6 || v < 1 || v > 1000 ? -1 : (int)v;
}

/* Split sizes for argmax offsets: meta.yaml, else the package metadata, else the vocab split
 * evenly (the first vocab % S splits one larger). */
static int argmax_offsets(Llm *m, Err *e) {
    int S = m->n_splits;
    int sizes[LLM_MAX_SPLITS];
    if (m->meta.n_chunk_sizes == S) {
        memcpy(sizes, m->meta.lm_head_chunk_sizes, sizeof(int) * (size_t)S);
    } else {
        const char *md = rt_metadata(m->lm, "com.anemll.lm_head_chunk_sizes");
        int n = 0;
        while (md && *md && n < LLM_MAX_SPLITS) {
            char *end;
            long v = strtol(md, &end, 10);
            if (end == md) break;
            sizes[n++] = (int)v;
            md = end + (*end == ',');
        }
        if (n != S) {
            int V = m->meta.vocab_size;
            if (V <= 0) return err_set(e, "%s: argmax LM head: lm_head_chunk_sizes or vocab_size is needed in meta.yaml", m->meta.path);
            for (int i = 0; i < S; i++) sizes[i] = V / S + (i < V % S);
        }
    }
    m->offsets = xcalloc((size_t)S + 1, sizeof(int));
    for (int i = 1; i <= S; i++) m->offsets[i] = m->offsets[i - 1] + sizes[i - 1];
    m->vocab = m->offsets[S];
    return 0;
}

static int open_lm_head(Llm *m, Err *e) {
    const MilFunction *mf = rt_function_mil(m->lm_fn);
    const char *part = m->meta.lm_head;
    const MilValue *hs = need_input(m->lm_fn, part, "hidden_states", MIL_FP16, 3, e);
    if (!hs) return -1;
    if (hs->type.dims[2] != m->hidden)
        return err_set(e, "%s: hidden_states has %lld values, the chunks produce %d", part, (long long)hs->type.dims[2], m->hidden);
    int has_idx = 0, has_val = 0;
    m->split_names = xcalloc((size_t)mf->n_outputs + 1, sizeof(char *));
    m->split_sizes = xcalloc((size_t)mf->n_outputs + 1, sizeof(int));
    for (int i = 0; i < mf->n_outputs; i++) {
        const MilValue *o = mf->outputs[i];
        if (!strcmp(o->name, "argmax_idx")) has_idx = 1, m->n_splits = (int)o->type.dims[0];
        else if (!strcmp(o->name, "argmax_val")) has_val = 1;
    }
    if (has_idx && has_val) {
        m->argmax_mode = 1;
        if (m->n_splits < 1 || m->n_splits > LLM_MAX_SPLITS) return err_set(e, "%s: argmax_idx has %d entries", part, m->n_splits);
        return argmax_offsets(m, e);
    }
    /* logits1..logitsS in numeric order */
    int n = 0;
    for (int k = 1; k <= mf->n_outputs; k++)
        for (int i = 0; i < mf->n_outputs; i++) {
            const MilValue *o = mf->outputs[i];
            if (split_number(o->name) != k) continue;
            int64_t sz = o->type.dims[o->type.rank - 1];
            if (sz < 1) return err_set(e, "%s: output %s has no fixed size", part, o->name);
            m->split_names[n] = xstrdup(o->name);
            m->split_sizes[n++] = (int)sz;
            m->vocab += (int)sz;
        }
    if (n == 0 || n != mf->n_outputs)
        return err_set(e, "%s: expected outputs logits1..logitsS or argmax_idx/argmax_val (docs/parts.md)", part);
    m->n_splits = n;
    if (m->meta.vocab_size > m->vocab) m->vocab = m->meta.vocab_size;   /* ANEMLL llama drops a remainder */
    m->logits = xmalloc(sizeof(float) * (size_t)m->vocab);
    return 0;
}

int llm_open(Llm **out, const char *meta_path, const RtOptions *opt, Err *e) {
    *out = NULL;
    Llm *m = xcalloc(1, sizeof *m);
    if (opt && opt->threads > 0) openblas_set_num_threads(opt->threads);
    int rc = llm_meta_load(&m->meta, meta_path, e);
    if (rc == 0) rc = open_part(m->meta.embeddings, opt, &m->emb, e);
    if (rc == 0) rc = open_part(m->meta.lm_head, opt, &m->lm, e);
    if (rc == 0) {
        m->emb_fn = rt_function(m->emb, NULL);
        m->lm_fn = rt_function(m->lm, NULL);
        if (!need_input(m->emb_fn, m->meta.embeddings, "input_ids", MIL_INT32, 2, e)) rc = -1;
    }
    if (rc == 0) rc = open_chunks(m, opt, e);
    if (rc == 0) rc = open_lm_head(m, e);
    if (rc == 0) {
        RtFunction *decl = m->chunks[0].fn[LLM_PREFILL] ? m->chunks[0].fn[LLM_PREFILL] : m->chunks[0].fn[LLM_INFER];
        m->states = rt_states_new(decl, e);
        if (!m->states) rc = -1;
    }
    if (rc < 0) {
        llm_close(m);
        return -1;
    }
    m->ids = xcalloc((size_t)m->batch + 1, sizeof(int32_t));
    m->pos_ids = xcalloc((size_t)m->batch + 1, sizeof(int32_t));
    m->mask = xmalloc(sizeof(float) * (size_t)m->batch * (size_t)m->mask_len);
    m->pending_pos = -1;
    *out = m;
    return 0;
}

void llm_close(Llm *m) {
    if (!m) return;
    for (int i = 0; i < m->n_chunks; i++) {
        rt_close(m->chunks[i].model);
        rt_close(m->chunks[i].rot_model);
    }
    free(m->chunks);
    rt_close(m->emb);
    rt_close(m->lm);
    rt_states_free(m->states);
    for (int i = 0; m->split_names && m->split_names[i]; i++) free(m->split_names[i]);   /* NULL-terminated */
    free(m->split_names);
    free(m->split_sizes);
    free(m->offsets);
    free(m->logits);
    free(m->ids);
    free(m->pos_ids);
    free(m->mask);
    llm_meta_free(&m->meta);
    free(m);
}

const LlmMeta *llm_meta(const Llm *m) { return &m->meta; }
int llm_vocab(const Llm *m) { return m->vocab; }
int llm_context(const Llm *m) { return m->mask_len; }
int llm_batch(const Llm *m) { return m->batch; }
int llm_hidden(const Llm *m) { return m->hidden; }
int llm_argmax_mode(const Llm *m) { return m->argmax_mode; }
int llm_uses_prefill(const Llm *m) { return m->use_prefill; }
int llm_rotate_window(const Llm *m) { return m->window == INT_MAX ? 0 : m->window; }
RtStates *llm_states(Llm *m) { return m->states; }
int llm_n_parts(const Llm *m) { return 2 + m->n_chunks; }
RtModel *llm_part(const Llm *m, int i) { return i == 0 ? m->emb : i == 1 ? m->lm : m->chunks[i - 2].model; }
const LlmTimes *llm_times(const Llm *m) { return &m->times; }
void llm_reset_times(Llm *m) { memset(&m->times, 0, sizeof m->times); }
void llm_reset(Llm *m) {
    rt_states_zero(m->states);
    m->next_pos = 0;
    m->pending_pos = -1;
}

void llm_memory(const Llm *m, RtMemoryStats *total) {
    memset(total, 0, sizeof *total);
    RtModel *parts[2] = {m->emb, m->lm};
    for (int i = 0; i < 2 + 2 * m->n_chunks; i++) {
        RtModel *p = i < 2 ? parts[i] : (i - 2) % 2 ? m->chunks[(i - 2) / 2].rot_model : m->chunks[(i - 2) / 2].model;
        if (!p) continue;
        RtMemoryStats s;
        rt_memory_stats(p, &s);
        total->fresh_allocs += s.fresh_allocs;
        total->pool_bytes += s.pool_bytes;
        total->const_bytes += s.const_bytes;
        total->shared_consts += s.shared_consts;
    }
}

/* ==== Running ==== */

/* Rows [pos, pos + T) of the additive causal mask. */
static void fill_mask(Llm *m, int pos, int T) {
    for (int r = 0; r < T; r++) {
        float *row = m->mask + (size_t)r * (size_t)m->mask_len;
        for (int j = 0; j < m->mask_len; j++) row[j] = j <= pos + r ? 0.0f : -INFINITY;
    }
}

static RtInput input_of(const char *name, MilDType dt, void *data, int rank, const int64_t *dims) {
    RtInput in;
    memset(&in, 0, sizeof in);
    in.name = name;
    in.t.dtype = dt;
    in.t.rank = rank;
    for (int i = 0; i < rank; i++) in.t.dims[i] = dims[i];
    in.t.data = data;
    return in;
}

/* Embeddings, then every chunk's function fn: T tokens at positions pos... Returns the last
 * chunk's output (valid until its next run), or NULL. */
static const RtTensor *run_chunks(Llm *m, const int *tokens, int pos, int T, LlmFn fn, Err *e) {
    for (int i = 0; i < T; i++) {
        m->ids[i] = tokens[i];
        m->pos_ids[i] = pos + i;
    }
    RtInput ids = input_of("input_ids", MIL_INT32, m->ids, 2, (int64_t[]){1, T});
    if (rt_run(m->emb_fn, 1, &ids, NULL, e) < 0) return NULL;
    const RtTensor *h = rt_output(m->emb_fn, "hidden_states");
    if (!h) {
        err_set(e, "%s: no output 'hidden_states'", m->meta.embeddings);
        return NULL;
    }
    fill_mask(m, pos, T);
    int32_t cur = pos;
    for (int c = 0; c < m->n_chunks; c++) {
        RtFunction *f = m->chunks[c].fn[fn];
        RtInput in[4] = {
            {"hidden_states", *h},
            input_of("position_ids", MIL_INT32, m->pos_ids, 1, (int64_t[]){T}),
            input_of("causal_mask", MIL_FP16, m->mask, 4, (int64_t[]){1, 1, T, m->mask_len}),
            input_of("current_pos", MIL_INT32, &cur, 1, (int64_t[]){1}),
        };
        if (rt_run(f, 4, in, m->states, e) < 0) return NULL;
        h = rt_output(f, "output_hidden_states");
        if (!h) {
            err_set(e, "%s: function '%s' has no output 'output_hidden_states'", m->meta.chunks[c], rt_function_name(f));
            return NULL;
        }
    }
    m->times.runs[fn]++;
    m->next_pos = pos + T;
    return h;
}

/* Checks that T tokens at pos can go through fn without breaking the local cache: a rotate
 * function continues exactly where the cache ends; a fill function needs a cache that has not
 * rotated and no gap before pos. */
static int check_order(const Llm *m, int pos, LlmFn fn, Err *e) {
    if (m->window == INT_MAX) return 0;
    if (fn == LLM_INFER_ROTATE || fn == LLM_PREFILL_ROTATE) {
        if (pos != m->next_pos)
            return err_set(e, "position %d: %s continues the sliding-window cache, which holds the positions before %d; "
                              "run the positions in order (or prefill again from 0)",
                           pos, llm_fn_name(fn), m->next_pos);
        return 0;
    }
    if (m->next_pos > m->window)
        return err_set(e, "position %d: the sliding-window cache has rotated past it (it holds positions up to %d); "
                          "prefill again from position 0",
                       pos, m->next_pos - 1);
    if (pos > m->next_pos)
        return err_set(e, "position %d: positions %d..%d were never run", pos, m->next_pos, pos - 1);
    return 0;
}

/* One token at pos through infer or infer_rotate. */
static const RtTensor *run_token(Llm *m, int token, int pos, Err *e) {
    LlmFn fn = pos >= m->window ? LLM_INFER_ROTATE : LLM_INFER;
    if (check_order(m, pos, fn, e) < 0) return NULL;
    return run_chunks(m, &token, pos, 1, fn, e);
}

/* A batch at batch_pos: prefill before the window, prefill_rotate from it, token by token when
 * it straddles it. */
static int run_batch(Llm *m, const int *tokens, int pos, Err *e) {
    int B = m->batch;
    if (pos < m->window && pos + B > m->window) {
        for (int i = 0; i < B; i++)
            if (!run_token(m, tokens[i], pos + i, e)) return -1;
        return 0;
    }
    LlmFn fn = pos >= m->window ? LLM_PREFILL_ROTATE : LLM_PREFILL;
    if (check_order(m, pos, fn, e) < 0) return -1;
    return run_chunks(m, tokens, pos, B, fn, e) ? 0 : -1;
}

int llm_prefill(Llm *m, const int *tokens, int n, Err *e) {
    if (n < 0 || n > m->mask_len) return err_set(e, "prefill of %d tokens does not fit the context of %d", n, m->mask_len);
    double t0 = now_seconds();
    m->next_pos = 0;   /* a new sequence on the same states: every fill write overwrites what it attends to */
    m->pending_pos = -1;
    /* in rotate mode a token must run once: chat.py's loop re-runs the last one for its logits */
    int run = n > 0 && n - 1 >= m->window ? n - 1 : n;
    int pos = 0;
    if (m->use_prefill)
        for (; pos + m->batch <= run; pos += m->batch)
            if (run_batch(m, tokens + pos, pos, e) < 0) return err_wrap(e, "prefill at position %d", pos);
    for (; pos < run; pos++)
        if (!run_token(m, tokens[pos], pos, e)) return err_wrap(e, "prefill at position %d", pos);
    if (run < n) {
        m->pending_token = tokens[n - 1];
        m->pending_pos = n - 1;
    }
    m->times.prefill_s += now_seconds() - t0;
    m->times.prefill_tokens += n;
    return 0;
}

static int run_lm_head(Llm *m, const RtTensor *h, LlmStep *out, Err *e) {
    RtInput in = {"hidden_states", *h};
    if (rt_run(m->lm_fn, 1, &in, NULL, e) < 0) return -1;
    if (m->argmax_mode) {
        const RtTensor *idx = rt_output(m->lm_fn, "argmax_idx"), *val = rt_output(m->lm_fn, "argmax_val");
        if (!idx || !val || rt_numel(idx) != m->n_splits || rt_numel(val) != m->n_splits)
            return err_set(e, "%s: argmax outputs do not have %d entries", m->meta.lm_head, m->n_splits);
        const float *v = val->data;
        const int32_t *ix = idx->data;
        int best = sampler_argmax(v, m->n_splits);
        int local = ix[best];
        int size = m->offsets[best + 1] - m->offsets[best];
        if (local < 0 || local >= size)
            return err_set(e, "%s: argmax_idx[%d] = %d is outside its split of %d tokens", m->meta.lm_head, best, local, size);
        out->logits = NULL;
        out->token = m->offsets[best] + local;
        out->value = v[best];
        return 0;
    }
    int at = 0;
    for (int s = 0; s < m->n_splits; s++) {
        const RtTensor *o = rt_output(m->lm_fn, m->split_names[s]);
        if (!o || rt_numel(o) != m->split_sizes[s])
            return err_set(e, "%s: output %s does not hold %d logits", m->meta.lm_head, m->split_names[s], m->split_sizes[s]);
        memcpy(m->logits + at, o->data, sizeof(float) * (size_t)m->split_sizes[s]);
        at += m->split_sizes[s];
    }
    for (; at < m->vocab; at++) m->logits[at] = -INFINITY;
    out->logits = m->logits;
    out->token = sampler_argmax(m->logits, m->vocab);
    out->value = m->logits[out->token];
    return 0;
}

int llm_step(Llm *m, int token, int pos, LlmStep *out, Err *e) {
    if (pos < 0 || pos >= m->mask_len) return err_set(e, "position %d is outside the context of %d", pos, m->mask_len);
    double t0 = now_seconds();
    if (m->pending_pos >= 0) {   /* the last prompt token: this step runs it, or it runs first */
        int pp = m->pending_pos;
        m->pending_pos = -1;
        if (pp != pos && !run_token(m, m->pending_token, pp, e)) return err_wrap(e, "prompt token at position %d", pp);
    }
    const RtTensor *h = run_token(m, token, pos, e);
    if (!h || run_lm_head(m, h, out, e) < 0) return err_wrap(e, "token %d at position %d", token, pos);
    m->times.step_s += now_seconds() - t0;
    m->times.steps++;
    return 0;
}
