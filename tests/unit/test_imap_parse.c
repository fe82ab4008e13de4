/*
 * IMAP command syntax (src/imap/imap_parse.c): tables of input and
 * expected result for tags, atoms, strings, literals, sequence sets,
 * dates, the literal announcement scanner and string output.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "imap/imap_parse.h"
#include "unit.h"

static struct imap_pool pool;

static void init(struct imap_parser *ps, const char *s)
{
    imap_pool_clear(&pool);
    imap_parser_init(ps, s, strlen(s), &pool);
}

static void test_tag_atom(void)
{
    static const struct { const char *in; int rc; const char *tag; } cases[] = {
        { "a1 NOOP", 0, "a1" }, { "A.b-c NOOP", 0, "A.b-c" }, { "+ NOOP", -1, NULL },
        { "(x NOOP", -1, NULL }, { " NOOP", -1, NULL }, { "t] NOOP", 0, "t]" },
        { "t{ NOOP", 0, "t" }, { "t* NOOP", 0, "t" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct imap_parser ps;
        char *tag = NULL;
        init(&ps, cases[i].in);
        int rc = imap_parse_tag(&ps, &tag);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == 0)
            CHECK_EQ_STR(tag, cases[i].tag);
    }
    struct imap_parser ps;
    char *a;
    init(&ps, "BODY.PEEK[HEADER]");
    CHECK_EQ_INT(imap_parse_atom_stop(&ps, "[<", &a), 0);
    CHECK_EQ_STR(a, "BODY.PEEK");
    CHECK(imap_parse_peek(&ps, '['));
}

static void test_strings(void)
{
    static const struct { const char *in; size_t in_len; int rc; const char *out; size_t out_len; } cases[] = {
        { "\"hello\"", 7, 0, "hello", 5 },
        { "\"a\\\"b\\\\c\"", 9, 0, "a\"b\\c", 5 },
        { "\"bad\\x\"", 7, -1, NULL, 0 },
        { "\"open", 5, -1, NULL, 0 },
        { "{5}\r\nhello", 10, 0, "hello", 5 },
        { "{5+}\r\nhel\0o", 11, 0, "hel\0o", 5 },
        { "~{3}\r\na\0b", 9, 0, "a\0b", 3 },
        { "{9}\r\nshort", 10, -1, NULL, 0 },
        { "{}\r\n", 4, -1, NULL, 0 },
        { "atom", 4, 0, "atom", 4 },
        { "ato]m", 5, 0, "ato]m", 5 },
        { "(x)", 3, -1, NULL, 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct imap_parser ps;
        imap_pool_clear(&pool);
        imap_parser_init(&ps, cases[i].in, cases[i].in_len, &pool);
        char *s = NULL;
        size_t len = 0;
        int rc = imap_parse_astring(&ps, &s, &len);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == 0 && cases[i].rc == 0) {
            CHECK_EQ_INT(len, cases[i].out_len);
            CHECK(memcmp(s, cases[i].out, len) == 0);
        }
    }
    struct imap_parser ps;
    char *s;
    size_t len;
    init(&ps, "NIL");
    CHECK_EQ_INT(imap_parse_nstring(&ps, &s, &len), 0);
    CHECK(s == NULL);
    init(&ps, "\"x\"");
    CHECK_EQ_INT(imap_parse_nstring(&ps, &s, &len), 0);
    CHECK_EQ_STR(s, "x");
}

static void test_literal_scan(void)
{
    static const struct { const char *in; int rc; uint64_t n; bool nonsync; } cases[] = {
        { "a APPEND INBOX {12}", 1, 12, false }, { "a APPEND INBOX {12+}", 1, 12, true },
        { "a LOGIN {3-}", 1, 3, true }, { "a APPEND INBOX ~{7}", 1, 7, false },
        { "a NOOP", 0, 0, false }, { "a X {}", -1, 0, false }, { "a X {1a}", 0, 0, false },
        { "a X }", 0, 0, false }, { "a X {99999999999999999999}", -1, 0, false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t n = 0;
        bool nonsync = false;
        int rc = imap_line_literal(cases[i].in, strlen(cases[i].in), &n, &nonsync);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == 1) {
            CHECK_EQ_INT(n, cases[i].n);
            CHECK_EQ_INT(nonsync, cases[i].nonsync);
        }
    }
}

static void test_seqset(void)
{
    struct imap_parser ps;
    struct imap_seqset set;
    init(&ps, "1:3,5,7:*");
    CHECK_EQ_INT(imap_parse_seqset(&ps, &set), 0);
    CHECK_EQ_INT(set.n, 3);
    CHECK(imap_seqset_contains(&set, 2, 10));
    CHECK(!imap_seqset_contains(&set, 4, 10));
    CHECK(imap_seqset_contains(&set, 10, 10));
    CHECK(!imap_seqset_contains(&set, 11, 10));
    init(&ps, "*:4");
    CHECK_EQ_INT(imap_parse_seqset(&ps, &set), 0);
    CHECK(imap_seqset_contains(&set, 6, 8));
    init(&ps, "$");
    CHECK_EQ_INT(imap_parse_seqset(&ps, &set), 0);
    CHECK(set.dollar);
    static const char *const bad[] = { "0", "1:0", ",1", "1,", "a", "1::2", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        init(&ps, bad[i]);
        int rc = imap_parse_seqset(&ps, &set);
        CHECK(rc < 0 || !imap_parse_at_end(&ps));
    }
    /* the range count is bounded */
    struct strbuf sb;
    strbuf_init(&sb, 1u << 20);
    for (int i = 1; i <= IMAP_SEQSET_MAX + 1; i++)
        strbuf_printf(&sb, "%s%d", i > 1 ? "," : "", i);
    imap_pool_clear(&pool);
    imap_parser_init(&ps, sb.data, sb.len, &pool);
    CHECK_EQ_INT(imap_parse_seqset(&ps, &set), -1);
    strbuf_free(&sb);
}

static void test_dates(void)
{
    struct imap_parser ps;
    int64_t t;
    init(&ps, "\"07-Feb-2024 10:11:12 +0100\"");
    CHECK_EQ_INT(imap_parse_date_time(&ps, &t), 0);
    CHECK_EQ_INT(t, 1707297072);
    init(&ps, "\" 7-Feb-2024 10:11:12 -0000\"");
    CHECK_EQ_INT(imap_parse_date_time(&ps, &t), 0);
    CHECK_EQ_INT(t, 1707300672);
    init(&ps, "1-Jan-2020");
    CHECK_EQ_INT(imap_parse_date(&ps, &t), 0);
    CHECK_EQ_INT(t, 1577836800);
    init(&ps, "\"1-jan-2020\"");
    CHECK_EQ_INT(imap_parse_date(&ps, &t), 0);
    static const char *const bad[] = { "32-Jan-2020", "1-Foo-2020", "1-Jan-20", "\"1-Jan-2020" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        init(&ps, bad[i]);
        CHECK_EQ_INT(imap_parse_date(&ps, &t), -1);
    }
    init(&ps, "\"07-Feb-2024 25:11:12 +0100\"");
    CHECK_EQ_INT(imap_parse_date_time(&ps, &t), -1);
}

static void test_nesting_and_flags(void)
{
    struct imap_parser ps;
    char deep[IMAP_DEPTH_MAX + 10];
    memset(deep, '(', sizeof(deep) - 1);
    deep[sizeof(deep) - 1] = '\0';
    init(&ps, deep);
    int rc = 0;
    for (int i = 0; i < IMAP_DEPTH_MAX + 5 && rc == 0; i++)
        rc = imap_parse_open(&ps);
    CHECK_EQ_INT(rc, -1);
    char *f;
    init(&ps, "\\Seen");
    CHECK_EQ_INT(imap_parse_flag(&ps, false, &f), 0);
    CHECK_EQ_STR(f, "\\Seen");
    init(&ps, "\\*");
    CHECK_EQ_INT(imap_parse_flag(&ps, false, &f), -1);
    init(&ps, "\\*");
    CHECK_EQ_INT(imap_parse_flag(&ps, true, &f), 0);
    init(&ps, "$Junk");
    CHECK_EQ_INT(imap_parse_flag(&ps, false, &f), 0);
    CHECK_EQ_STR(f, "$Junk");
}

static void test_output(void)
{
    static const struct { const char *in; const char *out; } cases[] = {
        { "INBOX", "INBOX" }, { "a b", "\"a b\"" }, { "q\"x", "\"q\\\"x\"" }, { "", "\"\"" },
        { "NIL", "\"NIL\"" }, { "caf\xc3\xa9", "{5}\r\ncaf\xc3\xa9" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct strbuf sb;
        strbuf_init(&sb, 1024);
        imap_write_astring(&sb, cases[i].in);
        strbuf_append(&sb, "", 1);
        CHECK_EQ_STR(sb.data, cases[i].out);
        strbuf_free(&sb);
    }
}

int main(void)
{
    imap_pool_init(&pool, 1u << 24);
    RUN(test_tag_atom);
    RUN(test_strings);
    RUN(test_literal_scan);
    RUN(test_seqset);
    RUN(test_dates);
    RUN(test_nesting_and_flags);
    RUN(test_output);
    imap_pool_clear(&pool);
    return unit_report("imap_parse");
}
