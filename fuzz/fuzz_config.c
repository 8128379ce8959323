/* fuzz_config.c - libFuzzer target for config.json parsing and what is derived from it.
 *
 * Input: config.json text. arch_parse either refuses it with a message or returns an Arch whose
 * derived values must all be computable without overflow or out-of-range access (UBSan checks
 * the arithmetic): the tensor list and names, RoPE frequencies and tables of the first and last
 * layer at the first and last position, and the chunk planner of `anemll chunks` / --chunk auto
 * (state length, LUT group checks, exact package sizes, the automatic chunk count) for fp16 and
 * two LUT settings.
 *
 *     make fuzz-one FUZZ_TARGET=config FUZZ_SECONDS=60      (see fuzz/module.mk)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "model/arch.h"
#include "parts/plan.h"

static void check_rope(const Arch *a, int layer) {
    int half = a->head_dim / 2;
    float *inv = xmalloc(sizeof *inv * (size_t)half), *c = xmalloc(sizeof *c * (size_t)half),
          *s = xmalloc(sizeof *s * (size_t)half);
    arch_rope_inv_freq(a, layer, inv);
    arch_rope_cos_sin(a, layer, 0, c, s);
    arch_rope_cos_sin(a, layer, a->max_position - 1, c, s);
    (void)arch_rope_attention_scaling(a, layer);
    free(inv);
    free(c);
    free(s);
}

static void check_plan(const Arch *a) {
    static const LutSpec specs[3] = {{0, 0}, {4, LUT_DEFAULT_GROUP}, {6, 0}};
    static const long contexts[2] = {64, 4096};
    int sizes[PLAN_MAX_SPLITS];
    int splits = plan_lm_head_sizes(a, sizes);
    if (splits < 1 || splits > PLAN_MAX_SPLITS) abort();
    for (int k = 0; k < 3; k++) {
        const LutSpec luts[3] = {specs[k], specs[k], specs[k]};
        Err e;
        if (plan_check_lut_groups(a, luts, &e) < 0) continue;
        int state = plan_state_length(a, contexts[k % 2]);
        (void)plan_embeddings_bytes(a, &specs[k]);
        (void)plan_lm_head_bytes(a, &specs[k]);
        int n;
        plan_auto_chunks(a, &specs[k], state, (uint64_t)950 << 20, 1 + k % 2, &n);
        if (n < 1 || n > a->n_layers) abort();
        for (int ch = 0; ch < n; ch++) {
            int first, count;
            plan_chunk_layers(a->n_layers, n, ch, &first, &count);
            if (first < 0 || count < 1 || first + count > a->n_layers) abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = fuzz_copy(data, size, 0);
    Arch a;
    Err e;
    int rc = arch_parse(&a, json, size, "config.json", &e);
    free(json);
    if (rc < 0) {
        if (!strstr(e.msg, "config.json")) {
            fprintf(stderr, "error does not name the file: %s\n", e.msg);
            abort();
        }
        return 0;
    }
    ArchTensor *list;
    int n;
    if (arch_tensor_list(&a, &list, &n) == 0) {
        char name[256];
        for (int i = 0; i < n; i++)
            if (list[i].layer >= 0) arch_layer_tensor_name(&a, list[i].layer, (ArchWeight)list[i].weight, name, sizeof name);
        arch_free_tensor_list(list);
    }
    (void)arch_n_sliding(&a);
    check_rope(&a, 0);
    check_rope(&a, a.n_layers - 1);
    check_plan(&a);
    arch_free(&a);
    return 0;
}
