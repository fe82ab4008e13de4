/*
 * Delivery to one destination: where to connect (MX lookup on the
 * queue's dns_async, RFC 5321 5.1), and sessions that carry jobs.
 *
 * Resolution: MX records sorted by preference (equal ones shuffled); no
 * MX records means the domain itself (implicit MX); a Null MX (RFC 7505)
 * or a domain that does not exist fails the jobs at once; a DNS timeout
 * or SERVFAIL defers them.  Each host's AAAA then A addresses follow in
 * that order.  With [relay] host set, every destination is the relay.
 *
 * A session takes the first pending job of its destination and tries the
 * addresses in order until one accepts a connection and a greeting
 * (refused connections, timeouts, 4xx/5xx greetings, failed EHLO or TLS
 * move on to the next address); when none does, the job and every other
 * job waiting for the destination are deferred.  An open session carries
 * the destination's next pending jobs (connection reuse) until none is
 * left or QUEUE_MSGS_PER_CONN were sent.
 */
#include "queue/queue_int.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/log.h"
#include "net/server.h"

/* ------------------------------------------------------------------ */
/* Resolution                                                           */
/* ------------------------------------------------------------------ */

struct q_hostq {
    struct q_resolve *r;
    int host;
    bool v6;
    struct dns_async_query *q;
};

struct q_resolve {
    struct queue *q;
    struct q_dest *d;
    char name[DNS_NAME_MAX + 2];      /* the domain as asked (A-labels) */
    struct dns_async_query *mx_q;
    struct {
        char name[DNS_NAME_MAX + 2];
        struct dns_addr a[2][QUEUE_ADDRS_PER_HOST];   /* [0] AAAA, [1] A */
        int n[2];
        enum dns_status st[2];
        char why[160];
    } hosts[QUEUE_MX_MAX];
    struct q_hostq hq[QUEUE_MX_MAX][2];
    int n_hosts, outstanding;
    bool implicit;
};

static void dest_fail_pending(struct queue *q, struct q_dest *d, const struct queue_result *r)
{
    while (d->head != NULL) {
        struct q_job *job = d->head;
        d->head = job->next;
        d->n_pending--;
        queue_job_fail(q, job, r);
    }
    d->tail = &d->head;
}

static void resolve_free(struct q_resolve *r)
{
    if (r == NULL)
        return;
    dns_async_cancel(r->mx_q);
    for (int i = 0; i < r->n_hosts; i++)
        for (int f = 0; f < 2; f++)
            dns_async_cancel(r->hq[i][f].q);
    free(r);
}

/* Ends a resolution with a failure for every pending job. */
static void resolve_failed(struct q_resolve *r, enum queue_outcome o, const char *status,
                           const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void resolve_failed(struct q_resolve *r, enum queue_outcome o, const char *status,
                           const char *fmt, ...)
{
    struct queue *q = r->q;
    struct q_dest *d = r->d;
    char text[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    struct queue_result res;
    memset(&res, 0, sizeof(res));
    queue_result_local(&res, o, status, NULL, "%s", text);
    log_info(NULL, "event=resolve_failed dest=%s status=%s diag=\"%s\"", d->key, res.status,
             res.diag);
    d->res = NULL;
    d->rstate = QD_NEW;
    resolve_free(r);
    dest_fail_pending(q, d, &res);
}

/* RFC 5321 5.1: our own name in the MX list ends the list there. */
static bool host_is_self(struct queue *q, const char *host)
{
    return strcasecmp(host, q->helo) == 0;
}

static void resolve_finish(struct q_resolve *r)
{
    struct q_dest *d = r->d;
    size_t n = 0;
    bool temp = false;
    for (int i = 0; i < r->n_hosts; i++)
        for (int f = 0; f < 2; f++) {
            n += (size_t)r->hosts[i].n[f];
            temp |= r->hosts[i].st[f] == DNS_TEMPFAIL;
        }
    if (n == 0) {
        const char *why = r->hosts[0].why[0] ? r->hosts[0].why : "no address";
        if (temp)
            resolve_failed(r, Q_DEFERRED, "4.4.3", "Host not found, try again: %s", why);
        else if (r->implicit)
            resolve_failed(r, Q_FAILED, "5.1.2", "Host or domain name not found: %s", why);
        else
            resolve_failed(r, Q_FAILED, "5.4.4", "No address for any MX host: %s", why);
        return;
    }
    struct q_addr *addrs = calloc(n, sizeof(*addrs));
    if (addrs == NULL) {
        resolve_failed(r, Q_DEFERRED, "4.3.0", "%s", "out of memory");
        return;
    }
    size_t k = 0;
    for (int i = 0; i < r->n_hosts; i++)
        for (int f = 0; f < 2; f++)
            for (int j = 0; j < r->hosts[i].n[f]; j++) {
                addrs[k].a = r->hosts[i].a[f][j];
                str_copy(addrs[k].host, r->hosts[i].name, sizeof(addrs[k].host));
                k++;
            }
    free(d->addrs);
    d->addrs = addrs;
    d->n_addrs = n;
    d->rstate = QD_READY;
    d->resolved_at = (int64_t)time(NULL);
    d->res = NULL;
    char first[64];
    log_debug(NULL, "event=resolved dest=%s hosts=%d addrs=%zu first=%s[%s]", d->key, r->n_hosts,
              n, addrs[0].host, dns_addr_format(&addrs[0].a, first, sizeof(first)));
    struct queue *q = r->q;
    resolve_free(r);
    queue_dest_kick(q, d);
}

static void on_addr(void *arg, const struct dns_result *res)
{
    struct q_hostq *hq = arg;
    struct q_resolve *r = hq->r;
    int f = hq->v6 ? 0 : 1;
    hq->q = NULL;
    r->hosts[hq->host].st[f] = res->status;
    if (res->status == DNS_OK) {
        for (size_t i = 0; i < res->n && r->hosts[hq->host].n[f] < QUEUE_ADDRS_PER_HOST; i++)
            if (res->rr[i].type == (hq->v6 ? DNS_T_AAAA : DNS_T_A))
                r->hosts[hq->host].a[f][r->hosts[hq->host].n[f]++] = res->rr[i].addr;
    } else if (r->hosts[hq->host].why[0] == '\0') {
        char why[DNS_NAME_MAX + 200];
        snprintf(why, sizeof(why), "%s: %s", r->hosts[hq->host].name,
                 res->why[0] ? res->why : dns_status_name(res->status));
        str_copy(r->hosts[hq->host].why, why, sizeof(r->hosts[0].why));
    }
    if (--r->outstanding == 0)
        resolve_finish(r);
}

/* Asks AAAA and A for every host. */
static void resolve_hosts(struct q_resolve *r)
{
    r->outstanding = r->n_hosts * 2;
    for (int i = 0; i < r->n_hosts; i++) {
        for (int f = 0; f < 2; f++) {
            struct q_hostq *hq = &r->hq[i][f];
            hq->r = r;
            hq->host = i;
            hq->v6 = f == 0;
            r->hosts[i].st[f] = DNS_TEMPFAIL;
            hq->q = dns_async_query(r->q->dns, r->hosts[i].name, f == 0 ? DNS_T_AAAA : DNS_T_A,
                                    on_addr, hq);
            if (hq->q == NULL)
                r->outstanding--;
        }
    }
    if (r->outstanding == 0)
        resolve_failed(r, Q_DEFERRED, "4.4.3", "%s", "DNS query could not be started");
}

static void on_mx(void *arg, const struct dns_result *res)
{
    struct q_resolve *r = arg;
    r->mx_q = NULL;
    switch (res->status) {
    case DNS_OK:
        break;
    case DNS_NODATA:
        /* RFC 5321 5.1: no MX, the domain itself is the implicit MX */
        r->implicit = true;
        r->n_hosts = 1;
        str_copy(r->hosts[0].name, r->name, sizeof(r->hosts[0].name));
        resolve_hosts(r);
        return;
    case DNS_NXDOMAIN:
    case DNS_BADNAME:
        resolve_failed(r, Q_FAILED, "5.1.2", "Host or domain name not found: %s", r->name);
        return;
    default:
        resolve_failed(r, Q_DEFERRED, "4.4.3", "MX lookup failed, try again: %s",
                       res->why[0] ? res->why : r->name);
        return;
    }
    /* RFC 7505 3: "0 ." alone is a Null MX */
    if (res->n == 1 && res->rr[0].name != NULL && res->rr[0].name[0] == '\0') {
        resolve_failed(r, Q_FAILED, "5.1.10",
                       "Domain %s does not accept mail (null MX, RFC 7505)", r->name);
        return;
    }
    struct dns_mx mx[DNS_MAX_RECORDS];
    size_t n = 0;
    for (size_t i = 0; i < res->n && n < DNS_MAX_RECORDS; i++) {
        if (res->rr[i].type != DNS_T_MX || res->rr[i].name == NULL || res->rr[i].name[0] == '\0')
            continue;
        mx[n].pref = res->rr[i].pref;
        str_copy(mx[n].host, res->rr[i].name, sizeof(mx[n].host));
        n++;
    }
    dns_mx_sort(mx, n);
    for (size_t i = 0; i < n && r->n_hosts < QUEUE_MX_MAX; i++) {
        if (host_is_self(r->q, mx[i].host))
            break;
        str_copy(r->hosts[r->n_hosts++].name, mx[i].host, sizeof(r->hosts[0].name));
    }
    if (r->n_hosts == 0) {
        if (n > 0)
            resolve_failed(r, Q_FAILED, "5.4.6", "mail for %s loops back to myself", r->name);
        else
            resolve_failed(r, Q_FAILED, "5.1.2", "no usable MX host for %s", r->name);
        return;
    }
    resolve_hosts(r);
}

/* "[1.2.3.4]" or "[IPv6:...]": the address inside, 0 or -1. */
static int literal_addr(const char *key, struct dns_addr *a)
{
    char inner[SMTP_DOMAIN_MAX + 1];
    size_t n = strlen(key);
    if (n < 3 || key[0] != '[' || key[n - 1] != ']' || n - 2 >= sizeof(inner))
        return -1;
    memcpy(inner, key + 1, n - 2);
    inner[n - 2] = '\0';
    const char *p = inner;
    if (strncasecmp(p, "IPv6:", 5) == 0)
        p += 5;
    return dns_addr_parse(p, a);
}

/* A destination whose address needs no lookup: a literal, or a relay
 * host given as an address. */
static bool resolve_literal(struct queue *q, struct q_dest *d, const char *host)
{
    struct dns_addr a;
    if (literal_addr(host, &a) < 0 && dns_addr_parse(host, &a) < 0)
        return false;
    struct q_addr *addrs = calloc(1, sizeof(*addrs));
    if (addrs == NULL)
        return false;
    addrs->a = a;
    str_copy(addrs->host, host, sizeof(addrs->host));
    free(d->addrs);
    d->addrs = addrs;
    d->n_addrs = 1;
    d->rstate = QD_READY;
    d->resolved_at = (int64_t)time(NULL);
    return true;
}

static void resolve_start(struct queue *q, struct q_dest *d)
{
    const struct config *cfg = queue_cfg(q);
    const char *host = d->relay ? cfg->relay_host : d->key;
    if (resolve_literal(q, d, host)) {
        queue_dest_kick(q, d);
        return;
    }
    struct q_resolve *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return;
    r->q = q;
    r->d = d;
    d->res = r;
    d->rstate = QD_RESOLVING;
    /* an internationalized domain is looked up by its A-labels */
    char *ascii = NULL;
    if (queue_has_8bit(host, strlen(host)) &&
        idn2_to_ascii_8z(host, &ascii, IDN2_NONTRANSITIONAL) == IDN2_OK && ascii != NULL)
        str_copy(r->name, ascii, sizeof(r->name));
    else
        str_copy(r->name, host, sizeof(r->name));
    free(ascii);
    if (d->relay) {
        /* the relay host is a host, not a mail domain: no MX lookup */
        r->n_hosts = 1;
        str_copy(r->hosts[0].name, r->name, sizeof(r->hosts[0].name));
        r->implicit = true;
        resolve_hosts(r);
        return;
    }
    r->mx_q = dns_async_query(q->dns, r->name, DNS_T_MX, on_mx, r);
    if (r->mx_q == NULL)
        resolve_failed(r, Q_DEFERRED, "4.4.3", "%s", "DNS query could not be started");
}

/* ------------------------------------------------------------------ */
/* Sessions                                                             */
/* ------------------------------------------------------------------ */

struct q_sess {
    struct queue *q;
    struct q_dest *d;
    struct smtp_client *cl;
    struct q_job *job;
    size_t addr_i;
    size_t tx_off, tx_n;              /* the job's recipients in the current transaction */
    int n_msgs;
    bool plain;                       /* retrying this address without STARTTLS */
    bool connected;                   /* some address took a session */
    char sid[16];
    char mta[DNS_NAME_MAX + 70];      /* "host[addr]:port" of the current address, for texts */
    char host[DNS_NAME_MAX + 2];      /* its host name: Remote-MTA */
    char auth_pass[512];
    struct queue_result last;         /* the last connection-level failure */
    struct q_sess *prev, *next;
};

static void sess_connect(struct q_sess *s);
static void sess_run_job(struct q_sess *s);

/* Frees capacity: this destination's queue first, then any other. */
static void capacity_freed(struct queue *q, struct q_dest *d)
{
    if (q->stopping)
        return;
    queue_dest_kick(q, d);
    for (struct q_dest *o = q->dests; o != NULL && q->active < QUEUE_TOTAL_CONCURRENCY; o = o->next)
        if (o != d && o->head != NULL)
            queue_dest_kick(q, o);
}

/* A connection that was saying QUIT while counted against the limits. */
struct q_slot {
    struct queue *q;
    struct q_dest *d;
};

static void slot_release(void *arg)
{
    struct q_slot *slot = arg;
    struct queue *q = slot->q;
    struct q_dest *d = slot->d;
    free(slot);
    d->active--;
    q->active--;
    capacity_freed(q, d);
}

static void sess_end(struct q_sess *s)
{
    struct queue *q = s->q;
    struct q_dest *d = s->d;
    if (s->cl != NULL)
        smtp_client_free(s->cl);
    if (s->job != NULL)
        queue_job_fail(q, s->job, &s->last);
    if (s->prev)
        s->prev->next = s->next;
    else
        q->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    explicit_bzero(s->auth_pass, sizeof(s->auth_pass));
    free(s);
    d->active--;
    q->active--;
    capacity_freed(q, d);
}

/* Takes the destination's next job, or NULL. */
static struct q_job *dest_take(struct q_dest *d)
{
    struct q_job *job = d->head;
    if (job == NULL)
        return NULL;
    d->head = job->next;
    if (d->head == NULL)
        d->tail = &d->head;
    d->n_pending--;
    job->next = NULL;
    return job;
}

static void sess_start(struct queue *q, struct q_dest *d)
{
    struct q_sess *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return;
    s->q = q;
    s->d = d;
    s->job = dest_take(d);
    random_hex(s->sid, 10);
    queue_result_local(&s->last, Q_DEFERRED, "4.4.1", NULL, "%s", "no server reachable");
    s->next = q->sessions;
    if (q->sessions)
        q->sessions->prev = s;
    q->sessions = s;
    d->active++;
    q->active++;
    sess_connect(s);
}

/* The connection-level failure of the current address, for the
 * diagnostics if every address fails. */
static void sess_note_failure(struct q_sess *s, const struct smtp_client_error *err)
{
    if (err->reply.code != 0) {
        queue_result_from_reply(&s->last, &err->reply, s->host);
        s->last.outcome = Q_DEFERRED;
        if (s->last.status[0] == '5')
            s->last.status[0] = '4';
        size_t n = strlen(s->last.diag);
        snprintf(s->last.diag + n, sizeof(s->last.diag) - n, " (in reply to %s)", err->stage);
    } else {
        queue_result_local(&s->last, Q_DEFERRED, "4.4.1", NULL, "%s to %s: %s",
                           strcmp(err->stage, "connect") == 0 ? "connect" : err->stage, s->mta,
                           err->error);
        if (strcmp(err->stage, "connect") != 0 && strcmp(err->stage, "TLS") != 0)
            str_copy(s->last.status, "4.4.2", sizeof(s->last.status));
    }
    log_info(s->sid, "event=delivery_connect_failed dest=%s mta=%s stage=\"%s\" diag=\"%s\"",
             s->d->key, s->mta, err->stage, s->last.diag);
}

/* Every address failed: this job and every job waiting for the
 * destination are deferred with the last failure. */
static void sess_exhausted(struct q_sess *s)
{
    struct queue_result r = s->last;
    if (s->job != NULL) {
        struct q_job *job = s->job;
        s->job = NULL;
        queue_job_fail(s->q, job, &r);
    }
    if (!s->connected)
        dest_fail_pending(s->q, s->d, &r);
    sess_end(s);
}

static void sess_next_addr(struct q_sess *s)
{
    if (s->cl != NULL)
        smtp_client_free(s->cl);
    s->cl = NULL;
    s->addr_i++;
    s->plain = false;
    sess_connect(s);
}

static void on_open(void *arg, struct smtp_client *c, int status, const struct smtp_client_error *err)
{
    struct q_sess *s = arg;
    if (status == 0) {
        s->connected = true;
        char tls[128];
        smtp_client_tls(c, tls, sizeof(tls));
        log_debug(s->sid, "event=delivery_session dest=%s mta=%s tls=\"%s\"", s->d->key, s->mta,
                  tls);
        sess_run_job(s);
        return;
    }
    sess_note_failure(s, err);
    const struct config *cfg = queue_cfg(s->q);
    bool relay_auth = s->d->relay && cfg->relay_username[0] != '\0';
    if (strcmp(err->stage, "TLS") == 0 && !s->plain && !relay_auth) {
        /* opportunistic TLS failed: once more in plaintext, same address */
        smtp_client_free(s->cl);
        s->cl = NULL;
        s->plain = true;
        sess_connect(s);
        return;
    }
    sess_next_addr(s);
}

static int read_password(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    char *line = fgets(buf, (int)size, f);
    fclose(f);
    if (line == NULL)
        return -1;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

static void sess_connect(struct q_sess *s)
{
    struct queue *q = s->q;
    struct q_dest *d = s->d;
    if (q->stopping || s->job == NULL) {
        if (s->job != NULL) {
            /* no result: the entry stays due as it was */
            struct q_job *job = s->job;
            s->job = NULL;
            queue_job_done(q, job);
        }
        sess_end(s);
        return;
    }
    if (s->addr_i >= d->n_addrs) {
        sess_exhausted(s);
        return;
    }
    const struct config *cfg = queue_cfg(q);
    const struct q_addr *a = &d->addrs[s->addr_i];
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    int port = d->relay ? cfg->relay_port : cfg->delivery_port;
    char ip[INET6_ADDRSTRLEN];
    dns_addr_format(&a->a, ip, sizeof(ip));
    if (a->a.family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = a->a.u.v6;
        s6->sin6_port = htons((uint16_t)port);
        len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_addr = a->a.u.v4;
        s4->sin_port = htons((uint16_t)port);
        len = sizeof(*s4);
    }
    snprintf(s->mta, sizeof(s->mta), "%s[%s]:%d", a->host, ip, port);
    str_copy(s->host, a->host, sizeof(s->host));
    struct smtp_client_opts o = {
        .sid = s->sid,
        .helo = q->helo,
        .peer_name = a->host,
        .tls_ctx = s->plain ? NULL : (SSL_CTX *)q->tls,
        .connect_timeout = q->timing.connect_timeout,
        .command_timeout = q->timing.command_timeout,
        .data_timeout = q->timing.command_timeout * 2,
    };
    if (d->relay && cfg->relay_username[0] != '\0') {
        if (read_password(cfg->relay_password_file, s->auth_pass, sizeof(s->auth_pass)) < 0) {
            queue_result_local(&s->last, Q_DEFERRED, "4.7.0", NULL,
                               "cannot read the relay password file %s",
                               cfg->relay_password_file);
            log_error(s->sid, "event=relay_password_unreadable path=%s",
                      cfg->relay_password_file);
            sess_exhausted(s);
            return;
        }
        o.auth_user = cfg->relay_username;
        o.auth_pass = s->auth_pass;
        o.tls_required = true;
    }
    log_debug(s->sid, "event=delivery_connect dest=%s mta=%s", d->key, s->mta);
    s->cl = smtp_client_connect(q->base, &o, (struct sockaddr *)&ss, len, on_open, s);
    if (s->cl == NULL)
        sess_exhausted(s);
}

/* ---- transactions ---- */

static void sess_continue(struct q_sess *s, bool conn_ok);

static void log_rcpt(struct q_sess *s, struct q_msg *qm, size_t i)
{
    const struct queue_result *r = &qm->res[i];
    static const char *const names[] = { "none", "sent", "bounced", "deferred" };
    log_info(s->sid, "event=delivery id=%s rcpt=<%s> result=%s mta=%s status=%s diag=\"%.300s\"",
             qm->m->e.id, qm->m->rcpts[i].address, names[r->outcome], s->mta, r->status,
             r->diag);
}

/* Fails the rest of the job (from tx_off) with one local result. */
static void job_fail_rest(struct q_sess *s, enum queue_outcome o, const char *status,
                          const char *text)
{
    struct q_job *job = s->job;
    for (size_t i = s->tx_off; i < job->n; i++) {
        queue_result_local(&job->msg->res[job->idx[i]], o, status, s->host, "%s (%s)", text,
                           s->mta);
        log_rcpt(s, job->msg, job->idx[i]);
    }
    s->tx_off = job->n;
}

static void on_tx(void *arg, struct smtp_client *c, const struct smtp_client_result *res);

static void sess_send_batch(struct q_sess *s)
{
    struct q_job *job = s->job;
    struct q_msg *qm = job->msg;
    const struct smtp_ext *ext = smtp_client_ext(s->cl);
    size_t n = job->n - s->tx_off;
    if (n > QUEUE_RCPTS_PER_TX)
        n = QUEUE_RCPTS_PER_TX;
    const char *rcpts[QUEUE_RCPTS_PER_TX];
    char params[QUEUE_RCPTS_PER_TX][1800];
    const char *pp[QUEUE_RCPTS_PER_TX];
    for (size_t i = 0; i < n; i++) {
        const struct store_queue_rcpt *r = &qm->m->rcpts[job->idx[s->tx_off + i]];
        rcpts[i] = r->address;
        queue_rcpt_params(r, ext, params[i], sizeof(params[i]));
        pp[i] = params[i];
    }
    char mparams[600];
    queue_mail_params(qm->m, ext, qm->utf8, mparams, sizeof(mparams));
    struct smtp_client_tx tx = {
        .mail_from = qm->m->e.sender,
        .mail_params = mparams,
        .n_rcpts = n,
        .rcpts = rcpts,
        .rcpt_params = pp,
        .fd = qm->fd,
        .size = qm->m->e.size,
    };
    s->tx_n = n;
    if (smtp_client_send(s->cl, &tx, on_tx, s) < 0) {
        /* the server went away while idle: this address again is pointless */
        struct smtp_client_error e = { .stage = "MAIL FROM" };
        str_copy(e.error, "connection lost", sizeof(e.error));
        sess_note_failure(s, &e);
        sess_next_addr(s);
    }
}

/* Checks the job against the server's extensions, then sends. */
static void sess_run_job(struct q_sess *s)
{
    struct q_job *job = s->job;
    struct q_msg *qm = job->msg;
    const struct smtp_ext *ext = smtp_client_ext(s->cl);
    s->tx_off = 0;
    if (qm->fd < 0) {
        job_fail_rest(s, Q_DEFERRED, "4.3.0", "queue file unreadable");
    } else if (qm->utf8 && !ext->smtputf8) {
        /* RFC 6531 3.2: no downgrade here; the sender learns it */
        job_fail_rest(s, Q_FAILED, qm->utf8_envelope ? "5.6.7" : "5.6.9",
                      qm->utf8_envelope
                          ? "the server does not support SMTPUTF8, needed for the "
                            "non-ASCII addresses of this message"
                          : "the server does not support SMTPUTF8, needed for the "
                            "non-ASCII header of this message");
    } else if (ext->size && ext->size_max > 0 && qm->m->e.size > ext->size_max) {
        /* RFC 1870 6: over the fixed limit the server announced */
        char text[160];
        snprintf(text, sizeof(text), "message size %llu exceeds the server's limit of %llu",
                 (unsigned long long)qm->m->e.size, (unsigned long long)ext->size_max);
        job_fail_rest(s, Q_FAILED, "5.3.4", text);
    } else {
        sess_send_batch(s);
        return;
    }
    struct q_job *done = s->job;
    s->job = NULL;
    queue_job_done(s->q, done);
    sess_continue(s, true);
}

/* One recipient's result from the transaction's replies. */
static void rcpt_result(struct q_sess *s, const struct smtp_client_result *res, size_t i,
                        struct queue_result *r)
{
    bool mail_failed = res->err.stage != NULL && strcmp(res->err.stage, "MAIL FROM") == 0 &&
                       res->err.reply.code != 0;
    const struct smtp_client_reply *rr = &res->rcpt[i];
    const char *mta = s->host;
    if (mail_failed) {
        queue_result_from_reply(r, &res->err.reply, mta);
    } else if (rr->code == 0) {
        queue_result_local(r, Q_DEFERRED, "4.4.2", mta, "lost connection with %s (%s)", s->mta,
                           res->err.error[0] ? res->err.error : "no reply to RCPT TO");
    } else if (rr->code / 100 != 2) {
        queue_result_from_reply(r, rr, mta);
    } else if (res->data.code != 0) {
        queue_result_from_reply(r, &res->data, mta);
        r->remote_dsn = r->outcome == Q_DELIVERED && smtp_client_ext(s->cl)->dsn;
    } else if (res->err.reply.code != 0) {
        queue_result_from_reply(r, &res->err.reply, mta);
    } else {
        /* sent, perhaps, but never confirmed: try again (at least once) */
        queue_result_local(r, Q_DEFERRED, "4.4.2", mta,
                           "lost connection with %s while sending the message (%s)", s->mta,
                           res->err.error[0] ? res->err.error : "no reply");
    }
    if (r->outcome == Q_DELIVERED)
        str_copy(r->remote_mta, s->host, sizeof(r->remote_mta));
}

static void on_tx(void *arg, struct smtp_client *c, const struct smtp_client_result *res)
{
    struct q_sess *s = arg;
    struct q_job *job = s->job;
    struct q_msg *qm = job->msg;
    bool any_reply = res->err.reply.code != 0 || res->data.code != 0;
    for (size_t i = 0; i < res->n_rcpts; i++)
        any_reply |= res->rcpt[i].code != 0;
    if (!any_reply && !res->conn_ok) {
        /* nothing was answered: as if this address had failed to connect */
        sess_note_failure(s, &res->err);
        sess_next_addr(s);
        return;
    }
    for (size_t i = 0; i < res->n_rcpts; i++) {
        size_t k = job->idx[s->tx_off + i];
        rcpt_result(s, res, i, &qm->res[k]);
        log_rcpt(s, qm, k);
    }
    s->tx_off += res->n_rcpts;
    if (s->tx_off < job->n) {
        if (res->conn_ok) {
            sess_send_batch(s);
            return;
        }
        /* the rest were never tried: next address */
        sess_next_addr(s);
        return;
    }
    s->job = NULL;
    s->n_msgs++;
    queue_job_done(s->q, job);
    sess_continue(s, res->conn_ok);
}

static void sess_continue(struct q_sess *s, bool conn_ok)
{
    struct queue *q = s->q;
    if (conn_ok && !q->stopping && s->n_msgs < QUEUE_MSGS_PER_CONN && s->d->head != NULL) {
        s->job = dest_take(s->d);
        sess_run_job(s);
        return;
    }
    struct q_slot *slot = conn_ok ? malloc(sizeof(*slot)) : NULL;
    if (slot != NULL) {
        /* the connection counts against the limits until QUIT is done */
        *slot = (struct q_slot){ s->q, s->d };
        s->d->active++;
        s->q->active++;
        smtp_client_quit(s->cl, slot_release, slot);
    } else if (conn_ok) {
        smtp_client_quit(s->cl, NULL, NULL);
    } else {
        smtp_client_free(s->cl);
    }
    s->cl = NULL;
    sess_end(s);
}

/* ------------------------------------------------------------------ */
/* Destinations                                                         */
/* ------------------------------------------------------------------ */

void queue_dest_kick(struct queue *q, struct q_dest *d)
{
    if (q->stopping || d->head == NULL)
        return;
    int64_t now = (int64_t)time(NULL);
    if (d->rstate == QD_READY && d->active == 0 && now - d->resolved_at > QUEUE_RESOLVE_TTL)
        d->rstate = QD_NEW;
    if (d->rstate == QD_NEW) {
        resolve_start(q, d);
        return;
    }
    if (d->rstate != QD_READY)
        return;
    /* a new session only when the open ones have a backlog: a few jobs
     * each first, so connections get reused */
    while (d->head != NULL && d->active < QUEUE_DEST_CONCURRENCY &&
           q->active < QUEUE_TOTAL_CONCURRENCY && !q->stopping &&
           (d->active == 0 || d->n_pending > (size_t)d->active * QUEUE_SESSION_BACKLOG))
        sess_start(q, d);
}

void queue_dest_free(struct q_dest *d)
{
    resolve_free(d->res);
    free(d->addrs);
    free(d);
}

void queue_delivery_abort(struct queue *q)
{
    while (q->sessions != NULL) {
        struct q_sess *s = q->sessions;
        q->sessions = s->next;
        if (s->cl != NULL)
            smtp_client_free(s->cl);
        free(s->job ? s->job->idx : NULL);
        free(s->job);
        s->d->active--;
        q->active--;
        free(s);
    }
    for (struct q_dest *d = q->dests; d != NULL; d = d->next) {
        resolve_free(d->res);
        d->res = NULL;
        d->rstate = QD_NEW;
        while (d->head != NULL) {
            struct q_job *job = dest_take(d);
            free(job->idx);
            free(job);
        }
    }
}
