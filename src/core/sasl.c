/*
 * Base64 (RFC 4648) and SASL PLAIN (RFC 4616) decoding shared by every
 * protocol that authenticates (SMTP AUTH, POP3 AUTH, the SMTP client).
 */
#include "core/sasl.h"

#include <stdbool.h>
#include <string.h>

#include "core/limits.h"
#include "core/util.h"

/* ------------------------------------------------------------------ base64 */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if ((c >= '0' && c <= '9'))
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict RFC 4648 4: whole quads, '=' only as the last one or two
 * characters, padding bits zero (3.5), no inner white space.  Trailing
 * white space (SP, HT, CR, LF) is ignored. */
long base64_decode(const char *in, size_t in_len, unsigned char *out, size_t out_size)
{
    while (in_len > 0 && strchr(" \t\r\n", in[in_len - 1]) != NULL && in[in_len - 1] != '\0')
        in_len--;
    if (in_len % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < in_len; i += 4) {
        int v[4], pad = 0;
        for (size_t k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            v[k] = b64_value(c);
            if (c == '=' && i + 4 == in_len && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (v[k] < 0 || pad > 0)
                return -1;
        }
        uint32_t q = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        if ((pad == 1 && (q & 0xff)) || (pad == 2 && (q & 0xffff)))
            return -1;
        size_t n = 3 - (size_t)pad;
        if (out_size - o < n)
            return -1;
        for (size_t k = 0; k < n; k++)
            out[o++] = (unsigned char)(q >> (16 - 8 * k));
    }
    return (long)o;
}

/* Writes the encoding and a NUL; out_size must hold 4 * ceil(n / 3) + 1. */
long base64_encode(const unsigned char *in, size_t in_len, char *out, size_t out_size)
{
    if (in_len > SIZE_MAX / 2 || out_size < (in_len + 2) / 3 * 4 + 1)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < in_len; i += 3) {
        size_t n = in_len - i < 3 ? in_len - i : 3;
        uint32_t q = (uint32_t)in[i] << 16;
        if (n > 1)
            q |= (uint32_t)in[i + 1] << 8;
        if (n > 2)
            q |= in[i + 2];
        out[o++] = b64_alphabet[q >> 18 & 63];
        out[o++] = b64_alphabet[q >> 12 & 63];
        out[o++] = n > 1 ? b64_alphabet[q >> 6 & 63] : '=';
        out[o++] = n > 2 ? b64_alphabet[q & 63] : '=';
    }
    out[o] = '\0';
    return (long)o;
}

/* ------------------------------------------------------------- SASL PLAIN */

/* Copies one field of a PLAIN message into out, NUL-terminated.  Identities
 * must be UTF-8 without controls (RFC 4616 2 SAFE; controls would also
 * end up in logs); the password only must not contain NUL, because clients
 * still send legacy 8-bit passwords. */
static int sasl_field(const unsigned char *s, size_t len, bool identity, char *out, size_t size)
{
    if (len >= size)
        return -1;
    if (identity) {
        for (size_t i = 0; i < len; i++)
            if (s[i] < 32 || s[i] == 127)
                return -1;
        if (!utf8_valid(s, len))
            return -1;
    }
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

int sasl_plain_decode(const char *b64, char *authzid, size_t authzid_size, char *authcid,
                      size_t authcid_size, char *passwd, size_t passwd_size)
{
    unsigned char buf[SMTP_AUTH_LINE_MAX / 4 * 3];
    size_t len = strnlen(b64, SMTP_AUTH_LINE_MAX + 1);
    if (authzid_size == 0 || authcid_size == 0 || passwd_size == 0)
        return -1;
    authzid[0] = authcid[0] = passwd[0] = '\0';
    if (len > SMTP_AUTH_LINE_MAX)
        return -1;
    long n = base64_decode(b64, len, buf, sizeof(buf));
    if (n < 0)
        return -1;
    const unsigned char *nul1 = memchr(buf, '\0', (size_t)n);
    if (nul1 == NULL)
        return -1;
    const unsigned char *cid = nul1 + 1, *end = buf + n;
    const unsigned char *nul2 = memchr(cid, '\0', (size_t)(end - cid));
    if (nul2 == NULL)
        return -1;
    const unsigned char *pw = nul2 + 1;
    if (memchr(pw, '\0', (size_t)(end - pw)) != NULL || nul2 == cid || pw == end)
        return -1;
    if (sasl_field(buf, (size_t)(nul1 - buf), true, authzid, authzid_size) < 0
        || sasl_field(cid, (size_t)(nul2 - cid), true, authcid, authcid_size) < 0
        || sasl_field(pw, (size_t)(end - pw), false, passwd, passwd_size) < 0) {
        authzid[0] = authcid[0] = '\0';
        explicit_bzero(passwd, passwd_size);
        explicit_bzero(buf, sizeof(buf));
        return -1;
    }
    explicit_bzero(buf, sizeof(buf));
    return 0;
}
