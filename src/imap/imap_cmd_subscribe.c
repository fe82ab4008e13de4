/* SUBSCRIBE and UNSUBSCRIBE (RFC 9051 6.3.7, 6.3.8). */
#include <string.h>

#include "imap/imap_int.h"

void imap_cmd_subscribe(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    bool on = strcmp(c->name, "SUBSCRIBE") == 0;
    char *name;
    size_t len;
    if (imap_parse_sp(&c->ps) < 0 || imap_parse_astring(&c->ps, &name, &len) < 0 ||
        imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    if (store_imap_mailbox_subscribe(imap_store(s), s->account_id, imap_mailbox_name(name), on) < 0) {
        if (store_error_kind() == STORE_ERR_NOTFOUND && !on) {
            imap_ok(c, "Unsubscribe completed.");
            return;
        }
        if (store_error_kind() == STORE_ERR_NOTFOUND)
            imap_no(c, "[NONEXISTENT] Mailbox doesn't exist: %s", name);
        else
            imap_no_store(c, "Cannot change subscription");
        return;
    }
    imap_ok(c, "%s completed.", on ? "Subscribe" : "Unsubscribe");
}
