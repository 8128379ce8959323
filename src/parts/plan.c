/* plan.c - names, shapes and exact package sizes of a conversion (contract in plan.h). */
#include <stdio.h>
#include <string.h>

#include "parts/options.h"
#include "parts/plan.h"

/* ==== names ==== */

const char *plan_default_prefix(const Arch *a) {
    switch (a->family) {
    case FAMILY_QWEN3: return "qwen";
    case FAMILY_QWEN2: return "qwen25";
    case FAMILY_GEMMA3: return "gemma3";
    case FAMILY_LLAMA: break;
    }
    return "llama";
}

static const char *lut_suffix(int bits, char buf[16]) {
    if (bits > 0) snprintf(buf, 16, "_lut%d", bits);
    else buf[0] = 0;
    return buf;
}

const char *plan_embeddings_name(const char *prefix, int lut_bits, char *buf, size_t n) {
    char s[16];
    snprintf(buf, n, "%s_embeddings%s", prefix, lut_suffix(lut_bits, s));
    return buf;
}

const char *plan_lm_head_name(const char *prefix, int lut_bits, char *buf, size_t n) {
    char s[16];
    snprintf(buf, n, "%s_lm_head%s", prefix, lut_suffix(lut_bits, s));
    return buf;
}

const char *plan_ffn_name(const char *prefix, PlanFfnKind kind, int lut_bits, int chunk, int n_chunks, char *buf,
                          size_t n) {
    static const char *kinds[] = {"FFN", "prefill", "FFN_rotate", "prefill_rotate", "FFN_PF", "FFN_PF"};
    char s[16];
    snprintf(buf, n, "%s_%s%s_chunk_%02dof%02d%s", prefix, kinds[kind], lut_suffix(lut_bits, s), chunk + 1, n_chunks,
             kind == FFN_COMBINED_ROT ? "_rot" : "");
    return buf;
}

const char *plan_ffn_function_name(PlanFfnKind kind) {
    static const char *names[PLAN_FFN_FUNCTIONS] = {"infer", "prefill", "infer_rotate", "prefill_rotate"};
    return kind < PLAN_FFN_FUNCTIONS ? names[kind] : "main";
}

int plan_ffn_is_prefill(PlanFfnKind kind) { return kind == FFN_PREFILL || kind == FFN_PREFILL_ROTATE; }
int plan_ffn_is_rotate(PlanFfnKind kind) { return kind == FFN_INFER_ROTATE || kind == FFN_PREFILL_ROTATE; }

/* ==== shapes ==== */

void plan_chunk_layers(int n_layers, int n_chunks, int chunk, int *first, int *count) {
    int base = n_layers / n_chunks, rem = n_layers % n_chunks;
    *first = chunk * base + (chunk < rem ? chunk : rem);
    *count = base + (chunk < rem ? 1 : 0);
}

int plan_lm_head_splits(const Arch *a) { return a->family == FAMILY_LLAMA ? 8 : 16; }

int plan_lm_head_sizes(const Arch *a, int sizes[PLAN_MAX_SPLITS]) {
    int s = plan_lm_head_splits(a);
    for (int i = 0; i < s; i++) sizes[i] = a->vocab / s + (i < a->vocab % s ? 1 : 0);
    return s;
}

int plan_state_length(const Arch *a, long context) {
    if (a->family == FAMILY_GEMMA3) return (int)context;   /* ANEMLL's --state-length default */
    long min = a->family == FAMILY_LLAMA ? 512 : 256;
    return (int)(context > min ? context : min);
}

int plan_split_cache(const Arch *a) { return a->family == FAMILY_GEMMA3; }

int plan_local_length(const Arch *a, long context) {
    if (!plan_split_cache(a)) return 0;
    return (int)(a->sliding_window < context ? a->sliding_window : context);
}

int plan_has_rotate(const Arch *a, long context) { return plan_split_cache(a) && context > a->sliding_window; }

void plan_layer_types(const Arch *a, int *n_local, int *n_global) {
    *n_local = plan_split_cache(a) ? arch_n_sliding(a) : 0;
    *n_global = a->n_layers - *n_local;
}

void plan_cache_rows(const Arch *a, int layer, int *local, int *rank, int *n_type) {
    if (!plan_split_cache(a)) {
        *local = 0;
        *rank = layer;
        *n_type = a->n_layers;
        return;
    }
    *local = arch_is_sliding(a, layer);
    int r = 0, n = 0;
    for (int l = 0; l < a->n_layers; l++) {
        if (arch_is_sliding(a, l) != *local) continue;
        if (l < layer) r++;
        n++;
    }
    *rank = r;
    *n_type = n;
}

/* The first layer of each type (-1 if none). */
static void first_of_types(const Arch *a, int *first_local, int *first_global) {
    *first_local = *first_global = -1;
    for (int l = a->n_layers - 1; l >= 0; l--) {
        if (plan_split_cache(a) && arch_is_sliding(a, l)) *first_local = l;
        else *first_global = l;
    }
}

int plan_rope_shared(const Arch *a) {
    int fl, fg;
    first_of_types(a, &fl, &fg);
    if (fl < 0 || fg < 0) return 1;
    int half = a->head_dim / 2;
    float il[2048], ig[2048];
    if (half > 2048) return 0;
    arch_rope_inv_freq(a, fl, il);
    arch_rope_inv_freq(a, fg, ig);
    return !memcmp(il, ig, sizeof(float) * (size_t)half) &&
           arch_rope_attention_scaling(a, fl) == arch_rope_attention_scaling(a, fg);
}

/* ==== sizes ==== */

#define BLOB_ALIGN 64u
#define BLOB_RECORD 64u
#define BLOB_MIN_ELEMENTS 10u   /* smaller consts are written inline (mil_should_use_blob) */

void plan_blobs_init(PlanBlobs *b) {
    b->bytes = 64;   /* storage header */
    b->count = 0;
}

void plan_blobs_add(PlanBlobs *b, uint64_t numel, int bits) {
    if (numel < BLOB_MIN_ELEMENTS) return;
    uint64_t record = (b->bytes + BLOB_ALIGN - 1) / BLOB_ALIGN * BLOB_ALIGN;
    uint64_t data = (numel * (uint64_t)bits + 7) / 8;
    b->bytes = record + BLOB_RECORD + data;
    b->count++;
}

void plan_blobs_add_weight(PlanBlobs *b, uint64_t rows, uint64_t cols, const LutSpec *lut) {
    if (!lut || lut->bits == 0) {
        plan_blobs_add(b, rows * cols, 16);
        return;
    }
    uint64_t groups = lut->group > 0 ? rows / (uint64_t)lut->group : 1;
    plan_blobs_add(b, rows * cols, lut->bits);
    plan_blobs_add(b, groups << lut->bits, 16);
}

/* The blobs of one decoder layer, in the order ffn.c writes them. */
static void add_layer(PlanBlobs *b, const Arch *a, const LutSpec *lut) {
    int sandwich = arch_has_weight(a, W_POST_ATTN_NORM);
    uint64_t h = (uint64_t)a->hidden, q = (uint64_t)arch_q_dim(a), kv = (uint64_t)arch_kv_dim(a);
    uint64_t in = (uint64_t)a->intermediate, hd = (uint64_t)a->head_dim;
    plan_blobs_add(b, h, 16);                       /* input norm */
    const uint64_t qkv_rows[3] = {q, kv, kv};
    for (int j = 0; j < 3; j++) {
        plan_blobs_add_weight(b, qkv_rows[j], h, lut);
        if (a->qkv_bias) plan_blobs_add(b, qkv_rows[j], 16);
    }
    if (a->qk_norm) {
        plan_blobs_add(b, hd, 16);
        plan_blobs_add(b, hd, 16);
    }
    plan_blobs_add_weight(b, h, q, lut);            /* o_proj */
    if (a->o_bias) plan_blobs_add(b, h, 16);
    if (sandwich) plan_blobs_add(b, h, 16);         /* gemma post-attention norm */
    plan_blobs_add(b, h, 16);                       /* MLP input norm */
    const uint64_t mlp_rows[3] = {in, in, h}, mlp_cols[3] = {h, h, in};
    for (int j = 0; j < 3; j++) {
        plan_blobs_add_weight(b, mlp_rows[j], mlp_cols[j], lut);
        if (a->mlp_bias) plan_blobs_add(b, mlp_rows[j], 16);
    }
    if (sandwich) plan_blobs_add(b, h, 16);         /* gemma post-feedforward norm */
}

void plan_chunk_rope_tables(const Arch *a, int first, int count, int *global, int *local) {
    int any_local = 0, any_global = 0;
    for (int l = first; l < first + count; l++) {
        if (plan_split_cache(a) && arch_is_sliding(a, l)) any_local = 1;
        else any_global = 1;
    }
    if (plan_rope_shared(a)) {
        *global = any_local || any_global;   /* one pair serves both types */
        *local = 0;
    } else {
        *global = any_global;
        *local = any_local;
    }
}

static void add_chunk(PlanBlobs *b, const Arch *a, const LutSpec *lut, int state_length, int first, int count) {
    uint64_t table = (uint64_t)state_length * (uint64_t)a->head_dim;
    int global, local;
    plan_chunk_rope_tables(a, first, count, &global, &local);
    for (int t = 0; t < global + local; t++) {
        plan_blobs_add(b, table, 16);   /* cos */
        plan_blobs_add(b, table, 16);   /* sin */
    }
    for (int l = first; l < first + count; l++) add_layer(b, a, lut);
    if (first + count == a->n_layers) plan_blobs_add(b, (uint64_t)a->hidden, 16);   /* final norm */
}

uint64_t plan_ffn_chunk_bytes(const Arch *a, const LutSpec *lut, int state_length, int first, int count, int copies) {
    PlanBlobs b;
    plan_blobs_init(&b);
    for (int c = 0; c < copies; c++) add_chunk(&b, a, lut, state_length, first, count);
    return b.bytes;
}

/* 1 if the chunk has sliding-window layers in the local cache. */
static int chunk_has_local(const Arch *a, int first, int count) {
    for (int l = first; l < first + count; l++)
        if (plan_split_cache(a) && arch_is_sliding(a, l)) return 1;
    return 0;
}

uint64_t plan_ffn_package_bytes(const Arch *a, const LutSpec *lut, const PlanFfnShape *s, int first, int count,
                                PlanFfnKind kind, int separate) {
    PlanFfnKind fns[PLAN_FFN_FUNCTIONS];
    int n = 0;
    if (kind < PLAN_FFN_FUNCTIONS) {
        fns[n++] = kind;
    } else if (kind == FFN_COMBINED_ROT) {
        fns[n++] = FFN_INFER_ROTATE;
        fns[n++] = FFN_PREFILL_ROTATE;
    } else {
        int rotate = s->rotate && !s->split_rotate;
        fns[n++] = FFN_INFER;
        if (rotate) fns[n++] = FFN_INFER_ROTATE;
        fns[n++] = FFN_PREFILL;
        if (rotate) fns[n++] = FFN_PREFILL_ROTATE;
    }
    uint64_t mask = (uint64_t)s->batch * (uint64_t)(s->local_length + s->batch);
    int has_local = chunk_has_local(a, first, count);
    PlanBlobs b;
    plan_blobs_init(&b);
    for (int i = 0; i < n; i++) {
        int with_mask = fns[i] == FFN_PREFILL_ROTATE && has_local;
        if (i == 0 || separate) {
            if (with_mask) plan_blobs_add(&b, mask, 16);
            add_chunk(&b, a, lut, s->state_length, first, count);
        } else if (with_mask) {
            plan_blobs_add(&b, mask, 16);   /* the one blob the earlier functions lack */
        }
    }
    return b.bytes;
}

uint64_t plan_embeddings_bytes(const Arch *a, const LutSpec *lut) {
    PlanBlobs b;
    plan_blobs_init(&b);
    plan_blobs_add_weight(&b, (uint64_t)a->vocab, (uint64_t)a->hidden, lut);
    return b.bytes;
}

uint64_t plan_lm_head_bytes(const Arch *a, const LutSpec *lut) {
    int sizes[PLAN_MAX_SPLITS];
    int s = plan_lm_head_sizes(a, sizes);
    PlanBlobs b;
    plan_blobs_init(&b);
    for (int i = 0; i < s; i++) plan_blobs_add_weight(&b, (uint64_t)sizes[i], (uint64_t)a->hidden, lut);
    return b.bytes;
}

uint64_t plan_largest_chunk_bytes(const Arch *a, const LutSpec *lut, int state_length, int n_chunks, int copies) {
    uint64_t largest = 0;
    for (int c = 0; c < n_chunks; c++) {
        int first, count;
        plan_chunk_layers(a->n_layers, n_chunks, c, &first, &count);
        uint64_t bytes = plan_ffn_chunk_bytes(a, lut, state_length, first, count, copies);
        if (bytes > largest) largest = bytes;
    }
    return largest;
}

int plan_auto_chunks(const Arch *a, const LutSpec *lut, int state_length, uint64_t max_bytes, int copies, int *n) {
    for (int c = 1; c <= a->n_layers; c++) {
        if (plan_largest_chunk_bytes(a, lut, state_length, c, copies) <= max_bytes) {
            *n = c;
            return 0;
        }
    }
    *n = a->n_layers;
    return 1;
}

int plan_check_lut_groups(const Arch *a, const LutSpec luts[3], Err *e) {
    if (lut_check_channels(&luts[PART_EMBEDDINGS], "--lut1", "embed_tokens", a->vocab, e) < 0) return -1;
    struct {
        const char *name;
        long rows;
    } proj[] = {{"q_proj", arch_q_dim(a)},          {"k_proj", arch_kv_dim(a)}, {"v_proj", arch_kv_dim(a)},
                {"o_proj", a->hidden},              {"gate_proj", a->intermediate},
                {"up_proj", a->intermediate},       {"down_proj", a->hidden}};
    for (size_t i = 0; i < sizeof proj / sizeof proj[0]; i++)
        if (lut_check_channels(&luts[PART_FFN], "--lut2", proj[i].name, proj[i].rows, e) < 0) return -1;
    int sizes[PLAN_MAX_SPLITS];
    int s = plan_lm_head_sizes(a, sizes);
    for (int i = 0; i < s; i++) {
        char name[48];
        snprintf(name, sizeof name, "lm_head split %d of %d", i + 1, s);
        if (lut_check_channels(&luts[PART_LM_HEAD], "--lut3", name, sizes[i], e) < 0) return -1;
    }
    return 0;
}
