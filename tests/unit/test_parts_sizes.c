/* Packages written by the part builders, from generated checkpoints of every family (and
 * llama with every bias): weight.bin is exactly the size plan.c computes (what --chunk auto
 * and `anemll chunks` rely on) for fp16, grouped, per-tensor and inline LUTs; the combined
 * package stores each weight once, or twice with separate copies; the interface checks
 * accept every package and reject a package of the wrong kind; the FFN and prefill packages
 * written in one pass equal the ones written alone. */
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
#include "model/synth.h"
#include "parts/check.h"
#include "parts/part.h"
#include "parts/plan.h"

static char tmpdir[512];

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TEST_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/parts.XXXXXX", base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(tmpdir);
    return 0;
}

typedef struct Model {
    char *dir;
    Arch arch;
    Checkpoint *ckpt;
    PartSource src;
} Model;

static void model_open_spec(Model *m, const SynthSpec *sp, const char *name) {
    SynthSpec s = *sp;
    Err e = {0};
    s.threads = 1;
    m->dir = path_join(tmpdir, name);
    if (synth_write(&s, m->dir, 1, NULL, &e) < 0) fail_msg("%s", e.msg);
    if (arch_load(&m->arch, m->dir, &e) < 0) fail_msg("%s", e.msg);
    if (ckpt_open(&m->ckpt, m->dir, &e) < 0) fail_msg("%s", e.msg);
    m->src = (PartSource){.arch = &m->arch, .ckpt = m->ckpt, .threads = 1, .info = "test"};
}

static void model_open(Model *m, const char *type, int all_biases, int n_layers) {
    SynthSpec s;
    Err e = {0};
    if (synth_spec_init(&s, type, &e) < 0) fail_msg("%s", e.msg);
    s.attention_bias = all_biases;
    s.mlp_bias = all_biases && !strcmp(type, "llama");
    s.n_layers = n_layers;
    char name[64];
    snprintf(name, sizeof name, "%s%s", type, all_biases ? "_bias" : "");
    model_open_spec(m, &s, name);
}

static void model_close(Model *m) {
    ckpt_close(m->ckpt);
    arch_free(&m->arch);
    free(m->dir);
}

static uint64_t weight_bin(const char *pkg) {
    char *w = path_join(pkg, "Data/com.apple.CoreML/weights/weight.bin");
    uint64_t n = part_disk_bytes(w);
    free(w);
    return n;
}

static char *pkg_path(const char *name) {
    char file[160];
    snprintf(file, sizeof file, "%s.mlpackage", name);
    return path_join(tmpdir, file);
}

static int files_equal(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    Err e = {0};
    if (file_read_all(a, 1 << 28, &x, &nx, &e) < 0) fail_msg("%s", e.msg);
    if (file_read_all(b, 1 << 28, &y, &ny, &e) < 0) fail_msg("%s", e.msg);
    int same = nx == ny && !memcmp(x, y, nx);
    free(x);
    free(y);
    return same;
}

static int packages_equal(const char *a, const char *b) {
    const char *files[] = {"Manifest.json", "Data/com.apple.CoreML/model.mlmodel",
                           "Data/com.apple.CoreML/weights/weight.bin"};
    for (int i = 0; i < 3; i++) {
        char *x = path_join(a, files[i]), *y = path_join(b, files[i]);
        int same = files_equal(x, y);
        free(x);
        free(y);
        if (!same) return 0;
    }
    return 1;
}

/* Step 3 writing the combined package's weights as it writes the first source's
 * (part_write_ffn_mirrored), then step 5 referring to them (part_combine_mirrored): the
 * package part_combine wrote at comb, by reference (r.mirrored). With the last source's digest
 * spoiled, its blobs are found by content: the same package. With the first source's, the
 * mirror is dropped and copying gives it too. */
static void check_mirrored(Model *m, const PartCommon *c, const LutSpec *lut, int ch, int n, const int *kinds,
                           const char *const *fn_names, const char *comb) {
    for (int spoil = 0; spoil < 3; spoil++) { /* none, the last source's digest, the first's */
        char *p[PLAN_FFN_FUNCTIONS] = {0}, *out = pkg_path("mirrored");
        const char *order[PLAN_FFN_FUNCTIONS];
        uint64_t d[PLAN_FFN_FUNCTIONS][2];
        PkgWriter *mw, *mirrors[PLAN_FFN_FUNCTIONS] = {0};
        PartReport r[PLAN_FFN_FUNCTIONS], rc;
        Err e = {0};
        for (int k = 0; k < n; k++) {
            char nm[32];
            snprintf(nm, sizeof nm, "m_%d", kinds[k]);
            p[kinds[k]] = pkg_path(nm);
        }
        if (pkg_writer_open(&mw, out, &e) < 0) fail_msg("%s", e.msg);
        mirrors[kinds[0]] = mw;
        if (part_write_ffn_mirrored(&m->src, c, lut, ch, (const char *const *)p, mirrors, r, &e) < 0)
            fail_msg("%s", e.msg);
        for (int k = 0; k < n; k++) {
            memcpy(d[k], r[kinds[k]].weights_digest, sizeof d[k]);
            order[k] = p[kinds[k]];
        }
        if (spoil) d[spoil == 1 ? n - 1 : 0][1] ^= 1;
        if (part_combine_mirrored(n, order, fn_names, mw, (const uint64_t(*)[2])d, out, &rc, &e) < 0)
            fail_msg("%s", e.msg);
        assert_int_equal(rc.mirrored, spoil < 2);
        assert_true(packages_equal(out, comb));
        for (int k = 0; k < PLAN_FFN_FUNCTIONS; k++) free(p[k]);
        free(out);
    }
}

/* Every part of a model with one LUT setting: sizes, checks, combine. */
static void run_model(const char *type, int biases, LutSpec lut, long ctx, long batch, int n_chunks) {
    Model m;
    model_open(&m, type, biases, n_chunks > 2 ? n_chunks : 2);
    const Arch *a = &m.arch;
    PartCommon c = {.context = ctx, .batch = batch, .state_length = plan_state_length(a, ctx), .n_chunks = n_chunks};
    CheckSpec cs = {.arch = a, .context = ctx, .batch = batch, .state_length = c.state_length, .n_chunks = n_chunks,
                    .lut_bits = lut.bits};
    Err e = {0};
    PartReport r[PLAN_FFN_FUNCTIONS];

    char *emb = pkg_path("emb");
    if (part_write_embeddings(&m.src, &c, &lut, emb, &r[0], &e) < 0) fail_msg("%s %s", type, e.msg);
    assert_int_equal(weight_bin(emb), plan_embeddings_bytes(a, &lut));
    assert_int_equal(r[0].weight_bytes, weight_bin(emb));
    if (check_embeddings(emb, &cs, &e) < 0) fail_msg("%s", e.msg);
    assert_int_equal(r[0].quantized, lut.bits > 0);

    char *head = pkg_path("head");
    for (int argmax = 0; argmax < 2; argmax++) {
        if (part_write_lm_head(&m.src, &c, &lut, argmax, head, &r[0], &e) < 0) fail_msg("%s %s", type, e.msg);
        assert_int_equal(weight_bin(head), plan_lm_head_bytes(a, &lut));
        cs.argmax = argmax;
        if (check_lm_head(head, &cs, &e) < 0) fail_msg("%s", e.msg);
        cs.argmax = !argmax;
        assert_int_equal(check_lm_head(head, &cs, &e), -1);   /* the other mode's outputs are missing */
    }
    /* the wrong kind of package is rejected */
    assert_int_equal(check_ffn(emb, &cs, FFN_INFER, 0, &e), -1);
    assert_int_equal(check_embeddings(head, &cs, &e), -1);

    for (int ch = 0; ch < n_chunks; ch++) {
        int first, count;
        plan_chunk_layers(a->n_layers, n_chunks, ch, &first, &count);
        char *inf = pkg_path("ffn"), *pre = pkg_path("prefill"), *comb = pkg_path("combined");
        const char *both[PLAN_FFN_FUNCTIONS] = {inf, pre}, *names[2] = {"infer", "prefill"};
        if (part_write_ffn(&m.src, &c, &lut, ch, both, r, &e) < 0) fail_msg("%s chunk %d: %s", type, ch, e.msg);
        uint64_t want = plan_ffn_chunk_bytes(a, &lut, c.state_length, first, count, 1);
        assert_int_equal(weight_bin(inf), want);
        assert_int_equal(weight_bin(pre), want);
        if (check_ffn(inf, &cs, FFN_INFER, ch, &e) < 0) fail_msg("%s", e.msg);
        if (check_ffn(pre, &cs, FFN_PREFILL, ch, &e) < 0) fail_msg("%s", e.msg);
        assert_int_equal(check_ffn(inf, &cs, FFN_PREFILL, ch, &e), -1);
        /* one pass for both == each alone */
        char *alone = pkg_path("alone");
        PartReport r1[PLAN_FFN_FUNCTIONS];
        const char *only_pre[PLAN_FFN_FUNCTIONS] = {NULL, alone}, *only_inf[PLAN_FFN_FUNCTIONS] = {alone};
        if (part_write_ffn(&m.src, &c, &lut, ch, only_pre, r1, &e) < 0) fail_msg("%s", e.msg);
        assert_true(packages_equal(alone, pre));
        if (part_write_ffn(&m.src, &c, &lut, ch, only_inf, r1, &e) < 0) fail_msg("%s", e.msg);
        assert_true(packages_equal(alone, inf));
        /* combined: each weight once; separate copies: twice */
        if (part_combine(2, both, names, comb, 0, &r[0], &e) < 0) fail_msg("%s", e.msg);
        assert_int_equal(weight_bin(comb), want);
        assert_true(r[0].shared_bytes > 0);
        assert_int_equal(r[0].mirrored, 0);
        check_mirrored(&m, &c, &lut, ch, 2, (const int[]){FFN_INFER, FFN_PREFILL}, names, comb);
        if (check_ffn(comb, &cs, FFN_COMBINED, ch, &e) < 0) fail_msg("%s", e.msg);
        if (part_combine(2, both, names, comb, 1, &r[0], &e) < 0) fail_msg("%s", e.msg);
        assert_int_equal(weight_bin(comb), plan_ffn_chunk_bytes(a, &lut, c.state_length, first, count, 2));
        assert_int_equal(r[0].shared_bytes, 0);
        if (check_ffn(comb, &cs, FFN_COMBINED, ch, &e) < 0) fail_msg("%s", e.msg);
        /* a chunk checked as another chunk fails (chunk_no, and the last chunk's prefill output) */
        if (n_chunks > 1) assert_int_equal(check_ffn(comb, &cs, FFN_COMBINED, (ch + 1) % n_chunks, &e), -1);
        free(alone);
        free(inf);
        free(pre);
        free(comb);
    }
    free(emb);
    free(head);
    model_close(&m);
}

static void test_llama(void **state) {
    (void)state;
    run_model("llama", 0, (LutSpec){0, 0}, 64, 8, 2);
    run_model("llama", 0, (LutSpec){4, 8}, 64, 8, 2);
}

static void test_llama_biases(void **state) {
    (void)state;
    run_model("llama", 1, (LutSpec){6, 4}, 32, 32, 3);
}

static void test_qwen3(void **state) {
    (void)state;
    run_model("qwen3", 0, (LutSpec){6, 0}, 64, 16, 1);   /* per-tensor LUTs */
    run_model("qwen3", 0, (LutSpec){3, 0}, 64, 1, 2);    /* 8-entry LUTs are inline literals; batch 1 */
}

/* Reading ahead on a background thread: every planned matrix is served from it (no misses) and
 * every block from the reader thread, the packages are byte-identical to reading on demand, a request out of the planned order still
 * works (computed on demand, counted as a miss), and a budget of 0 still keeps one job ahead. */
static void test_prefetch(void **state) {
    (void)state;
    Model m;
    model_open(&m, "llama", 1, 3);
    const Arch *a = &m.arch;
    LutSpec l6 = {6, 4}, l4 = {4, 8};
    PartCommon c = {.context = 64, .batch = 8, .state_length = plan_state_length(a, 64), .n_chunks = 2};
    PartWeightJob *jobs = NULL;
    int n = 0, cap = 0;
    part_jobs_embeddings(a, &l4, 0, &jobs, &n, &cap);
    part_jobs_lm_head(a, &l6, &jobs, &n, &cap);
    for (int ch = 0; ch < 2; ch++) part_jobs_ffn(a, &l6, ch, 2, &jobs, &n, &cap);
    assert_int_equal(n, 1 + 8 + 3 * 7);
    Err e = {0};
    PartReport r[PLAN_FFN_FUNCTIONS];
    const char *names[] = {"e", "h", "f0", "p0", "f1", "p1"};
    char *plain[6], *ahead[6];
    for (int i = 0; i < 6; i++) {
        char nm[16];
        plain[i] = pkg_path(names[i]);
        snprintf(nm, sizeof nm, "%s_pf", names[i]);
        ahead[i] = pkg_path(nm);
    }
    for (size_t budget = 0; budget <= (64u << 20); budget += 64u << 20) {
        PartSource src = m.src;
        src.prefetch = part_prefetch_start(&m.src, jobs, n, budget);
        for (int pass = 0; pass < 2; pass++) {
            PartSource *s = pass ? &src : &m.src;
            char **out = pass ? ahead : plain;
            const char *c0[PLAN_FFN_FUNCTIONS] = {out[2], out[3]}, *c1[PLAN_FFN_FUNCTIONS] = {out[4], out[5]};
            if (part_write_embeddings(s, &c, &l4, out[0], &r[0], &e) < 0 ||
                part_write_lm_head(s, &c, &l6, 0, out[1], &r[0], &e) < 0 ||
                part_write_ffn(s, &c, &l6, 0, c0, r, &e) < 0 || part_write_ffn(s, &c, &l6, 1, c1, r, &e) < 0)
                fail_msg("%s", e.msg);
        }
        int hits, misses, blocks_ahead, blocks_here;
        part_prefetch_counts(src.prefetch, &hits, &misses);
        assert_int_equal(hits, n);
        assert_int_equal(misses, 0);
        /* every job is a grouped LUT of one block (small matrices), each read by the reader thread */
        part_prefetch_blocks(src.prefetch, &blocks_ahead, &blocks_here);
        assert_int_equal(blocks_ahead, n);
        assert_int_equal(blocks_here, 0);
        for (int i = 0; i < 6; i++) assert_true(packages_equal(plain[i], ahead[i]));
        part_prefetch_stop(src.prefetch);
    }
    /* out of order: the LM head first while the plan starts with the embeddings */
    PartSource src = m.src;
    src.prefetch = part_prefetch_start(&m.src, jobs, n, 1 << 20);
    if (part_write_lm_head(&src, &c, &l6, 0, ahead[1], &r[0], &e) < 0) fail_msg("%s", e.msg);
    assert_true(packages_equal(plain[1], ahead[1]));
    int hits, misses;
    part_prefetch_counts(src.prefetch, &hits, &misses);
    assert_int_equal(hits, 0);
    assert_true(misses > 0);
    part_prefetch_stop(src.prefetch);
    part_prefetch_stop(NULL);
    for (int i = 0; i < 6; i++) {
        free(plain[i]);
        free(ahead[i]);
    }
    free(jobs);
    model_close(&m);
}

/* Gemma 3: the four single-function packages of every chunk (one pass == each alone), the
 * combined packages (four functions, or two + two with --split-rotate; shared or separate
 * blobs) are exactly the size plan_ffn_package_bytes computes, and the interface checks accept
 * them and reject them under the wrong kind. types: layer types; shared: local and global RoPE
 * with the same base (one table pair). */
static void run_gemma(const char *type, const char *types, int shared, LutSpec lut, long ctx, long batch, int window,
                      int n_chunks) {
    SynthSpec sp;
    Err e = {0};
    if (synth_spec_init(&sp, type, &e) < 0) fail_msg("%s", e.msg);
    snprintf(sp.layer_types, sizeof sp.layer_types, "%s", types);
    sp.n_layers = (int)(strlen(types) + 1) / 2;
    sp.sliding_window = window;
    if (shared) sp.rope_local_theta = sp.rope_theta;
    Model m;
    model_open_spec(&m, &sp, type);
    const Arch *a = &m.arch;
    assert_int_equal(plan_rope_shared(a), shared);
    PlanFfnShape shape = {.state_length = plan_state_length(a, ctx), .local_length = plan_local_length(a, ctx),
                          .batch = batch, .rotate = plan_has_rotate(a, ctx)};
    assert_int_equal(shape.state_length, ctx);
    PartCommon c = {.context = ctx, .batch = batch, .state_length = shape.state_length,
                    .local_length = shape.local_length, .n_chunks = n_chunks};
    CheckSpec cs = {.arch = a, .context = ctx, .batch = batch, .state_length = c.state_length,
                    .local_length = c.local_length, .n_chunks = n_chunks, .lut_bits = lut.bits};
    PartReport r[PLAN_FFN_FUNCTIONS], rc[PLAN_FFN_FUNCTIONS];
    int nk = shape.rotate ? 4 : 2;
    for (int ch = 0; ch < n_chunks; ch++) {
        int first, count;
        plan_chunk_layers(a->n_layers, n_chunks, ch, &first, &count);
        char *p[PLAN_FFN_FUNCTIONS] = {0}, *alone = pkg_path("g_alone"), *comb = pkg_path("g_comb");
        const char *names[PLAN_FFN_FUNCTIONS];
        for (int k = 0; k < nk; k++) {
            char nm[32];
            snprintf(nm, sizeof nm, "g_%d", k);
            p[k] = pkg_path(nm);
            names[k] = plan_ffn_function_name((PlanFfnKind)k);
        }
        if (part_write_ffn(&m.src, &c, &lut, ch, (const char *const *)p, r, &e) < 0)
            fail_msg("%s chunk %d: %s", types, ch, e.msg);
        for (int k = 0; k < nk; k++) {
            assert_int_equal(weight_bin(p[k]), plan_ffn_package_bytes(a, &lut, &shape, first, count, (PlanFfnKind)k, 0));
            if (check_ffn(p[k], &cs, (PlanFfnKind)k, ch, &e) < 0) fail_msg("%s", e.msg);
            assert_int_equal(check_ffn(p[k], &cs, (PlanFfnKind)((k + 1) % nk), ch, &e), -1);
            const char *one[PLAN_FFN_FUNCTIONS] = {0};
            one[k] = alone;
            if (part_write_ffn(&m.src, &c, &lut, ch, one, rc, &e) < 0) fail_msg("%s", e.msg);
            assert_true(packages_equal(alone, p[k]));
        }
        /* the FFN_PF file: infer, [infer_rotate], prefill, [prefill_rotate] */
        const char *order[PLAN_FFN_FUNCTIONS] = {p[0], p[2], p[1], p[3]};
        const char *fn_order[PLAN_FFN_FUNCTIONS] = {"infer", "infer_rotate", "prefill", "prefill_rotate"};
        if (!shape.rotate) order[1] = p[1], fn_order[1] = "prefill";
        for (int sep = 0; sep < 2; sep++) {
            if (part_combine(nk, order, fn_order, comb, sep, &r[0], &e) < 0) fail_msg("%s", e.msg);
            assert_int_equal(weight_bin(comb), plan_ffn_package_bytes(a, &lut, &shape, first, count, FFN_COMBINED, sep));
            if (check_ffn(comb, &cs, FFN_COMBINED, ch, &e) < 0) fail_msg("%s", e.msg);
            const int kinds[4] = {FFN_INFER, shape.rotate ? FFN_INFER_ROTATE : FFN_PREFILL, FFN_PREFILL,
                                  FFN_PREFILL_ROTATE};
            if (!sep) check_mirrored(&m, &c, &lut, ch, nk, kinds, fn_order, comb);
            if (!shape.rotate) continue;
            /* --split-rotate: infer + prefill, and the _rot file */
            shape.split_rotate = cs.split_rotate = 1;
            assert_int_equal(check_ffn(comb, &cs, FFN_COMBINED, ch, &e), -1);
            const char *two[2] = {p[0], p[1]}, *rot[2] = {p[2], p[3]};
            if (part_combine(2, two, names, comb, sep, &r[0], &e) < 0) fail_msg("%s", e.msg);
            assert_int_equal(weight_bin(comb), plan_ffn_package_bytes(a, &lut, &shape, first, count, FFN_COMBINED, sep));
            if (check_ffn(comb, &cs, FFN_COMBINED, ch, &e) < 0) fail_msg("%s", e.msg);
            if (!sep) check_mirrored(&m, &c, &lut, ch, 2, (const int[]){FFN_INFER, FFN_PREFILL}, names, comb);
            if (part_combine(2, rot, names + 2, comb, sep, &r[0], &e) < 0) fail_msg("%s", e.msg);
            assert_int_equal(weight_bin(comb),
                             plan_ffn_package_bytes(a, &lut, &shape, first, count, FFN_COMBINED_ROT, sep));
            if (check_ffn(comb, &cs, FFN_COMBINED_ROT, ch, &e) < 0) fail_msg("%s", e.msg);
            assert_int_equal(check_ffn(comb, &cs, FFN_COMBINED, ch, &e), -1);
            if (!sep)
                check_mirrored(&m, &c, &lut, ch, 2, (const int[]){FFN_INFER_ROTATE, FFN_PREFILL_ROTATE}, names + 2,
                               comb);
            shape.split_rotate = cs.split_rotate = 0;
        }
        for (int k = 0; k < nk; k++) free(p[k]);
        free(alone);
        free(comb);
    }
    /* rotate kinds are refused where there is no rotation */
    if (!shape.rotate) {
        char *x = pkg_path("g_x");
        const char *rot[PLAN_FFN_FUNCTIONS] = {NULL, NULL, x};
        assert_int_equal(part_write_ffn(&m.src, &c, &lut, 0, rot, r, &e), -1);
        free(x);
    }
    model_close(&m);
}

static void test_gemma3(void **state) {
    (void)state;
    /* chunk 2 has no global layer; the window rotates (context 64 > 16) */
    run_gemma("gemma3_text", "s,s,f,s,s", 0, (LutSpec){0, 0}, 64, 8, 16, 2);
    run_gemma("gemma3_text", "s,f,s,f,s,s", 1, (LutSpec){4, 8}, 32, 4, 8, 3);
    /* multimodal wrapper; the context fits the window: no rotate functions, local cache = context */
    run_gemma("gemma3", "f,s,s", 0, (LutSpec){6, 0}, 32, 8, 64, 2);
}

static void test_qwen2(void **state) {
    (void)state;
    run_model("qwen2", 0, (LutSpec){2, 4}, 128, 8, 2);
    run_model("qwen2", 0, (LutSpec){8, 4}, 64, 8, 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama),
        cmocka_unit_test(test_llama_biases),
        cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_qwen2),
        cmocka_unit_test(test_gemma3),
        cmocka_unit_test(test_prefetch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
