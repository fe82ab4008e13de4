/* STORE and UID STORE (RFC 9051 6.4.6) with UNCHANGEDSINCE and MODIFIED
 * (RFC 7162 3.1.3). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_int.h"

struct store_ctx {
    struct imap_cmd *c;
    bool silent;
    uint32_t *modified;
    size_t n_modified;
};

static void store_result(const struct store_imap_msg *m, enum store_imap_flag_result r, void *arg)
{
    struct store_ctx *x = arg;
    struct imap_session *s = x->c->s;
    if (r == STORE_IMAP_MODIFIED) {
        x->modified[x->n_modified++] = m->uid;
        return;
    }
    /* RFC 7162 3.1.3: with CONDSTORE, changes are reported even when silent */
    bool condstore = (s->enabled & IMAP_EN_CONDSTORE) != 0;
    if (x->silent && !(condstore && r == STORE_IMAP_CHANGED))
        return;
    uint32_t seq = imap_view_seq(s->sel, m->uid);
    if (seq == 0)
        return;
    struct strbuf sb;
    strbuf_init(&sb, 8192);
    strbuf_printf(&sb, "* %u FETCH (", seq);
    if (x->c->uid || (s->enabled & IMAP_EN_QRESYNC))
        strbuf_printf(&sb, "UID %u ", m->uid);
    if (!x->silent) {
        strbuf_append(&sb, "FLAGS ", 6);
        imap_flags_write(s, m, &sb);
    }
    if (condstore)
        strbuf_printf(&sb, "%sMODSEQ (%llu)", x->silent ? "" : " ", (unsigned long long)m->modseq);
    strbuf_append(&sb, ")\r\n", 3);
    if (sb.data)
        imap_send_raw(s, sb.data, sb.len);
    strbuf_free(&sb);
}

void imap_cmd_store(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    struct imap_parser *ps = &c->ps;
    struct imap_seqset set;
    uint64_t unchangedsince = 0;
    char *item;
    if (imap_parse_sp(ps) < 0 || imap_parse_seqset(ps, &set) < 0 || imap_parse_sp(ps) < 0)
        goto bad;
    if (imap_parse_peek(ps, '(')) {
        char *mod;
        imap_parse_open(ps);
        if (imap_parse_atom(ps, &mod) < 0 || strcasecmp(mod, "UNCHANGEDSINCE") != 0 ||
            imap_parse_sp(ps) < 0 || imap_parse_number64(ps, &unchangedsince) < 0 ||
            imap_parse_close(ps) < 0 || imap_parse_sp(ps) < 0)
            goto bad;
        s->enabled |= IMAP_EN_CONDSTORE;
    }
    if (imap_parse_atom(ps, &item) < 0 || imap_parse_sp(ps) < 0)
        goto bad;
    enum store_imap_flag_op op = STORE_IMAP_FLAGS_SET;
    const char *p = item;
    if (*p == '+' || *p == '-') {
        op = *p == '+' ? STORE_IMAP_FLAGS_ADD : STORE_IMAP_FLAGS_REMOVE;
        p++;
    }
    bool silent = false;
    if (strcasecmp(p, "FLAGS.SILENT") == 0)
        silent = true;
    else if (strcasecmp(p, "FLAGS") != 0) {
        ps->error = "unknown STORE item";
        goto bad;
    }
    uint32_t flags;
    char *keywords;
    if (imap_flags_parse(c, false, &flags, &keywords) < 0 || imap_parse_end(ps) < 0)
        goto bad;
    uint32_t *uids;
    size_t n;
    if (imap_view_resolve(c, &set, c->uid, &uids, &n) < 0)
        return;
    if (s->sel->readonly) {
        imap_no(c, "[READ-ONLY] Mailbox is read-only");
        return;
    }
    struct store_ctx x = { .c = c, .silent = silent };
    x.modified = imap_pool_alloc(&c->pool, (n + 1) * sizeof(uint32_t));
    if (x.modified == NULL) {
        imap_no(c, "[LIMIT] Too many messages");
        return;
    }
    uint64_t modseq = 0;
    if (store_imap_flags(imap_store(s), s->sel->id, uids, n, op, flags, keywords, unchangedsince,
                         store_result, &x, &modseq) < 0) {
        imap_no_store(c, "Cannot store flags");
        return;
    }
    imap_view_own_modseq(s->sel, modseq);
    if (x.n_modified > 0) {
        struct strbuf sb;
        strbuf_init(&sb, 1u << 24);
        if (c->uid) {
            imap_uidset_write(&sb, x.modified, x.n_modified);
        } else {
            uint32_t *seqs = imap_pool_alloc(&c->pool, x.n_modified * sizeof(uint32_t));
            for (size_t i = 0; seqs && i < x.n_modified; i++)
                seqs[i] = imap_view_seq(s->sel, x.modified[i]);
            if (seqs)
                imap_uidset_write(&sb, seqs, x.n_modified);
        }
        imap_ok(c, "[MODIFIED %.*s] Conditional store failed.", (int)sb.len, sb.data ? sb.data : "");
        strbuf_free(&sb);
        return;
    }
    imap_ok(c, "Store completed.");
    return;
bad:
    imap_bad_syntax(c);
}
