/*
 * HTTP/1.1 request parser (RFC 9110, RFC 9112): pure, incremental and
 * bounded.  Bytes are fed as they arrive, in chunks of any size; the
 * parser copies the request head into a fixed buffer and the body into a
 * buffer capped when the request says how big it is.  No I/O, no
 * allocation except the body, no global state: fuzzed by
 * tests/fuzz/fuzz_http.c.
 *
 * Accepted: origin-form and absolute-form targets, HTTP/1.0 and 1.1,
 * CRLF or bare LF line ends in the head (RFC 9112 2.2), bodies framed by
 * Content-Length.  Refused with a status for the reply:
 *   400  malformed request line or header, obs-fold, bare CR, NUL,
 *        conflicting Content-Length, Content-Length with Transfer-Encoding
 *        (request smuggling), %00 in the path
 *   413  body over the limit given to http_parser_init()
 *   414  request target over HTTP_TARGET_MAX
 *   431  head over HTTP_HEAD_MAX or more than HTTP_HEADERS_MAX fields
 *   501  Transfer-Encoding (chunked bodies are not supported: send
 *        Content-Length), or a method that is not a token
 *   505  a version other than HTTP/1.x
 */
#ifndef POSTEL_HTTP_PARSE_H
#define POSTEL_HTTP_PARSE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Caps (stricter than common servers: this serves a UI and an API). */
#define HTTP_HEAD_MAX       16384   /* request line + headers + empty line */
#define HTTP_TARGET_MAX     4096    /* request target as sent */
#define HTTP_HEADERS_MAX    64      /* header fields */
#define HTTP_METHOD_MAX     16
#define HTTP_BODY_MAX_DEFAULT (32u << 20)  /* API bodies (send with attachments) */

struct http_header {
    const char *name;               /* as sent; compare case-insensitively */
    const char *value;              /* surrounding white space removed */
};

struct http_request {
    char method[HTTP_METHOD_MAX];
    char target[HTTP_TARGET_MAX];   /* as sent */
    char path[HTTP_TARGET_MAX];     /* percent-decoded path, starts with '/' */
    const char *query;              /* raw query after '?' ("" if none), in target */
    int version_minor;              /* HTTP/1.<minor> */
    struct http_header headers[HTTP_HEADERS_MAX];
    int n_headers;
    bool has_length;
    uint64_t content_length;
    bool keep_alive;                /* from the version and Connection */
    bool expect_continue;           /* "Expect: 100-continue" */
    char *body;                     /* malloc'ed, NUL-terminated; NULL if none */
    size_t body_len;
};

enum http_parse_state { HTTP_P_HEAD, HTTP_P_BODY, HTTP_P_DONE, HTTP_P_ERROR };

struct http_parser {
    enum http_parse_state state;
    size_t body_max;
    size_t head_len;
    char head[HTTP_HEAD_MAX + 1];   /* fields point into this copy */
    struct http_request req;
    int error_status;               /* HTTP status to answer with */
    const char *error_text;         /* static text */
};

/* Prepares p for a request whose body may be at most body_max bytes. */
void http_parser_init(struct http_parser *p, size_t body_max);
/* Frees the body and prepares p for the next request. */
void http_parser_reset(struct http_parser *p);
/* Feeds data.  *consumed_r gets how many bytes were used: bytes after the
 * end of a complete request are not consumed (they belong to the next,
 * pipelined, request).  Returns the state: HTTP_P_HEAD or HTTP_P_BODY (need
 * more), HTTP_P_DONE (p->req is complete), HTTP_P_ERROR (answer
 * p->error_status and close). */
enum http_parse_state http_parser_feed(struct http_parser *p, const char *data, size_t len,
                                       size_t *consumed_r);

/* Header value by name (ASCII case-insensitive), first occurrence, or NULL. */
const char *http_request_header(const struct http_request *req, const char *name);
/* Finds parameter name in a query string ("a=1&b=x%20y") and decodes it
 * (%XX, '+' as space) into out.  Returns true if present.  Decoded NULs
 * end the value. */
bool http_query_get(const char *query, const char *name, char *out, size_t size);
/* Decodes %XX in place-safe fashion from in[0..len) into out (size bytes,
 * always terminated); plus_space turns '+' into ' '.  Returns -1 when a %00
 * or an overflow was met, else the decoded length. */
int http_percent_decode(const char *in, size_t len, bool plus_space, char *out, size_t size);
#endif
