/* .mlpackage writing and reading: round trips of programs using every feature (every op,
 * every const dtype, enumerated shapes, states, two functions sharing a palettized weight),
 * byte-identical output for the same program, atomic writes, and equality with what
 * coremltools writes for the same program (golden/stateful_palettized_ios18, the embeddings
 * description in golden/anemll). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <dirent.h>

#include "common/half.h"
#include "coreml/blob.h"
#include "coreml/package.h"
#include "coreml_testutil.h"
#include "mil/ops.h"

static char *dir;

static int setup(void **state) {
    (void)state;
    dir = scratch_dir("pkgtest");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(dir);
    free(dir);
    return 0;
}

/* Deterministic bytes. */
static void fill(void *p, size_t n, uint32_t seed) {
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        b[i] = (uint8_t)(seed >> 24);
    }
}

/* fp16 values that are finite (random bytes can be NaN, which is fine for storage but not
 * for readable tests). */
static void fill_f16(uint16_t *h, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        h[i] = f32_to_f16(((float)(seed >> 8) / 16777216.0f - 0.5f) * 4.0f);
    }
}

/* ==== A program that uses every feature ==== */

/* Sources of the explicitly added blobs, to compare with what is read back. */
typedef struct Sources {
    uint8_t indices[64 * 32 / 2];   /* uint4 [64, 32, 1, 1] */
    uint16_t lut[8 * 16];           /* fp16 [8, 1, 1, 1, 16, 1] */
    uint16_t emb[32 * 64];          /* fp16 [32, 64] */
    MilBlobRef ind_ref, lut_ref;
} Sources;

static MilValue *palettized_weight(MilFunction *f, Sources *s) {
    MilProgram *p = f->prog;
    MilValue *ind = mil_literal_blob(p, MIL_UINT4, 4, (int64_t[]){64, 32, 1, 1}, &s->ind_ref);
    MilValue *lut = mil_literal_blob(p, MIL_FP16, 6, (int64_t[]){8, 1, 1, 1, 16, 1}, &s->lut_ref);
    return mil_add_lut_to_dense(f, "w_palettized", ind, lut, -1);
}

static void build_infer(MilProgram *p, Sources *s) {
    MilFunction *f = mil_function_new(p, "infer", NULL);
    MilValue *hidden = mil_input(f, "hidden_states", MIL_FP16, 3, (int64_t[]){1, 1, 32});
    MilValue *pos = mil_input(f, "current_pos", MIL_INT32, 1, (int64_t[]){1});
    MilValue *mask = mil_input(f, "causal_mask", MIL_FP16, 4, (int64_t[]){1, 1, 1, 16});
    MilValue *ids = mil_input_enumerated(f, "input_ids", MIL_INT32, 2, 2, (int64_t[]){1, 1, 1, 4});
    MilValue *x32 = mil_input(f, "x32", MIL_FP32, 2, (int64_t[]){2, 12});
    MilValue *kv = mil_state(f, "kv_cache", MIL_FP16, 4, (int64_t[]){2, 2, 16, 8});

    /* consts of every dtype, inline and in the blob file */
    uint8_t buf[256];
    fill(buf, sizeof buf, 7);
    mil_const(f, "c_fp16_blob", MIL_FP16, 1, (int64_t[]){12}, buf, 24);
    mil_const(f, "c_fp32_blob", MIL_FP32, 2, (int64_t[]){3, 4}, (float[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 48);
    mil_const(f, "c_fp32_inline", MIL_FP32, 1, (int64_t[]){3}, (float[]){0.5f, -2, 1e-3f}, 12);
    mil_const(f, "c_int8", MIL_INT8, 1, (int64_t[]){16}, buf, 16);
    mil_const(f, "c_uint8_inline", MIL_UINT8, 1, (int64_t[]){4}, buf, 4);
    mil_const(f, "c_int16", MIL_INT16, 1, (int64_t[]){3}, (int16_t[]){-300, 0, 300}, 6);
    mil_const(f, "c_uint16_blob", MIL_UINT16, 1, (int64_t[]){10}, buf, 20);
    mil_const(f, "c_int32_blob", MIL_INT32, 1, (int64_t[]){10}, buf, 40);
    mil_const(f, "c_uint32", MIL_UINT32, 1, (int64_t[]){2}, (uint32_t[]){4000000000u, 1}, 8);
    mil_const(f, "c_int64", MIL_INT64, 1, (int64_t[]){2}, (int64_t[]){-5, 1ll << 40}, 16);
    mil_const(f, "c_fp64", MIL_FP64, 0, NULL, (double[]){3.25}, 8);
    mil_const_boolv(f, "c_bools", 12, (uint8_t[]){1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1});   /* bools stay inline */
    mil_const_strv(f, "c_strings", 2, (const char *[]){"a \"quoted\" one", "two"});
    uint8_t u3[3];
    mil_pack_subbyte(MIL_UINT3, (uint8_t[]){1, 2, 3, 4, 5, 6, 7, 0}, 8, u3);
    mil_const(f, "c_uint3_inline", MIL_UINT3, 1, (int64_t[]){8}, u3, 3);
    uint8_t u6[9];
    uint8_t v6[12];
    for (int i = 0; i < 12; i++) v6[i] = (uint8_t)(i * 5);
    mil_pack_subbyte(MIL_UINT6, v6, 12, u6);
    mil_const(f, "c_uint6_blob", MIL_UINT6, 2, (int64_t[]){3, 4}, u6, 9);
    mil_const(f, "c_uint1_blob", MIL_UINT1, 1, (int64_t[]){16}, buf, 2);
    mil_const(f, "c_uint2_inline", MIL_UINT2, 1, (int64_t[]){4}, buf, 1);
    mil_const(f, "c_int4_blob", MIL_INT4, 1, (int64_t[]){20}, buf, 10);

    /* embeddings: gather with an enumerated-shape input */
    MilValue *emb = mil_const(f, "embed", MIL_FP16, 2, (int64_t[]){32, 64}, s->emb, sizeof s->emb);
    MilValue *zero = mil_const_i32(f, "zero", 0);
    MilValue *ge = mil_add_greater_equal(f, "ids_ge", ids, zero);
    MilValue *wrap = mil_add_add(f, "ids_wrap", ids, mil_const_i32(f, "vocab", 32));
    MilValue *sel = mil_add_select(f, "ids_sel", ge, ids, wrap);
    MilValue *emb_out = mil_add_gather(f, "embeddings", emb, sel, 0, 0);

    /* RMSNorm via layer_norm on [x, -x] (the ANEMLL pattern) */
    MilValue *negx = mil_add_mul(f, "neg_x", hidden, mil_const_fp16(f, "minus_one", -1.0f));
    MilValue *dbl = mil_add_concat(f, "doubled", 2, (MilValue *[]){hidden, negx}, -1, 0);
    MilValue *ln = mil_add_layer_norm(f, "ln", dbl, 1, (int32_t[]){-1}, NULL, NULL, 1e-5);
    MilSlice half = {3, (int32_t[]){0, 0, 0}, (int32_t[]){1, 1, 32}, NULL, NULL, NULL, NULL, (uint8_t[]){1, 1, 0}, NULL};
    MilValue *normed = mil_add_slice_by_index(f, "normed", ln, &half);
    /* 1x1 conv with a palettized weight, on the (1, C, 1, S) layout */
    MilValue *t = mil_add_transpose(f, "to_c", normed, 3, (int32_t[]){0, 2, 1});
    MilValue *x4 = mil_add_expand_dims(f, "to_4d", t, 1, (int32_t[]){2});
    MilValue *w = palettized_weight(f, s);
    MilValue *y = mil_add_conv(f, "proj", x4, w, NULL, NULL);   /* (1, 64, 1, 1) */
    MilValue *y3 = mil_add_squeeze(f, "proj_3d", y, 1, (int32_t[]){2});
    MilValue *heads = mil_add_reshape(f, "heads", y3, 4, (int32_t[]){1, 2, 1, 32});
    MilOp *sp = mil_add_split(f, "qk", heads, 3, 4, NULL);    /* 4 x (1, 2, 1, 8) */
    MilValue *q = sp->outputs[0], *k_new = sp->outputs[1];
    /* KV cache write at a run-time position, then read back */
    MilValue *cache = mil_add_read_state(f, "cache", kv);
    MilValue *z1 = mil_const_i32v(f, "z1", 1, (int32_t[]){0});
    MilValue *end_pos = mil_add_add(f, "end_pos", pos, mil_const_i32(f, "one", 1));
    MilValue *begin = mil_add_concat(f, "kv_begin", 4, (MilValue *[]){z1, z1, pos, z1}, 0, 0);
    MilValue *end = mil_add_concat(f, "kv_end", 4,
                                   (MilValue *[]){mil_const_i32v(f, "one_v", 1, (int32_t[]){1}), mil_const_i32v(f, "two_v", 1, (int32_t[]){2}),
                                                  end_pos, mil_const_i32v(f, "eight_v", 1, (int32_t[]){8})}, 0, 0);
    MilSlice row = {4, NULL, NULL, begin, end, (int32_t[]){1, 1, 1, 1}, (uint8_t[]){0, 0, 0, 0}, (uint8_t[]){0, 1, 0, 1},
                    (uint8_t[]){0, 0, 0, 0}};
    MilValue *kv2 = mil_add_slice_update(f, "kv_write", cache, k_new, &row);
    MilValue *kv3 = mil_add_update_state(f, "kv_update", kv, kv2);
    MilSlice krow = {4, (int32_t[]){0, 0, 0, 0}, (int32_t[]){1, 2, 16, 8}, NULL, NULL, NULL, NULL, NULL, NULL};
    MilValue *keys = mil_add_slice_by_index(f, "keys", kv3, &krow);          /* (1, 2, 16, 8) */
    MilValue *scores = mil_add_matmul(f, "scores", q, keys, 0, 1);            /* (1, 2, 1, 16) */
    MilValue *masked = mil_add_add(f, "masked", scores, mask);
    MilValue *mx = mil_add_reduce_max(f, "mx", masked, 1, (int32_t[]){-1}, 1);
    MilValue *ex = mil_add_exp(f, "ex", mil_add_sub(f, "shifted", masked, mx));
    MilValue *p1 = mil_add_real_div(f, "probs", ex, mil_add_reduce_sum(f, "sum", ex, 1, (int32_t[]){-1}, 1));
    MilValue *p2 = mil_add_softmax(f, "probs2", masked, -1);
    MilValue *pm = mil_add_maximum(f, "pmax", p1, mil_add_minimum(f, "pmin", p1, p2));
    MilValue *ctx = mil_add_matmul(f, "ctx", pm, keys, 0, 0);                 /* (1, 2, 1, 8) */
    MilValue *act = mil_add_silu(f, "act", mil_add_gelu(f, "gl", ctx, "EXACT"));
    act = mil_add_tanh(f, "th", mil_add_clip(f, "cl", act, -3.0, 3.0));
    act = mil_add_sqrt(f, "sq", mil_add_relu(f, "rl", act));
    act = mil_add_rsqrt(f, "rs", mil_add_pow(f, "pw", act, mil_const_fp16(f, "two", 2.0f)), 1e-6);
    MilValue *tiled = mil_add_tile(f, "tiled", act, 4, (int32_t[]){1, 1, 2, 1});   /* (1, 2, 2, 8) */
    MilValue *band = mil_add_band_part(f, "band", tiled, -1, 0);
    MilValue *m = mil_add_reduce_mean(f, "mean", band, 2, (int32_t[]){2, 3}, 0);   /* (1, 2) */
    MilValue *out_h = mil_add_cast(f, "out_h", m, MIL_FP32);
    /* argmax + gather_along_axis (the LM head pattern) */
    MilValue *am = mil_add_reduce_argmax(f, "am", masked, -1, 1);
    MilValue *am16 = mil_add_cast(f, "am16", am, MIL_INT16);
    MilValue *best = mil_add_gather_along_axis(f, "best", masked, am16, -1);
    MilValue *lt = mil_add_less(f, "lt", best, mil_const_fp16(f, "thr", 0.0f));
    MilValue *lt_i = mil_add_cast(f, "lt_i", lt, MIL_INT32);
    /* fp32 linear with an explicit bias */
    MilValue *lw = mil_const(f, "lin_w", MIL_FP32, 2, (int64_t[]){5, 12}, buf, 240);
    MilValue *lin = mil_add_linear(f, "lin", x32, lw, NULL);
    MilValue *ident = mil_add_identity(f, "pos_copy", pos);
    mil_set_outputs(f, 6, (MilValue *[]){emb_out, out_h, am, lt_i, lin, ident});
}

static void build_prefill(MilProgram *p, Sources *s) {
    MilFunction *f = mil_function_new(p, "prefill", NULL);
    MilValue *hidden = mil_input(f, "hidden_states", MIL_FP16, 3, (int64_t[]){1, 4, 32});
    MilValue *kv = mil_state(f, "kv_cache", MIL_FP16, 4, (int64_t[]){2, 2, 16, 8});
    MilValue *t = mil_add_transpose(f, "to_c", hidden, 3, (int32_t[]){0, 2, 1});
    MilValue *x4 = mil_add_expand_dims(f, "to_4d", t, 1, (int32_t[]){2});   /* (1, 32, 1, 4) */
    MilValue *w = palettized_weight(f, s);   /* the same blobs as in infer */
    MilValue *y = mil_add_conv(f, "proj", x4, w, NULL, NULL);                 /* (1, 64, 1, 4) */
    MilValue *cache = mil_add_read_state(f, "cache", kv);
    MilValue *r = mil_add_reshape(f, "r", y, 4, (int32_t[]){2, 2, 16, 4});
    MilValue *r2 = mil_add_concat(f, "r2", 2, (MilValue *[]){r, r}, 3, 1);   /* interleave: (2, 2, 16, 8) */
    MilValue *sum = mil_add_add(f, "sum", cache, r2);
    mil_add_write_state(f, "store", kv, sum);
    MilValue *out = mil_add_reduce_sum(f, "out", y, 1, (int32_t[]){1}, 1);
    mil_set_outputs(f, 1, &out);
}

static void init_sources(Sources *s) {
    uint8_t vals[64 * 32];
    fill(vals, sizeof vals, 99);
    for (size_t i = 0; i < sizeof vals; i++) vals[i] &= 15;
    mil_pack_subbyte(MIL_UINT4, vals, sizeof vals, s->indices);
    fill_f16(s->lut, 8 * 16, 5);
    fill_f16(s->emb, 32 * 64, 6);
}

static const PkgMetadata test_meta = {
    "test package", "0.1", "anemll-c tests", "MIT", 2,
    (const PkgKeyValue[]){{"com.anemll.z_last", "z"}, {"com.anemll.context_length", "16"}},
};

/* Builds the two-function program into a package at path. */
static MilProgram *write_every_feature(const char *path, Sources *s) {
    Err e;
    PkgWriter *w;
    ok(pkg_writer_open(&w, path, &e), &e);
    assert_false(path_exists(path));   /* nothing at the final path until finish */
    MilProgram *p = mil_program_new();
    pkg_writer_attach(w, p);
    init_sources(s);
    ok(pkg_writer_add_blob(w, MIL_UINT4, 64 * 32, s->indices, &s->ind_ref, &e), &e);
    ok(pkg_writer_add_blob(w, MIL_FP16, 8 * 16, s->lut, &s->lut_ref, &e), &e);
    build_infer(p, s);
    build_prefill(p, s);
    mil_program_set_default_function(p, "infer");
    ok(mil_error(p, &e), &e);
    ok(pkg_writer_finish(w, p, &test_meta, &e), &e);
    return p;
}

static const MilValue *literal_arg(const MilFunction *f, const char *op, const char *param) {
    for (int i = 0; i < f->n_ops; i++)
        if (!strcmp(f->ops[i]->name, op)) return mil_op_input(f->ops[i], param);
    return NULL;
}

static void test_round_trip_every_feature(void **state) {
    (void)state;
    Sources s;
    char *path = path_join(dir, "every.mlpackage");
    MilProgram *orig = write_every_feature(path, &s);
    Package *pkg;
    Err e;
    ok(pkg_open(&pkg, path, 0, &e), &e);
    /* the same program, structurally, const data byte for byte */
    ok(mil_program_compare(orig, pkg->prog, &e), &e);
    assert_int_equal(pkg->spec_version, 9);
    assert_true(pkg->desc.multifunction);
    assert_string_equal(pkg->desc.default_function, "infer");
    assert_int_equal(pkg->desc.n_functions, 2);
    /* explicitly added blobs: read back byte for byte, shared by both functions */
    const MilFunction *inf = mil_program_function(pkg->prog, "infer"), *pre = mil_program_function(pkg->prog, "prefill");
    const MilValue *ia = literal_arg(inf, "w_palettized", "indices"), *ib = literal_arg(pre, "w_palettized", "indices");
    const MilValue *la = literal_arg(inf, "w_palettized", "lut"), *lb = literal_arg(pre, "w_palettized", "lut");
    assert_non_null(ia);
    assert_non_null(ib);
    assert_int_equal(ia->data->blob.offset, ib->data->blob.offset);
    assert_int_equal(la->data->blob.offset, lb->data->blob.offset);
    assert_int_equal(ia->data->blob.offset, 64);   /* the first blob written */
    assert_memory_equal(mil_const_bytes(ia->data), s.indices, sizeof s.indices);
    assert_memory_equal(mil_const_bytes(la->data), s.lut, sizeof s.lut);
    const MilValue *emb = mil_lookup(inf, "embed");
    assert_int_equal(emb->data->kind, MIL_CONST_BLOB);
    assert_memory_equal(mil_const_bytes(emb->data), s.emb, sizeof s.emb);
    const MilValue *sv = mil_lookup(inf, "c_strings");
    assert_string_equal(sv->data->strs[0], "a \"quoted\" one");
    assert_int_equal(mil_lookup(inf, "c_bools")->data->kind, MIL_CONST_BYTES);
    assert_int_equal(mil_lookup(inf, "c_int32_blob")->data->kind, MIL_CONST_BLOB);
    assert_int_equal(mil_lookup(inf, "c_uint3_inline")->data->kind, MIL_CONST_BYTES);
    /* enumerated shapes survive (description -> MIL input) */
    const MilValue *ids = mil_lookup(inf, "input_ids");
    assert_int_equal(ids->n_shapes, 2);
    assert_int_equal(ids->shapes[3], 4);
    /* every blob in weight.bin is referenced, none twice */
    PkgBlobFileInfo bi;
    assert_int_equal(pkg->n_blob_files, 1);
    pkg_blob_file_info(pkg, 0, &bi);
    assert_string_equal(bi.name, "weights/weight.bin");
    assert_int_equal(bi.count, 12);   /* indices, lut, 9 blob consts in infer, lin_w */
    /* metadata, sorted by key */
    assert_int_equal(pkg->desc.metadata.n_user, 2);
    assert_string_equal(pkg->desc.metadata.user[0].key, "com.anemll.context_length");
    assert_string_equal(pkg->desc.metadata.author, "anemll-c tests");
    pkg_close(pkg);
    mil_program_free(orig);
    free(path);
}

static void test_state_and_io_description(void **state) {
    (void)state;
    Sources s;
    char *path = path_join(dir, "desc.mlpackage");
    MilProgram *orig = write_every_feature(path, &s);
    char *model = xasprintf("%s/Data/com.apple.CoreML/model.mlmodel", path);
    size_t len;
    char *bytes = read_text(model, &len);
    char *text;
    Err e;
    ok(pkg_description_to_text(bytes, len, &text, &e), &e);
    /* states only in state[], fp16 I/O, enumerated input with the default shape first,
     * outputs with unknown dims without a shape, the default function */
    assert_contains(text, "  state {\n    name: \"kv_cache\"\n    type {\n      stateType {\n        arrayType {\n"
                          "          shape: 2\n          shape: 2\n          shape: 16\n          shape: 8\n"
                          "          dataType: FLOAT16\n");
    assert_contains(text, "    name: \"input_ids\"\n    type {\n      multiArrayType {\n        shape: 1\n        shape: 1\n"
                          "        dataType: INT32\n        enumeratedShapes {\n          shapes {\n            shape: 1\n"
                          "            shape: 1\n          }\n          shapes {\n            shape: 1\n            shape: 4\n");
    assert_contains(text, "    name: \"embeddings\"\n    type {\n      multiArrayType {\n        dataType: FLOAT16\n      }\n");
    assert_contains(text, "defaultFunctionName: \"infer\"\n");
    assert_null(strstr(text, "\ninput {"));   /* multifunction: no top-level features */
    free(text);
    free(bytes);
    free(model);
    mil_program_free(orig);
    free(path);
}

static void test_deterministic_output(void **state) {
    (void)state;
    Sources s1, s2;
    char *a = path_join(dir, "det_a.mlpackage"), *b = path_join(dir, "det_b.mlpackage");
    mil_program_free(write_every_feature(a, &s1));
    mil_program_free(write_every_feature(b, &s2));
    const char *files[] = {"Manifest.json", "Data/com.apple.CoreML/model.mlmodel",
                           "Data/com.apple.CoreML/weights/weight.bin"};
    for (int i = 0; i < 3; i++) {
        char *fa = path_join(a, files[i]), *fb = path_join(b, files[i]);
        assert_true(same_file(fa, fb));
        free(fa);
        free(fb);
    }
    /* the manifest: two items, UUID-shaped uppercase identifiers, the root is the model */
    char *mpath = path_join(a, "Manifest.json");
    size_t len;
    char *m = read_text(mpath, &len);
    char root[64] = {0};
    const char *r = strstr(m, "\"rootModelIdentifier\": \"");
    assert_non_null(r);
    memcpy(root, r + 24, 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(root[i], '-');
        else
            assert_true((root[i] >= '0' && root[i] <= '9') || (root[i] >= 'A' && root[i] <= 'F'));
    }
    char *entry = xasprintf("\"%s\": {\n            \"author\": \"com.apple.CoreML\",\n"
                            "            \"description\": \"CoreML Model Specification\",\n"
                            "            \"name\": \"model.mlmodel\",\n"
                            "            \"path\": \"com.apple.CoreML/model.mlmodel\"", root);
    assert_contains(m, entry);
    assert_contains(m, "\"name\": \"weights\",\n            \"path\": \"com.apple.CoreML/weights\"");
    assert_contains(m, "\"fileFormatVersion\": \"1.0.0\"");
    assert_int_equal(m[len - 1], '\n');
    free(entry);
    free(m);
    free(mpath);
    free(a);
    free(b);
}

static int count_siblings(const char *prefix) {
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)))
        if (!strncmp(de->d_name, prefix, strlen(prefix))) n++;
    closedir(d);
    return n;
}

static MilProgram *tiny_program(float scale) {
    MilProgram *p = mil_program_new();
    MilFunction *f = mil_function_new(p, "main", NULL);
    MilValue *x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){1, 16});
    MilValue *y = mil_add_mul(f, "y", x, mil_const_fp16(f, "scale", scale));
    mil_set_outputs(f, 1, &y);
    return p;
}

static void test_atomic_writes(void **state) {
    (void)state;
    Err e;
    PkgWriter *w;
    char *path = path_join(dir, "atomic.mlpackage");
    /* abort leaves nothing behind */
    ok(pkg_writer_open(&w, path, &e), &e);
    MilBlobRef ref;
    uint8_t data[100] = {1};
    ok(pkg_writer_add_blob(w, MIL_UINT8, 100, data, &ref, &e), &e);
    assert_int_equal(count_siblings("atomic.mlpackage"), 1);   /* the temporary directory */
    assert_false(path_exists(path));
    pkg_writer_abort(w);
    assert_int_equal(count_siblings("atomic.mlpackage"), 0);
    /* a failed build writes nothing */
    ok(pkg_writer_open(&w, path, &e), &e);
    MilProgram *bad = tiny_program(1.0f);
    mil_add_add(bad->functions[0], "oops", bad->functions[0]->inputs[0], mil_const_fp32(bad->functions[0], "f32", 1));
    assert_int_equal(pkg_writer_finish(w, bad, NULL, &e), -1);
    assert_contains(e.msg, "must have the same dtype");
    assert_int_equal(count_siblings("atomic.mlpackage"), 0);
    mil_program_free(bad);
    /* a program without outputs is refused too */
    ok(pkg_writer_open(&w, path, &e), &e);
    MilProgram *noout = mil_program_new();
    mil_input(mil_function_new(noout, "main", NULL), "x", MIL_FP16, 1, (int64_t[]){2});
    assert_int_equal(pkg_writer_finish(w, noout, NULL, &e), -1);
    assert_contains(e.msg, "has no outputs");
    assert_int_equal(count_siblings("atomic.mlpackage"), 0);
    mil_program_free(noout);
    /* replacing an existing package */
    MilProgram *p1 = tiny_program(2.0f), *p2 = tiny_program(3.0f);
    ok(pkg_writer_open(&w, path, &e), &e);
    ok(pkg_writer_finish(w, p1, NULL, &e), &e);
    ok(pkg_writer_open(&w, path, &e), &e);
    ok(pkg_writer_finish(w, p2, NULL, &e), &e);
    assert_int_equal(count_siblings("atomic.mlpackage"), 1);   /* no temporary or old copies left */
    Package *pkg;
    ok(pkg_open(&pkg, path, 0, &e), &e);
    ok(mil_program_compare(p2, pkg->prog, &e), &e);
    pkg_close(pkg);
    mil_program_free(p1);
    mil_program_free(p2);
    /* wrong names and paths */
    assert_int_equal(pkg_writer_open(&w, "model.zip", &e), -1);
    assert_contains(e.msg, "must end in .mlpackage");
    char *file = path_join(dir, "plain.mlpackage");
    write_bytes(file, "x", 1);
    MilProgram *p3 = tiny_program(1.0f);
    ok(pkg_writer_open(&w, file, &e), &e);
    assert_int_equal(pkg_writer_finish(w, p3, NULL, &e), -1);
    assert_contains(e.msg, "is not a package directory");
    assert_int_equal(count_siblings("plain.mlpackage"), 1);   /* the file is untouched, no leftovers */
    mil_program_free(p3);
    free(file);
    free(path);
}

/* Without a blob sink, large consts stay in memory while building and go to weight.bin when
 * the package is written; identical ones are still stored once. */
static void test_write_without_sink(void **state) {
    (void)state;
    Err e;
    char *path = path_join(dir, "nosink.mlpackage");
    MilProgram *p = mil_program_new();
    uint16_t wts[2][64];
    fill_f16(wts[0], 64, 11);
    fill_f16(wts[1], 64, 12);
    for (int k = 0; k < 2; k++) {
        MilFunction *f = mil_function_new(p, k ? "b" : "a", NULL);
        MilValue *x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){1, 8});
        MilValue *w1 = mil_const(f, "w_shared", MIL_FP16, 2, (int64_t[]){8, 8}, wts[0], 128);
        MilValue *w2 = mil_const(f, "w_own", MIL_FP16, 2, (int64_t[]){8, 8}, wts[k], 128);
        MilValue *y = mil_add_linear(f, "y", mil_add_linear(f, "h", x, w1, NULL), w2, NULL);
        mil_set_outputs(f, 1, &y);
    }
    assert_int_equal(mil_lookup(p->functions[0], "w_shared")->data->kind, MIL_CONST_BYTES);
    PkgWriter *w;
    ok(pkg_writer_open(&w, path, &e), &e);
    ok(pkg_writer_finish(w, p, NULL, &e), &e);
    Package *pkg;
    ok(pkg_open(&pkg, path, 0, &e), &e);
    ok(mil_program_compare(p, pkg->prog, &e), &e);
    const MilFunction *fa = mil_program_function(pkg->prog, "a"), *fb = mil_program_function(pkg->prog, "b");
    assert_int_equal(mil_lookup(fa, "w_shared")->data->kind, MIL_CONST_BLOB);
    assert_int_equal(mil_lookup(fa, "w_shared")->data->blob.offset, mil_lookup(fb, "w_shared")->data->blob.offset);
    /* a.w_own has the same bytes as w_shared: stored once too; b.w_own differs */
    assert_int_equal(mil_lookup(fa, "w_own")->data->blob.offset, mil_lookup(fa, "w_shared")->data->blob.offset);
    assert_int_not_equal(mil_lookup(fb, "w_own")->data->blob.offset, mil_lookup(fb, "w_shared")->data->blob.offset);
    PkgBlobFileInfo bi;
    pkg_blob_file_info(pkg, 0, &bi);
    assert_int_equal(bi.count, 2);   /* w_shared = a.w_own, and b.w_own (the 8-element zero biases are inline) */
    pkg_close(pkg);
    mil_program_free(p);
    free(path);
}

/* ==== Compared with coremltools ==== */

static const void *blob_of(const MilFunction *f, const char *name, const char *param) {
    const MilValue *v = param ? literal_arg(f, name, param) : mil_lookup(f, name);
    assert_non_null(v);
    return mil_const_bytes(v->data);
}

/* golden/stateful_palettized_ios18 rebuilt with the builder: the same model.mlmodel (as
 * protobuf text) and the same weight.bin, byte for byte. */
static void test_same_as_coremltools_stateful(void **state) {
    (void)state;
    char *golden = shared_path("golden/stateful_palettized_ios18.mlpackage");
    if (!golden) skip();
    Err e;
    Package *g;
    ok(pkg_open(&g, golden, 0, &e), &e);
    const MilFunction *gf = g->prog->functions[0];
    char *path = path_join(dir, "stateful.mlpackage");
    PkgWriter *w;
    ok(pkg_writer_open(&w, path, &e), &e);
    MilProgram *p = mil_program_new();
    pkg_writer_attach(w, p);
    MilFunction *f = mil_function_new(p, "main", NULL);
    MilValue *x = mil_input(f, "x", MIL_FP16, 4, (int64_t[]){1, 64, 8, 8});
    MilValue *cache = mil_state(f, "cache", MIL_FP16, 4, (int64_t[]){1, 64, 8, 8});
    MilBlobRef ind_ref, lut_ref;
    ok(pkg_writer_add_blob(w, MIL_UINT4, 64 * 64 * 9, blob_of(gf, "conv_weight_0_palettized", "indices"), &ind_ref, &e), &e);
    ok(pkg_writer_add_blob(w, MIL_FP16, 32, blob_of(gf, "conv_weight_0_palettized", "lut"), &lut_ref, &e), &e);
    MilValue *wgt = mil_add_lut_to_dense(f, "conv_weight_0_palettized",
                                         mil_literal_blob(p, MIL_UINT4, 4, (int64_t[]){64, 64, 3, 3}, &ind_ref),
                                         mil_literal_blob(p, MIL_FP16, 6, (int64_t[]){2, 1, 1, 1, 16, 1}, &lut_ref), -1);
    MilValue *bias = mil_const(f, "conv_bias_0", MIL_FP16, 1, (int64_t[]){64}, blob_of(gf, "conv_bias_0", NULL), 128);
    MilConvOpts same = {.pad_type = "same"};
    MilValue *conv = mil_add_conv(f, "conv", x, wgt, bias, &same);
    MilValue *axes = mil_const_i32v(f, "ln_axes_0", 1, (int32_t[]){1});
    MilValue *gamma = mil_const(f, "ln_gamma_0", MIL_FP16, 1, (int64_t[]){64}, blob_of(gf, "ln_gamma_0", NULL), 128);
    MilValue *beta = mil_const(f, "ln_beta_0", MIL_FP16, 1, (int64_t[]){64}, blob_of(gf, "ln_beta_0", NULL), 128);
    MilValue *eps = mil_const(f, "ln_epsilon_0", MIL_FP16, 0, NULL, (uint8_t[]){0xA8, 0x00}, 2);
    MilValue *ln = mil_add_op1(f, "layer_norm", "ln", 5,
                               (MilIn[]){MIL_IN("x", conv), MIL_IN("axes", axes), MIL_IN("gamma", gamma),
                                         MIL_IN("beta", beta), MIL_IN("epsilon", eps)});
    MilValue *rd = mil_add_read_state(f, "cache_read", cache);
    MilValue *acc = mil_add_add(f, "acc", ln, rd);
    MilValue *upd = mil_add_update_state(f, "coreml_update_state_1", cache, acc);
    MilValue *out = mil_add_relu(f, "out", upd);
    mil_set_outputs(f, 1, &out);
    PkgMetadata meta = {NULL, NULL, NULL, NULL, 3,
                        (const PkgKeyValue[]){{"com.github.apple.coremltools.version", "9.1.dev1"},
                                              {"com.github.apple.coremltools.source", "milinternal"},
                                              {"com.github.apple.coremltools.conversion_date", "2026-11-26"}}};
    ok(pkg_writer_finish(w, p, &meta, &e), &e);

    char *model = xasprintf("%s/Data/com.apple.CoreML/model.mlmodel", path);
    size_t len, glen;
    char *bytes = read_text(model, &len), *text;
    ok(pkg_model_to_text(bytes, len, &text, &e), &e);
    char *spec_path = shared_path("golden/stateful_palettized_ios18.spec.txt");
    char *want = read_text(spec_path, &glen);
    assert_string_equal(text, want);
    char *ours = xasprintf("%s/Data/com.apple.CoreML/weights/weight.bin", path);
    char *theirs = xasprintf("%s/Data/com.apple.CoreML/weights/weight.bin", golden);
    assert_true(same_file(ours, theirs));
    free(ours);
    free(theirs);
    free(want);
    free(spec_path);
    free(text);
    free(bytes);
    free(model);
    mil_program_free(p);
    pkg_close(g);
    free(path);
    free(golden);
}

/* The embeddings part's description, as ANEMLL writes it (golden/anemll): input_ids with
 * enumerated shapes [1,1] (default) and [1,32], hidden_states without a declared shape. */
static void test_same_as_anemll_embeddings_description(void **state) {
    (void)state;
    char *want_path = shared_path("golden/anemll/llama3_tiny/nolut/llama_embeddings.description.txt");
    if (!want_path) skip();
    Err e;
    char *path = path_join(dir, "embeddings.mlpackage");
    PkgWriter *w;
    ok(pkg_writer_open(&w, path, &e), &e);
    MilProgram *p = mil_program_new();
    pkg_writer_attach(w, p);
    MilFunction *f = mil_function_new(p, "main", NULL);
    MilValue *ids = mil_input_enumerated(f, "input_ids", MIL_INT32, 2, 2, (int64_t[]){1, 1, 1, 32});
    uint16_t table[64 * 128];
    fill_f16(table, 64 * 128, 3);
    MilValue *emb = mil_const(f, "embed_tokens_weight_to_fp16", MIL_FP16, 2, (int64_t[]){64, 128}, table, sizeof table);
    MilValue *ge = mil_add_greater_equal(f, "greater_equal_0", ids, mil_const_i32(f, "greater_equal_0_y_0", 0));
    MilValue *add = mil_add_add(f, "add_0", ids, mil_const_i32(f, "slice_by_index_0", 64));
    MilValue *sel = mil_add_select(f, "select_0", ge, ids, add);
    MilValue *h = mil_add_gather(f, "hidden_states", emb, sel, 0, 0);
    mil_set_outputs(f, 1, &h);
    PkgMetadata meta = {"Anemll Model (Embeddings) converted to CoreML", "0.3.5", "Converted with Anemll v0.3.5", NULL, 6,
                        (const PkgKeyValue[]){{"com.anemll.info", "Converted with Anemll v0.3.5"},
                                              {"com.anemll.context_length", "256"},
                                              {"com.github.apple.coremltools.version", "9.1.dev1"},
                                              {"com.github.apple.coremltools.source_dialect", "TorchScript"},
                                              {"com.github.apple.coremltools.source", "torch==1.13.0a0"},
                                              {"com.github.apple.coremltools.conversion_date", "2026-11-26"}}};
    ok(pkg_writer_finish(w, p, &meta, &e), &e);
    char *model = xasprintf("%s/Data/com.apple.CoreML/model.mlmodel", path);
    size_t len, wlen;
    char *bytes = read_text(model, &len), *text, *want = read_text(want_path, &wlen);
    ok(pkg_description_to_text(bytes, len, &text, &e), &e);
    assert_string_equal(text, want);
    /* and the MIL input carries the unknown dim, as coremltools writes it */
    Package *pkg;
    ok(pkg_open(&pkg, path, 0, &e), &e);
    char ts[128];
    mil_type_str(&pkg->prog->functions[0]->inputs[0]->type, ts, sizeof ts);
    assert_string_equal(ts, "tensor<int32, [1, ?]>");
    assert_false(pkg->desc.multifunction);
    pkg_close(pkg);
    free(text);
    free(want);
    free(bytes);
    free(model);
    free(want_path);
    mil_program_free(p);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_feature),
        cmocka_unit_test(test_state_and_io_description),
        cmocka_unit_test(test_deterministic_output),
        cmocka_unit_test(test_atomic_writes),
        cmocka_unit_test(test_write_without_sink),
        cmocka_unit_test(test_same_as_coremltools_stateful),
        cmocka_unit_test(test_same_as_anemll_embeddings_description),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
