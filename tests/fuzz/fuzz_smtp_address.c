/*
 * libFuzzer target: the stand-alone codecs of smtp_parse.c on the same
 * input: smtp_address_parse, xtext, base64 and SASL PLAIN.  Checks round
 * trips (encode then decode gives the input back; a strictly decoded
 * base64 text is the canonical encoding of its bytes) and output bounds.
 */
#include "smtp/smtp_parse.h"

#include <stdlib.h>
#include <string.h>

static void fuzz_address(const char *s)
{
    struct smtp_path p, again;
    if (smtp_address_parse(s, &p) != 0) {
        if (p.mailbox[0] || p.local[0] || p.domain[0])
            abort();
        return;
    }
    if (strlen(p.mailbox) > SMTP_PATH_MAX - 2 || strlen(p.local) > SMTP_LOCALPART_MAX)
        abort();
    if (smtp_address_parse(p.mailbox, &again) != 0 || strcmp(again.mailbox, p.mailbox) != 0)
        abort();
}

static void fuzz_xtext(const char *s, size_t len)
{
    char *dec = malloc(len + 1), *enc = malloc(3 * len + 1), *dec2 = malloc(len + 1);
    if (smtp_xtext_decode(s, dec, len + 1) == 0) {
        if (strlen(dec) > len || smtp_xtext_encode(dec, enc, 3 * len + 1) != 0)
            abort();
        if (smtp_xtext_decode(enc, dec2, len + 1) != 0 || strcmp(dec, dec2) != 0)
            abort();
    }
    if (smtp_xtext_encode(s, enc, 3 * len + 1) != 0)
        abort();
    if (smtp_xtext_decode(enc, dec2, len + 1) != 0 || strcmp(dec2, s) != 0)
        abort();
    free(dec);
    free(enc);
    free(dec2);
}

static void fuzz_base64(const unsigned char *data, size_t len)
{
    unsigned char *dec = malloc(len + 1), *dec2 = malloc(len + 1);
    char *enc = malloc(len / 3 * 4 + 5);
    long n = base64_decode((const char *)data, len, dec, len + 1);
    if (n >= 0) {
        /* strict decoding: the input, less trailing white space, is canonical */
        size_t trimmed = len;
        while (trimmed > 0 && strchr(" \t\r\n", data[trimmed - 1]) && data[trimmed - 1])
            trimmed--;
        char *enc1 = malloc((size_t)n / 3 * 4 + 5);
        long e = base64_encode(dec, (size_t)n, enc1, (size_t)n / 3 * 4 + 5);
        if (e < 0 || (size_t)e != trimmed || memcmp(enc1, data, trimmed) != 0)
            abort();
        free(enc1);
    }
    long e = base64_encode(data, len, enc, len / 3 * 4 + 5);
    if (e < 0 || (size_t)e != (len + 2) / 3 * 4 || enc[e] != '\0')
        abort();
    if (base64_decode(enc, (size_t)e, dec2, len + 1) != (long)len || memcmp(dec2, data, len) != 0)
        abort();
    if (len > 0 && base64_decode(enc, (size_t)e, dec2, len - 1) != -1)
        abort();
    free(dec);
    free(dec2);
    free(enc);
}

/* SASL PLAIN twice: on the input as base64 text, and on the input as the
 * decoded message (encoded here first). */
static void fuzz_sasl(const char *s, const unsigned char *data, size_t len)
{
    char zid[64], cid[64], pw[64];
    if (sasl_plain_decode(s, zid, sizeof(zid), cid, sizeof(cid), pw, sizeof(pw)) == 0) {
        if (cid[0] == '\0' || pw[0] == '\0')
            abort();
    }
    if (len > 512)
        return;
    char enc[1024];
    if (base64_encode(data, len, enc, sizeof(enc)) < 0)
        abort();
    int rc = sasl_plain_decode(enc, zid, sizeof(zid), cid, sizeof(cid), pw, sizeof(pw));
    size_t nuls = 0;
    for (size_t i = 0; i < len; i++)
        nuls += data[i] == '\0';
    if (rc == 0) {
        size_t a = strlen(zid), b = strlen(cid), c = strlen(pw);
        if (nuls != 2 || a + b + c + 2 != len || b == 0 || c == 0)
            abort();
        if (memcmp(data, zid, a) != 0 || memcmp(data + a + 1, cid, b) != 0 || memcmp(data + a + b + 2, pw, c) != 0)
            abort();
    } else if (zid[0] || cid[0] || pw[0]) {   /* nothing left behind on failure */
        abort();
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size > 16384)
        return 0;
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    size_t slen = strlen(s);
    fuzz_address(s);
    fuzz_xtext(s, slen);
    fuzz_base64(data, size);
    fuzz_sasl(s, data, size);
    free(s);
    return 0;
}
