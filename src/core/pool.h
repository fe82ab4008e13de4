/*
 * A pool of worker threads for work that must not run on an event loop:
 * password hashing, blocking DNS, SPF/DKIM evaluation.  A job's work()
 * runs on a pool thread; its done() then runs on the event base given
 * (the submitter's loop), so sessions never see another thread.
 */
#ifndef POSTEL_POOL_H
#define POSTEL_POOL_H
#include <event2/event.h>

typedef void pool_fn(void *arg);

/* Starts n threads.  0 or -1. */
int pool_start(int n);
/* Queues a job.  done may be NULL.  Never fails (allocation failure is fatal). */
void pool_submit(struct event_base *base, pool_fn *work, pool_fn *done, void *arg);
/* Stops the threads after the queued jobs ran. */
void pool_stop(void);
/* Runs fn(arg) on base's loop thread soon (thread-safe). */
void loop_call(struct event_base *base, pool_fn *fn, void *arg);
#endif
