/*
 * SMTP server sessions for the smtp (MX), submission (STARTTLS + AUTH) and
 * submissions (implicit TLS + AUTH) roles.  Registers itself with the net
 * layer; see docs/ARCHITECTURE.md for the life of a message.
 */
#ifndef POSTEL_SMTP_SERVER_H
#define POSTEL_SMTP_SERVER_H
#include <stdbool.h>
#include <stdint.h>

/* Registers the SMTP protocol for its three roles. */
void smtp_server_register(void);

/* Called on the session's loop thread after each message is durably
 * stored (capture mode uses it for live updates and pruning).  Set before
 * server_run; queue_id is the id given in the 250 reply. */
/* Called on the session's loop after a message was stored (queue_id) with
 * the size of the message as received. */
typedef void smtp_commit_hook_fn(void *arg, const char *queue_id, uint64_t size);
void smtp_server_set_commit_hook(smtp_commit_hook_fn *fn, void *arg);
/* Capture mode with a list of credentials: AUTH succeeds only when fn
 * accepts user and password (called on the pool), and MAIL needs AUTH.
 * Without it, capture mode accepts any AUTH and mail without AUTH. */
typedef bool smtp_capture_auth_fn(const char *user, const char *pass);
void smtp_server_set_capture_auth(smtp_capture_auth_fn *fn);
#endif
