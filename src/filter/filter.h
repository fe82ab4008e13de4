/*
 * The anti-spam engine: allow and block lists, greylisting, DNS lists
 * (DNSBL, DNSWL, RHSBL), postscreen-style connection checks, rate limits,
 * a built-in message score from header heuristics and authentication
 * results, and an optional Rspamd scan.  docs/antispam.md is the user's
 * view; this header is the SMTP session's.
 *
 * Threads.  One struct filter serves the whole process and may be used
 * from any thread.  The stage calls below (filter_connect, filter_helo,
 * filter_mail, filter_rcpt, filter_message) may block for DNS, SQLite or
 * Rspamd: run them on the thread pool, never on an event loop.  Their
 * time is bounded by the configured timeouts (DNS lists, Rspamd) and the
 * store's busy timeout.  filter_conn_new, filter_event, filter_auth and
 * filter_message_write do no I/O and may run on a loop.
 *
 * Each of the first four stages has a _try form for an event loop: it
 * runs the whole stage when nothing in it can block -- every DNS answer
 * it needs is in the engine's cache (DNS lists, FCrDNS, HELO existence,
 * kept for their TTL), greylisting needs only SQLite reads (a known
 * triplet, an early retry, an auto-allowed client), lists and rate
 * counters are in memory -- and returns true with v filled exactly as
 * the blocking call would fill it.  Otherwise it returns false having
 * changed nothing, and the caller runs the blocking call on the pool.
 *
 * A struct filter_conn belongs to one SMTP session and is used by one
 * thread at a time (the session hands it to the pool and waits for the
 * job before touching it again).
 *
 * Every stage fills a struct filter_verdict: an action with the SMTP reply
 * to send when it is not FILTER_ACCEPT.  Rejections of a client (block
 * list, DNSBL, postscreen checks) are answered at the stage where they are
 * found, except when recipient exceptions are configured: then they are
 * held and given at RCPT to every recipient that is not an exception, so
 * postmaster@ and abuse@ stay reachable.
 */
#ifndef POSTEL_FILTER_H
#define POSTEL_FILTER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "dns/dns.h"
#include "filter/filter_config.h"

struct store;
struct filter;
struct filter_conn;

enum filter_action {
    FILTER_ACCEPT = 0,   /* go on (the message may still be spam: see spam) */
    FILTER_TEMPFAIL,     /* 4xx: greylisting, rate limits, Rspamd soft reject */
    FILTER_REJECT,       /* 5xx */
};

#define FILTER_RULES_MAX   40
#define FILTER_RULE_NAME_MAX 48

/* One rule that fired, with what it added to the score. */
struct filter_rule_hit {
    char name[FILTER_RULE_NAME_MAX];   /* "DNSBL_ZEN_SBL", "MISSING_DATE", ... */
    double score;
    char detail[80];                   /* "127.0.0.2", "no PTR", ... ("" if none) */
};

struct filter_verdict {
    enum filter_action action;
    bool disconnect;        /* close the connection after the reply (421, connect rejects) */
    int code;               /* 250-less reply when action != ACCEPT: 451, 421, 550, 554 */
    char enhanced[12];      /* "4.7.1" */
    char text[256];         /* reply text without code (one line, printable ASCII) */

    /* Message stage (filter_message) only: */
    bool scanned;           /* false when the message was not scored (trusted client) */
    bool spam;              /* X-Spam: Yes: file local copies into Junk */
    double score;           /* built-in score */
    struct filter_rule_hit rules[FILTER_RULES_MAX];
    int n_rules;
    char *headers;          /* malloc'ed header lines to prepend (CRLF), or NULL */
    char *subject;          /* malloc'ed replacement Subject (Rspamd rewrite), or NULL */
    bool rspamd_used;       /* Rspamd answered */
    double rspamd_score;
    char rspamd_action[24];
    char rspamd_symbols[256];   /* "SYM=score ..." highest first, for the report */
};

void filter_verdict_init(struct filter_verdict *v);
/* Frees headers and subject; the verdict may be reused after init. */
void filter_verdict_free(struct filter_verdict *v);
/* The reply line without CRLF: "554 5.7.1 text".  Returns buf. */
const char *filter_verdict_reply(const struct filter_verdict *v, char *buf, size_t size);

/* How the engine asks DNS: dns_query()'s contract.  Tests plug in fakes. */
typedef enum dns_status filter_dns_fn(void *arg, const char *name, uint16_t type,
                                      struct dns_result *res);
/* The engine's clock (seconds since the epoch).  Tests plug in their own. */
typedef time_t filter_clock_fn(void *arg);

/* What the engine works with besides its configuration. */
struct filter_env {
    struct store *store;            /* greylist and list state; NULL: none kept */
    /* DNS: the engine makes resolvers of its own from these options (their
     * timeout is replaced: DNS list queries get the longest list timeout,
     * so no lookup outlives its list's patience by much, other queries
     * FILTER_DNS_TIMEOUT_MS).  NULL with query NULL: no DNS checks. */
    const struct dns_options *dns;
    filter_dns_fn *query;           /* overrides dns (tests) */
    void *query_arg;
    filter_clock_fn *clock;         /* NULL: time() */
    void *clock_arg;
    const char *hostname;           /* our name (HELO checks); NULL: none */
    const char *local_domains;      /* comma-separated, besides the store's domains */
};

#define FILTER_DNS_TIMEOUT_MS 3000   /* FCrDNS and HELO queries, each */

/* Creates the engine.  fc and the strings in env are copied.  NULL with
 * *error_r (static text) on failure.  Create it after any fork(); DNS
 * lookup threads start on first use.  Freeing waits for lookups still in
 * flight, at most one query timeout. */
struct filter *filter_new(const struct filter_config *fc, const struct filter_env *env,
                          const char **error_r);
/* Frees the engine.  Every filter_conn made from it must be freed first. */
void filter_free(struct filter *f);
const struct filter_config *filter_config_of(const struct filter *f);

/* ---- per connection ---- */

/* A session's filter state.  ip: the client address as text; mx: true for
 * the smtp (MX) listener, false for submission roles, where only lists and
 * rate limits apply and only to unauthenticated use.  sid: for log lines
 * (may be NULL).  Never fails (allocation failure is fatal). */
struct filter_conn *filter_conn_new(struct filter *f, const char *ip, bool mx, const char *sid);
void filter_conn_free(struct filter_conn *c);

/* Connection opened (before the banner): allow and block lists, connection
 * rate, DNSBL/DNSWL of the client address, forward-confirmed reverse DNS.
 * A reject here is "554 5.7.1 ..." with disconnect set (the session sends
 * it instead of the banner); 421 4.7.0 for the connection rate. */
void filter_connect(struct filter_conn *c, struct filter_verdict *v);

/* HELO/EHLO name: syntax, claims to be us, address literal of another
 * host, a name that does not resolve; RHSBL lists with check = helo. */
void filter_helo(struct filter_conn *c, const char *helo, struct filter_verdict *v);

/* The stages without blocking (see Threads above): true when done (v
 * filled, as by the call without _try), false when the stage needs the
 * pool (nothing changed, v undefined). */
bool filter_connect_try(struct filter_conn *c, struct filter_verdict *v);
bool filter_helo_try(struct filter_conn *c, const char *helo, struct filter_verdict *v);
bool filter_mail_try(struct filter_conn *c, const char *sender, struct filter_verdict *v);
bool filter_rcpt_try(struct filter_conn *c, const char *rcpt, const char *spf_pass_domain,
                     struct filter_verdict *v);

/* Observations the session makes itself (postscreen checks).  No I/O. */
enum filter_event {
    FILTER_EV_PREGREET,     /* the client talked before the final 220 line */
    FILTER_EV_PIPELINING,   /* commands pipelined without PIPELINING (after HELO,
                               or before the EHLO reply) */
};
void filter_event(struct filter_conn *c, enum filter_event ev, struct filter_verdict *v);

/* Successful AUTH: the rest of the session is the user's own mail
 * (no greylisting, no scoring; the per-user message rate applies). */
void filter_auth(struct filter_conn *c, const char *user);

/* A failed AUTH attempt: counted per client address.  When the count
 * reaches [ratelimit] auth_failures_per_hour, v is "421 4.7.0" with
 * disconnect set, and filter_connect refuses the address the same way
 * until its rate falls below the limit again.  No I/O. */
void filter_auth_failed(struct filter_conn *c, struct filter_verdict *v);

/* How long to hold the banner after filter_connect accepted ([postscreen]
 * greet_wait), so that a client that talks first shows itself (pregreet);
 * 0 for trusted clients and submission listeners.  No I/O. */
unsigned filter_greet_wait_ms(const struct filter_conn *c);

/* MAIL FROM (starts a transaction; sender "" for the null sender): message
 * rate per client and per user (451 4.7.1), RHSBL lists with check =
 * sender. */
void filter_mail(struct filter_conn *c, const char *sender, struct filter_verdict *v);

/* After filter_mail: is the sender's domain an allow_sender domain entry
 * that counts only with SPF pass (allow_sender_spf)?  Then the session
 * should run SPF for MAIL FROM before filter_rcpt and pass the domain
 * when it passed.  No I/O. */
bool filter_sender_wants_spf(struct filter_conn *c);

/* RCPT TO: held rejections, block lists, greylisting (451 4.7.1).
 * spf_pass_domain: the domain SPF gave "pass" for (MAIL FROM identity), or
 * NULL; with it, allow_sender domain entries apply (allow_sender_spf). */
void filter_rcpt(struct filter_conn *c, const char *rcpt, const char *spf_pass_domain,
                 struct filter_verdict *v);

/* The message at end of DATA/BDAT LAST. */
struct filter_message {
    const char *data;           /* the message as received (CRLF lines, unstuffed) */
    size_t len;
    const char *const *rcpts;   /* accepted recipients */
    size_t n_rcpts;
    const char *spf;            /* Authentication-Results words: "pass", "fail", "softfail", */
    const char *dkim;           /* "neutral", "none", "temperror", "permerror"; NULL = */
    const char *dmarc;          /* not checked */
    const char *queue_id;       /* for Rspamd and logs; may be NULL */
};

/* Will filter_message() scan this session's messages?  False for trusted
 * clients, authenticated users and submission listeners: the session may
 * then stream DATA to the store as it comes instead of holding it for the
 * scan.  No I/O. */
bool filter_message_needed(const struct filter_conn *c);

/* Scores the message: the connection's and transaction's rules, header
 * heuristics, authentication results, RHSBL on the From domain, Rspamd.
 * Fills v: action (REJECT 550 5.7.1 at reject_score or on Rspamd's
 * reject; TEMPFAIL 451 4.7.1 on Rspamd's soft reject or greylist), spam,
 * score, rules, and headers (X-Spam, X-Spam-Score, X-Spam-Report) when
 * the message was scanned.  Free v with filter_verdict_free(). */
void filter_message(struct filter_conn *c, const struct filter_message *m,
                    struct filter_verdict *v);
/* filter_message() when it needs no waiting (no Rspamd, every DNS answer
 * cached); false otherwise, with v to be freed and nothing else changed. */
bool filter_message_try(struct filter_conn *c, const struct filter_message *m,
                        struct filter_verdict *v);

/* Writes the message as it should be stored: v->headers first, then the
 * message with any X-Spam* header fields of its own removed and, when
 * v->subject is set, Subject replaced.  write() returns 0 or -1; so does
 * this. */
int filter_message_write(const struct filter_verdict *v, const char *data, size_t len,
                         int (*write)(void *arg, const void *buf, size_t n), void *arg);

/* ---- small pieces shared with the CLI and the tests ---- */

/* DNS list query names: "4.3.2.1.zone" (IPv4 reversed octets), 32 reversed
 * nibbles for IPv6, "domain.zone" for domains.  0 or -1 (bad input, or
 * longer than a DNS name may be). */
int filter_dnsl_ip_name(const char *ip, const char *zone, char *buf, size_t size);
int filter_dnsl_domain_name(const char *domain, const char *zone, char *buf, size_t size);
#endif
