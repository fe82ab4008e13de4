/*
 * POP3 protocol parsing with no I/O: command lines (RFC 1939, RFC 2449
 * CAPA, RFC 2595 STLS, RFC 5034 AUTH) and the output encoder that turns a
 * stored message into a RETR/TOP response body (dot-stuffing, CRLF line
 * ends, the TOP line limit).  Every function is bounded and safe on
 * arbitrary bytes; tests/fuzz/fuzz_pop3.c feeds both.
 */
#ifndef POSTEL_POP3_PARSE_H
#define POSTEL_POP3_PARSE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits (candidates for core/limits.h).  RFC 2449 4 caps command lines at
 * 255 octets; real clients send longer USER/PASS lines, so we read up to
 * POP3_LINE_MAX (CRLF included) and answer -ERR beyond.  SASL responses
 * (RFC 5034 4) may be longer. */
#define POP3_LINE_MAX          512
#define POP3_SASL_LINE_MAX     12288
#define POP3_MAX_ERRORS        20       /* bad commands before the connection is closed */
#define POP3_TIMEOUT_DEFAULT   600      /* RFC 1939 3: autologout >= 10 minutes */

enum pop3_verb {
    POP3_VERB_UNKNOWN = 0,
    POP3_VERB_USER, POP3_VERB_PASS, POP3_VERB_APOP, POP3_VERB_AUTH,
    POP3_VERB_STLS, POP3_VERB_CAPA, POP3_VERB_QUIT,
    POP3_VERB_STAT, POP3_VERB_LIST, POP3_VERB_RETR, POP3_VERB_DELE,
    POP3_VERB_NOOP, POP3_VERB_RSET, POP3_VERB_TOP, POP3_VERB_UIDL,
    POP3_VERB_COUNT
};

/* A parsed command.  Pointers point into the parsed line. */
struct pop3_command {
    enum pop3_verb verb;
    bool has_msg;                 /* LIST/UIDL with an argument; RETR/DELE/TOP */
    uint32_t msg;                 /* message number as given (0 is left to the
                                     caller: "no such message") */
    uint32_t lines;               /* TOP: body lines */
    const char *arg;              /* USER name, PASS password (the rest of the
                                     line, spaces kept), AUTH mechanism; "" if none */
    const char *arg2;             /* AUTH initial response; NULL if none */
};

/* The verb's name in upper case ("RETR"), "?" for an unknown one. */
const char *pop3_verb_name(enum pop3_verb verb);

/* Parses one command line.  line/len exclude the CRLF; line must be
 * writable and have room for a NUL at line[len] (arguments are cut out
 * in place).  Keywords are case-insensitive (RFC 1939 3).
 * Returns 0, or -1 with *error_r pointing at a static text for -ERR:
 * "unknown command", a syntax hint ("syntax: RETR msg"), "invalid message
 * number" (not a decimal number, or over 2^31), or "bad character" (NUL,
 * CR, LF or other controls in the line). */
int pop3_command_parse(char *line, size_t len, struct pop3_command *cmd, const char **error_r);

/* ---- RETR / TOP output ---- */

typedef void pop3_out_fn(void *arg, const char *data, size_t len);

/* Streaming encoder for a multi-line response (RFC 1939 3): a '.' at a
 * line start is doubled, a bare LF is sent as CRLF, and for TOP the
 * output stops after the header block, the blank line and `lines` body
 * lines.  A message stored in CRLF form comes out with exactly its own
 * octet count plus the dots added (so LIST sizes are exact). */
struct pop3_stuff {
    bool line_start;              /* the next byte begins a line */
    bool prev_cr;                 /* the last byte of the current line was CR */
    uint64_t line_bytes;          /* bytes of the current line so far */
    bool top;                     /* TOP: count body lines */
    bool in_body;                 /* TOP: past the header/body separator */
    uint32_t lines_left;          /* TOP: body lines still to send */
    bool done;                    /* TOP: enough; feed no more */
};

void pop3_stuff_init(struct pop3_stuff *s, bool top, uint32_t lines);
/* Encodes len bytes (any chunking gives the same output).  Returns the
 * bytes consumed: len, or less once TOP has what it needs (s->done).
 * out gets runs of `in` (a dot-stuffed line's dot lies in two of them)
 * and, for a bare LF only, a static "\r\n"; so a caller may keep
 * references to the runs instead of copying them. */
size_t pop3_stuff_feed(struct pop3_stuff *s, const char *in, size_t len, pop3_out_fn *out,
                       void *arg);
/* Ends the response: a CRLF if the last line was not terminated, then the
 * terminating ".\r\n". */
void pop3_stuff_end(struct pop3_stuff *s, pop3_out_fn *out, void *arg);

/* The UIDL value of a message (RFC 1939 7: 1-70 chars in 0x21-0x7E, unique
 * and stable): 8 hex digits of UIDVALIDITY and 8 of the UID.  buf holds
 * at least 17 bytes. */
void pop3_uidl(char *buf, size_t size, uint32_t uidvalidity, uint32_t uid);
#endif
