/* ENABLE (RFC 5161): CONDSTORE, QRESYNC (implies CONDSTORE) and
 * IMAP4rev2.  Unknown capabilities are ignored, as the RFC asks. */
#include <strings.h>

#include "imap/imap_int.h"

void imap_cmd_enable(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    struct strbuf out;
    strbuf_init(&out, 1024);
    int n = 0;
    while (!imap_parse_at_end(&c->ps)) {
        char *cap;
        if (imap_parse_sp(&c->ps) < 0 || imap_parse_atom(&c->ps, &cap) < 0) {
            strbuf_free(&out);
            imap_bad_syntax(c);
            return;
        }
        n++;
        unsigned bit = strcasecmp(cap, "CONDSTORE") == 0   ? IMAP_EN_CONDSTORE
                       : strcasecmp(cap, "QRESYNC") == 0   ? IMAP_EN_QRESYNC | IMAP_EN_CONDSTORE
                       : strcasecmp(cap, "IMAP4rev2") == 0 ? IMAP_EN_REV2
                                                           : 0;
        if (bit == 0 || (s->enabled & bit) == bit)
            continue;
        s->enabled |= bit;
        strbuf_printf(&out, " %s", strcasecmp(cap, "IMAP4rev2") == 0 ? "IMAP4rev2" : cap);
    }
    if (n == 0) {
        strbuf_free(&out);
        imap_bad(c, "Error in IMAP command ENABLE: missing arguments");
        return;
    }
    imap_send(s, "* ENABLED%.*s", (int)out.len, out.data ? out.data : "");
    strbuf_free(&out);
    imap_ok(c, "Enabled.");
}
