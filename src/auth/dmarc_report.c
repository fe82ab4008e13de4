/*
 * DMARC aggregate reports (RFC 7489 7.2): per-message results kept in the
 * store, the daily XML of appendix C per policy domain, gzip, the report
 * email (7.2.1.1) and the external destination check (7.1).
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "auth/dmarc.h"
#include "core/config.h"
#include "core/log.h"
#include "core/util.h"
#include "store/store_dmarc.h"

#define REPORT_PERIOD      86400                 /* default: one report per UTC day */
#define REPORT_KEEP_DAYS   7                     /* unsent results dropped after */
#define REPORT_XML_MAX     (64u << 20)
#define REPORT_MSG_MAX     (96u << 20)
#define REPORT_DKIM_AUTH_MAX 4096

/* ---- keeping results ---- */

/* A d= or s= value as one word (it is stored space-separated). */
static void word(char *out, size_t size, const char *in)
{
    size_t n = 0;
    for (const char *p = in; *p && n + 1 < size; p++)
        out[n++] = (unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f ? '?' : *p;
    out[n] = '\0';
    if (n == 0)
        str_copy(out, "-", size);
}

int dmarc_report_note(struct store *st, const struct dmarc_eval *ev, const struct dmarc_report_input *in,
                      const char **error_r)
{
    if (!ev->have_record || ev->rec.n_rua == 0 ||
        (ev->result != DMARC_RESULT_PASS && ev->result != DMARC_RESULT_FAIL))
        return 0;
    struct strbuf auth;
    strbuf_init(&auth, REPORT_DKIM_AUTH_MAX);
    for (int i = 0; i < in->n_dkim; i++) {
        char d[256], s[256];
        word(d, sizeof(d), in->dkim[i].d);
        word(s, sizeof(s), in->dkim[i].s);
        strbuf_printf(&auth, "%s %s %s\n", d, s, dkim_status_name(in->dkim[i].status));
    }
    char record[4096];
    dmarc_record_format(&ev->rec, record, sizeof(record));
    bool helo = in->envelope_from == NULL || in->envelope_from[0] == '\0';
    struct store_dmarc_row row = {
        .time = in->now ? in->now : time(NULL),
        .policy_domain = ev->record_domain,
        .header_from = ev->from_domain,
        .source_ip = in->source_ip ? in->source_ip : "",
        .envelope_from = in->envelope_from ? in->envelope_from : "",
        .disposition = dmarc_policy_name(ev->disposition),
        .dkim_eval = ev->dkim_aligned ? "pass" : "fail",
        .spf_eval = ev->spf_aligned ? "pass" : "fail",
        .reason = ev->sampled_out ? "sampled_out" : "",
        .dkim_auth = auth.data ? auth.data : "",
        .spf_domain = in->spf ? in->spf->domain : "",
        .spf_scope = helo ? "helo" : "mfrom",
        .spf_result = in->spf ? spf_result_name(in->spf->result) : "none",
        .record = record,
    };
    int rc = store_dmarc_add(st, &row, error_r);
    strbuf_free(&auth);
    return rc;
}

void dmarc_report_opts_from_config(struct dmarc_report_opts *o, const struct config *cfg)
{
    memset(o, 0, sizeof(*o));
    str_copy(o->org_name, cfg->dmarc_org_name[0] ? cfg->dmarc_org_name : cfg->hostname,
             sizeof(o->org_name));
    o->period = cfg->dmarc_report_interval > 0 && cfg->dmarc_report_interval <= 7 * 86400
                    ? (uint32_t)cfg->dmarc_report_interval : REPORT_PERIOD;
    str_copy(o->receiver, cfg->hostname, sizeof(o->receiver));
    char first[256] = "";
    const char *p = cfg->domains;
    while (*p == ' ' || *p == ',' || *p == '\t')
        p++;
    size_t n = strcspn(p, ", \t");
    if (n > 0 && n < sizeof(first)) {
        memcpy(first, p, n);
        first[n] = '\0';
        str_lower(first);
    }
    if (cfg->dmarc_report_from[0])
        str_copy(o->email, cfg->dmarc_report_from, sizeof(o->email));
    else
        snprintf(o->email, sizeof(o->email), "noreply-dmarc@%s", first[0] ? first : cfg->hostname);
}

/* ---- XML (RFC 7489 appendix C) ---- */

static void xml_text(struct strbuf *sb, const char *s)
{
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        switch (ch) {
        case '&': strbuf_append(sb, "&amp;", 5); break;
        case '<': strbuf_append(sb, "&lt;", 4); break;
        case '>': strbuf_append(sb, "&gt;", 4); break;
        case '"': strbuf_append(sb, "&quot;", 6); break;
        case '\'': strbuf_append(sb, "&apos;", 6); break;
        default:
            /* XML 1.0 allows no control characters but tab/LF/CR. */
            if (ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r')
                ch = '?';
            strbuf_append(sb, &ch, 1);
        }
    }
}

/* <tag>text</tag> on its own line at indent. */
static void xml_elem(struct strbuf *sb, int indent, const char *tag, const char *text)
{
    strbuf_printf(sb, "%*s<%s>", indent, "", tag);
    xml_text(sb, text);
    strbuf_printf(sb, "</%s>\n", tag);
}

static void xml_policy(struct strbuf *sb, const char *domain, const struct dmarc_record *rec)
{
    char pct[16];
    snprintf(pct, sizeof(pct), "%u", rec->pct);
    strbuf_printf(sb, "  <policy_published>\n");
    xml_elem(sb, 4, "domain", domain);
    xml_elem(sb, 4, "adkim", rec->adkim == DMARC_ALIGN_STRICT ? "s" : "r");
    xml_elem(sb, 4, "aspf", rec->aspf == DMARC_ALIGN_STRICT ? "s" : "r");
    xml_elem(sb, 4, "p", dmarc_policy_name(rec->p));
    xml_elem(sb, 4, "sp", dmarc_policy_name(rec->sp));
    if (rec->np_set)
        xml_elem(sb, 4, "np", dmarc_policy_name(rec->np));   /* RFC 9091 */
    xml_elem(sb, 4, "pct", pct);
    xml_elem(sb, 4, "fo", rec->fo);
    strbuf_printf(sb, "  </policy_published>\n");
}

/* The dkim elements of auth_results from the stored "d s result" lines. */
static void xml_dkim_auth(struct strbuf *sb, const char *lines)
{
    const char *p = lines;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[600], d[256] = "", s[256] = "", r[32] = "";
        if (n < sizeof(line)) {
            memcpy(line, p, n);
            line[n] = '\0';
            if (sscanf(line, "%255s %255s %31s", d, s, r) == 3) {
                strbuf_printf(sb, "      <dkim>\n");
                xml_elem(sb, 8, "domain", d);
                if (strcmp(s, "-") != 0)
                    xml_elem(sb, 8, "selector", s);
                xml_elem(sb, 8, "result", r);
                strbuf_printf(sb, "      </dkim>\n");
            }
        }
        if (nl == NULL)
            break;
        p = nl + 1;
    }
}

static void xml_record(const struct store_dmarc_row *row, int64_t count, void *arg)
{
    struct strbuf *sb = arg;
    char n[32];
    snprintf(n, sizeof(n), "%lld", (long long)count);
    strbuf_printf(sb, "  <record>\n    <row>\n");
    xml_elem(sb, 6, "source_ip", row->source_ip);
    xml_elem(sb, 6, "count", n);
    strbuf_printf(sb, "      <policy_evaluated>\n");
    xml_elem(sb, 8, "disposition", row->disposition);
    xml_elem(sb, 8, "dkim", row->dkim_eval);
    xml_elem(sb, 8, "spf", row->spf_eval);
    if (row->reason[0]) {
        strbuf_printf(sb, "        <reason>\n");
        xml_elem(sb, 10, "type", row->reason);
        strbuf_printf(sb, "        </reason>\n");
    }
    strbuf_printf(sb, "      </policy_evaluated>\n    </row>\n    <identifiers>\n");
    if (row->envelope_from[0])
        xml_elem(sb, 6, "envelope_from", row->envelope_from);
    xml_elem(sb, 6, "header_from", row->header_from);
    strbuf_printf(sb, "    </identifiers>\n    <auth_results>\n");
    xml_dkim_auth(sb, row->dkim_auth);
    /* SPF is mandatory in auth_results: "none" when it was not run. */
    strbuf_printf(sb, "      <spf>\n");
    xml_elem(sb, 8, "domain", row->spf_domain[0] ? row->spf_domain
                              : row->envelope_from[0] ? row->envelope_from : row->header_from);
    xml_elem(sb, 8, "scope", row->spf_scope);
    xml_elem(sb, 8, "result", row->spf_result);
    strbuf_printf(sb, "      </spf>\n    </auth_results>\n  </record>\n");
}

static void report_id(char *buf, size_t size, const struct dmarc_report_opts *o, const char *domain, time_t begin)
{
    snprintf(buf, size, "%lld.%s@%s", (long long)begin, domain, o->receiver[0] ? o->receiver : "localhost");
}

int dmarc_report_xml(struct store *st, const struct dmarc_report_opts *o, const char *domain, time_t begin,
                     time_t end, struct strbuf *xml)
{
    char rec_text[4096], err[128], id[600], b[32], e[32];
    struct dmarc_record rec;
    int found = store_dmarc_record(st, domain, begin, end, rec_text, sizeof(rec_text));
    if (found <= 0)
        return found;
    if (dmarc_record_parse(rec_text, strlen(rec_text), &rec, err, sizeof(err)) != 0)
        return -1;
    report_id(id, sizeof(id), o, domain, begin);
    snprintf(b, sizeof(b), "%lld", (long long)begin);
    snprintf(e, sizeof(e), "%lld", (long long)end);
    strbuf_printf(xml, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n");
    strbuf_printf(xml, "  <version>1.0</version>\n  <report_metadata>\n");
    xml_elem(xml, 4, "org_name", o->org_name);
    xml_elem(xml, 4, "email", o->email);
    xml_elem(xml, 4, "report_id", id);
    strbuf_printf(xml, "    <date_range>\n");
    xml_elem(xml, 6, "begin", b);
    xml_elem(xml, 6, "end", e);
    strbuf_printf(xml, "    </date_range>\n  </report_metadata>\n");
    xml_policy(xml, domain, &rec);
    int n = store_dmarc_aggregate(st, domain, begin, end, xml_record, xml);
    if (n < 0)
        return -1;
    if (strbuf_printf(xml, "</feedback>\n") < 0)
        return -1;                           /* over REPORT cap somewhere */
    return n;
}

/* ---- gzip ---- */

int dmarc_gzip(const void *data, size_t len, struct strbuf *out)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    /* windowBits 15 + 16: a gzip wrapper (RFC 1952) instead of zlib's. */
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    uLong bound = deflateBound(&z, (uLong)len);
    unsigned char *buf = malloc(bound);
    if (buf == NULL) {
        deflateEnd(&z);
        return -1;
    }
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    z.next_out = buf;
    z.avail_out = (uInt)bound;
    int rc = deflate(&z, Z_FINISH);
    size_t n = bound - z.avail_out;
    deflateEnd(&z);
    rc = rc == Z_STREAM_END ? strbuf_append(out, buf, n) : -1;
    free(buf);
    return rc;
}

/* ---- the report email (7.2.1.1) ---- */

static void rfc5322_date(char *buf, size_t size, time_t t)
{
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(buf, size, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int base64_lines(struct strbuf *out, const unsigned char *data, size_t len)
{
    /* 57 input bytes make one 76-character line (RFC 2045 6.8). */
    unsigned char line[80];
    for (size_t off = 0; off < len; off += 57) {
        size_t n = len - off < 57 ? len - off : 57;
        int w = EVP_EncodeBlock(line, data + off, (int)n);
        if (strbuf_append(out, line, (size_t)w) < 0 || strbuf_append(out, "\r\n", 2) < 0)
            return -1;
    }
    return 0;
}

int dmarc_report_message(const struct dmarc_report_opts *o, const char *domain, time_t begin, time_t end,
                         const char *rcpt, const void *gz, size_t gz_len, time_t now, struct strbuf *out)
{
    char date[64], id[600], boundary[40], rnd[17], file[800], b[32], e[32];
    rfc5322_date(date, sizeof(date), now);
    report_id(id, sizeof(id), o, domain, begin);
    random_hex(rnd, 16);
    snprintf(boundary, sizeof(boundary), "=_dmarc_%s", rnd);
    snprintf(file, sizeof(file), "%s!%s!%lld!%lld.xml.gz", o->receiver, domain, (long long)begin,
             (long long)end);
    rfc5322_date(b, sizeof(b), begin);
    rfc5322_date(e, sizeof(e), end);
    strbuf_printf(out,
                  "From: DMARC Aggregate Report <%s>\r\n"
                  "To: <%s>\r\n"
                  "Date: %s\r\n"
                  "Subject: Report Domain: %s Submitter: %s Report-ID: <%s>\r\n"
                  "Message-ID: <dmarc.%s.%s>\r\n"
                  "MIME-Version: 1.0\r\n"
                  "Auto-Submitted: auto-generated\r\n"
                  "Content-Type: multipart/mixed; boundary=\"%s\"\r\n"
                  "\r\n"
                  "This is a DMARC aggregate report in MIME format.\r\n"
                  "\r\n--%s\r\n"
                  "Content-Type: text/plain; charset=us-ascii\r\n"
                  "\r\n"
                  "This is an aggregate report of DMARC results (RFC 7489) for %s\r\n"
                  "from %s, covering %s to %s.\r\n"
                  "\r\n--%s\r\n"
                  "Content-Type: application/gzip; name=\"%s\"\r\n"
                  "Content-Disposition: attachment; filename=\"%s\"\r\n"
                  "Content-Transfer-Encoding: base64\r\n"
                  "\r\n",
                  o->email, rcpt, date, domain, o->receiver, id, rnd, id, boundary, boundary, domain,
                  o->receiver, b, e, boundary, file, file);
    if (base64_lines(out, gz, gz_len) < 0)
        return -1;
    return strbuf_printf(out, "\r\n--%s--\r\n", boundary) < 0 ? -1 : 0;
}

/* ---- external destinations (7.1) ---- */

int dmarc_rua_allowed(const struct dmarc_dns *dns, const char *policy_domain, const char *rua_addr)
{
    const char *at = strrchr(rua_addr, '@');
    if (at == NULL || at[1] == '\0')
        return 0;
    const char *rua_domain = at + 1;
    char o1[DNS_NAME_MAX + 2], o2[DNS_NAME_MAX + 2], name[DNS_NAME_MAX * 2 + 32];
    if (dmarc_org_domain(policy_domain, o1, sizeof(o1)) < 0 || dmarc_org_domain(rua_domain, o2, sizeof(o2)) < 0)
        return 0;
    if (strcasecmp(o1, o2) == 0)
        return 1;
    if ((size_t)snprintf(name, sizeof(name), "%s._report._dmarc.%s", policy_domain, rua_domain) >= sizeof(name) ||
        !dns_name_valid(name))
        return 0;
    struct dns_result res = { 0 };
    enum dns_status st = dns->query(dns->arg, name, DNS_T_TXT, &res);
    int out = st == DNS_TEMPFAIL ? -1 : 0;
    for (size_t i = 0; st == DNS_OK && i < res.n && out == 0; i++) {
        const struct dns_rr *rr = &res.rr[i];
        if (rr->type != DNS_T_TXT || rr->text == NULL || rr->text_len < 8 || strncmp(rr->text, "v=DMARC1", 8) != 0)
            continue;
        char c = rr->text_len > 8 ? rr->text[8] : ';';
        out = c == ';' || c == ' ' || c == '\t';
    }
    dns_result_free(&res);
    return out;
}

/* ---- building what is due ---- */

/* Sends one report to every allowed address of rec.  Returns the number
 * of recipients reached; *tried_r counts those attempted (or deferred). */
static int send_report(const struct dmarc_dns *dns, const struct dmarc_report_opts *o, const char *domain,
                       time_t begin, time_t end, const struct dmarc_record *rec, const struct strbuf *gz,
                       time_t now, dmarc_report_send_fn *send, void *arg, int *tried_r)
{
    int sent = 0;
    *tried_r = 0;
    for (int i = 0; i < rec->n_rua; i++) {
        const struct dmarc_uri *u = &rec->rua[i];
        int allowed = dmarc_rua_allowed(dns, domain, u->addr);
        if (allowed < 0)
            (*tried_r)++;                    /* DNS trouble: worth another try */
        if (allowed <= 0) {
            log_info(NULL, "event=dmarc_report_skip domain=%s rua=%s why=%s", domain, u->addr,
                     allowed < 0 ? "dns_tempfail" : "external_destination_not_authorized");
            continue;
        }
        struct strbuf msg;
        strbuf_init(&msg, REPORT_MSG_MAX);
        if (dmarc_report_message(o, domain, begin, end, u->addr, gz->data, gz->len, now, &msg) < 0) {
            strbuf_free(&msg);
            continue;
        }
        if (u->max_size && msg.len > u->max_size) {
            log_info(NULL, "event=dmarc_report_skip domain=%s rua=%s why=over_size_limit size=%zu", domain,
                     u->addr, msg.len);
            strbuf_free(&msg);
            continue;
        }
        (*tried_r)++;
        if (send(arg, u->addr, msg.data, msg.len) == 0) {
            sent++;
            log_info(NULL, "event=dmarc_report_sent domain=%s rua=%s begin=%lld size=%zu", domain, u->addr,
                     (long long)begin, msg.len);
        }
        strbuf_free(&msg);
    }
    return sent;
}

/* One (domain, day) window.  Returns recipients reached, or -1 (store). */
static int report_window(struct store *st, const struct dmarc_dns *dns, const struct dmarc_report_opts *o,
                         const struct store_dmarc_window *w, time_t now, dmarc_report_send_fn *send, void *arg)
{
    time_t period = o->period ? (time_t)o->period : REPORT_PERIOD;
    time_t begin = (time_t)w->begin, end = begin + period - 1;
    char id[600], rec_text[4096], err[128];
    report_id(id, sizeof(id), o, w->domain, begin);
    if (store_dmarc_reported(st, w->domain, begin) == 1)
        return store_dmarc_finish(st, w->domain, begin, end, id, 0, NULL) < 0 ? -1 : 0;
    struct dmarc_record rec;
    if (store_dmarc_record(st, w->domain, begin, end, rec_text, sizeof(rec_text)) <= 0 ||
        dmarc_record_parse(rec_text, strlen(rec_text), &rec, err, sizeof(err)) != 0)
        return store_dmarc_finish(st, w->domain, begin, end, id, 0, NULL) < 0 ? -1 : 0;
    struct strbuf xml, gz;
    strbuf_init(&xml, REPORT_XML_MAX);
    strbuf_init(&gz, REPORT_XML_MAX);
    int rc = dmarc_report_xml(st, o, w->domain, begin, end, &xml);
    int sent = 0, tried = 0;
    if (rc > 0 && dmarc_gzip(xml.data, xml.len, &gz) == 0)
        sent = send_report(dns, o, w->domain, begin, end, &rec, &gz, now, send, arg, &tried);
    strbuf_free(&xml);
    strbuf_free(&gz);
    if (rc < 0)
        return -1;
    /* Nothing reached anyone but something could: keep it for next time,
     * unless it has waited long enough. */
    bool stale = now - end > REPORT_KEEP_DAYS * REPORT_PERIOD;
    if (sent == 0 && tried > 0 && !stale)
        return 0;
    return store_dmarc_finish(st, w->domain, begin, end, id, sent, NULL) < 0 ? -1 : sent;
}

int dmarc_reports_build_due(struct store *st, const struct dmarc_dns *dns, const struct dmarc_report_opts *o,
                            time_t now, dmarc_report_send_fn *send, void *arg)
{
    struct store_dmarc_window *w;
    int n = store_dmarc_windows(st, now, o->period ? (int64_t)o->period : REPORT_PERIOD, &w);
    if (n < 0)
        return -1;
    int total = 0, rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        int sent = report_window(st, dns, o, &w[i], now, send, arg);
        if (sent < 0)
            rc = -1;
        else
            total += sent;
    }
    free(w);
    if (rc == 0)
        store_dmarc_prune(st, now - (REPORT_KEEP_DAYS + 1) * REPORT_PERIOD);
    return rc < 0 ? -1 : total;
}
