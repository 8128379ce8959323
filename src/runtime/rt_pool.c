/* rt_pool.c - recycling buffer pool for the interpreter's intermediate values.
 *
 * Sizes are rounded up to one of four classes per power of two (1, 1.25, 1.5, 1.75 x 2^k),
 * so at most 25% is wasted and a buffer released by one op is reused by any later op of a
 * similar size. A function run repeatedly with the same shapes asks for the same sequence of
 * sizes, so after the first run every request is served from the free lists: memory stays
 * flat however many tokens are generated.
 */
#include "runtime/rt_internal.h"

#include <stdlib.h>

#include "common/util.h"

#define POOL_MIN_SHIFT 6      /* classes start at 64 bytes */
#define POOL_CLASSES (4 * (64 - POOL_MIN_SHIFT))

typedef struct FreeList {
    void **items;
    int n, cap;
} FreeList;

struct RtPool {
    FreeList lists[POOL_CLASSES];
    uint64_t fresh_allocs;
    uint64_t bytes;
};

RtPool *pool_new(void) { return xcalloc(1, sizeof(RtPool)); }

void pool_free(RtPool *p) {
    if (!p) return;
    for (int c = 0; c < POOL_CLASSES; c++) {
        for (int i = 0; i < p->lists[c].n; i++) free(p->lists[c].items[i]);
        free(p->lists[c].items);
    }
    free(p);
}

/* Class of a request and the size every buffer of that class has. */
static int size_class(size_t bytes, size_t *class_bytes) {
    if (bytes < ((size_t)1 << POOL_MIN_SHIFT)) bytes = (size_t)1 << POOL_MIN_SHIFT;
    int shift = 63 - __builtin_clzll((unsigned long long)bytes);   /* 2^shift <= bytes */
    size_t base = (size_t)1 << shift, quarter = base / 4;
    int step = (int)((bytes - base + quarter - 1) / quarter);       /* 0..4 */
    if (step == 4) shift++, step = 0, base <<= 1, quarter <<= 1;
    *class_bytes = base + (size_t)step * quarter;
    return (shift - POOL_MIN_SHIFT) * 4 + step;
}

void *pool_get(RtPool *p, size_t bytes, int *cls) {
    size_t cb;
    int c = size_class(bytes, &cb);
    AN_ASSERT(c >= 0 && c < POOL_CLASSES);
    *cls = c;
    FreeList *l = &p->lists[c];
    if (l->n) return l->items[--l->n];
    p->fresh_allocs++;
    p->bytes += cb;
    void *ptr = NULL;
    if (posix_memalign(&ptr, 64, cb) != 0) ptr = xmalloc(cb);
    return ptr;
}

void pool_put(RtPool *p, void *ptr, int cls) {
    if (!ptr) return;
    AN_ASSERT(cls >= 0 && cls < POOL_CLASSES);
    FreeList *l = &p->lists[cls];
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->items = xrealloc(l->items, sizeof *l->items * (size_t)l->cap);
    }
    l->items[l->n++] = ptr;
}

uint64_t pool_fresh_allocs(const RtPool *p) { return p->fresh_allocs; }
uint64_t pool_bytes(const RtPool *p) { return p->bytes; }
