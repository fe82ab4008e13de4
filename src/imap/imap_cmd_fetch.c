/*
 * FETCH and UID FETCH (RFC 9051 6.4.5, 7.5.2; RFC 3501 6.4.5) with
 * BINARY (RFC 3516), CONDSTORE's MODSEQ and CHANGEDSINCE (RFC 7162 3.1.4)
 * and QRESYNC's VANISHED modifier (RFC 7162 3.2.6).
 *
 * Each message's response is built in memory and then queued: its file
 * is mapped, parsed by the MIME engine only when an item needs the
 * structure, and BODYSTRUCTURE/ENVELOPE come from imap_bodystructure.c
 * (byte-identical to Dovecot).
 */
#include <ctype.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "imap/imap_bodystructure.h"
#include "imap/imap_int.h"
#include "mime/mime.h"
#include "mime/mime_codec.h"

enum fa_type {
    FA_FLAGS, FA_INTERNALDATE, FA_SIZE, FA_ENVELOPE, FA_BODY, FA_BODYSTRUCTURE, FA_UID,
    FA_MODSEQ, FA_SECTION, FA_BINARY, FA_BINARY_SIZE
};
enum fa_text { SEC_ALL, SEC_HEADER, SEC_FIELDS, SEC_FIELDS_NOT, SEC_TEXT, SEC_MIME };

struct fetch_att {
    enum fa_type type;
    bool peek;
    char part[128];
    enum fa_text text;
    char **fields;
    size_t n_fields;
    bool partial;
    uint32_t origin, count;
    char *label;                /* name in the response, without <origin> */
};

#define FETCH_ATTS_MAX 64

struct fetch_ctx {
    struct imap_cmd *c;
    struct fetch_att atts[FETCH_ATTS_MAX];
    int n;
    bool set_seen, need_uid, need_modseq;
    uint64_t changedsince;
    bool vanished;
    const uint32_t *uids;
    size_t n_uids;
    const uint32_t *seen_changed;       /* messages whose \Seen we set */
    size_t n_seen_changed;
    bool failed;
};

/* ---- parsing ---- */

static bool is_num_part(const char *s)
{
    return *s >= '1' && *s <= '9';
}

/* "1.2.HEADER.FIELDS" -> part "1.2", text. */
static int parse_section_spec(struct imap_cmd *c, struct fetch_att *a, bool binary)
{
    struct imap_parser *ps = &c->ps;
    char *spec = NULL;
    if (!imap_parse_peek(ps, ']') && imap_parse_atom(ps, &spec) < 0)
        return -1;
    a->text = SEC_ALL;
    const char *p = spec ? spec : "";
    size_t plen = 0;
    while (is_num_part(p + plen)) {
        while (p[plen] >= '0' && p[plen] <= '9')
            plen++;
        if (p[plen] != '.')
            break;
        if (!is_num_part(p + plen + 1))
            break;
        plen++;
    }
    if (plen >= sizeof(a->part)) {
        ps->error = "section too long";
        return -1;
    }
    memcpy(a->part, p, plen);
    a->part[plen] = '\0';
    const char *t = p + plen;
    if (*t == '.' && plen > 0)
        t++;
    else if (*t != '\0' && plen > 0) {
        ps->error = "bad section";
        return -1;
    }
    if (*t == '\0')
        a->text = SEC_ALL;
    else if (binary)
        return (ps->error = "bad BINARY section"), -1;
    else if (strcasecmp(t, "HEADER") == 0)
        a->text = SEC_HEADER;
    else if (strcasecmp(t, "TEXT") == 0)
        a->text = SEC_TEXT;
    else if (strcasecmp(t, "MIME") == 0 && plen > 0)
        a->text = SEC_MIME;
    else if (strcasecmp(t, "HEADER.FIELDS") == 0)
        a->text = SEC_FIELDS;
    else if (strcasecmp(t, "HEADER.FIELDS.NOT") == 0)
        a->text = SEC_FIELDS_NOT;
    else {
        ps->error = "bad section";
        return -1;
    }
    struct strbuf label;
    strbuf_init(&label, 65536);
    strbuf_printf(&label, "%s[%s%s%s", a->type == FA_BINARY ? "BINARY"
                                       : a->type == FA_BINARY_SIZE ? "BINARY.SIZE" : "BODY",
                  a->part, plen && *t ? "." : "", t);
    if (a->text == SEC_FIELDS || a->text == SEC_FIELDS_NOT) {
        if (imap_parse_sp(ps) < 0 || imap_parse_open(ps) < 0) {
            strbuf_free(&label);
            return -1;
        }
        size_t alloc = 8;
        a->fields = imap_pool_alloc(&c->pool, alloc * sizeof(char *));
        strbuf_append(&label, " (", 2);
        do {
            char *f;
            size_t fl;
            if (imap_parse_astring(ps, &f, &fl) < 0 || a->n_fields >= 256) {
                strbuf_free(&label);
                return -1;
            }
            if (a->n_fields == alloc) {
                char **nf = imap_pool_alloc(&c->pool, alloc * 2 * sizeof(char *));
                if (nf == NULL)
                    break;
                memcpy(nf, a->fields, alloc * sizeof(char *));
                a->fields = nf;
                alloc *= 2;
            }
            a->fields[a->n_fields++] = f;
            if (a->n_fields > 1)
                strbuf_append(&label, " ", 1);
            for (char *q = f; *q; q++)
                *q = (char)toupper((unsigned char)*q);
            imap_write_astring(&label, f);
        } while (imap_parse_char(ps, ' '));
        strbuf_append(&label, ")", 1);
        if (imap_parse_close(ps) < 0) {
            strbuf_free(&label);
            return -1;
        }
    }
    strbuf_append(&label, "]", 1);
    a->label = imap_pool_strndup(&c->pool, label.data, label.len);
    strbuf_free(&label);
    if (!imap_parse_char(ps, ']')) {
        ps->error = "expected ]";
        return -1;
    }
    if (imap_parse_char(ps, '<')) {
        a->partial = true;
        if (imap_parse_number(ps, &a->origin) < 0 || !imap_parse_char(ps, '.') ||
            imap_parse_nz_number(ps, &a->count) < 0 || !imap_parse_char(ps, '>')) {
            ps->error = "bad partial";
            return -1;
        }
    }
    return 0;
}

static int add_att(struct fetch_ctx *x, enum fa_type type)
{
    if (x->n >= FETCH_ATTS_MAX)
        return -1;
    memset(&x->atts[x->n], 0, sizeof(x->atts[0]));
    x->atts[x->n].type = type;
    x->n++;
    return 0;
}

static int add_simple_section(struct fetch_ctx *x, enum fa_text text, bool peek, const char *label)
{
    if (add_att(x, FA_SECTION) < 0)
        return -1;
    struct fetch_att *a = &x->atts[x->n - 1];
    a->text = text;
    a->peek = peek;
    a->label = (char *)label;
    if (!peek)
        x->set_seen = true;
    return 0;
}

static int parse_att(struct fetch_ctx *x)
{
    struct imap_cmd *c = x->c;
    struct imap_parser *ps = &c->ps;
    char *name;
    if (imap_parse_atom_stop(ps, "[<", &name) < 0)
        return -1;
    static const struct { const char *name; enum fa_type type; } simple[] = {
        { "FLAGS", FA_FLAGS }, { "INTERNALDATE", FA_INTERNALDATE }, { "RFC822.SIZE", FA_SIZE },
        { "ENVELOPE", FA_ENVELOPE }, { "BODYSTRUCTURE", FA_BODYSTRUCTURE }, { "UID", FA_UID },
        { "MODSEQ", FA_MODSEQ },
    };
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
        if (strcasecmp(name, simple[i].name) == 0) {
            if (simple[i].type == FA_MODSEQ)
                c->s->enabled |= IMAP_EN_CONDSTORE;
            return add_att(x, simple[i].type);
        }
    if (strcasecmp(name, "ALL") == 0 || strcasecmp(name, "FAST") == 0 ||
        strcasecmp(name, "FULL") == 0) {
        int rc = add_att(x, FA_FLAGS) | add_att(x, FA_INTERNALDATE) | add_att(x, FA_SIZE);
        if (strcasecmp(name, "FAST") != 0)
            rc |= add_att(x, FA_ENVELOPE);
        if (strcasecmp(name, "FULL") == 0)
            rc |= add_att(x, FA_BODY);
        return rc;
    }
    if (strcasecmp(name, "RFC822") == 0)
        return add_simple_section(x, SEC_ALL, false, "RFC822");
    if (strcasecmp(name, "RFC822.HEADER") == 0)
        return add_simple_section(x, SEC_HEADER, true, "RFC822.HEADER");
    if (strcasecmp(name, "RFC822.TEXT") == 0)
        return add_simple_section(x, SEC_TEXT, false, "RFC822.TEXT");
    bool peek = false;
    enum fa_type type;
    if (strcasecmp(name, "BODY") == 0 || (peek = strcasecmp(name, "BODY.PEEK") == 0))
        type = FA_SECTION;
    else if (strcasecmp(name, "BINARY") == 0 || (peek = strcasecmp(name, "BINARY.PEEK") == 0))
        type = FA_BINARY;
    else if (strcasecmp(name, "BINARY.SIZE") == 0)
        type = FA_BINARY_SIZE;
    else {
        ps->error = "unknown FETCH item";
        return -1;
    }
    if (!imap_parse_char(ps, '[')) {
        if (type == FA_SECTION && !peek)
            return add_att(x, FA_BODY);
        ps->error = "expected [";
        return -1;
    }
    if (add_att(x, type) < 0)
        return -1;
    struct fetch_att *a = &x->atts[x->n - 1];
    a->peek = peek || type == FA_BINARY_SIZE;
    if (!a->peek)
        x->set_seen = true;
    if (parse_section_spec(c, a, type != FA_SECTION) < 0)
        return -1;
    if (type == FA_BINARY_SIZE && a->partial) {
        ps->error = "BINARY.SIZE takes no partial";
        return -1;
    }
    return 0;
}

static int parse_modifiers(struct fetch_ctx *x)
{
    struct imap_parser *ps = &x->c->ps;
    if (!imap_parse_char(ps, ' '))
        return 0;
    if (imap_parse_open(ps) < 0)
        return -1;
    do {
        char *m;
        if (imap_parse_atom(ps, &m) < 0)
            return -1;
        if (strcasecmp(m, "CHANGEDSINCE") == 0) {
            if (imap_parse_sp(ps) < 0 || imap_parse_number64(ps, &x->changedsince) < 0)
                return -1;
            x->need_modseq = true;
            x->c->s->enabled |= IMAP_EN_CONDSTORE;
        } else if (strcasecmp(m, "VANISHED") == 0 && x->c->uid &&
                   (x->c->s->enabled & IMAP_EN_QRESYNC)) {
            x->vanished = true;
        } else {
            ps->error = "unknown FETCH modifier";
            return -1;
        }
    } while (imap_parse_char(ps, ' '));
    if (x->vanished && x->changedsince == 0) {
        ps->error = "VANISHED needs CHANGEDSINCE";
        return -1;
    }
    return imap_parse_close(ps);
}

/* ---- sections ---- */

struct fetch_msg {
    const char *data;
    size_t len;
    void *map;
    struct mime_message *mime;
};

static struct mime_message *msg_mime(struct fetch_msg *fm)
{
    if (fm->mime == NULL)
        fm->mime = mime_parse(fm->data, fm->len);
    return fm->mime;
}

static bool field_listed(const struct fetch_att *a, const char *name, size_t len)
{
    for (size_t i = 0; i < a->n_fields; i++)
        if (strlen(a->fields[i]) == len && strncasecmp(a->fields[i], name, len) == 0)
            return true;
    return false;
}

static void header_fields(struct fetch_msg *fm, const struct mime_part *p,
                          const struct fetch_att *a, struct strbuf *out)
{
    struct mime_header_iter it;
    struct mime_header_field f;
    mime_header_iter_init(&it, fm->data, p->body_offset, p->hdr_offset);
    while (mime_header_iter_next(&it, &f)) {
        if (f.value == NULL)
            continue;
        bool listed = field_listed(a, f.name, f.name_len);
        if (listed == (a->text == SEC_FIELDS))
            strbuf_append(out, fm->data + f.offset, f.end - f.offset);
    }
    strbuf_append(out, "\r\n", 2);
}

/* The bytes a BODY[...] item designates: a range of the message, or
 * (HEADER.FIELDS) built into tmp. */
static void section_content(struct fetch_msg *fm, const struct fetch_att *a, const char **p_r,
                            size_t *len_r, struct strbuf *tmp)
{
    *p_r = "";
    *len_r = 0;
    if (a->part[0] == '\0' && a->text == SEC_ALL) {
        *p_r = fm->data;
        *len_r = fm->len;
        return;
    }
    struct mime_message *msg = msg_mime(fm);
    if (msg == NULL)
        return;
    const struct mime_part *part = a->part[0] ? imap_section_part(msg, a->part) : msg->root;
    if (part == NULL)
        return;
    const struct mime_part *target = part;
    if (a->part[0] && a->text != SEC_ALL && a->text != SEC_MIME) {
        if (!(part->flags & MIME_PART_MESSAGE) || part->children == NULL)
            return;
        target = part->children;
    }
    size_t from = 0, to = 0;
    switch (a->text) {
    case SEC_ALL:
        from = target->body_offset;
        to = target->body_end;
        break;
    case SEC_HEADER:
    case SEC_MIME:
        from = target->hdr_offset;
        to = target->body_offset;
        break;
    case SEC_TEXT:
        from = target->body_offset;
        to = target->body_end;
        break;
    case SEC_FIELDS:
    case SEC_FIELDS_NOT:
        header_fields(fm, target, a, tmp);
        *p_r = tmp->data ? tmp->data : "";
        *len_r = tmp->len;
        return;
    }
    if (to > fm->len)
        to = fm->len;
    if (from < to) {
        *p_r = fm->data + from;
        *len_r = to - from;
    }
}

/* BINARY[part]: the part's body with its transfer encoding undone. */
static int binary_content(struct fetch_msg *fm, const struct fetch_att *a, struct strbuf *tmp,
                          const char **p_r, size_t *len_r)
{
    if (a->part[0] == '\0') {
        *p_r = fm->data;
        *len_r = fm->len;
        return 0;
    }
    struct mime_message *msg = msg_mime(fm);
    const struct mime_part *part = msg ? imap_section_part(msg, a->part) : NULL;
    if (part == NULL) {
        *p_r = "";
        *len_r = 0;
        return 0;
    }
    if (part->encoding && strcasecmp(part->encoding, "base64") != 0 &&
        strcasecmp(part->encoding, "quoted-printable") != 0 &&
        strcasecmp(part->encoding, "7bit") != 0 && strcasecmp(part->encoding, "8bit") != 0 &&
        strcasecmp(part->encoding, "binary") != 0)
        return -1;
    if (mime_part_decode(msg, part, false, tmp) < 0)
        return -1;
    *p_r = tmp->data ? tmp->data : "";
    *len_r = tmp->len;
    return 0;
}

static void write_literal(struct strbuf *out, const char *p, size_t len, bool allow8)
{
    bool nul = allow8 && memchr(p, '\0', len) != NULL;
    strbuf_printf(out, "%s{%zu}\r\n", nul ? "~" : "", len);
    strbuf_append(out, p, len);
}

static void write_section(struct fetch_ctx *x, struct fetch_msg *fm, const struct fetch_att *a,
                          struct strbuf *out)
{
    struct strbuf tmp;
    strbuf_init(&tmp, 2 * (size_t)x->c->s->cfg->message_size + 65536);
    const char *p;
    size_t len;
    if (a->type == FA_SECTION) {
        section_content(fm, a, &p, &len, &tmp);
    } else if (binary_content(fm, a, &tmp, &p, &len) < 0) {
        x->failed = true;
        strbuf_free(&tmp);
        return;
    }
    if (a->type == FA_BINARY_SIZE) {
        strbuf_printf(out, "%s %zu", a->label, len);
        strbuf_free(&tmp);
        return;
    }
    if (a->partial) {
        size_t o = a->origin > len ? len : a->origin;
        size_t n = len - o < a->count ? len - o : a->count;
        p += o;
        len = n;
        strbuf_printf(out, "%s<%u> ", a->label, a->origin);
    } else {
        strbuf_printf(out, "%s ", a->label);
    }
    write_literal(out, p, len, a->type == FA_BINARY);
    strbuf_free(&tmp);
}

/* ---- one message ---- */

static bool uid_listed(const uint32_t *uids, size_t n, uint32_t uid)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (uids[mid] == uid)
            return true;
        if (uids[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static bool needs_content(const struct fetch_ctx *x)
{
    for (int i = 0; i < x->n; i++)
        if (x->atts[i].type >= FA_ENVELOPE && x->atts[i].type != FA_UID &&
            x->atts[i].type != FA_MODSEQ)
            return true;
    return false;
}

static int msg_map(struct imap_session *s, const struct store_imap_msg *m, struct fetch_msg *fm)
{
    memset(fm, 0, sizeof(*fm));
    int fd = store_imap_msg_open(imap_store(s), m);
    if (fd < 0)
        return -1;
    off_t size = lseek(fd, 0, SEEK_END);
    if (size > 0) {
        fm->map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (fm->map == MAP_FAILED) {
            close(fd);
            fm->map = NULL;
            return -1;
        }
        fm->data = fm->map;
        fm->len = (size_t)size;
    } else {
        fm->data = "";
    }
    close(fd);
    return 0;
}

static void msg_unmap(struct fetch_msg *fm)
{
    if (fm->mime)
        mime_message_free(fm->mime);
    if (fm->map)
        munmap(fm->map, fm->len);
}

static void write_att(struct fetch_ctx *x, const struct store_imap_msg *m, struct fetch_msg *fm,
                      const struct fetch_att *a, struct strbuf *out)
{
    struct imap_session *s = x->c->s;
    char date[64];
    switch (a->type) {
    case FA_FLAGS:
        strbuf_append(out, "FLAGS ", 6);
        imap_flags_write(s, m, out);
        break;
    case FA_INTERNALDATE:
        imap_format_date_time(m->internaldate, date, sizeof(date));
        strbuf_printf(out, "INTERNALDATE \"%s\"", date);
        break;
    case FA_SIZE:
        strbuf_printf(out, "RFC822.SIZE %llu", (unsigned long long)fm->len);
        break;
    case FA_ENVELOPE:
        strbuf_append(out, "ENVELOPE ", 9);
        if (msg_mime(fm) == NULL || imap_envelope_write(fm->mime, fm->mime->root, out) < 0)
            x->failed = true;
        break;
    case FA_BODY:
    case FA_BODYSTRUCTURE:
        strbuf_printf(out, "%s ", a->type == FA_BODY ? "BODY" : "BODYSTRUCTURE");
        if (msg_mime(fm) == NULL ||
            imap_bodystructure_write(fm->mime, fm->mime->root, a->type == FA_BODYSTRUCTURE, out) < 0)
            x->failed = true;
        break;
    case FA_UID:
    case FA_MODSEQ:
        break; /* written first */
    case FA_SECTION:
    case FA_BINARY:
    case FA_BINARY_SIZE:
        write_section(x, fm, a, out);
        break;
    }
}

static int fetch_one(const struct store_imap_msg *m, void *arg)
{
    struct fetch_ctx *x = arg;
    struct imap_session *s = x->c->s;
    if (!uid_listed(x->uids, x->n_uids, m->uid))
        return 0;
    if (x->changedsince && m->modseq <= x->changedsince)
        return 0;
    uint32_t seq = imap_view_seq(s->sel, m->uid);
    if (seq == 0)
        return 0;
    struct fetch_msg fm;
    memset(&fm, 0, sizeof(fm));
    fm.data = "";
    fm.len = (size_t)m->size;
    if (needs_content(x) && msg_map(s, m, &fm) < 0) {
        /* expunged by another session meanwhile: RFC 9051 allows NO */
        x->failed = true;
        return 0;
    }
    struct strbuf out;
    strbuf_init(&out, 4 * (size_t)s->cfg->message_size + (1u << 20));
    strbuf_printf(&out, "* %u FETCH (", seq);
    const char *sp = "";
    if (x->need_uid) {
        strbuf_printf(&out, "UID %u", m->uid);
        sp = " ";
    }
    bool flags_done = false;
    for (int i = 0; i < x->n; i++) {
        const struct fetch_att *a = &x->atts[i];
        if (a->type == FA_UID || a->type == FA_MODSEQ)
            continue;
        strbuf_append(&out, sp, strlen(sp));
        write_att(x, m, &fm, a, &out);
        flags_done |= a->type == FA_FLAGS;
        sp = " ";
    }
    if (!flags_done && uid_listed(x->seen_changed, x->n_seen_changed, m->uid)) {
        strbuf_printf(&out, "%sFLAGS ", sp);
        imap_flags_write(s, m, &out);
        sp = " ";
    }
    if (x->need_modseq)
        strbuf_printf(&out, "%sMODSEQ (%llu)", sp, (unsigned long long)m->modseq);
    strbuf_append(&out, ")\r\n", 3);
    if (out.data)
        imap_send_raw(s, out.data, out.len);
    else
        x->failed = true;
    strbuf_free(&out);
    msg_unmap(&fm);
    return 0;
}

/* ---- the command ---- */

struct seen_ctx {
    uint32_t *changed;
    size_t n;
};

static void seen_cb(const struct store_imap_msg *m, enum store_imap_flag_result r, void *arg)
{
    struct seen_ctx *sc = arg;
    if (r == STORE_IMAP_CHANGED)
        sc->changed[sc->n++] = m->uid;
}

/* FETCH's messages, after \Seen was set when needed. */
static void fetch_finish(struct imap_cmd *c, struct fetch_ctx *x)
{
    struct imap_session *s = c->s;
    const uint32_t *uids = x->uids;
    size_t n = x->n_uids;
    if (n > 0 && store_imap_msgs(imap_store(s), s->sel->id, uids[0], uids[n - 1], fetch_one, x) < 0) {
        imap_no_store(c, "Cannot fetch");
        return;
    }
    if (x->failed)
        imap_no(c, "Some messages could not be fetched");
    else
        imap_ok(c, "Fetch completed.");
}

/* Setting \Seen (BODY[] without PEEK) runs on the pool (imap_cmd_defer). */
struct seen_job {
    struct fetch_ctx *x;
    struct store *store;
    int64_t mailbox;
    struct seen_ctx sc;
    long rc;
    uint64_t modseq;
};

static void fetch_seen_work(struct imap_cmd *c)
{
    struct seen_job *j = c->job;
    j->rc = store_imap_flags(j->store, j->mailbox, j->x->uids, j->x->n_uids, STORE_IMAP_FLAGS_ADD,
                             STORE_FLAG_SEEN, "", 0, seen_cb, &j->sc, &j->modseq);
}

static void fetch_seen_done(struct imap_cmd *c)
{
    struct seen_job *j = c->job;
    if (j->rc >= 0) {
        imap_view_own_modseq(c->s->sel, j->modseq);
        j->x->seen_changed = j->sc.changed;
        j->x->n_seen_changed = j->sc.n;
    }
    fetch_finish(c, j->x);
}

static void fetch_vanished(struct fetch_ctx *x, const struct imap_seqset *set)
{
    struct imap_session *s = x->c->s;
    uint32_t *gone = NULL;
    long n = store_imap_vanished(imap_store(s), s->sel->id, x->changedsince, &gone);
    size_t k = 0;
    uint32_t star = s->sel->n ? s->sel->uids[s->sel->n - 1] : 0;
    for (long i = 0; i < n; i++)
        if (imap_seqset_contains(set, gone[i], star))
            gone[k++] = gone[i];
    if (k > 0) {
        struct strbuf sb;
        strbuf_init(&sb, 1u << 24);
        strbuf_append(&sb, "* VANISHED (EARLIER) ", 21);
        imap_uidset_write(&sb, gone, k);
        strbuf_append(&sb, "\r\n", 2);
        if (sb.data)
            imap_send_raw(s, sb.data, sb.len);
        strbuf_free(&sb);
    }
    free(gone);
}

void imap_cmd_fetch(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    struct imap_parser *ps = &c->ps;
    struct fetch_ctx *x = imap_pool_alloc(&c->pool, sizeof(*x));
    struct imap_seqset set;
    if (x == NULL) {
        imap_no(c, "[LIMIT] Out of memory");
        return;
    }
    x->c = c;
    if (imap_parse_sp(ps) < 0 || imap_parse_seqset(ps, &set) < 0 || imap_parse_sp(ps) < 0)
        goto bad;
    if (imap_parse_peek(ps, '(')) {
        imap_parse_open(ps);
        do {
            if (parse_att(x) < 0)
                goto bad;
        } while (imap_parse_char(ps, ' '));
        if (imap_parse_close(ps) < 0)
            goto bad;
    } else if (parse_att(x) < 0) {
        goto bad;
    }
    if (parse_modifiers(x) < 0 || imap_parse_end(ps) < 0)
        goto bad;
    for (int i = 0; i < x->n; i++) {
        x->need_uid |= x->atts[i].type == FA_UID;
        x->need_modseq |= x->atts[i].type == FA_MODSEQ;
    }
    x->need_uid |= c->uid;
    uint32_t *uids;
    size_t n;
    if (imap_view_resolve(c, &set, c->uid, &uids, &n) < 0)
        return;
    x->uids = uids;
    x->n_uids = n;
    if (x->vanished)
        fetch_vanished(x, &set);
    if (x->set_seen && !s->sel->readonly && n > 0) {
        struct seen_job *j = imap_pool_alloc(&c->pool, sizeof(*j));
        uint32_t *changed = imap_pool_alloc(&c->pool, (n + 1) * sizeof(uint32_t));
        if (j != NULL && changed != NULL) {
            /* setting \Seen is a store write: on the pool */
            *j = (struct seen_job){ .x = x, .store = imap_store(s), .mailbox = s->sel->id,
                                    .sc = { changed, 0 } };
            imap_cmd_defer(c, fetch_seen_work, fetch_seen_done, j);
            return;
        }
    }
    fetch_finish(c, x);
    return;
bad:
    imap_bad_syntax(c);
}
