/*
 * The built-in message score: header heuristics over the raw message
 * (missing Date, Message-ID, From, Subject; a From display name naming one
 * of our domains on mail from elsewhere; an all-caps Subject; HTML without
 * a text part; executable attachments), SPF/DKIM/DMARC results, and the
 * X-Spam header fields that report it.
 */
#include <ctype.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"
#include "filter/filter_int.h"
#include "mime/mime.h"
#include "mime/mime_codec.h"

#define HEADER_VALUE_CAP (16u * 1024)   /* one unfolded header value */
#define SUBJECT_CAPS_MIN 10             /* letters before all-caps counts */

/* Printable ASCII only, for reply texts, header fields and logs. */
static void sanitize(char *dst, size_t size, const char *src)
{
    size_t o = 0;
    for (; src && *src && o + 1 < size; src++) {
        unsigned char ch = (unsigned char)*src;
        dst[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    if (size)
        dst[o] = '\0';
}

void filter_verdict_hit(struct filter_verdict *v, const char *name, double score,
                        const char *detail)
{
    v->score += score;
    if (v->n_rules >= FILTER_RULES_MAX)
        return;
    struct filter_rule_hit *h = &v->rules[v->n_rules++];
    sanitize(h->name, sizeof(h->name), name);
    sanitize(h->detail, sizeof(h->detail), detail ? detail : "");
    h->score = score;
}

static void rule(const struct filter_config *fc, struct filter_verdict *v, enum filter_rule r,
                 const char *detail)
{
    if (fc->rule_score[r] != 0)
        filter_verdict_hit(v, filter_rule_names[r], fc->rule_score[r], detail);
}

/* ---- header fields ---- */

struct msg_headers {
    bool date, message_id, subject;
    int from_count;
    struct strbuf from, subj;
};

static bool name_is(const struct mime_header_field *f, const char *name)
{
    return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

static void scan_headers(const char *data, size_t len, struct msg_headers *h)
{
    struct mime_header_iter it;
    struct mime_header_field f;
    mime_header_iter_init(&it, data, len, 0);
    while (mime_header_iter_next(&it, &f)) {
        if (f.value == NULL)
            continue;
        if (name_is(&f, "Date")) {
            h->date = true;
        } else if (name_is(&f, "Message-ID")) {
            h->message_id = true;
        } else if (name_is(&f, "From")) {
            if (h->from_count++ == 0)
                mime_header_unfold(f.value, f.value_len, false, &h->from);
        } else if (name_is(&f, "Subject") && !h->subject) {
            h->subject = true;
            mime_header_unfold(f.value, f.value_len, false, &h->subj);
        }
    }
}

/* Is name, or a parent of it down to its registrable domain, one of ours? */
static bool names_local(struct filter *f, const char *name)
{
    char reg[DNS_NAME_MAX + 2];
    bool has_reg = filter_registrable_domain(name, reg, sizeof(reg)) == 0;
    for (const char *p = name; p != NULL;) {
        if (filter_domain_is_local(f, p))
            return true;
        if (has_reg && strcmp(p, reg) == 0)
            break;
        const char *dot = strchr(p, '.');
        p = dot ? dot + 1 : NULL;
        if (p != NULL && strchr(p, '.') == NULL)
            break;              /* never a bare top-level domain */
    }
    return false;
}

/* A display name naming one of our domains (or an address there) while
 * the address itself is elsewhere: "ceo@example.org" <x@evil.test>.
 * Returns the token found, into tok. */
static bool display_spoofs(struct filter *f, const char *name, char *tok, size_t tok_size)
{
    char buf[512];
    str_copy(buf, name, sizeof(buf));
    str_lower(buf);
    char *save = NULL;
    for (char *t = strtok_r(buf, " \t\"'<>()[],;:|/\\", &save); t;
         t = strtok_r(NULL, " \t\"'<>()[],;:|/\\", &save)) {
        char *d = strrchr(t, '@');
        d = d ? d + 1 : t;
        size_t dl = strlen(d);
        while (dl > 0 && d[dl - 1] == '.')
            d[--dl] = '\0';
        if (strchr(d, '.') == NULL || !filter_domain_syntax_ok(d))
            continue;
        if (names_local(f, d)) {
            str_copy(tok, t, tok_size);
            return true;
        }
    }
    return false;
}

static void check_from(struct filter *f, struct msg_headers *h, struct filter_verdict *v,
                       char *from_domain, size_t from_size)
{
    const struct filter_config *fc = &f->cfg;
    from_domain[0] = '\0';
    if (h->from_count == 0) {
        rule(fc, v, FILTER_R_MISSING_FROM, "");
        return;
    }
    struct mime_address *list = NULL;
    if (mime_address_parse(h->from.data ? h->from.data : "", h->from.len, false, &list) < 0)
        return;
    struct mime_address *a = list;
    while (a != NULL && (a->mailbox == NULL || a->domain == NULL || a->domain[0] == '\0'))
        a = a->next;
    if (a != NULL) {
        str_copy(from_domain, a->domain, from_size);
        str_lower(from_domain);
    }
    if (a != NULL && a->name != NULL && a->name[0] && !filter_domain_is_local(f, from_domain)) {
        struct strbuf dec;
        strbuf_init(&dec, HEADER_VALUE_CAP);
        if (mime_rfc2047_decode(a->name, strlen(a->name), &dec) == 0 && dec.data) {
            char tok[128];
            if (display_spoofs(f, dec.data, tok, sizeof(tok)))
                rule(fc, v, FILTER_R_FROM_DISPLAY_SPOOF, tok);
        }
        strbuf_free(&dec);
    }
    mime_address_free(list);
}

static void check_subject(const struct filter_config *fc, struct msg_headers *h,
                          struct filter_verdict *v)
{
    if (!h->subject) {
        rule(fc, v, FILTER_R_MISSING_SUBJECT, "");
        return;
    }
    struct strbuf dec;
    strbuf_init(&dec, HEADER_VALUE_CAP);
    if (mime_rfc2047_decode(h->subj.data ? h->subj.data : "", h->subj.len, &dec) == 0) {
        size_t upper = 0, lower = 0;
        for (size_t i = 0; i < dec.len; i++) {
            unsigned char ch = (unsigned char)dec.data[i];
            upper += ch >= 'A' && ch <= 'Z';
            lower += ch >= 'a' && ch <= 'z';
        }
        if (upper >= SUBJECT_CAPS_MIN && lower == 0)
            rule(fc, v, FILTER_R_SUBJECT_ALL_CAPS, "");
    }
    strbuf_free(&dec);
}

/* ---- structure ---- */

static bool executable_name(const char *name)
{
    static const char *const ext[] = {
        "exe", "scr", "pif", "com", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh",
        "msi", "msp", "hta", "cpl", "jar", "ps1", "psm1", "lnk", "reg", "dll", "sys", "vb",
        "inf", "scf", "gadget", "application", "msc", "appx", "appxbundle", "msix", "iso",
        "img", "vhd", "vhdx", "chm", "apk", "sh", "elf", "bin", NULL,
    };
    const char *dot = strrchr(name, '.');
    if (dot == NULL)
        return false;
    char e[16];
    if (str_copy(e, dot + 1, sizeof(e)) >= sizeof(e))
        return false;           /* longer than any extension we know */
    size_t n = strlen(e);
    /* trailing dots and spaces are dropped by Windows */
    while (n > 0 && (e[n - 1] == ' ' || e[n - 1] == '.'))
        e[--n] = '\0';
    for (int i = 0; ext[i]; i++)
        if (strcasecmp(e, ext[i]) == 0)
            return true;
    return false;
}

static bool executable_type(const char *ct)
{
    static const char *const types[] = {
        "application/x-msdownload", "application/x-msdos-program", "application/x-dosexec",
        "application/x-executable", "application/vnd.microsoft.portable-executable",
        "application/x-ms-installer", "application/x-msi", "application/hta", NULL,
    };
    for (int i = 0; types[i]; i++)
        if (strcasecmp(ct, types[i]) == 0)
            return true;
    return false;
}

/* The part's file name (Content-Disposition filename, else Content-Type
 * name), UTF-8, into out; false when it has none. */
static bool part_filename(const struct mime_part *p, struct strbuf *out)
{
    strbuf_reset(out);
    if (p->disp_params && mime_param_get_utf8(p->disp_params, p->disp_param_count, "filename",
                                              out) == 1)
        return true;
    strbuf_reset(out);
    return p->params && mime_param_get_utf8(p->params, p->param_count, "name", out) == 1;
}

static void check_structure(const struct filter_config *fc, const char *data, size_t len,
                            struct filter_verdict *v)
{
    struct mime_message *msg = mime_parse(data, len);
    if (msg == NULL)
        return;
    bool plain = false, html = false, exe = false;
    char exe_name[64] = "";
    struct strbuf name;
    strbuf_init(&name, 1024);
    for (const struct mime_part *p = msg->root; p != NULL; p = mime_part_next(p)) {
        if (p->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE))
            continue;
        char ct[128];
        mime_part_content_type(p, ct, sizeof(ct));
        bool attachment = p->disposition && strcasecmp(p->disposition, "attachment") == 0;
        bool has_name = part_filename(p, &name) && name.len > 0;
        if (!exe && ((has_name && executable_name(name.data)) || executable_type(ct))) {
            exe = true;
            sanitize(exe_name, sizeof(exe_name), has_name ? name.data : ct);
        }
        if (attachment || has_name)
            continue;
        if (strcmp(ct, "text/plain") == 0)
            plain = true;
        else if (strcmp(ct, "text/html") == 0)
            html = true;
    }
    strbuf_free(&name);
    mime_message_free(msg);
    if (html && !plain)
        rule(fc, v, FILTER_R_HTML_ONLY, "");
    if (exe)
        rule(fc, v, FILTER_R_EXECUTABLE_ATTACHMENT, exe_name);
}

void filter_score_message(struct filter *f, const char *data, size_t len,
                          struct filter_verdict *v, char *from_domain_r, size_t from_size)
{
    const struct filter_config *fc = &f->cfg;
    struct msg_headers h = { 0 };
    strbuf_init(&h.from, HEADER_VALUE_CAP);
    strbuf_init(&h.subj, HEADER_VALUE_CAP);
    scan_headers(data, len, &h);
    if (!h.date)
        rule(fc, v, FILTER_R_MISSING_DATE, "");
    if (!h.message_id)
        rule(fc, v, FILTER_R_MISSING_MESSAGE_ID, "");
    check_from(f, &h, v, from_domain_r, from_size);
    check_subject(fc, &h, v);
    check_structure(fc, data, len, v);
    strbuf_free(&h.from);
    strbuf_free(&h.subj);
}

void filter_score_auth(const struct filter_config *fc, const char *spf, const char *dkim,
                       const char *dmarc, struct filter_verdict *v)
{
    if (spf && strcasecmp(spf, "pass") == 0)
        rule(fc, v, FILTER_R_SPF_PASS, "");
    else if (spf && strcasecmp(spf, "fail") == 0)
        rule(fc, v, FILTER_R_SPF_FAIL, "");
    else if (spf && strcasecmp(spf, "softfail") == 0)
        rule(fc, v, FILTER_R_SPF_SOFTFAIL, "");
    if (dkim && strcasecmp(dkim, "pass") == 0)
        rule(fc, v, FILTER_R_DKIM_PASS, "");
    else if (dkim && strcasecmp(dkim, "fail") == 0)
        rule(fc, v, FILTER_R_DKIM_FAIL, "");
    if (dmarc && strcasecmp(dmarc, "pass") == 0)
        rule(fc, v, FILTER_R_DMARC_PASS, "");
    else if (dmarc && strcasecmp(dmarc, "fail") == 0)
        rule(fc, v, FILTER_R_DMARC_FAIL, "");
}

/* ---- X-Spam fields ---- */

/* "1.5", "-0.2", "12" : at most two decimals, no trailing zeros. */
static const char *fmt_score(char *buf, size_t size, double s)
{
    if (fabs(s) < 0.005)
        s = 0;
    snprintf(buf, size, "%.2f", s);
    char *dot = strchr(buf, '.');
    if (dot != NULL) {
        char *e = buf + strlen(buf) - 1;
        while (e > dot && *e == '0')
            *e-- = '\0';
        if (e == dot)
            *e = '\0';
    }
    return buf;
}

char *filter_spam_headers(const struct filter_config *fc, const struct filter_verdict *v)
{
    struct strbuf sb;
    char a[32], b[32], c[32];
    strbuf_init(&sb, 16384);
    strbuf_printf(&sb, "X-Spam: %s\r\n", v->spam ? "Yes" : "No");
    strbuf_printf(&sb, "X-Spam-Score: %s\r\n", fmt_score(a, sizeof(a), v->score));
    strbuf_printf(&sb, "X-Spam-Report: score=%s add_header=%s reject=%s",
                  fmt_score(a, sizeof(a), v->score), fmt_score(b, sizeof(b), fc->add_header_score),
                  fc->reject_score > 0 ? fmt_score(c, sizeof(c), fc->reject_score) : "off");
    for (int i = 0; i < v->n_rules; i++) {
        const struct filter_rule_hit *h = &v->rules[i];
        strbuf_printf(&sb, "\r\n\t%s=%s", h->name, fmt_score(a, sizeof(a), h->score));
        if (h->detail[0])
            strbuf_printf(&sb, " (%s)", h->detail);
    }
    if (v->rspamd_used) {
        char act[32];
        sanitize(act, sizeof(act), v->rspamd_action);
        strbuf_printf(&sb, "\r\n\trspamd=%s action=\"%s\"", fmt_score(a, sizeof(a), v->rspamd_score),
                      act);
        /* the symbols, folded a few to a line */
        char syms[sizeof(v->rspamd_symbols)];
        sanitize(syms, sizeof(syms), v->rspamd_symbols);
        int on_line = 0;
        char *save = NULL;
        for (char *t = strtok_r(syms, " ", &save); t; t = strtok_r(NULL, " ", &save))
            strbuf_printf(&sb, "%s%s", on_line++ % 4 == 0 ? "\r\n\t " : " ", t);
    }
    strbuf_printf(&sb, "\r\n");
    if (sb.data == NULL)
        return NULL;
    char *out = strdup(sb.data);
    strbuf_free(&sb);
    return out;
}

/* ---- writing the message ---- */

static bool our_field(const struct mime_header_field *f)
{
    return name_is(f, "X-Spam") || name_is(f, "X-Spam-Score") || name_is(f, "X-Spam-Report");
}

/* "Subject: text" with RFC 2047 B-words when text is not ASCII, folded so
 * no line passes 78 characters (RFC 2047 2; words never split UTF-8). */
static int write_subject(const char *subject, int (*write)(void *, const void *, size_t),
                         void *arg)
{
    bool ascii = true;
    for (const char *p = subject; *p; p++)
        if ((unsigned char)*p >= 0x80 || (unsigned char)*p < 0x20)
            ascii = false;
    struct strbuf sb;
    strbuf_init(&sb, 8192);
    strbuf_printf(&sb, "Subject:");
    if (ascii) {
        strbuf_printf(&sb, " %s", subject);
    } else {
        size_t len = strlen(subject), i = 0;
        while (i < len) {
            size_t n = len - i < 45 ? len - i : 45;
            while (i + n < len && n > 1 && ((unsigned char)subject[i + n] & 0xc0) == 0x80)
                n--;
            unsigned char enc[64];
            EVP_EncodeBlock(enc, (const unsigned char *)subject + i, (int)n);
            strbuf_printf(&sb, "%s=?UTF-8?B?%s?=", i ? "\r\n " : " ", enc);
            i += n;
        }
    }
    strbuf_printf(&sb, "\r\n");
    int rc = sb.data ? write(arg, sb.data, sb.len) : -1;
    strbuf_free(&sb);
    return rc;
}

int filter_message_write(const struct filter_verdict *v, const char *data, size_t len,
                         int (*write)(void *arg, const void *buf, size_t n), void *arg)
{
    if (v->headers != NULL && write(arg, v->headers, strlen(v->headers)) < 0)
        return -1;
    struct mime_header_iter it;
    struct mime_header_field f;
    size_t pos = 0;
    bool subject_done = v->subject == NULL;
    mime_header_iter_init(&it, data, len, 0);
    while (mime_header_iter_next(&it, &f)) {
        bool drop = f.value != NULL && our_field(&f);
        bool subj = !subject_done && f.value != NULL && name_is(&f, "Subject");
        if (!drop && !subj)
            continue;
        if (f.offset > pos && write(arg, data + pos, f.offset - pos) < 0)
            return -1;
        if (subj) {
            if (write_subject(v->subject, write, arg) < 0)
                return -1;
            subject_done = true;
        }
        pos = f.end;
    }
    /* a rewritten Subject for a message without one goes at the header's end */
    if (!subject_done) {
        if (it.header_end > pos && write(arg, data + pos, it.header_end - pos) < 0)
            return -1;
        pos = it.header_end;
        if (write_subject(v->subject, write, arg) < 0)
            return -1;
    }
    if (len > pos && write(arg, data + pos, len - pos) < 0)
        return -1;
    return 0;
}
