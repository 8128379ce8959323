/* ffn.c - one chunk of decoder layers: the `infer` (1 token) and `prefill` (batch tokens)
 * programs of docs/parts.md, written as {prefix}_FFN_... and {prefix}_prefill_... packages.
 *
 * Inside the graph the residual stream stays in the conv layout (1, H, 1, T) from the chunk's
 * input to its output: projections are 1x1 convs, RMSNorm is layer_norm over the channel axis
 * of [x, -x]. Per layer:
 *
 *   h = rmsnorm(x)                                   (1, H, 1, T)
 *   q, k, v = conv(h) -> heads                       (1, n, T, hd)   [+ q/k norm over hd]
 *   q, k = q*cos + rotate_half(q)*sin                cos/sin: table rows gathered by position
 *   kv = update_state(slice_update(kv, k, rows [i], positions [pos, pos+T)))     K of layer i
 *   kv = update_state(slice_update(kv, v, rows [L+i], ...))                        V of layer i
 *   K, V = kv[i], kv[L+i] over the first ctx positions, tiled to n_heads (GQA)
 *   a = softmax(q K^T * scale + mask) V -> (1, nh*hd, 1, T);  x += o_proj(a)
 *   x += down(silu(gate(rmsnorm(x))) * up(rmsnorm(x)))
 *
 * The last chunk ends with the final norm; its prefill keeps only the first token after the
 * last layer's attention (every later op works token by token, and the host never reads it).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "common/util.h"
#include "parts/internal.h"

/* The per-function state of a program being built. */
typedef struct FfnGraph {
    MilFunction *f;
    int tokens;               /* T */
    int keep_first;           /* last chunk's prefill: keep token 0 after the last attention */
    MilValue *x;              /* residual (1, H, 1, T) */
    MilValue *rope_idx;       /* positions of the T tokens: position_ids or current_pos */
    MilValue *cos, *sin;      /* (1, 1, T, hd) */
    MilValue *mask;           /* (1, 1, T, ctx) */
    MilValue *pos, *pos_end;  /* current_pos (1,), current_pos + T */
    MilValue *state;          /* model_model_kv_cache_0 */
    MilValue *kv;             /* the cache as last written */
} FfnGraph;

/* One layer's weights as values of one function. */
typedef struct LayerValues {
    MilValue *attn_norm, *q, *k, *v, *qb, *kb, *vb, *q_norm, *k_norm, *o, *ob;
    MilValue *mlp_norm, *gate, *up, *down, *gb, *ub, *db;
} LayerValues;

typedef struct FfnBuild {
    const PartSource *src;
    const Arch *a;
    const PartCommon *c;
    const LutSpec *lut;
    int chunk, first, count, last;
    int n;                                /* programs being built: 1 or 2 */
    MilProgram *prog[PARTS_MAX_TARGETS];
    PkgWriter *w[PARTS_MAX_TARGETS];
    FfnGraph g[PARTS_MAX_TARGETS];
    WeightLoader wl;
} FfnBuild;

/* ==== inputs, RoPE tables ==== */

static void declare_inputs(FfnBuild *b, FfnGraph *g, int prefill) {
    const Arch *a = b->a;
    int64_t t = g->tokens, ctx = b->c->context;
    MilFunction *f = g->f;
    int64_t hs[3] = {1, t, a->hidden}, mask[4] = {1, 1, t, ctx}, one = 1;
    int64_t st[4] = {2 * (int64_t)a->n_layers, a->n_kv_heads, b->c->state_length, a->head_dim};
    MilValue *x = mil_input(f, "hidden_states", MIL_FP16, 3, hs);
    MilValue *ids = mil_input(f, "position_ids", MIL_INT32, 1, prefill ? &t : &one);
    g->mask = mil_input(f, "causal_mask", MIL_FP16, 4, mask);
    g->pos = mil_input(f, "current_pos", MIL_INT32, 1, &one);
    g->state = mil_state(f, "model_model_kv_cache_0", MIL_FP16, 4, st);
    g->x = g_to_conv(f, x);
    g->pos_end = mil_add_add(f, NULL, g->pos, g_i32(f, (int32_t)t));
    /* RoPE rows: prefill by position_ids, decode by current_pos (position_ids is kept for
     * the interface only); int16 indices as the ANE prefers */
    g->rope_idx = prefill ? ids : g->pos;
}

/* cos/sin tables (state_length, head_dim) fp16: HF's cos(p * inv_freq[i mod hd/2]) * scaling. */
static int rope_tables(FfnBuild *b, Err *e) {
    const Arch *a = b->a;
    int p = b->c->state_length, hd = a->head_dim, half = hd / 2;
    uint16_t *tc = xmalloc(sizeof *tc * (size_t)p * (size_t)hd);
    uint16_t *ts = xmalloc(sizeof *ts * (size_t)p * (size_t)hd);
    float *c = xmalloc(sizeof *c * (size_t)half), *s = xmalloc(sizeof *s * (size_t)half);
    int layer = b->first;   /* every llama/qwen layer has the same RoPE */
    for (int pos = 0; pos < p; pos++) {
        arch_rope_cos_sin(a, layer, pos, c, s);
        for (int i = 0; i < hd; i++) {
            tc[(size_t)pos * hd + i] = f32_to_f16(c[i % half]);
            ts[(size_t)pos * hd + i] = f32_to_f16(s[i % half]);
        }
    }
    int64_t dims[2] = {p, hd};
    MilValue *vc[PARTS_MAX_TARGETS], *vs[PARTS_MAX_TARGETS];
    int rc = wl_fp16(&b->wl, tc, 2, dims, "rope_cos", vc, e);
    if (rc == 0) rc = wl_fp16(&b->wl, ts, 2, dims, "rope_sin", vs, e);
    for (int i = 0; i < b->n && rc == 0; i++) {
        FfnGraph *g = &b->g[i];
        MilFunction *f = g->f;
        MilValue *idx = mil_add_cast(f, NULL, g->rope_idx, MIL_INT16);
        int32_t shape[4] = {1, 1, g->tokens, hd};
        g->cos = mil_add_reshape(f, NULL, mil_add_gather(f, NULL, vc[i], idx, 0, 0), 4, shape);
        g->sin = mil_add_reshape(f, NULL, mil_add_gather(f, NULL, vs[i], idx, 0, 0), 4, shape);
    }
    free(tc);
    free(ts);
    free(c);
    free(s);
    return rc;
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

/* A norm gain of n values with shape dims. */
static int load_gain(FfnBuild *b, const char *tname, long n, int rank, const int64_t *dims, MilValue **v, Err *e) {
    char vname[160];
    return wl_vector(&b->wl, tname, n, rank, dims, parts_mil_name(tname, vname, sizeof vname), v, e);
}

/* Loads layer `layer` into lv[i] for every program, in the order plan.c counts the blobs. */
static int load_layer(FfnBuild *b, int layer, LayerValues *lv, Err *e) {
    const Arch *a = b->a;
    long h = a->hidden, q = arch_q_dim(a), kv = arch_kv_dim(a), in = a->intermediate, hd = a->head_dim;
    int64_t chan[4] = {1, h, 1, 1}, head[1] = {hd};
    char t[160];
    MilValue *v[6][PARTS_MAX_TARGETS];
#define GET(field, k) for (int i = 0; i < b->n; i++) lv[i].field = v[k][i]
    if (load_gain(b, lname(a, layer, W_ATTN_NORM, t, sizeof t), h, 4, chan, v[0], e) < 0) return -1;
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
    for (int i = 0; i < b->n; i++) lv[i].q_norm = lv[i].k_norm = NULL;
    if (a->qk_norm) {
        if (load_gain(b, lname(a, layer, W_Q_NORM, t, sizeof t), hd, 1, head, v[0], e) < 0 ||
            load_gain(b, lname(a, layer, W_K_NORM, t, sizeof t), hd, 1, head, v[1], e) < 0)
            return -1;
        GET(q_norm, 0);
        GET(k_norm, 1);
    }
    if (load_proj(b, layer, W_O, W_O_BIAS, h, q, v[0], v[1], e) < 0) return -1;
    GET(o, 0);
    GET(ob, 1);
    if (load_gain(b, lname(a, layer, W_MLP_NORM, t, sizeof t), h, 4, chan, v[0], e) < 0) return -1;
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
static MilValue *rope(MilFunction *f, FfnGraph *g, MilValue *x, int n, int hd) {
    int t = g->tokens, half = hd / 2;
    int32_t b1[4] = {0, 0, 0, 0}, e1[4] = {1, n, t, half}, b2[4] = {0, 0, 0, half}, e2[4] = {1, n, t, hd};
    MilSlice s1 = {.rank = 4, .begin = b1, .end = e1}, s2 = {.rank = 4, .begin = b2, .end = e2};
    MilValue *x1 = mil_add_slice_by_index(f, NULL, x, &s1);
    MilValue *x2 = mil_add_slice_by_index(f, NULL, x, &s2);
    MilValue *parts[2] = {mil_add_mul(f, NULL, x2, mil_const_fp16(f, NULL, -1.0f)), x1};
    MilValue *rot = mil_add_concat(f, NULL, 2, parts, -1, 0);
    return mil_add_add(f, NULL, mil_add_mul(f, NULL, x, g->cos), mil_add_mul(f, NULL, rot, g->sin));
}

/* Writes `val` (1, nkv, T, hd) into cache row `row` at positions [pos, pos+T). */
static void cache_write(FfnBuild *b, FfnGraph *g, MilValue *val, int row) {
    MilFunction *f = g->f;
    const Arch *a = b->a;
    MilValue *zero = g_i32(f, 0);
    MilValue *bv[4] = {g_i32(f, row), zero, g->pos, zero};
    MilValue *ev[4] = {g_i32(f, row + 1), g_i32(f, a->n_kv_heads), g->pos_end, g_i32(f, a->head_dim)};
    MilSlice s = {.rank = 4,
                  .begin_v = mil_add_concat(f, NULL, 4, bv, 0, 0),
                  .end_v = mil_add_concat(f, NULL, 4, ev, 0, 0)};
    MilValue *upd = mil_add_slice_update(f, NULL, g->kv, val, &s);
    g->kv = mil_add_update_state(f, NULL, g->state, upd);
}

/* Cache row `row` over the first ctx positions, repeated for GQA: (1, nh, ctx, hd). */
static MilValue *cache_read(FfnBuild *b, FfnGraph *g, int row) {
    MilFunction *f = g->f;
    const Arch *a = b->a;
    int nkv = a->n_kv_heads, rep = a->n_heads / a->n_kv_heads, hd = a->head_dim, ctx = (int)b->c->context;
    int32_t begin[4] = {row, 0, 0, 0}, end[4] = {row + 1, nkv, ctx, hd};
    MilSlice s = {.rank = 4, .begin = begin, .end = end};
    MilValue *x = mil_add_slice_by_index(f, NULL, g->kv, &s);
    if (rep == 1) return x;
    int32_t split[4] = {nkv, 1, ctx, hd}, reps[4] = {1, rep, 1, 1}, merged[4] = {1, nkv * rep, ctx, hd};
    x = mil_add_tile(f, NULL, mil_add_reshape(f, NULL, x, 4, split), 4, reps);
    return mil_add_reshape(f, NULL, x, 4, merged);
}

static void build_attention(FfnBuild *b, FfnGraph *g, int layer, const LayerValues *w) {
    MilFunction *f = g->f;
    const Arch *a = b->a;
    int nh = a->n_heads, nkv = a->n_kv_heads, hd = a->head_dim, t = g->tokens;
    float eps = a->rms_eps;
    MilValue *h = g_rmsnorm(f, g->x, 1, w->attn_norm, eps);
    MilValue *q = to_heads(f, g_conv(f, h, w->q, w->qb), nh, hd, t);
    MilValue *k = to_heads(f, g_conv(f, h, w->k, w->kb), nkv, hd, t);
    MilValue *v = to_heads(f, g_conv(f, h, w->v, w->vb), nkv, hd, t);
    if (a->qk_norm) {
        q = g_rmsnorm(f, q, 3, w->q_norm, eps);
        k = g_rmsnorm(f, k, 3, w->k_norm, eps);
    }
    q = rope(f, g, q, nh, hd);
    k = rope(f, g, k, nkv, hd);
    cache_write(b, g, k, layer);
    cache_write(b, g, v, a->n_layers + layer);
    MilValue *kk = cache_read(b, g, layer), *vv = cache_read(b, g, a->n_layers + layer);
    MilValue *s = mil_add_matmul(f, NULL, q, kk, 0, 1);                         /* (1, nh, T, ctx) */
    s = mil_add_add(f, NULL, mil_add_mul(f, NULL, s, mil_const_fp16(f, NULL, a->attn_scale)), g->mask);
    MilValue *o = mil_add_matmul(f, NULL, mil_add_softmax(f, NULL, s, -1), vv, 0, 0); /* (1, nh, T, hd) */
    static const int32_t perm[4] = {0, 1, 3, 2};
    int32_t flat[4] = {1, nh * hd, 1, t};
    o = mil_add_reshape(f, NULL, mil_add_transpose(f, NULL, o, 4, perm), 4, flat);
    g->x = mil_add_add(f, NULL, g->x, g_conv(f, o, w->o, w->ob));
}

static void build_mlp(FfnBuild *b, FfnGraph *g, const LayerValues *w) {
    MilFunction *f = g->f;
    MilValue *h = g_rmsnorm(f, g->x, 1, w->mlp_norm, b->a->rms_eps);
    MilValue *gate = mil_add_silu(f, NULL, g_conv(f, h, w->gate, w->gb));
    MilValue *up = g_conv(f, h, w->up, w->ub);
    g->x = mil_add_add(f, NULL, g->x, g_conv(f, mil_add_mul(f, NULL, gate, up), w->down, w->db));
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

/* ==== the chunk ==== */

static void set_metadata(FfnBuild *b, PartMeta *m, int prefill) {
    part_meta_init(m, prefill ? "Anemll Model (Prefill) converted to CoreML" : "Anemll Model (FFN) converted to CoreML",
                   b->src->info);
    part_meta_set(m, "com.anemll.context_length", "%ld", b->c->context);
    part_meta_set(m, "com.anemll.num_chunks", "%d", b->c->n_chunks);
    part_meta_set(m, "com.anemll.chunk_no", "%d", b->chunk + 1);
    if (prefill) part_meta_set(m, "com.anemll.batch_size", "%ld", b->c->batch);
    if (b->lut->bits) part_meta_set(m, "com.anemll.lut_bits", "%d", b->lut->bits);
}

static int build_chunk(FfnBuild *b, Err *e) {
    if (rope_tables(b, e) < 0) return -1;
    for (int i = 0; i < b->n; i++) b->g[i].kv = mil_add_read_state(b->g[i].f, NULL, b->g[i].state);
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
        if (wl_vector(&b->wl, t, b->a->hidden, 4, chan, parts_mil_name(t, v, sizeof v), fin, e) < 0) return -1;
    }
    for (int i = 0; i < b->n; i++) {
        FfnGraph *g = &b->g[i];
        MilValue *x = b->last ? g_rmsnorm(g->f, g->x, 1, fin[i], b->a->rms_eps) : g->x;
        MilValue *out = g_from_conv(g->f, x, "output_hidden_states");
        mil_set_outputs(g->f, 1, &out);
        if (mil_error(b->prog[i], e) < 0) return -1;
    }
    return 0;
}

int part_write_ffn(const PartSource *src, const PartCommon *c, const LutSpec *lut, int chunk, const char *infer_path,
                   const char *prefill_path, PartReport r[2], Err *e) {
    FfnBuild b = {.src = src, .a = src->arch, .c = c, .lut = lut, .chunk = chunk};
    plan_chunk_layers(b.a->n_layers, c->n_chunks, chunk, &b.first, &b.count);
    b.last = b.first + b.count == b.a->n_layers;
    b.wl.src = src;
    const char *paths[2] = {infer_path, prefill_path};
    int prefill_of[2];
    int rc = 0;
    for (int k = 0; k < 2; k++) {
        if (!paths[k]) continue;
        int i = b.n++;
        prefill_of[i] = k;
        memset(&r[k], 0, sizeof r[k]);
        b.prog[i] = mil_program_new();
        if (rc == 0 && pkg_writer_open(&b.w[i], paths[k], e) < 0) rc = -1;
        if (b.w[i]) pkg_writer_attach(b.w[i], b.prog[i]);
        b.g[i].f = mil_function_new(b.prog[i], "main", NULL);
        b.g[i].tokens = k ? (int)c->batch : 1;
        b.g[i].keep_first = k && b.last;
        b.wl.t[i] = (WeightTarget){b.w[i], b.g[i].f, &r[k]};
    }
    b.wl.n = b.n;
    for (int i = 0; i < b.n && rc == 0; i++) declare_inputs(&b, &b.g[i], prefill_of[i]);
    if (rc == 0) rc = build_chunk(&b, e);
    for (int i = 0; i < b.n; i++) {
        int k = prefill_of[i];
        if (!b.w[i]) {
            mil_program_free(b.prog[i]);
            continue;
        }
        if (rc < 0) {
            pkg_writer_abort(b.w[i]);
        } else {
            PartMeta m;
            set_metadata(&b, &m, k);
            PkgWriteStats st;
            pkg_writer_stats(b.w[i], &st);
            r[k].blobs = st.blobs;
            if (pkg_writer_finish(b.w[i], b.prog[i], &m.md, e) < 0) rc = -1;
            else part_report_finish(&r[k], paths[k]);
        }
        mil_program_free(b.prog[i]);
    }
    return rc;
}
