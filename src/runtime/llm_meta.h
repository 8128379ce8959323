/* llm_meta.h - meta.yaml as ANEMLL's chat.py reads it (anemll_reference.md sections 7.2, 13.7).
 *
 * Keys under model_info.parameters: context_length, batch_size, num_chunks (required);
 * model_prefix (default "llama"), embeddings, lm_head, ffn (file names relative to the folder of
 * meta.yaml; when absent they are derived from the prefix and the lut_* keys as chat.py does),
 * split_lm_head (default 8), argmax_in_model, vocab_size, lm_head_chunk_sizes, lut_embeddings,
 * lut_ffn, lut_lmhead (bits or "none"), sliding_window, prefill_dynamic_slice,
 * update_mask_prefill, state_length, attention_size, tokenizer_path, split_rotate and pf (Gemma 3
 * --split-rotate: the chunk-01 file holding infer_rotate / prefill_rotate; when absent, the ffn
 * name with "_rot" appended). model_info.model_type "monolithic" is refused (not supported by the
 * CPU runtime).
 *
 * Compiled names (.mlmodelc) map to the .mlpackage beside them: the CPU runtime executes
 * packages. The FFN entry names chunk 01; chunk i of N is the same name with _chunk_{i}of{N}.
 *
 * Ownership: llm_meta_load fills a caller-owned LlmMeta; release with llm_meta_free. Returns 0,
 * or -1 with e naming meta.yaml and the key at fault.
 */
#ifndef ANEMLL_RUNTIME_LLM_META_H
#define ANEMLL_RUNTIME_LLM_META_H

#include "common/err.h"

#define LLM_MAX_SPLITS 64

typedef struct LlmMeta {
    char *path;                 /* meta.yaml as given */
    char *dir;                  /* its folder */
    char *name, *architecture, *version;    /* model_info (may be NULL) */
    int context_length;
    int batch_size;
    int num_chunks;
    char *model_prefix;
    int lut_embeddings, lut_ffn, lut_lmhead;    /* bits; 0 = none */
    char *embeddings;           /* resolved .mlpackage paths */
    char *lm_head;
    char **chunks;              /* [num_chunks] FFN(+prefill) packages, chunk 1 first */
    int split_rotate;           /* the rotate functions are in rot_chunks */
    char **rot_chunks;          /* [num_chunks] the _rot packages (split_rotate), else NULL */
    int split_lm_head;
    int argmax_in_model;
    int vocab_size;             /* 0: not given */
    int n_chunk_sizes;
    int lm_head_chunk_sizes[LLM_MAX_SPLITS];
    int sliding_window;         /* 0: not given */
    int prefill_dynamic_slice;  /* -1: not given */
    int update_mask_prefill;
    int state_length;           /* 0: not given */
    int attention_size;         /* 0: not given */
    char *tokenizer_dir;        /* tokenizer_path (resolved), else the folder of meta.yaml */
} LlmMeta;

int llm_meta_load(LlmMeta *m, const char *path, Err *e);
void llm_meta_free(LlmMeta *m);

/* Chunk i (1-based) of n from the chunk-01 name: "x_chunk_01of03.y" -> "x_chunk_02of03.y".
 * Caller frees; NULL if the name has no _chunk_NNofMM part. */
char *llm_meta_chunk_name(const char *first, int i, int n);

#endif
