/*
 * SMTP server session (RFC 5321 with ESMTP extensions).
 *
 * Shape (after OpenSMTPD): one session struct, an explicit state that only
 * smtp_set_state() changes, a command table with flags, and for each
 * command a handler that checks and then proceeds.  Asynchronous steps
 * (password check on the pool, durable commit in the store) put the session
 * in SMTP_S_WAIT with reading paused; their completion comes back on the
 * session's own loop through one path (smtp_resume).
 */
#include "smtp/smtp_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <errno.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "auth/authres.h"
#include "auth/dkim.h"
#include "auth/spf.h"
#include "filter/filter.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/pool.h"
#include "core/util.h"
#include "net/server.h"
#include "net/session.h"
#include "net/tls.h"
#include "smtp/smtp_parse.h"
#include "store/store.h"

enum smtp_state {
    SMTP_S_CMD,       /* reading command lines */
    SMTP_S_AUTH,      /* reading a SASL response line */
    SMTP_S_DATA,      /* reading DATA content */
    SMTP_S_BDAT,      /* reading a BDAT chunk */
    SMTP_S_WAIT,      /* an asynchronous step runs; reading paused */
    SMTP_S_TLS,       /* TLS handshake after STARTTLS */
    SMTP_S_CLOSING,   /* flushing the last reply, then free */
};

static const char *const state_names[] = {
    "cmd", "auth", "data", "bdat", "wait", "tls", "closing",
};

#define MAX_TARGETS_PER_RCPT 16
#define SMTP_RESULT_POLICY 2 /* async_result: refused by the sender's DMARC policy */
/* A message being checked stays in memory up to this size; beyond it, the
 * rest goes to an unnamed scratch file (store_spool_open). */
#define SMTP_SPOOL_MEM (256 * 1024)
#define SMTP_ADDED_HEADERS_EST 1024
#define SMTP_PEND_MAX (16 * 1024)     /* replies gathered per read, then sent */   /* X-Spam and the like, for the size hint */

struct smtp_rcpt {
    struct smtp_path path;
    struct smtp_rcpt_params params;
    struct store_rcpt_target targets[MAX_TARGETS_PER_RCPT];
    int n_targets;
};

/* One mail transaction: from MAIL to the end of DATA/BDAT LAST or RSET. */
struct smtp_tx {
    bool active;                  /* MAIL accepted */
    struct smtp_path from;
    struct smtp_mail_params params;
    struct smtp_rcpt *rcpts;      /* grown on demand: most mail has one */
    int n_rcpts, cap_rcpts;
    struct store_tx *stx;
    struct smtp_data_decoder dec;
    bool write_failed;
    bool bdat;                    /* BDAT used in this transaction */
    bool bdat_failed;             /* a BDAT chunk was refused: discard the rest */
    unsigned seq;
    /* Filtered transactions (checks on smtp, signing on submission) are
     * spooled whole, then stored by smtp_filter_work on the pool. */
    bool filtered;
    int spool_fd;
    struct strbuf spool_buf;
    struct strbuf received;       /* our Received header, made at DATA */
    bool spf_checked, spf_pass;   /* SPF for an allow-listed sender domain (RCPT) */
};

enum auth_step { AUTH_PLAIN_RESP, AUTH_LOGIN_USER, AUTH_LOGIN_PASS };

struct smtp_session {
    struct smtp_session *next, *prev;     /* per-loop list, for draining */
    char sid[16];
    struct server *srv;
    struct worker *worker;
    const struct config *cfg;
    enum listen_role role;
    char ip[64];
    int port;
    bool loopback;
    struct bufferevent *bev;
    SSL *ssl;
    bool tls;
    bool batching;                        /* replies gather in pend (smtp_read_cb) */
    struct strbuf pend;                   /* replies to one read, sent together */
    char tls_desc[128];
    enum smtp_state state;
    bool ehlo_done, esmtp;
    char helo[SMTP_DOMAIN_MAX + 1];
    int64_t account_id;
    char auth_user[ADDRESS_MAX];
    int auth_failures;
    enum auth_step auth_step;
    char auth_mech[8];
    int errors;
    bool discarding;              /* inside an over-long line */
    uint64_t bdat_remaining;
    bool bdat_last;
    struct event *timer;
    struct event *delay_ev;       /* AUTH failure delay */
    struct event *close_ev;       /* polls the TLS flush before closing */
    struct event *greet_ev;       /* [postscreen] greet_wait before the banner */
    int close_polls;
    char delayed_reply[128];
    bool dead;                    /* connection gone while an async step runs */
    bool drain_pending;           /* close after the current transaction */
    struct smtp_tx tx;
    unsigned tx_count;
    struct filter_conn *fc;       /* anti-spam state; NULL when no engine */
    struct filter_verdict fv;     /* verdict of the stage running on the pool */
    int fstage;                   /* enum smtp_fstage running */
    /* async results */
    int async_result;
    char async_id[64];
    char async_error[256];
    char auth_pass[512];
};

static __thread struct smtp_session *sessions_head;
static smtp_commit_hook_fn *commit_hook;
static void *commit_hook_arg;

void smtp_server_set_commit_hook(smtp_commit_hook_fn *fn, void *arg)
{
    commit_hook = fn;
    commit_hook_arg = arg;
}

static smtp_capture_auth_fn *capture_auth;
void smtp_server_set_capture_auth(smtp_capture_auth_fn *fn)
{
    capture_auth = fn;
}

static void smtp_process_input(struct smtp_session *s);
static void smtp_free(struct smtp_session *s);

/* ---- state and replies ---- */

static void smtp_set_state(struct smtp_session *s, enum smtp_state st)
{
    if (s->state == st)
        return;
    log_debug(s->sid, "event=state from=%s to=%s", state_names[s->state], state_names[st]);
    s->state = st;
}

static void smtp_reply(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Sends the replies gathered while input was processed. */
static void smtp_flush(struct smtp_session *s)
{
    if (s->pend.len > 0)
        net_write(s->bev, s->pend.data, s->pend.len);
    strbuf_reset(&s->pend);
}

/* A reply: on a plain connection straight to the socket, the replies to
 * pipelined commands in one write (smtp_read_cb); through TLS, by the
 * bufferevent. */
static void smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
    char line[NET_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    size_t n = net_format_vline(line, s->sid, fmt, ap);
    va_end(ap);
    if (s->bev == NULL || n == 0)
        return;
    if (s->batching && strbuf_append(&s->pend, line, n) == 0)
        return;
    smtp_flush(s); /* what was gathered goes first */
    net_write(s->bev, line, n);
}

static void smtp_reply_parsed(struct smtp_session *s, const struct smtp_reply *r)
{
    smtp_reply(s, "%d %s %s", r->code, r->status, r->text);
}

static void smtp_free_later(void *arg)
{
    smtp_free(arg);
}

static void smtp_close_poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;
    if (net_close_poll(s->bev, s->close_ev, &s->close_polls))
        smtp_free(s);
}

/* Sends a final reply and closes once it is on its way.  On a plain
 * connection with output still queued the write callback frees the
 * session; otherwise (all sent, or a TLS filter handing its bytes to the
 * socket below it) the close timer polls the output (bounded), so the
 * session is never freed under its caller. */
static void smtp_close_with(struct smtp_session *s, const char *text)
{
    if (text)
        smtp_reply(s, "%s", text);
    smtp_set_state(s, SMTP_S_CLOSING);
    if (s->bev == NULL)
        return;
    smtp_flush(s);
    bufferevent_disable(s->bev, EV_READ);
    if (bufferevent_get_underlying(s->bev) == NULL &&
        evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
        return;
    if (s->close_ev == NULL)
        s->close_ev = evtimer_new(s->worker->base, smtp_close_poll_cb, s);
    if (s->close_ev == NULL) {
        loop_call(s->worker->base, smtp_free_later, s);
        return;
    }
    /* the first poll from the loop: the caller may still be using s */
    struct timeval now = { 0, 0 };
    evtimer_add(s->close_ev, &now);
}

/* A 5xx for bad input: counts towards the junk-command limit. */
static void smtp_error(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void smtp_error(struct smtp_session *s, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    smtp_reply(s, "%s", line);
    log_info(s->sid, "event=reject reply=\"%s\"", line);
    if (++s->errors >= SMTP_MAX_ERRORS)
        smtp_close_with(s, "421 4.7.0 Too many errors, closing connection");
}

static void smtp_touch(struct smtp_session *s)
{
    struct timeval tv = { (time_t)s->cfg->idle_timeout, 0 };
    if (s->timer)
        event_add(s->timer, &tv);
}

/* ---- transactions ---- */

static void smtp_tx_reset(struct smtp_session *s)
{
    struct smtp_tx *tx = &s->tx;
    if (tx->stx)
        store_tx_abort(tx->stx);
    if (tx->filtered && tx->spool_fd >= 0)
        close(tx->spool_fd);
    strbuf_free(&tx->spool_buf);
    strbuf_free(&tx->received);
    free(tx->rcpts);
    memset(tx, 0, sizeof(*tx));
}

static const char *smtp_with_protocol(const struct smtp_session *s)
{
    /* RFC 3848 and RFC 6531 protocol names for the Received header. */
    static const char *const names[2][2][2] = {
        { { "ESMTP", "ESMTPA" }, { "ESMTPS", "ESMTPSA" } },
        { { "UTF8SMTP", "UTF8SMTPA" }, { "UTF8SMTPS", "UTF8SMTPSA" } },
    };
    if (!s->esmtp)
        return "SMTP";
    return names[s->tx.params.smtputf8][s->tls][s->account_id > 0];
}

static void rfc5322_date(char *buf, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(buf, size, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/* The trace header of RFC 5321 4.4, put before the message data. */
static void smtp_make_received(struct smtp_session *s, struct strbuf *out)
{
    struct strbuf *sb = out;
    char date[64];
    strbuf_init(sb, 4096);
    rfc5322_date(date, sizeof(date));
    strbuf_printf(sb, "Received: from %s ([%s])\r\n\tby %s (postel) with %s id %s.%u",
                  s->helo[0] ? s->helo : "unknown", s->ip, s->cfg->hostname,
                  smtp_with_protocol(s), s->sid, s->tx.seq);
    if (s->tls)
        strbuf_printf(sb, "\r\n\t(%s)", s->tls_desc);
    if (s->tx.n_rcpts == 1)
        strbuf_printf(sb, "\r\n\tfor <%s>", s->tx.rcpts[0].path.mailbox);
    strbuf_printf(sb, ";\r\n\t%s\r\n", date);
}

/* Flattens RCPTs into the store's recipient list (deduplicated, local
 * copies filed into mailbox) and opens the store transaction.  NULL with
 * *error_r on failure.  Runs on the loop or, for filtered transactions, on
 * a pool thread while the session waits. */
static struct store_tx *smtp_store_begin(struct smtp_session *s, const char *mailbox,
                                         uint64_t size_hint, const char **error_r)
{
    struct smtp_tx *tx = &s->tx;
    int total = 0;
    for (int i = 0; i < tx->n_rcpts; i++)
        total += tx->rcpts[i].n_targets;
    struct store_tx_rcpt *list = calloc((size_t)total, sizeof(*list));
    if (list == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    size_t n = 0;
    for (int i = 0; i < tx->n_rcpts; i++) {
        struct smtp_rcpt *r = &tx->rcpts[i];
        for (int t = 0; t < r->n_targets; t++) {
            const struct store_rcpt_target *tg = &r->targets[t];
            bool dup = false;
            for (size_t k = 0; k < n && !dup; k++)
                dup = list[k].target->kind == tg->kind &&
                      (tg->kind == STORE_RCPT_LOCAL ? list[k].target->account_id == tg->account_id
                                                    : strcasecmp(list[k].target->address,
                                                                 tg->address) == 0);
            if (dup)
                continue;
            list[n].address = r->path.is_postmaster ? tg->address : r->path.mailbox;
            list[n].target = tg;
            list[n].mailbox = mailbox;
            list[n].orcpt = r->params.orcpt[0] ? r->params.orcpt : NULL;
            list[n].notify = r->params.notify;
            n++;
        }
    }
    struct store_envelope env = {
        .sender = tx->from.mailbox,
        .envid = tx->params.envid[0] ? tx->params.envid : NULL,
        .ret = tx->params.ret[0] ? tx->params.ret : NULL,
        .smtputf8 = tx->params.smtputf8,
        .body_8bit = tx->params.body == SMTP_BODY_8BITMIME,
        .rcpts = list,
        .n_rcpts = n,
        .submitter_account = s->account_id,
        .size_hint = size_hint,
    };
    struct store_tx *stx = store_tx_begin(s->srv->store, &env, error_r);
    free(list);
    return stx;
}

/* Messages that must be seen whole before they are stored: everything the
 * MX receives (SPF/DKIM/DMARC, Authentication-Results) and submissions
 * when DKIM signing may apply. */
static bool smtp_tx_needs_filter(const struct smtp_session *s)
{
    if (s->cfg->capture)
        return false;
    if (s->role == ROLE_SMTP)
        return true;
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/dkim", s->cfg->data_dir);
    return s->account_id > 0 && (s->cfg->n_dkim > 0 || access(dir, F_OK) == 0);
}

/* Prepares the transaction for its data: a store transaction for plain
 * ones, a spool for filtered ones.  Returns 0 or -1 after replying. */
static int smtp_tx_open(struct smtp_session *s)
{
    struct smtp_tx *tx = &s->tx;
    const char *err = NULL;
    smtp_make_received(s, &tx->received);
    tx->filtered = smtp_tx_needs_filter(s);
    if (tx->filtered) {
        /* the message is held in memory up to SMTP_SPOOL_MEM and goes to
         * a scratch file only beyond that: most mail never makes one */
        tx->spool_fd = -1;
        strbuf_init(&tx->spool_buf, SMTP_SPOOL_MEM);
    } else {
        tx->stx = smtp_store_begin(s, "INBOX", 0, &err);
        if (tx->stx == NULL) {
            log_error(s->sid, "event=store_error op=tx_begin error=\"%s\"", err ? err : "?");
            smtp_reply(s, "452 4.3.1 Insufficient system storage");
            return -1;
        }
        if (tx->received.data == NULL ||
            store_tx_write(tx->stx, tx->received.data, tx->received.len) < 0)
            tx->write_failed = true;
    }
    smtp_data_init(&tx->dec, !tx->bdat, s->cfg->message_size);
    return 0;
}

/* Moves the in-memory part of the message to the scratch file, opening
 * it the first time. */
static int smtp_spool_flush(struct smtp_session *s)
{
    struct smtp_tx *tx = &s->tx;
    if (tx->spool_fd < 0 && (tx->spool_fd = store_spool_open(s->srv->store)) < 0) {
        log_error(s->sid, "event=store_error op=spool error=\"%s\"", strerror(errno));
        return -1;
    }
    if (tx->spool_buf.len > 0 && write_full(tx->spool_fd, tx->spool_buf.data, tx->spool_buf.len) < 0)
        return -1;
    strbuf_reset(&tx->spool_buf);
    return 0;
}

static void smtp_data_out(void *arg, const char *data, size_t len)
{
    struct smtp_session *s = arg;
    struct smtp_tx *tx = &s->tx;
    if (tx->write_failed)
        return;
    if (tx->filtered) {
        if (tx->spool_buf.len + len > tx->spool_buf.cap && smtp_spool_flush(s) < 0)
            tx->write_failed = true;
        else if (len > tx->spool_buf.cap ? write_full(tx->spool_fd, data, len) < 0
                                         : strbuf_append(&tx->spool_buf, data, len) < 0)
            tx->write_failed = true;
        return;
    }
    if (tx->stx == NULL || store_tx_write(tx->stx, data, len) < 0)
        tx->write_failed = true;
}

static void smtp_commit_done_loop(void *arg);

static void smtp_commit_done(void *arg, int result, const char *queue_id, const char *error)
{
    struct smtp_session *s = arg;
    s->async_result = result;
    str_copy(s->async_id, queue_id ? queue_id : "", sizeof(s->async_id));
    str_copy(s->async_error, error ? error : "", sizeof(s->async_error));
    loop_call(s->worker->base, smtp_commit_done_loop, s);
}

/* Returns to command state after an asynchronous step; frees the session
 * if its connection went away meanwhile. */
static void smtp_resume(struct smtp_session *s)
{
    if (s->dead) {
        smtp_free(s);
        return;
    }
    if (s->state == SMTP_S_CLOSING)
        return;
    if (s->drain_pending && !s->tx.active) {
        smtp_close_with(s, "421 4.3.2 Service shutting down, closing connection");
        return;
    }
    smtp_set_state(s, SMTP_S_CMD);
    smtp_touch(s);
    bufferevent_enable(s->bev, EV_READ);
    smtp_process_input(s);
}

static void smtp_commit_done_loop(void *arg)
{
    struct smtp_session *s = arg;
    s->tx.stx = NULL; /* freed by the store */
    if (s->async_result == 0) {
        log_info(s->sid, "event=accepted id=%s from=<%s> rcpts=%d size=%llu proto=%s", s->async_id,
                 s->tx.from.mailbox, s->tx.n_rcpts, (unsigned long long)s->tx.dec.size,
                 smtp_with_protocol(s));
        if (!s->dead)
            smtp_reply(s, "250 2.0.0 Ok: queued as %s", s->async_id);
        if (commit_hook)
            commit_hook(commit_hook_arg, s->async_id, s->tx.dec.size);
    } else if (s->async_result == SMTP_RESULT_POLICY) {
        log_info(s->sid, "event=reject reason=dmarc from=<%s> reply=\"%s\"", s->tx.from.mailbox,
                 s->async_error);
        if (!s->dead)
            smtp_reply(s, "%s", s->async_error);
    } else {
        log_error(s->sid, "event=store_error op=commit error=\"%s\"", s->async_error);
        if (!s->dead)
            smtp_reply(s, "452 4.3.1 Insufficient system storage");
    }
    smtp_tx_reset(s);
    smtp_resume(s);
}

static int smtp_stx_writer(void *arg, const void *data, size_t len)
{
    return len ? store_tx_write(arg, data, len) : 0;
}

static int smtp_strbuf_writer(void *arg, const void *data, size_t len)
{
    return strbuf_append(arg, data, len);
}

/* Finishes a filtered transaction with an error (async_result -1). */
static void smtp_filter_fail(struct smtp_session *s, const char *what)
{
    s->async_result = -1;
    str_copy(s->async_error, what, sizeof(s->async_error));
    loop_call(s->worker->base, smtp_commit_done_loop, s);
}

/* DKIM-signs a submitted message when its From domain is the
 * authenticated sender's and has keys.  Appends the signature fields to
 * sig (empty when nothing applies). */
static void smtp_sign(struct smtp_session *s, const char *msg, size_t len, struct strbuf *sig)
{
    char domain[256], err[256];
    const char *at = strrchr(s->tx.from.mailbox, '@');
    if (at == NULL || dkim_from_domain(msg, len, domain, sizeof(domain)) < 0 ||
        strcasecmp(domain, at + 1) != 0)
        return;
    struct dkim_key keys[4];
    int n = dkim_keys_for_domain(s->cfg, domain, keys, 4, err, sizeof(err));
    if (n < 0)
        log_error(s->sid, "event=dkim_sign_failed domain=%s error=\"%s\"", domain, err);
    if (n <= 0)
        return;
    if (dkim_sign(keys, n, msg, len, 0, sig, err, sizeof(err)) < 0) {
        log_error(s->sid, "event=dkim_sign_failed domain=%s error=\"%s\"", domain, err);
        strbuf_reset(sig);
    } else {
        log_info(s->sid, "event=dkim_signed domain=%s keys=%d", domain, n);
    }
    for (int i = 0; i < n; i++)
        dkim_key_free(&keys[i]);
}

/* Scores the message.  -1 when the verdict refuses it (async_result and
 * async_error then hold the reply), else 0 with s->fv kept for writing
 * (spam filing, X-Spam headers).  With nowait (on the loop), 1 when it
 * would have to wait (Rspamd, an uncached DNS answer): nothing changed. */
static int smtp_spam_check(struct smtp_session *s, const struct auth_outcome *out,
                           const char *msg, size_t len, bool nowait)
{
    struct smtp_tx *tx = &s->tx;
    const char *rcpts[64];
    size_t n = 0;
    for (int i = 0; i < tx->n_rcpts && n < 64; i++)
        rcpts[n++] = tx->rcpts[i].path.mailbox;
    const char *dkim = "none";
    for (int i = 0; out && i < out->n_dkim; i++) {
        dkim = dkim_status_name(out->dkim[i].status);
        if (out->dkim[i].status == DKIM_PASS)
            break;
    }
    struct filter_message m = {
        .data = msg, .len = len, .rcpts = rcpts, .n_rcpts = n,
        .spf = out && out->spf_done ? spf_result_name(out->spf.result) : NULL,
        .dkim = out ? dkim : NULL,
        .dmarc = out ? dmarc_result_name(out->dmarc_result) : NULL,
        .queue_id = s->sid,
    };
    if (nowait) {
        if (!filter_message_try(s->fc, &m, &s->fv)) {
            filter_verdict_free(&s->fv);
            return 1;
        }
    } else {
        filter_message(s->fc, &m, &s->fv);
    }
    if (s->fv.action == FILTER_ACCEPT)
        return 0;
    s->async_result = SMTP_RESULT_POLICY;
    filter_verdict_reply(&s->fv, s->async_error, sizeof(s->async_error));
    filter_verdict_free(&s->fv);
    return -1;
}

static int smtp_write_checked(struct smtp_session *s, const struct auth_outcome *out,
                              const char *msg, size_t len, struct store_tx *stx)
{
    if (out == NULL && s->fv.headers == NULL && s->fv.subject == NULL)
        return len ? store_tx_write(stx, msg, len) : 0;
    if (out == NULL)
        return filter_message_write(&s->fv, msg, len, smtp_stx_writer, stx);
    if (s->fv.headers == NULL && s->fv.subject == NULL)
        return auth_write_message(out, msg, len, smtp_stx_writer, stx);
    if (store_tx_write(stx, out->authres.data ? out->authres.data : "", out->authres.len) < 0 ||
        store_tx_write(stx, out->received_spf.data ? out->received_spf.data : "",
                       out->received_spf.len) < 0)
        return -1;
    if (out->n_drop == 0)
        return filter_message_write(&s->fv, msg, len, smtp_stx_writer, stx);
    struct strbuf stripped;
    strbuf_init(&stripped, len + 1);
    int rc = auth_write_stripped(out, msg, len, smtp_strbuf_writer, &stripped);
    if (rc == 0)
        rc = filter_message_write(&s->fv, stripped.data ? stripped.data : "", stripped.len,
                                  smtp_stx_writer, stx);
    strbuf_free(&stripped);
    return rc;
}

/* What smtp_check_and_store holds while it works. */
static void check_release(struct auth_outcome *out, void *map, size_t len, struct strbuf *sig)
{
    if (out) {
        auth_outcome_free(out);
        free(out);
    }
    if (map)
        munmap(map, len);
    strbuf_free(sig);
}

/* The whole message is in the spool.  On smtp, run SPF, DKIM and DMARC,
 * refuse what the sender's DMARC policy rejects, file what it quarantines
 * into Junk, score it, and store the message with Authentication-Results
 * (our authserv-id's forged copies removed); on submission, DKIM-sign.
 * Ends in store_tx_commit (its callback returns to the loop) or in
 * smtp_filter_fail / a policy refusal.
 * Runs on the pool, or with nowait on the session's loop: then it returns
 * false, having changed nothing, as soon as something would have to wait
 * (a DNS answer not in the cache, Rspamd), and the caller submits it to
 * the pool; the two give the same result. */
static bool smtp_check_and_store(struct smtp_session *s, bool nowait)
{
    struct smtp_tx *tx = &s->tx;
    size_t len = (size_t)tx->dec.size;
    const char *msg = "";
    void *map = NULL;
    if (tx->spool_fd < 0) {
        msg = tx->spool_buf.data ? tx->spool_buf.data : "";
        len = tx->spool_buf.len;
    } else if (nowait) {
        return false; /* spilled to disk: large, map and read it off the loop */
    } else if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, tx->spool_fd, 0);
        if (map == MAP_FAILED) {
            smtp_filter_fail(s, "cannot map the spooled message");
            return true;
        }
        msg = map;
    }
    struct auth_outcome *out = NULL;
    struct auth_input in = {
        .ip = s->ip, .helo = s->helo, .mail_from = tx->from.mailbox,
        .msg = msg, .len = len, .authserv_id = s->cfg->hostname,
    };
    const char *mailbox = "INBOX";
    struct strbuf sig;
    strbuf_init(&sig, 64 * 1024);
    bool refused = false;
    if (s->role == ROLE_SMTP) {
        out = calloc(1, sizeof(*out));
        /* 1 evaluated, 0 not all cached (nowait only), -1 failed */
        int rc = out == NULL ? -1
                 : nowait    ? auth_evaluate_cached(s->srv->dns, &in, out)
                 : auth_evaluate(s->srv->dns, &in, out) < 0 ? -1 : 1;
        if (rc == 0) { /* not all cached: the pool does it all */
            free(out);
            strbuf_free(&sig);
            return false;
        }
        if (rc < 0) {
            if (out)
                auth_outcome_free(out);
            free(out);
            out = NULL;
            log_error(s->sid, "event=auth_checks_failed");
        }
        bool dmarc_reject = out && out->disposition == DMARC_POLICY_REJECT;
        if (!dmarc_reject && s->fc != NULL && filter_message_needed(s->fc)) {
            int sc = smtp_spam_check(s, out, msg, len, nowait);
            if (sc > 0) {
                check_release(out, map, len, &sig);
                return false;
            }
            refused = sc < 0;
            if (!refused && s->fv.spam)
                mailbox = "Junk";
        }
        /* decided: from here on nothing waits but the store */
        if (out) {
            const char *nerr = NULL;
            if (auth_outcome_note(s->srv->store, &in, out, &nerr) < 0)
                log_warn(s->sid, "event=dmarc_note_failed error=\"%s\"", nerr ? nerr : "?");
            if (dmarc_reject) {
                s->async_result = SMTP_RESULT_POLICY;
                str_copy(s->async_error, out->reply, sizeof(s->async_error));
                refused = true;
            } else if (out->disposition == DMARC_POLICY_QUARANTINE) {
                mailbox = "Junk";
            }
        }
        if (refused) {
            check_release(out, map, len, &sig);
            loop_call(s->worker->base, smtp_commit_done_loop, s);
            return true;
        }
    } else {
        smtp_sign(s, msg, len, &sig);
    }
    const char *err = NULL;
    /* a message held in memory has a known size (what the checks add is
     * small): the store may then keep it in the index commit */
    uint64_t hint = 0;
    if (tx->spool_fd < 0)
        hint = len + sig.len + tx->received.len + SMTP_ADDED_HEADERS_EST +
               (out ? out->authres.len + out->received_spf.len : 0);
    struct store_tx *stx = smtp_store_begin(s, mailbox, hint, &err);
    int rc = stx ? 0 : -1;
    if (rc == 0 && sig.len > 0)
        rc = store_tx_write(stx, sig.data, sig.len);
    if (rc == 0 && tx->received.data)
        rc = store_tx_write(stx, tx->received.data, tx->received.len);
    if (rc == 0)
        rc = smtp_write_checked(s, out, msg, len, stx);
    filter_verdict_free(&s->fv);
    check_release(out, map, len, &sig);
    if (rc < 0) {
        if (stx)
            store_tx_abort(stx);
        smtp_filter_fail(s, err ? err : "store write failed");
        return true;
    }
    store_tx_commit(stx, smtp_commit_done, s);
    return true;
}

static void smtp_filter_work(void *arg)
{
    smtp_check_and_store(arg, false);
}

/* End of DATA or of the BDAT LAST chunk: answer once for the whole message. */
static void smtp_message_end(struct smtp_session *s)
{
    struct smtp_tx *tx = &s->tx;
    if (tx->dec.bare_lf || tx->dec.bare_cr) {
        smtp_error(s, "550 5.6.0 Message contains bare CR or LF characters; line ends must be CRLF");
    } else if (tx->dec.too_big) {
        smtp_error(s, "552 5.3.4 Message size exceeds fixed limit of %llu bytes",
                   (unsigned long long)s->cfg->message_size);
    } else if (tx->write_failed || (!tx->filtered && tx->stx == NULL) ||
               (tx->filtered && tx->spool_fd >= 0 && smtp_spool_flush(s) < 0)) {
        log_error(s->sid, "event=store_error op=write");
        smtp_reply(s, "452 4.3.1 Insufficient system storage");
    } else {
        smtp_set_state(s, SMTP_S_WAIT);
        bufferevent_disable(s->bev, EV_READ);
        event_del(s->timer);
        /* on smtp with every DNS answer cached the checks run right here,
         * saving two thread hand-offs; otherwise on the pool */
        if (tx->filtered) {
            bool inline_done = s->role == ROLE_SMTP && s->srv->dns != NULL &&
                               smtp_check_and_store(s, true);
            log_debug(s->sid, "event=message_checks run=%s", inline_done ? "loop" : "pool");
            if (!inline_done)
                pool_submit(s->worker->base, smtp_filter_work, NULL, s);
        } else {
            store_tx_commit(tx->stx, smtp_commit_done, s);
        }
        return;
    }
    smtp_tx_reset(s);
    if (s->state != SMTP_S_CLOSING)
        smtp_set_state(s, SMTP_S_CMD);
    if (s->drain_pending && s->state != SMTP_S_CLOSING)
        smtp_close_with(s, "421 4.3.2 Service shutting down, closing connection");
}

/* ---- AUTH ---- */

static bool smtp_auth_offered(const struct smtp_session *s)
{
    return s->role != ROLE_SMTP || s->cfg->capture;
}

static void smtp_banner(struct smtp_session *s);
static void smtp_helo_reply(struct smtp_session *s);

static bool smtp_auth_allowed_here(const struct smtp_session *s)
{
    return s->tls || (s->loopback && s->cfg->plaintext_loopback) || s->cfg->capture;
}

static void smtp_auth_work(void *arg)
{
    struct smtp_session *s = arg;
    int64_t id = !s->cfg->capture ? store_user_auth(s->srv->store, s->auth_user, s->auth_pass)
                 : capture_auth && !capture_auth(s->auth_user, s->auth_pass)
                     ? 0
                     : store_user_lookup(s->srv->store, CAPTURE_ACCOUNT);
    explicit_bzero(s->auth_pass, sizeof(s->auth_pass));
    s->async_result = id > 0 ? 0 : id == 0 ? 1 : -1;
    if (id > 0)
        s->account_id = id;
}

static void smtp_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;
    smtp_reply(s, "%s", s->delayed_reply);
    smtp_resume(s);
}

static void smtp_auth_done(void *arg)
{
    struct smtp_session *s = arg;
    if (s->dead) {
        smtp_free(s);
        return;
    }
    if (s->async_result == 0) {
        log_info(s->sid, "event=auth result=ok user=%s mech=%s", s->auth_user, s->auth_mech);
        if (s->fc != NULL)
            filter_auth(s->fc, s->auth_user);
        smtp_reply(s, "235 2.7.0 Authentication successful");
        smtp_resume(s);
        return;
    }
    if (s->async_result < 0) {
        smtp_reply(s, "454 4.7.0 Temporary authentication failure");
        smtp_resume(s);
        return;
    }
    s->auth_failures++;
    log_warn(s->sid, "event=auth result=fail user=%s mech=%s failures=%d", s->auth_user,
             s->auth_mech, s->auth_failures);
    s->auth_user[0] = '\0';
    if (s->fc != NULL) {
        /* failures per client address across sessions */
        struct filter_verdict v;
        filter_auth_failed(s->fc, &v);
        if (v.action != FILTER_ACCEPT) {
            char reply[320];
            filter_verdict_reply(&v, reply, sizeof(reply));
            filter_verdict_free(&v);
            log_info(s->sid, "event=reject stage=auth reply=\"%s\"", reply);
            smtp_close_with(s, reply);
            return;
        }
        filter_verdict_free(&v);
    }
    if (s->auth_failures >= s->cfg->auth_failures) {
        smtp_close_with(s, "421 4.7.0 Too many failed authentication attempts, closing connection");
        return;
    }
    /* Growing delays slow down password guessing. */
    str_copy(s->delayed_reply, "535 5.7.8 Authentication credentials invalid",
             sizeof(s->delayed_reply));
    struct timeval tv = { s->auth_failures > 5 ? 5 : s->auth_failures - 1, 200000 };
    if (s->delay_ev == NULL)
        s->delay_ev = evtimer_new(s->worker->base, smtp_delay_cb, s);
    evtimer_add(s->delay_ev, &tv);
}

static void smtp_auth_check(struct smtp_session *s, const char *user, const char *pass)
{
    if (user[0] == '\0' || strlen(user) >= sizeof(s->auth_user) ||
        strlen(pass) >= sizeof(s->auth_pass)) {
        s->async_result = 1;
        smtp_set_state(s, SMTP_S_WAIT);
        bufferevent_disable(s->bev, EV_READ);
        smtp_auth_done(s);
        return;
    }
    str_copy(s->auth_user, user, sizeof(s->auth_user));
    str_copy(s->auth_pass, pass, sizeof(s->auth_pass));
    smtp_set_state(s, SMTP_S_WAIT);
    bufferevent_disable(s->bev, EV_READ);
    pool_submit(s->worker->base, smtp_auth_work, smtp_auth_done, s);
}

static void smtp_auth_plain(struct smtp_session *s, const char *b64)
{
    char authzid[ADDRESS_MAX], authcid[ADDRESS_MAX], passwd[512];
    if (sasl_plain_decode(b64, authzid, sizeof(authzid), authcid, sizeof(authcid), passwd,
                          sizeof(passwd)) < 0) {
        smtp_error(s, "501 5.5.2 Cannot decode AUTH PLAIN response");
        return;
    }
    if (authzid[0] && strcasecmp(authzid, authcid) != 0) {
        explicit_bzero(passwd, sizeof(passwd));
        smtp_reply(s, "535 5.7.8 Authorization identity not permitted");
        return;
    }
    smtp_auth_check(s, authcid, passwd);
    explicit_bzero(passwd, sizeof(passwd));
}

/* A SASL response line (after a 334). */
static void smtp_auth_line(struct smtp_session *s, const char *line)
{
    smtp_set_state(s, SMTP_S_CMD);
    if (strcmp(line, "*") == 0) {
        smtp_reply(s, "501 5.0.0 Authentication aborted");
        return;
    }
    if (s->auth_step == AUTH_PLAIN_RESP) {
        smtp_auth_plain(s, line);
        return;
    }
    unsigned char buf[512];
    long n = base64_decode(line, strlen(line), buf, sizeof(buf) - 1);
    if (n < 0 || memchr(buf, '\0', (size_t)n) != NULL) {
        smtp_error(s, "501 5.5.2 Cannot decode AUTH LOGIN response");
        return;
    }
    buf[n] = '\0';
    if (s->auth_step == AUTH_LOGIN_USER) {
        if ((size_t)n >= sizeof(s->auth_user)) {
            smtp_error(s, "501 5.5.2 User name too long");
            return;
        }
        str_copy(s->auth_user, (char *)buf, sizeof(s->auth_user));
        s->auth_step = AUTH_LOGIN_PASS;
        smtp_reply(s, "334 UGFzc3dvcmQ6"); /* "Password:" */
        smtp_set_state(s, SMTP_S_AUTH);
        return;
    }
    char user[ADDRESS_MAX];
    str_copy(user, s->auth_user, sizeof(user));
    smtp_auth_check(s, user, (char *)buf);
    explicit_bzero(buf, sizeof(buf));
}

static void cmd_auth(struct smtp_session *s, const char *arg)
{
    if (!smtp_auth_offered(s)) {
        smtp_error(s, "503 5.5.1 Error: authentication not enabled");
        return;
    }
    if (!s->ehlo_done || !s->esmtp) {
        smtp_error(s, "503 5.5.1 Error: send EHLO first");
        return;
    }
    if (s->account_id > 0) {
        smtp_error(s, "503 5.5.1 Error: already authenticated");
        return;
    }
    if (s->tx.active) {
        smtp_error(s, "503 5.5.1 Error: MAIL transaction in progress");
        return;
    }
    if (!smtp_auth_allowed_here(s)) {
        smtp_error(s, "538 5.7.11 Encryption required for requested authentication mechanism");
        return;
    }
    char mech[16];
    const char *sp = strchr(arg, ' ');
    size_t ml = sp ? (size_t)(sp - arg) : strlen(arg);
    if (ml == 0 || ml >= sizeof(mech)) {
        smtp_error(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
        return;
    }
    memcpy(mech, arg, ml);
    mech[ml] = '\0';
    const char *ir = sp ? sp + 1 : NULL;
    if (strcasecmp(mech, "PLAIN") == 0) {
        str_copy(s->auth_mech, "PLAIN", sizeof(s->auth_mech));
        if (ir && strcmp(ir, "=") != 0) {
            smtp_auth_plain(s, ir);
        } else {
            s->auth_step = AUTH_PLAIN_RESP;
            smtp_reply(s, "334 ");
            smtp_set_state(s, SMTP_S_AUTH);
        }
    } else if (strcasecmp(mech, "LOGIN") == 0) {
        str_copy(s->auth_mech, "LOGIN", sizeof(s->auth_mech));
        s->auth_step = AUTH_LOGIN_USER;
        if (ir) {
            smtp_auth_line(s, ir);
        } else {
            smtp_reply(s, "334 VXNlcm5hbWU6"); /* "Username:" */
            smtp_set_state(s, SMTP_S_AUTH);
        }
    } else {
        smtp_error(s, "504 5.5.4 Unrecognized authentication mechanism");
    }
}

/* ---- anti-spam stages: on the loop when they cannot block, else on the pool ---- */

enum smtp_fstage { FSTAGE_CONNECT, FSTAGE_HELO, FSTAGE_MAIL, FSTAGE_RCPT };
static const char *const fstage_names[] = { "connect", "helo", "mail", "rcpt" };

/* Pool thread: the domain SPF passed for when the sender's domain is
 * allow-listed on condition of SPF pass, else NULL.  Asked once per
 * transaction. */
static const char *smtp_rcpt_spf(struct smtp_session *s)
{
    struct smtp_tx *tx = &s->tx;
    if (!tx->spf_checked && s->srv->dns != NULL && filter_sender_wants_spf(s->fc)) {
        struct spf_dns d;
        spf_dns_use_resolver(&d, s->srv->dns);
        struct spf_request req = { .ip = s->ip, .helo = s->helo, .mail_from = tx->from.mailbox,
                                   .receiver = s->cfg->hostname };
        struct spf_response resp;
        tx->spf_pass = spf_check_mailfrom(&d, &req, &resp) == SPF_PASS;
        tx->spf_checked = true;
        log_debug(s->sid, "event=filter_spf from=<%s> pass=%d", tx->from.mailbox, tx->spf_pass);
    }
    const char *at = strrchr(tx->from.mailbox, '@');
    return tx->spf_pass && at ? at + 1 : NULL;
}

/* Must the RCPT stage run SPF first (blocking DNS)? */
static bool smtp_rcpt_spf_pending(struct smtp_session *s)
{
    return !s->tx.spf_checked && s->srv->dns != NULL && filter_sender_wants_spf(s->fc);
}

/* Loop thread: the stage at once when the engine can answer it without
 * blocking (filter.h, the _try calls); false when it needs the pool. */
static bool smtp_fstage_try(struct smtp_session *s)
{
    switch (s->fstage) {
    case FSTAGE_CONNECT:
        return filter_connect_try(s->fc, &s->fv);
    case FSTAGE_HELO:
        return filter_helo_try(s->fc, s->helo, &s->fv);
    case FSTAGE_MAIL:
        return filter_mail_try(s->fc, s->tx.from.mailbox, &s->fv);
    case FSTAGE_RCPT:
        return !smtp_rcpt_spf_pending(s) &&
               filter_rcpt_try(s->fc, s->tx.rcpts[s->tx.n_rcpts].path.mailbox, smtp_rcpt_spf(s),
                               &s->fv);
    }
    return false;
}

static void smtp_fstage_work(void *arg)
{
    struct smtp_session *s = arg;
    filter_verdict_init(&s->fv);
    switch (s->fstage) {
    case FSTAGE_CONNECT:
        filter_connect(s->fc, &s->fv);
        break;
    case FSTAGE_HELO:
        filter_helo(s->fc, s->helo, &s->fv);
        break;
    case FSTAGE_MAIL:
        filter_mail(s->fc, s->tx.from.mailbox, &s->fv);
        break;
    case FSTAGE_RCPT:
        filter_rcpt(s->fc, s->tx.rcpts[s->tx.n_rcpts].path.mailbox, smtp_rcpt_spf(s), &s->fv);
        break;
    }
}

static void smtp_greet_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;
    if (!s->dead)
        smtp_banner(s);
    smtp_resume(s);
}

/* Answers the verdict of a connect, HELO, MAIL or RCPT stage.  True
 * when the session goes on reading commands; false when it closed or
 * waits for the greet timer (postscreen's greet_wait). */
static bool smtp_fstage_apply(struct smtp_session *s)
{
    char reply[320];
    bool ok = s->fv.action == FILTER_ACCEPT;
    bool disconnect = s->fv.disconnect;
    if (!ok)
        filter_verdict_reply(&s->fv, reply, sizeof(reply));
    filter_verdict_free(&s->fv);
    if (!ok) {
        log_info(s->sid, "event=reject stage=%s reply=\"%s\"", fstage_names[s->fstage], reply);
        if (s->fstage == FSTAGE_MAIL)
            smtp_tx_reset(s);
        if (s->fstage == FSTAGE_HELO)
            s->ehlo_done = s->esmtp = false;
        if (disconnect || s->fstage == FSTAGE_CONNECT) {
            smtp_close_with(s, reply);
            return false;
        }
        smtp_reply(s, "%s", reply);
    } else if (s->fstage == FSTAGE_CONNECT) {
        unsigned wait = filter_greet_wait_ms(s->fc);
        if (wait > 0) {
            /* postscreen's greet wait: wait in SMTP_S_WAIT, the timer
             * sends the banner (or the pregreet verdict) */
            struct timeval tv = { wait / 1000, (wait % 1000) * 1000 };
            if (s->greet_ev == NULL)
                s->greet_ev = evtimer_new(s->worker->base, smtp_greet_cb, s);
            if (s->greet_ev != NULL && evtimer_add(s->greet_ev, &tv) == 0) {
                smtp_set_state(s, SMTP_S_WAIT);
                bufferevent_disable(s->bev, EV_READ);
                return false;
            }
        }
        smtp_banner(s);
    } else if (s->fstage == FSTAGE_HELO) {
        smtp_helo_reply(s);
    } else if (s->fstage == FSTAGE_MAIL) {
        smtp_reply(s, "250 2.1.0 Ok");
    } else {
        s->tx.n_rcpts++;
        smtp_reply(s, "250 2.1.5 Ok");
    }
    return true;
}

/* Back on the loop with the verdict of a stage that ran on the pool. */
static void smtp_fstage_done(void *arg)
{
    struct smtp_session *s = arg;
    if (s->dead) {
        filter_verdict_free(&s->fv);
        smtp_free(s);
        return;
    }
    if (smtp_fstage_apply(s))
        smtp_resume(s);
}

/* Runs a stage: at once on the loop when it cannot block (the session
 * then goes on with the next command in its input, as for any command
 * answered at once), else on the pool with reading paused, the answer
 * coming from smtp_fstage_done.  Both give the same verdict; the loop
 * saves the two thread hand-offs. */
static void smtp_fstage_start(struct smtp_session *s, enum smtp_fstage stage)
{
    s->fstage = stage;
    if (smtp_fstage_try(s)) {
        log_debug(s->sid, "event=filter_stage stage=%s run=loop", fstage_names[stage]);
        smtp_fstage_apply(s);
        return;
    }
    log_debug(s->sid, "event=filter_stage stage=%s run=pool", fstage_names[stage]);
    smtp_set_state(s, SMTP_S_WAIT);
    bufferevent_disable(s->bev, EV_READ);
    pool_submit(s->worker->base, smtp_fstage_work, smtp_fstage_done, s);
}

/* ---- commands ---- */

static void cmd_helo(struct smtp_session *s, const char *arg, bool esmtp)
{
    if (arg[0] == '\0' || strchr(arg, ' ') != NULL || strlen(arg) > SMTP_DOMAIN_MAX) {
        smtp_error(s, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
        return;
    }
    smtp_tx_reset(s);
    str_copy(s->helo, arg, sizeof(s->helo));
    s->ehlo_done = true;
    s->esmtp = esmtp;
    if (s->fc != NULL && s->role == ROLE_SMTP) {
        smtp_fstage_start(s, FSTAGE_HELO); /* HELO checks, RHSBL on the name */
        return;
    }
    smtp_helo_reply(s);
}

static void smtp_helo_reply(struct smtp_session *s)
{
    if (!s->esmtp) {
        smtp_reply(s, "250 %s", s->cfg->hostname);
        return;
    }
    smtp_reply(s, "250-%s", s->cfg->hostname);
    smtp_reply(s, "250-PIPELINING");
    smtp_reply(s, "250-SIZE %llu", (unsigned long long)s->cfg->message_size);
    if (!s->tls && s->srv->tls && s->role != ROLE_SUBMISSIONS)
        smtp_reply(s, "250-STARTTLS");
    if (smtp_auth_offered(s) && smtp_auth_allowed_here(s))
        smtp_reply(s, "250-AUTH PLAIN LOGIN");
    smtp_reply(s, "250-ENHANCEDSTATUSCODES");
    smtp_reply(s, "250-8BITMIME");
    smtp_reply(s, "250-DSN");
    smtp_reply(s, "250-SMTPUTF8");
    smtp_reply(s, "250 CHUNKING");
}

static void cmd_mail(struct smtp_session *s, const char *arg)
{
    struct smtp_reply r;
    if (!s->ehlo_done) {
        smtp_error(s, "503 5.5.1 Error: send HELO/EHLO first");
        return;
    }
    if (s->tx.active) {
        smtp_error(s, "503 5.5.1 Error: nested MAIL command");
        return;
    }
    if (s->account_id <= 0 &&
        (s->cfg->capture ? capture_auth != NULL : s->role != ROLE_SMTP)) {
        smtp_error(s, "530 5.7.0 Authentication required");
        return;
    }
    struct smtp_tx *tx = &s->tx;
    if (smtp_mail_parse(arg, true, &tx->from, &tx->params, &r) < 0) {
        memset(tx, 0, sizeof(*tx));
        smtp_error(s, "%d %s %s", r.code, r.status, r.text);
        return;
    }
    if (tx->from.utf8 && !tx->params.smtputf8) {
        memset(tx, 0, sizeof(*tx));
        smtp_error(s, "553 5.6.7 Address needs SMTPUTF8");
        return;
    }
    if (tx->params.body == SMTP_BODY_BINARYMIME) {
        memset(tx, 0, sizeof(*tx));
        smtp_error(s, "555 5.5.4 BODY=BINARYMIME is not supported");
        return;
    }
    if (tx->params.size > s->cfg->message_size) {
        memset(tx, 0, sizeof(*tx));
        smtp_reply(s, "552 5.3.4 Message size exceeds fixed limit of %llu bytes",
                   (unsigned long long)s->cfg->message_size);
        return;
    }
    if (s->account_id > 0 && !s->cfg->capture &&
        (tx->from.is_null || !store_sender_allowed(s->srv->store, s->account_id, tx->from.mailbox))) {
        log_warn(s->sid, "event=reject reason=sender_not_owned user=%s from=<%s>", s->auth_user,
                 tx->from.mailbox);
        memset(tx, 0, sizeof(*tx));
        smtp_reply(s, "553 5.7.1 Sender address rejected: not owned by user %s", s->auth_user);
        return;
    }
    tx->active = true;
    tx->seq = ++s->tx_count;
    if (s->fc != NULL) {
        smtp_fstage_start(s, FSTAGE_MAIL); /* rate limits */
        return;
    }
    smtp_reply(s, "250 2.1.0 Ok");
}

struct first_domain {
    char addr[sizeof(((struct config *)0)->domains) + 16];
    bool found;
};

/* config_each_domain callback: keeps "postmaster@" + the first domain. */
static void smtp_first_domain(const char *domain, void *arg)
{
    struct first_domain *fd = arg;
    if (!fd->found)
        snprintf(fd->addr, sizeof(fd->addr), "postmaster@%s", domain);
    fd->found = true;
}

static void cmd_rcpt(struct smtp_session *s, const char *arg)
{
    struct smtp_tx *tx = &s->tx;
    struct smtp_reply r;
    if (!tx->active) {
        smtp_error(s, "503 5.5.1 Error: need MAIL command");
        return;
    }
    if (tx->n_rcpts >= s->cfg->recipients) {
        smtp_reply(s, "452 4.5.3 Error: too many recipients");
        return;
    }
    if (tx->n_rcpts == tx->cap_rcpts) {
        int cap = tx->cap_rcpts ? tx->cap_rcpts * 2 : 2;
        struct smtp_rcpt *grown = realloc(tx->rcpts, (size_t)cap * sizeof(*grown));
        if (grown == NULL) {
            smtp_reply(s, "452 4.3.1 Insufficient system resources");
            return;
        }
        tx->rcpts = grown;
        tx->cap_rcpts = cap;
    }
    struct smtp_rcpt *rc = &tx->rcpts[tx->n_rcpts];
    memset(rc, 0, sizeof(*rc));
    if (smtp_rcpt_parse(arg, tx->params.smtputf8, &rc->path, &rc->params, &r) < 0) {
        smtp_error(s, "%d %s %s", r.code, r.status, r.text);
        return;
    }
    if (s->cfg->capture) {
        /* capture mode: every recipient is accepted into the capture account */
        int64_t id = store_user_lookup(s->srv->store, CAPTURE_ACCOUNT);
        if (id <= 0) {
            smtp_reply(s, "451 4.3.0 Capture store not ready");
            return;
        }
        rc->targets[0].kind = STORE_RCPT_LOCAL;
        rc->targets[0].account_id = id;
        str_copy(rc->targets[0].address, CAPTURE_ACCOUNT, sizeof(rc->targets[0].address));
        rc->n_targets = 1;
        tx->n_rcpts++;
        smtp_reply(s, "250 2.1.5 Ok");
        return;
    }
    const char *addr = rc->path.mailbox;
    char pm[SMTP_DOMAIN_MAX + 16];
    struct first_domain first = { .found = false };
    if (rc->path.is_postmaster) {
        snprintf(pm, sizeof(pm), "postmaster@%s", s->cfg->hostname);
        addr = pm;
    }
    int n = store_rcpt_resolve(s->srv->store, addr, rc->targets, MAX_TARGETS_PER_RCPT);
    if (n == -2 && rc->path.is_postmaster) {
        /* <Postmaster> must always be accepted (RFC 5321 4.5.1): the
         * hostname is not a local domain, so use the first one that is */
        config_each_domain(s->cfg, smtp_first_domain, &first);
        if (first.found) {
            addr = first.addr;
            n = store_rcpt_resolve(s->srv->store, addr, rc->targets, MAX_TARGETS_PER_RCPT);
        }
    }
    if (n == -2) {
        if (s->account_id > 0) {
            rc->targets[0].kind = STORE_RCPT_REMOTE;
            str_copy(rc->targets[0].address, addr, sizeof(rc->targets[0].address));
            n = 1;
        } else {
            log_info(s->sid, "event=reject reason=relay ip=%s rcpt=<%s>", s->ip, addr);
            smtp_reply(s, "554 5.7.1 <%s>: Relay access denied", addr);
            return;
        }
    }
    if (n < 0) {
        smtp_reply(s, "451 4.3.0 Temporary lookup failure");
        return;
    }
    if (n == 0) {
        log_info(s->sid, "event=reject reason=unknown_user rcpt=<%s>", addr);
        smtp_reply(s, "550 5.1.1 <%s>: Recipient address rejected: User unknown", addr);
        return;
    }
    rc->n_targets = n;
    if (s->fc != NULL && s->account_id <= 0) {
        smtp_fstage_start(s, FSTAGE_RCPT); /* block lists, greylisting */
        return;
    }
    tx->n_rcpts++;
    smtp_reply(s, "250 2.1.5 Ok");
}

static void cmd_data(struct smtp_session *s, const char *arg)
{
    if (arg[0] != '\0') {
        smtp_error(s, "501 5.5.4 Syntax: DATA");
        return;
    }
    if (!s->tx.active) {
        smtp_error(s, "503 5.5.1 Error: need MAIL command");
        return;
    }
    if (s->tx.n_rcpts == 0) {
        smtp_error(s, "503 5.5.1 Error: need RCPT command");
        return;
    }
    if (s->tx.bdat) {
        smtp_error(s, "503 5.5.1 Error: DATA not allowed after BDAT");
        return;
    }
    if (smtp_tx_open(s) < 0) {
        smtp_tx_reset(s);
        return;
    }
    smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
    smtp_set_state(s, SMTP_S_DATA);
}

static void cmd_bdat(struct smtp_session *s, const char *arg)
{
    struct smtp_reply r;
    uint64_t size;
    bool last;
    if (smtp_bdat_parse(arg, &size, &last, &r) < 0) {
        /* without a valid size the chunk cannot be skipped: close */
        smtp_reply_parsed(s, &r);
        smtp_close_with(s, "421 4.5.0 Cannot synchronize with BDAT stream, closing connection");
        return;
    }
    s->bdat_remaining = size;
    s->bdat_last = last;
    smtp_set_state(s, SMTP_S_BDAT);
    struct smtp_tx *tx = &s->tx;
    if (!tx->active || tx->n_rcpts == 0 || tx->bdat_failed) {
        tx->bdat_failed = true; /* consume the chunk, then answer 503 */
        return;
    }
    if (!tx->bdat) {
        tx->bdat = true;
        if (smtp_tx_open(s) < 0) {
            tx->bdat_failed = true;
            tx->write_failed = true;
        }
    }
}

/* A whole BDAT chunk has been read. */
static void smtp_bdat_chunk_end(struct smtp_session *s)
{
    struct smtp_tx *tx = &s->tx;
    smtp_set_state(s, SMTP_S_CMD);
    if (tx->bdat_failed) {
        if (!tx->active || tx->n_rcpts == 0)
            smtp_error(s, "503 5.5.1 Error: need MAIL and RCPT before BDAT");
        else if (tx->write_failed)
            smtp_reply(s, "452 4.3.1 Insufficient system storage");
        else
            smtp_error(s, "503 5.5.1 Error: transaction failed, RSET needed");
        if (s->bdat_last && tx->active)
            smtp_tx_reset(s);
        return;
    }
    if (s->bdat_last) {
        smtp_data_finish(&tx->dec, smtp_data_out, s);
        smtp_message_end(s);
        return;
    }
    if (tx->dec.too_big) {
        smtp_error(s, "552 5.3.4 Message size exceeds fixed limit of %llu bytes",
                   (unsigned long long)s->cfg->message_size);
        tx->bdat_failed = true;
        return;
    }
    smtp_reply(s, "250 2.0.0 %llu octets received", (unsigned long long)tx->dec.size);
}

static void cmd_starttls(struct smtp_session *s, const char *arg);

static void cmd_simple(struct smtp_session *s, enum smtp_verb v, const char *arg)
{
    switch (v) {
    case SMTP_VERB_RSET:
        smtp_tx_reset(s);
        smtp_reply(s, "250 2.0.0 Ok");
        break;
    case SMTP_VERB_NOOP:
        smtp_reply(s, "250 2.0.0 Ok");
        break;
    case SMTP_VERB_QUIT:
        smtp_close_with(s, "221 2.0.0 Bye");
        break;
    case SMTP_VERB_VRFY:
        if (arg[0] == '\0')
            smtp_error(s, "501 5.5.4 Syntax: VRFY address");
        else
            smtp_reply(s, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
        break;
    case SMTP_VERB_EXPN:
        smtp_error(s, "502 5.5.1 EXPN is not supported");
        break;
    case SMTP_VERB_HELP:
        smtp_reply(s, "214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY");
        smtp_reply(s, "214 2.0.0 HELP STARTTLS AUTH; see RFC 5321");
        break;
    default:
        smtp_error(s, "500 5.5.1 Command unrecognized");
    }
}

static void smtp_command(struct smtp_session *s, char *line, size_t len)
{
    struct smtp_command cmd;
    struct smtp_reply r;
    if (smtp_command_parse(line, len, &cmd, &r) < 0) {
        smtp_error(s, "%d %s %s", r.code, r.status, r.text);
        return;
    }
    log_debug(s->sid, "event=command verb=%d", (int)cmd.verb);
    switch (cmd.verb) {
    case SMTP_VERB_HELO: cmd_helo(s, cmd.arg, false); break;
    case SMTP_VERB_EHLO: cmd_helo(s, cmd.arg, true); break;
    case SMTP_VERB_MAIL: cmd_mail(s, cmd.arg); break;
    case SMTP_VERB_RCPT: cmd_rcpt(s, cmd.arg); break;
    case SMTP_VERB_DATA: cmd_data(s, cmd.arg); break;
    case SMTP_VERB_BDAT: cmd_bdat(s, cmd.arg); break;
    case SMTP_VERB_STARTTLS: cmd_starttls(s, cmd.arg); break;
    case SMTP_VERB_AUTH: cmd_auth(s, cmd.arg); break;
    default: cmd_simple(s, cmd.verb, cmd.arg); break;
    }
}

/* ---- input ---- */

/* Reads one CRLF line from the input.  Returns 1 with the line (CR LF
 * removed, NUL-terminated) in buf, 0 if no complete line yet, -1 if a bad
 * line was consumed and answered. */
static int smtp_read_line(struct smtp_session *s, struct evbuffer *in, char *buf, size_t max)
{
    size_t eol_len;
    struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
    if (p.pos < 0) {
        size_t have = evbuffer_get_length(in);
        if (have > max) {
            /* RFC 5321 4.5.3.1.4: over-long line; skip to its end, then answer */
            evbuffer_drain(in, have);
            s->discarding = true;
        }
        return 0;
    }
    size_t len = (size_t)p.pos;
    if (s->discarding || len + 1 > max) {
        evbuffer_drain(in, len + 1);
        s->discarding = false;
        smtp_error(s, "500 5.5.2 Error: line too long");
        return -1;
    }
    evbuffer_remove(in, buf, len + 1);
    if (len == 0 || buf[len - 1] != '\r') {
        smtp_error(s, "500 5.5.2 Error: bare <LF> received");
        return -1;
    }
    len--;
    buf[len] = '\0';
    if (memchr(buf, '\r', len) != NULL || memchr(buf, '\0', len) != NULL) {
        smtp_error(s, "500 5.5.2 Error: bare <CR> or NUL received");
        return -1;
    }
    return 1;
}

static void smtp_feed_data(struct smtp_session *s, struct evbuffer *in)
{
    struct evbuffer_iovec vec[8];
    while (s->state == SMTP_S_DATA && evbuffer_get_length(in) > 0) {
        int n = evbuffer_peek(in, -1, NULL, vec, 8);
        if (n > 8)
            n = 8;
        size_t consumed = 0;
        bool done = false;
        for (int i = 0; i < n && !done; i++) {
            size_t used = smtp_data_feed(&s->tx.dec, vec[i].iov_base, vec[i].iov_len,
                                         smtp_data_out, s);
            consumed += used;
            done = s->tx.dec.done;
        }
        evbuffer_drain(in, consumed);
        if (done)
            smtp_message_end(s);
    }
}

static void smtp_feed_bdat(struct smtp_session *s, struct evbuffer *in)
{
    struct evbuffer_iovec vec[8];
    while (s->state == SMTP_S_BDAT) {
        if (s->bdat_remaining == 0) {
            smtp_bdat_chunk_end(s);
            return;
        }
        if (evbuffer_get_length(in) == 0)
            return;
        int n = evbuffer_peek(in, -1, NULL, vec, 8);
        if (n > 8)
            n = 8;
        size_t consumed = 0;
        for (int i = 0; i < n && s->bdat_remaining > 0; i++) {
            size_t take = vec[i].iov_len;
            if (take > s->bdat_remaining)
                take = (size_t)s->bdat_remaining;
            if (!s->tx.bdat_failed)
                smtp_data_feed(&s->tx.dec, vec[i].iov_base, take, smtp_data_out, s);
            s->bdat_remaining -= take;
            consumed += take;
        }
        evbuffer_drain(in, consumed);
    }
}

/* More input behind a command while PIPELINING was not offered (before
 * the EHLO reply, or after HELO): postscreen's pipelining test.  True
 * when the verdict closed the connection. */
static bool smtp_pipelining_refused(struct smtp_session *s)
{
    struct filter_verdict v;
    filter_event(s->fc, FILTER_EV_PIPELINING, &v);
    bool refused = v.action != FILTER_ACCEPT;
    if (refused) {
        char reply[320];
        filter_verdict_reply(&v, reply, sizeof(reply));
        log_info(s->sid, "event=reject stage=pipelining reply=\"%s\"", reply);
        smtp_close_with(s, reply);
    }
    filter_verdict_free(&v);
    return refused;
}

static void smtp_process_input(struct smtp_session *s)
{
    if (s->bev == NULL)
        return;
    struct evbuffer *in = bufferevent_get_input(s->bev);
    char line[SMTP_AUTH_LINE_MAX + 2];
    for (;;) {
        switch (s->state) {
        case SMTP_S_DATA:
            smtp_feed_data(s, in);
            if (s->state == SMTP_S_DATA)
                return;
            continue;
        case SMTP_S_BDAT:
            smtp_feed_bdat(s, in);
            if (s->state == SMTP_S_BDAT)
                return;
            continue;
        case SMTP_S_CMD:
        case SMTP_S_AUTH: {
            size_t max = s->state == SMTP_S_AUTH ? SMTP_AUTH_LINE_MAX : SMTP_LINE_MAX;
            int rc = smtp_read_line(s, in, line, max);
            if (rc == 0)
                return;
            if (rc < 0) {
                if (s->state == SMTP_S_AUTH)
                    smtp_set_state(s, SMTP_S_CMD);
                continue;
            }
            if (s->state == SMTP_S_AUTH) {
                smtp_auth_line(s, line);
                continue;
            }
            if (s->fc != NULL && !(s->ehlo_done && s->esmtp) && evbuffer_get_length(in) > 0 &&
                smtp_pipelining_refused(s))
                continue;
            smtp_command(s, line, strlen(line));
            continue;
        }
        default:
            return;
        }
    }
}

static void smtp_read_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_session *s = arg;
    if (s->state != SMTP_S_WAIT && s->state != SMTP_S_CLOSING)
        smtp_touch(s);
    /* nothing in here frees s: a close is finished from the loop */
    s->batching = s->ssl == NULL;
    smtp_process_input(s);
    s->batching = false;
    smtp_flush(s);
}

static void smtp_write_cb(struct bufferevent *bev, void *arg)
{
    struct smtp_session *s = arg;
    if (s->state == SMTP_S_CLOSING && s->close_ev == NULL)
        smtp_free(s);
}

static void smtp_tls_ready(struct smtp_session *s)
{
    s->tls = true;
    tls_describe(s->ssl, s->tls_desc, sizeof(s->tls_desc));
    log_info(s->sid, "event=tls %s", s->tls_desc);
}

static void smtp_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct smtp_session *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        /* TLS handshake finished (implicit TLS or after STARTTLS) */
        smtp_tls_ready(s);
        if (s->state == SMTP_S_TLS) {
            smtp_set_state(s, SMTP_S_CMD);
            smtp_process_input(s);
        }
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (what & BEV_EVENT_ERROR) {
            unsigned long e = bufferevent_get_openssl_error(bev);
            char buf[256] = "";
            if (e)
                ERR_error_string_n(e, buf, sizeof(buf));
            log_info(s->sid, "event=disconnect reason=error state=%s tls_error=\"%s\"",
                     state_names[s->state], buf);
        } else {
            log_info(s->sid, "event=disconnect reason=eof state=%s", state_names[s->state]);
        }
        if (s->state == SMTP_S_WAIT) {
            s->dead = true;
            bufferevent_disable(s->bev, EV_READ | EV_WRITE);
            return;
        }
        smtp_free(s);
    }
}

static void cmd_starttls(struct smtp_session *s, const char *arg)
{
    if (s->tls) {
        smtp_error(s, "554 5.5.1 Error: TLS already active");
        return;
    }
    if (s->srv->tls == NULL) {
        smtp_error(s, "502 5.5.1 Error: TLS not available");
        return;
    }
    if (arg[0] != '\0') {
        smtp_error(s, "501 5.5.4 Syntax: STARTTLS");
        return;
    }
    SSL *ssl = SSL_new(s->srv->tls);
    if (ssl == NULL) {
        smtp_reply(s, "454 4.7.0 TLS not available due to temporary reason");
        return;
    }
    smtp_reply(s, "220 2.0.0 Ready to start TLS");
    smtp_flush(s); /* in clear, before the TLS layer takes over */
    s->batching = false;
    /* Anything pipelined behind STARTTLS was sent in clear text before the
     * handshake: discard it (CVE-2011-0411 class). */
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
        smtp_close_with(s, "421 4.7.0 TLS setup failed");
        return;
    }
    s->bev = tlsbev;
    s->ssl = ssl;
    /* RFC 3207 4.2: forget everything learned before TLS */
    smtp_tx_reset(s);
    s->ehlo_done = s->esmtp = false;
    s->helo[0] = '\0';
    smtp_set_state(s, SMTP_S_TLS);
    bufferevent_setcb(tlsbev, smtp_read_cb, smtp_write_cb, smtp_event_cb, s);
    bufferevent_enable(tlsbev, EV_READ | EV_WRITE);
}

/* ---- lifecycle ---- */

static void smtp_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct smtp_session *s = arg;
    if (s->state == SMTP_S_WAIT || s->state == SMTP_S_CLOSING)
        return;
    log_info(s->sid, "event=timeout state=%s", state_names[s->state]);
    smtp_close_with(s, "421 4.4.2 Error: timeout exceeded, closing connection");
}

static void smtp_free(struct smtp_session *s)
{
    if (s->state == SMTP_S_WAIT && !s->dead) {
        /* an asynchronous step still refers to s: free on its completion */
        s->dead = true;
        if (s->bev)
            bufferevent_disable(s->bev, EV_READ | EV_WRITE);
        return;
    }
    log_info(s->sid, "event=close");
    smtp_tx_reset(s);
    if (s->fc)
        filter_conn_free(s->fc);
    if (s->next)
        s->next->prev = s->prev;
    if (s->prev)
        s->prev->next = s->next;
    else if (sessions_head == s)
        sessions_head = s->next;
    struct event *evs[] = { s->timer, s->delay_ev, s->close_ev, s->greet_ev };
    net_session_release(s->srv, s->ip, s->bev, evs, sizeof(evs) / sizeof(evs[0]));
    explicit_bzero(s->auth_pass, sizeof(s->auth_pass));
    strbuf_free(&s->pend);
    free(s);
}

/* Sends the greeting.  A client that spoke before it (postscreen's
 * pregreet test, seen with a peek at the socket) is reported first. */
static void smtp_banner(struct smtp_session *s)
{
    char peek[1];
    if (s->fc != NULL && s->ssl == NULL &&
        recv(bufferevent_getfd(s->bev), peek, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
        struct filter_verdict v;
        filter_verdict_init(&v);
        filter_event(s->fc, FILTER_EV_PREGREET, &v);
        if (v.action != FILTER_ACCEPT) {
            char reply[320];
            filter_verdict_reply(&v, reply, sizeof(reply));
            filter_verdict_free(&v);
            log_info(s->sid, "event=reject stage=pregreet reply=\"%s\"", reply);
            smtp_close_with(s, reply);
            return;
        }
        filter_verdict_free(&v);
    }
    smtp_reply(s, "220 %s ESMTP postel", s->cfg->hostname);
}

static void smtp_accept(struct net_conn *c)
{
    struct smtp_session *s = calloc(1, sizeof(*s));
    if (s != NULL)
        strbuf_init(&s->pend, SMTP_PEND_MAX);
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
    s->port = c->port;
    s->loopback = c->loopback;
    struct event_base *base = c->worker->base;
    if (c->role == ROLE_SUBMISSIONS) {
        s->ssl = SSL_new(srv->tls);
        s->bev = s->ssl ? bufferevent_openssl_socket_new(base, c->fd, s->ssl,
                                                          BUFFEREVENT_SSL_ACCEPTING,
                                                          BEV_OPT_CLOSE_ON_FREE)
                        : NULL;
    } else {
        s->bev = bufferevent_socket_new(base, c->fd, BEV_OPT_CLOSE_ON_FREE);
    }
    log_info(s->sid, "event=connect ip=%s port=%d role=%s", s->ip, s->port,
             listen_role_names[s->role]);
    free(c);
    s->next = sessions_head;
    if (sessions_head)
        sessions_head->prev = s;
    sessions_head = s;
    s->timer = evtimer_new(base, smtp_timeout_cb, s);
    if (s->bev == NULL || s->timer == NULL) {
        smtp_free(s);
        return;
    }
    bufferevent_setcb(s->bev, smtp_read_cb, smtp_write_cb, smtp_event_cb, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    smtp_set_state(s, SMTP_S_CMD);
    smtp_touch(s);
    if (srv->filter != NULL && !s->cfg->capture) {
        s->fc = filter_conn_new(srv->filter, s->ip, s->role == ROLE_SMTP, s->sid);
        smtp_fstage_start(s, FSTAGE_CONNECT);
        return;
    }
    smtp_banner(s);
}

static void smtp_drain(struct worker *w)
{
    struct smtp_session *s = sessions_head, *next;
    for (; s; s = next) {
        next = s->next;
        if (s->state == SMTP_S_CLOSING)
            continue;
        if (s->tx.active || s->state == SMTP_S_WAIT) {
            s->drain_pending = true; /* let the transaction finish */
            continue;
        }
        smtp_close_with(s, "421 4.3.2 Service shutting down, closing connection");
    }
}

static const struct proto_ops smtp_ops = {
    .accept = smtp_accept,
    .busy_reply = "421 4.7.0 Too many connections from your address, try again later\r\n",
    .drain = smtp_drain,
};

void smtp_server_register(void)
{
    server_register(ROLE_SMTP, &smtp_ops);
    server_register(ROLE_SUBMISSION, &smtp_ops);
    server_register(ROLE_SUBMISSIONS, &smtp_ops);
}
