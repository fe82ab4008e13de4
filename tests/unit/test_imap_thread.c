/*
 * SORT and THREAD helpers (src/imap/imap_thread.c): base subject
 * extraction (RFC 5256 2.1), sent dates, message-id lists, and both
 * threading algorithms on small mailboxes whose expected trees are
 * worked out by hand from RFC 5256 4.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "imap/imap_thread.h"
#include "unit.h"

static void test_base_subject(void)
{
    static const struct { const char *in, *out; int reply; } cases[] = {
        { "Hello", "Hello", 0 },
        { "Re: Hello", "Hello", 1 },
        { "RE: re: Re:Hello", "Hello", 1 },
        { "Fwd: Hello", "Hello", 1 },
        { "FW: Hello", "Hello", 1 },
        { "fw:Hello", "Hello", 1 },
        { "Re [foo]: Hello", "Hello", 1 },
        { "[list] Re: Hello", "Hello", 1 },
        { "[list] [other] Re: Hello", "Hello", 1 },
        { "[list] Hello", "Hello", 0 },
        { "[list]", "[list]", 0 },
        { "[a] [b]", "[b]", 0 },
        { "Hello (fwd)", "Hello", 1 },
        { "Hello (FWD) (fwd)  ", "Hello", 1 },
        { "[Fwd: Hello]", "Hello", 1 },
        { "[fwd: Re: [x] Hello (fwd)]", "Hello", 1 },
        { "  lots   of\t space  ", "lots of space", 0 },
        { "Re : spaced", "spaced", 1 },
        { "Ref: Hello", "Ref: Hello", 0 },
        { "Rex Hello", "Rex Hello", 0 },
        { "Re:", "", 1 },
        { "", "", 0 },
        { "=?UTF-8?Q?Re=3A_caf=C3=A9?=", "café", 1 },
        { "Re: =?ISO-8859-1?Q?caf=E9?= =?ISO-8859-1?Q?_au_lait?=", "café au lait", 1 },
        { "=?utf-8?b?W2xpc3RdIFJlOiBIw6lsbG8=?=", "Héllo", 1 },
        { "Re: [fwd: x]", "x", 1 },
        { "Re:\r\n Folded\r\n\tsubject", "Folded subject", 1 },
        { "[unterminated Re: x", "[unterminated Re: x", 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct strbuf out;
        strbuf_init(&out, 4096);
        bool reply = false;
        CHECK_EQ_INT(imap_base_subject(cases[i].in, strlen(cases[i].in), &out, &reply), 0);
        strbuf_append(&out, "", 1);
        CHECK_EQ_STR(out.data, cases[i].out);
        if ((int)reply != cases[i].reply)
            fprintf(stderr, "case %zu: %s\n", i, cases[i].in);
        CHECK_EQ_INT(reply, cases[i].reply);
        strbuf_free(&out);
    }
}

static void test_dates(void)
{
    static const struct { const char *in; int rc; int64_t t; } cases[] = {
        { "Thu, 01 Jan 1970 00:00:00 +0000", 0, 0 },
        { "Mon, 10 Jun 2024 12:34:56 +0200", 0, 1718015696 },
        { "10 Jun 2024 12:34:56 +0200", 0, 1718015696 },
        { "Mon, 10 Jun 2024 12:34 +0200", 0, 1718015640 },
        { "Mon, 10 Jun 24 10:34:56 GMT", 0, 1718015696 },
        { "Mon, 10 Jun 2024 05:34:56 EST", 0, 1718015696 },
        { "Mon, 10 June 2024 10:34:56 (UTC) +0000 (comment)", 0, 1718015696 },
        { "  Mon ,  10 Jun 2024 10 : 34 : 56 -0000", 0, 1718015696 },
        { "Fri, 31 Dec 99 23:59:59 +0000", 0, 946684799 },
        { "1 Jan 2000 00:00:00", 0, 946684800 },
        { "garbage", -1, 0 },
        { "Mon, 32 Jun 2024 12:00:00 +0000", -1, 0 },
        { "Mon, 10 Foo 2024 12:00:00 +0000", -1, 0 },
        { "Mon, 10 Jun 2024 25:00:00 +0000", -1, 0 },
        { "Mon, 10 Jun 2024 12:00:00 +02", -1, 0 },
        { "", -1, 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t t = -1;
        int rc = imap_parse_rfc5322_date(cases[i].in, strlen(cases[i].in), &t);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == 0)
            CHECK_EQ_INT(t, cases[i].t);
    }
}

static void test_msgids(void)
{
    struct strbuf out;
    strbuf_init(&out, 4096);
    const char *v = "<a@x> (comment) <b@y>\r\n <no-at> <c\r\n @z> <d@w";
    CHECK_EQ_INT(imap_msgid_list(v, strlen(v), &out), 3);
    CHECK_EQ_INT(out.len, 12);
    CHECK(memcmp(out.data, "a@x\0b@y\0c@z\0", 12) == 0);
    strbuf_reset(&out);
    CHECK_EQ_INT(imap_msgid_list("", 0, &out), 0);
    CHECK_EQ_INT(imap_msgid_list("<>", 2, &out), 0);
    strbuf_free(&out);
}

/* A message for the threading tests: refs as "a b c" (space separated). */
struct tmsg {
    const char *subject;
    int64_t date;
    const char *msgid, *refs;
};

static char *thread_run(enum imap_thread_alg alg, const struct tmsg *in, size_t n)
{
    struct imap_thread_msg *m = calloc(n, sizeof(*m));
    char **refbufs = calloc(n, sizeof(char *));
    char **subjects = calloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        struct strbuf sb;
        strbuf_init(&sb, 4096);
        bool reply = false;
        imap_base_subject(in[i].subject, strlen(in[i].subject), &sb, &reply);
        strbuf_append(&sb, "", 1);
        subjects[i] = sb.data;
        m[i].num = (uint32_t)i + 1;
        m[i].seq = (uint32_t)i + 1;
        m[i].date = in[i].date;
        m[i].subject = subjects[i];
        m[i].reply = reply;
        m[i].msgid = in[i].msgid;
        if (in[i].refs) {
            refbufs[i] = strdup(in[i].refs);
            size_t k = 1;
            for (char *p = refbufs[i]; *p; p++)
                if (*p == ' ') {
                    *p = '\0';
                    k++;
                }
            m[i].refs = refbufs[i];
            m[i].n_refs = k;
        }
    }
    struct strbuf out;
    strbuf_init(&out, 1u << 20);
    int rc = imap_thread(alg, m, n, &out);
    strbuf_append(&out, "", 1);
    CHECK_EQ_INT(rc, 0);
    for (size_t i = 0; i < n; i++) {
        free(refbufs[i]);
        free(subjects[i]);
    }
    free(refbufs);
    free(subjects);
    free(m);
    return out.data;
}

static void test_orderedsubject(void)
{
    static const struct tmsg msgs[] = {
        { "B", 50, NULL, NULL },      /* 1 */
        { "Re: A", 20, NULL, NULL },  /* 2 */
        { "A", 30, NULL, NULL },      /* 3 */
        { "Re: B", 40, NULL, NULL },  /* 4 */
        { "C", 10, NULL, NULL },      /* 5 */
        { "re: a", 25, NULL, NULL },  /* 6 */
        { "Fwd: B", 45, NULL, NULL }, /* 7 */
    };
    /* A: 2(20) 6(25) 3(30); B: 4(40) 7(45) 1(50); C: 5(10) */
    char *s = thread_run(IMAP_THREAD_ORDEREDSUBJECT, msgs, 7);
    CHECK_EQ_STR(s, "(5)(2 (6)(3))(4 (7)(1))");
    free(s);
    static const struct tmsg two[] = { { "x", 2, NULL, NULL }, { "Re: x", 1, NULL, NULL } };
    s = thread_run(IMAP_THREAD_ORDEREDSUBJECT, two, 2);
    CHECK_EQ_STR(s, "(2 1)");
    free(s);
    s = thread_run(IMAP_THREAD_ORDEREDSUBJECT, two, 0);
    CHECK_EQ_STR(s, "");
    free(s);
}

static void test_references(void)
{
    /* 1 root; 2 and 3 reply to 1; 4 replies to 3; 5 unrelated; 6 refers to
     * a missing parent shared with 7 (a dummy with two children at the
     * root stays); 8 has the same subject as 5 and is a reply: it goes
     * under 5 (step 5 (c)). */
    static const struct tmsg msgs[] = {
        { "Topic", 100, "m1@x", NULL },                      /* 1 */
        { "Re: Topic", 200, "m2@x", "m1@x" },                /* 2 */
        { "Re: Topic", 150, "m3@x", "m1@x" },                /* 3 */
        { "Re: Topic", 300, "m4@x", "m1@x m3@x" },           /* 4 */
        { "Other", 50, "m5@x", NULL },                       /* 5 */
        { "Lost", 400, "m6@x", "gone@x" },                   /* 6 */
        { "Re: Lost", 390, "m7@x", "gone@x" },               /* 7 */
        { "Re: Other", 60, "m8@x", NULL },                   /* 8 */
    };
    char *s = thread_run(IMAP_THREAD_REFERENCES, msgs, 8);
    CHECK_EQ_STR(s, "(5 8)(1 (3 4)(2))((7)(6))");
    free(s);

    /* a loop in References, a duplicate Message-ID, and a message
     * referring to itself must not hang or lose messages */
    static const struct tmsg loops[] = {
        { "a", 1, "a@x", "b@x" },     /* 1 */
        { "b", 2, "b@x", "a@x" },     /* 2 */
        { "c", 3, "a@x", NULL },      /* 3: duplicate id */
        { "d", 4, "d@x", "d@x" },     /* 4: itself */
    };
    s = thread_run(IMAP_THREAD_REFERENCES, loops, 4);
    /* 1 is b's child from message 1's refs; message 2 re-parents b under a
     * would loop, so b stays the parent of a. */
    CHECK_EQ_STR(s, "(2 1)(3)(4)");
    free(s);

    /* two roots without Re: and with the same subject get a dummy parent
     * (step 5 (d)); a dummy with one child is replaced by it (step 3) */
    static const struct tmsg same[] = {
        { "Same", 10, "s1@x", NULL },
        { "Same", 20, "s2@x", NULL },
        { "Alone", 5, "s3@x", "missing@x" },
    };
    s = thread_run(IMAP_THREAD_REFERENCES, same, 3);
    CHECK_EQ_STR(s, "(3)((1)(2))");
    free(s);

    /* a deep chain (no recursion limit) */
    enum { DEEP = 20000 };
    struct tmsg *deep = calloc(DEEP, sizeof(*deep));
    char (*ids)[16] = calloc(DEEP, 16);
    for (int i = 0; i < DEEP; i++) {
        snprintf(ids[i], 16, "d%d@x", i);
        deep[i] = (struct tmsg){ "deep", i, ids[i], i ? ids[i - 1] : NULL };
    }
    s = thread_run(IMAP_THREAD_REFERENCES, deep, DEEP);
    CHECK(strncmp(s, "(1 2 3 ", 7) == 0);
    CHECK(strcmp(s + strlen(s) - 7, " 20000)") == 0);
    free(s);
    free(deep);
    free(ids);
}

int main(void)
{
    RUN(test_base_subject);
    RUN(test_dates);
    RUN(test_msgids);
    RUN(test_orderedsubject);
    RUN(test_references);
    return unit_report("imap_thread");
}
