/*
 * The inbound sender-authentication step in one call, and the
 * Authentication-Results header field (RFC 8601).
 *
 * auth_evaluate() runs SPF (MAIL FROM identity; HELO for the null sender),
 * DKIM (every signature up to DKIM_MAX_SIGNATURES) and DMARC (every From
 * domain) on a received message and returns what to add, what to remove
 * and what to do:
 *
 *   stored message = Received (the caller's)
 *                  + out->authres       "Authentication-Results: ..."
 *                  + out->received_spf  "Received-SPF: ..." (when SPF ran)
 *                  + the message without the out->drop ranges
 *
 * (auth_write_message() writes the last three parts).  The drop ranges are
 * the Authentication-Results fields that claim our authserv-id, which a
 * border MTA must remove (RFC 8601 5).  out->disposition says what the
 * DMARC policy asks for: DMARC_POLICY_REJECT -> answer out->reply (550
 * 5.7.1) at the end of DATA; DMARC_POLICY_QUARANTINE -> file into Junk;
 * DMARC_POLICY_NONE -> deliver.
 *
 * Blocking (DNS): call on a worker thread, never on an event loop.
 * struct auth_outcome is about 70 KB: keep it on the heap or on a worker
 * thread's (default-sized) stack.
 */
#ifndef POSTEL_AUTHRES_H
#define POSTEL_AUTHRES_H
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "auth/dkim.h"
#include "auth/dmarc.h"
#include "auth/spf.h"
#include "core/util.h"
#include "dns/dns.h"

#define AUTHRES_HEADER_MAX   (16u * 1024)  /* bytes of our A-R field */
#define AUTHRES_LINE_WIDTH   78            /* fold our fields at this width */
#define AUTHRES_FIELD_MAX    (64u * 1024)  /* bytes of an A-R field we parse */
#define AUTHRES_RESULTS_MAX  16            /* resinfo entries parsed from one field */
#define AUTHRES_PROPS_MAX    8             /* properties parsed per resinfo */

struct auth_input {
    const char *ip;               /* client address; NULL or "": SPF not run */
    const char *helo;             /* HELO/EHLO argument */
    const char *mail_from;        /* reverse path without <>, "" for the null sender */
    const char *msg;              /* the message as received (CRLF) */
    size_t len;
    const char *authserv_id;      /* our host name */
    time_t now;                   /* 0 = time(NULL); DKIM x= checks */
    /* pct sampling draw 0..99; NULL = CSPRNG (see struct dmarc_request) */
    unsigned (*rand_pct)(void *arg);
    void *rand_arg;
};

/* A byte range of the message: [off, off + len). */
struct auth_range {
    size_t off, len;
};

struct auth_outcome {
    bool spf_done;
    struct spf_response spf;
    int n_dkim;                   /* signatures evaluated (0: unsigned) */
    struct dkim_verdict dkim[DKIM_MAX_SIGNATURES];
    /* One per From domain, then a permerror entry (no domain, why set)
     * when the From field is missing, malformed or has too many domains. */
    int n_dmarc;
    struct dmarc_eval dmarc[DMARC_FROM_MAX + 1];

    /* Over all From domains: the worst result (fail, temperror, permerror,
     * none, pass in that order) and the strictest disposition. */
    enum dmarc_result dmarc_result;
    enum dmarc_policy disposition;
    bool sampled_out;             /* pct lowered the disposition */
    char header_from[DNS_NAME_MAX + 2];  /* first From domain, "" if none */
    char reply[320];              /* for DMARC_POLICY_REJECT: "550 5.7.1 ..." */

    struct strbuf authres;        /* "Authentication-Results: ...\r\n", folded */
    struct strbuf received_spf;   /* "Received-SPF: ...\r\n", or empty */
    struct auth_range *drop;      /* sorted, not overlapping; malloc'ed */
    size_t n_drop;
};

/* Evaluates in with the synchronous resolver r.  Fills out (release it with
 * auth_outcome_free, also after a failure).  0, or -1 on out of memory
 * (DNS trouble is a result, never a failure). */
int auth_evaluate(struct dns_resolver *r, const struct auth_input *in, struct auth_outcome *out);
/* auth_evaluate() answered from the resolver's cache only: 1 with out
 * filled; 0 when some answer is not cached (out is released, the caller
 * evaluates on a thread that may wait); -1 as auth_evaluate.  Never
 * blocks, so an event loop may call it. */
int auth_evaluate_cached(struct dns_resolver *r, const struct auth_input *in,
                         struct auth_outcome *out);
/* The same with DNS through dns (tests answer from memory). */
int auth_evaluate_dns(const struct dmarc_dns *dns, const struct auth_input *in,
                      struct auth_outcome *out);
void auth_outcome_free(struct auth_outcome *out);

/* Output callback: 0, or -1 to stop. */
typedef int auth_write_fn(void *arg, const void *data, size_t len);
/* Writes msg without the drop ranges.  0, or the callback's -1. */
int auth_write_stripped(const struct auth_outcome *o, const char *msg, size_t len,
                        auth_write_fn *fn, void *arg);
/* Writes out->authres, out->received_spf, then the stripped message. */
int auth_write_message(const struct auth_outcome *o, const char *msg, size_t len,
                       auth_write_fn *fn, void *arg);
/* Bytes auth_write_message() writes. */
size_t auth_message_size(const struct auth_outcome *o, size_t len);

struct store;
/* Keeps the DMARC results for the aggregate reports (dmarc_report_note for
 * each From domain whose record asks for them).  0 or -1 (*error_r). */
int auth_outcome_note(struct store *st, const struct auth_input *in, const struct auth_outcome *o,
                      const char **error_r);

/* ---- Authentication-Results parsing (RFC 8601 2.2) ---- */

struct authres_prop {
    char ptype[32];               /* "smtp", "header", "body", "policy", ... */
    char property[64];            /* "mailfrom", "d", "from", ... */
    char value[320];              /* unquoted */
};

struct authres_result {
    char method[64];              /* lower-cased, "/version" dropped */
    char result[32];              /* lower-cased */
    char reason[320];             /* "" when absent */
    int n_props;
    struct authres_prop props[AUTHRES_PROPS_MAX];
};

struct authres_parsed {
    char authserv_id[256];
    int version;                  /* 1 when absent */
    bool none;                    /* "; none" */
    int n;
    struct authres_result res[AUTHRES_RESULTS_MAX];
};

/* The authserv-id of a field value (after "Authentication-Results:",
 * folding allowed): leading CFWS skipped, a token or a quoted-string.
 * 0 with id filled, or -1 (no id, or longer than size-1). */
int authres_authserv_id(const char *value, size_t len, char *id, size_t size);
/* Parses a whole field value.  0, or -1 on a syntax error or a cap
 * (AUTHRES_RESULTS_MAX, AUTHRES_PROPS_MAX, a string too long).  A trailing
 * ';' is tolerated, as mail in the wild has it. */
int authres_parse(const char *value, size_t len, struct authres_parsed *out);
/* True when two authserv-ids are the same (ASCII case-insensitive, a
 * trailing dot ignored). */
bool authres_id_equal(const char *a, const char *b);
/* The Authentication-Results fields in msg's header whose authserv-id is
 * ours, every one of them: *ranges_r (malloc'ed, NULL when none) and
 * *n_r.  0, or -1 out of memory. */
int authres_find_ours(const char *msg, size_t len, const char *authserv_id,
                      struct auth_range **ranges_r, size_t *n_r);
#endif
