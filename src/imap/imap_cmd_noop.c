/* NOOP (RFC 9051 6.1.2) and CHECK (RFC 3501 6.4.1): both report pending
 * mailbox updates (imap_ok syncs first); CHECK has nothing else to do
 * since every change is durable when its command completes. */
#include "imap/imap_int.h"

void imap_cmd_noop(struct imap_cmd *c)
{
    if (imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    imap_ok(c, "NOOP completed.");
}

void imap_cmd_check(struct imap_cmd *c)
{
    if (imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    imap_ok(c, "Check completed.");
}
