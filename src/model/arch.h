/* arch.h - one architecture description for the LLaMA family, parsed from config.json.
 *
 * Supported config.json model_type values (Hugging Face transformers 4.57 semantics):
 *   llama        Llama 3.x, DeepSeek-R1-Distill-Llama
 *   qwen2        Qwen2.5: q/k/v projections with biases
 *   qwen3        Qwen3: per-head q_norm/k_norm before RoPE, explicit head_dim
 *   gemma3_text  Gemma 3 text: four (1+w) RMSNorms per block, sqrt(hidden) embedding scale,
 *                gelu-tanh MLP, sliding-window and global layers with their own RoPE bases,
 *                scores scaled by query_pre_attn_scalar^-1/2
 *   gemma3       Gemma 3 multimodal: the text model described by "text_config", weights under
 *                "language_model.model.*"; vision weights are ignored
 * Anything else is an error listing these. A config with "quantization_config" is refused with
 * a request to dequantize first.
 *
 * This header is the single source of truth for what later code derives from the config:
 * tensor names (arch_layer_tensor_name / arch_tensor_name / arch_lm_head_name), which layers
 * use a sliding window (Arch.layer_sliding), and the RoPE inverse frequencies, computed exactly
 * as transformers does (arch_rope_inv_freq / arch_rope_cos_sin), which the converter turns into
 * its cos/sin constant tables.
 *
 * Block structure (x is the residual stream, one row of `hidden` values):
 *   llama/qwen:  x += o_proj(attn(norm_attn(x)));  x += down(act(gate(h)) * up(h)), h = norm_mlp(x)
 *   gemma3:      x += post_attn_norm(o_proj(attn(norm_attn(x))));
 *                x += post_mlp_norm(down(act(gate(h)) * up(h))), h = norm_mlp(x)
 *   logits = lm_head(final_norm(x)); x starts as embed_tokens[token] * embed_scale.
 *
 * Ownership: arch_load / arch_parse fill a caller-owned Arch; release with arch_free.
 * Returns 0, or -1 with e->msg naming the config file and key.
 */
#ifndef ANEMLL_MODEL_ARCH_H
#define ANEMLL_MODEL_ARCH_H

#include <stddef.h>

#include "common/err.h"

#define ARCH_MAX_EOS 16
#define ARCH_MAX_HEAD_DIM 4096      /* head_dim, given or derived (hidden_size / heads) */
#define ARCH_SUPPORTED_TYPES "llama, qwen2, qwen3, gemma3_text, gemma3"

typedef enum ArchFamily { FAMILY_LLAMA, FAMILY_QWEN2, FAMILY_QWEN3, FAMILY_GEMMA3 } ArchFamily;

typedef enum RopeType { ROPE_DEFAULT, ROPE_LINEAR, ROPE_LLAMA3 } RopeType;

typedef enum Activation { ACT_SILU, ACT_GELU_TANH } Activation;

/* config.json "rope_scaling" (transformers' rope_type semantics). */
typedef struct RopeScaling {
    RopeType type;
    double factor;                  /* linear, llama3 */
    double low_freq_factor;         /* llama3 */
    double high_freq_factor;        /* llama3 */
    double original_max_position;   /* llama3: original_max_position_embeddings */
} RopeScaling;

typedef struct Arch {
    char model_type[32];        /* config.json model_type ("gemma3" for the multimodal wrapper) */
    ArchFamily family;
    int multimodal;             /* gemma3: text model inside a multimodal checkpoint */

    /* dimensions */
    int hidden;                 /* hidden_size: width of the residual stream */
    int n_layers;               /* num_hidden_layers */
    int n_heads;                /* num_attention_heads */
    int n_kv_heads;             /* num_key_value_heads (GQA: n_heads % n_kv_heads == 0) */
    int head_dim;               /* config head_dim, else hidden / n_heads (gemma3 default 256) */
    int intermediate;           /* intermediate_size: MLP width */
    int vocab;                  /* vocab_size: rows of embed_tokens and lm_head */
    int max_position;           /* max_position_embeddings (informational) */

    /* normalisation */
    float rms_eps;              /* rms_norm_eps */
    int norm_plus_one;          /* gemma: RMSNorm gain is (1 + w), else w */
    int sandwich_norms;         /* gemma: post_attention / post_feedforward norms on the branch outputs */
    int qk_norm;                /* qwen3, gemma3: RMSNorm over each head of q and k, before RoPE */

    /* projections */
    int qkv_bias;               /* q/k/v_proj have .bias (qwen2 always; others: attention_bias) */
    int o_bias;                 /* o_proj has .bias (attention_bias, not qwen2) */
    int mlp_bias;               /* gate/up/down have .bias (llama mlp_bias) */
    Activation act;             /* hidden_act / hidden_activation: silu, gelu_pytorch_tanh */

    /* embeddings and output */
    float embed_scale;          /* 1, or float32(sqrt(hidden)) for gemma */
    int tied;                   /* tie_word_embeddings: lm_head is embed_tokens */
    float final_logit_softcap;  /* 0 = none; else logits = cap * tanh(logits / cap) */

    /* attention */
    float attn_scale;           /* score scale: head_dim^-1/2, gemma query_pre_attn_scalar^-1/2 */
    float attn_logit_softcap;   /* 0 = none (gemma attn_logit_softcapping) */
    int sliding_window;         /* keys visible to a sliding layer: positions p-W+1..p; 0 = none */
    unsigned char *layer_sliding; /* [n_layers]: 1 = sliding-window layer, 0 = global/full */

    /* RoPE */
    double rope_theta;          /* base of global (full-attention) layers */
    RopeScaling rope_scaling;   /* applies to global layers */
    double rope_local_theta;    /* gemma: base of sliding layers (rope_local_base_freq, unscaled);
                                   others: equal to rope_theta and scaled like it */

    /* special tokens (-1 = absent) */
    int bos_id;
    int eos_ids[ARCH_MAX_EOS];
    int n_eos;

    /* tensor naming */
    char prefix[48];            /* "model." or "language_model.model." */
    char lm_head_name[96];      /* "lm_head.weight", or the embed_tokens name when tied */
} Arch;

/* Reads <model_dir>/config.json. */
int arch_load(Arch *a, const char *model_dir, Err *e);
/* Parses config text; `origin` names it in errors (usually the file path). */
int arch_parse(Arch *a, const char *json, size_t len, const char *origin, Err *e);
void arch_free(Arch *a);

int arch_q_dim(const Arch *a);     /* n_heads * head_dim */
int arch_kv_dim(const Arch *a);    /* n_kv_heads * head_dim */
int arch_is_sliding(const Arch *a, int layer);
/* "sliding_attention" / "full_attention" counts, for messages. */
int arch_n_sliding(const Arch *a);
const char *arch_family_name(ArchFamily f);

/* ==== RoPE ================================================================
 * transformers computes, in float32,
 *   inv_freq[i] = 1 / base^(2i / head_dim),   i < head_dim / 2
 * then rescales it for rope_scaling (linear: / factor; llama3: wavelengths longer than
 * original_max_position / low_freq_factor are divided by factor, shorter than
 * original_max_position / high_freq_factor kept, in between interpolated). For position p the
 * angles are p * inv_freq[i] (float32 product) and the rotation pairs value i with value
 * i + head_dim/2 of each head ("rotate_half"):
 *   out[i]        = x[i] * cos[i] - x[i + d/2] * sin[i]
 *   out[i + d/2]  = x[i + d/2] * cos[i] + x[i] * sin[i]
 * cos and sin carry transformers' attention_scaling factor, which is 1 for the supported types.
 */
/* inv_freq[head_dim/2] for the given layer (local or global base and scaling). */
void arch_rope_inv_freq(const Arch *a, int layer, float *inv_freq);
/* cos[head_dim/2], sin[head_dim/2] for position pos in the given layer. */
void arch_rope_cos_sin(const Arch *a, int layer, long pos, float *cos_out, float *sin_out);
/* transformers' attention_scaling for the layer's RoPE (1 for default/linear/llama3). */
float arch_rope_attention_scaling(const Arch *a, int layer);

/* ==== tensor names ======================================================== */

typedef enum ArchWeight {
    W_ATTN_NORM,        /* input_layernorm.weight             [hidden] */
    W_Q,                /* self_attn.q_proj.weight            [q_dim, hidden] */
    W_K,                /* self_attn.k_proj.weight            [kv_dim, hidden] */
    W_V,                /* self_attn.v_proj.weight            [kv_dim, hidden] */
    W_O,                /* self_attn.o_proj.weight            [hidden, q_dim] */
    W_Q_BIAS,           /* self_attn.q_proj.bias              [q_dim]   (qkv_bias) */
    W_K_BIAS,           /* self_attn.k_proj.bias              [kv_dim]  (qkv_bias) */
    W_V_BIAS,           /* self_attn.v_proj.bias              [kv_dim]  (qkv_bias) */
    W_O_BIAS,           /* self_attn.o_proj.bias              [hidden]  (o_bias) */
    W_Q_NORM,           /* self_attn.q_norm.weight            [head_dim] (qk_norm) */
    W_K_NORM,           /* self_attn.k_norm.weight            [head_dim] (qk_norm) */
    W_POST_ATTN_NORM,   /* gemma post_attention_layernorm     [hidden]  (sandwich_norms) */
    W_MLP_NORM,         /* llama/qwen post_attention_layernorm, gemma pre_feedforward_layernorm [hidden] */
    W_POST_MLP_NORM,    /* gemma post_feedforward_layernorm   [hidden]  (sandwich_norms) */
    W_GATE,             /* mlp.gate_proj.weight               [intermediate, hidden] */
    W_UP,               /* mlp.up_proj.weight                 [intermediate, hidden] */
    W_DOWN,             /* mlp.down_proj.weight               [hidden, intermediate] */
    W_GATE_BIAS,        /* mlp.gate_proj.bias                 [intermediate] (mlp_bias) */
    W_UP_BIAS,          /* mlp.up_proj.bias                   [intermediate] (mlp_bias) */
    W_DOWN_BIAS,        /* mlp.down_proj.bias                 [hidden] (mlp_bias) */
    W_LAYER_COUNT
} ArchWeight;

/* 1 if this architecture has the weight, else 0. */
int arch_has_weight(const Arch *a, ArchWeight w);
/* Writes "<prefix>layers.<layer>.<suffix>" into buf (e.g. "model.layers.3.self_attn.q_proj.weight");
 * returns buf. */
const char *arch_layer_tensor_name(const Arch *a, int layer, ArchWeight w, char *buf, size_t n);
/* Shape of a layer weight: ndim (1 or 2) and dims. */
int arch_layer_tensor_shape(const Arch *a, ArchWeight w, long shape[2]);
/* "<prefix><suffix>", e.g. arch_tensor_name(a, "embed_tokens.weight") -> "model.embed_tokens.weight". */
const char *arch_tensor_name(const Arch *a, const char *suffix, char *buf, size_t n);
/* The output projection's tensor: "lm_head.weight" or, when tied, the embed_tokens name. */
const char *arch_lm_head_name(const Arch *a);

/* Every tensor the text model needs, in a stable order (embeddings, layers, final norm, lm_head
 * unless tied): name, ndim, shape. Caller frees the array with arch_free_tensor_list. */
typedef struct ArchTensor {
    char name[128];
    int layer;          /* -1 for model-level tensors */
    int weight;         /* ArchWeight for layer tensors; -1 otherwise */
    int ndim;
    long shape[2];
} ArchTensor;
int arch_tensor_list(const Arch *a, ArchTensor **out, int *n);
void arch_free_tensor_list(ArchTensor *list);

#endif
