/* killpoint.h - a test hook that kills the process at chosen points of a conversion, to check
 * that an interrupted conversion leaves nothing that looks finished and resumes to the same
 * bytes (tests/e2e/interrupt_convert.sh).
 *
 * Inert unless the environment asks for it (a cached getenv; nothing else runs):
 *   ANEMLL_KILL_AT=S:N    SIGKILL at the Nth kill point reached while conversion step S runs
 *                         (S = 0: count from the start of the process, whatever the step)
 *   ANEMLL_KILL_LOG=FILE  append "S<tab>N<tab>what<tab>path" for every kill point passed (to count them)
 * Kill points sit where an interruption is most likely to leave something behind: after each
 * blob written to a weight.bin, after each file of a package, between moving an old package
 * aside and renaming the new one in, before and after each atomic rename of a plain file,
 * around each compiled model's move into place (step 6), and after each package step 8 reads
 * back. Thread-safe.
 */
#ifndef ANEMLL_KILLPOINT_H
#define ANEMLL_KILLPOINT_H

/* The conversion step now running (restarts the per-step count). */
void killpoint_step(int step);
/* A kill point: `what` says what was just done, `path` to which file (may be NULL). */
void killpoint(const char *what, const char *path);

#endif
