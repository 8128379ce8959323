/* arch.c - config.json -> Arch, tensor names, RoPE frequencies (see arch.h). */
#include "model/arch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "io/json.h"

#define CONFIG_MAX_BYTES ((size_t)64 << 20)

/* ==== reading keys ======================================================== */

/* Where keys are read from: the text model's object ("text_config" in a multimodal config)
 * with the file name and key prefix used in errors. */
typedef struct Cfg {
    const cJSON *obj;
    const cJSON *outer;     /* the multimodal top level, for keys the text config lacks; or NULL */
    const char *origin;     /* file path */
    const char *keyprefix;  /* "" or "text_config." */
    Err *e;
} Cfg;

/* "<file>: <prefix><key>: <what is wrong>" from the getter's "<key>: <what is wrong>". */
static int cfg_fail(const Cfg *c) {
    char msg[sizeof c->e->msg];
    snprintf(msg, sizeof msg, "%s", c->e->msg);
    return err_set(c->e, "%s: %s%s", c->origin, c->keyprefix, msg);
}

/* Integer key in [min, max]; absent or null -> *out = def. */
static int cfg_int(const Cfg *c, const char *key, int64_t min, int64_t max, int64_t def, int64_t *out) {
    int r = json_get_int(c->obj, key, min, max, out, c->e);
    if (r < 0) return cfg_fail(c);
    if (r == 0) *out = def;
    return 0;
}

static int cfg_int32(const Cfg *c, const char *key, int64_t min, int64_t max, int64_t def, int *out) {
    int64_t v;
    if (cfg_int(c, key, min, max, def, &v) < 0) return -1;
    *out = (int)v;
    return 0;
}

static int cfg_double(const Cfg *c, const char *key, double def, double *out) {
    int r = json_get_double(c->obj, key, out, c->e);
    if (r < 0) return cfg_fail(c);
    if (r == 0) *out = def;
    return 0;
}

static int cfg_bool(const Cfg *c, const char *key, int def, int *out) {
    int r = json_get_bool(c->obj, key, out, c->e);
    if (r < 0) return cfg_fail(c);
    if (r == 0) *out = def;
    return 0;
}

static int cfg_string(const Cfg *c, const char *key, const char *def, const char **out) {
    int r = json_get_string(c->obj, key, out, c->e);
    if (r < 0) return cfg_fail(c);
    if (r == 0) *out = def;
    return 0;
}

/* A key present and not null. */
static const cJSON *cfg_item(const cJSON *obj, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    return it && !cJSON_IsNull(it) ? it : NULL;
}

/* ==== families ============================================================ */

typedef struct FamilyDefaults {
    const char *model_type;
    ArchFamily family;
    int hidden, n_layers, n_heads, n_kv_heads, intermediate, vocab; /* n_kv_heads 0 = n_heads */
    double rope_theta, rms_eps;
    int tied, max_position;
    int head_dim;           /* 0 = hidden / heads */
    const char *act;
    int bos, eos;           /* -1 = none */
} FamilyDefaults;

/* transformers 4.57 config-class defaults, used for every key a config.json omits, as
 * transformers does. Released configs are not always complete: Gemma 3 multimodal
 * text_config objects list only what differs from these (gemma-3-4b-it gives hidden size,
 * MLP size, layers, rope_scaling and window, and relies on the defaults for heads and vocab). */
static const FamilyDefaults families[] = {
    {"llama", FAMILY_LLAMA, 4096, 32, 32, 0, 11008, 32000, 10000.0, 1e-6, 0, 2048, 0, "silu", 1, 2},
    {"qwen2", FAMILY_QWEN2, 4096, 32, 32, 32, 22016, 151936, 10000.0, 1e-6, 0, 32768, 0, "silu", -1, -1},
    {"qwen3", FAMILY_QWEN3, 4096, 32, 32, 32, 22016, 151936, 10000.0, 1e-6, 0, 32768, 128, "silu", -1, -1},
    {"gemma3_text", FAMILY_GEMMA3, 2304, 26, 8, 4, 9216, 262208, 1000000.0, 1e-6, 1, 131072, 256, "gelu_pytorch_tanh",
     2, 1},
};

const char *arch_family_name(ArchFamily f) {
    switch (f) {
    case FAMILY_LLAMA: return "llama";
    case FAMILY_QWEN2: return "qwen2";
    case FAMILY_QWEN3: return "qwen3";
    case FAMILY_GEMMA3: return "gemma3";
    }
    return "?";
}

/* ==== pieces of the config ================================================ */

static int parse_rope_scaling(const Cfg *c, RopeScaling *rs) {
    memset(rs, 0, sizeof *rs);
    rs->type = ROPE_DEFAULT;
    rs->factor = 1.0;
    const cJSON *it = cfg_item(c->obj, "rope_scaling");
    if (!it) return 0;
    if (!cJSON_IsObject(it))
        return err_set(c->e, "%s: %srope_scaling must be an object or null, got %s", c->origin, c->keyprefix,
                       json_type_name(it));
    Cfg sub = *c;
    sub.obj = it;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%srope_scaling.", c->keyprefix);
    sub.keyprefix = prefix;
    const char *type = NULL;
    if (cfg_string(&sub, "rope_type", NULL, &type) < 0) return -1;
    if (!type && cfg_string(&sub, "type", NULL, &type) < 0) return -1;
    if (!type || !strcmp(type, "default")) return 0;
    if (!strcmp(type, "linear")) {
        rs->type = ROPE_LINEAR;
    } else if (!strcmp(type, "llama3")) {
        rs->type = ROPE_LLAMA3;
    } else {
        return err_set(c->e, "%s: %srope_scaling type \"%.40s\" is not supported (supported: default, linear, llama3)",
                       c->origin, c->keyprefix, type);
    }
    if (cfg_double(&sub, "factor", NAN, &rs->factor) < 0) return -1;
    if (isnan(rs->factor))
        return err_set(c->e, "%s: required key \"%sfactor\" is missing", c->origin, prefix);
    if (!(rs->factor > 0)) return err_set(c->e, "%s: %sfactor must be positive", c->origin, prefix);
    if (rs->type == ROPE_LINEAR) return 0;
    static const char *keys[] = {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};
    double *vals[] = {&rs->low_freq_factor, &rs->high_freq_factor, &rs->original_max_position};
    for (int i = 0; i < 3; i++) {
        if (cfg_double(&sub, keys[i], NAN, vals[i]) < 0) return -1;
        if (isnan(*vals[i]))
            return err_set(c->e, "%s: required key \"%s%s\" is missing (llama3 rope scaling)", c->origin, prefix,
                           keys[i]);
        if (!(*vals[i] > 0)) return err_set(c->e, "%s: %s%s must be positive", c->origin, prefix, keys[i]);
    }
    if (!(rs->high_freq_factor > rs->low_freq_factor))
        return err_set(c->e, "%s: %shigh_freq_factor must be larger than low_freq_factor", c->origin, prefix);
    return 0;
}

static int parse_activation(const Cfg *c, const FamilyDefaults *fd, Activation *act) {
    const char *name = NULL;
    const char *key = fd->family == FAMILY_GEMMA3 ? "hidden_activation" : "hidden_act";
    if (cfg_string(c, key, NULL, &name) < 0) return -1;
    if (!name && fd->family == FAMILY_GEMMA3) {
        key = "hidden_act";
        if (cfg_string(c, key, NULL, &name) < 0) return -1;
    }
    if (!name) name = fd->act;
    if (!strcmp(name, "silu") || !strcmp(name, "swish")) *act = ACT_SILU;
    else if (!strcmp(name, "gelu_pytorch_tanh")) *act = ACT_GELU_TANH;
    else
        return err_set(c->e, "%s: %s%s \"%.40s\" is not supported (supported: silu, gelu_pytorch_tanh)", c->origin,
                       c->keyprefix, key, name);
    return 0;
}

/* Token id fields: an integer, a list of integers (eos), or null. */
static int parse_token_ids(const Cfg *c, const char *key, int *ids, int max, int *n) {
    *n = 0;
    const cJSON *it = cfg_item(c->obj, key);
    if (!it && c->outer) it = cfg_item(c->outer, key);
    if (!it) return 0;
    const cJSON *one = it;
    if (cJSON_IsArray(it)) one = it->child;
    for (; one; one = cJSON_IsArray(it) ? one->next : NULL) {
        uint64_t v;
        if (json_as_count(one, &v) < 0 || v > 0x7fffffff)
            return err_set(c->e, "%s: %s%s must be a token id or a list of token ids", c->origin, c->keyprefix, key);
        if (*n < max) ids[(*n)++] = (int)v;
    }
    return 0;
}

/* layer_types list, or the family's default rule. */
static int parse_layer_types(const Cfg *c, Arch *a, int max_window_layers, int pattern) {
    a->layer_sliding = xcalloc((size_t)a->n_layers, 1);
    const cJSON *lt = a->family == FAMILY_LLAMA ? NULL : cfg_item(c->obj, "layer_types");
    if (lt) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != a->n_layers)
            return err_set(c->e, "%s: %slayer_types must be a list of %d entries (one per layer)", c->origin,
                           c->keyprefix, a->n_layers);
        int i = 0;
        for (const cJSON *t = lt->child; t; t = t->next, i++) {
            if (cJSON_IsString(t) && !strcmp(t->valuestring, "sliding_attention")) a->layer_sliding[i] = 1;
            else if (!cJSON_IsString(t) || strcmp(t->valuestring, "full_attention"))
                return err_set(c->e, "%s: %slayer_types[%d] must be \"sliding_attention\" or \"full_attention\"",
                               c->origin, c->keyprefix, i);
        }
    } else if (a->family == FAMILY_GEMMA3) {
        /* every pattern-th layer is global, the others slide (transformers' default) */
        for (int i = 0; i < a->n_layers; i++) a->layer_sliding[i] = ((i + 1) % pattern) != 0;
    } else if (a->family == FAMILY_QWEN2 || a->family == FAMILY_QWEN3) {
        for (int i = 0; i < a->n_layers; i++) a->layer_sliding[i] = i >= max_window_layers;
    }
    if (!a->sliding_window) memset(a->layer_sliding, 0, (size_t)a->n_layers);
    return 0;
}

static int parse_sliding(const Cfg *c, Arch *a) {
    int use = 1, max_window_layers = 0, pattern = 6;
    int64_t window = 0;
    if (a->family == FAMILY_LLAMA) return parse_layer_types(c, a, 0, 1);
    if (a->family != FAMILY_GEMMA3) {
        /* Qwen: sliding_window only counts with use_sliding_window (released Qwen2.5 configs
           carry a value with use_sliding_window false, which means no window) */
        if (cfg_bool(c, "use_sliding_window", 0, &use) < 0) return -1;
        if (cfg_int32(c, "max_window_layers", 0, 1 << 20, 28, &max_window_layers) < 0) return -1;
    } else {
        int bidir = 0;
        if (cfg_bool(c, "use_bidirectional_attention", 0, &bidir) < 0) return -1;
        if (bidir)
            return err_set(c->e, "%s: %suse_bidirectional_attention is true (an embedding model); only causal "
                                 "language models are supported",
                           c->origin, c->keyprefix);
        if (cfg_int32(c, "sliding_window_pattern", 1, 1 << 20, 6, &pattern) < 0) return -1;
    }
    int64_t def = 4096;
    if (cfg_item(c->obj, "sliding_window") == NULL && cJSON_GetObjectItemCaseSensitive(c->obj, "sliding_window"))
        def = 0; /* explicit null */
    if (cfg_int(c, "sliding_window", 0, 1 << 30, def, &window) < 0) return -1;
    a->sliding_window = use ? (int)window : 0;
    return parse_layer_types(c, a, max_window_layers, pattern);
}

static int check_dims(const Cfg *c, Arch *a, int head_dim_given) {
    if (a->n_kv_heads > a->n_heads || a->n_heads % a->n_kv_heads)
        return err_set(c->e, "%s: %snum_attention_heads (%d) must be a multiple of num_key_value_heads (%d)",
                       c->origin, c->keyprefix, a->n_heads, a->n_kv_heads);
    if (!head_dim_given && a->hidden % a->n_heads)
        return err_set(c->e, "%s: %shidden_size (%d) is not a multiple of num_attention_heads (%d) and there is no "
                             "head_dim",
                       c->origin, c->keyprefix, a->hidden, a->n_heads);
    if (a->head_dim % 2)
        return err_set(c->e, "%s: %shead_dim (%d) must be even for RoPE", c->origin, c->keyprefix, a->head_dim);
    if (a->head_dim > ARCH_MAX_HEAD_DIM)
        return err_set(c->e, "%s: %shead_dim (hidden_size / num_attention_heads = %d) is larger than %d", c->origin,
                       c->keyprefix, a->head_dim, ARCH_MAX_HEAD_DIM);
    return 0;
}

static int parse_text_config(const Cfg *c, const FamilyDefaults *fd, Arch *a) {
    a->family = fd->family;
    int gemma = fd->family == FAMILY_GEMMA3;
    if (cfg_int32(c, "hidden_size", 1, 1 << 20, fd->hidden, &a->hidden) < 0 ||
        cfg_int32(c, "num_hidden_layers", 1, 4096, fd->n_layers, &a->n_layers) < 0 ||
        cfg_int32(c, "num_attention_heads", 1, 4096, fd->n_heads, &a->n_heads) < 0 ||
        cfg_int32(c, "num_key_value_heads", 1, 4096, fd->n_kv_heads ? fd->n_kv_heads : a->n_heads,
                  &a->n_kv_heads) < 0 ||
        cfg_int32(c, "intermediate_size", 1, 1 << 22, fd->intermediate, &a->intermediate) < 0 ||
        cfg_int32(c, "vocab_size", 1, 1 << 24, fd->vocab, &a->vocab) < 0 ||
        cfg_int32(c, "max_position_embeddings", 1, 1 << 30, fd->max_position, &a->max_position) < 0)
        return -1;
    int head_dim_given = cfg_item(c->obj, "head_dim") != NULL;
    int64_t hd_default = fd->head_dim ? fd->head_dim : a->hidden / a->n_heads;
    if (cfg_int32(c, "head_dim", 2, ARCH_MAX_HEAD_DIM, hd_default, &a->head_dim) < 0) return -1;
    if (check_dims(c, a, head_dim_given || fd->head_dim) < 0) return -1;

    double eps;
    if (cfg_double(c, "rms_norm_eps", fd->rms_eps, &eps) < 0) return -1;
    if (eps < 0) return err_set(c->e, "%s: %srms_norm_eps must not be negative", c->origin, c->keyprefix);
    a->rms_eps = (float)eps;
    a->norm_plus_one = a->sandwich_norms = gemma;
    a->qk_norm = gemma || fd->family == FAMILY_QWEN3;

    int attention_bias = 0;
    if (cfg_bool(c, "attention_bias", 0, &attention_bias) < 0) return -1;
    a->qkv_bias = fd->family == FAMILY_QWEN2 || attention_bias;
    a->o_bias = fd->family != FAMILY_QWEN2 && attention_bias;
    if (fd->family == FAMILY_LLAMA && cfg_bool(c, "mlp_bias", 0, &a->mlp_bias) < 0) return -1;
    if (parse_activation(c, fd, &a->act) < 0) return -1;

    a->embed_scale = gemma ? (float)sqrt((double)a->hidden) : 1.0f;
    int tied_default = fd->tied;
    if (c->outer) {
        int outer_tied;
        int r = json_get_bool(c->outer, "tie_word_embeddings", &outer_tied, c->e);
        if (r < 0) return err_wrap(c->e, "%s", c->origin);
        if (r > 0) tied_default = outer_tied;
    }
    if (cfg_bool(c, "tie_word_embeddings", tied_default, &a->tied) < 0) return -1;

    double qpas = a->head_dim, softcap = 0, final_softcap = 0;
    if (gemma) {
        if (cfg_double(c, "query_pre_attn_scalar", 256, &qpas) < 0) return -1;
        if (!(qpas > 0)) return err_set(c->e, "%s: %squery_pre_attn_scalar must be positive", c->origin, c->keyprefix);
        if (cfg_double(c, "attn_logit_softcapping", 0, &softcap) < 0 ||
            cfg_double(c, "final_logit_softcapping", 0, &final_softcap) < 0)
            return -1;
    }
    a->attn_scale = (float)pow(qpas, -0.5);
    a->attn_logit_softcap = (float)softcap;
    a->final_logit_softcap = (float)final_softcap;

    if (cfg_double(c, "rope_theta", fd->rope_theta, &a->rope_theta) < 0) return -1;
    if (!(a->rope_theta > 0)) return err_set(c->e, "%s: %srope_theta must be positive", c->origin, c->keyprefix);
    a->rope_local_theta = a->rope_theta;
    if (gemma && cfg_double(c, "rope_local_base_freq", 10000.0, &a->rope_local_theta) < 0) return -1;
    if (!(a->rope_local_theta > 0))
        return err_set(c->e, "%s: %srope_local_base_freq must be positive", c->origin, c->keyprefix);
    if (parse_rope_scaling(c, &a->rope_scaling) < 0) return -1;
    if (parse_sliding(c, a) < 0) return -1;

    a->bos_id = -1;
    int n;
    if (parse_token_ids(c, "bos_token_id", &a->bos_id, 1, &n) < 0) return -1;
    if (!n && !cJSON_GetObjectItemCaseSensitive(c->obj, "bos_token_id")) a->bos_id = fd->bos;
    if (parse_token_ids(c, "eos_token_id", a->eos_ids, ARCH_MAX_EOS, &a->n_eos) < 0) return -1;
    if (!a->n_eos && !cJSON_GetObjectItemCaseSensitive(c->obj, "eos_token_id") && fd->eos >= 0) {
        a->eos_ids[0] = fd->eos;
        a->n_eos = 1;
    }
    return 0;
}

static int reject_quantized(const cJSON *obj, const char *origin, const char *where, Err *e) {
    const cJSON *q = cfg_item(obj, "quantization_config");
    if (!q) return 0;
    const char *method = NULL;
    if (cJSON_IsObject(q)) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
        if (cJSON_IsString(m)) method = m->valuestring;
    }
    return err_set(e,
                   "%s: %squantization_config is set%s%.40s%s: this is a quantized checkpoint. anemll converts "
                   "BF16/F16/F32 weights; dequantize it first (load it and save it again in bfloat16)",
                   origin, where, method ? " (quant_method \"" : "", method ? method : "", method ? "\")" : "");
}

/* A key given twice has no agreed meaning (transformers keeps the last, lookups here would
 * find the first): refused rather than guessed. */
static int reject_duplicates(const cJSON *obj, const char *origin, const char *where, Err *e) {
    const char *key;
    if (!json_duplicate_key(obj, &key)) return 0;
    return err_set(e, "%s: key \"%s%.80s\" appears twice; keep one", origin, where, key);
}

/* ==== public: parse / load / free ========================================= */

int arch_parse(Arch *a, const char *json, size_t len, const char *origin, Err *e) {
    memset(a, 0, sizeof *a);
    cJSON *root;
    if (json_parse_text(json, len, origin, &root, e) < 0) return -1;
    int rc = -1;
    const char *type = NULL;
    if (!cJSON_IsObject(root)) {
        err_set(e, "%s: must be a JSON object", origin);
        goto done;
    }
    if (reject_duplicates(root, origin, "", e) < 0 || reject_quantized(root, origin, "", e) < 0) goto done;
    if (json_get_string(root, "model_type", &type, e) < 0) {
        err_wrap(e, "%s", origin);
        goto done;
    }
    if (!type) {
        err_set(e, "%s: no model_type; supported model types: %s", origin, ARCH_SUPPORTED_TYPES);
        goto done;
    }
    Cfg c = {root, NULL, origin, "", e};
    const char *text_type = type;
    if (!strcmp(type, "gemma3")) {
        const cJSON *tc = cfg_item(root, "text_config");
        if (!cJSON_IsObject(tc)) {
            err_set(e, "%s: model_type gemma3 needs a \"text_config\" object describing the language model", origin);
            goto done;
        }
        if (reject_duplicates(tc, origin, "text_config.", e) < 0 || reject_quantized(tc, origin, "text_config.", e) < 0)
            goto done;
        text_type = "gemma3_text";
        const char *inner = NULL;
        if (json_get_string(tc, "model_type", &inner, e) < 0) {
            err_wrap(e, "%s: text_config", origin);
            goto done;
        }
        if (inner && strcmp(inner, "gemma3_text")) {
            err_set(e, "%s: text_config.model_type is \"%.40s\", expected gemma3_text", origin, inner);
            goto done;
        }
        c.obj = tc;
        c.outer = root;
        c.keyprefix = "text_config.";
        a->multimodal = 1;
    }
    const FamilyDefaults *fd = NULL;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (!strcmp(families[i].model_type, text_type)) fd = &families[i];
    if (!fd) {
        err_set(e, "%s: model_type \"%.40s\" is not supported; supported model types: %s", origin, type,
                ARCH_SUPPORTED_TYPES);
        goto done;
    }
    snprintf(a->model_type, sizeof a->model_type, "%s", type);
    if (parse_text_config(&c, fd, a) < 0) goto done;
    snprintf(a->prefix, sizeof a->prefix, "%s", a->multimodal ? "language_model.model." : "model.");
    if (a->tied) arch_tensor_name(a, "embed_tokens.weight", a->lm_head_name, sizeof a->lm_head_name);
    else snprintf(a->lm_head_name, sizeof a->lm_head_name, "%s", a->multimodal ? "language_model.lm_head.weight" : "lm_head.weight");
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc < 0) arch_free(a);
    return rc;
}

int arch_load(Arch *a, const char *model_dir, Err *e) {
    memset(a, 0, sizeof *a);
    char *path = path_join(model_dir, "config.json");
    char *text = NULL;
    size_t len;
    int rc = file_read_all(path, CONFIG_MAX_BYTES, &text, &len, e);
    if (rc == 0) rc = arch_parse(a, text, len, path, e);
    free(text);
    free(path);
    return rc;
}

void arch_free(Arch *a) {
    free(a->layer_sliding);
    a->layer_sliding = NULL;
}

int arch_q_dim(const Arch *a) { return a->n_heads * a->head_dim; }
int arch_kv_dim(const Arch *a) { return a->n_kv_heads * a->head_dim; }
int arch_is_sliding(const Arch *a, int layer) { return a->layer_sliding[layer] != 0; }

int arch_n_sliding(const Arch *a) {
    int n = 0;
    for (int i = 0; i < a->n_layers; i++) n += a->layer_sliding[i];
    return n;
}

/* ==== RoPE ================================================================ */

/* Gemma's sliding layers use their own base and no scaling; every other layer uses
 * rope_theta and rope_scaling. */
static int uses_local_rope(const Arch *a, int layer) {
    return a->family == FAMILY_GEMMA3 && a->layer_sliding[layer];
}

/* The arithmetic below is float32, operation by operation, as transformers' tensors are. */
static void llama3_rescale(const RopeScaling *rs, float *inv, int n) {
    const float factor = (float)rs->factor, low = (float)rs->low_freq_factor, high = (float)rs->high_freq_factor;
    const float old_len = (float)rs->original_max_position;
    const float low_freq_wavelen = (float)(rs->original_max_position / rs->low_freq_factor);
    const float high_freq_wavelen = (float)(rs->original_max_position / rs->high_freq_factor);
    const float two_pi = (float)(2.0 * M_PI);
    for (int i = 0; i < n; i++) {
        float wavelen = two_pi / inv[i];
        if (wavelen > low_freq_wavelen) {
            inv[i] = inv[i] / factor;
        } else if (!(wavelen < high_freq_wavelen)) {
            float smooth = (old_len / wavelen - low) / (high - low);
            inv[i] = (1.0f - smooth) * inv[i] / factor + smooth * inv[i];
        }
    }
}

void arch_rope_inv_freq(const Arch *a, int layer, float *inv_freq) {
    int local = uses_local_rope(a, layer), half = a->head_dim / 2;
    float base = (float)(local ? a->rope_local_theta : a->rope_theta);
    for (int i = 0; i < half; i++) {
        float exponent = (float)(2 * i) / (float)a->head_dim;
        inv_freq[i] = 1.0f / powf(base, exponent);
    }
    if (local) return;
    const RopeScaling *rs = &a->rope_scaling;
    if (rs->type == ROPE_LINEAR) {
        for (int i = 0; i < half; i++) inv_freq[i] = inv_freq[i] / (float)rs->factor;
    } else if (rs->type == ROPE_LLAMA3) {
        llama3_rescale(rs, inv_freq, half);
    }
}

float arch_rope_attention_scaling(const Arch *a, int layer) {
    (void)a;
    (void)layer;
    return 1.0f; /* default, linear and llama3 leave the magnitude alone */
}

void arch_rope_cos_sin(const Arch *a, int layer, long pos, float *cos_out, float *sin_out) {
    int half = a->head_dim / 2;
    float inv[ARCH_MAX_HEAD_DIM / 2];
    AN_ASSERT(half <= ARCH_MAX_HEAD_DIM / 2);   /* arch_parse refuses larger heads */
    arch_rope_inv_freq(a, layer, inv);
    float scale = arch_rope_attention_scaling(a, layer);
    for (int i = 0; i < half; i++) {
        float angle = (float)pos * inv[i];
        cos_out[i] = cosf(angle) * scale;
        sin_out[i] = sinf(angle) * scale;
    }
}

/* ==== tensor names ======================================================== */

static const char *weight_suffix(const Arch *a, ArchWeight w) {
    switch (w) {
    case W_ATTN_NORM: return "input_layernorm.weight";
    case W_Q: return "self_attn.q_proj.weight";
    case W_K: return "self_attn.k_proj.weight";
    case W_V: return "self_attn.v_proj.weight";
    case W_O: return "self_attn.o_proj.weight";
    case W_Q_BIAS: return "self_attn.q_proj.bias";
    case W_K_BIAS: return "self_attn.k_proj.bias";
    case W_V_BIAS: return "self_attn.v_proj.bias";
    case W_O_BIAS: return "self_attn.o_proj.bias";
    case W_Q_NORM: return "self_attn.q_norm.weight";
    case W_K_NORM: return "self_attn.k_norm.weight";
    case W_POST_ATTN_NORM: return "post_attention_layernorm.weight";
    case W_MLP_NORM: return a->sandwich_norms ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight";
    case W_POST_MLP_NORM: return "post_feedforward_layernorm.weight";
    case W_GATE: return "mlp.gate_proj.weight";
    case W_UP: return "mlp.up_proj.weight";
    case W_DOWN: return "mlp.down_proj.weight";
    case W_GATE_BIAS: return "mlp.gate_proj.bias";
    case W_UP_BIAS: return "mlp.up_proj.bias";
    case W_DOWN_BIAS: return "mlp.down_proj.bias";
    case W_LAYER_COUNT: break;
    }
    return "?";
}

int arch_has_weight(const Arch *a, ArchWeight w) {
    switch (w) {
    case W_Q_BIAS:
    case W_K_BIAS:
    case W_V_BIAS: return a->qkv_bias;
    case W_O_BIAS: return a->o_bias;
    case W_Q_NORM:
    case W_K_NORM: return a->qk_norm;
    case W_POST_ATTN_NORM:
    case W_POST_MLP_NORM: return a->sandwich_norms;
    case W_GATE_BIAS:
    case W_UP_BIAS:
    case W_DOWN_BIAS: return a->mlp_bias;
    case W_LAYER_COUNT: return 0;
    default: return 1;
    }
}

const char *arch_layer_tensor_name(const Arch *a, int layer, ArchWeight w, char *buf, size_t n) {
    snprintf(buf, n, "%slayers.%d.%s", a->prefix, layer, weight_suffix(a, w));
    return buf;
}

int arch_layer_tensor_shape(const Arch *a, ArchWeight w, long shape[2]) {
    long h = a->hidden, q = arch_q_dim(a), kv = arch_kv_dim(a), ff = a->intermediate;
    shape[1] = 0;
    switch (w) {
    case W_Q: shape[0] = q; shape[1] = h; return 2;
    case W_K:
    case W_V: shape[0] = kv; shape[1] = h; return 2;
    case W_O: shape[0] = h; shape[1] = q; return 2;
    case W_GATE:
    case W_UP: shape[0] = ff; shape[1] = h; return 2;
    case W_DOWN: shape[0] = h; shape[1] = ff; return 2;
    case W_Q_BIAS: shape[0] = q; return 1;
    case W_K_BIAS:
    case W_V_BIAS: shape[0] = kv; return 1;
    case W_Q_NORM:
    case W_K_NORM: shape[0] = a->head_dim; return 1;
    case W_GATE_BIAS:
    case W_UP_BIAS: shape[0] = ff; return 1;
    default: shape[0] = h; return 1; /* norms, o/down biases */
    }
}

const char *arch_tensor_name(const Arch *a, const char *suffix, char *buf, size_t n) {
    snprintf(buf, n, "%s%s", a->prefix, suffix);
    return buf;
}

const char *arch_lm_head_name(const Arch *a) { return a->lm_head_name; }

int arch_tensor_list(const Arch *a, ArchTensor **out, int *n) {
    int cap = 3 + a->n_layers * W_LAYER_COUNT, k = 0;
    ArchTensor *list = xcalloc((size_t)cap, sizeof *list);
    ArchTensor *t = &list[k++];
    *t = (ArchTensor){.layer = -1, .weight = -1, .ndim = 2, .shape = {a->vocab, a->hidden}};
    arch_tensor_name(a, "embed_tokens.weight", t->name, sizeof t->name);
    for (int l = 0; l < a->n_layers; l++)
        for (int w = 0; w < W_LAYER_COUNT; w++) {
            if (!arch_has_weight(a, (ArchWeight)w)) continue;
            t = &list[k++];
            t->layer = l;
            t->weight = w;
            t->ndim = arch_layer_tensor_shape(a, (ArchWeight)w, t->shape);
            arch_layer_tensor_name(a, l, (ArchWeight)w, t->name, sizeof t->name);
        }
    t = &list[k++];
    *t = (ArchTensor){.layer = -1, .weight = -1, .ndim = 1, .shape = {a->hidden, 0}};
    arch_tensor_name(a, "norm.weight", t->name, sizeof t->name);
    if (!a->tied) {
        t = &list[k++];
        *t = (ArchTensor){.layer = -1, .weight = -1, .ndim = 2, .shape = {a->vocab, a->hidden}};
        snprintf(t->name, sizeof t->name, "%s", a->lm_head_name);
    }
    *out = list;
    *n = k;
    return 0;
}

void arch_free_tensor_list(ArchTensor *list) { free(list); }
