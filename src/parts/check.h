/* check.h - structural checks of written packages against the interface of docs/parts.md.
 *
 * Each check reads a package back with the coreml reader (which validates the manifest, the
 * protobuf, every blob and every op) and compares its description with what ANEMLL's runtimes
 * expect: functions, input/output/state names, dtypes and shapes (enumerated shapes for
 * input_ids), and the com.anemll.* metadata keys. Step 8 runs them on every package; the
 * numerical verification (runtime/) runs them first.
 *
 * Return convention: 0, or -1 with a message in *e naming the package and the difference.
 */
#ifndef ANEMLL_PARTS_CHECK_H
#define ANEMLL_PARTS_CHECK_H

#include "common/err.h"
#include "model/arch.h"
#include "parts/plan.h"

typedef struct CheckSpec {
    const Arch *arch;
    long context;
    long batch;
    int state_length;
    int local_length;           /* gemma3: plan_local_length */
    int n_chunks;
    int split_rotate;           /* --split-rotate: FFN_COMBINED holds infer and prefill only */
    int argmax;
    int lut_bits;               /* expected com.anemll.lut_bits (0: key absent) */
} CheckSpec;

int check_embeddings(const char *path, const CheckSpec *s, Err *e);
int check_lm_head(const char *path, const CheckSpec *s, Err *e);
/* kind: a single-function kind (FFN_INFER, FFN_PREFILL, FFN_INFER_ROTATE, FFN_PREFILL_ROTATE:
 * function `main`), FFN_COMBINED (`infer` default, [`infer_rotate`], `prefill`, [`prefill_rotate`]:
 * the rotate functions when plan_has_rotate and not split_rotate) or FFN_COMBINED_ROT
 * (`infer_rotate` default, `prefill_rotate`). Every function has the inputs, output and states
 * of docs/parts.md (gemma3: both caches). chunk is 0-based. */
int check_ffn(const char *path, const CheckSpec *s, PlanFfnKind kind, int chunk, Err *e);

#endif
