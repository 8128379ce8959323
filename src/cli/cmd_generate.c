/* cmd_generate.c - `anemll generate`: greedy continuation of token ids by the converted packages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/util.h"
#include "model/reference.h"
#include "runtime/gen.h"
#include "runtime/llm.h"

static const char *usage_text =
    "usage: anemll generate --meta DIR/meta.yaml --tokens IDS [--max-new N] [--json] [--no-shift] [--stats]\n"
    "\n"
    "Runs the converted packages on the CPU (embeddings, every FFN chunk sharing one KV state, LM head;\n"
    "prefill in batches as ANEMLL's chat.py does) and prints the greedy continuation of the prompt ids.\n"
    "Generation never stops early; past the end of the context the window shifts as in chat_full.py.\n"
    "\n"
    "  --meta PATH     meta.yaml written by `anemll convert` (packages are found beside it)\n"
    "  --tokens IDS    prompt token ids, comma-separated\n"
    "  --max-new N     tokens to generate (default 16)\n"
    "  --json          print {\"tokens\": [generated ids], \"logits_last_top5\": [[id, value], ...]}, the\n"
    "                  top-5 logits at the last prompt position, as `anemll reference --json` does\n"
    "                  (an argmax-mode LM head gives only the top entry)\n"
    "  --no-shift      stop at the end of the context instead of shifting\n"
    "  --threads N     threads for the products and OpenBLAS (default: all cores)\n"
    "  --stats         print timing, the runs of each chunk function (infer, prefill, and for Gemma 3\n"
    "                  beyond its window infer_rotate, prefill_rotate) and memory figures on stderr\n"
    "                  (pool allocations after the first two tokens and at the end, resident memory)\n"
    "  -h, --help      this text\n";

typedef struct Args {
    const char *meta;
    int *tokens;
    int n_tokens;
    long max_new;
    int json, no_shift, stats;
    long threads;
} Args;

static int parse_args(int argc, char **argv, Args *a) {
    a->max_new = 16;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--json")) a->json = 1;
        else if (!strcmp(o, "--no-shift")) a->no_shift = 1;
        else if (!strcmp(o, "--stats")) a->stats = 1;
        else if (!strcmp(o, "--meta") || !strcmp(o, "--tokens") || !strcmp(o, "--max-new") || !strcmp(o, "--threads")) {
            if (i + 1 >= argc) return cli_usage_error("generate", "%s needs a value", o);
            const char *v = argv[++i];
            int rc = 0;
            if (!strcmp(o, "--meta")) a->meta = v;
            else if (!strcmp(o, "--tokens")) rc = cli_opt_ids("generate", o, v, &a->tokens, &a->n_tokens);
            else if (!strcmp(o, "--threads")) rc = cli_opt_int("generate", o, v, 1, 1024, &a->threads);
            else rc = cli_opt_int("generate", o, v, 0, 1000000, &a->max_new);
            if (rc) return rc;
        } else {
            return cli_usage_error("generate", "unknown option '%s'", o);
        }
    }
    if (!a->meta) return cli_usage_error("generate", "--meta is required");
    if (!a->tokens) return cli_usage_error("generate", "--tokens is required");
    return 0;
}

/* Resident set size in KB (VmRSS), or -1. */
static long current_rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = -1, resident = -1;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * 4;
}

typedef struct Collect {
    Llm *m;
    int *gen;
    int top_ids[5];
    float top_vals[5];
    int k;
    RtMemoryStats warm;
    long warm_rss;
} Collect;

static int on_token(void *ctx, int i, int token, const LlmStep *st) {
    Collect *c = ctx;
    c->gen[i] = token;
    if (i == 0) {
        if (st->logits) {
            int n = llm_vocab(c->m);
            c->k = n < 5 ? n : 5;
            ref_top_k(st->logits, n, c->k, c->top_ids, c->top_vals);   /* the same ranking as `anemll reference` */
        } else {
            c->k = 1;
            c->top_ids[0] = st->token;
            c->top_vals[0] = st->value;
        }
    }
    if (i == 1) {
        llm_memory(c->m, &c->warm);
        c->warm_rss = current_rss_kb();
    }
    return 0;
}

static int run_generate(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return CLI_OK;
    }
    Args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc) {
        free(a.tokens);
        return rc;
    }
    Err e = {0};
    Llm *m;
    RtOptions ro = {.threads = (int)a.threads};
    if (llm_open(&m, a.meta, &ro, &e) < 0) {
        free(a.tokens);
        return cli_fail("%s", e.msg);
    }
    Collect c = {.m = m, .gen = xcalloc((size_t)a.max_new + 1, sizeof(int)), .warm_rss = -1};
    LmSource src = gen_llm_source(m);
    GenOptions o = {.max_new = (int)a.max_new, .no_shift = a.no_shift};
    GenResult res;
    rc = gen_run(&src, a.tokens, a.n_tokens, &o, on_token, &c, &res, &e);
    if (rc == 0) {
        if (a.json) {
            printf("{\"tokens\": [");
            for (int i = 0; i < res.n_generated; i++) printf("%s%d", i ? ", " : "", c.gen[i]);
            printf("], \"logits_last_top5\": [");
            for (int i = 0; i < c.k; i++) printf("%s[%d, %.9g]", i ? ", " : "", c.top_ids[i], (double)c.top_vals[i]);
            printf("]}\n");
        } else {
            for (int i = 0; i < res.n_generated; i++) printf("%s%d", i ? "," : "", c.gen[i]);
            printf("\n");
        }
        if (a.stats) {
            const LlmTimes *t = llm_times(m);
            RtMemoryStats end;
            llm_memory(m, &end);
            fprintf(stderr, "prefill: %ld tokens in %.1f ms (%.1f t/s)\n", t->prefill_tokens, 1e3 * t->prefill_s,
                    t->prefill_s > 0 ? t->prefill_tokens / t->prefill_s : 0.0);
            fprintf(stderr, "functions run:");
            for (int f = 0; f < LLM_FN_COUNT; f++) fprintf(stderr, " %s %ld", llm_fn_name((LlmFn)f), t->runs[f]);
            fprintf(stderr, "\n");
            fprintf(stderr, "decode: %ld steps in %.1f ms (%.1f t/s)\n", t->steps, 1e3 * t->step_s,
                    t->step_s > 0 ? t->steps / t->step_s : 0.0);
            fprintf(stderr, "context shifts: %d\n", res.n_shifts);
            fprintf(stderr, "memory: pool allocations after 2 tokens %llu, at the end %llu; pool %llu bytes; "
                            "weights %llu bytes; rss after 2 tokens %ld KB, at the end %ld KB\n",
                    (unsigned long long)c.warm.fresh_allocs, (unsigned long long)end.fresh_allocs,
                    (unsigned long long)end.pool_bytes, (unsigned long long)end.const_bytes, c.warm_rss, current_rss_kb());
        }
    }
    free(c.gen);
    free(a.tokens);
    llm_close(m);
    return rc == 0 ? CLI_OK : cli_fail("%s", e.msg);
}

CLI_COMMAND(generate, "generate", "greedy continuation of token ids by the converted packages (CPU)", run_generate)
