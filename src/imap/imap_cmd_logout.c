/* LOGOUT (RFC 9051 6.1.3). */
#include "imap/imap_int.h"

void imap_cmd_logout(struct imap_cmd *c)
{
    if (imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    imap_send(c->s, "* BYE Logging out");
    imap_send(c->s, "%s OK Logout completed.", c->tag);
    imap_close_with(c->s, NULL);
}
