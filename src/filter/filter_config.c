/*
 * The anti-spam sections of the configuration file: defaults, one key at a
 * time from the core parser, and a final consistency check.
 */
#include "filter/filter_config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"
#include "filter/filter_int.h"

const char *const filter_rule_names[FILTER_R_COUNT] = {
    [FILTER_R_MISSING_DATE] = "MISSING_DATE",
    [FILTER_R_MISSING_MESSAGE_ID] = "MISSING_MESSAGE_ID",
    [FILTER_R_MISSING_FROM] = "MISSING_FROM",
    [FILTER_R_MISSING_SUBJECT] = "MISSING_SUBJECT",
    [FILTER_R_FROM_DISPLAY_SPOOF] = "FROM_DISPLAY_SPOOF",
    [FILTER_R_SUBJECT_ALL_CAPS] = "SUBJECT_ALL_CAPS",
    [FILTER_R_HTML_ONLY] = "HTML_ONLY",
    [FILTER_R_EXECUTABLE_ATTACHMENT] = "EXECUTABLE_ATTACHMENT",
    [FILTER_R_SPF_PASS] = "SPF_PASS",
    [FILTER_R_SPF_FAIL] = "SPF_FAIL",
    [FILTER_R_SPF_SOFTFAIL] = "SPF_SOFTFAIL",
    [FILTER_R_DKIM_PASS] = "DKIM_PASS",
    [FILTER_R_DKIM_FAIL] = "DKIM_FAIL",
    [FILTER_R_DMARC_PASS] = "DMARC_PASS",
    [FILTER_R_DMARC_FAIL] = "DMARC_FAIL",
};

const double filter_rule_default_scores[FILTER_R_COUNT] = {
    [FILTER_R_MISSING_DATE] = 1.0,
    [FILTER_R_MISSING_MESSAGE_ID] = 1.0,
    [FILTER_R_MISSING_FROM] = 2.0,
    [FILTER_R_MISSING_SUBJECT] = 0.5,
    [FILTER_R_FROM_DISPLAY_SPOOF] = 3.0,
    [FILTER_R_SUBJECT_ALL_CAPS] = 1.5,
    [FILTER_R_HTML_ONLY] = 1.0,
    [FILTER_R_EXECUTABLE_ATTACHMENT] = 5.0,
    [FILTER_R_SPF_PASS] = -0.2,
    [FILTER_R_SPF_FAIL] = 3.0,
    [FILTER_R_SPF_SOFTFAIL] = 1.0,
    [FILTER_R_DKIM_PASS] = -0.2,
    [FILTER_R_DKIM_FAIL] = 1.5,
    [FILTER_R_DMARC_PASS] = -0.5,
    [FILTER_R_DMARC_FAIL] = 4.0,
};

void filter_config_defaults(struct filter_config *fc)
{
    memset(fc, 0, sizeof(*fc));
    fc->greylist_enabled = true;
    fc->greylist_min_delay = 300;
    fc->greylist_window = 24 * 3600;
    fc->greylist_expire = 35 * 86400;
    fc->greylist_auto_allow = 5;
    fc->greylist_v4_prefix = 24;
    fc->greylist_v6_prefix = 64;
    fc->allow_loopback = true;
    fc->allow_sender_spf = true;
    fc->pregreet = (struct filter_check_cfg){ FILTER_MODE_SCORE, 3.0 };
    fc->pipelining = (struct filter_check_cfg){ FILTER_MODE_SCORE, 2.0 };
    fc->fcrdns = (struct filter_check_cfg){ FILTER_MODE_SCORE, 1.0 };
    fc->helo = (struct filter_check_cfg){ FILTER_MODE_SCORE, 1.0 };
    fc->add_header_score = 5.0;
    fc->reject_score = 15.0;
    memcpy(fc->rule_score, filter_rule_default_scores, sizeof(fc->rule_score));
    fc->rspamd_timeout_ms = 10000;
    fc->conn_per_minute = 120;
    fc->msgs_per_hour = 0;
    fc->user_msgs_per_hour = 500;
    fc->auth_fail_per_hour = 10;
}

static int fail(char *err, size_t errsize, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errsize, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errsize > 0)
        vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
    return -1;
}

static int unknown(char *err, size_t errsize, const char *section, const char *name)
{
    fail(err, errsize, "unknown key '%s' in [%s]", name, section);
    return 1;
}

/* ---- value parsers ---- */

static int parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *s, long min, long max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

/* A duration in milliseconds: "500ms", or anything parse_duration takes. */
static int parse_ms(const char *s, uint64_t *out)
{
    size_t n = strlen(s);
    if (n > 2 && strcasecmp(s + n - 2, "ms") == 0) {
        char num[32];
        if (n - 2 >= sizeof(num))
            return -1;
        memcpy(num, s, n - 2);
        num[n - 2] = '\0';
        char *end;
        errno = 0;
        unsigned long long v = strtoull(num, &end, 10);
        if (errno || end == num || *end != '\0' || num[0] == '-')
            return -1;
        *out = v;
        return 0;
    }
    uint64_t secs;
    if (parse_duration(s, &secs) < 0 || secs > 86400)
        return -1;
    *out = secs * 1000;
    return 0;
}

int filter_mode_parse(const char *value, bool allow_accept, struct filter_check_cfg *out)
{
    char buf[64];
    if (str_copy(buf, value, sizeof(buf)) >= sizeof(buf))
        return -1;
    str_trim(buf);
    if (strcasecmp(buf, "off") == 0 || strcasecmp(buf, "no") == 0) {
        *out = (struct filter_check_cfg){ FILTER_MODE_OFF, 0 };
        return 0;
    }
    if (strcasecmp(buf, "reject") == 0) {
        *out = (struct filter_check_cfg){ FILTER_MODE_REJECT, 0 };
        return 0;
    }
    if (allow_accept && strcasecmp(buf, "accept") == 0) {
        *out = (struct filter_check_cfg){ FILTER_MODE_ACCEPT, 0 };
        return 0;
    }
    const char *rest = str_case_prefix(buf, "score");
    if (rest == NULL || (*rest != ' ' && *rest != '\t'))
        return -1;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    double v;
    if (parse_double(rest, -1000, 1000, &v) < 0)
        return -1;
    *out = (struct filter_check_cfg){ FILTER_MODE_SCORE, v };
    return 0;
}

/* Appends value to a comma-separated list text; an empty value clears. */
static int list_append(char *dst, size_t size, const char *value, char *err, size_t errsize)
{
    if (value[0] == '\0') {
        dst[0] = '\0';
        return 0;
    }
    size_t len = strlen(dst), add = strlen(value) + (len ? 2 : 0);
    if (len + add >= size)
        return fail(err, errsize, "list too long (max %zu characters; use postel allow|block add "
                                  "for long lists)", size - 1);
    if (len) {
        memcpy(dst + len, ", ", 2);
        len += 2;
    }
    memcpy(dst + len, value, strlen(value) + 1);
    return 0;
}

/* ---- codes ---- */

/* One octet pattern: "N", "*", "N-M" or "[N..M]". */
static int octet_parse(const char *s, size_t len, uint8_t *lo, uint8_t *hi)
{
    char buf[16];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (strcmp(buf, "*") == 0) {
        *lo = 0;
        *hi = 255;
        return 0;
    }
    char *p = buf, *end;
    bool bracket = *p == '[';
    if (bracket) {
        if (buf[len - 1] != ']')
            return -1;
        buf[--len] = '\0';
        p++;
    }
    if (!isdigit((unsigned char)*p))
        return -1;
    unsigned long a = strtoul(p, &end, 10), b = a;
    if (*end != '\0') {
        const char *sep = bracket ? ".." : "-";
        if (strncmp(end, sep, strlen(sep)) != 0)
            return -1;
        p = end + strlen(sep);
        if (!isdigit((unsigned char)*p))
            return -1;
        b = strtoul(p, &end, 10);
        if (*end != '\0')
            return -1;
    } else if (bracket) {
        return -1;
    }
    if (a > 255 || b > 255 || a > b)
        return -1;
    *lo = (uint8_t)a;
    *hi = (uint8_t)b;
    return 0;
}

/* The match part of a code: octet patterns, A.B.C.D/bits, or &mask. */
static int code_match_parse(const char *m, struct filter_code *code)
{
    if (m[0] == '&') {
        char *end;
        if (!isdigit((unsigned char)m[1]))
            return -1;
        unsigned long v = strtoul(m + 1, &end, 0);
        if (*end != '\0' || v == 0 || v > 255)
            return -1;
        code->bitmask = (uint8_t)v;
        static const uint8_t lo[4] = { 127, 0, 0, 0 }, hi[4] = { 127, 255, 255, 255 };
        memcpy(code->lo, lo, 4);
        memcpy(code->hi, hi, 4);
        return 0;
    }
    const char *slash = strchr(m, '/');
    if (slash != NULL) {
        char addr[32];
        size_t al = (size_t)(slash - m);
        if (al >= sizeof(addr))
            return -1;
        memcpy(addr, m, al);
        addr[al] = '\0';
        struct filter_cidr c;
        char cidr[48];
        snprintf(cidr, sizeof(cidr), "%s%s", addr, slash);
        if (filter_cidr_parse(cidr, &c, NULL, 0) < 0 || c.family != 4)
            return -1;
        for (int i = 0; i < 4; i++) {
            int bits = c.prefix - i * 8;
            uint8_t mask = bits >= 8 ? 0xff : bits <= 0 ? 0 : (uint8_t)(0xff << (8 - bits));
            code->lo[i] = c.addr[i] & mask;
            code->hi[i] = (uint8_t)(c.addr[i] | (uint8_t)~mask);
        }
        return 0;
    }
    const char *p = m;
    for (int i = 0; i < 4; i++) {
        const char *dot = i < 3 ? strchr(p, '.') : p + strlen(p);
        /* a "[N..M]" octet holds dots of its own */
        if (i < 3 && *p == '[') {
            const char *close = strchr(p, ']');
            if (close == NULL || close[1] != '.')
                return -1;
            dot = close + 1;
        }
        if (dot == NULL)
            return -1;
        if (octet_parse(p, (size_t)(dot - p), &code->lo[i], &code->hi[i]) < 0)
            return -1;
        p = dot + (i < 3 ? 1 : 0);
    }
    return *p == '\0' ? 0 : -1;
}

int filter_code_parse(const char *text, struct filter_code *code, char *err, size_t errsize)
{
    char buf[128];
    memset(code, 0, sizeof(*code));
    if (str_copy(buf, text, sizeof(buf)) >= sizeof(buf))
        return fail(err, errsize, "code too long: %s", text);
    char *save = NULL;
    char *tok = strtok_r(buf, " \t", &save);
    if (tok == NULL || code_match_parse(tok, code) < 0)
        return fail(err, errsize, "bad code '%s' (expected 127.0.0.2, 127.0.0.[4..7], "
                                  "127.0.0.0/24 or &4, then an optional name, weight or reject)",
                    text);
    while ((tok = strtok_r(NULL, " \t", &save)) != NULL) {
        double w;
        if (parse_double(tok, -1000, 1000, &w) == 0) {
            code->has_weight = true;
            code->weight = w;
        } else if (strcasecmp(tok, "reject") == 0) {
            code->mode = FILTER_MODE_REJECT;
        } else if (strcasecmp(tok, "score") == 0) {
            code->mode = FILTER_MODE_SCORE;
        } else if (strcasecmp(tok, "accept") == 0) {
            code->mode = FILTER_MODE_ACCEPT;
        } else {
            for (const char *c = tok; *c; c++)
                if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-')
                    return fail(err, errsize, "bad code name '%s' (letters, digits, _ and -)",
                                tok);
            if (str_copy(code->name, tok, sizeof(code->name)) >= sizeof(code->name))
                return fail(err, errsize, "code name too long: %s", tok);
        }
    }
    return 0;
}

bool filter_code_match(const struct filter_code *code, const uint8_t answer[4])
{
    for (int i = 0; i < 4; i++)
        if (answer[i] < code->lo[i] || answer[i] > code->hi[i])
            return false;
    if (code->bitmask)
        return (answer[3] & code->bitmask) != 0;
    return true;
}

/* ---- named sections ---- */

static bool dnsl_section(const char *section, enum filter_dnsl_kind *kind, const char **name)
{
    const char *rest;
    if ((rest = str_case_prefix(section, "dnsbl")) != NULL)
        *kind = FILTER_DNSBL;
    else if ((rest = str_case_prefix(section, "dnswl")) != NULL)
        *kind = FILTER_DNSWL;
    else
        return false;
    if (*rest != '\0' && *rest != ' ' && *rest != '\t')
        return false;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    *name = rest;
    return true;
}

bool filter_config_section(const char *section)
{
    static const char *const plain[] = {
        "greylist", "lists", "postscreen", "spam", "rspamd", "ratelimit", NULL,
    };
    for (int i = 0; plain[i]; i++)
        if (strcmp(section, plain[i]) == 0)
            return true;
    enum filter_dnsl_kind kind;
    const char *name;
    return dnsl_section(section, &kind, &name);
}

/* The list of a [dnsbl NAME] / [dnswl NAME] section, created at its first key. */
static struct filter_dnsl_cfg *dnsl_get(struct filter_config *fc, enum filter_dnsl_kind kind,
                                        const char *name, char *err, size_t errsize)
{
    if (name[0] == '\0') {
        fail(err, errsize, "[%s] needs a name: [%s NAME]", kind == FILTER_DNSBL ? "dnsbl" : "dnswl",
             kind == FILTER_DNSBL ? "dnsbl" : "dnswl");
        return NULL;
    }
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-' && *c != '.') {
            fail(err, errsize, "bad list name '%s' (letters, digits, '.', '_' and '-')", name);
            return NULL;
        }
    if (strlen(name) >= FILTER_DNSL_NAME_MAX) {
        fail(err, errsize, "list name too long (max %d characters)", FILTER_DNSL_NAME_MAX - 1);
        return NULL;
    }
    for (int i = 0; i < fc->n_dnsl; i++)
        if (fc->dnsl[i].kind == kind && strcasecmp(fc->dnsl[i].name, name) == 0)
            return &fc->dnsl[i];
    if (fc->n_dnsl >= FILTER_DNSL_MAX) {
        fail(err, errsize, "too many [dnsbl]/[dnswl] sections (max %d)", FILTER_DNSL_MAX);
        return NULL;
    }
    struct filter_dnsl_cfg *d = &fc->dnsl[fc->n_dnsl++];
    memset(d, 0, sizeof(*d));
    str_copy(d->name, name, sizeof(d->name));
    d->kind = kind;
    d->type = FILTER_DNSL_IP;
    d->weight = 3.0;
    d->mode = FILTER_MODE_SCORE;
    d->timeout_ms = 3000;
    d->checks = FILTER_CHECK_SENDER | FILTER_CHECK_FROM;
    return d;
}

static int dnsl_checks(const char *value, unsigned *out)
{
    char buf[128];
    if (str_copy(buf, value, sizeof(buf)) >= sizeof(buf))
        return -1;
    unsigned bits = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        str_trim(t);
        if (strcasecmp(t, "sender") == 0)
            bits |= FILTER_CHECK_SENDER;
        else if (strcasecmp(t, "helo") == 0)
            bits |= FILTER_CHECK_HELO;
        else if (strcasecmp(t, "from") == 0)
            bits |= FILTER_CHECK_FROM;
        else
            return -1;
    }
    if (bits == 0)
        return -1;
    *out = bits;
    return 0;
}

static int dnsl_codes(struct filter_dnsl_cfg *d, const char *value, char *err, size_t errsize)
{
    char buf[1024];
    if (str_copy(buf, value, sizeof(buf)) >= sizeof(buf))
        return fail(err, errsize, "codes too long");
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        str_trim(t);
        if (*t == '\0')
            continue;
        if (d->n_codes >= FILTER_CODES_MAX)
            return fail(err, errsize, "too many codes (max %d per list)", FILTER_CODES_MAX);
        struct filter_code code;
        if (filter_code_parse(t, &code, err, errsize) < 0)
            return -1;
        if (code.mode == FILTER_MODE_ACCEPT && d->kind != FILTER_DNSWL)
            return fail(err, errsize, "'accept' is for [dnswl] codes only");
        if (code.mode == FILTER_MODE_REJECT && d->kind != FILTER_DNSBL)
            return fail(err, errsize, "'reject' is for [dnsbl] codes only");
        d->codes[d->n_codes++] = code;
    }
    return 0;
}

static int key_dnsl(struct filter_config *fc, const char *section, enum filter_dnsl_kind kind,
                    const char *lname, const char *name, const char *value, char *err,
                    size_t errsize)
{
    struct filter_dnsl_cfg *d = dnsl_get(fc, kind, lname, err, errsize);
    if (d == NULL)
        return -1;
    if (strcmp(name, "zone") == 0) {
        char z[256];
        if (str_copy(z, value, sizeof(z)) >= sizeof(d->zone) - 1)
            return fail(err, errsize, "zone too long");
        size_t zl = strlen(z);
        if (zl && z[zl - 1] == '.')
            z[zl - 1] = '\0';
        str_lower(z);
        if (z[0] == '\0' || !filter_domain_syntax_ok(z))
            return fail(err, errsize, "bad zone '%s' (expected a DNS name)", value);
        str_copy(d->zone, z, sizeof(d->zone));
        return 0;
    }
    if (strcmp(name, "weight") == 0) {
        if (parse_double(value, -1000, 1000, &d->weight) < 0)
            return fail(err, errsize, "bad weight '%s' (expected a number)", value);
        return 0;
    }
    if (strcmp(name, "action") == 0) {
        if (strcasecmp(value, "score") == 0)
            d->mode = FILTER_MODE_SCORE;
        else if (kind == FILTER_DNSBL && strcasecmp(value, "reject") == 0)
            d->mode = FILTER_MODE_REJECT;
        else if (kind == FILTER_DNSWL && strcasecmp(value, "accept") == 0)
            d->mode = FILTER_MODE_ACCEPT;
        else
            return fail(err, errsize, "bad action '%s' (expected %s)", value,
                        kind == FILTER_DNSBL ? "reject or score" : "accept or score");
        return 0;
    }
    if (strcmp(name, "codes") == 0)
        return dnsl_codes(d, value, err, errsize);
    if (strcmp(name, "type") == 0) {
        if (strcasecmp(value, "ip") == 0)
            d->type = FILTER_DNSL_IP;
        else if (strcasecmp(value, "domain") == 0)
            d->type = FILTER_DNSL_DOMAIN;
        else
            return fail(err, errsize, "bad type '%s' (expected ip or domain)", value);
        return 0;
    }
    if (strcmp(name, "check") == 0) {
        if (dnsl_checks(value, &d->checks) < 0)
            return fail(err, errsize, "bad check '%s' (expected sender, helo and/or from)", value);
        return 0;
    }
    if (strcmp(name, "timeout") == 0) {
        uint64_t ms;
        if (parse_ms(value, &ms) < 0 || ms == 0 || ms > 60000)
            return fail(err, errsize, "bad timeout '%s' (expected e.g. 500ms or 3s, at most 60s)",
                        value);
        d->timeout_ms = (unsigned)ms;
        return 0;
    }
    return unknown(err, errsize, section, name);
}

/* ---- plain sections ---- */

static int set_duration_key(uint64_t *dst, const char *value, char *err, size_t errsize)
{
    if (parse_duration(value, dst) < 0)
        return fail(err, errsize, "bad duration '%s' (expected e.g. 30s, 5m, 4h, 5d)", value);
    return 0;
}

static int set_bool_key(bool *dst, const char *value, char *err, size_t errsize)
{
    if (parse_bool(value, dst) < 0)
        return fail(err, errsize, "bad boolean '%s' (expected yes or no)", value);
    return 0;
}

static int set_int_key(int *dst, const char *value, long min, long max, char *err, size_t errsize)
{
    if (parse_int(value, min, max, dst) < 0)
        return fail(err, errsize, "bad number '%s' (expected %ld to %ld)", value, min, max);
    return 0;
}

static int key_greylist(struct filter_config *fc, const char *name, const char *value, char *err,
                        size_t errsize)
{
    if (strcmp(name, "enabled") == 0)
        return set_bool_key(&fc->greylist_enabled, value, err, errsize);
    if (strcmp(name, "min_delay") == 0)
        return set_duration_key(&fc->greylist_min_delay, value, err, errsize);
    if (strcmp(name, "window") == 0)
        return set_duration_key(&fc->greylist_window, value, err, errsize);
    if (strcmp(name, "expire") == 0)
        return set_duration_key(&fc->greylist_expire, value, err, errsize);
    if (strcmp(name, "auto_allow_after") == 0)
        return set_int_key(&fc->greylist_auto_allow, value, 0, 1000000, err, errsize);
    if (strcmp(name, "ipv4_prefix") == 0)
        return set_int_key(&fc->greylist_v4_prefix, value, 8, 32, err, errsize);
    if (strcmp(name, "ipv6_prefix") == 0)
        return set_int_key(&fc->greylist_v6_prefix, value, 16, 128, err, errsize);
    return unknown(err, errsize, "greylist", name);
}

/* Checks every entry of a list value as the engine will read it. */
static int check_list_value(const char *value, bool ip, char *err, size_t errsize)
{
    char buf[FILTER_LIST_TEXT_MAX];
    if (str_copy(buf, value, sizeof(buf)) >= sizeof(buf))
        return fail(err, errsize, "list too long");
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        str_trim(t);
        if (*t == '\0')
            continue;
        struct filter_entry e;
        char why[160];
        if (filter_entry_parse(t, &e, why, sizeof(why)) < 0)
            return fail(err, errsize, "%s", why);
        if (ip && e.type != FILTER_E_CIDR)
            return fail(err, errsize, "'%s' is not an IP address or CIDR range", t);
        if (!ip && e.type == FILTER_E_CIDR)
            return fail(err, errsize, "'%s' is an IP address; put it in allow_ip or block_ip", t);
    }
    return 0;
}

static int key_lists(struct filter_config *fc, const char *name, const char *value, char *err,
                     size_t errsize)
{
    static const struct {
        const char *name;
        size_t off;
        bool ip;
    } keys[] = {
        { "allow_ip", offsetof(struct filter_config, allow_ip), true },
        { "block_ip", offsetof(struct filter_config, block_ip), true },
        { "allow_sender", offsetof(struct filter_config, allow_sender), false },
        { "block_sender", offsetof(struct filter_config, block_sender), false },
        { "recipient_exceptions", offsetof(struct filter_config, rcpt_exceptions), false },
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(name, keys[i].name) == 0) {
            if (check_list_value(value, keys[i].ip, err, errsize) < 0)
                return -1;
            return list_append((char *)fc + keys[i].off, FILTER_LIST_TEXT_MAX, value, err,
                               errsize);
        }
    if (strcmp(name, "allow_loopback") == 0)
        return set_bool_key(&fc->allow_loopback, value, err, errsize);
    if (strcmp(name, "allow_sender_spf") == 0)
        return set_bool_key(&fc->allow_sender_spf, value, err, errsize);
    return unknown(err, errsize, "lists", name);
}

static int key_postscreen(struct filter_config *fc, const char *name, const char *value,
                          char *err, size_t errsize)
{
    struct filter_check_cfg *dst = NULL;
    if (strcmp(name, "greet_wait") == 0) {
        uint64_t ms;
        if (parse_ms(value, &ms) < 0 || ms > 30000)
            return fail(err, errsize, "bad greet_wait '%s' (expected e.g. 2s or 500ms, at most 30s)",
                        value);
        fc->greet_wait_ms = ms;
        return 0;
    }
    if (strcmp(name, "pregreet") == 0)
        dst = &fc->pregreet;
    else if (strcmp(name, "pipelining") == 0)
        dst = &fc->pipelining;
    else if (strcmp(name, "fcrdns") == 0)
        dst = &fc->fcrdns;
    else if (strcmp(name, "helo") == 0)
        dst = &fc->helo;
    else
        return unknown(err, errsize, "postscreen", name);
    if (filter_mode_parse(value, false, dst) < 0)
        return fail(err, errsize, "bad value '%s' (expected off, score N or reject)", value);
    return 0;
}

static int key_spam(struct filter_config *fc, const char *name, const char *value, char *err,
                    size_t errsize)
{
    double *dst = NULL;
    if (strcmp(name, "add_header_score") == 0)
        dst = &fc->add_header_score;
    else if (strcmp(name, "reject_score") == 0)
        dst = &fc->reject_score;
    for (int i = 0; dst == NULL && i < FILTER_R_COUNT; i++)
        if (strcasecmp(name, filter_rule_names[i]) == 0)
            dst = &fc->rule_score[i];
    if (dst == NULL)
        return unknown(err, errsize, "spam", name);
    if (parse_double(value, -1000, 1000, dst) < 0)
        return fail(err, errsize, "bad score '%s' (expected a number)", value);
    return 0;
}

static int key_rspamd(struct filter_config *fc, const char *name, const char *value, char *err,
                      size_t errsize)
{
    if (strcmp(name, "url") == 0) {
        if (value[0] != '\0') {
            struct filter_url u;
            if (filter_url_parse(value, &u) < 0)
                return fail(err, errsize, "bad url '%s' (expected http://HOST:PORT)", value);
        }
        if (str_copy(fc->rspamd_url, value, sizeof(fc->rspamd_url)) >= sizeof(fc->rspamd_url))
            return fail(err, errsize, "url too long");
        return 0;
    }
    if (strcmp(name, "timeout") == 0) {
        uint64_t ms;
        if (parse_ms(value, &ms) < 0 || ms == 0 || ms > 300000)
            return fail(err, errsize, "bad timeout '%s' (expected e.g. 10s, at most 5m)", value);
        fc->rspamd_timeout_ms = ms;
        return 0;
    }
    return unknown(err, errsize, "rspamd", name);
}

static int key_ratelimit(struct filter_config *fc, const char *name, const char *value,
                         char *err, size_t errsize)
{
    if (strcmp(name, "connections_per_minute") == 0)
        return set_int_key(&fc->conn_per_minute, value, 0, 100000000, err, errsize);
    if (strcmp(name, "messages_per_hour") == 0)
        return set_int_key(&fc->msgs_per_hour, value, 0, 100000000, err, errsize);
    if (strcmp(name, "per_user_messages_per_hour") == 0)
        return set_int_key(&fc->user_msgs_per_hour, value, 0, 100000000, err, errsize);
    if (strcmp(name, "auth_failures_per_hour") == 0)
        return set_int_key(&fc->auth_fail_per_hour, value, 0, 100000000, err, errsize);
    return unknown(err, errsize, "ratelimit", name);
}

int filter_config_key(struct filter_config *fc, const char *section, const char *name,
                      const char *value, char *err, size_t errsize)
{
    if (errsize > 0)
        err[0] = '\0';
    if (strcmp(section, "greylist") == 0)
        return key_greylist(fc, name, value, err, errsize);
    if (strcmp(section, "lists") == 0)
        return key_lists(fc, name, value, err, errsize);
    if (strcmp(section, "postscreen") == 0)
        return key_postscreen(fc, name, value, err, errsize);
    if (strcmp(section, "spam") == 0)
        return key_spam(fc, name, value, err, errsize);
    if (strcmp(section, "rspamd") == 0)
        return key_rspamd(fc, name, value, err, errsize);
    if (strcmp(section, "ratelimit") == 0)
        return key_ratelimit(fc, name, value, err, errsize);
    enum filter_dnsl_kind kind;
    const char *lname;
    if (dnsl_section(section, &kind, &lname))
        return key_dnsl(fc, section, kind, lname, name, value, err, errsize);
    fail(err, errsize, "unknown section [%s]", section);
    return 1;
}

int filter_config_finish(const struct filter_config *fc, char *err, size_t errsize)
{
    for (int i = 0; i < fc->n_dnsl; i++) {
        const struct filter_dnsl_cfg *d = &fc->dnsl[i];
        const char *kind = d->kind == FILTER_DNSBL ? "dnsbl" : "dnswl";
        if (d->zone[0] == '\0')
            return fail(err, errsize, "[%s %s] needs a zone", kind, d->name);
        if (d->kind == FILTER_DNSWL && d->type == FILTER_DNSL_DOMAIN)
            return fail(err, errsize, "[dnswl %s]: type = domain is for [dnsbl] only", d->name);
    }
    if (fc->reject_score > 0 && fc->add_header_score > fc->reject_score)
        return fail(err, errsize, "[spam] add_header_score (%g) is above reject_score (%g)",
                    fc->add_header_score, fc->reject_score);
    if (fc->greylist_min_delay >= fc->greylist_window)
        return fail(err, errsize, "[greylist] min_delay must be shorter than window");
    if (fc->greylist_window > fc->greylist_expire)
        return fail(err, errsize, "[greylist] window must not be longer than expire");
    return 0;
}
