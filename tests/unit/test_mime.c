/*
 * MIME engine tests: the corpus (tests/data/mime, or $MIME_CORPUS) against
 * Dovecot's answers, then tables for headers, parameters, RFC 2047/2231,
 * the streaming decoders (whole and byte by byte), charsets, addresses,
 * offsets, malformed input and the limits.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "imap/imap_bodystructure.h"
#include "mime/mime.h"
#include "mime/mime_codec.h"
#include "unit.h"

#define BIG (1u << 28)

/* ---- helpers ---- */

static char *read_file(const char *path, size_t *len_r)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, alloc = 0, n;

    if (f == NULL)
        return NULL;
    do {
        if (alloc - len < 65536) {
            alloc = alloc ? alloc * 2 : 65536;
            buf = realloc(buf, alloc + 1);
            if (buf == NULL) {
                fclose(f);
                return NULL;
            }
        }
        n = fread(buf + len, 1, alloc - len, f);
        len += n;
    } while (n > 0);
    fclose(f);
    buf[len] = '\0';
    *len_r = len;
    return buf;
}

static bool same_bytes(const char *what, const char *got, size_t glen,
                       const char *want, size_t wlen)
{
    if (glen == wlen && memcmp(got, want, glen) == 0)
        return true;
    size_t i = 0;
    while (i < glen && i < wlen && got[i] == want[i])
        i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr, "  %s differs at byte %zu\n    got:  %.*s\n    want: %.*s\n", what, i,
            (int)((glen - from) < 120 ? glen - from : 120), got + from,
            (int)((wlen - from) < 120 ? wlen - from : 120), want + from);
    return false;
}

static size_t count_lf(const char *d, size_t a, size_t b)
{
    size_t n = 0;
    for (size_t i = a; i < b; i++)
        n += d[i] == '\n';
    return n;
}

/* Structural invariants every parse must satisfy. */
static bool check_tree(const struct mime_message *m)
{
    unsigned count = 0;
    const struct mime_part *p;

    if (m->root->hdr_offset != 0 || m->root->body_end != m->len)
        return false;
    for (p = m->root; p != NULL; p = mime_part_next(p)) {
        count++;
        if (!(p->hdr_offset <= p->hdr_end && p->hdr_end <= p->body_offset &&
              p->body_offset <= p->body_end && p->body_end <= m->len))
            return false;
        if (p->depth >= MIME_MAX_DEPTH)
            return false;
        if (p->body_lines != count_lf(m->data, p->body_offset, p->body_end) ||
            p->hdr_lines != count_lf(m->data, p->hdr_offset, p->body_offset))
            return false;
        size_t size = p->body_end - p->body_offset;
        if (p->body_vsize < size || p->body_vsize - size > p->body_lines)
            return false;
        if ((p->flags & MIME_PART_MESSAGE) &&
            (p->children == NULL || p->children->next != NULL ||
             p->children->hdr_offset != p->body_offset))
            return false;
        for (const struct mime_part *c = p->children; c != NULL; c = c->next) {
            if (c->parent != p || c->hdr_offset < p->body_offset || c->body_end > p->body_end)
                return false;
            if (c->next != NULL && c->body_end > c->next->hdr_offset)
                return false;
        }
    }
    return count == m->part_count && count <= MIME_MAX_PARTS;
}

static char *fmt(const struct mime_message *m, int what)
{
    struct strbuf sb;
    strbuf_init(&sb, BIG);
    int r = what == 2 ? imap_envelope_write(m, m->root, &sb)
                      : imap_bodystructure_write(m, m->root, what == 0, &sb);
    if (r < 0) {
        strbuf_free(&sb);
        return strdup("(error)");
    }
    return sb.data != NULL ? sb.data : strdup("");
}

static struct mime_message *parse_str(const char *s)
{
    return mime_parse(s, strlen(s));
}

static char *bs_of(const char *msg, bool ext)
{
    struct mime_message *m = parse_str(msg);
    char *r = fmt(m, ext ? 0 : 1);
    mime_message_free(m);
    return r;
}

static char *env_of(const char *msg)
{
    struct mime_message *m = parse_str(msg);
    char *r = fmt(m, 2);
    mime_message_free(m);
    return r;
}

/* ---- the corpus ---- */

static int eml_filter(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 4 && strcmp(d->d_name + n - 4, ".eml") == 0;
}

static void test_corpus(void)
{
    const char *dir = getenv("MIME_CORPUS");
    struct dirent **names;
    int n, passed = 0;
    static const char *const ext[] = { "bodystructure", "body", "envelope" };

    if (dir == NULL)
        dir = "tests/data/mime";
    n = scandir(dir, &names, eml_filter, alphasort);
    CHECK(n >= 40);
    for (int i = 0; i < n; i++) {
        char path[4096];
        size_t len, wlen;
        bool ok = true;

        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        char *data = read_file(path, &len);
        CHECK(data != NULL);
        if (data == NULL)
            continue;
        struct mime_message *m = mime_parse(data, len);
        CHECK(m != NULL);
        if (m == NULL) {
            free(data);
            continue;
        }
        if (!check_tree(m)) {
            fprintf(stderr, "FAIL %s: tree invariants\n", names[i]->d_name);
            ok = false;
        }
        for (int k = 0; k < 3; k++) {
            char epath[4200];
            snprintf(epath, sizeof(epath), "%.*s.%s", (int)(strlen(path) - 4), path, ext[k]);
            char *want = read_file(epath, &wlen);
            char *got = fmt(m, k);
            if (want == NULL) {
                fprintf(stderr, "FAIL %s: no %s\n", names[i]->d_name, epath);
                ok = false;
            } else if (!same_bytes(epath, got, strlen(got), want, wlen)) {
                ok = false;
            }
            free(want);
            free(got);
        }
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "FAIL corpus %s\n", names[i]->d_name);
        passed += ok;
        mime_message_free(m);
        free(data);
        free(names[i]);
    }
    free(names);
    printf("mime corpus: %d of %d messages match Dovecot\n", passed, n);
}

static uint64_t fnv1a64(const char *d, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)d[i]) * 0x100000001b3ull;
    return h;
}

/* 035-too-many-parts: built here byte for byte as make_corpus.py builds
 * it; Dovecot's answers are kept as length and hash (.digest). */
static void test_corpus_generated(void)
{
    const char *dir = getenv("MIME_CORPUS");
    char path[4096];
    size_t dlen;
    struct strbuf sb;

    if (dir == NULL)
        dir = "tests/data/mime";
    snprintf(path, sizeof(path), "%s/035-too-many-parts.digest", dir);
    char *digest = read_file(path, &dlen);
    CHECK(digest != NULL);
    if (digest == NULL)
        return;
    strbuf_init(&sb, BIG);
    strbuf_printf(&sb, "From: many@example.net\r\nTo: alice@example.org\r\n"
                  "Subject: %d parts\r\nMIME-Version: 1.0\r\n"
                  "Content-Type: multipart/mixed; boundary=p\r\n\r\n", 10003);
    for (int i = 1; i <= 10003; i++) {
        if (i == 9999)
            strbuf_printf(&sb, "--p\r\nContent-Type: multipart/alternative; boundary=q\r\n"
                          "\r\n--q\r\n\r\nq\r\n--q--\r\n");
        else
            strbuf_printf(&sb, "--p\r\n\r\n%d\r\n", i);
    }
    strbuf_printf(&sb, "--p--\r\n");
    struct mime_message *m = mime_parse(sb.data, sb.len);
    CHECK(m != NULL && check_tree(m) && m->overflow);
    static const char *const ext[] = { "bodystructure", "body", "envelope" };
    for (int k = 0; k < 3; k++) {
        char want[128], line[128];
        char *got = fmt(m, k);
        snprintf(want, sizeof(want), "%s %zu %016llx\n", ext[k], strlen(got),
                 (unsigned long long)fnv1a64(got, strlen(got)));
        char key[32];
        snprintf(key, sizeof(key), "%s ", ext[k]);
        const char *at = strstr(digest, key);
        while (at != NULL && at != digest && at[-1] != '\n')
            at = strstr(at + 1, key);
        snprintf(line, sizeof(line), "%.*s", at ? (int)(strcspn(at, "\n") + 1) : 0,
                 at ? at : "");
        CHECK_EQ_STR(want, line);
        free(got);
    }
    mime_message_free(m);
    strbuf_free(&sb);
    free(digest);
}

/* Every prefix of some corpus messages: truncated mail must parse too. */
static void test_corpus_prefixes(void)
{
    const char *dir = getenv("MIME_CORPUS");
    static const char *const files[] = {
        "006-forward-nested-twice.eml", "012-rfc2231-filenames.eml",
        "036-boundary-in-part-header.eml", "045-bare-lf-in-crlf.eml",
        "030-addresses.eml", "021-digest.eml",
    };
    char path[4096];
    int bad = 0;

    if (dir == NULL)
        dir = "tests/data/mime";
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        size_t len;
        snprintf(path, sizeof(path), "%s/%s", dir, files[f]);
        char *data = read_file(path, &len);
        CHECK(data != NULL);
        if (data == NULL)
            continue;
        for (size_t n = 0; n <= len; n++) {
            char *copy = malloc(n + 1);
            memcpy(copy, data, n);
            struct mime_message *m = mime_parse(copy, n);
            if (m == NULL || !check_tree(m))
                bad++;
            char *a = fmt(m, 0), *b = fmt(m, 2);
            free(a);
            free(b);
            mime_message_free(m);
            free(copy);
        }
        free(data);
    }
    CHECK_EQ_INT(bad, 0);
}

/* ---- header fields ---- */

static void test_header_iter(void)
{
    const char *msg = "Subject:   hello  \r\n"
                      "From : a@b\r\n"
                      "X-Folded: one\r\n\ttwo\r\n  three\r\n"
                      "NoColon\r\n"
                      "Empty:\r\n"
                      "Spaces:   \r\n"
                      "\r\n"
                      "body\r\n";
    struct mime_header_iter it;
    struct mime_header_field f;

    mime_header_iter_init(&it, msg, strlen(msg), 0);
    CHECK(mime_header_iter_next(&it, &f));
    CHECK(f.name_len == 7 && memcmp(f.name, "Subject", 7) == 0);
    CHECK(f.value_len == 7 && memcmp(f.value, "hello  ", 7) == 0);
    CHECK_EQ_INT(f.offset, 0);
    CHECK_EQ_INT(f.end, 20);
    CHECK(mime_header_iter_next(&it, &f));
    CHECK(f.name_len == 4 && memcmp(f.name, "From", 4) == 0);
    CHECK(f.value_len == 3 && memcmp(f.value, "a@b", 3) == 0);
    CHECK(mime_header_iter_next(&it, &f));
    CHECK(f.name_len == 8 && memcmp(f.value, "one\r\n\ttwo\r\n  three", f.value_len) == 0);
    CHECK_EQ_INT(f.value_len, 18);
    struct strbuf sb;
    strbuf_init(&sb, 1024);
    CHECK_EQ_INT(mime_header_unfold(f.value, f.value_len, false, &sb), 0);
    CHECK_EQ_STR(sb.data, "one\ttwo  three");
    strbuf_free(&sb);
    CHECK(mime_header_iter_next(&it, &f));
    CHECK(f.value == NULL && f.name_len == 7);
    CHECK(mime_header_iter_next(&it, &f));
    CHECK(f.value != NULL && f.value_len == 0);
    CHECK(mime_header_iter_next(&it, &f));
    CHECK(f.value_len == 2 && memcmp(f.value, "  ", 2) == 0);  /* only one space skipped */
    CHECK(!mime_header_iter_next(&it, &f));
    CHECK(it.has_body);
    CHECK_EQ_INT(it.body_offset, strlen(msg) - 6);
    CHECK_EQ_INT(it.header_end, strlen(msg) - 8);

    /* LF only, no empty line */
    const char *lf = "A: 1\nB: 2\n continued";
    mime_header_iter_init(&it, lf, strlen(lf), 0);
    CHECK(mime_header_iter_next(&it, &f));
    CHECK(mime_header_iter_next(&it, &f));
    CHECK(f.value_len == 12 && memcmp(f.value, "2\n continued", 12) == 0);
    CHECK(!mime_header_iter_next(&it, &f));
    CHECK(!it.has_body);
    CHECK_EQ_INT(it.body_offset, strlen(lf));

    /* mime_header_get and NUL replacement */
    const char *h = "X: a\r\nSubject: first\r\n second\r\nSubject: other\r\n\r\n";
    strbuf_init(&sb, 1024);
    CHECK_EQ_INT(mime_header_get(h, strlen(h), 0, "subject", &sb), 1);
    CHECK_EQ_STR(sb.data, "first second");
    strbuf_reset(&sb);
    CHECK_EQ_INT(mime_header_get(h, strlen(h), 0, "missing", &sb), 0);
    CHECK_EQ_INT(mime_header_unfold("a\0b", 3, true, &sb), 0);
    CHECK_EQ_STR(sb.data, "a\xef\xbf\xbd" "b");
    strbuf_free(&sb);
}

/* ---- parameters ---- */

static char *params_str(const char *s)
{
    struct mime_param *p;
    int n = mime_params_parse(s, strlen(s), &p);
    struct strbuf sb;

    strbuf_init(&sb, 1 << 20);
    strbuf_append(&sb, "", 0);
    for (int i = 0; i < n; i++)
        strbuf_printf(&sb, "%s%s=%s", i ? "|" : "", p[i].name, p[i].value);
    free(p);
    return sb.data;
}

static void test_params(void)
{
    static const struct { const char *in, *out; } t[] = {
        { "; charset=utf-8", "charset=utf-8" },
        { ";charset=\"utf-8\" (comment); a=b", "charset=utf-8|a=b" },
        { "; a=b; c; d=e", "a=b" },                     /* stops at the broken one */
        { "; a=b; c=; d=e; f=", "a=b|c=|d=e|f=" },
        { "; name==?utf-8?q?x?=; g=h", "name==?utf-8?q?x?=|g=h" },
        { "; q=\"a\\\"b\"; e=\"\"", "q=a\"b|e=" },
        { "; charset; foo=; bar=\"unterminated", "" },
        { ";; charset=utf-8", "" },
        { "; charset=utf-8;", "charset=utf-8" },
        { " garbage; filename=x", "filename=x" },       /* junk skipped to ';' */
        { "; CHARSET=UTF-8; charset=x", "CHARSET=UTF-8|charset=x" },
        /* RFC 2231 */
        { "; title*0=\"a\"; title*1=\"b\"; x*1=late; x*0=early", "title=ab|x=earlylate" },
        { "; name*=iso-8859-1'en'%E9t%E9.txt", "name*=iso-8859-1'en'%E9t%E9.txt" },
        { "; z*0=a; b=c; a*=x; m*1=2; m*0*=us-ascii''1", "b=c|a*=x|m*=us-ascii''12|z=a" },
        { "; charset=utf-8; charset*=x''y; a*1=q", "charset=utf-8|a*1=q|charset*=x''y" },
        { "; f*0*=utf-8''%E2%82%AC; f*1=\"50%.txt\"", "f*=utf-8''%E2%82%AC50%25.txt" },
        { "; f*0=plain; f*1*=%41", "f*=''plain%41" },
        { "; f*0=a; f*2=c", "f*0=a|f*2=c" },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char *got = params_str(t[i].in);
        CHECK_EQ_STR(got, t[i].out);
        free(got);
    }

    struct mime_param *p;
    struct strbuf sb;
    const char *s = "; filename*0*=iso-8859-1''Gr%FC%DFe; filename*1=\".txt\"; name=\"=?utf-8?q?caf=C3=A9?=\"";
    int n = mime_params_parse(s, strlen(s), &p);
    CHECK_EQ_INT(n, 2);
    strbuf_init(&sb, 1024);
    CHECK_EQ_INT(mime_param_get_utf8(p, (size_t)n, "filename", &sb), 1);
    CHECK_EQ_STR(sb.data, "Gr\xc3\xbc\xc3\x9f" "e.txt");
    strbuf_reset(&sb);
    CHECK_EQ_INT(mime_param_get_utf8(p, (size_t)n, "name", &sb), 1);
    CHECK_EQ_STR(sb.data, "caf\xc3\xa9");
    CHECK_EQ_INT(mime_param_get_utf8(p, (size_t)n, "size", &sb), 0);
    CHECK_EQ_STR(mime_param_get(p, (size_t)n, "NAME"), "=?utf-8?q?caf=C3=A9?=");
    strbuf_free(&sb);
    free(p);
}

/* ---- RFC 2047 / 2231 ---- */

static void test_rfc2047(void)
{
    static const struct { const char *in, *out; } t[] = {
        { "plain text", "plain text" },
        { "=?utf-8?q?caf=C3=A9?=", "caf\xc3\xa9" },
        { "=?UTF-8?B?w6k=?=", "\xc3\xa9" },
        { "=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=", "ab" },         /* 6.2 */
        { "=?ISO-8859-1?Q?a?=\r\n =?ISO-8859-1?Q?_b?=", "a b" },
        { "x =?utf-8?q?y?= z", "x y z" },
        { "=?utf-8?b?4oI=?= =?utf-8?b?rA==?=", "\xe2\x82\xac" },   /* split character */
        { "=?iso-8859-1?q?caf=E9?=", "caf\xc3\xa9" },
        { "=?iso-8859-1?q?=80?=", "\xe2\x82\xac" },                /* read as cp1252 */
        { "=?utf-8*en?q?lang?=", "lang" },                          /* RFC 2231 5 */
        { "=?koi8-r?B?8NLJ18XULCDNydI=?=", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, "
                                           "\xd0\xbc\xd0\xb8\xd1\x80" },
        { "=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=",
          "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf" },
        { "=?x-no-such-charset?q?abc?=", "abc" },
        { "=?utf-8?x?bad?=", "=?utf-8?x?bad?=" },
        { "=?utf-8?q?no end", "=?utf-8?q?no end" },
        { "=?utf-8?q?sp ace?=", "=?utf-8?q?sp ace?=" },
        { "a=?utf-8?q?b?=c", "abc" },
        { "8bit \xc3\xa9 ok, \xe9 bad", "8bit \xc3\xa9 ok, \xef\xbf\xbd bad" },
        { "=?utf-8?q?=FF?=", "\xef\xbf\xbd" },
        { "=?utf-8?q?a?= =?iso-8859-1?q?=E9?=", "a\xc3\xa9" },
    };
    struct strbuf sb;

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        strbuf_init(&sb, 1024);
        CHECK_EQ_INT(mime_rfc2047_decode(t[i].in, strlen(t[i].in), &sb), 0);
        CHECK_EQ_STR(sb.data != NULL ? sb.data : "", t[i].out);
        strbuf_free(&sb);
    }
    strbuf_init(&sb, 1024);
    CHECK_EQ_INT(mime_rfc2231_decode("utf-8'en'%E2%82%AC%20x", 22, &sb), 0);
    CHECK_EQ_STR(sb.data, "\xe2\x82\xac x");
    strbuf_reset(&sb);
    CHECK_EQ_INT(mime_rfc2231_decode("no-quotes%41", 12, &sb), 0);
    CHECK_EQ_STR(sb.data, "no-quotesA");
    strbuf_free(&sb);
}

/* ---- streaming decoders ---- */

static char *b64_run(const char *in, size_t step)
{
    struct mime_b64 st;
    struct strbuf sb;
    size_t len = strlen(in);

    mime_b64_init(&st);
    strbuf_init(&sb, 1 << 20);
    strbuf_append(&sb, "", 0);
    for (size_t i = 0; i < len; i += step)
        mime_b64_decode(&st, in + i, len - i < step ? len - i : step, &sb);
    return sb.data;
}

static void test_base64(void)
{
    static const struct { const char *in, *out; } t[] = {
        { "", "" },
        { "aGVsbG8=", "hello" },
        { "aGVs\r\nbG8g\r\nd29y\r\nbGQ=\r\n", "hello world" },
        { "aGVsbG8", "hello" },                 /* padding missing */
        { "aGV sbG8=junk after", "hello" },     /* ends at '=' */
        { "a*G!V\tsb.G8", "hello" },            /* junk skipped */
        { "YQ==YQ==", "a" },
        { "/+/+", "\xff\xef\xfe" },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        for (size_t step = 1; step <= 3; step += 2) {
            char *got = b64_run(t[i].in, step == 3 ? strlen(t[i].in) + 1 : step);
            CHECK_EQ_STR(got, t[i].out);
            free(got);
        }
    }
    struct mime_b64 st;
    struct strbuf sb;
    mime_b64_init(&st);
    strbuf_init(&sb, 100);
    mime_b64_decode(&st, "aGVsbG8gd", 9, &sb);
    CHECK(mime_b64_truncated(&st));
    strbuf_free(&sb);
}

static char *qp_run(const char *in, size_t step)
{
    struct mime_qp st;
    struct strbuf sb;
    size_t len = strlen(in);

    mime_qp_init(&st);
    strbuf_init(&sb, 1 << 20);
    strbuf_append(&sb, "", 0);
    for (size_t i = 0; i < len; i += step)
        mime_qp_decode(&st, in + i, len - i < step ? len - i : step, &sb);
    mime_qp_finish(&st, &sb);
    return sb.data;
}

static void test_qp(void)
{
    static const struct { const char *in, *out; } t[] = {
        { "plain", "plain" },
        { "caf=C3=A9", "caf\xc3\xa9" },
        { "lower=c3=a9", "lower\xc3\xa9" },
        { "soft=\r\nbreak", "softbreak" },
        { "soft=\nbreak", "softbreak" },
        { "soft=  \t\r\nbreak", "softbreak" },
        { "trailing   \r\nspace\t\nend  ", "trailing\r\nspace\nend" },
        { "bad=G1 =4", "bad=G1 =4" },
        { "eq at end=", "eq at end" },
        { "eq sp = x", "eq sp = x" },
        { "a=\rb", "a=\rb" },
        { "cr\ronly", "cr\ronly" },
        { "=3D=20=09", "= \t" },
        { "x  y", "x  y" },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        for (size_t step = 1; step <= 3; step++) {
            char *got = qp_run(t[i].in, step == 3 ? strlen(t[i].in) + 1 : step);
            CHECK_EQ_STR(got, t[i].out);
            free(got);
        }
    }
    /* a long run of white space in the middle survives */
    char in[1200], want[1200];
    memset(in, ' ', 1000);
    strcpy(in + 1000, "x\r\n");
    memcpy(want, in, 1004);
    for (size_t step = 1; step <= 7; step += 6) {
        char *got = qp_run(in, step);
        CHECK_EQ_STR(got, want);
        free(got);
    }
}

/* ---- charsets ---- */

static char *conv_run(const char *charset, const char *in, size_t len, size_t step)
{
    struct mime_charset_conv *cv = mime_charset_conv_new(charset);
    struct strbuf sb;

    strbuf_init(&sb, 1 << 20);
    strbuf_append(&sb, "", 0);
    for (size_t i = 0; i < len; i += step)
        mime_charset_conv_feed(cv, in + i, len - i < step ? len - i : step, &sb);
    mime_charset_conv_finish(cv, &sb);
    mime_charset_conv_free(cv);
    return sb.data;
}

static void test_charset(void)
{
    static const struct { const char *cs, *in, *out; } t[] = {
        { "utf-8", "caf\xc3\xa9", "caf\xc3\xa9" },
        { NULL, "a\xff" "b", "a\xef\xbf\xbd" "b" },
        { "us-ascii", "8bit \xc3\xa9", "8bit \xc3\xa9" },
        { "UTF8", "\xe2\x82", "\xef\xbf\xbd" },                 /* truncated */
        { "utf-8", "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
        { "utf-8", "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd" },     /* overlong */
        { "iso-8859-1", "caf\xe9 \x80", "caf\xc3\xa9 \xe2\x82\xac" },
        { "\"ISO-8859-15\"", "\xa4", "\xe2\x82\xac" },
        { "windows-1252", "\x93q\x94", "\xe2\x80\x9cq\xe2\x80\x9d" },
        { "koi8-r", "\xf0\xd2\xc9\xd7\xc5\xd4", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82" },
        { "ISO-2022-JP", "\x1b$B$3$s\x1b(Bx",
          "\xe3\x81\x93\xe3\x82\x93x" },
        { "shift_jis", "\x82\xa0", "\xe3\x81\x82" },
        { "gb2312", "\xc4\xe3", "\xe4\xbd\xa0" },
        { "x-bogus", "ok \xff", "ok \xef\xbf\xbd" },
        { "utf-16le", "a\0b\0", "ab" },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        size_t len = strlen(t[i].in);
        if (t[i].cs != NULL && strcmp(t[i].cs, "utf-16le") == 0)
            len = 4;
        for (size_t step = 1; step <= 2; step++) {
            char *got = conv_run(t[i].cs, t[i].in, len, step == 2 ? len + 1 : 1);
            CHECK_EQ_STR(got, t[i].out);
            free(got);
        }
    }
    struct mime_charset_conv *cv = mime_charset_conv_new("x-bogus");
    CHECK(!mime_charset_conv_known(cv));
    mime_charset_conv_free(cv);
    cv = mime_charset_conv_new("ks_c_5601-1987");
    CHECK(mime_charset_conv_known(cv));
    mime_charset_conv_free(cv);
}

/* ---- addresses ---- */

static char *addr_str(const char *in)
{
    struct mime_address *a, *l;
    struct strbuf sb;

    strbuf_init(&sb, 1 << 20);
    strbuf_append(&sb, "", 0);
    if (mime_address_parse(in, strlen(in), true, &l) < 0)
        return strdup("(oom)");
    for (a = l; a != NULL; a = a->next)
        strbuf_printf(&sb, "[%s|%s|%s|%s]", a->name ? a->name : "-", a->route ? a->route : "-",
                      a->mailbox ? a->mailbox : "-", a->domain ? a->domain : "-");
    mime_address_free(l);
    return sb.data;
}

static void test_addresses(void)
{
    static const struct { const char *in, *out; } t[] = {
        { "", "" },
        { "a@b.c", "[-|-|a|b.c]" },
        { "\"Joe Q. Public\" <john@x.test>", "[Joe Q. Public|-|john|x.test]" },
        { "A.B. Name <ab@x>", "[A.B. Name|-|ab|x]" },
        { "bbb@ddd.com (John X. Doe)", "[John X. Doe|-|bbb|ddd.com]" },
        { "pete(his account)@silly.test(his host)", "[his host|-|pete|silly.test]" },
        { "(only comment) c@x", "[-|-|c|x]" },
        { "<@route1,@route2:user@host>", "[-|@route1,@route2|user|host]" },
        { "<@bad b@c>", "[-|INVALID_ROUTE|b|c]" },
        { "\"quoted local\"@x.y", "[-|-|quoted local|x.y]" },
        { "a@[1.2.3.4]", "[-|-|a|[1.2.3.4]]" },
        { "localonly", "[-|-|localonly|MISSING_DOMAIN]" },
        { "John Doe", "[John Doe|-|MISSING_MAILBOX|MISSING_DOMAIN]" },
        { "\"x\"", "[x|-|MISSING_MAILBOX|MISSING_DOMAIN]" },
        { "\"x\" (c)", "[c|-|x|MISSING_DOMAIN]" },
        { "<>", "[-|-|MISSING_MAILBOX|MISSING_DOMAIN]" },
        { "<a@b", "[-|-|a|SYNTAX_ERROR]" },
        { "@b, c@", "[-|-|MISSING_MAILBOX|b][-|-|c|MISSING_DOMAIN]" },
        { ",,, a@b ,,", "[-|-|MISSING_MAILBOX|MISSING_DOMAIN][-|-|MISSING_MAILBOX|MISSING_DOMAIN]"
                        "[-|-|MISSING_MAILBOX|MISSING_DOMAIN][-|-|a|b][-|-|MISSING_MAILBOX|MISSING_DOMAIN]" },
        { "G: a@b, c@d;", "[-|-|G|-][-|-|a|b][-|-|c|d][-|-|-|-]" },
        { "Undisclosed recipients:;", "[-|-|Undisclosed recipients|-][-|-|-|-]" },
        { "G1: a@b, G2: c@d; ;", "[-|-|G1|-][-|-|a|b][-|-|G2|MISSING_DOMAIN][-|-|-|-]" },
        { "a@b@c, d@e", "[-|-|a|b]" },
        { "x@y.z., x @ y . z", "[-|-|x|MISSING_DOMAIN][-|-|x|y.z]" },
        { "\"a\\\\b \\\" c\" <a@b>", "[a\\b \" c|-|a|b]" },
        { "=?utf-8?q?J=C3=B6rg?= <j@x>", "[=?utf-8?q?J=C3=B6rg?=|-|j|x]" },
        { "\"a\0b\" <a@b>", "[a" },     /* C string ends at the NUL */
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char *got = addr_str(t[i].in);
        if (strcmp(t[i].out, "[a") == 0) {
            /* NUL inside a quoted name becomes U+FFFD */
            struct mime_address *l;
            CHECK_EQ_INT(mime_address_parse("\"a\0b\" <a@b>", 11, true, &l), 0);
            CHECK(l != NULL && strcmp(l->name, "a\xef\xbf\xbd" "b") == 0);
            mime_address_free(l);
        } else {
            CHECK_EQ_STR(got, t[i].out);
        }
        free(got);
    }
}

/* ---- structure, offsets ---- */

static void test_offsets(void)
{
    const char *msg =
        "Content-Type: multipart/mixed; boundary=b\r\n"     /* 0..43 */
        "\r\n"                                              /* 43 */
        "pre\r\n"                                           /* 45 */
        "--b\r\n"                                           /* 50 */
        "Content-Type: text/plain\r\n"                      /* 55 */
        "\r\n"                                              /* 81 */
        "one\r\n"                                           /* 83: body, ends at 86 */
        "--b\r\n"                                           /* 88 */
        "\r\n"                                              /* 93: empty header */
        "two\r\n"                                           /* 95 */
        "\r\n"                                              /* 100 */
        "--b--\r\n"                                         /* 102 */
        "epilogue\r\n";                                     /* 109..119 */
    struct mime_message *m = parse_str(msg);
    const struct mime_part *r = m->root, *a, *b;

    CHECK(check_tree(m));
    CHECK_EQ_INT(m->part_count, 3);
    CHECK(r->flags & MIME_PART_MULTIPART);
    CHECK_EQ_INT(r->hdr_end, 43);
    CHECK_EQ_INT(r->body_offset, 45);
    CHECK_EQ_INT(r->body_end, strlen(msg));
    a = r->children;
    b = a->next;
    CHECK_EQ_INT(a->hdr_offset, 55);
    CHECK_EQ_INT(a->hdr_end, 81);
    CHECK_EQ_INT(a->body_offset, 83);
    CHECK_EQ_INT(a->body_end, 86);
    CHECK_EQ_INT(a->body_lines, 0);
    CHECK_EQ_INT(a->hdr_lines, 2);
    CHECK_EQ_INT(a->hdr_vsize, 28);
    CHECK_EQ_INT(b->hdr_offset, 93);
    CHECK_EQ_INT(b->body_offset, 95);
    CHECK_EQ_INT(b->body_end, 100);
    CHECK_EQ_INT(b->body_lines, 1);
    CHECK(b->next == NULL && b->type == NULL && mime_part_is_text(b));
    char ct[64];
    CHECK_EQ_STR(mime_part_content_type(b, ct, sizeof(ct)), "text/plain");
    CHECK_EQ_STR(mime_part_content_type(r, ct, sizeof(ct)), "multipart/mixed");
    CHECK(imap_section_part(m, "") == r);
    CHECK(imap_section_part(m, "1") == a);
    CHECK(imap_section_part(m, "2") == b);
    CHECK(imap_section_part(m, "3") == NULL);
    CHECK(imap_section_part(m, "1.1") == NULL);
    CHECK(imap_section_part(m, "x") == NULL);
    mime_message_free(m);

    /* LF only: virtual sizes count CRLF */
    m = parse_str("Subject: x\n\nab\ncd\n");
    CHECK_EQ_INT(m->root->body_offset, 12);
    CHECK_EQ_INT(m->root->body_vsize, 8);
    CHECK_EQ_INT(m->root->hdr_vsize, 14);
    CHECK_EQ_INT(m->root->body_lines, 2);
    mime_message_free(m);

    /* message/rfc822: child header starts at the body; section numbers */
    m = parse_str("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
                  "Content-Type: message/rfc822\r\n\r\nSubject: in\r\n"
                  "Content-Type: multipart/alternative; boundary=y\r\n\r\n--y\r\n\r\nA\r\n"
                  "--y\r\n\r\nB\r\n--y--\r\n--x--\r\n");
    CHECK(check_tree(m));
    const struct mime_part *msgp = m->root->children;
    CHECK(msgp->flags & MIME_PART_MESSAGE);
    CHECK(imap_section_part(m, "1") == msgp);
    CHECK(imap_section_part(m, "1.1") == msgp->children->children);
    CHECK(imap_section_part(m, "1.2") == msgp->children->children->next);
    CHECK(imap_section_part(m, "1.3") == NULL);
    mime_message_free(m);

    /* a single part is part 1; part 1 of a message/rfc822 root */
    m = parse_str("Subject: x\r\n\r\nbody");
    CHECK(imap_section_part(m, "1") == m->root);
    CHECK(imap_section_part(m, "2") == NULL);
    CHECK(imap_section_part(m, "1.") == NULL);
    mime_message_free(m);
}

static void test_malformed(void)
{
    static const struct { const char *msg, *bs; } t[] = {
        { "", "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)" },
        { "\r\n", "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)" },
        { "no header at all", "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)" },
        /* missing final boundary: the last part runs to the end */
        { "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n",
          "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0 NIL NIL NIL NIL)"
          "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 1 NIL NIL NIL NIL)"
          " \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)" },
        /* no boundary parameter / boundary never found */
        { "Content-Type: multipart/mixed\r\n\r\n--b\r\nx\r\n--b--\r\n",
          "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)"
          " \"mixed\" NIL NIL NIL NIL)" },
        /* a boundary line inside a part header */
        { "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n"
          "--b\r\n\r\ntwo\r\n--b--\r\n",
          "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)"
          "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0 NIL NIL NIL NIL)"
          " \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)" },
        /* multipart/digest defaults to message/rfc822 */
        { "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: s\r\n\r\nb\r\n--d--\r\n",
          "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 15 (NIL \"s\" NIL NIL NIL NIL NIL NIL NIL NIL)"
          " (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL) 2"
          " NIL NIL NIL NIL) \"digest\" (\"boundary\" \"d\") NIL NIL NIL)" },
        /* broken types */
        { "Content-Type: foo\r\n\r\nx", "(\"foo\" \"\" NIL NIL NIL \"7bit\" 1 NIL NIL NIL NIL)" },
        { "Content-Type: text/plain garbage\r\n\r\nx", "(\"\" \"\" NIL NIL NIL \"7bit\" 1 NIL NIL NIL NIL)" },
        { "Content-Type: text\r\n\r\nx", "(\"text\" \"\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL)" },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct mime_message *m = parse_str(t[i].msg);
        CHECK(m != NULL && check_tree(m));
        char *got = fmt(m, 0);
        CHECK_EQ_STR(got, t[i].bs);
        free(got);
        mime_message_free(m);
    }

    /* ENVELOPE details */
    static const struct { const char *msg, *env; } e[] = {
        { "Subject: a\r\n\tb\r\n\r\n", "(NIL {3}\r\na b NIL NIL NIL NIL NIL NIL NIL NIL)" },
        { "Subject:   x  \r\n\r\n", "(NIL {1}\r\nx NIL NIL NIL NIL NIL NIL NIL NIL)" },
        { "Subject: a \"q\"\r\n\r\n", "(NIL {5}\r\na \"q\" NIL NIL NIL NIL NIL NIL NIL NIL)" },
        { "Date:   \r\nMessage-ID:\r\n <x@y>\r\n\r\n",
          "(\"  \" NIL NIL NIL NIL NIL NIL NIL NIL \" <x@y>\")" },
        { "From: a@b\r\nFrom: c@d\r\nSubject: 1\r\nSubject: 2\r\n\r\n",
          "(NIL \"2\" ((NIL NIL \"a\" \"b\")(NIL NIL \"c\" \"d\")) ((NIL NIL \"a\" \"b\")"
          "(NIL NIL \"c\" \"d\")) ((NIL NIL \"a\" \"b\")(NIL NIL \"c\" \"d\")) NIL NIL NIL NIL NIL)" },
        { "From: x@y\r\nSender:\r\nTo: G: ;\r\n\r\n",
          "(NIL NIL ((NIL NIL \"x\" \"y\")) ((NIL NIL \"x\" \"y\")) ((NIL NIL \"x\" \"y\"))"
          " ((NIL NIL \"G\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL)" },
        { "Subject: caf\xc3\xa9\r\n\r\n", "(NIL {5}\r\ncaf\xc3\xa9 NIL NIL NIL NIL NIL NIL NIL NIL)" },
    };
    for (size_t i = 0; i < sizeof(e) / sizeof(e[0]); i++) {
        char *got = env_of(e[i].msg);
        CHECK_EQ_STR(got, e[i].env);
        free(got);
    }

    /* quoting: 4 quote-specials quoted, the 5th makes a literal */
    char *got = bs_of("Content-Type: text/plain\r\nContent-ID: 1\"2\"3\"4\"5\"\r\n"
                      "Content-Description: 1\"2\"3\"4\"\r\n\r\n", false);
    CHECK_EQ_STR(got, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") {10}\r\n1\"2\"3\"4\"5\""
                      " \"1\\\"2\\\"3\\\"4\\\"\" \"7bit\" 0 0)");
    free(got);
}

/* Random mutations of a real message never break the invariants. */
static void test_garbage(void)
{
    const char *base =
        "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n"
        "Content-Type: message/rfc822\r\n\r\nContent-Type: multipart/alternative; boundary=c\r\n"
        "\r\n--c\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n\r\nx\r\n--c--\r\n--b\r\n"
        "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nFrom: a@b\r\n\r\n--d--\r\n--b--\r\n";
    size_t len = strlen(base);
    char *buf = malloc(len);
    unsigned seed = 12345;
    int bad = 0;
    static const char alphabet[] = "-\r\n:;\"=b\\(<@c\0d";

    for (int round = 0; round < 20000; round++) {
        memcpy(buf, base, len);
        for (int k = 0; k < 1 + round % 8; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            buf[pos] = alphabet[(seed >> 8) % (sizeof(alphabet) - 1)];
        }
        struct mime_message *m = mime_parse(buf, len);
        if (m == NULL || !check_tree(m))
            bad++;
        char *a = fmt(m, 0), *b = fmt(m, 1), *c = fmt(m, 2);
        free(a);
        free(b);
        free(c);
        for (const struct mime_part *p = m->root; p != NULL; p = mime_part_next(p)) {
            struct strbuf sb;
            strbuf_init(&sb, 1 << 20);
            mime_part_decode(m, p, true, &sb);
            strbuf_free(&sb);
        }
        mime_message_free(m);
    }
    free(buf);
    CHECK_EQ_INT(bad, 0);
}

/* The limits hold and parsing stays linear on hostile input. */
static void test_limits(void)
{
    struct strbuf sb;
    strbuf_init(&sb, BIG);

    /* 99 nested multiparts with 80-byte boundaries sharing a 79-byte
     * prefix, then a megabyte of lines matching that prefix */
    char prefix[80];
    memset(prefix, 'q', 79);
    prefix[79] = '\0';
    for (int i = 0; i < 99; i++)
        strbuf_printf(&sb, "Content-Type: multipart/mixed; boundary=\"%s%c\"\r\n\r\n--%s%c\r\n",
                      prefix, 'A' + i % 26, prefix, 'A' + i % 26);
    while (sb.len < (4u << 20))
        strbuf_printf(&sb, "--%sz\r\n", prefix);
    clock_t t0 = clock();
    struct mime_message *m = mime_parse(sb.data, sb.len);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(m != NULL && check_tree(m));
    CHECK(secs < 20.0);     /* quadratic would take hours */
    unsigned maxdepth = 0;
    for (const struct mime_part *p = m->root; p != NULL; p = mime_part_next(p))
        if (p->depth > maxdepth)
            maxdepth = p->depth;
    CHECK(maxdepth < MIME_MAX_DEPTH);
    mime_message_free(m);

    /* 20000 empty parts: only MIME_MAX_PARTS are made */
    strbuf_reset(&sb);
    strbuf_printf(&sb, "Content-Type: multipart/mixed; boundary=p\r\n\r\n");
    for (int i = 0; i < 20000; i++)
        strbuf_printf(&sb, "--p\r\n\r\n");
    m = mime_parse(sb.data, sb.len);
    CHECK(m != NULL && check_tree(m));
    CHECK_EQ_INT(m->part_count, MIME_MAX_PARTS);
    CHECK(m->overflow);
    mime_message_free(m);

    /* a megabyte of header lines */
    strbuf_reset(&sb);
    while (sb.len < (1u << 20))
        strbuf_printf(&sb, "X-H: %s\r\n Content-Type: x\r\n", prefix);
    strbuf_printf(&sb, "\r\nbody");
    m = mime_parse(sb.data, sb.len);
    CHECK(m != NULL && check_tree(m) && m->root->body_vsize == 4);
    mime_message_free(m);
    strbuf_free(&sb);
}

/* Decoded bodies of corpus messages in various charsets. */
static void test_decode(void)
{
    const char *dir = getenv("MIME_CORPUS");
    static const struct { const char *file; const char *section; const char *want; } t[] = {
        { "008-latin1-qp-rfc2047.eml", "1", "la r\xc3\xa9union est d\xc3\xa9plac\xc3\xa9" "e" },
        { "009-windows-1252-8bit.eml", "1", "\xe2\x80\x9cSmart quotes\xe2\x80\x9d \xe2\x80\x93" },
        { "010-iso-2022-jp.eml", "1", "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf" },
        { "011-koi8-r.eml", "1", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, \xd0\xbc\xd0\xb8\xd1\x80!" },
        { "001-alternative-text-html.eml", "1", "on its way \xe2\x80\x93 expect" },
        { "002-mixed-pdf-attachment.eml", "2", "%PDF-1.4" },
        { "026-calendar-invite.eml", "1.1", "You have been invited" },
        { "006-forward-nested-twice.eml", "2.2.1", "G\xc3\xbcnter says hi" },
    };
    char path[4096];

    if (dir == NULL)
        dir = "tests/data/mime";
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        size_t len;
        snprintf(path, sizeof(path), "%s/%s", dir, t[i].file);
        char *data = read_file(path, &len);
        CHECK(data != NULL);
        if (data == NULL)
            continue;
        struct mime_message *m = mime_parse(data, len);
        const struct mime_part *p = imap_section_part(m, t[i].section);
        CHECK(p != NULL);
        if (p != NULL) {
            struct strbuf sb;
            strbuf_init(&sb, BIG);
            CHECK_EQ_INT(mime_part_decode(m, p, true, &sb), 0);
            CHECK(sb.data != NULL && memmem(sb.data, sb.len, t[i].want, strlen(t[i].want)) != NULL);
            if (sb.data == NULL || memmem(sb.data, sb.len, t[i].want, strlen(t[i].want)) == NULL)
                fprintf(stderr, "  %s: %.80s\n", t[i].file, sb.data ? sb.data : "(null)");
            strbuf_free(&sb);
        }
        mime_message_free(m);
        free(data);
    }
}

int main(void)
{
    RUN(test_corpus);
    RUN(test_corpus_generated);
    RUN(test_corpus_prefixes);
    RUN(test_header_iter);
    RUN(test_params);
    RUN(test_rfc2047);
    RUN(test_base64);
    RUN(test_qp);
    RUN(test_charset);
    RUN(test_addresses);
    RUN(test_offsets);
    RUN(test_malformed);
    RUN(test_garbage);
    RUN(test_limits);
    RUN(test_decode);
    return unit_report("mime");
}
