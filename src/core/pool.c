#include "core/pool.h"

#include <pthread.h>
#include <stdlib.h>

#include "core/log.h"

struct job {
    struct job *next;
    struct event_base *base;
    pool_fn *work, *done;
    void *arg;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct job *head, *tail;
static pthread_t *threads;
static int n_threads;
static int stopping;

struct hop {
    pool_fn *fn;
    void *arg;
};

static void hop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hop *h = arg;
    h->fn(h->arg);
    free(h);
}

void loop_call(struct event_base *base, pool_fn *fn, void *arg)
{
    struct hop *h = malloc(sizeof(*h));
    if (h == NULL)
        fatal("out of memory");
    h->fn = fn;
    h->arg = arg;
    struct timeval zero = { 0, 0 };
    if (event_base_once(base, -1, EV_TIMEOUT, hop_cb, h, &zero) < 0)
        fatal("event_base_once failed");
}

static void *pool_main(void *unused)
{
    for (;;) {
        pthread_mutex_lock(&lock);
        while (head == NULL && !stopping)
            pthread_cond_wait(&cond, &lock);
        struct job *j = head;
        if (j == NULL) {
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        head = j->next;
        if (head == NULL)
            tail = NULL;
        pthread_mutex_unlock(&lock);
        j->work(j->arg);
        if (j->done != NULL)
            loop_call(j->base, j->done, j->arg);
        free(j);
    }
}

int pool_start(int n)
{
    threads = calloc((size_t)n, sizeof(*threads));
    if (threads == NULL)
        return -1;
    for (int i = 0; i < n; i++) {
        if (pthread_create(&threads[i], NULL, pool_main, NULL) != 0)
            return -1;
        n_threads++;
    }
    return 0;
}

void pool_submit(struct event_base *base, pool_fn *work, pool_fn *done, void *arg)
{
    struct job *j = malloc(sizeof(*j));
    if (j == NULL)
        fatal("out of memory");
    *j = (struct job){ .base = base, .work = work, .done = done, .arg = arg };
    pthread_mutex_lock(&lock);
    if (tail)
        tail->next = j;
    else
        head = j;
    tail = j;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
}

void pool_stop(void)
{
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n_threads; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    threads = NULL;
    n_threads = 0;
}
