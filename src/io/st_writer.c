/* st_writer.c - streaming safetensors writer (format in st_writer.h / safetensors.h). */
#include "io/st_writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

struct StWriter {
    char *path, *tmp;
    FILE *f;
    uint64_t expected, written;
};

static void append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        while (*len + n + 1 > *cap) *cap = *cap ? *cap * 2 : 256;
        *buf = xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
}

static void append_str(char **buf, size_t *len, size_t *cap, const char *s) { append(buf, len, cap, s, strlen(s)); }

static void append_u64(char **buf, size_t *len, size_t *cap, uint64_t v) {
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    append(buf, len, cap, tmp, (size_t)n);
}

void json_append_string(char **buf, size_t *len, size_t *cap, const char *s) {
    append(buf, len, cap, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            append(buf, len, cap, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            append(buf, len, cap, esc, 6);
        } else {
            append(buf, len, cap, (const char *)p, 1);
        }
    }
    append(buf, len, cap, "\"", 1);
}

uint64_t st_specs_nbytes(const StWriteSpec *tensors, size_t n) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < tensors[i].ndim; d++) numel *= (uint64_t)tensors[i].shape[d];
        total += numel * st_dtype_size(tensors[i].dtype);
    }
    return total;
}

static char *build_header(const StWriteSpec *tensors, size_t n, size_t *out_len) {
    char *h = NULL;
    size_t len = 0, cap = 0;
    append_str(&h, &len, &cap, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const StWriteSpec *t = &tensors[i];
        uint64_t bytes = st_specs_nbytes(t, 1);
        append_str(&h, &len, &cap, ",");
        json_append_string(&h, &len, &cap, t->name);
        append_str(&h, &len, &cap, ":{\"dtype\":\"");
        const char *dt = st_dtype_name(t->dtype);
        append(&h, &len, &cap, dt, strlen(dt));
        append_str(&h, &len, &cap, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) append_str(&h, &len, &cap, ",");
            append_u64(&h, &len, &cap, (uint64_t)t->shape[d]);
        }
        append_str(&h, &len, &cap, "],\"data_offsets\":[");
        append_u64(&h, &len, &cap, off);
        append_str(&h, &len, &cap, ",");
        append_u64(&h, &len, &cap, off + bytes);
        append_str(&h, &len, &cap, "]}");
        off += bytes;
    }
    append_str(&h, &len, &cap, "}");
    while (len % 8) append_str(&h, &len, &cap, " ");
    *out_len = len;
    return h;
}

int st_writer_open(StWriter **out, const char *path, const StWriteSpec *tensors, size_t n, Err *e) {
    *out = NULL;
    StWriter *w = xcalloc(1, sizeof *w);
    w->path = xstrdup(path);
    w->tmp = xasprintf("%s.tmp", path);
    w->expected = st_specs_nbytes(tensors, n);
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        err_errno(e, "cannot create %s", w->tmp);
        st_writer_abort(w);
        return -1;
    }
    setvbuf(w->f, NULL, _IOFBF, (size_t)1 << 20);
    size_t hlen;
    char *h = build_header(tensors, n, &hlen);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    int ok = fwrite(len8, 1, 8, w->f) == 8 && fwrite(h, 1, hlen, w->f) == hlen;
    free(h);
    if (!ok) {
        err_errno(e, "cannot write %s", w->tmp);
        st_writer_abort(w);
        return -1;
    }
    *out = w;
    return 0;
}

int st_writer_write(StWriter *w, const void *data, size_t len, Err *e) {
    if (w->written + len > w->expected)
        return err_set(e, "%s: more tensor data written than the header declares (%llu bytes)", w->path,
                       (unsigned long long)w->expected);
    if (len && fwrite(data, 1, len, w->f) != len) return err_errno(e, "cannot write %s", w->tmp);
    w->written += len;
    return 0;
}

int st_writer_finish(StWriter *w, Err *e) {
    if (w->written != w->expected)
        return err_set(e, "%s: %llu bytes of tensor data written, the header declares %llu", w->path,
                       (unsigned long long)w->written, (unsigned long long)w->expected);
    int rc = fclose(w->f);
    w->f = NULL;
    if (rc != 0) return err_errno(e, "cannot write %s", w->tmp);
    if (rename(w->tmp, w->path) < 0) return err_errno(e, "cannot rename %s to %s", w->tmp, w->path);
    free(w->tmp);
    w->tmp = NULL;
    st_writer_abort(w); /* frees the rest */
    return 0;
}

void st_writer_abort(StWriter *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    if (w->tmp) {
        unlink(w->tmp);
        free(w->tmp);
    }
    free(w->path);
    free(w);
}
