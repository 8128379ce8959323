/* The conversion plan: file names, the chunk -> layer split (first chunks take the extra
 * layers), LM-head split sizes, KV state length, LUT group checks, weight.bin sizes computed by
 * hand for a tiny model, and --chunk auto on real model shapes (Llama-3.2-1B, Llama-3.1-8B,
 * Qwen3-4B). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "parts/options.h"
#include "parts/plan.h"

static void load(Arch *a, const char *json) {
    Err e = {0};
    if (arch_parse(a, json, strlen(json), "test", &e) < 0) fail_msg("%s", e.msg);
}

#define LLAMA_1B                                                                                                   \
    "{\"model_type\":\"llama\",\"hidden_size\":2048,\"num_hidden_layers\":16,\"num_attention_heads\":32,"         \
    "\"num_key_value_heads\":8,\"head_dim\":64,\"intermediate_size\":8192,\"vocab_size\":128256,"                  \
    "\"rms_norm_eps\":1e-5,\"rope_theta\":500000,\"tie_word_embeddings\":true,\"rope_scaling\":{\"factor\":32.0,"  \
    "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192,"                 \
    "\"rope_type\":\"llama3\"}}"
#define LLAMA_8B                                                                                                   \
    "{\"model_type\":\"llama\",\"hidden_size\":4096,\"num_hidden_layers\":32,\"num_attention_heads\":32,"         \
    "\"num_key_value_heads\":8,\"intermediate_size\":14336,\"vocab_size\":128256,\"rms_norm_eps\":1e-5,"           \
    "\"rope_theta\":500000,\"tie_word_embeddings\":false}"
#define QWEN3_4B                                                                                                   \
    "{\"model_type\":\"qwen3\",\"hidden_size\":2560,\"num_hidden_layers\":36,\"num_attention_heads\":32,"         \
    "\"num_key_value_heads\":8,\"head_dim\":128,\"intermediate_size\":9728,\"vocab_size\":151936,"                 \
    "\"rms_norm_eps\":1e-6,\"rope_theta\":1000000,\"tie_word_embeddings\":true}"
#define TINY                                                                                                       \
    "{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,"              \
    "\"num_key_value_heads\":2,\"intermediate_size\":160,\"vocab_size\":321,\"rms_norm_eps\":1e-5,"                \
    "\"rope_theta\":10000,\"tie_word_embeddings\":true}"

static void test_names(void **state) {
    (void)state;
    char b[128];
    assert_string_equal(plan_embeddings_name("llama", 0, b, sizeof b), "llama_embeddings");
    assert_string_equal(plan_embeddings_name("qwen", 8, b, sizeof b), "qwen_embeddings_lut8");
    assert_string_equal(plan_lm_head_name("llama", 6, b, sizeof b), "llama_lm_head_lut6");
    assert_string_equal(plan_lm_head_name("DeepSeek", 0, b, sizeof b), "DeepSeek_lm_head");
    assert_string_equal(plan_ffn_name("llama", FFN_INFER, 4, 0, 2, b, sizeof b), "llama_FFN_lut4_chunk_01of02");
    assert_string_equal(plan_ffn_name("qwen25", FFN_PREFILL, 0, 9, 12, b, sizeof b), "qwen25_prefill_chunk_10of12");
    assert_string_equal(plan_ffn_name("qwen", FFN_COMBINED, 6, 2, 3, b, sizeof b), "qwen_FFN_PF_lut6_chunk_03of03");
    Arch a;
    load(&a, TINY);
    assert_string_equal(plan_default_prefix(&a), "llama");
    arch_free(&a);
    load(&a, QWEN3_4B);
    assert_string_equal(plan_default_prefix(&a), "qwen");
    arch_free(&a);
    load(&a, "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
             "\"num_key_value_heads\":2,\"intermediate_size\":160,\"vocab_size\":320}");
    assert_string_equal(plan_default_prefix(&a), "qwen25");
    arch_free(&a);
}

static void test_chunk_layers(void **state) {
    (void)state;
    /* 16 layers in 3 chunks: 6, 5, 5 */
    int first, count;
    int want_first[3] = {0, 6, 11}, want_count[3] = {6, 5, 5};
    for (int c = 0; c < 3; c++) {
        plan_chunk_layers(16, 3, c, &first, &count);
        assert_int_equal(first, want_first[c]);
        assert_int_equal(count, want_count[c]);
    }
    /* every split covers every layer exactly once, in order, sizes differing by at most 1 */
    for (int layers = 1; layers <= 40; layers++)
        for (int n = 1; n <= layers; n++) {
            int next = 0, lo = layers, hi = 0;
            for (int c = 0; c < n; c++) {
                plan_chunk_layers(layers, n, c, &first, &count);
                assert_int_equal(first, next);
                next += count;
                if (count < lo) lo = count;
                if (count > hi) hi = count;
                if (c > 0) {
                    int pf, pc;
                    plan_chunk_layers(layers, n, c - 1, &pf, &pc);
                    assert_true(pc >= count);   /* the first chunks take the extra layers */
                }
            }
            assert_int_equal(next, layers);
            assert_true(hi - lo <= 1);
        }
}

static void test_lm_head_sizes(void **state) {
    (void)state;
    int s[PLAN_MAX_SPLITS];
    Arch a;
    load(&a, LLAMA_1B);
    assert_int_equal(plan_lm_head_sizes(&a, s), 8);
    for (int i = 0; i < 8; i++) assert_int_equal(s[i], 16032);
    assert_int_equal(plan_state_length(&a, 256), 512);
    assert_int_equal(plan_state_length(&a, 1024), 1024);
    arch_free(&a);
    load(&a, QWEN3_4B);
    assert_int_equal(plan_lm_head_sizes(&a, s), 16);
    for (int i = 0; i < 16; i++) assert_int_equal(s[i], 9496);
    assert_int_equal(plan_state_length(&a, 64), 256);
    assert_int_equal(plan_state_length(&a, 300), 300);
    arch_free(&a);
    load(&a, TINY);   /* vocab 321 = 8 * 40 + 1: the first split takes the extra row, none is dropped */
    assert_int_equal(plan_lm_head_sizes(&a, s), 8);
    assert_int_equal(s[0], 41);
    int total = 0;
    for (int i = 0; i < 8; i++) total += s[i];
    assert_int_equal(total, 321);
    for (int i = 1; i < 8; i++) assert_int_equal(s[i], 40);
    arch_free(&a);
}

static void test_lut_groups(void **state) {
    (void)state;
    Arch a;
    load(&a, TINY);
    Err e = {0};
    LutSpec ok[3] = {{0, 0}, {4, 8}, {6, 0}};
    assert_int_equal(plan_check_lut_groups(&a, ok, &e), 0);
    /* vocab 321: a group of 8 divides neither the embedding rows nor the 41-row LM-head split */
    LutSpec emb[3] = {{6, 8}, {4, 8}, {0, 0}};
    assert_int_equal(plan_check_lut_groups(&a, emb, &e), -1);
    assert_non_null(strstr(e.msg, "--lut1"));
    assert_non_null(strstr(e.msg, "321"));
    LutSpec head[3] = {{0, 0}, {4, 8}, {6, 8}};
    assert_int_equal(plan_check_lut_groups(&a, head, &e), -1);
    assert_non_null(strstr(e.msg, "--lut3"));
    assert_non_null(strstr(e.msg, "41"));
    LutSpec ffn[3] = {{0, 0}, {4, 7}, {0, 0}};   /* 7 divides no projection of this model */
    assert_int_equal(plan_check_lut_groups(&a, ffn, &e), -1);
    assert_non_null(strstr(e.msg, "--lut2"));
    arch_free(&a);
}

/* weight.bin sizes worked out by hand: blobs are 64-byte records at 64-aligned offsets. */
static void test_sizes_by_hand(void **state) {
    (void)state;
    Arch a;
    load(&a, TINY);   /* head_dim 16 */
    LutSpec none = {0, 0};
    /* cos + sin: 2 * (64 + 512*16*2); layer: 9 blobs, all data multiples of 64 bytes:
     * 128 + 8192 + 4096 + 4096 + 8192 + 128 + 3 * 20480 = 86272 */
    uint64_t tables = 2 * (64 + 16384), layer = 9 * 64 + 86272;
    assert_int_equal(plan_ffn_chunk_bytes(&a, &none, 512, 0, 1, 1), 64 + tables + layer);
    assert_int_equal(plan_ffn_chunk_bytes(&a, &none, 512, 1, 1, 1), 64 + tables + layer + 64 + 128);
    assert_int_equal(plan_ffn_chunk_bytes(&a, &none, 512, 0, 2, 2), 64 + 2 * (tables + 2 * layer + 64 + 128));
    /* LUT4 group 8 on q (64x64): indices 4096*4/8 = 2048 bytes, LUT 8 groups * 16 * 2 = 256 bytes */
    PlanBlobs b;
    plan_blobs_init(&b);
    LutSpec l4 = {4, 8};
    plan_blobs_add_weight(&b, 64, 64, &l4);
    assert_int_equal(b.count, 2);
    assert_int_equal(b.bytes, 64 + 64 + 2048 + 64 + 256);
    /* a 3-bit per-tensor LUT has 8 entries: inline, not a blob; odd data is padded to 64 */
    LutSpec l3 = {3, 0};
    plan_blobs_init(&b);
    plan_blobs_add_weight(&b, 5, 7, &l3);   /* 35 * 3 bits = 14 bytes */
    assert_int_equal(b.count, 1);
    assert_int_equal(b.bytes, 64 + 64 + 14);
    plan_blobs_add(&b, 9, 16);              /* 9 elements: inline */
    assert_int_equal(b.count, 1);
    plan_blobs_add(&b, 10, 16);             /* next record at 192 */
    assert_int_equal(b.bytes, 192 + 64 + 20);
    arch_free(&a);
}

static int auto_chunks(const char *json, int bits, long ctx) {
    Arch a;
    load(&a, json);
    LutSpec l = {bits, bits ? 8 : 0};
    int n;
    plan_auto_chunks(&a, &l, plan_state_length(&a, ctx), (uint64_t)950 << 20, 1, &n);
    /* the choice is minimal: one chunk fewer does not fit */
    if (n > 1) assert_true(plan_largest_chunk_bytes(&a, &l, plan_state_length(&a, ctx), n - 1, 1) > (950u << 20));
    assert_true(plan_largest_chunk_bytes(&a, &l, plan_state_length(&a, ctx), n, 1) <= (950u << 20));
    arch_free(&a);
    return n;
}

static void test_auto_chunks(void **state) {
    (void)state;
    /* ANEMLL's calc_chunk_split (bits/16 * 1.10 overhead) gives 1/1/3 (1B), 4/7/16 (8B), 3/4/9 (Qwen3-4B);
     * exact sizes need no overhead factor, so some counts are lower */
    assert_int_equal(auto_chunks(LLAMA_1B, 4, 512), 1);
    assert_int_equal(auto_chunks(LLAMA_1B, 6, 512), 1);
    assert_int_equal(auto_chunks(LLAMA_1B, 0, 512), 2);
    assert_int_equal(auto_chunks(LLAMA_8B, 4, 512), 4);
    assert_int_equal(auto_chunks(LLAMA_8B, 6, 512), 6);
    assert_int_equal(auto_chunks(LLAMA_8B, 0, 512), 16);
    assert_int_equal(auto_chunks(QWEN3_4B, 4, 4096), 2);
    assert_int_equal(auto_chunks(QWEN3_4B, 6, 4096), 3);
    /* a limit below one layer: every layer its own chunk, flagged */
    Arch a;
    load(&a, LLAMA_8B);
    LutSpec none = {0, 0};
    int n;
    assert_int_equal(plan_auto_chunks(&a, &none, 512, (uint64_t)100 << 20, 1, &n), 1);
    assert_int_equal(n, 32);
    /* separate copies (--skip-anemll-dedup) double the size */
    LutSpec l6 = {6, 8};
    assert_int_equal(plan_ffn_chunk_bytes(&a, &l6, 512, 0, 4, 2) - 64, 2 * (plan_ffn_chunk_bytes(&a, &l6, 512, 0, 4, 1) - 64));
    arch_free(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),       cmocka_unit_test(test_chunk_layers), cmocka_unit_test(test_lm_head_sizes),
        cmocka_unit_test(test_lut_groups),  cmocka_unit_test(test_sizes_by_hand),
        cmocka_unit_test(test_auto_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
