/* The converter's packages run through the CPU interpreter, the way ANEMLL's chat.py drives them
 * (prefill in full batches through `prefill`, the rest one token at a time through `infer`, one
 * KV state shared by every chunk, the LM head's splits concatenated), against the HF-exact
 * reference forward pass on the refvector checkpoints of every family: llama with llama3 RoPE
 * scaling, llama untied and sharded, qwen3 (q/k norms), qwen2 (q/k/v biases). fp16 packages must
 * follow the float32 reference within fp16 rounding at every position; the argmax LM head must
 * pick the same token as the logits head. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/util.h"
#include "io/checkpoint.h"
#include "model/reference.h"
#include "parts/part.h"
#include "parts/plan.h"
#include "runtime/interp.h"

static char tmpdir[512];

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TEST_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/rtparts.XXXXXX", base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(tmpdir);
    return 0;
}

static const char *data_dir(void) {
    const char *d = getenv("ANEMLL_TEST_DATA");
    return d ? d : "tests/data";
}

#define MAX_CHUNKS 4

typedef struct Converted {
    RtModel *emb, *head, *argmax, *chunk[MAX_CHUNKS];
    int n_chunks;
    long ctx, batch;
} Converted;

static void check(int rc, const Err *e) {
    if (rc < 0) fail_msg("%s", e->msg);
}

/* Writes every part of the checkpoint (fp16, or LUT on the FFN) and opens it in the interpreter. */
static void convert(const char *model, const Arch *a, LutSpec ffn_lut, int n_chunks, long ctx, long batch,
                    Converted *cv) {
    Err e = {0};
    Checkpoint *ck;
    check(ckpt_open(&ck, model, &e), &e);
    PartSource src = {.arch = a, .ckpt = ck, .threads = 1, .info = "test"};
    PartCommon c = {.context = ctx, .batch = batch, .state_length = plan_state_length(a, ctx), .n_chunks = n_chunks};
    LutSpec none = {0, 0};
    PartReport r[PLAN_FFN_FUNCTIONS];
    char *p = path_join(tmpdir, "emb.mlpackage");
    check(part_write_embeddings(&src, &c, &none, p, &r[0], &e), &e);
    check(rt_open(&cv->emb, p, NULL, &e), &e);
    free(p);
    p = path_join(tmpdir, "head.mlpackage");
    check(part_write_lm_head(&src, &c, &none, 0, p, &r[0], &e), &e);
    check(rt_open(&cv->head, p, NULL, &e), &e);
    free(p);
    p = path_join(tmpdir, "argmax.mlpackage");
    check(part_write_lm_head(&src, &c, &none, 1, p, &r[0], &e), &e);
    check(rt_open(&cv->argmax, p, NULL, &e), &e);
    free(p);
    char *pi = path_join(tmpdir, "infer.mlpackage"), *pp = path_join(tmpdir, "prefill.mlpackage");
    for (int ch = 0; ch < n_chunks; ch++) {
        char name[64];
        snprintf(name, sizeof name, "chunk%d.mlpackage", ch);
        p = path_join(tmpdir, name);
        const char *paths[PLAN_FFN_FUNCTIONS] = {pi, pp, NULL, NULL}, *names[2] = {"infer", "prefill"};
        check(part_write_ffn(&src, &c, &ffn_lut, ch, paths, r, &e), &e);
        check(part_combine(2, paths, names, p, 0, &r[0], &e), &e);
        check(rt_open(&cv->chunk[ch], p, NULL, &e), &e);
        free(p);
    }
    free(pi);
    free(pp);
    cv->n_chunks = n_chunks;
    cv->ctx = ctx;
    cv->batch = batch;
    ckpt_close(ck);
}

static void close_converted(Converted *cv) {
    rt_close(cv->emb);
    rt_close(cv->head);
    rt_close(cv->argmax);
    for (int i = 0; i < cv->n_chunks; i++) rt_close(cv->chunk[i]);
}

/* hidden (1, T, H) through every chunk's function fn at positions pos0.. */
static void run_chunks(Converted *cv, const char *fn, float *hidden, int t, int h, int pos0, const float *mask,
                       RtStates *st) {
    Err e = {0};
    int32_t pos[256], cur = pos0;
    for (int i = 0; i < t; i++) pos[i] = pos0 + i;
    for (int c = 0; c < cv->n_chunks; c++) {
        RtFunction *f = rt_function(cv->chunk[c], fn);
        assert_non_null(f);
        RtInput in[4] = {{"hidden_states", rt_f16(hidden, 3, (int64_t[]){1, t, h})},
                         {"position_ids", rt_i32(pos, 1, (int64_t[]){t})},
                         {"causal_mask", rt_f16((float *)mask + (size_t)pos0 * cv->ctx, 4, (int64_t[]){1, 1, t, cv->ctx})},
                         {"current_pos", rt_i32(&cur, 1, (int64_t[]){1})}};
        check(rt_run(f, 4, in, st, &e), &e);
        const RtTensor *o = rt_output(f, "output_hidden_states");
        memcpy(hidden, o->data, sizeof(float) * (size_t)rt_numel(o));
    }
}

static void embed(Converted *cv, const int *tokens, int t, int h, float *hidden) {
    Err e = {0};
    int32_t ids[256];
    for (int i = 0; i < t; i++) ids[i] = tokens[i];
    RtFunction *f = rt_function(cv->emb, NULL);
    RtInput in = {"input_ids", rt_i32(ids, 2, (int64_t[]){1, t})};
    check(rt_run(f, 1, &in, NULL, &e), &e);
    memcpy(hidden, rt_output(f, "hidden_states")->data, sizeof(float) * (size_t)t * (size_t)h);
}

/* Logits from the split head, and the token the argmax head picks. */
static int lm_head(Converted *cv, float *hidden, int h, float *logits) {
    Err e = {0};
    RtInput in = {"hidden_states", rt_f16(hidden, 3, (int64_t[]){1, 1, h})};
    RtFunction *f = rt_function(cv->head, NULL);
    check(rt_run(f, 1, &in, NULL, &e), &e);
    int off = 0;
    for (int i = 0; i < rt_n_outputs(f); i++) {
        char want[32];
        snprintf(want, sizeof want, "logits%d", i + 1);
        const RtTensor *o = rt_output(f, want);
        assert_non_null(o);
        memcpy(logits + off, o->data, sizeof(float) * (size_t)rt_numel(o));
        off += (int)rt_numel(o);
    }
    RtFunction *g = rt_function(cv->argmax, NULL);
    check(rt_run(g, 1, &in, NULL, &e), &e);
    const RtTensor *idx = rt_output(g, "argmax_idx"), *val = rt_output(g, "argmax_val");
    int n = (int)rt_numel(idx), best = 0;
    const float *v = val->data;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    int offset = 0;
    for (int i = 0; i < best; i++) offset += (int)rt_numel(rt_output(f, rt_output_name(f, i)));
    return ((const int32_t *)idx->data)[best] + offset;
}

/* chat.py's loop over a prompt of n tokens; compares the logits of every position it computes
 * one token at a time (from the last full prefill batch on) with the reference. */
static void compare(const char *name, LutSpec ffn_lut, int n_chunks, long ctx, long batch, int n, double tol) {
    char *model = xasprintf("%s/refvectors/%s", data_dir(), name);
    Err e = {0};
    RefModel *ref;
    check(ref_load(&ref, model, NULL, &e), &e);
    const Arch *a = ref_arch(ref);
    Converted cv;
    convert(model, a, ffn_lut, n_chunks, ctx, batch, &cv);
    int h = a->hidden, v = a->vocab;
    int *tokens = xmalloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) tokens[i] = (i * 37 + 11) % v;
    float *want = xmalloc(sizeof(float) * (size_t)n * (size_t)v), *got = xmalloc(sizeof(float) * (size_t)v);
    check(ref_forward(ref, tokens, n, 0, want, 1, &e), &e);
    float *mask = xmalloc(sizeof(float) * (size_t)ctx * (size_t)ctx);
    for (long i = 0; i < ctx; i++)
        for (long j = 0; j < ctx; j++) mask[i * ctx + j] = j <= i ? 0.0f : -INFINITY;
    RtStates *st = rt_states_new(rt_function(cv.chunk[0], "prefill"), &e);
    if (!st) fail_msg("%s", e.msg);
    float *hidden = xmalloc(sizeof(float) * (size_t)batch * (size_t)h);
    int pos = 0;
    for (; pos + batch <= n; pos += (int)batch) {
        embed(&cv, tokens + pos, (int)batch, h, hidden);
        run_chunks(&cv, "prefill", hidden, (int)batch, h, pos, mask, st);
    }
    double worst = 0;
    for (int p = pos ? pos - 1 : 0; p < n; p++) {   /* the last prefilled token again, as chat.py */
        embed(&cv, tokens + p, 1, h, hidden);
        run_chunks(&cv, "infer", hidden, 1, h, p, mask, st);
        int picked = lm_head(&cv, hidden, h, got);
        const float *r = want + (size_t)p * (size_t)v;
        double md = 0, mr = 0;
        for (int i = 0; i < v; i++) {
            if (fabs(got[i] - r[i]) > md) md = fabs(got[i] - r[i]);
            if (fabs(r[i]) > mr) mr = fabs(r[i]);
        }
        if (md / mr > worst) worst = md / mr;
        assert_int_equal(picked, ref_argmax(got, v));         /* argmax head == logits head */
        if (ref_argmax(got, v) != ref_argmax(r, v))
            fail_msg("%s position %d: token %d, reference %d", name, p, ref_argmax(got, v), ref_argmax(r, v));
    }
    print_message("%s (%d chunks, ctx %ld, batch %ld, LUT %d): max |logit diff| / max |logit| = %.4f\n", name,
                  n_chunks, ctx, batch, ffn_lut.bits, worst);
    if (worst > tol) fail_msg("%s: logits differ from the reference by %.4f of their range (limit %.4f)", name, worst, tol);
    rt_states_free(st);
    close_converted(&cv);
    free(hidden);
    free(mask);
    free(want);
    free(got);
    free(tokens);
    ref_free(ref);
    free(model);
}

static void test_llama_rope_llama3(void **state) {
    (void)state;
    compare("llama_rope_llama3", (LutSpec){0, 0}, 2, 64, 8, 30, 0.01);
}

static void test_llama_untied_sharded(void **state) {
    (void)state;
    compare("llama_untied_sharded", (LutSpec){0, 0}, 2, 64, 16, 40, 0.02);
}

static void test_qwen3_qknorm(void **state) {
    (void)state;
    compare("qwen3_qknorm", (LutSpec){0, 0}, 1, 64, 16, 63, 0.01);   /* up to the last position */
}

static void test_qwen2_bias(void **state) {
    (void)state;
    compare("qwen2_bias", (LutSpec){0, 0}, 2, 32, 4, 21, 0.01);
}

/* 8-bit LUTs (256 entries per group of 4 rows) stay close to the reference */
static void test_lut8(void **state) {
    (void)state;
    compare("qwen3_qknorm", (LutSpec){8, 4}, 2, 64, 8, 20, 0.03);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_rope_llama3), cmocka_unit_test(test_llama_untied_sharded),
        cmocka_unit_test(test_qwen3_qknorm),      cmocka_unit_test(test_qwen2_bias),
        cmocka_unit_test(test_lut8),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
