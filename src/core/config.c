#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

const char *const listen_role_names[ROLE_COUNT] = {
    "smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http",
};

void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    if (gethostname(cfg->hostname, sizeof(cfg->hostname)) != 0 || cfg->hostname[0] == '\0')
        str_copy(cfg->hostname, "localhost", sizeof(cfg->hostname));
    cfg->hostname[sizeof(cfg->hostname) - 1] = '\0';
    str_copy(cfg->data_dir, "/var/lib/postel", sizeof(cfg->data_dir));
    cfg->log_level = LOG_INFO;
    cfg->dnssec = true;
    cfg->message_size = DEFAULT_MESSAGE_SIZE;
    cfg->recipients = DEFAULT_RECIPIENTS;
    cfg->connections_per_ip = DEFAULT_CONN_PER_IP;
    cfg->idle_timeout = DEFAULT_SMTP_TIMEOUT;
    cfg->auth_failures = 3;
    cfg->auth_cache_ttl = 3600;
    cfg->pop3_expire = -1;
    cfg->delivery_port = 25;
    cfg->retry_max_age = 5 * 86400;
    cfg->relay_port = 587;
    cfg->dmarc_reports = true;
    cfg->dmarc_report_interval = 86400;
    filter_config_defaults(&cfg->filter);
}

static void add_listen(struct config *cfg, enum listen_role role, const char *host, int port)
{
    int n = cfg->n_listen[role];
    if (n >= LISTEN_MAX_PER_ROLE)
        return;
    str_copy(cfg->listen[role][n].host, host, sizeof(cfg->listen[role][n].host));
    cfg->listen[role][n].port = port;
    cfg->n_listen[role] = n + 1;
}

void config_dev_defaults(struct config *cfg)
{
    static const int ports[ROLE_COUNT] = { 10025, 10587, 10465, 10143, 10993, 10110, 10995, 10080 };
    config_defaults(cfg);
    cfg->dev_defaults = true;
    str_copy(cfg->hostname, "localhost", sizeof(cfg->hostname));
    str_copy(cfg->data_dir, "./postel-data", sizeof(cfg->data_dir));
    str_copy(cfg->domains, "localhost, example.test", sizeof(cfg->domains));
    cfg->plaintext_loopback = true;
    for (int r = 0; r < ROLE_COUNT; r++)
        add_listen(cfg, (enum listen_role)r, "127.0.0.1", ports[r]);
}

/* Parsing state handed to inih: errors accumulate, all are reported. */
struct load_ctx {
    struct config *cfg;
    const char *path;
    char *errbuf;
    size_t errsize, errlen;
    int errors;
    FILE *f;
    char *linebuf;
    size_t linecap;
    int line;
};

static void load_error(struct load_ctx *lc, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void load_error(struct load_ctx *lc, int line, const char *fmt, ...)
{
    lc->errors++;
    if (lc->errlen + 1 >= lc->errsize)
        return;
    int n = snprintf(lc->errbuf + lc->errlen, lc->errsize - lc->errlen, "%s:%d: ", lc->path, line);
    if (n > 0 && (size_t)n < lc->errsize - lc->errlen)
        lc->errlen += (size_t)n;
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(lc->errbuf + lc->errlen, lc->errsize - lc->errlen, fmt, ap);
    va_end(ap);
    if (n > 0)
        lc->errlen += (size_t)n < lc->errsize - lc->errlen ? (size_t)n : lc->errsize - lc->errlen - 1;
    if (lc->errlen + 1 < lc->errsize)
        lc->errbuf[lc->errlen++] = '\n';
    lc->errbuf[lc->errlen < lc->errsize ? lc->errlen : lc->errsize - 1] = '\0';
}

static int set_string(struct load_ctx *lc, int line, char *dst, size_t size, const char *value)
{
    if (str_copy(dst, value, size) >= size) {
        load_error(lc, line, "value too long (max %zu characters)", size - 1);
        return -1;
    }
    return 0;
}

static int set_size(struct load_ctx *lc, int line, uint64_t *dst, const char *value)
{
    if (parse_size(value, dst) < 0) {
        load_error(lc, line, "bad size '%s' (expected a number with optional K, M or G)", value);
        return -1;
    }
    return 0;
}

static int set_duration(struct load_ctx *lc, int line, uint64_t *dst, const char *value)
{
    if (parse_duration(value, dst) < 0) {
        load_error(lc, line, "bad duration '%s' (expected e.g. 30s, 5m, 4h, 5d)", value);
        return -1;
    }
    return 0;
}

static int set_bool(struct load_ctx *lc, int line, bool *dst, const char *value)
{
    if (parse_bool(value, dst) < 0) {
        load_error(lc, line, "bad boolean '%s' (expected yes or no)", value);
        return -1;
    }
    return 0;
}

static int set_int(struct load_ctx *lc, int line, int *dst, const char *value, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || *value == '\0' || *end != '\0' || v < min || v > max) {
        load_error(lc, line, "bad number '%s' (expected %ld to %ld)", value, min, max);
        return -1;
    }
    *dst = (int)v;
    return 0;
}

static int set_listen(struct load_ctx *lc, int line, enum listen_role role, const char *value)
{
    char buf[CONFIG_VALUE_MAX];
    str_copy(buf, value, sizeof(buf));
    lc->cfg->n_listen[role] = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        str_trim(tok);
        char host[HOSTNAME_MAX];
        int port;
        if (parse_hostport(tok, host, sizeof(host), &port) < 0 || port == 0) {
            load_error(lc, line, "bad address '%s' (expected HOST:PORT or [IPv6]:PORT)", tok);
            return -1;
        }
        if (lc->cfg->n_listen[role] >= LISTEN_MAX_PER_ROLE) {
            load_error(lc, line, "too many addresses (max %d)", LISTEN_MAX_PER_ROLE);
            return -1;
        }
        add_listen(lc->cfg, role, host, port);
    }
    return 0;
}

static int key_main(struct load_ctx *lc, int line, const char *name, const char *value)
{
    struct config *cfg = lc->cfg;
    if (strcmp(name, "hostname") == 0)
        return set_string(lc, line, cfg->hostname, sizeof(cfg->hostname), value);
    if (strcmp(name, "data_dir") == 0)
        return set_string(lc, line, cfg->data_dir, sizeof(cfg->data_dir), value);
    if (strcmp(name, "user") == 0)
        return set_string(lc, line, cfg->user, sizeof(cfg->user), value);
    if (strcmp(name, "domains") == 0)
        return set_string(lc, line, cfg->domains, sizeof(cfg->domains), value);
    if (strcmp(name, "log_level") == 0) {
        static const char *levels[] = { "debug", "info", "warn", "error" };
        for (int i = 0; i < 4; i++)
            if (strcasecmp(value, levels[i]) == 0) {
                cfg->log_level = i;
                return 0;
            }
        load_error(lc, line, "bad log_level '%s' (expected debug, info, warn or error)", value);
        return -1;
    }
    load_error(lc, line, "unknown key '%s'", name);
    return -1;
}

static int key_limits(struct load_ctx *lc, int line, const char *name, const char *value)
{
    struct config *cfg = lc->cfg;
    if (strcmp(name, "message_size") == 0)
        return set_size(lc, line, &cfg->message_size, value);
    if (strcmp(name, "recipients") == 0)
        return set_int(lc, line, &cfg->recipients, value, 1, 100000);
    if (strcmp(name, "connections_per_ip") == 0)
        return set_int(lc, line, &cfg->connections_per_ip, value, 1, 1000000);
    if (strcmp(name, "idle_timeout") == 0)
        return set_duration(lc, line, &cfg->idle_timeout, value);
    if (strcmp(name, "auth_failures") == 0)
        return set_int(lc, line, &cfg->auth_failures, value, 1, 1000);
    load_error(lc, line, "unknown key '%s' in [limits]", name);
    return -1;
}

/* [dmarc]: the aggregate reports we send (RFC 7489 7.2). */
static int key_dmarc(struct load_ctx *lc, int line, const char *name, const char *value)
{
    struct config *cfg = lc->cfg;
    if (strcmp(name, "reports") == 0)
        return set_bool(lc, line, &cfg->dmarc_reports, value);
    if (strcmp(name, "report_interval") == 0) {
        uint64_t v;
        if (set_duration(lc, line, &v, value) < 0)
            return -1;
        if (v < 1 || v > 7 * 86400) {
            load_error(lc, line, "bad report_interval '%s' (expected 1s to 7d)", value);
            return -1;
        }
        cfg->dmarc_report_interval = v;
        return 0;
    }
    if (strcmp(name, "report_from") == 0) {
        const char *at = strchr(value, '@');
        if (at == NULL || at == value || at[1] == '\0' || strpbrk(value, " \t<>\"") != NULL) {
            load_error(lc, line, "bad report_from '%s' (expected an address local@domain)", value);
            return -1;
        }
        return set_string(lc, line, cfg->dmarc_report_from, sizeof(cfg->dmarc_report_from), value);
    }
    if (strcmp(name, "org_name") == 0)
        return set_string(lc, line, cfg->dmarc_org_name, sizeof(cfg->dmarc_org_name), value);
    load_error(lc, line, "unknown key '%s' in [dmarc]", name);
    return -1;
}

static int key_section(struct load_ctx *lc, int line, const char *section, const char *name,
                       const char *value)
{
    struct config *cfg = lc->cfg;
    if (strcmp(section, "listen") == 0) {
        for (int r = 0; r < ROLE_COUNT; r++)
            if (strcmp(name, listen_role_names[r]) == 0)
                return set_listen(lc, line, (enum listen_role)r, value);
        load_error(lc, line, "unknown role '%s' in [listen]", name);
        return -1;
    }
    if (strcmp(section, "tls") == 0) {
        if (strcmp(name, "cert") == 0)
            return set_string(lc, line, cfg->tls_cert, sizeof(cfg->tls_cert), value);
        if (strcmp(name, "key") == 0)
            return set_string(lc, line, cfg->tls_key, sizeof(cfg->tls_key), value);
    } else if (strcmp(section, "dns") == 0) {
        if (strcmp(name, "nameserver") == 0) {
            char host[HOSTNAME_MAX];
            int port;
            if (parse_hostport(value, host, sizeof(host), &port) < 0) {
                load_error(lc, line, "bad nameserver '%s' (expected IP:PORT)", value);
                return -1;
            }
            return set_string(lc, line, cfg->dns_nameserver, sizeof(cfg->dns_nameserver), value);
        }
        if (strcmp(name, "dnssec") == 0)
            return set_bool(lc, line, &cfg->dnssec, value);
    } else if (strcmp(section, "limits") == 0) {
        return key_limits(lc, line, name, value);
    } else if (strcmp(section, "auth") == 0) {
        if (strcmp(name, "plaintext_loopback") == 0)
            return set_bool(lc, line, &cfg->plaintext_loopback, value);
        if (strcmp(name, "cache_ttl") == 0)
            return set_duration(lc, line, &cfg->auth_cache_ttl, value);
    } else if (strcmp(section, "pop3") == 0) {
        if (strcmp(name, "expire") == 0 && strcasecmp(value, "never") == 0) {
            cfg->pop3_expire = -1;
            return 0;
        }
        if (strcmp(name, "expire") == 0)
            return set_int(lc, line, &cfg->pop3_expire, value, 0, 36500);
        if (strcmp(name, "login_delay") == 0)
            return set_duration(lc, line, &cfg->pop3_login_delay, value);
    } else if (strcmp(section, "delivery") == 0) {
        if (strcmp(name, "port") == 0)
            return set_int(lc, line, &cfg->delivery_port, value, 1, 65535);
        if (strcmp(name, "retry_max_age") == 0)
            return set_duration(lc, line, &cfg->retry_max_age, value);
    } else if (strcmp(section, "relay") == 0) {
        if (strcmp(name, "host") == 0)
            return set_string(lc, line, cfg->relay_host, sizeof(cfg->relay_host), value);
        if (strcmp(name, "port") == 0)
            return set_int(lc, line, &cfg->relay_port, value, 1, 65535);
        if (strcmp(name, "username") == 0)
            return set_string(lc, line, cfg->relay_username, sizeof(cfg->relay_username), value);
        if (strcmp(name, "password_file") == 0)
            return set_string(lc, line, cfg->relay_password_file,
                              sizeof(cfg->relay_password_file), value);
    } else if (strcmp(section, "dmarc") == 0) {
        return key_dmarc(lc, line, name, value);
    } else if (strncmp(section, "dkim ", 5) == 0) {
        struct dkim_domain_cfg *d = &cfg->dkim[cfg->n_dkim - 1];
        if (strcmp(name, "selector") == 0)
            return set_string(lc, line, d->selector, sizeof(d->selector), value);
        if (strcmp(name, "key") == 0)
            return set_string(lc, line, d->key, sizeof(d->key), value);
    } else if (filter_config_section(section)) {
        char err[256];
        if (filter_config_key(&cfg->filter, section, name, value, err, sizeof(err)) == 0)
            return 0;
        load_error(lc, line, "%s", err);
        return -1;
    } else {
        /* unknown sections were reported at their header */
        return -1;
    }
    load_error(lc, line, "unknown key '%s' in [%s]", name, section);
    return -1;
}

static const char *const known_sections[] = {
    "listen", "tls", "dns", "limits", "auth", "pop3", "delivery", "relay", "dmarc", NULL,
};

/* A section header, seen by the line reader (Debian's inih does not report
 * headers or line numbers to the handler, so the reader tracks both). */
static void on_section(struct load_ctx *lc, const char *section)
{
    if (strncmp(section, "dkim ", 5) == 0) {
        if (lc->cfg->n_dkim >= (int)(sizeof(lc->cfg->dkim) / sizeof(lc->cfg->dkim[0]))) {
            load_error(lc, lc->line, "too many [dkim] sections");
            return;
        }
        struct dkim_domain_cfg *d = &lc->cfg->dkim[lc->cfg->n_dkim++];
        memset(d, 0, sizeof(*d));
        char dom[256];
        str_copy(dom, section + 5, sizeof(dom));
        str_trim(dom);
        str_lower(dom);
        str_copy(d->domain, dom, sizeof(d->domain));
        if (d->domain[0] == '\0')
            load_error(lc, lc->line, "[dkim] section needs a domain: [dkim example.org]");
        return;
    }
    for (int i = 0; known_sections[i]; i++)
        if (strcmp(section, known_sections[i]) == 0)
            return;
    if (filter_config_section(section))
        return;
    load_error(lc, lc->line, "unknown section [%s]", section);
}

/* Feeds inih one line at a time: counts lines, removes "# comment" tails
 * (after white space), spots section headers, refuses over-long lines. */
static char *config_reader(char *str, int num, void *stream)
{
    struct load_ctx *lc = stream;
    ssize_t n = getline(&lc->linebuf, &lc->linecap, lc->f);
    if (n < 0)
        return NULL;
    lc->line++;
    char *l = lc->linebuf;
    for (char *p = l; *p; p++)
        if (*p == '#' && (p == l || p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    str_trim(l);
    if ((int)strlen(l) >= num - 1) {
        load_error(lc, lc->line, "line too long (max %d characters)", num - 2);
        l[0] = '\0';
    }
    if (l[0] == '[') {
        char *close = strchr(l, ']');
        if (close != NULL) {
            char sec[256];
            size_t sl = (size_t)(close - l - 1);
            if (sl >= sizeof(sec))
                sl = sizeof(sec) - 1;
            memcpy(sec, l + 1, sl);
            sec[sl] = '\0';
            str_trim(sec);
            on_section(lc, sec);
        }
    }
    snprintf(str, (size_t)num, "%s\n", l);
    return str;
}

static int on_entry(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *lc = user;
    int line = lc->line;
    if (section[0] == '\0')
        key_main(lc, line, name, value);
    else
        key_section(lc, line, section, name, value);
    return 1;
}

int config_load(struct config *cfg, const char *path, char *errbuf, size_t size)
{
    struct load_ctx lc = { .cfg = cfg, .path = path, .errbuf = errbuf, .errsize = size };
    if (size > 0)
        errbuf[0] = '\0';
    lc.f = fopen(path, "r");
    if (lc.f == NULL) {
        snprintf(errbuf, size, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    str_copy(cfg->path, path, sizeof(cfg->path));
    cfg->dev_defaults = false;
    /* A file without [listen] runs no listeners (DESIGN 3: a role left out does not run). */
    memset(cfg->n_listen, 0, sizeof(cfg->n_listen));
    int rc = ini_parse_stream(config_reader, &lc, on_entry, &lc);
    fclose(lc.f);
    free(lc.linebuf);
    if (rc > 0)
        load_error(&lc, rc, "syntax error (expected key = value or [section])");
    else if (rc < 0)
        load_error(&lc, 0, "cannot parse file");
    for (int i = 0; i < cfg->n_dkim; i++)
        if (cfg->dkim[i].selector[0] == '\0' || cfg->dkim[i].key[0] == '\0')
            load_error(&lc, 0, "[dkim %s] needs both selector and key", cfg->dkim[i].domain);
    if ((cfg->tls_cert[0] == '\0') != (cfg->tls_key[0] == '\0'))
        load_error(&lc, 0, "[tls] needs both cert and key");
    char ferr[256];
    if (filter_config_finish(&cfg->filter, ferr, sizeof(ferr)) < 0)
        load_error(&lc, 0, "%s", ferr);
    return lc.errors ? -1 : 0;
}

int config_resolve(struct config *cfg, const char *explicit_path, char *errbuf, size_t size)
{
    const char *path = explicit_path;
    if (path == NULL)
        path = getenv("POSTEL_CONFIG");
    if (path == NULL && access("./postel.conf", F_OK) == 0)
        path = "./postel.conf";
    if (path == NULL && access("/etc/postel/postel.conf", F_OK) == 0)
        path = "/etc/postel/postel.conf";
    if (path == NULL) {
        config_dev_defaults(cfg);
        return 0;
    }
    config_defaults(cfg);
    return config_load(cfg, path, errbuf, size);
}

void config_each_domain(const struct config *cfg, void (*fn)(const char *domain, void *arg), void *arg)
{
    char buf[sizeof(cfg->domains)];
    str_copy(buf, cfg->domains, sizeof(buf));
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        str_trim(tok);
        str_lower(tok);
        if (*tok)
            fn(tok, arg);
    }
}
