/* lm_head.c - {prefix}_lm_head[_lutB]: the output projection in S splits (docs/parts.md).
 *
 *   hidden_states (1, 1, H) fp16, already final-normed
 *   -> (1, H, 1, 1) -> S 1x1 convs (size_i, H, 1, 1) -> logits{i+1} (1, 1, size_i) fp16
 *   --argmax: per split reduce_argmax + gather_along_axis, concatenated:
 *             argmax_idx int32 (S) (position within the split), argmax_val fp16 (S)
 *
 * The weight is lm_head.weight, or embed_tokens.weight when the embeddings are tied; split i
 * is its rows [offset_i, offset_i + size_i), read and quantized on its own.
 */
#include <stdio.h>
#include <string.h>

#include "parts/internal.h"

/* argmax over the last axis of logits (1, 1, n): index (1, 1, 1) int32 and value (1, 1, 1). */
static void split_argmax(MilFunction *f, MilValue *logits, MilValue **idx, MilValue **val) {
    *idx = mil_add_reduce_argmax(f, NULL, logits, -1, 1);
    MilValue *i16 = mil_add_cast(f, NULL, *idx, MIL_INT16);   /* split sizes stay below 2^15 */
    *val = mil_add_gather_along_axis(f, NULL, logits, i16, -1);
}

static int build(const PartSource *src, MilFunction *f, PkgWriter *w, const LutSpec *lut, int argmax, PartReport *r,
                 Err *e) {
    const Arch *a = src->arch;
    int sizes[PLAN_MAX_SPLITS];
    int s = plan_lm_head_sizes(a, sizes);
    int64_t hs[3] = {1, 1, a->hidden};
    MilValue *x = g_to_conv(f, mil_input(f, "hidden_states", MIL_FP16, 3, hs));
    WeightLoader wl = {.src = src, .n = 1, .t = {{w, f, r}}};
    const char *tname = arch_lm_head_name(a);
    MilValue *outs[PLAN_MAX_SPLITS], *idx[PLAN_MAX_SPLITS], *val[PLAN_MAX_SPLITS];
    long offset = 0;
    for (int i = 0; i < s; i++) {
        char vname[64], oname[32];
        snprintf(vname, sizeof vname, "lm_head_split_%d_weight", i + 1);
        int64_t dims[4] = {sizes[i], a->hidden, 1, 1};
        MilValue *wv;
        if (wl_matrix(&wl, tname, offset, sizes[i], a->hidden, 4, dims, lut, vname, &wv, e) < 0) return -1;
        offset += sizes[i];
        int32_t shape[3] = {1, 1, sizes[i]};
        snprintf(oname, sizeof oname, "logits%d", i + 1);
        outs[i] = mil_add_reshape(f, argmax ? NULL : oname, g_conv(f, x, wv, NULL), 3, shape);
        if (argmax) split_argmax(f, outs[i], &idx[i], &val[i]);
    }
    if (argmax) {
        int32_t flat[1] = {s};
        MilValue *res[2] = {mil_add_reshape(f, "argmax_idx", mil_add_concat(f, NULL, s, idx, -1, 0), 1, flat),
                            mil_add_reshape(f, "argmax_val", mil_add_concat(f, NULL, s, val, -1, 0), 1, flat)};
        mil_set_outputs(f, 2, res);
    } else {
        mil_set_outputs(f, s, outs);
    }
    return mil_error(f->prog, e);
}

int part_write_lm_head(const PartSource *src, const PartCommon *c, const LutSpec *lut, int argmax, const char *path,
                       PartReport *r, Err *e) {
    const Arch *a = src->arch;
    memset(r, 0, sizeof *r);
    PkgWriter *w;
    if (pkg_writer_open(&w, path, e) < 0) return -1;
    MilProgram *p = mil_program_new();
    pkg_writer_attach(w, p);
    MilFunction *f = mil_function_new(p, "main", NULL);
    if (build(src, f, w, lut, argmax, r, e) < 0) {
        pkg_writer_abort(w);
        mil_program_free(p);
        return -1;
    }
    int sizes[PLAN_MAX_SPLITS];
    int s = plan_lm_head_sizes(a, sizes);
    char list[PLAN_MAX_SPLITS * 12] = "";
    for (int i = 0; i < s; i++) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? "," : "", sizes[i]);
    PartMeta m;
    part_meta_init(&m, "Anemll Model (LM Head) converted to CoreML", src->info);
    part_meta_set(&m, "com.anemll.context_length", "%ld", c->context);
    if (lut->bits) part_meta_set(&m, "com.anemll.lut_bits", "%d", lut->bits);
    part_meta_set(&m, "com.anemll.vocab_size", "%d", a->vocab);
    part_meta_set(&m, "com.anemll.lm_head_chunk_sizes", "%s", list);
    if (argmax) part_meta_set(&m, "com.anemll.argmax_in_model", "true");
    PkgWriteStats st;
    pkg_writer_stats(w, &st);
    r->blobs = st.blobs;
    int rc = pkg_writer_finish(w, p, &m.md, e);
    if (rc == 0) part_report_finish(r, path);
    mil_program_free(p);
    return rc;
}
