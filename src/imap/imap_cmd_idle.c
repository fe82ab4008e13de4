/* IDLE (RFC 2177): updates are pushed by imap_server.c until DONE. */
#include "imap/imap_int.h"

void imap_cmd_idle(struct imap_cmd *c)
{
    if (imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    imap_idle_start(c);
}
