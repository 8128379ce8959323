/* blob.c - weight.bin (blob storage v2): streaming writer with de-duplication, mapped reader.
 *
 * The writer gathers bytes in an aligned stage of STAGE_BYTES and writes each full stage
 * with O_DIRECT where the file system allows it: copying gigabytes into the page cache cost
 * more CPU time than the quantization feeding them (about 2.5 s per GB on the benchmark
 * machine, against almost none for direct writes). A full stage is written by a helper
 * thread while the next one fills (two stages; the thread starts with the first full one, so
 * small files never start it). The direct writes are also O_DSYNC: each stage is on stable
 * storage when its write returns, on the helper thread while the next stage fills, so the
 * fsync that seals the file has almost nothing left to wait for (on the benchmark VM, whose
 * disk has a write cache and no FUA, sealing a 0.7 GB file otherwise waited 0.3-1.4 s with
 * every core idle). The file's last partial stage and the header go through the
 * page cache; so does everything where O_DIRECT is refused. Reading back (de-duplication)
 * first waits for the stage in flight, then takes bytes still in the current stage from
 * there and the rest from the file.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/killpoint.h"
#include "common/util.h"
#include "coreml/blob.h"

/* ==== dtype codes ==== */

static const struct {
    MilDType dt;
    uint32_t code;
} blob_codes[] = {
    {MIL_FP16, 1},  {MIL_FP32, 2},   {MIL_UINT8, 3},  {MIL_INT8, 4},   {MIL_BF16, 5},   {MIL_INT16, 6},
    {MIL_UINT16, 7}, {MIL_INT4, 8},  {MIL_UINT1, 9},  {MIL_UINT2, 10}, {MIL_UINT4, 11}, {MIL_UINT3, 12},
    {MIL_UINT6, 13}, {MIL_INT32, 14}, {MIL_UINT32, 15}, {MIL_FP8E4M3FN, 16}, {MIL_FP8E5M2, 17},
};
#define N_CODES (sizeof blob_codes / sizeof blob_codes[0])

uint32_t blob_dtype_code(MilDType dt) {
    for (size_t i = 0; i < N_CODES; i++)
        if (blob_codes[i].dt == dt) return blob_codes[i].code;
    return 0;
}

MilDType blob_dtype_from_code(uint32_t code) {
    for (size_t i = 0; i < N_CODES; i++)
        if (blob_codes[i].code == code) return blob_codes[i].dt;
    return MIL_DT_INVALID;
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static uint64_t align_up(uint64_t x) { return (x + BLOB_ALIGNMENT - 1) / BLOB_ALIGNMENT * BLOB_ALIGNMENT; }

/* Unused bits at the end of the last byte of n sub-byte elements. */
static uint64_t padding_bits_for(MilDType dt, uint64_t n) {
    if (!mil_dtype_is_subbyte(dt)) return 0;
    return (8 - n * (uint64_t)mil_dtype_bits(dt) % 8) % 8;
}

/* ==== Writer ==== */

typedef struct Entry {
    uint64_t hash, numel, nbytes, offset, data_offset;
    uint32_t code;
    int next;            /* chain in the bucket, -1 = end */
} Entry;

#define STAGE_BYTES ((size_t)4 << 20) /* a multiple of DIRECT_ALIGN */
#define DIRECT_ALIGN 4096               /* offsets, lengths and addresses of direct writes */

/* A helper thread writing full stages into one file. */
typedef struct IoLane {
    BlobWriter *to;      /* the file written */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, busy, quit;
    const uint8_t *buf;  /* the stage in flight */
    uint64_t off;        /* where it goes */
    int err;             /* errno of the first failed write, sticky */
} IoLane;

struct BlobWriter {
    int fd;              /* through the page cache: reads, the header, the last stage */
    int dfd;             /* the same file with O_DIRECT, or -1 */
    char *path;
    uint64_t size;       /* bytes written so far (logical file length) */
    uint8_t *stage;      /* (STAGE_BYTES) bytes [stage_off, size) not yet in the file */
    uint64_t stage_off;  /* a multiple of DIRECT_ALIGN */
    uint8_t *spare;      /* (STAGE_BYTES) the other stage: in flight while a lane is busy */
    IoLane lane[2];      /* helper threads writing full stages: to this file, to its mirror */
    uint32_t count;
    Entry *entries;
    int n_entries, cap_entries;
    int *buckets;        /* heads, -1 = empty */
    int n_buckets;
    uint64_t digest[2];
    uint64_t reused_bytes;
    int no_dedup;        /* blob_writer_set_dedup(w, 0) */
    BlobWriter *mirror;  /* receives a copy of every byte written here (blob_writer_mirror) */
    BlobWriter *mirror_of; /* set while this file is a mirror still being written */
    int mirror_failed;   /* the mirrored writer was freed before it finished */
    struct {             /* the blob being streamed (blob_writer_begin .. end) */
        int active;
        uint32_t code;
        uint64_t numel, nbytes, written, meta, start;
        Hash64Stream hash;
    } st;
};

/* Writes n bytes at off: directly when possible, else (or when the file system refuses a
 * direct write) through the page cache. Returns 0 or an errno value. */
static int pwrite_one(BlobWriter *w, const uint8_t *p, size_t n, uint64_t off) {
    while (n) {
        int direct = w->dfd >= 0 && off % DIRECT_ALIGN == 0 && n % DIRECT_ALIGN == 0 &&
                     (uintptr_t)p % DIRECT_ALIGN == 0;
        ssize_t k = pwrite(direct ? w->dfd : w->fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && direct && errno == EINVAL) { /* not supported after all: the page cache from here on */
            close(w->dfd);
            w->dfd = -1;
            continue;
        }
        if (k <= 0) return k == 0 ? ENOSPC : errno;
        p += k, off += (uint64_t)k, n -= (size_t)k;
    }
    return 0;
}

/* pwrite_one to this file and its mirror. */
static int pwrite_raw(BlobWriter *w, const uint8_t *p, size_t n, uint64_t off) {
    int err = pwrite_one(w, p, n, off);
    return err || !w->mirror ? err : pwrite_one(w->mirror, p, n, off);
}

static void *io_main(void *arg) {
    IoLane *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->busy && !l->quit) pthread_cond_wait(&l->cv, &l->mu);
        if (!l->busy) break;
        pthread_mutex_unlock(&l->mu);
        int err = l->err ? 0 : pwrite_one(l->to, l->buf, STAGE_BYTES, l->off);
        pthread_mutex_lock(&l->mu);
        if (err && !l->err) l->err = err;
        l->busy = 0;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Waits until the lane's stage is written; its errno value if a write failed, else 0. */
static int lane_wait(IoLane *l) {
    if (!l->started) return 0;
    pthread_mutex_lock(&l->mu);
    while (l->busy) pthread_cond_wait(&l->cv, &l->mu);
    int err = l->err;
    pthread_mutex_unlock(&l->mu);
    return err;
}

/* Waits until no stage is in flight; reports a write that failed. */
static int io_wait(BlobWriter *w, Err *e) {
    for (int i = 0; i < 2; i++) {
        int err = lane_wait(&w->lane[i]);
        if (err) {
            errno = err;
            return err_errno(e, "cannot write %s", w->lane[i].to->path);
        }
    }
    return 0;
}

/* The stage at buf to the lane's thread (started here the first time; written here if no
 * thread can be started). Returns 0 or an errno value. */
static int lane_post(IoLane *l, BlobWriter *to, const uint8_t *buf, uint64_t off) {
    if (!l->started) {
        l->to = to;
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cv, NULL);
        if (pthread_create(&l->thread, NULL, io_main, l) != 0) {
            pthread_mutex_destroy(&l->mu);
            pthread_cond_destroy(&l->cv);
            return pwrite_one(to, buf, STAGE_BYTES, off);
        }
        l->started = 1;
    }
    pthread_mutex_lock(&l->mu);
    l->buf = buf;
    l->off = off;
    l->busy = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

/* The full stage to the helper threads (the mirror's copy written at the same time); the
 * spare stage becomes the current one. */
static int stage_submit(BlobWriter *w, Err *e) {
    if (io_wait(w, e) < 0) return -1;
    uint8_t *full = w->stage;
    w->stage = w->spare, w->spare = full;
    uint64_t off = w->stage_off;
    w->stage_off += STAGE_BYTES;
    int err = lane_post(&w->lane[0], w, full, off);
    if (!err && w->mirror) err = lane_post(&w->lane[1], w->mirror, full, off);
    if (!err) return 0;
    errno = err;
    return err_errno(e, "cannot write %s", w->path);
}

static void io_stop(BlobWriter *w) {
    for (int i = 0; i < 2; i++) {
        IoLane *l = &w->lane[i];
        if (!l->started) continue;
        pthread_mutex_lock(&l->mu);
        l->quit = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
        l->started = 0;
    }
}

/* Everything written so far into the file (the last, partial stage through the page cache). */
static int stage_flush(BlobWriter *w, Err *e) {
    if (io_wait(w, e) < 0) return -1;
    int err = pwrite_raw(w, w->stage, (size_t)(w->size - w->stage_off), w->stage_off);
    if (err) {
        errno = err;
        return err_errno(e, "cannot write %s", w->path);
    }
    w->stage_off = w->size;
    return 0;
}

static void alloc_stages(BlobWriter *w) {
    if (posix_memalign((void **)&w->stage, DIRECT_ALIGN, STAGE_BYTES)) w->stage = xmalloc(STAGE_BYTES);
    if (posix_memalign((void **)&w->spare, DIRECT_ALIGN, STAGE_BYTES)) w->spare = xmalloc(STAGE_BYTES);
}

static int write_all(BlobWriter *w, const void *data, uint64_t n, Err *e) {
    const uint8_t *p = data;
    if (n && !w->stage) alloc_stages(w);
    while (n) {
        size_t used = (size_t)(w->size - w->stage_off), take = STAGE_BYTES - used;
        if (take > n) take = (size_t)n;
        memcpy(w->stage + used, p, take);
        p += take, n -= take, w->size += take;
        if (used + take == STAGE_BYTES && stage_submit(w, e) < 0) return -1;
    }
    return 0;
}

/* Reads exactly n bytes at off (0, or -1 with errno set). */
static int pread_full(int fd, void *buf, size_t n, uint64_t off) {
    uint8_t *p = buf;
    while (n) {
        ssize_t k = pread(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = EIO;
            return -1;
        }
        p += k, off += (uint64_t)k, n -= (size_t)k;
    }
    return 0;
}

/* Reads back n bytes written at off (< size), from the file and the stage. */
static int read_back(BlobWriter *w, void *buf, size_t n, uint64_t off, Err *e) {
    uint8_t *p = buf;
    if (off < w->stage_off && io_wait(w, e) < 0) return -1;
    if (off < w->stage_off) {
        size_t from_file = w->stage_off - off < n ? (size_t)(w->stage_off - off) : n;
        if (pread_full(w->fd, p, from_file, off) < 0) return err_errno(e, "cannot read back %s", w->path);
        p += from_file, off += from_file, n -= from_file;
    }
    if (n) memcpy(p, w->stage + (off - w->stage_off), n);
    return 0;
}

/* Forgets everything written from offset `to` on (to <= size). */
static int cut_back(BlobWriter *w, uint64_t to, Err *e) {
    if (io_wait(w, e) < 0) return -1;
    if (to < w->stage_off) { /* part of it is in the file: the stage restarts at the block holding `to` */
        uint64_t from = to / DIRECT_ALIGN * DIRECT_ALIGN;
        if (pread_full(w->fd, w->stage, (size_t)(to - from), from) < 0 || ftruncate(w->fd, (off_t)from) < 0)
            return err_errno(e, "cannot cut back %s", w->path);
        w->stage_off = from;
    }
    w->size = to;
    return 0;
}

/* The header with w's blob count into `to`'s file (w itself or its mirror). */
static int write_header(const BlobWriter *w, const BlobWriter *to, Err *e) {
    uint8_t h[BLOB_HEADER_SIZE] = {0};
    put_u32(h, w->count);
    put_u32(h + 4, BLOB_VERSION);
    ssize_t k;
    do k = pwrite(to->fd, h, sizeof h, 0);
    while (k < 0 && errno == EINTR);
    if (k != (ssize_t)sizeof h) return err_errno(e, "cannot write the header of %s", to->path);
    return 0;
}

int blob_writer_open(BlobWriter **out, const char *path, Err *e) {
    *out = NULL;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return err_errno(e, "cannot create %s", path);
    BlobWriter *w = xcalloc(1, sizeof *w);
    w->fd = fd;
#ifdef O_DIRECT
    /* -1 where unsupported (the page cache then) */
    w->dfd = open(path, O_WRONLY | O_DIRECT | O_DSYNC | O_CLOEXEC);
#else
    w->dfd = -1; /* no O_DIRECT (macOS): every write through the page cache */
#endif
    alloc_stages(w);
    w->path = xstrdup(path);
    w->n_buckets = 1024;
    w->buckets = xmalloc(sizeof *w->buckets * (size_t)w->n_buckets);
    for (int i = 0; i < w->n_buckets; i++) w->buckets[i] = -1;
    w->digest[0] = 0x243F6A8885A308D3ull;
    w->digest[1] = 0x13198A2E03707344ull;
    uint8_t h[BLOB_HEADER_SIZE] = {0};
    put_u32(h + 4, BLOB_VERSION);
    if (write_all(w, h, sizeof h, e) < 0) {
        blob_writer_free(w);
        return -1;
    }
    *out = w;
    return 0;
}

void blob_writer_free(BlobWriter *w) {
    if (!w) return;
    io_stop(w);
    if (w->mirror) { /* unfinished: its mirror is not a copy of anything */
        w->mirror->mirror_of = NULL;
        w->mirror->mirror_failed = 1;
    }
    if (w->mirror_of) { /* the mirrored writer goes on alone (its lane to here idle from now on) */
        BlobWriter *src = w->mirror_of;
        lane_wait(&src->lane[1]);
        src->lane[1].err = 0;
        src->mirror = NULL;
    }
    if (w->fd >= 0) close(w->fd);
    if (w->dfd >= 0) close(w->dfd);
    free(w->stage);
    free(w->spare);
    free(w->path);
    free(w->entries);
    free(w->buckets);
    free(w);
}

/* Compares n bytes written at offset off with data. */
static int file_equals(BlobWriter *w, uint64_t off, const void *data, uint64_t n, int *equal, Err *e) {
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = xmalloc(n < CHUNK ? (size_t)n + 1 : CHUNK);
    const uint8_t *p = data;
    int rc = 0;
    *equal = 1;
    while (n && *equal) {
        size_t want = n < CHUNK ? (size_t)n : CHUNK;
        if ((rc = read_back(w, buf, want, off, e)) < 0) break;
        if (memcmp(buf, p, want)) *equal = 0;
        p += want, off += want, n -= want;
    }
    free(buf);
    return rc;
}

/* Compares n bytes written at offsets a and b. */
static int file_ranges_equal(BlobWriter *w, uint64_t a, uint64_t b, uint64_t n, int *equal, Err *e) {
    enum { CHUNK = 1 << 20 };
    size_t half = n < CHUNK ? (size_t)n + 1 : CHUNK;
    uint8_t *buf = xmalloc(2 * half), *pa = buf, *pb = buf + half;
    int rc = 0;
    *equal = 1;
    while (n && *equal) {
        size_t want = n < CHUNK ? (size_t)n : CHUNK;
        if ((rc = read_back(w, pa, want, a, e)) < 0 || (rc = read_back(w, pb, want, b, e)) < 0) break;
        if (memcmp(pa, pb, want)) *equal = 0;
        a += want, b += want, n -= want;
    }
    free(buf);
    return rc;
}

static void rehash(BlobWriter *w) {
    free(w->buckets);
    w->n_buckets *= 2;
    w->buckets = xmalloc(sizeof *w->buckets * (size_t)w->n_buckets);
    for (int i = 0; i < w->n_buckets; i++) w->buckets[i] = -1;
    for (int i = 0; i < w->n_entries; i++) {
        int b = (int)(w->entries[i].hash & (uint64_t)(w->n_buckets - 1));
        w->entries[i].next = w->buckets[b];
        w->buckets[b] = i;
    }
}

uint64_t blob_content_hash(MilDType dt, const void *data, uint64_t nbytes) {
    return hash64_wide(data ? data : "", (size_t)nbytes, blob_dtype_code(dt));
}

/* A mirror takes no blobs of its own until its source is finished (and never after a failed one). */
static int check_not_mirroring(const BlobWriter *w, Err *e) {
    if (w->mirror_of) return err_set(e, "%s: a mirror of %s cannot be written to before it is finished", w->path,
                                     w->mirror_of->path);
    if (w->mirror_failed) return err_set(e, "%s: the weight file it mirrors was not finished", w->path);
    return 0;
}

/* Checks an add or begin: the dtype can be stored, the size is representable. */
static int check_blob(BlobWriter *w, MilDType dt, uint64_t numel, uint32_t *code, uint64_t *nbytes, Err *e) {
    *code = blob_dtype_code(dt);
    if (!*code) return err_set(e, "%s: dtype %s cannot be stored in a weight blob", w->path, mil_dtype_name(dt));
    if (mil_packed_size(dt, numel, nbytes) < 0)
        return err_set(e, "%s: blob of %llu elements is too large", w->path, (unsigned long long)numel);
    if (w->count == UINT32_MAX) return err_set(e, "%s: too many blobs", w->path);
    if (w->st.active) return err_set(e, "%s: a streamed blob is still open", w->path);
    return check_not_mirroring(w, e);
}

/* An earlier blob with the same hash, dtype and count whose bytes equal `nbytes` bytes (in
 * memory at data, or when data is NULL in this file at data_offset): its entry index, -1 if
 * none, -2 on a read error. */
static int find_equal(BlobWriter *w, uint64_t h, uint32_t code, uint64_t numel, uint64_t nbytes, const void *data,
                      uint64_t data_offset, Err *e) {
    if (w->no_dedup) return -1;
    for (int i = w->buckets[h & (uint64_t)(w->n_buckets - 1)]; i >= 0; i = w->entries[i].next) {
        Entry *en = &w->entries[i];
        if (en->hash != h || en->numel != numel || en->code != code) continue;
        int equal;
        int rc = data ? file_equals(w, en->data_offset, data, nbytes, &equal, e)
                      : file_ranges_equal(w, en->data_offset, data_offset, nbytes, &equal, e);
        if (rc < 0) return -2;
        if (equal) return i;
    }
    return -1;
}

/* Zero fill to the next 64-byte boundary and the metadata record of a new blob; *meta: its
 * offset. */
static int write_record(BlobWriter *w, uint32_t code, uint64_t nbytes, uint64_t padding_bits, uint64_t *meta,
                        Err *e) {
    static const uint8_t zeros[BLOB_ALIGNMENT];
    *meta = align_up(w->size);
    if (*meta > w->size && write_all(w, zeros, *meta - w->size, e) < 0) return -1;
    uint8_t rec[BLOB_METADATA_SIZE] = {0};
    put_u32(rec, BLOB_SENTINEL);
    put_u32(rec + 4, code);
    put_u64(rec + 8, nbytes);
    put_u64(rec + 16, *meta + BLOB_METADATA_SIZE);
    put_u64(rec + 24, padding_bits);
    return write_all(w, rec, sizeof rec, e);
}

/* Records a blob just written at metadata offset meta (hash table and digest). */
static void register_blob(BlobWriter *w, uint64_t h, uint32_t code, uint64_t numel, uint64_t nbytes, uint64_t meta) {
    w->count++;
    if (w->n_entries == w->cap_entries) {
        w->cap_entries = w->cap_entries ? w->cap_entries * 2 : 256;
        w->entries = xrealloc(w->entries, sizeof *w->entries * (size_t)w->cap_entries);
    }
    int bucket = (int)(h & (uint64_t)(w->n_buckets - 1));
    Entry *en = &w->entries[w->n_entries];
    en->hash = h;
    en->numel = numel;
    en->nbytes = nbytes;
    en->offset = meta;
    en->data_offset = meta + BLOB_METADATA_SIZE;
    en->code = code;
    en->next = w->buckets[bucket];
    w->buckets[bucket] = w->n_entries++;
    if (w->n_entries > w->n_buckets) rehash(w);
    uint64_t rec_digest[3] = {code, numel, h};
    w->digest[0] = hash64(rec_digest, sizeof rec_digest, w->digest[0]);
    w->digest[1] = hash64(rec_digest, sizeof rec_digest, w->digest[1] ^ 0x9E3779B97F4A7C15ull);
}

int blob_writer_add_hashed(BlobWriter *w, MilDType dt, uint64_t numel, const void *data, uint64_t h,
                           uint64_t *offset, int *reused, Err *e) {
    uint32_t code;
    uint64_t nbytes;
    if (reused) *reused = 0;
    if (check_blob(w, dt, numel, &code, &nbytes, e) < 0) return -1;
    if (nbytes && !data) return err_set(e, "%s: blob data is NULL", w->path);
    int same = find_equal(w, h, code, numel, nbytes, data ? data : "", 0, e);
    if (same == -2) return -1;
    if (same >= 0) {
        *offset = w->entries[same].offset;
        if (reused) *reused = 1;
        w->reused_bytes += nbytes;
        return 0;
    }
    uint64_t meta;
    if (write_record(w, code, nbytes, padding_bits_for(dt, numel), &meta, e) < 0 ||
        write_all(w, data, nbytes, e) < 0)
        return -1;
    register_blob(w, h, code, numel, nbytes, meta);
    *offset = meta;
    killpoint("blob written", w->path);
    return 0;
}

int blob_writer_add(BlobWriter *w, MilDType dt, uint64_t numel, const void *data, uint64_t *offset, int *reused,
                    Err *e) {
    uint64_t nbytes;
    if (mil_packed_size(dt, numel, &nbytes) < 0 || !blob_dtype_code(dt) || (nbytes && !data))
        return blob_writer_add_hashed(w, dt, numel, data, 0, offset, reused, e); /* reports the error */
    return blob_writer_add_hashed(w, dt, numel, data, blob_content_hash(dt, data, nbytes), offset, reused, e);
}

int blob_writer_begin(BlobWriter *w, MilDType dt, uint64_t numel, Err *e) {
    uint32_t code;
    uint64_t nbytes, meta, start = w->size;
    if (check_blob(w, dt, numel, &code, &nbytes, e) < 0) return -1;
    if (write_record(w, code, nbytes, padding_bits_for(dt, numel), &meta, e) < 0) return -1;
    w->st.active = 1;
    w->st.code = code;
    w->st.numel = numel;
    w->st.nbytes = nbytes;
    w->st.written = 0;
    w->st.meta = meta;
    w->st.start = start;
    hash64_begin(&w->st.hash, (size_t)nbytes, code);
    return 0;
}

int blob_writer_append(BlobWriter *w, const void *data, size_t n, Err *e) {
    if (!w->st.active) return err_set(e, "%s: no streamed blob is open", w->path);
    if (n > w->st.nbytes - w->st.written)
        return err_set(e, "%s: streamed blob gets more than its %llu bytes", w->path,
                       (unsigned long long)w->st.nbytes);
    if (write_all(w, data, n, e) < 0) return -1;
    hash64_update(&w->st.hash, data, n);
    w->st.written += n;
    return 0;
}

int blob_writer_end(BlobWriter *w, uint64_t *offset, int *reused, Err *e) {
    if (reused) *reused = 0;
    if (!w->st.active) return err_set(e, "%s: no streamed blob is open", w->path);
    w->st.active = 0;
    uint64_t nbytes = w->st.nbytes, meta = w->st.meta, h = hash64_end(&w->st.hash);
    if (w->st.written != nbytes)
        return err_set(e, "%s: streamed blob got %llu of its %llu bytes", w->path,
                       (unsigned long long)w->st.written, (unsigned long long)nbytes);
    int same = find_equal(w, h, w->st.code, w->st.numel, nbytes, NULL, meta + BLOB_METADATA_SIZE, e);
    if (same == -2) return -1;
    if (same >= 0) { /* already in the file: take the copy just written back out */
        if (cut_back(w, w->st.start, e) < 0) return -1;
        *offset = w->entries[same].offset;
        if (reused) *reused = 1;
        w->reused_bytes += nbytes;
        return 0;
    }
    register_blob(w, h, w->st.code, w->st.numel, nbytes, meta);
    *offset = meta;
    killpoint("blob written", w->path);
    return 0;
}

/* Asks for the pages of the blobs' metadata records to be read in the background: whoever
 * opens the file next (the next steps of a conversion do) reads every record, one page fault
 * and disk read at a time, and the direct writes left none of them in the page cache. */
static void prefetch_records(const BlobWriter *w, int fd) {
#ifdef POSIX_FADV_WILLNEED
    uint64_t last = UINT64_MAX;
    for (int i = 0; i < w->n_entries; i++) {
        uint64_t page = w->entries[i].offset / DIRECT_ALIGN * DIRECT_ALIGN;
        if (page != last) posix_fadvise(fd, (off_t)page, DIRECT_ALIGN, POSIX_FADV_WILLNEED);
        last = page;
    }
#else
    (void)w, (void)fd;
#endif
}

/* Length, header and fsync of `to`'s file (w's or its mirror's) once w's bytes are all in it. */
static int seal_file(const BlobWriter *w, const BlobWriter *to, Err *e) {
    if (ftruncate(to->fd, (off_t)w->size) < 0) return err_errno(e, "cannot set the length of %s", to->path);
    if (write_header(w, to, e) < 0) return -1;
    killpoint("weight.bin header written", to->path);
    if (fsync(to->fd) < 0 && errno != EINVAL && errno != EROFS) return err_errno(e, "cannot sync %s", to->path);
    prefetch_records(w, to->fd);
    return 0;
}

/* The finished mirror m of w takes over w's record of what the file holds. */
static void adopt(BlobWriter *m, const BlobWriter *w) {
    m->size = m->stage_off = w->size;
    m->count = w->count;
    m->n_entries = m->cap_entries = w->n_entries;
    free(m->entries);
    m->entries = w->n_entries ? xmalloc(sizeof *m->entries * (size_t)w->n_entries) : NULL;
    if (w->n_entries) memcpy(m->entries, w->entries, sizeof *m->entries * (size_t)w->n_entries);
    m->n_buckets = w->n_buckets;
    free(m->buckets);
    m->buckets = xmalloc(sizeof *m->buckets * (size_t)w->n_buckets);
    memcpy(m->buckets, w->buckets, sizeof *m->buckets * (size_t)w->n_buckets);
    m->digest[0] = w->digest[0];
    m->digest[1] = w->digest[1];
    free(m->stage); /* allocated again if anything is added later */
    free(m->spare);
    m->stage = m->spare = NULL;
    m->mirror_of = NULL;
}

int blob_writer_finish(BlobWriter *w, Err *e) {
    if (w->st.active) return err_set(e, "%s: a streamed blob was not ended", w->path);
    if (check_not_mirroring(w, e) < 0 || stage_flush(w, e) < 0 || seal_file(w, w, e) < 0) return -1;
    if (w->mirror) {
        BlobWriter *m = w->mirror;
        if (seal_file(w, m, e) < 0) return -1;
        adopt(m, w);
        w->mirror = NULL;
    }
    return 0;
}

int blob_writer_mirror(BlobWriter *src, BlobWriter *m, Err *e) {
    int fresh = src->size == BLOB_HEADER_SIZE && m->size == BLOB_HEADER_SIZE && !src->stage_off && !m->stage_off &&
                !src->count && !m->count && !src->lane[0].started && !m->lane[0].started;
    if (!fresh || src->mirror || src->mirror_of || m->mirror || m->mirror_of || m->mirror_failed || src == m)
        return err_set(e, "%s cannot mirror %s: both weight files must be new and not mirrored already", m->path,
                       src->path);
    src->mirror = m;
    m->mirror_of = src;
    return 0;
}

int blob_writer_find(const BlobWriter *w, uint64_t hash, MilDType dt, uint64_t numel, uint64_t *offset) {
    uint32_t code = blob_dtype_code(dt);
    for (int i = w->buckets[hash & (uint64_t)(w->n_buckets - 1)]; i >= 0; i = w->entries[i].next) {
        const Entry *en = &w->entries[i];
        if (en->hash == hash && en->code == code && en->numel == numel) {
            *offset = en->offset;
            return 1;
        }
    }
    return 0;
}

int blob_writer_has_blob(const BlobWriter *w, uint64_t offset, MilDType dt, uint64_t numel) {
    int lo = 0, hi = w->n_entries; /* entries are in file order */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (w->entries[mid].offset < offset) lo = mid + 1;
        else hi = mid;
    }
    return lo < w->n_entries && w->entries[lo].offset == offset && w->entries[lo].code == blob_dtype_code(dt) &&
           w->entries[lo].numel == numel;
}

void blob_writer_set_dedup(BlobWriter *w, int on) { w->no_dedup = !on; }
uint32_t blob_writer_count(const BlobWriter *w) { return w->count; }
uint64_t blob_writer_size(const BlobWriter *w) { return w->size; }
uint64_t blob_writer_reused_bytes(const BlobWriter *w) { return w->reused_bytes; }
void blob_writer_digest(const BlobWriter *w, uint64_t digest[2]) {
    digest[0] = w->digest[0];
    digest[1] = w->digest[1];
}

/* ==== Reader ==== */

struct BlobFile {
    char *name;
    const uint8_t *data;
    uint64_t size;
    int mapped;
    uint32_t count;
};

static int check_header(BlobFile *f, Err *e) {
    if (f->size < BLOB_HEADER_SIZE)
        return err_set(e, "%s: truncated weight file (%llu bytes; the header alone is 64)", f->name,
                       (unsigned long long)f->size);
    uint32_t version = get_u32(f->data + 4);
    if (version != BLOB_VERSION)
        return err_set(e, "%s: weight file format version %u; only version 2 (blob storage v2) is supported", f->name,
                       version);
    f->count = get_u32(f->data);
    /* every blob takes at least its 64-byte metadata record */
    uint64_t most = (f->size - BLOB_HEADER_SIZE) / BLOB_METADATA_SIZE;
    if (f->count > most)
        return err_set(e, "%s: the header claims %u blobs but a file of %llu bytes holds at most %llu; the file is "
                          "truncated or corrupt",
                       f->name, f->count, (unsigned long long)f->size, (unsigned long long)most);
    return 0;
}

int blob_file_from_memory(BlobFile **out, const void *data, uint64_t len, const char *name, Err *e) {
    *out = NULL;
    BlobFile *f = xcalloc(1, sizeof *f);
    f->name = xstrdup(name ? name : "weight.bin");
    f->data = data;
    f->size = len;
    if (check_header(f, e) < 0) {
        blob_file_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

int blob_file_open(BlobFile **out, const char *path, Err *e) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_errno(e, "cannot open weight file %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return err_errno(e, "cannot stat %s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(e, "%s is not a regular file", path);
    }
    BlobFile *f = xcalloc(1, sizeof *f);
    f->name = xstrdup(path);
    f->size = (uint64_t)st.st_size;
    if (f->size) {
        void *m = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            err_errno(e, "cannot map %s", path);
            blob_file_close(f);
            return -1;
        }
        f->data = m;
        f->mapped = 1;
    }
    close(fd);
    if (check_header(f, e) < 0) {
        blob_file_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

void blob_file_close(BlobFile *f) {
    if (!f) return;
    if (f->mapped) munmap((void *)f->data, (size_t)f->size);
    free(f->name);
    free(f);
}

const char *blob_file_name(const BlobFile *f) { return f->name; }
uint32_t blob_file_count(const BlobFile *f) { return f->count; }
uint64_t blob_file_size(const BlobFile *f) { return f->size; }

int blob_file_get(const BlobFile *f, uint64_t off, BlobInfo *out, Err *e) {
    memset(out, 0, sizeof *out);
    if (off < BLOB_HEADER_SIZE || off > f->size || f->size - off < BLOB_METADATA_SIZE)
        return err_set(e, "%s: blob offset %llu is out of range (file size %llu)", f->name, (unsigned long long)off,
                       (unsigned long long)f->size);
    if (off % BLOB_ALIGNMENT)
        return err_set(e, "%s: blob offset %llu is not 64-byte aligned", f->name, (unsigned long long)off);
    const uint8_t *rec = f->data + off;
    uint32_t sentinel = get_u32(rec);
    if (sentinel != BLOB_SENTINEL)
        return err_set(e, "%s: bad sentinel 0x%08X in the blob metadata at offset %llu (expected 0xDEADBEEF)", f->name,
                       sentinel, (unsigned long long)off);
    uint32_t code = get_u32(rec + 4);
    MilDType dt = blob_dtype_from_code(code);
    if (dt == MIL_DT_INVALID)
        return err_set(e, "%s: unknown blob dtype code %u at offset %llu", f->name, code, (unsigned long long)off);
    uint64_t size = get_u64(rec + 8), data_off = get_u64(rec + 16), pad = get_u64(rec + 24);
    if (data_off < off + BLOB_METADATA_SIZE || data_off > f->size || f->size - data_off < size)
        return err_set(e, "%s: blob at offset %llu has data [%llu, +%llu) outside the file (size %llu); the file is "
                          "truncated or corrupt",
                       f->name, (unsigned long long)off, (unsigned long long)data_off, (unsigned long long)size,
                       (unsigned long long)f->size);
    if (data_off % BLOB_ALIGNMENT)
        return err_set(e, "%s: blob at offset %llu has unaligned data offset %llu", f->name, (unsigned long long)off,
                       (unsigned long long)data_off);
    int bits = mil_dtype_bits(dt);
    if (mil_dtype_is_subbyte(dt)) {
        if (pad >= 8 || pad > size * 8)
            return err_set(e, "%s: blob at offset %llu has %llu padding bits (must be < 8)", f->name,
                           (unsigned long long)off, (unsigned long long)pad);
        if ((bits == 1 || bits == 2 || bits == 4) && pad % (uint64_t)bits)
            return err_set(e, "%s: blob at offset %llu: %llu padding bits is not a multiple of %d for %s", f->name,
                           (unsigned long long)off, (unsigned long long)pad, bits, mil_dtype_name(dt));
        if ((size * 8 - pad) % (uint64_t)bits)
            return err_set(e, "%s: blob at offset %llu: %llu bits of %s data is not a whole number of elements",
                           f->name, (unsigned long long)off, (unsigned long long)(size * 8 - pad), mil_dtype_name(dt));
    } else {
        if (pad)
            return err_set(e, "%s: blob at offset %llu has padding bits for a byte-sized dtype %s", f->name,
                           (unsigned long long)off, mil_dtype_name(dt));
        if (size % (uint64_t)(bits / 8))
            return err_set(e, "%s: blob at offset %llu: %llu bytes is not a whole number of %s elements", f->name,
                           (unsigned long long)off, (unsigned long long)size, mil_dtype_name(dt));
    }
    out->offset = off;
    out->dtype = dt;
    out->nbytes = size;
    out->data_offset = data_off;
    out->padding_bits = pad;
    out->data = f->data + data_off;
    return 0;
}

int blob_check_elements(const BlobFile *f, const BlobInfo *b, MilDType dt, uint64_t numel, Err *e) {
    if (b->dtype != dt)
        return err_set(e, "%s: blob at offset %llu holds %s data but the tensor using it is %s (dtype mismatch)",
                       f->name, (unsigned long long)b->offset, mil_dtype_name(b->dtype), mil_dtype_name(dt));
    uint64_t bits = (uint64_t)mil_dtype_bits(dt);
    uint64_t have = (b->nbytes * 8 - b->padding_bits) / bits;
    if (have != numel)
        return err_set(e, "%s: blob at offset %llu holds %llu %s elements but the tensor using it has %llu", f->name,
                       (unsigned long long)b->offset, (unsigned long long)have, mil_dtype_name(dt),
                       (unsigned long long)numel);
    return 0;
}

int blob_file_walk(const BlobFile *f, BlobInfo *infos, uint32_t max, uint32_t *n, Err *e) {
    *n = 0;
    uint64_t off = BLOB_HEADER_SIZE;
    for (uint32_t i = 0; i < f->count; i++) {
        BlobInfo b;
        if (blob_file_get(f, off, &b, e) < 0) return err_wrap(e, "blob %u of %u", i, f->count);
        if (i < max) infos[i] = b;
        off = align_up(b.data_offset + b.nbytes);
        (*n)++;
    }
    return 0;
}
