/* RENAME (RFC 9051 6.3.6), INBOX included (its messages move). */
#include <string.h>

#include "imap/imap_int.h"

/* The store step runs on the pool (imap_cmd_defer). */
struct rename_job {
    struct store *store;
    int64_t account;
    char *from, *to;
    int rc;
};

static void rename_work(struct imap_cmd *c)
{
    struct rename_job *j = c->job;
    char *to = j->to;
    /* create missing parents of the new name */
    for (char *p = strchr(to, IMAP_HIER_SEP); p; p = strchr(p + 1, IMAP_HIER_SEP)) {
        *p = '\0';
        struct store_imap_mbox m;
        if (store_imap_mailbox_get(j->store, j->account, to, &m) == 0)
            store_imap_mailbox_create(j->store, j->account, to, NULL);
        *p = IMAP_HIER_SEP;
    }
    j->rc = store_imap_mailbox_rename(j->store, j->account, imap_mailbox_name(j->from),
                                      imap_mailbox_name(to), IMAP_HIER_SEP);
}

static void rename_done(struct imap_cmd *c)
{
    struct rename_job *j = c->job;
    if (j->rc < 0) {
        if (store_error_kind() == STORE_ERR_NOTFOUND)
            imap_no(c, "[NONEXISTENT] Mailbox doesn't exist: %s", j->from);
        else if (store_error_kind() == STORE_ERR_EXISTS)
            imap_no(c, "[ALREADYEXISTS] Target mailbox already exists");
        else
            imap_no_store(c, "Cannot rename mailbox");
        return;
    }
    imap_ok(c, "Rename completed.");
}

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
    struct rename_job *j = imap_pool_alloc(&c->pool, sizeof(*j));
    if (j == NULL) {
        imap_no(c, "[LIMIT] Out of memory");
        return;
    }
    *j = (struct rename_job){ .store = imap_store(s), .account = s->account_id, .from = from,
                              .to = to };
    imap_cmd_defer(c, rename_work, rename_done, j);
}
