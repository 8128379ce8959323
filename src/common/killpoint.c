/* killpoint.c - the interrupted-conversion test hook (see killpoint.h). */
#include "common/killpoint.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int active;                /* either variable set */
static int kill_step = -1;        /* S of ANEMLL_KILL_AT, -1 = never */
static long kill_n;               /* N of ANEMLL_KILL_AT */
static const char *log_path;
static int step;                  /* the step running */
static long count_in_step, count_total;

static void read_env(void) {
    const char *at = getenv("ANEMLL_KILL_AT");
    int s;
    long n;
    char extra;
    if (at && sscanf(at, "%d:%ld%c", &s, &n, &extra) == 2 && s >= 0 && n > 0) {
        kill_step = s;
        kill_n = n;
    }
    log_path = getenv("ANEMLL_KILL_LOG");
    if (log_path && !*log_path) log_path = NULL;
    active = kill_step >= 0 || log_path;
}

void killpoint_step(int s) {
    pthread_once(&once, read_env);
    if (!active) return;
    pthread_mutex_lock(&lock);
    step = s;
    count_in_step = 0;
    pthread_mutex_unlock(&lock);
}

void killpoint(const char *what, const char *path) {
    pthread_once(&once, read_env);
    if (!active) return;
    pthread_mutex_lock(&lock);
    long n = ++count_in_step;
    count_total++;
    if (log_path) {
        FILE *f = fopen(log_path, "a");
        if (f) {
            fprintf(f, "%d\t%ld\t%s\t%s\n", step, n, what, path ? path : "-");
            fclose(f);
        }
    }
    if ((kill_step == 0 && count_total == kill_n) || (kill_step > 0 && kill_step == step && n == kill_n))
        kill(getpid(), SIGKILL);
    pthread_mutex_unlock(&lock);
}
