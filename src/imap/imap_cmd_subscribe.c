/* SUBSCRIBE and UNSUBSCRIBE (RFC 9051 6.3.7, 6.3.8). */
#include <string.h>

#include "imap/imap_int.h"

/* The store step runs on the pool (imap_cmd_defer). */
struct sub_job {
    struct store *store;
    int64_t account;
    const char *name;
    bool on;
    int rc;
};

static void sub_work(struct imap_cmd *c)
{
    struct sub_job *j = c->job;
    j->rc = store_imap_mailbox_subscribe(j->store, j->account, imap_mailbox_name(j->name), j->on);
}

static void sub_done(struct imap_cmd *c)
{
    struct sub_job *j = c->job;
    bool on = j->on;
    if (j->rc < 0) {
        if (store_error_kind() == STORE_ERR_NOTFOUND && !on) {
            imap_ok(c, "Unsubscribe completed.");
            return;
        }
        if (store_error_kind() == STORE_ERR_NOTFOUND)
            imap_no(c, "[NONEXISTENT] Mailbox doesn't exist: %s", j->name);
        else
            imap_no_store(c, "Cannot change subscription");
        return;
    }
    imap_ok(c, "%s completed.", on ? "Subscribe" : "Unsubscribe");
}

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
    struct sub_job *j = imap_pool_alloc(&c->pool, sizeof(*j));
    if (j == NULL) {
        imap_no(c, "[LIMIT] Out of memory");
        return;
    }
    *j = (struct sub_job){ .store = imap_store(s), .account = s->account_id, .name = name,
                           .on = on };
    imap_cmd_defer(c, sub_work, sub_done, j);
}
