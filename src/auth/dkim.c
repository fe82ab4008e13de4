/*
 * DKIM verification (RFC 6376 6, RFC 8463, RFC 8301).
 *
 * dkim_verify_new() does everything that needs no key: it indexes the
 * header, parses each DKIM-Signature (top down, at most
 * DKIM_MAX_SIGNATURES) and hashes the body once per distinct (c=, l=).
 * The caller then fetches each key record however it likes, hands it over
 * with dkim_verify_set_key() (key checks happen there), and
 * dkim_verify_finish() hashes the header fields and checks each signature.
 */
#include "auth/dkim_int.h"

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

#define DKIM_SIG_NAME_MAX (2 * 256 + 16)

struct sig_state {
    struct dkim_sig sig;
    struct dkim_verdict vd;
    int field;                   /* index of the DKIM-Signature field */
    bool decided;                /* vd is final */
    bool key_set;
    bool body_done;
    char key_name[DKIM_SIG_NAME_MAX];
    EVP_PKEY *pkey;
    EVP_PKEY_CTX *vctx;          /* RSA: ready to verify a SHA-256 hash */
    EVP_MD_CTX *vmd;             /* Ed25519: ready to verify */
    unsigned char body_hash[32];
    uint64_t body_total;         /* canonical body length */
};

struct dkim_verify {
    struct dkim_msg m;
    time_t now;
    int n;
    struct sig_state s[DKIM_MAX_SIGNATURES];
};

static void decide(struct sig_state *st, enum dkim_status status, const char *reason)
{
    st->vd.status = status;
    snprintf(st->vd.reason, sizeof(st->vd.reason), "%s", reason);
    st->decided = true;
}

int dkim_txt_add(struct dkim_txt *txt, const char *data, size_t len)
{
    if (txt->n < 0 || txt->n >= DKIM_TXT_RECORDS || len >= DKIM_TXT_LEN)
        return -1;
    memcpy(txt->rec[txt->n], data, len);
    txt->rec[txt->n][len] = '\0';
    txt->len[txt->n++] = len;
    return 0;
}

static void hash_sink(void *arg, const char *data, size_t len)
{
    EVP_DigestUpdate(arg, data, len);
}

/* SHA-256 of the canonical body; signatures with the same c= body part and
 * l= share one pass over the body. */
static int body_hash(struct dkim_verify *v, struct sig_state *st)
{
    for (int k = 0; k < v->n; k++) {
        struct sig_state *o = &v->s[k];
        if (o != st && o->body_done && o->sig.bc == st->sig.bc && o->sig.has_l == st->sig.has_l &&
            o->sig.l == st->sig.l) {
            memcpy(st->body_hash, o->body_hash, sizeof(st->body_hash));
            st->body_total = o->body_total;
            st->body_done = true;
            return 0;
        }
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, dkim_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return -1;
    }
    struct dkim_body_canon bc;
    dkim_body_init(&bc, st->sig.bc, st->sig.has_l, st->sig.l, hash_sink, ctx);
    dkim_body_feed(&bc, v->m.msg + v->m.body_off, v->m.len - v->m.body_off);
    dkim_body_final(&bc);
    unsigned int n = 0;
    int rc = EVP_DigestFinal_ex(ctx, st->body_hash, &n) == 1 ? 0 : -1;
    EVP_MD_CTX_free(ctx);
    st->body_total = bc.total;
    st->body_done = rc == 0;
    return rc;
}

/* The value of field f without its final line end. */
static void field_value(const struct dkim_msg *m, const struct dkim_field *f, const char **val_r,
                        size_t *len_r)
{
    const char *val = m->msg + f->off + f->name_len + 1;
    size_t len = f->len - f->name_len - 1;
    if (len > 0 && val[len - 1] == '\n')
        len--;
    if (len > 0 && val[len - 1] == '\r')
        len--;
    *val_r = val;
    *len_r = len;
}

/* "s._domainkey.d"; the parser keeps the total under 254 bytes. */
static void key_name(struct sig_state *st)
{
    size_t o = str_copy(st->key_name, st->sig.s, sizeof(st->key_name));
    o += str_copy(st->key_name + o, "._domainkey.", sizeof(st->key_name) - o);
    str_copy(st->key_name + o, st->sig.d, sizeof(st->key_name) - o);
}

static void sig_setup(struct dkim_verify *v, int field)
{
    struct sig_state *st = &v->s[v->n++];
    /* dkim_sig_parse() clears st->sig; the rest starts empty here rather
     * than by zeroing room for every possible signature up front. */
    _Static_assert(offsetof(struct sig_state, sig) == 0, "sig comes first");
    memset(&st->vd, 0, sizeof(*st) - offsetof(struct sig_state, vd));
    const struct dkim_field *f = &v->m.fields[field];
    st->field = field;
    const char *val;
    size_t len;
    field_value(&v->m, f, &val, &len);
    const char *reason = NULL;
    int rc = dkim_sig_parse(val, len, &st->sig, &reason);
    str_copy(st->vd.d, st->sig.d, sizeof(st->vd.d));
    str_copy(st->vd.s, st->sig.s, sizeof(st->vd.s));
    str_copy(st->vd.i, st->sig.i, sizeof(st->vd.i));
    str_copy(st->vd.a, st->sig.a, sizeof(st->vd.a));
    str_copy(st->vd.b, st->sig.b_text, sizeof(st->vd.b));
    if (v->m.truncated)
        decide(st, DKIM_PERMERROR, "header too large");
    else if (f->len > DKIM_SIG_FIELD_MAX)
        decide(st, DKIM_PERMERROR, "signature field too long");
    else if (rc < 0)
        decide(st, DKIM_PERMERROR, reason);
    else if (st->sig.has_x && st->sig.x < (uint64_t)v->now)
        decide(st, DKIM_PERMERROR, "signature expired");           /* RFC 6376 6.1.1 */
    else if (body_hash(v, st) < 0)
        decide(st, DKIM_TEMPERROR, "out of memory");
    else
        key_name(st);
}

struct dkim_verify *dkim_verify_new(const char *msg, size_t len, time_t now)
{
    struct dkim_verify *v = malloc(sizeof(*v));
    if (v == NULL)
        return NULL;
    v->n = 0;
    v->now = now ? now : time(NULL);
    if (dkim_msg_index(&v->m, msg, len) < 0) {
        free(v);
        return NULL;
    }
    for (int i = 0; i < v->m.n_fields; i++) {
        if (!dkim_field_is(&v->m, &v->m.fields[i], "dkim-signature", 14))
            continue;
        if (v->n == DKIM_MAX_SIGNATURES) {
            log_debug(NULL, "event=dkim_verify skipped=signatures_over_limit limit=%d",
                      DKIM_MAX_SIGNATURES);
            break;
        }
        sig_setup(v, i);
    }
    return v;
}

int dkim_verify_count(const struct dkim_verify *v)
{
    return v->n;
}

const char *dkim_verify_key_name(const struct dkim_verify *v, int idx)
{
    if (idx < 0 || idx >= v->n || v->s[idx].decided)
        return NULL;
    return v->s[idx].key_name;
}

/* Key records and their parsed keys, shared by every verification in the
 * process: OpenSSL 3 takes longer to decode an RSA key, and to set a
 * context up for it, than to verify a signature with it, and the same few
 * keys sign most of the mail a server receives.  Keyed by the exact TXT
 * record, so a record seen before is neither parsed nor decoded again;
 * each entry keeps what the record says besides p=, the key, and a
 * context made ready to verify with it (a verification works on its own
 * copy).  Entries are replaced least recently used first. */
#define KEY_CACHE_SIZE   64
#define KEY_CACHE_TXT    1500     /* longer records (RSA over 8192 bits) are not kept */

/* A key record's tags besides p= (struct dkim_keyrec without the key). */
struct key_policy {
    enum dkim_key_type type;
    bool sha256_ok, email_ok, testing, strict, revoked;
};

/* A key with the context to verify with it. */
struct verify_key {
    EVP_PKEY *pkey;
    EVP_PKEY_CTX *vctx;           /* RSA */
    EVP_MD_CTX *vmd;              /* Ed25519 */
};

struct key_cache_entry {
    size_t len;
    char txt[KEY_CACHE_TXT];
    struct key_policy pol;
    struct verify_key k;
    uint64_t used;
};
static struct key_cache_entry key_cache[KEY_CACHE_SIZE];
static uint64_t key_cache_clock;
static pthread_mutex_t key_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static void verify_key_free(struct verify_key *k)
{
    EVP_PKEY_CTX_free(k->vctx);
    EVP_MD_CTX_free(k->vmd);
    EVP_PKEY_free(k->pkey);
    *k = (struct verify_key){ NULL, NULL, NULL };
}

/* rsa-sha256 is RSASSA-PKCS1-v1_5 over SHA-256 (RFC 6376 3.3.1): the
 * context checks a hash computed apart.  Ed25519 signs the SHA-256 hash of
 * the data with pure Ed25519 (RFC 8463 3), a one-shot DigestVerify. */
static int verify_key_ready(struct verify_key *k, bool rsa)
{
    if (rsa) {
        k->vctx = EVP_PKEY_CTX_new(k->pkey, NULL);
        return k->vctx != NULL && EVP_PKEY_verify_init(k->vctx) == 1 &&
                       EVP_PKEY_CTX_set_rsa_padding(k->vctx, RSA_PKCS1_PADDING) == 1 &&
                       EVP_PKEY_CTX_set_signature_md(k->vctx, dkim_sha256()) == 1
                   ? 0
                   : -1;
    }
    k->vmd = EVP_MD_CTX_new();
    return k->vmd != NULL && EVP_DigestVerifyInit(k->vmd, NULL, NULL, NULL, k->pkey) == 1 ? 0 : -1;
}

/* A verification's own copy of k (a new reference to the key, a duplicate
 * of the context).  0 or -1. */
static int verify_key_copy(const struct verify_key *k, struct verify_key *out)
{
    *out = (struct verify_key){ NULL, NULL, NULL };
    if (k->vctx != NULL && (out->vctx = EVP_PKEY_CTX_dup(k->vctx)) == NULL)
        return -1;
    if (k->vmd != NULL) {
        out->vmd = EVP_MD_CTX_new();
        if (out->vmd == NULL || EVP_MD_CTX_copy_ex(out->vmd, k->vmd) != 1) {
            verify_key_free(out);
            return -1;
        }
    }
    if (EVP_PKEY_up_ref(k->pkey) != 1) {
        verify_key_free(out);
        return -1;
    }
    out->pkey = k->pkey;
    return 0;
}

static int key_cache_get(const char *txt, size_t len, struct key_policy *pol,
                         struct verify_key *out)
{
    int rc = -1;
    if (len > KEY_CACHE_TXT)
        return -1;
    pthread_mutex_lock(&key_cache_lock);
    for (int i = 0; i < KEY_CACHE_SIZE; i++) {
        struct key_cache_entry *e = &key_cache[i];
        if (e->k.pkey != NULL && e->len == len && memcmp(e->txt, txt, len) == 0) {
            rc = verify_key_copy(&e->k, out);
            if (rc == 0) {
                *pol = e->pol;
                e->used = ++key_cache_clock;
            }
            break;
        }
    }
    pthread_mutex_unlock(&key_cache_lock);
    return rc;
}

/* Takes k over (the caller keeps a copy). */
static void key_cache_put(const char *txt, size_t len, const struct key_policy *pol,
                          struct verify_key *k)
{
    if (len > KEY_CACHE_TXT) {
        verify_key_free(k);
        return;
    }
    struct verify_key old;
    pthread_mutex_lock(&key_cache_lock);
    struct key_cache_entry *e = &key_cache[0];
    for (int i = 1; i < KEY_CACHE_SIZE && e->k.pkey != NULL; i++)
        if (key_cache[i].k.pkey == NULL || key_cache[i].used < e->used)
            e = &key_cache[i];
    old = e->k;
    e->len = len;
    memcpy(e->txt, txt, len);
    e->pol = *pol;
    e->k = *k;
    e->used = ++key_cache_clock;
    pthread_mutex_unlock(&key_cache_lock);
    verify_key_free(&old);                  /* users hold their own copies */
}

/* p= holds a SubjectPublicKeyInfo (RFC 6376 3.6.1); a bare PKCS#1
 * RSAPublicKey is accepted too, as several signers publish one. */
static EVP_PKEY *rsa_key_parse(const struct dkim_keyrec *kr)
{
    const unsigned char *p = kr->p;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)kr->p_len);
    if (pk != NULL && EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA && p == kr->p + kr->p_len)
        return pk;
    EVP_PKEY_free(pk);
    p = kr->p;
    pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)kr->p_len);
    if (pk != NULL && p == kr->p + kr->p_len)
        return pk;
    EVP_PKEY_free(pk);
    return NULL;
}

/* The key of kr with a context to verify with (none for an RSA key of a
 * size refused anyway).  0 or -1. */
static int key_build(const struct dkim_keyrec *kr, struct verify_key *k)
{
    bool rsa = kr->type == DKIM_KEY_RSA;
    *k = (struct verify_key){ NULL, NULL, NULL };
    if (rsa)
        k->pkey = rsa_key_parse(kr);
    else if (kr->p_len == 32)
        k->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, kr->p, 32);
    if (k->pkey == NULL)
        return -1;
    int bits = EVP_PKEY_get_bits(k->pkey);
    if ((!rsa || (bits >= DKIM_RSA_MIN_BITS && bits <= DKIM_RSA_MAX_BITS)) &&
        verify_key_ready(k, rsa) < 0) {
        verify_key_free(k);
        return -1;
    }
    return 0;
}

/* The checks of RFC 6376 6.1.2 and RFC 8301 that need only the record's
 * tags.  NULL, or why the signature is a permerror. */
static const char *key_policy_check(struct sig_state *st, const struct key_policy *pol)
{
    const struct dkim_sig *sig = &st->sig;
    st->vd.testing = pol->testing;
    if (pol->revoked)
        return "key revoked";
    if ((pol->type == DKIM_KEY_RSA) != (sig->alg == DKIM_ALG_RSA_SHA256))
        return "key type does not match a=";
    if (!pol->sha256_ok)
        return "key h= does not allow sha256";
    if (!pol->email_ok)
        return "key is not for email (s=)";
    const char *at = strrchr(sig->i, '@');
    if (pol->strict && (at == NULL || strcasecmp(at + 1, sig->d) != 0))
        return "i= domain must equal d= (key t=s)";
    return NULL;
}

/* Gives st the key k (st owns it from here) and checks its size. */
static const char *key_use(struct sig_state *st, struct verify_key *k)
{
    st->pkey = k->pkey;
    st->vctx = k->vctx;
    st->vmd = k->vmd;
    if (st->sig.alg != DKIM_ALG_RSA_SHA256) {
        st->vd.key_bits = 256;
        return NULL;
    }
    st->vd.key_bits = EVP_PKEY_get_bits(st->pkey);
    if (st->vd.key_bits < DKIM_RSA_MIN_BITS)
        return "RSA key under 1024 bits (RFC 8301)";
    if (st->vd.key_bits > DKIM_RSA_MAX_BITS)
        return "RSA key over 8192 bits";
    return NULL;
}

/* One TXT record at the key name: 1 when it is the key (st decided when
 * it fails a check), 0 when it does not parse (*why_r says why). */
static int key_from_record(struct sig_state *st, const char *rec, size_t len,
                           struct dkim_keyrec *kr, const char **why_r)
{
    struct key_policy pol;
    struct verify_key k, mine;
    const char *bad;
    if (key_cache_get(rec, len, &pol, &k) == 0) {
        bad = key_policy_check(st, &pol);
        if (bad == NULL)
            bad = key_use(st, &k);
        else
            verify_key_free(&k);
    } else {
        if (dkim_keyrec_parse(rec, len, kr, why_r) < 0)
            return 0;
        pol = (struct key_policy){ kr->type,   kr->sha256_ok, kr->email_ok,
                                   kr->testing, kr->strict,    kr->revoked };
        bad = key_policy_check(st, &pol);
        if (bad == NULL && key_build(kr, &k) < 0)
            bad = "bad public key";
        else if (bad == NULL) {
            if (verify_key_copy(&k, &mine) == 0) {
                key_cache_put(rec, len, &pol, &k);
                k = mine;
            }
            bad = key_use(st, &k);
        }
    }
    if (bad != NULL)
        decide(st, DKIM_PERMERROR, bad);
    return 1;
}

void dkim_verify_set_key(struct dkim_verify *v, int idx, enum dkim_dns_status status,
                         const struct dkim_txt *txt)
{
    if (idx < 0 || idx >= v->n || v->s[idx].decided || v->s[idx].key_set)
        return;
    struct sig_state *st = &v->s[idx];
    st->key_set = true;
    if (status == DKIM_DNS_TEMPFAIL) {
        decide(st, DKIM_TEMPERROR, "key lookup failed");
        return;
    }
    if (status != DKIM_DNS_FOUND || txt == NULL || txt->n <= 0) {
        decide(st, DKIM_PERMERROR, "no key for signature");
        return;
    }
    /* Several records at the name: the first that parses is the key
     * (RFC 6376 6.1.2 leaves the choice to the verifier). */
    const char *reason = "no key for signature";
    struct dkim_keyrec *kr = malloc(sizeof(*kr));
    if (kr == NULL) {
        decide(st, DKIM_TEMPERROR, "out of memory");
        return;
    }
    for (int r = 0; r < txt->n && r < DKIM_TXT_RECORDS; r++) {
        const char *why = NULL;
        size_t len = txt->len[r] < DKIM_TXT_LEN ? txt->len[r] : DKIM_TXT_LEN - 1;
        if (key_from_record(st, txt->rec[r], len, kr, &why)) {
            free(kr);
            return;
        }
        if (r == 0)
            reason = why;
    }
    free(kr);
    decide(st, DKIM_PERMERROR, reason);
}

/* Selects the fields named in h= bottom-up, each instance once (RFC 6376
 * 5.4.2); a name with no instance left adds nothing (over-signing).  The
 * signature's own field is never a candidate: it did not exist when the
 * signer hashed.  Shared with signing (own = -1). */
int dkim_hash_fields(const struct dkim_msg *m, enum dkim_canon c, const char *const *names,
                     const size_t *lens, int n_names, int own, struct strbuf *out)
{
    if (m->n_fields == 0)
        return 0;
    bool *used = calloc((size_t)m->n_fields, sizeof(bool));
    if (used == NULL)
        return -1;
    int rc = 0;
    for (int h = 0; h < n_names && rc == 0; h++) {
        for (int k = m->n_fields - 1; k >= 0; k--) {
            const struct dkim_field *f = &m->fields[k];
            if (used[k] || k == own || !dkim_field_is(m, f, names[h], lens[h]))
                continue;
            used[k] = true;
            rc = dkim_canon_header(c, m->msg + f->off, f->len, out);
            break;
        }
    }
    free(used);
    return rc;
}

/* The signature field with the b= value deleted (RFC 6376 3.7), canonical,
 * without its trailing CRLF. */
static int hash_own_field(const struct dkim_msg *m, const struct sig_state *st, struct strbuf *out)
{
    const struct dkim_field *f = &m->fields[st->field];
    const char *raw = m->msg + f->off;
    size_t vo = f->name_len + 1;
    size_t ds = vo + st->sig.b_raw_start, de = vo + st->sig.b_raw_end;
    char *copy = malloc(f->len);
    if (copy == NULL)
        return -1;
    memcpy(copy, raw, ds);
    memcpy(copy + ds, raw + de, f->len - de);
    int rc = dkim_canon_header(st->sig.hc, copy, f->len - (de - ds), out);
    free(copy);
    if (rc == 0)
        out->len -= 2;
    return rc;
}

/* The header hash checked against b= with the context public_key() made
 * ready (RFC 6376 3.7, RFC 8463 3). */
static int crypto_verify(const struct sig_state *st, const struct strbuf *data)
{
    unsigned char hash[32];
    if (EVP_Digest(data->data, data->len, hash, NULL, dkim_sha256(), NULL) != 1)
        return -1;
    if (st->sig.alg == DKIM_ALG_RSA_SHA256)
        return st->vctx != NULL &&
                       EVP_PKEY_verify(st->vctx, st->sig.b, st->sig.b_len, hash, sizeof(hash)) == 1
                   ? 0
                   : -1;
    return st->vmd != NULL &&
                   EVP_DigestVerify(st->vmd, st->sig.b, st->sig.b_len, hash, sizeof(hash)) == 1
               ? 0
               : -1;
}

/* Body hash, then header hash and signature (RFC 6376 6.1.3).  Sets the
 * verdict. */
static void sig_check(struct dkim_verify *v, struct sig_state *st)
{
    const struct dkim_sig *sig = &st->sig;
    int signed_from = 0;
    for (int h = 0; h < sig->n_h; h++)
        if (sig->h_len[h] == 4 && strncasecmp(sig->h[h], "from", 4) == 0)
            signed_from++;
    /* A From field the signature does not cover could be the one a reader
     * sees (RFC 6376 8.15). */
    const char *bad = NULL;
    if (dkim_msg_count(&v->m, "from", 4) > signed_from)
        bad = "unsigned From field";
    else if (sig->has_l && sig->l > st->body_total)
        bad = "body shorter than l=";
    else if (sig->bh_len != sizeof(st->body_hash) || memcmp(sig->bh, st->body_hash, sig->bh_len) != 0)
        bad = "body hash mismatch";
    if (bad != NULL) {
        decide(st, DKIM_FAIL, bad);
        return;
    }
    st->vd.body_partial = sig->has_l && sig->l < st->body_total;
    struct strbuf data;
    strbuf_init(&data, 2 * (size_t)DKIM_HEADER_MAX + DKIM_SIG_FIELD_MAX);
    if (dkim_hash_fields(&v->m, sig->hc, sig->h, sig->h_len, sig->n_h, st->field, &data) < 0 ||
        hash_own_field(&v->m, st, &data) < 0)
        decide(st, DKIM_PERMERROR, "header too large");
    else if (crypto_verify(st, &data) == 0)
        decide(st, DKIM_PASS, "");
    else
        decide(st, DKIM_FAIL, "signature mismatch");
    strbuf_free(&data);
}

void dkim_verify_finish(struct dkim_verify *v)
{
    for (int i = 0; i < v->n; i++) {
        struct sig_state *st = &v->s[i];
        if (st->decided)
            continue;
        if (!st->key_set) {
            decide(st, DKIM_TEMPERROR, "key not looked up");
            continue;
        }
        sig_check(v, st);
        /* RFC 6376 3.6.1 t=y: not to be treated differently from unsigned
         * mail, so a failure is only neutral. */
        if (st->vd.status == DKIM_FAIL && st->vd.testing) {
            char why[sizeof(st->vd.reason)];
            snprintf(why, sizeof(why), "%s", st->vd.reason);
            snprintf(st->vd.reason, sizeof(st->vd.reason), "%.60s; key in testing mode", why);
            st->vd.status = DKIM_NEUTRAL;
        }
    }
}

const struct dkim_verdict *dkim_verify_result(const struct dkim_verify *v, int idx)
{
    if (idx < 0 || idx >= v->n)
        return NULL;
    return &v->s[idx].vd;
}

void dkim_verify_free(struct dkim_verify *v)
{
    if (v == NULL)
        return;
    for (int i = 0; i < v->n; i++) {
        EVP_PKEY_CTX_free(v->s[i].vctx);
        EVP_MD_CTX_free(v->s[i].vmd);
        EVP_PKEY_free(v->s[i].pkey);
    }
    dkim_msg_free(&v->m);
    free(v);
}

int dkim_verify_message(const char *msg, size_t len, time_t now, dkim_lookup_fn *lookup,
                        void *arg, struct dkim_verdict *out, int max)
{
    struct dkim_verify *v = dkim_verify_new(msg, len, now);
    if (v == NULL)
        return -1;
    struct dkim_txt *txt = malloc(sizeof(*txt));
    if (txt == NULL) {
        dkim_verify_free(v);
        return -1;
    }
    int n = dkim_verify_count(v);
    for (int i = 0; i < n; i++) {
        const char *name = dkim_verify_key_name(v, i);
        if (name == NULL)
            continue;
        txt->n = 0;
        enum dkim_dns_status st = lookup(name, txt, arg);
        dkim_verify_set_key(v, i, st, txt);
    }
    free(txt);
    dkim_verify_finish(v);
    for (int i = 0; i < n && i < max; i++)
        out[i] = *dkim_verify_result(v, i);
    dkim_verify_free(v);
    return n;
}

const char *dkim_status_name(enum dkim_status st)
{
    switch (st) {
    case DKIM_PASS: return "pass";
    case DKIM_FAIL: return "fail";
    case DKIM_NEUTRAL: return "neutral";
    case DKIM_TEMPERROR: return "temperror";
    case DKIM_PERMERROR: return "permerror";
    }
    return "permerror";
}

/* RFC 8601 pvalue: as is when it is made of atext, '.' and '@' (what
 * Authentication-Results parsers take), else a quoted-string. */
static void put_pvalue(struct strbuf *sb, const char *key, const char *val)
{
    bool plain = val[0] != '\0';
    for (const char *p = val; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("!#$%&'*+-/=?^_`{|}~.@", *p) != NULL || (unsigned char)*p >= 0x80))
            plain = false;
    strbuf_printf(sb, " %s=", key);
    if (plain) {
        strbuf_append(sb, val, strlen(val));
        return;
    }
    strbuf_append(sb, "\"", 1);
    for (const char *p = val; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            continue;
        if (*p == '"' || *p == '\\')
            strbuf_append(sb, "\\", 1);
        strbuf_append(sb, p, 1);
    }
    strbuf_append(sb, "\"", 1);
}

const char *dkim_verdict_format(const struct dkim_verdict *vd, char *buf, size_t size)
{
    struct strbuf sb;
    strbuf_init(&sb, 2048);
    strbuf_printf(&sb, "dkim=%s", dkim_status_name(vd->status));
    if (vd->status == DKIM_PASS && vd->key_bits > 0)
        strbuf_printf(&sb, " (%d-bit key%s%s)", vd->key_bits, vd->testing ? "; testing" : "",
                      vd->body_partial ? "; body partly signed" : "");
    else if (vd->reason[0])
        strbuf_printf(&sb, " (%s)", vd->reason);
    if (vd->d[0])
        put_pvalue(&sb, "header.d", vd->d);
    if (vd->i[0])
        put_pvalue(&sb, "header.i", vd->i);
    if (vd->s[0])
        put_pvalue(&sb, "header.s", vd->s);
    if (vd->a[0])
        put_pvalue(&sb, "header.a", vd->a);
    if (vd->b[0])
        put_pvalue(&sb, "header.b", vd->b);
    snprintf(buf, size, "%s", sb.data ? sb.data : "dkim=permerror");
    strbuf_free(&sb);
    return buf;
}
