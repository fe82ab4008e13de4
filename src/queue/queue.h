/*
 * The outbound queue: delivery of queued messages to other servers (MX
 * lookup, SMTP client, retries), DSN bounces, and local injection of
 * generated messages.  See docs/outbound.md.
 *
 * The queue runs on its own thread with its own event loop.  The store is
 * the only state that matters: the scheduler re-reads due entries from it
 * every second (and soon after a new queue file appears), so the CLI
 * (postel queue flush|hold|release|delete, postel sendmail) acts on a
 * running server by writing the store, with no signal.
 */
#ifndef POSTEL_QUEUE_H
#define POSTEL_QUEUE_H
#include <stdbool.h>
#include <stddef.h>

struct server;
struct store;

/* Starts the scheduler thread for srv (its store and configuration; the
 * configuration is re-read from srv->cfg for each delivery, so SIGHUP
 * applies).  Call once, after the store is open.  0, or -1 (logged). */
int queue_start(struct server *srv);
/* Stops the scheduler: no new delivery starts; transactions in flight get
 * a short grace period (QUEUE_STOP_GRACE_MS), then connections are cut
 * (those messages are retried at the next start).  Blocks until the
 * thread has exited.  Safe to call when queue_start() was not called or
 * failed.  Call before store_close(). */
void queue_stop(void);
/* Asks the scheduler to look for due entries now (thread-safe, cheap; a
 * no-op when the queue is not running).  The SMTP server may call it after
 * committing a message with remote recipients. */
void queue_wakeup(void);

/* Injects a generated message (bounces, reports): the envelope sender
 * (often "" for the null sender) and recipients, and the message (CRLF
 * lines, complete with header).  Each recipient is resolved by the store:
 * local ones (accounts, aliases) are filed into their mailbox at once,
 * others are queued.  Blocks until the message is durable (do not call it
 * from the store's commit thread).  id_r (may be NULL) gets the store id.
 * Returns 0; -1 on a store error (store_error_text()); -2 when no
 * recipient can take it (unknown local users). */
int queue_inject(struct store *st, const char *sender, const char *const *rcpts, size_t n,
                 const char *msg, size_t len, char *id_r, size_t id_size);

/* Callback of queue_inject_async(): runs on the store's commit thread
 * with result 0 and the store id, or -1 and the error text. */
typedef void queue_inject_fn(void *arg, int result, const char *id, const char *error);
/* The same without blocking; smtputf8 marks the message as needing
 * SMTPUTF8.  Returns 0 (done will run) or -1/-2 as above (done will not). */
int queue_inject_async(struct store *st, const char *sender, const char *const *rcpts, size_t n,
                       const char *msg, size_t len, bool smtputf8, queue_inject_fn *done,
                       void *arg);
#endif
