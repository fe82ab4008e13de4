/*
 * DKIM signing (RFC 6376 5, RFC 8463): relaxed/relaxed, rsa-sha256 and
 * ed25519-sha256, one DKIM-Signature per key, each independent of the
 * others (none signs another's field).
 */
#include "auth/dkim_int.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DKIM_FOLD_WIDTH 78

/* The fields signed when present (RFC 6376 5.4.1), each instance once;
 * From once more than it occurs, so none can be added (RFC 6376 8.15). */
#define F(s) { s, sizeof(s) - 1 }
static const struct {
    const char *name;
    size_t len;
} sign_fields[] = {
    F("from"), F("reply-to"), F("subject"), F("date"), F("to"), F("cc"), F("message-id"),
    F("in-reply-to"), F("references"), F("mime-version"), F("content-type"),
    F("content-transfer-encoding"), F("content-id"), F("content-description"), F("sender"),
    F("resent-date"), F("resent-from"), F("resent-sender"), F("resent-to"), F("resent-cc"),
    F("resent-message-id"), F("list-id"), F("list-help"), F("list-unsubscribe"),
    F("list-unsubscribe-post"), F("list-subscribe"), F("list-post"), F("list-owner"),
    F("list-archive"),
};
#undef F
#define N_SIGN_FIELDS (sizeof(sign_fields) / sizeof(sign_fields[0]))

static void hash_sink(void *arg, const char *data, size_t len)
{
    EVP_DigestUpdate(arg, data, len);
}

static int body_hash_relaxed(const struct dkim_msg *m, unsigned char hash[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, dkim_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return -1;
    }
    struct dkim_body_canon bc;
    dkim_body_init(&bc, DKIM_CANON_RELAXED, false, 0, hash_sink, ctx);
    dkim_body_feed(&bc, m->msg + m->body_off, m->len - m->body_off);
    dkim_body_final(&bc);
    unsigned int n = 0;
    int rc = EVP_DigestFinal_ex(ctx, hash, &n) == 1 ? 0 : -1;
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* Writes tokens, folding with CRLF SP before one that would pass the
 * width.  With space, a SP separates it from the previous token (the fold
 * takes its place). */
struct fold {
    struct strbuf *sb;
    size_t col;
    int rc;
};

static void fold_put(struct fold *f, const char *s, size_t n, bool space)
{
    if (f->col > 1 && f->col + n + (space ? 1 : 0) > DKIM_FOLD_WIDTH) {
        f->rc |= strbuf_append(f->sb, "\r\n ", 3);
        f->col = 1;
    } else if (space) {
        f->rc |= strbuf_append(f->sb, " ", 1);
        f->col++;
    }
    f->rc |= strbuf_append(f->sb, s, n);
    f->col += n;
}

/* "name=value;" as one token (built by hand: this runs for every message). */
static void fold_tag(struct fold *f, const char *name, const char *val)
{
    char tok[512];
    size_t nl = strlen(name), vl = strlen(val);
    if (nl + vl + 2 >= sizeof(tok)) {
        fold_put(f, "", 0, true);
        return;
    }
    memcpy(tok, name, nl);
    tok[nl] = '=';
    memcpy(tok + nl + 1, val, vl);
    tok[nl + 1 + vl] = ';';
    fold_put(f, tok, nl + vl + 2, true);
}

/* Decimal digits of v into buf (24 bytes), terminated. */
static void fmt_time(char *buf, long long v)
{
    char tmp[24];
    size_t n = 0, o = 0;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0)
        buf[o++] = '-';
    while (n > 0)
        buf[o++] = tmp[--n];
    buf[o] = '\0';
}

struct sign_job {
    const char *const *names;
    const size_t *lens;
    int n_names;
    char bh[48];
    time_t now;
};

/* The field up to and including "b=", as it will be hashed. */
static int sig_head(const struct dkim_key *key, const struct sign_job *job, struct strbuf *hdr)
{
    struct fold f = { hdr, 0, 0 };
    char t[32];
    f.rc |= strbuf_append(hdr, "DKIM-Signature:", 15);
    f.col = 15;
    fold_tag(&f, "v", "1");
    fold_tag(&f, "a", key->type == DKIM_KEY_RSA ? "rsa-sha256" : "ed25519-sha256");
    fold_tag(&f, "c", "relaxed/relaxed");
    fold_tag(&f, "d", key->domain);
    fold_tag(&f, "s", key->selector);
    fmt_time(t, (long long)job->now);
    fold_tag(&f, "t", t);
    for (int i = 0; i < job->n_names; i++) {
        char tok[96];
        size_t n = 0;
        if (i == 0) {
            memcpy(tok, "h=", 2);
            n = 2;
        }
        memcpy(tok + n, job->names[i], job->lens[i]);    /* names come from sign_fields */
        n += job->lens[i];
        tok[n++] = i + 1 < job->n_names ? ':' : ';';
        fold_put(&f, tok, n, i == 0);
    }
    fold_tag(&f, "bh", job->bh);
    fold_put(&f, "b=", 2, true);
    return f.rc ? -1 : 0;
}

/* rsa-sha256: PKCS#1 v1.5 over SHA-256 of data.  ed25519-sha256: pure
 * Ed25519 over the SHA-256 hash of data (RFC 8463 3). */
static int sign_data(const struct dkim_key *key, const struct strbuf *data, unsigned char *sig,
                     size_t *sig_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return -1;
    bool rsa = key->type == DKIM_KEY_RSA;
    int ok = key->sign_ctx != NULL
                 ? EVP_MD_CTX_copy_ex(ctx, key->sign_ctx) == 1
                 : EVP_DigestSignInit(ctx, NULL, rsa ? dkim_sha256() : NULL, NULL, key->pkey) == 1;
    if (rsa) {
        ok = ok &&
             EVP_DigestSign(ctx, sig, sig_len, (const unsigned char *)data->data, data->len) == 1;
    } else {
        unsigned char hash[32];
        ok = ok && EVP_Digest(data->data, data->len, hash, NULL, dkim_sha256(), NULL) == 1 &&
             EVP_DigestSign(ctx, sig, sig_len, hash, sizeof(hash)) == 1;
    }
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

static int sign_one(const struct dkim_key *key, const struct sign_job *job,
                    const struct strbuf *fields, struct strbuf *out)
{
    struct strbuf hdr, data;
    strbuf_init(&hdr, DKIM_SIG_FIELD_MAX);
    strbuf_init(&data, fields->len + DKIM_SIG_FIELD_MAX);
    unsigned char sig[DKIM_SIG_B_MAX];
    size_t sig_len = sizeof(sig);
    char b64[DKIM_SIG_B_MAX * 4 / 3 + 8];
    int rc = -1;
    if (key->pkey == NULL || (size_t)EVP_PKEY_get_size(key->pkey) > sizeof(sig) ||
        !dkim_name_ok(key->domain, true) || !dkim_name_ok(key->selector, true) ||
        sig_head(key, job, &hdr) < 0 || strbuf_append(&data, fields->data, fields->len) < 0 ||
        strbuf_append(&hdr, "\r\n", 2) < 0 ||
        dkim_canon_header(DKIM_CANON_RELAXED, hdr.data, hdr.len, &data) < 0)
        goto out;
    data.len -= 2;                       /* hashed without its CRLF (RFC 6376 3.7) */
    hdr.len -= 2;
    if (sign_data(key, &data, sig, &sig_len) < 0)
        goto out;
    size_t left = dkim_b64_encode(sig, sig_len, b64);
    struct fold f = { &hdr, 0, 0 };
    const char *nl = memrchr(hdr.data, '\n', hdr.len);
    f.col = nl ? hdr.len - (size_t)(nl - hdr.data) - 1 : hdr.len;
    for (const char *p = b64; left > 0;) {
        size_t room = f.col < DKIM_FOLD_WIDTH ? DKIM_FOLD_WIDTH - f.col : 0;
        size_t n = room < 8 ? (left < DKIM_FOLD_WIDTH - 1 ? left : DKIM_FOLD_WIDTH - 1)
                            : (left < room ? left : room);
        fold_put(&f, p, n, false);
        p += n;
        left -= n;
    }
    if (f.rc == 0 && strbuf_append(&hdr, "\r\n", 2) == 0 && strbuf_append(out, hdr.data, hdr.len) == 0)
        rc = 0;
out:
    strbuf_free(&hdr);
    strbuf_free(&data);
    return rc;
}

/* h= lists each usual field as often as it occurs, From once more, in
 * sign_fields order.  One pass over the header counts them. */
static int sign_names(const struct dkim_msg *m, const char **names, size_t *lens)
{
    int count[N_SIGN_FIELDS] = { 1 };
    for (int i = 0; i < m->n_fields; i++)
        for (size_t k = 0; k < N_SIGN_FIELDS; k++)
            if (dkim_field_is(m, &m->fields[i], sign_fields[k].name, sign_fields[k].len)) {
                count[k]++;
                break;
            }
    int n = 0;
    for (size_t k = 0; k < N_SIGN_FIELDS; k++)
        for (int c = 0; c < count[k] && n < DKIM_H_MAX; c++) {
            names[n] = sign_fields[k].name;
            lens[n++] = sign_fields[k].len;
        }
    return n;
}

int dkim_sign(const struct dkim_key *keys, int n_keys, const char *msg, size_t len, time_t now,
              struct strbuf *out, char *err, size_t err_size)
{
    struct dkim_msg m;
    if (dkim_msg_index(&m, msg, len) < 0) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    const char *names[DKIM_H_MAX];
    size_t lens[DKIM_H_MAX];
    struct sign_job job = { names, lens, sign_names(&m, names, lens), "", now ? now : time(NULL) };
    unsigned char bh[32];
    struct strbuf fields;
    strbuf_init(&fields, 2 * (size_t)DKIM_HEADER_MAX);
    int rc = -1;
    /* The verifier sees the header with the new fields added: it must stay
     * within the caps too. */
    if (m.truncated || m.n_fields + n_keys > DKIM_FIELDS_MAX ||
        (m.body_off < len ? m.body_off : len) + (size_t)n_keys * DKIM_SIG_FIELD_MAX > DKIM_HEADER_MAX)
        snprintf(err, err_size, "header too large to sign");
    else if (len > 0 && (msg[0] == ' ' || msg[0] == '\t'))
        snprintf(err, err_size, "message starts with a continuation line");  /* it would join our field */
    else if (dkim_msg_count(&m, "from", 4) >= DKIM_H_MAX)
        snprintf(err, err_size, "too many From fields to sign");
    else if (body_hash_relaxed(&m, bh) < 0 ||
             dkim_hash_fields(&m, DKIM_CANON_RELAXED, names, lens, job.n_names, -1, &fields) < 0)
        snprintf(err, err_size, "cannot hash message");
    else {
        dkim_b64_encode(bh, sizeof(bh), job.bh);
        rc = 0;
        for (int k = 0; k < n_keys && rc == 0; k++)
            if (sign_one(&keys[k], &job, &fields, out) < 0) {
                snprintf(err, err_size, "signing with %s/%s failed", keys[k].domain, keys[k].selector);
                rc = -1;
            }
    }
    strbuf_free(&fields);
    dkim_msg_free(&m);
    return rc;
}

/* Skips a quoted-string or a (nested) comment starting at s[i]; returns
 * the index after it. */
static size_t skip_special(const char *s, size_t len, size_t i)
{
    int depth = 0;
    char open = s[i];
    for (; i < len; i++) {
        if (s[i] == '\\') {
            i++;
            continue;
        }
        if (open == '"') {
            if (s[i] == '"' && depth++ > 0)
                return i + 1;
        } else if (s[i] == '(') {
            depth++;
        } else if (s[i] == ')' && --depth == 0) {
            return i + 1;
        }
    }
    return len;
}

/* The address of a From value: what is inside the first <> outside quotes
 * and comments, else the value without comments. */
static void from_address(const char *v, size_t len, char *addr, size_t size)
{
    size_t o = 0, i = 0;
    while (i < len) {
        if (v[i] == '"') {
            size_t end = skip_special(v, len, i);
            size_t n = end - i;
            if (o + n >= size)
                n = size - o - 1;
            memcpy(addr + o, v + i, n);
            o += n;
            i = end;
        } else if (v[i] == '(') {
            i = skip_special(v, len, i);
        } else if (v[i] == '<') {
            const char *gt = memchr(v + i, '>', len - i);
            size_t n = gt ? (size_t)(gt - v) - i - 1 : len - i - 1;
            if (n >= size)
                n = size - 1;
            memcpy(addr, v + i + 1, n);
            addr[n] = '\0';
            return;
        } else {
            if (o + 1 < size)
                addr[o++] = v[i];
            i++;
        }
    }
    addr[o] = '\0';
}

int dkim_from_domain(const char *msg, size_t len, char *domain, size_t size)
{
    struct dkim_msg m;
    if (size == 0 || dkim_msg_index(&m, msg, len) < 0)
        return -1;
    int rc = -1;
    for (int k = 0; k < m.n_fields; k++) {
        const struct dkim_field *f = &m.fields[k];
        if (!dkim_field_is(&m, f, "from", 4))
            continue;
        char addr[1024];
        from_address(msg + f->off + f->name_len + 1, f->len - f->name_len - 1, addr, sizeof(addr));
        const char *at = strrchr(addr, '@');
        if (at == NULL)
            break;
        size_t o = 0;
        for (const char *p = at + 1; *p && o + 1 < size; p++) {
            if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
                continue;
            if (*p == '>' || *p == ',' || *p == ';')
                break;
            domain[o++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p + 32) : *p;
        }
        while (o > 0 && domain[o - 1] == '.')
            o--;
        domain[o] = '\0';
        rc = o > 0 && dkim_name_ok(domain, true) ? 0 : -1;
        break;
    }
    dkim_msg_free(&m);
    return rc;
}
