/* NAMESPACE (RFC 2342): one personal namespace, no others. */
#include "imap/imap_int.h"

void imap_cmd_namespace(struct imap_cmd *c)
{
    if (imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    imap_send(c->s, "* NAMESPACE ((\"\" \"%c\")) NIL NIL", IMAP_HIER_SEP);
    imap_ok(c, "Namespace completed.");
}
