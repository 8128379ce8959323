/* combine.c - step 5: the single-function packages of a chunk, read back and written as one
 * multifunction package {prefix}_FFN_PF...: functions `infer` (default) and `prefill`, for
 * Gemma 3 beyond its window also `infer_rotate` and `prefill_rotate` (or, with --split-rotate,
 * those two in {prefix}_FFN_PF..._rot).
 *
 * Each function is copied op by op into a new program; every blob it references is added to
 * the new weight.bin, where the writer stores identical bytes once. All functions were built
 * from the same quantized weights, so each weight ends up in the file once and is shared
 * (ANEMLL needs a separate dedup pass for this; here it holds by construction).
 *
 * Steps 3 and 4 write the packages in one pass, so a blob of a later function usually sits
 * at the same offset of its weight.bin as the equal blob of the first: it is compared with
 * the blobs already copied from that offset and shares the equal one's copy, which is what
 * the writer's own search would find (a blob is stored once) without hashing it and reading
 * the copy back from the new file.
 *
 * When steps 3 and 5 run together, step 3 also writes the first package's weight.bin into the
 * combined package (part_write_ffn_mirrored). Copying by reference then points the first
 * function's consts at their source offsets in that copy, which is the file copying would
 * write if the first source's blobs are met in file order (checked; else it copies). A later
 * source whose weight digest equals the mirror's holds the same blobs at the same offsets and
 * is referenced the same way; any other (Gemma's prefill_rotate, which adds its band mask
 * first) has its blobs hashed and found in the mirror by content hash, dtype and count, and
 * the ones not there are appended -- where copying would append them. So no weight byte of
 * the first source is read or written again, and the package is the same bytes either way
 * (trusting equal 64-bit content hashes, as the digests do, instead of comparing bytes).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/util.h"
#include "coreml/blob.h"
#include "mil/ops.h"
#include "parts/internal.h"

/* A blob as copied: where it was in its source and where it went. */
typedef struct CopiedBlob {
    uint64_t src_offset, numel;
    MilDType dt;
    const void *data; /* in its source package's mapping */
    MilBlobRef ref;
} CopiedBlob;

typedef struct Copier {
    PkgWriter *w;
    MilProgram *dst;
    MilFunction *f;
    const char *src_path;
    int record;              /* note each blob added in `copied` */
    int match;               /* look for each blob in `copied` first */
    int by_reference;        /* w's weight.bin mirrors the first source's (see the top) */
    const int *same_file;    /* by reference: [source] its weight digest equals the mirror's */
    int source;              /* index of the function being copied */
    uint64_t next_offset;    /* by reference: where copying would put the next new blob */
    int unusable;            /* by reference: copying would lay the file out differently */
    CopiedBlob *copied;
    int n_copied, cap_copied, last_match;
    uint64_t matched_bytes;  /* bytes shared that way */
} Copier;

/* Drops the pages of a copied blob from this process's view of the source weight.bin: the
 * reader maps it read-only (MAP_PRIVATE), so the pages stay in the page cache and come back on
 * a later access; without this, combining two 700 MB functions would keep 1.4 GB resident. */
static void release_pages(const void *data, uint64_t n) {
    if (n < ((uint64_t)1 << 20)) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t begin = (uintptr_t)data / page * page;
    uintptr_t end = ((uintptr_t)data + (uintptr_t)n + page - 1) / page * page;
    madvise((void *)begin, end - begin, MADV_DONTNEED);
}

static void note_copied(Copier *c, MilDType dt, uint64_t numel, const MilConst *src, const MilBlobRef *ref) {
    if (c->n_copied == c->cap_copied) {
        c->cap_copied = c->cap_copied ? 2 * c->cap_copied : 256;
        c->copied = xrealloc(c->copied, sizeof *c->copied * (size_t)c->cap_copied);
    }
    c->copied[c->n_copied++] = (CopiedBlob){src->blob.offset, numel, dt, src->blob.data, *ref};
}

/* A blob copied earlier from the same source offset (of any source) with this blob's dtype,
 * count and (compare_bytes) bytes: its copy in *ref. Blobs come in offset order, so the
 * search starts at the last match. By reference the bytes are not compared: a source whose
 * digest equals the mirror's holds the same blob at the same offset. */
static int match_copied(Copier *c, MilDType dt, uint64_t numel, const MilConst *src, int compare_bytes,
                        MilBlobRef *ref) {
    for (int t = 0; t < c->n_copied; t++) {
        int i = (c->last_match + t) % c->n_copied;
        const CopiedBlob *b = &c->copied[i];
        if (b->src_offset != src->blob.offset) continue;
        if (b->dt != dt || b->numel != numel || b->ref.nbytes != src->blob.nbytes ||
            (compare_bytes && memcmp(b->data, src->blob.data, (size_t)src->blob.nbytes)))
            continue;
        if (compare_bytes) release_pages(b->data, b->ref.nbytes);
        *ref = b->ref;
        c->last_match = i;
        c->matched_bytes += src->blob.nbytes;
        return 1;
    }
    return 0;
}

static uint64_t align64(uint64_t x) { return (x + 63) / 64 * 64; }

/* By reference, a blob of a source whose digest differs from the mirror's: found by content,
 * or appended (as copying would do: the writer finds equal bytes the same way). */
static int ref_blob_by_content(Copier *c, MilDType dt, uint64_t numel, const MilConst *src, MilBlobRef *ref, Err *e) {
    if (!src->blob.data) return err_set(e, "%s: a weight blob is not mapped; the package cannot be copied", c->src_path);
    uint64_t h = blob_content_hash(dt, src->blob.data, src->blob.nbytes);
    if (pkg_writer_find_blob(c->w, h, dt, numel, ref)) {
        c->matched_bytes += src->blob.nbytes;
    } else if (pkg_writer_add_blob_hashed(c->w, dt, numel, src->blob.data, h, ref, e) < 0) {
        return -1;
    }
    release_pages(src->blob.data, src->blob.nbytes);
    return 0;
}

/* By reference: the blob's place in the mirror. 0, or -1 (with c->unusable set when copying
 * would lay the file out differently: the first source's blobs out of file order, or a blob
 * the mirror does not hold). */
static int ref_blob(Copier *c, MilDType dt, uint64_t numel, const MilConst *src, MilBlobRef *ref, Err *e) {
    if (!c->same_file[c->source]) return ref_blob_by_content(c, dt, numel, src, ref, e);
    if (match_copied(c, dt, numel, src, 0, ref)) return 0; /* met before at this offset */
    if (c->source > 0 || src->blob.offset != c->next_offset ||
        pkg_writer_ref_blob(c->w, src->blob.offset, dt, numel, ref, e) < 0) {
        c->unusable = 1;
        return err_set(e, "%s: its blobs are not laid out as the mirrored weight file's", c->src_path);
    }
    c->next_offset = align64(src->blob.offset + BLOB_METADATA_SIZE + src->blob.nbytes);
    note_copied(c, dt, numel, src, ref);
    return 0;
}

/* By reference, once the first function is copied: it used every blob of the mirror (copying
 * would drop unused ones). */
static int check_mirror_used(Copier *c, Err *e) {
    PkgWriteStats st;
    pkg_writer_stats(c->w, &st);
    if (st.blobs == (uint32_t)c->n_copied && align64(st.weight_bytes) == c->next_offset) return 0;
    c->unusable = 1;
    return err_set(e, "%s: the mirrored weight file holds blobs its function does not use", c->src_path);
}

/* The same const data, its blob (if any) re-added to the new weight file. */
static const MilConst *copy_const(Copier *c, const MilType *t, const MilConst *src, Err *e) {
    MilConst *k = mil_alloc(c->dst, sizeof *k);
    *k = *src;
    if (src->kind == MIL_CONST_BLOB && c->by_reference) {
        int64_t numel = mil_type_numel(t);
        if (numel < 0) return err_set(e, "%s: a blob const has an unknown shape", c->src_path), NULL;
        return ref_blob(c, t->dtype, (uint64_t)numel, src, &k->blob, e) < 0 ? NULL : k;
    }
    if (src->kind == MIL_CONST_BLOB) {
        if (!src->blob.data)
            return err_set(e, "%s: a weight blob is not mapped; the package cannot be copied", c->src_path), NULL;
        int64_t numel = mil_type_numel(t);
        if (numel < 0) return err_set(e, "%s: a blob const has an unknown shape", c->src_path), NULL;
        if (!(c->match && match_copied(c, t->dtype, (uint64_t)numel, src, 1, &k->blob))) {
            if (pkg_writer_add_blob(c->w, t->dtype, (uint64_t)numel, src->blob.data, &k->blob, e) < 0) return NULL;
            if (c->record) note_copied(c, t->dtype, (uint64_t)numel, src, &k->blob);
        }
        release_pages(src->blob.data, src->blob.nbytes);
        return k;
    }
    if (src->strs) {
        int64_t n = t->rank ? mil_type_numel(t) : 1;
        const char **s = mil_alloc(c->dst, sizeof *s * (size_t)(n > 0 ? n : 1));
        for (int64_t i = 0; i < n; i++) s[i] = mil_strdup(c->dst, src->strs[i]);
        k->strs = s;
        return k;
    }
    if (src->nbytes) {
        void *bytes = mil_alloc(c->dst, (size_t)src->nbytes);
        memcpy(bytes, src->bytes, (size_t)src->nbytes);
        k->bytes = bytes;
    }
    return k;
}

/* The new function's value for an argument of an op of the source function. */
static MilValue *map_value(Copier *c, const MilValue *v, Err *e) {
    if (v->name) {
        MilValue *m = mil_lookup(c->f, v->name);
        if (!m) err_set(e, "%s: value '%s' is used before it is defined", c->src_path, v->name);
        return m;
    }
    const MilConst *k = copy_const(c, &v->type, v->data, e);
    if (!k) return NULL;
    MilValue *lit = mil_raw_literal(c->dst, &v->type, k);
    if (!lit) mil_error(c->dst, e);
    return lit;
}

static int copy_op(Copier *c, const MilOp *op, Err *e) {
    if (!strcmp(op->type, "const")) {
        const MilValue *o = op->outputs[0];
        const MilConst *k = copy_const(c, &o->type, o->data, e);
        if (!k) return -1;
        return mil_raw_const(c->f, op->name, o->name, &o->type, k) ? 0 : mil_error(c->dst, e);
    }
    MilArg args[MIL_MAX_PARAMS];
    int n = 0;
    for (int a = 0; a < op->n_args; a++) {
        if (!op->args[a].n) continue;
        MilValue **vals = mil_alloc(c->dst, sizeof *vals * (size_t)op->args[a].n);
        for (int j = 0; j < op->args[a].n; j++)
            if (!(vals[j] = map_value(c, op->args[a].vals[j], e))) return -1;
        args[n++] = (MilArg){op->args[a].param, op->args[a].n, vals};
    }
    const char *names[MIL_MAX_OUTPUTS];
    MilType types[MIL_MAX_OUTPUTS];
    for (int i = 0; i < op->n_outputs; i++) {
        names[i] = op->outputs[i]->name;
        types[i] = op->outputs[i]->type;
    }
    if (!mil_raw_op(c->f, op->type, op->name, n, args, op->n_outputs, names, types, 0)) return mil_error(c->dst, e);
    return 0;
}

static int copy_function(Copier *c, const MilFunction *src, const char *name, Err *e) {
    c->f = mil_function_new(c->dst, name, src->opset);
    for (int i = 0; i < src->n_inputs; i++) {
        const MilValue *in = src->inputs[i];
        MilValue *v = in->n_shapes > 1
                          ? mil_input_enumerated(c->f, in->name, in->type.dtype, in->type.rank, in->n_shapes, in->shapes)
                          : mil_raw_input(c->f, in->name, &in->type);
        if (!v) return mil_error(c->dst, e);
    }
    for (int i = 0; i < src->n_ops; i++)
        if (copy_op(c, src->ops[i], e) < 0) return err_wrap(e, "copying function %s of %s", src->name, c->src_path);
    MilValue *outs[MIL_MAX_OUTPUTS];
    if (src->n_outputs > MIL_MAX_OUTPUTS) return err_set(e, "%s: too many outputs", c->src_path);
    for (int i = 0; i < src->n_outputs; i++)
        if (!(outs[i] = mil_lookup(c->f, src->outputs[i]->name)))
            return err_set(e, "%s: output '%s' is not defined", c->src_path, src->outputs[i]->name);
    if (mil_set_outputs(c->f, src->n_outputs, outs) < 0) return mil_error(c->dst, e);
    return 0;
}

/* userDefined of every source (the first's first), under the description ANEMLL's
 * AddCombinedMetadata derives: "Anemll Model: Multifunction " + the parenthesised part names of
 * the sources' descriptions joined by '+' ("FFN+Prefill"), or "Combined" when none has one. */
static void merge_metadata(PartMeta *m, Package *const *pkgs, int n, char *desc, size_t desc_size) {
    const char *info = "";
    const PkgMetadata *a = &pkgs[0]->desc.metadata;
    for (int i = 0; i < a->n_user; i++)
        if (!strcmp(a->user[i].key, "com.anemll.info")) info = a->user[i].value;
    snprintf(desc, desc_size, "Anemll Model: Multifunction ");
    int named = 0;
    for (int s = 0; s < n; s++) {
        const char *d = pkgs[s]->desc.metadata.short_description;
        const char *open = d ? strchr(d, '(') : NULL, *close = open ? strchr(open, ')') : NULL;
        if (!close || close == open + 1) continue;
        size_t len = strlen(desc);
        snprintf(desc + len, desc_size - len, "%s%.*s", named++ ? "+" : "", (int)(close - open - 1), open + 1);
    }
    if (!named) snprintf(desc + strlen(desc), desc_size - strlen(desc), "Combined");
    part_meta_init(m, desc, info);
    for (int s = 0; s < n; s++) {
        const PkgMetadata *md = &pkgs[s]->desc.metadata;
        for (int i = 0; i < md->n_user; i++) {
            const char *key = md->user[i].key;
            if (strncmp(key, "com.anemll.", 11)) continue;
            int known = 0;
            for (int k = 0; k < m->md.n_user; k++) known |= !strcmp(m->kv[k].key, key);
            if (known) continue;   /* the first source's value wins */
            if (m->md.n_user >= (int)(sizeof m->kv / sizeof m->kv[0])) break;
            part_meta_set(m, key, "%s", md->user[i].value);
        }
    }
}

static const MilFunction *main_function(const Package *pkg, const char *path, Err *e) {
    const MilFunction *f = mil_program_function(pkg->prog, "main");
    if (!f || pkg->prog->n_functions != 1)
        return err_set(e, "%s is not a single-function package (expected one function 'main'); run steps 3 and 4 "
                          "again",
                       path),
               NULL;
    return f;
}

static int open_sources(int n, const char *const *paths, Package **pkgs, const MilFunction **fns, Err *e) {
    AN_ASSERT(n >= 1 && n <= PLAN_FFN_FUNCTIONS);
    for (int i = 0; i < n; i++) {
        if (pkg_open(&pkgs[i], paths[i], 0, e) < 0) return err_wrap(e, "step 5 reads %s", paths[i]);
        if (!(fns[i] = main_function(pkgs[i], paths[i], e))) return -1;
    }
    return 0;
}

/* The functions of the sources into w (finished, or aborted on failure). same_file non-NULL:
 * by reference, w's weight.bin mirrors the first source's; *unusable is set if it cannot be
 * used after all. */
static int combine_into(PkgWriter *w, const int *same_file, int separate_copies, int n, Package *const *pkgs,
                        const MilFunction *const *fns, const char *const *paths, const char *const *names,
                        PartReport *r, int *unusable, Err *e) {
    MilProgram *dst = mil_program_new();
    pkg_writer_attach(w, dst);
    if (separate_copies) pkg_writer_set_dedup(w, 0);
    Copier c = {.w = w, .dst = dst, .record = !separate_copies, .match = !separate_copies,
                .by_reference = same_file != NULL, .same_file = same_file, .next_offset = BLOB_HEADER_SIZE};
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        c.src_path = paths[i];
        c.source = i;
        rc = copy_function(&c, fns[i], names[i], e);
        if (rc == 0 && i == 0 && c.by_reference) rc = check_mirror_used(&c, e);
    }
    mil_program_set_default_function(dst, names[0]);
    PkgWriteStats st;
    pkg_writer_stats(w, &st);
    *unusable = c.unusable;
    r->shared_bytes = c.matched_bytes + st.shared_bytes;
    r->blobs = st.blobs;
    r->mirrored = c.by_reference;
    free(c.copied);
    if (rc == 0) {
        PartMeta m;
        char desc[128];
        merge_metadata(&m, pkgs, n, desc, sizeof desc);
        rc = pkg_writer_finish(w, dst, &m.md, e);
    } else {
        pkg_writer_abort(w);
    }
    mil_program_free(dst);
    return rc;
}

/* same[i]: source i holds the blobs the mirror holds; returns same[0] (the mirror is usable). */
static int digests_agree(int n, PkgWriter *mirrored, const uint64_t (*digests)[2], int *same) {
    PkgWriteStats st;
    pkg_writer_stats(mirrored, &st);
    for (int i = 0; i < n; i++) same[i] = digests[i][0] == st.digest[0] && digests[i][1] == st.digest[1];
    return same[0];
}

static int combine(int n, const char *const *paths, const char *const *names, PkgWriter *mirrored,
                   const uint64_t (*digests)[2], int separate_copies, const char *out_path, PartReport *r, Err *e) {
    memset(r, 0, sizeof *r);
    Package *pkgs[PLAN_FFN_FUNCTIONS] = {0};
    const MilFunction *fns[PLAN_FFN_FUNCTIONS] = {0};
    int rc = open_sources(n, paths, pkgs, fns, e), unusable = 1, same[PLAN_FFN_FUNCTIONS];
    if (rc == 0 && mirrored && digests_agree(n, mirrored, digests, same)) {
        rc = combine_into(mirrored, same, 0, n, pkgs, fns, paths, names, r, &unusable, e);
        mirrored = NULL;
        if (rc < 0 && unusable) rc = 0, memset(r, 0, sizeof *r), memset(e, 0, sizeof *e); /* copy instead */
    }
    if (mirrored) pkg_writer_abort(mirrored);
    if (rc == 0 && unusable) {
        PkgWriter *w;
        rc = pkg_writer_open(&w, out_path, e);
        if (rc == 0) rc = combine_into(w, NULL, separate_copies, n, pkgs, fns, paths, names, r, &unusable, e);
    }
    if (rc == 0) part_report_finish(r, out_path);
    for (int i = 0; i < n; i++) pkg_close(pkgs[i]);
    return rc;
}

int part_combine(int n, const char *const *paths, const char *const *names, const char *out_path, int separate_copies,
                 PartReport *r, Err *e) {
    return combine(n, paths, names, NULL, NULL, separate_copies, out_path, r, e);
}

int part_combine_mirrored(int n, const char *const *paths, const char *const *names, PkgWriter *mirrored,
                          const uint64_t (*digests)[2], const char *out_path, PartReport *r, Err *e) {
    return combine(n, paths, names, mirrored, digests, 0, out_path, r, e);
}
