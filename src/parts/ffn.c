/* ffn.c - one chunk of decoder layers: the `infer` (1 token) and `prefill` (batch tokens)
 * programs of docs/parts.md, and for Gemma 3 beyond its sliding window `infer_rotate` and
 * `prefill_rotate`, written as {prefix}_FFN, _prefill, _FFN_rotate, _prefill_rotate packages.
 *
 * Inside the graph the residual stream stays in the conv layout (1, H, 1, T) from the chunk's
 * input to its output: projections are 1x1 convs, RMSNorm is layer_norm over the channel axis
 * of [x, -x]. Per layer:
 *
 *   h = rmsnorm(x)                                   (1, H, 1, T)
 *   q, k, v = conv(h) -> heads                       (1, n, T, hd)   [+ q/k norm over hd]
 *   q, k = q*cos + rotate_half(q)*sin                cos/sin: the layer type's table rows by position
 *   K, V = the layer's cache rows after writing k, v (see below), tiled to n_heads (GQA)
 *   a = softmax(q K^T * scale + mask) V -> (1, nh*hd, 1, T);  x += [post_norm](o_proj(a))
 *   x += [post_norm](down(act(gate(rmsnorm(x))) * up(rmsnorm(x))))
 *
 * Caches. Llama/Qwen: one state model_model_kv_cache_0, K of layer i at row i, V at row L+i,
 * written at positions [pos, pos+T), attended over the first ctx positions with the causal mask.
 * Gemma 3: model_model_kv_cache_local (sliding-window layers, Wl = min(window, ctx) positions)
 * and model_model_kv_cache_global (the others, ctx positions), rows by the layer's rank among
 * its type (plan_cache_rows). Global layers work as above in every function. Local layers:
 *   infer, prefill (fill: positions < window)   write slots [pos, pos+T), attend over the Wl
 *                                               slots with the causal mask's first Wl columns
 *   infer_rotate (pos >= window)                slots := slots[1:] ++ k: they hold positions
 *                                               pos-Wl+1..pos, all visible (no mask)
 *   prefill_rotate (pos >= window)              keys = slots ++ batch (positions pos-Wl..pos+T-1)
 *                                               with a constant band mask: query i sees slot s
 *                                               iff s >= i+1 and batch key j iff j <= i (HF's
 *                                               window, causal inside the batch); then
 *                                               slots := keys[T:]
 * A state no layer of the chunk reads is still declared and kept alive (ANEMLL adds
 * state[0,0,0,0] * 0 to the output; so do we), so that every chunk and function has the same
 * interface and one state object serves all of them.
 *
 * The last chunk ends with the final norm; its prefill functions keep only the first token
 * after the last layer's attention (every later op works token by token; the host never reads
 * it).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "common/util.h"
#include "parts/internal.h"

enum { CACHE_GLOBAL = 0, CACHE_LOCAL = 1 };

/* The per-function state of a program being built. */
typedef struct FfnGraph {
    MilFunction *f;
    PlanFfnKind kind;
    int tokens;               /* T */
    int keep_first;           /* last chunk's prefill: keep token 0 after the last attention */
    MilValue *x;              /* residual (1, H, 1, T) */
    MilValue *rope_idx;       /* positions of the T tokens: position_ids or current_pos */
    MilValue *cos[2], *sin[2];  /* (1, 1, T, hd) per table: [0] global (or the only one), [1] local */
    MilValue *mask;           /* causal_mask (1, 1, T, ctx) */
    MilValue *mask_local;     /* local layers: fill: mask[..., :Wl]; prefill_rotate: the band
                                 (1, 1, T, Wl+T); infer_rotate: NULL (everything visible) */
    MilValue *pos, *pos_end;  /* current_pos (1,), current_pos + T */
    MilValue *state[2];       /* [CACHE_GLOBAL] kv_cache_0 or kv_cache_global, [CACHE_LOCAL] */
    MilValue *kv[2];          /* each cache as last written; NULL if the chunk does not read it */
} FfnGraph;

/* One layer's weights as values of one function. */
typedef struct LayerValues {
    MilValue *attn_norm, *q, *k, *v, *qb, *kb, *vb, *q_norm, *k_norm, *o, *ob, *post_attn_norm;
    MilValue *mlp_norm, *gate, *up, *down, *gb, *ub, *db, *post_mlp_norm;
} LayerValues;

typedef struct FfnBuild {
    const PartSource *src;
    const Arch *a;
    const PartCommon *c;
    const LutSpec *lut;
    int chunk, first, count, last;
    int split;                            /* gemma3 local/global caches */
    int uses[2];                          /* the chunk has layers of this cache */
    int tables[2];                        /* RoPE table pairs held (plan_chunk_rope_tables) */
    int n;                                /* programs being built: 1..4 */
    MilProgram *prog[PARTS_MAX_TARGETS];
    PkgWriter *w[PARTS_MAX_TARGETS];
    FfnGraph g[PARTS_MAX_TARGETS];
    WeightLoader wl;
} FfnBuild;

/* ==== inputs, states, RoPE tables, the band mask ==== */

static void declare_states(FfnBuild *b, FfnGraph *g) {
    const Arch *a = b->a;
    MilFunction *f = g->f;
    if (!b->split) {
        int64_t st[4] = {2 * (int64_t)a->n_layers, a->n_kv_heads, b->c->state_length, a->head_dim};
        g->state[CACHE_GLOBAL] = mil_state(f, "model_model_kv_cache_0", MIL_FP16, 4, st);
        return;
    }
    int n_local, n_global;
    plan_layer_types(a, &n_local, &n_global);
    int64_t local[4] = {2 * (int64_t)n_local, a->n_kv_heads, b->c->local_length, a->head_dim};
    int64_t global[4] = {2 * (int64_t)n_global, a->n_kv_heads, b->c->state_length, a->head_dim};
    g->state[CACHE_LOCAL] = mil_state(f, "model_model_kv_cache_local", MIL_FP16, 4, local);
    g->state[CACHE_GLOBAL] = mil_state(f, "model_model_kv_cache_global", MIL_FP16, 4, global);
}

static void declare_inputs(FfnBuild *b, FfnGraph *g) {
    const Arch *a = b->a;
    int prefill = plan_ffn_is_prefill(g->kind);
    int64_t t = g->tokens, ctx = b->c->context;
    MilFunction *f = g->f;
    int64_t hs[3] = {1, t, a->hidden}, mask[4] = {1, 1, t, ctx}, one = 1;
    MilValue *x = mil_input(f, "hidden_states", MIL_FP16, 3, hs);
    MilValue *ids = mil_input(f, "position_ids", MIL_INT32, 1, prefill ? &t : &one);
    g->mask = mil_input(f, "causal_mask", MIL_FP16, 4, mask);
    g->pos = mil_input(f, "current_pos", MIL_INT32, 1, &one);
    declare_states(b, g);
    g->x = g_to_conv(f, x);
    g->pos_end = mil_add_add(f, NULL, g->pos, g_i32(f, (int32_t)t));
    /* RoPE rows: prefill by position_ids, decode by current_pos (position_ids is kept for
     * the interface only); int16 indices as the ANE prefers */
    g->rope_idx = prefill ? ids : g->pos;
}

/* cos/sin tables (state_length, head_dim) fp16 of one layer's RoPE: HF's
 * cos(p * inv_freq[i mod hd/2]) * scaling. */
static int rope_table(FfnBuild *b, int layer, const char *cname, const char *sname, int slot, Err *e) {
    const Arch *a = b->a;
    int p = b->c->state_length, hd = a->head_dim, half = hd / 2;
    uint16_t *tc = xmalloc(sizeof *tc * (size_t)p * (size_t)hd);
    uint16_t *ts = xmalloc(sizeof *ts * (size_t)p * (size_t)hd);
    float *c = xmalloc(sizeof *c * (size_t)half), *s = xmalloc(sizeof *s * (size_t)half);
    for (int pos = 0; pos < p; pos++) {
        arch_rope_cos_sin(a, layer, pos, c, s);
        for (int i = 0; i < hd; i++) {
            tc[(size_t)pos * hd + i] = f32_to_f16(c[i % half]);
            ts[(size_t)pos * hd + i] = f32_to_f16(s[i % half]);
        }
    }
    int64_t dims[2] = {p, hd};
    MilValue *vc[PARTS_MAX_TARGETS], *vs[PARTS_MAX_TARGETS];
    int rc = wl_fp16(&b->wl, tc, 2, dims, cname, vc, e);
    if (rc == 0) rc = wl_fp16(&b->wl, ts, 2, dims, sname, vs, e);
    for (int i = 0; i < b->n && rc == 0; i++) {
        FfnGraph *g = &b->g[i];
        MilFunction *f = g->f;
        MilValue *idx = mil_add_cast(f, NULL, g->rope_idx, MIL_INT16);
        int32_t shape[4] = {1, 1, g->tokens, hd};
        g->cos[slot] = mil_add_reshape(f, NULL, mil_add_gather(f, NULL, vc[i], idx, 0, 0), 4, shape);
        g->sin[slot] = mil_add_reshape(f, NULL, mil_add_gather(f, NULL, vs[i], idx, 0, 0), 4, shape);
    }
    free(tc);
    free(ts);
    free(c);
    free(s);
    return rc;
}

/* The first layer of the chunk of the given type (local: sliding window), or -1. */
static int first_layer_of(const FfnBuild *b, int local) {
    for (int l = b->first; l < b->first + b->count; l++)
        if ((b->split && arch_is_sliding(b->a, l)) == local) return l;
    return -1;
}

static int rope_tables(FfnBuild *b, Err *e) {
    if (b->tables[CACHE_GLOBAL]) {
        int layer = first_layer_of(b, 0);
        if (layer < 0) layer = b->first;   /* shared tables, local layers only */
        if (rope_table(b, layer, "rope_cos", "rope_sin", CACHE_GLOBAL, e) < 0) return -1;
    }
    if (b->tables[CACHE_LOCAL] &&
        rope_table(b, first_layer_of(b, 1), "rope_local_cos", "rope_local_sin", CACHE_LOCAL, e) < 0)
        return -1;
    if (!b->tables[CACHE_LOCAL])
        for (int i = 0; i < b->n; i++) {
            b->g[i].cos[CACHE_LOCAL] = b->g[i].cos[CACHE_GLOBAL];
            b->g[i].sin[CACHE_LOCAL] = b->g[i].sin[CACHE_GLOBAL];
        }
    return 0;
}

/* prefill_rotate's local-layer mask (1, 1, T, Wl+T) over keys = Wl cache slots ++ T batch keys:
 * 0 where query i sees key c (1 <= c - i <= Wl), -inf elsewhere. Written to this function's
 * package only, before its weights (plan.c counts it there). */
static int band_mask(FfnBuild *b, int i, Err *e) {
    FfnGraph *g = &b->g[i];
    int t = g->tokens, wl = b->c->local_length, w = wl + t;
    uint16_t *m = xmalloc(sizeof *m * (size_t)t * (size_t)w);
    for (int q = 0; q < t; q++)
        for (int c = 0; c < w; c++) m[(size_t)q * w + c] = c - q >= 1 && c - q <= wl ? 0 : f32_to_f16(-INFINITY);
    int64_t dims[4] = {1, 1, t, w};
    MilBlobRef ref;
    int rc = pkg_writer_add_blob(b->w[i], MIL_FP16, (uint64_t)t * (uint64_t)w, m, &ref, e);
    free(m);
    if (rc < 0) return -1;
    g->mask_local = mil_const_blob(g->f, "local_band_mask", MIL_FP16, 4, dims, &ref);
    return g->mask_local ? 0 : mil_error(b->prog[i], e);
}

/* The local layers' mask of every function (see FfnGraph.mask_local). */
static int local_masks(FfnBuild *b, Err *e) {
    if (!b->uses[CACHE_LOCAL]) return 0;
    for (int i = 0; i < b->n; i++) {
        FfnGraph *g = &b->g[i];
        if (g->kind == FFN_PREFILL_ROTATE) {
            if (band_mask(b, i, e) < 0) return -1;
        } else if (g->kind != FFN_INFER_ROTATE) {
            int32_t begin[4] = {0, 0, 0, 0}, end[4] = {1, 1, g->tokens, b->c->local_length};
            MilSlice s = {.rank = 4, .begin = begin, .end = end};
            g->mask_local = mil_add_slice_by_index(g->f, NULL, g->mask, &s);
        }
    }
    return 0;
}

/* ==== weights ==== */

static const char *lname(const Arch *a, int layer, ArchWeight w, char *buf, size_t n) {
    return arch_layer_tensor_name(a, layer, w, buf, n);
}

/* A projection (rows x cols) as a conv weight (rows, cols, 1, 1), plus its bias if present. */
static int load_proj(FfnBuild *b, int layer, ArchWeight w, ArchWeight bias, long rows, long cols, MilValue **wv,
                     MilValue **bv, Err *e) {
    char tname[160], vname[160];
    lname(b->a, layer, w, tname, sizeof tname);
    int64_t dims[4] = {rows, cols, 1, 1};
    if (wl_matrix(&b->wl, tname, 0, rows, cols, 4, dims, b->lut, parts_mil_name(tname, vname, sizeof vname), wv, e) < 0)
        return -1;
    for (int i = 0; i < b->n; i++) bv[i] = NULL;
    if (!arch_has_weight(b->a, bias)) return 0;
    lname(b->a, layer, bias, tname, sizeof tname);
    int64_t bd[1] = {rows};
    return wl_vector(&b->wl, tname, rows, 1, bd, parts_mil_name(tname, vname, sizeof vname), bv, e);
}

/* A norm gain of n values with shape dims: w, or gemma's (1 + w) folded in double; `scaled`:
 * a post-branch norm, times the --fp16-scale alpha. */
static int load_gain(FfnBuild *b, const char *tname, long n, int rank, const int64_t *dims, int scaled, MilValue **v,
                     Err *e) {
    char vname[160];
    double add = b->a->norm_plus_one ? 1 : 0, alpha = b->src->fp16_scale > 0 ? b->src->fp16_scale : 1;
    return wl_gain(&b->wl, tname, n, add, scaled ? alpha : 1, rank, dims, parts_mil_name(tname, vname, sizeof vname),
                   v, e);
}

/* Loads layer `layer` into lv[i] for every program, in the order plan.c counts the blobs. */
static int load_layer(FfnBuild *b, int layer, LayerValues *lv, Err *e) {
    const Arch *a = b->a;
    long h = a->hidden, q = arch_q_dim(a), kv = arch_kv_dim(a), in = a->intermediate, hd = a->head_dim;
    int64_t chan[4] = {1, h, 1, 1}, head[1] = {hd};
    int sandwich = arch_has_weight(a, W_POST_ATTN_NORM);
    char t[160];
    MilValue *v[6][PARTS_MAX_TARGETS];
#define GET(field, k) for (int i = 0; i < b->n; i++) lv[i].field = v[k][i]
    for (int i = 0; i < b->n; i++) lv[i] = (LayerValues){0};
    if (load_gain(b, lname(a, layer, W_ATTN_NORM, t, sizeof t), h, 4, chan, 0, v[0], e) < 0) return -1;
    GET(attn_norm, 0);
    if (load_proj(b, layer, W_Q, W_Q_BIAS, q, h, v[0], v[1], e) < 0) return -1;
    GET(q, 0);
    GET(qb, 1);
    if (load_proj(b, layer, W_K, W_K_BIAS, kv, h, v[0], v[1], e) < 0) return -1;
    GET(k, 0);
    GET(kb, 1);
    if (load_proj(b, layer, W_V, W_V_BIAS, kv, h, v[0], v[1], e) < 0) return -1;
    GET(v, 0);
    GET(vb, 1);
    if (a->qk_norm) {
        if (load_gain(b, lname(a, layer, W_Q_NORM, t, sizeof t), hd, 1, head, 0, v[0], e) < 0 ||
            load_gain(b, lname(a, layer, W_K_NORM, t, sizeof t), hd, 1, head, 0, v[1], e) < 0)
            return -1;
        GET(q_norm, 0);
        GET(k_norm, 1);
    }
    if (load_proj(b, layer, W_O, W_O_BIAS, h, q, v[0], v[1], e) < 0) return -1;
    GET(o, 0);
    GET(ob, 1);
    if (sandwich) {
        if (load_gain(b, lname(a, layer, W_POST_ATTN_NORM, t, sizeof t), h, 4, chan, 1, v[0], e) < 0) return -1;
        GET(post_attn_norm, 0);
    }
    if (load_gain(b, lname(a, layer, W_MLP_NORM, t, sizeof t), h, 4, chan, 0, v[0], e) < 0) return -1;
    GET(mlp_norm, 0);
    if (load_proj(b, layer, W_GATE, W_GATE_BIAS, in, h, v[0], v[1], e) < 0 ||
        load_proj(b, layer, W_UP, W_UP_BIAS, in, h, v[2], v[3], e) < 0 ||
        load_proj(b, layer, W_DOWN, W_DOWN_BIAS, h, in, v[4], v[5], e) < 0)
        return -1;
    GET(gate, 0);
    GET(gb, 1);
    GET(up, 2);
    GET(ub, 3);
    GET(down, 4);
    GET(db, 5);
    if (sandwich) {
        if (load_gain(b, lname(a, layer, W_POST_MLP_NORM, t, sizeof t), h, 4, chan, 1, v[0], e) < 0) return -1;
        GET(post_mlp_norm, 0);
    }
#undef GET
    return 0;
}

/* ==== one layer ==== */

/* (1, n*hd, 1, T) -> (1, n, T, hd) */
static MilValue *to_heads(MilFunction *f, MilValue *x, int n, int hd, int t) {
    static const int32_t perm[4] = {0, 1, 3, 2};
    int32_t shape[4] = {1, n, hd, t};
    return mil_add_transpose(f, NULL, mil_add_reshape(f, NULL, x, 4, shape), 4, perm);
}

/* x*cos + rotate_half(x)*sin, rotate_half(x) = [-x2, x1] */
static MilValue *rope(MilFunction *f, FfnGraph *g, int table, MilValue *x, int n, int hd) {
    int t = g->tokens, half = hd / 2;
    int32_t b1[4] = {0, 0, 0, 0}, e1[4] = {1, n, t, half}, b2[4] = {0, 0, 0, half}, e2[4] = {1, n, t, hd};
    MilSlice s1 = {.rank = 4, .begin = b1, .end = e1}, s2 = {.rank = 4, .begin = b2, .end = e2};
    MilValue *x1 = mil_add_slice_by_index(f, NULL, x, &s1);
    MilValue *x2 = mil_add_slice_by_index(f, NULL, x, &s2);
    MilValue *parts[2] = {mil_add_mul(f, NULL, x2, mil_const_fp16(f, NULL, -1.0f)), x1};
    MilValue *rot = mil_add_concat(f, NULL, 2, parts, -1, 0);
    return mil_add_add(f, NULL, mil_add_mul(f, NULL, x, g->cos[table]), mil_add_mul(f, NULL, rot, g->sin[table]));
}

/* Positions [p0, p1) of row `row` of a cache value: (1, nkv, p1 - p0, hd). */
static MilValue *cache_slice(FfnBuild *b, MilFunction *f, MilValue *kv, int row, int p0, int p1) {
    int32_t begin[4] = {row, 0, p0, 0}, end[4] = {row + 1, b->a->n_kv_heads, p1, b->a->head_dim};
    MilSlice s = {.rank = 4, .begin = begin, .end = end};
    return mil_add_slice_by_index(f, NULL, kv, &s);
}

/* Writes `val` (1, nkv, T, hd) into row `row` of cache `which` at positions [pos, pos+T). */
static void cache_write_at_pos(FfnBuild *b, FfnGraph *g, int which, MilValue *val, int row) {
    MilFunction *f = g->f;
    const Arch *a = b->a;
    MilValue *zero = g_i32(f, 0);
    MilValue *bv[4] = {g_i32(f, row), zero, g->pos, zero};
    MilValue *ev[4] = {g_i32(f, row + 1), g_i32(f, a->n_kv_heads), g->pos_end, g_i32(f, a->head_dim)};
    MilSlice s = {.rank = 4,
                  .begin_v = mil_add_concat(f, NULL, 4, bv, 0, 0),
                  .end_v = mil_add_concat(f, NULL, 4, ev, 0, 0)};
    MilValue *upd = mil_add_slice_update(f, NULL, g->kv[which], val, &s);
    g->kv[which] = mil_add_update_state(f, NULL, g->state[which], upd);
}

/* Rotate write of `val` (1, nkv, T, hd) into row `row` of the local cache (Wl slots): the row
 * becomes *kept = the last Wl of *all = slots ++ val (1, nkv, Wl+T, hd). */
static void cache_write_rotate(FfnBuild *b, FfnGraph *g, MilValue *val, int row, MilValue **all, MilValue **kept) {
    MilFunction *f = g->f;
    const Arch *a = b->a;
    int wl = b->c->local_length, t = g->tokens;
    MilValue *parts[2] = {cache_slice(b, f, g->kv[CACHE_LOCAL], row, 0, wl), val};
    *all = mil_add_concat(f, NULL, 2, parts, 2, 0);
    *kept = cache_slice(b, f, *all, 0, t, wl + t);
    int32_t begin[4] = {row, 0, 0, 0}, end[4] = {row + 1, a->n_kv_heads, wl, a->head_dim};
    MilSlice s = {.rank = 4, .begin = begin, .end = end};
    MilValue *upd = mil_add_slice_update(f, NULL, g->kv[CACHE_LOCAL], *kept, &s);
    g->kv[CACHE_LOCAL] = mil_add_update_state(f, NULL, g->state[CACHE_LOCAL], upd);
}

/* (1, nkv, S, hd) -> (1, nh, S, hd): kv head h serves query heads h*r .. h*r+r-1 (GQA). */
static MilValue *expand_heads(FfnBuild *b, MilFunction *f, MilValue *x) {
    const Arch *a = b->a;
    int nkv = a->n_kv_heads, rep = a->n_heads / a->n_kv_heads, hd = a->head_dim;
    if (rep == 1) return x;
    int s = (int)x->type.dims[2];
    int32_t split[4] = {nkv, 1, s, hd}, reps[4] = {1, rep, 1, 1}, merged[4] = {1, nkv * rep, s, hd};
    x = mil_add_tile(f, NULL, mil_add_reshape(f, NULL, x, 4, split), 4, reps);
    return mil_add_reshape(f, NULL, x, 4, merged);
}

/* Writes k and v of the layer into its cache rows; *keys / *vals: what the queries attend
 * over (1, nkv, S, hd), *mask: its additive mask (NULL: none). */
static void update_cache(FfnBuild *b, FfnGraph *g, int layer, MilValue *k, MilValue *v, MilValue **keys,
                         MilValue **vals, MilValue **mask) {
    int local, rank, n_type;
    plan_cache_rows(b->a, layer, &local, &rank, &n_type);
    MilFunction *f = g->f;
    if (!local) {
        cache_write_at_pos(b, g, CACHE_GLOBAL, k, rank);
        cache_write_at_pos(b, g, CACHE_GLOBAL, v, rank + n_type);
        int ctx = (int)b->c->context;
        *keys = cache_slice(b, f, g->kv[CACHE_GLOBAL], rank, 0, ctx);
        *vals = cache_slice(b, f, g->kv[CACHE_GLOBAL], rank + n_type, 0, ctx);
        *mask = g->mask;
        return;
    }
    *mask = g->mask_local;
    if (plan_ffn_is_rotate(g->kind)) {
        /* prefill_rotate: the old slots and the batch under the band mask; infer_rotate: the
         * rows as written (positions pos-Wl+1..pos) */
        MilValue *ka, *kk, *va, *vk;
        cache_write_rotate(b, g, k, rank, &ka, &kk);
        cache_write_rotate(b, g, v, rank + n_type, &va, &vk);
        *keys = g->kind == FFN_PREFILL_ROTATE ? ka : kk;
        *vals = g->kind == FFN_PREFILL_ROTATE ? va : vk;
        return;
    }
    cache_write_at_pos(b, g, CACHE_LOCAL, k, rank);
    cache_write_at_pos(b, g, CACHE_LOCAL, v, rank + n_type);
    *keys = cache_slice(b, f, g->kv[CACHE_LOCAL], rank, 0, b->c->local_length);
    *vals = cache_slice(b, f, g->kv[CACHE_LOCAL], rank + n_type, 0, b->c->local_length);
}

static void build_attention(FfnBuild *b, FfnGraph *g, int layer, const LayerValues *w) {
    MilFunction *f = g->f;
    const Arch *a = b->a;
    int nh = a->n_heads, nkv = a->n_kv_heads, hd = a->head_dim, t = g->tokens;
    int table = b->split && arch_is_sliding(a, layer) ? CACHE_LOCAL : CACHE_GLOBAL;
    float eps = a->rms_eps;
    MilValue *h = g_rmsnorm(f, g->x, 1, w->attn_norm, eps);
    MilValue *q = to_heads(f, g_conv(f, h, w->q, w->qb), nh, hd, t);
    MilValue *k = to_heads(f, g_conv(f, h, w->k, w->kb), nkv, hd, t);
    MilValue *v = to_heads(f, g_conv(f, h, w->v, w->vb), nkv, hd, t);
    if (a->qk_norm) {
        q = g_rmsnorm(f, q, 3, w->q_norm, eps);
        k = g_rmsnorm(f, k, 3, w->k_norm, eps);
    }
    q = rope(f, g, table, q, nh, hd);
    k = rope(f, g, table, k, nkv, hd);
    MilValue *keys, *vals, *mask;
    update_cache(b, g, layer, k, v, &keys, &vals, &mask);
    MilValue *s = mil_add_matmul(f, NULL, q, expand_heads(b, f, keys), 0, 1);   /* (1, nh, T, S) */
    s = mil_add_mul(f, NULL, s, mil_const_fp16(f, NULL, a->attn_scale));
    if (mask) s = mil_add_add(f, NULL, s, mask);
    MilValue *o = mil_add_matmul(f, NULL, mil_add_softmax(f, NULL, s, -1), expand_heads(b, f, vals), 0, 0);
    static const int32_t perm[4] = {0, 1, 3, 2};
    int32_t flat[4] = {1, nh * hd, 1, t};
    o = mil_add_reshape(f, NULL, mil_add_transpose(f, NULL, o, 4, perm), 4, flat);
    o = g_conv(f, o, w->o, w->ob);
    if (w->post_attn_norm) o = g_rmsnorm(f, o, 1, w->post_attn_norm, eps);
    g->x = mil_add_add(f, NULL, g->x, o);
}

static void build_mlp(FfnBuild *b, FfnGraph *g, const LayerValues *w) {
    MilFunction *f = g->f;
    float eps = b->a->rms_eps;
    MilValue *h = g_rmsnorm(f, g->x, 1, w->mlp_norm, eps);
    MilValue *gate = g_conv(f, h, w->gate, w->gb);
    gate = b->a->act == ACT_GELU_TANH ? mil_add_gelu(f, NULL, gate, "TANH_APPROXIMATION") : mil_add_silu(f, NULL, gate);
    MilValue *up = g_conv(f, h, w->up, w->ub);
    MilValue *o = g_conv(f, mil_add_mul(f, NULL, gate, up), w->down, w->db);
    if (w->post_mlp_norm) o = g_rmsnorm(f, o, 1, w->post_mlp_norm, eps);
    g->x = mil_add_add(f, NULL, g->x, o);
}

static void build_layer(FfnBuild *b, FfnGraph *g, int layer, const LayerValues *w) {
    build_attention(b, g, layer, w);
    if (g->keep_first && layer == b->a->n_layers - 1) {
        int32_t begin[4] = {0, 0, 0, 0}, end[4] = {1, b->a->hidden, 1, 1};
        MilSlice s = {.rank = 4, .begin = begin, .end = end};
        g->x = mil_add_slice_by_index(g->f, NULL, g->x, &s);
        g->tokens = 1;
    }
    build_mlp(b, g, w);
}

/* x + state[0, 0, 0, 0] * 0 for every state the chunk's layers do not read (see the top). */
static MilValue *keep_states_alive(FfnBuild *b, FfnGraph *g, MilValue *x) {
    for (int c = 0; c < 2; c++) {
        if (!g->state[c] || b->uses[c]) continue;
        MilFunction *f = g->f;
        int32_t begin[4] = {0, 0, 0, 0}, end[4] = {1, 1, 1, 1};
        MilSlice s = {.rank = 4, .begin = begin, .end = end};
        MilValue *one = mil_add_slice_by_index(f, NULL, mil_add_read_state(f, NULL, g->state[c]), &s);
        x = mil_add_add(f, NULL, x, mil_add_mul(f, NULL, one, mil_const_fp16(f, NULL, 0.0f)));
    }
    return x;
}

/* ==== the chunk ==== */

static void set_metadata(FfnBuild *b, PartMeta *m, PlanFfnKind kind) {
    static const char *desc[PLAN_FFN_FUNCTIONS] = {
        "Anemll Model (FFN) converted to CoreML", "Anemll Model (Prefill) converted to CoreML",
        "Anemll Model Part 2_rotate converted to CoreML", "Anemll Model Part 2_prefill_rotate converted to CoreML"};
    part_meta_init(m, desc[kind], b->src->info);
    part_meta_set(m, "com.anemll.context_length", "%ld", b->c->context);
    part_meta_set(m, "com.anemll.num_chunks", "%d", b->c->n_chunks);
    part_meta_set(m, "com.anemll.chunk_no", "%d", b->chunk + 1);
    if (plan_ffn_is_prefill(kind)) part_meta_set(m, "com.anemll.batch_size", "%ld", b->c->batch);
    if (b->lut->bits) part_meta_set(m, "com.anemll.lut_bits", "%d", b->lut->bits);
}

static int build_chunk(FfnBuild *b, Err *e) {
    if (local_masks(b, e) < 0 || rope_tables(b, e) < 0) return -1;
    for (int i = 0; i < b->n; i++)
        for (int c = 0; c < 2; c++)
            if (b->uses[c]) b->g[i].kv[c] = mil_add_read_state(b->g[i].f, NULL, b->g[i].state[c]);
    LayerValues lv[PARTS_MAX_TARGETS];
    for (int layer = b->first; layer < b->first + b->count; layer++) {
        if (load_layer(b, layer, lv, e) < 0) return -1;
        for (int i = 0; i < b->n; i++) build_layer(b, &b->g[i], layer, &lv[i]);
    }
    MilValue *fin[PARTS_MAX_TARGETS] = {0};
    if (b->last) {
        char t[160], v[160];
        int64_t chan[4] = {1, b->a->hidden, 1, 1};
        arch_tensor_name(b->a, "norm.weight", t, sizeof t);
        if (wl_gain(&b->wl, t, b->a->hidden, b->a->norm_plus_one ? 1 : 0, 1, 4, chan, parts_mil_name(t, v, sizeof v),
                    fin, e) < 0)
            return -1;
    }
    for (int i = 0; i < b->n; i++) {
        FfnGraph *g = &b->g[i];
        MilValue *x = b->last ? g_rmsnorm(g->f, g->x, 1, fin[i], b->a->rms_eps) : g->x;
        x = keep_states_alive(b, g, x);
        MilValue *out = g_from_conv(g->f, x, "output_hidden_states");
        mil_set_outputs(g->f, 1, &out);
        if (mil_error(b->prog[i], e) < 0) return -1;
    }
    return 0;
}

/* The chunk's layer types and tables. */
static void plan_build(FfnBuild *b) {
    plan_chunk_layers(b->a->n_layers, b->c->n_chunks, b->chunk, &b->first, &b->count);
    b->last = b->first + b->count == b->a->n_layers;
    b->split = plan_split_cache(b->a);
    for (int l = b->first; l < b->first + b->count; l++) b->uses[b->split && arch_is_sliding(b->a, l)] = 1;
    plan_chunk_rope_tables(b->a, b->first, b->count, &b->tables[CACHE_GLOBAL], &b->tables[CACHE_LOCAL]);
}

int part_write_ffn(const PartSource *src, const PartCommon *c, const LutSpec *lut, int chunk,
                   const char *const paths[PLAN_FFN_FUNCTIONS], PartReport r[PLAN_FFN_FUNCTIONS], Err *e) {
    PkgWriter *none[PLAN_FFN_FUNCTIONS] = {0};
    return part_write_ffn_mirrored(src, c, lut, chunk, paths, none, r, e);
}

int part_write_ffn_mirrored(const PartSource *src, const PartCommon *c, const LutSpec *lut, int chunk,
                            const char *const paths[PLAN_FFN_FUNCTIONS], PkgWriter *const mirrors[PLAN_FFN_FUNCTIONS],
                            PartReport r[PLAN_FFN_FUNCTIONS], Err *e) {
    FfnBuild b = {.src = src, .a = src->arch, .c = c, .lut = lut, .chunk = chunk};
    plan_build(&b);
    b.wl.src = src;
    PlanFfnKind kind_of[PLAN_FFN_FUNCTIONS];
    int rc = 0;
    for (int k = 0; k < PLAN_FFN_FUNCTIONS; k++) {
        if (!paths[k]) continue;
        memset(&r[k], 0, sizeof r[k]);
        if (plan_ffn_is_rotate((PlanFfnKind)k) && !plan_has_rotate(b.a, c->context)) {
            if (rc == 0)
                rc = err_set(e, "%s: rotate functions exist only for Gemma 3 with a context beyond the sliding window",
                             paths[k]);
            continue;
        }
        int i = b.n++;
        kind_of[i] = (PlanFfnKind)k;
        b.prog[i] = mil_program_new();
        if (rc == 0 && pkg_writer_open(&b.w[i], paths[k], e) < 0) rc = -1;
        if (rc == 0 && mirrors[k] && pkg_writer_mirror(b.w[i], mirrors[k], e) < 0) rc = -1;
        if (b.w[i]) pkg_writer_attach(b.w[i], b.prog[i]);
        FfnGraph *g = &b.g[i];
        g->f = mil_function_new(b.prog[i], "main", NULL);
        g->kind = (PlanFfnKind)k;
        g->tokens = plan_ffn_is_prefill(g->kind) ? (int)c->batch : 1;
        g->keep_first = plan_ffn_is_prefill(g->kind) && b.last;
        b.wl.t[i] = (WeightTarget){b.w[i], g->f, &r[k]};
    }
    b.wl.n = b.n;
    for (int i = 0; i < b.n && rc == 0; i++) declare_inputs(&b, &b.g[i]);
    if (rc == 0) rc = build_chunk(&b, e);
    for (int i = 0; i < b.n; i++) {
        int k = kind_of[i];
        if (!b.w[i]) {
            mil_program_free(b.prog[i]);
            continue;
        }
        if (rc < 0) {
            pkg_writer_abort(b.w[i]);
        } else {
            PartMeta m;
            set_metadata(&b, &m, kind_of[i]);
            PkgWriteStats st;
            pkg_writer_stats(b.w[i], &st);
            r[k].blobs = st.blobs;
            memcpy(r[k].weights_digest, st.digest, sizeof st.digest);
            if (pkg_writer_finish(b.w[i], b.prog[i], &m.md, e) < 0) rc = -1;
            else part_report_finish(&r[k], paths[k]);
        }
        mil_program_free(b.prog[i]);
    }
    return rc;
}
