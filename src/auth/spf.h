/*
 * SPF, RFC 7208: check_host() with every mechanism and modifier, macros,
 * the processing limits (10 DNS-querying terms, 2 void lookups, 10 MX and
 * 10 PTR names per term), HELO and MAIL FROM identities, the seven results
 * and exp= explanations.
 *
 * The engine is synchronous and keeps no global state: run it on a worker
 * thread (it blocks on DNS), any number at once.  It reaches DNS only
 * through struct spf_dns, so tests can answer from memory.
 */
#ifndef POSTEL_SPF_H
#define POSTEL_SPF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "dns/dns.h"

#define SPF_MAX_DNS_TERMS   10       /* RFC 7208 4.6.4 */
#define SPF_MAX_VOID        2        /* RFC 7208 4.6.4 */
#define SPF_MAX_MX_NAMES    10       /* RFC 7208 4.6.4: over it, permerror */
#define SPF_MAX_PTR_NAMES   10       /* RFC 7208 4.6.4: the rest ignored */
#define SPF_RECORD_MAX      8192     /* longer records are a permerror */
#define SPF_EXPANSION_MAX   65536    /* bytes one macro-string may expand to */
#define SPF_EXPLANATION_MAX 512
#define SPF_TIME_LIMIT_MS   20000    /* whole check; RFC 7208 4.6.4 says >= 20 s */

enum spf_result {
    SPF_NONE,
    SPF_NEUTRAL,
    SPF_PASS,
    SPF_FAIL,
    SPF_SOFTFAIL,
    SPF_TEMPERROR,
    SPF_PERMERROR,
};

enum spf_identity { SPF_ID_MAILFROM, SPF_ID_HELO };

/* How the engine asks DNS.  query has dns_query()'s contract: fill res
 * (freed by the engine with dns_result_free) and return res->status. */
struct spf_dns {
    enum dns_status (*query)(void *arg, const char *name, uint16_t type, struct dns_result *res);
    void *arg;
};

/* Points d at a real resolver (src/dns). */
void spf_dns_use_resolver(struct spf_dns *d, struct dns_resolver *r);

struct spf_request {
    const char *ip;               /* client address; IPv4-mapped IPv6 is IPv4 */
    const char *helo;             /* HELO/EHLO argument as given */
    const char *mail_from;        /* reverse-path without <>; NULL or "" = null */
    const char *receiver;         /* %{r}: our host name; NULL = "unknown" */
    unsigned time_limit_ms;       /* whole evaluation; 0 = SPF_TIME_LIMIT_MS */
};

/* What a check found: enough for Authentication-Results (RFC 8601) and
 * Received-SPF (RFC 7208 9.1). */
struct spf_response {
    enum spf_result result;
    enum spf_identity identity;
    char domain[DNS_NAME_MAX + 2];          /* the <domain> checked first */
    char sender[600];                       /* the <sender> used */
    char mechanism[128];                    /* term that decided, "default", or "" */
    char explanation[SPF_EXPLANATION_MAX];  /* fail only, from exp=; "" = none */
    char problem[256];                      /* why: temperror, permerror, none */
    unsigned dns_terms, void_lookups;       /* as counted */
};

const char *spf_result_name(enum spf_result r);

/* The MAIL FROM identity (RFC 7208 2.4): <sender> is mail_from, or
 * postmaster@helo for the null reverse-path.  Fills resp; returns its result. */
enum spf_result spf_check_mailfrom(const struct spf_dns *dns, const struct spf_request *req,
                                   struct spf_response *resp);
/* The HELO identity (RFC 7208 2.3): <domain> is the HELO name. */
enum spf_result spf_check_helo(const struct spf_dns *dns, const struct spf_request *req,
                               struct spf_response *resp);

/* Formats the Received-SPF field value (RFC 7208 9.1), without the name:
 * "pass (comment) client-ip=...; envelope-from=...; helo=...; ...".
 * Returns the length, or -1 when size is too small. */
int spf_received_spf(const struct spf_response *resp, const struct spf_request *req,
                     char *buf, size_t size);

/* ---- the parser and the macro expander, exposed for tests and fuzzing ---- */

struct spf_record;

/* Parses a whole record ("v=spf1 ...", len octets, may hold any byte).
 * 0 with *rec_r set, or -1 with a reason in err (syntax: RFC 7208 4.6,
 * 5, 6, 7.1; any syntax error anywhere makes the record a permerror). */
int spf_record_parse(const char *text, size_t len, struct spf_record **rec_r, char *err, size_t err_size);
void spf_record_free(struct spf_record *rec);
/* Number of terms (directives and modifiers) in a parsed record. */
size_t spf_record_term_count(const struct spf_record *rec);

enum spf_macro_mode {
    SPF_MACRO_DOMAIN,             /* domain-spec: letters slodipvh, no spaces */
    SPF_MACRO_EXPLAIN,            /* explanation text: also c r t and spaces */
    SPF_MACRO_MODIFIER,           /* unknown-modifier value: any letter, no spaces */
};

/* Values for macro expansion (RFC 7208 7.2). */
struct spf_macro_vars {
    const char *sender;           /* %{s}: local@domain; %{l} and %{o} split it */
    const char *domain;           /* %{d} */
    const char *helo;             /* %{h} */
    const char *receiver;         /* %{r}; NULL = "unknown" */
    struct dns_addr ip;           /* %{i} %{c} %{v} */
    time_t now;                   /* %{t} */
    /* %{p}: the validated name for the current domain, computed on demand;
     * NULL or a NULL return = "unknown". */
    const char *(*validated)(void *arg, const char *domain);
    void *validated_arg;
};

/* Expands a macro-string (len octets) into out (size octets, always
 * terminated).  vars NULL: syntax check only.  In SPF_MACRO_DOMAIN mode the
 * result is cut from the left, label by label, to at most 253 octets (RFC
 * 7208 7.3) and a trailing dot is kept as written.  0, or -1 with *error_r. */
int spf_macro_expand(const char *in, size_t len, enum spf_macro_mode mode, const struct spf_macro_vars *vars,
                     char *out, size_t size, const char **error_r);
/* true when in is a valid domain-spec (RFC 7208 7.1: macro-string ending in
 * a macro-expand or in "." toplabel ["."]). */
bool spf_domain_spec_valid(const char *in, size_t len);
#endif
