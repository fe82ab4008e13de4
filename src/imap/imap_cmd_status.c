/* STATUS (RFC 9051 6.3.11) with SIZE (RFC 8438) and HIGHESTMODSEQ
 * (RFC 7162).  The item writer is shared with LIST-STATUS. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_int.h"

int imap_status_items_parse(struct imap_cmd *c, unsigned *items_r)
{
    static const struct { const char *name; unsigned bit; } items[] = {
        { "MESSAGES", IMAP_STATUS_MESSAGES }, { "RECENT", IMAP_STATUS_RECENT },
        { "UIDNEXT", IMAP_STATUS_UIDNEXT }, { "UIDVALIDITY", IMAP_STATUS_UIDVALIDITY },
        { "UNSEEN", IMAP_STATUS_UNSEEN }, { "HIGHESTMODSEQ", IMAP_STATUS_HIGHESTMODSEQ },
        { "SIZE", IMAP_STATUS_SIZE }, { "DELETED", IMAP_STATUS_DELETED },
    };
    struct imap_parser *ps = &c->ps;
    *items_r = 0;
    if (imap_parse_open(ps) < 0)
        return -1;
    do {
        char *a;
        if (imap_parse_atom(ps, &a) < 0)
            return -1;
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++)
            if (strcasecmp(a, items[i].name) == 0)
                bit = items[i].bit;
        if (bit == 0) {
            ps->error = "unknown STATUS item";
            return -1;
        }
        *items_r |= bit;
    } while (imap_parse_char(ps, ' '));
    return imap_parse_close(ps);
}

int imap_status_write(struct imap_session *s, const struct store_imap_mbox *m, unsigned items,
                      struct strbuf *out)
{
    struct store_imap_counts cn = { 0 };
    if ((items & (IMAP_STATUS_MESSAGES | IMAP_STATUS_UNSEEN | IMAP_STATUS_SIZE |
                  IMAP_STATUS_DELETED | IMAP_STATUS_RECENT)) &&
        store_imap_counts(imap_store(s), m->id, &cn) < 0)
        return -1;
    const char *sp = "";
    strbuf_append(out, "(", 1);
    if (items & IMAP_STATUS_MESSAGES) {
        strbuf_printf(out, "%sMESSAGES %u", sp, cn.messages);
        sp = " ";
    }
    if (items & IMAP_STATUS_RECENT) {
        uint32_t claimed = imap_recent_claim(m->id, 0, false), recent = 0;
        uint32_t *uids = NULL;
        long n = store_imap_uids(imap_store(s), m->id, claimed + 1, &uids);
        recent = n > 0 ? (uint32_t)n : 0;
        free(uids);
        strbuf_printf(out, "%sRECENT %u", sp, recent);
        sp = " ";
    }
    if (items & IMAP_STATUS_UIDNEXT) {
        strbuf_printf(out, "%sUIDNEXT %u", sp, m->uidnext);
        sp = " ";
    }
    if (items & IMAP_STATUS_UIDVALIDITY) {
        strbuf_printf(out, "%sUIDVALIDITY %u", sp, m->uidvalidity);
        sp = " ";
    }
    if (items & IMAP_STATUS_UNSEEN) {
        strbuf_printf(out, "%sUNSEEN %u", sp, cn.unseen);
        sp = " ";
    }
    if (items & IMAP_STATUS_HIGHESTMODSEQ) {
        strbuf_printf(out, "%sHIGHESTMODSEQ %llu", sp, (unsigned long long)m->highestmodseq);
        sp = " ";
    }
    if (items & IMAP_STATUS_SIZE) {
        strbuf_printf(out, "%sSIZE %llu", sp, (unsigned long long)cn.size);
        sp = " ";
    }
    if (items & IMAP_STATUS_DELETED)
        strbuf_printf(out, "%sDELETED %u", sp, cn.deleted);
    return strbuf_append(out, ")", 1);
}

void imap_cmd_status(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    char *name;
    size_t len;
    unsigned items;
    if (imap_parse_sp(&c->ps) < 0 || imap_parse_astring(&c->ps, &name, &len) < 0 ||
        imap_parse_sp(&c->ps) < 0 || imap_status_items_parse(c, &items) < 0 ||
        imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    struct store_imap_mbox m;
    int r = store_imap_mailbox_get(imap_store(s), s->account_id, imap_mailbox_name(name), &m);
    if (r <= 0) {
        if (r == 0)
            imap_no(c, "[NONEXISTENT] Mailbox doesn't exist: %s", name);
        else
            imap_no_store(c, "Cannot get status");
        return;
    }
    struct strbuf sb;
    strbuf_init(&sb, 8192);
    strbuf_append(&sb, "* STATUS ", 9);
    imap_write_string(&sb, m.name, strlen(m.name));
    strbuf_append(&sb, " ", 1);
    if (imap_status_write(s, &m, items, &sb) < 0) {
        strbuf_free(&sb);
        imap_no_store(c, "Cannot get status");
        return;
    }
    strbuf_append(&sb, "\r\n", 2);
    imap_send_raw(s, sb.data, sb.len);
    strbuf_free(&sb);
    imap_ok(c, "Status completed.");
}
