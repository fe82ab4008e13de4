/*
 * IMAP command syntax: see imap_parse.h.  Grammar references are to
 * RFC 3501 section 9 unless noted.
 */
#include "imap/imap_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/util.h"

/* ---- pool ---- */

struct imap_pool_block {
    struct imap_pool_block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

#define POOL_BLOCK_MIN 4096

void imap_pool_init(struct imap_pool *pool, size_t cap)
{
    pool->blocks = NULL;
    pool->used_total = 0;
    pool->cap = cap;
}

void *imap_pool_alloc(struct imap_pool *pool, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (size == 0)
        size = 16;
    if (pool->used_total + size > pool->cap)
        return NULL;
    struct imap_pool_block *b = pool->blocks;
    if (b == NULL || b->size - b->used < size) {
        size_t bs = size > POOL_BLOCK_MIN ? size : POOL_BLOCK_MIN;
        b = malloc(sizeof(*b) + bs);
        if (b == NULL)
            return NULL;
        b->size = bs;
        b->used = 0;
        b->next = pool->blocks;
        pool->blocks = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    pool->used_total += size;
    memset(p, 0, size);
    return p;
}

char *imap_pool_strndup(struct imap_pool *pool, const char *s, size_t len)
{
    char *d = imap_pool_alloc(pool, len + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

void imap_pool_clear(struct imap_pool *pool)
{
    struct imap_pool_block *b = pool->blocks, *next;
    for (; b; b = next) {
        next = b->next;
        free(b);
    }
    pool->blocks = NULL;
    pool->used_total = 0;
}

/* ---- characters ---- */

static bool is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* ATOM-CHAR: any CHAR except atom-specials. */
static bool is_atom_char(unsigned char c)
{
    if (c >= 0x80 || is_ctl(c))
        return false;
    return strchr("(){ %*\"\\]", c) == NULL;
}

static bool is_astring_char(unsigned char c)
{
    return is_atom_char(c) || c == ']';
}

static int fail(struct imap_parser *ps, const char *what)
{
    if (ps->error == NULL)
        ps->error = what;
    return -1;
}

void imap_parser_init(struct imap_parser *ps, const char *data, size_t len, struct imap_pool *pool)
{
    memset(ps, 0, sizeof(*ps));
    ps->p = data;
    ps->end = data + len;
    ps->pool = pool;
}

int imap_line_literal(const char *line, size_t len, uint64_t *n_r, bool *nonsync_r)
{
    if (len < 3 || line[len - 1] != '}')
        return 0;
    size_t i = len - 1;
    bool nonsync = false;
    if (line[i - 1] == '+' || line[i - 1] == '-') {
        nonsync = true;
        i--;
    }
    size_t digits_end = i;
    while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9')
        i--;
    if (i == 0 || line[i - 1] != '{')
        return 0;
    if (i == digits_end || digits_end - i > 19)
        return -1;
    uint64_t n = 0;
    for (size_t k = i; k < digits_end; k++)
        n = n * 10 + (uint64_t)(line[k] - '0');
    *n_r = n;
    *nonsync_r = nonsync;
    return 1;
}

bool imap_parse_at_end(const struct imap_parser *ps)
{
    return ps->p >= ps->end;
}

int imap_parse_end(struct imap_parser *ps)
{
    return ps->p == ps->end ? 0 : fail(ps, "unexpected characters at end of command");
}

int imap_parse_sp(struct imap_parser *ps)
{
    if (ps->p < ps->end && *ps->p == ' ') {
        ps->p++;
        return 0;
    }
    return fail(ps, "expected a space");
}

bool imap_parse_peek(const struct imap_parser *ps, char c)
{
    return ps->p < ps->end && *ps->p == c;
}

bool imap_parse_char(struct imap_parser *ps, char c)
{
    if (!imap_parse_peek(ps, c))
        return false;
    ps->p++;
    return true;
}

static int parse_chars(struct imap_parser *ps, bool (*ok)(unsigned char), size_t max,
                       char **out_r, const char *what)
{
    const char *start = ps->p;
    while (ps->p < ps->end && ok((unsigned char)*ps->p))
        ps->p++;
    size_t len = (size_t)(ps->p - start);
    if (len == 0 || len > max)
        return fail(ps, what);
    *out_r = imap_pool_strndup(ps->pool, start, len);
    return *out_r ? 0 : fail(ps, "out of memory");
}

static bool is_tag_char(unsigned char c)
{
    return is_astring_char(c) && c != '+';
}

int imap_parse_tag(struct imap_parser *ps, char **tag_r)
{
    return parse_chars(ps, is_tag_char, IMAP_TAG_MAX, tag_r, "bad tag");
}

static bool atom_ok(unsigned char c)
{
    return is_atom_char(c);
}

int imap_parse_atom(struct imap_parser *ps, char **atom_r)
{
    return parse_chars(ps, atom_ok, IMAP_LINE_MAX, atom_r, "expected an atom");
}

int imap_parse_atom_stop(struct imap_parser *ps, const char *stop, char **atom_r)
{
    const char *start = ps->p;
    while (ps->p < ps->end && is_atom_char((unsigned char)*ps->p) && strchr(stop, *ps->p) == NULL)
        ps->p++;
    if (ps->p == start)
        return fail(ps, "expected an atom");
    *atom_r = imap_pool_strndup(ps->pool, start, (size_t)(ps->p - start));
    return *atom_r ? 0 : fail(ps, "out of memory");
}

static int parse_quoted(struct imap_parser *ps, char **s_r, size_t *len_r)
{
    ps->p++; /* the opening quote */
    const char *start = ps->p;
    size_t n = 0;
    const char *q = start;
    for (;; q++) {
        if (q >= ps->end)
            return fail(ps, "unterminated quoted string");
        unsigned char c = (unsigned char)*q;
        if (c == '"')
            break;
        if (c == '\r' || c == '\n' || c == '\0')
            return fail(ps, "bad character in quoted string");
        if (c == '\\') {
            if (q + 1 >= ps->end || (q[1] != '"' && q[1] != '\\'))
                return fail(ps, "bad escape in quoted string");
            q++;
        }
        n++;
    }
    char *out = imap_pool_alloc(ps->pool, n + 1);
    if (out == NULL)
        return fail(ps, "out of memory");
    size_t k = 0;
    for (const char *r = start; r < q; r++) {
        if (*r == '\\')
            r++;
        out[k++] = *r;
    }
    out[k] = '\0';
    ps->p = q + 1;
    *s_r = out;
    *len_r = k;
    return 0;
}

/* "{n}" or "{n+}" CRLF and n octets (assembled by the session). */
static int parse_literal(struct imap_parser *ps, char **s_r, size_t *len_r)
{
    ps->literal8 = false;
    if (*ps->p == '~') {
        ps->literal8 = true;
        ps->p++;
        if (ps->p >= ps->end || *ps->p != '{')
            return fail(ps, "bad literal8");
    }
    ps->p++;
    uint64_t n = 0;
    const char *d = ps->p;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9' && ps->p - d < 19)
        n = n * 10 + (uint64_t)(*ps->p++ - '0');
    if (ps->p == d)
        return fail(ps, "bad literal size");
    if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
        ps->p++;
    if (ps->end - ps->p < 3 || memcmp(ps->p, "}\r\n", 3) != 0)
        return fail(ps, "bad literal");
    ps->p += 3;
    if ((uint64_t)(ps->end - ps->p) < n)
        return fail(ps, "literal shorter than announced");
    char *out = imap_pool_strndup(ps->pool, ps->p, (size_t)n);
    if (out == NULL)
        return fail(ps, "out of memory");
    ps->p += n;
    *s_r = out;
    *len_r = (size_t)n;
    return 0;
}

int imap_parse_string(struct imap_parser *ps, char **s_r, size_t *len_r)
{
    if (ps->p >= ps->end)
        return fail(ps, "expected a string");
    if (*ps->p == '"')
        return parse_quoted(ps, s_r, len_r);
    if (*ps->p == '{' || *ps->p == '~')
        return parse_literal(ps, s_r, len_r);
    return fail(ps, "expected a string");
}

static bool astring_ok(unsigned char c)
{
    return is_astring_char(c);
}

int imap_parse_astring(struct imap_parser *ps, char **s_r, size_t *len_r)
{
    if (ps->p < ps->end && (*ps->p == '"' || *ps->p == '{' || *ps->p == '~'))
        return imap_parse_string(ps, s_r, len_r);
    if (parse_chars(ps, astring_ok, IMAP_LINE_MAX, s_r, "expected an astring") < 0)
        return -1;
    *len_r = strlen(*s_r);
    return 0;
}

int imap_parse_nstring(struct imap_parser *ps, char **s_r, size_t *len_r)
{
    if (ps->end - ps->p >= 3 && strncasecmp(ps->p, "NIL", 3) == 0 &&
        (ps->end - ps->p == 3 || !is_atom_char((unsigned char)ps->p[3]))) {
        ps->p += 3;
        *s_r = NULL;
        *len_r = 0;
        return 0;
    }
    return imap_parse_string(ps, s_r, len_r);
}

static bool list_char_ok(unsigned char c)
{
    return is_atom_char(c) || c == '%' || c == '*' || c == ']';
}

int imap_parse_list_mailbox(struct imap_parser *ps, char **s_r)
{
    size_t len;
    if (ps->p < ps->end && (*ps->p == '"' || *ps->p == '{' || *ps->p == '~'))
        return imap_parse_string(ps, s_r, &len);
    return parse_chars(ps, list_char_ok, IMAP_LINE_MAX, s_r, "expected a mailbox pattern");
}

int imap_parse_number64(struct imap_parser *ps, uint64_t *n_r)
{
    const char *d = ps->p;
    uint64_t n = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        if (n > (UINT64_C(0x7fffffffffffffff) - 9) / 10)
            return fail(ps, "number too large");
        n = n * 10 + (uint64_t)(*ps->p++ - '0');
    }
    if (ps->p == d)
        return fail(ps, "expected a number");
    *n_r = n;
    return 0;
}

int imap_parse_number(struct imap_parser *ps, uint32_t *n_r)
{
    uint64_t n;
    if (imap_parse_number64(ps, &n) < 0)
        return -1;
    if (n > UINT32_MAX)
        return fail(ps, "number too large");
    *n_r = (uint32_t)n;
    return 0;
}

int imap_parse_nz_number(struct imap_parser *ps, uint32_t *n_r)
{
    if (imap_parse_number(ps, n_r) < 0)
        return -1;
    return *n_r == 0 ? fail(ps, "expected a non-zero number") : 0;
}

int imap_parse_flag(struct imap_parser *ps, bool allow_star, char **flag_r)
{
    if (imap_parse_peek(ps, '\\')) {
        if (allow_star && ps->end - ps->p >= 2 && ps->p[1] == '*') {
            ps->p += 2;
            *flag_r = imap_pool_strndup(ps->pool, "\\*", 2);
            return *flag_r ? 0 : fail(ps, "out of memory");
        }
        const char *start = ps->p++;
        char *atom;
        if (imap_parse_atom(ps, &atom) < 0)
            return fail(ps, "bad flag");
        *flag_r = imap_pool_strndup(ps->pool, start, (size_t)(ps->p - start));
        return *flag_r ? 0 : fail(ps, "out of memory");
    }
    return imap_parse_atom(ps, flag_r) < 0 ? fail(ps, "bad flag") : 0;
}

int imap_parse_open(struct imap_parser *ps)
{
    if (!imap_parse_peek(ps, '('))
        return fail(ps, "expected (");
    if (ps->depth >= IMAP_DEPTH_MAX)
        return fail(ps, "too deeply nested");
    ps->p++;
    ps->depth++;
    return 0;
}

int imap_parse_close(struct imap_parser *ps)
{
    if (!imap_parse_char(ps, ')'))
        return fail(ps, "expected )");
    ps->depth--;
    return 0;
}

/* ---- sequence sets ---- */

static int seq_number(struct imap_parser *ps, uint32_t *n_r)
{
    if (imap_parse_char(ps, '*')) {
        *n_r = IMAP_STAR;
        return 0;
    }
    if (imap_parse_nz_number(ps, n_r) < 0)
        return fail(ps, "bad sequence set");
    return 0;
}

int imap_parse_seqset(struct imap_parser *ps, struct imap_seqset *set)
{
    memset(set, 0, sizeof(*set));
    if (imap_parse_char(ps, '$')) {
        set->dollar = true;
        return 0;
    }
    size_t alloc = 8;
    set->r = imap_pool_alloc(ps->pool, alloc * sizeof(*set->r));
    if (set->r == NULL)
        return fail(ps, "out of memory");
    do {
        struct imap_range r;
        if (seq_number(ps, &r.lo) < 0)
            return -1;
        r.hi = r.lo;
        if (imap_parse_char(ps, ':') && seq_number(ps, &r.hi) < 0)
            return -1;
        if (set->n == IMAP_SEQSET_MAX)
            return fail(ps, "sequence set too long");
        if (set->n == alloc) {
            struct imap_range *nr = imap_pool_alloc(ps->pool, alloc * 2 * sizeof(*nr));
            if (nr == NULL)
                return fail(ps, "out of memory");
            memcpy(nr, set->r, alloc * sizeof(*nr));
            set->r = nr;
            alloc *= 2;
        }
        set->r[set->n++] = r;
    } while (imap_parse_char(ps, ','));
    return 0;
}

bool imap_seqset_contains(const struct imap_seqset *set, uint32_t v, uint32_t star)
{
    for (size_t i = 0; i < set->n; i++) {
        uint32_t lo = set->r[i].lo == IMAP_STAR ? star : set->r[i].lo;
        uint32_t hi = set->r[i].hi == IMAP_STAR ? star : set->r[i].hi;
        if (lo > hi) {
            uint32_t t = lo;
            lo = hi;
            hi = t;
        }
        if (v >= lo && v <= hi)
            return true;
    }
    return false;
}

/* ---- dates ---- */

static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

static int digits(struct imap_parser *ps, int min, int max, int *v_r)
{
    int n = 0, v = 0;
    while (n < max && ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        v = v * 10 + (*ps->p++ - '0');
        n++;
    }
    if (n < min)
        return fail(ps, "bad date");
    *v_r = v;
    return 0;
}

static int month(struct imap_parser *ps, int *m_r)
{
    if (ps->end - ps->p < 3)
        return fail(ps, "bad month");
    for (int i = 0; i < 12; i++)
        if (strncasecmp(ps->p, months[i], 3) == 0) {
            ps->p += 3;
            *m_r = i;
            return 0;
        }
    return fail(ps, "bad month");
}

static int date_parts(struct imap_parser *ps, struct tm *tm)
{
    int d, m, y;
    if (digits(ps, 1, 2, &d) < 0 || !imap_parse_char(ps, '-') || month(ps, &m) < 0 ||
        !imap_parse_char(ps, '-') || digits(ps, 4, 4, &y) < 0)
        return fail(ps, "bad date");
    if (d < 1 || d > 31)
        return fail(ps, "bad date");
    memset(tm, 0, sizeof(*tm));
    tm->tm_mday = d;
    tm->tm_mon = m;
    tm->tm_year = y - 1900;
    return 0;
}

int imap_parse_date(struct imap_parser *ps, int64_t *t_r)
{
    bool quoted = imap_parse_char(ps, '"');
    struct tm tm;
    if (date_parts(ps, &tm) < 0 || (quoted && !imap_parse_char(ps, '"')))
        return fail(ps, "bad date");
    *t_r = (int64_t)timegm(&tm);
    return 0;
}

int imap_parse_date_time(struct imap_parser *ps, int64_t *t_r)
{
    if (!imap_parse_char(ps, '"'))
        return fail(ps, "bad date-time");
    imap_parse_char(ps, ' '); /* date-day-fixed: SP DIGIT */
    struct tm tm;
    int hh, mm, ss, zh, zm;
    if (date_parts(ps, &tm) < 0 || imap_parse_sp(ps) < 0 || digits(ps, 2, 2, &hh) < 0 ||
        !imap_parse_char(ps, ':') || digits(ps, 2, 2, &mm) < 0 || !imap_parse_char(ps, ':') ||
        digits(ps, 2, 2, &ss) < 0 || imap_parse_sp(ps) < 0)
        return fail(ps, "bad date-time");
    int sign = imap_parse_char(ps, '+') ? 1 : imap_parse_char(ps, '-') ? -1 : 0;
    if (sign == 0 || digits(ps, 2, 2, &zh) < 0 || digits(ps, 2, 2, &zm) < 0 ||
        !imap_parse_char(ps, '"') || hh > 23 || mm > 59 || ss > 60 || zm > 59)
        return fail(ps, "bad date-time");
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    *t_r = (int64_t)timegm(&tm) - sign * (zh * 3600 + zm * 60);
    return 0;
}

void imap_format_date_time(int64_t t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    snprintf(buf, size, "%02d-%s-%04d %02d:%02d:%02d %c%02ld%02ld", tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, sign,
             off / 60, off % 60);
}

/* ---- output ---- */

int imap_write_string(struct strbuf *out, const char *s, size_t len)
{
    bool quotable = len < 1024;
    for (size_t i = 0; i < len && quotable; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n' || c == '\0' || c >= 0x80)
            quotable = false;
    }
    if (!quotable) {
        if (strbuf_printf(out, "{%zu}\r\n", len) < 0)
            return -1;
        return strbuf_append(out, s, len);
    }
    if (strbuf_append(out, "\"", 1) < 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if ((s[i] == '"' || s[i] == '\\') && strbuf_append(out, "\\", 1) < 0)
            return -1;
        if (strbuf_append(out, s + i, 1) < 0)
            return -1;
    }
    return strbuf_append(out, "\"", 1);
}

int imap_write_astring(struct strbuf *out, const char *s)
{
    size_t len = strlen(s);
    bool atom = len > 0 && strcasecmp(s, "NIL") != 0;
    for (size_t i = 0; i < len && atom; i++)
        atom = is_astring_char((unsigned char)s[i]);
    if (atom)
        return strbuf_append(out, s, len);
    return imap_write_string(out, s, len);
}
