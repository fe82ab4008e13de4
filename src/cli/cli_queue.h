/*
 * postel sendmail: the sendmail-compatible submission command (also run
 * when the binary is invoked as "sendmail", e.g. /usr/sbin/sendmail).
 * See docs/outbound.md.
 */
#ifndef POSTEL_CLI_QUEUE_H
#define POSTEL_CLI_QUEUE_H
#include "core/config.h"

/* argv holds sendmail's options and recipients only (as main.c passes a
 * subcommand's arguments: for "postel sendmail -t" argv[0] is "-t"; when
 * run as "sendmail -t", pass argc - 1, argv + 1).  Returns a sysexits.h
 * code. */
int cli_sendmail(const struct config *cfg, int argc, char **argv);
#endif
