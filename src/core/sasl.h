/*
 * Base64 and SASL PLAIN for the protocols' AUTH commands; pure functions.
 */
#ifndef POSTEL_SASL_H
#define POSTEL_SASL_H
#include <stddef.h>

/* Base64 (RFC 4648) for SASL.  decode returns the decoded length or -1 on
 * malformed input (bad character, missing or misplaced padding, non-zero
 * pad bits, inner white space) or overflow of out_size; trailing white
 * space is ignored and "" decodes to 0 bytes (the server handles the "="
 * empty response of RFC 4954 itself).  encode writes a NUL too (out_size
 * >= 4 * ceil(in_len / 3) + 1) and returns the length without it, or -1. */
long base64_decode(const char *in, size_t in_len, unsigned char *out, size_t out_size);
long base64_encode(const unsigned char *in, size_t in_len, char *out, size_t out_size);

/* SASL PLAIN (RFC 4616): base64 text -> authzid, authcid, password.
 * 0 or -1 (malformed: not exactly two NULs, empty authcid or password, a
 * field too long for its buffer, identities not UTF-8 or with controls).
 * Buffers are NUL-terminated and bounded; b64 longer than
 * SMTP_AUTH_LINE_MAX (core/limits.h) is refused. */
int sasl_plain_decode(const char *b64, char *authzid, size_t authzid_size, char *authcid,
                      size_t authcid_size, char *passwd, size_t passwd_size);
#endif
