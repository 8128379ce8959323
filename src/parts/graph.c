/* graph.c - recurring graph patterns, package metadata and reports (see internal.h). */
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "parts/internal.h"

/* ==== graph helpers ==== */

MilValue *g_i32(MilFunction *f, int32_t v) { return mil_const_i32v(f, NULL, 1, &v); }

MilValue *g_to_conv(MilFunction *f, MilValue *x) {
    static const int32_t perm[3] = {0, 2, 1}, axis[1] = {2};
    MilValue *t = mil_add_transpose(f, NULL, x, 3, perm);   /* (1, H, T) */
    return mil_add_expand_dims(f, NULL, t, 1, axis);         /* (1, H, 1, T) */
}

MilValue *g_from_conv(MilFunction *f, MilValue *x, const char *name) {
    static const int32_t perm[3] = {0, 2, 1}, axis[1] = {2};
    MilValue *s = mil_add_squeeze(f, NULL, x, 1, axis);      /* (1, H, T) */
    return mil_add_transpose(f, name, s, 3, perm);           /* (1, T, H) */
}

MilValue *g_rmsnorm(MilFunction *f, MilValue *x, int axis, MilValue *gain, double eps) {
    if (!x) return NULL;
    int rank = x->type.rank;
    int64_t c = x->type.dims[axis];
    MilValue *neg = mil_add_mul(f, NULL, x, mil_const_fp16(f, NULL, -1.0f));
    MilValue *both[2] = {x, neg};
    MilValue *cat = mil_add_concat(f, NULL, 2, both, axis, 0);
    int32_t ax = axis;
    MilValue *norm = mil_add_layer_norm(f, NULL, cat, 1, &ax, NULL, NULL, eps);
    int32_t begin[MIL_MAX_RANK] = {0}, end[MIL_MAX_RANK];
    for (int d = 0; d < rank; d++) end[d] = (int32_t)x->type.dims[d];
    end[axis] = (int32_t)c;
    MilSlice s = {.rank = rank, .begin = begin, .end = end};
    MilValue *half = mil_add_slice_by_index(f, NULL, norm, &s);
    return mil_add_mul(f, NULL, half, gain);
}

MilValue *g_conv(MilFunction *f, MilValue *x, MilValue *w, MilValue *b) { return mil_add_conv(f, NULL, x, w, b, NULL); }

/* ==== metadata ==== */

void part_meta_init(PartMeta *m, const char *short_description, const char *info) {
    memset(m, 0, sizeof *m);
    m->md.short_description = short_description;
    m->md.version_string = "0.3.5";
    m->md.author = info;
    m->md.user = m->kv;
    part_meta_set(m, "com.anemll.info", "%s", info);
}

void part_meta_set(PartMeta *m, const char *key, const char *fmt, ...) {
    int i = 0;
    while (i < m->md.n_user && strcmp(m->kv[i].key, key)) i++;
    AN_ASSERT(i < (int)(sizeof m->kv / sizeof m->kv[0]));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->vals[i], sizeof m->vals[i], fmt, ap);
    va_end(ap);
    m->kv[i].key = key;
    m->kv[i].value = m->vals[i];
    if (i == m->md.n_user) m->md.n_user++;
}

/* ==== reports ==== */

uint64_t part_disk_bytes(const char *path) {
    struct stat st;
    if (lstat(path, &st) < 0) return 0;
    if (S_ISREG(st.st_mode)) return (uint64_t)st.st_size;
    if (!S_ISDIR(st.st_mode)) return 0;
    DIR *d = opendir(path);
    if (!d) return 0;
    uint64_t total = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *child = path_join(path, de->d_name);
        total += part_disk_bytes(child);
        free(child);
    }
    closedir(d);
    return total;
}

void part_report_finish(PartReport *r, const char *path) {
    char *w = path_join(path, "Data/com.apple.CoreML/weights/weight.bin");
    r->weight_bytes = part_disk_bytes(w);
    r->total_bytes = part_disk_bytes(path);
    free(w);
}
