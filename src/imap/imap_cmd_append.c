/* APPEND (RFC 9051 6.3.12) with UIDPLUS APPENDUID (RFC 4315), BINARY
 * literal8 (RFC 3516) and APPENDLIMIT (RFC 7889; the size limit itself is
 * enforced while the literal is read, see imap_server.c). */
#include <string.h>

#include "imap/imap_int.h"

/* The store step runs on the pool (imap_cmd_defer): the file write, its
 * fsync and the index commit never stall the loop. */
struct append_job {
    struct store *store;
    int64_t account;
    const char *name;
    const char *data;
    size_t len;
    uint32_t flags;
    const char *keywords;
    int64_t date;
    int found;                          /* store_imap_mailbox_get's result */
    int rc;
    uint32_t uid, uidvalidity;
};

static void append_work(struct imap_cmd *c)
{
    struct append_job *j = c->job;
    struct store_imap_mbox m;
    j->found = store_imap_mailbox_get(j->store, j->account, imap_mailbox_name(j->name), &m);
    if (j->found <= 0)
        return;
    j->rc = store_imap_append(j->store, j->account, m.id, j->data, j->len, j->flags, j->keywords,
                              j->date, &j->uid, &j->uidvalidity);
}

static void append_done(struct imap_cmd *c)
{
    struct append_job *j = c->job;
    if (j->found == 0)
        imap_no(c, "[TRYCREATE] Mailbox doesn't exist: %s", j->name);
    else if (j->found < 0 || j->rc < 0)
        imap_no_store(c, "Cannot append");
    else
        imap_ok(c, "[APPENDUID %u %u] Append completed.", j->uidvalidity, j->uid);
}

void imap_cmd_append(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    struct imap_parser *ps = &c->ps;
    char *name, *data;
    size_t len, dlen;
    uint32_t flags = 0;
    char *keywords = "";
    int64_t date = 0;
    if (imap_parse_sp(ps) < 0 || imap_parse_astring(ps, &name, &len) < 0 || imap_parse_sp(ps) < 0)
        goto bad;
    if (imap_parse_peek(ps, '(')) {
        if (imap_flags_parse(c, true, &flags, &keywords) < 0 || imap_parse_sp(ps) < 0)
            goto bad;
    }
    if (imap_parse_peek(ps, '"')) {
        if (imap_parse_date_time(ps, &date) < 0 || imap_parse_sp(ps) < 0)
            goto bad;
    }
    if (!imap_parse_peek(ps, '{') && !imap_parse_peek(ps, '~'))
        goto bad;
    if (imap_parse_string(ps, &data, &dlen) < 0 || imap_parse_end(ps) < 0)
        goto bad;
    if (!ps->literal8 && memchr(data, '\0', dlen) != NULL) {
        imap_no(c, "NUL octets need a literal8 (BINARY)");
        return;
    }
    if (dlen == 0) {
        imap_no(c, "Can't save an empty message");
        return;
    }
    if (dlen > s->cfg->message_size) {
        imap_no(c, "[TOOBIG] Message too large");
        return;
    }
    struct append_job *j = imap_pool_alloc(&c->pool, sizeof(*j));
    if (j == NULL) {
        imap_no(c, "[LIMIT] Out of memory");
        return;
    }
    *j = (struct append_job){ .store = imap_store(s), .account = s->account_id, .name = name,
                              .data = data, .len = dlen, .flags = flags, .keywords = keywords,
                              .date = date };
    imap_cmd_defer(c, append_work, append_done, j);
    return;
bad:
    imap_bad_syntax(c);
    return;
}
