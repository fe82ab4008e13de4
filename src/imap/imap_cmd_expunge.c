/* EXPUNGE and UID EXPUNGE (RFC 9051 6.4.3, 6.4.9).  The store step runs
 * on the pool (imap_cmd_defer). */
#include <stdlib.h>

#include "imap/imap_int.h"

struct expunge_job {
    struct store *store;
    int64_t mailbox;
    const uint32_t *uids;               /* UID EXPUNGE's set, else NULL */
    size_t n;
    bool condstore;
    long k;                             /* store_imap_expunge's result */
    uint32_t *gone;
    int state;                          /* store_imap_sync_state's result */
    uint64_t hms;
};

static void expunge_work(struct imap_cmd *c)
{
    struct expunge_job *j = c->job;
    j->k = store_imap_expunge(j->store, j->mailbox, j->uids, j->n, &j->gone);
    if (j->k >= 0 && j->condstore) {
        uint32_t un, cnt;
        j->state = store_imap_sync_state(j->store, j->mailbox, 0, &j->hms, &un, &cnt);
    }
}

static void expunge_done(struct imap_cmd *c)
{
    struct expunge_job *j = c->job;
    if (j->k < 0) {
        imap_no_store(c, "Cannot expunge");
        return;
    }
    imap_view_expunged(c->s, j->gone, (size_t)j->k);
    free(j->gone);
    if (j->condstore && j->state > 0) {
        imap_ok(c, "[HIGHESTMODSEQ %llu] Expunge completed.", (unsigned long long)j->hms);
        return;
    }
    imap_ok(c, "Expunge completed.");
}

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
    struct expunge_job *j = imap_pool_alloc(&c->pool, sizeof(*j));
    if (j == NULL) {
        imap_no(c, "[LIMIT] Out of memory");
        return;
    }
    *j = (struct expunge_job){ .store = imap_store(s), .mailbox = s->sel->id,
                               .uids = c->uid ? uids : NULL, .n = n,
                               .condstore = (s->enabled & IMAP_EN_CONDSTORE) != 0 };
    imap_cmd_defer(c, expunge_work, expunge_done, j);
}
