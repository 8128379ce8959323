/* seed_mlpackage.c - seeds for fuzz_mlpackage: frames .mlpackage directories as
 *     u32 manifest_len | u32 model_len | Manifest.json | model.mlmodel | weight.bin
 *
 *     seed_mlpackage OUT_DIR               writes seeds for small packages it builds itself
 *     seed_mlpackage OUT_DIR PKG...        frames the given packages (e.g. $SHARED/golden)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "coreml/package.h"

static int frame(const char *pkg, const char *out, Err *e) {
    static const char *const rel[3] = {"Manifest.json", "Data/com.apple.CoreML/model.mlmodel",
                                       "Data/com.apple.CoreML/weights/weight.bin"};
    char *data[3] = {0};
    size_t len[3] = {0};
    for (int i = 0; i < 3; i++) {
        char *p = path_join(pkg, rel[i]);
        int rc = file_read_all(p, (size_t)1 << 26, &data[i], &len[i], e);
        free(p);
        if (rc < 0) return -1;
    }
    FILE *f = fopen(out, "wb");
    if (!f) return err_errno(e, "cannot create %s", out);
    for (int i = 0; i < 2; i++) {
        uint8_t l[4] = {(uint8_t)len[i], (uint8_t)(len[i] >> 8), (uint8_t)(len[i] >> 16), (uint8_t)(len[i] >> 24)};
        fwrite(l, 1, 4, f);
    }
    for (int i = 0; i < 3; i++) {
        fwrite(data[i], 1, len[i], f);
        free(data[i]);
    }
    return fclose(f) ? err_errno(e, "cannot write %s", out) : 0;
}

/* Small programs that cover states, enumerated shapes, LUT weights, two functions. */
static MilProgram *build(int which, PkgWriter *w) {
    MilProgram *p = mil_program_new();
    pkg_writer_attach(w, p);
    uint16_t h[64];
    for (int i = 0; i < 64; i++) h[i] = (uint16_t)(0x3000 + 37 * i);
    if (which == 0) {
        MilFunction *f = mil_function_new(p, "main", NULL);
        MilValue *ids = mil_input_enumerated(f, "input_ids", MIL_INT32, 2, 2, (int64_t[]){1, 1, 1, 4});
        MilValue *emb = mil_const(f, "emb", MIL_FP16, 2, (int64_t[]){8, 8}, h, 128);
        MilValue *g = mil_add_gather(f, "hidden_states", emb, ids, 0, 0);
        mil_set_outputs(f, 1, &g);
    } else if (which == 1) {
        MilFunction *f = mil_function_new(p, "main", NULL);
        MilValue *x = mil_input(f, "x", MIL_FP16, 4, (int64_t[]){1, 8, 1, 2});
        MilValue *s = mil_state(f, "kv", MIL_FP16, 4, (int64_t[]){1, 4, 1, 2});
        uint8_t idx[16];
        for (int i = 0; i < 16; i++) idx[i] = (uint8_t)(i * 17);
        MilValue *wd = mil_add_lut_to_dense(f, "w", mil_literal(p, MIL_UINT4, 4, (int64_t[]){4, 8, 1, 1}, idx, 16),
                                            mil_literal(p, MIL_FP16, 6, (int64_t[]){2, 1, 1, 1, 16, 1}, h, 64), -1);
        MilValue *y = mil_add_conv(f, "y", x, wd, NULL, NULL);
        MilValue *r = mil_add_read_state(f, "r", s);
        MilValue *z = mil_add_update_state(f, "u", s, mil_add_add(f, "a", y, r));
        MilValue *o = mil_add_softmax(f, "o", mil_add_layer_norm(f, "ln", z, 1, (int32_t[]){1}, NULL, NULL, 1e-5), -1);
        mil_set_outputs(f, 1, &o);
    } else {
        for (int k = 0; k < 2; k++) {
            MilFunction *f = mil_function_new(p, k ? "prefill" : "infer", NULL);
            MilValue *x = mil_input(f, "x", MIL_FP16, 2, (int64_t[]){k ? 4 : 1, 16});
            MilValue *wt = mil_const(f, "w", MIL_FP16, 2, (int64_t[]){4, 16}, h, 128);
            MilValue *y = mil_add_linear(f, "y", x, wt, NULL);
            MilOp *sp = mil_add_split(f, "s", y, 1, 2, NULL);
            MilValue *c = mil_add_concat(f, "c", 2, sp->outputs, 1, 0);
            MilValue *am = mil_add_reduce_argmax(f, "am", c, -1, 0);
            mil_set_outputs(f, 2, (MilValue *[]){c, am});
        }
        mil_program_set_default_function(p, "infer");
    }
    return p;
}

int main(int argc, char **argv) {
    Err e;
    if (argc < 2) {
        fprintf(stderr, "usage: seed_mlpackage OUT_DIR [PKG...]\n");
        return 2;
    }
    if (mkdir_p(argv[1], &e) < 0) return fprintf(stderr, "error: %s\n", e.msg), 1;
    if (argc > 2) {
        for (int i = 2; i < argc; i++) {
            char *out = xasprintf("%s/golden_%s", argv[1], path_basename(argv[i]));
            if (frame(argv[i], out, &e) < 0) return fprintf(stderr, "error: %s\n", e.msg), 1;
            free(out);
        }
        return 0;
    }
    char *tmp = xasprintf("%s/.seed_tmp", argv[1]);
    static const char *const names[] = {"embeddings", "stateful_lut", "multifunction"};
    for (int k = 0; k < 3; k++) {
        char *pkg = xasprintf("%s/%s.mlpackage", tmp, names[k]), *out = xasprintf("%s/seed_%s", argv[1], names[k]);
        PkgWriter *w;
        MilProgram *p = NULL;
        if (pkg_writer_open(&w, pkg, &e) < 0 || !(p = build(k, w)) || pkg_writer_finish(w, p, NULL, &e) < 0 ||
            frame(pkg, out, &e) < 0)
            return fprintf(stderr, "error: %s\n", e.msg), 1;
        mil_program_free(p);
        free(pkg);
        free(out);
    }
    remove_tree(tmp);
    free(tmp);
    return 0;
}
