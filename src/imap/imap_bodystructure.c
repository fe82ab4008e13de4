/*
 * BODYSTRUCTURE, BODY and ENVELOPE formatting.  The grammar is RFC 3501
 * 9 (body, body-type-1part, body-ext-*, envelope); the choices the RFC
 * leaves open are made as Dovecot makes them, since that is what clients
 * are used to.  See imap_bodystructure.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "imap/imap_bodystructure.h"
#include "mime/mime.h"

/* Dovecot switches from quoted string to literal at the fifth "\" or '"'
 * (the literal's overhead is smaller by then). */
#define QUOTED_MAX_ESCAPES 4

#define TEXT_PLAIN_HEAD "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
#define EMPTY_TEXT_PART TEXT_PLAIN_HEAD "0 0"
#define EMPTY_ENVELOPE "NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL"

struct writer {
    struct strbuf *out;
    const struct mime_message *msg;
    bool ext;
    bool err;
};

static void put(struct writer *w, const char *s, size_t n)
{
    if (!w->err && n > 0 && strbuf_append(w->out, s, n) < 0)
        w->err = true;
}

static void puts_(struct writer *w, const char *s) { put(w, s, strlen(s)); }

static void putf_size(struct writer *w, size_t v)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%zu", v);
    put(w, buf, (size_t)n);
}

/* nstring: NIL, a quoted string, or a literal for 8-bit text.  CR and LF
 * are dropped first (they cannot be in a quoted string, and in header
 * values they are folding). */
static void put_nstring(struct writer *w, const char *s)
{
    size_t len, kept = 0, escapes = 0;
    bool eight = false;

    if (s == NULL) {
        puts_(w, "NIL");
        return;
    }
    len = strlen(s);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n')
            continue;
        kept++;
        if (c == '"' || c == '\\')
            escapes++;
        else if (c >= 0x80)
            eight = true;
    }
    if (eight || escapes > QUOTED_MAX_ESCAPES) {
        char hdr[32];
        int n = snprintf(hdr, sizeof(hdr), "{%zu}\r\n", kept);
        put(w, hdr, (size_t)n);
        for (size_t i = 0, run = 0; i <= len; i++) {
            if (i == len || s[i] == '\r' || s[i] == '\n') {
                put(w, s + run, i - run);
                run = i + 1;
            }
        }
        return;
    }
    put(w, "\"", 1);
    for (size_t i = 0, run = 0; i <= len; i++) {
        if (i == len || s[i] == '\r' || s[i] == '\n' || s[i] == '"' || s[i] == '\\') {
            put(w, s + run, i - run);
            if (i < len && (s[i] == '"' || s[i] == '\\')) {
                put(w, "\\", 1);
                put(w, s + i, 1);
            }
            run = i + 1;
        }
    }
    put(w, "\"", 1);
}

/* How put_human() changes s: the number of bytes it drops, and whether
 * anything changes at all (then a literal is sent). */
static size_t human_removed(const char *s, size_t size, bool *modify)
{
    size_t removed = 0;
    bool lwsp = true, prefix = true;

    *modify = false;
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t') {
            if (c == '\t' || lwsp)
                *modify = true;
            if (lwsp)
                removed++;
            lwsp = true;
        } else if (c == '\r' || c == '\n') {
            removed++;
            *modify = true;
        } else {
            if (c == '\0' || c == '"' || c == '\\' || c >= 0x80)
                *modify = true;
            lwsp = false;
        }
        if (!lwsp)
            prefix = false;
    }
    if (lwsp && size > 0 && !prefix) {     /* trailing white space */
        *modify = true;
        removed++;
    }
    return removed;
}

/* Subject and display names (Dovecot's "string for humans"): white space
 * runs become one space, leading and trailing white space and line breaks
 * go, NUL becomes 0x80; anything changed, or 8-bit, '"' or '\' present,
 * makes it a literal. */
static void put_human(struct writer *w, const char *s, size_t size)
{
    bool modify, lwsp = true;
    size_t removed = human_removed(s, size, &modify);

    if (!modify) {
        put(w, "\"", 1);
        put(w, s, size);
        put(w, "\"", 1);
        return;
    }
    if (size == removed) {
        puts_(w, "\"\"");
        return;
    }
    char hdr[32];
    int n = snprintf(hdr, sizeof(hdr), "{%zu}\r\n", size - removed);
    put(w, hdr, (size_t)n);
    size_t left = size - removed;   /* what the literal announced */
    for (size_t i = 0; i < size && left > 0; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t') {
            if (!lwsp) {
                put(w, " ", 1);
                left--;
            }
            lwsp = true;
        } else if (c != '\r' && c != '\n') {
            put(w, c == '\0' ? "\x80" : s + i, 1);
            left--;
            lwsp = false;
        }
    }
}

/* ("name" "value" ...), with charset=us-ascii added to text parts that do
 * not say (RFC 2045 5.2). */
static void put_params(struct writer *w, const struct mime_param *p, size_t n,
                       bool default_charset)
{
    bool seen = false;

    if (!default_charset && n == 0) {
        puts_(w, "NIL");
        return;
    }
    put(w, "(", 1);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            put(w, " ", 1);
        if (strcasecmp(p[i].name, "charset") == 0)
            seen = true;
        put_nstring(w, p[i].name);
        put(w, " ", 1);
        put_nstring(w, p[i].value);
    }
    if (default_charset && !seen) {
        if (n > 0)
            put(w, " ", 1);
        puts_(w, "\"charset\" \"us-ascii\"");
    }
    put(w, ")", 1);
}

/* body-fld-dsp SP body-fld-lang SP body-fld-loc */
static void put_ext_common(struct writer *w, const struct mime_part *part)
{
    put(w, " ", 1);
    if (part->disposition == NULL) {
        puts_(w, "NIL");
    } else {
        put(w, "(", 1);
        put_nstring(w, part->disposition);
        put(w, " ", 1);
        put_params(w, part->disp_params, part->disp_param_count, false);
        put(w, ")", 1);
    }
    put(w, " ", 1);
    if (part->language_count == 0) {
        puts_(w, "NIL");
    } else {
        put(w, "(", 1);
        for (size_t i = 0; i < part->language_count; i++) {
            if (i > 0)
                put(w, " ", 1);
            put_nstring(w, part->languages[i]);
        }
        put(w, ")", 1);
    }
    put(w, " ", 1);
    put_nstring(w, part->location);
}

/* ---- ENVELOPE ---- */

struct envelope {
    const struct mime_header_field *date, *subject, *message_id, *in_reply_to;
    struct mime_header_field f_date, f_subject, f_message_id, f_in_reply_to;
    struct mime_address *from, *sender, *reply_to, *to, *cc, *bcc;
    bool oom;
};

/* Names compare as C strings: "Reply-To\0x" is a Reply-To, as for
 * Dovecot. */
static bool field_is(const struct mime_header_field *f, const char *name)
{
    size_t n = strlen(name);
    return strnlen(f->name, f->name_len) == n && strncasecmp(f->name, name, n) == 0;
}

/* Appends the addresses of one more field to a list (several From: fields
 * make one list, as Dovecot does).  The raw value goes to the parser: its
 * folding line breaks matter inside broken comments and quoted strings. */
static void add_addresses(struct envelope *env, struct mime_address **list,
                          const struct mime_header_field *f)
{
    struct mime_address *a = NULL;

    if (mime_address_parse(f->value, f->value_len, true, &a) < 0) {
        env->oom = true;
        return;
    }
    while (*list != NULL)
        list = &(*list)->next;
    *list = a;
}

static void envelope_collect(struct envelope *env, const struct mime_message *msg,
                             const struct mime_part *part)
{
    struct mime_header_iter it;
    struct mime_header_field f;

    memset(env, 0, sizeof(*env));
    /* only the header itself: an interrupted one has no empty line */
    mime_header_iter_init(&it, msg->data, part->hdr_end, part->hdr_offset);
    while (mime_header_iter_next(&it, &f)) {
        if (f.value == NULL)
            continue;
        /* single fields: the last one counts */
        if (field_is(&f, "Date"))
            env->f_date = f, env->date = &env->f_date;
        else if (field_is(&f, "Subject"))
            env->f_subject = f, env->subject = &env->f_subject;
        else if (field_is(&f, "Message-ID"))
            env->f_message_id = f, env->message_id = &env->f_message_id;
        else if (field_is(&f, "In-Reply-To"))
            env->f_in_reply_to = f, env->in_reply_to = &env->f_in_reply_to;
        else if (field_is(&f, "From"))
            add_addresses(env, &env->from, &f);
        else if (field_is(&f, "Sender"))
            add_addresses(env, &env->sender, &f);
        else if (field_is(&f, "Reply-To"))
            add_addresses(env, &env->reply_to, &f);
        else if (field_is(&f, "To"))
            add_addresses(env, &env->to, &f);
        else if (field_is(&f, "Cc"))
            add_addresses(env, &env->cc, &f);
        else if (field_is(&f, "Bcc"))
            add_addresses(env, &env->bcc, &f);
    }
}

static void envelope_free(struct envelope *env)
{
    mime_address_free(env->from);
    mime_address_free(env->sender);
    mime_address_free(env->reply_to);
    mime_address_free(env->to);
    mime_address_free(env->cc);
    mime_address_free(env->bcc);
}

static int nul_to_fffd(const char *s, size_t len, struct strbuf *out)
{
    size_t run = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\0')
            continue;
        if (strbuf_append(out, s + run, i - run) < 0 ||
            strbuf_append(out, "\xef\xbf\xbd", 3) < 0)
            return -1;
        run = i + 1;
    }
    return strbuf_append(out, s + run, len - run);
}

static void put_field(struct writer *w, const struct mime_header_field *f,
                      bool human)
{
    struct strbuf v;

    if (f == NULL) {
        puts_(w, "NIL");
        return;
    }
    strbuf_init(&v, f->value_len * 3 + 64);
    /* the Subject keeps its line breaks: removing them is a change that
     * makes Dovecot send a literal */
    if (human ? nul_to_fffd(f->value, f->value_len, &v) < 0
              : mime_header_unfold(f->value, f->value_len, true, &v) < 0) {
        w->err = true;
    } else if (human) {
        put_human(w, v.data != NULL ? v.data : "", v.len);
    } else {
        put_nstring(w, v.data != NULL ? v.data : "");
    }
    strbuf_free(&v);
}

/* A group start is (NIL NIL "name" NIL), its end (NIL NIL NIL NIL). */
static void put_addresses(struct writer *w, const struct mime_address *a)
{
    if (a == NULL) {
        puts_(w, "NIL");
        return;
    }
    put(w, "(", 1);
    for (; a != NULL; a = a->next) {
        put(w, "(", 1);
        if (a->name == NULL)
            puts_(w, "NIL");
        else
            put_human(w, a->name, strlen(a->name));
        put(w, " ", 1);
        put_nstring(w, a->route);
        put(w, " ", 1);
        put_nstring(w, a->mailbox);
        put(w, " ", 1);
        put_nstring(w, a->domain);
        put(w, ")", 1);
    }
    put(w, ")", 1);
}

static void put_envelope(struct writer *w, const struct mime_part *part)
{
    struct envelope env;

    envelope_collect(&env, w->msg, part);
    if (env.oom)
        w->err = true;
    put_field(w, env.date, false);
    put(w, " ", 1);
    put_field(w, env.subject, true);
    put(w, " ", 1);
    put_addresses(w, env.from);
    put(w, " ", 1);
    put_addresses(w, env.sender != NULL ? env.sender : env.from);
    put(w, " ", 1);
    put_addresses(w, env.reply_to != NULL ? env.reply_to : env.from);
    put(w, " ", 1);
    put_addresses(w, env.to);
    put(w, " ", 1);
    put_addresses(w, env.cc);
    put(w, " ", 1);
    put_addresses(w, env.bcc);
    put(w, " ", 1);
    put_field(w, env.in_reply_to, false);
    put(w, " ", 1);
    put_field(w, env.message_id, false);
    envelope_free(&env);
}

/* ---- BODYSTRUCTURE ---- */

static void put_part(struct writer *w, const struct mime_part *part);

/* A multipart without parts is not allowed: show one empty text part. */
static void put_empty_text(struct writer *w)
{
    puts_(w, EMPTY_TEXT_PART);
    puts_(w, w->ext ? " NIL NIL NIL NIL)" : ")");
}

static void put_multipart(struct writer *w, const struct mime_part *part)
{
    if (part->children == NULL)
        put_empty_text(w);
    for (const struct mime_part *c = part->children; c != NULL; c = c->next)
        put_part(w, c);
    put(w, " ", 1);
    put_nstring(w, part->subtype);
    if (!w->ext)
        return;
    put(w, " ", 1);
    put_params(w, part->params, part->param_count, false);
    put_ext_common(w, part);
}

/* A part whose Content-Type says multipart or message/rfc822 but that
 * was not parsed as one (no boundary after "multipart" alone, a limit):
 * shown as application/octet-stream, as Dovecot does, so that the type
 * never promises parts that are not there. */
static bool is_opaque(const struct mime_part *part)
{
    if (part->flags & MIME_PART_OVERFLOW)
        return true;
    if (part->type == NULL)
        return false;
    return strcasecmp(part->type, "multipart") == 0 ||
           (strcasecmp(part->type, "message") == 0 &&
            strcasecmp(part->subtype, "rfc822") == 0);
}

static void put_basic(struct writer *w, const struct mime_part *part)
{
    bool text = false;

    if (part->flags & MIME_PART_MESSAGE) {
        puts_(w, "\"message\" \"rfc822\"");
    } else if (is_opaque(part)) {
        puts_(w, "\"application\" \"octet-stream\"");
    } else if (part->type == NULL) {
        text = true;
        puts_(w, "\"text\" \"plain\"");
    } else {
        text = strcasecmp(part->type, "text") == 0;
        put_nstring(w, part->type);
        put(w, " ", 1);
        put_nstring(w, part->subtype);
    }
    put(w, " ", 1);
    put_params(w, part->params, part->param_count, text);
    put(w, " ", 1);
    put_nstring(w, part->id);
    put(w, " ", 1);
    put_nstring(w, part->description);
    put(w, " ", 1);
    if (part->encoding != NULL)
        put_nstring(w, part->encoding);
    else
        puts_(w, "\"7bit\"");
    put(w, " ", 1);
    putf_size(w, part->body_vsize);
    if (text) {
        put(w, " ", 1);
        putf_size(w, part->body_lines);
    } else if (part->flags & MIME_PART_MESSAGE) {
        put(w, " (", 2);
        if (part->children != NULL)
            put_envelope(w, part->children);
        else
            puts_(w, EMPTY_ENVELOPE);
        put(w, ") ", 2);
        if (part->children != NULL)
            put_part(w, part->children);
        else
            put_empty_text(w);
        put(w, " ", 1);
        putf_size(w, part->body_lines);
    }
    if (!w->ext)
        return;
    put(w, " ", 1);
    put_nstring(w, part->md5);
    put_ext_common(w, part);
}

static void put_part(struct writer *w, const struct mime_part *part)
{
    put(w, "(", 1);
    if (part->flags & MIME_PART_MULTIPART)
        put_multipart(w, part);
    else
        put_basic(w, part);
    put(w, ")", 1);
}

/* A message that is one plain us-ascii 7bit text part is shown in the
 * canonical lower-case form whatever the case of its header: Dovecot
 * caches such messages as a flag and rebuilds the string. */
static bool is_plain_7bit(const struct mime_part *p)
{
    if (!(p->flags & MIME_PART_TEXT) || p->children != NULL ||
        (p->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE)))
        return false;
    if (p->subtype != NULL && strcasecmp(p->subtype, "plain") != 0)
        return false;
    if (p->param_count > 1 ||
        (p->param_count == 1 && (strcasecmp(p->params[0].name, "charset") != 0 ||
                                 strcasecmp(p->params[0].value, "us-ascii") != 0)))
        return false;
    if (p->encoding != NULL && strcasecmp(p->encoding, "7bit") != 0)
        return false;
    return p->id == NULL && p->description == NULL && p->md5 == NULL &&
           p->disposition == NULL && p->language_count == 0 && p->location == NULL;
}

int imap_bodystructure_write(const struct mime_message *msg,
                             const struct mime_part *part, bool extended,
                             struct strbuf *out)
{
    struct writer w = { .out = out, .msg = msg, .ext = extended };

    if (part == msg->root && is_plain_7bit(part)) {
        puts_(&w, TEXT_PLAIN_HEAD);
        putf_size(&w, part->body_vsize);
        put(&w, " ", 1);
        putf_size(&w, part->body_lines);
        puts_(&w, extended ? " NIL NIL NIL NIL)" : ")");
        return w.err ? -1 : 0;
    }
    put_part(&w, part);
    return w.err ? -1 : 0;
}

int imap_envelope_write(const struct mime_message *msg,
                        const struct mime_part *part, struct strbuf *out)
{
    struct writer w = { .out = out, .msg = msg };

    put(&w, "(", 1);
    put_envelope(&w, part);
    put(&w, ")", 1);
    return w.err ? -1 : 0;
}

const struct mime_part *imap_section_part(const struct mime_message *msg,
                                          const char *section)
{
    const struct mime_part *part = msg->root;
    bool is_message = true;     /* part is a message whose parts we number */

    while (*section != '\0') {
        char *end;
        unsigned long n = strtoul(section, &end, 10);
        if (end == section || n == 0 || (*end != '\0' && *end != '.') ||
            (*end == '.' && end[1] == '\0'))
            return NULL;
        section = *end == '.' ? end + 1 : end;
        if (!is_message) {
            /* going below a part: it must be a multipart or a message */
            if ((part->flags & MIME_PART_MESSAGE) && part->children != NULL) {
                part = part->children;
                is_message = true;
            } else if (!(part->flags & MIME_PART_MULTIPART)) {
                return NULL;
            }
        }
        if (part->flags & MIME_PART_MULTIPART) {
            part = part->children;
            while (part != NULL && --n > 0)
                part = part->next;
            if (part == NULL)
                return NULL;
        } else if (!is_message || n != 1) {
            return NULL;    /* a single-part message has only part 1 */
        }
        is_message = false;
    }
    return part;
}
