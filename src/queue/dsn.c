/*
 * Delivery status notifications (RFC 3464 multipart/report, RFC 3461
 * rules, RFC 6533 for SMTPUTF8 messages) and the injection of generated
 * messages into the store.
 *
 * A report has three parts: a human explanation, the
 * message/delivery-status fields (per message: Reporting-MTA,
 * Original-Envelope-Id, Arrival-Date; per recipient: Original-Recipient,
 * Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
 * Last-Attempt-Date, Will-Retry-Until), and the original message
 * (message/rfc822) or its header (text/rfc822-headers) as RET asked.
 */
#include "queue/queue_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

#define DSN_CAP (QUEUE_DSN_FULL_MAX + 256u * 1024)

static void rfc5322_date(int64_t t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(buf, size, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/* Appends "Name: value" folded at spaces so no line passes ~78 octets
 * (RFC 5322 2.1.1); a word longer than that stays whole. */
static int field(struct strbuf *out, const char *name, const char *value)
{
    size_t col = strlen(name) + 2;
    if (strbuf_printf(out, "%s:", name) < 0)
        return -1;
    const char *p = value;
    while (*p != '\0') {
        while (*p == ' ')
            p++;
        const char *w = p;
        while (*p != '\0' && *p != ' ')
            p++;
        size_t wl = (size_t)(p - w);
        if (wl == 0)
            break;
        if (col + 1 + wl > 78 && col > strlen(name) + 2) {
            if (strbuf_append(out, "\r\n\t", 3) < 0)
                return -1;
            col = 1;
        } else {
            if (strbuf_append(out, " ", 1) < 0)
                return -1;
            col++;
        }
        if (strbuf_append(out, w, wl) < 0)
            return -1;
        col += wl;
    }
    return strbuf_append(out, "\r\n", 2);
}

/* Appends text word-wrapped at 76 columns, then an empty line. */
static int wrapped(struct strbuf *out, const char *text)
{
    size_t col = 0;
    int rc = 0;
    const char *p = text;
    while (*p != '\0' && rc == 0) {
        while (*p == ' ')
            p++;
        const char *w = p;
        while (*p != '\0' && *p != ' ')
            p++;
        size_t wl = (size_t)(p - w);
        if (wl == 0)
            break;
        if (col > 0 && col + 1 + wl > 76) {
            rc |= strbuf_append(out, "\r\n    ", 6);
            col = 4;
        } else if (col > 0) {
            rc |= strbuf_append(out, " ", 1);
            col++;
        }
        rc |= strbuf_append(out, w, wl);
        col += wl;
    }
    return rc | strbuf_append(out, "\r\n\r\n", 4);
}

static const char *addr_type(const char *addr, bool utf8)
{
    return utf8 && queue_has_8bit(addr, strlen(addr)) ? "utf-8" : "rfc822";
}

static int human_part(const struct dsn_info *in, struct strbuf *out)
{
    static const char *const intro[] = {
        [DSN_FAILURE] = "I'm sorry to have to inform you that your message could not\r\n"
                        "be delivered to one or more recipients. It's attached below.\r\n",
        [DSN_DELAY] = "Your message could not be delivered for some time. The mail\r\n"
                      "system will keep trying; there is nothing you need to do yet.\r\n",
        [DSN_SUCCESS] = "Your message was successfully handed on to the recipients\r\n"
                        "below, as you asked (their servers may not send further\r\n"
                        "notices).\r\n",
    };
    int rc = strbuf_printf(out, "This is the mail system at host %s.\r\n\r\n%s\r\n",
                           in->reporting_mta, intro[in->kind]);
    for (size_t i = 0; i < in->n_rcpts && rc == 0; i++) {
        const struct dsn_rcpt *r = &in->rcpts[i];
        const char *diag = r->res->diag;
        const char *semi = strchr(diag, ';');
        const char *text = semi ? semi + 2 : diag;
        char line[QUEUE_DIAG_MAX + 2 * HOSTNAME_MAX + 40];
        if (r->res->remote_mta[0] != '\0' && strncmp(diag, "smtp;", 5) == 0)
            snprintf(line, sizeof(line), "<%s>: host %s said: %s", r->address,
                     r->res->remote_mta, text[0] ? text : r->res->status);
        else
            snprintf(line, sizeof(line), "<%s>: %s", r->address, text[0] ? text : r->res->status);
        rc = wrapped(out, line);
    }
    return rc;
}

static int status_part(const struct dsn_info *in, struct strbuf *out)
{
    char date[64], v[QUEUE_DIAG_MAX + 300];
    int rc = 0;
    snprintf(v, sizeof(v), "dns; %s", in->reporting_mta);
    rc |= field(out, "Reporting-MTA", v);
    rc |= field(out, "X-Postel-Queue-ID", in->queue_id);
    if (in->envid != NULL && in->envid[0] != '\0')
        rc |= field(out, "Original-Envelope-Id", in->envid);
    rfc5322_date(in->arrival, date, sizeof(date));
    rc |= field(out, "Arrival-Date", date);
    for (size_t i = 0; i < in->n_rcpts && rc == 0; i++) {
        const struct dsn_rcpt *r = &in->rcpts[i];
        rc |= strbuf_append(out, "\r\n", 2);
        if (r->orcpt != NULL && r->orcpt[0] != '\0') {
            const char *semi = strchr(r->orcpt, ';');
            snprintf(v, sizeof(v), "%.*s; %s", semi ? (int)(semi - r->orcpt) : 6,
                     semi ? r->orcpt : "rfc822", semi ? semi + 1 : r->orcpt);
            rc |= field(out, "Original-Recipient", v);
        }
        snprintf(v, sizeof(v), "%s; %s", addr_type(r->address, in->utf8), r->address);
        rc |= field(out, "Final-Recipient", v);
        rc |= field(out, "Action", r->action);
        rc |= field(out, "Status", r->res->status[0] ? r->res->status : "5.0.0");
        if (r->res->remote_mta[0] != '\0') {
            snprintf(v, sizeof(v), "dns; %s", r->res->remote_mta);
            rc |= field(out, "Remote-MTA", v);
        }
        if (r->res->diag[0] != '\0')
            rc |= field(out, "Diagnostic-Code", r->res->diag);
        rfc5322_date(in->now, date, sizeof(date));
        rc |= field(out, "Last-Attempt-Date", date);
        if (in->kind == DSN_DELAY && in->retry_until > 0) {
            rfc5322_date(in->retry_until, date, sizeof(date));
            rc |= field(out, "Will-Retry-Until", date);
        }
    }
    return rc ? -1 : 0;
}

int dsn_build(const struct dsn_info *in, struct strbuf *out)
{
    static const char *const subject[] = {
        [DSN_FAILURE] = "Undelivered Mail Returned to Sender",
        [DSN_DELAY] = "Delayed Mail (still being retried)",
        [DSN_SUCCESS] = "Successful Mail Delivery Report",
    };
    char boundary[48], rnd[17], date[64];
    random_hex(rnd, 16);
    snprintf(boundary, sizeof(boundary), "%s.%s/%s", in->queue_id, rnd, "postel");
    rfc5322_date(in->now, date, sizeof(date));
    bool eight = in->utf8 || queue_has_8bit(in->orig, in->orig_len);
    int rc = strbuf_printf(
        out,
        "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
        "To: <%s>\r\n"
        "Subject: %s\r\n"
        "Date: %s\r\n"
        "Message-ID: <%s.%s@%s>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=%s;\r\n"
        "\tboundary=\"%s\"\r\n"
        "%s"
        "\r\n"
        "This is a MIME-encapsulated message.\r\n\r\n"
        "--%s\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=%s\r\n\r\n",
        in->reporting_mta, in->sender, subject[in->kind], date, in->queue_id, rnd,
        in->reporting_mta, in->utf8 ? "global-delivery-status" : "delivery-status", boundary,
        eight ? "Content-Transfer-Encoding: 8bit\r\n" : "", boundary,
        in->utf8 ? "utf-8" : "us-ascii");
    rc |= human_part(in, out);
    rc |= strbuf_printf(out,
                        "--%s\r\n"
                        "Content-Description: Delivery report\r\n"
                        "Content-Type: message/%s\r\n\r\n",
                        boundary, in->utf8 ? "global-delivery-status" : "delivery-status");
    rc |= status_part(in, out);
    if (in->orig != NULL && in->orig_len > 0) {
        const char *type = in->orig_full ? (in->utf8 ? "message/global" : "message/rfc822")
                                         : (in->utf8 ? "message/global-headers"
                                                     : "text/rfc822-headers");
        rc |= strbuf_printf(out,
                            "\r\n--%s\r\n"
                            "Content-Description: %s\r\n"
                            "Content-Type: %s\r\n%s\r\n",
                            boundary,
                            in->kind == DSN_FAILURE ? "Undelivered Message" : "Message Headers",
                            type, eight ? "Content-Transfer-Encoding: 8bit\r\n" : "");
        rc |= strbuf_append(out, in->orig, in->orig_len);
        if (in->orig_len < 2 || memcmp(in->orig + in->orig_len - 2, "\r\n", 2) != 0)
            rc |= strbuf_append(out, "\r\n", 2);
    }
    rc |= strbuf_printf(out, "\r\n--%s--\r\n", boundary);
    return rc ? -1 : 0;
}

/* ---- injection ---- */

#define INJECT_TARGETS 16

struct inject_list {
    struct store_rcpt_target *targets;
    struct store_tx_rcpt *rcpts;
    size_t n, cap;
};

/* Resolves one recipient into the list.  0, -1 store error, 1 unknown. */
static int inject_resolve(struct store *st, const char *addr, struct inject_list *l)
{
    struct store_rcpt_target t[INJECT_TARGETS];
    int n = store_rcpt_resolve(st, addr, t, INJECT_TARGETS);
    if (n == -2) {
        memset(&t[0], 0, sizeof(t[0]));
        t[0].kind = STORE_RCPT_REMOTE;
        str_copy(t[0].address, addr, sizeof(t[0].address));
        n = 1;
    }
    if (n < 0)
        return -1;
    if (n == 0) {
        log_warn(NULL, "event=inject_unknown_rcpt rcpt=<%s>", addr);
        return 1;
    }
    for (int i = 0; i < n && l->n < l->cap; i++) {
        l->targets[l->n] = t[i];
        l->rcpts[l->n] = (struct store_tx_rcpt){ .address = addr, .target = &l->targets[l->n],
                                                 .mailbox = "INBOX",
                                                 .notify = STORE_NOTIFY_NEVER };
        l->n++;
    }
    return 0;
}

int queue_inject_async(struct store *st, const char *sender, const char *const *rcpts, size_t n,
                       const char *msg, size_t len, bool smtputf8, queue_inject_fn *done,
                       void *arg)
{
    struct inject_list l = { 0 };
    l.cap = n * INJECT_TARGETS;
    l.targets = calloc(l.cap ? l.cap : 1, sizeof(*l.targets));
    l.rcpts = calloc(l.cap ? l.cap : 1, sizeof(*l.rcpts));
    int rc = l.targets && l.rcpts ? 0 : -1;
    for (size_t i = 0; i < n && rc >= 0; i++)
        if (inject_resolve(st, rcpts[i], &l) < 0)
            rc = -1;
    if (rc == 0 && l.n == 0)
        rc = -2;
    struct store_tx *tx = NULL;
    if (rc == 0) {
        struct store_envelope env = { .sender = sender, .smtputf8 = smtputf8,
                                      .body_8bit = queue_has_8bit(msg, len),
                                      .rcpts = l.rcpts, .n_rcpts = l.n };
        const char *err;
        tx = store_tx_begin(st, &env, &err);
        if (tx == NULL || store_tx_write(tx, msg, len) < 0) {
            log_warn(NULL, "event=inject_failed error=\"%s\"", tx ? "write" : err);
            store_tx_abort(tx);
            rc = -1;
        }
    }
    free(l.targets);
    free(l.rcpts);
    if (rc == 0)
        store_tx_commit(tx, done, arg);
    return rc;
}

struct inject_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int result;
    char id[32];
};

static void inject_wait_done(void *arg, int result, const char *id, const char *error)
{
    struct inject_wait *w = arg;
    pthread_mutex_lock(&w->lock);
    w->result = result;
    str_copy(w->id, id ? id : "", sizeof(w->id));
    if (result < 0)
        log_warn(NULL, "event=inject_commit_failed error=\"%s\"", error ? error : "?");
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int queue_inject(struct store *st, const char *sender, const char *const *rcpts, size_t n,
                 const char *msg, size_t len, char *id_r, size_t id_size)
{
    struct inject_wait w = { .done = false };
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    int rc = queue_inject_async(st, sender, rcpts, n, msg, len, queue_has_8bit(msg, len),
                                inject_wait_done, &w);
    if (rc == 0) {
        pthread_mutex_lock(&w.lock);
        while (!w.done)
            pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
        rc = w.result < 0 ? -1 : 0;
        if (rc == 0 && id_r != NULL && id_size > 0)
            str_copy(id_r, w.id, id_size);
    }
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.cond);
    return rc;
}
