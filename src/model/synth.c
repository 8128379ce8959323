/* synth.c - random-weight checkpoints in Hugging Face layout (contract in synth.h).
 *
 * Sections: spec defaults and presets, config.json, the tensor list, the value generator,
 * writing shards, the output directory.
 */
#include "model/synth.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/half.h"
#include "common/parallel.h"
#include "common/util.h"
#include "io/json.h"
#include "io/st_writer.h"

/* ==== spec defaults and presets =========================================== */

static int family_of(const char *model_type) {
    if (!strcmp(model_type, "llama")) return FAMILY_LLAMA;
    if (!strcmp(model_type, "qwen2")) return FAMILY_QWEN2;
    if (!strcmp(model_type, "qwen3")) return FAMILY_QWEN3;
    if (!strcmp(model_type, "gemma3_text") || !strcmp(model_type, "gemma3")) return FAMILY_GEMMA3;
    return -1;
}

int synth_spec_init(SynthSpec *s, const char *model_type, Err *e) {
    memset(s, 0, sizeof *s);
    int fam = family_of(model_type);
    if (fam < 0)
        return err_set(e, "model type '%s' is not supported; supported model types: %s", model_type,
                       ARCH_SUPPORTED_TYPES);
    snprintf(s->model_type, sizeof s->model_type, "%s", model_type);
    s->hidden = 64;
    s->n_layers = 2;
    s->n_heads = 4;
    s->n_kv_heads = 2;
    s->head_dim = 16;
    s->intermediate = 160;
    s->vocab = 0; /* chosen when writing: the tokenizer's size, or 320 for the built-in one */
    s->max_position = 1024;
    s->rms_eps = 1e-6;
    s->rope_theta = 1e6;
    s->rope_local_theta = 10000;
    s->rope_scaling.type = ROPE_DEFAULT;
    s->rope_scaling.factor = 1;
    s->n_shards = 1;
    s->dtype = ST_BF16;
    s->std = 0.05f;
    s->qk_std = 0.25f;
    s->seed = 1;
    switch (fam) {
    case FAMILY_LLAMA:
        s->rope_theta = 500000;
        s->rms_eps = 1e-5;
        s->tied = 1;
        break;
    case FAMILY_QWEN2:
        s->intermediate = 192;
        s->tied = 1;
        break;
    case FAMILY_QWEN3:
        s->head_dim = 32;
        s->intermediate = 128;
        break;
    case FAMILY_GEMMA3:
        s->n_layers = 3;
        s->head_dim = 32;
        s->intermediate = 192;
        s->sliding_window = 8;
        s->query_pre_attn_scalar = 24;
        s->tied = 1;
        if (!strcmp(model_type, "gemma3")) s->n_kv_heads = 1;
        break;
    }
    return 0;
}

int synth_apply_preset(SynthSpec *s, const char *preset, Err *e) {
    if (!strcmp(preset, "tiny")) return 0;
    if (!strcmp(preset, "llama-3.2-1b")) {
        if (family_of(s->model_type) != FAMILY_LLAMA)
            return err_set(e, "preset llama-3.2-1b is a llama model, not %s", s->model_type);
        s->hidden = 2048;
        s->n_layers = 16;
        s->n_heads = 32;
        s->n_kv_heads = 8;
        s->head_dim = 64;
        s->intermediate = 8192;
        s->vocab = 128256;
        s->max_position = 131072;
        s->tied = 1;
        s->rope_theta = 500000;
        s->rms_eps = 1e-5;
        s->rope_scaling = (RopeScaling){ROPE_LLAMA3, 32, 1, 4, 8192};
        return 0;
    }
    return err_set(e, "unknown preset '%s' (presets: %s)", preset, SYNTH_PRESETS);
}

static int check_spec(const SynthSpec *s, Err *e) {
    if (family_of(s->model_type) < 0)
        return err_set(e, "model type '%s' is not supported; supported model types: %s", s->model_type,
                       ARCH_SUPPORTED_TYPES);
    if (s->hidden <= 0 || s->n_layers <= 0 || s->n_heads <= 0 || s->n_kv_heads <= 0 || s->head_dim <= 0 ||
        s->intermediate <= 0 || s->vocab < 0 || s->max_position <= 0)
        return err_set(e, "model dimensions must be positive");
    if (s->n_heads % s->n_kv_heads)
        return err_set(e, "heads (%d) must be a multiple of kv heads (%d)", s->n_heads, s->n_kv_heads);
    if (s->head_dim % 2) return err_set(e, "head_dim (%d) must be even", s->head_dim);
    if (s->n_shards < 1) return err_set(e, "shards must be at least 1");
    if (s->mlp_bias && family_of(s->model_type) != FAMILY_LLAMA)
        return err_set(e, "mlp bias exists only for llama models");
    return 0;
}

/* ==== config.json ========================================================= */

/* "s,f,full_attention,..." -> per-layer flags; or the default rule. */
static int layer_types_of(const SynthSpec *s, unsigned char *sliding, Err *e) {
    if (!s->layer_types[0]) {
        /* every 6th layer global (Gemma 3's pattern); a model too short for that gets its
           last layer global so both kinds exist */
        int any = 0;
        for (int i = 0; i < s->n_layers; i++) any |= !(sliding[i] = (i + 1) % 6 != 0);
        if (!any) sliding[s->n_layers - 1] = 0;
        return 0;
    }
    char *copy = xstrdup(s->layer_types), *save = NULL;
    int n = 0, rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save), n++) {
        int v = !strcmp(t, "s") || !strcmp(t, "sliding_attention") ? 1
                : !strcmp(t, "f") || !strcmp(t, "full_attention") ? 0
                                                                   : -1;
        if (v < 0) {
            rc = err_set(e, "layer type '%s' must be s, f, sliding_attention or full_attention", t);
            break;
        }
        if (n < s->n_layers) sliding[n] = (unsigned char)v;
    }
    if (rc == 0 && n != s->n_layers)
        rc = err_set(e, "%d layer types given for %d layers", n, s->n_layers);
    free(copy);
    return rc;
}

static void add_rope_scaling(cJSON *o, const RopeScaling *rs) {
    if (rs->type == ROPE_DEFAULT) {
        cJSON_AddNullToObject(o, "rope_scaling");
        return;
    }
    cJSON *r = cJSON_AddObjectToObject(o, "rope_scaling");
    cJSON_AddNumberToObject(r, "factor", rs->factor);
    if (rs->type == ROPE_LLAMA3) {
        cJSON_AddNumberToObject(r, "high_freq_factor", rs->high_freq_factor);
        cJSON_AddNumberToObject(r, "low_freq_factor", rs->low_freq_factor);
        cJSON_AddNumberToObject(r, "original_max_position_embeddings", rs->original_max_position);
    }
    cJSON_AddStringToObject(r, "rope_type", rs->type == ROPE_LLAMA3 ? "llama3" : "linear");
}

static void add_eos(cJSON *o, const SynthTokenIds *ids) {
    if (ids->n_eos == 1) cJSON_AddNumberToObject(o, "eos_token_id", ids->eos[0]);
    else if (ids->n_eos > 1) cJSON_AddItemToObject(o, "eos_token_id", cJSON_CreateIntArray(ids->eos, ids->n_eos));
    else cJSON_AddNullToObject(o, "eos_token_id");
}

static void add_bos(cJSON *o, const SynthTokenIds *ids) {
    if (ids->bos >= 0) cJSON_AddNumberToObject(o, "bos_token_id", ids->bos);
    else cJSON_AddNullToObject(o, "bos_token_id");
}

static void add_layer_types(cJSON *o, const SynthSpec *s, const unsigned char *sliding) {
    cJSON *lt = cJSON_AddArrayToObject(o, "layer_types");
    for (int i = 0; i < s->n_layers; i++)
        cJSON_AddItemToArray(lt, cJSON_CreateString(sliding[i] ? "sliding_attention" : "full_attention"));
}

/* Keys in alphabetical order, as transformers writes them. */
static cJSON *llama_or_qwen_config(const SynthSpec *s, const SynthTokenIds *ids, const unsigned char *sliding) {
    int fam = family_of(s->model_type), qwen = fam != FAMILY_LLAMA;
    static const char *arch_names[] = {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "architectures", cJSON_CreateStringArray(&arch_names[fam], 1));
    if (fam != FAMILY_QWEN2) cJSON_AddBoolToObject(o, "attention_bias", s->attention_bias);
    cJSON_AddNumberToObject(o, "attention_dropout", 0.0);
    add_bos(o, ids);
    add_eos(o, ids);
    if (fam != FAMILY_QWEN2 || s->head_dim * s->n_heads != s->hidden) cJSON_AddNumberToObject(o, "head_dim", s->head_dim);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddNumberToObject(o, "hidden_size", s->hidden);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddNumberToObject(o, "intermediate_size", s->intermediate);
    if (qwen && s->layer_types[0]) add_layer_types(o, s, sliding);
    cJSON_AddNumberToObject(o, "max_position_embeddings", s->max_position);
    if (qwen) cJSON_AddNumberToObject(o, "max_window_layers", s->sliding_window > 0 ? 0 : s->n_layers);
    if (!qwen) cJSON_AddBoolToObject(o, "mlp_bias", s->mlp_bias);
    cJSON_AddStringToObject(o, "model_type", s->model_type);
    cJSON_AddNumberToObject(o, "num_attention_heads", s->n_heads);
    cJSON_AddNumberToObject(o, "num_hidden_layers", s->n_layers);
    cJSON_AddNumberToObject(o, "num_key_value_heads", s->n_kv_heads);
    if (!qwen) cJSON_AddNumberToObject(o, "pretraining_tp", 1);
    cJSON_AddNumberToObject(o, "rms_norm_eps", s->rms_eps);
    add_rope_scaling(o, &s->rope_scaling);
    cJSON_AddNumberToObject(o, "rope_theta", s->rope_theta);
    if (qwen) {
        if (s->sliding_window > 0) cJSON_AddNumberToObject(o, "sliding_window", s->sliding_window);
        else if (fam == FAMILY_QWEN2) cJSON_AddNumberToObject(o, "sliding_window", s->max_position);
        else cJSON_AddNullToObject(o, "sliding_window");
    }
    cJSON_AddBoolToObject(o, "tie_word_embeddings", s->tied);
    cJSON_AddStringToObject(o, "torch_dtype", "bfloat16");
    cJSON_AddStringToObject(o, "transformers_version", "4.57.6");
    cJSON_AddBoolToObject(o, "use_cache", 1);
    if (qwen) cJSON_AddBoolToObject(o, "use_sliding_window", s->sliding_window > 0);
    cJSON_AddNumberToObject(o, "vocab_size", s->vocab);
    return o;
}

static cJSON *gemma_text_config(const SynthSpec *s, const SynthTokenIds *ids, const unsigned char *sliding) {
    cJSON *o = cJSON_CreateObject();
    const char *arch = "Gemma3ForCausalLM";
    if (strcmp(s->model_type, "gemma3")) cJSON_AddItemToObject(o, "architectures", cJSON_CreateStringArray(&arch, 1));
    cJSON_AddBoolToObject(o, "attention_bias", s->attention_bias);
    cJSON_AddNumberToObject(o, "attention_dropout", 0.0);
    cJSON_AddNullToObject(o, "attn_logit_softcapping");
    add_bos(o, ids);
    add_eos(o, ids);
    cJSON_AddNullToObject(o, "final_logit_softcapping");
    cJSON_AddNumberToObject(o, "head_dim", s->head_dim);
    cJSON_AddStringToObject(o, "hidden_activation", "gelu_pytorch_tanh");
    cJSON_AddNumberToObject(o, "hidden_size", s->hidden);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddNumberToObject(o, "intermediate_size", s->intermediate);
    add_layer_types(o, s, sliding);
    cJSON_AddNumberToObject(o, "max_position_embeddings", s->max_position);
    cJSON_AddStringToObject(o, "model_type", "gemma3_text");
    cJSON_AddNumberToObject(o, "num_attention_heads", s->n_heads);
    cJSON_AddNumberToObject(o, "num_hidden_layers", s->n_layers);
    cJSON_AddNumberToObject(o, "num_key_value_heads", s->n_kv_heads);
    cJSON_AddNumberToObject(o, "pad_token_id", 0);
    cJSON_AddNumberToObject(o, "query_pre_attn_scalar",
                            s->query_pre_attn_scalar > 0 ? s->query_pre_attn_scalar : s->head_dim);
    cJSON_AddNumberToObject(o, "rms_norm_eps", s->rms_eps);
    cJSON_AddNumberToObject(o, "rope_local_base_freq", s->rope_local_theta);
    add_rope_scaling(o, &s->rope_scaling);
    cJSON_AddNumberToObject(o, "rope_theta", s->rope_theta);
    cJSON_AddNumberToObject(o, "sliding_window", s->sliding_window > 0 ? s->sliding_window : 4096);
    if (strcmp(s->model_type, "gemma3")) {
        cJSON_AddBoolToObject(o, "tie_word_embeddings", s->tied);
        cJSON_AddStringToObject(o, "torch_dtype", "bfloat16");
        cJSON_AddStringToObject(o, "transformers_version", "4.57.6");
    }
    cJSON_AddBoolToObject(o, "use_bidirectional_attention", 0);
    cJSON_AddBoolToObject(o, "use_cache", 1);
    cJSON_AddNumberToObject(o, "vocab_size", s->vocab);
    return o;
}

/* The multimodal wrapper: the text model in text_config plus a minimal SigLIP vision config. */
static cJSON *gemma_multimodal_config(const SynthSpec *s, const SynthTokenIds *ids, const unsigned char *sliding) {
    cJSON *o = cJSON_CreateObject();
    const char *arch = "Gemma3ForConditionalGeneration";
    cJSON_AddItemToObject(o, "architectures", cJSON_CreateStringArray(&arch, 1));
    cJSON_AddNumberToObject(o, "boi_token_index", s->vocab - 2);
    cJSON_AddNumberToObject(o, "eoi_token_index", s->vocab - 1);
    add_eos(o, ids);
    cJSON_AddNumberToObject(o, "image_token_index", s->vocab);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddNumberToObject(o, "mm_tokens_per_image", 4);
    cJSON_AddStringToObject(o, "model_type", "gemma3");
    cJSON_AddItemToObject(o, "text_config", gemma_text_config(s, ids, sliding));
    cJSON_AddBoolToObject(o, "tie_word_embeddings", s->tied);
    cJSON_AddStringToObject(o, "torch_dtype", "bfloat16");
    cJSON_AddStringToObject(o, "transformers_version", "4.57.6");
    cJSON *v = cJSON_AddObjectToObject(o, "vision_config");
    cJSON_AddNumberToObject(v, "hidden_size", 32);
    cJSON_AddNumberToObject(v, "image_size", 28);
    cJSON_AddNumberToObject(v, "intermediate_size", 64);
    cJSON_AddStringToObject(v, "model_type", "siglip_vision_model");
    cJSON_AddNumberToObject(v, "num_attention_heads", 2);
    cJSON_AddNumberToObject(v, "num_hidden_layers", 1);
    cJSON_AddNumberToObject(v, "patch_size", 14);
    cJSON_AddBoolToObject(v, "vision_use_head", 0);
    return o;
}

static int write_json_file(const char *dir, const char *name, cJSON *root, Err *e) {
    char *text = cJSON_Print(root), *path = path_join(dir, name);
    size_t n = strlen(text);
    text = xrealloc(text, n + 2);
    text[n] = '\n';
    int rc = file_write_atomic(path, text, n + 1, e);
    free(text);
    free(path);
    return rc;
}

static int write_configs(const SynthSpec *s, const SynthTokenIds *ids, const char *dir, Err *e) {
    unsigned char *sliding = xcalloc((size_t)s->n_layers, 1);
    int rc = layer_types_of(s, sliding, e);
    if (rc < 0) {
        free(sliding);
        return -1;
    }
    int fam = family_of(s->model_type);
    cJSON *cfg = fam != FAMILY_GEMMA3          ? llama_or_qwen_config(s, ids, sliding)
                 : !strcmp(s->model_type, "gemma3") ? gemma_multimodal_config(s, ids, sliding)
                                                     : gemma_text_config(s, ids, sliding);
    rc = write_json_file(dir, "config.json", cfg, e);
    cJSON_Delete(cfg);
    free(sliding);
    if (rc < 0) return -1;
    cJSON *gen = cJSON_CreateObject();
    add_bos(gen, ids);
    add_eos(gen, ids);
    cJSON_AddStringToObject(gen, "transformers_version", "4.57.6");
    rc = write_json_file(dir, "generation_config.json", gen, e);
    cJSON_Delete(gen);
    return rc;
}

/* ==== the tensor list ===================================================== */

typedef enum Init { INIT_NORMAL, INIT_NORM_GAIN, INIT_POST_NORM } Init;

typedef struct Planned {
    StWriteSpec spec;
    char name[128];
    Init init;
    float mean, std;
    uint64_t key;       /* generator key: (seed, name) */
} Planned;

static float fan_in_scale(long fan_in) { return fan_in > 64 ? sqrtf(64.0f / (float)fan_in) : 1.0f; }

static void plan_init(const SynthSpec *s, const Arch *a, const ArchTensor *t, Planned *p) {
    p->init = INIT_NORMAL;
    p->mean = 0;
    p->std = s->std;
    if (t->layer < 0) {
        if (t->ndim == 1) { /* final norm */
            p->init = INIT_NORM_GAIN;
            p->mean = a->norm_plus_one ? 0.0f : 1.0f;
            p->std = 0.15f;
        }
        return;
    }
    switch ((ArchWeight)t->weight) {
    case W_ATTN_NORM:
    case W_MLP_NORM:
    case W_Q_NORM:
    case W_K_NORM:
        p->init = INIT_NORM_GAIN;
        p->mean = a->norm_plus_one ? 0.0f : 1.0f;
        p->std = 0.15f;
        return;
    case W_POST_ATTN_NORM:
    case W_POST_MLP_NORM:
        p->init = INIT_NORM_GAIN;
        p->std = 0.15f;
        if (s->post_norm_scale > 0) {
            p->init = INIT_POST_NORM;
            p->mean = s->post_norm_scale;
            p->std = 0.08f * s->post_norm_scale;
        }
        return;
    case W_Q_BIAS:
    case W_K_BIAS:
    case W_V_BIAS:
    case W_O_BIAS:
    case W_GATE_BIAS:
    case W_UP_BIAS:
    case W_DOWN_BIAS: p->std = 0.1f; return;
    case W_Q:
    case W_K:
        if (!a->qk_norm) p->std = s->qk_std;
        p->std *= fan_in_scale(t->shape[1]);
        return;
    default: p->std *= fan_in_scale(t->shape[1]); return;
    }
}

static uint64_t name_key(uint64_t seed, const char *name) {
    return hash64(name, strlen(name), seed ^ 0x5eed5eed5eed5eedull);
}

/* The text-model tensors from arch.h, plus for the multimodal wrapper a few vision tensors
 * that a text-only consumer must skip; sorted by name as PyTorch's safetensors writes. */
static int by_planned_name(const void *x, const void *y) {
    return strcmp(((const Planned *)x)->name, ((const Planned *)y)->name);
}

static Planned *plan_tensors(const SynthSpec *s, const Arch *a, int *n_out) {
    ArchTensor *list;
    int n;
    arch_tensor_list(a, &list, &n);
    static const char *vision[] = {"multi_modal_projector.mm_soft_emb_norm.weight",
                                   "vision_tower.vision_model.embeddings.patch_embedding.bias",
                                   "vision_tower.vision_model.post_layernorm.bias",
                                   "vision_tower.vision_model.post_layernorm.weight"};
    int n_vision = a->multimodal ? 4 : 0;
    Planned *p = xcalloc((size_t)(n + n_vision), sizeof *p);
    for (int i = 0; i < n; i++) {
        snprintf(p[i].name, sizeof p[i].name, "%s", list[i].name);
        p[i].spec.ndim = list[i].ndim;
        for (int d = 0; d < list[i].ndim; d++) p[i].spec.shape[d] = list[i].shape[d];
        plan_init(s, a, &list[i], &p[i]);
    }
    for (int v = 0; v < n_vision; v++) {
        Planned *q = &p[n + v];
        snprintf(q->name, sizeof q->name, "%s", vision[v]);
        q->spec.ndim = 1;
        q->spec.shape[0] = 32;
        q->std = s->std;
    }
    n += n_vision;
    for (int i = 0; i < n; i++) {
        p[i].spec.dtype = s->dtype;
        p[i].key = name_key(s->seed, p[i].name);
    }
    qsort(p, (size_t)n, sizeof *p, by_planned_name);
    for (int i = 0; i < n; i++) p[i].spec.name = p[i].name;
    arch_free_tensor_list(list);
    *n_out = n;
    return p;
}

/* ==== the value generator ================================================= */

/* Standard normal quantiles at (i + 0.5) / 65536: a sample is one table entry picked by 16
 * random bits. At bf16 resolution this is indistinguishable from a true normal and costs a
 * table lookup per value, so a 1.2-billion-parameter model is generated in seconds. */
static float normal_table[65536];
static pthread_once_t normal_once = PTHREAD_ONCE_INIT;

static void build_normal_table(void) {
    for (int i = 0; i < 32768; i++) {
        double p = (i + 0.5) / 65536.0, lo = -10, hi = 0; /* solve Phi(x) = p for x < 0 */
        for (int it = 0; it < 64; it++) {
            double mid = 0.5 * (lo + hi);
            if (0.5 * erfc(-mid / M_SQRT2) < p) lo = mid;
            else hi = mid;
        }
        normal_table[i] = (float)(0.5 * (lo + hi));
        normal_table[65535 - i] = -normal_table[i];
    }
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#define GEN_BLOCK ((size_t)1 << 16) /* values per generator stream */

/* The 65536 possible values of one tensor, already in its dtype (values are bf16 in every
 * dtype, so F32 and F16 files hold the same numbers): a value is one table lookup. */
typedef struct ValueTable {
    uint16_t half[65536];       /* BF16 or F16 bits */
    float full[65536];          /* F32 */
} ValueTable;

static void build_value_table(const Planned *t, ValueTable *vt) {
    for (int i = 0; i < 65536; i++) {
        float v = bf16_to_f32(f32_to_bf16(t->mean + t->std * normal_table[i]));
        vt->full[i] = v;
        vt->half[i] = t->spec.dtype == ST_F16 ? f32_to_f16(v) : f32_to_bf16(v);
    }
}

typedef struct GenJob {
    const Planned *t;
    const ValueTable *vt;
    size_t first, count;        /* values [first, first+count) of the tensor */
    unsigned char *out;         /* count values in t->spec.dtype */
} GenJob;

/* Generates one GEN_BLOCK-aligned block of the job (the block's stream depends only on the
 * tensor key and the block index, so the bytes do not depend on threads or chunking). */
static void gen_block(void *ctx, long task, int thread) {
    (void)thread;
    const GenJob *job = ctx;
    size_t block = job->first / GEN_BLOCK + (size_t)task;
    size_t begin = block * GEN_BLOCK, end = begin + GEN_BLOCK;
    if (end > job->first + job->count) end = job->first + job->count;
    uint64_t state = job->t->key ^ (block * 0xD1B54A32D192ED03ull), bits = 0;
    size_t n = end - begin;
    if (job->t->spec.dtype == ST_F32) {
        float *out = (float *)(void *)job->out + (begin - job->first);
        for (size_t i = 0; i < n; i++) {
            if (!(i & 3)) bits = splitmix64(&state);
            out[i] = job->vt->full[bits & 0xffff];
            bits >>= 16;
        }
    } else {
        uint16_t *out = (uint16_t *)(void *)job->out + (begin - job->first);
        for (size_t i = 0; i < n; i++) {
            if (!(i & 3)) bits = splitmix64(&state);
            out[i] = job->vt->half[bits & 0xffff];
            bits >>= 16;
        }
    }
}

/* ==== writing shards ====================================================== */

#define CHUNK_VALUES (GEN_BLOCK * 64) /* generated and written at a time: 8 MB of BF16 */

static int write_tensor(StWriter *w, const Planned *t, unsigned char *buf, ValueTable *vt, int threads, Err *e) {
    build_value_table(t, vt);
    size_t numel = 1;
    for (int d = 0; d < t->spec.ndim; d++) numel *= (size_t)t->spec.shape[d];
    size_t es = st_dtype_size(t->spec.dtype);
    for (size_t first = 0; first < numel; first += CHUNK_VALUES) {
        GenJob job = {t, vt, first, numel - first < CHUNK_VALUES ? numel - first : CHUNK_VALUES, buf};
        long blocks = (long)((job.count + GEN_BLOCK - 1) / GEN_BLOCK);
        par_for(blocks, blocks > 1 ? threads : 1, gen_block, &job);
        if (st_writer_write(w, buf, job.count * es, e) < 0) return -1;
    }
    return 0;
}

static char *shard_name(int i, int n) {
    if (n == 1) return xstrdup("model.safetensors");
    return xasprintf("model-%05d-of-%05d.safetensors", i + 1, n);
}

/* Splits the sorted list into n contiguous, non-empty shards of about equal bytes. */
static void split_shards(const Planned *p, int n_tensors, int n_shards, int *shard_of) {
    uint64_t total = 0, acc = 0;
    for (int i = 0; i < n_tensors; i++) total += st_specs_nbytes(&p[i].spec, 1);
    int s = 0;
    for (int i = 0; i < n_tensors; i++) {
        shard_of[i] = s;
        acc += st_specs_nbytes(&p[i].spec, 1);
        int tensors_left = n_tensors - i - 1, shards_left = n_shards - s - 1;
        if (shards_left > 0 && (acc >= total / (uint64_t)n_shards * (uint64_t)(s + 1) || tensors_left == shards_left))
            s++;
    }
}

static int write_index(const char *dir, const Planned *p, int n, const int *shard_of, int n_shards, Err *e) {
    cJSON *root = cJSON_CreateObject();
    uint64_t total = 0;
    for (int i = 0; i < n; i++) total += st_specs_nbytes(&p[i].spec, 1);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(root, "metadata"), "total_size", (double)total);
    cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
    for (int i = 0; i < n; i++) {
        char *name = shard_name(shard_of[i], n_shards);
        cJSON_AddStringToObject(map, p[i].name, name);
        free(name);
    }
    int rc = write_json_file(dir, "model.safetensors.index.json", root, e);
    cJSON_Delete(root);
    return rc;
}

static int write_weights(const SynthSpec *s, const Arch *a, const char *dir, SynthResult *res, Err *e) {
    int n;
    Planned *p = plan_tensors(s, a, &n);
    if (s->n_shards > n) {
        free(p);
        return err_set(e, "%d shards requested but the model has only %d tensors", s->n_shards, n);
    }
    pthread_once(&normal_once, build_normal_table);
    res->n_tensors = n;
    for (int i = 0; i < n; i++) {
        uint64_t b = st_specs_nbytes(&p[i].spec, 1);
        res->bytes += b;
        res->n_params += b / st_dtype_size(p[i].spec.dtype);
    }
    int *shard_of = xcalloc((size_t)n, sizeof *shard_of);
    split_shards(p, n, s->n_shards, shard_of);
    unsigned char *buf = xmalloc(CHUNK_VALUES * 4);
    ValueTable *vt = xmalloc(sizeof *vt);
    int threads = par_threads(s->threads), rc = 0;
    for (int sh = 0, i = 0; sh < s->n_shards && rc == 0; sh++) {
        int first = i;
        while (i < n && shard_of[i] == sh) i++;
        StWriteSpec *specs = xcalloc((size_t)(i - first), sizeof *specs);
        for (int k = first; k < i; k++) specs[k - first] = p[k].spec;
        char *name = shard_name(sh, s->n_shards), *path = path_join(dir, name);
        StWriter *w;
        rc = st_writer_open(&w, path, specs, (size_t)(i - first), e);
        for (int k = first; k < i && rc == 0; k++) rc = write_tensor(w, &p[k], buf, vt, threads, e);
        if (rc == 0) rc = st_writer_finish(w, e);
        else st_writer_abort(w);
        free(specs);
        free(name);
        free(path);
    }
    if (rc == 0 && s->n_shards > 1) rc = write_index(dir, p, n, shard_of, s->n_shards, e);
    free(buf);
    free(vt);
    free(shard_of);
    free(p);
    return rc;
}

/* ==== the output directory ================================================ */

static int write_all(const SynthSpec *spec, const char *dir, SynthResult *res, Err *e) {
    SynthSpec s = *spec;
    SynthTokenIds ids = {0};
    if (s.tokenizer_dir[0]) {
        if (synth_copy_tokenizer(s.tokenizer_dir, dir, &ids, e) < 0) return -1;
        if (!s.vocab) s.vocab = (ids.size + 63) / 64 * 64;
    } else {
        if (!s.vocab) s.vocab = 320;
        if (synth_write_builtin_tokenizer(dir, s.vocab, &ids, e) < 0) return -1;
    }
    if (write_configs(&s, &ids, dir, e) < 0) return -1;
    Arch a;
    if (arch_load(&a, dir, e) < 0) return err_wrap(e, "internal: the written config.json does not parse");
    res->vocab = s.vocab;
    int rc = write_weights(&s, &a, dir, res, e);
    arch_free(&a);
    return rc;
}

int synth_write(const SynthSpec *s, const char *out_dir, int overwrite, SynthResult *res, Err *e) {
    SynthResult local;
    if (!res) res = &local;
    memset(res, 0, sizeof *res);
    if (check_spec(s, e) < 0) return -1;
    if (path_exists(out_dir) && !overwrite)
        return err_set(e, "%s already exists (use --force to replace it)", out_dir);
    char *tmp = xasprintf("%s.partial-%ld", out_dir, (long)getpid());
    remove_tree(tmp);
    int rc = mkdir_p(tmp, e);
    if (rc == 0) rc = write_all(s, tmp, res, e);
    if (rc == 0 && path_exists(out_dir)) {
        char *old = xasprintf("%s.old-%ld", out_dir, (long)getpid());
        if (rename(out_dir, old) < 0) rc = err_errno(e, "cannot replace %s", out_dir);
        else remove_tree(old);
        free(old);
    }
    if (rc == 0 && rename(tmp, out_dir) < 0) rc = err_errno(e, "cannot rename %s to %s", tmp, out_dir);
    if (rc < 0) remove_tree(tmp);
    free(tmp);
    return rc;
}
