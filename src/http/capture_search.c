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
                 T_BEFORE, T_AFTER, T_LARGER, T_SMALLER, T_NONE };

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

static int64_t parse_day(const char *s)
{
    struct tm tm = { 0 };
    int y, m, d;
    if (sscanf(s, "%d-%d-%d", &y, &m, &d) != 3)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    return (int64_t)timegm(&tm);
}

static int64_t parse_bytes(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end == 'k' || *end == 'K')
        v *= 1024;
    else if (*end == 'm' || *end == 'M')
        v *= 1024 * 1024;
    return (int64_t)v;
}

static void term_classify(struct term *t, char *w)
{
    static const struct { const char *prefix; enum term_kind kind; } prefixes[] = {
        { "from:", T_FROM }, { "to:", T_TO }, { "cc:", T_CC }, { "subject:", T_SUBJECT },
        { "message-id:", T_MSGID }, { "before:", T_BEFORE }, { "after:", T_AFTER },
        { "larger:", T_LARGER }, { "smaller:", T_SMALLER } };
    t->kind = T_TEXT;
    t->value = w;
    if (strcmp(w, "is:read") == 0) {
        t->kind = T_READ;
        return;
    }
    if (strcmp(w, "is:unread") == 0) {
        t->kind = T_UNREAD;
        return;
    }
    if (strcmp(w, "has:attachment") == 0 || strcmp(w, "has:attachments") == 0) {
        t->kind = T_ATTACH;
        return;
    }
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
            t->kind = T_NONE;
    } else if (t->kind == T_LARGER || t->kind == T_SMALLER) {
        t->number = parse_bytes(w);
    }
    /* "from:\"a b\"" and "from:<a@b>": strip the quoting */
    size_t n = strlen(w);
    if (n >= 2 && ((w[0] == '"' && w[n - 1] == '"') || (w[0] == '<' && w[n - 1] == '>'))) {
        memmove(w, w + 1, n - 2);
        w[n - 2] = '\0';
    }
}

struct capture_query *capture_query_parse(const char *q)
{
    struct capture_query *cq = calloc(1, sizeof(*cq));
    if (cq == NULL)
        return NULL;
    const char *s = q ? q : "";
    while (*s && cq->n < QUERY_TERMS_MAX) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0')
            break;
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
        size_t n = (size_t)(s - start);
        char *w = malloc(n + 1);
        if (w == NULL)
            break;
        for (size_t i = 0; i < n; i++)
            w[i] = (char)tolower((unsigned char)start[i]);
        w[n] = '\0';
        struct term *t = &cq->terms[cq->n++];
        t->negate = neg;
        term_classify(t, w);
        if (t->kind == T_TEXT && w[0] == '"') {
            size_t l = strlen(w);
            memmove(w, w + 1, l);
            if (l >= 2 && w[l - 2] == '"')
                w[l - 2] = '\0';
        }
    }
    return cq;
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
    case T_NONE: return true;
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
