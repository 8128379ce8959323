/* interp.c - loading, planning and running functions (contract in interp.h).
 *
 * Sections: tensors, the kernel interface, planning (slots, ops, const conversion, the
 * in-place state analysis, lifetimes), running, states, models.
 */
#include "runtime/rt_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "common/util.h"

/* ==== Tensors ==== */

int64_t rt_numel(const RtTensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) n *= t->dims[i];
    return n;
}

int rt_is_float(MilDType dt) { return dt == MIL_FP16 || dt == MIL_FP32; }

static RtTensor make_tensor(MilDType dt, void *data, int rank, const int64_t *dims) {
    RtTensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.rank = rank;
    for (int i = 0; i < rank && i < MIL_MAX_RANK; i++) t.dims[i] = dims[i];
    t.data = data;
    return t;
}

RtTensor rt_f16(float *data, int rank, const int64_t *dims) { return make_tensor(MIL_FP16, data, rank, dims); }
RtTensor rt_f32(float *data, int rank, const int64_t *dims) { return make_tensor(MIL_FP32, data, rank, dims); }
RtTensor rt_i32(int32_t *data, int rank, const int64_t *dims) { return make_tensor(MIL_INT32, data, rank, dims); }

static void dims_str(int rank, const int64_t *dims, char *buf, size_t size) {
    size_t len = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < rank && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (len < size) snprintf(buf + len, size - len, "]");
}

void rt_tensor_str(const RtTensor *t, char *buf, size_t size) {
    char d[160];
    dims_str(t->rank, t->dims, d, sizeof d);
    snprintf(buf, size, "%s %s", mil_dtype_name(t->dtype), d);
}

void shape_strides(int rank, const int64_t *dims, int64_t *strides) {
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        strides[i] = s;
        s *= dims[i];
    }
}

int32_t wrap_int(MilDType dt, int64_t v) {
    switch (dt) {
    case MIL_INT8: return (int8_t)(uint8_t)v;
    case MIL_UINT8: return (uint8_t)v;
    case MIL_INT16: return (int16_t)(uint16_t)v;
    case MIL_UINT16: return (uint16_t)v;
    case MIL_BOOL: return v != 0;
    default: return (int32_t)(uint32_t)(uint64_t)v;
    }
}

/* ==== Kernel interface ==== */

int kfail(Kctx *k, const char *fmt, ...) {
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(k->e, "%s", msg);
}

int knorm_axis(Kctx *k, int64_t axis, int rank, int *out) {
    if (axis < -rank || axis >= rank || rank == 0)
        return kfail(k, "axis %lld is out of range for rank %d", (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return 0;
}

static int param_index(Kctx *k, const char *param) {
    int i = mil_param_index(k->p->def, param);
    AN_ASSERT(i >= 0);
    return i;
}

Slot *kin_slot(Kctx *k, const char *param, int index) {
    int i = param_index(k, param);
    if (index >= k->p->arg_n[i]) return NULL;
    return &k->f->slots[k->p->arg_slots[k->p->arg_start[i] + index]];
}

RtTensor *kin_at(Kctx *k, const char *param, int index) {
    Slot *s = kin_slot(k, param, index);
    return s ? &s->t : NULL;
}

RtTensor *kin(Kctx *k, const char *param) { return kin_at(k, param, 0); }

int kin_count(Kctx *k, const char *param) { return k->p->arg_n[param_index(k, param)]; }

int kin_ints(Kctx *k, const char *param, int64_t *out, int max, int *n) {
    int pi = param_index(k, param);
    Slot *s = kin_slot(k, param, 0);
    *n = 0;
    if (s) {
        if (s->str || s->f16 || rt_is_float(s->t.dtype) || !s->t.data)
            return kfail(k, "input '%s' must be an integer tensor", param);
        int64_t cnt = rt_numel(&s->t);
        if (cnt > max) return kfail(k, "input '%s' has %lld values, at most %d are supported", param, (long long)cnt, max);
        const int32_t *d = s->t.data;
        for (int64_t i = 0; i < cnt; i++) out[i] = d[i];
        *n = (int)cnt;
        return 0;
    }
    const MilDefault *df = &k->p->def->params[pi].dflt;
    RtTensor *x = kin(k, "x");
    int xr = x ? x->rank : 0;
    int cnt = 0;
    switch (df->kind) {
    case MIL_DEF_I32:
    case MIL_DEF_BOOL: out[cnt++] = df->i; break;
    case MIL_DEF_SPATIAL_I32:
    case MIL_DEF_SPATIAL2_I32: {
        int want = (xr - 2) * (df->kind == MIL_DEF_SPATIAL2_I32 ? 2 : 1);
        if (want < 0 || want > max) return kfail(k, "cannot default '%s' for rank %d", param, xr);
        for (int i = 0; i < want; i++) out[cnt++] = df->i;
        break;
    }
    case MIL_DEF_AXES_ALL:
        if (xr > max) return kfail(k, "too many axes");
        for (int i = 0; i < xr; i++) out[cnt++] = i;
        break;
    default: return kfail(k, "input '%s' is missing and has no default", param);
    }
    *n = cnt;
    return 0;
}

int kin_int(Kctx *k, const char *param, int64_t *out) {
    int n;
    int64_t v[1];
    if (kin_ints(k, param, v, 1, &n) < 0) return -1;
    if (n != 1) return kfail(k, "input '%s' must hold one value", param);
    *out = v[0];
    return 0;
}

int kin_float(Kctx *k, const char *param, double *out) {
    int pi = param_index(k, param);
    Slot *s = kin_slot(k, param, 0);
    if (s) {
        if (!s->t.data || rt_numel(&s->t) != 1) return kfail(k, "input '%s' must be a scalar", param);
        *out = rt_is_float(s->t.dtype) ? ((const float *)s->t.data)[0] : ((const int32_t *)s->t.data)[0];
        return 0;
    }
    const MilDefault *df = &k->p->def->params[pi].dflt;
    if (df->kind != MIL_DEF_FLOAT) return kfail(k, "input '%s' is missing and has no default", param);
    *out = df->f;
    return 0;
}

const char *kin_str(Kctx *k, const char *param) {
    int pi = param_index(k, param);
    Slot *s = kin_slot(k, param, 0);
    if (s) {
        if (!s->str) kfail(k, "input '%s' must be a string", param);
        return s->str;
    }
    const MilDefault *df = &k->p->def->params[pi].dflt;
    if (df->kind != MIL_DEF_STR) {
        kfail(k, "input '%s' is missing and has no default", param);
        return NULL;
    }
    return df->s;
}

RtTensor *kout(Kctx *k, int i, MilDType dt, int rank, const int64_t *dims) {
    AN_ASSERT(i < k->p->n_out);
    Slot *s = &k->f->slots[k->p->out_slots[i]];
    AN_ASSERT(!s->t.data);
    int64_t n = 1;
    for (int a = 0; a < rank; a++) n *= dims[a];
    s->t = make_tensor(dt, NULL, rank, dims);
    s->t.data = pool_get(k->f->m->pool, (size_t)n * 4, &s->buf_cls);
    return &s->t;
}

/* ==== Planning ==== */

/* MilValue pointer -> slot index (open addressing). */
typedef struct ValueMap {
    const MilValue **keys;
    int *vals;
    size_t cap;
} ValueMap;

static size_t ptr_hash(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

static int vmap_get(const ValueMap *m, const MilValue *v) {
    for (size_t i = ptr_hash(v) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) return -1;
        if (m->keys[i] == v) return m->vals[i];
    }
}

static void vmap_put(ValueMap *m, const MilValue *v, int slot) {
    size_t i = ptr_hash(v) & (m->cap - 1);
    while (m->keys[i]) i = (i + 1) & (m->cap - 1);
    m->keys[i] = v;
    m->vals[i] = slot;
}

typedef struct Planner {
    RtFunction *f;
    ValueMap map;
    int cap_slots;
    int *gather_uses, *other_uses;   /* per slot: uses that read fp16 bits (half_capable) / others */
} Planner;

static int slot_of(Planner *pl, const MilValue *v) {
    int s = vmap_get(&pl->map, v);
    if (s >= 0) return s;
    RtFunction *f = pl->f;
    if (f->n_slots == pl->cap_slots) {
        pl->cap_slots *= 2;
        f->slots = xrealloc(f->slots, sizeof *f->slots * (size_t)pl->cap_slots);
        pl->gather_uses = xrealloc(pl->gather_uses, sizeof(int) * (size_t)pl->cap_slots);
        pl->other_uses = xrealloc(pl->other_uses, sizeof(int) * (size_t)pl->cap_slots);
    }
    s = f->n_slots++;
    memset(&f->slots[s], 0, sizeof f->slots[s]);
    f->slots[s].v = v;
    f->slots[s].buf_cls = -1;
    f->slots[s].last_use = -1;
    pl->gather_uses[s] = pl->other_uses[s] = 0;
    vmap_put(&pl->map, v, s);
    return s;
}

static int is_runtime_op(const MilOp *op) {
    return !(op->def && (op->def->id == MIL_OP_CONST || op->def->id == MIL_OP_CONSTEXPR_LUT_TO_DENSE));
}

static int plan_fail(RtFunction *f, Err *e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int plan_fail(RtFunction *f, Err *e, const char *fmt, ...) {
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(e, "%s: function '%s': %s", f->m->name, f->mf->name, msg);
}

/* Inputs whose kernels read fp16 bits directly: gather tables and conv/linear weights. A const
 * used only there stays fp16 (half the memory, half the bytes read per token). */
static int half_capable(MilOpId id, const char *param) {
    return (id == MIL_OP_GATHER && !strcmp(param, "x")) ||
           ((id == MIL_OP_CONV || id == MIL_OP_LINEAR) && !strcmp(param, "weight"));
}

/* Slots and plan ops for every runtime op; counts uses of consts. */
static int plan_ops(Planner *pl, Err *e) {
    RtFunction *f = pl->f;
    const MilFunction *mf = f->mf;
    f->ops = xcalloc((size_t)mf->n_ops + 1, sizeof *f->ops);
    for (int i = 0; i < mf->n_inputs; i++) slot_of(pl, mf->inputs[i]);
    for (int i = 0; i < mf->n_ops; i++) {
        const MilOp *op = mf->ops[i];
        if (!op->def)
            return plan_fail(f, e, "op '%s' has type '%s', which the CPU runtime does not implement", op->name, op->type);
        if (!is_runtime_op(op)) continue;
        int moves;
        if (op->def->id != MIL_OP_READ_STATE && op->def->id != MIL_OP_WRITE_STATE && !kernel_for(op->def->id, &moves))
            return plan_fail(f, e, "op '%s' (%s) has no CPU kernel", op->name, op->type);
        PlanOp *p = &f->ops[f->n_ops++];
        p->op = op;
        p->def = op->def;
        p->state = -1;
        int total = 0;
        for (int a = 0; a < op->n_args; a++) total += op->args[a].n;
        p->arg_slots = xcalloc((size_t)total + 1, sizeof(int));
        AN_ASSERT(op->n_args == op->def->n_params);
        int at = 0;
        for (int a = 0; a < op->n_args; a++) {
            p->arg_start[a] = at;
            p->arg_n[a] = op->args[a].n;
            for (int j = 0; j < op->args[a].n; j++) {
                int s = slot_of(pl, op->args[a].vals[j]);
                p->arg_slots[at++] = s;
                if (half_capable(op->def->id, op->def->params[a].name)) pl->gather_uses[s]++;
                else pl->other_uses[s]++;
            }
        }
        p->n_out = op->n_outputs;
        p->out_slots = xcalloc((size_t)op->n_outputs + 1, sizeof(int));
        for (int j = 0; j < op->n_outputs; j++) p->out_slots[j] = slot_of(pl, op->outputs[j]);
    }
    return 0;
}

/* Inputs, states, outputs; converts consts. */
static int plan_values(Planner *pl, Err *e) {
    RtFunction *f = pl->f;
    const MilFunction *mf = f->mf;
    f->input_slots = xcalloc((size_t)mf->n_inputs + 1, sizeof(int));
    f->state_slots = xcalloc((size_t)mf->n_inputs + 1, sizeof(int));
    for (int i = 0; i < mf->n_inputs; i++) {
        const MilValue *v = mf->inputs[i];
        if (v->type.kind == MIL_STATE) f->state_slots[f->n_states++] = slot_of(pl, v);
        else f->input_slots[f->n_inputs++] = slot_of(pl, v);
    }
    f->bound = xcalloc((size_t)f->n_states + 1, sizeof *f->bound);
    f->output_slots = xcalloc((size_t)mf->n_outputs + 1, sizeof(int));
    for (int i = 0; i < mf->n_outputs; i++) {
        int s = slot_of(pl, mf->outputs[i]);
        f->output_slots[f->n_outputs++] = s;
        pl->other_uses[s]++;
    }
    for (int s = 0; s < f->n_slots; s++) {
        const MilValue *v = f->slots[s].v;
        if (!mil_value_is_const(v)) continue;
        int keep_f16 = pl->gather_uses[s] > 0 && pl->other_uses[s] == 0;
        if (const_materialize(f->m, v, keep_f16, &f->slots[s], e) < 0) return err_wrap(e, "%s: function '%s'", f->m->name, mf->name);
    }
    return 0;
}

static int state_index(const RtFunction *f, int slot) {
    for (int i = 0; i < f->n_states; i++)
        if (f->state_slots[i] == slot) return i;
    return -1;
}

/* Uses and last use of every slot; function outputs live to the end. */
static void plan_lifetimes(RtFunction *f) {
    for (int i = 0; i < f->n_ops; i++) {
        PlanOp *p = &f->ops[i];
        for (int a = 0; a < p->def->n_params; a++)
            for (int j = 0; j < p->arg_n[a]; j++) {
                Slot *s = &f->slots[p->arg_slots[p->arg_start[a] + j]];
                s->last_use = i;
                s->n_uses++;
            }
    }
    for (int i = 0; i < f->n_outputs; i++) {
        f->slots[f->output_slots[i]].last_use = f->n_ops;
        f->slots[f->output_slots[i]].n_uses++;
    }
}

/* Index of the plan op producing slot s, or -1. */
static int producer_index(const RtFunction *f, int s, int before) {
    for (int i = before - 1; i >= 0; i--)
        for (int j = 0; j < f->ops[i].n_out; j++)
            if (f->ops[i].out_slots[j] == s) return i;
    return -1;
}

static int op_is(const PlanOp *p, MilOpId id) { return p->def->id == id; }

/* The in-place state analysis (see interp.h, States):
 *  1. read_state(S) -> slice_update(x) -> write_state(S) where the slice_update is the last use
 *     of the read value (ops before it may read it too: the previous layer's attention reads
 *     the cache it then updates), the written value has no other use, and nothing else reads or
 *     writes S in between: the slice_update writes into S itself.
 *  2. Any other read_state is a view of S when no mutation of S (write_state, or an in-place
 *     slice_update) falls strictly inside the lifetime of its value, and it is not an output. */
static void plan_states(RtFunction *f) {
    for (int i = 0; i < f->n_ops; i++) {
        PlanOp *p = &f->ops[i];
        if (op_is(p, MIL_OP_READ_STATE) || op_is(p, MIL_OP_WRITE_STATE)) p->state = state_index(f, p->arg_slots[0]);
    }
    for (int c = 0; c < f->n_ops; c++) {
        PlanOp *w = &f->ops[c];
        if (!op_is(w, MIL_OP_WRITE_STATE) || w->state < 0) continue;
        int u = w->arg_slots[w->arg_start[1]];
        if (f->slots[u].n_uses != 1) continue;
        int b = producer_index(f, u, c);
        if (b < 0 || !op_is(&f->ops[b], MIL_OP_SLICE_UPDATE)) continue;
        int x = f->ops[b].arg_slots[0];
        if (f->slots[x].last_use != b) continue;   /* earlier readers (attention) are fine */
        int a = producer_index(f, x, b);
        if (a < 0 || !op_is(&f->ops[a], MIL_OP_READ_STATE) || f->ops[a].state != w->state) continue;
        int clean = 1;
        for (int i = a + 1; i < c && clean; i++)
            if ((op_is(&f->ops[i], MIL_OP_READ_STATE) || op_is(&f->ops[i], MIL_OP_WRITE_STATE)) && f->ops[i].state == w->state)
                clean = 0;
        /* the update itself must not be a view of the same state */
        int upd = f->ops[b].arg_slots[f->ops[b].arg_start[1]];
        if (!clean || upd == x) continue;
        f->ops[a].flags |= PLAN_STATE_VIEW;
        f->ops[b].flags |= PLAN_STATE_INPLACE;
        f->ops[b].state = w->state;
        w->flags |= PLAN_SKIP;
    }
    for (int a = 0; a < f->n_ops; a++) {
        PlanOp *r = &f->ops[a];
        if (!op_is(r, MIL_OP_READ_STATE) || r->state < 0 || (r->flags & PLAN_STATE_VIEW)) continue;
        int last = f->slots[r->out_slots[0]].last_use;
        if (last >= f->n_ops) continue;
        int mutated = 0;
        for (int m = a + 1; m < last && !mutated; m++) {
            const PlanOp *q = &f->ops[m];
            if (q->state != r->state) continue;
            if ((op_is(q, MIL_OP_WRITE_STATE) && !(q->flags & PLAN_SKIP)) || (q->flags & PLAN_STATE_INPLACE)) mutated = 1;
        }
        if (!mutated) r->flags |= PLAN_STATE_VIEW;
    }
}

static void plan_releases(RtFunction *f) {
    int *count = xcalloc((size_t)f->n_ops + 1, sizeof(int));
    for (int s = 0; s < f->n_slots; s++)
        if (!f->slots[s].is_const && f->slots[s].last_use >= 0 && f->slots[s].last_use < f->n_ops) count[f->slots[s].last_use]++;
    for (int i = 0; i < f->n_ops; i++) f->ops[i].release = xcalloc((size_t)count[i] + 1, sizeof(int));
    for (int s = 0; s < f->n_slots; s++) {
        Slot *sl = &f->slots[s];
        if (sl->is_const || sl->last_use < 0 || sl->last_use >= f->n_ops) continue;
        PlanOp *p = &f->ops[sl->last_use];
        p->release[p->n_release++] = s;
    }
    /* op outputs nobody reads are released right after their op */
    for (int i = 0; i < f->n_ops; i++) {
        PlanOp *p = &f->ops[i];
        for (int j = 0; j < p->n_out; j++) {
            Slot *sl = &f->slots[p->out_slots[j]];
            if (sl->last_use < 0) {
                p->release = xrealloc(p->release, sizeof(int) * (size_t)(p->n_release + 1));
                p->release[p->n_release++] = p->out_slots[j];
                sl->last_use = i;
            }
        }
    }
    free(count);
}

static void function_free(RtFunction *f);

static int plan_function(RtModel *m, const MilFunction *mf, RtFunction **out, Err *e) {
    RtFunction *f = xcalloc(1, sizeof *f);
    f->m = m;
    f->mf = mf;
    Planner pl = {.f = f, .cap_slots = 64};
    size_t want = 64;
    while (want < (size_t)(4 * (mf->n_ops + mf->n_inputs) + 64)) want *= 2;
    for (int i = 0; i < mf->n_ops; i++)
        for (int a = 0; a < mf->ops[i]->n_args; a++)
            while (want < (size_t)(4 * mf->ops[i]->args[a].n) + 64) want *= 2;
    size_t n_refs = 0;
    for (int i = 0; i < mf->n_ops; i++) {
        for (int a = 0; a < mf->ops[i]->n_args; a++) n_refs += (size_t)mf->ops[i]->args[a].n;
        n_refs += (size_t)mf->ops[i]->n_outputs;
    }
    while (want < 2 * (n_refs + (size_t)mf->n_inputs + (size_t)mf->n_outputs) + 64) want *= 2;
    pl.map.cap = want;
    pl.map.keys = xcalloc(want, sizeof *pl.map.keys);
    pl.map.vals = xcalloc(want, sizeof *pl.map.vals);
    f->slots = xcalloc((size_t)pl.cap_slots, sizeof *f->slots);
    pl.gather_uses = xcalloc((size_t)pl.cap_slots, sizeof(int));
    pl.other_uses = xcalloc((size_t)pl.cap_slots, sizeof(int));
    int rc = plan_ops(&pl, e);
    if (rc == 0) rc = plan_values(&pl, e);
    free(pl.map.keys);
    free(pl.map.vals);
    free(pl.gather_uses);
    free(pl.other_uses);
    if (rc < 0) {
        function_free(f);
        return -1;
    }
    plan_lifetimes(f);
    plan_states(f);
    plan_releases(f);
    *out = f;
    return 0;
}

/* ==== Running ==== */

static void slot_release(RtFunction *f, Slot *s) {
    if (s->is_const) return;
    if (s->buf_cls >= 0) pool_put(f->m->pool, s->t.data, s->buf_cls);
    s->buf_cls = -1;
    s->t.data = NULL;
}

static void release_all(RtFunction *f) {
    for (int s = 0; s < f->n_slots; s++) slot_release(f, &f->slots[s]);
    for (int i = 0; i < f->n_states; i++) f->bound[i] = NULL;
}

/* 1 if dims match the declared type (unknown declared dims match anything). */
static int shape_matches(const MilType *want, int rank, const int64_t *dims) {
    if (want->rank != rank) return 0;
    for (int i = 0; i < rank; i++)
        if (want->dims[i] >= 0 && want->dims[i] != dims[i]) return 0;
    return 1;
}

static int input_shape_ok(const MilValue *v, const RtTensor *t) {
    if (v->n_shapes > 0) {
        for (int k = 0; k < v->n_shapes; k++) {
            const int64_t *sh = v->shapes + (size_t)k * (size_t)v->type.rank;
            int ok = t->rank == v->type.rank;
            for (int i = 0; ok && i < t->rank; i++) ok = sh[i] == t->dims[i];
            if (ok) return 1;
        }
        return 0;
    }
    return shape_matches(&v->type, t->rank, t->dims);
}

static int bind_inputs(RtFunction *f, int n, const RtInput *in, Err *e) {
    char have[192], want[192];
    for (int i = 0; i < f->n_inputs; i++) {
        Slot *s = &f->slots[f->input_slots[i]];
        const RtInput *given = NULL;
        for (int j = 0; j < n; j++)
            if (in[j].name && !strcmp(in[j].name, s->v->name)) {
                if (given) return err_set(e, "input '%s' is given twice", s->v->name);
                given = &in[j];
            }
        mil_type_str(&s->v->type, want, sizeof want);
        if (!given) return err_set(e, "input '%s' (%s) is missing", s->v->name, want);
        const RtTensor *t = &given->t;
        rt_tensor_str(t, have, sizeof have);
        if (t->dtype != s->v->type.dtype || !input_shape_ok(s->v, t))
            return err_set(e, "input '%s' is %s; the function declares %s%s", s->v->name, have, want,
                           s->v->n_shapes > 0 ? " (one of its enumerated shapes)" : "");
        if (!t->data && rt_numel(t) > 0) return err_set(e, "input '%s' has no data", s->v->name);
        int64_t cnt = rt_numel(t);
        s->t = *t;
        s->t.data = pool_get(f->m->pool, (size_t)cnt * 4, &s->buf_cls);
        if (t->dtype == MIL_FP16) {
            const float *src = t->data;
            float *dst = s->t.data;
            for (int64_t k = 0; k < cnt; k++) dst[k] = round_f16(src[k]);
        } else if (rt_is_float(t->dtype)) {
            memcpy(s->t.data, t->data, (size_t)cnt * 4);
        } else {
            const int32_t *src = t->data;
            int32_t *dst = s->t.data;
            for (int64_t k = 0; k < cnt; k++) dst[k] = wrap_int(t->dtype, src[k]);
        }
    }
    for (int j = 0; j < n; j++) {
        int known = 0;
        for (int i = 0; i < f->n_inputs && !known; i++)
            known = in[j].name && !strcmp(in[j].name, f->slots[f->input_slots[i]].v->name);
        if (!known) return err_set(e, "the function has no input named '%s'", in[j].name ? in[j].name : "(null)");
    }
    return 0;
}

static int bind_states(RtFunction *f, RtStates *states, Err *e) {
    char have[192], want[192];
    for (int i = 0; i < f->n_states; i++) {
        const MilValue *v = f->slots[f->state_slots[i]].v;
        MilType tt = v->type;
        tt.kind = MIL_TENSOR;
        mil_type_str(&tt, want, sizeof want);
        RtState *st = states ? rt_states_find(states, v->name) : NULL;
        if (!st) return err_set(e, "state '%s' (%s) was not passed", v->name, want);
        rt_tensor_str(&st->t, have, sizeof have);
        if (st->t.dtype != v->type.dtype || !shape_matches(&tt, st->t.rank, st->t.dims) || tt.rank != st->t.rank)
            return err_set(e, "state '%s' is %s; the function declares %s", v->name, have, want);
        f->bound[i] = st;
    }
    return 0;
}

static int run_read_state(RtFunction *f, PlanOp *p) {
    RtState *st = f->bound[p->state];
    Slot *o = &f->slots[p->out_slots[0]];
    o->t = st->t;
    if (p->flags & PLAN_STATE_VIEW) {
        o->buf_cls = -1;
        return 0;
    }
    size_t bytes = (size_t)rt_numel(&st->t) * 4;
    o->t.data = pool_get(f->m->pool, bytes, &o->buf_cls);
    memcpy(o->t.data, st->t.data, bytes);
    return 0;
}

static int run_write_state(RtFunction *f, PlanOp *p, Err *e) {
    RtState *st = f->bound[p->state];
    const RtTensor *d = &f->slots[p->arg_slots[p->arg_start[1]]].t;
    if (p->flags & PLAN_SKIP) {
        AN_ASSERT(d->data == st->t.data);
        return 0;
    }
    if (d->rank != st->t.rank || memcmp(d->dims, st->t.dims, sizeof(int64_t) * (size_t)d->rank))
        return err_set(e, "data does not have the state's shape");
    if (d->data != st->t.data) memcpy(st->t.data, d->data, (size_t)rt_numel(d) * 4);
    return 0;
}

static void round_fp16_tensor(RtTensor *t) {
    float *d = t->data;
    int64_t n = rt_numel(t);
    for (int64_t i = 0; i < n; i++) d[i] = round_f16(d[i]);
}

static int run_op(RtFunction *f, PlanOp *p, Err *e) {
    if (op_is(p, MIL_OP_READ_STATE)) return run_read_state(f, p);
    if (op_is(p, MIL_OP_WRITE_STATE)) return run_write_state(f, p, e);
    int moves;
    KernelFn fn = kernel_for(p->def->id, &moves);
    Kctx k = {f, p, e};
    for (int a = 0; a < p->def->n_params; a++)
        for (int j = 0; j < p->arg_n[a]; j++) {
            const Slot *s = &f->slots[p->arg_slots[p->arg_start[a] + j]];
            if (!s->t.data && !s->str && !s->f16 && rt_numel(&s->t) > 0)
                return err_set(e, "input '%s' has no value (internal planning error)", p->def->params[a].name);
        }
    if (fn(&k) < 0) return -1;
    for (int j = 0; j < p->n_out; j++) {
        Slot *s = &f->slots[p->out_slots[j]];
        const MilType *want = &s->v->type;
        if (!s->t.data && rt_numel(&s->t) > 0) return err_set(e, "output %d was not produced", j);
        if (s->t.dtype != want->dtype || !shape_matches(want, s->t.rank, s->t.dims)) {
            char have[192], decl[192];
            rt_tensor_str(&s->t, have, sizeof have);
            mil_type_str(want, decl, sizeof decl);
            return err_set(e, "output '%s' is %s but the program declares %s", s->v->name, have, decl);
        }
        if (!moves && s->t.dtype == MIL_FP16 && !(p->flags & PLAN_STATE_INPLACE)) round_fp16_tensor(&s->t);
    }
    return 0;
}

int rt_run(RtFunction *f, int n_inputs, const RtInput *inputs, RtStates *states, Err *e) {
    release_all(f);
    f->ran = 0;
    int rc = bind_inputs(f, n_inputs, inputs, e);
    if (rc == 0) rc = bind_states(f, states, e);
    for (int i = 0; rc == 0 && i < f->n_ops; i++) {
        PlanOp *p = &f->ops[i];
        double t0 = f->m->profiling ? now_seconds() : 0;
        rc = run_op(f, p, e);
        if (f->m->profiling) {
            f->m->prof_seconds[p->def->id] += now_seconds() - t0;
            f->m->prof_calls[p->def->id]++;
        }
        if (rc < 0) {
            err_wrap(e, "op '%s' (%s)", p->op->name, p->op->type);
            break;
        }
        for (int r = 0; r < p->n_release; r++) slot_release(f, &f->slots[p->release[r]]);
    }
    if (rc < 0) {
        release_all(f);
        return err_wrap(e, "%s: function '%s'", f->m->name, f->mf->name);
    }
    for (int i = 0; i < f->n_states; i++) f->bound[i] = NULL;
    f->ran = 1;
    return 0;
}

const RtTensor *rt_output(const RtFunction *f, const char *name) {
    if (!f->ran || !name) return NULL;
    for (int i = 0; i < f->n_outputs; i++)
        if (!strcmp(f->mf->outputs[i]->name, name)) return &f->slots[f->output_slots[i]].t;
    return NULL;
}

int rt_n_outputs(const RtFunction *f) { return f->n_outputs; }
const char *rt_output_name(const RtFunction *f, int i) {
    return i >= 0 && i < f->n_outputs ? f->mf->outputs[i]->name : NULL;
}

const MilValue *rt_find_input(const RtFunction *f, const char *name) {
    for (int i = 0; i < f->mf->n_inputs; i++)
        if (!strcmp(f->mf->inputs[i]->name, name)) return f->mf->inputs[i];
    return NULL;
}

/* ==== States ==== */

RtStates *rt_states_new(const RtFunction *f, Err *e) {
    RtStates *s = xcalloc(1, sizeof *s);
    s->states = xcalloc((size_t)f->n_states + 1, sizeof *s->states);
    for (int i = 0; i < f->n_states; i++) {
        const MilValue *v = f->slots[f->state_slots[i]].v;
        int64_t n = mil_type_numel(&v->type);
        if (n < 0 || n > ((int64_t)1 << 36)) {
            rt_states_free(s);
            err_set(e, "%s: state '%s' has an unknown or too large shape", f->m->name, v->name);
            return NULL;
        }
        RtState *st = &s->states[s->n++];
        st->name = xstrdup(v->name);
        /* written now rather than left to calloc's lazy zero pages, so that the resident memory
           holds the whole state from the start and does not creep up as positions fill */
        void *data = xmalloc((size_t)n * 4 + 4);
        memset(data, 0, (size_t)n * 4 + 4);
        st->t = make_tensor(v->type.dtype, data, v->type.rank, v->type.dims);
    }
    return s;
}

void rt_states_zero(RtStates *s) {
    for (int i = 0; i < s->n; i++) memset(s->states[i].t.data, 0, (size_t)rt_numel(&s->states[i].t) * 4);
}

RtState *rt_states_find(RtStates *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->states[i].name, name)) return &s->states[i];
    return NULL;
}

void rt_states_free(RtStates *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        free((char *)s->states[i].name);
        free(s->states[i].t.data);
    }
    free(s->states);
    free(s);
}

/* ==== Models ==== */

static void function_free(RtFunction *f) {
    if (!f) return;
    if (f->m && f->m->pool) release_all(f);
    for (int i = 0; i < f->n_ops; i++) {
        free(f->ops[i].arg_slots);
        free(f->ops[i].out_slots);
        free(f->ops[i].release);
    }
    free(f->ops);
    free(f->slots);
    free(f->input_slots);
    free(f->state_slots);
    free(f->output_slots);
    free(f->bound);
    free(f);
}

static int model_plan(RtModel *m, Err *e) {
    const MilProgram *p = m->prog;
    m->functions = xcalloc((size_t)p->n_functions + 1, sizeof *m->functions);
    for (int i = 0; i < p->n_functions; i++) {
        if (plan_function(m, p->functions[i], &m->functions[i], e) < 0) return -1;
        m->n_functions++;
    }
    return 0;
}

static RtModel *model_new(const char *name, const RtOptions *opt) {
    RtModel *m = xcalloc(1, sizeof *m);
    m->name = xstrdup(name);
    m->pool = pool_new();
    m->consts = const_cache_new();
    m->threads = opt ? opt->threads : 0;
    return m;
}

int rt_open_program(RtModel **out, const MilProgram *p, const char *name, const RtOptions *opt, Err *e) {
    *out = NULL;
    if (mil_error(p, e) < 0) return err_wrap(e, "%s", name);
    if (mil_program_validate(p, 0, e) < 0) return err_wrap(e, "%s", name);
    RtModel *m = model_new(name, opt);
    m->prog = p;
    if (model_plan(m, e) < 0) {
        rt_close(m);
        return -1;
    }
    *out = m;
    return 0;
}

int rt_open(RtModel **out, const char *path, const RtOptions *opt, Err *e) {
    *out = NULL;
    Package *pkg;
    if (pkg_open(&pkg, path, 0, e) < 0) return -1;
    RtModel *m = model_new(path, opt);
    m->pkg = pkg;
    m->prog = pkg->prog;
    if (model_plan(m, e) < 0) {
        rt_close(m);
        return -1;
    }
    *out = m;
    return 0;
}

void rt_close(RtModel *m) {
    if (!m) return;
    for (int i = 0; i < m->n_functions; i++) function_free(m->functions[i]);
    free(m->functions);
    const_cache_free(m->consts);
    pool_free(m->pool);
    pkg_close(m->pkg);
    free(m->name);
    free(m);
}

const Package *rt_package(const RtModel *m) { return m->pkg; }
const char *rt_model_name(const RtModel *m) { return m->name; }

const char *rt_metadata(const RtModel *m, const char *key) {
    if (!m->pkg) return NULL;
    const PkgMetadata *md = &m->pkg->desc.metadata;
    for (int i = 0; i < md->n_user; i++)
        if (md->user[i].key && !strcmp(md->user[i].key, key)) return md->user[i].value;
    return NULL;
}

RtFunction *rt_function(RtModel *m, const char *name) {
    if (!name) {
        const char *d = m->prog->default_function;
        if (!d && m->pkg && m->pkg->desc.default_function) d = m->pkg->desc.default_function;
        if (!d) return m->n_functions ? m->functions[0] : NULL;
        name = d;
    }
    for (int i = 0; i < m->n_functions; i++)
        if (!strcmp(m->functions[i]->mf->name, name)) return m->functions[i];
    return NULL;
}

int rt_n_functions(const RtModel *m) { return m->n_functions; }
RtFunction *rt_function_at(RtModel *m, int i) { return i >= 0 && i < m->n_functions ? m->functions[i] : NULL; }
const MilFunction *rt_function_mil(const RtFunction *f) { return f->mf; }
const char *rt_function_name(const RtFunction *f) { return f->mf->name; }

void rt_memory_stats(const RtModel *m, RtMemoryStats *s) {
    s->fresh_allocs = pool_fresh_allocs(m->pool);
    s->pool_bytes = pool_bytes(m->pool);
    s->const_bytes = m->const_bytes;
    s->shared_consts = m->shared_consts;
}

void rt_set_profiling(RtModel *m, int on) { m->profiling = on; }

void rt_profile(const RtModel *m, double *seconds, uint64_t *calls) {
    for (int i = 0; i < MIL_OP_COUNT; i++) {
        seconds[i] += m->prof_seconds[i];
        calls[i] += m->prof_calls[i];
    }
}
