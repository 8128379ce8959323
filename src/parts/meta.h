/* meta.h - meta.yaml, the file ANEMLL's runtimes (tests/chat.py, the Swift CLI) start from.
 *
 * Schema (ANEMLL 0.3.5 generate_meta_yaml.py, ../shared/golden/anemll/ * /meta.yaml):
 *
 *   model_info:
 *     name: anemll-<model name>-ctx<context>
 *     version: 0.3.5                   the ANEMLL interface version the packages follow
 *     description: |  (4 lines)
 *     license, author, framework, language, architecture (config.json model_type)
 *     parameters:
 *       context_length, batch_size,
 *       lut_embeddings, lut_ffn, lut_lmhead          bits or none
 *       lut_*_per_channel                            only when the group is not the default 8
 *       num_chunks, model_prefix,
 *       embeddings, lm_head, ffn                     .mlmodelc names (ffn = chunk 01)
 *       [pf]                                         --split-rotate: the chunk-01 _rot file
 *       split_lm_head, [argmax_in_model: true], vocab_size, lm_head_chunk_sizes: [a, b, ...],
 *       [split_rotate: true], [sliding_window], prefill_dynamic_slice: true
 *   # Conversion parameters as YAML comments (no timestamps: two runs write the same bytes)
 *
 * Every key chat.py or the Swift CLI reads is written explicitly (their defaults differ).
 * lm_head_chunk_sizes follow plan_lm_head_sizes (no token dropped).
 */
#ifndef ANEMLL_PARTS_META_H
#define ANEMLL_PARTS_META_H

#include "common/err.h"
#include "parts/plan.h"

#define ANEMLL_INTERFACE_VERSION "0.3.5"

typedef struct MetaInfo {
    const char *model_name;     /* folder name, or "org-name" for a Hugging Face cache snapshot */
    const char *model_path;     /* as given (comment only) */
    const char *architecture;   /* config.json model_type */
    const char *tool;           /* "anemll-c 0.1.0" (comment only) */
    long context, batch;
    LutSpec lut[3];             /* PART_EMBEDDINGS, PART_FFN, PART_LM_HEAD */
    int num_chunks;
    const char *prefix;
    int argmax;
    int vocab;
    int n_splits;
    int split_sizes[PLAN_MAX_SPLITS];
    int sliding_window;         /* 0: not written */
    int split_rotate;           /* gemma3 --split-rotate: pf and split_rotate written */
    double fp16_scale;          /* alpha applied (comment only; 0 = none) */
} MetaInfo;

/* The model name ANEMLL derives from a model path: "org-name" for
 * ".../models--org--name/snapshots/<hash>", else the last path component. Returns buf. */
const char *meta_model_name(const char *model_path, char *buf, size_t n);

/* meta.yaml text; caller frees. */
char *meta_yaml_text(const MetaInfo *m);

/* Writes meta.yaml at path atomically. */
int meta_yaml_write(const char *path, const MetaInfo *m, Err *e);

#endif
