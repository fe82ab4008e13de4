/*
 * The SMTP client: the protocol state machine the outbound queue drives
 * on a libevent bufferevent, and the pure reply parser under it.
 *
 * Reply parser (no I/O, fuzzed by tests/fuzz/fuzz_smtp_reply.c): bytes
 * in, complete replies out; multi-line replies (RFC 5321 4.2.1), the
 * enhanced status code of the first line (RFC 2034, RFC 3463) and EHLO
 * keywords (RFC 5321 4.1.1.1).
 *
 * Session: connect, greeting, EHLO (HELO when EHLO is refused with 5xx),
 * STARTTLS whenever offered and a TLS context is given (opportunistic: the
 * context decides about verification), EHLO again, AUTH PLAIN or LOGIN
 * when credentials are given (only over TLS), then any number of
 * transactions: MAIL, RCPT..., DATA or BDAT, pipelined when the server
 * offers PIPELINING (RFC 2920), then QUIT.  The client knows nothing of
 * the queue: the caller builds the MAIL/RCPT parameters from the
 * extensions the session reports and decides what each reply means.
 *
 * Callbacks run on the event base's thread.  A callback may start the
 * next transaction, quit or free the client: smtp_client_free() is safe
 * anywhere (inside a callback it takes effect when the callback returns).
 */
#ifndef POSTEL_SMTP_CLIENT_H
#define POSTEL_SMTP_CLIENT_H
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;

#define SMTP_REPLY_LINE_MAX   2048   /* longest reply line accepted (RFC 5321 says 512) */
#define SMTP_REPLY_LINES_MAX  128    /* lines in one reply */
#define SMTP_REPLY_TEXT_MAX   1024   /* text kept per reply (the rest is cut) */

/* ---- replies ---- */

struct smtp_client_reply {
    int code;                        /* 200..599; 0 when no reply was read */
    char enhanced[16];               /* "5.1.1" from the first line, or "" */
    char text[SMTP_REPLY_TEXT_MAX];  /* each line's text after "NNN-"/"NNN ",
                                        joined with '\n', controls replaced
                                        by spaces, cut at the cap */
    int n_lines;
};

/* Called for each line of a reply as it is parsed (EHLO keywords). */
typedef void smtp_reply_line_fn(void *arg, int index, const char *text, size_t len);

struct smtp_reply_parser {
    struct smtp_client_reply reply;  /* the reply being read / just completed */
    smtp_reply_line_fn *line_cb;     /* optional */
    void *line_arg;
    char line[SMTP_REPLY_LINE_MAX + 1];
    size_t line_len;
    bool overflow;                   /* the current line passed the cap */
    bool done;                       /* reply complete: the next byte starts a new one */
};

enum { SMTP_REPLY_BAD = -1, SMTP_REPLY_MORE = 0, SMTP_REPLY_DONE = 1 };

void smtp_reply_parser_init(struct smtp_reply_parser *p);
/* Feeds bytes.  Stops after the line that completes a reply and returns
 * SMTP_REPLY_DONE (p->reply holds it until the next call); SMTP_REPLY_MORE
 * when every byte was consumed without completing one; SMTP_REPLY_BAD for
 * a malformed reply (a line not "NNN", "NNN " or "NNN-" with a code in
 * 200..599 (and 1xx is never used by SMTP), a continuation line with
 * another code, a line over SMTP_REPLY_LINE_MAX, more than
 * SMTP_REPLY_LINES_MAX lines): the connection should be dropped.  *used_r
 * is the number of bytes consumed.  Lines end at LF; a CR before it is
 * dropped. */
int smtp_reply_parse(struct smtp_reply_parser *p, const char *data, size_t len, size_t *used_r);

/* "code enhanced text" on one line (lines joined by spaces) into buf, for
 * logs and DSN Diagnostic-Code fields; returns buf. */
const char *smtp_reply_format(const struct smtp_client_reply *r, char *buf, size_t size);

/* ---- EHLO ---- */

struct smtp_ext {
    bool esmtp;                      /* EHLO accepted (else HELO) */
    bool starttls, pipelining, eightbitmime, smtputf8, dsn, chunking, enhanced;
    bool size;                       /* SIZE announced */
    uint64_t size_max;               /* its value; 0 = no fixed limit */
    bool auth_plain, auth_login;
};
/* Reads one line of a 250 reply to EHLO (index 0, the greeting, is
 * ignored) into ext.  Keywords are case-insensitive. */
void smtp_ehlo_line(struct smtp_ext *ext, int index, const char *text, size_t len);

/* ---- sessions ---- */

struct smtp_client;

struct smtp_client_opts {
    const char *sid;                 /* session id for logs */
    const char *helo;                /* our EHLO/HELO name */
    const char *peer_name;           /* host name: SNI and logs ("" for a literal) */
    SSL_CTX *tls_ctx;                /* NULL: never STARTTLS */
    bool tls_required;               /* fail when STARTTLS is not offered or fails */
    const char *auth_user;           /* AUTH after EHLO (over TLS only); NULL: none */
    const char *auth_pass;
    bool no_chunking;                /* use DATA even when CHUNKING is offered */
    unsigned connect_timeout;        /* seconds; 0 = 30 */
    unsigned command_timeout;        /* seconds; 0 = 300 (RFC 5321 4.5.3.2) */
    unsigned data_timeout;           /* seconds for the final reply; 0 = 600 */
};

/* Why a session or transaction failed.  stage names the command that got
 * the failing reply (as a DSN's "in reply to" text): "connect",
 * "greeting", "EHLO", "HELO", "STARTTLS", "TLS", "AUTH", "MAIL FROM",
 * "RCPT TO", "DATA", "end of data", or NULL when nothing failed.
 * reply.code is 0 when there was no reply; error says why (connection
 * refused, timeout, connection lost, malformed reply). */
struct smtp_client_error {
    const char *stage;
    struct smtp_client_reply reply;
    char error[160];
};

/* status 0: ready (ext filled); -1: failed (err filled); the session is
 * then unusable and should be freed. */
typedef void smtp_client_open_fn(void *arg, struct smtp_client *c, int status,
                                 const struct smtp_client_error *err);

/* Creates a session and connects to sa.  open_cb runs once, later (never
 * from inside this call).  NULL only when out of memory. */
struct smtp_client *smtp_client_connect(struct event_base *base, const struct smtp_client_opts *opt,
                                        const struct sockaddr *sa, socklen_t salen,
                                        smtp_client_open_fn *open_cb, void *arg);
/* The extensions of the current EHLO (valid once open). */
const struct smtp_ext *smtp_client_ext(const struct smtp_client *c);
/* True once STARTTLS succeeded; desc gets "TLSv1.3 cipher" or "". */
bool smtp_client_tls(const struct smtp_client *c, char *desc, size_t size);

struct smtp_client_tx {
    const char *mail_from;           /* reverse path without <>; "" = null sender */
    const char *mail_params;         /* appended to MAIL FROM:<...> (" SIZE=1 ..."), or NULL */
    size_t n_rcpts;
    const char *const *rcpts;        /* forward paths without <> */
    const char *const *rcpt_params;  /* appended to each RCPT TO, or NULL */
    int fd;                          /* the message (CRLF lines), read with pread from 0 */
    uint64_t size;                   /* bytes to send from fd */
};

struct smtp_client_result {
    bool conn_ok;                    /* the session can carry another transaction */
    struct smtp_client_error err;    /* what ended the transaction early, if anything */
    size_t n_rcpts, n_accepted;
    const struct smtp_client_reply *rcpt;   /* one per recipient (code 0: no reply) */
    struct smtp_client_reply data;   /* final reply after the content (code 0: not reached) */
};
/* res is valid during the call only. */
typedef void smtp_client_tx_fn(void *arg, struct smtp_client *c, const struct smtp_client_result *res);

/* Starts a transaction on an open, idle session (the strings are copied;
 * fd must stay open until cb).  0, or -1 (not idle: cb will not run). */
int smtp_client_send(struct smtp_client *c, const struct smtp_client_tx *tx, smtp_client_tx_fn *cb,
                     void *arg);
/* Sends QUIT and lets the session go: it closes and frees itself after
 * the reply (or a short timeout).  No session callback runs after this;
 * closed (may be NULL) runs once the connection is really gone — at once
 * when there was nothing to say QUIT on — so a caller counting open
 * connections can count this one until then. */
typedef void smtp_client_closed_fn(void *arg);
void smtp_client_quit(struct smtp_client *c, smtp_client_closed_fn *closed, void *arg);
/* Closes at once and frees (deferred when called inside a callback).
 * No callback runs after this. */
void smtp_client_free(struct smtp_client *c);
#endif
