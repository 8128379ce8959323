/* cmd_chat.c - `anemll chat`: talk to a converted model on the CPU, as ANEMLL's chat_full.py does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/util.h"
#include "runtime/chat_template.h"
#include "runtime/gen.h"
#include "runtime/llm.h"
#include "runtime/sampler.h"
#include "runtime/tokenizer.h"

static const char *usage_text =
    "usage: anemll chat --meta DIR/meta.yaml [--prompt TEXT] [--max-tokens N] [--system TEXT]\n"
    "                   [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
    "                   [--no-template] [--no-think] [--tokenizer DIR] [--threads N] [--no-stats]\n"
    "\n"
    "Chats with the converted packages on the CPU. With --prompt: one reply, then exit. Without it:\n"
    "reads one message per line from stdin (/reset forgets the conversation, /quit or end of input\n"
    "leaves); the whole conversation is prefilled again each turn and the oldest turns are dropped\n"
    "when it no longer fits (chat_full.py). Replies stop at the model's stop tokens, at --max-tokens,\n"
    "and shift the context window when it fills. Prefill and decode speed go to stderr.\n"
    "\n"
    "  --meta PATH       meta.yaml written by `anemll convert`\n"
    "  --prompt TEXT     one message, one reply\n"
    "  --max-tokens N    most tokens per reply (default 256)\n"
    "  --system TEXT     a system message\n"
    "  --temperature T   0 (default) = greedy; > 0 samples\n"
    "  --top-k K         sample among the K most likely tokens (default 0 = all)\n"
    "  --top-p P         sample within the smallest set of probability >= P (default 1 = all)\n"
    "  --seed S          sampling seed (default 1)\n"
    "  --no-template     encode the text as is (no chat template)\n"
    "  --no-think        Qwen3: empty <think></think> block (enable_thinking=false)\n"
    "  --tokenizer DIR   tokenizer folder (default: meta.yaml's tokenizer_path, else its folder)\n"
    "  --threads N       threads for the products and OpenBLAS (default: all cores)\n"
    "  --no-stats        do not print speed figures\n"
    "  -h, --help        this text\n";

typedef struct Args {
    const char *meta, *prompt, *system, *tokenizer;
    long max_tokens;
    double temperature, top_p;
    long top_k, seed, threads;
    int no_template, no_think, no_stats;
} Args;

static int parse_args(int argc, char **argv, Args *a) {
    a->max_tokens = 256;
    a->top_p = 1.0;
    a->seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--no-template")) a->no_template = 1;
        else if (!strcmp(o, "--no-think")) a->no_think = 1;
        else if (!strcmp(o, "--no-stats")) a->no_stats = 1;
        else if (!strcmp(o, "--meta") || !strcmp(o, "--prompt") || !strcmp(o, "--system") || !strcmp(o, "--tokenizer") ||
                 !strcmp(o, "--max-tokens") || !strcmp(o, "--temperature") || !strcmp(o, "--top-k") ||
                 !strcmp(o, "--top-p") || !strcmp(o, "--seed") || !strcmp(o, "--threads")) {
            if (i + 1 >= argc) return cli_usage_error("chat", "%s needs a value", o);
            const char *v = argv[++i];
            if (!strcmp(o, "--meta")) a->meta = v;
            else if (!strcmp(o, "--prompt")) a->prompt = v;
            else if (!strcmp(o, "--system")) a->system = v;
            else if (!strcmp(o, "--tokenizer")) a->tokenizer = v;
            else if (!strcmp(o, "--max-tokens")) {
                int rc = cli_opt_int("chat", o, v, 1, 1000000, &a->max_tokens);
                if (rc) return rc;
            } else if (!strcmp(o, "--temperature")) {
                if (cli_parse_double(v, &a->temperature) < 0 || a->temperature < 0 || a->temperature > 100)
                    return cli_usage_error("chat", "--temperature wants a number 0..100, got '%s'", v);
            } else if (!strcmp(o, "--top-p")) {
                if (cli_parse_double(v, &a->top_p) < 0 || a->top_p <= 0 || a->top_p > 1)
                    return cli_usage_error("chat", "--top-p wants a number in (0, 1], got '%s'", v);
            } else if (!strcmp(o, "--top-k")) {
                if (cli_parse_int(v, &a->top_k) < 0 || a->top_k < 0)
                    return cli_usage_error("chat", "--top-k wants an integer >= 0, got '%s'", v);
            } else if (!strcmp(o, "--threads")) {
                int rc = cli_opt_int("chat", o, v, 1, 1024, &a->threads);
                if (rc) return rc;
            } else if (cli_parse_int(v, &a->seed) < 0) {
                return cli_usage_error("chat", "--seed wants an integer, got '%s'", v);
            }
        } else {
            return cli_usage_error("chat", "unknown option '%s'", o);
        }
    }
    if (!a->meta) return cli_usage_error("chat", "--meta is required");
    return 0;
}

/* ==== One turn ==== */

typedef struct Chat {
    Args *a;
    Llm *m;
    Tokenizer *tok;
    Sampler *sampler;
    ChatMessage *hist;          /* user/assistant pairs */
    int n_hist, cap_hist;
} Chat;

typedef struct Reply {
    Chat *c;
    TokStream stream;
    int *ids;
    int n;
    Err *e;
    int failed;
} Reply;

static int is_stop(void *ctx, int token) { return tok_is_stop(ctx, token); }

static int on_token(void *ctx, int i, int token, const LlmStep *st) {
    (void)i;
    (void)st;
    Reply *r = ctx;
    r->ids[r->n++] = token;
    if (tok_is_stop(r->c->tok, token)) return 0;
    char *text = NULL;
    if (tok_stream_push(r->c->tok, &r->stream, token, &text, r->e) < 0) {
        r->failed = 1;
        return 1;
    }
    fputs(text, stdout);
    fflush(stdout);
    free(text);
    return 0;
}

/* The prompt ids of the conversation plus msg, oldest turns dropped until it fits. */
static int encode_turn(Chat *c, const char *msg, int **ids, int *n, Err *e) {
    int ctx = llm_context(c->m), limit = ctx > 200 ? ctx - 100 : ctx / 2;
    for (int first = 0;; first += 2) {
        if (c->a->no_template) {
            if (tok_encode(c->tok, msg, strlen(msg), TOK_ADD_SPECIAL, ids, n, e) < 0) return -1;
        } else {
            int cnt = 0;
            ChatMessage *ms = xcalloc((size_t)c->n_hist + 2, sizeof *ms);
            if (c->a->system) ms[cnt++] = (ChatMessage){"system", c->a->system};
            for (int i = first; i < c->n_hist; i++) ms[cnt++] = c->hist[i];
            ms[cnt++] = (ChatMessage){"user", msg};
            ChatOptions o = {.no_think = c->a->no_think};
            int rc = chat_encode(c->tok, ms, cnt, &o, ids, n, e);
            free(ms);
            if (rc < 0) return -1;
        }
        if (*n <= limit || first >= c->n_hist) break;
        free(*ids);
    }
    if (*n > limit) {   /* only the current message and still too long: keep its end */
        int keep = ctx / 2;
        memmove(*ids, *ids + (*n - keep), sizeof **ids * (size_t)keep);
        *n = keep;
        fprintf(stderr, "note: the message is longer than the context; only its last %d tokens are used\n", keep);
    }
    return 0;
}

static void remember(Chat *c, const char *user, const char *assistant) {
    if (c->n_hist + 2 > c->cap_hist) {
        c->cap_hist = c->cap_hist ? 2 * c->cap_hist : 16;
        c->hist = xrealloc(c->hist, sizeof *c->hist * (size_t)c->cap_hist);
    }
    c->hist[c->n_hist++] = (ChatMessage){"user", xstrdup(user)};
    c->hist[c->n_hist++] = (ChatMessage){"assistant", xstrdup(assistant)};
}

static void forget(Chat *c) {
    for (int i = 0; i < c->n_hist; i++) free((char *)c->hist[i].content);
    c->n_hist = 0;
}

static int turn(Chat *c, const char *msg, Err *e) {
    int *ids, n;
    if (encode_turn(c, msg, &ids, &n, e) < 0) return -1;
    Reply r = {.c = c, .ids = xcalloc((size_t)c->a->max_tokens + 1, sizeof(int)), .e = e};
    tok_stream_init(&r.stream);
    LmSource src = gen_llm_source(c->m);
    GenOptions o = {.max_new = (int)c->a->max_tokens, .sampler = c->sampler, .is_stop = is_stop, .stop_ctx = c->tok};
    GenResult res;
    llm_reset_times(c->m);
    int rc = gen_run(&src, ids, n, &o, on_token, &r, &res, e);
    if (rc == 0 && r.failed) rc = -1;
    if (rc == 0) {
        char *rest = NULL;
        if (tok_stream_flush(c->tok, &r.stream, &rest, e) == 0) {
            fputs(rest, stdout);
            free(rest);
        }
        fputc('\n', stdout);
        fflush(stdout);
        char *reply = NULL;
        int body = r.n - (res.stopped_by_token ? 1 : 0);
        if (tok_decode(c->tok, r.ids, body, TOK_SKIP_SPECIAL, &reply, NULL, e) == 0) {
            remember(c, msg, reply);
            free(reply);
        }
        if (!c->a->no_stats) {
            const LlmTimes *t = llm_times(c->m);
            fprintf(stderr, "[prefill: %d tokens in %.0f ms, %.1f t/s | decode: %d tokens, %.1f t/s%s]\n", n,
                    1e3 * t->prefill_s, t->prefill_s > 0 ? n / t->prefill_s : 0.0, res.n_generated,
                    t->step_s > 0 ? t->steps / t->step_s : 0.0, res.n_shifts ? ", context shifted" : "");
        }
    }
    tok_stream_free(&r.stream);
    free(r.ids);
    free(ids);
    return rc;
}

static int interactive(Chat *c, Err *e) {
    char *line = NULL;
    size_t cap = 0;
    int tty = isatty(STDIN_FILENO), rc = 0;
    if (tty) fprintf(stderr, "chat with the model; /reset forgets the conversation, /quit leaves\n");
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len) continue;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset")) {
            forget(c);
            continue;
        }
        if ((rc = turn(c, line, e)) < 0) break;
    }
    free(line);
    return rc;
}

static int run_chat(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return CLI_OK;
    }
    Args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    Err e = {0};
    Chat c = {.a = &a};
    RtOptions ro = {.threads = (int)a.threads};
    if (llm_open(&c.m, a.meta, &ro, &e) < 0) return cli_fail("%s", e.msg);
    const char *tdir = a.tokenizer ? a.tokenizer : llm_meta(c.m)->tokenizer_dir;
    if (tok_load(&c.tok, tdir, &e) < 0) {
        llm_close(c.m);
        return cli_fail("%s (the tokenizer files are copied next to meta.yaml by convert step 7; or pass --tokenizer)", e.msg);
    }
    if (a.temperature > 0 && llm_argmax_mode(c.m))
        fprintf(stderr, "note: the LM head was converted with --argmax (no logits): decoding is greedy\n");
    SamplerOptions so = {(float)a.temperature, (int)a.top_k, (float)a.top_p, (uint64_t)a.seed};
    c.sampler = sampler_new(&so, llm_vocab(c.m));
    rc = a.prompt ? turn(&c, a.prompt, &e) : interactive(&c, &e);
    forget(&c);
    free(c.hist);
    sampler_free(c.sampler);
    tok_free(c.tok);
    llm_close(c.m);
    return rc == 0 ? CLI_OK : cli_fail("%s", e.msg);
}

CLI_COMMAND(chat, "chat", "chat with converted packages on the CPU (prefill/decode speed printed)", run_chat)
