/*
 * DMARC tests: record parsing (table, each case in an exact-length buffer),
 * Organizational Domains and alignment (PSL cases), From domains, policy
 * selection (p/sp/np/pct) against an in-memory DNS, and the aggregate
 * reports (XML, gzip, the email, the 7.1 check, build_due with the store).
 */
#include <arpa/inet.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "auth/dmarc.h"
#include "core/log.h"
#include "core/util.h"
#include "store/store.h"
#include "store/store_dmarc.h"
#include "unit.h"

/* ---- in-memory DNS ---- */

struct zrec {
    const char *name;
    uint16_t type;                /* 0: the name times out */
    const char *data;             /* TXT text, A/AAAA address, MX "pref host" */
};

static const struct zrec *zone;
static int zone_queries;

static size_t make_rdata(const struct zrec *z, unsigned char *buf)
{
    switch (z->type) {
    case DNS_T_A: inet_pton(AF_INET, z->data, buf); return 4;
    case DNS_T_AAAA: inet_pton(AF_INET6, z->data, buf); return 16;
    case DNS_T_MX: {
        unsigned pref = 0;
        char host[256];
        sscanf(z->data, "%u %255s", &pref, host);
        buf[0] = (unsigned char)(pref >> 8);
        buf[1] = (unsigned char)pref;
        size_t o = 2;
        for (char *save = NULL, *l = strtok_r(host, ".", &save); l; l = strtok_r(NULL, ".", &save)) {
            buf[o++] = (unsigned char)strlen(l);
            memcpy(buf + o, l, strlen(l));
            o += strlen(l);
        }
        buf[o++] = 0;
        return o;
    }
    default: {
        size_t len = strlen(z->data), o = 0;
        for (size_t off = 0; off < len || off == 0; off += 255) {
            size_t n = len - off < 255 ? len - off : 255;
            buf[o++] = (unsigned char)n;
            memcpy(buf + o, z->data + off, n);
            o += n;
            if (len == 0)
                break;
        }
        return o;
    }
    }
}

static bool zname_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la && a[la - 1] == '.')
        la--;
    return la == lb && strncasecmp(a, b, la) == 0;
}

/* Does any name in the zone end in ".name" (an empty non-terminal)? */
static bool zone_has_below(const char *name)
{
    size_t n = strlen(name);
    for (const struct zrec *z = zone; z->name; z++) {
        size_t l = strlen(z->name);
        if (l > n + 1 && z->name[l - n - 1] == '.' && strcasecmp(z->name + l - n, name) == 0)
            return true;
    }
    return false;
}

static enum dns_status zone_query(void *arg, const char *name, uint16_t type, struct dns_result *res)
{
    const unsigned char *data[32];
    int len[32];
    static unsigned char buf[32][8192];
    size_t n = 0;
    bool exists = false;
    (void)arg;
    zone_queries++;
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
        if (z->type == type && n < 31) {
            len[n] = (int)make_rdata(z, buf[n]);
            data[n] = buf[n];
            n++;
        }
    }
    data[n] = NULL;
    if (!exists && !zone_has_below(name))
        return dns_result_from_rdata(res, type, 3, true, data, len);
    return dns_result_from_rdata(res, type, 0, false, data, len);
}

static const struct dmarc_dns mem_dns = { zone_query, NULL };

/* ---- records ---- */

static int parse_exact(const char *text, struct dmarc_record *rec, char *err, size_t size)
{
    size_t n = strlen(text);
    char *copy = malloc(n ? n : 1);      /* no terminator: ASan sees over-reads */
    memcpy(copy, text, n);
    int rc = dmarc_record_parse(copy, n, rec, err, size);
    free(copy);
    return rc;
}

static void test_record_parse(void)
{
    static const struct {
        const char *text;
        int rc;
        enum dmarc_policy p, sp, np;
        unsigned pct;
        int adkim_s, aspf_s, n_rua;
        const char *rua0, *fo;
    } cases[] = {
        { "v=DMARC1; p=none", 0, DMARC_POLICY_NONE, DMARC_POLICY_NONE, DMARC_POLICY_NONE, 100, 0, 0, 0, NULL, "0" },
        { "v=DMARC1;p=reject", 0, DMARC_POLICY_REJECT, DMARC_POLICY_REJECT, DMARC_POLICY_REJECT, 100, 0, 0, 0, NULL, "0" },
        { "v = DMARC1 ; p = Quarantine ; ", 0, DMARC_POLICY_QUARANTINE, DMARC_POLICY_QUARANTINE,
          DMARC_POLICY_QUARANTINE, 100, 0, 0, 0, NULL, "0" },
        { "v=DMARC1; p=reject; sp=none; np=quarantine; pct=20; adkim=s; aspf=s; fo=1:d", 0,
          DMARC_POLICY_REJECT, DMARC_POLICY_NONE, DMARC_POLICY_QUARANTINE, 20, 1, 1, 0, NULL, "1:d" },
        { "v=DMARC1; p=reject; sp=quarantine", 0, DMARC_POLICY_REJECT, DMARC_POLICY_QUARANTINE,
          DMARC_POLICY_QUARANTINE, 100, 0, 0, 0, NULL, "0" },
        { "v=DMARC1; p=reject; rua=mailto:d@example.org,mailto:x@rep.example.net!10m", 0, DMARC_POLICY_REJECT,
          DMARC_POLICY_REJECT, DMARC_POLICY_REJECT, 100, 0, 0, 2, "d@example.org", "0" },
        { "v=DMARC1; p=none; rua=mailto:a%40b@Example.ORG?subject=x", 0, DMARC_POLICY_NONE, DMARC_POLICY_NONE,
          DMARC_POLICY_NONE, 100, 0, 0, 1, "a@b@example.org", "0" },
        { "v=DMARC1; p=none; rua=https://example.org/r, mailto:ok@example.org, mailto:bad", 0,
          DMARC_POLICY_NONE, DMARC_POLICY_NONE, DMARC_POLICY_NONE, 100, 0, 0, 1, "ok@example.org", "0" },
        /* bad values fall back to defaults */
        { "v=DMARC1; p=reject; pct=101; adkim=x; aspf=; fo=z; ri=abc; np=maybe", 0, DMARC_POLICY_REJECT,
          DMARC_POLICY_REJECT, DMARC_POLICY_REJECT, 100, 0, 0, 0, NULL, "0" },
        /* first occurrence wins; unknown tags ignored */
        { "v=DMARC1; p=none; p=reject; x=y; foo", 0, DMARC_POLICY_NONE, DMARC_POLICY_NONE, DMARC_POLICY_NONE,
          100, 0, 0, 0, NULL, "0" },
        { "v=DMARC1; pct=0; p=quarantine", 0, DMARC_POLICY_QUARANTINE, DMARC_POLICY_QUARANTINE,
          DMARC_POLICY_QUARANTINE, 0, 0, 0, 0, NULL, "0" },
        /* p missing or bad: usable only with a rua (6.6.3 step 6) */
        { "v=DMARC1; rua=mailto:r@example.org", 0, DMARC_POLICY_NONE, DMARC_POLICY_NONE, DMARC_POLICY_NONE, 100,
          0, 0, 1, "r@example.org", "0" },
        { "v=DMARC1; p=bogus; sp=reject; rua=mailto:r@example.org", 0, DMARC_POLICY_NONE, DMARC_POLICY_REJECT,
          DMARC_POLICY_REJECT, 100, 0, 0, 1, "r@example.org", "0" },
        { "v=DMARC1; p=reject; sp=bogus; rua=mailto:r@example.org", 0, DMARC_POLICY_REJECT, DMARC_POLICY_REJECT,
          DMARC_POLICY_REJECT, 100, 0, 0, 1, "r@example.org", "0" },
        { "v=DMARC1", -1, 0, 0, 0, 0, 0, 0, 0, NULL, NULL },
        { "v=DMARC1; p=bogus", -1, 0, 0, 0, 0, 0, 0, 0, NULL, NULL },
        { "v=DMARC1; p=none; sp=bogus", -1, 0, 0, 0, 0, 0, 0, 0, NULL, NULL },
        /* not DMARC records at all */
        { "v=spf1 -all", 1, 0, 0, 0, 0, 0, 0, 0, NULL, NULL },
        { "p=reject; v=DMARC1", 1, 0, 0, 0, 0, 0, 0, 0, NULL, NULL },
        { "v=dmarc1; p=reject", 1, 0, 0, 0, 0, 0, 0, 0, NULL, NULL },
        { "v=DMARC10; p=reject", 1, 0, 0, 0, 0, 0, 0, 0, NULL, NULL },
        { "", 1, 0, 0, 0, 0, 0, 0, 0, NULL, NULL },
        { "v=", 1, 0, 0, 0, 0, 0, 0, 0, NULL, NULL },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dmarc_record rec;
        char err[128];
        int rc = parse_exact(cases[i].text, &rec, err, sizeof(err));
        if (rc != cases[i].rc)
            fprintf(stderr, "case %zu: \"%s\" -> %d (%s)\n", i, cases[i].text, rc, err);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc != 0 || cases[i].rc != 0)
            continue;
        CHECK_EQ_INT(rec.p, cases[i].p);
        CHECK_EQ_INT(rec.sp, cases[i].sp);
        CHECK_EQ_INT(rec.np, cases[i].np);
        CHECK_EQ_INT(rec.pct, cases[i].pct);
        CHECK_EQ_INT(rec.adkim == DMARC_ALIGN_STRICT, cases[i].adkim_s);
        CHECK_EQ_INT(rec.aspf == DMARC_ALIGN_STRICT, cases[i].aspf_s);
        CHECK_EQ_INT(rec.n_rua, cases[i].n_rua);
        if (cases[i].rua0)
            CHECK_EQ_STR(rec.rua[0].addr, cases[i].rua0);
        CHECK_EQ_STR(rec.fo, cases[i].fo);
    }
    /* rua size suffix, ri, round trip through the formatter */
    struct dmarc_record rec, again;
    char err[128], text[2048];
    CHECK_EQ_INT(parse_exact("v=DMARC1; p=reject; np=none; ri=3600; rua=mailto:x@rep.example.net!10m,"
                             "mailto:y@example.org!500", &rec, err, sizeof(err)), 0);
    CHECK_EQ_INT(rec.rua[0].max_size, 10u << 20);
    CHECK_EQ_INT(rec.rua[1].max_size, 500);
    CHECK_EQ_INT(rec.ri, 3600);
    CHECK(rec.np_set && !rec.sp_set);
    dmarc_record_format(&rec, text, sizeof(text));
    CHECK_EQ_INT(parse_exact(text, &again, err, sizeof(err)), 0);
    CHECK_EQ_INT(again.p, rec.p);
    CHECK_EQ_INT(again.np, DMARC_POLICY_NONE);
    CHECK_EQ_INT(again.n_rua, 2);
    CHECK_EQ_INT(again.rua[0].max_size, 10u << 20);
    CHECK_EQ_INT(again.ri, 3600);
    /* an address holding the URI's own delimiters is written %-encoded
     * and reads back the same (found by fuzz_dmarc) */
    CHECK_EQ_INT(parse_exact("v=DMARC1; p=none; rua=mailto:a%21b@Example.ORG?subject=x,"
                             "mailto:c%3Bd%25e@example.org!2k", &rec, err, sizeof(err)), 0);
    CHECK_EQ_INT(rec.n_rua, 2);
    CHECK_EQ_STR(rec.rua[0].addr, "a!b@example.org");
    CHECK_EQ_STR(rec.rua[1].addr, "c;d%e@example.org");
    dmarc_record_format(&rec, text, sizeof(text));
    CHECK(strstr(text, "mailto:a%21b@example.org,mailto:c%3Bd%25e@example.org!2k") != NULL);
    CHECK_EQ_INT(parse_exact(text, &again, err, sizeof(err)), 0);
    CHECK_EQ_INT(again.n_rua, 2);
    CHECK_EQ_STR(again.rua[0].addr, "a!b@example.org");
    CHECK_EQ_STR(again.rua[1].addr, "c;d%e@example.org");
    CHECK_EQ_INT(again.rua[1].max_size, 2048);
    /* a NUL inside is not a usable record */
    CHECK_EQ_INT(dmarc_record_parse("v=DMARC1; p=none\0x", 18, &rec, err, sizeof(err)), -1);
}

/* ---- domains ---- */

static void test_org_domain(void)
{
    static const struct { const char *in, *org; } cases[] = {
        { "example.com", "example.com" },
        { "mail.example.com", "example.com" },
        { "a.b.c.example.com", "example.com" },
        { "EXAMPLE.COM.", "example.com" },
        { "example.co.uk", "example.co.uk" },
        { "a.b.example.co.uk", "example.co.uk" },
        { "co.uk", "co.uk" },                /* a public suffix is its own */
        { "com", "com" },
        { "user.github.io", "user.github.io" },
        { "x.user.github.io", "user.github.io" },
        { "a.b.example.test", "example.test" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[300];
        CHECK_EQ_INT(dmarc_org_domain(cases[i].in, out, sizeof(out)), 0);
        CHECK_EQ_STR(out, cases[i].org);
    }
    char out[8];
    CHECK_EQ_INT(dmarc_org_domain("", out, sizeof(out)), -1);
    CHECK_EQ_INT(dmarc_org_domain("averyveryverylongname.example.com", out, sizeof(out)), -1);
}

static void test_alignment(void)
{
    static const struct { const char *a, *b; int relaxed, strict; } cases[] = {
        { "example.com", "example.com", 1, 1 },
        { "Example.COM.", "example.com", 1, 1 },
        { "mail.example.com", "example.com", 1, 0 },
        { "example.com", "news.example.com", 1, 0 },
        { "a.example.com", "b.example.com", 1, 0 },
        { "example.com", "example.net", 0, 0 },
        { "example.co.uk", "other.co.uk", 0, 0 },
        { "a.example.co.uk", "b.example.co.uk", 1, 0 },
        { "example.co.uk", "co.uk", 0, 0 },
        { "alice.github.io", "bob.github.io", 0, 0 },
        { "x.alice.github.io", "alice.github.io", 1, 0 },
        { "", "example.com", 0, 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_EQ_INT(dmarc_aligned(cases[i].a, cases[i].b, DMARC_ALIGN_RELAXED), cases[i].relaxed);
        CHECK_EQ_INT(dmarc_aligned(cases[i].a, cases[i].b, DMARC_ALIGN_STRICT), cases[i].strict);
    }
    CHECK(!dmarc_aligned(NULL, "example.com", DMARC_ALIGN_RELAXED));
}

static void test_from_domains(void)
{
    static const struct { const char *msg; enum dmarc_from_status st; int n; const char *d0, *d1; } cases[] = {
        { "From: Alice <alice@Example.ORG>\r\n\r\nhi\r\n", DMARC_FROM_OK, 1, "example.org", NULL },
        { "from: alice@example.org\r\nTo: b@x.test\r\n\r\n", DMARC_FROM_OK, 1, "example.org", NULL },
        { "From: alice@example.org.\r\n\r\n", DMARC_FROM_BAD, 0, NULL, NULL },
        { "From: alice@example.org (Alice)\r\n\r\n", DMARC_FROM_OK, 1, "example.org", NULL },
        { "From: a@b.test evil\r\n\r\n", DMARC_FROM_BAD, 1, "b.test", NULL },
        { "FROM:\r\n \"Last, First\" (comment)\r\n <a@mail.example.org>\r\n\r\n", DMARC_FROM_OK, 1,
          "mail.example.org", NULL },
        { "From: a@example.org, b@example.org\r\n\r\n", DMARC_FROM_OK, 1, "example.org", NULL },
        { "From: a@example.org, b@example.net\r\n\r\n", DMARC_FROM_OK, 2, "example.org", "example.net" },
        { "From: a@example.org\r\nFrom: b@evil.test\r\n\r\n", DMARC_FROM_OK, 2, "example.org", "evil.test" },
        { "From: =?utf-8?q?J=C3=B6rg?= <j@b\xc3\xbc" "cher.example>\r\n\r\n", DMARC_FROM_OK, 1,
          "xn--bcher-kva.example", NULL },
        { "From: a@example.org\n\nLF only\n", DMARC_FROM_OK, 1, "example.org", NULL },
        { "To: b@example.org\r\n\r\n", DMARC_FROM_MISSING, 0, NULL, NULL },
        { "Subject: x\r\n\r\nFrom: a@example.org\r\n", DMARC_FROM_MISSING, 0, NULL, NULL },
        { "From: undisclosed\r\n\r\n", DMARC_FROM_BAD, 0, NULL, NULL },
        { "From: \r\n\r\n", DMARC_FROM_BAD, 0, NULL, NULL },
        { "From: a@[192.0.2.1]\r\n\r\n", DMARC_FROM_BAD, 0, NULL, NULL },
        /* malformed, but the domains read are kept: their policies apply */
        { "From: a@exa mple.org\r\n\r\n", DMARC_FROM_BAD, 1, "exa", NULL },
        { "From: ceo@bank.example garbage\r\n\r\n", DMARC_FROM_BAD, 1, "bank.example", NULL },
        { "From: a@example.org\r\nFrom: junk\r\n\r\n", DMARC_FROM_BAD, 1, "example.org", NULL },
        { "From: a@b.test, b@c.test, c@d.test, d@e.test, e@f.test, f@g.test, g@h.test, h@i.test,"
          " i@j.test\r\n\r\n", DMARC_FROM_TOO_MANY, 8, "b.test", "c.test" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char d[DMARC_FROM_MAX][DNS_NAME_MAX + 2];
        int n = -1;
        enum dmarc_from_status st = dmarc_from_domains(cases[i].msg, strlen(cases[i].msg), d, DMARC_FROM_MAX, &n);
        if (st != cases[i].st)
            fprintf(stderr, "from case %zu: status %d\n", i, st);
        CHECK_EQ_INT(st, cases[i].st);
        CHECK_EQ_INT(n, cases[i].n);
        if (cases[i].d0)
            CHECK_EQ_STR(d[0], cases[i].d0);
        if (cases[i].d1)
            CHECK_EQ_STR(d[1], cases[i].d1);
    }
}

/* ---- evaluation ---- */

static const struct zrec eval_zone[] = {
    { "_dmarc.example.org", DNS_T_TXT, "v=DMARC1; p=reject; sp=quarantine; np=reject; rua=mailto:d@example.org" },
    { "_dmarc.example.org", DNS_T_TXT, "some other text" },
    { "example.org", DNS_T_A, "192.0.2.1" },
    { "exists.example.org", DNS_T_MX, "10 mx.example.org" },
    { "deep.sub.example.org", DNS_T_AAAA, "2001:db8::1" },
    { "_dmarc.own.example.org", DNS_T_TXT, "v=DMARC1; p=none" },
    { "_dmarc.strict.test", DNS_T_TXT, "v=DMARC1; p=reject; adkim=s; aspf=s" },
    { "_dmarc.pct.test", DNS_T_TXT, "v=DMARC1; p=reject; pct=50" },
    { "_dmarc.pct0.test", DNS_T_TXT, "v=DMARC1; p=quarantine; pct=0" },
    { "_dmarc.nosp.test", DNS_T_TXT, "v=DMARC1; p=quarantine; np=reject" },
    { "a.nosp.test", DNS_T_A, "192.0.2.9" },
    { "_dmarc.twice.test", DNS_T_TXT, "v=DMARC1; p=reject" },
    { "_dmarc.twice.test", DNS_T_TXT, "v=DMARC1; p=none" },
    { "_dmarc.broken.test", DNS_T_TXT, "v=DMARC1; p=rejected" },
    { "_dmarc.slow.test", 0, NULL },
    { "_dmarc.example.co.uk", DNS_T_TXT, "v=DMARC1; p=reject" },
    { NULL, 0, NULL },
};

static unsigned draw_value;
static unsigned fixed_draw(void *arg)
{
    (void)arg;
    return draw_value;
}

static struct dkim_verdict verdict(enum dkim_status st, const char *d)
{
    struct dkim_verdict v;
    memset(&v, 0, sizeof(v));
    v.status = st;
    str_copy(v.d, d, sizeof(v.d));
    str_copy(v.s, "sel", sizeof(v.s));
    return v;
}

static enum dmarc_result eval(const char *from, enum spf_result spf, const char *spf_domain,
                              const struct dkim_verdict *dk, int n_dk, struct dmarc_eval *ev)
{
    struct dmarc_request req = {
        .from_domain = from, .spf_done = spf_domain != NULL, .spf = spf, .spf_domain = spf_domain,
        .dkim = dk, .n_dkim = n_dk, .rand_pct = fixed_draw,
    };
    return dmarc_evaluate(&mem_dns, &req, ev);
}

static void test_evaluate(void)
{
    struct dmarc_eval ev;
    struct dkim_verdict v[2];
    zone = eval_zone;
    draw_value = 0;

    /* SPF aligned pass (relaxed: a subdomain's MAIL FROM) */
    CHECK_EQ_INT(eval("example.org", SPF_PASS, "bounce.example.org", NULL, 0, &ev), DMARC_RESULT_PASS);
    CHECK(ev.spf_aligned && !ev.dkim_aligned && ev.have_record);
    CHECK_EQ_INT(ev.disposition, DMARC_POLICY_NONE);
    CHECK_EQ_STR(ev.record_domain, "example.org");
    /* SPF pass for another domain does not count */
    CHECK_EQ_INT(eval("example.org", SPF_PASS, "example.net", NULL, 0, &ev), DMARC_RESULT_FAIL);
    CHECK_EQ_INT(ev.policy, DMARC_POLICY_REJECT);
    CHECK_EQ_STR(ev.policy_tag, "p");
    CHECK_EQ_INT(ev.disposition, DMARC_POLICY_REJECT);
    /* DKIM: a later aligned pass wins over an unaligned one */
    v[0] = verdict(DKIM_PASS, "esp.example.net");
    v[1] = verdict(DKIM_PASS, "Mail.Example.ORG");
    CHECK_EQ_INT(eval("example.org", SPF_FAIL, "example.org", v, 2, &ev), DMARC_RESULT_PASS);
    CHECK(ev.dkim_aligned && !ev.spf_aligned);
    CHECK_EQ_STR(ev.dkim_domain, "mail.example.org");
    v[1] = verdict(DKIM_FAIL, "example.org");
    CHECK_EQ_INT(eval("example.org", SPF_SOFTFAIL, "example.org", v, 2, &ev), DMARC_RESULT_FAIL);

    /* subdomains: sp for an existing one, np for a non-existent one */
    CHECK_EQ_INT(eval("exists.example.org", SPF_FAIL, "x.test", NULL, 0, &ev), DMARC_RESULT_FAIL);
    CHECK_EQ_STR(ev.policy_tag, "sp");
    CHECK_EQ_INT(ev.disposition, DMARC_POLICY_QUARANTINE);
    CHECK_EQ_STR(ev.record_domain, "example.org");
    CHECK(!ev.nonexistent);
    CHECK_EQ_INT(eval("deep.sub.example.org", SPF_FAIL, "x.test", NULL, 0, &ev), DMARC_RESULT_FAIL);
    CHECK_EQ_STR(ev.policy_tag, "sp");              /* AAAA only: exists */
    CHECK_EQ_INT(eval("sub.example.org", SPF_FAIL, "x.test", NULL, 0, &ev), DMARC_RESULT_FAIL);
    CHECK_EQ_STR(ev.policy_tag, "np");              /* empty non-terminal: NODATA x3 */
    CHECK(ev.nonexistent);
    CHECK_EQ_INT(eval("nope.example.org", SPF_NONE, NULL, NULL, 0, &ev), DMARC_RESULT_FAIL);
    CHECK_EQ_STR(ev.policy_tag, "np");
    CHECK_EQ_INT(ev.disposition, DMARC_POLICY_REJECT);
    /* np without sp: falls back to p for existing subdomains */
    CHECK_EQ_INT(eval("a.nosp.test", SPF_FAIL, "x.test", NULL, 0, &ev), DMARC_RESULT_FAIL);
    CHECK_EQ_STR(ev.policy_tag, "p");
    CHECK_EQ_INT(ev.disposition, DMARC_POLICY_QUARANTINE);
    CHECK_EQ_INT(eval("b.nosp.test", SPF_FAIL, "x.test", NULL, 0, &ev), DMARC_RESULT_FAIL);
    CHECK_EQ_STR(ev.policy_tag, "np");
    CHECK_EQ_INT(ev.disposition, DMARC_POLICY_REJECT);
    /* a subdomain with its own record uses that record's p */
    CHECK_EQ_INT(eval("own.example.org", SPF_FAIL, "x.test", NULL, 0, &ev), DMARC_RESULT_FAIL);
    CHECK_EQ_STR(ev.record_domain, "own.example.org");
    CHECK_EQ_INT(ev.disposition, DMARC_POLICY_NONE);

    /* strict alignment */
    v[0] = verdict(DKIM_PASS, "mail.strict.test");
    CHECK_EQ_INT(eval("strict.test", SPF_PASS, "bounce.strict.test", v, 1, &ev), DMARC_RESULT_FAIL);
    v[0] = verdict(DKIM_PASS, "strict.test");
    CHECK_EQ_INT(eval("strict.test", SPF_PASS, "bounce.strict.test", v, 1, &ev), DMARC_RESULT_PASS);
    CHECK_EQ_INT(eval("strict.test", SPF_PASS, "STRICT.test", NULL, 0, &ev), DMARC_RESULT_PASS);

    /* pct: sampled (draw < pct) or not, one step down when not */
    draw_value = 49;
    CHECK_EQ_INT(eval("pct.test", SPF_FAIL, "x.test", NULL, 0, &ev), DMARC_RESULT_FAIL);
    CHECK_EQ_INT(ev.disposition, DMARC_POLICY_REJECT);
    CHECK(!ev.sampled_out);
    draw_value = 50;
    CHECK_EQ_INT(eval("pct.test", SPF_FAIL, "x.test", NULL, 0, &ev), DMARC_RESULT_FAIL);
    CHECK_EQ_INT(ev.disposition, DMARC_POLICY_QUARANTINE);
    CHECK(ev.sampled_out);
    draw_value = 0;
    CHECK_EQ_INT(eval("pct0.test", SPF_FAIL, "x.test", NULL, 0, &ev), DMARC_RESULT_FAIL);
    CHECK_EQ_INT(ev.disposition, DMARC_POLICY_NONE);
    CHECK(ev.sampled_out);
    /* the default draw is random but in range */
    struct dmarc_request req = { .from_domain = "pct.test" };
    int reject = 0;
    for (int i = 0; i < 200; i++) {
        dmarc_evaluate(&mem_dns, &req, &ev);
        reject += ev.disposition == DMARC_POLICY_REJECT;
    }
    CHECK(reject > 40 && reject < 160);

    /* no record, several records, broken record, DNS trouble */
    CHECK_EQ_INT(eval("nodmarc.test", SPF_PASS, "nodmarc.test", NULL, 0, &ev), DMARC_RESULT_NONE);
    CHECK(!ev.have_record);
    CHECK_EQ_INT(eval("twice.test", SPF_FAIL, "x.test", NULL, 0, &ev), DMARC_RESULT_NONE);
    CHECK(strstr(ev.why, "2 DMARC records") != NULL);
    CHECK_EQ_INT(eval("broken.test", SPF_FAIL, "x.test", NULL, 0, &ev), DMARC_RESULT_PERMERROR);
    CHECK_EQ_INT(eval("slow.test", SPF_PASS, "slow.test", NULL, 0, &ev), DMARC_RESULT_TEMPERROR);
    CHECK_EQ_INT(eval("", SPF_PASS, "x.test", NULL, 0, &ev), DMARC_RESULT_PERMERROR);
    /* a temporary failure of an aligned check: no policy applied */
    v[0] = verdict(DKIM_TEMPERROR, "example.org");
    CHECK_EQ_INT(eval("example.org", SPF_FAIL, "example.org", v, 1, &ev), DMARC_RESULT_TEMPERROR);
    CHECK_EQ_INT(ev.disposition, DMARC_POLICY_NONE);
    CHECK_EQ_INT(eval("example.org", SPF_TEMPERROR, "example.org", NULL, 0, &ev), DMARC_RESULT_TEMPERROR);
    /* ... but an unaligned one does not matter */
    v[0] = verdict(DKIM_TEMPERROR, "example.net");
    CHECK_EQ_INT(eval("example.org", SPF_FAIL, "example.org", v, 1, &ev), DMARC_RESULT_FAIL);

    /* PSL: the Organizational Domain of x.example.co.uk is example.co.uk */
    CHECK_EQ_INT(eval("x.example.co.uk", SPF_PASS, "other.co.uk", NULL, 0, &ev), DMARC_RESULT_FAIL);
    CHECK_EQ_STR(ev.org_domain, "example.co.uk");
    CHECK_EQ_STR(ev.record_domain, "example.co.uk");
    CHECK_EQ_INT(eval("x.example.co.uk", SPF_PASS, "y.example.co.uk", NULL, 0, &ev), DMARC_RESULT_PASS);
    /* no lookup at the public suffix itself */
    zone_queries = 0;
    eval("nodmarc.co.uk", SPF_NONE, NULL, NULL, 0, &ev);
    CHECK_EQ_INT(zone_queries, 1);
}

/* ---- reports ---- */

static char dir[256];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static int gunzip(const char *data, size_t len, struct strbuf *out)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return -1;
    unsigned char buf[4096];
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    int rc;
    do {
        z.next_out = buf;
        z.avail_out = sizeof(buf);
        rc = inflate(&z, Z_NO_FLUSH);
        strbuf_append(out, buf, sizeof(buf) - z.avail_out);
    } while (rc == Z_OK);
    inflateEnd(&z);
    return rc == Z_STREAM_END ? 0 : -1;
}

static const struct zrec report_zone[] = {
    { "example.org._report._dmarc.reports.example.net", DNS_T_TXT, "v=DMARC1" },
    { "example.org._report._dmarc.tempfail.test", 0, NULL },
    { NULL, 0, NULL },
};

struct sent {
    int n;
    char rcpt[8][320];
    struct strbuf last;
    int fail;
};

static int capture_send(void *arg, const char *rcpt, const char *msg, size_t len)
{
    struct sent *s = arg;
    if (s->fail)
        return -1;
    if (s->n < 8)
        str_copy(s->rcpt[s->n], rcpt, sizeof(s->rcpt[0]));
    s->n++;
    strbuf_reset(&s->last);
    strbuf_append(&s->last, msg, len);
    return 0;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void note(struct store *st, const char *rec_text, const char *from, const char *ip, bool dkim_pass,
                 bool sampled, time_t when)
{
    struct dmarc_eval ev;
    char err[128];
    memset(&ev, 0, sizeof(ev));
    CHECK_EQ_INT(dmarc_record_parse(rec_text, strlen(rec_text), &ev.rec, err, sizeof(err)), 0);
    ev.have_record = true;
    ev.result = dkim_pass ? DMARC_RESULT_PASS : DMARC_RESULT_FAIL;
    ev.dkim_aligned = dkim_pass;
    ev.disposition = dkim_pass ? DMARC_POLICY_NONE : sampled ? DMARC_POLICY_QUARANTINE : DMARC_POLICY_REJECT;
    ev.sampled_out = sampled;
    str_copy(ev.from_domain, from, sizeof(ev.from_domain));
    str_copy(ev.record_domain, "example.org", sizeof(ev.record_domain));
    struct dkim_verdict v = verdict(dkim_pass ? DKIM_PASS : DKIM_FAIL, "example.org");
    struct spf_response spf;
    memset(&spf, 0, sizeof(spf));
    spf.result = SPF_SOFTFAIL;
    str_copy(spf.domain, "bounce.example.org", sizeof(spf.domain));
    struct dmarc_report_input in = { .source_ip = ip, .envelope_from = "bounce.example.org", .spf = &spf,
                                     .dkim = &v, .n_dkim = 1, .now = when };
    const char *e = NULL;
    CHECK_EQ_INT(dmarc_report_note(st, &ev, &in, &e), 0);
}

static void test_reports(void)
{
    snprintf(dir, sizeof(dir), "/tmp/postel-test-dmarc-%d", (int)getpid());
    const char *err = NULL;
    struct store *st = store_open(dir, &err);
    CHECK(st != NULL);
    if (st == NULL) {
        fprintf(stderr, "store_open: %s\n", err ? err : "?");
        return;
    }
    struct dmarc_report_opts o;
    memset(&o, 0, sizeof(o));
    str_copy(o.org_name, "Postel <Test> & Co", sizeof(o.org_name));
    str_copy(o.email, "noreply-dmarc@receiver.test", sizeof(o.email));
    str_copy(o.receiver, "mx.receiver.test", sizeof(o.receiver));

    const char *rec = "v=DMARC1; p=reject; np=quarantine; pct=100; adkim=s; fo=1; "
                      "rua=mailto:dmarc@example.org,mailto:agg@reports.example.net,mailto:x@other.test,"
                      "mailto:tiny@example.org!1k,mailto:t@tempfail.test";
    time_t day = 1700006400;                /* 2023-11-15 00:00:00 UTC */
    note(st, rec, "example.org", "192.0.2.1", true, false, day + 100);
    note(st, rec, "example.org", "192.0.2.1", true, false, day + 200);
    note(st, rec, "example.org", "192.0.2.1", true, false, day + 300);
    note(st, rec, "mail.example.org", "198.51.100.7", false, false, day + 400);
    note(st, rec, "example.org", "198.51.100.7", false, true, day + 86399);
    note(st, rec, "example.org", "203.0.113.5", false, false, day + 86400);   /* the next day */
    /* a record without rua keeps nothing */
    note(st, "v=DMARC1; p=none", "quiet.test", "192.0.2.2", true, false, day + 100);

    struct strbuf xml, gz, back;
    strbuf_init(&xml, 1 << 20);
    strbuf_init(&gz, 1 << 20);
    strbuf_init(&back, 1 << 20);
    CHECK_EQ_INT(dmarc_report_xml(st, &o, "example.org", day, day + 86399, &xml), 3);
    const char *x = xml.data ? xml.data : "";
    CHECK(strncmp(x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n", 50) == 0);
    CHECK(strstr(x, "<org_name>Postel &lt;Test&gt; &amp; Co</org_name>") != NULL);
    CHECK(strstr(x, "<report_id>1700006400.example.org@mx.receiver.test</report_id>") != NULL);
    CHECK(strstr(x, "<begin>1700006400</begin>") && strstr(x, "<end>1700092799</end>"));
    CHECK(strstr(x, "<domain>example.org</domain>\n    <adkim>s</adkim>\n    <aspf>r</aspf>\n"
                    "    <p>reject</p>\n    <sp>reject</sp>\n    <np>quarantine</np>\n    <pct>100</pct>\n"
                    "    <fo>1</fo>") != NULL);
    CHECK_EQ_INT(count(x, "<record>"), 3);
    CHECK(strstr(x, "<source_ip>192.0.2.1</source_ip>\n      <count>3</count>") != NULL);
    CHECK(strstr(x, "<header_from>mail.example.org</header_from>") != NULL);
    CHECK(strstr(x, "<reason>\n          <type>sampled_out</type>") != NULL);
    CHECK(strstr(x, "<disposition>quarantine</disposition>") != NULL);
    CHECK(strstr(x, "<envelope_from>bounce.example.org</envelope_from>") != NULL);
    CHECK(strstr(x, "<dkim>\n        <domain>example.org</domain>\n        <selector>sel</selector>\n"
                    "        <result>pass</result>") != NULL);
    CHECK(strstr(x, "<scope>mfrom</scope>\n        <result>softfail</result>") != NULL);
    CHECK(strstr(x, "203.0.113.5") == NULL);
    CHECK(strstr(x, "</feedback>\n") != NULL);
    CHECK_EQ_INT(dmarc_report_xml(st, &o, "quiet.test", day, day + 86399, &back), 0);

    CHECK_EQ_INT(dmarc_gzip(xml.data, xml.len, &gz), 0);
    CHECK(gz.len > 10 && (unsigned char)gz.data[0] == 0x1f && (unsigned char)gz.data[1] == 0x8b);
    CHECK_EQ_INT(gunzip(gz.data, gz.len, &back), 0);
    CHECK(back.len == xml.len && memcmp(back.data, xml.data, xml.len) == 0);

    struct strbuf msg;
    strbuf_init(&msg, 1 << 22);
    CHECK_EQ_INT(dmarc_report_message(&o, "example.org", day, day + 86399, "dmarc@example.org", gz.data, gz.len,
                                      day + 90000, &msg), 0);
    const char *m = msg.data ? msg.data : "";
    CHECK(strstr(m, "\r\nSubject: Report Domain: example.org Submitter: mx.receiver.test Report-ID: "
                    "<1700006400.example.org@mx.receiver.test>\r\n") != NULL);
    CHECK(strstr(m, "Content-Type: application/gzip; name=\"mx.receiver.test!example.org!1700006400!1700092799"
                    ".xml.gz\"") != NULL);
    CHECK(strstr(m, "filename=\"mx.receiver.test!example.org!1700006400!1700092799.xml.gz\"") != NULL);
    CHECK(strstr(m, "To: <dmarc@example.org>\r\n") != NULL);
    CHECK(strstr(m, "Date: Thu, 16 Nov 2023 01:00:00 +0000\r\n") != NULL);
    bool crlf = true;
    for (size_t i = 0; i < msg.len; i++)
        if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r'))
            crlf = false;
    CHECK(crlf);

    /* 7.1: same Organizational Domain, authorized, not authorized, DNS trouble */
    zone = report_zone;
    CHECK_EQ_INT(dmarc_rua_allowed(&mem_dns, "example.org", "d@example.org"), 1);
    CHECK_EQ_INT(dmarc_rua_allowed(&mem_dns, "sub.example.org", "d@reports.example.org"), 1);
    CHECK_EQ_INT(dmarc_rua_allowed(&mem_dns, "example.org", "agg@reports.example.net"), 1);
    CHECK_EQ_INT(dmarc_rua_allowed(&mem_dns, "example.org", "x@other.test"), 0);
    CHECK_EQ_INT(dmarc_rua_allowed(&mem_dns, "example.org", "t@tempfail.test"), -1);

    /* build_due: only the finished day; the !1k address is skipped (size),
     * other.test is not authorized, tempfail.test is deferred. */
    struct sent s;
    memset(&s, 0, sizeof(s));
    strbuf_init(&s.last, 1 << 22);
    CHECK_EQ_INT(dmarc_reports_build_due(st, &mem_dns, &o, day + 86400 + 3600, capture_send, &s), 2);
    CHECK_EQ_INT(s.n, 2);
    CHECK_EQ_STR(s.rcpt[0], "dmarc@example.org");
    CHECK_EQ_STR(s.rcpt[1], "agg@reports.example.net");
    CHECK_EQ_INT(store_dmarc_reported(st, "example.org", day), 1);
    /* the day's rows are gone; again: nothing more is due */
    CHECK_EQ_INT(dmarc_report_xml(st, &o, "example.org", day, day + 86399, &back), 0);
    s.n = 0;
    CHECK_EQ_INT(dmarc_reports_build_due(st, &mem_dns, &o, day + 86400 + 7200, capture_send, &s), 0);
    CHECK_EQ_INT(s.n, 0);
    /* a day whose every send fails stays for the next call */
    s.fail = 1;
    CHECK_EQ_INT(dmarc_reports_build_due(st, &mem_dns, &o, day + 2 * 86400 + 60, capture_send, &s), 0);
    CHECK_EQ_INT(store_dmarc_reported(st, "example.org", day + 86400), 0);
    s.fail = 0;
    CHECK_EQ_INT(dmarc_reports_build_due(st, &mem_dns, &o, day + 2 * 86400 + 120, capture_send, &s), 2);
    CHECK(strstr(s.last.data, "!1700092800!1700179199.xml.gz") != NULL);
    CHECK_EQ_INT(store_dmarc_reported(st, "example.org", day + 86400), 1);

    strbuf_free(&s.last);
    strbuf_free(&msg);
    strbuf_free(&xml);
    strbuf_free(&gz);
    strbuf_free(&back);
    store_close(st);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    log_set_level(LOG_WARN);
    RUN(test_record_parse);
    RUN(test_org_domain);
    RUN(test_alignment);
    RUN(test_from_domains);
    RUN(test_evaluate);
    RUN(test_reports);
    return unit_report("dmarc");
}
