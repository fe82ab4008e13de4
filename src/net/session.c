/*
 * Connection helpers shared by the protocol sessions; see session.h.
 */
#include "net/session.h"

#include <stdio.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "core/log.h"
#include "net/server.h"

size_t net_format_vline(char line[NET_LINE_MAX], const char *sid, const char *fmt, va_list ap)
{
    int n = vsnprintf(line, NET_LINE_MAX - 2, fmt, ap);
    if (n < 0)
        return 0;
    if (n > NET_LINE_MAX - 3)
        n = NET_LINE_MAX - 3;
    log_debug(sid, "event=reply text=\"%.*s\"", n > 200 ? 200 : n, line);
    line[n++] = '\r';
    line[n++] = '\n';
    return (size_t)n;
}

void net_send_vline(struct bufferevent *bev, const char *sid, const char *fmt, va_list ap)
{
    char line[NET_LINE_MAX];
    size_t n = net_format_vline(line, sid, fmt, ap);
    if (bev != NULL && n > 0)
        bufferevent_write(bev, line, n);
}

void net_write(struct bufferevent *bev, const void *data, size_t len)
{
    if (bev == NULL || len == 0)
        return;
    if (bufferevent_get_underlying(bev) == NULL && bufferevent_openssl_get_ssl(bev) == NULL &&
        evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        ssize_t n = send(bufferevent_getfd(bev), data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            data = (const char *)data + n;
            len -= (size_t)n;
        }
    }
    if (len > 0) /* the rest (or an error, which the bufferevent reports) */
        bufferevent_write(bev, data, len);
}

bool net_output_flushed(struct bufferevent *bev)
{
    for (struct bufferevent *b = bev; b != NULL; b = bufferevent_get_underlying(b))
        if (evbuffer_get_length(bufferevent_get_output(b)) > 0)
            return false;
    return true;
}

bool net_close_poll(struct bufferevent *bev, struct event *ev, int *polls)
{
    if (net_output_flushed(bev) || ++*polls >= NET_CLOSE_MAX_POLLS)
        return true;
    struct timeval tv = { 0, NET_CLOSE_POLL_MS * 1000 };
    evtimer_add(ev, &tv);
    return false;
}

void net_session_release(struct server *srv, const char *ip, struct bufferevent *bev,
                         struct event *const *events, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (events[i] != NULL)
            event_free(events[i]);
    if (bev != NULL)
        bufferevent_free(bev);
    server_conn_closed(srv, ip);
    server_session_end(srv);
}
