/*
 * IMAP server session (RFC 3501, RFC 9051): connection, command assembly
 * (lines and literals, bounded), dispatch through the command table,
 * replies, authentication on the pool, STARTTLS, IDLE, COMPRESS and
 * change notification.
 *
 * The session's reading state (s->io) is changed only by imap_set_io();
 * the protocol state (s->state) by imap_set_state().  Mailbox updates
 * are sent before each tagged OK/NO and, in IDLE, when the store tells us
 * something changed (store_imap_watch -> loop_call -> imap_watch_fire).
 */
#include "imap/imap_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <ctype.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <zlib.h>

#include "core/limits.h"
#include "core/log.h"
#include "core/pool.h"
#include "imap/imap_int.h"
#include "net/server.h"
#include "net/session.h"
#include "net/tls.h"
#include "store/store.h"

static const char *const io_names[] = { "cmd", "literal", "discard", "auth", "idle",
                                        "wait", "tls", "closing" };

static __thread struct imap_session *sessions_head;

static void imap_process_input(struct imap_session *s);
static void imap_free(struct imap_session *s);

struct store *imap_store(struct imap_session *s)
{
    return s->srv->store;
}

static void imap_set_io(struct imap_session *s, enum imap_io io)
{
    if (s->io == io)
        return;
    log_debug(s->sid, "event=io from=%s to=%s", io_names[s->io], io_names[io]);
    s->io = io;
}

static void imap_touch(struct imap_session *s)
{
    struct timeval tv = { s->state == IMAP_S_NOTAUTH ? IMAP_PREAUTH_SECS : IMAP_AUTOLOGOUT_SECS, 0 };
    if (s->io == IMAP_IO_IDLE)
        tv.tv_sec = IMAP_IDLE_SECS + 60;
    if (s->timer)
        event_add(s->timer, &tv);
}

/* ---- replies ---- */

void imap_send_raw(struct imap_session *s, const void *data, size_t len)
{
    if (s->bev && !s->dead)
        bufferevent_write(s->bev, data, len);
}

static void imap_vsend(struct imap_session *s, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void imap_vsend(struct imap_session *s, const char *fmt, va_list ap)
{
    net_send_vline(s->dead ? NULL : s->bev, s->sid, fmt, ap);
}

void imap_send(struct imap_session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    imap_vsend(s, fmt, ap);
    va_end(ap);
}

static void imap_tagged(struct imap_cmd *c, const char *status, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void imap_tagged(struct imap_cmd *c, const char *status, const char *fmt, va_list ap)
{
    struct imap_session *s = c->s;
    if (strcmp(status, "BAD") != 0 && s->state == IMAP_S_SELECTED)
        imap_sync(s, !c->no_expunge);
    char text[1536];
    vsnprintf(text, sizeof(text), fmt, ap);
    imap_send(s, "%s %s %s", c->tag, status, text);
}

void imap_ok(struct imap_cmd *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    imap_tagged(c, "OK", fmt, ap);
    va_end(ap);
}

void imap_no(struct imap_cmd *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    imap_tagged(c, "NO", fmt, ap);
    va_end(ap);
}

void imap_bad(struct imap_cmd *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    imap_tagged(c, "BAD", fmt, ap);
    va_end(ap);
    if (++c->s->errors >= IMAP_MAX_ERRORS)
        imap_close_with(c->s, "* BYE Too many invalid commands");
}

void imap_bad_syntax(struct imap_cmd *c)
{
    imap_bad(c, "Error in IMAP command %s: %s", c->name ? c->name : "",
             c->ps.error ? c->ps.error : "invalid arguments");
}

void imap_no_store(struct imap_cmd *c, const char *what)
{
    switch (store_error_kind()) {
    case STORE_ERR_NOTFOUND:
        imap_no(c, "[NONEXISTENT] %s", what);
        break;
    case STORE_ERR_EXISTS:
        imap_no(c, "[ALREADYEXISTS] %s", what);
        break;
    case STORE_ERR_INVALID:
        if (strcmp(store_error_text(), "OVERQUOTA") == 0)
            imap_no(c, "[OVERQUOTA] Quota exceeded");
        else
            imap_no(c, "[CANNOT] %s: %s", what, store_error_text());
        break;
    default:
        log_error(c->s->sid, "event=store_error error=\"%s\"", store_error_text());
        imap_no(c, "[SERVERBUG] %s: internal error", what);
    }
}

static bool imap_plaintext_ok(const struct imap_session *s)
{
    return s->tls || (s->loopback && s->cfg->plaintext_loopback);
}

void imap_capability_string(struct imap_session *s, struct strbuf *out)
{
    strbuf_printf(out, "IMAP4rev1 IMAP4rev2");
    if (s->state == IMAP_S_NOTAUTH) {
        if (!s->tls && s->srv->tls && s->role == ROLE_IMAP)
            strbuf_printf(out, " STARTTLS");
        if (imap_plaintext_ok(s))
            strbuf_printf(out, " AUTH=PLAIN");
        else
            strbuf_printf(out, " LOGINDISABLED");
    }
    strbuf_printf(out, " SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE"
                       " CHILDREN SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS"
                       " STATUS=SIZE CONDSTORE QRESYNC ESEARCH SEARCHRES QUOTA QUOTA=RES-STORAGE"
                       " BINARY SORT ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES");
    strbuf_printf(out, " APPENDLIMIT=%llu", (unsigned long long)s->cfg->message_size);
    if (!s->compressed && s->state != IMAP_S_NOTAUTH)
        strbuf_printf(out, " COMPRESS=DEFLATE");
}

/* ---- closing ---- */

static void imap_close_poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct imap_session *s = arg;
    if (net_close_poll(s->bev, s->close_ev, &s->close_polls))
        imap_free(s);
}

/* Sends a last line and closes once the output is flushed (polled, so
 * filters under the session's bufferevent are covered too). */
void imap_close_with(struct imap_session *s, const char *line)
{
    if (s->io == IMAP_IO_CLOSING)
        return;
    if (line)
        imap_send(s, "%s", line);
    imap_set_io(s, IMAP_IO_CLOSING);
    if (s->bev == NULL)
        return;
    bufferevent_disable(s->bev, EV_READ);
    if (s->close_ev == NULL)
        s->close_ev = evtimer_new(s->worker->base, imap_close_poll_cb, s);
    if (s->close_ev == NULL)
        return; /* freed by the write callback */
    struct timeval tv = { 0, 0 };
    evtimer_add(s->close_ev, &tv);
}

/* ---- change notification ---- */

/* Shared between the session (loop thread) and the store's notifying
 * threads: the session pointer is only touched on the loop. */
struct imap_watch_token {
    atomic_int refs;
    atomic_bool pending;
    struct imap_session *s;
    struct event_base *base;
    struct store_imap_watch *w;
};

static void token_unref(struct imap_watch_token *t)
{
    if (atomic_fetch_sub(&t->refs, 1) == 1)
        free(t);
}

static void imap_watch_fire(void *arg)
{
    struct imap_watch_token *t = arg;
    atomic_store(&t->pending, false);
    struct imap_session *s = t->s;
    if (s != NULL && s->io == IMAP_IO_IDLE && s->state == IMAP_S_SELECTED)
        imap_sync(s, true);
    token_unref(t);
}

static void imap_watch_cb(void *arg, int64_t account)
{
    struct imap_watch_token *t = arg;
    if (atomic_exchange(&t->pending, true))
        return;
    atomic_fetch_add(&t->refs, 1);
    loop_call(t->base, imap_watch_fire, t);
}

static void imap_watch_start(struct imap_session *s)
{
    struct imap_watch_token *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return;
    atomic_init(&t->refs, 1);
    atomic_init(&t->pending, false);
    t->s = s;
    t->base = s->worker->base;
    t->w = store_imap_watch_add(imap_store(s), s->account_id, imap_watch_cb, t);
    if (t->w == NULL) {
        free(t);
        return;
    }
    s->watch = t;
}

static void imap_watch_stop(struct imap_session *s)
{
    struct imap_watch_token *t = s->watch;
    if (t == NULL)
        return;
    store_imap_watch_remove(t->w);
    t->s = NULL;
    s->watch = NULL;
    token_unref(t);
}

/* ---- authentication ---- */

static void imap_auth_work(void *arg)
{
    struct imap_session *s = arg;
    int64_t id = store_user_auth(imap_store(s), s->user, s->auth_pass);
    explicit_bzero(s->auth_pass, sizeof(s->auth_pass));
    s->async_result = id > 0 ? 0 : id == 0 ? 1 : -1;
    if (id > 0)
        s->account_id = id;
}

static void imap_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    struct imap_session *s = arg;
    imap_send(s, "%s NO [AUTHENTICATIONFAILED] Authentication failed.", s->tag);
    if (s->auth_failures >= IMAP_MAX_AUTH_FAILS) {
        imap_close_with(s, "* BYE Too many authentication failures");
        return;
    }
    imap_resume(s);
}

static void imap_auth_done(void *arg)
{
    struct imap_session *s = arg;
    if (s->dead) {
        imap_free(s);
        return;
    }
    if (s->async_result == 0) {
        log_info(s->sid, "event=login user=%s", s->user);
        s->state = IMAP_S_AUTH;
        struct strbuf caps;
        strbuf_init(&caps, 4096);
        imap_capability_string(s, &caps);
        imap_send(s, "%s OK [CAPABILITY %.*s] Logged in", s->tag, (int)caps.len,
                  caps.data ? caps.data : "");
        strbuf_free(&caps);
        imap_watch_start(s);
        imap_resume(s);
        return;
    }
    if (s->async_result < 0) {
        imap_send(s, "%s NO [UNAVAILABLE] Temporary authentication failure", s->tag);
        imap_resume(s);
        return;
    }
    s->auth_failures++;
    log_info(s->sid, "event=auth_failed user=%s failures=%d", s->user, s->auth_failures);
    s->account_id = 0;
    /* growing delays against guessing (1s, 2s, 4s...) */
    struct timeval tv = { 1 << (s->auth_failures - 1 < 4 ? s->auth_failures - 1 : 4), 0 };
    if (s->delay_ev == NULL)
        s->delay_ev = evtimer_new(s->worker->base, imap_delay_cb, s);
    if (s->delay_ev == NULL)
        imap_delay_cb(-1, 0, s);
    else
        evtimer_add(s->delay_ev, &tv);
}

void imap_auth_start(struct imap_session *s, const char *tag, const char *user, const char *pass)
{
    str_copy(s->tag, tag, sizeof(s->tag));
    str_copy(s->user, user, sizeof(s->user));
    str_copy(s->auth_pass, pass, sizeof(s->auth_pass));
    s->async = true;
    imap_set_io(s, IMAP_IO_WAIT);
    bufferevent_disable(s->bev, EV_READ);
    pool_submit(s->worker->base, imap_auth_work, imap_auth_done, s);
}

void imap_resume(struct imap_session *s)
{
    if (s->dead) {
        imap_free(s);
        return;
    }
    if (s->io == IMAP_IO_CLOSING)
        return;
    s->async = false;
    if (s->drain_pending) {
        imap_close_with(s, "* BYE Server shutting down");
        return;
    }
    imap_set_io(s, IMAP_IO_CMD);
    imap_touch(s);
    bufferevent_enable(s->bev, EV_READ);
    imap_process_input(s);
}

/* ---- IDLE (RFC 2177) ---- */

void imap_idle_start(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    str_copy(s->tag, c->tag, sizeof(s->tag));
    s->async = true;
    imap_set_io(s, IMAP_IO_IDLE);
    if (s->state == IMAP_S_SELECTED)
        imap_sync(s, true);
    imap_send(s, "+ idling");
    s->idle_started = now_mono_ms();
    imap_touch(s);
}

static void imap_idle_line(struct imap_session *s, const char *line)
{
    s->async = false;
    imap_set_io(s, IMAP_IO_CMD);
    if (strcasecmp(line, "DONE") != 0) {
        imap_send(s, "%s BAD Expected DONE", s->tag);
        return;
    }
    if (s->state == IMAP_S_SELECTED)
        imap_sync(s, true);
    imap_send(s, "%s OK Idle completed", s->tag);
}

/* ---- STARTTLS ---- */

static void imap_read_cb(struct bufferevent *bev, void *arg);
static void imap_write_cb(struct bufferevent *bev, void *arg);
static void imap_event_cb(struct bufferevent *bev, short what, void *arg);

void imap_starttls(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    if (s->tls) {
        imap_bad(c, "TLS is already active");
        return;
    }
    if (s->srv->tls == NULL || s->role != ROLE_IMAP) {
        imap_no(c, "TLS not available");
        return;
    }
    SSL *ssl = SSL_new(s->srv->tls);
    if (ssl == NULL) {
        imap_no(c, "[UNAVAILABLE] TLS not available");
        return;
    }
    imap_send(s, "%s OK Begin TLS negotiation now", c->tag);
    /* Anything pipelined behind STARTTLS came in clear text: discard it
     * (RFC 9051 6.2.1, CVE-2011-0411 class). */
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t junk = evbuffer_get_length(in);
    if (junk > 0) {
        log_warn(s->sid, "event=starttls_pipelined_discarded bytes=%zu", junk);
        evbuffer_drain(in, junk);
    }
    struct bufferevent *tlsbev = bufferevent_openssl_filter_new(
        s->worker->base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (tlsbev == NULL) {
        SSL_free(ssl);
        imap_close_with(s, "* BYE TLS setup failed");
        return;
    }
    s->bev = tlsbev;
    s->ssl = ssl;
    imap_set_io(s, IMAP_IO_TLS);
    s->async = true;
    bufferevent_setcb(tlsbev, imap_read_cb, imap_write_cb, imap_event_cb, s);
    bufferevent_enable(tlsbev, EV_READ | EV_WRITE);
}

/* ---- COMPRESS=DEFLATE (RFC 4978) ---- */

struct imap_zctx {
    z_stream in, out;
};

static enum bufferevent_filter_result z_filter(struct evbuffer *src, struct evbuffer *dst,
                                               z_stream *z, bool inflating,
                                               enum bufferevent_flush_mode mode)
{
    unsigned char outbuf[16384];
    for (;;) {
        size_t avail = evbuffer_get_length(src);
        unsigned char *data = avail ? evbuffer_pullup(src, (ssize_t)(avail > 65536 ? 65536 : avail)) : NULL;
        size_t take = avail > 65536 ? 65536 : avail;
        z->next_in = data;
        z->avail_in = (uInt)take;
        z->next_out = outbuf;
        z->avail_out = sizeof(outbuf);
        int rc = inflating ? inflate(z, Z_SYNC_FLUSH)
                           : deflate(z, mode != BEV_NORMAL || take == avail ? Z_SYNC_FLUSH
                                                                             : Z_NO_FLUSH);
        size_t used = take - z->avail_in;
        evbuffer_drain(src, used);
        size_t produced = sizeof(outbuf) - z->avail_out;
        if (produced)
            evbuffer_add(dst, outbuf, produced);
        if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END)
            return BEV_ERROR;
        if (used == 0 && produced < sizeof(outbuf))
            return BEV_OK;
    }
}

static enum bufferevent_filter_result z_input(struct evbuffer *src, struct evbuffer *dst,
                                              ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                              void *ctx)
{
    struct imap_zctx *z = ctx;
    return z_filter(src, dst, &z->in, true, mode);
}

static enum bufferevent_filter_result z_output(struct evbuffer *src, struct evbuffer *dst,
                                               ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                               void *ctx)
{
    struct imap_zctx *z = ctx;
    return z_filter(src, dst, &z->out, false, mode);
}

static void z_free(void *ctx)
{
    struct imap_zctx *z = ctx;
    inflateEnd(&z->in);
    deflateEnd(&z->out);
    free(z);
}

/* Wraps the session's bufferevent in raw deflate both ways.  The caller
 * has queued the tagged OK first (it goes out uncompressed). 0 or -1. */
int imap_compress_start(struct imap_session *s)
{
    struct imap_zctx *z = calloc(1, sizeof(*z));
    if (z == NULL)
        return -1;
    if (inflateInit2(&z->in, -15) != Z_OK) {
        free(z);
        return -1;
    }
    if (deflateInit2(&z->out, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        inflateEnd(&z->in);
        free(z);
        return -1;
    }
    /* the OK must leave uncompressed: move what is queued below the filter */
    struct bufferevent *zbev = bufferevent_filter_new(s->bev, z_input, z_output,
                                                      BEV_OPT_CLOSE_ON_FREE, z_free, z);
    if (zbev == NULL) {
        z_free(z);
        return -1;
    }
    /* input already buffered after COMPRESS is compressed data */
    struct evbuffer *old_in = bufferevent_get_input(s->bev);
    if (evbuffer_get_length(old_in) > 0) {
        struct evbuffer *tmp = evbuffer_new();
        evbuffer_add_buffer(tmp, old_in);
        z_filter(tmp, bufferevent_get_input(zbev), &z->in, true, BEV_NORMAL);
        evbuffer_free(tmp);
    }
    s->bev = zbev;
    s->compressed = true;
    bufferevent_setcb(zbev, imap_read_cb, imap_write_cb, imap_event_cb, s);
    bufferevent_enable(zbev, EV_READ | EV_WRITE);
    return 0;
}

/* ---- command execution ---- */

static void imap_cmd_free(struct imap_cmd *c)
{
    imap_pool_clear(&c->pool);
    strbuf_free(&c->text);
    free(c);
}

void imap_cmd_defer(struct imap_cmd *c, void (*work)(struct imap_cmd *c),
                    void (*done)(struct imap_cmd *c), void *job)
{
    struct imap_session *s = c->s;
    c->deferred = true;
    c->work = work;
    c->done = done;
    c->job = job;
    s->async = true;
    imap_set_io(s, IMAP_IO_WAIT);
    bufferevent_disable(s->bev, EV_READ);
    /* submitted by imap_execute once the command text is the command's */
}

static void imap_deferred_work(void *arg)
{
    struct imap_cmd *c = arg;
    store_error_set(STORE_ERR_NONE, "");
    c->work(c);
    c->err_kind = store_error_kind();
    str_copy(c->err_text, store_error_text(), sizeof(c->err_text));
}

static void imap_deferred_done(void *arg)
{
    struct imap_cmd *c = arg;
    struct imap_session *s = c->s;
    if (s->dead) {
        imap_cmd_free(c);
        imap_free(s);
        return;
    }
    store_error_set(c->err_kind, c->err_text);
    c->done(c);
    imap_cmd_free(c);
    imap_resume(s);
}

static void imap_execute(struct imap_session *s, const char *buf, size_t len)
{
    struct imap_cmd *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        imap_close_with(s, "* BYE Out of memory");
        return;
    }
    c->s = s;
    imap_pool_init(&c->pool, IMAP_CMD_MAX + 2 * (size_t)s->cfg->message_size + 65536);
    imap_parser_init(&c->ps, buf, len, &c->pool);
    if (imap_parse_tag(&c->ps, &c->tag) < 0 || imap_parse_sp(&c->ps) < 0 ||
        imap_parse_atom(&c->ps, &c->name) < 0) {
        if (c->tag == NULL)
            imap_send(s, "* BAD Error in IMAP command: missing tag");
        else
            imap_send(s, "%s BAD Error in IMAP command: missing command name", c->tag);
        if (++s->errors >= IMAP_MAX_ERRORS)
            imap_close_with(s, "* BYE Too many invalid commands");
        imap_cmd_free(c);
        return;
    }
    for (char *p = c->name; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    if (strcmp(c->name, "UID") == 0) {
        c->uid = true;
        if (imap_parse_sp(&c->ps) < 0 || imap_parse_atom(&c->ps, &c->name) < 0) {
            imap_bad(c, "Error in IMAP command UID: missing command");
            imap_cmd_free(c);
            return;
        }
        for (char *p = c->name; *p; p++)
            *p = (char)toupper((unsigned char)*p);
    }
    log_debug(s->sid, "event=command tag=%s name=%s%s", c->tag, c->uid ? "UID " : "", c->name);
    const struct imap_command_def *def = imap_command_find(c->name);
    if (def == NULL || (c->uid && !(def->flags & IMAP_CMD_UID))) {
        imap_bad(c, "Error in IMAP command received by server: unknown command");
    } else if (s->state == IMAP_S_NOTAUTH && !(def->flags & IMAP_CMD_NOTAUTH)) {
        imap_bad(c, "Command not allowed before authentication");
    } else if (s->state != IMAP_S_NOTAUTH && !(def->flags & IMAP_CMD_AUTH)) {
        imap_bad(c, "Command not allowed after authentication");
    } else if ((def->flags & IMAP_CMD_SELECTED) && s->state != IMAP_S_SELECTED) {
        imap_bad(c, "No mailbox selected");
    } else {
        c->no_expunge = (def->flags & IMAP_CMD_NOEXP) && !c->uid;
        def->fn(c);
    }
    if (!c->deferred) {
        imap_cmd_free(c);
        return;
    }
    /* the parsed arguments point into the command text: the command
     * keeps it (s->cmd starts afresh) */
    if (buf == s->cmd.data) {
        c->text = s->cmd;
        s->cmd.data = NULL;
        s->cmd.len = s->cmd.alloc = 0;
    }
    pool_submit(s->worker->base, imap_deferred_work, imap_deferred_done, c);
}

/* ---- input ---- */

/* The limit for the literal about to be read: APPEND may carry a message
 * of the configured size; everything else is a small command. */
static uint64_t imap_literal_limit(struct imap_session *s)
{
    if (s->state == IMAP_S_NOTAUTH)
        return IMAP_LINE_MAX_PREAUTH;
    const char *p = memchr(s->cmd.data, ' ', s->cmd.len);
    if (p != NULL && (size_t)(s->cmd.data + s->cmd.len - p) > 7 && strncasecmp(p + 1, "APPEND ", 7) == 0)
        return s->cfg->message_size;
    return IMAP_CMD_MAX;
}

static void imap_cmd_reset(struct imap_session *s)
{
    strbuf_free(&s->cmd);
    strbuf_init(&s->cmd, IMAP_CMD_MAX + (size_t)s->cfg->message_size + IMAP_LINE_MAX);
}

static void imap_copy_tag(const char *line, size_t len, char *tag, size_t size)
{
    size_t n = 0;
    while (n < len && n + 1 < size && line[n] != ' ' && line[n] != '\r' && line[n] != '\n')
        n++;
    memcpy(tag, line, n);
    tag[n] = '\0';
    if (n == 0)
        str_copy(tag, "*", size);
}

/* A complete line (CR LF removed) of a command in assembly. */
static void imap_command_line(struct imap_session *s, const char *line, size_t len)
{
    uint64_t n;
    bool nonsync;
    int lit = imap_line_literal(line, len, &n, &nonsync);
    if (strbuf_append(&s->cmd, line, len) < 0) {
        char tag[IMAP_TAG_MAX + 1];
        imap_copy_tag(s->cmd.data ? s->cmd.data : line, s->cmd.data ? s->cmd.len : len, tag,
                      sizeof(tag));
        imap_send(s, "%s BAD [TOOBIG] Command too long", tag);
        imap_cmd_reset(s);
        return;
    }
    if (lit < 0) {
        char tag[IMAP_TAG_MAX + 1];
        imap_copy_tag(s->cmd.data, s->cmd.len, tag, sizeof(tag));
        imap_send(s, "%s BAD Invalid literal size", tag);
        imap_cmd_reset(s);
        return;
    }
    if (lit == 0) {
        imap_execute(s, s->cmd.data ? s->cmd.data : "", s->cmd.len);
        imap_cmd_reset(s);
        return;
    }
    uint64_t limit = imap_literal_limit(s);
    if (n > limit || s->cmd.len + n + 2 > s->cmd.cap) {
        imap_copy_tag(s->cmd.data, s->cmd.len, s->discard_tag, sizeof(s->discard_tag));
        if (!nonsync) {
            /* the client waits for "+": it will not send the literal */
            imap_send(s, "%s NO [TOOBIG] Literal too large (limit %llu)", s->discard_tag,
                      (unsigned long long)limit);
            imap_cmd_reset(s);
            return;
        }
        s->lit_left = n;
        s->discard_toobig = true;
        imap_cmd_reset(s);
        imap_set_io(s, IMAP_IO_DISCARD);
        return;
    }
    strbuf_append(&s->cmd, "\r\n", 2);
    s->lit_left = n;
    if (!nonsync)
        imap_send(s, "+ OK");
    imap_set_io(s, IMAP_IO_LITERAL);
}

/* Reads one line.  1 with the line in *line_r (malloc'ed, CR LF
 * removed), 0 if incomplete, -1 if an over-long line was skipped. */
static int imap_read_line(struct imap_session *s, struct evbuffer *in, char **line_r, size_t *len_r)
{
    size_t eol_len;
    size_t max = s->state == IMAP_S_NOTAUTH ? IMAP_LINE_MAX_PREAUTH : IMAP_LINE_MAX;
    struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
    if (p.pos < 0) {
        size_t have = evbuffer_get_length(in);
        if (have > max) {
            if (s->discard_tag[0] == '\0') {
                char head[IMAP_TAG_MAX + 1];
                ev_ssize_t got = evbuffer_copyout(in, head, sizeof(head) - 1);
                imap_copy_tag(head, got > 0 ? (size_t)got : 0, s->discard_tag,
                              sizeof(s->discard_tag));
            }
            evbuffer_drain(in, have);
            s->discard_line = true;
        }
        return 0;
    }
    size_t len = (size_t)p.pos;
    if (s->discard_line || len + 1 > max) {
        if (s->discard_tag[0] == '\0') {
            char head[IMAP_TAG_MAX + 1];
            ev_ssize_t got = evbuffer_copyout(in, head, sizeof(head) - 1);
            imap_copy_tag(head, got > 0 ? (size_t)got : 0, s->discard_tag, sizeof(s->discard_tag));
        }
        evbuffer_drain(in, len + 1);
        s->discard_line = false;
        imap_send(s, "%s BAD [TOOBIG] Command line too long", s->discard_tag);
        s->discard_tag[0] = '\0';
        imap_cmd_reset(s);
        if (++s->errors >= IMAP_MAX_ERRORS)
            imap_close_with(s, "* BYE Too many invalid commands");
        return -1;
    }
    char *line = malloc(len + 1);
    if (line == NULL)
        return -1;
    evbuffer_remove(in, line, len + 1);
    if (len > 0 && line[len - 1] == '\r')
        len--;
    line[len] = '\0';
    *line_r = line;
    *len_r = len;
    return 1;
}

static void imap_feed_literal(struct imap_session *s, struct evbuffer *in)
{
    while (s->lit_left > 0 && evbuffer_get_length(in) > 0) {
        char buf[16384];
        size_t want = s->lit_left < sizeof(buf) ? (size_t)s->lit_left : sizeof(buf);
        int got = evbuffer_remove(in, buf, want);
        if (got <= 0)
            break;
        if (s->io == IMAP_IO_LITERAL)
            strbuf_append(&s->cmd, buf, (size_t)got);
        s->lit_left -= (uint64_t)got;
    }
    if (s->lit_left > 0)
        return;
    imap_set_io(s, IMAP_IO_CMD);
}

static void imap_process_input(struct imap_session *s)
{
    if (s->bev == NULL)
        return;
    struct evbuffer *in = bufferevent_get_input(s->bev);
    for (;;) {
        char *line;
        size_t len;
        switch (s->io) {
        case IMAP_IO_LITERAL:
        case IMAP_IO_DISCARD:
            imap_feed_literal(s, in);
            if (s->io != IMAP_IO_CMD)
                return;
            continue;
        case IMAP_IO_CMD:
        case IMAP_IO_AUTH:
        case IMAP_IO_IDLE: {
            int rc = imap_read_line(s, in, &line, &len);
            if (rc == 0)
                return;
            if (rc < 0) {
                if (s->io == IMAP_IO_AUTH || s->io == IMAP_IO_IDLE)
                    imap_set_io(s, IMAP_IO_CMD);
                continue;
            }
            if (s->discard_toobig) {
                /* the rest of a command whose literal was too large */
                s->discard_toobig = false;
                s->discard_line = false;
                imap_send(s, "%s NO [TOOBIG] Literal too large", s->discard_tag);
                s->discard_tag[0] = '\0';
            } else if (s->io == IMAP_IO_AUTH) {
                imap_set_io(s, IMAP_IO_CMD);
                imap_auth_continue(s, line);
            } else if (s->io == IMAP_IO_IDLE) {
                imap_idle_line(s, line);
            } else {
                imap_command_line(s, line, len);
            }
            explicit_bzero(line, len);
            free(line);
            continue;
        }
        default:
            return;
        }
    }
}

static void imap_read_cb(struct bufferevent *bev, void *arg)
{
    struct imap_session *s = arg;
    if (s->io != IMAP_IO_WAIT && s->io != IMAP_IO_CLOSING && s->io != IMAP_IO_IDLE)
        imap_touch(s);
    imap_process_input(s);
    if (s->logout_after)
        imap_close_with(s, NULL);
}

static void imap_write_cb(struct bufferevent *bev, void *arg)
{
    struct imap_session *s = arg;
    if (s->io == IMAP_IO_CLOSING && s->close_ev == NULL)
        imap_free(s);
}

static void imap_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct imap_session *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        s->tls = true;
        char desc[128];
        tls_describe(s->ssl, desc, sizeof(desc));
        log_info(s->sid, "event=tls %s", desc);
        if (s->io == IMAP_IO_TLS) {
            s->async = false;
            imap_set_io(s, IMAP_IO_CMD);
            imap_process_input(s);
        }
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        log_info(s->sid, "event=disconnect reason=%s io=%s", (what & BEV_EVENT_EOF) ? "eof" : "error",
                 io_names[s->io]);
        if (s->io == IMAP_IO_WAIT) {
            s->dead = true;
            bufferevent_disable(s->bev, EV_READ | EV_WRITE);
            return;
        }
        imap_free(s);
    }
}

static void imap_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct imap_session *s = arg;
    if (s->io == IMAP_IO_WAIT || s->io == IMAP_IO_CLOSING)
        return;
    log_info(s->sid, "event=timeout io=%s", io_names[s->io]);
    imap_close_with(s, "* BYE Autologout; idle for too long");
}

static void imap_free(struct imap_session *s)
{
    if (s->io == IMAP_IO_WAIT && !s->dead) {
        s->dead = true;
        if (s->bev)
            bufferevent_disable(s->bev, EV_READ | EV_WRITE);
        return;
    }
    log_info(s->sid, "event=close");
    imap_watch_stop(s);
    imap_view_close(s);
    strbuf_free(&s->cmd);
    if (s->next)
        s->next->prev = s->prev;
    if (s->prev)
        s->prev->next = s->next;
    else if (sessions_head == s)
        sessions_head = s->next;
    struct event *evs[] = { s->timer, s->delay_ev, s->close_ev };
    net_session_release(s->srv, s->ip, s->bev, evs, sizeof(evs) / sizeof(evs[0]));
    explicit_bzero(s->auth_pass, sizeof(s->auth_pass));
    free(s);
}

static void imap_accept(struct net_conn *c)
{
    struct imap_session *s = calloc(1, sizeof(*s));
    struct server *srv = c->srv;
    if (s == NULL) {
        close(c->fd);
        server_conn_closed(srv, c->ip);
        free(c);
        return;
    }
    server_session_begin(srv);
    str_copy(s->sid, c->sid, sizeof(s->sid));
    s->srv = srv;
    s->worker = c->worker;
    s->cfg = atomic_load(&srv->cfg);
    s->role = c->role;
    str_copy(s->ip, c->ip, sizeof(s->ip));
    s->loopback = c->loopback;
    strbuf_init(&s->cmd, IMAP_LINE_MAX_PREAUTH);
    struct event_base *base = c->worker->base;
    if (c->role == ROLE_IMAPS) {
        SSL *ssl = srv->tls ? SSL_new(srv->tls) : NULL;
        s->ssl = ssl;
        s->tls = true; /* implicit TLS: nothing is read before the handshake */
        s->bev = ssl ? bufferevent_openssl_socket_new(base, c->fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                      BEV_OPT_CLOSE_ON_FREE)
                     : NULL;
        if (s->bev == NULL)
            close(c->fd);
    } else {
        s->bev = bufferevent_socket_new(base, c->fd, BEV_OPT_CLOSE_ON_FREE);
    }
    log_info(s->sid, "event=connect ip=%s port=%d role=%s", s->ip, c->port,
             listen_role_names[s->role]);
    free(c);
    s->next = sessions_head;
    if (sessions_head)
        sessions_head->prev = s;
    sessions_head = s;
    s->timer = evtimer_new(base, imap_timeout_cb, s);
    if (s->bev == NULL || s->timer == NULL) {
        imap_free(s);
        return;
    }
    imap_cmd_reset(s);
    bufferevent_setcb(s->bev, imap_read_cb, imap_write_cb, imap_event_cb, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    imap_touch(s);
    struct strbuf caps;
    strbuf_init(&caps, 4096);
    imap_capability_string(s, &caps);
    imap_send(s, "* OK [CAPABILITY %.*s] %s postel IMAP ready", (int)caps.len,
              caps.data ? caps.data : "", s->cfg->hostname);
    strbuf_free(&caps);
}

static void imap_drain(struct worker *w)
{
    struct imap_session *s = sessions_head, *next;
    for (; s; s = next) {
        next = s->next;
        if (s->io == IMAP_IO_CLOSING)
            continue;
        if (s->io == IMAP_IO_WAIT) {
            s->drain_pending = true;
            continue;
        }
        imap_close_with(s, "* BYE Server shutting down");
    }
}

static const struct proto_ops imap_ops = {
    .accept = imap_accept,
    .busy_reply = "* BYE Too many connections from your address\r\n",
    .drain = imap_drain,
};

void imap_server_register(void)
{
    server_register(ROLE_IMAP, &imap_ops);
    server_register(ROLE_IMAPS, &imap_ops);
}
