/* CLOSE (RFC 9051 6.4.1: expunges silently unless read-only) and
 * UNSELECT (RFC 3691). */
#include <stdlib.h>

#include "imap/imap_int.h"

void imap_cmd_close(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    if (imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    if (!s->sel->readonly) {
        uint32_t *gone = NULL;
        long n = store_imap_expunge(imap_store(s), s->sel->id, NULL, 0, &gone);
        free(gone);
        if (n < 0) {
            imap_no_store(c, "Cannot expunge");
            return;
        }
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
