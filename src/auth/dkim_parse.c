/*
 * Tag lists (RFC 6376 3.2) and the two things written in them: the
 * DKIM-Signature field (3.5) and the key record published in DNS (3.6.1).
 * Every failure here is a permerror; the reason strings end up in
 * Authentication-Results comments.
 */
#include "auth/dkim_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool is_fws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* VALCHAR (%x21-3A / %x3C-7E); bytes >= 0x80 are let through for UTF-8
 * identities (RFC 8616). */
static bool is_valchar(char c)
{
    unsigned char u = (unsigned char)c;
    return (u >= 0x21 && u <= 0x7e && u != ';') || u >= 0x80;
}

static size_t skip_fws(const char *s, size_t len, size_t pos)
{
    while (pos < len && is_fws(s[pos]))
        pos++;
    return pos;
}

int dkim_tags_parse(const char *s, size_t len, struct dkim_tag *tags, int max)
{
    int n = 0;
    size_t pos = 0;
    for (;;) {
        pos = skip_fws(s, len, pos);
        if (pos >= len)
            return n;
        if (s[pos] == ';') {
            pos++;
            continue;
        }
        if (!is_alpha(s[pos]))
            return -1;
        size_t name = pos;
        while (pos < len && (is_alpha(s[pos]) || is_digit(s[pos]) || s[pos] == '_'))
            pos++;
        size_t name_len = pos - name;
        pos = skip_fws(s, len, pos);
        if (pos >= len || s[pos] != '=')
            return -1;
        size_t raw_start = ++pos;
        pos = skip_fws(s, len, pos);
        size_t val = pos, val_end = pos;
        while (pos < len && s[pos] != ';') {
            if (is_valchar(s[pos]))
                val_end = pos + 1;
            else if (!is_fws(s[pos]))
                return -1;
            pos++;
        }
        if (n >= max)
            return -1;
        for (int i = 0; i < n; i++)
            if (tags[i].name_len == name_len && memcmp(tags[i].name, s + name, name_len) == 0)
                return -1;                              /* RFC 6376 3.2: duplicate */
        tags[n++] = (struct dkim_tag){ s + name, name_len, s + val, val_end - val, raw_start, pos };
        if (pos < len)
            pos++;
    }
}

const struct dkim_tag *dkim_tag_find(const struct dkim_tag *tags, int n, const char *name)
{
    size_t len = strlen(name);
    for (int i = 0; i < n; i++)
        if (tags[i].name_len == len && memcmp(tags[i].name, name, len) == 0)
            return &tags[i];
    return NULL;
}

static bool tag_is(const struct dkim_tag *t, const char *s)
{
    size_t n = strlen(s);
    return t->val_len == n && strncasecmp(t->val, s, n) == 0;
}

/* Copies a single-token tag value (a=, c=, d=, s=).  -1 when too long or
 * when it holds FWS (the grammar allows none inside these); dst then holds
 * what fitted, with the FWS dropped, for display. */
static int copy_value(const struct dkim_tag *t, char *dst, size_t size)
{
    size_t o = 0;
    int rc = 0;
    for (size_t i = 0; i < t->val_len; i++) {
        if (is_fws(t->val[i])) {
            rc = -1;
            continue;
        }
        if (o + 1 >= size) {
            dst[o] = '\0';
            return -1;
        }
        dst[o++] = t->val[i];
    }
    dst[o] = '\0';
    return rc;
}

/* Decimal of at most max_digits digits; RFC 6376 allows 76 for l= and
 * 12 for t=/x=.  Values past UINT64_MAX saturate. */
static int parse_uint(const struct dkim_tag *t, size_t max_digits, uint64_t *out_r)
{
    if (t->val_len == 0 || t->val_len > max_digits)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < t->val_len; i++) {
        if (!is_digit(t->val[i]))
            return -1;
        unsigned d = (unsigned)(t->val[i] - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    *out_r = v;
    return 0;
}

/* Calls fn for each element of a colon-separated list (FWS around the
 * colons allowed).  Stops early when fn returns nonzero, returning that. */
static int each_colon_item(const struct dkim_tag *t, int (*fn)(const char *, size_t, void *),
                           void *arg)
{
    size_t pos = 0, len = t->val_len;
    const char *s = t->val;
    while (pos <= len) {
        const char *c = memchr(s + pos, ':', len - pos);
        size_t end = c ? (size_t)(c - s) : len;
        size_t a = pos, b = end;
        while (a < b && is_fws(s[a]))
            a++;
        while (b > a && is_fws(s[b - 1]))
            b--;
        int rc = fn(s + a, b - a, arg);
        if (rc)
            return rc;
        pos = end + 1;
    }
    return 0;
}

/* A domain or selector: labels of letters, digits, '-', '_' (and UTF-8),
 * joined by single dots. */
static bool dns_name_ok(const char *s)
{
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!(is_alpha((char)c) || is_digit((char)c) || c == '-' || c == '_' || c >= 0x80))
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0;
}

struct h_ctx {
    struct dkim_sig *sig;
    bool from, bad;
};

static int add_h_name(const char *s, size_t len, void *arg)
{
    struct h_ctx *h = arg;
    if (len == 0) {
        h->bad = true;
        return 1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f) {                   /* ftext, RFC 5322 3.6.8 */
            h->bad = true;
            return 1;
        }
    }
    if (h->sig->n_h >= DKIM_H_MAX)
        return 2;
    if (len == 4 && strncasecmp(s, "from", 4) == 0)
        h->from = true;
    h->sig->h[h->sig->n_h] = s;
    h->sig->h_len[h->sig->n_h++] = len;
    return 0;
}

static int find_dns_txt(const char *s, size_t len, void *arg)
{
    (void)arg;
    return len == 7 && strncasecmp(s, "dns/txt", 7) == 0;
}

/* dkim-quoted-printable (RFC 6376 2.11) for i=: =XX becomes a byte, FWS
 * goes.  -1 on a bad escape or overflow. */
static int decode_qp(const struct dkim_tag *t, char *dst, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < t->val_len; i++) {
        char c = t->val[i];
        if (is_fws(c))
            continue;
        if (c == '=') {
            const char *h1, *h2;
            if (i + 2 >= t->val_len || t->val[i + 1] == '\0' || t->val[i + 2] == '\0' ||
                (h1 = strchr(hex, t->val[i + 1])) == NULL || (h2 = strchr(hex, t->val[i + 2])) == NULL)
                return -1;
            c = (char)(((h1 - hex) << 4) | (h2 - hex));
            if (c == '\0')
                return -1;
            i += 2;
        }
        if (o + 1 >= size)
            return -1;
        dst[o++] = c;
    }
    dst[o] = '\0';
    return 0;
}

static int parse_c(const struct dkim_tag *t, struct dkim_sig *sig)
{
    char v[32];
    if (copy_value(t, v, sizeof(v)) < 0)
        return -1;
    char *slash = strchr(v, '/');
    if (slash)
        *slash++ = '\0';
    const char *parts[2] = { v, slash ? slash : "simple" };
    enum dkim_canon *out[2] = { &sig->hc, &sig->bc };
    for (int i = 0; i < 2; i++) {
        if (strcasecmp(parts[i], "simple") == 0)
            *out[i] = DKIM_CANON_SIMPLE;
        else if (strcasecmp(parts[i], "relaxed") == 0)
            *out[i] = DKIM_CANON_RELAXED;
        else
            return -1;
    }
    return 0;
}

/* The display fields first, so even a broken signature gets a useful
 * verdict line. */
static void sig_identity(const struct dkim_tag *tags, int n, struct dkim_sig *sig)
{
    const struct dkim_tag *t;
    if ((t = dkim_tag_find(tags, n, "a")) != NULL)
        copy_value(t, sig->a, sizeof(sig->a));
    if ((t = dkim_tag_find(tags, n, "d")) != NULL)
        copy_value(t, sig->d, sizeof(sig->d));
    if ((t = dkim_tag_find(tags, n, "s")) != NULL)
        copy_value(t, sig->s, sizeof(sig->s));
    if ((t = dkim_tag_find(tags, n, "i")) != NULL) {
        if (decode_qp(t, sig->i, sizeof(sig->i)) < 0)
            sig->i[0] = '\0';
    } else if (sig->d[0]) {
        snprintf(sig->i, sizeof(sig->i), "@%s", sig->d);
    }
    if ((t = dkim_tag_find(tags, n, "b")) != NULL) {
        size_t o = 0;
        for (size_t k = 0; k < t->val_len && o < DKIM_HEADER_B_LEN; k++)
            if (!is_fws(t->val[k]))
                sig->b_text[o++] = t->val[k];
        sig->b_text[o] = '\0';
    }
}

static int sig_required(const struct dkim_tag *tags, int n, const char **reason_r)
{
    static const char *const req[] = { "v", "a", "b", "bh", "d", "h", "s" };
    static const char *const msg[] = { "missing v= tag", "missing a= tag", "missing b= tag",
                                       "missing bh= tag", "missing d= tag", "missing h= tag",
                                       "missing s= tag" };
    for (size_t k = 0; k < sizeof(req) / sizeof(req[0]); k++)
        if (dkim_tag_find(tags, n, req[k]) == NULL) {
            *reason_r = msg[k];
            return -1;
        }
    if (!tag_is(dkim_tag_find(tags, n, "v"), "1")) {
        *reason_r = "unsupported version v=";
        return -1;
    }
    return 0;
}

static int sig_algorithm(const struct dkim_tag *tags, int n, struct dkim_sig *sig,
                         const char **reason_r)
{
    const struct dkim_tag *a = dkim_tag_find(tags, n, "a");
    if (tag_is(a, "rsa-sha256"))
        sig->alg = DKIM_ALG_RSA_SHA256;
    else if (tag_is(a, "ed25519-sha256"))
        sig->alg = DKIM_ALG_ED25519_SHA256;
    else if (tag_is(a, "rsa-sha1")) {
        *reason_r = "rsa-sha1 is not acceptable (RFC 8301)";
        return -1;
    } else {
        *reason_r = "unknown algorithm a=";
        return -1;
    }
    const struct dkim_tag *c = dkim_tag_find(tags, n, "c");
    if (c != NULL && parse_c(c, sig) < 0) {
        *reason_r = "bad canonicalization c=";
        return -1;
    }
    const struct dkim_tag *q = dkim_tag_find(tags, n, "q");
    if (q != NULL && each_colon_item(q, find_dns_txt, NULL) != 1) {
        *reason_r = "unsupported query method q=";
        return -1;
    }
    return 0;
}

static int sig_identities(const struct dkim_tag *tags, int n, struct dkim_sig *sig,
                          const char **reason_r)
{
    if (copy_value(dkim_tag_find(tags, n, "d"), sig->d, sizeof(sig->d)) < 0 || !dns_name_ok(sig->d)) {
        *reason_r = "bad domain d=";
        return -1;
    }
    if (copy_value(dkim_tag_find(tags, n, "s"), sig->s, sizeof(sig->s)) < 0 || !dns_name_ok(sig->s) ||
        strlen(sig->s) + strlen(sig->d) + 13 > 253) {
        *reason_r = "bad selector s=";
        return -1;
    }
    const struct dkim_tag *i = dkim_tag_find(tags, n, "i");
    if (i != NULL) {
        const char *at;
        if (decode_qp(i, sig->i, sizeof(sig->i)) < 0 || (at = strrchr(sig->i, '@')) == NULL) {
            *reason_r = "bad identity i=";
            return -1;
        }
        if (!dkim_domain_within(at + 1, sig->d)) {       /* RFC 6376 3.5 i= */
            *reason_r = "i= domain not within d=";
            return -1;
        }
    }
    struct h_ctx h = { sig, false, false };
    int rc = each_colon_item(dkim_tag_find(tags, n, "h"), add_h_name, &h);
    if (rc == 2) {
        *reason_r = "too many names in h=";
        return -1;
    }
    if (h.bad) {
        *reason_r = "bad field name in h=";
        return -1;
    }
    if (!h.from) {                                       /* RFC 6376 6.1.1 */
        *reason_r = "From field not signed";
        return -1;
    }
    return 0;
}

static int sig_numbers(const struct dkim_tag *tags, int n, struct dkim_sig *sig,
                       const char **reason_r)
{
    const struct dkim_tag *t;
    if ((t = dkim_tag_find(tags, n, "l")) != NULL) {
        if (parse_uint(t, 76, &sig->l) < 0) {
            *reason_r = "bad body length l=";
            return -1;
        }
        sig->has_l = true;
    }
    if ((t = dkim_tag_find(tags, n, "t")) != NULL) {
        if (parse_uint(t, 12, &sig->t) < 0) {
            *reason_r = "bad timestamp t=";
            return -1;
        }
        sig->has_t = true;
    }
    if ((t = dkim_tag_find(tags, n, "x")) != NULL) {
        if (parse_uint(t, 12, &sig->x) < 0) {
            *reason_r = "bad expiration x=";
            return -1;
        }
        sig->has_x = true;
    }
    if (sig->has_t && sig->has_x && sig->x < sig->t) {   /* RFC 6376 3.5 x= */
        *reason_r = "x= earlier than t=";
        return -1;
    }
    t = dkim_tag_find(tags, n, "bh");
    if (dkim_b64_decode(t->val, t->val_len, sig->bh, sizeof(sig->bh), &sig->bh_len) < 0) {
        *reason_r = "bad body hash bh=";
        return -1;
    }
    t = dkim_tag_find(tags, n, "b");
    if (dkim_b64_decode(t->val, t->val_len, sig->b, sizeof(sig->b), &sig->b_len) < 0 ||
        sig->b_len == 0) {
        *reason_r = "bad signature b=";
        return -1;
    }
    sig->b_raw_start = t->raw_start;
    sig->b_raw_end = t->raw_end;
    return 0;
}

int dkim_sig_parse(const char *val, size_t len, struct dkim_sig *sig, const char **reason_r)
{
    struct dkim_tag tags[DKIM_TAGS_MAX];
    memset(sig, 0, sizeof(*sig));
    sig->hc = sig->bc = DKIM_CANON_SIMPLE;
    int n = dkim_tags_parse(val, len, tags, DKIM_TAGS_MAX);
    if (n < 0) {
        *reason_r = "signature syntax error";
        return -1;
    }
    sig_identity(tags, n, sig);
    if (sig_required(tags, n, reason_r) < 0 || sig_algorithm(tags, n, sig, reason_r) < 0 ||
        sig_identities(tags, n, sig, reason_r) < 0 || sig_numbers(tags, n, sig, reason_r) < 0)
        return -1;
    return 0;
}

static int find_sha256(const char *s, size_t len, void *arg)
{
    (void)arg;
    return len == 6 && strncasecmp(s, "sha256", 6) == 0;
}

static int find_email(const char *s, size_t len, void *arg)
{
    (void)arg;
    return (len == 1 && s[0] == '*') || (len == 5 && strncasecmp(s, "email", 5) == 0);
}

static int key_flag(const char *s, size_t len, void *arg)
{
    struct dkim_keyrec *k = arg;
    if (len == 1 && (s[0] == 'y' || s[0] == 'Y'))
        k->testing = true;
    else if (len == 1 && (s[0] == 's' || s[0] == 'S'))
        k->strict = true;
    return 0;                                            /* unknown flags: ignored */
}

int dkim_keyrec_parse(const char *s, size_t len, struct dkim_keyrec *k, const char **reason_r)
{
    struct dkim_tag tags[DKIM_TAGS_MAX];
    memset(k, 0, sizeof(*k));
    int n = dkim_tags_parse(s, len, tags, DKIM_TAGS_MAX);
    if (n < 0) {
        *reason_r = "key record syntax error";
        return -1;
    }
    const struct dkim_tag *t = dkim_tag_find(tags, n, "v");
    if (t != NULL && (t != &tags[0] || !(t->val_len == 5 && memcmp(t->val, "DKIM1", 5) == 0))) {
        *reason_r = "bad key record version v=";            /* RFC 6376 3.6.1 */
        return -1;
    }
    k->type = DKIM_KEY_RSA;
    if ((t = dkim_tag_find(tags, n, "k")) != NULL) {
        if (tag_is(t, "rsa"))
            k->type = DKIM_KEY_RSA;
        else if (tag_is(t, "ed25519"))
            k->type = DKIM_KEY_ED25519;
        else {
            *reason_r = "unknown key type k=";
            return -1;
        }
    }
    k->sha256_ok = (t = dkim_tag_find(tags, n, "h")) == NULL || each_colon_item(t, find_sha256, NULL) == 1;
    k->email_ok = (t = dkim_tag_find(tags, n, "s")) == NULL || each_colon_item(t, find_email, NULL) == 1;
    if ((t = dkim_tag_find(tags, n, "t")) != NULL)
        each_colon_item(t, key_flag, k);
    if ((t = dkim_tag_find(tags, n, "p")) == NULL) {
        *reason_r = "key record without p=";
        return -1;
    }
    if (t->val_len == 0) {
        k->revoked = true;                                   /* RFC 6376 3.6.1 p= */
        return 0;
    }
    if (dkim_b64_decode(t->val, t->val_len, k->p, sizeof(k->p), &k->p_len) < 0 || k->p_len == 0) {
        *reason_r = "bad public key p=";
        return -1;
    }
    return 0;
}
