/*
 * libFuzzer target: server replies through the SMTP client's reply parser
 * (smtp_reply_parse), each line of each reply through the EHLO keyword
 * reader (smtp_ehlo_line), each completed reply through smtp_reply_format.
 *
 * The first input byte picks a chunk size (1..16, or all at once); the
 * rest is fed in those chunks, and again whole, and both runs must see
 * the same replies: the parser keeps no state that depends on where the
 * reads split.  Besides the sanitizers it checks the header's promises:
 * a completed reply has a code in 200..599, at most SMTP_REPLY_LINES_MAX
 * lines, its text under the cap with no control characters but '\n', an
 * enhanced code that is empty or "d.d.d"; *used_r never passes the input
 * and is the whole input when more is needed.
 */
#include "smtp/smtp_client.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPLIES 64

struct seen {
    int n;
    int code[MAX_REPLIES];
    char enhanced[MAX_REPLIES][16];
    int n_lines[MAX_REPLIES];
    int last;                        /* the final result: MORE or BAD */
    struct smtp_ext ext;
};

static void on_line(void *arg, int index, const char *text, size_t len)
{
    struct seen *s = arg;
    if (index < 0 || index >= SMTP_REPLY_LINES_MAX || len > SMTP_REPLY_LINE_MAX)
        abort();
    smtp_ehlo_line(&s->ext, index, text, len);
}

static void check_reply(const struct smtp_client_reply *r)
{
    if (r->code < 200 || r->code > 599 || r->n_lines < 1 || r->n_lines > SMTP_REPLY_LINES_MAX)
        abort();
    size_t tl = strnlen(r->text, sizeof(r->text));
    if (tl == sizeof(r->text))
        abort();
    for (size_t i = 0; i < tl; i++) {
        unsigned char c = (unsigned char)r->text[i];
        if ((c < 0x20 && c != '\n') || c == 0x7f)
            abort();
    }
    size_t el = strnlen(r->enhanced, sizeof(r->enhanced));
    if (el == sizeof(r->enhanced))
        abort();
    if (el > 0) {
        /* the reply's class digit, '.', digits, '.', digits (RFC 3463 2) */
        if (r->enhanced[0] != (char)('0' + r->code / 100) || r->enhanced[1] != '.')
            abort();
        int dots = 0;
        for (size_t i = 1; i < el; i++) {
            if (r->enhanced[i] == '.')
                dots++;
            else if (r->enhanced[i] < '0' || r->enhanced[i] > '9')
                abort();
        }
        if (dots != 2)
            abort();
    }
    char small[8], big[SMTP_REPLY_TEXT_MAX + 32];
    smtp_reply_format(r, small, sizeof(small));
    smtp_reply_format(r, big, sizeof(big));
    if (strnlen(small, sizeof(small)) == sizeof(small) || strchr(big, '\n') != NULL)
        abort();
}

static void run(const uint8_t *data, size_t size, size_t chunk, struct seen *s)
{
    struct smtp_reply_parser p;
    smtp_reply_parser_init(&p);
    p.line_cb = on_line;
    p.line_arg = s;
    s->last = SMTP_REPLY_MORE;
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        size_t used = 0;
        int rc = smtp_reply_parse(&p, (const char *)data + off, n, &used);
        if (used > n)
            abort();
        if (rc == SMTP_REPLY_MORE) {
            if (used != n)
                abort();
            off += n;
            continue;
        }
        if (rc == SMTP_REPLY_BAD) {
            s->last = SMTP_REPLY_BAD;
            return;
        }
        if (rc != SMTP_REPLY_DONE || used == 0)
            abort();
        check_reply(&p.reply);
        if (s->n < MAX_REPLIES) {
            s->code[s->n] = p.reply.code;
            memcpy(s->enhanced[s->n], p.reply.enhanced, sizeof(s->enhanced[0]));
            s->n_lines[s->n] = p.reply.n_lines;
            s->n++;
        }
        off += used;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (data[0] & 0x1f) == 0 ? size : (size_t)(data[0] & 0x0f) + 1;
    data++;
    size--;
    static struct seen a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    run(data, size, chunk, &a);
    run(data, size, size ? size : 1, &b);
    if (a.n != b.n || a.last != b.last)
        abort();
    for (int i = 0; i < a.n; i++)
        if (a.code[i] != b.code[i] || a.n_lines[i] != b.n_lines[i] ||
            strcmp(a.enhanced[i], b.enhanced[i]) != 0)
            abort();
    if (memcmp(&a.ext, &b.ext, sizeof(a.ext)) != 0)
        abort();
    return 0;
}
