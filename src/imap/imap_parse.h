/*
 * IMAP command syntax (RFC 3501 9, RFC 9051 9): a bounded, pure parser
 * over one complete command held in memory.
 *
 * The session assembles a command before parsing: the line up to CRLF,
 * and for each literal "{n}" / "{n+}" / "~{n}" at a line's end, the CRLF
 * and the n octets that follow, then the next line; the final CRLF is
 * left out.  Literals thus stay inline ("{5}\r\nhello") and the parser
 * reads them like any other token.  Nothing here allocates except from
 * the command's pool; the parser never reads past the end it was given.
 *
 * Errors: every function returns 0 (or a value >= 0) on success and -1 on
 * a syntax error, with p->error naming what was expected (static text).
 */
#ifndef POSTEL_IMAP_PARSE_H
#define POSTEL_IMAP_PARSE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAP_LINE_MAX          65536    /* one line of a command, CRLF included */
#define IMAP_LINE_MAX_PREAUTH  8192
#define IMAP_CMD_MAX           (1u << 20) /* a command without APPEND data */
#define IMAP_LITERAL_MINUS_MAX 4096     /* RFC 7888: LITERAL- non-sync limit */
#define IMAP_TAG_MAX           64
#define IMAP_DEPTH_MAX         32       /* nested parentheses */
#define IMAP_SEQSET_MAX        4096     /* ranges in one sequence set */
#define IMAP_MAX_ERRORS        20       /* BAD replies before BYE */
#define IMAP_MAX_AUTH_FAILS    5
#define IMAP_AUTOLOGOUT_SECS   (30 * 60) /* RFC 3501 5.4 */
#define IMAP_PREAUTH_SECS      60
#define IMAP_IDLE_SECS         (29 * 60)

/* A pool: memory for one command, freed all at once. */
struct imap_pool {
    struct imap_pool_block *blocks;
    size_t used_total, cap;
};
void imap_pool_init(struct imap_pool *pool, size_t cap);
/* Zeroed memory, or NULL when the cap is reached or out of memory. */
void *imap_pool_alloc(struct imap_pool *pool, size_t size);
char *imap_pool_strndup(struct imap_pool *pool, const char *s, size_t len);
void imap_pool_clear(struct imap_pool *pool);

struct imap_parser {
    const char *p, *end;
    struct imap_pool *pool;
    int depth;
    const char *error;
    bool literal8;          /* the last string read was a ~{n} literal */
};

void imap_parser_init(struct imap_parser *ps, const char *data, size_t len,
                      struct imap_pool *pool);

/* Scans a line (without CRLF) for a trailing literal announcement:
 * returns 1 and *n_r, *nonsync_r when it ends in "{n}" or "{n+}" (also
 * "~{n}"), 0 otherwise, -1 when the braces hold no valid number. */
int imap_line_literal(const char *line, size_t len, uint64_t *n_r, bool *nonsync_r);

bool imap_parse_at_end(const struct imap_parser *ps);
int imap_parse_end(struct imap_parser *ps);          /* nothing left */
int imap_parse_sp(struct imap_parser *ps);           /* exactly one SP */
bool imap_parse_peek(const struct imap_parser *ps, char c);
/* Consumes c if it is next; true when it did. */
bool imap_parse_char(struct imap_parser *ps, char c);

/* tag: 1*<ASTRING-CHAR except "+">, at most IMAP_TAG_MAX. */
int imap_parse_tag(struct imap_parser *ps, char **tag_r);
/* atom: 1*ATOM-CHAR (returned NUL-terminated from the pool). */
int imap_parse_atom(struct imap_parser *ps, char **atom_r);
/* An atom that ends before the first `stop` character too (FETCH item
 * names end at '[' and '<'). */
int imap_parse_atom_stop(struct imap_parser *ps, const char *stop, char **atom_r);
/* string (quoted or literal): data and length; NUL-terminated copy. */
int imap_parse_string(struct imap_parser *ps, char **s_r, size_t *len_r);
/* astring = atom with ']' allowed, or string. */
int imap_parse_astring(struct imap_parser *ps, char **s_r, size_t *len_r);
/* nstring: NIL gives *s_r = NULL. */
int imap_parse_nstring(struct imap_parser *ps, char **s_r, size_t *len_r);
/* list-mailbox: 1*(ATOM-CHAR / "%" / "*" / "]") or string. */
int imap_parse_list_mailbox(struct imap_parser *ps, char **s_r);
/* number (32 bits) and number64 (63 bits, RFC 9051). */
int imap_parse_number(struct imap_parser *ps, uint32_t *n_r);
int imap_parse_number64(struct imap_parser *ps, uint64_t *n_r);
/* nz-number */
int imap_parse_nz_number(struct imap_parser *ps, uint32_t *n_r);
/* A flag: "\Atom" or an atom keyword (returned with its backslash);
 * "\*" only when allow_star. */
int imap_parse_flag(struct imap_parser *ps, bool allow_star, char **flag_r);
/* "(" and ")", with the depth bound. */
int imap_parse_open(struct imap_parser *ps);
int imap_parse_close(struct imap_parser *ps);

/* A sequence set: ranges of numbers where UINT32_MAX stands for "*";
 * ranges are kept as written (lo may exceed hi).  "$" (RFC 5182) sets
 * dollar and no ranges. */
#define IMAP_STAR UINT32_MAX
struct imap_range {
    uint32_t lo, hi;
};
struct imap_seqset {
    struct imap_range *r;
    size_t n;
    bool dollar;
};
int imap_parse_seqset(struct imap_parser *ps, struct imap_seqset *set);
/* True when v (with star standing for "*") is in the set. */
bool imap_seqset_contains(const struct imap_seqset *set, uint32_t v, uint32_t star);

/* date (RFC 3501 "d-mon-yyyy", quoted or not) to a Unix day start (UTC). */
int imap_parse_date(struct imap_parser *ps, int64_t *t_r);
/* date-time "dd-mon-yyyy hh:mm:ss +zzzz" (quoted) to Unix time. */
int imap_parse_date_time(struct imap_parser *ps, int64_t *t_r);
/* Formats Unix time as an IMAP date-time (in the local zone) into buf[27]. */
void imap_format_date_time(int64_t t, char *buf, size_t size);

/* Writes s as an IMAP string: a quoted string when possible, else a
 * literal {n}\r\n...  Appends to the strbuf-like callback. */
struct strbuf;
int imap_write_string(struct strbuf *out, const char *s, size_t len);
/* astring form: an atom when s is a valid atom, else a string. */
int imap_write_astring(struct strbuf *out, const char *s);
#endif
