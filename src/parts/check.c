/* check.c - structural interface checks of written packages (contract in check.h). */
#include <stdio.h>
#include <string.h>

#include "coreml/package.h"
#include "parts/check.h"

typedef struct Want {
    const char *name;
    MilDType dtype;
    int rank;
    int64_t dims[4];
} Want;

static const PkgFeature *find_feature(const PkgFeature *fs, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(fs[i].name, name)) return &fs[i];
    return NULL;
}

static void shape_str(const PkgShape *s, char *buf, size_t n) {
    size_t len = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < s->rank && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? ", " : "", (long long)s->dims[i]);
    if (len < n) snprintf(buf + len, n - len, ")");
}

static int check_feature(const char *path, const char *fn, const char *what, const PkgFeature *fs, int n,
                         const Want *w, Err *e) {
    const PkgFeature *f = find_feature(fs, n, w->name);
    if (!f) return err_set(e, "%s: function %s has no %s '%s'", path, fn, what, w->name);
    if (f->dtype != w->dtype)
        return err_set(e, "%s: %s %s '%s' is %s, expected %s", path, fn, what, w->name, mil_dtype_name(f->dtype),
                       mil_dtype_name(w->dtype));
    if (w->rank == 0) return 0;   /* shape not declared (enumerated-length outputs) */
    PkgShape want = {w->rank, {0}};
    memcpy(want.dims, w->dims, sizeof w->dims);
    if (f->shape.rank == w->rank && !memcmp(f->shape.dims, w->dims, sizeof(int64_t) * (size_t)w->rank)) return 0;
    char got[96], exp[96];
    shape_str(&f->shape, got, sizeof got);
    shape_str(&want, exp, sizeof exp);
    return err_set(e, "%s: %s %s '%s' has shape %s, expected %s", path, fn, what, w->name, got, exp);
}

static int check_count(const char *path, const char *fn, const char *what, int got, int want, Err *e) {
    if (got == want) return 0;
    return err_set(e, "%s: function %s has %d %s, expected %d", path, fn, got, what, want);
}

static const char *meta_value(const Package *p, const char *key) {
    for (int i = 0; i < p->desc.metadata.n_user; i++)
        if (!strcmp(p->desc.metadata.user[i].key, key)) return p->desc.metadata.user[i].value;
    return NULL;
}

/* Metadata key present with the expected value (want NULL: must be absent). */
static int check_meta(const Package *p, const char *key, const char *want, Err *e) {
    const char *v = meta_value(p, key);
    if (!want && !v) return 0;
    if (!want) return err_set(e, "%s: metadata key %s should be absent, has '%s'", p->path, key, v);
    if (!v) return err_set(e, "%s: metadata key %s is missing (expected '%s')", p->path, key, want);
    if (strcmp(v, want)) return err_set(e, "%s: metadata %s is '%s', expected '%s'", p->path, key, v, want);
    return 0;
}

static int check_common_meta(const Package *p, const CheckSpec *s, Err *e) {
    char buf[32], lut[16];
    snprintf(buf, sizeof buf, "%ld", s->context);
    snprintf(lut, sizeof lut, "%d", s->lut_bits);
    if (!meta_value(p, "com.anemll.info")) return err_set(e, "%s: metadata key com.anemll.info is missing", p->path);
    if (check_meta(p, "com.anemll.context_length", buf, e) < 0) return -1;
    return check_meta(p, "com.anemll.lut_bits", s->lut_bits ? lut : NULL, e);
}

/* Opens path, checks the single-function form, runs fn on the package. */
static int open_single(const char *path, Package **out, const PkgFunctionDesc **fd, Err *e) {
    if (pkg_open(out, path, 0, e) < 0) return -1;
    const PkgDescription *d = &(*out)->desc;
    if (d->multifunction || d->n_functions != 1) {
        pkg_close(*out);
        *out = NULL;
        return err_set(e, "%s: expected a single-function package (function main)", path);
    }
    *fd = &d->functions[0];
    return 0;
}

int check_embeddings(const char *path, const CheckSpec *s, Err *e) {
    Package *p;
    const PkgFunctionDesc *fd;
    if (open_single(path, &p, &fd, e) < 0) return -1;
    int rc = check_count(path, "main", "inputs", fd->n_inputs, 1, e);
    Want in = {"input_ids", MIL_INT32, 2, {1, 1}};
    Want out = {"hidden_states", MIL_FP16, 0, {0}};
    if (rc == 0) rc = check_feature(path, "main", "input", fd->inputs, fd->n_inputs, &in, e);
    if (rc == 0) rc = check_count(path, "main", "outputs", fd->n_outputs, 1, e);
    if (rc == 0) rc = check_feature(path, "main", "output", fd->outputs, fd->n_outputs, &out, e);
    if (rc == 0) {
        const PkgFeature *f = &fd->inputs[0];
        int want_n = s->batch > 1 ? 2 : 1;
        int ok = f->n_enum == want_n && f->enum_shapes[0].rank == 2 && f->enum_shapes[0].dims[0] == 1 &&
                 f->enum_shapes[0].dims[1] == 1;
        if (ok && want_n == 2)
            ok = f->enum_shapes[1].rank == 2 && f->enum_shapes[1].dims[0] == 1 && f->enum_shapes[1].dims[1] == s->batch;
        if (!ok && !(want_n == 1 && f->n_enum == 0))
            rc = err_set(e, "%s: input_ids should accept the shapes (1, 1) and (1, %ld) (enumeratedShapes)", path,
                         s->batch);
    }
    if (rc == 0) {
        const MilFunction *f = mil_program_function(p->prog, "main");
        const MilType *t = f && f->n_outputs == 1 ? &f->outputs[0]->type : NULL;
        if (!t || t->rank != 3 || t->dims[2] != s->arch->hidden)
            rc = err_set(e, "%s: hidden_states should be (1, T, %d) fp16", path, s->arch->hidden);
    }
    if (rc == 0) rc = check_common_meta(p, s, e);
    pkg_close(p);
    return rc;
}

int check_lm_head(const char *path, const CheckSpec *s, Err *e) {
    Package *p;
    const PkgFunctionDesc *fd;
    if (open_single(path, &p, &fd, e) < 0) return -1;
    int sizes[PLAN_MAX_SPLITS];
    int n = plan_lm_head_sizes(s->arch, sizes);
    Want in = {"hidden_states", MIL_FP16, 3, {1, 1, s->arch->hidden}};
    int rc = check_count(path, "main", "inputs", fd->n_inputs, 1, e);
    if (rc == 0) rc = check_feature(path, "main", "input", fd->inputs, fd->n_inputs, &in, e);
    if (rc == 0 && s->argmax) {
        Want idx = {"argmax_idx", MIL_INT32, 1, {n}}, val = {"argmax_val", MIL_FP16, 1, {n}};
        rc = check_count(path, "main", "outputs", fd->n_outputs, 2, e);
        if (rc == 0) rc = check_feature(path, "main", "output", fd->outputs, fd->n_outputs, &idx, e);
        if (rc == 0) rc = check_feature(path, "main", "output", fd->outputs, fd->n_outputs, &val, e);
    } else if (rc == 0) {
        rc = check_count(path, "main", "outputs", fd->n_outputs, n, e);
        for (int i = 0; i < n && rc == 0; i++) {
            Want o = {NULL, MIL_FP16, 3, {1, 1, sizes[i]}};
            char name[32];
            snprintf(name, sizeof name, "logits%d", i + 1);
            o.name = name;
            rc = check_feature(path, "main", "output", fd->outputs, fd->n_outputs, &o, e);
        }
    }
    char list[PLAN_MAX_SPLITS * 12] = "", vocab[16];
    for (int i = 0; i < n; i++) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? "," : "", sizes[i]);
    snprintf(vocab, sizeof vocab, "%d", s->arch->vocab);
    if (rc == 0) rc = check_common_meta(p, s, e);
    if (rc == 0) rc = check_meta(p, "com.anemll.vocab_size", vocab, e);
    if (rc == 0) rc = check_meta(p, "com.anemll.lm_head_chunk_sizes", list, e);
    if (rc == 0) rc = check_meta(p, "com.anemll.argmax_in_model", s->argmax ? "true" : NULL, e);
    pkg_close(p);
    return rc;
}

static int check_ffn_function(const char *path, const PkgFunctionDesc *fd, const CheckSpec *s, PlanFfnKind kind,
                              int last, Err *e) {
    const Arch *a = s->arch;
    int prefill = plan_ffn_is_prefill(kind);
    int64_t t = prefill ? s->batch : 1, t_out = prefill && last ? 1 : t;
    Want ins[4] = {{"hidden_states", MIL_FP16, 3, {1, t, a->hidden}},
                   {"position_ids", MIL_INT32, 1, {t}},
                   {"causal_mask", MIL_FP16, 4, {1, 1, t, s->context}},
                   {"current_pos", MIL_INT32, 1, {1}}};
    Want out = {"output_hidden_states", MIL_FP16, 3, {1, t_out, a->hidden}};
    Want st[2];
    int n_states = 1;
    if (plan_split_cache(a)) {
        int n_local, n_global;
        plan_layer_types(a, &n_local, &n_global);
        st[0] = (Want){"model_model_kv_cache_local", MIL_FP16, 4,
                       {2 * (int64_t)n_local, a->n_kv_heads, s->local_length, a->head_dim}};
        st[1] = (Want){"model_model_kv_cache_global", MIL_FP16, 4,
                       {2 * (int64_t)n_global, a->n_kv_heads, s->state_length, a->head_dim}};
        n_states = 2;
    } else {
        st[0] = (Want){"model_model_kv_cache_0", MIL_FP16, 4,
                       {2 * (int64_t)a->n_layers, a->n_kv_heads, s->state_length, a->head_dim}};
    }
    if (check_count(path, fd->name, "inputs", fd->n_inputs, 4, e) < 0) return -1;
    for (int i = 0; i < 4; i++)
        if (check_feature(path, fd->name, "input", fd->inputs, fd->n_inputs, &ins[i], e) < 0) return -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(fd->inputs[i].name, ins[i].name))
            return err_set(e, "%s: function %s input %d is '%s', expected '%s'", path, fd->name, i, fd->inputs[i].name,
                           ins[i].name);
    if (check_count(path, fd->name, "outputs", fd->n_outputs, 1, e) < 0 ||
        check_feature(path, fd->name, "output", fd->outputs, fd->n_outputs, &out, e) < 0 ||
        check_count(path, fd->name, "states", fd->n_states, n_states, e) < 0)
        return -1;
    for (int i = 0; i < n_states; i++) {
        if (check_feature(path, fd->name, "state", fd->states, fd->n_states, &st[i], e) < 0) return -1;
        if (strcmp(fd->states[i].name, st[i].name))
            return err_set(e, "%s: function %s state %d is '%s', expected '%s'", path, fd->name, i, fd->states[i].name,
                           st[i].name);
    }
    return 0;
}

/* The functions of a package of this kind, in file order; returns their count. */
static int kind_functions(const CheckSpec *s, PlanFfnKind kind, PlanFfnKind fns[PLAN_FFN_FUNCTIONS]) {
    if (kind < PLAN_FFN_FUNCTIONS) {
        fns[0] = kind;
        return 1;
    }
    if (kind == FFN_COMBINED_ROT) {
        fns[0] = FFN_INFER_ROTATE;
        fns[1] = FFN_PREFILL_ROTATE;
        return 2;
    }
    int n = 0, rotate = plan_has_rotate(s->arch, s->context) && !s->split_rotate;
    fns[n++] = FFN_INFER;
    if (rotate) fns[n++] = FFN_INFER_ROTATE;
    fns[n++] = FFN_PREFILL;
    if (rotate) fns[n++] = FFN_PREFILL_ROTATE;
    return n;
}

int check_ffn(const char *path, const CheckSpec *s, PlanFfnKind kind, int chunk, Err *e) {
    Package *p;
    if (pkg_open(&p, path, 0, e) < 0) return -1;
    const PkgDescription *d = &p->desc;
    int last = chunk == s->n_chunks - 1, rc = 0, any_prefill = 0;
    PlanFfnKind fns[PLAN_FFN_FUNCTIONS];
    int n = kind_functions(s, kind, fns);
    if (kind < PLAN_FFN_FUNCTIONS) {
        if (d->multifunction || d->n_functions != 1)
            rc = err_set(e, "%s: expected a single-function package (function main)", path);
    } else {
        char want[96] = "";
        for (int i = 0; i < n; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s%s", i ? ", " : "",
                     plan_ffn_function_name(fns[i]), i ? "" : " (default)");
        int ok = d->multifunction && d->n_functions == n && d->default_function &&
                 !strcmp(d->default_function, plan_ffn_function_name(fns[0]));
        for (int i = 0; i < n && ok; i++) ok = !strcmp(d->functions[i].name, plan_ffn_function_name(fns[i]));
        if (!ok) rc = err_set(e, "%s: expected the functions %s", path, want);
    }
    for (int i = 0; i < n && rc == 0; i++) {
        rc = check_ffn_function(path, &d->functions[i], s, fns[i], last, e);
        any_prefill |= plan_ffn_is_prefill(fns[i]);
    }
    char buf[32];
    if (rc == 0) rc = check_common_meta(p, s, e);
    snprintf(buf, sizeof buf, "%d", s->n_chunks);
    if (rc == 0) rc = check_meta(p, "com.anemll.num_chunks", buf, e);
    snprintf(buf, sizeof buf, "%d", chunk + 1);
    if (rc == 0) rc = check_meta(p, "com.anemll.chunk_no", buf, e);
    snprintf(buf, sizeof buf, "%ld", s->batch);
    if (rc == 0) rc = check_meta(p, "com.anemll.batch_size", any_prefill ? buf : NULL, e);
    pkg_close(p);
    return rc;
}
