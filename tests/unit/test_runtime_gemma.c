/* Gemma 3 converted and run: tiny gemma3_text and gemma3 (multimodal wrapper) checkpoints with a
 * sliding window of 16 and a context of 64, so that positions run far beyond the window and the
 * rotate functions do the work.
 *  - fp16 against the HF-exact reference (which applies the window): the same greedy token
 *    wherever the reference is decisive, cosine >= 0.9999, with prefill, prefill_rotate,
 *    infer_rotate all executed (counted), a prompt longer than window + batch, context shifts;
 *    the function each position went through (chat.py's selection); local/global RoPE with
 *    linear rope_scaling on the global layers; a chunk without global layers;
 *  - chat.py's own host loop written against the interpreter (function selection by position,
 *    one state from chunk 1's prefill, the last prompt token run again) matches the reference;
 *  - --split-rotate: the same tokens and bit-identical logits as the four-function packages;
 *  - a batch that straddles the window (packages written through the parts API, which convert
 *    refuses) runs token by token and stays exact; out-of-order rotate steps are refused;
 *  - LUT6 and the argmax LM head on the multimodal wrapper;
 *  - a checkpoint whose residual stream overflows fp16: verify fails without scaling (inf/NaN
 *    logits), passes with --fp16-scale auto and with a given alpha;
 *  - a context within the window: no rotate functions, a local cache of the context's length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>

#include "coreml_testutil.h"
#include "model/synth.h"
#include "parts/convert.h"
#include "parts/meta.h"
#include "runtime/gen.h"
#include "runtime/llm.h"
#include "runtime/verify.h"

static char *tmp;

static int setup(void **state) {
    (void)state;
    tmp = scratch_dir("rtgemma");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(tmp);
    free(tmp);
    return 0;
}

#define WINDOW 16
#define CTX 64
#define BATCH 8

/* A tiny Gemma 3 checkpoint: 5 layers s,s,f,s,s (2 chunks: the second has no global layer),
 * window 16; `scale`: post-norm scale (0 = none) for a residual stream beyond fp16. */
static char *make_model(const char *type, const char *name, float scale, int linear_rope) {
    char *dir = path_join(tmp, name);
    if (path_is_dir(dir)) return dir;
    SynthSpec s;
    Err e = {{0}};
    ok(synth_spec_init(&s, type, &e), &e);
    s.n_layers = 5;
    snprintf(s.layer_types, sizeof s.layer_types, "s,s,f,s,s");
    s.sliding_window = WINDOW;
    s.post_norm_scale = scale;
    if (linear_rope) s.rope_scaling = (RopeScaling){ROPE_LINEAR, 2.0, 0, 0, 0};
    s.threads = 1;
    ok(synth_write(&s, dir, 1, NULL, &e), &e);
    return dir;
}

typedef struct Opts {
    int lut, argmax, split_rotate;
    const char *fp16_scale;       /* NULL, "auto" or a number */
    long ctx;
} Opts;

/* Converts model into tmp/name (steps 1-7); returns the meta.yaml path. */
static char *convert(const char *model, const char *name, Opts op) {
    char *out = path_join(tmp, name);
    char *done = path_join(out, "meta.yaml");
    if (path_exists(done)) {   /* converted by an earlier test */
        free(out);
        return done;
    }
    free(done);
    ConvertOptions o;
    convert_options_init(&o);
    o.model_dir = model;
    o.output_dir = out;
    o.context = op.ctx ? op.ctx : CTX;
    o.batch = BATCH;
    o.chunks = 2;
    o.argmax = op.argmax;
    o.split_rotate = op.split_rotate;
    o.threads = 1;
    o.only = 0;
    o.restart = 1;
    Err e = {{0}};
    if (op.fp16_scale) {
        char *argv[3] = {"convert", "--fp16-scale", (char *)op.fp16_scale};
        o.model_dir = model;
        o.output_dir = out;
        ok(convert_options_parse(&o, 3, argv, &e), &e);
    }
    /* group 4: the LM-head splits of the 320-token vocabulary have 20 rows */
    for (int p = 0; p < PART_LUT_COUNT; p++) o.lut[p] = (LutSpec){p == PART_EMBEDDINGS ? 0 : op.lut, 4};
    Conversion *c;
    ok(convert_prepare(&c, &o, "test", NULL, NULL, &e), &e);
    ok(convert_run(c, &e), &e);
    convert_free(c);
    char *meta = path_join(out, "meta.yaml");
    free(out);
    return meta;
}

static void prompt_of(int *p, int n) {
    for (int i = 0; i < n; i++) p[i] = 5 + (7 * i) % 300;
}

/* verify over n_new positions with the fp16 expectations; returns the report (caller frees). */
static VerifyReport verify_fp16(Llm *m, const char *model, const int *prompt, int n, int n_new) {
    RefModel *ref;
    Err e = {{0}};
    ok(ref_load(&ref, model, NULL, &e), &e);
    VerifyReport r;
    ok(verify_run(m, ref, prompt, n, n_new, &r, &e), &e);
    ref_free(ref);
    if (r.agree_decisive != r.n_decisive || r.cos_min < 0.9999 || r.nonfinite) {
        char *text = verify_format(&r, &(VerifyThresholds){1, 0.9999, 1});
        print_error("%s", text);
        free(text);
        fail();
    }
    assert_true(r.n_decisive >= n_new - n_new / 8);   /* near ties are rare */
    return r;
}

/* ==== fp16, rotation, function selection ==== */

static void test_text_rotate(void **state) {
    (void)state;
    char *model = make_model("gemma3_text", "text", 0, 1);
    char *meta = convert(model, "text_fp16", (Opts){0});
    Llm *m;
    Err e = {{0}};
    ok(llm_open(&m, meta, NULL, &e), &e);
    assert_int_equal(llm_rotate_window(m), WINDOW);
    assert_int_equal(llm_batch(m), BATCH);
    /* two states, shared by every chunk: local (2*4, kv, 16, hd) and global (2*1, kv, 64, hd) */
    RtStates *st = llm_states(m);
    assert_int_equal(st->n, 2);
    RtState *loc = rt_states_find(st, "model_model_kv_cache_local"), *glo = rt_states_find(st, "model_model_kv_cache_global");
    assert_non_null(loc);
    assert_non_null(glo);
    assert_int_equal(loc->t.dims[0], 8);
    assert_int_equal(loc->t.dims[2], WINDOW);
    assert_int_equal(glo->t.dims[0], 2);
    assert_int_equal(glo->t.dims[2], CTX);
    /* a 35-token prompt: batches at 0, 8 (prefill), 16, 24 (prefill_rotate), tokens 32, 33
     * (infer_rotate); 34 waits for the step that runs it again in chat.py's loop */
    int prompt[40];
    prompt_of(prompt, 40);
    llm_reset_times(m);
    ok(llm_prefill(m, prompt, 35, &e), &e);
    const LlmTimes *t = llm_times(m);
    assert_int_equal(t->runs[LLM_PREFILL], 2);
    assert_int_equal(t->runs[LLM_PREFILL_ROTATE], 2);
    assert_int_equal(t->runs[LLM_INFER_ROTATE], 2);
    assert_int_equal(t->runs[LLM_INFER], 0);
    LlmStep s;
    ok(llm_step(m, prompt[34], 34, &s, &e), &e);
    assert_int_equal(t->runs[LLM_INFER_ROTATE], 3);
    /* rotate steps are consecutive: position 40 now, or 34 again, is refused */
    assert_int_equal(llm_step(m, 7, 40, &s, &e), -1);
    assert_contains(e.msg, "holds the positions before 35");
    assert_int_equal(llm_step(m, 7, 3, &s, &e), -1);
    assert_contains(e.msg, "rotated past it");
    /* against the reference: a prompt beyond window + batch, 26 generated positions */
    VerifyReport r = verify_fp16(m, model, prompt, 35, 26);
    assert_true(r.fn_runs[LLM_PREFILL_ROTATE] == 2 && r.fn_runs[LLM_INFER_ROTATE] == 26 + 2);
    assert_int_equal(r.n_shifts, 0);
    verify_report_free(&r);
    /* a short prompt whose generation crosses the window in infer, then shifts twice: the
     * re-prefills from position 0 go through prefill and prefill_rotate */
    r = verify_fp16(m, model, prompt, 10, 100);
    assert_true(r.n_shifts >= 2);
    assert_true(r.fn_runs[LLM_INFER] > 0 && r.fn_runs[LLM_INFER_ROTATE] > 0 && r.fn_runs[LLM_PREFILL_ROTATE] > 0);
    verify_report_free(&r);
    llm_close(m);
    free(meta);
    free(model);
}

/* ==== chat.py's host loop over the interpreter ==== */

typedef struct Host {
    RtModel *emb, *head, *chunk[2];
    RtStates *st;
    int hidden, vocab;
    float mask[CTX * BATCH];
    float logits[4096];
} Host;

static RtInput in_i32(const char *name, int32_t *d, int rank, const int64_t *dims) {
    return (RtInput){name, rt_i32(d, rank, dims)};
}

/* One chat.py call: embeddings of T tokens at pos, every chunk's fn; logits if lm. */
static void host_run(Host *h, const char *fn, const int *tokens, int T, int pos, int lm) {
    Err e = {{0}};
    int32_t ids[BATCH], pids[BATCH], cur = pos;
    for (int i = 0; i < T; i++) ids[i] = tokens[i], pids[i] = pos + i;
    RtFunction *ef = rt_function(h->emb, NULL);
    RtInput ein = in_i32("input_ids", ids, 2, (int64_t[]){1, T});
    ok(rt_run(ef, 1, &ein, NULL, &e), &e);
    const RtTensor *x = rt_output(ef, "hidden_states");
    for (int r = 0; r < T; r++)   /* causal_mask rows pos.. of chat.py's (ctx, ctx) matrix */
        for (int j = 0; j < CTX; j++) h->mask[r * CTX + j] = j <= pos + r ? 0.0f : -INFINITY;
    for (int c = 0; c < 2; c++) {
        RtFunction *f = rt_function(h->chunk[c], fn);
        assert_non_null(f);
        RtInput in[4] = {{"hidden_states", *x},
                         in_i32("position_ids", pids, 1, (int64_t[]){T}),
                         {"causal_mask", rt_f16(h->mask, 4, (int64_t[]){1, 1, T, CTX})},
                         in_i32("current_pos", &cur, 1, (int64_t[]){1})};
        ok(rt_run(f, 4, in, h->st, &e), &e);
        x = rt_output(f, "output_hidden_states");
    }
    if (!lm) return;
    RtFunction *hf = rt_function(h->head, NULL);
    RtInput hin = {"hidden_states", *x};
    ok(rt_run(hf, 1, &hin, NULL, &e), &e);
    int at = 0;
    for (int i = 1; i <= 16; i++) {
        char name[24];
        snprintf(name, sizeof name, "logits%d", i);
        const RtTensor *o = rt_output(hf, name);
        assert_non_null(o);
        memcpy(h->logits + at, o->data, sizeof(float) * (size_t)rt_numel(o));
        at += (int)rt_numel(o);
    }
    h->vocab = at;
}

static double cosine(const float *a, const float *b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return ab / sqrt(aa * bb);
}

/* chat.py: prefill with full batches (prefill below the window, prefill_rotate from it), the rest
 * token by token, then generate_next_token at pos = n, n+1, ... running token pos-1 (infer below
 * the window, infer_rotate from it). The prompt ends before the window (chat.py runs the last
 * prompt token twice, which only fill mode tolerates); generation crosses it. Teacher-forced
 * with the reference's greedy tokens. */
static void test_chat_py_host(void **state) {
    (void)state;
    char *model = make_model("gemma3_text", "text", 0, 1);
    char *meta = convert(model, "text_fp16", (Opts){0});
    free(meta);
    Host h = {0};
    Err e = {{0}};
    char *dir = path_join(tmp, "text_fp16"), name[128];
    char *p = xasprintf("%s/gemma3_embeddings.mlpackage", dir);
    ok(rt_open(&h.emb, p, NULL, &e), &e);
    free(p);
    p = xasprintf("%s/gemma3_lm_head.mlpackage", dir);
    ok(rt_open(&h.head, p, NULL, &e), &e);
    free(p);
    for (int c = 0; c < 2; c++) {
        plan_ffn_name("gemma3", FFN_COMBINED, 0, c, 2, name, sizeof name);
        p = xasprintf("%s/%s.mlpackage", dir, name);
        ok(rt_open(&h.chunk[c], p, NULL, &e), &e);
        free(p);
    }
    h.st = rt_states_new(rt_function(h.chunk[0], "prefill"), &e);
    assert_non_null(h.st);
    RefModel *ref;
    ok(ref_load(&ref, model, NULL, &e), &e);
    int seq[CTX];
    prompt_of(seq, 13);
    int n = 13, batch_pos = 0;
    for (; batch_pos + BATCH <= n; batch_pos += BATCH)
        host_run(&h, batch_pos >= WINDOW ? "prefill_rotate" : "prefill", seq + batch_pos, BATCH, batch_pos, 0);
    for (; batch_pos < n; batch_pos++)
        host_run(&h, batch_pos >= WINDOW ? "infer_rotate" : "infer", seq + batch_pos, 1, batch_pos, 0);
    float *rl = xmalloc(sizeof(float) * 4096);
    ok(ref_forward(ref, seq, n - 1, 0, NULL, 0, &e), &e);
    int agree = 0, decisive = 0, rotated = 0;
    for (int pos = n; pos < CTX - 1; pos++) {
        const char *fn = pos - 1 >= WINDOW ? "infer_rotate" : "infer";
        rotated += pos - 1 >= WINDOW;
        host_run(&h, fn, &seq[pos - 1], 1, pos - 1, 1);
        ok(ref_forward(ref, &seq[pos - 1], 1, pos - 1, rl, 0, &e), &e);
        int V = ref_arch(ref)->vocab, best = ref_argmax(rl, V);
        assert_int_equal(h.vocab, V);
        assert_true(cosine(rl, h.logits, V) >= 0.9999);
        float second = -INFINITY;
        for (int i = 0; i < V; i++)
            if (i != best && rl[i] > second) second = rl[i];
        if (rl[best] - second >= VERIFY_NEAR_TIE * fmaxf(1, fabsf(rl[best]))) {
            decisive++;
            agree += ref_argmax(h.logits, V) == best;
        }
        seq[pos] = best;
    }
    assert_true(rotated >= 40);
    assert_int_equal(agree, decisive);
    assert_true(decisive >= 40);
    free(rl);
    ref_free(ref);
    rt_states_free(h.st);
    rt_close(h.emb);
    rt_close(h.head);
    for (int c = 0; c < 2; c++) rt_close(h.chunk[c]);
    free(dir);
    free(model);
}

/* ==== --split-rotate ==== */

typedef struct Capture {
    float *logits;      /* [n][vocab] */
    int *tokens, n, vocab;
} Capture;

static int capture(void *ctx, int i, int token, const LlmStep *st) {
    Capture *c = ctx;
    c->tokens[i] = token;
    if (st->logits) memcpy(c->logits + (size_t)i * c->vocab, st->logits, sizeof(float) * (size_t)c->vocab);
    c->n = i + 1;
    return 0;
}

static void run_capture(const char *meta, const int *prompt, int n, int n_new, Capture *c) {
    Llm *m;
    Err e = {{0}};
    ok(llm_open(&m, meta, NULL, &e), &e);
    c->vocab = llm_vocab(m);
    c->logits = xcalloc((size_t)n_new * (size_t)c->vocab, sizeof(float));
    c->tokens = xcalloc((size_t)n_new, sizeof(int));
    LmSource src = gen_llm_source(m);
    GenResult gr;
    llm_reset_times(m);
    ok(gen_run(&src, prompt, n, &(GenOptions){.max_new = n_new}, capture, c, &gr, &e), &e);
    assert_true(gr.n_shifts >= 1);
    assert_true(llm_times(m)->runs[LLM_PREFILL_ROTATE] > 0 && llm_times(m)->runs[LLM_INFER_ROTATE] > 0);
    llm_close(m);
}

static void test_split_rotate(void **state) {
    (void)state;
    char *model = make_model("gemma3_text", "text", 0, 1);
    char *four = convert(model, "text_fp16", (Opts){0}), *split = convert(model, "text_split", (Opts){.split_rotate = 1});
    /* the layout: FFN_PF with infer + prefill, _rot with infer_rotate + prefill_rotate, meta.yaml keys */
    LlmMeta mm;
    Err e = {{0}};
    ok(llm_meta_load(&mm, split, &e), &e);
    assert_true(mm.split_rotate);
    assert_non_null(mm.rot_chunks);
    assert_non_null(strstr(mm.rot_chunks[1], "gemma3_FFN_PF_chunk_02of02_rot.mlpackage"));
    llm_meta_free(&mm);
    char *text = read_text(split, NULL);
    assert_non_null(strstr(text, "    pf: gemma3_FFN_PF_chunk_01of02_rot.mlmodelc\n"));
    assert_non_null(strstr(text, "    split_rotate: true\n    sliding_window: 16\n"));
    free(text);
    int prompt[40];
    prompt_of(prompt, 40);
    Capture a = {0}, b = {0};
    run_capture(four, prompt, 35, 60, &a);
    run_capture(split, prompt, 35, 60, &b);
    assert_int_equal(a.n, 60);
    assert_int_equal(b.n, 60);
    assert_memory_equal(a.tokens, b.tokens, sizeof(int) * 60);
    assert_memory_equal(a.logits, b.logits, sizeof(float) * 60 * (size_t)a.vocab);
    free(a.logits);
    free(a.tokens);
    free(b.logits);
    free(b.tokens);
    free(four);
    free(split);
    free(model);
}

/* ==== a batch straddling the window ==== */

/* Packages of `model` written through the parts API with a window of 12 and batch 8 (convert
 * refuses a batch that does not divide the window): the batch at 8 straddles 12. */
static char *write_straddling(const char *model) {
    char *dir = path_join(tmp, "straddle");
    Err e = {{0}};
    ok(mkdir_p(dir, &e), &e);
    Arch a;
    Checkpoint *ck;
    ok(arch_load(&a, model, &e), &e);
    ok(ckpt_open(&ck, model, &e), &e);
    PartSource src = {.arch = &a, .ckpt = ck, .threads = 1, .info = "test"};
    PartCommon c = {.context = CTX, .batch = BATCH, .state_length = plan_state_length(&a, CTX),
                    .local_length = plan_local_length(&a, CTX), .n_chunks = 2};
    assert_int_equal(c.local_length, 12);
    LutSpec none = {0, 0};
    PartReport r[PLAN_FFN_FUNCTIONS];
    char name[128], *p;
    p = xasprintf("%s/%s.mlpackage", dir, plan_embeddings_name("gemma3", 0, name, sizeof name));
    ok(part_write_embeddings(&src, &c, &none, p, &r[0], &e), &e);
    free(p);
    p = xasprintf("%s/%s.mlpackage", dir, plan_lm_head_name("gemma3", 0, name, sizeof name));
    ok(part_write_lm_head(&src, &c, &none, 0, p, &r[0], &e), &e);
    free(p);
    for (int ch = 0; ch < 2; ch++) {
        char *kp[PLAN_FFN_FUNCTIONS];
        for (int k = 0; k < PLAN_FFN_FUNCTIONS; k++)
            kp[k] = xasprintf("%s/%s.mlpackage", dir, plan_ffn_name("gemma3", (PlanFfnKind)k, 0, ch, 2, name, sizeof name));
        ok(part_write_ffn(&src, &c, &none, ch, (const char *const *)kp, r, &e), &e);
        const char *order[4] = {kp[0], kp[2], kp[1], kp[3]}, *fns[4] = {"infer", "infer_rotate", "prefill", "prefill_rotate"};
        p = xasprintf("%s/%s.mlpackage", dir, plan_ffn_name("gemma3", FFN_COMBINED, 0, ch, 2, name, sizeof name));
        ok(part_combine(4, order, fns, p, 0, &r[0], &e), &e);
        free(p);
        for (int k = 0; k < PLAN_FFN_FUNCTIONS; k++) free(kp[k]);
    }
    MetaInfo mi = {.model_name = "straddle", .architecture = a.model_type, .context = CTX, .batch = BATCH,
                   .num_chunks = 2, .prefix = "gemma3", .vocab = a.vocab, .sliding_window = a.sliding_window};
    mi.n_splits = plan_lm_head_sizes(&a, mi.split_sizes);
    char *meta = path_join(dir, "meta.yaml");
    ok(meta_yaml_write(meta, &mi, &e), &e);
    ckpt_close(ck);
    arch_free(&a);
    free(dir);
    return meta;
}

static void test_straddling_batch(void **state) {
    (void)state;
    char *model = path_join(tmp, "text12");
    SynthSpec s;
    Err e = {{0}};
    ok(synth_spec_init(&s, "gemma3_text", &e), &e);
    s.n_layers = 3;
    snprintf(s.layer_types, sizeof s.layer_types, "s,f,s");
    s.sliding_window = 12;
    s.threads = 1;
    ok(synth_write(&s, model, 1, NULL, &e), &e);
    char *meta = write_straddling(model);
    Llm *m;
    ok(llm_open(&m, meta, NULL, &e), &e);
    assert_int_equal(llm_rotate_window(m), 12);
    int prompt[40];
    prompt_of(prompt, 40);
    /* 30 tokens: batch 0 prefill, batch 8 straddles (8..11 infer, 12..15 infer_rotate), batches
     * 16 and 24... 16 + 8 <= 29: prefill_rotate at 16; 24..28 infer_rotate; 29 pending */
    llm_reset_times(m);
    ok(llm_prefill(m, prompt, 30, &e), &e);
    const LlmTimes *t = llm_times(m);
    assert_int_equal(t->runs[LLM_PREFILL], 1);
    assert_int_equal(t->runs[LLM_INFER], 4);
    assert_int_equal(t->runs[LLM_PREFILL_ROTATE], 1);
    assert_int_equal(t->runs[LLM_INFER_ROTATE], 4 + 5);
    VerifyReport r = verify_fp16(m, model, prompt, 30, 24);
    verify_report_free(&r);
    llm_close(m);
    free(meta);
    free(model);
}

/* ==== multimodal wrapper: LUT6, argmax ==== */

static void test_multimodal_lut_argmax(void **state) {
    (void)state;
    char *model = make_model("gemma3", "mm", 0, 0);
    int prompt[40];
    prompt_of(prompt, 40);
    /* fp16 first: exact */
    char *meta = convert(model, "mm_fp16", (Opts){0});
    Llm *m;
    Err e = {{0}};
    ok(llm_open(&m, meta, NULL, &e), &e);
    VerifyReport r = verify_fp16(m, model, prompt, 21, 40);
    verify_report_free(&r);
    llm_close(m);
    /* argmax LM head: the logits mode's greedy tokens across rotation and a shift */
    char *am = convert(model, "mm_argmax", (Opts){.argmax = 1});
    Capture a = {0}, b = {0};
    run_capture(meta, prompt, 35, 50, &a);
    run_capture(am, prompt, 35, 50, &b);
    assert_memory_equal(a.tokens, b.tokens, sizeof(int) * 50);
    free(a.logits);
    free(a.tokens);
    free(b.logits);
    free(b.tokens);
    /* LUT6 g4: the default thresholds, and the loss shows */
    char *lut = convert(model, "mm_lut6", (Opts){.lut = 6});
    ok(llm_open(&m, lut, NULL, &e), &e);
    RefModel *ref;
    ok(ref_load(&ref, model, NULL, &e), &e);
    ok(verify_run(m, ref, prompt, 35, 32, &r, &e), &e);
    VerifyThresholds th;
    verify_default_thresholds(&th);
    char why[512];
    if (!verify_passes(&r, &th, why, sizeof why)) {
        print_error("gemma3 LUT6: %s\n", why);
        fail();
    }
    assert_true(r.cos_mean < 0.99999);
    assert_true(r.fn_runs[LLM_PREFILL_ROTATE] > 0);
    verify_report_free(&r);
    ref_free(ref);
    llm_close(m);
    free(lut);
    free(am);
    free(meta);
    free(model);
}

/* ==== fp16 overflow and --fp16-scale ==== */

static void test_fp16_scale(void **state) {
    (void)state;
    char *model = make_model("gemma3_text", "overflow", 12000, 0);
    int prompt[40];
    prompt_of(prompt, 40);
    Err e = {{0}};
    RefModel *ref;
    ok(ref_load(&ref, model, NULL, &e), &e);
    VerifyThresholds th;
    verify_default_thresholds(&th);
    char why[512];
    /* unscaled: the residual stream overflows, the logits are inf/NaN, verify fails */
    char *plain = convert(model, "ov_plain", (Opts){0});
    Llm *m;
    VerifyReport r;
    ok(llm_open(&m, plain, NULL, &e), &e);
    ok(verify_run(m, ref, prompt, 21, 24, &r, &e), &e);
    assert_true(r.nonfinite > 0);
    assert_false(verify_passes(&r, &th, why, sizeof why));
    assert_non_null(strstr(why, "inf/NaN logits"));
    verify_report_free(&r);
    llm_close(m);
    /* auto (the fallback prompt: no tokenizer ids given) and a given alpha: exact again */
    const char *scales[2] = {"auto", "0.25"};
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof name, "ov_%d", i);
        char *meta = convert(model, name, (Opts){.fp16_scale = scales[i]});
        char *text = read_text(meta, NULL);
        if (i == 0) assert_null(strstr(text, "# fp16_scale: none"));
        else assert_non_null(strstr(text, "# fp16_scale: 0.25\n"));
        free(text);
        ok(llm_open(&m, meta, NULL, &e), &e);
        r = verify_fp16(m, model, prompt, 21, 40);
        verify_report_free(&r);
        llm_close(m);
        free(meta);
    }
    ref_free(ref);
    free(plain);
    free(model);
}

/* ==== context within the window ==== */

static void test_no_rotation(void **state) {
    (void)state;
    char *model = make_model("gemma3_text", "text", 0, 1);
    char *meta = convert(model, "text_ctx16", (Opts){.ctx = WINDOW});
    Llm *m;
    Err e = {{0}};
    ok(llm_open(&m, meta, NULL, &e), &e);
    assert_int_equal(llm_rotate_window(m), 0);
    RtState *loc = rt_states_find(llm_states(m), "model_model_kv_cache_local");
    assert_int_equal(loc->t.dims[2], WINDOW);
    assert_null(rt_function(llm_part(m, 2), "infer_rotate"));
    int prompt[12];
    prompt_of(prompt, 12);
    VerifyReport r = verify_fp16(m, model, prompt, 9, 20);   /* shifts inside the window */
    assert_int_equal(r.fn_runs[LLM_INFER_ROTATE] + r.fn_runs[LLM_PREFILL_ROTATE], 0);
    verify_report_free(&r);
    llm_close(m);
    free(meta);
    free(model);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_rotate),     cmocka_unit_test(test_chat_py_host),
        cmocka_unit_test(test_split_rotate),    cmocka_unit_test(test_straddling_batch),
        cmocka_unit_test(test_multimodal_lut_argmax), cmocka_unit_test(test_fp16_scale),
        cmocka_unit_test(test_no_rotation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
