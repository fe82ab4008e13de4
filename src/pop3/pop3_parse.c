/*
 * POP3 command parsing and the RETR/TOP output encoder (see pop3_parse.h).
 * No I/O, no allocation.
 */
#include "pop3/pop3_parse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* How a verb's arguments look. */
enum pop3_args {
    ARGS_NONE,        /* no argument */
    ARGS_NAME,        /* one word (USER) */
    ARGS_REST,        /* the rest of the line, verbatim, not empty (PASS) */
    ARGS_ANY,         /* anything (APOP: refused by the session anyway) */
    ARGS_MSG,         /* one message number */
    ARGS_OPT_MSG,     /* an optional message number (LIST, UIDL) */
    ARGS_MSG_LINES,   /* message number and line count (TOP) */
    ARGS_AUTH,        /* [mechanism [initial-response]] */
};

struct verb_def {
    const char *name;
    enum pop3_args args;
    const char *syntax;           /* the hint for a syntax error */
};

static const struct verb_def verbs[POP3_VERB_COUNT] = {
    [POP3_VERB_UNKNOWN] = { "?", ARGS_ANY, "unknown command" },
    [POP3_VERB_USER] = { "USER", ARGS_NAME, "syntax: USER name" },
    [POP3_VERB_PASS] = { "PASS", ARGS_REST, "syntax: PASS password" },
    [POP3_VERB_APOP] = { "APOP", ARGS_ANY, "syntax: APOP name digest" },
    [POP3_VERB_AUTH] = { "AUTH", ARGS_AUTH, "syntax: AUTH mechanism [initial-response]" },
    [POP3_VERB_STLS] = { "STLS", ARGS_NONE, "syntax: STLS (no arguments)" },
    [POP3_VERB_CAPA] = { "CAPA", ARGS_NONE, "syntax: CAPA (no arguments)" },
    [POP3_VERB_QUIT] = { "QUIT", ARGS_NONE, "syntax: QUIT (no arguments)" },
    [POP3_VERB_STAT] = { "STAT", ARGS_NONE, "syntax: STAT (no arguments)" },
    [POP3_VERB_LIST] = { "LIST", ARGS_OPT_MSG, "syntax: LIST [msg]" },
    [POP3_VERB_RETR] = { "RETR", ARGS_MSG, "syntax: RETR msg" },
    [POP3_VERB_DELE] = { "DELE", ARGS_MSG, "syntax: DELE msg" },
    [POP3_VERB_NOOP] = { "NOOP", ARGS_NONE, "syntax: NOOP (no arguments)" },
    [POP3_VERB_RSET] = { "RSET", ARGS_NONE, "syntax: RSET (no arguments)" },
    [POP3_VERB_TOP] = { "TOP", ARGS_MSG_LINES, "syntax: TOP msg lines" },
    [POP3_VERB_UIDL] = { "UIDL", ARGS_OPT_MSG, "syntax: UIDL [msg]" },
};

const char *pop3_verb_name(enum pop3_verb verb)
{
    return verb > POP3_VERB_UNKNOWN && verb < POP3_VERB_COUNT ? verbs[verb].name : "?";
}

/* Splits the next space-separated word off *p (spaces before it skipped)
 * and NUL-terminates it.  NULL when nothing is left. */
static char *next_word(char **p)
{
    char *s = *p;
    while (*s == ' ')
        s++;
    if (*s == '\0') {
        *p = s;
        return NULL;
    }
    char *w = s;
    while (*s != '\0' && *s != ' ')
        s++;
    if (*s == ' ')
        *s++ = '\0';
    *p = s;
    return w;
}

/* A decimal number of 1-10 digits, at most 2^31 - 1.  0 or -1. */
static int parse_number(const char *w, uint32_t *out)
{
    size_t n = strlen(w);
    if (n == 0 || n > 10)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (w[i] < '0' || w[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(w[i] - '0');
    }
    if (v > 0x7fffffffu)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static bool has_ctl(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 && s[i] != '\t')
            return true;
    return false;
}

static enum pop3_verb lookup_verb(const char *w)
{
    for (int v = POP3_VERB_UNKNOWN + 1; v < POP3_VERB_COUNT; v++)
        if (strcasecmp(w, verbs[v].name) == 0)
            return (enum pop3_verb)v;
    return POP3_VERB_UNKNOWN;
}

/* SASL mechanism names (RFC 4422 3.1): upper-case letters, digits, '-', '_'. */
static bool mech_valid(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = m[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* The arguments after the verb; rest points after the verb's space. */
static int parse_args(char *rest, struct pop3_command *cmd, const char **error_r)
{
    const struct verb_def *d = &verbs[cmd->verb];
    char *p = rest, *w1, *w2;
    switch (d->args) {
    case ARGS_NONE:
        return next_word(&p) == NULL ? 0 : -1;
    case ARGS_ANY:
        cmd->arg = rest;
        return 0;
    case ARGS_REST:
        cmd->arg = rest;
        return rest[0] != '\0' ? 0 : -1;
    case ARGS_NAME:
        w1 = next_word(&p);
        cmd->arg = w1 ? w1 : "";
        return w1 != NULL && next_word(&p) == NULL ? 0 : -1;
    case ARGS_AUTH:
        w1 = next_word(&p);
        w2 = w1 ? next_word(&p) : NULL;
        if (next_word(&p) != NULL || (w1 != NULL && !mech_valid(w1)))
            return -1;
        cmd->arg = w1 ? w1 : "";
        cmd->arg2 = w2;
        return 0;
    case ARGS_OPT_MSG:
    case ARGS_MSG:
    case ARGS_MSG_LINES:
        break;
    }
    w1 = next_word(&p);
    if (w1 == NULL)
        return d->args == ARGS_OPT_MSG ? 0 : -1;
    w2 = d->args == ARGS_MSG_LINES ? next_word(&p) : NULL;
    if (next_word(&p) != NULL || (d->args == ARGS_MSG_LINES && w2 == NULL))
        return -1;
    if (parse_number(w1, &cmd->msg) < 0) {
        *error_r = "invalid message number";
        return -1;
    }
    cmd->has_msg = true;
    if (w2 != NULL && parse_number(w2, &cmd->lines) < 0) {
        *error_r = "invalid line count";
        return -1;
    }
    return 0;
}

int pop3_command_parse(char *line, size_t len, struct pop3_command *cmd, const char **error_r)
{
    memset(cmd, 0, sizeof(*cmd));
    cmd->arg = "";
    line[len] = '\0';
    if (memchr(line, '\0', len) != NULL || has_ctl(line, len)) {
        *error_r = "bad character in command";
        return -1;
    }
    /* RFC 1939 3: a keyword of 3 or 4 characters, then arguments each
     * after a single space.  We allow extra spaces between arguments. */
    size_t vlen = strcspn(line, " ");
    if (vlen == 0 || vlen > 4) {
        *error_r = "unknown command";
        return -1;
    }
    char verb[5];
    memcpy(verb, line, vlen);
    verb[vlen] = '\0';
    cmd->verb = lookup_verb(verb);
    if (cmd->verb == POP3_VERB_UNKNOWN) {
        *error_r = "unknown command";
        return -1;
    }
    char *rest = line + vlen;
    if (*rest == ' ')
        rest++;
    const char *why = NULL;
    if (parse_args(rest, cmd, &why) < 0) {
        *error_r = why ? why : verbs[cmd->verb].syntax;
        return -1;
    }
    return 0;
}

/* ---- RETR / TOP output ---- */

void pop3_stuff_init(struct pop3_stuff *s, bool top, uint32_t lines)
{
    memset(s, 0, sizeof(*s));
    s->line_start = true;
    s->top = top;
    s->lines_left = lines;
}

/* A line ended: TOP's accounting (RFC 1939 7: the headers, the blank
 * line after them, then `lines` lines of the body). */
static void stuff_line_end(struct pop3_stuff *s, bool empty)
{
    s->line_start = true;
    s->prev_cr = false;
    s->line_bytes = 0;
    if (!s->top)
        return;
    if (!s->in_body) {
        if (empty) {
            s->in_body = true;
            s->done = s->lines_left == 0;
        }
    } else if (--s->lines_left == 0) {
        s->done = true;
    }
}

/* The common case (CRLF lines, no leading dots) passes whole chunks to
 * out in one call; runs are only cut where a byte is inserted, and every
 * byte passed to out except an inserted CR LF lies inside `in`. */
/* RETR (no line counting): one memchr per line and two byte checks, the
 * same output as the general loop below. */
static size_t stuff_feed_retr(struct pop3_stuff *s, const char *in, size_t len,
                              pop3_out_fn *out, void *arg)
{
    size_t i = 0, run = 0;
    bool prev_cr = s->prev_cr;
    if (s->line_start && in[0] == '.')
        out(arg, in, 1); /* sent again with the run that starts at it */
    s->line_start = false;
    for (;;) {
        const char *nl = memchr(in + i, '\n', len - i);
        if (nl == NULL) {
            prev_cr = in[len - 1] == '\r';
            break;
        }
        size_t e = (size_t)(nl - in);
        if (!(e > i ? in[e - 1] == '\r' : prev_cr)) {
            /* bare LF: send CRLF */
            if (e > run)
                out(arg, in + run, e - run);
            out(arg, "\r\n", 2);
            run = e + 1;
        }
        i = e + 1;
        prev_cr = false;
        if (i == len) {
            s->line_start = true;
            break;
        }
        if (in[i] == '.') {
            out(arg, in + run, i + 1 - run);
            run = i;
        }
    }
    if (len > run)
        out(arg, in + run, len - run);
    s->prev_cr = prev_cr;
    return len;
}

size_t pop3_stuff_feed(struct pop3_stuff *s, const char *in, size_t len, pop3_out_fn *out,
                       void *arg)
{
    if (!s->top && !s->done)
        return len > 0 ? stuff_feed_retr(s, in, len, out, arg) : 0;
    size_t i = 0, run = 0;
    while (i < len && !s->done) {
        if (s->line_start) {
            s->line_start = false;
            if (in[i] == '.') {
                /* The doubled dot is the line's own dot sent twice: the
                 * run so far ends with it and the next run starts at it,
                 * so a caller that passes runs on by reference adds no
                 * copied byte here. */
                out(arg, in + run, i + 1 - run);
                run = i;
            }
        }
        const char *nl = memchr(in + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - in) : len;
        if (end > i) {
            s->line_bytes += end - i;
            s->prev_cr = in[end - 1] == '\r';
        }
        if (nl == NULL) {
            i = len;
            break;
        }
        bool empty = s->line_bytes == 0 || (s->line_bytes == 1 && s->prev_cr);
        if (!s->prev_cr) {
            /* bare LF: send CRLF */
            if (end > run)
                out(arg, in + run, end - run);
            out(arg, "\r\n", 2);
            run = end + 1;
        }
        i = end + 1;
        stuff_line_end(s, empty);
    }
    if (i > run)
        out(arg, in + run, i - run);
    return i;
}

void pop3_stuff_end(struct pop3_stuff *s, pop3_out_fn *out, void *arg)
{
    if (!s->line_start)
        out(arg, s->prev_cr ? "\n" : "\r\n", s->prev_cr ? 1 : 2);
    out(arg, ".\r\n", 3);
    s->line_start = true;
    s->done = true;
}

void pop3_uidl(char *buf, size_t size, uint32_t uidvalidity, uint32_t uid)
{
    snprintf(buf, size, "%08x%08x", uidvalidity, uid);
}
