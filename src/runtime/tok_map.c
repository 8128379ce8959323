/* tok_map.c - the two open-addressing hash maps of the tokenizer (see tok_internal.h). */
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "runtime/tok_internal.h"

#define MAP_SEED 0x7a0c3e55ull

static size_t capacity_for(size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2) cap *= 2; /* load factor <= 1/2 */
    return cap;
}

/* ---- StrMap ---------------------------------------------------------------- */

void strmap_init(StrMap *m, size_t expected) {
    m->cap = capacity_for(expected);
    m->count = 0;
    m->slot_off = xmalloc(sizeof *m->slot_off * m->cap);
    m->slot_len = xmalloc(sizeof *m->slot_len * m->cap);
    m->slot_val = xmalloc(sizeof *m->slot_val * m->cap);
    memset(m->slot_off, 0xff, sizeof *m->slot_off * m->cap);
}

void strmap_free(StrMap *m) {
    free(m->slot_off);
    free(m->slot_len);
    free(m->slot_val);
    memset(m, 0, sizeof *m);
}

static size_t strmap_find(const StrMap *m, const char *arena, const char *key, size_t len) {
    size_t mask = m->cap - 1, i = hash64(key, len, MAP_SEED) & mask;
    while (m->slot_off[i] != UINT32_MAX) {
        if (m->slot_len[i] == len && memcmp(arena + m->slot_off[i], key, len) == 0) return i;
        i = (i + 1) & mask;
    }
    return i;
}

int strmap_get(const StrMap *m, const char *arena, const char *key, size_t len) {
    if (!m->cap) return -1;
    size_t i = strmap_find(m, arena, key, len);
    return m->slot_off[i] == UINT32_MAX ? -1 : m->slot_val[i];
}

static void strmap_grow(StrMap *m, const char *arena) {
    StrMap bigger;
    strmap_init(&bigger, m->cap); /* doubles the capacity */
    for (size_t i = 0; i < m->cap; i++)
        if (m->slot_off[i] != UINT32_MAX) strmap_put(&bigger, arena, m->slot_off[i], m->slot_len[i], m->slot_val[i]);
    strmap_free(m);
    *m = bigger;
}

void strmap_put(StrMap *m, const char *arena, uint32_t off, uint32_t len, int32_t val) {
    if ((m->count + 1) * 2 > m->cap) strmap_grow(m, arena);
    size_t i = strmap_find(m, arena, arena + off, len);
    if (m->slot_off[i] == UINT32_MAX) {
        m->slot_off[i] = off;
        m->slot_len[i] = len;
        m->count++;
    }
    m->slot_val[i] = val;
}

/* ---- U64Map ---------------------------------------------------------------- */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

void u64map_init(U64Map *m, size_t expected) {
    m->cap = capacity_for(expected);
    m->count = 0;
    m->keys = xcalloc(m->cap, sizeof *m->keys);
    m->vals = xmalloc(sizeof *m->vals * m->cap);
}

void u64map_free(U64Map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

int u64map_get(const U64Map *m, uint64_t key, uint64_t *val) {
    if (!m->cap) return 0;
    size_t mask = m->cap - 1, i = mix64(key) & mask;
    while (m->keys[i]) {
        if (m->keys[i] == key + 1) {
            *val = m->vals[i];
            return 1;
        }
        i = (i + 1) & mask;
    }
    return 0;
}

void u64map_put(U64Map *m, uint64_t key, uint64_t val) {
    if ((m->count + 1) * 2 > m->cap) {
        U64Map bigger;
        u64map_init(&bigger, m->cap);
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) u64map_put(&bigger, m->keys[i] - 1, m->vals[i]);
        u64map_free(m);
        *m = bigger;
    }
    size_t mask = m->cap - 1, i = mix64(key) & mask;
    while (m->keys[i] && m->keys[i] != key + 1) i = (i + 1) & mask;
    if (!m->keys[i]) {
        m->keys[i] = key + 1;
        m->count++;
    }
    m->vals[i] = val;
}
