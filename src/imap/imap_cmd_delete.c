/* DELETE (RFC 9051 6.3.5). */
#include <string.h>
#include <strings.h>

#include "imap/imap_int.h"

void imap_cmd_delete(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    char *name;
    size_t len;
    if (imap_parse_sp(&c->ps) < 0 || imap_parse_astring(&c->ps, &name, &len) < 0 ||
        imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    name = (char *)imap_mailbox_name(name);
    if (strcasecmp(name, "INBOX") == 0) {
        imap_no(c, "[CANNOT] INBOX can't be deleted.");
        return;
    }
    if (s->sel && strcmp(s->sel->name, name) == 0) {
        /* deleting the selected mailbox: deselect first (as Dovecot does) */
        imap_view_close(s);
    }
    if (store_imap_mailbox_delete(imap_store(s), s->account_id, name) < 0) {
        if (store_error_kind() == STORE_ERR_NOTFOUND)
            imap_no(c, "[NONEXISTENT] Mailbox doesn't exist: %s", name);
        else
            imap_no_store(c, "Cannot delete mailbox");
        return;
    }
    imap_ok(c, "Delete completed.");
}
