/* package.c - writing .mlpackage directories (temporary sibling, streamed weights, atomic
 * rename) and reading them back (manifest, model protobuf, mapped weight files, checks). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/killpoint.h"
#include "common/util.h"
#include "coreml/internal.h"
#include "coreml/pb.h"
#include "mil/ops.h"

#define MAX_MODEL_BYTES ((size_t)2 << 30)   /* model.mlmodel larger than 2 GiB is not ours */
#define MAX_MANIFEST_BYTES ((size_t)1 << 20)

/* ==== Files ==== */

static int write_file_synced(const char *path, const void *data, size_t len, Err *e) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return err_errno(e, "cannot create %s", path);
    const char *p = data;
    while (len) {
        ssize_t k = write(fd, p, len);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            err_errno(e, "cannot write %s", path);
            close(fd);
            return -1;
        }
        p += k;
        len -= (size_t)k;
    }
    if (fsync(fd) < 0 && errno != EINVAL && errno != EROFS) {
        err_errno(e, "cannot sync %s", path);
        close(fd);
        return -1;
    }
    if (close(fd) < 0) return err_errno(e, "cannot write %s", path);
    killpoint("package file written", path);
    return 0;
}

/* A relative path that stays inside its directory. */
static int plain_rel_path(const char *p) {
    if (!p || !*p || p[0] == '/' || strchr(p, '\\')) return 0;
    for (const char *s = p; *s;) {
        const char *slash = strchr(s, '/');
        size_t n = slash ? (size_t)(slash - s) : strlen(s);
        if (n == 0 || (n == 2 && s[0] == '.' && s[1] == '.') || (n == 1 && s[0] == '.')) return 0;
        s += n + (slash ? 1 : 0);
    }
    return 1;
}

/* ==== Writer ==== */

struct PkgWriter {
    char *path;          /* final X.mlpackage */
    char *tmp;           /* X.mlpackage.tmp.XXXXXX */
    char *data_dir;      /* tmp/Data/com.apple.CoreML */
    BlobWriter *blobs;
    uint64_t model_bytes;
    MilDType stream_dt;  /* the blob being streamed */
    uint64_t stream_numel;
};

static void writer_free(PkgWriter *w) {
    if (!w) return;
    blob_writer_free(w->blobs);
    free(w->path);
    free(w->tmp);
    free(w->data_dir);
    free(w);
}

void pkg_writer_abort(PkgWriter *w) {
    if (!w) return;
    blob_writer_free(w->blobs);
    w->blobs = NULL;
    if (w->tmp) remove_tree(w->tmp);
    writer_free(w);
}

int pkg_writer_open(PkgWriter **out, const char *path, Err *e) {
    *out = NULL;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    if (n < 11 || strncmp(path + n - 10, ".mlpackage", 10))
        return err_set(e, "output package '%s' must end in .mlpackage", path);
    PkgWriter *w = xcalloc(1, sizeof *w);
    w->path = xmalloc(n + 1);
    memcpy(w->path, path, n);
    w->path[n] = 0;
    char *parent = path_dir(w->path);
    if (mkdir_p(parent, e) < 0) {
        err_wrap(e, "creating the directory for %s", w->path);
        free(parent);
        writer_free(w);
        return -1;
    }
    free(parent);
    w->tmp = xasprintf("%s.tmp.XXXXXX", w->path);
    if (!mkdtemp(w->tmp)) {
        err_errno(e, "cannot create a temporary directory beside %s", w->path);
        free(w->tmp);
        w->tmp = NULL;
        writer_free(w);
        return -1;
    }
    chmod(w->tmp, 0755);   /* mkdtemp makes it private; a package is an ordinary directory */
    w->data_dir = xasprintf("%s/Data/com.apple.CoreML", w->tmp);
    char *weights = xasprintf("%s/weights", w->data_dir);
    char *bin = xasprintf("%s/weight.bin", weights);
    int rc = mkdir_p(weights, e) < 0 ? -1 : blob_writer_open(&w->blobs, bin, e);
    free(weights);
    free(bin);
    if (rc < 0) {
        pkg_writer_abort(w);
        return -1;
    }
    *out = w;
    return 0;
}


/* A reference to the blob at metadata offset off of this package's weight.bin. */
static void blob_ref(PkgWriter *w, uint64_t off, uint64_t nbytes, MilBlobRef *ref) {
    ref->file = PKG_WEIGHT_PATH;
    ref->offset = off;
    ref->nbytes = nbytes;
    ref->owner = w;
}

int pkg_writer_add_blob_hashed(PkgWriter *w, MilDType dt, uint64_t numel, const void *data, uint64_t hash,
                               MilBlobRef *ref, Err *e) {
    uint64_t off, nbytes;
    memset(ref, 0, sizeof *ref);
    if (mil_packed_size(dt, numel, &nbytes) < 0) return err_set(e, "blob of %llu elements is too large", (unsigned long long)numel);
    if (blob_writer_add_hashed(w->blobs, dt, numel, data, hash, &off, NULL, e) < 0) return err_wrap(e, "writing %s", w->path);
    blob_ref(w, off, nbytes, ref);
    return 0;
}

int pkg_writer_add_blob(PkgWriter *w, MilDType dt, uint64_t numel, const void *data, MilBlobRef *ref, Err *e) {
    uint64_t off, nbytes;
    memset(ref, 0, sizeof *ref);
    if (mil_packed_size(dt, numel, &nbytes) < 0) return err_set(e, "blob of %llu elements is too large", (unsigned long long)numel);
    if (blob_writer_add(w->blobs, dt, numel, data, &off, NULL, e) < 0) return err_wrap(e, "writing %s", w->path);
    blob_ref(w, off, nbytes, ref);
    return 0;
}

int pkg_writer_blob_begin(PkgWriter *w, MilDType dt, uint64_t numel, Err *e) {
    if (blob_writer_begin(w->blobs, dt, numel, e) < 0) return err_wrap(e, "writing %s", w->path);
    w->stream_dt = dt;
    w->stream_numel = numel;
    return 0;
}

int pkg_writer_blob_append(PkgWriter *w, const void *data, size_t n, Err *e) {
    if (blob_writer_append(w->blobs, data, n, e) < 0) return err_wrap(e, "writing %s", w->path);
    return 0;
}

int pkg_writer_blob_end(PkgWriter *w, MilBlobRef *ref, Err *e) {
    uint64_t off, nbytes = 0;
    memset(ref, 0, sizeof *ref);
    if (blob_writer_end(w->blobs, &off, NULL, e) < 0) return err_wrap(e, "writing %s", w->path);
    mil_packed_size(w->stream_dt, w->stream_numel, &nbytes); /* checked by begin */
    blob_ref(w, off, nbytes, ref);
    return 0;
}

void pkg_writer_set_dedup(PkgWriter *w, int on) { blob_writer_set_dedup(w->blobs, on); }

int pkg_writer_mirror(PkgWriter *w, PkgWriter *m, Err *e) { return blob_writer_mirror(w->blobs, m->blobs, e); }

int pkg_writer_find_blob(PkgWriter *w, uint64_t hash, MilDType dt, uint64_t numel, MilBlobRef *ref) {
    uint64_t off, nbytes;
    memset(ref, 0, sizeof *ref);
    if (mil_packed_size(dt, numel, &nbytes) < 0 || !blob_writer_find(w->blobs, hash, dt, numel, &off)) return 0;
    blob_ref(w, off, nbytes, ref);
    return 1;
}

int pkg_writer_ref_blob(PkgWriter *w, uint64_t offset, MilDType dt, uint64_t numel, MilBlobRef *ref, Err *e) {
    uint64_t nbytes;
    memset(ref, 0, sizeof *ref);
    if (mil_packed_size(dt, numel, &nbytes) < 0 || !blob_writer_has_blob(w->blobs, offset, dt, numel))
        return err_set(e, "%s: its weight.bin has no %s blob of %llu elements at offset %llu", w->path,
                       mil_dtype_name(dt), (unsigned long long)numel, (unsigned long long)offset);
    blob_ref(w, offset, nbytes, ref);
    return 0;
}

static int sink_put(void *ctx, MilDType dt, uint64_t numel, const void *data, MilBlobRef *out, Err *e) {
    return pkg_writer_add_blob(ctx, dt, numel, data, out, e);
}

void pkg_writer_attach(PkgWriter *w, MilProgram *p) {
    MilBlobSink s = {w, sink_put};
    mil_program_set_blob_sink(p, &s);
}

void pkg_writer_stats(const PkgWriter *w, PkgWriteStats *s) {
    s->blobs = blob_writer_count(w->blobs);
    s->weight_bytes = blob_writer_size(w->blobs);
    s->shared_bytes = blob_writer_reused_bytes(w->blobs);
    s->model_bytes = w->model_bytes;
    blob_writer_digest(w->blobs, s->digest);
}

/* Encoder callback: the offset of a const's data in this package's weight.bin. */
static int place_blob(void *ctx, const MilValue *v, uint64_t *offset, Err *e) {
    PkgWriter *w = ctx;
    const MilConst *c = v->data;
    if (c->kind == MIL_CONST_BLOB && c->blob.owner == w) {
        *offset = c->blob.offset;
        return 0;
    }
    const void *bytes = mil_const_bytes(c);
    int64_t numel = mil_type_numel(&v->type);
    if (!bytes && numel > 0)
        return err_set(e, "the data of '%s' is in another weight file that is not in memory", v->name ? v->name : "(literal)");
    return blob_writer_add(w->blobs, v->type.dtype, (uint64_t)numel, bytes ? bytes : "", offset, NULL, e);
}

/* Moves the finished temporary directory to w->path, replacing an older package there. */
static int publish(PkgWriter *w, Err *e) {
    struct stat st;
    char *old = NULL;
    if (lstat(w->path, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return err_set(e, "%s exists and is not a package directory; remove it first", w->path);
        old = xasprintf("%s.old.XXXXXX", w->path);
        int made = mkdtemp(old) != NULL;
        if (!made || rename(w->path, old) < 0) {
            err_errno(e, "cannot move the existing %s aside", w->path);
            if (made) rmdir(old);
            free(old);
            return -1;
        }
        killpoint("old package moved aside", old);
    }
    if (rename(w->tmp, w->path) < 0) {
        err_errno(e, "cannot rename %s to %s", w->tmp, w->path);
        if (old && rename(old, w->path) < 0) { /* the old package stays at old; nothing better to do */ }
        free(old);
        return -1;
    }
    killpoint("package renamed into place", w->path);
    if (old) {
        remove_tree(old);
        free(old);
    }
    free(w->tmp);
    w->tmp = NULL;   /* nothing to clean up any more */
    char *parent = path_dir(w->path);
    Err ignore;
    fsync_path(parent, &ignore);
    free(parent);
    return 0;
}

static int check_opsets(const MilProgram *p, int spec, Err *e) {
    for (int i = 0; i < p->n_functions; i++) {
        int level = mil_opset_level(p->functions[i]->opset);
        if (level > spec - 1)
            return err_set(e, "function '%s' uses opset %s, which needs specification version %d (writing %d)",
                           p->functions[i]->name, p->functions[i]->opset, level + 1, spec);
    }
    return 0;
}

int pkg_writer_finish(PkgWriter *w, const MilProgram *p, const PkgMetadata *meta, Err *e) {
    uint8_t *model = NULL;
    size_t model_len = 0;
    char *manifest = NULL, *path = NULL;
    PkgDescription d;
    int rc = -1;
    if (mil_error(p, e) < 0) {
        err_wrap(e, "building %s", w->path);
        goto out;
    }
    if (mil_program_validate(p, 0, e) < 0 || check_opsets(p, PKG_SPEC_VERSION, e) < 0 ||
        pkg_describe(p, meta, &d, e) < 0 || pkg_description_validate(&d, PKG_SPEC_VERSION, e) < 0 ||
        cml_encode(p, &d, PKG_SPEC_VERSION, place_blob, w, &model, &model_len, e) < 0 ||
        blob_writer_finish(w->blobs, e) < 0) {
        err_wrap(e, "writing %s", w->path);
        goto out;
    }
    w->model_bytes = model_len;
    /* identifiers derived from the content: same program, same package bytes */
    uint64_t wd[2], mid[2], wid[2];
    blob_writer_digest(w->blobs, wd);
    mid[0] = hash64(model, model_len, wd[0]);
    mid[1] = hash64(model, model_len, wd[1] ^ 0x6D6F64656Cull);
    wid[0] = hash64(wd, sizeof wd, mid[0] ^ 0x77656967687473ull);
    wid[1] = hash64(wd, sizeof wd, mid[1] ^ 0x626C6F62ull);
    char model_id[37], weights_id[37];
    cml_format_uuid(mid, model_id);
    cml_format_uuid(wid, weights_id);
    manifest = cml_manifest_text(model_id, weights_id);
    path = xasprintf("%s/model.mlmodel", w->data_dir);
    if (write_file_synced(path, model, model_len, e) < 0) goto failed;
    free(path);
    path = xasprintf("%s/Manifest.json", w->tmp);
    if (write_file_synced(path, manifest, strlen(manifest), e) < 0) goto failed;
    free(path);
    path = xasprintf("%s/weights", w->data_dir);
    if (fsync_path(path, e) < 0 || fsync_path(w->data_dir, e) < 0) goto failed;
    free(path);
    path = xasprintf("%s/Data", w->tmp);
    if (fsync_path(path, e) < 0 || fsync_path(w->tmp, e) < 0) goto failed;
    if (publish(w, e) < 0) goto out;
    rc = 0;
    goto out;
failed:
    err_wrap(e, "writing %s", w->path);
out:
    free(model);
    free(manifest);
    free(path);
    pkg_writer_abort(w);   /* removes the temporary directory unless it was published */
    return rc;
}

/* ==== Reader ==== */

struct PkgBlobFile {
    char *rel;           /* path relative to the model's directory, e.g. "weights/weight.bin" */
    BlobFile *file;
};

typedef struct ReadCtx {
    Package *pkg;
    char *model_dir;     /* directory holding model.mlmodel (@model_path) */
    const PkgMemory *mem;
} ReadCtx;

static int resolve_blob(void *vctx, const char *rel, const BlobFile **out, Err *e) {
    ReadCtx *c = vctx;
    Package *pkg = c->pkg;
    for (int i = 0; i < pkg->n_blob_files; i++)
        if (!strcmp(pkg->blob_files[i]->rel, rel)) {
            *out = pkg->blob_files[i]->file;
            return 0;
        }
    BlobFile *f = NULL;
    if (c->mem) {
        if (strcmp(rel, "weights/weight.bin") || !c->mem->weights)
            return err_set(e, "weight file @model_path/%s does not exist", rel);
        if (blob_file_from_memory(&f, c->mem->weights, c->mem->weights_len, "weights/weight.bin", e) < 0) return -1;
    } else {
        char *full = path_join(c->model_dir, rel);
        struct stat st;
        if (stat(full, &st) < 0) {
            err_set(e, "weight file %s does not exist", full);
            free(full);
            return -1;
        }
        int rc = blob_file_open(&f, full, e);
        free(full);
        if (rc < 0) return -1;
    }
    PkgBlobFile *pb = xcalloc(1, sizeof *pb);
    pb->rel = xstrdup(rel);
    pb->file = f;
    pkg->blob_files = xrealloc(pkg->blob_files, sizeof *pkg->blob_files * (size_t)(pkg->n_blob_files + 1));
    pkg->blob_files[pkg->n_blob_files++] = pb;
    *out = f;
    return 0;
}

void pkg_close(Package *pkg) {
    if (!pkg) return;
    mil_program_free(pkg->prog);
    for (int i = 0; i < pkg->n_blob_files; i++) {
        blob_file_close(pkg->blob_files[i]->file);
        free(pkg->blob_files[i]->rel);
        free(pkg->blob_files[i]);
    }
    free(pkg->blob_files);
    free((char *)pkg->path);
    free((char *)pkg->model_id);
    free((char *)pkg->weights_id);
    free(pkg);
}

void pkg_blob_file_info(const Package *pkg, int i, PkgBlobFileInfo *out) {
    out->name = pkg->blob_files[i]->rel;
    out->count = blob_file_count(pkg->blob_files[i]->file);
    out->size = blob_file_size(pkg->blob_files[i]->file);
}

/* Decodes, cross-checks and validates; fills pkg. */
static int load_model(Package *pkg, ReadCtx *c, const uint8_t *model, size_t len, unsigned flags, Err *e) {
    pkg->model_bytes = len;
    if (cml_decode(model, len, resolve_blob, c, flags, &pkg->prog, &pkg->desc, &pkg->spec_version, e) < 0) return -1;
    if (pkg_description_validate(&pkg->desc, pkg->spec_version, e) < 0) return err_wrap(e, "model.mlmodel description");
    if (!(flags & PKG_OPEN_LENIENT))
        for (int k = 0; k < pkg->desc.n_functions; k++) {
            const PkgFunctionDesc *fd = &pkg->desc.functions[k];
            const PkgFeature *lists[3] = {fd->inputs, fd->outputs, fd->states};
            int counts[3] = {fd->n_inputs, fd->n_outputs, fd->n_states};
            for (int l = 0; l < 3; l++)
                for (int i = 0; i < counts[l]; i++)
                    if (lists[l][i].kind == PKG_FEATURE_OTHER)
                        return err_set(e, "model.mlmodel description: feature '%s' is not a multi-array or state; "
                                          "classifier-style features are not supported", lists[l][i].name);
        }
    if (cml_match_description(pkg->prog, &pkg->desc, e) < 0) return err_wrap(e, "model.mlmodel");
    for (int i = 0; i < pkg->prog->n_functions; i++) {
        int level = mil_opset_level(pkg->prog->functions[i]->opset);
        if (level > pkg->spec_version - 1)
            return err_set(e, "model.mlmodel: function '%s' uses opset %s but the specification version is %d",
                           pkg->prog->functions[i]->name, pkg->prog->functions[i]->opset, pkg->spec_version);
    }
    if (mil_program_validate(pkg->prog, (flags & PKG_OPEN_LENIENT) != 0, e) < 0) return err_wrap(e, "model.mlmodel");
    return 0;
}

static int manifest_paths(const char *pkg_path, const CmlManifest *m, char **model_file, Err *e) {
    *model_file = NULL;
    if (!plain_rel_path(m->model_path))
        return err_set(e, "%s/Manifest.json: root model path '%s' is not a relative path inside the package", pkg_path,
                       m->model_path);
    char *full = xasprintf("%s/Data/%s", pkg_path, m->model_path);
    struct stat st;
    if (stat(full, &st) < 0 || !S_ISREG(st.st_mode)) {
        err_set(e, "%s/Manifest.json: the root model item points to Data/%s, which does not exist", pkg_path,
                m->model_path);
        free(full);
        return -1;
    }
    if (m->weights_path) {
        char *wf = NULL;
        if (!plain_rel_path(m->weights_path) || (wf = xasprintf("%s/Data/%s", pkg_path, m->weights_path), stat(wf, &st) < 0)) {
            err_set(e, "%s/Manifest.json: the weights item points to Data/%s, which does not exist", pkg_path,
                    m->weights_path);
            free(wf);
            free(full);
            return -1;
        }
        free(wf);
    }
    *model_file = full;
    return 0;
}

int pkg_open(Package **out, const char *path, unsigned flags, Err *e) {
    *out = NULL;
    if (!path_is_dir(path)) return err_set(e, "%s is not a directory (an .mlpackage is a directory)", path);
    char *mpath = path_join(path, "Manifest.json"), *json = NULL, *model_file = NULL, *model = NULL;
    size_t json_len, model_len;
    CmlManifest m;
    Package *pkg = NULL;
    ReadCtx c = {0};
    int rc = -1;
    memset(&m, 0, sizeof m);
    if (file_read_all(mpath, MAX_MANIFEST_BYTES, &json, &json_len, e) < 0) goto out;
    if (cml_manifest_parse(json, json_len, &m, e) < 0 || manifest_paths(path, &m, &model_file, e) < 0) {
        err_wrap(e, "%s", path);
        goto out;
    }
    if (file_read_all(model_file, MAX_MODEL_BYTES, &model, &model_len, e) < 0) goto out;
    pkg = xcalloc(1, sizeof *pkg);
    pkg->path = xstrdup(path);
    pkg->model_id = xstrdup(m.model_id);
    pkg->weights_id = m.weights_id ? xstrdup(m.weights_id) : NULL;
    c.pkg = pkg;
    c.model_dir = path_dir(model_file);
    if (load_model(pkg, &c, (const uint8_t *)model, model_len, flags, e) < 0) {
        err_wrap(e, "%s", path);
        goto out;
    }
    *out = pkg;
    pkg = NULL;
    rc = 0;
out:
    pkg_close(pkg);
    cml_manifest_free(&m);
    free(c.model_dir);
    free(mpath);
    free(json);
    free(model_file);
    free(model);
    return rc;
}

int pkg_open_memory(Package **out, const PkgMemory *mem, unsigned flags, Err *e) {
    *out = NULL;
    CmlManifest m;
    memset(&m, 0, sizeof m);
    if (mem->manifest) {
        if (cml_manifest_parse(mem->manifest, mem->manifest_len, &m, e) < 0) return -1;
        int ok = !strcmp(m.model_path, "com.apple.CoreML/model.mlmodel") &&
                 (!m.weights_path || !strcmp(m.weights_path, "com.apple.CoreML/weights"));
        cml_manifest_free(&m);
        if (!ok) return err_set(e, "Manifest.json: an item points to a path that does not exist");
    }
    Package *pkg = xcalloc(1, sizeof *pkg);
    pkg->path = xstrdup("(memory)");
    ReadCtx c = {pkg, NULL, mem};
    if (load_model(pkg, &c, mem->model, mem->model_len, flags, e) < 0) {
        pkg_close(pkg);
        return -1;
    }
    *out = pkg;
    return 0;
}

/* ==== Text dumps ==== */

int pkg_model_to_text(const void *model, size_t len, char **out, Err *e) {
    PbModel *m = core_ml__specification__model__unpack(NULL, len, model);
    if (!m) return err_set(e, "not a valid Core ML model protobuf");
    *out = cml_proto_text(&m->base);
    core_ml__specification__model__free_unpacked(m, NULL);
    return 0;
}

int pkg_description_to_text(const void *model, size_t len, char **out, Err *e) {
    PbModel *m = core_ml__specification__model__unpack(NULL, len, model);
    if (!m) return err_set(e, "not a valid Core ML model protobuf");
    if (!m->description) {
        core_ml__specification__model__free_unpacked(m, NULL);
        return err_set(e, "the model has no description");
    }
    char *desc = cml_proto_text(&m->description->base);
    *out = xasprintf("specificationVersion: %d\n%s", m->specificationversion, desc);
    free(desc);
    core_ml__specification__model__free_unpacked(m, NULL);
    return 0;
}
