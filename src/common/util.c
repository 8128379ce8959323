#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/killpoint.h"

static void out_of_memory(size_t n) {
    fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) out_of_memory(n);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) out_of_memory(count * size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) out_of_memory(n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) out_of_memory(0);
    char *s = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

int file_read_all(const char *path, size_t max_len, char **out, size_t *len, Err *e) {
    *out = NULL;
    if (len) *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_errno(e, "cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return err_errno(e, "cannot stat %s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(e, "%s is not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_len) {
        close(fd);
        return err_set(e, "%s is too large (%lld bytes, limit %zu)", path, (long long)st.st_size, max_len);
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = xmalloc(n + 1);
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return r < 0 ? err_errno(e, "cannot read %s", path) : err_set(e, "%s: file shrank while reading", path);
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return 0;
}

char *path_dir(const char *path) {
    const char *s = strrchr(path, '/');
    if (!s) return xstrdup(".");
    if (s == path) return xstrdup("/");
    char *d = xmalloc((size_t)(s - path) + 1);
    memcpy(d, path, (size_t)(s - path));
    d[s - path] = 0;
    return d;
}

int file_write_atomic(const char *path, const void *data, size_t len, Err *e) {
    char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err_errno(e, "cannot create %s", tmp);
        free(tmp);
        return -1;
    }
    const char *p = data;
    size_t left = len;
    int rc = 0;
    while (left && rc == 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) rc = err_errno(e, "cannot write %s", path);
        else if (w == 0) rc = err_set(e, "cannot write %s: the file system accepted no more bytes", path);
        else p += w, left -= (size_t)w;
    }
    /* synced before the rename: after a crash the name holds the old or the new bytes, whole */
    if (rc == 0 && fsync(fd) < 0 && errno != EINVAL && errno != EROFS) rc = err_errno(e, "cannot write %s", path);
    if (close(fd) < 0 && rc == 0) rc = err_errno(e, "cannot write %s", path);
    if (rc == 0) killpoint("temporary file written", tmp);
    if (rc == 0 && rename(tmp, path) < 0) rc = err_errno(e, "cannot rename %s to %s", tmp, path);
    if (rc < 0) {
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    killpoint("file renamed into place", path);
    char *dir = path_dir(path);
    Err ignore;
    fsync_path(dir, &ignore);
    free(dir);
    return 0;
}

int path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *path_join(const char *a, const char *b) {
    size_t la = strlen(a);
    if (la && a[la - 1] == '/') return xasprintf("%s%s", a, b);
    return xasprintf("%s/%s", a, b);
}

const char *path_basename(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int mkdir_p(const char *path, Err *e) {
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) < 0 && errno != EEXIST) {
            err_errno(e, "cannot create directory %s", p);
            free(p);
            return -1;
        }
        *s = '/';
    }
    if (mkdir(p, 0755) < 0 && errno != EEXIST) {
        err_errno(e, "cannot create directory %s", p);
        free(p);
        return -1;
    }
    free(p);
    if (!path_is_dir(path)) return err_set(e, "%s exists and is not a directory", path);
    return 0;
}

int remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) < 0) return errno == ENOENT ? 0 : -1;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return -1;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char *child = path_join(path, de->d_name);
            remove_tree(child);
            free(child);
        }
        closedir(d);
        return rmdir(path);
    }
    return unlink(path);
}

int fsync_path(const char *path, Err *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_errno(e, "cannot open %s", path);
    if (fsync(fd) < 0 && errno != EINVAL && errno != EROFS) {
        err_errno(e, "cannot sync %s", path);
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* A word-at-a-time multiply-xorshift hash; ~several GB/s, good enough to
 * bucket blobs before a byte compare. */
#define HASH64_K 0x9E3779B97F4A7C15ull

static inline uint64_t hash64_word(uint64_t h, uint64_t w) {
    w *= HASH64_K;
    w ^= w >> 29;
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 31);
}

static inline uint64_t hash64_tail(uint64_t h, const unsigned char *p, size_t len) {
    uint64_t tail = 0;
    memcpy(&tail, p, len);
    h = (h ^ (tail * HASH64_K)) * 0x94D049BB133111EBull;
    return h ^ (h >> 32);
}

uint64_t hash64(const void *data, size_t len, uint64_t seed) {
    const unsigned char *p = data;
    uint64_t h = seed ^ (len * HASH64_K);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = hash64_word(h, w);
        p += 8;
        len -= 8;
    }
    return hash64_tail(h, p, len);
}

static inline void wide_block(uint64_t h[4], const unsigned char *p) {
    uint64_t w[4];
    memcpy(w, p, sizeof w);
    for (int i = 0; i < 4; i++) h[i] = hash64_word(h[i], w[i]);
}

/* The four chains folded into one, then the last len (< 32) bytes as hash64 takes them. */
static uint64_t wide_finish(const uint64_t h[4], const unsigned char *p, size_t len) {
    uint64_t x = hash64_word(hash64_word(hash64_word(h[0], h[1]), h[2]), h[3]);
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        x = hash64_word(x, w);
    }
    return hash64_tail(x, p, len);
}

void hash64_begin(Hash64Stream *s, size_t len, uint64_t seed) {
    s->h[0] = seed ^ (len * HASH64_K);
    for (int i = 1; i < 4; i++) s->h[i] = s->h[i - 1] + HASH64_K;
    s->n_part = 0;
}

uint64_t hash64_wide(const void *data, size_t len, uint64_t seed) {
    Hash64Stream s;
    hash64_begin(&s, len, seed);
    const unsigned char *p = data;
    for (; len >= 32; p += 32, len -= 32) wide_block(s.h, p);
    return wide_finish(s.h, p, len);
}

void hash64_update(Hash64Stream *s, const void *data, size_t n) {
    const unsigned char *p = data;
    if (s->n_part) { /* complete the pending block first */
        size_t take = 32 - s->n_part < n ? 32 - s->n_part : n;
        memcpy(s->part + s->n_part, p, take);
        s->n_part += take;
        p += take;
        n -= take;
        if (s->n_part < 32) return;
        wide_block(s->h, s->part);
        s->n_part = 0;
    }
    for (; n >= 32; p += 32, n -= 32) wide_block(s->h, p);
    memcpy(s->part, p, n);
    s->n_part = n;
}

uint64_t hash64_end(Hash64Stream *s) { return wide_finish(s->h, s->part, s->n_part); }

int mul_size(size_t a, size_t b, size_t *out) {
    if (b && a > SIZE_MAX / b) return -1;
    *out = a * b;
    return 0;
}

int add_size(size_t a, size_t b, size_t *out) {
    if (a > SIZE_MAX - b) return -1;
    *out = a + b;
    return 0;
}
