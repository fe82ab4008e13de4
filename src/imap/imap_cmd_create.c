/* CREATE (RFC 9051 6.3.4) with USE (RFC 6154 CREATE-SPECIAL-USE).
 * Parents are created as needed ("a/b/c" makes "a" and "a/b"). */
#include <string.h>
#include <strings.h>

#include "imap/imap_int.h"

static const char *const special_uses[] = { "\\All", "\\Archive", "\\Drafts", "\\Flagged",
                                            "\\Junk", "\\Sent", "\\Trash", NULL };

static int parse_use(struct imap_cmd *c, const char **use_r)
{
    struct imap_parser *ps = &c->ps;
    *use_r = NULL;
    if (!imap_parse_char(ps, ' '))
        return 0;
    char *kw;
    if (imap_parse_open(ps) < 0 || imap_parse_atom(ps, &kw) < 0 || strcasecmp(kw, "USE") != 0 ||
        imap_parse_sp(ps) < 0 || imap_parse_open(ps) < 0)
        return -1;
    char *flag;
    if (imap_parse_flag(ps, false, &flag) < 0)
        return -1;
    for (int i = 0; special_uses[i]; i++)
        if (strcasecmp(flag, special_uses[i]) == 0)
            *use_r = special_uses[i];
    if (*use_r == NULL) {
        ps->error = "USEATTR";
        return -1;
    }
    if (imap_parse_close(ps) < 0 || imap_parse_close(ps) < 0)
        return -1;
    return 0;
}

/* The store step runs on the pool (imap_cmd_defer). */
struct mbox_job {
    struct store *store;
    int64_t account;
    char *name;
    const char *use;
    int rc;
};

static void create_work(struct imap_cmd *c)
{
    struct mbox_job *j = c->job;
    char *name = j->name;
    for (char *p = strchr(name, IMAP_HIER_SEP); p; p = strchr(p + 1, IMAP_HIER_SEP)) {
        *p = '\0';
        struct store_imap_mbox m;
        if (store_imap_mailbox_get(j->store, j->account, imap_mailbox_name(name), &m) == 0)
            store_imap_mailbox_create(j->store, j->account, name, NULL);
        *p = IMAP_HIER_SEP;
    }
    j->rc = store_imap_mailbox_create(j->store, j->account, name, j->use);
}

static void create_done(struct imap_cmd *c)
{
    struct mbox_job *j = c->job;
    if (j->rc < 0) {
        if (store_error_kind() == STORE_ERR_EXISTS)
            imap_no(c, "[ALREADYEXISTS] Mailbox already exists");
        else
            imap_no_store(c, "Cannot create mailbox");
        return;
    }
    imap_ok(c, "Create completed.");
}

void imap_cmd_create(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    char *name;
    size_t len;
    const char *use;
    if (imap_parse_sp(&c->ps) < 0 || imap_parse_astring(&c->ps, &name, &len) < 0) {
        imap_bad_syntax(c);
        return;
    }
    if (parse_use(c, &use) < 0) {
        if (c->ps.error && strcmp(c->ps.error, "USEATTR") == 0)
            imap_no(c, "[USEATTR] Unsupported special-use attribute");
        else
            imap_bad_syntax(c);
        return;
    }
    if (imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    /* a trailing separator only says the client wants children later */
    while (len > 0 && name[len - 1] == IMAP_HIER_SEP)
        name[--len] = '\0';
    if (len == 0 || len != strlen(name) || strstr(name, "//") != NULL || name[0] == IMAP_HIER_SEP) {
        imap_no(c, "[CANNOT] Invalid mailbox name");
        return;
    }
    if (strcasecmp(name, "INBOX") == 0) {
        imap_no(c, "[ALREADYEXISTS] Mailbox already exists");
        return;
    }
    struct mbox_job *j = imap_pool_alloc(&c->pool, sizeof(*j));
    if (j == NULL) {
        imap_no(c, "[LIMIT] Out of memory");
        return;
    }
    *j = (struct mbox_job){ .store = imap_store(s), .account = s->account_id, .name = name,
                            .use = use };
    imap_cmd_defer(c, create_work, create_done, j);
}
