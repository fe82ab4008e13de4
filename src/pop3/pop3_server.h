/*
 * POP3 server sessions (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034
 * AUTH) for the pop3 (STLS) and pop3s (implicit TLS) roles.  Registers
 * itself with the net layer; see docs/pop3.md.
 */
#ifndef POSTEL_POP3_SERVER_H
#define POSTEL_POP3_SERVER_H

/* Registers the POP3 protocol for ROLE_POP3 and ROLE_POP3S (before
 * server_run). */
void pop3_server_register(void);
#endif
