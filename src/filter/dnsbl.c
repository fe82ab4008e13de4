/*
 * DNS for the engine: DNS list query names and answers (RFC 5782), a
 * small set of lookup threads so that the lists of one connection are
 * asked concurrently, each under its own timeout, a cache of answers
 * (lists, FCrDNS results, HELO name existence) bounded in size and
 * honouring TTLs, forward-confirmed reverse DNS and the HELO existence
 * check.  The cache lets a stage whose answers are all there run on an
 * event loop (filter_lookup_cached) instead of the pool.
 *
 * Why threads of our own: the resolver's synchronous calls block their
 * caller, and a pool job waiting on other pool jobs could starve the pool.
 * Each batch waits at most its longest timeout; a lookup that answers
 * later still fills the cache for the next connection, and a timed-out
 * list never rejects.
 */
#include <arpa/inet.h>
#include <libpsl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/util.h"
#include "filter/filter_int.h"

#define LK_THREADS      8
#define LK_QUEUE_MAX    4096
#define LK_CACHE_SLOTS  4096        /* direct-mapped, ~2.2 MB */
#define LK_TTL_MIN      30
#define LK_TTL_MAX      86400
#define LK_TTL_NEGATIVE 300         /* NXDOMAIN without a TTL */
#define LK_PTR_NAMES    5           /* PTR names tried for FCrDNS */

/* ---- query names ---- */

int filter_dnsl_ip_name(const char *ip, const char *zone, char *buf, size_t size)
{
    struct filter_ip a;
    if (filter_ip_parse(ip, &a) < 0 || zone == NULL || zone[0] == '\0')
        return -1;
    char rev[80];
    size_t o = 0;
    if (a.family == 4) {
        o = (size_t)snprintf(rev, sizeof(rev), "%u.%u.%u.%u", a.addr[3], a.addr[2], a.addr[1],
                             a.addr[0]);
    } else {
        static const char hex[] = "0123456789abcdef";
        for (int i = 15; i >= 0; i--) {
            rev[o++] = hex[a.addr[i] & 0xf];
            rev[o++] = '.';
            rev[o++] = hex[a.addr[i] >> 4];
            rev[o++] = i ? '.' : '\0';
        }
    }
    (void)o;
    int n = snprintf(buf, size, "%s.%s", rev, zone);
    if (n < 0 || (size_t)n >= size || !dns_name_valid(buf))
        return -1;
    return 0;
}

int filter_dnsl_domain_name(const char *domain, const char *zone, char *buf, size_t size)
{
    char d[DNS_NAME_MAX + 2];
    if (domain == NULL || zone == NULL || zone[0] == '\0' ||
        str_copy(d, domain, sizeof(d)) >= sizeof(d))
        return -1;
    size_t dl = strlen(d);
    if (dl > 0 && d[dl - 1] == '.')
        d[--dl] = '\0';
    str_lower(d);
    if (!filter_domain_syntax_ok(d))
        return -1;
    int n = snprintf(buf, size, "%s.%s", d, zone);
    if (n < 0 || (size_t)n >= size || !dns_name_valid(buf) || strlen(buf) > DNS_NAME_MAX)
        return -1;
    return 0;
}

/* The public suffix list: the system's file, else the library's copy.
 * Loaded once and kept for the process's life. */
static pthread_once_t psl_once = PTHREAD_ONCE_INIT;
static const psl_ctx_t *psl_ctx;

static void psl_init(void)
{
    psl_ctx_t *latest = psl_latest(NULL);
    psl_ctx = latest ? latest : psl_builtin();
}

int filter_registrable_domain(const char *domain, char *buf, size_t size)
{
    pthread_once(&psl_once, psl_init);
    if (psl_ctx == NULL || domain == NULL)
        return -1;
    const char *r = psl_registrable_domain(psl_ctx, domain);
    if (r == NULL || str_copy(buf, r, size) >= size)
        return -1;
    return 0;
}

/* ---- answers ---- */

/* 127.0.0.0/8 except the 127.255.255.0/24 error codes (query refused,
 * rate limited, typo in the zone: Spamhaus and others use them). */
static bool answer_is_listing(const uint8_t a[4])
{
    return a[0] == 127 && !(a[1] == 255 && a[2] == 255);
}

bool filter_dnsl_interpret(const struct filter_dnsl_cfg *d, const uint8_t (*a)[4], int n,
                           double *weight_r, enum filter_mode *mode_r, const char **code_name_r,
                           char *detail, size_t detail_size)
{
    bool any = false;
    double best = 0;
    enum filter_mode mode = FILTER_MODE_SCORE;
    const char *name = "";
    size_t o = 0;
    if (detail_size > 0)
        detail[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (!answer_is_listing(a[i]))
            continue;
        bool matched = false;
        double w = d->weight;
        enum filter_mode m = d->mode;
        const char *cn = "";
        for (int k = 0; k < d->n_codes; k++) {
            const struct filter_code *c = &d->codes[k];
            if (!filter_code_match(c, a[i]))
                continue;
            double cw = c->has_weight ? c->weight : d->weight;
            enum filter_mode cm = c->mode != FILTER_MODE_OFF ? c->mode : d->mode;
            /* several codes may match: the strongest meaning wins */
            if (!matched || (cm == FILTER_MODE_REJECT && m != FILTER_MODE_REJECT) ||
                (cm == m && cw > w)) {
                w = cw;
                m = cm;
                cn = c->name;
            }
            matched = true;
        }
        if (d->n_codes == 0)
            matched = true;
        if (!matched)
            continue;
        if (o + 20 < detail_size)
            o += (size_t)snprintf(detail + o, detail_size - o, "%s%u.%u.%u.%u", o ? "," : "",
                                  a[i][0], a[i][1], a[i][2], a[i][3]);
        if (!any || (m == FILTER_MODE_REJECT && mode != FILTER_MODE_REJECT) ||
            (m == FILTER_MODE_ACCEPT && mode == FILTER_MODE_SCORE) || (m == mode && w > best)) {
            best = w;
            mode = m;
            name = cn;
        }
        any = true;
    }
    if (any) {
        *weight_r = best;
        *mode_r = mode;
        *code_name_r = name;
    }
    return any;
}

/* ---- the cache ---- */

/* One cached answer: an A lookup of a list (its records), an FCrDNS
 * result (keyed by the address, with the confirmed or first PTR name) or
 * a HELO name's existence. */
struct lk_slot {
    char name[DNS_NAME_MAX + 2];
    enum filter_lk_kind kind;
    time_t expires;
    enum dns_status status;
    uint8_t a[FILTER_LK_ADDRS_MAX][4];
    int n;
    enum filter_fcrdns fcrdns;
    char ptr[DNS_NAME_MAX + 2];
};

struct lk_batch;

struct lk_job {
    struct lk_job *next;
    struct lk_batch *batch;
    int idx;
};

struct lk_batch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending, refs;
    struct filter *f;
    uint64_t *done_at;              /* per request, monotonic ms (0 = pending) */
    struct filter_lk_req *reqs;     /* copies the workers fill */
    struct lk_job *jobs;
};

struct filter_lookup {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct lk_job *head, **tail;
    size_t queued;
    atomic_bool stopping;
    int n_threads;
    pthread_t threads[LK_THREADS];

    pthread_mutex_t cache_mu;
    struct lk_slot *cache;
    unsigned long hits, queries;
};

static size_t name_hash(const char *s)
{
    size_t h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)((*s >= 'A' && *s <= 'Z') ? *s + 32 : *s);
    return h;
}

/* An FCrDNS request is keyed by its address, which its name then holds. */
static void req_key(struct filter_lk_req *r)
{
    if (r->kind == FILTER_LK_FCRDNS && r->name[0] == '\0' &&
        filter_ip_format(&r->ip, r->name, sizeof(r->name)) == NULL)
        r->name[0] = '\0';
}

static struct lk_slot *slot_of(struct filter_lookup *lk, const struct filter_lk_req *r)
{
    return &lk->cache[(name_hash(r->name) + (size_t)r->kind * 7919u) % LK_CACHE_SLOTS];
}

/* Fills r from the cache when its answer is there and fresh.  count:
 * add to the hit statistics. */
static bool cache_get(struct filter *f, struct filter_lk_req *r, bool count)
{
    struct filter_lookup *lk = f->lookup;
    req_key(r);
    if (r->name[0] == '\0')
        return false;
    struct lk_slot *s = slot_of(lk, r);
    time_t now = filter_now(f);
    bool hit = false;
    pthread_mutex_lock(&lk->cache_mu);
    if (count)
        lk->queries++;
    if (s->name[0] && s->kind == r->kind && strcasecmp(s->name, r->name) == 0 && s->expires > now) {
        r->status = s->status;
        r->n_a = s->n;
        memcpy(r->a, s->a, sizeof(r->a));
        r->fcrdns = s->fcrdns;
        str_copy(r->ptr, s->ptr, sizeof(r->ptr));
        if (count)
            lk->hits++;
        hit = true;
    }
    pthread_mutex_unlock(&lk->cache_mu);
    return hit;
}

/* Keeps a final answer for its TTL (within LK_TTL_MIN..LK_TTL_MAX; 0 is
 * "unknown").  Temporary failures are never kept. */
static void cache_put(struct filter *f, struct filter_lk_req *r, uint32_t ttl)
{
    bool final = r->kind == FILTER_LK_FCRDNS
                     ? r->fcrdns != FILTER_FCRDNS_TEMPFAIL
                     : r->status == DNS_OK || r->status == DNS_NXDOMAIN || r->status == DNS_NODATA;
    req_key(r);
    if (!final || r->name[0] == '\0' || filter_lookup_stopping(f))
        return;
    bool positive = r->kind == FILTER_LK_FCRDNS ? r->fcrdns != FILTER_FCRDNS_NOPTR
                                                : r->status == DNS_OK;
    if (ttl == 0)
        ttl = positive ? LK_TTL_MIN : LK_TTL_NEGATIVE;
    if (ttl < LK_TTL_MIN)
        ttl = LK_TTL_MIN;
    if (ttl > LK_TTL_MAX)
        ttl = LK_TTL_MAX;
    struct filter_lookup *lk = f->lookup;
    struct lk_slot *s = slot_of(lk, r);
    pthread_mutex_lock(&lk->cache_mu);
    str_copy(s->name, r->name, sizeof(s->name));
    s->kind = r->kind;
    s->expires = filter_now(f) + (time_t)ttl;
    s->status = r->status;
    s->n = r->n_a;
    memcpy(s->a, r->a, sizeof(s->a));
    s->fcrdns = r->fcrdns;
    str_copy(s->ptr, r->ptr, sizeof(s->ptr));
    pthread_mutex_unlock(&lk->cache_mu);
}

/* The smaller of two TTLs, where 0 is "unknown". */
static uint32_t ttl_min(uint32_t a, uint32_t b)
{
    return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

bool filter_lookup_stopping(struct filter *f)
{
    return atomic_load(&f->lookup->stopping);
}

void filter_lookup_stats(struct filter *f, unsigned long *hits_r, unsigned long *queries_r)
{
    pthread_mutex_lock(&f->lookup->cache_mu);
    *hits_r = f->lookup->hits;
    *queries_r = f->lookup->queries;
    pthread_mutex_unlock(&f->lookup->cache_mu);
}

/* ---- the lookups themselves (on a lookup thread) ---- */

static void run_a(struct filter *f, struct filter_lk_req *r)
{
    struct dns_result res;
    r->status = filter_dns_query(f, true, r->name, DNS_T_A, &res);
    r->n_a = 0;
    for (size_t i = 0; i < res.n && r->n_a < FILTER_LK_ADDRS_MAX; i++)
        if (res.rr[i].type == DNS_T_A && res.rr[i].addr.family == AF_INET)
            memcpy(r->a[r->n_a++], &res.rr[i].addr.u.v4, 4);
    if (r->status == DNS_OK && r->n_a == 0)
        r->status = DNS_NODATA;
    cache_put(f, r, res.ttl);
    dns_result_free(&res);
}

static bool addr_equal(const struct dns_addr *d, const struct filter_ip *ip)
{
    if (ip->family == 4)
        return d->family == AF_INET && memcmp(&d->u.v4, ip->addr, 4) == 0;
    return d->family == AF_INET6 && memcmp(&d->u.v6, ip->addr, 16) == 0;
}

/* Forward-confirmed reverse DNS: a PTR name of the address whose A/AAAA
 * records include the address again. */
static void run_fcrdns(struct filter *f, struct filter_lk_req *r)
{
    struct dns_addr da = { .family = r->ip.family == 4 ? AF_INET : AF_INET6 };
    memcpy(r->ip.family == 4 ? (void *)&da.u.v4 : (void *)&da.u.v6, r->ip.addr,
           r->ip.family == 4 ? 4 : 16);
    char rev[DNS_NAME_MAX + 2];
    struct dns_result ptr;
    r->ptr[0] = '\0';
    if (dns_reverse_name(&da, rev, sizeof(rev)) < 0) {
        r->fcrdns = FILTER_FCRDNS_NOPTR;
        return;
    }
    enum dns_status st = filter_dns_query(f, false, rev, DNS_T_PTR, &ptr);
    r->status = st;
    uint32_t ttl = ptr.ttl;
    if (st != DNS_OK) {
        r->fcrdns = st == DNS_TEMPFAIL ? FILTER_FCRDNS_TEMPFAIL : FILTER_FCRDNS_NOPTR;
        dns_result_free(&ptr);
        cache_put(f, r, ttl);
        return;
    }
    bool tempfail = false;
    int tried = 0;
    r->fcrdns = FILTER_FCRDNS_MISMATCH;
    for (size_t i = 0; i < ptr.n && tried < LK_PTR_NAMES; i++) {
        if (ptr.rr[i].type != DNS_T_PTR || ptr.rr[i].name == NULL || !ptr.rr[i].name[0])
            continue;
        if (filter_lookup_stopping(f))
            break;
        if (r->ptr[0] == '\0')
            str_copy(r->ptr, ptr.rr[i].name, sizeof(r->ptr));
        tried++;
        struct dns_result fwd;
        enum dns_status fs = filter_dns_query(f, false, ptr.rr[i].name,
                                              r->ip.family == 4 ? DNS_T_A : DNS_T_AAAA, &fwd);
        if (fs == DNS_TEMPFAIL)
            tempfail = true;
        ttl = ttl_min(ttl, fwd.ttl);
        for (size_t k = 0; fs == DNS_OK && k < fwd.n; k++)
            if (addr_equal(&fwd.rr[k].addr, &r->ip) &&
                (fwd.rr[k].type == DNS_T_A || fwd.rr[k].type == DNS_T_AAAA)) {
                r->fcrdns = FILTER_FCRDNS_PASS;
                str_copy(r->ptr, ptr.rr[i].name, sizeof(r->ptr));
            }
        dns_result_free(&fwd);
        if (r->fcrdns == FILTER_FCRDNS_PASS)
            break;
    }
    if (r->fcrdns != FILTER_FCRDNS_PASS && tempfail)
        r->fcrdns = FILTER_FCRDNS_TEMPFAIL;
    dns_result_free(&ptr);
    cache_put(f, r, ttl);
}

/* Does a name exist with A, AAAA or MX records?  status: DNS_OK when it
 * does, NXDOMAIN, NODATA (exists without any), TEMPFAIL. */
static void run_exists(struct filter *f, struct filter_lk_req *r)
{
    static const uint16_t types[] = { DNS_T_A, DNS_T_AAAA, DNS_T_MX };
    enum dns_status worst = DNS_NODATA;
    uint32_t ttl = 0;
    for (size_t i = 0; i < 3; i++) {
        struct dns_result res;
        if (i > 0 && filter_lookup_stopping(f)) {
            r->status = DNS_TEMPFAIL;
            return;
        }
        enum dns_status st = filter_dns_query(f, false, r->name, types[i], &res);
        ttl = ttl_min(ttl, res.ttl);
        dns_result_free(&res);
        if (st == DNS_OK || st == DNS_NXDOMAIN || st == DNS_BADNAME) {
            r->status = st == DNS_BADNAME ? DNS_NXDOMAIN : st;
            cache_put(f, r, ttl);
            return;
        }
        if (st == DNS_TEMPFAIL)
            worst = DNS_TEMPFAIL;
    }
    r->status = worst;
    cache_put(f, r, ttl);
}

static void run_req(struct filter *f, struct filter_lk_req *r)
{
    switch (r->kind) {
    case FILTER_LK_A: run_a(f, r); break;
    case FILTER_LK_FCRDNS: run_fcrdns(f, r); break;
    case FILTER_LK_EXISTS: run_exists(f, r); break;
    }
}

/* ---- threads and batches ---- */

static void batch_unref(struct lk_batch *b)
{
    pthread_mutex_lock(&b->mu);
    int refs = --b->refs;
    pthread_mutex_unlock(&b->mu);
    if (refs > 0)
        return;
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b->reqs);
    free(b->done_at);
    free(b->jobs);
    free(b);
}

static void job_finish(struct lk_job *j)
{
    struct lk_batch *b = j->batch;
    pthread_mutex_lock(&b->mu);
    b->done_at[j->idx] = now_mono_ms();
    b->pending--;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    batch_unref(b);
}

static void *lk_thread(void *arg)
{
    struct filter_lookup *lk = arg;
    for (;;) {
        pthread_mutex_lock(&lk->mu);
        while (lk->head == NULL && !lk->stopping)
            pthread_cond_wait(&lk->cv, &lk->mu);
        struct lk_job *j = lk->head;
        if (j == NULL) {
            pthread_mutex_unlock(&lk->mu);
            return NULL;
        }
        lk->head = j->next;
        if (lk->head == NULL)
            lk->tail = &lk->head;
        lk->queued--;
        bool stopping = lk->stopping;
        pthread_mutex_unlock(&lk->mu);
        /* the request copy is the batch's: the caller reads it only
         * after done_at is set, under the batch lock */
        struct filter_lk_req *r = &j->batch->reqs[j->idx];
        if (stopping)
            r->status = DNS_TEMPFAIL;
        else
            run_req(j->batch->f, r);
        job_finish(j);
    }
}

struct filter_lookup *filter_lookup_new(void)
{
    struct filter_lookup *lk = calloc(1, sizeof(*lk));
    if (lk == NULL)
        return NULL;
    lk->cache = calloc(LK_CACHE_SLOTS, sizeof(*lk->cache));
    if (lk->cache == NULL) {
        free(lk);
        return NULL;
    }
    pthread_mutex_init(&lk->mu, NULL);
    pthread_cond_init(&lk->cv, NULL);
    pthread_mutex_init(&lk->cache_mu, NULL);
    lk->tail = &lk->head;
    return lk;
}

void filter_lookup_free(struct filter_lookup *lk)
{
    if (lk == NULL)
        return;
    pthread_mutex_lock(&lk->mu);
    lk->stopping = true;
    pthread_cond_broadcast(&lk->cv);
    pthread_mutex_unlock(&lk->mu);
    for (int i = 0; i < lk->n_threads; i++)
        pthread_join(lk->threads[i], NULL);
    pthread_mutex_destroy(&lk->mu);
    pthread_cond_destroy(&lk->cv);
    pthread_mutex_destroy(&lk->cache_mu);
    free(lk->cache);
    free(lk);
}

/* Starts the threads on first use; false when none could start (the
 * caller then runs its lookups inline). */
static bool lk_started(struct filter_lookup *lk)
{
    if (lk->n_threads > 0)
        return true;
    for (int i = 0; i < LK_THREADS; i++) {
        if (pthread_create(&lk->threads[lk->n_threads], NULL, lk_thread, lk) != 0)
            break;
        lk->n_threads++;
    }
    return lk->n_threads > 0;
}

static struct lk_batch *batch_new(struct filter *f, const struct filter_lk_req *reqs, int n)
{
    struct lk_batch *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->reqs = malloc((size_t)n * sizeof(*reqs));
    b->done_at = calloc((size_t)n, sizeof(*b->done_at));
    b->jobs = calloc((size_t)n, sizeof(*b->jobs));
    if (b->reqs == NULL || b->done_at == NULL || b->jobs == NULL) {
        free(b->reqs);
        free(b->done_at);
        free(b->jobs);
        free(b);
        return NULL;
    }
    memcpy(b->reqs, reqs, (size_t)n * sizeof(*reqs));
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->f = f;
    b->refs = 1;
    return b;
}

static void timed_out(struct filter_lk_req *r)
{
    r->timed_out = true;
    r->status = DNS_TEMPFAIL;
    r->fcrdns = FILTER_FCRDNS_TEMPFAIL;
    r->n_a = 0;
}

static void reqs_reset(struct filter_lk_req *reqs, int n)
{
    for (int i = 0; i < n; i++) {
        reqs[i].timed_out = false;
        reqs[i].status = DNS_TEMPFAIL;
        reqs[i].n_a = 0;
    }
}

bool filter_lookup_cached(struct filter *f, struct filter_lk_req *reqs, int n)
{
    reqs_reset(reqs, n);
    for (int i = 0; i < n; i++)
        if (!cache_get(f, &reqs[i], false)) {
            reqs_reset(reqs, n);
            return false;
        }
    pthread_mutex_lock(&f->lookup->cache_mu);
    f->lookup->queries += (unsigned long)n;
    f->lookup->hits += (unsigned long)n;
    pthread_mutex_unlock(&f->lookup->cache_mu);
    return true;
}

void filter_lookup_run(struct filter *f, struct filter_lk_req *reqs, int n)
{
    struct filter_lookup *lk = f->lookup;
    reqs_reset(reqs, n);
    pthread_mutex_lock(&lk->mu);
    bool threads = !lk->stopping && lk_started(lk);
    pthread_mutex_unlock(&lk->mu);
    struct lk_batch *b = threads ? batch_new(f, reqs, n) : NULL;
    if (b == NULL) {
        for (int i = 0; i < n; i++)
            if (!cache_get(f, &reqs[i], true))
                run_req(f, &reqs[i]);
        return;
    }
    uint64_t start = now_mono_ms();
    pthread_mutex_lock(&lk->mu);
    for (int i = 0; i < n; i++) {
        struct filter_lk_req *r = &b->reqs[i];
        if (cache_get(f, r, true)) {
            b->done_at[i] = start;
            continue;
        }
        if (lk->queued >= LK_QUEUE_MAX) {
            b->done_at[i] = start;
            timed_out(r);
            continue;
        }
        struct lk_job *j = &b->jobs[i];
        j->batch = b;
        j->idx = i;
        b->pending++;
        b->refs++;
        *lk->tail = j;
        lk->tail = &j->next;
        lk->queued++;
    }
    pthread_cond_broadcast(&lk->cv);
    pthread_mutex_unlock(&lk->mu);

    /* wait until each request has its answer or its own deadline passed */
    pthread_mutex_lock(&b->mu);
    for (;;) {
        uint64_t now = now_mono_ms(), next = 0;
        for (int i = 0; i < n; i++) {
            uint64_t dl = start + reqs[i].timeout_ms;
            if (b->done_at[i] == 0 && dl > now && (next == 0 || dl < next))
                next = dl;
        }
        if (next == 0)
            break;
        cond_wait_ms(&b->cv, &b->mu, next - now);
    }
    for (int i = 0; i < n; i++) {
        uint64_t done = b->done_at[i];
        if (done == 0 || done > start + reqs[i].timeout_ms)
            timed_out(&reqs[i]);
        else
            reqs[i] = b->reqs[i];
    }
    pthread_mutex_unlock(&b->mu);
    batch_unref(b);
}
