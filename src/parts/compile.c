/* compile.c - running Apple's Core ML compiler on a package (see compile.h). */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/killpoint.h"
#include "common/util.h"
#include "parts/compile.h"

extern char **environ;

int part_compiler_available(void) {
    const char *path = getenv("PATH");
    if (!path) return 0;
    char *copy = xstrdup(path);
    int found = 0;
    for (char *dir = strtok(copy, ":"); dir && !found; dir = strtok(NULL, ":")) {
        char *p = path_join(*dir ? dir : ".", "xcrun");
        found = access(p, X_OK) == 0;
        free(p);
    }
    free(copy);
    return found;
}

/* "dir/name.mlpackage[/]" -> "name" (new string), or NULL if it does not end in .mlpackage. */
static char *package_stem(const char *pkg) {
    size_t len = strlen(pkg);
    while (len > 1 && pkg[len - 1] == '/') len--;
    const char *ext = ".mlpackage";
    size_t el = strlen(ext);
    if (len <= el || memcmp(pkg + len - el, ext, el)) return NULL;
    size_t start = len - el;
    while (start > 0 && pkg[start - 1] != '/') start--;
    return xasprintf("%.*s", (int)(len - el - start), pkg + start);
}

static int run_compiler(const char *pkg, const char *into, Err *e) {
    char *argv[] = {"xcrun", "coremlcompiler", "compile", (char *)pkg, (char *)into, NULL};
    pid_t pid;
    int status = 0;
    int err = posix_spawnp(&pid, "xcrun", NULL, NULL, argv, environ);
    if (err) return err_set(e, "cannot run xcrun: %s", strerror(err));
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return err_set(e, "xcrun coremlcompiler compile %s failed (status %d)", pkg, status);
    return 0;
}

int part_compile(const char *pkg, const char *out_dir, char **dest_out, Err *e) {
    if (dest_out) *dest_out = NULL;
    char *name = package_stem(pkg);
    if (!name) return err_set(e, "%s: not an .mlpackage path (compile takes NAME.mlpackage folders)", pkg);
    char *tmp = xasprintf("%s/.compile.%s.%ld", out_dir, name, (long)getpid());
    char *built = xasprintf("%s/%s.mlmodelc", tmp, name);
    char *dest = xasprintf("%s/%s.mlmodelc", out_dir, name);
    int rc = mkdir_p(tmp, e);
    if (rc == 0) rc = run_compiler(pkg, tmp, e);
    if (rc == 0 && !path_is_dir(built)) rc = err_set(e, "xcrun coremlcompiler did not write %s", built);
    if (rc == 0) {
        killpoint("compiled into the scratch folder", built);
        remove_tree(dest);
        if (rename(built, dest) < 0) rc = err_errno(e, "cannot move %s to %s", built, dest);
        else killpoint("compiled model renamed into place", dest);
    }
    remove_tree(tmp);
    if (rc == 0 && dest_out) {
        *dest_out = dest;
        dest = NULL;
    }
    free(name);
    free(tmp);
    free(built);
    free(dest);
    return rc;
}
