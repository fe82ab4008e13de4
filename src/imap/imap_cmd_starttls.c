/* STARTTLS (RFC 9051 6.2.1): the handshake itself is in imap_server.c. */
#include "imap/imap_int.h"

void imap_cmd_starttls(struct imap_cmd *c)
{
    if (imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    imap_starttls(c);
}
