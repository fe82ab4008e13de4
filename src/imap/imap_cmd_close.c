/* CLOSE (RFC 9051 6.4.1: expunges silently unless read-only) and
 * UNSELECT (RFC 3691).  CLOSE's expunge runs on the pool (imap_cmd_defer). */
#include <stdlib.h>

#include "imap/imap_int.h"

struct close_job {
    struct store *store;
    int64_t mailbox;
    long n;
};

static void close_work(struct imap_cmd *c)
{
    struct close_job *j = c->job;
    uint32_t *gone = NULL;
    j->n = store_imap_expunge(j->store, j->mailbox, NULL, 0, &gone);
    free(gone);
}

static void close_done(struct imap_cmd *c)
{
    struct close_job *j = c->job;
    if (j->n < 0) {
        imap_no_store(c, "Cannot expunge");
        return;
    }
    imap_view_close(c->s);
    imap_send(c->s, "%s OK Close completed.", c->tag);
}

void imap_cmd_close(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    if (imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    if (!s->sel->readonly) {
        struct close_job *j = imap_pool_alloc(&c->pool, sizeof(*j));
        if (j == NULL) {
            imap_no(c, "[LIMIT] Out of memory");
            return;
        }
        *j = (struct close_job){ .store = imap_store(s), .mailbox = s->sel->id };
        imap_cmd_defer(c, close_work, close_done, j);
        return;
    }
    imap_view_close(s);
    imap_send(s, "%s OK Close completed.", c->tag);
}

void imap_cmd_unselect(struct imap_cmd *c)
{
    if (imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    imap_view_close(c->s);
    imap_send(c->s, "%s OK Unselect completed.", c->tag);
}
