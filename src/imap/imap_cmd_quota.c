/* QUOTA (RFC 9208): GETQUOTA, GETQUOTAROOT and SETQUOTA in one file, as
 * they share the one quota root "" per account (STORAGE only; limits
 * are set by the administrator, so SETQUOTA is refused). */
#include <string.h>

#include "imap/imap_int.h"

static void send_quota(struct imap_session *s, uint64_t used, uint64_t limit)
{
    imap_send(s, "* QUOTA \"\" (STORAGE %llu %llu)", (unsigned long long)((used + 1023) / 1024),
              (unsigned long long)(limit / 1024));
}

void imap_cmd_getquota(struct imap_cmd *c)
{
    char *root;
    size_t len;
    if (imap_parse_sp(&c->ps) < 0 || imap_parse_astring(&c->ps, &root, &len) < 0 ||
        imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    uint64_t used, limit;
    if (root[0] != '\0' || store_imap_quota(imap_store(c->s), c->s->account_id, &used, &limit) < 0 ||
        limit == 0) {
        imap_no(c, "[NONEXISTENT] No such quota root");
        return;
    }
    send_quota(c->s, used, limit);
    imap_ok(c, "Getquota completed.");
}

void imap_cmd_getquotaroot(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    char *name;
    size_t len;
    if (imap_parse_sp(&c->ps) < 0 || imap_parse_astring(&c->ps, &name, &len) < 0 ||
        imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    struct store_imap_mbox m;
    if (store_imap_mailbox_get(imap_store(s), s->account_id, imap_mailbox_name(name), &m) <= 0) {
        imap_no(c, "[NONEXISTENT] Mailbox doesn't exist: %s", name);
        return;
    }
    uint64_t used = 0, limit = 0;
    store_imap_quota(imap_store(s), s->account_id, &used, &limit);
    struct strbuf sb;
    strbuf_init(&sb, 4096);
    strbuf_append(&sb, "* QUOTAROOT ", 12);
    imap_write_string(&sb, m.name, strlen(m.name));
    if (limit > 0)
        strbuf_append(&sb, " \"\"", 3);
    strbuf_append(&sb, "\r\n", 2);
    imap_send_raw(s, sb.data, sb.len);
    strbuf_free(&sb);
    if (limit > 0)
        send_quota(s, used, limit);
    imap_ok(c, "Getquotaroot completed.");
}

void imap_cmd_setquota(struct imap_cmd *c)
{
    imap_no(c, "[NOPERM] Quota limits are set by the administrator (postel CLI)");
}
