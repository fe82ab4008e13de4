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

static inline unsigned dns_timeout_ms(const struct dns_options *opt)
{
    return opt->timeout_ms ? opt->timeout_ms : DNS_DEFAULT_TIMEOUT_MS;
}
#endif
