/*
 * DNS resolver on libunbound.
 *
 * Two faces over the same result types:
 *   - dns_resolver: synchronous, thread-safe lookups for worker threads
 *     (SPF, DKIM, DMARC, the CLI).  One resolver is shared by all threads;
 *     each call blocks its caller until an answer or the per-query deadline.
 *   - dns_async: one per event loop, answers delivered as callbacks on that
 *     loop's thread (the outbound queue).  Never blocks the loop.
 *
 * Names passed in are plain text as mail uses them: labels separated by
 * '.', an optional trailing '.', every other byte literal (a space or a ':'
 * is part of a label, as SPF macro expansion can produce).  Names handed
 * back (MX, PTR, CNAME targets) are in the same form, without trailing dot;
 * the root is "".
 *
 * Status codes: DNS_OK with at least one record of the asked type,
 * DNS_NXDOMAIN (the name does not exist), DNS_NODATA (it exists without
 * records of that type), DNS_TEMPFAIL (SERVFAIL, timeout, any other RCODE,
 * resolver trouble: try again later), DNS_BADNAME (the name cannot be put
 * in a query: an empty or over-long label, over 253 octets; nothing was
 * sent).
 */
#ifndef POSTEL_DNS_H
#define POSTEL_DNS_H
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct event_base;

#define DNS_NAME_MAX        253      /* text form without the trailing dot */
#define DNS_LABEL_MAX       63
#define DNS_DEFAULT_TIMEOUT_MS 5000
#define DNS_MAX_RECORDS     256      /* records kept from one answer */

enum dns_status {
    DNS_OK = 0,
    DNS_NXDOMAIN,
    DNS_NODATA,
    DNS_TEMPFAIL,
    DNS_BADNAME,
};

enum dns_type {
    DNS_T_A = 1,
    DNS_T_NS = 2,
    DNS_T_CNAME = 5,
    DNS_T_SOA = 6,
    DNS_T_PTR = 12,
    DNS_T_MX = 15,
    DNS_T_TXT = 16,
    DNS_T_AAAA = 28,
    DNS_T_SRV = 33,
    DNS_T_TLSA = 52,
};

/* An IPv4 or IPv6 address. */
struct dns_addr {
    int family;                   /* AF_INET or AF_INET6 */
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } u;
};

/* One record of an answer.  Which fields are set depends on type:
 *   A, AAAA          addr
 *   MX               pref, name (target; "" for the root, as in Null MX)
 *   PTR, CNAME, NS   name
 *   TXT              text/text_len: the record's strings concatenated with
 *                    nothing between them (RFC 7208 3.3); text_len counts
 *                    every byte (a string may hold NULs), text is
 *                    NUL-terminated after them
 *   every type       rdata/rdlen: the raw RDATA */
struct dns_rr {
    uint16_t type;
    uint16_t pref;
    struct dns_addr addr;
    char *name;
    char *text;
    size_t text_len;
    unsigned char *rdata;
    size_t rdlen;
};

struct dns_result {
    enum dns_status status;
    int rcode;                    /* DNS RCODE as answered, -1 if none */
    bool secure;                  /* DNSSEC validated (dnssec = yes only) */
    bool bogus;                   /* validation failed (data kept, see dns.c) */
    uint32_t ttl;
    char canon[DNS_NAME_MAX + 2]; /* name after CNAMEs ("" when unknown) */
    char why[160];                /* human text for anything not DNS_OK */
    size_t n;
    struct dns_rr *rr;
};

struct dns_options {
    char nameserver[300];         /* "host:port", "[v6]:port", "" = resolv.conf */
    bool dnssec;
    char trust_anchor[1024];      /* "" = /usr/share/dns/root.key if present */
    unsigned timeout_ms;          /* per query; 0 = DNS_DEFAULT_TIMEOUT_MS */
};

const char *dns_status_name(enum dns_status st);

/* Fills opt from [dns] (nameserver, dnssec) with the default timeout. */
void dns_options_from_config(struct dns_options *opt, const struct config *cfg);

/* Frees what a result owns and leaves it empty (safe on an empty result). */
void dns_result_free(struct dns_result *res);

/* ---- synchronous, thread-safe ---- */

struct dns_resolver;

/* Creates a resolver (a libunbound context with one background thread and
 * one dispatcher thread).  NULL with *error_r set (static text) on failure.
 * Create it after any fork(). */
/* dns_query() when the answer is in the resolver's cache (or the name
 * cannot be asked): true with res filled; false, res untouched, when it
 * would have to ask.  Never blocks. */
bool dns_query_cached(struct dns_resolver *r, const char *name, uint16_t type, struct dns_result *res);
/* How often dns_query() was answered from the resolver's own cache. */
void dns_resolver_cache_stats(struct dns_resolver *r, uint64_t *hits, uint64_t *misses);
struct dns_resolver *dns_resolver_new(const struct dns_options *opt, const char **error_r);
void dns_resolver_free(struct dns_resolver *r);

/* Asks for (name, type).  Blocks at most the resolver's timeout.  Fills res
 * (always; free it with dns_result_free) and returns res->status.
 * Thread-safe: any number of threads may query one resolver at once. */
enum dns_status dns_query(struct dns_resolver *r, const char *name, uint16_t type,
                          struct dns_result *res);

/* A or AAAA records of name, as a flat address list.  family is AF_INET,
 * AF_INET6 or AF_UNSPEC (both: DNS_OK if either has data; DNS_TEMPFAIL if
 * either failed and the other gave nothing).  *addrs_r is malloc'ed (free()),
 * NULL when *n_r is 0. */
enum dns_status dns_lookup_addrs(struct dns_resolver *r, const char *name, int family,
                                 struct dns_addr **addrs_r, size_t *n_r, char *why, size_t why_size);

/* MX hosts of a domain, sorted by preference with a random order among
 * equal preferences (RFC 5321 5.1).  null_mx is set for a Null MX (RFC 7505:
 * the single record "0 ."), in which case n is 0.  No implicit MX here. */
struct dns_mx {
    uint16_t pref;
    char host[DNS_NAME_MAX + 2];
};
struct dns_mx_list {
    size_t n;
    struct dns_mx *mx;            /* malloc'ed, free with dns_mx_list_free */
    bool null_mx;
    bool implicit;                /* set by dns_mail_hosts() only */
    bool secure;
    char why[160];
};
enum dns_status dns_lookup_mx(struct dns_resolver *r, const char *domain, struct dns_mx_list *out);
void dns_mx_list_free(struct dns_mx_list *l);

/* The hosts to deliver to for a domain (the queue's view, RFC 5321 5.1):
 * the MX list; with no MX records (NODATA) the domain itself as an implicit
 * MX of preference 0 when it has an A or AAAA record (implicit set);
 * DNS_NODATA when it has neither.  A Null MX gives DNS_OK with null_mx set:
 * the caller bounces at once (RFC 7505 4.1, 556 5.1.10). */
enum dns_status dns_mail_hosts(struct dns_resolver *r, const char *domain, struct dns_mx_list *out);

/* Sorts an MX array by preference, shuffling equal preferences. */
void dns_mx_sort(struct dns_mx *mx, size_t n);

/* PTR names of an address (the reverse name is built here). */
enum dns_status dns_lookup_ptr(struct dns_resolver *r, const struct dns_addr *addr,
                               struct dns_result *res);

/* ---- helpers (no I/O) ---- */

/* "1.2.3.4" or an IPv6 text (IPv4-mapped kept as IPv6).  0 or -1. */
int dns_addr_parse(const char *text, struct dns_addr *out);
/* Writes the text form ("1.2.3.4", "2001:db8::1"); returns buf. */
const char *dns_addr_format(const struct dns_addr *a, char *buf, size_t size);
/* "4.3.2.1.in-addr.arpa" / nibbles ".ip6.arpa" (lower-case).  0 or -1. */
int dns_reverse_name(const struct dns_addr *a, char *buf, size_t size);
/* Checks a text name (as described above) can be queried: every label 1..63
 * octets, at most 253 in all, a trailing dot allowed.  "" and "." are the
 * root (valid).  true when valid. */
bool dns_name_valid(const char *name);
/* Text name -> libunbound presentation form (\DDD escapes for every octet
 * outside [A-Za-z0-9_-]).  0, or -1 when invalid or buf too small. */
int dns_name_escape(const char *name, char *buf, size_t size);
/* Decodes a wire-format name at rdata[*off] (no compression) into text
 * without trailing dot.  Fails (-1) on a label holding '.' or a NUL, which
 * the text form cannot carry.  Advances *off. */
int dns_name_from_wire(const unsigned char *rdata, size_t rdlen, size_t *off, char *buf, size_t size);
/* Fills res from a raw RDATA list (what libunbound returns); shared with the
 * unit tests.  Returns res->status. */
enum dns_status dns_result_from_rdata(struct dns_result *res, uint16_t type, int rcode, bool nxdomain,
                                      const unsigned char *const *data, const int *len);

/* ---- asynchronous, on a libevent loop ---- */

struct dns_async;
struct dns_async_query;

/* Called on the loop thread with the result (valid during the call only).
 * Not called for a cancelled query. */
typedef void dns_async_cb(void *arg, const struct dns_result *res);

/* One per event base; its own libunbound context whose descriptor is
 * watched by the loop.  NULL with *error_r on failure. */
struct dns_async *dns_async_new(struct event_base *base, const struct dns_options *opt,
                                const char **error_r);
/* Cancels every pending query (their callbacks are not called) and frees. */
void dns_async_free(struct dns_async *a);
/* Starts a query; cb runs later on the loop (never from inside this call),
 * with DNS_TEMPFAIL at the deadline.  Returns a handle valid until cb runs
 * or until dns_async_cancel, or NULL on a start failure (cb not called). */
struct dns_async_query *dns_async_query(struct dns_async *a, const char *name, uint16_t type,
                                        dns_async_cb *cb, void *arg);
/* Cancels a pending query: its callback will not run. */
void dns_async_cancel(struct dns_async_query *q);
#endif
