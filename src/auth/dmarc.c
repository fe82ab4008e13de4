/*
 * DMARC evaluation (RFC 7489 6.6): record syntax, discovery, the
 * Organizational Domain, alignment and the policy to apply.
 */
#include "auth/dmarc.h"

#include <ctype.h>
#include <idn2.h>
#include <libpsl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"
#include "mime/mime.h"

#define DMARC_FROM_VALUE_MAX (64u * 1024)   /* bytes of one unfolded From value */

const char *dmarc_result_name(enum dmarc_result r)
{
    switch (r) {
    case DMARC_RESULT_PASS: return "pass";
    case DMARC_RESULT_FAIL: return "fail";
    case DMARC_RESULT_TEMPERROR: return "temperror";
    case DMARC_RESULT_PERMERROR: return "permerror";
    case DMARC_RESULT_NONE: break;
    }
    return "none";
}

const char *dmarc_policy_name(enum dmarc_policy p)
{
    switch (p) {
    case DMARC_POLICY_QUARANTINE: return "quarantine";
    case DMARC_POLICY_REJECT: return "reject";
    case DMARC_POLICY_NONE: break;
    }
    return "none";
}

/* ---- record syntax ---- */

static bool is_wsp(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* A [s, e) slice of the record. */
struct slice {
    const char *s, *e;
};

static void slice_trim(struct slice *v)
{
    while (v->s < v->e && is_wsp(*v->s))
        v->s++;
    while (v->e > v->s && is_wsp(v->e[-1]))
        v->e--;
}

static bool slice_is(const struct slice *v, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(v->e - v->s) == n && strncasecmp(v->s, word, n) == 0;
}

static int parse_policy(const struct slice *v, enum dmarc_policy *p)
{
    if (slice_is(v, "none"))
        *p = DMARC_POLICY_NONE;
    else if (slice_is(v, "quarantine"))
        *p = DMARC_POLICY_QUARANTINE;
    else if (slice_is(v, "reject"))
        *p = DMARC_POLICY_REJECT;
    else
        return -1;
    return 0;
}

/* 1*DIGIT within max.  0 or -1. */
static int parse_uint(const struct slice *v, uint64_t max, uint64_t *out)
{
    uint64_t n = 0;
    if (v->s == v->e)
        return -1;
    for (const char *p = v->s; p < v->e; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (uint64_t)(*p - '0');
        if (n > max)
            return -1;
    }
    *out = n;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A mailbox we are willing to send to: local@domain, printable ASCII,
 * no white space, a valid domain name with at least one dot. */
static bool report_addr_ok(const char *a)
{
    const char *at = strrchr(a, '@');
    if (at == NULL || at == a || at[1] == '\0')
        return false;
    for (const char *p = a; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || *p == '<' || *p == '>' ||
            *p == ',' || *p == '"' || *p == '\\')
            return false;
    const char *dom = at + 1;
    if (strchr(dom, '.') == NULL || !dns_name_valid(dom) || dom[strlen(dom) - 1] == '.')
        return false;
    for (const char *p = dom; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '.' || *p == '_'))
            return false;
    return true;
}

/* One DMARC URI (RFC 7489 6.2): "mailto:" address [ "!" size [unit] ].
 * Other schemes are skipped (we only send mail).  0 kept, -1 not. */
static int parse_uri(struct slice v, struct dmarc_uri *u)
{
    slice_trim(&v);
    static const char scheme[] = "mailto:";
    if ((size_t)(v.e - v.s) <= sizeof(scheme) - 1 || strncasecmp(v.s, scheme, sizeof(scheme) - 1) != 0)
        return -1;
    v.s += sizeof(scheme) - 1;
    const char *bang = memchr(v.s, '!', (size_t)(v.e - v.s));
    struct slice addr = { v.s, bang ? bang : v.e };
    u->max_size = 0;
    if (bang != NULL) {
        struct slice sz = { bang + 1, v.e };
        uint64_t mult = 1;
        if (sz.e > sz.s) {
            switch (tolower((unsigned char)sz.e[-1])) {
            case 'k': mult = 1024ull; break;
            case 'm': mult = 1024ull * 1024; break;
            case 'g': mult = 1024ull * 1024 * 1024; break;
            case 't': mult = 1024ull * 1024 * 1024 * 1024; break;
            default: break;
            }
            if (mult != 1)
                sz.e--;
        }
        uint64_t n;
        if (parse_uint(&sz, UINT64_MAX / mult, &n) < 0)
            return -1;
        u->max_size = n * mult;
    }
    /* mailto headers ("?subject=...") are not ours to use. */
    const char *q = memchr(addr.s, '?', (size_t)(addr.e - addr.s));
    if (q != NULL)
        addr.e = q;
    size_t o = 0;
    for (const char *p = addr.s; p < addr.e; p++) {
        char c = *p;
        if (c == '%') {
            if (addr.e - p < 3 || hexval(p[1]) < 0 || hexval(p[2]) < 0)
                return -1;
            c = (char)(hexval(p[1]) * 16 + hexval(p[2]));
            p += 2;
        }
        if (o + 1 >= sizeof(u->addr))
            return -1;
        u->addr[o++] = c;
    }
    u->addr[o] = '\0';
    if (o != strlen(u->addr) || !report_addr_ok(u->addr))
        return -1;
    /* Domain part lower-case: the address is also a key for 7.1 checks. */
    for (char *p = strrchr(u->addr, '@'); *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return 0;
}

static int parse_uri_list(struct slice v, struct dmarc_uri *uris)
{
    int n = 0;
    const char *p = v.s;
    while (p <= v.e && n < DMARC_URI_MAX) {
        const char *comma = memchr(p, ',', (size_t)(v.e - p));
        struct slice one = { p, comma ? comma : v.e };
        if (parse_uri(one, &uris[n]) == 0)
            n++;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return n;
}

/* Colon-separated list of tokens, each in allowed (a NULL allowed: any
 * alphanumeric token).  Copied into out; 0 or -1. */
static int parse_colon_list(const struct slice *v, const char *const *allowed, char *out, size_t size)
{
    size_t n = (size_t)(v->e - v->s);
    if (n == 0 || n >= size)
        return -1;
    char buf[64];
    if (n >= sizeof(buf))
        return -1;
    memcpy(buf, v->s, n);
    buf[n] = '\0';
    size_t o = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ":", &save); tok != NULL; tok = strtok_r(NULL, ":", &save)) {
        char *t = str_trim(tok);
        bool ok = *t != '\0';
        if (allowed != NULL) {
            ok = false;
            for (int i = 0; allowed[i]; i++)
                ok = ok || strcasecmp(t, allowed[i]) == 0;
        } else {
            for (char *c = t; *c; c++)
                ok = ok && isalnum((unsigned char)*c);
        }
        if (!ok)
            return -1;
        o += (size_t)snprintf(out + o, size - o, "%s%s", o ? ":" : "", t);
    }
    if (o == 0)
        return -1;
    str_lower(out);
    return 0;
}

static void record_defaults(struct dmarc_record *rec)
{
    memset(rec, 0, sizeof(*rec));
    rec->pct = 100;
    rec->ri = 86400;
    str_copy(rec->fo, "0", sizeof(rec->fo));
    str_copy(rec->rf, "afrf", sizeof(rec->rf));
}

enum tag_bit {
    T_P = 1 << 0, T_SP = 1 << 1, T_NP = 1 << 2, T_PCT = 1 << 3, T_ADKIM = 1 << 4, T_ASPF = 1 << 5,
    T_RUA = 1 << 6, T_RUF = 1 << 7, T_FO = 1 << 8, T_RI = 1 << 9, T_RF = 1 << 10,
};

/* Applies one tag after v=.  The first occurrence of a tag wins.  Sets
 * *sp_bad when sp is present but not a policy. */
static void apply_tag(struct dmarc_record *rec, const struct slice *name, const struct slice *val,
                      unsigned *seen, bool *sp_bad)
{
    static const char *const fo_ok[] = { "0", "1", "d", "s", NULL };
    static const struct { const char *name; unsigned bit; } tags[] = {
        { "p", T_P }, { "sp", T_SP }, { "np", T_NP }, { "pct", T_PCT }, { "adkim", T_ADKIM },
        { "aspf", T_ASPF }, { "rua", T_RUA }, { "ruf", T_RUF }, { "fo", T_FO }, { "ri", T_RI },
        { "rf", T_RF },
    };
    unsigned bit = 0;
    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
        if (slice_is(name, tags[i].name))
            bit = tags[i].bit;
    if (bit == 0 || (*seen & bit))
        return;                              /* unknown tags are ignored (6.3) */
    *seen |= bit;
    uint64_t n;
    switch (bit) {
    case T_P: rec->p_valid = parse_policy(val, &rec->p) == 0; break;
    case T_SP:
        rec->sp_set = parse_policy(val, &rec->sp) == 0;
        *sp_bad = !rec->sp_set;
        break;
    case T_NP: rec->np_set = parse_policy(val, &rec->np) == 0; break;
    case T_PCT:
        if (parse_uint(val, 100, &n) == 0)
            rec->pct = (unsigned)n;
        break;
    case T_ADKIM:
    case T_ASPF: {
        enum dmarc_align *a = bit == T_ADKIM ? &rec->adkim : &rec->aspf;
        if (slice_is(val, "s"))
            *a = DMARC_ALIGN_STRICT;
        break;
    }
    case T_RUA: rec->n_rua = parse_uri_list(*val, rec->rua); break;
    case T_RUF: rec->n_ruf = parse_uri_list(*val, rec->ruf); break;
    case T_FO:
        if (parse_colon_list(val, fo_ok, rec->fo, sizeof(rec->fo)) < 0)
            str_copy(rec->fo, "0", sizeof(rec->fo));
        break;
    case T_RI:
        if (parse_uint(val, UINT32_MAX, &n) == 0)
            rec->ri = (uint32_t)n;
        break;
    case T_RF:
        if (parse_colon_list(val, NULL, rec->rf, sizeof(rec->rf)) < 0)
            str_copy(rec->rf, "afrf", sizeof(rec->rf));
        break;
    default: break;
    }
}

/* Splits the next "name=value" off *p (up to ';' or end).  Returns false at
 * the end of the record. */
static bool next_tag(const char **p, const char *end, struct slice *name, struct slice *val, bool *has_eq)
{
    if (*p == NULL)
        return false;
    const char *semi = memchr(*p, ';', (size_t)(end - *p));
    const char *tag_end = semi ? semi : end;
    const char *eq = memchr(*p, '=', (size_t)(tag_end - *p));
    *has_eq = eq != NULL;
    name->s = *p;
    name->e = eq ? eq : tag_end;
    val->s = eq ? eq + 1 : tag_end;
    val->e = tag_end;
    slice_trim(name);
    slice_trim(val);
    *p = semi ? semi + 1 : NULL;
    return true;
}

int dmarc_record_parse(const char *text, size_t len, struct dmarc_record *rec, char *err, size_t err_size)
{
    record_defaults(rec);
    if (err_size > 0)
        err[0] = '\0';
    const char *p = text, *end = text + len;
    struct slice name, val;
    bool has_eq;
    /* RFC 7489 6.4: "v" first, and its value exactly DMARC1. */
    if (!next_tag(&p, end, &name, &val, &has_eq) || !has_eq || !slice_is(&name, "v") ||
        (size_t)(val.e - val.s) != 6 || memcmp(val.s, "DMARC1", 6) != 0)
        return 1;
    if (len > DMARC_RECORD_MAX) {
        snprintf(err, err_size, "record longer than %d bytes", DMARC_RECORD_MAX);
        return -1;
    }
    if (memchr(text, '\0', len) != NULL) {
        snprintf(err, err_size, "record holds a NUL byte");
        return -1;
    }
    unsigned seen = 0;
    bool sp_bad = false;
    while (next_tag(&p, end, &name, &val, &has_eq))
        if (has_eq && name.s < name.e)
            apply_tag(rec, &name, &val, &seen, &sp_bad);
    if (!rec->p_valid || sp_bad) {
        if (rec->n_rua == 0) {
            snprintf(err, err_size, "%s", !rec->p_valid ? "no valid p tag" : "bad sp tag");
            return -1;
        }
        /* 6.6.3 step 6: act as if p=none was published. */
        if (!rec->p_valid)
            rec->p = DMARC_POLICY_NONE;
        if (sp_bad)
            rec->sp_set = false;
    }
    if (!rec->sp_set)
        rec->sp = rec->p;
    if (!rec->np_set)
        rec->np = rec->sp;
    return 0;
}

static void format_uris(struct strbuf *sb, const char *tag, const struct dmarc_uri *u, int n)
{
    for (int i = 0; i < n; i++) {
        strbuf_printf(sb, "%s%s", i == 0 ? "; " : ",", i == 0 ? tag : "");
        strbuf_printf(sb, "%smailto:", i == 0 ? "=" : "");
        /* RFC 7489 6.2: "!" and "," would end the URI, ";" the tag; those
         * and anything not plainly safe in a mailto URI are %-encoded */
        for (const unsigned char *c = (const unsigned char *)u[i].addr; *c; c++) {
            if (isalnum(*c) || strchr("-._~@+=$'()*:/", *c) != NULL)
                strbuf_append(sb, (const char *)c, 1);
            else
                strbuf_printf(sb, "%%%02X", *c);
        }
        if (u[i].max_size) {
            /* The largest unit that says it exactly: "!10m", not "!10485760". */
            static const char units[] = "tgmk";
            unsigned long long v = u[i].max_size;
            char unit = '\0';
            for (int k = 0; k < 4 && unit == '\0'; k++) {
                unsigned long long m = 1ull << (10 * (4 - k));
                if (v % m == 0) {
                    v /= m;
                    unit = units[k];
                }
            }
            if (unit)
                strbuf_printf(sb, "!%llu%c", v, unit);
            else
                strbuf_printf(sb, "!%llu", v);
        }
    }
}

const char *dmarc_record_format(const struct dmarc_record *rec, char *buf, size_t size)
{
    struct strbuf sb;
    strbuf_init(&sb, 8192);
    strbuf_printf(&sb, "v=DMARC1; p=%s", dmarc_policy_name(rec->p));
    if (rec->sp_set)
        strbuf_printf(&sb, "; sp=%s", dmarc_policy_name(rec->sp));
    if (rec->np_set)
        strbuf_printf(&sb, "; np=%s", dmarc_policy_name(rec->np));
    if (rec->pct != 100)
        strbuf_printf(&sb, "; pct=%u", rec->pct);
    if (rec->adkim == DMARC_ALIGN_STRICT)
        strbuf_printf(&sb, "; adkim=s");
    if (rec->aspf == DMARC_ALIGN_STRICT)
        strbuf_printf(&sb, "; aspf=s");
    format_uris(&sb, "rua", rec->rua, rec->n_rua);
    format_uris(&sb, "ruf", rec->ruf, rec->n_ruf);
    if (strcmp(rec->fo, "0") != 0)
        strbuf_printf(&sb, "; fo=%s", rec->fo);
    if (rec->ri != 86400)
        strbuf_printf(&sb, "; ri=%u", rec->ri);
    if (strcmp(rec->rf, "afrf") != 0)
        strbuf_printf(&sb, "; rf=%s", rec->rf);
    snprintf(buf, size, "%s", sb.data ? sb.data : "");
    strbuf_free(&sb);
    return buf;
}

/* ---- DNS ---- */

static enum dns_status resolver_query(void *arg, const char *name, uint16_t type, struct dns_result *res)
{
    return dns_query(arg, name, type, res);
}

void dmarc_dns_use_resolver(struct dmarc_dns *d, struct dns_resolver *r)
{
    d->query = resolver_query;
    d->arg = r;
}

enum dmarc_lookup dmarc_lookup_at(const struct dmarc_dns *dns, const char *domain,
                                  struct dmarc_record *rec, char *why, size_t why_size)
{
    char name[DNS_NAME_MAX + 16];
    snprintf(why, why_size, "no DMARC record at _dmarc.%s", domain);
    if (snprintf(name, sizeof(name), "_dmarc.%s", domain) >= (int)sizeof(name) || !dns_name_valid(name))
        return DMARC_LOOKUP_NONE;
    struct dns_result res = { 0 };
    enum dns_status st = dns->query(dns->arg, name, DNS_T_TXT, &res);
    enum dmarc_lookup out = DMARC_LOOKUP_NONE;
    if (st == DNS_TEMPFAIL) {
        snprintf(why, why_size, "DNS lookup of %s failed: %s", name, res.why[0] ? res.why : "temporary error");
        out = DMARC_LOOKUP_TEMPFAIL;
    } else if (st == DNS_OK) {
        int found = 0, parsed = 0;
        struct dmarc_record tmp;
        char err[128];
        for (size_t i = 0; i < res.n && i < DMARC_TXT_MAX; i++) {
            if (res.rr[i].type != DNS_T_TXT || res.rr[i].text == NULL)
                continue;
            int rc = dmarc_record_parse(res.rr[i].text, res.rr[i].text_len, &tmp, err, sizeof(err));
            if (rc == 1)
                continue;                    /* not DMARC: discarded (6.6.3 step 3) */
            if (++found == 1) {
                parsed = rc;
                *rec = tmp;
                if (rc < 0)
                    snprintf(why, why_size, "invalid DMARC record at %s: %s", name, err);
            }
        }
        if (found > 1) {
            snprintf(why, why_size, "%d DMARC records at %s", found, name);
            out = DMARC_LOOKUP_MULTIPLE;
        } else if (found == 1) {
            out = parsed == 0 ? DMARC_LOOKUP_FOUND : DMARC_LOOKUP_INVALID;
            if (parsed == 0)
                why[0] = '\0';
        }
    }
    dns_result_free(&res);
    return out;
}

/* ---- domains ---- */

static pthread_once_t psl_once = PTHREAD_ONCE_INIT;
static const psl_ctx_t *psl_ctx;

static void psl_init(void)
{
    psl_ctx = psl_builtin();
    if (psl_ctx == NULL)
        psl_ctx = psl_latest(NULL);          /* the system's list file; kept for good */
}

/* Lower-cases and drops one trailing dot, in place.  0, or -1 when empty. */
static int domain_norm_inplace(char *d)
{
    size_t n = strlen(d);
    if (n > 0 && d[n - 1] == '.')
        d[--n] = '\0';
    str_lower(d);
    return n > 0 ? 0 : -1;
}

/* The same into out.  0, or -1 when empty or too long. */
static int domain_norm(const char *in, char *out, size_t size)
{
    if (str_copy(out, in, size) >= size)
        return -1;
    return domain_norm_inplace(out);
}

int dmarc_org_domain(const char *domain, char *out, size_t size)
{
    char d[DNS_NAME_MAX + 2];
    if (domain_norm(domain, d, sizeof(d)) < 0)
        return -1;
    pthread_once(&psl_once, psl_init);
    const char *reg = psl_ctx != NULL ? psl_registrable_domain(psl_ctx, d) : NULL;
    if (psl_ctx == NULL) {
        /* No list at all: the last two labels, the best guess left. */
        const char *last = strrchr(d, '.');
        reg = d;
        if (last != NULL)
            for (const char *p = last - 1; p > d; p--)
                if (*p == '.') {
                    reg = p + 1;
                    break;
                }
    }
    /* A public suffix itself has no registrable domain: it is its own. */
    return str_copy(out, reg != NULL ? reg : d, size) < size ? 0 : -1;
}

bool dmarc_aligned(const char *a, const char *b, enum dmarc_align mode)
{
    char x[DNS_NAME_MAX + 2], y[DNS_NAME_MAX + 2];
    if (a == NULL || b == NULL || domain_norm(a, x, sizeof(x)) < 0 || domain_norm(b, y, sizeof(y)) < 0)
        return false;
    if (strcmp(x, y) == 0)
        return true;
    if (mode == DMARC_ALIGN_STRICT)
        return false;
    char ox[DNS_NAME_MAX + 2], oy[DNS_NAME_MAX + 2];
    return dmarc_org_domain(x, ox, sizeof(ox)) == 0 && dmarc_org_domain(y, oy, sizeof(oy)) == 0 &&
           strcmp(ox, oy) == 0;
}

/* A From domain as DNS knows it: trimmed, no trailing dot, lower-case,
 * A-labels.  0, or -1 when it is no domain name (a literal, bad bytes). */
static int from_domain_norm(const char *in, char *out, size_t size)
{
    char tmp[DNS_NAME_MAX * 4];
    if (str_copy(tmp, in, sizeof(tmp)) >= sizeof(tmp))
        return -1;
    char *d = str_trim(tmp);
    bool ascii = true;
    for (const char *p = d; *p; p++)
        ascii = ascii && (unsigned char)*p < 0x80;
    if (!ascii) {
        char *a = NULL;
        if (idn2_to_ascii_8z(d, &a, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT) != IDN2_OK) {
            idn2_free(a);
            return -1;
        }
        size_t n = str_copy(out, a, size);
        idn2_free(a);
        if (n >= size)
            return -1;
    } else if (str_copy(out, d, size) >= size) {
        return -1;
    }
    if (domain_norm_inplace(out) < 0 || !dns_name_valid(out))
        return -1;
    for (const char *p = out; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '.' || *p == '_'))
            return -1;
    return out[0] == '.' ? -1 : 0;
}

/* The address parser recovers from broken lists as an IMAP ENVELOPE must
 * ("a@exa mple.org" gives the domain "exa").  DMARC must not evaluate a
 * domain the reader does not see, so each domain has to appear in the raw
 * value as "@domain" followed by white space and then the end, ',', '>',
 * ';' or a comment. */
static bool domain_in_value(const char *value, size_t len, const char *raw_domain)
{
    size_t dl = strlen(raw_domain);
    for (size_t i = 0; i + 1 + dl <= len; i++) {
        if (value[i] != '@' || strncasecmp(value + i + 1, raw_domain, dl) != 0)
            continue;
        size_t k = i + 1 + dl;
        while (k < len && (value[k] == ' ' || value[k] == '\t' || value[k] == '\r' || value[k] == '\n'))
            k++;
        if (k == len || value[k] == ',' || value[k] == '>' || value[k] == ';' || value[k] == '(')
            return true;
    }
    return false;
}

/* Adds a domain unless already there.  false when the list is full. */
static bool add_domain(char domains[][DNS_NAME_MAX + 2], int max, int *n, const char *d)
{
    for (int k = 0; k < *n; k++)
        if (strcmp(domains[k], d) == 0)
            return true;
    if (*n >= max)
        return false;
    str_copy(domains[(*n)++], d, DNS_NAME_MAX + 2);
    return true;
}

/* Adds the domains of one From value.  Every address whose domain is a
 * domain name is added, even from a malformed list (its policy should
 * still apply: a reader may well see that address); *bad is set when the
 * list was malformed, *full when domains did not fit. */
static void add_from_value(const char *value, size_t len, char domains[][DNS_NAME_MAX + 2], int max, int *n,
                           bool *bad, bool *full)
{
    struct mime_address *list = NULL;
    if (mime_address_parse(value, len, false, &list) < 0) {
        *bad = true;
        return;
    }
    int addresses = 0;
    for (const struct mime_address *a = list; a; a = a->next) {
        if (a->domain == NULL)
            continue;                        /* group start or end */
        char d[DNS_NAME_MAX + 2];
        addresses++;
        bool name_ok = from_domain_norm(a->domain, d, sizeof(d)) == 0;
        if (!name_ok || a->mailbox == NULL || a->mailbox[0] == '\0' || !domain_in_value(value, len, a->domain))
            *bad = true;
        if (name_ok && !add_domain(domains, max, n, d))
            *full = true;
    }
    mime_address_free(list);
    if (addresses == 0)
        *bad = true;
}

enum dmarc_from_status dmarc_from_domains(const char *msg, size_t len, char domains[][DNS_NAME_MAX + 2],
                                          int max, int *n_r)
{
    struct mime_header_iter it;
    struct mime_header_field f;
    int fields = 0;
    bool bad = false, full = false;
    *n_r = 0;
    mime_header_iter_init(&it, msg, len, 0);
    while (mime_header_iter_next(&it, &f)) {
        if (f.value == NULL || f.name_len != 4 || strncasecmp(f.name, "From", 4) != 0)
            continue;
        if (++fields > DMARC_FROM_FIELDS) {
            full = true;
            break;
        }
        struct strbuf v;
        strbuf_init(&v, DMARC_FROM_VALUE_MAX);
        if (mime_header_unfold(f.value, f.value_len, false, &v) < 0)
            bad = true;
        else
            add_from_value(v.data ? v.data : "", v.len, domains, max, n_r, &bad, &full);
        strbuf_free(&v);
    }
    if (fields == 0)
        return DMARC_FROM_MISSING;
    return full ? DMARC_FROM_TOO_MANY : bad ? DMARC_FROM_BAD : DMARC_FROM_OK;
}

/* ---- evaluation ---- */

/* DMARCbis: a domain is non-existent when A, AAAA and MX all answer
 * NXDOMAIN or NODATA.  A temporary failure counts as existing. */
static bool domain_nonexistent(const struct dmarc_dns *dns, const char *domain)
{
    static const uint16_t types[] = { DNS_T_A, DNS_T_AAAA, DNS_T_MX };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct dns_result res = { 0 };
        enum dns_status st = dns->query(dns->arg, domain, types[i], &res);
        dns_result_free(&res);
        if (st == DNS_NXDOMAIN)
            return true;
        if (st != DNS_NODATA)
            return false;
    }
    return true;
}

/* Discovery (6.6.3): the From domain, then its Organizational Domain.
 * Returns the lookup outcome; *at_org tells where the record was. */
static enum dmarc_lookup discover(const struct dmarc_dns *dns, struct dmarc_eval *ev, bool *at_org)
{
    *at_org = false;
    enum dmarc_lookup lk = dmarc_lookup_at(dns, ev->from_domain, &ev->rec, ev->why, sizeof(ev->why));
    str_copy(ev->record_domain, ev->from_domain, sizeof(ev->record_domain));
    if (lk != DMARC_LOOKUP_NONE || strcmp(ev->org_domain, ev->from_domain) == 0)
        return lk;
    *at_org = true;
    str_copy(ev->record_domain, ev->org_domain, sizeof(ev->record_domain));
    char why[sizeof(ev->why)];
    lk = dmarc_lookup_at(dns, ev->org_domain, &ev->rec, why, sizeof(why));
    if (lk == DMARC_LOOKUP_NONE)
        snprintf(ev->why, sizeof(ev->why), "no DMARC record for %s or %s", ev->from_domain, ev->org_domain);
    else
        str_copy(ev->why, why, sizeof(ev->why));
    return lk;
}

static void check_alignment(const struct dmarc_request *req, struct dmarc_eval *ev, bool *temp_r)
{
    *temp_r = false;
    if (req->spf_done && req->spf_domain != NULL &&
        dmarc_aligned(req->spf_domain, ev->from_domain, ev->rec.aspf)) {
        ev->spf_aligned = req->spf == SPF_PASS;
        *temp_r = req->spf == SPF_TEMPERROR;
    }
    for (int i = 0; i < req->n_dkim; i++) {
        const struct dkim_verdict *v = &req->dkim[i];
        if (!dmarc_aligned(v->d, ev->from_domain, ev->rec.adkim))
            continue;
        if (v->status == DKIM_PASS && !ev->dkim_aligned) {
            ev->dkim_aligned = true;
            domain_norm(v->d, ev->dkim_domain, sizeof(ev->dkim_domain));
        }
        if (v->status == DKIM_TEMPERROR)
            *temp_r = true;
    }
}

static enum dmarc_policy lower_policy(enum dmarc_policy p)
{
    return p == DMARC_POLICY_REJECT ? DMARC_POLICY_QUARANTINE : DMARC_POLICY_NONE;
}

/* Which of p, sp, np applies, then pct (6.6.4: a message not sampled gets
 * the next policy down). */
static void choose_policy(const struct dmarc_dns *dns, const struct dmarc_request *req, bool at_org,
                          struct dmarc_eval *ev)
{
    ev->policy_tag = "p";
    ev->policy = ev->rec.p;
    if (at_org) {
        if (ev->rec.np_set && domain_nonexistent(dns, ev->from_domain)) {
            ev->nonexistent = true;
            ev->policy_tag = "np";
            ev->policy = ev->rec.np;
        } else if (ev->rec.sp_set) {
            ev->policy_tag = "sp";
            ev->policy = ev->rec.sp;
        }
    }
    ev->disposition = ev->policy;
    if (ev->policy != DMARC_POLICY_NONE && ev->rec.pct < 100) {
        unsigned draw = req->rand_pct ? req->rand_pct(req->rand_arg) : (unsigned)(random_u64() % 100);
        if (draw >= ev->rec.pct) {
            ev->sampled_out = true;
            ev->disposition = lower_policy(ev->policy);
        }
    }
}

enum dmarc_result dmarc_evaluate(const struct dmarc_dns *dns, const struct dmarc_request *req,
                                 struct dmarc_eval *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->policy_tag = "p";
    if (req->from_domain == NULL ||
        from_domain_norm(req->from_domain, ev->from_domain, sizeof(ev->from_domain)) < 0 ||
        dmarc_org_domain(ev->from_domain, ev->org_domain, sizeof(ev->org_domain)) < 0) {
        snprintf(ev->why, sizeof(ev->why), "no usable From domain");
        return ev->result = DMARC_RESULT_PERMERROR;
    }
    bool at_org;
    switch (discover(dns, ev, &at_org)) {
    case DMARC_LOOKUP_FOUND: break;
    case DMARC_LOOKUP_TEMPFAIL: return ev->result = DMARC_RESULT_TEMPERROR;
    case DMARC_LOOKUP_INVALID: return ev->result = DMARC_RESULT_PERMERROR;
    case DMARC_LOOKUP_MULTIPLE:
    case DMARC_LOOKUP_NONE: return ev->result = DMARC_RESULT_NONE;
    }
    ev->have_record = true;
    bool temp;
    check_alignment(req, ev, &temp);
    if (ev->spf_aligned || ev->dkim_aligned)
        return ev->result = DMARC_RESULT_PASS;
    /* The policy is chosen (and reported) even when not applied. */
    choose_policy(dns, req, at_org, ev);
    if (temp) {
        snprintf(ev->why, sizeof(ev->why), "aligned SPF or DKIM check failed temporarily");
        ev->disposition = DMARC_POLICY_NONE;
        ev->sampled_out = false;
        return ev->result = DMARC_RESULT_TEMPERROR;
    }
    return ev->result = DMARC_RESULT_FAIL;
}
