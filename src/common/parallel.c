#include "common/parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/util.h"

typedef struct {
    long n_tasks;
    atomic_long next;
    par_task_fn fn;
    void *ctx;
} ParJob;

typedef struct {
    ParJob *job;
    int thread;
} ParWorker;

static void *par_worker(void *arg) {
    ParWorker *w = arg;
    ParJob *job = w->job;
    for (;;) {
        long i = atomic_fetch_add(&job->next, 1);
        if (i >= job->n_tasks) break;
        job->fn(job->ctx, i, w->thread);
    }
    return NULL;
}

void par_for(long n_tasks, int n_threads, par_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    if (n_threads > n_tasks) n_threads = (int)n_tasks;
    ParJob job = {.n_tasks = n_tasks, .fn = fn, .ctx = ctx};
    atomic_init(&job.next, 0);
    if (n_threads <= 1) {
        ParWorker w = {&job, 0};
        par_worker(&w);
        return;
    }
    pthread_t *tids = xcalloc((size_t)n_threads, sizeof *tids);
    ParWorker *ws = xcalloc((size_t)n_threads, sizeof *ws);
    int started = 0;
    for (int t = 1; t < n_threads; t++) {
        ws[t] = (ParWorker){&job, t};
        if (pthread_create(&tids[t], NULL, par_worker, &ws[t]) == 0) started = t;
        else break;
    }
    ws[0] = (ParWorker){&job, 0};
    par_worker(&ws[0]);
    for (int t = 1; t <= started; t++) pthread_join(tids[t], NULL);
    free(tids);
    free(ws);
}

int par_threads(int requested) {
    if (requested > 0) return requested;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
