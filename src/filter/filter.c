/*
 * The engine's stages (filter.h): what is checked at connect, HELO, MAIL,
 * RCPT and end of DATA, in which order, and what each finding turns into
 * (a score, a held or immediate rejection, a temporary failure).
 *
 * Order inside a stage is cheap first: lists in memory, then rate
 * counters, then DNS (concurrently, under the lists' timeouts), then
 * SQLite (greylisting), then Rspamd.  An allow-listed client (allow_ip,
 * loopback, a DNSWL with action = accept) and an authenticated user skip
 * everything but the per-user message rate.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/util.h"
#include "filter/filter_int.h"
#include "store/store.h"
#include "store/store_filter.h"

#define LISTS_RECHECK 1             /* seconds between store generation reads */
#define RATE_KEYS_MAX 200000        /* rate-limit keys kept in memory */
#define DNSL_REQS_MAX (FILTER_DNSL_MAX * 2 + 2)

/* ---- verdicts ---- */

/* Field by field: the rule array (5 KB) is read only up to n_rules, and
 * every stage starts with this. */
void filter_verdict_init(struct filter_verdict *v)
{
    v->action = FILTER_ACCEPT;
    v->disconnect = false;
    v->code = 0;
    v->enhanced[0] = '\0';
    v->text[0] = '\0';
    v->scanned = false;
    v->spam = false;
    v->score = 0;
    v->n_rules = 0;
    v->headers = NULL;
    v->subject = NULL;
    v->rspamd_used = false;
    v->rspamd_score = 0;
    v->rspamd_action[0] = '\0';
    v->rspamd_symbols[0] = '\0';
}

void filter_verdict_free(struct filter_verdict *v)
{
    free(v->headers);
    free(v->subject);
    v->headers = NULL;
    v->subject = NULL;
}

const char *filter_verdict_reply(const struct filter_verdict *v, char *buf, size_t size)
{
    if (v->action == FILTER_ACCEPT)
        snprintf(buf, size, "250 2.0.0 Ok");
    else
        snprintf(buf, size, "%d %s %s", v->code, v->enhanced, v->text);
    return buf;
}

void filter_verdict_set(struct filter_verdict *v, enum filter_action action, int code,
                        const char *enhanced, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->text, sizeof(v->text), fmt, ap);
    va_end(ap);
    for (char *p = v->text; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    v->action = action;
    v->code = code;
    str_copy(v->enhanced, enhanced, sizeof(v->enhanced));
}

void filter_hits_add(struct filter_rule_hit *hits, int *n, int max, const char *name,
                     double score, const char *detail)
{
    if (*n >= max)
        return;
    struct filter_rule_hit *h = &hits[(*n)++];
    str_copy(h->name, name, sizeof(h->name));
    str_copy(h->detail, detail ? detail : "", sizeof(h->detail));
    h->score = score;
}

/* A rule found at a stage: kept in the given array for the message's
 * score and reported in the stage's verdict. */
static void stage_hit(struct filter_rule_hit *hits, int *n, int max, struct filter_verdict *v,
                      const char *name, double score, const char *detail)
{
    filter_hits_add(hits, n, max, name, score, detail);
    filter_verdict_hit(v, name, score, detail);
}

/* ---- the engine ---- */

time_t filter_now(const struct filter *f)
{
    return f->clock ? f->clock(f->clock_arg) : time(NULL);
}

const struct filter_config *filter_config_of(const struct filter *f)
{
    return &f->cfg;
}

static int filter_resolvers_new(struct filter *f, const struct dns_options *dns,
                                const char **error_r);

struct filter *filter_new(const struct filter_config *fc, const struct filter_env *env,
                          const char **error_r)
{
    struct filter *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    f->cfg = *fc;
    f->store = env->store;
    f->query = env->query;
    f->query_arg = env->query_arg;
    f->clock = env->clock;
    f->clock_arg = env->clock_arg;
    str_copy(f->hostname, env->hostname ? env->hostname : "", sizeof(f->hostname));
    str_lower(f->hostname);
    pthread_mutex_init(&f->lists_lock, NULL);
    f->local_domains = strdup(env->local_domains ? env->local_domains : "");
    f->lookup = filter_lookup_new();
    f->rate = filter_rate_new(RATE_KEYS_MAX);
    if (f->local_domains == NULL || f->lookup == NULL || f->rate == NULL) {
        *error_r = "out of memory";
        filter_free(f);
        return NULL;
    }
    if (env->query == NULL && env->dns != NULL && filter_resolvers_new(f, env->dns, error_r) < 0) {
        filter_free(f);
        return NULL;
    }
    str_lower(f->local_domains);
    const char *err = NULL;
    f->lists = filter_lists_build(&f->cfg, f->store, &err);
    f->lists_gen = f->store ? store_filter_generation(f->store) : 0;
    f->lists_checked = time(NULL);
    if (f->lists == NULL && f->store != NULL) {
        /* the store may be busy: start with the configured lists, retry later */
        log_warn(NULL, "event=filter_lists_unavailable error=\"%s\"", err ? err : "?");
        f->lists = filter_lists_build(&f->cfg, NULL, &err);
        f->lists_gen = -1;
    }
    if (f->lists == NULL) {
        *error_r = err ? err : "out of memory";
        filter_free(f);
        return NULL;
    }
    return f;
}

void filter_free(struct filter *f)
{
    if (f == NULL)
        return;
    filter_lookup_free(f->lookup);
    if (f->list_resolver)
        dns_resolver_free(f->list_resolver);
    if (f->resolver)
        dns_resolver_free(f->resolver);
    filter_rate_free(f->rate);
    filter_lists_unref(f->lists);
    pthread_mutex_destroy(&f->lists_lock);
    free(f->local_domains);
    free(f);
}

struct filter_lists *filter_lists_peek(struct filter *f)
{
    pthread_mutex_lock(&f->lists_lock);
    struct filter_lists *ls = f->lists;
    atomic_fetch_add(&ls->refs, 1);
    pthread_mutex_unlock(&f->lists_lock);
    return ls;
}

struct filter_lists *filter_lists_get(struct filter *f)
{
    time_t now = time(NULL);
    bool check = false;
    pthread_mutex_lock(&f->lists_lock);
    if (f->store != NULL && (now - f->lists_checked >= LISTS_RECHECK || now < f->lists_checked)) {
        f->lists_checked = now;
        check = true;
    }
    int64_t have = f->lists_gen;
    pthread_mutex_unlock(&f->lists_lock);
    if (check) {
        int64_t gen = store_filter_generation(f->store);
        if (gen >= 0 && gen != have) {
            const char *err = NULL;
            struct filter_lists *nl = filter_lists_build(&f->cfg, f->store, &err);
            if (nl != NULL) {
                pthread_mutex_lock(&f->lists_lock);
                struct filter_lists *old = f->lists;
                f->lists = nl;
                f->lists_gen = gen;
                pthread_mutex_unlock(&f->lists_lock);
                filter_lists_unref(old);
                log_debug(NULL, "event=filter_lists_reloaded generation=%lld", (long long)gen);
            } else {
                log_warn(NULL, "event=filter_lists_unavailable error=\"%s\"", err ? err : "?");
            }
        }
    }
    return filter_lists_peek(f);
}

bool filter_domain_is_local(struct filter *f, const char *domain)
{
    if (domain == NULL || domain[0] == '\0')
        return false;
    size_t dl = strlen(domain);
    for (const char *p = f->local_domains; *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        size_t n = strcspn(p, ", \t");
        if (n == dl && n > 0 && strncasecmp(p, domain, n) == 0)
            return true;
        p += n;
    }
    return f->store != NULL && store_domain_is_local(f->store, domain);
}

/* The engine's two resolvers: DNS list queries wait no longer than the
 * longest list timeout (a query still running when its batch gave up
 * would otherwise hold a lookup thread, and shutdown, for the resolver's
 * whole timeout); the others FILTER_DNS_TIMEOUT_MS. */
static int filter_resolvers_new(struct filter *f, const struct dns_options *dns,
                                const char **error_r)
{
    struct dns_options opt = *dns;
    opt.timeout_ms = FILTER_DNS_TIMEOUT_MS;
    f->resolver = dns_resolver_new(&opt, error_r);
    if (f->resolver == NULL)
        return -1;
    unsigned longest = 0;
    for (int i = 0; i < f->cfg.n_dnsl; i++)
        if (f->cfg.dnsl[i].timeout_ms > longest)
            longest = f->cfg.dnsl[i].timeout_ms;
    if (longest == 0)
        return 0;
    opt.timeout_ms = longest;
    f->list_resolver = dns_resolver_new(&opt, error_r);
    if (f->list_resolver == NULL) {
        dns_resolver_free(f->resolver);
        f->resolver = NULL;
        return -1;
    }
    return 0;
}

enum dns_status filter_dns_query(struct filter *f, bool list, const char *name, uint16_t type,
                                 struct dns_result *res)
{
    if (f->query != NULL)
        return f->query(f->query_arg, name, type, res);
    struct dns_resolver *r = list && f->list_resolver ? f->list_resolver : f->resolver;
    if (r != NULL)
        return dns_query(r, name, type, res);
    memset(res, 0, sizeof(*res));
    res->rcode = -1;
    str_copy(res->why, "no resolver", sizeof(res->why));
    return res->status = DNS_TEMPFAIL;
}

/* ---- connections ---- */

struct filter_conn *filter_conn_new(struct filter *f, const char *ip, bool mx, const char *sid)
{
    struct filter_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        fatal("out of memory");
    c->f = f;
    c->mx = mx;
    str_copy(c->sid, sid ? sid : "", sizeof(c->sid));
    str_copy(c->ip, ip ? ip : "", sizeof(c->ip));
    c->addr_ok = ip != NULL && filter_ip_parse(ip, &c->addr) == 0;
    return c;
}

void filter_conn_free(struct filter_conn *c)
{
    free(c);
}

static const char *sid_of(const struct filter_conn *c)
{
    return c->sid[0] ? c->sid : NULL;
}

/* The client key for rate limits: the address, or its /64 for IPv6 (a
 * host there usually has a whole /64 to pick from). */
static void rate_key(const struct filter_conn *c, char kind, char *buf, size_t size)
{
    if (!c->addr_ok) {
        snprintf(buf, size, "%c:%s", kind, c->ip);
        return;
    }
    char net[INET6_ADDRSTRLEN + 8];
    filter_greylist_net(&c->addr, 32, 64, net, sizeof(net));
    snprintf(buf, size, "%c:%s", kind, net);
}

/* A rejection of the client: answered now, or held for RCPT when
 * recipient exceptions exist (so they stay reachable). */
static void client_reject(struct filter_conn *c, struct filter_verdict *v, bool disconnect,
                          int code, const char *enhanced, const char *text)
{
    struct filter_lists *ls = filter_lists_peek(c->f);
    bool hold = ls->exceptions.n > 0;
    filter_lists_unref(ls);
    if (hold) {
        if (!c->held) {
            c->held = true;
            c->held_code = code;
            str_copy(c->held_enhanced, enhanced, sizeof(c->held_enhanced));
            str_copy(c->held_text, text, sizeof(c->held_text));
        }
        log_info(sid_of(c), "event=filter_hold ip=%s reason=\"%s\"", c->ip, text);
        return;
    }
    filter_verdict_set(v, FILTER_REJECT, code, enhanced, "%s", text);
    v->disconnect = disconnect;
}

static void log_verdict(const struct filter_conn *c, const char *stage,
                        const struct filter_verdict *v)
{
    if (v->action == FILTER_ACCEPT && v->n_rules == 0 && log_get_level() > LOG_DEBUG)
        return;
    char rules[512], q[600];
    size_t o = 0;
    rules[0] = '\0';
    for (int i = 0; i < v->n_rules && o + 1 < sizeof(rules); i++) {
        int n = snprintf(rules + o, sizeof(rules) - o, "%s%s=%.2f", i ? "," : "", v->rules[i].name,
                         v->rules[i].score);
        if (n < 0)
            break;
        o += (size_t)n;
    }
    static const char *const actions[] = { "accept", "tempfail", "reject" };
    enum log_level level = v->action == FILTER_ACCEPT && v->n_rules == 0 ? LOG_DEBUG : LOG_INFO;
    log_msg(level, sid_of(c), "event=filter stage=%s ip=%s action=%s code=%d score=%.2f rules=%s%s%s",
            stage, c->ip, actions[v->action], v->action == FILTER_ACCEPT ? 0 : v->code, v->score,
            rules[0] ? rules : "-", v->action == FILTER_ACCEPT ? "" : " reply=",
            v->action == FILTER_ACCEPT ? "" : log_quote(q, sizeof(q), v->text));
}

/* ---- DNS lists ---- */

struct dnsl_query {
    int list;                       /* index in cfg.dnsl */
    char what[DNS_NAME_MAX + 2];    /* the address or domain asked about */
};

struct dnsl_hit {
    const struct filter_dnsl_cfg *d;
    double weight;
    enum filter_mode mode;
    char rule[FILTER_RULE_NAME_MAX];
    char detail[80];
    char what[DNS_NAME_MAX + 2];
};

/* "DNSBL_" + NAME [+ "_" + CODE], upper case, [A-Z0-9_] only. */
static void dnsl_rule_name(const struct filter_dnsl_cfg *d, const char *code, char *buf,
                           size_t size)
{
    const char *prefix = d->kind == FILTER_DNSWL ? "DNSWL" : d->type == FILTER_DNSL_DOMAIN
                                                                 ? "RHSBL"
                                                                 : "DNSBL";
    snprintf(buf, size, "%s_%s%s%s", prefix, d->name, code && code[0] ? "_" : "",
             code ? code : "");
    for (char *p = buf; *p; p++)
        *p = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
}

/* Adds the lookups of one domain for the domain lists with check bit. */
static int dnsl_domain_reqs(const struct filter_config *fc, const char *domain, unsigned bit,
                            struct filter_lk_req *reqs, struct dnsl_query *qs, int n)
{
    char reg[DNS_NAME_MAX + 2];
    if (domain == NULL || domain[0] == '\0' || !filter_domain_syntax_ok(domain))
        return n;
    bool has_reg = filter_registrable_domain(domain, reg, sizeof(reg)) == 0 &&
                   strcasecmp(reg, domain) != 0;
    for (int i = 0; i < fc->n_dnsl && n + 2 <= DNSL_REQS_MAX; i++) {
        const struct filter_dnsl_cfg *d = &fc->dnsl[i];
        if (d->type != FILTER_DNSL_DOMAIN || !(d->checks & bit))
            continue;
        for (int k = 0; k < (has_reg ? 2 : 1); k++) {
            const char *what = k == 0 ? domain : reg;
            memset(&reqs[n], 0, sizeof(reqs[n]));
            if (filter_dnsl_domain_name(what, d->zone, reqs[n].name, sizeof(reqs[n].name)) < 0)
                continue;
            reqs[n].kind = FILTER_LK_A;
            reqs[n].timeout_ms = d->timeout_ms;
            qs[n].list = i;
            str_copy(qs[n].what, what, sizeof(qs[n].what));
            n++;
        }
    }
    return n;
}

/* Reads the answers of n list queries: at most one hit per list (its
 * strongest).  Returns the number of hits. */
static int dnsl_collect(const struct filter_conn *c, const struct filter_lk_req *reqs,
                        const struct dnsl_query *qs, int n, struct dnsl_hit *hits)
{
    const struct filter_config *fc = &c->f->cfg;
    int nh = 0;
    for (int i = 0; i < n; i++) {
        const struct filter_dnsl_cfg *d = &fc->dnsl[qs[i].list];
        if (reqs[i].timed_out || reqs[i].status == DNS_TEMPFAIL) {
            log_info(sid_of(c), "event=dnsl_%s list=%s query=%s", reqs[i].timed_out ? "timeout"
                                                                                   : "tempfail",
                     d->name, reqs[i].name);
            continue;
        }
        double w;
        enum filter_mode mode;
        const char *code;
        char detail[80];
        if (reqs[i].status != DNS_OK ||
            !filter_dnsl_interpret(d, (const uint8_t (*)[4])reqs[i].a, reqs[i].n_a, &w, &mode,
                                   &code, detail, sizeof(detail)))
            continue;
        int k = 0;
        while (k < nh && hits[k].d != d)
            k++;
        if (k < nh && !(mode == FILTER_MODE_REJECT && hits[k].mode != FILTER_MODE_REJECT) &&
            !(mode == hits[k].mode && w > hits[k].weight))
            continue;
        if (k == nh)
            nh++;
        hits[k].d = d;
        hits[k].weight = w;
        hits[k].mode = mode;
        dnsl_rule_name(d, code, hits[k].rule, sizeof(hits[k].rule));
        if (d->type == FILTER_DNSL_DOMAIN)
            snprintf(hits[k].detail, sizeof(hits[k].detail), "%.40s %.38s", qs[i].what, detail);
        else
            str_copy(hits[k].detail, detail, sizeof(hits[k].detail));
        str_copy(hits[k].what, qs[i].what, sizeof(hits[k].what));
    }
    return nh;
}

/* ---- connect ---- */

/* Applies IP list (DNSBL/DNSWL) answers: DNSWL first, since an accepting
 * DNSWL makes the client trusted and DNSBL rejections then do not apply. */
static void connect_dnsl(struct filter_conn *c, struct dnsl_hit *hits, int nh,
                         struct filter_verdict *v)
{
    for (int i = 0; i < nh; i++) {
        if (hits[i].d->kind != FILTER_DNSWL)
            continue;
        stage_hit(c->hits, &c->n_hits, FILTER_CONN_HITS, v, hits[i].rule, -hits[i].weight,
                  hits[i].detail);
        if (hits[i].mode == FILTER_MODE_ACCEPT && !c->trusted) {
            c->trusted = true;
            snprintf(c->trusted_by, sizeof(c->trusted_by), "dnswl %s", hits[i].d->name);
        }
    }
    for (int i = 0; i < nh; i++) {
        if (hits[i].d->kind != FILTER_DNSBL)
            continue;
        if (hits[i].mode == FILTER_MODE_REJECT && !c->trusted && v->action == FILTER_ACCEPT &&
            !c->held) {
            char text[256];
            snprintf(text, sizeof(text), "Service unavailable; client [%s] blocked using %.120s",
                     c->ip, hits[i].d->zone);
            client_reject(c, v, true, 554, "5.7.1", text);
        }
        stage_hit(c->hits, &c->n_hits, FILTER_CONN_HITS, v, hits[i].rule,
                  hits[i].mode == FILTER_MODE_REJECT ? 0 : hits[i].weight, hits[i].detail);
    }
}

static void connect_fcrdns(struct filter_conn *c, const struct filter_lk_req *r,
                           struct filter_verdict *v)
{
    const struct filter_check_cfg *cc = &c->f->cfg.fcrdns;
    if (r->fcrdns == FILTER_FCRDNS_PASS) {
        str_copy(c->ptr, r->ptr, sizeof(c->ptr));
        return;
    }
    if (r->fcrdns == FILTER_FCRDNS_TEMPFAIL || c->trusted)
        return;
    char detail[80];
    if (r->fcrdns == FILTER_FCRDNS_NOPTR)
        snprintf(detail, sizeof(detail), "no PTR");
    else
        snprintf(detail, sizeof(detail), "%.60s not confirmed", r->ptr);
    if (cc->mode == FILTER_MODE_REJECT && v->action == FILTER_ACCEPT) {
        char text[256];
        snprintf(text, sizeof(text), "Reverse DNS validation failed for [%s] (%s)", c->ip, detail);
        client_reject(c, v, true, 554, "5.7.25", text);   /* RFC 7372 */
        stage_hit(c->hits, &c->n_hits, FILTER_CONN_HITS, v, "FCRDNS_FAIL", 0, detail);
    } else {
        stage_hit(c->hits, &c->n_hits, FILTER_CONN_HITS, v, "FCRDNS_FAIL", cc->score, detail);
    }
}

/* The DNS lookups of connect: the IP lists and FCrDNS.  Returns their
 * count; *fcr_r is the index of the FCrDNS request, or -1. */
static int connect_reqs(const struct filter_conn *c, struct filter_lk_req *reqs,
                        struct dnsl_query *qs, int *fcr_r)
{
    const struct filter_config *fc = &c->f->cfg;
    int n = 0;
    *fcr_r = -1;
    for (int i = 0; i < fc->n_dnsl; i++) {
        const struct filter_dnsl_cfg *d = &fc->dnsl[i];
        if (d->type != FILTER_DNSL_IP)
            continue;
        memset(&reqs[n], 0, sizeof(reqs[n]));
        if (filter_dnsl_ip_name(c->ip, d->zone, reqs[n].name, sizeof(reqs[n].name)) < 0)
            continue;
        reqs[n].kind = FILTER_LK_A;
        reqs[n].timeout_ms = d->timeout_ms;
        qs[n].list = i;
        str_copy(qs[n].what, c->ip, sizeof(qs[n].what));
        n++;
    }
    if (fc->fcrdns.mode != FILTER_MODE_OFF) {
        *fcr_r = n;
        memset(&reqs[n], 0, sizeof(reqs[n]));
        reqs[n].kind = FILTER_LK_FCRDNS;
        reqs[n].ip = c->addr;
        reqs[n].timeout_ms = FILTER_LK_SLOW_MS;
        n++;
    }
    return n;
}

/* The DNS part of connect: IP lists and FCrDNS in one concurrent batch
 * (already answered from the cache when resolved). */
static void connect_dns(struct filter_conn *c, struct filter_lk_req *reqs,
                        const struct dnsl_query *qs, int n, int fcr, bool resolved,
                        struct filter_verdict *v)
{
    if (n == 0)
        return;
    if (!resolved)
        filter_lookup_run(c->f, reqs, n);
    struct dnsl_hit hits[DNSL_REQS_MAX];
    int nh = dnsl_collect(c, reqs, qs, fcr < 0 ? n : fcr, hits);
    connect_dnsl(c, hits, nh, v);
    if (fcr >= 0)
        connect_fcrdns(c, &reqs[fcr], v);
}

/* Is the client trusted by configuration (loopback, allow_ip)?  Says why
 * in by (NULL when not).  No I/O. */
static const char *connect_trusted_by(const struct filter_conn *c, const struct filter_lists *ls,
                                      char *by, size_t size)
{
    const struct filter_entry *e;
    if (c->f->cfg.allow_loopback && filter_ip_is_loopback(&c->addr)) {
        str_copy(by, "loopback", size);
        return by;
    }
    if ((e = filter_list_match_ip(&ls->allow_ip, &c->addr)) != NULL) {
        snprintf(by, size, "allow %.70s", e->text);
        return by;
    }
    return NULL;
}

/* The connect stage.  nowait: the DNS answers it needs come from the
 * cache, else it returns false before changing anything. */
static bool connect_stage(struct filter_conn *c, struct filter_verdict *v, bool nowait)
{
    struct filter *f = c->f;
    const struct filter_config *fc = &f->cfg;
    filter_verdict_init(v);
    if (!c->addr_ok)
        return true;
    struct filter_lists *ls = filter_lists_get(f);
    const struct filter_entry *e;
    char text[256], key[96], by[80];
    const char *trusted_by = connect_trusted_by(c, ls, by, sizeof(by));
    struct filter_lk_req reqs[DNSL_REQS_MAX];
    struct dnsl_query qs[DNSL_REQS_MAX];
    int fcr = -1, n = 0;
    if (trusted_by == NULL && c->mx) {
        n = connect_reqs(c, reqs, qs, &fcr);
        if (nowait && n > 0 && !filter_lookup_cached(f, reqs, n)) {
            filter_lists_unref(ls);
            return false;
        }
    }
    if (trusted_by != NULL) {
        c->trusted = true;
        str_copy(c->trusted_by, trusted_by, sizeof(c->trusted_by));
        log_debug(sid_of(c), "event=filter_trusted ip=%s by=\"%s\"", c->ip, c->trusted_by);
        goto out;
    }
    if ((e = filter_list_match_ip(&ls->block_ip, &c->addr)) != NULL) {
        snprintf(text, sizeof(text), "Access denied: client [%s] is block-listed", c->ip);
        client_reject(c, v, true, 554, "5.7.1", text);
        filter_verdict_hit(v, "BLOCK_IP", 0, e->text);
        goto out;
    }
    rate_key(c, 'a', key, sizeof(key));
    if (filter_rate_reached(f->rate, key, fc->auth_fail_per_hour, 3600, filter_now(f))) {
        filter_verdict_set(v, FILTER_TEMPFAIL, 421, "4.7.0",
                           "Too many failed authentications from [%s]; try again later", c->ip);
        v->disconnect = true;
        goto out;
    }
    rate_key(c, 'c', key, sizeof(key));
    if (!filter_rate_hit(f->rate, key, fc->conn_per_minute, 60, filter_now(f))) {
        filter_verdict_set(v, FILTER_TEMPFAIL, 421, "4.7.0",
                           "Too many connections from [%s]; slow down and try again later", c->ip);
        v->disconnect = true;
        goto out;
    }
    if (c->mx)
        connect_dns(c, reqs, qs, n, fcr, nowait, v);
out:
    filter_lists_unref(ls);
    log_verdict(c, "connect", v);
    return true;
}

void filter_connect(struct filter_conn *c, struct filter_verdict *v)
{
    connect_stage(c, v, false);
}

bool filter_connect_try(struct filter_conn *c, struct filter_verdict *v)
{
    return connect_stage(c, v, true);
}

/* ---- HELO ---- */

/* The first thing wrong with a HELO name, as a rule name and detail;
 * NULL when nothing is. *dns_r says whether its existence should be
 * checked in DNS. */
static const char *helo_syntax(const struct filter_conn *c, const char *helo, char *detail,
                               size_t size, bool *dns_r)
{
    struct filter *f = c->f;
    struct filter_ip ip;
    *dns_r = false;
    detail[0] = '\0';
    size_t len = strlen(helo);
    if (len >= 2 && helo[0] == '[' && helo[len - 1] == ']') {
        char lit[INET6_ADDRSTRLEN + 8];
        snprintf(lit, sizeof(lit), "%.*s", (int)(len - 2), helo + 1);
        const char *a = str_case_prefix(lit, "IPv6:") ? str_case_prefix(lit, "IPv6:") : lit;
        if (filter_ip_parse(a, &ip) < 0)
            return "HELO_INVALID";
        if (c->addr_ok && (ip.family != c->addr.family || memcmp(ip.addr, c->addr.addr, 16) != 0)) {
            snprintf(detail, size, "%.60s", helo);
            return "HELO_LITERAL_MISMATCH";
        }
        return NULL;
    }
    snprintf(detail, size, "%.60s", helo);
    if (filter_ip_parse(helo, &ip) == 0)
        return "HELO_BARE_IP";
    char h[SMTP_DOMAIN_MAX + 1];
    str_copy(h, helo, sizeof(h));
    str_lower(h);
    if (len > 0 && h[len - 1] == '.')
        h[len - 1] = '\0';
    if (!filter_domain_syntax_ok(h))
        return "HELO_INVALID";
    if (strchr(h, '.') == NULL)
        return "HELO_NOT_FQDN";
    if ((f->hostname[0] && strcmp(h, f->hostname) == 0) || filter_domain_is_local(f, h))
        return "HELO_FORGED_OURS";
    *dns_r = true;
    return NULL;
}

/* The HELO stage; nowait as for connect_stage. */
static bool helo_stage(struct filter_conn *c, const char *helo, struct filter_verdict *v,
                       bool nowait)
{
    const struct filter_config *fc = &c->f->cfg;
    filter_verdict_init(v);
    if (c->trusted || c->authenticated || !c->mx) {
        str_copy(c->helo, helo ? helo : "", sizeof(c->helo));
        c->n_helo_hits = 0;
        return true;
    }
    char name[sizeof(c->helo)];
    str_copy(name, helo ? helo : "", sizeof(name));
    char detail[80];
    bool dns = false;
    const char *bad = fc->helo.mode == FILTER_MODE_OFF
                          ? NULL
                          : helo_syntax(c, name, detail, sizeof(detail), &dns);
    struct filter_lk_req reqs[DNSL_REQS_MAX];
    struct dnsl_query qs[DNSL_REQS_MAX];
    char h[SMTP_DOMAIN_MAX + 1];
    str_copy(h, name, sizeof(h));
    str_lower(h);
    int n = dnsl_domain_reqs(fc, h, FILTER_CHECK_HELO, reqs, qs, 0);
    int exists = -1;
    if (dns && n < DNSL_REQS_MAX) {
        exists = n;
        memset(&reqs[n], 0, sizeof(reqs[n]));
        reqs[n].kind = FILTER_LK_EXISTS;
        str_copy(reqs[n].name, h, sizeof(reqs[n].name));
        reqs[n].timeout_ms = FILTER_LK_SLOW_MS;
        n++;
    }
    if (n > 0) {
        if (!nowait)
            filter_lookup_run(c->f, reqs, n);
        else if (!filter_lookup_cached(c->f, reqs, n))
            return false;
    }
    str_copy(c->helo, name, sizeof(c->helo));
    c->n_helo_hits = 0;
    if (exists >= 0 && reqs[exists].status == DNS_NXDOMAIN)
        bad = "HELO_UNKNOWN_NAME";
    if (bad != NULL) {
        if (fc->helo.mode == FILTER_MODE_REJECT) {
            char text[256];
            snprintf(text, sizeof(text), "<%.100s>: Helo command rejected: %s", c->helo, bad);
            client_reject(c, v, false, 550, "5.7.1", text);
            stage_hit(c->helo_hits, &c->n_helo_hits, FILTER_TX_HITS, v, bad, 0, detail);
        } else {
            stage_hit(c->helo_hits, &c->n_helo_hits, FILTER_TX_HITS, v, bad, fc->helo.score,
                      detail);
        }
    }
    struct dnsl_hit hits[DNSL_REQS_MAX];
    int nh = dnsl_collect(c, reqs, qs, exists >= 0 ? exists : n, hits);
    for (int i = 0; i < nh; i++) {
        bool reject = hits[i].mode == FILTER_MODE_REJECT;
        if (reject && v->action == FILTER_ACCEPT) {
            char text[256];
            snprintf(text, sizeof(text), "<%.100s>: Helo command rejected: listed by %.100s", c->helo,
                     hits[i].d->zone);
            client_reject(c, v, false, 550, "5.7.1", text);
        }
        stage_hit(c->helo_hits, &c->n_helo_hits, FILTER_TX_HITS, v, hits[i].rule,
                  reject ? 0 : hits[i].weight, hits[i].detail);
    }
    log_verdict(c, "helo", v);
    return true;
}

void filter_helo(struct filter_conn *c, const char *helo, struct filter_verdict *v)
{
    helo_stage(c, helo, v, false);
}

bool filter_helo_try(struct filter_conn *c, const char *helo, struct filter_verdict *v)
{
    return helo_stage(c, helo, v, true);
}

/* ---- postscreen events, AUTH ---- */

void filter_event(struct filter_conn *c, enum filter_event ev, struct filter_verdict *v)
{
    const struct filter_config *fc = &c->f->cfg;
    filter_verdict_init(v);
    bool *seen = ev == FILTER_EV_PREGREET ? &c->pregreet_seen : &c->pipelining_seen;
    const struct filter_check_cfg *cc = ev == FILTER_EV_PREGREET ? &fc->pregreet : &fc->pipelining;
    const char *name = ev == FILTER_EV_PREGREET ? "PREGREET" : "PIPELINING";
    if (*seen || c->trusted || c->authenticated || !c->mx || cc->mode == FILTER_MODE_OFF)
        return;
    *seen = true;
    if (cc->mode == FILTER_MODE_REJECT) {
        client_reject(c, v, true, 554, "5.7.1",
                      ev == FILTER_EV_PREGREET ? "Protocol error: talking before the greeting"
                                               : "Protocol error: pipelining without PIPELINING");
        stage_hit(c->hits, &c->n_hits, FILTER_CONN_HITS, v, name, 0, "");
    } else {
        stage_hit(c->hits, &c->n_hits, FILTER_CONN_HITS, v, name, cc->score, "");
    }
    log_verdict(c, ev == FILTER_EV_PREGREET ? "pregreet" : "pipelining", v);
}

void filter_auth(struct filter_conn *c, const char *user)
{
    c->authenticated = true;
    str_copy(c->user, user ? user : "", sizeof(c->user));
}

void filter_auth_failed(struct filter_conn *c, struct filter_verdict *v)
{
    struct filter *f = c->f;
    const struct filter_config *fc = &f->cfg;
    char key[96];
    filter_verdict_init(v);
    if (c->trusted)
        return;
    rate_key(c, 'a', key, sizeof(key));
    if (filter_rate_hit(f->rate, key, fc->auth_fail_per_hour, 3600, filter_now(f)) &&
        !filter_rate_reached(f->rate, key, fc->auth_fail_per_hour, 3600, filter_now(f)))
        return;
    filter_verdict_set(v, FILTER_TEMPFAIL, 421, "4.7.0",
                       "Too many failed authentications from [%s]; try again later", c->ip);
    v->disconnect = true;
    log_verdict(c, "auth", v);
}

unsigned filter_greet_wait_ms(const struct filter_conn *c)
{
    if (c->trusted || !c->mx || c->held)
        return 0;
    return (unsigned)c->f->cfg.greet_wait_ms;
}

/* ---- MAIL ---- */

static const char *sender_domain(const char *sender)
{
    const char *at = sender ? strrchr(sender, '@') : NULL;
    return at ? at + 1 : "";
}

/* Is the sender allow-listed?  Address and local-part entries always
 * count; domain entries need SPF pass for that domain when
 * allow_sender_spf is set. */
static bool sender_allowed(const struct filter_conn *c, const struct filter_lists *ls,
                           const char *spf_pass_domain)
{
    if (c->sender[0] == '\0')
        return false;
    if (filter_list_match_address(&ls->allow_sender, c->sender, false) != NULL)
        return true;
    const char *dom = sender_domain(c->sender);
    if (filter_list_match_domain(&ls->allow_sender, dom) == NULL)
        return false;
    return !c->f->cfg.allow_sender_spf ||
           (spf_pass_domain != NULL && strcasecmp(spf_pass_domain, dom) == 0);
}

bool filter_sender_wants_spf(struct filter_conn *c)
{
    if (c->trusted || c->authenticated || !c->mx || !c->f->cfg.allow_sender_spf ||
        c->sender[0] == '\0')
        return false;
    struct filter_lists *ls = filter_lists_peek(c->f);
    bool want = filter_list_match_address(&ls->allow_sender, c->sender, false) == NULL &&
                filter_list_match_domain(&ls->allow_sender, sender_domain(c->sender)) != NULL;
    filter_lists_unref(ls);
    return want;
}

/* The RHSBL lookups of MAIL (lists with check = sender).  Returns their
 * count. */
static int mail_rhsbl_reqs(const struct filter_conn *c, const char *sender,
                           struct filter_lk_req *reqs, struct dnsl_query *qs)
{
    char dom[SMTP_DOMAIN_MAX + 1];
    str_copy(dom, sender_domain(sender), sizeof(dom));
    str_lower(dom);
    return dnsl_domain_reqs(&c->f->cfg, dom, FILTER_CHECK_SENDER, reqs, qs, 0);
}

static void mail_rhsbl(struct filter_conn *c, struct filter_lk_req *reqs,
                       const struct dnsl_query *qs, int n, bool resolved, struct filter_verdict *v)
{
    if (n == 0)
        return;
    if (!resolved)
        filter_lookup_run(c->f, reqs, n);
    struct dnsl_hit hits[DNSL_REQS_MAX];
    int nh = dnsl_collect(c, reqs, qs, n, hits);
    struct filter_lists *ls = filter_lists_peek(c->f);
    bool allowed = sender_allowed(c, ls, NULL);
    bool hold = ls->exceptions.n > 0;
    filter_lists_unref(ls);
    for (int i = 0; i < nh; i++) {
        bool reject = hits[i].mode == FILTER_MODE_REJECT && !allowed;
        if (reject && v->action == FILTER_ACCEPT && !c->tx_held) {
            char text[256];
            snprintf(text, sizeof(text), "<%.100s>: Sender address rejected: domain listed by %.100s",
                     c->sender, hits[i].d->zone);
            if (hold) {
                c->tx_held = true;
                c->tx_held_code = 554;
                str_copy(c->tx_held_enhanced, "5.7.1", sizeof(c->tx_held_enhanced));
                str_copy(c->tx_held_text, text, sizeof(c->tx_held_text));
            } else {
                filter_verdict_set(v, FILTER_REJECT, 554, "5.7.1", "%s", text);
            }
        }
        stage_hit(c->tx_hits, &c->n_tx_hits, FILTER_TX_HITS, v, hits[i].rule,
                  reject ? 0 : hits[i].weight, hits[i].detail);
    }
}

/* The MAIL stage; nowait as for connect_stage. */
static bool mail_stage(struct filter_conn *c, const char *sender, struct filter_verdict *v,
                       bool nowait)
{
    struct filter *f = c->f;
    const struct filter_config *fc = &f->cfg;
    struct filter_lk_req reqs[DNSL_REQS_MAX];
    struct dnsl_query qs[DNSL_REQS_MAX];
    int n = 0;
    bool rhsbl = !c->trusted && !c->authenticated && c->mx;
    if (rhsbl) {
        n = mail_rhsbl_reqs(c, sender ? sender : "", reqs, qs);
        if (nowait && n > 0 && !filter_lookup_cached(f, reqs, n))
            return false;
    }
    filter_verdict_init(v);
    str_copy(c->sender, sender ? sender : "", sizeof(c->sender));
    c->tx_held = false;
    c->n_tx_hits = 0;
    if (c->trusted)
        return true;
    char key[ADDRESS_MAX + 8];
    if (c->authenticated) {
        snprintf(key, sizeof(key), "u:%s", c->user);
        str_lower(key);
        if (!filter_rate_hit(f->rate, key, fc->user_msgs_per_hour, 3600, filter_now(f)))
            filter_verdict_set(v, FILTER_TEMPFAIL, 451, "4.7.1",
                               "Too many messages from %s in the last hour; try again later",
                               c->user);
    } else {
        rate_key(c, 'm', key, sizeof(key));
        if (!filter_rate_hit(f->rate, key, fc->msgs_per_hour, 3600, filter_now(f)))
            filter_verdict_set(v, FILTER_TEMPFAIL, 451, "4.7.1",
                               "Too many messages from [%s] in the last hour; try again later",
                               c->ip);
    }
    if (v->action == FILTER_ACCEPT && rhsbl)
        mail_rhsbl(c, reqs, qs, n, nowait, v);
    log_verdict(c, "mail", v);
    return true;
}

void filter_mail(struct filter_conn *c, const char *sender, struct filter_verdict *v)
{
    mail_stage(c, sender, v, false);
}

bool filter_mail_try(struct filter_conn *c, const char *sender, struct filter_verdict *v)
{
    return mail_stage(c, sender, v, true);
}

/* ---- RCPT ---- */

/* The RCPT checks; nowait: false (v untouched, nothing written) when
 * greylisting would have to write. */
static bool rcpt_checks(struct filter_conn *c, const struct filter_lists *ls, const char *rcpt,
                        const char *spf_pass_domain, struct filter_verdict *v, bool nowait)
{
    const struct filter_config *fc = &c->f->cfg;
    if (c->held) {
        filter_verdict_set(v, FILTER_REJECT, c->held_code, c->held_enhanced, "%s", c->held_text);
        return true;
    }
    if (c->tx_held) {
        filter_verdict_set(v, FILTER_REJECT, c->tx_held_code, c->tx_held_enhanced, "%s",
                           c->tx_held_text);
        return true;
    }
    if (c->trusted || c->authenticated)
        return true;
    bool allowed = sender_allowed(c, ls, spf_pass_domain);
    const struct filter_entry *e;
    if (!allowed && c->sender[0] &&
        (e = filter_list_match_address(&ls->block_sender, c->sender, true)) != NULL) {
        filter_verdict_set(v, FILTER_REJECT, 554, "5.7.1",
                           "<%.200s>: Sender address rejected: Access denied", c->sender);
        filter_verdict_hit(v, "BLOCK_SENDER", 0, e->text);
        return true;
    }
    if (!c->mx || !fc->greylist_enabled || allowed || !c->addr_ok)
        return true;
    int retry;
    const char *why;
    int g = nowait ? filter_greylist_try(c->f, &c->addr, c->sender, rcpt, &retry, &why)
                   : filter_greylist_check(c->f, &c->addr, c->sender, rcpt, &retry, &why);
    if (g == -2 || (g < 0 && nowait))
        return false;           /* a write, or store trouble: the pool decides */
    if (g < 0) {
        log_warn(sid_of(c), "event=greylist_unavailable error=\"%s\" action=pass",
                 store_error_text());
    } else if (g == 1) {
        retry = retry > 0 ? retry : 1;
        filter_verdict_set(v, FILTER_TEMPFAIL, 451, "4.7.1",
                           "Greylisted, please try again in %d second%s (RFC 6647)", retry,
                           retry == 1 ? "" : "s");
        filter_verdict_hit(v, "GREYLIST", 0, why);
    } else {
        log_debug(sid_of(c), "event=greylist_pass rcpt=<%s> why=\"%s\"", rcpt, why);
    }
    return true;
}

/* The RCPT stage; nowait as for connect_stage. */
static bool rcpt_stage(struct filter_conn *c, const char *rcpt, const char *spf_pass_domain,
                       struct filter_verdict *v, bool nowait)
{
    filter_verdict_init(v);
    struct filter_lists *ls = filter_lists_get(c->f);
    const struct filter_entry *e = filter_list_match_address(&ls->exceptions, rcpt, true);
    bool done = true;
    if (e != NULL)
        log_info(sid_of(c), "event=filter_exception rcpt=<%s> entry=%s", rcpt, e->text);
    else
        done = rcpt_checks(c, ls, rcpt, spf_pass_domain, v, nowait);
    filter_lists_unref(ls);
    if (done)
        log_verdict(c, "rcpt", v);
    return done;
}

void filter_rcpt(struct filter_conn *c, const char *rcpt, const char *spf_pass_domain,
                 struct filter_verdict *v)
{
    rcpt_stage(c, rcpt, spf_pass_domain, v, false);
}

bool filter_rcpt_try(struct filter_conn *c, const char *rcpt, const char *spf_pass_domain,
                     struct filter_verdict *v)
{
    return rcpt_stage(c, rcpt, spf_pass_domain, v, true);
}

/* ---- end of DATA ---- */

/* RHSBL lists with check = from, for a From domain not asked at MAIL. */
/* 1 when a list rejects the From domain, 0 when not; -1 (nothing done)
 * when nowait and an answer is not in the cache. */
static int message_rhsbl(struct filter_conn *c, const char *from_domain,
                         struct filter_verdict *v, bool nowait)
{
    const struct filter_config *fc = &c->f->cfg;
    if (from_domain[0] == '\0' || strcasecmp(from_domain, sender_domain(c->sender)) == 0)
        return 0;
    struct filter_lk_req reqs[DNSL_REQS_MAX];
    struct dnsl_query qs[DNSL_REQS_MAX];
    int n = dnsl_domain_reqs(fc, from_domain, FILTER_CHECK_FROM, reqs, qs, 0);
    if (n == 0)
        return 0;
    if (nowait) {
        if (!filter_lookup_cached(c->f, reqs, n))
            return -1;
    } else {
        filter_lookup_run(c->f, reqs, n);
    }
    struct dnsl_hit hits[DNSL_REQS_MAX];
    int nh = dnsl_collect(c, reqs, qs, n, hits);
    bool reject = false;
    for (int i = 0; i < nh; i++) {
        bool rj = hits[i].mode == FILTER_MODE_REJECT;
        if (rj && !reject)
            filter_verdict_set(v, FILTER_REJECT, 550, "5.7.1",
                               "Message rejected: From domain listed by %s", hits[i].d->zone);
        reject |= rj;
        filter_verdict_hit(v, hits[i].rule, rj ? 0 : hits[i].weight, hits[i].detail);
    }
    return reject;
}

/* Rspamd's "greylist" action: greylist the message's triplets with our
 * own state, so a client that already waited (RCPT-stage greylisting or
 * an earlier attempt of this message) passes. */
static bool message_greylist(struct filter_conn *c, const struct filter_message *m)
{
    if (!c->addr_ok || c->f->store == NULL)
        return false;
    bool tempfail = false;
    for (size_t i = 0; i < m->n_rcpts; i++) {
        int retry;
        const char *why;
        if (filter_greylist_check(c->f, &c->addr, c->sender, m->rcpts[i], &retry, &why) == 1)
            tempfail = true;
    }
    return tempfail;
}

static void message_rspamd(struct filter_conn *c, const struct filter_message *m,
                           struct filter_verdict *v, bool *tempfail_r, bool *reject_r)
{
    const struct filter_config *fc = &c->f->cfg;
    struct filter_rspamd_req req = {
        .ip = c->ip, .helo = c->helo, .hostname = c->ptr[0] ? c->ptr : NULL,
        .sender = c->sender, .user = c->authenticated ? c->user : NULL,
        .queue_id = m->queue_id, .rcpts = m->rcpts, .n_rcpts = m->n_rcpts,
        .data = m->data, .len = m->len,
    };
    struct filter_rspamd_result r;
    char err[200];
    if (filter_rspamd_check(fc->rspamd_url, fc->rspamd_timeout_ms, &req, &r, err, sizeof(err)) < 0) {
        log_warn(sid_of(c), "event=rspamd_unavailable url=%s error=\"%s\" action=builtin_score",
                 fc->rspamd_url, err);
        return;
    }
    v->rspamd_used = true;
    v->rspamd_score = r.score;
    str_copy(v->rspamd_action, r.action, sizeof(v->rspamd_action));
    size_t o = 0;
    for (int i = 0; i < r.n_syms && o + 1 < sizeof(v->rspamd_symbols); i++) {
        int k = snprintf(v->rspamd_symbols + o, sizeof(v->rspamd_symbols) - o, "%s%s=%.2f",
                         i ? " " : "", r.syms[i].name, r.syms[i].score);
        if (k < 0 || (size_t)k >= sizeof(v->rspamd_symbols) - o) {
            v->rspamd_symbols[o] = '\0';
            break;
        }
        o += (size_t)k;
    }
    log_info(sid_of(c), "event=rspamd action=\"%s\" score=%.2f required=%.2f", r.action, r.score,
             r.required_score);
    if (strcasecmp(r.action, "reject") == 0) {
        *reject_r = true;
        filter_verdict_set(v, FILTER_REJECT, 550, "5.7.1", "%s",
                           r.message[0] ? r.message : "Message rejected as spam");
    } else if (strcasecmp(r.action, "soft reject") == 0) {
        *tempfail_r = true;
        filter_verdict_set(v, FILTER_TEMPFAIL, 451, "4.7.1", "%s",
                           r.message[0] ? r.message : "Try again later");
    } else if (strcasecmp(r.action, "greylist") == 0) {
        if (message_greylist(c, m)) {
            *tempfail_r = true;
            filter_verdict_set(v, FILTER_TEMPFAIL, 451, "4.7.1",
                               "Greylisted, please try again later (RFC 6647)");
        }
    } else if (strcasecmp(r.action, "add header") == 0) {
        v->spam = true;
    } else if (strcasecmp(r.action, "rewrite subject") == 0) {
        v->spam = true;
        if (r.subject[0]) {
            free(v->subject);
            v->subject = strdup(r.subject);
        }
    }
}

bool filter_message_needed(const struct filter_conn *c)
{
    return !c->trusted && !c->authenticated && c->mx;
}

/* The message stage; with nowait, false (v to be freed, nothing else
 * changed) when it would have to wait: Rspamd, or a DNS answer that is not
 * cached. */
static bool message_run(struct filter_conn *c, const struct filter_message *m,
                        struct filter_verdict *v, bool nowait)
{
    struct filter *f = c->f;
    const struct filter_config *fc = &f->cfg;
    filter_verdict_init(v);
    if (!filter_message_needed(c))
        return true;
    if (nowait && fc->rspamd_url[0])
        return false;
    v->scanned = true;
    for (int i = 0; i < c->n_hits; i++)
        filter_verdict_hit(v, c->hits[i].name, c->hits[i].score, c->hits[i].detail);
    for (int i = 0; i < c->n_helo_hits; i++)
        filter_verdict_hit(v, c->helo_hits[i].name, c->helo_hits[i].score, c->helo_hits[i].detail);
    for (int i = 0; i < c->n_tx_hits; i++)
        filter_verdict_hit(v, c->tx_hits[i].name, c->tx_hits[i].score, c->tx_hits[i].detail);
    filter_score_auth(fc, m->spf, m->dkim, m->dmarc, v);
    char from_domain[SMTP_DOMAIN_MAX + 1];
    filter_score_message(f, m->data, m->len, v, from_domain, sizeof(from_domain));
    int rhsbl = message_rhsbl(c, from_domain, v, nowait);
    if (rhsbl < 0)
        return false;
    bool reject = rhsbl > 0, tempfail = false;
    if (!reject && fc->rspamd_url[0])
        message_rspamd(c, m, v, &tempfail, &reject);

    struct filter_lists *ls = filter_lists_peek(f);
    const char *sd = sender_domain(c->sender);
    bool allowed = sender_allowed(c, ls, m->spf && strcasecmp(m->spf, "pass") == 0 ? sd : NULL);
    filter_lists_unref(ls);
    /* an allow-listed sender is scored and reported, never junked or
     * rejected for its score */
    if (!allowed && v->score >= fc->add_header_score)
        v->spam = true;
    if (!allowed && !reject && fc->reject_score > 0 && v->score >= fc->reject_score) {
        reject = true;
        filter_verdict_set(v, FILTER_REJECT, 550, "5.7.1", "Message rejected as spam (score %.1f)",
                           v->score);
    }
    v->headers = filter_spam_headers(fc, v);
    log_verdict(c, "message", v);
    return true;
}

void filter_message(struct filter_conn *c, const struct filter_message *m,
                    struct filter_verdict *v)
{
    message_run(c, m, v, false);
}

bool filter_message_try(struct filter_conn *c, const struct filter_message *m,
                        struct filter_verdict *v)
{
    return message_run(c, m, v, true);
}
