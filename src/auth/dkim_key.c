/*
 * DKIM signing keys: loading, finding the keys of a domain, `postel dkim
 * keygen`, and the DNS record to publish.
 *
 * Keys made by keygen live in data_dir/dkim/DOMAIN.SELECTOR.key; the file
 * being there is what turns signing on for DOMAIN.  Selectors made or
 * found there are single DNS labels, so the name splits one way only.
 */
#include "auth/dkim_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define DKIM_KEY_FILES_MAX 32   /* key files looked at for one domain */

bool dkim_name_ok(const char *s, bool dots)
{
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.' && dots) {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0;
}

static void lower_copy(char *dst, const char *src, size_t size)
{
    str_copy(dst, src, size);
    str_lower(dst);
}

int dkim_key_load(struct dkim_key *key, const char *domain, const char *selector,
                  const char *path, char *err, size_t err_size)
{
    memset(key, 0, sizeof(*key));
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        snprintf(err, err_size, "cannot open DKIM key %s: %s", path, strerror(errno));
        return -1;
    }
    EVP_PKEY *pk = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    if (pk == NULL) {
        snprintf(err, err_size, "%s: not a PEM private key", path);
        return -1;
    }
    int id = EVP_PKEY_get_base_id(pk);
    if (id == EVP_PKEY_RSA && EVP_PKEY_get_bits(pk) >= DKIM_RSA_MIN_BITS &&
        EVP_PKEY_get_bits(pk) <= DKIM_RSA_MAX_BITS) {
        key->type = DKIM_KEY_RSA;
    } else if (id == EVP_PKEY_ED25519) {
        key->type = DKIM_KEY_ED25519;
    } else {
        snprintf(err, err_size, "%s: need an RSA key of 1024 to 8192 bits or an Ed25519 key", path);
        EVP_PKEY_free(pk);
        return -1;
    }
    key->pkey = pk;
    key->bits = EVP_PKEY_get_bits(pk);
    /* Setting a signing context up (OpenSSL 3 looks the algorithm up by
     * name each time) costs microseconds: done once here, and each
     * signature works on a copy.  A failure only loses the shortcut. */
    key->sign_ctx = EVP_MD_CTX_new();
    if (key->sign_ctx != NULL &&
        EVP_DigestSignInit(key->sign_ctx, NULL, key->type == DKIM_KEY_RSA ? dkim_sha256() : NULL,
                           NULL, pk) != 1) {
        EVP_MD_CTX_free(key->sign_ctx);
        key->sign_ctx = NULL;
    }
    lower_copy(key->domain, domain, sizeof(key->domain));
    str_copy(key->selector, selector, sizeof(key->selector));
    str_copy(key->path, path, sizeof(key->path));
    return 0;
}

void dkim_key_free(struct dkim_key *key)
{
    EVP_MD_CTX_free(key->sign_ctx);
    key->sign_ctx = NULL;
    EVP_PKEY_free(key->pkey);
    key->pkey = NULL;
}

/* The selector of a keygen file name "DOMAIN.SELECTOR.key", or false. */
static bool key_file_selector(const char *file, const char *domain, char *sel, size_t size)
{
    size_t dl = strlen(domain), fl = strlen(file);
    if (fl <= dl + 5 || strncasecmp(file, domain, dl) != 0 || file[dl] != '.' ||
        strcmp(file + fl - 4, ".key") != 0)
        return false;
    size_t sl = fl - dl - 5;
    if (sl >= size)
        return false;
    memcpy(sel, file + dl + 1, sl);
    sel[sl] = '\0';
    return dkim_name_ok(sel, false);
}

struct key_pick {
    struct dkim_key key;
    time_t mtime;
    bool set;
};

/* Newest key per algorithm; on equal times the greater selector. */
static void pick_key(struct key_pick *best, struct dkim_key *key, time_t mtime)
{
    struct key_pick *b = &best[key->type];
    if (b->set && (b->mtime > mtime || (b->mtime == mtime && strcmp(b->key.selector, key->selector) > 0))) {
        dkim_key_free(key);
        return;
    }
    if (b->set)
        dkim_key_free(&b->key);
    b->key = *key;
    b->mtime = mtime;
    b->set = true;
}

static int keys_from_data_dir(const struct config *cfg, const char *domain, struct dkim_key *keys,
                              int max)
{
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/dkim", cfg->data_dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    struct key_pick best[2];
    memset(best, 0, sizeof(best));
    struct dirent *de;
    int seen = 0;
    while ((de = readdir(d)) != NULL && seen < DKIM_KEY_FILES_MAX) {
        char sel[64], path[1400], err[256];
        if (!key_file_selector(de->d_name, domain, sel, sizeof(sel)))
            continue;
        seen++;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        struct stat sb;
        struct dkim_key k;
        if (stat(path, &sb) < 0 || dkim_key_load(&k, domain, sel, path, err, sizeof(err)) < 0)
            continue;                   /* a stray or broken file: not a key of ours */
        pick_key(best, &k, sb.st_mtime);
    }
    closedir(d);
    int n = 0;
    for (int t = 0; t < 2; t++) {
        if (!best[t].set)
            continue;
        if (n < max)
            keys[n++] = best[t].key;
        else
            dkim_key_free(&best[t].key);
    }
    return n;
}

int dkim_keys_for_domain(const struct config *cfg, const char *domain, struct dkim_key *keys,
                         int max, char *err, size_t err_size)
{
    int n = 0;
    bool configured = false;
    for (int i = 0; i < cfg->n_dkim; i++) {
        const struct dkim_domain_cfg *dc = &cfg->dkim[i];
        if (strcasecmp(dc->domain, domain) != 0)
            continue;
        configured = true;
        if (n >= max)
            break;
        if (dkim_key_load(&keys[n], dc->domain, dc->selector, dc->key, err, err_size) < 0) {
            while (n > 0)
                dkim_key_free(&keys[--n]);
            return -1;
        }
        n++;
    }
    if (configured)
        return n;
    return keys_from_data_dir(cfg, domain, keys, max);
}

static EVP_PKEY *generate(enum dkim_key_type type)
{
    if (type == DKIM_KEY_RSA)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
}

/* Writes the PEM next to path, then links it into place: an existing key
 * is never replaced, and a crash leaves no half-written key. */
static int write_key(EVP_PKEY *pk, const char *dir, const char *path, char *err, size_t err_size)
{
    char tmp[1200], hex[17];
    random_hex(hex, 16);
    snprintf(tmp, sizeof(tmp), "%s/.keygen.%s.tmp", dir, hex);
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long pem_len = 0;
    if (bio == NULL || PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL) != 1 ||
        (pem_len = BIO_get_mem_data(bio, &pem)) <= 0) {
        BIO_free(bio);
        snprintf(err, err_size, "cannot encode the key");
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int rc = -1;
    if (fd < 0) {
        snprintf(err, err_size, "cannot create %s: %s", tmp, strerror(errno));
    } else if (write_full(fd, pem, (size_t)pem_len) < 0 || fsync(fd) < 0) {
        snprintf(err, err_size, "cannot write %s: %s", tmp, strerror(errno));
    } else if (link(tmp, path) < 0) {
        int e = errno;
        if (e == EEXIST)
            snprintf(err, err_size, "%s exists already (choose another --selector)", path);
        else
            snprintf(err, err_size, "cannot create %s: %s", path, strerror(e));
    } else {
        rc = 0;
    }
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    BIO_free(bio);
    if (rc == 0)
        fsync_dir(dir);
    return rc;
}

int dkim_keygen(const struct config *cfg, const char *domain, const char *selector,
                enum dkim_key_type type, struct dkim_key *key_r, char *err, size_t err_size)
{
    char dom[256], sel[64], dir[1100], path[1500];
    if (cfg->data_dir[0] == '\0') {
        snprintf(err, err_size, "no data_dir configured");
        return -1;
    }
    if (!dkim_name_ok(domain, true) || strlen(domain) >= sizeof(dom)) {
        snprintf(err, err_size, "bad domain name: %s", domain);
        return -1;
    }
    lower_copy(dom, domain, sizeof(dom));
    if (selector == NULL) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        snprintf(sel, sizeof(sel), "postel-%04d%02d%s", tm.tm_year + 1900, tm.tm_mon + 1,
                 type == DKIM_KEY_ED25519 ? "-ed" : "");
    } else if (!dkim_name_ok(selector, false) || strlen(selector) >= sizeof(sel)) {
        snprintf(err, err_size, "bad selector (one DNS label: letters, digits, '-', '_'): %s", selector);
        return -1;
    } else {
        str_copy(sel, selector, sizeof(sel));
    }
    snprintf(dir, sizeof(dir), "%s/dkim", cfg->data_dir);
    snprintf(path, sizeof(path), "%s/%s.%s.key", dir, dom, sel);
    if (mkdir_p(dir, 0700) < 0) {
        snprintf(err, err_size, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    EVP_PKEY *pk = generate(type);
    if (pk == NULL) {
        snprintf(err, err_size, "key generation failed");
        return -1;
    }
    int rc = write_key(pk, dir, path, err, err_size);
    EVP_PKEY_free(pk);
    if (rc < 0)
        return -1;
    return dkim_key_load(key_r, dom, sel, path, err, err_size);
}

/* p= is the DER SubjectPublicKeyInfo for RSA (RFC 6376 3.6.1) and the raw
 * 32-byte key for Ed25519 (RFC 8463 4). */
int dkim_key_record(const struct dkim_key *key, struct strbuf *out)
{
    unsigned char raw[2048];
    size_t raw_len = sizeof(raw);
    if (key->pkey == NULL)
        return -1;
    if (key->type == DKIM_KEY_RSA) {
        int n = i2d_PUBKEY(key->pkey, NULL);
        if (n <= 0 || (size_t)n > sizeof(raw))
            return -1;
        unsigned char *p = raw;
        raw_len = (size_t)i2d_PUBKEY(key->pkey, &p);
    } else if (EVP_PKEY_get_raw_public_key(key->pkey, raw, &raw_len) != 1) {
        return -1;
    }
    char b64[sizeof(raw) * 4 / 3 + 8];
    dkim_b64_encode(raw, raw_len, b64);
    return strbuf_printf(out, "v=DKIM1; k=%s; p=%s", key->type == DKIM_KEY_RSA ? "rsa" : "ed25519", b64);
}

int dkim_key_zone_record(const struct dkim_key *key, struct strbuf *out)
{
    struct strbuf rec;
    strbuf_init(&rec, 4096);
    if (dkim_key_record(key, &rec) < 0) {
        strbuf_free(&rec);
        return -1;
    }
    const char *p = strstr(rec.data, "p=");
    int rc = strbuf_printf(out, "%s._domainkey.%s. IN TXT ( \"%.*s\"", key->selector, key->domain,
                           (int)(p - rec.data), rec.data);
    for (size_t left = strlen(p); left > 0 && rc == 0;) {
        size_t n = left < 255 ? left : 255;
        rc = strbuf_printf(out, " \"%.*s\"", (int)n, p);
        p += n;
        left -= n;
    }
    if (rc == 0)
        rc = strbuf_append(out, " )", 2);
    strbuf_free(&rec);
    return rc;
}
