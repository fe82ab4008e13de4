/*
 * The IMAP server (RFC 3501 IMAP4rev1 and RFC 9051 IMAP4rev2) for the
 * roles imap (STARTTLS) and imaps (implicit TLS).
 */
#ifndef POSTEL_IMAP_SERVER_H
#define POSTEL_IMAP_SERVER_H
/* Registers ROLE_IMAP and ROLE_IMAPS with the server (before server_run). */
void imap_server_register(void);
#endif
