/* SELECT and EXAMINE (RFC 9051 6.3.2, 6.3.3) with the CONDSTORE and
 * QRESYNC parameters (RFC 7162 3.1.8, 3.2.5). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_int.h"

struct qresync {
    bool on;
    uint32_t uidvalidity;
    uint64_t modseq;
    struct imap_seqset known;
};

static int parse_params(struct imap_cmd *c, struct qresync *q)
{
    struct imap_parser *ps = &c->ps;
    if (!imap_parse_char(ps, ' '))
        return 0;
    if (imap_parse_open(ps) < 0)
        return -1;
    for (int i = 0; !imap_parse_peek(ps, ')'); i++) {
        char *name;
        if ((i > 0 && imap_parse_sp(ps) < 0) || imap_parse_atom(ps, &name) < 0)
            return -1;
        if (strcasecmp(name, "CONDSTORE") == 0) {
            c->s->enabled |= IMAP_EN_CONDSTORE;
            continue;
        }
        if (strcasecmp(name, "QRESYNC") != 0 || !(c->s->enabled & IMAP_EN_QRESYNC)) {
            ps->error = "unknown SELECT parameter";
            return -1;
        }
        q->on = true;
        if (imap_parse_sp(ps) < 0 || imap_parse_open(ps) < 0 ||
            imap_parse_nz_number(ps, &q->uidvalidity) < 0 || imap_parse_sp(ps) < 0 ||
            imap_parse_number64(ps, &q->modseq) < 0)
            return -1;
        if (imap_parse_char(ps, ' ')) {
            if (imap_parse_peek(ps, '(')) {
                ps->error = "sequence match data not supported";
                return -1;
            }
            if (imap_parse_seqset(ps, &q->known) < 0)
                return -1;
            if (imap_parse_char(ps, ' ')) {
                /* (seq-set uid-set): only a hint, accepted and ignored */
                struct imap_seqset a, b;
                if (imap_parse_open(ps) < 0 || imap_parse_seqset(ps, &a) < 0 ||
                    imap_parse_sp(ps) < 0 || imap_parse_seqset(ps, &b) < 0 ||
                    imap_parse_close(ps) < 0)
                    return -1;
            }
        }
        if (imap_parse_close(ps) < 0)
            return -1;
    }
    return imap_parse_close(ps);
}

struct changed_ctx {
    struct imap_session *s;
};

static int changed_cb(const struct store_imap_msg *m, void *arg)
{
    struct changed_ctx *x = arg;
    uint32_t seq = imap_view_seq(x->s->sel, m->uid);
    if (seq == 0)
        return 0;
    struct strbuf sb;
    strbuf_init(&sb, 8192);
    strbuf_printf(&sb, "* %u FETCH (UID %u FLAGS ", seq, m->uid);
    imap_flags_write(x->s, m, &sb);
    strbuf_printf(&sb, " MODSEQ (%llu))\r\n", (unsigned long long)m->modseq);
    if (sb.data)
        imap_send_raw(x->s, sb.data, sb.len);
    strbuf_free(&sb);
    return 0;
}

/* RFC 7162 3.2.5.1: what changed since the client's modseq. */
static void qresync_report(struct imap_cmd *c, const struct qresync *q)
{
    struct imap_session *s = c->s;
    if (q->uidvalidity != s->sel->uidvalidity)
        return;
    uint32_t *gone = NULL;
    long n = store_imap_vanished(imap_store(s), s->sel->id, q->modseq, &gone);
    if (n > 0) {
        size_t k = 0;
        for (long i = 0; i < n; i++)
            if (q->known.n == 0 || imap_seqset_contains(&q->known, gone[i], UINT32_MAX))
                gone[k++] = gone[i];
        if (k > 0) {
            struct strbuf sb;
            strbuf_init(&sb, 1u << 24);
            strbuf_printf(&sb, "* VANISHED (EARLIER) ");
            imap_uidset_write(&sb, gone, k);
            strbuf_append(&sb, "\r\n", 2);
            if (sb.data)
                imap_send_raw(s, sb.data, sb.len);
            strbuf_free(&sb);
        }
    }
    free(gone);
    struct changed_ctx x = { s };
    store_imap_changed(imap_store(s), s->sel->id, q->modseq, changed_cb, &x);
}

void imap_cmd_select(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    bool readonly = strcmp(c->name, "EXAMINE") == 0;
    char *name;
    size_t len;
    struct qresync q;
    memset(&q, 0, sizeof(q));
    if (imap_parse_sp(&c->ps) < 0 || imap_parse_astring(&c->ps, &name, &len) < 0 ||
        parse_params(c, &q) < 0 || imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    bool had = s->sel != NULL;
    imap_view_close(s);
    if (had && (s->enabled & IMAP_EN_QRESYNC))
        imap_send(s, "* OK [CLOSED] Previous mailbox closed.");
    struct store_imap_mbox m;
    int r = store_imap_mailbox_get(imap_store(s), s->account_id, imap_mailbox_name(name), &m);
    if (r <= 0) {
        if (r == 0)
            imap_no(c, "[NONEXISTENT] Mailbox doesn't exist: %s", name);
        else
            imap_no_store(c, "Cannot open mailbox");
        return;
    }
    if (imap_view_open(c, &m, readonly) < 0)
        return;
    if (q.on)
        qresync_report(c, &q);
    imap_send(s, "%s OK [%s] %s completed", c->tag, readonly ? "READ-ONLY" : "READ-WRITE",
              readonly ? "Examine" : "Select");
}
