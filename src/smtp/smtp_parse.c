/*
 * SMTP parsing with no I/O (contract in smtp_parse.h).  Everything here works
 * on bounded buffers, never allocates, and treats every byte as hostile: the
 * fuzz targets in tests/fuzz call each entry point on arbitrary input.
 */
#include "smtp/smtp_parse.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- replies */

static const struct smtp_reply reply_bad_char = { 500, "5.5.2", "Syntax error, bad character in command" };
static const struct smtp_reply reply_unknown = { 500, "5.5.1", "Command unrecognized" };
static const struct smtp_reply reply_mail_syntax = { 501, "5.5.4", "Syntax: MAIL FROM:<address>" };
static const struct smtp_reply reply_rcpt_syntax = { 501, "5.5.4", "Syntax: RCPT TO:<address>" };
static const struct smtp_reply reply_bad_sender = { 501, "5.1.7", "Bad sender address syntax" };
static const struct smtp_reply reply_bad_rcpt = { 501, "5.1.3", "Bad recipient address syntax" };
static const struct smtp_reply reply_sender_long = { 501, "5.1.7", "Path too long" };
static const struct smtp_reply reply_rcpt_long = { 501, "5.1.3", "Path too long" };
static const struct smtp_reply reply_need_utf8 = { 553, "5.6.7", "Must declare SMTPUTF8 to send unicode address" };
static const struct smtp_reply reply_param_syntax = { 501, "5.5.4", "Syntax error in parameters" };
static const struct smtp_reply reply_param_dup = { 501, "5.5.4", "Duplicate parameter" };
static const struct smtp_reply reply_param_unknown = { 555, "5.5.4", "Unsupported parameter" };
static const struct smtp_reply reply_bad_size = { 501, "5.5.4", "Bad SIZE parameter" };
static const struct smtp_reply reply_bad_body = { 501, "5.5.4", "Bad BODY parameter" };
static const struct smtp_reply reply_bad_ret = { 501, "5.5.4", "Bad RET parameter" };
static const struct smtp_reply reply_bad_envid = { 501, "5.5.4", "Bad ENVID parameter" };
static const struct smtp_reply reply_bad_auth = { 501, "5.5.4", "Bad AUTH parameter" };
static const struct smtp_reply reply_bad_notify = { 501, "5.5.4", "Bad NOTIFY parameter" };
static const struct smtp_reply reply_bad_orcpt = { 501, "5.5.4", "Bad ORCPT parameter" };
static const struct smtp_reply reply_bad_smtputf8 = { 501, "5.5.4", "SMTPUTF8 takes no value" };
static const struct smtp_reply reply_bdat_syntax = { 501, "5.5.4", "Syntax: BDAT <size> [LAST]" };

static int fail(struct smtp_reply *reply, const struct smtp_reply *r)
{
    if (reply != NULL)
        *reply = *r;
    return -1;
}

/* ------------------------------------------------------- character classes */

static bool is_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_alnum(unsigned char c) { return is_alpha(c) || is_digit(c); }
static char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }

/* atext of RFC 5322 3.2.3, as used by Dot-string in RFC 5321 4.1.2. */
static bool is_atext(unsigned char c)
{
    return is_alnum(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* ---------------------------------------------------------------- commands */

static const struct {
    const char *name;
    enum smtp_verb verb;
} smtp_verbs[] = {
    { "HELO", SMTP_VERB_HELO }, { "EHLO", SMTP_VERB_EHLO }, { "MAIL", SMTP_VERB_MAIL },
    { "RCPT", SMTP_VERB_RCPT }, { "DATA", SMTP_VERB_DATA }, { "BDAT", SMTP_VERB_BDAT },
    { "RSET", SMTP_VERB_RSET }, { "NOOP", SMTP_VERB_NOOP }, { "QUIT", SMTP_VERB_QUIT },
    { "VRFY", SMTP_VERB_VRFY }, { "EXPN", SMTP_VERB_EXPN }, { "HELP", SMTP_VERB_HELP },
    { "STARTTLS", SMTP_VERB_STARTTLS }, { "AUTH", SMTP_VERB_AUTH },
};

/* NUL, CR and LF are refused anywhere in the line, not only in the verb: a
 * NUL would silently cut the argument short, and a CR is the first half of
 * a smuggled line end (DESIGN 5).  8-bit bytes are refused in the verb only,
 * since arguments may carry UTF-8 (RFC 6531). */
int smtp_command_parse(char *line, size_t len, struct smtp_command *cmd, struct smtp_reply *reply)
{
    cmd->verb = SMTP_VERB_UNKNOWN;
    cmd->arg = "";
    if (memchr(line, '\0', len) || memchr(line, '\r', len) || memchr(line, '\n', len))
        return fail(reply, &reply_bad_char);
    size_t vlen = 0;
    while (vlen < len && line[vlen] != ' ') {
        if ((unsigned char)line[vlen] >= 0x80)
            return fail(reply, &reply_bad_char);
        vlen++;
    }
    line[len] = '\0';
    for (size_t i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); i++) {
        if (strlen(smtp_verbs[i].name) == vlen && strncasecmp(line, smtp_verbs[i].name, vlen) == 0) {
            cmd->verb = smtp_verbs[i].verb;
            break;
        }
    }
    if (cmd->verb == SMTP_VERB_UNKNOWN)
        return fail(reply, &reply_unknown);
    if (vlen < len) {
        line[vlen] = '\0';
        cmd->arg = line + vlen + 1;
    }
    return 0;
}

/* ------------------------------------------------------------------- paths */

enum addr_err { ADDR_OK = 0, ADDR_SYNTAX, ADDR_TOO_LONG };

/* One atext character or, if utf8, one UTF-8 sequence (RFC 6531 3.3
 * atext =/ UTF8-non-ascii); 0 if neither.  Sets *utf8 for non-ASCII. */
static size_t atext_len(const unsigned char *s, size_t avail, bool *utf8)
{
    if (avail == 0)
        return 0;
    if (s[0] < 0x80)
        return is_atext(s[0]) ? 1 : 0;
    size_t n = utf8_seq_len(s, avail);
    if (n > 0)
        *utf8 = true;
    return n;
}

/* Length of the Dot-string at s (at most avail bytes), 0 if there is none or
 * it ends in a dot. */
static size_t dot_string_len(const unsigned char *s, size_t avail, bool *utf8)
{
    size_t i = 0;
    for (;;) {
        size_t atom = 0, n;
        while ((n = atext_len(s + i, avail - i, utf8)) > 0) {
            i += n;
            atom += n;
        }
        if (atom == 0)
            return 0;
        if (i >= avail || s[i] != '.')
            return i;
        i++;
    }
}

/* Quoted-string local part (RFC 5321 4.1.2, RFC 6531 3.3).  Decodes the
 * content into local, then writes the canonical form: bare when the
 * content is a Dot-string, else re-quoted with only '"' and '\' escaped.
 * Returns the length consumed (quotes included) or 0 with *err. */
static size_t quoted_local_parse(const char *s, struct smtp_path *path, enum addr_err *err)
{
    char content[SMTP_LOCALPART_MAX];
    size_t i = 1, clen = 0;
    for (;;) {
        unsigned char c = (unsigned char)s[i];
        size_t n = 1;
        if (c == '"')
            break;
        if (c == '\\') {
            c = (unsigned char)s[i + 1];
            if (c < 32 || c > 126)
                goto syntax;
            i++;
        } else if (c >= 0x80) {
            n = utf8_seq_len((const unsigned char *)s + i, SIZE_MAX);
            if (n == 0)
                goto syntax;
            path->utf8 = true;
        } else if (c < 32 || c > 126)
            goto syntax;
        if (i + n + 1 > SMTP_LOCALPART_MAX) {   /* raw length with both quotes */
            *err = ADDR_TOO_LONG;
            return 0;
        }
        memcpy(content + clen, s + i, n);
        clen += n;
        i += n;
    }
    bool dummy = false;
    char *out = path->local;
    if (clen > 0 && dot_string_len((unsigned char *)content, clen, &dummy) == clen) {
        memcpy(out, content, clen);
        out[clen] = '\0';
    } else {
        *out++ = '"';
        for (size_t k = 0; k < clen; k++) {
            if (content[k] == '"' || content[k] == '\\')
                *out++ = '\\';
            *out++ = content[k];
        }
        *out++ = '"';
        *out = '\0';
    }
    return i + 1;
syntax:
    *err = ADDR_SYNTAX;
    return 0;
}

static size_t local_parse(const char *s, struct smtp_path *path, enum addr_err *err)
{
    if (*s == '"')
        return quoted_local_parse(s, path, err);
    size_t n = dot_string_len((const unsigned char *)s, SIZE_MAX, &path->utf8);
    if (n == 0) {
        *err = ADDR_SYNTAX;
        return 0;
    }
    if (n > SMTP_LOCALPART_MAX) {
        *err = ADDR_TOO_LONG;
        return 0;
    }
    memcpy(path->local, s, n);
    path->local[n] = '\0';
    return n;
}

/* Domain (RFC 5321 4.1.2): labels of letters, digits and inner hyphens
 * (or UTF-8, RFC 6531 3.3 sub-domain =/ U-label), 1..63 octets each, no
 * empty label, no trailing dot, 255 octets in all.  Writes the domain
 * lower-cased (ASCII only) into out (SMTP_DOMAIN_MAX + 1 bytes) if not NULL.
 * Returns the length consumed or 0 with *err. */
static size_t domain_parse(const char *s, char *out, bool *utf8, enum addr_err *err)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    for (;;) {
        size_t start = i;
        bool last_hyphen = false;
        for (;;) {
            size_t n = 1;
            if (is_alnum(u[i]) || (u[i] == '-' && i > start))
                last_hyphen = u[i] == '-';
            else if (u[i] >= 0x80 && (n = utf8_seq_len(u + i, SIZE_MAX)) > 0) {
                *utf8 = true;
                last_hyphen = false;
            } else
                break;
            i += n;
        }
        if (i == start || last_hyphen)
            goto syntax;
        if (i - start > 63 || i > SMTP_DOMAIN_MAX) {
            *err = ADDR_TOO_LONG;
            return 0;
        }
        if (u[i] != '.')
            break;
        i++;
    }
    if (out != NULL) {
        for (size_t k = 0; k < i; k++)
            out[k] = to_lower(s[k]);
        out[i] = '\0';
    }
    return i;
syntax:
    *err = ADDR_SYNTAX;
    return 0;
}

/* address-literal (RFC 5321 4.1.3): "[" IPv4 "]" or "[IPv6:" addr "]",
 * checked with inet_pton.  General-address-literal tags are refused: none
 * is standardized besides IPv6.  Written as "[IPv6:" + lower-case + "]". */
static size_t literal_parse(const char *s, char *out, enum addr_err *err)
{
    char buf[64];
    unsigned char probe[16];
    size_t i = 1;
    while (s[i] != ']' && s[i] != '\0' && i < sizeof(buf))
        i++;
    if (s[i] != ']' || i == 1)
        goto syntax;
    size_t n = i - 1;
    memcpy(buf, s + 1, n);
    buf[n] = '\0';
    if (n > 5 && strncasecmp(buf, "IPv6:", 5) == 0) {
        if (inet_pton(AF_INET6, buf + 5, probe) != 1)
            goto syntax;
        memcpy(out, "[IPv6:", 6);
        for (size_t k = 5; k < n; k++)
            out[k + 1] = to_lower(buf[k]);
        memcpy(out + n + 1, "]", 2);
    } else {
        if (inet_pton(AF_INET, buf, probe) != 1)
            goto syntax;
        memcpy(out, s, n + 2);
        out[n + 2] = '\0';
    }
    return i + 1;
syntax:
    *err = ADDR_SYNTAX;
    return 0;
}

/* Mailbox = Local-part "@" ( Domain / address-literal ), filling path.
 * Returns the length consumed or 0 with *err. */
static size_t mailbox_parse(const char *s, struct smtp_path *path, enum addr_err *err)
{
    size_t i = local_parse(s, path, err);
    if (i == 0)
        return 0;
    if (s[i] != '@') {
        *err = ADDR_SYNTAX;
        return 0;
    }
    i++;
    size_t n = s[i] == '[' ? literal_parse(s + i, path->domain, err)
                           : domain_parse(s + i, path->domain, &path->utf8, err);
    if (n == 0)
        return 0;
    size_t llen = strlen(path->local), dlen = strlen(path->domain);
    if (llen + 1 + dlen > SMTP_PATH_MAX - 2) {
        *err = ADDR_TOO_LONG;
        return 0;
    }
    memcpy(path->mailbox, path->local, llen);
    path->mailbox[llen] = '@';
    memcpy(path->mailbox + llen + 1, path->domain, dlen + 1);
    return i + n;
}

/* A-d-l = At-domain *( "," At-domain ) ":" (RFC 5321 4.1.2): accepted and
 * dropped, as 4.1.1.3 tells servers to.  Returns the length or 0. */
static size_t source_route_skip(const char *s, bool *utf8, enum addr_err *err)
{
    size_t i = 0;
    for (;;) {
        if (s[i] != '@')
            goto syntax;
        size_t n = domain_parse(s + i + 1, NULL, utf8, err);
        if (n == 0)
            return 0;
        i += n + 1;
        if (s[i] == ':')
            return i + 1;
        if (s[i] != ',')
            goto syntax;
        i++;
    }
syntax:
    *err = ADDR_SYNTAX;
    return 0;
}

/* Path = "<" [ A-d-l ":" ] Mailbox ">", or "<>" when null_ok, or
 * "<Postmaster>" when postmaster_ok.  Returns the length consumed or 0. */
static size_t path_parse(const char *s, bool null_ok, bool postmaster_ok, struct smtp_path *path,
                         enum addr_err *err)
{
    memset(path, 0, sizeof(*path));
    *err = ADDR_SYNTAX;
    if (s[0] != '<')
        return 0;
    if (s[1] == '>') {
        if (!null_ok)
            return 0;
        path->is_null = true;
        return 2;
    }
    size_t i = 1, n;
    bool route_utf8 = false;
    if (s[1] == '@') {
        if ((n = source_route_skip(s + 1, &route_utf8, err)) == 0)
            return 0;
        i += n;
    }
    if (postmaster_ok && strncasecmp(s + i, "Postmaster>", 11) == 0) {
        memcpy(path->local, s + i, 10);
        memcpy(path->mailbox, s + i, 10);
        path->is_postmaster = true;
        n = 10;
    } else if ((n = mailbox_parse(s + i, path, err)) == 0)
        return 0;
    i += n;
    if (s[i] != '>') {
        *err = ADDR_SYNTAX;
        return 0;
    }
    if (i + 1 > SMTP_PATH_MAX) {
        *err = ADDR_TOO_LONG;
        return 0;
    }
    path->utf8 |= route_utf8;
    *err = ADDR_OK;
    return i + 1;
}

int smtp_address_parse(const char *addr, struct smtp_path *path)
{
    enum addr_err err;
    memset(path, 0, sizeof(*path));
    size_t n = mailbox_parse(addr, path, &err);
    if (n == 0 || addr[n] != '\0') {
        memset(path, 0, sizeof(*path));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------- xtext */

static int hex_value(unsigned char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* xtext (RFC 3461 4): xchar is 33..126 except '+' and '='; "+XX" is a byte
 * in upper-case hex.  A decoded NUL is refused: it cannot live in a C
 * string.  Returns the decoded length or -1. */
static long xtext_decode_n(const char *in, size_t len, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '+') {
            if (len - i < 3)
                return -1;
            int hi = hex_value((unsigned char)in[i + 1]);
            int lo = hex_value((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0 || (hi | lo) == 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else if (c < 33 || c > 126 || c == '=')
            return -1;
        if (o + 1 >= size)
            return -1;
        out[o++] = (char)c;
    }
    if (size == 0)
        return -1;
    out[o] = '\0';
    return (long)o;
}

int smtp_xtext_decode(const char *in, char *out, size_t size)
{
    return xtext_decode_n(in, strlen(in), out, size) < 0 ? -1 : 0;
}

int smtp_xtext_encode(const char *in, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        bool plain = *p >= 33 && *p <= 126 && *p != '+' && *p != '=';
        size_t need = plain ? 1 : 3;
        if (o + need >= size)
            return -1;
        if (plain)
            out[o++] = (char)*p;
        else {
            out[o++] = '+';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    if (size == 0)
        return -1;
    out[o] = '\0';
    return 0;
}

/* ------------------------------------------------------- ESMTP parameters */

/* One "keyword[=value]" token; value is NULL when there is no '='. */
struct esmtp_param {
    const char *key;
    size_t klen;
    const char *value;
    size_t vlen;
};

static bool param_is(const struct esmtp_param *p, const char *name)
{
    return strlen(name) == p->klen && strncasecmp(p->key, name, p->klen) == 0;
}

static bool value_is(const struct esmtp_param *p, const char *word)
{
    return strlen(word) == p->vlen && strncasecmp(p->value, word, p->vlen) == 0;
}

/* Splits the next parameter off *sp (RFC 5321 4.1.2 esmtp-param); spaces
 * between parameters may repeat, as Postfix tolerates.  Returns 1 with a
 * parameter, 0 at the end, -1 on a malformed keyword. */
static int esmtp_param_next(const char **sp, struct esmtp_param *p)
{
    const char *s = *sp;
    while (*s == ' ')
        s++;
    if (*s == '\0')
        return 0;
    const char *tok = s;
    while (*s != ' ' && *s != '\0')
        s++;
    *sp = s;
    const char *eq = memchr(tok, '=', (size_t)(s - tok));
    p->key = tok;
    p->klen = (size_t)((eq ? eq : s) - tok);
    p->value = eq ? eq + 1 : NULL;
    p->vlen = eq ? (size_t)(s - eq - 1) : 0;
    if (p->klen == 0 || !is_alnum((unsigned char)tok[0]))
        return -1;
    for (size_t i = 1; i < p->klen; i++)
        if (!is_alnum((unsigned char)tok[i]) && tok[i] != '-')
            return -1;
    return 1;
}

/* SIZE (RFC 1870): 1*20DIGIT.  A 20-digit value past UINT64_MAX saturates:
 * it is a well-formed size too big for any limit, which the server answers
 * with 552 rather than a syntax error. */
static int param_size(const struct esmtp_param *p, uint64_t *size_r)
{
    if (p->value == NULL || p->vlen == 0 || p->vlen > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < p->vlen; i++) {
        unsigned char c = (unsigned char)p->value[i];
        if (!is_digit(c))
            return -1;
        unsigned d = c - '0';
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    *size_r = v;
    return 0;
}

/* Decodes an xtext value into out and checks every decoded byte: printable
 * ASCII only when ascii, else no controls and valid UTF-8. */
static int param_xtext(const struct esmtp_param *p, char *out, size_t size, bool ascii)
{
    if (p->value == NULL || p->vlen == 0)
        return -1;
    long n = xtext_decode_n(p->value, p->vlen, out, size);
    if (n < 0)
        return -1;
    for (long i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c < 32 || c == 127 || (ascii && c > 127))
            return -1;
    }
    if (!utf8_valid((unsigned char *)out, (size_t)n))
        return -1;
    return 0;
}

/* NOTIFY (RFC 3461 4.1): "NEVER" alone, or a comma list of SUCCESS,
 * FAILURE, DELAY, each at most once. */
static int param_notify(const struct esmtp_param *p, unsigned *notify_r)
{
    static const struct { const char *name; unsigned bit; } words[] = {
        { "NEVER", SMTP_NOTIFY_NEVER }, { "SUCCESS", SMTP_NOTIFY_SUCCESS },
        { "FAILURE", SMTP_NOTIFY_FAILURE }, { "DELAY", SMTP_NOTIFY_DELAY },
    };
    if (p->value == NULL)
        return -1;
    unsigned bits = 0;
    const char *s = p->value, *end = p->value + p->vlen;
    for (;;) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        struct esmtp_param item = { .value = s, .vlen = (size_t)((comma ? comma : end) - s) };
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
            if (value_is(&item, words[i].name))
                bit = words[i].bit;
        if (bit == 0 || (bits & bit))
            return -1;
        bits |= bit;
        if (comma == NULL)
            break;
        s = comma + 1;
    }
    if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER)
        return -1;
    *notify_r = bits;
    return 0;
}

/* ORCPT (RFC 3461 4.2): addr-type ";" xtext, the type an atom; stored as
 * "type;decoded-address", the address at most 500 octets once decoded. */
static int param_orcpt(const struct esmtp_param *p, char *out, size_t size)
{
    if (p->value == NULL)
        return -1;
    const char *semi = memchr(p->value, ';', p->vlen);
    if (semi == NULL || semi == p->value)
        return -1;
    size_t tlen = (size_t)(semi - p->value);
    for (size_t i = 0; i < tlen; i++)
        if (!is_atext((unsigned char)p->value[i]))
            return -1;
    if (tlen + 1 >= size)
        return -1;
    memcpy(out, p->value, tlen + 1);
    struct esmtp_param addr = { .value = semi + 1, .vlen = p->vlen - tlen - 1 };
    size_t room = size - tlen - 1;
    if (room > 501)
        room = 501;
    if (param_xtext(&addr, out + tlen + 1, room, false) < 0) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

enum { SEEN_SIZE = 1, SEEN_BODY = 2, SEEN_UTF8 = 4, SEEN_RET = 8, SEEN_ENVID = 16, SEEN_AUTH = 32 };

/* One MAIL parameter.  Returns 0 or -1 with *reply. */
static int mail_param(const struct esmtp_param *p, bool allow_utf8, unsigned *seen,
                      struct smtp_mail_params *mp, struct smtp_reply *reply)
{
    unsigned bit;
    int rc = 0;
    const struct smtp_reply *bad;
    if (param_is(p, "SIZE")) {
        bit = SEEN_SIZE, bad = &reply_bad_size;
        rc = param_size(p, &mp->size);
    } else if (param_is(p, "BODY")) {
        bit = SEEN_BODY, bad = &reply_bad_body;
        if (p->value != NULL && value_is(p, "7BIT"))
            mp->body = SMTP_BODY_7BIT;
        else if (p->value != NULL && value_is(p, "8BITMIME"))
            mp->body = SMTP_BODY_8BITMIME;
        else if (p->value != NULL && value_is(p, "BINARYMIME"))
            mp->body = SMTP_BODY_BINARYMIME;
        else
            rc = -1;
    } else if (param_is(p, "SMTPUTF8") && allow_utf8) {
        bit = SEEN_UTF8, bad = &reply_bad_smtputf8;
        rc = p->value != NULL ? -1 : 0;
        mp->smtputf8 = rc == 0;
    } else if (param_is(p, "RET")) {
        bit = SEEN_RET, bad = &reply_bad_ret;
        if (p->value != NULL && (value_is(p, "FULL") || value_is(p, "HDRS"))) {
            for (size_t i = 0; i < 4; i++)
                mp->ret[i] = (char)(p->value[i] & ~0x20);
            mp->ret[4] = '\0';
        } else
            rc = -1;
    } else if (param_is(p, "ENVID")) {
        bit = SEEN_ENVID, bad = &reply_bad_envid;
        rc = param_xtext(p, mp->envid, sizeof(mp->envid), true);
    } else if (param_is(p, "AUTH")) {
        bit = SEEN_AUTH, bad = &reply_bad_auth;
        rc = param_xtext(p, mp->auth, sizeof(mp->auth), false);
    } else
        return fail(reply, &reply_param_unknown);
    if (*seen & bit)
        return fail(reply, &reply_param_dup);
    *seen |= bit;
    return rc < 0 ? fail(reply, bad) : 0;
}

/* One RCPT parameter.  Returns 0 or -1 with *reply. */
static int rcpt_param(const struct esmtp_param *p, unsigned *seen, struct smtp_rcpt_params *rp,
                      struct smtp_reply *reply)
{
    unsigned bit;
    int rc;
    const struct smtp_reply *bad;
    if (param_is(p, "NOTIFY")) {
        bit = 1, bad = &reply_bad_notify;
        rc = param_notify(p, &rp->notify);
    } else if (param_is(p, "ORCPT")) {
        bit = 2, bad = &reply_bad_orcpt;
        rc = param_orcpt(p, rp->orcpt, sizeof(rp->orcpt));
    } else
        return fail(reply, &reply_param_unknown);
    if (*seen & bit)
        return fail(reply, &reply_param_dup);
    *seen |= bit;
    return rc < 0 ? fail(reply, bad) : 0;
}

/* "FROM:" / "TO:" then at most one space (Postfix tolerates it, RFC 5321
 * 4.1.1.2 has none), then the path.  Returns the text after the path, or
 * NULL with *reply. */
static const char *path_arg_parse(const char *arg, const char *prefix, bool is_mail,
                                  struct smtp_path *path, struct smtp_reply *reply)
{
    const struct smtp_reply *r = is_mail ? &reply_mail_syntax : &reply_rcpt_syntax;
    const char *s = arg;
    size_t plen = strlen(prefix);
    enum addr_err err;
    size_t n = 0;
    memset(path, 0, sizeof(*path));
    if (strncasecmp(s, prefix, plen) != 0)
        goto bad;
    s += plen;
    if (*s == ' ')
        s++;
    if (*s != '<')
        goto bad;
    n = path_parse(s, is_mail, !is_mail, path, &err);
    if (n == 0 && err == ADDR_TOO_LONG)
        r = is_mail ? &reply_sender_long : &reply_rcpt_long;
    else if (n == 0)
        r = is_mail ? &reply_bad_sender : &reply_bad_rcpt;
    else if (s[n] == ' ' || s[n] == '\0')
        return s + n;
bad:
    memset(path, 0, sizeof(*path));
    fail(reply, r);
    return NULL;
}

int smtp_mail_parse(const char *arg, bool allow_utf8, struct smtp_path *path,
                    struct smtp_mail_params *params, struct smtp_reply *reply)
{
    memset(params, 0, sizeof(*params));
    const char *s = path_arg_parse(arg, "FROM:", true, path, reply);
    if (s == NULL)
        return -1;
    struct esmtp_param p;
    unsigned seen = 0;
    int rc;
    while ((rc = esmtp_param_next(&s, &p)) != 0) {
        if (rc < 0)
            fail(reply, &reply_param_syntax);
        if (rc < 0 || mail_param(&p, allow_utf8, &seen, params, reply) < 0)
            goto bad;
    }
    /* RFC 6531 3.4: a non-ASCII path needs SMTPUTF8 on this very MAIL. */
    if (path->utf8 && !params->smtputf8) {
        fail(reply, &reply_need_utf8);
        goto bad;
    }
    return 0;
bad:
    memset(path, 0, sizeof(*path));
    memset(params, 0, sizeof(*params));
    return -1;
}

int smtp_rcpt_parse(const char *arg, bool allow_utf8, struct smtp_path *path,
                    struct smtp_rcpt_params *params, struct smtp_reply *reply)
{
    memset(params, 0, sizeof(*params));
    const char *s = path_arg_parse(arg, "TO:", false, path, reply);
    if (s == NULL)
        return -1;
    struct esmtp_param p;
    unsigned seen = 0;
    int rc;
    while ((rc = esmtp_param_next(&s, &p)) != 0) {
        if (rc < 0)
            fail(reply, &reply_param_syntax);
        if (rc < 0 || rcpt_param(&p, &seen, params, reply) < 0)
            goto bad;
    }
    if (path->utf8 && !allow_utf8) {
        fail(reply, &reply_need_utf8);
        goto bad;
    }
    return 0;
bad:
    memset(path, 0, sizeof(*path));
    memset(params, 0, sizeof(*params));
    return -1;
}

/* -------------------------------------------------------------------- BDAT */

/* RFC 3030 2: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ]. */
int smtp_bdat_parse(const char *arg, uint64_t *size_r, bool *last_r, struct smtp_reply *reply)
{
    uint64_t v = 0;
    size_t i = 0;
    *size_r = 0;
    *last_r = false;
    for (; is_digit((unsigned char)arg[i]); i++) {
        unsigned d = (unsigned)(arg[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return fail(reply, &reply_bdat_syntax);
        v = v * 10 + d;
    }
    if (i == 0)
        return fail(reply, &reply_bdat_syntax);
    bool last = false;
    if (arg[i] == ' ' && strcasecmp(arg + i + 1, "LAST") == 0)
        last = true;
    else if (arg[i] != '\0')
        return fail(reply, &reply_bdat_syntax);
    *size_r = v;
    *last_r = last;
    return 0;
}

/* ------------------------------------------------------------ DATA decoder */

/*
 * States of the decoder.  LINE_START holds only after a real CRLF (or at
 * the start of data); a bare CR or LF never leads there, so no sequence
 * but CRLF "." CRLF can end the data (RFC 5321 4.1.1.4; the smuggling
 * attacks of 2023 rely on receivers that accept "\n.\n" or "\r.\r").
 *   MID        inside a line
 *   CR         the last byte was a CR inside a line (already output)
 *   LINE_START just after CRLF
 *   DOT        after a line-start "." (dropped: RFC 5321 4.5.2)
 *   DOT_CR     after line-start ".\r"; the CR is held back until we know
 *              whether LF (end of data) follows
 *   DONE       end seen
 */
enum { DS_LINE_START = 0, DS_MID, DS_CR, DS_DOT, DS_DOT_CR, DS_DONE };

void smtp_data_init(struct smtp_data_decoder *d, bool dot_stuffed, uint64_t max_size)
{
    memset(d, 0, sizeof(*d));
    d->dot_stuffed = dot_stuffed;
    d->max_size = max_size;
    d->state = dot_stuffed ? DS_LINE_START : DS_MID;
}

/* Counts len decoded bytes and outputs those that stay within max_size
 * (0 = no limit), so the output is the same however the input was split. */
static void data_emit(struct smtp_data_decoder *d, const char *data, size_t len,
                      smtp_data_out_fn *out, void *arg)
{
    uint64_t before = d->size;
    d->size += len;
    if (d->too_big)
        return;
    if (d->max_size != 0 && d->size > d->max_size) {
        d->too_big = true;
        len = (size_t)(d->max_size - before);
    }
    if (len > 0 && out != NULL)
        out(arg, data, len);
}

/* Scans from p in state MID up to just after the next CRLF (state
 * LINE_START for DATA, MID for BDAT) or to end (state MID or CR), setting
 * bare_lf / bare_cr on the way.  memchr finds the line ends, so the cost
 * is two vectorised scans per line, not a branch per byte.  On entry the
 * previous byte is never a CR that could pair with an LF at p. */
static const char *data_scan_line(struct smtp_data_decoder *d, const char *p, const char *end)
{
    while (p < end) {
        if (!d->dot_stuffed && d->bare_cr && d->bare_lf)
            break;   /* BDAT with both flags set: only the last byte matters */
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        const char *stop = lf != NULL ? lf : end;
        /* A CR before stop - 1 is followed by a byte that is not LF. */
        if (!d->bare_cr && stop - p >= 2 && memchr(p, '\r', (size_t)(stop - p - 1)) != NULL)
            d->bare_cr = true;
        if (lf == NULL) {
            d->state = stop > p && stop[-1] == '\r' ? DS_CR : DS_MID;
            return end;
        }
        if (lf > p && lf[-1] == '\r') {
            d->state = d->dot_stuffed ? DS_LINE_START : DS_MID;
            return lf + 1;
        }
        d->bare_lf = true;
        p = lf + 1;
    }
    if (p < end)
        d->state = end[-1] == '\r' ? DS_CR : DS_MID;
    else
        d->state = DS_MID;
    return end;
}

size_t smtp_data_feed(struct smtp_data_decoder *d, const char *in, size_t len,
                      smtp_data_out_fn *out, void *arg)
{
    const char *p = in, *end = in + len, *run = in;   /* [run, p) is pending output */
    if (d->done)
        return 0;
    while (p < end) {
        switch (d->state) {
        case DS_LINE_START:
            if (*p == '.') {
                data_emit(d, run, (size_t)(p - run), out, arg);
                run = ++p;
                d->state = DS_DOT;
            } else
                d->state = DS_MID;
            break;
        case DS_DOT:
            if (*p == '\r') {
                data_emit(d, run, (size_t)(p - run), out, arg);
                run = ++p;
                d->state = DS_DOT_CR;
            } else
                d->state = DS_MID;
            break;
        case DS_DOT_CR:
            if (*p == '\n') {
                data_emit(d, run, (size_t)(p - run), out, arg);
                d->done = true;
                d->state = DS_DONE;
                return (size_t)(p + 1 - in);
            }
            d->bare_cr = true;   /* the held CR: ".\rX" */
            data_emit(d, run, (size_t)(p - run), out, arg);
            data_emit(d, "\r", 1, out, arg);
            run = p;
            d->state = DS_MID;
            break;
        case DS_CR:
            if (*p == '\n') {
                p++;
                d->state = d->dot_stuffed ? DS_LINE_START : DS_MID;
            } else {
                d->bare_cr = true;
                d->state = DS_MID;
            }
            break;
        case DS_MID:
            p = data_scan_line(d, p, end);
            break;
        default:
            return 0;
        }
    }
    data_emit(d, run, (size_t)(p - run), out, arg);
    return len;
}

/* For BDAT, a CR ending the last chunk is bare; for DATA cut short, a held
 * ".\r" CR is bare too and is output so nothing is silently lost. */
void smtp_data_finish(struct smtp_data_decoder *d, smtp_data_out_fn *out, void *arg)
{
    if (d->state == DS_CR)
        d->bare_cr = true;
    else if (d->state == DS_DOT_CR) {
        d->bare_cr = true;
        data_emit(d, "\r", 1, out, arg);
    }
    if (d->state != DS_DONE)
        d->state = DS_MID;
}
