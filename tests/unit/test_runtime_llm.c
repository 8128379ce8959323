/* The host side of the runtime: meta.yaml reading, the sampler, the generation loop's context
 * shift (with a fake source), and converted tiny models of every family run end to end: one KV
 * state shared by every chunk, fp16 packages against the reference (100% agreement over 32 tokens,
 * cosine >= 0.9999, a prompt longer than the prefill batch, generation past the end of the
 * context), LUT6 against the checkpoint and against its own dequantized weights, argmax LM heads
 * giving the logits mode's tokens, and memory that does not grow per token. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>

#include "coreml_testutil.h"
#include "model/synth.h"
#include "parts/convert.h"
#include "runtime/gen.h"
#include "runtime/llm.h"
#include "runtime/llm_meta.h"
#include "runtime/sampler.h"
#include "runtime/verify.h"

static char *tmp;

static int setup(void **state) {
    (void)state;
    tmp = scratch_dir("rtllm");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(tmp);
    free(tmp);
    return 0;
}

static void write_file(const char *dir, const char *name, const char *text) {
    char *p = path_join(dir, name);
    write_bytes(p, text, strlen(text));
    free(p);
}

static void make_dir(const char *dir, const char *name) {
    char *p = path_join(dir, name);
    Err e = {{0}};
    ok(mkdir_p(p, &e), &e);
    free(p);
}

/* ==== meta.yaml ==== */

static void test_meta_yaml(void **state) {
    (void)state;
    char *d = path_join(tmp, "meta");
    make_dir(d, "qwen_embeddings.mlpackage");
    make_dir(d, "qwen_lm_head_lut6.mlpackage");
    for (int i = 1; i <= 3; i++) {
        char n[64];
        snprintf(n, sizeof n, "qwen_FFN_PF_lut4_chunk_%02dof03.mlpackage", i);
        make_dir(d, n);
    }
    /* explicit names (.mlmodelc map to the packages beside them), a list of split sizes */
    write_file(d, "meta.yaml",
               "model_info:\n  name: t\n  architecture: qwen3\n  parameters:\n    context_length: 512\n"
               "    batch_size: 64\n    lut_embeddings: none\n    lut_ffn: 4\n    lut_lmhead: 6\n    num_chunks: 3\n"
               "    model_prefix: qwen\n    embeddings: qwen_embeddings.mlmodelc\n    lm_head: qwen_lm_head_lut6.mlmodelc\n"
               "    ffn: qwen_FFN_PF_lut4_chunk_01of03.mlmodelc\n    split_lm_head: 2\n    argmax_in_model: true\n"
               "    vocab_size: 300\n    lm_head_chunk_sizes: [150, 150]\n    prefill_dynamic_slice: true\n");
    char *mp = path_join(d, "meta.yaml");
    LlmMeta m;
    Err e = {{0}};
    ok(llm_meta_load(&m, mp, &e), &e);
    assert_int_equal(m.context_length, 512);
    assert_int_equal(m.batch_size, 64);
    assert_int_equal(m.num_chunks, 3);
    assert_int_equal(m.lut_ffn, 4);
    assert_int_equal(m.lut_embeddings, 0);
    assert_int_equal(m.argmax_in_model, 1);
    assert_int_equal(m.n_chunk_sizes, 2);
    assert_int_equal(m.lm_head_chunk_sizes[1], 150);
    assert_int_equal(m.prefill_dynamic_slice, 1);
    assert_string_equal(path_basename(m.chunks[2]), "qwen_FFN_PF_lut4_chunk_03of03.mlpackage");
    assert_string_equal(path_basename(m.embeddings), "qwen_embeddings.mlpackage");
    assert_string_equal(m.tokenizer_dir, d);
    llm_meta_free(&m);
    /* names derived from the prefix and LUT keys when absent (chat.py's fallbacks) */
    write_file(d, "meta.yaml",
               "model_info:\n  parameters:\n    context_length: 512\n    batch_size: 64\n    lut_ffn: 4\n"
               "    lut_lmhead: 6\n    num_chunks: 3\n    model_prefix: qwen\n");
    ok(llm_meta_load(&m, mp, &e), &e);
    assert_string_equal(path_basename(m.lm_head), "qwen_lm_head_lut6.mlpackage");
    assert_string_equal(path_basename(m.chunks[0]), "qwen_FFN_PF_lut4_chunk_01of03.mlpackage");
    assert_int_equal(m.split_lm_head, 8);
    assert_int_equal(m.prefill_dynamic_slice, -1);
    llm_meta_free(&m);
    /* errors name the key */
    write_file(d, "meta.yaml", "model_info:\n  parameters:\n    context_length: 512\n    num_chunks: 3\n");
    assert_int_equal(llm_meta_load(&m, mp, &e), -1);
    assert_contains(e.msg, "model_info.parameters.batch_size is missing");
    write_file(d, "meta.yaml", "model_info:\n  parameters:\n    context_length: many\n");
    assert_int_equal(llm_meta_load(&m, mp, &e), -1);
    assert_contains(e.msg, "context_length must be an integer");
    write_file(d, "meta.yaml", "model_info:\n  model_type: monolithic\n  parameters:\n    context_length: 512\n");
    assert_int_equal(llm_meta_load(&m, mp, &e), -1);
    assert_contains(e.msg, "monolithic");
    write_file(d, "meta.yaml", "model_info: [\n");
    assert_int_equal(llm_meta_load(&m, mp, &e), -1);
    assert_contains(e.msg, "not valid YAML");
    /* a compiled model without its package */
    make_dir(d, "other.mlmodelc");
    write_file(d, "meta.yaml",
               "model_info:\n  parameters:\n    context_length: 512\n    batch_size: 64\n    num_chunks: 3\n"
               "    model_prefix: qwen\n    embeddings: other.mlmodelc\n");
    assert_int_equal(llm_meta_load(&m, mp, &e), -1);
    assert_contains(e.msg, "a compiled model; the CPU runtime runs the .mlpackage beside it");
    /* chunk names */
    char *c = llm_meta_chunk_name("x_FFN_PF_chunk_01of12", 7, 12);
    assert_string_equal(c, "x_FFN_PF_chunk_07of12");
    free(c);
    assert_null(llm_meta_chunk_name("x_FFN_PF", 1, 1));
    free(mp);
    free(d);
}

/* ==== Sampler ==== */

static void test_sampler(void **state) {
    (void)state;
    float l[5] = {0.1f, 2.0f, 2.0f, -1.0f, NAN};
    assert_int_equal(sampler_argmax(l, 5), 1);                    /* first of the tied maxima, NaN ignored */
    float bad[3] = {NAN, NAN, NAN};
    assert_int_equal(sampler_argmax(bad, 3), 0);
    Sampler *g = sampler_new(&(SamplerOptions){0}, 5);
    assert_true(sampler_is_greedy(g));
    assert_int_equal(sampler_pick(g, l), 1);
    sampler_free(g);
    /* top_k 1 and a tiny top_p are greedy whatever the temperature */
    Sampler *k1 = sampler_new(&(SamplerOptions){2.0f, 1, 1.0f, 7}, 5);
    Sampler *p0 = sampler_new(&(SamplerOptions){2.0f, 0, 0.01f, 7}, 5);
    float l2[5] = {0.1f, 2.5f, 2.0f, -1.0f, 1.0f};
    for (int i = 0; i < 50; i++) {
        assert_int_equal(sampler_pick(k1, l2), 1);
        assert_int_equal(sampler_pick(p0, l2), 1);
    }
    sampler_free(k1);
    sampler_free(p0);
    /* frequencies follow softmax(l / T): p = 1/4, 3/4 */
    float two[2] = {0.0f, logf(3.0f)};
    Sampler *s = sampler_new(&(SamplerOptions){1.0f, 0, 1.0f, 42}, 2);
    int count = 0, n = 8000;
    for (int i = 0; i < n; i++) count += sampler_pick(s, two);
    sampler_free(s);
    assert_true(fabs((double)count / n - 0.75) < 0.02);
    /* top_p 0.5 over {0.1, 0.2, 0.3, 0.4}: only the 0.4 and 0.3 tokens remain */
    float four[4] = {logf(0.1f), logf(0.2f), logf(0.3f), logf(0.4f)};
    Sampler *tp = sampler_new(&(SamplerOptions){1.0f, 0, 0.5f, 3}, 4);
    int seen[4] = {0};
    for (int i = 0; i < 2000; i++) seen[sampler_pick(tp, four)]++;
    sampler_free(tp);
    assert_int_equal(seen[0] + seen[1], 0);
    assert_true(seen[2] > 600 && seen[3] > 900);
    /* the same seed, the same tokens */
    Sampler *a = sampler_new(&(SamplerOptions){0.8f, 3, 0.9f, 99}, 5), *b = sampler_new(&(SamplerOptions){0.8f, 3, 0.9f, 99}, 5);
    for (int i = 0; i < 100; i++) assert_int_equal(sampler_pick(a, l2), sampler_pick(b, l2));
    sampler_free(a);
    sampler_free(b);
}

/* ==== Generation loop with a fake source ==== */

typedef struct Fake {
    int vocab, context;
    int prefills, prefill_len[16], prefill_first[16];
    int steps, last_pos, max_pos;
    int tokens_seen[512];
    float logits[32];
} Fake;

static int fake_prefill(void *ctx, const int *t, int n, Err *e) {
    (void)e;
    Fake *f = ctx;
    f->prefill_len[f->prefills] = n;
    f->prefill_first[f->prefills++] = t[0];
    return 0;
}

/* Predicts (token + 1) % vocab. */
static int fake_step(void *ctx, int token, int pos, LlmStep *out, Err *e) {
    Fake *f = ctx;
    if (pos < 0 || pos >= f->context) return err_set(e, "position %d outside the context", pos);
    f->tokens_seen[f->steps++] = token;
    f->last_pos = pos;
    if (pos > f->max_pos) f->max_pos = pos;
    for (int i = 0; i < f->vocab; i++) f->logits[i] = i == (token + 1) % f->vocab ? 1.0f : 0.0f;
    out->logits = f->logits;
    out->token = (token + 1) % f->vocab;
    out->value = 1.0f;
    return 0;
}

static int stop_at_7(void *ctx, int token) {
    (void)ctx;
    return token == 7;
}

static void test_gen_loop_and_shift(void **state) {
    (void)state;
    Fake f = {.vocab = 32, .context = 16};
    LmSource src = {&f, 32, 16, 4, fake_prefill, fake_step};
    int prompt[5] = {10, 11, 12, 13, 14};
    GenResult r;
    Err e = {{0}};
    /* 30 tokens through a 16-position context: shifts keep gen_shift_size(16, 4) = 8 tokens */
    assert_int_equal(gen_shift_size(16, 4), 8);
    assert_int_equal(gen_shift_size(64, 64), 32);
    ok(gen_run(&src, prompt, 5, &(GenOptions){.max_new = 30}, NULL, NULL, &r, &e), &e);
    assert_int_equal(r.n_generated, 30);
    assert_true(r.n_shifts >= 3);
    assert_int_equal(f.prefill_len[0], 5);
    assert_int_equal(f.prefill_len[1], 8);
    assert_true(f.max_pos <= 13);                  /* shifted before reaching context - 2 */
    assert_int_equal(f.tokens_seen[0], 14);        /* the last prompt token runs again */
    /* tokens continue the sequence across shifts: prefill after the first shift starts at the
     * 8th-last token of 10..(14 + k) */
    assert_int_equal(f.prefill_first[1], (14 + 9 - 8 + 1) % 32);
    /* teacher forcing feeds the given tokens */
    Fake g = {.vocab = 32, .context = 64};
    LmSource s2 = {&g, 32, 64, 4, fake_prefill, fake_step};
    int forced[4] = {3, 9, 7, 1};
    ok(gen_run(&s2, prompt, 5, &(GenOptions){.max_new = 4, .forced = forced, .n_forced = 4}, NULL, NULL, &r, &e), &e);
    assert_int_equal(g.tokens_seen[1], 3);
    assert_int_equal(g.tokens_seen[2], 9);
    /* stop tokens end the loop after the stop token; no_shift stops at the end */
    Fake h = {.vocab = 32, .context = 64};
    LmSource s3 = {&h, 32, 64, 4, fake_prefill, fake_step};
    int p3[2] = {3, 4};
    ok(gen_run(&s3, p3, 2, &(GenOptions){.max_new = 20, .is_stop = stop_at_7}, NULL, NULL, &r, &e), &e);
    assert_int_equal(r.n_generated, 3);   /* 5, 6, 7 */
    assert_true(r.stopped_by_token);
    Fake k = {.vocab = 32, .context = 16};
    LmSource s4 = {&k, 32, 16, 4, fake_prefill, fake_step};
    ok(gen_run(&s4, prompt, 5, &(GenOptions){.max_new = 30, .no_shift = 1}, NULL, NULL, &r, &e), &e);
    assert_true(r.context_full);
    assert_int_equal(r.n_generated, 16 - 2 - 5);
    /* bad prompts */
    assert_int_equal(gen_run(&s4, prompt, 0, &(GenOptions){.max_new = 1}, NULL, NULL, &r, &e), -1);
    assert_contains(e.msg, "empty");
    int big[20] = {0};
    assert_int_equal(gen_run(&s4, big, 20, &(GenOptions){.max_new = 1}, NULL, NULL, &r, &e), -1);
    assert_contains(e.msg, "shorten it");
    int oov[1] = {99};
    assert_int_equal(gen_run(&s4, oov, 1, &(GenOptions){.max_new = 1}, NULL, NULL, &r, &e), -1);
    assert_contains(e.msg, "outside the vocabulary");
}

/* ==== Converted models ==== */

/* A tiny checkpoint of type converted with the given LUT bits (0 = fp16); returns meta.yaml. */
static char *convert_tiny(const char *type, int lut, int argmax, long ctx, long batch, char **model_dir) {
    char name[128];
    snprintf(name, sizeof name, "%s_src", type);
    char *src = path_join(tmp, name);
    Err e = {{0}};
    if (!path_is_dir(src)) {
        SynthSpec s;
        ok(synth_spec_init(&s, type, &e), &e);
        s.n_layers = 4;
        s.threads = 1;
        ok(synth_write(&s, src, 1, NULL, &e), &e);
    }
    snprintf(name, sizeof name, "%s_lut%d_am%d_c%ld", type, lut, argmax, ctx);
    char *out = path_join(tmp, name);
    ConvertOptions o;
    convert_options_init(&o);
    o.model_dir = src;
    o.output_dir = out;
    o.context = ctx;
    o.batch = batch;
    o.chunks = 2;
    o.argmax = argmax;
    o.threads = 1;
    for (int p = 0; p < PART_LUT_COUNT; p++) o.lut[p] = (LutSpec){p == PART_EMBEDDINGS ? 0 : lut, 8};
    Conversion *c;
    ok(convert_prepare(&c, &o, "test", NULL, NULL, &e), &e);
    ok(convert_run(c, &e), &e);
    convert_free(c);
    free(out);
    *model_dir = src;
    return xasprintf("%s/%s/meta.yaml", tmp, name);
}

/* The KV rows of chunk 1's first layer and chunk 2's last layer, both in the one state. */
static void check_shared_state(Llm *m, int n_tokens) {
    RtStates *st = llm_states(m);
    assert_int_equal(st->n, 1);
    const RtTensor *kv = &st->states[0].t;
    int64_t L2 = kv->dims[0], nkv = kv->dims[1], sl = kv->dims[2], hd = kv->dims[3];
    const float *d = kv->data;
    int64_t rows[2] = {0, L2 / 2 - 1};   /* K of layer 0 (chunk 1), K of layer L-1 (chunk 2) */
    for (int r = 0; r < 2; r++) {
        double written = 0, beyond = 0;
        for (int64_t h = 0; h < nkv; h++)
            for (int64_t p = 0; p < sl; p++)
                for (int64_t k = 0; k < hd; k++) {
                    double v = fabs(d[((rows[r] * nkv + h) * sl + p) * hd + k]);
                    if (p < n_tokens) written += v;
                    else beyond += v;
                }
        assert_true(written > 0);
        assert_true(beyond == 0);
    }
}

static int count_token(void *ctx, int i, int token, const LlmStep *st) {
    (void)st;
    int *out = ctx;
    out[i] = token;
    return 0;
}

typedef struct MemProbe {
    Llm *m;
    RtMemoryStats warm;
} MemProbe;

static int probe(void *ctx, int i, int token, const LlmStep *st) {
    (void)token;
    (void)st;
    MemProbe *p = ctx;
    if (i == 1) llm_memory(p->m, &p->warm);
    return 0;
}

static void family_fp16(const char *type) {
    char *model;
    char *meta = convert_tiny(type, 0, 0, 64, 16, &model);
    Llm *m;
    Err e = {{0}};
    ok(llm_open(&m, meta, NULL, &e), &e);
    assert_int_equal(llm_context(m), 64);
    assert_int_equal(llm_batch(m), 16);
    assert_true(llm_uses_prefill(m));
    /* a prompt of 21 tokens: one prefill batch of 16, then 5 tokens through infer */
    int prompt[21];
    for (int i = 0; i < 21; i++) prompt[i] = 3 + 7 * i % 200;
    ok(llm_prefill(m, prompt, 21, &e), &e);
    check_shared_state(m, 21);
    /* against the reference, 32 generated tokens: every greedy token the same */
    RefModel *ref;
    ok(ref_load(&ref, model, NULL, &e), &e);
    VerifyReport r;
    ok(verify_run(m, ref, prompt, 21, 32, &r, &e), &e);
    if (r.agree != r.n_positions || r.cos_min < 0.9999) {
        char *text = verify_format(&r, &(VerifyThresholds){1, 0.9999, 1});
        print_error("%s fp16: %s", type, text);
        free(text);
        fail();
    }
    assert_int_equal(r.n_shifts, 0);
    assert_int_equal(r.agree_decisive, r.n_decisive);
    assert_true(r.kl_max < 1e-3);
    verify_report_free(&r);
    /* 60 tokens run past the context of 64 (the window shifts, for both). Over this many
     * tokens of a random model an fp16 near tie may flip: a disagreement must be one
     * (reference margin below 0.01) */
    ok(verify_run(m, ref, prompt, 21, 60, &r, &e), &e);
    assert_int_equal(r.n_positions, 60);
    assert_true(r.n_shifts >= 1);
    assert_true(r.cos_min >= 0.9999);
    assert_true(r.agreement >= 0.95);
    assert_int_equal(r.agree_decisive, r.n_decisive);   /* only near ties may differ */
    if (r.first_divergent >= 0) assert_true(r.first_divergent_margin < 0.01);
    verify_report_free(&r);
    ref_free(ref);
    /* memory stays flat per generated token (100 tokens, with shifts) */
    MemProbe mp = {m, {0}};
    GenResult gr;
    LmSource src = gen_llm_source(m);
    ok(gen_run(&src, prompt, 21, &(GenOptions){.max_new = 100}, probe, &mp, &gr, &e), &e);
    RtMemoryStats end;
    llm_memory(m, &end);
    assert_true(gr.n_shifts >= 2);
    assert_true(mp.warm.fresh_allocs > 0);
    assert_int_equal(end.fresh_allocs, mp.warm.fresh_allocs);
    assert_int_equal(end.pool_bytes, mp.warm.pool_bytes);
    llm_close(m);
    free(meta);
    free(model);
}

static void test_llama_fp16(void **state) {
    (void)state;
    family_fp16("llama");
}

static void test_qwen2_fp16(void **state) {
    (void)state;
    family_fp16("qwen2");
}

static void test_qwen3_fp16(void **state) {
    (void)state;
    family_fp16("qwen3");
}

/* Argmax LM head: the same greedy tokens as the logits LM head; LUT6 passes the default
 * thresholds. */
static void test_argmax_and_lut(void **state) {
    (void)state;
    char *model, *model2;
    char *m1 = convert_tiny("qwen3", 0, 0, 64, 16, &model), *m2 = convert_tiny("qwen3", 0, 1, 64, 16, &model2);
    Llm *a, *b;
    Err e = {{0}};
    ok(llm_open(&a, m1, NULL, &e), &e);
    ok(llm_open(&b, m2, NULL, &e), &e);
    assert_false(llm_argmax_mode(a));
    assert_true(llm_argmax_mode(b));
    int prompt[10] = {5, 9, 17, 33, 65, 129, 200, 7, 3, 1}, ta[70], tb[70];
    GenResult ra, rb;
    LmSource sa = gen_llm_source(a), sb = gen_llm_source(b);
    ok(gen_run(&sa, prompt, 10, &(GenOptions){.max_new = 70}, count_token, ta, &ra, &e), &e);
    ok(gen_run(&sb, prompt, 10, &(GenOptions){.max_new = 70}, count_token, tb, &rb, &e), &e);
    assert_int_equal(ra.n_generated, 70);
    assert_memory_equal(ta, tb, sizeof ta);
    llm_close(a);
    llm_close(b);
    free(m1);
    free(m2);
    free(model2);
    /* LUT6 g8 on every quantized part */
    char *m3 = convert_tiny("llama", 6, 0, 64, 16, &model2);
    Llm *q;
    RefModel *ref;
    ok(llm_open(&q, m3, NULL, &e), &e);
    ok(ref_load(&ref, model2, NULL, &e), &e);
    VerifyReport r;
    ok(verify_run(q, ref, prompt, 10, 32, &r, &e), &e);
    VerifyThresholds th;
    verify_default_thresholds(&th);
    char why[512];
    if (!verify_passes(&r, &th, why, sizeof why)) {
        print_error("LUT6: %s\n", why);
        fail();
    }
    assert_true(r.kl_mean < 0.05);
    assert_true(r.cos_mean > 0.9 && r.cos_mean < 0.9999);   /* quantization shows, a little */
    verify_report_free(&r);
    ref_free(ref);
    /* against the packages' own dequantized weights the LUT model is as exact as fp16 */
    char *dq = path_join(tmp, "llama_dq");
    int replaced;
    ok(verify_dequantized_checkpoint(q, model2, dq, &replaced, &e), &e);
    assert_int_equal(replaced, 4 * 7 + 1);   /* every projection and the LM head (untied) */
    ok(ref_load(&ref, dq, NULL, &e), &e);
    ok(verify_run(q, ref, prompt, 10, 32, &r, &e), &e);
    assert_true(r.cos_min >= 0.999);
    assert_int_equal(r.agree_decisive, r.n_decisive);
    verify_report_free(&r);
    ref_free(ref);
    free(dq);
    llm_close(q);
    free(m3);
    free(model);
    free(model2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meta_yaml),
        cmocka_unit_test(test_sampler),
        cmocka_unit_test(test_gen_loop_and_shift),
        cmocka_unit_test(test_llama_fp16),
        cmocka_unit_test(test_qwen2_fp16),
        cmocka_unit_test(test_qwen3_fp16),
        cmocka_unit_test(test_argmax_and_lut),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
