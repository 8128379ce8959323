/* checkpoint.c - single-file and sharded safetensors checkpoints. */
#include "io/checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "io/json.h"

static int by_tensor_name(const void *a, const void *b) {
    return strcmp((*(const StTensor *const *)a)->name, (*(const StTensor *const *)b)->name);
}

static void add_file(Checkpoint *c, StFile *f) {
    c->files = xrealloc(c->files, sizeof *c->files * (size_t)(c->n_files + 1));
    c->files[c->n_files++] = f;
}

/* Merges the tensors of every file into one sorted index; a name in two files is an error. */
static int build_index(Checkpoint *c, Err *e) {
    size_t n = 0;
    for (int i = 0; i < c->n_files; i++) n += st_count(c->files[i]);
    c->tensors = xmalloc(sizeof *c->tensors * (n ? n : 1));
    for (int i = 0; i < c->n_files; i++)
        for (size_t j = 0; j < st_count(c->files[i]); j++) c->tensors[c->n_tensors++] = st_tensor(c->files[i], j);
    qsort(c->tensors, c->n_tensors, sizeof *c->tensors, by_tensor_name);
    for (size_t i = 1; i < c->n_tensors; i++)
        if (!strcmp(c->tensors[i - 1]->name, c->tensors[i]->name))
            return err_set(e, "%s: tensor '%s' is stored twice, in %s and in %s", c->dir, c->tensors[i]->name,
                           path_basename(st_path(c->tensors[i - 1]->file)),
                           path_basename(st_path(c->tensors[i]->file)));
    return 0;
}

static int shard_name_ok(const char *s) {
    return *s && !strchr(s, '/') && !strchr(s, '\\') && strcmp(s, ".") && strcmp(s, "..");
}

/* Opens each distinct shard named in weight_map (in order of first mention). */
static int open_shards(Checkpoint *c, const char *index_path, const cJSON *map, Err *e) {
    for (const cJSON *it = map->child; it; it = it->next) {
        if (!cJSON_IsString(it))
            return err_set(e, "%s: weight_map entry '%s' must name a shard file, got %s", index_path, it->string,
                           json_type_name(it));
        const char *shard = it->valuestring;
        if (!shard_name_ok(shard))
            return err_set(e, "%s: weight_map entry '%s' names shard \"%.200s\", which is not a plain file name "
                              "inside the checkpoint directory",
                           index_path, it->string, shard);
        int seen = 0;
        for (int i = 0; i < c->n_files && !seen; i++) seen = !strcmp(path_basename(st_path(c->files[i])), shard);
        if (seen) continue;
        char *p = path_join(c->dir, shard);
        if (!path_exists(p)) {
            err_set(e, "%s: shard %s (holding tensor '%s') is missing from %s", index_path, shard, it->string, c->dir);
            free(p);
            return -1;
        }
        StFile *f;
        int rc = st_open(&f, p, e);
        free(p);
        if (rc < 0) return -1;
        add_file(c, f);
    }
    return 0;
}

/* Every weight_map entry must be found in the shard it names. */
static int check_weight_map(const Checkpoint *c, const char *index_path, const cJSON *map, Err *e) {
    for (const cJSON *it = map->child; it; it = it->next) {
        const StTensor *t = ckpt_find(c, it->string);
        if (!t)
            return err_set(e, "%s: tensor '%s' is mapped to %s but that shard does not contain it", index_path,
                           it->string, it->valuestring);
        if (strcmp(path_basename(st_path(t->file)), it->valuestring))
            return err_set(e, "%s: tensor '%s' is mapped to %s but is stored in %s", index_path, it->string,
                           it->valuestring, path_basename(st_path(t->file)));
    }
    return 0;
}

static int open_sharded(Checkpoint *c, const char *index_path, Err *e) {
    cJSON *root;
    if (json_read_file(index_path, CKPT_MAX_INDEX_BYTES, &root, e) < 0) return -1;
    int rc = -1;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root)) err_set(e, "%s: must be a JSON object", index_path);
    else if (!cJSON_IsObject(map)) err_set(e, "%s: \"weight_map\" must be an object, got %s", index_path, json_type_name(map));
    else if (!map->child) err_set(e, "%s: \"weight_map\" is empty", index_path);
    else if (open_shards(c, index_path, map, e) == 0 && build_index(c, e) == 0 &&
             check_weight_map(c, index_path, map, e) == 0)
        rc = 0;
    cJSON_Delete(root);
    return rc;
}

int ckpt_open(Checkpoint **out, const char *path, Err *e) {
    *out = NULL;
    Checkpoint *c = xcalloc(1, sizeof *c);
    int rc;
    if (!path_exists(path)) {
        rc = err_set(e, "%s does not exist", path);
    } else if (!path_is_dir(path)) {
        /* a single .safetensors file */
        c->dir = xstrdup(path);
        char *slash = strrchr(c->dir, '/');
        if (slash) *slash = 0;
        else strcpy(c->dir, ".");
        StFile *f;
        rc = st_open(&f, path, e);
        if (rc == 0) {
            add_file(c, f);
            rc = build_index(c, e);
        }
    } else {
        c->dir = xstrdup(path);
        char *index = path_join(path, CKPT_INDEX_NAME), *single = path_join(path, CKPT_SINGLE_NAME);
        char *bin = path_join(path, "pytorch_model.bin");
        if (path_exists(index)) {
            rc = open_sharded(c, index, e);
        } else if (path_exists(single)) {
            StFile *f;
            rc = st_open(&f, single, e);
            if (rc == 0) {
                add_file(c, f);
                rc = build_index(c, e);
            }
        } else if (path_exists(bin)) {
            rc = err_set(e, "%s holds a PyTorch pickle checkpoint (pytorch_model.bin); anemll reads safetensors "
                            "only: save the model again with safe_serialization=True",
                         path);
        } else {
            rc = err_set(e, "%s has neither %s nor %s; is it a Hugging Face checkpoint directory?", path,
                         CKPT_SINGLE_NAME, CKPT_INDEX_NAME);
        }
        free(index);
        free(single);
        free(bin);
    }
    if (rc < 0) {
        ckpt_close(c);
        return -1;
    }
    *out = c;
    return 0;
}

void ckpt_close(Checkpoint *c) {
    if (!c) return;
    for (int i = 0; i < c->n_files; i++) st_close(c->files[i]);
    free(c->files);
    free(c->tensors);
    free(c->dir);
    free(c);
}

const StTensor *ckpt_find(const Checkpoint *c, const char *name) {
    size_t lo = 0, hi = c->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(c->tensors[mid]->name, name);
        if (!r) return c->tensors[mid];
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const StTensor *ckpt_require(const Checkpoint *c, const char *name, Err *e) {
    const StTensor *t = ckpt_find(c, name);
    if (!t) err_set(e, "%s: the checkpoint has no tensor '%s'", c->dir, name);
    return t;
}
