/*
 * DKIM (RFC 6376) signing and verification, with Ed25519 (RFC 8463) and the
 * algorithm rules of RFC 8301 (rsa-sha1 and RSA keys under 1024 bits fail).
 *
 * Messages are raw bytes: header and body split at the first empty line.
 * Lines ending in a bare LF are taken as ending in CRLF (the message as it
 * travels in SMTP); every other byte is canonicalized exactly as RFC 6376
 * 3.4 says.
 *
 * Verification never does DNS itself.  Either drive it in steps (new, ask
 * for each key name, set each key, finish: fits an asynchronous resolver),
 * or call dkim_verify_message() with a synchronous lookup callback.
 *
 * Signing: dkim_keys_for_domain() finds the keys for a domain ([dkim DOMAIN]
 * sections first, else keys made by `postel dkim keygen` in data_dir/dkim),
 * dkim_sign() makes the DKIM-Signature header fields to prepend.
 */
#ifndef POSTEL_DKIM_H
#define POSTEL_DKIM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/config.h"
#include "core/util.h"

/* Caps (RFC 6376 sets none; these bound the work a hostile message causes). */
#define DKIM_MAX_SIGNATURES   5          /* DKIM-Signature fields evaluated, top down */
#define DKIM_SIG_FIELD_MAX    8192       /* bytes in one DKIM-Signature field */
#define DKIM_HEADER_MAX       (1u << 20) /* bytes of header block considered */
#define DKIM_FIELDS_MAX       1000       /* header fields indexed */
#define DKIM_H_MAX            128        /* names in a signature's h= */
#define DKIM_TXT_RECORDS      4          /* TXT records considered at a key name */
#define DKIM_TXT_LEN          4096       /* bytes of one (concatenated) TXT record */
#define DKIM_RSA_MIN_BITS     1024       /* RFC 8301 3.2 */
#define DKIM_RSA_MAX_BITS     8192       /* beyond: refused (verification cost) */
#define DKIM_MAX_SIGN_KEYS    4          /* keys used at once for one domain */

/* ---- DNS: key records come through this interface ---- */

enum dkim_dns_status {
    DKIM_DNS_FOUND,      /* txt holds 1..DKIM_TXT_RECORDS records */
    DKIM_DNS_NONE,       /* NXDOMAIN or no TXT record: permanent */
    DKIM_DNS_TEMPFAIL,   /* timeout, SERVFAIL: temporary */
};

/* The TXT records at one name; each record's strings already concatenated
 * (RFC 6376 3.6.2.2).  Fill with dkim_txt_add(). */
struct dkim_txt {
    int n;
    char rec[DKIM_TXT_RECORDS][DKIM_TXT_LEN];
    size_t len[DKIM_TXT_RECORDS];
};
/* Adds one record (len bytes, need not be terminated).  Records past
 * DKIM_TXT_RECORDS or over DKIM_TXT_LEN-1 bytes are dropped: -1. */
int dkim_txt_add(struct dkim_txt *txt, const char *data, size_t len);

/* Looks up the TXT records at name ("sel._domainkey.example.org", no
 * trailing dot).  Fills txt_r (already zeroed) when returning FOUND. */
typedef enum dkim_dns_status dkim_lookup_fn(const char *name, struct dkim_txt *txt_r, void *arg);

/* The lookup on src/dns's synchronous resolver: pass a struct dns_resolver *
 * as arg.  NXDOMAIN and NODATA are NONE, TEMPFAIL is TEMPFAIL. */
dkim_lookup_fn dkim_lookup_dns;

/* ---- Verification ---- */

enum dkim_status {
    DKIM_PASS,
    DKIM_FAIL,        /* body hash or signature does not verify */
    DKIM_NEUTRAL,     /* failed, but the key is in testing mode (key t=y) */
    DKIM_TEMPERROR,   /* key lookup failed temporarily */
    DKIM_PERMERROR,   /* cannot be verified: syntax, key, policy of RFC 6376/8301 */
};

#define DKIM_HEADER_B_LEN 12   /* chars of b= kept for header.b (RFC 6008: >= 8) */

/* One signature's verdict.  reason is "" on pass, else a short English
 * phrase fit for an Authentication-Results comment. */
struct dkim_verdict {
    enum dkim_status status;
    char reason[96];
    char d[256];              /* signing domain (d=) as written */
    char s[256];              /* selector (s=) */
    char i[320];              /* AUID (i=), "@d" when absent */
    char a[24];               /* algorithm (a=) */
    char b[DKIM_HEADER_B_LEN + 1];
    int key_bits;             /* 0 when no key was loaded */
    bool testing;             /* key t=y */
    bool body_partial;        /* l= left part of the body unsigned */
};

struct dkim_verify;

/* Indexes msg (len bytes, kept by pointer: it must outlive the object),
 * parses up to DKIM_MAX_SIGNATURES DKIM-Signature fields and hashes what
 * needs no key.  now is the time for x= checks (0: time(NULL)).  NULL only
 * on allocation failure. */
struct dkim_verify *dkim_verify_new(const char *msg, size_t len, time_t now);
/* Number of signatures being evaluated (0 when the message has none). */
int dkim_verify_count(const struct dkim_verify *v);
/* The DNS name whose TXT records signature idx needs, or NULL when it needs
 * none (its verdict is already decided).  Valid until dkim_verify_free(). */
const char *dkim_verify_key_name(const struct dkim_verify *v, int idx);
/* Gives signature idx the lookup outcome (txt may be NULL unless FOUND). */
void dkim_verify_set_key(struct dkim_verify *v, int idx, enum dkim_dns_status st,
                         const struct dkim_txt *txt);
/* Checks every signature whose key was set.  A signature needing a key that
 * was never set gets temperror. */
void dkim_verify_finish(struct dkim_verify *v);
/* Verdict of signature idx, after dkim_verify_finish(). */
const struct dkim_verdict *dkim_verify_result(const struct dkim_verify *v, int idx);
void dkim_verify_free(struct dkim_verify *v);

/* All steps at once with a synchronous lookup.  Writes up to max verdicts
 * into out; returns the number of signatures evaluated (0: unsigned), or
 * -1 on allocation failure. */
int dkim_verify_message(const char *msg, size_t len, time_t now, dkim_lookup_fn *lookup,
                        void *arg, struct dkim_verdict *out, int max);

/* "pass", "fail", "neutral", "temperror", "permerror". */
const char *dkim_status_name(enum dkim_status st);
/* The Authentication-Results method result (RFC 8601 2.7.1), e.g.
 *   dkim=pass (2048-bit key) header.d=example.org header.i=@example.org
 *   header.s=s1 header.a=rsa-sha256 header.b=AbCdEfGhIjKl
 * on one line.  Returns buf. */
const char *dkim_verdict_format(const struct dkim_verdict *vd, char *buf, size_t size);

/* ---- Keys and signing ---- */

enum dkim_key_type { DKIM_KEY_RSA, DKIM_KEY_ED25519 };

struct evp_pkey_st;
struct evp_md_ctx_st;
/* A private signing key with its domain and selector.  Owns pkey and
 * sign_ctx (a context made ready to sign with pkey, copied for each
 * signature; NULL in a key filled by hand, which then signs the slow way). */
struct dkim_key {
    char domain[256];
    char selector[64];
    char path[1024];
    enum dkim_key_type type;
    int bits;
    struct evp_pkey_st *pkey;
    struct evp_md_ctx_st *sign_ctx;
};

/* Loads a PEM private key (PKCS#8 or PKCS#1 RSA; RSA >= 1024 bits, or
 * Ed25519).  0, or -1 with err filled. */
int dkim_key_load(struct dkim_key *key, const char *domain, const char *selector,
                  const char *path, char *err, size_t err_size);
void dkim_key_free(struct dkim_key *key);

/* The keys to sign mail from domain with: every [dkim DOMAIN] section for
 * it when there is one, else the keys `postel dkim keygen` left in
 * data_dir/dkim (DOMAIN.SELECTOR.key), newest one per algorithm, so an RSA
 * and an Ed25519 key sign together.  Loads up to max keys into keys.
 * Returns the count (0: no signing for this domain) or -1 (err filled: a
 * key is configured but unusable).  Free each with dkim_key_free(). */
int dkim_keys_for_domain(const struct config *cfg, const char *domain, struct dkim_key *keys,
                         int max, char *err, size_t err_size);

/* Signs msg (whole message, len bytes) with each key: relaxed/relaxed,
 * h= the usual fields present with From over-signed, t=now (0: time(NULL)).
 * Appends the DKIM-Signature fields (folded, CRLF line ends) to out, to be
 * prepended to the message.  0, or -1 with err filled (header over
 * DKIM_HEADER_MAX, a message starting with a continuation line, which
 * would join the new field, or DKIM_H_MAX From fields). */
int dkim_sign(const struct dkim_key *keys, int n_keys, const char *msg, size_t len, time_t now,
              struct strbuf *out, char *err, size_t err_size);

/* The domain of the (first) From address, lower-cased.  0 or -1 (no From,
 * or no parsable address). */
int dkim_from_domain(const char *msg, size_t len, char *domain, size_t size);

/* Makes a key for domain: data_dir/dkim/DOMAIN.SELECTOR.key (PEM, 0600,
 * directories made; an existing file is never overwritten).  selector NULL
 * picks "postel-YYYYMM" (Ed25519: "postel-YYYYMM-ed").  Loads the new key
 * into key_r.  0, or -1 with err filled. */
int dkim_keygen(const struct config *cfg, const char *domain, const char *selector,
                enum dkim_key_type type, struct dkim_key *key_r, char *err, size_t err_size);

/* The key record to publish, "v=DKIM1; k=rsa; p=BASE64".  0 or -1. */
int dkim_key_record(const struct dkim_key *key, struct strbuf *out);
/* The same in zone-file form, strings of at most 255 bytes:
 *   SEL._domainkey.DOMAIN. IN TXT ( "v=DKIM1; k=rsa; " "p=..." ) */
int dkim_key_zone_record(const struct dkim_key *key, struct strbuf *out);

/* True when s is a usable selector or domain for keys kept in data_dir/dkim
 * (letters, digits, '-', and for domains '.' between labels). */
bool dkim_name_ok(const char *s, bool dots);
#endif
