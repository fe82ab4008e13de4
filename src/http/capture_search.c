/*
 * Search queries in Mailpit's syntax: terms separated by spaces, "quoted
 * phrases", a leading '-' or '!' negates a term, all terms must match.
 *   from:X to:X cc:X subject:X message-id:X   substring of that field
 *   is:read is:unread has:attachment(s)        state
 *   before:DATE after:DATE                     received before / on or after
 *                                              DATE (YYYY-MM-DD, UTC midnight)
 *   larger:N smaller:N                         size (K, M suffixes)
 *   anything else                              substring of addresses,
 *                                              subject or body text
 * Matching is ASCII case-insensitive (the fields are kept lower-cased).
 */
#include "http/capture.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define QUERY_TERMS_MAX 32

enum term_kind { T_TEXT, T_FROM, T_TO, T_CC, T_SUBJECT, T_MSGID, T_READ, T_UNREAD, T_ATTACH,
                 T_BEFORE, T_AFTER, T_LARGER, T_SMALLER };

struct term {
    enum term_kind kind;
    bool negate;
    char *value;                  /* lower-cased */
    int64_t number;
};

struct capture_query {
    struct term terms[QUERY_TERMS_MAX];
    int n;
};

/* YYYY-MM-DD (UTC midnight); -1 if it is not one. */
static int64_t parse_day(const char *s)
{
    struct tm tm = { 0 };
    int y, m, d, used = 0;
    if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &used) != 3 || used != 10 ||
        y < 1970 || y > 9999 || m < 1 || m > 12 || d < 1 || d > 31)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    return (int64_t)timegm(&tm);
}

/* N, NK, NM (N may have a fraction); -1 if it is not one. */
static int64_t parse_bytes(const char *s)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return -1;
    double v = strtod(s, &end);
    if (*end == 'k' || *end == 'K') {
        v *= 1024;
        end++;
    } else if (*end == 'm' || *end == 'M') {
        v *= 1024 * 1024;
        end++;
    } else if (*end == 'g' || *end == 'G') {
        v *= 1024.0 * 1024 * 1024;
        end++;
    }
    if ((*end == 'b' || *end == 'B') && end[1] == '\0')
        end++;
    if (*end != '\0' || !(v >= 0 && v < 1e15))
        return -1;
    return (int64_t)v;
}

/* Sorts a word into its term; NULL, or why the word is not a valid term. */
static const char *term_classify(struct term *t, char *w)
{
    static const struct { const char *prefix; enum term_kind kind; } prefixes[] = {
        { "from:", T_FROM }, { "to:", T_TO }, { "cc:", T_CC }, { "subject:", T_SUBJECT },
        { "message-id:", T_MSGID }, { "before:", T_BEFORE }, { "after:", T_AFTER },
        { "larger:", T_LARGER }, { "smaller:", T_SMALLER } };
    t->kind = T_TEXT;
    t->value = w;
    if (strcmp(w, "is:read") == 0) {
        t->kind = T_READ;
        return NULL;
    }
    if (strcmp(w, "is:unread") == 0) {
        t->kind = T_UNREAD;
        return NULL;
    }
    if (strcmp(w, "has:attachment") == 0 || strcmp(w, "has:attachments") == 0) {
        t->kind = T_ATTACH;
        return NULL;
    }
    if (strncmp(w, "is:", 3) == 0)
        return "is: takes read or unread";
    if (strncmp(w, "has:", 4) == 0)
        return "has: takes attachment";
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t n = strlen(prefixes[i].prefix);
        if (strncmp(w, prefixes[i].prefix, n) == 0) {
            t->kind = prefixes[i].kind;
            memmove(w, w + n, strlen(w + n) + 1);
            break;
        }
    }
    if (t->kind == T_BEFORE || t->kind == T_AFTER) {
        t->number = parse_day(w);
        if (t->number < 0)
            return t->kind == T_BEFORE ? "before: takes a date YYYY-MM-DD"
                                       : "after: takes a date YYYY-MM-DD";
    } else if (t->kind == T_LARGER || t->kind == T_SMALLER) {
        t->number = parse_bytes(w);
        if (t->number < 0)
            return t->kind == T_LARGER ? "larger: takes a size such as 500, 10K or 2M"
                                       : "smaller: takes a size such as 500, 10K or 2M";
    }
    /* "from:\"a b\"" and "from:<a@b>": strip the quoting */
    size_t n = strlen(w);
    if (n >= 2 && ((w[0] == '"' && w[n - 1] == '"') || (w[0] == '<' && w[n - 1] == '>'))) {
        memmove(w, w + 1, n - 2);
        w[n - 2] = '\0';
    }
    return NULL;
}

struct capture_query *capture_query_parse(const char *q, const char **error_r)
{
    *error_r = NULL;
    struct capture_query *cq = calloc(1, sizeof(*cq));
    if (cq == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    const char *s = q ? q : "";
    while (*s) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0')
            break;
        if (cq->n == QUERY_TERMS_MAX) {
            *error_r = "too many search terms (at most 32)";
            goto fail;
        }
        bool neg = false;
        if ((*s == '-' || *s == '!') && s[1] && s[1] != ' ') {
            neg = true;
            s++;
        }
        /* a word, where a quoted part may contain spaces */
        const char *start = s;
        bool quoted = false;
        while (*s && (quoted || (*s != ' ' && *s != '\t'))) {
            if (*s == '"')
                quoted = !quoted;
            s++;
        }
        if (quoted) {
            *error_r = "unterminated quote";
            goto fail;
        }
        size_t n = (size_t)(s - start);
        char *w = malloc(n + 1);
        if (w == NULL) {
            *error_r = "out of memory";
            goto fail;
        }
        for (size_t i = 0; i < n; i++)
            w[i] = (char)tolower((unsigned char)start[i]);
        w[n] = '\0';
        struct term *t = &cq->terms[cq->n++];
        t->negate = neg;
        if ((*error_r = term_classify(t, w)) != NULL)
            goto fail;
        if (t->kind == T_TEXT && w[0] == '"') {
            size_t l = strlen(w);
            memmove(w, w + 1, l);
            if (l >= 2 && w[l - 2] == '"')
                w[l - 2] = '\0';
        }
    }
    return cq;
fail:
    capture_query_free(cq);
    return NULL;
}

void capture_query_free(struct capture_query *q)
{
    if (q == NULL)
        return;
    for (int i = 0; i < q->n; i++)
        free(q->terms[i].value);
    free(q);
}

static bool has(const char *hay, const char *needle)
{
    return hay != NULL && strstr(hay, needle) != NULL;
}

static bool term_match(const struct term *t, const struct capture_meta *m, bool read)
{
    switch (t->kind) {
    case T_TEXT: return has(m->search, t->value);
    case T_FROM: return has(m->from, t->value);
    case T_TO: return has(m->to, t->value);
    case T_CC: return has(m->cc, t->value);
    case T_SUBJECT: return has(m->subject, t->value);
    case T_MSGID: return has(m->message_id, t->value);
    case T_READ: return read;
    case T_UNREAD: return !read;
    case T_ATTACH: return m->attachments > 0;
    case T_BEFORE: return m->created < t->number;
    case T_AFTER: return m->created >= t->number;
    case T_LARGER: return (int64_t)m->size > t->number;
    case T_SMALLER: return (int64_t)m->size < t->number;
    }
    return true;
}

bool capture_query_match(const struct capture_query *q, const struct capture_meta *m, bool read)
{
    for (int i = 0; i < q->n; i++) {
        const struct term *t = &q->terms[i];
        if (t->value && t->value[0] == '\0' && t->kind <= T_MSGID)
            continue;
        if (term_match(t, m, read) == t->negate)
            return false;
    }
    return true;
}
