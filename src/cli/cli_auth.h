/*
 * Sender-authentication commands (src/cli/cli_verify.c).  Same contract as
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
#endif
