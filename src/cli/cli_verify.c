/*
 * postel verify, postel dns records, postel check (see cli_auth.h).
 *
 * verify runs the same evaluator the SMTP server runs (auth_evaluate), so
 * its output is the field a message received on port 25 would get.
 * dns records prints what to publish; check reads what is published.
 * All use [dns] from the configuration.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include "auth/authres.h"
#include "auth/dkim.h"
#include "auth/dmarc.h"
#include "auth/spf.h"
#include "cli/cli_auth.h"
#include "core/util.h"
#include "dns/dns.h"
#include "mime/mime.h"

#define VERIFY_INPUT_MAX   (64u << 20)
#define CHECK_MX_MAX       10       /* MX hosts looked at */
#define CHECK_ADDRS_MAX    4        /* addresses per MX host looked at */
#define CHECK_TXT_MAX      16

/* ---- shared helpers ---- */

struct opt {
    const char *name;             /* without "--" */
    const char **value;
};

/* --name VALUE and --name=VALUE from table; one positional into *pos (may
 * be NULL: none allowed).  0, or -1 (message printed). */
static int parse_args(const char *cmd, int argc, char **argv, int start, const struct opt *opts, const char **pos)
{
    for (int i = start; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (pos == NULL || *pos != NULL) {
                fprintf(stderr, "postel %s: unexpected argument %s\n", cmd, a);
                return -1;
            }
            *pos = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        const struct opt *o = opts;
        while (o->name && !(strlen(o->name) == n && strncmp(o->name, a + 2, n) == 0))
            o++;
        if (o->name == NULL) {
            fprintf(stderr, "postel %s: unknown option %s\n", cmd, a);
            return -1;
        }
        const char *v = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (v == NULL) {
            fprintf(stderr, "postel %s: %s needs a value\n", cmd, a);
            return -1;
        }
        *o->value = v;
    }
    return 0;
}

static struct dns_resolver *open_resolver(const struct config *cfg, const char *timeout)
{
    struct dns_options opt;
    const char *err;
    dns_options_from_config(&opt, cfg);
    if (timeout != NULL) {
        char *end;
        double t = strtod(timeout, &end);
        if (end == timeout || *end != '\0' || !(t > 0 && t <= 600)) {
            fprintf(stderr, "postel: --timeout wants seconds (0 < T <= 600)\n");
            return NULL;
        }
        opt.timeout_ms = (unsigned)(t * 1000 + 0.5);
    }
    struct dns_resolver *r = dns_resolver_new(&opt, &err);
    if (r == NULL)
        fprintf(stderr, "postel: dns: %s\n", err);
    return r;
}

static char *read_fd(int fd, size_t cap, size_t *len_r)
{
    struct strbuf sb;
    strbuf_init(&sb, cap);
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || strbuf_append(&sb, buf, (size_t)n) < 0) {
            strbuf_free(&sb);
            return NULL;
        }
        if (n == 0)
            break;
    }
    *len_r = sb.len;
    return sb.data ? sb.data : calloc(1, 1);
}

/* Prints a field with LF line ends (the terminal's convention). */
static void print_field(const struct strbuf *sb)
{
    for (size_t i = 0; i < sb->len; i++)
        if (sb->data[i] != '\r')
            putchar(sb->data[i]);
}

/* ---- verify ---- */

/* "<a@b>" -> "a@b" in place. */
static char *strip_brackets(char *s)
{
    s = str_trim(s);
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
        s[n - 1] = '\0';
        return s + 1;
    }
    return s;
}

/* The envelope sender a delivered message kept in Return-Path, if any. */
static bool return_path(const char *msg, size_t len, char *out, size_t size)
{
    struct strbuf sb;
    strbuf_init(&sb, 4096);
    bool ok = mime_header_get(msg, len, 0, "Return-Path", &sb) == 1 && sb.data != NULL;
    if (ok)
        str_copy(out, strip_brackets(sb.data), size);
    strbuf_free(&sb);
    return ok;
}

static unsigned never_sample_out(void *arg)
{
    (void)arg;
    return 0;
}

int cli_verify(const struct config *cfg, int argc, char **argv)
{
    const char *ip = NULL, *helo = NULL, *mail_from = NULL, *id = NULL, *tm = NULL, *timeout = NULL;
    const char *file = NULL;
    const struct opt opts[] = {
        { "ip", &ip }, { "helo", &helo }, { "mail-from", &mail_from }, { "authserv-id", &id },
        { "time", &tm }, { "timeout", &timeout }, { NULL, NULL },
    };
    if (parse_args("verify", argc, argv, 0, opts, &file) < 0)
        goto usage;
    struct dns_addr probe;
    if (ip != NULL && dns_addr_parse(ip, &probe) < 0) {
        fprintf(stderr, "postel verify: --ip needs an IPv4 or IPv6 address\n");
        goto usage;
    }
    int fd = STDIN_FILENO;
    if (file != NULL && strcmp(file, "-") != 0 && (fd = open(file, O_RDONLY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "postel verify: %s: %s\n", file, strerror(errno));
        return EX_NOINPUT;
    }
    size_t len;
    char *msg = read_fd(fd, VERIFY_INPUT_MAX, &len);
    if (fd != STDIN_FILENO)
        close(fd);
    if (msg == NULL) {
        fprintf(stderr, "postel verify: cannot read the message (over %u bytes?)\n", VERIFY_INPUT_MAX);
        return EX_DATAERR;
    }
    char from_buf[1024];
    if (mail_from != NULL) {
        str_copy(from_buf, mail_from, sizeof(from_buf));
        mail_from = strip_brackets(from_buf);
    } else if (return_path(msg, len, from_buf, sizeof(from_buf))) {
        mail_from = from_buf;
    }
    struct dns_resolver *r = open_resolver(cfg, timeout);
    if (r == NULL) {
        free(msg);
        return EX_UNAVAILABLE;
    }
    struct auth_input in = {
        .ip = ip, .helo = helo ? helo : "", .mail_from = mail_from ? mail_from : "",
        .msg = msg, .len = len, .authserv_id = id ? id : cfg->hostname,
        .now = tm ? (time_t)atoll(tm) : 0,
        /* A report of what the policy asks for, not a sampling. */
        .rand_pct = never_sample_out,
    };
    struct auth_outcome out;
    int rc = auth_evaluate(r, &in, &out);
    if (rc == 0) {
        print_field(&out.authres);
        print_field(&out.received_spf);
    } else {
        fprintf(stderr, "postel verify: out of memory\n");
    }
    auth_outcome_free(&out);
    dns_resolver_free(r);
    free(msg);
    return rc == 0 ? EX_OK : EX_SOFTWARE;
usage:
    fprintf(stderr, "usage: postel [-c FILE] verify [FILE] [--ip IP] [--helo NAME] [--mail-from ADDR]\n"
                    "           [--authserv-id NAME] [--time UNIXTIME] [--timeout SECONDS]\n");
    return EX_USAGE;
}

/* ---- dns records ---- */

#define ZONE_NAME_WIDTH 34

/* "NAME. IN TYPE" padded, then data. */
static void zone_line(const char *name, const char *type, const char *data)
{
    int w = printf("%s.", name);
    printf("%*s IN %-5s %s\n", w < ZONE_NAME_WIDTH ? ZONE_NAME_WIDTH - w : 0, "", type, data);
}

/* A TXT record's text as zone-file strings of at most 255 bytes each. */
static void zone_txt(const char *name, const char *text)
{
    struct strbuf sb;
    strbuf_init(&sb, 64 * 1024);
    size_t len = strlen(text);
    for (size_t off = 0; off < len || off == 0; off += 255) {
        size_t n = len - off < 255 ? len - off : 255;
        strbuf_printf(&sb, "%s\"", off ? " " : "");
        for (size_t i = 0; i < n; i++) {
            char ch = text[off + i];
            if (ch == '"' || ch == '\\')
                strbuf_append(&sb, "\\", 1);
            strbuf_append(&sb, &ch, 1);
        }
        strbuf_append(&sb, "\"", 1);
        if (len == 0)
            break;
    }
    zone_line(name, "TXT", sb.data ? sb.data : "\"\"");
    strbuf_free(&sb);
}

/* An address worth publishing: not loopback, link-local, private or
 * unspecified. */
static bool addr_public(const struct dns_addr *a)
{
    if (a->family == AF_INET) {
        const unsigned char *b = (const unsigned char *)&a->u.v4;
        return !(b[0] == 0 || b[0] == 127 || b[0] == 10 || (b[0] == 169 && b[1] == 254) ||
                 (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168));
    }
    const unsigned char *b = a->u.v6.s6_addr;
    static const unsigned char zero[15];
    if (memcmp(b, zero, 15) == 0)
        return false;                        /* :: and ::1 */
    return !((b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || (b[0] & 0xfe) == 0xfc);
}

/* The host name mail for the domain goes to: the configured hostname when
 * it is a FQDN, else mail.DOMAIN. */
static void mail_host(const struct config *cfg, const char *domain, char *out, size_t size, bool *guessed)
{
    *guessed = strchr(cfg->hostname, '.') == NULL;
    if (*guessed)
        snprintf(out, size, "mail.%s", domain);
    else
        str_copy(out, cfg->hostname, size);
    size_t n = strlen(out);
    if (n > 0 && out[n - 1] == '.')
        out[n - 1] = '\0';
    str_lower(out);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void records_host(struct dns_resolver *r, const char *domain, const char *host, bool guessed,
                         struct strbuf *spf)
{
    struct dns_addr *addrs = NULL;
    size_t n = 0;
    char why[160], buf[64], rev[128], ptr[DNS_NAME_MAX + 32];
    if (r != NULL)
        dns_lookup_addrs(r, host, AF_UNSPEC, &addrs, &n, why, sizeof(why));
    char mx[DNS_NAME_MAX + 16];
    snprintf(mx, sizeof(mx), "10 %s.", host);
    printf("; Mail for %s is received by %s (RFC 5321 5.1).\n", domain, host);
    if (guessed)
        printf("; (hostname is not a FQDN: set \"hostname = %s\" in postel.conf)\n", host);
    zone_line(domain, "MX", mx);
    printf("; The addresses of %s (in the zone of %s):\n", host, host);
    int published = 0;
    for (size_t i = 0; i < n; i++) {
        if (!addr_public(&addrs[i]))
            continue;
        dns_addr_format(&addrs[i], buf, sizeof(buf));
        zone_line(host, addrs[i].family == AF_INET ? "A" : "AAAA", buf);
        strbuf_printf(spf, " %s:%s", addrs[i].family == AF_INET ? "ip4" : "ip6", buf);
        published++;
    }
    if (published == 0) {
        printf("; ");
        zone_line(host, "A", "<this server's public IPv4 address>");
        printf("; ");
        zone_line(host, "AAAA", "<this server's public IPv6 address>");
    }
    printf("; Reverse DNS: ask the owner of each address for a PTR record naming %s, e.g.\n", host);
    for (size_t i = 0; i < n; i++) {
        if (!addr_public(&addrs[i]) || dns_reverse_name(&addrs[i], rev, sizeof(rev)) < 0)
            continue;
        snprintf(ptr, sizeof(ptr), "%s.", host);
        printf(";   %s. IN PTR %s\n", rev, ptr);
    }
    if (published == 0)
        printf(";   <reversed address>.in-addr.arpa. IN PTR %s.\n", host);
    free(addrs);
}

static void records_dkim(const struct config *cfg, const char *domain)
{
    struct dkim_key keys[DKIM_MAX_SIGN_KEYS];
    char err[512];
    printf("\n; DKIM (RFC 6376): the public key of each key signing mail from %s.\n", domain);
    int n = dkim_keys_for_domain(cfg, domain, keys, DKIM_MAX_SIGN_KEYS, err, sizeof(err));
    if (n < 0)
        printf("; a DKIM key is configured but unusable: %s\n", err);
    else if (n == 0)
        printf("; no DKIM key for %s yet: run \"postel dkim keygen %s\" and run this again\n", domain, domain);
    for (int i = 0; i < n; i++) {
        struct strbuf sb;
        strbuf_init(&sb, 16 * 1024);
        if (dkim_key_zone_record(&keys[i], &sb) == 0)
            printf("%s\n", sb.data);
        strbuf_free(&sb);
        dkim_key_free(&keys[i]);
    }
}

/* First port of a role, or 0 when the role does not run. */
static int role_port(const struct config *cfg, enum listen_role role)
{
    return cfg->n_listen[role] > 0 ? cfg->listen[role][0].port : 0;
}

static void records_srv(const struct config *cfg, const char *domain, const char *host)
{
    static const struct { const char *svc; enum listen_role role; } srv[] = {
        { "_submissions._tcp", ROLE_SUBMISSIONS }, { "_submission._tcp", ROLE_SUBMISSION },
        { "_imaps._tcp", ROLE_IMAPS }, { "_imap._tcp", ROLE_IMAP },
        { "_pop3s._tcp", ROLE_POP3S }, { "_pop3._tcp", ROLE_POP3 },
    };
    printf("\n; Client autoconfiguration (RFC 6186, RFC 8314: implicit TLS first).\n");
    printf("; \"0 0 0 .\" says the service is not offered (its role is not in [listen]).\n");
    for (size_t i = 0; i < sizeof(srv) / sizeof(srv[0]); i++) {
        char name[DNS_NAME_MAX + 32], data[DNS_NAME_MAX + 32];
        int port = role_port(cfg, srv[i].role);
        snprintf(name, sizeof(name), "%s.%s", srv[i].svc, domain);
        if (port > 0)
            snprintf(data, sizeof(data), "0 1 %d %s.", port, host);
        else
            snprintf(data, sizeof(data), "0 0 0 .");
        zone_line(name, "SRV", data);
    }
    char name[DNS_NAME_MAX + 32], target[DNS_NAME_MAX + 8];
    snprintf(target, sizeof(target), "%s.", host);
    printf("; Thunderbird (autoconfig) and Outlook (autodiscover) look here:\n");
    snprintf(name, sizeof(name), "autoconfig.%s", domain);
    zone_line(name, "CNAME", target);
    snprintf(name, sizeof(name), "autodiscover.%s", domain);
    zone_line(name, "CNAME", target);
}

int cli_dns_records(const struct config *cfg, int argc, char **argv)
{
    const char *domain = NULL, *timeout = NULL;
    const struct opt opts[] = { { "timeout", &timeout }, { NULL, NULL } };
    if (argc < 1 || strcmp(argv[0], "records") != 0 || parse_args("dns records", argc, argv, 1, opts, &domain) < 0 ||
        domain == NULL)
        goto usage;
    char dom[DNS_NAME_MAX + 2], host[DNS_NAME_MAX + 2], name[DNS_NAME_MAX + 32], text[1024];
    str_copy(dom, domain, sizeof(dom));
    str_lower(dom);
    size_t dl = strlen(dom);
    if (dl > 0 && dom[dl - 1] == '.')
        dom[--dl] = '\0';
    if (dl == 0 || strchr(dom, '.') == NULL || !dns_name_valid(dom) || !dkim_name_ok(dom, true)) {
        fprintf(stderr, "postel dns records: %s is not a domain name\n", domain);
        return EX_USAGE;
    }
    bool guessed;
    mail_host(cfg, dom, host, sizeof(host), &guessed);
    struct dns_resolver *r = open_resolver(cfg, timeout ? timeout : "3");
    printf("; DNS records for %s, generated by postel: paste into the zone of %s.\n\n", dom, dom);
    struct strbuf spf;
    strbuf_init(&spf, 4096);
    records_host(r, dom, host, guessed, &spf);

    printf("\n; SPF (RFC 7208): only %s sends mail for %s.\n", host, dom);
    snprintf(text, sizeof(text), "v=spf1%s -all", spf.len ? spf.data : " mx");
    zone_txt(dom, text);
    strbuf_free(&spf);

    records_dkim(cfg, dom);

    printf("\n; DMARC (RFC 7489): quarantine mail that fails, aggregate reports to postmaster.\n");
    printf("; Start with p=none to watch the reports first; p=reject once they are clean.\n");
    snprintf(name, sizeof(name), "_dmarc.%s", dom);
    snprintf(text, sizeof(text), "v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:postmaster@%s", dom);
    zone_txt(name, text);

    char policy[1024];
    snprintf(policy, sizeof(policy), "version: STSv1\nmode: testing\nmx: %s\nmax_age: 604800\n", host);
    printf("\n; MTA-STS (RFC 8461): senders to %s require TLS.  Change id= whenever the\n", dom);
    printf("; policy changes.  Serve the policy at https://mta-sts.%s/.well-known/mta-sts.txt\n", dom);
    printf("; (with a certificate valid for mta-sts.%s):\n", dom);
    for (const char *p = policy; *p;) {
        const char *nl = strchr(p, '\n');
        printf(";   %.*s\n", (int)(nl - p), p);
        p = nl + 1;
    }
    printf("; and switch mode to enforce once the TLS reports are clean.\n");
    snprintf(name, sizeof(name), "_mta-sts.%s", dom);
    snprintf(text, sizeof(text), "v=STSv1; id=%016llx", (unsigned long long)fnv1a(policy));
    zone_txt(name, text);
    snprintf(name, sizeof(name), "mta-sts.%s", dom);
    snprintf(text, sizeof(text), "%s.", host);
    zone_line(name, "CNAME", text);

    printf("\n; SMTP TLS reporting (RFC 8460): daily TLS reports to postmaster.\n");
    snprintf(name, sizeof(name), "_smtp._tls.%s", dom);
    snprintf(text, sizeof(text), "v=TLSRPTv1; rua=mailto:postmaster@%s", dom);
    zone_txt(name, text);

    records_srv(cfg, dom, host);
    if (r != NULL)
        dns_resolver_free(r);
    return EX_OK;
usage:
    fprintf(stderr, "usage: postel [-c FILE] dns records DOMAIN\n");
    return EX_USAGE;
}

/* ---- check ---- */

enum level { L_OK, L_WARN, L_FAIL };

struct check {
    struct dns_resolver *r;
    const struct config *cfg;
    const char *domain;
    int count[3];
};

static void say(struct check *c, enum level lv, const char *topic, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void say(struct check *c, enum level lv, const char *topic, const char *fmt, ...)
{
    static const char *const names[] = { "OK", "WARN", "FAIL" };
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    c->count[lv]++;
    printf("%-4s  %-8s %s\n", names[lv], topic, text);
}

/* TXT records at name whose text starts with prefix (case-insensitive),
 * followed by the end, a space or a ';'.  Copies up to max of them.
 * Returns the DNS status; *n_r counts the matching records. */
static enum dns_status txt_with_prefix(struct check *c, const char *name, const char *prefix, char out[][2048],
                                       int max, int *n_r, char *why, size_t why_size)
{
    struct dns_result res = { 0 };
    enum dns_status st = dns_query(c->r, name, DNS_T_TXT, &res);
    size_t pl = strlen(prefix);
    *n_r = 0;
    str_copy(why, res.why, why_size);
    for (size_t i = 0; st == DNS_OK && i < res.n; i++) {
        const struct dns_rr *rr = &res.rr[i];
        if (rr->type != DNS_T_TXT || rr->text == NULL || rr->text_len < pl ||
            strncasecmp(rr->text, prefix, pl) != 0)
            continue;
        char next = rr->text_len > pl ? rr->text[pl] : '\0';
        if (next != '\0' && next != ' ' && next != ';' && next != '\t')
            continue;
        if (*n_r < max)
            str_copy(out[*n_r], rr->text, 2048);
        (*n_r)++;
    }
    dns_result_free(&res);
    return st;
}

/* Forward-confirmed reverse DNS of one address. */
static void check_ptr(struct check *c, const struct dns_addr *a)
{
    char ip[64];
    dns_addr_format(a, ip, sizeof(ip));
    struct dns_result res = { 0 };
    enum dns_status st = dns_lookup_ptr(c->r, a, &res);
    if (st == DNS_TEMPFAIL) {
        say(c, L_FAIL, "rdns", "%s: PTR lookup failed: %s", ip, res.why);
    } else if (st != DNS_OK || res.n == 0) {
        say(c, L_FAIL, "rdns", "%s has no PTR record (many receivers refuse mail from it)", ip);
    } else {
        bool confirmed = false;
        const char *name = NULL;
        for (size_t i = 0; i < res.n && !confirmed; i++) {
            if (res.rr[i].name == NULL)
                continue;
            name = res.rr[i].name;
            struct dns_addr *addrs = NULL;
            size_t n = 0;
            char why[160];
            dns_lookup_addrs(c->r, name, a->family, &addrs, &n, why, sizeof(why));
            for (size_t k = 0; k < n; k++)
                confirmed = confirmed || memcmp(&addrs[k].u, &a->u, a->family == AF_INET ? 4 : 16) == 0;
            free(addrs);
        }
        if (confirmed)
            say(c, L_OK, "rdns", "%s -> %s (forward-confirmed)", ip, name);
        else
            say(c, L_WARN, "rdns", "%s -> %s, which does not resolve back to %s", ip, name ? name : "?", ip);
    }
    dns_result_free(&res);
}

static void check_mx_host(struct check *c, const struct dns_mx *mx)
{
    struct dns_addr *addrs = NULL;
    size_t n = 0;
    char why[160], list[512] = "", buf[64];
    enum dns_status st = dns_lookup_addrs(c->r, mx->host, AF_UNSPEC, &addrs, &n, why, sizeof(why));
    if (st != DNS_OK || n == 0) {
        say(c, L_FAIL, "mx", "%s has no address (%s)", mx->host, st == DNS_TEMPFAIL ? why : dns_status_name(st));
        free(addrs);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof(list) - l, "%s%s", l ? " " : "", dns_addr_format(&addrs[i], buf, sizeof(buf)));
    }
    say(c, L_OK, "mx", "%s resolves to %s", mx->host, list);
    struct dns_result res = { 0 };
    if (dns_query(c->r, mx->host, DNS_T_A, &res) == DNS_OK && res.canon[0] &&
        strcasecmp(res.canon, mx->host) != 0)
        say(c, L_WARN, "mx", "%s is a CNAME for %s (MX targets must not be aliases, RFC 2181 10.3)", mx->host,
            res.canon);
    dns_result_free(&res);
    for (size_t i = 0; i < n && i < CHECK_ADDRS_MAX; i++)
        check_ptr(c, &addrs[i]);
    free(addrs);
}

/* Returns false when the domain does not exist (nothing else to check). */
static bool check_mx(struct check *c)
{
    struct dns_mx_list l;
    enum dns_status st = dns_lookup_mx(c->r, c->domain, &l);
    bool go_on = true;
    if (st == DNS_NXDOMAIN) {
        say(c, L_FAIL, "mx", "%s does not exist (NXDOMAIN)", c->domain);
        go_on = false;
    } else if (st == DNS_TEMPFAIL || st == DNS_BADNAME) {
        say(c, L_FAIL, "mx", "MX lookup failed: %s", st == DNS_BADNAME ? "not a valid name" : l.why);
    } else if (st == DNS_NODATA) {
        struct dns_addr *addrs = NULL;
        size_t n = 0;
        char why[160];
        if (dns_lookup_addrs(c->r, c->domain, AF_UNSPEC, &addrs, &n, why, sizeof(why)) == DNS_OK)
            say(c, L_WARN, "mx", "no MX record: mail goes to the address of %s itself (implicit MX)", c->domain);
        else
            say(c, L_FAIL, "mx", "no MX record and no address: %s cannot receive mail", c->domain);
        free(addrs);
    } else if (l.null_mx) {
        say(c, L_WARN, "mx", "null MX (RFC 7505): %s accepts no mail", c->domain);
    } else {
        char list[1024] = "";
        for (size_t i = 0; i < l.n; i++) {
            size_t len = strlen(list);
            snprintf(list + len, sizeof(list) - len, "%s%u %s", i ? ", " : "", l.mx[i].pref, l.mx[i].host);
        }
        say(c, L_OK, "mx", "%zu MX record%s: %s", l.n, l.n == 1 ? "" : "s", list);
        for (size_t i = 0; i < l.n && i < CHECK_MX_MAX; i++)
            check_mx_host(c, &l.mx[i]);
    }
    dns_mx_list_free(&l);
    return go_on;
}

static bool has_term(const char *rec, const char *term)
{
    size_t n = strlen(term);
    for (const char *p = rec; (p = strcasestr(p, term)) != NULL; p += n) {
        bool start = p == rec || p[-1] == ' ' || p[-1] == '+' || p[-1] == '-' || p[-1] == '~' || p[-1] == '?';
        char e = p[n];
        if (start && (e == '\0' || e == ' ' || e == ':' || e == '/'))
            return true;
    }
    return false;
}

/* Evaluates the record for an address no sane record lists, which walks
 * every include and redirect: the DNS-lookup count and the verdict for
 * strangers. */
static void check_spf_eval(struct check *c)
{
    struct spf_dns dns;
    struct spf_response resp;
    char sender[DNS_NAME_MAX + 16];
    snprintf(sender, sizeof(sender), "postmaster@%s", c->domain);
    struct spf_request req = { .ip = "100::1", .helo = c->domain, .mail_from = sender,
                               .receiver = c->cfg->hostname };
    spf_dns_use_resolver(&dns, c->r);
    enum spf_result res = spf_check_mailfrom(&dns, &req, &resp);
    if (res == SPF_PERMERROR) {
        say(c, L_FAIL, "spf", "permerror: %s", resp.problem);
        return;
    }
    if (res == SPF_TEMPERROR) {
        say(c, L_FAIL, "spf", "temperror while evaluating: %s", resp.problem);
        return;
    }
    say(c, resp.dns_terms > 8 ? L_WARN : L_OK, "spf", "%u of %d DNS lookups used (RFC 7208 4.6.4)",
        resp.dns_terms, SPF_MAX_DNS_TERMS);
    if (res == SPF_PASS)
        say(c, L_FAIL, "spf", "any address passes (%s): the record authorizes the whole Internet",
            resp.mechanism[0] ? resp.mechanism : "pass");
    else if (res == SPF_NEUTRAL || res == SPF_NONE)
        say(c, L_WARN, "spf", "unlisted senders get %s: end the record with -all or ~all", spf_result_name(res));
    else
        say(c, L_OK, "spf", "unlisted senders get %s", spf_result_name(res));
}

static void check_spf(struct check *c)
{
    char recs[2][2048], why[160], err[256];
    int n;
    enum dns_status st = txt_with_prefix(c, c->domain, "v=spf1", recs, 2, &n, why, sizeof(why));
    if (st == DNS_TEMPFAIL) {
        say(c, L_FAIL, "spf", "TXT lookup failed: %s", why);
        return;
    }
    if (n == 0) {
        say(c, L_FAIL, "spf", "no SPF record at %s (receivers cannot tell who may send for it)", c->domain);
        return;
    }
    if (n > 1) {
        say(c, L_FAIL, "spf", "%d SPF records at %s: a permerror (RFC 7208 4.5); merge them", n, c->domain);
        return;
    }
    struct spf_record *rec;
    if (spf_record_parse(recs[0], strlen(recs[0]), &rec, err, sizeof(err)) < 0) {
        say(c, L_FAIL, "spf", "syntax error in \"%s\": %s", recs[0], err);
        return;
    }
    spf_record_free(rec);
    say(c, L_OK, "spf", "\"%s\"", recs[0]);
    if (has_term(recs[0], "ptr"))
        say(c, L_WARN, "spf", "the ptr mechanism is slow and discouraged (RFC 7208 5.5)");
    check_spf_eval(c);
}

static void check_dmarc_record(struct check *c, const char *at, const struct dmarc_record *rec, bool inherited)
{
    char text[2048];
    dmarc_record_format(rec, text, sizeof(text));
    say(c, L_OK, "dmarc", "\"%s\" at _dmarc.%s%s", text, at,
        inherited ? " (the Organizational Domain's record: sp applies)" : "");
    enum dmarc_policy p = inherited ? rec->sp : rec->p;
    if (!rec->p_valid)
        say(c, L_WARN, "dmarc", "no valid p tag: receivers act as if p=none");
    else if (p == DMARC_POLICY_NONE)
        say(c, L_WARN, "dmarc", "policy none: monitoring only, spoofed mail is still delivered");
    if (rec->pct < 100 && p != DMARC_POLICY_NONE)
        say(c, L_WARN, "dmarc", "pct=%u: the policy applies to %u%% of failing mail only", rec->pct, rec->pct);
    if (rec->n_rua == 0)
        say(c, L_WARN, "dmarc", "no rua: nobody receives aggregate reports");
    struct dmarc_dns dns;
    dmarc_dns_use_resolver(&dns, c->r);
    for (int i = 0; i < rec->n_rua; i++) {
        int ok = dmarc_rua_allowed(&dns, at, rec->rua[i].addr);
        if (ok == 0)
            say(c, L_WARN, "dmarc", "rua %s is outside %s and has no %s._report._dmarc authorization (RFC 7489 7.1)",
                rec->rua[i].addr, at, at);
        else if (ok < 0)
            say(c, L_WARN, "dmarc", "rua %s: authorization lookup failed", rec->rua[i].addr);
    }
}

static void check_dmarc(struct check *c)
{
    struct dmarc_dns dns;
    struct dmarc_record rec;
    char why[600], org[DNS_NAME_MAX + 2];
    dmarc_dns_use_resolver(&dns, c->r);
    enum dmarc_lookup lk = dmarc_lookup_at(&dns, c->domain, &rec, why, sizeof(why));
    const char *at = c->domain;
    if (lk == DMARC_LOOKUP_NONE && dmarc_org_domain(c->domain, org, sizeof(org)) == 0 &&
        strcmp(org, c->domain) != 0) {
        lk = dmarc_lookup_at(&dns, org, &rec, why, sizeof(why));
        at = org;
    }
    switch (lk) {
    case DMARC_LOOKUP_FOUND: check_dmarc_record(c, at, &rec, at != c->domain); break;
    case DMARC_LOOKUP_NONE:
        say(c, L_FAIL, "dmarc", "no DMARC record at _dmarc.%s (Gmail and Yahoo require one of bulk senders)",
            c->domain);
        break;
    case DMARC_LOOKUP_MULTIPLE: say(c, L_FAIL, "dmarc", "%s: receivers ignore them all", why); break;
    case DMARC_LOOKUP_INVALID: say(c, L_FAIL, "dmarc", "%s", why); break;
    case DMARC_LOOKUP_TEMPFAIL: say(c, L_FAIL, "dmarc", "%s", why); break;
    }
}

/* The p= of a key record, white space removed. */
static void key_p(const char *rec, char *out, size_t size)
{
    size_t n = 0;
    const char *p = rec;
    out[0] = '\0';
    while ((p = strstr(p, "p=")) != NULL) {
        if (p == rec || p[-1] == ';' || p[-1] == ' ' || p[-1] == '\t')
            break;
        p += 2;
    }
    if (p == NULL)
        return;
    for (p += 2; *p && *p != ';' && n + 1 < size; p++)
        if (*p != ' ' && *p != '\t')
            out[n++] = *p;
    out[n] = '\0';
}

static void check_dkim_key(struct check *c, const struct dkim_key *key)
{
    char name[DNS_NAME_MAX + 32], why[160], ours[2048], theirs[2048];
    char recs[4][2048];
    int n;
    struct strbuf sb;
    strbuf_init(&sb, 16 * 1024);
    dkim_key_record(key, &sb);
    key_p(sb.data ? sb.data : "", ours, sizeof(ours));
    strbuf_free(&sb);
    snprintf(name, sizeof(name), "%s._domainkey.%s", key->selector, c->domain);
    enum dns_status st = txt_with_prefix(c, name, "v=DKIM1", recs, 4, &n, why, sizeof(why));
    if (st == DNS_TEMPFAIL) {
        say(c, L_FAIL, "dkim", "%s: lookup failed: %s", name, why);
        return;
    }
    if (n == 0) {
        /* v= is optional in key records (RFC 6376 3.6.1): look for p= too. */
        st = txt_with_prefix(c, name, "k=", recs, 4, &n, why, sizeof(why));
        if (n == 0)
            st = txt_with_prefix(c, name, "p=", recs, 4, &n, why, sizeof(why));
    }
    if (n == 0) {
        say(c, L_FAIL, "dkim", "selector %s: no key record at %s (publish it: postel dns records %s)",
            key->selector, name, c->domain);
        return;
    }
    key_p(recs[0], theirs, sizeof(theirs));
    if (strcmp(ours, theirs) == 0)
        say(c, L_OK, "dkim", "selector %s publishes our %s key", key->selector,
            key->type == DKIM_KEY_RSA ? "RSA" : "Ed25519");
    else if (theirs[0] == '\0')
        say(c, L_FAIL, "dkim", "selector %s: the key is revoked (empty p=)", key->selector);
    else
        say(c, L_FAIL, "dkim", "selector %s: the published key is not the one %s signs with", key->selector,
            c->cfg->hostname);
}

static void check_dkim(struct check *c)
{
    struct dkim_key keys[DKIM_MAX_SIGN_KEYS];
    char err[512];
    int n = dkim_keys_for_domain(c->cfg, c->domain, keys, DKIM_MAX_SIGN_KEYS, err, sizeof(err));
    if (n < 0) {
        say(c, L_FAIL, "dkim", "a DKIM key is configured but unusable: %s", err);
        return;
    }
    if (n == 0)
        say(c, L_WARN, "dkim", "no DKIM key for %s here, so no selector to check (postel dkim keygen %s)",
            c->domain, c->domain);
    for (int i = 0; i < n; i++) {
        check_dkim_key(c, &keys[i]);
        dkim_key_free(&keys[i]);
    }
}

static void check_tls_policies(struct check *c)
{
    char name[DNS_NAME_MAX + 32], recs[2][2048], why[160];
    int n;
    snprintf(name, sizeof(name), "_mta-sts.%s", c->domain);
    enum dns_status st = txt_with_prefix(c, name, "v=STSv1", recs, 2, &n, why, sizeof(why));
    if (st == DNS_TEMPFAIL)
        say(c, L_FAIL, "mta-sts", "%s: lookup failed: %s", name, why);
    else if (n == 0)
        say(c, L_WARN, "mta-sts", "no MTA-STS record at %s: senders cannot insist on TLS (RFC 8461)", name);
    else if (n > 1)
        say(c, L_FAIL, "mta-sts", "%d records at %s: senders ignore them (RFC 8461 3.1)", n, name);
    else if (strstr(recs[0], "id=") == NULL)
        say(c, L_FAIL, "mta-sts", "\"%s\" has no id= (RFC 8461 3.1)", recs[0]);
    else
        say(c, L_OK, "mta-sts", "\"%s\" (the policy file is not fetched)", recs[0]);

    snprintf(name, sizeof(name), "_smtp._tls.%s", c->domain);
    st = txt_with_prefix(c, name, "v=TLSRPTv1", recs, 2, &n, why, sizeof(why));
    if (st == DNS_TEMPFAIL)
        say(c, L_FAIL, "tls-rpt", "%s: lookup failed: %s", name, why);
    else if (n == 0)
        say(c, L_WARN, "tls-rpt", "no TLS-RPT record at %s: nobody hears of TLS failures (RFC 8460)", name);
    else if (n > 1)
        say(c, L_FAIL, "tls-rpt", "%d records at %s (RFC 8460 3)", n, name);
    else if (strstr(recs[0], "rua=") == NULL)
        say(c, L_FAIL, "tls-rpt", "\"%s\" has no rua= (RFC 8460 3)", recs[0]);
    else
        say(c, L_OK, "tls-rpt", "\"%s\"", recs[0]);
}

int cli_check(const struct config *cfg, int argc, char **argv)
{
    const char *domain = NULL, *timeout = NULL;
    const struct opt opts[] = { { "timeout", &timeout }, { NULL, NULL } };
    if (parse_args("check", argc, argv, 0, opts, &domain) < 0 || domain == NULL) {
        fprintf(stderr, "usage: postel [-c FILE] check DOMAIN [--timeout SECONDS]\n");
        return EX_USAGE;
    }
    char dom[DNS_NAME_MAX + 2];
    str_copy(dom, domain, sizeof(dom));
    str_lower(dom);
    size_t dl = strlen(dom);
    if (dl > 0 && dom[dl - 1] == '.')
        dom[--dl] = '\0';
    if (dl == 0 || !dns_name_valid(dom)) {
        fprintf(stderr, "postel check: %s is not a domain name\n", domain);
        return EX_USAGE;
    }
    struct check c = { .cfg = cfg, .domain = dom };
    c.r = open_resolver(cfg, timeout);
    if (c.r == NULL)
        return EX_UNAVAILABLE;
    printf("Checking %s\n", dom);
    if (check_mx(&c)) {
        check_spf(&c);
        check_dmarc(&c);
        check_dkim(&c);
        check_tls_policies(&c);
    }
    printf("%s: %d OK, %d WARN, %d FAIL\n", dom, c.count[L_OK], c.count[L_WARN], c.count[L_FAIL]);
    dns_resolver_free(c.r);
    return c.count[L_FAIL] ? 1 : EX_OK;
}
