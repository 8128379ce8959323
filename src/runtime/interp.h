/* interp.h - the CPU interpreter of Core ML ML programs (what `convert` writes).
 *
 *     RtModel *m;
 *     if (rt_open(&m, "out/llama_FFN_PF_chunk_01of02.mlpackage", NULL, &e) < 0) ...
 *     RtFunction *f = rt_function(m, "infer");               // NULL name: the default function
 *     RtStates *kv = rt_states_new(f, &e);                   // zeroed, one per declared state
 *     RtInput in[] = {{"hidden_states", rt_f16(h, 3, (int64_t[]){1, 1, 128})}, ...};
 *     if (rt_run(f, 4, in, kv, &e) < 0) ...
 *     const RtTensor *out = rt_output(f, "output_hidden_states");   // valid until the next run
 *     rt_states_free(kv); rt_close(m);
 *
 * Numerics. Every value of dtype fp16 is held as a float whose value is exactly
 * representable in fp16: each op computes in float32 (matrix products accumulate in float32
 * through OpenBLAS sgemm; norms and softmax accumulate in double) and rounds its result to the
 * nearest fp16 (ties to even) when the output dtype is fp16, so overflow to +-inf and the loss of
 * precision happen where they happen on the device. fp32 values are plain floats. Integer and
 * bool values are held as int32 (narrow integer dtypes wrap on cast and arithmetic, as numpy's
 * astype does); bool is 0/1.
 *
 * Loading. Const data stays in the package's mapping until the program is planned; then each
 * const is converted once to float32 (fp16 blobs, constexpr_lut_to_dense outputs dequantized
 * once). A const that only feeds `gather` as its table (the embeddings) stays fp16 and is
 * converted row by row when gathered. Consts are cached per model by their blob (file,
 * offset): the functions of a multifunction package that use the same blob share one
 * converted copy, LUT weights included.
 *
 * States. An RtStates holds the states a function declares (zeroed fp16 tensors). rt_run binds
 * the function's state inputs to the RtStates entries of the same name, so one RtStates can be
 * passed to the functions of several packages that declare the same state (one KV cache shared
 * by every chunk, as ANEMLL's chat.py does). read_state -> slice_update -> write_state on the
 * same state updates the state in place (the pattern coremltools writes for a KV-cache write);
 * read_state gives a view of the state when nothing writes the state while that view is in use,
 * otherwise a copy.
 *
 * Memory. Intermediate values come from a per-model pool that recycles buffers by size, so a
 * function run repeatedly with the same shapes allocates nothing after its first run
 * (rt_memory_stats counts fresh allocations; a test checks it over many generated tokens).
 *
 * Threads. Matrix products run through OpenBLAS (its own threads: OPENBLAS_NUM_THREADS);
 * loading dequantizes large weights on all cores. One RtModel runs one function at a time.
 *
 * Return convention: 0 on success, -1 with a message in *e naming the package, function, op
 * and input at fault. Ownership: rt_open returns a model freed with rt_close; functions and
 * their outputs belong to the model.
 */
#ifndef ANEMLL_RUNTIME_INTERP_H
#define ANEMLL_RUNTIME_INTERP_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "coreml/package.h"
#include "mil/mil.h"

/* ==== Tensors ==== */

/* A run-time value: dtype, shape and row-major data. data is float * for fp16 and fp32 (fp16
 * values exactly representable in fp16), int32_t * for integers and bool. */
typedef struct RtTensor {
    MilDType dtype;
    int rank;
    int64_t dims[MIL_MAX_RANK];
    void *data;
} RtTensor;

int64_t rt_numel(const RtTensor *t);
int rt_is_float(MilDType dt);                 /* fp16, fp32: held as float */
/* Tensors over caller data (not copied). */
RtTensor rt_f16(float *data, int rank, const int64_t *dims);
RtTensor rt_f32(float *data, int rank, const int64_t *dims);
RtTensor rt_i32(int32_t *data, int rank, const int64_t *dims);
/* "fp16 [1, 1, 128]" for messages. */
void rt_tensor_str(const RtTensor *t, char *buf, size_t size);

/* ==== Models and functions ==== */

typedef struct RtModel RtModel;
typedef struct RtFunction RtFunction;

typedef struct RtOptions {
    int threads;        /* for load-time work (dequantization); <= 0: all cores */
} RtOptions;

/* Opens an .mlpackage and plans every function. opt may be NULL. */
int rt_open(RtModel **out, const char *path, const RtOptions *opt, Err *e);
/* The same for a program built in memory (tests). The program must outlive the model and is
 * validated first; consts that are blobs need their data in memory. name labels messages. */
int rt_open_program(RtModel **out, const MilProgram *p, const char *name, const RtOptions *opt, Err *e);
void rt_close(RtModel *m);

/* The package (NULL for rt_open_program models). */
const Package *rt_package(const RtModel *m);
const char *rt_model_name(const RtModel *m);
/* Value of a Metadata.userDefined key ("com.anemll.context_length"), or NULL. */
const char *rt_metadata(const RtModel *m, const char *key);
/* Function by name; NULL name: the default function. NULL if absent. */
RtFunction *rt_function(RtModel *m, const char *name);
int rt_n_functions(const RtModel *m);
RtFunction *rt_function_at(RtModel *m, int i);
const MilFunction *rt_function_mil(const RtFunction *f);   /* inputs, states, outputs, ops */
const char *rt_function_name(const RtFunction *f);

/* The declared input named name (tensor or state), or NULL. */
const MilValue *rt_find_input(const RtFunction *f, const char *name);

/* ==== States ==== */

typedef struct RtState {
    const char *name;
    RtTensor t;             /* fp16, held as float */
} RtState;

typedef struct RtStates {
    int n;
    RtState *states;
} RtStates;

/* Zeroed states for every state input of f. NULL (message in e) if a shape is unknown or too
 * large. */
RtStates *rt_states_new(const RtFunction *f, Err *e);
void rt_states_zero(RtStates *s);
RtState *rt_states_find(RtStates *s, const char *name);
void rt_states_free(RtStates *s);

/* ==== Running ==== */

typedef struct RtInput {
    const char *name;
    RtTensor t;             /* its dtype must be the declared one; data is copied (fp16 inputs
                               are rounded to fp16) */
} RtInput;

/* Runs f. Every declared tensor input must be given once, with a shape matching its declared
 * (or one of its enumerated) shapes; every declared state must be in states (same name, dtype
 * and shape). Outputs stay valid until the next rt_run of any function of the same model. */
int rt_run(RtFunction *f, int n_inputs, const RtInput *inputs, RtStates *states, Err *e);
/* An output of the last successful run, or NULL if f has no such output or did not run. */
const RtTensor *rt_output(const RtFunction *f, const char *name);
int rt_n_outputs(const RtFunction *f);
const char *rt_output_name(const RtFunction *f, int i);

/* ==== Statistics ==== */

typedef struct RtMemoryStats {
    uint64_t fresh_allocs;      /* buffers the pool had to malloc (not recycled) */
    uint64_t pool_bytes;        /* bytes held by the pool (in use + free) */
    uint64_t const_bytes;       /* converted consts (float32 weights, dequantized LUTs) */
    uint64_t shared_consts;     /* const uses served by an already converted blob */
} RtMemoryStats;
void rt_memory_stats(const RtModel *m, RtMemoryStats *s);

/* Time per op type, collected while profiling is on (off by default: it reads the clock twice
 * per op). seconds[MIL_OP_COUNT] and calls[MIL_OP_COUNT] are indexed by MilOpId (mil/ops.h);
 * read_state / write_state count as ops. rt_profile accumulates into the arrays given. */
void rt_set_profiling(RtModel *m, int on);
void rt_profile(const RtModel *m, double *seconds, uint64_t *calls);

#endif
