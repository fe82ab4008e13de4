/*
 * libFuzzer target for the DKIM engine.  The first byte picks what the
 * rest of the input is fed to:
 *   0 tag-list parser        1 DKIM-Signature parser   2 key record parser
 *   3 body canonicalization  4 header canonicalization 5 verification
 *   6 sign-then-verify       7 From domain             8 base64
 * Besides "no crash", each checks what must hold: spans inside the input,
 * canonical body output equal to a plain line-by-line reference, the same
 * whole and in pieces cut anywhere, and free of what the algorithm removes,
 * a signature made here verifying here, base64 round trips.
 */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "auth/dkim_int.h"

#define CHECK_OR_ABORT(c) do { if (!(c)) abort(); } while (0)

static void fuzz_tags(const char *s, size_t len)
{
    struct dkim_tag tags[DKIM_TAGS_MAX];
    int n = dkim_tags_parse(s, len, tags, DKIM_TAGS_MAX);
    CHECK_OR_ABORT(n <= DKIM_TAGS_MAX);
    for (int i = 0; i < n; i++) {
        const struct dkim_tag *t = &tags[i];
        CHECK_OR_ABORT(t->name >= s && t->name + t->name_len <= s + len && t->name_len > 0);
        CHECK_OR_ABORT(t->raw_start <= t->raw_end && t->raw_end <= len);
        CHECK_OR_ABORT(t->val >= s + t->raw_start && t->val + t->val_len <= s + t->raw_end);
    }
}

static void fuzz_sig(const char *s, size_t len)
{
    static struct dkim_sig sig;
    const char *why = NULL;
    int rc = dkim_sig_parse(s, len, &sig, &why);
    CHECK_OR_ABORT(rc == 0 || why != NULL);
    CHECK_OR_ABORT(strlen(sig.d) < sizeof(sig.d) && strlen(sig.i) < sizeof(sig.i));
    CHECK_OR_ABORT(strlen(sig.b_text) <= DKIM_HEADER_B_LEN);
    if (rc == 0) {
        CHECK_OR_ABORT(sig.n_h >= 1 && sig.n_h <= DKIM_H_MAX && sig.b_len <= DKIM_SIG_B_MAX);
        CHECK_OR_ABORT(sig.b_raw_start <= sig.b_raw_end && sig.b_raw_end <= len);
        CHECK_OR_ABORT(dkim_domain_within(strrchr(sig.i, '@') ? strrchr(sig.i, '@') + 1 : sig.d, sig.d));
    }
}

static void fuzz_keyrec(const char *s, size_t len)
{
    static struct dkim_keyrec k;
    const char *why = NULL;
    int rc = dkim_keyrec_parse(s, len, &k, &why);
    CHECK_OR_ABORT(rc == 0 || why != NULL);
    CHECK_OR_ABORT(k.p_len <= DKIM_KEY_P_MAX);
}

static void sb_sink(void *arg, const char *data, size_t len)
{
    strbuf_append(arg, data, len);
}

static void body(struct strbuf *out, enum dkim_canon c, const char *s, size_t len, size_t step,
                 bool has_l, uint64_t l)
{
    struct dkim_body_canon bc;
    strbuf_reset(out);
    strbuf_append(out, "", 0);
    dkim_body_init(&bc, c, has_l, l, sb_sink, out);
    for (size_t i = 0; i < len; i += step)
        dkim_body_feed(&bc, s + i, len - i < step ? len - i : step);
    dkim_body_final(&bc);
    CHECK_OR_ABORT(bc.total >= out->len);
}

/* RFC 6376 3.4.3 / 3.4.4 the plain way, line by line (out: 2 * len + 2). */
static size_t ref_body(enum dkim_canon c, const char *in, size_t len, char *out)
{
    size_t o = 0, pending = 0, pos = 0;
    while (pos < len) {
        const char *nl = memchr(in + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - in) : len, e = end;
        if (nl && e > pos && in[e - 1] == '\r')
            e--;
        char *line = out + o + 2 * pending;           /* room for held line ends */
        size_t n = 0;
        for (size_t i = pos; i < e; i++) {
            bool wsp = in[i] == ' ' || in[i] == '\t';
            if (c == DKIM_CANON_SIMPLE || !wsp)
                line[n++] = in[i];
            else if (n == 0 || line[n - 1] != ' ')
                line[n++] = ' ';
        }
        if (c == DKIM_CANON_RELAXED && n > 0 && line[n - 1] == ' ')
            n--;
        if (n == 0) {
            pending += nl != NULL;
        } else {
            for (size_t k = 0; k < pending; k++)
                memcpy(out + o + 2 * k, "\r\n", 2);
            o += 2 * pending + n;
            pending = 0;
            memcpy(out + o, "\r\n", 2);
            o += 2;
        }
        pos = nl ? end + 1 : len;
    }
    if (c == DKIM_CANON_SIMPLE && o == 0) {
        memcpy(out, "\r\n", 2);
        o = 2;
    }
    return o;
}

/* Pieces of pseudo-random lengths (from the input's length), 1 to 300. */
static void body_uneven(struct strbuf *out, enum dkim_canon c, const char *s, size_t len)
{
    struct dkim_body_canon bc;
    uint32_t x = (uint32_t)len * 2654435761u + 1;
    strbuf_reset(out);
    strbuf_append(out, "", 0);
    dkim_body_init(&bc, c, false, 0, sb_sink, out);
    for (size_t i = 0; i < len;) {
        x = x * 1103515245u + 12345u;
        size_t n = 1 + (x >> 16) % 300;
        n = n < len - i ? n : len - i;
        dkim_body_feed(&bc, s + i, n);
        i += n;
    }
    dkim_body_final(&bc);
}

static void fuzz_body(const char *s, size_t len)
{
    struct strbuf whole, part;
    strbuf_init(&whole, 4 * len + 16);
    strbuf_init(&part, 4 * len + 16);
    char *ref = malloc(2 * len + 4);
    for (int c = 0; c < 2; c++) {
        body(&whole, c, s, len, len ? len : 1, false, 0);
        size_t rlen = ref_body(c, s, len, ref);
        CHECK_OR_ABORT(whole.len == rlen && memcmp(whole.data, ref, rlen) == 0);
        body_uneven(&part, c, s, len);
        CHECK_OR_ABORT(part.len == whole.len && memcmp(part.data, whole.data, whole.len) == 0);
        for (size_t step = 1; step <= 7; step += 3) {
            body(&part, c, s, len, step, false, 0);
            CHECK_OR_ABORT(part.len == whole.len && memcmp(part.data, whole.data, whole.len) == 0);
        }
        size_t l = len / 2;
        body(&part, c, s, len, 3, true, l);
        CHECK_OR_ABORT(part.len == (l < whole.len ? l : whole.len));
        CHECK_OR_ABORT(memcmp(part.data, whole.data, part.len) == 0);
        const char *o = whole.data;
        for (size_t i = 0; i < whole.len; i++)
            if (o[i] == '\n')
                CHECK_OR_ABORT(i > 0 && o[i - 1] == '\r');
        if (c == DKIM_CANON_RELAXED)
            CHECK_OR_ABORT(memchr(o, '\t', whole.len) == NULL && memmem(o, whole.len, "  ", 2) == NULL &&
                           memmem(o, whole.len, " \r\n", 3) == NULL);
        if (c == DKIM_CANON_SIMPLE)
            CHECK_OR_ABORT(whole.len >= 2 && memcmp(o + whole.len - 2, "\r\n", 2) == 0);
        if (whole.len >= 4)
            CHECK_OR_ABORT(memcmp(o + whole.len - 4, "\r\n\r\n", 4) != 0);
    }
    free(ref);
    strbuf_free(&whole);
    strbuf_free(&part);
}

/* Fields as the header index cuts them (the canonicalizer's contract). */
static void fuzz_header(const char *s, size_t len)
{
    struct dkim_msg m;
    struct strbuf out;
    if (dkim_msg_index(&m, s, len) < 0)
        return;
    strbuf_init(&out, 4 * len + 16);
    for (int k = 0; k < m.n_fields; k++) {
        const struct dkim_field *f = &m.fields[k];
        CHECK_OR_ABORT(f->off + f->len <= len && f->name_len < f->len && s[f->off + f->name_len] == ':');
        CHECK_OR_ABORT(memchr(s + f->off, '\n', f->name_len) == NULL);
        for (int c = 0; c < 2; c++) {
            strbuf_reset(&out);
            CHECK_OR_ABORT(dkim_canon_header(c, s + f->off, f->len, &out) == 0);
            CHECK_OR_ABORT(out.len >= 2 && memcmp(out.data + out.len - 2, "\r\n", 2) == 0);
            if (c == DKIM_CANON_SIMPLE)
                continue;
            const char *nl = memchr(out.data, '\n', out.len);
            const char *val = memchr(out.data, ':', out.len);
            CHECK_OR_ABORT(nl == out.data + out.len - 1 && val != NULL);
            size_t vlen = out.len - (size_t)(val - out.data);
            CHECK_OR_ABORT(memmem(val, vlen, "  ", 2) == NULL && memchr(val, '\t', vlen) == NULL);
            CHECK_OR_ABORT(val[1] != ' ' && memmem(val, vlen, " \r\n", 3) == NULL);
        }
    }
    strbuf_free(&out);
    dkim_msg_free(&m);
}

static const char *fuzz_record;
static size_t fuzz_record_len;
static char ed_record[128];
static EVP_PKEY *ed_key;

static enum dkim_dns_status lookup(const char *name, struct dkim_txt *txt, void *arg)
{
    (void)arg;
    if (strcmp(name, "fz._domainkey.example.org") == 0) {
        dkim_txt_add(txt, ed_record, strlen(ed_record));
        return DKIM_DNS_FOUND;
    }
    if (fuzz_record_len == 1 && fuzz_record[0] == 'T')
        return DKIM_DNS_TEMPFAIL;
    dkim_txt_add(txt, fuzz_record, fuzz_record_len);
    return txt->n ? DKIM_DNS_FOUND : DKIM_DNS_NONE;
}

/* "RECORD\0MESSAGE": every signature's key lookup answers RECORD. */
static void fuzz_verify(const char *s, size_t len)
{
    const char *nul = memchr(s, '\0', len);
    fuzz_record = s;
    fuzz_record_len = nul ? (size_t)(nul - s) : 0;
    const char *msg = nul ? nul + 1 : s;
    size_t mlen = len - (size_t)(msg - s);
    struct dkim_verdict vd[DKIM_MAX_SIGNATURES];
    int n = dkim_verify_message(msg, mlen, 1700000000, lookup, NULL, vd, DKIM_MAX_SIGNATURES);
    CHECK_OR_ABORT(n >= 0 && n <= DKIM_MAX_SIGNATURES);
    for (int i = 0; i < n; i++) {
        char line[1024];
        dkim_verdict_format(&vd[i], line, sizeof(line));
        CHECK_OR_ABORT(strncmp(line, "dkim=", 5) == 0);
        CHECK_OR_ABORT(vd[i].status != DKIM_PASS || vd[i].key_bits > 0);
    }
}

/* Whatever the message, a signature made here verifies here. */
static void fuzz_roundtrip(const char *s, size_t len)
{
    struct dkim_key key = { .type = DKIM_KEY_ED25519, .pkey = ed_key };
    strcpy(key.domain, "example.org");
    strcpy(key.selector, "fz");
    struct strbuf out;
    char err[256];
    strbuf_init(&out, len + 65536);
    if (dkim_sign(&key, 1, s, len, 1700000000, &out, err, sizeof(err)) == 0) {
        CHECK_OR_ABORT(strbuf_append(&out, s, len) == 0);
        struct dkim_verify *v = dkim_verify_new(out.data, out.len, 1700000000);
        CHECK_OR_ABORT(v != NULL && dkim_verify_count(v) >= 1);
        struct dkim_txt *txt = calloc(1, sizeof(*txt));
        dkim_txt_add(txt, ed_record, strlen(ed_record));
        CHECK_OR_ABORT(strcmp(dkim_verify_key_name(v, 0), "fz._domainkey.example.org") == 0);
        dkim_verify_set_key(v, 0, DKIM_DNS_FOUND, txt);
        dkim_verify_finish(v);
        const struct dkim_verdict *vd = dkim_verify_result(v, 0);
        if (vd->status != DKIM_PASS) {
            fprintf(stderr, "round trip: %s (%s)\n", dkim_status_name(vd->status), vd->reason);
            abort();
        }
        free(txt);
        dkim_verify_free(v);
    }
    strbuf_free(&out);
}

static void fuzz_from(const char *s, size_t len)
{
    char d[256];
    if (dkim_from_domain(s, len, d, sizeof(d)) == 0)
        CHECK_OR_ABORT(dkim_name_ok(d, true));
}

static void fuzz_b64(const char *s, size_t len)
{
    unsigned char *dec = malloc(len + 1), *dec2 = malloc(len + 1);
    char *enc = malloc(len * 2 + 8);
    size_t n, n2;
    if (dkim_b64_decode(s, len, dec, len + 1, &n) == 0) {
        CHECK_OR_ABORT(n <= len);
        size_t e = dkim_b64_encode(dec, n, enc);
        CHECK_OR_ABORT(e == strlen(enc));
        CHECK_OR_ABORT(dkim_b64_decode(enc, e, dec2, len + 1, &n2) == 0 && n2 == n);
        CHECK_OR_ABORT(memcmp(dec, dec2, n) == 0);
    }
    free(dec);
    free(dec2);
    free(enc);
}

static void init(void)
{
    static const unsigned char seed[32] = "postel fuzz ed25519 fixed seed!";
    ed_key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
    struct dkim_key k = { .type = DKIM_KEY_ED25519, .pkey = ed_key };
    struct strbuf sb;
    strbuf_init(&sb, 256);
    if (ed_key == NULL || dkim_key_record(&k, &sb) < 0)
        abort();
    strcpy(ed_record, sb.data);
    strbuf_free(&sb);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (ed_key == NULL)
        init();
    if (size == 0)
        return 0;
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 9) {
    case 0: fuzz_tags(s, len); break;
    case 1: fuzz_sig(s, len); break;
    case 2: fuzz_keyrec(s, len); break;
    case 3: fuzz_body(s, len); break;
    case 4: fuzz_header(s, len); break;
    case 5: fuzz_verify(s, len); break;
    case 6: fuzz_roundtrip(s, len); break;
    case 7: fuzz_from(s, len); break;
    case 8: fuzz_b64(s, len); break;
    }
    return 0;
}
