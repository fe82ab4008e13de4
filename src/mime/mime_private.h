/*
 * Shared inside src/mime: the arena that owns a parsed message, and the
 * RFC 822 lexer used for Content-* values and addresses.
 */
#ifndef POSTEL_MIME_PRIVATE_H
#define POSTEL_MIME_PRIVATE_H
#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"

struct mime_param;

/* ---- arena: many small allocations freed at once ---- */
struct mime_arena;
struct mime_arena *mime_arena_new(void);
void mime_arena_free(struct mime_arena *a);
/* Zeroed memory; NULL when out of memory. */
void *mime_arena_alloc(struct mime_arena *a, size_t size);
/* Copies s[0..len) and terminates it. */
char *mime_arena_strndup(struct mime_arena *a, const char *s, size_t len);

/* ---- RFC 822 lexer ----
 * Works on an unfolded value.  The parse functions share one convention:
 * they return 1 when data remains after the token and the white space and
 * comments following it, 0 at the end of the data, -1 on a syntax error
 * (an unterminated quoted string, comment or domain literal; a missing
 * token where one is required).  Output is appended to a strbuf; running
 * out of space sets oom (callers check it once at the end). */
struct mime_lex {
    const unsigned char *p, *end;
    struct strbuf *comment;     /* if set, receives the last comment's text */
    bool nul_to_fffd;           /* NUL in quoted text/comments -> U+FFFD */
    bool oom;
};

void mime_lex_init(struct mime_lex *lx, const char *s, size_t len);
/* Character classes (RFC 5322 atext; RFC 2045 token = atext minus "/=?"
 * plus "."); bytes >= 0x80 count as atext (RFC 6532). */
bool mime_is_atext(unsigned char c);
bool mime_is_token(unsigned char c);

int mime_lex_skip_cfws(struct mime_lex *lx);
int mime_lex_atom(struct mime_lex *lx, struct strbuf *out);
int mime_lex_dot_atom(struct mime_lex *lx, struct strbuf *out);
int mime_lex_token(struct mime_lex *lx, struct strbuf *out);  /* may be empty */
int mime_lex_quoted(struct mime_lex *lx, struct strbuf *out); /* at '"' */
int mime_lex_phrase(struct mime_lex *lx, struct strbuf *out);
int mime_lex_domain(struct mime_lex *lx, struct strbuf *out); /* at '@' */
/* Content-Type "type/subtype": appends "type/subtype" and returns >= 0, or
 * -1 with out holding what could be salvaged ("" or a bare "type"). */
int mime_lex_content_type(struct mime_lex *lx, struct strbuf *out);

/* ---- shared helpers ---- */
static inline bool mime_is_wsp(char c) { return c == ' ' || c == '\t'; }
/* Appends U+FFFD. */
int mime_append_fffd(struct strbuf *out);
/* Parameters from a lexer positioned at the first ';' (see
 * mime_params_parse()); params are allocated in one malloc block. */
int mime_params_from_lex(struct mime_lex *lx, struct mime_param **params_r);
#endif
