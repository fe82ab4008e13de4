/*
 * Anti-spam engine tests: CIDR and list matching, list entries, the
 * configuration keys, DNS list query names and answer codes, greylisting
 * (the state machine and through the store with a test clock), rate
 * limits, header heuristics and the X-Spam fields, Rspamd replies and the
 * HTTP client against an in-process server, and whole connections through
 * the engine with an in-memory DNS.
 */
#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "filter/filter.h"
#include "filter/filter_int.h"
#include "store/store.h"
#include "store/store_filter.h"
#include "unit.h"

static char dir[256];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- a test clock ---- */

static time_t test_time = 1700000000;
static time_t test_clock(void *arg)
{
    (void)arg;
    return test_time;
}

/* ---- an in-memory DNS ---- */

struct fake_rr {
    const char *name;
    uint16_t type;
    const char *value;      /* "1.2.3.4", "2001:db8::1", a PTR target, "NX", "TIMEOUT", "SERVFAIL" */
};

static const struct fake_rr fake_zone[] = {
    /* 192.0.2.1: listed twice, confirmed reverse name */
    { "1.2.0.192.bl.test", DNS_T_A, "127.0.0.2" },
    { "1.2.0.192.codes.test", DNS_T_A, "127.0.0.4" },
    { "1.2.0.192.codes.test", DNS_T_A, "127.0.0.10" },
    { "1.2.0.192.in-addr.arpa", DNS_T_PTR, "mail.good.test" },
    { "mail.good.test", DNS_T_A, "192.0.2.1" },
    /* 192.0.2.2: not listed, reverse name not confirmed */
    { "2.2.0.192.in-addr.arpa", DNS_T_PTR, "other.test" },
    { "other.test", DNS_T_A, "192.0.2.99" },
    /* 192.0.2.4: in the DNSWL */
    { "4.2.0.192.wl.test", DNS_T_A, "127.0.10.3" },
    { "4.2.0.192.bl.test", DNS_T_A, "127.0.0.2" },
    /* 192.0.2.5: a list that never answers */
    { "5.2.0.192.slow.test", DNS_T_A, "TIMEOUT" },
    { "5.2.0.192.bl.test", DNS_T_A, "127.0.0.2" },
    /* 192.0.2.6: an error code, not a listing */
    { "6.2.0.192.bl.test", DNS_T_A, "127.255.255.254" },
    /* IPv6 */
    { "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test", DNS_T_A,
      "127.0.0.2" },
    /* domains */
    { "spammer.test.dbl.test", DNS_T_A, "127.0.1.2" },
    { "evil.co.uk.dbl.test", DNS_T_A, "127.0.1.2" },
    { "good.test", DNS_T_A, "192.0.2.10" },
    { "helo.good.test", DNS_T_A, "192.0.2.11" },
    { "broken.test", DNS_T_A, "SERVFAIL" },
    { NULL, 0, NULL },
};

static atomic_int fake_queries;

/* Encodes a text name in wire format. */
static int wire_name(const char *name, unsigned char *out, size_t size)
{
    size_t o = 0;
    const char *p = name;
    while (*p) {
        size_t l = strcspn(p, ".");
        if (o + l + 2 > size)
            return -1;
        out[o++] = (unsigned char)l;
        memcpy(out + o, p, l);
        o += l;
        p += l;
        if (*p == '.')
            p++;
    }
    out[o++] = 0;
    return (int)o;
}

static enum dns_status fake_query(void *arg, const char *name, uint16_t type, struct dns_result *res)
{
    (void)arg;
    atomic_fetch_add(&fake_queries, 1);
    memset(res, 0, sizeof(*res));
    unsigned char rdata[8][300];
    const unsigned char *data[9] = { NULL };
    int len[8];
    int n = 0;
    bool exists = false;
    for (const struct fake_rr *r = fake_zone; r->name; r++) {
        if (strcasecmp(r->name, name) != 0)
            continue;
        exists = true;
        if (r->type != type)
            continue;
        if (strcmp(r->value, "TIMEOUT") == 0) {
            usleep(400 * 1000);
            return dns_result_from_rdata(res, type, 2, false, data, len);
        }
        if (strcmp(r->value, "SERVFAIL") == 0)
            return dns_result_from_rdata(res, type, 2, false, data, len);
        if (type == DNS_T_A && inet_pton(AF_INET, r->value, rdata[n]) == 1)
            len[n] = 4;
        else if (type == DNS_T_AAAA && inet_pton(AF_INET6, r->value, rdata[n]) == 1)
            len[n] = 16;
        else if (type == DNS_T_PTR)
            len[n] = wire_name(r->value, rdata[n], sizeof(rdata[n]));
        else
            continue;
        data[n] = rdata[n];
        n++;
    }
    enum dns_status st = dns_result_from_rdata(res, type, 0, !exists, data, len);
    res->ttl = 600;
    return st;
}

/* ---- engine set-up ---- */

static struct store *test_store;

static struct filter *make_filter(const struct filter_config *fc)
{
    struct filter_env env = {
        .store = test_store, .query = fake_query, .clock = test_clock,
        .hostname = "mx.example.org", .local_domains = "example.org, example.net",
    };
    const char *err = NULL;
    struct filter *f = filter_new(fc, &env, &err);
    if (f == NULL)
        fprintf(stderr, "filter_new: %s\n", err ? err : "?");
    return f;
}

static int cfg_set(struct filter_config *fc, const char *section, const char *name,
                   const char *value)
{
    char err[256];
    int rc = filter_config_key(fc, section, name, value, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "config [%s] %s = %s: %s\n", section, name, value, err);
    return rc;
}

static bool has_rule(const struct filter_verdict *v, const char *name)
{
    for (int i = 0; i < v->n_rules; i++)
        if (strcmp(v->rules[i].name, name) == 0)
            return true;
    return false;
}

/* ---- CIDR and lists ---- */

static bool cidr_has(const char *cidr, const char *ip)
{
    struct filter_cidr c;
    struct filter_ip a;
    if (filter_cidr_parse(cidr, &c, NULL, 0) < 0 || filter_ip_parse(ip, &a) < 0)
        return false;
    return filter_cidr_match(&c, &a);
}

static void test_cidr(void)
{
    static const struct { const char *cidr, *ip; bool match; } cases[] = {
        { "192.0.2.0/24", "192.0.2.77", true },
        { "192.0.2.0/24", "192.0.3.1", false },
        { "192.0.2.1", "192.0.2.1", true },
        { "192.0.2.1", "192.0.2.2", false },
        { "192.0.2.1/32", "192.0.2.1", true },
        { "0.0.0.0/0", "203.0.113.9", true },
        { "0.0.0.0/0", "2001:db8::1", false },
        { "128.0.0.0/1", "200.1.1.1", true },
        { "128.0.0.0/1", "127.1.1.1", false },
        { "10.0.0.0/8", "10.255.255.255", true },
        { "192.0.2.128/25", "192.0.2.127", false },
        { "192.0.2.128/25", "192.0.2.128", true },
        { "192.0.2.254/31", "192.0.2.255", true },
        { "192.0.2.254/31", "192.0.2.253", false },
        { "172.16.0.0/12", "172.31.255.1", true },
        { "172.16.0.0/12", "172.32.0.1", false },
        { "2001:db8::/32", "2001:db8:ffff::1", true },
        { "2001:db8::/32", "2001:db9::1", false },
        { "2001:db8::/32", "192.0.2.1", false },
        { "::/0", "2001:db8::1", true },
        { "::1", "::1", true },
        { "::1/128", "::2", false },
        { "2001:db8::/127", "2001:db8::1", true },
        { "2001:db8::/127", "2001:db8::2", false },
        { "2001:db8:0:1::/64", "2001:db8:0:1:ffff:ffff:ffff:ffff", true },
        { "2001:db8:0:1::/64", "2001:db8:0:2::", false },
        { "2001:db8::/33", "2001:db8:8000::1", false },
        /* IPv4-mapped clients compare as IPv4, and mapped ranges become IPv4 ones */
        { "192.0.2.0/24", "::ffff:192.0.2.9", true },
        { "::ffff:192.0.2.0/120", "192.0.2.9", true },
        { "::ffff:0:0/96", "203.0.113.1", true },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = cidr_has(cases[i].cidr, cases[i].ip);
        if (got != cases[i].match)
            fprintf(stderr, "cidr %s ip %s\n", cases[i].cidr, cases[i].ip);
        CHECK(got == cases[i].match);
    }
    static const char *const bad[] = {
        "192.0.2.1/24", "192.0.2.0/33", "2001:db8::1/64", "2001:db8::/129", "300.1.1.1",
        "192.0.2.0/", "192.0.2.0/2x", "192.0.2.0/-1", "1.2.3", "::g", "192.0.2.0/024x", "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct filter_cidr c;
        char err[160] = "";
        CHECK(filter_cidr_parse(bad[i], &c, err, sizeof(err)) < 0);
        CHECK(err[0] != '\0');
    }
    struct filter_cidr c;
    char err[160];
    CHECK(filter_cidr_parse("10.1.2.3/8", &c, err, sizeof(err)) < 0);
    CHECK(strstr(err, "10.0.0.0/8") != NULL);
}

static void test_entries(void)
{
    static const struct { const char *in, *canon; enum filter_entry_type type; } cases[] = {
        { "192.0.2.0/24", "192.0.2.0/24", FILTER_E_CIDR },
        { " 192.0.2.7 ", "192.0.2.7", FILTER_E_CIDR },
        { "2001:DB8:0::/32", "2001:db8::/32", FILTER_E_CIDR },
        { "::ffff:192.0.2.0/120", "192.0.2.0/24", FILTER_E_CIDR },
        { "User@Example.ORG", "user@example.org", FILTER_E_ADDRESS },
        { "postmaster@", "postmaster@", FILTER_E_LOCALPART },
        { "@Example.org", "example.org", FILTER_E_DOMAIN },
        { "example.org", "example.org", FILTER_E_DOMAIN },
        { ".example.org", ".example.org", FILTER_E_SUBDOMAIN },
        { "localhost", "localhost", FILTER_E_DOMAIN },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct filter_entry e;
        CHECK_EQ_INT(filter_entry_parse(cases[i].in, &e, NULL, 0), 0);
        CHECK_EQ_STR(e.text, cases[i].canon);
        CHECK_EQ_INT(e.type, cases[i].type);
    }
    static const char *const bad[] = {
        "", "a b@example.org", "user@@example.org", "user@exa mple.org", "..example.org",
        "example..org", "@", "user@-", "1.2.3.4/40", "a@b@c",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct filter_entry e;
        char err[160] = "";
        int rc = filter_entry_parse(bad[i], &e, err, sizeof(err));
        if (rc == 0)
            fprintf(stderr, "entry accepted: '%s' -> %s\n", bad[i], e.text);
        CHECK(rc < 0);
    }
}

static void test_list_match(void)
{
    struct filter_list l = { 0 };
    CHECK_EQ_INT(filter_list_add_text(&l, "boss@example.org, postmaster@, partner.test, "
                                          ".corp.test, 192.0.2.0/24, bad entry@@"),
                 0);
    CHECK_EQ_INT(l.n, 5);
    CHECK(filter_list_match_address(&l, "Boss@EXAMPLE.org", true) != NULL);
    CHECK(filter_list_match_address(&l, "boss+news@example.org", true) != NULL);
    CHECK(filter_list_match_address(&l, "bossy@example.org", true) == NULL);
    CHECK(filter_list_match_address(&l, "postmaster@anything.test", true) != NULL);
    CHECK(filter_list_match_address(&l, "postmaster+x@anything.test", true) != NULL);
    CHECK(filter_list_match_address(&l, "postmasters@anything.test", true) == NULL);
    CHECK(filter_list_match_address(&l, "x@partner.test", true) != NULL);
    CHECK(filter_list_match_address(&l, "x@partner.test", false) == NULL);
    CHECK(filter_list_match_address(&l, "x@sub.partner.test", true) == NULL);
    CHECK(filter_list_match_address(&l, "x@corp.test", true) == NULL);
    CHECK(filter_list_match_address(&l, "x@mail.corp.test", true) != NULL);
    CHECK(filter_list_match_address(&l, "x@a.b.corp.test", true) != NULL);
    CHECK(filter_list_match_address(&l, "x@xcorp.test", true) == NULL);
    CHECK(filter_list_match_address(&l, "", true) == NULL);
    CHECK(filter_list_match_address(&l, "nodomain", true) == NULL);
    CHECK(filter_list_match_domain(&l, "PARTNER.test.") != NULL);
    struct filter_ip ip;
    filter_ip_parse("192.0.2.200", &ip);
    CHECK(filter_list_match_ip(&l, &ip) != NULL);
    filter_ip_parse("192.0.3.1", &ip);
    CHECK(filter_list_match_ip(&l, &ip) == NULL);
    /* duplicates are kept once */
    CHECK_EQ_INT(filter_list_add_text(&l, "PARTNER.test, @partner.test"), 0);
    CHECK_EQ_INT(l.n, 5);
    filter_list_free(&l);
}

/* ---- configuration ---- */

static void test_config(void)
{
    struct filter_config fc;
    char err[256];
    filter_config_defaults(&fc);
    CHECK(fc.greylist_enabled);
    CHECK_EQ_INT(fc.greylist_min_delay, 300);
    CHECK_EQ_INT(fc.greylist_window, 86400);
    CHECK_EQ_INT(fc.greylist_expire, 35 * 86400);
    CHECK(filter_config_section("greylist"));
    CHECK(filter_config_section("dnsbl zen"));
    CHECK(filter_config_section("dnswl dnswl-org"));
    CHECK(!filter_config_section("dnsblx"));
    CHECK(!filter_config_section("listen"));

    CHECK_EQ_INT(cfg_set(&fc, "greylist", "min_delay", "1m"), 0);
    CHECK_EQ_INT(fc.greylist_min_delay, 60);
    CHECK_EQ_INT(filter_config_key(&fc, "greylist", "min_delay", "soon", err, sizeof(err)), -1);
    CHECK(strstr(err, "duration") != NULL);
    CHECK_EQ_INT(filter_config_key(&fc, "greylist", "colour", "red", err, sizeof(err)), 1);
    CHECK_EQ_INT(filter_config_key(&fc, "nosuch", "a", "b", err, sizeof(err)), 1);

    CHECK_EQ_INT(cfg_set(&fc, "lists", "allow_ip", "192.0.2.0/24, 2001:db8::/32"), 0);
    CHECK_EQ_INT(cfg_set(&fc, "lists", "allow_ip", "198.51.100.1"), 0);
    CHECK_EQ_STR(fc.allow_ip, "192.0.2.0/24, 2001:db8::/32, 198.51.100.1");
    CHECK_EQ_INT(filter_config_key(&fc, "lists", "allow_ip", "example.org", err, sizeof(err)), -1);
    CHECK_EQ_INT(filter_config_key(&fc, "lists", "block_ip", "10.0.0.1/8", err, sizeof(err)), -1);
    CHECK(strstr(err, "10.0.0.0/8") != NULL);
    CHECK_EQ_INT(filter_config_key(&fc, "lists", "block_sender", "192.0.2.1", err, sizeof(err)),
                 -1);
    CHECK_EQ_INT(cfg_set(&fc, "lists", "allow_ip", ""), 0);
    CHECK_EQ_STR(fc.allow_ip, "");
    CHECK_EQ_INT(cfg_set(&fc, "lists", "recipient_exceptions", "postmaster@, abuse@"), 0);

    CHECK_EQ_INT(cfg_set(&fc, "postscreen", "pregreet", "reject"), 0);
    CHECK_EQ_INT(fc.pregreet.mode, FILTER_MODE_REJECT);
    CHECK_EQ_INT(cfg_set(&fc, "postscreen", "helo", "score 2.5"), 0);
    CHECK(fc.helo.mode == FILTER_MODE_SCORE && fc.helo.score == 2.5);
    CHECK_EQ_INT(cfg_set(&fc, "postscreen", "fcrdns", "off"), 0);
    CHECK_EQ_INT(filter_config_key(&fc, "postscreen", "fcrdns", "score", err, sizeof(err)), -1);
    CHECK_EQ_INT(filter_config_key(&fc, "postscreen", "fcrdns", "accept", err, sizeof(err)), -1);

    CHECK_EQ_INT(cfg_set(&fc, "spam", "missing_date", "2.5"), 0);
    CHECK(fc.rule_score[FILTER_R_MISSING_DATE] == 2.5);
    CHECK_EQ_INT(filter_config_key(&fc, "spam", "NO_SUCH_RULE", "1", err, sizeof(err)), 1);
    CHECK_EQ_INT(filter_config_key(&fc, "spam", "reject_score", "x", err, sizeof(err)), -1);

    CHECK_EQ_INT(cfg_set(&fc, "rspamd", "url", "http://127.0.0.1:11333"), 0);
    CHECK_EQ_INT(filter_config_key(&fc, "rspamd", "url", "https://x", err, sizeof(err)), -1);
    CHECK_EQ_INT(cfg_set(&fc, "rspamd", "timeout", "500ms"), 0);
    CHECK_EQ_INT(fc.rspamd_timeout_ms, 500);
    CHECK_EQ_INT(cfg_set(&fc, "ratelimit", "connections_per_minute", "30"), 0);
    CHECK_EQ_INT(filter_config_key(&fc, "ratelimit", "messages_per_hour", "-1", err, sizeof(err)),
                 -1);

    CHECK_EQ_INT(cfg_set(&fc, "dnsbl zen", "zone", "zen.spamhaus.org."), 0);
    CHECK_EQ_INT(cfg_set(&fc, "dnsbl zen", "codes", "127.0.0.2 sbl 4, 127.0.0.[4..7] xbl reject"),
                 0);
    CHECK_EQ_INT(cfg_set(&fc, "dnsbl zen", "codes", "127.0.0.10-11 pbl 1.5"), 0);
    CHECK_EQ_INT(cfg_set(&fc, "dnsbl zen", "action", "reject"), 0);
    CHECK_EQ_INT(fc.n_dnsl, 1);
    CHECK_EQ_STR(fc.dnsl[0].zone, "zen.spamhaus.org");
    CHECK_EQ_INT(fc.dnsl[0].n_codes, 3);
    CHECK_EQ_INT(filter_config_key(&fc, "dnsbl zen", "action", "accept", err, sizeof(err)), -1);
    CHECK_EQ_INT(filter_config_key(&fc, "dnsbl zen", "codes", "127.0.0.2 accept", err, sizeof(err)),
                 -1);
    CHECK_EQ_INT(filter_config_key(&fc, "dnsbl", "zone", "x.test", err, sizeof(err)), -1);
    CHECK_EQ_INT(filter_config_key(&fc, "dnsbl a b", "zone", "x.test", err, sizeof(err)), -1);
    CHECK_EQ_INT(filter_config_key(&fc, "dnsbl zen", "timeout", "0", err, sizeof(err)), -1);
    CHECK_EQ_INT(cfg_set(&fc, "dnswl wl", "action", "accept"), 0);
    CHECK_EQ_INT(fc.n_dnsl, 2);
    CHECK_EQ_INT(filter_config_finish(&fc, err, sizeof(err)), -1);
    CHECK(strstr(err, "[dnswl wl] needs a zone") != NULL);
    CHECK_EQ_INT(cfg_set(&fc, "dnswl wl", "zone", "list.dnswl.org"), 0);
    CHECK_EQ_INT(filter_config_finish(&fc, err, sizeof(err)), 0);
    CHECK_EQ_INT(cfg_set(&fc, "spam", "add_header_score", "20"), 0);
    CHECK_EQ_INT(filter_config_finish(&fc, err, sizeof(err)), -1);
}

static void test_codes(void)
{
    struct filter_code c;
    uint8_t a[4];
    CHECK_EQ_INT(filter_code_parse("127.0.0.2 sbl 4", &c, NULL, 0), 0);
    CHECK_EQ_STR(c.name, "sbl");
    CHECK(c.has_weight && c.weight == 4);
    memcpy(a, (uint8_t[]){ 127, 0, 0, 2 }, 4);
    CHECK(filter_code_match(&c, a));
    a[3] = 3;
    CHECK(!filter_code_match(&c, a));

    CHECK_EQ_INT(filter_code_parse("127.0.0.[4..7] xbl reject", &c, NULL, 0), 0);
    CHECK_EQ_INT(c.mode, FILTER_MODE_REJECT);
    for (int i = 3; i <= 8; i++) {
        a[3] = (uint8_t)i;
        CHECK(filter_code_match(&c, a) == (i >= 4 && i <= 7));
    }
    CHECK_EQ_INT(filter_code_parse("127.0.*.3", &c, NULL, 0), 0);
    memcpy(a, (uint8_t[]){ 127, 0, 15, 3 }, 4);
    CHECK(filter_code_match(&c, a));
    a[3] = 2;
    CHECK(!filter_code_match(&c, a));
    CHECK_EQ_INT(filter_code_parse("127.0.0.0/24", &c, NULL, 0), 0);
    memcpy(a, (uint8_t[]){ 127, 0, 0, 200 }, 4);
    CHECK(filter_code_match(&c, a));
    a[2] = 1;
    CHECK(!filter_code_match(&c, a));
    CHECK_EQ_INT(filter_code_parse("&4 grey 1.5", &c, NULL, 0), 0);
    memcpy(a, (uint8_t[]){ 127, 0, 0, 6 }, 4);
    CHECK(filter_code_match(&c, a));
    a[3] = 2;
    CHECK(!filter_code_match(&c, a));
    static const char *const bad[] = { "", "127.0.0", "127.0.0.256", "127.0.0.[7..4]",
                                       "127.0.0.2 bad!name", "&0", "&256", "127.0.0.1/33",
                                       "127.0.0.[1..2", "x.y.z.w" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(filter_code_parse(bad[i], &c, NULL, 0) < 0);
}

/* ---- DNS lists ---- */

static void test_dnsl_names(void)
{
    char buf[300];
    CHECK_EQ_INT(filter_dnsl_ip_name("192.0.2.1", "zen.spamhaus.org", buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "1.2.0.192.zen.spamhaus.org");
    CHECK_EQ_INT(filter_dnsl_ip_name("::ffff:10.1.2.3", "bl.test", buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "3.2.1.10.bl.test");
    CHECK_EQ_INT(filter_dnsl_ip_name("2001:db8::1", "bl.test", buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test");
    CHECK_EQ_INT(filter_dnsl_ip_name("2001:DB8:abcd:12::ff00", "x.y", buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "0.0.f.f.0.0.0.0.0.0.0.0.0.0.0.0.2.1.0.0.d.c.b.a.8.b.d.0.1.0.0.2.x.y");
    CHECK(filter_dnsl_ip_name("not-an-ip", "bl.test", buf, sizeof(buf)) < 0);
    CHECK(filter_dnsl_ip_name("192.0.2.1", "", buf, sizeof(buf)) < 0);
    CHECK(filter_dnsl_ip_name("192.0.2.1", "bl.test", buf, 10) < 0);
    CHECK_EQ_INT(filter_dnsl_domain_name("Spammer.TEST.", "dbl.test", buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "spammer.test.dbl.test");
    CHECK(filter_dnsl_domain_name("bad domain", "dbl.test", buf, sizeof(buf)) < 0);
    char longd[260];
    memset(longd, 'a', 63);
    strcpy(longd + 63, ".");
    memset(longd + 64, 'b', 63);
    strcpy(longd + 127, ".");
    memset(longd + 128, 'c', 63);
    strcpy(longd + 191, ".test");
    CHECK(filter_dnsl_domain_name(longd, "a-rather-long-list-zone.example", buf, sizeof(buf)) == 0);
    CHECK(filter_dnsl_domain_name(longd, "a-much-longer-list-zone-name-with-many-characters.example",
                                  buf, sizeof(buf)) < 0);
}

static void test_dnsl_answers(void)
{
    struct filter_config fc;
    filter_config_defaults(&fc);
    cfg_set(&fc, "dnsbl zen", "zone", "zen.test");
    cfg_set(&fc, "dnsbl zen", "weight", "2");
    cfg_set(&fc, "dnsbl zen", "codes", "127.0.0.2 sbl 4, 127.0.0.[4..7] xbl reject, "
                                      "127.0.0.10-11 pbl 1.5");
    const struct filter_dnsl_cfg *d = &fc.dnsl[0];
    double w;
    enum filter_mode mode;
    const char *code;
    char detail[80];
    uint8_t a[4][4] = { { 127, 0, 0, 2 } };
    CHECK(filter_dnsl_interpret(d, (const uint8_t (*)[4])a, 1, &w, &mode, &code, detail,
                                sizeof(detail)));
    CHECK(w == 4 && mode == FILTER_MODE_SCORE);
    CHECK_EQ_STR(code, "sbl");
    CHECK_EQ_STR(detail, "127.0.0.2");
    uint8_t b[3][4] = { { 127, 0, 0, 10 }, { 127, 0, 0, 5 }, { 127, 0, 0, 2 } };
    CHECK(filter_dnsl_interpret(d, (const uint8_t (*)[4])b, 3, &w, &mode, &code, detail,
                                sizeof(detail)));
    CHECK_EQ_INT(mode, FILTER_MODE_REJECT);
    CHECK_EQ_STR(code, "xbl");
    CHECK_EQ_STR(detail, "127.0.0.10,127.0.0.5,127.0.0.2");
    uint8_t pbl[1][4] = { { 127, 0, 0, 11 } };
    CHECK(filter_dnsl_interpret(d, (const uint8_t (*)[4])pbl, 1, &w, &mode, &code, detail,
                                sizeof(detail)));
    CHECK(w == 1.5);
    /* unknown codes, error codes, non-loopback answers: not a listing */
    uint8_t none[3][4] = { { 127, 0, 0, 3 }, { 127, 255, 255, 254 }, { 192, 0, 2, 1 } };
    CHECK(!filter_dnsl_interpret(d, (const uint8_t (*)[4])none, 3, &w, &mode, &code, detail,
                                 sizeof(detail)));
    /* no codes: any 127.x answer except the error range, with the list's weight */
    cfg_set(&fc, "dnsbl plain", "zone", "plain.test");
    d = &fc.dnsl[1];
    uint8_t any[1][4] = { { 127, 0, 0, 3 } };
    CHECK(filter_dnsl_interpret(d, (const uint8_t (*)[4])any, 1, &w, &mode, &code, detail,
                                sizeof(detail)));
    CHECK(w == 3.0 && code[0] == '\0');
    uint8_t err[1][4] = { { 127, 255, 255, 252 } };
    CHECK(!filter_dnsl_interpret(d, (const uint8_t (*)[4])err, 1, &w, &mode, &code, detail,
                                 sizeof(detail)));
    /* a bitmask list */
    cfg_set(&fc, "dnsbl uribl", "zone", "uribl.test");
    cfg_set(&fc, "dnsbl uribl", "codes", "&2 black 5, &4 grey 1, &8 red 3");
    d = &fc.dnsl[2];
    uint8_t grey_red[1][4] = { { 127, 0, 0, 12 } };
    CHECK(filter_dnsl_interpret(d, (const uint8_t (*)[4])grey_red, 1, &w, &mode, &code, detail,
                                sizeof(detail)));
    CHECK(w == 3);
    CHECK_EQ_STR(code, "red");
}

/* ---- greylisting ---- */

static void test_greylist_step(void)
{
    struct filter_config fc;
    filter_config_defaults(&fc);
    struct filter_grey_entry e = { 0 };
    bool write;
    int64_t t = 1000000;
    CHECK_EQ_INT(filter_greylist_step(&fc, false, &e, t, &write), FILTER_GREY_NEW);
    CHECK(write && !e.passed && e.first_seen == t);
    CHECK_EQ_INT(filter_greylist_step(&fc, true, &e, t + 60, &write), FILTER_GREY_EARLY);
    CHECK(!write);
    CHECK_EQ_INT(filter_greylist_step(&fc, true, &e, t + 299, &write), FILTER_GREY_EARLY);
    CHECK_EQ_INT(filter_greylist_step(&fc, true, &e, t + 300, &write), FILTER_GREY_PASS_FIRST);
    CHECK(write && e.passed && e.last_seen == t + 300);
    CHECK_EQ_INT(filter_greylist_step(&fc, true, &e, t + 400, &write), FILTER_GREY_PASS);
    CHECK(!write);
    CHECK_EQ_INT(filter_greylist_step(&fc, true, &e, t + 300 + 7200, &write), FILTER_GREY_PASS);
    CHECK(write && e.last_seen == t + 7500);
    /* unused for longer than expire: forgotten */
    int64_t later = e.last_seen + (int64_t)fc.greylist_expire + 1;
    CHECK_EQ_INT(filter_greylist_step(&fc, true, &e, later, &write), FILTER_GREY_RESTART);
    CHECK(write && !e.passed && e.first_seen == later);
    /* a retry after the window closed starts over */
    e = (struct filter_grey_entry){ t, t, 1, false };
    CHECK_EQ_INT(filter_greylist_step(&fc, true, &e, t + 86401, &write), FILTER_GREY_RESTART);
    CHECK(e.first_seen == t + 86401);
    CHECK_EQ_INT(filter_greylist_step(&fc, true, &e, t + 86401 + 86400, &write),
                 FILTER_GREY_PASS_FIRST);
}

static void test_greylist_keys(void)
{
    struct filter_ip ip;
    char buf[80];
    filter_ip_parse("192.0.2.77", &ip);
    CHECK_EQ_INT(filter_greylist_net(&ip, 24, 64, buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "192.0.2.0/24");
    filter_greylist_net(&ip, 32, 64, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "192.0.2.77/32");
    filter_ip_parse("2001:db8:1:2:3:4:5:6", &ip);
    filter_greylist_net(&ip, 24, 64, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "2001:db8:1:2::/64");
    filter_greylist_net(&ip, 24, 48, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "2001:db8:1::/48");
    static const struct { const char *in, *out; } s[] = {
        { "", "<>" },
        { "User@Example.org", "user@example.org" },
        { "prvs=1234abcdef=user@example.org", "user@example.org" },
        { "msprvs1=17abc=user@example.org", "user@example.org" },
        { "btv1==357f5f24fb2==user@example.org", "user@example.org" },
        { "bounce-12345-678@lists.example.org", "bounce-#-#@lists.example.org" },
        { "SRS0=HHH=TT=orig.test=someone@forwarder.test", "srs#=#=#=orig.test=someone@forwarder.test" },
        { "nodomain", "nodomain" },
    };
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        filter_greylist_sender(s[i].in, buf, sizeof(buf));
        CHECK_EQ_STR(buf, s[i].out);
    }
}

static int rcpt_action(struct filter_conn *c, const char *sender, const char *rcpt)
{
    struct filter_verdict v;
    filter_mail(c, sender, &v);
    if (v.action != FILTER_ACCEPT)
        return 100 + v.action;
    filter_rcpt(c, rcpt, NULL, &v);
    return v.action;
}

static void test_greylist_engine(void)
{
    struct filter_config fc;
    filter_config_defaults(&fc);
    cfg_set(&fc, "greylist", "auto_allow_after", "3");
    cfg_set(&fc, "postscreen", "fcrdns", "off");
    struct filter *f = make_filter(&fc);
    CHECK(f != NULL);
    if (f == NULL)
        return;
    test_time = 1700000000;
    struct filter_conn *c = filter_conn_new(f, "198.51.100.7", true, "t1");
    struct filter_verdict v;
    filter_connect(c, &v);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    filter_mail(c, "alice@sender.test", &v);
    filter_rcpt(c, "bob@example.org", NULL, &v);
    CHECK_EQ_INT(v.action, FILTER_TEMPFAIL);
    CHECK_EQ_INT(v.code, 451);
    CHECK_EQ_STR(v.enhanced, "4.7.1");
    CHECK(strstr(v.text, "Greylisted") != NULL && strstr(v.text, "300 seconds") != NULL);
    /* too early */
    test_time += 120;
    filter_rcpt(c, "bob@example.org", NULL, &v);
    CHECK_EQ_INT(v.action, FILTER_TEMPFAIL);
    CHECK(strstr(v.text, "180 seconds") != NULL);
    /* same /24, retried in the window: passes, and stays passed */
    filter_conn_free(c);
    c = filter_conn_new(f, "198.51.100.99", true, "t2");
    filter_connect(c, &v);
    test_time += 200;
    CHECK_EQ_INT(rcpt_action(c, "alice@sender.test", "bob@example.org"), FILTER_ACCEPT);
    test_time += 86400 * 10;
    CHECK_EQ_INT(rcpt_action(c, "alice@sender.test", "Bob@Example.org"), FILTER_ACCEPT);
    /* another recipient is another triplet */
    CHECK_EQ_INT(rcpt_action(c, "alice@sender.test", "carol@example.org"), FILTER_TEMPFAIL);
    /* state survives an engine restart (it is in the store) */
    filter_conn_free(c);
    filter_free(f);
    f = make_filter(&fc);
    c = filter_conn_new(f, "198.51.100.7", true, "t3");
    filter_connect(c, &v);
    CHECK_EQ_INT(rcpt_action(c, "alice@sender.test", "bob@example.org"), FILTER_ACCEPT);
    /* unused for longer than expire: greylisted again */
    test_time += (time_t)fc.greylist_expire + 10;
    CHECK_EQ_INT(rcpt_action(c, "alice@sender.test", "bob@example.org"), FILTER_TEMPFAIL);
    /* the window closes: a late retry starts over */
    CHECK_EQ_INT(rcpt_action(c, "dave@sender.test", "bob@example.org"), FILTER_TEMPFAIL);
    test_time += 86400 + 1;
    CHECK_EQ_INT(rcpt_action(c, "dave@sender.test", "bob@example.org"), FILTER_TEMPFAIL);
    test_time += 301;
    CHECK_EQ_INT(rcpt_action(c, "dave@sender.test", "bob@example.org"), FILTER_ACCEPT);
    filter_conn_free(c);

    /* auto-allow: a network that passed 3 times skips greylisting */
    c = filter_conn_new(f, "203.0.113.5", true, "t4");
    filter_connect(c, &v);
    const char *rcpts[] = { "r1@example.org", "r2@example.org", "r3@example.org" };
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(rcpt_action(c, "x@sender.test", rcpts[i]), FILTER_TEMPFAIL);
    test_time += 301;
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(rcpt_action(c, "x@sender.test", rcpts[i]), FILTER_ACCEPT);
    CHECK_EQ_INT(rcpt_action(c, "new@other.test", "r9@example.org"), FILTER_ACCEPT);
    filter_conn_free(c);
    c = filter_conn_new(f, "203.0.114.5", true, "t5");
    filter_connect(c, &v);
    CHECK_EQ_INT(rcpt_action(c, "new@other.test", "r9@example.org"), FILTER_TEMPFAIL);
    /* the null sender is greylisted like any other; BATV tags do not make new triplets */
    CHECK_EQ_INT(rcpt_action(c, "prvs=1111aaaa=ann@batv.test", "r1@example.org"), FILTER_TEMPFAIL);
    test_time += 301;
    CHECK_EQ_INT(rcpt_action(c, "prvs=2222bbbb=ann@batv.test", "r1@example.org"), FILTER_ACCEPT);
    /* authenticated users and allow-listed senders skip it */
    filter_auth(c, "ann@example.org");
    CHECK_EQ_INT(rcpt_action(c, "ann@example.org", "somebody@remote.test"), FILTER_ACCEPT);
    filter_conn_free(c);
    /* submission listeners do not greylist */
    c = filter_conn_new(f, "203.0.114.9", false, "t6");
    filter_connect(c, &v);
    CHECK_EQ_INT(rcpt_action(c, "zed@other.test", "r1@example.org"), FILTER_ACCEPT);
    filter_conn_free(c);
    filter_free(f);

    /* allow_sender: addresses always, domains with SPF pass only */
    filter_config_defaults(&fc);
    cfg_set(&fc, "postscreen", "fcrdns", "off");
    cfg_set(&fc, "lists", "allow_sender", "vip@friend.test, partner.test");
    f = make_filter(&fc);
    c = filter_conn_new(f, "192.0.2.200", true, "t7");
    filter_connect(c, &v);
    CHECK_EQ_INT(rcpt_action(c, "vip@friend.test", "bob@example.org"), FILTER_ACCEPT);
    filter_mail(c, "x@partner.test", &v);
    filter_rcpt(c, "bob@example.org", NULL, &v);
    CHECK_EQ_INT(v.action, FILTER_TEMPFAIL);
    filter_rcpt(c, "bob@example.org", "other.test", &v);
    CHECK_EQ_INT(v.action, FILTER_TEMPFAIL);
    filter_rcpt(c, "bob@example.org", "partner.test", &v);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    filter_conn_free(c);
    filter_free(f);
}

/* ---- rate limits ---- */

static void test_ratelimit(void)
{
    struct filter_rate *r = filter_rate_new(4);
    time_t t = 6000000;     /* a multiple of 60 */
    int ok = 0;
    for (int i = 0; i < 10; i++)
        ok += filter_rate_hit(r, "c:a", 5, 60, t + i);
    CHECK_EQ_INT(ok, 5);
    /* asking counts nothing and makes no key */
    CHECK(filter_rate_reached(r, "c:a", 5, 60, t + 10));
    CHECK(!filter_rate_reached(r, "c:a", 11, 60, t + 10));
    CHECK(!filter_rate_reached(r, "c:zz", 1, 60, t));
    CHECK(!filter_rate_reached(r, "c:a", 0, 60, t + 10));
    /* the next window still sees most of the previous one */
    CHECK(!filter_rate_hit(r, "c:a", 5, 60, t + 61));
    /* two windows later everything is forgotten */
    CHECK(filter_rate_hit(r, "c:a", 5, 60, t + 300));
    /* other keys are separate; limit 0 is no limit */
    CHECK(filter_rate_hit(r, "c:b", 5, 60, t));
    CHECK(filter_rate_hit(r, "c:b", 0, 60, t));
    /* a full table sweeps expired keys, and otherwise lets events through */
    CHECK(filter_rate_hit(r, "c:c", 1, 60, t));
    CHECK(filter_rate_hit(r, "c:d", 1, 60, t));
    CHECK(filter_rate_hit(r, "c:e", 1, 60, t));
    CHECK(filter_rate_hit(r, "c:e", 1, 60, t));
    CHECK(filter_rate_hit(r, "c:f", 1, 60, t + 1000));
    CHECK(!filter_rate_hit(r, "c:f", 1, 60, t + 1000));
    filter_rate_free(r);
}

static void test_ratelimit_engine(void)
{
    struct filter_config fc;
    filter_config_defaults(&fc);
    cfg_set(&fc, "ratelimit", "connections_per_minute", "3");
    cfg_set(&fc, "ratelimit", "messages_per_hour", "2");
    cfg_set(&fc, "ratelimit", "per_user_messages_per_hour", "1");
    cfg_set(&fc, "greylist", "enabled", "no");
    cfg_set(&fc, "postscreen", "fcrdns", "off");
    struct filter *f = make_filter(&fc);
    test_time = 1800000000 - 1800000000 % 3600;
    struct filter_verdict v;
    int refused = 0;
    for (int i = 0; i < 5; i++) {
        struct filter_conn *c = filter_conn_new(f, "2001:db8:5:5::1", true, NULL);
        filter_connect(c, &v);
        if (v.action != FILTER_ACCEPT) {
            refused++;
            CHECK_EQ_INT(v.code, 421);
            CHECK_EQ_STR(v.enhanced, "4.7.0");
            CHECK(v.disconnect);
        }
        filter_conn_free(c);
    }
    CHECK_EQ_INT(refused, 2);
    /* the same /64 counts as one client */
    struct filter_conn *c = filter_conn_new(f, "2001:db8:5:5::2", true, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT(v.action, FILTER_TEMPFAIL);
    filter_conn_free(c);
    test_time += 120;
    c = filter_conn_new(f, "2001:db8:5:5::2", true, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    filter_mail(c, "a@b.test", &v);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    filter_mail(c, "a@b.test", &v);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    filter_mail(c, "a@b.test", &v);
    CHECK_EQ_INT(v.action, FILTER_TEMPFAIL);
    CHECK_EQ_INT(v.code, 451);
    filter_conn_free(c);
    c = filter_conn_new(f, "198.51.100.1", false, NULL);
    filter_connect(c, &v);
    filter_auth(c, "User@example.org");
    filter_mail(c, "user@example.org", &v);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    filter_mail(c, "user@example.org", &v);
    CHECK_EQ_INT(v.action, FILTER_TEMPFAIL);
    CHECK(strstr(v.text, "User@example.org") != NULL);
    filter_conn_free(c);
    /* loopback is trusted: no limits */
    for (int i = 0; i < 10; i++) {
        c = filter_conn_new(f, "127.0.0.1", true, NULL);
        filter_connect(c, &v);
        CHECK_EQ_INT(v.action, FILTER_ACCEPT);
        filter_conn_free(c);
    }
    filter_free(f);
}

/* Failed AUTH per address: 421 at the limit, then refused at connect
 * until the rate falls; greet_wait only for untrusted MX clients; the
 * SPF question for allow-listed sender domains. */
static void test_auth_failures_and_greet_wait(void)
{
    struct filter_config fc;
    filter_config_defaults(&fc);
    cfg_set(&fc, "ratelimit", "auth_failures_per_hour", "2");
    cfg_set(&fc, "postscreen", "greet_wait", "1500ms");
    cfg_set(&fc, "postscreen", "fcrdns", "off");
    cfg_set(&fc, "lists", "allow_sender", "partner.test, boss@corp.test");
    CHECK_EQ_INT((int)fc.greet_wait_ms, 1500);
    char err[200];
    CHECK_EQ_INT(filter_config_key(&fc, "postscreen", "greet_wait", "1m", err, sizeof(err)), -1);
    CHECK_EQ_INT(filter_config_key(&fc, "ratelimit", "auth_failures_per_hour", "-1", err,
                                   sizeof(err)), -1);
    struct filter *f = make_filter(&fc);
    test_time = 1800000000 - 1800000000 % 3600;
    struct filter_verdict v;
    struct filter_conn *c = filter_conn_new(f, "198.51.100.20", false, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    CHECK_EQ_INT((int)filter_greet_wait_ms(c), 0);      /* submission: no wait */
    filter_auth_failed(c, &v);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    filter_auth_failed(c, &v);
    CHECK_EQ_INT(v.action, FILTER_TEMPFAIL);
    CHECK_EQ_INT(v.code, 421);
    CHECK_EQ_STR(v.enhanced, "4.7.0");
    CHECK(v.disconnect);
    filter_conn_free(c);
    /* refused at connect on any listener, another address is not */
    c = filter_conn_new(f, "198.51.100.20", true, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT(v.code, 421);
    CHECK(v.disconnect);
    filter_conn_free(c);
    c = filter_conn_new(f, "198.51.100.21", true, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    CHECK_EQ_INT((int)filter_greet_wait_ms(c), 1500);
    filter_mail(c, "news@partner.test", &v);
    CHECK(filter_sender_wants_spf(c));
    filter_mail(c, "boss@corp.test", &v);      /* an address entry needs no SPF */
    CHECK(!filter_sender_wants_spf(c));
    filter_mail(c, "x@other.test", &v);
    CHECK(!filter_sender_wants_spf(c));
    filter_conn_free(c);
    /* two hours later the address is welcome again */
    test_time += 7200;
    c = filter_conn_new(f, "198.51.100.20", true, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    filter_conn_free(c);
    /* trusted clients: no wait */
    c = filter_conn_new(f, "127.0.0.1", true, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT((int)filter_greet_wait_ms(c), 0);
    filter_conn_free(c);
    filter_free(f);
}

/* ---- connections with DNS ---- */

static struct filter *dns_filter(const char *extra_section, const char *k, const char *val)
{
    struct filter_config fc;
    filter_config_defaults(&fc);
    cfg_set(&fc, "greylist", "enabled", "no");
    cfg_set(&fc, "dnsbl bl", "zone", "bl.test");
    cfg_set(&fc, "dnsbl bl", "weight", "2.5");
    cfg_set(&fc, "dnsbl codes", "zone", "codes.test");
    cfg_set(&fc, "dnsbl codes", "codes", "127.0.0.2 sbl 4, 127.0.0.4-7 xbl 3, 127.0.0.10 pbl 1");
    cfg_set(&fc, "dnsbl slow", "zone", "slow.test");
    cfg_set(&fc, "dnsbl slow", "action", "reject");
    cfg_set(&fc, "dnsbl slow", "timeout", "100ms");
    cfg_set(&fc, "dnswl wl", "zone", "wl.test");
    cfg_set(&fc, "dnswl wl", "codes", "127.0.*.[2..3] high");
    cfg_set(&fc, "dnsbl dbl", "zone", "dbl.test");
    cfg_set(&fc, "dnsbl dbl", "type", "domain");
    cfg_set(&fc, "dnsbl dbl", "check", "sender, helo, from");
    if (extra_section)
        cfg_set(&fc, extra_section, k, val);
    return make_filter(&fc);
}

static void test_connect_dns(void)
{
    struct filter *f = dns_filter(NULL, NULL, NULL);
    struct filter_verdict v;
    struct filter_conn *c = filter_conn_new(f, "192.0.2.1", true, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    CHECK(has_rule(&v, "DNSBL_BL"));
    CHECK(has_rule(&v, "DNSBL_CODES_XBL"));
    CHECK(!has_rule(&v, "FCRDNS_FAIL"));
    CHECK(v.score > 5.49 && v.score < 5.51);
    CHECK_EQ_STR(c->ptr, "mail.good.test");
    filter_conn_free(c);

    /* answers are cached: the same lists and FCrDNS again cost no queries */
    unsigned long hits0, q0, hits1, q1;
    filter_lookup_stats(f, &hits0, &q0);
    int fq0 = atomic_load(&fake_queries);
    c = filter_conn_new(f, "192.0.2.1", true, NULL);
    filter_connect(c, &v);
    filter_lookup_stats(f, &hits1, &q1);
    CHECK_EQ_INT(hits1 - hits0, 5);                 /* 4 lists + FCrDNS */
    CHECK_EQ_INT(atomic_load(&fake_queries) - fq0, 0);
    CHECK_EQ_STR(c->ptr, "mail.good.test");
    CHECK(has_rule(&v, "DNSBL_BL"));
    filter_conn_free(c);

    /* FCrDNS: unconfirmed and absent reverse names */
    c = filter_conn_new(f, "192.0.2.2", true, NULL);
    filter_connect(c, &v);
    CHECK(has_rule(&v, "FCRDNS_FAIL"));
    CHECK(!has_rule(&v, "DNSBL_BL"));
    filter_conn_free(c);
    c = filter_conn_new(f, "192.0.2.3", true, NULL);
    filter_connect(c, &v);
    CHECK(has_rule(&v, "FCRDNS_FAIL"));
    CHECK_EQ_STR(v.rules[0].detail, "no PTR");
    filter_conn_free(c);

    /* a list that times out never rejects, and the others still count */
    uint64_t t0 = now_mono_ms();
    c = filter_conn_new(f, "192.0.2.5", true, NULL);
    filter_connect(c, &v);
    uint64_t took = now_mono_ms() - t0;
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    CHECK(has_rule(&v, "DNSBL_BL"));
    CHECK(took < 390);
    filter_conn_free(c);

    /* an error answer (127.255.255.x) is not a listing */
    c = filter_conn_new(f, "192.0.2.6", true, NULL);
    filter_connect(c, &v);
    CHECK(!has_rule(&v, "DNSBL_BL"));
    filter_conn_free(c);

    /* DNSWL subtracts */
    c = filter_conn_new(f, "192.0.2.4", true, NULL);
    filter_connect(c, &v);
    CHECK(has_rule(&v, "DNSWL_WL_HIGH"));
    CHECK(has_rule(&v, "DNSBL_BL"));
    CHECK(v.score > 0.49 && v.score < 0.51);     /* -3 + 2.5 + 1 (no PTR) */
    CHECK(!c->trusted);
    filter_conn_free(c);

    /* IPv6 nibbles */
    c = filter_conn_new(f, "2001:db8::1", true, NULL);
    filter_connect(c, &v);
    CHECK(has_rule(&v, "DNSBL_BL"));
    filter_conn_free(c);

    /* submission listeners ask no DNS lists */
    c = filter_conn_new(f, "192.0.2.1", false, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT(v.n_rules, 0);
    filter_conn_free(c);
    filter_free(f);

    /* action = reject: 554 5.7.1 at connect */
    f = dns_filter("dnsbl bl", "action", "reject");
    c = filter_conn_new(f, "192.0.2.1", true, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT(v.action, FILTER_REJECT);
    CHECK_EQ_INT(v.code, 554);
    CHECK_EQ_STR(v.enhanced, "5.7.1");
    CHECK(strstr(v.text, "blocked using bl.test") != NULL);
    CHECK(v.disconnect);
    filter_conn_free(c);
    filter_free(f);

    /* a DNSWL with action = accept makes the client trusted: no rejection */
    f = dns_filter("dnswl wl", "action", "accept");
    struct filter_config fc2 = *filter_config_of(f);
    filter_free(f);
    fc2.dnsl[0].mode = FILTER_MODE_REJECT;      /* [dnsbl bl] action = reject */
    f = make_filter(&fc2);
    c = filter_conn_new(f, "192.0.2.4", true, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    CHECK(c->trusted);
    filter_conn_free(c);
    filter_free(f);

    /* fcrdns = reject: 554 5.7.25 */
    f = dns_filter("postscreen", "fcrdns", "reject");
    c = filter_conn_new(f, "192.0.2.3", true, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT(v.action, FILTER_REJECT);
    CHECK_EQ_STR(v.enhanced, "5.7.25");
    filter_conn_free(c);
    filter_free(f);
}

/* Two verdicts of a stage say the same: action, reply, score, rules. */
static bool same_verdict(const struct filter_verdict *a, const struct filter_verdict *b)
{
    if (a->action != b->action || a->code != b->code || a->disconnect != b->disconnect ||
        strcmp(a->enhanced, b->enhanced) != 0 || strcmp(a->text, b->text) != 0 ||
        a->score != b->score || a->n_rules != b->n_rules)
        return false;
    for (int i = 0; i < a->n_rules; i++)
        if (strcmp(a->rules[i].name, b->rules[i].name) != 0 ||
            strcmp(a->rules[i].detail, b->rules[i].detail) != 0 ||
            a->rules[i].score != b->rules[i].score)
            return false;
    return true;
}

/* The _try stages: with nothing cached they change nothing and ask for
 * the pool; once the blocking stages have filled the caches they answer
 * alone, with the verdicts of the blocking stages. */
static void test_try_stages(void)
{
    struct filter_config fc;
    filter_config_defaults(&fc);
    cfg_set(&fc, "greylist", "auto_allow_after", "0");
    cfg_set(&fc, "dnsbl bl", "zone", "bl.test");
    cfg_set(&fc, "dnsbl bl", "weight", "2.5");
    cfg_set(&fc, "dnsbl dbl", "zone", "dbl.test");
    cfg_set(&fc, "dnsbl dbl", "type", "domain");
    cfg_set(&fc, "dnsbl dbl", "check", "sender, helo");
    cfg_set(&fc, "postscreen", "fcrdns", "score 1");
    cfg_set(&fc, "postscreen", "helo", "score 1");
    struct filter *f = make_filter(&fc);
    CHECK(f != NULL);
    if (f == NULL)
        return;
    test_time = 1710000000;
    struct filter_verdict pool[4], loop[4];
    const char *ip = "192.0.2.2", *helo = "helo.good.test", *sender = "x@spammer.test",
               *rcpt = "try@example.org";

    /* nothing cached: every DNS stage needs the pool and changes nothing */
    struct filter_conn *c = filter_conn_new(f, ip, true, "try1");
    int q0 = atomic_load(&fake_queries);
    CHECK(!filter_connect_try(c, &loop[0]));
    CHECK(!filter_helo_try(c, helo, &loop[1]));
    CHECK(!filter_mail_try(c, sender, &loop[2]));
    CHECK_EQ_INT(atomic_load(&fake_queries) - q0, 0);
    CHECK_EQ_INT(c->n_hits + c->n_helo_hits + c->n_tx_hits, 0);
    CHECK_EQ_STR(c->helo, "");
    CHECK_EQ_STR(c->sender, "");
    filter_connect(c, &pool[0]);
    filter_helo(c, helo, &pool[1]);
    filter_mail(c, sender, &pool[2]);
    /* a new triplet needs a write: the pool; nothing is stored by the try */
    CHECK(!filter_rcpt_try(c, rcpt, NULL, &loop[3]));
    struct store_greylist_row row;
    CHECK_EQ_INT(store_greylist_get(test_store, "192.0.2.0/24", "x@spammer.test", rcpt, &row), 0);
    filter_rcpt(c, rcpt, NULL, &pool[3]);
    CHECK_EQ_INT(pool[3].action, FILTER_TEMPFAIL);
    CHECK(has_rule(&pool[0], "FCRDNS_FAIL"));
    CHECK(has_rule(&pool[1], "RHSBL_DBL") || has_rule(&pool[2], "RHSBL_DBL"));
    filter_conn_free(c);

    /* everything cached: the same verdicts without the pool; the early
     * retry is a read only */
    test_time += 10;
    c = filter_conn_new(f, ip, true, "try2");
    q0 = atomic_load(&fake_queries);
    CHECK(filter_connect_try(c, &loop[0]));
    CHECK(filter_helo_try(c, helo, &loop[1]));
    CHECK(filter_mail_try(c, sender, &loop[2]));
    CHECK(filter_rcpt_try(c, rcpt, NULL, &loop[3]));
    CHECK_EQ_INT(atomic_load(&fake_queries) - q0, 0);
    for (int i = 0; i < 4; i++)
        CHECK(same_verdict(&pool[i], &loop[i]) || i == 3);
    CHECK_EQ_INT(loop[3].action, FILTER_TEMPFAIL);
    CHECK(strstr(loop[3].text, "290 seconds") != NULL);
    CHECK_EQ_STR(c->ptr, "");
    CHECK_EQ_INT(c->n_hits, 1);
    filter_conn_free(c);

    /* the first pass writes (pool); then the known triplet is a read */
    test_time += 300;
    c = filter_conn_new(f, ip, true, "try3");
    CHECK(filter_connect_try(c, &loop[0]));
    CHECK(filter_mail_try(c, sender, &loop[2]));
    CHECK(!filter_rcpt_try(c, rcpt, NULL, &loop[3]));
    filter_rcpt(c, rcpt, NULL, &pool[3]);
    CHECK_EQ_INT(pool[3].action, FILTER_ACCEPT);
    CHECK(filter_rcpt_try(c, rcpt, NULL, &loop[3]));
    CHECK(same_verdict(&pool[3], &loop[3]));
    filter_conn_free(c);

    /* a cached answer past its TTL is not used */
    test_time += 3600;
    c = filter_conn_new(f, ip, true, "try4");
    CHECK(!filter_connect_try(c, &loop[0]));
    filter_conn_free(c);
    filter_free(f);
}

static void test_helo(void)
{
    struct filter *f = dns_filter("postscreen", "fcrdns", "off");
    static const struct { const char *helo, *rule; } cases[] = {
        { "helo.good.test", NULL },
        { "[198.51.100.20]", NULL },
        { "[198.51.100.21]", "HELO_LITERAL_MISMATCH" },
        { "[IPv6:2001:db8::1]", "HELO_LITERAL_MISMATCH" },
        { "[not-an-ip]", "HELO_INVALID" },
        { "198.51.100.20", "HELO_BARE_IP" },
        { "localhost", "HELO_NOT_FQDN" },
        { "bad_name!", "HELO_INVALID" },
        { "mx.example.org", "HELO_FORGED_OURS" },
        { "example.net", "HELO_FORGED_OURS" },
        { "nowhere.test", "HELO_UNKNOWN_NAME" },
        { "broken.test", NULL },
        { "spammer.test", "RHSBL_DBL" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct filter_verdict v;
        struct filter_conn *c = filter_conn_new(f, "198.51.100.20", true, NULL);
        filter_connect(c, &v);
        filter_helo(c, cases[i].helo, &v);
        CHECK_EQ_INT(v.action, FILTER_ACCEPT);
        if (cases[i].rule == NULL) {
            if (v.n_rules)
                fprintf(stderr, "helo %s: %s\n", cases[i].helo, v.rules[0].name);
            CHECK_EQ_INT(v.n_rules, 0);
        } else {
            if (!has_rule(&v, cases[i].rule))
                fprintf(stderr, "helo %s: expected %s, got %s\n", cases[i].helo, cases[i].rule,
                        v.n_rules ? v.rules[0].name : "nothing");
            CHECK(has_rule(&v, cases[i].rule));
        }
        filter_conn_free(c);
    }
    filter_free(f);
    f = dns_filter("postscreen", "helo", "reject");
    struct filter_verdict v;
    struct filter_conn *c = filter_conn_new(f, "198.51.100.20", true, NULL);
    filter_connect(c, &v);
    filter_helo(c, "localhost", &v);
    CHECK_EQ_INT(v.action, FILTER_REJECT);
    CHECK_EQ_INT(v.code, 550);
    CHECK(!v.disconnect);
    filter_conn_free(c);
    filter_free(f);
}

static void test_lists_engine(void)
{
    struct filter_config fc;
    filter_config_defaults(&fc);
    cfg_set(&fc, "greylist", "enabled", "no");
    cfg_set(&fc, "postscreen", "fcrdns", "off");
    cfg_set(&fc, "lists", "block_ip", "198.51.100.0/24");
    cfg_set(&fc, "lists", "allow_ip", "198.51.100.9");
    cfg_set(&fc, "lists", "block_sender", "spam.test, bad@mixed.test");
    cfg_set(&fc, "lists", "allow_sender", "good@spam.test");
    struct filter *f = make_filter(&fc);
    struct filter_verdict v;
    struct filter_conn *c = filter_conn_new(f, "198.51.100.8", true, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT(v.action, FILTER_REJECT);
    CHECK_EQ_INT(v.code, 554);
    CHECK_EQ_STR(v.enhanced, "5.7.1");
    filter_conn_free(c);
    c = filter_conn_new(f, "::ffff:198.51.100.9", true, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    CHECK(c->trusted);
    filter_conn_free(c);
    c = filter_conn_new(f, "203.0.113.1", true, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT(rcpt_action(c, "x@spam.test", "bob@example.org"), FILTER_REJECT);
    CHECK_EQ_INT(rcpt_action(c, "good@spam.test", "bob@example.org"), FILTER_ACCEPT);
    CHECK_EQ_INT(rcpt_action(c, "bad@mixed.test", "bob@example.org"), FILTER_REJECT);
    CHECK_EQ_INT(rcpt_action(c, "fine@mixed.test", "bob@example.org"), FILTER_ACCEPT);
    filter_conn_free(c);
    filter_free(f);

    /* lists added through the store are picked up; recipient exceptions
     * turn client rejections into per-recipient ones */
    const char *err = NULL;
    CHECK_EQ_INT(store_filter_list_add(test_store, STORE_FL_BLOCK, "203.0.113.0/24", "test", &err),
                 1);
    CHECK_EQ_INT(store_filter_list_add(test_store, STORE_FL_BLOCK, "203.0.113.0/24", NULL, &err), 0);
    CHECK_EQ_INT(store_filter_list_add(test_store, STORE_FL_EXCEPTION, "postmaster@", NULL, &err), 1);
    f = make_filter(&fc);
    c = filter_conn_new(f, "203.0.113.1", true, NULL);
    filter_connect(c, &v);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    CHECK(c->held);
    CHECK_EQ_INT(rcpt_action(c, "a@b.test", "postmaster@example.org"), FILTER_ACCEPT);
    filter_rcpt(c, "bob@example.org", NULL, &v);
    CHECK_EQ_INT(v.action, FILTER_REJECT);
    CHECK_EQ_INT(v.code, 554);
    CHECK(strstr(v.text, "block-listed") != NULL);
    filter_conn_free(c);
    int64_t gen = store_filter_generation(test_store);
    CHECK(gen >= 2);
    CHECK_EQ_INT(store_filter_list_del(test_store, STORE_FL_BLOCK, "203.0.113.0/24", &err), 1);
    CHECK_EQ_INT(store_filter_list_del(test_store, STORE_FL_BLOCK, "203.0.113.0/24", &err), 0);
    CHECK(store_filter_generation(test_store) > gen);
    sleep(1);       /* lists are re-read at most each second */
    c = filter_conn_new(f, "203.0.113.1", true, NULL);
    filter_connect(c, &v);
    CHECK(!c->held);
    filter_conn_free(c);
    store_filter_list_del(test_store, STORE_FL_EXCEPTION, "postmaster@", &err);
    filter_free(f);
}

static void test_postscreen_events(void)
{
    struct filter_config fc;
    filter_config_defaults(&fc);
    cfg_set(&fc, "postscreen", "fcrdns", "off");
    cfg_set(&fc, "postscreen", "pipelining", "reject");
    struct filter *f = make_filter(&fc);
    struct filter_verdict v;
    struct filter_conn *c = filter_conn_new(f, "198.51.100.30", true, NULL);
    filter_connect(c, &v);
    filter_event(c, FILTER_EV_PREGREET, &v);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    CHECK(has_rule(&v, "PREGREET"));
    filter_event(c, FILTER_EV_PREGREET, &v);
    CHECK_EQ_INT(v.n_rules, 0);     /* counted once */
    filter_event(c, FILTER_EV_PIPELINING, &v);
    CHECK_EQ_INT(v.action, FILTER_REJECT);
    CHECK(v.disconnect);
    filter_conn_free(c);
    filter_free(f);
}

/* ---- message scoring ---- */

static const char good_msg[] =
    "From: Alice <alice@sender.test>\r\n"
    "To: bob@example.org\r\n"
    "Subject: Lunch on Friday?\r\n"
    "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
    "Message-ID: <1@sender.test>\r\n"
    "\r\n"
    "Shall we?\r\n";

static const char spam_msg[] =
    "From: \"ceo@example.org\" <boss@evil.test>\r\n"
    "To: bob@example.org\r\n"
    "Subject: =?UTF-8?B?VVJHRU5UIFdJUkUgVFJBTlNGRVIgTk9X?=\r\n"
    "X-Spam: No\r\n"
    "X-Spam-Score: -100\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/html\r\n"
    "\r\n"
    "<p>Pay now</p>\r\n"
    "--b1\r\n"
    "Content-Type: application/octet-stream; name=\"invoice.pdf.exe\"\r\n"
    "Content-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "TVqQAAMAAAAEAAAA\r\n"
    "--b1--\r\n";

static int buf_write(void *arg, const void *p, size_t n)
{
    return strbuf_append(arg, p, n);
}

static struct filter_conn *message_conn(struct filter *f)
{
    struct filter_verdict v;
    struct filter_conn *c = filter_conn_new(f, "198.51.100.40", true, "msg");
    filter_connect(c, &v);
    filter_helo(c, "helo.good.test", &v);
    filter_mail(c, "boss@evil.test", &v);
    return c;
}

static void test_scoring(void)
{
    struct filter_config fc;
    filter_config_defaults(&fc);
    cfg_set(&fc, "greylist", "enabled", "no");
    cfg_set(&fc, "postscreen", "fcrdns", "off");
    struct filter *f = make_filter(&fc);
    struct filter_conn *c = message_conn(f);
    const char *rcpts[] = { "bob@example.org" };
    struct filter_message m = { good_msg, sizeof(good_msg) - 1, rcpts, 1, "pass", "pass", "pass",
                                "Q1" };
    struct filter_verdict v;
    CHECK(filter_message_needed(c));
    filter_message(c, &m, &v);
    CHECK(v.scanned);
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    CHECK(!v.spam);
    CHECK(v.score < 0);
    CHECK(has_rule(&v, "SPF_PASS") && has_rule(&v, "DKIM_PASS") && has_rule(&v, "DMARC_PASS"));
    CHECK(v.headers != NULL && strncmp(v.headers, "X-Spam: No\r\nX-Spam-Score: -0.9\r\n", 31) == 0);
    filter_verdict_free(&v);

    m = (struct filter_message){ spam_msg, sizeof(spam_msg) - 1, rcpts, 1, "softfail", "none",
                                 "fail", "Q2" };
    filter_message(c, &m, &v);
    static const char *const expect[] = { "MISSING_DATE", "MISSING_MESSAGE_ID",
                                          "FROM_DISPLAY_SPOOF", "SUBJECT_ALL_CAPS", "HTML_ONLY",
                                          "EXECUTABLE_ATTACHMENT", "SPF_SOFTFAIL", "DMARC_FAIL" };
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        if (!has_rule(&v, expect[i]))
            fprintf(stderr, "missing rule %s\n", expect[i]);
        CHECK(has_rule(&v, expect[i]));
    }
    CHECK(!has_rule(&v, "MISSING_FROM") && !has_rule(&v, "MISSING_SUBJECT"));
    CHECK_EQ_INT(v.action, FILTER_REJECT);      /* 1+1+3+1.5+1+5+1+4 = 17.5 >= 15 */
    CHECK_EQ_INT(v.code, 550);
    CHECK_EQ_STR(v.enhanced, "5.7.1");
    CHECK(v.spam);
    CHECK(strstr(v.headers, "X-Spam: Yes\r\n") != NULL);
    CHECK(strstr(v.headers, "\r\n\tEXECUTABLE_ATTACHMENT=5 (invoice.pdf.exe)") != NULL);
    CHECK(strstr(v.headers, "X-Spam-Report: score=17.5 add_header=5 reject=15") != NULL);

    /* the stored message: our fields first, the sender's X-Spam fields gone */
    struct strbuf out;
    strbuf_init(&out, 1 << 20);
    CHECK_EQ_INT(filter_message_write(&v, m.data, m.len, buf_write, &out), 0);
    CHECK(strncmp(out.data, "X-Spam: Yes\r\n", 13) == 0);
    CHECK(strstr(out.data, "X-Spam: No") == NULL);
    CHECK(strstr(out.data, "X-Spam-Score: -100") == NULL);
    CHECK(strstr(out.data, "MIME-Version: 1.0\r\n") != NULL);
    CHECK(out.len == strlen(v.headers) + m.len - strlen("X-Spam: No\r\nX-Spam-Score: -100\r\n"));
    strbuf_free(&out);
    filter_verdict_free(&v);

    /* scores and thresholds from the configuration */
    filter_conn_free(c);
    filter_free(f);
    cfg_set(&fc, "spam", "executable_attachment", "0");
    cfg_set(&fc, "spam", "reject_score", "0");
    cfg_set(&fc, "spam", "add_header_score", "20");
    f = make_filter(&fc);
    c = message_conn(f);
    filter_message(c, &m, &v);
    CHECK(!has_rule(&v, "EXECUTABLE_ATTACHMENT"));
    CHECK_EQ_INT(v.action, FILTER_ACCEPT);
    CHECK(!v.spam);
    CHECK(strstr(v.headers, "reject=off") != NULL);
    filter_verdict_free(&v);
    filter_conn_free(c);

    /* authenticated and trusted clients are not scanned */
    c = filter_conn_new(f, "127.0.0.1", true, NULL);
    filter_connect(c, &v);
    filter_message(c, &m, &v);
    CHECK(!v.scanned && v.headers == NULL && v.action == FILTER_ACCEPT);
    CHECK(!filter_message_needed(c));
    filter_conn_free(c);
    c = message_conn(f);
    filter_auth(c, "a@example.org");
    filter_message(c, &m, &v);
    CHECK(!v.scanned && v.headers == NULL);
    filter_conn_free(c);
    filter_free(f);
}

static void test_heuristics(void)
{
    struct filter_config fc;
    filter_config_defaults(&fc);
    struct filter *f = make_filter(&fc);
    static const struct { const char *msg, *rule; bool fires; } cases[] = {
        { "Subject: hi\r\n\r\nbody", "MISSING_FROM", true },
        { "From: a@b.test\r\n\r\nbody", "MISSING_SUBJECT", true },
        { "From: a@b.test\r\nSubject: OK\r\n\r\n", "SUBJECT_ALL_CAPS", false },
        { "From: a@b.test\r\nSubject: FREE MONEY NOW 100%\r\n\r\n", "SUBJECT_ALL_CAPS", true },
        { "From: a@b.test\r\nSubject: FREE MONEY for you\r\n\r\n", "SUBJECT_ALL_CAPS", false },
        { "From: Example.org Support <help@evil.test>\r\n\r\n", "FROM_DISPLAY_SPOOF", true },
        { "From: \"IT desk at mail.example.net\" <x@evil.test>\r\n\r\n", "FROM_DISPLAY_SPOOF", true },
        { "From: \"bob@example.org\" <bob@example.org>\r\n\r\n", "FROM_DISPLAY_SPOOF", false },
        { "From: \"Bob Smith\" <bob@evil.test>\r\n\r\n", "FROM_DISPLAY_SPOOF", false },
        { "From: \"ceo@notexample.org\" <x@evil.test>\r\n\r\n", "FROM_DISPLAY_SPOOF", false },
        { "From: =?UTF-8?Q?ceo=40example=2Eorg?= <x@evil.test>\r\n\r\n", "FROM_DISPLAY_SPOOF", true },
        { "From: a@b.test\r\nContent-Type: text/html\r\n\r\n<b>x</b>", "HTML_ONLY", true },
        { "From: a@b.test\r\nContent-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\n"
          "Content-Type: text/plain\r\n\r\nhi\r\n--x\r\nContent-Type: text/html\r\n\r\n<b>hi</b>\r\n"
          "--x--\r\n", "HTML_ONLY", false },
        { "From: a@b.test\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
          "Content-Type: text/plain\r\n\r\nhi\r\n--x\r\nContent-Type: application/zip; "
          "name=\"a.zip\"\r\n\r\nPK\r\n--x--\r\n", "EXECUTABLE_ATTACHMENT", false },
        { "From: a@b.test\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
          "Content-Type: text/plain\r\n\r\nhi\r\n--x\r\nContent-Type: application/x-msdownload"
          "\r\n\r\nMZ\r\n--x--\r\n", "EXECUTABLE_ATTACHMENT", true },
        { "From: a@b.test\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
          "Content-Type: text/plain\r\n\r\nhi\r\n--x\r\nContent-Disposition: attachment; "
          "filename*=UTF-8''r%C3%A9sum%C3%A9.SCR\r\n\r\nMZ\r\n--x--\r\n", "EXECUTABLE_ATTACHMENT", true },
        { "", "MISSING_DATE", true },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct filter_verdict v;
        char from[256];
        filter_verdict_init(&v);
        filter_score_message(f, cases[i].msg, strlen(cases[i].msg), &v, from, sizeof(from));
        if (has_rule(&v, cases[i].rule) != cases[i].fires)
            fprintf(stderr, "heuristics case %zu: %s\n", i, cases[i].rule);
        CHECK(has_rule(&v, cases[i].rule) == cases[i].fires);
    }
    filter_free(f);
}

static void test_subject_rewrite(void)
{
    struct filter_verdict v;
    filter_verdict_init(&v);
    v.headers = strdup("X-Spam: Yes\r\n");
    v.subject = strdup("*** SPAM *** Hello");
    const char msg[] = "From: a@b.test\r\nSubject: Hello\r\n\tworld\r\nTo: c@d.test\r\n\r\nbody\r\n";
    struct strbuf out;
    strbuf_init(&out, 4096);
    CHECK_EQ_INT(filter_message_write(&v, msg, sizeof(msg) - 1, buf_write, &out), 0);
    CHECK_EQ_STR(out.data, "X-Spam: Yes\r\nFrom: a@b.test\r\nSubject: *** SPAM *** Hello\r\n"
                           "To: c@d.test\r\n\r\nbody\r\n");
    strbuf_free(&out);
    free(v.subject);
    v.subject = strdup("*** SPAM *** Grüße");
    const char nosubj[] = "From: a@b.test\r\n\r\nbody\r\n";
    strbuf_init(&out, 4096);
    CHECK_EQ_INT(filter_message_write(&v, nosubj, sizeof(nosubj) - 1, buf_write, &out), 0);
    CHECK_EQ_STR(out.data, "X-Spam: Yes\r\nFrom: a@b.test\r\n"
                           "Subject: =?UTF-8?B?KioqIFNQQU0gKioqIEdyw7zDn2U=?=\r\n\r\nbody\r\n");
    strbuf_free(&out);
    filter_verdict_free(&v);
}

/* ---- Rspamd ---- */

static void test_rspamd_parse(void)
{
    static const struct { const char *json, *action; double score; } cases[] = {
        { "{\"is_skipped\":false,\"score\":0.5,\"required_score\":15,\"action\":\"no action\","
          "\"symbols\":{}}", "no action", 0.5 },
        { "{\"score\":4.5,\"required_score\":15,\"action\":\"greylist\"}", "greylist", 4.5 },
        { "{\"score\":7.1,\"required_score\":15,\"action\":\"add header\",\"symbols\":"
          "{\"R_SPF_FAIL\":{\"name\":\"R_SPF_FAIL\",\"score\":1.0},\"BAYES_SPAM\":{\"score\":5.1},"
          "\"ZERO\":{\"score\":0}}}", "add header", 7.1 },
        { "{\"score\":9,\"required_score\":15,\"action\":\"rewrite subject\","
          "\"subject\":\"***SPAM*** hi\"}", "rewrite subject", 9 },
        { "{\"score\":12,\"required_score\":15,\"action\":\"soft reject\",\"messages\":"
          "{\"smtp_message\":\"Try again later\"}}", "soft reject", 12 },
        { "{\"score\":20.5,\"required_score\":15,\"action\":\"reject\",\"messages\":"
          "{\"smtp_message\":\"Spam message rejected\\r\\ninjected\"}}", "reject", 20.5 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct filter_rspamd_result r;
        CHECK_EQ_INT(filter_rspamd_parse(cases[i].json, strlen(cases[i].json), &r), 0);
        CHECK_EQ_STR(r.action, cases[i].action);
        CHECK(r.score == cases[i].score);
        if (i == 2) {
            CHECK_EQ_INT(r.n_syms, 2);
            CHECK_EQ_STR(r.syms[0].name, "BAYES_SPAM");
            CHECK(r.syms[1].score == 1.0);
        }
        if (i == 3)
            CHECK_EQ_STR(r.subject, "***SPAM*** hi");
        if (i == 5)
            CHECK_EQ_STR(r.message, "Spam message rejected  injected");
    }
    static const char *const bad[] = { "", "[]", "{}", "{\"action\":5}", "{\"action\":\"x\"",
                                       "{\"error\":\"bad request\"}", "null" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct filter_rspamd_result r;
        CHECK(filter_rspamd_parse(bad[i], strlen(bad[i]), &r) < 0);
    }
}

static void test_http_response(void)
{
    char *body;
    size_t blen;
    char a[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    CHECK_EQ_INT(filter_http_response(a, strlen(a), false, &body, &blen), 200);
    CHECK(blen == 5 && memcmp(body, "hello", 5) == 0);
    CHECK_EQ_INT(filter_http_response(a, strlen(a) - 1, false, &body, &blen), -2);
    CHECK_EQ_INT(filter_http_response(a, strlen(a) - 1, true, &body, &blen), -1);
    CHECK_EQ_INT(filter_http_response(a, 10, false, &body, &blen), -2);
    char b[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
               "A;ext=1\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n";
    CHECK_EQ_INT(filter_http_response(b, strlen(b), false, &body, &blen), 200);
    CHECK(blen == 13 && memcmp(body, "abc0123456789", 13) == 0);
    char c[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n";
    CHECK_EQ_INT(filter_http_response(c, strlen(c), false, &body, &blen), -2);
    char d[] = "HTTP/1.0 503 Busy\r\n\r\nno";
    CHECK_EQ_INT(filter_http_response(d, strlen(d), true, &body, &blen), 503);
    CHECK_EQ_INT(filter_http_response(d, strlen(d), false, &body, &blen), -2);
    char e[] = "SMTP/1.0 200 OK\r\n\r\n";
    CHECK_EQ_INT(filter_http_response(e, strlen(e), true, &body, &blen), -1);
    char g[] = "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n";
    CHECK_EQ_INT(filter_http_response(g, strlen(g), true, &body, &blen), -1);
    char h[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    CHECK_EQ_INT(filter_http_response(h, strlen(h), false, &body, &blen), -1);

    struct filter_url u;
    CHECK_EQ_INT(filter_url_parse("http://127.0.0.1:11333", &u), 0);
    CHECK(strcmp(u.host, "127.0.0.1") == 0 && u.port == 11333 && u.path[0] == '\0');
    CHECK_EQ_INT(filter_url_parse("http://[::1]:11333/rspamd/", &u), 0);
    CHECK(strcmp(u.host, "::1") == 0 && strcmp(u.path, "/rspamd/") == 0);
    CHECK_EQ_INT(filter_url_parse("http://localhost", &u), 0);
    CHECK_EQ_INT(u.port, 80);
    CHECK(filter_url_parse("https://x", &u) < 0);
    CHECK(filter_url_parse("http://:80", &u) < 0);
    CHECK(filter_url_parse("http://x:99999", &u) < 0);
    CHECK(filter_url_parse("http://x y", &u) < 0);
    CHECK(filter_url_parse("http://x/a b", &u) < 0);
}

/* A one-shot HTTP server on loopback: reads one request, remembers it,
 * answers with reply (or nothing, to test the timeout). */
struct fake_http {
    int listen_fd, port;
    const char *reply;
    char request[8192];
    size_t request_len;
    pthread_t thread;
};

static void *fake_http_run(void *arg)
{
    struct fake_http *h = arg;
    int fd = accept(h->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    for (;;) {
        ssize_t n = read(fd, h->request + h->request_len, sizeof(h->request) - 1 - h->request_len);
        if (n <= 0)
            break;
        h->request_len += (size_t)n;
        h->request[h->request_len] = '\0';
        char *end = strstr(h->request, "\r\n\r\n");
        char *cl = strstr(h->request, "Content-Length: ");
        if (end && cl && h->request_len >= (size_t)(end + 4 - h->request) + (size_t)atoi(cl + 16))
            break;
    }
    if (h->reply)
        write_full(fd, h->reply, strlen(h->reply));
    else
        usleep(600 * 1000);
    close(fd);
    return NULL;
}

static void fake_http_start(struct fake_http *h, const char *reply)
{
    memset(h, 0, sizeof(*h));
    h->reply = reply;
    h->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bind(h->listen_fd, (struct sockaddr *)&sa, sizeof(sa));
    socklen_t sl = sizeof(sa);
    getsockname(h->listen_fd, (struct sockaddr *)&sa, &sl);
    h->port = ntohs(sa.sin_port);
    listen(h->listen_fd, 4);
    pthread_create(&h->thread, NULL, fake_http_run, h);
}

static void fake_http_stop(struct fake_http *h)
{
    pthread_join(h->thread, NULL);
    close(h->listen_fd);
}

static void test_rspamd_client(void)
{
    struct fake_http h;
    char url[64];
    const char *rcpts[] = { "bob@example.org", "carol@example.org" };
    struct filter_rspamd_req req = { .ip = "192.0.2.1", .helo = "mail.test", .sender = "a@b.test",
                                     .rcpts = rcpts, .n_rcpts = 2, .queue_id = "Q1",
                                     .data = good_msg, .len = sizeof(good_msg) - 1 };
    struct filter_rspamd_result r;
    char err[200];
    fake_http_start(&h, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n"
                        "f\r\n{\"action\":\"add \r\n10\r\nheader\",\"score\":\r\n3\r\n6.5\r\n1\r\n}\r\n"
                        "0\r\n\r\n");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", h.port);
    CHECK_EQ_INT(filter_rspamd_check(url, 2000, &req, &r, err, sizeof(err)), 0);
    fake_http_stop(&h);
    CHECK_EQ_STR(r.action, "add header");
    CHECK(r.score == 6.5);
    CHECK(strncmp(h.request, "POST /checkv2 HTTP/1.1\r\n", 24) == 0);
    CHECK(strstr(h.request, "\r\nIP: 192.0.2.1\r\n") != NULL);
    CHECK(strstr(h.request, "\r\nRcpt: bob@example.org\r\nRcpt: carol@example.org\r\n") != NULL);
    CHECK(strstr(h.request, "\r\nFrom: a@b.test\r\n") != NULL);
    CHECK(strstr(h.request, "\r\n\r\nFrom: Alice") != NULL);

    /* a reply that never comes: the timeout holds */
    fake_http_start(&h, NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", h.port);
    uint64_t t0 = now_mono_ms();
    CHECK(filter_rspamd_check(url, 200, &req, &r, err, sizeof(err)) < 0);
    CHECK(now_mono_ms() - t0 < 550);
    CHECK(strstr(err, "timeout") != NULL);
    fake_http_stop(&h);

    /* an error status */
    fake_http_start(&h, "HTTP/1.1 500 Internal\r\nContent-Length: 2\r\n\r\n{}");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", h.port);
    CHECK(filter_rspamd_check(url, 2000, &req, &r, err, sizeof(err)) < 0);
    fake_http_stop(&h);
    CHECK(strstr(err, "500") != NULL);

    /* nobody listening */
    int port = h.port;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    CHECK(filter_rspamd_check(url, 2000, &req, &r, err, sizeof(err)) < 0);

    /* through the engine: actions applied; down means the built-in score */
    static const struct { const char *reply; enum filter_action action; bool spam;
                          const char *subject; } acts[] = {
        { "{\"action\":\"no action\",\"score\":1}", FILTER_ACCEPT, false, NULL },
        { "{\"action\":\"add header\",\"score\":7}", FILTER_ACCEPT, true, NULL },
        { "{\"action\":\"rewrite subject\",\"score\":8,\"subject\":\"[SPAM] Lunch\"}", FILTER_ACCEPT,
          true, "[SPAM] Lunch" },
        { "{\"action\":\"soft reject\",\"score\":9}", FILTER_TEMPFAIL, false, NULL },
        { "{\"action\":\"reject\",\"score\":30,\"messages\":{\"smtp_message\":\"Go away\"}}",
          FILTER_REJECT, false, NULL },
        { "{\"action\":\"greylist\",\"score\":5}", FILTER_TEMPFAIL, false, NULL },
        { NULL, FILTER_ACCEPT, false, NULL },
    };
    for (size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++) {
        char reply[512];
        snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
                 acts[i].reply ? strlen(acts[i].reply) : 0, acts[i].reply ? acts[i].reply : "");
        bool down = acts[i].reply == NULL;
        if (!down)
            fake_http_start(&h, reply);
        struct filter_config fc;
        filter_config_defaults(&fc);
        cfg_set(&fc, "greylist", "enabled", "no");
        cfg_set(&fc, "postscreen", "fcrdns", "off");
        snprintf(url, sizeof(url), "http://127.0.0.1:%d", down ? port : h.port);
        cfg_set(&fc, "rspamd", "url", url);
        struct filter *f = make_filter(&fc);
        struct filter_conn *c = message_conn(f);
        struct filter_message m = { good_msg, sizeof(good_msg) - 1, rcpts, 1, NULL, NULL, NULL,
                                    "Q" };
        struct filter_verdict v;
        filter_message(c, &m, &v);
        if (!down)
            fake_http_stop(&h);
        CHECK_EQ_INT(v.action, acts[i].action);
        CHECK(v.spam == acts[i].spam);
        CHECK(v.rspamd_used == !down);
        if (acts[i].subject)
            CHECK(v.subject && strcmp(v.subject, acts[i].subject) == 0);
        if (acts[i].action == FILTER_REJECT)
            CHECK_EQ_STR(v.text, "Go away");
        if (!down)
            CHECK(strstr(v.headers, "\trspamd=") != NULL);
        filter_verdict_free(&v);
        filter_conn_free(c);
        filter_free(f);
    }
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/postel-test-filter-%d", (int)getpid());
    rm_rf(dir);
    const char *err = NULL;
    test_store = store_open(dir, &err);
    if (test_store == NULL) {
        fprintf(stderr, "store_open: %s\n", err ? err : "?");
        return 1;
    }
    RUN(test_cidr);
    RUN(test_entries);
    RUN(test_list_match);
    RUN(test_config);
    RUN(test_codes);
    RUN(test_dnsl_names);
    RUN(test_dnsl_answers);
    RUN(test_greylist_step);
    RUN(test_greylist_keys);
    RUN(test_greylist_engine);
    RUN(test_ratelimit);
    RUN(test_ratelimit_engine);
    RUN(test_auth_failures_and_greet_wait);
    RUN(test_connect_dns);
    RUN(test_helo);
    RUN(test_try_stages);
    RUN(test_lists_engine);
    RUN(test_postscreen_events);
    RUN(test_scoring);
    RUN(test_heuristics);
    RUN(test_subject_rewrite);
    RUN(test_rspamd_parse);
    RUN(test_http_response);
    RUN(test_rspamd_client);
    store_close(test_store);
    rm_rf(dir);
    return unit_report("filter");
}
