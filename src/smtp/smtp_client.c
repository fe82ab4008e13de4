/*
 * SMTP client session (RFC 5321 client side, RFC 3207 STARTTLS, RFC 2920
 * PIPELINING, RFC 3030 CHUNKING, RFC 4954 AUTH) and its reply parser.
 *
 * Shape: one struct per session, an explicit state changed only by
 * cl_set_state() (logged at debug level), one reply handler per state.
 * A transaction is a list of commands (RSET, MAIL, RCPT..., DATA) sent
 * all at once when the server pipelines, one by one otherwise; replies
 * are matched to commands in order.  The content is streamed from the
 * message file as the output buffer drains, dot-stuffed for DATA
 * (RFC 5321 4.5.2) or raw after one "BDAT n LAST".
 */
#include "smtp/smtp_client.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "smtp/smtp_parse.h"

/* ------------------------------------------------------------------ */
/* Reply parser                                                         */
/* ------------------------------------------------------------------ */

void smtp_reply_parser_init(struct smtp_reply_parser *p)
{
    memset(p, 0, sizeof(*p));
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* RFC 3463 2: class "." subject "." detail, 1-3 digits each, the class
 * matching the reply's first digit; followed by a space or the end. */
static size_t enhanced_len(const char *t, size_t len, int code)
{
    if (len < 5 || t[0] != (char)('0' + code / 100) || t[1] != '.')
        return 0;
    size_t i = 2;
    for (int part = 0; part < 2; part++) {
        size_t start = i;
        while (i < len && is_digit(t[i]) && i - start < 4)
            i++;
        if (i == start || i - start > 3)
            return 0;
        if (part == 0) {
            if (i >= len || t[i] != '.')
                return 0;
            i++;
        }
    }
    return i == len || t[i] == ' ' ? i : 0;
}

static void reply_append(struct smtp_client_reply *r, const char *text, size_t len)
{
    size_t have = strlen(r->text);
    if (r->n_lines > 0 && have + 1 < sizeof(r->text))
        r->text[have++] = '\n';
    size_t room = sizeof(r->text) - 1 - have;
    if (len > room)
        len = room;
    memcpy(r->text + have, text, len);
    r->text[have + len] = '\0';
}

/* One complete line (without LF) of the current reply. */
static int reply_line(struct smtp_reply_parser *p)
{
    char *l = p->line;
    size_t n = p->line_len;
    if (p->overflow)
        return SMTP_REPLY_BAD;
    if (n > 0 && l[n - 1] == '\r')
        n--;
    if (n < 3 || l[0] < '2' || l[0] > '5' || !is_digit(l[1]) || !is_digit(l[2]))
        return SMTP_REPLY_BAD;
    int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
    char sep = n > 3 ? l[3] : ' ';
    if (sep != ' ' && sep != '-')
        return SMTP_REPLY_BAD;
    struct smtp_client_reply *r = &p->reply;
    if ((r->n_lines > 0 && code != r->code) || r->n_lines >= SMTP_REPLY_LINES_MAX)
        return SMTP_REPLY_BAD;
    r->code = code;
    char *text = n > 4 ? l + 4 : l + n;
    size_t tlen = n > 4 ? n - 4 : 0;
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
            text[i] = ' ';
    text[tlen] = '\0';
    if (r->n_lines == 0) {
        size_t e = enhanced_len(text, tlen, code);
        if (e > 0 && e < sizeof(r->enhanced)) {
            memcpy(r->enhanced, text, e);
            r->enhanced[e] = '\0';
        }
    }
    reply_append(r, text, tlen);
    if (p->line_cb != NULL)
        p->line_cb(p->line_arg, r->n_lines, text, tlen);
    r->n_lines++;
    return sep == '-' ? SMTP_REPLY_MORE : SMTP_REPLY_DONE;
}

int smtp_reply_parse(struct smtp_reply_parser *p, const char *data, size_t len, size_t *used_r)
{
    if (p->done) {
        memset(&p->reply, 0, sizeof(p->reply));
        p->done = false;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = data[i];
        if (ch != '\n') {
            if (p->line_len < SMTP_REPLY_LINE_MAX)
                p->line[p->line_len++] = ch;
            else
                p->overflow = true;
            continue;
        }
        int rc = reply_line(p);
        p->line_len = 0;
        p->overflow = false;
        if (rc != SMTP_REPLY_MORE) {
            *used_r = i + 1;
            p->done = rc == SMTP_REPLY_DONE;
            return rc;
        }
    }
    *used_r = len;
    return SMTP_REPLY_MORE;
}

const char *smtp_reply_format(const struct smtp_client_reply *r, char *buf, size_t size)
{
    if (size == 0)
        return buf;
    int n = snprintf(buf, size, "%d %s", r->code, r->text);
    size_t end = n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
    for (size_t i = 0; i < end; i++)
        if (buf[i] == '\n')
            buf[i] = ' ';
    return buf;
}

/* ------------------------------------------------------------------ */
/* EHLO keywords                                                        */
/* ------------------------------------------------------------------ */

static bool word_is(const char *w, size_t len, const char *kw)
{
    return strlen(kw) == len && strncasecmp(w, kw, len) == 0;
}

static void ehlo_auth(struct smtp_ext *ext, const char *p, const char *end)
{
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '='))
            p++;
        const char *w = p;
        while (p < end && *p != ' ')
            p++;
        if (word_is(w, (size_t)(p - w), "PLAIN"))
            ext->auth_plain = true;
        else if (word_is(w, (size_t)(p - w), "LOGIN"))
            ext->auth_login = true;
    }
}

void smtp_ehlo_line(struct smtp_ext *ext, int index, const char *text, size_t len)
{
    if (index == 0)
        return;
    const char *end = text + len, *p = text;
    while (p < end && *p == ' ')
        p++;
    const char *kw = p;
    while (p < end && *p != ' ' && *p != '=')
        p++;
    size_t klen = (size_t)(p - kw);
    if (word_is(kw, klen, "STARTTLS"))
        ext->starttls = true;
    else if (word_is(kw, klen, "PIPELINING"))
        ext->pipelining = true;
    else if (word_is(kw, klen, "8BITMIME"))
        ext->eightbitmime = true;
    else if (word_is(kw, klen, "SMTPUTF8"))
        ext->smtputf8 = true;
    else if (word_is(kw, klen, "DSN"))
        ext->dsn = true;
    else if (word_is(kw, klen, "CHUNKING"))
        ext->chunking = true;
    else if (word_is(kw, klen, "ENHANCEDSTATUSCODES"))
        ext->enhanced = true;
    else if (word_is(kw, klen, "AUTH"))
        ehlo_auth(ext, p, end);
    else if (word_is(kw, klen, "SIZE")) {
        /* RFC 1870 4: "SIZE" alone or with the fixed limit; 0 = none */
        ext->size = true;
        ext->size_max = 0;
        while (p < end && *p == ' ')
            p++;
        uint64_t v = 0;
        while (p < end && is_digit(*p) && v < UINT64_MAX / 10 - 10)
            v = v * 10 + (uint64_t)(*p++ - '0');
        ext->size_max = v;
    }
}

/* ------------------------------------------------------------------ */
/* Sessions                                                             */
/* ------------------------------------------------------------------ */

#define CL_OUT_HIGH   (256u * 1024)   /* content kept queued in the output buffer */
#define CL_OUT_LOW    (64u * 1024)    /* refill below this */
#define CL_READ_CHUNK (64u * 1024)
#define CL_QUIT_TIMEOUT 5

enum cl_state {
    CL_CONNECT, CL_BANNER, CL_EHLO, CL_HELO, CL_STARTTLS, CL_TLS, CL_AUTH, CL_AUTH_USER,
    CL_AUTH_PASS, CL_READY, CL_TX, CL_DATA_SEND, CL_DATA_END, CL_QUIT, CL_DEAD
};

static const char *const cl_state_names[] = {
    "connect", "banner", "ehlo", "helo", "starttls", "tls", "auth", "auth_user",
    "auth_pass", "ready", "tx", "data_send", "data_end", "quit", "dead",
};

enum cl_cmd_kind { CMD_RSET, CMD_MAIL, CMD_RCPT, CMD_DATA };

struct cl_cmd {
    enum cl_cmd_kind kind;
    size_t rcpt;
    char *line;                       /* with CRLF */
};

struct smtp_client {
    struct event_base *base;
    smtp_client_closed_fn *closed_cb; /* set by smtp_client_quit */
    void *closed_arg;
    struct bufferevent *bev;
    struct event *later;              /* reports a failure outside the caller's call */
    enum cl_state state;
    char sid[32], helo[HOSTNAME_MAX], peer[HOSTNAME_MAX];
    SSL_CTX *tls_ctx;
    bool tls, tls_required, no_chunking;
    char tls_desc[128];
    char *auth_user, *auth_pass;
    unsigned t_connect, t_cmd, t_data;
    struct smtp_ext ext;
    struct smtp_reply_parser rp;
    struct smtp_client_error err;

    smtp_client_open_fn *open_cb;
    void *open_arg;
    bool opening;                     /* open_cb not called yet */

    /* the transaction */
    smtp_client_tx_fn *tx_cb;
    void *tx_arg;
    struct cl_cmd *cmds;
    size_t n_cmds, next_send, next_reply;
    struct smtp_client_reply *rcpt_replies;
    size_t n_rcpts, n_accepted;
    struct smtp_client_reply data_reply;
    bool mail_failed, bdat, need_rset, discard_reply, conn_lost;
    int fd;
    uint64_t size, sent;
    bool at_bol;
    char last2[2];

    int in_cb;                        /* inside a libevent callback of ours */
    bool freed;                       /* smtp_client_free() called inside one */
};

static void cl_set_state(struct smtp_client *c, enum cl_state st)
{
    if (c->state != st)
        log_debug(c->sid, "event=smtp_client_state from=%s to=%s", cl_state_names[c->state],
                  cl_state_names[st]);
    c->state = st;
}

static void cl_timeout(struct smtp_client *c, unsigned seconds)
{
    struct timeval rd = { (time_t)seconds, 0 }, wr = { (time_t)(c->t_cmd ? c->t_cmd : 300), 0 };
    bufferevent_set_timeouts(c->bev, &rd, &wr);
}

static void cl_write(struct smtp_client *c, const char *line, size_t len)
{
    bufferevent_write(c->bev, line, len);
}

static void cl_printf(struct smtp_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cl_printf(struct smtp_client *c, const char *fmt, ...)
{
    char line[SMTP_REPLY_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(line) - 2 ? (size_t)n : sizeof(line) - 3;
    if (strncmp(line, "AUTH", 4) != 0 && c->state != CL_AUTH_USER && c->state != CL_AUTH_PASS)
        log_debug(c->sid, "event=smtp_client_send line=\"%.*s\"", (int)len, line);
    memcpy(line + len, "\r\n", 2);
    cl_write(c, line, len + 2);
}

static const char *cl_stage(const struct smtp_client *c)
{
    switch (c->state) {
    case CL_CONNECT: return "connect";
    case CL_BANNER: return "greeting";
    case CL_EHLO: return "EHLO";
    case CL_HELO: return "HELO";
    case CL_STARTTLS: return "STARTTLS";
    case CL_TLS: return "TLS";
    case CL_AUTH: case CL_AUTH_USER: case CL_AUTH_PASS: return "AUTH";
    case CL_TX:
        if (c->next_reply < c->n_cmds) {
            switch (c->cmds[c->next_reply].kind) {
            case CMD_RSET: return "RSET";
            case CMD_MAIL: return "MAIL FROM";
            case CMD_RCPT: return "RCPT TO";
            case CMD_DATA: return "DATA";
            }
        }
        return "RCPT TO";
    case CL_DATA_SEND: return c->bdat ? "BDAT" : "DATA";
    case CL_DATA_END: return "end of data";
    default: return "QUIT";
    }
}

static void tx_clear(struct smtp_client *c)
{
    for (size_t i = 0; i < c->n_cmds; i++)
        free(c->cmds[i].line);
    free(c->cmds);
    free(c->rcpt_replies);
    c->cmds = NULL;
    c->rcpt_replies = NULL;
    c->n_cmds = c->next_send = c->next_reply = 0;
    c->n_rcpts = c->n_accepted = 0;
    c->tx_cb = NULL;
}

static void cl_destroy(struct smtp_client *c)
{
    smtp_client_closed_fn *closed = c->closed_cb;
    void *closed_arg = c->closed_arg;
    tx_clear(c);
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    if (c->later != NULL)
        event_free(c->later);
    if (c->auth_pass != NULL)
        explicit_bzero(c->auth_pass, strlen(c->auth_pass));
    free(c->auth_user);
    free(c->auth_pass);
    free(c);
    if (closed != NULL)
        closed(closed_arg);
}

void smtp_client_free(struct smtp_client *c)
{
    if (c == NULL)
        return;
    c->open_cb = NULL;
    c->tx_cb = NULL;
    if (c->in_cb > 0) {
        c->freed = true;
        if (c->bev != NULL)
            bufferevent_disable(c->bev, EV_READ | EV_WRITE);
        return;
    }
    cl_destroy(c);
}

/* Entry and exit of every libevent callback: a free asked for inside
 * takes effect on the way out.  Returns true if c is gone. */
static void cl_enter(struct smtp_client *c)
{
    c->in_cb++;
}

static bool cl_leave(struct smtp_client *c)
{
    if (--c->in_cb == 0 && c->freed) {
        cl_destroy(c);
        return true;
    }
    return false;
}

/* Reports the end of a transaction and resets it. */
static void tx_finish(struct smtp_client *c, bool conn_ok)
{
    struct smtp_client_result res = {
        .conn_ok = conn_ok && !c->conn_lost,
        .err = c->err,
        .n_rcpts = c->n_rcpts,
        .n_accepted = c->mail_failed ? 0 : c->n_accepted,
        .rcpt = c->rcpt_replies,
        .data = c->data_reply,
    };
    smtp_client_tx_fn *cb = c->tx_cb;
    void *arg = c->tx_arg;
    struct smtp_client_reply *replies = c->rcpt_replies;
    c->rcpt_replies = NULL;
    tx_clear(c);
    if (!res.conn_ok) {
        cl_set_state(c, CL_DEAD);
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    } else {
        cl_set_state(c, CL_READY);
        cl_timeout(c, c->t_cmd);
    }
    if (cb != NULL)
        cb(arg, c, &res);
    free(replies);
}

/* Something ended the session: tell whoever waits.  stage NULL: the
 * command of the current state. */
static void cl_vfail(struct smtp_client *c, const char *stage, const struct smtp_client_reply *r,
                     const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));
static void cl_vfail(struct smtp_client *c, const char *stage, const struct smtp_client_reply *r,
                     const char *fmt, va_list ap)
{
    enum cl_state was = c->state;
    if (was == CL_DEAD)
        return;
    if (c->err.stage == NULL || c->opening) {
        c->err.stage = stage ? stage : cl_stage(c);
        if (r != NULL)
            c->err.reply = *r;
        else
            memset(&c->err.reply, 0, sizeof(c->err.reply));
        vsnprintf(c->err.error, sizeof(c->err.error), fmt, ap);
    }
    c->conn_lost = true;
    log_debug(c->sid, "event=smtp_client_fail stage=\"%s\" code=%d error=\"%s\"", c->err.stage,
              c->err.reply.code, c->err.error);
    if (was == CL_QUIT) {
        cl_set_state(c, CL_DEAD);
        smtp_client_free(c);
        return;
    }
    if (c->opening) {
        c->opening = false;
        cl_set_state(c, CL_DEAD);
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
        if (c->open_cb != NULL)
            c->open_cb(c->open_arg, c, -1, &c->err);
        return;
    }
    if (was == CL_TX || was == CL_DATA_SEND || was == CL_DATA_END) {
        tx_finish(c, false);
        return;
    }
    cl_set_state(c, CL_DEAD);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
}

static void cl_fail(struct smtp_client *c, const struct smtp_client_reply *r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cl_fail(struct smtp_client *c, const struct smtp_client_reply *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cl_vfail(c, NULL, r, fmt, ap);
    va_end(ap);
}

static void cl_fail_at(struct smtp_client *c, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cl_fail_at(struct smtp_client *c, const char *stage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cl_vfail(c, stage, NULL, fmt, ap);
    va_end(ap);
}

/* ---- opening ---- */

static void ehlo_line_cb(void *arg, int index, const char *text, size_t len)
{
    smtp_ehlo_line(arg, index, text, len);
}

static void send_ehlo(struct smtp_client *c)
{
    memset(&c->ext, 0, sizeof(c->ext));
    c->rp.line_cb = ehlo_line_cb;
    c->rp.line_arg = &c->ext;
    cl_set_state(c, CL_EHLO);
    cl_printf(c, "EHLO %s", c->helo);
}

static void cl_ready(struct smtp_client *c)
{
    cl_set_state(c, CL_READY);
    cl_timeout(c, c->t_cmd);
    c->opening = false;
    memset(&c->err, 0, sizeof(c->err));
    log_debug(c->sid, "event=smtp_client_ready peer=%s esmtp=%d tls=%d pipelining=%d dsn=%d "
                      "chunking=%d smtputf8=%d size=%llu",
              c->peer, c->ext.esmtp, c->tls, c->ext.pipelining, c->ext.dsn, c->ext.chunking,
              c->ext.smtputf8, (unsigned long long)c->ext.size_max);
    if (c->open_cb != NULL)
        c->open_cb(c->open_arg, c, 0, NULL);
}

static void start_auth(struct smtp_client *c)
{
    if (!c->tls) {
        cl_fail_at(c, "AUTH", "not sending credentials without TLS");
        return;
    }
    size_t ul = strlen(c->auth_user), pl = strlen(c->auth_pass);
    if (c->ext.auth_plain) {
        unsigned char raw[1024];
        char b64[1400];
        if (ul + pl + 2 > sizeof(raw)) {
            cl_fail_at(c, "AUTH", "credentials too long");
            return;
        }
        raw[0] = '\0';
        memcpy(raw + 1, c->auth_user, ul);
        raw[1 + ul] = '\0';
        memcpy(raw + 2 + ul, c->auth_pass, pl);
        long n = base64_encode(raw, ul + pl + 2, b64, sizeof(b64));
        explicit_bzero(raw, sizeof(raw));
        cl_set_state(c, CL_AUTH);
        log_debug(c->sid, "event=smtp_client_send line=\"AUTH PLAIN (credentials)\"");
        cl_printf(c, "AUTH PLAIN %s", n > 0 ? b64 : "=");
        explicit_bzero(b64, sizeof(b64));
    } else if (c->ext.auth_login) {
        cl_set_state(c, CL_AUTH_USER);
        cl_printf(c, "AUTH LOGIN");
    } else {
        cl_fail_at(c, "AUTH", "server offers no AUTH PLAIN or LOGIN");
    }
}

static void auth_login_step(struct smtp_client *c, const char *secret)
{
    char b64[1400];
    long n = base64_encode((const unsigned char *)secret, strlen(secret), b64, sizeof(b64));
    if (n < 0) {
        cl_fail(c, NULL, "credentials too long");
        return;
    }
    cl_write(c, b64, (size_t)n);
    cl_write(c, "\r\n", 2);
    explicit_bzero(b64, sizeof(b64));
}

static void after_ehlo(struct smtp_client *c)
{
    if (!c->tls && c->tls_ctx != NULL && c->ext.starttls) {
        cl_set_state(c, CL_STARTTLS);
        cl_printf(c, "STARTTLS");
        return;
    }
    if (!c->tls && c->tls_required) {
        cl_fail_at(c, "STARTTLS", "TLS required, but STARTTLS not offered");
        return;
    }
    if (c->auth_user != NULL)
        start_auth(c);
    else
        cl_ready(c);
}

static void cl_read_cb(struct bufferevent *bev, void *arg);
static void cl_write_cb(struct bufferevent *bev, void *arg);
static void cl_event_cb(struct bufferevent *bev, short what, void *arg);

static void start_tls(struct smtp_client *c)
{
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        /* RFC 3207 5 / CVE-2011-0411 class: nothing may follow the 220 */
        cl_fail(c, NULL, "data pipelined after the 220 to STARTTLS");
        return;
    }
    SSL *ssl = SSL_new(c->tls_ctx);
    if (ssl == NULL) {
        cl_fail(c, NULL, "SSL_new failed");
        return;
    }
    if (c->peer[0] != '\0' && strchr(c->peer, ':') == NULL && c->peer[0] != '[')
        SSL_set_tlsext_host_name(ssl, c->peer);
    struct bufferevent *tb = bufferevent_openssl_filter_new(c->base, c->bev, ssl,
                                                            BUFFEREVENT_SSL_CONNECTING,
                                                            BEV_OPT_CLOSE_ON_FREE);
    if (tb == NULL) {
        SSL_free(ssl);
        cl_fail(c, NULL, "TLS setup failed");
        return;
    }
    c->bev = tb;
    bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
    bufferevent_setcb(tb, cl_read_cb, cl_write_cb, cl_event_cb, c);
    bufferevent_enable(tb, EV_READ | EV_WRITE);
    cl_set_state(c, CL_TLS);
    cl_timeout(c, c->t_cmd);
}

static void tls_established(struct smtp_client *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    c->tls = true;
    c->tls_desc[0] = '\0';
    if (ssl != NULL)
        snprintf(c->tls_desc, sizeof(c->tls_desc), "%s %s", SSL_get_version(ssl),
                 SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
    log_debug(c->sid, "event=smtp_client_tls peer=%s tls=\"%s\"", c->peer, c->tls_desc);
    send_ehlo(c);
}

static void on_open_reply(struct smtp_client *c, const struct smtp_client_reply *r)
{
    int cls = r->code / 100;
    switch (c->state) {
    case CL_BANNER:
        if (cls == 2)
            send_ehlo(c);
        else
            cl_fail(c, r, "greeting refused");
        return;
    case CL_EHLO:
        c->rp.line_cb = NULL;
        if (cls == 2) {
            c->ext.esmtp = true;
            after_ehlo(c);
        } else if (cls == 5 && !c->tls) {
            memset(&c->ext, 0, sizeof(c->ext));
            cl_set_state(c, CL_HELO);
            cl_printf(c, "HELO %s", c->helo);
        } else {
            cl_fail(c, r, "EHLO refused");
        }
        return;
    case CL_HELO:
        if (cls == 2)
            after_ehlo(c);
        else
            cl_fail(c, r, "HELO refused");
        return;
    case CL_STARTTLS:
        if (r->code == 220)
            start_tls(c);
        else if (c->tls_required)
            cl_fail(c, r, "STARTTLS refused");
        else if (c->auth_user != NULL)
            cl_fail(c, r, "STARTTLS refused; not sending credentials without TLS");
        else
            cl_ready(c); /* RFC 3207 4.1: go on without TLS */
        return;
    case CL_AUTH:
        if (r->code == 235)
            cl_ready(c);
        else
            cl_fail(c, r, "authentication failed");
        return;
    case CL_AUTH_USER:
        if (r->code == 334) {
            cl_set_state(c, CL_AUTH_PASS);
            auth_login_step(c, c->auth_user);
        } else {
            cl_fail(c, r, "authentication failed");
        }
        return;
    case CL_AUTH_PASS:
        if (r->code == 334) {
            cl_set_state(c, CL_AUTH);
            auth_login_step(c, c->auth_pass);
        } else {
            cl_fail(c, r, "authentication failed");
        }
        return;
    default:
        return;
    }
}

/* ---- transactions ---- */

static void cl_send_next(struct smtp_client *c)
{
    struct cl_cmd *cmd = &c->cmds[c->next_send++];
    size_t len = strlen(cmd->line);
    log_debug(c->sid, "event=smtp_client_send line=\"%.*s\"", (int)(len - 2), cmd->line);
    cl_write(c, cmd->line, len);
}

/* Appends content bytes, dot-stuffed for DATA (RFC 5321 4.5.2). */
static void content_add(struct smtp_client *c, struct evbuffer *out, const char *buf, size_t n)
{
    if (n >= 2) {
        c->last2[0] = buf[n - 2];
        c->last2[1] = buf[n - 1];
    } else if (n == 1) {
        c->last2[0] = c->last2[1];
        c->last2[1] = buf[0];
    }
    if (c->bdat) {
        evbuffer_add(out, buf, n);
        return;
    }
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (c->at_bol && buf[i] == '.') {
            evbuffer_add(out, buf + start, i - start);
            evbuffer_add(out, ".", 1);
            start = i;
        }
        c->at_bol = buf[i] == '\n';
    }
    evbuffer_add(out, buf + start, n - start);
}

/* Fills the output buffer from the file up to CL_OUT_HIGH; at the end,
 * the terminator and the wait for the final reply. */
static void content_pump(struct smtp_client *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char *buf = NULL;
    while (c->sent < c->size && evbuffer_get_length(out) < CL_OUT_HIGH) {
        if (buf == NULL && (buf = malloc(CL_READ_CHUNK)) == NULL) {
            cl_fail(c, NULL, "out of memory");
            return;
        }
        uint64_t left = c->size - c->sent;
        size_t want = left < CL_READ_CHUNK ? (size_t)left : CL_READ_CHUNK;
        ssize_t n = pread(c->fd, buf, want, (off_t)c->sent);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(buf);
            /* our own failure: the server must not take a partial message */
            cl_fail(c, NULL, "reading the message: %s", n < 0 ? strerror(errno) : "short file");
            return;
        }
        content_add(c, out, buf, (size_t)n);
        c->sent += (uint64_t)n;
    }
    free(buf);
    if (c->sent < c->size)
        return;
    if (!c->bdat) {
        if (c->size > 0 && !(c->last2[0] == '\r' && c->last2[1] == '\n'))
            evbuffer_add(out, "\r\n", 2);
        evbuffer_add(out, ".\r\n", 3);
    }
    cl_set_state(c, CL_DATA_END);
    cl_timeout(c, c->t_data);
}

static void start_content(struct smtp_client *c)
{
    c->sent = 0;
    c->at_bol = true;
    c->last2[0] = c->last2[1] = '\0';
    cl_set_state(c, CL_DATA_SEND);
    if (c->bdat)
        cl_printf(c, "BDAT %llu LAST", (unsigned long long)c->size);
    cl_timeout(c, c->t_data);
    content_pump(c);
}

/* All command replies are in (or the rest need not be sent). */
static void tx_commands_done(struct smtp_client *c)
{
    if (c->bdat && !c->mail_failed && c->n_accepted > 0 && c->err.stage == NULL) {
        start_content(c);
        return;
    }
    c->need_rset = true; /* no content went: the transaction may still be open */
    tx_finish(c, true);
}

static void on_tx_reply(struct smtp_client *c, const struct smtp_client_reply *r)
{
    if (c->next_reply >= c->n_cmds)
        return;
    struct cl_cmd *cmd = &c->cmds[c->next_reply];
    int cls = r->code / 100;
    bool closing = r->code == 421;
    switch (cmd->kind) {
    case CMD_RSET:
        c->need_rset = false;
        break;
    case CMD_MAIL:
        if (cls != 2) {
            c->mail_failed = true;
            c->err.stage = "MAIL FROM";
            c->err.reply = *r;
        }
        break;
    case CMD_RCPT:
        c->rcpt_replies[cmd->rcpt] = *r;
        if (cls == 2 && !c->mail_failed)
            c->n_accepted++;
        break;
    case CMD_DATA:
        c->next_reply++;
        if (r->code == 354 && c->n_accepted > 0 && !c->mail_failed) {
            start_content(c);
            return;
        }
        if (r->code == 354) {
            /* RFC 2920 3.1: DATA accepted though no recipient was: end it */
            c->discard_reply = true;
            cl_write(c, ".\r\n", 3);
            cl_set_state(c, CL_DATA_END);
            cl_timeout(c, c->t_data);
            return;
        }
        if (c->n_accepted > 0 && !c->mail_failed && c->err.stage == NULL) {
            c->err.stage = "DATA";
            c->err.reply = *r;
        }
        c->need_rset = true;
        tx_finish(c, !closing);
        return;
    }
    c->next_reply++;
    if (closing) {
        if (c->err.stage == NULL) {
            c->err.stage = cmd->kind == CMD_RCPT ? "RCPT TO" : "MAIL FROM";
            c->err.reply = *r;
        }
        tx_finish(c, false);
        return;
    }
    if (c->next_reply == c->n_cmds) {
        tx_commands_done(c);
        return;
    }
    if (c->next_send > c->next_reply)
        return; /* pipelined: more replies are coming */
    /* one at a time: after a refused MAIL, or before a DATA no recipient
     * would use, stop here */
    if (c->mail_failed || (c->cmds[c->next_send].kind == CMD_DATA && c->n_accepted == 0)) {
        tx_commands_done(c);
        return;
    }
    cl_send_next(c);
}

static void on_data_end_reply(struct smtp_client *c, const struct smtp_client_reply *r)
{
    if (c->discard_reply) {
        c->discard_reply = false;
        c->need_rset = true;
    } else {
        c->data_reply = *r;
    }
    tx_finish(c, r->code != 421);
}

/* "VERB:<path>params\r\n", malloc'ed; NULL when out of memory. */
static char *cmd_line(const char *verb, const char *path, const char *params)
{
    char *line = NULL;
    if (asprintf(&line, "%s:<%s>%s\r\n", verb, path, params ? params : "") < 0)
        return NULL;
    return line;
}

int smtp_client_send(struct smtp_client *c, const struct smtp_client_tx *tx, smtp_client_tx_fn *cb,
                     void *arg)
{
    if (c->state != CL_READY || c->freed || tx->n_rcpts == 0)
        return -1;
    c->bdat = c->ext.chunking && !c->no_chunking;
    size_t n = tx->n_rcpts + 3;
    c->cmds = calloc(n, sizeof(*c->cmds));
    c->rcpt_replies = calloc(tx->n_rcpts, sizeof(*c->rcpt_replies));
    if (c->cmds == NULL || c->rcpt_replies == NULL) {
        tx_clear(c);
        return -1;
    }
    bool oom = false;
    if (c->need_rset) {
        c->cmds[c->n_cmds].kind = CMD_RSET;
        oom |= (c->cmds[c->n_cmds++].line = strdup("RSET\r\n")) == NULL;
    }
    c->cmds[c->n_cmds].kind = CMD_MAIL;
    oom |= (c->cmds[c->n_cmds++].line =
                cmd_line("MAIL FROM", tx->mail_from, tx->mail_params)) == NULL;
    for (size_t i = 0; i < tx->n_rcpts; i++) {
        c->cmds[c->n_cmds].kind = CMD_RCPT;
        c->cmds[c->n_cmds].rcpt = i;
        oom |= (c->cmds[c->n_cmds++].line = cmd_line(
                    "RCPT TO", tx->rcpts[i], tx->rcpt_params ? tx->rcpt_params[i] : NULL)) == NULL;
    }
    if (!c->bdat) {
        c->cmds[c->n_cmds].kind = CMD_DATA;
        oom |= (c->cmds[c->n_cmds++].line = strdup("DATA\r\n")) == NULL;
    }
    if (oom) {
        tx_clear(c);
        return -1;
    }
    c->n_rcpts = tx->n_rcpts;
    c->n_accepted = 0;
    c->mail_failed = c->discard_reply = false;
    memset(&c->err, 0, sizeof(c->err));
    memset(&c->data_reply, 0, sizeof(c->data_reply));
    c->fd = tx->fd;
    c->size = tx->size;
    c->tx_cb = cb;
    c->tx_arg = arg;
    cl_set_state(c, CL_TX);
    cl_timeout(c, c->t_cmd);
    if (c->ext.pipelining) {
        while (c->next_send < c->n_cmds)
            cl_send_next(c);
    } else {
        cl_send_next(c);
    }
    return 0;
}

/* ---- I/O callbacks ---- */

static void on_reply(struct smtp_client *c)
{
    const struct smtp_client_reply *r = &c->rp.reply;
    log_debug(c->sid, "event=smtp_client_reply state=%s code=%d lines=%d text=\"%.200s\"",
              cl_state_names[c->state], r->code, r->n_lines, r->text);
    switch (c->state) {
    case CL_TX:
        on_tx_reply(c, r);
        break;
    case CL_DATA_END:
        on_data_end_reply(c, r);
        break;
    case CL_QUIT:
        cl_set_state(c, CL_DEAD);
        smtp_client_free(c);
        break;
    case CL_READY:
    case CL_DATA_SEND:
        /* unsolicited: a server closing (421) or confused */
        cl_fail(c, r, "unexpected reply");
        break;
    case CL_CONNECT:
    case CL_TLS:
    case CL_DEAD:
        break;
    default:
        on_open_reply(c, r);
        break;
    }
}

static void cl_read_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    cl_enter(c);
    while (!c->freed && c->state != CL_DEAD && c->state != CL_TLS &&
           evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t used = 0;
        int rc = smtp_reply_parse(&c->rp, v.iov_base, v.iov_len, &used);
        evbuffer_drain(in, used);
        if (rc == SMTP_REPLY_BAD)
            cl_fail(c, NULL, "malformed reply");
        else if (rc == SMTP_REPLY_DONE)
            on_reply(c);
    }
    cl_leave(c);
}

static void cl_write_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_client *c = arg;
    cl_enter(c);
    if (c->state == CL_DATA_SEND)
        content_pump(c);
    cl_leave(c);
}

static void cl_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_client *c = arg;
    cl_enter(c);
    if (what & BEV_EVENT_CONNECTED) {
        if (c->state == CL_CONNECT) {
            cl_set_state(c, CL_BANNER);
            cl_timeout(c, c->t_cmd);
        } else if (c->state == CL_TLS) {
            tls_established(c);
        }
    } else if (what & BEV_EVENT_TIMEOUT) {
        cl_fail(c, NULL, "timeout");
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        int e = EVUTIL_SOCKET_ERROR();
        unsigned long ssl_err = c->state == CL_TLS ? bufferevent_get_openssl_error(bev) : 0;
        if (ssl_err != 0) {
            char buf[200];
            ERR_error_string_n(ssl_err, buf, sizeof(buf));
            cl_fail(c, NULL, "TLS handshake failed: %s", buf);
        } else if ((what & BEV_EVENT_ERROR) && e != 0) {
            cl_fail(c, NULL, "%s", evutil_socket_error_to_string(e));
        } else {
            cl_fail(c, NULL, "connection closed");
        }
    }
    cl_leave(c);
}

static void cl_later_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_client *c = arg;
    cl_enter(c);
    cl_fail(c, NULL, "%s", c->err.error[0] ? c->err.error : "connect failed");
    cl_leave(c);
}

struct smtp_client *smtp_client_connect(struct event_base *base, const struct smtp_client_opts *o,
                                        const struct sockaddr *sa, socklen_t salen,
                                        smtp_client_open_fn *open_cb, void *arg)
{
    struct smtp_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->base = base;
    str_copy(c->sid, o->sid ? o->sid : "", sizeof(c->sid));
    str_copy(c->helo, o->helo && o->helo[0] ? o->helo : "localhost", sizeof(c->helo));
    str_copy(c->peer, o->peer_name ? o->peer_name : "", sizeof(c->peer));
    c->tls_ctx = o->tls_ctx;
    c->tls_required = o->tls_required;
    c->no_chunking = o->no_chunking;
    c->t_connect = o->connect_timeout ? o->connect_timeout : 30;
    c->t_cmd = o->command_timeout ? o->command_timeout : 300;
    c->t_data = o->data_timeout ? o->data_timeout : 600;
    c->open_cb = open_cb;
    c->open_arg = arg;
    c->opening = true;
    c->fd = -1;
    if (o->auth_user != NULL) {
        c->auth_user = strdup(o->auth_user);
        c->auth_pass = strdup(o->auth_pass ? o->auth_pass : "");
    }
    c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    c->later = evtimer_new(base, cl_later_cb, c);
    if (c->bev == NULL || c->later == NULL ||
        (o->auth_user != NULL && (c->auth_user == NULL || c->auth_pass == NULL))) {
        cl_destroy(c);
        return NULL;
    }
    bufferevent_setcb(c->bev, cl_read_cb, cl_write_cb, cl_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, CL_OUT_LOW, 0);
    struct timeval tv = { (time_t)c->t_connect, 0 };
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)sa, (int)salen) < 0) {
        int e = EVUTIL_SOCKET_ERROR();
        snprintf(c->err.error, sizeof(c->err.error), "%s",
                 e ? evutil_socket_error_to_string(e) : "connect failed");
        struct timeval zero = { 0, 0 };
        evtimer_add(c->later, &zero);
    } else {
        /* Commands and the message go out in whole buffers: Nagle would
         * hold a transaction's last segment for the server's delayed ACK
         * (40 ms on Linux) on every message of a reused connection. */
        int one = 1;
        evutil_socket_t fd = bufferevent_getfd(c->bev);
        if (fd >= 0)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return c;
}

const struct smtp_ext *smtp_client_ext(const struct smtp_client *c)
{
    return &c->ext;
}

bool smtp_client_tls(const struct smtp_client *c, char *desc, size_t size)
{
    if (desc != NULL && size > 0)
        str_copy(desc, c->tls ? c->tls_desc : "", size);
    return c->tls;
}

void smtp_client_quit(struct smtp_client *c, smtp_client_closed_fn *closed, void *arg)
{
    if (c == NULL) {
        if (closed != NULL)
            closed(arg);
        return;
    }
    c->open_cb = NULL;
    c->tx_cb = NULL;
    c->closed_cb = closed;
    c->closed_arg = arg;
    if (c->state != CL_READY || c->freed) {
        smtp_client_free(c);
        return;
    }
    cl_set_state(c, CL_QUIT);
    cl_printf(c, "QUIT");
    cl_timeout(c, CL_QUIT_TIMEOUT);
}
