/*
 * Releasing a captured message: a small blocking SMTP client (plain TCP,
 * RFC 5321) run on the pool.  The relay is the one the user configured
 * with --relay; the message goes out as stored, dot-stuffed, with bare LF
 * turned into CRLF.  (The queue's event-driven client in src/smtp is
 * for the outbound queue; a dev tool releasing one message at a time
 * does not need it.)
 */
#include "http/capture.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define RELEASE_TIMEOUT 30

/* Reads one (possibly multi-line) reply; returns its code or -1. */
static int read_reply(int fd, char *last, size_t size)
{
    char line[1024];
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t r = recv(fd, &c, 1, 0);
        if (r <= 0)
            return -1;
        if (c == '\n') {
            line[n] = '\0';
            if (n > 0 && line[n - 1] == '\r')
                line[n - 1] = '\0';
            if (n < 3)
                return -1;
            snprintf(last, size, "%s", line);
            if (line[3] != '-')
                return atoi(line);
            n = 0;
            continue;
        }
        if (n < sizeof(line) - 1)
            line[n++] = c;
    }
}

static int send_all(int fd, const char *d, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, d, len, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        d += w;
        len -= (size_t)w;
    }
    return 0;
}

static int command(int fd, int want, char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int command(int fd, int want, char *err, size_t err_size, const char *fmt, ...)
{
    char buf[1100];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0 && send_all(fd, buf, (size_t)n) < 0) {
        snprintf(err, err_size, "connection lost");
        return -1;
    }
    char last[1024] = "";
    int code = read_reply(fd, last, sizeof(last));
    if (code / 100 != want / 100) {
        snprintf(err, err_size, "%s", code < 0 ? "connection lost" : last);
        return -1;
    }
    return 0;
}

static int connect_relay(const char *relay, char *err, size_t err_size)
{
    char host[256];
    int port = 25;
    if (parse_hostport(relay, host, sizeof(host), &port) < 0) {
        snprintf(err, err_size, "bad relay address %s", relay);
        return -1;
    }
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
    if (getaddrinfo(host[0] ? host : "127.0.0.1", ps, &hints, &res) != 0) {
        snprintf(err, err_size, "cannot resolve %s", host);
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        struct timeval tv = { RELEASE_TIMEOUT, 0 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, err_size, "cannot connect to %s", relay);
    return fd;
}

/* The content with CRLF line ends and dot-stuffing (RFC 5321 4.5.2). */
static int send_data(int fd, const char *data, size_t len)
{
    struct strbuf out;
    strbuf_init(&out, len * 2 + 16);
    bool bol = true;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (bol && c == '.')
            strbuf_append(&out, ".", 1);
        if (c == '\n' && (i == 0 || data[i - 1] != '\r'))
            strbuf_append(&out, "\r", 1);
        if (c == '\r' && (i + 1 >= len || data[i + 1] != '\n')) {
            strbuf_append(&out, "\r\n", 2);
            bol = true;
            continue;
        }
        strbuf_append(&out, &c, 1);
        bol = c == '\n';
    }
    if (!bol)
        strbuf_append(&out, "\r\n", 2);
    strbuf_append(&out, ".\r\n", 3);
    int rc = out.data ? send_all(fd, out.data, out.len) : -1;
    strbuf_free(&out);
    return rc;
}

int capture_smtp_send(const char *relay, const char *helo, const char *from,
                      const char *const *rcpts, size_t n_rcpts, const char *data, size_t len,
                      char *err, size_t err_size)
{
    int fd = connect_relay(relay, err, err_size);
    if (fd < 0)
        return -1;
    char last[1024];
    int rc = -1;
    if (read_reply(fd, last, sizeof(last)) != 220) {
        snprintf(err, err_size, "no greeting from %s", relay);
        goto out;
    }
    if (command(fd, 250, err, err_size, "EHLO %s\r\n", helo) < 0 &&
        command(fd, 250, err, err_size, "HELO %s\r\n", helo) < 0)
        goto out;
    if (command(fd, 250, err, err_size, "MAIL FROM:<%s>\r\n", from) < 0)
        goto out;
    for (size_t i = 0; i < n_rcpts; i++)
        if (command(fd, 250, err, err_size, "RCPT TO:<%s>\r\n", rcpts[i]) < 0)
            goto out;
    if (command(fd, 354, err, err_size, "DATA\r\n") < 0)
        goto out;
    if (send_data(fd, data, len) < 0 || read_reply(fd, last, sizeof(last)) / 100 != 2) {
        snprintf(err, err_size, "%s", last);
        goto out;
    }
    rc = 0;
    command(fd, 221, last, sizeof(last), "QUIT\r\n");
out:
    close(fd);
    return rc;
}
