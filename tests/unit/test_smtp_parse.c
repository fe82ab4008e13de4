/*
 * Tests for src/smtp/smtp_parse.c: tables of input and expected result.
 * The DATA decoder cases are each run whole, one byte at a time and in
 * pseudo-random splits, which must all give the same output.
 */
#include "smtp/smtp_parse.h"
#include "unit.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>

#define S(x) x, sizeof(x) - 1

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Results are rendered as text and compared with the tables' strings. */
static void cat(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cat(char *buf, size_t size, const char *fmt, ...)
{
    size_t n = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    if (n < size)
        vsnprintf(buf + n, size - n, fmt, ap);
    va_end(ap);
}

/* "mailbox|local|domain" then " null", " postmaster", " utf8" as set. */
static void render_path(char *buf, size_t size, const struct smtp_path *p)
{
    snprintf(buf, size, "%s|%s|%s", p->mailbox, p->local, p->domain);
    if (p->is_null)
        cat(buf, size, " null");
    if (p->is_postmaster)
        cat(buf, size, " postmaster");
    if (p->utf8)
        cat(buf, size, " utf8");
}

static void render_reply(char *buf, size_t size, const struct smtp_reply *r)
{
    snprintf(buf, size, "%d %s", r->code, r->status ? r->status : "(null)");
}

static void render_mail_params(char *buf, size_t size, const struct smtp_mail_params *mp)
{
    static const char *bodies[] = { "", "7BIT", "8BITMIME", "BINARYMIME" };
    if (mp->size)
        cat(buf, size, " size=%llu", (unsigned long long)mp->size);
    if (mp->body)
        cat(buf, size, " body=%s", bodies[mp->body]);
    if (mp->smtputf8)
        cat(buf, size, " smtputf8");
    if (mp->ret[0])
        cat(buf, size, " ret=%s", mp->ret);
    if (mp->envid[0])
        cat(buf, size, " envid=%s", mp->envid);
    if (mp->auth[0])
        cat(buf, size, " auth=%s", mp->auth);
}

static void render_rcpt_params(char *buf, size_t size, const struct smtp_rcpt_params *rp)
{
    static const char *names[] = { "NEVER", "SUCCESS", "FAILURE", "DELAY" };
    if (rp->notify) {
        const char *sep = " notify=";
        for (unsigned i = 0; i < 4; i++)
            if (rp->notify & (1u << i)) {
                cat(buf, size, "%s%s", sep, names[i]);
                sep = ",";
            }
    }
    if (rp->orcpt[0])
        cat(buf, size, " orcpt=%s", rp->orcpt);
}

static void render_data_flags(char *buf, size_t size, const struct smtp_data_decoder *d)
{
    buf[0] = '\0';
    if (d->done)
        cat(buf, size, " done");
    if (d->bare_lf)
        cat(buf, size, " bare_lf");
    if (d->bare_cr)
        cat(buf, size, " bare_cr");
    if (d->too_big)
        cat(buf, size, " too_big");
    if (buf[0] == ' ')
        memmove(buf, buf + 1, strlen(buf));
}

/* ---------------------------------------------------------------- commands */

static void test_commands(void)
{
    static const struct {
        const char *line;
        size_t len;
        int rc;
        enum smtp_verb verb;
        const char *arg;
        int code;
        const char *status;
    } cases[] = {
        { S("HELO example.org"), 0, SMTP_VERB_HELO, "example.org", 0, NULL },
        { S("ehlo client.example"), 0, SMTP_VERB_EHLO, "client.example", 0, NULL },
        { S("EhLo x"), 0, SMTP_VERB_EHLO, "x", 0, NULL },
        { S("MAIL FROM:<a@b.c>"), 0, SMTP_VERB_MAIL, "FROM:<a@b.c>", 0, NULL },
        { S("mail from:<>"), 0, SMTP_VERB_MAIL, "from:<>", 0, NULL },
        { S("RCPT TO:<x@y>"), 0, SMTP_VERB_RCPT, "TO:<x@y>", 0, NULL },
        { S("DATA"), 0, SMTP_VERB_DATA, "", 0, NULL },
        { S("DATA "), 0, SMTP_VERB_DATA, "", 0, NULL },
        { S("DATA x"), 0, SMTP_VERB_DATA, "x", 0, NULL },
        { S("BDAT 100 LAST"), 0, SMTP_VERB_BDAT, "100 LAST", 0, NULL },
        { S("RSET"), 0, SMTP_VERB_RSET, "", 0, NULL },
        { S("NOOP"), 0, SMTP_VERB_NOOP, "", 0, NULL },
        { S("noop anything"), 0, SMTP_VERB_NOOP, "anything", 0, NULL },
        { S("QUIT"), 0, SMTP_VERB_QUIT, "", 0, NULL },
        { S("VRFY user"), 0, SMTP_VERB_VRFY, "user", 0, NULL },
        { S("EXPN list"), 0, SMTP_VERB_EXPN, "list", 0, NULL },
        { S("HELP"), 0, SMTP_VERB_HELP, "", 0, NULL },
        { S("STARTTLS"), 0, SMTP_VERB_STARTTLS, "", 0, NULL },
        { S("starttls"), 0, SMTP_VERB_STARTTLS, "", 0, NULL },
        { S("AUTH PLAIN AGZvbwBiYXI="), 0, SMTP_VERB_AUTH, "PLAIN AGZvbwBiYXI=", 0, NULL },
        { S("HELO  two"), 0, SMTP_VERB_HELO, " two", 0, NULL },
        { S("EHLO \xc3\xa9t\xc3\xa9.example"), 0, SMTP_VERB_EHLO, "\xc3\xa9t\xc3\xa9.example", 0, NULL },
        /* unknown verbs */
        { S(""), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.1" },
        { S(" HELO x"), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.1" },
        { S("HELLO x"), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.1" },
        { S("HEL"), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.1" },
        { S("MAIL\tFROM:<a@b>"), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.1" },
        { S("GET / HTTP/1.1"), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.1" },
        { S("XCLIENT ADDR=1.2.3.4"), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.1" },
        { S("STARTTLSX"), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.1" },
        /* bad bytes */
        { S("HE\0LO x"), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.2" },
        { S("HELO\r"), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.2" },
        { S("HE\rLO x"), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.2" },
        { S("H\xc3\x89LO x"), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.2" },
        { S("\xff"), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.2" },
        { S("MAIL FROM:<a@b>\0 SIZE=1"), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.2" },
        { S("MAIL FROM:<a@b>\r SIZE=1"), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.2" },
        { S("DATA\n"), -1, SMTP_VERB_UNKNOWN, "", 500, "5.5.2" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[128];
        memcpy(buf, cases[i].line, cases[i].len);
        buf[cases[i].len] = 'X';   /* the parser terminates the line itself */
        struct smtp_command cmd;
        struct smtp_reply reply = { 0, NULL, NULL };
        int rc = smtp_command_parse(buf, cases[i].len, &cmd, &reply);
        CHECK_EQ_INT(rc, cases[i].rc);
        CHECK_EQ_INT(cmd.verb, cases[i].verb);
        CHECK_EQ_STR(cmd.arg, cases[i].arg);
        if (rc < 0) {
            CHECK_EQ_INT(reply.code, cases[i].code);
            CHECK_EQ_STR(reply.status, cases[i].status);
            CHECK(reply.text != NULL && reply.text[0] != '\0');
        }
        if (rc != cases[i].rc)
            fprintf(stderr, "  command case %zu\n", i);
    }
}

/* --------------------------------------------------------------- MAIL FROM */

/* expect: "mailbox|local|domain" and the flags and parameters that are set
 * (see render_path, render_mail_params), or "code status" for an error. */
struct mail_case {
    const char *arg;
    bool allow_utf8;
    const char *expect;
};

static const struct mail_case mail_cases[] = {
    { "FROM:<user@example.org>", false, "user@example.org|user|example.org" },
    { "from:<user@example.org>", false, "user@example.org|user|example.org" },
    { "FROM: <user@example.org>", false, "user@example.org|user|example.org" },
    { "FROM:<User@EXAMPLE.Org>", false, "User@example.org|User|example.org" },
    { "FROM:<>", false, "|| null" },
    { "FROM:<> SIZE=1000", false, "|| null size=1000" },
    { "FROM:<a.b.c@x.y.z>", false, "a.b.c@x.y.z|a.b.c|x.y.z" },
    { "FROM:<a+tag@x>", false, "a+tag@x|a+tag|x" },
    { "FROM:<!#$%&'*+-/=?^_`{|}~@x>", false, "!#$%&'*+-/=?^_`{|}~@x|!#$%&'*+-/=?^_`{|}~|x" },
    { "FROM:<a@a-b.c-d.example>", false, "a@a-b.c-d.example|a|a-b.c-d.example" },
    { "FROM:<a@1.2.3.4.example>", false, "a@1.2.3.4.example|a|1.2.3.4.example" },
    { "FROM:<a@xn--bcher-kva.example>", false, "a@xn--bcher-kva.example|a|xn--bcher-kva.example" },
    /* source routes are dropped */
    { "FROM:<@relay.example:user@example.org>", false, "user@example.org|user|example.org" },
    { "FROM:<@a.example,@b.example:user@example.org>", false, "user@example.org|user|example.org" },
    /* quoted local parts: quotes dropped when not needed */
    { "FROM:<\"john\"@example.org>", false, "john@example.org|john|example.org" },
    { "FROM:<\"j.doe\"@example.org>", false, "j.doe@example.org|j.doe|example.org" },
    { "FROM:<\"\\j\"@example.org>", false, "j@example.org|j|example.org" },
    { "FROM:<\"john doe\"@example.org>", false, "\"john doe\"@example.org|\"john doe\"|example.org" },
    { "FROM:<\"a\\\"b\"@x>", false, "\"a\\\"b\"@x|\"a\\\"b\"|x" },
    { "FROM:<\"a\\\\b\"@x>", false, "\"a\\\\b\"@x|\"a\\\\b\"|x" },
    { "FROM:<\"a\\ b\"@x>", false, "\"a b\"@x|\"a b\"|x" },
    { "FROM:<\"a..b\"@x>", false, "\"a..b\"@x|\"a..b\"|x" },
    { "FROM:<\".a\"@x>", false, "\".a\"@x|\".a\"|x" },
    { "FROM:<\"\"@x>", false, "\"\"@x|\"\"|x" },
    { "FROM:<\"a>b\"@x>", false, "\"a>b\"@x|\"a>b\"|x" },
    { "FROM:<\"a@b\"@x>", false, "\"a@b\"@x|\"a@b\"|x" },
    /* address literals */
    { "FROM:<a@[192.0.2.1]>", false, "a@[192.0.2.1]|a|[192.0.2.1]" },
    { "FROM:<a@[IPv6:2001:DB8::1]>", false, "a@[IPv6:2001:db8::1]|a|[IPv6:2001:db8::1]" },
    { "FROM:<a@[ipv6:::1]>", false, "a@[IPv6:::1]|a|[IPv6:::1]" },
    { "FROM:<a@[IPv6:::ffff:192.0.2.1]>", false, "a@[IPv6:::ffff:192.0.2.1]|a|[IPv6:::ffff:192.0.2.1]" },
    /* parameters */
    { "FROM:<a@b> SIZE=0", false, "a@b|a|b" },
    { "FROM:<a@b> SIZE=26214400", false, "a@b|a|b size=26214400" },
    { "FROM:<a@b> size=18446744073709551615", false, "a@b|a|b size=18446744073709551615" },
    { "FROM:<a@b> SIZE=18446744073709551616", false, "a@b|a|b size=18446744073709551615" },
    { "FROM:<a@b> SIZE=99999999999999999999", false, "a@b|a|b size=18446744073709551615" },
    { "FROM:<a@b> SIZE=00000000000000000042", false, "a@b|a|b size=42" },
    { "FROM:<a@b> BODY=7BIT", false, "a@b|a|b body=7BIT" },
    { "FROM:<a@b> BODY=8bitmime", false, "a@b|a|b body=8BITMIME" },
    { "FROM:<a@b> BODY=BINARYMIME", false, "a@b|a|b body=BINARYMIME" },
    { "FROM:<a@b> RET=full", false, "a@b|a|b ret=FULL" },
    { "FROM:<a@b> RET=HDRS", false, "a@b|a|b ret=HDRS" },
    { "FROM:<a@b> ENVID=QQ314159", false, "a@b|a|b envid=QQ314159" },
    { "FROM:<a@b> ENVID=a+2Bb+3Dc+20d", false, "a@b|a|b envid=a+b=c d" },
    { "FROM:<a@b> AUTH=<>", false, "a@b|a|b auth=<>" },
    { "FROM:<a@b> AUTH=e+3Dmc2@example.com", false, "a@b|a|b auth=e=mc2@example.com" },
    { "FROM:<a@b> SIZE=10 BODY=8BITMIME RET=HDRS ENVID=x AUTH=<>", false, "a@b|a|b size=10 body=8BITMIME ret=HDRS envid=x auth=<>" },
    { "FROM:<a@b>  SIZE=10  BODY=7BIT ", false, "a@b|a|b size=10 body=7BIT" },
    { "FROM:<a@b> ", false, "a@b|a|b" },
    /* SMTPUTF8 */
    { "FROM:<a@b> SMTPUTF8", true, "a@b|a|b smtputf8" },
    { "FROM:<a@b> smtputf8 BODY=8BITMIME", true, "a@b|a|b body=8BITMIME smtputf8" },
    { "FROM:<j\xc3\xb6rg@b\xc3\xbc" "cher.example> SMTPUTF8", true, "j\xc3\xb6rg@b\xc3\xbc" "cher.example|j\xc3\xb6rg|b\xc3\xbc" "cher.example utf8 smtputf8" },
    { "FROM:<\"\xe2\x82\xac x\"@b> SMTPUTF8", true, "\"\xe2\x82\xac x\"@b|\"\xe2\x82\xac x\"|b utf8 smtputf8" },
    { "FROM:<a@\xf0\x9f\x98\x80.example> SMTPUTF8", true, "a@\xf0\x9f\x98\x80.example|a|\xf0\x9f\x98\x80.example utf8 smtputf8" },
    { "FROM:<j\xc3\xb6rg@b>", true, "553 5.6.7" },
    { "FROM:<j\xc3\xb6rg@b>", false, "553 5.6.7" },
    { "FROM:<j\xc3\xb6rg@b> SMTPUTF8", false, "555 5.5.4" },
    { "FROM:<a@b> SMTPUTF8", false, "555 5.5.4" },
    { "FROM:<a@b> SMTPUTF8=yes", true, "501 5.5.4" },
    { "FROM:<j\xc3rg@b> SMTPUTF8", true, "501 5.1.7" }, /* truncated sequence */
    { "FROM:<j\xc0\xafrg@b> SMTPUTF8", true, "501 5.1.7" }, /* overlong */
    { "FROM:<j\xed\xa0\x80rg@b> SMTPUTF8", true, "501 5.1.7" }, /* surrogate */
    { "FROM:<j\xf4\x90\x80\x80@b> SMTPUTF8", true, "501 5.1.7" }, /* > U+10FFFF */
    { "FROM:<a@b\xff> SMTPUTF8", true, "501 5.1.7" },
    /* syntax: 501 5.5.4 */
    { "", false, "501 5.5.4" },
    { "FROM:", false, "501 5.5.4" },
    { "FROM", false, "501 5.5.4" },
    { "TO:<a@b>", false, "501 5.5.4" },
    { "FROM:a@b", false, "501 5.5.4" },
    { "FROM: a@b", false, "501 5.5.4" },
    { "FROM:  <a@b>", false, "501 5.5.4" },
    { "FROM :<a@b>", false, "501 5.5.4" },
    { " FROM:<a@b>", false, "501 5.5.4" },
    { "FROM:\t<a@b>", false, "501 5.5.4" },
    { "FROM:<a@b>x", false, "501 5.5.4" },
    { "FROM:<a@b>>", false, "501 5.5.4" },
    { "FROM:<>x", false, "501 5.5.4" },
    /* bad addresses: 501 5.1.7 */
    { "FROM:<a@b", false, "501 5.1.7" },
    { "FROM:<a>", false, "501 5.1.7" },
    { "FROM:<Postmaster>", false, "501 5.1.7" },
    { "FROM:<@b>", false, "501 5.1.7" },
    { "FROM:<a@>", false, "501 5.1.7" },
    { "FROM:<a@@b>", false, "501 5.1.7" },
    { "FROM:<a@b@c>", false, "501 5.1.7" },
    { "FROM:<.a@b>", false, "501 5.1.7" },
    { "FROM:<a.@b>", false, "501 5.1.7" },
    { "FROM:<a..b@c>", false, "501 5.1.7" },
    { "FROM:<a b@c>", false, "501 5.1.7" },
    { "FROM:<a(b)@c>", false, "501 5.1.7" },
    { "FROM:<a,b@c>", false, "501 5.1.7" },
    { "FROM:<a@b.>", false, "501 5.1.7" },
    { "FROM:<a@.b>", false, "501 5.1.7" },
    { "FROM:<a@b..c>", false, "501 5.1.7" },
    { "FROM:<a@-b.c>", false, "501 5.1.7" },
    { "FROM:<a@b-.c>", false, "501 5.1.7" },
    { "FROM:<a@b_c.d>", false, "501 5.1.7" },
    { "FROM:<a@b c>", false, "501 5.1.7" },
    { "FROM:< a@b>", false, "501 5.1.7" },
    { "FROM:<a@b >", false, "501 5.1.7" },
    { "FROM:<\"a@b>", false, "501 5.1.7" },
    { "FROM:<\"a\tb\"@c>", false, "501 5.1.7" },
    { "FROM:<\"a\\\x01\"@c>", false, "501 5.1.7" },
    { "FROM:<\"a\"b@c>", false, "501 5.1.7" },
    { "FROM:<a\"b\"@c>", false, "501 5.1.7" },
    { "FROM:<a@[1.2.3]>", false, "501 5.1.7" },
    { "FROM:<a@[1.2.3.256]>", false, "501 5.1.7" },
    { "FROM:<a@[1.2.3.4>", false, "501 5.1.7" },
    { "FROM:<a@[]>", false, "501 5.1.7" },
    { "FROM:<a@[IPv6:]>", false, "501 5.1.7" },
    { "FROM:<a@[IPv6:1::2::3]>", false, "501 5.1.7" },
    { "FROM:<a@[IPv6:1.2.3.4]>", false, "501 5.1.7" },
    { "FROM:<a@[IPv6:fe80::1%eth0]>", false, "501 5.1.7" },
    { "FROM:<a@[x-tag:foo]>", false, "501 5.1.7" },
    { "FROM:<a@[1.2.3.4].x>", false, "501 5.1.7" },
    { "FROM:<@:a@b>", false, "501 5.1.7" },
    { "FROM:<@a:>", false, "501 5.1.7" },
    { "FROM:<@a,b:c@d>", false, "501 5.1.7" },
    { "FROM:<@a;c@d>", false, "501 5.1.7" },
    { "FROM:<@[1.2.3.4]:c@d>", false, "501 5.1.7" },
    /* parameters: unknown 555, malformed or duplicate 501 */
    { "FROM:<a@b> FOO=bar", false, "555 5.5.4" },
    { "FROM:<a@b> XFORWARD", false, "555 5.5.4" },
    { "FROM:<a@b> NOTIFY=NEVER", false, "555 5.5.4" },
    { "FROM:<a@b> ORCPT=rfc822;a@b", false, "555 5.5.4" },
    { "FROM:<a@b> =x", false, "501 5.5.4" },
    { "FROM:<a@b> -X=1", false, "501 5.5.4" },
    { "FROM:<a@b> A_B=1", false, "501 5.5.4" },
    { "FROM:<a@b> SIZE", false, "501 5.5.4" },
    { "FROM:<a@b> SIZE=", false, "501 5.5.4" },
    { "FROM:<a@b> SIZE=-1", false, "501 5.5.4" },
    { "FROM:<a@b> SIZE=+1", false, "501 5.5.4" },
    { "FROM:<a@b> SIZE=1k", false, "501 5.5.4" },
    { "FROM:<a@b> SIZE=123456789012345678901", false, "501 5.5.4" },
    { "FROM:<a@b> SIZE=1 SIZE=2", false, "501 5.5.4" },
    { "FROM:<a@b> size=1 SIZE=1", false, "501 5.5.4" },
    { "FROM:<a@b> BODY=8BIT", false, "501 5.5.4" },
    { "FROM:<a@b> BODY", false, "501 5.5.4" },
    { "FROM:<a@b> BODY=7BIT BODY=7BIT", false, "501 5.5.4" },
    { "FROM:<a@b> RET=ALL", false, "501 5.5.4" },
    { "FROM:<a@b> RET=", false, "501 5.5.4" },
    { "FROM:<a@b> RET=FULL RET=HDRS", false, "501 5.5.4" },
    { "FROM:<a@b> ENVID=", false, "501 5.5.4" },
    { "FROM:<a@b> ENVID=a=b", false, "501 5.5.4" },
    { "FROM:<a@b> ENVID=a+2", false, "501 5.5.4" },
    { "FROM:<a@b> ENVID=a+2b", false, "501 5.5.4" },
    { "FROM:<a@b> ENVID=a+00", false, "501 5.5.4" },
    { "FROM:<a@b> ENVID=a+0A", false, "501 5.5.4" },
    { "FROM:<a@b> ENVID=a+C3+A9", false, "501 5.5.4" },
    { "FROM:<a@b> ENVID=\xc3\xa9", false, "501 5.5.4" },
    { "FROM:<a@b> ENVID=x ENVID=y", false, "501 5.5.4" },
    { "FROM:<a@b> AUTH=", false, "501 5.5.4" },
    { "FROM:<a@b> AUTH=a+0D+0Ab", false, "501 5.5.4" },
    { "FROM:<a@b> AUTH=<> AUTH=<>", false, "501 5.5.4" },
    { "FROM:<a@b> SIZE=1\tBODY=7BIT", false, "501 5.5.4" },
};

static void check_mail_case(size_t i, const struct mail_case *c)
{
    struct smtp_path path;
    struct smtp_mail_params mp;
    struct smtp_reply reply = { 0, NULL, NULL };
    char got[1024];
    if (smtp_mail_parse(c->arg, c->allow_utf8, &path, &mp, &reply) == 0) {
        render_path(got, sizeof(got), &path);
        render_mail_params(got, sizeof(got), &mp);
    } else {
        render_reply(got, sizeof(got), &reply);
        CHECK(reply.text != NULL && reply.text[0] != '\0');
        CHECK_EQ_STR(path.mailbox, "");   /* cleared on error */
        CHECK_EQ_INT(mp.size, 0);
    }
    CHECK_EQ_STR(got, c->expect);
    if (strcmp(got, c->expect) != 0)
        fprintf(stderr, "  MAIL case %zu: \"%s\"\n", i, c->arg);
}

static void test_mail(void)
{
    for (size_t i = 0; i < sizeof(mail_cases) / sizeof(mail_cases[0]); i++)
        check_mail_case(i, &mail_cases[i]);
}

/* --------------------------------------------------------------- RCPT TO */

struct rcpt_case {
    const char *arg;
    bool allow_utf8;
    const char *expect;       /* as for MAIL, with render_rcpt_params */
};

static const struct rcpt_case rcpt_cases[] = {
    { "TO:<user@example.org>", false, "user@example.org|user|example.org" },
    { "to: <user@EXAMPLE.org>", false, "user@example.org|user|example.org" },
    { "TO:<@hop:user@example.org>", false, "user@example.org|user|example.org" },
    { "TO:<Postmaster>", false, "Postmaster|Postmaster| postmaster" },
    { "TO:<postmaster>", false, "postmaster|postmaster| postmaster" },
    { "TO:<POSTMASTER> NOTIFY=NEVER", false, "POSTMASTER|POSTMASTER| postmaster notify=NEVER" },
    { "TO:<postmaster@example.org>", false, "postmaster@example.org|postmaster|example.org" },
    { "TO:<a@b> NOTIFY=SUCCESS", false, "a@b|a|b notify=SUCCESS" },
    { "TO:<a@b> NOTIFY=success,failure,delay", false, "a@b|a|b notify=SUCCESS,FAILURE,DELAY" },
    { "TO:<a@b> NOTIFY=DELAY,FAILURE", false, "a@b|a|b notify=FAILURE,DELAY" },
    { "TO:<a@b> ORCPT=rfc822;a@b", false, "a@b|a|b orcpt=rfc822;a@b" },
    { "TO:<a@b> ORCPT=rfc822;Bob+2BTag@Example.org", false, "a@b|a|b orcpt=rfc822;Bob+Tag@Example.org" },
    { "TO:<a@b> NOTIFY=FAILURE ORCPT=rfc822;x+40y@z", false, "a@b|a|b notify=FAILURE orcpt=rfc822;x@y@z" },
    { "TO:<a@b> ORCPT=utf-8;j+C3+B6rg@b", false, "a@b|a|b orcpt=utf-8;j\xc3\xb6rg@b" },
    { "TO:<j\xc3\xb6rg@b>", true, "j\xc3\xb6rg@b|j\xc3\xb6rg|b utf8" },
    { "TO:<j\xc3\xb6rg@b>", false, "553 5.6.7" },
    { "TO:<@b\xc3\xbc" "cher.example:a@b>", false, "553 5.6.7" },   /* non-ASCII route too */
    { "TO:<@b\xc3\xbc" "cher.example:a@b>", true, "a@b|a|b utf8" },
    { "TO:<PostMaster@Example.ORG>", false, "PostMaster@example.org|PostMaster|example.org" },
    { "TO:<a@b> SMTPUTF8", true, "555 5.5.4" },
    { "TO:<>", false, "501 5.1.3" },
    { "TO:<Postmaster@>", false, "501 5.1.3" },
    { "TO:<Postmasterx>", false, "501 5.1.3" },
    { "TO:<\"Postmaster\" >", false, "501 5.1.3" },
    { "TO:<a@b", false, "501 5.1.3" },
    { "TO:<a@b..c>", false, "501 5.1.3" },
    { "TO:a@b", false, "501 5.5.4" },
    { "FROM:<a@b>", false, "501 5.5.4" },
    { "TO:<a@b>junk", false, "501 5.5.4" },
    { "TO:<a@b> SIZE=10", false, "555 5.5.4" },
    { "TO:<a@b> NOTIFY=", false, "501 5.5.4" },
    { "TO:<a@b> NOTIFY", false, "501 5.5.4" },
    { "TO:<a@b> NOTIFY=NEVER,SUCCESS", false, "501 5.5.4" },
    { "TO:<a@b> NOTIFY=FAILURE,NEVER", false, "501 5.5.4" },
    { "TO:<a@b> NOTIFY=SUCCESS,SUCCESS", false, "501 5.5.4" },
    { "TO:<a@b> NOTIFY=SUCCESS,", false, "501 5.5.4" },
    { "TO:<a@b> NOTIFY=,SUCCESS", false, "501 5.5.4" },
    { "TO:<a@b> NOTIFY=ALWAYS", false, "501 5.5.4" },
    { "TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER", false, "501 5.5.4" },
    { "TO:<a@b> ORCPT=a@b", false, "501 5.5.4" },
    { "TO:<a@b> ORCPT=;a@b", false, "501 5.5.4" },
    { "TO:<a@b> ORCPT=rfc822;", false, "501 5.5.4" },
    { "TO:<a@b> ORCPT=rf(c;a@b", false, "501 5.5.4" },
    { "TO:<a@b> ORCPT=rfc822;a+ZZb", false, "501 5.5.4" },
    { "TO:<a@b> ORCPT=rfc822;a+0Ab", false, "501 5.5.4" },
    { "TO:<a@b> ORCPT=rfc822;a@b ORCPT=rfc822;a@b", false, "501 5.5.4" },
};

static void test_rcpt(void)
{
    for (size_t i = 0; i < sizeof(rcpt_cases) / sizeof(rcpt_cases[0]); i++) {
        const struct rcpt_case *c = &rcpt_cases[i];
        struct smtp_path path;
        struct smtp_rcpt_params rp;
        struct smtp_reply reply = { 0, NULL, NULL };
        char got[1024];
        if (smtp_rcpt_parse(c->arg, c->allow_utf8, &path, &rp, &reply) == 0) {
            render_path(got, sizeof(got), &path);
            render_rcpt_params(got, sizeof(got), &rp);
        } else {
            render_reply(got, sizeof(got), &reply);
            CHECK_EQ_STR(path.mailbox, "");
        }
        CHECK_EQ_STR(got, c->expect);
        if (strcmp(got, c->expect) != 0)
            fprintf(stderr, "  RCPT case %zu: \"%s\"\n", i, c->arg);
    }
}

/* ------------------------------------------------------------------ limits */

static char *repeat(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

/* A domain of exactly n octets made of 63-octet labels. */
static char *make_domain(char *buf, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t label = n - i > 63 ? 63 : n - i;
        if (n - i - label == 1)   /* never leave a 1-octet tail that would need an empty label */
            label--;
        memset(buf + i, 'd', label);
        i += label;
        if (i < n)
            buf[i++] = '.';
    }
    buf[n] = '\0';
    return buf;
}

static int mail_code(const char *arg)
{
    struct smtp_path path;
    struct smtp_mail_params mp;
    struct smtp_reply reply = { 0, NULL, NULL };
    return smtp_mail_parse(arg, true, &path, &mp, &reply) == 0 ? 0 : reply.code;
}

static void test_limits(void)
{
    char local[300], dom[400], arg[1200];
    struct smtp_path path;

    /* local part: 64 octets ok, 65 not (RFC 5321 4.5.3.1.1) */
    snprintf(arg, sizeof(arg), "FROM:<%s@b>", repeat(local, 'l', 64));
    CHECK_EQ_INT(mail_code(arg), 0);
    snprintf(arg, sizeof(arg), "FROM:<%s@b>", repeat(local, 'l', 65));
    CHECK_EQ_INT(mail_code(arg), 501);
    snprintf(arg, sizeof(arg), "\"%s\"@b", repeat(local, 'q', 62));
    CHECK_EQ_INT(smtp_address_parse(arg, &path), 0);
    snprintf(arg, sizeof(arg), "\"%s\"@b", repeat(local, 'q', 63));
    CHECK_EQ_INT(smtp_address_parse(arg, &path), -1);
    /* quoted, all escapes: 31 escaped pairs = 62 + 2 quotes = 64 octets */
    strcpy(arg, "\"");
    for (int i = 0; i < 31; i++)
        strcat(arg, "\\\"");
    strcat(arg, "\"@b");
    CHECK_EQ_INT(smtp_address_parse(arg, &path), 0);
    CHECK_EQ_INT(strlen(path.local), 64);
    /* labels: 63 ok, 64 not */
    snprintf(arg, sizeof(arg), "a@%s.org", repeat(dom, 'x', 63));
    CHECK_EQ_INT(smtp_address_parse(arg, &path), 0);
    snprintf(arg, sizeof(arg), "a@%s.org", repeat(dom, 'x', 64));
    CHECK_EQ_INT(smtp_address_parse(arg, &path), -1);
    /* path: "<" + mailbox + ">" at most 256 octets (RFC 5321 4.5.3.1.3) */
    snprintf(arg, sizeof(arg), "FROM:<%s@%s>", repeat(local, 'l', 64), make_domain(dom, 189));
    CHECK_EQ_INT(mail_code(arg), 0);
    snprintf(arg, sizeof(arg), "FROM:<%s@%s>", repeat(local, 'l', 64), make_domain(dom, 190));
    CHECK_EQ_INT(mail_code(arg), 501);
    snprintf(arg, sizeof(arg), "%s@%s", repeat(local, 'l', 64), make_domain(dom, 189));
    CHECK_EQ_INT(smtp_address_parse(arg, &path), 0);
    CHECK_EQ_INT(strlen(path.mailbox), 254);
    snprintf(arg, sizeof(arg), "%s@%s", repeat(local, 'l', 64), make_domain(dom, 190));
    CHECK_EQ_INT(smtp_address_parse(arg, &path), -1);
    /* domain over 255 */
    snprintf(arg, sizeof(arg), "a@%s", make_domain(dom, 256));
    CHECK_EQ_INT(smtp_address_parse(arg, &path), -1);
    /* source route counts toward the path length */
    snprintf(arg, sizeof(arg), "FROM:<@%s:a@b>", make_domain(dom, 250));
    CHECK_EQ_INT(mail_code(arg), 501);
    snprintf(arg, sizeof(arg), "FROM:<@%s:a@b>", make_domain(dom, 250 - 5));
    CHECK_EQ_INT(mail_code(arg), 0);
    /* ENVID: 100 decoded octets ok, 101 not */
    snprintf(arg, sizeof(arg), "FROM:<a@b> ENVID=%s", repeat(local, 'e', 100));
    CHECK_EQ_INT(mail_code(arg), 0);
    snprintf(arg, sizeof(arg), "FROM:<a@b> ENVID=%s", repeat(local, 'e', 101));
    CHECK_EQ_INT(mail_code(arg), 501);
    /* ORCPT: 500 decoded octets ok, 501 not */
    struct smtp_rcpt_params rp;
    struct smtp_reply reply;
    char big[600];
    snprintf(arg, sizeof(arg), "TO:<a@b> ORCPT=rfc822;%s", repeat(big, 'o', 500));
    CHECK_EQ_INT(smtp_rcpt_parse(arg, false, &path, &rp, &reply), 0);
    CHECK_EQ_INT(strlen(rp.orcpt), 507);
    snprintf(arg, sizeof(arg), "TO:<a@b> ORCPT=rfc822;%s", repeat(big, 'o', 501));
    CHECK_EQ_INT(smtp_rcpt_parse(arg, false, &path, &rp, &reply), -1);
    CHECK_EQ_INT(reply.code, 501);
    /* AUTH: a 256-octet value fits */
    snprintf(arg, sizeof(arg), "FROM:<a@b> AUTH=%s", repeat(big, 'u', 256));
    CHECK_EQ_INT(mail_code(arg), 0);
    snprintf(arg, sizeof(arg), "FROM:<a@b> AUTH=%s", repeat(big, 'u', 259));
    CHECK_EQ_INT(mail_code(arg), 501);
}

/* ------------------------------------------------------- smtp_address_parse */

struct address_case {
    const char *addr;
    const char *expect;       /* render_path, or NULL for -1 */
};

static const struct address_case address_cases[] = {
    { "user@example.org", "user@example.org|user|example.org" },
    { "User.Name@Example.ORG", "User.Name@example.org|User.Name|example.org" },
    { "\"x y\"@example.org", "\"x y\"@example.org|\"x y\"|example.org" },
    { "\"xy\"@example.org", "xy@example.org|xy|example.org" },
    { "a@[127.0.0.1]", "a@[127.0.0.1]|a|[127.0.0.1]" },
    { "a@[IPv6:::1]", "a@[IPv6:::1]|a|[IPv6:::1]" },
    { "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\x85\xac\xe5\x8f\xb8", "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\x85\xac\xe5\x8f\xb8|\xe7\x94\xa8\xe6\x88\xb7|\xe4\xbe\x8b\xe5\xad\x90.\xe5\x85\xac\xe5\x8f\xb8 utf8" },
    { "", NULL },
    { "user", NULL },
    { "Postmaster", NULL },
    { "@example.org", NULL },
    { "user@", NULL },
    { "<user@example.org>", NULL },
    { "user@example.org ", NULL },
    { " user@example.org", NULL },
    { "user@example.org.", NULL },
    { "us er@example.org", NULL },
    { "user@exa mple.org", NULL },
    { "user@example.org\n", NULL },
    { "@a:user@example.org", NULL },
    { "u\xffser@example.org", NULL },
    { "u\xc3@example.org", NULL },
};

static void test_address(void)
{
    for (size_t i = 0; i < sizeof(address_cases) / sizeof(address_cases[0]); i++) {
        const struct address_case *c = &address_cases[i];
        struct smtp_path path;
        char got[1024];
        int rc = smtp_address_parse(c->addr, &path);
        render_path(got, sizeof(got), &path);
        CHECK_EQ_STR(got, c->expect ? c->expect : "||");
        CHECK_EQ_INT(rc, c->expect ? 0 : -1);
        if (rc != (c->expect ? 0 : -1))
            fprintf(stderr, "  address case %zu: \"%s\"\n", i, c->addr);
    }
}

/* ------------------------------------------------------------------- xtext */

static void test_xtext(void)
{
    static const struct {
        const char *in;
        int rc;
        const char *out;
    } dec[] = {
        { "", 0, "" },
        { "abc", 0, "abc" },
        { "a+2Bb", 0, "a+b" },
        { "+3D", 0, "=" },
        { "+20+7F+FF", 0, " \x7f\xff" },
        { "<>", 0, "<>" },
        { "a+2bb", -1, "" },
        { "a+2", -1, "" },
        { "a+", -1, "" },
        { "+", -1, "" },
        { "a+G0", -1, "" },
        { "a+00", -1, "" },
        { "a=b", -1, "" },
        { "a b", -1, "" },
        { "a\x7f", -1, "" },
        { "\xc3\xa9", -1, "" },
    };
    for (size_t i = 0; i < sizeof(dec) / sizeof(dec[0]); i++) {
        char out[64] = "";
        int rc = smtp_xtext_decode(dec[i].in, out, sizeof(out));
        CHECK_EQ_INT(rc, dec[i].rc);
        if (rc == 0)
            CHECK_EQ_STR(out, dec[i].out);
    }
    char out[8];
    CHECK_EQ_INT(smtp_xtext_decode("abcdefg", out, 8), 0);
    CHECK_EQ_INT(smtp_xtext_decode("abcdefgh", out, 8), -1);
    CHECK_EQ_INT(smtp_xtext_decode("abcdef+2B", out, 8), 0);
    CHECK_EQ_INT(smtp_xtext_decode("", out, 0), -1);

    char enc[32];
    CHECK_EQ_INT(smtp_xtext_encode("a+b=c d", enc, sizeof(enc)), 0);
    CHECK_EQ_STR(enc, "a+2Bb+3Dc+20d");
    CHECK_EQ_INT(smtp_xtext_encode("", enc, 1), 0);
    CHECK_EQ_STR(enc, "");
    CHECK_EQ_INT(smtp_xtext_encode("", enc, 0), -1);
    CHECK_EQ_INT(smtp_xtext_encode("abc", enc, 4), 0);
    CHECK_EQ_INT(smtp_xtext_encode("abcd", enc, 4), -1);
    CHECK_EQ_INT(smtp_xtext_encode("ab+", enc, 5), -1);
    CHECK_EQ_INT(smtp_xtext_encode("ab+", enc, 6), 0);
    CHECK_EQ_INT(smtp_xtext_encode("\xe2\x82\xac", enc, sizeof(enc)), 0);
    CHECK_EQ_STR(enc, "+E2+82+AC");

    /* round trips of random strings (no NUL) */
    for (int n = 0; n < 2000; n++) {
        char src[40], e[40 * 3 + 1], d[41];
        size_t len = rng_next() % 40;
        for (size_t i = 0; i < len; i++)
            src[i] = (char)(1 + rng_next() % 255);
        src[len] = '\0';
        int ok = smtp_xtext_encode(src, e, sizeof(e)) == 0 && smtp_xtext_decode(e, d, sizeof(d)) == 0
                 && strcmp(src, d) == 0;
        CHECK(ok);
        if (!ok)
            break;
    }
}

/* -------------------------------------------------------------------- BDAT */

static void test_bdat(void)
{
    static const struct {
        const char *arg;
        int rc;
        uint64_t size;
        bool last;
    } cases[] = {
        { "0", 0, 0, false },
        { "100", 0, 100, false },
        { "100 LAST", 0, 100, true },
        { "0 LAST", 0, 0, true },
        { "42 last", 0, 42, true },
        { "007 LaSt", 0, 7, true },
        { "18446744073709551615", 0, UINT64_MAX, false },
        { "18446744073709551615 LAST", 0, UINT64_MAX, true },
        { "18446744073709551616", -1, 0, false },
        { "99999999999999999999999", -1, 0, false },
        { "", -1, 0, false },
        { " 100", -1, 0, false },
        { "100 ", -1, 0, false },
        { "100  LAST", -1, 0, false },
        { "100 LAST ", -1, 0, false },
        { "100 LASTX", -1, 0, false },
        { "100 FIRST", -1, 0, false },
        { "+100", -1, 0, false },
        { "-1", -1, 0, false },
        { "1e3", -1, 0, false },
        { "0x10", -1, 0, false },
        { "LAST", -1, 0, false },
        { "100\tLAST", -1, 0, false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t size = 12345;
        bool last = true;
        struct smtp_reply reply = { 0, NULL, NULL };
        int rc = smtp_bdat_parse(cases[i].arg, &size, &last, &reply);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == 0) {
            CHECK(size == cases[i].size);
            CHECK_EQ_INT(last, cases[i].last);
        } else {
            CHECK_EQ_INT(reply.code, 501);
            CHECK_EQ_STR(reply.status, "5.5.4");
        }
        if (rc != cases[i].rc)
            fprintf(stderr, "  BDAT case %zu: \"%s\"\n", i, cases[i].arg);
    }
}

/* ------------------------------------------------------------------ base64 */

static void test_base64(void)
{
    static const struct {
        const char *in;
        long rc;
        const char *out;
    } cases[] = {
        { "", 0, "" },
        { "Zg==", 1, "f" },
        { "Zm8=", 2, "fo" },
        { "Zm9v", 3, "foo" },
        { "Zm9vYg==", 4, "foob" },
        { "Zm9vYmE=", 5, "fooba" },
        { "Zm9vYmFy", 6, "foobar" },
        { "Zm9vYmFy\r\n", 6, "foobar" },
        { "Zm9v  ", 3, "foo" },
        { "   ", 0, "" },
        { "=", -1, "" },
        { "==", -1, "" },
        { "Zg=", -1, "" },
        { "Zg", -1, "" },
        { "Zm9", -1, "" },
        { "Z===", -1, "" },
        { "====", -1, "" },
        { "Zg==Zg==", -1, "" },
        { "Zm=v", -1, "" },
        { "Zh==", -1, "" },      /* non-zero pad bits */
        { "Zm9=", -1, "" },
        { "Zm 9v", -1, "" },
        { " Zm9v", -1, "" },
        { "Zm9v\nYmFy", -1, "" },
        { "Zm9-", -1, "" },
        { "Zm9_", -1, "" },
        { "Zm9v\x80", -1, "" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char out[32];
        long rc = base64_decode(cases[i].in, strlen(cases[i].in), out, sizeof(out));
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc > 0)
            CHECK(memcmp(out, cases[i].out, (size_t)rc) == 0);
        if (rc != cases[i].rc)
            fprintf(stderr, "  base64 case %zu: \"%s\"\n", i, cases[i].in);
    }
    unsigned char small[3];
    CHECK_EQ_INT(base64_decode("Zm9v", 4, small, 3), 3);
    CHECK_EQ_INT(base64_decode("Zm9vYg==", 8, small, 3), -1);
    CHECK_EQ_INT(base64_decode("Zm9v", 4, small, 2), -1);
    /* binary input with a NUL in the middle counts as a bad character */
    CHECK_EQ_INT(base64_decode("Zm\0v", 4, small, 3), -1);

    char enc[16];
    CHECK_EQ_INT(base64_encode((const unsigned char *)"foob", 4, enc, sizeof(enc)), 8);
    CHECK_EQ_STR(enc, "Zm9vYg==");
    CHECK_EQ_INT(base64_encode((const unsigned char *)"", 0, enc, 1), 0);
    CHECK_EQ_STR(enc, "");
    CHECK_EQ_INT(base64_encode((const unsigned char *)"foo", 3, enc, 4), -1);
    CHECK_EQ_INT(base64_encode((const unsigned char *)"foo", 3, enc, 5), 4);

    for (int n = 0; n < 2000; n++) {
        unsigned char src[64], dec[64];
        char e[100];
        size_t len = rng_next() % 64;
        for (size_t i = 0; i < len; i++)
            src[i] = (unsigned char)rng_next();
        long el = base64_encode(src, len, e, sizeof(e));
        long dl = el < 0 ? -1 : base64_decode(e, (size_t)el, dec, sizeof(dec));
        int ok = dl == (long)len && memcmp(src, dec, len) == 0;
        CHECK(ok);
        if (!ok)
            break;
    }
}

/* -------------------------------------------------------------- SASL PLAIN */

struct sasl_case {
    const char *plain;        /* before base64 */
    size_t len;
    const char *expect;       /* "authzid|authcid|passwd", or NULL for -1 */
};

static const struct sasl_case sasl_cases[] = {
    { S("\0user\0pass"), "|user|pass" },
    { S("admin\0user\0pass"), "admin|user|pass" },
    { S("\0user@example.org\0p a s s"), "|user@example.org|p a s s" },
    { S("\0j\xc3\xb6rg\0\xe9t\xe9"), "|j\xc3\xb6rg|\xe9t\xe9" },
    { S("\0u\0\x01\x7f"), "|u|\x01\x7f" },
    { S(""), NULL },
    { S("user"), NULL },
    { S("\0user"), NULL },
    { S("\0user\0"), NULL },
    { S("\0\0pass"), NULL },
    { S("\0user\0pass\0"), NULL },
    { S("a\0b\0c\0d"), NULL },
    { S("\0us\ner\0pass"), NULL },
    { S("\0us\xffr\0pass"), NULL },
    { S("z\x01\0user\0pass"), NULL },
};

static void test_sasl_plain(void)
{
    for (size_t i = 0; i < sizeof(sasl_cases) / sizeof(sasl_cases[0]); i++) {
        const struct sasl_case *c = &sasl_cases[i];
        char b64[128], zid[32], cid[32], pw[32], got[128];
        CHECK(base64_encode((const unsigned char *)c->plain, c->len, b64, sizeof(b64)) >= 0);
        int rc = sasl_plain_decode(b64, zid, sizeof(zid), cid, sizeof(cid), pw, sizeof(pw));
        snprintf(got, sizeof(got), "%s|%s|%s", zid, cid, pw);
        CHECK_EQ_INT(rc, c->expect ? 0 : -1);
        CHECK_EQ_STR(got, c->expect ? c->expect : "||");
        if (rc != (c->expect ? 0 : -1))
            fprintf(stderr, "  SASL case %zu\n", i);
    }
    char zid[8], cid[8], pw[8];
    /* field bounds: 7 octets fit an 8-byte buffer, 8 do not */
    CHECK_EQ_INT(sasl_plain_decode("AHVzZXJ1c2UAcGFzc3dvcg==", zid, 8, cid, 8, pw, 8), 0);   /* \0useruse\0passwor */
    CHECK_EQ_INT(sasl_plain_decode("AHVzZXJ1c2VyAHA=", zid, 8, cid, 8, pw, 8), -1);          /* \0useruser\0p */
    CHECK_EQ_INT(sasl_plain_decode("AHUAcGFzc3dvcmQ=", zid, 8, cid, 8, pw, 8), -1);          /* \0u\0password */
    CHECK_EQ_STR(pw, "");
    CHECK_EQ_INT(sasl_plain_decode("", zid, 8, cid, 8, pw, 8), -1);
    CHECK_EQ_INT(sasl_plain_decode("=", zid, 8, cid, 8, pw, 8), -1);
    CHECK_EQ_INT(sasl_plain_decode("*", zid, 8, cid, 8, pw, 8), -1);
    CHECK_EQ_INT(sasl_plain_decode("AHUAcA", zid, 8, cid, 8, pw, 8), -1);
    CHECK_EQ_INT(sasl_plain_decode("AHUAcA==", zid, 8, cid, 8, pw, 8), 0);
    /* over the AUTH line limit */
    char *huge = malloc(SMTP_AUTH_LINE_MAX + 5);
    memset(huge, 'A', SMTP_AUTH_LINE_MAX + 4);
    huge[SMTP_AUTH_LINE_MAX + 4] = '\0';
    CHECK_EQ_INT(sasl_plain_decode(huge, zid, 8, cid, 8, pw, 8), -1);
    free(huge);
}

/* ------------------------------------------------------------ DATA decoder */

struct data_sink {
    char buf[4096];
    size_t len;
    size_t calls;
};

static void sink_out(void *arg, const char *data, size_t len)
{
    struct data_sink *s = arg;
    if (len == 0 || s->len + len > sizeof(s->buf)) {
        s->len = sizeof(s->buf) + 1;   /* poison: empty or overflowing write */
        return;
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    s->calls++;
}

/* DATA cases: input, mode, max_size, whether smtp_data_finish follows,
 * expected output, bytes consumed (ALL = the whole input) and the flags
 * set at the end, rendered by render_data_flags. */
struct data_case {
    const char *in;
    size_t in_len;
    bool dot;
    uint64_t max;
    bool finish;
    const char *out;
    size_t out_len;
    size_t consumed;
    const char *flags;
};

#define DATA true
#define BDAT false
#define ALL ((size_t)-1)
static const struct data_case data_cases[] = {
    /* plain DATA */
    { S("a\r\n.\r\n"), DATA, 0, false, S("a\r\n"), ALL, "done" },
    { S(".\r\n"), DATA, 0, false, S(""), ALL, "done" },
    { S("\r\n.\r\n"), DATA, 0, false, S("\r\n"), ALL, "done" },
    { S("Subject: x\r\n\r\nbody\r\n.\r\n"), DATA, 0, false, S("Subject: x\r\n\r\nbody\r\n"), ALL, "done" },
    { S("a\r\n.\r\nQUIT\r\n"), DATA, 0, false, S("a\r\n"), 6, "done" },
    { S(".\r\nQUIT\r\n"), DATA, 0, false, S(""), 3, "done" },
    { S("a\r\n.\r\n.\r\n"), DATA, 0, false, S("a\r\n"), 6, "done" },
    { S("a\r\nb\r\n"), DATA, 0, false, S("a\r\nb\r\n"), ALL, "" },
    { S("a\r\n."), DATA, 0, false, S("a\r\n"), ALL, "" },
    { S("a\r\n.\r"), DATA, 0, false, S("a\r\n"), ALL, "" },
    { S(""), DATA, 0, false, S(""), ALL, "" },
    /* dot-unstuffing (RFC 5321 4.5.2) */
    { S("..\r\n.\r\n"), DATA, 0, false, S(".\r\n"), ALL, "done" },
    { S("..a\r\n.\r\n"), DATA, 0, false, S(".a\r\n"), ALL, "done" },
    { S(".a\r\n.\r\n"), DATA, 0, false, S("a\r\n"), ALL, "done" },
    { S("...\r\n.\r\n"), DATA, 0, false, S("..\r\n"), ALL, "done" },
    { S("a.\r\n.b\r\n..\r\nc\r\n.\r\n"), DATA, 0, false, S("a.\r\nb\r\n.\r\nc\r\n"), ALL, "done" },
    { S("x\r\n. \r\n.\r\n"), DATA, 0, false, S("x\r\n \r\n"), ALL, "done" },
    { S("x\r\n.\t\r\n.\r\n"), DATA, 0, false, S("x\r\n\t\r\n"), ALL, "done" },
    { S("x\r\n.\r\r\n.\r\n"), DATA, 0, false, S("x\r\n\r\r\n"), ALL, "done bare_cr" },
    /* smuggling: none of these end the data */
    { S("a\n.\nb"), DATA, 0, false, S("a\n.\nb"), ALL, "bare_lf" },
    { S("a\r.\rb"), DATA, 0, false, S("a\r.\rb"), ALL, "bare_cr" },
    { S("a\n.\r\nb"), DATA, 0, false, S("a\n.\r\nb"), ALL, "bare_lf" },
    { S("a\r\n.\nb"), DATA, 0, false, S("a\r\n\nb"), ALL, "bare_lf" },
    { S("a\r.\r\nb"), DATA, 0, false, S("a\r.\r\nb"), ALL, "bare_cr" },
    { S("\n.\n"), DATA, 0, false, S("\n.\n"), ALL, "bare_lf" },
    { S("\r.\r"), DATA, 0, false, S("\r.\r"), ALL, "bare_cr" },
    { S(".\n"), DATA, 0, false, S("\n"), ALL, "bare_lf" },
    { S(".\rx"), DATA, 0, false, S("\rx"), ALL, "bare_cr" },
    { S(".\r.\r\n"), DATA, 0, false, S("\r.\r\n"), ALL, "bare_cr" },
    { S("a\r\n.\r.\r\n"), DATA, 0, false, S("a\r\n\r.\r\n"), ALL, "bare_cr" },
    { S("a\n\r\n.\r\n"), DATA, 0, false, S("a\n\r\n"), ALL, "done bare_lf" },
    { S("a\r\r\n.\r\n"), DATA, 0, false, S("a\r\r\n"), ALL, "done bare_cr" },
    { S("a\r\n\n.\r\n"), DATA, 0, false, S("a\r\n\n.\r\n"), ALL, "bare_lf" },
    { S("a\r\n\r.\r\n"), DATA, 0, false, S("a\r\n\r.\r\n"), ALL, "bare_cr" },
    { S("a\n.\n\r\n.\r\nQUIT\r\n"), DATA, 0, false, S("a\n.\n\r\n"), 9, "done bare_lf" },
    { S("a\r\n\0.\r\n.\r\n"), DATA, 0, false, S("a\r\n\0.\r\n"), ALL, "done" },
    { S("a\nb\rc\r\nd\r\n.\r\n"), DATA, 0, false, S("a\nb\rc\r\nd\r\n"), ALL, "done bare_lf bare_cr" },
    { S("\r\n"), DATA, 0, false, S("\r\n"), ALL, "" },
    { S("\r"), DATA, 0, false, S("\r"), ALL, "" },
    { S("\r"), DATA, 0, true, S("\r"), ALL, "bare_cr" },
    { S("."), DATA, 0, false, S(""), ALL, "" },
    { S(".\r"), DATA, 0, true, S("\r"), ALL, "bare_cr" },
    /* size limit: output stops at exactly max, end still found */
    { S("abcdef\r\n.\r\n"), DATA, 8, false, S("abcdef\r\n"), ALL, "done" },
    { S("abcdefg\r\n.\r\n"), DATA, 8, false, S("abcdefg\r"), ALL, "done too_big" },
    { S("abcdefghij\r\n..x\r\n.\r\nNOOP\r\n"), DATA, 4, false, S("abcd"), 20, "done too_big" },
    { S("..\r\n..\r\n.\r\n"), DATA, 3, false, S(".\r\n"), ALL, "done too_big" },
    /* BDAT: bytes pass through, only flags */
    { S("a\r\n.\r\nQUIT\r\n"), BDAT, 0, false, S("a\r\n.\r\nQUIT\r\n"), ALL, "" },
    { S("..\r\n"), BDAT, 0, false, S("..\r\n"), ALL, "" },
    { S("a\nb"), BDAT, 0, false, S("a\nb"), ALL, "bare_lf" },
    { S("a\rb"), BDAT, 0, false, S("a\rb"), ALL, "bare_cr" },
    { S("a\r\nb\r"), BDAT, 0, false, S("a\r\nb\r"), ALL, "" },
    { S("a\r\nb\r"), BDAT, 0, true, S("a\r\nb\r"), ALL, "bare_cr" },
    { S("a\r\nb\r\n"), BDAT, 0, true, S("a\r\nb\r\n"), ALL, "" },
    { S("\n"), BDAT, 0, false, S("\n"), ALL, "bare_lf" },
    { S("\r\r\n\n"), BDAT, 0, false, S("\r\r\n\n"), ALL, "bare_lf bare_cr" },
    { S("x\ny\rz\r\nw\nv\rq\r"), BDAT, 0, true, S("x\ny\rz\r\nw\nv\rq\r"), ALL, "bare_lf bare_cr" },
    { S("0123456789"), BDAT, 5, false, S("01234"), ALL, "too_big" },
};

/* Feeds the case split at the offsets in cuts (ascending, n of them). */
static void data_run(const struct data_case *c, const size_t *cuts, size_t n, struct data_sink *sink,
                     struct smtp_data_decoder *d, size_t *consumed_r)
{
    smtp_data_init(d, c->dot, c->max);
    sink->len = sink->calls = 0;
    size_t pos = 0, consumed = 0;
    for (size_t k = 0; k <= n; k++) {
        size_t stop = k < n ? cuts[k] : c->in_len;
        if (stop < pos)
            continue;
        size_t got = smtp_data_feed(d, c->in + pos, stop - pos, sink_out, sink);
        consumed += got;
        if (got < stop - pos) {
            CHECK(d->done);
            break;
        }
        pos = stop;
    }
    if (c->finish)
        smtp_data_finish(d, sink_out, sink);
    *consumed_r = consumed;
}

static int data_check(size_t idx, const char *how, const struct data_case *c, const struct data_sink *sink,
                      const struct smtp_data_decoder *d, size_t consumed)
{
    int before = unit_failed;
    char flags[64];
    render_data_flags(flags, sizeof(flags), d);
    CHECK_EQ_INT(sink->len, c->out_len);
    CHECK(sink->len == c->out_len && memcmp(sink->buf, c->out, c->out_len) == 0);
    CHECK_EQ_INT(consumed, c->consumed == ALL ? c->in_len : c->consumed);
    CHECK_EQ_STR(flags, c->flags);
    if (unit_failed != before) {
        fprintf(stderr, "  DATA case %zu (%s)\n", idx, how);
        return -1;
    }
    return 0;
}

static void test_data(void)
{
    size_t cuts[64] = { 0 };
    for (size_t i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
        const struct data_case *c = &data_cases[i];
        struct data_sink sink;
        struct smtp_data_decoder d;
        size_t consumed;
        data_run(c, cuts, 0, &sink, &d, &consumed);
        if (data_check(i, "whole", c, &sink, &d, consumed) < 0)
            continue;
        /* whole input: one output call per run of bytes, not per byte */
        CHECK(sink.calls <= 8);
        size_t n = c->in_len < 64 ? c->in_len : 64;
        for (size_t k = 0; k < n; k++)
            cuts[k] = k;
        data_run(c, cuts, n, &sink, &d, &consumed);
        if (data_check(i, "byte by byte", c, &sink, &d, consumed) < 0)
            continue;
        for (int round = 0; round < 50; round++) {
            size_t m = c->in_len ? rng_next() % 5 : 0;
            for (size_t k = 0; k < m; k++)
                cuts[k] = rng_next() % (c->in_len + 1);
            for (size_t a = 1; a < m; a++)   /* sort */
                for (size_t b = a; b > 0 && cuts[b - 1] > cuts[b]; b--) {
                    size_t t = cuts[b];
                    cuts[b] = cuts[b - 1];
                    cuts[b - 1] = t;
                }
            data_run(c, cuts, m, &sink, &d, &consumed);
            if (data_check(i, "random split", c, &sink, &d, consumed) < 0)
                break;
        }
    }
}

/* A large message: runs of output, size count, feeding after the end. */
static void test_data_large(void)
{
    size_t lines = 20000, len = 0;
    char *msg = malloc(lines * 80 + 16);
    for (size_t i = 0; i < lines; i++) {
        if (i % 7 == 0)
            msg[len++] = '.';
        memset(msg + len, 'x', 76);
        len += 76;
        msg[len++] = '\r';
        msg[len++] = '\n';
    }
    memcpy(msg + len, ".\r\nQUIT\r\n", 9);
    size_t total = len + 9;
    size_t expect = lines * 78;

    struct smtp_data_decoder d;
    smtp_data_init(&d, true, 0);
    size_t pos = 0;
    while (pos < total && !d.done) {
        size_t chunk = 1 + rng_next() % 5000;
        if (chunk > total - pos)
            chunk = total - pos;
        pos += smtp_data_feed(&d, msg + pos, chunk, NULL, NULL);
    }
    CHECK(d.done);
    CHECK_EQ_INT(pos, len + 3);
    CHECK(d.size == expect);
    CHECK(!d.bare_lf && !d.bare_cr && !d.too_big);
    CHECK_EQ_INT(smtp_data_feed(&d, msg + pos, total - pos, NULL, NULL), 0);

    smtp_data_init(&d, true, 1000);
    CHECK_EQ_INT(smtp_data_feed(&d, msg, total, NULL, NULL), len + 3);
    CHECK(d.too_big && d.done);
    CHECK(d.size == expect);
    free(msg);
}

int main(void)
{
    RUN(test_commands);
    RUN(test_mail);
    RUN(test_rcpt);
    RUN(test_limits);
    RUN(test_address);
    RUN(test_xtext);
    RUN(test_bdat);
    RUN(test_base64);
    RUN(test_sasl_plain);
    RUN(test_data);
    RUN(test_data_large);
    return unit_report("smtp_parse");
}
