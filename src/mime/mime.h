/*
 * The MIME engine: header fields, parameters, addresses and the structure
 * of a message held in memory (the caller mmaps or reads the file).
 *
 * The structure parser makes one pass over the message and builds a tree
 * of parts with exact byte offsets.  It never fails on malformed input: a
 * missing final boundary, a boundary of an outer part closing inner ones,
 * broken or missing Content-Type, 8-bit and NUL bytes, LF-only line ends,
 * an empty message are all given a structure.  Where RFC 2045/2046 leave
 * room, it decides as Dovecot 2.3 does, because IMAP clients have been
 * tested against Dovecot's BODYSTRUCTURE for two decades; the corpus under
 * tests/data/mime holds Dovecot's answers for the cases that matter.
 *
 * Time is linear in the message size: boundaries are searched once per
 * line start ("\n--" with memmem) and compared against at most
 * MIME_MAX_DEPTH open boundaries of at most MIME_BOUNDARY_MAX bytes.
 *
 * Encoded content (base64, quoted-printable, charsets, RFC 2047 words) is
 * in mime_codec.h; this header is about structure.
 */
#ifndef POSTEL_MIME_H
#define POSTEL_MIME_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/util.h"

/* Limits (Dovecot's defaults, so the same messages give the same tree).
 * A part at depth MIME_MAX_DEPTH-1 (the root is depth 0) cannot contain
 * parts: a multipart or message/rfc822 there is an opaque body reported as
 * application/octet-stream.  The MIME_MAX_PARTS-th part swallows the rest
 * of the message as its body (a multipart then has no parts, a
 * message/rfc822 becomes opaque).  Boundary parameters are cut to
 * MIME_BOUNDARY_MAX bytes (RFC 2046 allows 70). */
#define MIME_MAX_DEPTH    100
#define MIME_MAX_PARTS    10000
#define MIME_BOUNDARY_MAX 80

/* ---------------------------------------------------------------------
 * Header fields
 * ------------------------------------------------------------------ */

/* One header field.  Pointers point into the message buffer.  A line
 * without a colon is returned as a field with value == NULL (callers
 * normally skip it).  The raw value starts after the colon and the white
 * space following it on the first line (one space only if the first line's
 * value is nothing but white space) and ends before the field's final line
 * break; folding line breaks are still in it (mime_header_unfold). */
struct mime_header_field {
    const char *name;
    size_t name_len;        /* white space before the colon excluded */
    const char *value;      /* NULL for a line without a colon */
    size_t value_len;
    size_t offset;          /* offset of the field's first byte */
    size_t end;             /* offset just past its final line break */
};

/* Walks the fields of a header block.  The header ends at an empty line
 * (CRLF or LF), at the end of the data, or where stop() says so. */
struct mime_header_iter {
    const char *data;
    size_t len, pos;
    /* Optional: called at the start of each field; returning true ends the
     * header there (used for boundary lines inside a part's header). */
    bool (*stop)(void *ctx, size_t line_offset);
    void *stop_ctx;
    /* Set when next() returns false: */
    size_t header_end;      /* offset after the last field (before the empty line) */
    size_t body_offset;     /* offset after the empty line (== header_end when none) */
    bool has_body;          /* an empty line was seen */
    bool stopped;           /* stop() ended the header */
    bool done;
};

/* data/len: the whole message (offsets are relative to it); start: offset
 * of the header's first byte. */
void mime_header_iter_init(struct mime_header_iter *it, const char *data,
                           size_t len, size_t start);
/* Returns true and fills *field, or false at the end of the header. */
bool mime_header_iter_next(struct mime_header_iter *it,
                           struct mime_header_field *field);

/* Appends the value with its folding line breaks (CRLF or LF) removed; the
 * white space after them stays (RFC 5322 2.2.3).  With nul_to_fffd a NUL
 * byte becomes U+FFFD, as IMAP strings cannot carry NUL.  0 or -1 (cap). */
int mime_header_unfold(const char *value, size_t len, bool nul_to_fffd,
                       struct strbuf *out);
/* Finds the first field named name (ASCII case-insensitive) in the header
 * starting at start and appends its unfolded value to out.
 * Returns 1 found, 0 not found, -1 out of space. */
int mime_header_get(const char *data, size_t len, size_t start,
                    const char *name, struct strbuf *out);

/* ---------------------------------------------------------------------
 * Parameters (Content-Type, Content-Disposition)
 * ------------------------------------------------------------------ */

struct mime_param {
    char *name;             /* as written ("charset", "CHARSET", "filename*") */
    char *value;            /* unquoted; RFC 2231 values stay encoded */
};

/* Parses "; name=value" pairs from s (an unfolded header value, from the
 * first ';' on).  Tolerant as Dovecot: a broken pair is skipped up to the
 * next ';'.  RFC 2231 continuations name*0, name*1*, ... are joined into
 * one "name" (or "name*" when any segment is encoded), after the plain
 * parameters.  The array and strings are malloc'ed in one block: free
 * *params_r with free().  Returns the count, or -1 on out of memory. */
int mime_params_parse(const char *s, size_t len, struct mime_param **params_r);
/* First parameter named name (case-insensitive), or NULL. */
const char *mime_param_get(const struct mime_param *params, size_t count,
                           const char *name);
/* The value of parameter name as UTF-8: "name*" (RFC 2231 charset'lang'%XX)
 * is preferred, then "name" (with RFC 2047 words decoded, as many mailers
 * send them).  Returns 1 found, 0 not found, -1 out of space. */
int mime_param_get_utf8(const struct mime_param *params, size_t count,
                        const char *name, struct strbuf *out);

/* ---------------------------------------------------------------------
 * Structure
 * ------------------------------------------------------------------ */

enum mime_part_flags {
    MIME_PART_MULTIPART = 1 << 0,   /* multipart/ (children = its parts) */
    MIME_PART_MESSAGE   = 1 << 1,   /* message/rfc822 (one child) */
    MIME_PART_TEXT      = 1 << 2,   /* text/ (line count reported) */
    MIME_PART_DIGEST    = 1 << 3,   /* multipart/digest */
    MIME_PART_IS_MIME   = 1 << 4,   /* MIME-Version or Content-Type seen,
                                       or inside a multipart */
    MIME_PART_OVERFLOW  = 1 << 5,   /* a multipart or message/rfc822 a
                                       limit kept closed: opaque body,
                                       application/octet-stream */
    MIME_PART_HAS_CT    = 1 << 6,   /* a Content-Type header was used */
};

struct mime_part {
    struct mime_part *parent, *children, *next;
    unsigned flags;                 /* enum mime_part_flags */
    unsigned depth;                 /* 0 for the root */

    /* Offsets into the message: header [hdr_offset, hdr_end), the empty
     * line (if any) [hdr_end, body_offset), body [body_offset, body_end).
     * Per RFC 2046 5.1.1 the line break before a boundary line belongs to
     * the boundary, so it is not part of the body. */
    size_t hdr_offset, hdr_end, body_offset, body_end;
    /* Line counts (LF) and "virtual" sizes, i.e. sizes with every bare LF
     * counted as CRLF (what IMAP reports; equal to the byte size when the
     * message is stored with CRLF).  The header figures include the empty
     * line. */
    size_t hdr_lines, hdr_vsize, body_lines, body_vsize;

    /* From the Content-* fields (only when IS_MIME).  type and subtype are
     * as written and may be "" when Content-Type is broken; both NULL when
     * there was no Content-Type (the part is then text/plain, or
     * message/rfc822 inside multipart/digest).  Other strings are NULL
     * when the field is absent. */
    const char *type, *subtype;
    struct mime_param *params;
    size_t param_count;
    const char *encoding;           /* Content-Transfer-Encoding token */
    const char *id, *description, *md5, *location;  /* unfolded, raw */
    const char *disposition;
    struct mime_param *disp_params;
    size_t disp_param_count;
    const char **languages;
    size_t language_count;
    const char *boundary;           /* multipart boundary (NULL if none) */
};

struct mime_arena;

struct mime_message {
    const char *data;               /* the caller's buffer, not copied */
    size_t len;
    struct mime_part *root;
    unsigned part_count;
    bool overflow;                  /* a limit was reached */
    struct mime_arena *arena;       /* owns the parts and their strings */
};

/* Parses the message in data[0..len).  data must stay valid and unchanged
 * while the result is used.  Returns NULL only when out of memory. */
struct mime_message *mime_parse(const char *data, size_t len);
void mime_message_free(struct mime_message *msg);

/* Next part in document order (depth first), or NULL. */
struct mime_part *mime_part_next(const struct mime_part *part);
/* True when part's body is text (text/ or no Content-Type). */
bool mime_part_is_text(const struct mime_part *part);
/* Effective lower-case "type/subtype" of a part into buf: "text/plain"
 * for a part without Content-Type (message/rfc822 in a digest),
 * "application/octet-stream" for an overflowed container. */
const char *mime_part_content_type(const struct mime_part *part, char *buf,
                                   size_t size);
/* The part's charset parameter, or NULL (callers assume us-ascii). */
const char *mime_part_charset(const struct mime_part *part);

/* ---------------------------------------------------------------------
 * Addresses (RFC 5322 3.4 with RFC 822's obsolete forms)
 * ------------------------------------------------------------------ */

/* One entry of an address list, in IMAP ENVELOPE form: a group start has
 * mailbox = group name and domain = NULL; a group end has all NULL.  Names
 * and local parts are unquoted; encoded words are left as they are. */
struct mime_address {
    struct mime_address *next;
    char *name, *route, *mailbox, *domain;
    bool invalid;                   /* syntax error somewhere in this entry */
};

/* Parses an unfolded address-list value.  With fill_missing, a missing
 * mailbox or domain is "MISSING_MAILBOX"/"MISSING_DOMAIN" (IMAP ENVELOPE,
 * as Dovecot and Cyrus do); without, "".  Returns the list (NULL for an
 * empty one) in *list_r; 0, or -1 out of memory.  Free with
 * mime_address_free(). */
int mime_address_parse(const char *value, size_t len, bool fill_missing,
                       struct mime_address **list_r);
void mime_address_free(struct mime_address *list);
#endif
