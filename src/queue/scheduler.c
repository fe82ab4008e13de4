/*
 * The outbound scheduler: one thread with its own event loop.
 *
 * The store is the truth.  Every QUEUE_SCAN_MS (and soon after a file
 * appears in data_dir/queue, seen with inotify, or queue_wakeup()) the
 * scheduler asks the store for entries due now and loads those not
 * already in flight.  A message's pending recipients are grouped by
 * destination domain into jobs; each destination runs its jobs on its
 * own sessions (delivery.c).  When every job of a message is done, the
 * round's results are turned into DSNs (failures; delays after
 * QUEUE_DELAY_WARNING when NOTIFY=DELAY was asked; successes for
 * NOTIFY=SUCCESS to servers without DSN), which are injected and made
 * durable first; then the results are recorded, one store transaction
 * for a batch of messages, committed on the pool so that deliveries go on
 * during the fsync (the messages finished meanwhile make the next batch):
 * delivered and bounced recipients are marked, the rest get the next
 * attempt (backoff, capped at the expiry and at the delay warning), and
 * an entry with nothing left is removed.
 *
 * Crash safety: nothing is recorded before the outcome is known and its
 * DSN is durable, so a crash anywhere repeats at most the attempt in
 * flight (the remote may get the message twice; it is never lost) and at
 * most one DSN.
 */
#include "queue/queue_int.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/pool.h"
#include "net/server.h"
#include "net/tls.h"

#define HEAD_MAX (64u * 1024)        /* header bytes examined for SMTPUTF8 */

static struct queue *g_queue;       /* under g_lock (queue_wakeup reads it) */
static pthread_t g_thread;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

const struct config *queue_cfg(struct queue *q)
{
    return atomic_load(&q->srv->cfg);
}

/* ---- messages in flight ---- */

static unsigned id_hash(const char *id)
{
    unsigned h = 2166136261u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h % (sizeof(g_queue->msgs) / sizeof(g_queue->msgs[0]));
}

static struct q_msg *msg_find(struct queue *q, const char *id)
{
    for (struct q_msg *m = q->msgs[id_hash(id)]; m != NULL; m = m->hnext)
        if (strcmp(m->m->e.id, id) == 0)
            return m;
    return NULL;
}

static void msg_free(struct q_msg *qm)
{
    if (qm->fd >= 0)
        close(qm->fd);
    store_queue_msg_free(qm->m);
    free(qm->res);
    free(qm->notify_set);
    free(qm);
}

static void msg_unlink(struct queue *q, struct q_msg *qm)
{
    struct q_msg **pp = &q->msgs[id_hash(qm->m->e.id)];
    while (*pp != NULL && *pp != qm)
        pp = &(*pp)->hnext;
    if (*pp == qm) {
        *pp = qm->hnext;
        q->n_msgs--;
    }
}

static bool rcpt_pending(const struct store_queue_rcpt *r)
{
    return strcmp(r->status, "pending") == 0;
}

/* ---- recording ---- */

static void record_cb(evutil_socket_t fd, short what, void *arg);

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void msg_record(struct queue *q, struct q_msg *qm)
{
    qm->rnext = NULL;
    *q->record_tail = qm;
    q->record_tail = &qm->rnext;
    if (!evtimer_pending(q->record_ev, NULL)) {
        struct timeval zero = { 0, 0 };
        evtimer_add(q->record_ev, &zero);
    }
}

static bool notify_failure(unsigned n)
{
    return !(n & STORE_NOTIFY_NEVER) && (n == 0 || (n & STORE_NOTIFY_FAILURE));
}

/* The next attempt: backoff after this many attempts, but no later than
 * the expiry, nor than the delay warning still owed. */
static int64_t next_attempt(struct queue *q, struct q_msg *qm, int64_t now)
{
    const struct config *cfg = queue_cfg(q);
    int64_t next = now + queue_backoff(&q->timing, qm->m->e.attempts + 1);
    int64_t expiry = qm->m->e.created + (int64_t)cfg->retry_max_age;
    if (expiry < next)
        next = expiry;
    for (size_t i = 0; i < qm->m->n_rcpts; i++) {
        const struct store_queue_rcpt *r = &qm->m->rcpts[i];
        bool owed = (r->notify & STORE_NOTIFY_DELAY) && !(r->notify & STORE_NOTIFY_DELAY_SENT) &&
                    !(qm->notify_set[i] & STORE_NOTIFY_DELAY_SENT);
        int64_t warn = qm->m->e.created + q->timing.delay_warning;
        if (owed && rcpt_pending(r) && qm->res[i].outcome == Q_DEFERRED && warn < next && warn > now)
            next = warn;
    }
    return next > now ? next : now + 1;
}

/* Fills u (and its rcpt array, ru, sized n_rcpts) for one message. */
static size_t msg_update(struct queue *q, struct q_msg *qm, struct store_queue_update *u,
                         struct store_queue_rcpt_update *ru, char (*notes)[512], int64_t now)
{
    size_t k = 0;
    for (size_t i = 0; i < qm->m->n_rcpts; i++) {
        const struct queue_result *r = &qm->res[i];
        if (!rcpt_pending(&qm->m->rcpts[i]) || r->outcome == Q_NONE)
            continue;
        ru[k].address = qm->m->rcpts[i].address;
        ru[k].notify_set = qm->dsn_failed ? 0 : qm->notify_set[i];
        ru[k].last_error = NULL;
        if (r->outcome == Q_DELIVERED) {
            ru[k].status = "delivered";
        } else if (r->outcome == Q_FAILED && !qm->dsn_failed) {
            ru[k].status = "bounced";
            queue_result_encode(r, notes[k], sizeof(notes[k]));
            ru[k].last_error = notes[k];
        } else {
            ru[k].status = "pending";
            queue_result_encode(r, notes[k], sizeof(notes[k]));
            ru[k].last_error = notes[k];
        }
        k++;
    }
    *u = (struct store_queue_update){ .id = qm->m->e.id, .rcpts = ru, .n_rcpts = k,
                                      .attempted = k > 0 };
    if (k > 0)
        u->next_attempt = next_attempt(q, qm, now);
    return k;
}

/* A batch of finished messages whose outcomes are committed together. */
struct q_record {
    struct queue *q;
    struct q_msg *msgs;               /* the batch (rnext list) */
    size_t n, k;                      /* messages; updates (those with results) */
    struct store_queue_update *u;
    struct store_queue_rcpt_update **ru;
    char (**notes)[512];
    bool oom;
    int rc;
    const char *err;
    int64_t ms;
};

/* Takes every message waiting to be recorded into a batch (on the
 * queue's loop: it reads the messages and the timings). */
static struct q_record *record_build(struct queue *q)
{
    struct q_record *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->q = q;
    r->msgs = q->record_head;
    q->record_head = NULL;
    q->record_tail = &q->record_head;
    for (struct q_msg *m = r->msgs; m != NULL; m = m->rnext) {
        r->n++;
        /* Its reports are built: close the file now, while it is still
         * linked.  Closed after the commit unlinked it, the close would
         * free the inode on this loop, and ext4 with "discard" waits for
         * the device there. */
        if (m->fd >= 0) {
            close(m->fd);
            m->fd = -1;
        }
    }
    r->u = calloc(r->n ? r->n : 1, sizeof(*r->u));
    r->ru = calloc(r->n ? r->n : 1, sizeof(*r->ru));
    r->notes = calloc(r->n ? r->n : 1, sizeof(*r->notes));
    int64_t now = (int64_t)time(NULL);
    r->oom = r->u == NULL || r->ru == NULL || r->notes == NULL;
    for (struct q_msg *m = r->msgs; m != NULL && !r->oom; m = m->rnext) {
        size_t nr = m->m->n_rcpts ? m->m->n_rcpts : 1;
        r->ru[r->k] = calloc(nr, sizeof(**r->ru));
        r->notes[r->k] = calloc(nr, sizeof(*r->notes[r->k]));
        r->oom = r->ru[r->k] == NULL || r->notes[r->k] == NULL;
        if (!r->oom && msg_update(q, m, &r->u[r->k], r->ru[r->k], r->notes[r->k], now) > 0)
            r->k++;
    }
    return r;
}

/* The commit: one store transaction for the batch (then the removed
 * entries' files are unlinked).  Runs on a pool thread, or on the loop
 * when stopping; touches nothing but the batch and the store. */
static void record_store(void *arg)
{
    struct q_record *r = arg;
    int64_t t0 = mono_ms();
    r->rc = 0;
    if (!r->oom && r->k > 0)
        r->rc = store_queue_update(r->q->st, r->u, r->k, &r->err);
    r->ms = mono_ms() - t0;
}

/* Back on the loop: logs, frees the batch and its messages. */
static void record_finish(struct queue *q, struct q_record *r)
{
    if (r->oom)
        log_error(NULL, "event=queue_record_failed error=\"out of memory\"");
    else if (r->rc < 0)
        log_error(NULL, "event=queue_record_failed error=\"%s\" entries=%zu",
                  r->err ? r->err : "?", r->k);
    if (r->ms >= 200)
        log_info(NULL, "event=queue_record_slow entries=%zu ms=%lld", r->k, (long long)r->ms);
    else
        log_debug(NULL, "event=queue_recorded entries=%zu ms=%lld", r->k, (long long)r->ms);
    for (size_t i = 0; i < r->k && !r->oom && r->rc == 0; i++)
        if (r->u[i].removed)
            log_info(NULL, "event=queue_removed id=%s", r->u[i].id);
    for (size_t i = 0; i < r->n; i++) {
        if (r->ru != NULL)
            free(r->ru[i]);
        if (r->notes != NULL)
            free(r->notes[i]);
    }
    free(r->u);
    free(r->ru);
    free(r->notes);
    struct q_msg *m = r->msgs;
    while (m != NULL) {
        struct q_msg *next = m->rnext;
        msg_unlink(q, m);
        msg_free(m);
        m = next;
    }
    free(r);
}

static void record_done(void *arg)
{
    struct q_record *r = arg;
    struct queue *q = r->q;
    record_finish(q, r);
    q->record_busy = false;
    /* what finished meanwhile is the next batch (group commit) */
    if (q->record_head != NULL && !evtimer_pending(q->record_ev, NULL)) {
        struct timeval zero = { 0, 0 };
        evtimer_add(q->record_ev, &zero);
    }
}

/* Records the finished messages.  The commit (an fsync) runs on the
 * pool, so deliveries go on meanwhile; one batch at a time, the messages
 * finished during a commit make the next one.  Until its batch is
 * committed a message stays in flight, so no scan loads it again. */
static void record_cb(evutil_socket_t fd, short what, void *arg)
{
    struct queue *q = arg;
    if (q->record_busy || q->record_head == NULL)
        return;
    struct q_record *r = record_build(q);
    if (r == NULL) {
        log_error(NULL, "event=queue_record_failed error=\"out of memory\"");
        return;
    }
    q->record_busy = true;
    pool_submit(q->base, record_store, record_done, r);
}

/* The same on the loop thread, for the stop paths (no batch in flight). */
static void record_now(struct queue *q)
{
    if (q->record_busy || q->record_head == NULL)
        return;
    struct q_record *r = record_build(q);
    if (r == NULL)
        return;
    record_store(r);
    record_finish(q, r);
}

/* ---- DSNs ---- */

struct dsn_hop {
    struct queue *q;
    struct q_msg *qm;
    int result;
};

static void dsn_done_loop(void *arg)
{
    struct dsn_hop *h = arg;
    struct queue *q = h->q;
    q->injects_pending--;
    if (h->result < 0)
        h->qm->dsn_failed = true;
    if (--h->qm->dsn_pending == 0)
        msg_record(q, h->qm);
    free(h);
}

/* On the store's commit thread: hop back to the queue's loop. */
static void dsn_done(void *arg, int result, const char *id, const char *error)
{
    struct dsn_hop *h = arg;
    h->result = result;
    if (result == 0)
        log_info(NULL, "event=dsn_queued orig=%s id=%s", h->qm->m->e.id, id ? id : "");
    loop_call(h->q->base, dsn_done_loop, h);
}

/* The original for a report: the whole message or its header. */
static char *dsn_original(struct q_msg *qm, bool full, size_t *len_r, bool *full_r)
{
    uint64_t size = qm->m->e.size;
    size_t cap = full ? (size_t)size : HEAD_MAX;
    if (cap > size)
        cap = (size_t)size;
    *len_r = 0;
    *full_r = false;
    char *buf = qm->fd >= 0 ? malloc(cap + 1) : NULL;
    if (buf == NULL)
        return NULL;
    ssize_t n = pread(qm->fd, buf, cap, 0);
    if (n <= 0) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (full && (uint64_t)n == size) {
        *full_r = true;
        *len_r = (size_t)n;
        return buf;
    }
    char *end = strstr(buf, "\r\n\r\n");
    *len_r = end ? (size_t)(end - buf) + 2 : (size_t)n;
    return buf;
}

static void dsn_send(struct queue *q, struct q_msg *qm, enum dsn_kind kind,
                     const struct dsn_rcpt *rcpts, size_t n, int64_t now)
{
    const struct config *cfg = queue_cfg(q);
    const struct store_queue_msg *m = qm->m;
    bool want_full = kind == DSN_FAILURE &&
                     (strcmp(m->ret, "FULL") == 0 ? m->e.size <= QUEUE_DSN_FULL_MAX
                      : strcmp(m->ret, "HDRS") == 0 ? false
                                                    : m->e.size <= QUEUE_DSN_FULL_DEFAULT);
    size_t olen;
    bool full;
    char *orig = dsn_original(qm, want_full, &olen, &full);
    struct dsn_info in = {
        .kind = kind, .reporting_mta = cfg->hostname, .sender = m->e.sender,
        .envid = m->envid, .queue_id = m->e.id, .arrival = m->e.created, .now = now,
        .retry_until = m->e.created + (int64_t)cfg->retry_max_age, .utf8 = m->smtputf8,
        .rcpts = rcpts, .n_rcpts = n, .orig = orig, .orig_len = olen, .orig_full = full,
    };
    struct strbuf sb;
    strbuf_init(&sb, QUEUE_DSN_FULL_MAX + 256u * 1024);
    int rc = dsn_build(&in, &sb);
    free(orig);
    struct dsn_hop *h = rc == 0 ? calloc(1, sizeof(*h)) : NULL;
    const char *to[1] = { m->e.sender };
    if (h != NULL) {
        *h = (struct dsn_hop){ .q = q, .qm = qm };
        rc = queue_inject_async(q->st, "", to, 1, sb.data, sb.len, m->smtputf8, dsn_done, h);
        if (rc == 0) {
            qm->dsn_pending++;
            q->injects_pending++;
        } else {
            free(h);
        }
    } else {
        rc = -1;
    }
    if (rc == -1)
        qm->dsn_failed = true;
    if (rc < 0)
        log_warn(NULL, "event=dsn_failed id=%s kind=%d sender=<%s> result=%d", m->e.id, (int)kind,
                 m->e.sender, rc);
    strbuf_free(&sb);
}

/* After every job of a message: expiry, DSNs, then recording. */
static void msg_finish(struct queue *q, struct q_msg *qm)
{
    const struct config *cfg = queue_cfg(q);
    const struct store_queue_msg *m = qm->m;
    int64_t now = (int64_t)time(NULL);
    bool expired = now >= m->e.created + (int64_t)cfg->retry_max_age;
    size_t n = m->n_rcpts;
    struct dsn_rcpt *lists[3];
    size_t counts[3] = { 0, 0, 0 };
    for (int k = 0; k < 3; k++)
        lists[k] = calloc(n ? n : 1, sizeof(*lists[k]));
    for (size_t i = 0; i < n; i++) {
        const struct store_queue_rcpt *rc = &m->rcpts[i];
        struct queue_result *r = &qm->res[i];
        if (!rcpt_pending(rc) || r->outcome == Q_NONE)
            continue;
        if (r->outcome == Q_DEFERRED && expired) {
            /* RFC 5321 4.5.4.1: give up; the last failure explains why */
            r->outcome = Q_FAILED;
            if (r->status[0] == '\0')
                str_copy(r->status, "4.4.7", sizeof(r->status));
            size_t dl = strlen(r->diag);
            snprintf(r->diag + dl, sizeof(r->diag) - dl, "%s(delivery time expired)",
                     dl ? " " : "X-Postel; ");
            log_info(NULL, "event=delivery id=%s rcpt=<%s> result=expired status=%s", m->e.id,
                     rc->address, r->status);
        }
        struct dsn_rcpt d = { .address = rc->address, .orcpt = rc->orcpt, .res = r };
        if (r->outcome == Q_FAILED && notify_failure(rc->notify)) {
            d.action = "failed";
            if (lists[0])
                lists[0][counts[0]++] = d;
        } else if (r->outcome == Q_DEFERRED && (rc->notify & STORE_NOTIFY_DELAY) &&
                   !(rc->notify & STORE_NOTIFY_DELAY_SENT) &&
                   now - m->e.created >= (int64_t)q->timing.delay_warning) {
            d.action = "delayed";
            qm->notify_set[i] |= STORE_NOTIFY_DELAY_SENT;
            if (lists[1])
                lists[1][counts[1]++] = d;
        } else if (r->outcome == Q_DELIVERED && (rc->notify & STORE_NOTIFY_SUCCESS) &&
                   !r->remote_dsn) {
            d.action = "relayed"; /* RFC 3461 6.2.2: a server without DSN took it */
            if (lists[2])
                lists[2][counts[2]++] = d;
        }
    }
    static const enum dsn_kind kinds[3] = { DSN_FAILURE, DSN_DELAY, DSN_SUCCESS };
    for (int k = 0; k < 3; k++) {
        if (counts[k] == 0)
            continue;
        if (m->e.sender[0] == '\0')
            log_info(NULL, "event=dsn_skipped id=%s reason=null_sender kind=%d", m->e.id, k);
        else if (lists[k] != NULL)
            dsn_send(q, qm, kinds[k], lists[k], counts[k], now);
    }
    for (int k = 0; k < 3; k++)
        free(lists[k]);
    if (qm->dsn_pending == 0)
        msg_record(q, qm);
}

void queue_job_done(struct queue *q, struct q_job *job)
{
    struct q_msg *qm = job->msg;
    free(job->idx);
    free(job);
    if (--qm->jobs_left == 0)
        msg_finish(q, qm);
}

void queue_job_fail(struct queue *q, struct q_job *job, const struct queue_result *r)
{
    for (size_t i = 0; i < job->n; i++) {
        struct queue_result *dst = &job->msg->res[job->idx[i]];
        *dst = *r;
        log_info(NULL, "event=delivery id=%s rcpt=<%s> result=%s status=%s diag=\"%.300s\"",
                 job->msg->m->e.id, job->msg->m->rcpts[job->idx[i]].address,
                 r->outcome == Q_FAILED ? "bounced" : "deferred", r->status, r->diag);
    }
    queue_job_done(q, job);
}

/* ---- loading ---- */

static struct q_dest *dest_get(struct queue *q, const char *key, bool relay)
{
    for (struct q_dest *d = q->dests; d != NULL; d = d->next)
        if (strcmp(d->key, key) == 0)
            return d;
    struct q_dest *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    str_copy(d->key, key, sizeof(d->key));
    d->relay = relay;
    d->tail = &d->head;
    d->next = q->dests;
    q->dests = d;
    return d;
}

static void dest_enqueue(struct q_dest *d, struct q_job *job)
{
    job->next = NULL;
    *d->tail = job;
    d->tail = &job->next;
    d->n_pending++;
}

/* Reads the header (up to HEAD_MAX) to see whether SMTPUTF8 is needed. */
static void msg_check_utf8(struct q_msg *qm)
{
    if (!qm->m->smtputf8 || qm->fd < 0)
        return;
    char *buf = malloc(HEAD_MAX + 1);
    if (buf == NULL)
        return;
    ssize_t n = pread(qm->fd, buf, HEAD_MAX, 0);
    size_t len = n > 0 ? (size_t)n : 0;
    buf[len] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (end != NULL)
        len = (size_t)(end - buf);
    qm->utf8 = queue_needs_smtputf8(qm->m, buf, len, &qm->utf8_envelope);
    free(buf);
}

/* Groups the pending recipients into jobs by destination.  Returns the
 * number of jobs made (jobs[] filled), or -1 when out of memory. */
static int msg_jobs(struct queue *q, struct q_msg *qm, struct q_job **jobs, size_t max)
{
    const struct config *cfg = queue_cfg(q);
    bool relay = cfg->relay_host[0] != '\0';
    int nj = 0;
    for (size_t i = 0; i < qm->m->n_rcpts; i++) {
        if (!rcpt_pending(&qm->m->rcpts[i]))
            continue;
        char key[SMTP_DOMAIN_MAX + 3];
        if (relay) {
            str_copy(key, "[relay]", sizeof(key));
        } else if (queue_rcpt_domain(qm->m->rcpts[i].address, key, sizeof(key)) < 0) {
            queue_result_local(&qm->res[i], Q_FAILED, "5.1.3", NULL, "bad recipient address %s",
                               qm->m->rcpts[i].address);
            continue;
        }
        struct q_dest *d = dest_get(q, key, relay);
        if (d == NULL)
            return -1;
        struct q_job *job = NULL;
        for (int k = 0; k < nj; k++)
            if (jobs[k]->dest == d)
                job = jobs[k];
        if (job == NULL) {
            if ((size_t)nj == max || (job = calloc(1, sizeof(*job))) == NULL ||
                (job->idx = calloc(qm->m->n_rcpts, sizeof(*job->idx))) == NULL) {
                free(job);
                return -1;
            }
            job->msg = qm;
            job->dest = d;
            jobs[nj++] = job;
        }
        job->idx[job->n++] = i;
    }
    return nj;
}

static void msg_begin(struct queue *q, struct store_queue_msg *m)
{
    struct q_msg *qm = calloc(1, sizeof(*qm));
    struct q_job **jobs = calloc(m->n_rcpts ? m->n_rcpts : 1, sizeof(*jobs));
    if (qm == NULL || jobs == NULL ||
        (qm->res = calloc(m->n_rcpts ? m->n_rcpts : 1, sizeof(*qm->res))) == NULL ||
        (qm->notify_set = calloc(m->n_rcpts ? m->n_rcpts : 1, sizeof(unsigned))) == NULL) {
        if (qm != NULL)
            free(qm->res);
        free(qm);
        free(jobs);
        store_queue_msg_free(m);
        return;
    }
    qm->m = m;
    qm->fd = store_queue_open(q->st, m->e.id);
    if (qm->fd < 0)
        log_error(NULL, "event=queue_file_unreadable id=%s error=\"%s\"", m->e.id,
                  store_error_text());
    unsigned h = id_hash(m->e.id);
    qm->hnext = q->msgs[h];
    q->msgs[h] = qm;
    q->n_msgs++;
    msg_check_utf8(qm);
    const struct config *cfg = queue_cfg(q);
    int64_t now = (int64_t)time(NULL);
    int nj = 0;
    if (now >= m->e.created + (int64_t)cfg->retry_max_age) {
        /* expired while waiting: no new attempt, the last failure stands */
        for (size_t i = 0; i < m->n_rcpts; i++)
            if (rcpt_pending(&m->rcpts[i])) {
                queue_result_decode(&qm->res[i], m->rcpts[i].last_error);
                qm->res[i].outcome = Q_DEFERRED;
            }
    } else {
        nj = msg_jobs(q, qm, jobs, m->n_rcpts);
        if (nj < 0) {
            log_error(NULL, "event=queue_load_failed id=%s error=\"out of memory\"", m->e.id);
            nj = 0;
        }
    }
    log_debug(NULL, "event=queue_attempt id=%s attempts=%d jobs=%d", m->e.id, m->e.attempts, nj);
    qm->jobs_left = nj + 1; /* +1: nothing finishes the message while jobs are handed out */
    for (int k = 0; k < nj; k++)
        dest_enqueue(jobs[k]->dest, jobs[k]);
    for (int k = 0; k < nj; k++)
        queue_dest_kick(q, jobs[k]->dest);
    free(jobs);
    if (--qm->jobs_left == 0)
        msg_finish(q, qm);
}

static void scan_one(const char *id, void *arg)
{
    struct queue *q = arg;
    if (q->stopping || q->n_msgs >= QUEUE_LOADED_MAX ||
        q->loaded_this_scan >= QUEUE_LOAD_SLICE || msg_find(q, id) != NULL)
        return;
    q->loaded_this_scan++;
    struct store_queue_msg *m;
    int rc = store_queue_load(q->st, id, &m);
    if (rc < 0)
        log_error(NULL, "event=queue_load_failed id=%s error=\"%s\"", id, store_error_text());
    if (rc <= 0)
        return;
    msg_begin(q, m);
}

/* Frees destinations with nothing to do whose addresses went stale. */
static void dests_sweep(struct queue *q, int64_t now)
{
    struct q_dest **pp = &q->dests;
    while (*pp != NULL) {
        struct q_dest *d = *pp;
        if (d->head == NULL && d->active == 0 && d->rstate != QD_RESOLVING &&
            now - d->resolved_at > QUEUE_RESOLVE_TTL) {
            *pp = d->next;
            queue_dest_free(d);
        } else {
            pp = &d->next;
        }
    }
}

static void scan(struct queue *q)
{
    if (q->stopping)
        return;
    int64_t now = (int64_t)time(NULL), t0 = mono_ms();
    q->loaded_this_scan = 0;
    if (store_queue_due(q->st, now, QUEUE_LOADED_MAX, scan_one, q) < 0)
        log_error(NULL, "event=queue_scan_failed error=\"%s\"", store_error_text());
    int64_t ms = mono_ms() - t0;
    if (ms >= 200)
        log_info(NULL, "event=queue_scan_slow loaded=%d ms=%lld", q->loaded_this_scan,
                 (long long)ms);
    /* A full slice: load more on the next loop turn, after the sessions
     * had their share of it (the first deliveries start meanwhile). */
    if (q->loaded_this_scan >= QUEUE_LOAD_SLICE && !q->stopping &&
        !evtimer_pending(q->slice_ev, NULL)) {
        struct timeval zero = { 0, 0 };
        evtimer_add(q->slice_ev, &zero);
    }
    dests_sweep(q, now);
}

static void scan_cb(evutil_socket_t fd, short what, void *arg)
{
    scan(arg);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    scan(arg);
}

/* A new queue file: its index row follows within milliseconds (the
 * store syncs the file, then commits), so look after 20 ms, then every
 * 100 ms until 400 ms after the last file.  A burst of submissions thus
 * costs ten scans a second, not three per message. */
static void poke_cb(evutil_socket_t fd, short what, void *arg)
{
    struct queue *q = arg;
    scan(q);
    if (!q->stopping && mono_ms() < q->poke_until) {
        struct timeval tv = { 0, 100 * 1000 };
        evtimer_add(q->poke_ev, &tv);
    }
}

static void inotify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct queue *q = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool any = false;
    while (read(fd, buf, sizeof(buf)) > 0)
        any = true;
    if (!any || q->stopping)
        return;
    q->poke_until = mono_ms() + 400;
    if (!evtimer_pending(q->poke_ev, NULL)) {
        struct timeval tv = { 0, 20 * 1000 };
        evtimer_add(q->poke_ev, &tv);
    }
}

static void inotify_setup(struct queue *q, const char *data_dir)
{
    q->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (q->inotify_fd < 0)
        return;
    char path[1200];
    snprintf(path, sizeof(path), "%s/queue", data_dir);
    if (inotify_add_watch(q->inotify_fd, path, IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
        log_warn(NULL, "event=queue_inotify_unavailable path=%s error=\"%s\"", path,
                 strerror(errno));
        close(q->inotify_fd);
        q->inotify_fd = -1;
        return;
    }
    q->poke_ev = evtimer_new(q->base, poke_cb, q);
    q->inotify_ev = event_new(q->base, q->inotify_fd, EV_READ | EV_PERSIST, inotify_cb, q);
    if (q->inotify_ev != NULL && q->poke_ev != NULL)
        event_add(q->inotify_ev, NULL);
}

/* ---- start and stop ---- */

static void hard_stop(struct queue *q)
{
    queue_delivery_abort(q);
    /* messages whose jobs were cut stay due in the store */
    for (size_t h = 0; h < sizeof(q->msgs) / sizeof(q->msgs[0]); h++) {
        while (q->msgs[h] != NULL) {
            struct q_msg *m = q->msgs[h];
            q->msgs[h] = m->hnext;
            if (m->dsn_pending == 0)
                msg_free(m);
            /* else: a DSN commit still points at it; freed never (exit) */
        }
    }
    q->n_msgs = 0;
    q->record_head = NULL;
    q->record_tail = &q->record_head;
    event_base_loopexit(q->base, NULL);
}

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
    struct queue *q = arg;
    if (q->sessions != NULL)
        log_info(NULL, "event=queue_stop_cut sessions=%d", q->active);
    if (q->injects_pending > 0 || q->record_busy) {
        /* a DSN or a batch of results is being committed: wait for it */
        struct timeval tv = { 0, 50 * 1000 };
        evtimer_add(q->grace_ev, &tv);
        queue_delivery_abort(q);
        return;
    }
    record_now(q);
    hard_stop(q);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct queue *q = arg;
    if (q->stopping)
        return;
    q->stopping = true;
    evtimer_del(q->scan_ev);
    if (q->inotify_ev != NULL)
        event_del(q->inotify_ev);
    if (q->poke_ev != NULL)
        evtimer_del(q->poke_ev);
    evtimer_del(q->slice_ev);
    if (q->sessions == NULL && q->injects_pending == 0 && !q->record_busy) {
        record_now(q);
        hard_stop(q);
        return;
    }
    struct timeval tv = { QUEUE_STOP_GRACE_MS / 1000, (QUEUE_STOP_GRACE_MS % 1000) * 1000 };
    evtimer_add(q->grace_ev, &tv);
}

static void *queue_main(void *arg)
{
    struct queue *q = arg;
    scan(q);
    event_base_loop(q->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static void queue_free(struct queue *q)
{
    if (q->dns != NULL)
        dns_async_free(q->dns);
    while (q->dests != NULL) {
        struct q_dest *d = q->dests;
        q->dests = d->next;
        d->res = NULL; /* the resolver's queries died with dns_async_free */
        queue_dest_free(d);
    }
    struct event *evs[] = { q->scan_ev, q->wake_ev, q->record_ev, q->stop_ev, q->grace_ev,
                            q->inotify_ev, q->poke_ev, q->slice_ev };
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i] != NULL)
            event_free(evs[i]);
    if (q->inotify_fd >= 0)
        close(q->inotify_fd);
    if (q->tls != NULL)
        SSL_CTX_free(q->tls);
    if (q->base != NULL)
        event_base_free(q->base);
    free(q);
}

int queue_start(struct server *srv)
{
    pthread_mutex_lock(&g_lock);
    bool running = g_queue != NULL;
    pthread_mutex_unlock(&g_lock);
    if (running)
        return 0;
    struct queue *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return -1;
    const struct config *cfg = atomic_load(&srv->cfg);
    const char *err = NULL;
    q->srv = srv;
    q->st = srv->store;
    q->inotify_fd = -1;
    q->record_tail = &q->record_head;
    str_copy(q->helo, cfg->hostname, sizeof(q->helo));
    queue_timing_init(&q->timing);
    q->base = event_base_new();
    struct dns_options opt;
    dns_options_from_config(&opt, cfg);
    if (q->base != NULL)
        q->dns = dns_async_new(q->base, &opt, &err);
    if (q->dns != NULL)
        q->tls = tls_client_ctx_new(&err);
    if (q->tls == NULL) {
        log_error(NULL, "event=queue_start_failed error=\"%s\"", err ? err : "event loop");
        queue_free(q);
        return -1;
    }
    q->scan_ev = event_new(q->base, -1, EV_PERSIST, scan_cb, q);
    q->wake_ev = event_new(q->base, -1, 0, wake_cb, q);
    q->record_ev = evtimer_new(q->base, record_cb, q);
    q->stop_ev = event_new(q->base, -1, 0, stop_cb, q);
    q->grace_ev = evtimer_new(q->base, grace_cb, q);
    q->slice_ev = evtimer_new(q->base, wake_cb, q);
    if (!q->scan_ev || !q->wake_ev || !q->record_ev || !q->stop_ev || !q->grace_ev ||
        !q->slice_ev) {
        queue_free(q);
        return -1;
    }
    struct timeval tv = { QUEUE_SCAN_MS / 1000, (QUEUE_SCAN_MS % 1000) * 1000 };
    event_add(q->scan_ev, &tv);
    inotify_setup(q, cfg->data_dir);
    if (pthread_create(&g_thread, NULL, queue_main, q) != 0) {
        queue_free(q);
        return -1;
    }
    pthread_mutex_lock(&g_lock);
    g_queue = q;
    pthread_mutex_unlock(&g_lock);
    log_info(NULL, "event=queue_started relay=%s port=%d retry_max_age=%llu",
             cfg->relay_host[0] ? cfg->relay_host : "none",
             cfg->relay_host[0] ? cfg->relay_port : cfg->delivery_port,
             (unsigned long long)cfg->retry_max_age);
    return 0;
}

void queue_wakeup(void)
{
    pthread_mutex_lock(&g_lock);
    if (g_queue != NULL)
        event_active(g_queue->wake_ev, EV_TIMEOUT, 0);
    pthread_mutex_unlock(&g_lock);
}

void queue_stop(void)
{
    pthread_mutex_lock(&g_lock);
    struct queue *q = g_queue;
    g_queue = NULL;
    if (q != NULL)
        event_active(q->stop_ev, EV_TIMEOUT, 0);
    pthread_mutex_unlock(&g_lock);
    if (q == NULL)
        return;
    pthread_join(g_thread, NULL);
    queue_free(q);
    log_info(NULL, "event=queue_stopped");
}
