/* fp16_scale.c - Gemma 3 residual scaling (contract in fp16_scale.h). */
#include "model/fp16_scale.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int fp16_scale_check(const Arch *a, double alpha, Err *e) {
    if (!(alpha > 0 && alpha <= 1))
        return err_set(e, "--fp16-scale %g: the scale must be a number in (0, 1] (or 'auto')", alpha);
    if (!a->sandwich_norms)
        return err_set(e,
                       "--fp16-scale: residual scaling is only exact for Gemma 3, whose post-attention and "
                       "post-feedforward norms carry the scale; model_type '%s' (%s family) has no norm after "
                       "its branches. Convert without --fp16-scale; if 'anemll preflight' reports fp16 overflow "
                       "for this model, see the clamp sweep in its report",
                       a->model_type, arch_family_name(a->family));
    return 0;
}

int fp16_scale_parse(const char *text, double *alpha, int *is_auto, Err *e) {
    *is_auto = 0;
    if (!strcmp(text, "auto")) {
        *is_auto = 1;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (!*text || *end || errno || !(v > 0 && v <= 1))
        return err_set(e, "--fp16-scale wants 'auto' or a number in (0, 1], got '%s'", text);
    *alpha = v;
    return 0;
}

int fp16_scale_changes_layer_weight(ArchWeight w) { return w == W_POST_ATTN_NORM || w == W_POST_MLP_NORM; }

void fp16_scale_embeddings(float *w, size_t n, float alpha) {
    for (size_t i = 0; i < n; i++) w[i] *= alpha;
}

/* In double so that alpha * (1 + w) - 1 loses nothing before the single rounding to float. */
void fp16_scale_norm_gain(float *w, size_t n, float alpha) {
    for (size_t i = 0; i < n; i++) w[i] = (float)((double)alpha * (1.0 + (double)w[i]) - 1.0);
}
