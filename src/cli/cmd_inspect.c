/* cmd_inspect.c - `anemll inspect PKG.mlpackage [--mil]`: what a Core ML package holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/util.h"
#include "coreml/package.h"
#include "mil/print.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: anemll inspect PKG.mlpackage [--mil]\n\n"
            "Shows what a Core ML ML-Program package holds: specification version, functions,\n"
            "inputs/outputs/states with dtypes and shapes, op types per function, and how many\n"
            "weight blobs (and bytes) are shared between functions or unique to one.\n"
            "The package is fully checked while it is read (manifest, protobuf, weight blobs,\n"
            "op signatures and types); op types anemll does not know are listed, not rejected.\n\n"
            "  --mil    print the program as model.mil text (Core ML compiler syntax) instead\n");
}

static void shape_str(const PkgShape *s, char *buf, size_t n) {
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < s->rank && len < n; i++) len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? ", " : "", (long long)s->dims[i]);
    if (len < n) snprintf(buf + len, n - len, "]");
}

static const MilValue *find_input(const MilFunction *f, const char *name) {
    for (int i = 0; i < f->n_inputs; i++)
        if (!strcmp(f->inputs[i]->name, name)) return f->inputs[i];
    return NULL;
}

static void print_features(const char *title, int n, const PkgFeature *fs, const MilFunction *f, int outputs) {
    if (!n) return;
    printf("  %s\n", title);
    for (int i = 0; i < n; i++) {
        const PkgFeature *ft = &fs[i];
        char shape[256] = "(shape not declared)";
        /* the MIL type is the precise one (unknown dims as ?); the description's is the default */
        const MilValue *v = outputs ? NULL : find_input(f, ft->name);
        if (outputs)
            for (int k = 0; k < f->n_outputs; k++)
                if (!strcmp(f->outputs[k]->name, ft->name)) v = f->outputs[k];
        if (v) {
            MilType t = v->type;
            t.kind = MIL_TENSOR;
            char ts[256];
            mil_type_str(&t, ts, sizeof ts);
            const char *open = strchr(ts, '[');
            snprintf(shape, sizeof shape, "%s", open ? open : "[] (scalar)");
            char *close = strrchr(shape, '>');
            if (close) *close = 0;
        } else if (ft->shape.rank) {
            shape_str(&ft->shape, shape, sizeof shape);
        }
        printf("    %-28s %-6s %s", ft->name, mil_dtype_name(ft->dtype), shape);
        if (ft->n_enum) {
            printf("  enumerated:");
            for (int s = 0; s < ft->n_enum; s++) {
                char es[128];
                shape_str(&ft->enum_shapes[s], es, sizeof es);
                printf(" %s%s", es, s == 0 ? " (default)" : "");
            }
        }
        printf("\n");
    }
}

typedef struct OpCount {
    const char *type;
    int n;
} OpCount;

static int by_count(const void *a, const void *b) {
    const OpCount *x = a, *y = b;
    return x->n != y->n ? y->n - x->n : strcmp(x->type, y->type);
}

static void print_histogram(const MilFunction *f) {
    OpCount *c = xcalloc((size_t)f->n_ops + 1, sizeof *c);
    int n = 0;
    for (int i = 0; i < f->n_ops; i++) {
        int k = 0;
        while (k < n && strcmp(c[k].type, f->ops[i]->type)) k++;
        if (k == n) c[n++].type = f->ops[i]->type;
        c[k].n++;
    }
    qsort(c, (size_t)n, sizeof *c, by_count);
    printf("  ops (%d):", f->n_ops);
    for (int k = 0; k < n; k++) printf("%s %s %d", k ? "," : "", c[k].type, c[k].n);
    printf("\n");
    free(c);
}

/* ---- weights: distinct blobs referenced, shared between functions or unique ---- */

typedef struct BlobUse {
    const void *file;
    uint64_t offset, nbytes;
    unsigned long fn_mask;  /* functions (first 64) that reference it */
    int n_fns;
} BlobUse;

static void note_blob(BlobUse **uses, int *n, int *cap, const MilConst *c, int fn) {
    if (!c || c->kind != MIL_CONST_BLOB) return;
    for (int i = 0; i < *n; i++) {
        BlobUse *u = &(*uses)[i];
        if (u->file == c->blob.owner && u->offset == c->blob.offset) {
            unsigned long bit = fn < 64 ? 1ul << fn : 0;
            if (!(u->fn_mask & bit)) u->fn_mask |= bit, u->n_fns++;
            return;
        }
    }
    if (*n == *cap) *uses = xrealloc(*uses, sizeof **uses * (size_t)(*cap = *cap ? *cap * 2 : 64));
    BlobUse *u = &(*uses)[(*n)++];
    u->file = c->blob.owner;
    u->offset = c->blob.offset;
    u->nbytes = c->blob.nbytes;
    u->fn_mask = fn < 64 ? 1ul << fn : 0;
    u->n_fns = 1;
}

static void print_weights(const Package *pkg) {
    const MilProgram *p = pkg->prog;
    BlobUse *uses = NULL;
    int n = 0, cap = 0;
    for (int fi = 0; fi < p->n_functions; fi++) {
        const MilFunction *f = p->functions[fi];
        for (int i = 0; i < f->n_ops; i++) {
            const MilOp *op = f->ops[i];
            for (int k = 0; k < op->n_outputs; k++) note_blob(&uses, &n, &cap, op->outputs[k]->data, fi);
            for (int a = 0; a < op->n_args; a++)
                for (int k = 0; k < op->args[a].n; k++)
                    if (!op->args[a].vals[k]->name) note_blob(&uses, &n, &cap, op->args[a].vals[k]->data, fi);
        }
    }
    printf("\nweights\n");
    for (int i = 0; i < pkg->n_blob_files; i++) {
        PkgBlobFileInfo bi;
        pkg_blob_file_info(pkg, i, &bi);
        printf("  file %-24s %u blobs, %llu bytes\n", bi.name, bi.count, (unsigned long long)bi.size);
    }
    if (!pkg->n_blob_files) printf("  no weight file referenced\n");
    uint64_t total = 0, shared = 0;
    int n_shared = 0;
    for (int i = 0; i < n; i++) {
        total += uses[i].nbytes;
        if (uses[i].n_fns > 1) shared += uses[i].nbytes, n_shared++;
    }
    printf("  referenced  %d blobs, %llu bytes\n", n, (unsigned long long)total);
    printf("  shared      %d blobs, %llu bytes (used by more than one function)\n", n_shared, (unsigned long long)shared);
    for (int fi = 0; fi < p->n_functions && fi < 64; fi++) {
        int k = 0;
        uint64_t bytes = 0;
        for (int i = 0; i < n; i++)
            if (uses[i].n_fns == 1 && (uses[i].fn_mask & (1ul << fi))) k++, bytes += uses[i].nbytes;
        printf("  unique      %d blobs, %llu bytes only in %s\n", k, (unsigned long long)bytes, p->functions[fi]->name);
    }
    free(uses);
}

static int by_key(const void *a, const void *b) {
    return strcmp(((const PkgKeyValue *)a)->key, ((const PkgKeyValue *)b)->key);
}

static void print_metadata(const PkgMetadata *m) {
    if (!m->short_description && !m->version_string && !m->author && !m->license && !m->n_user) return;
    printf("\nmetadata\n");
    if (m->short_description) printf("  shortDescription  %s\n", m->short_description);
    if (m->version_string) printf("  versionString     %s\n", m->version_string);
    if (m->author) printf("  author            %s\n", m->author);
    if (m->license) printf("  license           %s\n", m->license);
    PkgKeyValue *kv = xmalloc(sizeof *kv * (size_t)(m->n_user + 1));
    memcpy(kv, m->user, sizeof *kv * (size_t)m->n_user);
    qsort(kv, (size_t)m->n_user, sizeof *kv, by_key);
    for (int i = 0; i < m->n_user; i++) printf("  %s = %s\n", kv[i].key, kv[i].value);
    free(kv);
}

static void print_summary(const Package *pkg) {
    const MilProgram *p = pkg->prog;
    const PkgDescription *d = &pkg->desc;
    printf("package        %s\n", pkg->path);
    printf("spec version   %d%s\n", pkg->spec_version, pkg->spec_version == 9 ? " (iOS 18 / macOS 15)" : "");
    printf("model.mlmodel  %llu bytes\n", (unsigned long long)pkg->model_bytes);
    printf("functions      %d:", p->n_functions);
    for (int i = 0; i < p->n_functions; i++)
        printf("%s %s%s", i ? "," : "", p->functions[i]->name,
               d->multifunction && !strcmp(d->default_function, p->functions[i]->name) ? " (default)" : "");
    printf("%s\n", d->multifunction ? "" : "  (single-function description)");
    for (int i = 0; i < d->n_functions; i++) {
        const PkgFunctionDesc *fd = &d->functions[i];
        const MilFunction *f = mil_program_function(p, fd->name);
        printf("\nfunction %s  opset %s\n", fd->name, f->opset);
        print_features("inputs", fd->n_inputs, fd->inputs, f, 0);
        print_features("states", fd->n_states, fd->states, f, 0);
        print_features("outputs", fd->n_outputs, fd->outputs, f, 1);
        print_histogram(f);
    }
    print_weights(pkg);
    print_metadata(&d->metadata);
}

static int run_inspect(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_OK;
    }
    const char *path = NULL;
    int mil = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mil"))
            mil = 1;
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_usage_error("inspect", "unknown option '%s'", argv[i]);
        else if (path)
            return cli_usage_error("inspect", "one package at a time ('%s' and '%s' given)", path, argv[i]);
        else
            path = argv[i];
    }
    if (!path) return cli_usage_error("inspect", "missing PKG.mlpackage");
    Err e;
    Package *pkg;
    if (pkg_open(&pkg, path, PKG_OPEN_LENIENT, &e) < 0) return cli_fail("%s", e.msg);
    if (mil) {
        char *text = mil_program_to_text(pkg->prog);
        fputs(text, stdout);
        free(text);
    } else {
        print_summary(pkg);
    }
    pkg_close(pkg);
    return CLI_OK;
}

CLI_COMMAND(inspect, "inspect", "show what a Core ML .mlpackage holds", run_inspect)
