/* COMPRESS DEFLATE (RFC 4978). */
#include <strings.h>

#include "imap/imap_int.h"

void imap_cmd_compress(struct imap_cmd *c)
{
    char *mech;
    if (imap_parse_sp(&c->ps) < 0 || imap_parse_atom(&c->ps, &mech) < 0 ||
        imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    if (strcasecmp(mech, "DEFLATE") != 0) {
        imap_no(c, "Unknown compression mechanism");
        return;
    }
    if (c->s->compressed) {
        imap_no(c, "[COMPRESSIONACTIVE] Compression already active");
        return;
    }
    imap_send(c->s, "%s OK DEFLATE active", c->tag);
    if (imap_compress_start(c->s) < 0)
        imap_close_with(c->s, NULL);
}
