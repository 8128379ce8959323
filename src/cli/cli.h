/* cli.h - subcommands of the `anemll` binary.
 *
 * Each subcommand lives in its own file src/cli/cmd_<name>.c and registers itself:
 *
 *     static int run_inspect(int argc, char **argv) { ... }
 *     CLI_COMMAND(inspect, "inspect", "show what an .mlpackage holds", run_inspect)
 *
 * run() receives argv with argv[0] = the subcommand name, prints its own errors
 * ("error: ..." on stderr) and returns the process exit status:
 *   0 success, 1 failure, 2 bad usage (unknown option, missing argument).
 * Every subcommand answers --help / -h with its usage on stdout and status 0.
 */
#ifndef ANEMLL_CLI_H
#define ANEMLL_CLI_H

typedef struct CliCommand {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} CliCommand;

void cli_register(const CliCommand *cmd);

#define CLI_COMMAND(ident, name_str, summary_str, fn)                                   \
    static const CliCommand cli_cmd_##ident = {name_str, summary_str, fn};              \
    __attribute__((constructor)) static void cli_register_##ident(void) {               \
        cli_register(&cli_cmd_##ident);                                                 \
    }

/* Exit statuses. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* True if argv contains -h or --help (before a "--"). */
int cli_wants_help(int argc, char **argv);

/* Prints "error: <msg>" to stderr; returns CLI_FAIL. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "error: <msg>" and "run 'anemll <cmd> --help' for usage"; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict number parsing for option values: the whole string must be a number. */
int cli_parse_int(const char *s, long *out);
int cli_parse_double(const char *s, double *out);
/* Parses "1,2,3" into a new array (caller frees *out). */
int cli_parse_int_list(const char *s, int **out, int *n);

/* Option values checked and stored in one call: on a bad value they print the usage error
 * ("<opt> wants an integer lo..hi, got '<v>'") and return CLI_USAGE, else 0. */
int cli_opt_int(const char *cmd, const char *opt, const char *v, long lo, long hi, long *out);
/* "1,2,3" into *ids (an earlier list in *ids is freed first; caller frees). */
int cli_opt_ids(const char *cmd, const char *opt, const char *v, int **ids, int *n);

#endif
