/*
 * pop3_load: the load client of bench/pop3_bench.py (compiled by it with
 * cc into its work directory; not part of the postel build).
 *
 *   pop3_load PORT PASSWORD DEPTH TIMEOUT_S USER...
 *
 * One connection per USER to 127.0.0.1:PORT.  Untimed: each connection
 * reads the greeting, logs in with USER/PASS and asks STAT for its message
 * count (one after the other, blocking).  Timed, all connections at once
 * on one epoll loop: RETR 1..count, pipelined with up to DEPTH commands
 * outstanding per connection, then QUIT.  Every response is checked: the
 * status line is "+OK n ...", the body ends with the terminating ".", and
 * the body un-dot-stuffed is exactly n octets (RFC 1939 11 asks for the
 * exact size of the CRLF form).  Any mismatch, -ERR, early close or
 * timeout fails the run.
 *
 * After the logins it prints "ready" and waits for a line on stdin (the
 * caller samples the server's CPU time in between), then prints one line:
 * "messages=M octets=B seconds=S" (S from the first RETR
 * sent to the last QUIT answered) and exits 0, or prints the error on
 * stderr and exits 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (512u * 1024)
#define LINE_MAX_LEN 1024

enum phase { P_STATUS, P_BODY, P_QUIT, P_DONE };

struct conn {
    const char *user;
    int fd;
    char *buf;
    size_t len;                  /* bytes in buf */
    uint32_t count;              /* messages in the maildrop */
    uint32_t sent, done;         /* RETRs sent, responses complete */
    enum phase phase;
    uint64_t want;               /* octets announced for the current RETR */
    uint64_t got;                /* un-stuffed octets of its body so far */
    bool line_start;             /* the next body byte begins a line */
    uint64_t octets;             /* total over all responses */
    char out[4096];              /* commands not yet written */
    size_t out_len;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pop3_load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ---- untimed login, blocking ---- */

static void blocking_line(struct conn *c, char *line, size_t size)
{
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl != NULL) {
            size_t n = (size_t)(nl - c->buf) + 1;
            size_t keep = n - 1;
            if (keep > 0 && c->buf[keep - 1] == '\r')
                keep--;
            if (keep >= size)
                keep = size - 1;
            memcpy(line, c->buf, keep);
            line[keep] = '\0';
            memmove(c->buf, c->buf + n, c->len - n);
            c->len -= n;
            return;
        }
        if (c->len >= LINE_MAX_LEN)
            die("%s: line too long before login ends", c->user);
        ssize_t r = recv(c->fd, c->buf + c->len, BUF_SIZE - c->len, 0);
        if (r <= 0)
            die("%s: connection closed during login", c->user);
        c->len += (size_t)r;
    }
}

static void expect_ok(struct conn *c, const char *what, char *line, size_t size)
{
    blocking_line(c, line, size);
    if (strncmp(line, "+OK", 3) != 0)
        die("%s: %s: %s", c->user, what, line);
}

static void login(struct conn *c, int port, const char *password, int timeout)
{
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = { timeout, 0 };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        die("connect to port %d: %s", port, strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char line[LINE_MAX_LEN];
    expect_ok(c, "greeting", line, sizeof(line));
    char cmd[1024];
    int n = snprintf(cmd, sizeof(cmd), "USER %s\r\nPASS %s\r\nSTAT\r\n", c->user, password);
    if (n < 0 || (size_t)n >= sizeof(cmd) || send(c->fd, cmd, (size_t)n, 0) != n)
        die("%s: cannot send login", c->user);
    expect_ok(c, "USER", line, sizeof(line));
    expect_ok(c, "PASS", line, sizeof(line));
    expect_ok(c, "STAT", line, sizeof(line));
    c->count = (uint32_t)strtoul(line + 4, NULL, 10);
    c->line_start = true;
}

/* ---- timed retrieval, one epoll loop ---- */

static void flush_out(struct conn *c)
{
    while (c->out_len > 0) {
        ssize_t w = send(c->fd, c->out, c->out_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            die("%s: send: %s", c->user, strerror(errno));
        }
        memmove(c->out, c->out + w, c->out_len - (size_t)w);
        c->out_len -= (size_t)w;
    }
}

static void queue_cmds(struct conn *c, uint32_t depth)
{
    if (c->phase == P_QUIT || c->phase == P_DONE)
        return;
    if (c->sent < c->count && c->sent - c->done <= depth / 2) {
        while (c->sent < c->count && c->sent - c->done < depth &&
               c->out_len + 32 < sizeof(c->out)) {
            c->sent++;
            c->out_len += (size_t)snprintf(c->out + c->out_len, sizeof(c->out) - c->out_len,
                                           "RETR %u\r\n", c->sent);
        }
    }
    if (c->done == c->count && c->sent == c->count && c->phase == P_STATUS) {
        memcpy(c->out + c->out_len, "QUIT\r\n", 6);
        c->out_len += 6;
        c->phase = P_QUIT;
    }
    flush_out(c);
}

/* Consumes complete lines from c->buf.  Returns false when the
 * connection has finished (QUIT answered). */
static bool parse(struct conn *c)
{
    size_t pos = 0;
    for (;;) {
        char *p = c->buf + pos;
        size_t left = c->len - pos;
        char *nl = memchr(p, '\n', left);
        if (nl == NULL)
            break;
        size_t n = (size_t)(nl - p) + 1; /* the line with its LF */
        pos += n;
        if (n < 2 || p[n - 2] != '\r')
            die("%s: bare LF in a response line", c->user);
        if (c->phase == P_STATUS || c->phase == P_QUIT) {
            if (strncmp(p, "+OK", 3) != 0)
                die("%s: %s %u: %.*s", c->user, c->phase == P_QUIT ? "QUIT" : "RETR",
                    c->done + 1, (int)(n - 2), p);
            if (c->phase == P_QUIT) {
                c->phase = P_DONE;
                break;
            }
            c->want = strtoull(p + 4, NULL, 10);
            c->got = 0;
            c->phase = P_BODY;
            continue;
        }
        /* a body line */
        if (p[0] == '.') {
            if (n == 3) { /* ".\r\n": the end */
                if (c->got != c->want)
                    die("%s: RETR %u: %llu octets announced, %llu sent", c->user, c->done + 1,
                        (unsigned long long)c->want, (unsigned long long)c->got);
                c->octets += c->got;
                c->done++;
                c->phase = P_STATUS;
                continue;
            }
            c->got += n - 1; /* the stuffed dot is not part of the message */
        } else {
            c->got += n;
        }
    }
    memmove(c->buf, c->buf + pos, c->len - pos);
    c->len -= pos;
    if (c->len == BUF_SIZE)
        die("%s: a response line longer than %u bytes", c->user, BUF_SIZE);
    return c->phase != P_DONE;
}

int main(int argc, char **argv)
{
    if (argc < 6)
        die("usage: pop3_load PORT PASSWORD DEPTH TIMEOUT_S USER...");
    int port = atoi(argv[1]);
    const char *password = argv[2];
    uint32_t depth = (uint32_t)atoi(argv[3]);
    int timeout = atoi(argv[4]);
    int nconn = argc - 5;
    if (depth < 1 || depth > 200)
        die("DEPTH must be 1..200");
    struct conn *conns = calloc((size_t)nconn, sizeof(*conns));
    if (conns == NULL)
        die("out of memory");
    for (int i = 0; i < nconn; i++) {
        conns[i].user = argv[5 + i];
        conns[i].buf = malloc(BUF_SIZE);
        if (conns[i].buf == NULL)
            die("out of memory");
        login(&conns[i], port, password, timeout);
    }
    /* the caller samples the server's CPU time now, then lets us go */
    printf("ready\n");
    fflush(stdout);
    char go[16];
    if (fgets(go, sizeof(go), stdin) == NULL)
        die("stdin closed before the start");
    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));
    double start = now();
    int live = 0;
    for (int i = 0; i < nconn; i++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &conns[i] };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0)
            die("epoll_ctl: %s", strerror(errno));
        queue_cmds(&conns[i], depth);
        live++;
    }
    while (live > 0) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, timeout * 1000);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("no progress for %d s (%d connections unfinished)", timeout, live);
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            if (c->phase == P_DONE)
                continue;
            ssize_t r = recv(c->fd, c->buf + c->len, BUF_SIZE - c->len, MSG_DONTWAIT);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0)
                die("%s: connection closed after %u of %u messages", c->user, c->done,
                    c->count);
            c->len += (size_t)r;
            if (!parse(c)) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                live--;
                continue;
            }
            queue_cmds(c, depth);
        }
    }
    double secs = now() - start;
    uint64_t msgs = 0, octets = 0;
    for (int i = 0; i < nconn; i++) {
        msgs += conns[i].done;
        octets += conns[i].octets;
        close(conns[i].fd);
        free(conns[i].buf);
    }
    printf("messages=%llu octets=%llu seconds=%.6f\n", (unsigned long long)msgs,
           (unsigned long long)octets, secs);
    free(conns);
    return 0;
}
