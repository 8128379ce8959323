/* reference.c - HF-exact reference forward pass (contract in reference.h).
 *
 * Sections: weights, helpers (matmul, norm, rope, activations, fp16/bf16 rounding and statistics),
 * attention, the block, the forward pass, statistics and top-k.
 */
#include "model/reference.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/half.h"
#include "common/util.h"
#include "io/checkpoint.h"

/* ==== weights ============================================================= */

typedef struct Layer {
    float *w[W_LAYER_COUNT];    /* indexed by ArchWeight; NULL where the architecture has none.
                                   Matrices are row-major [out][in], e.g. w[W_Q] (q_dim, hidden). */
    float *k_cache, *v_cache;   /* (cache_cap, kv_dim): rotated keys and values by position */
} Layer;

struct RefModel {
    Arch arch;
    RefOptions opt;
    float *embed;               /* (vocab, hidden) */
    float *final_norm;          /* (hidden) */
    float *lm_head;             /* (vocab, hidden); == embed when tied */
    Layer *layers;              /* [n_layers] */
    int n_cached;               /* positions held in the KV caches */
    int cache_cap;              /* rows allocated in each cache */
    RefStats *stats;
};

const Arch *ref_arch(const RefModel *m) { return &m->arch; }
void ref_reset(RefModel *m) { m->n_cached = 0; }
int ref_n_cached(const RefModel *m) { return m->n_cached; }
void ref_set_stats(RefModel *m, RefStats *stats) { m->stats = stats; }
void ref_set_residual_clamp(RefModel *m, float clamp) { m->opt.residual_clamp = clamp; }

/* A value rounded to the model's number format. */
static inline float round_to(RefPrecision p, float v) {
    if (p == REF_FP16) return round_f16(v);
    if (p == REF_BF16) return bf16_to_f32(f32_to_bf16(v));
    return v;
}

static int scaling_on(const RefOptions *o) { return o->fp16_scale > 0 && o->fp16_scale != 1; }

static void format_shape(char *buf, size_t n, int ndim, const int64_t *s64, const long *sl) {
    if (ndim == 1) snprintf(buf, n, "[%lld]", s64 ? (long long)s64[0] : (long long)sl[0]);
    else if (ndim == 2)
        snprintf(buf, n, "[%lld, %lld]", s64 ? (long long)s64[0] : (long long)sl[0],
                 s64 ? (long long)s64[1] : (long long)sl[1]);
    else snprintf(buf, n, "(%d dims)", ndim);
}

/* Weight buffers of several MB ask for transparent huge pages: a 1B model's 5 GB of fp32
 * weights is a million 4 KB page faults otherwise, which dominated loading (26 s on the
 * development VM) and costs TLB misses in every matmul. */
static float *alloc_weights(size_t n) {
    size_t bytes = sizeof(float) * (n ? n : 1), huge = (size_t)2 << 20;
    if (bytes < 2 * huge) return xmalloc(bytes);
    void *p = NULL;
    if (posix_memalign(&p, huge, (bytes + huge - 1) / huge * huge) != 0) return xmalloc(bytes);
#ifdef MADV_HUGEPAGE /* Linux only; elsewhere the pages stay small */
    madvise(p, (bytes + huge - 1) / huge * huge, MADV_HUGEPAGE);
#endif
    return p;
}

/* How a tensor is changed as it loads: Gemma 3 residual scaling (fp16_scale.h). */
typedef enum LoadScale { SCALE_NONE, SCALE_EMBEDDINGS, SCALE_NORM_GAIN } LoadScale;

/* Reads one tensor as fp32 after checking its shape against what config.json implies, scales it
 * and rounds it to the weight format (prec). */
static float *load_tensor(const Checkpoint *ck, const ArchTensor *want, RefPrecision prec, LoadScale scale,
                          float alpha, Err *e) {
    const StTensor *t = ckpt_require(ck, want->name, e);
    if (!t) return NULL;
    int ok = t->ndim == want->ndim;
    for (int d = 0; ok && d < want->ndim; d++) ok = t->shape[d] == want->shape[d];
    if (!ok) {
        char have[64], need[64];
        format_shape(have, sizeof have, t->ndim, t->shape, NULL);
        format_shape(need, sizeof need, want->ndim, NULL, want->shape);
        err_set(e, "%s: tensor '%s' has shape %s but config.json implies %s", ck->dir, want->name, have, need);
        return NULL;
    }
    float *buf = alloc_weights(t->numel);
    if (st_read_f32(t, buf, e) < 0) {
        free(buf);
        return NULL;
    }
    if (scale == SCALE_EMBEDDINGS) fp16_scale_embeddings(buf, t->numel, alpha);
    else if (scale == SCALE_NORM_GAIN) fp16_scale_norm_gain(buf, t->numel, alpha);
    if (prec != REF_FP32) /* a float16 (bfloat16) model holds its weights as fp16 (bf16) */
        for (size_t i = 0; i < t->numel; i++) buf[i] = round_to(prec, buf[i]);
    return buf;
}

static int load_weights(RefModel *m, const Checkpoint *ck, Err *e) {
    const Arch *a = &m->arch;
    ArchTensor *list;
    int n;
    arch_tensor_list(a, &list, &n);
    RefPrecision prec = m->opt.weights_fp16 ? REF_FP16 : m->opt.precision;
    int scaled = scaling_on(&m->opt);
    float alpha = m->opt.fp16_scale;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        LoadScale how = SCALE_NONE;
        if (scaled && i == 0) how = SCALE_EMBEDDINGS; /* list[0] is embed_tokens */
        else if (scaled && list[i].layer >= 0 && fp16_scale_changes_layer_weight(list[i].weight)) how = SCALE_NORM_GAIN;
        float *w = load_tensor(ck, &list[i], prec, how, alpha, e);
        if (!w) {
            rc = -1;
            break;
        }
        if (list[i].layer >= 0) m->layers[list[i].layer].w[list[i].weight] = w;
        else if (i == 0) m->embed = w;
        else if (!strcmp(list[i].name, a->lm_head_name)) m->lm_head = w;
        else m->final_norm = w;
    }
    if (rc == 0 && a->tied) {
        /* the LM head keeps the unscaled table: scaling must not change the logits */
        m->lm_head = scaled ? load_tensor(ck, &list[0], prec, SCALE_NONE, 0, e) : m->embed;
        if (!m->lm_head) rc = -1;
    }
    arch_free_tensor_list(list);
    return rc;
}

int ref_load(RefModel **out, const char *model_dir, const RefOptions *opt, Err *e) {
    *out = NULL;
    RefModel *m = xcalloc(1, sizeof *m);
    if (opt) m->opt = *opt;
    if (arch_load(&m->arch, model_dir, e) < 0) {
        free(m);
        return -1;
    }
    if (scaling_on(&m->opt) && fp16_scale_check(&m->arch, m->opt.fp16_scale, e) < 0) {
        arch_free(&m->arch);
        free(m);
        return -1;
    }
    m->layers = xcalloc((size_t)m->arch.n_layers, sizeof *m->layers);
    Checkpoint *ck;
    if (ckpt_open(&ck, model_dir, e) < 0) {
        ref_free(m);
        return -1;
    }
    int rc = load_weights(m, ck, e);
    ckpt_close(ck);
    if (rc < 0) {
        ref_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void ref_free(RefModel *m) {
    if (!m) return;
    for (int l = 0; m->layers && l < m->arch.n_layers; l++) {
        for (int w = 0; w < W_LAYER_COUNT; w++) free(m->layers[l].w[w]);
        free(m->layers[l].k_cache);
        free(m->layers[l].v_cache);
    }
    free(m->layers);
    if (m->lm_head != m->embed) free(m->lm_head);
    free(m->embed);
    free(m->final_norm);
    arch_free(&m->arch);
    free(m);
}

/* ==== helpers ============================================================= */

/* Where a value came from, for statistics: layer (-1 = model level) and a label. */
typedef struct Site {
    int layer;
    const char *what;
} Site;

static void site_name(Site s, char *buf, size_t n) {
    if (s.layer < 0) snprintf(buf, n, "%s", s.what);
    else snprintf(buf, n, "layer %d %s", s.layer, s.what);
}

/* Adds `over` values beyond the fp16 range to the site's count (a new entry on its first overflow). */
static void count_overflow_site(RefStats *st, Site site, long over) {
    char name[96];
    site_name(site, name, sizeof name);
    for (int i = 0; i < st->n_overflow_sites; i++)
        if (!strcmp(st->overflow_sites[i].name, name)) {
            st->overflow_sites[i].count += over;
            return;
        }
    if (st->n_overflow_sites == st->cap_overflow_sites) {
        st->cap_overflow_sites = st->cap_overflow_sites ? 2 * st->cap_overflow_sites : 16;
        st->overflow_sites = xrealloc(st->overflow_sites, sizeof *st->overflow_sites * (size_t)st->cap_overflow_sites);
    }
    RefSiteCount *s = &st->overflow_sites[st->n_overflow_sites++];
    memcpy(s->name, name, sizeof name);
    s->count = over;
}

/* Rounds an op's output to the model's format (REF_FP16 / REF_BF16) and records overflow statistics;
 * returns max |x| (inf if any value is not finite). */
static float finish_op(RefModel *m, float *x, size_t n, Site site) {
    RefPrecision p = m->opt.precision;
    if (p != REF_FP32)
        for (size_t i = 0; i < n; i++) x[i] = round_to(p, x[i]);
    RefStats *st = m->stats;
    if (!st) return 0;
    float peak = 0;
    long over = 0;
    int nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        float v = fabsf(x[i]);
        if (!(v <= FP16_MAX)) over++;
        if (!isfinite(v)) {
            nonfinite = 1;
            peak = INFINITY;
        } else if (v > peak) {
            peak = v;
        }
    }
    if (over) count_overflow_site(st, site, over);
    if (over && !st->first_overflow[0]) site_name(site, st->first_overflow, sizeof st->first_overflow);
    if (nonfinite && !st->first_nonfinite[0]) site_name(site, st->first_nonfinite, sizeof st->first_nonfinite);
    if (site.layer >= 0) st->layers[site.layer].n_overflow += over;
    return peak;
}

/* y[T][out] = x[T][in] . W[out][in]^T (+ bias[out]) */
static void linear(float *y, const float *x, int T, const float *W, const float *bias, int out, int in) {
    if (T == 1) cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, W, in, x, 1, 0.0f, y, 1);
    else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
    if (bias)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < out; i++) y[(size_t)t * out + i] += bias[i];
}

/* RMSNorm over each row of n values. Llama/Qwen: w * (x / rms), the normalised value cast to
 * the model dtype before the gain; Gemma: x / rms * (1 + w) all in float32, cast once. */
static float rmsnorm(RefModel *m, float *out, const float *x, const float *w, int rows, int n, Site site) {
    const Arch *a = &m->arch;
    RefPrecision p = m->opt.precision;
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *o = out + (size_t)r * n;
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float inv = 1.0f / sqrtf((float)(ss / n) + a->rms_eps);
        for (int i = 0; i < n; i++) {
            float v = xr[i] * inv;
            if (a->norm_plus_one) {
                o[i] = v * (1.0f + w[i]);
            } else {
                v = round_to(p, v);
                o[i] = w[i] * v;
            }
        }
    }
    return finish_op(m, out, (size_t)rows * n, site);
}

/* Rotates each head of x (T rows of n_heads * head_dim) by its position's angles. */
static void apply_rope(RefModel *m, int layer, float *x, int T, int n_heads, int pos0, Site site) {
    const Arch *a = &m->arch;
    int hd = a->head_dim, half = hd / 2;
    RefPrecision p = m->opt.precision;
    float *cs = xmalloc(sizeof *cs * (size_t)hd), *sn = cs + half;
    for (int t = 0; t < T; t++) {
        arch_rope_cos_sin(a, layer, pos0 + t, cs, sn);
        for (int i = 0; i < hd; i++) cs[i] = round_to(p, cs[i]);
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)t * n_heads * hd + (size_t)h * hd;
            for (int i = 0; i < half; i++) {
                float x1 = v[i], x2 = v[i + half];
                float a1 = x1 * cs[i], b1 = -x2 * sn[i], a2 = x2 * cs[i], b2 = x1 * sn[i];
                a1 = round_to(p, a1), b1 = round_to(p, b1), a2 = round_to(p, a2), b2 = round_to(p, b2);
                v[i] = a1 + b1;
                v[i + half] = a2 + b2;
            }
        }
    }
    free(cs);
    finish_op(m, x, (size_t)T * n_heads * hd, site);
}

static float activation(Activation act, float x) {
    if (act == ACT_SILU) return x / (1.0f + expf(-x));
    const float beta = (float)(M_SQRT2 * M_2_SQRTPI * 0.5), kappa = 0.044715f;
    return 0.5f * x * (1.0f + tanhf(beta * (x + kappa * x * x * x)));
}

/* ==== attention =========================================================== */

static int grow_cache(RefModel *m, int need) {
    if (need <= m->cache_cap) return 0;
    int cap = m->cache_cap ? m->cache_cap : 64;
    while (cap < need) cap *= 2;
    size_t kv = (size_t)arch_kv_dim(&m->arch);
    for (int l = 0; l < m->arch.n_layers; l++) {
        m->layers[l].k_cache = xrealloc(m->layers[l].k_cache, sizeof(float) * kv * (size_t)cap);
        m->layers[l].v_cache = xrealloc(m->layers[l].v_cache, sizeof(float) * kv * (size_t)cap);
    }
    m->cache_cap = cap;
    return 0;
}

/* Eager attention for T queries at positions pos0..pos0+T-1 over cached keys 0..pos:
 * scores = q.k * scale (optionally soft-capped), causal mask, and for sliding layers only the
 * last `sliding_window` positions (keys p-W+1..p, as transformers' sliding-window mask);
 * softmax in float32; out = sum p_s v_s. q: (T, n_heads*hd), out: (T, n_heads*hd). */
static void attention(RefModel *m, int layer, const float *q, float *out, int T, int pos0) {
    const Arch *a = &m->arch;
    const Layer *L = &m->layers[layer];
    int hd = a->head_dim, kv_dim = arch_kv_dim(a), group = a->n_heads / a->n_kv_heads;
    RefPrecision prec = m->opt.precision;
    int window = arch_is_sliding(a, layer) ? a->sliding_window : 0;
    float *scores = xmalloc(sizeof *scores * (size_t)(pos0 + T));
    for (int t = 0; t < T; t++) {
        int p = pos0 + t, lo = (window && p - window + 1 > 0) ? p - window + 1 : 0;
        for (int h = 0; h < a->n_heads; h++) {
            const float *qh = q + (size_t)t * a->n_heads * hd + (size_t)h * hd;
            size_t kv_off = (size_t)(h / group) * hd;
            float mx = -INFINITY;
            for (int s = lo; s <= p; s++) {
                const float *k = L->k_cache + (size_t)s * kv_dim + kv_off;
                float dot = 0;
                for (int i = 0; i < hd; i++) dot += qh[i] * k[i];
                dot = round_to(prec, dot);
                float sc = round_to(prec, dot * a->attn_scale);
                if (a->attn_logit_softcap > 0) sc = tanhf(sc / a->attn_logit_softcap) * a->attn_logit_softcap;
                scores[s] = sc;
                if (sc > mx) mx = sc;
            }
            float sum = 0;
            for (int s = lo; s <= p; s++) {
                scores[s] = expf(scores[s] - mx);
                sum += scores[s];
            }
            float *o = out + (size_t)t * a->n_heads * hd + (size_t)h * hd;
            memset(o, 0, sizeof *o * (size_t)hd);
            for (int s = lo; s <= p; s++) {
                float w = scores[s] / sum;
                w = round_to(prec, w);
                const float *v = L->v_cache + (size_t)s * kv_dim + kv_off;
                for (int i = 0; i < hd; i++) o[i] += w * v[i];
            }
        }
    }
    free(scores);
}

/* Per-head RMSNorm of q or k (rows of n_heads * head_dim). */
static void head_norm(RefModel *m, float *x, int T, int n_heads, const float *w, Site site) {
    int hd = m->arch.head_dim;
    float *tmp = xmalloc(sizeof *tmp * (size_t)T * n_heads * hd);
    rmsnorm(m, tmp, x, w, T * n_heads, hd, site);
    memcpy(x, tmp, sizeof *tmp * (size_t)T * n_heads * hd);
    free(tmp);
}

/* ==== the block =========================================================== */

typedef struct Scratch {
    float *xb;      /* (T, hidden) normed input */
    float *q;       /* (T, q_dim) */
    float *k, *v;   /* (T, kv_dim) */
    float *att;     /* (T, q_dim) attention output before o_proj */
    float *branch;  /* (T, hidden) branch output */
    float *gate;    /* (T, intermediate) */
    float *up;      /* (T, intermediate) */
} Scratch;

static void residual_add(RefModel *m, float *x, const float *branch, size_t n, Site site, float *peak) {
    RefPrecision p = m->opt.precision;
    for (size_t i = 0; i < n; i++) x[i] = round_to(p, x[i] + branch[i]);
    float clamp = m->opt.residual_clamp;
    if (clamp > 0) {
        long clamped = 0;
        for (size_t i = 0; i < n; i++) {
            if (!(fabsf(x[i]) > clamp)) continue; /* NaN passes through */
            x[i] = x[i] > 0 ? clamp : -clamp;
            clamped++;
        }
        if (m->stats) m->stats->n_clamped += clamped;
    }
    float now = finish_op(m, x, n, site);
    if (peak && now > *peak) *peak = now;
}

static void attention_block(RefModel *m, int l, float *x, int T, int pos0, Scratch *s) {
    const Arch *a = &m->arch;
    Layer *L = &m->layers[l];
    int H = a->hidden, Q = arch_q_dim(a), KV = arch_kv_dim(a);
    rmsnorm(m, s->xb, x, L->w[W_ATTN_NORM], T, H, (Site){l, "input_layernorm"});
    linear(s->q, s->xb, T, L->w[W_Q], L->w[W_Q_BIAS], Q, H);
    finish_op(m, s->q, (size_t)T * Q, (Site){l, "self_attn.q_proj"});
    linear(s->k, s->xb, T, L->w[W_K], L->w[W_K_BIAS], KV, H);
    finish_op(m, s->k, (size_t)T * KV, (Site){l, "self_attn.k_proj"});
    linear(s->v, s->xb, T, L->w[W_V], L->w[W_V_BIAS], KV, H);
    finish_op(m, s->v, (size_t)T * KV, (Site){l, "self_attn.v_proj"});
    if (a->qk_norm) {
        head_norm(m, s->q, T, a->n_heads, L->w[W_Q_NORM], (Site){l, "self_attn.q_norm"});
        head_norm(m, s->k, T, a->n_kv_heads, L->w[W_K_NORM], (Site){l, "self_attn.k_norm"});
    }
    apply_rope(m, l, s->q, T, a->n_heads, pos0, (Site){l, "rope(q)"});
    apply_rope(m, l, s->k, T, a->n_kv_heads, pos0, (Site){l, "rope(k)"});
    memcpy(L->k_cache + (size_t)pos0 * KV, s->k, sizeof(float) * (size_t)T * KV);
    memcpy(L->v_cache + (size_t)pos0 * KV, s->v, sizeof(float) * (size_t)T * KV);
    attention(m, l, s->q, s->att, T, pos0);
    finish_op(m, s->att, (size_t)T * Q, (Site){l, "self_attn (softmax . v)"});
    linear(s->branch, s->att, T, L->w[W_O], L->w[W_O_BIAS], H, Q);
    float peak = finish_op(m, s->branch, (size_t)T * H, (Site){l, "self_attn.o_proj"});
    if (a->sandwich_norms) {
        peak = rmsnorm(m, s->branch, s->branch, L->w[W_POST_ATTN_NORM], T, H, (Site){l, "post_attention_layernorm"});
    }
    RefLayerStats *ls = m->stats ? &m->stats->layers[l] : NULL;
    if (ls && peak > ls->attn_out) ls->attn_out = peak;
    residual_add(m, x, s->branch, (size_t)T * H, (Site){l, "residual after attention"},
                 ls ? &ls->resid_after_attn : NULL);
}

static void mlp_block(RefModel *m, int l, float *x, int T, Scratch *s) {
    const Arch *a = &m->arch;
    Layer *L = &m->layers[l];
    int H = a->hidden, F = a->intermediate;
    size_t nf = (size_t)T * F;
    rmsnorm(m, s->xb, x, L->w[W_MLP_NORM], T, H,
            (Site){l, a->sandwich_norms ? "pre_feedforward_layernorm" : "post_attention_layernorm"});
    linear(s->gate, s->xb, T, L->w[W_GATE], L->w[W_GATE_BIAS], F, H);
    finish_op(m, s->gate, nf, (Site){l, "mlp.gate_proj"});
    linear(s->up, s->xb, T, L->w[W_UP], L->w[W_UP_BIAS], F, H);
    finish_op(m, s->up, nf, (Site){l, "mlp.up_proj"});
    for (size_t i = 0; i < nf; i++) s->gate[i] = activation(a->act, s->gate[i]);
    finish_op(m, s->gate, nf, (Site){l, "mlp.act_fn"});
    for (size_t i = 0; i < nf; i++) s->gate[i] *= s->up[i];
    finish_op(m, s->gate, nf, (Site){l, "mlp.act_fn * up"});
    linear(s->branch, s->gate, T, L->w[W_DOWN], L->w[W_DOWN_BIAS], H, F);
    float peak = finish_op(m, s->branch, (size_t)T * H, (Site){l, "mlp.down_proj"});
    if (a->sandwich_norms) {
        peak = rmsnorm(m, s->branch, s->branch, L->w[W_POST_MLP_NORM], T, H, (Site){l, "post_feedforward_layernorm"});
    }
    RefLayerStats *ls = m->stats ? &m->stats->layers[l] : NULL;
    if (ls && peak > ls->mlp_out) ls->mlp_out = peak;
    residual_add(m, x, s->branch, (size_t)T * H, (Site){l, "residual after mlp"}, ls ? &ls->resid_after_mlp : NULL);
}

/* ==== the forward pass ==================================================== */

static void embed_tokens(RefModel *m, const int *tokens, int T, float *x) {
    const Arch *a = &m->arch;
    float scale = round_to(m->opt.precision, a->embed_scale);
    for (int t = 0; t < T; t++) {
        const float *row = m->embed + (size_t)tokens[t] * a->hidden;
        for (int i = 0; i < a->hidden; i++) x[(size_t)t * a->hidden + i] = row[i] * scale;
    }
    float peak = finish_op(m, x, (size_t)T * a->hidden, (Site){-1, "embeddings"});
    if (m->stats && peak > m->stats->embed_peak) m->stats->embed_peak = peak;
}

static void output_logits(RefModel *m, const float *x, int rows, float *logits) {
    const Arch *a = &m->arch;
    float *xn = xmalloc(sizeof *xn * (size_t)rows * a->hidden);
    rmsnorm(m, xn, x, m->final_norm, rows, a->hidden, (Site){-1, "final norm"});
    linear(logits, xn, rows, m->lm_head, NULL, a->vocab, a->hidden);
    size_t n = (size_t)rows * a->vocab;
    if (a->final_logit_softcap > 0) {
        float cap = a->final_logit_softcap;
        for (size_t i = 0; i < n; i++) logits[i] = tanhf(logits[i] / cap) * cap;
    }
    finish_op(m, logits, n, (Site){-1, "lm_head"});
    free(xn);
}

int ref_forward(RefModel *m, const int *tokens, int n, int pos0, float *logits, int all_logits, Err *e) {
    const Arch *a = &m->arch;
    if (n <= 0) return err_set(e, "reference forward: no tokens");
    if (pos0 < 0 || pos0 > m->n_cached)
        return err_set(e, "reference forward: position %d is not next to the cached positions 0..%d", pos0,
                       m->n_cached - 1);
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= a->vocab)
            return err_set(e, "token id %d is outside the vocabulary (0..%d)", tokens[t], a->vocab - 1);
    grow_cache(m, pos0 + n);
    size_t H = (size_t)a->hidden, Q = (size_t)arch_q_dim(a), KV = (size_t)arch_kv_dim(a), F = (size_t)a->intermediate;
    float *x = xmalloc(sizeof *x * n * H);
    Scratch s;
    s.xb = xmalloc(sizeof(float) * n * H);
    s.q = xmalloc(sizeof(float) * n * Q);
    s.k = xmalloc(sizeof(float) * n * KV);
    s.v = xmalloc(sizeof(float) * n * KV);
    s.att = xmalloc(sizeof(float) * n * Q);
    s.branch = xmalloc(sizeof(float) * n * H);
    s.gate = xmalloc(sizeof(float) * n * F);
    s.up = xmalloc(sizeof(float) * n * F);

    embed_tokens(m, tokens, n, x);
    for (int l = 0; l < a->n_layers; l++) {
        attention_block(m, l, x, n, pos0, &s);
        mlp_block(m, l, x, n, &s);
    }
    m->n_cached = pos0 + n;
    if (logits) {
        if (all_logits) output_logits(m, x, n, logits);
        else output_logits(m, x + (size_t)(n - 1) * H, 1, logits);
    }
    free(x);
    free(s.xb), free(s.q), free(s.k), free(s.v), free(s.att), free(s.branch), free(s.gate), free(s.up);
    return 0;
}

/* ==== statistics and top-k ================================================ */

RefStats *ref_stats_new(const RefModel *m) {
    RefStats *s = xcalloc(1, sizeof *s);
    s->n_layers = m->arch.n_layers;
    s->layers = xcalloc((size_t)s->n_layers, sizeof *s->layers);
    return s;
}

void ref_stats_reset(RefStats *s) {
    memset(s->layers, 0, sizeof *s->layers * (size_t)s->n_layers);
    s->embed_peak = 0;
    s->first_overflow[0] = s->first_nonfinite[0] = 0;
    s->n_overflow_sites = 0;
    s->n_clamped = 0;
}

void ref_stats_free(RefStats *s) {
    if (!s) return;
    free(s->overflow_sites);
    free(s->layers);
    free(s);
}

int ref_argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

void ref_top_k(const float *v, int n, int k, int *ids, float *vals) {
    int have = 0;
    for (int i = 0; i < n; i++) {
        if (have == k && !(v[i] > vals[k - 1])) continue;
        int j = have < k ? have++ : k - 1;
        while (j > 0 && v[i] > vals[j - 1]) {
            vals[j] = vals[j - 1];
            ids[j] = ids[j - 1];
            j--;
        }
        vals[j] = v[i];
        ids[j] = i;
    }
}
