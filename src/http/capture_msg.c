/*
 * One captured message as the API shows it: the summary for lists, the
 * full Message object, headers, parts by PartID, the HTML prepared for
 * the viewer.  Everything is derived from the stored file with the MIME
 * engine; malformed input gives a best-effort view, never an error.
 *
 * PartIDs follow IMAP section numbers: a single-part message is "1", the
 * parts of a multipart "1", "2", ..., nested ones "2.1".  message/rfc822
 * parts are leaves (an attached message is an attachment).
 */
#include "http/capture.h"
#include "http/http_parse.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mime/mime.h"
#include "mime/mime_codec.h"
#include "store/store_messages.h"

#define HEADER_VALUE_MAX (256u * 1024)

int capture_file_read(struct store *st, const char *file, char **data_r, size_t *len_r)
{
    int fd = store_msg_open(st, file);
    if (fd < 0)
        return -1;
    struct stat sb;
    if (fstat(fd, &sb) < 0 || sb.st_size < 0 || (uint64_t)sb.st_size > (1ull << 31)) {
        close(fd);
        return -1;
    }
    size_t len = (size_t)sb.st_size, got = 0;
    char *data = malloc(len + 1);
    if (data == NULL) {
        close(fd);
        return -1;
    }
    while (got < len) {
        ssize_t n = read(fd, data + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    data[got] = '\0';
    *data_r = data;
    *len_r = got;
    return 0;
}

void capture_time_rfc3339(int64_t t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}

/* RFC 5322 3.3: [day ","] DD Mon YYYY HH:MM[:SS] zone.  Obsolete zones
 * (GMT, UT, EST...) are taken as UTC offsets of zero except the US ones. */
int64_t capture_parse_date(const char *s)
{
    static const char *const months[] = { "jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec" };
    const char *c = strchr(s, ',');
    c = c ? c + 1 : s;
    int day, year, hh, mm, ss = 0;
    char mon[4] = "";
    int n = 0;
    if (sscanf(c, " %2d %3s %4d %2d:%2d%n", &day, mon, &year, &hh, &mm, &n) != 5)
        return -1;
    c += n;
    if (*c == ':') {
        int k = 0;
        if (sscanf(c, ":%2d%n", &ss, &k) == 1)
            c += k;
    }
    int m = -1;
    for (int i = 0; i < 12; i++)
        if (strncasecmp(mon, months[i], 3) == 0)
            m = i;
    if (m < 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60)
        return -1;
    if (year < 100)
        year += year < 50 ? 2000 : 1900;
    while (*c == ' ' || *c == '\t')
        c++;
    long off = 0;
    if ((*c == '+' || *c == '-') && isdigit((unsigned char)c[1])) {
        long z = strtol(c + 1, NULL, 10);
        off = (z / 100) * 3600 + (z % 100) * 60;
        if (*c == '-')
            off = -off;
    } else if (strncasecmp(c, "EST", 3) == 0 || strncasecmp(c, "CDT", 3) == 0) {
        off = -5 * 3600;
    } else if (strncasecmp(c, "EDT", 3) == 0) {
        off = -4 * 3600;
    } else if (strncasecmp(c, "CST", 3) == 0 || strncasecmp(c, "MDT", 3) == 0) {
        off = -6 * 3600;
    } else if (strncasecmp(c, "MST", 3) == 0 || strncasecmp(c, "PDT", 3) == 0) {
        off = -7 * 3600;
    } else if (strncasecmp(c, "PST", 3) == 0) {
        off = -8 * 3600;
    }
    struct tm tm = { .tm_year = year - 1900, .tm_mon = m, .tm_mday = day,
                     .tm_hour = hh, .tm_min = mm, .tm_sec = ss };
    return (int64_t)timegm(&tm) - off;
}

/* ---- headers ---- */

static int header_raw(const struct mime_message *msg, const char *name, struct strbuf *out)
{
    return mime_header_get(msg->data, msg->len, msg->root->hdr_offset, name, out);
}

void capture_header_text(const struct mime_message *msg, const char *name, struct strbuf *out)
{
    struct strbuf raw;
    strbuf_init(&raw, HEADER_VALUE_MAX);
    if (header_raw(msg, name, &raw) == 1)
        mime_rfc2047_decode(raw.data, raw.len, out);
    strbuf_free(&raw);
    strbuf_append(out, "", 0);
}

/* Appends valid UTF-8 only: JSON strings must be UTF-8 (jansson refuses). */
static json_t *json_text(const char *s, size_t len)
{
    struct strbuf sb;
    strbuf_init(&sb, len * 3 + 16);
    mime_utf8_sanitize(s ? s : "", s ? len : 0, &sb);
    json_t *j = json_stringn(sb.data ? sb.data : "", sb.len);
    strbuf_free(&sb);
    return j ? j : json_string("");
}

static json_t *json_cstr(const char *s)
{
    return json_text(s ? s : "", s ? strlen(s) : 0);
}

json_t *capture_headers_json(const struct mime_message *msg)
{
    json_t *obj = json_object();
    struct mime_header_iter it;
    struct mime_header_field f;
    mime_header_iter_init(&it, msg->data, msg->len, msg->root->hdr_offset);
    while (mime_header_iter_next(&it, &f)) {
        if (f.value == NULL)
            continue;
        char name[256];
        size_t nl = f.name_len < sizeof(name) - 1 ? f.name_len : sizeof(name) - 1;
        memcpy(name, f.name, nl);
        name[nl] = '\0';
        struct strbuf un, dec;
        strbuf_init(&un, HEADER_VALUE_MAX);
        strbuf_init(&dec, HEADER_VALUE_MAX * 2);
        mime_header_unfold(f.value, f.value_len, true, &un);
        mime_rfc2047_decode(un.data ? un.data : "", un.len, &dec);
        json_t *key_json = json_text(name, nl);
        const char *key = json_string_value(key_json);
        json_t *arr = json_object_get(obj, key);
        if (arr == NULL) {
            arr = json_array();
            json_object_set_new(obj, key, arr);
        }
        json_array_append_new(arr, json_text(dec.data, dec.len));
        json_decref(key_json);
        strbuf_free(&un);
        strbuf_free(&dec);
    }
    return obj;
}

/* ---- addresses ---- */

static json_t *address_json(const struct mime_address *a)
{
    struct strbuf name, addr;
    strbuf_init(&name, 4096);
    strbuf_init(&addr, 1024);
    if (a->name)
        mime_rfc2047_decode(a->name, strlen(a->name), &name);
    strbuf_printf(&addr, "%s%s%s", a->mailbox ? a->mailbox : "", a->domain && a->domain[0] ? "@" : "",
                  a->domain ? a->domain : "");
    json_t *o = json_pack("{s:o,s:o}", "Name", json_text(name.data, name.len), "Address",
                          json_text(addr.data, addr.len));
    strbuf_free(&name);
    strbuf_free(&addr);
    return o;
}

/* [{Name, Address}] of an address header; also appends "name <addr>, "
 * lower-cased to flat (for search) when flat is not NULL. */
static json_t *addresses_json(const struct mime_message *msg, const char *header, struct strbuf *flat)
{
    json_t *arr = json_array();
    struct strbuf raw;
    strbuf_init(&raw, HEADER_VALUE_MAX);
    struct mime_address *list = NULL;
    if (header_raw(msg, header, &raw) == 1 &&
        mime_address_parse(raw.data, raw.len, false, &list) == 0) {
        for (struct mime_address *a = list; a; a = a->next) {
            if (a->domain == NULL)
                continue; /* group start or end */
            json_t *o = address_json(a);
            json_array_append_new(arr, o);
            if (flat)
                strbuf_printf(flat, "%s <%s>, ", json_string_value(json_object_get(o, "Name")),
                              json_string_value(json_object_get(o, "Address")));
        }
    }
    mime_address_free(list);
    strbuf_free(&raw);
    return arr;
}

static char *lower_dup(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++)
        d[i] = (char)tolower((unsigned char)s[i]);
    d[len] = '\0';
    return d;
}

/* ---- parts ---- */

static bool part_is_attachment_disp(const struct mime_part *p)
{
    return p->disposition && strcasecmp(p->disposition, "attachment") == 0;
}

void capture_part_filename(const struct mime_part *p, struct strbuf *out)
{
    if (mime_param_get_utf8(p->disp_params, p->disp_param_count, "filename", out) == 1)
        return;
    mime_param_get_utf8(p->params, p->param_count, "name", out);
}

static bool part_has_filename(const struct mime_part *p)
{
    struct strbuf sb;
    strbuf_init(&sb, 4096);
    capture_part_filename(p, &sb);
    bool has = sb.len > 0;
    strbuf_free(&sb);
    return has;
}

typedef void part_visit_fn(const struct mime_part *p, const char *part_id, void *arg);

/* Visits the leaves (non-multipart parts) with their PartIDs. */
static void parts_walk(const struct mime_part *p, const char *id, part_visit_fn *fn, void *arg)
{
    if (!(p->flags & MIME_PART_MULTIPART)) {
        fn(p, id, arg);
        return;
    }
    int k = 1;
    for (const struct mime_part *c = p->children; c; c = c->next, k++) {
        char cid[128];
        if (id[0] == '\0')
            snprintf(cid, sizeof(cid), "%d", k);
        else
            snprintf(cid, sizeof(cid), "%.100s.%d", id, k);
        parts_walk(c, cid, fn, arg);
    }
}

static void msg_walk(const struct mime_message *msg, part_visit_fn *fn, void *arg)
{
    if (msg->root->flags & MIME_PART_MULTIPART)
        parts_walk(msg->root, "", fn, arg);
    else
        fn(msg->root, "1", arg);
}

struct find_ctx {
    const char *id;
    const char *subtype;
    const struct mime_part *found;
};

static void find_by_id(const struct mime_part *p, const char *id, void *arg)
{
    struct find_ctx *f = arg;
    if (f->found == NULL && strcmp(id, f->id) == 0)
        f->found = p;
}

const struct mime_part *capture_part_find(const struct mime_message *msg, const char *part_id)
{
    struct find_ctx f = { .id = part_id };
    msg_walk(msg, find_by_id, &f);
    return f.found;
}

static bool is_body_candidate(const struct mime_part *p, const char *subtype)
{
    char ct[128];
    char want[32];
    snprintf(want, sizeof(want), "text/%s", subtype);
    mime_part_content_type(p, ct, sizeof(ct));
    return strcmp(ct, want) == 0 && !part_is_attachment_disp(p) && !part_has_filename(p);
}

static void find_body(const struct mime_part *p, const char *id, void *arg)
{
    struct find_ctx *f = arg;
    if (f->found == NULL && is_body_candidate(p, f->subtype))
        f->found = p;
}

const struct mime_part *capture_body_part(const struct mime_message *msg, const char *subtype)
{
    struct find_ctx f = { .subtype = subtype };
    msg_walk(msg, find_body, &f);
    return f.found;
}

static void decoded_text(const struct mime_message *msg, const struct mime_part *p,
                         struct strbuf *out)
{
    if (p != NULL)
        mime_part_decode(msg, p, true, out);
}

/* Plain text from HTML for snippets and search: tags dropped, style and
 * script contents dropped, a few entities decoded. */
static void html_to_text(const char *h, size_t len, struct strbuf *out, size_t cap)
{
    size_t i = 0;
    while (i < len && out->len < cap) {
        if (h[i] == '<') {
            bool skip = strncasecmp(h + i, "<style", 6) == 0 || strncasecmp(h + i, "<script", 7) == 0;
            const char *endtag = strncasecmp(h + i, "<style", 6) == 0 ? "</style" : "</script";
            const char *gt = memchr(h + i, '>', len - i);
            if (gt == NULL)
                break;
            i = (size_t)(gt - h) + 1;
            if (skip) {
                while (i < len && strncasecmp(h + i, endtag, strlen(endtag)) != 0)
                    i++;
            }
            strbuf_append(out, " ", 1);
            continue;
        }
        if (h[i] == '&') {
            static const struct { const char *e; const char *t; } ents[] = {
                { "&nbsp;", " " }, { "&amp;", "&" }, { "&lt;", "<" }, { "&gt;", ">" },
                { "&quot;", "\"" }, { "&#39;", "'" } };
            bool done = false;
            for (size_t k = 0; k < sizeof(ents) / sizeof(ents[0]) && !done; k++) {
                size_t el = strlen(ents[k].e);
                if (len - i >= el && strncasecmp(h + i, ents[k].e, el) == 0) {
                    strbuf_append(out, ents[k].t, strlen(ents[k].t));
                    i += el;
                    done = true;
                }
            }
            if (done)
                continue;
        }
        strbuf_append(out, h + i, 1);
        i++;
    }
}

/* Collapses white space; cuts at max bytes on a UTF-8 boundary. */
static void snippet_make(const char *s, size_t len, char *out, size_t max)
{
    size_t o = 0;
    bool space = true;
    for (size_t i = 0; i < len && o + 1 < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ') {
            if (!space)
                out[o++] = ' ';
            space = true;
            continue;
        }
        space = false;
        out[o++] = (char)c;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    /* don't leave half a UTF-8 sequence */
    size_t k = o;
    while (k > 0 && ((unsigned char)out[k - 1] & 0xC0) == 0x80)
        k--;
    if (k > 0 && ((unsigned char)out[k - 1] & 0x80)) {
        unsigned char lead = (unsigned char)out[k - 1];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        if (o - (k - 1) < need)
            o = k - 1;
    }
    out[o] = '\0';
}

struct attach_ctx {
    const struct mime_message *msg;
    const struct mime_part *text, *html;
    json_t *attachments, *inline_parts;
    int count;
    bool checksums;
};

static json_t *checksums_json(const void *data, size_t len)
{
    static const char *const names[] = { "MD5", "SHA1", "SHA256" };
    static const char *const algos[] = { "MD5", "SHA1", "SHA256" };
    json_t *o = json_object();
    for (int i = 0; i < 3; i++) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        char hex[EVP_MAX_MD_SIZE * 2 + 1];
        const EVP_MD *md_type = EVP_get_digestbyname(algos[i]);
        if (md_type == NULL || !EVP_Digest(data, len, md, &mdlen, md_type, NULL))
            continue;
        for (unsigned k = 0; k < mdlen; k++)
            snprintf(hex + 2 * k, 3, "%02x", md[k]);
        hex[2 * mdlen] = '\0';
        json_object_set_new(o, names[i], json_string(hex));
    }
    return o;
}

static void visit_attachment(const struct mime_part *p, const char *id, void *arg)
{
    struct attach_ctx *a = arg;
    if (p == a->text || p == a->html)
        return;
    char ct[128];
    mime_part_content_type(p, ct, sizeof(ct));
    bool is_inline = p->id != NULL && !part_is_attachment_disp(p);
    /* a text part with no name between bodies (a second text/plain) is
     * still shown as an attachment, as Mailpit does */
    a->count += is_inline ? 0 : 1;
    if (a->attachments == NULL)
        return;
    struct strbuf fname, body;
    strbuf_init(&fname, 4096);
    strbuf_init(&body, CAPTURE_DECODE_MAX);
    capture_part_filename(p, &fname);
    mime_part_decode(a->msg, p, false, &body);
    char cid[512] = "";
    if (p->id) {
        const char *s = p->id;
        size_t n = strlen(s);
        if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
            s++;
            n -= 2;
        }
        snprintf(cid, sizeof(cid), "%.*s", (int)(n < sizeof(cid) - 1 ? n : sizeof(cid) - 1), s);
    }
    json_t *o = json_object();
    json_object_set_new(o, "PartID", json_string(id));
    json_object_set_new(o, "FileName", json_text(fname.data, fname.len));
    json_object_set_new(o, "ContentType", json_cstr(ct));
    json_object_set_new(o, "ContentID", json_cstr(cid));
    json_object_set_new(o, "Size", json_integer((json_int_t)body.len));
    if (a->checksums)
        json_object_set_new(o, "Checksums", checksums_json(body.data ? body.data : "", body.len));
    json_array_append_new(is_inline ? a->inline_parts : a->attachments, o);
    strbuf_free(&fname);
    strbuf_free(&body);
}

static json_t *summary_json(const char *id, const struct mime_message *msg, int64_t created,
                            uint64_t size, int attachments, const char *snippet, struct strbuf *flat)
{
    struct strbuf subj, mid;
    strbuf_init(&subj, HEADER_VALUE_MAX * 2);
    strbuf_init(&mid, 4096);
    capture_header_text(msg, "Subject", &subj);
    capture_header_text(msg, "Message-ID", &mid);
    char *m = mid.data ? mid.data : (char *)"";
    size_t ml = mid.len;
    while (ml > 0 && (m[ml - 1] == ' ' || m[ml - 1] == '>'))
        ml--;
    while (ml > 0 && (*m == ' ' || *m == '<')) {
        m++;
        ml--;
    }
    char when[64];
    capture_time_rfc3339(created, when, sizeof(when));
    json_t *from = addresses_json(msg, "From", flat);
    json_t *o = json_object();
    json_object_set_new(o, "ID", json_string(id));
    json_object_set_new(o, "MessageID", json_text(m, ml));
    json_object_set_new(o, "Read", json_false());
    json_object_set_new(o, "From", json_array_size(from) ? json_incref(json_array_get(from, 0))
                                                         : json_null());
    json_decref(from);
    json_object_set_new(o, "To", addresses_json(msg, "To", flat));
    json_object_set_new(o, "Cc", addresses_json(msg, "Cc", flat));
    json_object_set_new(o, "Bcc", addresses_json(msg, "Bcc", flat));
    json_object_set_new(o, "ReplyTo", addresses_json(msg, "Reply-To", NULL));
    json_object_set_new(o, "Subject", json_text(subj.data, subj.len));
    json_object_set_new(o, "Created", json_string(when));
    json_object_set_new(o, "Size", json_integer((json_int_t)size));
    json_object_set_new(o, "Attachments", json_integer(attachments));
    json_object_set_new(o, "Snippet", json_cstr(snippet));
    json_object_set_new(o, "Tags", json_array());
    strbuf_free(&subj);
    strbuf_free(&mid);
    return o;
}

/* A lower-cased copy of the flat text of one address field. */
static char *field_lower(const json_t *summary, const char *key)
{
    struct strbuf sb;
    strbuf_init(&sb, 1 << 20);
    const json_t *v = json_object_get(summary, key);
    if (json_is_object(v))
        strbuf_printf(&sb, "%s <%s>", json_string_value(json_object_get(v, "Name")),
                      json_string_value(json_object_get(v, "Address")));
    size_t i;
    json_t *e;
    if (json_is_array(v))
        json_array_foreach(v, i, e)
            strbuf_printf(&sb, "%s <%s>, ", json_string_value(json_object_get(e, "Name")),
                          json_string_value(json_object_get(e, "Address")));
    char *r = lower_dup(sb.data ? sb.data : "", sb.len);
    strbuf_free(&sb);
    return r;
}

struct capture_meta *capture_meta_build(const char *id, const char *file, const char *data,
                                        size_t len, int64_t created, uint64_t size)
{
    struct mime_message *msg = mime_parse(data, len);
    struct capture_meta *m = calloc(1, sizeof(*m));
    if (msg == NULL || m == NULL) {
        mime_message_free(msg);
        free(m);
        return NULL;
    }
    snprintf(m->id, sizeof(m->id), "%s", id);
    snprintf(m->file, sizeof(m->file), "%s", file);
    m->created = created;
    m->size = size;
    struct attach_ctx a = { .msg = msg };
    a.text = capture_body_part(msg, "plain");
    a.html = capture_body_part(msg, "html");
    msg_walk(msg, visit_attachment, &a);
    m->attachments = a.count;

    struct strbuf body, text;
    strbuf_init(&body, CAPTURE_DECODE_MAX);
    strbuf_init(&text, CAPTURE_SEARCH_TEXT_MAX);
    if (a.text) {
        decoded_text(msg, a.text, &body);
        strbuf_append(&text, body.data ? body.data : "",
                      body.len < CAPTURE_SEARCH_TEXT_MAX ? body.len : CAPTURE_SEARCH_TEXT_MAX);
    } else if (a.html) {
        decoded_text(msg, a.html, &body);
        html_to_text(body.data ? body.data : "", body.len, &text, CAPTURE_SEARCH_TEXT_MAX - 8);
    }
    char snippet[CAPTURE_SNIPPET_MAX + 8];
    snippet_make(text.data ? text.data : "", text.len, snippet, CAPTURE_SNIPPET_MAX);

    struct strbuf flat;
    strbuf_init(&flat, 1 << 20);
    m->summary = summary_json(id, msg, created, size, a.count, snippet, &flat);
    const char *subject = json_string_value(json_object_get(m->summary, "Subject"));
    const char *mid = json_string_value(json_object_get(m->summary, "MessageID"));
    strbuf_printf(&flat, " %s ", subject);
    strbuf_append(&flat, text.data ? text.data : "", text.len);
    m->search = lower_dup(flat.data ? flat.data : "", flat.len);
    m->subject = lower_dup(subject, strlen(subject));
    m->message_id = lower_dup(mid, strlen(mid));
    m->from = field_lower(m->summary, "From");
    char *to = field_lower(m->summary, "To");
    char *cc = field_lower(m->summary, "Cc");
    m->to = to;
    m->cc = cc;
    struct strbuf date;
    strbuf_init(&date, 4096);
    capture_header_text(msg, "Date", &date);
    m->date = capture_parse_date(date.data ? date.data : "");
    if (m->date < 0)
        m->date = created;
    strbuf_free(&date);
    strbuf_free(&flat);
    strbuf_free(&body);
    strbuf_free(&text);
    mime_message_free(msg);
    return m;
}

void capture_meta_free(struct capture_meta *m)
{
    if (m == NULL)
        return;
    json_decref(m->summary);
    free(m->search);
    free(m->from);
    free(m->to);
    free(m->cc);
    free(m->subject);
    free(m->message_id);
    free(m);
}

static json_t *list_unsubscribe_json(const struct mime_message *msg)
{
    struct strbuf v, post;
    strbuf_init(&v, HEADER_VALUE_MAX);
    strbuf_init(&post, 4096);
    capture_header_text(msg, "List-Unsubscribe", &v);
    capture_header_text(msg, "List-Unsubscribe-Post", &post);
    json_t *links = json_array();
    const char *s = v.data ? v.data : "";
    while ((s = strchr(s, '<')) != NULL) {
        const char *e = strchr(s, '>');
        if (e == NULL)
            break;
        json_array_append_new(links, json_text(s + 1, (size_t)(e - s - 1)));
        s = e + 1;
    }
    json_t *o = json_pack("{s:o,s:o,s:s,s:o}", "Header", json_text(v.data, v.len), "Links", links,
                          "Errors", "", "HeaderPost", json_text(post.data, post.len));
    strbuf_free(&v);
    strbuf_free(&post);
    return o;
}

json_t *capture_message_json(const struct capture_meta *meta, const struct mime_message *msg,
                             bool read)
{
    json_t *o = json_deep_copy(meta->summary);
    json_object_set_new(o, "Read", json_boolean(read));
    json_object_del(o, "Snippet");
    json_object_del(o, "Created");
    json_object_del(o, "Attachments");
    struct attach_ctx a = { .msg = msg, .checksums = true };
    a.text = capture_body_part(msg, "plain");
    a.html = capture_body_part(msg, "html");
    a.attachments = json_array();
    a.inline_parts = json_array();
    msg_walk(msg, visit_attachment, &a);
    struct strbuf text, html, rp;
    strbuf_init(&text, CAPTURE_DECODE_MAX);
    strbuf_init(&html, CAPTURE_DECODE_MAX);
    strbuf_init(&rp, 4096);
    decoded_text(msg, a.text, &text);
    decoded_text(msg, a.html, &html);
    capture_header_text(msg, "Return-Path", &rp);
    char *r = rp.data ? rp.data : (char *)"";
    size_t rl = rp.len;
    while (rl > 0 && (r[rl - 1] == '>' || r[rl - 1] == ' '))
        rl--;
    while (rl > 0 && (*r == '<' || *r == ' ')) {
        r++;
        rl--;
    }
    char when[64];
    capture_time_rfc3339(meta->date, when, sizeof(when));
    json_object_set_new(o, "ReturnPath", json_text(r, rl));
    json_object_set_new(o, "Date", json_string(when));
    json_object_set_new(o, "Text", json_text(text.data, text.len));
    json_object_set_new(o, "HTML", json_text(html.data, html.len));
    json_object_set_new(o, "Size", json_integer((json_int_t)meta->size));
    json_object_set_new(o, "Inline", a.inline_parts);
    json_object_set_new(o, "Attachments", a.attachments);
    json_object_set_new(o, "ListUnsubscribe", list_unsubscribe_json(msg));
    strbuf_free(&text);
    strbuf_free(&html);
    strbuf_free(&rp);
    return o;
}

/* ---- HTML for the viewer ---- */

struct cid_ctx {
    const struct mime_message *msg;
    const char *cid;
    size_t cid_len;
    const struct mime_part *found;
};

static void find_cid(const struct mime_part *p, const char *id, void *arg)
{
    struct cid_ctx *c = arg;
    if (c->found || p->id == NULL)
        return;
    const char *s = p->id;
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
        s++;
        n -= 2;
    }
    if (n == c->cid_len && strncasecmp(s, c->cid, n) == 0)
        c->found = p;
}

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void append_b64(struct strbuf *out, const unsigned char *d, size_t len)
{
    char q[4];
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)d[i + 1] << 8;
        if (i + 2 < len)
            v |= d[i + 2];
        q[0] = b64chars[(v >> 18) & 63];
        q[1] = b64chars[(v >> 12) & 63];
        q[2] = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
        q[3] = i + 2 < len ? b64chars[v & 63] : '=';
        strbuf_append(out, q, 4);
    }
}

/* Appends a data: URI for the part with Content-ID cid, or nothing. */
static bool append_cid_data(const struct mime_message *msg, const char *cid, size_t len,
                            struct strbuf *out)
{
    char dec[512];
    if (http_percent_decode(cid, len, false, dec, sizeof(dec)) < 0)
        return false;
    struct cid_ctx c = { .msg = msg, .cid = dec, .cid_len = strlen(dec) };
    msg_walk(msg, find_cid, &c);
    if (c.found == NULL)
        return false;
    struct strbuf body;
    strbuf_init(&body, 16u << 20);
    mime_part_decode(msg, c.found, false, &body);
    char ct[128];
    mime_part_content_type(c.found, ct, sizeof(ct));
    for (char *p = ct; *p; p++)
        if (*p == '"' || *p == '\'' || *p == ' ' || *p == '<' || *p == '>')
            *p = '_';
    strbuf_printf(out, "data:%s;base64,", ct);
    append_b64(out, (const unsigned char *)(body.data ? body.data : ""), body.len);
    strbuf_free(&body);
    return true;
}

int capture_html_for_view(const struct mime_message *msg, struct strbuf *out)
{
    const struct mime_part *p = capture_body_part(msg, "html");
    if (p == NULL)
        return -1;
    struct strbuf html;
    strbuf_init(&html, CAPTURE_DECODE_MAX);
    mime_part_decode(msg, p, true, &html);
    const char *h = html.data ? html.data : "";
    size_t len = html.len, i = 0;
    while (i < len) {
        const char *c = i + 4 <= len ? strcasestr(h + i, "cid:") : NULL;
        if (c == NULL || (size_t)(c - h) >= len) {
            strbuf_append(out, h + i, len - i);
            break;
        }
        size_t at = (size_t)(c - h);
        strbuf_append(out, h + i, at - i);
        size_t end = at + 4;
        while (end < len && !strchr("\"' >)\t\r\n", h[end]))
            end++;
        if (!append_cid_data(msg, h + at + 4, end - at - 4, out))
            strbuf_append(out, h + at, end - at);
        i = end;
    }
    strbuf_free(&html);
    return 0;
}
