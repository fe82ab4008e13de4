/* EXPUNGE and UID EXPUNGE (RFC 9051 6.4.3, 6.4.9). */
#include <stdlib.h>

#include "imap/imap_int.h"

void imap_cmd_expunge(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    struct imap_seqset set;
    uint32_t *uids = NULL;
    size_t n = 0;
    if (c->uid) {
        if (imap_parse_sp(&c->ps) < 0 || imap_parse_seqset(&c->ps, &set) < 0 ||
            imap_parse_end(&c->ps) < 0) {
            imap_bad_syntax(c);
            return;
        }
        if (imap_view_resolve(c, &set, true, &uids, &n) < 0)
            return;
    } else if (imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    if (s->sel->readonly) {
        imap_no(c, "[READ-ONLY] Mailbox is read-only");
        return;
    }
    if (c->uid && n == 0) {
        imap_ok(c, "Expunge completed.");
        return;
    }
    uint32_t *gone = NULL;
    long k = store_imap_expunge(imap_store(s), s->sel->id, c->uid ? uids : NULL, n, &gone);
    if (k < 0) {
        imap_no_store(c, "Cannot expunge");
        return;
    }
    imap_view_expunged(s, gone, (size_t)k);
    free(gone);
    uint64_t hms;
    uint32_t un, cnt;
    if ((s->enabled & IMAP_EN_CONDSTORE) &&
        store_imap_sync_state(imap_store(s), s->sel->id, 0, &hms, &un, &cnt) > 0) {
        imap_ok(c, "[HIGHESTMODSEQ %llu] Expunge completed.", (unsigned long long)hms);
        return;
    }
    imap_ok(c, "Expunge completed.");
}
