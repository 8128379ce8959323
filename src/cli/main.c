/* main.c - the `anemll` binary: dispatch to a subcommand. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/util.h"

#define ANEMLL_VERSION "0.1.0"
#define MAX_COMMANDS 64

static const CliCommand *commands[MAX_COMMANDS];
static int n_commands;

void cli_register(const CliCommand *cmd) {
    if (n_commands < MAX_COMMANDS) commands[n_commands++] = cmd;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const CliCommand *const *)a)->name, (*(const CliCommand *const *)b)->name);
}

static void usage(FILE *f) {
    fprintf(f,
            "anemll %s - convert Hugging Face LLaMA-family checkpoints to Core ML packages\n"
            "for the Apple Neural Engine, and run and verify them on the CPU.\n\n"
            "usage: anemll <command> [options]     (anemll <command> --help for details)\n\n"
            "commands:\n",
            ANEMLL_VERSION);
    for (int i = 0; i < n_commands; i++) fprintf(f, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
}

int cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    }
    return 0;
}

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_FAIL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fprintf(stderr, "run 'anemll %s --help' for usage\n", cmd);
    return CLI_USAGE;
}

int cli_parse_int(const char *s, long *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

int cli_parse_double(const char *s, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

int cli_opt_int(const char *cmd, const char *opt, const char *v, long lo, long hi, long *out) {
    if (cli_parse_int(v, out) == 0 && *out >= lo && *out <= hi) return 0;
    return cli_usage_error(cmd, "%s wants an integer %ld..%ld, got '%s'", opt, lo, hi, v);
}

int cli_opt_ids(const char *cmd, const char *opt, const char *v, int **ids, int *n) {
    free(*ids);
    if (cli_parse_int_list(v, ids, n) == 0) return 0;
    return cli_usage_error(cmd, "%s wants comma-separated integers, got '%s'", opt, v);
}

int cli_parse_int_list(const char *s, int **out, int *n) {
    *out = NULL;
    *n = 0;
    if (!s || !*s) return -1;
    int cap = 16, cnt = 0;
    int *v = xmalloc(sizeof *v * (size_t)cap);
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < -2147483647L || x > 2147483647L) {
            free(v);
            return -1;
        }
        if (cnt == cap) v = xrealloc(v, sizeof *v * (size_t)(cap *= 2));
        v[cnt++] = (int)x;
        if (*end == 0) break;
        if (*end != ',') {
            free(v);
            return -1;
        }
        p = end + 1;
    }
    *out = v;
    *n = cnt;
    return 0;
}

int main(int argc, char **argv) {
    qsort(commands, (size_t)n_commands, sizeof commands[0], by_name);
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        printf("anemll %s\n", ANEMLL_VERSION);
        return CLI_OK;
    }
    for (int i = 0; i < n_commands; i++)
        if (!strcmp(commands[i]->name, name)) return commands[i]->run(argc - 1, argv + 1);
    fprintf(stderr, "error: unknown command '%s'\n\n", name);
    usage(stderr);
    return CLI_USAGE;
}
