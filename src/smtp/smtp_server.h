/*
 * SMTP server sessions for the smtp (MX), submission (STARTTLS + AUTH) and
 * submissions (implicit TLS + AUTH) roles.  Registers itself with the net
 * layer; see docs/ARCHITECTURE.md for the life of a message.
 */
#ifndef POSTEL_SMTP_SERVER_H
#define POSTEL_SMTP_SERVER_H

/* Registers the SMTP protocol for its three roles. */
void smtp_server_register(void);
#endif
