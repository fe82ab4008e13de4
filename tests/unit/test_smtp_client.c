/*
 * SMTP client: the reply parser as tables (each input whole and byte by
 * byte), EHLO keywords, and transcripts of whole sessions against a
 * scripted server on 127.0.0.1 (client lines in order, exact bytes of
 * the content).
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "smtp/smtp_client.h"
#include "unit.h"

/* ---- reply parser ---- */

struct reply_case {
    const char *in;
    int rc;                 /* of the first reply */
    int code;
    const char *enhanced;
    const char *text;
    int lines;
};

static const struct reply_case reply_cases[] = {
    { "250 OK\r\n", SMTP_REPLY_DONE, 250, "", "OK", 1 },
    { "250\r\n", SMTP_REPLY_DONE, 250, "", "", 1 },
    { "220 mx ready\n", SMTP_REPLY_DONE, 220, "", "mx ready", 1 },
    { "550 5.1.1 User unknown\r\n", SMTP_REPLY_DONE, 550, "5.1.1", "5.1.1 User unknown", 1 },
    { "451 4.7.1 Greylisted, try later\r\n", SMTP_REPLY_DONE, 451, "4.7.1",
      "4.7.1 Greylisted, try later", 1 },
    { "550 4.1.1 class mismatch\r\n", SMTP_REPLY_DONE, 550, "", "4.1.1 class mismatch", 1 },
    { "550 5.1.1000 too long detail\r\n", SMTP_REPLY_DONE, 550, "", "5.1.1000 too long detail", 1 },
    { "250 2.0.0\r\n", SMTP_REPLY_DONE, 250, "2.0.0", "2.0.0", 1 },
    { "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", SMTP_REPLY_DONE, 250, "",
      "mx.example\nPIPELINING\nSIZE 1000", 3 },
    { "550-5.7.1 first\r\n550 5.7.1 second\r\n", SMTP_REPLY_DONE, 550, "5.7.1",
      "5.7.1 first\n5.7.1 second", 2 },
    { "250 tab\there\r\n", SMTP_REPLY_DONE, 250, "", "tab here", 1 },
    { "250-partial\r\n", SMTP_REPLY_MORE, 0, NULL, NULL, 0 },
    { "25 short\r\n", SMTP_REPLY_BAD, 0, NULL, NULL, 0 },
    { "abc def\r\n", SMTP_REPLY_BAD, 0, NULL, NULL, 0 },
    { "250x\r\n", SMTP_REPLY_BAD, 0, NULL, NULL, 0 },
    { "650 no such class\r\n", SMTP_REPLY_BAD, 0, NULL, NULL, 0 },
    { "150 no\r\n", SMTP_REPLY_BAD, 0, NULL, NULL, 0 },
    { "250-a\r\n251 b\r\n", SMTP_REPLY_BAD, 0, NULL, NULL, 0 },
    { "\r\n", SMTP_REPLY_BAD, 0, NULL, NULL, 0 },
};

/* Feeds in whole (step 0) or step bytes at a time; returns the first
 * non-MORE result (or MORE at the end). */
static int feed(struct smtp_reply_parser *p, const char *in, size_t len, size_t step,
                size_t *consumed_r)
{
    size_t off = 0;
    while (off < len) {
        size_t n = step ? (len - off < step ? len - off : step) : len - off;
        size_t used = 0;
        int rc = smtp_reply_parse(p, in + off, n, &used);
        off += used;
        if (rc != SMTP_REPLY_MORE) {
            *consumed_r = off;
            return rc;
        }
    }
    *consumed_r = off;
    return SMTP_REPLY_MORE;
}

static void test_reply_table(void)
{
    for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++) {
        const struct reply_case *c = &reply_cases[i];
        for (size_t step = 0; step <= 1; step++) {
            struct smtp_reply_parser p;
            smtp_reply_parser_init(&p);
            size_t used;
            int rc = feed(&p, c->in, strlen(c->in), step, &used);
            CHECK_EQ_INT(rc, c->rc);
            if (rc != SMTP_REPLY_DONE)
                continue;
            CHECK_EQ_INT(p.reply.code, c->code);
            CHECK_EQ_STR(p.reply.enhanced, c->enhanced);
            CHECK_EQ_STR(p.reply.text, c->text);
            CHECK_EQ_INT(p.reply.n_lines, c->lines);
            CHECK_EQ_INT(used, strlen(c->in));
        }
    }
}

static void test_reply_sequence(void)
{
    const char *in = "220 hi\r\n250-a\r\n250 b\r\n354 go\r\n";
    struct smtp_reply_parser p;
    smtp_reply_parser_init(&p);
    size_t off = 0, used;
    int codes[3] = { 0 }, n = 0;
    while (off < strlen(in) && n < 3) {
        int rc = smtp_reply_parse(&p, in + off, strlen(in) - off, &used);
        off += used;
        if (rc == SMTP_REPLY_DONE)
            codes[n++] = p.reply.code;
    }
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(codes[0], 220);
    CHECK_EQ_INT(codes[1], 250);
    CHECK_EQ_INT(codes[2], 354);
    CHECK_EQ_STR(p.reply.text, "go");
}

static void test_reply_limits(void)
{
    struct smtp_reply_parser p;
    smtp_reply_parser_init(&p);
    char *line = malloc(SMTP_REPLY_LINE_MAX + 10);
    memset(line, 'x', SMTP_REPLY_LINE_MAX + 8);
    memcpy(line, "250 ", 4);
    memcpy(line + SMTP_REPLY_LINE_MAX + 6, "\r\n", 2);
    size_t used;
    CHECK_EQ_INT(smtp_reply_parse(&p, line, SMTP_REPLY_LINE_MAX + 8, &used), SMTP_REPLY_BAD);
    free(line);

    /* a long line within the cap is kept, cut at the text cap */
    smtp_reply_parser_init(&p);
    char big[1500];
    memset(big, 'y', sizeof(big));
    memcpy(big, "250 ", 4);
    memcpy(big + sizeof(big) - 2, "\r\n", 2);
    CHECK_EQ_INT(smtp_reply_parse(&p, big, sizeof(big), &used), SMTP_REPLY_DONE);
    CHECK_EQ_INT(strlen(p.reply.text), SMTP_REPLY_TEXT_MAX - 1);

    /* too many lines */
    smtp_reply_parser_init(&p);
    int rc = SMTP_REPLY_MORE;
    for (int i = 0; i < SMTP_REPLY_LINES_MAX + 1 && rc == SMTP_REPLY_MORE; i++)
        rc = smtp_reply_parse(&p, "250-x\r\n", 7, &used);
    CHECK_EQ_INT(rc, SMTP_REPLY_BAD);
}

static void test_reply_format(void)
{
    struct smtp_reply_parser p;
    smtp_reply_parser_init(&p);
    size_t used;
    const char *in = "550-5.1.1 The account\r\n550 5.1.1 does not exist\r\n";
    CHECK_EQ_INT(smtp_reply_parse(&p, in, strlen(in), &used), SMTP_REPLY_DONE);
    char buf[200];
    CHECK_EQ_STR(smtp_reply_format(&p.reply, buf, sizeof(buf)),
                 "550 5.1.1 The account 5.1.1 does not exist");
    CHECK_EQ_STR(smtp_reply_format(&p.reply, buf, 8), "550 5.1");
}

/* ---- EHLO ---- */

static void ehlo_lines(struct smtp_ext *e, const char *const *lines)
{
    memset(e, 0, sizeof(*e));
    for (int i = 0; lines[i] != NULL; i++)
        smtp_ehlo_line(e, i, lines[i], strlen(lines[i]));
}

static void test_ehlo(void)
{
    struct smtp_ext e;
    const char *const a[] = { "mx.example greets you", "PIPELINING", "SIZE 35882577", "8bitmime",
                              "STARTTLS", "AUTH LOGIN PLAIN XOAUTH2", "ENHANCEDSTATUSCODES",
                              "DSN", "SMTPUTF8", "CHUNKING", NULL };
    ehlo_lines(&e, a);
    CHECK(e.pipelining && e.eightbitmime && e.starttls && e.enhanced && e.dsn && e.smtputf8 &&
          e.chunking && e.size && e.auth_plain && e.auth_login);
    CHECK_EQ_INT(e.size_max, 35882577);

    const char *const b[] = { "STARTTLS is in the greeting and ignored", "AUTH=LOGIN", "SIZE",
                              "PIPELININGX", NULL };
    ehlo_lines(&e, b);
    CHECK(!e.starttls && !e.pipelining && e.auth_login && !e.auth_plain && e.size);
    CHECK_EQ_INT(e.size_max, 0);
}

/* ---- session transcripts ---- */

struct step {
    const char *expect;     /* prefix of the client line */
    const char *reply;      /* sent back (CRLF added per line by the writer), NULL none */
};

struct fake {
    struct event_base *base;
    struct evconnlistener *lev;
    struct bufferevent *bev;
    const struct step *steps;
    size_t n_steps, at;
    int mismatches;
    bool in_data;
    uint64_t bdat_left;
    bool bdat_last;
    struct strbuf content;
    char log[4096];
    int port;
};

static void fake_send(struct fake *f, const char *reply)
{
    if (reply != NULL)
        bufferevent_write(f->bev, reply, strlen(reply));
}

static void fake_step(struct fake *f, const char *line)
{
    size_t n = strlen(f->log);
    snprintf(f->log + n, sizeof(f->log) - n, "%s|", line);
    if (f->at >= f->n_steps) {
        f->mismatches++;
        return;
    }
    const struct step *s = &f->steps[f->at++];
    if (strncmp(line, s->expect, strlen(s->expect)) != 0) {
        fprintf(stderr, "fake server: expected \"%s\", got \"%s\"\n", s->expect, line);
        f->mismatches++;
    }
    if (strncmp(line, "BDAT ", 5) == 0) {
        f->bdat_left = strtoull(line + 5, NULL, 10);
        f->bdat_last = strstr(line, "LAST") != NULL;
        return; /* replied after the chunk */
    }
    if (s->reply != NULL && strncmp(s->reply, "354", 3) == 0)
        f->in_data = true;
    fake_send(f, s->reply);
}

static void fake_read(struct bufferevent *bev, void *arg)
{
    struct fake *f = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        if (f->bdat_left > 0) {
            size_t have = evbuffer_get_length(in);
            size_t take = have < f->bdat_left ? have : (size_t)f->bdat_left;
            if (take == 0)
                return;
            char *tmp = malloc(take);
            evbuffer_remove(in, tmp, take);
            strbuf_append(&f->content, tmp, take);
            free(tmp);
            f->bdat_left -= take;
            if (f->bdat_left == 0)
                fake_send(f, f->steps[f->at - 1].reply);
            continue;
        }
        size_t len;
        char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF_STRICT);
        if (line == NULL)
            return;
        if (f->in_data) {
            if (strcmp(line, ".") == 0) {
                f->in_data = false;
                fake_step(f, ".");
            } else {
                const char *l = line[0] == '.' ? line + 1 : line; /* RFC 5321 4.5.2 */
                strbuf_append(&f->content, l, len - (size_t)(l - line));
                strbuf_append(&f->content, "\r\n", 2);
            }
        } else {
            fake_step(f, line);
        }
        free(line);
    }
}

static void fake_event(struct bufferevent *bev, short what, void *arg)
{
    struct fake *f = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        bufferevent_free(f->bev);
        f->bev = NULL;
    }
}

static void fake_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                        void *arg)
{
    struct fake *f = arg;
    f->bev = bufferevent_socket_new(f->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(f->bev, fake_read, NULL, fake_event, f);
    bufferevent_enable(f->bev, EV_READ | EV_WRITE);
    fake_send(f, f->steps[f->at++].reply); /* step 0: the greeting */
}

static void fake_start(struct fake *f, struct event_base *base, const struct step *steps, size_t n)
{
    memset(f, 0, sizeof(*f));
    f->base = base;
    f->steps = steps;
    f->n_steps = n;
    strbuf_init(&f->content, 1u << 20);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = 0 };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->lev = evconnlistener_new_bind(base, fake_accept, f, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                     16, (struct sockaddr *)&sin, sizeof(sin));
    struct sockaddr_in bound;
    socklen_t bl = sizeof(bound);
    getsockname(evconnlistener_get_fd(f->lev), (struct sockaddr *)&bound, &bl);
    f->port = ntohs(bound.sin_port);
}

static void fake_stop(struct fake *f)
{
    if (f->bev)
        bufferevent_free(f->bev);
    evconnlistener_free(f->lev);
    strbuf_free(&f->content);
}

/* What the client side saw. */
struct run {
    struct event_base *base;
    int open_status;
    struct smtp_client_error open_err;
    bool tx_done;
    struct smtp_client_result res;
    struct smtp_client_reply rcpt[4];
    struct smtp_client_tx tx;
    bool quit;
};

static void on_tx(void *arg, struct smtp_client *c, const struct smtp_client_result *res)
{
    struct run *r = arg;
    r->tx_done = true;
    r->res = *res;
    for (size_t i = 0; i < res->n_rcpts && i < 4; i++)
        r->rcpt[i] = res->rcpt[i];
    r->res.rcpt = r->rcpt;
    if (r->quit && res->conn_ok)
        smtp_client_quit(c, NULL, NULL);
    else
        smtp_client_free(c);
    struct timeval tv = { 0, 200 * 1000 };
    event_base_loopexit(r->base, &tv);
}

static void on_open(void *arg, struct smtp_client *c, int status, const struct smtp_client_error *e)
{
    struct run *r = arg;
    r->open_status = status;
    if (status < 0) {
        r->open_err = *e;
        smtp_client_free(c);
        event_base_loopexit(r->base, NULL);
        return;
    }
    if (smtp_client_send(c, &r->tx, on_tx, r) < 0) {
        smtp_client_free(c);
        event_base_loopexit(r->base, NULL);
    }
}

static int tmp_message(const char *text)
{
    char path[] = "/tmp/postel-unit-msgXXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    if (write_full(fd, text, strlen(text)) < 0)
        return -1;
    return fd;
}

/* Runs one session: connect, one transaction, quit. */
static void run_session(struct fake *f, struct run *r, const struct smtp_client_opts *o)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)f->port) };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r->base = f->base;
    r->open_status = 99;
    struct smtp_client *c =
        smtp_client_connect(f->base, o, (struct sockaddr *)&sin, sizeof(sin), on_open, r);
    CHECK(c != NULL);
    struct timeval limit = { 10, 0 };
    event_base_loopexit(f->base, &limit);
    event_base_dispatch(f->base);
}

static const char MSG[] = "Subject: t\r\n\r\nline\r\n.leading dot\r\n..two\r\nend";

static void test_pipelined_data(void)
{
    struct event_base *base = event_base_new();
    static const struct step steps[] = {
        { "", "220 fake ESMTP\r\n" },
        { "EHLO client.test", "250-fake\r\n250-PIPELINING\r\n250-DSN\r\n250 SIZE 1000\r\n" },
        { "MAIL FROM:<a@x.test> SIZE=", "250 2.1.0 ok\r\n" },
        { "RCPT TO:<b@y.test> NOTIFY=NEVER", "250 2.1.5 ok\r\n" },
        { "RCPT TO:<c@y.test>", "550 5.1.1 no such user\r\n" },
        { "DATA", "354 go\r\n" },
        { ".", "250 2.0.0 queued\r\n" },
        { "QUIT", "221 bye\r\n" },
    };
    struct fake f;
    fake_start(&f, base, steps, sizeof(steps) / sizeof(steps[0]));
    int fd = tmp_message(MSG);
    const char *rcpts[] = { "b@y.test", "c@y.test" };
    const char *params[] = { " NOTIFY=NEVER", "" };
    struct run r = { .quit = true };
    r.tx = (struct smtp_client_tx){ .mail_from = "a@x.test", .mail_params = " SIZE=52",
                                    .n_rcpts = 2, .rcpts = rcpts, .rcpt_params = params, .fd = fd,
                                    .size = strlen(MSG) };
    struct smtp_client_opts o = { .sid = "t1", .helo = "client.test" };
    run_session(&f, &r, &o);
    CHECK_EQ_INT(r.open_status, 0);
    CHECK(r.tx_done);
    CHECK(r.res.conn_ok);
    CHECK_EQ_INT(r.res.n_accepted, 1);
    CHECK_EQ_INT(r.rcpt[0].code, 250);
    CHECK_EQ_INT(r.rcpt[1].code, 550);
    CHECK_EQ_STR(r.rcpt[1].enhanced, "5.1.1");
    CHECK_EQ_INT(r.res.data.code, 250);
    CHECK_EQ_INT(f.mismatches, 0);
    CHECK_EQ_INT(f.at, sizeof(steps) / sizeof(steps[0]));
    /* dot-stuffed on the wire, unstuffed by the fake: the original, plus
     * the CRLF the client adds to a last line without one */
    CHECK(f.content.len == strlen(MSG) + 2 && memcmp(f.content.data, MSG, strlen(MSG)) == 0);
    close(fd);
    fake_stop(&f);
    event_base_free(base);
}

static void test_helo_fallback_no_pipelining(void)
{
    struct event_base *base = event_base_new();
    static const struct step steps[] = {
        { "", "220 old\r\n" },
        { "EHLO", "502 5.5.1 what\r\n" },
        { "HELO client.test", "250 old\r\n" },
        { "MAIL FROM:<>", "250 ok\r\n" },
        { "RCPT TO:<b@y.test>", "450 4.2.0 busy\r\n" },
        { "RCPT TO:<c@y.test>", "250 ok\r\n" },
        { "DATA", "354 go\r\n" },
        { ".", "451 4.3.0 try later\r\n" },
        { "QUIT", "221 bye\r\n" },
    };
    struct fake f;
    fake_start(&f, base, steps, sizeof(steps) / sizeof(steps[0]));
    int fd = tmp_message("Subject: x\r\n\r\nbody\r\n");
    const char *rcpts[] = { "b@y.test", "c@y.test" };
    struct run r = { .quit = true };
    r.tx = (struct smtp_client_tx){ .mail_from = "", .n_rcpts = 2, .rcpts = rcpts, .fd = fd,
                                    .size = 20 };
    struct smtp_client_opts o = { .sid = "t2", .helo = "client.test" };
    run_session(&f, &r, &o);
    CHECK_EQ_INT(r.open_status, 0);
    CHECK_EQ_INT(r.rcpt[0].code, 450);
    CHECK_EQ_INT(r.rcpt[1].code, 250);
    CHECK_EQ_INT(r.res.data.code, 451);
    CHECK_EQ_INT(f.mismatches, 0);
    close(fd);
    fake_stop(&f);
    event_base_free(base);
}

static void test_bdat(void)
{
    struct event_base *base = event_base_new();
    static const struct step steps[] = {
        { "", "220 new\r\n" },
        { "EHLO", "250-new\r\n250-CHUNKING\r\n250 PIPELINING\r\n" },
        { "MAIL FROM:<a@x.test>", "250 ok\r\n" },
        { "RCPT TO:<b@y.test>", "250 ok\r\n" },
        { "BDAT 44 LAST", "250 2.0.0 got it\r\n" },
        { "QUIT", "221 bye\r\n" },
    };
    struct fake f;
    fake_start(&f, base, steps, sizeof(steps) / sizeof(steps[0]));
    int fd = tmp_message(MSG);
    const char *rcpts[] = { "b@y.test" };
    struct run r = { .quit = true };
    r.tx = (struct smtp_client_tx){ .mail_from = "a@x.test", .n_rcpts = 1, .rcpts = rcpts,
                                    .fd = fd, .size = strlen(MSG) };
    struct smtp_client_opts o = { .sid = "t3", .helo = "client.test" };
    run_session(&f, &r, &o);
    CHECK_EQ_INT(r.res.data.code, 250);
    CHECK_EQ_INT(f.mismatches, 0);
    CHECK(f.content.len == strlen(MSG) && memcmp(f.content.data, MSG, strlen(MSG)) == 0);
    close(fd);
    fake_stop(&f);
    event_base_free(base);
}

static void test_mail_refused(void)
{
    struct event_base *base = event_base_new();
    static const struct step steps[] = {
        { "", "220 x\r\n" },
        { "EHLO", "250 x\r\n" },
        { "MAIL FROM:<a@x.test>", "553 5.7.1 sender refused\r\n" },
        { "QUIT", "221 bye\r\n" },
    };
    struct fake f;
    fake_start(&f, base, steps, sizeof(steps) / sizeof(steps[0]));
    int fd = tmp_message(MSG);
    const char *rcpts[] = { "b@y.test" };
    struct run r = { .quit = true };
    r.tx = (struct smtp_client_tx){ .mail_from = "a@x.test", .n_rcpts = 1, .rcpts = rcpts,
                                    .fd = fd, .size = strlen(MSG) };
    struct smtp_client_opts o = { .sid = "t4", .helo = "client.test" };
    run_session(&f, &r, &o);
    CHECK(r.tx_done);
    CHECK_EQ_STR(r.res.err.stage, "MAIL FROM");
    CHECK_EQ_INT(r.res.err.reply.code, 553);
    CHECK_EQ_INT(r.res.n_accepted, 0);
    CHECK_EQ_INT(r.rcpt[0].code, 0);
    CHECK_EQ_INT(f.mismatches, 0);
    close(fd);
    fake_stop(&f);
    event_base_free(base);
}

static void test_421_during_rcpt(void)
{
    struct event_base *base = event_base_new();
    static const struct step steps[] = {
        { "", "220 x\r\n" },
        { "EHLO", "250 x\r\n" },
        { "MAIL", "250 ok\r\n" },
        { "RCPT", "421 4.3.2 shutting down\r\n" },
    };
    struct fake f;
    fake_start(&f, base, steps, sizeof(steps) / sizeof(steps[0]));
    int fd = tmp_message(MSG);
    const char *rcpts[] = { "b@y.test", "c@y.test" };
    struct run r = { .quit = true };
    r.tx = (struct smtp_client_tx){ .mail_from = "a@x.test", .n_rcpts = 2, .rcpts = rcpts,
                                    .fd = fd, .size = strlen(MSG) };
    struct smtp_client_opts o = { .sid = "t5", .helo = "client.test" };
    run_session(&f, &r, &o);
    CHECK(r.tx_done);
    CHECK(!r.res.conn_ok);
    CHECK_EQ_INT(r.rcpt[0].code, 421);
    CHECK_EQ_INT(r.rcpt[1].code, 0);
    close(fd);
    fake_stop(&f);
    event_base_free(base);
}

static void test_greeting_refused_and_auth_without_tls(void)
{
    struct event_base *base = event_base_new();
    static const struct step s1[] = { { "", "554 5.7.1 go away\r\n" } };
    struct fake f;
    fake_start(&f, base, s1, 1);
    struct run r = { .quit = true };
    struct smtp_client_opts o = { .sid = "t6", .helo = "client.test" };
    run_session(&f, &r, &o);
    CHECK_EQ_INT(r.open_status, -1);
    CHECK_EQ_STR(r.open_err.stage, "greeting");
    CHECK_EQ_INT(r.open_err.reply.code, 554);
    fake_stop(&f);

    static const struct step s2[] = {
        { "", "220 x\r\n" },
        { "EHLO", "250-x\r\n250 AUTH PLAIN\r\n" },
    };
    fake_start(&f, base, s2, 2);
    struct run r2 = { .quit = true };
    struct smtp_client_opts o2 = { .sid = "t7", .helo = "client.test", .auth_user = "u",
                                   .auth_pass = "p" };
    run_session(&f, &r2, &o2);
    CHECK_EQ_INT(r2.open_status, -1);
    CHECK_EQ_STR(r2.open_err.stage, "AUTH");
    CHECK_EQ_INT(r2.open_err.reply.code, 0);
    CHECK(strstr(f.log, "AUTH") == NULL);
    fake_stop(&f);

    /* TLS required but not offered */
    fake_start(&f, base, s2, 2);
    struct run r3 = { .quit = true };
    struct smtp_client_opts o3 = { .sid = "t8", .helo = "client.test", .tls_required = true };
    run_session(&f, &r3, &o3);
    CHECK_EQ_INT(r3.open_status, -1);
    CHECK_EQ_STR(r3.open_err.stage, "STARTTLS");
    fake_stop(&f);
    event_base_free(base);
}

static void test_connect_refused(void)
{
    struct event_base *base = event_base_new();
    /* a port that was just free */
    static const struct step s1[] = { { "", "220 x\r\n" } };
    struct fake f;
    fake_start(&f, base, s1, 1);
    int port = f.port;
    fake_stop(&f);
    f.port = port;
    f.base = base;
    struct run r = { .quit = true };
    struct smtp_client_opts o = { .sid = "t9", .helo = "client.test" };
    run_session(&f, &r, &o);
    CHECK_EQ_INT(r.open_status, -1);
    CHECK_EQ_STR(r.open_err.stage, "connect");
    CHECK(r.open_err.error[0] != '\0');
    event_base_free(base);
}

int main(void)
{
    RUN(test_reply_table);
    RUN(test_reply_sequence);
    RUN(test_reply_limits);
    RUN(test_reply_format);
    RUN(test_ehlo);
    RUN(test_pipelined_data);
    RUN(test_helo_fallback_no_pipelining);
    RUN(test_bdat);
    RUN(test_mail_refused);
    RUN(test_421_during_rcpt);
    RUN(test_greeting_refused_and_auth_without_tls);
    RUN(test_connect_refused);
    return unit_report("smtp_client");
}
