/* AUTHENTICATE PLAIN (RFC 9051 6.2.2, RFC 4616) with SASL-IR (RFC 4959). */
#include "imap/imap_int.h"

#include <string.h>
#include <strings.h>

#include "mime/mime_codec.h"

/* Decodes a PLAIN response ("authzid NUL authcid NUL passwd", base64) and
 * starts the password check; answers itself on bad input. */
static void auth_plain(struct imap_session *s, const char *b64)
{
    struct strbuf out;
    strbuf_init(&out, 2048);
    struct mime_b64 st;
    mime_b64_init(&st);
    size_t len = strlen(b64);
    bool ok = len > 0 && mime_b64_decode(&st, b64, len, &out) == 0 && !mime_b64_truncated(&st);
    for (size_t i = 0; ok && i < len; i++) /* strict alphabet */
        ok = strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", b64[i]) != NULL;
    const char *d = out.data, *a1 = NULL, *a2 = NULL;
    if (ok && d) {
        a1 = memchr(d, '\0', out.len);
        a2 = a1 ? memchr(a1 + 1, '\0', out.len - (size_t)(a1 + 1 - d)) : NULL;
    }
    if (!ok || a2 == NULL || a2 == a1 + 1 || (size_t)(a2 + 1 - d) >= out.len ||
        memchr(a2 + 1, '\0', out.len - (size_t)(a2 + 1 - d)) != NULL) {
        if (out.data)
            explicit_bzero(out.data, out.len);
        strbuf_free(&out);
        imap_send(s, "%s BAD Invalid SASL PLAIN response", s->tag);
        return;
    }
    char user[ADDRESS_MAX], pass[512];
    size_t ul = (size_t)(a2 - a1 - 1), pl = out.len - (size_t)(a2 + 1 - d);
    if (ul >= sizeof(user) || pl >= sizeof(pass) || (a1 != d && ((size_t)(a1 - d) != ul ||
                                                                 memcmp(d, a1 + 1, ul) != 0))) {
        explicit_bzero(out.data, out.len);
        strbuf_free(&out);
        imap_send(s, "%s NO [AUTHENTICATIONFAILED] Authentication failed.", s->tag);
        return;
    }
    memcpy(user, a1 + 1, ul);
    user[ul] = '\0';
    memcpy(pass, a2 + 1, pl);
    pass[pl] = '\0';
    explicit_bzero(out.data, out.len);
    strbuf_free(&out);
    imap_auth_start(s, s->tag, user, pass);
    explicit_bzero(pass, sizeof(pass));
}

void imap_auth_continue(struct imap_session *s, const char *line)
{
    if (strcmp(line, "*") == 0) {
        imap_send(s, "%s BAD Authentication aborted", s->tag);
        return;
    }
    auth_plain(s, line);
}

void imap_cmd_authenticate(struct imap_cmd *c)
{
    struct imap_session *s = c->s;
    char *mech, *ir = NULL;
    if (imap_parse_sp(&c->ps) < 0 || imap_parse_atom(&c->ps, &mech) < 0) {
        imap_bad_syntax(c);
        return;
    }
    if (imap_parse_char(&c->ps, ' ') && imap_parse_atom(&c->ps, &ir) < 0) {
        imap_bad_syntax(c);
        return;
    }
    if (imap_parse_end(&c->ps) < 0) {
        imap_bad_syntax(c);
        return;
    }
    if (strcasecmp(mech, "PLAIN") != 0) {
        imap_no(c, "Unsupported authentication mechanism.");
        return;
    }
    if (!s->tls && !(s->loopback && s->cfg->plaintext_loopback)) {
        imap_no(c, "[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections.");
        return;
    }
    str_copy(s->tag, c->tag, sizeof(s->tag));
    if (ir != NULL) {
        auth_plain(s, strcmp(ir, "=") == 0 ? "" : ir);
        return;
    }
    imap_send(s, "+ ");
    s->io = IMAP_IO_AUTH;
}
