/* config.json -> Arch: the refvector configs, tensor names against the real checkpoints,
 * RoPE frequencies, defaults, and one malformed config per validation rule. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/util.h"
#include "io/checkpoint.h"
#include "model/arch.h"

static const char *data_dir(void) {
    const char *d = getenv("ANEMLL_TEST_DATA");
    return d ? d : "tests/data";
}

static void load_case(const char *name, Arch *a) {
    char *dir = xasprintf("%s/refvectors/%s", data_dir(), name);
    Err e = {0};
    if (arch_load(a, dir, &e) < 0) fail_msg("%s", e.msg);
    free(dir);
}

static void parse_ok(const char *json, Arch *a) {
    Err e = {0};
    if (arch_parse(a, json, strlen(json), "cfg.json", &e) < 0) fail_msg("%s", e.msg);
}

static void test_refvector_configs(void **state) {
    (void)state;
    Arch a;
    load_case("llama_rope_llama3", &a);
    assert_int_equal(a.family, FAMILY_LLAMA);
    assert_int_equal(a.head_dim, 16);
    assert_int_equal(a.n_kv_heads, 2);
    assert_true(a.tied);
    assert_string_equal(arch_lm_head_name(&a), "model.embed_tokens.weight");
    assert_int_equal(a.rope_scaling.type, ROPE_LLAMA3);
    assert_int_equal(a.sliding_window, 0);
    assert_false(a.qkv_bias || a.qk_norm || a.norm_plus_one);
    assert_int_equal(a.bos_id, 1);
    assert_int_equal(a.n_eos, 1);
    assert_int_equal(a.eos_ids[0], 2);
    assert_true(fabsf(a.rms_eps - 1e-5f) < 1e-12f);
    assert_true(a.attn_scale == (float)pow(16, -0.5));
    arch_free(&a);

    load_case("qwen2_bias", &a);
    assert_int_equal(a.family, FAMILY_QWEN2);
    assert_true(a.qkv_bias);
    assert_false(a.o_bias);
    assert_int_equal(a.sliding_window, 0); /* sliding_window 8 with use_sliding_window false */
    assert_int_equal(arch_n_sliding(&a), 0);
    arch_free(&a);

    load_case("qwen3_qknorm", &a);
    assert_int_equal(a.head_dim, 32);
    assert_int_equal(arch_q_dim(&a), 128);
    assert_true(a.qk_norm);
    assert_false(a.norm_plus_one);
    assert_false(a.tied);
    assert_string_equal(arch_lm_head_name(&a), "lm_head.weight");
    arch_free(&a);

    load_case("gemma3_text_sliding", &a);
    assert_int_equal(a.family, FAMILY_GEMMA3);
    assert_true(a.norm_plus_one && a.sandwich_norms && a.qk_norm);
    assert_int_equal(a.act, ACT_GELU_TANH);
    assert_int_equal(a.sliding_window, 8);
    assert_int_equal(a.layer_sliding[0], 1);
    assert_int_equal(a.layer_sliding[1], 0);
    assert_int_equal(a.layer_sliding[2], 1);
    assert_true(a.attn_scale == (float)pow(24, -0.5));
    assert_true(a.embed_scale == 8.0f);
    assert_true(a.rope_local_theta == 10000.0 && a.rope_theta == 1e6);
    arch_free(&a);

    load_case("gemma3_multimodal_text", &a);
    assert_string_equal(a.model_type, "gemma3");
    assert_true(a.multimodal);
    assert_string_equal(a.prefix, "language_model.model.");
    assert_int_equal(a.n_kv_heads, 1);
    assert_int_equal(a.n_eos, 2);
    assert_int_equal(a.eos_ids[1], 3);
    assert_int_equal(a.rope_scaling.type, ROPE_LINEAR);
    assert_string_equal(arch_lm_head_name(&a), "language_model.model.embed_tokens.weight");
    arch_free(&a);
}

/* arch_tensor_list names exactly the text-model tensors of each real checkpoint, with their
 * shapes; the multimodal file's vision tensors are the only extras. */
static void test_tensor_names_match_checkpoints(void **state) {
    (void)state;
    const char *cases[] = {"llama_rope_llama3", "llama_untied_sharded", "qwen2_bias", "qwen3_qknorm",
                           "gemma3_text_sliding", "gemma3_multimodal_text", "fp16_overflow"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        Arch a;
        load_case(cases[c], &a);
        char *dir = xasprintf("%s/refvectors/%s", data_dir(), cases[c]);
        Checkpoint *ck;
        Err e = {0};
        if (ckpt_open(&ck, dir, &e) < 0) fail_msg("%s", e.msg);
        ArchTensor *list;
        int n;
        arch_tensor_list(&a, &list, &n);
        for (int i = 0; i < n; i++) {
            const StTensor *t = ckpt_find(ck, list[i].name);
            if (!t) fail_msg("%s: expected tensor %s is absent", cases[c], list[i].name);
            assert_int_equal(t->ndim, list[i].ndim);
            for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], list[i].shape[d]);
        }
        size_t extras = ck->n_tensors - (size_t)n;
        assert_int_equal(extras, a.multimodal ? 4 : 0);
        arch_free_tensor_list(list);
        ckpt_close(ck);
        free(dir);
        arch_free(&a);
    }
    Arch a;
    load_case("llama_untied_sharded", &a);
    char buf[128];
    assert_string_equal(arch_layer_tensor_name(&a, 3, W_Q, buf, sizeof buf), "model.layers.3.self_attn.q_proj.weight");
    assert_string_equal(arch_layer_tensor_name(&a, 0, W_MLP_NORM, buf, sizeof buf),
                        "model.layers.0.post_attention_layernorm.weight");
    assert_false(arch_has_weight(&a, W_POST_ATTN_NORM));
    arch_free(&a);
    load_case("gemma3_multimodal_text", &a);
    assert_string_equal(arch_layer_tensor_name(&a, 2, W_MLP_NORM, buf, sizeof buf),
                        "language_model.model.layers.2.pre_feedforward_layernorm.weight");
    assert_string_equal(arch_layer_tensor_name(&a, 2, W_POST_ATTN_NORM, buf, sizeof buf),
                        "language_model.model.layers.2.post_attention_layernorm.weight");
    assert_string_equal(arch_tensor_name(&a, "norm.weight", buf, sizeof buf), "language_model.model.norm.weight");
    arch_free(&a);
}

/* llama3 scaling on the refvector config: of the 8 inverse frequencies, the first
 * (wavelength 2*pi, between 4 and 16) is interpolated (divided by ~1.8845), the rest divided
 * by 32. Gemma: sliding layers use base 10000 unscaled, the global layer base 1e6 / 8. */
static void test_rope_frequencies(void **state) {
    (void)state;
    Arch a;
    load_case("llama_rope_llama3", &a);
    float inv[8];
    arch_rope_inv_freq(&a, 0, inv);
    for (int i = 0; i < 8; i++) {
        double plain = 1.0 / pow(500000.0, 2.0 * i / 16);
        double ratio = plain / inv[i];
        if (i == 0) assert_true(fabs(ratio - 1.8845) < 1e-3);
        else assert_true(fabs(ratio - 32.0) < 1e-4);
    }
    float c[8], s[8];
    arch_rope_cos_sin(&a, 0, 5, c, s);
    assert_true(fabsf(c[0] - cosf(5 * inv[0])) < 1e-7f && fabsf(s[3] - sinf(5 * inv[3])) < 1e-7f);
    arch_free(&a);

    load_case("gemma3_multimodal_text", &a); /* layers: sliding, sliding, full */
    float loc[16], glob[16];
    arch_rope_inv_freq(&a, 0, loc);
    arch_rope_inv_freq(&a, 2, glob);
    for (int i = 0; i < 16; i++) {
        assert_true(fabs(loc[i] - 1.0 / pow(10000.0, 2.0 * i / 32)) < 1e-6 * loc[i] + 1e-12);
        assert_true(fabs(glob[i] - 1.0 / pow(1e6, 2.0 * i / 32) / 8) < 1e-6 * glob[i] + 1e-12);
    }
    arch_free(&a);

    /* Llama / Qwen: every layer uses rope_theta, also the sliding ones */
    parse_ok("{\"model_type\":\"qwen2\",\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":4,"
             "\"intermediate_size\":8,\"vocab_size\":10,\"use_sliding_window\":true,\"sliding_window\":16,"
             "\"max_window_layers\":1,\"rope_theta\":1000.0,\"rope_scaling\":{\"type\":\"linear\",\"factor\":2}}",
             &a);
    assert_int_equal(a.layer_sliding[0], 0);
    assert_int_equal(a.layer_sliding[1], 1);
    assert_int_equal(a.sliding_window, 16);
    arch_rope_inv_freq(&a, 1, loc);
    assert_true(fabs(loc[1] - 1.0 / pow(1000.0, 2.0 / 16) / 2) < 1e-6);
    arch_free(&a);
}

static void test_defaults(void **state) {
    (void)state;
    Arch a;
    /* gemma3_text without layer_types: every 6th layer global; class defaults for the rest */
    parse_ok("{\"model_type\":\"gemma3_text\",\"hidden_size\":64,\"num_hidden_layers\":12,\"num_attention_heads\":4,"
             "\"num_key_value_heads\":1,\"intermediate_size\":8,\"vocab_size\":10}",
             &a);
    for (int i = 0; i < 12; i++) assert_int_equal(a.layer_sliding[i], i != 5 && i != 11);
    assert_int_equal(a.head_dim, 256);
    assert_true(a.attn_scale == (float)pow(256, -0.5));
    assert_int_equal(a.sliding_window, 4096);
    assert_true(a.tied);
    assert_int_equal(a.bos_id, 2);
    arch_free(&a);
    parse_ok("{\"model_type\":\"gemma3_text\",\"hidden_size\":64,\"num_hidden_layers\":4,\"num_attention_heads\":4,"
             "\"intermediate_size\":8,\"vocab_size\":10,\"sliding_window_pattern\":2,\"head_dim\":16}",
             &a);
    for (int i = 0; i < 4; i++) assert_int_equal(a.layer_sliding[i], i % 2 == 0);
    arch_free(&a);
    /* llama: head_dim = hidden / heads, untied, kv heads = heads, attention_bias -> q/k/v/o biases */
    parse_ok("{\"model_type\":\"llama\",\"hidden_size\":96,\"num_hidden_layers\":1,\"num_attention_heads\":6,"
             "\"intermediate_size\":8,\"vocab_size\":10,\"attention_bias\":true,\"mlp_bias\":true,"
             "\"eos_token_id\":[5,6,7],\"bos_token_id\":null}",
             &a);
    assert_int_equal(a.head_dim, 16);
    assert_int_equal(a.n_kv_heads, 6);
    assert_false(a.tied);
    assert_true(a.qkv_bias && a.o_bias && a.mlp_bias);
    assert_true(arch_has_weight(&a, W_O_BIAS) && arch_has_weight(&a, W_DOWN_BIAS));
    assert_int_equal(a.bos_id, -1);
    assert_int_equal(a.n_eos, 3);
    assert_int_equal(a.eos_ids[2], 7);
    arch_free(&a);
    /* a sparse multimodal text_config, as gemma-3-4b-it ships it: the rest are class defaults */
    parse_ok("{\"architectures\":[\"Gemma3ForConditionalGeneration\"],\"eos_token_id\":[1,106],\"model_type\":\"gemma3\","
             "\"text_config\":{\"hidden_size\":2560,\"intermediate_size\":10240,\"model_type\":\"gemma3_text\","
             "\"num_hidden_layers\":34,\"rope_scaling\":{\"factor\":8.0,\"rope_type\":\"linear\"},"
             "\"sliding_window\":1024},\"vision_config\":{}}",
             &a);
    assert_int_equal(a.n_heads, 8);
    assert_int_equal(a.n_kv_heads, 4);
    assert_int_equal(a.head_dim, 256);
    assert_int_equal(a.vocab, 262208);
    assert_int_equal(a.sliding_window, 1024);
    assert_int_equal(arch_n_sliding(&a), 34 - 5); /* global at 5, 11, 17, 23, 29 */
    assert_false(a.layer_sliding[29]);
    assert_int_equal(a.n_eos, 2);
    assert_int_equal(a.eos_ids[1], 106);
    assert_int_equal(a.bos_id, 2);
    assert_true(a.tied);
    assert_true(a.embed_scale == (float)sqrt(2560.0));
    arch_free(&a);
    /* qwen3: head_dim defaults to 128 */
    parse_ok("{\"model_type\":\"qwen3\",\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":2,"
             "\"intermediate_size\":8,\"vocab_size\":10}",
             &a);
    assert_int_equal(a.head_dim, 128);
    assert_true(a.qk_norm);
    arch_free(&a);
}

static void expect_error(const char *json, const char *want) {
    Arch a;
    Err e = {0};
    if (arch_parse(&a, json, strlen(json), "cfg.json", &e) == 0) {
        arch_free(&a);
        fail_msg("accepted, expected \"%s\": %s", want, json);
    }
    if (!strstr(e.msg, want)) fail_msg("error \"%s\" lacks \"%s\"", e.msg, want);
    assert_non_null(strstr(e.msg, "cfg.json"));
    assert_null(a.layer_sliding);
}

#define DIMS "\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"intermediate_size\":8,\"vocab_size\":10"
#define LLAMA "{\"model_type\":\"llama\"," DIMS
#define GEMMA "{\"model_type\":\"gemma3_text\"," DIMS

static void test_config_errors(void **state) {
    (void)state;
    expect_error("{\"model_type\":", "is not valid JSON");
    expect_error("[1]", "must be a JSON object");
    expect_error(LLAMA ",\"quantization_config\":{\"quant_method\":\"fp8\"}}", "quant_method \"fp8\"");
    expect_error(LLAMA ",\"quantization_config\":{\"quant_method\":\"awq\"}}", "dequantize it first");
    expect_error("{\"model_type\":\"gemma3\",\"text_config\":{\"quantization_config\":{}}}",
                 "text_config.quantization_config is set");
    expect_error("{" DIMS "}", "no model_type; supported model types: llama, qwen2, qwen3, gemma3_text, gemma3");
    expect_error("{\"model_type\":\"mistral\"," DIMS "}",
                 "model_type \"mistral\" is not supported; supported model types: llama, qwen2, qwen3, gemma3_text, gemma3");
    expect_error("{\"model_type\":7}", "model_type: expected a string, got a number");
    expect_error("{\"model_type\":\"gemma3\"," DIMS "}", "needs a \"text_config\" object");
    expect_error("{\"model_type\":\"gemma3\",\"text_config\":{\"model_type\":\"siglip\"}}",
                 "text_config.model_type is \"siglip\", expected gemma3_text");
    expect_error("{\"model_type\":\"gemma3\",\"text_config\":{\"num_attention_heads\":3}}",
                 "cfg.json: text_config.num_attention_heads (3) must be a multiple of num_key_value_heads (4)");
    expect_error("{\"model_type\":\"llama\",\"hidden_size\":\"64\"}", "hidden_size: expected an integer, got a string");
    expect_error("{\"model_type\":\"llama\",\"hidden_size\":64.5}", "hidden_size: expected an integer, got 64.5");
    expect_error("{\"model_type\":\"llama\",\"hidden_size\":0}", "hidden_size: 0 is out of range");
    expect_error(LLAMA ",\"num_key_value_heads\":3}", "must be a multiple of num_key_value_heads (3)");
    expect_error("{\"model_type\":\"llama\",\"hidden_size\":60,\"num_hidden_layers\":2,\"num_attention_heads\":8,"
                 "\"intermediate_size\":8,\"vocab_size\":10}",
                 "hidden_size (60) is not a multiple of num_attention_heads (8)");
    expect_error(LLAMA ",\"head_dim\":15}", "head_dim (15) must be even");
    expect_error(LLAMA ",\"rms_norm_eps\":-1}", "rms_norm_eps must not be negative");
    expect_error(LLAMA ",\"rope_theta\":0}", "rope_theta must be positive");
    expect_error(LLAMA ",\"rope_scaling\":4}", "rope_scaling must be an object or null");
    expect_error(LLAMA ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}",
                 "rope_scaling type \"yarn\" is not supported (supported: default, linear, llama3)");
    expect_error(LLAMA ",\"rope_scaling\":{\"rope_type\":\"linear\"}}", "required key \"rope_scaling.factor\" is missing");
    expect_error(LLAMA ",\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":0}}", "factor must be positive");
    expect_error(LLAMA ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,\"high_freq_factor\":4,"
                 "\"original_max_position_embeddings\":8192}}",
                 "required key \"rope_scaling.low_freq_factor\" is missing");
    expect_error(LLAMA ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":4,"
                 "\"high_freq_factor\":4,\"original_max_position_embeddings\":8192}}",
                 "high_freq_factor must be larger than low_freq_factor");
    expect_error(LLAMA ",\"hidden_act\":\"relu\"}", "hidden_act \"relu\" is not supported");
    expect_error(GEMMA ",\"hidden_activation\":\"gelu\"}", "hidden_activation \"gelu\" is not supported");
    expect_error(LLAMA ",\"tie_word_embeddings\":1}", "tie_word_embeddings: expected true or false, got a number");
    expect_error(LLAMA ",\"eos_token_id\":\"</s>\"}", "eos_token_id must be a token id or a list of token ids");
    expect_error(LLAMA ",\"eos_token_id\":[1,-2]}", "eos_token_id must be a token id or a list of token ids");
    expect_error(GEMMA ",\"layer_types\":[\"full_attention\"]}", "layer_types must be a list of 2 entries");
    expect_error(GEMMA ",\"layer_types\":[\"full_attention\",\"local\"]}", "layer_types[1] must be");
    expect_error(GEMMA ",\"use_bidirectional_attention\":true}", "use_bidirectional_attention is true");
    expect_error(GEMMA ",\"query_pre_attn_scalar\":0}", "query_pre_attn_scalar must be positive");
    expect_error(GEMMA ",\"sliding_window\":-4}", "sliding_window: -4 is out of range");
    expect_error(GEMMA ",\"rope_local_base_freq\":0}", "rope_local_base_freq must be positive");
}

/* Hostile configs: derived values out of range, deep nesting, enormous files and lists. Each
 * refused by name, in bounded time (found by fuzz/fuzz_config.c: a head_dim derived from
 * hidden_size / heads was not range-checked and overflowed the RoPE table on the stack). */
static void test_hostile_configs(void **state) {
    (void)state;
    expect_error("{\"model_type\":\"llama\",\"hidden_size\":644096,\"intermediate_size\":8,\"vocab_size\":10}",
                 "cfg.json: head_dim (hidden_size / num_attention_heads = 20128) is larger than 4096");
    expect_error(LLAMA ",\"head_dim\":8192}", "head_dim: 8192 is out of range (2..4096)");
    /* the largest accepted head gives its full RoPE table */
    Arch a;
    Err e = {0};
    static const char big[] = "{\"model_type\":\"llama\",\"hidden_size\":8192,\"num_attention_heads\":2,"
                              "\"intermediate_size\":8,\"vocab_size\":10,\"max_position_embeddings\":1073741824}";
    if (arch_parse(&a, big, sizeof big - 1, "cfg.json", &e) < 0) fail_msg("%s", e.msg);
    assert_int_equal(a.head_dim, 4096);
    float *c = xmalloc(sizeof(float) * 2048), *sn = xmalloc(sizeof(float) * 2048);
    arch_rope_cos_sin(&a, 1, a.max_position - 1, c, sn);
    for (int i = 0; i < 2048; i++) assert_true(fabsf(c[i] * c[i] + sn[i] * sn[i] - 1.0f) < 1e-3f);
    free(c);
    free(sn);
    arch_free(&a);

    expect_error("{\"model_type\":\"llama\",\"num_hidden_layers\":1e308}", "num_hidden_layers: expected an integer, got 1e+308");
    expect_error("{\"model_type\":\"llama\",\"vocab_size\":-0.5}", "vocab_size: expected an integer, got -0.5");
    expect_error(LLAMA ",\"num_hidden_layers\":4096}", "cfg.json: key \"num_hidden_layers\" appears twice; keep one");
    expect_error("{\"model_type\":\"gemma3\",\"text_config\":{\"vocab_size\":8,\"vocab_size\":9}}",
                 "key \"text_config.vocab_size\" appears twice");
    expect_error("{\"model_type\":\"llama\",\"rope_theta\":1e400}", "cfg.json: rope_theta: expected a finite number, got inf");
    expect_error("{\"model_type\":\"gemma3\",\"text_config\":{\"rope_theta\":-1e999}}",
                 "cfg.json: text_config.rope_theta: expected a finite number, got -inf");
    /* nesting, and model_type strings of any length */
    size_t n = 100000;
    char *deep = xmalloc(2 * n + 512), *q = stpcpy(deep, LLAMA ",\"x\":");
    for (size_t i = 0; i < n; i++) *q++ = '[';
    for (size_t i = 0; i < n; i++) *q++ = ']';
    strcpy(q, "}");
    expect_error(deep, "cfg.json is nested more than 64 levels deep");
    free(deep);
    char *type = xmalloc(100100);
    q = stpcpy(type, "{\"model_type\":\"");
    memset(q, 'x', 100000);
    strcpy(q + 100000, "\"}");
    expect_error(type, "model_type \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\" is not supported");
    free(type);
    /* a million eos ids: the first ARCH_MAX_EOS kept, in bounded time */
    char *eos = xmalloc(8 * 1000000 + 256);
    q = stpcpy(eos, LLAMA ",\"eos_token_id\":[");
    for (int i = 0; i < 1000000; i++) q += sprintf(q, "%s%d", i ? "," : "", i % 10);
    strcpy(q, "]}");
    double t0 = now_seconds();
    if (arch_parse(&a, eos, strlen(eos), "cfg.json", &e) < 0) fail_msg("%s", e.msg);
    assert_true(now_seconds() - t0 < 5);
    assert_int_equal(a.n_eos, ARCH_MAX_EOS);
    arch_free(&a);
    free(eos);
    /* a config.json over the 64 MB limit (sparse): refused from its size */
    char dir[] = "/tmp/anemll-arch-hostile.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = path_join(dir, "config.json");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), (off_t)1 << 30), 0);
    fclose(f);
    assert_int_equal(arch_load(&a, dir, &e), -1);
    if (!strstr(e.msg, "config.json is too large (1073741824 bytes")) fail_msg("%s", e.msg);
    remove_tree(dir);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refvector_configs), cmocka_unit_test(test_tensor_names_match_checkpoints),
        cmocka_unit_test(test_rope_frequencies),  cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_config_errors),     cmocka_unit_test(test_hostile_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
