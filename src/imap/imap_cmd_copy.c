/* COPY, MOVE and their UID forms (RFC 9051 6.4.7, 6.4.8; RFC 6851) with
 * COPYUID (RFC 4315).  The store step runs on the pool (imap_cmd_defer). */
#include <stdlib.h>
#include <string.h>

#include "imap/imap_int.h"

struct copy_job {
    struct store *store;
    int64_t account, src_mailbox;
    bool move, readonly;
    const char *name;
    uint32_t *uids;
    size_t n;
    int found;                          /* store_imap_mailbox_get's result */
    int64_t dst_mailbox;
    long k;                             /* store_imap_copy's result */
    uint32_t *src, *dst, uidvalidity;
};

static void copy_work(struct imap_cmd *c)
{
    struct copy_job *j = c->job;
    struct store_imap_mbox m;
    j->found = store_imap_mailbox_get(j->store, j->account, imap_mailbox_name(j->name), &m);
    if (j->found <= 0 || (j->move && j->readonly) || j->n == 0)
        return;
    j->dst_mailbox = m.id;
    j->k = store_imap_copy(j->store, j->account, j->src_mailbox, m.id, j->uids, j->n,
                           j->move && m.id != j->src_mailbox, &j->src, &j->dst, &j->uidvalidity);
}

static void copy_done(struct imap_cmd *c)
{
    struct copy_job *j = c->job;
    struct imap_session *s = c->s;
    bool move = j->move;
    if (j->found <= 0) {
        if (j->found == 0)
            imap_no(c, "[TRYCREATE] Mailbox doesn't exist: %s", j->name);
        else
            imap_no_store(c, "Cannot copy");
        return;
    }
    if (move && j->readonly) {
        imap_no(c, "[READ-ONLY] Mailbox is read-only");
        return;
    }
    if (j->n == 0) {
        imap_ok(c, "No messages matched.");
        return;
    }
    long k = j->k;
    if (k < 0) {
        imap_no_store(c, move ? "Cannot move" : "Cannot copy");
        return;
    }
    struct strbuf code;
    strbuf_init(&code, 1u << 24);
    if (k > 0) {
        strbuf_printf(&code, "[COPYUID %u ", j->uidvalidity);
        imap_uidset_write(&code, j->src, (size_t)k);
        strbuf_append(&code, " ", 1);
        imap_uidset_write(&code, j->dst, (size_t)k);
        strbuf_append(&code, "] ", 2);
    }
    if (move && j->dst_mailbox != j->src_mailbox) {
        if (code.len)
            imap_send(s, "* OK %.*s Moved UIDs.", (int)(code.len - 1), code.data);
        imap_view_expunged(s, j->src, (size_t)k);
        imap_ok(c, "Move completed.");
    } else {
        imap_ok(c, "%.*s%s completed.", (int)code.len, code.data ? code.data : "",
                move ? "Move" : "Copy");
    }
    strbuf_free(&code);
    free(j->src);
    free(j->dst);
}

void imap_cmd_copy(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
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
    struct copy_job *j = imap_pool_alloc(&c->pool, sizeof(*j));
    if (j == NULL) {
        imap_no(c, "[LIMIT] Out of memory");
        return;
    }
    *j = (struct copy_job){ .store = imap_store(s), .account = s->account_id,
                            .src_mailbox = s->sel->id, .move = strcmp(c->name, "MOVE") == 0,
                            .readonly = s->sel->readonly, .name = name, .uids = uids, .n = n };
    imap_cmd_defer(c, copy_work, copy_done, j);
}
