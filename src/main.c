/*
 * postel: one binary, many roles.  Parses the global options, loads the
 * configuration and dispatches to a subcommand (DESIGN section 2).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "cli/cli.h"
#include "cli/cli_auth.h"
#include "cli/cli_capture.h"
#include "cli/cli_filter.h"
#include "cli/cli_queue.h"
#include "core/config.h"
#include "core/log.h"
#include "imap/imap_server.h"
#include "net/server.h"
#include "pop3/pop3_server.h"
#include "queue/queue.h"
#include "smtp/smtp_server.h"

#define POSTEL_VERSION "0.1.0"

typedef int cli_fn(const struct config *cfg, int argc, char **argv);


struct subcommand {
    const char *name;
    cli_fn *fn;
    const char *usage;
};

static int cmd_serve(const struct config *cfg, int argc, char **argv);
static int cmd_version(const struct config *cfg, int argc, char **argv);

static const struct subcommand commands[] = {
    { "serve", cmd_serve, "serve                      run the server" },
    { "user", cli_user, "user add|del|passwd|list|quota   accounts (password on stdin or --password-file F; quota ADDRESS [SIZE|none])" },
    { "domain", cli_domain, "domain add|del|list        local domains" },
    { "alias", cli_alias, "alias add SRC DST|del|list aliases (catch-all @domain allowed)" },
    { "mailbox", cli_mailbox, "mailbox status ACCOUNT | fetch ACCOUNT MAILBOX UID" },
    { "queue", cli_queue, "queue list|show|flush|delete|hold|release" },
    { "sendmail", cli_sendmail, "sendmail [-t] [-f FROM] [-i] [-bp] [RCPT...]  sendmail-compatible submission" },
    { "mx", cli_mx, "mx DOMAIN                  MX lookup with addresses" },
    { "spf", cli_spf, "spf --ip IP --helo H --mail-from A   evaluate SPF" },
    { "dkim", cli_dkim, "dkim keygen DOMAIN [--selector S] [--algo rsa2048|ed25519]" },
    { "capture", cli_capture, "capture [--smtp A] [--smtps A] [--http A] [--max N] [--data DIR] [--relay H:P]  developer capture mode" },
    { "verify", cli_verify, "verify [FILE] [--ip IP] [--helo H] [--mail-from A]  SPF/DKIM/DMARC, print Authentication-Results" },
    { "dns", cli_dns_records, "dns records DOMAIN         every DNS record to publish (zone-file form)" },
    { "check", cli_check, "check DOMAIN               deliverability check of a domain's DNS (exit 1 on FAIL)" },
    { "allow", cli_allow, "allow add|del [--rcpt] ENTRY [--note T] | list   allow list, recipient exceptions" },
    { "block", cli_block, "block add|del ENTRY [--note T] | list   block list (IP, CIDR, sender, domain)" },
    { "filter", cli_filter, "filter check --ip IP [...] | greylist list|clear   anti-spam engine" },
    { "config", cli_config, "config check               validate the configuration" },
    { "version", cmd_version, "version                    version and library versions" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: postel [-c FILE] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %s\n", commands[i].usage);
}


static int cmd_serve(const struct config *cfg, int argc, char **argv)
{
    struct config *owned = malloc(sizeof(*owned));
    if (owned == NULL)
        return EX_OSERR;
    *owned = *cfg;
    static const struct service_ops queue_service = { "queue", queue_start, queue_stop };
    static const struct service_ops dmarc_service = { "dmarc-reports", dmarc_service_start,
                                                      dmarc_service_stop };
    smtp_server_register();
    imap_server_register();
    pop3_server_register();
    if (!cfg->capture) {
        server_add_service(&queue_service); /* capture mode never relays */
        server_add_service(&dmarc_service); /* nor reports */
    }
    return server_run(owned);
}

#include <event2/event.h>
#include <openssl/crypto.h>
#include <sqlite3.h>

static int cmd_version(const struct config *cfg, int argc, char **argv)
{
    printf("postel %s\n", POSTEL_VERSION);
    printf("libevent %s\n", event_get_version());
    printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("SQLite %s\n", sqlite3_libversion());
    return 0;
}

/* The program's name without its directory. */
static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int main(int argc, char **argv)
{
    const char *cfg_path = NULL;
    int i = 1;
    /* Run as sendmail (a link at /usr/sbin/sendmail, mailq, newaliases):
     * every argument is sendmail's; the configuration comes from
     * POSTEL_CONFIG or the default path. */
    const char *prog = argc > 0 ? base_name(argv[0]) : "postel";
    if (strcmp(prog, "sendmail") == 0 || strcmp(prog, "mailq") == 0) {
        static struct config scfg;
        char serr[8192];
        if (config_resolve(&scfg, NULL, serr, sizeof(serr)) < 0) {
            fprintf(stderr, "%s", serr);
            return EX_CONFIG;
        }
        log_set_level((enum log_level)scfg.log_level);
        if (strcmp(prog, "mailq") == 0) {
            char *bp[] = { "-bp", NULL };
            return cli_sendmail(&scfg, 1, bp);
        }
        return cli_sendmail(&scfg, argc - 1, argv + 1);
    }
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            cfg_path = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            return cmd_version(NULL, 0, NULL);
        } else {
            fprintf(stderr, "postel: unknown option %s\n", argv[i]);
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EX_USAGE;
    }
    const char *name = argv[i];
    const struct subcommand *sc = NULL;
    for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
        if (strcmp(commands[k].name, name) == 0)
            sc = &commands[k];
    cli_fn *fn = sc ? sc->fn : NULL;
    if (fn == NULL) {
        fprintf(stderr, "postel: unknown command '%s'\n", name);
        usage(stderr);
        return EX_USAGE;
    }
    static struct config cfg;
    char errbuf[8192];
    int rc = config_resolve(&cfg, cfg_path, errbuf, sizeof(errbuf));
    if (strcmp(name, "config") == 0)
        return cli_config_report(&cfg, rc, errbuf, argc - i - 1, argv + i + 1);
    if (rc < 0) {
        fprintf(stderr, "%s", errbuf);
        fprintf(stderr, "postel: configuration has errors (run 'postel config check')\n");
        return EX_CONFIG;
    }
    log_set_level((enum log_level)cfg.log_level);
    return fn(&cfg, argc - i - 1, argv + i + 1);
}
