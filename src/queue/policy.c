/*
 * Pure rules of the outbound queue: retry timing, what a reply means,
 * which ESMTP parameters to send, when SMTPUTF8 is needed.
 */
#include "queue/queue_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_parse.h"

static unsigned env_seconds(const char *name, unsigned def)
{
    const char *v = getenv(name);
    uint64_t s;
    if (v == NULL || *v == '\0' || parse_duration(v, &s) < 0 || s == 0 || s > 86400 * 30)
        return def;
    return (unsigned)s;
}

void queue_timing_init(struct queue_timing *t)
{
    t->backoff_min = env_seconds("POSTEL_QUEUE_BACKOFF", QUEUE_BACKOFF_MIN);
    t->backoff_max = t->backoff_min == QUEUE_BACKOFF_MIN ? QUEUE_BACKOFF_MAX
                                                         : t->backoff_min * 48;
    t->delay_warning = env_seconds("POSTEL_QUEUE_DELAY_WARNING", QUEUE_DELAY_WARNING);
    t->command_timeout = env_seconds("POSTEL_QUEUE_TIMEOUT", 300);
    t->connect_timeout = env_seconds("POSTEL_QUEUE_TIMEOUT", 30);
}

int64_t queue_backoff(const struct queue_timing *t, int attempts)
{
    int64_t d = t->backoff_min;
    for (int i = 1; i < attempts && d < t->backoff_max; i++)
        d *= 2;
    return d < t->backoff_max ? d : t->backoff_max;
}

void queue_result_from_reply(struct queue_result *r, const struct smtp_client_reply *reply,
                             const char *mta)
{
    int cls = reply->code / 100;
    r->outcome = cls == 2 ? Q_DELIVERED : cls == 5 ? Q_FAILED : Q_DEFERRED;
    if (reply->enhanced[0] != '\0' && reply->enhanced[0] == (char)('0' + cls))
        str_copy(r->status, reply->enhanced, sizeof(r->status));
    else
        snprintf(r->status, sizeof(r->status), "%d.0.0", cls == 2 || cls == 5 ? cls : 4);
    str_copy(r->remote_mta, mta ? mta : "", sizeof(r->remote_mta));
    char text[QUEUE_DIAG_MAX - 8];
    smtp_reply_format(reply, text, sizeof(text));
    snprintf(r->diag, sizeof(r->diag), "smtp; %s", text);
}

void queue_result_local(struct queue_result *r, enum queue_outcome o, const char *status,
                        const char *mta, const char *fmt, ...)
{
    r->outcome = o;
    str_copy(r->status, status, sizeof(r->status));
    str_copy(r->remote_mta, mta ? mta : "", sizeof(r->remote_mta));
    char text[QUEUE_DIAG_MAX - 12];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    for (char *p = text; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    snprintf(r->diag, sizeof(r->diag), "X-Postel; %s", text);
}

void queue_result_encode(const struct queue_result *r, char *buf, size_t size)
{
    snprintf(buf, size, "%s\t%s\t%s", r->status, r->remote_mta, r->diag);
}

void queue_result_decode(struct queue_result *r, const char *note)
{
    memset(r, 0, sizeof(*r));
    const char *t1 = strchr(note, '\t');
    const char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
    if (t1 == NULL || t2 == NULL) {
        if (note[0] != '\0')
            snprintf(r->diag, sizeof(r->diag), "X-Postel; %s", note);
        return;
    }
    size_t n = (size_t)(t1 - note);
    if (n < sizeof(r->status)) {
        memcpy(r->status, note, n);
        r->status[n] = '\0';
    }
    n = (size_t)(t2 - t1 - 1);
    if (n < sizeof(r->remote_mta)) {
        memcpy(r->remote_mta, t1 + 1, n);
        r->remote_mta[n] = '\0';
    }
    str_copy(r->diag, t2 + 1, sizeof(r->diag));
}

/* Appends " KEY=value" when it fits. */
static void param_add(char *buf, size_t size, const char *key, const char *value)
{
    size_t have = strlen(buf);
    snprintf(buf + have, size - have, " %s%s%s", key, value ? "=" : "", value ? value : "");
}

void queue_mail_params(const struct store_queue_msg *m, const struct smtp_ext *ext, bool utf8,
                       char *buf, size_t size)
{
    buf[0] = '\0';
    char v[400];
    if (ext->size) {
        snprintf(v, sizeof(v), "%llu", (unsigned long long)m->e.size);
        param_add(buf, size, "SIZE", v);
    }
    if (m->body_8bit && ext->eightbitmime)
        param_add(buf, size, "BODY", "8BITMIME");
    if (utf8 && ext->smtputf8)
        param_add(buf, size, "SMTPUTF8", NULL);
    if (!ext->dsn)
        return;
    if (m->ret[0] != '\0')
        param_add(buf, size, "RET", m->ret);
    if (m->envid[0] != '\0' && smtp_xtext_encode(m->envid, v, sizeof(v)) == 0)
        param_add(buf, size, "ENVID", v);
}

void queue_rcpt_params(const struct store_queue_rcpt *r, const struct smtp_ext *ext, char *buf,
                       size_t size)
{
    buf[0] = '\0';
    if (!ext->dsn)
        return;
    unsigned n = r->notify & (STORE_NOTIFY_NEVER | STORE_NOTIFY_SUCCESS | STORE_NOTIFY_FAILURE |
                              STORE_NOTIFY_DELAY);
    if (n & STORE_NOTIFY_NEVER) {
        param_add(buf, size, "NOTIFY", "NEVER");
    } else if (n != 0) {
        char v[40] = "";
        if (n & STORE_NOTIFY_SUCCESS)
            strcat(v, "SUCCESS,");
        if (n & STORE_NOTIFY_FAILURE)
            strcat(v, "FAILURE,");
        if (n & STORE_NOTIFY_DELAY)
            strcat(v, "DELAY,");
        v[strlen(v) - 1] = '\0';
        param_add(buf, size, "NOTIFY", v);
    }
    /* ORCPT=addr-type;xtext(address) (RFC 3461 4.2) */
    const char *semi = strchr(r->orcpt, ';');
    if (semi != NULL && semi > r->orcpt && semi - r->orcpt < 32) {
        char enc[1600], v[1700];
        if (smtp_xtext_encode(semi + 1, enc, sizeof(enc)) == 0) {
            snprintf(v, sizeof(v), "%.*s;%s", (int)(semi - r->orcpt), r->orcpt, enc);
            param_add(buf, size, "ORCPT", v);
        }
    }
}

bool queue_has_8bit(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            return true;
    return false;
}

bool queue_needs_smtputf8(const struct store_queue_msg *m, const char *head, size_t head_len,
                          bool *envelope_r)
{
    *envelope_r = false;
    if (!m->smtputf8)
        return false;
    bool env = queue_has_8bit(m->e.sender, strlen(m->e.sender));
    for (size_t i = 0; i < m->n_rcpts && !env; i++)
        env = queue_has_8bit(m->rcpts[i].address, strlen(m->rcpts[i].address));
    *envelope_r = env;
    return env || queue_has_8bit(head, head_len);
}

int queue_rcpt_domain(const char *address, char *buf, size_t size)
{
    const char *at = strrchr(address, '@');
    if (at == NULL || at[1] == '\0')
        return -1;
    if (str_copy(buf, at + 1, size) >= size)
        return -1;
    if (buf[0] != '[')
        str_lower(buf);
    size_t n = strlen(buf);
    if (n > 1 && buf[n - 1] == '.')
        buf[n - 1] = '\0';
    return 0;
}
