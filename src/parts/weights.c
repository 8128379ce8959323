/* weights.c - streaming checkpoint tensors into packages, LUT-quantized or fp16 (see internal.h),
 * and reading them ahead on a background thread (part.h).
 *
 * A matrix goes through two stages: compute (read it in blocks of whole LUT groups, about
 * BLOCK_VALUES values at a time, convert to fp16, quantize and pack), then store (add the
 * blobs to every target's weight.bin and make the MIL values). Only the packed result (bits/16 of
 * the fp16 size) is held between the two. A per-tensor LUT over a tensor too large to hold
 * whole is fitted in two passes (histogram, then indices). Without a LUT, the store stage
 * reads, converts and writes the matrix block by block (store_streamed).
 *
 * The prefetcher runs the compute stage of the planned jobs in order on its own thread (whose
 * quantization uses the worker threads), so reading and quantizing the next matrix overlaps
 * with writing the current one. A reader thread in turn reads the blocks of the grouped-LUT
 * jobs ahead of it, so the next block is read while this one is quantized. Results are
 * identical to computing on demand.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "common/util.h"
#include "coreml/blob.h"
#include "parts/internal.h"
#include "quant/fp16_tools.h"
#include "quant/lut_pack.h"

#define BLOCK_VALUES ((size_t)8 << 20)        /* values per read block (16 MB of fp16) */
#define WHOLE_TENSOR_VALUES ((size_t)64 << 20) /* a per-tensor LUT below this is fitted in one pass */
#define STREAM_BLOCK_VALUES ((size_t)1 << 20)  /* fp16 matrices are streamed in blocks of about this many values */

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

/* ==== the compute stage ==== */

/* A matrix as read (and quantized): the result of one job. */
typedef struct WeightData {
    uint8_t *packed;              /* LUT: packed indices */
    size_t packed_bytes, packed_cap;
    uint16_t *table;              /* LUT: (groups, 2^bits) */
    size_t groups, table_cap;
    LutStats stats;
    long clamped;                 /* values beyond the fp16 range, clamped to +-65504 */
    int streamed;                 /* no LUT: read while it is written (store_streamed) */
} WeightData;

typedef struct BlockReader BlockReader;
typedef struct BufPool BufPool;

/* Block buffers reused from one matrix to the next (fresh multi-megabyte buffers would be
 * page-faulted in and zeroed by the kernel for every matrix). */
typedef struct Scratch {
    uint16_t *w;                  /* fp16 block */
    uint8_t *idx;                 /* its LUT indices */
    size_t cap;                   /* values */
    BlockReader *reader;          /* NULL, or the blocks of planned job `job` are read ahead there */
    int job;
    BufPool *pool;                /* NULL, or where the results' buffers come from */
} Scratch;

static void scratch_reserve(Scratch *s, size_t values) {
    if (values <= s->cap) return;
    free(s->w);
    free(s->idx);
    s->w = xmalloc(sizeof *s->w * values);
    s->idx = xmalloc(values);
    s->cap = values;
}

static void scratch_free(Scratch *s) {
    free(s->w);
    free(s->idx);
    memset(s, 0, sizeof *s);
}

/* ==== recycled result buffers ==== */

/* The packed indices and LUTs of a stored result go back to a small pool and are reused
 * for the next matrices: a fresh multi-megabyte buffer per matrix was faulted in and zeroed
 * page by page by the kernel (about 3% of the conversion's CPU time). Without a pool (NULL)
 * buffers are simply allocated and freed. */
#define POOL_BUFFERS 6

struct BufPool {
    pthread_mutex_t mu;
    void *buf[POOL_BUFFERS];
    size_t cap[POOL_BUFFERS];
    int n;
};

/* A buffer of at least `bytes` (the smallest pooled one that fits); its size in *cap. */
static void *pool_take(BufPool *pl, size_t bytes, size_t *cap) {
    if (bytes == 0) bytes = 1;
    if (pl) {
        pthread_mutex_lock(&pl->mu);
        int best = -1;
        for (int i = 0; i < pl->n; i++)
            if (pl->cap[i] >= bytes && (best < 0 || pl->cap[i] < pl->cap[best])) best = i;
        if (best >= 0) {
            void *b = pl->buf[best];
            *cap = pl->cap[best];
            pl->n--;
            pl->buf[best] = pl->buf[pl->n], pl->cap[best] = pl->cap[pl->n];
            pthread_mutex_unlock(&pl->mu);
            return b;
        }
        pthread_mutex_unlock(&pl->mu);
    }
    *cap = bytes;
    return xmalloc(bytes);
}

/* Keeps b for pool_take (a full pool keeps the larger buffers), or frees it. */
static void pool_give(BufPool *pl, void *b, size_t cap) {
    if (pl && b) {
        pthread_mutex_lock(&pl->mu);
        int slot = pl->n < POOL_BUFFERS ? pl->n++ : -1;
        if (slot < 0) { /* full: b replaces the smallest if it is larger */
            slot = 0;
            for (int i = 1; i < POOL_BUFFERS; i++)
                if (pl->cap[i] < pl->cap[slot]) slot = i;
            if (pl->cap[slot] < cap) {
                void *old = pl->buf[slot];
                pl->buf[slot] = b, pl->cap[slot] = cap;
                b = old;
            }
        } else {
            pl->buf[slot] = b, pl->cap[slot] = cap;
            b = NULL;
        }
        pthread_mutex_unlock(&pl->mu);
    }
    free(b);
}

static void pool_init(BufPool *pl) {
    memset(pl, 0, sizeof *pl);
    pthread_mutex_init(&pl->mu, NULL);
}

static void pool_destroy(BufPool *pl) {
    for (int i = 0; i < pl->n; i++) free(pl->buf[i]);
    pthread_mutex_destroy(&pl->mu);
}

static void weight_data_release(WeightData *d, BufPool *pl) {
    pool_give(pl, d->packed, d->packed_cap);
    pool_give(pl, d->table, d->table_cap);
    memset(d, 0, sizeof *d);
}

static void weight_data_free(WeightData *d) { weight_data_release(d, NULL); }

static size_t weight_data_bytes(const WeightData *d, const PartWeightJob *j) {
    if (d->streamed) return 0;
    return d->packed_bytes + d->groups * ((size_t)2 << j->lut.bits);
}

static const StTensor *find_tensor(const Checkpoint *ck, const char *name, long rows_needed, long cols, Err *e) {
    const StTensor *t = ckpt_require(ck, name, e);
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

/* Saturates the infinities of dst[0..n) that came from finite values; counts them. */
static void saturate(uint16_t *dst, size_t n, long over, long *clamped) {
    if (over <= 0) return;
    fp16_saturate_inf(dst, n);
    *clamped += over;
}

/* Rows [r0, r0+n) as fp16 into dst, each value multiplied by scale (0 or 1: unchanged) in
 * double before the one rounding to fp16; values beyond the fp16 range are clamped to +-65504
 * and counted in *clamped. */
static int read_rows(const StTensor *t, size_t r0, size_t n, double scale, uint16_t *dst, long *clamped, Err *e) {
    size_t count = n * st_row_numel(t);
    if (scale == 0 || scale == 1) {
        long over = st_read_rows_f16(t, r0, n, dst, e);
        if (over < 0) return -1;
        saturate(dst, count, over, clamped);
        return 0;
    }
    float *f = xmalloc(sizeof *f * (count ? count : 1));
    int rc = st_read_rows_f32(t, r0, n, f, e);
    long over = 0;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        dst[i] = f64_to_f16((double)f[i] * scale);
        over += !f16_is_finite(dst[i]) && isfinite(f[i]);
    }
    free(f);
    if (rc == 0) saturate(dst, count, over, clamped);
    return rc;
}

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

/* ==== reading blocks ahead ==== */

/* The reader thread walks the planned jobs in order and reads the blocks of the grouped-LUT
 * ones -- exactly the blocks quantize_grouped asks for, in the same order -- into a ring of
 * buffers. Read on the quantizing thread, each block left the other core idle while it was
 * read and converted (a tenth of the FFN step). Filled blocks wait at ring[head ..
 * head+count); the quantizer borrows the one at head and returns it when done with it. */
#define READ_AHEAD_BLOCKS 3

typedef struct Block {
    uint16_t *w;
    size_t cap;                   /* values */
    int job;                      /* rows [row, row + rows) of the job's rows */
    size_t row, rows;
    int rc;                       /* read_rows' result; err when it failed */
    long clamped;
    Err err;
} Block;

struct BlockReader {
    const PartSource *src;
    const PartWeightJob *jobs;
    int n;
    Block ring[READ_AHEAD_BLOCKS];
    int head, count;
    int at_job;                   /* every block of the jobs before this one is in the ring or gone */
    int stop;
    int served, missed;           /* blocks asked for and given, and not given */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static int grouped_lut(const PartWeightJob *j) { return j->lut.bits > 0 && j->lut.group > 0; }

/* The next free buffer, or NULL when told to stop. */
static Block *reader_slot(BlockReader *r) {
    pthread_mutex_lock(&r->mu);
    while (!r->stop && r->count == READ_AHEAD_BLOCKS) pthread_cond_wait(&r->cv, &r->mu);
    Block *b = r->stop ? NULL : &r->ring[(r->head + r->count) % READ_AHEAD_BLOCKS];
    pthread_mutex_unlock(&r->mu);
    return b;
}

static void reader_set(BlockReader *r, int *field, int value) {
    pthread_mutex_lock(&r->mu);
    *field = value;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Reads job i's blocks into the ring; 0, or -1 when told to stop. A job the quantizer
 * will refuse (no such tensor, channels the group does not divide) gets no blocks. */
static int reader_job(BlockReader *r, int i) {
    const PartWeightJob *j = &r->jobs[i];
    Err ignored;
    const StTensor *t = find_tensor(r->src->ckpt, j->tensor, j->r0 + j->rows, j->cols, &ignored);
    if (!t || lut_check_channels(&j->lut, "LUT", j->tensor, j->rows, &ignored) < 0) return 0;
    size_t rows = (size_t)j->rows, cols = (size_t)j->cols, br = block_rows(rows, cols, (size_t)j->lut.group);
    for (size_t s = 0; s < rows; s += br) {
        Block *b = reader_slot(r);
        if (!b) return -1;
        size_t n = rows - s < br ? rows - s : br;
        if (b->cap < br * cols) free(b->w), b->w = xmalloc(sizeof *b->w * br * cols), b->cap = br * cols;
        b->job = i, b->row = s, b->rows = n, b->clamped = 0;
        b->rc = read_rows(t, (size_t)j->r0 + s, n, j->scale, b->w, &b->clamped, &b->err);
        pthread_mutex_lock(&r->mu);
        r->count++;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        if (b->rc < 0) break; /* the quantizer stops at this block */
    }
    return 0;
}

static void *reader_main(void *arg) {
    BlockReader *r = arg;
    for (int i = 0; i < r->n; i++) {
        reader_set(r, &r->at_job, i);
        if (grouped_lut(&r->jobs[i]) && reader_job(r, i) < 0) break;
    }
    reader_set(r, &r->at_job, r->n);
    return NULL;
}

/* Starts the reader over the jobs (which must outlive it); NULL if no thread can be started. */
static BlockReader *reader_start(const PartSource *src, const PartWeightJob *jobs, int n) {
    BlockReader *r = xcalloc(1, sizeof *r);
    r->src = src, r->jobs = jobs, r->n = n;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->thread, NULL, reader_main, r) == 0) return r;
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
    return NULL;
}

static void reader_stop(BlockReader *r) {
    if (!r) return;
    reader_set(r, &r->stop, 1);
    pthread_join(r->thread, NULL);
    for (int i = 0; i < READ_AHEAD_BLOCKS; i++) free(r->ring[i].w);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* Borrows the block at rows [row, ...) of job `job` (blocks of jobs the quantizer skipped are
 * dropped on the way); NULL when the reader does not have it (read it here then). */
static Block *reader_take(BlockReader *r, int job, size_t row) {
    pthread_mutex_lock(&r->mu);
    Block *got = NULL;
    for (;;) {
        if (r->count) {
            Block *b = &r->ring[r->head];
            if (b->job < job || (b->job == job && b->row < row)) { /* never to be asked for */
                r->head = (r->head + 1) % READ_AHEAD_BLOCKS, r->count--;
                pthread_cond_broadcast(&r->cv);
                continue;
            }
            if (b->job == job && b->row == row) got = b;
            break;
        }
        if (r->at_job > job || r->stop) break;
        pthread_cond_wait(&r->cv, &r->mu);
    }
    if (got) r->served++;
    else r->missed++;
    pthread_mutex_unlock(&r->mu);
    return got;
}

/* Gives the borrowed block (the one at head) back. */
static void reader_return(BlockReader *r) {
    pthread_mutex_lock(&r->mu);
    r->head = (r->head + 1) % READ_AHEAD_BLOCKS, r->count--;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Grouped LUT (group divides rows): blocks of whole groups, quantized and packed in place. */
static int quantize_grouped(const StTensor *t, const PartWeightJob *j, int threads, Scratch *sc, WeightData *d,
                            Err *e) {
    size_t rows = (size_t)j->rows, cols = (size_t)j->cols, group = (size_t)j->lut.group;
    size_t per = (size_t)1 << j->lut.bits;
    size_t br = block_rows(rows, cols, group);
    int rc = 0;
    for (size_t s = 0; s < rows && rc == 0; s += br) {
        size_t n = rows - s < br ? rows - s : br;
        Block *b = sc->reader ? reader_take(sc->reader, sc->job, s) : NULL;
        const uint16_t *w;
        if (b) {
            AN_ASSERT(b->rows == n);
            rc = b->rc;
            if (rc < 0) *e = b->err;
            d->clamped += b->clamped;
            w = b->w;
        } else {
            scratch_reserve(sc, br * cols);
            rc = read_rows(t, (size_t)j->r0 + s, n, j->scale, sc->w, &d->clamped, e);
            w = sc->w;
        }
        if (rc == 0)
            rc = lut_quantize_rows_packed(w, n, cols, group, j->lut.bits, threads, t->name, (size_t)j->r0 + s,
                                          d->table + s / group * per, NULL,
                                          d->packed + s * cols * (size_t)j->lut.bits / 8, &d->stats, e);
        if (b) reader_return(sc->reader);
    }
    return rc;
}

/* One LUT for the whole tensor: in one pass if it is small enough, else histogram + mapping. */
static int quantize_per_tensor(const StTensor *t, const PartWeightJob *j, int threads, Scratch *sc, WeightData *d,
                               Err *e) {
    size_t rows = (size_t)j->rows, cols = (size_t)j->cols, numel = rows * cols, r0 = (size_t)j->r0;
    int bits = j->lut.bits;
    if (numel <= WHOLE_TENSOR_VALUES) {
        uint16_t *w = xmalloc(sizeof *w * numel);
        uint8_t *idx = xmalloc(numel);
        int rc = read_rows(t, r0, rows, j->scale, w, &d->clamped, e);
        if (rc == 0)
            rc = lut_quantize_rows(w, rows, cols, rows, bits, threads, t->name, r0, d->table, idx, &d->stats, e);
        if (rc == 0) lut_pack_indices(idx, numel, bits, d->packed);
        free(w);
        free(idx);
        return rc;
    }
    size_t br = block_rows(rows, cols, 0);
    scratch_reserve(sc, br * cols);
    uint16_t *w = sc->w;
    uint8_t *idx = sc->idx;
    LutHist *h = lut_hist_new();
    LutMap *m = NULL;
    int used = 0, rc = 0;
    long ignored = 0;
    for (size_t s = 0; s < rows && rc == 0; s += br) {
        size_t n = rows - s < br ? rows - s : br;
        rc = read_rows(t, r0 + s, n, j->scale, w, &d->clamped, e);
        if (rc == 0) rc = lut_hist_add(h, w, n * cols, t->name, e);
    }
    if (rc == 0) rc = lut_hist_fit(h, bits, d->table, &used, &d->stats, e);
    if (rc == 0) m = lut_map_new(d->table, used);
    for (size_t s = 0; s < rows && rc == 0; s += br) {
        size_t n = rows - s < br ? rows - s : br;
        rc = read_rows(t, r0 + s, n, j->scale, w, &ignored, e);   /* counted in the first pass */
        if (rc == 0) rc = lut_map_apply(m, w, n * cols, idx, t->name, e);
        if (rc == 0) lut_pack_indices(idx, n * cols, bits, d->packed + s * cols * (size_t)bits / 8);
    }
    lut_map_free(m);
    lut_hist_free(h);
    return rc;
}

static int compute_matrix(const PartSource *src, const PartWeightJob *j, Scratch *sc, WeightData *d, Err *e) {
    memset(d, 0, sizeof *d);
    const StTensor *t = find_tensor(src->ckpt, j->tensor, j->r0 + j->rows, j->cols, e);
    if (!t) return -1;
    size_t rows = (size_t)j->rows, cols = (size_t)j->cols;
    int rc = 0;
    if (j->lut.bits > 0) {
        if (lut_check_channels(&j->lut, "LUT", j->tensor, j->rows, e) < 0) return -1;
        d->groups = j->lut.group > 0 ? rows / (size_t)j->lut.group : 1;
        d->packed_bytes = lut_packed_size(rows * cols, j->lut.bits);
        /* every byte is written by the quantizer (packing, and each LUT with its unused slots zeroed) */
        d->packed = pool_take(sc->pool, d->packed_bytes, &d->packed_cap);
        d->table = pool_take(sc->pool, (d->groups << j->lut.bits) * sizeof *d->table, &d->table_cap);
        rc = j->lut.group > 0 ? quantize_grouped(t, j, src->threads, sc, d, e)
                              : quantize_per_tensor(t, j, src->threads, sc, d, e);
    } else {
        d->streamed = 1;          /* read and converted block by block when it is stored */
    }
    if (rc < 0) weight_data_release(d, sc->pool);
    return rc;
}

/* ==== reading ahead ==== */

typedef struct Slot {
    WeightData data;
    int done, rc;
    Err err;
} Slot;

struct PartPrefetch {
    PartSource src;
    PartWeightJob *jobs;
    Slot *slots;
    int n;
    int next;                     /* the next job the builders will take */
    int produced;                 /* jobs the thread has finished */
    int stop;
    size_t budget, held;          /* bytes of finished results not yet taken */
    int hits, misses;
    Scratch scratch;              /* the thread's block buffers */
    BlockReader *reader;          /* reads the grouped-LUT jobs' blocks ahead (NULL: no thread) */
    BufPool pool;                 /* the results' buffers, recycled once stored */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void *prefetch_main(void *arg) {
    PartPrefetch *p = arg;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->n && !p->stop; i++) {
        /* wait while results are waiting beyond the budget (but keep at least one ahead) */
        while (!p->stop && i > p->next && p->held >= p->budget) pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop) break;
        if (i < p->next) {            /* the builders went past this job */
            p->produced = i + 1;
            continue;
        }
        pthread_mutex_unlock(&p->mu);
        Slot *s = &p->slots[i];
        p->scratch.job = i;
        s->rc = compute_matrix(&p->src, &p->jobs[i], &p->scratch, &s->data, &s->err);
        pthread_mutex_lock(&p->mu);
        s->done = 1;
        p->produced = i + 1;
        if (s->rc == 0) p->held += weight_data_bytes(&s->data, &p->jobs[i]);
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

PartPrefetch *part_prefetch_start(const PartSource *src, const PartWeightJob *jobs, int n, size_t budget_bytes) {
    PartPrefetch *p = xcalloc(1, sizeof *p);
    p->src = *src;
    p->src.prefetch = NULL;
    p->n = n;
    p->jobs = xmalloc(sizeof *p->jobs * (size_t)(n ? n : 1));
    memcpy(p->jobs, jobs, sizeof *jobs * (size_t)n);
    p->slots = xcalloc((size_t)(n ? n : 1), sizeof *p->slots);
    p->budget = budget_bytes;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pool_init(&p->pool);
    p->scratch.pool = &p->pool;
    p->reader = p->scratch.reader = reader_start(&p->src, p->jobs, n);
    if (pthread_create(&p->thread, NULL, prefetch_main, p) != 0) {
        p->stop = 1;
        p->produced = n;   /* no thread: every request is computed on demand */
        p->thread = 0;
    }
    return p;
}

void part_prefetch_stop(PartPrefetch *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->thread) pthread_join(p->thread, NULL);
    reader_stop(p->reader);
    for (int i = 0; i < p->n; i++) weight_data_free(&p->slots[i].data);
    pool_destroy(&p->pool);
    scratch_free(&p->scratch);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->jobs);
    free(p->slots);
    free(p);
}

void part_prefetch_counts(const PartPrefetch *p, int *hits, int *misses) {
    *hits = p->hits;
    *misses = p->misses;
}

void part_prefetch_blocks(const PartPrefetch *p, int *ahead, int *here) {
    *ahead = *here = 0;
    if (!p->reader) return;
    pthread_mutex_lock(&p->reader->mu);
    *ahead = p->reader->served, *here = p->reader->missed;
    pthread_mutex_unlock(&p->reader->mu);
}

static double job_scale(const PartWeightJob *j) { return j->scale == 0 ? 1 : j->scale; }

static int same_job(const PartWeightJob *a, const PartWeightJob *b) {
    return !strcmp(a->tensor, b->tensor) && a->r0 == b->r0 && a->rows == b->rows && a->cols == b->cols &&
           a->lut.bits == b->lut.bits && (a->lut.bits == 0 || a->lut.group == b->lut.group) &&
           job_scale(a) == job_scale(b);
}

/* Computes job j on the calling thread. */
static int compute_here(const PartSource *src, const PartWeightJob *j, WeightData *d, Err *e) {
    Scratch sc = {0};
    int rc = compute_matrix(src, j, &sc, d, e);
    scratch_free(&sc);
    return rc;
}

/* The result of job j: taken from the prefetcher when it is the next planned job, else
 * computed here. */
static int obtain_matrix(const PartSource *src, const PartWeightJob *j, WeightData *d, Err *e) {
    PartPrefetch *p = src->prefetch;
    if (!p) return compute_here(src, j, d, e);
    pthread_mutex_lock(&p->mu);
    if (p->next >= p->n || !same_job(&p->jobs[p->next], j)) {
        /* not the planned order: stop reading ahead (its results would never be used) */
        p->misses++;
        p->stop = 1;
        if (p->reader) reader_set(p->reader, &p->reader->stop, 1);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        return compute_here(src, j, d, e);
    }
    int i = p->next;
    while (!p->slots[i].done && p->produced <= i) pthread_cond_wait(&p->cv, &p->mu);
    Slot *s = &p->slots[i];
    int rc;
    if (s->done) {
        p->hits++;
        rc = s->rc;
        if (rc == 0) {
            *d = s->data;
            p->held -= weight_data_bytes(d, j);
            memset(&s->data, 0, sizeof s->data);
        } else {
            *e = s->err;
        }
    } else {
        rc = 1;   /* the thread skipped or stopped: compute here */
    }
    p->next = i + 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return rc == 1 ? compute_here(src, j, d, e) : rc;
}

/* ==== the store stage ==== */

/* A literal (inline or blob) holding data, for each target. */
static int add_literal(WeightLoader *l, MilDType dt, int rank, const int64_t *dims, uint64_t numel, const void *data,
                       size_t nbytes, MilValue **out, Err *e) {
    uint64_t hash = blob_content_hash(dt, data, nbytes); /* once for every target */
    for (int i = 0; i < l->n; i++) {
        MilProgram *p = l->t[i].f->prog;
        if (mil_should_use_blob(dt, (int64_t)numel, PKG_SPEC_VERSION)) {
            MilBlobRef ref;
            if (pkg_writer_add_blob_hashed(l->t[i].w, dt, numel, data, hash, &ref, e) < 0) return -1;
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
    uint64_t hash = blob_content_hash(MIL_FP16, data, numel * 2); /* once for every target */
    for (int i = 0; i < l->n; i++) {
        MilFunction *f = l->t[i].f;
        if (mil_should_use_blob(MIL_FP16, (int64_t)numel, PKG_SPEC_VERSION)) {
            MilBlobRef ref;
            if (pkg_writer_add_blob_hashed(l->t[i].w, MIL_FP16, numel, data, hash, &ref, e) < 0) return -1;
            vals[i] = mil_const_blob(f, name, MIL_FP16, rank, dims, &ref);
        } else {
            vals[i] = mil_const(f, name, MIL_FP16, rank, dims, data, numel * 2);
        }
        if (!vals[i]) return mil_error(f->prog, e);
    }
    return 0;
}

static void note_clamped(const WeightLoader *l, const char *tensor, long clamped) {
    if (clamped <= 0 || !l->src->note) return;
    char msg[320];
    snprintf(msg, sizeof msg, "%s: %ld values beyond the fp16 range were clamped to +-65504", tensor, clamped);
    l->src->note(l->src->note_ctx, msg);
}

int wl_vector(WeightLoader *l, const char *tensor, long n, int rank, const int64_t *dims, const char *name,
              MilValue **vals, Err *e) {
    return wl_gain(l, tensor, n, 0, 1, rank, dims, name, vals, e);
}

int wl_gain(WeightLoader *l, const char *tensor, long n, double add, double mul, int rank, const int64_t *dims,
            const char *name, MilValue **vals, Err *e) {
    const StTensor *t = find_tensor(l->src->ckpt, tensor, n, 0, e);
    if (!t) return -1;
    uint16_t *buf = xmalloc(sizeof *buf * (size_t)n);
    long clamped = 0;
    int rc;
    if (add == 0 && mul == 1) {
        rc = read_rows(t, 0, (size_t)n, 1, buf, &clamped, e);
    } else {
        float *f = xmalloc(sizeof *f * (size_t)n);
        rc = st_read_rows_f32(t, 0, (size_t)n, f, e);
        long over = 0;
        for (long i = 0; rc == 0 && i < n; i++) {
            buf[i] = f64_to_f16(mul * (add + (double)f[i]));
            over += !f16_is_finite(buf[i]) && isfinite(f[i]);
        }
        free(f);
        if (rc == 0) saturate(buf, (size_t)n, over, &clamped);
    }
    note_clamped(l, tensor, clamped);
    if (rc == 0) rc = wl_fp16(l, buf, rank, dims, name, vals, e);
    free(buf);
    return rc;
}

static int store_lut(WeightLoader *l, const PartWeightJob *j, const WeightData *d, int rank, const int64_t *dims,
                     const char *name, MilValue **vals, Err *e) {
    size_t per = (size_t)1 << j->lut.bits, numel = (size_t)j->rows * (size_t)j->cols;
    MilValue *ix[PARTS_MAX_TARGETS], *lt[PARTS_MAX_TARGETS];
    int64_t lut_dims[MIL_MAX_RANK];
    lut_dims[0] = (int64_t)d->groups;
    for (int k = 1; k < rank; k++) lut_dims[k] = 1;
    lut_dims[rank] = (int64_t)per;
    lut_dims[rank + 1] = 1;
    if (add_literal(l, index_dtype(j->lut.bits), rank, dims, numel, d->packed, d->packed_bytes, ix, e) < 0 ||
        add_literal(l, MIL_FP16, rank + 2, lut_dims, d->groups * per, d->table, d->groups * per * 2, lt, e) < 0)
        return -1;
    for (int i = 0; i < l->n; i++) {
        vals[i] = mil_add_lut_to_dense(l->t[i].f, name, ix[i], lt[i], -1);
        if (!vals[i]) return mil_error(l->t[i].f->prog, e);
        lut_stats_add(&l->t[i].r->lut, &d->stats);
        l->t[i].r->quantized = 1;
    }
    return 0;
}

/* An fp16 matrix read, converted and written block by block into every target: the same
 * bytes as wl_fp16 of the whole matrix, without holding it (for the embeddings, half a
 * gigabyte of fresh memory cost more to fault in than the conversion). */
static int store_streamed(WeightLoader *l, const PartWeightJob *j, int rank, const int64_t *dims, const char *name,
                          MilValue **vals, Err *e) {
    const StTensor *t = find_tensor(l->src->ckpt, j->tensor, j->r0 + j->rows, j->cols, e);
    if (!t) return -1;
    size_t rows = (size_t)j->rows, cols = (size_t)j->cols, numel = rows * cols;
    long clamped = 0;
    int rc = 0;
    if (!mil_should_use_blob(MIL_FP16, (int64_t)numel, PKG_SPEC_VERSION)) { /* a few values: inline */
        uint16_t small[16];
        AN_ASSERT(numel <= sizeof small / sizeof small[0]);
        rc = read_rows(t, (size_t)j->r0, rows, j->scale, small, &clamped, e);
        if (rc == 0) rc = wl_fp16(l, small, rank, dims, name, vals, e);
        if (rc == 0) note_clamped(l, j->tensor, clamped);
        return rc;
    }
    size_t br = STREAM_BLOCK_VALUES / cols ? STREAM_BLOCK_VALUES / cols : 1;
    uint16_t *buf = xmalloc(sizeof *buf * br * cols);
    for (int i = 0; i < l->n && rc == 0; i++) rc = pkg_writer_blob_begin(l->t[i].w, MIL_FP16, numel, e);
    for (size_t s = 0; s < rows && rc == 0; s += br) {
        size_t n = rows - s < br ? rows - s : br;
        rc = read_rows(t, (size_t)j->r0 + s, n, j->scale, buf, &clamped, e);
        for (int i = 0; i < l->n && rc == 0; i++) rc = pkg_writer_blob_append(l->t[i].w, buf, n * cols * 2, e);
    }
    free(buf);
    for (int i = 0; i < l->n && rc == 0; i++) {
        MilBlobRef ref;
        rc = pkg_writer_blob_end(l->t[i].w, &ref, e);
        if (rc == 0 && !(vals[i] = mil_const_blob(l->t[i].f, name, MIL_FP16, rank, dims, &ref)))
            rc = mil_error(l->t[i].f->prog, e);
    }
    if (rc == 0) note_clamped(l, j->tensor, clamped);
    return rc;
}

int wl_matrix(WeightLoader *l, const char *tensor, long r0, long rows, long cols, int rank, const int64_t *dims,
              const LutSpec *lut, const char *name, MilValue **vals, Err *e) {
    return wl_matrix_scaled(l, tensor, r0, rows, cols, 1, rank, dims, lut, name, vals, e);
}

int wl_matrix_scaled(WeightLoader *l, const char *tensor, long r0, long rows, long cols, double scale, int rank,
                     const int64_t *dims, const LutSpec *lut, const char *name, MilValue **vals, Err *e) {
    AN_ASSERT(rank >= 2 && rank + 2 <= MIL_MAX_RANK && dims[0] == rows);
    PartWeightJob j = {.r0 = r0, .rows = rows, .cols = cols, .lut = lut ? *lut : (LutSpec){0, 0}, .scale = scale};
    if (strlen(tensor) >= sizeof j.tensor) return err_set(e, "tensor name %s is too long", tensor);
    strcpy(j.tensor, tensor);
    WeightData d;
    if (obtain_matrix(l->src, &j, &d, e) < 0) return -1;
    if (d.streamed) return store_streamed(l, &j, rank, dims, name, vals, e);
    note_clamped(l, tensor, d.clamped);
    int rc = store_lut(l, &j, &d, rank, dims, name, vals, e);
    weight_data_release(&d, l->src->prefetch ? &l->src->prefetch->pool : NULL);
    return rc;
}

/* ==== job lists ==== */

static void add_job(PartWeightJob **jobs, int *n, int *cap, const char *tensor, long r0, long rows, long cols,
                    const LutSpec *lut, double scale) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *jobs = xrealloc(*jobs, sizeof **jobs * (size_t)*cap);
    }
    PartWeightJob *j = &(*jobs)[(*n)++];
    memset(j, 0, sizeof *j);
    snprintf(j->tensor, sizeof j->tensor, "%s", tensor);
    j->r0 = r0;
    j->rows = rows;
    j->cols = cols;
    j->lut = *lut;
    j->scale = scale;
}

double part_embedding_scale(const Arch *a, double fp16_scale) {
    double alpha = fp16_scale > 0 ? fp16_scale : 1;
    return (double)a->embed_scale * alpha;
}

void part_jobs_embeddings(const Arch *a, const LutSpec *lut, double fp16_scale, PartWeightJob **jobs, int *n,
                          int *cap) {
    char t[160];
    add_job(jobs, n, cap, arch_tensor_name(a, "embed_tokens.weight", t, sizeof t), 0, a->vocab, a->hidden, lut,
            part_embedding_scale(a, fp16_scale));
}

void part_jobs_lm_head(const Arch *a, const LutSpec *lut, PartWeightJob **jobs, int *n, int *cap) {
    int sizes[PLAN_MAX_SPLITS];
    int s = plan_lm_head_sizes(a, sizes);
    long offset = 0;
    for (int i = 0; i < s; i++) {
        add_job(jobs, n, cap, arch_lm_head_name(a), offset, sizes[i], a->hidden, lut, 1);
        offset += sizes[i];
    }
}

void part_jobs_ffn(const Arch *a, const LutSpec *lut, int chunk, int n_chunks, PartWeightJob **jobs, int *n,
                   int *cap) {
    int first, count;
    plan_chunk_layers(a->n_layers, n_chunks, chunk, &first, &count);
    long h = a->hidden, q = arch_q_dim(a), kv = arch_kv_dim(a), in = a->intermediate;
    const ArchWeight w[7] = {W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN};
    const long rows[7] = {q, kv, kv, h, in, in, h}, cols[7] = {h, h, h, q, h, h, in};
    for (int layer = first; layer < first + count; layer++)
        for (int k = 0; k < 7; k++) {
            char t[160];
            add_job(jobs, n, cap, arch_layer_tensor_name(a, layer, w[k], t, sizeof t), 0, rows[k], cols[k], lut, 1);
        }
}
