/*
 * Subcommands.  main.c parses the global options, loads the configuration
 * and dispatches here.  Each returns a sysexits.h exit code.  argv[0] is
 * the subcommand's own first word (e.g. "add" for "postel user add ...").
 */
#ifndef POSTEL_CLI_H
#define POSTEL_CLI_H
#include "core/config.h"

int cli_user(const struct config *cfg, int argc, char **argv);     /* add|del|passwd|list */
int cli_domain(const struct config *cfg, int argc, char **argv);   /* add|del|list */
int cli_alias(const struct config *cfg, int argc, char **argv);    /* add|del|list */
int cli_mailbox(const struct config *cfg, int argc, char **argv);  /* status|fetch */
int cli_queue(const struct config *cfg, int argc, char **argv);    /* list|show|flush|delete|hold|release */
int cli_config(const struct config *cfg, int argc, char **argv);   /* check */
/* config check after loading: load_rc/errors come from config_resolve(). */
int cli_config_report(const struct config *cfg, int load_rc, const char *errors, int argc,
                      char **argv);
int cli_mx(const struct config *cfg, int argc, char **argv);       /* DOMAIN */
int cli_spf(const struct config *cfg, int argc, char **argv);      /* check --ip --helo --mail-from */
int cli_dkim(const struct config *cfg, int argc, char **argv);     /* keygen|sign|verify */
#endif
