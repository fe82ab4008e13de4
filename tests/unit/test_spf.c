/*
 * SPF engine: record syntax, macro expansion (the RFC 7208 7.4 examples),
 * domain-spec rules, CIDR matching, the processing limits, explanations,
 * HELO checks, and the Received-SPF field, against an in-memory DNS.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>

#include "auth/spf.h"
#include "unit.h"

/* ---- an in-memory zone ---- */

struct zrec {
    const char *name;
    uint16_t type;                /* 0: every query for name times out */
    const char *value;            /* A/AAAA text, "PREF host" for MX, TXT, PTR/CNAME target */
};

static const struct zrec *zone;
static int zone_queries;
static long zone_delay_ms;

static size_t wire_name(const char *text, unsigned char *out)
{
    size_t o = 0;
    while (*text) {
        size_t n = strcspn(text, ".");
        out[o++] = (unsigned char)n;
        memcpy(out + o, text, n);
        o += n;
        text += n;
        if (*text == '.')
            text++;
    }
    out[o++] = 0;
    return o;
}

static size_t make_rdata(const struct zrec *z, unsigned char *out)
{
    switch (z->type) {
    case DNS_T_A:
        inet_pton(AF_INET, z->value, out);
        return 4;
    case DNS_T_AAAA:
        inet_pton(AF_INET6, z->value, out);
        return 16;
    case DNS_T_MX: {
        unsigned pref = (unsigned)atoi(z->value);
        out[0] = (unsigned char)(pref >> 8);
        out[1] = (unsigned char)pref;
        return 2 + wire_name(strchr(z->value, ' ') + 1, out + 2);
    }
    case DNS_T_TXT: {
        size_t len = strlen(z->value), o = 0;
        for (size_t i = 0; i < len || i == 0; i += 255) {
            size_t n = len - i > 255 ? 255 : len - i;
            out[o++] = (unsigned char)n;
            memcpy(out + o, z->value + i, n);
            o += n;
        }
        return o;
    }
    default:
        return wire_name(z->value, out);
    }
}

static bool zname_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la && a[la - 1] == '.')
        la--;
    return la == lb && strncasecmp(a, b, la) == 0;
}

static enum dns_status zone_query(void *arg, const char *name, uint16_t type, struct dns_result *res)
{
    const unsigned char *data[64];
    int len[64];
    static unsigned char buf[64][600];
    size_t n = 0;
    bool exists = false;
    (void)arg;
    zone_queries++;
    if (zone_delay_ms) {
        struct timespec ts = { 0, zone_delay_ms * 1000000L };
        nanosleep(&ts, NULL);
    }
    memset(res, 0, sizeof(*res));
    if (!dns_name_valid(name))
        return res->status = DNS_BADNAME;
    for (const struct zrec *z = zone; z->name; z++) {
        if (!zname_eq(name, z->name))
            continue;
        exists = true;
        if (z->type == 0) {
            snprintf(res->why, sizeof(res->why), "timeout");
            return res->status = DNS_TEMPFAIL;
        }
        if (z->type == type && n < 63) {
            len[n] = (int)make_rdata(z, buf[n]);
            data[n] = buf[n];
            n++;
        }
    }
    data[n] = NULL;
    if (!exists)
        return dns_result_from_rdata(res, type, 3, true, data, len);
    return dns_result_from_rdata(res, type, 0, false, data, len);
}

static const struct spf_dns mem_dns = { zone_query, NULL };

static enum spf_result check(const char *ip, const char *helo, const char *from, struct spf_response *r)
{
    struct spf_request req = { .ip = ip, .helo = helo, .mail_from = from, .receiver = "mx.receiver.test" };
    return spf_check_mailfrom(&mem_dns, &req, r);
}

/* ---- record syntax ---- */

static void test_parse(void)
{
    static const struct { const char *rec; int ok; } cases[] = {
        { "v=spf1", 1 },
        { "v=spf1 ", 1 },
        { "V=SpF1 -ALL", 1 },
        { "v=spf1  a  mx -all ", 1 },
        { "v=spf1 a:mail.example.com/24//64 mx:x.example.org/0 ptr ptr:example.com exists:%{i}.e.x.org", 1 },
        { "v=spf1 ip4:192.0.2.0/24 ip4:10.0.0.1 ip6:2001:db8::/32 ip6:::1.1.1.1/0 -all", 1 },
        { "v=spf1 include:_spf.example.com ~all", 1 },
        { "v=spf1 redirect=_spf.example.com exp=explain.%{d}", 1 },
        { "v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all", 1 },
        { "v=spf1 default=+ foo=%{c}", 1 },
        { "v=spf1 a//0 a/0 mx//128 mx/32", 1 },
        { "v=spf1 a:foo:bar/baz.example.com", 1 },
        { "v=spf1 a:%{d}", 1 },
        { "v=spf1 exists:foo.%%", 1 },
        { "v=spf1 a:foo.example.xn--zckzah", 1 },
        { "v=spf10", 0 },
        { "v=spf1\tall", 0 },
        { "spf1 -all", 0 },
        { "v=spf1 -all moo", 0 },
        { "v=spf1 -all.", 0 },
        { "v=spf1 -all:foo", 0 },
        { "v=spf1 all/8", 0 },
        { "v=spf1 ptr/0", 0 },
        { "v=spf1 ptr:", 0 },
        { "v=spf1 a:", 0 },
        { "v=spf1 a/33", 0 },
        { "v=spf1 a//129", 0 },
        { "v=spf1 a/24/64", 0 },
        { "v=spf1 a/032", 0 },
        { "v=spf1 a:museum", 0 },
        { "v=spf1 a:museum.", 0 },
        { "v=spf1 a:abc.123", 0 },
        { "v=spf1 a:example.-com", 0 },
        { "v=spf1 a:example.com:8080", 0 },
        { "v=spf1 a:foo-bar", 0 },
        { "v=spf1 include", 0 },
        { "v=spf1 include:", 0 },
        { "v=spf1 include:x.example.com/24", 0 },
        { "v=spf1 exists", 0 },
        { "v=spf1 exists:x.example.com/24", 0 },
        { "v=spf1 ip4", 0 },
        { "v=spf1 ip4:1.2.3", 0 },
        { "v=spf1 ip4:1.2.3.4:8080", 0 },
        { "v=spf1 ip4:1.2.3.04", 0 },
        { "v=spf1 ip4:1.2.3.256", 0 },
        { "v=spf1 ip4:1.2.3.4//32", 0 },
        { "v=spf1 ip4:1.2.3.4/33", 0 },
        { "v=spf1 ip6", 0 },
        { "v=spf1 ip6::CAFE::BABE", 0 },
        { "v=spf1 ip6:::1/129", 0 },
        { "v=spf1 ip6:::1//33", 0 },
        { "v=spf1 redirect:x.example.com", 0 },
        { "v=spf1 redirect=", 0 },
        { "v=spf1 redirect=-all", 0 },
        { "v=spf1 exp=", 0 },
        { "v=spf1 exp=a.example.com exp=b.example.com", 0 },
        { "v=spf1 redirect=a.example.com redirect=a.example.com", 0 },
        { "v=spf1 exp=%{r}.example.com", 0 },
        { "v=spf1 1up=foo", 0 },
        { "v=spf1 =all", 0 },
        { "v=spf1 foo=%abc", 0 },
        { "v=spf1 exists:%(ir).sbl.example.com", 0 },
        { "v=spf1 exists:foo%.sbl.example.com", 0 },
        { "v=spf1 a:%{a}.example.com", 0 },
        { "v=spf1 a:%{d0}.example.com", 0 },
        { "v=spf1 a:%{d", 0 },
        { "v=spf1 a:ctrl.example.com\rptr", 0 },
        { "v=spf1 \x80" "a:example.net", 0 },
        { "v=spf1 a:\xef\xbb\xbfgarbage.example.net", 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct spf_record *rec;
        char err[160] = "";
        const char *t = cases[i].rec;
        int rc = spf_record_parse(t, strlen(t), &rec, err, sizeof(err));
        if ((rc == 0) != cases[i].ok)
            fprintf(stderr, "  record %zu \"%s\": rc=%d (%s)\n", i, t, rc, err);
        CHECK_EQ_INT(rc == 0, cases[i].ok);
        if (rc == 0)
            spf_record_free(rec);
        else
            CHECK(err[0] != '\0');
        /* Every prefix parses or fails cleanly. */
        for (size_t n = 0; n < strlen(t); n++) {
            if (spf_record_parse(t, n, &rec, err, sizeof(err)) == 0)
                spf_record_free(rec);
        }
    }
    /* A NUL inside a record is an error, not an end. */
    struct spf_record *rec;
    char err[160];
    CHECK_EQ_INT(spf_record_parse("v=spf1 a:foo.example.com\0", 25, &rec, err, sizeof(err)), -1);
    CHECK_EQ_INT(spf_record_parse("v=spf1 a mx ip4:1.2.3.4 -all", 28, &rec, err, sizeof(err)), 0);
    CHECK_EQ_INT(spf_record_term_count(rec), 4);
    spf_record_free(rec);
}

static void test_domain_spec(void)
{
    static const struct { const char *spec; bool ok; } cases[] = {
        { "example.com", true }, { "example.com.", true }, { "a.b-c", true }, { "x.xn--zckzah", true },
        { "%{d}", true }, { "foo.%{d2}", true }, { "%{ir}.%{v}._spf.%{d2}", true }, { "x.1-2", true },
        { "_spf.example.com", true }, { ".com", true }, { "foo%%", true },
        { "", false }, { "com", false }, { "com.", false }, { "x.123", false }, { "x.-com", false },
        { "x.com-", false }, { "x.co_m", false }, { "x.com..", false }, { "%{d}x", false },
        { "%{c}.example.com", false }, { "%{t}.example.com", false }, { "a b.example.com", false },
        { "x%y.example.com", false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool ok = spf_domain_spec_valid(cases[i].spec, strlen(cases[i].spec));
        if (ok != cases[i].ok)
            fprintf(stderr, "  domain-spec \"%s\"\n", cases[i].spec);
        CHECK_EQ_INT(ok, cases[i].ok);
    }
}

/* ---- macros ---- */

static const char *p_value;
static const char *validated_stub(void *arg, const char *domain)
{
    (void)arg;
    (void)domain;
    return p_value;
}

static void vars_rfc(struct spf_macro_vars *v, const char *ip)
{
    memset(v, 0, sizeof(*v));
    v->sender = "strong-bad@email.example.com";
    v->domain = "email.example.com";
    v->helo = "mx.example.org";
    v->receiver = "rcv.example.net";
    v->now = 1700000000;
    v->validated = validated_stub;
    dns_addr_parse(ip, &v->ip);
}

static void expect_macro(const struct spf_macro_vars *v, enum spf_macro_mode mode, const char *in, const char *want)
{
    char out[1024];
    const char *err;
    int rc = spf_macro_expand(in, strlen(in), mode, v, out, sizeof(out), &err);
    if (want == NULL) {
        CHECK_EQ_INT(rc, -1);
        CHECK(err != NULL);
        /* The syntax-only walk agrees. */
        CHECK_EQ_INT(spf_macro_expand(in, strlen(in), mode, NULL, NULL, 0, &err), -1);
        return;
    }
    if (rc != 0)
        fprintf(stderr, "  macro \"%s\": %s\n", in, err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(spf_macro_expand(in, strlen(in), mode, NULL, NULL, 0, &err), 0);
}

static void test_macro_rfc_examples(void)
{
    struct spf_macro_vars v;
    vars_rfc(&v, "192.0.2.3");
    /* RFC 7208 7.4 */
    static const char *const ex[][2] = {
        { "%{s}", "strong-bad@email.example.com" },
        { "%{o}", "email.example.com" },
        { "%{d}", "email.example.com" },
        { "%{d4}", "email.example.com" },
        { "%{d3}", "email.example.com" },
        { "%{d2}", "example.com" },
        { "%{d1}", "com" },
        { "%{dr}", "com.example.email" },
        { "%{d2r}", "example.email" },
        { "%{l}", "strong-bad" },
        { "%{l-}", "strong.bad" },
        { "%{lr}", "strong-bad" },
        { "%{lr-}", "bad.strong" },
        { "%{l1r-}", "strong" },
        { "%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com" },
        { "%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com" },
        { "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com" },
        { "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com" },
        { "%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net" },
    };
    for (size_t i = 0; i < sizeof(ex) / sizeof(ex[0]); i++)
        expect_macro(&v, SPF_MACRO_DOMAIN, ex[i][0], ex[i][1]);

    vars_rfc(&v, "2001:db8::cb01");
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{ir}.%{v}._spf.%{d2}",
                 "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com");
    expect_macro(&v, SPF_MACRO_EXPLAIN, "%{c} via %{v}", "2001:db8::cb01 via ip6");
}

static void test_macro_rules(void)
{
    struct spf_macro_vars v;
    vars_rfc(&v, "192.0.2.3");
    expect_macro(&v, SPF_MACRO_DOMAIN, "a%%b%_c%-d.example.com", "a%b c%20d.example.com");
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{h}.%{H}", "mx.example.org.mx.example.org");
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{p}.x.org", "unknown.x.org");
    p_value = "mail.example.com";
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{p2}.x.org", "example.com.x.org");
    p_value = NULL;
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{d99999999999999999999}", "email.example.com");
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{D2R}", "example.email");
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{l.-+,/_=}", "strong.bad");
    expect_macro(&v, SPF_MACRO_EXPLAIN, "%{c} %{r} %{t}", "192.0.2.3 rcv.example.net 1700000000");
    expect_macro(&v, SPF_MACRO_EXPLAIN, "two  spaces", "two  spaces");
    v.domain = "x.y.z";
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{d2r}", "y.x");
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{d1r}", "x");
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{d5r}", "z.y.x");
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{d2}", "y.z");
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{d1}", "z");
    v.domain = "a..b-c.";
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{dr}", ".b-c..a");
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{dr-.}", ".c.b..a");
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{d2-}", "a..b.c.");
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{d1-}", "c.");
    v.domain = "email.example.com";
    /* Upper case: URL-escaped, unreserved characters kept (RFC 7208 7.3). */
    v.sender = "~jack&jill=up-a_b3.c@e8.example.com";
    expect_macro(&v, SPF_MACRO_EXPLAIN, "l=%{L}", "l=~jack%26jill%3Dup-a_b3.c");
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{S}", "~jack%26jill%3Dup-a_b3.c%40e8.example.com");
    /* A sender without local-part reads as postmaster. */
    v.sender = "e8.example.com";
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{l}.%{o}", "postmaster.e8.example.com");
    /* Syntax errors. */
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{c}", NULL);
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{r}", NULL);
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{t}", NULL);
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{x}", NULL);
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{d0}", NULL);
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{d", NULL);
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{d2rr}", NULL);
    expect_macro(&v, SPF_MACRO_DOMAIN, "%{d!}", NULL);
    expect_macro(&v, SPF_MACRO_DOMAIN, "%(d)", NULL);
    expect_macro(&v, SPF_MACRO_DOMAIN, "abc%", NULL);
    expect_macro(&v, SPF_MACRO_DOMAIN, "a b", NULL);
    expect_macro(&v, SPF_MACRO_EXPLAIN, "The %{x}-files.", NULL);
    expect_macro(&v, SPF_MACRO_EXPLAIN, "tab\there", NULL);
    expect_macro(&v, SPF_MACRO_MODIFIER, "%{c}%{r}%{t}", "192.0.2.3rcv.example.net1700000000");
}

static void test_macro_truncation(void)
{
    struct spf_macro_vars v;
    char out[1024], want[300];
    const char *err;
    vars_rfc(&v, "192.0.2.3");
    v.sender = "test@somewhat.long.exp.example.com";
    /* 258 octets: the first label goes, 251 remain (RFC 7208 7.3). */
    const char *in = "foobar.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.example.com";
    CHECK_EQ_INT(spf_macro_expand(in, strlen(in), SPF_MACRO_DOMAIN, &v, out, sizeof(out), &err), 0);
    want[0] = '\0';
    for (int i = 0; i < 8; i++)
        strcat(want, "somewhat.long.exp.example.com.");
    strcat(want, "example.com");
    CHECK_EQ_STR(out, want);
    CHECK(strlen(out) <= 253);
    /* Explanations are not truncated that way. */
    CHECK_EQ_INT(spf_macro_expand(in, strlen(in), SPF_MACRO_EXPLAIN, &v, out, sizeof(out), &err), 0);
    CHECK_EQ_INT(strlen(out), 258);
    /* The output buffer bounds the copy. */
    CHECK_EQ_INT(spf_macro_expand(in, strlen(in), SPF_MACRO_EXPLAIN, &v, out, 10, &err), 0);
    CHECK_EQ_STR(out, "foobar.so");
}

/* ---- evaluation ---- */

static const struct zrec zone_main[] = {
    { "example.com", DNS_T_TXT, "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx -all" },
    { "example.com", DNS_T_A, "198.51.100.7" },
    { "example.com", DNS_T_AAAA, "2001:db8:ffff::1" },
    { "example.com", DNS_T_MX, "10 mx.example.com" },
    { "example.com", DNS_T_TXT, "google-site-verification=xyz" },
    { "mx.example.com", DNS_T_A, "203.0.113.9" },
    { "soft.example.com", DNS_T_TXT, "v=spf1 ~all" },
    { "neutral.example.com", DNS_T_TXT, "v=spf1 ?all" },
    { "default.example.com", DNS_T_TXT, "v=spf1 ip4:10.0.0.1" },
    { "none.example.com", DNS_T_A, "192.0.2.99" },
    { "two.example.com", DNS_T_TXT, "v=spf1 -all" },
    { "two.example.com", DNS_T_TXT, "v=spf1 +all" },
    { "bad.example.com", DNS_T_TXT, "v=spf1 ip4:1.2.3 -all" },
    { "slow.example.com", 0, "" },
    { "inc.example.com", DNS_T_TXT, "v=spf1 include:example.com include:slow.example.com -all" },
    { "incnone.example.com", DNS_T_TXT, "v=spf1 include:none.example.com -all" },
    { "redir.example.com", DNS_T_TXT, "v=spf1 redirect=example.com" },
    { "redirall.example.com", DNS_T_TXT, "v=spf1 ?all redirect=example.com" },
    { "cidr.example.com", DNS_T_TXT, "v=spf1 a:hosts.example.com/28//120 -all" },
    { "hosts.example.com", DNS_T_A, "192.0.2.200" },
    { "hosts.example.com", DNS_T_AAAA, "2001:db8:1::" },
    { "exp.example.com", DNS_T_TXT, "v=spf1 -all exp=why.%{d}" },
    { "why.exp.example.com", DNS_T_TXT, "%{i} is not one of %{d}'s servers; see %{R}/why?s=%{S}" },
    { "exists.example.com", DNS_T_TXT, "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all" },
    { "1.2.0.192.alice._spf.exists.example.com", DNS_T_A, "127.0.0.2" },
    { "ptr.example.com", DNS_T_TXT, "v=spf1 ptr -all" },
    { "9.113.0.203.in-addr.arpa", DNS_T_PTR, "mail.ptr.example.com" },
    { "9.113.0.203.in-addr.arpa", DNS_T_PTR, "other.example.net" },
    { "mail.ptr.example.com", DNS_T_A, "203.0.113.9" },
    { "pmacro.example.com", DNS_T_TXT, "v=spf1 -all exp=pm.example.com" },
    { "pm.example.com", DNS_T_TXT, "host %{p}" },
    { "helo.example.org", DNS_T_TXT, "v=spf1 a -all" },
    { "helo.example.org", DNS_T_A, "192.0.2.50" },
    { "pm-local.example.com", DNS_T_TXT, "v=spf1 -all exp=l.example.com" },
    { "l.example.com", DNS_T_TXT, "%{l}" },
    { NULL, 0, NULL },
};

static void test_results(void)
{
    struct spf_response r;
    zone = zone_main;
    CHECK_EQ_INT(check("192.0.2.1", "h.example.org", "a@example.com", &r), SPF_PASS);
    CHECK_EQ_STR(r.mechanism, "ip4:192.0.2.0/24");
    CHECK_EQ_STR(r.domain, "example.com");
    CHECK_EQ_INT(check("2001:db8::5", "h", "a@example.com", &r), SPF_PASS);
    CHECK_EQ_INT(check("::ffff:192.0.2.1", "h", "a@example.com", &r), SPF_PASS);   /* mapped: IPv4 */
    CHECK_EQ_INT(check("198.51.100.7", "h", "a@example.com", &r), SPF_PASS);
    CHECK_EQ_STR(r.mechanism, "a");
    CHECK_EQ_INT(check("2001:db8:ffff::1", "h", "a@example.com", &r), SPF_PASS);
    CHECK_EQ_INT(check("203.0.113.9", "h", "a@example.com", &r), SPF_PASS);
    CHECK_EQ_STR(r.mechanism, "mx");
    CHECK_EQ_INT(check("198.51.100.8", "h", "a@example.com", &r), SPF_FAIL);
    CHECK_EQ_STR(r.mechanism, "-all");
    CHECK_EQ_STR(r.explanation, "");
    CHECK_EQ_INT(check("198.51.100.8", "h", "a@soft.example.com", &r), SPF_SOFTFAIL);
    CHECK_EQ_INT(check("198.51.100.8", "h", "a@neutral.example.com", &r), SPF_NEUTRAL);
    CHECK_EQ_INT(check("198.51.100.8", "h", "a@default.example.com", &r), SPF_NEUTRAL);
    CHECK_EQ_STR(r.mechanism, "default");
    CHECK_EQ_INT(check("198.51.100.8", "h", "a@none.example.com", &r), SPF_NONE);
    CHECK_EQ_INT(check("198.51.100.8", "h", "a@nxdomain.example.com", &r), SPF_NONE);
    CHECK_EQ_INT(check("198.51.100.8", "h", "a@two.example.com", &r), SPF_PERMERROR);
    CHECK(strstr(r.problem, "2 SPF records") != NULL);
    CHECK_EQ_INT(check("198.51.100.8", "h", "a@bad.example.com", &r), SPF_PERMERROR);
    CHECK(r.problem[0] != '\0');
    CHECK_EQ_INT(check("198.51.100.8", "h", "a@slow.example.com", &r), SPF_TEMPERROR);
    CHECK(strstr(r.problem, "timeout") != NULL);
    /* Malformed or single-label domains: none without a query (4.3). */
    CHECK_EQ_INT(check("192.0.2.1", "h", "a@localhost", &r), SPF_NONE);
    CHECK_EQ_INT(check("192.0.2.1", "h", "a@[192.0.2.1]", &r), SPF_NONE);
    CHECK_EQ_INT(check("192.0.2.1", "h", "a@x..example.com", &r), SPF_NONE);
    CHECK_EQ_INT(check("not-an-ip", "h", "a@example.com", &r), SPF_NONE);
    /* Over-long identities are refused, never truncated into another one. */
    char longfrom[800];
    memset(longfrom, 'x', 700);
    strcpy(longfrom + 700, "@example.com");
    CHECK_EQ_INT(check("192.0.2.1", "h", longfrom, &r), SPF_NONE);
    CHECK(strstr(r.problem, "too long") != NULL);
    struct spf_request req = { .ip = "192.0.2.1", .helo = longfrom };
    CHECK_EQ_INT(spf_check_helo(&mem_dns, &req, &r), SPF_NONE);
    CHECK_EQ_INT(r.identity, SPF_ID_HELO);
    CHECK_EQ_INT(check("192.0.2.1", longfrom, "", &r), SPF_NONE);
}

static void test_include_redirect(void)
{
    struct spf_response r;
    zone = zone_main;
    CHECK_EQ_INT(check("192.0.2.1", "h", "a@inc.example.com", &r), SPF_PASS);
    CHECK_EQ_STR(r.mechanism, "include:example.com");
    CHECK_EQ_INT(check("198.51.100.8", "h", "a@inc.example.com", &r), SPF_TEMPERROR);
    CHECK_EQ_INT(check("198.51.100.8", "h", "a@incnone.example.com", &r), SPF_PERMERROR);
    CHECK(strstr(r.problem, "no SPF record") != NULL);
    CHECK_EQ_INT(check("192.0.2.1", "h", "a@redir.example.com", &r), SPF_PASS);
    CHECK_EQ_INT(check("198.51.100.8", "h", "a@redir.example.com", &r), SPF_FAIL);
    CHECK_EQ_INT(check("192.0.2.1", "h", "a@redirall.example.com", &r), SPF_NEUTRAL);   /* 5.1 */
}

static void test_cidr(void)
{
    struct spf_response r;
    zone = zone_main;
    CHECK_EQ_INT(check("192.0.2.207", "h", "a@cidr.example.com", &r), SPF_PASS);
    CHECK_EQ_INT(check("192.0.2.208", "h", "a@cidr.example.com", &r), SPF_FAIL);
    CHECK_EQ_INT(check("192.0.2.192", "h", "a@cidr.example.com", &r), SPF_PASS);
    CHECK_EQ_INT(check("192.0.2.191", "h", "a@cidr.example.com", &r), SPF_FAIL);
    CHECK_EQ_INT(check("2001:db8:1::ff", "h", "a@cidr.example.com", &r), SPF_PASS);
    CHECK_EQ_INT(check("2001:db8:1::1:0", "h", "a@cidr.example.com", &r), SPF_FAIL);
    /* ip4/ip6 prefixes at odd bit boundaries. */
    static const struct zrec z[] = {
        { "c.example.com", DNS_T_TXT, "v=spf1 ip4:10.128.0.0/9 ip6:2001:db8:8000::/33 ip4:1.2.3.4/0 -all" },
        { "d.example.com", DNS_T_TXT, "v=spf1 ip6:::/0 -all" },
        { NULL, 0, NULL },
    };
    zone = z;
    CHECK_EQ_INT(check("10.255.1.1", "h", "a@c.example.com", &r), SPF_PASS);
    CHECK_EQ_STR(r.mechanism, "ip4:10.128.0.0/9");
    CHECK_EQ_INT(check("10.127.1.1", "h", "a@c.example.com", &r), SPF_PASS);   /* /0 catches it */
    CHECK_EQ_STR(r.mechanism, "ip4:1.2.3.4/0");
    CHECK_EQ_INT(check("2001:db8:8000::1", "h", "a@c.example.com", &r), SPF_PASS);
    CHECK_EQ_INT(check("2001:db8:7fff::1", "h", "a@c.example.com", &r), SPF_FAIL);
    CHECK_EQ_INT(check("2001:db8::1", "h", "a@d.example.com", &r), SPF_PASS);
    CHECK_EQ_INT(check("192.0.2.1", "h", "a@d.example.com", &r), SPF_FAIL);     /* ip6 never matches IPv4 */
}

static void test_macros_in_checks(void)
{
    struct spf_response r;
    zone = zone_main;
    CHECK_EQ_INT(check("192.0.2.1", "h", "alice-smith@exists.example.com", &r), SPF_PASS);
    CHECK_EQ_INT(check("192.0.2.2", "h", "alice-smith@exists.example.com", &r), SPF_FAIL);
    CHECK_EQ_INT(check("203.0.113.9", "h", "a@ptr.example.com", &r), SPF_PASS);
    CHECK_EQ_INT(check("203.0.113.10", "h", "a@ptr.example.com", &r), SPF_FAIL);
    /* Explanation: exp= text expanded with c/r/t allowed, only for fail. */
    CHECK_EQ_INT(check("198.51.100.8", "h", "bob@exp.example.com", &r), SPF_FAIL);
    CHECK_EQ_STR(r.explanation,
                 "198.51.100.8 is not one of exp.example.com's servers; see mx.receiver.test/why?s=bob%40exp.example.com");
    CHECK_EQ_INT(check("203.0.113.9", "h", "a@pmacro.example.com", &r), SPF_FAIL);
    CHECK_EQ_STR(r.explanation, "host mail.ptr.example.com");
    CHECK_EQ_INT(check("203.0.113.10", "h", "a@pmacro.example.com", &r), SPF_FAIL);
    CHECK_EQ_STR(r.explanation, "host unknown");
    /* No local part, and the null reverse-path: postmaster (2.4, 4.3). */
    CHECK_EQ_INT(check("203.0.113.10", "h", "@pm-local.example.com", &r), SPF_FAIL);
    CHECK_EQ_STR(r.explanation, "postmaster");
    CHECK_EQ_STR(r.sender, "postmaster@pm-local.example.com");
    CHECK_EQ_INT(check("203.0.113.10", "pm-local.example.com", "", &r), SPF_FAIL);
    CHECK_EQ_STR(r.sender, "postmaster@pm-local.example.com");
    CHECK_EQ_STR(r.domain, "pm-local.example.com");
}

static void test_helo(void)
{
    struct spf_response r;
    struct spf_request req = { .ip = "192.0.2.50", .helo = "helo.example.org", .mail_from = "x@example.com" };
    zone = zone_main;
    CHECK_EQ_INT(spf_check_helo(&mem_dns, &req, &r), SPF_PASS);
    CHECK_EQ_INT(r.identity, SPF_ID_HELO);
    CHECK_EQ_STR(r.domain, "helo.example.org");
    CHECK_EQ_STR(r.sender, "postmaster@helo.example.org");
    req.ip = "192.0.2.51";
    CHECK_EQ_INT(spf_check_helo(&mem_dns, &req, &r), SPF_FAIL);
    req.helo = "[192.0.2.51]";
    CHECK_EQ_INT(spf_check_helo(&mem_dns, &req, &r), SPF_NONE);
    req.helo = "OEMCOMPUTER";
    CHECK_EQ_INT(spf_check_helo(&mem_dns, &req, &r), SPF_NONE);
}

static void test_limits(void)
{
    struct spf_response r;
    static const struct zrec z[] = {
        /* 10 DNS terms is fine, the 11th is a permerror (4.6.4). */
        { "ten.example.com", DNS_T_TXT, "v=spf1 a a a a a a a a a a ip4:192.0.2.1 -all" },
        { "eleven.example.com", DNS_T_TXT, "v=spf1 a a a a a a a a a a a ip4:192.0.2.1 -all" },
        { "ten.example.com", DNS_T_A, "10.0.0.1" },
        { "eleven.example.com", DNS_T_A, "10.0.0.1" },
        /* Across includes too. */
        { "deep.example.com", DNS_T_TXT, "v=spf1 include:d1.example.com ip4:192.0.2.1 -all" },
        { "d1.example.com", DNS_T_TXT, "v=spf1 a a a a a a a a a" },
        { "d1.example.com", DNS_T_A, "10.0.0.1" },
        { "deeper.example.com", DNS_T_TXT, "v=spf1 a include:d1.example.com ip4:192.0.2.1 -all" },
        { "deeper.example.com", DNS_T_A, "10.0.0.1" },
        { "loop.example.com", DNS_T_TXT, "v=spf1 redirect=loop.example.com" },
        /* Void lookups: two allowed, the third is a permerror. */
        { "void2.example.com", DNS_T_TXT, "v=spf1 a:n1.example.com mx:n2.example.com ?all" },
        { "void3.example.com", DNS_T_TXT, "v=spf1 a:n1.example.com mx:n2.example.com exists:n3.example.com ?all" },
        /* More than 10 MX records: permerror; more than 10 PTR names: ignored. */
        { "mx11.example.com", DNS_T_TXT, "v=spf1 mx -all" },
        { "mx11.example.com", DNS_T_MX, "1 m1.example.com" }, { "mx11.example.com", DNS_T_MX, "2 m2.example.com" },
        { "mx11.example.com", DNS_T_MX, "3 m3.example.com" }, { "mx11.example.com", DNS_T_MX, "4 m4.example.com" },
        { "mx11.example.com", DNS_T_MX, "5 m5.example.com" }, { "mx11.example.com", DNS_T_MX, "6 m6.example.com" },
        { "mx11.example.com", DNS_T_MX, "7 m7.example.com" }, { "mx11.example.com", DNS_T_MX, "8 m8.example.com" },
        { "mx11.example.com", DNS_T_MX, "9 m9.example.com" }, { "mx11.example.com", DNS_T_MX, "10 m10.example.com" },
        { "mx11.example.com", DNS_T_MX, "11 m11.example.com" },
        { "mx10.example.com", DNS_T_TXT, "v=spf1 mx -all" },
        { "mx10.example.com", DNS_T_MX, "1 m1.example.com" }, { "mx10.example.com", DNS_T_MX, "2 m2.example.com" },
        { "mx10.example.com", DNS_T_MX, "3 m3.example.com" }, { "mx10.example.com", DNS_T_MX, "4 m4.example.com" },
        { "mx10.example.com", DNS_T_MX, "5 m5.example.com" }, { "mx10.example.com", DNS_T_MX, "6 m6.example.com" },
        { "mx10.example.com", DNS_T_MX, "7 m7.example.com" }, { "mx10.example.com", DNS_T_MX, "8 m8.example.com" },
        { "mx10.example.com", DNS_T_MX, "9 m9.example.com" }, { "mx10.example.com", DNS_T_MX, "10 m10.example.com" },
        { "m10.example.com", DNS_T_A, "192.0.2.10" },
        { "ptr.example.com", DNS_T_TXT, "v=spf1 ptr -all" },
        { "5.2.0.192.in-addr.arpa", DNS_T_PTR, "p1.example.net" }, { "5.2.0.192.in-addr.arpa", DNS_T_PTR, "p2.example.net" },
        { "5.2.0.192.in-addr.arpa", DNS_T_PTR, "p3.example.net" }, { "5.2.0.192.in-addr.arpa", DNS_T_PTR, "p4.example.net" },
        { "5.2.0.192.in-addr.arpa", DNS_T_PTR, "p5.example.net" }, { "5.2.0.192.in-addr.arpa", DNS_T_PTR, "p6.example.net" },
        { "5.2.0.192.in-addr.arpa", DNS_T_PTR, "p7.example.net" }, { "5.2.0.192.in-addr.arpa", DNS_T_PTR, "p8.example.net" },
        { "5.2.0.192.in-addr.arpa", DNS_T_PTR, "p9.example.net" }, { "5.2.0.192.in-addr.arpa", DNS_T_PTR, "p10.example.net" },
        { "5.2.0.192.in-addr.arpa", DNS_T_PTR, "x.ptr.example.com" },
        { "x.ptr.example.com", DNS_T_A, "192.0.2.5" },
        { "6.2.0.192.in-addr.arpa", DNS_T_PTR, "y.ptr.example.com" },
        { "y.ptr.example.com", DNS_T_A, "192.0.2.6" },
        { NULL, 0, NULL },
    };
    zone = z;
    CHECK_EQ_INT(check("192.0.2.1", "h", "a@ten.example.com", &r), SPF_PASS);
    CHECK_EQ_INT(r.dns_terms, 10);
    CHECK_EQ_INT(check("192.0.2.1", "h", "a@eleven.example.com", &r), SPF_PERMERROR);
    CHECK(strstr(r.problem, "10 DNS") != NULL);
    CHECK_EQ_INT(check("192.0.2.1", "h", "a@deep.example.com", &r), SPF_PASS);
    CHECK_EQ_INT(check("192.0.2.1", "h", "a@deeper.example.com", &r), SPF_PERMERROR);
    zone_queries = 0;
    CHECK_EQ_INT(check("192.0.2.1", "h", "a@loop.example.com", &r), SPF_PERMERROR);
    CHECK(zone_queries <= 12);
    CHECK_EQ_INT(check("192.0.2.1", "h", "a@void2.example.com", &r), SPF_NEUTRAL);
    CHECK_EQ_INT(r.void_lookups, 2);
    CHECK_EQ_INT(check("192.0.2.1", "h", "a@void3.example.com", &r), SPF_PERMERROR);
    CHECK(strstr(r.problem, "void") != NULL);
    CHECK_EQ_INT(check("192.0.2.10", "h", "a@mx11.example.com", &r), SPF_PERMERROR);
    CHECK_EQ_INT(check("192.0.2.10", "h", "a@mx10.example.com", &r), SPF_PASS);
    CHECK_EQ_INT(check("192.0.2.5", "h", "a@ptr.example.com", &r), SPF_FAIL);   /* 11th name ignored */
    CHECK_EQ_INT(check("192.0.2.6", "h", "a@ptr.example.com", &r), SPF_PASS);
}

static void test_time_limit(void)
{
    struct spf_response r;
    static const struct zrec z[] = {
        { "slowish.example.com", DNS_T_TXT, "v=spf1 a a a a a a a a a ip4:192.0.2.1 -all" },
        { "slowish.example.com", DNS_T_A, "10.0.0.1" },
        { NULL, 0, NULL },
    };
    struct spf_request req = { .ip = "192.0.2.1", .helo = "h", .mail_from = "a@slowish.example.com",
                               .time_limit_ms = 30 };
    zone = z;
    zone_delay_ms = 10;
    /* Ten queries of 10 ms each do not fit in 30 ms: temperror (4.6.4). */
    CHECK_EQ_INT(spf_check_mailfrom(&mem_dns, &req, &r), SPF_TEMPERROR);
    CHECK(strstr(r.problem, "time limit") != NULL);
    req.time_limit_ms = 0;        /* the default, 20 s */
    CHECK_EQ_INT(spf_check_mailfrom(&mem_dns, &req, &r), SPF_PASS);
    zone_delay_ms = 0;
}

static void test_received_spf(void)
{
    struct spf_response r;
    struct spf_request req = { .ip = "192.0.2.1", .helo = "mail.example.com", .mail_from = "a\"b@example.com",
                               .receiver = "mx.example.net" };
    char buf[2048];
    zone = zone_main;
    spf_check_mailfrom(&mem_dns, &req, &r);
    int n = spf_received_spf(&r, &req, buf, sizeof(buf));
    CHECK(n > 0);
    CHECK_EQ_STR(buf, "pass (mx.example.net: domain of a\"b@example.com designates 192.0.2.1 as permitted sender) "
                      "client-ip=192.0.2.1; envelope-from=\"a\\\"b@example.com\"; helo=\"mail.example.com\"; "
                      "receiver=\"mx.example.net\"; identity=mailfrom; mechanism=\"ip4:192.0.2.0/24\";");
    CHECK_EQ_INT(spf_received_spf(&r, &req, buf, 20), -1);
    req.mail_from = "a@slow.example.com";
    spf_check_mailfrom(&mem_dns, &req, &r);
    CHECK(spf_received_spf(&r, &req, buf, sizeof(buf)) > 0);
    CHECK(strncmp(buf, "temperror (", 11) == 0);
    CHECK(strstr(buf, "problem=\"DNS TXT slow.example.com: timeout\"") != NULL);
}

int main(void)
{
    RUN(test_parse);
    RUN(test_domain_spec);
    RUN(test_macro_rfc_examples);
    RUN(test_macro_rules);
    RUN(test_macro_truncation);
    RUN(test_results);
    RUN(test_include_redirect);
    RUN(test_cidr);
    RUN(test_macros_in_checks);
    RUN(test_helo);
    RUN(test_limits);
    RUN(test_time_limit);
    RUN(test_received_spf);
    CHECK_EQ_STR(spf_result_name(SPF_SOFTFAIL), "softfail");
    CHECK_EQ_STR(spf_result_name(SPF_PERMERROR), "permerror");
    return unit_report("spf");
}
