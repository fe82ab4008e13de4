/*
 * postel capture: accept every message on an SMTP port, keep it in the
 * store (the hidden capture account), show it in a web UI and a
 * Mailpit-compatible REST API; never relay except when the user releases
 * one message to --relay.  Defaults as Mailpit: SMTP 127.0.0.1:1025, HTTP
 * 127.0.0.1:8025, the newest 500 messages, data in ./postel-capture.
 */
#include "cli/cli_capture.h"

#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "core/log.h"
#include "core/util.h"
#include "http/capture.h"
#include "http/http_server.h"
#include "net/server.h"
#include "smtp/smtp_server.h"
#include "store/store.h"

#define CAPTURE_VERSION "0.1.0"
#define AUTH_FILE_MAX 1000       /* credentials in --auth-file */
#define AUTH_FIELD_MAX 256

struct capture_opts {
    const char *smtp, *smtps, *http, *data, *relay;
    int max;
    const char *relay_user;
    const char *auth_file;
    const char *dns;
    enum capture_relay_tls relay_tls;
    bool relay_insecure;
    bool durable;
};

static void capture_usage(FILE *f)
{
    fprintf(f, "usage: postel capture [--smtp ADDR] [--smtps ADDR] [--http ADDR] [--max N]\n"
               "                      [--data DIR] [--relay HOST:PORT [--relay-tls MODE]\n"
               "                      [--relay-user USER] [--relay-insecure]] [--auth-file F]\n"
               "                      [--dns HOST:PORT|system] [--durable]\n"
               "  --smtp ADDR    SMTP listener (default 127.0.0.1:1025; STARTTLS offered)\n"
               "  --smtps ADDR   optional implicit-TLS SMTP listener (off by default)\n"
               "  --http ADDR    web UI and API (default 127.0.0.1:8025)\n"
               "  --max N        keep the newest N messages (default 500, 0 = no limit)\n"
               "  --data DIR     where messages are kept (default ./postel-capture)\n"
               "  --relay H:P    SMTP server that released messages are sent to (default none)\n"
               "  --relay-tls M  starttls (when offered; default), require, smtps or off\n"
               "  --relay-user U AUTH user name; the password comes from POSTEL_RELAY_PASSWORD\n"
               "  --relay-insecure  do not verify the relay's TLS certificate\n"
               "  --auth-file F  accept only these SMTP credentials (USER:PASSWORD lines,\n"
               "                 PASSWORD plain or a crypt(3) hash such as htpasswd -B's)\n"
               "                 and require AUTH; default: any AUTH, or none, is accepted\n"
               "  --dns NS       verify DKIM and evaluate DMARC in the checks, asking this\n"
               "                 name server (\"system\": /etc/resolv.conf); default: no DNS\n"
               "  --durable      fsync every message before its 250, as postel serve does;\n"
               "                 by default capture mode leaves flushing to the kernel\n"
               "                 (a restart or crash of postel keeps every message, a\n"
               "                 power cut may lose the last seconds)\n");
}

static int parse_opts(int argc, char **argv, struct capture_opts *o)
{
    *o = (struct capture_opts){ .smtp = "127.0.0.1:1025", .http = "127.0.0.1:8025",
                                .data = "./postel-capture", .relay = "", .max = 500,
                                .relay_user = "", .relay_tls = CAPTURE_RELAY_STARTTLS };
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            capture_usage(stdout);
            return 1;
        }
        if (strcmp(a, "--relay-insecure") == 0) {
            o->relay_insecure = true;
            continue;
        }
        if (strcmp(a, "--durable") == 0) {
            o->durable = true;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "postel capture: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--smtp") == 0) {
            o->smtp = v;
        } else if (strcmp(a, "--smtps") == 0) {
            o->smtps = v;
        } else if (strcmp(a, "--http") == 0) {
            o->http = v;
        } else if (strcmp(a, "--data") == 0) {
            o->data = v;
        } else if (strcmp(a, "--relay") == 0) {
            o->relay = v;
        } else if (strcmp(a, "--dns") == 0) {
            o->dns = v;
        } else if (strcmp(a, "--auth-file") == 0) {
            o->auth_file = v;
        } else if (strcmp(a, "--relay-user") == 0) {
            o->relay_user = v;
        } else if (strcmp(a, "--relay-tls") == 0) {
            if (capture_relay_tls_parse(v, &o->relay_tls) < 0) {
                fprintf(stderr, "postel capture: bad --relay-tls %s (starttls, require, smtps "
                                "or off)\n", v);
                return -1;
            }
        } else if (strcmp(a, "--max") == 0) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end != '\0' || n < 0 || n > 10000000) {
                fprintf(stderr, "postel capture: bad --max %s\n", v);
                return -1;
            }
            o->max = (int)n;
        } else {
            fprintf(stderr, "postel capture: unknown option %s\n", a);
            return -1;
        }
    }
    return 0;
}

static int add_listener(struct config *c, enum listen_role role, const char *addr)
{
    struct listen_addr *l = &c->listen[role][0];
    if (parse_hostport(addr, l->host, sizeof(l->host), &l->port) < 0 || l->port <= 0) {
        fprintf(stderr, "postel capture: bad address %s\n", addr);
        return -1;
    }
    if (l->host[0] == '\0')
        str_copy(l->host, "127.0.0.1", sizeof(l->host));
    c->n_listen[role] = 1;
    return 0;
}

/* The configuration of capture mode: development defaults, only the
 * capture listeners, no domains, no demo account. */
static struct config *capture_config(const struct config *base, const struct capture_opts *o)
{
    struct config *c = malloc(sizeof(*c));
    if (c == NULL)
        return NULL;
    config_dev_defaults(c);
    c->dev_defaults = false;
    c->domains[0] = '\0';
    memset(c->n_listen, 0, sizeof(c->n_listen));
    if (base && base->path[0]) {
        /* a configuration file given with -c lends its TLS and log level */
        str_copy(c->tls_cert, base->tls_cert, sizeof(c->tls_cert));
        str_copy(c->tls_key, base->tls_key, sizeof(c->tls_key));
        c->log_level = base->log_level;
    }
    str_copy(c->data_dir, o->data, sizeof(c->data_dir));
    c->capture = true;
    c->capture_max = o->max;
    c->capture_durable = o->durable;
    str_copy(c->capture_relay, o->relay, sizeof(c->capture_relay));
    if (add_listener(c, ROLE_SMTP, o->smtp) < 0 || add_listener(c, ROLE_HTTP, o->http) < 0 ||
        (o->smtps && add_listener(c, ROLE_SUBMISSIONS, o->smtps) < 0)) {
        free(c);
        return NULL;
    }
    return c;
}

/* ---- --auth-file: the accepted SMTP credentials ---- */

struct credential {
    char user[AUTH_FIELD_MAX];
    char pass[AUTH_FIELD_MAX];    /* plain, or a crypt(3) hash ("$...") */
};
static struct credential *creds;
static size_t n_creds;

/* Loads USER:PASSWORD lines ('#' comments and blank lines skipped).
 * 0, or -1 after telling why on stderr. */
static int auth_file_load(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "postel capture: cannot read --auth-file %s\n", path);
        return -1;
    }
    creds = calloc(AUTH_FILE_MAX, sizeof(*creds));
    char line[2 * AUTH_FIELD_MAX + 8];
    int lineno = 0, rc = creds ? 0 : -1;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        size_t n = strlen(line);
        if (n == sizeof(line) - 1 && line[n - 1] != '\n') {
            fprintf(stderr, "postel capture: %s:%d: line too long\n", path, lineno);
            rc = -1;
            break;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        char *colon = strchr(line, ':');
        if (colon == NULL || colon == line || colon[1] == '\0' ||
            (size_t)(colon - line) >= AUTH_FIELD_MAX || strlen(colon + 1) >= AUTH_FIELD_MAX) {
            fprintf(stderr, "postel capture: %s:%d: expected USER:PASSWORD\n", path, lineno);
            rc = -1;
            break;
        }
        if (n_creds == AUTH_FILE_MAX) {
            fprintf(stderr, "postel capture: %s: more than %d credentials\n", path,
                    AUTH_FILE_MAX);
            rc = -1;
            break;
        }
        *colon = '\0';
        str_copy(creds[n_creds].user, line, AUTH_FIELD_MAX);
        str_copy(creds[n_creds].pass, colon + 1, AUTH_FIELD_MAX);
        n_creds++;
        explicit_bzero(line, sizeof(line));
    }
    fclose(f);
    if (rc == 0 && n_creds == 0) {
        fprintf(stderr, "postel capture: %s holds no USER:PASSWORD line\n", path);
        rc = -1;
    }
    return rc;
}

static bool same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la && i < lb; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

/* The SMTP server's AUTH check (runs on the pool). */
static bool auth_file_check(const char *user, const char *pass)
{
    for (size_t i = 0; i < n_creds; i++) {
        if (strcmp(creds[i].user, user) != 0)
            continue;
        if (creds[i].pass[0] != '$')
            return same_secret(creds[i].pass, pass);
        struct crypt_data *cd = calloc(1, sizeof(*cd));
        if (cd == NULL)
            return false;
        const char *h = crypt_r(pass, creds[i].pass, cd);
        bool ok = h != NULL && h[0] != '*' && same_secret(h, creds[i].pass);
        explicit_bzero(cd, sizeof(*cd));
        free(cd);
        return ok;
    }
    return false;
}

/* Opens the capture store and makes sure the capture account exists. */
static struct store *capture_store(const struct config *c, int64_t *account_r)
{
    const char *err = NULL;
    if (mkdir_p(c->data_dir, 0750) < 0) {
        fprintf(stderr, "postel capture: cannot create %s\n", c->data_dir);
        return NULL;
    }
    struct store *st = store_open(c->data_dir, &err);
    if (st == NULL) {
        fprintf(stderr, "postel capture: store: %s\n", err ? err : "?");
        return NULL;
    }
    int64_t id = store_user_lookup(st, CAPTURE_ACCOUNT);
    if (id <= 0) {
        char pw[33];
        random_hex(pw, 32); /* nobody logs in: any AUTH is accepted in capture mode */
        if (store_user_add(st, CAPTURE_ACCOUNT, pw, &err) < 0) {
            fprintf(stderr, "postel capture: cannot create the capture account: %s\n",
                    err ? err : "?");
            store_close(st);
            return NULL;
        }
        id = store_user_lookup(st, CAPTURE_ACCOUNT);
    }
    *account_r = id;
    return st;
}

int cli_capture(const struct config *cfg, int argc, char **argv)
{
    struct capture_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : EX_USAGE;
    if (o.relay[0]) {
        char h[256];
        int port = 0;
        if (parse_hostport(o.relay, h, sizeof(h), &port) < 0 || port <= 0 || h[0] == '\0') {
            fprintf(stderr, "postel capture: bad --relay %s (HOST:PORT)\n", o.relay);
            return EX_USAGE;
        }
    }
    if (o.relay_user[0] && (getenv("POSTEL_RELAY_PASSWORD") == NULL || !o.relay[0])) {
        fprintf(stderr, "postel capture: --relay-user needs --relay and the password in "
                        "POSTEL_RELAY_PASSWORD\n");
        return EX_USAGE;
    }
    if (o.auth_file && auth_file_load(o.auth_file) < 0)
        return EX_USAGE;
    if (o.dns && strcmp(o.dns, "system") != 0) {
        char h[256];
        int port = 0;
        if (parse_hostport(o.dns, h, sizeof(h), &port) < 0 || h[0] == '\0' || port < 0) {
            fprintf(stderr, "postel capture: bad --dns %s (HOST:PORT or system)\n", o.dns);
            return EX_USAGE;
        }
    }
    struct config *c = capture_config(cfg, &o);
    if (c == NULL)
        return EX_USAGE;
    log_set_level((enum log_level)c->log_level);
    int64_t account = 0;
    struct store *st = capture_store(c, &account);
    if (st == NULL) {
        free(c);
        return EX_CANTCREAT;
    }
    struct capture_settings s = { .store = st, .account_id = account, .max_messages = o.max,
                                  .version = CAPTURE_VERSION };
    str_copy(s.relay.addr, o.relay, sizeof(s.relay.addr));
    s.relay.tls = o.relay_tls;
    s.relay.insecure = o.relay_insecure;
    str_copy(s.relay.user, o.relay_user, sizeof(s.relay.user));
    const char *pw = getenv("POSTEL_RELAY_PASSWORD");
    str_copy(s.relay.pass, pw ? pw : "", sizeof(s.relay.pass));
    str_copy(s.smtp_addr, o.smtp, sizeof(s.smtp_addr));
    str_copy(s.dns, o.dns ? o.dns : "", sizeof(s.dns));
    capture_api_register(&s);
    int n = capture_cache_warm();
    smtp_server_register();
    http_server_register();
    smtp_server_set_commit_hook(capture_on_commit, NULL);
    if (n_creds > 0)
        smtp_server_set_capture_auth(auth_file_check);
    log_info(NULL, "event=capture smtp=%s http=%s data_dir=%s max=%d relay=%s relay_tls=%s "
                   "relay_auth=%s smtp_auth=%s messages=%d", o.smtp, o.http, c->data_dir, o.max,
             o.relay[0] ? o.relay : "none", capture_relay_tls_name(o.relay_tls),
             o.relay_user[0] ? "yes" : "no", n_creds ? "list" : "any", n);
    rc = server_run(c);
    explicit_bzero(s.relay.pass, sizeof(s.relay.pass));
    store_close(st);
    return rc;
}
