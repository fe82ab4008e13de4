/*
 * The synchronous, thread-safe resolver.
 *
 * libunbound has no per-query timeout and its blocking ub_resolve() can
 * wait for a long time on a silent server, so every query goes through
 * ub_resolve_async(): a dispatcher thread watches the context's descriptor
 * and runs ub_process(), whose callbacks hand answers to the waiting
 * callers; a caller waits on a condition variable until its answer or its
 * deadline, then cancels.  A waiter is shared by the caller and the
 * callback and freed by whichever lets go last.
 */
#include "dns/dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unbound.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "dns/dns_int.h"

#define DEFAULT_TRUST_ANCHOR "/usr/share/dns/root.key"

struct dns_resolver {
    struct ub_ctx *ctx;
    unsigned timeout_ms;
    struct dns_cache *cache;      /* answers kept per TTL (dns_cache.c) */
    pthread_t thread;
    int stop[2];                  /* a write wakes the dispatcher to exit */
};

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;                     /* caller + callback */
    bool done, abandoned;
    int err;
    struct ub_result *res;
};

/* "host:port" -> "ip@port" for ub_ctx_set_fwd (it takes addresses only). */
static int forwarder_text(const char *hostport, char *out, size_t size)
{
    char host[256], ip[INET6_ADDRSTRLEN];
    int port;
    if (parse_hostport(hostport, host, sizeof(host), &port) < 0) {
        /* A bare address means port 53. */
        if (str_copy(host, hostport, sizeof(host)) >= sizeof(host))
            return -1;
        port = 53;
    }
    struct in6_addr tmp;
    if (inet_pton(AF_INET, host, &tmp) == 1 || inet_pton(AF_INET6, host, &tmp) == 1) {
        str_copy(ip, host, sizeof(ip));
    } else {
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM };
        struct addrinfo *ai = NULL;
        if (getaddrinfo(host, NULL, &hints, &ai) != 0 || ai == NULL)
            return -1;
        const void *src = ai->ai_family == AF_INET
            ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
            : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        const char *ok = inet_ntop(ai->ai_family, src, ip, sizeof(ip));
        freeaddrinfo(ai);
        if (ok == NULL)
            return -1;
    }
    int n = snprintf(out, size, "%s@%d", ip, port);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

static int set_option(struct ub_ctx *ctx, const char *opt, const char *val)
{
    int rc = ub_ctx_set_option(ctx, opt, val);
    if (rc != 0)
        log_warn(NULL, "event=dns_option option=%s error=\"%s\"", opt, ub_strerror(rc));
    return rc;
}

static int setup_dnssec(struct ub_ctx *ctx, const struct dns_options *opt)
{
    if (!opt->dnssec)
        return set_option(ctx, "module-config:", "iterator");
    const char *ta = opt->trust_anchor[0] ? opt->trust_anchor : DEFAULT_TRUST_ANCHOR;
    if (access(ta, R_OK) != 0) {
        log_warn(NULL, "event=dns_dnssec_off reason=\"no trust anchor\" file=%s", ta);
        return set_option(ctx, "module-config:", "iterator");
    }
    if (ub_ctx_add_ta_file(ctx, ta) != 0)
        return -1;
    /* Validation tells us what is secure (DANE needs it) but never hides
     * answers: behind a forwarder that strips signatures everything would
     * be bogus, and mail must still flow.  Bogus answers are flagged. */
    return set_option(ctx, "val-permissive-mode:", "yes");
}

struct ub_ctx *dns_ub_ctx_new(const struct dns_options *opt, const char **error_r)
{
    struct ub_ctx *ctx = ub_ctx_create();
    if (ctx == NULL) {
        *error_r = "cannot create the libunbound context";
        return NULL;
    }
    int rc = ub_ctx_async(ctx, 1);
    /* Forwarders on loopback (a test server, a local unbound or
     * systemd-resolved) are refused by default. */
    rc |= set_option(ctx, "do-not-query-localhost:", "no");
    rc |= set_option(ctx, "rrset-roundrobin:", "no");
    /* libunbound answers some names itself (RFC 6761 test./invalid., the
     * RFC 1918 reverse zones).  Our upstream knows better: private reverse
     * zones are real on many networks, and test zones live under test. */
    rc |= set_option(ctx, "unblock-lan-zones:", "yes");
    rc |= set_option(ctx, "insecure-lan-zones:", "yes");
    rc |= set_option(ctx, "local-zone:", "test. transparent");
    rc |= set_option(ctx, "local-zone:", "invalid. transparent");
    if (rc != 0) {
        *error_r = "cannot configure the libunbound context";
        goto fail;
    }
    if (opt->nameserver[0]) {
        char fwd[300];
        if (forwarder_text(opt->nameserver, fwd, sizeof(fwd)) < 0 || ub_ctx_set_fwd(ctx, fwd) != 0) {
            *error_r = "bad dns nameserver (want ADDRESS:PORT)";
            goto fail;
        }
    } else if (ub_ctx_resolvconf(ctx, NULL) != 0) {
        /* Without resolv.conf unbound recurses from the root itself. */
        log_warn(NULL, "event=dns_resolvconf error=\"cannot read /etc/resolv.conf\" fallback=recursion");
    }
    if (setup_dnssec(ctx, opt) != 0) {
        *error_r = "cannot load the DNSSEC trust anchor";
        goto fail;
    }
    return ctx;
fail:
    ub_ctx_delete(ctx);
    return NULL;
}

static void *dispatcher_main(void *arg)
{
    struct dns_resolver *r = arg;
    struct pollfd p[2] = {
        { .fd = ub_fd(r->ctx), .events = POLLIN },
        { .fd = r->stop[0], .events = POLLIN },
    };
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error(NULL, "event=dns_dispatcher error=\"%s\"", strerror(errno));
            break;
        }
        if (p[1].revents)
            break;
        if (p[0].revents & POLLIN) {
            int rc = ub_process(r->ctx);
            if (rc != 0)
                log_warn(NULL, "event=dns_process error=\"%s\"", ub_strerror(rc));
        }
    }
    return NULL;
}

struct dns_resolver *dns_resolver_new(const struct dns_options *opt, const char **error_r)
{
    struct dns_resolver *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    r->timeout_ms = dns_timeout_ms(opt);
    r->stop[0] = r->stop[1] = -1;
    if ((r->ctx = dns_ub_ctx_new(opt, error_r)) == NULL)
        goto fail;
    if ((r->cache = dns_cache_new(DNS_CACHE_ENTRIES)) == NULL) {
        *error_r = "out of memory";
        goto fail;
    }
    if (pipe(r->stop) < 0) {
        *error_r = "pipe failed";
        goto fail;
    }
    if (pthread_create(&r->thread, NULL, dispatcher_main, r) != 0) {
        *error_r = "cannot start the DNS dispatcher thread";
        goto fail;
    }
    return r;
fail:
    if (r->stop[0] >= 0) {
        close(r->stop[0]);
        close(r->stop[1]);
    }
    if (r->ctx)
        ub_ctx_delete(r->ctx);
    dns_cache_free(r->cache);
    free(r);
    return NULL;
}

void dns_resolver_free(struct dns_resolver *r)
{
    if (r == NULL)
        return;
    char c = 0;
    if (write(r->stop[1], &c, 1) != 1)
        log_error(NULL, "event=dns_stop error=\"%s\"", strerror(errno));
    pthread_join(r->thread, NULL);
    close(r->stop[0]);
    close(r->stop[1]);
    ub_ctx_delete(r->ctx);
    dns_cache_free(r->cache);
    free(r);
}

void dns_resolver_cache_stats(struct dns_resolver *r, uint64_t *hits, uint64_t *misses)
{
    size_t entries;
    dns_cache_stats(r->cache, hits, misses, &entries);
}

static struct waiter *waiter_new(void)
{
    struct waiter *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    w->refs = 2;
    return w;
}

/* Drops n references (2 when the callback will never run). */
static void waiter_release(struct waiter *w, int n)
{
    pthread_mutex_lock(&w->mu);
    w->refs -= n;
    bool last = w->refs == 0;
    pthread_mutex_unlock(&w->mu);
    if (!last)
        return;
    if (w->res)
        ub_resolve_free(w->res);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* Runs on the dispatcher thread (inside ub_process). */
static void waiter_done(void *arg, int err, struct ub_result *res)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    if (w->abandoned) {
        if (res)
            ub_resolve_free(res);
    } else {
        w->err = err;
        w->res = res;
        w->done = true;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    waiter_release(w, 1);
}

/* Waits for w until deadline_ms (monotonic); true when answered. */
static bool waiter_wait(struct waiter *w, uint64_t deadline_ms)
{
    struct timespec ts = { .tv_sec = (time_t)(deadline_ms / 1000),
                           .tv_nsec = (long)(deadline_ms % 1000) * 1000000L };
    pthread_mutex_lock(&w->mu);
    while (!w->done) {
        int rc = pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        if (rc == ETIMEDOUT && !w->done) {
            w->abandoned = true;
            break;
        }
    }
    bool done = w->done;
    pthread_mutex_unlock(&w->mu);
    return done;
}

bool dns_query_cached(struct dns_resolver *r, const char *name, uint16_t type, struct dns_result *res)
{
    char qname[DNS_NAME_MAX * 4 + 8];
    if (dns_name_escape(name, qname, sizeof(qname)) < 0) {
        memset(res, 0, sizeof(*res));
        res->rcode = -1;
        dns_result_fail(res, DNS_BADNAME, "malformed name");
        return true;
    }
    return dns_cache_get(r->cache, name, type, now_mono_ms(), res);
}

enum dns_status dns_query(struct dns_resolver *r, const char *name, uint16_t type, struct dns_result *res)
{
    char qname[DNS_NAME_MAX * 4 + 8];
    int id;
    memset(res, 0, sizeof(*res));
    res->rcode = -1;
    if (dns_name_escape(name, qname, sizeof(qname)) < 0) {
        dns_result_fail(res, DNS_BADNAME, "malformed name");
        return res->status;
    }
    if (dns_cache_get(r->cache, name, type, now_mono_ms(), res))
        return res->status;
    struct waiter *w = waiter_new();
    if (w == NULL) {
        dns_result_fail(res, DNS_TEMPFAIL, "out of memory");
        return res->status;
    }
    uint64_t deadline = now_mono_ms() + r->timeout_ms;
    int rc = ub_resolve_async(r->ctx, qname, type, 1, w, waiter_done, &id);
    if (rc != 0) {
        waiter_release(w, 2);
        dns_result_fail(res, DNS_TEMPFAIL, "resolver: %s", ub_strerror(rc));
        return res->status;
    }
    if (!waiter_wait(w, deadline)) {
        /* Cancelled in time, the callback will never run: drop its ref too.
         * Otherwise the answer is on its way and the callback frees it. */
        waiter_release(w, ub_cancel(r->ctx, id) == 0 ? 2 : 1);
        dns_result_fail(res, DNS_TEMPFAIL, "timeout after %u ms", r->timeout_ms);
        return res->status;
    }
    dns_result_from_ub(res, type, w->err, w->res);
    if (w->err == 0 && w->res != NULL) {
        struct ub_result *ub = w->res;
        struct dns_cache_answer a = {
            .rcode = ub->rcode, .nxdomain = ub->nxdomain != 0, .secure = ub->secure != 0,
            .bogus = ub->bogus != 0, .ttl = ub->ttl > 0 ? (uint32_t)ub->ttl : 0,
            .canon = ub->canonname, .data = (const unsigned char *const *)ub->data, .len = ub->len,
        };
        dns_cache_put(r->cache, name, type, now_mono_ms(), &a);
    }
    waiter_release(w, 1);
    return res->status;
}

/* ---- typed lookups ---- */

static enum dns_status addrs_append(struct dns_resolver *r, const char *name, uint16_t type,
                                    struct dns_addr **addrs, size_t *n, char *why, size_t why_size)
{
    struct dns_result res;
    enum dns_status st = dns_query(r, name, type, &res);
    if (st == DNS_OK) {
        struct dns_addr *p = realloc(*addrs, (*n + res.n) * sizeof(*p));
        if (p == NULL) {
            st = DNS_TEMPFAIL;
        } else {
            *addrs = p;
            for (size_t i = 0; i < res.n; i++)
                p[(*n)++] = res.rr[i].addr;
        }
    } else if (why && why_size) {
        snprintf(why, why_size, "%s %s: %s", type == DNS_T_A ? "A" : "AAAA", name, res.why);
    }
    dns_result_free(&res);
    return st;
}

enum dns_status dns_lookup_addrs(struct dns_resolver *r, const char *name, int family,
                                 struct dns_addr **addrs_r, size_t *n_r, char *why, size_t why_size)
{
    *addrs_r = NULL;
    *n_r = 0;
    if (why && why_size)
        why[0] = '\0';
    if (family == AF_INET)
        return addrs_append(r, name, DNS_T_A, addrs_r, n_r, why, why_size);
    if (family == AF_INET6)
        return addrs_append(r, name, DNS_T_AAAA, addrs_r, n_r, why, why_size);
    enum dns_status s4 = addrs_append(r, name, DNS_T_A, addrs_r, n_r, why, why_size);
    if (s4 == DNS_NXDOMAIN || s4 == DNS_BADNAME)
        return s4;
    enum dns_status s6 = addrs_append(r, name, DNS_T_AAAA, addrs_r, n_r, why, why_size);
    if (*n_r > 0)
        return DNS_OK;
    if (s4 == DNS_TEMPFAIL || s6 == DNS_TEMPFAIL)
        return DNS_TEMPFAIL;
    return s6;
}

enum dns_status dns_lookup_mx(struct dns_resolver *r, const char *domain, struct dns_mx_list *out)
{
    struct dns_result res;
    memset(out, 0, sizeof(*out));
    enum dns_status st = dns_query(r, domain, DNS_T_MX, &res);
    out->secure = res.secure;
    if (st != DNS_OK) {
        str_copy(out->why, res.why, sizeof(out->why));
        dns_result_free(&res);
        return st;
    }
    /* RFC 7505 3: a Null MX is the only MX of its domain, "0 .".  A "."
     * beside real hosts is a publishing error: use the real ones. */
    if (res.n == 1 && res.rr[0].name[0] == '\0') {
        out->null_mx = true;
        dns_result_free(&res);
        return DNS_OK;
    }
    if ((out->mx = calloc(res.n, sizeof(*out->mx))) == NULL) {
        dns_result_free(&res);
        str_copy(out->why, "out of memory", sizeof(out->why));
        return DNS_TEMPFAIL;
    }
    for (size_t i = 0; i < res.n; i++) {
        if (res.rr[i].name[0] == '\0')
            continue;
        out->mx[out->n].pref = res.rr[i].pref;
        str_copy(out->mx[out->n].host, res.rr[i].name, sizeof(out->mx[0].host));
        out->n++;
    }
    dns_result_free(&res);
    dns_mx_sort(out->mx, out->n);
    return DNS_OK;
}

enum dns_status dns_mail_hosts(struct dns_resolver *r, const char *domain, struct dns_mx_list *out)
{
    enum dns_status st = dns_lookup_mx(r, domain, out);
    if (st != DNS_NODATA)
        return st;
    /* RFC 5321 5.1: no MX records, so the domain itself is the implicit
     * MX, provided it has an address. */
    struct dns_addr *addrs;
    size_t n;
    st = dns_lookup_addrs(r, domain, AF_UNSPEC, &addrs, &n, out->why, sizeof(out->why));
    free(addrs);
    if (st != DNS_OK)
        return st;
    if ((out->mx = calloc(1, sizeof(*out->mx))) == NULL)
        return DNS_TEMPFAIL;
    size_t len = str_copy(out->mx[0].host, domain, sizeof(out->mx[0].host));
    if (len > 0 && out->mx[0].host[len - 1] == '.')
        out->mx[0].host[len - 1] = '\0';
    out->n = 1;
    out->implicit = true;
    return DNS_OK;
}

enum dns_status dns_lookup_ptr(struct dns_resolver *r, const struct dns_addr *addr, struct dns_result *res)
{
    char name[80];
    if (dns_reverse_name(addr, name, sizeof(name)) < 0) {
        memset(res, 0, sizeof(*res));
        dns_result_fail(res, DNS_BADNAME, "bad address");
        return res->status;
    }
    return dns_query(r, name, DNS_T_PTR, res);
}
