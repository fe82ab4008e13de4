/* DELETE (RFC 9051 6.3.5). */
#include <string.h>
#include <strings.h>

#include "imap/imap_int.h"

/* The store step (the index and the message files) runs on the pool
 * (imap_cmd_defer). */
struct mbox_job {
    struct store *store;
    int64_t account;
    const char *name;
    int rc;
};

static void delete_work(struct imap_cmd *c)
{
    struct mbox_job *j = c->job;
    j->rc = store_imap_mailbox_delete(j->store, j->account, j->name);
}

static void delete_done(struct imap_cmd *c)
{
    struct mbox_job *j = c->job;
    if (j->rc < 0) {
        if (store_error_kind() == STORE_ERR_NOTFOUND)
            imap_no(c, "[NONEXISTENT] Mailbox doesn't exist: %s", j->name);
        else
            imap_no_store(c, "Cannot delete mailbox");
        return;
    }
    imap_ok(c, "Delete completed.");
}

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
    struct mbox_job *j = imap_pool_alloc(&c->pool, sizeof(*j));
    if (j == NULL) {
        imap_no(c, "[LIMIT] Out of memory");
        return;
    }
    *j = (struct mbox_job){ .store = imap_store(s), .account = s->account_id, .name = name };
    imap_cmd_defer(c, delete_work, delete_done, j);
}
