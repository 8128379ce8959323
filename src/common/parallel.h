/* parallel.h - run independent tasks on a few threads.
 *
 *     static void work(void *ctx, long task, int thread) { ... }
 *     par_for(n_tasks, par_threads(requested), work, &ctx);
 *
 * Tasks are handed out dynamically (an atomic counter), so uneven tasks balance;
 * results must not depend on which thread ran a task (write to per-task slots).
 */
#ifndef ANEMLL_PARALLEL_H
#define ANEMLL_PARALLEL_H

typedef void (*par_task_fn)(void *ctx, long task, int thread);

/* Runs fn(ctx, i, thread) for i in [0, n_tasks). Blocks until all are done.
 * n_threads <= 1 runs everything on the calling thread. */
void par_for(long n_tasks, int n_threads, par_task_fn fn, void *ctx);

/* requested > 0: requested; otherwise the number of online CPUs (at least 1). */
int par_threads(int requested);

#endif
