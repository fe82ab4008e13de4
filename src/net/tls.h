/*
 * TLS contexts (OpenSSL 3): TLS 1.2 and 1.3 only.  When no certificate is
 * configured, a self-signed one is generated into data_dir/tls/ at first
 * start and reused afterwards.
 */
#ifndef POSTEL_TLS_H
#define POSTEL_TLS_H
#include <openssl/ssl.h>

#include "core/config.h"

/* Server context from [tls] cert/key, or the generated self-signed pair.
 * NULL with *error_r set on failure. */
SSL_CTX *tls_server_ctx_new(const struct config *cfg, const char **error_r);
/* Client context for outbound delivery (no verification: opportunistic). */
SSL_CTX *tls_client_ctx_new(const char **error_r);
/* "TLSv1.3" and the cipher name of an established connection, for logs and
 * Received headers. */
void tls_describe(SSL *ssl, char *buf, size_t size);
#endif
