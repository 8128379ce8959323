/* cmd_compile.c - `anemll compile PKG.mlpackage... [--output DIR]`: .mlmodelc with Apple's compiler. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/util.h"
#include "coreml/package.h"
#include "parts/compile.h"

static const char usage_text[] =
    "usage: anemll compile PKG.mlpackage... [--output DIR]\n\n"
    "Compiles Core ML packages to .mlmodelc folders with Apple's compiler (xcrun\n"
    "coremlcompiler compile), as step 6 of convert does. Every package is read and checked\n"
    "first (manifest, protobuf, weight blobs, op signatures); a package that does not\n"
    "load is not handed to the compiler.\n\n"
    "The compiler exists only on macOS with Xcode's command-line tools. Elsewhere the\n"
    "packages are checked and the command fails with a note: Core ML compiles an\n"
    ".mlpackage itself on first load, so the packages are usable as they are.\n\n"
    "  --output DIR   where the .mlmodelc folders go (default: beside each package)\n";

/* The folder holding `pkg` (new string); a trailing slash does not count. */
static char *parent_dir(const char *pkg) {
    char *p = xstrdup(pkg);
    for (size_t len = strlen(p); len > 1 && p[len - 1] == '/'; len--) p[len - 1] = 0;
    char *dir = path_dir(p);
    free(p);
    return dir;
}

static int check_package(const char *path) {
    Package *pkg;
    Err e = {0};
    if (pkg_open(&pkg, path, 0, &e) < 0) return cli_fail("%s", e.msg);
    pkg_close(pkg);
    return CLI_OK;
}

static int run_compile(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return CLI_OK;
    }
    const char *out_dir = NULL;
    int n_pkgs = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--output")) {
            if (i + 1 >= argc) return cli_usage_error("compile", "--output needs a value");
            out_dir = argv[++i];
        } else if (argv[i][0] == '-') {
            return cli_usage_error("compile", "unknown option '%s'", argv[i]);
        } else {
            n_pkgs++;
        }
    }
    if (!n_pkgs) return cli_usage_error("compile", "give at least one PKG.mlpackage");
    if (out_dir && !path_is_dir(out_dir)) return cli_fail("--output %s: no such folder (create it first)", out_dir);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--output")) i++;
        else if (check_package(argv[i]) != CLI_OK) return CLI_FAIL;
    }
    if (!part_compiler_available())
        return cli_fail("compiling needs macOS with Xcode's command-line tools (xcrun coremlcompiler), which this "
                        "machine does not have; the %d package%s checked fine, and Core ML compiles an .mlpackage "
                        "itself on first load", n_pkgs, n_pkgs == 1 ? "" : "s");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--output")) {
            i++;
            continue;
        }
        char *dir = out_dir ? xstrdup(out_dir) : parent_dir(argv[i]);
        char *dest = NULL;
        Err e = {0};
        double t0 = now_seconds();
        int rc = part_compile(argv[i], dir, &dest, &e);
        free(dir);
        if (rc < 0) return cli_fail("%s", e.msg);
        printf("%s (%.1f s)\n", dest, now_seconds() - t0);
        free(dest);
    }
    return CLI_OK;
}

CLI_COMMAND(compile, "compile", "compile .mlpackage files to .mlmodelc (xcrun coremlcompiler, macOS)", run_compile)
