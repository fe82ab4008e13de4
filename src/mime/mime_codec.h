/*
 * Content decoding for SEARCH, DKIM and the capture UI: streaming base64
 * and quoted-printable decoders, charset conversion to UTF-8 (glibc
 * iconv), RFC 2047 encoded words and RFC 2231 parameter values.
 *
 * All decoders are tolerant: junk is skipped or passed through, invalid
 * bytes in a charset become U+FFFD, nothing fails except running out of
 * space in the output strbuf (its cap), which returns -1.  The streaming
 * decoders give the same output however the input is split into chunks.
 */
#ifndef POSTEL_MIME_CODEC_H
#define POSTEL_MIME_CODEC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/util.h"

struct mime_message;
struct mime_part;

/* ---- base64 (RFC 2045 6.8) ----
 * Characters outside the alphabet (line breaks, spaces, junk) are
 * skipped.  '=' ends the data; whatever follows it is ignored. */
struct mime_b64 {
    uint32_t acc;
    unsigned nbits;
    bool ended;
};
void mime_b64_init(struct mime_b64 *st);
int mime_b64_decode(struct mime_b64 *st, const void *in, size_t len,
                    struct strbuf *out);
/* True when the input ended in the middle of a quantum (bits dropped). */
bool mime_b64_truncated(const struct mime_b64 *st);

/* ---- quoted-printable (RFC 2045 6.7) ----
 * "=XX" decodes (either hex case), "=" before a line break is a soft line
 * break (white space between them allowed; so is "=" ending the data),
 * white space before a hard line break is dropped (rule 3).  A malformed
 * "=" is kept literally.
 * Line breaks come out as they went in (CRLF or LF). */
#define MIME_QP_WS_MAX 256      /* pending trailing white space kept back */
struct mime_qp {
    int state;
    char hex1;
    size_t nws;
    char ws[MIME_QP_WS_MAX];
};
void mime_qp_init(struct mime_qp *st);
int mime_qp_decode(struct mime_qp *st, const void *in, size_t len,
                   struct strbuf *out);
/* Flushes what is held back at the end of the input. */
int mime_qp_finish(struct mime_qp *st, struct strbuf *out);

/* ---- charsets ----
 * charset NULL, empty, us-ascii, utf-8 or unknown: the bytes are taken as
 * UTF-8 and invalid sequences become U+FFFD.  iso-8859-1 is read as
 * windows-1252 (as browsers and mail readers do).  Stateful charsets
 * (ISO-2022-JP) work across chunks. */
struct mime_charset_conv;
/* Never returns NULL except when out of memory. */
struct mime_charset_conv *mime_charset_conv_new(const char *charset);
void mime_charset_conv_free(struct mime_charset_conv *cv);
/* True when the charset is known to iconv (or is UTF-8/ASCII). */
bool mime_charset_conv_known(const struct mime_charset_conv *cv);
int mime_charset_conv_feed(struct mime_charset_conv *cv, const void *in,
                           size_t len, struct strbuf *out);
/* Ends the input: an incomplete sequence becomes U+FFFD. */
int mime_charset_conv_finish(struct mime_charset_conv *cv, struct strbuf *out);
/* One-shot conversion. */
int mime_charset_to_utf8(const char *charset, const void *in, size_t len,
                         struct strbuf *out);
/* Appends in[0..len) with invalid UTF-8 replaced by U+FFFD. */
int mime_utf8_sanitize(const void *in, size_t len, struct strbuf *out);

/* ---- header values ---- */
/* RFC 2047 encoded words ("=?charset?B|Q?text?=", also "charset*lang"
 * per RFC 2231 5) to UTF-8.  White space between adjacent encoded words is
 * dropped (RFC 2047 6.2); adjacent words in the same charset are joined
 * before conversion so a character split across words survives.  Text
 * outside encoded words is taken as UTF-8 (8-bit headers, RFC 6532). */
int mime_rfc2047_decode(const char *in, size_t len, struct strbuf *out);
/* An RFC 2231 extended value "charset'lang'%XX..." to UTF-8; a value
 * without the two quotes is taken as UTF-8 after %XX decoding. */
int mime_rfc2231_decode(const char *in, size_t len, struct strbuf *out);

/* ---- bodies ----
 * Appends the decoded body of a part: base64 and quoted-printable
 * undone; with to_utf8, a text part is converted from its charset. */
int mime_part_decode(const struct mime_message *msg,
                     const struct mime_part *part, bool to_utf8,
                     struct strbuf *out);
#endif
