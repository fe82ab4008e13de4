#include "net/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

static const char *ssl_error(void)
{
    static __thread char buf[256];
    unsigned long e = ERR_get_error();
    if (e == 0)
        return "unknown TLS error";
    ERR_error_string_n(e, buf, sizeof(buf));
    return buf;
}

/* Writes a self-signed EC P-256 certificate for hostname, valid ten years. */
static int tls_generate(const char *hostname, const char *cert_path, const char *key_path,
                        const char **error_r)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    FILE *f = NULL;
    int rc = -1;
    if (pkey == NULL || x == NULL)
        goto out;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(random_u64() & 0x7fffffff));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400);
    X509_set_pubkey(x, pkey);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)hostname, -1, -1, 0);
    X509_set_issuer_name(x, name);
    char san[HOSTNAME_MAX + 8];
    snprintf(san, sizeof(san), "DNS:%s", hostname);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
    if (ext) {
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    if (!X509_sign(x, pkey, EVP_sha256()))
        goto out;
    int fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL)
        goto out;
    if (!PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL))
        goto out;
    fflush(f);
    fsync(fileno(f));
    fclose(f);
    f = fopen(cert_path, "w");
    if (f == NULL || !PEM_write_X509(f, x))
        goto out;
    fflush(f);
    fsync(fileno(f));
    rc = 0;
out:
    if (rc < 0)
        *error_r = errno ? strerror(errno) : ssl_error();
    if (f)
        fclose(f);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return rc;
}

SSL_CTX *tls_server_ctx_new(const struct config *cfg, const char **error_r)
{
    char cert[1100], key[1100];
    if (cfg->tls_cert[0]) {
        str_copy(cert, cfg->tls_cert, sizeof(cert));
        str_copy(key, cfg->tls_key, sizeof(key));
    } else {
        char dir[1040];
        snprintf(dir, sizeof(dir), "%s/tls", cfg->data_dir);
        snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
        snprintf(key, sizeof(key), "%s/key.pem", dir);
        if (access(cert, R_OK) != 0 || access(key, R_OK) != 0) {
            if (mkdir_p(dir, 0700) < 0) {
                *error_r = strerror(errno);
                return NULL;
            }
            errno = 0;
            if (tls_generate(cfg->hostname, cert, key, error_r) < 0)
                return NULL;
            log_info(NULL, "event=tls_selfsigned cert=%s hostname=%s", cert, cfg->hostname);
        }
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        *error_r = ssl_error();
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        *error_r = ssl_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL_CTX *tls_client_ctx_new(const char **error_r)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        *error_r = ssl_error();
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return ctx;
}

void tls_describe(SSL *ssl, char *buf, size_t size)
{
    snprintf(buf, size, "version=%s cipher=%s", SSL_get_version(ssl),
             SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
}
