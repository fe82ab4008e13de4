/*
 * postel capture: the developer capture mode (docs/capture.md).
 */
#ifndef POSTEL_CLI_CAPTURE_H
#define POSTEL_CLI_CAPTURE_H
#include "core/config.h"

/* postel capture [--smtp ADDR] [--smtps ADDR] [--http ADDR] [--max N]
 *                [--data DIR] [--relay HOST:PORT]
 * Runs until SIGTERM/SIGINT; returns a sysexits.h code. */
int cli_capture(const struct config *cfg, int argc, char **argv);
#endif
