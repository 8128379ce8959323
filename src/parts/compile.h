/* compile.h - .mlpackage -> .mlmodelc with Apple's compiler (`xcrun coremlcompiler compile`).
 *
 * Only macOS with Xcode's command-line tools has the compiler; part_compiler_available says
 * whether this machine does. Elsewhere nothing is compiled: Core ML compiles an .mlpackage
 * itself the first time it is loaded, so the packages alone are a complete conversion.
 *
 * part_compile writes <out_dir>/<name>.mlmodelc for <dir>/<name>.mlpackage: the compiler
 * writes into a scratch folder inside out_dir, and the result is renamed into place only when
 * it is complete (an earlier <name>.mlmodelc is replaced then, never left half-written).
 * Return convention: 0, or -1 with a message in *e naming the package.
 */
#ifndef ANEMLL_PARTS_COMPILE_H
#define ANEMLL_PARTS_COMPILE_H

#include "common/err.h"

/* 1 if `xcrun` is an executable on PATH. */
int part_compiler_available(void);

/* pkg: path of an .mlpackage folder; out_dir: an existing folder. *dest (may be NULL):
 * the path of the compiled model (caller frees). */
int part_compile(const char *pkg, const char *out_dir, char **dest, Err *e);

#endif
