/* util.h - small helpers shared by every module: memory, files, paths, time, hashing.
 *
 * Allocation failure is fatal (x* functions print and abort): every caller
 * would otherwise have the same three lines of handling for a condition
 * the tool cannot recover from.
 */
#ifndef ANEMLL_UTIL_H
#define ANEMLL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* printf into a new string; caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reads a whole file into a NUL-terminated buffer (caller frees *out).
 * Fails if the file is larger than max_len bytes (so a hostile file cannot
 * make us allocate without bound). */
int file_read_all(const char *path, size_t max_len, char **out, size_t *len, Err *e);
/* Writes a whole file through a temporary sibling ("<path>.tmp.<pid>"), synced, then
 * rename(): readers, and a crash at any point, never see a partial file. The temporary is
 * removed on failure (a full disk included). */
int file_write_atomic(const char *path, const void *data, size_t len, Err *e);

int path_exists(const char *path);
int path_is_dir(const char *path);
/* "a" + "/" + "b"; caller frees. */
char *path_join(const char *a, const char *b);
/* Directory part of a path: "." for a bare name, "/" at the root; caller frees. */
char *path_dir(const char *path);
/* Last component of a path (points into the argument). */
const char *path_basename(const char *path);
/* mkdir -p. */
int mkdir_p(const char *path, Err *e);
/* rm -rf; returns 0 if the path no longer exists afterwards. */
int remove_tree(const char *path);
/* fsync a file or directory by path (best effort on filesystems that refuse). */
int fsync_path(const char *path, Err *e);

double now_seconds(void);               /* monotonic clock */
long peak_rss_kb(void);                 /* VmHWM of this process, or -1 */

/* 64-bit content hash (not cryptographic; equal hashes are confirmed by memcmp). */
uint64_t hash64(const void *data, size_t len, uint64_t seed);

/* hash64's mixing in four independent chains over interleaved words (chain i takes words
 * i, i+4, ...), folded together at the end: a different value from hash64, three times its
 * speed on long inputs (the chain's multiply latency bounds hash64). For bulk data: weight
 * blobs. */
uint64_t hash64_wide(const void *data, size_t len, uint64_t seed);

/* hash64_wide of data that arrives in pieces: begin with the total length, update with the
 * pieces in order (any sizes), end gives hash64_wide of their concatenation. */
typedef struct Hash64Stream {
    uint64_t h[4];
    unsigned char part[32]; /* bytes of an incomplete 4-word block */
    size_t n_part;
} Hash64Stream;
void hash64_begin(Hash64Stream *s, size_t len, uint64_t seed);
void hash64_update(Hash64Stream *s, const void *data, size_t n);
uint64_t hash64_end(Hash64Stream *s);

/* Checked size arithmetic: return -1 on overflow. */
int mul_size(size_t a, size_t b, size_t *out);
int add_size(size_t a, size_t b, size_t *out);

#endif
