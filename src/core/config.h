/*
 * Configuration (DESIGN section 3): INI parsed with inih.  Unknown sections,
 * unknown keys and bad values are errors naming file:line.  Without a file
 * the embedded development defaults (DESIGN section 4) apply.
 */
#ifndef POSTEL_CONFIG_H
#define POSTEL_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"
#include "filter/filter_config.h"

enum listen_role {
    ROLE_SMTP, ROLE_SUBMISSION, ROLE_SUBMISSIONS, ROLE_IMAP, ROLE_IMAPS,
    ROLE_POP3, ROLE_POP3S, ROLE_HTTP, ROLE_COUNT
};
#define LISTEN_MAX_PER_ROLE 8

struct listen_addr {
    char host[HOSTNAME_MAX];      /* "" or "0.0.0.0" for any; IPv6 without [] */
    int port;
};

struct dkim_domain_cfg {
    char domain[256];
    char selector[64];
    char key[1024];
};

struct config {
    char path[1024];              /* "" when running on embedded defaults */
    bool dev_defaults;
    char hostname[HOSTNAME_MAX];
    char data_dir[1024];
    char user[64];
    char domains[1024];           /* comma-separated, as configured */
    int log_level;                /* enum log_level */

    struct listen_addr listen[ROLE_COUNT][LISTEN_MAX_PER_ROLE];
    int n_listen[ROLE_COUNT];

    char tls_cert[1024], tls_key[1024];

    char dns_nameserver[HOSTNAME_MAX + 8];
    bool dnssec;

    uint64_t message_size;
    int recipients;
    int connections_per_ip;
    uint64_t idle_timeout;        /* seconds: SMTP command timeout */
    int auth_failures;            /* failed AUTH attempts before 421 */

    bool plaintext_loopback;      /* AUTH without TLS allowed from loopback */
    uint64_t auth_cache_ttl;      /* seconds a verified login is remembered; 0 = off */

    /* [pop3]: RFC 2449 EXPIRE and LOGIN-DELAY policy (src/pop3) */
    int pop3_expire;              /* days; -1 = never (default), 0 = retrieved
                                     messages are removed at QUIT */
    uint64_t pop3_login_delay;    /* seconds between logins of an account; 0 = any */

    int delivery_port;
    uint64_t retry_max_age;

    char relay_host[HOSTNAME_MAX];
    int relay_port;
    char relay_username[256];
    char relay_password_file[1024];

    struct dkim_domain_cfg dkim[16];
    int n_dkim;

    /* [dmarc]: aggregate reports (src/auth/dmarc_report.c) */
    bool dmarc_reports;           /* send them (default yes) */
    uint64_t dmarc_report_interval; /* seconds per report window (default 1d) */
    char dmarc_report_from[320];  /* "" = noreply-dmarc@ the first domain */
    char dmarc_org_name[256];     /* "" = hostname */

    /* [greylist], [lists], [dnsbl NAME], [dnswl NAME], [postscreen], [spam],
     * [rspamd], [ratelimit]: the anti-spam engine's own (filter_config.h) */
    struct filter_config filter;

    /* Capture mode (postel capture): accept every recipient and any AUTH,
     * store into the capture account, never relay. */
    bool capture;
    int capture_max;              /* keep the newest N messages */
    bool capture_durable;         /* fsync before 250 in capture mode too (--durable) */
    char capture_relay[HOSTNAME_MAX + 8]; /* "host:port" for releasing a message, "" = none */
};

/* The hidden account that capture mode stores into. */
#define CAPTURE_ACCOUNT "capture@capture.invalid"

extern const char *const listen_role_names[ROLE_COUNT];

/* Fills cfg with the values that apply when a file leaves a key out. */
void config_defaults(struct config *cfg);
/* The embedded development defaults (DESIGN section 4). */
void config_dev_defaults(struct config *cfg);
/* Loads a file over the defaults.  Returns 0, or -1 after writing every
 * error ("FILE:LINE: message") to errbuf (size bytes, newline separated). */
int config_load(struct config *cfg, const char *path, char *errbuf, size_t size);
/* Resolves which file to use: explicit (-c), $POSTEL_CONFIG, ./postel.conf,
 * /etc/postel/postel.conf; loads it or the dev defaults.  0 or -1 (errbuf). */
int config_resolve(struct config *cfg, const char *explicit_path, char *errbuf, size_t size);
/* Iterates the configured domains list: calls fn for each trimmed,
 * lower-cased domain. */
void config_each_domain(const struct config *cfg, void (*fn)(const char *domain, void *arg), void *arg);
/* struct config carries the anti-spam configuration (cli_filter.c checks). */
#define POSTEL_CONFIG_HAS_FILTER 1
#endif
