/* COPY, MOVE and their UID forms (RFC 9051 6.4.7, 6.4.8; RFC 6851) with
 * COPYUID (RFC 4315). */
#include <stdlib.h>
#include <string.h>

#include "imap/imap_int.h"

void imap_cmd_copy(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    bool move = strcmp(c->name, "MOVE") == 0;
    struct imap_seqset set;
    char *name;
    size_t len;
    if (imap_parse_sp(&c->ps) < 0 || imap_parse_seqset(&c->ps, &set) < 0 ||
        imap_parse_sp(&c->ps) < 0 || imap_parse_astring(&c->ps, &name, &len) < 0 ||
        imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    uint32_t *uids;
    size_t n;
    if (imap_view_resolve(c, &set, c->uid, &uids, &n) < 0)
        return;
    struct store_imap_mbox m;
    int r = store_imap_mailbox_get(imap_store(s), s->account_id, imap_mailbox_name(name), &m);
    if (r <= 0) {
        if (r == 0)
            imap_no(c, "[TRYCREATE] Mailbox doesn't exist: %s", name);
        else
            imap_no_store(c, "Cannot copy");
        return;
    }
    if (move && s->sel->readonly) {
        imap_no(c, "[READ-ONLY] Mailbox is read-only");
        return;
    }
    if (n == 0) {
        imap_ok(c, "No messages matched.");
        return;
    }
    uint32_t *src = NULL, *dst = NULL, uv = 0;
    long k = store_imap_copy(imap_store(s), s->account_id, s->sel->id, m.id, uids, n,
                             move && m.id != s->sel->id, &src, &dst, &uv);
    if (k < 0) {
        imap_no_store(c, move ? "Cannot move" : "Cannot copy");
        return;
    }
    struct strbuf code;
    strbuf_init(&code, 1u << 24);
    if (k > 0) {
        strbuf_printf(&code, "[COPYUID %u ", uv);
        imap_uidset_write(&code, src, (size_t)k);
        strbuf_append(&code, " ", 1);
        imap_uidset_write(&code, dst, (size_t)k);
        strbuf_append(&code, "] ", 2);
    }
    if (move && m.id != s->sel->id) {
        if (code.len)
            imap_send(s, "* OK %.*s Moved UIDs.", (int)(code.len - 1), code.data);
        imap_view_expunged(s, src, (size_t)k);
        imap_ok(c, "Move completed.");
    } else {
        imap_ok(c, "%.*s%s completed.", (int)code.len, code.data ? code.data : "",
                move ? "Move" : "Copy");
    }
    strbuf_free(&code);
    free(src);
    free(dst);
}
