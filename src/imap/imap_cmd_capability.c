/* CAPABILITY (RFC 9051 6.1.1). */
#include "imap/imap_int.h"

void imap_cmd_capability(struct imap_cmd *c)
{
    if (imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    struct strbuf sb;
    strbuf_init(&sb, 4096);
    imap_capability_string(c->s, &sb);
    imap_send(c->s, "* CAPABILITY %.*s", (int)sb.len, sb.data ? sb.data : "");
    strbuf_free(&sb);
    imap_ok(c, "Capability completed.");
}
