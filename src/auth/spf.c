/*
 * SPF (RFC 7208).  Three parts, top to bottom:
 *   1. the record parser: a whole record is checked before anything is
 *      evaluated (4.6: a syntax error anywhere is a permerror);
 *   2. the macro expander (7), also used at parse time as a syntax check;
 *   3. check_host() (4), with the limits of 4.6.4 counted across include
 *      and redirect, and the explanation of 6.2.
 */
#include "auth/spf.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/util.h"

/* ------------------------------------------------------------------ */
/* small ASCII helpers (no locale)                                     */

static bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_alnum(int c) { return is_alpha(c) || is_digit(c); }
static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static bool span_ieq(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

const char *spf_result_name(enum spf_result r)
{
    static const char *const names[] = { "none", "neutral", "pass", "fail", "softfail",
                                         "temperror", "permerror" };
    return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}

/* ------------------------------------------------------------------ */
/* 1. records                                                          */

enum term_kind { TERM_MECH, TERM_REDIRECT, TERM_EXP, TERM_UNKNOWN_MOD };
enum mech { M_ALL, M_INCLUDE, M_A, M_MX, M_PTR, M_IP4, M_IP6, M_EXISTS };

static const char *const mech_names[] = { "all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists" };

struct spf_term {
    enum term_kind kind;
    enum mech mech;
    char qual;                    /* '+' '-' '~' '?' */
    const char *spec;             /* domain-spec or NULL */
    size_t spec_len;
    int cidr4, cidr6;             /* -1 when not given */
    struct dns_addr net;          /* ip4 / ip6 */
    const char *text;             /* the whole term, for reports */
    size_t text_len;
};

struct spf_record {
    char *buf;
    struct spf_term *terms;
    size_t n;
    int redirect, exp;            /* term index or -1 */
    bool has_all;
};

static int perr(char *err, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int perr(char *err, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && size)
        vsnprintf(err, size, fmt, ap);
    va_end(ap);
    return -1;
}

/* Record text for an error message: at most 60 octets, bytes outside
 * printable ASCII as \xNN. */
static const char *shown(const char *s, size_t n, char *buf, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < 60 && o + 5 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f)
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
    }
    buf[o] = '\0';
    return buf;
}

/* A prefix length: "0" or no leading zero, at most max (RFC 7208 5.6). */
static int parse_prefix(const char *s, size_t n, int max)
{
    int v = 0;
    if (n == 0 || n > 3 || (s[0] == '0' && n > 1))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= max ? v : -1;
}

/* ip4-network: four qnums without leading zeros (RFC 7208 5.6). */
static int parse_ip4(const char *s, size_t n, struct in_addr *out)
{
    unsigned char b[4];
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part) {
            if (i >= n || s[i] != '.')
                return -1;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < n && is_digit(s[i]) && i - start < 3)
            v = v * 10 + (unsigned)(s[i++] - '0');
        if (i == start || v > 255 || (i - start > 1 && s[start] == '0'))
            return -1;
        b[part] = (unsigned char)v;
    }
    if (i != n)
        return -1;
    memcpy(out, b, 4);
    return 0;
}

static int parse_ip6(const char *s, size_t n, struct in6_addr *out)
{
    char tmp[64];
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return inet_pton(AF_INET6, tmp, out) == 1 ? 0 : -1;
}

/* Cuts a dual-cidr-length ("/N", "//M", "/N//M") off the end of s. */
static int split_dual_cidr(const char *s, size_t *len, int *c4, int *c6)
{
    size_t n = *len, k = n;
    *c4 = *c6 = -1;
    while (k > 0 && is_digit(s[k - 1]))
        k--;
    if (k < n && k >= 2 && s[k - 1] == '/' && s[k - 2] == '/') {
        if ((*c6 = parse_prefix(s + k, n - k, 128)) < 0)
            return -1;
        n = k - 2;
        k = n;
        while (k > 0 && is_digit(s[k - 1]))
            k--;
    }
    if (k < n && k >= 1 && s[k - 1] == '/') {
        if ((*c4 = parse_prefix(s + k, n - k, 32)) < 0)
            return -1;
        n = k - 1;
    }
    *len = n;
    return 0;
}

/* ":" domain-spec, required (include, exists) or optional (a, mx, ptr). */
static int parse_spec(struct spf_term *t, const char *rest, size_t n, bool required, char *err, size_t es)
{
    if (n == 0) {
        if (required)
            return perr(err, es, "'%s' needs ':domain'", mech_names[t->mech]);
        return 0;
    }
    if (rest[0] != ':' || n == 1)
        return perr(err, es, "bad argument to '%s'", mech_names[t->mech]);
    char show[256];
    if (!spf_domain_spec_valid(rest + 1, n - 1))
        return perr(err, es, "invalid domain-spec '%s'", shown(rest + 1, n - 1, show, sizeof(show)));
    t->spec = rest + 1;
    t->spec_len = n - 1;
    return 0;
}

static int parse_ip_mech(struct spf_term *t, const char *rest, size_t n, char *err, size_t es)
{
    if (n < 2 || rest[0] != ':')
        return perr(err, es, "'%s' needs ':address'", mech_names[t->mech]);
    rest++;
    n--;
    const char *slash = memchr(rest, '/', n);
    size_t alen = slash ? (size_t)(slash - rest) : n;
    if (t->mech == M_IP4) {
        t->net.family = AF_INET;
        if (parse_ip4(rest, alen, &t->net.u.v4) < 0)
            return perr(err, es, "invalid ip4 address");
    } else {
        t->net.family = AF_INET6;
        if (parse_ip6(rest, alen, &t->net.u.v6) < 0)
            return perr(err, es, "invalid ip6 address");
    }
    if (slash) {
        int max = t->mech == M_IP4 ? 32 : 128;
        int v = parse_prefix(slash + 1, n - alen - 1, max);
        if (v < 0)
            return perr(err, es, "invalid prefix length");
        if (t->mech == M_IP4)
            t->cidr4 = v;
        else
            t->cidr6 = v;
    }
    return 0;
}

static int parse_mechanism(struct spf_term *t, const char *s, size_t n, char *err, size_t es)
{
    size_t k = 0;
    t->qual = '+';
    if (n > 0 && strchr("+-~?", s[0]) && s[0] != '\0') {
        t->qual = s[0];
        k = 1;
    }
    size_t name = k;
    while (k < n && is_alnum(s[k]))
        k++;
    const char *rest = s + k;
    size_t rn = n - k;
    char show[256];
    if (rn > 0 && rest[0] != ':' && rest[0] != '/')
        return perr(err, es, "unknown term '%s'", shown(s, n, show, sizeof(show)));
    size_t m;
    for (m = 0; m < sizeof(mech_names) / sizeof(mech_names[0]); m++)
        if (span_ieq(s + name, k - name, mech_names[m]))
            break;
    if (m == sizeof(mech_names) / sizeof(mech_names[0]))
        return perr(err, es, "unknown mechanism '%s'", shown(s + name, k - name, show, sizeof(show)));
    t->mech = (enum mech)m;
    switch (t->mech) {
    case M_ALL:
        return rn == 0 ? 0 : perr(err, es, "'all' takes no argument");
    case M_INCLUDE:
    case M_EXISTS:
        return parse_spec(t, rest, rn, true, err, es);
    case M_PTR:
        return parse_spec(t, rest, rn, false, err, es);
    case M_A:
    case M_MX:
        if (split_dual_cidr(rest, &rn, &t->cidr4, &t->cidr6) < 0)
            return perr(err, es, "invalid prefix length in '%s'", mech_names[t->mech]);
        return parse_spec(t, rest, rn, false, err, es);
    case M_IP4:
    case M_IP6:
        return parse_ip_mech(t, rest, rn, err, es);
    }
    return -1;
}

/* Returns 1 when s is a modifier (name "=" ...), having parsed it; 0 when
 * it is not one; -1 on a modifier syntax error. */
static int parse_modifier(struct spf_record *rec, struct spf_term *t, const char *s, size_t n,
                          char *err, size_t es)
{
    size_t k = 1;
    if (n == 0 || !is_alpha(s[0]))
        return 0;
    while (k < n && (is_alnum(s[k]) || s[k] == '-' || s[k] == '_' || s[k] == '.'))
        k++;
    if (k >= n || s[k] != '=')
        return 0;
    const char *val = s + k + 1;
    size_t vn = n - k - 1;
    int idx = (int)rec->n;
    if (span_ieq(s, k, "redirect") || span_ieq(s, k, "exp")) {
        bool redirect = lower(s[0]) == 'r';
        int *slot = redirect ? &rec->redirect : &rec->exp;
        if (*slot >= 0)
            return perr(err, es, "'%s' given twice", redirect ? "redirect" : "exp");
        if (!spf_domain_spec_valid(val, vn))
            return perr(err, es, "invalid domain-spec in '%s='", redirect ? "redirect" : "exp");
        *slot = idx;
        t->kind = redirect ? TERM_REDIRECT : TERM_EXP;
        t->spec = val;
        t->spec_len = vn;
        return 1;
    }
    /* RFC 7208 6: unknown modifiers are ignored, but must be well formed. */
    const char *why;
    if (spf_macro_expand(val, vn, SPF_MACRO_MODIFIER, NULL, NULL, 0, &why) < 0)
        return perr(err, es, "modifier '%.*s': %s", (int)(k > 40 ? 40 : k), s, why);
    t->kind = TERM_UNKNOWN_MOD;
    return 1;
}

static int parse_term(struct spf_record *rec, const char *s, size_t n, char *err, size_t es)
{
    struct spf_term *t = &rec->terms[rec->n];
    memset(t, 0, sizeof(*t));
    t->cidr4 = t->cidr6 = -1;
    t->text = s;
    t->text_len = n;
    int rc = parse_modifier(rec, t, s, n, err, es);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        t->kind = TERM_MECH;
        if (parse_mechanism(t, s, n, err, es) < 0)
            return -1;
        if (t->mech == M_ALL)
            rec->has_all = true;
    }
    rec->n++;
    return 0;
}

static bool is_spf_record(const char *text, size_t len)
{
    return len >= 6 && strncasecmp(text, "v=spf1", 6) == 0 && (len == 6 || text[6] == ' ');
}

int spf_record_parse(const char *text, size_t len, struct spf_record **rec_r, char *err, size_t err_size)
{
    *rec_r = NULL;
    if (!is_spf_record(text, len))
        return perr(err, err_size, "not an SPF record");
    if (len > SPF_RECORD_MAX)
        return perr(err, err_size, "record longer than %d octets", SPF_RECORD_MAX);
    struct spf_record *rec = calloc(1, sizeof(*rec));
    if (rec == NULL || (rec->buf = malloc(len + 1)) == NULL ||
        (rec->terms = calloc(len / 2 + 1, sizeof(*rec->terms))) == NULL) {
        spf_record_free(rec);
        return perr(err, err_size, "out of memory");
    }
    memcpy(rec->buf, text, len);
    rec->buf[len] = '\0';
    rec->redirect = rec->exp = -1;
    /* RFC 7208 4.6.1: terms are separated by spaces (SP only). */
    size_t i = 6;
    while (i < len) {
        if (rec->buf[i] == ' ') {
            i++;
            continue;
        }
        size_t start = i;
        while (i < len && rec->buf[i] != ' ')
            i++;
        if (parse_term(rec, rec->buf + start, i - start, err, err_size) < 0) {
            spf_record_free(rec);
            return -1;
        }
    }
    *rec_r = rec;
    return 0;
}

void spf_record_free(struct spf_record *rec)
{
    if (rec == NULL)
        return;
    free(rec->buf);
    free(rec->terms);
    free(rec);
}

size_t spf_record_term_count(const struct spf_record *rec)
{
    return rec->n;
}

/* ------------------------------------------------------------------ */
/* 2. macros (RFC 7208 7)                                              */

struct mbuf {
    char *p;
    size_t len, cap;
    bool overflow;
};

static void mb_put(struct mbuf *b, const char *s, size_t n)
{
    if (b == NULL)
        return;
    if (n > b->cap - b->len) {
        b->overflow = true;
        n = b->cap - b->len;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* RFC 7208 7.3: upper-case macros are URL-escaped; unreserved stays. */
static void mb_put_escaped(struct mbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            mb_put(b, (const char *)&c, 1);
        } else {
            char e[3] = { '%', hex[c >> 4], hex[c & 15] };
            mb_put(b, e, 3);
        }
    }
}

static bool is_delim(int c)
{
    return c == '.' || c == '-' || c == '+' || c == ',' || c == '/' || c == '_' || c == '=';
}

static bool letter_allowed(int c, enum spf_macro_mode mode)
{
    if (strchr("slodipvh", c))
        return true;
    return mode != SPF_MACRO_DOMAIN && strchr("crt", c);
}

static bool in_set(const char *set, char c)
{
    return c != '\0' && strchr(set, c) != NULL;
}

/* Appends val[0..n) with every delimiter turned into '.', escaped when asked. */
static void emit_joined(struct mbuf *out, const char *val, size_t n, const char *delims, bool escape)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && !in_set(delims, val[i]))
            continue;
        if (escape)
            mb_put_escaped(out, val + start, i - start);
        else
            mb_put(out, val + start, i - start);
        if (i < n)
            mb_put(out, ".", 1);
        start = i + 1;
    }
}

/* The value of one macro letter, written into buf when it must be made. */
static const char *macro_value(int letter, const struct spf_macro_vars *v, char *buf, size_t size)
{
    const char *sender = v->sender ? v->sender : "";
    const char *at = strrchr(sender, '@');
    switch (letter) {
    case 's':
        return sender;
    case 'l':
        if (at == NULL)
            return "postmaster";
        snprintf(buf, size, "%.*s", (int)(at - sender), sender);
        return buf;
    case 'o':
        return at ? at + 1 : sender;
    case 'd':
        return v->domain ? v->domain : "";
    case 'h':
        return v->helo ? v->helo : "";
    case 'r':
        return v->receiver ? v->receiver : "unknown";
    case 'v':
        return v->ip.family == AF_INET ? "in-addr" : "ip6";
    case 'c':
        return dns_addr_format(&v->ip, buf, size);
    case 't':
        snprintf(buf, size, "%lld", (long long)v->now);
        return buf;
    case 'p': {
        const char *p = v->validated ? v->validated(v->validated_arg, v->domain ? v->domain : "") : NULL;
        return p ? p : "unknown";
    }
    case 'i':
        if (v->ip.family == AF_INET)
            return dns_addr_format(&v->ip, buf, size);
        /* RFC 7208 7.3: IPv6 "i" is the dot-separated nibble form. */
        for (int i = 0, o = 0; i < 16 && (size_t)o + 4 < size; i++) {
            unsigned char b = v->ip.u.v6.s6_addr[i];
            o += snprintf(buf + o, size - (size_t)o, "%s%x.%x", i ? "." : "", b >> 4, b & 15);
        }
        return buf;
    }
    return "";
}

/* Splits val on delims, reverses if asked, keeps the rightmost `keep`
 * parts and joins them with dots (RFC 7208 7.3), in linear time. */
static void macro_emit(struct mbuf *out, const char *val, const char *delims, unsigned keep, bool rev,
                       bool escape)
{
    size_t len = strlen(val), count = 1;
    for (size_t i = 0; i < len; i++)
        count += in_set(delims, val[i]);
    size_t take = keep && keep < count ? keep : count;
    if (!rev) {
        /* The last `take` parts are a suffix of val. */
        size_t i = 0;
        for (size_t skip = count - take; skip > 0; i++)
            skip -= in_set(delims, val[i]);
        emit_joined(out, val + i, len - i, delims, escape);
        return;
    }
    /* Reversed, the rightmost `take` parts are the first `take`, backwards. */
    size_t end = 0, seen = 0;
    for (; end < len; end++)
        if (in_set(delims, val[end]) && ++seen == take)
            break;
    for (size_t j = end;;) {
        size_t st = j;
        while (st > 0 && !in_set(delims, val[st - 1]))
            st--;
        if (escape)
            mb_put_escaped(out, val + st, j - st);
        else
            mb_put(out, val + st, j - st);
        if (st == 0)
            break;
        mb_put(out, ".", 1);
        j = st - 1;
    }
}

/* One "%{...}" starting at in[i] == '%', in[i+1] == '{'.  Returns the index
 * after '}' or 0 on a syntax error (*error_r set). */
static size_t macro_one(const char *in, size_t len, size_t i, enum spf_macro_mode mode,
                        const struct spf_macro_vars *vars, struct mbuf *out, const char **error_r)
{
    size_t j = i + 2;
    if (j >= len) {
        *error_r = "unterminated macro";
        return 0;
    }
    int letter = lower(in[j]);
    bool upper = in[j] >= 'A' && in[j] <= 'Z';
    if (!letter_allowed(letter, mode)) {
        *error_r = "invalid macro letter";
        return 0;
    }
    j++;
    unsigned keep = 0;
    bool digits = false, rev = false;
    while (j < len && is_digit(in[j])) {
        digits = true;
        keep = keep * 10 + (unsigned)(in[j++] - '0');
        if (keep > 1000)
            keep = 1000;          /* more parts than any value has */
    }
    if (digits && keep == 0) {
        *error_r = "zero macro transformer";   /* RFC 7208 7.3 */
        return 0;
    }
    if (j < len && lower(in[j]) == 'r') {
        rev = true;
        j++;
    }
    char delims[8] = "";
    size_t nd = 0;
    for (; j < len && is_delim(in[j]); j++)
        if (!strchr(delims, in[j]) && nd < sizeof(delims) - 1)
            delims[nd++] = in[j];
    if (j >= len || in[j] != '}') {
        *error_r = "malformed macro";
        return 0;
    }
    if (out && vars) {
        char buf[600];
        macro_emit(out, macro_value(letter, vars, buf, sizeof(buf)), nd ? delims : ".", keep, rev, upper);
    }
    return j + 1;
}

/* Walks a macro-string: syntax check, and expansion when out is given.
 * *lit_start_r is where the literal run after the last macro-expand begins. */
static int macro_walk(const char *in, size_t len, enum spf_macro_mode mode, const struct spf_macro_vars *vars,
                      struct mbuf *out, size_t *lit_start_r, const char **error_r)
{
    size_t i = 0, lit = 0;
    while (i < len) {
        unsigned char c = (unsigned char)in[i];
        if (c == '%') {
            if (i + 1 >= len) {
                *error_r = "'%' at the end";
                return -1;
            }
            char d = in[i + 1];
            if (d == '{') {
                if ((i = macro_one(in, len, i, mode, vars, out, error_r)) == 0)
                    return -1;
            } else if (d == '%' || d == '_' || d == '-') {
                mb_put(out, d == '%' ? "%" : d == '_' ? " " : "%20", d == '-' ? 3 : 1);
                i += 2;
            } else {
                *error_r = "'%' not followed by '{', '%', '_' or '-'";
                return -1;
            }
            lit = i;
            continue;
        }
        /* macro-literal = %x21-24 / %x26-7E; explanations also allow SP. */
        if (!((c >= 0x21 && c <= 0x7e) || (c == ' ' && mode == SPF_MACRO_EXPLAIN))) {
            *error_r = "invalid character";
            return -1;
        }
        mb_put(out, (const char *)&c, 1);
        i++;
    }
    if (lit_start_r)
        *lit_start_r = lit;
    return 0;
}

/* toplabel = ( *alphanum ALPHA *alphanum ) /
 *            ( 1*alphanum "-" *( alphanum / "-" ) alphanum )  (RFC 7208 7.1) */
static bool toplabel_valid(const char *s, size_t n)
{
    bool alpha = false, dash = false;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '-')
            dash = true;
        else if (is_alpha(s[i]))
            alpha = true;
        else if (!is_digit(s[i]))
            return false;
    }
    if (!dash)
        return alpha;
    return is_alnum(s[0]) && is_alnum(s[n - 1]);
}

bool spf_domain_spec_valid(const char *in, size_t len)
{
    size_t lit;
    const char *why;
    if (len == 0 || macro_walk(in, len, SPF_MACRO_DOMAIN, NULL, NULL, &lit, &why) < 0)
        return false;
    if (lit == len)
        return true;              /* ends in a macro-expand */
    const char *run = in + lit;
    size_t n = len - lit;
    if (run[n - 1] == '.')
        n--;
    const char *dot = n ? memrchr(run, '.', n) : NULL;
    if (dot == NULL)
        return false;
    return toplabel_valid(dot + 1, n - (size_t)(dot + 1 - run));
}

/* RFC 7208 7.3: cut labels from the left until at most 253 octets. */
static void truncate_domain(char *s)
{
    size_t len = strlen(s);
    size_t body = len && s[len - 1] == '.' ? len - 1 : len;
    char *p = s;
    while (body > DNS_NAME_MAX) {
        char *dot = memchr(p, '.', body);
        if (dot == NULL)
            break;
        body -= (size_t)(dot + 1 - p);
        len -= (size_t)(dot + 1 - p);
        p = dot + 1;
    }
    if (p != s)
        memmove(s, p, len + 1);
}

int spf_macro_expand(const char *in, size_t len, enum spf_macro_mode mode, const struct spf_macro_vars *vars,
                     char *out, size_t size, const char **error_r)
{
    struct mbuf mb = { 0 };
    *error_r = NULL;
    if (out && size)
        out[0] = '\0';
    if (vars == NULL || out == NULL || size == 0)
        return macro_walk(in, len, mode, NULL, NULL, NULL, error_r);
    if ((mb.p = malloc(SPF_EXPANSION_MAX + 1)) == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    mb.cap = SPF_EXPANSION_MAX;
    int rc = macro_walk(in, len, mode, vars, &mb, NULL, error_r);
    if (rc == 0 && mb.overflow) {
        *error_r = "expansion too long";
        rc = -1;
    }
    if (rc == 0) {
        mb.p[mb.len] = '\0';
        if (mode == SPF_MACRO_DOMAIN)
            truncate_domain(mb.p);
        str_copy(out, mb.p, size);
    }
    free(mb.p);
    return rc;
}

/* ------------------------------------------------------------------ */
/* 3. check_host (RFC 7208 4)                                          */

enum match { NO_MATCH, MATCH, ERR_TEMP, ERR_PERM };

struct spf_eval {
    const struct spf_dns *dns;
    struct dns_addr ip;
    const char *sender;
    const char *helo;
    const char *receiver;
    time_t now;
    uint64_t deadline;
    unsigned dns_terms, voids;
    char problem[256];
    char mechanism[128];
    /* %{p}: validated names of the client address, found once. */
    bool validated_done;
    size_t n_validated;
    char validated[SPF_MAX_PTR_NAMES][DNS_NAME_MAX + 2];
};

static enum match problem(struct spf_eval *e, enum match m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum match problem(struct spf_eval *e, enum match m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->problem, sizeof(e->problem), fmt, ap);
    va_end(ap);
    return m;
}

static enum dns_status query(struct spf_eval *e, const char *name, uint16_t type, struct dns_result *res)
{
    if (now_mono_ms() > e->deadline) {
        memset(res, 0, sizeof(*res));
        res->status = DNS_TEMPFAIL;
        str_copy(res->why, "SPF time limit reached", sizeof(res->why));
        return DNS_TEMPFAIL;
    }
    enum dns_status st = e->dns->query(e->dns->arg, name, type, res);
    res->status = st;
    return st;
}

static bool name_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la && a[la - 1] == '.')
        la--;
    if (lb && b[lb - 1] == '.')
        lb--;
    return la == lb && strncasecmp(a, b, la) == 0;
}

/* true when name is sub or a subdomain of it (case-insensitive). */
static bool name_within(const char *name, const char *sub)
{
    size_t ln = strlen(name), ls = strlen(sub);
    if (ln && name[ln - 1] == '.')
        ln--;
    if (ls && sub[ls - 1] == '.')
        ls--;
    if (ls == 0)
        return true;
    if (ln < ls || strncasecmp(name + ln - ls, sub, ls) != 0)
        return false;
    return ln == ls || name[ln - ls - 1] == '.';
}

static bool cidr_match(const struct dns_addr *ip, const struct dns_addr *net, int prefix)
{
    const unsigned char *a, *b;
    int bits;
    if (ip->family != net->family)
        return false;
    if (ip->family == AF_INET) {
        a = (const unsigned char *)&ip->u.v4;
        b = (const unsigned char *)&net->u.v4;
        bits = prefix < 0 ? 32 : prefix;
    } else {
        a = ip->u.v6.s6_addr;
        b = net->u.v6.s6_addr;
        bits = prefix < 0 ? 128 : prefix;
    }
    int bytes = bits / 8, rem = bits % 8;
    if (memcmp(a, b, (size_t)bytes) != 0)
        return false;
    if (rem == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rem));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

/* Does name have an address record equal to the client address?  Errors
 * just mean no (RFC 7208 5.5). */
static bool name_has_ip(struct spf_eval *e, const char *name)
{
    struct dns_result res;
    bool found = false;
    if (query(e, name, e->ip.family == AF_INET ? DNS_T_A : DNS_T_AAAA, &res) == DNS_OK)
        for (size_t i = 0; i < res.n && !found; i++)
            found = cidr_match(&e->ip, &res.rr[i].addr, -1);
    dns_result_free(&res);
    return found;
}

/* The client's PTR names (at most 10, in answer order). */
static enum dns_status ptr_names(struct spf_eval *e, struct dns_result *res)
{
    char rev[80];
    if (dns_reverse_name(&e->ip, rev, sizeof(rev)) < 0) {
        memset(res, 0, sizeof(*res));
        return res->status = DNS_BADNAME;
    }
    enum dns_status st = query(e, rev, DNS_T_PTR, res);
    /* RFC 7208 4.6.4: names past the tenth are ignored. */
    while (st == DNS_OK && res->n > SPF_MAX_PTR_NAMES) {
        struct dns_rr *rr = &res->rr[--res->n];
        free(rr->name);
        free(rr->text);
        free(rr->rdata);
    }
    return st;
}

/* %{p} (RFC 7208 7.3): a validated name, preferring the domain itself,
 * then a subdomain of it, then any. */
static const char *validated_for(void *arg, const char *domain)
{
    struct spf_eval *e = arg;
    if (!e->validated_done) {
        struct dns_result res;
        e->validated_done = true;
        if (ptr_names(e, &res) == DNS_OK) {
            for (size_t i = 0; i < res.n; i++)
                if (res.rr[i].name[0] && name_has_ip(e, res.rr[i].name))
                    str_copy(e->validated[e->n_validated++], res.rr[i].name, sizeof(e->validated[0]));
        }
        dns_result_free(&res);
    }
    for (size_t i = 0; i < e->n_validated; i++)
        if (name_eq(e->validated[i], domain))
            return e->validated[i];
    for (size_t i = 0; i < e->n_validated; i++)
        if (name_within(e->validated[i], domain))
            return e->validated[i];
    return e->n_validated ? e->validated[0] : NULL;
}

static void macro_vars(struct spf_eval *e, const char *domain, struct spf_macro_vars *v)
{
    memset(v, 0, sizeof(*v));
    v->sender = e->sender;
    v->domain = domain;
    v->helo = e->helo;
    v->receiver = e->receiver;
    v->ip = e->ip;
    v->now = e->now;
    v->validated = validated_for;
    v->validated_arg = e;
}

/* The <target-name> of a term: its domain-spec expanded, or the domain. */
static int target_name(struct spf_eval *e, const char *spec, size_t spec_len, const char *domain,
                       char *out, size_t size)
{
    if (spec == NULL) {
        str_copy(out, domain, size);
        return 0;
    }
    struct spf_macro_vars v;
    const char *why;
    macro_vars(e, domain, &v);
    if (spf_macro_expand(spec, spec_len, SPF_MACRO_DOMAIN, &v, out, size, &why) < 0) {
        problem(e, ERR_PERM, "macro expansion: %s", why);
        return -1;
    }
    return 0;
}

static enum match count_dns_term(struct spf_eval *e)
{
    if (++e->dns_terms > SPF_MAX_DNS_TERMS)
        return problem(e, ERR_PERM, "more than %d DNS-querying terms", SPF_MAX_DNS_TERMS);
    return NO_MATCH;
}

/* RFC 7208 4.6.4: more than 2 lookups with no answer is a permerror. */
static enum match void_lookup(struct spf_eval *e, const char *name)
{
    if (++e->voids > SPF_MAX_VOID)
        return problem(e, ERR_PERM, "more than %d void lookups (last: %s)", SPF_MAX_VOID, name);
    return NO_MATCH;
}

static enum match dns_failed(struct spf_eval *e, const char *what, const char *name, const struct dns_result *res)
{
    return problem(e, ERR_TEMP, "DNS %s %s: %s", what, name, res->why[0] ? res->why : "failure");
}

/* a and the address part of mx: any address of name within the prefix. */
static enum match match_addresses(struct spf_eval *e, const char *name, const struct spf_term *t, bool is_void_check)
{
    struct dns_result res;
    bool v4 = e->ip.family == AF_INET;
    enum dns_status st = query(e, name, v4 ? DNS_T_A : DNS_T_AAAA, &res);
    enum match m = NO_MATCH;
    if (st == DNS_TEMPFAIL)
        m = dns_failed(e, v4 ? "A" : "AAAA", name, &res);
    else if (st != DNS_OK)
        m = is_void_check ? void_lookup(e, name) : NO_MATCH;
    else
        for (size_t i = 0; i < res.n && m == NO_MATCH; i++)
            if (cidr_match(&e->ip, &res.rr[i].addr, v4 ? t->cidr4 : t->cidr6))
                m = MATCH;
    dns_result_free(&res);
    return m;
}

static enum match match_mx(struct spf_eval *e, const char *name, const struct spf_term *t)
{
    struct dns_result res;
    enum dns_status st = query(e, name, DNS_T_MX, &res);
    enum match m = NO_MATCH;
    if (st == DNS_TEMPFAIL)
        m = dns_failed(e, "MX", name, &res);
    else if (st != DNS_OK)
        m = void_lookup(e, name);
    else if (res.n > SPF_MAX_MX_NAMES)
        m = problem(e, ERR_PERM, "more than %d MX records for %s", SPF_MAX_MX_NAMES, name);
    else
        for (size_t i = 0; i < res.n && m == NO_MATCH; i++)
            if (res.rr[i].name[0])     /* a Null MX has no host */
                m = match_addresses(e, res.rr[i].name, t, false);
    dns_result_free(&res);
    return m;
}

static enum match match_ptr(struct spf_eval *e, const char *target)
{
    struct dns_result res;
    enum dns_status st = ptr_names(e, &res);
    enum match m = NO_MATCH;
    /* RFC 7208 5.5: a DNS error on the PTR lookup is simply no match. */
    if (st == DNS_NXDOMAIN || st == DNS_NODATA)
        m = void_lookup(e, "PTR");
    else if (st == DNS_OK)
        for (size_t i = 0; i < res.n && m == NO_MATCH; i++)
            if (res.rr[i].name[0] && name_within(res.rr[i].name, target) && name_has_ip(e, res.rr[i].name))
                m = MATCH;
    dns_result_free(&res);
    return m;
}

static enum match match_exists(struct spf_eval *e, const char *name)
{
    struct dns_result res;
    /* RFC 7208 5.7: always an A query, whatever the client's family. */
    enum dns_status st = query(e, name, DNS_T_A, &res);
    enum match m = MATCH;
    if (st == DNS_TEMPFAIL)
        m = dns_failed(e, "A", name, &res);
    else if (st != DNS_OK)
        m = void_lookup(e, name);
    dns_result_free(&res);
    return m;
}

static enum spf_result check_host(struct spf_eval *e, const char *domain, bool want_exp, struct spf_response *resp);

static enum match match_include(struct spf_eval *e, const char *name, struct spf_response *resp)
{
    /* RFC 7208 5.2: an included record never supplies the explanation. */
    enum spf_result r = check_host(e, name, false, resp);
    switch (r) {
    case SPF_PASS:
        return MATCH;
    case SPF_FAIL:
    case SPF_SOFTFAIL:
    case SPF_NEUTRAL:
        return NO_MATCH;
    case SPF_TEMPERROR:
        return ERR_TEMP;
    case SPF_NONE:
        return problem(e, ERR_PERM, "include:%s has no SPF record", name);
    case SPF_PERMERROR:
        break;
    }
    return ERR_PERM;
}

static enum match eval_mech(struct spf_eval *e, const struct spf_term *t, const char *domain,
                            struct spf_response *resp)
{
    char target[DNS_NAME_MAX * 4 + 8];
    enum match m;
    switch (t->mech) {
    case M_ALL:
        return MATCH;
    case M_IP4:
    case M_IP6:
        return cidr_match(&e->ip, &t->net, t->mech == M_IP4 ? t->cidr4 : t->cidr6) ? MATCH : NO_MATCH;
    default:
        break;
    }
    if ((m = count_dns_term(e)) != NO_MATCH)
        return m;
    if (target_name(e, t->spec, t->spec_len, domain, target, sizeof(target)) < 0)
        return ERR_PERM;
    switch (t->mech) {
    case M_A:
        return match_addresses(e, target, t, true);
    case M_MX:
        return match_mx(e, target, t);
    case M_PTR:
        return match_ptr(e, target);
    case M_EXISTS:
        return match_exists(e, target);
    case M_INCLUDE:
        return match_include(e, target, resp);
    default:
        return ERR_PERM;
    }
}

/* RFC 7208 4.5: the one "v=spf1" TXT record of domain.  Returns SPF_PASS
 * as "found" with *rec_r set, or the result to end with. */
static enum spf_result fetch_record(struct spf_eval *e, const char *domain, struct spf_record **rec_r)
{
    struct dns_result res;
    char err[160];
    *rec_r = NULL;
    enum dns_status st = query(e, domain, DNS_T_TXT, &res);
    if (st == DNS_TEMPFAIL) {
        dns_failed(e, "TXT", domain, &res);
        dns_result_free(&res);
        return SPF_TEMPERROR;
    }
    const struct dns_rr *found = NULL;
    size_t count = 0;
    for (size_t i = 0; st == DNS_OK && i < res.n; i++)
        if (is_spf_record(res.rr[i].text, res.rr[i].text_len)) {
            found = &res.rr[i];
            count++;
        }
    enum spf_result r = SPF_PASS;
    if (count == 0) {
        problem(e, NO_MATCH, "no SPF record at %s", domain);
        r = SPF_NONE;
    } else if (count > 1) {
        problem(e, ERR_PERM, "%zu SPF records at %s", count, domain);
        r = SPF_PERMERROR;
    } else if (spf_record_parse(found->text, found->text_len, rec_r, err, sizeof(err)) < 0) {
        problem(e, ERR_PERM, "SPF record of %s: %s", domain, err);
        r = SPF_PERMERROR;
    }
    dns_result_free(&res);
    return r;
}

/* RFC 7208 6.2: the explanation of a fail, or nothing on any trouble. */
static void explain(struct spf_eval *e, const struct spf_term *t, const char *domain, struct spf_response *resp)
{
    char name[DNS_NAME_MAX * 4 + 8];
    struct dns_result res;
    struct spf_macro_vars v;
    const char *why;
    if (target_name(e, t->spec, t->spec_len, domain, name, sizeof(name)) < 0)
        return;
    if (query(e, name, DNS_T_TXT, &res) == DNS_OK && res.n == 1) {
        const char *text = res.rr[0].text;
        size_t n = res.rr[0].text_len;
        bool ascii = true;
        for (size_t i = 0; i < n && ascii; i++)
            ascii = text[i] >= 0x20 && text[i] <= 0x7e;
        macro_vars(e, domain, &v);
        if (ascii && spf_macro_expand(text, n, SPF_MACRO_EXPLAIN, &v, resp->explanation,
                                      sizeof(resp->explanation), &why) < 0)
            resp->explanation[0] = '\0';
    }
    dns_result_free(&res);
}

static bool spf_domain_ok(const char *domain)
{
    /* RFC 7208 4.3: malformed or single-label domains give "none". */
    size_t len = strlen(domain);
    if (len && domain[len - 1] == '.')
        len--;
    return len > 0 && domain[0] != '[' && dns_name_valid(domain) && memchr(domain, '.', len) != NULL;
}

static enum spf_result qualifier_result(char q)
{
    switch (q) {
    case '-': return SPF_FAIL;
    case '~': return SPF_SOFTFAIL;
    case '?': return SPF_NEUTRAL;
    default: return SPF_PASS;
    }
}

static void set_mechanism(struct spf_eval *e, const char *text, size_t len)
{
    snprintf(e->mechanism, sizeof(e->mechanism), "%.*s", (int)(len > 120 ? 120 : len), text);
}

static enum spf_result follow_redirect(struct spf_eval *e, const struct spf_record *rec, const char *domain,
                                       bool want_exp, struct spf_response *resp)
{
    const struct spf_term *t = &rec->terms[rec->redirect];
    char target[DNS_NAME_MAX * 4 + 8];
    set_mechanism(e, t->text, t->text_len);
    if (count_dns_term(e) != NO_MATCH || target_name(e, t->spec, t->spec_len, domain, target, sizeof(target)) < 0)
        return SPF_PERMERROR;
    /* RFC 7208 6.1: the target's explanation, not ours, applies. */
    enum spf_result r = check_host(e, target, want_exp, resp);
    if (r == SPF_NONE) {
        problem(e, ERR_PERM, "redirect=%s: no SPF record", target);
        return SPF_PERMERROR;
    }
    return r;
}

static enum spf_result check_host(struct spf_eval *e, const char *domain, bool want_exp, struct spf_response *resp)
{
    struct spf_record *rec;
    if (!spf_domain_ok(domain)) {
        problem(e, NO_MATCH, "malformed domain '%.100s'", domain);
        return SPF_NONE;
    }
    enum spf_result r = fetch_record(e, domain, &rec);
    if (rec == NULL)
        return r;
    r = SPF_NEUTRAL;              /* RFC 7208 4.7: the default */
    bool matched = false;
    for (size_t i = 0; i < rec->n && !matched; i++) {
        const struct spf_term *t = &rec->terms[i];
        if (t->kind != TERM_MECH)
            continue;
        enum match m = eval_mech(e, t, domain, resp);
        if (m == ERR_TEMP || m == ERR_PERM) {
            set_mechanism(e, t->text, t->text_len);
            spf_record_free(rec);
            return m == ERR_TEMP ? SPF_TEMPERROR : SPF_PERMERROR;
        }
        if (m == MATCH) {
            matched = true;
            set_mechanism(e, t->text, t->text_len);
            r = qualifier_result(t->qual);
            if (r == SPF_FAIL && want_exp && rec->exp >= 0)
                explain(e, &rec->terms[rec->exp], domain, resp);
        }
    }
    /* RFC 7208 5.1: redirect is ignored when the record has "all". */
    if (!matched && rec->redirect >= 0 && !rec->has_all)
        r = follow_redirect(e, rec, domain, want_exp, resp);
    else if (!matched)
        str_copy(e->mechanism, "default", sizeof(e->mechanism));
    spf_record_free(rec);
    return r;
}

static void unmap_v4(struct dns_addr *a)
{
    static const unsigned char prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (a->family == AF_INET6 && memcmp(a->u.v6.s6_addr, prefix, 12) == 0) {
        struct in_addr v4;
        memcpy(&v4, a->u.v6.s6_addr + 12, 4);
        a->family = AF_INET;
        a->u.v4 = v4;
    }
}

static enum spf_result run(const struct spf_dns *dns, const struct spf_request *req, enum spf_identity id,
                           const char *domain, struct spf_response *resp)
{
    struct spf_eval *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        str_copy(resp->problem, "out of memory", sizeof(resp->problem));
        return resp->result = SPF_TEMPERROR;
    }
    e->dns = dns;
    e->sender = resp->sender;
    e->helo = req->helo ? req->helo : "";
    e->receiver = req->receiver;
    e->now = time(NULL);
    e->deadline = now_mono_ms() + (req->time_limit_ms ? req->time_limit_ms : SPF_TIME_LIMIT_MS);
    resp->identity = id;
    str_copy(resp->domain, domain, sizeof(resp->domain));
    if (req->ip == NULL || dns_addr_parse(req->ip, &e->ip) < 0) {
        str_copy(resp->problem, "invalid client address", sizeof(resp->problem));
        free(e);
        return resp->result = SPF_NONE;
    }
    unmap_v4(&e->ip);   /* RFC 7208 5: IPv4-mapped addresses are IPv4 */
    resp->result = check_host(e, domain, true, resp);
    if (resp->result != SPF_PASS && resp->result != SPF_FAIL && resp->result != SPF_SOFTFAIL &&
        resp->result != SPF_NEUTRAL)
        str_copy(resp->problem, e->problem, sizeof(resp->problem));
    if (resp->result != SPF_FAIL)
        resp->explanation[0] = '\0';
    str_copy(resp->mechanism, e->mechanism, sizeof(resp->mechanism));
    resp->dns_terms = e->dns_terms;
    resp->void_lookups = e->voids;
    free(e);
    return resp->result;
}

enum spf_result spf_check_mailfrom(const struct spf_dns *dns, const struct spf_request *req,
                                   struct spf_response *resp)
{
    const char *from = req->mail_from ? req->mail_from : "";
    const char *helo = req->helo ? req->helo : "";
    const char *at = strrchr(from, '@');
    int n;
    memset(resp, 0, sizeof(*resp));
    /* RFC 7208 2.4: the null reverse-path is postmaster@HELO; 4.3: a
     * missing local-part is "postmaster". */
    if (from[0] == '\0')
        n = snprintf(resp->sender, sizeof(resp->sender), "postmaster@%s", helo);
    else if (at == NULL)
        n = snprintf(resp->sender, sizeof(resp->sender), "postmaster@%s", from);
    else if (at == from)
        n = snprintf(resp->sender, sizeof(resp->sender), "postmaster%s", from);
    else
        n = snprintf(resp->sender, sizeof(resp->sender), "%s", from);
    if (n < 0 || (size_t)n >= sizeof(resp->sender)) {
        resp->sender[0] = '\0';
        str_copy(resp->problem, "sender address too long", sizeof(resp->problem));
        return resp->result = SPF_NONE;
    }
    return run(dns, req, SPF_ID_MAILFROM, strrchr(resp->sender, '@') + 1, resp);
}

enum spf_result spf_check_helo(const struct spf_dns *dns, const struct spf_request *req,
                               struct spf_response *resp)
{
    const char *helo = req->helo ? req->helo : "";
    memset(resp, 0, sizeof(*resp));
    resp->identity = SPF_ID_HELO;
    int n = snprintf(resp->sender, sizeof(resp->sender), "postmaster@%s", helo);
    if (n < 0 || (size_t)n >= sizeof(resp->sender)) {
        resp->sender[0] = '\0';
        str_copy(resp->problem, "HELO name too long", sizeof(resp->problem));
        return resp->result = SPF_NONE;
    }
    return run(dns, req, SPF_ID_HELO, helo, resp);
}

static enum dns_status resolver_query(void *arg, const char *name, uint16_t type, struct dns_result *res)
{
    return dns_query(arg, name, type, res);
}

void spf_dns_use_resolver(struct spf_dns *d, struct dns_resolver *r)
{
    d->query = resolver_query;
    d->arg = r;
}

/* ------------------------------------------------------------------ */
/* Received-SPF (RFC 7208 9.1)                                         */

/* Appends s as an RFC 5322 quoted-string, or as comment text; -1 when
 * the buffer is full. */
static int put_quoted(struct strbuf *sb, const char *s, bool comment)
{
    int rc = comment ? 0 : strbuf_append(sb, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p > 0x7e)
            continue;
        bool esc = comment ? (*p == '(' || *p == ')' || *p == '\\') : (*p == '"' || *p == '\\');
        if (esc)
            rc |= strbuf_append(sb, "\\", 1);
        rc |= strbuf_append(sb, (const char *)p, 1);
    }
    if (!comment)
        rc |= strbuf_append(sb, "\"", 1);
    return rc;
}

int spf_received_spf(const struct spf_response *resp, const struct spf_request *req, char *buf, size_t size)
{
    struct strbuf sb;
    char comment[1400];
    const char *receiver = req->receiver ? req->receiver : "unknown";
    const char *ip = req->ip ? req->ip : "";
    switch (resp->result) {
    case SPF_PASS:
        snprintf(comment, sizeof(comment), "%s: domain of %s designates %s as permitted sender",
                 receiver, resp->sender, ip);
        break;
    case SPF_FAIL:
    case SPF_SOFTFAIL:
        snprintf(comment, sizeof(comment), "%s: domain of %s does not designate %s as permitted sender",
                 receiver, resp->sender, ip);
        break;
    case SPF_NEUTRAL:
    case SPF_NONE:
        snprintf(comment, sizeof(comment), "%s: %s is neither permitted nor denied by domain of %s",
                 receiver, ip, resp->sender);
        break;
    default:
        snprintf(comment, sizeof(comment), "%s: error in processing during lookup of %s: %s",
                 receiver, resp->sender, resp->problem);
        break;
    }
    if (size == 0)
        return -1;
    strbuf_init(&sb, size - 1);
    int rc = strbuf_printf(&sb, "%s (", spf_result_name(resp->result));
    rc |= put_quoted(&sb, comment, true);
    rc |= strbuf_printf(&sb, ") client-ip=%s; envelope-from=", ip);
    rc |= put_quoted(&sb, resp->sender, false);
    rc |= strbuf_printf(&sb, "; helo=");
    rc |= put_quoted(&sb, req->helo ? req->helo : "", false);
    rc |= strbuf_printf(&sb, "; receiver=");
    rc |= put_quoted(&sb, receiver, false);
    rc |= strbuf_printf(&sb, "; identity=%s", resp->identity == SPF_ID_HELO ? "helo" : "mailfrom");
    if (resp->mechanism[0]) {
        rc |= strbuf_printf(&sb, "; mechanism=");
        rc |= put_quoted(&sb, resp->mechanism, false);
    }
    if (resp->problem[0] && (resp->result == SPF_TEMPERROR || resp->result == SPF_PERMERROR)) {
        rc |= strbuf_printf(&sb, "; problem=");
        rc |= put_quoted(&sb, resp->problem, false);
    }
    rc |= strbuf_append(&sb, ";", 1);
    if (rc == 0 && sb.data) {
        memcpy(buf, sb.data, sb.len + 1);
        rc = (int)sb.len;
    } else {
        rc = -1;
    }
    strbuf_free(&sb);
    return rc;
}
