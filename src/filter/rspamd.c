/*
 * Rspamd client: one HTTP/1.1 POST of the message to the normal worker's
 * /checkv2 endpoint with the envelope in request headers (IP, Helo, From,
 * Rcpt, User, Queue-Id, Hostname), and the JSON reply parsed with jansson.
 *
 * Blocking I/O with poll() under one deadline for connect, send and
 * receive: the call runs on a pool thread (filter.h), and a blocking
 * client is shorter and easier to trust than a second event loop.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util.h"
#include "filter/filter_int.h"

#define RSPAMD_REPLY_MAX (1u << 20)
#define RSPAMD_HEAD_MAX  (64u * 1024)

static int fail(char *err, size_t errsize, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errsize, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errsize > 0)
        vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- URL ---- */

int filter_url_parse(const char *url, struct filter_url *u)
{
    memset(u, 0, sizeof(*u));
    const char *p = str_case_prefix(url, "http://");
    if (p == NULL)
        return -1;
    const char *host = p, *host_end;
    if (*p == '[') {
        host = p + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL)
            return -1;
        p = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        p = host_end;
    }
    size_t hl = (size_t)(host_end - host);
    if (hl == 0 || hl >= sizeof(u->host))
        return -1;
    memcpy(u->host, host, hl);
    for (size_t i = 0; i < hl; i++)
        if (!isalnum((unsigned char)host[i]) && !strchr(".-_:", host[i]))
            return -1;
    u->port = 80;
    if (*p == ':') {
        char *end;
        if (!isdigit((unsigned char)p[1]))
            return -1;
        long port = strtol(p + 1, &end, 10);
        if (port < 1 || port > 65535 || (*end != '\0' && *end != '/'))
            return -1;
        u->port = (int)port;
        p = end;
    }
    if (*p != '\0' && *p != '/')
        return -1;
    for (const char *c = p; *c; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
            return -1;
    if (str_copy(u->path, p, sizeof(u->path)) >= sizeof(u->path))
        return -1;
    return 0;
}

/* The request path: the URL's own when it names /checkv2, else
 * URL path + "/checkv2" (a proxy prefix is kept). */
static void check_path(const struct filter_url *u, char *buf, size_t size)
{
    size_t pl = strlen(u->path);
    if (pl >= 8 && strcmp(u->path + pl - 8, "/checkv2") == 0) {
        str_copy(buf, u->path, size);
        return;
    }
    while (pl > 0 && u->path[pl - 1] == '/')
        pl--;
    snprintf(buf, size, "%.*s/checkv2", (int)pl, u->path);
}

/* ---- HTTP response ---- */

static const char *find_crlf(const char *p, const char *end)
{
    for (; p + 1 < end; p++)
        if (p[0] == '\r' && p[1] == '\n')
            return p;
    return NULL;
}

/* Checks a chunked body [p, end) is complete; decodes it in place when
 * decode.  Returns the decoded length, -1 malformed, -2 incomplete. */
static long chunked(char *p, char *end, bool decode)
{
    char *start = p, *out = p;
    for (;;) {
        const char *eol = find_crlf(p, end);
        if (eol == NULL)
            return -2;
        char *stop;
        if (!isxdigit((unsigned char)*p))
            return -1;
        errno = 0;
        unsigned long n = strtoul(p, &stop, 16);
        if (errno || stop > eol || (stop < eol && *stop != ';' && *stop != ' ') ||
            n > RSPAMD_REPLY_MAX)
            return -1;
        p = (char *)eol + 2;
        if (n == 0) {
            /* trailer fields, then an empty line */
            for (;;) {
                const char *t = find_crlf(p, end);
                if (t == NULL)
                    return -2;
                if (t == p)
                    return (long)(out - start);
                p = (char *)t + 2;
            }
        }
        if ((size_t)(end - p) < n + 2)
            return -2;
        if (p[n] != '\r' || p[n + 1] != '\n')
            return -1;
        if (decode)
            memmove(out, p, n);
        out += n;
        p += n + 2;
    }
}

int filter_http_response(char *resp, size_t len, bool eof, char **body_r, size_t *body_len_r)
{
    char *end = resp + len;
    const char *line_end = find_crlf(resp, end);
    if (line_end == NULL)
        return len > RSPAMD_HEAD_MAX || eof ? -1 : -2;
    if (len < 12 || strncmp(resp, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)resp[9]) ||
        !isdigit((unsigned char)resp[10]) || !isdigit((unsigned char)resp[11]) ||
        resp[8] != ' ')
        return -1;
    int status = (resp[9] - '0') * 100 + (resp[10] - '0') * 10 + (resp[11] - '0');
    long content_length = -1;
    bool is_chunked = false;
    char *p = (char *)line_end + 2;
    for (;;) {
        const char *eol = find_crlf(p, end);
        if (eol == NULL)
            return len > RSPAMD_HEAD_MAX || eof ? -1 : -2;
        if (eol == p) {
            p += 2;
            break;
        }
        const char *v;
        if ((v = str_case_prefix(p, "Content-Length:")) != NULL && v < eol) {
            while (*v == ' ' || *v == '\t')
                v++;
            char *stop;
            errno = 0;
            content_length = isdigit((unsigned char)*v) ? strtol(v, &stop, 10) : -1;
            if (content_length < 0 || errno || (stop != eol && *stop != ' ' && *stop != '\t'))
                return -1;
        } else if ((v = str_case_prefix(p, "Transfer-Encoding:")) != NULL && v < eol) {
            while (*v == ' ' || *v == '\t')
                v++;
            is_chunked = strncasecmp(v, "chunked", 7) == 0;
        }
        p = (char *)eol + 2;
    }
    if (is_chunked) {
        long n = chunked(p, end, false);
        if (n == -2 && !eof)
            return -2;
        if (n < 0)
            return -1;
        *body_r = p;
        *body_len_r = (size_t)chunked(p, end, true);
        return status;
    }
    size_t avail = (size_t)(end - p);
    if (content_length >= 0) {
        if (avail < (size_t)content_length)
            return eof ? -1 : -2;
        avail = (size_t)content_length;
    } else if (!eof) {
        return -2;
    }
    *body_r = p;
    *body_len_r = avail;
    return status;
}

/* ---- JSON reply ---- */

static void copy_clean(char *dst, size_t size, const char *src)
{
    size_t o = 0;
    for (; src && *src && o + 1 < size; src++) {
        unsigned char ch = (unsigned char)*src;
        dst[o++] = ch >= 0x20 && ch != 0x7f ? (char)ch : ' ';
    }
    if (size)
        dst[o] = '\0';
}

static int sym_cmp(const void *a, const void *b)
{
    const struct filter_rule_hit *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return strcmp(x->name, y->name);
}

/* Keeps the highest-scoring symbols (non-zero scores only). */
static void parse_symbols(json_t *syms, struct filter_rspamd_result *r)
{
    const char *key;
    json_t *val;
    struct filter_rule_hit all[256];
    int n = 0;
    json_object_foreach(syms, key, val) {
        json_t *sc = json_is_object(val) ? json_object_get(val, "score") : NULL;
        double s = json_is_number(sc) ? json_number_value(sc) : 0;
        if (s == 0 || !isfinite(s) || n >= (int)(sizeof(all) / sizeof(all[0])))
            continue;
        copy_clean(all[n].name, sizeof(all[n].name), key);
        all[n].score = s;
        all[n].detail[0] = '\0';
        n++;
    }
    qsort(all, (size_t)n, sizeof(all[0]), sym_cmp);
    r->n_syms = n < FILTER_RSPAMD_SYMS_MAX ? n : FILTER_RSPAMD_SYMS_MAX;
    memcpy(r->syms, all, (size_t)r->n_syms * sizeof(all[0]));
}

int filter_rspamd_parse(const char *json, size_t len, struct filter_rspamd_result *r)
{
    memset(r, 0, sizeof(*r));
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return -1;
    int rc = -1;
    json_t *action = json_object_get(root, "action");
    if (!json_is_object(root) || !json_is_string(action))
        goto out;
    copy_clean(r->action, sizeof(r->action), json_string_value(action));
    json_t *v = json_object_get(root, "score");
    if (json_is_number(v))
        r->score = json_number_value(v);
    v = json_object_get(root, "required_score");
    if (json_is_number(v))
        r->required_score = json_number_value(v);
    v = json_object_get(root, "subject");
    if (json_is_string(v))
        copy_clean(r->subject, sizeof(r->subject), json_string_value(v));
    v = json_object_get(root, "messages");
    if (json_is_object(v)) {
        json_t *m = json_object_get(v, "smtp_message");
        if (json_is_string(m)) {
            /* it becomes part of an SMTP reply: printable ASCII only */
            const char *s = json_string_value(m);
            size_t o = 0;
            for (; *s && o + 1 < sizeof(r->message); s++)
                r->message[o++] = (unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f ? *s : ' ';
            r->message[o] = '\0';
        }
    }
    v = json_object_get(root, "symbols");
    if (json_is_object(v))
        parse_symbols(v, r);
    if (!isfinite(r->score))
        r->score = 0;
    if (!isfinite(r->required_score))
        r->required_score = 0;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* ---- the request ---- */

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = now_mono_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
    struct pollfd pfd = { .fd = fd, .events = events };
    for (;;) {
        int ms = remaining_ms(deadline);
        if (ms == 0)
            return -1;
        int n = poll(&pfd, 1, ms);
        if (n > 0)
            return 0;
        if (n == 0 || errno != EINTR)
            return -1;
    }
}

static int connect_to(const struct filter_url *u, uint64_t deadline, char *err, size_t errsize)
{
    char port[8];
    snprintf(port, sizeof(port), "%d", u->port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai, *a;
    int gai = getaddrinfo(u->host, port, &hints, &ai);
    if (gai != 0)
        return fail(err, errsize, "%s: %s", u->host, gai_strerror(gai));
    int fd = -1;
    for (a = ai; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        int soerr = errno;
        if (soerr == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == 0) {
            socklen_t sl = sizeof(soerr);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                break;
        } else if (soerr == EINPROGRESS) {
            soerr = ETIMEDOUT;
        }
        fail(err, errsize, "connect %s:%d: %s", u->host, u->port, strerror(soerr));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static int send_all(int fd, const char *p, size_t len, uint64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLOUT, deadline) < 0)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

/* Adds "Name: value\r\n" with value cleaned of control characters. */
static void add_header(struct strbuf *sb, const char *name, const char *value)
{
    if (value == NULL || value[0] == '\0')
        return;
    char clean[1024];
    copy_clean(clean, sizeof(clean), value);
    strbuf_printf(sb, "%s: %s\r\n", name, clean);
}

static int build_request(const struct filter_url *u, const struct filter_rspamd_req *req,
                         struct strbuf *sb)
{
    char path[300];
    check_path(u, path, sizeof(path));
    bool v6 = strchr(u->host, ':') != NULL;
    strbuf_printf(sb, "POST %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nConnection: close\r\n"
                      "User-Agent: postel\r\nContent-Length: %zu\r\n",
                  path, v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, req->len);
    add_header(sb, "IP", req->ip);
    add_header(sb, "Helo", req->helo);
    add_header(sb, "Hostname", req->hostname);
    add_header(sb, "From", req->sender && req->sender[0] ? req->sender : "<>");
    for (size_t i = 0; i < req->n_rcpts; i++)
        add_header(sb, "Rcpt", req->rcpts[i]);
    add_header(sb, "User", req->user);
    add_header(sb, "Queue-Id", req->queue_id);
    return strbuf_printf(sb, "\r\n");
}

static int read_reply(int fd, uint64_t deadline, struct filter_rspamd_result *r, char *err,
                      size_t errsize)
{
    size_t cap = 16384, len = 0;
    char *buf = malloc(cap + 1);
    int rc = -1;
    if (buf == NULL)
        return fail(err, errsize, "out of memory");
    for (;;) {
        if (len == cap) {
            if (cap >= RSPAMD_REPLY_MAX) {
                fail(err, errsize, "reply too large");
                goto out;
            }
            char *nb = realloc(buf, cap * 2 + 1);
            if (nb == NULL) {
                fail(err, errsize, "out of memory");
                goto out;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLIN, deadline) < 0) {
                fail(err, errsize, "timeout waiting for the reply");
                goto out;
            }
            continue;
        }
        if (n < 0) {
            fail(err, errsize, "recv: %s", strerror(errno));
            goto out;
        }
        len += (size_t)n;
        char *body;
        size_t blen;
        int status = filter_http_response(buf, len, n == 0, &body, &blen);
        if (status == -2)
            continue;
        if (status < 0) {
            fail(err, errsize, "malformed HTTP reply");
            goto out;
        }
        if (status != 200) {
            fail(err, errsize, "HTTP status %d", status);
            goto out;
        }
        if (filter_rspamd_parse(body, blen, r) < 0) {
            fail(err, errsize, "reply is not a /checkv2 result");
            goto out;
        }
        rc = 0;
        goto out;
    }
out:
    free(buf);
    return rc;
}

int filter_rspamd_check(const char *url, uint64_t timeout_ms, const struct filter_rspamd_req *req,
                        struct filter_rspamd_result *r, char *err, size_t errsize)
{
    struct filter_url u;
    memset(r, 0, sizeof(*r));
    if (filter_url_parse(url, &u) < 0)
        return fail(err, errsize, "bad url %s", url);
    uint64_t deadline = now_mono_ms() + timeout_ms;
    int fd = connect_to(&u, deadline, err, errsize);
    if (fd < 0)
        return -1;
    struct strbuf head;
    strbuf_init(&head, RSPAMD_HEAD_MAX);
    int rc = -1;
    if (build_request(&u, req, &head) < 0 || head.data == NULL)
        fail(err, errsize, "request headers too large");
    else if (send_all(fd, head.data, head.len, deadline) < 0 ||
             send_all(fd, req->data, req->len, deadline) < 0)
        fail(err, errsize, "send: %s", errno ? strerror(errno) : "timeout");
    else
        rc = read_reply(fd, deadline, r, err, errsize);
    strbuf_free(&head);
    close(fd);
    return rc;
}
