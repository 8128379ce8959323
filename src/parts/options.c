/* options.c - parsing the options of `anemll convert` (contract in options.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "model/fp16_scale.h"
#include "parts/options.h"

void convert_options_init(ConvertOptions *o) {
    memset(o, 0, sizeof *o);
    o->context = CONVERT_DEFAULT_CONTEXT;
    o->batch = CONVERT_DEFAULT_BATCH;
    o->lut[PART_EMBEDDINGS] = (LutSpec){0, 0};
    o->lut[PART_FFN] = (LutSpec){4, LUT_DEFAULT_GROUP};
    o->lut[PART_LM_HEAD] = (LutSpec){6, LUT_DEFAULT_GROUP};
    o->restart = 1;
    o->chunks = CONVERT_DEFAULT_CHUNKS;
    o->max_chunk_mb = CONVERT_DEFAULT_MAX_CHUNK_MB;
}

const char *convert_lut_option(int part) {
    static const char *names[PART_LUT_COUNT] = {"--lut1", "--lut2", "--lut3"};
    return part >= 0 && part < PART_LUT_COUNT ? names[part] : "--lut";
}

int convert_step_selected(const ConvertOptions *o, int step) {
    if (o->only) return step == o->only;
    return step >= o->restart;
}

/* A whole decimal integer in [lo, hi]. */
static int parse_ranged(const char *opt, const char *v, long lo, long hi, const char *what, long *out, Err *e) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return err_set(e, "%s '%s': %s", opt, v, what);
    *out = x;
    return 0;
}

static int parse_step(const char *opt, const char *v, int *out, Err *e) {
    long x;
    if (parse_ranged(opt, v, 1, CONVERT_STEPS, "wants a step number 1..8 (1 embeddings, 2 LM head, 3 FFN, "
                                               "4 prefill, 5 combine, 6 compile, 7 tokenizer + meta.yaml, 8 test)",
                     &x, e) < 0)
        return -1;
    *out = (int)x;
    return 0;
}

static int parse_prefix(const char *v, const char **out, Err *e) {
    if (!*v) return err_set(e, "--prefix '': the prefix of the file names cannot be empty");
    for (const char *p = v; *p; p++) {
        int ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' ||
                 *p == '-' || *p == '.';
        if (!ok)
            return err_set(e, "--prefix '%s': use letters, digits, '_', '-' or '.' only (it starts every file name)",
                           v);
    }
    if (strlen(v) > 64) return err_set(e, "--prefix '%s': at most 64 characters", v);
    *out = v;
    return 0;
}

/* Options that take a value. Returns 1 if `name` is one and was applied, 0 if unknown. */
static int apply_valued(ConvertOptions *o, const char *name, const char *v, Err *e, int *failed) {
    long x;
    int rc = 0;
    *failed = 0;
    if (!strcmp(name, "--model")) {
        if (!*v) rc = err_set(e, "--model: the path is empty");
        o->model_dir = v;
    } else if (!strcmp(name, "--output")) {
        if (!*v) rc = err_set(e, "--output: the path is empty");
        o->output_dir = v;
    } else if (!strcmp(name, "--context")) {
        rc = parse_ranged(name, v, 1, CONVERT_MAX_CONTEXT, "wants a positive context length (at most 32768)", &x, e);
        if (!rc) o->context = x;
    } else if (!strcmp(name, "--batch")) {
        rc = parse_ranged(name, v, 1, CONVERT_MAX_CONTEXT, "wants a positive prefill batch size", &x, e);
        if (!rc) o->batch = x;
    } else if (!strcmp(name, "--lut1") || !strcmp(name, "--lut2") || !strcmp(name, "--lut3")) {
        int part = name[5] - '1';
        rc = lut_parse_option(name, v, &o->lut[part], e);
    } else if (!strcmp(name, "--restart")) {
        rc = parse_step(name, v, &o->restart, e);
    } else if (!strcmp(name, "--only")) {
        rc = parse_step(name, v, &o->only, e);
    } else if (!strcmp(name, "--chunk")) {
        if (!strcmp(v, "auto")) o->chunks = 0;
        else {
            rc = parse_ranged(name, v, 1, 999, "wants a number of chunks 1..999 or 'auto'", &x, e);
            if (!rc) o->chunks = (int)x;
        }
    } else if (!strcmp(name, "--max-chunk-mb")) {
        rc = parse_ranged(name, v, 1, 1L << 30, "wants a positive size in MiB", &x, e);
        if (!rc) o->max_chunk_mb = x;
    } else if (!strcmp(name, "--prefix")) {
        rc = parse_prefix(v, &o->prefix, e);
    } else if (!strcmp(name, "--fp16-scale")) {
        o->fp16_scale = v;
        o->fp16_alpha = 0;
        rc = fp16_scale_parse(v, &o->fp16_alpha, &o->fp16_auto, e);
    } else if (!strcmp(name, "--threads")) {
        rc = parse_ranged(name, v, 1, 1024, "wants a thread count 1..1024", &x, e);
        if (!rc) o->threads = (int)x;
    } else {
        return 0;
    }
    *failed = rc < 0;
    return 1;
}

static int takes_value(const char *name) {
    static const char *const valued[] = {"--model",   "--output", "--context", "--batch",        "--lut1",
                                         "--lut2",    "--lut3",   "--restart", "--only",         "--chunk",
                                         "--max-chunk-mb", "--prefix", "--fp16-scale", "--threads"};
    for (size_t i = 0; i < sizeof valued / sizeof valued[0]; i++)
        if (!strcmp(name, valued[i])) return 1;
    return 0;
}

static int apply_flag(ConvertOptions *o, const char *name) {
    int *slot = !strcmp(name, "--skip-check")          ? &o->skip_check
                : !strcmp(name, "--skip-anemll-dedup") ? &o->skip_dedup
                : !strcmp(name, "--argmax")            ? &o->argmax
                : !strcmp(name, "--split-rotate")      ? &o->split_rotate
                                                       : NULL;
    if (!slot) return 0;
    *slot = 1;
    return 1;
}

int convert_options_parse(ConvertOptions *o, int argc, char **argv, Err *e) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (apply_flag(o, arg)) continue;
        char name[64];
        const char *value = NULL;
        const char *eq = strchr(arg, '=');
        if (!strncmp(arg, "--", 2) && eq && (size_t)(eq - arg) < sizeof name) {
            memcpy(name, arg, (size_t)(eq - arg));
            name[eq - arg] = 0;
            value = eq + 1;
        } else if (strlen(arg) < sizeof name) {
            strcpy(name, arg);
        } else {
            return err_set(e, "unknown option '%.60s...'", arg);
        }
        int failed;
        if (!value) {
            if (!takes_value(name)) return err_set(e, "unknown option '%s'", arg);
            if (i + 1 >= argc) return err_set(e, "%s needs a value", name);
            value = argv[++i];
        }
        if (apply_valued(o, name, value, e, &failed) == 0) return err_set(e, "unknown option '%s'", arg);
        if (failed) return -1;
    }
    if (!o->model_dir) return err_set(e, "--model is required (the Hugging Face checkpoint folder)");
    if (!o->output_dir) return err_set(e, "--output is required (the folder for the converted model)");
    if (o->batch > o->context)
        return err_set(e, "--batch %ld is larger than --context %ld: a prefill batch cannot exceed the context; use "
                          "--batch %ld or less",
                       o->batch, o->context, o->context);
    if (o->only && o->restart != 1)
        return err_set(e, "--only %d and --restart %d: give one of them (--only runs one step, --restart runs "
                          "steps N..8)",
                       o->only, o->restart);
    return 0;
}
