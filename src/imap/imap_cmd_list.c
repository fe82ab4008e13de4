/* LIST and LSUB (RFC 9051 6.3.9, RFC 3501 6.3.9) with LIST-EXTENDED
 * (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE (RFC 6154) and
 * CHILDREN (RFC 3348). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_int.h"

#define SEL_SUBSCRIBED  1u
#define SEL_SPECIAL_USE 2u
#define SEL_RECURSIVE   4u
#define RET_SUBSCRIBED  1u
#define RET_CHILDREN    2u
#define RET_SPECIAL_USE 4u
#define RET_STATUS      8u
#define LIST_MAX_PATTERNS 32

struct mbox_list {
    struct store_imap_mbox *m;
    size_t n, alloc;
};

static void collect(const struct store_imap_mbox *m, void *arg)
{
    struct mbox_list *l = arg;
    if (l->n == l->alloc) {
        size_t na = l->alloc ? l->alloc * 2 : 16;
        struct store_imap_mbox *p = realloc(l->m, na * sizeof(*p));
        if (p == NULL)
            return;
        l->m = p;
        l->alloc = na;
    }
    l->m[l->n++] = *m;
}

/* RFC 3501 6.3.8: "*" matches anything, "%" anything but the separator. */
static bool match(const char *pat, const char *name)
{
    for (; *pat; pat++, name++) {
        if (*pat == '*' || *pat == '%') {
            for (const char *n = name;; n++) {
                if (match(pat + 1, n))
                    return true;
                if (*n == '\0' || (*pat == '%' && *n == IMAP_HIER_SEP))
                    return false;
            }
        }
        if (*name == '\0' || *pat != *name)
            return false;
    }
    return *name == '\0';
}

static bool match_name(const char *ref, const char *pat, const char *name)
{
    char full[STORE_IMAP_NAME_MAX * 2];
    snprintf(full, sizeof(full), "%s%s", ref, pat);
    /* INBOX matches case-insensitively */
    if (strcmp(name, "INBOX") == 0 && strncasecmp(full, "INBOX", 5) == 0) {
        char tmp[sizeof(full)];
        snprintf(tmp, sizeof(tmp), "INBOX%s", full + 5);
        if (match(tmp, name))
            return true;
    }
    return match(full, name);
}

static bool has_children(const struct mbox_list *l, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < l->n; i++)
        if (strncmp(l->m[i].name, name, len) == 0 && l->m[i].name[len] == IMAP_HIER_SEP)
            return true;
    return false;
}

static int parse_patterns(struct imap_cmd *c, char **pats, int *n_r)
{
    struct imap_parser *ps = &c->ps;
    *n_r = 0;
    if (!imap_parse_peek(ps, '(')) {
        if (imap_parse_list_mailbox(ps, &pats[0]) < 0)
            return -1;
        *n_r = 1;
        return 0;
    }
    imap_parse_open(ps);
    do {
        if (*n_r == LIST_MAX_PATTERNS || imap_parse_list_mailbox(ps, &pats[*n_r]) < 0)
            return -1;
        (*n_r)++;
    } while (imap_parse_char(ps, ' '));
    return imap_parse_close(ps);
}

static int parse_selection(struct imap_cmd *c, unsigned *sel)
{
    struct imap_parser *ps = &c->ps;
    if (!imap_parse_peek(ps, '('))
        return 0;
    imap_parse_open(ps);
    while (!imap_parse_peek(ps, ')')) {
        char *o;
        if (imap_parse_atom(ps, &o) < 0)
            return -1;
        if (strcasecmp(o, "SUBSCRIBED") == 0)
            *sel |= SEL_SUBSCRIBED;
        else if (strcasecmp(o, "SPECIAL-USE") == 0)
            *sel |= SEL_SPECIAL_USE;
        else if (strcasecmp(o, "RECURSIVEMATCH") == 0)
            *sel |= SEL_RECURSIVE;
        else if (strcasecmp(o, "REMOTE") != 0) {
            ps->error = "unknown LIST selection option";
            return -1;
        }
        if (!imap_parse_char(ps, ' '))
            break;
    }
    if (imap_parse_close(ps) < 0 || imap_parse_sp(ps) < 0)
        return -1;
    if ((*sel & SEL_RECURSIVE) && !(*sel & SEL_SUBSCRIBED)) {
        ps->error = "RECURSIVEMATCH needs another selection option";
        return -1;
    }
    return 0;
}

static int parse_return(struct imap_cmd *c, unsigned *ret, unsigned *status_items)
{
    struct imap_parser *ps = &c->ps;
    if (!imap_parse_char(ps, ' '))
        return 0;
    char *kw;
    if (imap_parse_atom(ps, &kw) < 0 || strcasecmp(kw, "RETURN") != 0 || imap_parse_sp(ps) < 0 ||
        imap_parse_open(ps) < 0)
        return -1;
    while (!imap_parse_peek(ps, ')')) {
        char *o;
        if (imap_parse_atom(ps, &o) < 0)
            return -1;
        if (strcasecmp(o, "SUBSCRIBED") == 0)
            *ret |= RET_SUBSCRIBED;
        else if (strcasecmp(o, "CHILDREN") == 0)
            *ret |= RET_CHILDREN;
        else if (strcasecmp(o, "SPECIAL-USE") == 0)
            *ret |= RET_SPECIAL_USE;
        else if (strcasecmp(o, "STATUS") == 0) {
            *ret |= RET_STATUS;
            if (imap_parse_sp(ps) < 0 || imap_status_items_parse(c, status_items) < 0)
                return -1;
        } else {
            ps->error = "unknown LIST return option";
            return -1;
        }
        if (!imap_parse_char(ps, ' '))
            break;
    }
    return imap_parse_close(ps);
}

static void list_one(struct imap_cmd *c, const struct mbox_list *l, const struct store_imap_mbox *m,
                     bool lsub, unsigned sel, unsigned ret, unsigned status_items)
{
    struct strbuf sb;
    strbuf_init(&sb, 8192);
    strbuf_printf(&sb, "* %s (", lsub ? "LSUB" : "LIST");
    size_t mark = sb.len;
    if (!lsub)
        strbuf_printf(&sb, "%s", has_children(l, m->name) ? "\\HasChildren" : "\\HasNoChildren");
    if ((sel & SEL_SUBSCRIBED || ret & RET_SUBSCRIBED) && m->subscribed)
        strbuf_printf(&sb, "%s\\Subscribed", sb.len > mark ? " " : "");
    if (!lsub && m->special_use[0])
        strbuf_printf(&sb, "%s%s", sb.len > mark ? " " : "", m->special_use);
    strbuf_printf(&sb, ") \"%c\" ", IMAP_HIER_SEP);
    imap_write_string(&sb, m->name, strlen(m->name));
    strbuf_append(&sb, "\r\n", 2);
    if ((ret & RET_STATUS) && !lsub) {
        strbuf_append(&sb, "* STATUS ", 9);
        imap_write_string(&sb, m->name, strlen(m->name));
        strbuf_append(&sb, " ", 1);
        imap_status_write(c->s, m, status_items, &sb);
        strbuf_append(&sb, "\r\n", 2);
    }
    if (sb.data)
        imap_send_raw(c->s, sb.data, sb.len);
    strbuf_free(&sb);
}

void imap_cmd_list(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    bool lsub = strcmp(c->name, "LSUB") == 0;
    unsigned sel = 0, ret = 0, status_items = 0;
    char *ref, *pats[LIST_MAX_PATTERNS];
    int npat;
    size_t rlen;
    if (imap_parse_sp(&c->ps) < 0 || (!lsub && parse_selection(c, &sel) < 0) ||
        imap_parse_astring(&c->ps, &ref, &rlen) < 0 || imap_parse_sp(&c->ps) < 0 ||
        (lsub ? (imap_parse_list_mailbox(&c->ps, &pats[0]) < 0 || (npat = 1) < 0)
              : parse_patterns(c, pats, &npat) < 0) ||
        (!lsub && parse_return(c, &ret, &status_items) < 0) || imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    if (npat == 1 && pats[0][0] == '\0' && !lsub) {
        imap_send(s, "* LIST (\\Noselect) \"%c\" \"\"", IMAP_HIER_SEP);
        imap_ok(c, "List completed.");
        return;
    }
    struct mbox_list l = { 0 };
    if (store_imap_mailboxes(imap_store(s), s->account_id, collect, &l) < 0) {
        free(l.m);
        imap_no_store(c, "Cannot list mailboxes");
        return;
    }
    for (size_t i = 0; i < l.n; i++) {
        const struct store_imap_mbox *m = &l.m[i];
        if ((lsub || (sel & SEL_SUBSCRIBED)) && !m->subscribed)
            continue;
        if ((sel & SEL_SPECIAL_USE) && !m->special_use[0])
            continue;
        bool hit = false;
        for (int k = 0; k < npat && !hit; k++)
            hit = match_name(ref, pats[k], m->name);
        if (hit)
            list_one(c, &l, m, lsub, sel, ret, status_items);
    }
    free(l.m);
    imap_ok(c, "%s completed.", lsub ? "Lsub" : "List");
}
