/*
 * HTTP request parser: table of requests with the expected outcome, each
 * fed whole and byte by byte (the result must not depend on the split).
 */
#include <stdlib.h>
#include <string.h>

#include "http/http_parse.h"
#include "unit.h"

struct http_case {
    const char *name;
    const char *input;
    enum http_parse_state state;   /* after feeding everything */
    int status;                    /* error status, or 0 */
    const char *method, *path, *query, *body;
};

static const struct http_case cases[] = {
    { "simple get", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_P_DONE, 0, "GET", "/", "", NULL },
    { "query", "GET /api/v1/search?query=a%20b&start=2 HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_P_DONE, 0,
      "GET", "/api/v1/search", "query=a%20b&start=2", NULL },
    { "decoded path", "GET /api/v1/message/a%2Fb HTTP/1.1\r\n\r\n", HTTP_P_DONE, 0, "GET",
      "/api/v1/message/a/b", "", NULL },
    { "bare LF", "GET /x HTTP/1.0\nA: b\n\n", HTTP_P_DONE, 0, "GET", "/x", "", NULL },
    { "leading CRLF", "\r\n\r\nGET /x HTTP/1.1\r\n\r\n", HTTP_P_DONE, 0, "GET", "/x", "", NULL },
    { "body", "PUT /m HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", HTTP_P_DONE, 0, "PUT", "/m", "",
      "hello" },
    { "partial body", "PUT /m HTTP/1.1\r\nContent-Length: 10\r\n\r\nhello", HTTP_P_BODY, 0, "PUT",
      "/m", "", NULL },
    { "absolute form", "GET http://h:1/p?q=1 HTTP/1.1\r\n\r\n", HTTP_P_DONE, 0, "GET", "/p", "q=1",
      NULL },
    { "fragment dropped", "GET /p#frag HTTP/1.1\r\n\r\n", HTTP_P_DONE, 0, "GET", "/p", "", NULL },
    { "incomplete head", "GET / HTTP/1.1\r\nHost: x\r\n", HTTP_P_HEAD, 0, NULL, NULL, NULL, NULL },
    { "no version", "GET /\r\n\r\n", HTTP_P_ERROR, 400, NULL, NULL, NULL, NULL },
    { "http2", "GET / HTTP/2.0\r\n\r\n", HTTP_P_ERROR, 505, NULL, NULL, NULL, NULL },
    { "bad method", "G(T / HTTP/1.1\r\n\r\n", HTTP_P_ERROR, 501, NULL, NULL, NULL, NULL },
    { "obs fold", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", HTTP_P_ERROR, 400, NULL, NULL, NULL, NULL },
    { "no colon", "GET / HTTP/1.1\r\nAb\r\n\r\n", HTTP_P_ERROR, 400, NULL, NULL, NULL, NULL },
    { "space before colon", "GET / HTTP/1.1\r\nA : b\r\n\r\n", HTTP_P_ERROR, 400, NULL, NULL, NULL,
      NULL },
    { "two lengths", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      HTTP_P_ERROR, 400, NULL, NULL, NULL, NULL },
    { "same lengths", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
      HTTP_P_DONE, 0, "POST", "/", "", "x" },
    { "bad length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", HTTP_P_ERROR, 400, NULL, NULL,
      NULL, NULL },
    { "huge length", "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
      HTTP_P_ERROR, 400, NULL, NULL, NULL, NULL },
    { "over body max", "POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n", HTTP_P_ERROR, 413, NULL,
      NULL, NULL, NULL },
    { "smuggling", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
      HTTP_P_ERROR, 400, NULL, NULL, NULL, NULL },
    { "chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_P_ERROR, 501, NULL,
      NULL, NULL, NULL },
    { "NUL in path", "GET /a%00b HTTP/1.1\r\n\r\n", HTTP_P_ERROR, 400, NULL, NULL, NULL, NULL },
    { "NUL byte", "GET /a HTTP/1.1\r\nA: \0\r\n\r\n", HTTP_P_ERROR, 400, NULL, NULL, NULL, NULL },
    { "control in value", "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", HTTP_P_ERROR, 400, NULL, NULL, NULL,
      NULL },
    { "bare CR", "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", HTTP_P_ERROR, 400, NULL, NULL, NULL, NULL },
    { "relative target", "GET abc HTTP/1.1\r\n\r\n", HTTP_P_ERROR, 400, NULL, NULL, NULL, NULL },
};

/* The inputs contain NULs: their length is given by the table below. */
static size_t case_len(const struct http_case *c)
{
    if (strcmp(c->name, "NUL byte") == 0)
        return strlen("GET /a HTTP/1.1\r\nA: ") + 1 + 4;
    return strlen(c->input);
}

static void check_case(const struct http_case *c, bool bytewise)
{
    struct http_parser *p = malloc(sizeof(*p));
    http_parser_init(p, 1000);
    size_t len = case_len(c), pos = 0;
    enum http_parse_state st = HTTP_P_HEAD;
    while (pos < len && st != HTTP_P_DONE && st != HTTP_P_ERROR) {
        size_t used = 0, n = bytewise ? 1 : len - pos;
        st = http_parser_feed(p, c->input + pos, n, &used);
        pos += used;
        if (used == 0 && st != HTTP_P_DONE && st != HTTP_P_ERROR)
            break;
    }
    if (st != c->state)
        fprintf(stderr, "case \"%s\"%s\n", c->name, bytewise ? " (byte by byte)" : "");
    CHECK_EQ_INT(st, c->state);
    if (c->status)
        CHECK_EQ_INT(p->error_status, c->status);
    if (c->method && st != HTTP_P_ERROR) {
        CHECK_EQ_STR(p->req.method, c->method);
        CHECK_EQ_STR(p->req.path, c->path);
        CHECK_EQ_STR(p->req.query, c->query);
    }
    if (c->body)
        CHECK(p->req.body && p->req.body_len == strlen(c->body) &&
              memcmp(p->req.body, c->body, p->req.body_len) == 0);
    http_parser_reset(p);
    free(p);
}

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_case(&cases[i], false);
        check_case(&cases[i], true);
    }
}

static void test_headers_and_keepalive(void)
{
    struct http_parser *p = malloc(sizeof(*p));
    http_parser_init(p, 100);
    const char *in = "GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\nX-Y:  v w  \r\n\r\nGET /2";
    size_t used;
    CHECK_EQ_INT(http_parser_feed(p, in, strlen(in), &used), HTTP_P_DONE);
    CHECK_EQ_INT(used, strlen(in) - 6); /* the pipelined request is left */
    CHECK(!p->req.keep_alive);
    CHECK_EQ_STR(http_request_header(&p->req, "x-y"), "v w");
    CHECK_EQ_STR(http_request_header(&p->req, "HOST"), "a");
    CHECK(http_request_header(&p->req, "nope") == NULL);
    http_parser_reset(p);
    in = "GET / HTTP/1.0\r\n\r\n";
    CHECK_EQ_INT(http_parser_feed(p, in, strlen(in), &used), HTTP_P_DONE);
    CHECK(!p->req.keep_alive);
    http_parser_reset(p);
    in = "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    CHECK_EQ_INT(http_parser_feed(p, in, strlen(in), &used), HTTP_P_BODY);
    CHECK(p->req.expect_continue && p->req.keep_alive);
    http_parser_reset(p);
    free(p);
}

static void test_limits(void)
{
    struct http_parser *p = malloc(sizeof(*p));
    size_t used;
    /* request line too long: 414 */
    char *big = malloc(HTTP_HEAD_MAX + 64);
    memset(big, 'a', HTTP_HEAD_MAX + 63);
    memcpy(big, "GET /", 5);
    big[HTTP_HEAD_MAX + 63] = '\0';
    http_parser_init(p, 100);
    CHECK_EQ_INT(http_parser_feed(p, big, strlen(big), &used), HTTP_P_ERROR);
    CHECK_EQ_INT(p->error_status, 414);
    /* head too large: 431 */
    http_parser_reset(p);
    struct strbuf_like { char *d; size_t n; } sb = { malloc(HTTP_HEAD_MAX * 2), 0 };
    sb.n = (size_t)sprintf(sb.d, "GET / HTTP/1.1\r\n");
    while (sb.n < HTTP_HEAD_MAX + 100)
        sb.n += (size_t)sprintf(sb.d + sb.n, "X-A: %0100d\r\n", 1);
    CHECK_EQ_INT(http_parser_feed(p, sb.d, sb.n, &used), HTTP_P_ERROR);
    CHECK_EQ_INT(p->error_status, 431);
    /* too many fields: 431 */
    http_parser_reset(p);
    sb.n = (size_t)sprintf(sb.d, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < HTTP_HEADERS_MAX + 1; i++)
        sb.n += (size_t)sprintf(sb.d + sb.n, "X-%d: 1\r\n", i);
    sb.n += (size_t)sprintf(sb.d + sb.n, "\r\n");
    CHECK_EQ_INT(http_parser_feed(p, sb.d, sb.n, &used), HTTP_P_ERROR);
    CHECK_EQ_INT(p->error_status, 431);
    http_parser_reset(p);
    free(sb.d);
    free(big);
    free(p);
}

static void test_query(void)
{
    char out[64];
    CHECK(http_query_get("a=1&query=from%3Ax+y&b", "query", out, sizeof(out)));
    CHECK_EQ_STR(out, "from:x y");
    CHECK(http_query_get("a=1&b", "b", out, sizeof(out)));
    CHECK_EQ_STR(out, "");
    CHECK(!http_query_get("a=1", "query", out, sizeof(out)));
    CHECK(http_query_get("x=%zz", "x", out, sizeof(out)));
    CHECK_EQ_STR(out, "%zz");
    CHECK_EQ_INT(http_percent_decode("a%00", 4, false, out, sizeof(out)), -1);
    CHECK_EQ_INT(http_percent_decode("abcdef", 6, false, out, 4), -1);
}

int main(void)
{
    RUN(test_table);
    RUN(test_headers_and_keepalive);
    RUN(test_limits);
    RUN(test_query);
    return unit_report("http_parse");
}
