/*
 * FETCH BODYSTRUCTURE, BODY and ENVELOPE (RFC 3501 7.4.2, RFC 9051 7.5.2)
 * from a parsed message (mime/mime.h).
 *
 * The output is byte for byte what Dovecot 2.3 sends for the same message
 * (tests/data/mime holds its answers): the same defaults, the same
 * parameter order, the same choice between quoted string and literal
 * ("{n}\r\n..." for 8-bit text or more than four quote-specials), the same
 * clean-up of Subject and display names (white space runs collapsed,
 * ends trimmed), the same place-holders for broken addresses
 * (MISSING_MAILBOX, MISSING_DOMAIN, SYNTAX_ERROR, INVALID_ROUTE).
 * Encoded words are left as they are, as the RFC asks.
 */
#ifndef POSTEL_IMAP_BODYSTRUCTURE_H
#define POSTEL_IMAP_BODYSTRUCTURE_H
#include <stdbool.h>
#include "core/util.h"
#include "mime/mime.h"

/* Appends the parenthesized BODYSTRUCTURE (extended = true) or BODY
 * (extended = false) of part, normally msg->root, to out.
 * 0, or -1 when out's cap was reached (out is then incomplete). */
int imap_bodystructure_write(const struct mime_message *msg,
                             const struct mime_part *part, bool extended,
                             struct strbuf *out);

/* Appends the parenthesized ENVELOPE built from the header of part: the
 * root for the message itself, or the child of a message/rfc822 part.
 * 0 or -1 as above. */
int imap_envelope_write(const struct mime_message *msg,
                        const struct mime_part *part, struct strbuf *out);

/* The part a FETCH section number ("1", "2.1.3"; "" for the whole message)
 * designates, per RFC 3501 6.4.5: the parts of a multipart are numbered
 * from 1; a message/rfc822 part's number also stands for its enclosed
 * message, whose parts are numbered below it; a non-multipart message has
 * its body as part 1.  NULL when there is no such part. */
const struct mime_part *imap_section_part(const struct mime_message *msg,
                                          const char *section);
#endif
