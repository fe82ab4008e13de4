/*
 * Allow and block lists: IP addresses and CIDR ranges (IPv4 and IPv6),
 * sender and recipient addresses, local parts and domains; parsing into a
 * canonical form and matching.  Lists are small (hundreds, a few thousand
 * entries): a linear scan with a byte compare per entry costs microseconds
 * and keeps the snapshot trivially immutable.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"
#include "filter/filter_int.h"
#include "store/store_filter.h"

static int fail(char *err, size_t errsize, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errsize, const char *fmt, ...)
{
    if (err != NULL && errsize > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsize, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- IP addresses ---- */

static const uint8_t v4_mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int filter_ip_parse(const char *text, struct filter_ip *ip)
{
    memset(ip, 0, sizeof(*ip));
    if (text == NULL || strlen(text) >= INET6_ADDRSTRLEN)
        return -1;
    if (inet_pton(AF_INET, text, ip->addr) == 1) {
        ip->family = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, text, ip->addr) != 1)
        return -1;
    if (memcmp(ip->addr, v4_mapped_prefix, 12) == 0) {
        memmove(ip->addr, ip->addr + 12, 4);
        memset(ip->addr + 4, 0, 12);
        ip->family = 4;
    } else {
        ip->family = 6;
    }
    return 0;
}

const char *filter_ip_format(const struct filter_ip *ip, char *buf, size_t size)
{
    if (inet_ntop(ip->family == 4 ? AF_INET : AF_INET6, ip->addr, buf, (socklen_t)size) == NULL)
        str_copy(buf, "?", size);
    return buf;
}

bool filter_ip_is_loopback(const struct filter_ip *ip)
{
    static const uint8_t v6_loopback[16] = { [15] = 1 };
    if (ip->family == 4)
        return ip->addr[0] == 127;
    return memcmp(ip->addr, v6_loopback, 16) == 0;
}

/* Are the bits of addr after prefix all zero? */
static bool host_bits_zero(const uint8_t *addr, int bytes, int prefix)
{
    for (int i = 0; i < bytes; i++) {
        int bits = prefix - i * 8;
        uint8_t mask = bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
        if (addr[i] & (uint8_t)~mask)
            return false;
    }
    return true;
}

static void apply_prefix(uint8_t *addr, int bytes, int prefix)
{
    for (int i = 0; i < bytes; i++) {
        int bits = prefix - i * 8;
        uint8_t mask = bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
        addr[i] &= mask;
    }
}

int filter_cidr_parse(const char *text, struct filter_cidr *c, char *err, size_t errsize)
{
    char buf[INET6_ADDRSTRLEN + 8];
    memset(c, 0, sizeof(*c));
    if (str_copy(buf, text, sizeof(buf)) >= sizeof(buf))
        return fail(err, errsize, "bad address '%s'", text);
    char *slash = strchr(buf, '/');
    long prefix = -1;
    if (slash != NULL) {
        *slash = '\0';
        char *end;
        if (!isdigit((unsigned char)slash[1]))
            return fail(err, errsize, "bad prefix length in '%s'", text);
        prefix = strtol(slash + 1, &end, 10);
        if (*end != '\0' || slash[1 + strspn(slash + 1, "0123456789")] != '\0' ||
            strlen(slash + 1) > 3)
            return fail(err, errsize, "bad prefix length in '%s'", text);
    }
    uint8_t raw[16];
    bool mapped = false;
    if (inet_pton(AF_INET, buf, raw) == 1) {
        c->family = 4;
        memcpy(c->addr, raw, 4);
    } else if (inet_pton(AF_INET6, buf, raw) == 1) {
        c->family = 6;
        memcpy(c->addr, raw, 16);
        mapped = memcmp(raw, v4_mapped_prefix, 12) == 0;
    } else {
        return fail(err, errsize, "bad IP address '%s'", buf);
    }
    int max = c->family == 4 ? 32 : 128;
    if (prefix < 0)
        prefix = max;
    if (prefix > max)
        return fail(err, errsize, "prefix length /%ld too long for '%s' (max /%d)", prefix, buf,
                    max);
    int bytes = c->family == 4 ? 4 : 16;
    if (!host_bits_zero(c->addr, bytes, (int)prefix)) {
        uint8_t net[16];
        char nb[INET6_ADDRSTRLEN];
        memcpy(net, c->addr, 16);
        apply_prefix(net, bytes, (int)prefix);
        inet_ntop(c->family == 4 ? AF_INET : AF_INET6, net, nb, sizeof(nb));
        return fail(err, errsize, "'%s' has host bits set (did you mean %s/%ld?)", text, nb,
                    prefix);
    }
    c->prefix = (int)prefix;
    /* ::ffff:a.b.c.d/96+ is an IPv4 range: clients are compared as IPv4 */
    if (mapped && prefix >= 96) {
        memmove(c->addr, c->addr + 12, 4);
        memset(c->addr + 4, 0, 12);
        c->family = 4;
        c->prefix = (int)prefix - 96;
    }
    return 0;
}

bool filter_cidr_match(const struct filter_cidr *c, const struct filter_ip *ip)
{
    if (c->family != ip->family)
        return false;
    int full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->addr, ip->addr, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (ip->addr[full] & mask);
}

static void cidr_format(const struct filter_cidr *c, char *buf, size_t size)
{
    char a[INET6_ADDRSTRLEN];
    inet_ntop(c->family == 4 ? AF_INET : AF_INET6, c->addr, a, sizeof(a));
    if (c->prefix == (c->family == 4 ? 32 : 128))
        snprintf(buf, size, "%s", a);
    else
        snprintf(buf, size, "%s/%d", a, c->prefix);
}

/* ---- names ---- */

bool filter_domain_syntax_ok(const char *d)
{
    size_t len = strlen(d), label = 0;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i <= len; i++) {
        unsigned char ch = (unsigned char)d[i];
        if (ch == '.' || ch == '\0') {
            /* labels of 1..63 octets, not starting or ending with '-' */
            if (label == 0 || label > 63 || d[i - 1] == '-' || d[i - label] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!isalnum(ch) && ch != '-' && ch != '_' && ch < 0x80)
            return false;
        label++;
    }
    /* an all-numeric top-level label is no name (RFC 3696 2), and would
     * read as an address */
    const char *last = strrchr(d, '.');
    last = last ? last + 1 : d;
    return strspn(last, "0123456789") != strlen(last);
}

static bool localpart_ok(const char *s, size_t len)
{
    if (len == 0 || len > SMTP_LOCALPART_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= ' ' || ch == 0x7f || ch == '@' || ch == ',')
            return false;
    }
    return true;
}

int filter_entry_parse(const char *text, struct filter_entry *e, char *err, size_t errsize)
{
    char buf[ADDRESS_MAX];
    memset(e, 0, sizeof(*e));
    if (str_copy(buf, text, sizeof(buf)) >= sizeof(buf))
        return fail(err, errsize, "entry too long: %.40s...", text);
    str_trim(buf);
    if (buf[0] == '\0')
        return fail(err, errsize, "empty entry");
    if (strchr(buf, '@') == NULL && (strchr(buf, ':') != NULL || strchr(buf, '/') != NULL ||
                                     strspn(buf, "0123456789.") == strlen(buf))) {
        if (filter_cidr_parse(buf, &e->cidr, err, errsize) < 0)
            return -1;
        e->type = FILTER_E_CIDR;
        cidr_format(&e->cidr, e->text, sizeof(e->text));
        return 0;
    }
    str_lower(buf);
    char *at = strrchr(buf, '@');
    if (at == NULL || at == buf) {
        const char *d = at ? buf + 1 : buf;
        bool sub = *d == '.' && at == NULL;
        if (sub)
            d++;
        if (!filter_domain_syntax_ok(d))
            return fail(err, errsize, "bad domain '%s'", text);
        e->type = sub ? FILTER_E_SUBDOMAIN : FILTER_E_DOMAIN;
        snprintf(e->text, sizeof(e->text), "%s%s", sub ? "." : "", d);
        return 0;
    }
    if (!localpart_ok(buf, (size_t)(at - buf)) || strchr(buf, '@') != at)
        return fail(err, errsize, "bad address '%s'", text);
    if (at[1] == '\0') {
        e->type = FILTER_E_LOCALPART;
    } else {
        if (!filter_domain_syntax_ok(at + 1))
            return fail(err, errsize, "bad domain in '%s'", text);
        e->type = FILTER_E_ADDRESS;
    }
    str_copy(e->text, buf, sizeof(e->text));
    return 0;
}

/* ---- lists ---- */

int filter_list_add(struct filter_list *l, const struct filter_entry *e)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].type == e->type && strcmp(l->v[i].text, e->text) == 0)
            return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct filter_entry *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *e;
    return 0;
}

int filter_list_add_text(struct filter_list *l, const char *text)
{
    size_t len = strlen(text);
    char *buf = malloc(len + 1);
    if (buf == NULL)
        return -1;
    memcpy(buf, text, len + 1);
    char *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(buf, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save)) {
        struct filter_entry e;
        str_trim(t);
        if (*t != '\0' && filter_entry_parse(t, &e, NULL, 0) == 0)
            rc = filter_list_add(l, &e);
    }
    free(buf);
    return rc;
}

void filter_list_free(struct filter_list *l)
{
    free(l->v);
    memset(l, 0, sizeof(*l));
}

const struct filter_entry *filter_list_match_ip(const struct filter_list *l,
                                                const struct filter_ip *ip)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].type == FILTER_E_CIDR && filter_cidr_match(&l->v[i].cidr, ip))
            return &l->v[i];
    return NULL;
}

/* Does domain (lower case) equal d or lie below it? */
static bool domain_below(const char *domain, const char *d)
{
    size_t dl = strlen(domain), l = strlen(d);
    return dl > l && domain[dl - l - 1] == '.' && strcmp(domain + dl - l, d) == 0;
}

const struct filter_entry *filter_list_match_domain(const struct filter_list *l,
                                                    const char *domain)
{
    char dom[SMTP_DOMAIN_MAX + 1];
    if (str_copy(dom, domain, sizeof(dom)) >= sizeof(dom) || dom[0] == '\0')
        return NULL;
    str_lower(dom);
    size_t dl = strlen(dom);
    if (dl > 0 && dom[dl - 1] == '.')
        dom[dl - 1] = '\0';
    for (size_t i = 0; i < l->n; i++) {
        const struct filter_entry *e = &l->v[i];
        if (e->type == FILTER_E_DOMAIN && strcmp(e->text, dom) == 0)
            return e;
        if (e->type == FILTER_E_SUBDOMAIN && domain_below(dom, e->text + 1))
            return e;
    }
    return NULL;
}

const struct filter_entry *filter_list_match_address(const struct filter_list *l,
                                                     const char *address, bool domains)
{
    char a[ADDRESS_MAX], plain[ADDRESS_MAX];
    if (address == NULL || str_copy(a, address, sizeof(a)) >= sizeof(a))
        return NULL;
    str_lower(a);
    char *at = strrchr(a, '@');
    if (at == NULL || at == a)
        return NULL;
    /* user+tag@domain also matches entries for user@domain */
    plain[0] = '\0';
    char *plus = memchr(a, '+', (size_t)(at - a));
    if (plus != NULL && plus > a)
        snprintf(plain, sizeof(plain), "%.*s%s", (int)(plus - a), a, at);
    size_t llen = (size_t)(at - a + 1);
    size_t plen = plus && plus > a ? (size_t)(plus - a) : llen - 1;
    for (size_t i = 0; i < l->n; i++) {
        const struct filter_entry *e = &l->v[i];
        if (e->type == FILTER_E_ADDRESS &&
            (strcmp(e->text, a) == 0 || (plain[0] && strcmp(e->text, plain) == 0)))
            return e;
        if (e->type == FILTER_E_LOCALPART &&
            ((strlen(e->text) == llen && memcmp(e->text, a, llen) == 0) ||
             (strlen(e->text) == plen + 1 && memcmp(e->text, a, plen) == 0)))
            return e;
    }
    return domains ? filter_list_match_domain(l, at + 1) : NULL;
}

/* ---- snapshots ---- */

static void lists_free(struct filter_lists *ls)
{
    filter_list_free(&ls->allow_ip);
    filter_list_free(&ls->block_ip);
    filter_list_free(&ls->allow_sender);
    filter_list_free(&ls->block_sender);
    filter_list_free(&ls->exceptions);
    free(ls);
}

void filter_lists_unref(struct filter_lists *ls)
{
    if (ls != NULL && atomic_fetch_sub(&ls->refs, 1) == 1)
        lists_free(ls);
}

struct store_list_ctx {
    struct filter_lists *ls;
    bool allow;     /* STORE_FL_ALLOW / STORE_FL_BLOCK; exceptions handled apart */
    bool exceptions;
    int rc;
};

/* A store entry goes to the IP or the sender list by its shape. */
static void store_entry(const char *entry, const char *note, int64_t created, void *arg)
{
    struct store_list_ctx *ctx = arg;
    struct filter_entry e;
    if (filter_entry_parse(entry, &e, NULL, 0) < 0)
        return;
    struct filter_list *l;
    if (ctx->exceptions)
        l = &ctx->ls->exceptions;
    else if (e.type == FILTER_E_CIDR)
        l = ctx->allow ? &ctx->ls->allow_ip : &ctx->ls->block_ip;
    else
        l = ctx->allow ? &ctx->ls->allow_sender : &ctx->ls->block_sender;
    if (e.type == FILTER_E_CIDR && ctx->exceptions)
        return;
    if (filter_list_add(l, &e) < 0)
        ctx->rc = -1;
}

struct filter_lists *filter_lists_build(const struct filter_config *fc, struct store *st,
                                        const char **error_r)
{
    struct filter_lists *ls = calloc(1, sizeof(*ls));
    if (ls == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    atomic_init(&ls->refs, 1);
    if (filter_list_add_text(&ls->allow_ip, fc->allow_ip) < 0 ||
        filter_list_add_text(&ls->block_ip, fc->block_ip) < 0 ||
        filter_list_add_text(&ls->allow_sender, fc->allow_sender) < 0 ||
        filter_list_add_text(&ls->block_sender, fc->block_sender) < 0 ||
        filter_list_add_text(&ls->exceptions, fc->rcpt_exceptions) < 0) {
        lists_free(ls);
        *error_r = "out of memory";
        return NULL;
    }
    if (st != NULL) {
        static const enum store_filter_list kinds[] = { STORE_FL_ALLOW, STORE_FL_BLOCK,
                                                        STORE_FL_EXCEPTION };
        for (int i = 0; i < 3; i++) {
            struct store_list_ctx ctx = { ls, kinds[i] == STORE_FL_ALLOW,
                                          kinds[i] == STORE_FL_EXCEPTION, 0 };
            if (store_filter_list_each(st, kinds[i], store_entry, &ctx) < 0 || ctx.rc < 0) {
                lists_free(ls);
                *error_r = "cannot read the allow/block lists from the store";
                return NULL;
            }
        }
    }
    return ls;
}
