/*
 * Sender-authentication commands (src/cli/cli_verify.c) and the DMARC
 * report service of `serve` (src/cli/serve_dmarc.c).  Same contract as
 * cli.h: argv[0] is the first word after the command name; each returns a
 * sysexits.h code.
 *
 *   postel verify [FILE] [--ip IP] [--helo NAME] [--mail-from ADDR]
 *                 [--authserv-id NAME] [--time T] [--timeout S]
 *       SPF, DKIM and DMARC on a message (FILE or stdin); prints the
 *       Authentication-Results field (and Received-SPF when --ip is given).
 *   postel dns records DOMAIN
 *       every DNS record to publish for DOMAIN, in zone-file form.
 *   postel check DOMAIN [--timeout S]
 *       deliverability check of DOMAIN's live DNS: one OK/WARN/FAIL line per
 *       finding; exit 1 when any line is FAIL.
 */
#ifndef POSTEL_CLI_AUTH_H
#define POSTEL_CLI_AUTH_H
#include "core/config.h"

int cli_verify(const struct config *cfg, int argc, char **argv);
int cli_dns_records(const struct config *cfg, int argc, char **argv);   /* argv[0] == "records" */
int cli_check(const struct config *cfg, int argc, char **argv);

/* The DMARC aggregate report sender of `postel serve` (serve_dmarc.c), a
 * struct service_ops pair: start runs a thread that queues the reports due
 * ([dmarc] report_interval windows) through queue_inject; stop joins it. */
struct server;
int dmarc_service_start(struct server *srv);   /* 0, or -1 (logged) */
void dmarc_service_stop(void);
#endif
