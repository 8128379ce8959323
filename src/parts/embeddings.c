/* embeddings.c - {prefix}_embeddings[_lutB]: hidden_states = gather(embed_tokens, input_ids).
 *
 *   input_ids      int32 (1, 1) by default, enumerated shapes {(1, 1), (1, batch)}
 *   hidden_states  fp16 (1, T, H)
 *
 * The (V, H) table is a const, or a constexpr_lut_to_dense whose LUT groups run along V. Gemma's
 * table is stored pre-multiplied by embed_scale = sqrt(H) (and by the --fp16-scale alpha), in
 * double from the float32 weights before the one rounding to fp16, so the graph is a bare gather.
 */
#include <string.h>

#include "parts/internal.h"

int part_write_embeddings(const PartSource *src, const PartCommon *c, const LutSpec *lut, const char *path,
                          PartReport *r, Err *e) {
    const Arch *a = src->arch;
    memset(r, 0, sizeof *r);
    PkgWriter *w;
    if (pkg_writer_open(&w, path, e) < 0) return -1;
    MilProgram *p = mil_program_new();
    pkg_writer_attach(w, p);
    MilFunction *f = mil_function_new(p, "main", NULL);
    int64_t shapes[4] = {1, 1, 1, c->batch};
    MilValue *ids = mil_input_enumerated(f, "input_ids", MIL_INT32, 2, c->batch > 1 ? 2 : 1, shapes);

    WeightLoader wl = {.src = src, .n = 1, .t = {{w, f, r}}};
    char tname[160], vname[160];
    arch_tensor_name(a, "embed_tokens.weight", tname, sizeof tname);
    int64_t dims[2] = {a->vocab, a->hidden};
    MilValue *table;
    int rc = wl_matrix_scaled(&wl, tname, 0, a->vocab, a->hidden, part_embedding_scale(a, src->fp16_scale), 2, dims,
                              lut, parts_mil_name(tname, vname, sizeof vname), &table, e);
    if (rc == 0) {
        MilValue *out = mil_add_gather(f, "hidden_states", table, ids, 0, 0);
        mil_set_outputs(f, 1, &out);
        rc = mil_error(p, e);
    }
    if (rc < 0) {
        pkg_writer_abort(w);
        mil_program_free(p);
        return -1;
    }
    PartMeta m;
    part_meta_init(&m, "Anemll Model (Embeddings) converted to CoreML", src->info);
    part_meta_set(&m, "com.anemll.context_length", "%ld", c->context);
    if (lut->bits) part_meta_set(&m, "com.anemll.lut_bits", "%d", lut->bits);
    PkgWriteStats st;
    pkg_writer_stats(w, &st);
    r->blobs = st.blobs;
    rc = pkg_writer_finish(w, p, &m.md, e);
    if (rc == 0) part_report_finish(r, path);
    mil_program_free(p);
    return rc;
}
