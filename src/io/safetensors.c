/* safetensors.c - validated, mmap-backed safetensors reader (format in safetensors.h). */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/half.h"
#include "common/util.h"
#include "io/json.h"

struct StFile {
    char *path;
    int fd;
    unsigned char *map;     /* whole file, read-only */
    size_t size;
    uint64_t data_start;    /* 8 + header length */
    size_t n;
    StTensor *tensors;      /* sorted by name */
    char **names;           /* owned copies, tensors[i].name points here */
};

/* ==== dtypes ============================================================== */

static const struct {
    const char *name;
    int supported;
} known_dtypes[] = {
    {"F32", 1},      {"F16", 1},     {"BF16", 1},    {"F64", 0},    {"I64", 0},      {"U64", 0},
    {"I32", 0},      {"U32", 0},     {"I16", 0},     {"U16", 0},    {"I8", 0},       {"U8", 0},
    {"BOOL", 0},     {"F8_E4M3", 0}, {"F8_E5M2", 0}, {"F8_E8M0", 0}, {"F6_E2M3", 0}, {"F6_E3M2", 0},
    {"F4", 0},       {"C64", 0},
};

const char *st_dtype_name(StDtype d) {
    switch (d) {
    case ST_F32: return "F32";
    case ST_F16: return "F16";
    case ST_BF16: return "BF16";
    }
    return "?";
}

size_t st_dtype_size(StDtype d) { return d == ST_F32 ? 4 : 2; }

/* 1 = supported (*out set), 0 = a known but unsupported dtype, -1 = unknown. */
static int parse_dtype(const char *s, StDtype *out) {
    for (size_t i = 0; i < sizeof known_dtypes / sizeof known_dtypes[0]; i++) {
        if (strcmp(s, known_dtypes[i].name)) continue;
        if (!known_dtypes[i].supported) return 0;
        *out = !strcmp(s, "F32") ? ST_F32 : !strcmp(s, "F16") ? ST_F16 : ST_BF16;
        return 1;
    }
    return -1;
}

/* ==== header validation =================================================== */

static void format_shape(const StTensor *t, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Parses one header entry into t (name already set). */
static int parse_entry(const char *path, const cJSON *item, uint64_t data_size, uint64_t data_start, StTensor *t,
                       Err *e) {
    const char *name = t->name;
    if (!cJSON_IsObject(item))
        return err_set(e, "%s: tensor '%s': header entry must be an object, got %s", path, name,
                       json_type_name(item));
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dtype))
        return err_set(e, "%s: tensor '%s': \"dtype\" must be a string, got %s", path, name, json_type_name(dtype));
    int dk = parse_dtype(dtype->valuestring, &t->dtype);
    if (dk < 0) return err_set(e, "%s: tensor '%s': unknown dtype \"%.40s\"", path, name, dtype->valuestring);
    if (dk == 0)
        return err_set(e,
                       "%s: tensor '%s' has dtype %s; anemll reads BF16, F16 and F32 weights only. This looks "
                       "like a quantized checkpoint: dequantize it first (load it and save it again in bfloat16 "
                       "or float16)",
                       path, name, dtype->valuestring);
    if (!cJSON_IsArray(shape))
        return err_set(e, "%s: tensor '%s': \"shape\" must be an array, got %s", path, name, json_type_name(shape));
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_DIMS)
        return err_set(e, "%s: tensor '%s': %d dimensions, at most %d supported", path, name, ndim, ST_MAX_DIMS);
    t->ndim = ndim;
    size_t numel = 1;
    int d = 0, overflow = 0;
    for (const cJSON *it = shape->child; it; it = it->next, d++) {
        if (cJSON_IsNumber(it) && it->valuedouble < 0)
            return err_set(e, "%s: tensor '%s': shape has a negative dimension (%g)", path, name, it->valuedouble);
        uint64_t v;
        if (json_as_count(it, &v) < 0)
            return err_set(e, "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, d);
        t->shape[d] = (int64_t)v;
        if (mul_size(numel, (size_t)v, &numel) < 0) overflow = 1;
    }
    size_t nbytes = 0;
    if (overflow || mul_size(numel, st_dtype_size(t->dtype), &nbytes) < 0) {
        char sh[256];
        format_shape(t, sh, sizeof sh);
        return err_set(e, "%s: tensor '%s': shape %s overflows (more elements than memory can address)", path,
                       name, sh);
    }
    t->numel = numel;
    t->nbytes = nbytes;
    uint64_t b, en;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || json_as_count(offs->child, &b) < 0 ||
        json_as_count(offs->child->next, &en) < 0)
        return err_set(e, "%s: tensor '%s': \"data_offsets\" must be two integers [begin, end] in 0..2^53 (the data "
                          "section is %llu bytes)",
                       path, name, (unsigned long long)data_size);
    if (b > en)
        return err_set(e, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path, name,
                       (unsigned long long)b, (unsigned long long)en);
    if (en > data_size)
        return err_set(e,
                       "%s: tensor '%s': data_offsets [%llu, %llu] lie outside the file (data section is %llu "
                       "bytes; the file may be truncated)",
                       path, name, (unsigned long long)b, (unsigned long long)en, (unsigned long long)data_size);
    if (en - b != nbytes) {
        char sh[256];
        format_shape(t, sh, sizeof sh);
        return err_set(e, "%s: tensor '%s': data_offsets hold %llu bytes but shape %s of %s needs %zu", path, name,
                       (unsigned long long)(en - b), sh, st_dtype_name(t->dtype), nbytes);
    }
    t->offset = data_start + b;
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name);
}

static int by_offset(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int check_duplicates_and_overlaps(StFile *f, Err *e) {
    for (size_t i = 1; i < f->n; i++)
        if (!strcmp(f->tensors[i - 1].name, f->tensors[i].name))
            return err_set(e, "%s: tensor '%s' appears twice in the header", f->path, f->tensors[i].name);
    const StTensor **order = xmalloc(sizeof *order * (f->n ? f->n : 1));
    size_t m = 0;
    for (size_t i = 0; i < f->n; i++)
        if (f->tensors[i].nbytes) order[m++] = &f->tensors[i];
    qsort(order, m, sizeof *order, by_offset);
    int rc = 0;
    for (size_t i = 1; i < m; i++) {
        const StTensor *p = order[i - 1], *q = order[i];
        if (q->offset < p->offset + p->nbytes) {
            rc = err_set(e, "%s: tensors '%s' and '%s' overlap (data_offsets [%llu, %llu] and [%llu, %llu])",
                         f->path, p->name, q->name, (unsigned long long)(p->offset - f->data_start),
                         (unsigned long long)(p->offset - f->data_start + p->nbytes),
                         (unsigned long long)(q->offset - f->data_start),
                         (unsigned long long)(q->offset - f->data_start + q->nbytes));
            break;
        }
    }
    free(order);
    return rc;
}

static int parse_header(StFile *f, Err *e) {
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->map[i];
    uint64_t room = f->size - 8;
    if (hlen == 0) return err_set(e, "%s: header length is 0; not a safetensors file", f->path);
    if (hlen > ST_MAX_HEADER)
        return err_set(e, "%s: header length %llu is larger than the %llu-byte limit; not a safetensors file",
                       f->path, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
    if (hlen > room)
        return err_set(e, "%s: header length %llu runs past the end of the file (%zu bytes); truncated or not "
                          "a safetensors file",
                       f->path, (unsigned long long)hlen, f->size);
    f->data_start = 8 + hlen;
    const char *text = (const char *)f->map + 8;
    if (text[0] != '{') return err_set(e, "%s: header does not start with '{'; not a safetensors file", f->path);

    char what[1100];
    snprintf(what, sizeof what, "%.1000s: header", f->path);
    cJSON *root;
    if (json_parse_text(text, (size_t)hlen, what, &root, e) < 0) return -1;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return err_set(e, "%s: header must be a JSON object", f->path);
    }
    size_t cap = (size_t)cJSON_GetArraySize(root);
    f->tensors = xcalloc(cap ? cap : 1, sizeof *f->tensors);
    f->names = xcalloc(cap ? cap : 1, sizeof *f->names);
    uint64_t data_size = f->size - f->data_start;
    int rc = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (!strcmp(it->string, "__metadata__")) {
            if (!cJSON_IsObject(it)) {
                rc = err_set(e, "%s: \"__metadata__\" must be an object, got %s", f->path, json_type_name(it));
                break;
            }
            continue;
        }
        StTensor *t = &f->tensors[f->n];
        f->names[f->n] = xstrdup(it->string);
        t->name = f->names[f->n];
        f->n++;
        t->file = f;
        if ((rc = parse_entry(f->path, it, data_size, f->data_start, t, e)) < 0) break;
        t->data = f->map + t->offset;
    }
    cJSON_Delete(root);
    if (rc < 0) return -1;
    qsort(f->tensors, f->n, sizeof *f->tensors, by_name);
    return check_duplicates_and_overlaps(f, e);
}

/* ==== open / close / lookup =============================================== */

int st_open(StFile **out, const char *path, Err *e) {
    *out = NULL;
    StFile *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        err_errno(e, "cannot open %s", path);
        st_close(f);
        return -1;
    }
    struct stat st;
    if (fstat(f->fd, &st) < 0) {
        err_errno(e, "cannot read %s", path);
        st_close(f);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set(e, "%s is not a regular file", path);
        st_close(f);
        return -1;
    }
    if (st.st_size < 8) {
        err_set(e, "%s: file is %lld bytes, too small to be a safetensors file", path, (long long)st.st_size);
        st_close(f);
        return -1;
    }
    f->size = (size_t)st.st_size;
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, f->fd, 0);
    if (m == MAP_FAILED) {
        err_errno(e, "cannot map %s", path);
        st_close(f);
        return -1;
    }
    f->map = m;
    if (parse_header(f, e) < 0) {
        st_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

void st_close(StFile *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->size);
    if (f->fd >= 0) close(f->fd);
    for (size_t i = 0; i < f->n; i++) free(f->names[i]);
    free(f->names);
    free(f->tensors);
    free(f->path);
    free(f);
}

const char *st_path(const StFile *f) { return f->path; }
size_t st_count(const StFile *f) { return f->n; }
const StTensor *st_tensor(const StFile *f, size_t i) { return i < f->n ? &f->tensors[i] : NULL; }

const StTensor *st_find(const StFile *f, const char *name) {
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (!c) return &f->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

size_t st_row_numel(const StTensor *t) {
    size_t n = 1;
    for (int d = 1; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

size_t st_rows(const StTensor *t) { return t->ndim ? (size_t)t->shape[0] : 1; }

/* ==== reading ============================================================= */

static int check_rows(const StTensor *t, size_t r0, size_t n, Err *e) {
    size_t rows = st_rows(t);
    if (r0 > rows || n > rows - r0)
        return err_set(e, "%s: tensor '%s': rows [%zu, %zu) requested but it has %zu rows", st_path(t->file),
                       t->name, r0, r0 + n, rows);
    return 0;
}

/* Reads len bytes at offset into buf. */
static int read_at(const StTensor *t, uint64_t offset, void *buf, size_t len, Err *e) {
    unsigned char *p = buf;
    while (len) {
        ssize_t r = pread(t->file->fd, p, len, (off_t)offset);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return err_errno(e, "%s: tensor '%s': read failed", st_path(t->file), t->name);
        if (r == 0)
            return err_set(e, "%s: tensor '%s': unexpected end of file (was the file truncated?)", st_path(t->file),
                           t->name);
        p += r, offset += (uint64_t)r, len -= (size_t)r;
    }
    return 0;
}

/* The bulk reads go through pread() and a bounded bounce buffer rather than through the
 * mapping: on the development machine that streams a BF16 tensor into fp16 at 4-8 GB/s with a
 * resident set of about a megabyte, where faulting the mapped pages in (and dropping them
 * again to keep the resident set small) ran at 0.7-3.5 GB/s. The mapping still serves the
 * header and the StTensor.data views. */
#define BOUNCE_BYTES ((size_t)1 << 20)

typedef size_t (*convert_fn)(StDtype src_type, const void *src, size_t n, void *dst);

static size_t to_f32(StDtype t, const void *src, size_t n, void *dst) {
    st_convert_f32(t, src, n, dst);
    return 0;
}

static size_t to_f16(StDtype t, const void *src, size_t n, void *dst) { return st_convert_f16(t, src, n, dst); }

/* Rows [r0, r0+n) into dst as out_type (ST_F32 or ST_F16); returns the overflow count or -1.
 * The same dtype is read straight into dst; a conversion goes through the bounce buffer,
 * which stays in cache (converting in place in dst would move every byte twice more). */
static long read_rows(const StTensor *t, size_t r0, size_t n, void *dst, StDtype out_type, Err *e) {
    if (check_rows(t, r0, n, e) < 0) return -1;
    size_t es = st_dtype_size(t->dtype), out_size = st_dtype_size(out_type), count = n * st_row_numel(t);
    uint64_t offset = t->offset + (uint64_t)(r0 * st_row_numel(t) * es);
    if (t->dtype == out_type) return read_at(t, offset, dst, count * es, e) < 0 ? -1 : 0;
    convert_fn convert = out_type == ST_F32 ? to_f32 : to_f16;
    size_t chunk = BOUNCE_BYTES / es, over = 0;
    unsigned char *bounce = xmalloc(count * es < BOUNCE_BYTES ? count * es + 1 : BOUNCE_BYTES);
    for (size_t i = 0; i < count; i += chunk) {
        size_t m = count - i < chunk ? count - i : chunk;
        if (read_at(t, offset + i * es, bounce, m * es, e) < 0) {
            free(bounce);
            return -1;
        }
        over += convert(t->dtype, bounce, m, (unsigned char *)dst + i * out_size);
    }
    free(bounce);
    return (long)over;
}

int st_read_rows_f32(const StTensor *t, size_t r0, size_t n, float *dst, Err *e) {
    return read_rows(t, r0, n, dst, ST_F32, e) < 0 ? -1 : 0;
}

long st_read_rows_f16(const StTensor *t, size_t r0, size_t n, uint16_t *dst, Err *e) {
    return read_rows(t, r0, n, dst, ST_F16, e);
}

int st_read_f32(const StTensor *t, float *dst, Err *e) { return st_read_rows_f32(t, 0, st_rows(t), dst, e); }

long st_read_f16(const StTensor *t, uint16_t *dst, Err *e) { return st_read_rows_f16(t, 0, st_rows(t), dst, e); }
