/*
 * libFuzzer target for the IMAP command parser (src/imap/imap_parse.c).
 * The input is one assembled command (literals inline, as the session
 * builds it).  After the tag and command name, the rest is read as a
 * stream of arguments: each position tries the parser a command would
 * use there (lists, sequence sets, dates, flags, strings), so every
 * parser meets arbitrary bytes.  The same bytes then go through the
 * SORT/THREAD helpers: base subject, RFC 5322 date, msg-id lists, and
 * both threading algorithms over messages made from the input's lines.  Besides the sanitizers it checks the
 * parser's promises: it never moves past the end, a failure names what
 * was expected, depth stays bounded.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "imap/imap_parse.h"
#include "imap/imap_thread.h"

/* Each line "subject\tids" becomes a message: its first id is its
 * Message-ID, the rest its References. */
static void fuzz_thread(const char *buf, size_t size)
{
    enum { MAXMSG = 64 };
    struct imap_thread_msg msgs[MAXMSG];
    struct strbuf subj[MAXMSG], ids[MAXMSG];
    size_t n = 0, pos = 0;
    while (pos < size && n < MAXMSG) {
        const char *nl = memchr(buf + pos, '\n', size - pos);
        size_t end = nl ? (size_t)(nl - buf) : size;
        const char *tab = memchr(buf + pos, '\t', end - pos);
        size_t se = tab ? (size_t)(tab - buf) : end;
        strbuf_init(&subj[n], 1u << 16);
        strbuf_init(&ids[n], 1u << 16);
        bool reply = false;
        imap_base_subject(buf + pos, se - pos, &subj[n], &reply);
        strbuf_append(&subj[n], "", 1);
        int k = tab ? imap_msgid_list(tab + 1, end - se - 1, &ids[n]) : 0;
        int64_t t = 0;
        if (imap_parse_rfc5322_date(buf + pos, end - pos, &t) < 0)
            t = (int64_t)n;
        msgs[n] = (struct imap_thread_msg){
            .num = (uint32_t)n + 1, .seq = (uint32_t)n + 1, .date = t % 1000,
            .subject = subj[n].data ? subj[n].data : "", .reply = reply,
            .msgid = k > 0 ? ids[n].data : NULL,
            .refs = k > 1 ? ids[n].data + strlen(ids[n].data) + 1 : NULL,
            .n_refs = k > 1 ? (size_t)k - 1 : 0,
        };
        n++;
        pos = end + 1;
    }
    for (int alg = 0; alg < 2; alg++) {
        struct strbuf out;
        strbuf_init(&out, 1u << 20);
        imap_thread(alg ? IMAP_THREAD_REFERENCES : IMAP_THREAD_ORDEREDSUBJECT, msgs, n, &out);
        /* every message appears: count the numbers written */
        size_t nums = 0;
        for (size_t i = 0; i < out.len; i++)
            nums += out.data[i] >= '0' && out.data[i] <= '9' &&
                    (i + 1 == out.len || out.data[i + 1] < '0' || out.data[i + 1] > '9');
        if (nums != n)
            abort();
        strbuf_free(&out);
    }
    for (size_t i = 0; i < n; i++) {
        strbuf_free(&subj[i]);
        strbuf_free(&ids[i]);
    }
}

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
        fuzz_thread(buf, size);
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
    fuzz_thread(buf, size);
    return 0;
}
