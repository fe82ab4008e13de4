/*
 * MIME structure parser (RFC 2045, 2046).  One forward pass builds the
 * part tree with exact offsets; see mime.h for the contract.
 *
 * How a part ends (the rules Dovecot follows, which we keep):
 *  - A boundary line is "--" + an open boundary at a line start; only the
 *    prefix must match, the longest open boundary wins, the innermost on a
 *    tie; "--" right after it closes that multipart.  A boundary of an
 *    outer multipart also ends every part opened inside it.
 *  - Found while scanning a body, the line break before the boundary line
 *    belongs to the boundary: the body (and those of the enclosing parts
 *    up to the multipart owning the boundary) ends before it.
 *  - Found at a line start inside a part's header, the header ends before
 *    its last line break and the part's body is empty; the enclosing parts
 *    end at the boundary line itself.
 *  - Without a boundary the part runs to the end of the message.
 *
 * Line counts and virtual sizes come from one counter that only moves
 * forward: every offset is recorded in document order, so counting stays
 * linear however deep the nesting.
 */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "mime/mime.h"
#include "mime/mime_private.h"

/* ---- arena ---- */

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, size;
    alignas(max_align_t) unsigned char data[];
};

struct mime_arena {
    struct arena_chunk *head;
};

struct mime_arena *mime_arena_new(void)
{
    return calloc(1, sizeof(struct mime_arena));
}

void mime_arena_free(struct mime_arena *a)
{
    if (a == NULL)
        return;
    for (struct arena_chunk *c = a->head, *n; c != NULL; c = n) {
        n = c->next;
        free(c);
    }
    free(a);
}

void *mime_arena_alloc(struct mime_arena *a, size_t size)
{
    const size_t align = alignof(max_align_t);
    size_t need = (size + align - 1) & ~(align - 1);
    struct arena_chunk *c = a->head;

    if (need < size)
        return NULL;
    if (c == NULL || c->size - c->used < need) {
        size_t sz = need > 16384 ? need : 16384;
        c = malloc(sizeof(*c) + sz);
        if (c == NULL)
            return NULL;
        c->size = sz;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += need;
    memset(p, 0, need);
    return p;
}

char *mime_arena_strndup(struct mime_arena *a, const char *s, size_t len)
{
    char *p = mime_arena_alloc(a, len + 1);
    if (p != NULL && len > 0)
        memcpy(p, s, len);
    return p;
}

/* ---- parser state ---- */

struct boundary {
    const char *str;
    size_t len;
};

/* How the last finished part ended. */
struct hit {
    bool found;             /* else: at the end of the message */
    bool closing;           /* "--boundary--" */
    unsigned idx;           /* which open boundary (stack index) */
    size_t line;            /* offset of the boundary line */
    size_t next;            /* offset after it */
    size_t anc_end;         /* where the enclosing parts below the owner end */
};

struct counter {
    size_t pos, lines, bare_lf;
};

struct parser {
    struct mime_message *msg;
    const char *d;
    size_t len;
    struct boundary stack[MIME_MAX_DEPTH];
    unsigned nstack;
    bool boundaries_off;    /* the part limit was reached */
    struct hit hit;
    struct counter cnt;
    struct strbuf tmp;      /* unfolded header values */
    struct strbuf tok;      /* lexer output */
    bool oom;
};

/* Advances the counter to pos and returns its state there. */
static struct counter count_to(struct parser *ps, size_t pos)
{
    struct counter *c = &ps->cnt;
    const char *d = ps->d;

    if (pos < c->pos) {     /* never happens; stay correct if it does */
        memset(c, 0, sizeof(*c));
    }
    while (c->pos < pos) {
        const char *lf = memchr(d + c->pos, '\n', pos - c->pos);
        if (lf == NULL) {
            c->pos = pos;
            break;
        }
        size_t q = (size_t)(lf - d);
        c->lines++;
        if (q == 0 || d[q - 1] != '\r')
            c->bare_lf++;
        c->pos = q + 1;
    }
    return *c;
}

static size_t eol_before(const char *d, size_t line)
{
    if (line == 0 || d[line - 1] != '\n')
        return 0;
    return line >= 2 && d[line - 2] == '\r' ? 2 : 1;
}

/* Is the line at pos a boundary line of an open multipart?  Fills the hit
 * (except anc_end) when it is. */
static bool match_boundary(struct parser *ps, size_t pos)
{
    const char *d = ps->d;
    size_t len = ps->len;

    if (pos + 2 > len || d[pos] != '-' || d[pos + 1] != '-')
        return false;
    size_t data = pos + 2, size = len - data;
    /* Boundaries are at most MIME_BOUNDARY_MAX bytes, so only the start of
     * a long line matters. */
    size_t window = MIME_BOUNDARY_MAX + 8;
    const char *lf = memchr(d + data, '\n', size < window ? size : window);
    size_t find = size < window ? size : window;
    /* The boundary must fit in the line (its CR included: Dovecot 2.3.19
     * compares against the line as it is, trailing "--" too, so that a
     * boundary ending in "--" still matches). */
    if (lf != NULL)
        find = (size_t)(lf - (d + data));
    int best = -1;
    for (int i = (int)ps->nstack - 1; i >= 0; i--) {
        const struct boundary *b = &ps->stack[i];
        if (b->len <= find && memcmp(b->str, d + data, b->len) == 0 &&
            (best < 0 || ps->stack[best].len < b->len))
            best = i;
    }
    if (best < 0)
        return false;
    const struct boundary *b = &ps->stack[best];
    const char *nl = memchr(d + pos, '\n', len - pos);
    ps->hit.found = true;
    ps->hit.idx = (unsigned)best;
    ps->hit.closing = size >= b->len + 2 && d[data + b->len] == '-' &&
                      d[data + b->len + 1] == '-';
    ps->hit.line = pos;
    ps->hit.next = nl != NULL ? (size_t)(nl - d) + 1 : len;
    return true;
}

/* Searches the next boundary line from pos (a line start).  On success the
 * region scanned ends at the hit; its end excluding the line break before
 * the boundary (never before pos) is stored in hit.anc_end. */
static bool find_boundary(struct parser *ps, size_t pos)
{
    const char *d = ps->d;
    size_t line = pos;

    ps->hit.found = false;
    if (ps->boundaries_off || ps->nstack == 0)
        return false;
    for (;;) {
        if (match_boundary(ps, line)) {
            size_t e = line - eol_before(d, line);
            ps->hit.anc_end = e > pos ? e : pos;
            return true;
        }
        if (line >= ps->len)
            return false;
        const char *p = memmem(d + line, ps->len - line, "\n--", 3);
        if (p == NULL)
            return false;
        line = (size_t)(p - d) + 1;
    }
}

static bool stop_at_boundary(void *ctx, size_t pos)
{
    return match_boundary(ctx, pos);
}

/* ---- Content-* fields ---- */

static char *adup(struct parser *ps, const char *s, size_t len)
{
    char *p = mime_arena_strndup(ps->msg->arena, s, len);
    if (p == NULL)
        ps->oom = true;
    return p;
}

/* Copies malloc'ed params into the arena. */
static struct mime_param *params_to_arena(struct parser *ps, struct mime_param *p,
                                          int n)
{
    struct mime_param *a = NULL;

    if (n > 0) {
        a = mime_arena_alloc(ps->msg->arena, (size_t)n * sizeof(*a));
        if (a == NULL) {
            ps->oom = true;
        } else {
            for (int i = 0; i < n; i++) {
                a[i].name = adup(ps, p[i].name, strlen(p[i].name));
                a[i].value = adup(ps, p[i].value, strlen(p[i].value));
            }
        }
    }
    free(p);
    return a;
}

static void parse_params(struct parser *ps, struct mime_lex *lx,
                         struct mime_param **out, size_t *count)
{
    struct mime_param *p;
    int n = mime_params_from_lex(lx, &p);

    if (n < 0) {
        ps->oom = true;
        n = 0;
        p = NULL;
    }
    *out = params_to_arena(ps, p, n);
    *count = *out != NULL ? (size_t)n : 0;
}

static void content_type(struct parser *ps, struct mime_part *part,
                         const char *v, size_t len)
{
    struct mime_lex lx;

    mime_lex_init(&lx, v, len);
    strbuf_reset(&ps->tok);
    int ret = mime_lex_content_type(&lx, &ps->tok);
    const char *s = ps->tok.data != NULL ? ps->tok.data : "";
    const char *slash = memchr(s, '/', ps->tok.len);
    size_t tlen = slash != NULL ? (size_t)(slash - s) : ps->tok.len;

    part->type = adup(ps, s, tlen);
    part->subtype = slash != NULL ? adup(ps, slash + 1, ps->tok.len - tlen - 1)
                                  : adup(ps, "", 0);
    if (ret >= 0)
        parse_params(ps, &lx, &part->params, &part->param_count);
}

static void content_transfer_encoding(struct parser *ps, struct mime_part *part,
                                      const char *v, size_t len)
{
    struct mime_lex lx;

    mime_lex_init(&lx, v, len);
    mime_lex_skip_cfws(&lx);
    strbuf_reset(&ps->tok);
    if (mime_lex_token(&lx, &ps->tok) >= 0 && mime_lex_skip_cfws(&lx) == 0 &&
        ps->tok.len > 0)
        part->encoding = adup(ps, ps->tok.data, ps->tok.len);
}

static void content_disposition(struct parser *ps, struct mime_part *part,
                                const char *v, size_t len)
{
    struct mime_lex lx;

    mime_lex_init(&lx, v, len);
    mime_lex_skip_cfws(&lx);
    strbuf_reset(&ps->tok);
    if (mime_lex_token(&lx, &ps->tok) < 0)
        return;
    part->disposition = adup(ps, ps->tok.data != NULL ? ps->tok.data : "", ps->tok.len);
    parse_params(ps, &lx, &part->disp_params, &part->disp_param_count);
}

/* Content-Language: 1#language-tag, stopping at the first junk. */
static void content_language(struct parser *ps, struct mime_part *part,
                             const char *v, size_t len)
{
    struct mime_lex lx;
    const char *langs[64];
    const char **list = langs;
    size_t n = 0, alloc = sizeof(langs) / sizeof(langs[0]);

    mime_lex_init(&lx, v, len);
    mime_lex_skip_cfws(&lx);
    for (;;) {
        strbuf_reset(&ps->tok);
        if (mime_lex_atom(&lx, &ps->tok) < 0)
            break;
        if (n == alloc) {
            const char **nl = mime_arena_alloc(ps->msg->arena, 2 * alloc * sizeof(*nl));
            if (nl == NULL) {
                ps->oom = true;
                break;
            }
            memcpy(nl, list, n * sizeof(*nl));
            list = nl;
            alloc *= 2;
        }
        list[n++] = adup(ps, ps->tok.data, ps->tok.len);
        if (lx.p >= lx.end || *lx.p != ',')
            break;
        lx.p++;
        mime_lex_skip_cfws(&lx);
    }
    if (n == 0)
        return;
    part->languages = mime_arena_alloc(ps->msg->arena, n * sizeof(*list));
    if (part->languages == NULL) {
        ps->oom = true;
        return;
    }
    memcpy(part->languages, list, n * sizeof(*list));
    part->language_count = n;
}

/* An unfolded copy of a raw value (NUL -> U+FFFD when asked). */
static const char *unfold(struct parser *ps, const struct mime_header_field *f,
                          bool nul, size_t *len_r)
{
    strbuf_reset(&ps->tmp);
    if (mime_header_unfold(f->value, f->value_len, nul, &ps->tmp) < 0)
        ps->oom = true;
    *len_r = ps->tmp.len;
    return ps->tmp.data != NULL ? ps->tmp.data : "";
}

/* The first of each Content-* field counts (Content-Disposition: until
 * one with parameters was seen). */
static void content_field(struct parser *ps, struct mime_part *part,
                          const struct mime_header_field *f)
{
    const char *name = f->name + 8;
    size_t nlen = strnlen(f->name, f->name_len) - 8, len;
    const char *v;

    /* structured fields are lexed from the raw value: the lexer takes
     * folding line breaks as white space */
#define IS(s) (nlen == sizeof(s) - 1 && strncasecmp(name, s, nlen) == 0)
    if (IS("Type")) {
        if (part->flags & MIME_PART_HAS_CT)
            return;
        part->flags |= MIME_PART_HAS_CT | MIME_PART_IS_MIME;
        content_type(ps, part, f->value, f->value_len);
    } else if (IS("Transfer-Encoding")) {
        if (part->encoding == NULL)
            content_transfer_encoding(ps, part, f->value, f->value_len);
    } else if (IS("Disposition")) {
        if (part->disp_params == NULL)
            content_disposition(ps, part, f->value, f->value_len);
    } else if (IS("Language")) {
        if (part->languages == NULL)
            content_language(ps, part, f->value, f->value_len);
    } else {
        const char **dst = IS("ID") ? &part->id : IS("Description") ? &part->description
                         : IS("MD5") ? &part->md5 : IS("Location") ? &part->location
                         : NULL;
        if (dst != NULL && *dst == NULL) {
            v = unfold(ps, f, true, &len);
            *dst = adup(ps, v, len);
        }
    }
#undef IS
}

/* Without MIME-Version or Content-Type (and outside a multipart), RFC 2045
 * 4 says the Content-* fields mean nothing. */
static void forget_content(struct mime_part *p)
{
    p->params = p->disp_params = NULL;
    p->param_count = p->disp_param_count = p->language_count = 0;
    p->type = p->subtype = p->encoding = p->id = p->description = NULL;
    p->md5 = p->location = p->disposition = NULL;
    p->languages = NULL;
}

/* Names compare as C strings (a NUL ends them), as for Dovecot. */
static bool name_is(const struct mime_header_field *f, const char *name)
{
    size_t n = strlen(name);
    return strnlen(f->name, f->name_len) == n && strncasecmp(f->name, name, n) == 0;
}

/* Reads the part's header; decides its type.  Returns false when a
 * boundary line ended the header (ps->hit is set, the body is empty). */
static bool parse_header(struct parser *ps, struct mime_part *part)
{
    struct mime_header_iter it;
    struct mime_header_field f;

    mime_header_iter_init(&it, ps->d, ps->len, part->hdr_offset);
    if (!ps->boundaries_off && ps->nstack > 0) {
        it.stop = stop_at_boundary;
        it.stop_ctx = ps;
    }
    while (mime_header_iter_next(&it, &f)) {
        if (f.value == NULL)
            continue;
        if (name_is(&f, "MIME-Version"))
            part->flags |= MIME_PART_IS_MIME;
        else if (strnlen(f.name, f.name_len) >= 8 && strncasecmp(f.name, "Content-", 8) == 0)
            content_field(ps, part, &f);
    }
    if (it.stopped) {
        size_t h = it.header_end - eol_before(ps->d, it.header_end);
        part->hdr_end = part->body_offset = h > part->hdr_offset ? h : part->hdr_offset;
        ps->hit.anc_end = it.header_end;
    } else {
        part->hdr_end = it.header_end;
        part->body_offset = it.body_offset;
    }
    return !it.stopped;
}

static bool ieq(const char *a, const char *b)
{
    return a != NULL && strcasecmp(a, b) == 0;
}

static void decide_type(struct parser *ps, struct mime_part *part)
{
    const struct mime_part *parent = part->parent;

    if (!(part->flags & MIME_PART_IS_MIME)) {
        forget_content(part);
        part->flags &= ~(unsigned)MIME_PART_HAS_CT;
    }
    if (part->flags & MIME_PART_HAS_CT) {
        if (ieq(part->type, "message") && ieq(part->subtype, "rfc822")) {
            part->flags |= MIME_PART_MESSAGE;
        } else if (ieq(part->type, "text")) {
            part->flags |= MIME_PART_TEXT;
        } else if (ieq(part->type, "multipart") && part->subtype[0] != '\0') {
            part->flags |= MIME_PART_MULTIPART;
            if (ieq(part->subtype, "digest"))
                part->flags |= MIME_PART_DIGEST;
            const char *b = mime_param_get(part->params, part->param_count, "boundary");
            if (b != NULL) {
                size_t n = strlen(b);
                part->boundary = n > MIME_BOUNDARY_MAX ? adup(ps, b, MIME_BOUNDARY_MAX) : b;
            }
        }
    } else if (parent != NULL && (parent->flags & MIME_PART_DIGEST)) {
        part->flags |= MIME_PART_MESSAGE;   /* RFC 2046 5.1.5 */
    } else {
        part->flags |= MIME_PART_TEXT;      /* RFC 2045 5.2 */
    }
}

/* A new part after prev (NULL: the parent's first child). */
static struct mime_part *new_part(struct parser *ps, struct mime_part *parent,
                                  struct mime_part *prev)
{
    struct mime_part *p = mime_arena_alloc(ps->msg->arena, sizeof(*p));

    if (p == NULL) {
        ps->oom = true;
        return NULL;
    }
    p->parent = parent;
    if (parent != NULL) {
        p->depth = parent->depth + 1;
        if (parent->flags & MIME_PART_MULTIPART)
            p->flags |= MIME_PART_IS_MIME;     /* RFC 2046 5.1 */
        if (prev != NULL)
            prev->next = p;
        else
            parent->children = p;
    }
    if (++ps->msg->part_count >= MIME_MAX_PARTS) {
        /* this part takes the rest of the message */
        ps->boundaries_off = true;
        ps->msg->overflow = true;
    }
    return p;
}

static void parse_part(struct parser *ps, struct mime_part *part);

static void parse_message_body(struct parser *ps, struct mime_part *part)
{
    struct mime_part *child = new_part(ps, part, NULL);

    if (child == NULL) {
        part->body_end = ps->len;
        return;
    }
    child->hdr_offset = part->body_offset;
    parse_part(ps, child);
    part->body_end = ps->hit.found ? ps->hit.anc_end : ps->len;
}

static void parse_multipart_body(struct parser *ps, struct mime_part *part)
{
    unsigned idx = ps->nstack++;
    struct mime_part *last = NULL;

    ps->stack[idx].str = part->boundary;
    ps->stack[idx].len = strlen(part->boundary);
    find_boundary(ps, part->body_offset);     /* the preamble */
    for (;;) {
        if (!ps->hit.found || ps->hit.idx < idx) {
            /* the end, or an outer boundary: we end there too */
            part->body_end = ps->hit.found ? ps->hit.anc_end : ps->len;
            ps->nstack = idx;
            return;
        }
        size_t pos = ps->hit.next;
        ps->nstack = idx + 1;       /* forget inner boundaries */
        if (ps->hit.closing) {
            ps->nstack = idx;
            if (find_boundary(ps, pos))     /* the epilogue */
                part->body_end = ps->hit.anc_end;
            else
                part->body_end = ps->len;
            return;
        }
        struct mime_part *child = new_part(ps, part, last);
        if (child == NULL) {
            part->body_end = ps->len;
            ps->nstack = idx;
            ps->hit.found = false;
            return;
        }
        child->hdr_offset = pos;
        parse_part(ps, child);
        last = child;
    }
}

/* A container a limit keeps us from entering: its body is opaque, shown
 * as application/octet-stream; except that the last part allowed stays a
 * multipart without parts when it is one (as Dovecot shows it). */
static void make_opaque(struct parser *ps, struct mime_part *part, bool last)
{
    if (!last || (part->flags & MIME_PART_MESSAGE)) {
        part->flags &= ~(unsigned)(MIME_PART_MESSAGE | MIME_PART_MULTIPART |
                                   MIME_PART_DIGEST);
        part->flags |= MIME_PART_OVERFLOW;
    }
    ps->msg->overflow = true;
}

/* A boundary line ended the header: the body is empty.  An enclosed
 * message still gets its (empty) part, as Dovecot does. */
static void parse_cut_part(struct parser *ps, struct mime_part *part)
{
    part->body_end = part->body_offset;
    if (!(part->flags & MIME_PART_MESSAGE))
        return;
    if (ps->boundaries_off || part->depth + 1 >= MIME_MAX_DEPTH || ps->oom) {
        make_opaque(ps, part, false);
        return;
    }
    struct hit saved = ps->hit;
    struct mime_part *child = new_part(ps, part, NULL);
    if (child != NULL) {
        child->hdr_offset = child->hdr_end = part->body_offset;
        child->body_offset = child->body_end = part->body_offset;
        child->flags |= MIME_PART_TEXT;
    }
    ps->hit = saved;
}

static void parse_body(struct parser *ps, struct mime_part *part, bool last)
{
    bool container = (part->flags & MIME_PART_MESSAGE) ||
                     ((part->flags & MIME_PART_MULTIPART) && part->boundary != NULL);

    if (container && (part->depth + 1 >= MIME_MAX_DEPTH || last || ps->oom)) {
        make_opaque(ps, part, last);
        container = false;
    }
    if (container && (part->flags & MIME_PART_MULTIPART))
        parse_multipart_body(ps, part);
    else if (container)
        parse_message_body(ps, part);
    else if (find_boundary(ps, part->body_offset))
        part->body_end = ps->hit.anc_end;
    else
        part->body_end = ps->len;
}

/* Parses one part from part->hdr_offset; on return ps->hit tells how it
 * ended (a boundary line, or the end of the message). */
static void parse_part(struct parser *ps, struct mime_part *part)
{
    struct counter h = count_to(ps, part->hdr_offset);
    bool last = ps->boundaries_off;     /* the part that hit MIME_MAX_PARTS */
    bool body = parse_header(ps, part);

    decide_type(ps, part);
    struct counter b = count_to(ps, part->body_offset);
    part->hdr_lines = b.lines - h.lines;
    part->hdr_vsize = part->body_offset - part->hdr_offset + (b.bare_lf - h.bare_lf);
    if (body)
        parse_body(ps, part, last);
    else
        parse_cut_part(ps, part);
    struct counter e = count_to(ps, part->body_end);
    part->body_lines = e.lines - b.lines;
    part->body_vsize = part->body_end - part->body_offset + (e.bare_lf - b.bare_lf);
}

struct mime_message *mime_parse(const char *data, size_t len)
{
    struct mime_message *msg = calloc(1, sizeof(*msg));
    struct parser ps;

    if (msg == NULL)
        return NULL;
    msg->data = data;
    msg->len = len;
    msg->arena = mime_arena_new();
    if (msg->arena == NULL) {
        free(msg);
        return NULL;
    }
    memset(&ps, 0, sizeof(ps));
    ps.msg = msg;
    ps.d = data;
    ps.len = len;
    strbuf_init(&ps.tmp, len * 3 + 64);
    strbuf_init(&ps.tok, len * 3 + 64);
    msg->root = new_part(&ps, NULL, NULL);
    if (msg->root != NULL)
        parse_part(&ps, msg->root);
    strbuf_free(&ps.tmp);
    strbuf_free(&ps.tok);
    if (ps.oom || msg->root == NULL) {
        mime_message_free(msg);
        return NULL;
    }
    return msg;
}

void mime_message_free(struct mime_message *msg)
{
    if (msg == NULL)
        return;
    mime_arena_free(msg->arena);
    free(msg);
}

struct mime_part *mime_part_next(const struct mime_part *part)
{
    if (part->children != NULL)
        return part->children;
    for (; part != NULL; part = part->parent) {
        if (part->next != NULL)
            return part->next;
    }
    return NULL;
}

bool mime_part_is_text(const struct mime_part *part)
{
    return (part->flags & MIME_PART_TEXT) != 0;
}

const char *mime_part_content_type(const struct mime_part *part, char *buf,
                                   size_t size)
{
    const char *t = part->type, *s = part->subtype;

    if (part->flags & MIME_PART_OVERFLOW) {
        t = "application";
        s = "octet-stream";
    } else if (part->flags & MIME_PART_MESSAGE) {
        t = "message";
        s = "rfc822";
    } else if (t == NULL) {
        t = "text";
        s = "plain";
    }
    size_t i = 0;
    for (const char *p = t; *p != '\0' && i + 1 < size; p++)
        buf[i++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p + 32) : *p;
    if (i + 1 < size)
        buf[i++] = '/';
    for (const char *p = s; *p != '\0' && i + 1 < size; p++)
        buf[i++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p + 32) : *p;
    if (size > 0)
        buf[i] = '\0';
    return buf;
}

const char *mime_part_charset(const struct mime_part *part)
{
    return mime_param_get(part->params, part->param_count, "charset");
}
