/*
 * The http role: one connection = one bufferevent on a worker loop, read
 * through the bounded parser, one request handled at a time (pipelined
 * requests wait in the input buffer), replies written whole.
 *
 * Connection states: reading a request, handling one (reading paused),
 * writing the last reply before a close, streaming events (SSE).  A
 * connection whose peer left while a deferred exchange is pending is kept
 * ("dead", socket closed) until that exchange finishes, so handlers never
 * see freed memory.
 */
#include "http/http_server.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/pool.h"
#include "core/util.h"
#include "net/server.h"

#define HTTP_ROUTES_MAX 96
#define HTTP_SSE_BASES_MAX 256
#define HTTP_LINGER_SECONDS 2
#define HTTP_DEFAULT_CSP "default-src 'none'; frame-ancestors 'none'; sandbox"

struct http_route_def {
    char method[16];
    char pattern[160];
    http_handler_fn *fn;
    void *arg;
};

static struct http_route_def routes[HTTP_ROUTES_MAX];
static int n_routes;

struct http_conn {
    struct bufferevent *bev;
    struct event *timer;
    struct net_conn *nc;
    struct server *srv;
    struct http_parser parser;
    struct http_exchange *x;        /* the request being handled */
    bool handling, close_after_write, shut, dead, sse, continue_sent, draining;
    struct http_conn *prev, *next;  /* this thread's connections */
    char params_buf[HTTP_ROUTE_PARAMS][512];
};

static __thread struct http_conn *conns_head;
static pthread_mutex_t sse_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int sse_clients;     /* connections in event-stream mode */
static struct event_base *sse_bases[HTTP_SSE_BASES_MAX];
static int n_sse_bases;

static void conn_free(struct http_conn *c);
static void conn_process(struct http_conn *c);

void http_route(const char *method, const char *pattern, http_handler_fn *fn, void *arg)
{
    if (n_routes >= HTTP_ROUTES_MAX)
        fatal("http: too many routes");
    struct http_route_def *r = &routes[n_routes++];
    str_copy(r->method, method, sizeof(r->method));
    str_copy(r->pattern, pattern, sizeof(r->pattern));
    r->fn = fn;
    r->arg = arg;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* ---- routing ---- */

/* Matches path against pattern, filling params.  Returns true on a match. */
static bool route_match(const char *pattern, const char *path, struct http_conn *c,
                        struct http_exchange *x)
{
    const char *p = pattern, *s = path;
    x->n_params = 0;
    while (*p) {
        if (p[0] == '*' && p[1] == '\0') {
            if (x->n_params < HTTP_ROUTE_PARAMS) {
                str_copy(c->params_buf[x->n_params], s, sizeof(c->params_buf[0]));
                x->params[x->n_params] = c->params_buf[x->n_params];
                x->n_params++;
            }
            return true;
        }
        if (p[0] == '{' && p[1] == '}') {
            size_t n = strcspn(s, "/");
            if (n == 0 || x->n_params >= HTTP_ROUTE_PARAMS || n >= sizeof(c->params_buf[0]))
                return false;
            memcpy(c->params_buf[x->n_params], s, n);
            c->params_buf[x->n_params][n] = '\0';
            x->params[x->n_params] = c->params_buf[x->n_params];
            x->n_params++;
            s += n;
            p += 2;
            continue;
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    return *s == '\0';
}

static bool method_matches(const char *route_method, const char *method)
{
    if (strcmp(route_method, "*") == 0 || strcmp(route_method, method) == 0)
        return true;
    return strcmp(route_method, "GET") == 0 && strcmp(method, "HEAD") == 0;
}

static void dispatch(struct http_conn *c, struct http_exchange *x)
{
    bool path_seen = false;
    for (int i = 0; i < n_routes; i++) {
        if (!route_match(routes[i].pattern, x->req->path, c, x))
            continue;
        if (!method_matches(routes[i].method, x->req->method)) {
            path_seen = true;
            continue;
        }
        x->route_arg = routes[i].arg;
        routes[i].fn(x);
        return;
    }
    x->n_params = 0;
    if (path_seen)
        http_reply_text(x, 405, "method not allowed");
    else
        http_reply_text(x, 404, "not found");
}

/* ---- replies ---- */

void http_header(struct http_exchange *x, const char *name, const char *fmt, ...)
{
    if (x->n_resp_headers >= HTTP_RESP_HEADERS)
        return;
    char value[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    /* header injection: no CR/LF in what we send */
    for (char *v = value; *v; v++)
        if (*v == '\r' || *v == '\n')
            *v = ' ';
    char *h = NULL;
    if (asprintf(&h, "%s: %s", name, value) < 0)
        return;
    x->resp_headers[x->n_resp_headers++] = h;
}

static bool has_resp_header(const struct http_exchange *x, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < x->n_resp_headers; i++)
        if (strncasecmp(x->resp_headers[i], name, n) == 0 && x->resp_headers[i][n] == ':')
            return true;
    return false;
}

static void exchange_free(struct http_exchange *x)
{
    for (int i = 0; i < x->n_resp_headers; i++)
        free(x->resp_headers[i]);
    if (x->body)
        evbuffer_free(x->body);
    free(x);
}

static void write_head(struct http_conn *c, struct http_exchange *x, size_t body_len,
                       bool keep_alive)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: postel\r\n", x->status,
                        http_status_text(x->status), date);
    for (int i = 0; i < x->n_resp_headers; i++)
        evbuffer_add_printf(out, "%s\r\n", x->resp_headers[i]);
    if (!has_resp_header(x, "Content-Security-Policy"))
        evbuffer_add_printf(out, "Content-Security-Policy: %s\r\n", HTTP_DEFAULT_CSP);
    evbuffer_add_printf(out, "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n");
    if (!has_resp_header(x, "Cache-Control"))
        evbuffer_add_printf(out, "Cache-Control: no-store\r\n");
    if (!x->sse)
        evbuffer_add_printf(out, "Content-Length: %zu\r\n", body_len);
    evbuffer_add_printf(out, "Connection: %s\r\n\r\n", keep_alive ? "keep-alive" : "close");
}

/* Sends the reply of x and moves the connection on (next request, or
 * close after the write). */
static void exchange_send(struct http_exchange *x)
{
    struct http_conn *c = x->conn;
    x->finished = true;
    if (c->dead) {
        c->x = NULL;
        exchange_free(x);
        conn_free(c);
        return;
    }
    bool keep = c->parser.req.keep_alive && !c->draining && x->status < 500 && x->status != 400 &&
                x->status != 413 && x->status != 431 && x->status != 414;
    size_t len = x->body ? evbuffer_get_length(x->body) : 0;
    write_head(c, x, len, keep);
    if (len > 0 && strcmp(c->parser.req.method, "HEAD") != 0)
        evbuffer_add_buffer(bufferevent_get_output(c->bev), x->body);
    log_debug(c->nc->sid, "event=http_request method=%s path=%s status=%d bytes=%zu",
              c->parser.req.method, c->parser.req.path, x->status, len);
    c->x = NULL;
    exchange_free(x);
    c->handling = false;
    http_parser_reset(&c->parser);
    if (!keep) {
        /* lingering close: keep reading (and discarding) what the client
         * still sends, so our reply is not lost to a TCP reset */
        c->close_after_write = true;
        bufferevent_enable(c->bev, EV_READ);
        return;
    }
    struct timeval tv = { HTTP_IDLE_TIMEOUT, 0 };
    event_add(c->timer, &tv);
    bufferevent_enable(c->bev, EV_READ);
    conn_process(c);
}

void http_reply_body(struct http_exchange *x, int status, const char *ctype)
{
    if (x->finished)
        return;
    x->status = status;
    if (ctype && !has_resp_header(x, "Content-Type"))
        http_header(x, "Content-Type", "%s", ctype);
    if (x->conn->handling && !x->deferred) {
        /* still inside the handler: sent when it returns */
        x->finished = true;
        return;
    }
    exchange_send(x);
}

void http_reply(struct http_exchange *x, int status, const char *ctype, const void *body,
                size_t len)
{
    if (x->body == NULL)
        x->body = evbuffer_new();
    else
        evbuffer_drain(x->body, evbuffer_get_length(x->body));
    if (len > 0)
        evbuffer_add(x->body, body, len);
    http_reply_body(x, status, ctype);
}

void http_reply_json(struct http_exchange *x, int status, json_t *json)
{
    char *s = json ? json_dumps(json, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(10)) : NULL;
    if (json)
        json_decref(json);
    if (s == NULL) {
        http_reply_text(x, 500, "out of memory");
        return;
    }
    http_reply(x, status, "application/json; charset=utf-8", s, strlen(s));
    free(s);
}

void http_reply_text(struct http_exchange *x, int status, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(buf) - 1)
        n = (int)sizeof(buf) - 2;
    /* API errors are JSON: {"Error": "..."} */
    if (status >= 400 && x->req && strncmp(x->req->path, "/api/", 5) == 0) {
        json_t *j = json_pack("{s:s%}", "Error", buf, (size_t)n);
        char *js = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        json_decref(j);
        if (js != NULL) {
            http_reply(x, status, "application/json; charset=utf-8", js, strlen(js));
            free(js);
            return;
        }
    }
    buf[n++] = '\n';
    http_reply(x, status, "text/plain; charset=utf-8", buf, (size_t)n);
}

void http_defer(struct http_exchange *x)
{
    x->deferred = true;
}

struct event_base *http_exchange_base(struct http_exchange *x)
{
    return x->conn->nc->worker->base;
}

/* ---- server-sent events ---- */

struct sse_msg {
    atomic_int refs;
    size_t len;
    char text[];
};

static void sse_register_base(struct event_base *base)
{
    pthread_mutex_lock(&sse_lock);
    bool found = false;
    for (int i = 0; i < n_sse_bases; i++)
        if (sse_bases[i] == base)
            found = true;
    if (!found && n_sse_bases < HTTP_SSE_BASES_MAX)
        sse_bases[n_sse_bases++] = base;
    pthread_mutex_unlock(&sse_lock);
}

static void conn_link(struct http_conn *c)
{
    c->prev = NULL;
    c->next = conns_head;
    if (conns_head)
        conns_head->prev = c;
    conns_head = c;
}

static void conn_unlink(struct http_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (conns_head == c)
        conns_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

int http_sse_clients(void)
{
    return atomic_load(&sse_clients);
}

void http_sse_start(struct http_exchange *x)
{
    struct http_conn *c = x->conn;
    x->sse = true;
    x->status = 200;
    http_header(x, "Content-Type", "text/event-stream; charset=utf-8");
    http_header(x, "X-Accel-Buffering", "no");
    write_head(c, x, 0, true);
    evbuffer_add_printf(bufferevent_get_output(c->bev), "retry: 2000\n: connected\n\n");
    x->finished = true;
    c->x = NULL;
    exchange_free(x);
    c->handling = false;
    c->sse = true;
    atomic_fetch_add(&sse_clients, 1);
    sse_register_base(c->nc->worker->base);
    bufferevent_enable(c->bev, EV_READ);
    struct timeval tv = { HTTP_SSE_PING, 0 };
    event_add(c->timer, &tv);
    /* input after this is ignored (drained) until the client closes */
}

static void sse_deliver(void *arg)
{
    struct sse_msg *m = arg;
    for (struct http_conn *c = conns_head, *next; c; c = next) {
        next = c->next;
        if (!c->sse || c->dead)
            continue;
        struct evbuffer *out = bufferevent_get_output(c->bev);
        if (evbuffer_get_length(out) > HTTP_SSE_QUEUE_MAX) {
            log_warn(c->nc->sid, "event=sse_dropped reason=slow_client");
            conn_free(c);
            continue;
        }
        evbuffer_add(out, m->text, m->len);
    }
    if (atomic_fetch_sub(&m->refs, 1) == 1)
        free(m);
}

void http_sse_broadcast(const char *event, const char *data)
{
    size_t n = strlen(event) + strlen(data) + 32;
    struct sse_msg *m = malloc(sizeof(*m) + n);
    if (m == NULL)
        return;
    int len = snprintf(m->text, n, "event: %s\ndata: %s\n\n", event, data);
    m->len = len > 0 ? (size_t)len : 0;
    pthread_mutex_lock(&sse_lock);
    atomic_init(&m->refs, n_sse_bases + 1);
    for (int i = 0; i < n_sse_bases; i++)
        loop_call(sse_bases[i], sse_deliver, m);
    pthread_mutex_unlock(&sse_lock);
    if (atomic_fetch_sub(&m->refs, 1) == 1)
        free(m);
}

/* ---- connection ---- */

static void conn_free(struct http_conn *c)
{
    if (c->x != NULL && c->x->deferred && !c->x->finished) {
        /* a deferred handler still owns the exchange: keep c until it ends */
        if (!c->dead) {
            c->dead = true;
            bufferevent_free(c->bev);
            c->bev = NULL;
            event_del(c->timer);
        }
        return;
    }
    conn_unlink(c);
    if (c->sse)
        atomic_fetch_sub(&sse_clients, 1);
    if (c->x)
        exchange_free(c->x);
    if (c->bev)
        bufferevent_free(c->bev);
    event_free(c->timer);
    http_parser_reset(&c->parser);
    server_conn_closed(c->srv, c->nc->ip);
    server_session_end(c->srv);
    free(c->nc);
    free(c);
}

static void reply_error(struct http_conn *c, int status, const char *text)
{
    struct http_exchange *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        conn_free(c);
        return;
    }
    x->conn = c;
    x->req = &c->parser.req;
    c->x = x;
    c->parser.req.keep_alive = false;
    log_info(c->nc->sid, "event=http_bad_request ip=%s status=%d reason=\"%s\"", c->nc->ip, status,
             text);
    http_reply_text(x, status, "%s", text);
}

static void handle_request(struct http_conn *c)
{
    struct http_exchange *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        conn_free(c);
        return;
    }
    x->conn = c;
    x->req = &c->parser.req;
    x->store = c->srv->store;
    x->peer_ip = c->nc->ip;
    c->x = x;
    c->handling = true;
    event_del(c->timer);
    bufferevent_disable(c->bev, EV_READ);
    dispatch(c, x);
    if (c->sse || c->x != x)
        return;
    c->handling = false;
    if (x->finished)
        exchange_send(x);
    else if (!x->deferred)
        http_reply_text(x, 500, "handler gave no reply");
}

/* Feeds buffered input to the parser and handles complete requests. */
static void conn_process(struct http_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (c->close_after_write) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    while (!c->handling && !c->close_after_write && !c->dead) {
        if (c->sse) {
            evbuffer_drain(in, evbuffer_get_length(in));
            return;
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            return;
        size_t used = 0;
        enum http_parse_state st = http_parser_feed(&c->parser, v.iov_base, v.iov_len, &used);
        evbuffer_drain(in, used);
        if (st == HTTP_P_ERROR) {
            reply_error(c, c->parser.error_status, c->parser.error_text);
            return;
        }
        if (st == HTTP_P_BODY && c->parser.req.expect_continue && !c->continue_sent) {
            evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n");
            c->continue_sent = true;
        }
        if (st == HTTP_P_DONE) {
            c->continue_sent = false;
            handle_request(c);
        }
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    conn_process(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct http_conn *c = arg;
    if (c->close_after_write && !c->shut && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        c->shut = true;
        shutdown(bufferevent_getfd(bev), SHUT_WR);
        struct timeval tv = { HTTP_LINGER_SECONDS, 0 };
        event_add(c->timer, &tv);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct http_conn *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        conn_free(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    if (c->sse) {
        evbuffer_add_printf(bufferevent_get_output(c->bev), ": ping\n\n");
        struct timeval tv = { HTTP_SSE_PING, 0 };
        event_add(c->timer, &tv);
        return;
    }
    if (c->handling && !c->close_after_write)
        return;
    conn_free(c);
}

static void http_accept(struct net_conn *nc)
{
    struct http_conn *c = calloc(1, sizeof(*c));
    struct event_base *base = nc->worker->base;
    if (c == NULL) {
        close(nc->fd);
        server_conn_closed(nc->srv, nc->ip);
        free(nc);
        return;
    }
    c->nc = nc;
    c->srv = nc->srv;
    http_parser_init(&c->parser, HTTP_BODY_MAX_DEFAULT);
    c->bev = bufferevent_socket_new(base, nc->fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = event_new(base, -1, 0, on_timer, c);
    if (c->bev == NULL || c->timer == NULL) {
        if (c->bev)
            bufferevent_free(c->bev);
        else
            close(nc->fd);
        if (c->timer)
            event_free(c->timer);
        server_conn_closed(nc->srv, nc->ip);
        free(nc);
        free(c);
        return;
    }
    server_session_begin(c->srv);
    conn_link(c);
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 64 * 1024);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    struct timeval tv = { HTTP_IDLE_TIMEOUT, 0 };
    event_add(c->timer, &tv);
}

/* Draining: event streams and idle keep-alive connections close now; a
 * request being handled finishes and then closes. */
static void http_drain(struct worker *w)
{
    for (struct http_conn *c = conns_head, *next; c; c = next) {
        next = c->next;
        c->draining = true;
        if (c->sse || (!c->handling && !c->dead && !c->close_after_write))
            conn_free(c);
    }
}

static const struct proto_ops http_ops = {
    .accept = http_accept,
    .busy_reply = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    .drain = http_drain,
};

void http_server_register(void)
{
    server_register(ROLE_HTTP, &http_ops);
}
