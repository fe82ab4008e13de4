/*
 * DNS layer: name and address helpers, answer decoding, MX ordering, and
 * the synchronous and libevent resolvers against a tiny DNS server run on
 * a thread here (UDP on 127.0.0.1, fixed answers, one name never answered).
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/util.h"
#include "dns/dns.h"
#include "dns/dns_int.h"
#include "unit.h"

/* ---- helpers without I/O ---- */

static void test_names(void)
{
    char buf[1100];
    CHECK(dns_name_valid("example.com"));
    CHECK(dns_name_valid("example.com."));
    CHECK(dns_name_valid(""));
    CHECK(dns_name_valid("."));
    CHECK(dns_name_valid("foo:bar/baz.example.com"));
    CHECK(!dns_name_valid("a..b"));
    CHECK(!dns_name_valid(".a"));
    CHECK(!dns_name_valid("a.."));
    char label[80];
    memset(label, 'x', 63);
    label[63] = '\0';
    snprintf(buf, sizeof(buf), "%s.com", label);
    CHECK(dns_name_valid(buf));
    snprintf(buf, sizeof(buf), "%sx.com", label);
    CHECK(!dns_name_valid(buf));
    /* 253 octets are fine, 254 are not. */
    memset(buf, 0, sizeof(buf));
    for (int i = 0; i < 126; i++)
        strcat(buf, "a.");
    strcat(buf, "a");
    CHECK_EQ_INT(strlen(buf), 253);
    CHECK(dns_name_valid(buf));
    strcat(buf, "a");
    CHECK(!dns_name_valid(buf));

    CHECK_EQ_INT(dns_name_escape("Example.COM", buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "Example.COM.");
    CHECK_EQ_INT(dns_name_escape("a b%c\\d:e.x_y-z.", buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "a\\032b\\037c\\092d\\058e.x_y-z.");
    CHECK_EQ_INT(dns_name_escape("", buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, ".");
    CHECK_EQ_INT(dns_name_escape("a..b", buf, sizeof(buf)), -1);
    CHECK_EQ_INT(dns_name_escape("abc", buf, 3), -1);

    static const unsigned char wire[] = { 3, 'm', 'x', '1', 7, 'E', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0xff };
    size_t off = 0;
    CHECK_EQ_INT(dns_name_from_wire(wire, sizeof(wire), &off, buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "mx1.Example");
    CHECK_EQ_INT(off, 13);
    off = 0;
    CHECK_EQ_INT(dns_name_from_wire(wire, 5, &off, buf, sizeof(buf)), -1);          /* truncated */
    static const unsigned char dotted[] = { 3, 'a', '.', 'b', 0 };
    off = 0;
    CHECK_EQ_INT(dns_name_from_wire(dotted, sizeof(dotted), &off, buf, sizeof(buf)), -1);
    static const unsigned char root[] = { 0 };
    off = 0;
    CHECK_EQ_INT(dns_name_from_wire(root, 1, &off, buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "");
    static const unsigned char ptr[] = { 0xc0, 0x0c };
    off = 0;
    CHECK_EQ_INT(dns_name_from_wire(ptr, 2, &off, buf, sizeof(buf)), -1);
}

static void test_addrs(void)
{
    struct dns_addr a;
    char buf[80];
    CHECK_EQ_INT(dns_addr_parse("192.0.2.3", &a), 0);
    CHECK_EQ_INT(a.family, AF_INET);
    CHECK_EQ_INT(dns_reverse_name(&a, buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "3.2.0.192.in-addr.arpa");
    CHECK_EQ_INT(dns_addr_parse("2001:DB8::CB01", &a), 0);
    CHECK_EQ_INT(a.family, AF_INET6);
    CHECK_EQ_STR(dns_addr_format(&a, buf, sizeof(buf)), "2001:db8::cb01");
    CHECK_EQ_INT(dns_reverse_name(&a, buf, sizeof(buf)), 0);
    CHECK_EQ_STR(buf, "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
    CHECK_EQ_INT(dns_reverse_name(&a, buf, 40), -1);
    CHECK_EQ_INT(dns_addr_parse("1.2.3", &a), -1);
    CHECK_EQ_INT(dns_addr_parse("", &a), -1);
}

static void test_rdata(void)
{
    struct dns_result res;
    static const unsigned char txt1[] = { 7, 'v', '=', 's', 'p', 'f', '1', ' ', 4, '-', 'a', 'l', 'l' };
    static const unsigned char txt2[] = { 0 };
    static const unsigned char txt3[] = { 3, 'a', 0, 'b' };
    static const unsigned char bad[] = { 9, 'x' };
    const unsigned char *data[] = { txt1, txt2, txt3, bad, NULL };
    int len[] = { sizeof(txt1), sizeof(txt2), sizeof(txt3), sizeof(bad) };
    memset(&res, 0, sizeof(res));
    CHECK_EQ_INT(dns_result_from_rdata(&res, DNS_T_TXT, 0, false, data, len), DNS_OK);
    CHECK_EQ_INT(res.n, 3);   /* the malformed one is left out */
    CHECK_EQ_STR(res.rr[0].text, "v=spf1 -all");
    CHECK_EQ_INT(res.rr[0].text_len, 11);
    CHECK_EQ_INT(res.rr[1].text_len, 0);
    CHECK_EQ_INT(res.rr[2].text_len, 3);
    CHECK(memcmp(res.rr[2].text, "a\0b", 3) == 0);
    dns_result_free(&res);
    CHECK_EQ_INT(res.n, 0);

    static const unsigned char mx[] = { 0, 10, 2, 'm', 'x', 4, 't', 'e', 's', 't', 0 };
    static const unsigned char nullmx[] = { 0, 0, 0 };
    const unsigned char *mxd[] = { mx, nullmx, NULL };
    int mxl[] = { sizeof(mx), sizeof(nullmx) };
    memset(&res, 0, sizeof(res));
    CHECK_EQ_INT(dns_result_from_rdata(&res, DNS_T_MX, 0, false, mxd, mxl), DNS_OK);
    CHECK_EQ_INT(res.n, 2);
    CHECK_EQ_INT(res.rr[0].pref, 10);
    CHECK_EQ_STR(res.rr[0].name, "mx.test");
    CHECK_EQ_STR(res.rr[1].name, "");
    dns_result_free(&res);

    static const unsigned char a[] = { 192, 0, 2, 1 };
    const unsigned char *ad[] = { a, bad, NULL };
    int al[] = { 4, 2 };
    memset(&res, 0, sizeof(res));
    CHECK_EQ_INT(dns_result_from_rdata(&res, DNS_T_A, 0, false, ad, al), DNS_OK);
    CHECK_EQ_INT(res.n, 1);
    CHECK_EQ_INT(res.rr[0].addr.family, AF_INET);
    dns_result_free(&res);

    const unsigned char *none[] = { NULL };
    memset(&res, 0, sizeof(res));
    CHECK_EQ_INT(dns_result_from_rdata(&res, DNS_T_A, 0, false, none, NULL), DNS_NODATA);
    CHECK_EQ_INT(dns_result_from_rdata(&res, DNS_T_A, 3, true, none, NULL), DNS_NXDOMAIN);
    CHECK_EQ_INT(dns_result_from_rdata(&res, DNS_T_A, 2, false, none, NULL), DNS_TEMPFAIL);
    CHECK_EQ_STR(res.why, "SERVFAIL");
    CHECK_EQ_INT(dns_result_from_rdata(&res, DNS_T_A, 5, false, none, NULL), DNS_TEMPFAIL);
    const unsigned char *only_bad[] = { bad, NULL };
    CHECK_EQ_INT(dns_result_from_rdata(&res, DNS_T_A, 0, false, only_bad, al + 1), DNS_NODATA);
}

static void test_mx_sort(void)
{
    int first_b = 0;
    for (int run = 0; run < 200; run++) {
        struct dns_mx mx[5] = { { 20, "c" }, { 10, "a" }, { 30, "d" }, { 10, "b" }, { 5, "z" } };
        dns_mx_sort(mx, 5);
        CHECK_EQ_STR(mx[0].host, "z");
        CHECK(strcmp(mx[1].host, "a") == 0 || strcmp(mx[1].host, "b") == 0);
        CHECK(strcmp(mx[2].host, "a") == 0 || strcmp(mx[2].host, "b") == 0);
        CHECK(strcmp(mx[1].host, mx[2].host) != 0);
        CHECK_EQ_STR(mx[3].host, "c");
        CHECK_EQ_STR(mx[4].host, "d");
        first_b += strcmp(mx[1].host, "b") == 0;
    }
    /* Equal preferences come in both orders (p of failing: 2^-199). */
    CHECK(first_b > 0 && first_b < 200);
    dns_mx_sort(NULL, 0);
}

/* ---- the answer cache ---- */

static void test_cache(void)
{
    struct dns_cache *c = dns_cache_new(3);
    CHECK(c != NULL);
    if (c == NULL)
        return;
    struct dns_result res;
    static const unsigned char txt1[] = "\x0bv=spf1 -all";
    static const unsigned char txt2[] = "\x05hello";
    const unsigned char *data[] = { txt1, txt2, NULL };
    const int len[] = { 12, 6 };
    struct dns_cache_answer a = { .rcode = 0, .ttl = 2, .canon = "txt.test.", .data = data, .len = len };
    CHECK(!dns_cache_get(c, "txt.test", DNS_T_TXT, 1000, &res));
    dns_cache_put(c, "Txt.Test", DNS_T_TXT, 1000, &a);
    /* a hit decodes exactly what was stored, whatever the case asked */
    CHECK(dns_cache_get(c, "TXT.test", DNS_T_TXT, 1500, &res));
    CHECK_EQ_INT(res.status, DNS_OK);
    CHECK_EQ_INT(res.n, 2);
    CHECK_EQ_STR(res.n == 2 ? res.rr[0].text : "", "v=spf1 -all");
    CHECK_EQ_STR(res.n == 2 ? res.rr[1].text : "", "hello");
    CHECK_EQ_STR(res.canon, "txt.test.");
    CHECK_EQ_INT(res.ttl, 2);                 /* 1.5 s left, rounded up */
    dns_result_free(&res);
    CHECK(!dns_cache_get(c, "txt.test", DNS_T_A, 1500, &res));   /* other type */
    CHECK(!dns_cache_get(c, "txt.test", DNS_T_TXT, 3000, &res)); /* expired */
    CHECK(!dns_cache_get(c, "txt.test", DNS_T_TXT, 1500, &res)); /* and dropped */

    /* failures and TTL 0 are never kept; NXDOMAIN and NODATA are */
    struct dns_cache_answer fail = { .rcode = 2, .ttl = 60 };
    dns_cache_put(c, "servfail.test", DNS_T_A, 1000, &fail);
    CHECK(!dns_cache_get(c, "servfail.test", DNS_T_A, 1000, &res));
    struct dns_cache_answer zero = a;
    zero.ttl = 0;
    dns_cache_put(c, "zero.test", DNS_T_TXT, 1000, &zero);
    CHECK(!dns_cache_get(c, "zero.test", DNS_T_TXT, 1000, &res));
    struct dns_cache_answer nx = { .rcode = 3, .nxdomain = true, .ttl = 30 };
    dns_cache_put(c, "nx.test", DNS_T_A, 1000, &nx);
    CHECK(dns_cache_get(c, "nx.test", DNS_T_A, 1000, &res));
    CHECK_EQ_INT(res.status, DNS_NXDOMAIN);
    dns_result_free(&res);
    const unsigned char *none[] = { NULL };
    struct dns_cache_answer nodata = { .rcode = 0, .ttl = 30, .data = none, .len = len };
    dns_cache_put(c, "none.test", DNS_T_A, 1000, &nodata);
    CHECK(dns_cache_get(c, "none.test", DNS_T_A, 1000, &res));
    CHECK_EQ_INT(res.status, DNS_NODATA);
    dns_result_free(&res);

    /* TTLs are capped */
    struct dns_cache_answer longer = a;
    longer.ttl = 86400;
    dns_cache_put(c, "long.test", DNS_T_TXT, 1000, &longer);
    CHECK(dns_cache_get(c, "long.test", DNS_T_TXT, 1000, &res));
    CHECK_EQ_INT(res.ttl, DNS_CACHE_TTL_MAX);
    dns_result_free(&res);
    /* bounded: three entries were live, the oldest (nx.test) went first */
    dns_cache_put(c, "fourth.test", DNS_T_TXT, 1000, &a);
    uint64_t hits, misses;
    size_t entries;
    dns_cache_stats(c, &hits, &misses, &entries);
    CHECK_EQ_INT(entries, 3);
    CHECK(!dns_cache_get(c, "nx.test", DNS_T_A, 1000, &res));
    CHECK(dns_cache_get(c, "fourth.test", DNS_T_TXT, 1000, &res));
    dns_result_free(&res);
    /* a second answer for the same question replaces the first */
    dns_cache_put(c, "fourth.test", DNS_T_TXT, 1000, &nx);
    CHECK(dns_cache_get(c, "fourth.test", DNS_T_TXT, 1000, &res));
    CHECK_EQ_INT(res.status, DNS_NXDOMAIN);
    dns_cache_stats(c, &hits, &misses, &entries);
    CHECK_EQ_INT(entries, 3);
    dns_cache_free(c);
}

/* ---- a tiny DNS server ---- */

static int srv_fd, srv_port, stop_pipe[2];
static pthread_t srv_thread;
static int slow_queries;          /* atomic: written by the server thread */

struct answer {
    uint16_t type;
    unsigned char rdata[64];
    size_t len;
};

static size_t put_name(unsigned char *out, const char *name)
{
    size_t o = 0;
    while (*name) {
        size_t n = strcspn(name, ".");
        out[o++] = (unsigned char)n;
        memcpy(out + o, name, n);
        o += n;
        name += n + (name[n] == '.');
    }
    out[o++] = 0;
    return o;
}

static void add_a(struct answer *a, size_t *n, const char *ip)
{
    a[*n].type = DNS_T_A;
    inet_pton(AF_INET, ip, a[*n].rdata);
    a[(*n)++].len = 4;
}

static void add_name(struct answer *a, size_t *n, uint16_t type, int pref, const char *name)
{
    size_t o = 0;
    a[*n].type = type;
    if (type == DNS_T_MX) {
        a[*n].rdata[0] = (unsigned char)(pref >> 8);
        a[*n].rdata[1] = (unsigned char)pref;
        o = 2;
    }
    a[*n].len = o + put_name(a[*n].rdata + o, name);
    (*n)++;
}

static void add_txt(struct answer *a, size_t *n, const char *s1, const char *s2)
{
    size_t o = 0;
    for (const char *s = s1; s; s = s == s1 ? s2 : NULL) {
        a[*n].rdata[o++] = (unsigned char)strlen(s);
        memcpy(a[*n].rdata + o, s, strlen(s));
        o += strlen(s);
    }
    a[*n].type = DNS_T_TXT;
    a[(*n)++].len = o;
}

/* Fills the answers for (name, type); returns the RCODE, or -1: no reply.
 * *cname is set when name is an alias (answers are then for the target). */
static int zone_lookup(const char *name, uint16_t type, struct answer *a, size_t *n, const char **cname)
{
    *n = 0;
    *cname = NULL;
    if (strcmp(name, "slow.test") == 0) {
        __atomic_add_fetch(&slow_queries, 1, __ATOMIC_RELAXED);
        return -1;
    }
    if (strcmp(name, "servfail.test") == 0)
        return 2;
    if (strcmp(name, "alias.test") == 0) {
        *cname = "a.test";
        name = "a.test";
    }
    if (strcmp(name, "a.test") == 0) {
        if (type == DNS_T_A)
            add_a(a, n, "192.0.2.1");
        if (type == DNS_T_AAAA) {
            a[0].type = DNS_T_AAAA;
            inet_pton(AF_INET6, "2001:db8::1", a[0].rdata);
            a[0].len = 16;
            *n = 1;
        }
        return 0;
    }
    if (strcmp(name, "mx.test") == 0) {
        if (type == DNS_T_MX) {
            add_name(a, n, DNS_T_MX, 20, "mxb.test");
            add_name(a, n, DNS_T_MX, 10, "mxa1.test");
            add_name(a, n, DNS_T_MX, 10, "mxa2.test");
            add_name(a, n, DNS_T_MX, 10, "mxa3.test");
        }
        return 0;
    }
    if (strcmp(name, "mxa1.test") == 0 || strcmp(name, "mxa2.test") == 0 ||
        strcmp(name, "mxa3.test") == 0 || strcmp(name, "mxb.test") == 0) {
        if (type == DNS_T_A)
            add_a(a, n, "192.0.2.10");
        return 0;
    }
    if (strcmp(name, "null.test") == 0) {
        if (type == DNS_T_MX)
            add_name(a, n, DNS_T_MX, 0, "");
        return 0;
    }
    if (strcmp(name, "implicit.test") == 0) {
        if (type == DNS_T_A)
            add_a(a, n, "192.0.2.7");
        return 0;
    }
    if (strcmp(name, "txt.test") == 0) {
        if (type == DNS_T_TXT) {
            add_txt(a, n, "v=spf1 ", "-all");
            add_txt(a, n, "hello", NULL);
        }
        return 0;
    }
    if (strcmp(name, "1.2.0.192.in-addr.arpa") == 0) {
        if (type == DNS_T_PTR)
            add_name(a, n, DNS_T_PTR, 0, "a.test");
        return 0;
    }
    if (strcmp(name, "none.test") == 0)
        return 0;
    return 3;
}

static size_t put_rr(unsigned char *out, const unsigned char *owner, size_t owner_len, uint16_t type,
                     const unsigned char *rdata, size_t len)
{
    size_t o = owner_len;
    memcpy(out, owner, owner_len);
    unsigned char fixed[10] = { (unsigned char)(type >> 8), (unsigned char)type, 0, 1, 0, 0, 0, 60,
                                (unsigned char)(len >> 8), (unsigned char)len };
    memcpy(out + o, fixed, 10);
    memcpy(out + o + 10, rdata, len);
    return o + 10 + len;
}

/* Builds the reply to query q (qlen octets) in out; 0 means: stay silent. */
static size_t answer_query(const unsigned char *q, size_t qlen, unsigned char *out)
{
    char name[256];
    size_t p = 12, o = 0;
    if (qlen < 17)
        return 0;
    while (p < qlen && q[p] != 0) {
        size_t l = q[p];
        if (p + 1 + l > qlen || o + l + 1 >= sizeof(name))
            return 0;
        if (o)
            name[o++] = '.';
        for (size_t i = 0; i < l; i++)
            name[o++] = (char)(q[p + 1 + i] | 0x20);
        p += 1 + l;
    }
    name[o] = '\0';
    if (p + 5 > qlen)
        return 0;
    uint16_t type = (uint16_t)(q[p + 1] << 8 | q[p + 2]);
    size_t qend = p + 5;
    struct answer a[8];
    size_t n;
    const char *cname;
    int rcode = zone_lookup(name, type, a, &n, &cname);
    if (rcode < 0)
        return 0;
    memcpy(out, q, qend);
    out[2] = (unsigned char)(0x84 | (q[2] & 0x01));      /* QR AA, RD copied */
    out[3] = (unsigned char)(0x80 | rcode);               /* RA */
    out[6] = 0;
    out[7] = (unsigned char)(n + (cname != NULL));
    memset(out + 8, 0, 4);
    size_t w = qend;
    static const unsigned char qptr[2] = { 0xc0, 0x0c };
    unsigned char target[256];
    size_t tlen = 0;
    if (cname) {
        tlen = put_name(target, cname);
        w += put_rr(out + w, qptr, 2, DNS_T_CNAME, target, tlen);
    }
    for (size_t i = 0; i < n; i++)
        w += cname ? put_rr(out + w, target, tlen, a[i].type, a[i].rdata, a[i].len)
                   : put_rr(out + w, qptr, 2, a[i].type, a[i].rdata, a[i].len);
    return w;
}

static void *server_main(void *arg)
{
    (void)arg;
    struct pollfd p[2] = { { .fd = srv_fd, .events = POLLIN }, { .fd = stop_pipe[0], .events = POLLIN } };
    for (;;) {
        if (poll(p, 2, -1) < 0)
            continue;
        if (p[1].revents)
            return NULL;
        unsigned char q[1500], out[1500];
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        ssize_t r = recvfrom(srv_fd, q, sizeof(q), 0, (struct sockaddr *)&peer, &plen);
        if (r <= 0)
            continue;
        size_t w = answer_query(q, (size_t)r, out);
        if (w)
            sendto(srv_fd, out, w, 0, (struct sockaddr *)&peer, plen);
    }
}

static void server_start(void)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sin);
    srv_fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (srv_fd < 0 || bind(srv_fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(srv_fd, (struct sockaddr *)&sin, &len) < 0 || pipe(stop_pipe) < 0)
        abort();
    srv_port = ntohs(sin.sin_port);
    pthread_create(&srv_thread, NULL, server_main, NULL);
}

static void server_stop(void)
{
    if (write(stop_pipe[1], "x", 1) != 1)
        abort();
    pthread_join(srv_thread, NULL);
    close(srv_fd);
    close(stop_pipe[0]);
    close(stop_pipe[1]);
}

static void options(struct dns_options *opt, unsigned timeout_ms)
{
    memset(opt, 0, sizeof(*opt));
    snprintf(opt->nameserver, sizeof(opt->nameserver), "127.0.0.1:%d", srv_port);
    opt->timeout_ms = timeout_ms;
}

/* ---- the synchronous resolver ---- */

static void test_sync(struct dns_resolver *r)
{
    struct dns_result res;
    char buf[64];
    CHECK_EQ_INT(dns_query(r, "a.test", DNS_T_A, &res), DNS_OK);
    CHECK_EQ_INT(res.n, 1);
    CHECK_EQ_STR(dns_addr_format(&res.rr[0].addr, buf, sizeof(buf)), "192.0.2.1");
    dns_result_free(&res);
    CHECK_EQ_INT(dns_query(r, "A.Test.", DNS_T_AAAA, &res), DNS_OK);
    CHECK_EQ_STR(dns_addr_format(&res.rr[0].addr, buf, sizeof(buf)), "2001:db8::1");
    dns_result_free(&res);
    CHECK_EQ_INT(dns_query(r, "alias.test", DNS_T_A, &res), DNS_OK);
    CHECK_EQ_STR(res.canon, "a.test.");
    dns_result_free(&res);
    CHECK_EQ_INT(dns_query(r, "txt.test", DNS_T_TXT, &res), DNS_OK);
    CHECK_EQ_INT(res.n, 2);
    CHECK_EQ_STR(res.rr[0].text, "v=spf1 -all");
    CHECK_EQ_STR(res.rr[1].text, "hello");
    dns_result_free(&res);
    /* asked again: answered from the resolver's cache, the same records */
    uint64_t hits0, hits1, misses;
    dns_resolver_cache_stats(r, &hits0, &misses);
    CHECK_EQ_INT(dns_query(r, "TXT.test", DNS_T_TXT, &res), DNS_OK);
    dns_resolver_cache_stats(r, &hits1, &misses);
    CHECK_EQ_INT(hits1, hits0 + 1);
    CHECK_EQ_INT(res.n, 2);
    CHECK_EQ_STR(res.n == 2 ? res.rr[1].text : "", "hello");
    CHECK(res.ttl > 0 && res.ttl <= 60);
    dns_result_free(&res);
    /* the cache-only face: answers what is cached, never asks */
    CHECK(dns_query_cached(r, "txt.test", DNS_T_TXT, &res));
    CHECK_EQ_INT(res.status, DNS_OK);
    dns_result_free(&res);
    CHECK(!dns_query_cached(r, "never-asked.test", DNS_T_TXT, &res));
    CHECK(dns_query_cached(r, "a..test", DNS_T_A, &res));
    CHECK_EQ_INT(res.status, DNS_BADNAME);
    CHECK_EQ_INT(dns_query(r, "nx.test", DNS_T_A, &res), DNS_NXDOMAIN);
    CHECK_EQ_INT(res.rcode, 3);
    CHECK_EQ_INT(dns_query(r, "none.test", DNS_T_A, &res), DNS_NODATA);
    CHECK_EQ_INT(dns_query(r, "servfail.test", DNS_T_A, &res), DNS_TEMPFAIL);
    CHECK_EQ_INT(dns_query(r, "a..test", DNS_T_A, &res), DNS_BADNAME);

    uint64_t t0 = now_mono_ms();
    CHECK_EQ_INT(dns_query(r, "slow.test", DNS_T_A, &res), DNS_TEMPFAIL);
    uint64_t took = now_mono_ms() - t0;
    CHECK(strstr(res.why, "timeout") != NULL);
    CHECK(took >= 250 && took < 3000);
    CHECK(__atomic_load_n(&slow_queries, __ATOMIC_RELAXED) > 0);
    /* Still answering after a timeout. */
    CHECK_EQ_INT(dns_query(r, "a.test", DNS_T_A, &res), DNS_OK);
    dns_result_free(&res);

    struct dns_addr addr;
    dns_addr_parse("192.0.2.1", &addr);
    CHECK_EQ_INT(dns_lookup_ptr(r, &addr, &res), DNS_OK);
    CHECK_EQ_STR(res.n ? res.rr[0].name : "", "a.test");
    dns_result_free(&res);

    struct dns_addr *addrs;
    size_t n;
    char why[160];
    CHECK_EQ_INT(dns_lookup_addrs(r, "a.test", AF_UNSPEC, &addrs, &n, why, sizeof(why)), DNS_OK);
    CHECK_EQ_INT(n, 2);
    free(addrs);
    CHECK_EQ_INT(dns_lookup_addrs(r, "nx.test", AF_UNSPEC, &addrs, &n, why, sizeof(why)), DNS_NXDOMAIN);
    CHECK_EQ_INT(n, 0);
    free(addrs);
}

static void test_sync_mx(struct dns_resolver *r)
{
    struct dns_mx_list l;
    int first_a1 = 0;
    for (int i = 0; i < 40; i++) {
        CHECK_EQ_INT(dns_lookup_mx(r, "mx.test", &l), DNS_OK);
        CHECK_EQ_INT(l.n, 4);
        CHECK_EQ_INT(l.mx[0].pref, 10);
        CHECK_EQ_INT(l.mx[2].pref, 10);
        CHECK_EQ_INT(l.mx[3].pref, 20);
        CHECK_EQ_STR(l.mx[3].host, "mxb.test");
        first_a1 += strcmp(l.mx[0].host, "mxa1.test") == 0;
        dns_mx_list_free(&l);
    }
    CHECK(first_a1 > 0 && first_a1 < 40);
    CHECK_EQ_INT(dns_lookup_mx(r, "null.test", &l), DNS_OK);
    CHECK(l.null_mx);
    CHECK_EQ_INT(l.n, 0);
    dns_mx_list_free(&l);
    CHECK_EQ_INT(dns_mail_hosts(r, "null.test", &l), DNS_OK);
    CHECK(l.null_mx);
    dns_mx_list_free(&l);
    CHECK_EQ_INT(dns_mail_hosts(r, "implicit.test.", &l), DNS_OK);
    CHECK(l.implicit);
    CHECK_EQ_INT(l.n, 1);
    CHECK_EQ_STR(l.mx[0].host, "implicit.test");
    dns_mx_list_free(&l);
    CHECK_EQ_INT(dns_mail_hosts(r, "none.test", &l), DNS_NODATA);
    dns_mx_list_free(&l);
    CHECK_EQ_INT(dns_mail_hosts(r, "nx.test", &l), DNS_NXDOMAIN);
    dns_mx_list_free(&l);
    CHECK_EQ_INT(dns_mail_hosts(r, "servfail.test", &l), DNS_TEMPFAIL);
    dns_mx_list_free(&l);
}

static struct dns_resolver *shared;
static int thread_ok[8];

static void *hammer(void *arg)
{
    int idx = (int)(intptr_t)arg;
    for (int i = 0; i < 100; i++) {
        struct dns_result res;
        const char *name = i % 3 == 0 ? "a.test" : i % 3 == 1 ? "mx.test" : "nx.test";
        uint16_t type = i % 3 == 1 ? DNS_T_MX : DNS_T_A;
        enum dns_status want = i % 3 == 2 ? DNS_NXDOMAIN : DNS_OK;
        if (dns_query(shared, name, type, &res) == want)
            thread_ok[idx]++;
        dns_result_free(&res);
    }
    return NULL;
}

static void test_threads(struct dns_resolver *r)
{
    pthread_t t[8];
    shared = r;
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, hammer, (void *)(intptr_t)i);
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_INT(thread_ok[i], 100);
    }
}

/* ---- the libevent resolver ---- */

struct async_case {
    const char *name;
    uint16_t type;
    enum dns_status want;
    int calls;
    enum dns_status got;
    char first[64];
};

static int async_pending;
static struct event_base *async_base;

static void on_async(void *arg, const struct dns_result *res)
{
    struct async_case *c = arg;
    c->calls++;
    c->got = res->status;
    if (res->n && res->rr[0].addr.family)
        dns_addr_format(&res->rr[0].addr, c->first, sizeof(c->first));
    if (--async_pending == 0)
        event_base_loopbreak(async_base);
}

static void on_never(void *arg, const struct dns_result *res)
{
    (void)res;
    (*(int *)arg)++;
}

static void test_async(void)
{
    struct dns_options opt;
    const char *err;
    options(&opt, 400);
    async_base = event_base_new();
    struct dns_async *a = dns_async_new(async_base, &opt, &err);
    CHECK(a != NULL);
    if (a == NULL)
        return;
    struct async_case cases[] = {
        { "a.test", DNS_T_A, DNS_OK, 0, 0, "" },
        { "nx.test", DNS_T_A, DNS_NXDOMAIN, 0, 0, "" },
        { "slow.test", DNS_T_A, DNS_TEMPFAIL, 0, 0, "" },
        { "a..test", DNS_T_A, DNS_BADNAME, 0, 0, "" },
        { "a.test", DNS_T_AAAA, DNS_OK, 0, 0, "" },
        { "servfail.test", DNS_T_MX, DNS_TEMPFAIL, 0, 0, "" },
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    async_pending = (int)n;
    for (size_t i = 0; i < n; i++) {
        CHECK(dns_async_query(a, cases[i].name, cases[i].type, on_async, &cases[i]) != NULL);
        CHECK_EQ_INT(cases[i].calls, 0);      /* never called from inside */
    }
    int never = 0;
    struct dns_async_query *q = dns_async_query(a, "mx.test", DNS_T_MX, on_never, &never);
    dns_async_cancel(q);
    struct timeval guard = { 5, 0 };
    event_base_loopexit(async_base, &guard);
    uint64_t t0 = now_mono_ms();
    event_base_dispatch(async_base);
    CHECK(now_mono_ms() - t0 < 3000);
    CHECK_EQ_INT(async_pending, 0);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(cases[i].calls, 1);
        if (cases[i].got != cases[i].want)
            fprintf(stderr, "  async %s: %s\n", cases[i].name, dns_status_name(cases[i].got));
        CHECK_EQ_INT(cases[i].got, cases[i].want);
    }
    CHECK_EQ_STR(cases[0].first, "192.0.2.1");
    CHECK_EQ_STR(cases[4].first, "2001:db8::1");
    CHECK_EQ_INT(never, 0);

    /* Freed with queries in flight: no callback, no leak. */
    dns_async_query(a, "slow.test", DNS_T_TXT, on_never, &never);
    dns_async_query(a, "a.test", DNS_T_TXT, on_never, &never);
    dns_async_free(a);
    CHECK_EQ_INT(never, 0);
    event_base_free(async_base);
}

int main(void)
{
    RUN(test_names);
    RUN(test_addrs);
    RUN(test_rdata);
    RUN(test_mx_sort);
    RUN(test_cache);
    server_start();
    struct dns_options opt;
    const char *err = NULL;
    options(&opt, 400);
    struct dns_resolver *r = dns_resolver_new(&opt, &err);
    CHECK(r != NULL);
    if (r) {
        test_sync(r);
        test_sync_mx(r);
        test_threads(r);
        dns_resolver_free(r);
    }
    test_async();
    strcpy(opt.nameserver, "not an address");
    CHECK(dns_resolver_new(&opt, &err) == NULL);
    CHECK(err != NULL);
    server_stop();
    return unit_report("dns");
}
