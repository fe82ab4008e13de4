/*
 * What the protocols' sessions (SMTP, POP3, IMAP) share about their
 * connection: writing a reply line, closing once the last reply has left,
 * and releasing the connection's resources.  The sessions themselves stay
 * in their protocols.
 */
#ifndef POSTEL_NET_SESSION_H
#define POSTEL_NET_SESSION_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct event;
struct server;

#define NET_LINE_MAX        2048   /* longest reply line written, CRLF included */
#define NET_CLOSE_POLL_MS   20     /* how often a closing session looks at its output */
#define NET_CLOSE_MAX_POLLS 250    /* ... and for how long (5 s) before it gives up */

/* Formats one reply line (truncated to NET_LINE_MAX - 2), logs it at debug
 * level under sid and writes it with CRLF to bev (nothing when bev is
 * NULL). */
void net_send_vline(struct bufferevent *bev, const char *sid, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Formats one reply line like net_send_vline into line; returns its
 * length, CRLF included (0 on a format error). */
size_t net_format_vline(char line[NET_LINE_MAX], const char *sid, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Writes to bev; a plain socket's (no TLS, no filter) straight to the
 * socket while nothing is queued in it, which saves the write event's
 * round through the loop (two epoll_ctl calls and a wake-up per reply);
 * what the socket does not take at once, and all through TLS, is queued
 * in bev as usual. */
void net_write(struct bufferevent *bev, const void *data, size_t len);

/* True when every byte written to bev has left for the socket: its own
 * output and that of every bufferevent under it (a TLS filter's socket). */
bool net_output_flushed(struct bufferevent *bev);

/* One step of closing after a last reply: true when the session should be
 * freed now (its output flushed, or NET_CLOSE_MAX_POLLS polls spent);
 * otherwise ev (the session's close timer) is armed for the next poll. */
bool net_close_poll(struct bufferevent *bev, struct event *ev, int *polls);

/* Frees a session's connection: the n events (NULLs skipped), the
 * bufferevent (and so the socket), and its per-IP and session counts. */
void net_session_release(struct server *srv, const char *ip, struct bufferevent *bev,
                         struct event *const *events, size_t n);
#endif
