/* checkpoint.h - a Hugging Face checkpoint's weights: one model.safetensors or a sharded set.
 *
 * A checkpoint directory holds either
 *   model.safetensors                       one file, or
 *   model.safetensors.index.json            {"metadata": {...}, "weight_map": {"<tensor>": "<shard file>"}}
 *   model-00001-of-0000N.safetensors ...    the shards it names.
 * ckpt_open validates every file (see safetensors.h) and the index: well-formed JSON, shard
 * names that stay inside the directory, every mapped tensor present in its shard, no tensor in
 * two shards. Tensors are then looked up by name whatever file holds them; read them with
 * st_read_* (safetensors.h).
 *
 * Ownership: ckpt_open returns a Checkpoint the caller releases with ckpt_close; StTensor
 * pointers stay valid until then. Returns 0, or -1 with e->msg set.
 */
#ifndef ANEMLL_IO_CHECKPOINT_H
#define ANEMLL_IO_CHECKPOINT_H

#include "io/safetensors.h"

#define CKPT_INDEX_NAME "model.safetensors.index.json"
#define CKPT_SINGLE_NAME "model.safetensors"
#define CKPT_MAX_INDEX_BYTES ((size_t)100 * 1000 * 1000)

typedef struct Checkpoint {
    char *dir;
    StFile **files;             /* [n_files] */
    int n_files;
    const StTensor **tensors;   /* [n_tensors], sorted by name, across all files */
    size_t n_tensors;
} Checkpoint;

/* path: a checkpoint directory, or a single .safetensors file. */
int ckpt_open(Checkpoint **out, const char *path, Err *e);
void ckpt_close(Checkpoint *c);

/* NULL if absent. */
const StTensor *ckpt_find(const Checkpoint *c, const char *name);

/* ckpt_find, or an error naming the tensor and the checkpoint when it is absent. */
const StTensor *ckpt_require(const Checkpoint *c, const char *name, Err *e);

#endif
