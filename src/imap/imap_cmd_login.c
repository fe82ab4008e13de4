/* LOGIN (RFC 9051 6.2.3): refused without TLS unless plaintext is
 * allowed (loopback in the development defaults). */
#include "imap/imap_int.h"

#include <string.h>

#include "net/server.h"

void imap_cmd_login(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    char *user, *pass;
    size_t ulen, plen;
    if (imap_parse_sp(&c->ps) < 0 || imap_parse_astring(&c->ps, &user, &ulen) < 0 ||
        imap_parse_sp(&c->ps) < 0 || imap_parse_astring(&c->ps, &pass, &plen) < 0 ||
        imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    if (!s->tls && !(s->loopback && s->cfg->plaintext_loopback)) {
        imap_no(c, "[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections.");
        return;
    }
    if (ulen != strlen(user) || plen != strlen(pass) || ulen >= sizeof(s->user) ||
        plen >= sizeof(s->auth_pass)) {
        imap_no(c, "[AUTHENTICATIONFAILED] Authentication failed.");
        return;
    }
    imap_auth_start(s, c->tag, user, pass);
    explicit_bzero(pass, plen);
}
