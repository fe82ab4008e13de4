/*
 * HTTP/1.1 request parsing: see http_parse.h for what is accepted.
 * The head is collected byte by byte into p->head (so any split of the
 * input gives the same result), then parsed in place: lines are cut with
 * NULs and headers point into the buffer.
 */
#include "http/http_parse.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void http_parser_init(struct http_parser *p, size_t body_max)
{
    memset(p, 0, sizeof(*p));
    p->body_max = body_max;
    p->state = HTTP_P_HEAD;
}

void http_parser_reset(struct http_parser *p)
{
    size_t max = p->body_max;
    free(p->req.body);
    http_parser_init(p, max);
}

static enum http_parse_state fail(struct http_parser *p, int status, const char *text)
{
    p->state = HTTP_P_ERROR;
    p->error_status = status;
    p->error_text = text;
    return HTTP_P_ERROR;
}

/* RFC 9110 5.6.2 tchar. */
static bool is_tchar(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return true;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int http_percent_decode(const char *in, size_t len, bool plus_space, char *out, size_t size)
{
    size_t o = 0;
    int rc = 0;
    if (size == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '%' && i + 2 < len && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
            c = (char)(hexval(in[i + 1]) * 16 + hexval(in[i + 2]));
            i += 2;
            if (c == '\0') {
                rc = -1;
                break;
            }
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        if (o + 1 >= size) {
            rc = -1;
            break;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return rc < 0 ? -1 : (int)o;
}

/* Request line: method SP request-target SP HTTP-version (RFC 9112 3). */
static enum http_parse_state parse_request_line(struct http_parser *p, char *line)
{
    struct http_request *r = &p->req;
    char *sp1 = strchr(line, ' ');
    if (sp1 == NULL)
        return fail(p, 400, "malformed request line");
    char *target = sp1 + 1;
    char *sp2 = strchr(target, ' ');
    if (sp2 == NULL || strchr(sp2 + 1, ' ') != NULL)
        return fail(p, 400, "malformed request line");
    size_t mlen = (size_t)(sp1 - line), tlen = (size_t)(sp2 - target);
    if (!is_token(line, mlen))
        return fail(p, 501, "bad method");
    if (mlen >= sizeof(r->method))
        return fail(p, 501, "method too long");
    if (tlen >= sizeof(r->target))
        return fail(p, 414, "request target too long");
    if (tlen == 0)
        return fail(p, 400, "empty request target");
    const char *ver = sp2 + 1;
    if (strncmp(ver, "HTTP/", 5) != 0 || ver[5] < '0' || ver[5] > '9' || ver[6] != '.' ||
        ver[7] < '0' || ver[7] > '9' || ver[8] != '\0')
        return fail(p, 400, "malformed HTTP version");
    if (ver[5] != '1')
        return fail(p, 505, "HTTP version not supported");
    r->version_minor = ver[7] - '0';
    memcpy(r->method, line, mlen);
    r->method[mlen] = '\0';
    memcpy(r->target, target, tlen);
    r->target[tlen] = '\0';
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)target[i] <= 0x20 || target[i] == 0x7f)
            return fail(p, 400, "bad character in request target");
    char *hash = strchr(r->target, '#');
    if (hash)
        *hash = '\0';
    /* absolute-form (RFC 9112 3.2.2): keep the path and query only */
    const char *t = r->target;
    if (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0) {
        t = strstr(t, "//") + 2;
        t += strcspn(t, "/?");
    }
    if (*t != '/' && !(strcmp(r->method, "OPTIONS") == 0 && strcmp(t, "*") == 0)) {
        if (*t != '\0' && *t != '?')
            return fail(p, 400, "bad request target");
    }
    size_t plen = strcspn(t, "?");
    r->query = t[plen] == '?' ? t + plen + 1 : t + plen;
    if (plen == 0) {
        strcpy(r->path, "/");
    } else if (http_percent_decode(t, plen, false, r->path, sizeof(r->path)) < 0) {
        return fail(p, 400, "bad escape in path");
    }
    return HTTP_P_HEAD;
}

static bool value_ok(const char *v)
{
    for (; *v; v++) {
        unsigned char c = (unsigned char)*v;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

static char *trim_ows(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* Content-Length (RFC 9110 8.6): digits only; repeated values must agree. */
static enum http_parse_state header_length(struct http_parser *p, const char *v)
{
    struct http_request *r = &p->req;
    uint64_t n = 0;
    if (*v == '\0')
        return fail(p, 400, "bad Content-Length");
    for (const char *c = v; *c; c++) {
        if (*c < '0' || *c > '9' || n > (UINT64_MAX - 9) / 10)
            return fail(p, 400, "bad Content-Length");
        n = n * 10 + (uint64_t)(*c - '0');
    }
    if (r->has_length && r->content_length != n)
        return fail(p, 400, "conflicting Content-Length");
    r->has_length = true;
    r->content_length = n;
    return HTTP_P_HEAD;
}

static bool list_has_token(const char *v, const char *tok)
{
    size_t tl = strlen(tok);
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        size_t n = strcspn(v, ",");
        size_t m = n;
        while (m > 0 && (v[m - 1] == ' ' || v[m - 1] == '\t'))
            m--;
        if (m == tl && strncasecmp(v, tok, tl) == 0)
            return true;
        v += n;
    }
    return false;
}

static enum http_parse_state parse_header_line(struct http_parser *p, char *line, bool *te_r)
{
    struct http_request *r = &p->req;
    if (line[0] == ' ' || line[0] == '\t')
        return fail(p, 400, "obsolete line folding");
    char *colon = strchr(line, ':');
    if (colon == NULL || !is_token(line, (size_t)(colon - line)))
        return fail(p, 400, "malformed header field");
    if (r->n_headers >= HTTP_HEADERS_MAX)
        return fail(p, 431, "too many header fields");
    *colon = '\0';
    char *v = trim_ows(colon + 1);
    if (!value_ok(v))
        return fail(p, 400, "bad character in header value");
    r->headers[r->n_headers].name = line;
    r->headers[r->n_headers].value = v;
    r->n_headers++;
    if (strcasecmp(line, "Content-Length") == 0)
        return header_length(p, v);
    if (strcasecmp(line, "Transfer-Encoding") == 0)
        *te_r = true;
    else if (strcasecmp(line, "Connection") == 0 && list_has_token(v, "close"))
        r->keep_alive = false;
    else if (strcasecmp(line, "Connection") == 0 && list_has_token(v, "keep-alive"))
        r->keep_alive = true;
    else if (strcasecmp(line, "Expect") == 0 && strcasecmp(v, "100-continue") == 0)
        r->expect_continue = true;
    return HTTP_P_HEAD;
}

/* Cuts the next line (LF or CRLF ended) from *pos; NULL at the end. */
static char *next_line(char **pos, bool *bare_cr_r)
{
    char *s = *pos;
    char *nl = strchr(s, '\n');
    if (nl == NULL)
        return NULL;
    *nl = '\0';
    *pos = nl + 1;
    if (nl > s && nl[-1] == '\r')
        nl[-1] = '\0';
    if (strchr(s, '\r'))
        *bare_cr_r = true;
    return s;
}

static enum http_parse_state parse_head(struct http_parser *p)
{
    struct http_request *r = &p->req;
    p->head[p->head_len] = '\0';
    if (memchr(p->head, '\0', p->head_len))
        return fail(p, 400, "NUL in request head");
    char *pos = p->head;
    bool bare_cr = false, te = false;
    char *line = next_line(&pos, &bare_cr);
    if (line == NULL || bare_cr)
        return fail(p, 400, "malformed request line");
    if (parse_request_line(p, line) == HTTP_P_ERROR)
        return HTTP_P_ERROR;
    r->keep_alive = r->version_minor >= 1;
    while ((line = next_line(&pos, &bare_cr)) != NULL && line[0] != '\0') {
        if (bare_cr)
            return fail(p, 400, "bare CR in header");
        if (parse_header_line(p, line, &te) == HTTP_P_ERROR)
            return HTTP_P_ERROR;
    }
    if (te && r->has_length)
        return fail(p, 400, "Content-Length with Transfer-Encoding");
    if (te)
        return fail(p, 501, "Transfer-Encoding not supported; send Content-Length");
    if (r->has_length && r->content_length > p->body_max)
        return fail(p, 413, "request body too large");
    if (!r->has_length || r->content_length == 0)
        return p->state = HTTP_P_DONE;
    r->body = malloc((size_t)r->content_length + 1);
    if (r->body == NULL)
        return fail(p, 413, "request body too large");
    r->body[0] = '\0';
    return p->state = HTTP_P_BODY;
}

/* True when the last byte added ends the head: an empty line. */
static bool head_ended(const struct http_parser *p)
{
    size_t n = p->head_len;
    if (n >= 2 && p->head[n - 1] == '\n' && p->head[n - 2] == '\n')
        return true;
    return n >= 3 && p->head[n - 1] == '\n' && p->head[n - 2] == '\r' && p->head[n - 3] == '\n';
}

static size_t feed_head(struct http_parser *p, const char *data, size_t len)
{
    size_t i = 0;
    for (; i < len && p->state == HTTP_P_HEAD; i++) {
        char c = data[i];
        /* RFC 9112 2.2: empty lines before the request line are ignored */
        if (p->head_len == 0 && (c == '\r' || c == '\n'))
            continue;
        if (p->head_len >= HTTP_HEAD_MAX) {
            bool in_line = memchr(p->head, '\n', p->head_len) == NULL;
            fail(p, in_line ? 414 : 431, in_line ? "request line too long" : "request head too large");
            break;
        }
        p->head[p->head_len++] = c;
        if (c == '\n' && head_ended(p)) {
            i++;
            parse_head(p);
            break;
        }
        if (p->head_len > HTTP_TARGET_MAX + HTTP_METHOD_MAX + 16 &&
            memchr(p->head, '\n', p->head_len) == NULL) {
            fail(p, 414, "request line too long");
            break;
        }
    }
    return i;
}

enum http_parse_state http_parser_feed(struct http_parser *p, const char *data, size_t len,
                                       size_t *consumed_r)
{
    size_t used = 0;
    if (p->state == HTTP_P_HEAD)
        used = feed_head(p, data, len);
    if (p->state == HTTP_P_BODY && used < len) {
        struct http_request *r = &p->req;
        size_t want = (size_t)r->content_length - r->body_len;
        size_t n = len - used < want ? len - used : want;
        memcpy(r->body + r->body_len, data + used, n);
        r->body_len += n;
        r->body[r->body_len] = '\0';
        used += n;
        if (r->body_len == r->content_length)
            p->state = HTTP_P_DONE;
    }
    *consumed_r = used;
    return p->state;
}

const char *http_request_header(const struct http_request *req, const char *name)
{
    for (int i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

bool http_query_get(const char *query, const char *name, char *out, size_t size)
{
    size_t nl = strlen(name);
    const char *q = query ? query : "";
    while (*q) {
        size_t seg = strcspn(q, "&;");
        const char *eq = memchr(q, '=', seg);
        size_t klen = eq ? (size_t)(eq - q) : seg;
        char key[128];
        if (http_percent_decode(q, klen, true, key, sizeof(key)) >= 0 && strlen(key) == nl &&
            memcmp(key, name, nl) == 0) {
            if (eq)
                http_percent_decode(eq + 1, seg - klen - 1, true, out, size);
            else if (size > 0)
                out[0] = '\0';
            return true;
        }
        q += seg;
        if (*q)
            q++;
    }
    return false;
}
