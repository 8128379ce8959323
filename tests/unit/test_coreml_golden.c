/* Every package in ../shared/golden (written by coremltools) and golden/anemll (written by
 * ANEMLL): the reader loads it with full checking, finds what the READMEs say it holds, and
 * writing it back out gives the same model.mlmodel (as protobuf text) and the same
 * weight.bin, byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "coreml/package.h"
#include "coreml_testutil.h"
#include "mil/ops.h"

static char *dir;

static int setup(void **state) {
    (void)state;
    dir = scratch_dir("goldentest");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(dir);
    free(dir);
    return 0;
}

static Package *open_golden(const char *rel) {
    char *path = shared_path(rel);
    if (!path) return NULL;
    Package *pkg;
    Err e;
    if (pkg_open(&pkg, path, 0, &e) < 0) {
        print_error("%s\n", e.msg);
        fail();
    }
    free(path);
    return pkg;
}

static int count_ops(const MilFunction *f, const char *type) {
    int n = 0;
    for (int i = 0; i < f->n_ops; i++) n += !strcmp(f->ops[i]->type, type);
    return n;
}

static const MilOp *first_op(const MilFunction *f, const char *type) {
    for (int i = 0; i < f->n_ops; i++)
        if (!strcmp(f->ops[i]->type, type)) return f->ops[i];
    return NULL;
}

static const char *type_of(const MilValue *v) {
    static char s[160];
    mil_type_str(&v->type, s, sizeof s);
    return s;
}

static char *model_text(const char *pkg_dir) {
    char *path = xasprintf("%s/Data/com.apple.CoreML/model.mlmodel", pkg_dir);
    size_t len;
    char *bytes = read_text(path, &len), *text;
    Err e;
    if (pkg_model_to_text(bytes, len, &text, &e) < 0) fail();
    free(bytes);
    free(path);
    return text;
}

/* Writes a loaded package back out with our writer; returns the new path. */
static char *rewrite(const Package *pkg, const char *name) {
    char *out = xasprintf("%s/%s.mlpackage", dir, name);
    PkgWriter *w;
    Err e;
    if (pkg_writer_open(&w, out, &e) < 0 || pkg_writer_finish(w, pkg->prog, &pkg->desc.metadata, &e) < 0) {
        print_error("%s\n", e.msg);
        fail();
    }
    return out;
}

static void assert_same_weights(const char *a, const char *b) {
    char *fa = xasprintf("%s/Data/com.apple.CoreML/weights/weight.bin", a);
    char *fb = xasprintf("%s/Data/com.apple.CoreML/weights/weight.bin", b);
    assert_true(same_file(fa, fb));
    free(fa);
    free(fb);
}

/* Our text of coremltools' model.mlmodel equals coremltools' own dump (NAME.spec.txt). */
static void assert_text_matches_spec(const char *name) {
    char *pkg = shared_path(name), *spec_rel = xasprintf("golden/%s.spec.txt", name + strlen("golden/"));
    char *spec_path = shared_path(spec_rel);
    char *p = xasprintf("%s.mlpackage", pkg);
    char *text = model_text(p);
    size_t len;
    char *want = read_text(spec_path, &len);
    assert_string_equal(text, want);
    free(want);
    free(text);
    free(p);
    free(spec_path);
    free(spec_rel);
    free(pkg);
}

static void test_simple_fp32_ios15(void **state) {
    (void)state;
    Package *pkg = open_golden("golden/simple_fp32_ios15.mlpackage");
    if (!pkg) skip();
    /* README: spec 6, opset CoreML5: linear, relu, reduce_mean on fp32 */
    assert_int_equal(pkg->spec_version, 6);
    const MilFunction *f = pkg->prog->functions[0];
    assert_string_equal(f->name, "main");
    assert_string_equal(f->opset, "CoreML5");
    assert_int_equal(count_ops(f, "linear"), 1);
    assert_int_equal(count_ops(f, "relu"), 1);
    assert_int_equal(count_ops(f, "reduce_mean"), 1);
    assert_string_equal(type_of(f->inputs[0]), "tensor<fp32, [2, 8]>");
    assert_string_equal(type_of(f->outputs[0]), "tensor<fp32, [2, 1]>");
    assert_false(pkg->desc.multifunction);
    /* the spec text holds a buildInfo program attribute (a dictionary value), which our proto
     * subset leaves out as an unknown field; everything before it must match */
    char *spec_path = shared_path("golden/simple_fp32_ios15.spec.txt"), *pkg_path = shared_path("golden/simple_fp32_ios15.mlpackage");
    size_t slen;
    char *spec = read_text(spec_path, &slen), *ours = model_text(pkg_path);
    char *cut = strstr(spec, "  attributes {\n    key: \"buildInfo\"");
    assert_non_null(cut);
    size_t n = (size_t)(cut - spec);
    assert_true(strlen(ours) > n);
    assert_memory_equal(ours, spec, n);
    free(spec);
    free(ours);
    free(spec_path);
    free(pkg_path);
    /* written back (as spec 9, without buildInfo) it reads as the same program and the same blobs */
    char *out = rewrite(pkg, "simple");
    char *orig = shared_path("golden/simple_fp32_ios15.mlpackage");
    assert_same_weights(out, orig);
    Package *back;
    Err e;
    assert_int_equal(pkg_open(&back, out, 0, &e), 0);
    assert_int_equal(mil_program_compare(pkg->prog, back->prog, &e), 0);
    pkg_close(back);
    free(orig);
    free(out);
    pkg_close(pkg);
}

static void test_stateful_palettized_ios18(void **state) {
    (void)state;
    Package *pkg = open_golden("golden/stateful_palettized_ios18.mlpackage");
    if (!pkg) skip();
    /* README: spec 9, CoreML8: fp16 input, one fp16 state, conv whose weight is a 4-bit
     * per-grouped-channel constexpr_lut_to_dense, layer_norm, read_state, state update, relu */
    assert_int_equal(pkg->spec_version, 9);
    const MilFunction *f = pkg->prog->functions[0];
    assert_string_equal(f->opset, "CoreML8");
    assert_int_equal(pkg->desc.functions[0].n_states, 1);
    assert_string_equal(type_of(f->inputs[1]), "state<tensor<fp16, [1, 64, 8, 8]>>");
    assert_string_equal(type_of(f->inputs[0]), "tensor<fp16, [1, 64, 8, 8]>");
    const MilOp *conv = first_op(f, "conv");
    const MilValue *w = mil_op_input(conv, "weight");
    assert_string_equal(w->producer->type, "constexpr_lut_to_dense");
    const MilValue *ind = mil_op_input(w->producer, "indices"), *lut = mil_op_input(w->producer, "lut");
    assert_null(ind->name);   /* bound inline, as iOS 18 constexprs are */
    assert_string_equal(type_of(ind), "tensor<uint4, [64, 64, 3, 3]>");
    assert_string_equal(type_of(lut), "tensor<fp16, [2, 1, 1, 1, 16, 1]>");   /* 2 groups of 32 channels */
    assert_int_equal(count_ops(f, "layer_norm"), 1);
    assert_int_equal(count_ops(f, "read_state"), 2);
    assert_int_equal(count_ops(f, "write_state"), 1);
    assert_int_equal(count_ops(f, "relu"), 1);
    assert_text_matches_spec("golden/stateful_palettized_ios18");
    char *out = rewrite(pkg, "stateful"), *orig = shared_path("golden/stateful_palettized_ios18.mlpackage");
    char *a = model_text(out), *b = model_text(orig);
    assert_string_equal(a, b);
    assert_same_weights(out, orig);
    free(a);
    free(b);
    free(orig);
    free(out);
    pkg_close(pkg);
}

/* Distinct blob offsets referenced by a function's consts and literals. */
static int blob_offsets(const MilFunction *f, uint64_t *offs, int max) {
    int n = 0;
    for (int i = 0; i < f->n_ops; i++) {
        const MilOp *op = f->ops[i];
        const MilConst *cs[16];
        int k = 0;
        if (op->n_outputs == 1 && op->outputs[0]->data) cs[k++] = op->outputs[0]->data;
        for (int a = 0; a < op->n_args && k < 16; a++)
            for (int j = 0; j < op->args[a].n && k < 16; j++)
                if (!op->args[a].vals[j]->name) cs[k++] = op->args[a].vals[j]->data;
        for (int j = 0; j < k; j++) {
            if (cs[j]->kind != MIL_CONST_BLOB) continue;
            int seen = 0;
            for (int q = 0; q < n; q++) seen |= offs[q] == cs[j]->blob.offset;
            if (!seen && n < max) offs[n++] = cs[j]->blob.offset;
        }
    }
    return n;
}

/* Every blob b uses is one a uses too (same offset: stored once); equal sets if both ways. */
static void assert_blobs_subset(const MilFunction *b, const MilFunction *a, int equal) {
    uint64_t oa[512], ob[512];
    int na = blob_offsets(a, oa, 512), nb = blob_offsets(b, ob, 512);
    assert_true(nb > 0);
    if (equal) assert_int_equal(na, nb);
    for (int i = 0; i < nb; i++) {
        int found = 0;
        for (int j = 0; j < na; j++) found |= ob[i] == oa[j];
        assert_true(found);
    }
}

static void test_multifunction_ios18(void **state) {
    (void)state;
    Package *pkg = open_golden("golden/multifunction_ios18.mlpackage");
    if (!pkg) skip();
    /* README: two functions, prefill (default) and decode, different input/state shapes,
     * sharing weight blobs in one weight.bin */
    assert_true(pkg->desc.multifunction);
    assert_int_equal(pkg->prog->n_functions, 2);
    assert_string_equal(pkg->desc.default_function, "prefill");
    const MilFunction *pre = mil_program_function(pkg->prog, "prefill"), *dec = mil_program_function(pkg->prog, "decode");
    assert_non_null(pre);
    assert_non_null(dec);
    assert_string_equal(type_of(pre->inputs[0]), "tensor<fp16, [1, 64, 8, 8]>");
    assert_string_equal(type_of(dec->inputs[0]), "tensor<fp16, [1, 64, 1, 1]>");
    assert_string_equal(type_of(dec->inputs[1]), "state<tensor<fp16, [1, 64, 1, 1]>>");
    assert_blobs_subset(pre, dec, 1);
    assert_int_equal(pkg->n_blob_files, 1);
    assert_text_matches_spec("golden/multifunction_ios18");
    char *out = rewrite(pkg, "multi"), *orig = shared_path("golden/multifunction_ios18.mlpackage");
    char *a = model_text(out), *b = model_text(orig);
    assert_string_equal(a, b);
    assert_same_weights(out, orig);
    free(a);
    free(b);
    free(orig);
    free(out);
    pkg_close(pkg);
}

static const struct {
    const char *rel;
    int qwen, lut, chunk;
} anemll[] = {
    {"golden/anemll/llama3_tiny/nolut/llama_FFN_PF_chunk_01of02", 0, 0, 1},
    {"golden/anemll/llama3_tiny/nolut/llama_FFN_PF_chunk_02of02", 0, 0, 2},
    {"golden/anemll/llama3_tiny/lut/llama_FFN_PF_lut4_chunk_01of02", 0, 1, 1},
    {"golden/anemll/llama3_tiny/lut/llama_FFN_PF_lut4_chunk_02of02", 0, 1, 2},
    {"golden/anemll/qwen3_tiny/nolut/qwen_FFN_PF_chunk_01of02", 1, 0, 1},
    {"golden/anemll/qwen3_tiny/nolut/qwen_FFN_PF_chunk_02of02", 1, 0, 2},
    {"golden/anemll/qwen3_tiny/lut/qwen_FFN_PF_lut4_chunk_01of02", 1, 1, 1},
    {"golden/anemll/qwen3_tiny/lut/qwen_FFN_PF_lut4_chunk_02of02", 1, 1, 2},
};

static const char *user_value(const PkgMetadata *m, const char *key) {
    for (int i = 0; i < m->n_user; i++)
        if (!strcmp(m->user[i].key, key)) return m->user[i].value;
    return NULL;
}

static void test_anemll_ffn_pf(void **state) {
    (void)state;
    if (!shared_dir()) skip();
    for (size_t k = 0; k < sizeof anemll / sizeof anemll[0]; k++) {
        char *rel = xasprintf("%s.mlpackage", anemll[k].rel);
        Package *pkg = open_golden(rel);
        /* README: infer (default) + prefill sharing one fp16 state model_model_kv_cache_0 */
        assert_true(pkg->desc.multifunction);
        assert_string_equal(pkg->desc.default_function, "infer");
        const MilFunction *inf = mil_program_function(pkg->prog, "infer"), *pre = mil_program_function(pkg->prog, "prefill");
        assert_non_null(inf);
        assert_non_null(pre);
        const char *kv = anemll[k].qwen ? "state<tensor<fp16, [8, 2, 256, 64]>>" : "state<tensor<fp16, [8, 2, 512, 32]>>";
        for (int fi = 0; fi < 2; fi++) {
            const MilFunction *f = fi ? pre : inf;
            const char *names[] = {"hidden_states", "position_ids", "causal_mask", "current_pos", "model_model_kv_cache_0"};
            for (int i = 0; i < 5; i++) assert_string_equal(f->inputs[i]->name, names[i]);
            assert_string_equal(type_of(f->inputs[4]), kv);
            assert_string_equal(f->outputs[0]->name, "output_hidden_states");
        }
        assert_string_equal(type_of(inf->inputs[0]), "tensor<fp16, [1, 1, 128]>");
        assert_string_equal(type_of(pre->inputs[0]), "tensor<fp16, [1, 32, 128]>");
        /* LUT: every projection is constexpr_lut_to_dense, uint4 indices, fp16 LUT [out/8, 1, 1, 1, 16, 1] */
        int n_lut = count_ops(inf, "constexpr_lut_to_dense");
        if (anemll[k].lut) {
            assert_true(n_lut >= 12);
            const MilOp *op = first_op(inf, "constexpr_lut_to_dense");
            const MilValue *ind = mil_op_input(op, "indices"), *lut = mil_op_input(op, "lut");
            assert_int_equal(ind->type.dtype, MIL_UINT4);
            assert_int_equal(lut->type.rank, ind->type.rank + 2);
            assert_int_equal(lut->type.dims[0], ind->type.dims[0] / 8);
            assert_int_equal(lut->type.dims[lut->type.rank - 2], 16);
            assert_string_equal(user_value(&pkg->desc.metadata, "com.anemll.lut_bits"), "4");
        } else {
            assert_int_equal(n_lut, 0);
        }
        /* prefill uses infer's weight blobs (llama's last-chunk prefill skips the last MLP, so
         * it may use fewer) */
        assert_blobs_subset(pre, inf, 0);
        const PkgMetadata *m = &pkg->desc.metadata;
        assert_string_equal(user_value(m, "com.anemll.context_length"), "256");
        assert_string_equal(user_value(m, "com.anemll.num_chunks"), "2");
        assert_string_equal(user_value(m, "com.anemll.batch_size"), "32");
        assert_int_equal(atoi(user_value(m, "com.anemll.chunk_no")), anemll[k].chunk);
        assert_non_null(user_value(m, "com.anemll.info"));
        /* the description as ANEMLL's dump shows it */
        char *desc_rel = xasprintf("%s.description.txt", anemll[k].rel), *desc_path = shared_path(desc_rel);
        char *model_path = xasprintf("%s/Data/com.apple.CoreML/model.mlmodel", pkg->path);
        size_t len, wlen;
        char *bytes = read_text(model_path, &len), *text, *want = read_text(desc_path, &wlen);
        Err e;
        assert_int_equal(pkg_description_to_text(bytes, len, &text, &e), 0);
        assert_string_equal(text, want);
        /* written back: the same model (the description derived anew from the program) and weights */
        char *name = xasprintf("anemll_%zu", k);
        char *out = rewrite(pkg, name);
        char *a = model_text(out), *b = model_text(pkg->path);
        assert_string_equal(a, b);
        assert_same_weights(out, pkg->path);
        free(a);
        free(b);
        free(out);
        free(name);
        free(text);
        free(want);
        free(bytes);
        free(model_path);
        free(desc_path);
        free(desc_rel);
        pkg_close(pkg);
        free(rel);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_fp32_ios15),
        cmocka_unit_test(test_stateful_palettized_ios18),
        cmocka_unit_test(test_multifunction_ios18),
        cmocka_unit_test(test_anemll_ffn_pf),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
