/*
 * Header value decoding: RFC 2047 encoded words, RFC 2231 extended
 * parameter values, and whole part bodies for search and display.
 */
#include <string.h>
#include <strings.h>
#include "mime/mime.h"
#include "mime/mime_codec.h"
#include "mime/mime_private.h"

#define CHARSET_MAX 64

/* One parsed encoded word "=?charset?enc?text?=". */
struct eword {
    char charset[CHARSET_MAX];  /* "*language" removed (RFC 2231 5) */
    char enc;                   /* 'B' or 'Q' */
    const char *text;
    size_t text_len;
    size_t len;                 /* of the whole word */
};

static bool parse_eword(const char *s, size_t n, struct eword *w)
{
    size_t i = 2, cs;

    if (n < 8 || s[0] != '=' || s[1] != '?')
        return false;
    for (cs = 0; i < n && s[i] != '?'; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f || cs + 1 >= CHARSET_MAX)
            return false;
        w->charset[cs++] = (char)c;
    }
    w->charset[cs] = '\0';
    char *star = strchr(w->charset, '*');
    if (star != NULL)
        *star = '\0';
    if (cs == 0 || i + 2 >= n || s[i + 2] != '?')
        return false;
    w->enc = (char)(s[i + 1] & ~0x20);
    if (w->enc != 'B' && w->enc != 'Q')
        return false;
    size_t t = i + 3;
    for (i = t; i + 1 < n; i++) {
        if (s[i] == '?' && s[i + 1] == '=')
            break;
        if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')
            return false;   /* RFC 2047 5: no white space inside */
    }
    if (i + 1 >= n)
        return false;
    w->text = s + t;
    w->text_len = i - t;
    w->len = i + 2;
    return true;
}

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c & ~0x20);
    return c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* RFC 2047 4.2: "_" is a space, "=XX" a byte; a bad "=" stays. */
static int decode_q(const char *s, size_t n, struct strbuf *out)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '_') {
            c = ' ';
        } else if (c == '=' && i + 2 < n && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
            c = (char)(hex(s[i + 1]) * 16 + hex(s[i + 2]));
            i += 2;
        }
        if (strbuf_append(out, &c, 1) < 0)
            return -1;
    }
    return 0;
}

static int decode_word(const struct eword *w, struct strbuf *raw)
{
    if (w->enc == 'Q')
        return decode_q(w->text, w->text_len, raw);
    struct mime_b64 b;
    mime_b64_init(&b);
    return mime_b64_decode(&b, w->text, w->text_len, raw);
}

/* Converts the decoded bytes of adjacent words in one charset. */
static int flush(char *charset, struct strbuf *raw, struct strbuf *out)
{
    int r = 0;

    if (raw->len > 0)
        r = mime_charset_to_utf8(charset, raw->data, raw->len, out);
    strbuf_reset(raw);
    charset[0] = '\0';
    return r;
}

int mime_rfc2047_decode(const char *in, size_t len, struct strbuf *out)
{
    struct strbuf raw;
    char cur[CHARSET_MAX] = "";
    size_t i = 0, text = 0;
    int r = 0;

    strbuf_init(&raw, len + 16);
    while (i < len && r == 0) {
        struct eword w;
        const char *q = memmem(in + i, len - i, "=?", 2);
        if (q == NULL)
            break;
        i = (size_t)(q - in);
        if (!parse_eword(in + i, len - i, &w)) {
            i += 2;
            continue;
        }
        /* text before the word; white space alone between two encoded
         * words is dropped (RFC 2047 6.2) */
        bool only_ws = raw.len > 0 || cur[0] != '\0';
        for (size_t k = text; k < i && only_ws; k++)
            only_ws = in[k] == ' ' || in[k] == '\t' || in[k] == '\r' || in[k] == '\n';
        if (!only_ws || strcasecmp(cur, w.charset) != 0) {
            r = flush(cur, &raw, out);
            if (r == 0 && !only_ws)
                r = mime_utf8_sanitize(in + text, i - text, out);
        }
        memcpy(cur, w.charset, sizeof(cur));
        if (r == 0)
            r = decode_word(&w, &raw);
        i += w.len;
        text = i;
    }
    if (r == 0)
        r = flush(cur, &raw, out);
    if (r == 0)
        r = mime_utf8_sanitize(in + text, len - text, out);
    strbuf_free(&raw);
    return r;
}

int mime_rfc2231_decode(const char *in, size_t len, struct strbuf *out)
{
    struct strbuf raw;
    char charset[CHARSET_MAX] = "";
    const char *q1 = memchr(in, '\'', len);
    const char *q2 = q1 != NULL ? memchr(q1 + 1, '\'', len - (size_t)(q1 + 1 - in)) : NULL;
    size_t start = 0;
    int r = 0;

    if (q2 != NULL && (size_t)(q1 - in) < sizeof(charset)) {
        memcpy(charset, in, (size_t)(q1 - in));
        charset[q1 - in] = '\0';
        start = (size_t)(q2 + 1 - in);
    }
    strbuf_init(&raw, len + 16);
    for (size_t i = start; i < len && r == 0; i++) {
        char c = in[i];
        if (c == '%' && i + 2 < len && hex(in[i + 1]) >= 0 && hex(in[i + 2]) >= 0) {
            c = (char)(hex(in[i + 1]) * 16 + hex(in[i + 2]));
            i += 2;
        }
        r = strbuf_append(&raw, &c, 1);
    }
    if (r == 0 && raw.len > 0)
        r = mime_charset_to_utf8(charset, raw.data, raw.len, out);
    strbuf_free(&raw);
    return r;
}

int mime_part_decode(const struct mime_message *msg,
                     const struct mime_part *part, bool to_utf8,
                     struct strbuf *out)
{
    const char *body = msg->data + part->body_offset;
    size_t len = part->body_end - part->body_offset;
    const char *enc = part->encoding;
    struct strbuf dec;
    int r;

    strbuf_init(&dec, out->cap);
    if (enc != NULL && strcasecmp(enc, "base64") == 0) {
        struct mime_b64 b;
        mime_b64_init(&b);
        r = mime_b64_decode(&b, body, len, &dec);
    } else if (enc != NULL && strcasecmp(enc, "quoted-printable") == 0) {
        struct mime_qp q;
        mime_qp_init(&q);
        r = mime_qp_decode(&q, body, len, &dec);
        if (r == 0)
            r = mime_qp_finish(&q, &dec);
    } else {
        r = strbuf_append(&dec, body, len);
    }
    if (r == 0) {
        if (to_utf8 && mime_part_is_text(part))
            r = mime_charset_to_utf8(mime_part_charset(part), dec.data, dec.len, out);
        else
            r = strbuf_append(out, dec.data != NULL ? dec.data : "", dec.len);
    }
    strbuf_free(&dec);
    return r;
}
