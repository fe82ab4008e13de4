/*
 * RFC 822/5322 lexical tokens for structured header values: comments,
 * atoms, quoted strings, domains, MIME tokens.  The tolerance rules (what
 * counts as an error, where white space may appear, what a NUL becomes)
 * follow Dovecot's rfc822-parser so that ENVELOPE and BODYSTRUCTURE agree
 * with it byte for byte; the code is ours.
 */
#include <string.h>
#include "mime/mime.h"
#include "mime/mime_private.h"

/* 0: not atext; 1: atext; 2: atext and MIME tspecial ("/", "=", "?"). */
static unsigned char atext_class(unsigned char c)
{
    if (c >= 0x80)
        return 1;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    if (c != '\0' && strchr("!#$%&'*+-^_`{|}~", c) != NULL)
        return 1;
    if (c == '/' || c == '=' || c == '?')
        return 2;
    return 0;
}

bool mime_is_atext(unsigned char c) { return atext_class(c) != 0; }
bool mime_is_token(unsigned char c) { return atext_class(c) == 1 || c == '.'; }

void mime_lex_init(struct mime_lex *lx, const char *s, size_t len)
{
    memset(lx, 0, sizeof(*lx));
    lx->p = (const unsigned char *)s;
    lx->end = lx->p + len;
}

static void put(struct mime_lex *lx, struct strbuf *out, const void *d, size_t n)
{
    if (n > 0 && out != NULL && strbuf_append(out, d, n) < 0)
        lx->oom = true;
}

int mime_append_fffd(struct strbuf *out)
{
    return strbuf_append(out, "\xef\xbf\xbd", 3);
}

static void put_nul(struct mime_lex *lx, struct strbuf *out)
{
    if (out != NULL && mime_append_fffd(out) < 0)
        lx->oom = true;
}

static int more(const struct mime_lex *lx) { return lx->p < lx->end ? 1 : 0; }

/* A comment, possibly nested; lx->p is at '('.  Its text (escapes
 * removed, line breaks dropped, NUL as U+FFFD) replaces lx->comment.  The
 * text is kept in runs, flushed where Dovecot flushes them (an escape, a
 * line break, a NUL, the closing parenthesis), so that an unterminated
 * comment leaves exactly what Dovecot leaves. */
static int skip_comment(struct mime_lex *lx)
{
    struct strbuf *c = lx->comment;
    const unsigned char *start;
    int level = 1;

    if (c != NULL)
        strbuf_reset(c);
    for (start = ++lx->p; lx->p < lx->end; lx->p++) {
        unsigned char ch = *lx->p;
        if (ch == '(') {
            level++;
        } else if (ch == ')') {
            if (--level == 0) {
                put(lx, c, start, (size_t)(lx->p - start));
                lx->p++;
                return more(lx);
            }
        } else if (ch == '\\') {
            if (lx->p + 1 >= lx->end)
                return -1;
            if (lx->p[1] == '\r' || lx->p[1] == '\n' || lx->p[1] == '\0')
                continue;       /* escapes nothing; the backslash stays */
            put(lx, c, start, (size_t)(lx->p - start));
            start = ++lx->p;    /* the escaped character starts the next run */
        } else if (ch == '\n') {
            size_t n = (size_t)(lx->p - start);
            if (n > 0 && lx->p[-1] == '\r')
                n--;
            put(lx, c, start, n);
            start = lx->p + 1;
        } else if (ch == '\0' && lx->nul_to_fffd) {
            put(lx, c, start, (size_t)(lx->p - start));
            put_nul(lx, c);
            start = lx->p + 1;
        }
    }
    return -1;
}

int mime_lex_skip_cfws(struct mime_lex *lx)
{
    while (lx->p < lx->end) {
        unsigned char ch = *lx->p;
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
            lx->p++;
        } else if (ch == '(') {
            if (skip_comment(lx) < 0)
                return -1;
        } else {
            break;
        }
    }
    return more(lx);
}

int mime_lex_atom(struct mime_lex *lx, struct strbuf *out)
{
    const unsigned char *start = lx->p;

    if (lx->p >= lx->end || !mime_is_atext(*lx->p))
        return -1;
    while (lx->p < lx->end && mime_is_atext(*lx->p))
        lx->p++;
    put(lx, out, start, (size_t)(lx->p - start));
    return lx->p < lx->end ? mime_lex_skip_cfws(lx) : 0;
}

/* dot-atom with RFC 822's white space around the dots; a dot must be
 * followed by an atom. */
int mime_lex_dot_atom(struct mime_lex *lx, struct strbuf *out)
{
    int ret;

    if (lx->p >= lx->end || !mime_is_atext(*lx->p))
        return -1;
    for (;;) {
        const unsigned char *start = lx->p;
        while (lx->p < lx->end && mime_is_atext(*lx->p))
            lx->p++;
        if (lx->p == start)
            return -1;
        put(lx, out, start, (size_t)(lx->p - start));
        if (lx->p >= lx->end)
            return 0;
        if ((ret = mime_lex_skip_cfws(lx)) <= 0)
            return ret;
        if (*lx->p != '.')
            return 1;
        lx->p++;
        put(lx, out, ".", 1);
        if (mime_lex_skip_cfws(lx) <= 0)
            return -1;
    }
}

int mime_lex_token(struct mime_lex *lx, struct strbuf *out)
{
    const unsigned char *start = lx->p;

    while (lx->p < lx->end && mime_is_token(*lx->p))
        lx->p++;
    put(lx, out, start, (size_t)(lx->p - start));
    return lx->p < lx->end ? mime_lex_skip_cfws(lx) : 0;
}

/* Quoted string at '"': escapes removed, line breaks dropped (folding),
 * NUL as U+FFFD.  Text is flushed in runs as in skip_comment(): an
 * unterminated string leaves only what came before its last escape. */
int mime_lex_quoted(struct mime_lex *lx, struct strbuf *out)
{
    const unsigned char *start;

    for (start = ++lx->p; lx->p < lx->end; lx->p++) {
        unsigned char ch = *lx->p;
        if (ch == '"') {
            put(lx, out, start, (size_t)(lx->p - start));
            lx->p++;
            return mime_lex_skip_cfws(lx);
        }
        if (ch == '\\') {
            if (lx->p + 1 >= lx->end)
                return -1;
            if (lx->p[1] == '\r' || lx->p[1] == '\n' || lx->p[1] == '\0')
                continue;       /* escapes nothing; the backslash stays */
            put(lx, out, start, (size_t)(lx->p - start));
            start = ++lx->p;
        } else if (ch == '\n') {
            size_t n = (size_t)(lx->p - start);
            if (n > 0 && lx->p[-1] == '\r')
                n--;
            put(lx, out, start, n);
            start = lx->p + 1;
        } else if (ch == '\0' && lx->nul_to_fffd) {
            put(lx, out, start, (size_t)(lx->p - start));
            put_nul(lx, out);
            start = lx->p + 1;
        }
    }
    return -1;
}

/* atext and dots, without skipping white space between them. */
static int atom_or_dot(struct mime_lex *lx, struct strbuf *out)
{
    const unsigned char *start = lx->p;

    while (lx->p < lx->end && (mime_is_atext(*lx->p) || *lx->p == '.'))
        lx->p++;
    put(lx, out, start, (size_t)(lx->p - start));
    return lx->p < lx->end ? mime_lex_skip_cfws(lx) : 0;
}

/* phrase = 1*word / obs-phrase; words joined by one space. */
int mime_lex_phrase(struct mime_lex *lx, struct strbuf *out)
{
    int ret;

    if (lx->p >= lx->end)
        return 0;
    if (*lx->p == '.')
        return -1;
    for (;;) {
        if (*lx->p == '"')
            ret = mime_lex_quoted(lx, out);
        else
            ret = atom_or_dot(lx, out);
        if (ret <= 0)
            return ret;
        if (!mime_is_atext(*lx->p) && *lx->p != '"' && *lx->p != '.')
            break;
        put(lx, out, " ", 1);
    }
    return mime_lex_skip_cfws(lx);
}

/* "[" ... "]" kept with its brackets and escapes. */
static int domain_literal(struct mime_lex *lx, struct strbuf *out)
{
    const unsigned char *start = lx->p;

    for (lx->p++; lx->p < lx->end; lx->p++) {
        unsigned char ch = *lx->p;
        if (ch == '[')
            return -1;
        if (ch == ']') {
            lx->p++;
            put(lx, out, start, (size_t)(lx->p - start));
            return mime_lex_skip_cfws(lx);
        }
        if (ch == '\n') {
            size_t n = (size_t)(lx->p - start);
            if (n > 0 && lx->p[-1] == '\r')
                n--;
            put(lx, out, start, n);
            start = lx->p + 1;
        } else if (ch == '\0' && lx->nul_to_fffd) {
            put(lx, out, start, (size_t)(lx->p - start));
            put_nul(lx, out);
            start = lx->p + 1;
        } else if (ch == '\\') {
            if (lx->p + 1 >= lx->end)
                return -1;
            if (lx->p[1] != '\r' && lx->p[1] != '\n' && lx->p[1] != '\0')
                lx->p++;
        }
    }
    return -1;
}

int mime_lex_domain(struct mime_lex *lx, struct strbuf *out)
{
    lx->p++;    /* '@' */
    if (mime_lex_skip_cfws(lx) <= 0)
        return -1;
    if (*lx->p == '[')
        return domain_literal(lx, out);
    return mime_lex_dot_atom(lx, out);
}

/* RFC 2045 5.1: type "/" subtype, white space and comments allowed around
 * the slash; what follows must be ';' or the end. */
int mime_lex_content_type(struct mime_lex *lx, struct strbuf *out)
{
    size_t start = out->len;
    int ret;

    if (mime_lex_skip_cfws(lx) <= 0)
        return -1;
    ret = mime_lex_token(lx, out);
    if (ret <= 0 || out->len == start)
        return -1;      /* a bare "type" at the end is kept */
    if (*lx->p != '/')
        goto broken;
    lx->p++;
    if (mime_lex_skip_cfws(lx) <= 0)
        goto broken;
    put(lx, out, "/", 1);
    size_t sub = out->len;
    ret = mime_lex_token(lx, out);
    if (ret < 0 || out->len == sub || (lx->p < lx->end && *lx->p != ';'))
        goto broken;
    return ret;
broken:
    out->len = start;
    if (out->data != NULL)
        out->data[start] = '\0';
    return -1;
}
