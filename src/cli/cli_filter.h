/*
 * Anti-spam subcommands (docs/antispam.md):
 *   postel allow add|del [--rcpt] ENTRY [--note TEXT] | list
 *   postel block add|del ENTRY [--note TEXT] | list
 *   postel filter check --ip IP [...]      run the engine on one envelope
 *   postel filter greylist list|clear      greylisting state
 * Same conventions as cli.h: argv[0] is the subcommand's first word, the
 * return value a sysexits.h code.
 */
#ifndef POSTEL_CLI_FILTER_H
#define POSTEL_CLI_FILTER_H
#include "core/config.h"

int cli_allow(const struct config *cfg, int argc, char **argv);
int cli_block(const struct config *cfg, int argc, char **argv);
int cli_filter(const struct config *cfg, int argc, char **argv);
#endif
