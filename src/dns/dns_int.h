/*
 * Internal to src/dns: the libunbound context setup and result conversion
 * shared by the synchronous resolver and the loop-bound one.
 */
#ifndef POSTEL_DNS_INT_H
#define POSTEL_DNS_INT_H
#include "dns/dns.h"

struct ub_ctx;
struct ub_result;

/* A configured context (forwarder or resolv.conf, DNSSEC, threaded async
 * mode).  NULL with *error_r (static text) on failure. */
struct ub_ctx *dns_ub_ctx_new(const struct dns_options *opt, const char **error_r);

/* Converts libunbound's answer (err from the callback, ub may be NULL) into
 * res; frees nothing.  Returns res->status. */
enum dns_status dns_result_from_ub(struct dns_result *res, uint16_t type, int err,
                                   struct ub_result *ub);

/* Marks res as failed with status st and a reason (printf-style). */
void dns_result_fail(struct dns_result *res, enum dns_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- answer cache (dns_cache.c), thread-safe ---- */

#define DNS_CACHE_TTL_MAX     3600u   /* seconds an answer is kept at most */
#define DNS_CACHE_ENTRIES     8192u

struct dns_cache;

/* What a lookup answered, as libunbound gave it. */
struct dns_cache_answer {
    int rcode;
    bool nxdomain, secure, bogus;
    uint32_t ttl;
    const char *canon;                /* NULL or the name after CNAMEs */
    const unsigned char *const *data; /* NULL-terminated RDATA list */
    const int *len;
};

struct dns_cache *dns_cache_new(size_t max_entries);
void dns_cache_free(struct dns_cache *c);
/* True and res filled (the caller frees it) when (name, type) has a live
 * answer; false otherwise.  c may be NULL (never a hit). */
bool dns_cache_get(struct dns_cache *c, const char *name, uint16_t type, uint64_t now_ms,
                   struct dns_result *res);
/* Keeps an answer for its TTL (capped); answers that are not NOERROR or
 * NXDOMAIN, or with TTL 0, are not kept. */
void dns_cache_put(struct dns_cache *c, const char *name, uint16_t type, uint64_t now_ms,
                   const struct dns_cache_answer *a);
void dns_cache_stats(struct dns_cache *c, uint64_t *hits, uint64_t *misses, size_t *entries);

static inline unsigned dns_timeout_ms(const struct dns_options *opt)
{
    return opt->timeout_ms ? opt->timeout_ms : DNS_DEFAULT_TIMEOUT_MS;
}
#endif
