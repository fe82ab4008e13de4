/*
 * DNS names, addresses and answers: the parts of the resolver that do no
 * I/O.  The libunbound side lives in resolver.c (synchronous) and
 * dns_async.c (on a libevent loop).
 */
#include "dns/dns.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unbound.h>

#include "core/config.h"
#include "core/util.h"
#include "dns/dns_int.h"

const char *dns_status_name(enum dns_status st)
{
    switch (st) {
    case DNS_OK: return "ok";
    case DNS_NXDOMAIN: return "nxdomain";
    case DNS_NODATA: return "nodata";
    case DNS_TEMPFAIL: return "tempfail";
    case DNS_BADNAME: return "badname";
    }
    return "?";
}

void dns_options_from_config(struct dns_options *opt, const struct config *cfg)
{
    memset(opt, 0, sizeof(*opt));
    str_copy(opt->nameserver, cfg->dns_nameserver, sizeof(opt->nameserver));
    opt->dnssec = cfg->dnssec;
    opt->timeout_ms = DNS_DEFAULT_TIMEOUT_MS;
}

void dns_result_free(struct dns_result *res)
{
    for (size_t i = 0; i < res->n; i++) {
        free(res->rr[i].name);
        free(res->rr[i].text);
        free(res->rr[i].rdata);
    }
    free(res->rr);
    res->rr = NULL;
    res->n = 0;
}

void dns_result_fail(struct dns_result *res, enum dns_status st, const char *fmt, ...)
{
    va_list ap;
    res->status = st;
    va_start(ap, fmt);
    vsnprintf(res->why, sizeof(res->why), fmt, ap);
    va_end(ap);
}

/* ---- names ---- */

bool dns_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0)
        return true;              /* the root */
    if (len > DNS_NAME_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        if (name[i] == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (++label > DNS_LABEL_MAX) {
            return false;
        }
    }
    return label > 0;
}

int dns_name_escape(const char *name, char *buf, size_t size)
{
    if (!dns_name_valid(name) || size == 0)
        return -1;
    size_t o = 0, len = strlen(name);
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0) {
        if (size < 2)
            return -1;
        memcpy(buf, ".", 2);
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        bool plain = c == '.' || c == '-' || c == '_' || (c >= '0' && c <= '9') ||
                     (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (o + (plain ? 1 : 4) + 2 > size)
            return -1;
        if (plain)
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, size - o, "\\%03u", c);
    }
    buf[o++] = '.';
    buf[o] = '\0';
    return 0;
}

int dns_name_from_wire(const unsigned char *rdata, size_t rdlen, size_t *off, char *buf, size_t size)
{
    size_t o = 0, p = *off;
    for (;;) {
        if (p >= rdlen)
            return -1;
        unsigned len = rdata[p++];
        if (len == 0)
            break;
        if (len > DNS_LABEL_MAX || p + len > rdlen)
            return -1;    /* compression pointers never appear in rdata here */
        if (o != 0) {
            if (o + 1 >= size)
                return -1;
            buf[o++] = '.';
        }
        if (o + len >= size)
            return -1;
        for (unsigned i = 0; i < len; i++) {
            unsigned char c = rdata[p + i];
            if (c == '.' || c == '\0')
                return -1;
            buf[o++] = (char)c;
        }
        p += len;
    }
    if (size == 0)
        return -1;
    buf[o] = '\0';
    *off = p;
    return 0;
}

/* ---- addresses ---- */

int dns_addr_parse(const char *text, struct dns_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, text, &out->u.v4) == 1) {
        out->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, text, &out->u.v6) == 1) {
        out->family = AF_INET6;
        return 0;
    }
    return -1;
}

const char *dns_addr_format(const struct dns_addr *a, char *buf, size_t size)
{
    if (inet_ntop(a->family, a->family == AF_INET ? (const void *)&a->u.v4 : (const void *)&a->u.v6,
                  buf, (socklen_t)size) == NULL && size > 0)
        buf[0] = '\0';
    return buf;
}

int dns_reverse_name(const struct dns_addr *a, char *buf, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (a->family == AF_INET) {
        const unsigned char *b = (const unsigned char *)&a->u.v4;
        int n = snprintf(buf, size, "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]);
        return n < 0 || (size_t)n >= size ? -1 : 0;
    }
    if (a->family != AF_INET6 || size < 64 + 9)
        return -1;
    for (int i = 15; i >= 0; i--) {
        unsigned char b = a->u.v6.s6_addr[i];
        buf[o++] = hex[b & 15];
        buf[o++] = '.';
        buf[o++] = hex[b >> 4];
        buf[o++] = '.';
    }
    memcpy(buf + o, "ip6.arpa", 9);
    return 0;
}

/* ---- answers ---- */

/* Fills one record from its RDATA; -1 when the RDATA is malformed for the
 * type (the record is then left out of the answer). */
static int rr_from_rdata(struct dns_rr *rr, uint16_t type, const unsigned char *d, size_t len)
{
    char name[DNS_NAME_MAX + 2];
    size_t off = 0;
    rr->type = type;
    switch (type) {
    case DNS_T_A:
        if (len != 4)
            return -1;
        rr->addr.family = AF_INET;
        memcpy(&rr->addr.u.v4, d, 4);
        break;
    case DNS_T_AAAA:
        if (len != 16)
            return -1;
        rr->addr.family = AF_INET6;
        memcpy(&rr->addr.u.v6, d, 16);
        break;
    case DNS_T_MX:
        if (len < 3)
            return -1;
        rr->pref = (uint16_t)(d[0] << 8 | d[1]);
        off = 2;
        /* fall through */
    case DNS_T_PTR:
    case DNS_T_CNAME:
    case DNS_T_NS:
        if (dns_name_from_wire(d, len, &off, name, sizeof(name)) < 0 || off != len)
            return -1;
        if ((rr->name = strdup(name)) == NULL)
            return -1;
        break;
    case DNS_T_TXT: {
        /* RFC 7208 3.3: the strings of one record are joined with nothing. */
        if ((rr->text = malloc(len + 1)) == NULL)
            return -1;
        size_t o = 0;
        while (off < len) {
            size_t n = d[off++];
            if (off + n > len)
                return -1;
            memcpy(rr->text + o, d + off, n);
            o += n;
            off += n;
        }
        rr->text[o] = '\0';
        rr->text_len = o;
        break;
    }
    default:
        break;
    }
    if ((rr->rdata = malloc(len ? len : 1)) == NULL)
        return -1;
    memcpy(rr->rdata, d, len);
    rr->rdlen = len;
    return 0;
}

enum dns_status dns_result_from_rdata(struct dns_result *res, uint16_t type, int rcode, bool nxdomain,
                                      const unsigned char *const *data, const int *len)
{
    res->rcode = rcode;
    if (rcode == 3 || nxdomain) {
        dns_result_fail(res, DNS_NXDOMAIN, "NXDOMAIN");
        return res->status;
    }
    if (rcode != 0) {
        static const char *const names[] = { "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
                                             "NOTIMP", "REFUSED" };
        if (rcode > 0 && rcode < 6)
            dns_result_fail(res, DNS_TEMPFAIL, "%s", names[rcode]);
        else
            dns_result_fail(res, DNS_TEMPFAIL, "rcode %d", rcode);
        return res->status;
    }
    size_t count = 0;
    while (data && data[count] && count < DNS_MAX_RECORDS)
        count++;
    if (count && (res->rr = calloc(count, sizeof(*res->rr))) == NULL) {
        dns_result_fail(res, DNS_TEMPFAIL, "out of memory");
        return res->status;
    }
    for (size_t i = 0; i < count; i++) {
        struct dns_rr *rr = &res->rr[res->n];
        if (rr_from_rdata(rr, type, data[i], (size_t)len[i]) == 0) {
            res->n++;
        } else {
            free(rr->name);
            free(rr->text);
            free(rr->rdata);
            memset(rr, 0, sizeof(*rr));
        }
    }
    if (res->n == 0) {
        free(res->rr);
        res->rr = NULL;
        dns_result_fail(res, DNS_NODATA, count ? "malformed records" : "no records");
        return res->status;
    }
    res->status = DNS_OK;
    res->why[0] = '\0';
    return DNS_OK;
}

enum dns_status dns_result_from_ub(struct dns_result *res, uint16_t type, int err, struct ub_result *ub)
{
    if (err != 0 || ub == NULL) {
        dns_result_fail(res, DNS_TEMPFAIL, "resolver: %s", err ? ub_strerror(err) : "no result");
        return res->status;
    }
    res->secure = ub->secure != 0;
    res->bogus = ub->bogus != 0;
    res->ttl = ub->ttl > 0 ? (uint32_t)ub->ttl : 0;
    if (ub->canonname)
        str_copy(res->canon, ub->canonname, sizeof(res->canon));
    enum dns_status st = dns_result_from_rdata(res, type, ub->rcode, ub->nxdomain != 0,
                                               (const unsigned char *const *)ub->data, ub->len);
    if (st == DNS_TEMPFAIL && ub->why_bogus)
        snprintf(res->why, sizeof(res->why), "%s (dnssec: %s)", ub->rcode == 2 ? "SERVFAIL" : "error",
                 ub->why_bogus);
    return st;
}

/* ---- MX ---- */

void dns_mx_sort(struct dns_mx *mx, size_t n)
{
    /* Shuffle (Fisher-Yates), then a stable insertion sort on preference:
     * equal preferences keep the random order (RFC 5321 5.1). */
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(random_u64() % i);
        struct dns_mx t = mx[i - 1];
        mx[i - 1] = mx[j];
        mx[j] = t;
    }
    for (size_t i = 1; i < n; i++) {
        struct dns_mx t = mx[i];
        size_t j = i;
        while (j > 0 && mx[j - 1].pref > t.pref) {
            mx[j] = mx[j - 1];
            j--;
        }
        mx[j] = t;
    }
}

void dns_mx_list_free(struct dns_mx_list *l)
{
    free(l->mx);
    l->mx = NULL;
    l->n = 0;
}
