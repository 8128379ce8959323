/* Synthetic checkpoints: determinism, loading through the reader, KV cache against full
 * recomputation for every architecture and feature, sharded == single file, dtypes, the
 * built-in and copied tokenizers, the fp16-overflow option, and the generator's errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/util.h"
#include "io/checkpoint.h"
#include "io/json.h"
#include "model/reference.h"
#include "model/synth.h"

static char tmpdir[512];

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TEST_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/synth.XXXXXX", base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(tmpdir);
    return 0;
}

static char *make(SynthSpec *s, const char *name) {
    char *dir = path_join(tmpdir, name);
    Err e = {0};
    if (synth_write(s, dir, 1, NULL, &e) < 0) fail_msg("%s: %s", name, e.msg);
    return dir;
}

static void spec(SynthSpec *s, const char *type) {
    Err e = {0};
    if (synth_spec_init(s, type, &e) < 0) fail_msg("%s", e.msg);
}

static int files_equal(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    Err e = {0};
    if (file_read_all(a, 1 << 26, &x, &nx, &e) < 0) fail_msg("%s", e.msg);
    if (file_read_all(b, 1 << 26, &y, &ny, &e) < 0) fail_msg("%s", e.msg);
    int same = nx == ny && !memcmp(x, y, nx);
    free(x);
    free(y);
    return same;
}

static const char *files[] = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                              "tokenizer_config.json"};

static void test_deterministic_and_loadable(void **state) {
    (void)state;
    SynthSpec s;
    spec(&s, "gemma3");
    s.seed = 7;
    char *a = make(&s, "det_a"), *b = make(&s, "det_b");
    s.seed = 8;
    char *c = make(&s, "det_c");
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *pa = path_join(a, files[i]), *pb = path_join(b, files[i]), *pc = path_join(c, files[i]);
        assert_true(files_equal(pa, pb));
        if (!strcmp(files[i], "model.safetensors")) assert_false(files_equal(pa, pc));
        free(pa), free(pb), free(pc);
    }
    /* the same values whatever the thread count */
    s.seed = 7;
    s.threads = 1;
    char *d = make(&s, "det_d");
    char *pa = path_join(a, "model.safetensors"), *pd = path_join(d, "model.safetensors");
    assert_true(files_equal(pa, pd));
    free(pa), free(pd);

    /* it loads: every tensor arch.h expects, BF16, plus the 4 vision tensors */
    Checkpoint *ck;
    Arch arch;
    Err e = {0};
    if (ckpt_open(&ck, a, &e) < 0 || arch_load(&arch, a, &e) < 0) fail_msg("%s", e.msg);
    ArchTensor *list;
    int n;
    arch_tensor_list(&arch, &list, &n);
    for (int i = 0; i < n; i++) {
        const StTensor *t = ckpt_find(ck, list[i].name);
        assert_non_null(t);
        assert_int_equal(t->dtype, ST_BF16);
    }
    assert_int_equal(ck->n_tensors, (size_t)n + 4);
    assert_non_null(ckpt_find(ck, "vision_tower.vision_model.post_layernorm.weight"));
    /* statistics: v_proj ~ N(0, 0.05), q_norm ~ N(0, 0.15) (gemma's 1+w form) */
    char name[128];
    const StTensor *v = ckpt_find(ck, arch_layer_tensor_name(&arch, 0, W_V, name, sizeof name));
    float *buf = xmalloc(sizeof(float) * v->numel);
    assert_int_equal(st_read_f32(v, buf, &e), 0);
    double sum = 0, sq = 0;
    for (size_t i = 0; i < v->numel; i++) sum += buf[i], sq += (double)buf[i] * buf[i];
    double mean = sum / v->numel, sd = sqrt(sq / v->numel - mean * mean);
    print_message("v_proj: mean %.4f std %.4f over %zu values\n", mean, sd, v->numel);
    assert_true(fabs(mean) < 0.01 && fabs(sd - 0.05) < 0.005);
    free(buf);
    arch_free_tensor_list(list);
    arch_free(&arch);
    ckpt_close(ck);
    free(a), free(b), free(c), free(d);
}

/* max |full - incremental| over all logits of a 40-token sequence */
static double cache_vs_full(const char *dir, double *out_logit_range) {
    RefModel *m;
    Err e = {0};
    if (ref_load(&m, dir, NULL, &e) < 0) fail_msg("%s", e.msg);
    int V = ref_arch(m)->vocab, n = 40, seq[40];
    for (int i = 0; i < n; i++) seq[i] = (i * 37 + 11) % V;
    float *full = xmalloc(sizeof(float) * n * V), *step = xmalloc(sizeof(float) * n * V);
    assert_int_equal(ref_forward(m, seq, n, 0, full, 1, &e), 0);
    ref_reset(m);
    for (int t = 0; t < n; t++) assert_int_equal(ref_forward(m, &seq[t], 1, t, step + (size_t)t * V, 0, &e), 0);
    double md = 0, range = 0;
    for (size_t i = 0; i < (size_t)n * V; i++) {
        md = fmax(md, fabs((double)full[i] - step[i]));
        range = fmax(range, fabs(full[i]));
    }
    if (out_logit_range) *out_logit_range = range;
    free(full);
    free(step);
    ref_free(m);
    return md;
}

static void test_cache_equals_full_every_architecture(void **state) {
    (void)state;
    SynthSpec s;
    const char *types[] = {"llama", "qwen2", "qwen3", "gemma3_text", "gemma3"};
    for (int i = 0; i < 5; i++) {
        spec(&s, types[i]);
        char name[64];
        snprintf(name, sizeof name, "kv_%s", types[i]);
        char *dir = make(&s, name);
        double range, d = cache_vs_full(dir, &range);
        print_message("%-12s incremental vs full %.2e (logits up to %.2f)\n", types[i], d, range);
        assert_true(d < 1e-4);
        free(dir);
    }
    /* features: llama3 rope scaling + biases; qwen2 with its sliding window on; gemma3 with
       linear scaling and a window of 5; qwen3 with layer_types */
    spec(&s, "llama");
    s.rope_scaling = (RopeScaling){ROPE_LLAMA3, 32, 1, 4, 16};
    s.attention_bias = s.mlp_bias = 1;
    s.tied = 0;
    char *dir = make(&s, "kv_llama_feat");
    double d = cache_vs_full(dir, NULL);
    print_message("llama+llama3 rope+biases incremental vs full %.2e\n", d);
    assert_true(d < 1e-4);
    free(dir);
    spec(&s, "qwen2");
    s.sliding_window = 6;
    dir = make(&s, "kv_qwen2_window");
    Arch a;
    Err e = {0};
    assert_int_equal(arch_load(&a, dir, &e), 0);
    assert_int_equal(a.sliding_window, 6);
    assert_int_equal(arch_n_sliding(&a), a.n_layers);
    arch_free(&a);
    d = cache_vs_full(dir, NULL);
    print_message("qwen2 sliding window 6 incremental vs full %.2e\n", d);
    assert_true(d < 1e-4);
    free(dir);
    spec(&s, "gemma3");
    s.rope_scaling = (RopeScaling){ROPE_LINEAR, 8, 0, 0, 0};
    s.sliding_window = 5;
    s.n_layers = 4;
    snprintf(s.layer_types, sizeof s.layer_types, "s,f,s,f");
    dir = make(&s, "kv_gemma3_feat");
    d = cache_vs_full(dir, NULL);
    print_message("gemma3 linear rope, window 5 incremental vs full %.2e\n", d);
    assert_true(d < 1e-4);
    free(dir);
}

static float *logits_of(const char *dir, const int *seq, int n) {
    RefModel *m;
    Err e = {0};
    if (ref_load(&m, dir, NULL, &e) < 0) fail_msg("%s", e.msg);
    int V = ref_arch(m)->vocab;
    float *l = xmalloc(sizeof(float) * n * V);
    assert_int_equal(ref_forward(m, seq, n, 0, l, 1, &e), 0);
    ref_free(m);
    return l;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* Sharded and single-file checkpoints give identical logits; F32 storage of the same values
 * is identical too, F16 storage close. */
static void test_shards_and_dtypes(void **state) {
    (void)state;
    SynthSpec s;
    spec(&s, "qwen3");
    s.n_layers = 3;
    char *one = make(&s, "single");
    s.n_shards = 3;
    char *three = make(&s, "sharded");
    s.n_shards = 1;
    s.dtype = ST_F32;
    char *f32 = make(&s, "f32");
    s.dtype = ST_F16;
    char *f16 = make(&s, "f16");
    Checkpoint *ck;
    Err e = {0};
    if (ckpt_open(&ck, three, &e) < 0) fail_msg("%s", e.msg);
    assert_int_equal(ck->n_files, 3);
    ckpt_close(ck);
    char *idx = path_join(three, "model.safetensors.index.json");
    char *last = path_join(three, "model-00003-of-00003.safetensors");
    assert_true(path_exists(idx) && path_exists(last));
    free(idx), free(last);
    int seq[20];
    for (int i = 0; i < 20; i++) seq[i] = (i * 91 + 5) % 320;
    float *a = logits_of(one, seq, 20), *b = logits_of(three, seq, 20), *c = logits_of(f32, seq, 20),
          *d = logits_of(f16, seq, 20);
    assert_true(max_diff(a, b, 20 * 320) == 0);
    assert_true(max_diff(a, c, 20 * 320) == 0);
    double dh = max_diff(a, d, 20 * 320);
    print_message("bf16 vs f16 storage: max |dlogit| %.2e\n", dh);
    assert_true(dh < 1e-2);
    free(a), free(b), free(c), free(d);
    free(one), free(three), free(f32), free(f16);
}

/* The built-in tokenizer is a consistent BPE: every merge joins two vocabulary entries into
 * a third, ids are unique and cover 0..vocab-1, BOS/EOS are the special tokens. */
static void check_builtin_tokenizer(const char *dir, int V) {
    Err e = {0};
    SynthTokenIds ids;
    assert_int_equal(synth_write_builtin_tokenizer(dir, V, &ids, &e), 0);
    char *p = path_join(dir, "tokenizer.json");
    cJSON *t;
    assert_int_equal(json_read_file(p, 1 << 24, &t, &e), 0);
    const cJSON *model = cJSON_GetObjectItem(t, "model"), *vocab = cJSON_GetObjectItem(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItem(model, "merges"), *added = cJSON_GetObjectItem(t, "added_tokens");
    assert_string_equal(cJSON_GetObjectItem(model, "type")->valuestring, "BPE");
    int nv = cJSON_GetArraySize(vocab), nm = cJSON_GetArraySize(merges), na = cJSON_GetArraySize(added), fillers = 0;
    for (const cJSON *v = vocab->child; v; v = v->next) fillers += !strncmp(v->string, "<filler_", 8);
    print_message("built-in tokenizer, vocab %d: %d BPE entries (%d merges, %d fillers), %d added tokens\n", V, nv, nm,
                  fillers, na);
    assert_int_equal(nv, 256 + nm + fillers);
    assert_int_equal(nv + na, V);
    assert_true(nm > 50 && na <= 256);
    char *seen = xcalloc((size_t)V, 1);
    for (const cJSON *v = vocab->child; v; v = v->next) seen[v->valueint]++;
    for (const cJSON *v = added->child; v; v = v->next) seen[cJSON_GetObjectItem(v, "id")->valueint]++;
    for (int i = 0; i < V; i++) assert_int_equal(seen[i], 1);
    for (const cJSON *m = merges->child; m; m = m->next) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", m->valuestring);
        char *sp = strchr(buf, ' ');
        assert_non_null(sp);
        *sp = 0;
        assert_non_null(cJSON_GetObjectItemCaseSensitive(vocab, buf));
        assert_non_null(cJSON_GetObjectItemCaseSensitive(vocab, sp + 1));
        char joined[256];
        snprintf(joined, sizeof joined, "%s%s", buf, sp + 1);
        assert_non_null(cJSON_GetObjectItemCaseSensitive(vocab, joined));
    }
    assert_string_equal(cJSON_GetObjectItem(added->child, "content")->valuestring, "<|begin_of_text|>");
    assert_int_equal(ids.bos, cJSON_GetObjectItem(added->child, "id")->valueint);
    assert_int_equal(ids.bos, V - na);
    assert_int_equal(ids.n_eos, 2);
    free(seen);
    cJSON_Delete(t);
    free(p);
}

/* The built-in tokenizer is a consistent BPE: every merge joins two vocabulary entries into
 * a third, ids are unique and cover 0..vocab-1, BOS/EOS are special tokens; above 256 + merges
 * + 256 ids, filler entries pad the BPE vocabulary and 256 specials sit on top (Llama 3's
 * layout: BOS = vocab - 256). */
static void test_builtin_tokenizer(void **state) {
    (void)state;
    char *dir = path_join(tmpdir, "tok");
    Err e = {0};
    assert_int_equal(mkdir_p(dir, &e), 0);
    check_builtin_tokenizer(dir, 400);
    check_builtin_tokenizer(dir, 2000);
    SynthTokenIds ids;
    assert_int_equal(synth_write_builtin_tokenizer(dir, 260, &ids, &e), -1);
    assert_non_null(strstr(e.msg, "needs a vocabulary of at least 261"));
    free(dir);
}

/* Real tokenizers from $SHARED/tokenizers: sizes and special ids as in the released models. */
static void test_copied_tokenizers(void **state) {
    (void)state;
    const char *shared = getenv("SHARED");
    char *base = xasprintf("%s/tokenizers", shared ? shared : "../shared");
    if (!path_is_dir(base)) {
        print_message("skipped: %s not found\n", base);
        free(base);
        skip();
    }
    struct {
        const char *name;
        int size, bos, eos;
    } want[] = {{"llama3", 128256, 128000, 128001}, {"qwen3", 151669, -1, 151645}, {"gemma3", 262145, 2, 106}};
    for (int i = 0; i < 3; i++) {
        char *src = path_join(base, want[i].name), *dst = path_join(tmpdir, want[i].name);
        Err e = {0};
        assert_int_equal(mkdir_p(dst, &e), 0);
        SynthTokenIds ids;
        if (synth_copy_tokenizer(src, dst, &ids, &e) < 0) fail_msg("%s", e.msg);
        print_message("%s: size %d bos %d eos %d\n", want[i].name, ids.size, ids.bos, ids.n_eos ? ids.eos[0] : -1);
        assert_int_equal(ids.size, want[i].size);
        assert_int_equal(ids.bos, want[i].bos);
        assert_int_equal(ids.eos[0], want[i].eos);
        free(src), free(dst);
    }
    /* a whole model on the Llama 3 tokenizer: vocab 128256 */
    SynthSpec s;
    spec(&s, "llama");
    s.vocab = 0;
    s.hidden = 32, s.head_dim = 8, s.intermediate = 32, s.n_layers = 1;
    char *tok = path_join(base, "llama3");
    snprintf(s.tokenizer_dir, sizeof s.tokenizer_dir, "%s", tok);
    char *dir = make(&s, "llama3tok");
    Arch a;
    Err e = {0};
    assert_int_equal(arch_load(&a, dir, &e), 0);
    assert_int_equal(a.vocab, 128256);
    assert_int_equal(a.bos_id, 128000);
    arch_free(&a);
    free(dir), free(tok), free(base);
}

/* --post-norm-scale pushes a Gemma residual stream beyond fp16 like refvectors/fp16_overflow. */
static void test_post_norm_scale_overflows_fp16(void **state) {
    (void)state;
    SynthSpec s;
    spec(&s, "gemma3_text");
    s.post_norm_scale = 12000;
    char *dir = make(&s, "overflow");
    int seq[16];
    for (int i = 0; i < 16; i++) seq[i] = (i * 13 + 2) % 320;
    for (int prec = 0; prec < 2; prec++) {
        RefModel *m;
        Err e = {0};
        RefOptions opt = {.precision = prec ? REF_FP16 : REF_FP32};
        assert_int_equal(ref_load(&m, dir, &opt, &e), 0);
        RefStats *st = ref_stats_new(m);
        ref_set_stats(m, st);
        float *l = xmalloc(sizeof(float) * 320);
        assert_int_equal(ref_forward(m, seq, 16, 0, l, 0, &e), 0);
        float peak = 0;
        for (int i = 0; i < 3; i++) peak = fmaxf(peak, fmaxf(st->layers[i].resid_after_attn, st->layers[i].resid_after_mlp));
        print_message("%s: residual peak %.0f, first overflow \"%s\", first non-finite \"%s\"\n", prec ? "fp16" : "fp32",
                      peak, st->first_overflow, st->first_nonfinite);
        assert_true(peak > 65504);
        if (prec) assert_true(st->first_nonfinite[0] != 0);
        else assert_true(isfinite(l[0]) && st->first_nonfinite[0] == 0);
        free(l);
        ref_stats_free(st);
        ref_free(m);
    }
    free(dir);
}

static void set_config_number(const char *dir, const char *key, double v) {
    char *p = path_join(dir, "config.json");
    cJSON *c;
    Err e = {0};
    assert_int_equal(json_read_file(p, 1 << 20, &c, &e), 0);
    cJSON_DeleteItemFromObject(c, key);
    cJSON_AddNumberToObject(c, key, v);
    char *text = cJSON_Print(c);
    assert_int_equal(file_write_atomic(p, text, strlen(text), &e), 0);
    cJSON_free(text);
    cJSON_Delete(c);
    free(p);
}

/* Gemma's optional soft-capping (null in every released Gemma 3 config): the final cap maps
 * logits through cap * tanh(x / cap); the attention cap changes the scores. */
static void test_softcapping(void **state) {
    (void)state;
    SynthSpec s;
    spec(&s, "gemma3_text");
    char *dir = make(&s, "softcap");
    int seq[12];
    for (int i = 0; i < 12; i++) seq[i] = (i * 29 + 3) % 320;
    float *plain = logits_of(dir, seq, 12);
    set_config_number(dir, "final_logit_softcapping", 0.5);
    float *capped = logits_of(dir, seq, 12);
    double d = 0;
    for (int i = 0; i < 12 * 320; i++) d = fmax(d, fabs(capped[i] - 0.5 * tanh(plain[i] / 0.5)));
    assert_true(d < 1e-6);
    set_config_number(dir, "final_logit_softcapping", 0);
    set_config_number(dir, "attn_logit_softcapping", 0.05);
    float *attn = logits_of(dir, seq, 12);
    double changed = max_diff(plain, attn, 12 * 320);
    print_message("final cap: max |dev| %.1e; attention cap 0.05 changes logits by %.3f\n", d, changed);
    assert_true(changed > 1e-3);
    free(plain), free(capped), free(attn), free(dir);
}

static void test_errors(void **state) {
    (void)state;
    SynthSpec s;
    Err e = {0};
    assert_int_equal(synth_spec_init(&s, "mistral", &e), -1);
    assert_non_null(strstr(e.msg, "supported model types: llama, qwen2, qwen3, gemma3_text, gemma3"));
    spec(&s, "qwen3");
    assert_int_equal(synth_apply_preset(&s, "llama-3.2-1b", &e), -1);
    assert_int_equal(synth_apply_preset(&s, "huge", &e), -1);
    assert_non_null(strstr(e.msg, "unknown preset 'huge'"));
    char *dir = path_join(tmpdir, "exists");
    assert_int_equal(mkdir_p(dir, &e), 0);
    assert_int_equal(synth_write(&s, dir, 0, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "already exists"));
    char *fresh = path_join(tmpdir, "fresh");
    snprintf(s.layer_types, sizeof s.layer_types, "s,x");
    assert_int_equal(synth_write(&s, fresh, 0, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "layer type 'x'"));
    assert_false(path_exists(fresh)); /* nothing half-written left behind */
    snprintf(s.layer_types, sizeof s.layer_types, "s,f,f");
    assert_int_equal(synth_write(&s, fresh, 0, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "3 layer types given for 2 layers"));
    s.layer_types[0] = 0;
    s.n_shards = 500;
    assert_int_equal(synth_write(&s, fresh, 0, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "500 shards requested"));
    assert_false(path_exists(fresh));
    s.n_shards = 1;
    s.n_kv_heads = 3;
    assert_int_equal(synth_write(&s, fresh, 0, NULL, &e), -1);
    assert_non_null(strstr(e.msg, "multiple of kv heads"));
    free(dir), free(fresh);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic_and_loadable),
        cmocka_unit_test(test_cache_equals_full_every_architecture),
        cmocka_unit_test(test_shards_and_dtypes),
        cmocka_unit_test(test_builtin_tokenizer),
        cmocka_unit_test(test_copied_tokenizers),
        cmocka_unit_test(test_post_norm_scale_overflows_fp16),
        cmocka_unit_test(test_softcapping),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
