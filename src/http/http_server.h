/*
 * A small HTTP/1.1 server for the http role (ROLE_HTTP): connections on
 * bufferevents on the worker loops, the bounded parser of http_parse.h, a
 * router of method + path patterns, JSON replies (jansson), deferred
 * replies for work done off the loop, and server-sent events.  Generic:
 * the capture API (capture_api.c) registers its routes here; `postel
 * serve` can register admin or metrics routes the same way.
 *
 * Threads: handlers run on the connection's worker loop.  A deferred
 * exchange is finished with http_finish() on that same loop (use
 * loop_call(http_exchange_base(x), ...) from elsewhere).
 * http_sse_broadcast() may be called from any thread.
 */
#ifndef POSTEL_HTTP_SERVER_H
#define POSTEL_HTTP_SERVER_H
#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "http/http_parse.h"

struct http_conn;
struct store;

#define HTTP_ROUTE_PARAMS 4
#define HTTP_RESP_HEADERS 16
#define HTTP_IDLE_TIMEOUT 60          /* seconds a keep-alive connection may idle */
#define HTTP_SSE_PING 20              /* seconds between SSE keep-alive comments */
#define HTTP_SSE_QUEUE_MAX (1u << 20) /* unsent SSE bytes before dropping the client */

/* One request and its reply. */
struct http_exchange {
    struct http_conn *conn;
    const struct http_request *req;
    const char *params[HTTP_ROUTE_PARAMS]; /* "{...}" segments of the route, decoded */
    int n_params;
    struct store *store;                   /* the server's store */
    const char *peer_ip;
    void *route_arg;                       /* the arg given to http_route() */
    /* reply being built */
    int status;
    struct evbuffer *body;
    char *resp_headers[HTTP_RESP_HEADERS]; /* "Name: value", malloc'ed */
    int n_resp_headers;
    bool deferred, finished, sse;
};

typedef void http_handler_fn(struct http_exchange *x);

/* Registers a route before server_run.  method: "GET", "POST", ... or "*";
 * pattern: "/api/v1/message/{}/part/{}" where "{}" matches one non-empty
 * segment (passed in x->params) and a final "*" matches any rest (also
 * passed).  The first matching route wins; a path that matches only with
 * another method answers 405. */
void http_route(const char *method, const char *pattern, http_handler_fn *fn, void *arg);
/* Registers the http protocol for ROLE_HTTP with the net layer. */
void http_server_register(void);

/* ---- replies ---- */
/* Adds a response header (copied).  Content-Length, Date, Connection and
 * the security headers are added by the server. */
void http_header(struct http_exchange *x, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Completes the exchange with status and body (copied); ctype may be NULL
 * when there is no body. */
void http_reply(struct http_exchange *x, int status, const char *ctype, const void *body,
                size_t len);
/* Status with a JSON body (the reference to json is stolen). */
void http_reply_json(struct http_exchange *x, int status, json_t *json);
/* Status with a text/plain body (Mailpit answers errors in plain text). */
void http_reply_text(struct http_exchange *x, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Reply with x->body as filled by the handler. */
void http_reply_body(struct http_exchange *x, int status, const char *ctype);

/* Marks the exchange as answered later: the handler returns without
 * replying and someone calls one of the http_reply* functions on the
 * connection's loop.  If the client went away meanwhile, the reply is
 * dropped silently and the exchange freed. */
void http_defer(struct http_exchange *x);
struct event_base *http_exchange_base(struct http_exchange *x);

/* ---- server-sent events ---- */
/* Turns the exchange into an event stream (text/event-stream) that
 * receives every later http_sse_broadcast() until the client leaves. */
void http_sse_start(struct http_exchange *x);
/* Sends "event: NAME\ndata: DATA\n\n" to every stream (DATA must not
 * contain newlines: JSON from json_dumps(JSON_COMPACT) does not).
 * Any thread. */
void http_sse_broadcast(const char *event, const char *data);
/* How many clients are listening to the event stream now. */
int http_sse_clients(void);

/* Status reason phrase ("Not Found"). */
const char *http_status_text(int status);
#endif
