/* program.c - MIL program containers: arena, name sets, functions, inputs, consts, literals. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "common/util.h"
#include "mil/internal.h"
#include "mil/ops.h"

/* ==== Arena ==== */

#define ARENA_CHUNK (64 * 1024)

typedef struct ArenaChunk {
    struct ArenaChunk *next;
    size_t used, size;
    max_align_t data[];
} ArenaChunk;

struct MilArena {
    ArenaChunk *head;
};

static void *arena_alloc(struct MilArena *a, size_t n) {
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!a->head || a->head->size - a->head->used < n) {
        size_t size = n > ARENA_CHUNK / 2 ? n : ARENA_CHUNK;
        ArenaChunk *c = xmalloc(sizeof *c + size);
        c->used = 0;
        c->size = size;
        if (n > ARENA_CHUNK / 2 && a->head) {
            /* a big block gets its own chunk behind the current one, which stays in use */
            c->next = a->head->next;
            a->head->next = c;
            c->used = n;
            memset(c->data, 0, n);
            return c->data;
        }
        c->next = a->head;
        a->head = c;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

static void arena_free(struct MilArena *a) {
    ArenaChunk *c = a->head;
    while (c) {
        ArenaChunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

void *mil_alloc(MilProgram *p, size_t n) { return arena_alloc(p->arena, n ? n : 1); }

const char *mil_strdup(MilProgram *p, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = mil_alloc(p, n);
    memcpy(d, s, n);
    return d;
}

/* ==== Name sets (open addressing, string keys) ==== */

struct MilNameSet {
    size_t cap, count;
    const char **keys;
    void **vals;
};

static uint64_t name_hash(const char *s) { return hash64(s, strlen(s), 0x5eed); }

MilNameSet *mil_names_new(void) {
    MilNameSet *s = xcalloc(1, sizeof *s);
    s->cap = 64;
    s->keys = xcalloc(s->cap, sizeof *s->keys);
    s->vals = xcalloc(s->cap, sizeof *s->vals);
    return s;
}

void mil_names_free(MilNameSet *s) {
    if (!s) return;
    free(s->keys);
    free(s->vals);
    free(s);
}

void *mil_names_get(const MilNameSet *s, const char *key) {
    size_t i = name_hash(key) & (s->cap - 1);
    while (s->keys[i]) {
        if (!strcmp(s->keys[i], key)) return s->vals[i];
        i = (i + 1) & (s->cap - 1);
    }
    return NULL;
}

static void names_insert_raw(MilNameSet *s, const char *key, void *val) {
    size_t i = name_hash(key) & (s->cap - 1);
    while (s->keys[i]) i = (i + 1) & (s->cap - 1);
    s->keys[i] = key;
    s->vals[i] = val;
    s->count++;
}

/* key must outlive the set (arena strings do). */
void mil_names_put(MilNameSet *s, const char *key, void *val) {
    if ((s->count + 1) * 2 > s->cap) {
        MilNameSet old = *s;
        s->cap *= 2;
        s->count = 0;
        s->keys = xcalloc(s->cap, sizeof *s->keys);
        s->vals = xcalloc(s->cap, sizeof *s->vals);
        for (size_t i = 0; i < old.cap; i++)
            if (old.keys[i]) names_insert_raw(s, old.keys[i], old.vals[i]);
        free(old.keys);
        free(old.vals);
    }
    names_insert_raw(s, key, val);
}

/* ==== Program ==== */

MilProgram *mil_program_new(void) {
    MilProgram *p = xcalloc(1, sizeof *p);
    p->arena = xcalloc(1, sizeof *p->arena);
    return p;
}

void mil_program_free(MilProgram *p) {
    if (!p) return;
    for (int i = 0; i < p->n_functions; i++) {
        MilFunction *f = p->functions[i];
        free(f->inputs);
        free(f->ops);
        mil_names_free(f->names);
        mil_names_free(f->op_names);
    }
    free(p->functions);
    arena_free(p->arena);
    free(p);
}

int mil_fail(MilProgram *p, const char *fmt, ...) {
    if (p->failed) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err.msg, sizeof p->err.msg, fmt, ap);
    va_end(ap);
    p->failed = 1;
    return -1;
}

int mil_error(const MilProgram *p, Err *e) {
    if (!p->failed) return 0;
    if (e) *e = p->err;
    return -1;
}

void mil_program_set_blob_sink(MilProgram *p, const MilBlobSink *sink) {
    if (sink)
        p->sink = *sink;
    else
        memset(&p->sink, 0, sizeof p->sink);
}

void mil_program_set_default_function(MilProgram *p, const char *name) {
    p->default_function = name ? mil_strdup(p, name) : NULL;
}

MilFunction *mil_program_function(const MilProgram *p, const char *name) {
    for (int i = 0; i < p->n_functions; i++)
        if (!strcmp(p->functions[i]->name, name)) return p->functions[i];
    return NULL;
}

int mil_is_identifier(const char *s) {
    if (!s || !*s) return 0;
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) return 0;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '@'))
            return 0;
    return 1;
}

MilFunction *mil_function_new(MilProgram *p, const char *name, const char *opset) {
    if (p->failed) return NULL;
    if (!mil_is_identifier(name)) {
        mil_fail(p, "function name '%s' is not a valid MIL identifier ([A-Za-z_][A-Za-z0-9_@]*)",
                 name ? name : "(null)");
        return NULL;
    }
    if (mil_program_function(p, name)) {
        mil_fail(p, "function '%s' already exists in the program", name);
        return NULL;
    }
    if (!opset) opset = "CoreML8";
    if (mil_opset_level(opset) < 0) {
        mil_fail(p, "function '%s': unknown opset '%s' (expected CoreML5 .. CoreML9)", name, opset);
        return NULL;
    }
    MilFunction *f = mil_alloc(p, sizeof *f);
    f->name = mil_strdup(p, name);
    f->opset = mil_strdup(p, opset);
    f->prog = p;
    f->names = mil_names_new();
    f->op_names = mil_names_new();
    p->functions = xrealloc(p->functions, sizeof *p->functions * (size_t)(p->n_functions + 1));
    p->functions[p->n_functions++] = f;
    return f;
}

MilValue *mil_lookup(const MilFunction *f, const char *name) { return mil_names_get(f->names, name); }

/* ==== Names ==== */

int mil_check_new_name(MilFunction *f, const char *name, const char *what) {
    MilProgram *p = f->prog;
    if (!mil_is_identifier(name))
        return mil_fail(p, "function '%s': %s name '%s' is not a valid MIL identifier ([A-Za-z_][A-Za-z0-9_@]*)",
                        f->name, what, name ? name : "(null)");
    if (mil_names_get(f->names, name))
        return mil_fail(p, "function '%s': a value named '%s' already exists; names must be unique", f->name,
                        name);
    return 0;
}

/* "<base>", or "<base>_<k>" with the smallest k that is free (values and op names). */
const char *mil_unique_name(MilFunction *f, const char *base, int always_suffix) {
    MilProgram *p = f->prog;
    if (!always_suffix && !mil_names_get(f->names, base) && !mil_names_get(f->op_names, base))
        return mil_strdup(p, base);
    char buf[512];
    for (unsigned long k = 0;; k++) {
        snprintf(buf, sizeof buf, "%.480s_%lu", base, k);
        if (!mil_names_get(f->names, buf) && !mil_names_get(f->op_names, buf)) return mil_strdup(p, buf);
    }
}

const char *mil_auto_name(MilFunction *f, const char *prefix) {
    char buf[128];
    for (;;) {
        snprintf(buf, sizeof buf, "%.64s_%lu", prefix, f->prog->name_counter++);
        if (!mil_names_get(f->names, buf) && !mil_names_get(f->op_names, buf)) return mil_strdup(f->prog, buf);
    }
}

void mil_register_value(MilFunction *f, MilValue *v) {
    AN_ASSERT(v->name && !mil_names_get(f->names, v->name));
    mil_names_put(f->names, v->name, v);
}

/* ==== Inputs and outputs ==== */

static int check_shape(MilProgram *p, const char *fn, const char *what, int rank, const int64_t *dims,
                       int allow_unknown) {
    if (rank < 0 || rank > MIL_MAX_RANK)
        return mil_fail(p, "function '%s': %s has rank %d; ranks 0..%d are supported", fn, what, rank,
                        MIL_MAX_RANK);
    if (rank && !dims) return mil_fail(p, "function '%s': %s has rank %d but no dims", fn, what, rank);
    for (int i = 0; i < rank; i++)
        if (dims[i] < 0 && !(allow_unknown && dims[i] == MIL_DIM_UNKNOWN))
            return mil_fail(p, "function '%s': %s has invalid dimension %lld at axis %d", fn, what,
                            (long long)dims[i], i);
    return 0;
}

static MilValue *add_input_value(MilFunction *f, const char *name, MilType t) {
    MilProgram *p = f->prog;
    MilValue *v = mil_alloc(p, sizeof *v);
    v->name = mil_strdup(p, name);
    v->type = t;
    v->fn = f;
    if (f->n_inputs == f->cap_inputs) {
        f->cap_inputs = f->cap_inputs ? f->cap_inputs * 2 : 8;
        f->inputs = xrealloc(f->inputs, sizeof *f->inputs * (size_t)f->cap_inputs);
    }
    f->inputs[f->n_inputs++] = v;
    mil_register_value(f, v);
    return v;
}

static int input_dtype_ok(MilDType dt) {
    return dt == MIL_FP16 || dt == MIL_FP32 || dt == MIL_INT32 || dt == MIL_INT8 || dt == MIL_BOOL ||
           dt == MIL_INT16 || dt == MIL_UINT16 || dt == MIL_UINT8 || dt == MIL_FP64 || dt == MIL_INT64;
}

MilValue *mil_input(MilFunction *f, const char *name, MilDType dt, int rank, const int64_t *dims) {
    if (!f || f->prog->failed) return NULL;
    MilProgram *p = f->prog;
    if (mil_check_new_name(f, name, "input") < 0) return NULL;
    if (!input_dtype_ok(dt))
        return mil_fail(p, "function '%s': input '%s' has unsupported dtype %s", f->name, name, mil_dtype_name(dt)),
               NULL;
    if (check_shape(p, f->name, name, rank, dims, 1) < 0) return NULL;
    return add_input_value(f, name, mil_tensor_type(dt, rank, dims));
}

MilValue *mil_input_enumerated(MilFunction *f, const char *name, MilDType dt, int rank, int n_shapes,
                               const int64_t *shapes) {
    if (!f || f->prog->failed) return NULL;
    MilProgram *p = f->prog;
    if (n_shapes < 1 || !shapes)
        return mil_fail(p, "function '%s': input '%s' needs at least one enumerated shape", f->name,
                        name ? name : "(null)"),
               NULL;
    if (rank < 1)
        return mil_fail(p, "function '%s': input '%s' with enumerated shapes must have rank >= 1", f->name,
                        name ? name : "(null)"),
               NULL;
    for (int s = 0; s < n_shapes; s++)
        if (check_shape(p, f->name, name ? name : "(null)", rank, shapes + (size_t)s * (size_t)rank, 0) < 0)
            return NULL;
    int64_t dims[MIL_MAX_RANK];
    for (int d = 0; d < rank; d++) {
        dims[d] = shapes[d];
        for (int s = 1; s < n_shapes; s++)
            if (shapes[(size_t)s * (size_t)rank + (size_t)d] != shapes[d]) dims[d] = MIL_DIM_UNKNOWN;
    }
    MilValue *v = mil_input(f, name, dt, rank, dims);
    if (!v) return NULL;
    int64_t *copy = mil_alloc(p, sizeof *copy * (size_t)n_shapes * (size_t)rank);
    memcpy(copy, shapes, sizeof *copy * (size_t)n_shapes * (size_t)rank);
    v->n_shapes = n_shapes;
    v->shapes = copy;
    return v;
}

MilValue *mil_state(MilFunction *f, const char *name, MilDType dt, int rank, const int64_t *dims) {
    if (!f || f->prog->failed) return NULL;
    MilProgram *p = f->prog;
    if (mil_check_new_name(f, name, "state") < 0) return NULL;
    if (dt != MIL_FP16)
        return mil_fail(p, "function '%s': state '%s' is %s; Core ML supports fp16 states only", f->name, name,
                        mil_dtype_name(dt)),
               NULL;
    if (check_shape(p, f->name, name, rank, dims, 0) < 0) return NULL;
    if (rank < 1) return mil_fail(p, "function '%s': state '%s' must have rank >= 1", f->name, name), NULL;
    MilType t = mil_tensor_type(dt, rank, dims);
    t.kind = MIL_STATE;
    return add_input_value(f, name, t);
}

int mil_set_outputs(MilFunction *f, int n, MilValue *const *outs) {
    if (!f) return -1;
    MilProgram *p = f->prog;
    if (p->failed) return -1;
    if (n < 1) return mil_fail(p, "function '%s': needs at least one output", f->name);
    for (int i = 0; i < n; i++) {
        if (!outs[i]) return mil_fail(p, "function '%s': output %d is NULL", f->name, i);
        if (outs[i]->fn != f)
            return mil_fail(p, "function '%s': output '%s' is not a value of this function", f->name,
                            outs[i]->name ? outs[i]->name : "(literal)");
        if (outs[i]->type.kind == MIL_STATE)
            return mil_fail(p, "function '%s': output '%s' is a state; read it with read_state first", f->name,
                            outs[i]->name);
        for (int j = 0; j < i; j++)
            if (outs[j] == outs[i])
                return mil_fail(p, "function '%s': output '%s' is listed twice", f->name, outs[i]->name);
    }
    f->outputs = mil_alloc(p, sizeof *f->outputs * (size_t)n);
    memcpy(f->outputs, outs, sizeof *f->outputs * (size_t)n);
    f->n_outputs = n;
    return 0;
}

/* ==== Ops (containers) ==== */

void mil_append_op(MilFunction *f, MilOp *op) {
    if (f->n_ops == f->cap_ops) {
        f->cap_ops = f->cap_ops ? f->cap_ops * 2 : 64;
        f->ops = xrealloc(f->ops, sizeof *f->ops * (size_t)f->cap_ops);
    }
    f->ops[f->n_ops++] = op;
    if (op->name && !mil_names_get(f->op_names, op->name)) mil_names_put(f->op_names, op->name, op);
}

/* ==== Consts ==== */

int mil_should_use_blob(MilDType dt, int64_t numel, int spec_version) {
    if (numel < 10) return 0;
    switch (dt) {
    case MIL_FP16: case MIL_FP32: case MIL_UINT8: case MIL_INT8:
    case MIL_INT4: case MIL_UINT1: case MIL_UINT2: case MIL_UINT3: case MIL_UINT4: case MIL_UINT6:
        return 1;
    case MIL_UINT16: case MIL_INT16: case MIL_INT32: case MIL_UINT32:
        return spec_version >= 9;
    default:
        return 0;
    }
}

/* Validates a (dtype, shape, byte count) triple for const data. */
static int check_const_data(MilProgram *p, const char *fn, const char *what, MilDType dt, int rank,
                            const int64_t *dims, size_t nbytes, int64_t *numel_out) {
    if (!mil_dtype_is_valid(dt) || dt == MIL_STRING)
        return mil_fail(p, "function '%s': const '%s' has unsupported dtype %d", fn, what, (int)dt);
    if (check_shape(p, fn, what, rank, dims, 0) < 0) return -1;
    MilType t = mil_tensor_type(dt, rank, dims);
    int64_t numel = mil_type_numel(&t);
    uint64_t want;
    if (numel < 0 || mil_packed_size(dt, (uint64_t)numel, &want) < 0)
        return mil_fail(p, "function '%s': const '%s' is too large", fn, what);
    if (want != nbytes)
        return mil_fail(p, "function '%s': const '%s' (%s, %lld elements) needs %llu bytes of data, got %zu", fn,
                        what, mil_dtype_name(dt), (long long)numel, (unsigned long long)want, nbytes);
    *numel_out = numel;
    return 0;
}

/* Builds the MilConst for bytes: in memory when small, through the sink when large. */
static MilConst *make_const_data(MilProgram *p, const char *fn, const char *what, MilDType dt, int64_t numel,
                                 const void *data, size_t nbytes) {
    MilConst *c = mil_alloc(p, sizeof *c);
    int to_blob = mil_should_use_blob(dt, numel, 9) && p->sink.put;
    if (!to_blob) {
        void *copy = mil_alloc(p, nbytes);
        if (nbytes) memcpy(copy, data, nbytes);
        c->kind = MIL_CONST_BYTES;
        c->bytes = copy;
        c->nbytes = nbytes;
        return c;
    }
    Err e = {{0}};
    MilBlobRef ref;
    memset(&ref, 0, sizeof ref);
    if (p->sink.put(p->sink.ctx, dt, (uint64_t)numel, data, &ref, &e) < 0) {
        mil_fail(p, "function '%s': storing const '%s': %s", fn, what, e.msg);
        return NULL;
    }
    if (!ref.data && nbytes <= MIL_KEEP_BLOB_COPY) {
        void *copy = mil_alloc(p, nbytes);
        memcpy(copy, data, nbytes);
        ref.data = copy;
    }
    c->kind = MIL_CONST_BLOB;
    c->nbytes = nbytes;
    c->blob = ref;
    return c;
}

static MilConst *make_blob_data(MilProgram *p, const char *fn, const char *what, MilDType dt, int rank,
                                const int64_t *dims, const MilBlobRef *ref) {
    if (!ref) return mil_fail(p, "function '%s': const '%s' has a NULL blob reference", fn, what), NULL;
    if (!mil_dtype_is_valid(dt) || dt == MIL_STRING || dt == MIL_BOOL)
        return mil_fail(p, "function '%s': const '%s': dtype %s cannot be stored in a blob", fn, what,
                        mil_dtype_name(dt)),
               NULL;
    if (check_shape(p, fn, what, rank, dims, 0) < 0) return NULL;
    MilType t = mil_tensor_type(dt, rank, dims);
    int64_t numel = mil_type_numel(&t);
    uint64_t want;
    if (numel < 0 || mil_packed_size(dt, (uint64_t)numel, &want) < 0)
        return mil_fail(p, "function '%s': const '%s' is too large", fn, what), NULL;
    if (want != ref->nbytes)
        return mil_fail(p, "function '%s': const '%s' (%s, %lld elements) needs a %llu-byte blob, the reference "
                           "holds %llu bytes",
                        fn, what, mil_dtype_name(dt), (long long)numel, (unsigned long long)want,
                        (unsigned long long)ref->nbytes),
               NULL;
    MilConst *c = mil_alloc(p, sizeof *c);
    c->kind = MIL_CONST_BLOB;
    c->nbytes = ref->nbytes;
    c->blob = *ref;
    if (ref->file) c->blob.file = mil_strdup(p, ref->file);
    return c;
}

MilOp *mil_new_op(MilFunction *f, const char *type, const MilOpDef *def, const char *name, int n_outputs) {
    MilProgram *p = f->prog;
    MilOp *op = mil_alloc(p, sizeof *op);
    op->type = def ? def->type : mil_strdup(p, type);
    op->def = def;
    op->name = name;
    op->fn = f;
    op->n_outputs = n_outputs;
    if (n_outputs) op->outputs = mil_alloc(p, sizeof *op->outputs * (size_t)n_outputs);
    return op;
}

/* Adds a const op producing a value with the given type and data. */
static MilValue *add_const_op(MilFunction *f, const char *name, MilType t, const MilConst *c) {
    MilProgram *p = f->prog;
    MilOp *op = mil_new_op(f, "const", mil_op_def_by_id(MIL_OP_CONST), name, 1);
    MilValue *v = mil_alloc(p, sizeof *v);
    v->name = name;
    v->type = t;
    v->fn = f;
    v->producer = op;
    v->data = c;
    op->outputs[0] = v;
    mil_register_value(f, v);
    mil_append_op(f, op);
    return v;
}

static const char *const_name(MilFunction *f, const char *name) {
    if (!name) return mil_auto_name(f, "const");
    if (mil_check_new_name(f, name, "const") < 0) return NULL;
    if (mil_names_get(f->op_names, name)) {
        mil_fail(f->prog, "function '%s': an op named '%s' already exists", f->name, name);
        return NULL;
    }
    return mil_strdup(f->prog, name);
}

MilValue *mil_const(MilFunction *f, const char *name, MilDType dt, int rank, const int64_t *dims,
                    const void *data, size_t nbytes) {
    if (!f || f->prog->failed) return NULL;
    MilProgram *p = f->prog;
    const char *nm = const_name(f, name);
    if (!nm) return NULL;
    int64_t numel;
    if (check_const_data(p, f->name, nm, dt, rank, dims, nbytes, &numel) < 0) return NULL;
    if (nbytes && !data) return mil_fail(p, "function '%s': const '%s' has NULL data", f->name, nm), NULL;
    MilConst *c = make_const_data(p, f->name, nm, dt, numel, data, nbytes);
    if (!c) return NULL;
    return add_const_op(f, nm, mil_tensor_type(dt, rank, dims), c);
}

MilValue *mil_const_blob(MilFunction *f, const char *name, MilDType dt, int rank, const int64_t *dims,
                         const MilBlobRef *ref) {
    if (!f || f->prog->failed) return NULL;
    const char *nm = const_name(f, name);
    if (!nm) return NULL;
    MilConst *c = make_blob_data(f->prog, f->name, nm, dt, rank, dims, ref);
    if (!c) return NULL;
    return add_const_op(f, nm, mil_tensor_type(dt, rank, dims), c);
}

MilValue *mil_const_strv(MilFunction *f, const char *name, int n, const char *const *strs) {
    if (!f || f->prog->failed) return NULL;
    MilProgram *p = f->prog;
    const char *nm = const_name(f, name);
    if (!nm) return NULL;
    if (n < 1 || !strs) return mil_fail(p, "function '%s': string const '%s' needs strings", f->name, nm), NULL;
    const char **copy = mil_alloc(p, sizeof *copy * (size_t)n);
    for (int i = 0; i < n; i++) {
        if (!strs[i]) return mil_fail(p, "function '%s': string const '%s' has a NULL string", f->name, nm), NULL;
        copy[i] = mil_strdup(p, strs[i]);
    }
    MilConst *c = mil_alloc(p, sizeof *c);
    c->kind = MIL_CONST_BYTES;
    c->strs = copy;
    int64_t dim = n;
    return add_const_op(f, nm, mil_tensor_type(MIL_STRING, 1, &dim), c);
}

MilValue *mil_const_str(MilFunction *f, const char *name, const char *s) {
    if (!f || f->prog->failed) return NULL;
    MilProgram *p = f->prog;
    const char *nm = const_name(f, name);
    if (!nm) return NULL;
    if (!s) return mil_fail(p, "function '%s': string const '%s' is NULL", f->name, nm), NULL;
    const char **copy = mil_alloc(p, sizeof *copy);
    copy[0] = mil_strdup(p, s);
    MilConst *c = mil_alloc(p, sizeof *c);
    c->kind = MIL_CONST_BYTES;
    c->strs = copy;
    return add_const_op(f, nm, mil_tensor_type(MIL_STRING, 0, NULL), c);
}

MilValue *mil_const_i32(MilFunction *f, const char *name, int32_t v) {
    return mil_const(f, name, MIL_INT32, 0, NULL, &v, 4);
}

MilValue *mil_const_i32v(MilFunction *f, const char *name, int n, const int32_t *v) {
    int64_t dim = n;
    return mil_const(f, name, MIL_INT32, 1, &dim, v, (size_t)n * 4);
}

MilValue *mil_const_bool(MilFunction *f, const char *name, int v) {
    uint8_t b = v ? 1 : 0;
    return mil_const(f, name, MIL_BOOL, 0, NULL, &b, 1);
}

MilValue *mil_const_boolv(MilFunction *f, const char *name, int n, const uint8_t *v) {
    int64_t dim = n;
    uint8_t buf[64] = {0};
    if (n < 0) n = 0;
    uint8_t *b = n <= 64 ? buf : xmalloc((size_t)n);
    for (int i = 0; i < n && v; i++) b[i] = v[i] ? 1 : 0;
    MilValue *r = mil_const(f, name, MIL_BOOL, 1, &dim, b, (size_t)n);
    if (b != buf) free(b);
    return r;
}

MilValue *mil_const_fp16(MilFunction *f, const char *name, float v) {
    uint16_t h = f32_to_f16(v);
    return mil_const(f, name, MIL_FP16, 0, NULL, &h, 2);
}

MilValue *mil_const_fp32(MilFunction *f, const char *name, float v) {
    return mil_const(f, name, MIL_FP32, 0, NULL, &v, 4);
}

MilValue *mil_const_float(MilFunction *f, const char *name, MilDType dt, double v) {
    if (dt == MIL_FP16) return mil_const_fp16(f, name, (float)v);
    if (dt == MIL_FP32) return mil_const_fp32(f, name, (float)v);
    if (f && !f->prog->failed)
        mil_fail(f->prog, "function '%s': float const '%s' must be fp16 or fp32, not %s", f->name,
                 name ? name : "(auto)", mil_dtype_name(dt));
    return NULL;
}

/* ==== Literals ==== */

static MilValue *new_literal(MilProgram *p, MilType t, const MilConst *c) {
    MilValue *v = mil_alloc(p, sizeof *v);
    v->type = t;
    v->data = c;
    return v;
}

MilValue *mil_literal(MilProgram *p, MilDType dt, int rank, const int64_t *dims, const void *data,
                      size_t nbytes) {
    if (!p || p->failed) return NULL;
    int64_t numel;
    if (check_const_data(p, "-", "literal", dt, rank, dims, nbytes, &numel) < 0) return NULL;
    if (nbytes && !data) return mil_fail(p, "literal has NULL data"), NULL;
    MilConst *c = make_const_data(p, "-", "literal", dt, numel, data, nbytes);
    if (!c) return NULL;
    return new_literal(p, mil_tensor_type(dt, rank, dims), c);
}

MilValue *mil_literal_blob(MilProgram *p, MilDType dt, int rank, const int64_t *dims, const MilBlobRef *ref) {
    if (!p || p->failed) return NULL;
    MilConst *c = make_blob_data(p, "-", "literal", dt, rank, dims, ref);
    if (!c) return NULL;
    return new_literal(p, mil_tensor_type(dt, rank, dims), c);
}

/* ==== Reading const data ==== */

int mil_value_is_const(const MilValue *v) {
    if (!v) return 0;
    if (v->data) return 1;
    return v->producer && v->producer->type && !strncmp(v->producer->type, "constexpr_", 10);
}

const void *mil_const_bytes(const MilConst *c) {
    if (!c) return NULL;
    return c->kind == MIL_CONST_BYTES ? c->bytes : c->blob.data;
}

static int64_t read_int_elem(MilDType dt, const uint8_t *b, size_t i) {
    switch (dt) {
    case MIL_BOOL: case MIL_UINT8: return b[i];
    case MIL_INT8: return (int8_t)b[i];
    case MIL_INT16: { int16_t x; memcpy(&x, b + 2 * i, 2); return x; }
    case MIL_UINT16: { uint16_t x; memcpy(&x, b + 2 * i, 2); return x; }
    case MIL_INT32: { int32_t x; memcpy(&x, b + 4 * i, 4); return x; }
    case MIL_UINT32: { uint32_t x; memcpy(&x, b + 4 * i, 4); return x; }
    case MIL_INT64: { int64_t x; memcpy(&x, b + 8 * i, 8); return x; }
    case MIL_UINT64: { uint64_t x; memcpy(&x, b + 8 * i, 8); return (int64_t)x; }
    default: return mil_subbyte_get(dt, b, i);
    }
}

int mil_value_ints(const MilValue *v, int64_t *out, int max, int *n) {
    *n = 0;
    if (!v || !v->data) return -1;
    MilDType dt = v->type.dtype;
    if (!mil_dtype_is_int(dt) && dt != MIL_BOOL) return -1;
    const uint8_t *b = mil_const_bytes(v->data);
    int64_t numel = mil_type_numel(&v->type);
    if (!b || numel < 0 || numel > max) return -1;
    for (int64_t i = 0; i < numel; i++) out[i] = read_int_elem(dt, b, (size_t)i);
    *n = (int)numel;
    return 0;
}

int mil_value_floats(const MilValue *v, double *out, int max, int *n) {
    *n = 0;
    if (!v || !v->data) return -1;
    MilDType dt = v->type.dtype;
    const uint8_t *b = mil_const_bytes(v->data);
    int64_t numel = mil_type_numel(&v->type);
    if (!b || numel < 0 || numel > max) return -1;
    for (int64_t i = 0; i < numel; i++) {
        switch (dt) {
        case MIL_FP16: { uint16_t h; memcpy(&h, b + 2 * i, 2); out[i] = f16_to_f32(h); break; }
        case MIL_BF16: { uint16_t h; memcpy(&h, b + 2 * i, 2); out[i] = bf16_to_f32(h); break; }
        case MIL_FP32: { float x; memcpy(&x, b + 4 * i, 4); out[i] = x; break; }
        case MIL_FP64: { double x; memcpy(&x, b + 8 * i, 8); out[i] = x; break; }
        default: return -1;
        }
    }
    *n = (int)numel;
    return 0;
}

const char *mil_value_str(const MilValue *v) {
    if (!v || !v->data || v->type.dtype != MIL_STRING || v->type.rank != 0 || !v->data->strs) return NULL;
    return v->data->strs[0];
}

/* ==== Low-level construction ==== */

MilValue *mil_raw_input(MilFunction *f, const char *name, const MilType *t) {
    if (!f || f->prog->failed) return NULL;
    if (mil_check_new_name(f, name, "input") < 0) return NULL;
    if (check_shape(f->prog, f->name, name, t->rank, t->dims, t->kind == MIL_TENSOR) < 0) return NULL;
    return add_input_value(f, name, *t);
}

MilValue *mil_raw_const(MilFunction *f, const char *op_name, const char *out_name, const MilType *t,
                        const MilConst *c) {
    if (!f || f->prog->failed) return NULL;
    MilProgram *p = f->prog;
    if (mil_check_new_name(f, out_name, "const") < 0) return NULL;
    if (!mil_is_identifier(op_name))
        return mil_fail(p, "function '%s': const op name '%s' is not a valid MIL identifier", f->name,
                        op_name ? op_name : "(null)"),
               NULL;
    MilOp *op = mil_new_op(f, "const", mil_op_def_by_id(MIL_OP_CONST), mil_strdup(p, op_name), 1);
    MilValue *v = mil_alloc(p, sizeof *v);
    v->name = mil_strdup(p, out_name);
    v->type = *t;
    v->fn = f;
    v->producer = op;
    v->data = c;
    op->outputs[0] = v;
    mil_register_value(f, v);
    mil_append_op(f, op);
    return v;
}

MilValue *mil_raw_literal(MilProgram *p, const MilType *t, const MilConst *c) {
    if (!p || p->failed) return NULL;
    return new_literal(p, *t, c);
}

MilOp *mil_raw_op(MilFunction *f, const char *type, const char *name, int n_args, const MilArg *args,
                  int n_outputs, const char *const *out_names, const MilType *out_types, int allow_unknown) {
    if (!f || f->prog->failed) return NULL;
    MilProgram *p = f->prog;
    if (!mil_is_identifier(type))
        return mil_fail(p, "function '%s', op '%s': op type is not a valid identifier", f->name, name ? name : "?"), NULL;
    const MilOpDef *def = mil_op_def(type);
    if (!def && !allow_unknown)
        return mil_fail(p, "function '%s', op '%s': op type '%s' is not supported", f->name, name ? name : "?",
                        type),
               NULL;
    if (!mil_is_identifier(name))
        return mil_fail(p, "function '%s': op name '%s' (type %s) is not a valid MIL identifier", f->name,
                        name ? name : "(null)", type),
               NULL;
    MilOp *op = mil_new_op(f, type, def, mil_strdup(p, name), n_outputs);
    if (def) {
        op->n_args = def->n_params;
        op->args = mil_alloc(p, sizeof *op->args * (size_t)(def->n_params ? def->n_params : 1));
        for (int i = 0; i < def->n_params; i++) op->args[i].param = def->params[i].name;
        for (int a = 0; a < n_args; a++) {
            int k = mil_param_index(def, args[a].param);
            if (k < 0)
                return mil_fail(p, "function '%s', op '%s' (%s): unknown input '%s'", f->name, name, type,
                                args[a].param),
                       NULL;
            if (op->args[k].n)
                return mil_fail(p, "function '%s', op '%s' (%s): input '%s' is bound twice", f->name, name, type,
                                args[a].param),
                       NULL;
            op->args[k].n = args[a].n;
            op->args[k].vals = mil_alloc(p, sizeof(MilValue *) * (size_t)(args[a].n ? args[a].n : 1));
            memcpy(op->args[k].vals, args[a].vals, sizeof(MilValue *) * (size_t)args[a].n);
        }
    } else {
        op->n_args = n_args;
        op->args = mil_alloc(p, sizeof *op->args * (size_t)(n_args ? n_args : 1));
        for (int a = 0; a < n_args; a++) {
            for (int b = 0; b < a; b++)
                if (!strcmp(args[a].param, args[b].param))
                    return mil_fail(p, "function '%s', op '%s' (%s): input '%s' is bound twice", f->name, name, type,
                                    args[a].param),
                           NULL;
            op->args[a].param = mil_strdup(p, args[a].param);
            op->args[a].n = args[a].n;
            op->args[a].vals = mil_alloc(p, sizeof(MilValue *) * (size_t)(args[a].n ? args[a].n : 1));
            memcpy(op->args[a].vals, args[a].vals, sizeof(MilValue *) * (size_t)args[a].n);
        }
    }
    for (int i = 0; i < n_outputs; i++) {
        if (mil_check_new_name(f, out_names[i], "op output") < 0) return NULL;
        MilValue *v = mil_alloc(p, sizeof *v);
        v->name = mil_strdup(p, out_names[i]);
        v->type = out_types[i];
        v->fn = f;
        v->producer = op;
        v->output_index = i;
        op->outputs[i] = v;
        mil_register_value(f, v);
    }
    mil_append_op(f, op);
    return op;
}
