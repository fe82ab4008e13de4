/*
 * DKIM internals shared by dkim*.c, the unit test and the fuzz target:
 * the header index, canonicalization (RFC 6376 3.4), tag lists (3.2), the
 * DKIM-Signature (3.5) and key record (3.6.1) parsers, base64.  Not for
 * use elsewhere: the rest of postel talks to auth/dkim.h.
 */
#ifndef POSTEL_DKIM_INT_H
#define POSTEL_DKIM_INT_H
#include "auth/dkim.h"

/* ---- Header index ---- */

/* One header field: raw bytes msg[off .. off+len), including its line
 * terminators (the last may be missing at the end of the message).
 * name_len counts the bytes before the colon (trailing WSP included). */
struct dkim_field {
    size_t off, len, name_len;
};

struct dkim_msg {
    const char *msg;
    size_t len;
    struct dkim_field *fields;
    int n_fields, fields_alloc;
    size_t body_off;     /* first body byte (len when there is no body) */
    bool truncated;      /* header over DKIM_HEADER_MAX or DKIM_FIELDS_MAX */
};

/* Indexes the header of msg.  0, or -1 on allocation failure.  Lines that
 * are neither fields nor continuations (an mbox "From " line) are skipped. */
int dkim_msg_index(struct dkim_msg *m, const char *msg, size_t len);
void dkim_msg_free(struct dkim_msg *m);
/* True when field f's name (trailing WSP ignored) is name, ASCII case-blind. */
bool dkim_field_is(const struct dkim_msg *m, const struct dkim_field *f, const char *name,
                   size_t name_len);
/* Counts fields named name. */
int dkim_msg_count(const struct dkim_msg *m, const char *name, size_t name_len);

/* ---- Canonicalization ---- */

enum dkim_canon { DKIM_CANON_SIMPLE, DKIM_CANON_RELAXED };

/* Appends the canonical form of one raw header field (name, colon, value,
 * line ends) to out, ending in CRLF.  0, or -1 when out's cap is hit. */
int dkim_canon_header(enum dkim_canon c, const char *field, size_t len, struct strbuf *out);

typedef void dkim_sink_fn(void *arg, const char *data, size_t len);

/* Streaming body canonicalizer (RFC 6376 3.4.3, 3.4.4): feed the body in
 * any pieces; the canonical bytes go to sink, cut at limit when has_limit
 * (l=).  total counts every canonical byte, cut or not.  Runs of input that
 * are already canonical (most of a usual body) are passed on as they are;
 * the state kept between pieces is bounded (a count of held line ends and
 * two flags), so the cut points never change the output. */
#define DKIM_BODY_BUF    8192
#define DKIM_BODY_DIRECT 512     /* runs this long go to sink without a copy */
struct dkim_body_canon {
    enum dkim_canon c;
    bool has_limit;
    uint64_t limit;
    uint64_t total;
    uint64_t pending_crlf;   /* line ends not yet written (trailing ones vanish) */
    bool pending_cr;         /* the piece ended in a CR that may start a CRLF */
    bool pending_wsp;        /* relaxed: WSP run not yet written */
    bool emitted;            /* any non-line-end byte written */
    dkim_sink_fn *sink;
    void *arg;
    /* Canonical bytes gathered before they go to sink, so the hash sees a
     * few large updates instead of one per word (dkim_body_final flushes). */
    size_t out_len;
    char out[DKIM_BODY_BUF];
};
void dkim_body_init(struct dkim_body_canon *bc, enum dkim_canon c, bool has_limit, uint64_t limit,
                    dkim_sink_fn *sink, void *arg);
void dkim_body_feed(struct dkim_body_canon *bc, const char *data, size_t len);
void dkim_body_final(struct dkim_body_canon *bc);

/* ---- Tag lists (RFC 6376 3.2) ---- */

#define DKIM_TAGS_MAX 64

/* name/val point into the parsed text.  val excludes surrounding FWS;
 * raw_start..raw_end is everything after '=' up to the ';' or the end, the
 * span deleted from the b= tag when hashing (RFC 6376 3.7). */
struct dkim_tag {
    const char *name;
    size_t name_len;
    const char *val;
    size_t val_len;
    size_t raw_start, raw_end;
};

/* Parses a tag-list.  Returns the number of tags, or -1 on a syntax error
 * (bad name, missing '=', control character, duplicate tag, more than max
 * tags).  Empty tag-specs (";;", a trailing ";") are tolerated. */
int dkim_tags_parse(const char *s, size_t len, struct dkim_tag *tags, int max);
/* The tag named name, or NULL. */
const struct dkim_tag *dkim_tag_find(const struct dkim_tag *tags, int n, const char *name);

/* ---- DKIM-Signature ---- */

enum dkim_alg { DKIM_ALG_RSA_SHA256, DKIM_ALG_ED25519_SHA256 };

#define DKIM_SIG_B_MAX 1024   /* RSA 8192 */

struct dkim_sig {
    enum dkim_alg alg;
    enum dkim_canon hc, bc;
    char a[24], d[256], s[256], i[320];
    char b_text[DKIM_HEADER_B_LEN + 1];
    const char *h[DKIM_H_MAX];      /* names in h=, pointing into the field */
    size_t h_len[DKIM_H_MAX];
    int n_h;
    unsigned char bh[64];
    size_t bh_len;
    unsigned char b[DKIM_SIG_B_MAX];
    size_t b_len;
    bool has_l, has_t, has_x;
    uint64_t l, t, x;
    size_t b_raw_start, b_raw_end;  /* in the value, see struct dkim_tag */
};

/* Parses a DKIM-Signature field value (the bytes after the colon, final
 * line end excluded).  Fills what it can of sig->a/d/s/i/b_text even on
 * failure.  0, or -1 with *reason_r set (every -1 is a permerror). */
int dkim_sig_parse(const char *val, size_t len, struct dkim_sig *sig, const char **reason_r);

/* ---- Key records (RFC 6376 3.6.1) ---- */

#define DKIM_KEY_P_MAX 2048

struct dkim_keyrec {
    enum dkim_key_type type;
    bool sha256_ok;      /* h= absent or lists sha256 */
    bool email_ok;       /* s= absent, "*" or "email" */
    bool testing;        /* t=y */
    bool strict;         /* t=s */
    bool revoked;        /* p= empty */
    unsigned char p[DKIM_KEY_P_MAX];
    size_t p_len;
};
/* 0, or -1 with *reason_r set. */
int dkim_keyrec_parse(const char *s, size_t len, struct dkim_keyrec *k, const char **reason_r);

/* ---- Hashing shared by signing and verification ---- */

/* Appends the canonical fields named in names (bottom-up selection, RFC
 * 6376 5.4.2; a missing instance adds nothing) to out.  Field index own is
 * skipped (the signature being verified; -1 when signing).  0 or -1. */
int dkim_hash_fields(const struct dkim_msg *m, enum dkim_canon c, const char *const *names,
                     const size_t *lens, int n_names, int own, struct strbuf *out);

/* SHA-256 fetched from OpenSSL's default provider once per process (an
 * EVP_sha256() handle would be looked up again on every use), or
 * EVP_sha256() if the fetch failed.  Thread-safe; never freed. */
const struct evp_md_st *dkim_sha256(void);

/* ---- Helpers ---- */

/* Decodes base64, skipping SP/HTAB/CR/LF.  0, or -1 on a bad character,
 * bad padding or more than out_size bytes. */
int dkim_b64_decode(const char *s, size_t len, unsigned char *out, size_t out_size,
                    size_t *out_len);
/* Encodes into out (4*((len+2)/3)+1 bytes), terminated.  Returns the length. */
size_t dkim_b64_encode(const unsigned char *in, size_t len, char *out);
/* True when domain equals parent or is a subdomain of it (case-blind). */
bool dkim_domain_within(const char *domain, const char *parent);
#endif
