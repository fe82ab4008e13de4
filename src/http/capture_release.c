/*
 * Releasing a captured message: a small blocking SMTP client (RFC 5321)
 * run on the pool, for the one relay the user configured with --relay.
 *
 *   TLS   starttls (default): STARTTLS when the relay offers it;
 *         require: STARTTLS or fail; smtps: implicit TLS (RFC 8314);
 *         off: never.  Certificates are verified against the system's
 *         CAs and the relay's host name unless --relay-insecure.
 *   AUTH  with --relay-user (password from POSTEL_RELAY_PASSWORD): PLAIN,
 *         else LOGIN, whichever the relay offers; never over an
 *         unencrypted connection except to a loopback address.
 * The message goes out as stored, dot-stuffed, bare LF turned into CRLF.
 * (The queue's event-driven client in src/smtp is for the outbound queue;
 * a dev tool releasing one message at a time does not need it.)
 */
#include "http/capture.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define RELEASE_TIMEOUT 30
#define EHLO_MAX 4096

struct relay_conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    char host[256];
};

const char *capture_relay_tls_name(enum capture_relay_tls t)
{
    switch (t) {
    case CAPTURE_RELAY_STARTTLS: return "starttls";
    case CAPTURE_RELAY_REQUIRE: return "require";
    case CAPTURE_RELAY_SMTPS: return "smtps";
    case CAPTURE_RELAY_OFF: return "off";
    }
    return "?";
}

int capture_relay_tls_parse(const char *s, enum capture_relay_tls *t)
{
    for (int i = 0; i <= CAPTURE_RELAY_OFF; i++)
        if (strcmp(s, capture_relay_tls_name((enum capture_relay_tls)i)) == 0) {
            *t = (enum capture_relay_tls)i;
            return 0;
        }
    return -1;
}

static ssize_t conn_read(struct relay_conn *c, void *buf, size_t n)
{
    if (c->ssl) {
        int r = SSL_read(c->ssl, buf, (int)n);
        return r > 0 ? r : -1;
    }
    return recv(c->fd, buf, n, 0);
}

static int conn_write(struct relay_conn *c, const char *d, size_t len)
{
    while (len > 0) {
        ssize_t w;
        if (c->ssl) {
            int r = SSL_write(c->ssl, d, len > 1 << 30 ? 1 << 30 : (int)len);
            w = r > 0 ? r : -1;
        } else {
            w = send(c->fd, d, len, MSG_NOSIGNAL);
        }
        if (w <= 0)
            return -1;
        d += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Reads one (possibly multi-line) reply; returns its code or -1.  The
 * last line goes to last; with all, every line's text after the code
 * (for EHLO keywords), one per line. */
static int read_reply(struct relay_conn *c, char *last, size_t size, struct strbuf *all)
{
    char line[1024];
    size_t n = 0;
    for (int lines = 0; lines < 200;) {
        char ch;
        if (conn_read(c, &ch, 1) != 1)
            return -1;
        if (ch != '\n') {
            if (n < sizeof(line) - 1)
                line[n++] = ch;
            continue;
        }
        line[n] = '\0';
        if (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n < 3 || line[0] < '2' || line[0] > '5')
            return -1;
        snprintf(last, size, "%s", line);
        if (all && n > 4) {
            strbuf_append(all, line + 4, n - 4);
            strbuf_append(all, "\n", 1);
        }
        if (n == 3 || line[3] != '-')
            return atoi(line);
        n = 0;
        lines++;
    }
    return -1;
}

/* Sends a command (not logged in err when secret) and reads the reply;
 * 0 when its first digit is want's, else -1 with err set. */
static int command(struct relay_conn *c, int want, struct strbuf *all, char *err,
                   size_t err_size, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int command(struct relay_conn *c, int want, struct strbuf *all, char *err,
                   size_t err_size, const char *fmt, ...)
{
    char buf[1100];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        snprintf(err, err_size, "command too long");
        return -1;
    }
    if (conn_write(c, buf, (size_t)n) < 0) {
        snprintf(err, err_size, "connection lost");
        return -1;
    }
    char last[1024] = "";
    int code = read_reply(c, last, sizeof(last), all);
    if (code < 0 || code / 100 != want / 100) {
        snprintf(err, err_size, "%s", code < 0 ? "connection lost or bad reply" : last);
        return -1;
    }
    return 0;
}

static bool host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (host[0] == '\0' || strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

static int connect_relay(struct relay_conn *c, const char *relay, char *err, size_t err_size)
{
    int port = 25;
    if (parse_hostport(relay, c->host, sizeof(c->host), &port) < 0 || port <= 0) {
        snprintf(err, err_size, "bad relay address %s", relay);
        return -1;
    }
    if (c->host[0] == '\0')
        str_copy(c->host, "127.0.0.1", sizeof(c->host));
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
    if (getaddrinfo(c->host, ps, &hints, &res) != 0) {
        snprintf(err, err_size, "cannot resolve %s", c->host);
        return -1;
    }
    c->fd = -1;
    for (struct addrinfo *a = res; a && c->fd < 0; a = a->ai_next) {
        c->fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
            continue;
        struct timeval tv = { RELEASE_TIMEOUT, 0 };
        setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(c->fd, a->ai_addr, a->ai_addrlen) < 0) {
            close(c->fd);
            c->fd = -1;
        }
    }
    freeaddrinfo(res);
    if (c->fd < 0) {
        snprintf(err, err_size, "cannot connect to %s", relay);
        return -1;
    }
    return 0;
}

/* TLS handshake on the connected socket (after STARTTLS's 220, or at once
 * for smtps). */
static int start_tls(struct relay_conn *c, bool verify, char *err, size_t err_size)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL) {
        snprintf(err, err_size, "TLS: cannot create a context");
        return -1;
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    if (verify) {
        SSL_CTX_set_default_verify_paths(c->ctx);
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    }
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        snprintf(err, err_size, "TLS: cannot create a connection");
        return -1;
    }
    struct in_addr a4;
    struct in6_addr a6;
    bool is_ip = inet_pton(AF_INET, c->host, &a4) == 1 || inet_pton(AF_INET6, c->host, &a6) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(c->ssl, c->host);
    if (verify) {
        if (is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host);
        else
            SSL_set1_host(c->ssl, c->host);
    }
    ERR_clear_error();
    if (SSL_connect(c->ssl) != 1) {
        long v = SSL_get_verify_result(c->ssl);
        if (verify && v != X509_V_OK)
            snprintf(err, err_size, "TLS: certificate of %s not trusted: %s (--relay-insecure "
                     "skips the check)", c->host, X509_verify_cert_error_string(v));
        else
            snprintf(err, err_size, "TLS handshake with %s failed", c->host);
        SSL_free(c->ssl);
        c->ssl = NULL;
        return -1;
    }
    return 0;
}

static void conn_close(struct relay_conn *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->ctx)
        SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
}

/* Whether the EHLO reply lines (keyword first) hold keyword, and for AUTH
 * the mechanism mech among its parameters. */
static bool ehlo_has(const char *ehlo, const char *keyword, const char *mech)
{
    size_t kl = strlen(keyword);
    for (const char *l = ehlo; *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        if (len >= kl && strncasecmp(l, keyword, kl) == 0 && (len == kl || l[kl] == ' ' ||
                                                              l[kl] == '=')) {
            if (mech == NULL)
                return true;
            size_t ml = strlen(mech);
            for (const char *p = l + kl; p < l + len;) {
                while (p < l + len && (*p == ' ' || *p == '='))
                    p++;
                const char *e = p;
                while (e < l + len && *e != ' ')
                    e++;
                if ((size_t)(e - p) == ml && strncasecmp(p, mech, ml) == 0)
                    return true;
                p = e;
            }
        }
        l += len + (nl ? 1 : 0);
    }
    return false;
}

static void b64(const char *in, size_t len, char *out, size_t out_size)
{
    if (out_size < 4 * ((len + 2) / 3) + 1) {
        out[0] = '\0';
        return;
    }
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)len);
}

static int authenticate(struct relay_conn *c, const char *ehlo, const char *user,
                        const char *pass, char *err, size_t err_size)
{
    char enc[1400], buf[1100];
    size_t ul = strlen(user), pl = strlen(pass);
    if (ul > 255 || pl > 255) {
        snprintf(err, err_size, "relay user name or password too long");
        return -1;
    }
    if (ehlo_has(ehlo, "AUTH", "PLAIN")) {
        buf[0] = '\0';
        memcpy(buf + 1, user, ul);
        buf[1 + ul] = '\0';
        memcpy(buf + 2 + ul, pass, pl);
        b64(buf, 2 + ul + pl, enc, sizeof(enc));
        explicit_bzero(buf, sizeof(buf));
        int rc = command(c, 235, NULL, err, err_size, "AUTH PLAIN %s\r\n", enc);
        explicit_bzero(enc, sizeof(enc));
        return rc;
    }
    if (ehlo_has(ehlo, "AUTH", "LOGIN")) {
        if (command(c, 334, NULL, err, err_size, "AUTH LOGIN\r\n") < 0)
            return -1;
        b64(user, ul, enc, sizeof(enc));
        if (command(c, 334, NULL, err, err_size, "%s\r\n", enc) < 0)
            return -1;
        b64(pass, pl, enc, sizeof(enc));
        int rc = command(c, 235, NULL, err, err_size, "%s\r\n", enc);
        explicit_bzero(enc, sizeof(enc));
        return rc;
    }
    snprintf(err, err_size, "%s offers no AUTH PLAIN or LOGIN", c->host);
    return -1;
}

/* The content with CRLF line ends and dot-stuffing (RFC 5321 4.5.2). */
static int send_data(struct relay_conn *c, const char *data, size_t len)
{
    struct strbuf out;
    strbuf_init(&out, len * 2 + 16);
    bool bol = true;
    for (size_t i = 0; i < len; i++) {
        char ch = data[i];
        if (bol && ch == '.')
            strbuf_append(&out, ".", 1);
        if (ch == '\n' && (i == 0 || data[i - 1] != '\r'))
            strbuf_append(&out, "\r", 1);
        if (ch == '\r' && (i + 1 >= len || data[i + 1] != '\n')) {
            strbuf_append(&out, "\r\n", 2);
            bol = true;
            continue;
        }
        strbuf_append(&out, &ch, 1);
        bol = ch == '\n';
    }
    if (!bol)
        strbuf_append(&out, "\r\n", 2);
    strbuf_append(&out, ".\r\n", 3);
    int rc = out.data ? conn_write(c, out.data, out.len) : -1;
    strbuf_free(&out);
    return rc;
}

static int ehlo(struct relay_conn *c, const char *helo, struct strbuf *caps, char *err,
                size_t err_size)
{
    strbuf_reset(caps);
    if (command(c, 250, caps, err, err_size, "EHLO %s\r\n", helo) == 0)
        return 0;
    strbuf_reset(caps);
    return command(c, 250, NULL, err, err_size, "HELO %s\r\n", helo);
}

int capture_smtp_send(const struct capture_relay *r, const char *helo, const char *from,
                      const char *const *rcpts, size_t n_rcpts, const char *data, size_t len,
                      char *err, size_t err_size)
{
    struct relay_conn c = { .fd = -1 };
    struct strbuf caps;
    strbuf_init(&caps, EHLO_MAX);
    int rc = -1;
    char last[1024];
    if (connect_relay(&c, r->addr, err, err_size) < 0)
        goto out;
    bool verify = !r->insecure;
    if (r->tls == CAPTURE_RELAY_SMTPS && start_tls(&c, verify, err, err_size) < 0)
        goto out;
    if (read_reply(&c, last, sizeof(last), NULL) / 100 != 2) {
        snprintf(err, err_size, "no greeting from %s", r->addr);
        goto out;
    }
    if (ehlo(&c, helo, &caps, err, err_size) < 0)
        goto out;
    if (c.ssl == NULL && r->tls != CAPTURE_RELAY_OFF) {
        bool offered = caps.data && ehlo_has(caps.data, "STARTTLS", NULL);
        if (!offered && r->tls == CAPTURE_RELAY_REQUIRE) {
            snprintf(err, err_size, "%s does not offer STARTTLS (--relay-tls require)", r->addr);
            goto out;
        }
        if (offered) {
            if (command(&c, 220, NULL, err, err_size, "STARTTLS\r\n") < 0 ||
                start_tls(&c, verify, err, err_size) < 0 ||
                ehlo(&c, helo, &caps, err, err_size) < 0)
                goto out;
        }
    }
    if (r->user[0]) {
        if (c.ssl == NULL && !host_is_loopback(c.host)) {
            snprintf(err, err_size, "refusing to send the relay password unencrypted to %s",
                     r->addr);
            goto out;
        }
        if (authenticate(&c, caps.data ? caps.data : "", r->user, r->pass, err, err_size) < 0)
            goto out;
    }
    if (command(&c, 250, NULL, err, err_size, "MAIL FROM:<%s>\r\n", from) < 0)
        goto out;
    for (size_t i = 0; i < n_rcpts; i++)
        if (command(&c, 250, NULL, err, err_size, "RCPT TO:<%s>\r\n", rcpts[i]) < 0)
            goto out;
    if (command(&c, 354, NULL, err, err_size, "DATA\r\n") < 0)
        goto out;
    last[0] = '\0';
    if (send_data(&c, data, len) < 0 || read_reply(&c, last, sizeof(last), NULL) / 100 != 2) {
        snprintf(err, err_size, "%s", last[0] ? last : "connection lost");
        goto out;
    }
    rc = 0;
    command(&c, 221, NULL, last, sizeof(last), "QUIT\r\n");
out:
    conn_close(&c);
    strbuf_free(&caps);
    return rc;
}
