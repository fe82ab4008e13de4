/*
 * DKIM tests: canonicalization tables (RFC 6376 3.4.5 and edge cases, body
 * cases run whole and one byte at a time), the header index, base64, tag
 * lists, DKIM-Signature and key record parsing, the RFC 8463 and RFC 6376
 * examples shipped by python3-dkim, sign-then-verify round trips (RSA and
 * Ed25519), every failure verdict, keygen and key selection.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/dkim_int.h"
#include "unit.h"

#define S(x) x, sizeof(x) - 1
#define DATA_DIR "/usr/lib/python3/dist-packages/dkim/tests/data/"

/* ---------------------------------------------------------------- canon */

static void sb_sink(void *arg, const char *data, size_t len)
{
    strbuf_append(arg, data, len);
}

static void canon_body(struct strbuf *out, enum dkim_canon c, const char *in, size_t len,
                       bool bytewise, bool has_l, uint64_t l)
{
    struct dkim_body_canon bc;
    strbuf_reset(out);
    strbuf_append(out, "", 0);
    dkim_body_init(&bc, c, has_l, l, sb_sink, out);
    if (bytewise)
        for (size_t i = 0; i < len; i++)
            dkim_body_feed(&bc, in + i, 1);
    else
        dkim_body_feed(&bc, in, len);
    dkim_body_final(&bc);
}

/* RFC 6376 3.4.3 / 3.4.4 written the plain way, line by line, as the
 * reference for the streaming canonicalizer on random bodies. */
static size_t ref_body_canon(enum dkim_canon c, const char *in, size_t len, char *out)
{
    size_t o = 0, pending = 0, pos = 0;
    while (pos < len) {
        const char *nl = memchr(in + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - in) : len, e = end;
        if (nl && e > pos && in[e - 1] == '\r')
            e--;
        size_t start = o;
        bool prev_wsp = false;
        for (size_t i = pos; i < e; i++) {
            bool wsp = in[i] == ' ' || in[i] == '\t';
            if (c == DKIM_CANON_RELAXED && wsp) {
                if (!prev_wsp)
                    out[o++] = ' ';
            } else {
                out[o++] = in[i];
            }
            prev_wsp = wsp;
        }
        if (c == DKIM_CANON_RELAXED)
            while (o > start && out[o - 1] == ' ')
                o--;
        if (o == start) {
            if (nl)
                pending++;
        } else {
            memmove(out + start + 2 * pending, out + start, o - start);
            for (size_t k = 0; k < pending; k++)
                memcpy(out + start + 2 * k, "\r\n", 2);
            o += 2 * pending;
            pending = 0;
            out[o++] = '\r';
            out[o++] = '\n';
        }
        pos = nl ? end + 1 : len;
    }
    if (c == DKIM_CANON_SIMPLE && o == 0) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    return o;
}

/* Random bodies (long lines past the canonicalizer's buffer, WSP runs,
 * stray CRs, empty lines) fed whole, in random pieces and with l=: every
 * way gives the reference's bytes. */
static void test_body_canon_random(void)
{
    static const char alphabet[] = "ab  \t\t\r\n\n.";
    struct strbuf got;
    strbuf_init(&got, 1 << 20);
    char *in = malloc(40000), *ref = malloc(200000);
    unsigned seed = 12345;
    for (int round = 0; round < 400; round++) {
        size_t len = (size_t)(rand_r(&seed) % (round % 10 == 0 ? 40000 : 300));
        /* every 20th body: lines of ~10 KB, longer than the buffer */
        int spread = round % 20 == 0 ? 20000 : round % 3 == 0 ? 400 : (int)sizeof(alphabet) - 1;
        for (size_t i = 0; i < len; i++) {
            int r = rand_r(&seed) % spread;
            in[i] = r < (int)sizeof(alphabet) - 1 ? alphabet[r] : (r % 2 ? 'x' : ' ');
        }
        for (int ci = 0; ci < 2; ci++) {
            enum dkim_canon c = ci ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
            size_t rlen = ref_body_canon(c, in, len, ref);
            canon_body(&got, c, in, len, false, false, 0);
            CHECK(got.len == rlen && memcmp(got.data, ref, rlen) == 0);
            /* random pieces */
            struct dkim_body_canon bc;
            strbuf_reset(&got);
            strbuf_append(&got, "", 0);
            dkim_body_init(&bc, c, false, 0, sb_sink, &got);
            for (size_t i = 0; i < len;) {
                size_t n = 1 + (size_t)(rand_r(&seed) % 700);
                n = n > len - i ? len - i : n;
                dkim_body_feed(&bc, in + i, n);
                i += n;
            }
            dkim_body_final(&bc);
            CHECK(got.len == rlen && memcmp(got.data, ref, rlen) == 0);
            uint64_t l = rlen ? (uint64_t)(rand_r(&seed) % rlen) : 0;
            canon_body(&got, c, in, len, false, true, l);
            CHECK(got.len == l && memcmp(got.data, ref, (size_t)l) == 0);
        }
    }
    free(in);
    free(ref);
    strbuf_free(&got);
}

/* Building blocks of the random bodies below: what the canonicalizer
 * treats specially (SP, HTAB, CR, LF, CRLF, bare CR, bare LF, WSP before a
 * line end, empty and WSP-only lines) between ordinary text, control and
 * 8-bit bytes. */
static const char *const body_tokens[] = {
    "a", "word", "Line of text", ".", "\x01", "\x7f", "\xc3\xa9", " ", "  ", "\t", " \t ",
    "\t\t", "\r\n", "\n", "\r", "\r\r\n", "\n\n", "\r\n\r\n", " \r\n", "\t\n", " \r", "\r \n",
    "\r\n \r\n", "\r\n\t", "x\r\ny",
};
#define N_BODY_TOKENS (sizeof(body_tokens) / sizeof(body_tokens[0]))

/* A random body of up to about max bytes: random tokens, sometimes mostly
 * text with dirty lines (the usual mail), sometimes lines past the
 * canonicalizer's line and buffer sizes, often many empty or WSP-only
 * lines at the end. */
static size_t random_body(char *buf, size_t max, unsigned *seed)
{
    size_t n = 0;
    int style = rand_r(seed) % 5;
    while (n + 64 < max && rand_r(seed) % (style == 4 ? 4000 : 300) != 0) {
        const char *t;
        char one[2] = { 0, 0 };
        if (style == 0) {
            t = body_tokens[rand_r(seed) % N_BODY_TOKENS];
        } else if (style == 1) {                      /* text lines, some with WSP to squeeze */
            t = rand_r(seed) % 8 ? "Line of the report:  figures are\tattached.  \r\n"
                                 : body_tokens[rand_r(seed) % N_BODY_TOKENS];
        } else if (style == 2) {                      /* single bytes */
            one[0] = " \t\r\nab\x01"[rand_r(seed) % 7];
            t = one;
        } else if (style == 3) {                      /* mostly clean text */
            t = rand_r(seed) % 10 ? "plain words on a line\r\n" : body_tokens[rand_r(seed) % N_BODY_TOKENS];
        } else {                                      /* long lines */
            t = rand_r(seed) % 300 ? (rand_r(seed) % 3 ? "abcdefgh" : " \t") : "\r\n";
        }
        size_t tl = strlen(t);
        memcpy(buf + n, t, tl);
        n += tl;
    }
    int tail = rand_r(seed) % 3 == 0 ? rand_r(seed) % 20 : 0;
    for (int i = 0; i < tail && n + 8 < max; i++) {
        const char *t = (const char *[]){ "\r\n", "\n", " \t\r\n", "\r\n\r\n", " " }[rand_r(seed) % 5];
        memcpy(buf + n, t, strlen(t));
        n += strlen(t);
    }
    return n;
}

static void md_sink(void *arg, const char *data, size_t len);

struct md_and_sb {
    EVP_MD_CTX *md;
    struct strbuf *sb;
};

/* The pieces the canonicalizer hands on go to a digest and are kept. */
static void md_sb_sink(void *arg, const char *data, size_t len)
{
    struct md_and_sb *both = arg;
    md_sink(both->md, data, len);
    sb_sink(both->sb, data, len);
}

/* Feeds in[0..len) in random pieces (one byte, a few, or large; cut
 * anywhere, between CR and LF too) and returns the SHA-256 of the
 * canonical body in hash, the bytes in out, the total in *total. */
static void canon_random_pieces(enum dkim_canon c, bool has_l, uint64_t l, const char *in,
                                size_t len, unsigned *seed, struct strbuf *out,
                                unsigned char hash[32], uint64_t *total)
{
    struct md_and_sb both = { EVP_MD_CTX_new(), out };
    EVP_DigestInit_ex(both.md, EVP_sha256(), NULL);
    strbuf_reset(out);
    strbuf_append(out, "", 0);
    struct dkim_body_canon bc;
    dkim_body_init(&bc, c, has_l, l, md_sb_sink, &both);
    int mode = rand_r(seed) % 4;
    for (size_t i = 0; i < len;) {
        size_t n = mode == 0 ? 1 : 1 + (size_t)(rand_r(seed) % (mode == 1 ? 3 : mode == 2 ? 100 : 20000));
        n = n > len - i ? len - i : n;
        dkim_body_feed(&bc, in + i, n);
        i += n;
    }
    dkim_body_final(&bc);
    unsigned int hl = 0;
    EVP_DigestFinal_ex(both.md, hash, &hl);
    EVP_MD_CTX_free(both.md);
    *total = bc.total;
}

/* Thousands of random bodies through the streaming canonicalizer in random
 * pieces, with and without l=, against the plain line-by-line reference
 * (ref_body_canon): the same bytes, the same SHA-256, the same total. */
static void test_body_canon_pieces(void)
{
    enum { MAX = 24000 };
    char *in = malloc(MAX), *ref = malloc(2 * MAX + 4);
    struct strbuf got;
    strbuf_init(&got, 4 * MAX);
    unsigned seed = 20261124;
    int cases = 0, bad_bytes = 0, bad_hash = 0, bad_total = 0, bad_l = 0, reported = 0;
    for (int round = 0; round < 4000; round++) {
        size_t len = random_body(in, round % 10 == 0 ? MAX : 2000, &seed);
        for (int ci = 0; ci < 2; ci++) {
            enum dkim_canon c = ci ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
            size_t rlen = ref_body_canon(c, in, len, ref);
            unsigned char want[32], hash[32];
            EVP_Digest(ref, rlen, want, NULL, EVP_sha256(), NULL);
            uint64_t total;
            canon_random_pieces(c, false, 0, in, len, &seed, &got, hash, &total);
            cases++;
            if (got.len != rlen || memcmp(got.data, ref, rlen) != 0)
                bad_bytes++;
            if (memcmp(hash, want, 32) != 0)
                bad_hash++;
            if (total != rlen)
                bad_total++;
            /* l= anywhere from 0 to past the end: the first l bytes, and
             * the full length counted. */
            uint64_t l = (uint64_t)(rand_r(&seed) % (rlen + 3));
            canon_random_pieces(c, true, l, in, len, &seed, &got, hash, &total);
            size_t wl = l < rlen ? (size_t)l : rlen;
            if (got.len != wl || memcmp(got.data, ref, wl) != 0 || total != rlen)
                bad_l++;
            if (bad_bytes + bad_hash + bad_total + bad_l > reported) {
                reported = bad_bytes + bad_hash + bad_total + bad_l;
                fprintf(stderr, "body canon mismatch: round %d canon %d len %zu\n", round, ci, len);
            }
        }
    }
    CHECK(cases == 8000);
    CHECK_EQ_INT(bad_bytes, 0);
    CHECK_EQ_INT(bad_hash, 0);
    CHECK_EQ_INT(bad_total, 0);
    CHECK_EQ_INT(bad_l, 0);
    free(in);
    free(ref);
    strbuf_free(&got);
}

static void test_body_canon(void)
{
    static const struct {
        enum dkim_canon c;
        const char *in, *out;
    } cases[] = {
        { DKIM_CANON_SIMPLE, "", "\r\n" },
        { DKIM_CANON_SIMPLE, "\r\n", "\r\n" },
        { DKIM_CANON_SIMPLE, "\r\n\r\n\r\n", "\r\n" },
        { DKIM_CANON_SIMPLE, "abc", "abc\r\n" },
        { DKIM_CANON_SIMPLE, "abc\r\n", "abc\r\n" },
        { DKIM_CANON_SIMPLE, "abc\r\n\r\n", "abc\r\n" },
        { DKIM_CANON_SIMPLE, "a \t b  \r\n", "a \t b  \r\n" },
        { DKIM_CANON_SIMPLE, " C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n" }, /* RFC 6376 3.4.5 */
        { DKIM_CANON_SIMPLE, "a\nb\n\n", "a\r\nb\r\n" },
        { DKIM_CANON_SIMPLE, "a\rb\r\n", "a\rb\r\n" },
        { DKIM_CANON_SIMPLE, "abc\r", "abc\r\r\n" },
        { DKIM_CANON_SIMPLE, "\r\n\r\nabc", "\r\n\r\nabc\r\n" },
        { DKIM_CANON_SIMPLE, "  \r\n", "  \r\n" },
        { DKIM_CANON_RELAXED, "", "" },
        { DKIM_CANON_RELAXED, "\r\n", "" },
        { DKIM_CANON_RELAXED, "\r\n\r\n", "" },
        { DKIM_CANON_RELAXED, "  \r\n\t\r\n", "" },
        { DKIM_CANON_RELAXED, "abc", "abc\r\n" },
        { DKIM_CANON_RELAXED, "a \t b  \r\n", "a b\r\n" },
        { DKIM_CANON_RELAXED, " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n" },     /* RFC 6376 3.4.5 */
        { DKIM_CANON_RELAXED, "abc  ", "abc\r\n" },
        { DKIM_CANON_RELAXED, "a\r\n \r\nb\r\n", "a\r\n\r\nb\r\n" },
        { DKIM_CANON_RELAXED, "a\nb \n\n", "a\r\nb\r\n" },
        { DKIM_CANON_RELAXED, "\tx", " x\r\n" },
        { DKIM_CANON_RELAXED, "a\r b", "a\r b\r\n" },
        { DKIM_CANON_RELAXED, "x\r\n\r\n\r\ny \r\n \r\n", "x\r\n\r\n\r\ny\r\n" },
    };
    struct strbuf out;
    strbuf_init(&out, 4096);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int bytewise = 0; bytewise < 2; bytewise++) {
            canon_body(&out, cases[i].c, cases[i].in, strlen(cases[i].in), bytewise, false, 0);
            CHECK_EQ_STR(out.data, cases[i].out);
        }
    }
    /* l= cuts the canonical output, not the input. */
    canon_body(&out, DKIM_CANON_RELAXED, S("a   b\r\ncd\r\n"), false, true, 4);
    CHECK_EQ_STR(out.data, "a b\r");
    canon_body(&out, DKIM_CANON_SIMPLE, S("abc\r\n"), true, true, 0);
    CHECK_EQ_STR(out.data, "");
    strbuf_free(&out);
}

static void body_hash_b64(enum dkim_canon c, const char *body, char *out)
{
    struct strbuf sb;
    strbuf_init(&sb, 1 << 16);
    canon_body(&sb, c, body, strlen(body), false, false, 0);
    unsigned char h[32];
    EVP_Digest(sb.data, sb.len, h, NULL, EVP_sha256(), NULL);
    dkim_b64_encode(h, 32, out);
    strbuf_free(&sb);
}

/* Empty-body hashes from RFC 6376 errata 1376 / 1377. */
static void test_empty_body_hashes(void)
{
    char b64[64];
    body_hash_b64(DKIM_CANON_SIMPLE, "", b64);
    CHECK_EQ_STR(b64, "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=");
    body_hash_b64(DKIM_CANON_RELAXED, "", b64);
    CHECK_EQ_STR(b64, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    body_hash_b64(DKIM_CANON_RELAXED, "\r\n\r\n", b64);
    CHECK_EQ_STR(b64, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
}

static void test_header_canon(void)
{
    static const struct {
        const char *in, *simple, *relaxed;
    } cases[] = {
        { "A: X\r\n", "A: X\r\n", "a:X\r\n" },                                   /* RFC 6376 3.4.5 */
        { "B : Y\t\r\n\tZ  \r\n", "B : Y\t\r\n\tZ  \r\n", "b:Y Z\r\n" },         /* RFC 6376 3.4.5 */
        { "Subject:\r\n  folded\r\n", "Subject:\r\n  folded\r\n", "subject:folded\r\n" },
        { "X-Empty:\r\n", "X-Empty:\r\n", "x-empty:\r\n" },
        { "X-Empty:   \r\n", "X-Empty:   \r\n", "x-empty:\r\n" },
        { "To: a\n b\n", "To: a\r\n b\r\n", "to:a b\r\n" },
        { "From: x", "From: x\r\n", "from:x\r\n" },
        { "MiXeD-Case:  A  \t B \r\n", "MiXeD-Case:  A  \t B \r\n", "mixed-case:A B\r\n" },
        { "X:a\rb\r\n", "X:a\rb\r\n", "x:a\rb\r\n" },
    };
    struct strbuf out;
    strbuf_init(&out, 4096);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        strbuf_reset(&out);
        CHECK_EQ_INT(dkim_canon_header(DKIM_CANON_SIMPLE, cases[i].in, strlen(cases[i].in), &out), 0);
        CHECK_EQ_STR(out.data, cases[i].simple);
        strbuf_reset(&out);
        CHECK_EQ_INT(dkim_canon_header(DKIM_CANON_RELAXED, cases[i].in, strlen(cases[i].in), &out), 0);
        CHECK_EQ_STR(out.data, cases[i].relaxed);
    }
    /* A long value crosses the relaxed canonicalizer's internal buffer. */
    char big[3000];
    memcpy(big, "X-Long:", 7);
    for (size_t i = 7; i < sizeof(big) - 3; i++)
        big[i] = (i % 3 == 0) ? ' ' : 'q';
    memcpy(big + sizeof(big) - 3, "\r\n", 3);
    strbuf_reset(&out);
    CHECK_EQ_INT(dkim_canon_header(DKIM_CANON_RELAXED, big, strlen(big), &out), 0);
    CHECK(out.len > 1900 && strncmp(out.data, "x-long:qq q", 11) == 0 && strstr(out.data, "  ") == NULL);
    strbuf_free(&out);
}

/* RFC 6376 3.4.2 the plain way: unfold (drop every LF and the CR before
 * it), then WSP runs to one SP, WSP at either end of the value gone. */
static size_t ref_header_relaxed(const char *f, size_t len, char *out)
{
    size_t o = 0;
    const char *colon = memchr(f, ':', len);
    size_t name_len = colon ? (size_t)(colon - f) : len;
    while (name_len > 0 && (f[name_len - 1] == ' ' || f[name_len - 1] == '\t'))
        name_len--;
    for (size_t i = 0; i < name_len; i++)
        out[o++] = (f[i] >= 'A' && f[i] <= 'Z') ? (char)(f[i] + 32) : f[i];
    out[o++] = ':';
    char *unfolded = malloc(len + 1);
    size_t u = 0;
    for (size_t i = colon ? (size_t)(colon - f) + 1 : len; i < len; i++)
        if (f[i] != '\n' && !(f[i] == '\r' && i + 1 < len && f[i + 1] == '\n'))
            unfolded[u++] = f[i];
    size_t start = o;
    for (size_t i = 0; i < u; i++) {
        bool wsp = unfolded[i] == ' ' || unfolded[i] == '\t';
        if (!wsp)
            out[o++] = unfolded[i];
        else if (o > start && out[o - 1] != ' ')
            out[o++] = ' ';
    }
    if (o > start && out[o - 1] == ' ')
        o--;
    free(unfolded);
    out[o++] = '\r';
    out[o++] = '\n';
    return o;
}

/* Random fields (folds, WSP runs, bare CR and LF, 8-bit bytes, values
 * longer than the canonicalizer's pieces) against the reference. */
static void test_header_canon_random(void)
{
    static const char *const toks[] = { "a", "Subject", "X-Y", " ", "  ", "\t", "\r\n", "\r\n ",
                                        "\r\n\t", "\n", " \r\n ", "\r", ":", "b c", "\xc3\xa9",
                                        "Word", "\x01" };
    enum { MAX = 12000 };
    char *f = malloc(MAX), *ref = malloc(MAX + 8);
    struct strbuf got;
    strbuf_init(&got, 2 * MAX);
    unsigned seed = 4242;
    int bad = 0;
    for (int round = 0; round < 5000; round++) {
        size_t n = 0;
        int nt = rand_r(&seed) % (round % 50 == 0 ? 1500 : 40);
        for (int t = 0; t < nt && n + 16 < MAX; t++) {
            const char *k = toks[rand_r(&seed) % (sizeof(toks) / sizeof(toks[0]))];
            memcpy(f + n, k, strlen(k));
            n += strlen(k);
        }
        /* exactly n bytes, so a read past the field shows under ASan */
        char *field = malloc(n ? n : 1);
        memcpy(field, f, n);
        size_t rl = ref_header_relaxed(field, n, ref);
        strbuf_reset(&got);
        int rc = dkim_canon_header(DKIM_CANON_RELAXED, field, n, &got);
        if (rc != 0 || got.len != rl || memcmp(got.data, ref, rl) != 0) {
            if (bad++ == 0)
                fprintf(stderr, "header canon mismatch: round %d len %zu\n", round, n);
        }
        free(field);
    }
    CHECK_EQ_INT(bad, 0);
    free(f);
    free(ref);
    strbuf_free(&got);
}

static void test_msg_index(void)
{
    struct dkim_msg m;
    const char *msg = "A: 1\r\nB: 2\r\n cont\r\n\r\nbody";
    CHECK_EQ_INT(dkim_msg_index(&m, msg, strlen(msg)), 0);
    CHECK_EQ_INT(m.n_fields, 2);
    CHECK_EQ_INT(m.fields[1].len, strlen("B: 2\r\n cont\r\n"));
    CHECK_EQ_STR(msg + m.body_off, "body");
    CHECK(dkim_field_is(&m, &m.fields[1], "b", 1));
    dkim_msg_free(&m);

    msg = "From blah\nA : 1\n\nbody\n";
    CHECK_EQ_INT(dkim_msg_index(&m, msg, strlen(msg)), 0);
    CHECK_EQ_INT(m.n_fields, 1);
    CHECK(dkim_field_is(&m, &m.fields[0], "a", 1));
    CHECK_EQ_STR(msg + m.body_off, "body\n");
    dkim_msg_free(&m);

    msg = "A: 1\r\n";
    CHECK_EQ_INT(dkim_msg_index(&m, msg, strlen(msg)), 0);
    CHECK_EQ_INT(m.n_fields, 1);
    CHECK_EQ_INT(m.body_off, strlen(msg));
    dkim_msg_free(&m);

    msg = "A: 1\r\n\r\n";
    CHECK_EQ_INT(dkim_msg_index(&m, msg, strlen(msg)), 0);
    CHECK_EQ_INT(m.body_off, strlen(msg));
    dkim_msg_free(&m);

    CHECK_EQ_INT(dkim_msg_index(&m, "", 0), 0);
    CHECK_EQ_INT(m.n_fields, 0);
    dkim_msg_free(&m);
}

static void test_base64(void)
{
    unsigned char out[64];
    size_t n = 0;
    CHECK_EQ_INT(dkim_b64_decode(S("QUJD"), out, sizeof(out), &n), 0);
    CHECK(n == 3 && memcmp(out, "ABC", 3) == 0);
    CHECK_EQ_INT(dkim_b64_decode(S(" QU\r\n JD\tRA = = "), out, sizeof(out), &n), 0);
    CHECK(n == 4 && memcmp(out, "ABCD", 4) == 0);
    CHECK_EQ_INT(dkim_b64_decode(S("QUI="), out, sizeof(out), &n), 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(dkim_b64_decode(S(""), out, sizeof(out), &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(dkim_b64_decode(S("QUJ"), out, sizeof(out), &n), -1);
    CHECK_EQ_INT(dkim_b64_decode(S("QU=D"), out, sizeof(out), &n), -1);
    CHECK_EQ_INT(dkim_b64_decode(S("Q==="), out, sizeof(out), &n), -1);
    CHECK_EQ_INT(dkim_b64_decode(S("QU!D"), out, sizeof(out), &n), -1);
    CHECK_EQ_INT(dkim_b64_decode(S("QUJDQUJD"), out, 5, &n), -1);
    char enc[16];
    CHECK_EQ_INT(dkim_b64_encode((const unsigned char *)"AB", 2, enc), 4);
    CHECK_EQ_STR(enc, "QUI=");
    dkim_b64_encode((const unsigned char *)"A", 1, enc);
    CHECK_EQ_STR(enc, "QQ==");
}

/* ------------------------------------------------------------ tag lists */

static void render_tags(const char *in, char *buf, size_t size)
{
    struct dkim_tag tags[8];
    int n = dkim_tags_parse(in, strlen(in), tags, 8);
    if (n < 0) {
        snprintf(buf, size, "ERR");
        return;
    }
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t o = strlen(buf);
        snprintf(buf + o, size - o, "%s%.*s=[%.*s]", i ? "|" : "", (int)tags[i].name_len, tags[i].name,
                 (int)tags[i].val_len, tags[i].val);
    }
}

static void test_tag_lists(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "v=1; a=rsa-sha256", "v=[1]|a=[rsa-sha256]" },
        { "  v = 1 ;a=b;", "v=[1]|a=[b]" },
        { "a=b;;c=d", "a=[b]|c=[d]" },
        { "", "" },
        { " ; ", "" },
        { "a=", "a=[]" },
        { "a=b c", "a=[b c]" },
        { "a=\r\n b \r\n ;", "a=[b]" },
        { "x_y9=1", "x_y9=[1]" },
        { "v=DKIM1: g=*; k=rsa", "v=[DKIM1: g=*]|k=[rsa]" },
        { "a=b; a=c", "ERR" },
        { "=b", "ERR" },
        { "1a=b", "ERR" },
        { "a b=c", "ERR" },
        { "a", "ERR" },
        { "a=b\x01" "c", "ERR" },
        { "a=1;b=2;c=3;d=4;e=5;f=6;g=7;h=8;i=9", "ERR" },   /* over max (8 here) */
        { "a=\xc3\xa9", "a=[\xc3\xa9]" },
    };
    char buf[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        render_tags(cases[i].in, buf, sizeof(buf));
        CHECK_EQ_STR(buf, cases[i].out);
    }
    /* raw_start..raw_end spans what b= deletion removes. */
    struct dkim_tag t[4];
    const char *s = "a=1; b= AB\r\n CD ; c=2";
    CHECK_EQ_INT(dkim_tags_parse(s, strlen(s), t, 4), 3);
    CHECK_EQ_INT(t[1].raw_start, 7);
    CHECK_EQ_INT(t[1].raw_end, 16);
}

#define SIG_BASE "v=1; a=rsa-sha256; d=example.org; s=sel; h=from:to; bh=AAAA; b=AAAA"

static void test_sig_parse(void)
{
    static const struct {
        const char *in, *reason;
    } cases[] = {
        { SIG_BASE, NULL },
        { SIG_BASE "; c=relaxed", NULL },
        { SIG_BASE "; i=u@sub.example.org", NULL },
        { SIG_BASE "; i=@EXAMPLE.org", NULL },
        { SIG_BASE "; q=dns/txt", NULL },
        { SIG_BASE "; t=100; x=200; l=5", NULL },
        { SIG_BASE "; z=From:x|To:y; foo=bar", NULL },
        { "a=rsa-sha256; d=example.org; s=sel; h=from; bh=AAAA; b=AAAA", "missing v= tag" },
        { "v=2; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AAAA; b=AAAA", "unsupported version v=" },
        { "v=1; a=rsa-sha256; s=sel; h=from; bh=AAAA; b=AAAA", "missing d= tag" },
        { "v=1; a=rsa-sha256; d=example.org; s=sel; h=from; b=AAAA", "missing bh= tag" },
        { "v=1; a=rsa-sha1; d=example.org; s=sel; h=from; bh=AAAA; b=AAAA",
          "rsa-sha1 is not acceptable (RFC 8301)" },
        { "v=1; a=foo-sha256; d=example.org; s=sel; h=from; bh=AAAA; b=AAAA", "unknown algorithm a=" },
        { SIG_BASE "; c=relaxed/foo", "bad canonicalization c=" },
        { "v=1; a=rsa-sha256; d=example.org; s=sel; h=to:subject; bh=AAAA; b=AAAA",
          "From field not signed" },
        { "v=1; a=rsa-sha256; d=example.org; s=sel; h=from::to; bh=AAAA; b=AAAA",
          "bad field name in h=" },
        { SIG_BASE "; i=@other.org", "i= domain not within d=" },
        { SIG_BASE "; i=u@badexample.org", "i= domain not within d=" },
        { SIG_BASE "; i=nobody", "bad identity i=" },
        { SIG_BASE "; t=200; x=100", "x= earlier than t=" },
        { SIG_BASE "; l=abc", "bad body length l=" },
        { SIG_BASE "; t=1234567890123", "bad timestamp t=" },
        { SIG_BASE "; q=dns", "unsupported query method q=" },
        { "v=1; a=rsa-sha256; d=exa mple.org; s=sel; h=from; bh=AAAA; b=AAAA", "bad domain d=" },
        { "v=1; a=rsa-sha256; d=example.org; s=a..b; h=from; bh=AAAA; b=AAAA", "bad selector s=" },
        { "v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AAAA; b=!!!!", "bad signature b=" },
        { "v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=AA; b=AAAA", "bad body hash bh=" },
        { SIG_BASE "; d=other.org", "signature syntax error" },
        { SIG_BASE "; 9=x", "signature syntax error" },
    };
    struct dkim_sig *sig = malloc(sizeof(*sig));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *why = NULL;
        int rc = dkim_sig_parse(cases[i].in, strlen(cases[i].in), sig, &why);
        if (cases[i].reason == NULL) {
            CHECK_EQ_INT(rc, 0);
            if (rc != 0)
                fprintf(stderr, "  case %zu: %s\n", i, why);
        } else {
            CHECK_EQ_INT(rc, -1);
            CHECK_EQ_STR(rc ? why : "(accepted)", cases[i].reason);
        }
    }
    const char *why;
    const char *full = "v=1; a=ed25519-sha256; c=simple/relaxed; d=Example.org; s=sel;\r\n"
                       " h=From : To; i==40x@example.org; l=10; bh=AAAA; b=QUJD\r\n REVG";
    CHECK_EQ_INT(dkim_sig_parse(full, strlen(full), sig, &why), 0);
    CHECK_EQ_INT(sig->alg, DKIM_ALG_ED25519_SHA256);
    CHECK_EQ_INT(sig->hc, DKIM_CANON_SIMPLE);
    CHECK_EQ_INT(sig->bc, DKIM_CANON_RELAXED);
    CHECK_EQ_INT(sig->n_h, 2);
    CHECK(sig->h_len[1] == 2 && strncmp(sig->h[1], "To", 2) == 0);
    CHECK_EQ_STR(sig->i, "@x@example.org");
    CHECK(sig->has_l && sig->l == 10);
    CHECK_EQ_INT(sig->b_len, 6);
    CHECK_EQ_STR(sig->b_text, "QUJDREVG");
    free(sig);
}

static void test_keyrec_parse(void)
{
    static const struct {
        const char *in, *reason, *flags;
    } cases[] = {
        { "v=DKIM1; k=rsa; p=AAAA", NULL, "rsa sha256 email" },
        { "k=ed25519; p=AAAA", NULL, "ed25519 sha256 email" },
        { "p=", NULL, "rsa sha256 email revoked" },
        { "v=DKIM1; p=", NULL, "rsa sha256 email revoked" },
        { "h=sha1; p=AAAA", NULL, "rsa email" },
        { "h=sha1:sha256; p=AAAA", NULL, "rsa sha256 email" },
        { "s=tlsrpt; p=AAAA", NULL, "rsa sha256" },
        { "s=tlsrpt:email; p=AAAA", NULL, "rsa sha256 email" },
        { "s=*; p=AAAA", NULL, "rsa sha256 email" },
        { "t=y:s; p=AAAA", NULL, "rsa sha256 email testing strict" },
        { "t=x; p=AAAA; n=notes here; g=*", NULL, "rsa sha256 email" },
        { "k=rsa; v=DKIM1; p=AAAA", "bad key record version v=", NULL },
        { "v=DKIM2; p=AAAA", "bad key record version v=", NULL },
        { "v=DKIM1: g=*; k=rsa; p=AAAA", "bad key record version v=", NULL },
        { "k=dsa; p=AAAA", "unknown key type k=", NULL },
        { "k=ed25519-sha256; p=AAAA", "unknown key type k=", NULL },
        { "k=rsa", "key record without p=", NULL },
        { "p=!!!!", "bad public key p=", NULL },
        { "hello world", "key record syntax error", NULL },
    };
    struct dkim_keyrec *k = malloc(sizeof(*k));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *why = NULL;
        int rc = dkim_keyrec_parse(cases[i].in, strlen(cases[i].in), k, &why);
        if (cases[i].reason) {
            CHECK_EQ_INT(rc, -1);
            CHECK_EQ_STR(rc ? why : "(accepted)", cases[i].reason);
            continue;
        }
        CHECK_EQ_INT(rc, 0);
        char flags[128];
        snprintf(flags, sizeof(flags), "%s%s%s%s%s%s", k->type == DKIM_KEY_RSA ? "rsa" : "ed25519",
                 k->sha256_ok ? " sha256" : "", k->email_ok ? " email" : "", k->revoked ? " revoked" : "",
                 k->testing ? " testing" : "", k->strict ? " strict" : "");
        CHECK_EQ_STR(flags, cases[i].flags);
    }
    free(k);
}

/* ------------------------------------------------------------ fake DNS */

static struct {
    const char *name;
    char rec[DKIM_TXT_LEN];
} dns[8];
static int n_dns;

static void dns_clear(void)
{
    n_dns = 0;
}

static void dns_set(const char *name, const char *rec)
{
    dns[n_dns].name = name;
    snprintf(dns[n_dns].rec, sizeof(dns[n_dns].rec), "%s", rec);
    n_dns++;
}

static enum dkim_dns_status fake_lookup(const char *name, struct dkim_txt *txt, void *arg)
{
    (void)arg;
    for (int i = 0; i < n_dns; i++) {
        if (strcmp(dns[i].name, name) != 0)
            continue;
        if (strcmp(dns[i].rec, "TEMPFAIL") == 0)
            return DKIM_DNS_TEMPFAIL;
        dkim_txt_add(txt, dns[i].rec, strlen(dns[i].rec));
    }
    return txt->n ? DKIM_DNS_FOUND : DKIM_DNS_NONE;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[n] = '\0';
    fclose(f);
    return buf;
}

/* -------------------------------------------------- RFC example vectors */

static void test_rfc_vectors(void)
{
    char *rsa_txt = read_file(DATA_DIR "test.txt");
    char *ed_msg = read_file(DATA_DIR "rfc6376.signed.msg");
    char *rsa_msg = read_file(DATA_DIR "rfc6376.signed.rsa.msg");
    if (rsa_txt == NULL || ed_msg == NULL || rsa_msg == NULL) {
        printf("dkim: skipping RFC vectors: python3-dkim test data not in " DATA_DIR "\n");
        free(rsa_txt);
        free(ed_msg);
        free(rsa_msg);
        return;
    }
    rsa_txt[strcspn(rsa_txt, "\r\n")] = '\0';
    dns_clear();
    dns_set("test._domainkey.football.example.com", rsa_txt);
    /* RFC 8463 Appendix A.2 */
    dns_set("brisbane._domainkey.football.example.com",
            "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
    struct dkim_verdict vd[DKIM_MAX_SIGNATURES];
    /* RFC 8463 Appendix A.3: both signatures of the example verify. */
    CHECK_EQ_INT(dkim_verify_message(ed_msg, strlen(ed_msg), 0, fake_lookup, NULL, vd, 5), 2);
    CHECK_EQ_INT(vd[0].status, DKIM_PASS);
    CHECK_EQ_STR(vd[0].a, "ed25519-sha256");
    CHECK_EQ_STR(vd[0].s, "brisbane");
    CHECK_EQ_INT(vd[1].status, DKIM_PASS);
    CHECK_EQ_STR(vd[1].a, "rsa-sha256");
    CHECK_EQ_INT(vd[1].key_bits, 1024);
    char line[512];
    CHECK_EQ_STR(dkim_verdict_format(&vd[0], line, sizeof(line)),
                 "dkim=pass (256-bit key) header.d=football.example.com "
                 "header.i=@football.example.com header.s=brisbane header.a=ed25519-sha256 "
                 "header.b=9/dsDChY0YMT");
    CHECK_EQ_INT(dkim_verify_message(rsa_msg, strlen(rsa_msg), 0, fake_lookup, NULL, vd, 5), 1);
    CHECK_EQ_INT(vd[0].status, DKIM_PASS);

    /* The same with CRLF line ends, as it travels in SMTP. */
    size_t n = strlen(ed_msg), o = 0;
    char *crlf = malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++) {
        if (ed_msg[i] == '\n')
            crlf[o++] = '\r';
        crlf[o++] = ed_msg[i];
    }
    crlf[o] = '\0';
    CHECK_EQ_INT(dkim_verify_message(crlf, o, 0, fake_lookup, NULL, vd, 5), 2);
    CHECK(vd[0].status == DKIM_PASS && vd[1].status == DKIM_PASS);

    /* Stepwise, as an asynchronous caller drives it. */
    struct dkim_verify *v = dkim_verify_new(crlf, o, 0);
    CHECK_EQ_INT(dkim_verify_count(v), 2);
    CHECK_EQ_STR(dkim_verify_key_name(v, 0), "brisbane._domainkey.football.example.com");
    struct dkim_txt *txt = calloc(1, sizeof(*txt));
    CHECK_EQ_INT(fake_lookup(dkim_verify_key_name(v, 0), txt, NULL), DKIM_DNS_FOUND);
    dkim_verify_set_key(v, 0, DKIM_DNS_FOUND, txt);
    dkim_verify_finish(v);                    /* signature 1's key never given */
    CHECK_EQ_INT(dkim_verify_result(v, 0)->status, DKIM_PASS);
    CHECK_EQ_INT(dkim_verify_result(v, 1)->status, DKIM_TEMPERROR);
    CHECK(dkim_verify_result(v, 2) == NULL);
    dkim_verify_free(v);
    free(txt);

    /* A changed body fails both. */
    char *p = strstr(crlf, "Joe.\r\n");
    p[2] = 'y';
    CHECK_EQ_INT(dkim_verify_message(crlf, o, 0, fake_lookup, NULL, vd, 5), 2);
    CHECK_EQ_INT(vd[0].status, DKIM_FAIL);
    CHECK_EQ_STR(vd[0].reason, "body hash mismatch");
    CHECK_EQ_INT(vd[1].status, DKIM_FAIL);
    free(crlf);
    free(rsa_txt);
    free(ed_msg);
    free(rsa_msg);
}

/* ------------------------------------------------ signing and failures */

static EVP_PKEY *rsa2048, *rsa1024, *rsa512, *ed;

#define MSG "From: Joe SixPack <joe@example.org>\r\n" \
            "To: Suzie Q <suzie@example.net>\r\n" \
            "Subject: Is dinner ready?\r\n" \
            "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n" \
            "Message-ID: <20030712040037.46341.5F8J@example.org>\r\n" \
            "\r\n" \
            "Hi.\r\n" \
            "\r\n" \
            "We lost the game.  Are you hungry yet?\r\n" \
            "\r\n" \
            "Joe.\r\n"

static void md_sink(void *arg, const char *data, size_t len)
{
    EVP_DigestUpdate(arg, data, len);
}

/* A signature with any tags the test wants (the engine's own signer only
 * makes one shape): tags are parsed as the verifier will, then bh= and b=
 * are computed and the field is prepended.  Returns a malloc'ed message. */
static char *sign_custom(EVP_PKEY *pk, const char *tags, const char *msg)
{
    char probe[4096];
    snprintf(probe, sizeof(probe), "%s; bh=AAAA; b=AAAA", tags);
    struct dkim_sig *sig = malloc(sizeof(*sig));
    const char *why;
    if (dkim_sig_parse(probe, strlen(probe), sig, &why) < 0) {
        fprintf(stderr, "sign_custom: %s: %s\n", why, tags);
        free(sig);
        return NULL;
    }
    struct dkim_msg m;
    dkim_msg_index(&m, msg, strlen(msg));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    struct dkim_body_canon bc;
    dkim_body_init(&bc, sig->bc, sig->has_l, sig->l, md_sink, ctx);
    dkim_body_feed(&bc, msg + m.body_off, m.len - m.body_off);
    dkim_body_final(&bc);
    unsigned char bh[32];
    EVP_DigestFinal_ex(ctx, bh, NULL);
    char bh64[64], field[4200];
    dkim_b64_encode(bh, 32, bh64);
    snprintf(field, sizeof(field), "DKIM-Signature: %s; bh=%s;\r\n b=", tags, bh64);
    struct strbuf data;
    strbuf_init(&data, 1 << 20);
    dkim_hash_fields(&m, sig->hc, sig->h, sig->h_len, sig->n_h, -1, &data);
    char tmp[4300];
    snprintf(tmp, sizeof(tmp), "%s\r\n", field);
    dkim_canon_header(sig->hc, tmp, strlen(tmp), &data);
    data.len -= 2;
    unsigned char s[1024];
    size_t slen = sizeof(s);
    EVP_MD_CTX_reset(ctx);
    if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA) {
        EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pk);
        EVP_DigestSign(ctx, s, &slen, (unsigned char *)data.data, data.len);
    } else {
        unsigned char h[32];
        EVP_Digest(data.data, data.len, h, NULL, EVP_sha256(), NULL);
        EVP_DigestSignInit(ctx, NULL, NULL, NULL, pk);
        EVP_DigestSign(ctx, s, &slen, h, 32);
    }
    EVP_MD_CTX_free(ctx);
    char s64[1500];
    dkim_b64_encode(s, slen, s64);
    size_t len = strlen(field) + strlen(s64) + 2 + strlen(msg) + 1;
    char *out = malloc(len);
    snprintf(out, len, "%s%s\r\n%s", field, s64, msg);
    strbuf_free(&data);
    dkim_msg_free(&m);
    free(sig);
    return out;
}

static void key_txt(EVP_PKEY *pk, const char *extra, char *buf, size_t size)
{
    struct dkim_key k = { .pkey = pk };
    k.type = EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA ? DKIM_KEY_RSA : DKIM_KEY_ED25519;
    struct strbuf sb;
    strbuf_init(&sb, 4096);
    dkim_key_record(&k, &sb);
    snprintf(buf, size, "%s%s", extra, sb.data + strlen("v=DKIM1; "));
    strbuf_free(&sb);
}

/* Verifies msg (freed here) with one key record at s1._domainkey.example.org. */
static struct dkim_verdict verify1(char *msg, const char *rec, time_t now)
{
    struct dkim_verdict vd[DKIM_MAX_SIGNATURES];
    memset(vd, 0, sizeof(vd));
    dns_clear();
    if (rec)
        dns_set("s1._domainkey.example.org", rec);
    vd[0].status = DKIM_PERMERROR;
    snprintf(vd[0].reason, sizeof(vd[0].reason), "(not signed)");
    if (msg != NULL) {
        int n = dkim_verify_message(msg, strlen(msg), now, fake_lookup, NULL, vd, DKIM_MAX_SIGNATURES);
        if (n != 1)
            snprintf(vd[0].reason, sizeof(vd[0].reason), "(%d signatures)", n);
    }
    free(msg);
    return vd[0];
}

#define CHECK_VERDICT(vd, st, why) do { struct dkim_verdict v_ = (vd); \
    CHECK_EQ_STR(dkim_status_name(v_.status), dkim_status_name(st)); CHECK_EQ_STR(v_.reason, why); } while (0)

static char *replace(const char *msg, const char *from, const char *to)
{
    const char *p = strstr(msg, from);
    size_t len = strlen(msg) - strlen(from) + strlen(to) + 1;
    char *out = malloc(len);
    snprintf(out, len, "%.*s%s%s", (int)(p - msg), msg, to, p + strlen(from));
    return out;
}

static void test_canon_combinations(void)
{
    static const char *const canons[] = { "simple/simple", "simple/relaxed", "relaxed/simple",
                                          "relaxed/relaxed", "relaxed" };
    char rsa_rec[1024], ed_rec[256], tags[512];
    key_txt(rsa2048, "", rsa_rec, sizeof(rsa_rec));
    key_txt(ed, "", ed_rec, sizeof(ed_rec));
    for (size_t i = 0; i < 5; i++) {
        snprintf(tags, sizeof(tags), "v=1; a=rsa-sha256; c=%s; d=example.org; s=s1; h=from:to:subject:date",
                 canons[i]);
        CHECK_VERDICT(verify1(sign_custom(rsa2048, tags, MSG), rsa_rec, 0), DKIM_PASS, "");
        snprintf(tags, sizeof(tags), "v=1; a=ed25519-sha256; c=%s; d=example.org; s=s1; h=from:subject",
                 canons[i]);
        CHECK_VERDICT(verify1(sign_custom(ed, tags, MSG), ed_rec, 0), DKIM_PASS, "");
        /* Whitespace changes in a header: only relaxed survives them. */
        snprintf(tags, sizeof(tags), "v=1; a=rsa-sha256; c=%s; d=example.org; s=s1; h=from:subject",
                 canons[i]);
        char *m = sign_custom(rsa2048, tags, MSG);
        char *m2 = replace(m, "Subject: Is dinner", "Subject:  Is \t dinner");
        free(m);
        bool relaxed_h = strncmp(canons[i], "relaxed", 7) == 0;
        CHECK_VERDICT(verify1(m2, rsa_rec, 0), relaxed_h ? DKIM_PASS : DKIM_FAIL,
                      relaxed_h ? "" : "signature mismatch");
        /* Whitespace in the body: only relaxed survives it. */
        m = sign_custom(rsa2048, tags, MSG);
        m2 = replace(m, "the game.  Are", "the game. \t Are ");
        free(m);
        bool relaxed_b = strstr(canons[i], "/relaxed") != NULL;
        CHECK_VERDICT(verify1(m2, rsa_rec, 0), relaxed_b ? DKIM_PASS : DKIM_FAIL,
                      relaxed_b ? "" : "body hash mismatch");
    }
}

#define TAGS_RSA "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s1; h=from:to:subject"
#define TAGS_ED  "v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.org; s=s1; h=from:to:subject"

static void test_failures(void)
{
    char rec[1024], rec1024[512], rec512[256], ed_rec[256], tmp[1200];
    key_txt(rsa2048, "", rec, sizeof(rec));
    key_txt(rsa1024, "", rec1024, sizeof(rec1024));
    key_txt(rsa512, "", rec512, sizeof(rec512));
    key_txt(ed, "", ed_rec, sizeof(ed_rec));

    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA, MSG), rec, 0), DKIM_PASS, "");
    char *m = sign_custom(rsa2048, TAGS_RSA, MSG);
    CHECK_VERDICT(verify1(replace(m, "Joe.\r\n", "Jim.\r\n"), rec, 0), DKIM_FAIL, "body hash mismatch");
    CHECK_VERDICT(verify1(replace(m, "Subject: Is", "Subject: Was"), rec, 0), DKIM_FAIL,
                  "signature mismatch");
    CHECK_VERDICT(verify1(replace(m, "Date: Fri", "Date: Sat"), rec, 0), DKIM_PASS, "");   /* unsigned */
    /* A From field added on top: the one a reader may see is unsigned. */
    CHECK_VERDICT(verify1(replace(m, "From: Joe", "From: Evil <e@evil.test>\r\nFrom: Joe"), rec, 0),
                  DKIM_FAIL, "unsigned From field");
    free(m);

    /* Key record problems (RFC 6376 6.1.2, RFC 8301). */
    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA, MSG), "v=DKIM1; k=rsa; p=", 0),
                  DKIM_PERMERROR, "key revoked");
    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA, MSG), ed_rec, 0), DKIM_PERMERROR,
                  "key type does not match a=");
    CHECK_VERDICT(verify1(sign_custom(ed, TAGS_ED, MSG), rec, 0), DKIM_PERMERROR,
                  "key type does not match a=");
    CHECK_VERDICT(verify1(sign_custom(rsa512, TAGS_RSA, MSG), rec512, 0), DKIM_PERMERROR,
                  "RSA key under 1024 bits (RFC 8301)");
    CHECK_VERDICT(verify1(sign_custom(rsa1024, TAGS_RSA, MSG), rec1024, 0), DKIM_PASS, "");
    key_txt(rsa2048, "h=sha1; ", tmp, sizeof(tmp));
    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA, MSG), tmp, 0), DKIM_PERMERROR,
                  "key h= does not allow sha256");
    key_txt(rsa2048, "h=sha1:sha256; ", tmp, sizeof(tmp));
    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA, MSG), tmp, 0), DKIM_PASS, "");
    key_txt(rsa2048, "s=tlsrpt; ", tmp, sizeof(tmp));
    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA, MSG), tmp, 0), DKIM_PERMERROR,
                  "key is not for email (s=)");
    key_txt(rsa2048, "t=s; ", tmp, sizeof(tmp));
    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA "; i=joe@sub.example.org", MSG), tmp, 0),
                  DKIM_PERMERROR, "i= domain must equal d= (key t=s)");
    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA "; i=joe@example.org", MSG), tmp, 0), DKIM_PASS, "");
    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA "; i=joe@sub.example.org", MSG), rec, 0),
                  DKIM_PASS, "");
    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA, MSG),
                          "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIB", 0),
                  DKIM_PERMERROR, "bad public key");
    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA, MSG), "TEMPFAIL", 0), DKIM_TEMPERROR,
                  "key lookup failed");
    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA, MSG), NULL, 0), DKIM_PERMERROR,
                  "no key for signature");
    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA, MSG), "v=DKIM2; p=AAAA", 0), DKIM_PERMERROR,
                  "bad key record version v=");

    /* Testing mode: a failure is only neutral. */
    key_txt(rsa2048, "t=y; ", tmp, sizeof(tmp));
    m = sign_custom(rsa2048, TAGS_RSA, MSG);
    struct dkim_verdict vd = verify1(replace(m, "Joe.\r\n", "Jim.\r\n"), tmp, 0);
    CHECK_VERDICT(vd, DKIM_NEUTRAL, "body hash mismatch; key in testing mode");
    vd = verify1(m, tmp, 0);
    CHECK(vd.status == DKIM_PASS && vd.testing);

    /* Expiry (x=) and timestamps. */
    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA "; t=1000; x=2000", MSG), rec, 3000),
                  DKIM_PERMERROR, "signature expired");
    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA "; t=1000; x=2000", MSG), rec, 1500), DKIM_PASS, "");
    const char *xt = "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1; h=from; t=2000; x=1000;"
                     " bh=AAAA; b=AAAA\r\n" MSG;
    CHECK_VERDICT(verify1(strdup(xt), rec, 0), DKIM_PERMERROR, "x= earlier than t=");

    /* l=: only that much of the body is signed; more may follow. */
    const size_t body_len = strlen(strstr(MSG, "\r\n\r\n") + 4);
    snprintf(tmp, sizeof(tmp), "v=1; a=rsa-sha256; c=simple/simple; d=example.org; s=s1; h=from:to; l=%zu",
             body_len);
    m = sign_custom(rsa2048, tmp, MSG);
    vd = verify1(strdup(m), rec, 0);
    CHECK(vd.status == DKIM_PASS && !vd.body_partial);
    char *longer = malloc(strlen(m) + 32);
    sprintf(longer, "%sP.S. appended\r\n", m);
    vd = verify1(longer, rec, 0);
    CHECK(vd.status == DKIM_PASS && vd.body_partial);
    char *shorter = replace(m, "Joe.\r\n", "");
    CHECK_VERDICT(verify1(shorter, rec, 0), DKIM_FAIL, "body shorter than l=");
    free(m);
    snprintf(tmp, sizeof(tmp), TAGS_RSA "; l=5");
    CHECK_VERDICT(verify1(sign_custom(rsa2048, tmp, MSG), rec, 0), DKIM_PASS, "");

    /* Signature syntax: decided before any key lookup. */
    const char *sha1 = "DKIM-Signature: v=1; a=rsa-sha1; d=example.org; s=s1; h=from;"
                       " bh=AAAA; b=AAAA\r\n" MSG;
    CHECK_VERDICT(verify1(strdup(sha1), rec, 0), DKIM_PERMERROR, "rsa-sha1 is not acceptable (RFC 8301)");
    const char *outside = "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1; h=from; i=@evil.test;"
                          " bh=AAAA; b=AAAA\r\n" MSG;
    CHECK_VERDICT(verify1(strdup(outside), rec, 0), DKIM_PERMERROR, "i= domain not within d=");
    const char *nofrom = "DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1; h=to;"
                         " bh=AAAA; b=AAAA\r\n" MSG;
    vd = verify1(strdup(nofrom), rec, 0);
    CHECK_VERDICT(vd, DKIM_PERMERROR, "From field not signed");
    CHECK_EQ_STR(vd.d, "example.org");
    CHECK_EQ_STR(vd.b, "AAAA");

    /* The signature's own field in h= is not a candidate (it did not exist
     * when signed). */
    CHECK_VERDICT(verify1(sign_custom(rsa2048, TAGS_RSA ":dkim-signature", MSG), rec, 0), DKIM_PASS, "");
    /* Several TXT records: the first that parses is the key. */
    dns_clear();
    dns_set("s1._domainkey.example.org", "some unrelated text");
    dns_set("s1._domainkey.example.org", rec);
    m = sign_custom(rsa2048, TAGS_RSA, MSG);
    struct dkim_verdict vds[5];
    CHECK_EQ_INT(dkim_verify_message(m, strlen(m), 0, fake_lookup, NULL, vds, 5), 1);
    CHECK_EQ_INT(vds[0].status, DKIM_PASS);
    free(m);
}

/* h= selects instances bottom-up (RFC 6376 5.4.2). */
static void test_bottom_up(void)
{
    char rec[1024];
    key_txt(rsa2048, "", rec, sizeof(rec));
    const char *msg = "X-A: top\r\nFrom: a@example.org\r\nX-A: bottom\r\n\r\nbody\r\n";
    const char *tags = "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s1; h=from:x-a";
    char *m = sign_custom(rsa2048, tags, msg);
    CHECK_VERDICT(verify1(replace(m, "X-A: top", "X-A: changed"), rec, 0), DKIM_PASS, "");
    CHECK_VERDICT(verify1(replace(m, "X-A: bottom", "X-A: changed"), rec, 0), DKIM_FAIL,
                  "signature mismatch");
    /* Over-signing: a second X-A listed but absent at signing; adding one fails. */
    free(m);
    tags = "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s1; h=from:x-a:x-a:x-a";
    m = sign_custom(rsa2048, tags, msg);
    CHECK_VERDICT(verify1(strdup(m), rec, 0), DKIM_PASS, "");
    CHECK_VERDICT(verify1(replace(m, "X-A: top", "X-A: new\r\nX-A: top"), rec, 0), DKIM_FAIL,
                  "signature mismatch");
    free(m);
}

static void test_signature_limit(void)
{
    char rec[1024];
    key_txt(rsa2048, "", rec, sizeof(rec));
    char *m = sign_custom(rsa2048, TAGS_RSA, MSG);
    for (int i = 0; i < 6; i++) {
        char *n = sign_custom(rsa2048, TAGS_RSA, m);
        free(m);
        m = n;
    }
    dns_clear();
    dns_set("s1._domainkey.example.org", rec);
    struct dkim_verdict vd[DKIM_MAX_SIGNATURES];
    CHECK_EQ_INT(dkim_verify_message(m, strlen(m), 0, fake_lookup, NULL, vd, DKIM_MAX_SIGNATURES),
                 DKIM_MAX_SIGNATURES);
    CHECK_EQ_INT(vd[0].status, DKIM_PASS);
    CHECK_EQ_INT(vd[4].status, DKIM_PASS);
    free(m);
    CHECK_EQ_INT(dkim_verify_message(MSG, strlen(MSG), 0, fake_lookup, NULL, vd, 5), 0);
}

/* ---------------------------------------------------- dkim_sign() round trips */

static void make_key(struct dkim_key *k, EVP_PKEY *pk, const char *sel)
{
    memset(k, 0, sizeof(*k));
    snprintf(k->domain, sizeof(k->domain), "example.org");
    snprintf(k->selector, sizeof(k->selector), "%s", sel);
    k->type = EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA ? DKIM_KEY_RSA : DKIM_KEY_ED25519;
    k->pkey = pk;
}

static void test_sign_roundtrip(void)
{
    struct dkim_key keys[2];
    make_key(&keys[0], rsa2048, "rsa1");
    make_key(&keys[1], ed, "ed1");
    char rsa_rec[1024], ed_rec[256];
    key_txt(rsa2048, "v=DKIM1; ", rsa_rec, sizeof(rsa_rec));
    key_txt(ed, "v=DKIM1; ", ed_rec, sizeof(ed_rec));
    static const char *const msgs[] = {
        MSG,
        "From: Joe <joe@example.org>\nTo: x@example.net\nSubject: LF only\n\nline\n\n\n",
        "From: joe@example.org\r\nFrom: second@example.org\r\nReferences: <a@b>\r\n <c@d>\r\n\r\n",
        "From: joe@example.org\r\n",
        "Subject: no from\r\n\r\nbody",
    };
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        struct strbuf out;
        char err[256];
        strbuf_init(&out, 1 << 20);
        CHECK_EQ_INT(dkim_sign(keys, 2, msgs[i], strlen(msgs[i]), 1700000000, &out, err, sizeof(err)), 0);
        const char *head = "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;";
        CHECK(strncmp(out.data, head, strlen(head)) == 0);
        CHECK(strstr(out.data, "t=1700000000;") != NULL);
        /* Folded: no line over 78 characters, every line CRLF-terminated. */
        size_t longest = 0, start = 0;
        for (size_t k = 0; k < out.len; k++)
            if (out.data[k] == '\n') {
                CHECK(k > 0 && out.data[k - 1] == '\r');
                if (k - 1 - start > longest)
                    longest = k - 1 - start;
                start = k + 1;
            }
        CHECK(longest <= 78);
        strbuf_append(&out, msgs[i], strlen(msgs[i]));
        dns_clear();
        dns_set("rsa1._domainkey.example.org", rsa_rec);
        dns_set("ed1._domainkey.example.org", ed_rec);
        struct dkim_verdict vd[5];
        CHECK_EQ_INT(dkim_verify_message(out.data, out.len, 0, fake_lookup, NULL, vd, 5), 2);
        CHECK_VERDICT(vd[0], DKIM_PASS, "");
        CHECK_VERDICT(vd[1], DKIM_PASS, "");
        CHECK_EQ_STR(vd[1].a, "ed25519-sha256");
        strbuf_free(&out);
    }
    /* h=: usual fields as often as present, From once more. */
    struct strbuf out;
    char err[256];
    strbuf_init(&out, 1 << 20);
    const char *m = "From: a@example.org\r\nTo: b@x\r\nTo: c@x\r\nX-Other: 1\r\nList-Id: <l.x>\r\n\r\n";
    CHECK_EQ_INT(dkim_sign(keys, 1, m, strlen(m), 1, &out, err, sizeof(err)), 0);
    CHECK(strstr(out.data, "h=from:from:to:to:list-id;") != NULL);
    strbuf_free(&out);
}

static void test_from_domain(void)
{
    static const struct {
        const char *msg, *domain;
    } cases[] = {
        { "From: Joe <joe@Example.ORG>\r\n\r\n", "example.org" },
        { "From: joe@example.org\r\n", "example.org" },
        { "from:joe@example.org.\n\n", "example.org" },
        { "From: \"a@b <c>\" <joe@example.org>\r\n", "example.org" },
        { "From: joe@example.org (Joe <x@y.z>)\r\n", "example.org" },
        { "From: (comment) Joe\r\n <joe@ex.org>\r\n", "ex.org" },
        { "To: x@y\r\nFrom: a@b.c\r\n", "b.c" },
        { "To: x@y.z\r\n", NULL },
        { "From: nobody\r\n", NULL },
        { "From: x@[1.2.3.4]\r\n", NULL },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char d[256];
        int rc = dkim_from_domain(cases[i].msg, strlen(cases[i].msg), d, sizeof(d));
        if (cases[i].domain) {
            CHECK_EQ_INT(rc, 0);
            CHECK_EQ_STR(rc == 0 ? d : "(none)", cases[i].domain);
        } else {
            CHECK_EQ_INT(rc, -1);
        }
    }
}

/* ---------------------------------------------------------------- keygen */

static void test_keygen(void)
{
    struct config cfg;
    config_defaults(&cfg);
    char tmpl[] = "/tmp/postel-dkim-test.XXXXXX";
    CHECK(mkdtemp(tmpl) != NULL);
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s/data", tmpl);
    struct dkim_key k, keys[4];
    char err[512];
    CHECK_EQ_INT(dkim_keys_for_domain(&cfg, "example.org", keys, 4, err, sizeof(err)), 0);
    CHECK_EQ_INT(dkim_keygen(&cfg, "Example.ORG", NULL, DKIM_KEY_RSA, &k, err, sizeof(err)), 0);
    CHECK(k.type == DKIM_KEY_RSA && k.bits == 2048);
    CHECK(strncmp(k.selector, "postel-20", 9) == 0);
    struct stat sb;
    CHECK(stat(k.path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    char want[1200];
    snprintf(want, sizeof(want), "%s/dkim/example.org.%s.key", cfg.data_dir, k.selector);
    CHECK_EQ_STR(k.path, want);
    struct strbuf z;
    strbuf_init(&z, 8192);
    CHECK_EQ_INT(dkim_key_zone_record(&k, &z), 0);
    snprintf(want, sizeof(want), "%s._domainkey.example.org. IN TXT ( \"v=DKIM1; k=rsa; \" \"p=MII",
             k.selector);
    CHECK(strncmp(z.data, want, strlen(want)) == 0);
    CHECK(strcmp(z.data + z.len - 3, "\" )") == 0);
    /* Every quoted string at most 255 bytes. */
    for (const char *p = strchr(z.data, '"'); p; p = strchr(p, '"')) {
        const char *q = strchr(p + 1, '"');
        CHECK(q != NULL && q - p - 1 <= 255);
        p = q ? q + 1 : NULL;
        if (p == NULL)
            break;
    }
    dkim_key_free(&k);
    CHECK_EQ_INT(dkim_keygen(&cfg, "example.org", "ed1", DKIM_KEY_ED25519, &k, err, sizeof(err)), 0);
    CHECK(k.type == DKIM_KEY_ED25519);
    strbuf_reset(&z);
    CHECK_EQ_INT(dkim_key_zone_record(&k, &z), 0);
    const char *ed_head = "ed1._domainkey.example.org. IN TXT ( \"v=DKIM1; k=ed25519; \" \"p=";
    CHECK(strncmp(z.data, ed_head, strlen(ed_head)) == 0);
    dkim_key_free(&k);
    /* The same selector again: refused, the key kept. */
    CHECK_EQ_INT(dkim_keygen(&cfg, "example.org", "ed1", DKIM_KEY_ED25519, &k, err, sizeof(err)), -1);
    CHECK(strstr(err, "exists already") != NULL);
    CHECK_EQ_INT(dkim_keygen(&cfg, "example.org", "../x", DKIM_KEY_ED25519, &k, err, sizeof(err)), -1);
    CHECK_EQ_INT(dkim_keygen(&cfg, "exa/mple.org", NULL, DKIM_KEY_ED25519, &k, err, sizeof(err)), -1);
    CHECK_EQ_INT(dkim_keygen(&cfg, "example.org", "a.b", DKIM_KEY_ED25519, &k, err, sizeof(err)), -1);

    /* Both keys sign, one per algorithm; the newest RSA key wins. */
    int n = dkim_keys_for_domain(&cfg, "EXAMPLE.org", keys, 4, err, sizeof(err));
    CHECK_EQ_INT(n, 2);
    CHECK(n == 2 && keys[0].type == DKIM_KEY_RSA && keys[1].type == DKIM_KEY_ED25519);
    CHECK(n == 2 && strcmp(keys[1].selector, "ed1") == 0 && strcmp(keys[0].domain, "example.org") == 0);
    for (int i = 0; i < n; i++)
        dkim_key_free(&keys[i]);
    CHECK_EQ_INT(dkim_keygen(&cfg, "example.org", "zz-newer", DKIM_KEY_RSA, &k, err, sizeof(err)), 0);
    dkim_key_free(&k);
    n = dkim_keys_for_domain(&cfg, "example.org", keys, 4, err, sizeof(err));
    CHECK(n == 2 && strcmp(keys[0].selector, "zz-newer") == 0);
    for (int i = 0; i < n; i++)
        dkim_key_free(&keys[i]);
    CHECK_EQ_INT(dkim_keys_for_domain(&cfg, "other.org", keys, 4, err, sizeof(err)), 0);
    CHECK_EQ_INT(dkim_keys_for_domain(&cfg, "org", keys, 4, err, sizeof(err)), 0);

    /* A [dkim DOMAIN] section overrides the data_dir keys. */
    cfg.n_dkim = 1;
    snprintf(cfg.dkim[0].domain, sizeof(cfg.dkim[0].domain), "example.org");
    snprintf(cfg.dkim[0].selector, sizeof(cfg.dkim[0].selector), "configured");
    CHECK(snprintf(cfg.dkim[0].key, sizeof(cfg.dkim[0].key), "%s/dkim/example.org.ed1.key", cfg.data_dir) <
          (int)sizeof(cfg.dkim[0].key));
    n = dkim_keys_for_domain(&cfg, "example.org", keys, 4, err, sizeof(err));
    CHECK(n == 1 && strcmp(keys[0].selector, "configured") == 0 && keys[0].type == DKIM_KEY_ED25519);
    for (int i = 0; i < n; i++)
        dkim_key_free(&keys[i]);
    snprintf(cfg.dkim[0].key, sizeof(cfg.dkim[0].key), "%s/nonexistent.key", tmpl);
    CHECK_EQ_INT(dkim_keys_for_domain(&cfg, "example.org", keys, 4, err, sizeof(err)), -1);
    CHECK(strstr(err, "nonexistent.key") != NULL);
    strbuf_free(&z);

    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
    CHECK_EQ_INT(system(cmd), 0);
}

int main(void)
{
    rsa2048 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    rsa512 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
    ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    CHECK(rsa2048 && rsa1024 && rsa512 && ed);
    RUN(test_body_canon);
    RUN(test_body_canon_random);
    RUN(test_body_canon_pieces);
    RUN(test_empty_body_hashes);
    RUN(test_header_canon);
    RUN(test_header_canon_random);
    RUN(test_msg_index);
    RUN(test_base64);
    RUN(test_tag_lists);
    RUN(test_sig_parse);
    RUN(test_keyrec_parse);
    RUN(test_rfc_vectors);
    RUN(test_canon_combinations);
    RUN(test_failures);
    RUN(test_bottom_up);
    RUN(test_signature_limit);
    RUN(test_sign_roundtrip);
    RUN(test_from_domain);
    RUN(test_keygen);
    EVP_PKEY_free(rsa2048);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(rsa512);
    EVP_PKEY_free(ed);
    return unit_report("dkim");
}
