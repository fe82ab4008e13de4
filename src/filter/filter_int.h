/*
 * Inside the anti-spam engine: shared by the files of src/filter, the
 * filter CLI (src/cli/cli_filter.c: entry parsing for allow/block) and the
 * tests.  Protocol code uses filter.h only.
 */
#ifndef POSTEL_FILTER_INT_H
#define POSTEL_FILTER_INT_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/limits.h"
#include "filter/filter.h"

/* ---- addresses and lists (lists.c) ---- */

/* An IP address; IPv4-mapped IPv6 addresses are kept as IPv4. */
struct filter_ip {
    int family;             /* 4 or 6 */
    uint8_t addr[16];       /* 4 or 16 bytes used */
};

struct filter_cidr {
    int family;
    uint8_t addr[16];       /* host bits zero */
    int prefix;             /* 0..32 or 0..128 */
};

enum filter_entry_type {
    FILTER_E_CIDR,          /* 192.0.2.0/24, 2001:db8::/32, 192.0.2.1 */
    FILTER_E_ADDRESS,       /* user@example.org */
    FILTER_E_LOCALPART,     /* postmaster@ (any domain) */
    FILTER_E_DOMAIN,        /* example.org or @example.org */
    FILTER_E_SUBDOMAIN,     /* .example.org: every name below example.org */
};

/* One list entry in canonical form (lower case, CIDR with host bits zero). */
struct filter_entry {
    enum filter_entry_type type;
    struct filter_cidr cidr;        /* FILTER_E_CIDR */
    char text[ADDRESS_MAX];         /* canonical text ("192.0.2.0/24", "example.org") */
};

/* "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1".  0 or -1. */
int filter_ip_parse(const char *text, struct filter_ip *ip);
const char *filter_ip_format(const struct filter_ip *ip, char *buf, size_t size);
bool filter_ip_is_loopback(const struct filter_ip *ip);
/* "192.0.2.0/24", "2001:db8::/32", a bare address (full prefix).  Host bits
 * set is an error (err names the network meant).  0 or -1. */
int filter_cidr_parse(const char *text, struct filter_cidr *c, char *err, size_t errsize);
bool filter_cidr_match(const struct filter_cidr *c, const struct filter_ip *ip);
/* Any list entry; its type follows from its shape.  0 or -1 (err filled). */
int filter_entry_parse(const char *text, struct filter_entry *e, char *err, size_t errsize);
/* DNS name syntax: labels of letters, digits, '-', '_' or UTF-8, 1..63
 * octets, not starting or ending with '-', at most 253 in all, no
 * trailing dot, a top-level label that is not all digits. */
bool filter_domain_syntax_ok(const char *domain);

struct filter_list {
    struct filter_entry *v;
    size_t n, cap;
};
int filter_list_add(struct filter_list *l, const struct filter_entry *e);
/* Adds every entry of a comma-separated text; entries that do not parse
 * are skipped (the configuration checked them already).  0 or -1 (OOM). */
int filter_list_add_text(struct filter_list *l, const char *text);
void filter_list_free(struct filter_list *l);
/* The first CIDR entry containing ip, or NULL. */
const struct filter_entry *filter_list_match_ip(const struct filter_list *l,
                                                const struct filter_ip *ip);
/* The first address, local-part, domain or subdomain entry matching
 * address ("user@domain"; "" is the null sender and matches nothing), or
 * NULL.  With domains false only ADDRESS and LOCALPART entries count. */
const struct filter_entry *filter_list_match_address(const struct filter_list *l,
                                                     const char *address, bool domains);
/* Matches a bare domain against DOMAIN/SUBDOMAIN entries. */
const struct filter_entry *filter_list_match_domain(const struct filter_list *l,
                                                    const char *domain);

/* All lists, from the configuration and the store, as one snapshot. */
struct filter_lists {
    atomic_int refs;
    struct filter_list allow_ip, block_ip, allow_sender, block_sender, exceptions;
};
/* Builds a snapshot from fc and (when st is not NULL) the store's lists.
 * NULL when out of memory or the store cannot be read (*error_r). */
struct filter_lists *filter_lists_build(const struct filter_config *fc, struct store *st,
                                        const char **error_r);
void filter_lists_unref(struct filter_lists *l);

/* ---- the engine ---- */

struct filter_lookup;
struct filter_rate;

struct filter {
    struct filter_config cfg;
    struct store *store;
    struct dns_resolver *list_resolver;   /* DNS list queries (list timeouts) */
    struct dns_resolver *resolver;        /* the rest (FILTER_DNS_TIMEOUT_MS) */
    filter_dns_fn *query;
    void *query_arg;
    filter_clock_fn *clock;
    void *clock_arg;
    char hostname[HOSTNAME_MAX];
    char *local_domains;            /* lower-cased, comma-separated */

    pthread_mutex_t lists_lock;
    struct filter_lists *lists;     /* current snapshot (one reference held) */
    int64_t lists_gen;              /* store generation it was built from */
    time_t lists_checked;           /* when the generation was last read */

    struct filter_lookup *lookup;   /* DNS threads and cache (dnsbl.c) */
    struct filter_rate *rate;       /* ratelimit.c */
    atomic_llong greylist_cleaned;  /* last expiry sweep */
};

#define FILTER_CONN_HITS 16
#define FILTER_TX_HITS   8

struct filter_conn {
    struct filter *f;
    char sid[16];
    char ip[64];
    struct filter_ip addr;
    bool addr_ok;
    bool mx;
    bool trusted;                   /* allow_ip, loopback, DNSWL accept */
    char trusted_by[80];
    bool authenticated;
    char user[ADDRESS_MAX];
    char helo[SMTP_DOMAIN_MAX + 1];
    char ptr[DNS_NAME_MAX + 2];     /* confirmed reverse name, "" if none */
    bool pregreet_seen, pipelining_seen;

    /* a client rejection held for RCPT (recipient exceptions) */
    bool held;
    int held_code;
    char held_enhanced[12], held_text[256];

    struct filter_rule_hit hits[FILTER_CONN_HITS];     /* connect and postscreen events */
    int n_hits;
    struct filter_rule_hit helo_hits[FILTER_TX_HITS];  /* the last HELO/EHLO's */
    int n_helo_hits;

    /* the transaction (MAIL to end of DATA) */
    char sender[ADDRESS_MAX];
    bool tx_held;
    int tx_held_code;
    char tx_held_enhanced[12], tx_held_text[256];
    struct filter_rule_hit tx_hits[FILTER_TX_HITS];
    int n_tx_hits;
};

time_t filter_now(const struct filter *f);
/* The current list snapshot (a reference: release with filter_lists_unref),
 * rebuilt first when the store's lists changed (checked at most each
 * second; may read SQLite). */
struct filter_lists *filter_lists_get(struct filter *f);
/* The snapshot as it is, without asking the store (no I/O). */
struct filter_lists *filter_lists_peek(struct filter *f);
/* Is domain one of ours (configured domains or the store's)? */
bool filter_domain_is_local(struct filter *f, const char *domain);
/* One query through the test hook or the engine's resolvers; list: a DNS
 * list query (shorter timeout). */
enum dns_status filter_dns_query(struct filter *f, bool list, const char *name, uint16_t type,
                                 struct dns_result *res);
/* True once the engine is being freed (lookup threads stop early). */
bool filter_lookup_stopping(struct filter *f);

/* Verdict helpers (filter.c). */
void filter_verdict_set(struct filter_verdict *v, enum filter_action action, int code,
                        const char *enhanced, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Appends a rule hit (ignored when the array is full). */
void filter_hits_add(struct filter_rule_hit *hits, int *n, int max, const char *name,
                     double score, const char *detail);

/* ---- DNS lookups (dnsbl.c) ---- */

#define FILTER_LK_ADDRS_MAX 8
#define FILTER_LK_SLOW_MS   (FILTER_DNS_TIMEOUT_MS + 1000)  /* FCrDNS, HELO requests */

enum filter_lk_kind {
    FILTER_LK_A,            /* A records of name (DNS list answers) */
    FILTER_LK_FCRDNS,       /* PTR of ip, then A/AAAA of each name */
    FILTER_LK_EXISTS,       /* does name have A, AAAA or MX (HELO check) */
};

enum filter_fcrdns { FILTER_FCRDNS_PASS, FILTER_FCRDNS_NOPTR, FILTER_FCRDNS_MISMATCH,
                     FILTER_FCRDNS_TEMPFAIL };

/* One lookup of a concurrent batch. */
struct filter_lk_req {
    enum filter_lk_kind kind;
    char name[DNS_NAME_MAX + 2];
    struct filter_ip ip;
    unsigned timeout_ms;
    /* results */
    bool timed_out;                 /* no answer within timeout_ms */
    enum dns_status status;
    uint8_t a[FILTER_LK_ADDRS_MAX][4];
    int n_a;
    enum filter_fcrdns fcrdns;
    char ptr[DNS_NAME_MAX + 2];
};

struct filter_lookup *filter_lookup_new(void);
void filter_lookup_free(struct filter_lookup *lk);
/* Runs the requests concurrently and returns when each has its answer or
 * its timeout passed (timed_out set, status DNS_TEMPFAIL).  A-record
 * answers are cached for their TTL. */
void filter_lookup_run(struct filter *f, struct filter_lk_req *reqs, int n);
/* Answers every request from the cache, without I/O: true when all of
 * them were there (reqs filled as filter_lookup_run would), false when
 * any was not (reqs left without answers). */
bool filter_lookup_cached(struct filter *f, struct filter_lk_req *reqs, int n);
/* Cache statistics, for tests. */
void filter_lookup_stats(struct filter *f, unsigned long *hits_r, unsigned long *queries_r);

/* What one DNS list's answer means: fills *weight_r and *mode_r and the
 * matched code's name; false when no answer matched a code (or only
 * addresses outside 127.0.0.0/8, or 127.255.255.x error codes). */
bool filter_dnsl_interpret(const struct filter_dnsl_cfg *d, const uint8_t (*a)[4], int n,
                           double *weight_r, enum filter_mode *mode_r, const char **code_name_r,
                           char *detail, size_t detail_size);
/* The registrable domain ("mail.example.co.uk" -> "example.co.uk") into
 * buf, via the public suffix list.  0, or -1 when there is none. */
int filter_registrable_domain(const char *domain, char *buf, size_t size);

/* ---- greylisting (greylist.c) ---- */

struct filter_grey_entry {
    int64_t first_seen, last_seen;
    int64_t count;                  /* attempts seen */
    bool passed;
};

enum filter_grey_step {
    FILTER_GREY_NEW,        /* unknown triplet: remembered, 451 */
    FILTER_GREY_EARLY,      /* retried before min_delay: 451 */
    FILTER_GREY_RESTART,    /* retried after the window closed, or expired: 451 again */
    FILTER_GREY_PASS_FIRST, /* first retry inside the window: passes */
    FILTER_GREY_PASS,       /* known good triplet */
};

/* The state machine, without storage: given the stored entry (found) and
 * now, updates *e and says what happened; *write_r says whether *e must
 * be stored (a known good triplet is rewritten at most hourly). */
enum filter_grey_step filter_greylist_step(const struct filter_config *fc, bool found,
                                           struct filter_grey_entry *e, int64_t now,
                                           bool *write_r);
/* The client network of a triplet: "192.0.2.0/24", "2001:db8:1:2::/64". */
int filter_greylist_net(const struct filter_ip *ip, int v4_prefix, int v6_prefix, char *buf,
                        size_t size);
/* The sender of a triplet: lower case, BATV/SRS-style tags and digit runs
 * folded so per-message return paths still match ("<>" for ""). */
void filter_greylist_sender(const char *sender, char *buf, size_t size);
/* Full check against the store.  0 pass, 1 greylisted (*retry_r seconds
 * to wait), -1 store trouble (the caller lets the mail pass). */
int filter_greylist_check(struct filter *f, const struct filter_ip *ip, const char *sender,
                          const char *rcpt, int *retry_r, const char **why_r);
/* The same check when it needs no write: SQLite reads only (a known
 * triplet, a retry too early, an auto-allowed client).  As
 * filter_greylist_check, or -2 when the check would write (a new
 * triplet, a first pass, an hourly refresh, the expiry sweep): nothing
 * was changed and the caller runs filter_greylist_check instead. */
int filter_greylist_try(struct filter *f, const struct filter_ip *ip, const char *sender,
                        const char *rcpt, int *retry_r, const char **why_r);

/* ---- rate limits (ratelimit.c) ---- */

struct filter_rate *filter_rate_new(size_t max_keys);
void filter_rate_free(struct filter_rate *r);
/* Counts one event for key and says whether the rate over the last window
 * seconds (a sliding estimate over two fixed windows) is within limit. */
bool filter_rate_hit(struct filter_rate *r, const char *key, int limit, int window, time_t now);
/* Has key already reached limit events over the last window?  Counts
 * nothing. */
bool filter_rate_reached(struct filter_rate *r, const char *key, int limit, int window, time_t now);

/* ---- message scoring (score.c) ---- */

/* Header heuristics over the message; adds hits to v.  from_domain_r gets
 * the From address's domain ("" if none). */
void filter_score_message(struct filter *f, const char *data, size_t len,
                          struct filter_verdict *v, char *from_domain_r, size_t from_size);
/* SPF/DKIM/DMARC results as rules. */
void filter_score_auth(const struct filter_config *fc, const char *spf, const char *dkim,
                       const char *dmarc, struct filter_verdict *v);
/* X-Spam, X-Spam-Score, X-Spam-Report (folded, CRLF), malloc'ed. */
char *filter_spam_headers(const struct filter_config *fc, const struct filter_verdict *v);
/* Adds a hit to a verdict and its score. */
void filter_verdict_hit(struct filter_verdict *v, const char *name, double score,
                        const char *detail);

/* ---- Rspamd (rspamd.c) ---- */

struct filter_url {
    char host[HOSTNAME_MAX];
    int port;
    char path[256];                 /* "" when the URL has none */
};
/* "http://HOST[:PORT][/PATH]" (IPv6 in brackets).  0 or -1. */
int filter_url_parse(const char *url, struct filter_url *u);

#define FILTER_RSPAMD_SYMS_MAX 24

struct filter_rspamd_result {
    char action[24];                /* "no action", "greylist", "add header", ... */
    double score, required_score;
    char subject[512];              /* rewrite subject: the new subject */
    char message[200];              /* messages.smtp_message, sanitized */
    struct filter_rule_hit syms[FILTER_RSPAMD_SYMS_MAX];   /* highest scores first */
    int n_syms;
};

/* Parses a /checkv2 JSON reply.  0, or -1 when it is not one. */
int filter_rspamd_parse(const char *json, size_t len, struct filter_rspamd_result *r);

struct filter_rspamd_req {
    const char *ip, *helo, *hostname, *sender, *user, *queue_id;
    const char *const *rcpts;
    size_t n_rcpts;
    const char *data;
    size_t len;
};
/* Sends the message to url's /checkv2 and parses the reply, all within
 * timeout_ms.  0, or -1 with err filled (connection refused, timeout, bad
 * reply). */
int filter_rspamd_check(const char *url, uint64_t timeout_ms, const struct filter_rspamd_req *req,
                        struct filter_rspamd_result *r, char *err, size_t errsize);
/* Decodes an HTTP/1.1 response (status line, headers, a Content-Length,
 * chunked or until-close body; eof says the peer closed).  Returns the
 * status code and points *body_r and *body_len_r into resp (chunked bodies
 * are decoded in place), -1 when malformed, -2 when incomplete. */
int filter_http_response(char *resp, size_t len, bool eof, char **body_r, size_t *body_len_r);
#endif
