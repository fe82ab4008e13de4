/*
 * Address lists (RFC 5322 3.4, with RFC 822's routes and obsolete
 * phrases).  Mail in the wild breaks every rule here, so the parser never
 * gives up on a list: a broken entry becomes an entry with the missing
 * pieces marked, and parsing stops only where the list cannot be resumed.
 * The recovery rules are Dovecot's (message-address.c) so that ENVELOPE
 * matches it; the code is ours.
 */
#include <stdlib.h>
#include <string.h>
#include "mime/mime.h"
#include "mime/mime_private.h"

struct aparser {
    struct mime_lex lx;
    struct strbuf str;          /* scratch for the current token */
    struct strbuf comment;      /* text of the last comment seen */
    bool fill;
    struct mime_address cur;
    struct mime_address *head, **tail;
    bool oom;
};

static char *dup_n(struct aparser *ap, const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p == NULL) {
        ap->oom = true;
        return NULL;
    }
    if (n > 0)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static char *dup_s(struct aparser *ap, const char *s) { return dup_n(ap, s, strlen(s)); }

static char *dup_buf(struct aparser *ap, const struct strbuf *sb)
{
    return dup_n(ap, sb->data != NULL ? sb->data : "", sb->len);
}

static void set(char **field, char *value)
{
    free(*field);
    *field = value;
}

static void clear_cur(struct aparser *ap)
{
    set(&ap->cur.name, NULL);
    set(&ap->cur.route, NULL);
    set(&ap->cur.mailbox, NULL);
    set(&ap->cur.domain, NULL);
    ap->cur.invalid = false;
}

static void add_address(struct aparser *ap)
{
    struct mime_address *a = malloc(sizeof(*a));

    if (a == NULL) {
        ap->oom = true;
        clear_cur(ap);
        return;
    }
    *a = ap->cur;
    a->next = NULL;
    memset(&ap->cur, 0, sizeof(ap->cur));
    *ap->tail = a;
    ap->tail = &a->next;
}

/* A mailbox entry always has a mailbox and a domain. */
static void add_fixed_address(struct aparser *ap)
{
    if (ap->cur.mailbox == NULL) {
        ap->cur.mailbox = dup_s(ap, ap->fill ? "MISSING_MAILBOX" : "");
        ap->cur.invalid = true;
    }
    if (ap->cur.domain == NULL || ap->cur.domain[0] == '\0') {
        set(&ap->cur.domain, dup_s(ap, ap->fill ? "MISSING_DOMAIN" : ""));
        ap->cur.invalid = true;
    }
    add_address(ap);
}

/* A local part in the dotted forms mail really uses: leading, trailing
 * and doubled dots pass (".b", "a..b", "a."), white space after a dot does
 * not (Dovecot's "non-strict dots", which its ENVELOPE uses). */
static int nonstrict_dot_atom(struct aparser *ap)
{
    struct mime_lex *lx = &ap->lx;
    int ret = -1;

    do {
        while (*lx->p == '.') {
            if (strbuf_append(&ap->str, ".", 1) < 0)
                ap->oom = true;
            if (++lx->p == lx->end)
                return 0;   /* no @domain, but the local part is fine */
            ret = 1;
        }
        if (*lx->p == '@')
            break;
        ret = mime_lex_atom(lx, &ap->str);
    } while (ret > 0 && *lx->p == '.');
    return ret;
}

static int parse_local_part(struct aparser *ap)
{
    struct mime_lex *lx = &ap->lx;
    int ret;

    strbuf_reset(&ap->str);
    if (*lx->p == '"')
        ret = mime_lex_quoted(lx, &ap->str);
    else
        ret = nonstrict_dot_atom(ap);
    if (ret < 0)
        return -1;
    set(&ap->cur.mailbox, dup_buf(ap, &ap->str));
    return ret;
}

static int parse_domain(struct aparser *ap)
{
    strbuf_reset(&ap->str);
    int ret = mime_lex_domain(&ap->lx, &ap->str);
    if (ret < 0)
        return -1;
    set(&ap->cur.domain, dup_buf(ap, &ap->str));
    return ret;
}

/* obs-route: "@" domain *("," ["@" domain]) */
static int parse_domain_list(struct aparser *ap)
{
    struct mime_lex *lx = &ap->lx;
    int ret;

    strbuf_reset(&ap->str);
    for (;;) {
        if (lx->p >= lx->end)
            return 0;
        if (*lx->p != '@')
            break;
        if (ap->str.len > 0 && strbuf_append(&ap->str, ",", 1) < 0)
            ap->oom = true;
        if (strbuf_append(&ap->str, "@", 1) < 0)
            ap->oom = true;
        if ((ret = mime_lex_domain(lx, &ap->str)) <= 0)
            return ret;
        while (mime_lex_skip_cfws(lx) > 0 && *lx->p == ',')
            lx->p++;
    }
    set(&ap->cur.route, dup_buf(ap, &ap->str));
    return 1;
}

/* "<" [route ":"] [local-part ["@" domain]] ">" */
static int parse_angle_addr(struct aparser *ap)
{
    struct mime_lex *lx = &ap->lx;

    lx->p++;
    if (mime_lex_skip_cfws(lx) <= 0)
        return -1;
    if (*lx->p == '@') {
        if (parse_domain_list(ap) > 0 && *lx->p == ':') {
            lx->p++;
        } else {
            if (ap->fill)
                set(&ap->cur.route, dup_s(ap, "INVALID_ROUTE"));
            if (lx->p >= lx->end)
                return -1;
            /* try to go on anyway */
        }
        if (mime_lex_skip_cfws(lx) <= 0)
            return -1;
    }
    if (*lx->p != '>') {    /* "<>" has neither */
        if (parse_local_part(ap) <= 0)
            return -1;
        if (*lx->p == '@' && parse_domain(ap) <= 0)
            return -1;
    }
    if (*lx->p != '>')
        return -1;
    lx->p++;
    return mime_lex_skip_cfws(lx);
}

/* [display-name] angle-addr */
static int parse_name_addr(struct aparser *ap)
{
    struct mime_lex *lx = &ap->lx;

    strbuf_reset(&ap->str);
    if (mime_lex_phrase(lx, &ap->str) <= 0 || *lx->p != '<')
        return -1;
    set(&ap->cur.name, ap->str.len > 0 ? dup_buf(ap, &ap->str) : NULL);
    if (parse_angle_addr(ap) < 0) {
        if (ap->fill)
            set(&ap->cur.domain, dup_s(ap, "SYNTAX_ERROR"));
        ap->cur.invalid = true;
    }
    return lx->p < lx->end ? 1 : 0;
}

/* local-part "@" domain; a trailing comment is taken as the name (the
 * "user@host (Real Name)" form); "user" alone is a mailbox, "some words"
 * a name. */
static int parse_addr_spec(struct aparser *ap)
{
    struct mime_lex *lx = &ap->lx;
    int ret, ret2 = -2;

    strbuf_reset(&ap->comment);
    bool quoted = *lx->p == '"';
    ret = parse_local_part(ap);
    if (ret <= 0)
        ap->cur.invalid = true;
    if (ret != 0 && lx->p < lx->end && *lx->p == '@') {
        ret2 = parse_domain(ap);
        if (ret2 <= 0)
            ret = ret2;
    }
    if (ap->comment.len > 0) {
        set(&ap->cur.name, dup_buf(ap, &ap->comment));
    } else if (ret2 == -2) {
        if (strbuf_append(&ap->str, " ", 1) < 0)
            ap->oom = true;
        size_t before = ap->str.len;
        (void)mime_lex_phrase(lx, &ap->str);
        if (ap->str.len != before) {
            set(&ap->cur.mailbox, NULL);
            set(&ap->cur.name, dup_buf(ap, &ap->str));
        } else if (!quoted) {
            set(&ap->cur.domain, dup_s(ap, ""));
        }
        ap->cur.invalid = true;
        ret = -1;
    }
    return ret;
}

static int parse_mailbox(struct aparser *ap)
{
    const unsigned char *start = ap->lx.p;
    int ret = parse_name_addr(ap);

    if (ret < 0) {
        ap->lx.p = start;
        ret = parse_addr_spec(ap);
        if (ap->cur.invalid && ap->cur.name == NULL && ap->cur.mailbox != NULL &&
            ap->cur.domain == NULL) {
            /* a lone quoted string: a name */
            ap->cur.name = ap->cur.mailbox;
            ap->cur.mailbox = NULL;
        }
    }
    if (ret < 0)
        ap->cur.invalid = true;
    add_fixed_address(ap);
    return ret;
}

/* display-name ":" [mailbox-list] ";" */
static int parse_group(struct aparser *ap)
{
    struct mime_lex *lx = &ap->lx;
    int ret;

    strbuf_reset(&ap->str);
    if (mime_lex_phrase(lx, &ap->str) <= 0 || *lx->p != ':')
        return -1;
    /* from here on it is a group, whatever follows */
    lx->p++;
    if ((ret = mime_lex_skip_cfws(lx)) <= 0)
        ap->cur.invalid = true;
    ap->cur.mailbox = dup_buf(ap, &ap->str);
    add_address(ap);
    if (ret > 0 && *lx->p != ';') {
        for (;;) {
            (void)parse_mailbox(ap);
            if (lx->p >= lx->end || *lx->p != ',')
                break;
            lx->p++;
            if (mime_lex_skip_cfws(lx) <= 0) {
                ret = -1;
                break;
            }
        }
    }
    if (ret >= 0) {
        if (lx->p >= lx->end || *lx->p != ';') {
            ret = -1;
        } else {
            lx->p++;
            ret = mime_lex_skip_cfws(lx);
        }
    }
    if (ret < 0)
        ap->cur.invalid = true;
    add_address(ap);    /* the group's end */
    return ret == 0 ? 0 : 1;
}

static int parse_address(struct aparser *ap)
{
    const unsigned char *start = ap->lx.p;
    int ret = parse_group(ap);

    if (ret < 0) {
        ap->lx.p = start;
        ret = parse_mailbox(ap);
    }
    return ret;
}

static void parse_address_list(struct aparser *ap)
{
    struct mime_lex *lx = &ap->lx;
    int ret;

    /* a bounded number of rounds: each consumes input or ends */
    while (!ap->oom) {
        if (parse_address(ap) == 0)
            break;
        if (lx->p >= lx->end || *lx->p != ',')
            break;
        lx->p++;
        if ((ret = mime_lex_skip_cfws(lx)) <= 0) {
            if (ret < 0)
                add_fixed_address(ap);  /* ends with garbage */
            break;
        }
    }
}

int mime_address_parse(const char *value, size_t len, bool fill_missing,
                       struct mime_address **list_r)
{
    struct aparser ap;

    memset(&ap, 0, sizeof(ap));
    ap.fill = fill_missing;
    ap.tail = &ap.head;
    strbuf_init(&ap.str, len * 3 + 64);
    strbuf_init(&ap.comment, len * 3 + 64);
    mime_lex_init(&ap.lx, value, len);
    ap.lx.comment = &ap.comment;
    ap.lx.nul_to_fffd = true;
    if (mime_lex_skip_cfws(&ap.lx) > 0)
        parse_address_list(&ap);
    clear_cur(&ap);
    strbuf_free(&ap.str);
    strbuf_free(&ap.comment);
    if (ap.oom || ap.lx.oom) {
        mime_address_free(ap.head);
        *list_r = NULL;
        return -1;
    }
    *list_r = ap.head;
    return 0;
}

void mime_address_free(struct mime_address *list)
{
    while (list != NULL) {
        struct mime_address *n = list->next;
        free(list->name);
        free(list->route);
        free(list->mailbox);
        free(list->domain);
        free(list);
        list = n;
    }
}
