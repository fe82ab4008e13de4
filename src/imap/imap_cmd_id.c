/* ID (RFC 2971): the client's parameters are read and ignored. */
#include "imap/imap_int.h"

void imap_cmd_id(struct imap_cmd *c)
{
    struct imap_parser *ps = &c->ps;
    char *v;
    size_t len;
    if (imap_parse_sp(ps) < 0)
        goto bad;
    if (!imap_parse_peek(ps, '(')) {
        if (imap_parse_nstring(ps, &v, &len) < 0 || v != NULL)
            goto bad;
    } else {
        imap_parse_open(ps);
        for (int i = 0; !imap_parse_peek(ps, ')'); i++) {
            if (i > 0 && imap_parse_sp(ps) < 0)
                goto bad;
            if (i >= 60 || imap_parse_nstring(ps, &v, &len) < 0)
                goto bad;
        }
        if (imap_parse_close(ps) < 0)
            goto bad;
    }
    if (imap_parse_end(ps) < 0)
        goto bad;
    imap_send(c->s, "* ID (\"name\" \"postel\")");
    imap_ok(c, "ID completed.");
    return;
bad:
    imap_bad_syntax(c);
}
