/* synth.h - write deterministic random-weight checkpoints in real Hugging Face layout.
 *
 * Test and benchmark models for every supported architecture: config.json with the real keys
 * of the model_type, tensors with the real names and shapes (taken from arch.h, so they are
 * what the reader expects), BF16 weights by default, single-file or sharded safetensors
 * (model-0000N-of-0000M.safetensors + model.safetensors.index.json), generation_config.json
 * and tokenizer files: copied from a folder, or a small self-contained byte-level BPE
 * tokenizer in the Llama 3 style (see synth_write_builtin_tokenizer).
 *
 * Weights (the statistics of tests/data/refvectors): normal with std `std` (0.05) for
 * embeddings, lm_head, v/o projections and the MLP; q/k std `qk_std` (0.25) in models without
 * q/k norms so attention is selective; biases std 0.1; RMSNorm weights 1 + N(0, 0.15) for
 * Llama/Qwen and N(0, 0.15) for Gemma's (1+w) norms. Matrices with a fan-in above 64 have their
 * std scaled by sqrt(64 / fan_in) so that large models stay numerically tame. With
 * post_norm_scale s (Gemma), post-attention and post-feedforward norm weights are
 * s * (1 + N(0, 0.08)), which pushes the residual stream beyond the fp16 range.
 *
 * Values come from a counter-based generator keyed by (seed, tensor name, block), so the bytes
 * are the same whatever the thread count or shard split, and tensors are generated and written
 * block by block: a 2.5 GB checkpoint never has to fit in memory.
 *
 * The output directory is built under a temporary sibling name and renamed at the end, so an
 * interrupted run never leaves a folder that looks complete. Returns 0, or -1 with e->msg.
 */
#ifndef ANEMLL_MODEL_SYNTH_H
#define ANEMLL_MODEL_SYNTH_H

#include <stdint.h>

#include "common/err.h"
#include "io/safetensors.h"
#include "model/arch.h"

typedef struct SynthSpec {
    char model_type[32];        /* llama, qwen2, qwen3, gemma3_text, gemma3 */
    int hidden, n_layers, n_heads, n_kv_heads, head_dim, intermediate;
    int vocab;                  /* 0: the tokenizer's size (rounded up to a multiple of 64) */
    int max_position;
    int sliding_window;         /* gemma: window; qwen: > 0 turns use_sliding_window on */
    char layer_types[4096];     /* "" = default, else comma-separated s|f|sliding_attention|full_attention */
    int tied;                   /* tie_word_embeddings */
    double rope_theta, rope_local_theta, rms_eps;
    double query_pre_attn_scalar; /* gemma; 0 = head_dim */
    RopeScaling rope_scaling;
    int attention_bias;         /* q/k/v/o biases (qwen2 always has q/k/v biases) */
    int mlp_bias;               /* llama only */
    uint64_t seed;
    int n_shards;               /* 1 = model.safetensors */
    StDtype dtype;              /* BF16 unless asked otherwise */
    float std, qk_std, post_norm_scale;
    char tokenizer_dir[1024];   /* "" = write the built-in tokenizer */
    int threads;                /* 0 = all cores */
} SynthSpec;

/* Tiny defaults for a model_type (the shapes of tests/data/refvectors). */
int synth_spec_init(SynthSpec *s, const char *model_type, Err *e);
/* Applies a named preset on top of the current spec: "tiny" (no change) or "llama-3.2-1b"
 * (hidden 2048, 16 layers, 32/8 heads, head_dim 64, intermediate 8192, vocab 128256, tied,
 * llama3 RoPE scaling: about 1.24 billion parameters, 2.5 GB in BF16). */
int synth_apply_preset(SynthSpec *s, const char *preset, Err *e);
#define SYNTH_PRESETS "tiny, llama-3.2-1b"

typedef struct SynthResult {
    int n_tensors;
    uint64_t n_params;          /* values in all tensors (vision dummies included) */
    uint64_t bytes;             /* tensor data bytes */
    int vocab;                  /* the vocab_size written */
} SynthResult;

/* Writes the checkpoint into out_dir, which must not exist unless overwrite is set.
 * res (may be NULL) receives what was written. */
int synth_write(const SynthSpec *s, const char *out_dir, int overwrite, SynthResult *res, Err *e);

/* Special-token ids of a tokenizer (-1 = none). */
typedef struct SynthTokenIds {
    int bos, eos[4], n_eos, size; /* size: number of ids (max id + 1) */
} SynthTokenIds;

/* The built-in tokenizer: byte-level BPE (256 byte tokens, merges learned from a built-in
 * English text, the Llama 3 pre-tokenizer regex) plus <|begin_of_text|>, <|end_of_text|>,
 * <|start_header_id|>, <|end_header_id|>, <|eot_id|> and reserved special tokens: up to 256
 * special tokens at the top of the id range, as in Llama 3, and for larger vocabularies
 * "<filler_N>" BPE entries that nothing encodes to in between. Writes tokenizer.json and
 * tokenizer_config.json (with a Llama-3-style chat_template) into dir. vocab >= 261. */
int synth_write_builtin_tokenizer(const char *dir, int vocab, SynthTokenIds *ids, Err *e);

/* Copies tokenizer.json, tokenizer_config.json (and special_tokens_map.json, tokenizer.model
 * when present) from src_dir to dir and reads their size and special-token ids. */
int synth_copy_tokenizer(const char *src_dir, const char *dir, SynthTokenIds *ids, Err *e);

#endif
