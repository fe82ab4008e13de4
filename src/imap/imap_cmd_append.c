/* APPEND (RFC 9051 6.3.12) with UIDPLUS APPENDUID (RFC 4315), BINARY
 * literal8 (RFC 3516) and APPENDLIMIT (RFC 7889; the size limit itself is
 * enforced while the literal is read, see imap_server.c). */
#include <string.h>

#include "imap/imap_int.h"

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
    struct store_imap_mbox m;
    int r = store_imap_mailbox_get(imap_store(s), s->account_id, imap_mailbox_name(name), &m);
    if (r <= 0) {
        if (r == 0)
            imap_no(c, "[TRYCREATE] Mailbox doesn't exist: %s", name);
        else
            imap_no_store(c, "Cannot append");
        return;
    }
    uint32_t uid, uv;
    if (store_imap_append(imap_store(s), s->account_id, m.id, data, dlen, flags, keywords, date,
                          &uid, &uv) < 0) {
        imap_no_store(c, "Cannot append");
        return;
    }
    imap_ok(c, "[APPENDUID %u %u] Append completed.", uv, uid);
    return;
bad:
    imap_bad_syntax(c);
    return;
}
