/*
 * Inside the outbound queue: shared by src/queue only (and its unit
 * tests).
 *
 *   scheduler.c  the thread and its loop: scanning the store for due
 *                entries, messages in flight, destinations and their
 *                concurrency, recording outcomes, DSNs to send
 *   delivery.c   per destination: MX resolution on dns_async, sessions
 *                (smtp_client) trying each address in order, transactions
 *                and what each reply means for each recipient
 *   policy.c     pure rules: backoff, reply classification, ESMTP
 *                parameters, SMTPUTF8 needs
 *   dsn.c        RFC 3464 reports (pure), and local injection (store_tx)
 */
#ifndef POSTEL_QUEUE_INT_H
#define POSTEL_QUEUE_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"
#include "core/util.h"
#include "dns/dns.h"
#include "queue/queue.h"
#include "smtp/smtp_client.h"
#include "store/store.h"

/* ---- limits and timings (docs/outbound.md) ---- */
#define QUEUE_SCAN_MS            1000     /* re-read due entries this often */
#define QUEUE_BACKOFF_MIN        300      /* first retry after 5 min ... */
#define QUEUE_BACKOFF_MAX        14400    /* ... doubling, capped at 4 h */
#define QUEUE_DELAY_WARNING      14400    /* delay DSN after 4 h (NOTIFY=DELAY) */
#define QUEUE_DEST_CONCURRENCY   20       /* connections per destination */
#define QUEUE_TOTAL_CONCURRENCY  100      /* connections in all */
#define QUEUE_LOADED_MAX         5000     /* messages in flight */
#define QUEUE_LOAD_SLICE         1000     /* messages loaded per loop turn */
#define QUEUE_MSGS_PER_CONN      100      /* transactions on one connection */
#define QUEUE_SESSION_BACKLOG    2        /* jobs waiting per session before another opens */
#define QUEUE_RCPTS_PER_TX       50       /* recipients per transaction */
#define QUEUE_MX_MAX             10       /* MX hosts tried per destination */
#define QUEUE_ADDRS_PER_HOST     8        /* addresses kept per host and family */
#define QUEUE_RESOLVE_TTL        300      /* seconds a destination's addresses are reused */
#define QUEUE_STOP_GRACE_MS      2000
#define QUEUE_DSN_FULL_DEFAULT   (256u * 1024)    /* RET absent: whole message up to this */
#define QUEUE_DSN_FULL_MAX       (10u << 20)      /* RET=FULL: whole message up to this */
#define QUEUE_DIAG_MAX           600

/* Timings the tests shorten through the environment (docs/outbound.md). */
struct queue_timing {
    unsigned backoff_min, backoff_max, delay_warning;
    unsigned command_timeout, connect_timeout;
};
/* Defaults above, overridden by POSTEL_QUEUE_BACKOFF (seconds; max
 * becomes 48 times it), POSTEL_QUEUE_DELAY_WARNING (seconds) and
 * POSTEL_QUEUE_TIMEOUT (SMTP command/connect timeout, seconds). */
void queue_timing_init(struct queue_timing *t);

/* ---- policy.c ---- */

/* Seconds until the next attempt after attempts failed ones (1, 2, ...):
 * backoff_min doubling, capped at backoff_max. */
int64_t queue_backoff(const struct queue_timing *t, int attempts);

enum queue_outcome { Q_NONE = 0, Q_DELIVERED, Q_FAILED, Q_DEFERRED };

/* One recipient's result of this round. */
struct queue_result {
    enum queue_outcome outcome;
    bool remote_dsn;                  /* handed to a server that took NOTIFY/ORCPT */
    char status[16];                  /* RFC 3463 "5.1.1" */
    char remote_mta[HOSTNAME_MAX];    /* "" when no server was reached */
    char diag[QUEUE_DIAG_MAX];        /* "smtp; 550 5.1.1 ..." or "X-Postel; ..." */
};

/* Fills r from a server reply: 2xx delivered, 4xx deferred, 5xx failed;
 * status from the enhanced code or "C.0.0"; diag "smtp; CODE TEXT";
 * stage ("RCPT TO") is not part of the diagnostic. */
void queue_result_from_reply(struct queue_result *r, const struct smtp_client_reply *reply,
                             const char *mta);
/* Fills r with a local decision: outcome, status, text (diag "X-Postel; text"). */
void queue_result_local(struct queue_result *r, enum queue_outcome o, const char *status,
                        const char *mta, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The queue's note in queue_rcpt.last_error: "status\tmta\tdiag", and back. */
void queue_result_encode(const struct queue_result *r, char *buf, size_t size);
void queue_result_decode(struct queue_result *r, const char *note);

/* ESMTP parameters for one transaction (leading space each). */
void queue_mail_params(const struct store_queue_msg *m, const struct smtp_ext *ext, bool utf8,
                       char *buf, size_t size);
void queue_rcpt_params(const struct store_queue_rcpt *r, const struct smtp_ext *ext, char *buf,
                       size_t size);

/* True if s has a byte >= 0x80. */
bool queue_has_8bit(const char *s, size_t len);
/* SMTPUTF8 needed (RFC 6531 3.2): the message was received with SMTPUTF8
 * and its envelope or header carries UTF-8.  *envelope_r says the
 * envelope does (then the bounce status is 5.6.7, else 5.6.9). */
bool queue_needs_smtputf8(const struct store_queue_msg *m, const char *head, size_t head_len,
                          bool *envelope_r);

/* The destination of a recipient: the lower-cased domain ("[1.2.3.4]"
 * kept for literals).  0, or -1 for an address without a domain. */
int queue_rcpt_domain(const char *address, char *buf, size_t size);

/* ---- dsn.c ---- */

enum dsn_kind { DSN_FAILURE, DSN_DELAY, DSN_SUCCESS };

struct dsn_rcpt {
    const char *address;              /* Final-Recipient */
    const char *orcpt;                /* "rfc822;addr" or NULL/"" */
    const char *action;               /* "failed", "delayed", "delivered", "relayed" */
    const struct queue_result *res;
};

struct dsn_info {
    enum dsn_kind kind;
    const char *reporting_mta;        /* our host name */
    const char *sender;               /* the report's recipient */
    const char *envid;                /* or NULL/"" */
    const char *queue_id;
    int64_t arrival, now, retry_until;   /* retry_until: for delay reports */
    bool utf8;                        /* RFC 6533 message/global* types */
    const struct dsn_rcpt *rcpts;
    size_t n_rcpts;
    const char *orig;                 /* the original message or its header */
    size_t orig_len;
    bool orig_full;                   /* orig is the whole message */
};

/* Writes an RFC 3464 multipart/report into out.  0 or -1 (cap). */
int dsn_build(const struct dsn_info *in, struct strbuf *out);

/* ---- the running queue (scheduler.c, delivery.c) ---- */

struct server;
struct config;
struct event;
struct event_base;
struct ssl_ctx_st;
struct q_dest;
struct q_sess;
struct q_resolve;

/* A message in flight: loaded from the store, its jobs out, results
 * gathered until every job is done. */
struct q_msg {
    struct store_queue_msg *m;
    struct queue_result *res;         /* one per m->rcpts */
    int fd;                           /* the queue file, -1 if it cannot be opened */
    int jobs_left;
    bool utf8, utf8_envelope;         /* SMTPUTF8 needed; because of the envelope */
    int dsn_pending;                  /* reports not committed yet */
    bool dsn_failed;                  /* a report could not be stored */
    unsigned *notify_set;             /* per rcpt: bits to record (delay DSN sent) */
    struct q_msg *hnext;              /* in-flight hash chain */
    struct q_msg *rnext;              /* waiting to be recorded */
};

/* Some of a message's recipients, for one destination. */
struct q_job {
    struct q_msg *msg;
    struct q_dest *dest;
    size_t *idx;                      /* indices into msg->m->rcpts */
    size_t n;
    struct q_job *next;               /* the destination's pending list */
};

struct q_addr {
    struct dns_addr a;
    char host[DNS_NAME_MAX + 2];
};

enum q_rstate { QD_NEW, QD_RESOLVING, QD_READY };

/* A destination: a domain (or the relay host) with its addresses in the
 * order they are tried, its pending jobs and its sessions. */
struct q_dest {
    char key[SMTP_DOMAIN_MAX + 3];
    bool relay;
    enum q_rstate rstate;
    int64_t resolved_at;
    struct q_addr *addrs;
    size_t n_addrs;
    struct q_resolve *res;            /* while QD_RESOLVING */
    struct q_job *head, **tail;
    size_t n_pending;
    int active;                       /* sessions */
    struct q_dest *next;
};

struct queue {
    struct server *srv;
    struct store *st;
    struct event_base *base;
    struct dns_async *dns;
    struct ssl_ctx_st *tls;
    struct queue_timing timing;
    struct event *scan_ev, *wake_ev, *record_ev, *stop_ev, *grace_ev, *inotify_ev, *poke_ev,
        *slice_ev;
    int inotify_fd;
    int64_t poke_until;               /* ms (monotonic): rescan soon until then */
    struct q_msg *msgs[1024];         /* in flight, by id */
    size_t n_msgs;
    struct q_dest *dests;
    struct q_sess *sessions;
    int active;                       /* sessions in all */
    struct q_msg *record_head, **record_tail;
    bool record_busy;                 /* a batch is being committed on the pool */
    int injects_pending;
    int loaded_this_scan;
    bool stopping;
    char helo[HOSTNAME_MAX];
};

/* scheduler.c */
const struct config *queue_cfg(struct queue *q);
/* A job finished (its recipients' results are in msg->res): frees it. */
void queue_job_done(struct queue *q, struct q_job *job);
/* Sets every recipient of the job to r and finishes it. */
void queue_job_fail(struct queue *q, struct q_job *job, const struct queue_result *r);

/* delivery.c */
/* Starts what a destination can do now: resolution, sessions up to the
 * limits; fails its pending jobs when it cannot be resolved. */
void queue_dest_kick(struct queue *q, struct q_dest *d);
/* Stops every session and resolution at once (their jobs are dropped
 * without results: the entries stay due in the store). */
void queue_delivery_abort(struct queue *q);
void queue_dest_free(struct q_dest *d);
#endif
