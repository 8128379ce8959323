/* Every op `anemll convert` writes, read back from the packages of tiny conversions of every family
 * and option that changes the graph (LUTs on each part, qwen2 biases, qwen3 q/k norms, --argmax,
 * Gemma 3 with its rotate functions in one file and with --split-rotate, --fp16-scale):
 *  - its type is one of the op types audited against coremltools' iOS 18 definitions (a new op type
 *    makes this test fail until it has been audited and added to the list), and every audited type
 *    occurs in these conversions;
 *  - every optional input that coremltools gives a default is written explicitly, as coremltools'
 *    builder does when it serializes a program;
 *  - every function is opset CoreML8 in a specification-9 package, and the program passes the
 *    op-table validation (done by pkg_open).
 * Argument dtypes, const-ness and output types are the op table's business (test_mil_*). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <cmocka.h>

#include "common/util.h"
#include "coreml/package.h"
#include "mil/ops.h"
#include "model/synth.h"
#include "parts/convert.h"

static char tmpdir[512];

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TEST_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/conform.XXXXXX", base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(tmpdir);
    return 0;
}

/* The op types checked against coremltools' definitions (see the op table in src/mil/ops.c). */
static const char *const audited[] = {
    "const", "constexpr_lut_to_dense", "conv", "add", "mul", "matmul", "softmax", "silu", "gelu",
    "layer_norm", "concat", "slice_by_index", "slice_update", "reshape", "transpose", "expand_dims",
    "squeeze", "tile", "cast", "gather", "gather_along_axis", "reduce_argmax", "read_state", "write_state",
};
#define N_AUDITED ((int)(sizeof audited / sizeof audited[0]))

static int seen[N_AUDITED];

static int audited_index(const char *type) {
    for (int i = 0; i < N_AUDITED; i++)
        if (!strcmp(audited[i], type)) return i;
    return -1;
}

static char *make_model(const char *type, const char *name) {
    SynthSpec s;
    Err e = {0};
    if (synth_spec_init(&s, type, &e) < 0) fail_msg("%s", e.msg);
    if (!strncmp(type, "gemma3", 6)) s.sliding_window = 16;
    s.threads = 1;
    char *dir = path_join(tmpdir, name);
    if (synth_write(&s, dir, 1, NULL, &e) < 0) fail_msg("%s", e.msg);
    return dir;
}

/* Runs the whole conversion with the CLI's option parser. */
static char *convert(const char *model, const char *name, int n_extra, const char *const *extra) {
    char *out = path_join(tmpdir, name);
    const char *base[] = {"convert", "--model", model, "--output", out, "--batch", "8", "--threads", "1"};
    int nb = (int)(sizeof base / sizeof base[0]);
    char *argv[32];
    int argc = 0;
    for (int i = 0; i < nb; i++) argv[argc++] = (char *)base[i];
    for (int i = 0; i < n_extra; i++) argv[argc++] = (char *)extra[i];
    ConvertOptions o;
    convert_options_init(&o);
    Err e = {0};
    if (convert_options_parse(&o, argc, argv, &e) < 0) fail_msg("%s: %s", name, e.msg);
    Conversion *c;
    if (convert_prepare(&c, &o, "test", NULL, NULL, &e) < 0) fail_msg("%s: %s", name, e.msg);
    if (convert_run(c, &e) < 0) fail_msg("%s: %s", name, e.msg);
    convert_free(c);
    return out;
}

static void check_package(const char *path) {
    Package *pkg;
    Err e = {0};
    if (pkg_open(&pkg, path, 0, &e) < 0) fail_msg("%s", e.msg);
    assert_int_equal(pkg->spec_version, 9);
    const MilProgram *p = pkg->prog;
    for (int fi = 0; fi < p->n_functions; fi++) {
        const MilFunction *f = p->functions[fi];
        if (strcmp(f->opset, "CoreML8")) fail_msg("%s: function %s has opset %s", path, f->name, f->opset);
        for (int i = 0; i < f->n_ops; i++) {
            const MilOp *op = f->ops[i];
            int k = audited_index(op->type);
            if (k < 0) fail_msg("%s: op '%s' has type %s, which is not in the audited list", path, op->name, op->type);
            seen[k] = 1;
            const MilOpDef *d = op->def;
            assert_non_null(d);
            for (int a = 0; a < d->n_params; a++)
                if (d->params[a].dflt.kind != MIL_DEF_NONE && op->args[a].n == 0)
                    fail_msg("%s: function %s, op '%s' (%s): optional input '%s' has a default coremltools "
                             "writes explicitly, but it is absent",
                             path, f->name, op->name, op->type, d->params[a].name);
        }
    }
    pkg_close(pkg);
}

/* Checks every package in dir; returns how many there were. */
static int check_dir(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 11 || strcmp(de->d_name + len - 10, ".mlpackage")) continue;
        char *p = path_join(dir, de->d_name);
        check_package(p);
        free(p);
        n++;
    }
    closedir(d);
    return n;
}

static void test_every_written_op(void **state) {
    (void)state;
    static const struct {
        const char *type, *name;
        int n;
        const char *args[10];
    } runs[] = {
        /* LUT4 FFN, LUT6 LM head with argmax */
        {"llama", "llama", 5, {"--context", "32", "--argmax", "--lut3", "6"}},
        /* biases, LUT6 on every part (embeddings: a LUT gather table) */
        {"qwen2", "qwen2", 8, {"--context", "32", "--lut1", "6", "--lut2", "6", "--lut3", "6,4"}},
        /* q/k norms, fp16 */
        {"qwen3", "qwen3", 6, {"--context", "32", "--lut2", "", "--lut3", ""}},
        /* four functions per chunk file, LUT */
        {"gemma3_text", "gemma3_text", 6, {"--context", "64", "--lut2", "6", "--lut3", "6,4"}},
        /* the multimodal wrapper: split-rotate files, fp16, argmax, residual scaling */
        {"gemma3", "gemma3", 10,
         {"--context", "64", "--lut2", "", "--lut3", "", "--split-rotate", "--argmax", "--fp16-scale", "0.5"}},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        char *model = make_model(runs[r].type, runs[r].name);
        char oname[64];
        snprintf(oname, sizeof oname, "%s_out", runs[r].name);
        char *out = convert(model, oname, runs[r].n, runs[r].args);
        int n = check_dir(out);
        /* embeddings, LM head, 2 chunks x (FFN, prefill, FFN_PF) at least */
        if (n < 8) fail_msg("%s: only %d packages", out, n);
        free(out);
        free(model);
    }
    for (int i = 0; i < N_AUDITED; i++)
        if (!seen[i]) fail_msg("audited op type %s was not written by any conversion", audited[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_written_op),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
