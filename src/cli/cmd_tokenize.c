/* cmd_tokenize.c - `anemll tokenize`: encode text (optionally as a chat prompt) or
 * decode ids with a model's tokenizer.json, printing JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/util.h"
#include "runtime/chat_template.h"
#include "runtime/tokenizer.h"

static const char USAGE[] =
    "usage: anemll tokenize --tokenizer DIR (--text TEXT | --file PATH) [--no-special] [--tokens]\n"
    "       anemll tokenize --tokenizer DIR --chat (--text TEXT | --file PATH) [--system TEXT] [--no-think]\n"
    "                       [--format auto|llama3|chatml|gemma|deepseek] [--tokens]\n"
    "       anemll tokenize --tokenizer DIR --decode IDS [--skip-special] [--no-cleanup]\n"
    "       anemll tokenize --tokenizer DIR --info\n"
    "\n"
    "Encodes text with DIR/tokenizer.json (+ tokenizer_config.json) exactly as Hugging Face's\n"
    "tokenizer.encode() does, or decodes ids, and prints JSON on stdout:\n"
    "  encode:  {\"ids\": [...], \"count\": N}            (+ \"tokens\": [...] with --tokens)\n"
    "  --chat:  {\"format\": F, \"prompt\": P, \"ids\": [...], \"count\": N, \"stop_ids\": [...]}\n"
    "  decode:  {\"text\": T}\n"
    "  --info:  vocabulary size, bos/eos, stop ids, chat format\n"
    "\n"
    "options:\n"
    "  --tokenizer DIR   folder with tokenizer.json (a Hugging Face model folder)\n"
    "  --text TEXT       the text to encode (the user message with --chat)\n"
    "  --file PATH       read the text from a file instead ('-' = stdin)\n"
    "  --no-special      do not add the post-processor's special tokens (e.g. Gemma's <bos>)\n"
    "  --tokens          also print each id's token string\n"
    "  --chat            format TEXT as a one-turn chat prompt (the model's chat template), then encode\n"
    "  --system TEXT     a system message before the user message (--chat)\n"
    "  --no-think        Qwen3: an empty <think></think> block (enable_thinking=false) (--chat)\n"
    "  --format NAME     chat format instead of the one detected from the tokenizer (--chat)\n"
    "  --decode IDS      decode comma-separated ids instead of encoding\n"
    "  --skip-special    leave special tokens out of the decoded text\n"
    "  --no-cleanup      keep spaces before punctuation even if clean_up_tokenization_spaces is set\n";

/* ---- JSON output -------------------------------------------------------------------- */

static void json_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
    }
    fputc('"', f);
}

static void json_ids(FILE *f, const int *ids, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ", %d" : "%d", ids[i]);
    fputc(']', f);
}

static void json_tokens(FILE *f, const Tokenizer *tok, const int *ids, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *s = tok_id_to_token(tok, ids[i], &len);
        if (i) fputs(", ", f);
        if (s) json_string(f, s, len);
        else fputs("null", f);
    }
    fputc(']', f);
}

static void print_encoding(const Tokenizer *tok, const int *ids, int n, int show_tokens) {
    fputs("\"ids\": ", stdout);
    json_ids(stdout, ids, n);
    printf(", \"count\": %d", n);
    if (show_tokens) {
        fputs(", \"tokens\": ", stdout);
        json_tokens(stdout, tok, ids, n);
    }
}

/* ---- options ------------------------------------------------------------------------- */

typedef struct {
    const char *dir, *text, *file, *system, *decode, *format;
    int no_special, show_tokens, chat, no_think, skip_special, no_cleanup, info;
} Opts;

static int parse_opts(int argc, char **argv, Opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **value = NULL;
        if (!strcmp(a, "--tokenizer")) value = &o->dir;
        else if (!strcmp(a, "--text")) value = &o->text;
        else if (!strcmp(a, "--file")) value = &o->file;
        else if (!strcmp(a, "--system")) value = &o->system;
        else if (!strcmp(a, "--decode")) value = &o->decode;
        else if (!strcmp(a, "--format")) value = &o->format;
        else if (!strcmp(a, "--no-special")) o->no_special = 1;
        else if (!strcmp(a, "--tokens")) o->show_tokens = 1;
        else if (!strcmp(a, "--chat")) o->chat = 1;
        else if (!strcmp(a, "--no-think")) o->no_think = 1;
        else if (!strcmp(a, "--skip-special")) o->skip_special = 1;
        else if (!strcmp(a, "--no-cleanup")) o->no_cleanup = 1;
        else if (!strcmp(a, "--info")) o->info = 1;
        else return cli_usage_error("tokenize", "unknown option '%s'", a);
        if (value) {
            if (i + 1 >= argc) return cli_usage_error("tokenize", "%s needs a value", a);
            *value = argv[++i];
        }
    }
    if (!o->dir) return cli_usage_error("tokenize", "--tokenizer DIR is required");
    int modes = (o->decode != NULL) + o->info + (o->text || o->file);
    if (o->text && o->file) return cli_usage_error("tokenize", "give --text or --file, not both");
    if (modes != 1) return cli_usage_error("tokenize", "give exactly one of --text/--file, --decode, --info");
    if ((o->system || o->no_think || o->format) && !o->chat)
        return cli_usage_error("tokenize", "--system, --no-think and --format go with --chat");
    return 0;
}

static char *read_input(const Opts *o, size_t *len) {
    if (o->text) {
        *len = strlen(o->text);
        return xstrdup(o->text);
    }
    Err e = {0};
    char *text = NULL;
    if (!strcmp(o->file, "-")) {
        size_t cap = 4096, n = 0;
        text = xmalloc(cap);
        size_t got;
        while ((got = fread(text + n, 1, cap - n - 1, stdin)) > 0) {
            n += got;
            if (cap - n - 1 == 0) text = xrealloc(text, cap *= 2);
        }
        text[n] = 0;
        *len = n;
        return text;
    }
    if (file_read_all(o->file, 256u << 20, &text, len, &e) < 0) {
        cli_fail("%s", e.msg);
        return NULL;
    }
    return text;
}

/* ---- modes ------------------------------------------------------------------------------ */

static int run_decode(const Tokenizer *tok, const Opts *o) {
    int *ids, n;
    if (cli_parse_int_list(o->decode, &ids, &n) < 0)
        return cli_usage_error("tokenize", "--decode wants comma-separated integers, got '%s'", o->decode);
    Err e = {0};
    char *text;
    size_t len;
    int flags = (o->skip_special ? TOK_SKIP_SPECIAL : 0) | (o->no_cleanup ? TOK_NO_CLEANUP : 0);
    int rc = tok_decode(tok, ids, n, flags, &text, &len, &e);
    free(ids);
    if (rc < 0) return cli_fail("%s", e.msg);
    fputs("{\"text\": ", stdout);
    json_string(stdout, text, len);
    fputs("}\n", stdout);
    free(text);
    return CLI_OK;
}

static int run_encode(const Tokenizer *tok, const Opts *o, const char *text, size_t len) {
    Err e = {0};
    int *ids, n;
    if (tok_encode(tok, text, len, o->no_special ? 0 : TOK_ADD_SPECIAL, &ids, &n, &e) < 0) return cli_fail("%s", e.msg);
    fputc('{', stdout);
    print_encoding(tok, ids, n, o->show_tokens);
    fputs("}\n", stdout);
    free(ids);
    return CLI_OK;
}

static int run_chat(const Tokenizer *tok, const Opts *o, const char *text) {
    Err e = {0};
    ChatOptions co = {.format = CHAT_FORMAT_AUTO, .no_think = o->no_think};
    if (o->format && chat_format_parse(o->format, &co.format) < 0)
        return cli_usage_error("tokenize", "unknown --format '%s' (auto, llama3, chatml, gemma, deepseek)", o->format);
    if (co.format == CHAT_FORMAT_AUTO && chat_detect_format(tok, &co.format, &e) < 0) return cli_fail("%s", e.msg);
    ChatMessage msgs[2];
    int n_msgs = 0;
    if (o->system) msgs[n_msgs++] = (ChatMessage){"system", o->system};
    msgs[n_msgs++] = (ChatMessage){"user", text};
    char *prompt;
    if (chat_render(tok, msgs, n_msgs, &co, &prompt, &e) < 0) return cli_fail("%s", e.msg);
    int *ids, n;
    /* The rendered prompt already holds the special tokens the template wants. */
    if (tok_encode(tok, prompt, strlen(prompt), 0, &ids, &n, &e) < 0) {
        free(prompt);
        return cli_fail("%s", e.msg);
    }
    printf("{\"format\": \"%s\", \"prompt\": ", chat_format_name(co.format));
    json_string(stdout, prompt, strlen(prompt));
    fputs(", ", stdout);
    print_encoding(tok, ids, n, o->show_tokens);
    const int *stops;
    int n_stops = tok_stop_ids(tok, &stops);
    fputs(", \"stop_ids\": ", stdout);
    json_ids(stdout, stops, n_stops);
    fputs("}\n", stdout);
    free(ids);
    free(prompt);
    return CLI_OK;
}

static void json_token_field(const Tokenizer *tok, const char *name, int id) {
    printf(", \"%s\": ", name);
    size_t len;
    const char *s = id >= 0 ? tok_id_to_token(tok, id, &len) : NULL;
    if (!s) {
        fputs("null", stdout);
        return;
    }
    printf("{\"id\": %d, \"token\": ", id);
    json_string(stdout, s, len);
    fputc('}', stdout);
}

static int run_info(const Tokenizer *tok) {
    printf("{\"vocab_size\": %d", tok_vocab_size(tok));
    json_token_field(tok, "bos", tok_bos_id(tok));
    json_token_field(tok, "eos", tok_eos_id(tok));
    const int *stops;
    int n_stops = tok_stop_ids(tok, &stops);
    fputs(", \"stop_ids\": ", stdout);
    json_ids(stdout, stops, n_stops);
    ChatFormat f;
    Err e = {0};
    if (chat_detect_format(tok, &f, &e) == 0) printf(", \"chat_format\": \"%s\"", chat_format_name(f));
    else fputs(", \"chat_format\": null", stdout);
    printf(", \"has_chat_template\": %s}\n", tok_chat_template(tok) ? "true" : "false");
    return CLI_OK;
}

static int run_tokenize(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return CLI_OK;
    }
    Opts o = {0};
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    Err e = {0};
    Tokenizer *tok;
    if (tok_load(&tok, o.dir, &e) < 0) return cli_fail("%s", e.msg);
    if (o.decode) {
        rc = run_decode(tok, &o);
    } else if (o.info) {
        rc = run_info(tok);
    } else {
        size_t len;
        char *text = read_input(&o, &len);
        if (!text) rc = CLI_FAIL;
        else if (o.chat) rc = strlen(text) != len ? cli_fail("the text contains a NUL byte") : run_chat(tok, &o, text);
        else rc = run_encode(tok, &o, text, len);
        free(text);
    }
    tok_free(tok);
    return rc;
}

CLI_COMMAND(tokenize, "tokenize", "encode or decode text with a model's tokenizer (JSON output)", run_tokenize)
