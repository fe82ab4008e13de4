/*
 * Queries answered on a libevent loop.  Each dns_async owns a libunbound
 * context whose result descriptor is an event on the loop: when it is
 * readable, ub_process() runs the callbacks right there, on the loop
 * thread.  A timer per query gives the deadline.  Everything here runs on
 * that one thread, so no locks.
 *
 * A query whose deadline passed but whose cancel failed (the answer was
 * already on its way) stays allocated, marked delivered, until libunbound
 * hands the late answer over; then it is dropped.
 */
#include "dns/dns.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unbound.h>

#include "core/log.h"
#include "dns/dns_int.h"

struct dns_async_query {
    struct dns_async *owner;
    struct dns_async_query *prev, *next;
    struct event *timer;
    dns_async_cb *cb;
    void *arg;
    uint16_t type;
    int id;
    bool in_unbound;              /* libunbound still owes a callback */
    bool finished;                /* cb ran or was cancelled */
    struct dns_result early;      /* answer decided before any query (bad name) */
};

struct dns_async {
    struct event_base *base;
    struct ub_ctx *ctx;
    struct event *ev;
    unsigned timeout_ms;
    struct dns_async_query *head;
};

static void query_free(struct dns_async_query *q)
{
    if (q->timer)
        event_free(q->timer);
    dns_result_free(&q->early);
    free(q);
}

static void query_unlink_free(struct dns_async_query *q)
{
    struct dns_async *a = q->owner;
    if (q->prev)
        q->prev->next = q->next;
    else
        a->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    query_free(q);
}

/* Delivers res to the user once, then frees q unless libunbound still owes
 * it a callback. */
static void query_finish(struct dns_async_query *q, const struct dns_result *res)
{
    if (!q->finished) {
        q->finished = true;
        event_del(q->timer);
        q->cb(q->arg, res);
    }
    if (!q->in_unbound)
        query_unlink_free(q);
}

static void on_answer(void *arg, int err, struct ub_result *ub)
{
    struct dns_async_query *q = arg;
    struct dns_result res;
    q->in_unbound = false;
    memset(&res, 0, sizeof(res));
    res.rcode = -1;
    if (!q->finished)
        dns_result_from_ub(&res, q->type, err, ub);
    if (ub)
        ub_resolve_free(ub);
    query_finish(q, &res);
    dns_result_free(&res);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct dns_async_query *q = arg;
    (void)fd;
    (void)what;
    if (q->in_unbound) {
        if (ub_cancel(q->owner->ctx, q->id) == 0)
            q->in_unbound = false;
        struct dns_result res;
        memset(&res, 0, sizeof(res));
        res.rcode = -1;
        dns_result_fail(&res, DNS_TEMPFAIL, "timeout after %u ms", q->owner->timeout_ms);
        query_finish(q, &res);
        return;
    }
    query_finish(q, &q->early);   /* a result decided up front */
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct dns_async *a = arg;
    (void)fd;
    (void)what;
    int rc = ub_process(a->ctx);
    if (rc != 0)
        log_warn(NULL, "event=dns_process error=\"%s\"", ub_strerror(rc));
}

struct dns_async *dns_async_new(struct event_base *base, const struct dns_options *opt, const char **error_r)
{
    struct dns_async *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    a->base = base;
    a->timeout_ms = dns_timeout_ms(opt);
    if ((a->ctx = dns_ub_ctx_new(opt, error_r)) == NULL) {
        free(a);
        return NULL;
    }
    a->ev = event_new(base, ub_fd(a->ctx), EV_READ | EV_PERSIST, on_readable, a);
    if (a->ev == NULL || event_add(a->ev, NULL) != 0) {
        *error_r = "cannot watch the resolver descriptor";
        if (a->ev)
            event_free(a->ev);
        ub_ctx_delete(a->ctx);
        free(a);
        return NULL;
    }
    return a;
}

void dns_async_free(struct dns_async *a)
{
    if (a == NULL)
        return;
    for (struct dns_async_query *q = a->head, *next; q; q = next) {
        next = q->next;
        if (q->in_unbound)
            ub_cancel(a->ctx, q->id);
        query_free(q);
    }
    a->head = NULL;
    event_free(a->ev);
    ub_ctx_delete(a->ctx);
    free(a);
}

struct dns_async_query *dns_async_query(struct dns_async *a, const char *name, uint16_t type,
                                        dns_async_cb *cb, void *arg)
{
    char qname[DNS_NAME_MAX * 4 + 8];
    struct dns_async_query *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    q->owner = a;
    q->cb = cb;
    q->arg = arg;
    q->type = type;
    q->early.rcode = -1;
    q->timer = evtimer_new(a->base, on_timer, q);
    if (q->timer == NULL) {
        free(q);
        return NULL;
    }
    q->next = a->head;
    if (a->head)
        a->head->prev = q;
    a->head = q;

    struct timeval tv = { 0, 0 };
    if (dns_name_escape(name, qname, sizeof(qname)) < 0) {
        /* Answered on the next loop turn: callbacks never run inside this call. */
        dns_result_fail(&q->early, DNS_BADNAME, "malformed name");
    } else {
        /* libunbound answers only from ub_process(), never from inside
         * ub_resolve_async(). */
        q->in_unbound = true;
        int rc = ub_resolve_async(a->ctx, qname, type, 1, q, on_answer, &q->id);
        if (rc != 0) {
            q->in_unbound = false;
            query_unlink_free(q);
            return NULL;
        }
        tv.tv_sec = a->timeout_ms / 1000;
        tv.tv_usec = (suseconds_t)(a->timeout_ms % 1000) * 1000;
    }
    evtimer_add(q->timer, &tv);
    return q;
}

void dns_async_cancel(struct dns_async_query *q)
{
    if (q == NULL || q->finished)
        return;
    q->finished = true;
    event_del(q->timer);
    if (q->in_unbound && ub_cancel(q->owner->ctx, q->id) == 0)
        q->in_unbound = false;
    if (!q->in_unbound)
        query_unlink_free(q);
}
