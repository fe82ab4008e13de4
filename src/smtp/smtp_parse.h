/*
 * SMTP protocol parsing with no I/O: command lines, paths (RFC 5321 4.1.2),
 * ESMTP parameters (SIZE, BODY, SMTPUTF8, RET, ENVID, NOTIFY, ORCPT, AUTH),
 * xtext, the DATA stream decoder (dot-unstuffing, end detection, bare CR/LF
 * detection) and SASL PLAIN decoding.  Every function is bounded and safe on
 * arbitrary bytes; each has a fuzz target in tests/fuzz.
 */
#ifndef POSTEL_SMTP_PARSE_H
#define POSTEL_SMTP_PARSE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"
#include "core/sasl.h" /* base64 and SASL PLAIN, used with the AUTH verbs */

enum smtp_verb {
    SMTP_VERB_UNKNOWN = 0,
    SMTP_VERB_HELO, SMTP_VERB_EHLO, SMTP_VERB_MAIL, SMTP_VERB_RCPT,
    SMTP_VERB_DATA, SMTP_VERB_BDAT, SMTP_VERB_RSET, SMTP_VERB_NOOP,
    SMTP_VERB_QUIT, SMTP_VERB_VRFY, SMTP_VERB_EXPN, SMTP_VERB_HELP,
    SMTP_VERB_STARTTLS, SMTP_VERB_AUTH,
};

/* A reply chosen by a parser: code, enhanced status and text, e.g.
 * { 501, "5.5.4", "Syntax error in parameters" }. */
struct smtp_reply {
    int code;
    const char *status;
    const char *text;
};

struct smtp_command {
    enum smtp_verb verb;
    const char *arg;      /* text after the verb and one space ("" if none);
                             points into the parsed line */
};

/* Parses one command line.  line/len exclude the CRLF (the caller's line
 * reader has already rejected bare LF and over-long lines).  The line is
 * modified: the verb is NUL-terminated and line[len] is set to NUL (so it
 * must be writable, e.g. where the CR was) to make arg a C string.
 * Returns 0, or -1 with *reply filled: 500 5.5.2 for NUL, CR or LF anywhere
 * in the line or non-ASCII in the verb, 500 5.5.1 for an unknown (or
 * empty) verb.  The arguments of DATA, RSET, QUIT, STARTTLS are left to
 * the caller to check. */
int smtp_command_parse(char *line, size_t len, struct smtp_command *cmd, struct smtp_reply *reply);

/* ESMTP parameters of MAIL FROM (RFC 1870, 6152, 6531, 3461, 4954). */
enum smtp_body { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };
struct smtp_mail_params {
    uint64_t size;                /* 0 if not given */
    enum smtp_body body;
    bool smtputf8;
    char ret[5];                  /* "FULL", "HDRS" or "" */
    char envid[101];              /* decoded xtext, "" if absent */
    char auth[ADDRESS_MAX + 2];   /* decoded AUTH= value, "" if absent */
};
/* Parameters of RCPT TO (RFC 3461). */
struct smtp_rcpt_params {
    unsigned notify;              /* SMTP_NOTIFY_* bits; 0 if absent */
    char orcpt[512];              /* "rfc822;user@example.org" decoded, "" if absent */
};
#define SMTP_NOTIFY_NEVER   1u
#define SMTP_NOTIFY_SUCCESS 2u
#define SMTP_NOTIFY_FAILURE 4u
#define SMTP_NOTIFY_DELAY   8u

/* A parsed path: mailbox = local "@" domain, or "" for the null path <>.
 * The local part keeps its case but is canonical: quotes only when needed
 * ("j.doe"@x becomes j.doe@x), only '"' and '\' escaped inside them.  The
 * domain is lower-cased (ASCII only; an IPv6 literal reads "[IPv6:...]").
 * For <Postmaster>, mailbox and local are the word as sent, domain "". */
struct smtp_path {
    char mailbox[SMTP_PATH_MAX + 1];
    char local[SMTP_LOCALPART_MAX * 2 + 3];
    char domain[SMTP_DOMAIN_MAX + 1];
    bool is_null;                 /* "<>" */
    bool is_postmaster;           /* RCPT TO:<Postmaster> without domain */
    bool utf8;                    /* contains non-ASCII (needs SMTPUTF8) */
};

/* MAIL: arg is the text after the verb ("FROM:<a@b> SIZE=10").  Accepts
 * "FROM:" case-insensitively, optional single space after the colon (as
 * Postfix does), source routes (ignored), quoted local parts, domain
 * literals.  allow_utf8 says the server offers SMTPUTF8: then the SMTPUTF8
 * parameter is accepted, and a non-ASCII path is accepted only together
 * with it.  Returns 0 or -1 with *reply (path and params then zeroed):
 * 501 5.5.4 (syntax, malformed or duplicate parameter), 501 5.1.7 (bad
 * sender address or path too long), 553 5.6.7 (non-ASCII address without
 * SMTPUTF8), 555 5.5.4 (unknown parameter).  SIZE values of 20 digits
 * past UINT64_MAX saturate to UINT64_MAX (answer with 552). */
int smtp_mail_parse(const char *arg, bool allow_utf8, struct smtp_path *path,
                    struct smtp_mail_params *params, struct smtp_reply *reply);
/* RCPT: as above for "TO:<a@b> NOTIFY=..."; 501 5.1.3 for a bad address.
 * allow_utf8 says this transaction's MAIL carried SMTPUTF8 (else 553 5.6.7
 * for a non-ASCII address).  <Postmaster> (no domain, any case) is accepted
 * and flagged; <> is refused. */
int smtp_rcpt_parse(const char *arg, bool allow_utf8, struct smtp_path *path,
                    struct smtp_rcpt_params *params, struct smtp_reply *reply);
/* Validates an address "local@domain" alone (no <>, no params), as used by
 * the CLI and aliases; well-formed UTF-8 is accepted and sets path->utf8.
 * Returns 0 or -1. */
int smtp_address_parse(const char *addr, struct smtp_path *path);

/* xtext (RFC 3461 4): decodes into out (size bytes, NUL-terminated); -1 if
 * malformed ("+XX" must be upper-case hex; "+00" is refused) or too long. */
int smtp_xtext_decode(const char *in, char *out, size_t size);
/* Encodes into out; -1 if it does not fit. */
int smtp_xtext_encode(const char *in, char *out, size_t size);

/* BDAT argument: "<size> [LAST]".  0 or -1 with 501 5.5.4. */
int smtp_bdat_parse(const char *arg, uint64_t *size_r, bool *last_r, struct smtp_reply *reply);

/* DATA / BDAT content decoder.  Feed the raw bytes as they arrive; decoded
 * content (dot-unstuffed for DATA, CRLF kept) goes to the out callback.
 * RFC 5321 4.1.1.4 end of data is exactly CRLF "." CRLF (the initial CRLF
 * being the one ending the previous line, or the start of data).  A bare LF
 * or bare CR anywhere sets bare_lf / bare_cr and is never treated as a line
 * end (no SMTP smuggling).  Once decoded size exceeds max_size, too_big is
 * set and nothing more is output, but the end is still found. */
struct smtp_data_decoder {
    bool dot_stuffed;             /* true for DATA, false for BDAT */
    uint64_t max_size;            /* 0 = no limit; output stops at exactly max_size bytes */
    uint64_t size;                /* decoded bytes so far */
    bool done, bare_lf, bare_cr, too_big;
    int state;                    /* private */
};
void smtp_data_init(struct smtp_data_decoder *d, bool dot_stuffed, uint64_t max_size);
typedef void smtp_data_out_fn(void *arg, const char *data, size_t len);   /* out may be NULL */
/* Returns the number of input bytes consumed: all of len unless the end of
 * data was reached (done), in which case it stops right after the final
 * CRLF so pipelined commands after it stay unread.  For BDAT (not
 * dot_stuffed) done is never set: the caller counts chunk bytes; call
 * smtp_data_finish() after the LAST chunk to flag a trailing bare CR. */
size_t smtp_data_feed(struct smtp_data_decoder *d, const char *in, size_t len,
                      smtp_data_out_fn *out, void *arg);
void smtp_data_finish(struct smtp_data_decoder *d, smtp_data_out_fn *out, void *arg);

#endif
