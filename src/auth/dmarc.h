/*
 * DMARC (RFC 7489) with the np tag of DMARCbis (RFC 9091 / draft-ietf-
 * dmarc-dmarcbis): the RFC5322.From domain, policy record discovery at that
 * domain and then at its Organizational Domain (the public suffix list of
 * libpsl), identifier alignment (relaxed or strict) of SPF and DKIM, and the
 * choice of policy (p, sp, np) with pct sampling.
 *
 * Also here: the aggregate reports (dmarc_report.c): per-message results
 * kept in the store, daily reports built per policy domain (the XML of RFC
 * 7489 appendix C, gzipped, in an RFC 5322 message named per 7.2.1.1) and
 * handed to the caller for the outbound queue.
 *
 * Everything is synchronous and keeps no global state: run it on a worker
 * thread, never on an event loop.  DNS is reached through struct dmarc_dns
 * only, so tests answer from memory.
 */
#ifndef POSTEL_DMARC_H
#define POSTEL_DMARC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "auth/dkim.h"
#include "auth/spf.h"
#include "dns/dns.h"

#define DMARC_URI_MAX      8        /* rua / ruf URIs kept from a record */
#define DMARC_RECORD_MAX   4096     /* longer TXT records are not DMARC records */
#define DMARC_TXT_MAX      16       /* TXT records looked at under _dmarc.NAME */
#define DMARC_FROM_MAX     8        /* distinct From domains evaluated */
#define DMARC_FROM_FIELDS  16       /* From fields looked at */

enum dmarc_result {
    DMARC_RESULT_NONE,            /* no policy record, or no usable From */
    DMARC_RESULT_PASS,
    DMARC_RESULT_FAIL,
    DMARC_RESULT_TEMPERROR,       /* a DNS lookup failed temporarily */
    DMARC_RESULT_PERMERROR,       /* broken record, broken From field */
};

enum dmarc_policy { DMARC_POLICY_NONE, DMARC_POLICY_QUARANTINE, DMARC_POLICY_REJECT };
enum dmarc_align { DMARC_ALIGN_RELAXED, DMARC_ALIGN_STRICT };

const char *dmarc_result_name(enum dmarc_result r);
const char *dmarc_policy_name(enum dmarc_policy p);

/* ---- records (RFC 7489 6.3, 6.4) ---- */

struct dmarc_uri {
    char addr[320];               /* mailto address, %-escapes decoded */
    uint64_t max_size;            /* "!10m": bytes; 0 = no limit */
};

struct dmarc_record {
    enum dmarc_policy p, sp, np;
    bool p_valid;                 /* false: p missing/bad, taken as none (6.6.3 step 6) */
    bool sp_set, np_set;          /* sp / np given (else sp = p, np = sp) */
    unsigned pct;                 /* 0..100, default 100 */
    enum dmarc_align adkim, aspf; /* default relaxed */
    struct dmarc_uri rua[DMARC_URI_MAX];
    int n_rua;
    struct dmarc_uri ruf[DMARC_URI_MAX];
    int n_ruf;
    char fo[16];                  /* default "0" */
    uint32_t ri;                  /* default 86400 */
    char rf[32];                  /* default "afrf" */
};

/* Parses a TXT record (len bytes, any byte).  Tag names and the keyword
 * values are case-insensitive; the version must be exactly "DMARC1" and
 * the first tag.  Unknown tags are ignored; a bad pct, adkim, aspf, fo, ri,
 * rf or np falls back to its default, bad URIs are dropped (6.3).  A
 * missing or bad p, or a bad sp, makes the record unusable unless rua holds
 * a valid URI, in which case p=none is used (6.6.3 step 6).
 * Returns 0 (rec filled), 1 (not a DMARC record: no "v=DMARC1" first; to be
 * discarded during discovery), or -1 (a DMARC record that cannot be used;
 * err says why). */
int dmarc_record_parse(const char *text, size_t len, struct dmarc_record *rec, char *err,
                       size_t err_size);

/* The policy in "v=DMARC1; p=...; ..." form (the tags that differ from the
 * defaults, plus p).  Returns buf. */
const char *dmarc_record_format(const struct dmarc_record *rec, char *buf, size_t size);

/* ---- DNS ---- */

/* How DMARC asks DNS; query has dns_query()'s contract (fill res, freed by
 * the caller with dns_result_free, return res->status). */
struct dmarc_dns {
    enum dns_status (*query)(void *arg, const char *name, uint16_t type, struct dns_result *res);
    void *arg;
};
void dmarc_dns_use_resolver(struct dmarc_dns *d, struct dns_resolver *r);

enum dmarc_lookup {
    DMARC_LOOKUP_FOUND,           /* one DMARC record, parsed into rec */
    DMARC_LOOKUP_NONE,            /* no DMARC record (NXDOMAIN, NODATA, only other TXT) */
    DMARC_LOOKUP_MULTIPLE,        /* more than one: no DMARC processing (6.6.3 step 5) */
    DMARC_LOOKUP_INVALID,         /* one record, unusable (why says why) */
    DMARC_LOOKUP_TEMPFAIL,
};

/* TXT lookup at _dmarc.DOMAIN (no Organizational Domain fallback). */
enum dmarc_lookup dmarc_lookup_at(const struct dmarc_dns *dns, const char *domain,
                                  struct dmarc_record *rec, char *why, size_t why_size);

/* ---- domains ---- */

/* The Organizational Domain of domain (RFC 7489 3.2) from libpsl's built-in
 * list: the registrable domain, or the domain itself when it is a public
 * suffix.  Lower-cased, trailing dot removed.  0, or -1 (bad input). */
int dmarc_org_domain(const char *domain, char *out, size_t size);
/* Identifier alignment (RFC 7489 3.1): strict = equal (ignoring case and a
 * trailing dot); relaxed = equal Organizational Domains. */
bool dmarc_aligned(const char *a, const char *b, enum dmarc_align mode);

enum dmarc_from_status {
    DMARC_FROM_OK,                /* 1..max distinct domains */
    DMARC_FROM_MISSING,           /* no From field */
    DMARC_FROM_BAD,               /* a From field that is not a clean address list */
    DMARC_FROM_TOO_MANY,          /* more than max distinct domains (or From fields) */
};
/* The RFC5322.From domains (RFC 7489 6.6.1): every address of every From
 * field (up to DMARC_FROM_FIELDS), lower-cased, IDNs as A-labels,
 * duplicates merged, in order of appearance; up to max in domains, *n_r
 * of them.  One From with one address is the normal case.  Several
 * domains are all evaluated by the caller and the strictest outcome
 * applies (6.6.1).  With BAD and TOO_MANY the domains that could be read
 * are still returned: their policies should apply to a message whose From
 * a reader may see them in.  The address parser is lenient (it recovers
 * as IMAP needs); BAD also covers an address whose domain is not followed
 * by the end of the address in the raw field ("a@exa mple.org"). */
enum dmarc_from_status dmarc_from_domains(const char *msg, size_t len,
                                          char domains[][DNS_NAME_MAX + 2], int max, int *n_r);

/* ---- evaluation (RFC 7489 6.6) ---- */

struct dmarc_request {
    const char *from_domain;      /* one RFC5322.From domain (dmarc_from_domains) */
    bool spf_done;                /* false: SPF not evaluated (no client IP) */
    enum spf_result spf;
    const char *spf_domain;       /* the domain SPF checked (MAIL FROM, or HELO for <>) */
    const struct dkim_verdict *dkim;
    int n_dkim;
    /* pct sampling draw, 0..99 (a message is sampled when draw < pct);
     * NULL = the kernel's CSPRNG.  Injectable for tests. */
    unsigned (*rand_pct)(void *arg);
    void *rand_arg;
};

struct dmarc_eval {
    enum dmarc_result result;
    char from_domain[DNS_NAME_MAX + 2];
    char org_domain[DNS_NAME_MAX + 2];
    bool have_record;             /* a usable record was found (rec valid) */
    char record_domain[DNS_NAME_MAX + 2]; /* where: from_domain or org_domain */
    struct dmarc_record rec;
    const char *policy_tag;       /* "p", "sp" or "np": which one applies */
    enum dmarc_policy policy;     /* what that tag asks for */
    enum dmarc_policy disposition;/* applied: policy on fail, lowered one step
                                     when pct sampled it out; none otherwise */
    bool sampled_out;
    bool nonexistent;             /* From domain has no A, AAAA or MX (np) */
    bool spf_aligned, dkim_aligned; /* an aligned pass of each */
    char dkim_domain[256];        /* d= of the first aligned passing signature */
    char why[600];                /* for none/temperror/permerror */
};

/* Evaluates one From domain.  Fills ev and returns ev->result.
 * Result: pass when SPF passed for an aligned domain or any DKIM signature
 * passed with an aligned d=; else temperror when the record lookup failed
 * temporarily, or when nothing passed but an aligned SPF or DKIM check
 * itself failed temporarily (no policy is applied on a transient error);
 * else fail.  Policy: p at the From domain's own record; at the
 * Organizational Domain's, np when set and the From domain does not exist
 * (NXDOMAIN, or no A, AAAA and MX), else sp, else p. */
enum dmarc_result dmarc_evaluate(const struct dmarc_dns *dns, const struct dmarc_request *req,
                                 struct dmarc_eval *ev);

/* ---- aggregate reports (dmarc_report.c) ---- */

struct store;

/* What one evaluated message adds to the aggregate data. */
struct dmarc_report_input {
    const char *source_ip;        /* client address ("" unknown) */
    const char *envelope_from;    /* MAIL FROM domain ("" for <>) */
    const struct spf_response *spf;   /* NULL: SPF not run */
    const struct dkim_verdict *dkim;
    int n_dkim;
    time_t now;
};

/* Keeps one evaluation for the aggregate report of its policy domain, when
 * the record asked for reports (rua).  0 (kept or nothing to keep) or -1
 * (store error; *error_r).  A worker-thread call (one SQLite write). */
int dmarc_report_note(struct store *st, const struct dmarc_eval *ev,
                      const struct dmarc_report_input *in, const char **error_r);

struct dmarc_report_opts {
    char org_name[256];           /* report_metadata org_name */
    char email[320];              /* report_metadata email and the From: address */
    char receiver[256];           /* our host name: filename, Submitter:, report ids */
    uint32_t period;              /* seconds per report window; 0 = 86400 (a UTC day) */
};
struct config;
/* org_name = [dmarc] org_name, else hostname; receiver = hostname; email =
 * [dmarc] report_from, else noreply-dmarc@ the first configured domain,
 * else @hostname; period = [dmarc] report_interval. */
void dmarc_report_opts_from_config(struct dmarc_report_opts *o, const struct config *cfg);

/* The aggregate report XML (RFC 7489 appendix C) of one policy domain for
 * [begin, end] from the kept results.  Returns the number of records (rows
 * of aggregated results) written, 0 when there was nothing (xml empty), or
 * -1 (store error or cap). */
int dmarc_report_xml(struct store *st, const struct dmarc_report_opts *o, const char *domain,
                     time_t begin, time_t end, struct strbuf *xml);
/* gzip (RFC 1952) of data into out.  0 or -1. */
int dmarc_gzip(const void *data, size_t len, struct strbuf *out);
/* The report email: multipart/mixed with a text part and the gzip as
 * application/gzip named RECEIVER!DOMAIN!BEGIN!END.xml.gz (7.2.1.1);
 * Subject "Report Domain: ... Submitter: ... Report-ID: <...>".  CRLF.
 * 0 or -1. */
int dmarc_report_message(const struct dmarc_report_opts *o, const char *domain, time_t begin,
                         time_t end, const char *rcpt, const void *gz, size_t gz_len, time_t now,
                         struct strbuf *out);

/* The external destination check (RFC 7489 7.1): a rua address outside the
 * policy domain's Organizational Domain may receive reports only when
 * DOMAIN._report._dmarc.RUA-DOMAIN has a TXT record starting "v=DMARC1".
 * Returns 1 allowed, 0 not allowed, -1 temporary failure. */
int dmarc_rua_allowed(const struct dmarc_dns *dns, const char *policy_domain, const char *rua_addr);

/* Hands one finished report to the outbound queue: envelope sender
 * opts->email, one recipient, the whole message (CRLF).  0 queued, -1 not. */
typedef int dmarc_report_send_fn(void *arg, const char *rcpt, const char *msg, size_t len);

/* Builds and sends every report that is due: for each policy domain and
 * each whole window (o->period seconds, aligned on multiples of it since
 * the epoch: UTC days by default) before now with kept results, one report to each
 * allowed rua address (the size limit of "!SIZE" honored); the window's
 * results are then dropped.  A report whose every send failed is kept for
 * the next call; one that reached some of its recipients is not retried
 * (report ids are stable, so a duplicate after a crash is recognizable).
 * Returns the number of reports sent, or -1 on a store error. */
int dmarc_reports_build_due(struct store *st, const struct dmarc_dns *dns,
                            const struct dmarc_report_opts *o, time_t now,
                            dmarc_report_send_fn *send, void *arg);
#endif
