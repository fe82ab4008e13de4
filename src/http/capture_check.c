/*
 * Deliverability checks of one captured message, without network access
 * (capture mode runs on a developer's machine, often offline):
 *   HTML      constructs mail clients are known to mishandle
 *   Links     every link with its target, flagging ones a recipient
 *             cannot open (localhost, private names) or plain http
 *   Spam      a small built-in header/body score with the rules that fired
 *             (shaped like Mailpit's sa-check)
 *   Auth      what SPF, DKIM and DMARC would need: signatures present,
 *             their domains, alignment with the From domain
 *   Size      against the 25 MB limit of the common providers
 */
#include "http/capture.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/dkim.h"
#include "auth/dmarc.h"
#include "dns/dns.h"
#include "mime/mime.h"
#include "mime/mime_codec.h"

#define GMAIL_CLIP_BYTES (102u * 1024)  /* Gmail clips HTML bodies past ~102 KB */
#define LINKS_MAX 500

static void body_utf8(const struct mime_message *msg, const char *subtype, struct strbuf *out)
{
    const struct mime_part *p = capture_body_part(msg, subtype);
    if (p)
        mime_part_decode(msg, p, true, out);
    strbuf_append(out, "", 0);
}

/* Occurrences of a case-insensitive needle in s. */
static int count_ci(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strcasestr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void warn(json_t *arr, const char *slug, const char *title, const char *category,
                 const char *severity, const char *description, int found)
{
    json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:i}}", "Slug", slug, "Title",
                                         title, "Category", category, "Severity", severity,
                                         "Description", description, "Score", "Found", found));
}

/* <img ...> tags without an alt attribute. */
static int imgs_without_alt(const char *h, int *total_r)
{
    int missing = 0, total = 0;
    for (const char *p = h; (p = strcasestr(p, "<img")) != NULL; p += 4) {
        const char *end = strchr(p, '>');
        if (end == NULL)
            break;
        total++;
        bool alt = false;
        for (const char *a = p; a + 4 <= end; a++)
            if (strncasecmp(a, " alt", 4) == 0 || strncasecmp(a, "\talt", 4) == 0 ||
                strncasecmp(a, "\nalt", 4) == 0)
                alt = true;
        missing += !alt;
    }
    *total_r = total;
    return missing;
}

json_t *capture_check_html(const struct mime_message *msg)
{
    struct strbuf html;
    strbuf_init(&html, CAPTURE_DECODE_MAX);
    body_utf8(msg, "html", &html);
    json_t *w = json_array();
    const char *h = html.data ? html.data : "";
    int nodes = count_ci(h, "<") - count_ci(h, "</");
    int tests = 0;
    if (html.len > 0) {
        int imgs = 0, noalt = imgs_without_alt(h, &imgs), n;
        tests = 9;
        if (capture_body_part(msg, "plain") == NULL)
            warn(w, "no-text-alternative", "No plain-text alternative", "structure", "warning",
                 "Send multipart/alternative with a text/plain part: some clients and many spam "
                 "filters expect one.", 1);
        if ((n = count_ci(h, "<script")) > 0)
            warn(w, "script", "<script> elements", "html", "error",
                 "No mail client runs scripts; some filters treat them as malicious.", n);
        if ((n = count_ci(h, "<link")) > 0)
            warn(w, "external-css", "External stylesheets (<link>)", "css", "warning",
                 "Gmail, Outlook and others drop <link> stylesheets: inline the CSS.", n);
        if ((n = count_ci(h, "@import")) > 0)
            warn(w, "css-import", "CSS @import", "css", "warning",
                 "@import is ignored by most clients.", n);
        if ((n = count_ci(h, "<form")) > 0)
            warn(w, "form", "<form> elements", "html", "warning",
                 "Forms are disabled or stripped by most clients (Gmail, Outlook, Apple Mail warn).", n);
        if ((n = count_ci(h, "<iframe")) + count_ci(h, "<object") + count_ci(h, "<embed") > 0)
            warn(w, "embedded-content", "<iframe>, <object> or <embed>", "html", "error",
                 "Embedded content is removed by mail clients.", n);
        if ((n = count_ci(h, "<video")) + count_ci(h, "<audio") > 0)
            warn(w, "media", "<video> or <audio>", "html", "warning",
                 "Few clients play media; provide a linked image instead.", n);
        if (noalt > 0)
            warn(w, "img-alt", "Images without alt text", "accessibility", "warning",
                 "Images are often blocked by default; alt text is what the reader sees.", noalt);
        if (count_ci(h, "<title") == 0)
            warn(w, "missing-title", "Missing <title>", "html", "info",
                 "Some clients show the title, and spam filters notice its absence.", 1);
        if (html.len > GMAIL_CLIP_BYTES)
            warn(w, "html-size", "HTML larger than 102 KB", "size", "warning",
                 "Gmail clips messages whose HTML exceeds about 102 KB.", 1);
        if (imgs > 0 && imgs * 200 > (int)html.len / 4 && count_ci(h, "<p") + count_ci(h, "<td") < 2)
            warn(w, "image-only", "Mostly images, little text", "content", "warning",
                 "Image-only mail is a classic spam signal.", imgs);
    }
    json_t *o = json_pack("{s:{s:i,s:i,s:i,s:I},s:o}", "Total", "Nodes", nodes < 0 ? 0 : nodes,
                          "Tests", tests, "Warnings", (int)json_array_size(w), "HTMLSize",
                          (json_int_t)html.len, "Warnings", w);
    strbuf_free(&html);
    return o;
}

static void link_add(json_t *links, json_t *seen, const char *url, size_t len)
{
    if (len == 0 || len > 2048 || json_array_size(links) >= LINKS_MAX)
        return;
    char *u = strndup(url, len);
    if (u == NULL)
        return;
    if (json_object_get(seen, u) != NULL || strncasecmp(u, "cid:", 4) == 0 ||
        strncasecmp(u, "data:", 5) == 0 || u[0] == '#') {
        free(u);
        return;
    }
    json_object_set_new(seen, u, json_true());
    const char *status = "not checked (capture mode does not fetch links)";
    const char *host = strstr(u, "://");
    char hostname[256] = "";
    if (host) {
        host += 3;
        size_t hl = strcspn(host, "/:?#");
        snprintf(hostname, sizeof(hostname), "%.*s", (int)(hl < 255 ? hl : 255), host);
    }
    const char *problem = "";
    if (strncasecmp(u, "mailto:", 7) == 0)
        problem = "";
    else if (strcasecmp(hostname, "localhost") == 0 || strncmp(hostname, "127.", 4) == 0 ||
             strcmp(hostname, "[::1]") == 0 || strncmp(hostname, "10.", 3) == 0 ||
             strncmp(hostname, "192.168.", 8) == 0 ||
             (strlen(hostname) > 6 && (strcasecmp(hostname + strlen(hostname) - 6, ".local") == 0 ||
                                       strcasecmp(hostname + strlen(hostname) - 5, ".test") == 0)))
        problem = "points to a local or private host: recipients cannot open it";
    else if (strncasecmp(u, "http://", 7) == 0)
        problem = "plain http: prefer https";
    json_array_append_new(links, json_pack("{s:s,s:i,s:s,s:s}", "URL", u, "StatusCode", 0, "Status",
                                           status, "Problem", problem));
    free(u);
}

/* href="..." and src="..." values of the HTML, bare URLs of the text. */
json_t *capture_check_links(const struct mime_message *msg)
{
    struct strbuf html, text;
    strbuf_init(&html, CAPTURE_DECODE_MAX);
    strbuf_init(&text, CAPTURE_DECODE_MAX);
    body_utf8(msg, "html", &html);
    body_utf8(msg, "plain", &text);
    json_t *links = json_array(), *seen = json_object();
    static const char *const attrs[] = { "href=", "src=" };
    for (int a = 0; a < 2; a++) {
        for (const char *p = html.data; p && (p = strcasestr(p, attrs[a])) != NULL;) {
            p += strlen(attrs[a]);
            char q = *p == '"' || *p == '\'' ? *p++ : 0;
            size_t n = q ? strcspn(p, q == '"' ? "\"" : "'") : strcspn(p, " >\t\r\n");
            link_add(links, seen, p, n);
            p += n;
        }
    }
    for (const char *p = text.data; p && (p = strstr(p, "http")) != NULL;) {
        if (strncmp(p, "http://", 7) != 0 && strncmp(p, "https://", 8) != 0) {
            p += 4;
            continue;
        }
        size_t n = strcspn(p, " \t\r\n<>\"')]");
        link_add(links, seen, p, n);
        p += n;
    }
    json_decref(seen);
    int problems = 0;
    size_t i;
    json_t *v;
    json_array_foreach(links, i, v)
        problems += json_string_value(json_object_get(v, "Problem"))[0] != '\0';
    strbuf_free(&html);
    strbuf_free(&text);
    return json_pack("{s:i,s:i,s:o}", "Errors", problems, "Checked", 0, "Links", links);
}

struct spam_ctx {
    json_t *rules;
    double score;
};

static void rule(struct spam_ctx *c, const char *name, double score, const char *desc)
{
    c->score += score;
    json_array_append_new(c->rules, json_pack("{s:s,s:f,s:s}", "Name", name, "Score", score,
                                              "Description", desc));
}

static bool has_header(const struct mime_message *msg, const char *name)
{
    struct strbuf sb;
    strbuf_init(&sb, 1 << 16);
    bool has = mime_header_get(msg->data, msg->len, msg->root->hdr_offset, name, &sb) == 1;
    strbuf_free(&sb);
    return has;
}

static bool all_caps(const char *s)
{
    int upper = 0, lower = 0;
    for (; *s; s++) {
        upper += isupper((unsigned char)*s) != 0;
        lower += islower((unsigned char)*s) != 0;
    }
    return upper >= 8 && lower == 0;
}

json_t *capture_check_spam(const struct mime_message *msg)
{
    struct spam_ctx c = { .rules = json_array() };
    struct strbuf subj, text, html;
    strbuf_init(&subj, 1 << 16);
    strbuf_init(&text, CAPTURE_DECODE_MAX);
    strbuf_init(&html, CAPTURE_DECODE_MAX);
    capture_header_text(msg, "Subject", &subj);
    body_utf8(msg, "plain", &text);
    body_utf8(msg, "html", &html);
    if (!has_header(msg, "Date"))
        rule(&c, "MISSING_DATE", 1.4, "Missing Date: header");
    if (!has_header(msg, "Message-ID"))
        rule(&c, "MISSING_MID", 1.0, "Missing Message-ID: header");
    if (!has_header(msg, "From"))
        rule(&c, "MISSING_FROM", 2.0, "Missing From: header");
    if (!has_header(msg, "To") && !has_header(msg, "Cc"))
        rule(&c, "MISSING_TO", 0.5, "No To: or Cc: header");
    if (subj.len == 0 || subj.data[0] == '\0')
        rule(&c, "MISSING_SUBJECT", 1.0, "Missing or empty Subject: header");
    else if (all_caps(subj.data))
        rule(&c, "SUBJ_ALL_CAPS", 1.5, "Subject is all capitals");
    if (subj.data && strstr(subj.data, "!!!"))
        rule(&c, "SUBJ_EXCLAMATIONS", 0.5, "Subject has several exclamation marks");
    if (html.len > 1 && text.len <= 1)
        rule(&c, "MIME_HTML_ONLY", 1.1, "Message only has text/html MIME parts");
    if (html.len <= 1 && text.len <= 1)
        rule(&c, "EMPTY_MESSAGE", 2.0, "Message has no text");
    if (!has_header(msg, "MIME-Version") && has_header(msg, "Content-Type"))
        rule(&c, "MISSING_MIME_VERSION", 0.5, "Content-Type without MIME-Version");
    static const char *const words[] = { "viagra", "lottery", "you have won", "act now",
                                         "100% free", "click here", "limited time", "wire transfer" };
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if ((text.data && strcasestr(text.data, words[i])) ||
            (html.data && strcasestr(html.data, words[i])) ||
            (subj.data && strcasestr(subj.data, words[i]))) {
            char desc[96];
            snprintf(desc, sizeof(desc), "Contains the phrase \"%s\"", words[i]);
            rule(&c, "SPAMMY_PHRASE", 0.8, desc);
        }
    if (html.data && count_ci(html.data, "<img") > 0 && text.len < 50 && html.len < 1000)
        rule(&c, "HTML_IMAGE_ONLY", 1.5, "HTML: images with little text");
    if (!has_header(msg, "List-Unsubscribe") && has_header(msg, "Precedence"))
        rule(&c, "BULK_NO_UNSUBSCRIBE", 0.5, "Bulk mail without List-Unsubscribe");
    json_t *o = json_pack("{s:s,s:b,s:f,s:f,s:o}", "Error", "", "IsSpam", c.score >= 5.0, "Score",
                          (double)(long)(c.score * 10 + 0.5) / 10, "Threshold", 5.0, "Rules", c.rules);
    strbuf_free(&subj);
    strbuf_free(&text);
    strbuf_free(&html);
    return o;
}

/* Domain after the last '@' of an address header's first address. */
static void header_domain(const struct mime_message *msg, const char *name, char *out, size_t size)
{
    struct strbuf sb;
    strbuf_init(&sb, 1 << 16);
    out[0] = '\0';
    if (mime_header_get(msg->data, msg->len, msg->root->hdr_offset, name, &sb) == 1 && sb.data) {
        char *at = strrchr(sb.data, '@');
        if (at) {
            size_t n = strcspn(at + 1, "> \t,;\"");
            snprintf(out, size, "%.*s", (int)(n < size - 1 ? n : size - 1), at + 1);
            for (char *p = out; *p; p++)
                *p = (char)tolower((unsigned char)*p);
        }
    }
    strbuf_free(&sb);
}

/* Relaxed alignment (RFC 7489 3.1): same domain or one a subdomain of the
 * other (organizational domain approximated by the last two labels). */
static bool aligned(const char *a, const char *b)
{
    if (!a[0] || !b[0])
        return false;
    const char *oa = a + strlen(a), *ob = b + strlen(b);
    int dots = 0;
    while (oa > a && !(oa[-1] == '.' && ++dots == 2))
        oa--;
    dots = 0;
    while (ob > b && !(ob[-1] == '.' && ++dots == 2))
        ob--;
    return strcasecmp(oa, ob) == 0;
}

/* A tag's value ("d", "s", "a") from a DKIM-Signature value. */
static void dkim_tag(const char *v, const char *tag, char *out, size_t size)
{
    out[0] = '\0';
    size_t tl = strlen(tag);
    for (const char *p = v; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ';' || *p == '\r' || *p == '\n')
            p++;
        if (strncmp(p, tag, tl) == 0 && (p[tl] == '=' || p[tl] == ' ')) {
            const char *eq = strchr(p, '=');
            if (eq == NULL)
                return;
            eq++;
            while (*eq == ' ')
                eq++;
            size_t n = strcspn(eq, "; \t\r\n");
            snprintf(out, size, "%.*s", (int)(n < size - 1 ? n : size - 1), eq);
            return;
        }
        p += strcspn(p, ";");
    }
}

json_t *capture_check_auth(const struct mime_message *msg)
{
    char from_dom[256], rp_dom[256];
    header_domain(msg, "From", from_dom, sizeof(from_dom));
    header_domain(msg, "Return-Path", rp_dom, sizeof(rp_dom));
    json_t *sigs = json_array();
    bool dkim_aligned = false;
    struct mime_header_iter it;
    struct mime_header_field f;
    mime_header_iter_init(&it, msg->data, msg->len, msg->root->hdr_offset);
    while (mime_header_iter_next(&it, &f)) {
        if (f.value == NULL || f.name_len != 14 || strncasecmp(f.name, "DKIM-Signature", 14) != 0)
            continue;
        struct strbuf v;
        strbuf_init(&v, 1 << 16);
        mime_header_unfold(f.value, f.value_len, true, &v);
        strbuf_append(&v, "", 0);
        char d[256], s[128], a[64];
        dkim_tag(v.data ? v.data : "", "d", d, sizeof(d));
        dkim_tag(v.data ? v.data : "", "s", s, sizeof(s));
        dkim_tag(v.data ? v.data : "", "a", a, sizeof(a));
        bool al = aligned(d, from_dom);
        dkim_aligned |= al;
        json_array_append_new(sigs, json_pack("{s:s,s:s,s:s,s:b,s:s}", "Domain", d, "Selector", s,
                                              "Algorithm", a, "Aligned", al, "Result",
                                              "not verified (needs the DNS key)"));
        strbuf_free(&v);
    }
    struct strbuf ar;
    strbuf_init(&ar, 1 << 16);
    capture_header_text(msg, "Authentication-Results", &ar);
    bool spf_aligned = aligned(rp_dom, from_dom);
    json_t *o = json_pack(
        "{s:s,s:s,s:{s:s,s:b,s:s},s:{s:o,s:s},s:{s:b,s:s},s:s}", "FromDomain", from_dom,
        "MailFromDomain", rp_dom, "SPF", "Domain", rp_dom, "Aligned", spf_aligned, "Note",
        rp_dom[0] ? "SPF is checked against the sending IP by the receiving server; publish a "
                    "record covering your real sending hosts"
                  : "null envelope sender: SPF uses the HELO name",
        "DKIM", "Signatures", sigs, "Note",
        json_array_size(sigs) ? "signed" : "not signed: most providers now require DKIM",
        "DMARC", "WouldAlign", dkim_aligned || spf_aligned, "Note",
        dkim_aligned || spf_aligned ? "an aligned identifier is present"
                                    : "neither SPF nor DKIM would align with the From domain",
        "AuthenticationResults", ar.data ? ar.data : "");
    strbuf_free(&ar);
    return o;
}

json_t *capture_check_size(uint64_t size)
{
    double pct = 100.0 * (double)size / (double)CAPTURE_PROVIDER_LIMIT;
    return json_pack("{s:I,s:I,s:f,s:b,s:s}", "Size", (json_int_t)size, "Limit",
                     (json_int_t)CAPTURE_PROVIDER_LIMIT, "Percent", pct, "OK",
                     size <= CAPTURE_PROVIDER_LIMIT, "Note",
                     size <= CAPTURE_PROVIDER_LIMIT
                         ? "within the 25 MB limit of Gmail and Outlook (attachments grow by a "
                           "third in base64)"
                         : "over the 25 MB limit of Gmail and Outlook: it will bounce");
}

/* ---- with DNS (--dns): DKIM verified, DMARC evaluated ---- */

void capture_check_auth_verify(json_t *auth, const char *data, size_t len,
                               const char *nameserver)
{
    struct dns_options opt = { .timeout_ms = 3000 };
    if (strcmp(nameserver, "system") != 0)
        str_copy(opt.nameserver, nameserver, sizeof(opt.nameserver));
    const char *err = NULL;
    struct dns_resolver *r = dns_resolver_new(&opt, &err);
    json_t *dkim = json_object_get(auth, "DKIM"), *dmarc = json_object_get(auth, "DMARC");
    if (r == NULL) {
        json_object_set_new(auth, "Verified", json_false());
        json_object_set_new(dkim, "Note", json_sprintf("DNS resolver unavailable: %s",
                                                       err ? err : "?"));
        return;
    }
    struct dkim_verdict vd[DKIM_MAX_SIGNATURES];
    int n = dkim_verify_message(data, len, 0, dkim_lookup_dns, r, vd, DKIM_MAX_SIGNATURES);
    json_t *sigs = json_object_get(dkim, "Signatures");
    int passed = 0;
    for (int i = 0; i < n && i < DKIM_MAX_SIGNATURES; i++) {
        char line[800];
        dkim_verdict_format(&vd[i], line, sizeof(line));
        json_t *sig = json_array_get(sigs, (size_t)i);
        const char *sd = sig ? json_string_value(json_object_get(sig, "Domain")) : NULL;
        if (sd == NULL || strcasecmp(sd, vd[i].d) != 0)
            continue;
        json_object_set_new(sig, "Result", json_string(dkim_status_name(vd[i].status)));
        json_object_set_new(sig, "Reason", json_string(vd[i].reason));
        json_object_set_new(sig, "AuthenticationResults", json_string(line));
        passed += vd[i].status == DKIM_PASS;
    }
    if (n > 0)
        json_object_set_new(dkim, "Note", json_sprintf("%d of %d signature%s verified", passed, n,
                                                       n == 1 ? "" : "s"));
    char doms[1][DNS_NAME_MAX + 2];
    int nd = 0;
    enum dmarc_from_status fs = dmarc_from_domains(data, len, doms, 1, &nd);
    if (fs == DMARC_FROM_OK && nd == 1) {
        struct dmarc_dns dd;
        dmarc_dns_use_resolver(&dd, r);
        struct dmarc_request req = { .from_domain = doms[0], .spf_done = false,
                                     .dkim = vd, .n_dkim = n > 0 ? n : 0 };
        struct dmarc_eval *ev = calloc(1, sizeof(*ev));
        if (ev != NULL) {
            enum dmarc_result res = dmarc_evaluate(&dd, &req, ev);
            json_object_set_new(dmarc, "Result", json_string(dmarc_result_name(res)));
            json_object_set_new(dmarc, "RecordDomain", json_string(ev->have_record
                                                                   ? ev->record_domain : ""));
            /* the published policy that applies to this From domain (p at
             * its own record, sp at the Organizational Domain's) */
            enum dmarc_policy pol = strcasecmp(ev->record_domain, doms[0]) == 0 ? ev->rec.p
                                                                                : ev->rec.sp;
            json_object_set_new(dmarc, "Policy", json_string(ev->have_record
                                                             ? dmarc_policy_name(pol) : ""));
            json_object_set_new(dmarc, "Note", json_sprintf(
                "%s for %s (DKIM only: SPF is not evaluated for captured mail)%s%s",
                dmarc_result_name(res), doms[0], ev->why[0] ? ": " : "", ev->why));
            free(ev);
        }
    } else {
        json_object_set_new(dmarc, "Result", json_string("permerror"));
        json_object_set_new(dmarc, "Note", json_string("no single readable From domain"));
    }
    json_object_set_new(auth, "Verified", json_true());
    dns_resolver_free(r);
}
