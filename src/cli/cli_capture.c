/*
 * postel capture: accept every message on an SMTP port, keep it in the
 * store (the hidden capture account), show it in a web UI and a
 * Mailpit-compatible REST API; never relay except when the user releases
 * one message to --relay.  Defaults as Mailpit: SMTP 127.0.0.1:1025, HTTP
 * 127.0.0.1:8025, the newest 500 messages, data in ./postel-capture.
 */
#include "cli/cli_capture.h"

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

struct capture_opts {
    const char *smtp, *smtps, *http, *data, *relay;
    int max;
};

static void capture_usage(FILE *f)
{
    fprintf(f, "usage: postel capture [--smtp ADDR] [--smtps ADDR] [--http ADDR] [--max N]\n"
               "                      [--data DIR] [--relay HOST:PORT]\n"
               "  --smtp ADDR    SMTP listener (default 127.0.0.1:1025; STARTTLS offered)\n"
               "  --smtps ADDR   optional implicit-TLS SMTP listener (off by default)\n"
               "  --http ADDR    web UI and API (default 127.0.0.1:8025)\n"
               "  --max N        keep the newest N messages (default 500, 0 = no limit)\n"
               "  --data DIR     where messages are kept (default ./postel-capture)\n"
               "  --relay H:P    SMTP server that released messages are sent to (default none)\n");
}

static int parse_opts(int argc, char **argv, struct capture_opts *o)
{
    *o = (struct capture_opts){ "127.0.0.1:1025", NULL, "127.0.0.1:8025", "./postel-capture",
                                "", 500 };
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            capture_usage(stdout);
            return 1;
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
    str_copy(c->capture_relay, o->relay, sizeof(c->capture_relay));
    if (add_listener(c, ROLE_SMTP, o->smtp) < 0 || add_listener(c, ROLE_HTTP, o->http) < 0 ||
        (o->smtps && add_listener(c, ROLE_SUBMISSIONS, o->smtps) < 0)) {
        free(c);
        return NULL;
    }
    return c;
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
    str_copy(s.relay, o.relay, sizeof(s.relay));
    str_copy(s.smtp_addr, o.smtp, sizeof(s.smtp_addr));
    capture_api_register(&s);
    int n = capture_cache_warm();
    smtp_server_register();
    http_server_register();
    smtp_server_set_commit_hook(capture_on_commit, NULL);
    log_info(NULL, "event=capture smtp=%s http=%s data_dir=%s max=%d relay=%s messages=%d", o.smtp,
             o.http, c->data_dir, o.max, o.relay[0] ? o.relay : "none", n);
    rc = server_run(c);
    store_close(st);
    return rc;
}
