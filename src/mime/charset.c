/*
 * Conversion to UTF-8 with glibc iconv.  Mail lies about its charset all
 * the time, so nothing here fails on bad input: an invalid byte becomes
 * U+FFFD and conversion goes on; an unknown charset is read as UTF-8.
 */
#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "mime/mime.h"
#include "mime/mime_codec.h"
#include "mime/mime_private.h"

#define CARRY_MAX 16            /* longest incomplete sequence kept */

struct mime_charset_conv {
    iconv_t cd;                 /* (iconv_t)-1: UTF-8 pass-through */
    bool known;
    unsigned char carry[CARRY_MAX];
    size_t ncarry;
};

/* Names mail uses that iconv lacks or reads too strictly.  Browsers and
 * mail readers read Latin-1 as windows-1252 (WHATWG Encoding), and so on. */
static const struct { const char *label, *iconv_name; } aliases[] = {
    { "iso-8859-1", "WINDOWS-1252" }, { "iso8859-1", "WINDOWS-1252" },
    { "iso_8859-1", "WINDOWS-1252" }, { "latin1", "WINDOWS-1252" },
    { "l1", "WINDOWS-1252" }, { "us-ascii", NULL }, { "ascii", NULL },
    { "utf-8", NULL }, { "utf8", NULL }, { "x-unknown", NULL },
    { "unknown", NULL }, { "unknown-8bit", NULL }, { "x-user-defined", NULL },
    { "default", NULL }, { "iso-8859-9", "WINDOWS-1254" },
    { "iso-8859-11", "WINDOWS-874" }, { "tis-620", "WINDOWS-874" },
    { "ks_c_5601-1987", "CP949" }, { "euc-kr", "CP949" },
    { "gb2312", "GB18030" }, { "gbk", "GB18030" }, { "x-gbk", "GB18030" },
    { "shift_jis", "CP932" }, { "shift-jis", "CP932" }, { "sjis", "CP932" },
    { "x-sjis", "CP932" }, { "windows-31j", "CP932" },
    { "iso-2022-jp", "ISO-2022-JP-2" }, { "big5", "BIG5-HKSCS" },
};

struct mime_charset_conv *mime_charset_conv_new(const char *charset)
{
    struct mime_charset_conv *cv = calloc(1, sizeof(*cv));
    const char *name = charset;
    char clean[64];

    if (cv == NULL)
        return NULL;
    cv->cd = (iconv_t)-1;
    cv->known = true;
    if (charset == NULL || charset[0] == '\0')
        return cv;
    /* "utf-8 " or "\"utf-8\"" happen; iconv also wants no "//" suffixes */
    size_t n = 0;
    for (const char *p = charset; *p != '\0' && n + 1 < sizeof(clean); p++) {
        if (*p == ' ' || *p == '\t' || *p == '"' || *p == '\'')
            continue;
        if (*p == '/')
            break;
        clean[n++] = *p;
    }
    clean[n] = '\0';
    name = clean;
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
        if (strcasecmp(clean, aliases[i].label) == 0) {
            if (aliases[i].iconv_name == NULL)
                return cv;
            name = aliases[i].iconv_name;
            break;
        }
    }
    if (n == 0)
        return cv;
    cv->cd = iconv_open("UTF-8", name);
    if (cv->cd == (iconv_t)-1)
        cv->known = false;  /* read as UTF-8 */
    return cv;
}

void mime_charset_conv_free(struct mime_charset_conv *cv)
{
    if (cv == NULL)
        return;
    if (cv->cd != (iconv_t)-1)
        iconv_close(cv->cd);
    free(cv);
}

bool mime_charset_conv_known(const struct mime_charset_conv *cv)
{
    return cv->known;
}

/* Length of the valid UTF-8 sequence at p: > 0 valid, 0 incomplete (more
 * input could make it valid), < 0 invalid (-n: n bytes to replace). */
static int utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    int len;
    unsigned char lo = 0x80, hi = 0xbf;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return -1;
    /* RFC 3629 4: no overlongs, no surrogates, nothing past U+10FFFF */
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n)
            return 0;
        unsigned char b = p[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xbf))
            return -i;
    }
    return len;
}

/* Appends valid UTF-8; an incomplete sequence at the end is left for the
 * caller when keep_tail (returns how many bytes were consumed). */
static size_t utf8_copy(const unsigned char *p, size_t n, bool keep_tail,
                        struct strbuf *out, bool *err)
{
    size_t i = 0, run = 0;

    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        int l = utf8_seq(p + i, n - i);
        if (l > 0) {
            i += (size_t)l;
            continue;
        }
        if (strbuf_append(out, p + run, i - run) < 0)
            *err = true;
        if (l == 0 && keep_tail)
            return i;
        if (mime_append_fffd(out) < 0)
            *err = true;
        i += l == 0 ? n - i : (size_t)-l;
        run = i;
    }
    if (strbuf_append(out, p + run, n - run) < 0)
        *err = true;
    return n;
}

int mime_utf8_sanitize(const void *in, size_t len, struct strbuf *out)
{
    bool err = false;
    utf8_copy(in, len, false, out, &err);
    return err ? -1 : 0;
}

/* Runs iconv over in; returns bytes consumed (an incomplete sequence at
 * the end is not consumed). */
static size_t run_iconv(struct mime_charset_conv *cv, const unsigned char *in,
                        size_t len, struct strbuf *out, bool *err)
{
    char buf[4096];
    char *ip = (char *)(uintptr_t)in;
    size_t il = len;

    while (il > 0) {
        char *op = buf;
        size_t ol = sizeof(buf);
        size_t r = iconv(cv->cd, &ip, &il, &op, &ol);
        int e = errno;
        if (op > buf && strbuf_append(out, buf, (size_t)(op - buf)) < 0) {
            *err = true;
            return len;
        }
        if (r != (size_t)-1 || e == E2BIG)
            continue;
        if (e == EINVAL)
            break;              /* incomplete: wait for more */
        /* EILSEQ (or anything else): replace one byte, go on */
        if (mime_append_fffd(out) < 0)
            *err = true;
        ip++;
        il--;
    }
    return len - il;
}

int mime_charset_conv_feed(struct mime_charset_conv *cv, const void *in,
                           size_t len, struct strbuf *out)
{
    const unsigned char *p = in;
    bool err = false;

    /* finish a sequence carried over from the last chunk first */
    while (cv->ncarry > 0 && len > 0) {
        cv->carry[cv->ncarry++] = *p++;
        len--;
        size_t used;
        if (cv->cd == (iconv_t)-1)
            used = utf8_copy(cv->carry, cv->ncarry, true, out, &err);
        else
            used = run_iconv(cv, cv->carry, cv->ncarry, out, &err);
        memmove(cv->carry, cv->carry + used, cv->ncarry - used);
        cv->ncarry -= used;
        if (cv->ncarry == CARRY_MAX) {  /* hopeless: give it up */
            if (mime_append_fffd(out) < 0)
                err = true;
            cv->ncarry = 0;
        }
    }
    if (len > 0) {
        size_t used = cv->cd == (iconv_t)-1 ? utf8_copy(p, len, true, out, &err)
                                            : run_iconv(cv, p, len, out, &err);
        size_t rest = len - used;
        if (rest >= CARRY_MAX) {
            if (mime_append_fffd(out) < 0)
                err = true;
        } else {
            memcpy(cv->carry, p + used, rest);
            cv->ncarry = rest;
        }
    }
    return err ? -1 : 0;
}

int mime_charset_conv_finish(struct mime_charset_conv *cv, struct strbuf *out)
{
    int r = 0;

    if (cv->ncarry > 0) {
        r = mime_append_fffd(out);
        cv->ncarry = 0;
    }
    if (cv->cd != (iconv_t)-1) {
        /* back to the initial shift state (ISO-2022-JP) */
        char buf[64], *op = buf;
        size_t ol = sizeof(buf);
        iconv(cv->cd, NULL, NULL, &op, &ol);
        if (op > buf && strbuf_append(out, buf, (size_t)(op - buf)) < 0)
            r = -1;
    }
    return r;
}

int mime_charset_to_utf8(const char *charset, const void *in, size_t len,
                         struct strbuf *out)
{
    struct mime_charset_conv *cv = mime_charset_conv_new(charset);
    int r;

    if (cv == NULL)
        return -1;
    r = mime_charset_conv_feed(cv, in, len, out);
    if (mime_charset_conv_finish(cv, out) < 0)
        r = -1;
    mime_charset_conv_free(cv);
    return r;
}
