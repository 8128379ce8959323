/* fuzz_index.c - libFuzzer target for sharded checkpoints (the index parser and the shards it
 * names).
 *
 * Input framing (little-endian, lengths clamped to what follows):
 *     u32 index_len | model.safetensors.index.json | u32 shard1_len | shard 1 | shard 2 (the rest)
 * The files are written to a scratch folder as model.safetensors.index.json,
 * model-00001-of-00002.safetensors and model-00002-of-00002.safetensors, and the folder is
 * opened with ckpt_open: the index names shards (any name: a name outside the folder must be
 * refused), maps tensors to them, and every mapped tensor must be found. A checkpoint that
 * opens must find each of its tensors by name, each read back whole.
 *
 *     make fuzz-one FUZZ_TARGET=index FUZZ_SECONDS=60      (see fuzz/module.mk)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/checkpoint.h"

static char *index_path, *shard_path[2];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *dir = fuzz_scratch_dir();
    if (!index_path) {
        index_path = path_join(dir, CKPT_INDEX_NAME);
        shard_path[0] = path_join(dir, "model-00001-of-00002.safetensors");
        shard_path[1] = path_join(dir, "model-00002-of-00002.safetensors");
    }
    const uint8_t *index, *shard1;
    size_t index_len, shard1_len;
    fuzz_take(&data, &size, &index, &index_len);
    fuzz_take(&data, &size, &shard1, &shard1_len);
    fuzz_write_file(index_path, index, index_len);
    fuzz_write_file(shard_path[0], shard1, shard1_len);
    fuzz_write_file(shard_path[1], data, size);
    Checkpoint *c;
    Err e;
    if (ckpt_open(&c, dir, &e) < 0) return 0;
    for (size_t i = 0; i < c->n_tensors; i++) {
        const StTensor *t = c->tensors[i];
        if (ckpt_find(c, t->name) != t) abort();
        float *v = xmalloc(t->numel * sizeof *v + 1);
        if (st_read_f32(t, v, &e) < 0) {
            fprintf(stderr, "reading tensor '%s' of an open checkpoint failed: %s\n", t->name, e.msg);
            abort();
        }
        free(v);
    }
    ckpt_close(c);
    return 0;
}
