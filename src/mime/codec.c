/*
 * Streaming base64 and quoted-printable decoders.  Both are byte-at-a-time
 * state machines underneath (so any chunking gives the same output) with
 * a fast path copying runs of ordinary bytes.
 */
#include <string.h>
#include <strings.h>
#include "mime/mime.h"
#include "mime/mime_codec.h"

/* ---- base64 ---- */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

void mime_b64_init(struct mime_b64 *st)
{
    memset(st, 0, sizeof(*st));
}

int mime_b64_decode(struct mime_b64 *st, const void *in, size_t len,
                    struct strbuf *out)
{
    const unsigned char *p = in;
    unsigned char buf[256];
    size_t n = 0;

    for (size_t i = 0; i < len && !st->ended; i++) {
        if (p[i] == '=') {
            st->ended = true;   /* padding: the data is over */
            break;
        }
        int v = b64_value(p[i]);
        if (v < 0)
            continue;
        st->acc = (st->acc << 6) | (uint32_t)v;
        st->nbits += 6;
        if (st->nbits >= 8) {
            st->nbits -= 8;
            buf[n++] = (unsigned char)(st->acc >> st->nbits);
            st->acc &= (1u << st->nbits) - 1;
            if (n == sizeof(buf)) {
                if (strbuf_append(out, buf, n) < 0)
                    return -1;
                n = 0;
            }
        }
    }
    return n > 0 ? strbuf_append(out, buf, n) : 0;
}

bool mime_b64_truncated(const struct mime_b64 *st)
{
    /* 6 leftover bits mean a lone character after full quanta */
    return st->nbits >= 6;
}

/* ---- quoted-printable ---- */

enum { QP_TEXT, QP_EQ, QP_EQ_HEX, QP_EQ_WS, QP_CR, QP_EQ_WS_CR };

void mime_qp_init(struct mime_qp *st)
{
    memset(st, 0, sizeof(*st));
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int put(struct strbuf *out, const void *d, size_t n)
{
    return n > 0 ? strbuf_append(out, d, n) : 0;
}

/* White space is held back until we know whether a line break follows
 * (then it is dropped) or text (then it is output).  When too much piles
 * up, the oldest is output: it cannot be trailing padding of a valid line
 * (RFC 2045 limits lines to 76 characters). */
static int ws_hold(struct mime_qp *st, char c, struct strbuf *out)
{
    if (st->nws == sizeof(st->ws)) {
        if (put(out, st->ws, st->nws) < 0)
            return -1;
        st->nws = 0;
    }
    st->ws[st->nws++] = c;
    return 0;
}

static int ws_flush(struct mime_qp *st, struct strbuf *out)
{
    int r = put(out, st->ws, st->nws);
    st->nws = 0;
    return r;
}

/* "=" then white space: a soft break if a line break follows; otherwise
 * the "=" and the white space were literal text. */
static int qp_eq_ws(struct mime_qp *st, char c, struct strbuf *out)
{
    if ((c == ' ' || c == '\t') && st->nws < sizeof(st->ws))
        return ws_hold(st, c, out);
    if (c == '\n') {            /* soft line break */
        st->nws = 0;
        st->state = QP_TEXT;
        return 0;
    }
    if (c == '\r') {
        st->state = QP_EQ_WS_CR;
        return 0;
    }
    st->state = QP_TEXT;
    if (put(out, "=", 1) < 0 || ws_flush(st, out) < 0)
        return -1;
    return 1;                   /* reprocess c as text */
}

/* One byte; returns -1 on output error, 1 when the byte must be fed again
 * in the new state, 0 otherwise. */
static int qp_byte(struct mime_qp *st, char c, struct strbuf *out)
{
    switch (st->state) {
    case QP_TEXT:
        if (c == ' ' || c == '\t')
            return ws_hold(st, c, out);
        if (c == '\n') {        /* hard break: trailing white space dropped */
            st->nws = 0;
            return put(out, "\n", 1);
        }
        if (c == '\r') {
            st->state = QP_CR;
            return 0;
        }
        if (ws_flush(st, out) < 0)
            return -1;
        if (c == '=') {
            st->state = QP_EQ;
            return 0;
        }
        return put(out, &c, 1);
    case QP_CR:
        st->state = QP_TEXT;
        if (c == '\n') {
            st->nws = 0;
            return put(out, "\r\n", 2);
        }
        if (ws_flush(st, out) < 0 || put(out, "\r", 1) < 0)
            return -1;
        return 1;
    case QP_EQ:
        if (hexval(c) >= 0) {
            st->hex1 = c;
            st->state = QP_EQ_HEX;
            return 0;
        }
        if (c == '\n') {        /* soft line break */
            st->state = QP_TEXT;
            return 0;
        }
        if (c == ' ' || c == '\t') {
            st->state = QP_EQ_WS;
            return ws_hold(st, c, out);
        }
        if (c == '\r') {
            st->state = QP_EQ_WS_CR;
            return 0;
        }
        st->state = QP_TEXT;
        if (put(out, "=", 1) < 0)
            return -1;
        return 1;
    case QP_EQ_HEX:
        st->state = QP_TEXT;
        if (hexval(c) >= 0) {
            char b = (char)(hexval(st->hex1) * 16 + hexval(c));
            return put(out, &b, 1);
        }
        {
            char lit[2] = { '=', st->hex1 };
            if (put(out, lit, 2) < 0)
                return -1;
        }
        return 1;
    case QP_EQ_WS:
        return qp_eq_ws(st, c, out);
    case QP_EQ_WS_CR:
        if (c == '\n') {        /* soft line break "=<ws>CRLF" */
            st->nws = 0;
            st->state = QP_TEXT;
            return 0;
        }
        st->state = QP_TEXT;
        if (put(out, "=", 1) < 0 || ws_flush(st, out) < 0 || put(out, "\r", 1) < 0)
            return -1;
        return 1;
    }
    return 0;
}

int mime_qp_decode(struct mime_qp *st, const void *in, size_t len,
                   struct strbuf *out)
{
    const char *p = in;
    size_t i = 0;

    while (i < len) {
        if (st->state == QP_TEXT && st->nws == 0) {
            /* fast path: copy a run of plain characters */
            size_t j = i;
            while (j < len && p[j] != '=' && p[j] != ' ' && p[j] != '\t' &&
                   p[j] != '\r' && p[j] != '\n')
                j++;
            if (j > i) {
                if (put(out, p + i, j - i) < 0)
                    return -1;
                i = j;
                continue;
            }
        }
        int r = qp_byte(st, p[i], out);
        if (r < 0)
            return -1;
        if (r == 0)
            i++;
    }
    return 0;
}

int mime_qp_finish(struct mime_qp *st, struct strbuf *out)
{
    int r = 0;

    switch (st->state) {
    case QP_EQ:
        /* "=" ending the data: a soft line break without its line end */
        break;
    case QP_EQ_HEX: {
        char lit[2] = { '=', st->hex1 };
        r = put(out, lit, 2);
        break;
    }
    case QP_EQ_WS:
    case QP_EQ_WS_CR:
        /* "=" and white space at the very end: a soft break */
        break;
    case QP_CR:
        r = put(out, "\r", 1);
        break;
    default:
        break;
    }
    /* trailing white space at the end of the data is dropped (rule 3) */
    st->nws = 0;
    st->state = QP_TEXT;
    return r;
}
