/* weights.c - streaming checkpoint tensors into packages, LUT-quantized or fp16 (see internal.h).
 *
 * Memory: a tensor is read in blocks of whole LUT groups (about BLOCK_VALUES values); only the
 * packed result (bits/16 of the fp16 size) or, without a LUT, the fp16 tensor is held until it
 * is written as one blob. A per-tensor LUT over a tensor too large to hold whole is fitted in
 * two passes (histogram, then indices).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "common/util.h"
#include "parts/internal.h"
#include "quant/fp16_tools.h"
#include "quant/lut_pack.h"

#define BLOCK_VALUES ((size_t)8 << 20)        /* values per read block (16 MB of fp16) */
#define WHOLE_TENSOR_VALUES ((size_t)64 << 20) /* a per-tensor LUT below this is fitted in one pass */

const char *parts_mil_name(const char *tensor, char *buf, size_t n) {
    size_t i = 0;
    for (; tensor[i] && i + 1 < n; i++) {
        char c = tensor[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        buf[i] = ok ? c : '_';
    }
    buf[i] = 0;
    return buf;
}

static MilDType index_dtype(int bits) {
    switch (bits) {
    case 1: return MIL_UINT1;
    case 2: return MIL_UINT2;
    case 3: return MIL_UINT3;
    case 4: return MIL_UINT4;
    case 6: return MIL_UINT6;
    default: return MIL_UINT8;
    }
}

/* ==== reading ==== */

static const StTensor *find_tensor(const WeightLoader *l, const char *name, long rows_needed, long cols, Err *e) {
    const StTensor *t = ckpt_require(l->src->ckpt, name, e);
    if (!t) return NULL;
    int ok = cols > 0 ? t->ndim == 2 && t->shape[1] == cols && t->shape[0] >= rows_needed
                      : t->ndim == 1 && t->shape[0] == rows_needed;
    if (!ok)
        return err_set(e, "tensor %s has shape [%lld%s%lld], expected %s[%ld%s%ld]", name, (long long)t->shape[0],
                       t->ndim > 1 ? ", " : "", t->ndim > 1 ? (long long)t->shape[1] : 0LL,
                       cols > 0 ? "at least " : "", rows_needed, cols > 0 ? ", " : "", cols > 0 ? cols : 0L),
               NULL;
    return t;
}

/* Rows [r0, r0+n) as fp16 into dst; values beyond the fp16 range are clamped to +-65504. */
static int read_rows(const WeightLoader *l, const StTensor *t, size_t r0, size_t n, uint16_t *dst, Err *e) {
    long over = st_read_rows_f16(t, r0, n, dst, e);
    if (over < 0) return -1;
    if (over > 0) {
        fp16_saturate_inf(dst, n * st_row_numel(t));
        if (l->src->note) {
            char msg[320];
            snprintf(msg, sizeof msg, "%s: %ld values beyond the fp16 range were clamped to +-65504", t->name, over);
            l->src->note(l->src->note_ctx, msg);
        }
    }
    return 0;
}

/* ==== adding data to every target ==== */

/* A literal (inline or blob) holding data, for each target. */
static int add_literal(WeightLoader *l, MilDType dt, int rank, const int64_t *dims, uint64_t numel, const void *data,
                       size_t nbytes, MilValue **out, Err *e) {
    for (int i = 0; i < l->n; i++) {
        MilProgram *p = l->t[i].f->prog;
        if (mil_should_use_blob(dt, (int64_t)numel, PKG_SPEC_VERSION)) {
            MilBlobRef ref;
            if (pkg_writer_add_blob(l->t[i].w, dt, numel, data, &ref, e) < 0) return -1;
            out[i] = mil_literal_blob(p, dt, rank, dims, &ref);
        } else {
            out[i] = mil_literal(p, dt, rank, dims, data, nbytes);
        }
        if (!out[i]) return mil_error(p, e);
    }
    return 0;
}

int wl_fp16(WeightLoader *l, const uint16_t *data, int rank, const int64_t *dims, const char *name, MilValue **vals,
            Err *e) {
    uint64_t numel = 1;
    for (int d = 0; d < rank; d++) numel *= (uint64_t)dims[d];
    for (int i = 0; i < l->n; i++) {
        MilFunction *f = l->t[i].f;
        if (mil_should_use_blob(MIL_FP16, (int64_t)numel, PKG_SPEC_VERSION)) {
            MilBlobRef ref;
            if (pkg_writer_add_blob(l->t[i].w, MIL_FP16, numel, data, &ref, e) < 0) return -1;
            vals[i] = mil_const_blob(f, name, MIL_FP16, rank, dims, &ref);
        } else {
            vals[i] = mil_const(f, name, MIL_FP16, rank, dims, data, numel * 2);
        }
        if (!vals[i]) return mil_error(f->prog, e);
    }
    return 0;
}

int wl_vector(WeightLoader *l, const char *tensor, long n, int rank, const int64_t *dims, const char *name,
              MilValue **vals, Err *e) {
    const StTensor *t = find_tensor(l, tensor, n, 0, e);
    if (!t) return -1;
    uint16_t *buf = xmalloc(sizeof *buf * (size_t)n);
    int rc = read_rows(l, t, 0, (size_t)n, buf, e);
    if (rc == 0) rc = wl_fp16(l, buf, rank, dims, name, vals, e);
    free(buf);
    return rc;
}

/* ==== matrices ==== */

static size_t gcd_size(size_t a, size_t b) {
    while (b) {
        size_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Rows per block: a multiple of the group and of 8 (so packed blocks start on a byte). */
static size_t block_rows(size_t rows, size_t cols, size_t group) {
    size_t unit = group ? group / gcd_size(group, 8) * 8 : 8;
    size_t want = BLOCK_VALUES / (cols ? cols : 1);
    size_t r = want / unit * unit;
    if (r < unit) r = unit;
    return r < rows ? r : rows;
}

static void add_stats(WeightLoader *l, const LutStats *s) {
    for (int i = 0; i < l->n; i++) {
        lut_stats_add(&l->t[i].r->lut, s);
        l->t[i].r->quantized = 1;
    }
}

/* Grouped LUT (group divides rows): blocks of whole groups, quantized and packed in place. */
static int quantize_grouped(WeightLoader *l, const StTensor *t, size_t r0, size_t rows, size_t cols,
                            const LutSpec *lut, uint16_t *table, uint8_t *packed, LutStats *stats, Err *e) {
    size_t group = (size_t)lut->group, per = (size_t)1 << lut->bits;
    size_t br = block_rows(rows, cols, group);
    uint16_t *w = xmalloc(sizeof *w * br * cols);
    uint8_t *idx = xmalloc(br * cols);
    int rc = 0;
    for (size_t s = 0; s < rows && rc == 0; s += br) {
        size_t n = rows - s < br ? rows - s : br;
        rc = read_rows(l, t, r0 + s, n, w, e);
        if (rc == 0)
            rc = lut_quantize_rows(w, n, cols, group, lut->bits, l->src->threads, t->name, r0 + s,
                                   table + s / group * per, idx, stats, e);
        if (rc == 0) lut_pack_indices(idx, n * cols, lut->bits, packed + s * cols * (size_t)lut->bits / 8);
    }
    free(w);
    free(idx);
    return rc;
}

/* One LUT for the whole tensor: in one pass if it is small enough, else histogram + mapping. */
static int quantize_per_tensor(WeightLoader *l, const StTensor *t, size_t r0, size_t rows, size_t cols,
                               const LutSpec *lut, uint16_t *table, uint8_t *packed, LutStats *stats, Err *e) {
    size_t numel = rows * cols;
    if (numel <= WHOLE_TENSOR_VALUES) {
        uint16_t *w = xmalloc(sizeof *w * numel);
        uint8_t *idx = xmalloc(numel);
        int rc = read_rows(l, t, r0, rows, w, e);
        if (rc == 0) rc = lut_quantize_rows(w, rows, cols, rows, lut->bits, l->src->threads, t->name, r0, table, idx,
                                            stats, e);
        if (rc == 0) lut_pack_indices(idx, numel, lut->bits, packed);
        free(w);
        free(idx);
        return rc;
    }
    size_t br = block_rows(rows, cols, 0);
    uint16_t *w = xmalloc(sizeof *w * br * cols);
    uint8_t *idx = xmalloc(br * cols);
    LutHist *h = lut_hist_new();
    LutMap *m = NULL;
    int used = 0, rc = 0;
    for (size_t s = 0; s < rows && rc == 0; s += br) {
        size_t n = rows - s < br ? rows - s : br;
        rc = read_rows(l, t, r0 + s, n, w, e);
        if (rc == 0) rc = lut_hist_add(h, w, n * cols, t->name, e);
    }
    if (rc == 0) rc = lut_hist_fit(h, lut->bits, table, &used, stats, e);
    if (rc == 0) m = lut_map_new(table, used);
    for (size_t s = 0; s < rows && rc == 0; s += br) {
        size_t n = rows - s < br ? rows - s : br;
        rc = read_rows(l, t, r0 + s, n, w, e);
        if (rc == 0) rc = lut_map_apply(m, w, n * cols, idx, t->name, e);
        if (rc == 0) lut_pack_indices(idx, n * cols, lut->bits, packed + s * cols * (size_t)lut->bits / 8);
    }
    lut_map_free(m);
    lut_hist_free(h);
    free(w);
    free(idx);
    return rc;
}

static int matrix_lut(WeightLoader *l, const StTensor *t, size_t r0, size_t rows, size_t cols, int rank,
                      const int64_t *dims, const LutSpec *lut, const char *name, MilValue **vals, Err *e) {
    size_t numel = rows * cols, per = (size_t)1 << lut->bits;
    size_t groups = lut->group > 0 ? rows / (size_t)lut->group : 1;
    size_t packed_bytes = lut_packed_size(numel, lut->bits);
    uint8_t *packed = xcalloc(packed_bytes ? packed_bytes : 1, 1);
    uint16_t *table = xcalloc(groups * per, sizeof *table);
    LutStats stats = {0};
    int rc = lut->group > 0 ? quantize_grouped(l, t, r0, rows, cols, lut, table, packed, &stats, e)
                            : quantize_per_tensor(l, t, r0, rows, cols, lut, table, packed, &stats, e);
    MilValue *ix[PARTS_MAX_TARGETS], *lt[PARTS_MAX_TARGETS];
    int64_t lut_dims[MIL_MAX_RANK];
    lut_dims[0] = (int64_t)groups;
    for (int d = 1; d < rank; d++) lut_dims[d] = 1;
    lut_dims[rank] = (int64_t)per;
    lut_dims[rank + 1] = 1;
    if (rc == 0) rc = add_literal(l, index_dtype(lut->bits), rank, dims, numel, packed, packed_bytes, ix, e);
    if (rc == 0) rc = add_literal(l, MIL_FP16, rank + 2, lut_dims, groups * per, table, groups * per * 2, lt, e);
    for (int i = 0; i < l->n && rc == 0; i++) {
        vals[i] = mil_add_lut_to_dense(l->t[i].f, name, ix[i], lt[i], -1);
        if (!vals[i]) rc = mil_error(l->t[i].f->prog, e);
    }
    if (rc == 0) add_stats(l, &stats);
    free(packed);
    free(table);
    return rc;
}

static int matrix_fp16(WeightLoader *l, const StTensor *t, size_t r0, size_t rows, size_t cols, int rank,
                       const int64_t *dims, const char *name, MilValue **vals, Err *e) {
    uint16_t *w = xmalloc(sizeof *w * rows * cols);
    size_t br = block_rows(rows, cols, 0);
    int rc = 0;
    for (size_t s = 0; s < rows && rc == 0; s += br) {
        size_t n = rows - s < br ? rows - s : br;
        rc = read_rows(l, t, r0 + s, n, w + s * cols, e);
    }
    if (rc == 0) rc = wl_fp16(l, w, rank, dims, name, vals, e);
    free(w);
    return rc;
}

int wl_matrix(WeightLoader *l, const char *tensor, long r0, long rows, long cols, int rank, const int64_t *dims,
              const LutSpec *lut, const char *name, MilValue **vals, Err *e) {
    const StTensor *t = find_tensor(l, tensor, r0 + rows, cols, e);
    if (!t) return -1;
    AN_ASSERT(rank >= 2 && rank + 2 <= MIL_MAX_RANK && dims[0] == rows);
    if (lut && lut->bits > 0) {
        if (lut_check_channels(lut, "LUT", tensor, rows, e) < 0) return -1;
        return matrix_lut(l, t, (size_t)r0, (size_t)rows, (size_t)cols, rank, dims, lut, name, vals, e);
    }
    return matrix_fp16(l, t, (size_t)r0, (size_t)rows, (size_t)cols, rank, dims, name, vals, e);
}
