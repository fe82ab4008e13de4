/*
 * postel mx DOMAIN       the hosts mail for DOMAIN goes to, in delivery
 *                        order, with their addresses
 * postel spf --ip IP [--helo NAME] [--mail-from ADDR] [--identity mailfrom|helo]
 *            [--receiver NAME] [--timeout SECONDS]
 *                        one SPF check; prints a key=value line and the
 *                        Received-SPF field it would add
 *
 * Both use [dns] from the configuration (nameserver, dnssec).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sysexits.h>

#include "auth/spf.h"
#include "cli/cli.h"
#include "core/log.h"
#include "core/util.h"
#include "dns/dns.h"

static struct dns_resolver *open_resolver(const struct config *cfg, double timeout_s)
{
    struct dns_options opt;
    const char *err;
    dns_options_from_config(&opt, cfg);
    if (timeout_s > 0)
        opt.timeout_ms = (unsigned)(timeout_s * 1000 + 0.5);
    struct dns_resolver *r = dns_resolver_new(&opt, &err);
    if (r == NULL)
        fprintf(stderr, "postel: dns: %s\n", err);
    return r;
}

static int parse_timeout(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v > 0 && v <= 600))
        return -1;
    *out = v;
    return 0;
}

/* ---- mx ---- */

static void print_host(struct dns_resolver *r, const struct dns_mx *mx, bool implicit)
{
    struct dns_addr *addrs;
    size_t n;
    char why[160], buf[64];
    enum dns_status st = dns_lookup_addrs(r, mx->host, AF_UNSPEC, &addrs, &n, why, sizeof(why));
    printf("%u %s", mx->pref, mx->host);
    for (size_t i = 0; i < n; i++)
        printf(" %s", dns_addr_format(&addrs[i], buf, sizeof(buf)));
    if (st != DNS_OK)
        printf(" (no address: %s)", dns_status_name(st));
    if (implicit)
        printf(" (implicit MX, RFC 5321 5.1)");
    printf("\n");
    free(addrs);
}

int cli_mx(const struct config *cfg, int argc, char **argv)
{
    const char *domain = NULL;
    double timeout = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            if (parse_timeout(argv[++i], &timeout) < 0)
                goto usage;
        } else if (argv[i][0] != '-' && domain == NULL) {
            domain = argv[i];
        } else {
            goto usage;
        }
    }
    if (domain == NULL)
        goto usage;
    struct dns_resolver *r = open_resolver(cfg, timeout);
    if (r == NULL)
        return EX_UNAVAILABLE;
    struct dns_mx_list l;
    enum dns_status st = dns_mail_hosts(r, domain, &l);
    int rc = 0;
    switch (st) {
    case DNS_OK:
        if (l.null_mx) {
            printf("%s: null MX (RFC 7505): the domain accepts no mail\n", domain);
            rc = EX_UNAVAILABLE;
        }
        for (size_t i = 0; i < l.n; i++)
            print_host(r, &l.mx[i], l.implicit);
        break;
    case DNS_NXDOMAIN:
        fprintf(stderr, "%s: no such domain (NXDOMAIN)\n", domain);
        rc = EX_NOHOST;
        break;
    case DNS_NODATA:
        fprintf(stderr, "%s: no MX and no address records: no mail host\n", domain);
        rc = EX_NOHOST;
        break;
    case DNS_TEMPFAIL:
        fprintf(stderr, "%s: temporary DNS failure: %s\n", domain, l.why);
        rc = EX_TEMPFAIL;
        break;
    case DNS_BADNAME:
        fprintf(stderr, "%s: not a valid domain name\n", domain);
        rc = EX_DATAERR;
        break;
    }
    dns_mx_list_free(&l);
    dns_resolver_free(r);
    return rc;
usage:
    fprintf(stderr, "usage: postel [-c FILE] mx DOMAIN [--timeout SECONDS]\n");
    return EX_USAGE;
}

/* ---- spf ---- */

static void print_pair(const char *key, const char *value)
{
    char q[2048];
    printf(" %s=%s", key, log_quote(q, sizeof(q), value));
}

static void print_spf(const struct spf_request *req, const struct spf_response *resp)
{
    char field[4096];
    printf("spf=%s identity=%s", spf_result_name(resp->result),
           resp->identity == SPF_ID_HELO ? "helo" : "mailfrom");
    print_pair("domain", resp->domain);
    print_pair("sender", resp->sender);
    print_pair("ip", req->ip);
    if (resp->mechanism[0])
        print_pair("mechanism", resp->mechanism);
    if (resp->explanation[0])
        print_pair("explanation", resp->explanation);
    if (resp->problem[0])
        print_pair("problem", resp->problem);
    printf("\n");
    if (spf_received_spf(resp, req, field, sizeof(field)) >= 0)
        printf("Received-SPF: %s\n", field);
}

/* "<a@b>" -> "a@b" in place. */
static const char *strip_brackets(char *s)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
        s[n - 1] = '\0';
        return s + 1;
    }
    return s;
}

int cli_spf(const struct config *cfg, int argc, char **argv)
{
    struct spf_request req = { .receiver = cfg->hostname[0] ? cfg->hostname : NULL };
    bool helo_identity = false;
    double timeout = 0;
    int i = argc > 0 && strcmp(argv[0], "check") == 0 ? 1 : 0;
    for (; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc)
            goto usage;
        char *val = argv[++i];
        if (strcmp(opt, "--ip") == 0) {
            req.ip = val;
        } else if (strcmp(opt, "--helo") == 0) {
            req.helo = val;
        } else if (strcmp(opt, "--mail-from") == 0) {
            req.mail_from = strip_brackets(val);
        } else if (strcmp(opt, "--receiver") == 0) {
            req.receiver = val;
        } else if (strcmp(opt, "--identity") == 0) {
            if (strcmp(val, "helo") != 0 && strcmp(val, "mailfrom") != 0)
                goto usage;
            helo_identity = strcmp(val, "helo") == 0;
        } else if (strcmp(opt, "--timeout") == 0) {
            if (parse_timeout(val, &timeout) < 0)
                goto usage;
        } else {
            goto usage;
        }
    }
    struct dns_addr probe;
    if (req.ip == NULL || dns_addr_parse(req.ip, &probe) < 0) {
        fprintf(stderr, "postel spf: --ip needs an IPv4 or IPv6 address\n");
        goto usage;
    }
    struct dns_resolver *r = open_resolver(cfg, timeout);
    if (r == NULL)
        return EX_UNAVAILABLE;
    struct spf_dns dns;
    struct spf_response resp;
    spf_dns_use_resolver(&dns, r);
    if (helo_identity)
        spf_check_helo(&dns, &req, &resp);
    else
        spf_check_mailfrom(&dns, &req, &resp);
    print_spf(&req, &resp);
    dns_resolver_free(r);
    return 0;
usage:
    fprintf(stderr, "usage: postel [-c FILE] spf --ip IP [--helo NAME] [--mail-from ADDR]\n"
                    "           [--identity mailfrom|helo] [--receiver NAME] [--timeout SECONDS]\n");
    return EX_USAGE;
}
