/*
 * Connection helpers shared by the protocol sessions; see session.h.
 */
#include "net/session.h"

#include <stdio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/log.h"
#include "net/server.h"

void net_send_vline(struct bufferevent *bev, const char *sid, const char *fmt, va_list ap)
{
    char line[NET_LINE_MAX];
    int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 3)
        n = (int)sizeof(line) - 3;
    log_debug(sid, "event=reply text=\"%.*s\"", n > 200 ? 200 : n, line);
    line[n++] = '\r';
    line[n++] = '\n';
    if (bev != NULL)
        bufferevent_write(bev, line, (size_t)n);
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
