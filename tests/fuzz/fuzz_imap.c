/*
 * libFuzzer target for the IMAP command parser (src/imap/imap_parse.c).
 * The input is one assembled command (literals inline, as the session
 * builds it).  After the tag and command name, the rest is read as a
 * stream of arguments: each position tries the parser a command would
 * use there (lists, sequence sets, dates, flags, strings), so every
 * parser meets arbitrary bytes.  Besides the sanitizers it checks the
 * parser's promises: it never moves past the end, a failure names what
 * was expected, depth stays bounded.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "imap/imap_parse.h"

static void check(const struct imap_parser *ps, const char *end)
{
    if (ps->p > end || ps->depth > IMAP_DEPTH_MAX)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct imap_pool pool;
    imap_pool_init(&pool, 1u << 24);
    struct imap_parser ps;
    const char *buf = (const char *)data;
    imap_parser_init(&ps, buf, size, &pool);
    uint64_t n;
    bool nonsync;
    imap_line_literal(buf, size, &n, &nonsync);
    char *tag, *name;
    if (imap_parse_tag(&ps, &tag) < 0 || imap_parse_sp(&ps) < 0 ||
        imap_parse_atom_stop(&ps, "[<", &name) < 0) {
        if (ps.error == NULL)
            abort();
        imap_pool_clear(&pool);
        return 0;
    }
    for (int steps = 0; steps < 4096 && !imap_parse_at_end(&ps); steps++) {
        const char *before = ps.p;
        char *s;
        size_t len;
        struct imap_seqset set;
        int64_t t;
        unsigned char c = (unsigned char)*ps.p;
        int rc;
        if (c == ' ')
            rc = imap_parse_sp(&ps);
        else if (c == '(')
            rc = imap_parse_open(&ps);
        else if (c == ')' && ps.depth == 0)
            break; /* a stray ")": the command handler would answer BAD */
        else if (c == ')')
            rc = imap_parse_close(&ps);
        else if ((c >= '0' && c <= '9') || c == '*' || c == '$') {
            rc = imap_parse_seqset(&ps, &set);
            if (rc == 0 && !set.dollar)
                for (size_t i = 0; i < set.n; i++)
                    (void)imap_seqset_contains(&set, set.r[i].lo, 100);
        } else if (c == '\\')
            rc = imap_parse_flag(&ps, true, &s);
        else if (c == '"' && size - (size_t)(ps.p - buf) > 12 && ps.p[3] == '-') {
            const char *save = ps.p;
            rc = imap_parse_date_time(&ps, &t);
            if (rc < 0) {
                ps.p = save;
                ps.error = NULL;
                rc = imap_parse_date(&ps, &t);
            }
        } else if (c == '%')
            rc = imap_parse_list_mailbox(&ps, &s);
        else
            rc = imap_parse_astring(&ps, &s, &len);
        check(&ps, buf + size);
        if (rc < 0) {
            if (ps.error == NULL)
                abort();
            break;
        }
        if (ps.p == before)
            break;
    }
    struct strbuf out;
    strbuf_init(&out, 1u << 20);
    imap_write_string(&out, buf, size > 2000 ? 2000 : size);
    strbuf_free(&out);
    imap_pool_clear(&pool);
    return 0;
}
