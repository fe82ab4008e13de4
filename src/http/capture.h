/*
 * Capture mode's web side (inside src/http only): the Mailpit-compatible
 * REST API, the message views it serves, the search, the deliverability
 * checks and the live updates.  docs/capture-api.md is the user's view.
 *
 * Messages are the capture account's INBOX in the normal store; a
 * message's API ID is the base name of its stored file (stable across
 * restarts).  A per-process cache keeps what the list and the search need
 * (addresses, subject, snippet, body text) so a listing does not reparse
 * every file.
 */
#ifndef POSTEL_HTTP_CAPTURE_H
#define POSTEL_HTTP_CAPTURE_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

struct store;
struct mime_message;
struct mime_part;

#define CAPTURE_ID_MAX 64
#define CAPTURE_SEARCH_TEXT_MAX (32u * 1024)   /* body text kept for free-text search */
#define CAPTURE_SNIPPET_MAX 250
#define CAPTURE_DECODE_MAX (64u << 20)          /* decoded part cap */
#define CAPTURE_PROVIDER_LIMIT (25u << 20)      /* Gmail/Outlook size limit */

/* How released messages reach the relay (capture_release.c). */
enum capture_relay_tls {
    CAPTURE_RELAY_STARTTLS,       /* STARTTLS when offered (default) */
    CAPTURE_RELAY_REQUIRE,        /* STARTTLS or fail */
    CAPTURE_RELAY_SMTPS,          /* implicit TLS */
    CAPTURE_RELAY_OFF             /* plain text only */
};
struct capture_relay {
    char addr[300];               /* "host:port", "" = release not configured */
    enum capture_relay_tls tls;
    bool insecure;                /* do not verify the relay's certificate */
    char user[256];               /* AUTH user name, "" = no AUTH */
    char pass[256];
};

/* Settings of the capture web side (set by cli_capture before server_run). */
struct capture_settings {
    struct store *store;          /* the capture store handle */
    int64_t account_id;           /* CAPTURE_ACCOUNT's id */
    int max_messages;             /* prune past this (0: no limit) */
    struct capture_relay relay;   /* for release */
    char smtp_addr[300];          /* shown by /api/v1/info and the UI */
    char dns[300];                /* --dns: "host:port", "system", "" = no DNS checks */
    const char *version;
};

/* ---- capture_msg.c: parsing one stored message ---- */

/* What the list and the search need; owned by the cache. */
struct capture_meta {
    char id[CAPTURE_ID_MAX];
    char file[160];
    json_t *summary;              /* MessageSummary without Read */
    char *search;                 /* lower-cased: addresses, subject, body text */
    char *from, *to, *cc, *subject, *message_id;  /* lower-cased, for from:/to:/subject: */
    int attachments;
    int64_t created;              /* internaldate, seconds */
    int64_t date;                 /* Date header, seconds (created if none) */
    uint64_t size;
};

/* Loads the file of a stored message into memory (malloc'ed *data_r).
 * 0 or -1. */
int capture_file_read(struct store *st, const char *file, char **data_r, size_t *len_r);
/* Builds the meta for a message. NULL on out of memory. */
struct capture_meta *capture_meta_build(const char *id, const char *file, const char *data,
                                        size_t len, int64_t created, uint64_t size);
void capture_meta_free(struct capture_meta *m);

/* Full Message JSON (GET /api/v1/message/{ID}). */
json_t *capture_message_json(const struct capture_meta *meta, const struct mime_message *msg,
                             bool read);
/* {"Name": ["value", ...]} in header order (decoded RFC 2047). */
json_t *capture_headers_json(const struct mime_message *msg);
/* Finds the part with an IMAP-style PartID ("1", "2.1"); NULL if none. */
const struct mime_part *capture_part_find(const struct mime_message *msg, const char *part_id);
/* The HTML body (UTF-8) of msg into out, cid: references replaced by data:
 * URIs of the inline parts.  0, or -1 when there is no HTML body. */
int capture_html_for_view(const struct mime_message *msg, struct strbuf *out);
/* Text and HTML bodies (first non-attachment text/plain and text/html). */
const struct mime_part *capture_body_part(const struct mime_message *msg, const char *subtype);
/* Decoded value of a header (RFC 2047), "" when absent; into out. */
void capture_header_text(const struct mime_message *msg, const char *name, struct strbuf *out);
/* Filename of a part (Content-Disposition filename, then Content-Type name). */
void capture_part_filename(const struct mime_part *p, struct strbuf *out);
/* RFC 3339 UTC with milliseconds. */
void capture_time_rfc3339(int64_t t, char *buf, size_t size);
/* RFC 5322 date to Unix time; -1 if it cannot be read. */
int64_t capture_parse_date(const char *s);

/* ---- capture_search.c ---- */

struct capture_query;
/* Parses a Mailpit-style search ("from:a subject:\"x y\" is:unread -foo
 * has:attachment before:2024-01-02 after:... free text").  NULL with
 * *error_r set (a message for a 400 reply, or "out of memory"). */
struct capture_query *capture_query_parse(const char *q, const char **error_r);
void capture_query_free(struct capture_query *q);
bool capture_query_match(const struct capture_query *q, const struct capture_meta *m, bool read);

/* ---- capture_check.c: deliverability checks ---- */

/* {"HTML": ..., "Links": ..., "Spam": ..., "Auth": ..., "Size": ...} and
 * the Mailpit-shaped pieces. */
json_t *capture_check_html(const struct mime_message *msg);
json_t *capture_check_links(const struct mime_message *msg);
json_t *capture_check_spam(const struct mime_message *msg);
json_t *capture_check_auth(const struct mime_message *msg);
json_t *capture_check_size(uint64_t size);
/* With DNS (nameserver "host:port" or "system"): verifies the DKIM
 * signatures of data and evaluates DMARC (DKIM only), updating the object
 * capture_check_auth() made.  Blocking: call from the pool. */
void capture_check_auth_verify(json_t *auth, const char *data, size_t len,
                               const char *nameserver);

/* ---- capture_api.c ---- */

/* Registers the API, UI and event routes with the HTTP server. */
void capture_api_register(const struct capture_settings *settings);
/* The SMTP commit hook: indexes the new message, prunes, broadcasts. */
void capture_on_commit(void *arg, const char *queue_id, uint64_t size);
/* Loads the meta of every stored message (start-up). */
int capture_cache_warm(void);

/* ---- capture_release.c ---- */
/* Sends data to the relay (TLS and AUTH as configured, see the file's
 * head), blocking: call from the pool.  0, or -1 with err filled. */
int capture_smtp_send(const struct capture_relay *relay, const char *helo, const char *from,
                      const char *const *rcpts, size_t n_rcpts, const char *data, size_t len,
                      char *err, size_t err_size);
const char *capture_relay_tls_name(enum capture_relay_tls t);
/* "starttls", "require", "smtps", "off"; 0 or -1. */
int capture_relay_tls_parse(const char *s, enum capture_relay_tls *t);

/* ---- web_assets.c ---- */
struct web_asset {
    const char *path;             /* "/index.html" */
    const char *content_type;
    const unsigned char *data;
    size_t len;
};
const struct web_asset *web_asset_find(const char *path);
#endif
