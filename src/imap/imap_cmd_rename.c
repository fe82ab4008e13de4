/* RENAME (RFC 9051 6.3.6), INBOX included (its messages move). */
#include <string.h>

#include "imap/imap_int.h"

void imap_cmd_rename(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    char *from, *to;
    size_t l1, l2;
    if (imap_parse_sp(&c->ps) < 0 || imap_parse_astring(&c->ps, &from, &l1) < 0 ||
        imap_parse_sp(&c->ps) < 0 || imap_parse_astring(&c->ps, &to, &l2) < 0 ||
        imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    while (l2 > 0 && to[l2 - 1] == IMAP_HIER_SEP)
        to[--l2] = '\0';
    if (l2 == 0 || l2 != strlen(to) || to[0] == IMAP_HIER_SEP) {
        imap_no(c, "[CANNOT] Invalid mailbox name");
        return;
    }
    /* create missing parents of the new name */
    for (char *p = strchr(to, IMAP_HIER_SEP); p; p = strchr(p + 1, IMAP_HIER_SEP)) {
        *p = '\0';
        struct store_imap_mbox m;
        if (store_imap_mailbox_get(imap_store(s), s->account_id, to, &m) == 0)
            store_imap_mailbox_create(imap_store(s), s->account_id, to, NULL);
        *p = IMAP_HIER_SEP;
    }
    if (store_imap_mailbox_rename(imap_store(s), s->account_id, imap_mailbox_name(from),
                                  imap_mailbox_name(to), IMAP_HIER_SEP) < 0) {
        if (store_error_kind() == STORE_ERR_NOTFOUND)
            imap_no(c, "[NONEXISTENT] Mailbox doesn't exist: %s", from);
        else if (store_error_kind() == STORE_ERR_EXISTS)
            imap_no(c, "[ALREADYEXISTS] Target mailbox already exists");
        else
            imap_no_store(c, "Cannot rename mailbox");
        return;
    }
    imap_ok(c, "Rename completed.");
}
