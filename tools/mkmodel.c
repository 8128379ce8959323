/* mkmodel.c - `anemll-mkmodel`: write a deterministic random-weight checkpoint in Hugging Face
 * layout for tests, demos and benchmarks (the work is done by model/synth.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/synth.h"

static const char *usage_text =
    "usage: anemll-mkmodel --arch TYPE --out DIR [options]\n"
    "\n"
    "Writes a deterministic random-weight checkpoint in Hugging Face layout: config.json with the\n"
    "real keys of TYPE, real tensor names, BF16 safetensors (single file or shards),\n"
    "generation_config.json and tokenizer files.\n"
    "\n"
    "  --arch TYPE                 llama, qwen2, qwen3, gemma3_text or gemma3 (multimodal wrapper)\n"
    "  --out DIR                   output folder (must not exist, see --force)\n"
    "  --preset NAME               tiny (default: refvector-sized) or llama-3.2-1b (2048 hidden,\n"
    "                              16 layers, 32/8 heads, vocab 128256, tied: 2.5 GB)\n"
    "  --hidden N, --layers N, --heads N, --kv-heads N, --head-dim N, --intermediate N\n"
    "  --vocab N                   default: 320, or the --tokenizer's size rounded up to 64\n"
    "  --max-pos N                 max_position_embeddings\n"
    "  --sliding-window N          gemma3: window (default 8); qwen2/qwen3: enables it\n"
    "  --layer-types LIST          comma-separated s/f per layer (default: every 6th layer\n"
    "                              global, or the last one when there are fewer than 6)\n"
    "  --tie, --untie              tie_word_embeddings (default: the family's usual)\n"
    "  --rope-theta X, --rope-local-theta X (gemma3 sliding layers), --rms-eps X\n"
    "  --query-pre-attn-scalar X   gemma3 (default 24 in the tiny models)\n"
    "  --rope-scaling SPEC         none, linear:FACTOR or llama3:FACTOR,LOW,HIGH,ORIG_MAX_POS\n"
    "  --attention-bias            q/k/v/o biases (qwen2 always has q/k/v biases)\n"
    "  --mlp-bias                  gate/up/down biases (llama)\n"
    "  --dtype bf16|f16|f32        tensor dtype (default bf16; values are bf16 in every dtype)\n"
    "  --std X, --qk-std X         weight std (0.05) and q/k std without q/k norms (0.25)\n"
    "  --post-norm-scale X         gemma3: post-attention/feedforward norm weights ~ X(1 + N(0,0.08)),\n"
    "                              e.g. 12000 to push the residual stream beyond fp16\n"
    "  --seed N                    random seed (default 1); same seed, same bytes\n"
    "  --shards N                  write N shards + model.safetensors.index.json\n"
    "  --tokenizer DIR             copy tokenizer.json/tokenizer_config.json from DIR instead of\n"
    "                              writing the built-in byte-level BPE tokenizer\n"
    "  --threads N                 generator threads (default: all cores)\n"
    "  --force                     replace DIR if it exists\n"
    "  -h, --help                  this text\n";

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nrun 'anemll-mkmodel --help' for usage\n");
    return 2;
}

static int parse_long(const char *s, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max) return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno) return -1;
    *out = v;
    return 0;
}

static int parse_rope_scaling(const char *v, RopeScaling *rs) {
    double a, b, c, d;
    char extra;
    if (!strcmp(v, "none")) {
        *rs = (RopeScaling){ROPE_DEFAULT, 1, 0, 0, 0};
        return 0;
    }
    if (sscanf(v, "linear:%lf%c", &a, &extra) == 1 && a > 0) {
        *rs = (RopeScaling){ROPE_LINEAR, a, 0, 0, 0};
        return 0;
    }
    if (sscanf(v, "llama3:%lf,%lf,%lf,%lf%c", &a, &b, &c, &d, &extra) == 4 && a > 0 && b > 0 && c > b && d > 0) {
        *rs = (RopeScaling){ROPE_LLAMA3, a, b, c, d};
        return 0;
    }
    return -1;
}

typedef struct IntOpt {
    const char *name;
    size_t offset;
    long min, max;
} IntOpt;

#define INT_OPT(n, field, lo, hi) {n, offsetof(SynthSpec, field), lo, hi}
static const IntOpt int_opts[] = {
    INT_OPT("--hidden", hidden, 2, 1 << 16),
    INT_OPT("--layers", n_layers, 1, 1024),
    INT_OPT("--heads", n_heads, 1, 1024),
    INT_OPT("--kv-heads", n_kv_heads, 1, 1024),
    INT_OPT("--head-dim", head_dim, 2, 4096),
    INT_OPT("--intermediate", intermediate, 1, 1 << 18),
    INT_OPT("--vocab", vocab, 1, 1 << 22),
    INT_OPT("--max-pos", max_position, 1, 1 << 24),
    INT_OPT("--sliding-window", sliding_window, 1, 1 << 24),
    INT_OPT("--shards", n_shards, 1, 999),
    INT_OPT("--threads", threads, 1, 1024),
};

typedef struct DblOpt {
    const char *name;
    double *slot;
} DblOpt;

/* Applies one option with a value; returns 1 if it was one, 0 if unknown, -1 on a bad value. */
static int apply_valued(SynthSpec *s, const char *o, const char *v) {
    for (size_t i = 0; i < sizeof int_opts / sizeof int_opts[0]; i++) {
        if (strcmp(o, int_opts[i].name)) continue;
        long x;
        if (parse_long(v, int_opts[i].min, int_opts[i].max, &x) < 0) return -1;
        *(int *)((char *)s + int_opts[i].offset) = (int)x;
        return 1;
    }
    double d;
    const DblOpt dbl[] = {{"--rope-theta", &s->rope_theta},
                          {"--rope-local-theta", &s->rope_local_theta},
                          {"--rms-eps", &s->rms_eps},
                          {"--query-pre-attn-scalar", &s->query_pre_attn_scalar}};
    for (size_t i = 0; i < sizeof dbl / sizeof dbl[0]; i++) {
        if (strcmp(o, dbl[i].name)) continue;
        if (parse_double(v, &d) < 0 || !(d > 0)) return -1;
        *dbl[i].slot = d;
        return 1;
    }
    if (!strcmp(o, "--std") || !strcmp(o, "--qk-std") || !strcmp(o, "--post-norm-scale")) {
        if (parse_double(v, &d) < 0 || d < 0 || d > 1e6) return -1;
        float *slot = !strcmp(o, "--std") ? &s->std : !strcmp(o, "--qk-std") ? &s->qk_std : &s->post_norm_scale;
        *slot = (float)d;
        return 1;
    }
    if (!strcmp(o, "--seed")) {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end || errno || *v == '-') return -1;
        s->seed = x;
        return 1;
    }
    if (!strcmp(o, "--rope-scaling")) return parse_rope_scaling(v, &s->rope_scaling) < 0 ? -1 : 1;
    if (!strcmp(o, "--dtype")) {
        if (!strcmp(v, "bf16")) s->dtype = ST_BF16;
        else if (!strcmp(v, "f16")) s->dtype = ST_F16;
        else if (!strcmp(v, "f32")) s->dtype = ST_F32;
        else return -1;
        return 1;
    }
    if (!strcmp(o, "--layer-types")) {
        if (strlen(v) >= sizeof s->layer_types) return -1;
        snprintf(s->layer_types, sizeof s->layer_types, "%s", v);
        return 1;
    }
    if (!strcmp(o, "--tokenizer")) {
        if (strlen(v) >= sizeof s->tokenizer_dir) return -1;
        snprintf(s->tokenizer_dir, sizeof s->tokenizer_dir, "%s", v);
        return 1;
    }
    return 0;
}

static int is_flag(const char *o) {
    return !strcmp(o, "--tie") || !strcmp(o, "--untie") || !strcmp(o, "--attention-bias") ||
           !strcmp(o, "--mlp-bias") || !strcmp(o, "--force");
}

int main(int argc, char **argv) {
    const char *arch = NULL, *out = NULL, *preset = "tiny";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (is_flag(argv[i])) continue;
        if (argv[i][0] != '-' || argv[i][1] != '-') return usage_error("unexpected argument '%s'", argv[i]);
        if (i + 1 >= argc) return usage_error("%s needs a value", argv[i]);
        if (!strcmp(argv[i], "--arch")) arch = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else if (!strcmp(argv[i], "--preset")) preset = argv[i + 1];
        i++;
    }
    if (!arch) return usage_error("%s", "--arch is required (llama, qwen2, qwen3, gemma3_text, gemma3)");
    if (!out) return usage_error("%s", "--out is required");
    SynthSpec s;
    Err e = {0};
    if (synth_spec_init(&s, arch, &e) < 0 || synth_apply_preset(&s, preset, &e) < 0) {
        fprintf(stderr, "error: %s\n", e.msg);
        return 2;
    }
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--tie")) s.tied = 1;
        else if (!strcmp(o, "--untie")) s.tied = 0;
        else if (!strcmp(o, "--attention-bias")) s.attention_bias = 1;
        else if (!strcmp(o, "--mlp-bias")) s.mlp_bias = 1;
        else if (!strcmp(o, "--force")) force = 1;
        else if (!strcmp(o, "--arch") || !strcmp(o, "--out") || !strcmp(o, "--preset")) i++;
        else {
            int r = apply_valued(&s, o, argv[i + 1]);
            if (r == 0) return usage_error("unknown option '%s'", o);
            if (r < 0) {
                fprintf(stderr, "error: bad value '%s' for %s\nrun 'anemll-mkmodel --help' for usage\n", argv[i + 1], o);
                return 2;
            }
            i++;
        }
    }
    double t0 = now_seconds();
    SynthResult res;
    if (synth_write(&s, out, force, &res, &e) < 0) {
        fprintf(stderr, "error: %s\n", e.msg);
        return 1;
    }
    printf("wrote %s: %s, %d tensors, %.3f M parameters, vocab %d, %.1f MB in %.2f s\n", out, s.model_type,
           res.n_tensors, (double)res.n_params / 1e6, res.vocab, (double)res.bytes / 1e6, now_seconds() - t0);
    return 0;
}
